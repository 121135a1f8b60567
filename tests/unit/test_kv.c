/*
 * Tests for src/store/kv.c, kv_lmdb.c and kv_redis.c.
 *
 * One suite of behaviour tests runs twice, once per backend, through a
 * fixture that opens a fresh store: LMDB on a file in a temporary directory
 * (under $TMPDIR, removed afterwards), Redis on a real redis-server that this
 * program starts on a free loopback port (--save '' --appendonly no
 * --daemonize yes --pidfile) and stops by pid at the end. Each Redis test
 * starts from FLUSHALL. Backend-specific tests follow (map growth, sharing of
 * an environment, restart and timeouts of Redis, the documented key layout),
 * then the URI checks. redis-server must be installed (Debian redis-server).
 *
 * This binary re-executes itself with "--lmdb-grow-child PATH" to play a
 * second process that grows an LMDB map under the first one's feet.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "store/kv.h"
#include "redis_server.h"

/* ---- helpers ---- */


static void incr1(struct kv_batch *b, const char *ns, uint64_t key, int32_t d0, int32_t d1,
                  unsigned ttl)
{
    int32_t d[2] = {d0, d1};
    kv_batch_incr(b, ns, key, 2, d, ttl);
}

static void read2(struct kv *kv, const char *ns, uint64_t key, uint32_t *c0, uint32_t *c1)
{
    uint32_t out[2] = {0xdeadbeef, 0xdeadbeef};
    assert_int_equal(kv_counters_get(kv, ns, &key, 1, 2, out), KV_OK);
    *c0 = out[0];
    *c1 = out[1];
}

static void assert_counters(struct kv *kv, const char *ns, uint64_t key, uint32_t want0,
                            uint32_t want1)
{
    uint32_t c0, c1;
    read2(kv, ns, key, &c0, &c1);
    assert_int_equal(c0, want0);
    assert_int_equal(c1, want1);
}

static void commit_ok(struct kv *kv, struct kv_batch *b)
{
    int rc = kv_batch_commit(kv, b);
    if (rc != KV_OK) fail_msg("commit: rc=%d %s", rc, err_msg());
}

/* Asserts the blob's presence and, if want is not NULL, its value. */
static void assert_blob(struct kv *kv, const char *ns, const void *key, size_t key_len,
                        const char *want, size_t want_len)
{
    struct buf v = {0};
    bool found = true;
    assert_int_equal(kv_get(kv, ns, key, key_len, &v, &found), KV_OK);
    if (want == NULL) {
        assert_false(found);
        assert_int_equal(v.len, 0);
    } else {
        assert_true(found);
        assert_int_equal(v.len, want_len);
        assert_memory_equal(v.data, want, want_len);
    }
    buf_free(&v);
}

/* ---- a real redis-server for the Redis group ---- */

static struct test_redis redis_srv;
static char lmdb_dir[256];
static int test_counter;

static redisContext *redis_admin(void)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_srv.port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Runs one command on a fresh admin connection; returns the reply (caller frees) or NULL. */
static redisReply *redis_admin_command(const char *fmt, ...)
{
    redisContext *c = redis_admin();
    redisReply *reply;
    va_list ap;
    if (c == NULL) return NULL;
    va_start(ap, fmt);
    reply = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return reply;
}

static const char *tmp_base(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
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

static int lmdb_group_setup(void **state)
{
    (void)state;
    snprintf(lmdb_dir, sizeof lmdb_dir, "%s/test_kv_lmdb.XXXXXX", tmp_base());
    return mkdtemp(lmdb_dir) ? 0 : -1;
}

static int lmdb_group_teardown(void **state)
{
    (void)state;
    return rmdir(lmdb_dir); /* fails, and so fails the run, if a test left a file behind */
}

/* ---- the per-test fixture ---- */

struct fixture {
    bool is_redis;
    char uri[600];
    char path[300];  /* LMDB: this test's file */
    char extra[300]; /* LMDB: a second file a test may use */
    struct kv *kv;
};

static int open_fixture(struct fixture *f)
{
    int rc = kv_open(f->uri, &f->kv);
    if (rc != KV_OK) {
        fprintf(stderr, "kv_open(%s): %d %s\n", f->uri, rc, err_msg());
        return -1;
    }
    return 0;
}

static int lmdb_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    int n = ++test_counter;
    snprintf(f->path, sizeof f->path, "%s/t%d.lmdb", lmdb_dir, n);
    snprintf(f->extra, sizeof f->extra, "%s/t%d-extra.lmdb", lmdb_dir, n);
    snprintf(f->uri, sizeof f->uri, "lmdb:%s", f->path);
    *state = f;
    return open_fixture(f);
}

static void unlink_lmdb(const char *path)
{
    char lock[320];
    snprintf(lock, sizeof lock, "%s-lock", path);
    unlink(path);
    unlink(lock);
}

static int lmdb_teardown(void **state)
{
    struct fixture *f = *state;
    kv_close(f->kv);
    unlink_lmdb(f->path);
    unlink_lmdb(f->extra);
    free(f);
    return 0;
}

static int redis_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    redisReply *reply;
    f->is_redis = true;
    snprintf(f->uri, sizeof f->uri, "redis://127.0.0.1:%d", redis_srv.port);
    *state = f;
    if (redis_srv.pid <= 0 && test_redis_start(&redis_srv) != 0) return -1;
    reply = redis_admin_command("FLUSHALL");
    if (reply == NULL) return -1;
    freeReplyObject(reply);
    return open_fixture(f);
}

static int redis_teardown(void **state)
{
    struct fixture *f = *state;
    kv_close(f->kv);
    free(f);
    return 0;
}

#define TEST_REDIS_PASSWORD "s3cr@t"

/* Also lifts the password a failed password test may have left set. */
static int redis_teardown_password(void **state)
{
    redisContext *c = redis_admin();
    if (c) {
        redisReply *reply = redisCommand(c, "AUTH %s", TEST_REDIS_PASSWORD);
        if (reply) freeReplyObject(reply);
        reply = redisCommand(c, "CONFIG SET requirepass %s", "");
        if (reply) freeReplyObject(reply);
        redisFree(c);
    }
    return redis_teardown(state);
}

/* ---- the shared suite ---- */

static void test_absent_counters_read_as_zero(void **state)
{
    struct fixture *f = *state;
    uint64_t keys[3] = {1, 0xffffffffffffffffULL, 42};
    uint32_t out[3 * 4 + 1];
    size_t i;

    memset(out, 0xaa, sizeof out);
    assert_int_equal(kv_counters_get(f->kv, "bayes", keys, 3, 4, out), KV_OK);
    for (i = 0; i < 12; i++)
        assert_int_equal(out[i], 0);
    assert_int_equal(out[12], 0xaaaaaaaa); /* nothing written past n * width */
}

