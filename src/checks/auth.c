/*
 * auth - SPF, DKIM and DMARC (see auth.h).
 *
 * All three libraries would happily do their own DNS; none of them may. SPF
 * gets a custom SPF_dns_server_t whose lookup calls dns_query(); libopendkim
 * gets a key-lookup callback that finds the resolver in the DKIM handle's
 * user context; the DMARC record we fetch ourselves and hand to libopendmarc
 * with opendmarc_policy_store_dmarc(). So every lookup shares the scan's
 * deadline and the resolver's cache, and a dead or hostile DNS server costs a
 * scan no more than its budget.
 *
 * Library state: one DKIM_LIB and libopendmarc's library settings (the public
 * suffix list for relaxed alignment) for the process, set up under a mutex on
 * first use and only read afterwards. An SPF_server_t is cheap and is made
 * per check, so that it can carry this thread's resolver.
 *
 * Scores follow what mail administrators expect: SPF and DKIM passes are
 * worth little on their own (spammers publish SPF and sign their mail too);
 * failures against a domain's explicit policy are worth more, DMARC reject
 * most of all. Temporary and permanent errors score 0: they say nothing
 * about the mail, and a DNS outage must not push good mail into quarantine.
 */
#include "checks/auth.h"
#include "checks/dns.h"
#include "checks/symbols.h"
#include "core/arena.h"
#include "core/log.h"
#include "message/message.h"
#include "message/url.h"
#include "scan/result.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <libpsl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <spf2/spf.h>
#include <spf2/spf_dns.h>
#include <opendkim/dkim.h>
#include <opendmarc/dmarc.h>

static pthread_mutex_t auth_lib_lock = PTHREAD_MUTEX_INITIALIZER;
static DKIM_LIB *auth_dkim_lib;
static bool auth_dmarc_ready;
static OPENDMARC_LIB_T auth_dmarc_lib; /* libopendmarc keeps a pointer to it */

void auth_register(struct symbol_registry *reg, struct auth_ids *ids)
{
    ids->spf_allow =
        symbols_add(reg, "SPF_ALLOW", -0.2,
                    "SPF: the sender domain's SPF record allows the sending server", "auth");
    ids->spf_fail = symbols_add(reg, "SPF_FAIL", 3.0,
                                "SPF: the sender domain's SPF record forbids the sending server "
                                "(-all)",
                                "auth");
    ids->spf_softfail = symbols_add(reg, "SPF_SOFTFAIL", 1.0,
                                    "SPF: the sender domain's SPF record says the sending server "
                                    "is probably not allowed (~all)",
                                    "auth");
    ids->spf_neutral = symbols_add(reg, "SPF_NEUTRAL", 0.0,
                                   "SPF: the sender domain's SPF record makes no statement about "
                                   "the sending server (?all)",
                                   "auth");
    ids->spf_na = symbols_add(reg, "SPF_NA", 0.0,
                              "SPF not checked: the sender domain has no SPF record, or the "
                              "client IP or sender is unknown",
                              "auth");
    ids->spf_temperror = symbols_add(reg, "SPF_TEMPERROR", 0.0,
                                     "SPF could not be checked: DNS lookup failed or timed out "
                                     "(temperror)",
                                     "auth");
    ids->spf_permerror = symbols_add(reg, "SPF_PERMERROR", 0.0,
                                     "SPF: the sender domain's SPF record is broken (syntax "
                                     "error, several records, or too many lookups; permerror)",
                                     "auth");
    ids->dkim_allow = symbols_add(reg, "DKIM_ALLOW", -0.2,
                                  "DKIM: a valid signature from the signing domain", "auth");
    ids->dkim_reject = symbols_add(reg, "DKIM_REJECT", 2.0,
                                   "DKIM: the signature does not verify (the message was altered "
                                   "after signing, or the signature is forged)",
                                   "auth");
    ids->dkim_tempfail = symbols_add(reg, "DKIM_TEMPFAIL", 0.0,
                                     "DKIM could not be checked: the key lookup in DNS failed or "
                                     "timed out",
                                     "auth");
    ids->dkim_permfail = symbols_add(reg, "DKIM_PERMFAIL", 0.0,
                                     "DKIM: the signature cannot be checked (no key in DNS, key "
                                     "revoked or malformed, or broken signature header)",
                                     "auth");
    ids->dkim_na = symbols_add(reg, "DKIM_NA", 0.0, "DKIM: the message is not signed", "auth");
    ids->dmarc_allow = symbols_add(reg, "DMARC_ALLOW", -0.5,
                                   "DMARC: SPF or DKIM authenticates the From: domain", "auth");
    ids->dmarc_reject = symbols_add(reg, "DMARC_REJECT", 5.0,
                                    "DMARC: the From: domain is not authenticated and its owner "
                                    "asks receivers to reject such mail (p=reject)",
                                    "auth");
    ids->dmarc_quarantine = symbols_add(reg, "DMARC_QUARANTINE", 3.0,
                                        "DMARC: the From: domain is not authenticated and its "
                                        "owner asks receivers to treat such mail as suspicious "
                                        "(p=quarantine)",
                                        "auth");
    ids->dmarc_softfail = symbols_add(reg, "DMARC_SOFTFAIL", 0.1,
                                      "DMARC: the From: domain is not authenticated; its owner "
                                      "only monitors (p=none)",
                                      "auth");
    ids->dmarc_na = symbols_add(reg, "DMARC_NA", 0.0,
                                "DMARC not checked: the From: domain publishes no DMARC policy, "
                                "or there is no From: domain",
                                "auth");
    ids->dmarc_tempfail =
        symbols_add(reg, "DMARC_TEMPFAIL", 0.0,
                    "DMARC could not be checked: DNS lookup failed or timed out", "auth");
    ids->dmarc_permfail = symbols_add(reg, "DMARC_PERMFAIL", 0.0,
                                      "DMARC: the From: domain's DMARC record is invalid", "auth");
}

