/*
 * Tests for src/store/db.c and db_sqlite.c: schema migrations, settings
 * records, conditional writes, two connections in two threads, and the
 * errors of files that are not (or no longer) databases or cannot be opened.
 *
 * Each test gets a fresh database file in a private temporary directory
 * (under $TMPDIR, removed afterwards). Where a test must look under the
 * front (the schema_version table, the journal mode, a lock held by another
 * connection) it uses SQLite directly on the same file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "store/db.h"
#include "tmpdir.h"

struct fixture {
    char dir[256];
    char path[320];
    char uri[340];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL || test_tmpdir_make(f->dir, sizeof f->dir, "db") != 0) return -1;
    snprintf(f->path, sizeof f->path, "%s/var/mxwarden.db", f->dir);
    snprintf(f->uri, sizeof f->uri, "sqlite:%s", f->path);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    test_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

static struct db *open_ok(const char *uri)
{
    struct db *db = NULL;
    int rc = db_open(uri, &db);
    if (rc != DB_OK) fail_msg("db_open(%s): rc=%d %s", uri, rc, err_msg());
    return db;
}

static void set_ok(struct db *db, const char *scope, const char *key, const char *value)
{
    int rc = db_setting_set(db, scope, key, value);
    if (rc != DB_OK) fail_msg("set %s %s: rc=%d %s", scope, key, rc, err_msg());
}

/* The value of (scope, key), or NULL if absent; caller frees. */
static char *get_value(struct db *db, const char *scope, const char *key)
{
    struct buf b = {0};
    bool found = true;
    assert_int_equal(db_setting_get(db, scope, key, &b, NULL, &found), DB_OK);
    if (!found) {
        buf_free(&b);
        return NULL;
    }
    return buf_release(&b);
}

static void assert_value(struct db *db, const char *scope, const char *key, const char *want)
{
    char *v = get_value(db, scope, key);
    if (want == NULL) {
        if (v) fail_msg("%s %s: expected absent, found \"%s\"", scope, key, v);
        return;
    }
    assert_non_null(v);
    assert_string_equal(v, want);
    free(v);
}

static int64_t generation(struct db *db)
{
    int64_t g = -1;
    assert_int_equal(db_settings_generation(db, &g), DB_OK);
    return g;
}

/* Runs one SQL statement on the file directly and returns the integer of its first row. */
static long long raw_int(const char *path, const char *sql)
{
    sqlite3 *h;
    sqlite3_stmt *st;
    long long v = -1;
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
}

/* ---- schema ---- */

static void test_new_database_is_created_at_current_schema(void **state)
{
    struct fixture *f = *state;
    struct db *db = open_ok(f->uri); /* var/ does not exist yet: created */
    int version = -1;

    assert_string_equal(db_backend_name(db), "sqlite");
    assert_int_equal(db_schema_version(db, &version), DB_OK);
    assert_int_equal(version, DB_SCHEMA_VERSION);
    assert_int_equal(generation(db), 0);
    db_close(db);
    assert_int_equal(access(f->path, R_OK | W_OK), 0);
}

static void test_migrations_run_once_and_reopen_keeps_records(void **state)
{
    struct fixture *f = *state;
    struct db *db = open_ok(f->uri);
    int i;

    set_ok(db, "global", "threshold.tag", "5");
    db_close(db);
    for (i = 0; i < 3; i++) {
        int version = -1;
        db = open_ok(f->uri);
        assert_int_equal(db_schema_version(db, &version), DB_OK);
        assert_int_equal(version, DB_SCHEMA_VERSION);
        assert_value(db, "global", "threshold.tag", "5");
        assert_int_equal(generation(db), 1);
        db_close(db);
    }
    /* One row per migration, however often the file was opened. */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM schema_version"), DB_SCHEMA_VERSION);
    assert_int_equal(raw_int(f->path, "SELECT max(version) FROM schema_version"),
                     DB_SCHEMA_VERSION);
}

