/*
 * Tests for src/checks/dnsbl.c and dnsbl_async.c: DNSBL and URIBL lookups
 * against a real unbound on loopback.
 *
 * unbound serves the default lists' own zones (zen.spamhaus.org,
 * multi.surbl.org) with test data, so the shipped code maps are what is
 * tested, without the network; an operator list uses bl.test. The zone
 * slow.test is forwarded by unbound to a silent UDP socket (a thread of this
 * test that reads nothing and answers nothing), so one list times out while
 * the others answer, and the whole lookup must end within the resolver's
 * timeout.
 *
 * The connect-time lookups of dnsbl_async.c ask a list server that lists
 * every client but answers LATE_MS late (another thread of this test, asked
 * directly, without unbound), so that "begin returns at once", "wait gets
 * the hit" and "wait gives up at the budget" can be told apart by the clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checks/dns.h"
#include "checks/dnsbl.h"
#include "checks/dnsbl_async.h"
#include "checks/symbols.h"
#include "core/arena.h"
#include "core/log.h"
#include "message/message.h"
#include "scan/result.h"
#include "redis_server.h"
#include "unbound_server.h"

static const char zone_fmt[] =
    "  do-not-query-localhost: no\n"
    "  local-zone: \"zen.spamhaus.org.\" static\n"
    "  local-data: '2.100.51.198.zen.spamhaus.org. A 127.0.0.2'\n"
    "  local-data: '3.100.51.198.zen.spamhaus.org. A 127.0.0.3'\n"
    "  local-data: '4.100.51.198.zen.spamhaus.org. A 127.0.0.4'\n"
    "  local-data: '4.100.51.198.zen.spamhaus.org. A 127.0.0.11'\n"
    "  local-data: '10.100.51.198.zen.spamhaus.org. A 127.0.0.10'\n"
    "  local-data: '99.100.51.198.zen.spamhaus.org. A 127.0.0.99'\n"
    "  local-data: '254.100.51.198.zen.spamhaus.org. A 127.255.255.254'\n"
    "  local-data: '66.100.51.198.zen.spamhaus.org. A 203.0.113.66'\n"
    "  local-data: "
    "'2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org. "
    "A 127.0.0.2'\n"
    "  local-zone: \"multi.surbl.org.\" static\n"
    "  local-data: 'evil.example.multi.surbl.org. A 127.0.0.24'\n"
    "  local-data: 'cracked.example.multi.surbl.org. A 127.0.0.128'\n"
    "  local-data: 'refused.example.multi.surbl.org. A 127.0.0.1'\n"
    "  local-zone: \"bl.test.\" static\n"
    "  local-data: '2.100.51.198.bl.test. A 127.0.0.2'\n"
    "  local-zone: \"dom.test.\" static\n"
    "  local-data: 'evil.example.dom.test. A 127.0.0.3'\n"
    "  local-zone: \"slow.test.\" transparent\n"
    "forward-zone:\n"
    "  name: \"slow.test.\"\n"
    "  forward-addr: 127.0.0.1@%d\n";

#define TIMEOUT_MS 400
#define LATE_MS    200
#define BUDGET_MS  1000

static struct test_unbound ub;
static struct test_bad_dns *silent, *late;

static int group_setup(void **state)
{
    char zone[sizeof zone_fmt + 16];
    (void)state;
    silent = test_bad_dns_start(TEST_BAD_DNS_SILENT);
    late = test_bad_dns_start_slow(LATE_MS);
    if (silent == NULL || late == NULL) return -1;
    snprintf(zone, sizeof zone, zone_fmt, test_bad_dns_port(silent));
    return test_unbound_open(&ub, zone);
}

static int group_teardown(void **state)
{
    (void)state;
    test_unbound_close(&ub);
    test_bad_dns_stop(silent);
    test_bad_dns_stop(late);
    return 0;
}

/* Everything one test needs; freed by done(). */
struct env {
    struct dnsbl *d;
    struct symbol_registry *reg;
    struct dns_resolver *r;
    struct arena *arena;
    struct scan_result res;
    struct dnsbl_pool *pool;    /* start_late() */
    struct dns_config late_dns; /* start_late(): the late list server */
};

