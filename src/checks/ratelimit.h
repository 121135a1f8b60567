/*
 * ratelimit - counters of events per client IP, sender domain and recipient
 * address, each kind with its own limit and window, shared by all nodes
 * through the kv store (namespace RATELIMIT_NS).
 *
 * The milter counts one event per call: a connection (or a message) per
 * client IP at connect, a message per sender domain at MAIL, a recipient at
 * RCPT. An event over its limit is refused with
 * "451 4.7.1 Rate limit exceeded for WHAT, try again later" (WHAT: "your
 * address", "the sender domain" or "this recipient") and is not
 * counted, so a sender that backs off is let in again once the window
 * allows it.
 *
 * Windows: counters are kept per fixed window (the window index is
 * now / window_s). In RATELIMIT_FIXED mode the count is the current
 * window's. In RATELIMIT_SLIDING mode (the default) it is the current
 * window plus the previous one weighted by how much of it still overlaps
 * the last window_s seconds, the usual two-bucket approximation of a
 * sliding window: no burst of twice the limit across a window boundary.
 *
 * Sharing and races: a check is one read of both buckets (kv_counters_get,
 * one round trip with Redis) and, when allowed, one increment. Two nodes
 * checking at the same instant can both admit the last event under the
 * limit, so the limit can be exceeded by at most one event per node racing;
 * for a rate limit that is an acceptable price for not locking.
 *
 * Keys: an IPv4 client counts per address, an IPv6 client per /64 (one host
 * usually owns the whole /64 and could otherwise rotate through it).
 *
 * Failure: a store that cannot be read or written allows the event
 * (RATELIMIT_ERROR, a warning logged): mail is never refused because the
 * store is down.
 */
#ifndef MXW_RATELIMIT_H
#define MXW_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct kv;

#define RATELIMIT_NS        "rate"
#define RATELIMIT_REPLY_MAX 128

enum ratelimit_kind {
    RATELIMIT_CLIENT_IP,     /* value: the client address (text) */
    RATELIMIT_SENDER_DOMAIN, /* value: the sender address or domain; its domain is counted */
    RATELIMIT_RECIPIENT,     /* value: the recipient address */
    RATELIMIT_N_KINDS
};

enum ratelimit_mode { RATELIMIT_SLIDING, RATELIMIT_FIXED };

struct ratelimit_rule {
    unsigned limit;    /* events per window; 0 disables this kind */
    unsigned window_s; /* window length in seconds (> 0 when limit > 0) */
};

struct ratelimit_config {
    struct ratelimit_rule rules[RATELIMIT_N_KINDS];
    enum ratelimit_mode mode;
};

/* 600/h per client IP, 2000/h per sender domain, 500/h per recipient; sliding. */
struct ratelimit_config ratelimit_config_default(void);

/*
 * Parses a rule as written in the configuration: "LIMIT/WINDOW" where WINDOW
 * is a number with an optional unit s, m, h or d ("600/1h", "100/90s",
 * "2000/h" meaning one hour); "0" or "off" disables. 0, or -1 with err_set().
 */
int ratelimit_rule_parse(const char *text, struct ratelimit_rule *out);

/* "client_ip", "sender_domain", "recipient". */
const char *ratelimit_kind_name(enum ratelimit_kind kind);

enum ratelimit_status {
    RATELIMIT_ALLOW,    /* under the limit; counted */
    RATELIMIT_EXCEEDED, /* over the limit; answer reply (4xx); not counted */
    RATELIMIT_SKIPPED,  /* the kind is disabled, or there is nothing to count (bounce sender) */
    RATELIMIT_ERROR,    /* the store failed, or the value is unusable: allow (logged) */
};

struct ratelimit_result {
    enum ratelimit_status status;
    unsigned count; /* events in the window before this one (rounded down) */
    unsigned limit;
    unsigned window_s;
    char reply[RATELIMIT_REPLY_MAX]; /* EXCEEDED: the SMTP reply */
};

/*
 * Checks and counts one event of kind for value at time now. cfg NULL means
 * the defaults; kv NULL (no store) is RATELIMIT_ERROR. Values compare
 * case-insensitively. Returns the status (also in out->status).
 */
enum ratelimit_status ratelimit_check(const struct ratelimit_config *cfg, struct kv *kv,
                                      enum ratelimit_kind kind, const char *value, time_t now,
                                      struct ratelimit_result *out);

#endif
