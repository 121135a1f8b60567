/*
 * db_sqlite - the embedded records backend: one SQLite file. See db.h.
 *
 * URI: "sqlite:PATH[?OPTION=VALUE&...]". PATH is created if absent, with
 * SQLite's "PATH-wal" and "PATH-shm" beside it while connections are open.
 * Options:
 *   busy_timeout_ms=N   how long a writer waits for another (default 5000)
 *   sync=normal|full    PRAGMA synchronous (default normal). In WAL mode
 *                       "normal" never corrupts the file and a crash of the
 *                       process loses nothing committed, but an OS crash or
 *                       power cut may undo the commits of the last moments;
 *                       "full" syncs the WAL on every commit. The gateway
 *                       commits a message-log row before it accepts a message
 *                       ("nothing accepted that was not logged"); the mail
 *                       itself is then in Postfix's queue, which Postfix
 *                       syncs. A sync per message would cost more than the
 *                       scan (about 0.3 ms here, most of the SMTP latency
 *                       mxwarden adds), so "normal" is the default and
 *                       sync=full is there for who wants the log row to
 *                       survive a power cut too. The gateway's rows go
 *                       through one writer that commits whatever queued
 *                       as one transaction (store/msglog.h), so under load
 *                       that sync is paid per batch, not per message.
 *
 * Connection. Opened with SQLITE_OPEN_NOMUTEX: a connection belongs to one
 * thread at a time (db.h says open one per thread), so SQLite's own
 * per-connection mutex would buy nothing. journal_mode=WAL lets readers run
 * beside the single writer; busy_timeout makes writers queue instead of
 * failing at once; foreign_keys=ON for the tables later issues add. A file
 * SQLite can only open read-only is refused at open (every caller writes, if
 * only the migrations), rather than failing later on the first write.
 *
 * Statements are prepared once per connection on first use
 * (SQLITE_PREPARE_PERSISTENT) and reset after each call. Every write runs in
 * BEGIN IMMEDIATE, which takes the write lock up front: a deferred
 * transaction that upgrades from read to write in WAL mode gets SQLITE_BUSY
 * at once instead of waiting, whatever the busy timeout.
 *
 * Errors: SQLITE_BUSY/LOCKED map to DB_BUSY; SQLITE_CORRUPT/NOTADB to
 * DB_CORRUPT; everything else to DB_ERR; the message names the file.
 */
#include "store/db_backend.h"
#include "store/kv_backend.h" /* kv_option_next(): the store's one URI option parser */
#include "core/buf.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DB_SQLITE_BUSY_TIMEOUT_MS 5000

/* The columns of a message-log row, in the order db_sqlite_message_row() reads them. */
#define DB_SQLITE_MESSAGE_COLUMNS                                                                  \
    "id, time, node, queue_id, client_ip, helo, sender, recipients, size, subject, score, "        \
    "action, decided_by, symbols, capture_path, stage, reason"

/* Migration i brings the schema from version i to i + 1; one transaction each. Never edit a
 * released migration: add the next one. */
static const char *const db_sqlite_migrations[DB_SCHEMA_VERSION] = {
    /* 1: settings records, and the generation counters that tell caches what changed. */
    "CREATE TABLE settings ("
    "  scope TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  value TEXT NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY (scope, key)"
    ") WITHOUT ROWID;"
    "CREATE TABLE generations ("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  value INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "INSERT INTO generations (name, value) VALUES ('settings', 0);",
    /* 2: the message log, the audit log and sender rules. Ids are rowids (BIGSERIAL in a
     * PostgreSQL backend); times are seconds since the epoch. */
    "CREATE TABLE messages ("
    "  id INTEGER PRIMARY KEY,"
    "  time INTEGER NOT NULL,"
    "  node TEXT,"
    "  queue_id TEXT,"
    "  client_ip TEXT,"
    "  helo TEXT,"
    "  sender TEXT,"
    "  recipients TEXT,"
    "  size INTEGER NOT NULL DEFAULT 0,"
    "  subject TEXT,"
    "  score REAL NOT NULL DEFAULT 0,"
    "  action TEXT NOT NULL,"
    "  decided_by TEXT,"
    "  symbols TEXT,"
    "  capture_path TEXT,"
    "  stage TEXT NOT NULL CHECK (stage IN ('connect', 'mail', 'rcpt', 'data')),"
    "  reason TEXT"
    ");"
    "CREATE INDEX messages_time ON messages (time);"
    "CREATE INDEX messages_queue_id ON messages (queue_id);"
    "CREATE TABLE audit ("
    "  id INTEGER PRIMARY KEY,"
    "  time INTEGER NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  target TEXT,"
    "  details TEXT"
    ");"
    "CREATE INDEX audit_time ON audit (time);"
    "CREATE TABLE sender_rules ("
    "  id INTEGER PRIMARY KEY,"
    "  kind TEXT NOT NULL CHECK (kind IN ('address', 'domain', 'ip')),"
    "  value TEXT NOT NULL,"
    "  action TEXT NOT NULL CHECK (action IN ('allow', 'block')),"
    "  note TEXT,"
    "  created INTEGER NOT NULL,"
    "  UNIQUE (kind, value)"
    ");",
};

