/*
 * Tests for src/checks/auth.c: SPF, DKIM and DMARC against records served by
 * a real unbound on loopback. The DKIM key is made at test time with
 * opendkim-genkey and mail is signed with opendkim-testmsg (opendkim-tools).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checks/auth.h"
#include "checks/dns.h"
#include "checks/symbols.h"
#include "core/arena.h"
#include "core/buf.h"
#include "message/message.h"
#include "redis_server.h"
#include "scan/result.h"
#include "tmpdir.h"
#include "unbound_server.h"

static struct symbol_registry *reg;
static struct auth_ids ids;
static struct test_unbound ub;
static char keydir[256];

#define GOOD_IP  "192.0.2.1"
#define OTHER_IP "198.51.100.7"

static const char zone_fixed[] =
    "local-zone: \"example.org.\" static\n"
    "local-zone: \"example.net.\" static\n"
    "local-zone: \"example.com.\" static\n"
    /* SPF */
    "local-data: 'pass.example.org. TXT \"v=spf1 a:mail.pass.example.org include:inc.example.org "
    "-all\"'\n"
    "local-data: 'mail.pass.example.org. A 203.0.113.5'\n"
    "local-data: 'inc.example.org. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"'\n"
    "local-data: 'soft.example.org. TXT \"v=spf1 ip4:192.0.2.0/24 ~all\"'\n"
    "local-data: 'neutral.example.org. TXT \"v=spf1 ip4:192.0.2.0/24 ?all\"'\n"
    "local-data: 'none.example.org. A 192.0.2.1'\n"
    "local-data: 'broken.example.org. TXT \"v=spf1 ip4:192.0.2.0/24 frobnicate:x -all\"'\n"
    "local-data: 'example.org. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"'\n"
    "local-data: 'example.net. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"'\n"
    /* DMARC */
    "local-data: '_dmarc.example.org. TXT \"v=DMARC1; p=reject\"'\n"
    "local-data: '_dmarc.q.example.net. TXT \"v=DMARC1; p=quarantine\"'\n"
    "local-data: 'q.example.net. TXT \"v=spf1 -all\"'\n"
    "local-data: '_dmarc.monitor.example.net. TXT \"v=DMARC1; p=none\"'\n"
    "local-data: 'monitor.example.net. TXT \"v=spf1 -all\"'\n"
    "local-data: '_dmarc.half.example.net. TXT \"v=DMARC1; p=reject; pct=50\"'\n"
    "local-data: 'half.example.net. TXT \"v=spf1 -all\"'\n"
    "local-data: '_dmarc.bad.example.net. TXT \"v=DMARC1; p=bogus\"'\n"
    "local-data: 'nodmarc.example.com. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"'\n";

/* Runs a shell command; 0 if it exits 0. */
static int run(const char *cmd)
{
    return system(cmd) == 0 ? 0 : -1;
}

/* The quoted strings of opendkim-genkey's zone stub, each as a quoted string for unbound. */
static int key_record(const char *txt_path, struct buf *out)
{
    FILE *f = fopen(txt_path, "r");
    int c, in_quote = 0;
    if (f == NULL) return -1;
    while ((c = fgetc(f)) != EOF && (in_quote || c != ';')) {
        if (c == '"') {
            buf_append_char(out, '"');
            if (in_quote) buf_append_char(out, ' ');
            in_quote = !in_quote;
        } else if (in_quote) {
            buf_append_char(out, (char)c);
        }
    }
    fclose(f);
    return out->len > 0 ? 0 : -1;
}