static void test_increments_accumulate(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();

    incr1(b, "bayes", 7, 1, 0, 0);
    incr1(b, "bayes", 7, 2, 5, 0); /* the same key twice in one batch: one op */
    assert_int_equal(kv_batch_size(b), 1);
    incr1(b, "other", 7, 1, 1, 0); /* another namespace, another counter */
    assert_int_equal(kv_batch_size(b), 2);
    commit_ok(f->kv, b);
    assert_counters(f->kv, "bayes", 7, 3, 5);
    commit_ok(f->kv, b); /* a committed batch is left unchanged and can be applied again */
    assert_counters(f->kv, "bayes", 7, 6, 10);
    kv_batch_free(b);
}

/* Reads may be cached (LMDB caches per snapshot): a commit through this handle
 * or another one must be seen by the next read all the same. */
static void test_reads_see_every_commit_after_a_cached_read(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();
    struct kv *other;
    uint64_t keys[2] = {41, 42};
    uint32_t got[4];

    assert_int_equal(kv_counters_get(f->kv, "bayes", keys, 2, 2, got), KV_OK);
    assert_int_equal(got[0] + got[1] + got[2] + got[3], 0);
    incr1(b, "bayes", 41, 1, 0, 0);
    commit_ok(f->kv, b);
    assert_counters(f->kv, "bayes", 41, 1, 0);
    assert_int_equal(kv_open(f->uri, &other), KV_OK);
    kv_batch_clear(b);
    incr1(b, "bayes", 41, 1, 0, 0);
    incr1(b, "bayes", 42, 0, 7, 0);
    commit_ok(other, b);
    assert_int_equal(kv_counters_get(f->kv, "bayes", keys, 2, 2, got), KV_OK);
    assert_int_equal(got[0], 2);
    assert_int_equal(got[3], 7);
    /* The same key in another namespace is another entry. */
    assert_counters(f->kv, "other", 41, 0, 0);
    kv_close(other);
    kv_batch_free(b);
}

/* Clamping happens at each step, in the order the batch was filled, even when
 * a backend applies the increments of one key together. */
static void test_clamping_follows_batch_order(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();

    incr1(b, "bayes", 77, -1, 2, 0); /* 0 - 1 clamps to 0 */
    incr1(b, "bayes", 77, 1, -5, 0); /* then 0 + 1 */
    commit_ok(f->kv, b);
    assert_counters(f->kv, "bayes", 77, 1, 0);
    kv_batch_free(b);
}

/* Increments are combined only before the first negative one: +1, -5, +1 from zero is 1
 * (0 + 1 - 5 clamps to 0, then + 1), where +2 then -5 would be 0. */
static void test_combining_stops_at_a_negative_delta(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();

    incr1(b, "bayes", 78, 1, 0, 0);
    incr1(b, "bayes", 78, -5, 0, 0);
    incr1(b, "bayes", 78, 1, 0, 0);
    assert_int_equal(kv_batch_size(b), 3);
    commit_ok(f->kv, b);
    assert_counters(f->kv, "bayes", 78, 1, 0);
    kv_batch_free(b);
}

/* Many counters, each queued three times in a large batch (the combining table grows). */
static void test_repeated_increments_of_many_counters(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();
    uint64_t k;
    int round;

    for (round = 0; round < 3; round++)
        for (k = 1; k <= 5000; k++)
            incr1(b, "bayes", k * 0x10001, 1, round == 2 ? 2 : 0, k % 2 ? 0 : 3600);
    assert_int_equal(kv_batch_size(b), 5000);
    commit_ok(f->kv, b);
    for (k = 1; k <= 5000; k += 499)
        assert_counters(f->kv, "bayes", k * 0x10001, 3, 2);
    kv_batch_free(b);
}

/* Hash-like keys (spread over the top bits, as the stores sort them in buckets) and clustered
 * ones (which fall back to the radix sort), written and read back in another order. */
static void test_many_keys_read_back_in_any_order(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();
    enum { N = 3000 };
    uint64_t *keys = malloc(2 * N * sizeof *keys);
    uint32_t *out = malloc(2 * N * 2 * sizeof *out);
    size_t i;

    for (i = 0; i < N; i++) {
        keys[i] = (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull; /* spread */
        keys[N + i] = 1000 + i;                              /* clustered */
        incr1(b, "bayes", keys[i], (int32_t)(i % 7) + 1, (int32_t)(i % 5), 0);
        incr1(b, "bayes", keys[N + i], (int32_t)(i % 3) + 1, 9, 0);
    }
    commit_ok(f->kv, b);
    for (i = 0; i < N; i++) { /* reverse the order of each half */
        uint64_t t = keys[i];
        keys[i] = keys[2 * N - 1 - i];
        keys[2 * N - 1 - i] = t;
    }
    assert_int_equal(kv_counters_get(f->kv, "bayes", keys, 2 * N, 2, out), KV_OK);
    for (i = 0; i < N; i++) {
        size_t spread = 2 * N - 1 - i, clustered = N - 1 - i;
        assert_int_equal(out[2 * spread], i % 7 + 1);
        assert_int_equal(out[2 * spread + 1], i % 5);
        assert_int_equal(out[2 * clustered], i % 3 + 1);
        assert_int_equal(out[2 * clustered + 1], 9);
    }
    free(keys);
    free(out);
    kv_batch_free(b);
}

static void test_decrement_clamps_at_zero(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();

    incr1(b, "bayes", 1, 5, 2, 0);
    commit_ok(f->kv, b);
    kv_batch_clear(b);
    incr1(b, "bayes", 1, -7, -1, 0);
    incr1(b, "bayes", 2, -3, 0, 0); /* absent key decremented */
    commit_ok(f->kv, b);
    assert_counters(f->kv, "bayes", 1, 0, 1);
    assert_counters(f->kv, "bayes", 2, 0, 0);
    /* The clamp is stored, not just applied on read: counting restarts from zero. */
    kv_batch_clear(b);
    incr1(b, "bayes", 1, 3, 0, 0);
    incr1(b, "bayes", 2, 1, 1, 0);
    commit_ok(f->kv, b);
    assert_counters(f->kv, "bayes", 1, 3, 1);
    assert_counters(f->kv, "bayes", 2, 1, 1);
    /* Clamped at every step within one batch too. */
    kv_batch_clear(b);
    incr1(b, "bayes", 3, -5, 0, 0);
    incr1(b, "bayes", 3, 2, 0, 0);
    commit_ok(f->kv, b);
    assert_counters(f->kv, "bayes", 3, 2, 0);
    kv_batch_free(b);
}

static void test_width_is_respected(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();
    int32_t d3[3] = {1, 2, 3}, d16[KV_MAX_WIDTH], d1 = 9;
    uint64_t keys[2] = {10, 11};
    uint32_t out[2 * KV_MAX_WIDTH + 1];
    unsigned i;

    for (i = 0; i < KV_MAX_WIDTH; i++)
        d16[i] = (int32_t)(100 + i);
    kv_batch_incr(b, "w", 10, 3, d3, 0);
    kv_batch_incr(b, "w", 11, 1, &d1, 0);
    kv_batch_incr(b, "w", 12, KV_MAX_WIDTH, d16, 0);
    commit_ok(f->kv, b);

    memset(out, 0xaa, sizeof out);
    assert_int_equal(kv_counters_get(f->kv, "w", keys, 2, 3, out), KV_OK);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 2);
    assert_int_equal(out[2], 3);
    assert_int_equal(out[3], 9);
    assert_int_equal(out[4], 0);
    assert_int_equal(out[5], 0);
    assert_int_equal(out[6], 0xaaaaaaaa);

    memset(out, 0xaa, sizeof out);
    keys[0] = 12;
    assert_int_equal(kv_counters_get(f->kv, "w", keys, 1, KV_MAX_WIDTH, out), KV_OK);
    for (i = 0; i < KV_MAX_WIDTH; i++)
        assert_int_equal(out[i], 100 + i);
    assert_int_equal(out[KV_MAX_WIDTH], 0xaaaaaaaa);
    kv_batch_free(b);
}

