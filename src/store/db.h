/*
 * db - the records database: settings, the message log, the audit log and
 * sender rules; later labels and accounts.
 *
 * Backends implement one contract (struct db_ops in db_backend.h):
 *   - SQLite, the embedded default: "sqlite:PATH[?OPTION=VALUE&...]", e.g.
 *     DB_URI_DEFAULT; the file and its directory are created if absent.
 *   - PostgreSQL for a cluster ("postgresql://..."): not built yet; such a
 *     URI is refused with a clear error.
 * Nothing outside src/store knows which one is underneath.
 *
 * Schema. The database carries its version in a schema_version table (one
 * row per applied migration: version, applied_at). db_open() applies every
 * migration the file lacks, each in its own transaction, so a crash between
 * two leaves a valid older version that the next open continues from; two
 * processes opening a fresh file at once apply each migration once. A file
 * whose version is newer than this binary's DB_SCHEMA_VERSION is refused
 * (DB_CORRUPT): an older binary must not misread or "repair" newer records.
 *
 * Settings records: (scope, key) -> value text, with the time it was last
 * written. Scope is "global", "domain:NAME" or "address:LOCAL@NAME" (the
 * caller normalises names; see scan/settings.h); this layer checks only sizes
 * and that the text is valid UTF-8 without control characters. Every write
 * bumps a settings generation in the same transaction, so a process that
 * caches settings can see with one cheap read whether anything changed, and
 * a writer can make its write conditional on what it validated against.
 *
 * Threads: a struct db is one connection; use it from one thread at a time
 * and open one per thread (SQLite connections are opened without their own
 * mutex). Connections to the same file in any number of threads and
 * processes may read while one writes (WAL); writers wait for each other up
 * to the busy timeout, then fail with DB_BUSY.
 *
 * Errors: functions return DB_OK (0) or a negative DB_* code and set
 * err_set() with a readable reason that names the file.
 */
#ifndef MXW_DB_H
#define MXW_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

enum {
    DB_OK = 0,
    DB_ERR = -1,      /* anything else: bad URI, cannot open or create, read-only, I/O error */
    DB_BUSY = -2,     /* another writer held the database longer than the busy timeout */
    DB_CORRUPT = -3,  /* not a database, damaged, or a schema newer than this binary */
    DB_CONFLICT = -4, /* a conditional write found the settings changed; nothing written */
};

#define DB_URI_DEFAULT "sqlite:var/mxwarden.db"
/* The schema this binary reads and writes. */
#define DB_SCHEMA_VERSION 2

#define DB_MAX_SCOPE 400  /* bytes; "address:" + a 254-byte address fits with room */
#define DB_MAX_KEY   64   /* bytes */
#define DB_MAX_VALUE 1024 /* bytes */

/* Limits of the message log, audit and sender-rule fields (bytes). */
#define DB_MAX_FIELD   1024 /* node, queue id, client IP, HELO, sender, action, stage... */
#define DB_MAX_SUBJECT 4096
#define DB_MAX_TEXT    65536   /* reason, details, note, capture path */
#define DB_MAX_JSON    4194304 /* recipients, symbols: 10,000 recipients fit */
#define DB_PAGE_MAX    10000   /* rows per listing page */

struct db;

/*
 * Opens the database named by uri and brings its schema to
 * DB_SCHEMA_VERSION. Returns DB_OK and *out (free with db_close()), or an
 * error with *out NULL and err_set().
 */
int db_open(const char *uri, struct db **out);
/* Closes the connection; NULL is a no-op. */
void db_close(struct db *db);
/* "sqlite". */
const char *db_backend_name(const struct db *db);
/* The schema version recorded in the database (DB_SCHEMA_VERSION after a successful open). */
int db_schema_version(struct db *db, int *version);

/* ---- settings ---- */

struct db_setting {
    char *scope;
    char *key;
    char *value;
    int64_t updated_at; /* seconds since the epoch */
};

/* Rows of a listing; the list owns every string. Free with db_setting_list_free(). */
struct db_setting_list {
    struct db_setting *items;
    size_t n;
};

/* One change of a write: value NULL deletes (scope, key); deleting an absent row is fine. */
struct db_setting_change {
    const char *scope;
    const char *key;
    const char *value;
};

