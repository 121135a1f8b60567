/*
 * Unit tests for src/message/url.c: parsing and normalisation, hostile input
 * (userinfo, IP notations, percent-encoded and IDN hosts, NUL bytes, invalid
 * UTF-8, oversized URLs), finding URLs in text and domains in link text.
 *
 * Inputs are passed with explicit lengths (sizeof of the literal) so that
 * embedded NUL bytes reach the code under test.
 */
#include "core/arena.h"
#include "core/utf8.h"
#include "message/url.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define LIT(s) (s), (sizeof(s) - 1)

static int group_setup(void **state)
{
    (void)state;
    url_init();
    url_init(); /* documented as safe to repeat */
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    url_shutdown();
    return 0;
}

static int setup(void **state)
{
    *state = arena_new(0);
    return 0;
}

static int teardown(void **state)
{
    arena_free(*state);
    return 0;
}

static struct url parse_ok_len(struct arena *a, const char *s, size_t len)
{
    struct url u;
    if (url_parse(a, s, len, URL_SRC_HTML_HREF, &u) != 0) fail_msg("rejected: %.*s", (int)len, s);
    return u;
}

static struct url parse_ok(struct arena *a, const char *s)
{
    return parse_ok_len(a, s, strlen(s));
}

static void assert_rejected_len(struct arena *a, const char *s, size_t len)
{
    struct url u;
    if (url_parse(a, s, len, URL_SRC_HTML_HREF, &u) == 0)
        fail_msg("accepted: %.*s as %s", (int)len, s, u.normalised);
    assert_null(u.host); /* a failed parse leaves no half-filled result */
}

#define assert_rejected(a, lit) assert_rejected_len(a, LIT(lit))

#define FOUND_MAX 8

struct found {
    size_t calls;
    const char *normalised[FOUND_MAX];
    const char *raw[FOUND_MAX];
    const char *host[FOUND_MAX];
    unsigned flags[FOUND_MAX];
};

static void collect(void *ctx, const struct url *u)
{
    struct found *f = ctx;
    if (f->calls < FOUND_MAX) {
        f->normalised[f->calls] = u->normalised;
        f->raw[f->calls] = u->raw;
        f->host[f->calls] = u->host;
        f->flags[f->calls] = u->flags;
    }
    assert_int_equal(u->source, URL_SRC_TEXT);
    f->calls++;
}

static size_t find(struct arena *a, const char *text, size_t len, struct found *f)
{
    size_t n;
    memset(f, 0, sizeof *f);
    n = url_find_in_text(a, text, len, collect, f);
    assert_int_equal(n, f->calls);
    return n;
}

/* Asserts that text holds exactly one URL, with this normalised form. */
static void assert_finds_one(struct arena *a, const char *text, const char *normalised)
{
    struct found f;
    if (find(a, text, strlen(text), &f) != 1) fail_msg("found %zu URLs in: %s", f.calls, text);
    assert_string_equal(f.normalised[0], normalised);
}

static void assert_finds_none(struct arena *a, const char *text)
{
    struct found f;
    if (find(a, text, strlen(text), &f) != 0) fail_msg("found %s in: %s", f.normalised[0], text);
}

static void assert_link_domain(struct arena *a, const char *text, const char *domain)
{
    const char *d = url_domain_in_text(a, text, strlen(text));
    if (domain == NULL && d != NULL) fail_msg("\"%s\" gave %s, expected none", text, d);
    if (domain != NULL && d == NULL) fail_msg("\"%s\" gave none, expected %s", text, domain);
    if (domain != NULL) assert_string_equal(d, domain);
}

/* ---- parsing and normalisation ---- */

static void test_scheme_and_host_are_lowercased(void **state)
{
    struct url u = parse_ok(*state, "HTTPS://WWW.Example.COM/Path?Q=A");

    assert_string_equal(u.scheme, "https");
    assert_string_equal(u.host, "www.example.com");
    assert_string_equal(u.host_unicode, "www.example.com");
    assert_string_equal(u.domain, "example.com");
    assert_string_equal(u.path, "/Path?Q=A"); /* the path keeps its case */
    assert_string_equal(u.normalised, "https://www.example.com/Path?Q=A");
    assert_string_equal(u.raw, "HTTPS://WWW.Example.COM/Path?Q=A");
    assert_int_equal(u.port, 443);
    assert_int_equal(u.flags, 0);
}

static void test_source_is_recorded_and_link_text_left_empty(void **state)
{
    struct url u;

    assert_int_equal(url_parse(*state, LIT("http://example.com/"), URL_SRC_HTML_ACTION, &u), 0);
    assert_int_equal(u.source, URL_SRC_HTML_ACTION);
    assert_null(u.link_text_domain);
}

static void test_userinfo_is_stripped_and_flagged(void **state)
{
    struct url u = parse_ok(*state, "http://paypal.com@evil.example/login");

    assert_string_equal(u.host, "evil.example");
    assert_string_equal(u.domain, "evil.example");
    assert_string_equal(u.normalised, "http://evil.example/login");
    assert_string_equal(u.raw, "http://paypal.com@evil.example/login");
    assert_true(u.flags & URL_F_USERINFO);

    u = parse_ok(*state, "https://user:secret@example.com:8443/");
    assert_string_equal(u.normalised, "https://example.com:8443/");
    assert_true(u.flags & URL_F_USERINFO);
}

static void test_host_follows_last_at_sign(void **state)
{
    struct url u = parse_ok(*state, "http://www.paypal.com@login@evil.example/");

    assert_string_equal(u.host, "evil.example");
    assert_true(u.flags & URL_F_USERINFO);
}

