/*
 * db - the front of the records store: picks a backend from the URI and
 * checks every argument once so backends need not. See db.h.
 *
 * URIs: "sqlite:PATH[?opts]" goes to db_sqlite.c (after creating PATH's
 * directory, so the embedded default just works); "postgresql://" and
 * "postgres://" are recognised and refused until that backend exists;
 * anything else is DB_ERR with the forms we accept.
 */
#include "store/db.h"
#include "store/db_backend.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/log.h"
#include "core/utf8.h"
#include "core/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct db {
    const struct db_ops *ops;
    void *state; /* owned by ops; freed by ops->close */
};

int db_open(const char *uri, struct db **out)
{
    const struct db_ops *ops;
    const char *spec;
    void *state = NULL;
    int rc;

    *out = NULL;
    if (uri == NULL || *uri == '\0') {
        err_set("db: empty database URI");
        return DB_ERR;
    }
    if (strncmp(uri, "sqlite:", 7) == 0) {
        char path[4096];
        ops = &db_sqlite_ops;
        spec = uri + 7;
        snprintf(path, sizeof path, "%.*s", (int)strcspn(spec, "?"), spec);
        if (path[0] == '\0') {
            err_set("db: no file name in \"%.100s\"", uri);
            return DB_ERR;
        }
        if (file_mkdir_parents(path) != 0) return DB_ERR;
    } else if (strncmp(uri, "postgresql://", 13) == 0 || strncmp(uri, "postgres://", 11) == 0) {
        err_set("db: the PostgreSQL backend is not available in this build (\"%.100s\")", uri);
        return DB_ERR;
    } else {
        err_set("db: unknown database URI \"%.100s\" (expected sqlite:PATH)", uri);
        return DB_ERR;
    }
    rc = ops->open(spec, &state);
    if (rc != DB_OK) return rc;
    *out = xmalloc(sizeof **out);
    (*out)->ops = ops;
    (*out)->state = state;
    return DB_OK;
}

void db_close(struct db *db)
{
    if (db == NULL) return;
    db->ops->close(db->state);
    free(db);
}

const char *db_backend_name(const struct db *db)
{
    return db->ops->name;
}

int db_schema_version(struct db *db, int *version)
{
    *version = 0;
    return db->ops->schema_version(db->state, version);
}

/* 0 if s is usable text of 1..max bytes (empty_ok: 0..max); else -1 with err_set naming what. */
static int db_check_text(const char *what, const char *s, size_t max, bool empty_ok)
{
    size_t len, i;
    if (s == NULL || (*s == '\0' && !empty_ok)) {
        err_set("db: empty %s", what);
        return -1;
    }
    len = strnlen(s, max + 1);
    if (len > max) {
        err_set("db: %s \"%.40s...\" longer than %zu bytes", what, s, max);
        return -1;
    }
    if (!utf8_valid(s, len)) {
        err_set("db: %s is not valid UTF-8", what);
        return -1;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            err_set("db: %s contains a control character", what);
            return -1;
        }
    }
    return 0;
}

static int db_check_scope_key(const char *scope, const char *key)
{
    if (db_check_text("scope", scope, DB_MAX_SCOPE, false) != 0) return -1;
    return db_check_text("key", key, DB_MAX_KEY, false);
}

int db_setting_get(struct db *db, const char *scope, const char *key, struct buf *value,
                   int64_t *updated_at, bool *found)
{
    int64_t ignored;
    *found = false;
    if (db_check_scope_key(scope, key) != 0) return DB_ERR;
    return db->ops->setting_get(db->state, scope, key, value, updated_at ? updated_at : &ignored,
                                found);
}

int db_setting_list(struct db *db, const char *scope, struct db_setting_list *out,
                    int64_t *generation)
{
    int64_t ignored;
    memset(out, 0, sizeof *out);
    if (scope && db_check_text("scope", scope, DB_MAX_SCOPE, false) != 0) return DB_ERR;
    return db->ops->setting_list(db->state, scope, out, generation ? generation : &ignored);
}

void db_setting_list_free(struct db_setting_list *list)
{
    size_t i;
    if (list == NULL) return;
    for (i = 0; i < list->n; i++) {
        free(list->items[i].scope);
        free(list->items[i].key);
        free(list->items[i].value);
    }
    free(list->items);
    list->items = NULL;
    list->n = 0;
}

int db_settings_write(struct db *db, const struct db_setting_change *changes, size_t n,
                      int64_t expect_generation)
{
    size_t i;
    if (n == 0) {
        err_set("db: a settings write with no changes");
        return DB_ERR;
    }
    for (i = 0; i < n; i++) {
        if (db_check_scope_key(changes[i].scope, changes[i].key) != 0) return DB_ERR;
        /* An empty value is a value (e.g. "no subject prefix"); NULL deletes. */
        if (changes[i].value && db_check_text("value", changes[i].value, DB_MAX_VALUE, true) != 0)
            return DB_ERR;
    }
    return db->ops->settings_write(db->state, changes, n, expect_generation, (int64_t)time(NULL));
}

