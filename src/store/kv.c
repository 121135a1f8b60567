/*
 * kv - the front of the store: picks a backend from the URI, checks every
 * argument once so backends need not, and keeps the write batch. See kv.h.
 *
 * URIs: "lmdb:PATH[?opts]" goes to kv_lmdb.c, "redis://...[?opts]" to
 * kv_redis.c; anything else is KV_ERR. The backend parses the rest.
 *
 * The batch is built for the learning path, which queues ~3,000 increments
 * per message: operations are fixed-size records in one growable array,
 * their deltas and blob bytes live in two more, and namespaces are interned
 * (a message touches a handful), so adding an operation allocates nothing
 * beyond amortised growth. An operation the front refuses (bad width, a key
 * or namespace too long) is not queued; it marks the batch invalid and the
 * commit fails with KV_ERR and the reason, so a caller bug cannot half-apply
 * a batch. kv_batch_clear() keeps the capacity for the next message.
 */
#include "store/kv.h"
#include "store/kv_backend.h"
#include "core/file.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct kv {
    const struct kv_ops *ops;
    void *state; /* owned by ops; freed by ops->close */
};

uint64_t kv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int kv_open(const char *uri, struct kv **out)
{
    const struct kv_ops *ops;
    const char *spec;
    void *state = NULL;
    int rc;

    *out = NULL;
    if (uri == NULL || *uri == '\0') {
        err_set("kv: empty store URI");
        return KV_ERR;
    }
    if (strncmp(uri, "lmdb:", 5) == 0) {
        char path[4096];
        ops = &kv_lmdb_ops;
        spec = uri + 5;
        /* The embedded default must just work: create var/ (or wherever) first. */
        snprintf(path, sizeof path, "%.*s", (int)strcspn(spec, "?"), spec);
        if (file_mkdir_parents(path) != 0) return KV_ERR;
    } else if (strncmp(uri, "redis://", 8) == 0) {
        ops = &kv_redis_ops;
        spec = uri + 8;
    } else {
        err_set("kv: unknown store URI \"%.100s\" (expected lmdb:PATH or redis://HOST:PORT)", uri);
        return KV_ERR;
    }
    rc = ops->open(spec, &state);
    if (rc != KV_OK) return rc;
    *out = xmalloc(sizeof **out);
    (*out)->ops = ops;
    (*out)->state = state;
    return KV_OK;
}

void kv_close(struct kv *kv)
{
    if (kv == NULL) return;
    kv->ops->close(kv->state);
    free(kv);
}

const char *kv_backend_name(const struct kv *kv)
{
    return kv->ops->name;
}

/* Returns the namespace's length, or 0 with err_set() if it is unusable. */
static size_t kv_check_ns(const char *ns)
{
    size_t len;
    if (ns == NULL || *ns == '\0') {
        err_set("kv: empty namespace");
        return 0;
    }
    len = strnlen(ns, KV_MAX_NS + 1);
    if (len > KV_MAX_NS) {
        err_set("kv: namespace \"%.40s...\" longer than %d bytes", ns, KV_MAX_NS);
        return 0;
    }
    return len;
}

int kv_counters_get(struct kv *kv, const char *ns, const uint64_t *keys, size_t n, unsigned width,
                    uint32_t *out)
{
    size_t ns_len = kv_check_ns(ns);
    if (ns_len == 0) return KV_ERR;
    if (width < 1 || width > KV_MAX_WIDTH) {
        err_set("kv: counter width %u outside 1..%d", width, KV_MAX_WIDTH);
        return KV_ERR;
    }
    if (n == 0) return KV_OK;
    return kv->ops->counters_get(kv->state, ns, ns_len, keys, n, width, out);
}

int kv_get(struct kv *kv, const char *ns, const void *key, size_t key_len, struct buf *value,
           bool *found)
{
    size_t ns_len = kv_check_ns(ns);
    *found = false;
    if (ns_len == 0) return KV_ERR;
    if (key_len > KV_MAX_KEY) {
        err_set("kv: key of %zu bytes longer than %d", key_len, KV_MAX_KEY);
        return KV_ERR;
    }
    return kv->ops->get(kv->state, ns, ns_len, key, key_len, value, found);
}

