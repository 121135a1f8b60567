/*
 * Tests for src/mta/postfix.c against stand-in Postfix commands: small shell
 * scripts in a private bin directory (postfix_conf.bin_dir) that answer the
 * way Postfix 3.7's do (see ../shared/PLATFORM.md) and log their arguments.
 * They check what the real Postfix cannot be made to do on demand: a
 * missing binary, a failing or hanging command, malformed postqueue output,
 * and exactly which commands and arguments each operation runs. The real
 * Postfix is exercised by tests/integration/quarantine_cli.sh.
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
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/file.h"
#include "core/log.h"
#include "mta/postfix.h"
#include "tmpdir.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_POSTFIX_LIST_MAX_MS 8000
#else
#define TEST_POSTFIX_LIST_MAX_MS 2000
#endif

/* The stand-ins. Every one appends "NAME ARGS" to $dir/calls. Held ids: HELD1, HELD2, NULLS
 * (null sender). */
static const char fake_postqueue[] =
    "#!/bin/sh\n"
    "d=$(dirname \"$0\"); echo \"postqueue $*\" >>\"$d/calls\"\n"
    "case \"$*\" in *-j*) [ -f \"$d/hang\" ] && sleep 10\n"
    "  [ -f \"$d/down\" ] && { echo 'postqueue: fatal: Queue report unavailable - mail system is "
    "down' >&2; exit 1; }\n"
    "  cat \"$d/queue.json\";; esac\n"
    "exit 0\n";
static const char fake_postsuper[] =
    "#!/bin/sh\n"
    "d=$(dirname \"$0\"); echo \"postsuper $*\" >>\"$d/calls\"\n"
    "n=0; for a in \"$@\"; do case $a in HELD1|HELD2|NULLS) n=1;; esac; done\n"
    "s=s; [ $n = 1 ] && s=''\n"
    "case \"$*\" in *-d*) echo \"postsuper: Deleted: $n message$s\" >&2;;\n"
    "  *-H*) echo \"postsuper: Released from hold: $n message$s\" >&2;; esac\n"
    "exit 0\n";
static const char fake_postcat[] =
    "#!/bin/sh\n"
    "d=$(dirname \"$0\"); echo \"postcat $*\" >>\"$d/calls\"\n"
    "for a in \"$@\"; do id=$a; done\n"
    "case $id in HELD1|HELD2) s=alice@sender.example;; NULLS) s='';;\n"
    "  *) echo \"postcat: fatal: open queue file $id: No such file or directory\" >&2; exit 1;; "
    "esac\n"
    "echo \"*** ENVELOPE RECORDS hold/$id ***\"\n"
    "echo \"sender: $s\"; echo 'recipient: bob@test.example'; echo 'recipient: "
    "carol@test.example'\n"
    "echo \"*** MESSAGE CONTENTS hold/$id ***\"\n"
    "echo 'Subject: cheap watches'; echo 'From: alice@sender.example'\n"
    "echo \"*** HEADER EXTRACTED hold/$id ***\"\n"
    "echo \"*** MESSAGE FILE END hold/$id ***\"\n";
static const char fake_sendmail[] =
    "#!/bin/sh\n"
    "d=$(dirname \"$0\"); echo \"sendmail $*\" >>\"$d/calls\"\n"
    "[ -f \"$d/sendmail_fails\" ] && { echo 'sendmail: fatal: no space' >&2; exit 75; }\n"
    "cat >\"$d/sent\"\n";
static const char fake_postconf[] = "#!/bin/sh\necho mx.fake.example\n";

struct fixture {
    char dir[256];
    struct postfix_conf pc;
};

static void put_file(const char *dir, const char *name, const char *text, int mode)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, (mode_t)mode), 0);
}

static char *slurp(const char *dir, const char *name)
{
    char path[512], *data = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (file_read(path, &data, &len) != 0) return strdup("");
    return data;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL || test_tmpdir_make(f->dir, sizeof f->dir, "postfix") != 0) return -1;
    put_file(f->dir, "postqueue", fake_postqueue, 0755);
    put_file(f->dir, "postsuper", fake_postsuper, 0755);
    put_file(f->dir, "postcat", fake_postcat, 0755);
    put_file(f->dir, "sendmail", fake_sendmail, 0755);
    put_file(f->dir, "postconf", fake_postconf, 0755);
    put_file(f->dir, "queue.json", "", 0644);
    f->pc.bin_dir = f->dir;
    f->pc.config_dir = "/etc/pf-test";
    f->pc.timeout_ms = 5000;
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