static int setup(void **state)
{
    char cmd[1024], path[400];
    struct buf zone = {0}, key = {0};
    int rc;
    (void)state;

    message_library_init();
    reg = symbols_new();
    auth_register(reg, &ids);
    if (test_tmpdir_make(keydir, sizeof keydir, "auth") != 0) return -1;
    /* h=sha1:sha256: opendkim-testmsg signs with rsa-sha1. */
    snprintf(cmd, sizeof cmd,
             "opendkim-genkey -D '%s' -d example.org -s sel --hash-algorithms=sha1:sha256", keydir);
    if (run(cmd) != 0) return -1;
    snprintf(path, sizeof path, "%s/sel.txt", keydir);
    if (key_record(path, &key) != 0) return -1;
    buf_append_str(&zone, zone_fixed);
    buf_printf(&zone, "local-data: 'sel._domainkey.example.org. TXT %s'\n", key.data);
    /* A key record that is not a key: signatures with s=junk cannot be checked. */
    buf_append_str(&zone,
                   "local-data: 'junk._domainkey.example.org. TXT \"v=DKIM1; p=bm90IGEga2V5\"'\n");
    rc = test_unbound_open(&ub, zone.data);
    buf_free(&zone);
    buf_free(&key);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    test_unbound_close(&ub);
    test_tmpdir_remove(keydir);
    symbols_free(reg);
    auth_library_shutdown();
    message_library_shutdown();
    return 0;
}

/* msg signed by opendkim-testmsg with d=example.org and selector sel; caller frees. */
static char *sign(const char *msg, const char *selector)
{
    char in[400], cmd[1200];
    struct buf out = {0};
    FILE *f, *p;
    char chunk[4096];
    size_t n;

    snprintf(in, sizeof in, "%s/in.eml", keydir);
    f = fopen(in, "w");
    assert_non_null(f);
    fputs(msg, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "opendkim-testmsg -d example.org -s %s -k '%s/sel.private' < '%s'",
             selector, keydir, in);
    p = popen(cmd, "r");
    assert_non_null(p);
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        buf_append(&out, chunk, n);
    assert_int_equal(pclose(p), 0);
    assert_non_null(strstr(out.data, "DKIM-Signature:"));
    return buf_release(&out);
}

struct outcome {
    struct message *m;
    struct scan_result *r;
    struct auth_results res;
    double elapsed_s;
};

/* Runs auth_check() on raw with the envelope, through a resolver on port with budget_ms. */
static void check_with(struct outcome *o, int port, unsigned budget_ms, const char *raw,
                       const char *ip, const char *helo, const char *mail_from)
{
    struct envelope env = {.mail_from = mail_from, .client_ip = ip, .helo = helo};
    struct dns_config cfg = {.port = port, .timeout_ms = 1000, .cache_entries = 64};
    struct dns_resolver *resolver;
    double t0;

    snprintf(cfg.server, sizeof cfg.server, "127.0.0.1");
    resolver = dns_resolver_new(&cfg);
    assert_non_null(resolver);
    o->m = message_parse(raw, strlen(raw), &env);
    o->r = arena_calloc(o->m->arena, 1, sizeof *o->r);
    result_init(o->r, o->m->arena, reg);
    dns_begin_scan(resolver, budget_ms);
    t0 = test_now_s();
    auth_check(&ids, resolver, o->m, raw, strlen(raw), o->r, &o->res);
    o->elapsed_s = test_now_s() - t0;
    dns_resolver_free(resolver);
}

static void check(struct outcome *o, const char *raw, const char *ip, const char *mail_from)
{
    check_with(o, ub.port, 5000, raw, ip, "mx.sender.example", mail_from);
}

/* The first option of symbol name's hit, or NULL if it did not hit. */
static const char *hit(const struct outcome *o, const char *name)
{
    const struct symbol_hit *h = result_find(o->r, symbols_lookup(reg, name));
    if (h == NULL) return NULL;
    return h->n_options ? h->options[0] : "";
}

/* Fails unless name hit with text as (the start of) its first option; prints all hits on failure.
 */
static void assert_hit_cmp(const struct outcome *o, const char *name, const char *text,
                           bool prefix_only)
{
    const char *got = hit(o, name);
    if (got == NULL || strncmp(got, text, prefix_only ? strlen(text) : strlen(text) + 1) != 0) {
        size_t i;
        for (i = 0; i < o->r->n_hits; i++)
            print_message("hit %s: %s\n", symbols_get(reg, o->r->hits[i].id)->name,
                          o->r->hits[i].n_options ? o->r->hits[i].options[0] : "");
        fail_msg("%s: expected \"%s\", got \"%s\"", name, text, got ? got : "(no hit)");
    }
}