enum db_sqlite_stmt {
    ST_BEGIN,
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_VERSION,
    ST_SETTING_GET,
    ST_SETTING_LIST_ALL,
    ST_SETTING_LIST_SCOPE,
    ST_SETTING_PUT,
    ST_SETTING_DEL,
    ST_GENERATION_GET,
    ST_GENERATION_BUMP,
    ST_MESSAGE_INSERT,
    ST_MESSAGE_BY_QUEUE_ID,
    ST_MESSAGES_LIST,
    ST_MESSAGES_DELETE_OLDER,
    ST_AUDIT_INSERT,
    ST_AUDIT_LIST,
    ST_SENDER_RULE_PUT,
    ST_SENDER_RULE_ID,
    ST_SENDER_RULE_DEL,
    ST_SENDER_RULE_LIST,
    ST_SENDER_RULES_GEN_GET,
    ST_SENDER_RULES_GEN_BUMP,
    ST_COUNT
};

static const char *const db_sqlite_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_VERSION] = "SELECT coalesce(max(version), 0) FROM schema_version",
    [ST_SETTING_GET] = "SELECT value, updated_at FROM settings WHERE scope = ?1 AND key = ?2",
    [ST_SETTING_LIST_ALL] = "SELECT scope, key, value, updated_at FROM settings "
                            "ORDER BY scope, key",
    [ST_SETTING_LIST_SCOPE] = "SELECT scope, key, value, updated_at FROM settings "
                              "WHERE scope = ?1 ORDER BY key",
    [ST_SETTING_PUT] = "INSERT INTO settings (scope, key, value, updated_at) "
                       "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (scope, key) DO UPDATE SET "
                       "value = excluded.value, updated_at = excluded.updated_at",
    [ST_SETTING_DEL] = "DELETE FROM settings WHERE scope = ?1 AND key = ?2",
    [ST_GENERATION_GET] = "SELECT value FROM generations WHERE name = 'settings'",
    [ST_GENERATION_BUMP] = "UPDATE generations SET value = value + 1 WHERE name = 'settings'",
    [ST_MESSAGE_INSERT] = "INSERT INTO messages (time, node, queue_id, client_ip, helo, sender, "
                          "recipients, size, subject, score, action, decided_by, symbols, "
                          "capture_path, stage, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                          "?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    [ST_MESSAGE_BY_QUEUE_ID] = "SELECT " DB_SQLITE_MESSAGE_COLUMNS " FROM messages "
                               "WHERE queue_id = ?1 ORDER BY time DESC, id DESC LIMIT 1",
    [ST_MESSAGES_LIST] = "SELECT " DB_SQLITE_MESSAGE_COLUMNS " FROM messages "
                         "ORDER BY time DESC, id DESC LIMIT ?2 OFFSET ?1",
    /* One batch: a purge of a month of rows must not hold the write lock the milter's inserts
     * wait for. */
    [ST_MESSAGES_DELETE_OLDER] = "DELETE FROM messages WHERE id IN "
                                 "(SELECT id FROM messages WHERE time < ?1 LIMIT ?2)",
    [ST_AUDIT_INSERT] = "INSERT INTO audit (time, actor, action, target, details) "
                        "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_AUDIT_LIST] = "SELECT id, time, actor, action, target, details FROM audit "
                      "ORDER BY time DESC, id DESC LIMIT ?2 OFFSET ?1",
    [ST_SENDER_RULE_PUT] = "INSERT INTO sender_rules (kind, value, action, note, created) "
                           "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (kind, value) DO UPDATE SET "
                           "action = excluded.action, note = excluded.note, "
                           "created = excluded.created",
    [ST_SENDER_RULE_ID] = "SELECT id FROM sender_rules WHERE kind = ?1 AND value = ?2",
    [ST_SENDER_RULE_DEL] = "DELETE FROM sender_rules WHERE id = ?1",
    [ST_SENDER_RULE_LIST] = "SELECT id, kind, value, action, note, created FROM sender_rules "
                            "ORDER BY kind, value",
    /* The sender-rules generation lives beside the settings one; its row appears with the
     * first change (absent reads as 0), so no migration was needed for it. */
    [ST_SENDER_RULES_GEN_GET] = "SELECT value FROM generations WHERE name = 'sender_rules'",
    [ST_SENDER_RULES_GEN_BUMP] = "INSERT INTO generations (name, value) VALUES ('sender_rules', 1) "
                                 "ON CONFLICT (name) DO UPDATE SET value = value + 1",
};

