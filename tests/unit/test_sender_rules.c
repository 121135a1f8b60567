/* Tests for src/checks/sender_rules.c: matching and precedence of operator sender rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "checks/sender_rules.h"
#include "core/log.h"

#define ADDR(v, a)                                                                                 \
    {                                                                                              \
        SENDER_RULE_ADDRESS, v, SENDER_RULE_##a, 0, NULL                                           \
    }
#define DOMAIN(v, a)                                                                               \
    {                                                                                              \
        SENDER_RULE_DOMAIN, v, SENDER_RULE_##a, 0, NULL                                            \
    }
#define IP(v, a)                                                                                   \
    {                                                                                              \
        SENDER_RULE_IP, v, SENDER_RULE_##a, 0, NULL                                                \
    }

static struct sender_rules *build(const struct sender_rule *rules, size_t n)
{
    struct sender_rules *sr = sender_rules_new(rules, n);
    if (sr == NULL) fprintf(stderr, "sender_rules_new: %s\n", err_msg());
    assert_non_null(sr);
    return sr;
}

static void test_address_matches_exactly_with_case_insensitive_domain(void **state)
{
    const struct sender_rule rules[] = {ADDR("Boss@Example.COM", ALLOW)};
    struct sender_rules *sr = build(rules, 1);
    const struct sender_rule *m = NULL;
    (void)state;
    assert_int_equal(sender_rules_check_sender(sr, "Boss@example.com", &m), SENDER_RULE_ALLOW);
    assert_non_null(m);
    assert_string_equal(m->value, "Boss@example.com");
    assert_int_equal(sender_rules_check_sender(sr, "Boss@EXAMPLE.com.", NULL), SENDER_RULE_ALLOW);
    /* The local part is compared exactly, and other addresses of the domain do not match. */
    assert_int_equal(sender_rules_check_sender(sr, "boss@example.com", &m), SENDER_RULE_NONE);
    assert_null(m);
    assert_int_equal(sender_rules_check_sender(sr, "other@example.com", NULL), SENDER_RULE_NONE);
    assert_int_equal(sender_rules_check_sender(sr, "Boss@sub.example.com", NULL), SENDER_RULE_NONE);
    sender_rules_free(sr);
}

static void test_any_block_says_whether_something_may_be_refused(void **state)
{
    const struct sender_rule allow_only[] = {ADDR("boss@example.com", ALLOW)};
    const struct sender_rule with_block[] = {ADDR("boss@example.com", ALLOW),
                                             DOMAIN("spam.example", BLOCK)};
    struct sender_rules *a = build(allow_only, 1), *b = build(with_block, 2);
    (void)state;
    assert_false(sender_rules_any_block(NULL));
    assert_false(sender_rules_any_block(a));
    assert_true(sender_rules_any_block(b));
    sender_rules_free(a);
    sender_rules_free(b);
}

static void test_domain_rule_covers_subdomains_but_not_lookalikes(void **state)
{
    const struct sender_rule rules[] = {DOMAIN("Example.org", BLOCK)};
    struct sender_rules *sr = build(rules, 1);
    (void)state;
    assert_int_equal(sender_rules_check_sender(sr, "a@example.org", NULL), SENDER_RULE_BLOCK);
    assert_int_equal(sender_rules_check_sender(sr, "a@mail.EU.example.org", NULL),
                     SENDER_RULE_BLOCK);
    assert_int_equal(sender_rules_check_sender(sr, "a@badexample.org", NULL), SENDER_RULE_NONE);
    assert_int_equal(sender_rules_check_sender(sr, "a@example.org.evil.net", NULL),
                     SENDER_RULE_NONE);
    assert_int_equal(sender_rules_check_domain(sr, "news.example.org", NULL), SENDER_RULE_BLOCK);
    sender_rules_free(sr);
}

