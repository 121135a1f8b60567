/*
 * Tests for src/store/capture.c: a capture round-trips byte for byte through
 * its day's segment with private permissions, also from many threads at once;
 * ids and references from outside are refused before any file is touched;
 * deleting erases the bytes; retention removes exactly the days before the
 * cutoff, counting records, old-layout files included.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/log.h"
#include "store/capture.h"
#include "tmpdir.h"

/* 2026-03-15 12:00:00 UTC, and one day in seconds. */
#define T_MAR15 ((time_t)1773576000)
#define DAY     ((time_t)86400)

struct fixture {
    char dir[256];
    char cap[320];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL || test_tmpdir_make(f->dir, sizeof f->dir, "capture") != 0) return -1;
    snprintf(f->cap, sizeof f->cap, "%s/var/capture", f->dir);
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

static void write_ok(const char *dir, const char *id, time_t when, const char *text, char *rel)
{
    if (capture_write(dir, id, when, text, strlen(text), rel) != 0)
        fail_msg("capture_write(%s): %s", id, err_msg());
}

/* Whether the file of rel (a segment: up to its ':') or the directory rel exists. */
static int exists(const char *dir, const char *rel)
{
    char path[1024];
    struct stat st;
    const char *colon = strchr(rel, ':');
    snprintf(path, sizeof path, "%s/%.*s", dir, (int)(colon ? colon - rel : (long)strlen(rel)),
             rel);
    return stat(path, &st) == 0;
}

static size_t count_entries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    size_t n = 0;
    if (d == NULL) return 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

static void test_capture_round_trips_bytes_in_dated_private_file(void **state)
{
    struct fixture *f = *state;
    static const char msg[] = "Subject: hi\r\n\r\nbody with a NUL \0 and 8-bit \xff\r\n";
    char rel[CAPTURE_REL_MAX], want[64], path[1024], *data = NULL;
    size_t len = 0;
    struct stat st;

    assert_int_equal(capture_write(f->cap, "4Xy7kZ2abc", T_MAR15, msg, sizeof msg - 1, rel), 0);
    /* After the record's header line "MXWCAP1 4Xy7kZ2abc 47\n" (22 bytes). */
    snprintf(want, sizeof want, "2026/03/15/s%ld.seg:22:%zu", (long)getpid(), sizeof msg - 1);
    assert_string_equal(rel, want);
    snprintf(path, sizeof path, "%s/2026/03/15/s%ld.seg", f->cap, (long)getpid());
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal((size_t)st.st_size, 22 + sizeof msg - 1 + 1);
    snprintf(path, sizeof path, "%s/2026/03/15", f->cap);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(count_entries(path), 1); /* one segment, nothing else */

    assert_int_equal(capture_read(f->cap, rel, &data, &len), 0);
    assert_int_equal(len, sizeof msg - 1);
    assert_memory_equal(data, msg, len);
    free(data);
}

static void test_capture_without_sync_writes_the_same_record(void **state)
{
    struct fixture *f = *state;
    static const char msg[] = "Subject: unsynced\r\n\r\nbody\r\n";
    char rel[CAPTURE_REL_MAX], path[1024], *data = NULL;
    size_t len = 0;

    assert_int_equal(capture_write_flags(f->cap, "nosync1", T_MAR15, msg, sizeof msg - 1, 0, rel), 0);
    snprintf(path, sizeof path, "%s/2026/03/15", f->cap);
    assert_int_equal(count_entries(path), 1);
    assert_int_equal(capture_read(f->cap, rel, &data, &len), 0);
    assert_int_equal(len, sizeof msg - 1);
    assert_memory_equal(data, msg, len);
    free(data);
}