static void start(struct env *e, const struct dnsbl_config *cfg)
{
    struct dns_config dc = {.port = ub.port, .timeout_ms = TIMEOUT_MS};
    snprintf(dc.server, sizeof dc.server, "127.0.0.1");
    e->d = dnsbl_new(cfg);
    if (e->d == NULL) fprintf(stderr, "dnsbl_new: %s\n", err_msg());
    assert_non_null(e->d);
    e->reg = symbols_new();
    assert_int_equal(dnsbl_register(e->d, e->reg), 0);
    e->r = dns_resolver_new(&dc);
    assert_non_null(e->r);
    e->arena = arena_new(0);
    result_init(&e->res, e->arena, e->reg);
}

static void done(struct env *e)
{
    dns_resolver_free(e->r);
    arena_free(e->arena);
    symbols_free(e->reg);
    dnsbl_free(e->d);
}

/* start() with the late list alone and a pool of at most max_threads lookup threads. */
static void start_late(struct env *e, unsigned max_threads)
{
    struct dnsbl_config cfg = {.lists = "late late.test type=ip 127.0.0.2=RBL_LATE:3",
                               .no_defaults = true};
    start(e, &cfg);
    memset(&e->late_dns, 0, sizeof e->late_dns);
    snprintf(e->late_dns.server, sizeof e->late_dns.server, "127.0.0.1");
    e->late_dns.port = test_bad_dns_port(late);
    e->late_dns.timeout_ms = BUDGET_MS + 500;
    e->pool = dnsbl_pool_new(max_threads);
}

static void done_late(struct env *e)
{
    dnsbl_pool_free(e->pool); /* waits for lookups still running: ASan sees what they leave */
    done(e);
}

/* The hit of symbol name in e->res, or NULL. */
static const struct symbol_hit *find(const struct env *e, const char *name)
{
    int id = symbols_lookup(e->reg, name);
    return id < 0 ? NULL : result_find(&e->res, id);
}

static bool has_option(const struct symbol_hit *h, const char *needle)
{
    size_t i;
    for (i = 0; h && i < h->n_options; i++)
        if (strstr(h->options[i], needle)) return true;
    return false;
}

/* Looks ip up at "connect" and collects it at "end of message". */
static void connect_and_collect(struct env *e, const char *ip, const char *disabled)
{
    struct dnsbl_lookup *l = dnsbl_ip_start(e->d, e->r, ip);
    dnsbl_lookup_collect(l, disabled, &e->res);
    dnsbl_lookup_free(l);
}

static void test_default_lists_are_the_four_documented(void **state)
{
    struct dnsbl *d = dnsbl_new(NULL);
    (void)state;
    assert_non_null(d);
    assert_int_equal(dnsbl_list_count(d), 4);
    assert_string_equal(dnsbl_list_name(d, 0), "zen");
    assert_string_equal(dnsbl_list_zone(d, 0), "zen.spamhaus.org");
    assert_int_equal(dnsbl_list_type(d, 0), DNSBL_TYPE_IP);
    assert_string_equal(dnsbl_list_zone(d, 1), "multi.surbl.org");
    assert_int_equal(dnsbl_list_type(d, 1), DNSBL_TYPE_DOMAIN);
    assert_string_equal(dnsbl_list_zone(d, 2), "ivmsip.invaluement.com");
    assert_int_equal(dnsbl_list_type(d, 2), DNSBL_TYPE_IP);
    assert_string_equal(dnsbl_list_zone(d, 3), "ivmuri.invaluement.com");
    assert_int_equal(dnsbl_list_type(d, 3), DNSBL_TYPE_DOMAIN);
    dnsbl_free(d);
}

