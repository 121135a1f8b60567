/* Tests for src/core/buf.c and src/core/utf8.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/utf8.h"

static void test_append_and_printf(void **state)
{
    struct buf b = {0};
    (void)state;
    buf_append_str(&b, "score=");
    buf_printf(&b, "%.2f", 5.5);
    buf_append_char(&b, '!');
    assert_string_equal(b.data, "score=5.50!");
    assert_int_equal(b.len, 11);
    buf_free(&b);
}

static void test_limit_truncates_and_flags(void **state)
{
    struct buf b = {.limit_bytes = 8};
    (void)state;
    buf_append_str(&b, "12345");
    buf_append_str(&b, "67890");
    buf_printf(&b, "%s", "more");
    assert_string_equal(b.data, "12345678");
    assert_true(b.truncated);
    buf_free(&b);
}

static void test_json_string_escapes_and_repairs(void **state)
{
    struct buf b = {0};
    const char in[] = "a\"b\\c\n\x01\xC3\xA9\xFF";
    (void)state;
    buf_append_json_string(&b, in, sizeof in - 1);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\xC3\xA9\xEF\xBF\xBD\"");
    buf_free(&b);
}

static void test_release_hands_over_data(void **state)
{
    struct buf b = {0};
    char *s;
    (void)state;
    s = buf_release(&b);
    assert_string_equal(s, "");
    free(s);
    buf_append_str(&b, "x");
    s = buf_release(&b);
    assert_string_equal(s, "x");
    assert_null(b.data);
    free(s);
}

static void test_utf8_validation(void **state)
{
    (void)state;
    assert_true(utf8_valid("plain", 5));
    assert_true(utf8_valid("\xE2\x82\xAC", 3));
    assert_false(utf8_valid("\xC0\xAF", 2));         /* overlong */
    assert_false(utf8_valid("\xED\xA0\x80", 3));     /* surrogate */
    assert_false(utf8_valid("\xF4\x90\x80\x80", 4)); /* beyond U+10FFFF */
    assert_false(utf8_valid("\xE2\x82", 2));         /* cut off */
}

static void test_utf8_repair_replaces_bad_bytes_and_nul(void **state)
{
    struct buf b = {0};
    const char in[] = "ok\xFFthen\0end";
    (void)state;
    assert_int_equal(utf8_repair(&b, in, sizeof in - 1), 2);
    assert_string_equal(b.data, "ok\xEF\xBF\xBDthen end");
    buf_free(&b);
}

static void test_utf8_append_codepoint(void **state)
{
    struct buf b = {0};
    (void)state;
    utf8_append_codepoint(&b, 0x41);
    utf8_append_codepoint(&b, 0xE9);
    utf8_append_codepoint(&b, 0x20AC);
    utf8_append_codepoint(&b, 0x1F600);
    utf8_append_codepoint(&b, 0xD800);
    assert_string_equal(b.data, "A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xEF\xBF\xBD");
    buf_free(&b);
}

/* buf_printf() formats into the free space and again only when the text did not fit: every
 * length around the edge of the free space, against snprintf(). */
static void test_printf_at_every_fill_level(void **state)
{
    size_t fill, width;
    (void)state;
    for (fill = 0; fill < 200; fill += 7) {
        for (width = 0; width < 300; width += 13) {
            struct buf b = {0};
            char want[600];
            size_t k;
            for (k = 0; k < fill; k++)
                buf_append_char(&b, 'x');
            buf_printf(&b, "<%*d>", (int)width, (int)width);
            snprintf(want, sizeof want, "<%*d>", (int)width, (int)width);
            assert_int_equal(b.len, fill + strlen(want));
            assert_memory_equal(b.data + fill, want, strlen(want));
            assert_int_equal(b.data[b.len], '\0');
            buf_free(&b);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_printf),
        cmocka_unit_test(test_printf_at_every_fill_level),
        cmocka_unit_test(test_limit_truncates_and_flags),
        cmocka_unit_test(test_json_string_escapes_and_repairs),
        cmocka_unit_test(test_release_hands_over_data),
        cmocka_unit_test(test_utf8_validation),
        cmocka_unit_test(test_utf8_repair_replaces_bad_bytes_and_nul),
        cmocka_unit_test(test_utf8_append_codepoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
