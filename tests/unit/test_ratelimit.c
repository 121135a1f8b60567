/*
 * Tests for src/checks/ratelimit.c.
 *
 * The behaviour tests run on both kv backends, each with two kv handles on
 * one store standing for two cluster nodes: LMDB (two handles on one file)
 * and a real redis-server on a free loopback port, stopped by PID (FLUSHALL
 * before each test). Time is the `now` argument, aligned to window starts
 * far from the wall clock. A Redis-only test stops the server: events are
 * allowed while it is down.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checks/ratelimit.h"
#include "core/log.h"
#include "store/kv.h"
#include "redis_server.h"
#include "tmpdir.h"

#define DAY 86400
#define T0  ((time_t)1800000000 / 86400 * 86400) /* a window start for every window here */

static struct test_redis redis_srv;
static char lmdb_dir[256];
static int test_counter;

struct fixture {
    char uri[400];
    struct kv *node1, *node2;
};

/* ---- fixtures ---- */

static int open_nodes(struct fixture *f)
{
    if (kv_open(f->uri, &f->node1) != KV_OK || kv_open(f->uri, &f->node2) != KV_OK) {
        fprintf(stderr, "kv_open(%s): %s\n", f->uri, err_msg());
        return -1;
    }
    return 0;
}

static int lmdb_group_setup(void **state)
{
    (void)state;
    return test_tmpdir_make(lmdb_dir, sizeof lmdb_dir, "ratelimit");
}

static int lmdb_group_teardown(void **state)
{
    (void)state;
    return test_tmpdir_remove(lmdb_dir);
}

static int lmdb_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->uri, sizeof f->uri, "lmdb:%s/t%d.lmdb", lmdb_dir, ++test_counter);
    *state = f;
    return open_nodes(f);
}

static int redis_group_setup(void **state)
{
    (void)state;
    return test_redis_open(&redis_srv);
}

static int redis_group_teardown(void **state)
{
    (void)state;
    test_redis_close(&redis_srv);
    return 0;
}

static int redis_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->uri, sizeof f->uri, "redis://127.0.0.1:%d", redis_srv.port);
    *state = f;
    if (redis_srv.pid <= 0 && test_redis_start(&redis_srv) != 0) return -1;
    if (test_redis_flushall(&redis_srv) != 0) return -1;
    return open_nodes(f);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kv_close(f->node1);
    kv_close(f->node2);
    free(f);
    return 0;
}

/* ---- helpers ---- */

static struct ratelimit_config fixed(unsigned ip, unsigned domain, unsigned rcpt, unsigned window_s)
{
    struct ratelimit_config c;
    memset(&c, 0, sizeof c);
    c.rules[RATELIMIT_CLIENT_IP] = (struct ratelimit_rule){ip, window_s};
    c.rules[RATELIMIT_SENDER_DOMAIN] = (struct ratelimit_rule){domain, window_s};
    c.rules[RATELIMIT_RECIPIENT] = (struct ratelimit_rule){rcpt, window_s};
    c.mode = RATELIMIT_FIXED;
    return c;
}

static enum ratelimit_status hit(const struct ratelimit_config *c, struct kv *kv,
                                 enum ratelimit_kind kind, const char *value, time_t now)
{
    struct ratelimit_result r;
    return ratelimit_check(c, kv, kind, value, now, &r);
}

/* ---- behaviour, on both backends ---- */