static void test_zen_return_codes_map_to_sbl_xbl_pbl(void **state)
{
    struct dnsbl_config cfg = {.disabled = "ivmsip ivmuri"};
    struct env e;
    const struct symbol_hit *h;
    (void)state;
    start(&e, &cfg);

    connect_and_collect(&e, "198.51.100.2", NULL);
    h = find(&e, "RBL_SPAMHAUS_SBL");
    assert_non_null(h);
    assert_true(h->score > 3.9 && h->score < 4.1);
    assert_true(has_option(h, "198.51.100.2: 127.0.0.2"));
    assert_null(find(&e, "RBL_SPAMHAUS_XBL"));

    result_init(&e.res, e.arena, e.reg);
    connect_and_collect(&e, "198.51.100.4", NULL); /* answers 127.0.0.4 and 127.0.0.11 */
    assert_non_null(find(&e, "RBL_SPAMHAUS_XBL"));
    assert_non_null(find(&e, "RBL_SPAMHAUS_PBL"));
    assert_null(find(&e, "RBL_SPAMHAUS_SBL"));

    result_init(&e.res, e.arena, e.reg);
    connect_and_collect(&e, "198.51.100.3", NULL);
    connect_and_collect(&e, "198.51.100.10", NULL);
    assert_non_null(find(&e, "RBL_SPAMHAUS_SBL"));
    assert_non_null(find(&e, "RBL_SPAMHAUS_PBL"));

    /* Not listed, and an unknown code: nothing at all. */
    result_init(&e.res, e.arena, e.reg);
    connect_and_collect(&e, "198.51.100.5", NULL);
    connect_and_collect(&e, "198.51.100.99", NULL);
    assert_int_equal(e.res.n_hits, 0);
    done(&e);
}

static void test_ipv6_client_is_looked_up_by_nibbles(void **state)
{
    struct dnsbl_config cfg = {.disabled = "ivmsip,ivmuri"};
    struct env e;
    (void)state;
    start(&e, &cfg);
    connect_and_collect(&e, "2001:db8::2", NULL);
    assert_true(has_option(find(&e, "RBL_SPAMHAUS_SBL"), "2001:db8::2"));
    /* An IPv4 client seen through an IPv6 socket is looked up as IPv4. */
    connect_and_collect(&e, "::ffff:198.51.100.2", NULL);
    assert_true(has_option(find(&e, "RBL_SPAMHAUS_SBL"), "::ffff:198.51.100.2: 127.0.0.2"));
    done(&e);
}

static void test_refusals_and_foreign_answers_give_tempfail_not_a_listing(void **state)
{
    struct dnsbl_config cfg = {.disabled = "ivmsip ivmuri"};
    struct env e;
    const struct symbol_hit *h;
    (void)state;
    start(&e, &cfg);
    connect_and_collect(&e, "198.51.100.254", NULL); /* 127.255.255.254: refused */
    connect_and_collect(&e, "198.51.100.66", NULL);  /* an answer outside 127/8 */
    h = find(&e, "ZEN_TEMPFAIL");
    assert_non_null(h);
    assert_true(h->score == 0.0);
    assert_true(has_option(h, "refused"));
    assert_true(has_option(h, "outside 127.0.0.0/8"));
    assert_int_equal(e.res.n_hits, 1);
    done(&e);
}

static void test_surbl_bitmask_gives_each_sublist(void **state)
{
    struct dnsbl_config cfg = {.disabled = "ivmsip ivmuri"};
    const char *domains[] = {"www.clean.example", "evil.example",    "EVIL.example.",
                             "cracked.example",   "refused.example", "192.0.2.1"};
    struct env e;
    (void)state;
    start(&e, &cfg);
    dnsbl_check_domains(e.d, e.r, domains, 6, NULL, &e.res);
    assert_true(has_option(find(&e, "URIBL_SURBL_PH"), "evil.example: 127.0.0.24")); /* 8 */
    assert_non_null(find(&e, "URIBL_SURBL_MW"));                                     /* 16 */
    assert_int_equal(find(&e, "URIBL_SURBL_PH")->n_options, 1); /* duplicates looked up once */
    assert_null(find(&e, "URIBL_SURBL_ABUSE"));
    assert_true(has_option(find(&e, "URIBL_SURBL_CR"), "cracked.example"));
    assert_true(has_option(find(&e, "SURBL_TEMPFAIL"), "refused.example: refused"));
    assert_int_equal(e.res.n_hits, 4);
    done(&e);
}

