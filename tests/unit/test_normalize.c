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
#include "core/utf8.h"
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
    for (c = 1; c < 128; c++)
        all[c - 1] = (char)c;
    all[127] = '\0';
    check_matches_utf8proc(&nz, all);
    normalizer_free(&nz);
}

static void test_nfkc_folds_fullwidth(void **state)
{
    struct normalizer nz = {0};
    (void)state;
    check_normalized(&nz, "\xEF\xBC\xA6\xEF\xBC\xB2\xEF\xBC\xA5\xEF\xBC\xA5",
                     "free");                                             /* ＦＲＥＥ */
    check_normalized(&nz, "\xEF\xBC\x91\xEF\xBC\x92\xEF\xBC\x93", "123"); /* １２３ */
    normalizer_free(&nz);
}

static void test_casefold_expands_sharp_s(void **state)
{
    struct normalizer nz = {0};
    (void)state;
    check_normalized(&nz,
                     "Stra\xC3\x9F"
                     "e",
                     "strasse");
    check_normalized(&nz, "\xCE\xA3\xCE\x99\xCE\xA3", "\xCF\x83\xCE\xB9\xCF\x83"); /* ΣΙΣ -> σισ */
    normalizer_free(&nz);
}

static void test_ligature_decomposes(void **state)
{
    struct normalizer nz = {0};
    (void)state;
    check_normalized(&nz, "\xEF\xAC\x81nance", "finance"); /* ﬁnance */
    check_normalized(&nz, "x\xC2\xB2", "x2");              /* x² */
    normalizer_free(&nz);
}

static void test_combining_marks_compose(void **state)
{
    struct normalizer nz = {0};
    (void)state;
    check_normalized(&nz, "Cafe\xCC\x81", "caf\xC3\xA9");          /* e + U+0301 -> é */
    check_normalized(&nz, "CAF\xC3\x89", "caf\xC3\xA9");           /* É -> é */
    check_normalized(&nz, "\xCC\x81\xCC\x81", "\xCC\x81\xCC\x81"); /* lone marks stay */
    normalizer_free(&nz);
}

static void test_default_ignorables_are_removed(void **state)
{
    struct normalizer nz = {0};
    (void)state;
    check_normalized(&nz,
                     "vi\xE2\x80\x8B"
                     "ag\xC2\xAD"
                     "ra",
                     "viagra");                            /* ZWSP, soft hyphen */
    check_normalized(&nz, "\xE2\x80\x8F\xE2\x80\xAE", ""); /* RLM, RLO only */
    normalizer_free(&nz);
}

static void test_matches_utf8proc_on_odd_text(void **state)
{
    static const char *const samples[] = {
        "\xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D \xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7", /* RTL */
        "\xF0\x9F\x98\x80\xF0\x9F\x94\xA5 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",         /* emoji */
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xEF\xBD\xB6\xEF\xBE\x80",              /* CJK, kana */
        "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4 \xE1\x84\x92\xE1\x85\xA1",             /* Hangul */
        "\xE2\x93\xA5\xE2\x93\x98\xE2\x93\x90 \xE2\x84\xA2 \xE3\x88\xB1 \xE2\x92\x88", /* ⓥⓘⓐ ™ ㈱ ⒈
                                                                                        */
        "\xF0\x9D\x90\xAF\xF0\x9D\x90\xA2\xF0\x9D\x90\x9A", /* 𝐯𝐢𝐚 */
        "a\xCC\x88\xCC\xA3 \xE1\xBA\x9E \xC4\xB0stanbul",   /* ạ̈ ẞ İ */
    };
    struct normalizer nz = {0};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof samples / sizeof samples[0]; i++)
        check_matches_utf8proc(&nz, samples[i]);
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
    for (i = 0; i < reps; i++)
        big[2 * i] = '\xC3', big[2 * i + 1] = '\x89';
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

/* cp as UTF-8 in out (4 bytes + NUL at most); returns the length. */
static size_t encode_cp(int32_t cp, char *out)
{
    utf8proc_ssize_t n = utf8proc_encode_char(cp, (utf8proc_uint8_t *)out);
    out[n] = '\0';
    return (size_t)n;
}

static bool is_jamo(int32_t cp)
{
    return (cp >= 0x1100 && cp <= 0x11FF) || (cp >= 0xA960 && cp <= 0xA97F) ||
           (cp >= 0xD7B0 && cp <= 0xD7FF);
}

/*
 * The premise of the stable-run fast path: every second element of a
 * canonical decomposition (so of any composition) is a mark or a Hangul V or
 * T jamo, and no stable code point is one. Checked over all of Unicode.
 */
static void test_no_composition_element_is_stable(void **state)
{
    int32_t cp;
    size_t seconds = 0;
    (void)state;
    for (cp = 0; cp < 0x110000; cp++) {
        utf8proc_int32_t d[8];
        int bc = 0;
        utf8proc_ssize_t n, k;
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        n = utf8proc_decompose_char(cp, d, 8, UTF8PROC_DECOMPOSE, &bc);
        for (k = 1; k < n && k < 8; k++) {
            utf8proc_category_t cat = utf8proc_category(d[k]);
            seconds++;
            bool vt_jamo = (d[k] >= 0x1161 && d[k] <= 0x1175) || (d[k] >= 0x11A8 && d[k] <= 0x11C2);
            if (!((cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME) || vt_jamo))
                fail_msg("U+%04X decomposes with U+%04X second", (unsigned)cp, (unsigned)d[k]);
            if (normalize_cp_is_stable(d[k])) fail_msg("U+%04X is stable", (unsigned)d[k]);
        }
    }
    assert_true(seconds > 1000); /* the enumeration did see the decompositions */
}