static void assert_hit(const struct outcome *o, const char *name, const char *text)
{
    assert_hit_cmp(o, name, text, false);
}

static void assert_hit_prefix(const struct outcome *o, const char *name, const char *prefix)
{
    assert_hit_cmp(o, name, prefix, true);
}

static void done(struct outcome *o)
{
    message_free(o->m);
}

#define PLAIN_MSG(from)                                                                            \
    "From: Alice <alice@" from ">\nTo: bob@example.net\nSubject: hello\n"                          \
    "Date: Sun, 22 Nov 2026 05:00:00 +0000\nMessage-ID: <1@" from ">\n\nHello Bob.\n"

static void test_spf_pass_through_a_and_include(void **state)
{
    struct outcome o;
    (void)state;
    check(&o, PLAIN_MSG("pass.example.org"), GOOD_IP, "alice@pass.example.org");
    assert_hit(&o, "SPF_ALLOW", "pass.example.org: ip 192.0.2.1 permitted");
    assert_int_equal(o.res.spf, AUTH_SPF_PASS);
    assert_string_equal(o.res.spf_domain, "pass.example.org");
    done(&o);
    check(&o, PLAIN_MSG("pass.example.org"), "203.0.113.5", "alice@pass.example.org");
    assert_hit_prefix(&o, "SPF_ALLOW", "");
    done(&o);
}

static void test_spf_fail_softfail_neutral(void **state)
{
    struct outcome o;
    (void)state;
    check(&o, PLAIN_MSG("pass.example.org"), OTHER_IP, "alice@pass.example.org");
    assert_hit(&o, "SPF_FAIL", "pass.example.org: ip 198.51.100.7 not permitted");
    assert_null(hit(&o, "SPF_ALLOW"));
    done(&o);
    check(&o, PLAIN_MSG("soft.example.org"), OTHER_IP, "alice@soft.example.org");
    assert_hit_prefix(&o, "SPF_SOFTFAIL", "");
    assert_int_equal(o.res.spf, AUTH_SPF_SOFTFAIL);
    done(&o);
    check(&o, PLAIN_MSG("neutral.example.org"), OTHER_IP, "alice@neutral.example.org");
    assert_hit_prefix(&o, "SPF_NEUTRAL", "");
    done(&o);
}

static void test_spf_none_permerror_and_no_client_ip(void **state)
{
    struct outcome o;
    (void)state;
    check(&o, PLAIN_MSG("none.example.org"), GOOD_IP, "alice@none.example.org");
    assert_hit(&o, "SPF_NA", "none.example.org: no SPF record");
    assert_int_equal(o.res.spf, AUTH_SPF_NONE);
    done(&o);
    check(&o, PLAIN_MSG("broken.example.org"), GOOD_IP, "alice@broken.example.org");
    assert_hit_prefix(&o, "SPF_PERMERROR", "broken.example.org: invalid SPF record");
    done(&o);
    check(&o, PLAIN_MSG("pass.example.org"), NULL, "alice@pass.example.org");
    assert_hit(&o, "SPF_NA", "no client IP");
    assert_int_equal(o.res.spf, AUTH_SPF_NA);
    done(&o);
}

static void test_spf_null_sender_checks_helo(void **state)
{
    struct outcome o;
    (void)state;
    check_with(&o, ub.port, 5000, PLAIN_MSG("example.net"), OTHER_IP, "soft.example.org", "");
    assert_string_equal(o.res.spf_domain, "soft.example.org");
    assert_hit_prefix(&o, "SPF_SOFTFAIL", "");
    done(&o);
}

