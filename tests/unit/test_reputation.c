/*
 * Tests for src/checks/reputation.c.
 *
 * One suite of behaviour tests runs twice, once per kv backend: LMDB on a
 * file in a temporary directory, and Redis on a real redis-server that this
 * program starts on a free loopback port and stops by pid at the end (each
 * Redis test starts from FLUSHALL). Time is the `now` argument, so the tests
 * move through the 24-hour window without waiting; they use hours far from
 * the real clock, which the 25-hour TTL of the buckets (real time) does not
 * touch. Redis-only tests follow: a stopped server gives
 * REPUTATION_UNAVAILABLE, and a check is one round trip, counted by a small
 * TCP relay between the kv handle and the server that counts how often the
 * client starts talking again after the server answered. Then the entity
 * extraction from parsed messages, which needs no store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <hiredis.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checks/reputation.h"
#include "checks/symbols.h"
#include "core/arena.h"
#include "core/log.h"
#include "message/message.h"
#include "scan/result.h"
#include "store/kv.h"
#include "redis_server.h"
#include "tmpdir.h"

#define HOUR 3600
/* 2027-01-15 08:10:00 UTC: ten minutes into an hour, far from the test machine's clock. */
#define T0 ((time_t)1800000000 / HOUR * HOUR + 600)

static struct symbol_registry *reg;
static struct reputation_ids ids;
static struct test_redis redis_srv;
static char lmdb_dir[256];
static int test_counter;

/* ---- fixtures ---- */

struct fixture {
    char uri[400];
    char path[300];
    struct kv *kv;
    struct arena *arena;
};

static int open_fixture(struct fixture *f)
{
    int rc = kv_open(f->uri, &f->kv);
    if (rc != KV_OK) {
        fprintf(stderr, "kv_open(%s): %d %s\n", f->uri, rc, err_msg());
        return -1;
    }
    f->arena = arena_new(0);
    return 0;
}

static int lmdb_group_setup(void **state)
{
    (void)state;
    return test_tmpdir_make(lmdb_dir, sizeof lmdb_dir, "reputation");
}

static int lmdb_group_teardown(void **state)
{
    (void)state;
    return test_tmpdir_remove(lmdb_dir);
}

static int lmdb_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s/t%d.lmdb", lmdb_dir, ++test_counter);
    snprintf(f->uri, sizeof f->uri, "lmdb:%s", f->path);
    *state = f;
    return open_fixture(f);
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
    return open_fixture(f);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kv_close(f->kv);
    arena_free(f->arena);
    free(f);
    return 0;
}

/* ---- helpers ---- */

static void push(struct reputation_entities *e, enum reputation_kind kind, const char *value)
{
    assert_true(e->n < REPUTATION_MAX_ENTITIES);
    e->e[e->n].kind = kind;
    snprintf(e->e[e->n].value, sizeof e->e[e->n].value, "%s", value);
    e->n++;
}

/* Entities of a message from ip (may be NULL) with sender domain (may be NULL) and one URL
 * domain (may be NULL). */
static struct reputation_entities ents(const char *ip, const char *domain, const char *url)
{
    struct reputation_entities e = {.n = 0};
    if (ip) assert_int_equal(reputation_entities_add_client_ip(&e, ip), 2);
    if (domain) push(&e, REPUTATION_KIND_DOMAIN, domain);
    if (url) push(&e, REPUTATION_KIND_URL, url);
    return e;
}

static void record_n(struct fixture *f, const struct reputation_entities *e,
                     enum reputation_verdict v, unsigned n, time_t now)
{
    unsigned i;
    for (i = 0; i < n; i++) {
        int rc = reputation_record(f->kv, e, v, now, NULL, NULL);
        if (rc != KV_OK) fail_msg("reputation_record: rc=%d %s", rc, err_msg());
    }
}

/* A fresh result in the fixture's arena, filled by one check. */
static struct scan_result *check(struct fixture *f, const struct reputation_entities *e, time_t now,
                                 reputation_allow_fn allow, void *ctx)
{
    struct scan_result *r = arena_calloc(f->arena, 1, sizeof *r);
    int rc;
    result_init(r, f->arena, reg);
    rc = reputation_check(&ids, NULL, f->kv, e, now, allow, ctx, r);
    if (rc != KV_OK) fail_msg("reputation_check: rc=%d %s", rc, err_msg());
    return r;
}

static const struct symbol_hit *hit(const struct scan_result *r, const char *name)
{
    int id = symbols_lookup(reg, name);
    assert_true(id >= 0);
    return result_find(r, id);
}

/* The score of name in r; 0 when it did not fire. */
static double score(const struct scan_result *r, const char *name)
{
    const struct symbol_hit *h = hit(r, name);
    return h ? h->score : 0.0;
}

