/* Tests for src/core/config.c: defaults, INI values, and clear errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"

static char path[64];

static void write_conf(const char *text)
{
    FILE *f;
    snprintf(path, sizeof path, "/tmp/mxw-test-config-%d.conf", (int)getpid());
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_defaults_need_no_file(void **state)
{
    struct config c;
    (void)state;
    config_defaults(&c);
    assert_string_equal(c.kv_uri, "lmdb:var/tokens.lmdb");
    assert_int_equal(c.bayes_min_learns, 200);
    assert_false(c.autolearn);
    assert_true(c.autolearn_spam == 12.0);
}

static void test_values_override_defaults(void **state)
{
    struct config c;
    (void)state;
    write_conf("; comment\n[store]\nkv = redis://127.0.0.1:6379/2\n[bayes]\nmin_learns = 50\n"
               "per_tenant = yes\nautolearn = on\nautolearn_spam = 15.5\nautolearn_ham = -4\n");
    config_defaults(&c);
    assert_int_equal(config_load(path, &c), 0);
    assert_string_equal(c.kv_uri, "redis://127.0.0.1:6379/2");
    assert_int_equal(c.bayes_min_learns, 50);
    assert_true(c.bayes_per_tenant);
    assert_true(c.autolearn);
    assert_true(c.autolearn_spam == 15.5);
    assert_true(c.autolearn_ham == -4.0);
    assert_int_equal(c.bayes_min_learns_class, 50); /* untouched default */
    unlink(path);
}

static void test_bad_value_names_file_and_line(void **state)
{
    struct config c;
    char want[128];
    (void)state;
    write_conf("[bayes]\nmin_learns = 10\nautolearn = maybe\n");
    config_defaults(&c);
    assert_int_equal(config_load(path, &c), -1);
    snprintf(want, sizeof want, "%s:3: bad value for [bayes] autolearn", path);
    assert_non_null(strstr(err_msg(), want));
    unlink(path);
}

static void test_negative_count_is_refused(void **state)
{
    struct config c;
    (void)state;
    write_conf("[bayes]\nmin_learns = -5\n");
    config_defaults(&c);
    assert_int_equal(config_load(path, &c), -1);
    unlink(path);
}

static void test_unknown_keys_are_ignored(void **state)
{
    struct config c;
    (void)state;
    write_conf("[future]\nshiny = 1\n[bayes]\nmin_learns = 7\n");
    config_defaults(&c);
    assert_int_equal(config_load(path, &c), 0);
    assert_int_equal(c.bayes_min_learns, 7);
    unlink(path);
}

static void test_retention_days_default_to_30_and_0_keeps_forever(void **state)
{
    struct config c;
    (void)state;
    config_defaults(&c);
    assert_int_equal(c.log_retention_days, 30);
    assert_int_equal(c.capture_retention_days, 30);
    write_conf("[gateway]\nlog_retention_days = 90\ncapture_retention_days = 0\n");
    assert_int_equal(config_load(path, &c), 0);
    assert_int_equal(c.log_retention_days, 90);
    assert_int_equal(c.capture_retention_days, 0);
    write_conf("[gateway]\nlog_retention_days = 36501\n");
    assert_int_equal(config_load(path, &c), -1);
    write_conf("[gateway]\ncapture_retention_days = week\n");
    assert_int_equal(config_load(path, &c), -1);
    unlink(path);
}

static void test_missing_file_is_an_error(void **state)
{
    struct config c;
    (void)state;
    config_defaults(&c);
    assert_int_equal(config_load("/nonexistent/mxwarden.conf", &c), -1);
    assert_non_null(strstr(err_msg(), "/nonexistent/mxwarden.conf: cannot open"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_need_no_file),
        cmocka_unit_test(test_values_override_defaults),
        cmocka_unit_test(test_bad_value_names_file_and_line),
        cmocka_unit_test(test_negative_count_is_refused),
        cmocka_unit_test(test_unknown_keys_are_ignored),
        cmocka_unit_test(test_retention_days_default_to_30_and_0_keeps_forever),
        cmocka_unit_test(test_missing_file_is_an_error),
    };
    log_set_level(LOG_LEVEL_ERROR); /* the unknown-key warning is expected */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
