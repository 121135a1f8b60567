/*
 * redis_server - a real redis-server for tests. See redis_server.h.
 */
#include "redis_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double test_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void test_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int test_free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

bool test_process_gone(pid_t pid)
{
    char path[64], line[256];
    bool gone = true;
    FILE *f;

    if (waitpid(pid, NULL, WNOHANG) == pid) return true; /* our child (we are its subreaper) */
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) return true;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "State:", 6) == 0) {
            gone = strchr(line, 'Z') != NULL;
            break;
        }
    }
    fclose(f);
    return gone;
}

/* PING on a fresh connection: true if the server answers PONG. */
static bool test_redis_ping(int port)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    redisReply *reply;
    bool ok = false;

    if (c == NULL) return false;
    if (!c->err && (reply = redisCommand(c, "PING")) != NULL) {
        ok = reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
        freeReplyObject(reply);
    }
    redisFree(c);
    return ok;
}

int test_redis_start(struct test_redis *s)
{
    char port[16];
    double deadline;
    pid_t child;
    int status;

    snprintf(port, sizeof port, "%d", s->port);
    unlink(s->pidfile);
    child = fork();
    if (child < 0) return -1;
    if (child == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "yes", "--pidfile", s->pidfile, "--logfile",
               s->logfile, "--dir", s->dir, (char *)NULL);
        _exit(127);
    }
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "redis-server did not start (is the redis-server package installed?)\n");
        return -1;
    }
    s->pid = 0;
    for (deadline = test_now_s() + 5; test_now_s() < deadline; test_sleep_ms(20)) {
        if (s->pid == 0) {
            FILE *f = fopen(s->pidfile, "r");
            int pid = 0;
            if (f) {
                if (fscanf(f, "%d", &pid) != 1) pid = 0;
                fclose(f);
            }
            s->pid = pid;
        }
        if (s->pid > 0 && test_redis_ping(s->port)) return 0;
    }
    fprintf(stderr, "redis-server on port %d did not answer PING\n", s->port);
    return -1;
}

void test_redis_stop(struct test_redis *s)
{
    double deadline;
    if (s->pid <= 0) return;
    kill(s->pid, SIGTERM);
    for (deadline = test_now_s() + 5; test_now_s() < deadline && !test_process_gone(s->pid);
         test_sleep_ms(10)) {
    }
    if (!test_process_gone(s->pid)) {
        kill(s->pid, SIGKILL);
        while (!test_process_gone(s->pid))
            test_sleep_ms(10);
    }
    s->pid = 0;
    unlink(s->pidfile);
}

int test_redis_open(struct test_redis *s)
{
    const char *tmp = getenv("TMPDIR");
    /* The daemonised server is reparented to us, so we can reap it. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    snprintf(s->dir, sizeof s->dir, "%s/mxw-test-redis.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(s->dir) == NULL) return -1;
    snprintf(s->pidfile, sizeof s->pidfile, "%s/redis.pid", s->dir);
    snprintf(s->logfile, sizeof s->logfile, "%s/redis.log", s->dir);
    s->port = test_free_port();
    if (s->port <= 0) return -1;
    return test_redis_start(s);
}

void test_redis_close(struct test_redis *s)
{
    test_redis_stop(s);
    unlink(s->logfile);
    rmdir(s->dir);
}

int test_redis_flushall(const struct test_redis *s)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    redisReply *reply = NULL;
    int rc = -1;
    if (c && !c->err) reply = redisCommand(c, "FLUSHALL");
    if (reply && reply->type == REDIS_REPLY_STATUS) rc = 0;
    if (reply) freeReplyObject(reply);
    if (c) redisFree(c);
    return rc;
}
