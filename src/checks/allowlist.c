/*
 * allowlist - operator allow rules from mxwarden.conf. See allowlist.h.
 *
 * The entries become allow rules of a sender_rules snapshot, so addresses,
 * networks and domains (with their subdomains) match exactly as the rules
 * an operator keeps in the records database do; this file only reads the
 * configuration text and names the entry that does not parse.
 */
#include "checks/allowlist.h"
#include "checks/sender_rules.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

struct allowlist {
    struct sender_rules *rules;
};

/* An IP or network entry is made of hex digits, dots, colons and one slash. */
static bool looks_like_ip(const char *s)
{
    for (; *s; s++)
        if (!isxdigit((unsigned char)*s) && *s != '.' && *s != ':' && *s != '/') return false;
    return true;
}

static bool valid_domain(const char *s)
{
    if (*s == '\0' || *s == '.') return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '-') return false;
    return true;
}

static void bad_entry(const char *entry)
{
    err_set("not an address, network or domain: \"%.100s\"", entry);
}

struct allowlist *allowlist_parse(const char *spec)
{
    char *copy = xstrdup(spec ? spec : ""), *save = NULL, *tok;
    struct sender_rule *rules = NULL;
    struct allowlist *al;
    size_t n = 0;

    for (tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
        struct sender_rule r = {.action = SENDER_RULE_ALLOW, .value = tok};
        r.kind = looks_like_ip(tok) ? SENDER_RULE_IP : SENDER_RULE_DOMAIN;
        if (r.kind == SENDER_RULE_DOMAIN && !valid_domain(tok)) goto bad;
        /* One at a time first, so the error names the entry that does not parse. */
        if (r.kind == SENDER_RULE_IP) {
            struct sender_rules *one = sender_rules_new(&r, 1);
            if (one == NULL) goto bad;
            sender_rules_free(one);
        }
        rules = xrealloc(rules, (n + 1) * sizeof *rules);
        rules[n++] = r;
        continue;
    bad:
        bad_entry(tok);
        free(rules);
        free(copy);
        return NULL;
    }
    al = xcalloc(1, sizeof *al);
    al->rules = sender_rules_new(rules, n); /* copies what it keeps */
    free(rules);
    free(copy);
    if (al->rules == NULL) { /* cannot happen after the checks above; be safe */
        bad_entry(spec);
        free(al);
        return NULL;
    }
    return al;
}

void allowlist_free(struct allowlist *al)
{
    if (al == NULL) return;
    sender_rules_free(al->rules);
    free(al);
}

bool allowlist_has_ip(const struct allowlist *al, const char *ip)
{
    return al && ip && sender_rules_check_ip(al->rules, ip, NULL) == SENDER_RULE_ALLOW;
}

bool allowlist_has_domain(const struct allowlist *al, const char *domain)
{
    return al && domain && *domain &&
           sender_rules_check_domain(al->rules, domain, NULL) == SENDER_RULE_ALLOW;
}

bool allowlist_reputation(void *ctx, enum reputation_kind kind, const char *value)
{
    const struct allowlist *al = ctx;
    return al && sender_rules_reputation_allow(al->rules, kind, value);
}
