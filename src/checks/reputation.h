/*
 * reputation - the third classifier: how the client IP, its network, the
 * sender domain and the domains a message links to fared in our own
 * verdicts over the last 24 hours.
 *
 * The entities of a message are taken once into a struct reputation_entities
 * (reputation_entities_extract), so that the check during the scan and the
 * verdict recorded after it talk about exactly the same things:
 *   - the client IP (not for loopback, private, link-local, shared and ULA
 *     addresses: those are our own network, not a sender with a reputation),
 *   - its network: the /24 of an IPv4 address, the /64 of an IPv6 one,
 *   - the sender domain: the registrable domain of the envelope sender, or
 *     of the From: address when the envelope sender is empty or unknown,
 *   - up to max_url_domains distinct registrable domains of the URLs, in
 *     the order the message shows them.
 *
 * Counters live in the kv store (kv.h: LMDB alone, Redis in a cluster) as
 * hourly buckets of (spam, ham); a check reads the 24 buckets of every
 * entity of the message in one kv_counters_get (one round trip with Redis),
 * a verdict is one batch that increments the current hour of each entity.
 * The key layout is described in reputation.c.
 *
 * Symbols (scores are the most a hit gives; a hit scores less the fewer
 * verdicts there are and the closer spam and ham are to even):
 *   IP_REPUTATION_SPAM      +3.0   IP_REPUTATION_HAM      -1.5
 *   DOMAIN_REPUTATION_SPAM  +2.5   DOMAIN_REPUTATION_HAM  -1.0
 *   URL_REPUTATION_SPAM     +3.0   URL_REPUTATION_HAM     -0.5
 *   REPUTATION_UNAVAILABLE   0     (the counters could not be read)
 * The IP symbols judge the IP by its own verdicts once it has the minimum
 * volume, and by its network's (at REPUTATION_NET_FACTOR of the weight)
 * while it has not: a new address in a network that sends spam is suspect,
 * a known one is judged by itself. Good reputation is kept modest so that a
 * hijacked good sender does not sail through; the sender domain can be
 * forged and a spammer can add links to good sites, hence their small HAM.
 * Each hit's options name the entity and its counts, e.g.
 * "203.0.113.7 spam=40 ham=2 window=24h".
 *
 * Operator allow rules override reputation: an entity for which the allow
 * callback answers true never gets a SPAM symbol (HAM is fine), and a spam
 * verdict is not recorded against it. An allowed client IP also shields its
 * network (the verdict on a partner's mail must not count against the
 * partner's neighbours either).
 *
 * Threads: the check and the record only read their arguments and use the
 * kv handle given (one per thread, kv.h); the ids are read-only after
 * reputation_register().
 */
#ifndef MXW_REPUTATION_H
#define MXW_REPUTATION_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct arena;
struct kv;
struct message;
struct scan_result;
struct symbol_registry;

enum reputation_kind {
    REPUTATION_KIND_IP,     /* "203.0.113.7", "2001:db8::1" (canonical text form) */
    REPUTATION_KIND_NET,    /* "203.0.113.0/24", "2001:db8:1:2::/64" */
    REPUTATION_KIND_DOMAIN, /* registrable domain of the sender, lowercase ASCII */
    REPUTATION_KIND_URL,    /* registrable domain of a URL host (or the IP literal) */
    REPUTATION_N_KINDS
};

enum reputation_verdict { REPUTATION_VERDICT_SPAM, REPUTATION_VERDICT_HAM };

#define REPUTATION_NS              "rep" /* kv namespace of the hourly counters */
#define REPUTATION_WINDOW_HOURS    24
#define REPUTATION_TTL_SECONDS     (25 * 3600) /* a bucket outlives the window by an hour */
#define REPUTATION_MAX_URL_DOMAINS 16
#define REPUTATION_MAX_ENTITIES    (3 + REPUTATION_MAX_URL_DOMAINS)
#define REPUTATION_VALUE_MAX       256 /* bytes with the NUL; longer values are skipped */
#define REPUTATION_NET_FACTOR      0.75

struct reputation_entity {
    enum reputation_kind kind;
    char value[REPUTATION_VALUE_MAX];
};

