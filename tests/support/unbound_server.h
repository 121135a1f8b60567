/*
 * unbound_server - a real unbound for tests: the caller's zone data on a free
 * loopback port (UDP and TCP), running in the foreground as our child and
 * stopped by its PID.
 *
 * zone is unbound "server:" configuration, typically local-zone/local-data
 * lines; everything else (the root) is refused. TXT data needs single quotes
 * outside: local-data: 'example.org. TXT "v=spf1 -all"'.
 */
#ifndef MXW_TEST_UNBOUND_SERVER_H
#define MXW_TEST_UNBOUND_SERVER_H

#include <sys/types.h>

struct test_unbound {
    int port;
    pid_t pid;
    char dir[256];
    char conf[300];
    char logfile[300];
};

/*
 * Creates a private directory, writes the configuration with zone, picks a
 * free port and starts unbound; returns when it answers (5 s at most).
 * 0, or -1 with a message on stderr (the server is then stopped).
 */
int test_unbound_open(struct test_unbound *u, const char *zone);
/* Starts (again) with the same configuration and port; 0 or -1. */
int test_unbound_start(struct test_unbound *u);
/* Stops the server by PID (SIGTERM, then SIGKILL) and reaps it. */
void test_unbound_stop(struct test_unbound *u);
/* Stops the server and removes its directory. */
void test_unbound_close(struct test_unbound *u);

/*
 * A deliberately broken DNS server on a free loopback port (UDP and TCP),
 * run by a thread of the test, for the resolver's bad-input tests:
 *   TEST_BAD_DNS_SILENT     reads nothing, answers nothing
 *   TEST_BAD_DNS_RANDOM     answers with the query's id and then random bytes
 *   TEST_BAD_DNS_TRUNCATED  a well-formed header and question, the answer cut short
 *   TEST_BAD_DNS_LOOP       an answer whose owner name is a compression pointer to itself
 *   TEST_BAD_DNS_HUGE       UDP says truncated (TC); over TCP ~64 KiB of TXT records
 *   TEST_BAD_DNS_SLOW       (test_bad_dns_start_slow) answers every UDP query with
 *                           A 127.0.0.2, TTL 0, delay_ms after it came; many at once
 */
enum test_bad_dns_mode {
    TEST_BAD_DNS_SILENT,
    TEST_BAD_DNS_RANDOM,
    TEST_BAD_DNS_TRUNCATED,
    TEST_BAD_DNS_LOOP,
    TEST_BAD_DNS_HUGE,
    TEST_BAD_DNS_SLOW,
};

struct test_bad_dns;

/* Starts the server; its port is test_bad_dns_port(). NULL on failure. */
struct test_bad_dns *test_bad_dns_start(enum test_bad_dns_mode mode);
/* TEST_BAD_DNS_SLOW: a list server that lists everyone, delay_ms late. */
struct test_bad_dns *test_bad_dns_start_slow(unsigned delay_ms);
int test_bad_dns_port(const struct test_bad_dns *s);
/* Queries received so far. */
unsigned test_bad_dns_queries(const struct test_bad_dns *s);
/* Stops the thread and frees everything. */
void test_bad_dns_stop(struct test_bad_dns *s);

#endif
