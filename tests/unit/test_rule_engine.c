/* Tests for src/checks/rule_engine.c: rule files evaluated against messages as SpamAssassin does.
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

#include "checks/rule_engine.h"
#include "checks/rules.h"
#include "checks/symbols.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/log.h"
#include "message/message.h"
#include "scan/result.h"
#include "tmpdir.h"

/* A compiled rule set, a registry and one scratch, made from rule text. */
struct fixture {
    char dir[256];
    struct rule_set *rs;
    struct symbol_registry *reg;
    struct rule_engine *e;
    struct rule_scratch *s;
    struct message *m;
    struct scan_result r;
};

static void fixture_open(struct fixture *f, const char *rules_text, int score_set)
{
    char path[300];
    FILE *fp;
    struct rule_engine_options opt = {score_set, NULL};
    memset(f, 0, sizeof *f);
    assert_int_equal(test_tmpdir_make(f->dir, sizeof f->dir, "rule-engine"), 0);
    snprintf(path, sizeof path, "%s/test.cf", f->dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(rules_text, fp);
    fclose(fp);
    f->rs = rules_new();
    assert_int_equal(rules_load_file(f->rs, path), 0);
    f->reg = symbols_new();
    /* A built-in symbol for metas to read. */
    symbols_add(f->reg, "BUILTIN_SIGNAL", 0.5, "a built-in check", "test");
    f->e = rule_engine_new(f->rs, f->reg, &opt);
    assert_non_null(f->e);
    f->s = rule_scratch_new(f->e);
}

/* Scans raw; builtin true pretends the built-in check BUILTIN_SIGNAL hit first. */
static void fixture_scan(struct fixture *f, const char *raw, bool builtin)
{
    if (f->m) message_free(f->m);
    f->m = message_parse(raw, strlen(raw), NULL);
    result_init(&f->r, f->m->arena, f->reg);
    if (builtin) result_add(&f->r, symbols_lookup(f->reg, "BUILTIN_SIGNAL"), 1.0, NULL);
    rule_engine_scan(f->e, f->s, f->m, raw, strlen(raw), &f->r);
}

static const struct symbol_hit *hit(const struct fixture *f, const char *name)
{
    int id = symbols_lookup(f->reg, name);
    return id < 0 ? NULL : result_find(&f->r, id);
}

static void fixture_close(struct fixture *f)
{
    if (f->m) message_free(f->m);
    rule_scratch_free(f->s);
    rule_engine_free(f->e);
    symbols_free(f->reg);
    rules_free(f->rs);
    test_tmpdir_remove(f->dir);
}

static const char *const plain_msg = "From: Alice <alice@example.org>\n"
                                     "To: bob@example.net, \"Carol C\" <carol@example.com>\n"
                                     "Subject: Cheap watches today\n"
                                     "Message-ID: <abc@example.org>\n"
                                     "\n"
                                     "Hello Bob,\n"
                                     "\n"
                                     "buy   now\n"
                                     "at http://shop.example.biz/deal today.\n";

static void test_header_rules_see_decoded_values_and_modifiers(void **state)
{
    struct fixture f;
    (void)state;
    fixture_open(&f,
                 "header SUBJ_WATCH Subject =~ /^Cheap watches today$/\n"
                 "header FROM_ADDR From:addr =~ /^alice\\@example\\.org$/\n"
                 "header FROM_NAME From:name =~ /^Alice$/\n"
                 "header TO_SECOND ToCc:addr =~ /^carol\\@example\\.com$/m\n"
                 "header NO_LIST List-Id !~ /./\n"
                 "header HAS_MID exists:Message-ID\n"
                 "header HAS_CC exists:Cc\n"
                 "header ALL_FROM ALL =~ /^From: Alice/m\n"
                 "header UNSET_DEFAULT X-Missing =~ /^fallback$/ [if-unset: fallback]\n"
                 "header SUBJ_ENCODED Subject =~ /caf\\xc3\\xa9/\n",
                 0);
    fixture_scan(&f, plain_msg, false);
    assert_non_null(hit(&f, "SUBJ_WATCH"));
    assert_non_null(hit(&f, "FROM_ADDR"));
    assert_non_null(hit(&f, "FROM_NAME"));
    assert_non_null(hit(&f, "TO_SECOND"));
    assert_non_null(hit(&f, "NO_LIST"));
    assert_non_null(hit(&f, "HAS_MID"));
    assert_null(hit(&f, "HAS_CC"));
    assert_non_null(hit(&f, "ALL_FROM"));
    assert_non_null(hit(&f, "UNSET_DEFAULT"));
    assert_null(hit(&f, "SUBJ_ENCODED"));
    fixture_scan(&f, "Subject: =?UTF-8?Q?caf=C3=A9?=\nList-Id: x\n\nbody\n", false);
    assert_non_null(hit(&f, "SUBJ_ENCODED"));
    assert_null(hit(&f, "NO_LIST"));
    assert_null(hit(&f, "SUBJ_WATCH"));
    fixture_close(&f);
}

static void test_body_lines_are_paragraphs_with_subject_first(void **state)
{
    struct fixture f;
    (void)state;
    fixture_open(&f,
                 "body SUBJ_IN_BODY /^Cheap watches today$/\n"
                 "body COLLAPSED /^buy now at http/\n"
                 "body ACROSS_PARAGRAPHS /Bob, buy/\n"
                 "rawbody RAW_SPACES /buy   now/\n"
                 "body NOT_RAW /buy   now/\n"
                 "uri URI_BIZ /^http:\\/\\/shop\\.example\\.biz\\//\n"
                 "full FULL_MID /^Message-ID: <abc\\@example\\.org>$/m\n",
                 0);
    fixture_scan(&f, plain_msg, false);
    assert_non_null(hit(&f, "SUBJ_IN_BODY"));
    assert_non_null(hit(&f, "COLLAPSED"));
    assert_null(hit(&f, "ACROSS_PARAGRAPHS"));
    assert_non_null(hit(&f, "RAW_SPACES"));
    assert_null(hit(&f, "NOT_RAW"));
    assert_non_null(hit(&f, "URI_BIZ"));
    assert_non_null(hit(&f, "FULL_MID"));
    fixture_close(&f);
}

static void test_uri_rules_see_redirect_targets(void **state)
{
    struct fixture f;
    (void)state;
    fixture_open(&f,
                 "uri TARGET_PLAIN /^https:\\/\\/plain\\.example\\/x$/\n"
                 "uri TARGET_ENCODED /^https:\\/\\/enc\\.example\\/y$/\n"
                 "uri REDIRECTOR /^https?:\\/\\/r\\.example\\//\n",
                 0);
    fixture_scan(&f,
                 "Subject: x\n\nsee http://r.example/go?q=https://plain.example/x&z=1 and "
                 "http://r.example/?u=https%3A%2F%2Fenc.example%2Fy\n",
                 false);
    assert_non_null(hit(&f, "TARGET_PLAIN"));
    assert_non_null(hit(&f, "TARGET_ENCODED"));
    assert_non_null(hit(&f, "REDIRECTOR"));
    fixture_close(&f);
}

static void test_html_body_is_rendered_and_rawbody_is_markup(void **state)
{
    struct fixture f;
    (void)state;
    fixture_open(&f,
                 "body HTML_TEXT /Click here to win/\n"
                 "body HTML_TAG_IN_BODY /<b>/\n"
                 "rawbody HTML_TAG_RAW /<b>win<\\/b>/i\n",
                 0);
    fixture_scan(&f,
                 "Subject: x\nContent-Type: text/html\n\n"
                 "<html><body><p>Click here to <b>win</b></p></body></html>\n",
                 false);
    assert_non_null(hit(&f, "HTML_TEXT"));
    assert_null(hit(&f, "HTML_TAG_IN_BODY"));
    assert_non_null(hit(&f, "HTML_TAG_RAW"));
    fixture_close(&f);
}

static void test_meta_expressions_follow_perl(void **state)
{
    struct fixture f;
    (void)state;
    fixture_open(&f,
                 "meta DEFINED_BEFORE_ITS_INPUT __LATER && __A\n"
                 "body __A /watches/\n"
                 "body __B /Hello/\n"
                 "body __C /absent-word/\n"
                 "body __MANY /o/\n"
                 "tflags __MANY multiple maxhits=5\n"
                 "meta AND_HIT __A && __B\n"
                 "meta AND_MISS __A && __C\n"
                 "meta OR_NOT (__C || !__C) && !(__A && __C)\n"
                 "meta COUNT_HIT (__A + __B + __C) >= 2\n"
                 "meta COUNT_MISS (__A + __B + __C) > 2\n"
                 "meta MANY_HITS __MANY == 5\n"
                 "meta ARITH (2 * __A - 1) / 1 == 1 && -__C == 0\n"
                 "meta UNKNOWN_IS_ZERO !NO_SUCH_RULE && __A\n"
                 "meta USES_BUILTIN BUILTIN_SIGNAL && __A\n"
                 "meta META_OF_META AND_HIT && COUNT_HIT\n"
                 "meta DIV_ZERO __A / __C\n"
                 "meta BAD_EXPR (__A && \n"
                 "meta LOOP_1 LOOP_2 || __A\n"
                 "meta LOOP_2 LOOP_1\n"
                 "body __LATER /Hello/\n",
                 0);
    fixture_scan(&f, plain_msg, false);
    assert_non_null(hit(&f, "DEFINED_BEFORE_ITS_INPUT"));
    assert_non_null(hit(&f, "AND_HIT"));
    assert_null(hit(&f, "AND_MISS"));
    assert_non_null(hit(&f, "OR_NOT"));
    assert_non_null(hit(&f, "COUNT_HIT"));
    assert_null(hit(&f, "COUNT_MISS"));
    assert_non_null(hit(&f, "MANY_HITS"));
    assert_non_null(hit(&f, "ARITH"));
    assert_non_null(hit(&f, "UNKNOWN_IS_ZERO"));
    assert_null(hit(&f, "USES_BUILTIN"));
    assert_non_null(hit(&f, "META_OF_META"));
    assert_null(hit(&f, "DIV_ZERO"));
    assert_null(hit(&f, "BAD_EXPR"));
    assert_null(hit(&f, "LOOP_1"));
    assert_null(hit(&f, "LOOP_2"));
    assert_null(hit(&f, "__A")); /* sub-rules are never reported */
    fixture_scan(&f, plain_msg, true);
    assert_non_null(hit(&f, "USES_BUILTIN"));
    fixture_close(&f);
}

static bool engine_runs(const struct rule_engine *e, const char *name)
{
    size_t i;
    for (i = 0; i < rule_engine_count(e); i++)
        if (strcmp(rule_engine_rule(e, i)->name, name) == 0) return true;
    return false;
}

static void test_subrules_no_scored_rule_reads_do_not_run(void **state)
{
    struct fixture f;
    struct rule_engine_stats st;
    (void)state;
    fixture_open(&f,
                 "body __READ_DIRECTLY /watches/\n"
                 "body __READ_THROUGH_A_META /Hello/\n"
                 "meta __MIDDLE __READ_THROUGH_A_META && 1\n"
                 "meta SCORED __READ_DIRECTLY && __MIDDLE\n"
                 "body __ONLY_FOR_A_ZERO_META /today/\n"
                 "meta ZERO_SCORED __ONLY_FOR_A_ZERO_META\n"
                 "score ZERO_SCORED 0\n"
                 "body __READ_BY_NOBODY /Bob/\n",
                 0);
    assert_true(engine_runs(f.e, "SCORED"));
    assert_true(engine_runs(f.e, "__READ_DIRECTLY"));
    assert_true(engine_runs(f.e, "__MIDDLE"));
    assert_true(engine_runs(f.e, "__READ_THROUGH_A_META"));
    assert_false(engine_runs(f.e, "__ONLY_FOR_A_ZERO_META"));
    assert_false(engine_runs(f.e, "__READ_BY_NOBODY"));
    rule_engine_stats(f.e, &st);
    assert_int_equal(st.unused, 2);
    assert_int_equal(st.disabled, 1);
    fixture_scan(&f, plain_msg, false);
    assert_non_null(hit(&f, "SCORED"));
    fixture_close(&f);
}

static void test_metas_over_unsupported_rules_are_unknown_not_false(void **state)
{
    struct fixture f;
    (void)state;
    fixture_open(&f,
                 "body __A /watches/\n"
                 "body __C /absent-word/\n"
                 "body __EVAL eval:check_something()\n"
                 "body __BROKEN /(unclosed/\n"
                 "meta NEEDS_EVAL_FALSE __A && !__EVAL\n"
                 "meta DECIDED_BY_A __A || __EVAL\n"
                 "meta DECIDED_BY_C __C && __EVAL\n"
                 "meta NOT_OF_UNKNOWN_META !NEEDS_EVAL_FALSE\n"
                 "meta COUNT_WITH_UNKNOWN (__A + __EVAL) >= 1\n"
                 "meta BROKEN_REGEX_UNKNOWN !__BROKEN && __A\n"
                 "meta NEVER_DEFINED_IS_ZERO !__NOWHERE && __A\n",
                 0);
    fixture_scan(&f, plain_msg, false);
    assert_null(hit(&f, "NEEDS_EVAL_FALSE"));
    assert_non_null(hit(&f, "DECIDED_BY_A"));
    assert_null(hit(&f, "DECIDED_BY_C"));
    assert_null(hit(&f, "NOT_OF_UNKNOWN_META"));
    assert_null(hit(&f, "COUNT_WITH_UNKNOWN"));
    assert_null(hit(&f, "BROKEN_REGEX_UNKNOWN"));
    assert_non_null(hit(&f, "NEVER_DEFINED_IS_ZERO"));
    fixture_close(&f);
}

static void test_scores_sets_and_multiple(void **state)
{
    struct fixture f;
    const struct symbol_hit *h;
    (void)state;
    fixture_open(&f,
                 "body ONE_SCORE /watches/\nscore ONE_SCORE 2.5\n"
                 "body FOUR_SCORES /watches/\nscore FOUR_SCORES 0 1 3 4\n"
                 "body DEFAULT_SCORE /watches/\n"
                 "body NICE_DEFAULT /watches/\ntflags NICE_DEFAULT nice\n"
                 "body ZERO_SCORE /watches/\nscore ZERO_SCORE 0\n"
                 "body EACH_O /o/\ntflags EACH_O multiple maxhits=3\nscore EACH_O 0.5\n"
                 "score BUILTIN_SIGNAL 4\n",
                 2);
    fixture_scan(&f, plain_msg, true);
    assert_float_equal(hit(&f, "ONE_SCORE")->score, 2.5, 1e-9);
    assert_float_equal(hit(&f, "FOUR_SCORES")->score, 3.0, 1e-9);
    assert_float_equal(hit(&f, "DEFAULT_SCORE")->score, 1.0, 1e-9);
    assert_float_equal(hit(&f, "NICE_DEFAULT")->score, -1.0, 1e-9);
    assert_null(hit(&f, "ZERO_SCORE"));
    h = hit(&f, "EACH_O");
    assert_non_null(h);
    assert_float_equal(h->score, 1.5, 1e-9);
    /* A score line for a built-in symbol re-scores it. */
    assert_float_equal(hit(&f, "BUILTIN_SIGNAL")->score, 4.0, 1e-9);
    fixture_close(&f);
    /* In score set 0 FOUR_SCORES is disabled. */
    fixture_open(&f, "body FOUR_SCORES /watches/\nscore FOUR_SCORES 0 1 3 4\n", 0);
    fixture_scan(&f, plain_msg, false);
    assert_null(hit(&f, "FOUR_SCORES"));
    fixture_close(&f);
}

static void test_catastrophic_pattern_times_out_in_bounded_time(void **state)
{
    struct fixture f;
    struct buf msg = {0};
    struct timespec t0, t1;
    const struct symbol_hit *h;
    int i;
    (void)state;
    /* The look-behind keeps it in PCRE2 (its Hyperscan prefilter matches the text, so PCRE2
     * runs); nested quantifiers backtrack exponentially. */
    fixture_open(&f, "body EXPLODES /^(a+)+!(?<=b)/\nbody FINE /aaaa/\n", 0);
    buf_append_str(&msg, "Subject: x\n\n");
    for (i = 0; i < 1000; i++)
        buf_append_char(&msg, 'a');
    buf_append_str(&msg, "!\n");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fixture_scan(&f, msg.data, false);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9 < 5.0);
    assert_null(hit(&f, "EXPLODES"));
    assert_non_null(hit(&f, "FINE"));
    h = hit(&f, "RULE_TIMEOUT");
    assert_non_null(h);
    assert_string_equal(h->options[0], "EXPLODES");
    buf_free(&msg);
    fixture_close(&f);
}

