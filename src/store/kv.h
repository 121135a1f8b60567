/*
 * kv - the key-value and counter store behind the classifiers, reputation,
 * greylisting and rate limits.
 *
 * Two backends implement one contract (struct kv_ops in kv_backend.h):
 *   - LMDB, the embedded default: "lmdb:PATH" (a directory-less single file,
 *     e.g. var/tokens.lmdb); crash-safe, memory-mapped reads, the map grows
 *     when full.
 *   - Redis, for a cluster: "redis://[:PASSWORD@]HOST:PORT[/DB]"; every batch
 *     read is one pipelined round trip, every batch write one MULTI/EXEC.
 * Nothing outside src/store knows which one is underneath.
 *
 * Data model. Keys live in namespaces (short ASCII strings such as
 * "bayes:tok:example.org"). A namespace holds two kinds of entries:
 *   - counter vectors: a 64-bit key -> `width` unsigned 32-bit counters
 *     (width 1..KV_MAX_WIDTH; a key is always used with the same width);
 *     reads of absent keys give zeros, and counters never read below zero;
 *   - blobs: a byte-string key (up to KV_MAX_KEY bytes) -> a byte-string value.
 * Either may carry a time to live in seconds (0: forever); expired entries
 * read as absent.
 *
 * Writes go through a batch that is applied all or nothing by
 * kv_batch_commit(). A batch may carry expectations ("this blob currently has
 * this value / is absent"); if any does not hold at commit time, nothing is
 * written and KV_CONFLICT is returned so the caller can re-read and retry.
 *
 * Threads: a struct kv is used by one thread at a time; open one per thread.
 * LMDB handles on the same path share one environment inside the process.
 * Errors: functions return KV_OK (0) or a negative KV_* code and set
 * err_set() with a readable reason. KV_UNAVAILABLE means the backend cannot
 * be reached right now (Redis down); the next call tries to reconnect, at
 * most once per second.
 */
#ifndef MXW_KV_H
#define MXW_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

enum {
    KV_OK = 0,
    KV_ERR = -1,         /* anything else: bad URI, I/O error, protocol error */
    KV_UNAVAILABLE = -2, /* backend unreachable (connection refused, lost, timed out) */
    KV_CONFLICT = -3,    /* an expectation of the batch did not hold; nothing written */
    KV_FULL = -4,        /* LMDB: the map is full and could not grow */
};

#define KV_MAX_WIDTH 16
#define KV_MAX_KEY   512
#define KV_MAX_NS    128

struct kv;
struct kv_batch;

/* Opens the store named by uri. Returns KV_OK and *out, or an error (with err_set). */
int kv_open(const char *uri, struct kv **out);
void kv_close(struct kv *kv);
/* "lmdb" or "redis". */
const char *kv_backend_name(const struct kv *kv);

/*
 * Reads the counter vectors of keys[0..n) in ns into out[i * width + c].
 * Absent or expired keys give zeros. One round trip for Redis.
 */
int kv_counters_get(struct kv *kv, const char *ns, const uint64_t *keys, size_t n,
                    unsigned width, uint32_t *out);

/* Reads a blob: *found false (and value untouched) when absent. value is appended to. */
int kv_get(struct kv *kv, const char *ns, const void *key, size_t key_len, struct buf *value,
           bool *found);

/* A new empty batch (never NULL). Free with kv_batch_free(). */
struct kv_batch *kv_batch_new(void);
void kv_batch_free(struct kv_batch *b);
/* Empties b for reuse. */
void kv_batch_clear(struct kv_batch *b);
/* Adds deltas[0..width) to the counters of key (created at zero); ttl 0 keeps the key forever,
 * otherwise (re)sets its time to live. Counters never go below zero. */
void kv_batch_incr(struct kv_batch *b, const char *ns, uint64_t key, unsigned width,
                   const int32_t *deltas, unsigned ttl_seconds);
/* Sets a blob. */
void kv_batch_put(struct kv_batch *b, const char *ns, const void *key, size_t key_len,
                  const void *value, size_t value_len, unsigned ttl_seconds);
/* Deletes a blob (absent is fine). */
void kv_batch_del(struct kv_batch *b, const char *ns, const void *key, size_t key_len);
/* Commit only if the blob currently holds value[0..value_len) (value NULL: is absent). */
void kv_batch_expect(struct kv_batch *b, const char *ns, const void *key, size_t key_len,
                     const void *value, size_t value_len);
/* Number of operations queued. Increments of one counter (same namespace, key, width and TTL,
 * no negative delta, none queued before them) are one operation: the later ones are added to
 * the first. */
size_t kv_batch_size(const struct kv_batch *b);

/* Applies b all or nothing. KV_CONFLICT if an expectation failed. b is left unchanged. */
int kv_batch_commit(struct kv *kv, struct kv_batch *b);

struct kv_stat {
    uint64_t entries;    /* keys in the store (all namespaces) */
    uint64_t size_bytes; /* LMDB: bytes in use in the file; Redis: used_memory */
};
int kv_stat(struct kv *kv, struct kv_stat *st);

#endif