static void test_hold_list_keeps_hold_queue_and_parses_items(void **state)
{
    struct fixture *f = *state;
    struct postfix_queue_list list;
    put_file(
        f->dir, "queue.json",
        "{\"queue_name\": \"hold\", \"queue_id\": \"HELD1\", \"arrival_time\": 1700000000, "
        "\"message_size\": 402, \"forced_expire\": false, \"sender\": \"alice@sender.example\", "
        "\"recipients\": [{\"address\": \"bob@test.example\"}, {\"address\": "
        "\"carol@test.example\", \"delay_reason\": \"held\"}]}\n"
        "{\"queue_name\": \"deferred\", \"queue_id\": \"DEF1\", \"arrival_time\": 1, "
        "\"message_size\": 1, \"forced_expire\": false, \"sender\": \"x@y\", "
        "\"recipients\": [{\"address\": \"z@y\"}]}\n"
        "{\"queue_name\": \"hold\", \"queue_id\": \"NULLS\", \"arrival_time\": 1700000100, "
        "\"message_size\": 99, \"forced_expire\": false, \"sender\": \"\", "
        "\"recipients\": [{\"address\": \"bob@test.example\"}]}\n",
        0644);
    assert_int_equal(postfix_hold_list(&f->pc, &list), POSTFIX_OK);
    assert_int_equal(list.n, 2);
    assert_string_equal(list.items[0].queue_id, "HELD1");
    assert_string_equal(list.items[0].queue_name, "hold");
    assert_int_equal(list.items[0].arrival_time, 1700000000);
    assert_int_equal(list.items[0].size_bytes, 402);
    assert_string_equal(list.items[0].sender, "alice@sender.example");
    assert_int_equal(list.items[0].n_recipients, 2);
    assert_string_equal(list.items[0].recipients[1], "carol@test.example");
    assert_string_equal(list.items[0].delay_reason, "held");
    assert_string_equal(list.items[1].sender, "");
    postfix_queue_list_free(&list);
    {
        char *calls = slurp(f->dir, "calls");
        assert_string_equal(calls, "postqueue -c /etc/pf-test -j\n");
        free(calls);
    }
}

static void test_hold_list_of_ten_thousand_messages(void **state)
{
    struct fixture *f = *state;
    struct postfix_queue_list list;
    struct buf json = {0};
    struct timespec t0, t1;
    int i;
    for (i = 0; i < 10000; i++)
        buf_printf(
            &json,
            "{\"queue_name\": \"hold\", \"queue_id\": \"Q%05dAB\", \"arrival_time\": %d, "
            "\"message_size\": 1000, \"forced_expire\": false, \"sender\": "
            "\"s%d@sender.example\", \"recipients\": [{\"address\": \"bob@test.example\"}]}\n",
            i, 1700000000 + i, i);
    put_file(f->dir, "queue.json", json.data, 0644);
    buf_free(&json);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(postfix_hold_list(&f->pc, &list), POSTFIX_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(list.n, 10000);
    assert_string_equal(list.items[9999].queue_id, "Q09999AB");
    /* Parsing is a small part of the 2 s budget (postqueue itself takes the rest); wall time,
     * since the stub postqueue runs in a process of its own, so the bound is loose enough for a
     * loaded machine and sanitizers, and still far below what quadratic parsing would take. */
    assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 <
                TEST_POSTFIX_LIST_MAX_MS);
    postfix_queue_list_free(&list);
}

static void test_malformed_postqueue_output_is_an_error(void **state)
{
    struct fixture *f = *state;
    struct postfix_queue_list list;
    put_file(
        f->dir, "queue.json",
        "{\"queue_name\": \"hold\", \"queue_id\": \"A1\", \"sender\": \"\", \"recipients\": []}\n"
        "this is not json\n",
        0644);
    assert_int_equal(postfix_hold_list(&f->pc, &list), POSTFIX_ERR);
    assert_non_null(strstr(err_msg(), "line 2"));
    postfix_queue_list_free(&list);
    put_file(f->dir, "queue.json", "{\"queue_name\": \"hold\", \"queue_id\": \"../x\"}\n", 0644);
    assert_int_equal(postfix_hold_list(&f->pc, &list), POSTFIX_ERR);
    assert_int_equal(list.n, 0);
    postfix_queue_list_free(&list);
}