/* True if some option of name's hit equals want. */
static bool has_option(const struct scan_result *r, const char *name, const char *want)
{
    const struct symbol_hit *h = hit(r, name);
    size_t i;
    for (i = 0; h && i < h->n_options; i++)
        if (strcmp(h->options[i], want) == 0) return true;
    return false;
}

static size_t reputation_hits(const struct scan_result *r)
{
    static const char *const names[] = {"IP_REPUTATION_SPAM",     "IP_REPUTATION_HAM",
                                        "DOMAIN_REPUTATION_SPAM", "DOMAIN_REPUTATION_HAM",
                                        "URL_REPUTATION_SPAM",    "URL_REPUTATION_HAM",
                                        "REPUTATION_UNAVAILABLE"};
    size_t i, n = 0;
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        n += hit(r, names[i]) != NULL;
    return n;
}

/* The DOMAIN_REPUTATION_* score of a new domain after spam and ham verdicts. */
static double domain_score_after(struct fixture *f, unsigned spam, unsigned ham)
{
    char domain[64];
    struct reputation_entities e;
    struct scan_result *r;
    snprintf(domain, sizeof domain, "d-%u-%u.example", spam, ham);
    e = ents(NULL, domain, NULL);
    record_n(f, &e, REPUTATION_VERDICT_SPAM, spam, T0);
    record_n(f, &e, REPUTATION_VERDICT_HAM, ham, T0);
    r = check(f, &e, T0, NULL, NULL);
    return score(r, "DOMAIN_REPUTATION_SPAM") + score(r, "DOMAIN_REPUTATION_HAM");
}

/* An allow list for the callback; counts its calls. */
struct allow_list {
    enum reputation_kind kind[4];
    const char *value[4];
    size_t n;
    unsigned calls;
};

static bool allow_cb(void *ctx, enum reputation_kind kind, const char *value)
{
    struct allow_list *a = ctx;
    size_t i;
    a->calls++;
    for (i = 0; i < a->n; i++)
        if (a->kind[i] == kind && strcmp(a->value[i], value) == 0) return true;
    return false;
}

/* ---- the shared suite ---- */

static void test_counts_accumulate_across_records_and_hours(void **state)
{
    struct fixture *f = *state;
    struct reputation_entities e = ents("198.51.100.7", "spammer.example", "shop.example");
    struct scan_result *r;

    record_n(f, &e, REPUTATION_VERDICT_SPAM, 3, T0 - 5 * HOUR);
    record_n(f, &e, REPUTATION_VERDICT_SPAM, 4, T0);
    record_n(f, &e, REPUTATION_VERDICT_HAM, 1, T0 - HOUR);
    r = check(f, &e, T0, NULL, NULL);
    assert_true(has_option(r, "IP_REPUTATION_SPAM", "198.51.100.7 spam=7 ham=1 window=24h"));
    assert_true(has_option(r, "DOMAIN_REPUTATION_SPAM", "spammer.example spam=7 ham=1 window=24h"));
    assert_true(has_option(r, "URL_REPUTATION_SPAM", "shop.example spam=7 ham=1 window=24h"));
    assert_null(hit(r, "IP_REPUTATION_HAM"));
}

static void test_kinds_are_counted_apart(void **state)
{
    struct fixture *f = *state;
    /* The same name as sender domain and as URL domain are two entities. */
    struct reputation_entities as_sender = ents(NULL, "both.example", NULL);
    struct reputation_entities as_url = ents(NULL, NULL, "both.example");
    struct scan_result *r;

    record_n(f, &as_sender, REPUTATION_VERDICT_SPAM, 10, T0);
    r = check(f, &as_url, T0, NULL, NULL);
    assert_int_equal(reputation_hits(r), 0);
    r = check(f, &as_sender, T0, NULL, NULL);
    assert_non_null(hit(r, "DOMAIN_REPUTATION_SPAM"));
}

static void test_no_symbol_below_minimum_volume(void **state)
{
    struct fixture *f = *state;
    struct reputation_entities e = ents("198.51.100.8", "few.example", "few-url.example");
    struct scan_result *r;
    unsigned min = reputation_config_default().min_volume;

    record_n(f, &e, REPUTATION_VERDICT_SPAM, min - 1, T0);
    r = check(f, &e, T0, NULL, NULL);
    assert_int_equal(reputation_hits(r), 0);
    record_n(f, &e, REPUTATION_VERDICT_SPAM, 1, T0);
    r = check(f, &e, T0, NULL, NULL);
    assert_true(score(r, "IP_REPUTATION_SPAM") > 0.0);
    assert_true(score(r, "DOMAIN_REPUTATION_SPAM") > 0.0);
    assert_true(score(r, "URL_REPUTATION_SPAM") > 0.0);
}

