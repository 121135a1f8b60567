/*
 * bench_parse - parse + HTML + URLs + features throughput on one core.
 *
 * Reads "LABEL PATH" lines (bench/corpus) from standard input, loads every
 * message into memory first, then runs message_parse() and
 * features_extract() over all of them PASSES times and prints messages/s.
 * The measured work is the function bench_parse_run(), which bench/parse
 * hands to callgrind (--toggle-collect) to count instructions per message.
 *
 * Usage: bench_parse [--passes N] [--limit N] < list
 */
#include "message/message.h"
#include "text/features.h"
#include "core/file.h"
#include "core/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct corpus_msg {
    char *data;
    size_t len;
};

/* Kept out of line so callgrind can count exactly this. */
__attribute__((noinline)) size_t bench_parse_run(const struct corpus_msg *msgs, size_t n)
{
    size_t i, features = 0;
    for (i = 0; i < n; i++) {
        struct message *m = message_parse(msgs[i].data, msgs[i].len, NULL);
        struct features f;
        features_extract(m->arena, m, &f, NULL, NULL);
        features += f.n;
        message_free(m);
    }
    return features;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    struct corpus_msg *msgs = NULL;
    size_t n = 0, cap = 0, limit = (size_t)-1, bytes = 0, features = 0;
    int passes = 3, i;
    char line[4096];
    double best = 0;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--passes") == 0 && i + 1 < argc) passes = atoi(argv[++i]);
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) limit = strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: bench_parse [--passes N] [--limit N] < list\n");
            return 2;
        }
    }
    while (n < limit && fgets(line, sizeof line, stdin)) {
        char *path = strchr(line, ' ');
        if (path == NULL) continue;
        path[strcspn(path, "\n")] = '\0';
        path++;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            msgs = xrealloc(msgs, cap * sizeof *msgs);
        }
        if (file_read(path, &msgs[n].data, &msgs[n].len) != 0) {
            fprintf(stderr, "bench_parse: %s: cannot read\n", path);
            return 1;
        }
        bytes += msgs[n].len;
        n++;
    }
    if (n == 0) {
        fprintf(stderr, "bench_parse: no messages\n");
        return 1;
    }
    message_library_init();
    for (i = 0; i < passes; i++) {
        double t0 = now_seconds(), rate;
        features = bench_parse_run(msgs, n);
        rate = (double)n / (now_seconds() - t0);
        if (rate > best) best = rate;
    }
    printf("messages=%zu bytes=%zu features=%zu passes=%d best_msgs_per_s=%.0f best_mb_per_s=%.1f\n",
           n, bytes, features, passes, best, best * (double)bytes / (double)n / 1e6);
    message_library_shutdown();
    for (size_t k = 0; k < n; k++) free(msgs[k].data);
    free(msgs);
    return 0;
}
