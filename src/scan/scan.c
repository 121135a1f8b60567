/*
 * scan - the scan pipeline. See scan.h.
 */
#include "scan/scan.h"
#include "checks/allowlist.h"
#include "checks/bayes_check.h"
#include "checks/dns.h"
#include "checks/dnsbl.h"
#include "checks/dnsbl_async.h"
#include "checks/heuristics.h"
#include "checks/reputation.h"
#include "checks/rule_engine.h"
#include "checks/rules.h"
#include "checks/structure.h"
#include "checks/symbols.h"
#include "core/arena.h"
#include "core/config.h"
#include "core/file.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "scan/settings.h"
#include "stat/bayes.h"
#include "store/db.h"
#include "store/kv.h"
#include "text/features.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A worker that could not open its store tries again after this long: the pace at which the
 * Redis backend reconnects a store it had, so a worker that first met a Redis restart is not
 * the last to come back. */
#define SCAN_STORE_RETRY_SECONDS 1

struct scanner {
    struct config cfg;
    struct symbol_registry *symbols;
    struct structure_ids structure;
    struct bayes_check_ids bayes;
    struct rule_set *rules;
    struct rule_engine *engine;
    struct reputation_ids reputation;
    struct reputation_config reputation_cfg;
    struct allowlist *allow;
    struct settings_cache *settings;
    struct auth_ids auth;
    struct heuristics_ids heuristics;
    struct dnsbl *dnsbl; /* NULL when off */
};

struct scan_worker {
    const struct scanner *scanner;
    struct kv *kv;
    struct bayes *bayes;
    time_t next_open_attempt;
    struct rule_scratch *rule_scratch;
    bool record_verdicts; /* feed reputation with this worker's verdicts (the daemon does) */
    struct kv_batch *pending; /* verdicts not yet committed (scan_worker_flush) */
    struct settings_ref settings_ref;
    struct dns_resolver *dns; /* NULL when auth is off or the resolver could not start */
};

/*
 * Reads every rule file and directory of [rules] paths, in order, and
 * compiles them. A path that cannot be read is logged and skipped: the
 * scanner still works with the built-in checks and whatever did load.
 */
static void scanner_load_rules(struct scanner *s)
{
    struct rule_engine_options opt = {(int)s->cfg.rules_score_set,
                                      s->cfg.rules_cache_dir[0] ? s->cfg.rules_cache_dir : NULL};
    char paths[CONFIG_MAX_VALUE], *save = NULL, *p;
    struct rule_engine_stats st;

    s->rules = rules_new();
    snprintf(paths, sizeof paths, "%s", s->cfg.rules_paths);
    for (p = strtok_r(paths, " \t", &save); p; p = strtok_r(NULL, " \t", &save)) {
        int rc = file_is_dir(p) ? rules_load_dir(s->rules, p) : rules_load_file(s->rules, p);
        if (rc != 0) log_warn("msg=\"rules not loaded\" path=%s reason=\"%s\"", p, err_msg());
    }
    s->engine = rule_engine_new(s->rules, s->symbols, &opt);
    rule_engine_stats(s->engine, &st);
    log_info("msg=\"rules ready\" rules=%zu disabled=%zu unused_subrules=%zu hyperscan=%zu "
             "pcre2=%zu failed=%zu metas=%zu",
             st.rules, st.disabled, st.unused, st.hyperscan, st.pcre2, st.failed, st.metas);
    /* Each problem was logged at info with its file and line; one line says there were some. */
    if (st.failed || st.meta_bad || rules_warning_count(s->rules))
        log_warn("msg=\"rules loaded with problems; `mxwarden rules check` lists them\" "
                 "warnings=%zu regexes_failed=%zu metas_dropped=%zu",
                 rules_warning_count(s->rules), st.failed, st.meta_bad);
}

/* Thresholds per domain and address from the records database; the defaults if it cannot
 * be read (logged), so scanning never stops for it. */
static void scanner_load_settings(struct scanner *s)
{
    struct db *db = NULL;
    if (db_open(s->cfg.db_uri, &db) != DB_OK || settings_cache_reload(s->settings, db) != 0)
        log_warn("msg=\"settings not loaded; default thresholds apply\" db=%s reason=\"%s\"",
                 s->cfg.db_uri, err_msg());
    db_close(db);
}

