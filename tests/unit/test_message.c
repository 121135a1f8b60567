/* Tests for src/message/message.c: the message model built on GMime. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/file.h"
#include "message/dump.h"
#include "message/message.h"

static struct message *parse(const char *s)
{
    return message_parse(s, strlen(s), NULL);
}

static struct message *parse_example(const char *name)
{
    const char *top = getenv("MXW_SOURCE_DIR");
    char path[4096];
    char *data;
    size_t len;
    struct message *m;

    snprintf(path, sizeof path, "%s/%s", top ? top : ".", name);
    assert_int_equal(file_read(path, &data, &len), 0);
    m = message_parse(data, len, NULL);
    free(data);
    return m;
}

static const struct url *find_url(const struct message *m, const char *host)
{
    size_t i;
    for (i = 0; i < m->n_urls; i++)
        if (strcmp(m->urls[i].host, host) == 0) return &m->urls[i];
    return NULL;
}

static void test_rfc2047_subject_and_from_are_decoded(void **state)
{
    struct message *m = parse("From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <Juergen@Example.COM>\r\n"
                              "Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= aus Bonn\r\n"
                              "Reply-To: other@example.net\r\n"
                              "\r\nHallo\r\n");
    (void)state;
    assert_string_equal(m->subject, "Gr\xC3\xBC\xC3\x9F" "e aus Bonn");
    assert_string_equal(m->from_name, "J\xC3\xBCrgen M\xC3\xBCller");
    assert_string_equal(m->from_domain, "example.com");
    assert_string_equal(m->reply_to_addr, "other@example.net");
    assert_int_equal(m->n_texts, 1);
    assert_string_equal(m->texts[0].text, "Hallo\r\n");
    message_free(m);
}

static void test_alternative_gives_two_texts_not_html_only(void **state)
{
    struct message *m = parse_example("examples/ham-release-notes.eml");
    (void)state;
    assert_int_equal(m->n_parts, 3);
    assert_string_equal(m->parts[0].type, "multipart/alternative");
    assert_true(m->parts[0].is_multipart);
    assert_string_equal(m->parts[1].type, "text/plain");
    assert_string_equal(m->parts[2].type, "text/html");
    assert_int_equal(m->n_texts, 2);
    assert_false(m->texts[0].is_html);
    assert_true(m->texts[1].is_html);
    /* Quoted-printable decoded: the em dash is there as UTF-8. */
    assert_non_null(strstr(m->texts[0].text, "candidates \xE2\x80\x94 especially"));
    assert_false(m->flags & (MSG_F_HTML_ONLY | MSG_F_MIME_BAD));
    assert_int_equal(m->n_received, 2);
    assert_string_equal(m->hops[0].ip, "192.0.2.25");
    assert_string_equal(m->hops[1].ip, "198.51.100.7");
    assert_non_null(find_url(m, "docs.example.org"));
    assert_true(m->date_unix > 0);
    message_free(m);
}

static void test_hidden_text_and_link_mismatch_example(void **state)
{
    struct message *m = parse_example("examples/spam-hidden-text.eml");
    const struct url *u;
    (void)state;
    assert_true(m->flags & MSG_F_HTML_ONLY);
    assert_string_equal(m->subject, "Your account is suspended - verify now");
    assert_int_equal(m->n_texts, 1);
    assert_true(m->texts[0].hidden_chars >= 40);
    assert_null(strstr(m->texts[0].text, "quarterly report"));
    u = find_url(m, "198.51.100.23");
    assert_non_null(u);
    assert_true(u->flags & URL_F_IP_LITERAL);
    assert_true(u->flags & URL_F_LINK_MISMATCH);
    assert_string_equal(u->link_text_domain, "paypal.com");
    message_free(m);
}

