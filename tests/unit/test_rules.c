/* Tests for src/checks/rules.c: SpamAssassin-syntax rule files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tmpdir.h"

#include "checks/regex.h"
#include "checks/rules.h"
#include "core/log.h"

static char dir[256];

static const char *put(const char *name, const char *text)
{
    static char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static struct rule_set *load(const char *text)
{
    struct rule_set *rs = rules_new();
    assert_int_equal(rules_load_file(rs, put("t.cf", text)), 0);
    return rs;
}

static bool has_warning(const struct rule_set *rs, const char *part)
{
    size_t i;
    for (i = 0; i < rules_warning_count(rs); i++)
        if (strstr(rules_warning_at(rs, i), part)) return true;
    return false;
}

static int setup(void **state)
{
    (void)state;
    return test_tmpdir_make(dir, sizeof dir, "rules");
}

static int teardown(void **state)
{
    (void)state;
    return test_tmpdir_remove(dir);
}

static void test_header_rules_in_every_form(void **state)
{
    struct rule_set *rs = load("header SUBJ_FREE Subject =~ /\\bfree\\b/i\n"
                               "header NO_DATE_CHECK Date !~ /\\d{4}/ [if-unset: 2024]\n"
                               "header FROM_ADDR From:addr =~ m{\\@example\\.com$}\n"
                               "header ANY_X ALL =~ /^X-Spam/m\n"
                               "header HAS_LIST exists:List-Id\n"
                               "header NAME_RAW From:name:raw =~ /[\\x80-\\xff]/\n");
    const struct rule *r;
    (void)state;
    r = rules_find(rs, "SUBJ_FREE");
    assert_non_null(r);
    assert_int_equal(r->kind, RULE_HEADER);
    assert_string_equal(r->header, "Subject");
    assert_string_equal(r->pattern, "\\bfree\\b");
    assert_int_equal(r->regex_flags, REGEX_CASELESS);
    r = rules_find(rs, "NO_DATE_CHECK");
    assert_true(r->negate);
    assert_string_equal(r->if_unset, "2024");
    r = rules_find(rs, "FROM_ADDR");
    assert_int_equal(r->part, RULE_HDR_ADDR);
    assert_string_equal(r->header, "From");
    assert_string_equal(r->pattern, "\\@example\\.com$");
    r = rules_find(rs, "ANY_X");
    assert_string_equal(r->header, "ALL");
    assert_int_equal(r->regex_flags, REGEX_MULTILINE);
    r = rules_find(rs, "HAS_LIST");
    assert_true(r->exists);
    assert_string_equal(r->header, "List-Id");
    r = rules_find(rs, "NAME_RAW");
    assert_int_equal(r->part, RULE_HDR_NAME);
    assert_true(r->raw);
    assert_string_equal(r->header, "From");
    assert_int_equal(rules_warning_count(rs), 0);
    rules_free(rs);
}

static void test_body_kinds_meta_score_describe_tflags(void **state)
{
    struct rule_set *rs = load("score LATE_SCORE 2.5\n" /* before its rule, as 50_scores.cf does */
                               "body LATE_SCORE /viagra/i\n"
                               "rawbody RAW_FONT /<font\\s+size=\"?7/i\n"
                               "uri SHORT_URL m!^https?://bit\\.ly/!\n"
                               "full FULL_X /^X-Foo: bar/m\n"
                               "meta BOTH (LATE_SCORE && SHORT_URL) || (RAW_FONT + FULL_X > 1)\n"
                               "score BOTH 1.0 2.0 3.0 4.0\n"
                               "describe BOTH Pills and a short link # a comment\n"
                               "tflags LATE_SCORE multiple maxhits=3 nice userconf\n");
    const struct rule *r;
    (void)state;
    r = rules_find(rs, "LATE_SCORE");
    assert_int_equal(r->kind, RULE_BODY);
    assert_true(r->has_score);
    assert_true(r->scores[0] == 2.5 && r->scores[3] == 2.5);
    assert_true(r->tflags & RULE_TF_MULTIPLE);
    assert_true(r->tflags & RULE_TF_NICE);
    assert_int_equal(r->maxhits, 3);
    assert_int_equal(rules_find(rs, "RAW_FONT")->kind, RULE_RAWBODY);
    assert_int_equal(rules_find(rs, "SHORT_URL")->kind, RULE_URI);
    assert_string_equal(rules_find(rs, "SHORT_URL")->pattern, "^https?://bit\\.ly/");
    assert_int_equal(rules_find(rs, "FULL_X")->kind, RULE_FULL);
    r = rules_find(rs, "BOTH");
    assert_int_equal(r->kind, RULE_META);
    assert_string_equal(r->meta, "(LATE_SCORE && SHORT_URL) || (RAW_FONT + FULL_X > 1)");
    assert_true(r->scores[1] == 2.0 && r->scores[3] == 4.0);
    assert_string_equal(r->description, "Pills and a short link");
    assert_int_equal(rules_warning_count(rs), 0);
    rules_free(rs);
}