static void test_weight_grows_with_volume(void **state)
{
    struct fixture *f = *state;
    static const unsigned volumes[] = {5, 10, 20, 50, 100, 200};
    double prev = 0.0, s, first = 0.0;
    size_t i;

    for (i = 0; i < sizeof volumes / sizeof volumes[0]; i++) {
        s = domain_score_after(f, volumes[i], 0);
        if (!(s > prev)) fail_msg("spam=%u scored %.3f, not above %.3f", volumes[i], s, prev);
        if (i == 0) first = s;
        prev = s;
    }
    /* Five unanimous verdicts are little evidence: a quarter of the maximum at most. */
    assert_true(first < 2.5 / 4);
    assert_true(prev <= 2.5); /* the registered score is the ceiling */
    assert_true(prev > 2.3);
    /* Good reputation grows too, and stays modest. */
    assert_true(domain_score_after(f, 0, 5) < 0.0);
    assert_true(domain_score_after(f, 0, 20) < domain_score_after(f, 0, 6));
    s = domain_score_after(f, 0, 300);
    assert_true(s >= -1.0 && s < -0.9);
}

static void test_weight_grows_with_spam_ratio(void **state)
{
    struct fixture *f = *state;
    double s12 = domain_score_after(f, 12, 8); /* r = 13/22, within the undecided band */
    double s14 = domain_score_after(f, 14, 6);
    double s16 = domain_score_after(f, 16, 4);
    double s18 = domain_score_after(f, 18, 2);
    double s20 = domain_score_after(f, 20, 0);
    double h14 = domain_score_after(f, 6, 14);
    double h20 = domain_score_after(f, 0, 20);

    assert_true(s12 == 0.0);
    assert_true(0.0 < s14 && s14 < s16 && s16 < s18 && s18 < s20);
    assert_true(0.0 > h14 && h14 > h20);
}

static void test_window_slides_past_24_hours(void **state)
{
    struct fixture *f = *state;
    struct reputation_entities e = ents("198.51.100.9", NULL, NULL);
    time_t hour_start = T0 / HOUR * HOUR;
    struct scan_result *r;

    record_n(f, &e, REPUTATION_VERDICT_SPAM, 10, T0);
    record_n(f, &e, REPUTATION_VERDICT_HAM, 5, T0 + 12 * HOUR);
    r = check(f, &e, T0 + 11 * HOUR, NULL, NULL);
    assert_true(has_option(r, "IP_REPUTATION_SPAM", "198.51.100.9 spam=10 ham=0 window=24h"));
    /* The last second of the 24th hour still sees the spam... */
    r = check(f, &e, hour_start + 24 * HOUR - 1, NULL, NULL);
    assert_true(has_option(r, "IP_REPUTATION_SPAM", "198.51.100.9 spam=10 ham=5 window=24h"));
    /* ...the next hour does not, and only the later ham remains. */
    r = check(f, &e, hour_start + 24 * HOUR, NULL, NULL);
    assert_true(has_option(r, "IP_REPUTATION_HAM", "198.51.100.9 spam=0 ham=5 window=24h"));
    assert_null(hit(r, "IP_REPUTATION_SPAM"));
    r = check(f, &e, T0 + 36 * HOUR, NULL, NULL);
    assert_int_equal(reputation_hits(r), 0);
    /* Verdicts in the future of a check do not count either. */
    r = check(f, &e, T0 - HOUR, NULL, NULL);
    assert_int_equal(reputation_hits(r), 0);
}

static void test_allowed_entity_never_gets_spam_symbol(void **state)
{
    struct fixture *f = *state;
    struct reputation_entities e = ents("198.51.100.10", "partner.example", "partner-url.example");
    struct allow_list allow = {.kind = {REPUTATION_KIND_DOMAIN, REPUTATION_KIND_URL},
                               .value = {"partner.example", "partner-url.example"},
                               .n = 2};
    struct scan_result *r;

    record_n(f, &e, REPUTATION_VERDICT_SPAM, 30, T0);
    r = check(f, &e, T0, allow_cb, &allow);
    assert_true(allow.calls > 0);
    assert_null(hit(r, "DOMAIN_REPUTATION_SPAM"));
    assert_null(hit(r, "URL_REPUTATION_SPAM"));
    assert_non_null(hit(r, "IP_REPUTATION_SPAM")); /* not allowed */
    r = check(f, &e, T0, NULL, NULL);
    assert_non_null(hit(r, "DOMAIN_REPUTATION_SPAM")); /* the counts are there */

    /* Good reputation still counts for an allowed entity. */
    record_n(f, &e, REPUTATION_VERDICT_HAM, 200, T0 + HOUR);
    r = check(f, &e, T0 + HOUR, allow_cb, &allow);
    assert_true(score(r, "DOMAIN_REPUTATION_HAM") < 0.0);
}