/*
 * Reads one setting. *found false (value untouched) when absent; otherwise
 * the value is appended to value and *updated_at (may be NULL) is set.
 */
int db_setting_get(struct db *db, const char *scope, const char *key, struct buf *value,
                   int64_t *updated_at, bool *found);

/*
 * Lists the settings of scope (NULL: of every scope), ordered by scope then
 * key, into *out (emptied first; free it with db_setting_list_free() whatever
 * the result). *generation (may be NULL) gets the settings generation of the
 * same snapshot, so a cache built from the list knows what it reflects.
 */
int db_setting_list(struct db *db, const char *scope, struct db_setting_list *out,
                    int64_t *generation);
void db_setting_list_free(struct db_setting_list *list);

/*
 * Applies changes[0..n) in one transaction, all or nothing, and bumps the
 * settings generation once. With expect_generation >= 0 the write happens
 * only if the generation still has that value, else DB_CONFLICT and nothing
 * is written (re-read, re-validate, retry). A change the front refuses
 * (empty or oversized scope/key/value, invalid text) fails the whole call
 * with DB_ERR before the database is touched.
 */
int db_settings_write(struct db *db, const struct db_setting_change *changes, size_t n,
                      int64_t expect_generation);
/* Sets one setting (a one-change unconditional write). */
int db_setting_set(struct db *db, const char *scope, const char *key, const char *value);
/* Deletes one setting; *existed (may be NULL) says whether it was there. */
int db_setting_delete(struct db *db, const char *scope, const char *key, bool *existed);

/* The settings generation: 0 for a new database, +1 per successful write. */
int db_settings_generation(struct db *db, int64_t *generation);

/* ---- the message log ----
 *
 * One row per message that reached end-of-data, and per session refused
 * earlier (stage connect, mail or rcpt, with the reason). Rows are written
 * once and never updated; retention deletes them by age. Strings are valid
 * UTF-8 without control characters (subject, symbols, reason: tabs allowed); a NULL
 * string is stored as absent and read back as NULL. recipients is a JSON
 * array of strings and symbols a JSON value (the scan report's symbols);
 * this layer stores them as given after checking their size and encoding.
 */

struct db_message {
    int64_t id;     /* assigned on insert; ignored on insert */
    int64_t time;   /* seconds since the epoch; 0 on insert: now */
    char *node;     /* the gateway node that decided */
    char *queue_id; /* Postfix queue id (macro i); NULL before DATA */
    char *client_ip;
    char *helo;
    char *sender;     /* envelope sender, "" for the null sender */
    char *recipients; /* JSON array text, e.g. ["a@example.org"] */
    int64_t size_bytes;
    char *subject;
    double score;
    char *action;       /* required: accept, tag, quarantine, reject, tempfail... */
    char *decided_by;   /* what decided: "scan", "sender_rule", "greylist", ... */
    char *symbols;      /* JSON text */
    char *capture_path; /* where the raw message was captured, if it was */
    char *stage;        /* required: "connect", "mail", "rcpt" or "data" */
    char *reason;       /* why a session was refused early, or the reply text */
};

/* Rows of a listing; the list owns every string. Free with db_message_list_free(). */
struct db_message_list {
    struct db_message *items;
    size_t n;
};

/*
 * Appends msg to the log. The strings are only read (never kept or freed).
 * *id (may be NULL) gets the row's id. DB_ERR before the database is touched
 * if stage or action is missing or unknown, or a field is too long or not
 * valid text (see db_message_check()).
 */
int db_message_insert(struct db *db, const struct db_message *msg, int64_t *id);

/*
 * Appends rows[0..n) to the log in one transaction, all or nothing, in
 * order: ids ascend with the index. The strings are only read. ids (may be
 * NULL) gets n ids. A row db_message_check() refuses fails the whole call
 * with DB_ERR (the reason names its index) before the database is touched.
 * n == 0 writes nothing and is DB_OK. This is the message-log writer's group
 * commit (store/msglog.h): one transaction, and one WAL commit, for every
 * row that queued while the previous batch was being written.
 */
int db_messages_insert_batch(struct db *db, const struct db_message *rows, size_t n, int64_t *ids);

/*
 * The checks db_message_insert() makes before it touches the database, for
 * a caller that queues a row and wants a bad one refused alone rather than
 * failing the batch it would join: DB_OK, or DB_ERR with err_set().
 */
