/*
 * allowlist - operator allow rules for senders. See allowlist.h.
 *
 * Addresses are kept as 16-byte IPv6 (IPv4 mapped to ::ffff:a.b.c.d) with a
 * prefix length, so one comparison covers both families. The lists are short
 * (an operator's partners), so lookups are linear.
 */
#include "checks/allowlist.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct allow_net {
    unsigned char addr[16];
    unsigned prefix; /* bits, of the 128-bit form */
};

struct allowlist {
    struct allow_net *nets;
    size_t n_nets;
    char **domains;
    size_t n_domains;
};

/* ip as 16 bytes (IPv4 mapped); false if it is not an address. */
static bool ip_bytes(const char *ip, unsigned char out[16], bool *v4)
{
    struct in_addr a4;
    if (inet_pton(AF_INET, ip, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        *v4 = true;
        return true;
    }
    *v4 = false;
    return inet_pton(AF_INET6, ip, out) == 1;
}

static bool net_contains(const struct allow_net *n, const unsigned char a[16])
{
    unsigned full = n->prefix / 8, rest = n->prefix % 8;
    if (memcmp(n->addr, a, full) != 0) return false;
    if (rest == 0) return true;
    return ((n->addr[full] ^ a[full]) & (0xff00u >> rest) & 0xff) == 0;
}

static int allow_add(struct allowlist *al, const char *entry)
{
    char buf[128];
    char *slash;
    unsigned char addr[16];
    bool v4;
    size_t i;

    if (strlen(entry) >= sizeof buf) goto bad;
    strcpy(buf, entry);
    slash = strchr(buf, '/');
    if (slash) *slash = '\0';
    if (ip_bytes(buf, addr, &v4)) {
        struct allow_net n;
        unsigned max = v4 ? 32 : 128;
        char *end;
        unsigned long prefix = max;
        if (slash) {
            prefix = strtoul(slash + 1, &end, 10);
            if (*end || end == slash + 1 || prefix > max) goto bad;
        }
        memcpy(n.addr, addr, 16);
        n.prefix = (unsigned)prefix + (v4 ? 96 : 0);
        al->nets = xrealloc(al->nets, (al->n_nets + 1) * sizeof *al->nets);
        al->nets[al->n_nets++] = n;
        return 0;
    }
    if (slash || buf[0] == '.' || buf[0] == '\0') goto bad;
    for (i = 0; buf[i]; i++) {
        if (!isalnum((unsigned char)buf[i]) && buf[i] != '.' && buf[i] != '-') goto bad;
        buf[i] = (char)tolower((unsigned char)buf[i]);
    }
    al->domains = xrealloc(al->domains, (al->n_domains + 1) * sizeof *al->domains);
    al->domains[al->n_domains++] = xstrdup(buf);
    return 0;
bad:
    err_set("not an address, network or domain: \"%.100s\"", entry);
    return -1;
}

struct allowlist *allowlist_parse(const char *spec)
{
    struct allowlist *al = xcalloc(1, sizeof *al);
    char *copy = xstrdup(spec ? spec : ""), *save = NULL, *tok;
    for (tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
        if (allow_add(al, tok) != 0) {
            free(copy);
            allowlist_free(al);
            return NULL;
        }
    }
    free(copy);
    return al;
}

void allowlist_free(struct allowlist *al)
{
    size_t i;
    if (al == NULL) return;
    for (i = 0; i < al->n_domains; i++)
        free(al->domains[i]);
    free(al->domains);
    free(al->nets);
    free(al);
}

bool allowlist_has_ip(const struct allowlist *al, const char *ip)
{
    unsigned char a[16];
    bool v4;
    size_t i;
    if (al == NULL || ip == NULL || !ip_bytes(ip, a, &v4)) return false;
    for (i = 0; i < al->n_nets; i++)
        if (net_contains(&al->nets[i], a)) return true;
    return false;
}

bool allowlist_has_domain(const struct allowlist *al, const char *domain)
{
    size_t i, n = domain ? strlen(domain) : 0;
    if (al == NULL || n == 0) return false;
    for (i = 0; i < al->n_domains; i++) {
        const char *d = al->domains[i];
        size_t k = strlen(d);
        if (k > n || strcasecmp(domain + (n - k), d) != 0) continue;
        if (k == n || domain[n - k - 1] == '.') return true;
    }
    return false;
}

bool allowlist_reputation(void *ctx, enum reputation_kind kind, const char *value)
{
    const struct allowlist *al = ctx;
    char ip[128];
    const char *slash;
    switch (kind) {
    case REPUTATION_KIND_IP:
        return allowlist_has_ip(al, value);
    case REPUTATION_KIND_NET:
        /* The network is allowed when its base address is. */
        slash = strchr(value, '/');
        if (slash == NULL || (size_t)(slash - value) >= sizeof ip) return false;
        memcpy(ip, value, (size_t)(slash - value));
        ip[slash - value] = '\0';
        return allowlist_has_ip(al, ip);
    case REPUTATION_KIND_DOMAIN:
    case REPUTATION_KIND_URL:
        return allowlist_has_domain(al, value) || allowlist_has_ip(al, value);
    default:
        return false;
    }
}
