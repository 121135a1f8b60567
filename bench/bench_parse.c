/*
 * bench_parse - parse + HTML + URLs + features throughput on one core.
 *
 * Reads "LABEL PATH" lines (bench/corpus) from standard input, loads every
 * message into memory first, then runs message_parse() and
 * features_extract() over all of them PASSES times and prints messages/s.
 * The measured work is the function bench_parse_run(), which bench/parse
 * hands to callgrind (--toggle-collect) to count instructions per message.
 *
 * With --compare-paths it measures nothing: it parses every message, and
 * copies of it cut short or with CRLF line ends, both ways (the plain path
 * for single parts, and GMime's tree for all), prints the inputs whose models
 * differ (message_dump_all) and how many took the plain path, and exits 1 on
 * any difference.
 *
 * Usage: bench_parse [--passes N] [--limit N] [--compare-paths] < list
 */
#include "core/buf.h"
#include "message/dump.h"
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
    char *path;
};

/* Parses data both ways; true if the models are the same (else prints where they part). */
static bool same_both_ways(const char *data, size_t len, const char *what, size_t *plain,
                           size_t *differ)
{
    struct message *m1 = message_parse(data, len, NULL);
    struct message *m2 = message_parse_opts(data, len, NULL, MSG_PARSE_GMIME);
    struct buf a = {0}, b = {0};
    bool same;

    message_dump_all(&a, m1);
    message_dump_all(&b, m2);
    if (!m1->gmime_tree) (*plain)++;
    same = a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
    if (!same) {
        size_t k = 0;
        while (k < a.len && k < b.len && a.data[k] == b.data[k])
            k++;
        while (k > 0 && a.data[k - 1] != '\n')
            k--;
        if ((*differ)++ < 20)
            printf("differs: %s\n  plain: %.*s\n  gmime: %.*s\n", what,
                   (int)strcspn(a.data + k, "\n"), a.data + k, (int)strcspn(b.data + k, "\n"),
                   b.data + k);
    }
    buf_free(&a);
    buf_free(&b);
    message_free(m1);
    message_free(m2);
    return same;
}

/*
 * 0 if the plain path and GMime's tree give the same model for every message
 * and for damaged copies of it: cut at six points, and with CRLF line ends.
 */
static int compare_paths(const struct corpus_msg *msgs, size_t n)
{
    size_t i, k, plain = 0, differ = 0, inputs = 0;
    struct buf crlf = {0};

    for (i = 0; i < n; i++) {
        const char *d = msgs[i].data;
        size_t len = msgs[i].len;
        inputs++;
        same_both_ways(d, len, msgs[i].path, &plain, &differ);
        for (k = 1; k <= 6; k++, inputs++)
            same_both_ways(d, len * k / 7, msgs[i].path, &plain, &differ);
        buf_clear(&crlf);
        for (k = 0; k < len; k++) {
            if (d[k] == '\n' && (k == 0 || d[k - 1] != '\r')) buf_append_char(&crlf, '\r');
            buf_append_char(&crlf, d[k]);
        }
        inputs++;
        same_both_ways(crlf.data ? crlf.data : "", crlf.len, msgs[i].path, &plain, &differ);
    }
    printf("compare-paths: messages=%zu inputs=%zu (cut at 6 points, CRLF) plain_path=%zu "
           "differ=%zu\n",
           n, inputs, plain, differ);
    buf_free(&crlf);
    return differ ? 1 : 0;
}

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
    int passes = 3, i, compare = 0;
    char line[4096];
    double best = 0;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--passes") == 0 && i + 1 < argc) passes = atoi(argv[++i]);
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) limit = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--compare-paths") == 0)
            compare = 1;
        else {
            fprintf(stderr,
                    "usage: bench_parse [--passes N] [--limit N] [--compare-paths] < list\n");
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
        msgs[n].path = xstrdup(path);
        bytes += msgs[n].len;
        n++;
    }
    if (n == 0) {
        fprintf(stderr, "bench_parse: no messages\n");
        return 1;
    }
    message_library_init();
    if (compare) {
        int rc = compare_paths(msgs, n);
        message_library_shutdown();
        return rc;
    }
    for (i = 0; i < passes; i++) {
        double t0 = now_seconds(), rate;
        features = bench_parse_run(msgs, n);
        rate = (double)n / (now_seconds() - t0);
        if (rate > best) best = rate;
    }
    printf("messages=%zu bytes=%zu features=%zu passes=%d best_msgs_per_s=%.0f best_mb_per_s=%.1f\n",
           n, bytes, features, passes, best, best * (double)bytes / (double)n / 1e6);
    message_library_shutdown();
    for (size_t k = 0; k < n; k++)
        free(msgs[k].data), free(msgs[k].path);
    free(msgs);
    return 0;
}
