/*
 * auth - sender authentication: SPF (libspf2), DKIM (libopendkim) and DMARC
 * (libopendmarc), every DNS lookup through the scan's dns_resolver.
 *
 * Symbols (group "auth"); each hit's options say the domain and the detail,
 * e.g. "example.org: ip 10.0.0.1 not permitted":
 *   SPF_ALLOW, SPF_FAIL, SPF_SOFTFAIL, SPF_NEUTRAL, SPF_NA (no record, or no
 *   client IP / sender to check), SPF_TEMPERROR (DNS failed), SPF_PERMERROR
 *   (broken record);
 *   DKIM_ALLOW, DKIM_REJECT (signature does not verify), DKIM_TEMPFAIL (key
 *   lookup failed), DKIM_PERMFAIL (key missing/revoked/malformed, broken
 *   signature header), DKIM_NA (no signature);
 *   DMARC_ALLOW, DMARC_REJECT, DMARC_QUARANTINE, DMARC_SOFTFAIL (not aligned,
 *   p=none), DMARC_NA (no policy or no From domain), DMARC_TEMPFAIL (DNS
 *   failed), DMARC_PERMFAIL (invalid record).
 * DKIM: when one signature passes, failing extra signatures (common after
 * mailing lists) are not scored. DMARC: p= (or sp= for subdomains) decides;
 * with pct below 100 a reject policy scores as quarantine.
 *
 * Time: all lookups share the resolver's scan budget, which the caller
 * starts with dns_begin_scan(); when it is spent the remaining checks say
 * _TEMPERROR/_TEMPFAIL and auth_check() returns.
 *
 * Threads: auth_check() may run in many threads at once, each with its own
 * resolver. The libraries are set up on first use; auth_library_shutdown()
 * releases them (for leak-free test runs, after all threads are done).
 */
#ifndef MXW_AUTH_H
#define MXW_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct dns_resolver;
struct message;
struct scan_result;
struct symbol_registry;

#define AUTH_MAX_DKIM_SIGNATURES 8 /* signatures beyond these are ignored */

struct auth_ids {
    int spf_allow, spf_fail, spf_softfail, spf_neutral, spf_na, spf_temperror, spf_permerror;
    int dkim_allow, dkim_reject, dkim_tempfail, dkim_permfail, dkim_na;
    int dmarc_allow, dmarc_reject, dmarc_quarantine, dmarc_softfail, dmarc_na, dmarc_tempfail,
        dmarc_permfail;
};

enum auth_spf_result {
    AUTH_SPF_NA, /* not checked: no client IP, or no sender domain */
    AUTH_SPF_PASS,
    AUTH_SPF_FAIL,
    AUTH_SPF_SOFTFAIL,
    AUTH_SPF_NEUTRAL,
    AUTH_SPF_NONE, /* the domain publishes no SPF record */
    AUTH_SPF_TEMPERROR,
    AUTH_SPF_PERMERROR,
};

enum auth_dmarc_result {
    AUTH_DMARC_NA, /* no From domain, or no DMARC record */
    AUTH_DMARC_PASS,
    AUTH_DMARC_REJECT,
    AUTH_DMARC_QUARANTINE,
    AUTH_DMARC_SOFTFAIL, /* failed, but the policy is p=none */
    AUTH_DMARC_TEMPFAIL,
    AUTH_DMARC_PERMFAIL,
};

/* What auth_check() found, for later checks (forged sender, reputation). Strings: r->arena. */
struct auth_results {
    enum auth_spf_result spf;
    const char *spf_domain; /* the domain SPF checked (MAIL FROM, else HELO), or NULL */
    bool dkim_signed;       /* at least one DKIM-Signature was examined */
    const char *dkim_pass_domains[AUTH_MAX_DKIM_SIGNATURES]; /* d= of passing signatures */
    size_t n_dkim_pass;
    enum auth_dmarc_result dmarc;
    const char *dmarc_policy; /* "reject", "quarantine", "none", or NULL without a record */
    const char *from_domain;  /* the From: header's domain, or NULL */
};

/* Registers the auth symbols with their default scores and keeps their ids in *ids. */
void auth_register(struct symbol_registry *reg, struct auth_ids *ids);

/*
 * Checks SPF for the envelope (m->env: client_ip, helo, mail_from), DKIM over
 * raw[0..raw_len) (the message exactly as received), and DMARC for the From
 * domain, adding hits to r. If out is not NULL it receives the results (its
 * strings belong to r->arena). Never fails: what cannot be checked is a
 * _NA/_TEMPERROR hit.
 */
void auth_check(const struct auth_ids *ids, struct dns_resolver *resolver, const struct message *m,
                const char *raw, size_t raw_len, struct scan_result *r, struct auth_results *out);

/* Releases the process-wide library state; auth_check() sets it up again if called later. */
void auth_library_shutdown(void);

#endif