static void test_operator_lists_replace_and_extend_defaults(void **state)
{
    struct dnsbl_config cfg = {
        .lists = "test-bl bl.test type=ip 127.0.0.2=RBL_TEST:2.5,127.0.0.3-127.0.0.5=RBL_TEST_B;\n"
                 "# a comment line\n"
                 "surbl dom.test. type=domain 127.0.0.3=URIBL_TEST:1.5",
        .no_defaults = true,
    };
    const char *domains[] = {"evil.example"};
    struct env e;
    (void)state;
    start(&e, &cfg);
    assert_int_equal(dnsbl_list_count(e.d), 2);
    connect_and_collect(&e, "198.51.100.2", NULL);
    assert_non_null(find(&e, "RBL_TEST"));
    assert_true(find(&e, "RBL_TEST")->score > 2.4 && find(&e, "RBL_TEST")->score < 2.6);
    dnsbl_check_domains(e.d, e.r, domains, 1, NULL, &e.res);
    assert_non_null(find(&e, "URIBL_TEST"));
    assert_null(find(&e, "URIBL_SURBL_PH")); /* the default surbl was replaced */
    assert_int_equal(symbols_lookup(e.reg, "TEST_BL_TEMPFAIL") >= 0, 1);
    done(&e);
}

static void test_disabled_lists_are_not_queried_or_collected(void **state)
{
    struct dnsbl_config cfg = {.lists = "test-bl bl.test type=ip 127.0.0.2=RBL_TEST:2",
                               .disabled = "IVMSIP, ivmuri"};
    const char *domains[] = {"evil.example"};
    struct dnsbl_lookup *l;
    struct env e;
    unsigned long sent;
    (void)state;
    start(&e, &cfg);
    assert_int_equal(dnsbl_list_count(e.d), 3);
    l = dnsbl_ip_start(e.d, e.r, "198.51.100.2");
    assert_int_equal(dnsbl_lookup_hits(l), 2);
    /* Per recipient domain: this one has zen off. */
    dnsbl_lookup_collect(l, "zen", &e.res);
    assert_null(find(&e, "RBL_SPAMHAUS_SBL"));
    assert_non_null(find(&e, "RBL_TEST"));
    dnsbl_lookup_collect(l, NULL, &e.res);
    assert_non_null(find(&e, "RBL_SPAMHAUS_SBL"));
    dnsbl_lookup_free(l);
    sent = dns_resolver_stats(e.r).queries_sent;
    dnsbl_check_domains(e.d, e.r, domains, 1, "surbl", &e.res);
    assert_int_equal(dns_resolver_stats(e.r).queries_sent, sent); /* nothing asked */
    assert_null(find(&e, "URIBL_SURBL_PH"));
    done(&e);
}

static void test_local_addresses_are_not_looked_up(void **state)
{
    struct env e;
    struct dnsbl_lookup *l;
    const char *ips[] = {"127.0.0.2", "10.1.2.3", "192.168.1.1", "::1", "fe80::1", "garbage", NULL};
    size_t i;
    (void)state;
    start(&e, NULL);
    for (i = 0; i < 7; i++) {
        l = dnsbl_ip_start(e.d, e.r, ips[i]);
        assert_int_equal(dnsbl_lookup_hits(l), 0);
        dnsbl_lookup_free(l);
    }
    assert_int_equal(dns_resolver_stats(e.r).queries_sent, 0);
    done(&e);
}

static void test_silent_list_times_out_in_bounded_time(void **state)
{
    struct dnsbl_config cfg = {.lists = "slow slow.test type=ip 127.0.0.2=RBL_SLOW:3",
                               .disabled = "ivmsip ivmuri"};
    struct env e;
    double t0, elapsed;
    (void)state;
    start(&e, &cfg);
    t0 = test_now_s();
    connect_and_collect(&e, "198.51.100.2", NULL);
    elapsed = test_now_s() - t0;
    assert_true(elapsed < 3.0 * TIMEOUT_MS / 1000.0);
    assert_non_null(find(&e, "RBL_SPAMHAUS_SBL")); /* the other list still answered */
    assert_null(find(&e, "RBL_SLOW"));
    /* A timeout, not a refusal: unbound forwarded the query and got no answer. */
    assert_true(has_option(find(&e, "SLOW_TEMPFAIL"), "198.51.100.2: TIMEOUT"));
    assert_true(elapsed > 0.8 * TIMEOUT_MS / 1000.0);
    assert_true(find(&e, "SLOW_TEMPFAIL")->score == 0.0);
    done(&e);
}

