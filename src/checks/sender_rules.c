/*
 * sender_rules - the snapshot of operator sender rules (see sender_rules.h).
 *
 * Layout: every rule is normalised into a struct srule; one open-addressing
 * hash table maps a lookup key to the deciding rule. Keys are
 *   address: 'a' + local@lowercase-domain
 *   domain:  'd' + lowercase-domain
 *   ip:      'i' + family + prefix + the address masked to the prefix
 * so a lookup is one probe per candidate: the address, then the domain and
 * each parent, or each prefix length that some rule uses (longest first).
 * Duplicate keys are resolved while building (block beats allow), so the
 * table holds exactly one rule per key and precedence at lookup time is just
 * "first hit wins".
 *
 * Failure: building fails on the first invalid rule (NULL, err_set()).
 */
#include "checks/sender_rules.h"
#include "core/arena.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define SR_KEY_MAX 600 /* 'a' + a 254-byte address + slack; longer input matches nothing */

struct srule {
    struct sender_rule pub;
    char *key; /* lookup key (arena), see the top of the file */
    size_t key_len;
};

struct sender_rules {
    struct arena *arena;
    struct srule *rules;
    size_t n_rules;
    uint32_t *slots; /* rule index + 1; 0 = empty */
    uint64_t *hashes;
    size_t mask;              /* slots - 1 (a power of two minus one) */
    bool v4_prefix_used[33];  /* some IPv4 rule has this prefix length */
    bool v6_prefix_used[129]; /* some IPv6 rule has this prefix length */
};

const char *sender_rule_kind_name(enum sender_rule_kind kind)
{
    switch (kind) {
    case SENDER_RULE_ADDRESS:
        return "address";
    case SENDER_RULE_DOMAIN:
        return "domain";
    case SENDER_RULE_IP:
        return "ip";
    }
    return "unknown";
}

const char *sender_rule_action_name(enum sender_rule_action action)
{
    switch (action) {
    case SENDER_RULE_ALLOW:
        return "allow";
    case SENDER_RULE_BLOCK:
        return "block";
    case SENDER_RULE_NONE:
        break;
    }
    return "none";
}

int sender_rule_kind_parse(const char *text, enum sender_rule_kind *out)
{
    if (text && strcmp(text, "address") == 0)
        *out = SENDER_RULE_ADDRESS;
    else if (text && strcmp(text, "domain") == 0)
        *out = SENDER_RULE_DOMAIN;
    else if (text && strcmp(text, "ip") == 0)
        *out = SENDER_RULE_IP;
    else {
        err_set("sender rule: unknown kind \"%s\" (address, domain or ip)", text ? text : "");
        return -1;
    }
    return 0;
}

int sender_rule_action_parse(const char *text, enum sender_rule_action *out)
{
    if (text && strcmp(text, "allow") == 0)
        *out = SENDER_RULE_ALLOW;
    else if (text && strcmp(text, "block") == 0)
        *out = SENDER_RULE_BLOCK;
    else {
        err_set("sender rule: unknown action \"%s\" (allow or block)", text ? text : "");
        return -1;
    }
    return 0;
}

/* ---- normalisation ---- */

/*
 * Lowercases the domain d[0..len) into out (with prefix byte tag), dropping a
 * trailing dot. Returns the key length, or 0 if the domain is empty, too
 * long, or contains bytes that cannot be in a host name.
 */
static size_t sr_domain_key(char tag, const char *d, size_t len, char *out, size_t size)
{
    size_t i;
    if (len > 0 && d[len - 1] == '.') len--;
    if (len == 0 || len + 2 > size) return 0;
    out[0] = tag;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c <= ' ' || c == '@' || c == '/' || c == 0x7f) return 0;
        out[1 + i] = (char)tolower(c);
    }
    out[1 + len] = '\0';
    return 1 + len;
}