/* Every stable code point is its own NFKC_Casefold, by utf8proc's own mapping. */
static void test_stable_code_points_are_fixed_points(void **state)
{
    int32_t cp;
    size_t stable = 0;
    (void)state;
    for (cp = 0; cp < 0x110000; cp++) {
        char s[8];
        utf8proc_uint8_t *ref = NULL;
        size_t n;
        /* All of the BMP and plane 1; sampled above, where most is unassigned. */
        if ((cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x20000 && cp % 61 != 0)) continue;
        if (!normalize_cp_is_stable(cp)) continue;
        if (is_jamo(cp)) fail_msg("conjoining jamo U+%04X is stable", (unsigned)cp);
        stable++;
        n = encode_cp(cp, s);
        assert_true(utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &ref,
                                 UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_COMPOSE |
                                     UTF8PROC_CASEFOLD | UTF8PROC_IGNORE) >= 0);
        if (strcmp((const char *)ref, s) != 0)
            fail_msg("U+%04X is not a fixed point", (unsigned)cp);
        free(ref);
    }
    assert_true(stable > 50000);
    /* And the usual suspects are not stable. */
    assert_false(normalize_cp_is_stable('A'));
    assert_false(normalize_cp_is_stable(0x0301)); /* combining acute */
    assert_false(normalize_cp_is_stable(0xFF21)); /* fullwidth A */
    assert_false(normalize_cp_is_stable(0x00DF)); /* sharp s */
    assert_false(normalize_cp_is_stable(0x200B)); /* zero-width space */
    assert_false(normalize_cp_is_stable(0x1161)); /* Hangul vowel jamo */
    assert_true(normalize_cp_is_stable(0x00E9));  /* precomposed é */
    assert_true(normalize_cp_is_stable(0xAC00));  /* Hangul syllable */
    assert_true(normalize_cp_is_stable(0x4E00));
}

/* Strings of stable code points and ASCII take the fast path and still match utf8proc. */
static void test_stable_runs_match_utf8proc(void **state)
{
    static const int32_t pool[] = {'A',    'z',    '7',     0x00E9, 0x00FC, 0x0436,
                                   0x03C9, 0x05E9, 0x0645,  0x4E00, 0x3042, 0xAC00,
                                   0xD55C, 0x0E01, 0x1F600, 0x10400};
    struct normalizer nz = {0};
    unsigned seed = 12345;
    int round, k;
    (void)state;
    for (round = 0; round < 2000; round++) {
        char s[256];
        size_t len = 0;
        for (k = 0; k < 12; k++) {
            int32_t cp;
            seed = seed * 1103515245u + 12345u;
            cp = pool[(seed >> 16) % (sizeof pool / sizeof pool[0])];
            /* 0x10400 (Deseret capital) folds: the one unstable entry, kept rare. */
            if (cp == 0x10400 && round % 50) cp = 0x10428;
            len += encode_cp(cp, s + len);
        }
        check_matches_utf8proc(&nz, s);
    }
    normalizer_free(&nz);
}

static void test_stable_run_skips_utf8proc(void **state)
{
    struct normalizer nz = {0};
    (void)state;
    /* Lowercase Cyrillic with an ASCII capital: stable, so no utf8proc scratch is ever made. */
    check_normalized(&nz, "X\xD0\xB6\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C",
                     "x\xD0\xB6\xD0\xB8\xD0\xB7\xD0\xBD\xD1\x8C");
    assert_null(nz.cps);
    /* A capital Cyrillic letter is not stable: utf8proc folds it. */
    check_normalized(&nz, "\xD0\x96\xD0\xB8", "\xD0\xB6\xD0\xB8");
    assert_non_null(nz.cps);
    normalizer_free(&nz);
}

/* The inline decoder accepts and rejects exactly what utf8_seq_len() does. */
static void test_decode_agrees_with_utf8_seq_len(void **state)
{
    static const unsigned char tails[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90,
                                          0x9F, 0xA0, 0xBF, 0xC0, 0xF5, 0xFF};
    unsigned b0, b1, i2, i3;
    (void)state;
    for (b0 = 0; b0 < 256; b0++) {
        for (b1 = 0; b1 < 256; b1++) {
            for (i2 = 0; i2 < sizeof tails; i2++) {
                for (i3 = 0; i3 < sizeof tails; i3++) {
                    unsigned char s[4] = {(unsigned char)b0, (unsigned char)b1, tails[i2],
                                          tails[i3]};
                    size_t avail;
                    for (avail = 1; avail <= 4; avail++) {
                        int32_t cp = -1;
                        size_t want = utf8_seq_len(s, avail), got = normalize_decode(s, avail, &cp);
                        if (want != got)
                            fail_msg("%02x %02x %02x %02x avail %zu: %zu != %zu", s[0], s[1], s[2],
                                     s[3], avail, got, want);
                        if (got) {
                            char enc[8];
                            /* Re-encoding the decoded value gives back the same bytes. */
                            assert_int_equal(encode_cp(cp, enc), got);
                            assert_memory_equal(enc, s, got);
                        }
                    }
                }
            }
        }
    }
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
        cmocka_unit_test(test_no_composition_element_is_stable),
        cmocka_unit_test(test_stable_code_points_are_fixed_points),
        cmocka_unit_test(test_stable_runs_match_utf8proc),
        cmocka_unit_test(test_stable_run_skips_utf8proc),
        cmocka_unit_test(test_decode_agrees_with_utf8_seq_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
