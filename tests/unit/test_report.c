/* Tests for src/scan/report.c: the text and JSON forms of a report. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "checks/symbols.h"
#include "core/arena.h"
#include "core/buf.h"
#include "scan/report.h"
#include "scan/result.h"

struct fixture {
    struct symbol_registry *reg;
    struct arena *a;
    struct scan_result r;
};

static int setup(void **state)
{
    static struct fixture f;
    f.reg = symbols_new();
    f.a = arena_new(0);
    result_init(&f.r, f.a, f.reg);
    result_add(&f.r, symbols_add(f.reg, "BAYES_HAM", -3.0, "Bayes: looks like ham", "bayes"), 1.0,
               "0.02");
    result_add(&f.r, symbols_add(f.reg, "ZERO_FONT", 2.0, "Hidden text", "html"), 1.0,
               "31 hidden \"chars\"");
    result_add(&f.r, symbols_add(f.reg, "RCVD_COUNT_3", 0.0, "Three hops", "headers"), 1.0, NULL);
    result_finish(&f.r, NULL, NULL);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    arena_free(f->a);
    symbols_free(f->reg);
    return 0;
}

static void test_text_report_lines(void **state)
{
    struct fixture *f = *state;
    struct buf out = {0};
    report_text(&out, &f->r);
    assert_string_equal(out.data, "BAYES_HAM     -3.00  Bayes: looks like ham  [0.02]\n"
                                  "ZERO_FONT      2.00  Hidden text  [31 hidden \"chars\"]\n"
                                  "RCVD_COUNT_3   0.00  Three hops\n"
                                  "---\n"
                                  "Total: -1.00\n"
                                  "Action: deliver (default thresholds: 6.00 / 12.00 / 18.00)\n");
    buf_free(&out);
}

static void test_text_report_names_the_deciding_recipient(void **state)
{
    struct fixture *f = *state;
    struct buf out = {0};
    struct thresholds t = {2.0, 4.0, 5.0};
    result_set_action(&f->r, ACTION_QUARANTINE, &t, "bob@example.net");
    report_text(&out, &f->r);
    assert_non_null(strstr(out.data, "Action: quarantine (thresholds of bob@example.net: 2.00 / "
                                     "4.00 / 5.00)\n"));
    buf_free(&out);
}

static void test_json_report_parses_and_matches(void **state)
{
    struct fixture *f = *state;
    struct buf out = {0};
    json_error_t err;
    json_t *root, *syms;
    report_json(&out, &f->r, "msg \"1\".eml");
    root = json_loads(out.data, 0, &err);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "file")), "msg \"1\".eml");
    assert_true(json_real_value(json_object_get(root, "score")) == -1.0);
    assert_string_equal(json_string_value(json_object_get(root, "action")), "deliver");
    assert_true(json_real_value(json_object_get(json_object_get(root, "thresholds"), "reject")) ==
                18.0);
    syms = json_object_get(root, "symbols");
    assert_int_equal(json_array_size(syms), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(syms, 1), "name")),
                        "ZERO_FONT");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(json_array_get(syms, 1), "options"), 0)),
        "31 hidden \"chars\"");
    json_decref(root);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_report_lines),
        cmocka_unit_test(test_json_report_parses_and_matches),
        /* Last: it changes the shared result's action. */
        cmocka_unit_test(test_text_report_names_the_deciding_recipient),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