static void test_missing_binary_is_a_clear_error(void **state)
{
    struct fixture *f = *state;
    struct postfix_queue_list list;
    char empty[300];
    snprintf(empty, sizeof empty, "%s/empty", f->dir);
    assert_int_equal(mkdir(empty, 0700), 0);
    f->pc.bin_dir = empty;
    assert_int_equal(postfix_hold_list(&f->pc, &list), POSTFIX_ERR);
    assert_non_null(strstr(err_msg(), "cannot run postqueue"));
    assert_non_null(strstr(err_msg(), "No such file"));
    assert_int_equal(postfix_delete(&f->pc, "HELD1"), POSTFIX_ERR);
    assert_non_null(strstr(err_msg(), "cannot run postsuper"));
    postfix_queue_list_free(&list);
}

static void test_failing_command_reports_its_stderr(void **state)
{
    struct fixture *f = *state;
    struct postfix_queue_list list;
    put_file(f->dir, "down", "", 0644);
    assert_int_equal(postfix_hold_list(&f->pc, &list), POSTFIX_ERR);
    assert_non_null(strstr(err_msg(), "exit status 1"));
    assert_non_null(strstr(err_msg(), "mail system is down"));
    postfix_queue_list_free(&list);
}

static void test_hanging_command_is_killed_at_the_timeout(void **state)
{
    struct fixture *f = *state;
    struct postfix_queue_list list;
    time_t start = time(NULL);
    put_file(f->dir, "hang", "", 0644);
    f->pc.timeout_ms = 300;
    assert_int_equal(postfix_hold_list(&f->pc, &list), POSTFIX_ERR);
    assert_non_null(strstr(err_msg(), "no answer within 300 ms"));
    assert_true(time(NULL) - start < 5);
    postfix_queue_list_free(&list);
}

static void test_delete_acts_on_hold_queue_and_detects_unknown_ids(void **state)
{
    struct fixture *f = *state;
    char *calls;
    assert_int_equal(postfix_delete(&f->pc, "HELD1"), POSTFIX_OK);
    assert_int_equal(postfix_delete(&f->pc, "UNKNOWN9"), POSTFIX_NOT_FOUND);
    assert_non_null(strstr(err_msg(), "UNKNOWN9"));
    calls = slurp(f->dir, "calls");
    assert_string_equal(calls, "postsuper -c /etc/pf-test -d HELD1 hold\n"
                               "postsuper -c /etc/pf-test -d UNKNOWN9 hold\n");
    free(calls);
}

static void test_release_moves_out_of_hold_then_flushes(void **state)
{
    struct fixture *f = *state;
    char *calls;
    assert_int_equal(postfix_release(&f->pc, "HELD2"), POSTFIX_OK);
    assert_int_equal(postfix_release(&f->pc, "GONE"), POSTFIX_NOT_FOUND);
    calls = slurp(f->dir, "calls");
    assert_string_equal(calls, "postsuper -c /etc/pf-test -H HELD2\n"
                               "postqueue -c /etc/pf-test -i HELD2\n"
                               "postsuper -c /etc/pf-test -H GONE\n");
    free(calls);
}

static void test_invalid_ids_run_nothing(void **state)
{
    struct fixture *f = *state;
    static const char *const bad[] = {"", "-d", "../x", "A B", "ALL", "a;b", NULL};
    struct buf out = {0};
    char *calls;
    size_t i;
    for (i = 0; bad[i]; i++) {
        int expect = postfix_queue_id_valid(bad[i]) ? POSTFIX_NOT_FOUND : POSTFIX_INVALID;
        if (strcmp(bad[i], "ALL") == 0) continue; /* valid syntax; postsuper sees it as an id */
        assert_int_equal(postfix_delete(&f->pc, bad[i]), expect);
        assert_int_equal(postfix_release(&f->pc, bad[i]), expect);
        assert_int_equal(postfix_reject(&f->pc, bad[i], NULL), expect);
        assert_int_equal(postfix_show(&f->pc, bad[i], &out), expect);
    }
    assert_int_equal(postfix_delete(&f->pc, NULL), POSTFIX_INVALID);
    calls = slurp(f->dir, "calls");
    assert_string_equal(calls, "");
    free(calls);
    buf_free(&out);
}

