/* Tests for src/scan/result.c: hits, totals, ordering and actions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "checks/symbols.h"
#include "core/arena.h"
#include "scan/result.h"

static void test_thresholds_are_strictly_above(void **state)
{
    struct thresholds t = thresholds_default();
    (void)state;
    assert_int_equal(thresholds_action(&t, 6.0), ACTION_DELIVER);
    assert_int_equal(thresholds_action(&t, 6.01), ACTION_TAG);
    assert_int_equal(thresholds_action(&t, 12.0), ACTION_TAG);
    assert_int_equal(thresholds_action(&t, 12.5), ACTION_QUARANTINE);
    assert_int_equal(thresholds_action(&t, 18.0), ACTION_QUARANTINE);
    assert_int_equal(thresholds_action(&t, 18.1), ACTION_REJECT);
    assert_int_equal(thresholds_action(&t, -10), ACTION_DELIVER);
    assert_string_equal(scan_action_name(ACTION_QUARANTINE), "quarantine");
}

static void test_total_order_and_action(void **state)
{
    struct symbol_registry *reg = symbols_new();
    struct arena *a = arena_new(0);
    struct scan_result r;
    int good = symbols_add(reg, "GOOD", -3.0, "good", "g");
    int bad = symbols_add(reg, "BAD", 5.0, "bad", "g");
    int info = symbols_add(reg, "INFO", 0.0, "info", "g");
    int scaled = symbols_add(reg, "SCALED", 4.0, "scaled", "g");
    (void)state;

    result_init(&r, a, reg);
    result_add(&r, info, 1.0, NULL);
    result_add(&r, good, 1.0, NULL);
    result_add(&r, bad, 1.0, "first");
    result_add(&r, bad, 1.0, "second");
    result_add(&r, scaled, 0.5, NULL);
    result_finish(&r, NULL, NULL);

    assert_int_equal(r.n_hits, 4);
    assert_true(r.score == 4.0);
    assert_int_equal(r.action, ACTION_DELIVER);
    assert_int_equal(r.hits[0].id, bad);
    assert_int_equal(r.hits[0].n_options, 2);
    assert_string_equal(r.hits[0].options[1], "second");
    assert_int_equal(r.hits[1].id, good);
    assert_int_equal(r.hits[2].id, scaled);
    assert_true(r.hits[2].score == 2.0);
    assert_int_equal(r.hits[3].id, info);
    assert_string_equal(r.decided_by, "default");
    arena_free(a);
    symbols_free(reg);
}

static void test_options_are_capped_and_counted(void **state)
{
    struct symbol_registry *reg = symbols_new();
    struct arena *a = arena_new(0);
    struct scan_result r;
    int id = symbols_add(reg, "URL", 1.0, "u", "g");
    int i;
    (void)state;
    result_init(&r, a, reg);
    for (i = 0; i < RESULT_MAX_OPTIONS + 5; i++) result_add(&r, id, 1.0, "x");
    result_finish(&r, NULL, NULL);
    assert_int_equal(r.hits[0].n_options, RESULT_MAX_OPTIONS);
    assert_int_equal(r.hits[0].n_options_dropped, 5);
    assert_true(r.score == 1.0);
    arena_free(a);
    symbols_free(reg);
}

static void test_custom_thresholds_choose_action(void **state)
{
    struct symbol_registry *reg = symbols_new();
    struct arena *a = arena_new(0);
    struct scan_result r;
    struct thresholds strict = {1.0, 2.0, 3.0};
    int id = symbols_add(reg, "BAD", 2.5, "b", "g");
    (void)state;
    result_init(&r, a, reg);
    result_add(&r, id, 1.0, NULL);
    result_finish(&r, &strict, "user@example.org");
    assert_int_equal(r.action, ACTION_QUARANTINE);
    assert_string_equal(r.decided_by, "user@example.org");
    arena_free(a);
    symbols_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thresholds_are_strictly_above),
        cmocka_unit_test(test_total_order_and_action),
        cmocka_unit_test(test_options_are_capped_and_counted),
        cmocka_unit_test(test_custom_thresholds_choose_action),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
