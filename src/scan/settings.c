/*
 * settings - per-recipient action settings over the records database. See
 * settings.h for the keys, the inheritance, the mixed-recipient rule and how
 * reloads are swapped in.
 *
 * A snapshot is built in one pass over every stored row: rows become items
 * (kind, name, key, value), sorted by (kind, name) so each scope's rows are
 * adjacent, then grouped into one sorted array of domains and one of
 * addresses. Effective values are resolved at build time (global from the
 * defaults, each domain from global, each address from its domain or
 * global), so the scan path only searches. Everything a snapshot holds lives
 * in its own arena and is freed with it.
 *
 * settings_apply() validates by building a snapshot of what the database
 * would hold after the change and checking the scopes the change reaches;
 * the write is conditional on the settings generation it validated against,
 * so two admins cannot together store thresholds that neither would have
 * been allowed to.
 */
#include "scan/settings.h"
#include "core/arena.h"
#include "core/log.h"
#include "core/utf8.h"
#include "core/xalloc.h"
#include "store/db.h"

#include <assert.h>
#include <ctype.h>
#include <idn2.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SETTINGS_MAX_DOMAIN 253
#define SETTINGS_MAX_LOCAL  64
#define SETTINGS_MAX_VALUE  128
/* Conditional writes that lose a race are re-validated and retried this often. */
#define SETTINGS_APPLY_ATTEMPTS 5

enum settings_kind { KIND_GLOBAL, KIND_DOMAIN, KIND_ADDRESS };

static const char *const settings_key_names[SETTINGS_N_KEYS] = {
    [SETTING_THRESHOLD_TAG] = "threshold.tag",
    [SETTING_THRESHOLD_QUARANTINE] = "threshold.quarantine",
    [SETTING_THRESHOLD_REJECT] = "threshold.reject",
    [SETTING_SUBJECT_PREFIX] = "subject_prefix",
    [SETTING_ADD_REPORT_HEADER] = "add_report_header",
};

/* What one scope stores itself, before inheritance. */
struct settings_raw {
    unsigned mask; /* bit (1 << key) for each key stored */
    double threshold[3];
    const char *subject_prefix;
    bool add_report_header;
};

struct settings_entry {
    const char *name; /* the domain or address, normalised: the search key */
    struct settings_raw raw;
    struct settings_effective eff;
};

struct settings {
    atomic_uint refs;
    struct arena *arena;
    int64_t db_generation; /* -1: built-in defaults, never loaded */
    struct settings_entry global;
    struct settings_entry *domains; /* sorted by name */
    size_t n_domains;
    struct settings_entry *addresses; /* sorted by name */
    size_t n_addresses;
};

/* One stored row, parsed. */
struct settings_item {
    enum settings_kind kind;
    const char *name;  /* "" for global */
    const char *scope; /* the stored scope string */
    enum settings_key key;
    const char *value; /* canonical */
};

/* What settings_apply() asks a build to verify, and the first problem found. */
struct settings_check {
    const struct settings_change *changes;
    size_t n_changes;
    int blame; /* the first threshold key changed, or -1 */
    bool failed;
    char why[320];
};

const char *settings_key_name(enum settings_key key)
{
    assert(key < SETTINGS_N_KEYS);
    return settings_key_names[key];
}

int settings_key_find(const char *name)
{
    int i;
    for (i = 0; i < SETTINGS_N_KEYS; i++)
        if (strcmp(name, settings_key_names[i]) == 0) return i;
    return -1;
}

static bool settings_is_threshold(int key)
{
    return key == SETTING_THRESHOLD_TAG || key == SETTING_THRESHOLD_QUARANTINE ||
           key == SETTING_THRESHOLD_REJECT;
}

/* ---- names ---- */

/*
 * Normalises the domain in[0..len) into out: ASCII lowercased, a trailing dot
 * dropped, non-ASCII converted to A-labels. strict also checks that it is a
 * plausible host name. 0, or -1 (with err_set when strict).
 */