/* ---- process-wide library state ---- */

static DKIM_CBSTAT auth_dkim_key_lookup(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf, size_t buflen);
static DKIM_CBSTAT auth_dkim_prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs);

/* libspf2 prints warnings to stderr by default; ours go to the log, one line each. */
static void auth_spf_log(const char *file, int line, const char *msg)
{
    (void)file;
    (void)line;
    log_debug("module=auth event=spf_message msg=\"%s\"", msg ? msg : "");
}

/* Sets up the DKIM library and libopendmarc once; false if DKIM could not be (logged). */
static bool auth_library_init(void)
{
    bool ok;
    pthread_mutex_lock(&auth_lib_lock);
    if (auth_dkim_lib == NULL) {
        auth_dkim_lib = dkim_init(NULL, NULL);
        if (auth_dkim_lib != NULL) {
            unsigned int flags = DKIM_LIBFLAGS_FIXCRLF;
            dkim_options(auth_dkim_lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags);
            dkim_set_key_lookup(auth_dkim_lib, auth_dkim_key_lookup);
            dkim_set_prescreen(auth_dkim_lib, auth_dkim_prescreen);
        } else {
            log_error("module=auth event=dkim_init_failed");
        }
        SPF_warning_handler = auth_spf_log;
        SPF_info_handler = auth_spf_log;
        SPF_debug_handler = auth_spf_log;
    }
    if (!auth_dmarc_ready) {
        OPENDMARC_LIB_T *lib = &auth_dmarc_lib;
        const char *psl_file = psl_dist_filename();
        memset(lib, 0, sizeof *lib);
        if (psl_file != NULL && *psl_file != '\0' &&
            strlen(psl_file) < sizeof lib->tld_source_file) {
            lib->tld_type = OPENDMARC_TLD_TYPE_MOZILLA;
            memcpy(lib->tld_source_file, psl_file, strlen(psl_file) + 1);
        }
        if (opendmarc_policy_library_init(lib) != DMARC_PARSE_OKAY && lib->tld_type != 0) {
            /* Without the list, relaxed alignment compares whole domains. */
            log_warn("module=auth event=dmarc_psl_unusable file=%s", psl_file);
            lib->tld_type = OPENDMARC_TLD_TYPE_NONE;
            opendmarc_policy_library_init(lib);
        }
        auth_dmarc_ready = true;
    }
    ok = auth_dkim_lib != NULL;
    pthread_mutex_unlock(&auth_lib_lock);
    return ok;
}

void auth_library_shutdown(void)
{
    pthread_mutex_lock(&auth_lib_lock);
    if (auth_dkim_lib != NULL) dkim_close(auth_dkim_lib);
    auth_dkim_lib = NULL;
    if (auth_dmarc_ready) {
        opendmarc_policy_library_shutdown(&auth_dmarc_lib);
        opendmarc_tld_shutdown();
    }
    auth_dmarc_ready = false;
    pthread_mutex_unlock(&auth_lib_lock);
}

/* ---- SPF ---- */

