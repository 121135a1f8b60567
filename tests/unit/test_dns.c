/* Tests for src/checks/dns.c: the resolver against a real unbound and broken servers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checks/dns.h"
#include "redis_server.h"
#include "unbound_server.h"

static const char zone[] = "local-zone: \"example.org.\" static\n"
                           "local-data: 'example.org. 300 TXT \"v=spf1 \" \"ip4:127.0.0.1 -all\"'\n"
                           "local-data: 'example.org. 300 TXT \"second record\"'\n"
                           "local-data: 'example.org. 300 MX 10 mx1.example.org.'\n"
                           "local-data: 'example.org. 300 MX 20 mx2.example.org.'\n"
                           "local-data: 'mx1.example.org. 300 A 192.0.2.1'\n"
                           "local-data: 'mx1.example.org. 300 AAAA 2001:db8::1'\n"
                           "local-data: 'n0.example.org. A 192.0.2.10'\n"
                           "local-data: 'n1.example.org. A 192.0.2.11'\n"
                           "local-data: 'n2.example.org. A 192.0.2.12'\n"
                           "local-data: 'n3.example.org. A 192.0.2.13'\n"
                           "local-data: 'n4.example.org. A 192.0.2.14'\n"
                           "local-data: 'n5.example.org. A 192.0.2.15'\n"
                           "local-data: 'n6.example.org. A 192.0.2.16'\n"
                           "local-data: 'n7.example.org. A 192.0.2.17'\n"
                           "local-data: 'n8.example.org. A 192.0.2.18'\n"
                           "local-data: 'n9.example.org. A 192.0.2.19'\n"
                           "local-zone: \"2.0.192.in-addr.arpa.\" static\n"
                           "local-data: '1.2.0.192.in-addr.arpa. 300 PTR mx1.example.org.'\n";

static struct test_unbound ub;

static int setup(void **state)
{
    (void)state;
    return test_unbound_open(&ub, zone);
}

static int teardown(void **state)
{
    (void)state;
    test_unbound_close(&ub);
    return 0;
}

static struct dns_resolver *resolver_on(int port, unsigned timeout_ms, unsigned cache_entries)
{
    struct dns_config cfg = {
        .port = port, .timeout_ms = timeout_ms, .cache_entries = cache_entries};
    struct dns_resolver *r;
    snprintf(cfg.server, sizeof cfg.server, "127.0.0.1");
    r = dns_resolver_new(&cfg);
    assert_non_null(r);
    return r;
}

/* The record of a whose text is s, or NULL. */
static const struct dns_record *find_record(const struct dns_answer *a, const char *s)
{
    size_t i;
    for (i = 0; i < a->n_records; i++)
        if (strcmp(a->records[i].text, s) == 0) return &a->records[i];
    return NULL;
}

static void test_txt_strings_of_one_record_are_joined(void **state)
{
    struct dns_resolver *r = resolver_on(ub.port, 2000, 0);
    struct dns_answer *a = dns_query(r, "example.org", DNS_T_TXT);
    (void)state;
    assert_int_equal(a->status, DNS_OK);
    assert_int_equal(a->n_records, 2);
    assert_non_null(find_record(a, "v=spf1 ip4:127.0.0.1 -all"));
    assert_non_null(find_record(a, "second record"));
    assert_true(a->ttl_s > 0 && a->ttl_s <= 300);
    dns_answer_free(a);
    dns_resolver_free(r);
}

static void test_address_mx_and_ptr_answers(void **state)
{
    struct dns_resolver *r = resolver_on(ub.port, 2000, 0);
    struct dns_answer *a;
    const struct dns_record *rec;
    (void)state;

    a = dns_query(r, "mx1.example.org.", DNS_T_A);
    assert_int_equal(a->status, DNS_OK);
    assert_string_equal(a->records[0].text, "192.0.2.1");
    dns_answer_free(a);

    a = dns_query(r, "MX1.Example.ORG", DNS_T_AAAA);
    assert_int_equal(a->status, DNS_OK);
    assert_string_equal(a->records[0].text, "2001:db8::1");
    dns_answer_free(a);

    a = dns_query(r, "example.org", DNS_T_MX);
    assert_int_equal(a->status, DNS_OK);
    assert_int_equal(a->n_records, 2);
    rec = find_record(a, "mx2.example.org");
    assert_non_null(rec);
    assert_int_equal(rec->pref, 20);
    dns_answer_free(a);

    a = dns_query(r, "1.2.0.192.in-addr.arpa", DNS_T_PTR);
    assert_int_equal(a->status, DNS_OK);
    assert_string_equal(a->records[0].text, "mx1.example.org");
    dns_answer_free(a);
    dns_resolver_free(r);
}

