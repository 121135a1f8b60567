/*
 * Tests for src/stat/bayes.c on a real LMDB store: learning, idempotency,
 * moving between classes, unlearning exactly, min_learns, tenants, bulk
 * groups, and the feature-stream version guard.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/buf.h"
#include "message/message.h"
#include "stat/bayes.h"
#include "store/kv.h"
#include "text/features.h"

struct fixture {
    char dir[64];
    char uri[128];
    struct kv *kv;
    struct bayes *b;
};

static struct bayes_config test_config = {.min_learns = 3, .min_learns_class = 2, .per_tenant = true};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/mxw-test-bayes-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->uri, sizeof f->uri, "lmdb:%s/tokens.lmdb", f->dir);
    assert_int_equal(kv_open(f->uri, &f->kv), KV_OK);
    f->b = bayes_new(f->kv, &test_config);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char path[128];
    bayes_free(f->b);
    kv_close(f->kv);
    snprintf(path, sizeof path, "%s/tokens.lmdb", f->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/tokens.lmdb-lock", f->dir);
    unlink(path);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* A message about topic with a serial number, parsed and featurised. */
struct sample {
    struct message *m;
    struct features f;
    uint8_t digest[BAYES_DIGEST_BYTES];
};

static void sample_make(struct sample *s, const char *topic, int serial)
{
    char raw[1024];
    int len = snprintf(raw, sizeof raw,
                       "From: sender%d@example.com\nSubject: %s number %d\nMessage-ID: <%s-%d@x>\n\n"
                       "%s %s %s body text about %s with serial %d\n",
                       serial, topic, serial, topic, serial, topic, topic, topic, topic, serial);
    s->m = message_parse(raw, (size_t)len, NULL);
    features_extract(s->m->arena, s->m, &s->f, NULL, NULL);
    bayes_digest(raw, (size_t)len, s->digest);
}

static void learn(struct bayes *b, const char *topic, int serial, enum bayes_class cls,
                  const char *tenant, enum bayes_learn_outcome want)
{
    struct sample s;
    enum bayes_learn_outcome got;
    sample_make(&s, topic, serial);
    assert_int_equal(bayes_learn(b, s.digest, &s.f, cls, tenant, BAYES_ORIGIN_MANUAL, &got), 0);
    assert_int_equal(got, want);
    message_free(s.m);
}

static double classify(struct bayes *b, const char *topic, int serial, const char *tenant,
                       struct bayes_result *res)
{
    struct sample s;
    sample_make(&s, topic, serial);
    assert_int_equal(bayes_classify(b, &s.f, tenant, res), 0);
    message_free(s.m);
    return res->p_spam;
}

static void test_no_result_before_min_learns(void **state)
{
    struct fixture *f = *state;
    struct bayes_result res;
    learn(f->b, "viagra pills", 1, BAYES_CLASS_SPAM, NULL, BAYES_LEARNED);
    learn(f->b, "meeting agenda", 1, BAYES_CLASS_HAM, NULL, BAYES_LEARNED);
    classify(f->b, "viagra pills", 9, NULL, &res);
    assert_false(res.ready);
    assert_true(res.p_spam == 0.5);
}

static void train(struct bayes *b, const char *tenant)
{
    int i;
    for (i = 0; i < 5; i++) {
        learn(b, "cheap viagra pills casino", i, BAYES_CLASS_SPAM, tenant, BAYES_LEARNED);
        learn(b, "project meeting agenda notes", i, BAYES_CLASS_HAM, tenant, BAYES_LEARNED);
    }
}

static void test_learned_classes_are_separated(void **state)
{
    struct fixture *f = *state;
    struct bayes_result res;
    train(f->b, NULL);
    assert_true(classify(f->b, "cheap viagra pills casino", 99, NULL, &res) > 0.9);
    assert_true(res.ready);
    assert_true(res.tokens_used > 0);
    assert_true(classify(f->b, "project meeting agenda notes", 99, NULL, &res) < 0.1);
}

static void test_learning_twice_counts_once(void **state)
{
    struct fixture *f = *state;
    struct bayes_stat st;
    learn(f->b, "lottery winner", 1, BAYES_CLASS_SPAM, NULL, BAYES_LEARNED);
    learn(f->b, "lottery winner", 1, BAYES_CLASS_SPAM, NULL, BAYES_ALREADY_LEARNED);
    assert_int_equal(bayes_stat(f->b, NULL, &st), 0);
    assert_int_equal(st.learned[BAYES_CLASS_SPAM], 1);
}

