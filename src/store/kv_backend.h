/*
 * kv_backend - what a kv backend implements, and the batch it is handed.
 *
 * Private to src/store: kv.c (the front) dispatches every kv.h call to one
 * struct kv_ops, in the manner of OpenSMTPD's queue backends. The front has
 * already validated arguments (namespace length, width, key length) before a
 * backend sees them, so backends only assert these invariants.
 *
 * A backend's private state is an opaque pointer it returns from open() and
 * gets back in every other call; the backend owns it until close(). Every
 * function returns KV_OK or a negative KV_* code and sets err_set() on
 * failure, like the public API.
 *
 * The batch is a flat, append-only log of operations over three growable
 * arrays (ops, deltas, bytes) and a small table of interned namespaces, so
 * filling it with thousands of increments costs amortised growth only.
 * Operations refer to their data by offset, never by pointer, because the
 * arrays move when they grow. Backends read it through the kv_op_* helpers
 * below and never modify it.
 */
#ifndef MXW_KV_BACKEND_H
#define MXW_KV_BACKEND_H

#include "store/kv.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum kv_op_kind {
    KV_OP_INCR = 1, /* counter vector += deltas, clamped to [0, UINT32_MAX] */
    KV_OP_PUT,      /* blob = value */
    KV_OP_DEL,      /* blob removed */
    KV_OP_EXPECT,   /* blob must equal value (or be absent) before the batch */
};

struct kv_op {
    uint8_t kind;         /* enum kv_op_kind */
    uint8_t width;        /* INCR: 1..KV_MAX_WIDTH */
    bool expect_absent;   /* EXPECT: the blob must be absent (no value) */
    bool has_negative;    /* INCR: some delta < 0, so clamping at zero may be needed */
    uint32_t ttl_seconds; /* INCR, PUT: 0 keeps the entry forever */
    uint32_t ns;          /* index into the batch's namespace table */
    uint32_t key_len;     /* PUT, DEL, EXPECT: bytes of key */
    uint64_t key;         /* INCR: the counter key */
    size_t data_off;      /* INCR: index of width deltas in deltas[]; others: key bytes
                             at bytes[data_off], value bytes right after them */
    size_t value_len;     /* PUT, EXPECT */
};

struct kv_ns_entry {
    size_t off; /* into names[], NUL-terminated */
    size_t len;
};

struct kv_batch {
    struct kv_op *ops;
    size_t n_ops, cap_ops;
    int32_t *deltas;
    size_t n_deltas, cap_deltas;
    unsigned char *bytes;
    size_t n_bytes, cap_bytes;
    char *names; /* interned namespaces, each NUL-terminated */
    size_t names_len, names_cap;
    struct kv_ns_entry *ns;
    size_t n_ns, cap_ns;
    size_t last_ns;    /* the namespace used most recently: callers add runs of one */
    size_t n_expect;   /* EXPECT ops in ops[] */
    size_t n_blob_ops; /* PUT, DEL and EXPECT ops in ops[] */
    bool has_negative; /* some INCR op has a negative delta */
    /* INCR ops without a negative delta by (namespace, key), open addressing, op index + 1
     * (0: empty): a later increment of the same counter is added to the queued one. */
    uint32_t *incr_slots;
    size_t incr_slots_cap, n_incr_slotted; /* capacity a power of two, or 0 */
    char invalid[192]; /* non-empty: an add was refused; commit fails with this reason */
};

static inline const char *kv_op_ns(const struct kv_batch *b, const struct kv_op *op, size_t *len)
{
    *len = b->ns[op->ns].len;
    return b->names + b->ns[op->ns].off;
}

static inline const int32_t *kv_op_deltas(const struct kv_batch *b, const struct kv_op *op)
{
    return b->deltas + op->data_off;
}

static inline const unsigned char *kv_op_key(const struct kv_batch *b, const struct kv_op *op)
{
    return b->bytes + op->data_off;
}

static inline const unsigned char *kv_op_value(const struct kv_batch *b, const struct kv_op *op)
{
    return b->bytes + op->data_off + op->key_len;
}

struct kv_ops {
    const char *name; /* "lmdb", "redis" */
    /* spec: the URI after "lmdb:" or "redis://". On success *state is owned by the backend. */
    int (*open)(const char *spec, void **state);
    /* Frees state and everything it holds. */
    void (*close)(void *state);
    int (*counters_get)(void *state, const char *ns, size_t ns_len, const uint64_t *keys, size_t n,
                        unsigned width, uint32_t *out);
    int (*get)(void *state, const char *ns, size_t ns_len, const void *key, size_t key_len,
               struct buf *value, bool *found);
    /* Applies b (never empty, never invalid) all or nothing; must not modify it. */
    int (*commit)(void *state, const struct kv_batch *b);
    int (*stat)(void *state, struct kv_stat *st);
};

extern const struct kv_ops kv_lmdb_ops;
extern const struct kv_ops kv_redis_ops;

/* Milliseconds since the epoch, for expiry times that outlive the process (LMDB). */
uint64_t kv_now_ms(void);

/* One "name=value" of a URI's query string ("?a=1&b=2"). */
struct kv_option {
    const char *name;
    size_t name_len;
    const char *value; /* "" when there is no '=' */
    size_t value_len;
};
/* Takes the next option from *q (advancing it); returns 0 at the end of the string. */
int kv_option_next(const char **q, struct kv_option *opt);

#endif