int kv_stat(struct kv *kv, struct kv_stat *st)
{
    memset(st, 0, sizeof *st);
    return kv->ops->stat(kv->state, st);
}

/* ---- the batch ---- */

struct kv_batch *kv_batch_new(void)
{
    return xcalloc(1, sizeof(struct kv_batch));
}

void kv_batch_free(struct kv_batch *b)
{
    if (b == NULL) return;
    free(b->ops);
    free(b->deltas);
    free(b->bytes);
    free(b->names);
    free(b->ns);
    free(b->incr_slots);
    free(b);
}

void kv_batch_clear(struct kv_batch *b)
{
    /* Capacity is kept: the next message queues about as much. Interned names
     * are dropped so a long-lived batch cannot accumulate namespaces. */
    b->n_ops = b->n_deltas = b->n_bytes = b->names_len = b->n_ns = 0;
    b->last_ns = 0;
    b->n_expect = b->n_blob_ops = 0;
    b->has_negative = false;
    b->invalid[0] = '\0';
    if (b->n_incr_slotted) memset(b->incr_slots, 0, b->incr_slots_cap * sizeof *b->incr_slots);
    b->n_incr_slotted = 0;
}

size_t kv_batch_size(const struct kv_batch *b)
{
    return b->n_ops;
}

/* Grows *arr (of elem_bytes each) so that it holds at least need elements. */
static void kv_grow(void **arr, size_t *cap, size_t need, size_t elem_bytes, size_t first)
{
    size_t new_cap;
    if (need <= *cap) return;
    new_cap = *cap ? *cap : first;
    while (new_cap < need)
        new_cap *= 2;
    *arr = xrealloc(*arr, new_cap * elem_bytes);
    *cap = new_cap;
}

static void kv_batch_refuse(struct kv_batch *b, const char *reason)
{
    /* The first refusal is the one worth reporting; later ones are usually its echoes. */
    if (b->invalid[0] == '\0') snprintf(b->invalid, sizeof b->invalid, "%s", reason);
}

/* Index of ns in the batch's namespace table, added if new; or -1 if ns is unusable. */
static long kv_batch_intern(struct kv_batch *b, const char *ns)
{
    size_t len, i;

    if (ns != NULL && b->n_ns > 0 && strcmp(b->names + b->ns[b->last_ns].off, ns) == 0)
        return (long)b->last_ns;
    len = kv_check_ns(ns);
    if (len == 0) {
        kv_batch_refuse(b, err_msg());
        return -1;
    }
    for (i = 0; i < b->n_ns; i++) {
        if (b->ns[i].len == len && memcmp(b->names + b->ns[i].off, ns, len) == 0) {
            b->last_ns = i;
            return (long)i;
        }
    }
    kv_grow((void **)&b->names, &b->names_cap, b->names_len + len + 1, 1, 256);
    kv_grow((void **)&b->ns, &b->cap_ns, b->n_ns + 1, sizeof *b->ns, 8);
    memcpy(b->names + b->names_len, ns, len + 1);
    b->ns[b->n_ns].off = b->names_len;
    b->ns[b->n_ns].len = len;
    b->names_len += len + 1;
    b->last_ns = b->n_ns++;
    return (long)b->last_ns;
}

static struct kv_op *kv_batch_push(struct kv_batch *b, enum kv_op_kind kind, long ns)
{
    struct kv_op *op;
    kv_grow((void **)&b->ops, &b->cap_ops, b->n_ops + 1, sizeof *b->ops, 64);
    op = &b->ops[b->n_ops++];
    memset(op, 0, sizeof *op);
    op->kind = (uint8_t)kind;
    op->ns = (uint32_t)ns;
    return op;
}