static void test_limit_is_counted_across_two_nodes(void **state)
{
    struct fixture *f = *state;
    struct ratelimit_config c = fixed(5, 0, 0, 60);
    struct ratelimit_result r;
    int i;

    for (i = 0; i < 3; i++)
        assert_int_equal(hit(&c, f->node1, RATELIMIT_CLIENT_IP, "198.51.100.7", T0 + i),
                         RATELIMIT_ALLOW);
    for (i = 0; i < 2; i++) {
        assert_int_equal(
            ratelimit_check(&c, f->node2, RATELIMIT_CLIENT_IP, "198.51.100.7", T0 + 10 + i, &r),
            RATELIMIT_ALLOW);
        assert_int_equal(r.count, 3 + i);
    }
    assert_int_equal(
        ratelimit_check(&c, f->node2, RATELIMIT_CLIENT_IP, "198.51.100.7", T0 + 20, &r),
        RATELIMIT_EXCEEDED);
    assert_int_equal(r.count, 5);
    assert_int_equal(r.limit, 5);
    assert_int_equal(r.window_s, 60);
    assert_string_equal(r.reply, "451 4.7.1 Rate limit exceeded for your address, try again later");
    assert_int_equal(hit(&c, f->node1, RATELIMIT_CLIENT_IP, "198.51.100.7", T0 + 59),
                     RATELIMIT_EXCEEDED);
    /* Another address is not affected; the next fixed window starts from zero. */
    assert_int_equal(hit(&c, f->node1, RATELIMIT_CLIENT_IP, "198.51.100.8", T0 + 30),
                     RATELIMIT_ALLOW);
    assert_int_equal(
        ratelimit_check(&c, f->node1, RATELIMIT_CLIENT_IP, "198.51.100.7", T0 + 60, &r),
        RATELIMIT_ALLOW);
    assert_int_equal(r.count, 0);
}

static void test_kinds_have_independent_limits(void **state)
{
    struct fixture *f = *state;
    struct ratelimit_config c = fixed(100, 3, 2, 3600);
    struct ratelimit_result r;

    assert_int_equal(hit(&c, f->node1, RATELIMIT_RECIPIENT, "Bob@Rcpt.Example", T0),
                     RATELIMIT_ALLOW);
    assert_int_equal(hit(&c, f->node2, RATELIMIT_RECIPIENT, "bob@rcpt.example", T0),
                     RATELIMIT_ALLOW);
    assert_int_equal(ratelimit_check(&c, f->node1, RATELIMIT_RECIPIENT, "bob@rcpt.example", T0, &r),
                     RATELIMIT_EXCEEDED);
    assert_string_equal(r.reply,
                        "451 4.7.1 Rate limit exceeded for this recipient, try again later");
    /* The sender domain counts every address of the domain, and nothing else. */
    assert_int_equal(hit(&c, f->node1, RATELIMIT_SENDER_DOMAIN, "a@bulk.example", T0),
                     RATELIMIT_ALLOW);
    assert_int_equal(hit(&c, f->node2, RATELIMIT_SENDER_DOMAIN, "b@BULK.example", T0),
                     RATELIMIT_ALLOW);
    assert_int_equal(hit(&c, f->node1, RATELIMIT_SENDER_DOMAIN, "bulk.example", T0),
                     RATELIMIT_ALLOW);
    assert_int_equal(
        ratelimit_check(&c, f->node2, RATELIMIT_SENDER_DOMAIN, "c@bulk.example", T0, &r),
        RATELIMIT_EXCEEDED);
    assert_string_equal(r.reply,
                        "451 4.7.1 Rate limit exceeded for the sender domain, try again later");
    assert_int_equal(hit(&c, f->node2, RATELIMIT_SENDER_DOMAIN, "c@other.example", T0),
                     RATELIMIT_ALLOW);
    /* The client IP has its own budget, untouched by the above. */
    assert_int_equal(ratelimit_check(&c, f->node1, RATELIMIT_CLIENT_IP, "198.51.100.7", T0, &r),
                     RATELIMIT_ALLOW);
    assert_int_equal(r.count, 0);
    /* A bounce has no sender domain; a disabled kind counts nothing. */
    assert_int_equal(hit(&c, f->node1, RATELIMIT_SENDER_DOMAIN, "", T0), RATELIMIT_SKIPPED);
    assert_int_equal(hit(&c, f->node1, RATELIMIT_SENDER_DOMAIN, "<>", T0), RATELIMIT_SKIPPED);
    c.rules[RATELIMIT_RECIPIENT].limit = 0;
    assert_int_equal(hit(&c, f->node1, RATELIMIT_RECIPIENT, "bob@rcpt.example", T0),
                     RATELIMIT_SKIPPED);
}

