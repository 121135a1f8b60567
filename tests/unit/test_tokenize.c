/* Tests for src/text/tokenize.c: word, number, long-word, URL and e-mail tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "text/tokenize.h"

/* Collects the tokens of one tokenize() call as "tok|tok|..." plus their kinds. */
struct collected {
    struct buf joined;
    enum token_kind kinds[64];
    size_t n;
    size_t stop_after; /* 0: never stop */
};

static bool collect(void *ctx, const struct token *tok)
{
    struct collected *c = ctx;

    /* A token string must never be empty nor contain the separator we join with. */
    assert_true(tok->len > 0);
    assert_null(memchr(tok->text, '|', tok->len));
    if (c->joined.len) buf_append_char(&c->joined, '|');
    buf_append(&c->joined, tok->text, tok->len);
    if (c->n < sizeof c->kinds / sizeof c->kinds[0]) c->kinds[c->n] = tok->kind;
    c->n++;
    return c->stop_after == 0 || c->n < c->stop_after;
}

static void collect_free(struct collected *c)
{
    buf_free(&c->joined);
}

/* Tokenizes s (to its strlen) with a fresh tokenizer and checks the joined tokens. */
static void check_tokens(const char *s, const char *want)
{
    struct tokenizer t = {0};
    struct collected c = {0};
    size_t n = tokenize(&t, s, strlen(s), collect, &c);

    assert_int_equal(n, c.n);
    assert_string_equal(c.joined.data ? c.joined.data : "", want);
    collect_free(&c);
    tokenizer_free(&t);
}

static void test_words_are_lowercased_and_split_on_punctuation(void **state)
{
    (void)state;
    check_tokens("Hello, WORLD! foo-bar_baz (QUX)", "hello|world|foo|bar|baz|qux");
}

static void test_short_tokens_are_dropped(void **state)
{
    (void)state;
    /* Single letters and single digits alike: TOKEN_MIN_CPS applies to numbers too. */
    check_tokens("a I it's x 7 ok 0", "it|ok");
}

static void test_short_number_is_kept(void **state)
{
    struct tokenizer t = {0};
    struct collected c = {0};
    const char *s = "in 2024 pay $1,000.00 now 7 or 12 of 007";
    static const enum token_kind want[] = {
        TOKEN_WORD, TOKEN_NUMBER, TOKEN_WORD,   TOKEN_NUMBER, TOKEN_NUMBER,
        TOKEN_WORD, TOKEN_WORD,   TOKEN_NUMBER, TOKEN_WORD,   TOKEN_NUMBER,
    };
    size_t i;
    (void)state;
    /* 2..4 digits stay as written (leading zeros too); the lone "1" and "7" are dropped. */
    tokenize(&t, s, strlen(s), collect, &c);
    assert_string_equal(c.joined.data, "in|2024|pay|000|00|now|or|12|of|007");
    assert_int_equal(c.n, sizeof want / sizeof want[0]);
    for (i = 0; i < c.n; i++)
        assert_int_equal(c.kinds[i], want[i]);
    collect_free(&c);
    tokenizer_free(&t);
}

static void test_long_number_becomes_shape(void **state)
{
    struct tokenizer t = {0};
    struct collected c = {0};
    const char *s = "1234 12345 order 0800123456";
    (void)state;
    /* TOKEN_NUMBER_LITERAL_MAX (4) is the last literal length; from 5 digits on, a shape. */
    tokenize(&t, s, strlen(s), collect, &c);
    assert_string_equal(c.joined.data, "1234|num:5|order|num:10");
    assert_int_equal(c.kinds[0], TOKEN_NUMBER);
    assert_int_equal(c.kinds[1], TOKEN_NUMBER);
    assert_int_equal(c.kinds[2], TOKEN_WORD);
    assert_int_equal(c.kinds[3], TOKEN_NUMBER);
    collect_free(&c);
    tokenizer_free(&t);
    /* Beyond 32 digits the long-word rule comes first. */
    check_tokens("12345678901234567890123456789012", "num:32");
    check_tokens("123456789012345678901234567890123", "longword:123:64");
}

static void test_mixed_letters_and_digits_stay_words(void **state)
{
    (void)state;
    check_tokens("v1agra mp3 4U", "v1agra|mp3|4u");
}

