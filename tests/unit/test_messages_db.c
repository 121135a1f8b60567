/*
 * Tests for the message log, audit log and sender-rule records of
 * src/store/db.c and db_sqlite.c (migration 2): rows round-trip with absent
 * fields kept absent, listings are newest first and paged, retention deletes
 * by age (in batches), the newest row wins for a reused queue id, invalid rows are refused
 * before the database is touched, and sender rules are unique per kind and
 * value with their domain folded to lower case, and every change to them
 * moves the sender-rules generation. Batches (the message-log writer's group
 * commit) write every row in order or none: a row the front refuses, or a
 * fault injected by a trigger halfway through, leaves the log as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "core/log.h"
#include "store/db.h"
#include "sqlite_exec.h"
#include "tmpdir.h"

struct fixture {
    char dir[256];
    char uri[340];
    struct db *db;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL || test_tmpdir_make(f->dir, sizeof f->dir, "msgdb") != 0) return -1;
    snprintf(f->uri, sizeof f->uri, "sqlite:%s/var/mxwarden.db", f->dir);
    if (db_open(f->uri, &f->db) != DB_OK) {
        fprintf(stderr, "db_open: %s\n", err_msg());
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    db_close(f->db);
    test_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

static struct db_message sample(int64_t time, char *queue_id, char *subject)
{
    struct db_message m = {0};
    m.time = time;
    m.node = "mx1";
    m.queue_id = queue_id;
    m.client_ip = "192.0.2.7";
    m.helo = "mail.example.net";
    m.sender = "alice@example.net";
    m.recipients = "[\"bob@test.example\",\"carol@test.example\"]";
    m.size_bytes = 2048;
    m.subject = subject;
    m.score = 7.25;
    m.action = "quarantine";
    m.decided_by = "scan";
    m.symbols = "{\"BAYES_99\":3.5}";
    m.capture_path = "2026/03/15/ABC123.eml";
    m.stage = "data";
    return m;
}

static int64_t insert_ok(struct db *db, const struct db_message *m)
{
    int64_t id = 0;
    if (db_message_insert(db, m, &id) != DB_OK) fail_msg("insert: %s", err_msg());
    assert_true(id > 0);
    return id;
}

static void test_schema_is_version_2_with_the_new_tables(void **state)
{
    struct fixture *f = *state;
    int version = 0;
    assert_int_equal(db_schema_version(f->db, &version), DB_OK);
    assert_int_equal(version, 2);
}

/* A file written by a version-1 binary (settings only) is migrated in place, keeping its rows. */
static void test_version_1_database_is_migrated_keeping_settings(void **state)
{
    struct fixture *f = *state;
    char path[400];
    sqlite3 *raw = NULL;
    struct db *db = NULL;
    struct buf value = {0};
    bool found = false;
    int version = 0;

    snprintf(path, sizeof path, "%s/v1.db", f->dir);
    assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(
            raw,
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at "
            "INTEGER NOT NULL);"
            "INSERT INTO schema_version VALUES (1, 0);"
            "CREATE TABLE settings (scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT "
            "NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (scope, key)) WITHOUT ROWID;"
            "CREATE TABLE generations (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT "
            "NULL) WITHOUT ROWID;"
            "INSERT INTO generations VALUES ('settings', 1);"
            "INSERT INTO settings VALUES ('global', 'subject_prefix', '[SPAM]', 5);",
            NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(raw);
    snprintf(path, sizeof path, "sqlite:%s/v1.db", f->dir);
    assert_int_equal(db_open(path, &db), DB_OK);
    assert_int_equal(db_schema_version(db, &version), DB_OK);
    assert_int_equal(version, 2);
    assert_int_equal(db_setting_get(db, "global", "subject_prefix", &value, NULL, &found), DB_OK);
    assert_true(found);
    assert_string_equal(value.data, "[SPAM]");
    assert_int_equal(db_audit_add(db, "root", "x", NULL, NULL, NULL), DB_OK);
    buf_free(&value);
    db_close(db);
}

static void test_message_round_trips_every_field(void **state)
{
    struct fixture *f = *state;
    struct db_message in = sample(1773576000, "ABC123", "Cheap\twatches \xc3\xa9t\xc3\xa9");
    struct db_message out;
    bool found = false;
    int64_t id = insert_ok(f->db, &in);

    assert_int_equal(db_message_get_by_queue_id(f->db, "ABC123", &out, &found), DB_OK);
    assert_true(found);
    assert_int_equal(out.id, id);
    assert_int_equal(out.time, in.time);
    assert_string_equal(out.node, in.node);
    assert_string_equal(out.queue_id, in.queue_id);
    assert_string_equal(out.client_ip, in.client_ip);
    assert_string_equal(out.helo, in.helo);
    assert_string_equal(out.sender, in.sender);
    assert_string_equal(out.recipients, in.recipients);
    assert_int_equal(out.size_bytes, in.size_bytes);
    assert_string_equal(out.subject, in.subject);
    assert_true(out.score == in.score);
    assert_string_equal(out.action, in.action);
    assert_string_equal(out.decided_by, in.decided_by);
    assert_string_equal(out.symbols, in.symbols);
    assert_string_equal(out.capture_path, in.capture_path);
    assert_string_equal(out.stage, "data");
    assert_null(out.reason);
    db_message_free(&out);
    assert_null(out.node);
}

static void test_early_rejection_keeps_absent_fields_absent(void **state)
{
    struct fixture *f = *state;
    struct db_message in = {0}, out;
    struct db_message_list list;
    bool found;
    in.client_ip = "203.0.113.9";
    in.sender = "";
    in.action = "reject";
    in.stage = "mail";
    in.reason = "554 5.7.1 sender domain blocked";
    insert_ok(f->db, &in);
    assert_int_equal(db_messages_list(f->db, 0, 10, &list), DB_OK);
    assert_int_equal(list.n, 1);
    assert_null(list.items[0].queue_id);
    assert_null(list.items[0].subject);
    assert_string_equal(list.items[0].sender, "");
    assert_string_equal(list.items[0].reason, in.reason);
    assert_true(list.items[0].time > 0); /* 0 means now */
    db_message_list_free(&list);
    assert_int_equal(db_message_get_by_queue_id(f->db, "NOPE", &out, &found), DB_OK);
    assert_false(found);
}

static void test_reused_queue_id_gives_newest_row(void **state)
{
    struct fixture *f = *state;
    struct db_message a = sample(1000, "Q1", "old"), b = sample(5000, "Q1", "new"), out;
    bool found;
    insert_ok(f->db, &b);
    insert_ok(f->db, &a); /* inserted later but older */
    assert_int_equal(db_message_get_by_queue_id(f->db, "Q1", &out, &found), DB_OK);
    assert_true(found);
    assert_string_equal(out.subject, "new");
    db_message_free(&out);
}

static void test_list_is_newest_first_and_paged(void **state)
{
    struct fixture *f = *state;
    struct db_message_list page;
    char qid[16], subj[16];
    int i;

    for (i = 0; i < 25; i++) {
        struct db_message m;
        snprintf(qid, sizeof qid, "Q%d", i);
        snprintf(subj, sizeof subj, "s%d", i);
        m = sample(1000 + (i * 7) % 25, qid, subj); /* times shuffled, all distinct */
        insert_ok(f->db, &m);
    }
    assert_int_equal(db_messages_list(f->db, 0, 10, &page), DB_OK);
    assert_int_equal(page.n, 10);
    assert_int_equal(page.items[0].time, 1024);
    for (i = 1; i < 10; i++)
        assert_true(page.items[i - 1].time > page.items[i].time);
    db_message_list_free(&page);
    assert_int_equal(db_messages_list(f->db, 20, 10, &page), DB_OK);
    assert_int_equal(page.n, 5);
    assert_int_equal(page.items[4].time, 1000);
    db_message_list_free(&page);
    assert_int_equal(db_messages_list(f->db, 0, 0, &page), DB_ERR);
    assert_int_equal(db_messages_list(f->db, 0, DB_PAGE_MAX + 1, &page), DB_ERR);
    db_message_list_free(&page);
}

static void test_retention_deletes_rows_older_than_cutoff(void **state)
{
    struct fixture *f = *state;
    struct db_message_list list;
    int64_t deleted = -1;
    int i;
    for (i = 0; i < 10; i++) {
        struct db_message m = sample(100 * (i + 1), "Q", "s");
        insert_ok(f->db, &m);
    }
    assert_int_equal(db_messages_delete_older_than(f->db, 500, &deleted), DB_OK);
    assert_int_equal(deleted, 4);
    assert_int_equal(db_messages_list(f->db, 0, 100, &list), DB_OK);
    assert_int_equal(list.n, 6);
    assert_int_equal(list.items[5].time, 500);
    db_message_list_free(&list);
}

/* More old rows than one batch holds, inserted in one statement through a second connection. */
static void test_retention_purges_many_rows_in_batches_keeping_new_ones(void **state)
{
    struct fixture *f = *state;
    struct db_message_list list;
    char path[400], sql[400];
    sqlite3 *raw;
    int64_t deleted = -1;
    int i, old_rows = 2 * DB_PURGE_BATCH_ROWS + 7;

    snprintf(path, sizeof path, "%s/var/mxwarden.db", f->dir);
    assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
    sqlite3_busy_timeout(raw, 5000);
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
             "INSERT INTO messages (time, action, stage) SELECT 1000 + i, 'accept', 'data' FROM n",
             old_rows);
    assert_int_equal(sqlite3_exec(raw, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    for (i = 0; i < 3; i++) {
        struct db_message m = sample(1000000 + i, "NEW", "kept");
        insert_ok(f->db, &m);
    }
    assert_int_equal(db_messages_delete_older_than(f->db, 900000, &deleted), DB_OK);
    assert_int_equal(deleted, old_rows);
    assert_int_equal(db_messages_list(f->db, 0, 100, &list), DB_OK);
    assert_int_equal(list.n, 3);
    for (i = 0; i < 3; i++)
        assert_string_equal(list.items[i].subject, "kept");
    db_message_list_free(&list);
    /* Nothing left to purge: a second run deletes nothing. */
    assert_int_equal(db_messages_delete_older_than(f->db, 900000, &deleted), DB_OK);
    assert_int_equal(deleted, 0);
}

static void test_invalid_message_rows_are_refused(void **state)
{
    struct fixture *f = *state;
    struct db_message_list list;
    struct db_message m = sample(1, "Q", "s");
    char *big;

    m.stage = "helo";
    assert_int_equal(db_message_insert(f->db, &m, NULL), DB_ERR);
    assert_non_null(strstr(err_msg(), "stage"));
    m.stage = NULL;
    assert_int_equal(db_message_insert(f->db, &m, NULL), DB_ERR);
    m = sample(1, "Q", "s");
    m.action = NULL;
    assert_int_equal(db_message_insert(f->db, &m, NULL), DB_ERR);
    m = sample(1, "Q", "bad \xff utf8");
    assert_int_equal(db_message_insert(f->db, &m, NULL), DB_ERR);
    assert_non_null(strstr(err_msg(), "UTF-8"));
    m = sample(1, "Q", "injected\r\nBcc: x");
    assert_int_equal(db_message_insert(f->db, &m, NULL), DB_ERR);
    m = sample(1, "Q", "s");
    big = malloc(DB_MAX_SUBJECT + 2);
    memset(big, 'a', DB_MAX_SUBJECT + 1);
    big[DB_MAX_SUBJECT + 1] = '\0';
    m.subject = big;
    assert_int_equal(db_message_insert(f->db, &m, NULL), DB_ERR);
    free(big);
    assert_int_equal(db_messages_list(f->db, 0, 10, &list), DB_OK);
    assert_int_equal(list.n, 0);
    db_message_list_free(&list);
}

#define BATCH_ROWS 300

static void test_batch_inserts_every_row_in_order(void **state)
{
    struct fixture *f = *state;
    struct db_message rows[BATCH_ROWS];
    char qids[BATCH_ROWS][16];
    int64_t ids[BATCH_ROWS];
    struct db_message_list list;
    time_t before = time(NULL);
    size_t i;

    for (i = 0; i < BATCH_ROWS; i++) {
        snprintf(qids[i], sizeof qids[i], "B%03zu", i);
        rows[i] = sample(1000, qids[i], "s");
    }
    rows[BATCH_ROWS - 1].time = 0; /* stamped now, like a single insert */
    assert_int_equal(db_messages_insert_batch(f->db, rows, BATCH_ROWS, ids), DB_OK);
    for (i = 1; i < BATCH_ROWS; i++)
        assert_int_equal(ids[i], ids[i - 1] + 1);
    assert_int_equal(db_messages_list(f->db, 0, BATCH_ROWS + 1, &list), DB_OK);
    assert_int_equal(list.n, BATCH_ROWS);
    /* Newest first: the row stamped now, then the others by descending id. */
    assert_string_equal(list.items[0].queue_id, qids[BATCH_ROWS - 1]);
    assert_true(list.items[0].time >= (int64_t)before);
    assert_int_equal(list.items[0].id, ids[BATCH_ROWS - 1]);
    for (i = 1; i < BATCH_ROWS; i++) {
        assert_string_equal(list.items[i].queue_id, qids[BATCH_ROWS - 1 - i]);
        assert_int_equal(list.items[i].id, ids[BATCH_ROWS - 1 - i]);
        assert_int_equal(list.items[i].time, 1000);
        assert_string_equal(list.items[i].action, "quarantine");
    }
    db_message_list_free(&list);
    /* An empty batch writes nothing and is no error; ids may be NULL. */
    assert_int_equal(db_messages_insert_batch(f->db, rows, 0, NULL), DB_OK);
    assert_int_equal(db_messages_insert_batch(f->db, rows, 2, NULL), DB_OK);
    assert_int_equal(db_messages_list(f->db, 0, DB_PAGE_MAX, &list), DB_OK);
    assert_int_equal(list.n, BATCH_ROWS + 2);
    db_message_list_free(&list);
}

static void assert_log_is_empty(struct db *db)
{
    struct db_message_list list;
    assert_int_equal(db_messages_list(db, 0, 10, &list), DB_OK);
    assert_int_equal(list.n, 0);
    db_message_list_free(&list);
}

static void test_batch_with_an_invalid_row_writes_nothing(void **state)
{
    struct fixture *f = *state;
    struct db_message rows[4] = {sample(1, "A", "s"), sample(2, "B", "s"), sample(3, "C", "s"),
                                 sample(4, "D", "s")};
    rows[2].stage = "helo";
    assert_int_equal(db_messages_insert_batch(f->db, rows, 4, NULL), DB_ERR);
    assert_non_null(strstr(err_msg(), "stage"));
    assert_non_null(strstr(err_msg(), "row 2 of a batch of 4"));
    assert_log_is_empty(f->db);
    rows[2].stage = "data";
    assert_int_equal(db_message_check(&rows[2]), DB_OK);
    rows[2].subject = "bad \xff";
    assert_int_equal(db_message_check(&rows[2]), DB_ERR);
}

/* A trigger (another connection, as any fault would come) aborts the insert of queue id FAIL. */
static void inject_insert_fault(struct fixture *f, bool on)
{
    char path[400];
    snprintf(path, sizeof path, "%s/var/mxwarden.db", f->dir);
    assert_int_equal(test_sqlite_exec(path, on ? "CREATE TRIGGER fault BEFORE INSERT ON messages "
                                                 "WHEN NEW.queue_id = 'FAIL' "
                                                 "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
                                               : "DROP TRIGGER fault"),
                     SQLITE_OK);
}

static void test_batch_failing_halfway_leaves_no_row(void **state)
{
    struct fixture *f = *state;
    struct db_message rows[5] = {sample(1, "A", "s"), sample(2, "B", "s"), sample(3, "FAIL", "s"),
                                 sample(4, "D", "s"), sample(5, "E", "s")};
    struct db_message_list list;

    inject_insert_fault(f, true);
    assert_int_equal(db_messages_insert_batch(f->db, rows, 5, NULL), DB_ERR);
    assert_non_null(strstr(err_msg(), "injected fault"));
    assert_log_is_empty(f->db);
    /* A batch of one is its own transaction: the same. */
    assert_int_equal(db_messages_insert_batch(f->db, &rows[2], 1, NULL), DB_ERR);
    assert_log_is_empty(f->db);
    /* The connection is usable after the rollback. */
    assert_int_equal(db_messages_insert_batch(f->db, rows, 2, NULL), DB_OK);
    inject_insert_fault(f, false);
    assert_int_equal(db_messages_insert_batch(f->db, rows, 5, NULL), DB_OK);
    assert_int_equal(db_messages_list(f->db, 0, 10, &list), DB_OK);
    assert_int_equal(list.n, 7);
    db_message_list_free(&list);
}

static void test_ten_thousand_recipients_fit(void **state)
{
    struct fixture *f = *state;
    struct db_message m = sample(1, "BIG", "s"), out;
    size_t cap = 10000 * 24 + 8, len = 0;
    char *json = malloc(cap);
    bool found;
    int i;
    json[len++] = '[';
    for (i = 0; i < 10000; i++)
        len += (size_t)snprintf(json + len, cap - len, "%s\"r%d@test.example\"", i ? "," : "", i);
    json[len++] = ']';
    json[len] = '\0';
    m.recipients = json;
    insert_ok(f->db, &m);
    assert_int_equal(db_message_get_by_queue_id(f->db, "BIG", &out, &found), DB_OK);
    assert_string_equal(out.recipients, json);
    db_message_free(&out);
    free(json);
}

static void test_audit_rows_list_newest_first(void **state)
{
    struct fixture *f = *state;
    struct db_audit_list list;
    int64_t id1 = 0, id2 = 0;
    assert_int_equal(db_audit_add(f->db, "root", "quarantine.release", "ABC", NULL, &id1), DB_OK);
    assert_int_equal(db_audit_add(f->db, "root", "quarantine.delete", "DEF", "{\"n\":1}", &id2),
                     DB_OK);
    assert_true(id2 > id1);
    assert_int_equal(db_audit_list(f->db, 0, 10, &list), DB_OK);
    assert_int_equal(list.n, 2);
    assert_int_equal(list.items[0].id, id2);
    assert_string_equal(list.items[0].action, "quarantine.delete");
    assert_string_equal(list.items[0].details, "{\"n\":1}");
    assert_string_equal(list.items[1].target, "ABC");
    assert_null(list.items[1].details);
    db_audit_list_free(&list);
    assert_int_equal(db_audit_add(f->db, "", "x", NULL, NULL, NULL), DB_ERR);
    assert_int_equal(db_audit_add(f->db, "root", NULL, NULL, NULL, NULL), DB_ERR);
}

static void test_sender_rules_are_unique_and_normalised(void **state)
{
    struct fixture *f = *state;
    struct db_sender_rule_list list;
    int64_t id1 = 0, id2 = 0, id3 = 0;
    bool existed = false;

    assert_int_equal(db_sender_rule_add(f->db, "address", "Alice@Example.NET", "allow",
                                        "released by root", &id1),
                     DB_OK);
    assert_int_equal(db_sender_rule_add(f->db, "domain", "Spam.Example", "block", NULL, &id2),
                     DB_OK);
    /* Same address, different case in the domain: the same rule, replaced. */
    assert_int_equal(db_sender_rule_add(f->db, "address", "Alice@example.net", "block", NULL, &id3),
                     DB_OK);
    assert_int_equal(id3, id1);
    assert_int_equal(db_sender_rule_list(f->db, &list), DB_OK);
    assert_int_equal(list.n, 2);
    assert_string_equal(list.items[0].kind, "address");
    assert_string_equal(list.items[0].value, "Alice@example.net");
    assert_string_equal(list.items[0].action, "block");
    assert_null(list.items[0].note);
    assert_string_equal(list.items[1].value, "spam.example");
    assert_true(list.items[1].created > 0);
    db_sender_rule_list_free(&list);

    assert_int_equal(db_sender_rule_delete(f->db, id2, &existed), DB_OK);
    assert_true(existed);
    assert_int_equal(db_sender_rule_delete(f->db, id2, &existed), DB_OK);
    assert_false(existed);

    assert_int_equal(db_sender_rule_add(f->db, "asn", "1", "allow", NULL, NULL), DB_ERR);
    assert_int_equal(db_sender_rule_add(f->db, "ip", "192.0.2.1", "maybe", NULL, NULL), DB_ERR);
    assert_int_equal(db_sender_rule_add(f->db, "address", "nodomain", "allow", NULL, NULL), DB_ERR);
    assert_int_equal(db_sender_rule_add(f->db, "domain", "", "allow", NULL, NULL), DB_ERR);
}

static void test_sender_rules_generation_moves_with_every_change(void **state)
{
    struct fixture *f = *state;
    struct db *other;
    int64_t g0 = -1, g, id = 0;
    bool existed;

    assert_int_equal(db_sender_rules_generation(f->db, &g0), DB_OK);
    assert_int_equal(g0, 0);
    assert_int_equal(db_sender_rule_add(f->db, "domain", "spam.example", "block", NULL, &id),
                     DB_OK);
    /* Another connection (another process: the running gateway) sees the change. */
    assert_int_equal(db_open(f->uri, &other), DB_OK);
    assert_int_equal(db_sender_rules_generation(other, &g), DB_OK);
    assert_int_equal(g, g0 + 1);
    /* Replacing the action of the same rule is a change too. */
    assert_int_equal(db_sender_rule_add(f->db, "domain", "spam.example", "allow", NULL, NULL),
                     DB_OK);
    assert_int_equal(db_sender_rules_generation(other, &g), DB_OK);
    assert_int_equal(g, g0 + 2);
    assert_int_equal(db_sender_rule_delete(f->db, id, &existed), DB_OK);
    assert_true(existed);
    assert_int_equal(db_sender_rules_generation(other, &g), DB_OK);
    assert_int_equal(g, g0 + 3);
    /* Deleting nothing changes nothing; a refused add neither. */
    assert_int_equal(db_sender_rule_delete(f->db, id, &existed), DB_OK);
    assert_false(existed);
    assert_int_equal(db_sender_rule_add(f->db, "address", "nodomain", "allow", NULL, NULL), DB_ERR);
    assert_int_equal(db_sender_rules_generation(other, &g), DB_OK);
    assert_int_equal(g, g0 + 3);
    /* The settings generation is a separate counter. */
    assert_int_equal(db_settings_generation(other, &g), DB_OK);
    assert_int_equal(g, 0);
    db_close(other);
}

static void test_records_survive_reopen(void **state)
{
    struct fixture *f = *state;
    struct db_message m = sample(42, "KEEP", "s"), out;
    bool found;
    insert_ok(f->db, &m);
    db_close(f->db);
    assert_int_equal(db_open(f->uri, &f->db), DB_OK);
    assert_int_equal(db_message_get_by_queue_id(f->db, "KEEP", &out, &found), DB_OK);
    assert_true(found);
    db_message_free(&out);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_schema_is_version_2_with_the_new_tables),
        T(test_version_1_database_is_migrated_keeping_settings),
        T(test_message_round_trips_every_field),
        T(test_early_rejection_keeps_absent_fields_absent),
        T(test_reused_queue_id_gives_newest_row),
        T(test_list_is_newest_first_and_paged),
        T(test_retention_deletes_rows_older_than_cutoff),
        T(test_retention_purges_many_rows_in_batches_keeping_new_ones),
        T(test_invalid_message_rows_are_refused),
        T(test_batch_inserts_every_row_in_order),
        T(test_batch_with_an_invalid_row_writes_nothing),
        T(test_batch_failing_halfway_leaves_no_row),
        T(test_ten_thousand_recipients_fit),
        T(test_audit_rows_list_newest_first),
        T(test_sender_rules_are_unique_and_normalised),
        T(test_sender_rules_generation_moves_with_every_change),
        T(test_records_survive_reopen),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