static void test_spam_verdict_not_recorded_for_allowed_entity(void **state)
{
    struct fixture *f = *state;
    struct reputation_entities e = ents("203.0.113.5", "partner.example", "neutral.example");
    struct reputation_entities neighbour = ents("203.0.113.6", NULL, NULL);
    struct allow_list allow = {.kind = {REPUTATION_KIND_IP, REPUTATION_KIND_DOMAIN},
                               .value = {"203.0.113.5", "partner.example"},
                               .n = 2};
    struct scan_result *r;
    int i;

    for (i = 0; i < 10; i++)
        assert_int_equal(
            reputation_record(f->kv, &e, REPUTATION_VERDICT_SPAM, T0, allow_cb, &allow), KV_OK);
    r = check(f, &e, T0, NULL, NULL);
    assert_null(hit(r, "IP_REPUTATION_SPAM"));
    assert_null(hit(r, "DOMAIN_REPUTATION_SPAM"));
    assert_non_null(hit(r, "URL_REPUTATION_SPAM")); /* not allowed: recorded */
    /* The allowed IP shields its network: its neighbour is not penalised either. */
    assert_int_equal(reputation_hits(check(f, &neighbour, T0, NULL, NULL)), 0);

    /* Ham is recorded for allowed entities. */
    for (i = 0; i < 10; i++)
        assert_int_equal(reputation_record(f->kv, &e, REPUTATION_VERDICT_HAM, T0, allow_cb, &allow),
                         KV_OK);
    r = check(f, &e, T0, NULL, NULL);
    assert_true(has_option(r, "IP_REPUTATION_HAM", "203.0.113.5 spam=0 ham=10 window=24h"));
    assert_true(has_option(r, "DOMAIN_REPUTATION_HAM", "partner.example spam=0 ham=10 window=24h"));
}

static void test_network_speaks_for_a_new_address(void **state)
{
    struct fixture *f = *state;
    struct reputation_entities fresh = ents("192.0.2.77", NULL, NULL);
    struct reputation_entities known = ents("192.0.2.200", NULL, NULL);
    struct reputation_entities other_net = ents("192.0.3.77", NULL, NULL);
    struct reputation_entities same_counts = ents("198.51.100.50", NULL, NULL);
    struct scan_result *r;
    char ip[32];
    double net_score, own_score;
    int i;

    /* Ten spam from ten addresses of 192.0.2.0/24, one each. */
    for (i = 1; i <= 10; i++) {
        struct reputation_entities e;
        snprintf(ip, sizeof ip, "192.0.2.%d", i);
        e = ents(ip, NULL, NULL);
        record_n(f, &e, REPUTATION_VERDICT_SPAM, 1, T0);
    }
    /* Every single address is below the minimum volume; the network is not. */
    r = check(f, &fresh, T0, NULL, NULL);
    assert_true(has_option(r, "IP_REPUTATION_SPAM", "192.0.2.0/24 spam=10 ham=0 window=24h"));
    net_score = score(r, "IP_REPUTATION_SPAM");
    /* The network counts at REPUTATION_NET_FACTOR of what the address itself would. */
    record_n(f, &same_counts, REPUTATION_VERDICT_SPAM, 10, T0);
    r = check(f, &same_counts, T0, NULL, NULL);
    own_score = score(r, "IP_REPUTATION_SPAM");
    assert_int_equal(hit(r, "IP_REPUTATION_SPAM")->n_options, 1); /* the address, not its /24 */
    assert_true(fabs(net_score - own_score * REPUTATION_NET_FACTOR) < 1e-9);
    /* Another /24 is not touched. */
    assert_int_equal(reputation_hits(check(f, &other_net, T0, NULL, NULL)), 0);
    /* An address with enough verdicts of its own is judged by them. */
    record_n(f, &known, REPUTATION_VERDICT_HAM, 20, T0);
    r = check(f, &known, T0, NULL, NULL);
    assert_null(hit(r, "IP_REPUTATION_SPAM"));
    assert_true(has_option(r, "IP_REPUTATION_HAM", "192.0.2.200 spam=0 ham=20 window=24h"));
    assert_int_equal(hit(r, "IP_REPUTATION_HAM")->n_options, 1);
}

static void test_ipv6_aggregates_by_64(void **state)
{
    struct fixture *f = *state;
    struct reputation_entities same64 = ents("2001:db8:1:2::ffff", NULL, NULL);
    struct reputation_entities other64 = ents("2001:db8:1:3::1", NULL, NULL);
    struct scan_result *r;
    char ip[64];
    int i;

    for (i = 1; i <= 8; i++) {
        struct reputation_entities e;
        snprintf(ip, sizeof ip, "2001:db8:1:2:%x::1", i);
        e = ents(ip, NULL, NULL);
        record_n(f, &e, REPUTATION_VERDICT_SPAM, 1, T0);
    }
    r = check(f, &same64, T0, NULL, NULL);
    assert_true(has_option(r, "IP_REPUTATION_SPAM", "2001:db8:1:2::/64 spam=8 ham=0 window=24h"));
    assert_int_equal(reputation_hits(check(f, &other64, T0, NULL, NULL)), 0);
}