/* libspf2's DNS layer: answers from our resolver (in hook). Caller (libspf2) frees the rr. */
static SPF_dns_rr_t *auth_spf_lookup(SPF_dns_server_t *layer, const char *domain, ns_type type,
                                     int should_cache)
{
    struct dns_resolver *resolver = layer->hook;
    struct dns_answer *a;
    SPF_dns_rr_t *rr;
    int herrno, i, n = 0;
    (void)should_cache;

    /* The SPF RR type (99) is obsolete (RFC 7208 3.1): never ask for it. */
    if (type != ns_t_a && type != ns_t_aaaa && type != ns_t_mx && type != ns_t_ptr &&
        type != ns_t_txt)
        return SPF_dns_rr_new_init(layer, domain, type, 0, NO_DATA);

    a = dns_query(resolver, domain, (enum dns_type)type);
    switch (a->status) {
    case DNS_OK:
        herrno = NETDB_SUCCESS;
        break;
    case DNS_NXDOMAIN:
        herrno = HOST_NOT_FOUND;
        break;
    case DNS_NODATA:
        herrno = NO_DATA;
        break;
    default:
        herrno = TRY_AGAIN;
        break;
    }
    rr = SPF_dns_rr_new_init(layer, domain, type, (int)a->ttl_s, herrno);
    if (rr == NULL) {
        dns_answer_free(a);
        return NULL;
    }
    for (i = 0; (size_t)i < a->n_records; i++) {
        const struct dns_record *rec = &a->records[i];
        if (type == ns_t_a || type == ns_t_aaaa) {
            size_t size = type == ns_t_a ? sizeof(struct in_addr) : sizeof(struct in6_addr);
            if (SPF_dns_rr_buf_realloc(rr, n, size) != SPF_E_SUCCESS) break;
            if (inet_pton(type == ns_t_a ? AF_INET : AF_INET6, rec->text, rr->rr[n]) != 1) continue;
        } else {
            if (SPF_dns_rr_buf_realloc(rr, n, rec->len + 1) != SPF_E_SUCCESS) break;
            memcpy(rr->rr[n], rec->text, rec->len + 1);
        }
        rr->num_rr = ++n;
    }
    dns_answer_free(a);
    return rr;
}

/* The domain SPF checks: MAIL FROM's domain, or HELO for the null sender. NULL if neither. */
static const char *auth_spf_domain(const struct message *m)
{
    const char *at;
    if (m->env.mail_from && *m->env.mail_from) {
        at = strrchr(m->env.mail_from, '@');
        return at && at[1] ? at + 1 : NULL;
    }
    return m->env.helo && *m->env.helo ? m->env.helo : NULL;
}

