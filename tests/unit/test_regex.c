/* Tests for src/checks/regex.c. */
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

#include "checks/regex.h"
#include "core/log.h"
#include "core/xalloc.h"

/* A negative look-ahead that never fails on our texts: Hyperscan rejects it, so
 * prefixing it forces an otherwise identical pattern into PCRE2. */
#define FORCE_PCRE2 "(?!\\x01\\x02\\x03)"

struct hit {
    unsigned id;
    size_t from, to;
};

struct hits {
    struct hit h[4096];
    size_t n;
    unsigned timeouts[16];
    size_t n_timeouts;
    unsigned stop_id; /* return non-zero for matches of this id (0: never) */
};

static int collect(void *ctx, unsigned id, size_t from, size_t to)
{
    struct hits *hs = ctx;
    assert_true(hs->n < sizeof(hs->h) / sizeof(hs->h[0]));
    hs->h[hs->n++] = (struct hit){id, from, to};
    return hs->stop_id && id == hs->stop_id;
}

static void timed_out(void *ctx, unsigned id)
{
    struct hits *hs = ctx;
    assert_true(hs->n_timeouts < 16);
    hs->timeouts[hs->n_timeouts++] = id;
}

static int hit_cmp(const void *a, const void *b)
{
    const struct hit *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    if (x->from != y->from) return x->from < y->from ? -1 : 1;
    return (x->to > y->to) - (x->to < y->to);
}

/* Scans text with set into *out, sorted by (id, from, to). */
static void scan(const struct regex_set *set, const char *text, size_t len, struct hits *out)
{
    struct regex_scratch *s = regex_scratch_new(set);
    unsigned stop = out->stop_id;
    memset(out, 0, sizeof(*out));
    out->stop_id = stop;
    assert_int_equal(regex_scan(set, s, text, len, collect, timed_out, out), 0);
    qsort(out->h, out->n, sizeof(out->h[0]), hit_cmp);
    regex_scratch_free(s);
}

/* The matches of one id, as "from-to from-to ..." for readable assertions. */
static char *spans_of(const struct hits *hs, unsigned id)
{
    static char out[8192];
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < hs->n; i++)
        if (hs->h[i].id == id)
            used += (size_t)snprintf(out + used, sizeof(out) - used, "%s%zu-%zu", used ? " " : "",
                                     hs->h[i].from, hs->h[i].to);
    return out;
}

static void add_ok(struct regex_builder *b, unsigned id, const char *pattern, unsigned flags,
                   enum regex_engine want)
{
    enum regex_engine got = (enum regex_engine) - 1;
    if (regex_builder_add(b, id, pattern, flags, &got) != 0)
        fail_msg("add %s failed: %s", pattern, err_msg());
    if (got != want) fail_msg("pattern %s went to engine %d, expected %d", pattern, got, want);
}