static void test_many_keys_in_one_batch_and_one_get(void **state)
{
    struct fixture *f = *state;
    enum { N = 10000 };
    struct kv_batch *b = kv_batch_new();
    uint64_t *keys = malloc(N * sizeof *keys);
    uint32_t *out = malloc(2 * N * sizeof *out);
    size_t i;

    for (i = 0; i < N; i++) {
        /* Spread over the whole key space, and queued in no particular order. */
        uint64_t key = (uint64_t)i * 0x9E3779B97F4A7C15ULL;
        incr1(b, "bayes:tok", key, (int32_t)(i % 7) + 1, (int32_t)(i % 3), 0);
    }
    assert_int_equal(kv_batch_size(b), N);
    commit_ok(f->kv, b);
    for (i = 0; i < N; i++)
        keys[i] = (uint64_t)(N - 1 - i) * 0x9E3779B97F4A7C15ULL;
    assert_int_equal(kv_counters_get(f->kv, "bayes:tok", keys, N, 2, out), KV_OK);
    for (i = 0; i < N; i++) {
        size_t orig = N - 1 - i;
        if (out[2 * i] != orig % 7 + 1 || out[2 * i + 1] != orig % 3)
            fail_msg("key %zu: got %u,%u", orig, out[2 * i], out[2 * i + 1]);
    }
    free(keys);
    free(out);
    kv_batch_free(b);
}

static void test_blobs_put_get_del(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();
    const char value[] = "v\0with\0nuls";
    const char key[] = "1.2.3.4|a@b.example|c@d.example";
    struct buf v = {0};
    bool found = false;

    assert_blob(f->kv, "grey", key, sizeof key - 1, NULL, 0);
    kv_batch_put(b, "grey", key, sizeof key - 1, value, sizeof value, 0);
    kv_batch_put(b, "grey", "empty", 5, "", 0, 0);
    commit_ok(f->kv, b);
    assert_blob(f->kv, "grey", key, sizeof key - 1, value, sizeof value);
    assert_blob(f->kv, "grey", "empty", 5, "", 0);

    /* kv_get appends to what the buffer holds. */
    buf_append_str(&v, "prefix:");
    assert_int_equal(kv_get(f->kv, "grey", "empty", 5, &v, &found), KV_OK);
    assert_true(found);
    assert_string_equal(v.data, "prefix:");
    buf_free(&v);

    kv_batch_clear(b);
    kv_batch_put(b, "grey", key, sizeof key - 1, "second", 6, 0);
    commit_ok(f->kv, b);
    assert_blob(f->kv, "grey", key, sizeof key - 1, "second", 6);

    kv_batch_clear(b);
    kv_batch_del(b, "grey", key, sizeof key - 1);
    kv_batch_del(b, "grey", "never-there", 11); /* absent is fine */
    commit_ok(f->kv, b);
    assert_blob(f->kv, "grey", key, sizeof key - 1, NULL, 0);
    assert_blob(f->kv, "grey", "empty", 5, "", 0);
    kv_batch_free(b);
}

static void test_binary_and_long_blob_keys_are_distinct(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();
    unsigned char long_a[KV_MAX_KEY], long_b[KV_MAX_KEY];
    const char bin[] = {'a', ':', 0, '\n', (char)0xff};
    size_t i;

    /* Two maximal keys that differ only in their last byte (LMDB hashes their tails). */
    for (i = 0; i < KV_MAX_KEY; i++)
        long_a[i] = long_b[i] = (unsigned char)('a' + i % 26);
    long_b[KV_MAX_KEY - 1] ^= 1;
    kv_batch_put(b, "rep", long_a, sizeof long_a, "A", 1, 0);
    kv_batch_put(b, "rep", long_b, sizeof long_b, "B", 1, 0);
    kv_batch_put(b, "rep", long_a, sizeof long_a - 1, "a-1", 3, 0);
    kv_batch_put(b, "rep", bin, sizeof bin, "bin", 3, 0);
    kv_batch_put(b, "rep", "a", 1, "plain", 5, 0);
    kv_batch_put(b, "rep", "", 0, "empty key", 9, 0);
    commit_ok(f->kv, b);
    assert_blob(f->kv, "rep", long_a, sizeof long_a, "A", 1);
    assert_blob(f->kv, "rep", long_b, sizeof long_b, "B", 1);
    assert_blob(f->kv, "rep", long_a, sizeof long_a - 1, "a-1", 3);
    assert_blob(f->kv, "rep", bin, sizeof bin, "bin", 3);
    assert_blob(f->kv, "rep", bin, 2, NULL, 0);
    assert_blob(f->kv, "rep", "a", 1, "plain", 5);
    assert_blob(f->kv, "rep", "", 0, "empty key", 9);
    kv_batch_free(b);
}

static void test_namespaces_are_isolated(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();
    /* An 8-byte blob key equal to a counter key's big-endian bytes. */
    const unsigned char be5[8] = {0, 0, 0, 0, 0, 0, 0, 5};

    incr1(b, "a", 5, 1, 0, 0);
    incr1(b, "a:b", 5, 2, 0, 0);
    incr1(b, "ab", 5, 3, 0, 0);
    kv_batch_put(b, "x", "y:z", 3, "x/y:z", 5, 0);
    kv_batch_put(b, "x:y", "z", 1, "x:y/z", 5, 0);
    kv_batch_put(b, "a", be5, sizeof be5, "blob", 4, 0);
    commit_ok(f->kv, b);
    assert_counters(f->kv, "a", 5, 1, 0);
    assert_counters(f->kv, "a:b", 5, 2, 0);
    assert_counters(f->kv, "ab", 5, 3, 0);
    assert_counters(f->kv, "b", 5, 0, 0);
    assert_blob(f->kv, "x", "y:z", 3, "x/y:z", 5);
    assert_blob(f->kv, "x:y", "z", 1, "x:y/z", 5);
    assert_blob(f->kv, "x:y", "y:z", 3, NULL, 0);
    assert_blob(f->kv, "a", be5, sizeof be5, "blob", 4);
    assert_blob(f->kv, "a:b", be5, sizeof be5, NULL, 0);
    kv_batch_free(b);
}

