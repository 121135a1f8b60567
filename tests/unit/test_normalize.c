/* Tests for src/text/normalize.c: NFKC_Casefold with an ASCII fast path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/buf.h"
#include "text/normalize.h"

/* Normalises s into a fresh buffer and checks the result is want. */
static void check_normalized(struct normalizer *nz, const char *s, const char *want)
{
    struct buf out = {0};
    size_t n = normalize_append(nz, &out, s, strlen(s));

    assert_int_equal(n, strlen(want));
    assert_string_equal(out.data ? out.data : "", want);
    buf_free(&out);
}

/* The reference: utf8proc's own NFKC_Casefold on a NUL-terminated copy. */
static void check_matches_utf8proc(struct normalizer *nz, const char *s)
{
    utf8proc_uint8_t *ref = utf8proc_NFKC_Casefold((const utf8proc_uint8_t *)s);

    assert_non_null(ref);
    check_normalized(nz, s, (const char *)ref);
    free(ref);
}

static void test_ascii_is_lowercased(void **state)
{
    struct normalizer nz = {0};
    (void)state;
    check_normalized(&nz, "Hello WORLD 42 @[`{", "hello world 42 @[`{");
    /* The fast path must not touch utf8proc's scratch at all. */
    assert_null(nz.cps);
    normalizer_free(&nz);
}

static void test_ascii_fast_path_matches_utf8proc(void **state)
{
    struct normalizer nz = {0};
    char all[128];
    int c;
    (void)state;
    /* Every ASCII byte but NUL, so the fast path is checked against the definition. */
    for (c = 1; c < 128; c++) all[c - 1] = (char)c;
    all[127] = '\0';
    check_matches_utf8proc(&nz, all);
    normalizer_free(&nz);
}

static void test_nfkc_folds_fullwidth(void **state)
{
    struct normalizer nz = {0};
    (void)state;
    check_normalized(&nz, "\xEF\xBC\xA6\xEF\xBC\xB2\xEF\xBC\xA5\xEF\xBC\xA5", "free"); /* ＦＲＥＥ */
    check_normalized(&nz, "\xEF\xBC\x91\xEF\xBC\x92\xEF\xBC\x93", "123");            /* １２３ */
    normalizer_free(&nz);
}

static void test_casefold_expands_sharp_s(void **state)
{
    struct normalizer nz = {0};
    (void)state;
    check_normalized(&nz, "Stra\xC3\x9F" "e", "strasse");
    check_normalized(&nz, "\xCE\xA3\xCE\x99\xCE\xA3", "\xCF\x83\xCE\xB9\xCF\x83"); /* ΣΙΣ -> σισ */
    normalizer_free(&nz);
}

static void test_ligature_decomposes(void **state)
{
    struct normalizer nz = {0};
    (void)state;
    check_normalized(&nz, "\xEF\xAC\x81nance", "finance"); /* ﬁnance */
    check_normalized(&nz, "x\xC2\xB2", "x2");               /* x² */
    normalizer_free(&nz);
}

static void test_combining_marks_compose(void **state)
{
    struct normalizer nz = {0};
    (void)state;
    check_normalized(&nz, "Cafe\xCC\x81", "caf\xC3\xA9");     /* e + U+0301 -> é */
    check_normalized(&nz, "CAF\xC3\x89", "caf\xC3\xA9");      /* É -> é */
    check_normalized(&nz, "\xCC\x81\xCC\x81", "\xCC\x81\xCC\x81"); /* lone marks stay */
    normalizer_free(&nz);
}

static void test_default_ignorables_are_removed(void **state)
{
    struct normalizer nz = {0};
    (void)state;
    check_normalized(&nz, "vi\xE2\x80\x8B" "ag\xC2\xAD" "ra", "viagra"); /* ZWSP, soft hyphen */
    check_normalized(&nz, "\xE2\x80\x8F\xE2\x80\xAE", "");              /* RLM, RLO only */
    normalizer_free(&nz);
}