static void test_at_sign_in_path_is_not_userinfo(void **state)
{
    struct url u = parse_ok(*state, "http://paypal.com/@evil.example");

    assert_string_equal(u.host, "paypal.com");
    assert_string_equal(u.path, "/@evil.example");
    assert_int_equal(u.flags & URL_F_USERINFO, 0);
}

static void test_decimal_ip_is_normalised(void **state)
{
    struct url u = parse_ok(*state, "http://3232235777/x");

    assert_string_equal(u.host, "192.168.1.1");
    assert_string_equal(u.domain, "192.168.1.1");
    assert_string_equal(u.normalised, "http://192.168.1.1/x");
    assert_true(u.flags & URL_F_IP_LITERAL);
    assert_true(u.flags & URL_F_NUMERIC_HOST);
}

static void test_hex_ip_is_normalised(void **state)
{
    struct url u = parse_ok(*state, "http://0xC0A80101/");

    assert_string_equal(u.host, "192.168.1.1");
    assert_true(u.flags & URL_F_NUMERIC_HOST);
    u = parse_ok(*state, "http://0xc0.0xA8.0x1.0x01/");
    assert_string_equal(u.host, "192.168.1.1");
    u = parse_ok(*state, "http://0x7f.1/");
    assert_string_equal(u.host, "127.0.0.1");
}

static void test_octal_ip_is_normalised(void **state)
{
    struct url u = parse_ok(*state, "http://0300.0250.1.1/");

    assert_string_equal(u.host, "192.168.1.1");
    assert_true(u.flags & URL_F_NUMERIC_HOST);
    /* Leading zeros mean octal, as in inet_aton() and browsers: 010 is 8. */
    u = parse_ok(*state, "http://10.0.0.010/");
    assert_string_equal(u.host, "10.0.0.8");
    assert_true(u.flags & URL_F_NUMERIC_HOST);
}

static void test_short_and_mixed_dotted_ip_is_normalised(void **state)
{
    struct url u = parse_ok(*state, "http://192.168.257/");

    assert_string_equal(u.host, "192.168.1.1");
    assert_true(u.flags & URL_F_NUMERIC_HOST);
    assert_string_equal(parse_ok(*state, "http://127.1/").host, "127.0.0.1");
    assert_string_equal(parse_ok(*state, "http://192.11010305/").host, "192.168.1.1");
    assert_string_equal(parse_ok(*state, "http://0xC0.168.0401/").host, "192.168.1.1");
    assert_string_equal(parse_ok(*state, "http://0/").host, "0.0.0.0");
}

static void test_plain_dotted_quad_is_not_flagged_numeric(void **state)
{
    struct url u = parse_ok(*state, "http://192.168.1.1:8080/admin");

    assert_string_equal(u.host, "192.168.1.1");
    assert_string_equal(u.normalised, "http://192.168.1.1:8080/admin");
    assert_true(u.flags & URL_F_IP_LITERAL);
    assert_int_equal(u.flags & URL_F_NUMERIC_HOST, 0);
    u = parse_ok(*state, "http://1.2.3.4./");
    assert_string_equal(u.host, "1.2.3.4");
    assert_int_equal(u.flags & URL_F_NUMERIC_HOST, 0);
}

static void test_invalid_ip_forms_are_rejected(void **state)
{
    /* A host that ends in a number must be a valid address, as in browsers. */
    assert_rejected(*state, "http://256.1.1.1/");
    assert_rejected(*state, "http://1.2.3.256/");
    assert_rejected(*state, "http://1.2.3.4.5/");
    assert_rejected(*state, "http://4294967296/");
    assert_rejected(*state, "http://0x100000000/");
    assert_rejected(*state, "http://99999999999999999999999/");
    assert_rejected(*state, "http://09.1.1.1/");
    assert_rejected(*state, "http://1..1/");
    assert_rejected(*state, "http://example.123/");
    assert_rejected(*state, "http://example.0x/");
}

static void test_ipv6_literal_is_normalised(void **state)
{
    struct url u = parse_ok(*state, "http://[2001:DB8:0:0:0:0:0:1]:8080/x");

    assert_string_equal(u.host, "[2001:db8::1]");
    assert_string_equal(u.domain, "[2001:db8::1]");
    assert_string_equal(u.normalised, "http://[2001:db8::1]:8080/x");
    assert_int_equal(u.port, 8080);
    assert_true(u.flags & URL_F_IP_LITERAL);
    assert_true(u.flags & URL_F_NONSTD_PORT);
    assert_string_equal(parse_ok(*state, "https://[::1]/").host, "[::1]");
}

static void test_malformed_ipv6_is_rejected(void **state)
{
    assert_rejected(*state, "http://[::1");
    assert_rejected(*state, "http://[::1/x]");
    assert_rejected(*state, "http://[::1]x/");
    assert_rejected(*state, "http://[::g]/");
    assert_rejected(*state, "http://[fe80::1%25eth0]/");
    assert_rejected(*state, "http://[1.2.3.4]/");
    assert_rejected(*state, "http://[]/");
    assert_rejected(*state, "http://[::1\0]/");
}

static void test_percent_encoded_host_is_decoded_and_flagged(void **state)
{
    struct url u = parse_ok(*state, "http://%70ay%50al.com/");

    assert_string_equal(u.host, "paypal.com");
    assert_string_equal(u.normalised, "http://paypal.com/");
    assert_true(u.flags & URL_F_PERCENT_HOST);
    u = parse_ok(*state, "http://%31%32%37.0.0.1/");
    assert_string_equal(u.host, "127.0.0.1");
    assert_true(u.flags & URL_F_PERCENT_HOST);
    u = parse_ok(*state, "http://m%C3%BCnchen.de/");
    assert_string_equal(u.host, "xn--mnchen-3ya.de");
    assert_true(u.flags & URL_F_IDN);
}