struct scanner *scanner_new(const struct config *cfg)
{
    struct scanner *s = xcalloc(1, sizeof *s);
    if (cfg)
        s->cfg = *cfg;
    else
        config_defaults(&s->cfg);
    s->symbols = symbols_new();
    structure_register(s->symbols, &s->structure);
    bayes_check_register(s->symbols, &s->bayes);
    auth_register(s->symbols, &s->auth);
    heuristics_register(s->symbols, &s->heuristics);
    if (s->cfg.dnsbl_enabled) {
        struct dnsbl_config dc = {.lists = s->cfg.dnsbl_lists, .disabled = s->cfg.dnsbl_disabled};
        s->dnsbl = dnsbl_new(&dc);
        if (s->dnsbl == NULL)
            log_error("msg=\"[dnsbl] not usable; blocklists are off\" reason=\"%s\"", err_msg());
        else if (dnsbl_register(s->dnsbl, s->symbols) != 0)
            log_error("msg=\"blocklist symbols not registered\" reason=\"%s\"", err_msg());
    }
    reputation_register(s->symbols, &s->reputation);
    s->reputation_cfg = reputation_config_default();
    s->reputation_cfg.min_volume = s->cfg.reputation_min_volume;
    s->reputation_cfg.full_volume = s->cfg.reputation_full_volume;
    s->reputation_cfg.max_url_domains = s->cfg.reputation_max_url_domains;
    s->allow = allowlist_parse(s->cfg.reputation_allow);
    if (s->allow == NULL) {
        /* Never silently: every scan would penalise partners the operator meant to protect. */
        log_error("msg=\"[reputation] allow is invalid; no sender is allowed\" reason=\"%s\"",
                  err_msg());
        s->allow = allowlist_parse(NULL);
    }
    scanner_load_rules(s);
    s->settings = settings_cache_new();
    scanner_load_settings(s);
    return s;
}

void scanner_free(struct scanner *s)
{
    if (s == NULL) return;
    rule_engine_free(s->engine);
    rules_free(s->rules);
    allowlist_free(s->allow);
    dnsbl_free(s->dnsbl);
    settings_cache_free(s->settings);
    symbols_free(s->symbols);
    free(s);
}

const struct symbol_registry *scanner_symbols(const struct scanner *s)
{
    return s->symbols;
}

const struct rule_engine *scanner_rules(const struct scanner *s)
{
    return s->engine;
}

const struct config *scanner_config(const struct scanner *s)
{
    return &s->cfg;
}

/* The resolver settings of [dns]. */
static void scanner_dns_config(const struct scanner *s, struct dns_config *dc)
{
    memset(dc, 0, sizeof *dc);
    dc->port = (int)s->cfg.dns_port;
    dc->timeout_ms = s->cfg.dns_timeout_ms;
    dc->cache_entries = s->cfg.dns_cache_entries;
    snprintf(dc->server, sizeof dc->server, "%s", s->cfg.dns_server);
}

struct scan_worker *scan_worker_new(const struct scanner *s)
{
    struct scan_worker *w = xcalloc(1, sizeof *w);
    w->scanner = s;
    w->rule_scratch = rule_scratch_new(s->engine);
    if (s->cfg.auth_enabled || s->dnsbl) {
        struct dns_config dc;
        scanner_dns_config(s, &dc);
        w->dns = dns_resolver_new(&dc);
        if (w->dns == NULL)
            log_error("msg=\"DNS resolver not started; SPF, DKIM, DMARC and blocklists are off\" "
                      "reason=\"%s\"",
                      err_msg());
    }
    return w;
}

void scan_worker_free(struct scan_worker *w)
{
    if (w == NULL) return;
    scan_worker_flush(w);
    kv_batch_free(w->pending);
    bayes_free(w->bayes);
    kv_close(w->kv);
    rule_scratch_free(w->rule_scratch);
    dns_resolver_free(w->dns);
    settings_ref_drop(w->scanner->settings, &w->settings_ref);
    free(w);
}

struct kv *scan_worker_kv(struct scan_worker *w)
{
    return scan_worker_bayes(w) ? w->kv : NULL;
}

void scan_worker_record_verdicts(struct scan_worker *w, bool on)
{
    w->record_verdicts = on;
}