static void test_message_url_domains_are_checked(void **state)
{
    static const char msg[] = "From: a@sender.example\r\n"
                              "Subject: links\r\n"
                              "Content-Type: text/plain\r\n"
                              "\r\n"
                              "See http://www.evil.example/login and https://clean.example/ and\r\n"
                              "http://198.51.100.2/ too.\r\n";
    struct dnsbl_config cfg = {.disabled = "ivmsip ivmuri"};
    struct envelope env = {0};
    struct message *m = message_parse(msg, sizeof msg - 1, &env);
    struct env e;
    (void)state;
    start(&e, &cfg);
    dnsbl_check_message_urls(e.d, e.r, m, NULL, &e.res);
    assert_true(has_option(find(&e, "URIBL_SURBL_PH"), "evil.example"));
    assert_null(find(&e, "SURBL_TEMPFAIL"));
    message_free(m);
    done(&e);
}

static void test_bad_list_definitions_are_refused(void **state)
{
    const char *bad[] = {
        "NoCaps zone.test type=ip 127.0.0.2=X",
        "x zone.test 127.0.0.2=X",                   /* no type */
        "x zone.test type=ip",                       /* no codes */
        "x zone.test type=ip 128.0.0.2=X",           /* not 127/8 */
        "x zone.test type=ip 127.0.0.5-127.0.0.2=X", /* empty range */
        "x zone.test type=ip 127.0.0.2=lower",       /* bad symbol */
        "x zone.test type=ip 127.0.0.2=X:lots",      /* bad score */
        "x zone.test type=ip &0=X",                  /* empty mask */
        "x zone..test type=ip 127.0.0.2=X",          /* bad zone */
        "x zone.test type=url 127.0.0.2=X",          /* unknown word */
    };
    struct dnsbl_config cfg = {0};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg.lists = bad[i];
        if (dnsbl_new(&cfg) != NULL) fail_msg("accepted: %s", bad[i]);
        assert_true(err_msg()[0] != '\0');
    }
    cfg.lists = NULL;
    cfg.disabled = "zen, typo";
    assert_null(dnsbl_new(&cfg));
    assert_non_null(strstr(err_msg(), "typo"));
}

/* ---- connect-time lookups (dnsbl_async.c) ---- */

static void test_begin_returns_at_once_and_wait_gives_the_hit(void **state)
{
    struct env e;
    struct dnsbl_pending *p;
    double t0, t_begin, t_wait;
    (void)state;
    start_late(&e, 0);
    t0 = test_now_s();
    p = dnsbl_ip_begin(e.pool, e.d, &e.late_dns, BUDGET_MS, "198.51.100.2");
    t_begin = test_now_s() - t0;
    dnsbl_lookup_collect(dnsbl_pending_wait(p), NULL, &e.res);
    t_wait = test_now_s() - t0;
    print_message("begin %.2f ms, wait done after %.1f ms (list answers after %d ms)\n",
                  t_begin * 1e3, t_wait * 1e3, LATE_MS);
    assert_true(t_begin < 0.050);
    assert_true(t_wait >= 0.9 * LATE_MS / 1000.0);
    assert_true(t_wait < BUDGET_MS / 1000.0);
    assert_true(has_option(find(&e, "RBL_LATE"), "198.51.100.2: 127.0.0.2"));
    assert_null(find(&e, "LATE_TEMPFAIL"));
    /* A second message of the connection gets the same answers at once. */
    t0 = test_now_s();
    assert_int_equal(dnsbl_lookup_hits(dnsbl_pending_wait(p)), 1);
    assert_true(test_now_s() - t0 < 0.010);
    dnsbl_pending_free(p);
    done_late(&e);
}