static void test_learning_as_other_class_moves(void **state)
{
    struct fixture *f = *state;
    struct bayes_stat st;
    int cls;
    struct sample s;
    learn(f->b, "invoice attached", 1, BAYES_CLASS_SPAM, NULL, BAYES_LEARNED);
    learn(f->b, "invoice attached", 1, BAYES_CLASS_PHISHING, NULL, BAYES_MOVED);
    assert_int_equal(bayes_stat(f->b, NULL, &st), 0);
    assert_int_equal(st.learned[BAYES_CLASS_SPAM], 0);
    assert_int_equal(st.learned[BAYES_CLASS_PHISHING], 1);
    sample_make(&s, "invoice attached", 1);
    assert_int_equal(bayes_learned_class(f->b, s.digest, &cls, NULL), 0);
    assert_int_equal(cls, BAYES_CLASS_PHISHING);
    message_free(s.m);
}

static void test_unlearn_restores_counts(void **state)
{
    struct fixture *f = *state;
    struct sample s;
    enum bayes_class was;
    uint32_t before[BAYES_N_CLASSES], after[BAYES_N_CLASSES];
    struct bayes_stat st;

    sample_make(&s, "refinance mortgage", 4);
    assert_int_equal(kv_counters_get(f->kv, "bt", s.f.hash, 1, BAYES_N_CLASSES, before), 0);
    learn(f->b, "refinance mortgage", 4, BAYES_CLASS_SPAM, NULL, BAYES_LEARNED);
    assert_int_equal(bayes_unlearn(f->b, s.digest, &s.f, &was), 0);
    assert_int_equal(was, BAYES_CLASS_SPAM);
    assert_int_equal(kv_counters_get(f->kv, "bt", s.f.hash, 1, BAYES_N_CLASSES, after), 0);
    assert_memory_equal(before, after, sizeof before);
    assert_int_equal(bayes_stat(f->b, NULL, &st), 0);
    assert_int_equal(st.learned[BAYES_CLASS_SPAM], 0);
    assert_int_equal(bayes_unlearn(f->b, s.digest, &s.f, &was), BAYES_ERR_NOT_LEARNED);
    message_free(s.m);
}

static void test_tenant_uses_own_statistics_once_it_has_enough(void **state)
{
    struct fixture *f = *state;
    struct bayes_result res;
    struct bayes_stat st;
    /* Globally "newsletter deals" is ham; example.org's own users call it spam. */
    int i;
    for (i = 0; i < 5; i++) {
        learn(f->b, "newsletter deals weekly", i, BAYES_CLASS_HAM, NULL, BAYES_LEARNED);
        learn(f->b, "cheap viagra pills", i, BAYES_CLASS_SPAM, NULL, BAYES_LEARNED);
    }
    classify(f->b, "newsletter deals weekly", 50, "example.org", &res);
    assert_null(res.tenant);
    assert_true(res.p_spam < 0.5);
    for (i = 10; i < 14; i++) {
        learn(f->b, "newsletter deals weekly", i, BAYES_CLASS_SPAM, "example.org", BAYES_LEARNED);
        learn(f->b, "quarterly board minutes", i, BAYES_CLASS_HAM, "example.org", BAYES_LEARNED);
    }
    assert_int_equal(bayes_stat(f->b, "example.org", &st), 0);
    assert_int_equal(st.learned[BAYES_CLASS_SPAM], 4);
    classify(f->b, "newsletter deals weekly", 51, "example.org", &res);
    assert_non_null(res.tenant);
    assert_string_equal(res.tenant, "example.org");
    assert_true(res.p_spam > 0.5);
    /* Learning for a tenant also teaches the global statistics. */
    assert_int_equal(bayes_stat(f->b, NULL, &st), 0);
    assert_int_equal(st.learned[BAYES_CLASS_SPAM], 9);
}

static void test_other_classes_get_probabilities(void **state)
{
    struct fixture *f = *state;
    struct bayes_result res;
    int i;
    train(f->b, NULL);
    for (i = 0; i < 3; i++)
        learn(f->b, "wire transfer urgent ceo confidential", i, BAYES_CLASS_BEC, NULL,
              BAYES_LEARNED);
    classify(f->b, "wire transfer urgent ceo confidential", 77, NULL, &res);
    assert_true(res.p_class[BAYES_CLASS_BEC] > 0.9);
    assert_true(res.p_class[BAYES_CLASS_PHISHING] < 0); /* nothing learned: not ready */
}

/* Learns the topic as spam in n messages and meeting notes as ham in n, then
 * returns how much more spam the four topic words make a message than its first
 * word alone. */