static void test_most_specific_rule_wins_address_then_domain_then_parent(void **state)
{
    const struct sender_rule rules[] = {
        DOMAIN("example.com", BLOCK),
        DOMAIN("partner.example.com", ALLOW),
        ADDR("spammer@partner.example.com", BLOCK),
        ADDR("ceo@example.com", ALLOW),
    };
    struct sender_rules *sr = build(rules, 4);
    const struct sender_rule *m;
    (void)state;
    assert_int_equal(sender_rules_check_sender(sr, "x@example.com", &m), SENDER_RULE_BLOCK);
    assert_string_equal(m->value, "example.com");
    assert_int_equal(sender_rules_check_sender(sr, "ceo@example.com", &m), SENDER_RULE_ALLOW);
    assert_int_equal(m->kind, SENDER_RULE_ADDRESS);
    assert_int_equal(sender_rules_check_sender(sr, "x@partner.example.com", &m), SENDER_RULE_ALLOW);
    assert_string_equal(m->value, "partner.example.com");
    assert_int_equal(sender_rules_check_sender(sr, "x@eu.partner.example.com", &m),
                     SENDER_RULE_ALLOW);
    assert_int_equal(sender_rules_check_sender(sr, "spammer@partner.example.com", &m),
                     SENDER_RULE_BLOCK);
    assert_int_equal(m->kind, SENDER_RULE_ADDRESS);
    sender_rules_free(sr);
}

static void test_block_beats_allow_at_equal_specificity(void **state)
{
    const struct sender_rule rules[] = {
        {SENDER_RULE_DOMAIN, "dup.example", SENDER_RULE_ALLOW, 1, "old"},
        {SENDER_RULE_DOMAIN, "DUP.example.", SENDER_RULE_BLOCK, 2, "new"},
        {SENDER_RULE_DOMAIN, "dup.example", SENDER_RULE_ALLOW, 3, "later allow"},
        {SENDER_RULE_IP, "192.0.2.0/24", SENDER_RULE_BLOCK, 4, NULL},
        {SENDER_RULE_IP, "192.0.2.99/24", SENDER_RULE_ALLOW, 5, NULL}, /* same network */
    };
    struct sender_rules *sr = build(rules, 5);
    const struct sender_rule *m;
    (void)state;
    assert_int_equal(sender_rules_check_domain(sr, "dup.example", &m), SENDER_RULE_BLOCK);
    assert_int_equal(m->id, 2);
    assert_string_equal(m->comment, "new");
    assert_int_equal(sender_rules_check_ip(sr, "192.0.2.1", &m), SENDER_RULE_BLOCK);
    assert_int_equal(m->id, 4);
    assert_string_equal(m->value, "192.0.2.0/24");
    sender_rules_free(sr);
}

static void test_ip_and_cidr_longest_prefix_wins(void **state)
{
    const struct sender_rule rules[] = {
        IP("198.51.100.0/22", BLOCK), IP("198.51.101.0/24", ALLOW),  IP("198.51.101.66", BLOCK),
        IP("2001:DB8::/32", BLOCK),   IP("2001:db8:aa::/48", ALLOW),
    };
    struct sender_rules *sr = build(rules, 5);
    const struct sender_rule *m;
    (void)state;
    assert_int_equal(sender_rules_check_ip(sr, "198.51.100.7", &m), SENDER_RULE_BLOCK);
    assert_string_equal(m->value, "198.51.100.0/22");
    assert_int_equal(sender_rules_check_ip(sr, "198.51.101.7", &m), SENDER_RULE_ALLOW);
    assert_int_equal(sender_rules_check_ip(sr, "198.51.101.66", &m), SENDER_RULE_BLOCK);
    assert_string_equal(m->value, "198.51.101.66");
    assert_int_equal(sender_rules_check_ip(sr, "198.51.104.1", NULL), SENDER_RULE_NONE);
    assert_int_equal(sender_rules_check_ip(sr, "::ffff:198.51.101.66", NULL), SENDER_RULE_BLOCK);
    assert_int_equal(sender_rules_check_ip(sr, "2001:db8:1::5", NULL), SENDER_RULE_BLOCK);
    assert_int_equal(sender_rules_check_ip(sr, "2001:db8:aa:1::5", &m), SENDER_RULE_ALLOW);
    assert_string_equal(m->value, "2001:db8:aa::/48");
    assert_int_equal(sender_rules_check_ip(sr, "2001:db9::1", NULL), SENDER_RULE_NONE);
    assert_int_equal(sender_rules_check_ip(sr, "not an ip", NULL), SENDER_RULE_NONE);
    assert_int_equal(sender_rules_check_ip(sr, "198.51.100.0/24", NULL), SENDER_RULE_NONE);
    sender_rules_free(sr);
}