static void test_dkim_valid_signature_allows(void **state)
{
    struct outcome o;
    char *signed_msg = sign(PLAIN_MSG("example.org"), "sel");
    (void)state;
    check(&o, signed_msg, OTHER_IP, "bounce@elsewhere.example.com");
    assert_hit(&o, "DKIM_ALLOW", "example.org: signature verified (s=sel)");
    assert_int_equal(o.res.n_dkim_pass, 1);
    assert_string_equal(o.res.dkim_pass_domains[0], "example.org");
    assert_null(hit(&o, "DKIM_REJECT"));
    /* SPF of another domain fails, but DKIM aligns with From: example.org. */
    assert_hit_prefix(&o, "DMARC_ALLOW", "");
    assert_int_equal(o.res.dmarc, AUTH_DMARC_PASS);
    assert_string_equal(o.res.dmarc_policy, "reject");
    done(&o);
    free(signed_msg);
}

static void test_dkim_altered_body_rejects(void **state)
{
    struct outcome o;
    char *signed_msg = sign(PLAIN_MSG("example.org"), "sel");
    char *body = strstr(signed_msg, "Hello Bob.");
    (void)state;
    assert_non_null(body);
    body[0] = 'J'; /* "Jello Bob." */
    check(&o, signed_msg, OTHER_IP, "bounce@elsewhere.example.com");
    assert_hit(&o, "DKIM_REJECT", "example.org: body altered after signing (body hash mismatch)");
    assert_null(hit(&o, "DKIM_ALLOW"));
    assert_int_equal(o.res.n_dkim_pass, 0);
    assert_true(o.res.dkim_signed);
    /* Neither SPF nor DKIM authenticates example.org, which says p=reject. */
    assert_hit(&o, "DMARC_REJECT", "example.org: p=reject, SPF not aligned, DKIM not aligned");
    assert_int_equal(o.res.dmarc, AUTH_DMARC_REJECT);
    done(&o);
    free(signed_msg);
}

static void test_dkim_unsigned_missing_and_bad_key(void **state)
{
    struct outcome o;
    char *no_key = sign(PLAIN_MSG("example.org"), "nokey");
    char *junk_key = sign(PLAIN_MSG("example.org"), "junk");
    (void)state;
    check(&o, PLAIN_MSG("example.org"), GOOD_IP, "alice@example.org");
    assert_hit(&o, "DKIM_NA", "no signature");
    assert_false(o.res.dkim_signed);
    done(&o);
    check(&o, no_key, GOOD_IP, "alice@example.org");
    assert_hit(&o, "DKIM_PERMFAIL", "example.org: no key at nokey._domainkey.example.org");
    done(&o);
    check(&o, junk_key, GOOD_IP, "alice@example.org");
    assert_hit_prefix(&o, "DKIM_PERMFAIL", "");
    assert_null(hit(&o, "DKIM_ALLOW"));
    done(&o);
    free(no_key);
    free(junk_key);
}

static void test_dmarc_policies(void **state)
{
    struct outcome o;
    (void)state;
    /* SPF passes for pass.example.org, aligned (relaxed) with From: example.org's subdomain;
       the policy comes from the organizational domain's record. */
    check(&o, PLAIN_MSG("pass.example.org"), GOOD_IP, "alice@pass.example.org");
    assert_hit(&o, "DMARC_ALLOW", "pass.example.org: SPF aligned");
    done(&o);
    check(&o, PLAIN_MSG("q.example.net"), OTHER_IP, "alice@q.example.net");
    assert_hit(&o, "DMARC_QUARANTINE",
               "q.example.net: p=quarantine, SPF not aligned, DKIM not aligned");
    assert_int_equal(o.res.dmarc, AUTH_DMARC_QUARANTINE);
    done(&o);
    check(&o, PLAIN_MSG("monitor.example.net"), OTHER_IP, "alice@monitor.example.net");
    assert_hit_prefix(&o, "DMARC_SOFTFAIL", "");
    assert_null(hit(&o, "DMARC_REJECT"));
    done(&o);
    check(&o, PLAIN_MSG("half.example.net"), OTHER_IP, "alice@half.example.net");
    assert_hit_prefix(&o, "DMARC_QUARANTINE", "");
    assert_null(hit(&o, "DMARC_REJECT"));
    done(&o);
    check(&o, PLAIN_MSG("bad.example.net"), OTHER_IP, "alice@bad.example.net");
    assert_hit_prefix(&o, "DMARC_PERMFAIL", "");
    done(&o);
    check(&o, PLAIN_MSG("nodmarc.example.com"), GOOD_IP, "alice@nodmarc.example.com");
    assert_hit(&o, "DMARC_NA", "nodmarc.example.com: no DMARC record");
    assert_int_equal(o.res.dmarc, AUTH_DMARC_NA);
    assert_string_equal(o.res.from_domain, "nodmarc.example.com");
    done(&o);
    check(&o, "Subject: no from\n\nbody\n", GOOD_IP, "alice@example.org");
    assert_hit(&o, "DMARC_NA", "no From: domain");
    done(&o);
}