static void test_same_id_twice_gives_two_records_and_a_new_day_a_new_segment(void **state)
{
    struct fixture *f = *state;
    char rel[CAPTURE_REL_MAX], rel2[CAPTURE_REL_MAX], rel3[CAPTURE_REL_MAX], path[1024];
    char *data = NULL;
    size_t len = 0;

    write_ok(f->cap, "Q1", T_MAR15, "first", rel);
    write_ok(f->cap, "Q1", T_MAR15 + 60, "second version", rel2);
    assert_string_not_equal(rel, rel2);
    assert_int_equal(capture_read(f->cap, rel, &data, &len), 0);
    assert_string_equal(data, "first");
    free(data);
    assert_int_equal(capture_read(f->cap, rel2, &data, &len), 0);
    assert_string_equal(data, "second version");
    free(data);
    write_ok(f->cap, "Q2", T_MAR15 + DAY, "next day", rel3);
    assert_int_equal(strncmp(rel3, "2026/03/16/s", 12), 0);
    snprintf(path, sizeof path, "%s/2026/03/16", f->cap);
    assert_int_equal(count_entries(path), 1);
    /* Back to the first day: its segment is appended to, not replaced. */
    write_ok(f->cap, "Q3", T_MAR15 + 120, "third", rel3);
    assert_int_equal(capture_read(f->cap, rel, &data, &len), 0);
    assert_string_equal(data, "first");
    free(data);
}

struct writer {
    const char *dir;
    int thread;
    char rels[200][CAPTURE_REL_MAX];
    int failures;
};

static void *writer_main(void *p)
{
    struct writer *w = p;
    int i;
    for (i = 0; i < 200; i++) {
        char id[32], text[64];
        snprintf(id, sizeof id, "t%d-%d", w->thread, i);
        snprintf(text, sizeof text, "message %d of thread %d\n", i, w->thread);
        if (capture_write_flags(w->dir, id, T_MAR15, text, strlen(text), 0, w->rels[i]) != 0)
            w->failures++;
    }
    return NULL;
}

static void test_threads_writing_at_once_each_read_back_their_own(void **state)
{
    struct fixture *f = *state;
    struct writer *w = calloc(4, sizeof *w);
    pthread_t threads[4];
    int t, i;

    assert_non_null(w);
    for (t = 0; t < 4; t++) {
        w[t].dir = f->cap;
        w[t].thread = t;
        assert_int_equal(pthread_create(&threads[t], NULL, writer_main, &w[t]), 0);
    }
    for (t = 0; t < 4; t++)
        pthread_join(threads[t], NULL);
    for (t = 0; t < 4; t++) {
        assert_int_equal(w[t].failures, 0);
        for (i = 0; i < 200; i++) {
            char want[64], *data = NULL;
            size_t len = 0;
            snprintf(want, sizeof want, "message %d of thread %d\n", i, t);
            assert_int_equal(capture_read(f->cap, w[t].rels[i], &data, &len), 0);
            assert_string_equal(data, want);
            free(data);
        }
    }
    free(w);
}

static void test_capture_refuses_unsafe_ids(void **state)
{
    struct fixture *f = *state;
    static const char *const bad[] = {
        "",    "../x",  "a/b", ".hidden",
        "a b", "x.eml", "q\n", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    char rel[CAPTURE_REL_MAX];
    size_t i;

    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(capture_write(f->cap, bad[i], T_MAR15, "x", 1, rel), -1);
        assert_non_null(strstr(err_msg(), "invalid id"));
        assert_string_equal(rel, "");
    }
    assert_int_equal(capture_write(f->cap, NULL, T_MAR15, "x", 1, rel), -1);
    assert_int_equal(count_entries(f->dir), 0); /* nothing created */
}

static void test_capture_read_and_delete_refuse_paths_outside_the_layout(void **state)
{
    struct fixture *f = *state;
    static const char *const bad[] = {"../../etc/passwd",
                                      "2026/03/15/../../../x.eml",
                                      "/etc/passwd",
                                      "2026/03/15/a/b.eml",
                                      "2026-03-15/abc.eml",
                                      "2026/03/15/abc.txt",
                                      "2026/03/15/.eml",
                                      "2026/3/15/abc.eml",
                                      "2026/03/15/abc.eml/x",
                                      "",
                                      "2026/03/15/s1.seg",
                                      "2026/03/15/s1.seg:0",
                                      "2026/03/15/s1.seg:0:",
                                      "2026/03/15/s1.seg:a:1",
                                      "2026/03/15/s1.seg:-1:1",
                                      "2026/03/15/sx.seg:0:1",
                                      "2026/03/15/s.seg:0:1",
                                      "2026/03/15/s1.eml:0:1",
                                      "2026/03/15/../s1.seg:0:1",
                                      "2026/03/15/s1.seg:0:1:2",
                                      "2026/03/15/s1.seg:18446744073709551615:1",
                                      "2026/03/15/s1.seg:9223372036854775807:9",
                                      "2026/03/15/s1.seg:0:99999999999"};
    char *data = NULL;
    size_t len, i;
    int existed;

    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(capture_read(f->cap, bad[i], &data, &len), -1);
        assert_null(data);
        if (strstr(err_msg(), "not a capture path") == NULL) fail_msg("%s: %s", bad[i], err_msg());
        assert_int_equal(capture_delete(f->cap, bad[i], &existed), -1);
    }
    assert_int_equal(capture_read(f->cap, NULL, &data, &len), -1);
}

