/* Tests for src/core/arena.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/xalloc.h"

static void test_allocations_are_aligned_and_distinct(void **state)
{
    struct arena *a = arena_new(1024);
    char *p = arena_alloc(a, 3), *q = arena_alloc(a, 5);
    (void)state;
    assert_int_equal((uintptr_t)p % 16, 0);
    assert_int_equal((uintptr_t)q % 16, 0);
    assert_true(q >= p + 3 || p >= q + 5);
    arena_free(a);
}

static void test_large_block_gets_its_own_chunk(void **state)
{
    struct arena *a = arena_new(1024);
    char *big = arena_alloc(a, 1 << 20);
    char *small = arena_alloc(a, 16);
    (void)state;
    memset(big, 'x', 1 << 20);
    memset(small, 'y', 16);
    assert_true(arena_used_bytes(a) >= (1 << 20) + 1024);
    arena_free(a);
}

static void test_strings_and_printf(void **state)
{
    struct arena *a = arena_new(0);
    char long_arg[600];
    (void)state;
    memset(long_arg, 'z', sizeof long_arg - 1);
    long_arg[sizeof long_arg - 1] = '\0';
    assert_string_equal(arena_strndup(a, "hello world", 5), "hello");
    assert_null(arena_strdup(a, NULL));
    assert_string_equal(arena_printf(a, "%d-%s", 42, "x"), "42-x");
    assert_int_equal(strlen(arena_printf(a, "<%s>", long_arg)), 601);
    arena_free(a);
}

static void test_adopted_memory_is_freed_with_arena(void **state)
{
    struct arena *a = arena_new(0);
    (void)state;
    arena_adopt(a, xmalloc(100));
    arena_adopt(a, NULL);
    arena_free(a); /* LeakSanitizer fails the run if the adopted block leaked */
}

static void test_reset_reuses_first_chunk(void **state)
{
    struct arena *a = arena_new(256);
    int i;
    (void)state;
    for (i = 0; i < 100; i++) arena_alloc(a, 40);
    arena_adopt(a, xmalloc(10));
    arena_reset(a);
    assert_int_equal(arena_used_bytes(a), 256);
    assert_non_null(arena_alloc(a, 40));
    arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocations_are_aligned_and_distinct),
        cmocka_unit_test(test_large_block_gets_its_own_chunk),
        cmocka_unit_test(test_strings_and_printf),
        cmocka_unit_test(test_adopted_memory_is_freed_with_arena),
        cmocka_unit_test(test_reset_reuses_first_chunk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