/* The synchronous path with the same list, for comparison: the caller waits the whole delay. */
static void test_synchronous_lookup_waits_for_the_slow_list(void **state)
{
    struct env e;
    struct dns_resolver *r;
    struct dnsbl_lookup *l;
    double t0, t;
    (void)state;
    start_late(&e, 0);
    r = dns_resolver_new(&e.late_dns);
    assert_non_null(r);
    dns_begin_scan(r, BUDGET_MS);
    t0 = test_now_s();
    l = dnsbl_ip_start(e.d, r, "198.51.100.2");
    t = test_now_s() - t0;
    print_message("dnsbl_ip_start (synchronous) took %.1f ms\n", t * 1e3);
    assert_true(t >= 0.9 * LATE_MS / 1000.0);
    assert_int_equal(dnsbl_lookup_hits(l), 1);
    dnsbl_lookup_free(l);
    dns_resolver_free(r);
    done_late(&e);
}

static void test_wait_past_the_budget_reads_as_timeout_on_time(void **state)
{
    struct env e;
    struct dnsbl_pending *p;
    const unsigned budget_ms = LATE_MS / 2;
    double t0, t;
    (void)state;
    start_late(&e, 0);
    t0 = test_now_s();
    p = dnsbl_ip_begin(e.pool, e.d, &e.late_dns, budget_ms, "198.51.100.2");
    dnsbl_lookup_collect(dnsbl_pending_wait(p), NULL, &e.res);
    t = test_now_s() - t0;
    print_message("budget %u ms: wait returned after %.1f ms\n", budget_ms, t * 1e3);
    assert_true(t >= 0.9 * budget_ms / 1000.0);
    assert_true(t < (budget_ms + DNSBL_WAIT_GRACE_MS + 100) / 1000.0);
    assert_null(find(&e, "RBL_LATE"));
    assert_true(has_option(find(&e, "LATE_TEMPFAIL"), "198.51.100.2: TIMEOUT"));
    assert_true(find(&e, "LATE_TEMPFAIL")->score == 0.0);
    dnsbl_pending_free(p);
    done_late(&e);
}

/* One thread, two lookups: the second waits in the queue, and its budget runs all the same. */
static void test_queued_lookup_keeps_its_deadline(void **state)
{
    struct env e;
    struct dnsbl_pending *a, *b;
    const unsigned budget_ms = LATE_MS + LATE_MS / 2;
    double t0, t;
    (void)state;
    start_late(&e, 1);
    t0 = test_now_s();
    a = dnsbl_ip_begin(e.pool, e.d, &e.late_dns, budget_ms, "198.51.100.2");
    b = dnsbl_ip_begin(e.pool, e.d, &e.late_dns, budget_ms, "198.51.100.3");
    assert_int_equal(dnsbl_lookup_hits(dnsbl_pending_wait(a)), 1);
    dnsbl_lookup_collect(dnsbl_pending_wait(b), NULL, &e.res);
    t = test_now_s() - t0;
    assert_true(t < (budget_ms + DNSBL_WAIT_GRACE_MS + 100) / 1000.0);
    assert_true(has_option(find(&e, "LATE_TEMPFAIL"), "198.51.100.3: TIMEOUT"));
    dnsbl_pending_free(a);
    dnsbl_pending_free(b);
    done_late(&e);
}

static void test_many_connections_look_up_at_once(void **state)
{
    struct env e;
    struct dnsbl_pending *p[8];
    char ip[32];
    double t0, t;
    size_t i;
    (void)state;
    start_late(&e, 0);
    t0 = test_now_s();
    for (i = 0; i < 8; i++) {
        snprintf(ip, sizeof ip, "198.51.100.%zu", 10 + i);
        p[i] = dnsbl_ip_begin(e.pool, e.d, &e.late_dns, BUDGET_MS, ip);
    }
    for (i = 0; i < 8; i++)
        assert_int_equal(dnsbl_lookup_hits(dnsbl_pending_wait(p[i])), 1);
    t = test_now_s() - t0;
    print_message("8 lookups in %.1f ms\n", t * 1e3);
    assert_true(t < 2.0 * LATE_MS / 1000.0); /* not one after the other */
    for (i = 0; i < 8; i++)
        dnsbl_pending_free(p[i]);
    done_late(&e);
}