static void test_many_entities_in_one_check(void **state)
{
    struct fixture *f = *state;
    struct reputation_entities e = ents("198.51.100.99", "many.example", NULL);
    struct scan_result *r;
    char d[64];
    int i;

    for (i = 0; i < REPUTATION_MAX_URL_DOMAINS; i++) {
        snprintf(d, sizeof d, "url%d.example", i);
        push(&e, REPUTATION_KIND_URL, d);
    }
    assert_int_equal(e.n, REPUTATION_MAX_ENTITIES);
    record_n(f, &e, REPUTATION_VERDICT_SPAM, 6, T0);
    r = check(f, &e, T0, NULL, NULL);
    assert_int_equal(hit(r, "URL_REPUTATION_SPAM")->n_options, REPUTATION_MAX_URL_DOMAINS);
    assert_non_null(hit(r, "IP_REPUTATION_SPAM"));
    assert_non_null(hit(r, "DOMAIN_REPUTATION_SPAM"));
}

static void test_nothing_to_check_or_record(void **state)
{
    struct fixture *f = *state;
    struct reputation_entities none = {.n = 0};
    assert_int_equal(reputation_record(f->kv, &none, REPUTATION_VERDICT_SPAM, T0, NULL, NULL),
                     KV_OK);
    assert_int_equal(reputation_hits(check(f, &none, T0, NULL, NULL)), 0);
}

static void test_result_score_is_what_reputation_added(void **state)
{
    struct fixture *f = *state;
    struct reputation_entities e = ents("198.51.100.13", "sum.example", NULL);
    struct scan_result *r;
    double rep;

    record_n(f, &e, REPUTATION_VERDICT_SPAM, 40, T0);
    r = check(f, &e, T0, NULL, NULL);
    result_add(r, symbols_lookup(reg, "TEST_OTHER_CHECK"), 1.0, NULL);
    result_finish(r, &(struct thresholds){6, 12, 18}, "default");
    rep = reputation_result_score(&ids, r);
    assert_true(rep > 0.0);
    assert_true(fabs(rep - score(r, "IP_REPUTATION_SPAM") - score(r, "DOMAIN_REPUTATION_SPAM")) <
                1e-9);
    assert_true(fabs(r->score - rep - 4.0) <= 0.005 + 1e-9); /* the total is rounded to 0.01 */
}

#define REPUTATION_SHARED_TESTS(setup, teardown)                                                   \
    cmocka_unit_test_setup_teardown(test_counts_accumulate_across_records_and_hours, setup,        \
                                    teardown),                                                     \
        cmocka_unit_test_setup_teardown(test_kinds_are_counted_apart, setup, teardown),            \
        cmocka_unit_test_setup_teardown(test_no_symbol_below_minimum_volume, setup, teardown),     \
        cmocka_unit_test_setup_teardown(test_weight_grows_with_volume, setup, teardown),           \
        cmocka_unit_test_setup_teardown(test_weight_grows_with_spam_ratio, setup, teardown),       \
        cmocka_unit_test_setup_teardown(test_window_slides_past_24_hours, setup, teardown),        \
        cmocka_unit_test_setup_teardown(test_allowed_entity_never_gets_spam_symbol, setup,         \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_spam_verdict_not_recorded_for_allowed_entity, setup,  \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_network_speaks_for_a_new_address, setup, teardown),   \
        cmocka_unit_test_setup_teardown(test_ipv6_aggregates_by_64, setup, teardown),              \
        cmocka_unit_test_setup_teardown(test_many_entities_in_one_check, setup, teardown),         \
        cmocka_unit_test_setup_teardown(test_nothing_to_check_or_record, setup, teardown),         \
        cmocka_unit_test_setup_teardown(test_result_score_is_what_reputation_added, setup,         \
                                        teardown)

/* ---- Redis only ---- */

static void test_redis_down_gives_unavailable_and_scan_goes_on(void **state)
{
    struct fixture *f = *state;
    struct reputation_entities e = ents("198.51.100.11", "down.example", NULL);
    struct scan_result *r = arena_calloc(f->arena, 1, sizeof *r);
    const struct symbol_hit *h;

    record_n(f, &e, REPUTATION_VERDICT_SPAM, 10, T0);
    test_redis_stop(&redis_srv);
    result_init(r, f->arena, reg);
    assert_int_equal(reputation_check(&ids, NULL, f->kv, &e, T0, NULL, NULL, r), KV_UNAVAILABLE);
    h = hit(r, "REPUTATION_UNAVAILABLE");
    assert_non_null(h);
    assert_true(h->score == 0.0);
    assert_int_equal(h->n_options, 1);
    assert_true(strlen(h->options[0]) > 0);
    assert_int_equal(reputation_hits(r), 1); /* nothing else, and no stale counts */
    /* The result is complete and usable; recording fails cleanly too. */
    result_finish(r, &(struct thresholds){6, 12, 18}, "default");
    assert_true(r->score == 0.0);
    assert_int_equal(r->action, ACTION_DELIVER);
    assert_int_equal(reputation_record(f->kv, &e, REPUTATION_VERDICT_SPAM, T0, NULL, NULL),
                     KV_UNAVAILABLE);
    assert_int_equal(test_redis_start(&redis_srv), 0);
}