static int settings_domain_normalise(const char *in, size_t len, char *out, size_t out_size,
                                     bool strict)
{
    char tmp[SETTINGS_MAX_DOMAIN + 2];
    bool ascii = true;
    size_t i;

    if (len > 0 && in[len - 1] == '.') len--;
    if (len == 0 || len > SETTINGS_MAX_DOMAIN) {
        if (strict) err_set("\"%.*s\" is not a domain name", (int)(len > 80 ? 80 : len), in);
        return -1;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c >= 0x80) ascii = false;
        tmp[i] = (char)tolower(c);
    }
    tmp[len] = '\0';
    if (!ascii) {
        uint8_t *alabel = NULL;
        int rc = utf8_valid(tmp, len) ? idn2_lookup_u8((const uint8_t *)tmp, &alabel,
                                                       IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL)
                                      : IDN2_ENCODING_ERROR;
        if (rc != IDN2_OK || strlen((char *)alabel) > SETTINGS_MAX_DOMAIN) {
            if (strict) err_set("\"%s\" is not a valid domain name (%s)", tmp, idn2_strerror(rc));
            free(alabel);
            return -1;
        }
        snprintf(tmp, sizeof tmp, "%s", (char *)alabel);
        free(alabel);
        len = strlen(tmp);
    }
    if (strict) {
        size_t label = 0;
        if (tmp[0] == '*') {
            err_set("\"%s\": wildcards are not supported; configure each domain (subdomains do "
                    "not inherit their parent's settings)",
                    tmp);
            return -1;
        }
        for (i = 0; i <= len; i++) {
            char c = tmp[i];
            if (c == '.' || c == '\0') {
                if (label == 0 || label > 63) {
                    err_set("\"%s\" is not a domain name (empty or overlong label)", tmp);
                    return -1;
                }
                label = 0;
            } else if (isalnum((unsigned char)c) || c == '-' || c == '_') {
                label++;
            } else {
                err_set("\"%s\" is not a domain name (character '%c')", tmp, c);
                return -1;
            }
        }
    }
    if (len + 1 > out_size) return -1;
    memcpy(out, tmp, len + 1);
    return 0;
}

int settings_scope_parse(const char *text, char *out, size_t out_size)
{
    char domain[SETTINGS_MAX_DOMAIN + 2];
    const char *at;
    size_t i, local_len;
    int n;

    if (strcmp(text, "global") == 0) {
        n = snprintf(out, out_size, "global");
        return n >= 0 && (size_t)n < out_size ? SETTINGS_OK : SETTINGS_INVALID;
    }
    if (strncmp(text, "domain:", 7) == 0) {
        text += 7;
        if (strchr(text, '@')) goto bad_domain;
    } else if (strncmp(text, "address:", 8) == 0) {
        text += 8;
        if (!strchr(text, '@')) {
            err_set("\"%s\" is not an address (local@domain)", text);
            return SETTINGS_INVALID;
        }
    }
    at = strrchr(text, '@');
    if (at == NULL) {
        if (settings_domain_normalise(text, strlen(text), domain, sizeof domain, true) != 0)
            return SETTINGS_INVALID;
        n = snprintf(out, out_size, "domain:%s", domain);
    } else {
        local_len = (size_t)(at - text);
        if (local_len == 0 || local_len > SETTINGS_MAX_LOCAL) {
            err_set("\"%s\": the part before @ must have 1 to %d bytes", text, SETTINGS_MAX_LOCAL);
            return SETTINGS_INVALID;
        }
        for (i = 0; i < local_len; i++) {
            unsigned char c = (unsigned char)text[i];
            if (c <= 0x20 || c == 0x7f) {
                err_set("\"%s\": spaces and control characters are not allowed in an address",
                        text);
                return SETTINGS_INVALID;
            }
        }
        if (!utf8_valid(text, local_len)) {
            err_set("\"%s\" is not valid UTF-8", text);
            return SETTINGS_INVALID;
        }
        if (settings_domain_normalise(at + 1, strlen(at + 1), domain, sizeof domain, true) != 0)
            return SETTINGS_INVALID;
        n = snprintf(out, out_size, "address:%.*s@%s", (int)local_len, text, domain);
    }
    if (n < 0 || (size_t)n >= out_size) {
        err_set("scope \"%.60s\" is too long", text);
        return SETTINGS_INVALID;
    }
    return SETTINGS_OK;

bad_domain:
    err_set("\"%s\" is not a domain name", text);
    return SETTINGS_INVALID;
}