static void test_attachment_is_sniffed_and_bad_base64_flagged(void **state)
{
    struct message *m = parse_example("examples/malware-invoice.eml");
    size_t i;
    const struct msg_part *att = NULL;
    (void)state;
    for (i = 0; i < m->n_parts; i++)
        if (m->parts[i].is_attachment) att = &m->parts[i];
    assert_non_null(att);
    assert_string_equal(att->filename, "invoice_30114.pdf.exe");
    assert_string_equal(att->sniffed_type, "application/x-msdownload");
    assert_true(att->flags & PART_F_BAD_BASE64);
    assert_true(m->flags & MSG_F_MIME_BAD);
    assert_true(att->size_bytes > 100);
    /* The text part declared us-ascii carries a latin-1 byte: converted and flagged. */
    assert_int_equal(m->n_texts, 1);
    assert_non_null(strstr(m->texts[0].text, "f\xC3\xBCr"));
    assert_true(m->parts[m->texts[0].part].flags & PART_F_CHARSET_WRONG);
    message_free(m);
}

static void test_declared_latin1_that_is_utf8_is_read_as_utf8(void **state)
{
    struct message *m = parse("Content-Type: text/plain; charset=iso-8859-1\n\n"
                              "caf\xC3\xA9 cr\xC3\xA8me\n");
    (void)state;
    assert_string_equal(m->texts[0].text, "caf\xC3\xA9 cr\xC3\xA8me\n");
    assert_true(m->parts[0].flags & PART_F_CHARSET_WRONG);
    message_free(m);
}

static void test_koi8r_is_converted_with_iconv(void **state)
{
    /* "privet" in KOI8-R */
    struct message *m = parse("Content-Type: text/plain; charset=koi8-r\n\n\xD0\xD2\xC9\xD7\xC5\xD4\n");
    (void)state;
    assert_string_equal(m->texts[0].text,
                        "\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82\n");
    assert_int_equal(m->parts[0].flags & (PART_F_CHARSET_WRONG | PART_F_CHARSET_UNKNOWN), 0);
    message_free(m);
}

static void test_unknown_charset_is_guessed_and_flagged(void **state)
{
    struct message *m = parse("Content-Type: text/plain; charset=x-no-such-charset\n\nna\xEFve\n");
    (void)state;
    assert_string_equal(m->texts[0].text, "na\xC3\xAFve\n");
    assert_true(m->parts[0].flags & PART_F_CHARSET_UNKNOWN);
    message_free(m);
}

static void test_base64_text_part_is_decoded(void **state)
{
    struct message *m = parse("Content-Type: text/plain; charset=utf-8\n"
                              "Content-Transfer-Encoding: base64\n\n"
                              "SGVsbG8gdGhlcmUsIGZyaWVuZCE=\n");
    (void)state;
    assert_string_equal(m->texts[0].text, "Hello there, friend!");
    assert_int_equal(m->parts[0].size_bytes, 20);
    assert_false(m->flags & MSG_F_MIME_BAD);
    message_free(m);
}

static void test_unknown_transfer_encoding_is_mime_bad(void **state)
{
    struct message *m = parse("Content-Type: text/plain\nContent-Transfer-Encoding: x-weird\n\nhi\n");
    (void)state;
    assert_true(m->parts[0].flags & PART_F_BAD_ENCODING);
    assert_true(m->flags & MSG_F_MIME_BAD);
    assert_string_equal(m->texts[0].text, "hi\n");
    message_free(m);
}

static void test_nested_rfc822_message_is_walked(void **state)
{
    struct message *m = parse("Content-Type: multipart/mixed; boundary=X\n\n"
                              "--X\nContent-Type: text/plain\n\nouter\n"
                              "--X\nContent-Type: message/rfc822\n\n"
                              "Subject: inner\nContent-Type: text/html\n\n<p>inner body</p>\n"
                              "--X--\n");
    (void)state;
    assert_int_equal(m->n_parts, 4);
    assert_string_equal(m->parts[2].type, "message/rfc822");
    assert_string_equal(m->parts[3].type, "text/html");
    assert_int_equal(m->parts[3].depth, 2);
    assert_int_equal(m->n_texts, 2);
    assert_string_equal(m->texts[1].text, "inner body");
    message_free(m);
}

