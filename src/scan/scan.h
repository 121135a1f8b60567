/*
 * scan - the pipeline every entry point calls: parse, checks, score, action.
 *
 * A scanner holds what scans share read-only: the configuration, the symbol
 * registry and each check's symbol ids (later: rules, models, settings).
 * Build one with scanner_new() before starting threads. Each thread then
 * makes its own scan_worker (its connections to the stores and scratch
 * space) and calls scan_message() with it.
 *
 * The milter, the HTTP API, the spamd/rspamd protocols and `mxwarden scan`
 * all go through scan_message(), so a verdict never depends on how the
 * message arrived.
 */
#ifndef MXW_SCAN_H
#define MXW_SCAN_H

#include <stdbool.h>
#include <stddef.h>

#include "checks/auth.h"
#include "message/message.h"
#include "scan/result.h"

struct config;
struct scanner;
struct scan_worker;

/* A scanner with the built-in checks registered; cfg NULL means the defaults. Free with
 * scanner_free() after every worker is freed. */
struct scanner *scanner_new(const struct config *cfg);
void scanner_free(struct scanner *s);
const struct symbol_registry *scanner_symbols(const struct scanner *s);
const struct config *scanner_config(const struct scanner *s);
/* The compiled rules of [rules] paths (rule_engine.h). */
const struct rule_engine *scanner_rules(const struct scanner *s);

/* Per-thread state. The stores are opened on first use; if they cannot be,
 * scans still complete and say so in the report. Never NULL. */
struct scan_worker *scan_worker_new(const struct scanner *s);
void scan_worker_free(struct scan_worker *w);
/* Whether this worker records its verdicts into reputation (off by default: the
 * daemon turns it on; one-off scans from the command line should not teach). */
void scan_worker_record_verdicts(struct scan_worker *w, bool on);
/*
 * With verdicts recorded, a scan does not write them itself: it keeps them in
 * the worker until this call commits them (one transaction; a failure is
 * logged and they are dropped: reputation is statistics, not mail). The
 * gateway calls it after its reply went to the MTA, so the store's commit (a
 * disk sync with LMDB) is not part of the SMTP latency. scan_message() and
 * scan_worker_free() flush what is still pending first, so nothing waits
 * longer than until the worker's next scan.
 */
void scan_worker_flush(struct scan_worker *w);
/* The worker's state store (kv.h), opened on first use; NULL (with err_set) if it cannot be
 * opened now. Greylisting and rate limits share it with Bayes and reputation. */
struct kv *scan_worker_kv(struct scan_worker *w);
/* The worker's Bayes classifier, or NULL (with err_set) if its store cannot be opened. */
struct bayes *scan_worker_bayes(struct scan_worker *w);

struct scan {
    struct message *message; /* the parsed message, owned by the scan */
    struct scan_result result;
    struct auth_results auth; /* SPF/DKIM/DMARC outcome (all "not checked" when auth is off) */
};

/*
 * Scans data[0..len) with the envelope env (may be NULL). Never fails and
 * never returns NULL; the caller keeps ownership of data, which must stay
 * valid only for the duration of the call. Free with scan_free().
 */
struct scan *scan_message(struct scan_worker *w, const char *data, size_t len,
                          const struct envelope *env);

struct dnsbl_lookup;
struct dnsbl_pending;
struct dnsbl_pool;
/*
 * Starts looking the client address up in the IP block lists, for a caller
 * that knows it before the message (the milter, at connect), and returns at
 * once: the lookup runs on pool's threads (checks/dnsbl_async.h) with this
 * scanner's lists and [dns] settings, within the DNS budget of one scan from
 * now. NULL when block lists are off, the worker has no resolver or there is
 * no address. Wait for it with dnsbl_pending_wait() and free it with
 * dnsbl_pending_free() (any thread); it keeps the lists it uses alive itself.
 */
struct dnsbl_pending *scan_worker_dnsbl_begin(struct scan_worker *w, struct dnsbl_pool *pool,
                                              const char *client_ip);
/*
 * scan_message() for a client looked up already: client_lookup (may be NULL:
 * then as scan_message()) gives the IP lists' answers, and the scan does not
 * ask them again; URL domains are still looked up per message.
 */
struct scan *scan_message_looked_up(struct scan_worker *w, const char *data, size_t len,
                                    const struct envelope *env,
                                    const struct dnsbl_lookup *client_lookup);
void scan_free(struct scan *sc);

#endif