void scan_worker_flush(struct scan_worker *w)
{
    if (w->pending == NULL || kv_batch_size(w->pending) == 0) return;
    if (w->kv == NULL || kv_batch_commit(w->kv, w->pending) != KV_OK)
        log_warn("msg=\"reputation not recorded\" reason=\"%s\"",
                 w->kv ? err_msg() : "the kv store is not open");
    kv_batch_clear(w->pending);
}

struct bayes *scan_worker_bayes(struct scan_worker *w)
{
    const struct config *cfg = &w->scanner->cfg;
    struct bayes_config bc = {cfg->bayes_min_learns, cfg->bayes_min_learns_class,
                              cfg->bayes_per_tenant};
    time_t now;

    if (w->bayes) return w->bayes;
    now = time(NULL);
    if (now < w->next_open_attempt) {
        err_set("store %s could not be opened; retrying later", cfg->kv_uri);
        return NULL;
    }
    if (kv_open(cfg->kv_uri, &w->kv) != KV_OK) {
        /* Not every scan should pay for a failing open: retry after a pause. */
        log_warn("msg=\"cannot open the token store\" uri=%s reason=\"%s\"", cfg->kv_uri,
                 err_msg());
        w->kv = NULL;
        w->next_open_attempt = now + SCAN_STORE_RETRY_SECONDS;
        return NULL;
    }
    w->bayes = bayes_new(w->kv, &bc);
    return w->bayes;
}

/* The tenant of a message: the domain of its first envelope recipient. */
static const char *scan_tenant(const struct message *m)
{
    const char *at;
    if (m->env.n_rcpt == 0 || m->env.rcpt[0] == NULL) return NULL;
    at = strrchr(m->env.rcpt[0], '@');
    return at && at[1] ? at + 1 : NULL;
}

/*
 * The action by the recipients' thresholds (settings.h says how several
 * recipients decide together), and the decider's tagging preferences.
 */
static void scan_decide(const struct scanner *s, struct scan_worker *w, struct scan *sc)
{
    const struct message *m = sc->message;
    const struct settings *st = settings_cache_pin(s->settings, &w->settings_ref);
    struct settings_decision d;

    settings_action_for_recipients(st, sc->result.score, m->env.rcpt, m->env.n_rcpt, &d);
    /* decided_by is one of m's recipients (arena) or a literal; the settings strings belong to
     * the snapshot, which may be replaced before the caller is done: copy them. */
    result_set_action(&sc->result, d.action, &d.thresholds, d.decided_by);
    sc->result.subject_prefix = arena_strdup(m->arena, d.settings->subject_prefix);
    sc->result.add_report_header = d.settings->add_report_header;
}

/*
 * Feeds reputation with this scan's verdict, judged on the score without
 * reputation's own symbols so that it cannot reinforce itself: spam when the
 * message is held or rejected on the other evidence, ham when it is delivered
 * with a low score; anything between teaches nothing.
 */
static void scan_record_verdict(const struct scanner *s, struct scan_worker *w,
                                const struct scan *sc, const struct reputation_entities *ents,
                                time_t now, const struct thresholds *t)
{
    double base = sc->result.score - reputation_result_score(&s->reputation, &sc->result);
    enum reputation_verdict v;
    if (sc->result.action >= ACTION_QUARANTINE && base > t->quarantine)
        v = REPUTATION_VERDICT_SPAM;
    else if (sc->result.action == ACTION_DELIVER && base <= s->cfg.reputation_record_ham_below)
        v = REPUTATION_VERDICT_HAM;
    else
        return;
    if (w->pending == NULL) w->pending = kv_batch_new();
    reputation_record_into(w->pending, ents, v, now, allowlist_reputation, s->allow);
}

struct dnsbl_pending *scan_worker_dnsbl_begin(struct scan_worker *w, struct dnsbl_pool *pool,
                                              const char *client_ip)
{
    const struct scanner *s = w->scanner;
    struct dns_config dc;
    if (s->dnsbl == NULL || w->dns == NULL || client_ip == NULL || *client_ip == '\0')
        return NULL;
    scanner_dns_config(s, &dc);
    return dnsbl_ip_begin(pool, s->dnsbl, &dc, s->cfg.dns_budget_ms, client_ip);
}

struct scan *scan_message(struct scan_worker *w, const char *data, size_t len,
                          const struct envelope *env)
{
    return scan_message_looked_up(w, data, len, env, NULL);
}

