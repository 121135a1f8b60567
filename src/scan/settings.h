/*
 * settings - per-recipient actions: thresholds and how tagged mail is marked,
 * stored in the records database (store/db.h) and read on the scan path from
 * an in-memory snapshot.
 *
 * Keys (anything else is refused on write and ignored, with a warning, on load):
 *   threshold.tag         number; above it: X-Spam-* headers (default 6)
 *   threshold.quarantine  number; above it: hold in Postfix's hold queue (default 12)
 *   threshold.reject      number; above it: reject 5xx at SMTP time (default 18)
 *   subject_prefix        text put before the Subject of tagged mail, e.g. "[SPAM]",
 *                         joined with one space; "" (the default) for none; at most 64
 *                         bytes, no control chars
 *   add_report_header     yes|no: add X-Spam-Report to tagged mail (default yes)
 * Numbers are finite, within -1000..1000. An action cannot be switched off;
 * set its threshold high (e.g. 999). After merging (below) every scope must
 * keep tag < quarantine < reject.
 *
 * Scopes, and what a recipient gets. A value is looked up per key:
 * the recipient's address, then its domain, then global, then the built-in
 * default. Domains match case-insensitively (they are stored lowercased;
 * internationalised names as A-labels, "xn--..."), and a trailing dot is
 * ignored. An address matches with its local part exactly as given
 * (RFC 5321: local parts may be case-sensitive) and its domain lowercased.
 * A subdomain does NOT inherit from its parent: settings of example.org do
 * not apply to mail for bob@lists.example.org. Admins configure the domains
 * they host one by one, the console shows exactly those, and a parent's
 * strict thresholds silently reaching a subdomain run by someone else would
 * surprise more than they help.
 *
 * Several recipients, one verdict. Postfix holds or rejects a whole message,
 * not a recipient, so settings_action_for_recipients() combines the actions
 * a_i = thresholds_action(thresholds of recipient i, score) like this:
 *   1. reject      if every a_i is reject;
 *   2. quarantine  otherwise, if any a_i is quarantine or reject (held mail
 *                  can be released, so nobody loses mail);
 *   3. otherwise the most severe a_i (tag over deliver).
 * The recipient that decided is, in envelope order: for 1 the first
 * recipient; for 2 the first whose a_i is quarantine, or if none is, the
 * first whose a_i is reject; for 3 the first whose a_i is that action. Its
 * thresholds and marking options (subject_prefix, add_report_header) are the
 * ones reported and applied to the message. Note that in case 2 the action
 * may be milder than the decider's own thresholds say (its reject was
 * outvoted). No recipients: the global settings decide, as "default".
 *
 * Snapshots and reloads. struct settings is an immutable snapshot: every
 * scope's effective values are resolved when it is built, so a lookup is two
 * binary searches without allocation or locks. struct settings_cache holds
 * the current snapshot for all threads:
 *   - a reloader (the daemon's housekeeping thread, with its own db
 *     connection) calls settings_cache_reload_if_changed() every few
 *     seconds; it reads one counter from the database and rebuilds only when
 *     a write happened since the snapshot was built. The new snapshot is
 *     built without any lock, then swapped in under the cache's mutex, which
 *     bumps an atomic generation;
 *   - each scan thread keeps a struct settings_ref and calls
 *     settings_cache_pin() once per scan: while the generation is the one
 *     it saw (nearly always) that is one atomic load and no lock; after a
 *     reload it takes the mutex once to move its reference to the new
 *     snapshot. A snapshot is reference-counted and freed when the last
 *     thread moves off it, so a scan never sees a snapshot freed under it
 *     and the scan path never touches SQLite.
 * If a reload fails (database unreachable) the old snapshot stays in use.
 *
 * Invalid stored combinations (written behind our back, or by two admins at
 * once) do not stop loading: a scope whose merged thresholds are out of
 * order logs a warning and uses its parent's thresholds instead.
 */
#ifndef MXW_SETTINGS_H
#define MXW_SETTINGS_H

#include "scan/result.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;

enum {
    SETTINGS_OK = 0,
    SETTINGS_STORE = -1,   /* the database failed; err_msg() says how */
    SETTINGS_INVALID = -2, /* an unknown key, a bad value or scope, thresholds out of order */
};

enum settings_key {
    SETTING_THRESHOLD_TAG,
    SETTING_THRESHOLD_QUARANTINE,
    SETTING_THRESHOLD_REJECT,
    SETTING_SUBJECT_PREFIX,
    SETTING_ADD_REPORT_HEADER,
    SETTINGS_N_KEYS
};

#define SETTINGS_MAX_SUBJECT_PREFIX 64
#define SETTINGS_THRESHOLD_LIMIT    1000.0