static void test_ttl_expires_entries(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();

    kv_batch_put(b, "rl", "short", 5, "gone soon", 9, 1);
    kv_batch_put(b, "rl", "forever", 7, "stays", 5, 0);
    incr1(b, "rl", 1, 4, 1, 1); /* expires */
    incr1(b, "rl", 2, 4, 0, 0); /* never expires */
    incr1(b, "rl", 3, 1, 0, 1); /* given a TTL ... */
    incr1(b, "rl", 3, 1, 0, 0); /* ... then made permanent by ttl 0 */
    incr1(b, "rl", 4, 1, 0, 0); /* permanent ... */
    incr1(b, "rl", 4, 1, 0, 1); /* ... then given a TTL */
    commit_ok(f->kv, b);
    assert_blob(f->kv, "rl", "short", 5, "gone soon", 9);
    assert_counters(f->kv, "rl", 1, 4, 1);

    test_sleep_ms(1300);
    assert_blob(f->kv, "rl", "short", 5, NULL, 0);
    assert_blob(f->kv, "rl", "forever", 7, "stays", 5);
    assert_counters(f->kv, "rl", 1, 0, 0);
    assert_counters(f->kv, "rl", 2, 4, 0);
    assert_counters(f->kv, "rl", 3, 2, 0);
    assert_counters(f->kv, "rl", 4, 0, 0);

    /* An expired counter counts again from zero; an expired blob can be re-put. */
    kv_batch_clear(b);
    incr1(b, "rl", 1, 1, 0, 0);
    kv_batch_expect(b, "rl", "short", 5, NULL, 0);
    kv_batch_put(b, "rl", "short", 5, "again", 5, 0);
    commit_ok(f->kv, b);
    assert_counters(f->kv, "rl", 1, 1, 0);
    assert_blob(f->kv, "rl", "short", 5, "again", 5);
    kv_batch_free(b);
}

static void test_expectation_conflict_writes_nothing(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();

    /* Absent-expectation holds on a fresh store. */
    kv_batch_expect(b, "grey", "triplet", 7, NULL, 0);
    kv_batch_put(b, "grey", "triplet", 7, "first", 5, 0);
    incr1(b, "grey", 99, 1, 0, 0);
    commit_ok(f->kv, b);
    assert_counters(f->kv, "grey", 99, 1, 0);

    /* The same batch again: the blob now exists, so nothing of it is written. */
    kv_batch_clear(b);
    kv_batch_expect(b, "grey", "triplet", 7, NULL, 0);
    kv_batch_put(b, "grey", "triplet", 7, "second", 6, 0);
    kv_batch_put(b, "grey", "other", 5, "x", 1, 0);
    incr1(b, "grey", 99, 1, 0, 0);
    assert_int_equal(kv_batch_commit(f->kv, b), KV_CONFLICT);
    assert_true(strlen(err_msg()) > 0);
    assert_counters(f->kv, "grey", 99, 1, 0);
    assert_blob(f->kv, "grey", "triplet", 7, "first", 5);
    assert_blob(f->kv, "grey", "other", 5, NULL, 0);

    /* A value expectation: holds for the current value, fails for any other. */
    kv_batch_clear(b);
    kv_batch_expect(b, "grey", "triplet", 7, "first", 5);
    kv_batch_put(b, "grey", "triplet", 7, "third", 5, 0);
    commit_ok(f->kv, b);
    assert_blob(f->kv, "grey", "triplet", 7, "third", 5);
    kv_batch_clear(b);
    kv_batch_expect(b, "grey", "triplet", 7, "first", 5);
    kv_batch_del(b, "grey", "triplet", 7);
    assert_int_equal(kv_batch_commit(f->kv, b), KV_CONFLICT);
    kv_batch_clear(b);
    kv_batch_expect(b, "grey", "missing", 7, "x", 1); /* a value expected of an absent blob */
    incr1(b, "grey", 99, 5, 0, 0);
    assert_int_equal(kv_batch_commit(f->kv, b), KV_CONFLICT);
    assert_blob(f->kv, "grey", "triplet", 7, "third", 5);
    assert_counters(f->kv, "grey", 99, 1, 0);

    /* A conflict leaves the connection usable for the next batch. */
    kv_batch_clear(b);
    incr1(b, "grey", 99, 1, 0, 0);
    commit_ok(f->kv, b);
    assert_counters(f->kv, "grey", 99, 2, 0);
    kv_batch_free(b);
}

static void test_failed_batch_is_all_or_nothing(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();
    char too_long[KV_MAX_KEY + 1];
    uint32_t out[2 * 1000];
    uint64_t keys[1000];
    int32_t bad[KV_MAX_WIDTH + 1] = {0};
    size_t i;

    /* Many writes, with the failing expectation queued last. */
    for (i = 0; i < 1000; i++) {
        keys[i] = i;
        incr1(b, "all", i, 1, 1, 0);
    }
    kv_batch_put(b, "all", "blob", 4, "v", 1, 0);
    kv_batch_expect(b, "all", "guard", 5, "must exist", 10);
    assert_int_equal(kv_batch_commit(f->kv, b), KV_CONFLICT);
    assert_int_equal(kv_counters_get(f->kv, "all", keys, 1000, 2, out), KV_OK);
    for (i = 0; i < 2000; i++)
        assert_int_equal(out[i], 0);
    assert_blob(f->kv, "all", "blob", 4, NULL, 0);

    /* An operation refused while queueing fails the whole commit. */
    memset(too_long, 'k', sizeof too_long);
    kv_batch_clear(b);
    incr1(b, "all", 1, 1, 0, 0);
    kv_batch_put(b, "all", too_long, sizeof too_long, "v", 1, 0);
    assert_int_equal(kv_batch_size(b), 1);
    assert_int_equal(kv_batch_commit(f->kv, b), KV_ERR);
    assert_non_null(strstr(err_msg(), "longer than"));
    kv_batch_clear(b);
    kv_batch_incr(b, "all", 1, KV_MAX_WIDTH + 1, bad, 0);
    kv_batch_incr(b, "all", 1, 0, bad, 0);
    assert_int_equal(kv_batch_commit(f->kv, b), KV_ERR);
    assert_non_null(strstr(err_msg(), "width"));
    assert_counters(f->kv, "all", 1, 0, 0);

    /* Cleared, the batch works again. */
    kv_batch_clear(b);
    incr1(b, "all", 1, 1, 0, 0);
    commit_ok(f->kv, b);
    assert_counters(f->kv, "all", 1, 1, 0);
    kv_batch_free(b);
}