struct db_sqlite {
    sqlite3 *handle;
    char *path;
    sqlite3_stmt *stmts[ST_COUNT]; /* prepared on first use */
};

/* The DB_* code for an SQLite result code. */
static int db_sqlite_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return DB_BUSY;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return DB_CORRUPT;
    default:
        return DB_ERR;
    }
}

/* Sets the error of a failed call rc while doing what, and returns its DB_* code. */
static int db_sqlite_fail(struct db_sqlite *s, int rc, const char *what)
{
    const char *detail = s->handle ? sqlite3_errmsg(s->handle) : sqlite3_errstr(rc);
    err_set("db: %s: %s (file %s)", what, detail, s->path);
    return db_sqlite_code(rc);
}

/* The prepared statement id, reset and ready to bind; NULL with err_set on failure (*code). */
static sqlite3_stmt *db_sqlite_stmt(struct db_sqlite *s, enum db_sqlite_stmt id, int *code)
{
    if (s->stmts[id] == NULL) {
        int rc = sqlite3_prepare_v3(s->handle, db_sqlite_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &s->stmts[id], NULL);
        if (rc != SQLITE_OK) {
            *code = db_sqlite_fail(s, rc, "prepare");
            sqlite3_finalize(s->stmts[id]);
            s->stmts[id] = NULL;
            return NULL;
        }
    }
    return s->stmts[id];
}

static void db_sqlite_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Runs a statement that returns no rows (BEGIN, COMMIT, a write). */
static int db_sqlite_run(struct db_sqlite *s, enum db_sqlite_stmt id, const char *what)
{
    int code = DB_ERR, rc;
    sqlite3_stmt *st = db_sqlite_stmt(s, id, &code);
    if (st == NULL) return code;
    rc = sqlite3_step(st);
    db_sqlite_done(st);
    if (rc != SQLITE_DONE) return db_sqlite_fail(s, rc, what);
    return DB_OK;
}

/* Ends a failed transaction; its own failure changes nothing for the caller. */
static void db_sqlite_rollback(struct db_sqlite *s)
{
    if (!sqlite3_get_autocommit(s->handle)) (void)db_sqlite_run(s, ST_ROLLBACK, "rollback");
}

/* Runs a statement returning one integer (an absent row is 0). */
static int db_sqlite_int(struct db_sqlite *s, enum db_sqlite_stmt id, const char *what,
                         int64_t *out)
{
    int code = DB_ERR, rc;
    sqlite3_stmt *st = db_sqlite_stmt(s, id, &code);
    *out = 0;
    if (st == NULL) return code;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = SQLITE_DONE;
    }
    db_sqlite_done(st);
    if (rc != SQLITE_DONE) return db_sqlite_fail(s, rc, what);
    return DB_OK;
}

/* Runs one PRAGMA (or other statement) whose rows are of no interest; *first gets the text of
 * the first column of the first row if first is not NULL. */
static int db_sqlite_pragma(struct db_sqlite *s, const char *sql, char *first, size_t first_size)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->handle, sql, -1, &st, NULL);
    if (first) first[0] = '\0';
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            if (first && first[0] == '\0' && t) snprintf(first, first_size, "%s", (const char *)t);
        }
        if (rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) return db_sqlite_fail(s, rc, sql);
    return DB_OK;
}

/* Applies the migrations the file lacks, one transaction each (see db.h). */
static int db_sqlite_migrate(struct db_sqlite *s)
{
    for (;;) {
        int64_t version;
        char *msg = NULL;
        int rc;

        /* IMMEDIATE: two processes opening a new file must not both apply version 1. */
        rc = db_sqlite_run(s, ST_BEGIN_IMMEDIATE, "begin migration");
        if (rc != DB_OK) return rc;
        rc = sqlite3_exec(s->handle,
                          "CREATE TABLE IF NOT EXISTS schema_version ("
                          "  version INTEGER PRIMARY KEY,"
                          "  applied_at INTEGER NOT NULL)",
                          NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            rc = db_sqlite_fail(s, rc, "create schema_version");
            db_sqlite_rollback(s);
            return rc;
        }
        rc = db_sqlite_int(s, ST_VERSION, "read schema version", &version);
        if (rc != DB_OK) {
            db_sqlite_rollback(s);
            return rc;
        }
        if (version > DB_SCHEMA_VERSION || version < 0) {
            db_sqlite_rollback(s);
            err_set("db: schema version %lld of %s is not one this binary knows (it knows up to "
                    "%d); refusing to use it",
                    (long long)version, s->path, DB_SCHEMA_VERSION);
            return DB_CORRUPT;
        }
        if (version == DB_SCHEMA_VERSION) return db_sqlite_run(s, ST_COMMIT, "commit");

        rc = sqlite3_exec(s->handle, db_sqlite_migrations[version], NULL, NULL, &msg);
        if (rc == SQLITE_OK) {
            char sql[128];
            snprintf(sql, sizeof sql,
                     "INSERT INTO schema_version (version, applied_at) VALUES (%lld, %lld)",
                     (long long)version + 1, (long long)time(NULL));
            rc = sqlite3_exec(s->handle, sql, NULL, NULL, &msg);
        }
        if (rc != SQLITE_OK) {
            err_set("db: migration to schema version %lld failed: %s (file %s)",
                    (long long)version + 1, msg ? msg : sqlite3_errstr(rc), s->path);
            sqlite3_free(msg);
            db_sqlite_rollback(s);
            return db_sqlite_code(rc);
        }
        rc = db_sqlite_run(s, ST_COMMIT, "commit migration");
        if (rc != DB_OK) {
            db_sqlite_rollback(s);
            return rc;
        }
        log_info("msg=\"database migrated\" file=%s schema_version=%lld", s->path,
                 (long long)version + 1);
    }
}