static void test_envelope_is_copied(void **state)
{
    const char *rcpt[] = {"a@example.org", "b@example.org"};
    struct envelope env = {.mail_from = "Bounce@Mail.Example.COM", .rcpt = rcpt, .n_rcpt = 2,
                           .client_ip = "192.0.2.9", .helo = "mail.example.com", .queue_id = "4AB"};
    struct message *m = message_parse("Subject: x\n\nbody\n", 17, &env);
    (void)state;
    assert_string_equal(m->env.mail_from, "Bounce@Mail.Example.COM");
    assert_string_equal(m->env_from_domain, "mail.example.com");
    assert_int_equal(m->env.n_rcpt, 2);
    assert_string_equal(m->env.rcpt[1], "b@example.org");
    assert_string_equal(m->env.queue_id, "4AB");
    message_free(m);
}

static void test_line_end_and_nul_flags(void **state)
{
    static const char with_nul[] = "Subject: a\r\n\r\nbody\0more\n";
    struct message *m = message_parse(with_nul, sizeof with_nul - 1, NULL);
    (void)state;
    assert_true(m->flags & MSG_F_NUL_BYTES);
    assert_true(m->flags & MSG_F_BARE_LINE_ENDS);
    assert_non_null(strstr(m->texts[0].text, "body more"));
    message_free(m);
    m = parse("Subject: a\r\n\r\nbody\r\n");
    assert_false(m->flags & (MSG_F_NUL_BYTES | MSG_F_BARE_LINE_ENDS));
    message_free(m);
}

static void test_header_lookup_is_case_insensitive(void **state)
{
    struct message *m = parse("X-Mailer: Test 1.0\nReceived: a\nreceived: b\n\nx\n");
    (void)state;
    assert_string_equal(message_header(m, "x-mailer"), "Test 1.0");
    assert_int_equal(message_header_count(m, "RECEIVED"), 2);
    assert_null(message_header(m, "X-Missing"));
    message_free(m);
}

/* ---- message flags from header and structure damage (GMime's warnings, computed by us) ---- */

static unsigned flags_of(const char *s)
{
    struct message *m = parse(s);
    unsigned flags = m->flags;
    message_free(m);
    return flags;
}

#define HEADER_FLAGS (MSG_F_BAD_HEADERS | MSG_F_8BIT_HEADERS)
#define MIME_FLAGS   (MSG_F_MIME_BAD | MSG_F_TRUNCATED)

static void test_clean_message_has_no_damage_flags(void **state)
{
    (void)state;
    assert_int_equal(flags_of("From: a@example.com\nSubject: =?utf-8?q?hi_there?=\n\nbody\n") &
                         (HEADER_FLAGS | MIME_FLAGS),
                     0);
}

static void test_8bit_header_value_not_utf8_flags_8bit(void **state)
{
    (void)state;
    assert_int_equal(flags_of("Subject: caf\xE9\n\nbody\n") & HEADER_FLAGS, HEADER_FLAGS);
}

static void test_8bit_header_value_valid_utf8_is_not_flagged(void **state)
{
    (void)state;
    assert_int_equal(flags_of("Subject: caf\xC3\xA9\n\nbody\n") & HEADER_FLAGS, 0);
}

static void test_8bit_header_name_flags_8bit(void **state)
{
    (void)state;
    assert_int_equal(flags_of("X-Caf\xC3\xA9: yes\n\nbody\n") & HEADER_FLAGS, HEADER_FLAGS);
}

