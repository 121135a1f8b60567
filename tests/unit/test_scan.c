/*
 * Tests for src/scan/scan.c: the pipeline with the statistical classifier on
 * real stores. Redis: two workers share what either learns; Redis going away
 * mid-run gives BAYES_UNAVAILABLE and a finished scan, and the worker
 * recovers when Redis is back. LMDB: autolearn teaches unlearned mail and
 * never overrides an operator's label.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checks/symbols.h"
#include "core/config.h"
#include "message/message.h"
#include "redis_server.h"
#include "scan/scan.h"
#include "stat/bayes.h"
#include "text/features.h"

static struct test_redis redis;

static int has_symbol(const struct scanner *s, const struct scan *sc, const char *name)
{
    int id = symbols_lookup(scanner_symbols(s), name);
    return id >= 0 && result_find(&sc->result, id) != NULL;
}

static void make_message(char *out, size_t size, const char *topic, int serial)
{
    snprintf(out, size,
             "From: sender%d@example.com\nSubject: %s %d\nMessage-ID: <%d.%s@x>\n\n"
             "%s %s and more %s\n",
             serial, topic, serial, serial, topic, topic, topic, topic);
}

/* Learns n messages of each class through w's classifier. */
static void teach(struct scan_worker *w, int n)
{
    struct bayes *b = scan_worker_bayes(w);
    char raw[512];
    int i;

    assert_non_null(b);
    for (i = 0; i < n; i++) {
        int c;
        for (c = 0; c < 2; c++) {
            struct message *m;
            struct features f;
            uint8_t digest[BAYES_DIGEST_BYTES];
            enum bayes_learn_outcome outcome;
            make_message(raw, sizeof raw,
                         c == 0 ? "cheap casino pills bonus" : "team meeting agenda minutes", i);
            m = message_parse(raw, strlen(raw), NULL);
            features_extract(m->arena, m, &f, NULL, NULL);
            bayes_digest(raw, strlen(raw), digest);
            assert_int_equal(bayes_learn(b, digest, &f, c == 0 ? BAYES_CLASS_SPAM : BAYES_CLASS_HAM,
                                         NULL, BAYES_ORIGIN_MANUAL, &outcome),
                             0);
            message_free(m);
        }
    }
}

static struct scan *scan_topic(struct scan_worker *w, const char *topic, int serial)
{
    char raw[512];
    make_message(raw, sizeof raw, topic, serial);
    return scan_message(w, raw, strlen(raw), NULL);
}

static void redis_config(struct config *cfg)
{
    config_defaults(cfg);
    cfg->auth_enabled = false;
    cfg->dnsbl_enabled = false; /* no DNS here */
    snprintf(cfg->kv_uri, sizeof cfg->kv_uri, "redis://127.0.0.1:%d/0", redis.port);
    cfg->bayes_min_learns = 3;
}

static void test_workers_share_what_either_learns(void **state)
{
    struct config cfg;
    struct scanner *s;
    struct scan_worker *node1, *node2;
    struct scan *sc;
    (void)state;

    redis_config(&cfg);
    s = scanner_new(&cfg);
    node1 = scan_worker_new(s);
    node2 = scan_worker_new(s);
    sc = scan_topic(node2, "cheap casino pills bonus", 100);
    assert_false(has_symbol(s, sc, "BAYES_SPAM"));
    scan_free(sc);
    teach(node1, 4);
    sc = scan_topic(node2, "cheap casino pills bonus", 101);
    assert_true(has_symbol(s, sc, "BAYES_SPAM"));
    scan_free(sc);
    scan_worker_free(node1);
    scan_worker_free(node2);
    scanner_free(s);
}