/* The key of an address: local part as is, domain lowercased. 0 if it is not local@domain. */
static size_t sr_address_key(const char *addr, char *out, size_t size)
{
    const char *at = strrchr(addr, '@');
    size_t local_len, n;
    if (at == NULL || at == addr) return 0;
    local_len = (size_t)(at - addr);
    if (local_len + 3 >= size) return 0;
    /* 'a' + local part, then the domain key whose tag byte is the '@'. */
    n = sr_domain_key('@', at + 1, strlen(at + 1), out + 1 + local_len, size - 1 - local_len);
    if (n == 0) return 0;
    out[0] = 'a';
    memcpy(out + 1, addr, local_len);
    return 1 + local_len + n;
}

/* Parses "addr" or "addr/prefix"; IPv4-mapped IPv6 becomes IPv4. Masks addr to prefix. */
static bool sr_parse_net(const char *text, int *family, unsigned *prefix, unsigned char addr[16])
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t host_len = slash ? (size_t)(slash - text) : strlen(text);
    unsigned max, i;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (host_len == 0 || host_len >= sizeof host) return false;
    memcpy(host, text, host_len);
    host[host_len] = '\0';
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, host, addr) == 1) {
        *family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, addr) == 1) {
        *family = AF_INET6;
        max = 128;
    } else {
        return false;
    }
    *prefix = max;
    if (slash) {
        char *end;
        long p;
        if (!isdigit((unsigned char)slash[1])) return false;
        p = strtol(slash + 1, &end, 10);
        if (*end != '\0' || p < 0 || p > (long)max) return false;
        *prefix = (unsigned)p;
    }
    if (*family == AF_INET6 && memcmp(addr, mapped, 12) == 0 && *prefix >= 96) {
        memmove(addr, addr + 12, 4);
        memset(addr + 4, 0, 12);
        *family = AF_INET;
        *prefix -= 96;
        max = 32;
    }
    for (i = 0; i < max / 8; i++) {
        unsigned bit0 = i * 8;
        if (bit0 >= *prefix)
            addr[i] = 0;
        else if (bit0 + 8 > *prefix)
            addr[i] &= (unsigned char)(0xff00u >> (*prefix - bit0));
    }
    return true;
}

static size_t sr_ip_key(int family, unsigned prefix, const unsigned char addr[16], char *out)
{
    size_t alen = family == AF_INET ? 4 : 16;
    out[0] = 'i';
    out[1] = family == AF_INET ? '4' : '6';
    out[2] = (char)prefix;
    memcpy(out + 3, addr, alen);
    return 3 + alen;
}

/* addr masked to prefix (bytes beyond the family's length stay zero). */
static void sr_mask(const unsigned char in[16], unsigned prefix, unsigned char out[16])
{
    unsigned i;
    for (i = 0; i < 16; i++) {
        unsigned bit0 = i * 8;
        if (bit0 >= prefix)
            out[i] = 0;
        else if (bit0 + 8 > prefix)
            out[i] = in[i] & (unsigned char)(0xff00u >> (prefix - bit0));
        else
            out[i] = in[i];
    }
}

/* ---- hash table ---- */

static uint64_t sr_hash(const char *key, size_t len)
{
    return XXH3_64bits(key, len);
}

/* The slot holding key, or the empty slot where it would go. */
static size_t sr_find_slot(const struct sender_rules *sr, const char *key, size_t len, uint64_t h)
{
    size_t i = (size_t)h & sr->mask;
    for (;;) {
        uint32_t s = sr->slots[i];
        if (s == 0) return i;
        if (sr->hashes[i] == h) {
            const struct srule *r = &sr->rules[s - 1];
            if (r->key_len == len && memcmp(r->key, key, len) == 0) return i;
        }
        i = (i + 1) & sr->mask;
    }
}

static const struct srule *sr_lookup(const struct sender_rules *sr, const char *key, size_t len)
{
    size_t slot;
    if (sr->n_rules == 0) return NULL;
    slot = sr_find_slot(sr, key, len, sr_hash(key, len));
    return sr->slots[slot] ? &sr->rules[sr->slots[slot] - 1] : NULL;
}

/* ---- building ---- */

/* Normalises in into out (strings in the arena). false with err_set() when invalid. */
static bool sr_normalise(struct arena *a, const struct sender_rule *in, size_t index,
                         struct srule *out, struct sender_rules *sr)
{
    char key[SR_KEY_MAX];
    size_t len = 0;