static void db_sqlite_close(void *state)
{
    struct db_sqlite *s = state;
    size_t i;
    if (s == NULL) return;
    for (i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->stmts[i]);
    if (s->handle && sqlite3_close(s->handle) != SQLITE_OK)
        log_warn("msg=\"database close failed\" file=%s reason=\"%s\"", s->path,
                 sqlite3_errmsg(s->handle));
    free(s->path);
    free(s);
}

/* Parses the options after '?'; 0, or -1 with err_set. */
static int db_sqlite_options(const char *q, long *busy_ms, const char **sync)
{
    struct kv_option opt;
    while (kv_option_next(&q, &opt)) {
        if (opt.name_len == 15 && memcmp(opt.name, "busy_timeout_ms", 15) == 0) {
            char num[24], *end;
            long v;
            snprintf(num, sizeof num, "%.*s", (int)opt.value_len, opt.value);
            errno = 0;
            v = strtol(num, &end, 10);
            if (errno || end == num || *end || v < 0 || v > INT_MAX) {
                err_set("db: busy_timeout_ms=\"%s\" is not a number of milliseconds", num);
                return -1;
            }
            *busy_ms = v;
        } else if (opt.name_len == 4 && memcmp(opt.name, "sync", 4) == 0) {
            if (opt.value_len == 4 && memcmp(opt.value, "full", 4) == 0)
                *sync = "FULL";
            else if (opt.value_len == 6 && memcmp(opt.value, "normal", 6) == 0)
                *sync = "NORMAL";
            else {
                err_set("db: sync=\"%.*s\" (expected full or normal)", (int)opt.value_len,
                        opt.value);
                return -1;
            }
        } else {
            err_set("db: unknown option \"%.*s\" in the database URI", (int)opt.name_len, opt.name);
            return -1;
        }
    }
    return 0;
}

static int db_sqlite_open(const char *spec, void **state)
{
    struct db_sqlite *s;
    const char *q = strchr(spec, '?');
    const char *sync = "NORMAL";
    long busy_ms = DB_SQLITE_BUSY_TIMEOUT_MS;
    char mode[32], sql[64];
    int rc;

    *state = NULL;
    if (q && db_sqlite_options(q + 1, &busy_ms, &sync) != 0) return DB_ERR;
    s = xcalloc(1, sizeof *s);
    s->path = q ? xstrndup(spec, (size_t)(q - spec)) : xstrdup(spec);

    rc = sqlite3_open_v2(s->path, &s->handle,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = db_sqlite_fail(s, rc, "cannot open");
        goto fail;
    }
    sqlite3_extended_result_codes(s->handle, 1);
    sqlite3_busy_timeout(s->handle, (int)busy_ms);
    if (sqlite3_db_readonly(s->handle, "main") == 1) {
        err_set("db: cannot open: the file is read-only for this process (file %s)", s->path);
        rc = DB_ERR;
        goto fail;
    }
    /* The first statement reads the header: a file that is not a database fails here. */
    rc = db_sqlite_pragma(s, "PRAGMA journal_mode=WAL", mode, sizeof mode);
    if (rc != DB_OK) goto fail;
    if (strcmp(mode, "wal") != 0) {
        err_set("db: cannot switch to WAL mode (journal_mode is \"%s\") (file %s)", mode, s->path);
        rc = DB_ERR;
        goto fail;
    }
    snprintf(sql, sizeof sql, "PRAGMA synchronous=%s", sync);
    if ((rc = db_sqlite_pragma(s, sql, NULL, 0)) != DB_OK) goto fail;
    if ((rc = db_sqlite_pragma(s, "PRAGMA foreign_keys=ON", NULL, 0)) != DB_OK) goto fail;
    if ((rc = db_sqlite_migrate(s)) != DB_OK) goto fail;
    *state = s;
    return DB_OK;

fail:
    db_sqlite_close(s);
    return rc;
}