const char *settings_scope_display(const char *scope)
{
    if (strncmp(scope, "domain:", 7) == 0) return scope + 7;
    if (strncmp(scope, "address:", 8) == 0) return scope + 8;
    return scope;
}

/* The kind of a stored scope and the name after its prefix. */
static enum settings_kind settings_scope_kind(const char *scope, const char **name)
{
    if (strncmp(scope, "domain:", 7) == 0) {
        *name = scope + 7;
        return KIND_DOMAIN;
    }
    if (strncmp(scope, "address:", 8) == 0) {
        *name = scope + 8;
        return KIND_ADDRESS;
    }
    *name = "";
    return KIND_GLOBAL;
}

/* ---- values ---- */

/* A plain decimal number: [-+]digits[.digits] (no exponent, hex, inf or nan). */
static bool settings_plain_number(const char *s)
{
    size_t digits = 0;
    if (*s == '-' || *s == '+') s++;
    while (isdigit((unsigned char)*s))
        s++, digits++;
    if (*s == '.') {
        s++;
        while (isdigit((unsigned char)*s))
            s++, digits++;
    }
    return digits > 0 && *s == '\0';
}

int settings_value_parse(enum settings_key key, const char *value, char *out, size_t out_size)
{
    const char *name = settings_key_name(key);
    size_t len = strlen(value), i;
    int n;

    switch (key) {
    case SETTING_THRESHOLD_TAG:
    case SETTING_THRESHOLD_QUARANTINE:
    case SETTING_THRESHOLD_REJECT: {
        double d;
        if (!settings_plain_number(value)) {
            err_set("%s must be a number such as 6 or 7.5, not \"%.40s\"", name, value);
            return SETTINGS_INVALID;
        }
        d = strtod(value, NULL);
        if (!isfinite(d) || fabs(d) > SETTINGS_THRESHOLD_LIMIT) {
            err_set("%s must be between -%g and %g", name, SETTINGS_THRESHOLD_LIMIT,
                    SETTINGS_THRESHOLD_LIMIT);
            return SETTINGS_INVALID;
        }
        n = snprintf(out, out_size, "%s", value);
        break;
    }
    case SETTING_SUBJECT_PREFIX:
        if (len > SETTINGS_MAX_SUBJECT_PREFIX || !utf8_valid(value, len)) {
            err_set("%s must be valid UTF-8 of at most %d bytes", name,
                    SETTINGS_MAX_SUBJECT_PREFIX);
            return SETTINGS_INVALID;
        }
        for (i = 0; i < len; i++) {
            unsigned char c = (unsigned char)value[i];
            if (c < 0x20 || c == 0x7f) {
                err_set("%s must not contain control characters or line breaks", name);
                return SETTINGS_INVALID;
            }
        }
        n = snprintf(out, out_size, "%s", value);
        break;
    case SETTING_ADD_REPORT_HEADER:
        if (!strcasecmp(value, "yes") || !strcasecmp(value, "true") || !strcasecmp(value, "on") ||
            !strcmp(value, "1"))
            n = snprintf(out, out_size, "yes");
        else if (!strcasecmp(value, "no") || !strcasecmp(value, "false") ||
                 !strcasecmp(value, "off") || !strcmp(value, "0"))
            n = snprintf(out, out_size, "no");
        else {
            err_set("%s must be yes or no, not \"%.40s\"", name, value);
            return SETTINGS_INVALID;
        }
        break;
    default:
        err_set("unknown setting %d", (int)key);
        return SETTINGS_INVALID;
    }
    if (n < 0 || (size_t)n >= out_size) {
        err_set("%s: value too long", name);
        return SETTINGS_INVALID;
    }
    return SETTINGS_OK;
}

