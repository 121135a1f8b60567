/*
 * dnsbl - DNSBL and URIBL lookups (see dnsbl.h).
 *
 * The default lists are written in the same configuration format operators
 * use and go through the same parser, so the format is exercised at every
 * start. A struct dnsbl holds fixed arrays (no allocation after dnsbl_new).
 *
 * One lookup round: every (subject, list) pair becomes one A query named
 * "<subject>.<zone>"; dns_query_many() runs them all concurrently within the
 * resolver's timeout and scan budget; each answer is then read against the
 * list's code map into hits (listing symbols, or the list's TEMPFAIL symbol
 * with the reason). Hits are kept in a struct dnsbl_lookup (malloc'd, so it
 * may outlive the message arena: the connect-time lookup serves every
 * message of the connection) and copied into a scan_result when collected.
 *
 * Failure: nothing here fails at lookup time; DNS trouble is a TEMPFAIL hit
 * and one warning line per failed query.
 */
#include "checks/dnsbl.h"
#include "checks/dns.h"
#include "checks/reputation.h"
#include "checks/symbols.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "message/message.h"
#include "message/url.h"
#include "scan/result.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DNSBL_SYMBOL_MAX 101 /* symbols_add() accepts up to 100 characters */
#define DNSBL_ZONE_MAX   200 /* leaves room for a reversed IPv6 address (64) in a 253-byte name */

static const char dnsbl_default_lists[] =
    "zen zen.spamhaus.org type=ip ipv6 127.0.0.2=RBL_SPAMHAUS_SBL:4,127.0.0.3=RBL_SPAMHAUS_SBL:4,"
    "127.0.0.4-127.0.0.7=RBL_SPAMHAUS_XBL:4,127.0.0.10-127.0.0.11=RBL_SPAMHAUS_PBL:2;"
    "surbl multi.surbl.org type=domain 127.0.0.1=refused,&8=URIBL_SURBL_PH:4.5,"
    "&16=URIBL_SURBL_MW:5,&64=URIBL_SURBL_ABUSE:4.5,&128=URIBL_SURBL_CR:3;"
    "ivmsip ivmsip.invaluement.com type=ip 127.0.0.2=RBL_IVMSIP:3.5;"
    "ivmuri ivmuri.invaluement.com type=domain 127.0.0.2=URIBL_IVMURI:4";

struct dnsbl_code {
    uint32_t lo, hi; /* address range, host byte order (mask 0) */
    unsigned mask;   /* bit mask over the last octet; 0 for a range */
    bool refused;    /* the list says it refused the query */
    char symbol[DNSBL_SYMBOL_MAX];
    double score;
    int id; /* in the registry, after dnsbl_register() */
};

struct dnsbl_list {
    char name[DNSBL_NAME_MAX];
    char zone[DNSBL_ZONE_MAX];
    enum dnsbl_type type;
    bool ipv6;
    bool disabled;
    struct dnsbl_code codes[DNSBL_MAX_CODES];
    size_t n_codes;
    char tempfail_symbol[DNSBL_NAME_MAX + 16];
    int tempfail_id;
};

struct dnsbl {
    int refs;                                 /* dnsbl_new()'s, plus one per dnsbl_ref() (atomic) */
    struct dnsbl_list lists[DNSBL_MAX_LISTS]; /* enabled ones first after dnsbl_new() */
    size_t n_lists;                           /* all parsed lists */
    size_t n_enabled;
    unsigned max_domains;
    bool registered;
};

struct dnsbl_hit {
    size_t list; /* index in d->lists */
    int id;      /* symbol id */
    bool tempfail;
    char *option; /* malloc'd */
};

struct dnsbl_lookup {
    const struct dnsbl *d;
    struct dnsbl_hit *hits;
    size_t n_hits, cap_hits;
};

/* ---- parsing ---- */

static bool dnsbl_name_ok(const char *s, size_t len)
{
    size_t i;
    if (len == 0 || len >= DNSBL_NAME_MAX) return false;
    for (i = 0; i < len; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_' ||
              s[i] == '-'))
            return false;
    return true;
}