/* A client that disconnects before the answer: queued or running, the lookup goes cleanly. */
static void test_free_before_the_answer_is_clean(void **state)
{
    struct env e;
    struct dnsbl_pending *running, *queued;
    unsigned before = test_bad_dns_queries(late);
    (void)state;
    start_late(&e, 1);
    running = dnsbl_ip_begin(e.pool, e.d, &e.late_dns, BUDGET_MS, "198.51.100.20");
    queued = dnsbl_ip_begin(e.pool, e.d, &e.late_dns, BUDGET_MS, "198.51.100.21");
    test_sleep_ms(LATE_MS / 4);
    dnsbl_pending_free(queued);
    dnsbl_pending_free(running);
    done_late(&e); /* waits for the running one; ASan tells if anything leaked or was used after */
    assert_int_equal(test_bad_dns_queries(late) - before, 1); /* the queued one never asked */
}

/* A reload frees the lists while a lookup uses them: the lookup's reference keeps them. */
static void test_lists_outlive_their_owner_while_a_lookup_runs(void **state)
{
    struct env e;
    struct dnsbl_pending *p;
    (void)state;
    start_late(&e, 0);
    p = dnsbl_ip_begin(e.pool, e.d, &e.late_dns, BUDGET_MS, "198.51.100.2");
    dnsbl_free(e.d); /* the scanner of the old generation goes */
    e.d = NULL;
    dnsbl_lookup_collect(dnsbl_pending_wait(p), "other-list", &e.res);
    assert_non_null(find(&e, "RBL_LATE"));
    dnsbl_pending_free(p); /* the last reference: the lists go now */
    done_late(&e);
}

static void test_local_client_is_not_looked_up(void **state)
{
    struct env e;
    struct dnsbl_pending *p;
    unsigned before = test_bad_dns_queries(late);
    double t0;
    (void)state;
    start_late(&e, 0);
    t0 = test_now_s();
    p = dnsbl_ip_begin(e.pool, e.d, &e.late_dns, BUDGET_MS, "127.0.0.1");
    assert_int_equal(dnsbl_lookup_hits(dnsbl_pending_wait(p)), 0);
    assert_true(test_now_s() - t0 < 0.100);
    assert_int_equal(test_bad_dns_queries(late), before);
    dnsbl_pending_free(p);
    done_late(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_lists_are_the_four_documented),
        cmocka_unit_test(test_zen_return_codes_map_to_sbl_xbl_pbl),
        cmocka_unit_test(test_ipv6_client_is_looked_up_by_nibbles),
        cmocka_unit_test(test_refusals_and_foreign_answers_give_tempfail_not_a_listing),
        cmocka_unit_test(test_surbl_bitmask_gives_each_sublist),
        cmocka_unit_test(test_operator_lists_replace_and_extend_defaults),
        cmocka_unit_test(test_disabled_lists_are_not_queried_or_collected),
        cmocka_unit_test(test_local_addresses_are_not_looked_up),
        cmocka_unit_test(test_silent_list_times_out_in_bounded_time),
        cmocka_unit_test(test_message_url_domains_are_checked),
        cmocka_unit_test(test_bad_list_definitions_are_refused),
        cmocka_unit_test(test_begin_returns_at_once_and_wait_gives_the_hit),
        cmocka_unit_test(test_synchronous_lookup_waits_for_the_slow_list),
        cmocka_unit_test(test_wait_past_the_budget_reads_as_timeout_on_time),
        cmocka_unit_test(test_queued_lookup_keeps_its_deadline),
        cmocka_unit_test(test_many_connections_look_up_at_once),
        cmocka_unit_test(test_free_before_the_answer_is_clean),
        cmocka_unit_test(test_lists_outlive_their_owner_while_a_lookup_runs),
        cmocka_unit_test(test_local_client_is_not_looked_up),
    };
    int failed;
    log_set_level(LOG_LEVEL_ERROR); /* tempfails are logged as warnings by design */
    message_library_init();
    failed = cmocka_run_group_tests_name("dnsbl", tests, group_setup, group_teardown);
    message_library_shutdown();
    return failed;
}