static int db_sqlite_schema_version(void *state, int *version)
{
    int64_t v;
    int rc = db_sqlite_int(state, ST_VERSION, "read schema version", &v);
    *version = (int)v;
    return rc;
}

static char *db_sqlite_column(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return xstrdup(t ? (const char *)t : "");
}

static int db_sqlite_setting_get(void *state, const char *scope, const char *key, struct buf *value,
                                 int64_t *updated_at, bool *found)
{
    struct db_sqlite *s = state;
    int code = DB_ERR, rc;
    sqlite3_stmt *st = db_sqlite_stmt(s, ST_SETTING_GET, &code);
    if (st == NULL) return code;
    sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        buf_append(value, t ? (const char *)t : "", (size_t)sqlite3_column_bytes(st, 0));
        *updated_at = sqlite3_column_int64(st, 1);
        *found = true;
        rc = SQLITE_DONE;
    }
    db_sqlite_done(st);
    if (rc != SQLITE_DONE) return db_sqlite_fail(s, rc, "read setting");
    return DB_OK;
}

static int db_sqlite_setting_list(void *state, const char *scope, struct db_setting_list *out,
                                  int64_t *generation)
{
    struct db_sqlite *s = state;
    int code = DB_ERR, rc;
    size_t cap = 0;
    sqlite3_stmt *st;

    /* One read transaction: the rows and the generation describe the same snapshot. */
    rc = db_sqlite_run(s, ST_BEGIN, "begin");
    if (rc != DB_OK) return rc;
    rc = db_sqlite_int(s, ST_GENERATION_GET, "read settings generation", generation);
    if (rc != DB_OK) goto fail;
    st = db_sqlite_stmt(s, scope ? ST_SETTING_LIST_SCOPE : ST_SETTING_LIST_ALL, &code);
    if (st == NULL) {
        rc = code;
        goto fail;
    }
    if (scope) sqlite3_bind_text(st, 1, scope, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct db_setting *row;
        if (out->n == cap) {
            cap = cap ? cap * 2 : 32;
            out->items = xrealloc(out->items, cap * sizeof *out->items);
        }
        row = &out->items[out->n++];
        row->scope = db_sqlite_column(st, 0);
        row->key = db_sqlite_column(st, 1);
        row->value = db_sqlite_column(st, 2);
        row->updated_at = sqlite3_column_int64(st, 3);
    }
    db_sqlite_done(st);
    if (rc != SQLITE_DONE) {
        rc = db_sqlite_fail(s, rc, "list settings");
        goto fail;
    }
    rc = db_sqlite_run(s, ST_COMMIT, "commit");
    if (rc == DB_OK) return DB_OK;
fail:
    db_sqlite_rollback(s);
    return rc;
}

static int db_sqlite_settings_write(void *state, const struct db_setting_change *changes, size_t n,
                                    int64_t expect_generation, int64_t now)
{
    struct db_sqlite *s = state;
    int64_t generation;
    size_t i;
    int code = DB_ERR, rc;

    assert(n > 0);
    rc = db_sqlite_run(s, ST_BEGIN_IMMEDIATE, "begin write");
    if (rc != DB_OK) return rc;
    rc = db_sqlite_int(s, ST_GENERATION_GET, "read settings generation", &generation);
    if (rc != DB_OK) goto fail;
    if (expect_generation >= 0 && generation != expect_generation) {
        err_set("db: settings changed while this change was being checked (generation %lld, "
                "expected %lld); try again",
                (long long)generation, (long long)expect_generation);
        rc = DB_CONFLICT;
        goto fail;
    }
    for (i = 0; i < n; i++) {
        const struct db_setting_change *c = &changes[i];
        sqlite3_stmt *st = db_sqlite_stmt(s, c->value ? ST_SETTING_PUT : ST_SETTING_DEL, &code);
        if (st == NULL) {
            rc = code;
            goto fail;
        }
        sqlite3_bind_text(st, 1, c->scope, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, c->key, -1, SQLITE_STATIC);
        if (c->value) {
            sqlite3_bind_text(st, 3, c->value, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, now);
        }
        rc = sqlite3_step(st);
        db_sqlite_done(st);
        if (rc != SQLITE_DONE) {
            rc = db_sqlite_fail(s, rc, c->value ? "write setting" : "delete setting");
            goto fail;
        }
    }
    rc = db_sqlite_run(s, ST_GENERATION_BUMP, "bump settings generation");
    if (rc != DB_OK) goto fail;
    rc = db_sqlite_run(s, ST_COMMIT, "commit");
    if (rc == DB_OK) return DB_OK;
fail:
    db_sqlite_rollback(s);
    return rc;
}

static int db_sqlite_settings_generation(void *state, int64_t *generation)
{
    return db_sqlite_int(state, ST_GENERATION_GET, "read settings generation", generation);
}

