/*
 * gateway - the milter application behind `mxwarden serve`. See gateway.h.
 *
 * Shared state (struct gateway): the configuration and the scanner (struct
 * gw_gen), replaced together on reload (SIGHUP), and the operator's sender
 * rules (struct gw_rules), replaced on their own whenever the records
 * database's sender-rules generation moves, so `mxwarden senders` takes
 * effect within SENDERS_APPLY_DELAY_S seconds without rebuilding the scanner.
 * Both are reference-counted snapshots whose pointers `lock` guards. Per
 * worker thread (struct gw_thread, thread-local): references to the current
 * snapshots and a scan worker of the current gw_gen; they are moved to the
 * new snapshots at the next milter stage after a swap.
 *
 * The message log goes through one writer thread (store/msglog.h, started
 * before the milter server and stopped after it, so every worker's row is
 * answered): a worker hands its row over and waits until the batch holding
 * it is committed, so nothing is accepted that was not logged, while rows of
 * concurrent messages share one transaction instead of queueing on SQLite's
 * write lock. The row points into the session and the scan, which stay
 * valid while the worker waits. A reload moves the writer to the new
 * [store] db for its next batches, like the housekeeping connection.
 *
 * Housekeeping runs in the main thread's loop, beside the signal handling:
 * the sender-rules poll every SENDERS_APPLY_DELAY_S seconds (one indexed read
 * on its own database connection) and retention at start and then hourly:
 * message-log rows older than [gateway] log_retention_days and captures older
 * than capture_retention_days are deleted, each run logged.
 *
 * Per connection (struct gw_session, the milter session's app_data): the
 * client, the envelope and the message as it arrives. The raw message is
 * rebuilt as "Name: value\r\n" lines, a blank line and the body chunks,
 * which is what Postfix received minus the Received: header it is adding.
 *
 * The client's DNSBL lookup is begun at connect on the gateway's lookup
 * threads (struct dnsbl_pool, checks/dnsbl_async.h), so connect answers at
 * once and the lists are asked while the SMTP dialogue goes on; each end of
 * message waits for the answers, at most until the DNS budget counted from
 * connect is spent (then the lists count as timed out).
 */
#include "mta/gateway.h"
#include "checks/greylist.h"
#include "checks/ratelimit.h"
#include "checks/sender_rules.h"
#include "checks/symbols.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/file.h"
#include "checks/dnsbl.h"
#include "checks/dnsbl_async.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "mta/milter.h"
#include "mta/senders_cmd.h"
#include "scan/report.h"
#include "scan/scan.h"
#include "store/capture.h"
#include "store/db.h"
#include "store/msglog.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* What a reload replaces, shared by reference: freed when the last user lets go. */
struct gw_gen {
    int refs; /* the gateway's own, plus one per worker thread using it (atomic) */
    struct config cfg;
    struct scanner *scanner;
    struct greylist_config greylist;
    struct ratelimit_config ratelimit;
};

/* A snapshot of the sender rules, shared by reference like gw_gen. */
struct gw_rules {
    int refs;                /* the gateway's own, plus one per worker thread (atomic) */
    struct sender_rules *sr; /* never NULL (empty when nothing could be loaded) */
};

/* Seconds between retention runs. */
#define GW_RETENTION_PERIOD_S 3600

struct gateway {
    pthread_mutex_t lock; /* guards gen and rules (the pointers) */
    struct gw_gen *gen;
    struct gw_rules *rules;
    struct dnsbl_pool *dnsbl_pool; /* connect-time lookups; outlives every session */
    const char *config_path;
    char listen[CONFIG_MAX_VALUE]; /* fixed at start */
    char node[128];
    struct msglog *msglog; /* set before the server starts, freed after it stopped */
    /* Housekeeping, main thread only. */
    struct db *hk_db;                 /* its own connection to the records database */
    char hk_db_uri[CONFIG_MAX_VALUE]; /* what hk_db was opened with */
    int64_t rules_generation;         /* the generation the rules were last loaded at */
    bool rules_db_failing;            /* the last poll failed (warned once per outage) */
};

/* A worker thread's own state, freed when the thread exits (pthread key destructor). */
struct gw_thread {
    struct gw_gen *gen;
    struct gw_rules *rules;
    struct scan_worker *worker;
};

static pthread_key_t thread_key;
static pthread_once_t thread_key_once = PTHREAD_ONCE_INIT;

struct gw_session {
    char client_ip[64];
    char helo[256];
    bool client_allowed; /* a sender rule allows the client address */
    bool sender_allowed; /* ... or the sender */
    char *sender;        /* without <>; "" for the null sender; NULL before MAIL */
    char **rcpt;
    size_t n_rcpt;
    struct buf raw;
    size_t max_bytes; /* the size limit of the generation the session started with */
    bool too_big;
    bool flush_after_reply; /* this thread's scan worker holds verdicts to commit */
    struct dnsbl_pending *client_pending; /* the IP block lists, asked at connect (owned) */
    struct gw_gen *lookup_gen;            /* the generation whose lists it asks (a ref) */
    bool lookup_logged;                   /* its listings were logged (once per connection) */
};