static void test_8bit_header_in_a_subpart_flags_8bit(void **state)
{
    (void)state;
    assert_int_equal(flags_of("Content-Type: multipart/mixed; boundary=b\n\n--b\n"
                              "Content-Type: text/plain; name=\"caf\xE9\"\n\nx\n--b--\n") &
                         HEADER_FLAGS,
                     HEADER_FLAGS);
}

static void test_encoded_word_with_space_is_bad_header(void **state)
{
    (void)state;
    assert_int_equal(flags_of("Subject: =?utf-8?q?hel lo?=\n\nbody\n") & HEADER_FLAGS,
                     MSG_F_BAD_HEADERS);
    assert_int_equal(flags_of("Subject: =?utf-8?q?hel\n lo?=\n\nbody\n") & HEADER_FLAGS,
                     MSG_F_BAD_HEADERS);
    /* Not encoded words at all (bad encoding letter, no end): left alone, as GMime does. */
    assert_int_equal(flags_of("Subject: =?utf-8?x?hel lo?= =?utf-8?q?a b\n\nbody\n") & HEADER_FLAGS,
                     0);
}

static void test_invalid_header_name_is_bad_header(void **state)
{
    (void)state;
    assert_int_equal(flags_of("From: a@example.com\nthis is not a header\nSubject: x\n\nbody\n") &
                         HEADER_FLAGS,
                     MSG_F_BAD_HEADERS);
    assert_int_equal(flags_of("Content-Type: multipart/mixed; boundary=b\n\n--b\n"
                              "hello world\n\nx\n--b--\n") &
                         HEADER_FLAGS,
                     MSG_F_BAD_HEADERS);
}

static void test_conflicting_content_type_is_bad_header(void **state)
{
    (void)state;
    assert_int_equal(flags_of("Content-Type: text/plain\nContent-Type: text/html\n\nx\n") &
                         HEADER_FLAGS,
                     MSG_F_BAD_HEADERS);
    assert_int_equal(flags_of("MIME-Version: 1.0\nMIME-Version: 1.1\n\nx\n") & HEADER_FLAGS,
                     MSG_F_BAD_HEADERS);
    /* The same value twice, or other headers repeated, are not. */
    assert_int_equal(flags_of("Content-Type: text/plain\nContent-Type: text/plain\n"
                              "Received: a\nReceived: b\n\nx\n") &
                         HEADER_FLAGS,
                     0);
}

static void test_conflicting_parameter_is_mime_bad(void **state)
{
    (void)state;
    assert_int_equal(flags_of("Content-Type: text/plain; charset=a; charset=b\n\nx\n") & MIME_FLAGS,
                     MSG_F_MIME_BAD);
    assert_int_equal(
        flags_of("Content-Type: text/plain; charset=a; charset=\"a\"\n\nx\n") & MIME_FLAGS, 0);
}

static void test_multipart_without_boundary_is_mime_bad(void **state)
{
    (void)state;
    assert_int_equal(flags_of("Content-Type: multipart/mixed\n\nhello\n") & MIME_FLAGS,
                     MSG_F_MIME_BAD);
}

static void test_unclosed_multipart_is_truncated(void **state)
{
    (void)state;
    assert_int_equal(flags_of("Content-Type: multipart/mixed; boundary=b\n\n"
                              "--b\nContent-Type: text/plain\n\nhi\n") &
                         MIME_FLAGS,
                     MIME_FLAGS);
    assert_int_equal(flags_of("Content-Type: multipart/mixed; boundary=b\n\n") & MIME_FLAGS,
                     MIME_FLAGS);
}

static void test_headers_cut_by_end_of_input_are_truncated(void **state)
{
    (void)state;
    assert_int_equal(flags_of("From: a@example.com\nSubject: x\n") & MIME_FLAGS, MIME_FLAGS);
}

static void test_inner_multipart_closed_by_outer_boundary_is_mime_bad(void **state)
{
    (void)state;
    assert_int_equal(flags_of("Content-Type: multipart/mixed; boundary=b\n\n--b\n"
                              "Content-Type: multipart/alternative; boundary=c\n\n--c\n\nx\n"
                              "--b--\n") &
                         MIME_FLAGS,
                     MSG_F_MIME_BAD);
}

