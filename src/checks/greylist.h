/*
 * greylist - temporary rejection of the first delivery attempt of an unknown
 * (client network, sender, recipient) triplet, at RCPT time.
 *
 * A real mail server retries a 4xx; much bulk-sending software does not. The
 * triplet is:
 *   - the client network: the /24 of an IPv4 address, the /64 of an IPv6 one
 *     (large senders retry from another address of the same pool);
 *   - the envelope sender, lowercased; the empty sender (a bounce) is "<>";
 *   - the recipient, lowercased.
 * The first attempt is answered "451 4.7.1 Greylisted, try again in N
 * seconds". A retry after cfg.delay_s and within cfg.retry_window_s of the
 * first attempt passes, and the triplet is then remembered for cfg.pass_ttl_s
 * (renewed, at most once a day, while mail keeps coming), so later mail
 * passes at once. A retry after the window starts over.
 *
 * State lives in the kv store (namespace GREYLIST_NS), so all nodes of a
 * cluster share it: a triplet first seen on one node is accepted on another.
 * Every state change is a batch with an expectation on the current value
 * (kv_batch_expect): of two nodes racing on a new triplet exactly one
 * records the first attempt; the other re-reads and uses that record. The
 * value holds its own timestamps, so `now` (a parameter, for tests and
 * replay) decides, not the store's TTLs, which only collect garbage.
 *
 * Bypass: the caller decides who is exempt (allowed senders and client IPs,
 * authenticated sessions, per-domain settings) and does not call
 * greylist_check() for them.
 *
 * Failure: if the store cannot be read or written, the result is
 * GREYLIST_ERROR with a warning logged, and the caller must accept the
 * recipient: mail is never blocked because the store is down.
 *
 * Threads: the configuration is read-only; the kv handle is the calling
 * thread's (kv.h).
 */
#ifndef MXW_GREYLIST_H
#define MXW_GREYLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct kv;

#define GREYLIST_NS                 "grey"
#define GREYLIST_DELAY_DEFAULT_S    300u
#define GREYLIST_WINDOW_DEFAULT_S   (4u * 3600u)
#define GREYLIST_PASS_TTL_DEFAULT_S (36u * 86400u)
#define GREYLIST_REPLY_MAX          128

struct greylist_config {
    unsigned delay_s;        /* a retry earlier than this after the first attempt is refused */
    unsigned retry_window_s; /* a retry later than this after the first attempt starts over */
    unsigned pass_ttl_s;     /* how long a passed triplet passes at once */
};

/* 300 s, 4 h, 36 days. */
struct greylist_config greylist_config_default(void);

enum greylist_status {
    GREYLIST_PASS,       /* accept the recipient */
    GREYLIST_GREYLISTED, /* answer 451 with reply */
    GREYLIST_ERROR,      /* the store failed or the input is unusable: accept (logged) */
};

struct greylist_result {
    enum greylist_status status;
    unsigned seconds_left;          /* GREYLISTED: until a retry is accepted (>= 1) */
    bool first_attempt;             /* this call recorded the triplet's first attempt */
    char reply[GREYLIST_REPLY_MAX]; /* GREYLISTED: "451 4.7.1 Greylisted, try again in N seconds" */
};

/*
 * Checks (and records) one delivery attempt of client_ip / sender /
 * recipient at time now. sender "" or NULL is the bounce sender. cfg NULL
 * means the defaults; kv NULL (the store could not be opened) is an error.
 * Returns the status (also in out->status). An unparsable client IP or an
 * empty recipient is GREYLIST_ERROR (accept), logged.
 */
enum greylist_status greylist_check(const struct greylist_config *cfg, struct kv *kv,
                                    const char *client_ip, const char *sender,
                                    const char *recipient, time_t now, struct greylist_result *out);

/*
 * The network part of the triplet for client_ip: "203.0.113.0/24" or
 * "2001:db8:1:2::/64" (IPv4-mapped IPv6 is IPv4). Writes it to out (size
 * bytes) and returns 0, or -1 if ip is not an address or out is too small.
 */
int greylist_client_network(const char *client_ip, char *out, size_t size);

#endif
