/*
 * The bad-input suite: hostile and broken messages through the whole scan
 * path (scan_message + features_extract). None may crash, hang or leak (the
 * sanitizer build runs this too); each must still give a report, and the
 * damage must show up in the model where the model has a flag for it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checks/symbols.h"
#include "core/buf.h"
#include "core/config.h"
#include "message/message.h"
#include "scan/result.h"
#include "scan/scan.h"
#include "text/features.h"

static struct scanner *scanner;
static struct scan_worker *worker;

/* Generous: the sanitizer build is several times slower than a release build. */
#define MAX_SECONDS 20.0

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Scans data, computes features, checks the time bound; returns the scan (caller frees). */
static struct scan *scan_bytes(const char *data, size_t len)
{
    double t0 = now();
    struct scan *sc = scan_message(worker, data, len, NULL);
    struct features f;
    features_extract(sc->message->arena, sc->message, &f, NULL, NULL);
    assert_true(now() - t0 < MAX_SECONDS);
    assert_true(sc->result.n_hits > 0); /* at least RCVD_COUNT_0 */
    return sc;
}

static struct scan *scan_str(const char *s)
{
    return scan_bytes(s, strlen(s));
}

static int has_symbol(const struct scan *sc, const char *name)
{
    int id = symbols_lookup(scanner_symbols(scanner), name);
    return id >= 0 && result_find(&sc->result, id) != NULL;
}

static void test_empty_input(void **state)
{
    struct scan *sc = scan_bytes("", 0);
    (void)state;
    assert_true(sc->message->flags & MSG_F_NO_HEADERS);
    assert_int_equal(sc->message->n_texts, 0);
    scan_free(sc);
}

static void test_no_headers(void **state)
{
    struct scan *sc = scan_str("just a line of text with no header at all\nand another\n");
    (void)state;
    assert_true(sc->message->n_texts >= 1 || sc->message->n_headers > 0);
    scan_free(sc);
}

static void test_headers_only(void **state)
{
    struct scan *sc = scan_str("From: a@example.com\nSubject: nothing below\n");
    (void)state;
    assert_string_equal(sc->message->subject, "nothing below");
    scan_free(sc);
}

static void test_nul_bytes_everywhere(void **state)
{
    static const char data[] = "Sub\0ject: a\0b\nFrom: x@\0y\n\nbo\0dy\0\0\0";
    struct scan *sc = scan_bytes(data, sizeof data - 1);
    size_t i;
    (void)state;
    assert_true(sc->message->flags & MSG_F_NUL_BYTES);
    for (i = 0; i < sc->message->n_texts; i++)
        assert_int_equal(strlen(sc->message->texts[i].text), sc->message->texts[i].len);
    scan_free(sc);
}