static bool dnsbl_zone_ok(const char *s)
{
    size_t i, len = strlen(s);
    if (len == 0 || len >= DNSBL_ZONE_MAX || s[0] == '.' || strstr(s, "..")) return false;
    for (i = 0; i < len; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-' || s[i] == '_'))
            return false;
    return true;
}

static bool dnsbl_parse_v4(const char *s, uint32_t *out)
{
    struct in_addr a;
    if (inet_pton(AF_INET, s, &a) != 1) return false;
    *out = ntohl(a.s_addr);
    return true;
}

/* Parses one CODE=TARGET into c. false with err_set(). */
static bool dnsbl_parse_code(const struct dnsbl_list *l, const char *text, struct dnsbl_code *c)
{
    char code[64], target[DNSBL_SYMBOL_MAX + 32];
    const char *eq = strchr(text, '=');
    size_t clen;

    memset(c, 0, sizeof *c);
    c->id = -1;
    if (eq == NULL || (clen = (size_t)(eq - text)) == 0 || clen >= sizeof code ||
        strlen(eq + 1) >= sizeof target) {
        err_set("dnsbl list %s: \"%s\" is not CODE=SYMBOL[:SCORE]", l->name, text);
        return false;
    }
    memcpy(code, text, clen);
    code[clen] = '\0';
    strcpy(target, eq + 1);

    if (code[0] == '&') {
        char *end;
        unsigned long m = strtoul(code + 1, &end, 0);
        if (code[1] == '\0' || *end != '\0' || m == 0 || m > 255) {
            err_set("dnsbl list %s: bad mask \"%s\" (&1..&255, over the last octet)", l->name,
                    code);
            return false;
        }
        c->mask = (unsigned)m;
    } else {
        char *dash = strchr(code, '-');
        if (dash) *dash = '\0';
        if (!dnsbl_parse_v4(code, &c->lo) || (dash && !dnsbl_parse_v4(dash + 1, &c->hi))) {
            err_set("dnsbl list %s: bad return code \"%s\"", l->name, text);
            return false;
        }
        if (!dash) c->hi = c->lo;
        if (c->hi < c->lo || (c->lo >> 24) != 127 || (c->hi >> 24) != 127) {
            err_set("dnsbl list %s: return code \"%s\" is not a range in 127.0.0.0/8", l->name,
                    text);
            return false;
        }
    }
    if (strcmp(target, "refused") == 0) {
        c->refused = true;
        return true;
    }
    {
        char *colon = strchr(target, ':');
        size_t i;
        c->score = 1.0;
        if (colon) {
            char *end;
            *colon = '\0';
            c->score = strtod(colon + 1, &end);
            if (colon[1] == '\0' || *end != '\0' || c->score < -100 || c->score > 100) {
                err_set("dnsbl list %s: bad score in \"%s\"", l->name, text);
                return false;
            }
        }
        for (i = 0; target[i]; i++)
            if (!(isupper((unsigned char)target[i]) || isdigit((unsigned char)target[i]) ||
                  target[i] == '_'))
                break;
        if (i == 0 || target[i] != '\0' || i >= DNSBL_SYMBOL_MAX) {
            err_set("dnsbl list %s: bad symbol \"%s\" ([A-Z0-9_])", l->name, target);
            return false;
        }
        memcpy(c->symbol, target, i + 1);
    }
    return true;
}

/* Parses one list definition (a NUL-terminated, writable copy). false with err_set(). */
static bool dnsbl_parse_list(char *def, struct dnsbl_list *l)
{
    char *save = NULL, *tok;
    int field = 0;
    bool have_type = false;
    size_t i;

    memset(l, 0, sizeof *l);
    l->tempfail_id = -1;
    for (tok = strtok_r(def, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save), field++) {
        if (field == 0) {
            if (!dnsbl_name_ok(tok, strlen(tok))) {
                err_set("dnsbl: bad list name \"%s\" ([a-z0-9_-], at most %d characters)", tok,
                        DNSBL_NAME_MAX - 1);
                return false;
            }
            strcpy(l->name, tok);
        } else if (field == 1) {
            size_t len = strlen(tok);
            if (len > 0 && tok[len - 1] == '.') tok[len - 1] = '\0';
            for (i = 0; tok[i]; i++)
                tok[i] = (char)tolower((unsigned char)tok[i]);
            if (!dnsbl_zone_ok(tok)) {
                err_set("dnsbl list %s: bad zone \"%s\"", l->name, tok);
                return false;
            }
            strcpy(l->zone, tok);
        } else if (strcmp(tok, "type=ip") == 0 || strcmp(tok, "type=domain") == 0) {
            l->type = tok[5] == 'i' ? DNSBL_TYPE_IP : DNSBL_TYPE_DOMAIN;
            have_type = true;
        } else if (strcmp(tok, "ipv6") == 0) {
            l->ipv6 = true;
        } else {
            char *save2 = NULL, *code;
            for (code = strtok_r(tok, ",", &save2); code; code = strtok_r(NULL, ",", &save2)) {
                if (l->n_codes == DNSBL_MAX_CODES) {
                    err_set("dnsbl list %s: more than %d return codes", l->name, DNSBL_MAX_CODES);
                    return false;
                }
                if (!dnsbl_parse_code(l, code, &l->codes[l->n_codes])) return false;
                l->n_codes++;
            }
        }
    }
    if (field < 2 || !have_type || l->n_codes == 0) {
        err_set("dnsbl list \"%s\": expected NAME ZONE type=ip|domain CODE=SYMBOL[:SCORE],...",
                field ? l->name : "");
        return false;
    }
    for (i = 0; l->name[i]; i++)
        l->tempfail_symbol[i] = l->name[i] == '-' ? '_' : (char)toupper((unsigned char)l->name[i]);
    strcpy(l->tempfail_symbol + i, "_TEMPFAIL");
    return true;
}

/* Adds or replaces (by name) the lists of spec in d. false with err_set(). */
static bool dnsbl_parse_lists(struct dnsbl *d, const char *spec)
{
    char *copy = xstrdup(spec), *save = NULL, *def;
    bool ok = true;

    for (def = strtok_r(copy, ";\n", &save); def && ok; def = strtok_r(NULL, ";\n", &save)) {
        struct dnsbl_list l;
        size_t i;
        while (isspace((unsigned char)*def))
            def++;
        if (*def == '\0' || *def == '#') continue;
        if (!dnsbl_parse_list(def, &l)) {
            ok = false;
            break;
        }
        for (i = 0; i < d->n_lists; i++)
            if (strcmp(d->lists[i].name, l.name) == 0) break;
        if (i == DNSBL_MAX_LISTS) {
            err_set("dnsbl: more than %d lists", DNSBL_MAX_LISTS);
            ok = false;
            break;
        }
        d->lists[i] = l;
        if (i == d->n_lists) d->n_lists++;
    }
    free(copy);
    return ok;
}

/* True if name is one of the names in set (separated by spaces or commas), ignoring case. */
static bool dnsbl_name_in(const char *set, const char *name)
{
    size_t len = strlen(name);
    const char *p = set;
    if (set == NULL) return false;
    while (*p) {
        size_t n;
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        n = strcspn(p, " ,\t");
        if (n == len && n > 0 && strncasecmp(p, name, n) == 0) return true;
        p += n;
    }
    return false;
}

struct dnsbl *dnsbl_new(const struct dnsbl_config *cfg)
{
    struct dnsbl *d = xcalloc(1, sizeof *d);
    struct dnsbl_list *tmp;
    size_t i, n_enabled = 0;
    const char *p;

    d->refs = 1;
    d->max_domains = cfg && cfg->max_domains ? cfg->max_domains : DNSBL_MAX_DOMAINS_DEF;
    if ((cfg == NULL || !cfg->no_defaults) && !dnsbl_parse_lists(d, dnsbl_default_lists)) {
        assert(!"the default lists must parse");
        goto fail;
    }
    if (cfg && cfg->lists && !dnsbl_parse_lists(d, cfg->lists)) goto fail;

    /* Every name in disabled must be a list: a typo must not leave a list on. */
    for (p = cfg ? cfg->disabled : NULL; p && *p;) {
        size_t n;
        char name[DNSBL_NAME_MAX];
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        n = strcspn(p, " ,\t");
        if (n == 0) break;
        if (n < sizeof name) {
            memcpy(name, p, n);
            name[n] = '\0';
            for (i = 0; i < d->n_lists; i++)
                if (strcasecmp(d->lists[i].name, name) == 0) break;
        }
        if (n >= sizeof name || i == d->n_lists) {
            err_set("dnsbl: disabled names an unknown list \"%.*s\"", (int)n, p);
            goto fail;
        }
        d->lists[i].disabled = true;
        p += n;
    }
    /* Enabled lists first, in order, so that lookups iterate over [0, n_enabled). */
    tmp = xmalloc(sizeof d->lists);
    for (i = 0; i < d->n_lists; i++)
        if (!d->lists[i].disabled) tmp[n_enabled++] = d->lists[i];
    d->n_enabled = n_enabled;
    for (i = 0; i < d->n_lists; i++)
        if (d->lists[i].disabled) tmp[n_enabled++] = d->lists[i];
    memcpy(d->lists, tmp, d->n_lists * sizeof *tmp);
    free(tmp);
    return d;
fail:
    free(d);
    return NULL;
}

const struct dnsbl *dnsbl_ref(const struct dnsbl *d)
{
    /* The count is the only field that changes after dnsbl_register(). */
    __atomic_add_fetch(&((struct dnsbl *)d)->refs, 1, __ATOMIC_ACQ_REL);
    return d;
}

void dnsbl_free(const struct dnsbl *d)
{
    if (d == NULL || __atomic_sub_fetch(&((struct dnsbl *)d)->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    free((struct dnsbl *)d);
}

int dnsbl_register(struct dnsbl *d, struct symbol_registry *reg)
{
    size_t i, j;
    for (i = 0; i < d->n_enabled; i++) {
        struct dnsbl_list *l = &d->lists[i];
        const char *what = l->type == DNSBL_TYPE_IP ? "Client IP" : "A URL domain";
        const char *group = l->type == DNSBL_TYPE_IP ? "dnsbl" : "uribl";
        char desc[DNSBL_ZONE_MAX + 96];

        snprintf(desc, sizeof desc,
                 "%s list %s (%s) could not be queried (timeout, error, refused)",
                 l->type == DNSBL_TYPE_IP ? "DNSBL" : "URIBL", l->name, l->zone);
        l->tempfail_id = symbols_add(reg, l->tempfail_symbol, 0.0, desc, group);
        if (l->tempfail_id < 0) return -1;
        for (j = 0; j < l->n_codes; j++) {
            struct dnsbl_code *c = &l->codes[j];
            if (c->refused) continue;
            snprintf(desc, sizeof desc, "%s is listed in %s (%s)", what, l->name, l->zone);
            c->id = symbols_add(reg, c->symbol, c->score, desc, group);
            if (c->id < 0) return -1;
        }
    }
    d->registered = true;
    return 0;
}

size_t dnsbl_list_count(const struct dnsbl *d)
{
    return d->n_enabled;
}

const char *dnsbl_list_name(const struct dnsbl *d, size_t i)
{
    assert(i < d->n_enabled);
    return d->lists[i].name;
}

const char *dnsbl_list_zone(const struct dnsbl *d, size_t i)
{
    assert(i < d->n_enabled);
    return d->lists[i].zone;
}

enum dnsbl_type dnsbl_list_type(const struct dnsbl *d, size_t i)
{
    assert(i < d->n_enabled);
    return d->lists[i].type;
}

/* ---- lookups ---- */

static void dnsbl_add_hit(struct dnsbl_lookup *l, size_t list, int id, bool tempfail,
                          const char *option)
{
    struct dnsbl_hit *h;
    if (id < 0) return; /* dnsbl_register() was not called: nothing to report against */
    if (l->n_hits == l->cap_hits) {
        l->cap_hits = l->cap_hits ? l->cap_hits * 2 : 8;
        l->hits = xrealloc(l->hits, l->cap_hits * sizeof *l->hits);
    }
    h = &l->hits[l->n_hits++];
    h->list = list;
    h->id = id;
    h->tempfail = tempfail;
    h->option = xstrdup(option);
}

/* Reads one answer of list li for the subject shown as `shown` into hits. */
static void dnsbl_read_answer(struct dnsbl_lookup *lk, size_t li, const char *shown,
                              const struct dns_answer *a)
{
    const struct dnsbl_list *l = &lk->d->lists[li];
    char opt[DNSBL_ZONE_MAX + 160];
    size_t i, j;

    if (a->status == DNS_NXDOMAIN || a->status == DNS_NODATA) return;
    if (a->status != DNS_OK) {
        snprintf(opt, sizeof opt, "%s: %s", shown, dns_status_name(a->status));
        log_warn("event=dnsbl_tempfail list=%s zone=%s status=%s", l->name, l->zone,
                 dns_status_name(a->status));
        dnsbl_add_hit(lk, li, l->tempfail_id, true, opt);
        return;
    }
    for (i = 0; i < a->n_records; i++) {
        const char *text = a->records[i].text;
        uint32_t v;
        bool matched = false;
        if (!dnsbl_parse_v4(text, &v) || (v >> 24) != 127) {
            snprintf(opt, sizeof opt, "%s: answer %.40s outside 127.0.0.0/8", shown, text);
            log_warn("event=dnsbl_bad_answer list=%s zone=%s answer=%.40s", l->name, l->zone, text);
            dnsbl_add_hit(lk, li, l->tempfail_id, true, opt);
            continue;
        }
        if ((v >> 8) == 0x7fffffu) { /* 127.255.255.0/24: the list refuses to answer */
            snprintf(opt, sizeof opt, "%s: refused (%s)", shown, text);
            log_warn("event=dnsbl_refused list=%s zone=%s answer=%s", l->name, l->zone, text);
            dnsbl_add_hit(lk, li, l->tempfail_id, true, opt);
            continue;
        }
        for (j = 0; j < l->n_codes; j++) {
            const struct dnsbl_code *c = &l->codes[j];
            bool hit = c->mask ? (v & 0xffu & c->mask) != 0 : (v >= c->lo && v <= c->hi);
            if (!hit) continue;
            matched = true;
            if (c->refused) {
                snprintf(opt, sizeof opt, "%s: refused (%s)", shown, text);
                log_warn("event=dnsbl_refused list=%s zone=%s answer=%s", l->name, l->zone, text);
                dnsbl_add_hit(lk, li, l->tempfail_id, true, opt);
            } else {
                snprintf(opt, sizeof opt, "%s: %s", shown, text);
                dnsbl_add_hit(lk, li, c->id, false, opt);
            }
        }
        if (!matched)
            log_debug("event=dnsbl_unknown_code list=%s zone=%s answer=%s", l->name, l->zone, text);
    }
}

struct dnsbl_subject {
    const char *query; /* the label sequence put before the zone */
    const char *shown; /* what the option shows: the IP or the domain */
    bool v6;
};

/* The queries of one round: item i asks list item_list[i] about subject item_subj[i]. */
struct dnsbl_round {
    struct dns_batch_item *items;
    size_t *item_list, *item_subj;
    size_t n;
};

/* The queries for every subject in every enabled list of type (not named in disabled). */
static void dnsbl_round_build(struct dnsbl_round *rd, const struct dnsbl *d, enum dnsbl_type type,
                              const struct dnsbl_subject *subj, size_t n_subj, const char *disabled)
{
    size_t i, li;
    rd->items = xcalloc(n_subj * d->n_enabled + 1, sizeof *rd->items);
    rd->item_list = xcalloc(n_subj * d->n_enabled + 1, sizeof *rd->item_list);
    rd->item_subj = xcalloc(n_subj * d->n_enabled + 1, sizeof *rd->item_subj);
    rd->n = 0;
    for (li = 0; li < d->n_enabled; li++) {
        const struct dnsbl_list *l = &d->lists[li];
        if (l->type != type || dnsbl_name_in(disabled, l->name)) continue;
        for (i = 0; i < n_subj; i++) {
            char name[DNS_MAX_NAME_LEN + 2];
            int len;
            if (subj[i].v6 && !l->ipv6) continue;
            len = snprintf(name, sizeof name, "%s.%s", subj[i].query, l->zone);
            if (len < 0 || len > DNS_MAX_NAME_LEN) continue;
            rd->items[rd->n].name = xstrdup(name);
            rd->items[rd->n].type = DNS_T_A;
            rd->item_list[rd->n] = li;
            rd->item_subj[rd->n] = i;
            rd->n++;
        }
    }
}

/* Frees what dnsbl_round_build() allocated (not the answers). */
static void dnsbl_round_free(struct dnsbl_round *rd)
{
    size_t i;
    for (i = 0; i < rd->n; i++)
        free((char *)rd->items[i].name);
    free(rd->items);
    free(rd->item_list);
    free(rd->item_subj);
}

/*
 * Queries every subject in every enabled list of type (not named in
 * disabled), all at once, and reads the answers into lk.
 */
static void dnsbl_run(struct dnsbl_lookup *lk, struct dns_resolver *r, enum dnsbl_type type,
                      const struct dnsbl_subject *subj, size_t n_subj, const char *disabled)
{
    struct dnsbl_round rd;
    size_t i;

    dnsbl_round_build(&rd, lk->d, type, subj, n_subj, disabled);
    if (rd.n > 0) dns_query_many(r, rd.items, rd.n);
    for (i = 0; i < rd.n; i++) {
        dnsbl_read_answer(lk, rd.item_list[i], subj[rd.item_subj[i]].shown, rd.items[i].answer);
        dns_answer_free(rd.items[i].answer);
    }
    dnsbl_round_free(&rd);
}

/* The reversed form of ip for a DNSBL query into out; false if ip is not an address. */
static bool dnsbl_reverse_ip(const char *ip, char *out, size_t size, bool *v6)
{
    unsigned char a[16];
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const char hex[] = "0123456789abcdef";
    const unsigned char *v4 = NULL;
    int i;

    if (inet_pton(AF_INET, ip, a) == 1) {
        v4 = a;
    } else if (inet_pton(AF_INET6, ip, a) != 1) {
        return false;
    } else if (memcmp(a, mapped, sizeof mapped) == 0) {
        v4 = a + 12; /* ::ffff:192.0.2.1 is the IPv4 client 192.0.2.1 */
    }
    *v6 = v4 == NULL;
    if (v4) return snprintf(out, size, "%u.%u.%u.%u", v4[3], v4[2], v4[1], v4[0]) < (int)size;
    if (size < 64) return false; /* 32 nibbles, each with a dot or the final NUL */
    for (i = 15; i >= 0; i--) {
        *out++ = hex[a[i] & 0xf];
        *out++ = '.';
        *out++ = hex[a[i] >> 4];
        *out++ = i ? '.' : '\0';
    }
    return true;
}

/* The subject for client_ip in s (rev holds its query); false if the address is not looked up. */
static bool dnsbl_ip_subject(const char *client_ip, char rev[72], struct dnsbl_subject *s)
{
    if (client_ip == NULL || reputation_ip_is_local(client_ip) ||
        !dnsbl_reverse_ip(client_ip, rev, 72, &s->v6))
        return false;
    s->query = rev;
    s->shown = client_ip;
    return true;
}

struct dnsbl_lookup *dnsbl_ip_start(const struct dnsbl *d, struct dns_resolver *r,
                                    const char *client_ip)
{
    struct dnsbl_lookup *lk = xcalloc(1, sizeof *lk);
    char rev[72];
    struct dnsbl_subject s;

    lk->d = d;
    if (dnsbl_ip_subject(client_ip, rev, &s)) dnsbl_run(lk, r, DNSBL_TYPE_IP, &s, 1, NULL);
    return lk;
}

struct dnsbl_lookup *dnsbl_ip_unanswered(const struct dnsbl *d, const char *client_ip,
                                         enum dns_status status)
{
    struct dnsbl_lookup *lk = xcalloc(1, sizeof *lk);
    struct dns_answer none = {.status = status, .type = DNS_T_A};
    struct dnsbl_round rd;
    char rev[72];
    struct dnsbl_subject s;
    size_t i;

    assert(status != DNS_OK); /* an answer without records */
    lk->d = d;
    if (!dnsbl_ip_subject(client_ip, rev, &s)) return lk;
    /* The round dnsbl_ip_start() would send, every query read as if it had ended with status. */
    dnsbl_round_build(&rd, d, DNSBL_TYPE_IP, &s, 1, NULL);
    for (i = 0; i < rd.n; i++)
        dnsbl_read_answer(lk, rd.item_list[i], s.shown, &none);
    dnsbl_round_free(&rd);
    return lk;
}

/* Adds the hits of lk to res, skipping lists named in disabled. */
static void dnsbl_hits_to_result(const struct dnsbl_lookup *lk, const char *disabled,
                                 struct scan_result *res)
{
    size_t i;
    for (i = 0; i < lk->n_hits; i++) {
        const struct dnsbl_hit *h = &lk->hits[i];
        if (disabled && dnsbl_name_in(disabled, lk->d->lists[h->list].name)) continue;
        result_add(res, h->id, 1.0, h->option);
    }
}

void dnsbl_lookup_collect(const struct dnsbl_lookup *l, const char *disabled,
                          struct scan_result *res)
{
    if (l) dnsbl_hits_to_result(l, disabled, res);
}

size_t dnsbl_lookup_hits(const struct dnsbl_lookup *l)
{
    size_t i, n = 0;
    for (i = 0; l && i < l->n_hits; i++)
        if (!l->hits[i].tempfail) n++;
    return n;
}

void dnsbl_lookup_free(struct dnsbl_lookup *l)
{
    size_t i;
    if (l == NULL) return;
    for (i = 0; i < l->n_hits; i++)
        free(l->hits[i].option);
    free(l->hits);
    free(l);
}

void dnsbl_check_domains(const struct dnsbl *d, struct dns_resolver *r, const char *const *domains,
                         size_t n, const char *disabled, struct scan_result *res)
{
    struct dnsbl_lookup lk = {.d = d};
    struct dnsbl_subject *subj = xcalloc(n + 1, sizeof *subj);
    char **lower = xcalloc(n + 1, sizeof *lower);
    size_t i, j, n_subj = 0;

    for (i = 0; i < n && n_subj < d->max_domains; i++) {
        const char *dom = domains[i];
        unsigned char a[16];
        size_t len, k;
        if (dom == NULL || dom[0] == '\0' || dom[0] == '[' || inet_pton(AF_INET, dom, a) == 1 ||
            inet_pton(AF_INET6, dom, a) == 1)
            continue;
        len = strlen(dom);
        if (dom[len - 1] == '.') len--;
        if (len == 0 || len > DNS_MAX_NAME_LEN) continue;
        lower[n_subj] = xstrndup(dom, len);
        for (k = 0; k < len; k++)
            lower[n_subj][k] = (char)tolower((unsigned char)lower[n_subj][k]);
        for (j = 0; j < n_subj; j++)
            if (strcmp(lower[j], lower[n_subj]) == 0) break;
        if (j < n_subj) {
            free(lower[n_subj]);
            lower[n_subj] = NULL;
            continue;
        }
        subj[n_subj].query = subj[n_subj].shown = lower[n_subj];
        n_subj++;
    }
    if (n_subj > 0) dnsbl_run(&lk, r, DNSBL_TYPE_DOMAIN, subj, n_subj, disabled);
    dnsbl_hits_to_result(&lk, NULL, res);
    for (i = 0; i < lk.n_hits; i++)
        free(lk.hits[i].option);
    free(lk.hits);
    for (i = 0; i < n_subj; i++)
        free(lower[i]);
    free(lower);
    free(subj);
}

void dnsbl_check_message_urls(const struct dnsbl *d, struct dns_resolver *r,
                              const struct message *m, const char *disabled,
                              struct scan_result *res)
{
    const char **domains = xcalloc(m->n_urls + 1, sizeof *domains);
    size_t i, n = 0;
    for (i = 0; i < m->n_urls; i++) {
        const struct url *u = &m->urls[i];
        if (u->flags & URL_F_IP_LITERAL) continue;
        if (u->domain && u->domain[0]) domains[n++] = u->domain;
    }
    dnsbl_check_domains(d, r, domains, n, disabled, res);
    free(domains);
}