/* ----------------------------------------------------------- helpers -- */

/* "<a@b>" -> "a@b" (a copy); NULL input gives "". */
static char *strip_brackets(const char *arg)
{
    size_t n;
    if (arg == NULL) return xstrdup("");
    while (*arg == ' ')
        arg++;
    n = strlen(arg);
    if (n >= 2 && arg[0] == '<' && arg[n - 1] == '>') return xstrndup(arg + 1, n - 2);
    return xstrdup(arg);
}

static void session_reset_message(struct gw_session *gs)
{
    size_t i;
    free(gs->sender);
    gs->sender = NULL;
    for (i = 0; i < gs->n_rcpt; i++)
        free(gs->rcpt[i]);
    free(gs->rcpt);
    gs->rcpt = NULL;
    gs->n_rcpt = 0;
    buf_clear(&gs->raw);
    gs->too_big = false;
    gs->sender_allowed = false;
}

static void gen_release(struct gw_gen *gen)
{
    if (gen == NULL || __atomic_sub_fetch(&gen->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    scanner_free(gen->scanner);
    free(gen);
}

static void rules_release(struct gw_rules *rules)
{
    if (rules == NULL || __atomic_sub_fetch(&rules->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    sender_rules_free(rules->sr);
    free(rules);
}

static void thread_state_free(void *p)
{
    struct gw_thread *t = p;
    scan_worker_free(t->worker); /* before its scanner can go */
    gen_release(t->gen);
    rules_release(t->rules);
    free(t);
}

static void thread_key_create(void)
{
    if (pthread_key_create(&thread_key, thread_state_free) != 0)
        log_fatal("msg=\"cannot create the thread key\"");
}

/*
 * The calling thread's state, moved to the gateway's current generation if a
 * reload happened: the old scan worker goes first, then the thread's reference
 * on the old generation, so a scanner is freed only after its last worker.
 */
static struct gw_thread *thread_state(struct gateway *g)
{
    struct gw_thread *t;
    pthread_once(&thread_key_once, thread_key_create);
    t = pthread_getspecific(thread_key);
    if (t == NULL) {
        t = xcalloc(1, sizeof *t);
        pthread_setspecific(thread_key, t);
    }
    pthread_mutex_lock(&g->lock);
    if (t->gen != g->gen) {
        scan_worker_free(t->worker);
        t->worker = NULL;
        gen_release(t->gen);
        t->gen = g->gen;
        __atomic_add_fetch(&t->gen->refs, 1, __ATOMIC_ACQ_REL);
    }
    if (t->rules != g->rules) {
        rules_release(t->rules);
        t->rules = g->rules;
        __atomic_add_fetch(&t->rules->refs, 1, __ATOMIC_ACQ_REL);
    }
    pthread_mutex_unlock(&g->lock);
    if (t->worker == NULL) {
        t->worker = scan_worker_new(t->gen->scanner);
        scan_worker_record_verdicts(t->worker, true);
    }
    return t;
}

static char *json_array_of(char **items, size_t n)
{
    struct buf b = {0};
    size_t i;
    buf_append_char(&b, '[');
    for (i = 0; i < n; i++) {
        if (i) buf_append_char(&b, ',');
        buf_append_json_string(&b, items[i], strlen(items[i]));
    }
    buf_append_char(&b, ']');
    return buf_release(&b);
}

/* A row for a session refused before end of data (waits until it is committed). */
static void log_refusal(struct gateway *g, struct gw_session *gs, const char *stage,
                        const char *decided_by, const char *reason)
{
    struct db_message row = {0};
    char *rcpt = json_array_of(gs->rcpt, gs->n_rcpt);
    row.node = g->node;
    row.client_ip = gs->client_ip;
    row.helo = gs->helo;
    row.sender = gs->sender;
    row.recipients = rcpt;
    row.action = (char *)(reason[0] == '4' ? "tempfail" : "reject");
    row.decided_by = (char *)decided_by;
    row.stage = (char *)stage;
    row.reason = (char *)reason;
    log_info("msg=\"refused\" stage=%s client=%s sender=\"%s\" by=%s reply=\"%s\"", stage,
             gs->client_ip, gs->sender ? gs->sender : "", decided_by, reason);
    if (msglog_write(g->msglog, &row) != DB_OK)
        log_warn("msg=\"message log not written\" reason=\"%s\"", err_msg());
    free(rcpt);
}

/* ------------------------------------------------------ milter stages -- */

static struct milter_reply on_connect(struct milter_session *s, const char *host, int family,
                                      const char *addr, unsigned port)
{
    struct gateway *g = s->app;
    struct gw_session *gs = xcalloc(1, sizeof *gs);
    struct milter_reply reply = milter_reply_of(MILTER_CONTINUE);
    const struct sender_rule *rule = NULL;
    struct gw_thread *t;
    (void)host;
    (void)port;
    s->app_data = gs;
    if (family == MILTER_FAMILY_INET || family == MILTER_FAMILY_INET6)
        snprintf(gs->client_ip, sizeof gs->client_ip, "%s", addr);

    t = thread_state(g);
    gs->max_bytes = t->gen->cfg.max_message_bytes;
    if (gs->client_ip[0]) {
        enum sender_rule_action a = sender_rules_check_ip(t->rules->sr, gs->client_ip, &rule);
        if (a == SENDER_RULE_BLOCK) {
            reply = milter_reply_code("554", "5.7.1", "Access denied for %s", gs->client_ip);
            log_refusal(g, gs, "connect", "sender_rule", reply.text);
        } else if (a == SENDER_RULE_ALLOW) {
            gs->client_allowed = true;
        } else if (t->gen->cfg.ratelimit_enabled) {
            struct ratelimit_result rr;
            if (ratelimit_check(&t->gen->ratelimit, scan_worker_kv(t->worker), RATELIMIT_CLIENT_IP,
                                gs->client_ip, time(NULL), &rr) == RATELIMIT_EXCEEDED) {
                reply = milter_reply_of(MILTER_REPLY);
                snprintf(reply.text, sizeof reply.text, "%s", rr.reply);
                log_refusal(g, gs, "connect", "rate_limit", reply.text);
            }
        }
        /* The IP lists are asked from now on, once per connection, without holding up the
         * reply; each message waits for the answers and collects them. */
        if (reply.verdict == MILTER_CONTINUE &&
            (gs->client_pending =
                 scan_worker_dnsbl_begin(t->worker, g->dnsbl_pool, gs->client_ip)) != NULL) {
            gs->lookup_gen = t->gen;
            __atomic_add_fetch(&t->gen->refs, 1, __ATOMIC_ACQ_REL);
        }
    }
    return reply;
}

static struct milter_reply on_helo(struct milter_session *s, const char *name)
{
    struct gw_session *gs = s->app_data;
    snprintf(gs->helo, sizeof gs->helo, "%s", name);
    return milter_reply_of(MILTER_CONTINUE);
}

static struct milter_reply on_mail(struct milter_session *s, const char *const *args, size_t n)
{
    struct gateway *g = s->app;
    struct gw_session *gs = s->app_data;
    struct milter_reply reply = milter_reply_of(MILTER_CONTINUE);
    const struct sender_rule *rule = NULL;
    struct gw_thread *t = thread_state(g);
    enum sender_rule_action a;

    session_reset_message(gs);
    gs->sender = strip_brackets(n ? args[0] : NULL);
    a = gs->sender[0] ? sender_rules_check_sender(t->rules->sr, gs->sender, &rule)
                      : SENDER_RULE_NONE;
    if (a == SENDER_RULE_BLOCK) {
        reply = milter_reply_code("550", "5.7.1", "Sender %s is blocked by policy", gs->sender);
        log_refusal(g, gs, "mail", "sender_rule", reply.text);
    } else if (a == SENDER_RULE_ALLOW) {
        gs->sender_allowed = true;
    } else if (t->gen->cfg.ratelimit_enabled && !gs->client_allowed && gs->sender[0]) {
        struct ratelimit_result rr;
        if (ratelimit_check(&t->gen->ratelimit, scan_worker_kv(t->worker), RATELIMIT_SENDER_DOMAIN,
                            gs->sender, time(NULL), &rr) == RATELIMIT_EXCEEDED) {
            reply = milter_reply_of(MILTER_REPLY);
            snprintf(reply.text, sizeof reply.text, "%s", rr.reply);
            log_refusal(g, gs, "mail", "rate_limit", reply.text);
        }
    }
    return reply;
}

static struct milter_reply on_rcpt(struct milter_session *s, const char *const *args, size_t n)
{
    struct gateway *g = s->app;
    struct gw_session *gs = s->app_data;
    struct milter_reply reply = milter_reply_of(MILTER_CONTINUE);
    char *rcpt = strip_brackets(n ? args[0] : NULL);
    bool exempt =
        gs->client_allowed || gs->sender_allowed || milter_macro(s, "{auth_authen}") != NULL;
    time_t now = time(NULL);
    struct gw_thread *t = thread_state(g);
    const struct config *cfg = &t->gen->cfg;

    if (!exempt && (cfg->ratelimit_enabled || cfg->greylist_enabled)) {
        struct kv *kv = scan_worker_kv(t->worker);
        struct ratelimit_result rr;
        struct greylist_result gr;
        if (cfg->ratelimit_enabled && ratelimit_check(&t->gen->ratelimit, kv, RATELIMIT_RECIPIENT,
                                                      rcpt, now, &rr) == RATELIMIT_EXCEEDED) {
            reply = milter_reply_of(MILTER_REPLY);
            snprintf(reply.text, sizeof reply.text, "%s", rr.reply);
            log_refusal(g, gs, "rcpt", "rate_limit", reply.text);
        } else if (cfg->greylist_enabled && gs->client_ip[0] &&
                   greylist_check(&t->gen->greylist, kv, gs->client_ip,
                                  gs->sender ? gs->sender : "", rcpt, now,
                                  &gr) == GREYLIST_GREYLISTED) {
            reply = milter_reply_of(MILTER_REPLY);
            snprintf(reply.text, sizeof reply.text, "%s", gr.reply);
            log_refusal(g, gs, "rcpt", "greylist", reply.text);
        }
    }
    if (reply.verdict == MILTER_CONTINUE) {
        gs->rcpt = xrealloc(gs->rcpt, (gs->n_rcpt + 1) * sizeof *gs->rcpt);
        gs->rcpt[gs->n_rcpt++] = rcpt;
    } else {
        free(rcpt);
    }
    return reply;
}

static struct milter_reply on_header(struct milter_session *s, const char *name, const char *value)
{
    struct gw_session *gs = s->app_data;
    const char *p;
    if (gs->too_big) return milter_reply_of(MILTER_CONTINUE);
    buf_append_str(&gs->raw, name);
    buf_append_str(&gs->raw, ": ");
    /* Folded lines arrive as "\n\t": give them back their CR. */
    for (p = value; *p; p++) {
        if (*p == '\n' && (p == value || p[-1] != '\r')) buf_append_char(&gs->raw, '\r');
        buf_append_char(&gs->raw, *p);
    }
    buf_append_str(&gs->raw, "\r\n");
    if (gs->raw.len > gs->max_bytes) gs->too_big = true;
    return milter_reply_of(MILTER_CONTINUE);
}

static struct milter_reply on_eoh(struct milter_session *s)
{
    struct gw_session *gs = s->app_data;
    buf_append_str(&gs->raw, "\r\n");
    return milter_reply_of(MILTER_CONTINUE);
}

static struct milter_reply on_body(struct milter_session *s, const unsigned char *chunk, size_t len)
{
    struct gw_session *gs = s->app_data;
    if (gs->too_big || gs->raw.len + len > gs->max_bytes) {
        gs->too_big = true;
        return milter_reply_of(MILTER_CONTINUE);
    }
    buf_append(&gs->raw, chunk, len);
    return milter_reply_of(MILTER_CONTINUE);
}

/* "Yes, score=13.20 required=6.00 tests=A,B" as SpamAssassin's X-Spam-Status reads. */
static void status_header(struct buf *out, const struct scan_result *r, bool spam)
{
    size_t i;
    buf_printf(out, "%s, score=%.2f required=%.2f tests=", spam ? "Yes" : "No", r->score,
               r->thresholds.tag);
    for (i = 0; i < r->n_hits; i++) {
        const struct symbol_def *d = symbols_get(r->symbols, r->hits[i].id);
        if (r->hits[i].score == 0) continue;
        if (out->len && out->data[out->len - 1] != '=') buf_append_char(out, ',');
        buf_append_str(out, d->name);
    }
}

/* The X-Spam-Report value: one folded line per scoring symbol, as SpamAssassin lays it out. */
static void report_header(struct buf *out, const struct scan_result *r)
{
    size_t i;
    for (i = 0; i < r->n_hits; i++) {
        const struct symbol_def *d = symbols_get(r->symbols, r->hits[i].id);
        if (r->hits[i].score == 0) continue;
        buf_printf(out, "\n\t* %5.2f %s %s", r->hits[i].score, d->name, d->description);
    }
}

/* Seconds on a clock that does not jump with the wall clock. */
static double gateway_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *find_header(const struct message *m, const char *name)
{
    size_t i;
    for (i = 0; i < m->n_headers; i++)
        if (strcasecmp(m->headers[i].name, name) == 0) return m->headers[i].value;
    return NULL;
}

static struct milter_reply on_eom(struct milter_session *s, struct milter_actions *actions)
{
    struct gateway *g = s->app;
    struct gw_session *gs = s->app_data;
    struct milter_reply reply = milter_reply_of(MILTER_CONTINUE);
    struct envelope env = {0};
    struct gw_thread *t;
    const struct config *cfg;
    struct scan *sc;
    struct scan_result *r;
    struct buf hdr = {0}, symbols = {0};
    struct db_message row = {0};
    const char *queue_id = milter_macro(s, "i");
    char *rcpt_json, capture_rel[CAPTURE_REL_MAX] = "", id[64];
    enum scan_action action;
    const struct dnsbl_lookup *client_lookup = NULL;
    time_t now = time(NULL);
    double t0 = gateway_now_s(), t_scan;

    t = thread_state(g);
    cfg = &t->gen->cfg;
    if (gs->too_big) {
        reply =
            milter_reply_code("552", "5.3.4", "Message too big (limit %zu bytes)", gs->max_bytes);
        log_refusal(g, gs, "data", "size_limit", reply.text);
        session_reset_message(gs);
        return reply;
    }
    env.mail_from = gs->sender;
    env.rcpt = (const char *const *)gs->rcpt;
    env.n_rcpt = gs->n_rcpt;
    env.client_ip = gs->client_ip[0] ? gs->client_ip : NULL;
    env.helo = gs->helo[0] ? gs->helo : NULL;
    env.queue_id = queue_id;
    env.arrival_unix = now;

    /* A reload since connect may have changed the lists: then the scan asks them itself. */
    if (gs->client_pending && gs->lookup_gen == t->gen) {
        client_lookup = dnsbl_pending_wait(gs->client_pending);
        if (!gs->lookup_logged && dnsbl_lookup_hits(client_lookup) > 0)
            log_info("msg=\"client on a block list\" stage=connect client=%s listings=%zu "
                     "waited_ms=%.2f",
                     gs->client_ip, dnsbl_lookup_hits(client_lookup), (gateway_now_s() - t0) * 1e3);
        gs->lookup_logged = true;
    }
    sc = scan_message_looked_up(t->worker, gs->raw.data ? gs->raw.data : "", gs->raw.len, &env,
                                client_lookup);
    t_scan = gateway_now_s();
    gs->flush_after_reply = true; /* its reputation verdict is committed once Postfix has ours */
    r = &sc->result;
    action = r->action;
    /* An operator's allow rule skips the spam actions: the headers still tell. */
    if ((gs->client_allowed || gs->sender_allowed) && action > ACTION_TAG) action = ACTION_TAG;

    /* Capture what Postfix keeps (delivered or held), so it can be previewed and trained. */
    if (cfg->capture && action != ACTION_REJECT) {
        snprintf(id, sizeof id, "%s-%lld", queue_id ? queue_id : "noid", (long long)now);
        if (capture_write_flags(cfg->capture_dir, id, now, gs->raw.data ? gs->raw.data : "",
                                gs->raw.len, cfg->capture_sync ? CAPTURE_SYNC : 0,
                                capture_rel) != 0) {
            log_warn("msg=\"capture failed\" queue_id=%s reason=\"%s\"", queue_id ? queue_id : "",
                     err_msg());
            capture_rel[0] = '\0';
        }
    }

    report_json_symbols(&symbols, r);
    rcpt_json = json_array_of(gs->rcpt, gs->n_rcpt);
    row.time = now;
    row.node = g->node;
    row.queue_id = (char *)queue_id;
    row.client_ip = gs->client_ip;
    row.helo = gs->helo;
    row.sender = gs->sender;
    row.recipients = rcpt_json;
    row.size_bytes = (int64_t)gs->raw.len;
    row.subject = (char *)(sc->message->subject ? sc->message->subject : "");
    row.score = r->score;
    row.action = (char *)scan_action_name(action);
    row.decided_by = (char *)r->decided_by;
    row.symbols = symbols.data ? symbols.data : "[]";
    row.capture_path = capture_rel[0] ? capture_rel : NULL;
    row.stage = "data";
    if (msglog_write(g->msglog, &row) != DB_OK) {
        /* Nothing is accepted that was not logged (DESIGN.md): the sender retries. */
        log_error("msg=\"message log not written; tempfail\" queue_id=%s reason=\"%s\"",
                  queue_id ? queue_id : "", err_msg());
        reply = milter_reply_code("451", "4.3.0", "Temporary local problem, try again later");
        goto out;
    }

    if (action == ACTION_REJECT) {
        reply =
            milter_reply_code("550", "5.7.1", "Message rejected as spam (score %.2f)", r->score);
        goto out;
    }
    buf_printf(&hdr, "%.2f", r->score);
    milter_add_header(actions, "X-Spam-Score", hdr.data);
    buf_clear(&hdr);
    status_header(&hdr, r, action >= ACTION_TAG);
    milter_add_header(actions, "X-Spam-Status", hdr.data);
    if (action >= ACTION_TAG && r->add_report_header) {
        buf_clear(&hdr);
        report_header(&hdr, r);
        milter_add_header(actions, "X-Spam-Report", hdr.data);
    }
    if (action >= ACTION_TAG && r->subject_prefix && r->subject_prefix[0]) {
        const char *subject = find_header(sc->message, "Subject");
        buf_clear(&hdr);
        buf_printf(&hdr, "%s %s", r->subject_prefix, subject ? subject : "");
        if (subject)
            milter_change_header(actions, "Subject", 1, hdr.data);
        else
            milter_add_header(actions, "Subject", hdr.data);
    }
    if (action == ACTION_QUARANTINE) {
        buf_clear(&hdr);
        buf_printf(&hdr, "mxwarden: score %.2f above %.2f (%s)", r->score, r->thresholds.quarantine,
                   r->decided_by);
        if (milter_quarantine(actions, hdr.data) != 0) {
            log_error("msg=\"quarantine refused by the MTA; tempfail\" reason=\"%s\"", err_msg());
            reply = milter_reply_code("451", "4.3.0", "Temporary local problem, try again later");
        }
    }
    log_info("msg=\"scanned\" queue_id=%s client=%s sender=\"%s\" rcpts=%zu score=%.2f action=%s "
             "decided_by=%s scan_ms=%.2f total_ms=%.2f",
             queue_id ? queue_id : "", gs->client_ip, gs->sender ? gs->sender : "", gs->n_rcpt,
             r->score, scan_action_name(action), r->decided_by, (t_scan - t0) * 1e3,
             (gateway_now_s() - t0) * 1e3);
out:
    free(rcpt_json);
    buf_free(&symbols);
    buf_free(&hdr);
    scan_free(sc);
    session_reset_message(gs);
    return reply;
}

static void on_abort(struct milter_session *s)
{
    if (s->app_data) session_reset_message(s->app_data);
}

static void on_close(struct milter_session *s)
{
    struct gw_session *gs = s->app_data;
    if (gs == NULL) return;
    session_reset_message(gs);
    buf_free(&gs->raw);
    dnsbl_pending_free(gs->client_pending); /* a lookup still running is freed when it ends */
    gen_release(gs->lookup_gen);
    free(gs);
    s->app_data = NULL;
}

/* After the reply: the scan's reputation verdicts go to the store now, off the SMTP clock. The
 * milter server calls this in the thread that ran on_eom, so the worker is the one that
 * scanned. */
static void on_replied(struct milter_session *s)
{
    struct gw_session *gs = s->app_data;
    if (gs == NULL || !gs->flush_after_reply) return;
    gs->flush_after_reply = false;
    scan_worker_flush(thread_state(s->app)->worker);
}

/*
 * Connect, MAIL and RCPT need a reply only when something may refuse there: a
 * block rule, rate limits or greylisting. Without any, Postfix is told not to
 * wait for us at those stages (three round trips fewer per message); a rule
 * added later applies to the connections that start after it.
 */
static unsigned on_negotiate(struct milter_session *s)
{
    struct gw_thread *t = thread_state(s->app);
    const struct config *cfg = &t->gen->cfg;
    if (cfg->ratelimit_enabled || cfg->greylist_enabled || sender_rules_any_block(t->rules->sr))
        return 0;
    return MILTER_STAGE_CONNECT | MILTER_STAGE_MAIL | MILTER_STAGE_RCPT;
}

static const struct milter_callbacks gateway_callbacks = {
    .connect = on_connect,
    .helo = on_helo,
    .mail = on_mail,
    .rcpt = on_rcpt,
    .header = on_header,
    .eoh = on_eoh,
    .body = on_body,
    .eom = on_eom,
    .abort = on_abort,
    .close = on_close,
    .replied = on_replied,
    .no_reply_now = on_negotiate,
    .no_reply_stages =
        MILTER_STAGE_HELO | MILTER_STAGE_HEADER | MILTER_STAGE_EOH | MILTER_STAGE_BODY,
};

/* ------------------------------------------------------------ daemon -- */

/*
 * Builds a snapshot of the rules in db into *out. 0; -1 when they cannot be
 * read (worth retrying); -2 when one is invalid (sender_rules_new() refuses
 * the whole set, and the caller keeps its previous snapshot rather than drop
 * a block rule). err_set() on failure.
 */
static int load_sender_rules(struct db *db, struct sender_rules **out)
{
    struct db_sender_rule_list list = {0};
    struct sender_rule *rules;
    struct sender_rules *sr = NULL;
    size_t i;

    *out = NULL;
    if (db_sender_rule_list(db, &list) != DB_OK) {
        db_sender_rule_list_free(&list);
        return -1;
    }
    rules = xcalloc(list.n ? list.n : 1, sizeof *rules);
    for (i = 0; i < list.n; i++) {
        const struct db_sender_rule *d = &list.items[i];
        struct sender_rule *r = &rules[i];
        if (sender_rule_kind_parse(d->kind, &r->kind) != 0 ||
            sender_rule_action_parse(d->action, &r->action) != 0)
            goto out;
        r->value = d->value;
        r->id = d->id;
        r->comment = d->note;
    }
    sr = sender_rules_new(rules, list.n); /* copies what it keeps */
out:
    free(rules);
    db_sender_rule_list_free(&list);
    *out = sr;
    return sr ? 0 : -2;
}

/* Installs sr (owned from now on) as the rules every worker uses from its next stage. */
static void gateway_rules_swap(struct gateway *g, struct sender_rules *sr)
{
    struct gw_rules *rules = xcalloc(1, sizeof *rules), *old;
    rules->refs = 1;
    rules->sr = sr;
    pthread_mutex_lock(&g->lock);
    old = g->rules;
    g->rules = rules;
    pthread_mutex_unlock(&g->lock);
    rules_release(old); /* freed once no worker thread uses it any more */
}

/* The housekeeping connection for the current configuration's database, (re)opened as needed;
 * NULL with err_set() when it cannot be opened. */
static struct db *gateway_hk_db(struct gateway *g)
{
    const char *uri = g->gen->cfg.db_uri;
    if (g->hk_db && strcmp(g->hk_db_uri, uri) == 0) return g->hk_db;
    db_close(g->hk_db);
    g->hk_db = NULL;
    if (db_open(uri, &g->hk_db) != DB_OK) return NULL;
    snprintf(g->hk_db_uri, sizeof g->hk_db_uri, "%s", uri);
    return g->hk_db;
}

/*
 * Reloads the sender rules if their generation in the database moved (or
 * always, with force). The generation is read before the rules, so a change
 * landing in between is seen at the next poll. When the database cannot be
 * read, or holds a rule sender_rules_new() refuses, the previous snapshot
 * stays (at start: an empty one) and the failure is logged once.
 */
static void gateway_rules_refresh(struct gateway *g, bool force)
{
    struct db *db = gateway_hk_db(g);
    struct sender_rules *sr = NULL;
    int64_t generation = 0;
    int rc = -1;

    if (db != NULL && db_sender_rules_generation(db, &generation) == DB_OK) {
        if (!force && !g->rules_db_failing && generation == g->rules_generation) return;
        rc = load_sender_rules(db, &sr);
    }
    if (rc == -1) { /* the database: retried at every poll until it answers */
        if (!g->rules_db_failing)
            log_warn("msg=\"sender rules not read; the previous ones stay\" reason=\"%s\"",
                     err_msg());
        g->rules_db_failing = true;
        db_close(g->hk_db); /* reopened at the next poll */
        g->hk_db = NULL;
        if (g->rules == NULL) gateway_rules_swap(g, sender_rules_new(NULL, 0));
        return;
    }
    g->rules_db_failing = false;
    if (rc == -2) {
        log_error("msg=\"sender rules not loaded; the previous ones stay\" generation=%lld "
                  "reason=\"%s\"",
                  (long long)generation, err_msg());
        if (g->rules == NULL) gateway_rules_swap(g, sender_rules_new(NULL, 0));
    } else {
        log_info("msg=\"sender rules loaded\" rules=%zu generation=%lld", sender_rules_count(sr),
                 (long long)generation);
        gateway_rules_swap(g, sr);
    }
    g->rules_generation = generation; /* a broken set is not retried until it changes */
}

/* Deletes message-log rows and captures past their retention, logging what went. */
static void gateway_retention(struct gateway *g)
{
    const struct config *cfg = &g->gen->cfg;
    time_t now = time(NULL);

    if (cfg->log_retention_days > 0) {
        struct db *db = gateway_hk_db(g);
        int64_t deleted = 0;
        time_t cutoff = now - (time_t)cfg->log_retention_days * 86400;
        if (db == NULL || db_messages_delete_older_than(db, (int64_t)cutoff, &deleted) != DB_OK)
            log_warn("msg=\"message log retention failed\" deleted=%lld reason=\"%s\"",
                     (long long)deleted, err_msg());
        else
            log_info("msg=\"retention\" what=message_log older_than_days=%u deleted=%lld",
                     cfg->log_retention_days, (long long)deleted);
    }
    if (cfg->capture_retention_days > 0) {
        size_t deleted = 0;
        time_t cutoff = now - (time_t)cfg->capture_retention_days * 86400;
        if (capture_purge_before(cfg->capture_dir, cutoff, &deleted) != 0)
            log_warn("msg=\"capture retention failed\" dir=%s deleted=%zu reason=\"%s\"",
                     cfg->capture_dir, deleted, err_msg());
        else
            log_info("msg=\"retention\" what=captures dir=%s older_than_days=%u deleted=%zu",
                     cfg->capture_dir, cfg->capture_retention_days, deleted);
    }
}


/* (Re)reads everything a reload changes into a new generation; on a configuration error
 * the old one stays. */
static int gateway_load(struct gateway *g)
{
    struct gw_gen *gen = xcalloc(1, sizeof *gen), *old;

    config_defaults(&gen->cfg);
    if (config_load(g->config_path, &gen->cfg) != 0) {
        log_error("msg=\"configuration not loaded\" reason=\"%s\"", err_msg());
        free(gen);
        return -1;
    }
    if (g->listen[0] && strcmp(gen->cfg.milter_listen, g->listen) != 0)
        log_warn("msg=\"[milter] listen changes only at restart\" listen=%s", g->listen);
    gen->refs = 1;
    gen->scanner = scanner_new(&gen->cfg);
    gen->greylist = greylist_config_default();
    gen->greylist.delay_s = gen->cfg.greylist_delay_s;
    gen->greylist.retry_window_s = gen->cfg.greylist_window_s;
    gen->greylist.pass_ttl_s = gen->cfg.greylist_pass_ttl_s;
    gen->ratelimit = ratelimit_config_default();
    if (ratelimit_rule_parse(gen->cfg.ratelimit_client_ip,
                             &gen->ratelimit.rules[RATELIMIT_CLIENT_IP]) ||
        ratelimit_rule_parse(gen->cfg.ratelimit_sender_domain,
                             &gen->ratelimit.rules[RATELIMIT_SENDER_DOMAIN]) ||
        ratelimit_rule_parse(gen->cfg.ratelimit_recipient,
                             &gen->ratelimit.rules[RATELIMIT_RECIPIENT]))
        log_error("msg=\"[ratelimit] rule not understood; defaults apply\" reason=\"%s\"",
                  err_msg());

    pthread_mutex_lock(&g->lock);
    old = g->gen;
    g->gen = gen;
    pthread_mutex_unlock(&g->lock);
    gen_release(old);               /* freed once no worker thread uses it any more */
    gateway_rules_refresh(g, true); /* [store] db may have changed */
    if (g->msglog) msglog_set_uri(g->msglog, gen->cfg.db_uri); /* its next batches */
    return 0;
}

static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t reload_flag;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reload_flag = 1;
    else
        stop_flag = 1;
}

struct run_args {
    struct milter_server *server;
    int rc;
};

static void *server_thread(void *arg)
{
    struct run_args *a = arg;
    a->rc = milter_server_run(a->server, &stop_flag);
    return NULL;
}

int gateway_serve(const char *config_path, const char *pid_file)
{
    struct gateway g;
    struct milter_server_config mc = {0};
    struct sigaction sa;
    struct run_args run = {0};
    pthread_t thread;
    double next_rules_poll, next_retention;
    FILE *f;

    memset(&g, 0, sizeof g);
    pthread_mutex_init(&g.lock, NULL);
    g.config_path = config_path;
    if (gateway_load(&g) != 0) return 1;
    snprintf(g.listen, sizeof g.listen, "%s", g.gen->cfg.milter_listen);
    if (g.gen->cfg.node[0])
        snprintf(g.node, sizeof g.node, "%s", g.gen->cfg.node);
    else if (gethostname(g.node, sizeof g.node) != 0)
        snprintf(g.node, sizeof g.node, "mxwarden");

    g.msglog = msglog_new(g.gen->cfg.db_uri);
    mc.listen = g.listen;
    mc.workers = (int)g.gen->cfg.milter_workers;
    /* smtpd runs as its own user: it reaches the unix socket through the group. */
    mc.unix_group = g.gen->cfg.milter_socket_group[0] ? g.gen->cfg.milter_socket_group : NULL;
    if (strncmp(mc.listen, "unix:", 5) == 0 && file_mkdir_parents(mc.listen + 5) != 0)
        log_warn("msg=\"cannot create the socket's directory\" reason=\"%s\"", err_msg());
    g.dnsbl_pool = dnsbl_pool_new(0);
    run.server = milter_server_new(&mc, &gateway_callbacks, &g);
    if (run.server == NULL) {
        log_error("msg=\"cannot listen\" listen=%s reason=\"%s\"", mc.listen, err_msg());
        dnsbl_pool_free(g.dnsbl_pool);
        msglog_free(g.msglog);
        gen_release(g.gen);
        rules_release(g.rules);
        db_close(g.hk_db);
        return 1;
    }
    if (pid_file) {
        if ((f = fopen(pid_file, "w")) == NULL) {
            log_error("msg=\"cannot write pid file\" path=%s reason=\"%s\"", pid_file,
                      strerror(errno));
        } else {
            fprintf(f, "%ld\n", (long)getpid());
            fclose(f);
        }
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    log_info("msg=\"mxwarden serving\" listen=%s workers=%d node=%s pid=%ld", mc.listen, mc.workers,
             g.node, (long)getpid());
    if (pthread_create(&thread, NULL, server_thread, &run) != 0)
        log_fatal("msg=\"cannot start the server thread\"");
    gateway_retention(&g);
    next_rules_poll = gateway_now_s() + SENDERS_APPLY_DELAY_S;
    next_retention = gateway_now_s() + GW_RETENTION_PERIOD_S;
    while (!stop_flag) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (reload_flag) {
            reload_flag = 0;
            log_info("msg=\"reloading\"");
            if (gateway_load(&g) == 0) log_info("msg=\"reloaded\"");
        }
        if (gateway_now_s() >= next_rules_poll) {
            gateway_rules_refresh(&g, false);
            next_rules_poll = gateway_now_s() + SENDERS_APPLY_DELAY_S;
        }
        if (gateway_now_s() >= next_retention) {
            gateway_retention(&g);
            next_retention = gateway_now_s() + GW_RETENTION_PERIOD_S;
        }
    }
    log_info("msg=\"stopping\"");
    pthread_join(thread, NULL);
    milter_server_free(run.server); /* its worker threads are gone: their state was freed */
    dnsbl_pool_free(g.dnsbl_pool);  /* after the sessions, which freed their lookups */
    msglog_free(g.msglog);          /* nothing is queued any more; its rows are committed */
    gen_release(g.gen);
    rules_release(g.rules);
    db_close(g.hk_db);
    pthread_mutex_destroy(&g.lock);
    if (pid_file) unlink(pid_file);
    log_info("msg=\"stopped\"");
    return run.rc == 0 ? 0 : 1;
}