int db_setting_set(struct db *db, const char *scope, const char *key, const char *value)
{
    struct db_setting_change c = {scope, key, value};
    if (value == NULL) {
        err_set("db: no value to set for %.100s %.64s", scope ? scope : "", key ? key : "");
        return DB_ERR;
    }
    return db_settings_write(db, &c, 1, -1);
}

int db_setting_delete(struct db *db, const char *scope, const char *key, bool *existed)
{
    struct db_setting_change c = {scope, key, NULL};
    struct buf ignored = {0};
    bool found = false;
    int rc;

    /* existed is informational (for messages), so reading it outside the write is fine. */
    rc = db_setting_get(db, scope, key, &ignored, NULL, &found);
    buf_free(&ignored);
    if (existed) *existed = found;
    if (rc != DB_OK) return rc;
    if (!found) return DB_OK;
    return db_settings_write(db, &c, 1, -1);
}

int db_settings_generation(struct db *db, int64_t *generation)
{
    *generation = 0;
    return db->ops->settings_generation(db->state, generation);
}

/* ---- the message log, the audit log, sender rules ---- */

/* Like db_check_text() for an optional field (NULL is fine); tabs_ok allows TAB, which a decoded
 * subject or a free-text reason may hold. */
static int db_check_field(const char *what, const char *s, size_t max, bool tabs_ok)
{
    size_t len, i;
    if (s == NULL) return 0;
    len = strnlen(s, max + 1);
    if (len > max) {
        err_set("db: %s \"%.40s...\" longer than %zu bytes", what, s, max);
        return -1;
    }
    if (!utf8_valid(s, len)) {
        err_set("db: %s is not valid UTF-8", what);
        return -1;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && !(tabs_ok && c == '\t')) || c == 0x7f) {
            err_set("db: %s contains a control character", what);
            return -1;
        }
    }
    return 0;
}

/* True if s is one of the NULL-terminated words. */
static bool db_one_of(const char *s, const char *const *words)
{
    for (; s && *words; words++)
        if (strcmp(s, *words) == 0) return true;
    return false;
}

static int db_check_page(size_t limit)
{
    if (limit == 0 || limit > DB_PAGE_MAX) {
        err_set("db: page size %zu outside 1..%d", limit, DB_PAGE_MAX);
        return -1;
    }
    return 0;
}

int db_message_check(const struct db_message *msg)
{
    static const char *const stages[] = {"connect", "mail", "rcpt", "data", NULL};

    if (!db_one_of(msg->stage, stages)) {
        err_set("db: message stage \"%.40s\" (expected connect, mail, rcpt or data)",
                msg->stage ? msg->stage : "");
        return DB_ERR;
    }
    if (db_check_text("action", msg->action, DB_MAX_FIELD, false) != 0 ||
        db_check_field("node", msg->node, DB_MAX_FIELD, false) != 0 ||
        db_check_field("queue id", msg->queue_id, DB_MAX_FIELD, false) != 0 ||
        db_check_field("client IP", msg->client_ip, DB_MAX_FIELD, false) != 0 ||
        db_check_field("HELO", msg->helo, DB_MAX_FIELD, false) != 0 ||
        db_check_field("sender", msg->sender, DB_MAX_FIELD, false) != 0 ||
        db_check_field("recipients", msg->recipients, DB_MAX_JSON, false) != 0 ||
        db_check_field("subject", msg->subject, DB_MAX_SUBJECT, true) != 0 ||
        db_check_field("decided_by", msg->decided_by, DB_MAX_FIELD, false) != 0 ||
        db_check_field("symbols", msg->symbols, DB_MAX_JSON, true) != 0 ||
        db_check_field("capture path", msg->capture_path, DB_MAX_TEXT, false) != 0 ||
        db_check_field("reason", msg->reason, DB_MAX_TEXT, true) != 0)
        return DB_ERR;
    if (msg->size_bytes < 0) {
        err_set("db: negative message size %lld", (long long)msg->size_bytes);
        return DB_ERR;
    }
    return DB_OK;
}

int db_message_insert(struct db *db, const struct db_message *msg, int64_t *id)
{
    if (db_message_check(msg) != DB_OK) return DB_ERR;
    return db->ops->messages_insert(db->state, msg, 1, (int64_t)time(NULL), id);
}

int db_messages_insert_batch(struct db *db, const struct db_message *rows, size_t n, int64_t *ids)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (db_message_check(&rows[i]) != DB_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", err_msg());
            err_set("%s (row %zu of a batch of %zu; nothing written)", why, i, n);
            return DB_ERR;
        }
    }
    if (n == 0) return DB_OK;
    return db->ops->messages_insert(db->state, rows, n, (int64_t)time(NULL), ids);
}

int db_message_get_by_queue_id(struct db *db, const char *queue_id, struct db_message *out,
                               bool *found)
{
    memset(out, 0, sizeof *out);
    *found = false;
    if (db_check_text("queue id", queue_id, DB_MAX_FIELD, false) != 0) return DB_ERR;
    return db->ops->message_get_by_queue_id(db->state, queue_id, out, found);
}

