/*
 * dns - a per-thread c-ares resolver with a deadline and a cache (see dns.h).
 *
 * Every query goes through dns_query_many(): cache hits are answered at once,
 * the rest are handed to c-ares together and a poll() loop drives the channel
 * until each has called back or the deadline passes; then ares_cancel() makes
 * the stragglers call back with ARES_ECANCELLED, which we report as
 * DNS_TIMEOUT. Answers are built from the raw reply with c-ares' own parsers
 * (which check bounds and name compression), so a garbage reply becomes
 * DNS_MALFORMED; we only walk the reply ourselves to read TTLs, with the same
 * bounds checks.
 *
 * Each answer is one malloc'd block (header, record array, then the texts),
 * so the cache can hand out copies with one allocation and no ownership
 * puzzles: the cache owns its blocks, callers own theirs.
 *
 * c-ares is configured with ARES_FLAG_NOCHECKRESP so that a SERVFAIL or
 * REFUSED reply ends the query at once instead of waiting for other servers.
 */
#include "checks/dns.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <arpa/inet.h>
#include <ares.h>
#include <assert.h>
#include <ctype.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DNS_KEY_MAX            (DNS_MAX_NAME_LEN + 8)

struct dns_cache_entry {
    struct dns_cache_entry *hash_next;
    struct dns_cache_entry *lru_prev, *lru_next; /* lru_prev: more recently used */
    uint64_t hash;
    uint64_t expires_ms;
    struct dns_answer *answer; /* owned by the cache */
    char key[];
};

struct dns_resolver {
    ares_channel channel;
    unsigned timeout_ms;
    uint64_t deadline_ms; /* of the current scan; 0 = none */
    struct dns_cache_entry **buckets;
    size_t n_buckets; /* power of two; 0 = no cache */
    size_t n_entries, max_entries;
    struct dns_cache_entry *lru_head, *lru_tail;
    struct dns_stats stats;
};

/* The hidden header of an answer block: its size, so that it can be copied. */
struct dns_answer_block {
    size_t size_bytes;
    struct dns_answer answer;
};

/* One query handed to c-ares: where its answer goes. */
struct dns_pending {
    struct dns_resolver *r;
    struct dns_batch_item *item;
    size_t *outstanding;
    char key[DNS_KEY_MAX];
};

static pthread_once_t dns_ares_once = PTHREAD_ONCE_INIT;
static int dns_ares_init_status;