static void test_sliding_window_weighs_the_previous_window(void **state)
{
    struct fixture *f = *state;
    struct ratelimit_config c = fixed(10, 0, 0, 100);
    struct ratelimit_result r;
    int i;

    c.mode = RATELIMIT_SLIDING;
    for (i = 0; i < 10; i++)
        assert_int_equal(
            hit(&c, i % 2 ? f->node1 : f->node2, RATELIMIT_CLIENT_IP, "192.0.2.1", T0 + 90),
            RATELIMIT_ALLOW);
    assert_int_equal(hit(&c, f->node1, RATELIMIT_CLIENT_IP, "192.0.2.1", T0 + 95),
                     RATELIMIT_EXCEEDED);
    /* 5 s into the next window, 95 % of the previous one still counts: 9.5, rounded down. */
    assert_int_equal(ratelimit_check(&c, f->node2, RATELIMIT_CLIENT_IP, "192.0.2.1", T0 + 105, &r),
                     RATELIMIT_ALLOW);
    assert_int_equal(r.count, 9);
    /* 1 + 10 * 0.94: a burst across the boundary is not let through. */
    assert_int_equal(ratelimit_check(&c, f->node1, RATELIMIT_CLIENT_IP, "192.0.2.1", T0 + 106, &r),
                     RATELIMIT_EXCEEDED);
    assert_int_equal(r.count, 10);
    /* Half-way, half of the previous window counts: 1 + 5, so four more are allowed. */
    for (i = 0; i < 4; i++) {
        assert_int_equal(ratelimit_check(&c, i % 2 ? f->node1 : f->node2, RATELIMIT_CLIENT_IP,
                                         "192.0.2.1", T0 + 150, &r),
                         RATELIMIT_ALLOW);
        assert_int_equal(r.count, 6 + i);
    }
    assert_int_equal(hit(&c, f->node1, RATELIMIT_CLIENT_IP, "192.0.2.1", T0 + 150),
                     RATELIMIT_EXCEEDED);
    /* Two windows later nothing is left. */
    assert_int_equal(ratelimit_check(&c, f->node1, RATELIMIT_CLIENT_IP, "192.0.2.1", T0 + 300, &r),
                     RATELIMIT_ALLOW);
    assert_int_equal(r.count, 0);
}

static void test_refused_events_are_not_counted_and_ipv6_counts_by_64(void **state)
{
    struct fixture *f = *state;
    struct ratelimit_config c = fixed(3, 0, 0, 100);
    struct ratelimit_result r;
    int i;

    c.mode = RATELIMIT_SLIDING;
    for (i = 0; i < 3; i++)
        assert_int_equal(hit(&c, f->node1, RATELIMIT_CLIENT_IP, "2001:db8:5:6::1", T0 + 50),
                         RATELIMIT_ALLOW);
    /* Another address of the same /64 shares the budget. */
    for (i = 0; i < 20; i++)
        assert_int_equal(hit(&c, f->node2, RATELIMIT_CLIENT_IP, "2001:db8:5:6:ffff::2", T0 + 60),
                         RATELIMIT_EXCEEDED);
    assert_int_equal(hit(&c, f->node2, RATELIMIT_CLIENT_IP, "2001:db8:5:7::1", T0 + 60),
                     RATELIMIT_ALLOW);
    /* The twenty refusals did not count: half-way through the next window 1.5 is left. */
    assert_int_equal(
        ratelimit_check(&c, f->node1, RATELIMIT_CLIENT_IP, "2001:db8:5:6::1", T0 + 150, &r),
        RATELIMIT_ALLOW);
    assert_int_equal(r.count, 1);
}

#define RATELIMIT_SHARED_TESTS(setup, teardown)                                                    \
    cmocka_unit_test_setup_teardown(test_limit_is_counted_across_two_nodes, setup, teardown),      \
        cmocka_unit_test_setup_teardown(test_kinds_have_independent_limits, setup, teardown),      \
        cmocka_unit_test_setup_teardown(test_sliding_window_weighs_the_previous_window, setup,     \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_refused_events_are_not_counted_and_ipv6_counts_by_64, \
                                        setup, teardown)

/* ---- failures and parsing ---- */