void db_message_free(struct db_message *msg)
{
    if (msg == NULL) return;
    free(msg->node);
    free(msg->queue_id);
    free(msg->client_ip);
    free(msg->helo);
    free(msg->sender);
    free(msg->recipients);
    free(msg->subject);
    free(msg->action);
    free(msg->decided_by);
    free(msg->symbols);
    free(msg->capture_path);
    free(msg->stage);
    free(msg->reason);
    memset(msg, 0, sizeof *msg);
}

int db_messages_list(struct db *db, size_t offset, size_t limit, struct db_message_list *out)
{
    memset(out, 0, sizeof *out);
    if (db_check_page(limit) != 0) return DB_ERR;
    return db->ops->messages_list(db->state, offset, limit, out);
}

void db_message_list_free(struct db_message_list *list)
{
    size_t i;
    if (list == NULL) return;
    for (i = 0; i < list->n; i++)
        db_message_free(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->n = 0;
}

int db_messages_delete_older_than(struct db *db, int64_t cutoff, int64_t *deleted)
{
    int64_t ignored;
    if (deleted) *deleted = 0;
    return db->ops->messages_delete_older_than(db->state, cutoff, deleted ? deleted : &ignored);
}

int db_audit_add(struct db *db, const char *actor, const char *action, const char *target,
                 const char *details, int64_t *id)
{
    int64_t ignored;
    if (db_check_text("audit actor", actor, DB_MAX_FIELD, false) != 0 ||
        db_check_text("audit action", action, DB_MAX_FIELD, false) != 0 ||
        db_check_field("audit target", target, DB_MAX_TEXT, false) != 0 ||
        db_check_field("audit details", details, DB_MAX_TEXT, true) != 0)
        return DB_ERR;
    return db->ops->audit_add(db->state, (int64_t)time(NULL), actor, action, target, details,
                              id ? id : &ignored);
}

int db_audit_list(struct db *db, size_t offset, size_t limit, struct db_audit_list *out)
{
    memset(out, 0, sizeof *out);
    if (db_check_page(limit) != 0) return DB_ERR;
    return db->ops->audit_list(db->state, offset, limit, out);
}

void db_audit_list_free(struct db_audit_list *list)
{
    size_t i;
    if (list == NULL) return;
    for (i = 0; i < list->n; i++) {
        free(list->items[i].actor);
        free(list->items[i].action);
        free(list->items[i].target);
        free(list->items[i].details);
    }
    free(list->items);
    list->items = NULL;
    list->n = 0;
}

int db_sender_rule_add(struct db *db, const char *kind, const char *value, const char *action,
                       const char *note, int64_t *id)
{
    static const char *const kinds[] = {"address", "domain", "ip", NULL};
    static const char *const actions[] = {"allow", "block", NULL};
    char *norm, *p;
    int64_t ignored;
    int rc;

    if (!db_one_of(kind, kinds)) {
        err_set("db: sender rule kind \"%.40s\" (expected address, domain or ip)",
                kind ? kind : "");
        return DB_ERR;
    }
    if (!db_one_of(action, actions)) {
        err_set("db: sender rule action \"%.40s\" (expected allow or block)", action ? action : "");
        return DB_ERR;
    }
    if (db_check_text("sender rule value", value, DB_MAX_FIELD, false) != 0 ||
        db_check_field("sender rule note", note, DB_MAX_TEXT, true) != 0)
        return DB_ERR;
    if (strcmp(kind, "address") == 0 && strchr(value, '@') == NULL) {
        err_set("db: sender rule address \"%.100s\" has no @", value);
        return DB_ERR;
    }
    /* Lower-case ASCII only: a domain or an IP compares case-insensitively, an address's
     * local part may not, so only the part after its last '@' is folded. */
    norm = xstrdup(value);
    p = strcmp(kind, "address") == 0 ? strrchr(norm, '@') : norm;
    for (; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    rc = db->ops->sender_rule_add(db->state, (int64_t)time(NULL), kind, norm, action, note,
                                  id ? id : &ignored);
    free(norm);
    return rc;
}

int db_sender_rule_delete(struct db *db, int64_t id, bool *existed)
{
    bool ignored;
    if (existed) *existed = false;
    return db->ops->sender_rule_delete(db->state, id, existed ? existed : &ignored);
}

int db_sender_rule_list(struct db *db, struct db_sender_rule_list *out)
{
    memset(out, 0, sizeof *out);
    return db->ops->sender_rule_list(db->state, out);
}

int db_sender_rules_generation(struct db *db, int64_t *generation)
{
    *generation = 0;
    return db->ops->sender_rules_generation(db->state, generation);
}

void db_sender_rule_list_free(struct db_sender_rule_list *list)
{
    size_t i;
    if (list == NULL) return;
    for (i = 0; i < list->n; i++) {
        free(list->items[i].kind);
        free(list->items[i].value);
        free(list->items[i].action);
        free(list->items[i].note);
    }
    free(list->items);
    list->items = NULL;
    list->n = 0;
}