/* Stores a canonical value into raw. */
static void settings_raw_set(struct settings_raw *raw, enum settings_key key, const char *value)
{
    switch (key) {
    case SETTING_THRESHOLD_TAG:
    case SETTING_THRESHOLD_QUARANTINE:
    case SETTING_THRESHOLD_REJECT:
        raw->threshold[key] = strtod(value, NULL);
        break;
    case SETTING_SUBJECT_PREFIX:
        raw->subject_prefix = value;
        break;
    case SETTING_ADD_REPORT_HEADER:
        raw->add_report_header = strcmp(value, "yes") == 0;
        break;
    default:
        return;
    }
    raw->mask |= 1u << key;
}

/* ---- building a snapshot ---- */

static struct settings *settings_alloc(void)
{
    struct settings *s = xcalloc(1, sizeof *s);
    struct settings_effective *g = &s->global.eff;
    int k;

    atomic_init(&s->refs, 1);
    s->arena = arena_new(0);
    s->db_generation = -1;
    s->global.name = "";
    g->scope = "global";
    g->thresholds = thresholds_default();
    g->subject_prefix = "";
    g->add_report_header = true;
    for (k = 0; k < SETTINGS_N_KEYS; k++)
        g->source[k] = "default";
    return s;
}

/* eff = base with raw's values (stored at scope) on top. */
static void settings_merge(struct settings_effective *eff, const struct settings_effective *base,
                           const struct settings_raw *raw, const char *scope)
{
    double *t[3];
    int k;

    *eff = *base;
    eff->scope = scope;
    t[0] = &eff->thresholds.tag;
    t[1] = &eff->thresholds.quarantine;
    t[2] = &eff->thresholds.reject;
    for (k = 0; k < SETTINGS_N_KEYS; k++) {
        if (!(raw->mask & (1u << k))) continue;
        eff->source[k] = scope;
        if (settings_is_threshold(k)) *t[k] = raw->threshold[k];
    }
    if (raw->mask & (1u << SETTING_SUBJECT_PREFIX)) eff->subject_prefix = raw->subject_prefix;
    if (raw->mask & (1u << SETTING_ADD_REPORT_HEADER))
        eff->add_report_header = raw->add_report_header;
}

/* Does a change reach scope (a global change reaches all, a domain change its addresses)? */
static bool settings_check_reaches(const struct settings_check *check, const char *scope,
                                   enum settings_kind kind, const char *name)
{
    size_t i;
    for (i = 0; i < check->n_changes; i++) {
        const char *cs = check->changes[i].scope, *cname;
        enum settings_kind ck = settings_scope_kind(cs, &cname);
        if (ck == KIND_GLOBAL || strcmp(cs, scope) == 0) return true;
        if (ck == KIND_DOMAIN && kind == KIND_ADDRESS && strcmp(strrchr(name, '@') + 1, cname) == 0)
            return true;
    }
    return false;
}

/* Writes why the thresholds t of scope are out of order, blaming the key the admin changed. */
static void settings_order_message(char *why, size_t size, const struct thresholds *t, int blame,
                                   const char *scope)
{
    const char *who = settings_scope_display(scope);
    if (!(t->tag < t->quarantine)) {
        if (blame == SETTING_THRESHOLD_TAG)
            snprintf(why, size,
                     "threshold.tag (%g) must be less than threshold.quarantine (%g) for %s",
                     t->tag, t->quarantine, who);
        else
            snprintf(why, size,
                     "threshold.quarantine (%g) must be greater than threshold.tag (%g) for %s",
                     t->quarantine, t->tag, who);
    } else if (blame == SETTING_THRESHOLD_REJECT) {
        snprintf(why, size,
                 "threshold.reject (%g) must be greater than threshold.quarantine (%g) for %s",
                 t->reject, t->quarantine, who);
    } else {
        snprintf(why, size,
                 "threshold.quarantine (%g) must be less than threshold.reject (%g) for %s",
                 t->quarantine, t->reject, who);
    }
}

/*
 * Resolves entry from base and checks its order. Out of order: with a check
 * that the change reaches, records the problem; otherwise warns and falls
 * back to base's thresholds.
 */
static void settings_resolve(struct settings_entry *e, const struct settings_effective *base,
                             enum settings_kind kind, struct settings_check *check)
{
    const struct thresholds *t;
    int k;

