/*
 * Tests for src/checks/greylist.c.
 *
 * Every behaviour test runs on both kv backends, each time with two kv
 * handles on the same store standing for two nodes of a cluster: LMDB (two
 * handles on one file) and a real redis-server started on a free loopback
 * port and stopped by PID (FLUSHALL before each test). Time is the `now`
 * argument, far from the wall clock. A race test lets two threads, one per
 * node, see the same new triplets at the same moment; a Redis-only test
 * stops the server and expects mail to be accepted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checks/greylist.h"
#include "core/log.h"
#include "store/kv.h"
#include "redis_server.h"
#include "tmpdir.h"

#define DAY 86400
#define T0  ((time_t)1800000000)

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
    return test_tmpdir_make(lmdb_dir, sizeof lmdb_dir, "greylist");
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

static enum greylist_status check(struct kv *kv, const char *ip, const char *from, const char *to,
                                  time_t now, struct greylist_result *res)
{
    struct greylist_result local;
    if (res == NULL) res = &local;
    return greylist_check(NULL, kv, ip, from, to, now, res);
}

/* ---- behaviour, on both backends ---- */

static void test_first_seen_on_node1_accepted_on_node2_after_delay(void **state)
{
    struct fixture *f = *state;
    struct greylist_result r;

    assert_int_equal(check(f->node1, "198.51.100.7", "a@sender.example", "b@rcpt.example", T0, &r),
                     GREYLIST_GREYLISTED);
    assert_true(r.first_attempt);
    assert_int_equal(r.seconds_left, 300);
    assert_string_equal(r.reply, "451 4.7.1 Greylisted, try again in 300 seconds");

    /* Too early, on the other node: still greylisted, with the time left. */
    assert_int_equal(
        check(f->node2, "198.51.100.7", "a@sender.example", "b@rcpt.example", T0 + 120, &r),
        GREYLIST_GREYLISTED);
    assert_false(r.first_attempt);
    assert_int_equal(r.seconds_left, 180);
    assert_string_equal(r.reply, "451 4.7.1 Greylisted, try again in 180 seconds");

    assert_int_equal(
        check(f->node2, "198.51.100.7", "a@sender.example", "b@rcpt.example", T0 + 300, &r),
        GREYLIST_PASS);
    assert_string_equal(r.reply, "");
    /* Remembered: both nodes pass it at once from now on. */
    assert_int_equal(
        check(f->node1, "198.51.100.7", "a@sender.example", "b@rcpt.example", T0 + 301, NULL),
        GREYLIST_PASS);
    assert_int_equal(
        check(f->node2, "198.51.100.7", "a@sender.example", "b@rcpt.example", T0 + 5 * DAY, NULL),
        GREYLIST_PASS);
}

static void test_retry_after_window_starts_over(void **state)
{
    struct fixture *f = *state;
    struct greylist_result r;
    const time_t late = T0 + 4 * 3600 + 1;

    check(f->node1, "198.51.100.7", "a@s.example", "b@r.example", T0, NULL);
    assert_int_equal(check(f->node2, "198.51.100.7", "a@s.example", "b@r.example", late, &r),
                     GREYLIST_GREYLISTED);
    assert_true(r.first_attempt);
    assert_int_equal(r.seconds_left, 300);
    assert_int_equal(check(f->node1, "198.51.100.7", "a@s.example", "b@r.example", late + 299, &r),
                     GREYLIST_GREYLISTED);
    assert_int_equal(r.seconds_left, 1);
    assert_int_equal(check(f->node1, "198.51.100.7", "a@s.example", "b@r.example", late + 300, &r),
                     GREYLIST_PASS);
}

static void test_passed_triplet_expires_after_pass_ttl_unless_renewed(void **state)
{
    struct fixture *f = *state;
    const time_t passed = T0 + 300;
    struct greylist_result r;

    check(f->node1, "198.51.100.7", "a@s.example", "quiet@r.example", T0, NULL);
    assert_int_equal(check(f->node1, "198.51.100.7", "a@s.example", "quiet@r.example", passed, &r),
                     GREYLIST_PASS);
    check(f->node1, "198.51.100.7", "a@s.example", "busy@r.example", T0, NULL);
    assert_int_equal(check(f->node1, "198.51.100.7", "a@s.example", "busy@r.example", passed, &r),
                     GREYLIST_PASS);

    /* busy gets mail on day 30, which renews its record; quiet gets none. */
    assert_int_equal(
        check(f->node2, "198.51.100.7", "a@s.example", "busy@r.example", passed + 30 * DAY, &r),
        GREYLIST_PASS);
    assert_int_equal(
        check(f->node2, "198.51.100.7", "a@s.example", "busy@r.example", passed + 60 * DAY, &r),
        GREYLIST_PASS);
    assert_int_equal(check(f->node1, "198.51.100.7", "a@s.example", "quiet@r.example",
                           passed + 36 * DAY + 1, &r),
                     GREYLIST_GREYLISTED);
    assert_true(r.first_attempt);
}