struct scan *scan_message_looked_up(struct scan_worker *w, const char *data, size_t len,
                                    const struct envelope *env,
                                    const struct dnsbl_lookup *client_lookup)
{
    const struct scanner *s = w->scanner;
    struct message *m;
    struct scan *sc;
    struct thresholds t = thresholds_default();
    struct bayes *bayes = scan_worker_bayes(w);
    struct bayes_result br;
    struct features f;
    struct reputation_entities ents;
    time_t now = env && env->arrival_unix ? (time_t)env->arrival_unix : time(NULL);
    int rc = -1;

    scan_worker_flush(w); /* an earlier scan's verdicts, if nobody flushed them */
    m = message_parse(data, len, env);
    sc = arena_calloc(m->arena, 1, sizeof *sc);
    sc->message = m;
    result_init(&sc->result, m->arena, s->symbols);
    structure_check(&s->structure, m, &sc->result);
    if (w->dns) dns_begin_scan(w->dns, s->cfg.dns_budget_ms);
    if (w->dns && s->cfg.auth_enabled)
        auth_check(&s->auth, w->dns, m, data, len, &sc->result, &sc->auth);
    if (w->dns && s->dnsbl) {
        /* The client's address against the IP lists, the message's URL domains against the
         * domain lists; all queries in parallel, within the scan's DNS budget. */
        if (client_lookup) {
            dnsbl_lookup_collect(client_lookup, NULL, &sc->result);
        } else if (m->env.client_ip) {
            struct dnsbl_lookup *l = dnsbl_ip_start(s->dnsbl, w->dns, m->env.client_ip);
            dnsbl_lookup_collect(l, NULL, &sc->result);
            dnsbl_lookup_free(l);
        }
        dnsbl_check_message_urls(s->dnsbl, w->dns, m, NULL, &sc->result);
    }
    heuristics_check(&s->heuristics, m, sc->auth.dkim_pass_domains, sc->auth.n_dkim_pass,
                     (long long)now, &sc->result);
    /* Bayes reads words and metadata only (stat/bayes.c): no OSB pairs to compute. */
    features_extract_opts(m->arena, m, &f, FEATURES_NO_PAIRS, NULL, NULL);
    if (bayes) rc = bayes_classify(bayes, &f, scan_tenant(m), &br);
    bayes_check_symbols(&s->bayes, rc, &br, &sc->result);
    if (rc == 0 && br.ready) {
        sc->result.bayes_ready = true;
        sc->result.bayes_p_spam = br.p_spam;
    }
    if (s->cfg.reputation_enabled) {
        reputation_entities_extract(m->arena, m, s->reputation_cfg.max_url_domains, &ents);
        reputation_check(&s->reputation, &s->reputation_cfg, bayes ? w->kv : NULL, &ents, now,
                         allowlist_reputation, s->allow, &sc->result);
    }
    /* Rules last: their metas may combine the symbols above. */
    rule_engine_scan(s->engine, w->rule_scratch, m, data, len, &sc->result);
    result_finish(&sc->result, &t, "default");
    scan_decide(s, w, sc);
    if (s->cfg.reputation_enabled && w->record_verdicts && bayes)
        scan_record_verdict(s, w, sc, &ents, now, &sc->result.thresholds);

    if (bayes && s->cfg.autolearn && rc == 0) {
        /* Autolearn never overrides an operator's label: only unlearned mail is taught. */
        uint8_t digest[BAYES_DIGEST_BYTES];
        int learned = -1;
        bayes_digest(data, len, digest);
        if (bayes_learned_class(bayes, digest, &learned, NULL) == KV_OK && learned < 0) {
            enum bayes_learn_outcome outcome;
            int cls = sc->result.score >= s->cfg.autolearn_spam  ? BAYES_CLASS_SPAM
                      : sc->result.score <= s->cfg.autolearn_ham ? BAYES_CLASS_HAM
                                                                 : -1;
            if (cls >= 0 && bayes_learn(bayes, digest, &f, (enum bayes_class)cls, scan_tenant(m),
                                        BAYES_ORIGIN_AUTO, &outcome) != 0)
                log_warn("msg=\"autolearn failed\" reason=\"%s\"", err_msg());
        }
    }
    return sc;
}

void scan_free(struct scan *sc)
{
    /* The scan lives in its message's arena. */
    if (sc) message_free(sc->message);
}