static void test_capture_missing_file_is_an_error_and_delete_is_idempotent(void **state)
{
    struct fixture *f = *state;
    char rel[CAPTURE_REL_MAX], keep[CAPTURE_REL_MAX], longer[CAPTURE_REL_MAX], *data = NULL;
    char path[1024], *raw = NULL;
    size_t len, raw_len;
    int existed = -1;

    assert_int_equal(capture_read(f->cap, "2026/03/15/s999999999.seg:0:1", &data, &len), -1);
    assert_non_null(strstr(err_msg(), "s999999999.seg"));
    write_ok(f->cap, "gone", T_MAR15, "secret words", rel);
    write_ok(f->cap, "kept", T_MAR15, "other words", keep);
    /* A range past the end of the segment is refused. */
    snprintf(longer, sizeof longer, "%.*s999", (int)strlen(keep), keep);
    assert_int_equal(capture_read(f->cap, longer, &data, &len), -1);
    assert_non_null(strstr(err_msg(), "holds no capture"));

    assert_int_equal(capture_delete(f->cap, rel, &existed), 0);
    assert_int_equal(existed, 1);
    assert_int_equal(capture_read(f->cap, rel, &data, &len), -1);
    assert_non_null(strstr(err_msg(), "deleted"));
    assert_int_equal(capture_delete(f->cap, rel, &existed), 0);
    assert_int_equal(existed, 0);
    /* The bytes are gone from the file; the other capture is untouched. */
    snprintf(path, sizeof path, "%s/%.*s", f->cap, (int)(strchr(rel, ':') - rel), rel);
    assert_int_equal(file_read(path, &raw, &raw_len), 0);
    assert_null(memmem(raw, raw_len, "secret", 6));
    assert_non_null(memmem(raw, raw_len, "other words", 11));
    free(raw);
    assert_int_equal(capture_read(f->cap, keep, &data, &len), 0);
    assert_string_equal(data, "other words");
    free(data);
}

static void test_a_range_that_is_not_a_record_is_refused(void **state)
{
    struct fixture *f = *state;
    char rel[CAPTURE_REL_MAX], shorter[CAPTURE_REL_MAX], *data = NULL, *colon;
    size_t len;

    write_ok(f->cap, "r1", T_MAR15, "whole message", rel);
    write_ok(f->cap, "r2", T_MAR15, "the next one", shorter);
    /* The first record's range, one byte short: inside the file, but not a record. */
    colon = strrchr(rel, ':');
    snprintf(shorter, sizeof shorter, "%.*s:%zu", (int)(colon - rel), rel,
             strlen("whole message") - 1);
    assert_int_equal(capture_read(f->cap, shorter, &data, &len), -1);
    assert_null(data);
    assert_non_null(strstr(err_msg(), "no capture ends at"));
}

static void test_a_segment_deleted_under_the_writer_is_started_again(void **state)
{
    struct fixture *f = *state;
    char rel[CAPTURE_REL_MAX], path[1024], *data = NULL;
    size_t len;

    write_ok(f->cap, "before", T_MAR15, "first", rel);
    snprintf(path, sizeof path, "%s/%.*s", f->cap, (int)(strchr(rel, ':') - rel), rel);
    assert_int_equal(unlink(path), 0); /* an operator removed it */
    write_ok(f->cap, "after", T_MAR15, "second", rel);
    assert_true(exists(f->cap, rel));
    assert_int_equal(capture_read(f->cap, rel, &data, &len), 0);
    assert_string_equal(data, "second");
    free(data);
}