static void test_triplet_is_network_sender_and_recipient(void **state)
{
    struct fixture *f = *state;
    struct greylist_result r;

    check(f->node1, "198.51.100.7", "Alice@Sender.Example", "Bob@Rcpt.Example", T0, NULL);
    /* Another address of the same /24 and other letter case: the same triplet. */
    assert_int_equal(check(f->node2, "198.51.100.200", "alice@sender.example", "bob@rcpt.example",
                           T0 + 400, NULL),
                     GREYLIST_PASS);
    /* Another /24, sender or recipient: new triplets. */
    assert_int_equal(
        check(f->node2, "198.51.101.7", "alice@sender.example", "bob@rcpt.example", T0 + 400, &r),
        GREYLIST_GREYLISTED);
    assert_true(r.first_attempt);
    assert_int_equal(
        check(f->node2, "198.51.100.7", "carol@sender.example", "bob@rcpt.example", T0 + 400, NULL),
        GREYLIST_GREYLISTED);
    assert_int_equal(check(f->node2, "198.51.100.7", "alice@sender.example", "dave@rcpt.example",
                           T0 + 400, NULL),
                     GREYLIST_GREYLISTED);

    /* The bounce sender, written "" or "<>", and IPv6 by /64. */
    check(f->node1, "2001:db8:1:2::10", "", "bob@rcpt.example", T0, NULL);
    assert_int_equal(
        check(f->node2, "2001:db8:1:2:ffff::1", "<>", "bob@rcpt.example", T0 + 300, NULL),
        GREYLIST_PASS);
    assert_int_equal(check(f->node2, "2001:db8:1:3::10", NULL, "bob@rcpt.example", T0 + 300, NULL),
                     GREYLIST_GREYLISTED);
}

static void test_long_addresses_are_hashed_into_the_key(void **state)
{
    struct fixture *f = *state;
    char from[400], to[400], to2[400];

    memset(from, 'f', sizeof from - 20);
    strcpy(from + sizeof from - 20, "@long.example");
    memset(to, 't', sizeof to - 20);
    strcpy(to + sizeof to - 20, "@long.example");
    strcpy(to2, to);
    to2[0] = 'u';
    assert_int_equal(check(f->node1, "192.0.2.1", from, to, T0, NULL), GREYLIST_GREYLISTED);
    assert_int_equal(check(f->node2, "192.0.2.1", from, to, T0 + 300, NULL), GREYLIST_PASS);
    assert_int_equal(check(f->node2, "192.0.2.1", from, to2, T0 + 300, NULL), GREYLIST_GREYLISTED);
}

static void test_custom_delay_and_window(void **state)
{
    struct fixture *f = *state;
    struct greylist_config cfg = {.delay_s = 60, .retry_window_s = 600, .pass_ttl_s = 3600};
    struct greylist_result r;

    assert_int_equal(
        greylist_check(&cfg, f->node1, "192.0.2.1", "a@x.example", "b@y.example", T0, &r),
        GREYLIST_GREYLISTED);
    assert_int_equal(r.seconds_left, 60);
    assert_int_equal(
        greylist_check(&cfg, f->node2, "192.0.2.1", "a@x.example", "b@y.example", T0 + 60, &r),
        GREYLIST_PASS);
    assert_int_equal(greylist_check(&cfg, f->node2, "192.0.2.1", "a@x.example", "b@y.example",
                                    T0 + 60 + 3601, &r),
                     GREYLIST_GREYLISTED);
}

struct racer {
    struct kv *kv;
    time_t now;
    int first_attempts[64];
    pthread_barrier_t *barrier;
};

static void *race(void *arg)
{
    struct racer *rc = arg;
    int i;
    for (i = 0; i < 64; i++) {
        char to[64];
        struct greylist_result r;
        snprintf(to, sizeof to, "user%d@race.example", i);
        pthread_barrier_wait(rc->barrier);
        greylist_check(NULL, rc->kv, "203.0.113.5", "s@race.example", to, rc->now, &r);
        rc->first_attempts[i] = r.first_attempt && r.status == GREYLIST_GREYLISTED;
    }
    return NULL;
}