static void auth_spf(const struct auth_ids *ids, struct dns_resolver *resolver,
                     const struct message *m, struct scan_result *r, struct auth_results *out)
{
    const char *ip = m->env.client_ip, *domain = auth_spf_domain(m), *why = NULL;
    SPF_result_t result;
    SPF_dns_server_t layer;
    SPF_server_t *spf;
    SPF_request_t *req;
    SPF_response_t *resp = NULL;
    SPF_errcode_t rc;
    char *opt;
    int id, k;

    out->spf_domain = domain ? arena_strdup(r->arena, domain) : NULL;
    if (ip == NULL || *ip == '\0') {
        out->spf = AUTH_SPF_NA;
        result_add(r, ids->spf_na, 1.0, "no client IP");
        return;
    }
    if (domain == NULL) {
        out->spf = AUTH_SPF_NA;
        result_add(r, ids->spf_na, 1.0, "no sender domain (MAIL FROM or HELO)");
        return;
    }

    memset(&layer, 0, sizeof layer);
    layer.lookup = auth_spf_lookup;
    layer.name = "mxwarden";
    layer.hook = resolver;
    spf = SPF_server_new_dns(&layer, 0);
    if (spf == NULL) {
        out->spf = AUTH_SPF_TEMPERROR;
        result_add(r, ids->spf_temperror, 1.0, "SPF library could not start");
        return;
    }
    req = SPF_request_new(spf);
    rc = strchr(ip, ':') ? SPF_request_set_ipv6_str(req, ip) : SPF_request_set_ipv4_str(req, ip);
    if (rc != SPF_E_SUCCESS) {
        out->spf = AUTH_SPF_NA;
        result_add(r, ids->spf_na, 1.0, arena_printf(r->arena, "invalid client IP %s", ip));
        goto done;
    }
    if (m->env.helo && *m->env.helo) SPF_request_set_helo_dom(req, m->env.helo);
    if (SPF_request_set_env_from(req, m->env.mail_from ? m->env.mail_from : "") != 0) {
        out->spf = AUTH_SPF_NA;
        result_add(r, ids->spf_na, 1.0, "unusable sender address");
        goto done;
    }
    rc = SPF_request_query_mailfrom(req, &resp);
    result = resp ? SPF_response_result(resp) : SPF_RESULT_TEMPERROR;
    for (k = 0; resp && k < SPF_response_messages(resp) && why == NULL; k++) {
        SPF_error_t *e = SPF_response_message(resp, k);
        if (!SPF_error_errorp(e)) continue;
        why = SPF_error_message(e);
        if (rc == SPF_E_SUCCESS) rc = SPF_error_code(e);
    }
    /* A record that does not compile leaves the result unset ("invalid"): a permerror,
       unless what failed was DNS or the library itself. */
    if (result == SPF_RESULT_INVALID)
        result = rc == SPF_E_DNS_ERROR || rc == SPF_E_NO_MEMORY || rc == SPF_E_INTERNAL_ERROR
                     ? SPF_RESULT_TEMPERROR
                     : SPF_RESULT_PERMERROR;
    switch (result) {
    case SPF_RESULT_PASS:
        out->spf = AUTH_SPF_PASS;
        id = ids->spf_allow;
        opt = arena_printf(r->arena, "%s: ip %s permitted", domain, ip);
        break;
    case SPF_RESULT_FAIL:
        out->spf = AUTH_SPF_FAIL;
        id = ids->spf_fail;
        opt = arena_printf(r->arena, "%s: ip %s not permitted", domain, ip);
        break;
    case SPF_RESULT_SOFTFAIL:
        out->spf = AUTH_SPF_SOFTFAIL;
        id = ids->spf_softfail;
        opt = arena_printf(r->arena, "%s: ip %s probably not permitted (softfail)", domain, ip);
        break;
    case SPF_RESULT_NEUTRAL:
        out->spf = AUTH_SPF_NEUTRAL;
        id = ids->spf_neutral;
        opt = arena_printf(r->arena, "%s: no statement about ip %s (neutral)", domain, ip);
        break;
    case SPF_RESULT_NONE:
        out->spf = AUTH_SPF_NONE;
        id = ids->spf_na;
        opt = arena_printf(r->arena, "%s: no SPF record", domain);
        break;
    case SPF_RESULT_PERMERROR:
        out->spf = AUTH_SPF_PERMERROR;
        id = ids->spf_permerror;
        opt = arena_printf(r->arena, "%s: invalid SPF record%s%s", domain, why ? ": " : "",
                           why ? why : "");
        break;
    default: /* TEMPERROR, INVALID */
        out->spf = AUTH_SPF_TEMPERROR;
        id = ids->spf_temperror;
        opt = arena_printf(r->arena, "%s: DNS lookup failed or timed out", domain);
        break;
    }
    result_add(r, id, 1.0, opt);
done:
    if (resp) SPF_response_free(resp);
    SPF_request_free(req);
    SPF_server_free(spf);
}

/* ---- DKIM ---- */

/* What the key lookups of one verification saw; the DKIM handle's user context. */
struct auth_dkim_ctx {
    struct dns_resolver *resolver;
    struct arena *arena;
    struct {
        const DKIM_SIGINFO *sig; /* whose key lookup failed temporarily */
        const char *domain, *selector;
    } dns_failed[AUTH_MAX_DKIM_SIGNATURES];
    size_t n_dns_failed;
};

static DKIM_CBSTAT auth_dkim_prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
    int i;
    (void)dkim;
    for (i = AUTH_MAX_DKIM_SIGNATURES; i < nsigs; i++)
        dkim_sig_ignore(sigs[i]);
    return DKIM_CBSTAT_CONTINUE;
}