static void test_nxdomain_and_nodata_are_told_apart(void **state)
{
    struct dns_resolver *r = resolver_on(ub.port, 2000, 0);
    struct dns_answer *a;
    (void)state;
    a = dns_query(r, "missing.example.org", DNS_T_TXT);
    assert_int_equal(a->status, DNS_NXDOMAIN);
    assert_int_equal(a->n_records, 0);
    dns_answer_free(a);
    a = dns_query(r, "mx1.example.org", DNS_T_TXT);
    assert_int_equal(a->status, DNS_NODATA);
    dns_answer_free(a);
    a = dns_query(r, "outside.example.com", DNS_T_A); /* the root is refused */
    assert_int_equal(a->status, DNS_SERVFAIL);
    dns_answer_free(a);
    a = dns_query(r, "bad name.example.org", DNS_T_A);
    assert_int_equal(a->status, DNS_SERVFAIL);
    dns_answer_free(a);
    dns_resolver_free(r);
}

static void test_cache_answers_when_the_server_is_gone(void **state)
{
    struct dns_resolver *r = resolver_on(ub.port, 500, 100);
    struct dns_answer *a;
    (void)state;

    a = dns_query(r, "mx1.example.org", DNS_T_A);
    assert_int_equal(a->status, DNS_OK);
    dns_answer_free(a);
    a = dns_query(r, "missing.example.org", DNS_T_A);
    assert_int_equal(a->status, DNS_NXDOMAIN);
    dns_answer_free(a);
    assert_int_equal(dns_resolver_stats(r).queries_sent, 2);

    test_unbound_stop(&ub);
    a = dns_query(r, "MX1.example.org.", DNS_T_A);
    assert_int_equal(a->status, DNS_OK);
    assert_string_equal(a->records[0].text, "192.0.2.1");
    dns_answer_free(a);
    a = dns_query(r, "missing.example.org", DNS_T_A); /* negative answers are cached too */
    assert_int_equal(a->status, DNS_NXDOMAIN);
    dns_answer_free(a);
    assert_int_equal(dns_resolver_stats(r).cache_hits, 2);
    /* Not cached: the dead server is asked (port unreachable or silence). */
    a = dns_query(r, "n1.example.org", DNS_T_A);
    assert_true(a->status == DNS_SERVFAIL || a->status == DNS_TIMEOUT);
    dns_answer_free(a);
    assert_int_equal(test_unbound_start(&ub), 0);
    dns_resolver_free(r);
}

static void test_cache_evicts_least_recently_used(void **state)
{
    struct dns_resolver *r = resolver_on(ub.port, 2000, 2);
    const char *names[] = {"n0.example.org", "n1.example.org", "n0.example.org",
                           "n2.example.org", "n0.example.org", "n1.example.org"};
    size_t i;
    (void)state;
    for (i = 0; i < 6; i++)
        dns_answer_free(dns_query(r, names[i], DNS_T_A));
    /* n0 hit twice; n1 was evicted by n2 (n0 had been used more recently), so sent again. */
    assert_int_equal(dns_resolver_stats(r).cache_hits, 2);
    assert_int_equal(dns_resolver_stats(r).queries_sent, 4);
    dns_resolver_free(r);
}

static void test_query_many_resolves_concurrently(void **state)
{
    struct dns_resolver *r = resolver_on(ub.port, 2000, 0);
    struct dns_batch_item items[11];
    char names[11][32];
    size_t i;
    (void)state;
    for (i = 0; i < 10; i++) {
        snprintf(names[i], sizeof names[i], "n%zu.example.org", i);
        items[i].name = names[i];
        items[i].type = DNS_T_A;
    }
    items[10].name = "nothing.example.org";
    items[10].type = DNS_T_A;
    dns_query_many(r, items, 11);
    for (i = 0; i < 10; i++) {
        char want[32];
        snprintf(want, sizeof want, "192.0.2.%zu", 10 + i);
        assert_int_equal(items[i].answer->status, DNS_OK);
        assert_string_equal(items[i].answer->records[0].text, want);
        dns_answer_free(items[i].answer);
    }
    assert_int_equal(items[10].answer->status, DNS_NXDOMAIN);
    dns_answer_free(items[10].answer);
    dns_resolver_free(r);
}