    settings_merge(&e->eff, base, &e->raw, e->eff.scope);
    t = &e->eff.thresholds;
    if (t->tag < t->quarantine && t->quarantine < t->reject) return;
    if (check && settings_check_reaches(check, e->eff.scope, kind, e->name)) {
        if (!check->failed)
            settings_order_message(check->why, sizeof check->why, t, check->blame, e->eff.scope);
        check->failed = true;
        return;
    }
    log_warn("msg=\"thresholds out of order; using the inherited ones\" scope=\"%s\" tag=%g "
             "quarantine=%g reject=%g",
             e->eff.scope, t->tag, t->quarantine, t->reject);
    e->eff.thresholds = base->thresholds;
    for (k = 0; k < SETTINGS_N_KEYS; k++)
        if (settings_is_threshold(k)) e->eff.source[k] = base->source[k];
}

static int settings_item_cmp(const void *a, const void *b)
{
    const struct settings_item *x = a, *y = b;
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int settings_entry_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct settings_entry *)elem)->name);
}

static const struct settings_entry *settings_find(const struct settings_entry *arr, size_t n,
                                                  const char *name)
{
    if (n == 0) return NULL;
    return bsearch(name, arr, n, sizeof *arr, settings_entry_cmp);
}

/*
 * Builds a snapshot from items[0..n) (their strings must live in s->arena;
 * the array is sorted in place). check may be NULL.
 */
static void settings_build(struct settings *s, struct settings_item *items, size_t n,
                           struct settings_check *check)
{
    size_t i, n_dom = 0, n_addr = 0;

    qsort(items, n, sizeof *items, settings_item_cmp);
    for (i = 0; i < n; i++) {
        if (i > 0 && items[i].kind == items[i - 1].kind &&
            strcmp(items[i].name, items[i - 1].name) == 0)
            continue;
        if (items[i].kind == KIND_DOMAIN) n_dom++;
        if (items[i].kind == KIND_ADDRESS) n_addr++;
    }
    s->domains = arena_calloc(s->arena, n_dom ? n_dom : 1, sizeof *s->domains);
    s->addresses = arena_calloc(s->arena, n_addr ? n_addr : 1, sizeof *s->addresses);

    /* Group: items of one scope are adjacent and arrive in name order. */
    for (i = 0; i < n; i++) {
        const struct settings_item *it = &items[i];
        struct settings_entry *e;
        if (it->kind == KIND_GLOBAL) {
            e = &s->global;
        } else {
            struct settings_entry *arr = it->kind == KIND_DOMAIN ? s->domains : s->addresses;
            size_t *count = it->kind == KIND_DOMAIN ? &s->n_domains : &s->n_addresses;
            if (*count == 0 || strcmp(arr[*count - 1].name, it->name) != 0) {
                arr[*count].name = it->name;
                arr[*count].eff.scope = it->scope;
                (*count)++;
            }
            e = &arr[*count - 1];
        }
        settings_raw_set(&e->raw, it->key, it->value);
    }

    /* Resolve top-down: global from the defaults, domains from global, addresses from either. */
    {
        struct settings_effective defaults = s->global.eff;
        settings_resolve(&s->global, &defaults, KIND_GLOBAL, check);
    }
    for (i = 0; i < s->n_domains; i++)
        settings_resolve(&s->domains[i], &s->global.eff, KIND_DOMAIN, check);
    for (i = 0; i < s->n_addresses; i++) {
        struct settings_entry *e = &s->addresses[i];
        const struct settings_entry *d =
            settings_find(s->domains, s->n_domains, strrchr(e->name, '@') + 1);
        settings_resolve(e, d ? &d->eff : &s->global.eff, KIND_ADDRESS, check);
    }
}

/*
 * Turns a stored row into an item with strings in the arena. Returns false
 * (and warns) for rows a snapshot must skip: unknown key, bad scope or value.
 */