static void test_invalid_reads_are_errors(void **state)
{
    struct fixture *f = *state;
    char long_ns[KV_MAX_NS + 2];
    uint64_t key = 1;
    uint32_t out[KV_MAX_WIDTH + 1];
    struct buf v = {0};
    bool found = true;

    memset(long_ns, 'n', sizeof long_ns - 1);
    long_ns[sizeof long_ns - 1] = '\0';
    assert_int_equal(kv_counters_get(f->kv, "ns", &key, 1, 0, out), KV_ERR);
    assert_int_equal(kv_counters_get(f->kv, "ns", &key, 1, KV_MAX_WIDTH + 1, out), KV_ERR);
    assert_int_equal(kv_counters_get(f->kv, long_ns, &key, 1, 1, out), KV_ERR);
    assert_int_equal(kv_counters_get(f->kv, "", &key, 1, 1, out), KV_ERR);
    assert_int_equal(kv_get(f->kv, "ns", "k", KV_MAX_KEY + 1, &v, &found), KV_ERR);
    assert_false(found);
    assert_true(strlen(err_msg()) > 0);
    assert_int_equal(kv_counters_get(f->kv, "ns", &key, 0, 1, out), KV_OK); /* n = 0 */
}

static void test_stat_counts_entries(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();
    struct kv_stat st;
    uint64_t i;

    for (i = 0; i < 100; i++)
        incr1(b, "s", i, 1, 0, 0);
    kv_batch_put(b, "s", "blob", 4, "v", 1, 0);
    commit_ok(f->kv, b);
    assert_int_equal(kv_stat(f->kv, &st), KV_OK);
    assert_int_equal(st.entries, 101);
    assert_true(st.size_bytes > 0);
    assert_string_equal(kv_backend_name(f->kv), f->is_redis ? "redis" : "lmdb");
    kv_batch_free(b);
}

/* ---- LMDB only ---- */

static void test_lmdb_map_grows_when_full(void **state)
{
    struct fixture *f = *state;
    char uri[400];
    struct kv *kv;
    struct kv_batch *b = kv_batch_new();
    enum { N = 20000 };
    uint64_t *keys = malloc(N * sizeof *keys);
    uint32_t *out = malloc(2 * N * sizeof *out);
    char blob[4000];
    struct kv_stat st;
    size_t i;

    snprintf(uri, sizeof uri, "lmdb:%s?map_size=64k", f->extra);
    assert_int_equal(kv_open(uri, &kv), KV_OK);
    /* One commit several times the initial map... */
    for (i = 0; i < N; i++) {
        keys[i] = i * 7919;
        incr1(b, "g", keys[i], (int32_t)i + 1, 1, 0);
    }
    commit_ok(kv, b);
    /* ... and many commits of blobs on top. */
    memset(blob, 'x', sizeof blob);
    for (i = 0; i < 100; i++) {
        kv_batch_clear(b);
        kv_batch_put(b, "g", &i, sizeof i, blob, sizeof blob, 0);
        commit_ok(kv, b);
    }
    assert_int_equal(kv_counters_get(kv, "g", keys, N, 2, out), KV_OK);
    for (i = 0; i < N; i++) {
        assert_int_equal(out[2 * i], i + 1);
        assert_int_equal(out[2 * i + 1], 1);
    }
    for (i = 0; i < 100; i++)
        assert_blob(kv, "g", &i, sizeof i, blob, sizeof blob);
    assert_int_equal(kv_stat(kv, &st), KV_OK);
    assert_true(st.size_bytes > 64 * 1024 * 4);
    assert_int_equal(st.entries, N + 100);
    kv_close(kv);

    /* Reopened with the small size, the file keeps its data and its grown map. */
    assert_int_equal(kv_open(uri, &kv), KV_OK);
    keys[0] = (N - 1) * 7919;
    assert_int_equal(kv_counters_get(kv, "g", keys, 1, 2, out), KV_OK);
    assert_int_equal(out[0], N);
    kv_batch_clear(b);
    incr1(b, "g", 1, 1, 0, 0);
    commit_ok(kv, b);
    kv_close(kv);
    free(keys);
    free(out);
    kv_batch_free(b);
}

static void test_lmdb_full_when_map_cannot_grow(void **state)
{
    struct fixture *f = *state;
    char uri[400];
    struct kv *kv;
    struct kv_batch *b = kv_batch_new();
    uint64_t i;

    snprintf(uri, sizeof uri, "lmdb:%s?map_size=64k&max_map_size=128k", f->extra);
    assert_int_equal(kv_open(uri, &kv), KV_OK);
    incr1(b, "g", 1, 1, 0, 0);
    commit_ok(kv, b);
    kv_batch_clear(b);
    incr1(b, "g", 1, 1, 0, 0);
    for (i = 100; i < 100 + 20000; i++)
        incr1(b, "g", i, 1, 0, 0);
    assert_int_equal(kv_batch_commit(kv, b), KV_FULL);
    assert_non_null(strstr(err_msg(), "map full"));
    assert_counters(kv, "g", 1, 1, 0);
    assert_counters(kv, "g", 100, 0, 0);
    /* Still usable for what fits. */
    kv_batch_clear(b);
    incr1(b, "g", 1, 1, 0, 0);
    commit_ok(kv, b);
    assert_counters(kv, "g", 1, 2, 0);
    kv_close(kv);
    kv_batch_free(b);
}

static void test_lmdb_handles_share_one_environment(void **state)
{
    struct fixture *f = *state;
    char alias[400], dir[300];
    struct kv *other;
    struct kv_batch *b = kv_batch_new();
    const char *slash;

    /* The same file by another spelling of its path. */
    slash = strrchr(f->path, '/');
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - f->path), f->path);
    snprintf(alias, sizeof alias, "lmdb:%s/./%s", dir, slash + 1);
    assert_int_equal(kv_open(alias, &other), KV_OK);
    incr1(b, "sh", 1, 1, 0, 0);
    commit_ok(f->kv, b);
    assert_counters(other, "sh", 1, 1, 0);
    commit_ok(other, b);
    assert_counters(f->kv, "sh", 1, 2, 0);
    kv_close(other);
    /* Closing one handle leaves the other working. */
    commit_ok(f->kv, b);
    assert_counters(f->kv, "sh", 1, 3, 0);
    kv_batch_free(b);
}

struct reader_args {
    const char *uri;
    volatile int stop;
    int errors;
    int reads;
};