/*
 * A relay between one client and the real server that counts round trips:
 * each time the client sends after the server has answered (or for the
 * first time) is one. A pipelined read written in several pieces is still
 * one, because the client does not wait for an answer between the pieces.
 */
struct relay {
    int listen_fd;
    int port;
    int stop_pipe[2];
    pthread_t thread;
    int turns; /* read and written with __atomic builtins */
};

static void relay_forward(int from, int to, bool *open)
{
    char buf[65536];
    ssize_t n = read(from, buf, sizeof buf), off = 0;
    if (n <= 0) {
        *open = false;
        return;
    }
    while (off < n) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w <= 0) {
            *open = false;
            return;
        }
        off += w;
    }
}

static void *relay_main(void *arg)
{
    struct relay *p = arg;
    struct sockaddr_in up = {.sin_family = AF_INET, .sin_port = htons((uint16_t)redis_srv.port)};
    struct pollfd fds[3];
    bool open = true, server_spoke_last = true;
    int client = accept(p->listen_fd, NULL, NULL), server = socket(AF_INET, SOCK_STREAM, 0);

    up.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (client < 0 || connect(server, (struct sockaddr *)&up, sizeof up) != 0) open = false;
    while (open) {
        fds[0] = (struct pollfd){.fd = client, .events = POLLIN};
        fds[1] = (struct pollfd){.fd = server, .events = POLLIN};
        fds[2] = (struct pollfd){.fd = p->stop_pipe[0], .events = POLLIN};
        if (poll(fds, 3, -1) < 0 || fds[2].revents) break;
        if (fds[0].revents) {
            if (server_spoke_last) __atomic_add_fetch(&p->turns, 1, __ATOMIC_SEQ_CST);
            server_spoke_last = false;
            relay_forward(client, server, &open);
        }
        if (open && fds[1].revents) {
            server_spoke_last = true;
            relay_forward(server, client, &open);
        }
    }
    if (client >= 0) close(client);
    close(server);
    return NULL;
}

static void relay_start(struct relay *p)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(p->listen_fd >= 0);
    assert_int_equal(bind(p->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(p->listen_fd, 1), 0);
    assert_int_equal(getsockname(p->listen_fd, (struct sockaddr *)&a, &len), 0);
    p->port = ntohs(a.sin_port);
    assert_int_equal(pipe(p->stop_pipe), 0);
    assert_int_equal(pthread_create(&p->thread, NULL, relay_main, p), 0);
}

static void relay_stop(struct relay *p)
{
    assert_int_equal(write(p->stop_pipe[1], "x", 1), 1);
    pthread_join(p->thread, NULL);
    close(p->stop_pipe[0]);
    close(p->stop_pipe[1]);
    close(p->listen_fd);
}

static int relay_turns(struct relay *p)
{
    return __atomic_load_n(&p->turns, __ATOMIC_SEQ_CST);
}

static void test_redis_check_is_one_round_trip(void **state)
{
    struct fixture *f = *state;
    struct relay p = {0};
    struct reputation_entities e = ents("198.51.100.12", "rt.example", NULL);
    struct scan_result *r;
    char uri[100], d[64];
    struct kv *kv;
    int i, before;

    for (i = 0; i < REPUTATION_MAX_URL_DOMAINS; i++) {
        snprintf(d, sizeof d, "rt%d.example", i);
        push(&e, REPUTATION_KIND_URL, d);
    }
    record_n(f, &e, REPUTATION_VERDICT_SPAM, 6, T0);

    relay_start(&p);
    snprintf(uri, sizeof uri, "redis://127.0.0.1:%d", p.port);
    assert_int_equal(kv_open(uri, &kv), KV_OK);
    before = relay_turns(&p);
    assert_true(before >= 1); /* the handshake went through the relay */

    r = arena_calloc(f->arena, 1, sizeof *r);
    result_init(r, f->arena, reg);
    assert_int_equal(reputation_check(&ids, NULL, kv, &e, T0, NULL, NULL, r), KV_OK);
    assert_int_equal(relay_turns(&p) - before, 1);
    /* It did read through the relay: all 19 entities x 24 hours, in that one trip. */
    assert_int_equal(hit(r, "URL_REPUTATION_SPAM")->n_options, REPUTATION_MAX_URL_DOMAINS);
    assert_non_null(hit(r, "IP_REPUTATION_SPAM"));

    before = relay_turns(&p);
    assert_int_equal(reputation_record(kv, &e, REPUTATION_VERDICT_HAM, T0, NULL, NULL), KV_OK);
    assert_int_equal(relay_turns(&p) - before, 1); /* one MULTI/EXEC pipeline */

    kv_close(kv);
    relay_stop(&p);
}