    if (in->action != SENDER_RULE_ALLOW && in->action != SENDER_RULE_BLOCK) {
        err_set("sender rule %zu (%s): action must be allow or block", index,
                in->value ? in->value : "");
        return false;
    }
    if (in->value == NULL || in->value[0] == '\0') {
        err_set("sender rule %zu: empty value", index);
        return false;
    }
    out->pub = *in;
    switch (in->kind) {
    case SENDER_RULE_ADDRESS:
        len = sr_address_key(in->value, key, sizeof key);
        if (len) out->pub.value = arena_strndup(a, key + 1, len - 1);
        break;
    case SENDER_RULE_DOMAIN: {
        const char *d = in->value;
        if (d[0] == '@') d++; /* "@example.com" is a common way of writing a domain rule */
        len = sr_domain_key('d', d, strlen(d), key, sizeof key);
        if (len) out->pub.value = arena_strndup(a, key + 1, len - 1);
        break;
    }
    case SENDER_RULE_IP: {
        int family;
        unsigned prefix;
        unsigned char addr[16];
        if (sr_parse_net(in->value, &family, &prefix, addr)) {
            char text[INET6_ADDRSTRLEN];
            len = sr_ip_key(family, prefix, addr, key);
            inet_ntop(family, addr, text, sizeof text);
            if (prefix == (family == AF_INET ? 32u : 128u))
                out->pub.value = arena_strdup(a, text);
            else
                out->pub.value = arena_printf(a, "%s/%u", text, prefix);
            if (family == AF_INET)
                sr->v4_prefix_used[prefix] = true;
            else
                sr->v6_prefix_used[prefix] = true;
        }
        break;
    }
    default:
        err_set("sender rule %zu (%s): unknown kind %d", index, in->value, (int)in->kind);
        return false;
    }
    if (len == 0) {
        err_set("sender rule %zu: invalid %s \"%s\"", index, sender_rule_kind_name(in->kind),
                in->value);
        return false;
    }
    out->key = arena_alloc(a, len);
    memcpy(out->key, key, len);
    out->key_len = len;
    return true;
}

struct sender_rules *sender_rules_new(const struct sender_rule *rules, size_t n)
{
    struct sender_rules *sr = xcalloc(1, sizeof *sr);
    size_t i, cap = 16;

    sr->arena = arena_new(0);
    sr->rules = n ? arena_calloc(sr->arena, n, sizeof *sr->rules) : NULL;
    while (cap < n * 2)
        cap *= 2;
    sr->slots = xcalloc(cap, sizeof *sr->slots);
    sr->hashes = xcalloc(cap, sizeof *sr->hashes);
    sr->mask = cap - 1;

    for (i = 0; i < n; i++) {
        struct srule *r = &sr->rules[sr->n_rules];
        uint64_t h;
        size_t slot;
        if (!sr_normalise(sr->arena, &rules[i], i, r, sr)) {
            sender_rules_free(sr);
            return NULL;
        }
        sr->n_rules++;
        h = sr_hash(r->key, r->key_len);
        slot = sr_find_slot(sr, r->key, r->key_len, h);
        if (sr->slots[slot] == 0) {
            sr->slots[slot] = (uint32_t)sr->n_rules;
            sr->hashes[slot] = h;
        } else if (r->pub.action == SENDER_RULE_BLOCK &&
                   sr->rules[sr->slots[slot] - 1].pub.action != SENDER_RULE_BLOCK) {
            sr->slots[slot] = (uint32_t)sr->n_rules; /* block wins over an equal allow */
        }
    }
    return sr;
}

void sender_rules_free(struct sender_rules *sr)
{
    if (sr == NULL) return;
    arena_free(sr->arena);
    free(sr->slots);
    free(sr->hashes);
    free(sr);
}

size_t sender_rules_count(const struct sender_rules *sr)
{
    return sr ? sr->n_rules : 0;
}

bool sender_rules_any_block(const struct sender_rules *sr)
{
    size_t i;
    for (i = 0; sr && i < sr->n_rules; i++)
        if (sr->rules[i].pub.action == SENDER_RULE_BLOCK) return true;
    return false;
}