static void *growth_reader(void *arg)
{
    struct reader_args *a = arg;
    uint64_t keys[500];
    uint32_t out[1000], last = 0;
    struct kv *kv;
    size_t i;

    for (i = 0; i < 500; i++)
        keys[i] = i;
    if (kv_open(a->uri, &kv) != KV_OK) {
        a->errors++;
        return NULL;
    }
    while (!a->stop) {
        if (kv_counters_get(kv, "g", keys, 500, 2, out) != KV_OK) {
            a->errors++;
            break;
        }
        for (i = 0; i < 500; i++)
            if (out[2 * i] != out[0]) a->errors++; /* each commit updates all 500 at once */
        if (out[0] < last) a->errors++;
        last = out[0];
        a->reads++;
    }
    kv_close(kv);
    return NULL;
}

static void test_lmdb_map_grows_under_concurrent_readers(void **state)
{
    struct fixture *f = *state;
    char uri[400];
    struct reader_args args = {.uri = uri};
    struct kv_batch *b = kv_batch_new();
    struct kv *kv;
    pthread_t reader;
    char blob[3000];
    size_t round, i;

    snprintf(uri, sizeof uri, "lmdb:%s?map_size=64k", f->extra);
    assert_int_equal(kv_open(uri, &kv), KV_OK);
    assert_int_equal(pthread_create(&reader, NULL, growth_reader, &args), 0);
    memset(blob, 'y', sizeof blob);
    for (round = 0; round < 60; round++) {
        kv_batch_clear(b);
        for (i = 0; i < 500; i++)
            incr1(b, "g", i, 1, 0, 0);
        for (i = 0; i < 20; i++) {
            size_t k = round * 20 + i;
            kv_batch_put(b, "blobs", &k, sizeof k, blob, sizeof blob, 0);
        }
        commit_ok(kv, b);
    }
    args.stop = 1;
    pthread_join(reader, NULL);
    assert_int_equal(args.errors, 0);
    assert_true(args.reads > 0);
    assert_counters(kv, "g", 499, 60, 0);
    kv_close(kv);
    kv_batch_free(b);
}

static const char *self_exe;

/* The child process of the next test: grows the map of path well past its size. */
static int lmdb_grow_child(const char *path)
{
    char uri[400];
    struct kv *kv;
    struct kv_batch *b = kv_batch_new();
    uint64_t i;
    int rc;

    snprintf(uri, sizeof uri, "lmdb:%s?map_size=64k", path);
    if (kv_open(uri, &kv) != KV_OK) return 1;
    for (i = 0; i < 30000; i++)
        incr1(b, "child", i, 1, 0, 0);
    rc = kv_batch_commit(kv, b);
    kv_close(kv);
    kv_batch_free(b);
    return rc == KV_OK ? 0 : 1;
}

static void test_lmdb_adopts_map_grown_by_another_process(void **state)
{
    struct fixture *f = *state;
    char uri[400];
    struct kv *kv;
    struct kv_batch *b = kv_batch_new();
    pid_t child;
    int status;

    snprintf(uri, sizeof uri, "lmdb:%s?map_size=64k", f->extra);
    assert_int_equal(kv_open(uri, &kv), KV_OK);
    incr1(b, "parent", 1, 1, 0, 0);
    commit_ok(kv, b);
    assert_counters(kv, "parent", 1, 1, 0); /* leaves a reset read txn behind */
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        execl(self_exe, self_exe, "--lmdb-grow-child", f->extra, (char *)NULL);
        _exit(127);
    }
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* Our map is now smaller than the file: reads and writes must adopt its size. */
    assert_counters(kv, "child", 29999, 1, 0);
    commit_ok(kv, b);
    assert_counters(kv, "parent", 1, 2, 0);
    kv_close(kv);
    kv_batch_free(b);
}

/* ---- Redis only ---- */

static void test_redis_reconnects_after_restart(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();
    uint64_t key = 1;
    uint32_t out[2];
    struct buf v = {0};
    bool found;
    double t0;

    incr1(b, "r", 1, 1, 0, 0);
    commit_ok(f->kv, b);

    test_redis_stop(&redis_srv);
    test_sleep_ms(1050); /* past the reconnect delay, so the next call really tries */
    t0 = test_now_s();
    /* The dead connection is noticed, one reconnect is tried and refused. */
    assert_int_equal(kv_counters_get(f->kv, "r", &key, 1, 2, out), KV_UNAVAILABLE);
    assert_non_null(strstr(err_msg(), "cannot connect"));
    /* Then the handle waits a second before it tries again. */
    assert_int_equal(kv_batch_commit(f->kv, b), KV_UNAVAILABLE);
    assert_non_null(strstr(err_msg(), "next reconnect"));
    assert_int_equal(kv_get(f->kv, "r", "k", 1, &v, &found), KV_UNAVAILABLE);
    assert_int_equal(kv_batch_commit(f->kv, b), KV_UNAVAILABLE);
    assert_true(test_now_s() - t0 < 0.5); /* refused at once, not after a timeout */

    assert_int_equal(test_redis_start(&redis_srv), 0);
    if (test_now_s() - t0 < 0.9) {
        /* Still within the second: the handle does not try, though the server is back. */
        assert_int_equal(kv_counters_get(f->kv, "r", &key, 1, 2, out), KV_UNAVAILABLE);
        assert_non_null(strstr(err_msg(), "next reconnect"));
    }
    test_sleep_ms(1050);
    /* The server came back empty (no persistence): a fresh start. */
    assert_counters(f->kv, "r", 1, 0, 0);
    commit_ok(f->kv, b);
    assert_counters(f->kv, "r", 1, 1, 0);
    buf_free(&v);
    kv_batch_free(b);
}

static void test_redis_idle_connection_survives_restart(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();

    /* A restart while the handle is idle is invisible: the first read on the dead
     * connection reconnects once and succeeds, and so does the first commit (it
     * checks an idle connection before writing). */
    incr1(b, "r", 2, 3, 0, 0);
    commit_ok(f->kv, b);
    test_redis_stop(&redis_srv);
    assert_int_equal(test_redis_start(&redis_srv), 0);
    test_sleep_ms(1050); /* past the reconnect delay from the handle's own connect */
    assert_counters(f->kv, "r", 2, 0, 0);

    test_redis_stop(&redis_srv);
    assert_int_equal(test_redis_start(&redis_srv), 0);
    test_sleep_ms(1050);
    commit_ok(f->kv, b);
    assert_counters(f->kv, "r", 2, 3, 0);
    kv_batch_free(b);
}

/* A stand-in for Redis: answers the connect handshake (SCRIPT LOAD, PING), then
 * either says nothing more or hangs up. */
struct fake_server {
    int listen_fd;
    int port;
    bool hang_up;
};