/* libopendkim's key lookup: the TXT record at selector._domainkey.domain, into buf. */
static DKIM_CBSTAT auth_dkim_key_lookup(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
    struct auth_dkim_ctx *ctx = dkim_get_user_context(dkim);
    const char *sel = (const char *)dkim_sig_getselector(sig);
    const char *dom = (const char *)dkim_sig_getdomain(sig);
    struct dns_answer *a;
    char name[DNS_MAX_NAME_LEN + 2];
    DKIM_CBSTAT st;
    int n;

    if (ctx == NULL || sel == NULL || dom == NULL) return DKIM_CBSTAT_ERROR;
    n = snprintf(name, sizeof name, "%s._domainkey.%s", sel, dom);
    if (n < 0 || (size_t)n >= sizeof name) return DKIM_CBSTAT_NOTFOUND;
    a = dns_query(ctx->resolver, name, DNS_T_TXT);
    switch (a->status) {
    case DNS_OK:
        /* Several records: undefined (RFC 6376 3.6.2.2); we use the first. */
        if (a->records[0].len + 1 > buflen || memchr(a->records[0].text, '\0', a->records[0].len)) {
            st = DKIM_CBSTAT_ERROR;
        } else {
            memcpy(buf, a->records[0].text, a->records[0].len + 1);
            st = DKIM_CBSTAT_CONTINUE;
        }
        break;
    case DNS_NXDOMAIN:
    case DNS_NODATA:
        st = DKIM_CBSTAT_NOTFOUND;
        break;
    default:
        if (ctx->n_dns_failed < AUTH_MAX_DKIM_SIGNATURES) {
            ctx->dns_failed[ctx->n_dns_failed].sig = sig;
            ctx->dns_failed[ctx->n_dns_failed].domain = arena_strdup(ctx->arena, dom);
            ctx->dns_failed[ctx->n_dns_failed].selector = arena_strdup(ctx->arena, sel);
            ctx->n_dns_failed++;
        }
        st = DKIM_CBSTAT_TRYAGAIN;
        break;
    }
    dns_answer_free(a);
    return st;
}

static bool auth_dkim_dns_failed(const struct auth_dkim_ctx *ctx, const DKIM_SIGINFO *sig)
{
    size_t i;
    for (i = 0; i < ctx->n_dns_failed; i++)
        if (ctx->dns_failed[i].sig == sig) return true;
    return false;
}

/* Outcome per signature, kept for DMARC. */
struct auth_dkim_sig {
    const char *domain, *selector; /* domain "(no d=)" when has_domain is false */
    bool has_domain;
    int dmarc_outcome; /* DMARC_POLICY_DKIM_OUTCOME_* */
};

struct auth_dkim_outcome {
    struct auth_dkim_sig sigs[AUTH_MAX_DKIM_SIGNATURES];
    size_t n_sigs;
};

static void auth_dkim(const struct auth_ids *ids, struct dns_resolver *resolver, const char *raw,
                      size_t raw_len, struct scan_result *r, struct auth_results *out,
                      struct auth_dkim_outcome *dk)
{
    struct auth_dkim_ctx ctx = {.resolver = resolver, .arena = r->arena};
    struct {
        int id;
        const char *opt;
    } fails[AUTH_MAX_DKIM_SIGNATURES];
    size_t n_fails = 0, i;
    DKIM_SIGINFO **sigs = NULL;
    DKIM_STAT st;
    DKIM *d;
    int nsigs = 0, k;