int db_message_check(const struct db_message *msg);

/*
 * The newest row with this queue id (Postfix reuses short ids over time).
 * *found false and *out zeroed when there is none; otherwise *out owns its
 * strings: free them with db_message_free(). *out is zeroed on entry.
 */
int db_message_get_by_queue_id(struct db *db, const char *queue_id, struct db_message *out,
                               bool *found);

/* Frees the strings of one row and zeroes it; NULL is a no-op. */
void db_message_free(struct db_message *msg);

/*
 * Rows newest first (by time, then id), skipping offset rows, at most limit
 * (1..DB_PAGE_MAX), into *out (emptied first; free it with
 * db_message_list_free() whatever the result).
 */
int db_messages_list(struct db *db, size_t offset, size_t limit, struct db_message_list *out);
void db_message_list_free(struct db_message_list *list);

/*
 * Retention: deletes the rows whose time is before cutoff (seconds since the
 * epoch), DB_PURGE_BATCH_ROWS at a time, each batch its own transaction, so
 * the gateway's inserts never wait behind a long purge. *deleted (may be
 * NULL) gets how many went, also on failure (the batches done stay done; a
 * later call continues).
 */
#define DB_PURGE_BATCH_ROWS 1000
int db_messages_delete_older_than(struct db *db, int64_t cutoff, int64_t *deleted);

/* ---- the audit log ----
 *
 * Who did what to what, for every operator action (quarantine release,
 * rule changes...). Append-only.
 */

struct db_audit {
    int64_t id;
    int64_t time;  /* seconds since the epoch */
    char *actor;   /* a Unix user or console account */
    char *action;  /* e.g. "quarantine.release" */
    char *target;  /* e.g. a queue id; may be NULL */
    char *details; /* free text or JSON; may be NULL */
};

struct db_audit_list {
    struct db_audit *items;
    size_t n;
};

/* Appends a row stamped now. actor and action are required; target and details may be NULL.
 * *id (may be NULL) gets the row's id. */
int db_audit_add(struct db *db, const char *actor, const char *action, const char *target,
                 const char *details, int64_t *id);
/* Rows newest first, paged like db_messages_list(). Free with db_audit_list_free(). */
int db_audit_list(struct db *db, size_t offset, size_t limit, struct db_audit_list *out);
void db_audit_list_free(struct db_audit_list *list);

/* ---- sender rules ----
 *
 * Operator rules applied at MAIL FROM / connect: kind "address" (a whole
 * envelope sender), "domain" (the sender's domain) or "ip" (the client
 * address); action "allow" (skip spam actions) or "block" (refuse). One rule
 * per (kind, value): adding an existing one replaces its action and note.
 * Addresses and domains are stored in lower case (the domain part only of
 * an address, whose local part may be case-sensitive). Every change bumps
 * the sender-rules generation (db_sender_rules_generation()).
 */

struct db_sender_rule {
    int64_t id;
    char *kind; /* "address", "domain" or "ip" */
    char *value;
    char *action;    /* "allow" or "block" */
    char *note;      /* may be NULL */
    int64_t created; /* seconds since the epoch of the last add */
};

struct db_sender_rule_list {
    struct db_sender_rule *items;
    size_t n;
};

/* Adds or replaces the rule for (kind, value). DB_ERR before the database is touched for an
 * unknown kind or action, an empty or oversized value. *id (may be NULL) gets its id. */
int db_sender_rule_add(struct db *db, const char *kind, const char *value, const char *action,
                       const char *note, int64_t *id);
/* Deletes rule id; *existed (may be NULL) says whether it was there. */
int db_sender_rule_delete(struct db *db, int64_t id, bool *existed);
/* Every rule ordered by kind, value. Free with db_sender_rule_list_free() whatever the result. */
int db_sender_rule_list(struct db *db, struct db_sender_rule_list *out);
void db_sender_rule_list_free(struct db_sender_rule_list *list);
/*
 * The sender-rules generation: 0 until the first change, then +1 per add and
 * per delete that removed a row, in the transaction of the change. A process
 * holding a snapshot of the rules reads this (one indexed row) to know
 * whether to reload; read it before listing, so a change made in between
 * shows as a newer generation next time rather than being missed.
 */
int db_sender_rules_generation(struct db *db, int64_t *generation);

#endif
