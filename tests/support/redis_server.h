/*
 * redis_server - a real redis-server for tests: a private directory, a free
 * loopback port, no persistence, started daemonised and stopped by its PID.
 *
 * test_redis_open() makes the calling process the child subreaper, so the
 * daemonised server can be reaped when it stops (PLATFORM.md: otherwise it
 * lingers as a zombie). test_redis_start()/test_redis_stop() may be called
 * again to restart the same server on the same port.
 */
#ifndef MXW_TEST_REDIS_SERVER_H
#define MXW_TEST_REDIS_SERVER_H

#include <stdbool.h>
#include <sys/types.h>

struct test_redis {
    int port;
    pid_t pid;
    char dir[256];
    char pidfile[300];
    char logfile[300];
};

/* A free TCP port on 127.0.0.1, or -1. */
int test_free_port(void);
/* Creates the directory, picks a port and starts the server. 0, or -1 with a message on stderr. */
int test_redis_open(struct test_redis *s);
/* Starts (again) on s->port and waits until it answers PING (5 s at most). */
int test_redis_start(struct test_redis *s);
/* Empties every database of the running server (FLUSHALL). 0, or -1 if it did not answer OK. */
int test_redis_flushall(const struct test_redis *s);
/* Stops the server by PID and waits until it is gone. */
void test_redis_stop(struct test_redis *s);
/* Stops the server and removes its directory. */
void test_redis_close(struct test_redis *s);
/* True once pid has exited (reaped, absent, or a zombie). */
bool test_process_gone(pid_t pid);
double test_now_s(void);
void test_sleep_ms(long ms);

#endif