static void test_redis_down_allows(void **state)
{
    struct fixture *f = *state;
    struct ratelimit_config c = fixed(1, 1, 1, 60);

    assert_int_equal(hit(&c, f->node1, RATELIMIT_CLIENT_IP, "198.51.100.7", T0), RATELIMIT_ALLOW);
    assert_int_equal(hit(&c, f->node1, RATELIMIT_CLIENT_IP, "198.51.100.7", T0),
                     RATELIMIT_EXCEEDED);
    test_redis_stop(&redis_srv);
    assert_int_equal(hit(&c, f->node1, RATELIMIT_CLIENT_IP, "198.51.100.7", T0), RATELIMIT_ERROR);
    assert_int_equal(hit(&c, f->node2, RATELIMIT_RECIPIENT, "a@b.example", T0), RATELIMIT_ERROR);
    assert_int_equal(test_redis_start(&redis_srv), 0);
}

static void test_no_store_and_bad_values_allow(void **state)
{
    struct ratelimit_config c = fixed(1, 1, 1, 60);
    (void)state;
    assert_int_equal(hit(&c, NULL, RATELIMIT_CLIENT_IP, "198.51.100.7", T0), RATELIMIT_ERROR);
    assert_int_equal(hit(&c, NULL, RATELIMIT_CLIENT_IP, "nonsense", T0), RATELIMIT_ERROR);
    assert_int_equal(hit(&c, NULL, RATELIMIT_RECIPIENT, "", T0), RATELIMIT_ERROR);
}

static void test_defaults_and_rule_parsing(void **state)
{
    struct ratelimit_config d = ratelimit_config_default();
    struct ratelimit_rule r;
    (void)state;
    assert_int_equal(d.rules[RATELIMIT_CLIENT_IP].limit, 600);
    assert_int_equal(d.rules[RATELIMIT_SENDER_DOMAIN].limit, 2000);
    assert_int_equal(d.rules[RATELIMIT_RECIPIENT].limit, 500);
    assert_int_equal(d.rules[RATELIMIT_RECIPIENT].window_s, 3600);
    assert_int_equal(d.mode, RATELIMIT_SLIDING);

    assert_int_equal(ratelimit_rule_parse("600/1h", &r), 0);
    assert_int_equal(r.limit, 600);
    assert_int_equal(r.window_s, 3600);
    assert_int_equal(ratelimit_rule_parse("100/90s", &r), 0);
    assert_int_equal(r.window_s, 90);
    assert_int_equal(ratelimit_rule_parse("2000/h", &r), 0);
    assert_int_equal(r.window_s, 3600);
    assert_int_equal(ratelimit_rule_parse(" 5/2d ", &r), 0);
    assert_int_equal(r.window_s, 2 * 86400);
    assert_int_equal(ratelimit_rule_parse("30/15m", &r), 0);
    assert_int_equal(r.window_s, 900);
    assert_int_equal(ratelimit_rule_parse("off", &r), 0);
    assert_int_equal(r.limit, 0);
    assert_int_equal(ratelimit_rule_parse("600", &r), -1);
    assert_int_equal(ratelimit_rule_parse("600/0h", &r), -1);
    assert_int_equal(ratelimit_rule_parse("600/1w", &r), -1);
    assert_int_equal(ratelimit_rule_parse("x/1h", &r), -1);
    assert_int_equal(ratelimit_rule_parse(NULL, &r), -1);
    assert_string_equal(ratelimit_kind_name(RATELIMIT_SENDER_DOMAIN), "sender_domain");
}

int main(void)
{
    const struct CMUnitTest lmdb_tests[] = {RATELIMIT_SHARED_TESTS(lmdb_setup, teardown)};
    const struct CMUnitTest redis_tests[] = {
        RATELIMIT_SHARED_TESTS(redis_setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_down_allows, redis_setup, teardown),
    };
    const struct CMUnitTest plain_tests[] = {
        cmocka_unit_test(test_no_store_and_bad_values_allow),
        cmocka_unit_test(test_defaults_and_rule_parsing),
    };
    int failed = 0;

    log_set_level(LOG_LEVEL_ERROR); /* failures are logged as warnings by design */
    failed += cmocka_run_group_tests_name("ratelimit_lmdb", lmdb_tests, lmdb_group_setup,
                                          lmdb_group_teardown);
    failed += cmocka_run_group_tests_name("ratelimit_redis", redis_tests, redis_group_setup,
                                          redis_group_teardown);
    failed += cmocka_run_group_tests_name("ratelimit", plain_tests, NULL, NULL);
    return failed ? 1 : 0;
}