static void test_bad_percent_encoding_in_host_is_rejected(void **state)
{
    assert_rejected(*state, "http://pay%zzpal.com/");
    assert_rejected(*state, "http://paypal.co%6/");
    assert_rejected(*state, "http://paypal.com%/");
    assert_rejected(*state, "http://evil.example%2fpaypal.com/"); /* decodes to '/' */
    assert_rejected(*state, "http://evil%00.example/");
    assert_rejected(*state, "http://evil%FF.example/"); /* not UTF-8 once decoded */
}

static void test_idn_host_is_converted_to_punycode(void **state)
{
    struct url u = parse_ok(*state, "http://M\xc3\x9cnchen.DE/stadt");

    assert_string_equal(u.host, "xn--mnchen-3ya.de");
    assert_string_equal(u.host_unicode, "m\xc3\xbcnchen.de");
    assert_string_equal(u.domain, "xn--mnchen-3ya.de");
    assert_string_equal(u.normalised, "http://xn--mnchen-3ya.de/stadt");
    assert_true(u.flags & URL_F_IDN);
    assert_int_equal(u.flags & URL_F_MIXED_SCRIPT, 0);
}

static void test_punycode_host_is_decoded_for_display(void **state)
{
    struct url u = parse_ok(*state, "http://www.xn--mnchen-3ya.de/");

    assert_string_equal(u.host, "www.xn--mnchen-3ya.de");
    assert_string_equal(u.host_unicode, "www.m\xc3\xbcnchen.de");
    assert_string_equal(u.domain, "xn--mnchen-3ya.de");
    assert_true(u.flags & URL_F_IDN);
    /* Broken punycode still names an ASCII host the DNS can be asked about. */
    u = parse_ok(*state, "http://xn--zz.example/");
    assert_string_equal(u.host_unicode, "xn--zz.example");
}

static void test_cyrillic_homograph_is_flagged(void **state)
{
    /* "pаypal.com" with U+0430 CYRILLIC SMALL LETTER A. */
    struct url u = parse_ok(*state, "http://p\xd0\xb0ypal.com/login");

    assert_string_equal(u.host, "xn--pypal-4ve.com");
    assert_string_equal(u.host_unicode, "p\xd0\xb0ypal.com");
    assert_string_equal(u.normalised, "http://xn--pypal-4ve.com/login");
    assert_true(u.flags & URL_F_IDN);
    assert_true(u.flags & URL_F_MIXED_SCRIPT);
    /* The same host written as punycode. */
    u = parse_ok(*state, "http://xn--pypal-4ve.com/");
    assert_true(u.flags & URL_F_MIXED_SCRIPT);
}

static void test_greek_homograph_is_flagged(void **state)
{
    /* "gοοgle.com" with U+03BF GREEK SMALL LETTER OMICRON. */
    struct url u = parse_ok(*state, "http://g\xce\xbf\xce\xbfgle.com/");

    assert_true(u.flags & URL_F_MIXED_SCRIPT);
}

static void test_single_script_idn_is_not_mixed(void **state)
{
    /* пример.рф, and a Cyrillic label under .com: each label has one script. */
    struct url u = parse_ok(*state, "http://\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80."
                                    "\xd1\x80\xd1\x84/");

    assert_string_equal(u.host, "xn--e1afmkfd.xn--p1ai");
    assert_string_equal(u.domain, "xn--e1afmkfd.xn--p1ai");
    assert_true(u.flags & URL_F_IDN);
    assert_int_equal(u.flags & URL_F_MIXED_SCRIPT, 0);
    u = parse_ok(*state, "http://\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80.com/");
    assert_int_equal(u.flags & URL_F_MIXED_SCRIPT, 0);
}

static void test_fullwidth_forms_are_mapped_like_browsers(void **state)
{
    /* U+FF45 FULLWIDTH E and U+3002 IDEOGRAPHIC FULL STOP. */
    struct url u = parse_ok(*state, "http://\xef\xbd\x85vil\xe3\x80\x82"
                                    "com/");

    assert_string_equal(u.host, "evil.com");
    assert_true(u.flags & URL_F_IDN);
    /* Fullwidth digits ("１２７.0.0.1") are the address they show. */
    u = parse_ok(*state, "http://\xef\xbc\x91\xef\xbc\x92\xef\xbc\x97.0.0.1/");
    assert_string_equal(u.host, "127.0.0.1");
    assert_true(u.flags & URL_F_NUMERIC_HOST);
    /* U+FF0F FULLWIDTH SOLIDUS maps to '/', which is not a host character. */
    assert_rejected(*state, "http://evil.example\xef\xbc\x8fpaypal.com/");
}

static void test_symbol_idn_falls_back_to_transitional(void **state)
{
    struct url u = parse_ok(*state, "http://i\xe2\x9d\xa4.ws/");

    assert_string_equal(u.host, "xn--i-7iq.ws");
}

static void test_trailing_dot_is_removed(void **state)
{
    struct url u = parse_ok(*state, "http://www.example.com./a");

    assert_string_equal(u.host, "www.example.com");
    assert_string_equal(u.domain, "example.com");
    assert_string_equal(u.normalised, "http://www.example.com/a");
}