    if (raw == NULL || raw_len == 0) {
        result_add(r, ids->dkim_na, 1.0, "no message data");
        return;
    }
    if (!auth_library_init()) {
        result_add(r, ids->dkim_tempfail, 1.0, "DKIM library could not start");
        return;
    }
    d = dkim_verify(auth_dkim_lib, (const unsigned char *)"mxwarden", NULL, &st);
    if (d == NULL) {
        result_add(r, ids->dkim_tempfail, 1.0, "DKIM library could not start");
        return;
    }
    dkim_set_user_context(d, &ctx);
    /* dkim_chunk() only reads the buffer; its prototype lacks the const. */
    st = dkim_chunk(d, (unsigned char *)(uintptr_t)raw, raw_len);
    if (st == DKIM_STAT_OK) st = dkim_chunk(d, NULL, 0);
    if (st == DKIM_STAT_OK) st = dkim_eom(d, NULL);
    if (st == DKIM_STAT_NOSIG) {
        result_add(r, ids->dkim_na, 1.0, "no signature");
        goto done;
    }
    if (st == DKIM_STAT_CBTRYAGAIN && ctx.n_dns_failed > 0) {
        /* libopendkim gives up at the first key it could not fetch: report those. */
        out->dkim_signed = true;
        for (i = 0; i < ctx.n_dns_failed; i++) {
            struct auth_dkim_sig *s = &dk->sigs[dk->n_sigs++];
            s->domain = ctx.dns_failed[i].domain;
            s->has_domain = true;
            s->selector = ctx.dns_failed[i].selector;
            s->dmarc_outcome = DMARC_POLICY_DKIM_OUTCOME_TMPFAIL;
            result_add(r, ids->dkim_tempfail, 1.0,
                       arena_printf(r->arena,
                                    "%s: DNS lookup of key %s._domainkey.%s failed or timed out",
                                    s->domain, s->selector, s->domain));
        }
        goto done;
    }
    if (dkim_getsiglist(d, &sigs, &nsigs) != DKIM_STAT_OK || nsigs == 0) {
        result_add(r, ids->dkim_na, 1.0,
                   st == DKIM_STAT_SYNTAX ? "message cannot be parsed for DKIM" : "no signature");
        goto done;
    }
    for (k = 0; k < nsigs && dk->n_sigs < AUTH_MAX_DKIM_SIGNATURES; k++) {
        DKIM_SIGINFO *sig = sigs[k];
        const char *dom = (const char *)dkim_sig_getdomain(sig);
        const char *sel = (const char *)dkim_sig_getselector(sig);
        struct auth_dkim_sig *s = &dk->sigs[dk->n_sigs++];
        int err = dkim_sig_geterror(sig), id;
        const char *opt;

        if (dkim_sig_getflags(sig) & DKIM_SIGFLAG_IGNORE) {
            dk->n_sigs--;
            continue;
        }
        out->dkim_signed = true;
        s->has_domain = dom != NULL && *dom != '\0';
        s->domain = s->has_domain ? arena_strdup(r->arena, dom) : "(no d=)";
        s->selector = sel ? arena_strdup(r->arena, sel) : "";
        s->dmarc_outcome = DMARC_POLICY_DKIM_OUTCOME_FAIL;
        if (DKIM_SIG_CHECK(sig)) {
            s->dmarc_outcome = DMARC_POLICY_DKIM_OUTCOME_PASS;
            out->dkim_pass_domains[out->n_dkim_pass++] = s->domain;
            result_add(
                r, ids->dkim_allow, 1.0,
                arena_printf(r->arena, "%s: signature verified (s=%s)", s->domain, s->selector));
            continue;
        }
        if (auth_dkim_dns_failed(&ctx, sig) || err == DKIM_SIGERROR_KEYFAIL) {
            s->dmarc_outcome = DMARC_POLICY_DKIM_OUTCOME_TMPFAIL;
            id = ids->dkim_tempfail;
            opt =
                arena_printf(r->arena, "%s: DNS lookup of key %s._domainkey.%s failed or timed out",
                             s->domain, s->selector, s->domain);
        } else if (dkim_sig_getbh(sig) == DKIM_SIGBH_MISMATCH) {
            id = ids->dkim_reject;
            opt = arena_printf(r->arena, "%s: body altered after signing (body hash mismatch)",
                               s->domain);
        } else if (err == DKIM_SIGERROR_NOKEY) {
            id = ids->dkim_permfail;
            opt = arena_printf(r->arena, "%s: no key at %s._domainkey.%s", s->domain, s->selector,
                               s->domain);
        } else if (err != DKIM_SIGERROR_OK && err != DKIM_SIGERROR_BADSIG) {
            const char *why = dkim_sig_geterrorstr(err);
            id = ids->dkim_permfail;
            opt = arena_printf(r->arena, "%s: %s", s->domain, why ? why : "unusable signature");
        } else if (!(dkim_sig_getflags(sig) & DKIM_SIGFLAG_PROCESSED)) {
            id = ids->dkim_permfail;
            opt = arena_printf(r->arena, "%s: signature not processed", s->domain);
        } else {
            id = ids->dkim_reject;
            opt = arena_printf(r->arena, "%s: signature does not verify", s->domain);
        }
        fails[n_fails].id = id;
        fails[n_fails].opt = opt;
        n_fails++;
    }
    /* One passing signature is what counts; broken extra ones (mailing lists) are not scored. */
    if (out->n_dkim_pass == 0) {
        for (i = 0; i < n_fails; i++)
            result_add(r, fails[i].id, 1.0, fails[i].opt);
        if (n_fails == 0) result_add(r, ids->dkim_na, 1.0, "no usable signature");
    }
done:
    dkim_free(d);
}

/* ---- DMARC ---- */

/* True if s is a DMARC record: "v=DMARC1" then ';', space or the end. */
static bool auth_is_dmarc_record(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    if (strncasecmp(s, "v", 1) != 0) return false;
    s++;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s++ != '=') return false;
    while (*s == ' ' || *s == '\t')
        s++;
    if (strncmp(s, "DMARC1", 6) != 0) return false;
    s += 6;
    return *s == '\0' || *s == ';' || *s == ' ' || *s == '\t';
}

enum auth_dmarc_fetch { AUTH_DMARC_FOUND, AUTH_DMARC_NONE, AUTH_DMARC_DNS_FAILED };