static double four_words_over_one(struct bayes *b, int n)
{
    struct bayes_result res;
    double four, one;
    int i;
    for (i = 0; i < n; i++) {
        learn(b, "alpha bravo charlie delta", i, BAYES_CLASS_SPAM, NULL, BAYES_LEARNED);
        learn(b, "project meeting agenda notes", i, BAYES_CLASS_HAM, NULL, BAYES_LEARNED);
    }
    four = classify(b, "alpha bravo charlie delta", 99, NULL, &res);
    one = classify(b, "alpha", 99, NULL, &res);
    return four - one;
}

static void test_tokens_learned_together_vote_once(void **state)
{
    struct fixture *f = *state;
    /* Six messages: the four words (and their subj: and Message-ID tokens) have
     * the same counts, so they are one piece of evidence. */
    assert_true(fabs(four_words_over_one(f->b, 6)) < 1e-12);
}

static void test_rare_tokens_with_equal_counts_all_vote(void **state)
{
    struct fixture *f = *state;
    /* Five messages: too few for equal counts to mean a common origin. */
    assert_true(four_words_over_one(f->b, 5) > 1e-6);
}

static void test_bulk_group_commits_on_flush(void **state)
{
    struct fixture *f = *state;
    struct bayes_stat st;
    size_t dropped = 7;
    bayes_set_bulk(f->b, true);
    learn(f->b, "casino bonus", 1, BAYES_CLASS_SPAM, NULL, BAYES_LEARNED);
    learn(f->b, "casino bonus", 2, BAYES_CLASS_SPAM, NULL, BAYES_LEARNED);
    /* The same message again inside the group is recognised (the group is flushed first). */
    learn(f->b, "casino bonus", 1, BAYES_CLASS_SPAM, NULL, BAYES_ALREADY_LEARNED);
    assert_int_equal(bayes_flush(f->b, &dropped), 0);
    assert_int_equal(dropped, 0);
    bayes_set_bulk(f->b, false);
    assert_int_equal(bayes_stat(f->b, NULL, &st), 0);
    assert_int_equal(st.learned[BAYES_CLASS_SPAM], 2);
}

static void test_store_of_another_stream_version_is_refused(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *batch = kv_batch_new();
    struct bayes *fresh;
    struct bayes_result res;
    struct sample s;
    enum bayes_learn_outcome outcome;

    kv_batch_put(batch, "bv", "stream", 6, "999", 3, 0);
    assert_int_equal(kv_batch_commit(f->kv, batch), KV_OK);
    kv_batch_free(batch);
    fresh = bayes_new(f->kv, &test_config);
    sample_make(&s, "anything", 1);
    assert_int_equal(bayes_classify(fresh, &s.f, NULL, &res), BAYES_ERR_VERSION);
    assert_int_equal(bayes_learn(fresh, s.digest, &s.f, BAYES_CLASS_HAM, NULL,
                                 BAYES_ORIGIN_MANUAL, &outcome),
                     BAYES_ERR_VERSION);
    message_free(s.m);
    bayes_free(fresh);
}

static void test_digest_ignores_transit_headers(void **state)
{
    const char a[] = "Received: from a by b\nMessage-ID: <1@x>\nSubject: s\n\nbody\n";
    const char b[] = "Delivered-To: u@x\nReceived: from c by d\nMessage-ID: <1@x>\nSubject: s\n\nbody\n";
    const char c[] = "Message-ID: <1@x>\nSubject: s\n\nother body\n";
    uint8_t da[BAYES_DIGEST_BYTES], db[BAYES_DIGEST_BYTES], dc[BAYES_DIGEST_BYTES];
    (void)state;
    bayes_digest(a, sizeof a - 1, da);
    bayes_digest(b, sizeof b - 1, db);
    bayes_digest(c, sizeof c - 1, dc);
    assert_memory_equal(da, db, BAYES_DIGEST_BYTES);
    assert_memory_not_equal(da, dc, BAYES_DIGEST_BYTES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_result_before_min_learns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_learned_classes_are_separated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_learning_twice_counts_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_learning_as_other_class_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlearn_restores_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenant_uses_own_statistics_once_it_has_enough, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_other_classes_get_probabilities, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens_learned_together_vote_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rare_tokens_with_equal_counts_all_vote, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bulk_group_commits_on_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_of_another_stream_version_is_refused, setup,
                                        teardown),
        cmocka_unit_test(test_digest_ignores_transit_headers),
    };
    int rc;
    message_library_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    message_library_shutdown();
    return rc;
}