static void test_silent_server_times_out_within_budget(void **state)
{
    struct test_bad_dns *bad = test_bad_dns_start(TEST_BAD_DNS_SILENT);
    struct dns_resolver *r;
    struct dns_batch_item items[5] = {{"a.example.org", DNS_T_A, NULL},
                                      {"b.example.org", DNS_T_TXT, NULL},
                                      {"c.example.org", DNS_T_MX, NULL},
                                      {"d.example.org", DNS_T_AAAA, NULL},
                                      {"e.example.org", DNS_T_A, NULL}};
    struct dns_answer *a;
    double t0;
    size_t i;
    (void)state;
    assert_non_null(bad);
    r = resolver_on(test_bad_dns_port(bad), 300, 10);

    t0 = test_now_s();
    a = dns_query(r, "example.org", DNS_T_TXT);
    assert_int_equal(a->status, DNS_TIMEOUT);
    dns_answer_free(a);
    assert_true(test_now_s() - t0 < 0.6); /* the per-query timeout */

    /* A scan budget shorter than the timeout bounds all queries of the scan together. */
    dns_begin_scan(r, 250);
    t0 = test_now_s();
    for (i = 0; i < 4; i++)
        dns_answer_free(dns_query(r, "example.org", DNS_T_TXT));
    dns_query_many(r, items, 5);
    for (i = 0; i < 5; i++) {
        assert_int_equal(items[i].answer->status, DNS_TIMEOUT);
        dns_answer_free(items[i].answer);
    }
    assert_true(test_now_s() - t0 < 0.45);
    assert_int_equal(dns_budget_left_ms(r), 0);
    dns_begin_scan(r, 0);
    assert_int_equal(dns_budget_left_ms(r), UINT32_MAX);
    dns_resolver_free(r);
    test_bad_dns_stop(bad);
}

/* The status of a TXT query against a broken server in mode; the server must have been asked. */
static enum dns_status status_from_bad_server(enum test_bad_dns_mode mode)
{
    struct test_bad_dns *bad = test_bad_dns_start(mode);
    struct dns_resolver *r;
    struct dns_answer *a;
    enum dns_status st;
    double t0 = test_now_s();

    assert_non_null(bad);
    r = resolver_on(test_bad_dns_port(bad), 600, 10);
    a = dns_query(r, "example.org", DNS_T_TXT);
    st = a->status;
    assert_int_equal(a->n_records, 0);
    dns_answer_free(a);
    assert_true(test_now_s() - t0 < 1.0);
    assert_true(test_bad_dns_queries(bad) > 0);
    /* Failures are not cached: the next query asks again. */
    a = dns_query(r, "example.org", DNS_T_TXT);
    assert_int_equal(a->status, st);
    dns_answer_free(a);
    assert_int_equal(dns_resolver_stats(r).cache_hits, 0);
    dns_resolver_free(r);
    test_bad_dns_stop(bad);
    return st;
}

static void test_garbage_answers_are_errors(void **state)
{
    enum dns_status st;
    (void)state;
    srand(42);
    st = status_from_bad_server(TEST_BAD_DNS_RANDOM);
    assert_true(st == DNS_MALFORMED || st == DNS_TIMEOUT || st == DNS_SERVFAIL);
    assert_int_equal(status_from_bad_server(TEST_BAD_DNS_TRUNCATED), DNS_MALFORMED);
    assert_int_equal(status_from_bad_server(TEST_BAD_DNS_LOOP), DNS_MALFORMED);
}

static void test_too_large_answer_is_malformed(void **state)
{
    (void)state;
    assert_int_equal(status_from_bad_server(TEST_BAD_DNS_HUGE), DNS_MALFORMED);
}

static void test_invalid_server_address_is_refused(void **state)
{
    struct dns_config cfg = {.port = 53};
    (void)state;
    snprintf(cfg.server, sizeof cfg.server, "not-an-ip");
    assert_null(dns_resolver_new(&cfg));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_txt_strings_of_one_record_are_joined),
        cmocka_unit_test(test_address_mx_and_ptr_answers),
        cmocka_unit_test(test_nxdomain_and_nodata_are_told_apart),
        cmocka_unit_test(test_cache_answers_when_the_server_is_gone),
        cmocka_unit_test(test_cache_evicts_least_recently_used),
        cmocka_unit_test(test_query_many_resolves_concurrently),
        cmocka_unit_test(test_silent_server_times_out_within_budget),
        cmocka_unit_test(test_garbage_answers_are_errors),
        cmocka_unit_test(test_too_large_answer_is_malformed),
        cmocka_unit_test(test_invalid_server_address_is_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
