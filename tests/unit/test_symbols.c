/* Tests for src/checks/symbols.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "checks/symbols.h"

static void test_add_and_lookup(void **state)
{
    struct symbol_registry *reg = symbols_new();
    int id = symbols_add(reg, "ZERO_FONT", 2.0, "Hidden text", "html");
    (void)state;
    assert_true(id >= 0);
    assert_int_equal(symbols_lookup(reg, "ZERO_FONT"), id);
    assert_int_equal(symbols_lookup(reg, "NOT_THERE"), -1);
    assert_string_equal(symbols_get(reg, id)->description, "Hidden text");
    assert_true(symbols_get(reg, id)->score == 2.0);
    symbols_free(reg);
}

static void test_re_adding_updates_score_keeps_id(void **state)
{
    struct symbol_registry *reg = symbols_new();
    int id = symbols_add(reg, "MIME_BAD", 1.0, "Broken MIME", "mime");
    (void)state;
    assert_int_equal(symbols_add(reg, "MIME_BAD", 3.5, NULL, NULL), id);
    assert_true(symbols_get(reg, id)->score == 3.5);
    assert_string_equal(symbols_get(reg, id)->description, "Broken MIME");
    assert_int_equal(symbols_count(reg), 1);
    symbols_free(reg);
}

static void test_invalid_names_are_refused(void **state)
{
    struct symbol_registry *reg = symbols_new();
    (void)state;
    assert_int_equal(symbols_add(reg, "", 1, "", ""), -1);
    assert_int_equal(symbols_add(reg, "HAS SPACE", 1, "", ""), -1);
    assert_int_equal(symbols_add(reg, "semi;colon", 1, "", ""), -1);
    assert_int_equal(symbols_count(reg), 0);
    symbols_free(reg);
}

static void test_many_symbols_grow_the_index(void **state)
{
    struct symbol_registry *reg = symbols_new();
    char name[32];
    int i;
    (void)state;
    for (i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "RULE_%d", i);
        assert_int_equal(symbols_add(reg, name, i, "d", "g"), i);
    }
    for (i = 0; i < 5000; i += 97) {
        snprintf(name, sizeof name, "RULE_%d", i);
        assert_int_equal(symbols_lookup(reg, name), i);
    }
    symbols_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_and_lookup),
        cmocka_unit_test(test_re_adding_updates_score_keeps_id),
        cmocka_unit_test(test_invalid_names_are_refused),
        cmocka_unit_test(test_many_symbols_grow_the_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
