/*
 * reputation - spam/ham verdicts per IP, network, sender domain and URL
 * domain over a sliding 24-hour window. See reputation.h for the contract.
 *
 * Store layout (kv.h namespace REPUTATION_NS, "rep"): one counter vector of
 * width 2 (spam, ham) per entity and hour, keyed by the XXH3-64 of the text
 *     KIND "|" VALUE "|" HOUR
 * where KIND is one letter (i ip, n net, d domain, u url), VALUE the entity
 * as in struct reputation_entity, and HOUR = floor(unix time / 3600) in
 * decimal; e.g. "i|203.0.113.7|493612". Every increment sets a TTL of 25
 * hours, so a bucket outlives the last hour that reads it and then expires
 * by itself: nothing needs cleaning. The window slides because a check
 * reads the keys of the current hour and the 23 before it; older buckets are
 * simply no longer asked for (the window is 23 to 24 hours wide, depending
 * on the minute). Hourly buckets keep a verdict one increment and a check
 * one read of 24 x entities keys, all in one kv_counters_get: one pipelined
 * round trip with Redis, one read transaction with LMDB.
 *
 * Scoring, with s spam and h ham in the window:
 *   - nothing below min_volume verdicts: a handful says nothing;
 *   - ratio r = (s+1)/(s+h+2) (Laplace: never 0 or 1, and a few verdicts
 *     stay near 0.5); nothing fires while r is within 0.4..0.6;
 *   - strength = how far r is from 0.5 beyond that band, 0..1;
 *   - confidence = log(1+s+h) / log(1+full_volume), at most 1: ten times the
 *     volume does not mean ten times the certainty;
 *   - weight = strength * confidence, times the symbol's registered score.
 * Both factors grow with the volume at a fixed proportion of spam (the
 * Laplace term fades), and with the proportion at a fixed volume, so the
 * weight is monotone in both.
 */
#include "checks/reputation.h"
#include "checks/symbols.h"
#include "core/arena.h"
#include "core/log.h"
#include "message/message.h"
#include "message/url.h"
#include "scan/result.h"
#include "store/kv.h"

#include <arpa/inet.h>
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <xxhash.h>

#define REPUTATION_UNDECIDED 0.2 /* |2r - 1| below this fires nothing (r within 0.4..0.6) */

struct reputation_config reputation_config_default(void)
{
    struct reputation_config cfg = {.min_volume = 5, .full_volume = 100, .max_url_domains = 8};
    return cfg;
}

void reputation_register(struct symbol_registry *reg, struct reputation_ids *ids)
{
    ids->ip_spam = symbols_add(reg, "IP_REPUTATION_SPAM", 3.0,
                               "The client IP (or its network) sent mostly spam in the last 24 "
                               "hours",
                               "reputation");
    ids->ip_ham =
        symbols_add(reg, "IP_REPUTATION_HAM", -1.5,
                    "The client IP sent mostly legitimate mail in the last 24 hours", "reputation");
    ids->domain_spam =
        symbols_add(reg, "DOMAIN_REPUTATION_SPAM", 2.5,
                    "The sender domain sent mostly spam in the last 24 hours", "reputation");
    ids->domain_ham = symbols_add(reg, "DOMAIN_REPUTATION_HAM", -1.0,
                                  "The sender domain sent mostly legitimate mail in the last 24 "
                                  "hours",
                                  "reputation");
    ids->url_spam =
        symbols_add(reg, "URL_REPUTATION_SPAM", 3.0,
                    "Links to a domain seen mostly in spam in the last 24 hours", "reputation");
    ids->url_ham = symbols_add(reg, "URL_REPUTATION_HAM", -0.5,
                               "Links to a domain seen mostly in legitimate mail in the last 24 "
                               "hours",
                               "reputation");
    ids->unavailable =
        symbols_add(reg, "REPUTATION_UNAVAILABLE", 0.0,
                    "Reputation counters could not be read; scored without them", "reputation");
}