/* ---- entities of parsed messages (no store) ---- */

static struct message *parse(const char *client_ip, const char *mail_from, const char *raw)
{
    struct envelope env = {.mail_from = mail_from, .client_ip = client_ip};
    return message_parse(raw, strlen(raw), &env);
}

static const char *entity(const struct reputation_entities *e, enum reputation_kind kind,
                          size_t nth)
{
    size_t i;
    for (i = 0; i < e->n; i++)
        if (e->e[i].kind == kind && nth-- == 0) return e->e[i].value;
    return NULL;
}

static void test_extract_takes_ip_net_sender_and_url_domains(void **state)
{
    struct message *m =
        parse("198.51.100.23", "bounce@mail.shop.example.co.uk",
              "From: Shop <news@other.example>\nSubject: x\n\n"
              "See https://www.Offers.example.com/a and http://cdn.offers.example.com/b\n"
              "and https://tracker.example.net/c\n");
    struct reputation_entities e;
    (void)state;

    reputation_entities_extract(m->arena, m, 8, &e);
    assert_string_equal(entity(&e, REPUTATION_KIND_IP, 0), "198.51.100.23");
    assert_string_equal(entity(&e, REPUTATION_KIND_NET, 0), "198.51.100.0/24");
    assert_string_equal(entity(&e, REPUTATION_KIND_DOMAIN, 0), "example.co.uk");
    assert_null(entity(&e, REPUTATION_KIND_DOMAIN, 1));
    assert_string_equal(entity(&e, REPUTATION_KIND_URL, 0), "example.com");
    assert_string_equal(entity(&e, REPUTATION_KIND_URL, 1), "example.net");
    assert_null(entity(&e, REPUTATION_KIND_URL, 2));
    assert_int_equal(e.n, 5);
    message_free(m);
}

static void test_extract_uses_from_header_for_null_sender(void **state)
{
    struct message *m = parse("198.51.100.24", "",
                              "From: MAILER-DAEMON@relay.bounce.example.org\n"
                              "Subject: failure\n\nundeliverable\n");
    struct reputation_entities e;
    (void)state;

    reputation_entities_extract(m->arena, m, 8, &e);
    assert_string_equal(entity(&e, REPUTATION_KIND_DOMAIN, 0), "example.org");
    message_free(m);
    m = parse(NULL, NULL, "Subject: no sender at all\n\nbody\n");
    reputation_entities_extract(m->arena, m, 8, &e);
    assert_int_equal(e.n, 0);
    message_free(m);
}

static void test_extract_caps_url_domains_in_document_order(void **state)
{
    char raw[2048];
    size_t len = 0;
    struct message *m;
    struct reputation_entities e;
    char want[32];
    int i;
    (void)state;

    len += (size_t)snprintf(raw, sizeof raw, "From: a@sender.example\nSubject: x\n\n");
    for (i = 0; i < 30; i++)
        len += (size_t)snprintf(raw + len, sizeof raw - len,
                                "http://site%d.example/ http://www.site%d.example/x\n", i, i);
    assert_true(len < sizeof raw);
    m = parse("198.51.100.25", "a@sender.example", raw);
    reputation_entities_extract(m->arena, m, 3, &e);
    assert_int_equal(e.n, 2 + 1 + 3);
    for (i = 0; i < 3; i++) {
        snprintf(want, sizeof want, "site%d.example", i);
        assert_string_equal(entity(&e, REPUTATION_KIND_URL, (size_t)i), want);
    }
    reputation_entities_extract(m->arena, m, 1000, &e); /* capped at the maximum */
    assert_int_equal(e.n, REPUTATION_MAX_ENTITIES);
    message_free(m);
}