static void test_matches_utf8proc_on_odd_text(void **state)
{
    static const char *const samples[] = {
        "\xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D \xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7", /* RTL */
        "\xF0\x9F\x98\x80\xF0\x9F\x94\xA5 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",          /* emoji */
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xEF\xBD\xB6\xEF\xBE\x80",               /* CJK, kana */
        "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4 \xE1\x84\x92\xE1\x85\xA1",             /* Hangul */
        "\xE2\x93\xA5\xE2\x93\x98\xE2\x93\x90 \xE2\x84\xA2 \xE3\x88\xB1 \xE2\x92\x88", /* ⓥⓘⓐ ™ ㈱ ⒈ */
        "\xF0\x9D\x90\xAF\xF0\x9D\x90\xA2\xF0\x9D\x90\x9A",                           /* 𝐯𝐢𝐚 */
        "a\xCC\x88\xCC\xA3 \xE1\xBA\x9E \xC4\xB0stanbul",                             /* ạ̈ ẞ İ */
    };
    struct normalizer nz = {0};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof samples / sizeof samples[0]; i++) check_matches_utf8proc(&nz, samples[i]);
    normalizer_free(&nz);
}

static void test_appends_after_existing_content(void **state)
{
    struct normalizer nz = {0};
    struct buf out = {0};
    (void)state;
    buf_append_str(&out, "subj:");
    assert_int_equal(normalize_append(&nz, &out, "Caf\xC3\x89!", 6), 6);
    assert_string_equal(out.data, "subj:caf\xC3\xA9!");
    assert_int_equal(normalize_append(&nz, &out, "OK", 2), 2);
    assert_string_equal(out.data, "subj:caf\xC3\xA9!ok");
    buf_free(&out);
    normalizer_free(&nz);
}

static void test_empty_input_appends_nothing(void **state)
{
    struct normalizer nz = {0};
    struct buf out = {0};
    (void)state;
    assert_int_equal(normalize_append(&nz, &out, "", 0), 0);
    assert_int_equal(out.len, 0);
    buf_free(&out);
    normalizer_free(&nz);
}

static void test_respects_buffer_limit(void **state)
{
    struct normalizer nz = {0};
    struct buf out = {.limit_bytes = 4};
    (void)state;
    assert_int_equal(normalize_append(&nz, &out, "ABCDEF", 6), 4);
    assert_string_equal(out.data, "abcd");
    assert_true(out.truncated);
    buf_free(&out);
    normalizer_free(&nz);
}

static void test_megabyte_run_reuses_scratch(void **state)
{
    const size_t reps = 512 * 1024; /* "É" is 2 bytes: a 1 MiB single word */
    struct normalizer nz = {0};
    struct buf out = {0};
    char *big = malloc(2 * reps);
    size_t i, cap;
    (void)state;
    for (i = 0; i < reps; i++) big[2 * i] = '\xC3', big[2 * i + 1] = '\x89';
    assert_int_equal(normalize_append(&nz, &out, big, 2 * reps), 2 * reps);
    for (i = 0; i < reps; i++) {
        if (out.data[2 * i] != '\xC3' || out.data[2 * i + 1] != '\xA9') fail_msg("byte %zu", i);
    }
    cap = nz.cap_cps;
    buf_clear(&out);
    normalize_append(&nz, &out, big, 2 * reps);
    assert_int_equal(nz.cap_cps, cap); /* no growth the second time */
    free(big);
    buf_free(&out);
    normalizer_free(&nz);
}

static void test_invalid_utf8_is_repaired(void **state)
{
    struct normalizer nz = {0};
    (void)state;
    /* Callers promise valid UTF-8; a broken promise must not crash or drop text. */
    check_normalized(&nz, "A\xFF\xC3\x89", "a\xEF\xBF\xBD\xC3\xA9");
    normalizer_free(&nz);
}

static void test_is_ascii(void **state)
{
    (void)state;
    assert_true(normalize_is_ascii("", 0));
    assert_true(normalize_is_ascii("plain text\t~", 12));
    assert_false(normalize_is_ascii("caf\xC3\xA9", 5));
    assert_false(normalize_is_ascii("\x80", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ascii_is_lowercased),
        cmocka_unit_test(test_ascii_fast_path_matches_utf8proc),
        cmocka_unit_test(test_nfkc_folds_fullwidth),
        cmocka_unit_test(test_casefold_expands_sharp_s),
        cmocka_unit_test(test_ligature_decomposes),
        cmocka_unit_test(test_combining_marks_compose),
        cmocka_unit_test(test_default_ignorables_are_removed),
        cmocka_unit_test(test_matches_utf8proc_on_odd_text),
        cmocka_unit_test(test_appends_after_existing_content),
        cmocka_unit_test(test_empty_input_appends_nothing),
        cmocka_unit_test(test_respects_buffer_limit),
        cmocka_unit_test(test_megabyte_run_reuses_scratch),
        cmocka_unit_test(test_invalid_utf8_is_repaired),
        cmocka_unit_test(test_is_ascii),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