/* The values that apply to one scope after inheritance. Owned by its snapshot. */
struct settings_effective {
    const char *scope; /* "global", "domain:NAME" or "address:LOCAL@NAME" */
    struct thresholds thresholds;
    const char *subject_prefix; /* "" for none */
    bool add_report_header;
    /* Where each value came from: a scope string, or "default" for the built-in value. */
    const char *source[SETTINGS_N_KEYS];
};

struct settings;

/* The key's name ("threshold.tag", ...). */
const char *settings_key_name(enum settings_key key);
/* The key named name, or -1. */
int settings_key_find(const char *name);

/*
 * Normalises what an admin typed into a stored scope: "global" (or "" /
 * "default") -> "global"; "example.org" -> "domain:example.org";
 * "Bob@Example.ORG" -> "address:Bob@example.org"; stored forms
 * ("domain:...", "address:...") are accepted too. Writes at most out_size
 * bytes to out. Returns SETTINGS_OK, or SETTINGS_INVALID with err_set().
 */
int settings_scope_parse(const char *text, char *out, size_t out_size);
/* What an admin would type for a stored scope: "global", "example.org", "bob@example.org". */
const char *settings_scope_display(const char *scope);

/*
 * Checks and canonicalises value for key ("yes"/"no" for booleans, numbers as
 * given). Writes at most out_size bytes to out. SETTINGS_OK, or
 * SETTINGS_INVALID with err_set() saying what is expected.
 */
int settings_value_parse(enum settings_key key, const char *value, char *out, size_t out_size);

/* A snapshot of the built-in defaults only. Free with settings_free(). Never NULL. */
struct settings *settings_defaults(void);
/*
 * Reads every setting from db into a new snapshot (*out; free with
 * settings_free()). SETTINGS_OK, or SETTINGS_STORE with err_set() and *out
 * NULL. Unknown keys, bad values and bad scopes are logged and skipped.
 */
int settings_load(struct db *db, struct settings **out);
void settings_free(struct settings *s);
/* The settings generation of the database the snapshot was read from (-1 for the defaults). */
int64_t settings_db_generation(const struct settings *s);

/* The global values (built-in defaults merged with the global scope). */
const struct settings_effective *settings_global(const struct settings *s);
/* The values for a stored scope (see settings_scope_parse), configured or not. */
const struct settings_effective *settings_for_scope(const struct settings *s, const char *scope);
/* The values for an envelope recipient "local@domain" as Postfix gives it. No allocation
 * unless the domain is non-ASCII. */
const struct settings_effective *settings_for_recipient(const struct settings *s, const char *rcpt);

struct settings_decision {
    enum scan_action action;
    struct thresholds thresholds;              /* of the deciding recipient */
    const char *decided_by;                    /* rcpt[i] itself (caller's memory), or "default" */
    const struct settings_effective *settings; /* the decider's; owned by the snapshot */
};

/* Applies the rule in the comment at the top of this file. rcpt may be NULL if n_rcpt is 0. */
void settings_action_for_recipients(const struct settings *s, double score, const char *const *rcpt,
                                    size_t n_rcpt, struct settings_decision *out);

/* One requested change: value NULL unsets. scope as stored (settings_scope_parse). */
struct settings_change {
    const char *scope;
    enum settings_key key;
    const char *value;
};

/*
 * Validates changes[0..n) against everything stored (each value, then the
 * merged thresholds of every scope the changes reach: all scopes for a global
 * change, a domain's addresses for a domain change) and writes them in one
 * transaction, retried if another writer got in between. SETTINGS_OK;
 * SETTINGS_INVALID with err_set() such as "threshold.quarantine (5) must be
 * greater than threshold.tag (6) for example.org"; or SETTINGS_STORE.
 */
int settings_apply(struct db *db, const struct settings_change *changes, size_t n);

/* ---- the shared, reloadable snapshot ---- */

struct settings_cache;

/* Per-thread reference to a snapshot of a cache. Zero-initialise; drop with settings_ref_drop(). */
struct settings_ref {
    struct settings *snapshot;
    uint64_t generation;
};

/* A cache holding the built-in defaults until the first reload. Free after every ref is dropped. */
struct settings_cache *settings_cache_new(void);
void settings_cache_free(struct settings_cache *c);
/* Rebuilds from db and swaps the new snapshot in. SETTINGS_OK, or SETTINGS_STORE (old kept). */
int settings_cache_reload(struct settings_cache *c, struct db *db);
/* Reloads only if the database's settings generation differs from the current snapshot's.
 * *reloaded (may be NULL) says whether it did. */
int settings_cache_reload_if_changed(struct settings_cache *c, struct db *db, bool *reloaded);
/*
 * The current snapshot for the calling thread, through its ref: valid until
 * the next pin or drop on the same ref. Lock-free unless a reload happened
 * since this ref's last pin. Never NULL.
 */
const struct settings *settings_cache_pin(struct settings_cache *c, struct settings_ref *ref);
void settings_ref_drop(struct settings_cache *c, struct settings_ref *ref);

#endif