static void test_fullwidth_digits_become_number(void **state)
{
    struct tokenizer t = {0};
    struct collected c = {0};
    /* １２３４ and １２３４５ are Nd, NFKC makes them ASCII digits: numbers like any other. */
    const char *s = "\xEF\xBC\x91\xEF\xBC\x92\xEF\xBC\x93\xEF\xBC\x94 "
                    "\xEF\xBC\x91\xEF\xBC\x92\xEF\xBC\x93\xEF\xBC\x94\xEF\xBC\x95 \xEF\xBC\x97";
    (void)state;
    tokenize(&t, s, strlen(s), collect, &c);
    assert_string_equal(c.joined.data, "1234|num:5"); /* the lone ７ is dropped */
    assert_int_equal(c.kinds[0], TOKEN_NUMBER);
    assert_int_equal(c.kinds[1], TOKEN_NUMBER);
    collect_free(&c);
    tokenizer_free(&t);
}

static void test_long_word_becomes_shape(void **state)
{
    struct tokenizer t = {0};
    struct collected c = {0};
    const char *s = "Supercalifragilisticexpialidocious is 34 letters";
    (void)state;
    tokenize(&t, s, strlen(s), collect, &c);
    assert_string_equal(c.joined.data, "longword:sup:64|is|34|letters");
    assert_int_equal(c.kinds[0], TOKEN_LONGWORD);
    collect_free(&c);
    tokenizer_free(&t);
}

/* A word of n copies of the 2-byte "é" (or of 'x'), tokenized alone. */
static void check_long_bucket(size_t n, bool ascii, const char *want)
{
    struct buf s = {0};
    size_t i;

    for (i = 0; i < n; i++)
        buf_append_str(&s, ascii ? "X" : "\xC3\x89");
    check_tokens(s.data, want);
    buf_free(&s);
}

