/* Tests for src/message/source.c: files, directories and mbox files as messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tmpdir.h"

#include "message/source.h"

struct seen {
    char labels[16][512];
    size_t lens[16];
    char first_bytes[16][8];
    int n;
    int errors;
    int stop_after;
};

static int on_message(void *ctx, const char *label, const char *data, size_t len)
{
    struct seen *s = ctx;
    if (s->n < 16) {
        snprintf(s->labels[s->n], sizeof s->labels[0], "%s", strrchr(label, '/') + 1);
        s->lens[s->n] = len;
        snprintf(s->first_bytes[s->n], sizeof s->first_bytes[0], "%.*s", (int)(len < 7 ? len : 7),
                 data);
    }
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

static void on_error(void *ctx, const char *path, const char *reason)
{
    struct seen *s = ctx;
    (void)path;
    (void)reason;
    s->errors++;
}

static char dir[256];

static void put(const char *name, const char *text)
{
    char p[512];
    FILE *f;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    return test_tmpdir_make(dir, sizeof dir, "source");
}

static int teardown(void **state)
{
    (void)state;
    return test_tmpdir_remove(dir);
}

static void test_mbox_is_split_on_from_lines(void **state)
{
    struct seen s = {0};
    char p[512];
    (void)state;
    put("box", "From a@x Mon Jan 1 00:00:00 2024\nSubject: one\n\nbody\nFrom here on, no split\n\n"
               "From b@x Mon Jan 1 00:00:01 2024\nSubject: two\n\nbody two\n");
    snprintf(p, sizeof p, "%s/box", dir);
    assert_int_equal(source_each(p, on_message, on_error, &s), 2);
    assert_string_equal(s.labels[0], "box#1");
    assert_string_equal(s.labels[1], "box#2");
    assert_string_equal(s.first_bytes[0], "Subject");
    assert_string_equal(s.first_bytes[1], "Subject");
    assert_int_equal(s.lens[1], strlen("Subject: two\n\nbody two\n"));
}

static void test_directory_is_walked_in_name_order_skipping_hidden(void **state)
{
    struct seen s = {0};
    char sub[512];
    (void)state;
    put("b.eml", "Subject: b\n\nb\n");
    put("a.eml", "Subject: a\n\na\n");
    put(".hidden", "Subject: h\n\nh\n");
    snprintf(sub, sizeof sub, "%s/c", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    put("c/d.eml", "Subject: d\n\nd\n");
    assert_int_equal(source_each(dir, on_message, on_error, &s), 3);
    assert_string_equal(s.labels[0], "a.eml");
    assert_string_equal(s.labels[1], "b.eml");
    assert_string_equal(s.labels[2], "d.eml");
    assert_int_equal(s.errors, 0);
}

static void test_unreadable_and_empty_paths_are_reported(void **state)
{
    struct seen s = {0};
    char p[512];
    (void)state;
    put("empty", "");
    snprintf(p, sizeof p, "%s/empty", dir);
    assert_int_equal(source_each(p, on_message, on_error, &s), 0);
    snprintf(p, sizeof p, "%s/missing", dir);
    assert_int_equal(source_each(p, on_message, on_error, &s), 0);
    assert_int_equal(s.errors, 2);
    assert_int_equal(s.n, 0);
}

static void test_callback_can_stop_the_walk(void **state)
{
    struct seen s = {.stop_after = 1};
    (void)state;
    put("a.eml", "Subject: a\n\na\n");
    put("b.eml", "Subject: b\n\nb\n");
    assert_int_equal(source_each(dir, on_message, on_error, &s), -1);
    assert_int_equal(s.n, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mbox_is_split_on_from_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_is_walked_in_name_order_skipping_hidden,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_and_empty_paths_are_reported, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_callback_can_stop_the_walk, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