/*
 * Combining increments. A bulk learn queues the same counter many times (a
 * common word in most of a group's messages): 162,000 increments of 35,000
 * counters for 600 messages. Increments without a negative delta commute, so a
 * later one of the same counter (namespace, key, width, TTL) is added to the
 * queued op, and the backends sort, look up and write each counter once. Once
 * an op with a negative delta is queued (unlearn, a moved message) nothing more
 * is combined in that batch: clamping at zero makes the order matter from there.
 */
static size_t kv_incr_slot(uint32_t ns, uint64_t key, size_t mask)
{
    return (size_t)(((key ^ ((uint64_t)ns << 32)) * 0x9E3779B97F4A7C15ull) >> 20) & mask;
}

static void kv_incr_slots_insert(struct kv_batch *b, size_t op_index)
{
    const struct kv_op *op = &b->ops[op_index];
    size_t mask = b->incr_slots_cap - 1, i = kv_incr_slot(op->ns, op->key, mask);
    while (b->incr_slots[i])
        i = (i + 1) & mask;
    b->incr_slots[i] = (uint32_t)(op_index + 1);
    b->n_incr_slotted++;
}

/* Room for one more slotted op (call before queueing it): the table stays at most half full. */
static bool kv_incr_slots_reserve(struct kv_batch *b)
{
    size_t i;
    if (b->n_ops >= UINT32_MAX - 1) return false;
    if (2 * (b->n_incr_slotted + 1) <= b->incr_slots_cap) return true;
    free(b->incr_slots);
    b->incr_slots_cap = b->incr_slots_cap ? 2 * b->incr_slots_cap : 1024;
    b->incr_slots = xcalloc(b->incr_slots_cap, sizeof *b->incr_slots);
    b->n_incr_slotted = 0;
    for (i = 0; i < b->n_ops; i++)
        if (b->ops[i].kind == KV_OP_INCR && !b->ops[i].has_negative) kv_incr_slots_insert(b, i);
    return true;
}

/* Adds deltas to a queued op of the same counter; false if there is none (or a sum would
 * leave int32_t). */
static bool kv_incr_combine(struct kv_batch *b, uint32_t ns, uint64_t key, unsigned width,
                            const int32_t *deltas, unsigned ttl_seconds)
{
    size_t mask, i;
    unsigned c;

    if (b->n_incr_slotted == 0 || b->has_negative) return false;
    mask = b->incr_slots_cap - 1;
    for (i = kv_incr_slot(ns, key, mask); b->incr_slots[i]; i = (i + 1) & mask) {
        const struct kv_op *op = &b->ops[b->incr_slots[i] - 1];
        int32_t *sum;
        if (op->key != key || op->ns != ns || op->width != width || op->ttl_seconds != ttl_seconds)
            continue;
        sum = b->deltas + op->data_off;
        for (c = 0; c < width; c++)
            if (sum[c] > INT32_MAX - deltas[c]) return false;
        for (c = 0; c < width; c++)
            sum[c] += deltas[c];
        return true;
    }
    return false;
}

void kv_batch_incr(struct kv_batch *b, const char *ns, uint64_t key, unsigned width,
                   const int32_t *deltas, unsigned ttl_seconds)
{
    struct kv_op *op;
    long ns_index;
    unsigned c;
    bool negative = false, slotted;

    assert(deltas != NULL || width == 0);
    if (width < 1 || width > KV_MAX_WIDTH) {
        char reason[80];
        snprintf(reason, sizeof reason, "kv: counter width %u outside 1..%d", width, KV_MAX_WIDTH);
        kv_batch_refuse(b, reason);
        return;
    }
    ns_index = kv_batch_intern(b, ns);
    if (ns_index < 0) return;
    for (c = 0; c < width; c++)
        if (deltas[c] < 0) negative = true;
    if (!negative && kv_incr_combine(b, (uint32_t)ns_index, key, width, deltas, ttl_seconds))
        return;
    slotted = !negative && !b->has_negative && kv_incr_slots_reserve(b);
    kv_grow((void **)&b->deltas, &b->cap_deltas, b->n_deltas + width, sizeof *b->deltas, 256);
    op = kv_batch_push(b, KV_OP_INCR, ns_index);
    op->width = (uint8_t)width;
    op->key = key;
    op->ttl_seconds = ttl_seconds;
    op->data_off = b->n_deltas;
    for (c = 0; c < width; c++)
        b->deltas[b->n_deltas++] = deltas[c];
    op->has_negative = negative;
    if (negative) b->has_negative = true;
    if (slotted) kv_incr_slots_insert(b, b->n_ops - 1);
}

