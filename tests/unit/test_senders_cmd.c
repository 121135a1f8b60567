/*
 * Tests for src/mta/senders_cmd.c: `mxwarden senders list|add|remove` against
 * a real SQLite file in a private temporary directory, with the output and
 * the diagnostics captured in memory streams. The audit rows and the
 * sender-rules generation are read back through db.h.
 */
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

#include "core/log.h"
#include "mta/senders_cmd.h"
#include "store/db.h"
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
    if (f == NULL || test_tmpdir_make(f->dir, sizeof f->dir, "senders-cmd") != 0) return -1;
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

/* Runs `senders ARGS...` (NULL-terminated) as actor "tester"; keeps stdout/stderr; the status. */
static int run(struct fixture *f, ...)
{
    char *argv[16];
    int argc = 0, rc;
    size_t out_len, err_len;
    FILE *out, *err;
    va_list ap;

    free(f->out);
    free(f->err);
    argv[argc++] = "senders";
    va_start(ap, f);
    while (argc < 15 && (argv[argc] = va_arg(ap, char *)) != NULL)
        argc++;
    va_end(ap);
    argv[argc] = NULL;
    out = open_memstream(&f->out, &out_len);
    err = open_memstream(&f->err, &err_len);
    rc = senders_command(argc, argv, f->uri, "tester", out, err);
    fclose(out);
    fclose(err);
    return rc;
}

#define RUN_OK(f, ...)                                                                             \
    do {                                                                                           \
        int rc_ = run(f, __VA_ARGS__, (char *)NULL);                                               \
        if (rc_ != 0) fail_msg("status %d: %s", rc_, (f)->err);                                    \
    } while (0)

/* line starts with prefix. */
#define assert_prefix(line, prefix)                                                                \
    do {                                                                                           \
        assert_non_null(line);                                                                     \
        if (strncmp((line), (prefix), strlen(prefix)) != 0)                                        \
            fail_msg("\"%s\" does not start with \"%s\"", (line), (prefix));                       \
    } while (0)

static struct db *open_db(struct fixture *f)
{
    struct db *db = NULL;
    if (db_open(f->uri, &db) != DB_OK) fail_msg("db_open: %s", err_msg());
    return db;
}

static void test_add_detects_kind_and_stores_normalised_value(void **state)
{
    struct fixture *f = *state;
    char *line;

    RUN_OK(f, "add", "block", "Spammer.EXAMPLE", "--comment", "seen in a campaign");
    assert_string_equal(f->out, "1\tblock\tdomain\tspammer.example\n");
    RUN_OK(f, "add", "allow", "Boss@Partner.Example");
    assert_string_equal(f->out, "2\tallow\taddress\tBoss@partner.example\n");
    RUN_OK(f, "add", "block", "192.0.2.77/24");
    assert_string_equal(f->out, "3\tblock\tip\t192.0.2.0/24\n");
    RUN_OK(f, "add", "allow", "2001:DB8::1");
    assert_string_equal(f->out, "4\tallow\tip\t2001:db8::1\n");
    RUN_OK(f, "add", "block", "@bulk.example");
    assert_string_equal(f->out, "5\tblock\tdomain\tbulk.example\n");

    RUN_OK(f, "list");
    /* Ordered by kind, then value. */
    line = strtok(f->out, "\n");
    assert_non_null(line);
    assert_prefix(line, "2\tallow\taddress\tBoss@partner.example\t20");
    line = strtok(NULL, "\n");
    assert_prefix(line, "5\tblock\tdomain\tbulk.example\t");
    line = strtok(NULL, "\n");
    assert_prefix(line, "1\tblock\tdomain\tspammer.example\t20");
    assert_non_null(strstr(line, "Z\tseen in a campaign"));
    line = strtok(NULL, "\n");
    assert_prefix(line, "3\tblock\tip\t192.0.2.0/24\t");
    line = strtok(NULL, "\n");
    assert_prefix(line, "4\tallow\tip\t2001:db8::1\t");
    assert_null(strtok(NULL, "\n"));
}

static void test_adding_an_existing_rule_replaces_its_action(void **state)
{
    struct fixture *f = *state;

    RUN_OK(f, "add", "block", "example.net");
    RUN_OK(f, "add", "allow", "EXAMPLE.net.", "--comment=a partner after all");
    assert_string_equal(f->out, "1\tallow\tdomain\texample.net\n");
    RUN_OK(f, "list");
    assert_non_null(strstr(f->out, "1\tallow\tdomain\texample.net\t"));
    assert_non_null(strstr(f->out, "a partner after all"));
    assert_null(strstr(f->out, "block"));
}

static void test_remove_by_id_and_by_value(void **state)
{
    struct fixture *f = *state;

    RUN_OK(f, "add", "block", "spammer.example");
    RUN_OK(f, "add", "block", "198.51.100.0/24");
    RUN_OK(f, "add", "allow", "alice@example.org");
    /* By value as typed differently: the normalised forms match. */
    RUN_OK(f, "remove", "1", "198.51.100.9/24", "alice@EXAMPLE.org");
    assert_string_equal(f->out, "1\tremoved\tblock\tdomain\tspammer.example\n"
                                "2\tremoved\tblock\tip\t198.51.100.0/24\n"
                                "3\tremoved\tallow\taddress\talice@example.org\n");
    RUN_OK(f, "list");
    assert_string_equal(f->out, "");
}