static void test_bounce_sender_and_garbage_match_nothing(void **state)
{
    const struct sender_rule rules[] = {DOMAIN("example.com", BLOCK), ADDR("a@example.com", ALLOW)};
    struct sender_rules *sr = build(rules, 2);
    (void)state;
    assert_int_equal(sender_rules_check_sender(sr, "", NULL), SENDER_RULE_NONE);
    assert_int_equal(sender_rules_check_sender(sr, "example.com", NULL), SENDER_RULE_NONE);
    assert_int_equal(sender_rules_check_sender(sr, "@example.com", NULL), SENDER_RULE_NONE);
    assert_int_equal(sender_rules_check_sender(sr, "a@", NULL), SENDER_RULE_NONE);
    assert_int_equal(sender_rules_check_sender(NULL, "a@example.com", NULL), SENDER_RULE_NONE);
    assert_int_equal(sender_rules_check_sender(sr, NULL, NULL), SENDER_RULE_NONE);
    sender_rules_free(sr);
}

static void test_invalid_rule_fails_the_whole_snapshot(void **state)
{
    const struct sender_rule bad_addr[] = {DOMAIN("ok.example", BLOCK), ADDR("no-at-sign", BLOCK)};
    const struct sender_rule bad_net[] = {IP("192.0.2.0/33", BLOCK)};
    const struct sender_rule bad_ip[] = {IP("192.0.2", BLOCK)};
    const struct sender_rule bad_action[] = {
        {SENDER_RULE_DOMAIN, "x.example", SENDER_RULE_NONE, 0, NULL}};
    const struct sender_rule bad_domain[] = {DOMAIN("a b.example", ALLOW)};
    (void)state;
    assert_null(sender_rules_new(bad_addr, 2));
    assert_non_null(strstr(err_msg(), "no-at-sign"));
    assert_null(sender_rules_new(bad_net, 1));
    assert_null(sender_rules_new(bad_ip, 1));
    assert_null(sender_rules_new(bad_action, 1));
    assert_null(sender_rules_new(bad_domain, 1));
}

static void test_empty_snapshot_matches_nothing(void **state)
{
    struct sender_rules *sr = build(NULL, 0);
    (void)state;
    assert_int_equal(sender_rules_count(sr), 0);
    assert_int_equal(sender_rules_check_ip(sr, "192.0.2.1", NULL), SENDER_RULE_NONE);
    assert_int_equal(sender_rules_check_sender(sr, "a@b.example", NULL), SENDER_RULE_NONE);
    sender_rules_free(sr);
}

static void test_many_rules_all_found(void **state)
{
    enum { N = 5000 };
    static struct sender_rule rules[N];
    static char values[N][64];
    struct sender_rules *sr;
    size_t i;
    (void)state;
    for (i = 0; i < N; i++) {
        if (i % 2) {
            snprintf(values[i], sizeof values[i], "d%zu.example", i);
            rules[i] = (struct sender_rule){SENDER_RULE_DOMAIN, values[i],
                                            i % 3 ? SENDER_RULE_ALLOW : SENDER_RULE_BLOCK,
                                            (int64_t)i, NULL};
        } else {
            snprintf(values[i], sizeof values[i], "10.%zu.%zu.0/24", i / 256, i % 256);
            rules[i] = (struct sender_rule){SENDER_RULE_IP, values[i], SENDER_RULE_BLOCK,
                                            (int64_t)i, NULL};
        }
    }
    sr = build(rules, N);
    assert_int_equal(sender_rules_count(sr), N);
    for (i = 0; i < N; i++) {
        const struct sender_rule *m = NULL;
        char probe[80];
        if (i % 2) {
            snprintf(probe, sizeof probe, "user@mx.d%zu.example", i);
            assert_int_equal(sender_rules_check_sender(sr, probe, &m),
                             i % 3 ? SENDER_RULE_ALLOW : SENDER_RULE_BLOCK);
        } else {
            snprintf(probe, sizeof probe, "10.%zu.%zu.77", i / 256, i % 256);
            assert_int_equal(sender_rules_check_ip(sr, probe, &m), SENDER_RULE_BLOCK);
        }
        assert_non_null(m);
        assert_int_equal(m->id, (int64_t)i);
    }
    sender_rules_free(sr);
}

