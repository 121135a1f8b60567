/* Tests for src/message/received.c: hops from the common MTAs' Received formats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/arena.h"
#include "message/message.h"
#include "message/received.h"

static struct msg_hop parse(struct arena *a, const char *v)
{
    struct msg_hop h;
    received_parse(a, v, strlen(v), &h);
    return h;
}

static void test_postfix_format(void **state)
{
    struct arena *a = arena_new(0);
    struct msg_hop h = parse(a, "from mx.example.org (mx.example.org [192.0.2.25]) by "
                                "mail.example.net (Postfix) with ESMTPS id 4B2C for "
                                "<d@example.net>; Tue, 10 Nov 2026 09:14:02 +0000");
    (void)state;
    assert_string_equal(h.from_helo, "mx.example.org");
    assert_string_equal(h.from_rdns, "mx.example.org");
    assert_string_equal(h.ip, "192.0.2.25");
    assert_string_equal(h.by, "mail.example.net");
    arena_free(a);
}

static void test_exim_format(void **state)
{
    struct arena *a = arena_new(0);
    struct msg_hop h = parse(a, "from [192.0.2.200] (helo=relay) by mail.example.net "
                                "with esmtp (Exim 4.96); Thu, 12 Nov 2026 22:01:10 +0000");
    (void)state;
    assert_string_equal(h.ip, "192.0.2.200");
    assert_string_equal(h.by, "mail.example.net");
    assert_null(h.from_rdns);
    arena_free(a);
}

static void test_qmail_format(void **state)
{
    struct arena *a = arena_new(0);
    struct msg_hop h = parse(a, "from unknown (HELO pc-4471) (203.0.113.77) by mail.example.net "
                                "with SMTP; Wed, 11 Nov 2026 03:12:44 +0000");
    (void)state;
    assert_string_equal(h.from_helo, "unknown");
    assert_string_equal(h.ip, "203.0.113.77");
    arena_free(a);
}

static void test_ipv6_literal(void **state)
{
    struct arena *a = arena_new(0);
    struct msg_hop h = parse(a, "from mail.example.org (mail.example.org [IPv6:2001:db8::25]) "
                                "by mx.example.net (Postfix)");
    (void)state;
    assert_string_equal(h.ip, "2001:db8::25");
    arena_free(a);
}

static void test_garbage_gives_nothing(void **state)
{
    struct arena *a = arena_new(0);
    struct msg_hop h = parse(a, "(qmail 1234 invoked by uid 89); 10 Nov 2026 09:00:00 -0000");
    struct msg_hop e = parse(a, "");
    struct msg_hop b = parse(a, "from [999.1.1.1] by");
    (void)state;
    assert_null(h.from_helo);
    assert_null(h.ip);
    assert_null(e.by);
    assert_null(b.ip);
    arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_postfix_format),   cmocka_unit_test(test_exim_format),
        cmocka_unit_test(test_qmail_format),     cmocka_unit_test(test_ipv6_literal),
        cmocka_unit_test(test_garbage_gives_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