static void *fake_server_run(void *arg)
{
    struct fake_server *s = arg;
    static const char handshake[] = "$40\r\n0123456789012345678901234567890123456789\r\n+PONG\r\n";
    char in[4096];
    bool answered = false;
    int fd = accept(s->listen_fd, NULL, NULL);
    ssize_t n;

    if (fd < 0) return NULL;
    while ((n = read(fd, in, sizeof in - 1)) > 0) {
        in[n] = '\0';
        if (!answered && strstr(in, "PING")) {
            if (write(fd, handshake, sizeof handshake - 1) < 0) break;
            answered = true;
            if (s->hang_up) break;
        }
    }
    close(fd);
    return NULL;
}

static void fake_server_start(struct fake_server *s, pthread_t *thread)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(s->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s->listen_fd, 1), 0);
    getsockname(s->listen_fd, (struct sockaddr *)&sa, &len);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(thread, NULL, fake_server_run, s), 0);
}

static void test_redis_command_timeout_is_unavailable(void **state)
{
    struct fake_server s = {0};
    char uri[200];
    struct kv *kv;
    pthread_t thread;
    uint64_t key = 1;
    uint32_t out[1];
    double t0;
    (void)state;

    fake_server_start(&s, &thread);
    snprintf(uri, sizeof uri, "redis://127.0.0.1:%d?timeout_ms=200&connect_timeout_ms=500", s.port);
    assert_int_equal(kv_open(uri, &kv), KV_OK);
    t0 = test_now_s();
    assert_int_equal(kv_counters_get(kv, "t", &key, 1, 1, out), KV_UNAVAILABLE);
    assert_true(test_now_s() - t0 < 1.0);
    kv_close(kv);
    pthread_join(thread, NULL);
    close(s.listen_fd);
}

static void test_redis_server_gone_mid_write_does_not_kill_process(void **state)
{
    struct fake_server s = {.hang_up = true};
    struct sigaction dfl = {.sa_handler = SIG_DFL}, old;
    enum { N = 20000 }; /* ~1 MB of HMGETs: the writes outlast the peer's socket */
    uint64_t *keys = calloc(N, sizeof *keys);
    uint32_t *out = calloc(N, sizeof *out);
    char uri[200];
    struct kv *kv;
    pthread_t thread;
    (void)state;

    /* The default disposition, under which an unguarded write would kill us. */
    sigaction(SIGPIPE, &dfl, &old);
    fake_server_start(&s, &thread);
    snprintf(uri, sizeof uri, "redis://127.0.0.1:%d", s.port);
    assert_int_equal(kv_open(uri, &kv), KV_OK);
    pthread_join(thread, NULL); /* the server has hung up */
    close(s.listen_fd);
    test_sleep_ms(50);
    assert_int_equal(kv_counters_get(kv, "t", keys, N, 1, out), KV_UNAVAILABLE);
    kv_close(kv);
    sigaction(SIGPIPE, &old, NULL);
    free(keys);
    free(out);
}

static void test_redis_open_refused_is_unavailable(void **state)
{
    char uri[100];
    struct kv *kv = (struct kv *)1;
    double t0 = test_now_s();
    (void)state;

    snprintf(uri, sizeof uri, "redis://127.0.0.1:%d", test_free_port());
    assert_int_equal(kv_open(uri, &kv), KV_UNAVAILABLE);
    assert_null(kv);
    assert_non_null(strstr(err_msg(), "cannot connect"));
    assert_true(test_now_s() - t0 < 1.0);
}

static void test_redis_password_and_db_from_uri(void **state)
{
    struct fixture *f = *state;
    redisReply *reply;
    struct kv_batch *b = kv_batch_new();
    struct kv *kv = NULL;
    char uri[200];
    redisContext *c;

    (void)f;
    reply = redis_admin_command("CONFIG SET requirepass %s", TEST_REDIS_PASSWORD);
    assert_non_null(reply);
    freeReplyObject(reply);

    snprintf(uri, sizeof uri, "redis://:s3cr%%40t@127.0.0.1:%d/3", redis_srv.port);
    assert_int_equal(kv_open(uri, &kv), KV_OK);
    incr1(b, "auth", 1, 1, 0, 0);
    commit_ok(kv, b);
    kv_close(kv);

    snprintf(uri, sizeof uri, "redis://:wrong@127.0.0.1:%d/3", redis_srv.port);
    assert_int_equal(kv_open(uri, &kv), KV_ERR);
    assert_non_null(strstr(err_msg(), "AUTH"));
    snprintf(uri, sizeof uri, "redis://127.0.0.1:%d", redis_srv.port);
    assert_int_equal(kv_open(uri, &kv), KV_ERR);

    /* The write went to database 3, and only there. */
    c = redis_admin();
    assert_non_null(c);
    reply = redisCommand(c, "AUTH %s", TEST_REDIS_PASSWORD);
    freeReplyObject(reply);
    reply = redisCommand(c, "SELECT 3");
    freeReplyObject(reply);
    reply = redisCommand(c, "EXISTS mxw:auth:0000000000000001");
    assert_int_equal(reply->integer, 1);
    freeReplyObject(reply);
    reply = redisCommand(c, "SELECT 0");
    freeReplyObject(reply);
    reply = redisCommand(c, "DBSIZE");
    assert_int_equal(reply->integer, 0);
    freeReplyObject(reply);
    reply = redisCommand(c, "CONFIG SET requirepass %s", "");
    freeReplyObject(reply);
    redisFree(c);
    kv_batch_free(b);
}

static void test_redis_key_layout_matches_docs(void **state)
{
    struct fixture *f = *state;
    struct kv_batch *b = kv_batch_new();
    const unsigned char bin[] = {0x00, 0xff, ':'};
    redisContext *c;
    redisReply *reply;

    incr1(b, "bayes:tok", 0xff, 3, 0, 0);
    incr1(b, "rl", 0x1234abcd5678ef90ULL, 1, 0, 60);
    kv_batch_put(b, "grey", "1.2.3.4|a@b", 11, "t", 1, 0);
    kv_batch_put(b, "grey", bin, sizeof bin, "u", 1, 30);
    commit_ok(f->kv, b);

    c = redis_admin();
    assert_non_null(c);
    reply = redisCommand(c, "TYPE mxw:bayes:tok:00000000000000ff");
    assert_string_equal(reply->str, "hash");
    freeReplyObject(reply);
    reply = redisCommand(c, "HGET mxw:bayes:tok:00000000000000ff 0");
    assert_string_equal(reply->str, "3");
    freeReplyObject(reply);
    reply = redisCommand(c, "HEXISTS mxw:bayes:tok:00000000000000ff 1"); /* zero deltas skipped */
    assert_int_equal(reply->integer, 0);
    freeReplyObject(reply);
    reply = redisCommand(c, "TTL mxw:bayes:tok:00000000000000ff");
    assert_int_equal(reply->integer, -1);
    freeReplyObject(reply);
    reply = redisCommand(c, "TTL mxw:rl:1234abcd5678ef90");
    assert_in_range(reply->integer, 55, 60);
    freeReplyObject(reply);
    reply = redisCommand(c, "GET mxw:grey:=1.2.3.4|a@b");
    assert_string_equal(reply->str, "t");
    freeReplyObject(reply);
    reply = redisCommand(c, "GET mxw:grey:#00ff3a");
    assert_string_equal(reply->str, "u");
    freeReplyObject(reply);
    reply = redisCommand(c, "TTL mxw:grey:#00ff3a");
    assert_in_range(reply->integer, 25, 30);
    freeReplyObject(reply);

    /* A negative stored by someone else reads as zero. */
    reply = redisCommand(c, "HSET mxw:bayes:tok:00000000000000ff 1 -4");
    freeReplyObject(reply);
    assert_counters(f->kv, "bayes:tok", 0xff, 3, 0);
    redisFree(c);
    kv_batch_free(b);
}

