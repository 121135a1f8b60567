/*
 * dns - the one DNS resolver of the scan path, on c-ares.
 *
 * A struct dns_resolver belongs to one scanning thread and is never shared:
 * it holds a c-ares channel, a deadline and a cache, none of them locked.
 * Queries look synchronous (they return the answer) but run on c-ares with a
 * poll() loop, so several can be in flight at once (dns_query_many()).
 *
 * Time: dns_begin_scan() sets a budget that every query of the scan shares;
 * a query also never waits longer than the configured timeout_ms. When the
 * budget is spent, queries still unanswered return DNS_TIMEOUT at once, so a
 * scan never waits on DNS longer than its budget in total.
 *
 * Answers: TXT strings of one record are concatenated (RFC 7208 3.3); A and
 * AAAA become address text, MX and PTR host names. An answer the server gets
 * wrong (unparsable, or more than DNS_MAX_ANSWER_BYTES of record data) is
 * DNS_MALFORMED, never a crash.
 *
 * Cache: positive and negative (NXDOMAIN, NODATA) answers are kept for their
 * TTL, capped at DNS_CACHE_MAX_TTL_S (negative: DNS_CACHE_NEG_TTL_S), in a
 * least-recently-used table of cache_entries entries. Failures are not cached.
 */
#ifndef MXW_DNS_H
#define MXW_DNS_H

#include <stddef.h>
#include <stdint.h>

#define DNS_MAX_ANSWER_BYTES 32768u /* record data of one answer; more is DNS_MALFORMED */
#define DNS_CACHE_MAX_TTL_S  3600u
#define DNS_CACHE_NEG_TTL_S  300u
#define DNS_MAX_NAME_LEN     253
#define DNS_TIMEOUT_DEF_MS   2000u /* a query's timeout when the configuration gives 0 */

enum dns_type {
    DNS_T_A = 1,
    DNS_T_PTR = 12,
    DNS_T_MX = 15,
    DNS_T_TXT = 16,
    DNS_T_AAAA = 28,
};

enum dns_status {
    DNS_OK,        /* at least one record */
    DNS_NXDOMAIN,  /* the name does not exist */
    DNS_NODATA,    /* the name exists, no record of this type */
    DNS_TIMEOUT,   /* no answer within the timeout or the scan budget */
    DNS_SERVFAIL,  /* the server failed or refused, or the query could not be sent */
    DNS_MALFORMED, /* an answer we cannot use: garbage, or too large */
};

struct dns_config {
    char server[64];        /* IPv4/IPv6 address; "" = the servers of /etc/resolv.conf */
    int port;               /* 0 = 53 */
    unsigned timeout_ms;    /* per query; 0 = DNS_TIMEOUT_DEF_MS */
    unsigned cache_entries; /* 0 = no cache */
};

struct dns_record {
    const char *text; /* NUL-terminated: address, host name, or joined TXT strings */
    size_t len;       /* bytes of text (TXT data may hold NUL bytes) */
    unsigned pref;    /* MX preference; 0 for other types */
};

/* One answer, allocated as one block: free with dns_answer_free(). */
struct dns_answer {
    enum dns_status status;
    enum dns_type type;
    uint32_t ttl_s;
    size_t n_records; /* > 0 only when status is DNS_OK */
    struct dns_record *records;
};

struct dns_resolver;

/*
 * A resolver for the calling thread. Returns NULL with err_set() if c-ares
 * cannot be set up or the server address is invalid. Free with
 * dns_resolver_free().
 */
struct dns_resolver *dns_resolver_new(const struct dns_config *cfg);
/* Cancels what is in flight and frees everything. NULL is a no-op. */
void dns_resolver_free(struct dns_resolver *r);

/* Starts a scan: from now on all queries share budget_ms (0 = no budget, only timeout_ms). */
void dns_begin_scan(struct dns_resolver *r, unsigned budget_ms);
/* Milliseconds left of the scan budget (UINT32_MAX without a budget). */
unsigned dns_budget_left_ms(const struct dns_resolver *r);

/*
 * Resolves name (no trailing dot needed) for type, from the cache or the
 * server. Never returns NULL: failures are answers with an error status. The
 * caller owns the answer and frees it with dns_answer_free().
 */
struct dns_answer *dns_query(struct dns_resolver *r, const char *name, enum dns_type type);

/* One query of a batch: fill name and type; dns_query_many() sets answer (caller frees). */
struct dns_batch_item {
    const char *name;
    enum dns_type type;
    struct dns_answer *answer;
};

/*
 * Resolves all n items concurrently and returns when every one has an
 * answer or the deadline has passed (those then say DNS_TIMEOUT). Every
 * item's answer is set and owned by the caller afterwards.
 */
void dns_query_many(struct dns_resolver *r, struct dns_batch_item *items, size_t n);

void dns_answer_free(struct dns_answer *a);

/* "OK", "NXDOMAIN", ... for logs and symbol options. */
const char *dns_status_name(enum dns_status status);

/* Queries answered from the cache / sent to the server, since the resolver was made. */
struct dns_stats {
    unsigned long cache_hits;
    unsigned long queries_sent;
};
struct dns_stats dns_resolver_stats(const struct dns_resolver *r);

#endif