static void test_empty_labels_are_rejected(void **state)
{
    assert_rejected(*state, "http://a..b/");
    assert_rejected(*state, "http://.example.com/");
    assert_rejected(*state, "http://example.com../");
    assert_rejected(*state, "http://./");
}

/* "http://" + a host of n bytes: labels of label_len 'a's separated by dots. */
static const char *url_with_host_of(struct arena *a, size_t label_len, size_t n)
{
    char *s = arena_alloc(a, n + 9);
    size_t i;

    memcpy(s, "http://", 7);
    for (i = 0; i < n; i++)
        s[7 + i] = (i % (label_len + 1) == label_len) ? '.' : 'a';
    s[7 + n] = '/';
    s[8 + n] = '\0';
    return s;
}

static void test_overlong_host_names_are_rejected(void **state)
{
    /* The DNS limits: 63 bytes a label, 253 a name. */
    assert_int_equal(strlen(parse_ok(*state, url_with_host_of(*state, 63, 253)).host), 253);
    assert_rejected_len(*state, url_with_host_of(*state, 63, 254), 7 + 254 + 1);
    assert_int_equal(strlen(parse_ok(*state, url_with_host_of(*state, 63, 63)).host), 63);
    assert_rejected_len(*state, url_with_host_of(*state, 64, 64), 7 + 64 + 1);
    assert_rejected_len(*state, url_with_host_of(*state, 63, 1500), 7 + 1500 + 1);
}

static void test_invalid_host_characters_are_rejected(void **state)
{
    assert_rejected(*state, "http://exa mple.com/");
    assert_rejected(*state, "http://a<b.example/");
    assert_rejected(*state, "http://a\"b.example/");
    assert_rejected(*state, "http://a!b.example/");
    assert_rejected(*state, "http://a,b.example/");
    assert_rejected(*state, "http://a^b.example/");
    assert_rejected(*state, "http://exa\xffmple.com/");
    assert_rejected(*state, "http://exa\xc3mple.com/");
    assert_rejected(*state, "http://user@/");
    assert_rejected(*state, "http://:80/");
}

static void test_default_port_is_dropped(void **state)
{
    struct url u = parse_ok(*state, "https://example.com:443/x");

    assert_string_equal(u.normalised, "https://example.com/x");
    assert_int_equal(u.port, 443);
    assert_int_equal(u.flags & URL_F_NONSTD_PORT, 0);
    u = parse_ok(*state, "http://example.com:0080/");
    assert_string_equal(u.normalised, "http://example.com/");
    assert_int_equal(u.port, 80);
    u = parse_ok(*state, "ftp://example.com:/pub");
    assert_string_equal(u.normalised, "ftp://example.com/pub");
    assert_int_equal(u.port, 21);
    assert_int_equal(parse_ok(*state, "http://example.com/").port, 80);
}

static void test_nonstandard_port_is_kept_and_flagged(void **state)
{
    struct url u = parse_ok(*state, "http://example.com:443/");

    assert_string_equal(u.normalised, "http://example.com:443/");
    assert_int_equal(u.port, 443);
    assert_true(u.flags & URL_F_NONSTD_PORT);
    u = parse_ok(*state, "http://example.com:65535");
    assert_string_equal(u.normalised, "http://example.com:65535/");
    assert_int_equal(u.port, 65535);
}

static void test_out_of_range_ports_are_rejected(void **state)
{
    assert_rejected(*state, "http://example.com:65536/");
    assert_rejected(*state, "http://example.com:99999999999999999999999/");
    assert_rejected(*state, "http://example.com:-1/");
    assert_rejected(*state, "http://example.com:8a/");
    assert_rejected(*state, "http://example.com:80:80/");
    assert_rejected(*state, "http://example.com: 80/");
}

static void test_backslashes_act_as_slashes(void **state)
{
    struct url u = parse_ok(*state, "http:\\\\evil.example\\path\\x?q=a\\b");

    assert_string_equal(u.host, "evil.example");
    assert_string_equal(u.path, "/path/x?q=a\\b"); /* the query keeps its backslashes */
    assert_string_equal(u.normalised, "http://evil.example/path/x?q=a\\b");
    assert_string_equal(parse_ok(*state, "https:/\\evil.example").host, "evil.example");
    assert_string_equal(parse_ok(*state, "http:///evil.example").host, "evil.example");
    /* A backslash ends the authority, so the '@' after it is in the path. */
    u = parse_ok(*state, "http://evil.example\\@paypal.com/");
    assert_string_equal(u.host, "evil.example");
    assert_int_equal(u.flags & URL_F_USERINFO, 0);
}

static void test_surrounding_quotes_and_brackets_are_stripped(void **state)
{
    struct url u = parse_ok(*state, " \t\"<http://example.com/a>\"\r\n");

    assert_string_equal(u.raw, "http://example.com/a");
    assert_string_equal(u.normalised, "http://example.com/a");
    assert_string_equal(parse_ok(*state, "'www.example.com'").host, "www.example.com");
}

static void test_tabs_and_newlines_inside_are_ignored(void **state)
{
    struct url u = parse_ok(*state, "ht\ttp://exa\nmple.com/pa\r\nth");

    assert_string_equal(u.host, "example.com");
    assert_string_equal(u.normalised, "http://example.com/path");
    assert_rejected(*state, "java\nscript:alert(1)");
}

static void test_unsupported_schemes_are_rejected(void **state)
{
    assert_rejected(*state, "javascript:alert(1)");
    assert_rejected(*state, "JavaScript://example.com/%0aalert(1)");
    assert_rejected(*state, "data:text/html;base64,PHNjcmlwdD4=");
    assert_rejected(*state, "vbscript:msgbox");
    assert_rejected(*state, "file:///etc/passwd");
    assert_rejected(*state, "httpx://example.com/");
    assert_rejected(*state, "://example.com/");
    assert_rejected(*state, "1http://example.com/");
}