static void test_redis_outage_gives_unavailable_then_recovers(void **state)
{
    struct config cfg;
    struct scanner *s;
    struct scan_worker *w;
    struct scan *sc;
    double t0;
    (void)state;

    redis_config(&cfg);
    s = scanner_new(&cfg);
    w = scan_worker_new(s);
    teach(w, 4);
    sc = scan_topic(w, "team meeting agenda minutes", 200);
    assert_true(has_symbol(s, sc, "BAYES_HAM"));
    scan_free(sc);

    test_redis_stop(&redis);
    t0 = test_now_s();
    sc = scan_topic(w, "team meeting agenda minutes", 201);
    assert_true(test_now_s() - t0 < 5.0); /* bounded: no hanging on a dead store */
    assert_true(has_symbol(s, sc, "BAYES_UNAVAILABLE"));
    assert_false(has_symbol(s, sc, "BAYES_HAM"));
    assert_true(has_symbol(s, sc, "MIME_GOOD")); /* the rest of the scan still ran */
    scan_free(sc);

    assert_int_equal(test_redis_start(&redis), 0);
    test_sleep_ms(1100); /* the store retries at most once a second */
    teach(w, 4);         /* the restarted server is empty (no persistence) */
    sc = scan_topic(w, "team meeting agenda minutes", 202);
    assert_false(has_symbol(s, sc, "BAYES_UNAVAILABLE"));
    assert_true(has_symbol(s, sc, "BAYES_HAM"));
    scan_free(sc);
    scan_worker_free(w);
    scanner_free(s);
}

/* A worker whose store was down when it first needed it gets it a second after it is back. */
static void test_worker_that_never_had_the_store_opens_it_when_it_is_back(void **state)
{
    struct config cfg;
    struct scanner *s;
    struct scan_worker *w;
    struct scan *sc;
    (void)state;

    redis_config(&cfg);
    s = scanner_new(&cfg);
    test_redis_stop(&redis);
    w = scan_worker_new(s);
    sc = scan_topic(w, "team meeting agenda minutes", 300);
    assert_true(has_symbol(s, sc, "BAYES_UNAVAILABLE"));
    scan_free(sc);
    assert_int_equal(test_redis_start(&redis), 0);
    test_sleep_ms(1100);
    teach(w, 4);
    sc = scan_topic(w, "team meeting agenda minutes", 301);
    assert_false(has_symbol(s, sc, "BAYES_UNAVAILABLE"));
    assert_true(has_symbol(s, sc, "BAYES_HAM"));
    scan_free(sc);
    scan_worker_free(w);
    scanner_free(s);
}

static void test_autolearn_teaches_unlearned_mail_only(void **state)
{
    char dir[] = "/tmp/mxw-test-scan-XXXXXX", path[128], raw[512];
    struct config cfg;
    struct scanner *s;
    struct scan_worker *w;
    struct scan *sc;
    struct message *m;
    struct features f;
    uint8_t digest[BAYES_DIGEST_BYTES];
    enum bayes_learn_outcome outcome;
    int cls;
    (void)state;

    assert_non_null(mkdtemp(dir));
    config_defaults(&cfg);
    cfg.auth_enabled = false;
    cfg.dnsbl_enabled = false;
    snprintf(cfg.kv_uri, sizeof cfg.kv_uri, "lmdb:%s/tokens.lmdb", dir);
    cfg.autolearn = true;
    cfg.autolearn_spam = -1.0; /* every scored message is "spam" for autolearn here */
    s = scanner_new(&cfg);
    w = scan_worker_new(s);

    /* An unlearned message is taught as spam by the scan. */
    make_message(raw, sizeof raw, "weekly offers", 1);
    sc = scan_message(w, raw, strlen(raw), NULL);
    scan_free(sc);
    bayes_digest(raw, strlen(raw), digest);
    assert_int_equal(bayes_learned_class(scan_worker_bayes(w), digest, &cls, NULL), 0);
    assert_int_equal(cls, BAYES_CLASS_SPAM);

    /* A message an operator labelled ham stays ham. */
    make_message(raw, sizeof raw, "quarterly report", 2);
    m = message_parse(raw, strlen(raw), NULL);
    features_extract(m->arena, m, &f, NULL, NULL);
    bayes_digest(raw, strlen(raw), digest);
    assert_int_equal(bayes_learn(scan_worker_bayes(w), digest, &f, BAYES_CLASS_HAM, NULL,
                                 BAYES_ORIGIN_MANUAL, &outcome),
                     0);
    message_free(m);
    sc = scan_message(w, raw, strlen(raw), NULL);
    scan_free(sc);
    assert_int_equal(bayes_learned_class(scan_worker_bayes(w), digest, &cls, NULL), 0);
    assert_int_equal(cls, BAYES_CLASS_HAM);

    scan_worker_free(w);
    scanner_free(s);
    snprintf(path, sizeof path, "%s/tokens.lmdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/tokens.lmdb-lock", dir);
    unlink(path);
    rmdir(dir);
}