static void test_escaped_hash_is_not_a_comment(void **state)
{
    struct rule_set *rs = load("body HASH_TAG /\\#winner/ # trailing comment\n");
    (void)state;
    assert_string_equal(rules_find(rs, "HASH_TAG")->pattern, "#winner");
    rules_free(rs);
}

static void test_conditionals(void **state)
{
    struct rule_set *rs = load("ifplugin Mail::SpamAssassin::Plugin::Bayes\n"
                               "body IN_KNOWN_PLUGIN /a/\n"
                               "endif\n"
                               "ifplugin Mail::SpamAssassin::Plugin::Nonexistent\n"
                               "body IN_UNKNOWN_PLUGIN /a/\n"
                               "ifplugin Mail::SpamAssassin::Plugin::Bayes\n"
                               "body NESTED_IN_FALSE /a/\n"
                               "endif\n"
                               "else\n"
                               "body IN_ELSE /a/\n"
                               "endif\n"
                               "if (version >= 3.004000)\n"
                               "body NEW_ENOUGH /a/\n"
                               "endif\n"
                               "if version > 9.000000\n"
                               "body TOO_NEW /a/\n"
                               "endif\n"
                               "if can(Mail::SpamAssassin::Conf::feature_x)\n"
                               "body NEEDS_FEATURE /a/\n"
                               "endif\n"
                               "if can(Mail::SpamAssassin::Conf::feature_bug6558_free)\n"
                               "body KNOWN_FEATURE /a/\n"
                               "endif\n"
                               "if !plugin(Mail::SpamAssassin::Plugin::Nonexistent)\n"
                               "body NOT_PLUGIN /a/\n"
                               "endif\n"
                               "if !(can(Mail::SpamAssassin::Conf::feature_bug6558_free))\n"
                               "body NOT_KNOWN_FEATURE /a/\n"
                               "endif\n"
                               "if plugin(Mail::SpamAssassin::Plugin::DKIM)\n"
                               "body WITH_DKIM /a/\n"
                               "endif\n");
    (void)state;
    assert_non_null(rules_find(rs, "IN_KNOWN_PLUGIN"));
    /* Rules of a SpamAssassin plugin we lack exist for SpamAssassin: known by name,
     * unsupported, so metas treat them as unknown. */
    assert_int_equal(rules_find(rs, "IN_UNKNOWN_PLUGIN")->kind, RULE_NONE);
    assert_true(rules_find(rs, "IN_UNKNOWN_PLUGIN")->unsupported);
    assert_true(rules_find(rs, "NESTED_IN_FALSE")->unsupported);
    assert_false(rules_find(rs, "IN_ELSE")->unsupported);
    assert_non_null(rules_find(rs, "IN_ELSE"));
    assert_non_null(rules_find(rs, "NEW_ENOUGH"));
    assert_null(rules_find(rs, "TOO_NEW"));
    assert_null(rules_find(rs, "NEEDS_FEATURE"));
    assert_non_null(rules_find(rs, "KNOWN_FEATURE"));
    assert_non_null(rules_find(rs, "NOT_PLUGIN"));
    assert_null(rules_find(rs, "NOT_KNOWN_FEATURE"));
    assert_non_null(rules_find(rs, "WITH_DKIM"));
    assert_int_equal(rules_warning_count(rs), 0);
    rules_free(rs);
}