static void test_same_patterns_give_same_hits_in_both_engines(void **state)
{
    (void)state;
    /* Pairs: id n via Hyperscan, id n+100 the same language via PCRE2. */
    static const char *const pairs[][2] = {
        {"aa", "(a)\\1"},
        {"a+", FORCE_PCRE2 "a+"},
        {"x\\d+?y", FORCE_PCRE2 "x\\d+?y"},
        {"\\w+@\\w+\\.com", FORCE_PCRE2 "\\w+@\\w+\\.com"},
        {"x*", FORCE_PCRE2 "x*"},
        {"ab|abcd|cd", FORCE_PCRE2 "ab|abcd|cd"},
        {"b[^z]*b", FORCE_PCRE2 "b[^z]*b"},
    };
    const char text[] = "aaaaa x12y x3y bob@example.com, axxb ab abcd cd bzbb bxb zz aab";
    struct regex_builder *b = regex_builder_new();
    size_t n = sizeof(pairs) / sizeof(pairs[0]);
    for (unsigned i = 0; i < n; i++) {
        add_ok(b, i + 1, pairs[i][0], 0, REGEX_ENGINE_HYPERSCAN);
        add_ok(b, i + 101, pairs[i][1], 0, REGEX_ENGINE_PCRE2);
    }
    struct regex_set *set = regex_set_build(b, NULL);
    assert_non_null(set);
    struct hits hs = {0};
    scan(set, text, sizeof(text) - 1, &hs);
    for (unsigned i = 0; i < n; i++) {
        char hyperscan[8192];
        snprintf(hyperscan, sizeof(hyperscan), "%s", spans_of(&hs, i + 1));
        assert_true(hyperscan[0] != '\0'); /* every pair matches somewhere */
        assert_string_equal(hyperscan, spans_of(&hs, i + 101));
    }
    /* Perl m//g semantics, spelled out for a few. */
    assert_string_equal(spans_of(&hs, 1), "0-2 2-4 60-62");
    assert_string_equal(spans_of(&hs, 2), "0-5 21-22 32-33 37-38 40-41 60-62");
    assert_string_equal(spans_of(&hs, 6), "37-39 40-42 42-44 45-47 61-63");
    regex_set_free(set);
    regex_builder_free(b);
}

static void test_empty_matches_advance_like_perl(void **state)
{
    (void)state;
    struct regex_builder *b = regex_builder_new();
    add_ok(b, 1, "x*", 0, REGEX_ENGINE_HYPERSCAN);
    add_ok(b, 2, FORCE_PCRE2 "x*", 0, REGEX_ENGINE_PCRE2);
    struct regex_set *set = regex_set_build(b, NULL);
    struct hits hs = {0};
    scan(set, "axxb", 4, &hs);
    /* What perl prints for: $_ = "axxb"; print "$-[0]-$+[0] " while m{x*}g; */
    assert_string_equal(spans_of(&hs, 1), "0-0 1-3 3-3 4-4");
    assert_string_equal(spans_of(&hs, 2), "0-0 1-3 3-3 4-4");
    regex_set_free(set);
    regex_builder_free(b);
}