static void test_empty_multipart_is_not_flagged(void **state)
{
    (void)state;
    assert_int_equal(flags_of("Content-Type: multipart/mixed; boundary=b\n\n--b--\n") &
                         (HEADER_FLAGS | MIME_FLAGS),
                     0);
}

static void test_part_without_headers_or_content_is_mime_bad(void **state)
{
    (void)state;
    assert_int_equal(flags_of("Content-Type: multipart/mixed; boundary=b\n\n--b\n--b--\n") &
                         (HEADER_FLAGS | MIME_FLAGS),
                     MSG_F_MIME_BAD | MSG_F_BAD_HEADERS);
}

/* ---- the plain path (single parts without GMime's tree) against GMime's ---- */

/* Parses s both ways, asserts the two models are the same, and returns which way the default
 * parse went: true for GMime's tree. */
static bool same_both_ways(const char *s)
{
    struct message *plain = message_parse(s, strlen(s), NULL);
    struct message *gmime = message_parse_opts(s, strlen(s), NULL, MSG_PARSE_GMIME);
    struct buf a = {0}, b = {0};
    bool tree = plain->gmime_tree;

    assert_true(gmime->gmime_tree);
    message_dump_all(&a, plain);
    message_dump_all(&b, gmime);
    buf_append_char(&a, '\0');
    buf_append_char(&b, '\0');
    assert_string_equal(a.data, b.data);
    buf_free(&a);
    buf_free(&b);
    message_free(plain);
    message_free(gmime);
    return tree;
}

static void test_plain_single_parts_match_gmime(void **state)
{
    static const char *const plain[] = {
        "From: a@example.com\nTo: b@example.org\nSubject: hi\n\nbody text http://example.net/x\n",
        "From: a@example.com\r\nSubject: crlf\r\n\r\nline one\r\nline two\r\n",
        "Subject: folded\n  over\n\tthree lines\nFrom: \"A B\" <a@example.com>\n\nx\n",
        "From: a@example.com\nContent-Type: text/html; charset=\"ISO-8859-1\"\n\n"
        "<html><body><p>Hello <a href=\"http://evil.example/\">http://bank.example/</a></body>\n",
        "From: a@example.com\nContent-Type: text/plain;\n charset=koi8-r\n"
        "Content-Transfer-Encoding: base64\n\n8sXHyc/O\n",
        "From: a@example.com\nContent-Type: TEXT/Plain; charset=utf-8; charset=latin1\n\nx\n",
        "From: a@example.com\nContent-Transfer-Encoding: Quoted-Printable\n\nsoft=\nbreak =3D\n",
        "From: a@example.com\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 a\n",
        "From: a@example.com\nContent-Type: application/octet-stream; name=\"a.exe\"\n"
        "Content-Disposition: attachment; filename=\"invoice.pdf.exe\"\n"
        "Content-Transfer-Encoding: base64\n\nTVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAA=\n",
        "From: a@example.com\nContent-Disposition: inline\n\ntext\n",
        "From: a@example.com\nContent-Type: garbage\n\ntext\n",
        "From: a@example.com\nContent-Type: ;charset=utf-8\n\ntext\n",
        "From: a@example.com\nContent-Type:\n\ntext\n",
        "From: a@example.com\nX-Empty:\nDate: Mon, 2 Sep 2002 12:00:00 +0000\n\n",
        "From: a@example.com\nReceived: from a (b [192.0.2.1]) by c\n\tid 1\n\nx",
        "Return-Path: <>\nFrom: <@example.com>\nReply-To: x@y\nMessage-ID: <1@2>\n\n",
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof plain / sizeof plain[0]; i++)
        assert_false(same_both_ways(plain[i]));
}