/* The DMARC record at _dmarc.domain into *record (arena string). */
static enum auth_dmarc_fetch auth_dmarc_fetch(struct dns_resolver *resolver, struct arena *arena,
                                              const char *domain, const char **record)
{
    char name[DNS_MAX_NAME_LEN + 2];
    struct dns_answer *a;
    enum auth_dmarc_fetch res = AUTH_DMARC_NONE;
    size_t i, found = 0;
    int n = snprintf(name, sizeof name, "_dmarc.%s", domain);

    if (n < 0 || (size_t)n >= sizeof name) return AUTH_DMARC_NONE;
    a = dns_query(resolver, name, DNS_T_TXT);
    if (a->status == DNS_OK) {
        for (i = 0; i < a->n_records; i++) {
            if (!auth_is_dmarc_record(a->records[i].text)) continue;
            if (found++ == 0) *record = arena_strdup(arena, a->records[i].text);
        }
        /* More than one record: as if none were published (RFC 7489 6.6.3). */
        res = found == 1 ? AUTH_DMARC_FOUND : AUTH_DMARC_NONE;
    } else if (a->status != DNS_NXDOMAIN && a->status != DNS_NODATA) {
        res = AUTH_DMARC_DNS_FAILED;
    }
    dns_answer_free(a);
    return res;
}

static const char *auth_policy_name(int p)
{
    switch (p) {
    case DMARC_RECORD_P_REJECT:
        return "reject";
    case DMARC_RECORD_P_QUARANTINE:
        return "quarantine";
    case DMARC_RECORD_P_NONE:
        return "none";
    }
    return "none";
}