static void test_include_is_relative_to_the_file(void **state)
{
    struct rule_set *rs = rules_new();
    (void)state;
    put("inc.cf", "body FROM_INCLUDE /x/\n");
    assert_int_equal(rules_load_file(rs, put("main.cf", "include inc.cf\ninclude missing.cf\n")),
                     0);
    assert_non_null(rules_find(rs, "FROM_INCLUDE"));
    assert_true(has_warning(rs, "main.cf:2: cannot include"));
    rules_free(rs);
}

static void test_bad_lines_warn_with_file_and_line_and_are_skipped(void **state)
{
    struct rule_set *rs = load("body GOOD /fine/\n"
                               "body BROKEN_RE /unterminated\n"
                               "meta BAD_META (GOOD && \n"
                               "header EVAL_RULE eval:check_for_missing_to_header()\n"
                               "score GOOD one\n"
                               "frobnicate X 1\n"
                               "frobnicate Y 2\n"
                               "else\n"
                               "body 1-BAD-NAME /x/\n");
    struct rule_set_stats st;
    (void)state;
    assert_non_null(rules_find(rs, "GOOD"));
    /* Skipped rules are known by name only, marked unsupported: metas that read them
     * must treat them as unknown. */
    assert_int_equal(rules_find(rs, "BROKEN_RE")->kind, RULE_NONE);
    assert_true(rules_find(rs, "BROKEN_RE")->unsupported);
    assert_true(rules_find(rs, "BAD_META")->unsupported);
    assert_true(rules_find(rs, "EVAL_RULE")->unsupported);
    assert_false(rules_find(rs, "GOOD")->unsupported);
    assert_false(rules_find(rs, "GOOD")->has_score);
    assert_true(has_warning(rs, "t.cf:2: rule BROKEN_RE skipped: malformed regular expression"));
    assert_true(has_warning(rs, "t.cf:3: rule BAD_META skipped: unbalanced parentheses"));
    assert_true(has_warning(rs, "t.cf:4: rule EVAL_RULE skipped: eval tests"));
    assert_true(has_warning(rs, "t.cf:5: bad score line for GOOD"));
    assert_true(has_warning(rs, "t.cf:6: unsupported directive \"frobnicate\""));
    assert_false(has_warning(rs, "t.cf:7:")); /* once per directive */
    assert_true(has_warning(rs, "t.cf:8: else without if"));
    assert_true(has_warning(rs, "t.cf:9: body needs a rule name"));
    rules_stats(rs, &st);
    assert_int_equal(st.defined, 1);
    assert_int_equal(st.skipped, 4);
    rules_free(rs);
}

static void test_directory_loads_cf_files_in_name_order(void **state)
{
    struct rule_set *rs = rules_new();
    struct rule_set_stats st;
    (void)state;
    put("20_rules.cf", "body ORDERED /first/\n");
    put("10_early.cf", "body ORDERED /zeroth/\nscore ORDERED 1\n");
    put("50_scores.cf", "score ORDERED 3\n");
    put("notes.txt", "body IGNORED /x/\n");
    assert_int_equal(rules_load_dir(rs, dir), 0);
    assert_string_equal(rules_find(rs, "ORDERED")->pattern, "first"); /* later file wins */
    assert_true(rules_find(rs, "ORDERED")->scores[0] == 3.0);
    assert_null(rules_find(rs, "IGNORED"));
    rules_stats(rs, &st);
    assert_int_equal(st.files, 3);
    rules_free(rs);
}

static void test_many_rules(void **state)
{
    FILE *f;
    char path[512];
    struct rule_set *rs = rules_new();
    int i;
    (void)state;
    snprintf(path, sizeof path, "%s/many.cf", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    for (i = 0; i < 100000; i++)
        fprintf(f, "body R_%d /word%d/\nscore R_%d 0.%d\n", i, i, i, i % 10);
    fclose(f);
    assert_int_equal(rules_load_file(rs, path), 0);
    assert_int_equal(rules_count(rs), 100000);
    assert_string_equal(rules_find(rs, "R_99999")->pattern, "word99999");
    rules_free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_header_rules_in_every_form, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_kinds_meta_score_describe_tflags, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_escaped_hash_is_not_a_comment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conditionals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_include_is_relative_to_the_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_lines_warn_with_file_and_line_and_are_skipped,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_loads_cf_files_in_name_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_many_rules, setup, teardown),
    };
    log_set_level(LOG_LEVEL_ERROR); /* the warnings are checked through the API */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
