/* Tests for src/message/decode.c: base64 and quoted-printable with damage reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/buf.h"
#include "message/decode.h"

static void test_base64_decodes_across_lines(void **state)
{
    struct buf b = {0};
    const char *in = "SGVsbG8s\r\nIHdvcmxk\r\nIQ==\r\n";
    (void)state;
    assert_int_equal(decode_base64(&b, in, strlen(in), 1000), 0);
    assert_string_equal(b.data, "Hello, world!");
    buf_free(&b);
}

static void test_base64_bad_character_is_flagged(void **state)
{
    struct buf b = {0};
    const char *in = "SGVs*bG8=";
    (void)state;
    assert_true(decode_base64(&b, in, strlen(in), 1000) & DECODE_F_BAD);
    assert_string_equal(b.data, "Hello");
    buf_free(&b);
}

static void test_base64_truncated_quantum_is_flagged(void **state)
{
    struct buf b = {0};
    const char *in = "SGVsbG8sI";
    (void)state;
    assert_true(decode_base64(&b, in, strlen(in), 1000) & DECODE_F_BAD);
    buf_free(&b);
}

static void test_base64_data_after_padding_is_flagged(void **state)
{
    struct buf b = {0};
    const char *in = "SGk=SGk=";
    (void)state;
    assert_true(decode_base64(&b, in, strlen(in), 1000) & DECODE_F_BAD);
    assert_string_equal(b.data, "HiHi");
    buf_free(&b);
}

static void test_base64_stops_at_max_out(void **state)
{
    struct buf b = {0};
    char in[4000];
    size_t i;
    (void)state;
    for (i = 0; i < sizeof in; i++) in[i] = "QUFB"[i % 4];
    assert_true(decode_base64(&b, in, sizeof in, 100) & DECODE_F_TRUNCATED);
    assert_int_equal(b.len, 100);
    buf_free(&b);
}

static void test_base64_size_counts_without_decoding(void **state)
{
    unsigned flags = 0;
    const char *in = "SGVsbG8s\nIHdvcmxk\nIQ==\n";
    (void)state;
    assert_int_equal(decode_base64_size(in, strlen(in), &flags), 13);
    assert_int_equal(flags, 0);
}

static void test_qp_soft_breaks_and_escapes(void **state)
{
    struct buf b = {0};
    const char *in = "caf=C3=A9 au l=\r\nait=20\nnext";
    (void)state;
    assert_int_equal(decode_qp(&b, in, strlen(in), 1000), 0);
    assert_string_equal(b.data, "caf\xC3\xA9 au lait \nnext");
    buf_free(&b);
}

static void test_qp_bad_escape_is_kept_and_flagged(void **state)
{
    struct buf b = {0};
    const char *in = "100=ZZ off";
    (void)state;
    assert_true(decode_qp(&b, in, strlen(in), 1000) & DECODE_F_BAD);
    assert_string_equal(b.data, "100=ZZ off");
    buf_free(&b);
}

static void test_qp_truncated_escape_at_end(void **state)
{
    struct buf b = {0};
    const char *in = "abc=4";
    (void)state;
    assert_true(decode_qp(&b, in, strlen(in), 1000) & DECODE_F_BAD);
    assert_string_equal(b.data, "abc=4");
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_decodes_across_lines),
        cmocka_unit_test(test_base64_bad_character_is_flagged),
        cmocka_unit_test(test_base64_truncated_quantum_is_flagged),
        cmocka_unit_test(test_base64_data_after_padding_is_flagged),
        cmocka_unit_test(test_base64_stops_at_max_out),
        cmocka_unit_test(test_base64_size_counts_without_decoding),
        cmocka_unit_test(test_qp_soft_breaks_and_escapes),
        cmocka_unit_test(test_qp_bad_escape_is_kept_and_flagged),
        cmocka_unit_test(test_qp_truncated_escape_at_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