static bool settings_item_from_row(struct arena *a, const char *scope, const char *key,
                                   const char *value, struct settings_item *it)
{
    char norm[DB_MAX_SCOPE + 1], canon[SETTINGS_MAX_VALUE];
    int k = settings_key_find(key);

    if (k < 0) {
        log_warn("msg=\"unknown setting ignored\" scope=\"%s\" key=\"%s\"", scope, key);
        return false;
    }
    if (settings_scope_parse(scope, norm, sizeof norm) != SETTINGS_OK || strcmp(norm, scope) != 0) {
        log_warn("msg=\"setting with a malformed scope ignored\" scope=\"%s\" key=%s", scope, key);
        return false;
    }
    if (settings_value_parse((enum settings_key)k, value, canon, sizeof canon) != SETTINGS_OK) {
        log_warn("msg=\"setting with a bad value ignored\" scope=\"%s\" key=%s reason=\"%s\"",
                 scope, key, err_msg());
        return false;
    }
    it->scope = arena_strdup(a, scope);
    it->kind = settings_scope_kind(it->scope, &it->name);
    it->key = (enum settings_key)k;
    it->value = arena_strdup(a, canon);
    return true;
}

struct settings *settings_defaults(void)
{
    return settings_alloc();
}

int settings_load(struct db *db, struct settings **out)
{
    struct db_setting_list list;
    struct settings *s;
    struct settings_item *items;
    size_t i, n = 0;
    int64_t generation;

    *out = NULL;
    if (db_setting_list(db, NULL, &list, &generation) != DB_OK) {
        db_setting_list_free(&list);
        return SETTINGS_STORE;
    }
    s = settings_alloc();
    s->db_generation = generation;
    items = xcalloc(list.n ? list.n : 1, sizeof *items);
    for (i = 0; i < list.n; i++)
        if (settings_item_from_row(s->arena, list.items[i].scope, list.items[i].key,
                                   list.items[i].value, &items[n]))
            n++;
    settings_build(s, items, n, NULL);
    free(items);
    db_setting_list_free(&list);
    *out = s;
    return SETTINGS_OK;
}

/* Drops one reference; the last frees the snapshot. */
void settings_free(struct settings *s)
{
    if (s == NULL) return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
    arena_free(s->arena);
    free(s);
}

int64_t settings_db_generation(const struct settings *s)
{
    return s->db_generation;
}

/* ---- lookups ---- */

const struct settings_effective *settings_global(const struct settings *s)
{
    return &s->global.eff;
}

const struct settings_effective *settings_for_scope(const struct settings *s, const char *scope)
{
    const char *name;
    const struct settings_entry *e;

    switch (settings_scope_kind(scope, &name)) {
    case KIND_DOMAIN:
        e = settings_find(s->domains, s->n_domains, name);
        return e ? &e->eff : &s->global.eff;
    case KIND_ADDRESS:
        e = settings_find(s->addresses, s->n_addresses, name);
        if (e) return &e->eff;
        if (strchr(name, '@') == NULL) break;
        e = settings_find(s->domains, s->n_domains, strrchr(name, '@') + 1);
        return e ? &e->eff : &s->global.eff;
    case KIND_GLOBAL:
        break;
    }
    return &s->global.eff;
}

const struct settings_effective *settings_for_recipient(const struct settings *s, const char *rcpt)
{
    char domain[SETTINGS_MAX_DOMAIN + 2];
    const struct settings_entry *e;
    const char *at;
    size_t local_len;

    if (rcpt == NULL) return &s->global.eff;
    at = strrchr(rcpt, '@');
    if (at == NULL) {
        /* A bare local name ("postmaster"): only an exact address entry can match. */
        e = settings_find(s->addresses, s->n_addresses, rcpt);
        return e ? &e->eff : &s->global.eff;
    }
    if (settings_domain_normalise(at + 1, strlen(at + 1), domain, sizeof domain, false) != 0)
        return &s->global.eff;
    local_len = (size_t)(at - rcpt);
    if (s->n_addresses > 0 && local_len <= SETTINGS_MAX_LOCAL) {
        char address[SETTINGS_MAX_LOCAL + SETTINGS_MAX_DOMAIN + 4];
        snprintf(address, sizeof address, "%.*s@%s", (int)local_len, rcpt, domain);
        e = settings_find(s->addresses, s->n_addresses, address);
        if (e) return &e->eff;
    }
    e = settings_find(s->domains, s->n_domains, domain);
    return e ? &e->eff : &s->global.eff;
}