const char *reputation_kind_name(enum reputation_kind kind)
{
    switch (kind) {
    case REPUTATION_KIND_IP:
        return "ip";
    case REPUTATION_KIND_NET:
        return "net";
    case REPUTATION_KIND_DOMAIN:
        return "domain";
    case REPUTATION_KIND_URL:
        return "url";
    case REPUTATION_N_KINDS:
        break;
    }
    return "?";
}

/* ---- entities ---- */

/* Parses ip ("1.2.3.4", "2001:db8::1", "IPv6:2001:db8::1", "[::1]") into *family and addr. */
static bool reputation_ip_parse(const char *ip, int *family, unsigned char addr[16])
{
    static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char tmp[INET6_ADDRSTRLEN + 8];
    size_t len;

    if (ip == NULL) return false;
    if (strncasecmp(ip, "IPv6:", 5) == 0) ip += 5;
    len = strlen(ip);
    if (len >= 2 && ip[0] == '[' && ip[len - 1] == ']') {
        ip++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof tmp) return false;
    memcpy(tmp, ip, len);
    tmp[len] = '\0';
    if (inet_pton(AF_INET, tmp, addr) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, tmp, addr) != 1) return false;
    /* An IPv4-mapped address (::ffff:a.b.c.d) is the IPv4 sender it maps. */
    if (memcmp(addr, v4_mapped, sizeof v4_mapped) == 0) {
        memmove(addr, addr + 12, 4);
        *family = AF_INET;
        return true;
    }
    *family = AF_INET6;
    return true;
}

static bool reputation_addr_is_local(int family, const unsigned char *a)
{
    static const unsigned char zero[16];

    if (family == AF_INET) {
        return a[0] == 0                                /* 0.0.0.0/8 "this network" */
               || a[0] == 127                           /* loopback */
               || a[0] == 10                            /* RFC 1918 */
               || (a[0] == 172 && (a[1] & 0xf0) == 16)  /* RFC 1918 172.16/12 */
               || (a[0] == 192 && a[1] == 168)          /* RFC 1918 */
               || (a[0] == 169 && a[1] == 254)          /* link-local */
               || (a[0] == 100 && (a[1] & 0xc0) == 64); /* shared (carrier NAT) 100.64/10 */
    }
    if (memcmp(a, zero, 15) == 0 && (a[15] == 0 || a[15] == 1)) return true; /* :: and ::1 */
    return (a[0] & 0xfe) == 0xfc                       /* unique local fc00::/7 */
           || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80); /* link-local fe80::/10 */
}

bool reputation_ip_is_local(const char *ip)
{
    unsigned char addr[16];
    int family;
    return !reputation_ip_parse(ip, &family, addr) || reputation_addr_is_local(family, addr);
}

/* Appends kind/value unless e is full or value is empty or too long. Returns whether it did. */
static bool reputation_entities_push(struct reputation_entities *e, enum reputation_kind kind,
                                     const char *value)
{
    size_t len = value ? strlen(value) : 0;

    if (len == 0 || len >= REPUTATION_VALUE_MAX || e->n >= REPUTATION_MAX_ENTITIES) return false;
    e->e[e->n].kind = kind;
    memcpy(e->e[e->n].value, value, len + 1);
    e->n++;
    return true;
}

size_t reputation_entities_add_client_ip(struct reputation_entities *e, const char *ip)
{
    unsigned char addr[16];
    char text[INET6_ADDRSTRLEN], net[INET6_ADDRSTRLEN + 4];
    int family;

    if (!reputation_ip_parse(ip, &family, addr) || reputation_addr_is_local(family, addr)) return 0;
    if (e->n + 2 > REPUTATION_MAX_ENTITIES) return 0;
    inet_ntop(family, addr, text, sizeof text);
    if (family == AF_INET) {
        snprintf(net, sizeof net, "%u.%u.%u.0/24", addr[0], addr[1], addr[2]);
    } else {
        memset(addr + 8, 0, 8);
        inet_ntop(AF_INET6, addr, net, sizeof net - 3);
        strcat(net, "/64");
    }
    reputation_entities_push(e, REPUTATION_KIND_IP, text);
    reputation_entities_push(e, REPUTATION_KIND_NET, net);
    return 2;
}

