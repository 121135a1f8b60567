/*
 * bench_kvfill - fills a token store with N synthetic Bayes features, for
 * measuring memory and speed with a store of a given size.
 *
 * Each feature gets small random spam/ham counts under the global Bayes
 * namespace, in batches of 50,000 increments, exactly as learning writes
 * them; the learned-message counts and the stream version are set so that
 * classification treats the store as ready. The features of real messages
 * are mostly absent from it, which is the realistic case for a big store.
 *
 * Usage: bench_kvfill STORE_URI N
 */
#include "stat/bayes.h"
#include "store/kv.h"
#include "text/features.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    struct kv *kv;
    struct kv_batch *b;
    unsigned long n, i;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    char version[16];

    if (argc != 3 || (n = strtoul(argv[2], NULL, 10)) == 0) {
        fprintf(stderr, "usage: bench_kvfill STORE_URI N\n");
        return 2;
    }
    if (kv_open(argv[1], &kv) != KV_OK) {
        fprintf(stderr, "bench_kvfill: %s\n", err_msg());
        return 1;
    }
    b = kv_batch_new();
    for (i = 0; i < n; i++) {
        int32_t d[BAYES_N_CLASSES] = {0};
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        d[BAYES_CLASS_SPAM] = (int32_t)(x >> 60);
        d[BAYES_CLASS_HAM] = (int32_t)((x >> 56) & 15);
        if (d[0] == 0 && d[1] == 0) d[1] = 1;
        kv_batch_incr(b, "bt", x, BAYES_N_CLASSES, d, 0);
        if (kv_batch_size(b) == 50000 || i + 1 == n) {
            if (i + 1 == n) {
                int32_t learned[BAYES_N_CLASSES] = {100000, 200000};
                snprintf(version, sizeof version, "%d", FEATURE_STREAM_VERSION);
                kv_batch_incr(b, "bm", 0, BAYES_N_CLASSES, learned, 0);
                kv_batch_put(b, "bv", "stream", 6, version, strlen(version), 0);
            }
            if (kv_batch_commit(kv, b) != KV_OK) {
                fprintf(stderr, "bench_kvfill: %s\n", err_msg());
                return 1;
            }
            kv_batch_clear(b);
        }
    }
    kv_batch_free(b);
    kv_close(kv);
    return 0;
}