/* ---- URIs ---- */

static void test_bad_uris_are_errors_with_a_message(void **state)
{
    static const char *const bad[] = {
        "",
        "sqlite:/tmp/x",
        "lmdb",
        "lmdb:",
        "lmdb:/proc/no-such-dir/x.lmdb",
        "lmdb:/tmp",
        "lmdb:/tmp/x.lmdb?map_size=abc",
        "lmdb:/tmp/x.lmdb?map_size=1k",
        "lmdb:/tmp/x.lmdb?map_size=1m&max_map_size=64k",
        "lmdb:/tmp/x.lmdb?sync=sometimes",
        "lmdb:/tmp/x.lmdb?bogus=1",
        "redis://",
        "redis://:6379",
        "redis://127.0.0.1:notaport",
        "redis://127.0.0.1:99999",
        "redis://127.0.0.1:0",
        "redis://127.0.0.1:6379/x",
        "redis://127.0.0.1:6379?timeout_ms=0",
        "redis://127.0.0.1:6379?timeout_ms=",
        "redis://127.0.0.1:6379?color=blue",
        "redis://password@127.0.0.1:6379",
        "redis://:bad%zzescape@127.0.0.1:6379",
        "redis://[::1:6379",
    };
    size_t i;
    (void)state;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct kv *kv = (struct kv *)1;
        err_set("%s", "");
        if (kv_open(bad[i], &kv) != KV_ERR) fail_msg("\"%s\" was accepted", bad[i]);
        assert_null(kv);
        if (strlen(err_msg()) == 0) fail_msg("\"%s\" gave no message", bad[i]);
    }
}

#define KV_SHARED_TESTS(setup, teardown)                                                           \
    cmocka_unit_test_setup_teardown(test_absent_counters_read_as_zero, setup, teardown),           \
        cmocka_unit_test_setup_teardown(test_increments_accumulate, setup, teardown),              \
        cmocka_unit_test_setup_teardown(test_clamping_follows_batch_order, setup, teardown),       \
        cmocka_unit_test_setup_teardown(test_combining_stops_at_a_negative_delta, setup,           \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_repeated_increments_of_many_counters, setup,          \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_many_keys_read_back_in_any_order, setup, teardown),   \
        cmocka_unit_test_setup_teardown(test_reads_see_every_commit_after_a_cached_read, setup,    \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_decrement_clamps_at_zero, setup, teardown),           \
        cmocka_unit_test_setup_teardown(test_width_is_respected, setup, teardown),                 \
        cmocka_unit_test_setup_teardown(test_many_keys_in_one_batch_and_one_get, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_blobs_put_get_del, setup, teardown),                  \
        cmocka_unit_test_setup_teardown(test_binary_and_long_blob_keys_are_distinct, setup,        \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_namespaces_are_isolated, setup, teardown),            \
        cmocka_unit_test_setup_teardown(test_ttl_expires_entries, setup, teardown),                \
        cmocka_unit_test_setup_teardown(test_expectation_conflict_writes_nothing, setup,           \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_failed_batch_is_all_or_nothing, setup, teardown),     \
        cmocka_unit_test_setup_teardown(test_invalid_reads_are_errors, setup, teardown),           \
        cmocka_unit_test_setup_teardown(test_stat_counts_entries, setup, teardown)

int main(int argc, char **argv)
{
    const struct CMUnitTest lmdb_tests[] = {
        KV_SHARED_TESTS(lmdb_setup, lmdb_teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_map_grows_when_full, lmdb_setup, lmdb_teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_full_when_map_cannot_grow, lmdb_setup,
                                        lmdb_teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_handles_share_one_environment, lmdb_setup,
                                        lmdb_teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_map_grows_under_concurrent_readers, lmdb_setup,
                                        lmdb_teardown),
        cmocka_unit_test_setup_teardown(test_lmdb_adopts_map_grown_by_another_process, lmdb_setup,
                                        lmdb_teardown),
    };
    const struct CMUnitTest redis_tests[] = {
        KV_SHARED_TESTS(redis_setup, redis_teardown),
        cmocka_unit_test_setup_teardown(test_redis_key_layout_matches_docs, redis_setup,
                                        redis_teardown),
        cmocka_unit_test_setup_teardown(test_redis_password_and_db_from_uri, redis_setup,
                                        redis_teardown_password),
        cmocka_unit_test_setup_teardown(test_redis_reconnects_after_restart, redis_setup,
                                        redis_teardown),
        cmocka_unit_test_setup_teardown(test_redis_idle_connection_survives_restart, redis_setup,
                                        redis_teardown),
        cmocka_unit_test(test_redis_command_timeout_is_unavailable),
        cmocka_unit_test(test_redis_server_gone_mid_write_does_not_kill_process),
        cmocka_unit_test(test_redis_open_refused_is_unavailable),
    };
    const struct CMUnitTest uri_tests[] = {
        cmocka_unit_test(test_bad_uris_are_errors_with_a_message),
    };
    int failed = 0;

    /* Growth and reconnection log on stderr; the test output stays readable without them. */
    log_set_level(LOG_LEVEL_ERROR);
    if (argc == 3 && strcmp(argv[1], "--lmdb-grow-child") == 0) return lmdb_grow_child(argv[2]);
    self_exe = "/proc/self/exe";
    failed +=
        cmocka_run_group_tests_name("kv_lmdb", lmdb_tests, lmdb_group_setup, lmdb_group_teardown);
    failed += cmocka_run_group_tests_name("kv_redis", redis_tests, redis_group_setup,
                                          redis_group_teardown);
    failed += cmocka_run_group_tests_name("kv_uri", uri_tests, NULL, NULL);
    return failed ? 1 : 0;
}
