/*
 * bench_milter - drives `mxwarden serve` over the milter protocol, as Postfix
 * does, and measures the filter alone: no MTA, no SMTP client.
 *
 * Reads "LABEL PATH" lines (bench/corpus) from standard input and loads every
 * message into memory first. Then SESSIONS threads each take the next message
 * in turn and send it on a connection of its own: negotiate, connect, HELO,
 * MAIL, RCPT, DATA, headers, body, end of message, quit (milter_client, the
 * same client the integration tests use). Each message's time is measured
 * from opening the connection to the final reply.
 *
 * Prints one line: messages, sessions, msgs/s, median and p99 milliseconds
 * per message, and, with --pid, the server's CPU time (user + system, from
 * /proc/PID/stat) per message. Exits 1 if any message got no final reply.
 *
 * Usage: bench_milter --address unix:/path|inet:HOST:PORT [--sessions N]
 *                     [--limit N] [--pid PID] < list
 */
#include "milter_client.h"
#include "core/file.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "mta/milter.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_TIMEOUT_MS 30000

struct corpus_msg {
    char *data;
    size_t len;
};

struct bench {
    const char *address;
    const struct corpus_msg *msgs;
    size_t n;
    atomic_size_t next;   /* the next message to send */
    atomic_size_t failed; /* messages without a final reply */
    double *latency_ms;   /* one per message, written by the thread that sent it */
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One message on a connection of its own; 0 when the filter gave a final reply. */
static int send_one(const struct bench *b, const struct corpus_msg *m)
{
    static const char *const rcpts[] = {"<user@bench.test>"};
    static const char *const connect_macros[] = {"j", "mx.bench.test", "{client_addr}",
                                                 "192.0.2.25"};
    struct milter_client_envelope env = {
        .queue_id = "BENCHQID",
        .sender = "<sender@example.org>",
        .rcpts = rcpts,
        .n_rcpts = 1,
        .message = m->data,
        .message_len = m->len,
    };
    struct milter_client_reply reply;
    struct milter_client_result res;
    struct milter_client *c = milter_client_open(b->address, BENCH_TIMEOUT_MS);
    int rc = -1;

    if (c == NULL) return -1;
    if (milter_client_negotiate(c, MILTER_CLIENT_ALL_ACTIONS, MILTER_CLIENT_ALL_PROTOCOL) == 0 &&
        milter_client_macros(c, MILTER_CMD_CONNECT, connect_macros, 2) == 0 &&
        milter_client_connect(c, "client.example.org", '4', "192.0.2.25", 25000, &reply) == 0 &&
        milter_client_helo(c, "client.example.org", &reply) == 0) {
        if (milter_client_message(c, &env, &res) == 0) {
            rc = res.reply.cmd != 0 ? 0 : -1;
            milter_client_result_free(&res);
        }
        if (rc == 0) milter_client_quit(c);
    }
    milter_client_free(c);
    return rc;
}

static void *session_thread(void *arg)
{
    struct bench *b = arg;
    size_t i;

    while ((i = atomic_fetch_add(&b->next, 1)) < b->n) {
        double t0 = now_seconds();
        if (send_one(b, &b->msgs[i]) != 0) {
            if (atomic_fetch_add(&b->failed, 1) == 0)
                fprintf(stderr, "bench_milter: message %zu: %s\n", i, err_msg());
        }
        b->latency_ms[i] = (now_seconds() - t0) * 1000.0;
    }
    return NULL;
}

/* utime + stime of process pid in milliseconds; -1 if it cannot be read. */
static double process_cpu_ms(long pid)
{
    char path[64], buf[2048], *p;
    unsigned long utime, stime;
    FILE *f;
    size_t len;

    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    if ((f = fopen(path, "r")) == NULL) return -1;
    len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    /* The command name may hold spaces; the fields after it start past the last ')'. */
    if ((p = strrchr(buf, ')')) == NULL) return -1;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_milter --address unix:/path|inet:HOST:PORT [--sessions N] "
                    "[--limit N] [--pid PID] < list\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct bench b = {0};
    struct corpus_msg *msgs = NULL;
    size_t cap = 0, limit = (size_t)-1, i;
    int sessions = 1;
    long pid = 0;
    char line[4096];
    pthread_t *threads;
    double t0, elapsed, cpu0 = -1, cpu1 = -1;

    for (i = 1; i < (size_t)argc; i++) {
        if (strcmp(argv[i], "--address") == 0 && i + 1 < (size_t)argc)
            b.address = argv[++i];
        else if (strcmp(argv[i], "--sessions") == 0 && i + 1 < (size_t)argc)
            sessions = atoi(argv[++i]);
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < (size_t)argc)
            limit = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--pid") == 0 && i + 1 < (size_t)argc)
            pid = strtol(argv[++i], NULL, 10);
        else
            usage();
    }
    if (b.address == NULL || sessions < 1 || sessions > 256) usage();

    while (b.n < limit && fgets(line, sizeof line, stdin)) {
        char *path = strchr(line, ' ');
        char *data;
        size_t len;
        if (path == NULL) continue;
        path++;
        path[strcspn(path, "\n")] = '\0';
        if (file_read(path, &data, &len) != 0) {
            fprintf(stderr, "bench_milter: %s: %s\n", path, err_msg());
            return 1;
        }
        if (b.n == cap) {
            cap = cap ? 2 * cap : 1024;
            msgs = xrealloc(msgs, cap * sizeof *msgs);
        }
        msgs[b.n].data = data;
        msgs[b.n].len = len;
        b.n++;
    }
    if (b.n == 0) {
        fprintf(stderr, "bench_milter: no messages on standard input\n");
        return 1;
    }
    b.msgs = msgs;
    b.latency_ms = xcalloc(b.n, sizeof *b.latency_ms);

    threads = xcalloc((size_t)sessions, sizeof *threads);
    if (pid > 0) cpu0 = process_cpu_ms(pid);
    t0 = now_seconds();
    for (i = 0; i < (size_t)sessions; i++)
        if (pthread_create(&threads[i], NULL, session_thread, &b) != 0) {
            fprintf(stderr, "bench_milter: cannot start a session thread\n");
            return 1;
        }
    for (i = 0; i < (size_t)sessions; i++)
        pthread_join(threads[i], NULL);
    elapsed = now_seconds() - t0;
    if (pid > 0) cpu1 = process_cpu_ms(pid);

    qsort(b.latency_ms, b.n, sizeof *b.latency_ms, cmp_double);
    printf("messages %zu sessions %d msgs_per_s %.1f median_ms %.3f p99_ms %.3f", b.n, sessions,
           (double)b.n / elapsed, b.latency_ms[b.n / 2], b.latency_ms[(b.n * 99) / 100]);
    if (cpu0 >= 0 && cpu1 >= 0) printf(" server_cpu_ms_per_msg %.3f", (cpu1 - cpu0) / (double)b.n);
    printf(" failed %zu\n", atomic_load(&b.failed));

    for (i = 0; i < b.n; i++)
        free(msgs[i].data);
    free(msgs);
    free(b.latency_ms);
    free(threads);
    return atomic_load(&b.failed) ? 1 : 0;
}