static void test_two_nodes_racing_record_one_first_attempt(void **state)
{
    struct fixture *f = *state;
    pthread_barrier_t barrier;
    struct racer a = {.kv = f->node1, .now = T0, .barrier = &barrier};
    struct racer b = {.kv = f->node2, .now = T0 + 10, .barrier = &barrier};
    pthread_t ta, tb;
    int i;

    pthread_barrier_init(&barrier, NULL, 2);
    pthread_create(&ta, NULL, race, &a);
    pthread_create(&tb, NULL, race, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&barrier);
    for (i = 0; i < 64; i++) {
        char to[64];
        struct greylist_result r;
        time_t first = a.first_attempts[i] ? T0 : T0 + 10;
        assert_int_equal(a.first_attempts[i] + b.first_attempts[i], 1);
        /* The winner's time is the one stored: the triplet passes exactly 300 s after it. */
        snprintf(to, sizeof to, "user%d@race.example", i);
        greylist_check(NULL, f->node1, "203.0.113.5", "s@race.example", to, first + 299, &r);
        assert_int_equal(r.status, GREYLIST_GREYLISTED);
        assert_int_equal(r.seconds_left, 1);
        assert_int_equal(check(f->node2, "203.0.113.5", "s@race.example", to, first + 300, NULL),
                         GREYLIST_PASS);
    }
}

#define GREYLIST_SHARED_TESTS(setup, teardown)                                                     \
    cmocka_unit_test_setup_teardown(test_first_seen_on_node1_accepted_on_node2_after_delay, setup, \
                                    teardown),                                                     \
        cmocka_unit_test_setup_teardown(test_retry_after_window_starts_over, setup, teardown),     \
        cmocka_unit_test_setup_teardown(test_passed_triplet_expires_after_pass_ttl_unless_renewed, \
                                        setup, teardown),                                          \
        cmocka_unit_test_setup_teardown(test_triplet_is_network_sender_and_recipient, setup,       \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_long_addresses_are_hashed_into_the_key, setup,        \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_custom_delay_and_window, setup, teardown),            \
        cmocka_unit_test_setup_teardown(test_two_nodes_racing_record_one_first_attempt, setup,     \
                                        teardown)

/* ---- failures ---- */

static void test_redis_down_accepts_and_recovers(void **state)
{
    struct fixture *f = *state;
    struct greylist_result r;

    test_redis_stop(&redis_srv);
    assert_int_equal(check(f->node1, "198.51.100.7", "a@s.example", "b@r.example", T0, &r),
                     GREYLIST_ERROR);
    assert_string_equal(r.reply, "");
    assert_int_equal(test_redis_start(&redis_srv), 0);
    test_sleep_ms(1100); /* kv reconnects at most once per second */
    assert_int_equal(check(f->node1, "198.51.100.7", "a@s.example", "b@r.example", T0, &r),
                     GREYLIST_GREYLISTED);
}

static void test_no_store_and_bad_input_accept(void **state)
{
    struct greylist_result r;
    (void)state;
    assert_int_equal(check(NULL, "198.51.100.7", "a@s.example", "b@r.example", T0, &r),
                     GREYLIST_ERROR);
    assert_int_equal(check(NULL, "not-an-ip", "a@s.example", "b@r.example", T0, &r),
                     GREYLIST_ERROR);
    assert_int_equal(check(NULL, "198.51.100.7", "a@s.example", "", T0, &r), GREYLIST_ERROR);
}

static void test_client_network_text(void **state)
{
    char net[64];
    (void)state;
    assert_int_equal(greylist_client_network("198.51.100.77", net, sizeof net), 0);
    assert_string_equal(net, "198.51.100.0/24");
    assert_int_equal(greylist_client_network("2001:db8:1:2:3:4:5:6", net, sizeof net), 0);
    assert_string_equal(net, "2001:db8:1:2::/64");
    assert_int_equal(greylist_client_network("::ffff:192.0.2.9", net, sizeof net), 0);
    assert_string_equal(net, "192.0.2.0/24");
    assert_int_equal(greylist_client_network("192.0.2", net, sizeof net), -1);
    assert_int_equal(greylist_client_network("198.51.100.77", net, 8), -1);
}

int main(void)
{
    const struct CMUnitTest lmdb_tests[] = {GREYLIST_SHARED_TESTS(lmdb_setup, teardown)};
    const struct CMUnitTest redis_tests[] = {
        GREYLIST_SHARED_TESTS(redis_setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_down_accepts_and_recovers, redis_setup,
                                        teardown),
    };
    const struct CMUnitTest plain_tests[] = {
        cmocka_unit_test(test_no_store_and_bad_input_accept),
        cmocka_unit_test(test_client_network_text),
    };
    int failed = 0;

    log_set_level(LOG_LEVEL_ERROR); /* failures are logged as warnings by design */
    failed += cmocka_run_group_tests_name("greylist_lmdb", lmdb_tests, lmdb_group_setup,
                                          lmdb_group_teardown);
    failed += cmocka_run_group_tests_name("greylist_redis", redis_tests, redis_group_setup,
                                          redis_group_teardown);
    failed += cmocka_run_group_tests_name("greylist", plain_tests, NULL, NULL);
    return failed ? 1 : 0;
}