/* The registrable domain of the sender: of the envelope sender, else of the From: address. */
static const char *reputation_sender_domain(struct arena *scratch, const struct message *m)
{
    const char *d = NULL;
    if (m->env_from_domain && *m->env_from_domain)
        d = url_registrable_domain(scratch, m->env_from_domain);
    if (d == NULL && m->from_domain && *m->from_domain)
        d = url_registrable_domain(scratch, m->from_domain);
    return d;
}

static bool reputation_entities_has(const struct reputation_entities *e, enum reputation_kind kind,
                                    const char *value)
{
    size_t i;
    for (i = 0; i < e->n; i++)
        if (e->e[i].kind == kind && strcmp(e->e[i].value, value) == 0) return true;
    return false;
}

void reputation_entities_extract(struct arena *scratch, const struct message *m,
                                 unsigned max_url_domains, struct reputation_entities *out)
{
    size_t i, urls = 0;

    out->n = 0;
    if (max_url_domains > REPUTATION_MAX_URL_DOMAINS) max_url_domains = REPUTATION_MAX_URL_DOMAINS;
    reputation_entities_add_client_ip(out, m->env.client_ip);
    reputation_entities_push(out, REPUTATION_KIND_DOMAIN, reputation_sender_domain(scratch, m));
    for (i = 0; i < m->n_urls && urls < max_url_domains; i++) {
        const char *d = m->urls[i].domain;
        if (d == NULL || *d == '\0' || reputation_entities_has(out, REPUTATION_KIND_URL, d))
            continue;
        if (reputation_entities_push(out, REPUTATION_KIND_URL, d)) urls++;
    }
}

/* ---- keys ---- */

static long long reputation_hour(time_t now)
{
    long long t = (long long)now;
    return t >= 0 ? t / 3600 : -((-t + 3599) / 3600);
}

/* XXH3 of "<kind letter>|<value>|<hour in decimal>", built by hand: a scan hashes one key per
 * entity and hour of the window (snprintf() was two thirds of the reputation check). */
static uint64_t reputation_key(const struct reputation_entity *ent, long long hour)
{
    static const char letter[REPUTATION_N_KINDS] = {'i', 'n', 'd', 'u'};
    char text[REPUTATION_VALUE_MAX + 32], digits[24];
    size_t len = 0, vlen = strnlen(ent->value, REPUTATION_VALUE_MAX), n = 0;
    unsigned long long u = hour < 0 ? 0ull - (unsigned long long)hour : (unsigned long long)hour;

    text[len++] = letter[ent->kind];
    text[len++] = '|';
    memcpy(text + len, ent->value, vlen);
    len += vlen;
    text[len++] = '|';
    if (hour < 0) text[len++] = '-';
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (n) text[len++] = digits[--n];
    return XXH3_64bits(text, len);
}

/*
 * Whether operator rules allow entity i. A network is also allowed when a
 * client IP of e is: a partner's verdicts must not count against its network.
 */
static bool reputation_allowed(const struct reputation_entities *e, size_t i,
                               reputation_allow_fn is_allowed, void *ctx)
{
    size_t j;
    if (is_allowed == NULL) return false;
    if (is_allowed(ctx, e->e[i].kind, e->e[i].value)) return true;
    if (e->e[i].kind != REPUTATION_KIND_NET) return false;
    for (j = 0; j < e->n; j++)
        if (e->e[j].kind == REPUTATION_KIND_IP &&
            is_allowed(ctx, REPUTATION_KIND_IP, e->e[j].value))
            return true;
    return false;
}

/* ---- check ---- */