static void test_silent_dns_gives_temperrors_within_budget(void **state)
{
    struct test_bad_dns *bad = test_bad_dns_start(TEST_BAD_DNS_SILENT);
    char *signed_msg = sign(PLAIN_MSG("example.org"), "sel");
    struct outcome o;
    (void)state;
    assert_non_null(bad);
    check_with(&o, test_bad_dns_port(bad), 600, signed_msg, GOOD_IP, "mx.example.org",
               "alice@example.org");
    assert_true(o.elapsed_s < 0.9);
    assert_hit_prefix(&o, "SPF_TEMPERROR", "");
    assert_hit(&o, "DKIM_TEMPFAIL",
               "example.org: DNS lookup of key sel._domainkey.example.org failed or timed out");
    assert_hit_prefix(&o, "DMARC_TEMPFAIL", "");
    assert_null(hit(&o, "DKIM_ALLOW"));
    assert_null(hit(&o, "SPF_FAIL"));
    done(&o);
    free(signed_msg);
    test_bad_dns_stop(bad);
}

static void test_garbage_dns_gives_temperrors(void **state)
{
    enum test_bad_dns_mode modes[] = {TEST_BAD_DNS_RANDOM, TEST_BAD_DNS_TRUNCATED,
                                      TEST_BAD_DNS_LOOP, TEST_BAD_DNS_HUGE};
    char *signed_msg = sign(PLAIN_MSG("example.org"), "sel");
    size_t i;
    (void)state;
    for (i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        struct test_bad_dns *bad = test_bad_dns_start(modes[i]);
        struct outcome o;
        assert_non_null(bad);
        check_with(&o, test_bad_dns_port(bad), 1500, signed_msg, GOOD_IP, "mx.example.org",
                   "alice@example.org");
        assert_true(o.elapsed_s < 2.0);
        assert_hit_prefix(&o, "SPF_TEMPERROR", "");
        assert_hit_prefix(&o, "DKIM_TEMPFAIL", "");
        assert_hit_prefix(&o, "DMARC_TEMPFAIL", "");
        assert_true(test_bad_dns_queries(bad) > 0);
        done(&o);
        test_bad_dns_stop(bad);
    }
    free(signed_msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spf_pass_through_a_and_include),
        cmocka_unit_test(test_spf_fail_softfail_neutral),
        cmocka_unit_test(test_spf_none_permerror_and_no_client_ip),
        cmocka_unit_test(test_spf_null_sender_checks_helo),
        cmocka_unit_test(test_dkim_valid_signature_allows),
        cmocka_unit_test(test_dkim_altered_body_rejects),
        cmocka_unit_test(test_dkim_unsigned_missing_and_bad_key),
        cmocka_unit_test(test_dmarc_policies),
        cmocka_unit_test(test_silent_dns_gives_temperrors_within_budget),
        cmocka_unit_test(test_garbage_dns_gives_temperrors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