static void test_relative_references_are_rejected(void **state)
{
    assert_rejected(*state, "/login");
    assert_rejected(*state, "login.html");
    assert_rejected(*state, "//evil.example/");
    assert_rejected(*state, "example.com");
    assert_rejected(*state, "?q=1");
    assert_rejected(*state, "#top");
    assert_rejected(*state, "paypal.com@evil.example");
    assert_rejected(*state, "http:evil.example"); /* no slash: relative in a browser */
}

static void test_empty_and_truncated_urls_are_rejected(void **state)
{
    struct url u;

    assert_int_equal(url_parse(*state, "", 0, URL_SRC_TEXT, &u), -1);
    assert_int_equal(url_parse(*state, NULL, 0, URL_SRC_TEXT, &u), -1);
    assert_rejected(*state, "   ");
    assert_rejected(*state, "\"\"");
    assert_rejected(*state, "<>");
    assert_rejected(*state, "http");
    assert_rejected(*state, "http:");
    assert_rejected(*state, "http://");
    assert_rejected(*state, "https:///");
    assert_rejected(*state, "http://?q");
    assert_rejected(*state, "www.");
    assert_rejected(*state, "mailto:");
}

static void test_bare_www_host_gets_http_scheme(void **state)
{
    struct url u = parse_ok(*state, "WWW.Example.com/path");

    assert_string_equal(u.scheme, "http");
    assert_string_equal(u.host, "www.example.com");
    assert_string_equal(u.domain, "example.com");
    assert_string_equal(u.normalised, "http://www.example.com/path");
    assert_int_equal(u.port, 80);
    assert_true(u.flags & URL_F_NO_SCHEME);
    assert_int_equal(parse_ok(*state, "http://www.example.com/").flags & URL_F_NO_SCHEME, 0);
}

static void test_mailto_host_is_domain_after_at(void **state)
{
    struct url u = parse_ok(*state, "MAILTO:John.Doe@Mail.Example.COM?subject=Hi#x");

    assert_string_equal(u.scheme, "mailto");
    assert_string_equal(u.host, "mail.example.com");
    assert_string_equal(u.domain, "example.com");
    assert_string_equal(u.normalised, "mailto:John.Doe@mail.example.com?subject=Hi");
    assert_string_equal(u.path, "John.Doe@Mail.Example.COM?subject=Hi#x");
    assert_int_equal(u.port, 0);
    /* Only the first recipient; a quoted '@' is still the separator. */
    assert_string_equal(parse_ok(*state, "mailto:a@x.example,b@y.example").host, "x.example");
    u = parse_ok(*state, "mailto:user%40evil.example");
    assert_string_equal(u.host, "evil.example");
    assert_true(u.flags & URL_F_PERCENT_HOST);
    u = parse_ok(*state, "mailto:user@[192.0.2.1]");
    assert_string_equal(u.host, "192.0.2.1");
    assert_true(u.flags & URL_F_IP_LITERAL);
    assert_rejected(*state, "mailto:@example.com");
    assert_rejected(*state, "mailto:user@");
    assert_rejected(*state, "mailto:user@bad_host!");
    assert_rejected(*state, "mailto:us%0Aer@example.com");
}

static void test_mailto_without_address_has_empty_host(void **state)
{
    struct url u = parse_ok(*state, "mailto:?subject=hello");

    assert_string_equal(u.host, "");
    assert_string_equal(u.domain, "");
    assert_string_equal(u.normalised, "mailto:?subject=hello");
}

static void test_path_defaults_to_slash_and_fragment_leaves_normalised(void **state)
{
    struct url u = parse_ok(*state, "http://example.com");

    assert_string_equal(u.path, "/");
    assert_string_equal(u.normalised, "http://example.com/");
    u = parse_ok(*state, "http://example.com?q=1#frag");
    assert_string_equal(u.path, "/?q=1#frag");
    assert_string_equal(u.normalised, "http://example.com/?q=1");
}

static void test_control_bytes_in_path_are_percent_encoded(void **state)
{
    struct url u = parse_ok(*state, "http://example.com/a b\x01\x7f\xc3\xa9");

    assert_string_equal(u.path, "/a%20b%01%7F\xc3\xa9");
}