/* ---- lookups ---- */

static enum sender_rule_action sr_result(const struct srule *r, const struct sender_rule **matched)
{
    if (matched) *matched = r ? &r->pub : NULL;
    return r ? r->pub.action : SENDER_RULE_NONE;
}

/* The most specific rule covering family/addr with a prefix of at most max_prefix. */
static const struct srule *sr_lookup_net(const struct sender_rules *sr, int family,
                                         const unsigned char addr[16], unsigned max_prefix)
{
    const bool *used = family == AF_INET ? sr->v4_prefix_used : sr->v6_prefix_used;
    unsigned p = max_prefix + 1;
    char key[3 + 16];
    unsigned char masked[16];

    while (p-- > 0) {
        const struct srule *r;
        if (!used[p]) continue;
        sr_mask(addr, p, masked);
        r = sr_lookup(sr, key, sr_ip_key(family, p, masked, key));
        if (r) return r;
    }
    return NULL;
}

enum sender_rule_action sender_rules_check_ip(const struct sender_rules *sr, const char *ip,
                                              const struct sender_rule **matched)
{
    int family;
    unsigned prefix;
    unsigned char addr[16];

    if (sr == NULL || ip == NULL || strchr(ip, '/') || !sr_parse_net(ip, &family, &prefix, addr))
        return sr_result(NULL, matched);
    return sr_result(sr_lookup_net(sr, family, addr, prefix), matched);
}

/* Walks domain d and its parents; the first rule found decides. */
static const struct srule *sr_lookup_domain(const struct sender_rules *sr, const char *d)
{
    char key[SR_KEY_MAX];
    size_t len = sr_domain_key('d', d, strlen(d), key, sizeof key), off = 1;

    if (len == 0) return NULL;
    for (;;) {
        const struct srule *r;
        key[off - 1] = 'd';
        r = sr_lookup(sr, key + off - 1, len - (off - 1));
        if (r) return r;
        {
            const char *dot = memchr(key + off, '.', len - off);
            if (dot == NULL) return NULL;
            off = (size_t)(dot - key) + 1;
        }
    }
}

enum sender_rule_action sender_rules_check_domain(const struct sender_rules *sr, const char *domain,
                                                  const struct sender_rule **matched)
{
    if (sr == NULL || domain == NULL) return sr_result(NULL, matched);
    return sr_result(sr_lookup_domain(sr, domain), matched);
}

enum sender_rule_action sender_rules_check_sender(const struct sender_rules *sr,
                                                  const char *address,
                                                  const struct sender_rule **matched)
{
    char key[SR_KEY_MAX];
    size_t len;
    const struct srule *r;

    if (sr == NULL || address == NULL) return sr_result(NULL, matched);
    len = sr_address_key(address, key, sizeof key);
    if (len == 0) return sr_result(NULL, matched);
    r = sr_lookup(sr, key, len);
    if (r == NULL) r = sr_lookup_domain(sr, strrchr(address, '@') + 1);
    return sr_result(r, matched);
}

bool sender_rules_reputation_allow(void *ctx, enum reputation_kind kind, const char *value)
{
    const struct sender_rules *sr = ctx;
    int family;
    unsigned prefix;
    unsigned char addr[16];

    if (sr == NULL || value == NULL) return false;
    switch (kind) {
    case REPUTATION_KIND_IP:
        return sender_rules_check_ip(sr, value, NULL) == SENDER_RULE_ALLOW;
    case REPUTATION_KIND_NET: {
        const struct srule *r;
        if (!sr_parse_net(value, &family, &prefix, addr)) return false;
        r = sr_lookup_net(sr, family, addr, prefix);
        return r != NULL && r->pub.action == SENDER_RULE_ALLOW;
    }
    case REPUTATION_KIND_DOMAIN:
    case REPUTATION_KIND_URL:
        if (sr_parse_net(value, &family, &prefix, addr) && !strchr(value, '/'))
            return sender_rules_check_ip(sr, value, NULL) == SENDER_RULE_ALLOW;
        return sender_rules_check_domain(sr, value, NULL) == SENDER_RULE_ALLOW;
    default:
        return false;
    }
}