void settings_action_for_recipients(const struct settings *s, double score, const char *const *rcpt,
                                    size_t n_rcpt, struct settings_decision *out)
{
    /* first[a]: the first recipient whose own thresholds give action a, or n_rcpt. */
    size_t first[ACTION_REJECT + 1], i, decider;
    const struct settings_effective *eff[ACTION_REJECT + 1] = {0};
    bool all_reject = true;
    int a;

    memset(out, 0, sizeof *out);
    if (n_rcpt == 0) {
        out->settings = &s->global.eff;
        out->thresholds = out->settings->thresholds;
        out->action = thresholds_action(&out->thresholds, score);
        out->decided_by = "default";
        return;
    }
    for (a = 0; a <= ACTION_REJECT; a++)
        first[a] = n_rcpt;
    for (i = 0; i < n_rcpt; i++) {
        const struct settings_effective *e = settings_for_recipient(s, rcpt[i]);
        enum scan_action act = thresholds_action(&e->thresholds, score);
        if (first[act] == n_rcpt) {
            first[act] = i;
            eff[act] = e;
        }
        if (act != ACTION_REJECT) all_reject = false;
    }
    if (all_reject) {
        out->action = ACTION_REJECT;
        a = ACTION_REJECT;
    } else if (first[ACTION_QUARANTINE] < n_rcpt || first[ACTION_REJECT] < n_rcpt) {
        /* Held mail can be released; a rejected recipient's mail cannot come back. */
        out->action = ACTION_QUARANTINE;
        a = first[ACTION_QUARANTINE] < n_rcpt ? ACTION_QUARANTINE : ACTION_REJECT;
    } else {
        a = first[ACTION_TAG] < n_rcpt ? ACTION_TAG : ACTION_DELIVER;
        out->action = (enum scan_action)a;
    }
    decider = first[a];
    assert(decider < n_rcpt);
    out->settings = eff[a];
    out->thresholds = eff[a]->thresholds;
    out->decided_by = rcpt[decider] ? rcpt[decider] : "default";
}

/* ---- writing ---- */

int settings_apply(struct db *db, const struct settings_change *changes, size_t n)
{
    struct db_setting_change *writes;
    char(*canon)[SETTINGS_MAX_VALUE];
    size_t i;
    int attempt, rc = SETTINGS_INVALID;

    if (n == 0) {
        err_set("no settings to change");
        return SETTINGS_INVALID;
    }
    writes = xcalloc(n, sizeof *writes);
    canon = xcalloc(n, sizeof *canon);
    for (i = 0; i < n; i++) {
        char norm[DB_MAX_SCOPE + 1];
        const struct settings_change *c = &changes[i];
        if ((unsigned)c->key >= SETTINGS_N_KEYS) {
            err_set("unknown setting %d", (int)c->key);
            goto out;
        }
        if (settings_scope_parse(c->scope, norm, sizeof norm) != SETTINGS_OK) goto out;
        if (strcmp(norm, c->scope) != 0) {
            err_set("scope \"%s\" is not in stored form (expected \"%s\")", c->scope, norm);
            goto out;
        }
        if (c->value &&
            settings_value_parse(c->key, c->value, canon[i], sizeof canon[i]) != SETTINGS_OK)
            goto out;
        writes[i].scope = c->scope;
        writes[i].key = settings_key_name(c->key);
        writes[i].value = c->value ? canon[i] : NULL;
    }

    for (attempt = 0; attempt < SETTINGS_APPLY_ATTEMPTS; attempt++) {
        struct db_setting_list list;
        struct settings_check check = {changes, n, -1, false, ""};
        struct settings *s;
        struct settings_item *items;
        size_t j, n_items = 0;
        int64_t generation;

        if (db_setting_list(db, NULL, &list, &generation) != DB_OK) {
            db_setting_list_free(&list);
            rc = SETTINGS_STORE;
            goto out;
        }
        /* What the database would hold after the change: stored rows not overridden, then the
         * new values. */
        s = settings_alloc();
        items = xcalloc(list.n + n + 1, sizeof *items);
        for (j = 0; j < list.n; j++) {
            const struct db_setting *row = &list.items[j];
            bool overridden = false;
            for (i = 0; i < n && !overridden; i++)
                overridden = strcmp(row->scope, writes[i].scope) == 0 &&
                             strcmp(row->key, writes[i].key) == 0;
            if (!overridden &&
                settings_item_from_row(s->arena, row->scope, row->key, row->value, &items[n_items]))
                n_items++;
        }
        for (i = 0; i < n; i++) {
            if (check.blame < 0 && settings_is_threshold(changes[i].key))
                check.blame = changes[i].key;
            if (writes[i].value && settings_item_from_row(s->arena, writes[i].scope, writes[i].key,
                                                          writes[i].value, &items[n_items]))
                n_items++;
        }
        settings_build(s, items, n_items, &check);
        free(items);
        settings_free(s);
        db_setting_list_free(&list);
        if (check.failed) {
            err_set("%s", check.why);
            rc = SETTINGS_INVALID;
            goto out;
        }
        rc = db_settings_write(db, writes, n, generation);
        if (rc == DB_OK) {
            rc = SETTINGS_OK;
            goto out;
        }
        if (rc != DB_CONFLICT) {
            rc = SETTINGS_STORE;
            goto out;
        }
    }
    rc = SETTINGS_STORE; /* err_msg() still says why the last attempt conflicted */
out:
    free(canon);
    free(writes);
    return rc;
}