static void test_long_word_bucket_boundaries(void **state)
{
    (void)state;
    check_long_bucket(32, true, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    check_long_bucket(33, true, "longword:xxx:64");
    check_long_bucket(64, true, "longword:xxx:64");
    check_long_bucket(65, true, "longword:xxx:128");
    check_long_bucket(1024, true, "longword:xxx:1024");
    check_long_bucket(1025, true, "longword:xxx:big");
    /* Bounds count code points, not bytes: 32 "é" are 64 bytes and still a word. */
    check_long_bucket(33, false, "longword:\xC3\xA9\xC3\xA9\xC3\xA9:64");
    check_long_bucket(1025, false, "longword:\xC3\xA9\xC3\xA9\xC3\xA9:big");
}

static void test_megabyte_single_word(void **state)
{
    const size_t n = 1024 * 1024;
    struct tokenizer t = {0};
    struct collected c = {0};
    char *s = malloc(n);
    size_t i;
    (void)state;
    for (i = 0; i < n; i++)
        s[i] = (char)('a' + i % 26);
    tokenize(&t, s, n, collect, &c);
    assert_string_equal(c.joined.data, "longword:abc:big");
    collect_free(&c);
    memset(&c, 0, sizeof c);
    /* The same length of non-ASCII letters goes through utf8proc as one run. */
    for (i = 0; i + 1 < n; i += 2)
        s[i] = '\xD0', s[i + 1] = '\x96'; /* Ж */
    tokenize(&t, s, n, collect, &c);
    assert_string_equal(c.joined.data, "longword:\xD0\xB6\xD0\xB6\xD0\xB6:big");
    collect_free(&c);
    free(s);
    tokenizer_free(&t);
}

static void test_url_in_text_becomes_domain_token(void **state)
{
    struct tokenizer t = {0};
    struct collected c = {0};
    const char *s = "Click https://WWW.Example.com/path/to?x=1&y=two#frag now";
    (void)state;
    tokenize(&t, s, strlen(s), collect, &c);
    /* No "path", "to", "two", "frag" fragments: the URL is one token. */
    assert_string_equal(c.joined.data, "click|url:example.com|now");
    assert_int_equal(c.kinds[1], TOKEN_URL);
    collect_free(&c);
    tokenizer_free(&t);
}

static void test_url_forms(void **state)
{
    (void)state;
    check_tokens("see www.shop.example.org.", "see|url:shop.example.org");
    check_tokens("ftp://files.example.net:2121/x", "url:files.example.net");
    check_tokens("http://[2001:db8::1]:8080/x", "url:2001:db8::1");
    check_tokens("(http://example.com/a)b", "url:example.com");
    check_tokens("http://192.168.1.1/login", "url:192.168.1.1");
    /* Not URLs: no host, or www. without a further dot. */
    check_tokens("http:// www.example www..com", "http|www|example|www|com");
}

static void test_url_userinfo_is_not_the_host(void **state)
{
    (void)state;
    check_tokens("http://paypal.com:secure@evil.example/login", "url:evil.example");
    check_tokens("https://a@b@c.example/", "url:c.example");
}

static void test_url_host_ends_at_non_word_code_point(void **state)
{
    (void)state;
    /* The ideographic full stop ends the host; the Japanese after it are words. */
    check_tokens("http://example.jp\xE3\x80\x82\xE6\x97\xA5\xE6\x9C\xAC",
                 "url:example.jp|\xE6\x97\xA5|\xE6\x9C\xAC");
    /* An IDN host in Unicode form is kept and case-folded. */
    check_tokens("http://B\xC3\x9C"
                 "CHER.de/x",
                 "url:b\xC3\xBC"
                 "cher.de");
}

struct fake_resolver {
    const char *host;
    const char *domain;
    int calls;
};

static const char *fake_domain(void *ctx, const char *host, size_t host_len, size_t *domain_len)
{
    struct fake_resolver *r = ctx;

    r->calls++;
    if (host_len != strlen(r->host) || memcmp(host, r->host, host_len) != 0) return NULL;
    *domain_len = strlen(r->domain);
    return r->domain;
}

static void test_url_domain_comes_from_resolver(void **state)
{
    struct fake_resolver r = {"mail.example.co.uk", "example.co.uk", 0};
    struct tokenizer t = {.url_domain = fake_domain, .url_domain_ctx = &r};
    struct collected c = {0};
    const char *s = "http://MAIL.example.co.uk/x http://other.example.co.uk/";
    (void)state;
    tokenize(&t, s, strlen(s), collect, &c);
    /* Known host: the resolver's domain; unknown: the host itself. */
    assert_string_equal(c.joined.data, "url:example.co.uk|url:other.example.co.uk");
    assert_int_equal(r.calls, 2);
    collect_free(&c);
    tokenizer_free(&t);
}

static void test_url_host_helper_matches_text(void **state)
{
    struct tokenizer t = {0};
    const char *host = NULL;
    size_t len = 0;
    (void)state;
    assert_true(tokenizer_url_host(&t, "HTTP://user@Example.COM.:80/x", 29, &host, &len));
    assert_int_equal(len, 11);
    assert_memory_equal(host, "example.com", 11);
    assert_true(tokenizer_url_host(&t, "www.Example.com", 15, &host, &len));
    assert_memory_equal(host, "www.example.com", 15);
    assert_false(tokenizer_url_host(&t, "javascript:alert(1)", 19, &host, &len));
    assert_false(tokenizer_url_host(&t, "", 0, &host, &len));
    tokenizer_free(&t);
}

static void test_email_becomes_domain_token(void **state)
{
    struct tokenizer t = {0};
    struct collected c = {0};
    const char *s = "write to John.Doe+spam@Mail.Example.COM. today";
    (void)state;
    tokenize(&t, s, strlen(s), collect, &c);
    assert_string_equal(c.joined.data, "write|to|email:mail.example.com|today");
    assert_int_equal(c.kinds[2], TOKEN_EMAIL);
    collect_free(&c);
    tokenizer_free(&t);
}

static void test_email_forms(void **state)
{
    (void)state;
    check_tokens("mailto:sales@example.org?subject=hi", "email:example.org|subject|hi");
    check_tokens("<a_b@x.example>", "email:x.example");
    /* A single-label domain is not an address. */
    check_tokens("user@localhost done", "user|localhost|done");
    check_tokens("a@b@c.example", "email:c.example");
}

static void test_cjk_is_one_token_per_character(void **state)
{
    (void)state;
    /* 日本語のテキスト。 then halfwidth ｶﾀ (NFKC: カタ) */
    check_tokens("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82"
                 "\xB9\xE3\x83\x88\xE3\x80\x82\xEF\xBD\xB6\xEF\xBE\x80",
                 "\xE6\x97\xA5|\xE6\x9C\xAC|\xE8\xAA\x9E|\xE3\x81\xAE|\xE3\x83\x86|\xE3\x82\xAD|"
                 "\xE3\x82\xB9|\xE3\x83\x88|\xE3\x82\xAB|\xE3\x82\xBF");
    /* Latin glued to Han: the Latin part stays a word. */
    check_tokens("ABC\xE6\x97\xA5"
                 "def",
                 "abc|\xE6\x97\xA5|def");
    /* A mark after a Han character stays with it rather than becoming a piece of its own. */
    check_tokens("\xE6\x97\xA5\xCC\x81\xE6\x9C\xAC", "\xE6\x97\xA5\xCC\x81|\xE6\x9C\xAC");
}

static void test_hangul_words_are_not_cut(void **state)
{
    (void)state;
    check_tokens("\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4 \xEB\xAC\xB8\xEC\x9E\xA5",
                 "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4|\xEB\xAC\xB8\xEC\x9E\xA5");
}

static void test_combining_marks_stay_in_word(void **state)
{
    (void)state;
    /* "cafe" + U+0301 composes to "café"; it must not split into "cafe" and a mark. */
    check_tokens("Cafe\xCC\x81 ol\xC3\xA9", "caf\xC3\xA9|ol\xC3\xA9");
}

static void test_format_characters_do_not_split_words(void **state)
{
    (void)state;
    /* Zero-width space, soft hyphen and RLO inside a word are removed, not separators. */
    check_tokens("vi\xE2\x80\x8B"
                 "ag\xC2\xAD"
                 "ra fr\xE2\x80\xAE"
                 "ee",
                 "viagra|free");
}

static void test_rtl_words(void **state)
{
    (void)state;
    check_tokens("\xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D, \xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7!",
                 "\xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D|\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7");
}

static void test_emoji_separate_words(void **state)
{
    (void)state;
    /* 🔥SALE👍🏽NOW and a flag sequence: emoji are not tokens and do not glue words. */
    check_tokens("\xF0\x9F\x94\xA5SALE\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBDNOW "
                 "\xF0\x9F\x87\xAB\xF0\x9F\x87\xB7 \xE2\x9D\xA4\xEF\xB8\x8F",
                 "sale|now");
}

static void test_fullwidth_and_styled_letters_are_normalised(void **state)
{
    (void)state;
    /* ＦＲＥＥ, 𝐅𝐑𝐄𝐄 (mathematical bold), ⓕⓡⓔⓔ (circled, category So), ™ */
    check_tokens("\xEF\xBC\xA6\xEF\xBC\xB2\xEF\xBC\xA5\xEF\xBC\xA5 "
                 "\xF0\x9D\x90\x85\xF0\x9D\x90\x91\xF0\x9D\x90\x84\xF0\x9D\x90\x84 "
                 "\xE2\x93\x95\xE2\x93\xA1\xE2\x93\x94\xE2\x93\x94 \xE2\x84\xA2",
                 "free|free|free|tm");
}

static void test_normalisation_can_split_a_run(void **state)
{
    (void)state;
    /* ⒛ (No) becomes "20." after NFKC: the dot separates, "20" is a number kept as written. */
    check_tokens("ab\xE2\x92\x9B"
                 "cd",
                 "ab20|cd");
    check_tokens("\xE2\x92\x9B\xE2\x92\x9B", "20|20");
    /* ⒈ becomes "1.": a single digit, dropped. */
    check_tokens("\xE2\x92\x88", "");
}

static void test_invalid_bytes_separate_words(void **state)
{
    (void)state;
    check_tokens("good\xFF"
                 "bad\xC3"
                 "ugly",
                 "good|bad|ugly");
}

static void test_empty_and_separator_only_text(void **state)
{
    (void)state;
    check_tokens("", "");
    check_tokens(" \t\r\n.,;:!?-- \xE2\x80\x94 \xF0\x9F\x98\x80", "");
}

static void test_callback_can_stop(void **state)
{
    struct tokenizer t = {0};
    struct collected c = {.stop_after = 2};
    const char *s = "one two three four \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E";
    size_t n;
    (void)state;
    n = tokenize(&t, s, strlen(s), collect, &c);
    assert_int_equal(n, 2);
    assert_string_equal(c.joined.data, "one|two");
    collect_free(&c);
    /* Also inside one normalised run: stop after the first CJK character. */
    memset(&c, 0, sizeof c);
    c.stop_after = 1;
    n = tokenize(&t, s + 19, strlen(s + 19), collect, &c);
    assert_int_equal(n, 1);
    collect_free(&c);
    tokenizer_free(&t);
}

static void test_tokenizer_is_reusable(void **state)
{
    struct tokenizer t = {0};
    struct collected a = {0}, b = {0};
    const char *s = "Re-use \xC3\x89T\xC3\x89 http://x.example/ me";
    (void)state;
    tokenize(&t, s, strlen(s), collect, &a);
    tokenize(&t, s, strlen(s), collect, &b);
    assert_string_equal(a.joined.data, b.joined.data);
    assert_string_equal(a.joined.data, "re|use|\xC3\xA9t\xC3\xA9|url:x.example|me");
    collect_free(&a);
    collect_free(&b);
    tokenizer_free(&t);
}

/*
 * Message texts carry a length and need not be NUL-terminated: tokenize each
 * input from a heap block of exactly its size, so ASan sees any read past it.
 */
static void test_text_need_not_be_nul_terminated(void **state)
{
    static const char *const inputs[] = {
        "www.",       "www.x",     "www.x.", "http://",  "http://[",     "http://[::1",
        "https://a@", "x@",        "x@y",    "x@y.",     "mailto:",      "mailto:a",
        "a.b.c@d",    "ab",        "7",      "\xC3\xA9", "\xE6\x97\xA5", "ab\xE2\x80\x8B",
        "ftp://h",    "www.a.b/c", "a@b.c",  "2024",     "12345",        "\xE2\x92\x9B",
    };
    struct tokenizer t = {0};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        size_t len = strlen(inputs[i]);
        char *exact = malloc(len);
        struct collected c = {0};
        memcpy(exact, inputs[i], len);
        tokenize(&t, exact, len, collect, &c);
        collect_free(&c);
        free(exact);
    }
    tokenizer_free(&t);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static bool count_only(void *ctx, const struct token *tok)
{
    (void)tok;
    (*(size_t *)ctx)++;
    return true;
}

static void test_hostile_dotted_run_is_linear(void **state)
{
    const size_t n = 1024 * 1024;
    struct tokenizer t = {0};
    struct timespec t0;
    char *s = malloc(n);
    size_t i, count = 0;
    (void)state;
    /* "ab.ab.ab..." with no '@': a quadratic e-mail scan would take minutes here. */
    for (i = 0; i < n; i++)
        s[i] = i % 3 == 2 ? '.' : (char)('a' + i % 3);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    tokenize(&t, s, n, count_only, &count);
    assert_int_equal(count, n / 3); /* the final lone "a" is too short */
    assert_true(seconds_since(&t0) < 5.0);
    free(s);
    tokenizer_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words_are_lowercased_and_split_on_punctuation),
        cmocka_unit_test(test_short_tokens_are_dropped),
        cmocka_unit_test(test_short_number_is_kept),
        cmocka_unit_test(test_long_number_becomes_shape),
        cmocka_unit_test(test_mixed_letters_and_digits_stay_words),
        cmocka_unit_test(test_fullwidth_digits_become_number),
        cmocka_unit_test(test_long_word_becomes_shape),
        cmocka_unit_test(test_long_word_bucket_boundaries),
        cmocka_unit_test(test_megabyte_single_word),
        cmocka_unit_test(test_url_in_text_becomes_domain_token),
        cmocka_unit_test(test_url_forms),
        cmocka_unit_test(test_url_userinfo_is_not_the_host),
        cmocka_unit_test(test_url_host_ends_at_non_word_code_point),
        cmocka_unit_test(test_url_domain_comes_from_resolver),
        cmocka_unit_test(test_url_host_helper_matches_text),
        cmocka_unit_test(test_email_becomes_domain_token),
        cmocka_unit_test(test_email_forms),
        cmocka_unit_test(test_cjk_is_one_token_per_character),
        cmocka_unit_test(test_hangul_words_are_not_cut),
        cmocka_unit_test(test_combining_marks_stay_in_word),
        cmocka_unit_test(test_format_characters_do_not_split_words),
        cmocka_unit_test(test_rtl_words),
        cmocka_unit_test(test_emoji_separate_words),
        cmocka_unit_test(test_fullwidth_and_styled_letters_are_normalised),
        cmocka_unit_test(test_normalisation_can_split_a_run),
        cmocka_unit_test(test_invalid_bytes_separate_words),
        cmocka_unit_test(test_empty_and_separator_only_text),
        cmocka_unit_test(test_callback_can_stop),
        cmocka_unit_test(test_tokenizer_is_reusable),
        cmocka_unit_test(test_text_need_not_be_nul_terminated),
        cmocka_unit_test(test_hostile_dotted_run_is_linear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