/* Enough verdicts to say anything. */
static bool reputation_has_volume(const struct reputation_config *cfg, uint64_t total)
{
    return total > 0 && total >= cfg->min_volume;
}

/* 0..1 for the counts under cfg; *is_spam says which way. 0 means nothing fires. */
static double reputation_weight(const struct reputation_config *cfg, uint64_t spam, uint64_t ham,
                                bool *is_spam)
{
    uint64_t total = spam + ham;
    double ratio, spread, strength, confidence;

    *is_spam = false;
    if (!reputation_has_volume(cfg, total)) return 0.0;
    ratio = ((double)spam + 1.0) / ((double)total + 2.0);
    spread = fabs(2.0 * ratio - 1.0);
    if (spread < REPUTATION_UNDECIDED) return 0.0;
    strength = (spread - REPUTATION_UNDECIDED) / (1.0 - REPUTATION_UNDECIDED);
    confidence =
        total >= cfg->full_volume ? 1.0 : log1p((double)total) / log1p((double)cfg->full_volume);
    *is_spam = ratio > 0.5;
    return strength * confidence;
}

struct reputation_tally {
    uint64_t spam, ham;
};

/* What the check needs to score one entity: its list (for allow rules), and where to add. */
struct reputation_scoring {
    const struct reputation_config *cfg;
    const struct reputation_entities *e;
    reputation_allow_fn is_allowed;
    void *allow_ctx;
    struct scan_result *r;
};

/* Adds spam_id or ham_id for entity i with tally t, its weight times factor. Allow rules are
 * asked only when a SPAM symbol would fire: they may be lookups, and most entities fire nothing. */
static void reputation_emit(const struct reputation_scoring *sc, size_t i,
                            const struct reputation_tally *t, double factor, int spam_id,
                            int ham_id)
{
    bool is_spam;
    double w = reputation_weight(sc->cfg, t->spam, t->ham, &is_spam) * factor;
    const char *opt;

    if (w <= 0.0) return;
    if (is_spam && reputation_allowed(sc->e, i, sc->is_allowed, sc->allow_ctx)) return;
    opt = arena_printf(sc->r->arena, "%s spam=%llu ham=%llu window=%dh", sc->e->e[i].value,
                       (unsigned long long)t->spam, (unsigned long long)t->ham,
                       REPUTATION_WINDOW_HOURS);
    result_add(sc->r, is_spam ? spam_id : ham_id, w, opt);
}