static void auth_dmarc(const struct auth_ids *ids, struct dns_resolver *resolver,
                       const struct message *m, struct scan_result *r, struct auth_results *out,
                       const struct auth_dkim_outcome *dk)
{
    const char *from = m->from_domain, *record = NULL, *org, *policy_domain;
    enum auth_dmarc_fetch f;
    DMARC_POLICY_T *pctx;
    const char *ip = m->env.client_ip && *m->env.client_ip ? m->env.client_ip : "0.0.0.0";
    int policy, p = 0, sp = 0, pct = 100, dkim_align = 0, spf_align = 0, id;
    double weight = 1.0;
    bool is_sub;
    size_t i;

    out->from_domain = from ? arena_strdup(r->arena, from) : NULL;
    if (from == NULL || *from == '\0') {
        result_add(r, ids->dmarc_na, 1.0, "no From: domain");
        return;
    }
    f = auth_dmarc_fetch(resolver, r->arena, from, &record);
    policy_domain = from;
    org = url_registrable_domain(r->arena, from);
    is_sub = org != NULL && strcmp(org, from) != 0;
    if (f == AUTH_DMARC_NONE && is_sub) {
        f = auth_dmarc_fetch(resolver, r->arena, org, &record);
        policy_domain = org;
    }
    if (f == AUTH_DMARC_DNS_FAILED) {
        out->dmarc = AUTH_DMARC_TEMPFAIL;
        result_add(r, ids->dmarc_tempfail, 1.0,
                   arena_printf(r->arena, "%s: DNS lookup of _dmarc.%s failed or timed out", from,
                                policy_domain));
        return;
    }
    if (f == AUTH_DMARC_NONE) {
        result_add(r, ids->dmarc_na, 1.0, arena_printf(r->arena, "%s: no DMARC record", from));
        return;
    }
    auth_library_init();
    pctx = opendmarc_policy_connect_init((u_char *)(uintptr_t)ip, strchr(ip, ':')
                                                                      ? DMARC_POLICY_IP_TYPE_IPV6
                                                                      : DMARC_POLICY_IP_TYPE_IPV4);
    if (pctx == NULL) {
        out->dmarc = AUTH_DMARC_TEMPFAIL;
        result_add(r, ids->dmarc_tempfail, 1.0, "DMARC library could not start");
        return;
    }
    opendmarc_policy_store_from_domain(pctx, (u_char *)(uintptr_t)from);
    if (opendmarc_policy_store_dmarc(pctx, (u_char *)(uintptr_t)record, (u_char *)(uintptr_t)from,
                                     policy_domain == from ? NULL
                                                           : (u_char *)(uintptr_t)policy_domain) !=
        DMARC_PARSE_OKAY) {
        out->dmarc = AUTH_DMARC_PERMFAIL;
        result_add(
            r, ids->dmarc_permfail, 1.0,
            arena_printf(r->arena, "%s: invalid DMARC record at _dmarc.%s", from, policy_domain));
        goto done;
    }
    if (out->spf_domain != NULL && out->spf != AUTH_SPF_NA) {
        int outcome = out->spf == AUTH_SPF_PASS        ? DMARC_POLICY_SPF_OUTCOME_PASS
                      : out->spf == AUTH_SPF_TEMPERROR ? DMARC_POLICY_SPF_OUTCOME_TMPFAIL
                      : out->spf == AUTH_SPF_NONE      ? DMARC_POLICY_SPF_OUTCOME_NONE
                                                       : DMARC_POLICY_SPF_OUTCOME_FAIL;
        bool helo = m->env.mail_from == NULL || *m->env.mail_from == '\0';
        opendmarc_policy_store_spf(
            pctx, (u_char *)(uintptr_t)out->spf_domain, outcome,
            helo ? DMARC_POLICY_SPF_ORIGIN_HELO : DMARC_POLICY_SPF_ORIGIN_MAILFROM, NULL);
    }
    for (i = 0; i < dk->n_sigs; i++)
        if (dk->sigs[i].has_domain)
            opendmarc_policy_store_dkim(pctx, (u_char *)(uintptr_t)dk->sigs[i].domain,
                                        (u_char *)(uintptr_t)dk->sigs[i].selector,
                                        dk->sigs[i].dmarc_outcome, NULL);

    policy = opendmarc_get_policy_to_enforce(pctx);
    opendmarc_policy_fetch_p(pctx, &p);
    opendmarc_policy_fetch_sp(pctx, &sp);
    opendmarc_policy_fetch_pct(pctx, &pct);
    opendmarc_policy_fetch_alignment(pctx, &dkim_align, &spf_align);
    /* sp= applies to subdomains of the domain whose record we found. */
    out->dmarc_policy =
        auth_policy_name(policy_domain != from && sp != DMARC_RECORD_P_UNSPECIFIED ? sp : p);

    switch (policy) {
    case DMARC_POLICY_PASS:
        out->dmarc = AUTH_DMARC_PASS;
        result_add(r, ids->dmarc_allow, 1.0,
                   arena_printf(r->arena, "%s: %s aligned", from,
                                dkim_align == DMARC_POLICY_DKIM_ALIGNMENT_PASS ? "DKIM" : "SPF"));
        goto done;
    case DMARC_POLICY_REJECT:
        out->dmarc = AUTH_DMARC_REJECT;
        id = ids->dmarc_reject;
        if (pct < 100) { /* not every message is sampled: the next lower policy (RFC 7489 6.6.4) */
            out->dmarc = AUTH_DMARC_QUARANTINE;
            id = ids->dmarc_quarantine;
        }
        break;
    case DMARC_POLICY_QUARANTINE:
        out->dmarc = AUTH_DMARC_QUARANTINE;
        id = ids->dmarc_quarantine;
        if (pct < 100) weight = pct > 0 ? pct / 100.0 : 0.0;
        break;
    case DMARC_POLICY_NONE:
        out->dmarc = AUTH_DMARC_SOFTFAIL;
        id = ids->dmarc_softfail;
        break;
    default: /* ABSENT or a parse error found late */
        out->dmarc = AUTH_DMARC_PERMFAIL;
        result_add(r, ids->dmarc_permfail, 1.0,
                   arena_printf(r->arena, "%s: unusable DMARC record (%s)", from,
                                opendmarc_policy_status_to_str(policy)));
        goto done;
    }
    result_add(
        r, id, weight,
        arena_printf(r->arena, "%s: p=%s%s, SPF %s, DKIM %s", from, out->dmarc_policy,
                     pct < 100 ? arena_printf(r->arena, " pct=%d", pct) : "",
                     spf_align == DMARC_POLICY_SPF_ALIGNMENT_PASS ? "aligned" : "not aligned",
                     dkim_align == DMARC_POLICY_DKIM_ALIGNMENT_PASS ? "aligned" : "not aligned"));
done:
    opendmarc_policy_connect_shutdown(pctx);
}

void auth_check(const struct auth_ids *ids, struct dns_resolver *resolver, const struct message *m,
                const char *raw, size_t raw_len, struct scan_result *r, struct auth_results *out)
{
    struct auth_results local;
    struct auth_dkim_outcome dk;

    if (out == NULL) out = &local;
    memset(out, 0, sizeof *out);
    memset(&dk, 0, sizeof dk);
    auth_spf(ids, resolver, m, r, out);
    auth_dkim(ids, resolver, raw, raw_len, r, out, &dk);
    auth_dmarc(ids, resolver, m, r, out, &dk);
}
