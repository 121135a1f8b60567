/* Tests for src/checks/allowlist.c: the operator's allow rules for senders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "checks/allowlist.h"
#include "core/log.h"

static void test_addresses_networks_and_domains(void **state)
{
    struct allowlist *al = allowlist_parse("192.0.2.0/24, 198.51.100.7 2001:db8::/32 Example.COM");
    (void)state;
    assert_non_null(al);
    assert_true(allowlist_has_ip(al, "192.0.2.200"));
    assert_false(allowlist_has_ip(al, "192.0.3.1"));
    assert_true(allowlist_has_ip(al, "198.51.100.7"));
    assert_false(allowlist_has_ip(al, "198.51.100.8"));
    assert_true(allowlist_has_ip(al, "2001:db8:ffff::1"));
    assert_false(allowlist_has_ip(al, "2001:db9::1"));
    assert_false(allowlist_has_ip(al, "not-an-ip"));
    assert_true(allowlist_has_domain(al, "example.com"));
    assert_true(allowlist_has_domain(al, "mail.example.com"));
    assert_false(allowlist_has_domain(al, "badexample.com"));
    assert_false(allowlist_has_domain(al, "example.com.evil.net"));
    allowlist_free(al);
}

static void test_reputation_callback_by_kind(void **state)
{
    struct allowlist *al = allowlist_parse("192.0.2.0/24 partner.org");
    (void)state;
    assert_true(allowlist_reputation(al, REPUTATION_KIND_IP, "192.0.2.9"));
    assert_true(allowlist_reputation(al, REPUTATION_KIND_NET, "192.0.2.0/24"));
    assert_false(allowlist_reputation(al, REPUTATION_KIND_NET, "192.0.3.0/24"));
    assert_true(allowlist_reputation(al, REPUTATION_KIND_DOMAIN, "partner.org"));
    assert_true(allowlist_reputation(al, REPUTATION_KIND_URL, "files.partner.org"));
    assert_false(allowlist_reputation(al, REPUTATION_KIND_URL, "other.org"));
    assert_false(allowlist_reputation(NULL, REPUTATION_KIND_IP, "192.0.2.9"));
    allowlist_free(al);
}

static void test_bad_entries_are_refused_with_a_reason(void **state)
{
    (void)state;
    assert_null(allowlist_parse("192.0.2.0/33"));
    assert_string_equal(err_msg(), "not an address, network or domain: \"192.0.2.0/33\"");
    assert_null(allowlist_parse("exa mple.com/8"));
    assert_null(allowlist_parse("bad_domain!"));
    allowlist_free(allowlist_parse(""));
    allowlist_free(allowlist_parse(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses_networks_and_domains),
        cmocka_unit_test(test_reputation_callback_by_kind),
        cmocka_unit_test(test_bad_entries_are_refused_with_a_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