static void test_flags_work_in_both_engines(void **state)
{
    (void)state;
    static const struct {
        const char *pattern;
        unsigned flag;
        const char *text;
        const char *with_flag, *without_flag;
    } cases[] = {
        {"hello", REGEX_CASELESS, "say HeLLo", "4-9", ""},
        {"^two$", REGEX_MULTILINE, "one\ntwo\nthree", "4-7", ""},
        {"a.b", REGEX_DOTALL, "a\nb", "0-3", ""},
        {"h e l l o # a comment", REGEX_EXTENDED, "hello", "0-5", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char forced[256];
        snprintf(forced, sizeof(forced), FORCE_PCRE2 "%s", cases[i].pattern);
        struct regex_builder *b = regex_builder_new();
        add_ok(b, 1, cases[i].pattern, cases[i].flag, REGEX_ENGINE_HYPERSCAN);
        add_ok(b, 2, forced, cases[i].flag, REGEX_ENGINE_PCRE2);
        add_ok(b, 3, cases[i].pattern, 0, REGEX_ENGINE_HYPERSCAN);
        add_ok(b, 4, forced, 0, REGEX_ENGINE_PCRE2);
        struct regex_set *set = regex_set_build(b, NULL);
        struct hits hs = {0};
        scan(set, cases[i].text, strlen(cases[i].text), &hs);
        assert_string_equal(spans_of(&hs, 1), cases[i].with_flag);
        assert_string_equal(spans_of(&hs, 2), cases[i].with_flag);
        assert_string_equal(spans_of(&hs, 3), cases[i].without_flag);
        assert_string_equal(spans_of(&hs, 4), cases[i].without_flag);
        regex_set_free(set);
        regex_builder_free(b);
    }
}

static void test_backreference_and_lookbehind_go_to_pcre2(void **state)
{
    (void)state;
    struct regex_builder *b = regex_builder_new();
    add_ok(b, 1, "(\\w)\\1", 0, REGEX_ENGINE_PCRE2);
    add_ok(b, 2, "(?<=\\$)\\d+", 0, REGEX_ENGINE_PCRE2);
    add_ok(b, 3, "viagra", REGEX_CASELESS, REGEX_ENGINE_HYPERSCAN);
    struct regex_set *set = regex_set_build(b, NULL);
    struct regex_stats st;
    regex_set_stats(set, &st);
    assert_int_equal(st.hyperscan, 1);
    assert_int_equal(st.pcre2, 2);
    assert_false(st.from_cache);
    struct hits hs = {0};
    scan(set, "cheap VIAGRA for $100", 21, &hs);
    assert_string_equal(spans_of(&hs, 1), "19-21");
    assert_string_equal(spans_of(&hs, 2), "18-21");
    assert_string_equal(spans_of(&hs, 3), "6-12");
    regex_set_free(set);
    regex_builder_free(b);
}

static void test_invalid_pattern_fails_with_message(void **state)
{
    (void)state;
    struct regex_builder *b = regex_builder_new();
    err_set("%s", "");
    assert_int_equal(regex_builder_add(b, 7, "free(money", 0, NULL), -1);
    assert_non_null(strstr(err_msg(), "id=7"));
    assert_non_null(strstr(err_msg(), "missing closing parenthesis"));
    assert_int_equal(regex_builder_add(b, 8, "a{2,1}", 0, NULL), -1);
    assert_true(strlen(err_msg()) > 0);
    /* The builder stays usable and holds only the good pattern. */
    add_ok(b, 9, "money", 0, REGEX_ENGINE_HYPERSCAN);
    struct regex_set *set = regex_set_build(b, NULL);
    struct regex_stats st;
    regex_set_stats(set, &st);
    assert_int_equal(st.hyperscan + st.pcre2, 1);
    regex_set_free(set);
    regex_builder_free(b);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void test_catastrophic_backtracking_times_out_fast(void **state)
{
    (void)state;
    struct regex_builder *b = regex_builder_new();
    /* Exponential in PCRE2; the look-behind keeps it out of Hyperscan, and its prefilter
     * (which drops the look-behind) matches the text, so PCRE2 must run. */
    add_ok(b, 1, "(x+x+)+(?<=y)", 0, REGEX_ENGINE_PCRE2);
    add_ok(b, 2, "xxx", 0, REGEX_ENGINE_HYPERSCAN);
    struct regex_set *set = regex_set_build(b, NULL);
    size_t len = 5000;
    char *text = xmalloc(len);
    memset(text, 'x', len);
    struct hits hs = {.stop_id = 2};
    double t0 = now_ms();
    scan(set, text, len, &hs);
    double elapsed = now_ms() - t0;
    printf("catastrophic pattern on 5000 bytes: %.1f ms\n", elapsed);
    assert_true(elapsed < 2000);
    assert_int_equal(hs.n_timeouts, 1);
    assert_int_equal(hs.timeouts[0], 1);
    assert_string_equal(spans_of(&hs, 1), "");    /* a timeout is no match */
    assert_string_equal(spans_of(&hs, 2), "0-3"); /* the others still run */
    free(text);
    regex_set_free(set);
    regex_builder_free(b);
}

static void test_exists_only_and_prefiltered_patterns(void **state)
{
    (void)state;
    struct regex_builder *b = regex_builder_new();
    add_ok(b, 1, "b+", REGEX_EXISTS_ONLY, REGEX_ENGINE_HYPERSCAN);
    add_ok(b, 2, "b+", 0, REGEX_ENGINE_HYPERSCAN);
    /* Back-reference: PCRE2 runs it, behind a Hyperscan prefilter. */
    add_ok(b, 3, "(c)\\1d", 0, REGEX_ENGINE_PCRE2);
    add_ok(b, 4, "(?<=a)bb", 0, REGEX_ENGINE_PCRE2);
    struct regex_set *set = regex_set_build(b, NULL);
    struct hits hs = {0};
    scan(set, "abb xbbb ccd ccd", 16, &hs);
    assert_string_equal(spans_of(&hs, 1), "0-0");        /* once, position not asked for */
    assert_string_equal(spans_of(&hs, 2), "1-3 5-8");    /* every match, exactly */
    assert_string_equal(spans_of(&hs, 3), "9-12 13-16"); /* prefilter passed, PCRE2 exact */
    assert_string_equal(spans_of(&hs, 4), "1-3");
    memset(&hs, 0, sizeof hs);
    scan(set, "cd xbb", 6, &hs);
    assert_string_equal(spans_of(&hs, 3), ""); /* prefilter or PCRE2: no match either way */
    assert_string_equal(spans_of(&hs, 4), "");
    regex_set_free(set);
    regex_builder_free(b);
}

static void test_on_match_nonzero_stops_only_that_id(void **state)
{
    (void)state;
    struct regex_builder *b = regex_builder_new();
    add_ok(b, 1, "ab", 0, REGEX_ENGINE_HYPERSCAN);
    add_ok(b, 2, "(a)b", 0, REGEX_ENGINE_HYPERSCAN);
    add_ok(b, 3, "(a)\\1", 0, REGEX_ENGINE_PCRE2);
    struct regex_set *set = regex_set_build(b, NULL);
    struct hits hs = {.stop_id = 1};
    scan(set, "ab ab aa aa", 11, &hs);
    assert_string_equal(spans_of(&hs, 1), "0-2");
    assert_string_equal(spans_of(&hs, 2), "0-2 3-5");
    hs.stop_id = 3;
    scan(set, "ab ab aa aa", 11, &hs);
    assert_string_equal(spans_of(&hs, 3), "6-8");
    assert_string_equal(spans_of(&hs, 1), "0-2 3-5");
    regex_set_free(set);
    regex_builder_free(b);
}

/* The cache test uses fewer patterns: Hyperscan compiles 10,000 of them in seconds. */
enum { MANY = 10000, CACHED = 500 };

/* Pattern i of the big set: mostly literal-ish, some classes, every 50th PCRE2-only. */
static void many_pattern(unsigned i, char *out, size_t size, unsigned *flags)
{
    *flags = i % 3 == 0 ? REGEX_CASELESS : 0;
    if (i % 50 == 0)
        snprintf(out, size, "(k)\\1w%05u", i);
    else if (i % 2 == 0)
        snprintf(out, size, "\\bword%05u[a-z]{2,5}\\d", i);
    else
        snprintf(out, size, "spam%05u.{0,3}offer", i);
}

static struct regex_set *many_build(unsigned count, const char *cache_dir, double *build_ms)
{
    struct regex_builder *b = regex_builder_new();
    char p[64];
    unsigned flags;
    double t0 = now_ms();
    for (unsigned i = 0; i < count; i++) {
        many_pattern(i, p, sizeof(p), &flags);
        if (regex_builder_add(b, i, p, flags, NULL) != 0) fail_msg("%s", err_msg());
    }
    struct regex_set *set = regex_set_build(b, cache_dir);
    *build_ms = now_ms() - t0;
    regex_builder_free(b);
    assert_non_null(set);
    return set;
}

/* 10 KB of filler with hits for patterns 2 (even), 7 (odd), 9 (caseless) and 100 (PCRE2). */
static char *many_text(size_t *len)
{
    static const char filler[] = "the quick brown fox jumps over the lazy dog. ";
    size_t size = 10 * 1024;
    char *t = xmalloc(size);
    for (size_t i = 0; i < size; i++)
        t[i] = filler[i % (sizeof(filler) - 1)];
    memcpy(t + 100, " word00002abc7 ", 15);
    memcpy(t + 3000, "spam00007!!offer", 16);
    memcpy(t + 5000, "SPAM00009 OFFER", 15);
    memcpy(t + 9000, "kkw00100", 8);
    *len = size;
    return t;
}

static void expect_many_hits(const struct hits *hs)
{
    assert_int_equal(hs->n, 4);
    assert_string_equal(spans_of(hs, 2), "101-114");
    assert_string_equal(spans_of(hs, 7), "3000-3016");
    assert_string_equal(spans_of(hs, 9), "5000-5015");
    assert_string_equal(spans_of(hs, 100), "9000-9008");
}

static void test_ten_thousand_patterns_build_and_scan(void **state)
{
    (void)state;
    double build_ms;
    struct regex_set *set = many_build(MANY, NULL, &build_ms);
    struct regex_stats st;
    regex_set_stats(set, &st);
    assert_int_equal(st.pcre2, MANY / 50);
    assert_int_equal(st.hyperscan, MANY - MANY / 50);

    size_t len;
    char *text = many_text(&len);
    struct regex_scratch *s = regex_scratch_new(set);
    static struct hits hs;
    enum { ROUNDS = 20 };
    double t0 = now_ms();
    for (int r = 0; r < ROUNDS; r++) {
        memset(&hs, 0, sizeof(hs));
        assert_int_equal(regex_scan(set, s, text, len, collect, timed_out, &hs), 0);
    }
    double scan_ms = (now_ms() - t0) / ROUNDS;
    qsort(hs.h, hs.n, sizeof(hs.h[0]), hit_cmp);
    expect_many_hits(&hs);
    printf("%d patterns (%zu hyperscan, %zu pcre2): build %.0f ms, scan of %zu bytes %.3f ms\n",
           MANY, st.hyperscan, st.pcre2, build_ms, len, scan_ms);
    regex_scratch_free(s);
    free(text);
    regex_set_free(set);
}

static void test_disk_cache_second_build_loads_same_hits(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_regex_cache.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cache_dir[256];
    snprintf(cache_dir, sizeof(cache_dir), "%s/sub", dir); /* created on demand */
    size_t len;
    char *text = many_text(&len);
    static struct hits first, second, third;
    double ms1, ms2, ms3;
    struct regex_stats st;

    struct regex_set *set = many_build(CACHED, cache_dir, &ms1);
    regex_set_stats(set, &st);
    assert_false(st.from_cache);
    scan(set, text, len, &first);
    regex_set_free(set);

    set = many_build(CACHED, cache_dir, &ms2);
    regex_set_stats(set, &st);
    assert_true(st.from_cache);
    assert_int_equal(st.pcre2, CACHED / 50);
    scan(set, text, len, &second);
    regex_set_free(set);
    printf("cache: compile %.0f ms, load %.0f ms\n", ms1, ms2);
    expect_many_hits(&first);
    assert_int_equal(first.n, second.n);
    assert_memory_equal(first.h, second.h, first.n * sizeof(first.h[0]));

    /* A corrupted cache file is ignored and rewritten. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "for f in %s/*.hsdb; do head -c 100 \"$f\" > \"$f.t\"; "
             "mv \"$f.t\" \"$f\"; done",
             cache_dir);
    assert_int_equal(system(cmd), 0);
    set = many_build(CACHED, cache_dir, &ms3);
    regex_set_stats(set, &st);
    assert_false(st.from_cache);
    scan(set, text, len, &third);
    expect_many_hits(&third);
    regex_set_free(set);
    set = many_build(CACHED, cache_dir, &ms3);
    regex_set_stats(set, &st);
    assert_true(st.from_cache);
    regex_set_free(set);

    /* A different pattern set does not load this cache. */
    struct regex_builder *b = regex_builder_new();
    add_ok(b, 1, "other", 0, REGEX_ENGINE_HYPERSCAN);
    set = regex_set_build(b, cache_dir);
    regex_set_stats(set, &st);
    assert_false(st.from_cache);
    regex_set_free(set);
    regex_builder_free(b);

    free(text);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_nul_bytes_and_invalid_utf8_are_plain_bytes(void **state)
{
    (void)state;
    const char text[] = "ab\0cd \xff\xfe\xc3 z\xc3\xa9z";
    size_t len = sizeof(text) - 1;
    struct regex_builder *b = regex_builder_new();
    add_ok(b, 1, "b\\x00c", 0, REGEX_ENGINE_HYPERSCAN);
    add_ok(b, 2, FORCE_PCRE2 "b\\x00c", 0, REGEX_ENGINE_PCRE2);
    add_ok(b, 3, "\\xff\\xfe.", 0, REGEX_ENGINE_HYPERSCAN);
    add_ok(b, 4, "(\\xfe)\\xc3|\\xff\\1", 0, REGEX_ENGINE_PCRE2);
    add_ok(b, 5, "z.z", 0, REGEX_ENGINE_HYPERSCAN);  /* é is two bytes: no match */
    add_ok(b, 6, "z..z", 0, REGEX_ENGINE_HYPERSCAN); /* . is one byte */
    add_ok(b, 7, "(z)..\\1", 0, REGEX_ENGINE_PCRE2);
    add_ok(b, 8, "cd", 0, REGEX_ENGINE_HYPERSCAN); /* after the NUL */
    struct regex_set *set = regex_set_build(b, NULL);
    struct hits hs = {0};
    scan(set, text, len, &hs);
    assert_string_equal(spans_of(&hs, 1), "1-4");
    assert_string_equal(spans_of(&hs, 2), "1-4");
    assert_string_equal(spans_of(&hs, 3), "6-9");
    assert_string_equal(spans_of(&hs, 4), "7-9");
    assert_string_equal(spans_of(&hs, 5), "");
    assert_string_equal(spans_of(&hs, 6), "10-14");
    assert_string_equal(spans_of(&hs, 7), "10-14");
    assert_string_equal(spans_of(&hs, 8), "3-5");
    regex_set_free(set);
    regex_builder_free(b);
}

static void test_empty_set_scans_fine(void **state)
{
    (void)state;
    struct regex_builder *b = regex_builder_new();
    struct regex_set *set = regex_set_build(b, NULL);
    assert_non_null(set);
    struct regex_stats st = {1, 1, true};
    regex_set_stats(set, &st);
    assert_int_equal(st.hyperscan, 0);
    assert_int_equal(st.pcre2, 0);
    assert_false(st.from_cache);
    struct hits hs = {0};
    scan(set, "anything", 8, &hs);
    assert_int_equal(hs.n, 0);
    scan(set, NULL, 0, &hs);
    assert_int_equal(hs.n, 0);
    regex_set_free(set);
    /* The builder was emptied by the build and can be reused. */
    add_ok(b, 1, "thing", 0, REGEX_ENGINE_HYPERSCAN);
    set = regex_set_build(b, NULL);
    scan(set, "anything", 8, &hs);
    assert_string_equal(spans_of(&hs, 1), "3-8");
    regex_set_free(set);
    regex_builder_free(b);
}

int main(void)
{
    log_set_level(LOG_LEVEL_ERROR); /* the cache test provokes warnings on purpose */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_patterns_give_same_hits_in_both_engines),
        cmocka_unit_test(test_empty_matches_advance_like_perl),
        cmocka_unit_test(test_flags_work_in_both_engines),
        cmocka_unit_test(test_backreference_and_lookbehind_go_to_pcre2),
        cmocka_unit_test(test_invalid_pattern_fails_with_message),
        cmocka_unit_test(test_catastrophic_backtracking_times_out_fast),
        cmocka_unit_test(test_exists_only_and_prefiltered_patterns),
        cmocka_unit_test(test_on_match_nonzero_stops_only_that_id),
        cmocka_unit_test(test_ten_thousand_patterns_build_and_scan),
        cmocka_unit_test(test_disk_cache_second_build_loads_same_hits),
        cmocka_unit_test(test_nul_bytes_and_invalid_utf8_are_plain_bytes),
        cmocka_unit_test(test_empty_set_scans_fine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
