/*
 * db_backend - what a records backend implements.
 *
 * Private to src/store: db.c (the front) picks a backend from the URI and
 * dispatches every db.h call to one struct db_ops, like kv_backend.h. The
 * front has already checked arguments (sizes, valid text, non-empty change
 * lists) before a backend sees them, so backends only assert these.
 *
 * A backend's private state is an opaque pointer it returns from open() and
 * gets back in every other call; it owns it until close(). Every function
 * returns DB_OK or a negative DB_* code and sets err_set() on failure.
 *
 * Migrations: each backend carries its own SQL for schema versions
 * 1..DB_SCHEMA_VERSION (dialects differ) but the versions mean the same
 * tables and columns in every backend, so records can be copied between
 * them. open() must leave the database at exactly DB_SCHEMA_VERSION.
 */
#ifndef MXW_DB_BACKEND_H
#define MXW_DB_BACKEND_H

#include "store/db.h"

#include <stdbool.h>
#include <stdint.h>

struct db_ops {
    const char *name; /* "sqlite" */
    /* spec: the URI after "sqlite:". Opens, configures and migrates. On success *state is owned
     * by the backend. */
    int (*open)(const char *spec, void **state);
    /* Frees state and everything it holds. */
    void (*close)(void *state);
    int (*schema_version)(void *state, int *version);
    int (*setting_get)(void *state, const char *scope, const char *key, struct buf *value,
                       int64_t *updated_at, bool *found);
    /* scope NULL: all. out is empty on entry. */
    int (*setting_list)(void *state, const char *scope, struct db_setting_list *out,
                        int64_t *generation);
    /* n >= 1; now is the updated_at of every row written. */
    int (*settings_write)(void *state, const struct db_setting_change *changes, size_t n,
                          int64_t expect_generation, int64_t now);
    int (*settings_generation)(void *state, int64_t *generation);

    /* The message log. n >= 1 rows in one transaction, all or nothing; a row whose time is 0
     * gets now. ids (may be NULL) gets the n ids in order. */
    int (*messages_insert)(void *state, const struct db_message *rows, size_t n, int64_t now,
                           int64_t *ids);
    /* out is zeroed and *found false on entry. */
    int (*message_get_by_queue_id)(void *state, const char *queue_id, struct db_message *out,
                                   bool *found);
    /* out is empty on entry; 1 <= limit <= DB_PAGE_MAX. */
    int (*messages_list)(void *state, size_t offset, size_t limit, struct db_message_list *out);
    /* In batches of DB_PURGE_BATCH_ROWS, each its own transaction. */
    int (*messages_delete_older_than)(void *state, int64_t cutoff, int64_t *deleted);

    /* The audit log; now is the row's time. */
    int (*audit_add)(void *state, int64_t now, const char *actor, const char *action,
                     const char *target, const char *details, int64_t *id);
    int (*audit_list)(void *state, size_t offset, size_t limit, struct db_audit_list *out);

    /* Sender rules; value is already normalised, now is the created time. */
    int (*sender_rule_add)(void *state, int64_t now, const char *kind, const char *value,
                           const char *action, const char *note, int64_t *id);
    int (*sender_rule_delete)(void *state, int64_t id, bool *existed);
    int (*sender_rule_list)(void *state, struct db_sender_rule_list *out);
    /* add and delete bump it in the transaction of their change (delete only if a row went). */
    int (*sender_rules_generation)(void *state, int64_t *generation);
};

extern const struct db_ops db_sqlite_ops;

#endif