static void test_8bit_and_invalid_utf8_headers(void **state)
{
    struct scan *sc = scan_str("Subject: Gr\xFC\xDF"
                               "e \xFF\xFE invalid \xC3\x28\n"
                               "From: \"M\xFCller\" <m@example.com>\n\nbody\n");
    (void)state;
    assert_non_null(sc->message->subject);
    /* Whatever the guess, the model only holds valid UTF-8. */
    for (size_t i = 0; i < sc->message->n_headers; i++) {
        const char *v = sc->message->headers[i].value;
        struct buf b = {0};
        buf_append_json_string(&b, v, strlen(v));
        assert_null(strstr(b.data, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"));
        buf_free(&b);
    }
    scan_free(sc);
}

static void test_bare_cr_and_mixed_line_ends(void **state)
{
    struct scan *sc = scan_str("Subject: cr only\rFrom: a@b.example\r\rbody\rline\r");
    (void)state;
    scan_free(sc);
    sc = scan_str("Subject: mixed\r\nFrom: a@b.example\n\nbody\r\nline\n");
    assert_true(sc->message->flags & MSG_F_BARE_LINE_ENDS);
    scan_free(sc);
}

static void test_one_megabyte_lines(void **state)
{
    size_t n = 1 << 20;
    char *data = malloc(3 * n + 100);
    size_t len;
    (void)state;
    len = (size_t)sprintf(data, "Subject: ");
    memset(data + len, 'S', n);
    len += n;
    memcpy(data + len, "\n\n", 2);
    len += 2;
    memset(data + len, 'w', n);
    len += n;
    data[len++] = '\n';
    for (size_t i = 0; i < n; i++)
        data[len++] = (i % 7) ? 'a' : ' ';
    scan_free(scan_bytes(data, len));
    free(data);
}

static void test_large_message_is_bounded(void **state)
{
    /* 20 MB of text here (the 100 MB case with its memory peak runs in the CLI test). */
    size_t n = 20u << 20, len;
    char *data = malloc(n + 200);
    struct scan *sc;
    (void)state;
    len = (size_t)sprintf(data, "Subject: big\nContent-Type: text/plain\n\n");
    while (len + 64 < n)
        len += (size_t)sprintf(data + len, "a perfectly ordinary line %zu\n", len);
    sc = scan_bytes(data, len);
    assert_true(sc->message->parts[0].flags & PART_F_TRUNCATED);
    assert_true(sc->message->texts[0].len <= MSG_MAX_TEXT_BYTES);
    scan_free(sc);
    free(data);
}

static void test_broken_and_truncated_base64_and_qp(void **state)
{
    struct scan *sc =
        scan_str("Content-Type: multipart/mixed; boundary=B\n\n"
                 "--B\nContent-Transfer-Encoding: base64\n\nSGVsbG8*&^%$#@!\nSGV\n"
                 "--B\nContent-Transfer-Encoding: quoted-printable\n\nbad =ZZ =\n=4\n"
                 "--B\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n"
                 "JVBERi0xLjQK!!!\n--B--\n");
    (void)state;
    assert_true(sc->message->flags & MSG_F_MIME_BAD);
    assert_true(has_symbol(sc, "MIME_BAD"));
    assert_false(has_symbol(sc, "MIME_GOOD"));
    scan_free(sc);
}

static void test_unterminated_multipart(void **state)
{
    struct scan *sc = scan_str("Content-Type: multipart/mixed; boundary=B\n\n"
                               "--B\nContent-Type: text/plain\n\nfirst\n"
                               "--B\nContent-Type: text/html\n\n<p>second, never closed");
    (void)state;
    assert_int_equal(sc->message->n_texts, 2);
    scan_free(sc);
    sc = scan_str("Content-Type: multipart/mixed\n\nno boundary parameter at all\n");
    assert_true(sc->message->flags & MSG_F_MIME_BAD);
    scan_free(sc);
}

static void test_ten_thousand_parts(void **state)
{
    struct buf b = {0};
    struct scan *sc;
    int i;
    (void)state;
    buf_append_str(&b, "Content-Type: multipart/mixed; boundary=P\n\n");
    for (i = 0; i < 10000; i++)
        buf_printf(&b, "--P\nContent-Type: text/plain\n\npart %d\n", i);
    buf_append_str(&b, "--P--\n");
    sc = scan_bytes(b.data, b.len);
    assert_int_equal(sc->message->n_parts, MSG_MAX_PARTS);
    assert_true(sc->message->flags & MSG_F_TOO_MANY_PARTS);
    assert_true(has_symbol(sc, "MIME_BAD"));
    scan_free(sc);
    buf_free(&b);
}

static void test_nesting_a_thousand_deep(void **state)
{
    struct buf b = {0};
    struct scan *sc;
    int i;
    (void)state;
    buf_append_str(&b, "Subject: deep\n");
    for (i = 0; i < 1000; i++)
        buf_printf(&b, "Content-Type: multipart/mixed; boundary=L%d\n\n--L%d\n", i, i);
    buf_append_str(&b, "Content-Type: text/plain\n\ninnermost\n");
    for (i = 999; i >= 0; i--)
        buf_printf(&b, "--L%d--\n", i);
    sc = scan_bytes(b.data, b.len);
    assert_true(sc->message->flags & MSG_F_MIME_BAD);
    for (i = 0; (size_t)i < sc->message->n_parts; i++)
        assert_true(sc->message->parts[i].depth <= MSG_MAX_DEPTH);
    scan_free(sc);
    buf_free(&b);
}

static void test_wrong_charset_label(void **state)
{
    struct scan *sc = scan_str("Content-Type: text/plain; charset=utf-8\n\n"
                               "Pr\xE4sentation f\xFCr \x80 100\n");
    (void)state;
    assert_string_equal(sc->message->texts[0].text,
                        "Pr\xC3\xA4sentation f\xC3\xBCr \xE2\x82\xAC 100\n");
    assert_true(sc->message->parts[0].flags & PART_F_CHARSET_WRONG);
    scan_free(sc);
}

static void test_html_unclosed_tags_100000_deep(void **state)
{
    struct buf b = {0};
    struct scan *sc;
    int i;
    (void)state;
    buf_append_str(&b, "Content-Type: text/html\n\n<html><body>");
    for (i = 0; i < 100000; i++)
        buf_append_str(&b, "<div><span>");
    buf_append_str(&b, "deep text");
    sc = scan_bytes(b.data, b.len);
    assert_true(sc->message->flags & MSG_F_HTML_ONLY);
    assert_non_null(strstr(sc->message->texts[0].text, "deep text"));
    scan_free(sc);
    buf_free(&b);
}

static void test_hostile_urls(void **state)
{
    struct scan *sc =
        scan_str("Content-Type: text/html; charset=utf-8\n\n"
                 "<a href=\"http://www.paypal.com@evil.example/x\">www.paypal.com</a>"
                 "<a href=\"http://3232235777/\">x</a><a href=\"http://0xC0.0xA8.1.1/\">y</a>"
                 "<a href=\"http://%65vil.example/\">z</a>"
                 "<a href=\"http://p\xD0\xB0ypal.com/\">p\xD0\xB0ypal.com</a>"
                 "<a href=\"http://[::1\">broken</a><a href=\"javascript:alert(1)\">js</a>"
                 "<a href=\"http://\">empty</a><a href=\"http:////a..b:99999/\">odd</a>");
    const struct message *m = sc->message;
    int userinfo = 0, numeric = 0, idn = 0;
    (void)state;
    for (size_t i = 0; i < m->n_urls; i++) {
        if (m->urls[i].flags & URL_F_USERINFO) userinfo++;
        if (m->urls[i].flags & URL_F_NUMERIC_HOST) numeric++;
        if (m->urls[i].flags & URL_F_IDN) idn++;
    }
    assert_true(userinfo >= 1);
    assert_true(numeric >= 1);
    assert_true(idn >= 1);
    assert_true(has_symbol(sc, "HTML_LINK_MISMATCH"));
    scan_free(sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_input),
        cmocka_unit_test(test_no_headers),
        cmocka_unit_test(test_headers_only),
        cmocka_unit_test(test_nul_bytes_everywhere),
        cmocka_unit_test(test_8bit_and_invalid_utf8_headers),
        cmocka_unit_test(test_bare_cr_and_mixed_line_ends),
        cmocka_unit_test(test_one_megabyte_lines),
        cmocka_unit_test(test_large_message_is_bounded),
        cmocka_unit_test(test_broken_and_truncated_base64_and_qp),
        cmocka_unit_test(test_unterminated_multipart),
        cmocka_unit_test(test_ten_thousand_parts),
        cmocka_unit_test(test_nesting_a_thousand_deep),
        cmocka_unit_test(test_wrong_charset_label),
        cmocka_unit_test(test_html_unclosed_tags_100000_deep),
        cmocka_unit_test(test_hostile_urls),
    };
    struct config cfg;
    char store[] = "/tmp/mxw-bad-input-XXXXXX";
    int rc, fd = mkstemp(store);

    /* A real (empty) token store, so the Bayes path runs too. */
    close(fd);
    unlink(store);
    config_defaults(&cfg);
    cfg.auth_enabled = false;
    cfg.dnsbl_enabled = false; /* test_dnsbl covers it on a local server */
    snprintf(cfg.kv_uri, sizeof cfg.kv_uri, "lmdb:%s", store);
    message_library_init();
    scanner = scanner_new(&cfg);
    worker = scan_worker_new(scanner);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    scan_worker_free(worker);
    scanner_free(scanner);
    message_library_shutdown();
    unlink(store);
    snprintf(cfg.kv_uri, sizeof cfg.kv_uri, "%s-lock", store);
    unlink(cfg.kv_uri);
    return rc;
}