static void test_database_uses_wal_journal(void **state)
{
    struct fixture *f = *state;
    struct db *db = open_ok(f->uri);
    sqlite3 *h;
    sqlite3_stmt *st;

    assert_int_equal(sqlite3_open(f->path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(h);
    db_close(db);
}

static void test_newer_schema_is_refused(void **state)
{
    struct fixture *f = *state;
    struct db *db = open_ok(f->uri);
    db_close(db);
    raw_exec(f->path, "INSERT INTO schema_version (version, applied_at) VALUES (99, 0)");

    assert_int_equal(db_open(f->uri, &db), DB_CORRUPT);
    assert_null(db);
    assert_non_null(strstr(err_msg(), "schema version 99"));
}

/* ---- settings records ---- */

static void test_settings_set_get_overwrite_delete(void **state)
{
    struct fixture *f = *state;
    struct db *db = open_ok(f->uri);
    struct buf b = {0};
    int64_t updated = 0;
    bool found = false, existed = true;

    assert_value(db, "domain:example.org", "threshold.tag", NULL);
    set_ok(db, "domain:example.org", "threshold.tag", "7");
    set_ok(db, "domain:example.org", "subject_prefix", ""); /* empty is a value */
    assert_value(db, "domain:example.org", "threshold.tag", "7");
    assert_value(db, "domain:example.org", "subject_prefix", "");
    set_ok(db, "domain:example.org", "threshold.tag", "8.5");
    assert_int_equal(
        db_setting_get(db, "domain:example.org", "threshold.tag", &b, &updated, &found), DB_OK);
    assert_true(found);
    assert_string_equal(b.data, "8.5");
    assert_true(updated >= time(NULL) - 60 && updated <= time(NULL) + 1);
    buf_free(&b);
    assert_int_equal(generation(db), 3);

    assert_int_equal(db_setting_delete(db, "domain:example.org", "threshold.tag", &existed), DB_OK);
    assert_true(existed);
    assert_value(db, "domain:example.org", "threshold.tag", NULL);
    assert_int_equal(db_setting_delete(db, "domain:example.org", "threshold.tag", &existed), DB_OK);
    assert_false(existed);
    assert_int_equal(generation(db), 4); /* deleting nothing writes nothing */
    db_close(db);
}

static void test_settings_list_all_and_by_scope_in_order(void **state)
{
    struct fixture *f = *state;
    struct db *db = open_ok(f->uri);
    struct db_setting_list list;
    int64_t gen = -1;

    set_ok(db, "global", "threshold.tag", "5");
    set_ok(db, "domain:b.org", "threshold.reject", "20");
    set_ok(db, "domain:a.org", "threshold.tag", "4");
    set_ok(db, "domain:a.org", "subject_prefix", "[SPAM]");

    assert_int_equal(db_setting_list(db, NULL, &list, &gen), DB_OK);
    assert_int_equal(gen, 4);
    assert_int_equal(list.n, 4);
    assert_string_equal(list.items[0].scope, "domain:a.org");
    assert_string_equal(list.items[0].key, "subject_prefix");
    assert_string_equal(list.items[0].value, "[SPAM]");
    assert_string_equal(list.items[1].key, "threshold.tag");
    assert_string_equal(list.items[2].scope, "domain:b.org");
    assert_string_equal(list.items[3].scope, "global");
    assert_true(list.items[3].updated_at > 0);
    db_setting_list_free(&list);

    assert_int_equal(db_setting_list(db, "domain:a.org", &list, NULL), DB_OK);
    assert_int_equal(list.n, 2);
    db_setting_list_free(&list);
    assert_int_equal(db_setting_list(db, "domain:none.org", &list, NULL), DB_OK);
    assert_int_equal(list.n, 0);
    db_setting_list_free(&list);
    db_close(db);
}

static void test_write_is_all_or_nothing(void **state)
{
    struct fixture *f = *state;
    struct db *db = open_ok(f->uri);
    struct db_setting_change ok[] = {
        {"global", "threshold.tag", "5"},
        {"global", "threshold.quarantine", "9"},
    };
    struct db_setting_change bad[] = {
        {"global", "threshold.tag", "1"},
        {"global", "subject_prefix", "line\nbreak"},
    };

    assert_int_equal(db_settings_write(db, ok, 2, -1), DB_OK);
    assert_int_equal(generation(db), 1); /* one write, one bump */
    assert_int_equal(db_settings_write(db, bad, 2, -1), DB_ERR);
    assert_non_null(strstr(err_msg(), "control character"));
    assert_value(db, "global", "threshold.tag", "5");
    assert_int_equal(generation(db), 1);
    db_close(db);
}

static void test_conditional_write_conflicts_when_generation_moved(void **state)
{
    struct fixture *f = *state;
    struct db *db = open_ok(f->uri);
    struct db *other = open_ok(f->uri);
    struct db_setting_change c = {"global", "threshold.tag", "4"};
    int64_t seen = generation(db);

    set_ok(other, "global", "threshold.tag", "9"); /* someone else writes in between */
    assert_int_equal(db_settings_write(db, &c, 1, seen), DB_CONFLICT);
    assert_value(db, "global", "threshold.tag", "9");
    assert_int_equal(db_settings_write(db, &c, 1, generation(db)), DB_OK);
    assert_value(other, "global", "threshold.tag", "4");
    db_close(other);
    db_close(db);
}

static void test_invalid_arguments_are_refused(void **state)
{
    struct fixture *f = *state;
    struct db *db = open_ok(f->uri);
    char long_key[DB_MAX_KEY + 2];
    struct buf b = {0};
    bool found;

    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    assert_int_equal(db_setting_set(db, "", "threshold.tag", "1"), DB_ERR);
    assert_int_equal(db_setting_set(db, "global", long_key, "1"), DB_ERR);
    assert_non_null(strstr(err_msg(), "longer than"));
    assert_int_equal(db_setting_set(db, "global", "k", "\xff\xfe"), DB_ERR);
    assert_int_equal(db_setting_set(db, "global", "k", NULL), DB_ERR);
    assert_int_equal(db_settings_write(db, NULL, 0, -1), DB_ERR);
    assert_int_equal(db_setting_get(db, "global", "", &b, NULL, &found), DB_ERR);
    assert_int_equal(generation(db), 0);
    buf_free(&b);
    db_close(db);
}

/* ---- two connections ---- */

#define THREAD_WRITES 150

struct writer_arg {
    const char *uri;
    const char *scope;
    int failures;
    char why[256];
};

static void *writer_thread(void *p)
{
    struct writer_arg *a = p;
    struct db *db = NULL;
    int i;

    if (db_open(a->uri, &db) != DB_OK) {
        a->failures++;
        snprintf(a->why, sizeof a->why, "open: %s", err_msg());
        return NULL;
    }
    for (i = 0; i < THREAD_WRITES; i++) {
        char key[32], value[32];
        struct db_setting_list list;
        struct buf b = {0};
        bool found = false;

        snprintf(key, sizeof key, "k%03d", i);
        snprintf(value, sizeof value, "%d", i);
        if (db_setting_set(db, a->scope, key, value) != DB_OK ||
            db_setting_get(db, a->scope, key, &b, NULL, &found) != DB_OK || !found ||
            strcmp(b.data, value) != 0) {
            a->failures++;
            snprintf(a->why, sizeof a->why, "write/read %s: %s", key, err_msg());
        }
        buf_free(&b);
        /* Read the whole table while the other thread writes. */
        if (db_setting_list(db, NULL, &list, NULL) != DB_OK) {
            a->failures++;
            snprintf(a->why, sizeof a->why, "list: %s", err_msg());
        }
        db_setting_list_free(&list);
    }
    db_close(db);
    return NULL;
}

static void test_two_threads_write_and_read_with_wal(void **state)
{
    struct fixture *f = *state;
    struct writer_arg a = {f->uri, "domain:a.org", 0, ""}, b = {f->uri, "domain:b.org", 0, ""};
    struct db_setting_list list;
    pthread_t ta, tb;
    struct db *db = open_ok(f->uri); /* creates the schema before the race */

    assert_int_equal(pthread_create(&ta, NULL, writer_thread, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, writer_thread, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    if (a.failures || b.failures)
        fail_msg("a: %d %s; b: %d %s", a.failures, a.why, b.failures, b.why);

    assert_int_equal(db_setting_list(db, NULL, &list, NULL), DB_OK);
    assert_int_equal(list.n, 2 * THREAD_WRITES);
    db_setting_list_free(&list);
    assert_int_equal(generation(db), 2 * THREAD_WRITES);
    db_close(db);
}

static void test_writer_held_too_long_is_busy(void **state)
{
    struct fixture *f = *state;
    char uri[400];
    struct db *db;
    sqlite3 *h;

    snprintf(uri, sizeof uri, "%s?busy_timeout_ms=100", f->uri);
    db = open_ok(uri);
    assert_int_equal(sqlite3_open(f->path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    assert_int_equal(db_setting_set(db, "global", "threshold.tag", "5"), DB_BUSY);
    assert_non_null(strstr(err_msg(), f->path));
    /* Readers are not blocked by the writer (WAL). */
    assert_value(db, "global", "threshold.tag", NULL);

    sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(h);
    set_ok(db, "global", "threshold.tag", "5");
    db_close(db);
}

/* ---- bad files ---- */

static void test_file_that_is_not_a_database_is_a_clean_error(void **state)
{
    struct fixture *f = *state;
    struct db *db = open_ok(f->uri); /* creates var/ */
    char text[4096];
    FILE *fp;

    db_close(db);
    unlink(f->path);
    memset(text, 'x', sizeof text);
    fp = fopen(f->path, "w");
    assert_non_null(fp);
    fwrite(text, 1, sizeof text, fp);
    fclose(fp);

    assert_int_equal(db_open(f->uri, &db), DB_CORRUPT);
    assert_null(db);
    assert_non_null(strstr(err_msg(), "not a database"));
    assert_non_null(strstr(err_msg(), f->path));
}

static void test_damaged_database_is_an_error_not_a_crash(void **state)
{
    struct fixture *f = *state;
    struct db *db = open_ok(f->uri);
    struct db_setting_list list;
    char garbage[4096];
    struct stat st;
    int i, fd, rc;

    for (i = 0; i < 400; i++) {
        char scope[64];
        snprintf(scope, sizeof scope, "domain:d%04d.example.org", i);
        set_ok(db, scope, "subject_prefix", "[SPAM] padding padding padding padding");
    }
    db_close(db); /* checkpoints the WAL into the file */
    assert_int_equal(stat(f->path, &st), 0);
    assert_true(st.st_size > 3 * 4096);

    /* Overwrite every page but the first (the header and schema) with garbage. */
    memset(garbage, 0xa5, sizeof garbage);
    fd = open(f->path, O_WRONLY);
    assert_true(fd >= 0);
    for (i = 4096; i < st.st_size; i += 4096)
        assert_int_equal(pwrite(fd, garbage, sizeof garbage, i), (ssize_t)sizeof garbage);
    close(fd);

    rc = db_open(f->uri, &db);
    if (rc == DB_OK) {
        rc = db_setting_list(db, NULL, &list, NULL);
        db_setting_list_free(&list);
        db_close(db);
    }
    assert_int_not_equal(rc, DB_OK);
    assert_true(rc == DB_CORRUPT || rc == DB_ERR);
    assert_true(err_msg()[0] != '\0');
}

static void test_unopenable_paths_are_clean_errors(void **state)
{
    struct fixture *f = *state;
    char uri[400], file[300];
    struct db *db = (struct db *)1;
    FILE *fp;

    /* A directory where the file should be. */
    snprintf(uri, sizeof uri, "sqlite:%s", f->dir);
    assert_int_equal(db_open(uri, &db), DB_ERR);
    assert_null(db);
    assert_true(err_msg()[0] != '\0');

    /* A path below a regular file. */
    snprintf(file, sizeof file, "%s/plain", f->dir);
    fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(uri, sizeof uri, "sqlite:%s/sub/x.db", file);
    assert_int_equal(db_open(uri, &db), DB_ERR);
    assert_true(err_msg()[0] != '\0');
}

static void test_read_only_file_is_a_clean_error(void **state)
{
    struct fixture *f = *state;
    struct db *db = open_ok(f->uri);
    char var[300];
    pid_t pid;
    int status;

    db_close(db);
    /* Readable by everyone, writable by nobody but root; the child drops root if it has it. */
    snprintf(var, sizeof var, "%s/var", f->dir);
    assert_int_equal(chmod(f->dir, 0755), 0);
    assert_int_equal(chmod(var, 0755), 0);
    assert_int_equal(chmod(f->path, 0444), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int rc;
        if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(10);
        rc = db_open(f->uri, &db);
        if (rc == DB_OK) _exit(11);
        if (db != NULL || strstr(err_msg(), "read-only") == NULL) _exit(12);
        _exit(rc == DB_ERR ? 0 : 13);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    chmod(f->path, 0644);
}

static void test_bad_uris_are_errors_with_a_message(void **state)
{
    struct fixture *f = *state;
    struct db *db;
    char uri[400];

    assert_int_equal(db_open("", &db), DB_ERR);
    assert_int_equal(db_open("mysql://localhost/x", &db), DB_ERR);
    assert_non_null(strstr(err_msg(), "sqlite:PATH"));
    assert_int_equal(db_open("postgresql://localhost/mxwarden", &db), DB_ERR);
    assert_non_null(strstr(err_msg(), "PostgreSQL"));
    assert_int_equal(db_open("sqlite:", &db), DB_ERR);
    snprintf(uri, sizeof uri, "%s?bogus=1", f->uri);
    assert_int_equal(db_open(uri, &db), DB_ERR);
    assert_non_null(strstr(err_msg(), "bogus"));
    snprintf(uri, sizeof uri, "%s?sync=sometimes", f->uri);
    assert_int_equal(db_open(uri, &db), DB_ERR);
    snprintf(uri, sizeof uri, "%s?sync=normal&busy_timeout_ms=250", f->uri);
    db = open_ok(uri);
    db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_database_is_created_at_current_schema, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_migrations_run_once_and_reopen_keeps_records, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_database_uses_wal_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_set_get_overwrite_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_list_all_and_by_scope_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_write_is_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conditional_write_conflicts_when_generation_moved,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_threads_write_and_read_with_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_held_too_long_is_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_that_is_not_a_database_is_a_clean_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_damaged_database_is_an_error_not_a_crash, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unopenable_paths_are_clean_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_file_is_a_clean_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_uris_are_errors_with_a_message, setup, teardown),
    };
    log_set_level(LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