int reputation_check(const struct reputation_ids *ids, const struct reputation_config *cfg,
                     struct kv *kv, const struct reputation_entities *e, time_t now,
                     reputation_allow_fn is_allowed, void *allow_ctx, struct scan_result *r)
{
    enum { KEYS = REPUTATION_MAX_ENTITIES * REPUTATION_WINDOW_HOURS };
    struct reputation_config defaults = reputation_config_default();
    uint64_t keys[KEYS];
    uint32_t counts[KEYS * 2];
    struct reputation_tally tally[REPUTATION_MAX_ENTITIES];
    struct reputation_scoring sc;
    long long hour = reputation_hour(now);
    bool ip_known = false;
    size_t i, h, n_keys = 0;
    int rc;

    assert(e->n <= REPUTATION_MAX_ENTITIES);
    if (cfg == NULL) cfg = &defaults;
    if (e->n == 0) return KV_OK;
    sc = (struct reputation_scoring){cfg, e, is_allowed, allow_ctx, r};
    if (kv == NULL) {
        err_set("reputation: the kv store is not open");
        rc = KV_UNAVAILABLE;
    } else {
        for (i = 0; i < e->n; i++)
            for (h = 0; h < REPUTATION_WINDOW_HOURS; h++)
                keys[n_keys++] = reputation_key(&e->e[i], hour - (long long)h);
        rc = kv_counters_get(kv, REPUTATION_NS, keys, n_keys, 2, counts);
    }
    if (rc != KV_OK) {
        char opt[80];
        log_warn("event=reputation_unavailable rc=%d reason=\"%s\"", rc, err_msg());
        snprintf(opt, sizeof opt, "%.70s", err_msg());
        result_add(r, ids->unavailable, 1.0, opt);
        return rc;
    }

    for (i = 0; i < e->n; i++) {
        const uint32_t *c = counts + i * REPUTATION_WINDOW_HOURS * 2;
        tally[i].spam = tally[i].ham = 0;
        for (h = 0; h < REPUTATION_WINDOW_HOURS; h++) {
            tally[i].spam += c[2 * h];
            tally[i].ham += c[2 * h + 1];
        }
        if (e->e[i].kind == REPUTATION_KIND_IP &&
            reputation_has_volume(cfg, tally[i].spam + tally[i].ham))
            ip_known = true;
    }

    for (i = 0; i < e->n; i++) {
        switch (e->e[i].kind) {
        case REPUTATION_KIND_IP:
            reputation_emit(&sc, i, &tally[i], 1.0, ids->ip_spam, ids->ip_ham);
            break;
        case REPUTATION_KIND_NET:
            /* The network speaks only for an address without enough verdicts of its own. */
            if (!ip_known)
                reputation_emit(&sc, i, &tally[i], REPUTATION_NET_FACTOR, ids->ip_spam,
                                ids->ip_ham);
            break;
        case REPUTATION_KIND_DOMAIN:
            reputation_emit(&sc, i, &tally[i], 1.0, ids->domain_spam, ids->domain_ham);
            break;
        case REPUTATION_KIND_URL:
            reputation_emit(&sc, i, &tally[i], 1.0, ids->url_spam, ids->url_ham);
            break;
        case REPUTATION_N_KINDS:
            assert(0);
            break;
        }
    }
    return KV_OK;
}

/* ---- record ---- */

size_t reputation_record_into(struct kv_batch *b, const struct reputation_entities *e,
                              enum reputation_verdict verdict, time_t now,
                              reputation_allow_fn is_allowed, void *allow_ctx)
{
    static const int32_t spam_delta[2] = {1, 0}, ham_delta[2] = {0, 1};
    const int32_t *delta = verdict == REPUTATION_VERDICT_SPAM ? spam_delta : ham_delta;
    long long hour = reputation_hour(now);
    size_t i, added = 0;

    assert(e->n <= REPUTATION_MAX_ENTITIES);
    for (i = 0; i < e->n; i++) {
        if (verdict == REPUTATION_VERDICT_SPAM && reputation_allowed(e, i, is_allowed, allow_ctx))
            continue;
        kv_batch_incr(b, REPUTATION_NS, reputation_key(&e->e[i], hour), 2, delta,
                      REPUTATION_TTL_SECONDS);
        added++;
    }
    return added;
}

int reputation_record(struct kv *kv, const struct reputation_entities *e,
                      enum reputation_verdict verdict, time_t now, reputation_allow_fn is_allowed,
                      void *allow_ctx)
{
    struct kv_batch *b;
    int rc = KV_OK;

    if (kv == NULL) {
        err_set("reputation: the kv store is not open");
        return KV_UNAVAILABLE;
    }
    b = kv_batch_new();
    if (reputation_record_into(b, e, verdict, now, is_allowed, allow_ctx) > 0)
        rc = kv_batch_commit(kv, b);
    kv_batch_free(b);
    return rc;
}

double reputation_result_score(const struct reputation_ids *ids, const struct scan_result *r)
{
    const int own[] = {ids->ip_spam,  ids->ip_ham,  ids->domain_spam, ids->domain_ham,
                       ids->url_spam, ids->url_ham, ids->unavailable};
    const struct symbol_hit *h;
    double sum = 0.0;
    size_t i;

    for (i = 0; i < sizeof own / sizeof own[0]; i++)
        if ((h = result_find(r, own[i])) != NULL) sum += h->score;
    return sum;
}
