/* Tests for src/checks/structure.c: the structural symbols of parsed messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "checks/structure.h"
#include "checks/symbols.h"
#include "core/arena.h"
#include "core/buf.h"
#include "message/message.h"
#include "scan/result.h"

static struct symbol_registry *reg;
static struct structure_ids ids;

/* Runs the structural checks on raw; returns the hit of name (NULL if none). */
static const struct symbol_hit *check(const char *raw, const char *name, struct message **keep)
{
    struct message *m = message_parse(raw, strlen(raw), NULL);
    struct scan_result *r = arena_calloc(m->arena, 1, sizeof *r);
    result_init(r, m->arena, reg);
    structure_check(&ids, m, r);
    *keep = m;
    return result_find(r, symbols_lookup(reg, name));
}

static void test_received_count_is_capped(void **state)
{
    struct buf b = {0};
    struct message *m;
    int i;
    (void)state;
    for (i = 0; i < 15; i++) buf_printf(&b, "Received: from h%d by h%d\n", i, i + 1);
    buf_append_str(&b, "Subject: x\n\nbody\n");
    assert_non_null(check(b.data, "RCVD_COUNT_12", &m));
    message_free(m);
    assert_non_null(check("Received: from a by b\nSubject: x\n\nbody\n", "RCVD_COUNT_1", &m));
    message_free(m);
    buf_free(&b);
}

static void test_good_and_bad_mime(void **state)
{
    struct message *m;
    const struct symbol_hit *h;
    (void)state;
    assert_non_null(check("MIME-Version: 1.0\nSubject: x\n\nfine\n", "MIME_GOOD", &m));
    message_free(m);
    h = check("Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\nSGVsbG8*!\n",
              "MIME_BAD", &m);
    assert_non_null(h);
    assert_string_equal(h->options[0], "bad base64");
    message_free(m);
}

static void test_html_only_and_alternative(void **state)
{
    struct message *m;
    (void)state;
    assert_non_null(check("Content-Type: text/html\n\n<p>hi</p>\n", "MIME_HTML_ONLY", &m));
    message_free(m);
    assert_null(check("Content-Type: multipart/alternative; boundary=B\n\n--B\n"
                      "Content-Type: text/plain\n\nhi\n--B\nContent-Type: text/html\n\n<p>hi</p>\n"
                      "--B--\n",
                      "MIME_HTML_ONLY", &m));
    message_free(m);
}

static void test_zero_font_needs_enough_hidden_text(void **state)
{
    struct message *m;
    const struct symbol_hit *h;
    (void)state;
    /* 19 hidden characters: layout, not stuffing. */
    assert_null(check("Content-Type: text/html\n\n<p>shown</p>"
                      "<span style=\"font-size:0\">abcdefghijklmnopqrs</span>\n",
                      "ZERO_FONT", &m));
    message_free(m);
    h = check("Content-Type: text/html\n\n<p>shown</p>"
              "<span style=\"font-size:0\">abcdefghijklmnopqrst</span>\n",
              "ZERO_FONT", &m);
    assert_non_null(h);
    assert_string_equal(h->options[0], "20 hidden characters");
    message_free(m);
}

static void test_link_mismatch_names_both_domains(void **state)
{
    struct message *m;
    const struct symbol_hit *h;
    (void)state;
    h = check("Content-Type: text/html\n\n<a href=\"https://login.evil.example/x\">"
              "https://www.mybank.com/</a>\n",
              "HTML_LINK_MISMATCH", &m);
    assert_non_null(h);
    assert_string_equal(h->options[0], "mybank.com -> evil.example");
    message_free(m);
    assert_null(check("Content-Type: text/html\n\n<a href=\"https://www.mybank.com/login\">"
                      "mybank.com</a>\n",
                      "HTML_LINK_MISMATCH", &m));
    message_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_received_count_is_capped),
        cmocka_unit_test(test_good_and_bad_mime),
        cmocka_unit_test(test_html_only_and_alternative),
        cmocka_unit_test(test_zero_font_needs_enough_hidden_text),
        cmocka_unit_test(test_link_mismatch_names_both_domains),
    };
    int rc;
    message_library_init();
    reg = symbols_new();
    structure_register(reg, &ids);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    symbols_free(reg);
    message_library_shutdown();
    return rc;
}