/* Owns its strings (fixed buffers): it may outlive the message and be copied freely. */
struct reputation_entities {
    struct reputation_entity e[REPUTATION_MAX_ENTITIES];
    size_t n;
};

struct reputation_config {
    unsigned min_volume;      /* spam + ham in the window below which nothing fires */
    unsigned full_volume;     /* spam + ham at which confidence is full (log-scaled up to it) */
    unsigned max_url_domains; /* URL domains per message (REPUTATION_MAX_URL_DOMAINS at most) */
};

/* min_volume 5, full_volume 100, max_url_domains 8. */
struct reputation_config reputation_config_default(void);

/*
 * Answers whether an operator rule allows kind/value (value as in struct
 * reputation_entity). Must be safe to call from the scanning thread.
 */
typedef bool (*reputation_allow_fn)(void *ctx, enum reputation_kind kind, const char *value);

struct reputation_ids {
    int ip_spam, ip_ham;
    int domain_spam, domain_ham;
    int url_spam, url_ham;
    int unavailable;
};

/* Adds the symbols to reg at start-up and keeps their ids in *ids. */
void reputation_register(struct symbol_registry *reg, struct reputation_ids *ids);

/* "ip", "net", "domain" or "url". */
const char *reputation_kind_name(enum reputation_kind kind);

/*
 * Fills *out with the entities of m (see the top of this file), at most
 * max_url_domains URL domains (capped at REPUTATION_MAX_URL_DOMAINS).
 * scratch (not NULL) receives temporary strings; nothing in *out points into
 * it or into m. Never fails: what cannot be parsed (a missing or invalid
 * client IP, an address without a domain) is simply left out.
 */
void reputation_entities_extract(struct arena *scratch, const struct message *m,
                                 unsigned max_url_domains, struct reputation_entities *out);

/*
 * Appends the entities of the client IP text ip (its IP and its network)
 * unless it is invalid, not a public address, or e has no room for both.
 * Returns how many entities were added (0 or 2). For callers that know the
 * IP without a parsed message; reputation_entities_extract() calls it.
 */
size_t reputation_entities_add_client_ip(struct reputation_entities *e, const char *ip);

/* True for addresses that are not scored: loopback, private, link-local, shared, ULA, invalid. */
bool reputation_ip_is_local(const char *ip);

/*
 * Reads the window of every entity in e (one kv_counters_get) and adds the
 * symbols to r. cfg NULL means the defaults; is_allowed may be NULL (nothing
 * allowed). Returns KV_OK, or the negative KV_* code of the failed read: then
 * REPUTATION_UNAVAILABLE is added (with the reason as its option), a warning
 * is logged, and the scan should go on without reputation. kv NULL (the
 * store could not be opened) is treated the same way, as KV_UNAVAILABLE.
 */
int reputation_check(const struct reputation_ids *ids, const struct reputation_config *cfg,
                     struct kv *kv, const struct reputation_entities *e, time_t now,
                     reputation_allow_fn is_allowed, void *allow_ctx, struct scan_result *r);

/*
 * Counts verdict for every entity of e in the hour of now: one batch, all or
 * nothing. A spam verdict skips the entities is_allowed allows (may be NULL).
 * Returns KV_OK (also when there was nothing to record) or a negative KV_*
 * code with err_set() (KV_UNAVAILABLE for kv NULL); nothing is counted then.
 */
struct kv_batch;
/*
 * What reputation_record() counts, added to b instead of committed, so a
 * caller can commit it later (or with other writes) in one transaction.
 * Returns how many increments it added.
 */
size_t reputation_record_into(struct kv_batch *b, const struct reputation_entities *e,
                              enum reputation_verdict verdict, time_t now,
                              reputation_allow_fn is_allowed, void *allow_ctx);
int reputation_record(struct kv *kv, const struct reputation_entities *e,
                      enum reputation_verdict verdict, time_t now, reputation_allow_fn is_allowed,
                      void *allow_ctx);

/*
 * The part of r's score that the reputation symbols contributed (0 if none).
 * A caller deciding which verdict to record can subtract it, so that a
 * verdict reached only because of reputation does not feed reputation back
 * (a loop that would otherwise lock in a sender's past).
 */
double reputation_result_score(const struct reputation_ids *ids, const struct scan_result *r);

#endif