static void test_invalid_utf8_is_encoded_in_path_and_repaired_in_raw(void **state)
{
    struct url u = parse_ok(*state, "http://example.com/\xff\xfe\xc3");

    assert_string_equal(u.path, "/%FF%FE%C3");
    assert_true(utf8_valid(u.raw, strlen(u.raw)));
    assert_string_equal(u.raw, "http://example.com/\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}

static void test_nul_bytes_are_handled_by_length(void **state)
{
    struct url u = parse_ok_len(*state, LIT("http://example.com/a\0b"));

    assert_string_equal(u.path, "/a%00b");
    assert_string_equal(u.raw, "http://example.com/a b");
    /* A NUL must not cut the host short: "evil.example" is not what this says. */
    assert_rejected(*state, "http://evil.example\0.paypal.com/");
    /* Leading controls, NUL included, are trimmed as browsers do. */
    assert_string_equal(parse_ok_len(*state, LIT("\0http://example.com/")).host, "example.com");
}

static void test_input_is_not_read_past_len(void **state)
{
    static const char *const inputs[] = {
        "http://example.com",
        "www.example.com",
        "mailto:a@b.example",
        "see http:",
        "w",
        "ww",
        "www",
        "paypal.com",
        "http://[::1",
        "mailto:",
        "http://a%4",
    };
    size_t i;

    for (i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        size_t len = strlen(inputs[i]);
        char *exact = malloc(len); /* no NUL: ASan reports any read past len */
        struct url u;
        assert_non_null(exact);
        memcpy(exact, inputs[i], len);
        (void)url_parse(*state, exact, len, URL_SRC_TEXT, &u);
        (void)url_find_in_text(*state, exact, len, collect, &(struct found){0});
        (void)url_domain_in_text(*state, exact, len);
        free(exact);
    }
    /* The length is honoured, not the NUL: the host ends at len. */
    assert_string_equal(parse_ok_len(*state, "http://example.comXYZ", 18).host, "example.com");
}

static void test_long_url_is_capped(void **state)
{
    size_t len = 100 * 1024;
    char *s = arena_alloc(*state, len + 1);
    struct url u;

    memcpy(s, "http://example.com/", 19);
    memset(s + 19, 'a', len - 19);
    s[len] = '\0';
    u = parse_ok(*state, s);
    assert_string_equal(u.host, "example.com");
    assert_int_equal(strlen(u.raw), URL_MAX_BYTES);
    /* A multi-byte character across the limit is not cut in half. */
    s[URL_MAX_BYTES - 1] = '\xc3';
    s[URL_MAX_BYTES] = '\xa9';
    u = parse_ok(*state, s);
    assert_int_equal(strlen(u.raw), URL_MAX_BYTES - 1);
    assert_true(utf8_valid(u.raw, strlen(u.raw)));
}

/* ---- registrable domains ---- */

static void test_registrable_domain_uses_public_suffix_list(void **state)
{
    assert_string_equal(url_registrable_domain(*state, "mail.example.co.uk"), "example.co.uk");
    assert_string_equal(url_registrable_domain(*state, "a.b.example.com"), "example.com");
    /* A private suffix: each blog is its own registrable domain. */
    assert_string_equal(url_registrable_domain(*state, "x.foo.blogspot.com"), "foo.blogspot.com");
}

static void test_registrable_domain_normalises_its_input(void **state)
{
    assert_string_equal(url_registrable_domain(*state, "Mail.Example.COM."), "example.com");
    assert_string_equal(url_registrable_domain(*state, "www.m\xc3\xbcnchen.de"),
                        "xn--mnchen-3ya.de");
}

static void test_registrable_domain_of_ip_and_single_label_is_host(void **state)
{
    /* Without this rule libpsl would call "1.1" the domain of 192.168.1.1. */
    assert_string_equal(url_registrable_domain(*state, "192.168.1.1"), "192.168.1.1");
    assert_string_equal(url_registrable_domain(*state, "[::1]"), "[::1]");
    assert_string_equal(url_registrable_domain(*state, "localhost"), "localhost");
}

static void test_registrable_domain_of_empty_or_invalid_host_is_null(void **state)
{
    assert_null(url_registrable_domain(*state, ""));
    assert_null(url_registrable_domain(*state, NULL));
    assert_null(url_registrable_domain(*state, "bad host"));
    assert_null(url_registrable_domain(*state, "a..b"));
}

static void test_list_is_reloaded_after_shutdown(void **state)
{
    url_shutdown();
    /* The next use loads the list again, without an explicit url_init(). */
    assert_string_equal(url_registrable_domain(*state, "www.example.co.uk"), "example.co.uk");
}

/* ---- URLs in text ---- */

static void test_text_urls_are_found_in_order(void **state)
{
    static const char text[] = "First http://one.example/a then www.two.example and "
                               "HTTPS://Three.Example/c. Done";
    struct found f;

    assert_int_equal(find(*state, LIT(text), &f), 3);
    assert_string_equal(f.normalised[0], "http://one.example/a");
    assert_string_equal(f.normalised[1], "http://www.two.example/");
    assert_true(f.flags[1] & URL_F_NO_SCHEME);
    assert_string_equal(f.normalised[2], "https://three.example/c");
    assert_string_equal(f.raw[2], "HTTPS://Three.Example/c");
}

static void test_text_url_ends_before_trailing_punctuation(void **state)
{
    assert_finds_one(*state, "See http://example.com/path.", "http://example.com/path");
    assert_finds_one(*state, "(http://example.com/x), and", "http://example.com/x");
    assert_finds_one(*state, "really? http://example.com/a?b=c!?", "http://example.com/a?b=c");
    assert_finds_one(*state, "go: http://example.com/;:", "http://example.com/");
    assert_finds_one(*state, "[http://example.com/]", "http://example.com/");
    /* Chinese text: no space before, an ideographic full stop after. */
    assert_finds_one(*state, "\xe8\xae\xbf\xe9\x97\xaehttp://example.com/\xe3\x80\x82",
                     "http://example.com/");
}

static void test_text_url_keeps_balanced_parenthesis(void **state)
{
    assert_finds_one(*state, "http://en.wikipedia.org/wiki/Foo_(bar)",
                     "http://en.wikipedia.org/wiki/Foo_(bar)");
    assert_finds_one(*state, "(see http://en.wikipedia.org/wiki/Foo_(bar)).",
                     "http://en.wikipedia.org/wiki/Foo_(bar)");
    assert_finds_one(*state, "(http://example.com/a(b)c)", "http://example.com/a(b)c");
}

static void test_text_url_ends_at_space_quote_and_angle(void **state)
{
    struct found f;
    static const char text[] = "<http://a.example/1>\"http://b.example/2\"'http://c.example/3'"
                               "\xc2\xa0http://d.example/4\xc2\xa0x";

    assert_int_equal(find(*state, LIT(text), &f), 4);
    assert_string_equal(f.normalised[0], "http://a.example/1");
    assert_string_equal(f.normalised[1], "http://b.example/2");
    assert_string_equal(f.normalised[2], "http://c.example/3");
    assert_string_equal(f.normalised[3], "http://d.example/4");
}

static void test_text_www_needs_word_boundary(void **state)
{
    assert_finds_none(*state, "xwww.example.com");
    assert_finds_none(*state, "swww.example.com");
    assert_finds_none(*state, "see example.com/www.other.example");
    assert_finds_none(*state, "www");
    assert_finds_none(*state, "www.");
    assert_finds_one(*state, "(www.example.com)", "http://www.example.com/");
    assert_finds_one(*state, "\xc2\xa0www.example.com", "http://www.example.com/");
}

static void test_text_emails_are_not_urls(void **state)
{
    assert_finds_none(*state, "write to john@example.com or jane.doe@www.example.org today");
}

static void test_text_mailto_is_found(void **state)
{
    assert_finds_one(*state, "mail mailto:John@Example.com, thanks", "mailto:John@example.com");
    assert_finds_none(*state, "mailto: nobody");
    assert_finds_none(*state, "mailto:?subject=nothing");
}

static void test_text_scheme_needs_two_slashes(void **state)
{
    assert_finds_none(*state, "ratio http:1 and note:http:/x and http:// example.com");
    assert_finds_none(*state, "http://");
    assert_finds_one(*state, "go to http:\\\\evil.example\\login now", "http://evil.example/login");
}

static void test_text_scheme_glued_to_a_word_is_found(void **state)
{
    /* HTML-to-text output such as "<b>Visit</b>http://..." glues words to URLs. */
    assert_finds_one(*state, "Visithttp://evil.example/", "http://evil.example/");
}

static void test_text_failed_candidate_does_not_hide_next(void **state)
{
    assert_finds_one(*state, "www..http://evil.example/", "http://evil.example/");
    assert_finds_one(*state, "http://[::1 http://b.example/", "http://b.example/");
}

static void test_text_with_nul_bytes_and_invalid_utf8(void **state)
{
    static const char text[] = "a\xffhttp://a.example/\0http://b.example/\xc3 \xfe";
    struct found f;

    assert_int_equal(find(*state, LIT(text), &f), 2);
    assert_string_equal(f.normalised[0], "http://a.example/");
    assert_string_equal(f.normalised[1], "http://b.example/%C3");
    assert_true(utf8_valid(f.raw[1], strlen(f.raw[1])));
}

static void test_text_long_url_is_found_once(void **state)
{
    size_t url_len = 100 * 1024, len = url_len + 64;
    char *text = arena_alloc(*state, len);
    struct found f;
    size_t n;

    memcpy(text, "http://long.example/", 20);
    memset(text + 20, 'a', url_len - 20);
    n = url_len;
    memcpy(text + n, " and http://next.example/", 25);
    n += 25;
    assert_int_equal(find(*state, text, n, &f), 2);
    assert_string_equal(f.host[0], "long.example");
    assert_int_equal(strlen(f.raw[0]), URL_MAX_BYTES);
    assert_string_equal(f.normalised[1], "http://next.example/");
}

static void test_text_url_count_is_bounded(void **state)
{
    static const char one[] = "http://a.example/ ";
    size_t copies = 20000, i, len = copies * (sizeof one - 1);
    char *text = arena_alloc(*state, len);
    struct found f;

    for (i = 0; i < copies; i++)
        memcpy(text + i * (sizeof one - 1), one, sizeof one - 1);
    assert_int_equal(find(*state, text, len, &f), 10000);
}

static void test_text_empty_gives_nothing(void **state)
{
    struct found f;

    assert_int_equal(find(*state, "", 0, &f), 0);
    assert_int_equal(find(*state, NULL, 0, &f), 0);
    assert_int_equal(find(*state, LIT("no links here, just w and : characters"), &f), 0);
}

static void test_text_hostile_repetition_is_scanned_quickly(void **state)
{
    /* Candidates that fail, packed without separators: quadratic scanning would take minutes. */
    static const char *const units[] = {"http://[", "www.(", "http://a%zz", "mailto:@"};
    size_t copies = 100000, u;

    for (u = 0; u < sizeof units / sizeof units[0]; u++) {
        size_t unit = strlen(units[u]), len = copies * unit, i;
        char *text = arena_alloc(*state, len);
        struct found f;
        clock_t start;
        double seconds;

        for (i = 0; i < copies; i++)
            memcpy(text + i * unit, units[u], unit);
        start = clock();
        assert_int_equal(find(*state, text, len, &f), 0);
        seconds = (double)(clock() - start) / CLOCKS_PER_SEC;
        if (seconds > 2.0) fail_msg("%s x %zu took %.2f s", units[u], copies, seconds);
    }
}

/* ---- domains in link text ---- */

static void test_link_text_without_a_domain_gives_null(void **state)
{
    assert_link_domain(*state, "Click here", NULL);
    assert_link_domain(*state, "", NULL);
    assert_link_domain(*state, "open file.txt", NULL);
    assert_link_domain(*state, "version v1.2 notes", NULL);
    assert_link_domain(*state, "e.g. this", NULL);
    assert_link_domain(*state, "192.168.1.1", NULL);
    assert_link_domain(*state, "co.uk", NULL);
    assert_link_domain(*state, "...", NULL);
}

static void test_link_text_names_a_domain(void **state)
{
    assert_link_domain(*state, "www.paypal.com", "paypal.com");
    assert_link_domain(*state, "paypal.com", "paypal.com");
    assert_link_domain(*state, "https://paypal.com/login", "paypal.com");
    assert_link_domain(*state, "Visit PayPal.com now", "paypal.com");
    assert_link_domain(*state, "Go to (paypal.com/signin).", "paypal.com");
    assert_link_domain(*state, "secure.mail.example.co.uk", "example.co.uk");
    assert_link_domain(*state, "http://192.168.1.1/login", "192.168.1.1");
}

static void test_link_text_first_name_wins(void **state)
{
    assert_link_domain(*state, "paypal.com via https://evil.example/", "paypal.com");
    assert_link_domain(*state, "https://evil.example/ not paypal.com", "evil.example");
}

static void test_link_text_homograph_gives_punycode_domain(void **state)
{
    assert_link_domain(*state, "www.p\xd0\xb0ypal.com", "xn--pypal-4ve.com");
    assert_link_domain(*state, "p\xd0\xb0ypal.com", "xn--pypal-4ve.com");
}

static void test_link_text_email_is_not_a_domain(void **state)
{
    assert_link_domain(*state, "support@paypal.com", NULL);
}

static void test_link_text_with_nul_and_invalid_utf8(void **state)
{
    const char *d = url_domain_in_text(*state, LIT("\xff\0paypal.com\xc3"));

    /* "paypal.com\xc3" is not a valid name; the NUL separates words. */
    assert_null(d);
    d = url_domain_in_text(*state, LIT("\xff\0paypal.com \xc3"));
    assert_non_null(d);
    assert_string_equal(d, "paypal.com");
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_scheme_and_host_are_lowercased),
        T(test_source_is_recorded_and_link_text_left_empty),
        T(test_userinfo_is_stripped_and_flagged),
        T(test_host_follows_last_at_sign),
        T(test_at_sign_in_path_is_not_userinfo),
        T(test_decimal_ip_is_normalised),
        T(test_hex_ip_is_normalised),
        T(test_octal_ip_is_normalised),
        T(test_short_and_mixed_dotted_ip_is_normalised),
        T(test_plain_dotted_quad_is_not_flagged_numeric),
        T(test_invalid_ip_forms_are_rejected),
        T(test_ipv6_literal_is_normalised),
        T(test_malformed_ipv6_is_rejected),
        T(test_percent_encoded_host_is_decoded_and_flagged),
        T(test_bad_percent_encoding_in_host_is_rejected),
        T(test_idn_host_is_converted_to_punycode),
        T(test_punycode_host_is_decoded_for_display),
        T(test_cyrillic_homograph_is_flagged),
        T(test_greek_homograph_is_flagged),
        T(test_single_script_idn_is_not_mixed),
        T(test_fullwidth_forms_are_mapped_like_browsers),
        T(test_symbol_idn_falls_back_to_transitional),
        T(test_trailing_dot_is_removed),
        T(test_empty_labels_are_rejected),
        T(test_overlong_host_names_are_rejected),
        T(test_invalid_host_characters_are_rejected),
        T(test_default_port_is_dropped),
        T(test_nonstandard_port_is_kept_and_flagged),
        T(test_out_of_range_ports_are_rejected),
        T(test_backslashes_act_as_slashes),
        T(test_surrounding_quotes_and_brackets_are_stripped),
        T(test_tabs_and_newlines_inside_are_ignored),
        T(test_unsupported_schemes_are_rejected),
        T(test_relative_references_are_rejected),
        T(test_empty_and_truncated_urls_are_rejected),
        T(test_bare_www_host_gets_http_scheme),
        T(test_mailto_host_is_domain_after_at),
        T(test_mailto_without_address_has_empty_host),
        T(test_path_defaults_to_slash_and_fragment_leaves_normalised),
        T(test_control_bytes_in_path_are_percent_encoded),
        T(test_invalid_utf8_is_encoded_in_path_and_repaired_in_raw),
        T(test_nul_bytes_are_handled_by_length),
        T(test_input_is_not_read_past_len),
        T(test_long_url_is_capped),
        T(test_registrable_domain_uses_public_suffix_list),
        T(test_registrable_domain_normalises_its_input),
        T(test_registrable_domain_of_ip_and_single_label_is_host),
        T(test_registrable_domain_of_empty_or_invalid_host_is_null),
        T(test_list_is_reloaded_after_shutdown),
        T(test_text_urls_are_found_in_order),
        T(test_text_url_ends_before_trailing_punctuation),
        T(test_text_url_keeps_balanced_parenthesis),
        T(test_text_url_ends_at_space_quote_and_angle),
        T(test_text_www_needs_word_boundary),
        T(test_text_emails_are_not_urls),
        T(test_text_mailto_is_found),
        T(test_text_scheme_needs_two_slashes),
        T(test_text_scheme_glued_to_a_word_is_found),
        T(test_text_failed_candidate_does_not_hide_next),
        T(test_text_with_nul_bytes_and_invalid_utf8),
        T(test_text_long_url_is_found_once),
        T(test_text_url_count_is_bounded),
        T(test_text_empty_gives_nothing),
        T(test_text_hostile_repetition_is_scanned_quickly),
        T(test_link_text_without_a_domain_gives_null),
        T(test_link_text_names_a_domain),
        T(test_link_text_first_name_wins),
        T(test_link_text_homograph_gives_punycode_domain),
        T(test_link_text_email_is_not_a_domain),
        T(test_link_text_with_nul_and_invalid_utf8),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