static void test_local_client_ips_are_not_scored(void **state)
{
    static const char *const local[] = {"127.0.0.1",
                                        "127.1.2.3",
                                        "10.1.2.3",
                                        "192.168.1.1",
                                        "172.16.0.1",
                                        "172.31.255.255",
                                        "169.254.1.1",
                                        "100.64.0.1",
                                        "0.0.0.0",
                                        "::1",
                                        "::",
                                        "fc00::1",
                                        "fd12:3456::1",
                                        "fe80::1",
                                        "::ffff:10.0.0.1",
                                        "[::1]",
                                        "IPv6:::1",
                                        "not an ip",
                                        "",
                                        "1.2.3.4.5"};
    static const char *const public_ips[][3] = {
        {"172.32.0.1", "172.32.0.1", "172.32.0.0/24"},
        {"172.15.255.1", "172.15.255.1", "172.15.255.0/24"},
        {"8.8.8.8", "8.8.8.8", "8.8.8.0/24"},
        {"100.128.0.1", "100.128.0.1", "100.128.0.0/24"},
        {"::ffff:203.0.113.9", "203.0.113.9", "203.0.113.0/24"},
        {"IPv6:2001:DB8::1", "2001:db8::1", "2001:db8::/64"},
        {"[2001:db8:a:b:c:d:e:f]", "2001:db8:a:b:c:d:e:f", "2001:db8:a:b::/64"},
    };
    struct reputation_entities e;
    struct message *m;
    size_t i;
    (void)state;

    for (i = 0; i < sizeof local / sizeof local[0]; i++) {
        e.n = 0;
        if (!reputation_ip_is_local(local[i])) fail_msg("%s counted as public", local[i]);
        if (reputation_entities_add_client_ip(&e, local[i]) != 0 || e.n != 0)
            fail_msg("%s gave entities", local[i]);
    }
    for (i = 0; i < sizeof public_ips / sizeof public_ips[0]; i++) {
        e.n = 0;
        assert_false(reputation_ip_is_local(public_ips[i][0]));
        assert_int_equal(reputation_entities_add_client_ip(&e, public_ips[i][0]), 2);
        assert_string_equal(entity(&e, REPUTATION_KIND_IP, 0), public_ips[i][1]);
        assert_string_equal(entity(&e, REPUTATION_KIND_NET, 0), public_ips[i][2]);
    }
    /* A message from the local network keeps its other entities. */
    m = parse("192.168.0.10", "me@corp.example", "Subject: internal\n\nlunch?\n");
    reputation_entities_extract(m->arena, m, 8, &e);
    assert_int_equal(e.n, 1);
    assert_string_equal(entity(&e, REPUTATION_KIND_DOMAIN, 0), "corp.example");
    message_free(m);
}

static void test_store_not_open_gives_unavailable(void **state)
{
    struct reputation_entities e = ents("198.51.100.14", "closed.example", NULL);
    struct arena *a = arena_new(0);
    struct scan_result r;
    (void)state;

    result_init(&r, a, reg);
    assert_int_equal(reputation_check(&ids, NULL, NULL, &e, T0, NULL, NULL, &r), KV_UNAVAILABLE);
    assert_true(has_option(&r, "REPUTATION_UNAVAILABLE", "reputation: the kv store is not open"));
    assert_int_equal(reputation_hits(&r), 1);
    assert_int_equal(reputation_record(NULL, &e, REPUTATION_VERDICT_HAM, T0, NULL, NULL),
                     KV_UNAVAILABLE);
    arena_free(a);
}

static void test_kind_names(void **state)
{
    (void)state;
    assert_string_equal(reputation_kind_name(REPUTATION_KIND_IP), "ip");
    assert_string_equal(reputation_kind_name(REPUTATION_KIND_NET), "net");
    assert_string_equal(reputation_kind_name(REPUTATION_KIND_DOMAIN), "domain");
    assert_string_equal(reputation_kind_name(REPUTATION_KIND_URL), "url");
}

int main(void)
{
    const struct CMUnitTest lmdb_tests[] = {
        REPUTATION_SHARED_TESTS(lmdb_setup, teardown),
    };
    const struct CMUnitTest redis_tests[] = {
        REPUTATION_SHARED_TESTS(redis_setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_down_gives_unavailable_and_scan_goes_on,
                                        redis_setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_check_is_one_round_trip, redis_setup, teardown),
    };
    const struct CMUnitTest entity_tests[] = {
        cmocka_unit_test(test_extract_takes_ip_net_sender_and_url_domains),
        cmocka_unit_test(test_extract_uses_from_header_for_null_sender),
        cmocka_unit_test(test_extract_caps_url_domains_in_document_order),
        cmocka_unit_test(test_local_client_ips_are_not_scored),
        cmocka_unit_test(test_store_not_open_gives_unavailable),
        cmocka_unit_test(test_kind_names),
    };
    int failed = 0;

    /* The unavailable test logs a warning by design; keep the output readable. */
    log_set_level(LOG_LEVEL_ERROR);
    message_library_init();
    reg = symbols_new();
    reputation_register(reg, &ids);
    symbols_add(reg, "TEST_OTHER_CHECK", 4.0, "Another check's symbol", "test");
    failed += cmocka_run_group_tests_name("reputation_lmdb", lmdb_tests, lmdb_group_setup,
                                          lmdb_group_teardown);
    failed += cmocka_run_group_tests_name("reputation_redis", redis_tests, redis_group_setup,
                                          redis_group_teardown);
    failed += cmocka_run_group_tests_name("reputation_entities", entity_tests, NULL, NULL);
    symbols_free(reg);
    message_library_shutdown();
    return failed ? 1 : 0;
}