static void test_reputation_adapter_allows_only_allow_rules(void **state)
{
    const struct sender_rule rules[] = {
        IP("203.0.113.0/24", ALLOW),      IP("203.0.113.9", BLOCK),
        DOMAIN("partner.example", ALLOW), DOMAIN("bad.partner.example", BLOCK),
        IP("2001:db8::/48", ALLOW),
    };
    struct sender_rules *sr = build(rules, 5);
    (void)state;
    assert_true(sender_rules_reputation_allow(sr, REPUTATION_KIND_IP, "203.0.113.7"));
    assert_false(sender_rules_reputation_allow(sr, REPUTATION_KIND_IP, "203.0.113.9"));
    assert_false(sender_rules_reputation_allow(sr, REPUTATION_KIND_IP, "198.51.100.1"));
    assert_true(sender_rules_reputation_allow(sr, REPUTATION_KIND_NET, "203.0.113.0/24"));
    assert_true(sender_rules_reputation_allow(sr, REPUTATION_KIND_NET, "2001:db8:0:5::/64"));
    /* A /24 allow does not cover a /16. */
    assert_false(sender_rules_reputation_allow(sr, REPUTATION_KIND_NET, "203.0.0.0/16"));
    assert_true(sender_rules_reputation_allow(sr, REPUTATION_KIND_DOMAIN, "partner.example"));
    assert_true(sender_rules_reputation_allow(sr, REPUTATION_KIND_URL, "www.partner.example"));
    assert_false(sender_rules_reputation_allow(sr, REPUTATION_KIND_URL, "bad.partner.example"));
    assert_true(sender_rules_reputation_allow(sr, REPUTATION_KIND_URL, "203.0.113.8"));
    assert_false(sender_rules_reputation_allow(NULL, REPUTATION_KIND_IP, "203.0.113.7"));
    sender_rules_free(sr);
}

static void test_kind_and_action_words_round_trip(void **state)
{
    enum sender_rule_kind kinds[] = {SENDER_RULE_ADDRESS, SENDER_RULE_DOMAIN, SENDER_RULE_IP};
    enum sender_rule_action actions[] = {SENDER_RULE_ALLOW, SENDER_RULE_BLOCK};
    enum sender_rule_kind k;
    enum sender_rule_action a;
    size_t i;
    (void)state;
    for (i = 0; i < 3; i++) {
        assert_int_equal(sender_rule_kind_parse(sender_rule_kind_name(kinds[i]), &k), 0);
        assert_int_equal(k, kinds[i]);
    }
    for (i = 0; i < 2; i++) {
        assert_int_equal(sender_rule_action_parse(sender_rule_action_name(actions[i]), &a), 0);
        assert_int_equal(a, actions[i]);
    }
    assert_int_equal(sender_rule_kind_parse("cidr", &k), -1);
    assert_int_equal(sender_rule_kind_parse(NULL, &k), -1);
    assert_int_equal(sender_rule_action_parse("none", &a), -1);
    assert_int_equal(sender_rule_action_parse("Allow", &a), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_address_matches_exactly_with_case_insensitive_domain),
        cmocka_unit_test(test_domain_rule_covers_subdomains_but_not_lookalikes),
        cmocka_unit_test(test_any_block_says_whether_something_may_be_refused),
        cmocka_unit_test(test_most_specific_rule_wins_address_then_domain_then_parent),
        cmocka_unit_test(test_block_beats_allow_at_equal_specificity),
        cmocka_unit_test(test_ip_and_cidr_longest_prefix_wins),
        cmocka_unit_test(test_bounce_sender_and_garbage_match_nothing),
        cmocka_unit_test(test_invalid_rule_fails_the_whole_snapshot),
        cmocka_unit_test(test_empty_snapshot_matches_nothing),
        cmocka_unit_test(test_many_rules_all_found),
        cmocka_unit_test(test_reputation_adapter_allows_only_allow_rules),
        cmocka_unit_test(test_kind_and_action_words_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