static void test_broken_regex_is_skipped_not_fatal(void **state)
{
    struct fixture f;
    struct rule_engine_stats st;
    (void)state;
    fixture_open(&f, "body BROKEN /(unclosed/\nbody WORKS /watches/\n", 0);
    rule_engine_stats(f.e, &st);
    assert_int_equal(st.failed, 1);
    fixture_scan(&f, plain_msg, false);
    assert_null(hit(&f, "BROKEN"));
    assert_non_null(hit(&f, "WORKS"));
    fixture_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_rules_see_decoded_values_and_modifiers),
        cmocka_unit_test(test_body_lines_are_paragraphs_with_subject_first),
        cmocka_unit_test(test_uri_rules_see_redirect_targets),
        cmocka_unit_test(test_html_body_is_rendered_and_rawbody_is_markup),
        cmocka_unit_test(test_meta_expressions_follow_perl),
        cmocka_unit_test(test_subrules_no_scored_rule_reads_do_not_run),
        cmocka_unit_test(test_metas_over_unsupported_rules_are_unknown_not_false),
        cmocka_unit_test(test_scores_sets_and_multiple),
        cmocka_unit_test(test_catastrophic_pattern_times_out_in_bounded_time),
        cmocka_unit_test(test_broken_regex_is_skipped_not_fatal),
    };
    int rc;
    log_set_level(LOG_LEVEL_ERROR);
    message_library_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    message_library_shutdown();
    return rc;
}