/* ---- the message log, the audit log, sender rules ---- */

/* A copy of a text column, or NULL for SQL NULL (absent stays absent). */
static char *db_sqlite_column_or_null(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? xstrndup((const char *)t, (size_t)sqlite3_column_bytes(st, col)) : NULL;
}

/* Binds s, or NULL for NULL; the statement reads s only until it is reset. */
static void db_sqlite_bind_text(sqlite3_stmt *st, int index, const char *s)
{
    if (s)
        sqlite3_bind_text(st, index, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, index);
}

/* Fills out from the current row of a DB_SQLITE_MESSAGE_COLUMNS select. */
static void db_sqlite_message_row(sqlite3_stmt *st, struct db_message *out)
{
    out->id = sqlite3_column_int64(st, 0);
    out->time = sqlite3_column_int64(st, 1);
    out->node = db_sqlite_column_or_null(st, 2);
    out->queue_id = db_sqlite_column_or_null(st, 3);
    out->client_ip = db_sqlite_column_or_null(st, 4);
    out->helo = db_sqlite_column_or_null(st, 5);
    out->sender = db_sqlite_column_or_null(st, 6);
    out->recipients = db_sqlite_column_or_null(st, 7);
    out->size_bytes = sqlite3_column_int64(st, 8);
    out->subject = db_sqlite_column_or_null(st, 9);
    out->score = sqlite3_column_double(st, 10);
    out->action = db_sqlite_column_or_null(st, 11);
    out->decided_by = db_sqlite_column_or_null(st, 12);
    out->symbols = db_sqlite_column_or_null(st, 13);
    out->capture_path = db_sqlite_column_or_null(st, 14);
    out->stage = db_sqlite_column_or_null(st, 15);
    out->reason = db_sqlite_column_or_null(st, 16);
}

/* Grows an array of items of item_size so that one more fits; *cap doubles. */
static void *db_sqlite_grow(void *items, size_t n, size_t *cap, size_t item_size)
{
    if (n < *cap) return items;
    *cap = *cap ? *cap * 2 : 32;
    return xrealloc(items, *cap * item_size);
}

/* Runs a bound single-statement write (autocommit: one implicit transaction) and resets it. */
static int db_sqlite_step_write(struct db_sqlite *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    db_sqlite_done(st);
    if (rc != SQLITE_DONE) return db_sqlite_fail(s, rc, what);
    return DB_OK;
}

/*
 * One row is a single INSERT in autocommit: already atomic, and two statements cheaper than an
 * explicit transaction (the gateway's writer commits batches of one whenever one message is in
 * flight). More rows run in BEGIN IMMEDIATE ... COMMIT with the insert statement rebound per
 * row: one write lock, one WAL commit.
 */
static int db_sqlite_messages_insert(void *state, const struct db_message *rows, size_t n,
                                     int64_t now, int64_t *ids)
{
    struct db_sqlite *s = state;
    int code = DB_ERR, rc;
    sqlite3_stmt *st;
    size_t i;

    assert(n > 0);
    if (n > 1 && (rc = db_sqlite_run(s, ST_BEGIN_IMMEDIATE, "begin write")) != DB_OK) return rc;
    st = db_sqlite_stmt(s, ST_MESSAGE_INSERT, &code);
    if (st == NULL) {
        rc = code;
        goto fail;
    }
    for (i = 0; i < n; i++) {
        const struct db_message *msg = &rows[i];
        sqlite3_bind_int64(st, 1, msg->time ? msg->time : now);
        db_sqlite_bind_text(st, 2, msg->node);
        db_sqlite_bind_text(st, 3, msg->queue_id);
        db_sqlite_bind_text(st, 4, msg->client_ip);
        db_sqlite_bind_text(st, 5, msg->helo);
        db_sqlite_bind_text(st, 6, msg->sender);
        db_sqlite_bind_text(st, 7, msg->recipients);
        sqlite3_bind_int64(st, 8, msg->size_bytes);
        db_sqlite_bind_text(st, 9, msg->subject);
        sqlite3_bind_double(st, 10, msg->score);
        db_sqlite_bind_text(st, 11, msg->action);
        db_sqlite_bind_text(st, 12, msg->decided_by);
        db_sqlite_bind_text(st, 13, msg->symbols);
        db_sqlite_bind_text(st, 14, msg->capture_path);
        db_sqlite_bind_text(st, 15, msg->stage);
        db_sqlite_bind_text(st, 16, msg->reason);
        rc = db_sqlite_step_write(s, st, "insert message");
        if (rc != DB_OK) goto fail;
        /* The connection belongs to one thread (db.h), so the last rowid is this insert's. */
        if (ids) ids[i] = sqlite3_last_insert_rowid(s->handle);
    }
    rc = n > 1 ? db_sqlite_run(s, ST_COMMIT, "commit") : DB_OK;
    if (rc == DB_OK) return DB_OK;
fail:
    db_sqlite_rollback(s); /* nothing to undo after a failed autocommit row */
    return rc;
}

