/*
 * Tests for src/scan/settings_cmd.c: `mxwarden settings set|get|list|unset`
 * against a real SQLite file in a private temporary directory, with the
 * output and the diagnostics captured in memory streams.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "scan/settings_cmd.h"
#include "tmpdir.h"

struct fixture {
    char dir[256];
    char path[320];
    char uri[340];
    char *out;
    char *err;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL || test_tmpdir_make(f->dir, sizeof f->dir, "settings-cmd") != 0) return -1;
    snprintf(f->path, sizeof f->path, "%s/var/mxwarden.db", f->dir);
    snprintf(f->uri, sizeof f->uri, "sqlite:%s", f->path);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    free(f->out);
    free(f->err);
    test_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* Runs `settings ARGS...` (NULL-terminated); keeps stdout/stderr text in f; returns the status. */
static int run(struct fixture *f, ...)
{
    char *argv[16];
    int argc = 0, rc;
    size_t out_len, err_len;
    FILE *out, *err;
    va_list ap;

    free(f->out);
    free(f->err);
    argv[argc++] = "settings";
    va_start(ap, f);
    while (argc < 15 && (argv[argc] = va_arg(ap, char *)) != NULL)
        argc++;
    va_end(ap);
    argv[argc] = NULL;
    out = open_memstream(&f->out, &out_len);
    err = open_memstream(&f->err, &err_len);
    rc = settings_command(argc, argv, f->uri, out, err);
    fclose(out);
    fclose(err);
    return rc;
}

#define RUN_OK(f, ...)                                                                             \
    do {                                                                                           \
        int rc_ = run(f, __VA_ARGS__, (char *)NULL);                                               \
        if (rc_ != 0) fail_msg("status %d: %s", rc_, (f)->err);                                    \
    } while (0)

static void test_set_then_get_shows_value_and_origin(void **state)
{
    struct fixture *f = *state;

    RUN_OK(f, "set", "Example.ORG", "threshold.tag", "8");
    assert_string_equal(f->out, "example.org: threshold.tag = 8\n");
    RUN_OK(f, "get", "example.org", "threshold.tag");
    assert_string_equal(f->out, "threshold.tag = 8 (from example.org)\n");
    RUN_OK(f, "get", "bob@example.org", "threshold.tag");
    assert_string_equal(f->out, "threshold.tag = 8 (from example.org)\n");
    RUN_OK(f, "get", "other.org", "threshold.quarantine");
    assert_string_equal(f->out, "threshold.quarantine = 12 (from default)\n");

    RUN_OK(f, "set", "global", "subject_prefix", "[SPAM]", "add_report_header", "off");
    RUN_OK(f, "get", "bob@example.org");
    assert_string_equal(f->out, "threshold.tag = 8 (from example.org)\n"
                                "threshold.quarantine = 12 (from default)\n"
                                "threshold.reject = 18 (from default)\n"
                                "subject_prefix = \"[SPAM]\" (from global)\n"
                                "add_report_header = no (from global)\n");
}

static void test_list_shows_stored_rows(void **state)
{
    struct fixture *f = *state;
    char *line;

    RUN_OK(f, "list");
    assert_string_equal(f->out, "");
    RUN_OK(f, "set", "bob@Example.org", "threshold.reject", "15");
    RUN_OK(f, "set", "example.org", "add_report_header", "yes");
    RUN_OK(f, "list");
    line = strtok(f->out, "\n");
    assert_non_null(line);
    assert_int_equal(strncmp(line, "bob@example.org\tthreshold.reject\t15\t20", 38), 0);
    line = strtok(NULL, "\n");
    assert_non_null(line);
    assert_int_equal(strncmp(line, "example.org\tadd_report_header\tyes\t", 34), 0);
    assert_null(strtok(NULL, "\n"));

    RUN_OK(f, "list", "example.org");
    assert_non_null(strstr(f->out, "add_report_header"));
    assert_null(strstr(f->out, "threshold.reject"));
}

static void test_unset_returns_to_inherited_value(void **state)
{
    struct fixture *f = *state;

    RUN_OK(f, "set", "global", "threshold.tag", "5");
    RUN_OK(f, "set", "example.org", "threshold.tag", "4");
    RUN_OK(f, "unset", "example.org", "threshold.tag");
    assert_string_equal(f->out, "example.org: threshold.tag unset\n");
    RUN_OK(f, "get", "example.org", "threshold.tag");
    assert_string_equal(f->out, "threshold.tag = 5 (from global)\n");
    RUN_OK(f, "unset", "example.org", "threshold.tag"); /* absent: still fine */
}

static void test_invalid_values_exit_2_with_a_clear_message(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(run(f, "set", "example.org", "threshold.quarantine", "5", NULL), 2);
    assert_string_equal(f->err, "mxwarden settings: threshold.quarantine (5) must be greater "
                                "than threshold.tag (6) for example.org\n");
    assert_int_equal(run(f, "set", "example.org", "threshold.tag", "six", NULL), 2);
    assert_non_null(strstr(f->err, "threshold.tag must be a number"));
    assert_int_equal(run(f, "set", "example.org", "threshold.spam", "6", NULL), 2);
    assert_non_null(strstr(f->err, "unknown setting \"threshold.spam\""));
    assert_int_equal(run(f, "set", "not a domain", "threshold.tag", "6", NULL), 2);
    assert_non_null(strstr(f->err, "invalid scope"));
    assert_int_equal(run(f, "get", "example.org", "nope", NULL), 2);
    /* Several keys at once are checked together: this order only works as one change. */
    RUN_OK(f, "set", "example.org", "threshold.tag", "20", "threshold.quarantine", "30",
           "threshold.reject", "40");
    RUN_OK(f, "get", "example.org", "threshold.quarantine");
    assert_string_equal(f->out, "threshold.quarantine = 30 (from example.org)\n");
}

static void test_usage_errors_exit_2_without_touching_the_database(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(run(f, NULL), 2);
    assert_non_null(strstr(f->err, "usage: mxwarden settings set"));
    assert_int_equal(run(f, "frobnicate", NULL), 2);
    assert_int_equal(run(f, "set", "example.org", "threshold.tag", NULL), 2);
    assert_int_equal(run(f, "set", "example.org", "threshold.tag", "1", "subject_prefix", NULL), 2);
    assert_int_equal(run(f, "get", NULL), 2);
    assert_int_equal(run(f, "list", "a.org", "b.org", NULL), 2);
    assert_int_equal(run(f, "unset", "example.org", NULL), 2);
    assert_int_equal(access(f->path, F_OK), -1);
}

static void test_store_errors_exit_1(void **state)
{
    struct fixture *f = *state;
    FILE *fp;

    RUN_OK(f, "list"); /* creates var/ and the database */
    unlink(f->path);
    fp = fopen(f->path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 4096; i++)
        fputc('#', fp);
    fclose(fp);
    assert_int_equal(run(f, "get", "global", "threshold.tag", NULL), 1);
    assert_non_null(strstr(f->err, "not a database"));
    assert_int_equal(run(f, "set", "global", "threshold.tag", "5", NULL), 1);
    assert_int_equal(run(f, "list", NULL), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_set_then_get_shows_value_and_origin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_shows_stored_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unset_returns_to_inherited_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_values_exit_2_with_a_clear_message, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_usage_errors_exit_2_without_touching_the_database,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_errors_exit_1, setup, teardown),
    };
    log_set_level(LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