static void test_old_layout_captures_still_read_and_delete(void **state)
{
    struct fixture *f = *state;
    char dir[1024], path[1100], *data = NULL;
    size_t len;
    int existed = -1;
    FILE *fp;

    snprintf(dir, sizeof dir, "%s/2026/03/15", f->cap);
    snprintf(path, sizeof path, "%s/x", dir);
    assert_int_equal(file_mkdir_parents(path), 0);
    snprintf(path, sizeof path, "%s/OLD1.eml", dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("old message", fp);
    fclose(fp);
    assert_int_equal(capture_read(f->cap, "2026/03/15/OLD1.eml", &data, &len), 0);
    assert_string_equal(data, "old message");
    free(data);
    assert_int_equal(capture_delete(f->cap, "2026/03/15/OLD1.eml", &existed), 0);
    assert_int_equal(existed, 1);
    assert_false(exists(f->cap, "2026/03/15/OLD1.eml"));
}

static void test_purge_removes_days_before_cutoff_only(void **state)
{
    struct fixture *f = *state;
    char old_year[CAPTURE_REL_MAX], old_month[CAPTURE_REL_MAX], old_day[CAPTURE_REL_MAX];
    char keep_day[CAPTURE_REL_MAX], keep_later[CAPTURE_REL_MAX], path[1024], stray[1024];
    size_t deleted = 0;
    FILE *fp;

    write_ok(f->cap, "y", T_MAR15 - 400 * DAY, "old year", old_year);
    write_ok(f->cap, "m", T_MAR15 - 40 * DAY, "old month", old_month);
    write_ok(f->cap, "d", T_MAR15 - DAY, "yesterday", old_day);
    write_ok(f->cap, "d2", T_MAR15 - DAY, "yesterday again", path); /* a second record */
    write_ok(f->cap, "k", T_MAR15, "cutoff day", keep_day);
    write_ok(f->cap, "l", T_MAR15 + 30 * DAY, "later", keep_later);
    /* A stray temp file from a crash goes with its day; a foreign file stays. */
    snprintf(stray, sizeof stray, "%s/2026/03/14/.d.AbCdEf.tmp", f->cap);
    fp = fopen(stray, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(path, sizeof path, "%s/README", f->cap);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    /* A capture of the old layout (one file per message) goes with its day too. */
    snprintf(path, sizeof path, "%s/2026/03/14/OLD1.eml", f->cap);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);

    assert_int_equal(capture_purge_before(f->cap, T_MAR15, &deleted), 0);
    assert_int_equal(deleted, 5);
    assert_false(exists(f->cap, old_year));
    assert_false(exists(f->cap, old_month));
    assert_false(exists(f->cap, old_day));
    assert_false(exists(f->cap, "2026/03/14"));
    assert_false(exists(f->cap, "2025"));
    assert_true(exists(f->cap, keep_day));
    assert_true(exists(f->cap, keep_later));
    assert_true(exists(f->cap, "README"));

    /* Again: nothing more to do. */
    assert_int_equal(capture_purge_before(f->cap, T_MAR15, &deleted), 0);
    assert_int_equal(deleted, 0);
}

static void test_purge_of_missing_directory_is_fine(void **state)
{
    struct fixture *f = *state;
    size_t deleted = 9;
    assert_int_equal(capture_purge_before(f->cap, T_MAR15, &deleted), 0);
    assert_int_equal(deleted, 0);
}

static void test_write_into_unwritable_place_is_a_clean_error(void **state)
{
    struct fixture *f = *state;
    char file[400], below[420], rel[CAPTURE_REL_MAX];
    FILE *fp;

    snprintf(file, sizeof file, "%s/plainfile", f->dir);
    fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(below, sizeof below, "%s/capture", file);
    assert_int_equal(capture_write(below, "id1", T_MAR15, "x", 1, rel), -1);
    assert_true(strlen(err_msg()) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_capture_round_trips_bytes_in_dated_private_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_capture_without_sync_writes_the_same_record, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_same_id_twice_gives_two_records_and_a_new_day_a_new_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_writing_at_once_each_read_back_their_own,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_layout_captures_still_read_and_delete, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_range_that_is_not_a_record_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_segment_deleted_under_the_writer_is_started_again,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_capture_refuses_unsafe_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_capture_read_and_delete_refuse_paths_outside_the_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_capture_missing_file_is_an_error_and_delete_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge_removes_days_before_cutoff_only, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_purge_of_missing_directory_is_fine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_into_unwritable_place_is_a_clean_error, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