static int db_sqlite_message_get_by_queue_id(void *state, const char *queue_id,
                                             struct db_message *out, bool *found)
{
    struct db_sqlite *s = state;
    int code = DB_ERR, rc;
    sqlite3_stmt *st = db_sqlite_stmt(s, ST_MESSAGE_BY_QUEUE_ID, &code);
    if (st == NULL) return code;
    sqlite3_bind_text(st, 1, queue_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        db_sqlite_message_row(st, out);
        *found = true;
        rc = SQLITE_DONE;
    }
    db_sqlite_done(st);
    if (rc != SQLITE_DONE) return db_sqlite_fail(s, rc, "read message");
    return DB_OK;
}

static int db_sqlite_messages_list(void *state, size_t offset, size_t limit,
                                   struct db_message_list *out)
{
    struct db_sqlite *s = state;
    int code = DB_ERR, rc;
    size_t cap = 0;
    sqlite3_stmt *st = db_sqlite_stmt(s, ST_MESSAGES_LIST, &code);
    if (st == NULL) return code;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)offset);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        out->items = db_sqlite_grow(out->items, out->n, &cap, sizeof *out->items);
        db_sqlite_message_row(st, &out->items[out->n++]);
    }
    db_sqlite_done(st);
    if (rc != SQLITE_DONE) return db_sqlite_fail(s, rc, "list messages");
    return DB_OK;
}

static int db_sqlite_messages_delete_older_than(void *state, int64_t cutoff, int64_t *deleted)
{
    struct db_sqlite *s = state;
    int code = DB_ERR, rc;
    int64_t changed;
    sqlite3_stmt *st;

    /* Each batch is its own (autocommit) transaction, so writers wait at most one batch; a
     * failure leaves the batches already done deleted, which a later run continues. */
    *deleted = 0;
    do {
        st = db_sqlite_stmt(s, ST_MESSAGES_DELETE_OLDER, &code);
        if (st == NULL) return code;
        sqlite3_bind_int64(st, 1, cutoff);
        sqlite3_bind_int64(st, 2, DB_PURGE_BATCH_ROWS);
        rc = db_sqlite_step_write(s, st, "delete old messages");
        if (rc != DB_OK) return rc;
        changed = sqlite3_changes64(s->handle);
        *deleted += changed;
    } while (changed == DB_PURGE_BATCH_ROWS);
    return DB_OK;
}

static int db_sqlite_audit_add(void *state, int64_t now, const char *actor, const char *action,
                               const char *target, const char *details, int64_t *id)
{
    struct db_sqlite *s = state;
    int code = DB_ERR, rc;
    sqlite3_stmt *st = db_sqlite_stmt(s, ST_AUDIT_INSERT, &code);
    if (st == NULL) return code;
    sqlite3_bind_int64(st, 1, now);
    db_sqlite_bind_text(st, 2, actor);
    db_sqlite_bind_text(st, 3, action);
    db_sqlite_bind_text(st, 4, target);
    db_sqlite_bind_text(st, 5, details);
    rc = db_sqlite_step_write(s, st, "add audit row");
    if (rc == DB_OK) *id = sqlite3_last_insert_rowid(s->handle);
    return rc;
}

static int db_sqlite_audit_list(void *state, size_t offset, size_t limit, struct db_audit_list *out)
{
    struct db_sqlite *s = state;
    int code = DB_ERR, rc;
    size_t cap = 0;
    sqlite3_stmt *st = db_sqlite_stmt(s, ST_AUDIT_LIST, &code);
    if (st == NULL) return code;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)offset);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct db_audit *row;
        out->items = db_sqlite_grow(out->items, out->n, &cap, sizeof *out->items);
        row = &out->items[out->n++];
        row->id = sqlite3_column_int64(st, 0);
        row->time = sqlite3_column_int64(st, 1);
        row->actor = db_sqlite_column_or_null(st, 2);
        row->action = db_sqlite_column_or_null(st, 3);
        row->target = db_sqlite_column_or_null(st, 4);
        row->details = db_sqlite_column_or_null(st, 5);
    }
    db_sqlite_done(st);
    if (rc != SQLITE_DONE) return db_sqlite_fail(s, rc, "list audit rows");
    return DB_OK;
}

