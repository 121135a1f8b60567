/*
 * unbound_server - a real unbound for tests. See unbound_server.h.
 *
 * unbound runs with -d (foreground), so it is our direct child: no pidfile,
 * waitpid() reaps it, and PR_SET_PDEATHSIG stops it if the test dies first. Readiness is a real DNS
 * query over UDP: any reply, even REFUSED, means the server is listening.
 */
#include "unbound_server.h"
#include "redis_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* True if a DNS server answers a query for ". A" on 127.0.0.1:port within 200 ms. */
static int test_unbound_answers(int port)
{
    static const unsigned char query[] = {0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
                                          0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01};
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct pollfd pfd;
    unsigned char reply[512];
    int fd = socket(AF_INET, SOCK_DGRAM, 0), ok = 0;

    if (fd < 0) return 0;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (sendto(fd, query, sizeof query, 0, (struct sockaddr *)&sa, sizeof sa) ==
        (ssize_t)sizeof query) {
        pfd.fd = fd;
        pfd.events = POLLIN;
        if (poll(&pfd, 1, 200) == 1 && recv(fd, reply, sizeof reply, 0) >= 12 && reply[0] == 0x12 &&
            reply[1] == 0x34)
            ok = 1;
    }
    close(fd);
    return ok;
}

int test_unbound_start(struct test_unbound *u)
{
    double deadline;
    pid_t child = fork();

    if (child < 0) return -1;
    if (child == 0) {
        int log = open(u->logfile, O_WRONLY | O_CREAT | O_APPEND, 0600);
        /* If the test dies before it can stop us (a crash, SIGPIPE), unbound goes too. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (log >= 0) {
            dup2(log, STDOUT_FILENO);
            dup2(log, STDERR_FILENO);
        }
        execlp("unbound", "unbound", "-d", "-c", u->conf, (char *)NULL);
        _exit(127);
    }
    u->pid = child;
    for (deadline = test_now_s() + 5; test_now_s() < deadline; test_sleep_ms(20)) {
        if (waitpid(child, NULL, WNOHANG) == child) {
            u->pid = 0;
            fprintf(stderr, "unbound exited at start (see %s)\n", u->logfile);
            return -1;
        }
        if (test_unbound_answers(u->port)) return 0;
    }
    fprintf(stderr, "unbound on port %d did not answer\n", u->port);
    test_unbound_stop(u);
    return -1;
}

void test_unbound_stop(struct test_unbound *u)
{
    double deadline;
    if (u->pid <= 0) return;
    kill(u->pid, SIGTERM);
    for (deadline = test_now_s() + 5; test_now_s() < deadline; test_sleep_ms(10))
        if (waitpid(u->pid, NULL, WNOHANG) == u->pid) {
            u->pid = 0;
            return;
        }
    kill(u->pid, SIGKILL);
    waitpid(u->pid, NULL, 0);
    u->pid = 0;
}

int test_unbound_open(struct test_unbound *u, const char *zone)
{
    const char *tmp = getenv("TMPDIR");
    FILE *f;

    memset(u, 0, sizeof *u);
    snprintf(u->dir, sizeof u->dir, "%s/mxw-test-unbound.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(u->dir) == NULL) return -1;
    snprintf(u->conf, sizeof u->conf, "%s/unbound.conf", u->dir);
    snprintf(u->logfile, sizeof u->logfile, "%s/unbound.log", u->dir);
    u->port = test_free_port();
    if (u->port <= 0) return -1;
    f = fopen(u->conf, "w");
    if (f == NULL) return -1;
    fprintf(f,
            "server:\n"
            "  interface: 127.0.0.1@%d\n"
            "  do-ip6: no\n"
            "  do-daemonize: no\n"
            "  chroot: \"\"\n"
            "  username: \"\"\n"
            "  directory: \"%s\"\n"
            "  pidfile: \"\"\n"
            "  use-syslog: no\n"
            "  logfile: \"\"\n"
            "  verbosity: 0\n"
            "  num-threads: 1\n"
            "  access-control: 127.0.0.0/8 allow\n"
            "  local-zone: \".\" refuse\n"
            "%s\n"
            "remote-control:\n"
            "  control-enable: no\n",
            u->port, u->dir, zone ? zone : "");
    fclose(f);
    return test_unbound_start(u);
}

void test_unbound_close(struct test_unbound *u)
{
    char path[400];
    test_unbound_stop(u);
    unlink(u->conf);
    unlink(u->logfile);
    snprintf(path, sizeof path, "%s", u->dir);
    rmdir(path);
}

/* ---- a broken DNS server ---- */

/* A reply the slow mode holds until it is due. */
struct test_bad_dns_held {
    double due_s;
    struct sockaddr_in to;
    size_t len;
    unsigned char reply[640]; /* a query (600 at most) and one A record */
};

#define TEST_BAD_DNS_MAX_HELD 256

struct test_bad_dns {
    enum test_bad_dns_mode mode;
    unsigned delay_ms; /* TEST_BAD_DNS_SLOW */
    struct test_bad_dns_held *held;
    size_t n_held;
    int port;
    int udp_fd, tcp_fd;
    _Atomic int stop;
    _Atomic unsigned queries;
    pthread_t thread;
};

/* Writes the reply for query q[0..qlen) into out (size 65536); returns its length (0: none). */
static size_t test_bad_dns_reply(const struct test_bad_dns *s, const unsigned char *q, size_t qlen,
                                 int over_tcp, unsigned char *out)
{
    size_t qend = 12, len, i;

    if (qlen < 17) return 0;
    while (qend < qlen && q[qend] != 0)
        qend += (size_t)q[qend] + 1; /* the question's name */
    qend += 5;                       /* root label, type, class */
    if (qend > qlen) return 0;
    memcpy(out, q, qend); /* id, flags (fixed below), counts, question */
    out[2] = 0x81;
    out[3] = 0x80;
    out[4] = 0;
    out[5] = 1;
    memset(out + 6, 0, 6);
    len = qend;
    switch (s->mode) {
    case TEST_BAD_DNS_SILENT:
        return 0;
    case TEST_BAD_DNS_SLOW: {
        static const unsigned char rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 2};
        out[7] = 1;
        memcpy(out + len, rr, sizeof rr);
        return len + sizeof rr;
    }
    case TEST_BAD_DNS_RANDOM:
        len = 2 + (size_t)(rand() % 500);
        for (i = 2; i < len; i++)
            out[i] = (unsigned char)rand();
        return len;
    case TEST_BAD_DNS_TRUNCATED: {
        static const unsigned char rr[] = {0xc0, 0x0c, 0, 16,  0, 1,   0,  0,
                                           1,    0,    0, 200, 5, 'a', 'b'};
        out[7] = 1;
        memcpy(out + len, rr, sizeof rr);
        return len + sizeof rr;
    }
    case TEST_BAD_DNS_LOOP: {
        unsigned char rr[] = {0xc0, 0, 0, 16, 0, 1, 0, 0, 1, 0, 0, 2, 1, 'x'};
        rr[1] = (unsigned char)len; /* points at itself */
        out[7] = 1;
        memcpy(out + len, rr, sizeof rr);
        return len + sizeof rr;
    }
    case TEST_BAD_DNS_HUGE:
        if (!over_tcp) {
            out[2] |= 0x02; /* TC: ask for TCP */
            return len;
        }
        for (i = 0; i < 240; i++) {
            static const unsigned char head[] = {0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 1, 0, 1, 0};
            memcpy(out + len, head, sizeof head);
            len += sizeof head;
            out[len++] = 255;
            memset(out + len, 'a' + (int)(i % 26), 255);
            len += 255;
        }
        out[6] = 0;
        out[7] = 240;
        return len;
    }
    return 0;
}

static void test_bad_dns_serve_tcp(struct test_bad_dns *s, int conn, unsigned char *out)
{
    unsigned char q[600];
    size_t got = 0, need = 0, len;
    struct pollfd pfd = {.fd = conn, .events = POLLIN};

    while (poll(&pfd, 1, 1000) == 1) {
        ssize_t n = recv(conn, q + got, sizeof q - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
        if (got >= 2) need = (size_t)q[0] << 8 | q[1];
        if (got >= 2 && got >= need + 2) {
            s->queries++;
            len = test_bad_dns_reply(s, q + 2, need, 1, out + 2);
            if (len > 0) {
                out[0] = (unsigned char)(len >> 8);
                out[1] = (unsigned char)len;
                if (send(conn, out, len + 2, MSG_NOSIGNAL) < 0) break;
            }
            got = 0;
        }
    }
    close(conn);
}

/* The slow mode's loop: queries are answered in order, each delay_ms after it came. */
static void test_bad_dns_slow_loop(struct test_bad_dns *s)
{
    unsigned char q[600];
    while (!s->stop) {
        struct pollfd pfd = {.fd = s->udp_fd, .events = POLLIN};
        double now = test_now_s();
        int wait_ms = 20;
        size_t i;

        if (s->n_held > 0 && (s->held[0].due_s - now) * 1000 < wait_ms)
            wait_ms = s->held[0].due_s <= now ? 0 : (int)((s->held[0].due_s - now) * 1000) + 1;
        if (poll(&pfd, 1, wait_ms) == 1 && s->n_held < TEST_BAD_DNS_MAX_HELD) {
            struct test_bad_dns_held *h = &s->held[s->n_held];
            socklen_t flen = sizeof h->to;
            ssize_t n = recvfrom(s->udp_fd, q, sizeof q, 0, (struct sockaddr *)&h->to, &flen);
            if (n > 0) {
                s->queries++;
                h->len = test_bad_dns_reply(s, q, (size_t)n, 0, h->reply);
                h->due_s = test_now_s() + s->delay_ms / 1000.0;
                if (h->len > 0 && h->len <= sizeof h->reply) s->n_held++;
            }
        }
        now = test_now_s();
        for (i = 0; i < s->n_held && s->held[i].due_s <= now; i++)
            sendto(s->udp_fd, s->held[i].reply, s->held[i].len, 0,
                   (struct sockaddr *)&s->held[i].to, sizeof s->held[i].to);
        memmove(s->held, s->held + i, (s->n_held - i) * sizeof *s->held);
        s->n_held -= i;
    }
}

static void *test_bad_dns_main(void *arg)
{
    struct test_bad_dns *s = arg;
    unsigned char *out = malloc(65536 + 2);
    unsigned char q[600];

    if (s->mode == TEST_BAD_DNS_SLOW) test_bad_dns_slow_loop(s);
    while (!s->stop && out != NULL) {
        struct pollfd pfd[2] = {{.fd = s->udp_fd, .events = POLLIN},
                                {.fd = s->tcp_fd, .events = POLLIN}};
        if (s->mode == TEST_BAD_DNS_SILENT) { /* never read: the socket just fills */
            test_sleep_ms(20);
            continue;
        }
        if (poll(pfd, 2, 50) <= 0) continue;
        if (pfd[0].revents & POLLIN) {
            struct sockaddr_in from;
            socklen_t flen = sizeof from;
            ssize_t n = recvfrom(s->udp_fd, q, sizeof q, 0, (struct sockaddr *)&from, &flen);
            if (n > 0) {
                size_t len;
                s->queries++;
                len = test_bad_dns_reply(s, q, (size_t)n, 0, out);
                if (len > 0) sendto(s->udp_fd, out, len, 0, (struct sockaddr *)&from, flen);
            }
        }
        if (pfd[1].revents & POLLIN) {
            int conn = accept(s->tcp_fd, NULL, NULL);
            if (conn >= 0) test_bad_dns_serve_tcp(s, conn, out);
        }
    }
    free(out);
    return NULL;
}

static struct test_bad_dns *test_bad_dns_start_with(enum test_bad_dns_mode mode, unsigned delay_ms)
{
    struct test_bad_dns *s = calloc(1, sizeof *s);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    int one = 1;

    if (s == NULL) return NULL;
    s->mode = mode;
    s->delay_ms = delay_ms;
    if (mode == TEST_BAD_DNS_SLOW &&
        (s->held = calloc(TEST_BAD_DNS_MAX_HELD, sizeof *s->held)) == NULL) {
        free(s);
        return NULL;
    }
    s->port = test_free_port();
    sa.sin_port = htons((unsigned short)s->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->udp_fd = socket(AF_INET, SOCK_DGRAM, 0);
    s->tcp_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->udp_fd >= 0 && s->tcp_fd >= 0)
        setsockopt(s->tcp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s->port <= 0 || s->udp_fd < 0 || s->tcp_fd < 0 ||
        bind(s->udp_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        bind(s->tcp_fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(s->tcp_fd, 8) != 0 ||
        pthread_create(&s->thread, NULL, test_bad_dns_main, s) != 0) {
        if (s->udp_fd >= 0) close(s->udp_fd);
        if (s->tcp_fd >= 0) close(s->tcp_fd);
        free(s->held);
        free(s);
        return NULL;
    }
    return s;
}

struct test_bad_dns *test_bad_dns_start(enum test_bad_dns_mode mode)
{
    return test_bad_dns_start_with(mode, 0);
}

struct test_bad_dns *test_bad_dns_start_slow(unsigned delay_ms)
{
    return test_bad_dns_start_with(TEST_BAD_DNS_SLOW, delay_ms);
}

int test_bad_dns_port(const struct test_bad_dns *s)
{
    return s->port;
}

unsigned test_bad_dns_queries(const struct test_bad_dns *s)
{
    return s->queries;
}

void test_bad_dns_stop(struct test_bad_dns *s)
{
    if (s == NULL) return;
    s->stop = 1;
    pthread_join(s->thread, NULL);
    close(s->udp_fd);
    close(s->tcp_fd);
    free(s->held);
    free(s);
}