static void test_other_messages_go_to_gmime(void **state)
{
    static const char *const tree[] = {
        "From: a@example.com\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n",
        "From: a@example.com\nContent-Type: message/rfc822\n\nFrom: c@d\n\ninner\n",
        "From: a@example.com\nSubject: =?utf-8?q?caf=C3=A9?=\n\nx\n",
        "From: a@example.com\nSubject: caf\xc3\xa9\n\nx\n",
        "From: a@example.com\nContent-Type: text/plain\nContent-Type: text/html\n\nx\n",
        "From: a@example.com\nMIME-Version: 1.0\nMIME-Version: 1.0\n\nx\n",
        "Subject : blank before the colon\n\nx\n",
        "From: a@example.com\nno colon here\n\nx\n",
        " From: a@example.com\n\nx\n",
        "From: a@example.com\nSubject: cut off",
        "From: a@example.com\nSubject: no body\n",
        "From: a@example.com\r\nSubject: mixed\n\r\nx\n",
        "From: a@example.com\rSubject: bare cr\n\nx\n",
        "",
        "just text, no headers at all\n",
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof tree / sizeof tree[0]; i++)
        assert_true(same_both_ways(tree[i]));
    /* A NUL byte anywhere. */
    {
        static const char nul[] = "From: a@example.com\n\nx\0y\n";
        struct message *m = message_parse(nul, sizeof nul - 1, NULL);
        assert_true(m->gmime_tree);
        message_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc2047_subject_and_from_are_decoded),
        cmocka_unit_test(test_alternative_gives_two_texts_not_html_only),
        cmocka_unit_test(test_hidden_text_and_link_mismatch_example),
        cmocka_unit_test(test_attachment_is_sniffed_and_bad_base64_flagged),
        cmocka_unit_test(test_declared_latin1_that_is_utf8_is_read_as_utf8),
        cmocka_unit_test(test_koi8r_is_converted_with_iconv),
        cmocka_unit_test(test_unknown_charset_is_guessed_and_flagged),
        cmocka_unit_test(test_base64_text_part_is_decoded),
        cmocka_unit_test(test_unknown_transfer_encoding_is_mime_bad),
        cmocka_unit_test(test_nested_rfc822_message_is_walked),
        cmocka_unit_test(test_envelope_is_copied),
        cmocka_unit_test(test_line_end_and_nul_flags),
        cmocka_unit_test(test_header_lookup_is_case_insensitive),
        cmocka_unit_test(test_clean_message_has_no_damage_flags),
        cmocka_unit_test(test_8bit_header_value_not_utf8_flags_8bit),
        cmocka_unit_test(test_8bit_header_value_valid_utf8_is_not_flagged),
        cmocka_unit_test(test_8bit_header_name_flags_8bit),
        cmocka_unit_test(test_8bit_header_in_a_subpart_flags_8bit),
        cmocka_unit_test(test_encoded_word_with_space_is_bad_header),
        cmocka_unit_test(test_invalid_header_name_is_bad_header),
        cmocka_unit_test(test_conflicting_content_type_is_bad_header),
        cmocka_unit_test(test_conflicting_parameter_is_mime_bad),
        cmocka_unit_test(test_multipart_without_boundary_is_mime_bad),
        cmocka_unit_test(test_unclosed_multipart_is_truncated),
        cmocka_unit_test(test_headers_cut_by_end_of_input_are_truncated),
        cmocka_unit_test(test_inner_multipart_closed_by_outer_boundary_is_mime_bad),
        cmocka_unit_test(test_empty_multipart_is_not_flagged),
        cmocka_unit_test(test_part_without_headers_or_content_is_mime_bad),
        cmocka_unit_test(test_plain_single_parts_match_gmime),
        cmocka_unit_test(test_other_messages_go_to_gmime),
    };
    int rc;
    message_library_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    message_library_shutdown();
    return rc;
}