static int db_sqlite_sender_rule_add(void *state, int64_t now, const char *kind, const char *value,
                                     const char *action, const char *note, int64_t *id)
{
    struct db_sqlite *s = state;
    int code = DB_ERR, rc;
    sqlite3_stmt *st;

    /* The upsert and the id read form one transaction: the id is that of the row written. */
    rc = db_sqlite_run(s, ST_BEGIN_IMMEDIATE, "begin write");
    if (rc != DB_OK) return rc;
    st = db_sqlite_stmt(s, ST_SENDER_RULE_PUT, &code);
    if (st == NULL) {
        rc = code;
        goto fail;
    }
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, action, -1, SQLITE_STATIC);
    db_sqlite_bind_text(st, 4, note);
    sqlite3_bind_int64(st, 5, now);
    rc = db_sqlite_step_write(s, st, "write sender rule");
    if (rc != DB_OK) goto fail;
    st = db_sqlite_stmt(s, ST_SENDER_RULE_ID, &code);
    if (st == NULL) {
        rc = code;
        goto fail;
    }
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) *id = sqlite3_column_int64(st, 0);
    db_sqlite_done(st);
    if (rc != SQLITE_ROW) {
        rc = db_sqlite_fail(s, rc, "read sender rule id");
        goto fail;
    }
    rc = db_sqlite_run(s, ST_SENDER_RULES_GEN_BUMP, "bump sender rules generation");
    if (rc != DB_OK) goto fail;
    rc = db_sqlite_run(s, ST_COMMIT, "commit");
    if (rc == DB_OK) return DB_OK;
fail:
    db_sqlite_rollback(s);
    return rc;
}

static int db_sqlite_sender_rule_delete(void *state, int64_t id, bool *existed)
{
    struct db_sqlite *s = state;
    int code = DB_ERR, rc;
    sqlite3_stmt *st;

    /* The delete and the generation bump commit together: a reader that sees the row gone
     * also sees the new generation. */
    rc = db_sqlite_run(s, ST_BEGIN_IMMEDIATE, "begin write");
    if (rc != DB_OK) return rc;
    st = db_sqlite_stmt(s, ST_SENDER_RULE_DEL, &code);
    if (st == NULL) {
        rc = code;
        goto fail;
    }
    sqlite3_bind_int64(st, 1, id);
    rc = db_sqlite_step_write(s, st, "delete sender rule");
    if (rc != DB_OK) goto fail;
    *existed = sqlite3_changes64(s->handle) > 0;
    if (*existed) {
        rc = db_sqlite_run(s, ST_SENDER_RULES_GEN_BUMP, "bump sender rules generation");
        if (rc != DB_OK) goto fail;
    }
    rc = db_sqlite_run(s, ST_COMMIT, "commit");
    if (rc == DB_OK) return DB_OK;
fail:
    *existed = false;
    db_sqlite_rollback(s);
    return rc;
}

static int db_sqlite_sender_rule_list(void *state, struct db_sender_rule_list *out)
{
    struct db_sqlite *s = state;
    int code = DB_ERR, rc;
    size_t cap = 0;
    sqlite3_stmt *st = db_sqlite_stmt(s, ST_SENDER_RULE_LIST, &code);
    if (st == NULL) return code;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct db_sender_rule *row;
        out->items = db_sqlite_grow(out->items, out->n, &cap, sizeof *out->items);
        row = &out->items[out->n++];
        row->id = sqlite3_column_int64(st, 0);
        row->kind = db_sqlite_column_or_null(st, 1);
        row->value = db_sqlite_column_or_null(st, 2);
        row->action = db_sqlite_column_or_null(st, 3);
        row->note = db_sqlite_column_or_null(st, 4);
        row->created = sqlite3_column_int64(st, 5);
    }
    db_sqlite_done(st);
    if (rc != SQLITE_DONE) return db_sqlite_fail(s, rc, "list sender rules");
    return DB_OK;
}

static int db_sqlite_sender_rules_generation(void *state, int64_t *generation)
{
    return db_sqlite_int(state, ST_SENDER_RULES_GEN_GET, "read sender rules generation",
                         generation);
}

const struct db_ops db_sqlite_ops = {
    .name = "sqlite",
    .open = db_sqlite_open,
    .close = db_sqlite_close,
    .schema_version = db_sqlite_schema_version,
    .setting_get = db_sqlite_setting_get,
    .setting_list = db_sqlite_setting_list,
    .settings_write = db_sqlite_settings_write,
    .settings_generation = db_sqlite_settings_generation,
    .messages_insert = db_sqlite_messages_insert,
    .message_get_by_queue_id = db_sqlite_message_get_by_queue_id,
    .messages_list = db_sqlite_messages_list,
    .messages_delete_older_than = db_sqlite_messages_delete_older_than,
    .audit_add = db_sqlite_audit_add,
    .audit_list = db_sqlite_audit_list,
    .sender_rule_add = db_sqlite_sender_rule_add,
    .sender_rule_delete = db_sqlite_sender_rule_delete,
    .sender_rule_list = db_sqlite_sender_rule_list,
    .sender_rules_generation = db_sqlite_sender_rules_generation,
};