static void dns_ares_library_init(void)
{
    dns_ares_init_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static uint64_t dns_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *dns_status_name(enum dns_status status)
{
    switch (status) {
    case DNS_OK:
        return "OK";
    case DNS_NXDOMAIN:
        return "NXDOMAIN";
    case DNS_NODATA:
        return "NODATA";
    case DNS_TIMEOUT:
        return "TIMEOUT";
    case DNS_SERVFAIL:
        return "SERVFAIL";
    case DNS_MALFORMED:
        return "MALFORMED";
    }
    return "UNKNOWN";
}

/* ---- answer blocks ---- */

static struct dns_answer_block *dns_block_of(struct dns_answer *a)
{
    return (struct dns_answer_block *)((char *)a - offsetof(struct dns_answer_block, answer));
}

/* A record-less answer with status (TTL ttl_s). Caller frees with dns_answer_free(). */
static struct dns_answer *dns_answer_status(enum dns_type type, enum dns_status status,
                                            uint32_t ttl_s)
{
    struct dns_answer_block *b = xcalloc(1, sizeof *b);
    b->size_bytes = sizeof *b;
    b->answer.status = status;
    b->answer.type = type;
    b->answer.ttl_s = ttl_s;
    return &b->answer;
}

/* Records collected before the block is built; texts live in one growing buffer. */
struct dns_builder {
    struct dns_record *records; /* text holds an offset into data until built */
    size_t n, cap;
    char *data;
    size_t len, data_cap;
    bool too_large;
};

static void dns_builder_add(struct dns_builder *bld, const void *text, size_t len, unsigned pref)
{
    if (bld->too_large) return;
    if (bld->len + len + 1 > DNS_MAX_ANSWER_BYTES) {
        bld->too_large = true;
        return;
    }
    if (bld->n == bld->cap) {
        bld->cap = bld->cap ? bld->cap * 2 : 4;
        bld->records = xrealloc(bld->records, bld->cap * sizeof *bld->records);
    }
    if (bld->len + len + 1 > bld->data_cap) {
        bld->data_cap = (bld->len + len + 1) * 2;
        bld->data = xrealloc(bld->data, bld->data_cap);
    }
    if (len > 0) memcpy(bld->data + bld->len, text, len); /* an empty TXT string may be NULL */
    bld->data[bld->len + len] = '\0';
    bld->records[bld->n].text = (const char *)(uintptr_t)bld->len;
    bld->records[bld->n].len = len;
    bld->records[bld->n].pref = pref;
    bld->n++;
    bld->len += len + 1;
}

/* Appends to the last record (joining TXT strings); a new record if there is none. */
static void dns_builder_extend(struct dns_builder *bld, const void *text, size_t len)
{
    if (bld->n == 0) {
        dns_builder_add(bld, text, len, 0);
        return;
    }
    if (bld->too_large) return;
    if (bld->len + len > DNS_MAX_ANSWER_BYTES) {
        bld->too_large = true;
        return;
    }
    if (bld->len + len > bld->data_cap) {
        bld->data_cap = (bld->len + len) * 2;
        bld->data = xrealloc(bld->data, bld->data_cap);
    }
    /* The last record ends at len - 1 (its NUL); write over the NUL and add a new one. */
    if (len > 0) memcpy(bld->data + bld->len - 1, text, len);
    bld->len += len;
    bld->data[bld->len - 1] = '\0';
    bld->records[bld->n - 1].len += len;
}

/* The block for what was collected (consumes bld). Caller frees with dns_answer_free(). */
static struct dns_answer *dns_builder_finish(struct dns_builder *bld, enum dns_type type,
                                             uint32_t ttl_s)
{
    struct dns_answer_block *b;
    struct dns_record *recs;
    char *text;
    size_t i, size;

    if (bld->too_large || bld->n == 0) {
        enum dns_status st = bld->too_large ? DNS_MALFORMED : DNS_NODATA;
        free(bld->records);
        free(bld->data);
        if (st == DNS_MALFORMED) err_set("DNS answer larger than %u bytes", DNS_MAX_ANSWER_BYTES);
        return dns_answer_status(type, st, ttl_s);
    }
    size = sizeof *b + bld->n * sizeof *recs + bld->len;
    b = xmalloc(size);
    recs = (struct dns_record *)(b + 1);
    text = (char *)(recs + bld->n);
    memcpy(text, bld->data, bld->len);
    for (i = 0; i < bld->n; i++) {
        recs[i] = bld->records[i];
        recs[i].text = text + (uintptr_t)bld->records[i].text;
    }
    b->size_bytes = size;
    b->answer.status = DNS_OK;
    b->answer.type = type;
    b->answer.ttl_s = ttl_s;
    b->answer.n_records = bld->n;
    b->answer.records = recs;
    free(bld->records);
    free(bld->data);
    return &b->answer;
}

static struct dns_answer *dns_answer_copy(const struct dns_answer *a)
{
    const struct dns_answer_block *src = dns_block_of((struct dns_answer *)a);
    struct dns_answer_block *b = xmalloc(src->size_bytes);
    size_t i;

    memcpy(b, src, src->size_bytes);
    if (a->n_records > 0) {
        ptrdiff_t delta = (const char *)b - (const char *)src;
        b->answer.records = (struct dns_record *)(b + 1);
        for (i = 0; i < a->n_records; i++)
            b->answer.records[i].text += delta;
    } else {
        b->answer.records = NULL;
    }
    return &b->answer;
}

void dns_answer_free(struct dns_answer *a)
{
    if (a != NULL) free(dns_block_of(a));
}

/* ---- reading replies ---- */

/*
 * Skips the question and reads the smallest TTL of the answer section
 * (*answer_ttl) and of the authority section (*authority_ttl, for negative
 * answers). Returns false on a reply that does not parse; the TTLs are
 * UINT32_MAX when the section is empty.
 */
static bool dns_reply_ttls(const unsigned char *abuf, int alen, uint32_t *answer_ttl,
                           uint32_t *authority_ttl)
{
    const unsigned char *p = abuf + 12, *end = abuf + alen;
    unsigned qd, an, ns, i;
    char *name;
    long enc_len;

    *answer_ttl = *authority_ttl = UINT32_MAX;
    if (alen < 12) return false;
    qd = (unsigned)abuf[4] << 8 | abuf[5];
    an = (unsigned)abuf[6] << 8 | abuf[7];
    ns = (unsigned)abuf[8] << 8 | abuf[9];
    for (i = 0; i < qd; i++) {
        if (ares_expand_name(p, abuf, alen, &name, &enc_len) != ARES_SUCCESS) return false;
        ares_free_string(name);
        if (enc_len < 0 || end - p < enc_len + 4) return false;
        p += enc_len + 4;
    }
    for (i = 0; i < an + ns; i++) {
        uint32_t ttl;
        unsigned rdlen;
        if (ares_expand_name(p, abuf, alen, &name, &enc_len) != ARES_SUCCESS) return false;
        ares_free_string(name);
        if (enc_len < 0 || end - p < enc_len + 10) return false;
        p += enc_len;
        ttl = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
        rdlen = (unsigned)p[8] << 8 | p[9];
        p += 10;
        if ((size_t)(end - p) < rdlen) return false;
        p += rdlen;
        if (ttl > INT32_MAX) ttl = 0; /* RFC 2181 8: a TTL with the top bit set means zero */
        if (i < an && ttl < *answer_ttl) *answer_ttl = ttl;
        if (i >= an && ttl < *authority_ttl) *authority_ttl = ttl;
    }
    return true;
}

static void dns_build_txt(struct dns_builder *bld, const unsigned char *abuf, int alen, int *rc)
{
    struct ares_txt_ext *txt = NULL, *t;
    *rc = ares_parse_txt_reply_ext(abuf, alen, &txt);
    if (*rc != ARES_SUCCESS) return;
    for (t = txt; t != NULL; t = t->next) {
        if (t->record_start)
            dns_builder_add(bld, t->txt, t->length, 0);
        else
            dns_builder_extend(bld, t->txt, t->length);
    }
    ares_free_data(txt);
}

static void dns_build_mx(struct dns_builder *bld, const unsigned char *abuf, int alen, int *rc)
{
    struct ares_mx_reply *mx = NULL, *m;
    *rc = ares_parse_mx_reply(abuf, alen, &mx);
    if (*rc != ARES_SUCCESS) return;
    for (m = mx; m != NULL; m = m->next)
        dns_builder_add(bld, m->host, strlen(m->host), m->priority);
    ares_free_data(mx);
}

static void dns_build_ptr(struct dns_builder *bld, const unsigned char *abuf, int alen, int *rc)
{
    unsigned char dummy_addr[4] = {0};
    struct hostent *h = NULL;
    char **alias;

    *rc = ares_parse_ptr_reply(abuf, alen, dummy_addr, sizeof dummy_addr, AF_INET, &h);
    if (*rc != ARES_SUCCESS) return;
    if (h->h_name) dns_builder_add(bld, h->h_name, strlen(h->h_name), 0);
    for (alias = h->h_aliases; alias && *alias; alias++)
        dns_builder_add(bld, *alias, strlen(*alias), 0);
    ares_free_hostent(h);
}

static void dns_build_addr(struct dns_builder *bld, enum dns_type type, const unsigned char *abuf,
                           int alen, int *rc)
{
    char text[INET6_ADDRSTRLEN];
    int i, n = 64;

    if (type == DNS_T_A) {
        struct ares_addrttl ttls[64];
        *rc = ares_parse_a_reply(abuf, alen, NULL, ttls, &n);
        for (i = 0; *rc == ARES_SUCCESS && i < n; i++)
            if (inet_ntop(AF_INET, &ttls[i].ipaddr, text, sizeof text))
                dns_builder_add(bld, text, strlen(text), 0);
    } else {
        struct ares_addr6ttl ttls[64];
        *rc = ares_parse_aaaa_reply(abuf, alen, NULL, ttls, &n);
        for (i = 0; *rc == ARES_SUCCESS && i < n; i++)
            if (inet_ntop(AF_INET6, &ttls[i].ip6addr, text, sizeof text))
                dns_builder_add(bld, text, strlen(text), 0);
    }
}

/* The answer for a reply c-ares delivered with status. Caller frees. */
static struct dns_answer *dns_answer_from_reply(enum dns_type type, int status,
                                                const unsigned char *abuf, int alen)
{
    struct dns_builder bld = {0};
    uint32_t ttl_an, ttl_ns, neg_ttl;
    int rc = ARES_SUCCESS;

    switch (status) {
    case ARES_SUCCESS:
        break;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
        if (abuf == NULL || !dns_reply_ttls(abuf, alen, &ttl_an, &ttl_ns)) ttl_ns = 60;
        neg_ttl = ttl_ns < DNS_CACHE_NEG_TTL_S ? ttl_ns : DNS_CACHE_NEG_TTL_S;
        return dns_answer_status(type, status == ARES_ENOTFOUND ? DNS_NXDOMAIN : DNS_NODATA,
                                 neg_ttl);
    case ARES_ETIMEOUT:
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return dns_answer_status(type, DNS_TIMEOUT, 0);
    case ARES_EBADRESP:
    case ARES_EFORMERR:
        err_set("DNS reply does not parse");
        return dns_answer_status(type, DNS_MALFORMED, 0);
    default:
        err_set("DNS error: %s", ares_strerror(status));
        return dns_answer_status(type, DNS_SERVFAIL, 0);
    }
    if (!dns_reply_ttls(abuf, alen, &ttl_an, &ttl_ns)) {
        err_set("DNS reply does not parse");
        return dns_answer_status(type, DNS_MALFORMED, 0);
    }
    if (ttl_an > DNS_CACHE_MAX_TTL_S) ttl_an = DNS_CACHE_MAX_TTL_S;

    switch (type) {
    case DNS_T_TXT:
        dns_build_txt(&bld, abuf, alen, &rc);
        break;
    case DNS_T_MX:
        dns_build_mx(&bld, abuf, alen, &rc);
        break;
    case DNS_T_PTR:
        dns_build_ptr(&bld, abuf, alen, &rc);
        break;
    case DNS_T_A:
    case DNS_T_AAAA:
        dns_build_addr(&bld, type, abuf, alen, &rc);
        break;
    }
    if (rc == ARES_ENODATA) {
        free(bld.records);
        free(bld.data);
        /* Records of another type only (a CNAME chain ending nowhere): cache briefly. */
        return dns_answer_status(type, DNS_NODATA, ttl_an < 60 ? ttl_an : 60);
    }
    if (rc != ARES_SUCCESS) {
        free(bld.records);
        free(bld.data);
        err_set("DNS reply does not parse: %s", ares_strerror(rc));
        return dns_answer_status(type, DNS_MALFORMED, 0);
    }
    return dns_builder_finish(&bld, type, ttl_an);
}

/* ---- cache ---- */

static uint64_t dns_hash(const char *key)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 1099511628211ull;
    return h;
}

