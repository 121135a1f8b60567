/*
 * Tests for src/store/msglog.c, the message-log writer: rows written by
 * many threads at once are all committed and each caller sees success; rows
 * that queue while a commit is held up go together in the next batch; a
 * database that fails makes every waiter of the batch see the failure (with
 * the reason in its own thread) and the writer recovers when it is fixed or
 * moved to another URI; stopping the writer commits what was queued.
 *
 * cmocka's assertions must not run in the writing threads (they longjmp), so
 * the threads count what they saw and the test asserts afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "store/db.h"
#include "store/msglog.h"
#include "sqlite_exec.h"
#include "tmpdir.h"

struct fixture {
    char dir[256];
    char path[320];
    char uri[340];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct db *db = NULL;
    if (f == NULL || test_tmpdir_make(f->dir, sizeof f->dir, "msglog") != 0) return -1;
    snprintf(f->path, sizeof f->path, "%s/mxwarden.db", f->dir);
    snprintf(f->uri, sizeof f->uri, "sqlite:%s", f->path);
    /* The file exists, migrated, before a test holds its lock or adds a trigger. */
    if (db_open(f->uri, &db) != DB_OK) return -1;
    db_close(db);
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

static struct db_message row_of(const char *queue_id)
{
    struct db_message m = {0};
    m.node = "mx1";
    m.queue_id = (char *)queue_id;
    m.client_ip = "192.0.2.7";
    m.sender = "alice@example.net";
    m.recipients = "[\"bob@test.example\"]";
    m.subject = "hello";
    m.action = "accept";
    m.decided_by = "scan";
    m.symbols = "[]";
    m.stage = "data";
    return m;
}

/* A writing thread: rows rows with queue ids "T<index>-<i>" (the strings on its stack). */
struct writer {
    pthread_t thread;
    struct msglog *log;
    int index, rows;
    const char *expect_reason; /* with failures: a word every reason must hold */
    int ok, failed, reasons_ok;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    int i;
    for (i = 0; i < w->rows; i++) {
        char qid[32];
        struct db_message m;
        snprintf(qid, sizeof qid, "T%d-%d", w->index, i);
        m = row_of(qid);
        if (msglog_write(w->log, &m) == DB_OK) {
            w->ok++;
        } else {
            w->failed++;
            if (w->expect_reason && strstr(err_msg(), w->expect_reason)) w->reasons_ok++;
        }
    }
    return NULL;
}

static void writers_start(struct writer *ws, int n, struct msglog *log, int rows,
                          const char *expect_reason)
{
    int i;
    for (i = 0; i < n; i++) {
        memset(&ws[i], 0, sizeof ws[i]);
        ws[i].log = log;
        ws[i].index = i;
        ws[i].rows = rows;
        ws[i].expect_reason = expect_reason;
        assert_int_equal(pthread_create(&ws[i].thread, NULL, writer_main, &ws[i]), 0);
    }
}

static void writers_join(struct writer *ws, int n)
{
    int i;
    for (i = 0; i < n; i++)
        pthread_join(ws[i].thread, NULL);
}

/* Waits (up to 10 s) until pending rows are handed in and not yet answered. */
static void wait_pending(struct msglog *log, size_t pending)
{
    struct msglog_stats st;
    int i;
    for (i = 0; i < 10000; i++) {
        struct timespec ts = {0, 1000 * 1000};
        msglog_stats(log, &st);
        if (st.pending == pending) return;
        nanosleep(&ts, NULL);
    }
    fail_msg("pending rows: %zu, expected %zu", st.pending, pending);
}

/* The queue ids in the log at uri, counted per writer and row into seen[writer][row]. */
static size_t count_rows(const char *uri, int seen[][200], int writers)
{
    struct db *db = NULL;
    struct db_message_list list;
    size_t i, n;
    assert_int_equal(db_open(uri, &db), DB_OK);
    assert_int_equal(db_messages_list(db, 0, DB_PAGE_MAX, &list), DB_OK);
    for (i = 0; i < list.n && seen; i++) {
        int w = -1, r = -1;
        assert_int_equal(sscanf(list.items[i].queue_id, "T%d-%d", &w, &r), 2);
        assert_true(w >= 0 && w < writers && r >= 0 && r < 200);
        seen[w][r]++;
    }
    n = list.n;
    db_message_list_free(&list);
    db_close(db);
    return n;
}

static void test_concurrent_writers_all_commit(void **state)
{
    struct fixture *f = *state;
    struct msglog *log = msglog_new(f->uri);
    struct writer ws[8];
    static int seen[8][200];
    struct msglog_stats st;
    int i, r;

    writers_start(ws, 8, log, 150, NULL);
    writers_join(ws, 8);
    for (i = 0; i < 8; i++) {
        assert_int_equal(ws[i].ok, 150);
        assert_int_equal(ws[i].failed, 0);
    }
    msglog_stats(log, &st);
    assert_int_equal(st.rows, 8 * 150);
    assert_int_equal(st.pending, 0);
    assert_true(st.batches >= 1 && st.batches <= 8 * 150);
    assert_true(st.max_batch <= 8);
    msglog_free(log);
    memset(seen, 0, sizeof seen);
    assert_int_equal(count_rows(f->uri, seen, 8), 8 * 150);
    for (i = 0; i < 8; i++)
        for (r = 0; r < 150; r++)
            assert_int_equal(seen[i][r], 1);
}