/* Queues a blob operation; value may be NULL (no value bytes). */
static void kv_batch_blob(struct kv_batch *b, enum kv_op_kind kind, const char *ns, const void *key,
                          size_t key_len, const void *value, size_t value_len, unsigned ttl_seconds)
{
    struct kv_op *op;
    long ns_index;

    if (key_len > KV_MAX_KEY) {
        char reason[80];
        snprintf(reason, sizeof reason, "kv: key of %zu bytes longer than %d", key_len, KV_MAX_KEY);
        kv_batch_refuse(b, reason);
        return;
    }
    if (value_len > UINT32_MAX) {
        kv_batch_refuse(b, "kv: blob value of 4 GiB or more");
        return;
    }
    ns_index = kv_batch_intern(b, ns);
    if (ns_index < 0) return;
    kv_grow((void **)&b->bytes, &b->cap_bytes, b->n_bytes + key_len + value_len, 1, 1024);
    op = kv_batch_push(b, kind, ns_index);
    op->key_len = (uint32_t)key_len;
    op->value_len = value ? value_len : 0;
    op->ttl_seconds = ttl_seconds;
    op->data_off = b->n_bytes;
    if (key_len) memcpy(b->bytes + b->n_bytes, key, key_len);
    b->n_bytes += key_len;
    if (value && value_len) memcpy(b->bytes + b->n_bytes, value, value_len);
    b->n_bytes += op->value_len;
    b->n_blob_ops++;
}

void kv_batch_put(struct kv_batch *b, const char *ns, const void *key, size_t key_len,
                  const void *value, size_t value_len, unsigned ttl_seconds)
{
    /* A NULL value with a length would be a caller bug; store it as empty. */
    kv_batch_blob(b, KV_OP_PUT, ns, key, key_len, value ? value : "", value ? value_len : 0,
                  ttl_seconds);
}

void kv_batch_del(struct kv_batch *b, const char *ns, const void *key, size_t key_len)
{
    kv_batch_blob(b, KV_OP_DEL, ns, key, key_len, NULL, 0, 0);
}

void kv_batch_expect(struct kv_batch *b, const char *ns, const void *key, size_t key_len,
                     const void *value, size_t value_len)
{
    size_t before = b->n_ops;
    kv_batch_blob(b, KV_OP_EXPECT, ns, key, key_len, value, value_len, 0);
    if (b->n_ops == before) return;
    b->ops[b->n_ops - 1].expect_absent = (value == NULL);
    b->n_expect++;
}

int kv_batch_commit(struct kv *kv, struct kv_batch *b)
{
    if (b->invalid[0] != '\0') {
        err_set("kv: batch refused, nothing written: %s", b->invalid);
        return KV_ERR;
    }
    if (b->n_ops == 0) return KV_OK;
    return kv->ops->commit(kv->state, b);
}

int kv_option_next(const char **q, struct kv_option *opt)
{
    const char *p = *q, *amp, *eq;
    size_t len;

    if (*p == '\0') return 0;
    amp = strchr(p, '&');
    len = amp ? (size_t)(amp - p) : strlen(p);
    eq = memchr(p, '=', len);
    opt->name = p;
    opt->name_len = eq ? (size_t)(eq - p) : len;
    opt->value = eq ? eq + 1 : p + len;
    opt->value_len = eq ? len - opt->name_len - 1 : 0;
    *q = p + len + (amp ? 1 : 0);
    return 1;
}