/* "16/example.org": type and lowercase name without trailing dot. False if name is unusable. */
static bool dns_make_key(char *key, const char *name, enum dns_type type)
{
    size_t len = strlen(name), i, off;
    if (len > 0 && name[len - 1] == '.') len--;
    if (len == 0 || len > DNS_MAX_NAME_LEN) return false;
    off = (size_t)snprintf(key, DNS_KEY_MAX, "%d/", (int)type);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= ' ' || c >= 0x7f) return false;
        key[off + i] = (char)tolower(c);
    }
    key[off + len] = '\0';
    return true;
}

static void dns_lru_unlink(struct dns_resolver *r, struct dns_cache_entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        r->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        r->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void dns_lru_push_front(struct dns_resolver *r, struct dns_cache_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = r->lru_head;
    if (r->lru_head) r->lru_head->lru_prev = e;
    r->lru_head = e;
    if (r->lru_tail == NULL) r->lru_tail = e;
}

static void dns_cache_remove(struct dns_resolver *r, struct dns_cache_entry *e)
{
    struct dns_cache_entry **pp = &r->buckets[e->hash & (r->n_buckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hash_next;
    *pp = e->hash_next;
    dns_lru_unlink(r, e);
    dns_answer_free(e->answer);
    free(e);
    r->n_entries--;
}

static struct dns_cache_entry *dns_cache_find(struct dns_resolver *r, const char *key, uint64_t h)
{
    struct dns_cache_entry *e;
    if (r->n_buckets == 0) return NULL;
    for (e = r->buckets[h & (r->n_buckets - 1)]; e; e = e->hash_next)
        if (e->hash == h && strcmp(e->key, key) == 0) return e;
    return NULL;
}

/* Keeps a copy of a (the caller keeps a) if it may be cached. */
static void dns_cache_put(struct dns_resolver *r, const char *key, const struct dns_answer *a)
{
    struct dns_cache_entry *e;
    uint64_t h = dns_hash(key);
    size_t klen = strlen(key);

    if (r->n_buckets == 0 || a->ttl_s == 0) return;
    if (a->status != DNS_OK && a->status != DNS_NXDOMAIN && a->status != DNS_NODATA) return;
    if ((e = dns_cache_find(r, key, h)) != NULL) dns_cache_remove(r, e);
    while (r->n_entries >= r->max_entries && r->lru_tail)
        dns_cache_remove(r, r->lru_tail);
    e = xcalloc(1, sizeof *e + klen + 1);
    memcpy(e->key, key, klen + 1);
    e->hash = h;
    e->expires_ms = dns_now_ms() + (uint64_t)a->ttl_s * 1000u;
    e->answer = dns_answer_copy(a);
    e->hash_next = r->buckets[h & (r->n_buckets - 1)];
    r->buckets[h & (r->n_buckets - 1)] = e;
    dns_lru_push_front(r, e);
    r->n_entries++;
}

/* A copy of the cached answer for key, or NULL (expired entries are dropped). */
static struct dns_answer *dns_cache_get(struct dns_resolver *r, const char *key)
{
    uint64_t h = dns_hash(key);
    struct dns_cache_entry *e = dns_cache_find(r, key, h);

    if (e == NULL) return NULL;
    if (dns_now_ms() >= e->expires_ms) {
        dns_cache_remove(r, e);
        return NULL;
    }
    dns_lru_unlink(r, e);
    dns_lru_push_front(r, e);
    return dns_answer_copy(e->answer);
}

/* ---- resolver ---- */

struct dns_resolver *dns_resolver_new(const struct dns_config *cfg)
{
    struct dns_resolver *r;
    struct ares_options opts;
    int optmask, rc;

    pthread_once(&dns_ares_once, dns_ares_library_init);
    if (dns_ares_init_status != ARES_SUCCESS) {
        err_set("c-ares: %s", ares_strerror(dns_ares_init_status));
        return NULL;
    }
    r = xcalloc(1, sizeof *r);
    r->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DNS_TIMEOUT_DEF_MS;

    memset(&opts, 0, sizeof opts);
    opts.flags = ARES_FLAG_NOCHECKRESP | ARES_FLAG_EDNS;
    opts.ednspsz = 1232;
    /* Two tries; c-ares doubles the second one's wait, so 1/3 each fills timeout_ms. */
    opts.timeout = (int)(r->timeout_ms / 3 > 50 ? r->timeout_ms / 3 : 50);
    opts.tries = 2;
    optmask = ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    rc = ares_init_options(&r->channel, &opts, optmask);
    if (rc != ARES_SUCCESS) {
        err_set("c-ares init: %s", ares_strerror(rc));
        free(r);
        return NULL;
    }
    if (cfg->server[0] != '\0') {
        struct ares_addr_port_node node;
        memset(&node, 0, sizeof node);
        node.udp_port = node.tcp_port = cfg->port > 0 ? cfg->port : 53;
        if (inet_pton(AF_INET, cfg->server, &node.addr.addr4) == 1) {
            node.family = AF_INET;
        } else if (inet_pton(AF_INET6, cfg->server, &node.addr.addr6) == 1) {
            node.family = AF_INET6;
        } else {
            err_set("DNS server '%s' is not an IP address", cfg->server);
            ares_destroy(r->channel);
            free(r);
            return NULL;
        }
        rc = ares_set_servers_ports(r->channel, &node);
        if (rc != ARES_SUCCESS) {
            err_set("c-ares servers: %s", ares_strerror(rc));
            ares_destroy(r->channel);
            free(r);
            return NULL;
        }
    }
    if (cfg->cache_entries > 0) {
        size_t nb = 16;
        while (nb < (size_t)cfg->cache_entries * 2)
            nb *= 2;
        r->buckets = xcalloc(nb, sizeof *r->buckets);
        r->n_buckets = nb;
        r->max_entries = cfg->cache_entries;
    }
    return r;
}

void dns_resolver_free(struct dns_resolver *r)
{
    if (r == NULL) return;
    /* ares_destroy() calls back pending queries; none are pending between calls. */
    ares_destroy(r->channel);
    while (r->lru_head)
        dns_cache_remove(r, r->lru_head);
    free(r->buckets);
    free(r);
}

void dns_begin_scan(struct dns_resolver *r, unsigned budget_ms)
{
    r->deadline_ms = budget_ms ? dns_now_ms() + budget_ms : 0;
}

unsigned dns_budget_left_ms(const struct dns_resolver *r)
{
    uint64_t now;
    if (r->deadline_ms == 0) return UINT32_MAX;
    now = dns_now_ms();
    return now >= r->deadline_ms ? 0 : (unsigned)(r->deadline_ms - now);
}

struct dns_stats dns_resolver_stats(const struct dns_resolver *r)
{
    return r->stats;
}

static void dns_query_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dns_pending *p = arg;
    struct dns_answer *a;
    (void)timeouts;

    a = dns_answer_from_reply(p->item->type, status, abuf, alen);
    if (a->status == DNS_MALFORMED || a->status == DNS_SERVFAIL)
        log_debug("module=dns event=query_failed name=%s status=%s reason=\"%s\"", p->item->name,
                  dns_status_name(a->status), err_msg());
    dns_cache_put(p->r, p->key, a);
    p->item->answer = a;
    (*p->outstanding)--;
}

/* Drives the channel until nothing is outstanding or deadline_ms passes. */
static void dns_run_until(struct dns_resolver *r, const size_t *outstanding, uint64_t deadline_ms)
{
    while (*outstanding > 0) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        struct pollfd fds[ARES_GETSOCK_MAXNUM];
        struct timeval maxtv, tv, *tvp;
        uint64_t now = dns_now_ms(), left;
        unsigned bits;
        int i, nfds = 0, wait_ms, rc;

        if (now >= deadline_ms) break;
        left = deadline_ms - now;
        /* ares_getsock()'s bitmask read by hand: ARES_GETSOCK_WRITABLE shifts a signed 1 by 31. */
        bits = (unsigned)ares_getsock(r->channel, socks, ARES_GETSOCK_MAXNUM);
        for (i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            short ev = 0;
            if (bits & (1u << i)) ev |= POLLIN;
            if (bits & (1u << (i + ARES_GETSOCK_MAXNUM))) ev |= POLLOUT;
            if (ev == 0) continue;
            fds[nfds].fd = socks[i];
            fds[nfds].events = ev;
            fds[nfds].revents = 0;
            nfds++;
        }
        maxtv.tv_sec = (time_t)(left / 1000);
        maxtv.tv_usec = (suseconds_t)(left % 1000) * 1000;
        tvp = ares_timeout(r->channel, &maxtv, &tv);
        wait_ms = (int)(tvp->tv_sec * 1000 + (tvp->tv_usec + 999) / 1000);
        rc = poll(fds, (nfds_t)nfds, wait_ms);
        if (rc <= 0) {
            /* Timeout (or EINTR): let c-ares retransmit or give up on expired tries. */
            ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
            continue;
        }
        for (i = 0; i < nfds; i++) {
            ares_socket_t rd =
                (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) ? fds[i].fd : ARES_SOCKET_BAD;
            ares_socket_t wr = (fds[i].revents & POLLOUT) ? fds[i].fd : ARES_SOCKET_BAD;
            if (rd != ARES_SOCKET_BAD || wr != ARES_SOCKET_BAD) ares_process_fd(r->channel, rd, wr);
        }
    }
}

void dns_query_many(struct dns_resolver *r, struct dns_batch_item *items, size_t n)
{
    struct dns_pending *pending = xcalloc(n ? n : 1, sizeof *pending);
    size_t i, outstanding = 0;
    uint64_t now = dns_now_ms(), deadline = now + r->timeout_ms;

    if (r->deadline_ms != 0 && r->deadline_ms < deadline) deadline = r->deadline_ms;

    for (i = 0; i < n; i++) {
        struct dns_pending *p = &pending[i];
        items[i].answer = NULL;
        p->r = r;
        p->item = &items[i];
        p->outstanding = &outstanding;
        if (!dns_make_key(p->key, items[i].name, items[i].type)) {
            err_set("unusable DNS name");
            items[i].answer = dns_answer_status(items[i].type, DNS_SERVFAIL, 0);
            continue;
        }
        if ((items[i].answer = dns_cache_get(r, p->key)) != NULL) {
            r->stats.cache_hits++;
            continue;
        }
        if (now >= deadline) {
            items[i].answer = dns_answer_status(items[i].type, DNS_TIMEOUT, 0);
            continue;
        }
        outstanding++;
        r->stats.queries_sent++;
        /* The name without the key's "type/" prefix: lowercase, no trailing dot. */
        ares_query(r->channel, strchr(p->key, '/') + 1, 1 /* C_IN */, (int)items[i].type,
                   dns_query_done, p);
    }
    dns_run_until(r, &outstanding, deadline);
    if (outstanding > 0) ares_cancel(r->channel); /* calls back with ARES_ECANCELLED */
    for (i = 0; i < n; i++)
        if (items[i].answer == NULL)
            items[i].answer = dns_answer_status(items[i].type, DNS_TIMEOUT, 0);
    free(pending);
}

struct dns_answer *dns_query(struct dns_resolver *r, const char *name, enum dns_type type)
{
    struct dns_batch_item item = {.name = name, .type = type, .answer = NULL};
    dns_query_many(r, &item, 1);
    return item.answer;
}