static void test_reject_mails_a_notice_to_the_sender_then_deletes(void **state)
{
    struct fixture *f = *state;
    char *calls, *sent;
    assert_int_equal(postfix_reject(&f->pc, "HELD1", "spam\r\nBcc: evil@example.com"), POSTFIX_OK);
    calls = slurp(f->dir, "calls");
    assert_non_null(strstr(calls, "postcat -c /etc/pf-test -eh -q HELD1\n"));
    assert_non_null(strstr(calls, "sendmail -C /etc/pf-test -f <> -i -- alice@sender.example\n"
                                  "postsuper -c /etc/pf-test -d HELD1 hold\n"));
    sent = slurp(f->dir, "sent");
    assert_non_null(strstr(sent, "\nTo: <alice@sender.example>\n"));
    assert_non_null(strstr(sent, "Reporting-MTA: dns; mx.fake.example\n"));
    assert_non_null(strstr(sent, "Final-Recipient: rfc822; bob@test.example\n"));
    assert_non_null(strstr(sent, "Final-Recipient: rfc822; carol@test.example\n"));
    assert_non_null(strstr(sent, "Content-Type: text/rfc822-headers\n\nSubject: cheap watches\n"));
    /* The reason's line break cannot start a header or a new field. */
    assert_non_null(strstr(sent, "Reason: spam  Bcc: evil@example.com\n"));
    assert_null(strstr(sent, "\nBcc:"));
    free(calls);
    free(sent);
}

static void test_reject_of_null_sender_deletes_without_notice(void **state)
{
    struct fixture *f = *state;
    char *calls;
    assert_int_equal(postfix_reject(&f->pc, "NULLS", NULL), POSTFIX_OK);
    calls = slurp(f->dir, "calls");
    assert_null(strstr(calls, "sendmail"));
    assert_non_null(strstr(calls, "postsuper -c /etc/pf-test -d NULLS hold\n"));
    free(calls);
}

static void test_reject_keeps_message_held_when_notice_fails(void **state)
{
    struct fixture *f = *state;
    char *calls;
    put_file(f->dir, "sendmail_fails", "", 0644);
    assert_int_equal(postfix_reject(&f->pc, "HELD1", "x"), POSTFIX_ERR);
    assert_non_null(strstr(err_msg(), "left held"));
    assert_non_null(strstr(err_msg(), "no space"));
    calls = slurp(f->dir, "calls");
    assert_null(strstr(calls, "postsuper"));
    free(calls);
    assert_int_equal(postfix_reject(&f->pc, "UNKNOWN1", "x"), POSTFIX_NOT_FOUND);
}

static void test_show_prints_postcat_output_of_held_message(void **state)
{
    struct fixture *f = *state;
    struct buf out = {0};
    assert_int_equal(postfix_show(&f->pc, "HELD2", &out), POSTFIX_OK);
    assert_non_null(strstr(out.data, "*** ENVELOPE RECORDS hold/HELD2 ***"));
    assert_non_null(strstr(out.data, "Subject: cheap watches"));
    buf_clear(&out);
    assert_int_equal(postfix_show(&f->pc, "NOPE", &out), POSTFIX_NOT_FOUND);
    assert_int_equal(out.len, 0);
    buf_free(&out);
}

static void test_bulk_reports_each_outcome(void **state)
{
    struct fixture *f = *state;
    const char *ids[] = {"HELD1", "UNKNOWN2", "bad/id", "HELD2"};
    struct postfix_outcome outcomes[4];
    assert_int_equal(postfix_bulk(&f->pc, POSTFIX_DELETE, ids, 4, NULL, outcomes), 2);
    assert_int_equal(outcomes[0].rc, POSTFIX_OK);
    assert_null(outcomes[0].error);
    assert_int_equal(outcomes[1].rc, POSTFIX_NOT_FOUND);
    assert_non_null(strstr(outcomes[1].error, "UNKNOWN2"));
    assert_int_equal(outcomes[2].rc, POSTFIX_INVALID);
    assert_non_null(strstr(outcomes[2].error, "invalid queue id"));
    assert_int_equal(outcomes[3].rc, POSTFIX_OK);
    postfix_outcomes_free(outcomes, 4);
    assert_string_equal(postfix_action_name(POSTFIX_REJECT), "reject");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_hold_list_keeps_hold_queue_and_parses_items),
        T(test_hold_list_of_ten_thousand_messages),
        T(test_malformed_postqueue_output_is_an_error),
        T(test_missing_binary_is_a_clear_error),
        T(test_failing_command_reports_its_stderr),
        T(test_hanging_command_is_killed_at_the_timeout),
        T(test_delete_acts_on_hold_queue_and_detects_unknown_ids),
        T(test_release_moves_out_of_hold_then_flushes),
        T(test_invalid_ids_run_nothing),
        T(test_reject_mails_a_notice_to_the_sender_then_deletes),
        T(test_reject_of_null_sender_deletes_without_notice),
        T(test_reject_keeps_message_held_when_notice_fails),
        T(test_show_prints_postcat_output_of_held_message),
        T(test_bulk_reports_each_outcome),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
