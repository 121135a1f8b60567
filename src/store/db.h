/*
 * db - the records database: settings now; later the message log, labels,
 * the audit log, accounts and sender rules.
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
#define DB_SCHEMA_VERSION 1

#define DB_MAX_SCOPE 400  /* bytes; "address:" + a 254-byte address fits with room */
#define DB_MAX_KEY   64   /* bytes */
#define DB_MAX_VALUE 1024 /* bytes */

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

#endif