/* ---- the shared snapshot ---- */

struct settings_cache {
    pthread_mutex_t lock;
    struct settings *current;        /* guarded by lock; the cache holds one reference */
    atomic_uint_fast64_t generation; /* bumped (under lock) each time current changes */
};

struct settings_cache *settings_cache_new(void)
{
    struct settings_cache *c = xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    c->current = settings_defaults();
    atomic_init(&c->generation, 1); /* a zeroed ref (generation 0) always pins */
    return c;
}

void settings_cache_free(struct settings_cache *c)
{
    if (c == NULL) return;
    settings_free(c->current);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Makes s (one reference, handed over) the current snapshot. */
static void settings_cache_swap(struct settings_cache *c, struct settings *s)
{
    struct settings *old;
    pthread_mutex_lock(&c->lock);
    old = c->current;
    c->current = s;
    atomic_fetch_add_explicit(&c->generation, 1, memory_order_release);
    pthread_mutex_unlock(&c->lock);
    settings_free(old);
}

int settings_cache_reload(struct settings_cache *c, struct db *db)
{
    struct settings *s;
    int rc = settings_load(db, &s);
    if (rc != SETTINGS_OK) return rc;
    log_info("msg=\"settings loaded\" generation=%lld domains=%zu addresses=%zu",
             (long long)s->db_generation, s->n_domains, s->n_addresses);
    settings_cache_swap(c, s);
    return SETTINGS_OK;
}

int settings_cache_reload_if_changed(struct settings_cache *c, struct db *db, bool *reloaded)
{
    int64_t stored, loaded;

    if (reloaded) *reloaded = false;
    if (db_settings_generation(db, &stored) != DB_OK) return SETTINGS_STORE;
    pthread_mutex_lock(&c->lock);
    loaded = c->current->db_generation;
    pthread_mutex_unlock(&c->lock);
    if (stored == loaded) return SETTINGS_OK;
    if (reloaded) *reloaded = true;
    return settings_cache_reload(c, db);
}

const struct settings *settings_cache_pin(struct settings_cache *c, struct settings_ref *ref)
{
    uint64_t generation = atomic_load_explicit(&c->generation, memory_order_acquire);
    struct settings *old;

    if (ref->snapshot && ref->generation == generation) return ref->snapshot;
    old = ref->snapshot;
    pthread_mutex_lock(&c->lock);
    ref->snapshot = c->current;
    atomic_fetch_add_explicit(&ref->snapshot->refs, 1, memory_order_relaxed);
    ref->generation = atomic_load_explicit(&c->generation, memory_order_relaxed);
    pthread_mutex_unlock(&c->lock);
    settings_free(old);
    return ref->snapshot;
}

void settings_ref_drop(struct settings_cache *c, struct settings_ref *ref)
{
    (void)c;
    settings_free(ref->snapshot);
    ref->snapshot = NULL;
    ref->generation = 0;
}