/* Holds the database's write lock from another connection, as a long writer would. */
static sqlite3 *hold_write_lock(struct fixture *f)
{
    sqlite3 *raw = NULL;
    assert_int_equal(sqlite3_open(f->path, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    return raw;
}

static void release_write_lock(sqlite3 *raw)
{
    assert_int_equal(sqlite3_exec(raw, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
}

static void test_rows_queued_during_a_commit_go_in_one_batch(void **state)
{
    struct fixture *f = *state;
    struct msglog *log = msglog_new(f->uri);
    sqlite3 *raw = hold_write_lock(f);
    struct writer ws[8];
    struct msglog_stats st;
    int i;

    /* The first batch waits for the lock; the rows of the other writers queue behind it. */
    writers_start(ws, 8, log, 1, NULL);
    wait_pending(log, 8);
    release_write_lock(raw);
    writers_join(ws, 8);
    for (i = 0; i < 8; i++)
        assert_int_equal(ws[i].ok, 1);
    msglog_stats(log, &st);
    assert_int_equal(st.rows, 8);
    assert_true(st.batches <= 2);
    assert_true(st.max_batch >= 4);
    msglog_free(log);
    assert_int_equal(count_rows(f->uri, NULL, 0), 8);
}

/* A trigger (another connection, as any fault would come) aborts every insert. */
static void set_fault(struct fixture *f, bool on)
{
    assert_int_equal(
        test_sqlite_exec(f->path, on ? "CREATE TRIGGER fault BEFORE INSERT ON messages "
                                       "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
                                     : "DROP TRIGGER fault"),
        SQLITE_OK);
}

static void test_failing_database_fails_every_waiter(void **state)
{
    struct fixture *f = *state;
    struct msglog *log = msglog_new(f->uri);
    struct db_message m = row_of("T0-0");
    struct writer ws[4];
    struct msglog_stats st;
    int i;

    set_fault(f, true);
    writers_start(ws, 4, log, 20, "injected fault");
    writers_join(ws, 4);
    for (i = 0; i < 4; i++) {
        assert_int_equal(ws[i].ok, 0);
        assert_int_equal(ws[i].failed, 20);
        assert_int_equal(ws[i].reasons_ok, 20); /* the writer's reason, in the caller's thread */
    }
    assert_int_equal(count_rows(f->uri, NULL, 0), 0);
    /* Fixed: the writer reopens and goes on. */
    set_fault(f, false);
    assert_int_equal(msglog_write(log, &m), DB_OK);
    msglog_stats(log, &st);
    assert_int_equal(st.rows, 4 * 20 + 1);
    msglog_free(log);
    assert_int_equal(count_rows(f->uri, NULL, 0), 1);
}

static void test_unopenable_database_fails_until_the_uri_moves(void **state)
{
    struct fixture *f = *state;
    char bad[400];
    struct msglog *log;
    struct db_message m = row_of("T0-0");

    /* A path under a regular file: the database can never be created there. */
    snprintf(bad, sizeof bad, "sqlite:%s/mxwarden.db/sub/x.db", f->dir);
    log = msglog_new(bad);
    assert_int_equal(msglog_write(log, &m), DB_ERR);
    assert_true(err_msg()[0] != '\0');
    assert_int_equal(msglog_write(log, &m), DB_ERR);
    msglog_set_uri(log, f->uri);
    assert_int_equal(msglog_write(log, &m), DB_OK);
    msglog_free(log);
    assert_int_equal(count_rows(f->uri, NULL, 0), 1);
}

static void test_invalid_row_is_refused_alone(void **state)
{
    struct fixture *f = *state;
    struct msglog *log = msglog_new(f->uri);
    struct db_message m = row_of("T0-0");
    struct msglog_stats st;

    m.stage = "helo";
    assert_int_equal(msglog_write(log, &m), DB_ERR);
    assert_non_null(strstr(err_msg(), "stage"));
    msglog_stats(log, &st);
    assert_int_equal(st.batches, 0); /* never queued, so it failed no batch */
    msglog_free(log);
}

static void *free_main(void *arg)
{
    msglog_free(arg);
    return NULL;
}

static void test_stop_commits_the_rows_queued_before(void **state)
{
    struct fixture *f = *state;
    struct msglog *log = msglog_new(f->uri);
    sqlite3 *raw = hold_write_lock(f);
    struct writer ws[4];
    pthread_t stopper;
    struct timespec ts = {0, 50 * 1000 * 1000};
    int i;

    writers_start(ws, 4, log, 1, NULL);
    wait_pending(log, 4);
    /* The stop begins while every row still waits for the lock. */
    assert_int_equal(pthread_create(&stopper, NULL, free_main, log), 0);
    nanosleep(&ts, NULL);
    release_write_lock(raw);
    pthread_join(stopper, NULL);
    writers_join(ws, 4);
    for (i = 0; i < 4; i++)
        assert_int_equal(ws[i].ok, 1);
    assert_int_equal(count_rows(f->uri, NULL, 0), 4);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_concurrent_writers_all_commit),
        T(test_rows_queued_during_a_commit_go_in_one_batch),
        T(test_failing_database_fails_every_waiter),
        T(test_unopenable_database_fails_until_the_uri_moves),
        T(test_invalid_row_is_refused_alone),
        T(test_stop_commits_the_rows_queued_before),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