static void test_remove_of_absent_rule_exits_3_and_removes_the_others(void **state)
{
    struct fixture *f = *state;

    RUN_OK(f, "add", "block", "spammer.example");
    assert_int_equal(run(f, "remove", "42", "spammer.example", "other.example", NULL), 3);
    assert_non_null(strstr(f->out, "42: no such rule\n"));
    assert_non_null(strstr(f->out, "1\tremoved\tblock\tdomain\tspammer.example\n"));
    assert_non_null(strstr(f->out, "other.example: no such rule\n"));
    RUN_OK(f, "list");
    assert_string_equal(f->out, "");
}

static void test_invalid_values_exit_2_before_anything_is_written(void **state)
{
    struct fixture *f = *state;
    static const char *const bad[] = {
        "192.0.2.300",    /* digits and dots, but no IPv4 address */
        "192.0.2.0/33",   /* prefix too long */
        "2001:db8::/129", /* likewise for IPv6 */
        "spammer..example", "bad domain.example", "-", "a@", "a@b..c", "", "@", NULL};
    struct stat st;
    size_t i;

    for (i = 0; bad[i]; i++) {
        int rc = run(f, "add", "block", bad[i], NULL);
        if (rc != 2) fail_msg("\"%s\": status %d, out %s", bad[i], rc, f->out);
        assert_non_null(strstr(f->err, "mxwarden senders: invalid"));
        assert_string_equal(f->out, "");
    }
    assert_int_equal(run(f, "add", "maybe", "example.com", NULL), 2);
    assert_non_null(strstr(f->err, "expected allow or block"));
    assert_int_equal(run(f, "add", "block", "example.com", "--comment", "line\nbreak", NULL), 2);
    assert_non_null(strstr(f->err, "invalid comment"));
    assert_int_equal(run(f, "remove", "spammer..example", NULL), 2);
    assert_int_equal(run(f, "remove", "0", NULL), 2); /* not an id, and not a valid value */
    /* Nothing was written, not even a database file. */
    assert_int_not_equal(stat(f->path, &st), 0);
}

static void test_usage_errors_exit_2(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(run(f, NULL), 2);
    assert_non_null(strstr(f->err, "usage: mxwarden senders"));
    assert_int_equal(run(f, "frobnicate", NULL), 2);
    assert_int_equal(run(f, "add", "block", NULL), 2);
    assert_int_equal(run(f, "add", "block", "a.example", "b.example", NULL), 2);
    assert_int_equal(run(f, "add", "block", "a.example", "--note", "x", NULL), 2);
    assert_int_equal(run(f, "remove", NULL), 2);
    assert_int_equal(run(f, "list", "extra", NULL), 2);
}

static void test_every_change_is_audited_and_moves_the_generation(void **state)
{
    struct fixture *f = *state;
    struct db_audit_list audit;
    struct db *db;
    int64_t generation = -1;

    RUN_OK(f, "add", "block", "spammer.example", "--comment", "campaign \"x\"");
    RUN_OK(f, "remove", "spammer.example");
    db = open_db(f);
    assert_int_equal(db_audit_list(db, 0, 10, &audit), DB_OK);
    assert_int_equal(audit.n, 2);
    /* Newest first. */
    assert_string_equal(audit.items[0].actor, "tester");
    assert_string_equal(audit.items[0].action, "sender_rule.delete");
    assert_string_equal(audit.items[0].target, "spammer.example");
    assert_string_equal(audit.items[1].action, "sender_rule.add");
    assert_string_equal(audit.items[1].target, "spammer.example");
    assert_string_equal(audit.items[1].details, "{\"id\":1,\"kind\":\"domain\",\"action\":"
                                                "\"block\",\"comment\":\"campaign \\\"x\\\"\"}");
    db_audit_list_free(&audit);
    assert_int_equal(db_sender_rules_generation(db, &generation), DB_OK);
    assert_int_equal(generation, 2);
    db_close(db);
}

static void test_default_actor_comes_from_the_environment(void **state)
{
    (void)state;
    setenv("SUDO_USER", "alice", 1);
    setenv("USER", "root", 1);
    assert_string_equal(senders_default_actor(), "alice");
    unsetenv("SUDO_USER");
    assert_string_equal(senders_default_actor(), "root");
    unsetenv("USER");
    assert_string_equal(senders_default_actor(), "cli");
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
    assert_int_equal(run(f, "list", NULL), 1);
    assert_non_null(strstr(f->err, "not a database"));
    assert_int_equal(run(f, "add", "block", "spammer.example", NULL), 1);
    assert_int_equal(run(f, "remove", "1", NULL), 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_add_detects_kind_and_stores_normalised_value),
        T(test_adding_an_existing_rule_replaces_its_action),
        T(test_remove_by_id_and_by_value),
        T(test_remove_of_absent_rule_exits_3_and_removes_the_others),
        T(test_invalid_values_exit_2_before_anything_is_written),
        T(test_usage_errors_exit_2),
        T(test_every_change_is_audited_and_moves_the_generation),
        T(test_default_actor_comes_from_the_environment),
        T(test_store_errors_exit_1),
    };
#undef T
    log_set_level(LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