static void test_reputation_from_one_node_scores_on_another(void **state)
{
    struct config cfg;
    struct scanner *s;
    struct scan_worker *a, *b;
    struct scan *sc;
    struct envelope env = {.mail_from = "news@shop.example", .client_ip = "203.0.113.7"};
    char raw[512];
    int i;
    (void)state;

    redis_config(&cfg);
    cfg.rules_paths[0] = '\0'; /* the built-in checks only: scores stay predictable */
    cfg.reputation_record_ham_below = 100.0;
    cfg.bayes_min_learns = 1000;
    s = scanner_new(&cfg);
    a = scan_worker_new(s);
    b = scan_worker_new(s);
    scan_worker_record_verdicts(a, true);
    for (i = 0; i < 8; i++) {
        snprintf(raw, sizeof raw, "From: news@shop.example\nSubject: s%d\n\nhello %d\n", i, i);
        sc = scan_message(a, raw, strlen(raw), &env);
        scan_free(sc);
    }
    /* b records nothing itself, but reads what a recorded through the shared store. */
    sc = scan_message(b, "Subject: x\n\nbody\n", 17, &env);
    assert_true(has_symbol(s, sc, "IP_REPUTATION_HAM"));
    assert_true(has_symbol(s, sc, "DOMAIN_REPUTATION_HAM"));
    scan_free(sc);
    scan_worker_free(a);
    scan_worker_free(b);
    scanner_free(s);
}

static void test_recorded_verdicts_wait_for_the_flush(void **state)
{
    struct config cfg;
    struct scanner *s;
    struct scan_worker *a, *b;
    struct scan *sc;
    struct envelope env = {.mail_from = "news@flush.example", .client_ip = "203.0.113.9"};
    static const char raw[] = "From: news@flush.example\nSubject: hello\n\nhello\n";
    (void)state;

    test_redis_flushall(&redis);
    redis_config(&cfg);
    cfg.rules_paths[0] = '\0';
    cfg.reputation_record_ham_below = 100.0;
    cfg.reputation_min_volume = 1;
    cfg.bayes_min_learns = 1000;
    s = scanner_new(&cfg);
    a = scan_worker_new(s);
    b = scan_worker_new(s);
    scan_worker_record_verdicts(a, true);
    scan_free(scan_message(a, raw, sizeof raw - 1, &env));
    /* The gateway answers the MTA before the verdict is written: not in the store yet. */
    sc = scan_message(b, "Subject: x\n\nbody\n", 17, &env);
    assert_false(has_symbol(s, sc, "IP_REPUTATION_HAM"));
    scan_free(sc);
    scan_worker_flush(a);
    sc = scan_message(b, "Subject: x\n\nbody\n", 17, &env);
    assert_true(has_symbol(s, sc, "IP_REPUTATION_HAM"));
    scan_free(sc);
    scan_worker_flush(a); /* nothing pending: a no-op */
    scan_worker_free(a);
    scan_worker_free(b);
    scanner_free(s);
}

static int group_setup(void **state)
{
    (void)state;
    message_library_init();
    return test_redis_open(&redis);
}

static int group_teardown(void **state)
{
    (void)state;
    test_redis_close(&redis);
    message_library_shutdown();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workers_share_what_either_learns),
        cmocka_unit_test(test_redis_outage_gives_unavailable_then_recovers),
        cmocka_unit_test(test_worker_that_never_had_the_store_opens_it_when_it_is_back),
        cmocka_unit_test(test_autolearn_teaches_unlearned_mail_only),
        cmocka_unit_test(test_reputation_from_one_node_scores_on_another),
        cmocka_unit_test(test_recorded_verdicts_wait_for_the_flush),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
