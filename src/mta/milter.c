/*
 * milter - codec, session state machine and server of the milter protocol. See milter.h.
 *
 * Why our own and not libmilter (issue 5, PLATFORM.md): libmilter logs only to
 * syslog, stalls ~40 ms per exchange over TCP (small writes meeting Nagle and
 * delayed ACKs), exits slowly and leaves its socket behind. Here every reply batch
 * is one send(), TCP_NODELAY is set, stages we do not need are switched off at
 * negotiation, and connections are multiplexed over a fixed pool of workers.
 *
 * Memory: a session owns its decoder buffer, a scratch copy of the current string
 * packet (so every string handed to a callback is NUL-terminated even when the MTA
 * forgot the NUL), its macros, and the encoded modifications of the current message.
 * Everything is bounded by the 64 MiB packet limit and MACROS_MAX.
 *
 * Server: the workers share one epoll set; EPOLLONESHOT gives each event of a
 * connection to one worker, which reads, answers and re-arms it (under srv->lock,
 * with the busy flag). Only a worker ever frees a connection: the sweeper (the
 * thread in milter_server_run) ends idle ones by shutdown(2), which makes them
 * readable so that a worker closes them, and therefore never frees a connection
 * whose event another worker is about to take.
 */
#include "mta/milter.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MACROS_MAX          512
#define TEMPFAIL_TEXT       "451 4.3.0 Temporary failure in the mail filter, try again later"
#define WORKERS_DEFAULT     4
#define READ_TIMEOUT_DEF_MS 7210000
#define SHUTDOWN_DEF_MS     10000
#define READS_PER_TURN      64
#define LINGER_MS           2

/* ---- codec ---- */

void milter_put_u32(unsigned char out[4], uint32_t v)
{
    out[0] = (unsigned char)(v >> 24);
    out[1] = (unsigned char)(v >> 16);
    out[2] = (unsigned char)(v >> 8);
    out[3] = (unsigned char)v;
}

uint32_t milter_get_u32(const void *in4)
{
    const unsigned char *p = in4;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

void milter_decoder_init(struct milter_decoder *d, size_t max_packet_bytes)
{
    memset(d, 0, sizeof *d);
    d->max_packet_bytes = max_packet_bytes ? max_packet_bytes : MILTER_MAX_PACKET_BYTES;
}

void milter_decoder_free(struct milter_decoder *d)
{
    free(d->data);
    d->data = NULL;
    d->start = d->len = d->cap = 0;
}

void milter_decoder_feed(struct milter_decoder *d, const void *bytes, size_t n)
{
    if (n == 0 || d->failed) return;
    if (d->start > 0 && d->start + d->len + n > d->cap) { /* compact before growing */
        memmove(d->data, d->data + d->start, d->len);
        d->start = 0;
    }
    if (d->start + d->len + n > d->cap) {
        size_t cap = d->cap ? d->cap : 4096;
        while (cap < d->len + n)
            cap *= 2;
        d->data = xrealloc(d->data, cap);
        d->cap = cap;
    }
    memcpy(d->data + d->start + d->len, bytes, n);
    d->len += n;
}

int milter_decoder_next(struct milter_decoder *d, struct milter_packet *p)
{
    uint32_t plen;

    if (d->failed) {
        err_set("milter stream already failed");
        return -1;
    }
    if (d->len < 4) return 0;
    plen = milter_get_u32(d->data + d->start);
    if (plen == 0 || plen > d->max_packet_bytes) {
        d->failed = true;
        err_set("milter packet length %lu out of range (1..%zu)", (unsigned long)plen,
                d->max_packet_bytes);
        return -1;
    }
    if (d->len - 4 < plen) return 0;
    p->cmd = d->data[d->start + 4];
    p->data = d->data + d->start + 5;
    p->len = plen - 1;
    d->start += 4 + (size_t)plen;
    d->len -= 4 + (size_t)plen;
    if (d->len == 0) d->start = 0; /* the packet stays readable: nothing is overwritten yet */
    return 1;
}

void milter_packet_append(struct buf *out, char cmd, const void *data, size_t len)
{
    unsigned char hdr[5];

    milter_put_u32(hdr, (uint32_t)(len + 1));
    hdr[4] = (unsigned char)cmd;
    buf_append(out, hdr, 5);
    if (len) buf_append(out, data, len);
}

/* ---- replies ---- */

struct milter_reply milter_reply_of(enum milter_verdict verdict)
{
    struct milter_reply r;
    r.verdict = verdict;
    r.text[0] = '\0';
    return r;
}

struct milter_reply milter_reply_code(const char *code, const char *status, const char *fmt, ...)
{
    struct milter_reply r;
    va_list ap;
    int n;

    r.verdict = MILTER_REPLY;
    n = snprintf(r.text, sizeof r.text, "%s %s%s", code, status ? status : "", status ? " " : "");
    if (n < 0 || (size_t)n >= sizeof r.text) return r;
    va_start(ap, fmt);
    vsnprintf(r.text + n, sizeof r.text - (size_t)n, fmt, ap);
    va_end(ap);
    return r;
}

/*
 * A 'y' reply must read "[45]DD text" with an optional enhanced status whose class
 * matches the code (Postfix's milter8 checks the same and falls back to its default
 * action otherwise). Returns false for anything else.
 */
static bool reply_text_valid(const char *t)
{
    if ((t[0] != '4' && t[0] != '5') || t[1] < '0' || t[1] > '9' || t[2] < '0' || t[2] > '9')
        return false;
    if (t[3] != ' ') return false;
    if (t[4] >= '0' && t[4] <= '9' && t[4] != t[0]) return false;
    return true;
}

/* Appends text with control characters as spaces and '%' doubled, then a NUL. */
static void append_sanitised(struct buf *out, const char *text)
{
    const unsigned char *p;
    for (p = (const unsigned char *)text; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            buf_append_char(out, ' ');
        else if (*p == '%')
            buf_append(out, "%%", 2);
        else
            buf_append_char(out, (char)*p);
    }
    buf_append_char(out, '\0');
}

static void append_replycode(struct buf *out, const char *text)
{
    struct buf t = {0};
    append_sanitised(&t, text);
    milter_packet_append(out, MILTER_RESP_REPLYCODE, t.data, t.len);
    buf_free(&t);
}

/* Encodes one verdict. A failed callback or an invalid text becomes 451 4.3.0. */
static void append_reply(struct buf *out, const struct milter_reply *r, const char *stage)
{
    char c;
    switch (r->verdict) {
    case MILTER_CONTINUE:
        c = MILTER_RESP_CONTINUE;
        break;
    case MILTER_ACCEPT:
        c = MILTER_RESP_ACCEPT;
        break;
    case MILTER_REJECT:
        c = MILTER_RESP_REJECT;
        break;
    case MILTER_TEMPFAIL:
        c = MILTER_RESP_TEMPFAIL;
        break;
    case MILTER_DISCARD:
        c = MILTER_RESP_DISCARD;
        break;
    case MILTER_REPLY:
        if (reply_text_valid(r->text)) {
            append_replycode(out, r->text);
            return;
        }
        log_warn("milter event=bad_reply stage=%s reason=\"reply text is not 4xx/5xx\"", stage);
        append_replycode(out, TEMPFAIL_TEXT);
        return;
    case MILTER_ERROR:
    default:
        log_warn("milter event=callback_error stage=%s action=tempfail", stage);
        append_replycode(out, TEMPFAIL_TEXT);
        return;
    }
    milter_packet_append(out, c, NULL, 0);
}

/* ---- session ---- */

enum macro_level { LEVEL_CONNECTION, LEVEL_MESSAGE };

struct macro {
    char *name; /* without braces */
    char *value;
    enum macro_level level;
};

struct session {
    struct milter_session pub; /* first: callbacks get &pub */
    const struct milter_callbacks *cb;
    struct milter_decoder dec;
    bool negotiated;
    bool in_message;
    uint32_t actions;  /* negotiated SMFIF_* */
    uint32_t protocol; /* negotiated SMFIP_* */
    struct macro *macros;
    size_t n_macros;
    struct buf scratch; /* NUL-terminated copy of the current string packet */
    const char **argv;  /* split arguments of M/R */
    size_t argv_cap;
    bool conn_pending_set; /* a verdict from a connection-level no-reply stage */
    struct milter_reply conn_pending;
    bool msg_pending_set; /* the same for the current message */
    struct milter_reply msg_pending;
    struct buf mods; /* encoded modifications for end of message */
};

struct milter_actions {
    struct session *s;
};

static struct session *impl(struct milter_session *pub)
{
    return (struct session *)pub; /* pub is the first member */
}

struct milter_session *milter_session_new(const struct milter_callbacks *cb, void *app)
{
    struct session *s = xcalloc(1, sizeof *s);
    s->pub.app = app;
    s->cb = cb;
    milter_decoder_init(&s->dec, 0);
    return &s->pub;
}

void milter_session_replied(struct milter_session *pub)
{
    struct session *s = (struct session *)pub;
    if (s->cb->replied) s->cb->replied(pub);
}

static void macros_forget(struct session *s, enum macro_level from)
{
    size_t i, kept = 0;
    for (i = 0; i < s->n_macros; i++) {
        if (s->macros[i].level >= from) {
            free(s->macros[i].name);
            free(s->macros[i].value);
        } else {
            s->macros[kept++] = s->macros[i];
        }
    }
    s->n_macros = kept;
}

void milter_session_free(struct milter_session *pub)
{
    struct session *s;
    if (pub == NULL) return;
    s = impl(pub);
    if (s->cb->close) s->cb->close(pub);
    macros_forget(s, LEVEL_CONNECTION);
    free(s->macros);
    free(s->argv);
    buf_free(&s->scratch);
    buf_free(&s->mods);
    milter_decoder_free(&s->dec);
    free(s);
}

bool milter_session_in_message(const struct milter_session *pub)
{
    return ((const struct session *)pub)->in_message;
}

/* name without surrounding braces, as a length. */
static void macro_bare_name(const char *name, const char **start, size_t *len)
{
    size_t n = strlen(name);
    if (n >= 2 && name[0] == '{' && name[n - 1] == '}') {
        *start = name + 1;
        *len = n - 2;
    } else {
        *start = name;
        *len = n;
    }
}

const char *milter_macro(const struct milter_session *pub, const char *name)
{
    const struct session *s = (const struct session *)pub;
    const char *bare;
    size_t len, i;

    macro_bare_name(name, &bare, &len);
    for (i = 0; i < s->n_macros; i++)
        if (strncmp(s->macros[i].name, bare, len) == 0 && s->macros[i].name[len] == '\0')
            return s->macros[i].value;
    return NULL;
}

static void macro_set(struct session *s, const char *name, const char *value,
                      enum macro_level level)
{
    const char *bare;
    size_t len, i;

    macro_bare_name(name, &bare, &len);
    if (len == 0) return;
    for (i = 0; i < s->n_macros; i++) {
        if (strncmp(s->macros[i].name, bare, len) == 0 && s->macros[i].name[len] == '\0') {
            free(s->macros[i].value);
            s->macros[i].value = xstrdup(value);
            s->macros[i].level = level;
            return;
        }
    }
    if (s->n_macros == MACROS_MAX) return;      /* a flood of names: keep the first ones */
    if ((s->n_macros & (s->n_macros - 1)) == 0) /* grow at powers of two */
        s->macros = xrealloc(s->macros, (s->n_macros ? s->n_macros * 2 : 8) * sizeof *s->macros);
    s->macros[s->n_macros].name = xstrndup(bare, len);
    s->macros[s->n_macros].value = xstrdup(value);
    s->macros[s->n_macros].level = level;
    s->n_macros++;
}

/* Copies the packet into scratch with a terminating NUL so strings cannot overrun. */
static const char *scratch_copy(struct session *s, const struct milter_packet *p)
{
    buf_clear(&s->scratch);
    buf_append(&s->scratch, p->data, p->len);
    buf_append_char(&s->scratch, '\0'); /* buf adds one more; two NULs end every string */
    return s->scratch.data;
}

/* Splits the NUL-separated strings of a packet; returns their count. */
static size_t split_args(struct session *s, const struct milter_packet *p)
{
    const char *d = scratch_copy(s, p), *end = d + p->len;
    size_t n = 0;

    while (d < end) {
        if (n + 1 >= s->argv_cap) {
            s->argv_cap = s->argv_cap ? s->argv_cap * 2 : 16;
            s->argv = xrealloc(s->argv, s->argv_cap * sizeof *s->argv);
        }
        s->argv[n++] = d;
        d += strlen(d) + 1;
    }
    if (n == 0) {
        if (s->argv_cap == 0) {
            s->argv_cap = 16;
            s->argv = xrealloc(s->argv, s->argv_cap * sizeof *s->argv);
        }
        s->argv[n++] = "";
    }
    s->argv[n] = NULL;
    return n;
}

static void message_reset(struct session *s)
{
    s->in_message = false;
    s->msg_pending_set = false;
    buf_clear(&s->mods);
    macros_forget(s, LEVEL_MESSAGE);
}

static int handle_optneg(struct session *s, const struct milter_packet *p, struct buf *out)
{
    const struct milter_callbacks *cb = s->cb;
    uint32_t version, mta_actions, mta_protocol, want = 0, nr = cb->no_reply_stages;
    unsigned char reply[12];

    if (p->len < 12) {
        err_set("milter option negotiation too short (%zu bytes)", p->len);
        return -1;
    }
    version = milter_get_u32(p->data);
    mta_actions = milter_get_u32(p->data + 4);
    mta_protocol = milter_get_u32(p->data + 8);
    if (cb->no_reply_now) nr |= cb->no_reply_now(&s->pub);
    if (version < 2) {
        err_set("milter protocol version %lu not supported", (unsigned long)version);
        return -1;
    }
    if (version > MILTER_PROTOCOL_VERSION) version = MILTER_PROTOCOL_VERSION;

    /* A stage we have no callback for is not sent at all, and needs no reply if sent. */
    if (!cb->connect) want |= MILTER_P_NOCONNECT | MILTER_P_NR_CONN;
    if (!cb->helo) want |= MILTER_P_NOHELO | MILTER_P_NR_HELO;
    if (!cb->mail) want |= MILTER_P_NOMAIL | MILTER_P_NR_MAIL;
    if (!cb->rcpt) want |= MILTER_P_NORCPT | MILTER_P_NR_RCPT;
    if (!cb->data) want |= MILTER_P_NODATA | MILTER_P_NR_DATA;
    if (!cb->header) want |= MILTER_P_NOHDRS | MILTER_P_NR_HDR;
    if (!cb->eoh) want |= MILTER_P_NOEOH | MILTER_P_NR_EOH;
    if (!cb->body) want |= MILTER_P_NOBODY | MILTER_P_NR_BODY;
    if (!cb->unknown) want |= MILTER_P_NOUNKNOWN | MILTER_P_NR_UNKN;
    if (nr & MILTER_STAGE_CONNECT) want |= MILTER_P_NR_CONN;
    if (nr & MILTER_STAGE_HELO) want |= MILTER_P_NR_HELO;
    if (nr & MILTER_STAGE_MAIL) want |= MILTER_P_NR_MAIL;
    if (nr & MILTER_STAGE_RCPT) want |= MILTER_P_NR_RCPT;
    if (nr & MILTER_STAGE_DATA) want |= MILTER_P_NR_DATA;
    if (nr & MILTER_STAGE_HEADER) want |= MILTER_P_NR_HDR;
    if (nr & MILTER_STAGE_EOH) want |= MILTER_P_NR_EOH;
    if (nr & MILTER_STAGE_BODY) want |= MILTER_P_NR_BODY;
    if (nr & MILTER_STAGE_UNKNOWN) want |= MILTER_P_NR_UNKN;

    s->protocol = want & mta_protocol; /* asking for more than offered is a protocol error */
    s->actions = (MILTER_ACT_ADDHDRS | MILTER_ACT_CHGHDRS | MILTER_ACT_QUARANTINE) & mta_actions;
    s->negotiated = true;

    milter_put_u32(reply, version);
    milter_put_u32(reply + 4, s->actions);
    milter_put_u32(reply + 8, s->protocol);
    milter_packet_append(out, MILTER_RESP_OPTNEG, reply, sizeof reply);
    return 0;
}

static void handle_macros(struct session *s, const struct milter_packet *p)
{
    const char *d, *end;
    enum macro_level level;

    if (p->len == 0) return;
    level = (p->data[0] == MILTER_CMD_CONNECT || p->data[0] == MILTER_CMD_HELO ||
             p->data[0] == MILTER_CMD_UNKNOWN)
                ? LEVEL_CONNECTION
                : LEVEL_MESSAGE;
    d = scratch_copy(s, p) + 1;
    end = s->scratch.data + p->len;
    while (d < end) {
        const char *name = d, *value;
        d += strlen(d) + 1;
        if (d >= end) break; /* a name without a value */
        value = d;
        d += strlen(d) + 1;
        macro_set(s, name, value, level);
    }
}

/*
 * Sends (or, for a negotiated no-reply stage, holds) the verdict of a stage.
 * A held non-continue verdict is given at the next stage the MTA waits for.
 */
static void stage_done(struct session *s, uint32_t nr_flag, bool message_level,
                       const struct milter_reply *r, const char *stage, struct buf *out)
{
    if (s->protocol & nr_flag) {
        if (r->verdict == MILTER_CONTINUE) return;
        if (message_level && !s->msg_pending_set) {
            s->msg_pending = *r;
            s->msg_pending_set = true;
        } else if (!message_level && !s->conn_pending_set) {
            s->conn_pending = *r;
            s->conn_pending_set = true;
        }
        return;
    }
    append_reply(out, r, stage);
}

/* The pending verdict that overrides this stage's callback, or NULL. */
static const struct milter_reply *pending(const struct session *s, bool message_level)
{
    if (s->conn_pending_set) return &s->conn_pending;
    if (message_level && s->msg_pending_set) return &s->msg_pending;
    return NULL;
}

static int handle_connect(struct session *s, const struct milter_packet *p, struct buf *out)
{
    const char *d = scratch_copy(s, p), *host = d, *addr = "";
    size_t hlen = strlen(host);
    unsigned port = 0;
    int family;
    struct milter_reply r = milter_reply_of(MILTER_CONTINUE);

    if (hlen >= p->len) {
        err_set("milter connect without address family");
        return -1;
    }
    family = (unsigned char)d[hlen + 1];
    if (family != MILTER_FAMILY_UNKNOWN) {
        if (p->len < hlen + 4) {
            err_set("milter connect without port");
            return -1;
        }
        port = (unsigned)(unsigned char)d[hlen + 2] << 8 | (unsigned char)d[hlen + 3];
        addr = d + hlen + 4;
    }
    if (pending(s, false))
        r = *pending(s, false);
    else if (s->cb->connect)
        r = s->cb->connect(&s->pub, host, family, addr, port);
    stage_done(s, MILTER_P_NR_CONN, false, &r, "connect", out);
    return 0;
}

static struct milter_reply run_args_stage(struct session *s, const struct milter_packet *p,
                                          struct milter_reply (*fn)(struct milter_session *,
                                                                    const char *const *, size_t))
{
    size_t n = split_args(s, p);
    if (pending(s, true)) return *pending(s, true);
    if (fn == NULL) return milter_reply_of(MILTER_CONTINUE);
    return fn(&s->pub, s->argv, n);
}

static int handle_header(struct session *s, const struct milter_packet *p, struct buf *out)
{
    const char *name = scratch_copy(s, p), *value;
    size_t nlen = strlen(name);
    struct milter_reply r = milter_reply_of(MILTER_CONTINUE);

    value = nlen < p->len ? name + nlen + 1 : ""; /* a header without value is tolerated */
    if (pending(s, true))
        r = *pending(s, true);
    else if (s->cb->header)
        r = s->cb->header(&s->pub, name, value);
    stage_done(s, MILTER_P_NR_HDR, true, &r, "header", out);
    return 0;
}

static void handle_body(struct session *s, const struct milter_packet *p, struct buf *out,
                        bool reply)
{
    struct milter_reply r = milter_reply_of(MILTER_CONTINUE);
    if (pending(s, true))
        r = *pending(s, true);
    else if (s->cb->body)
        r = s->cb->body(&s->pub, (const unsigned char *)p->data, p->len);
    if (reply)
        stage_done(s, MILTER_P_NR_BODY, true, &r, "body", out);
    else if (r.verdict != MILTER_CONTINUE && !s->msg_pending_set) {
        s->msg_pending = r; /* the last chunk came with EOM: its verdict is the final one */
        s->msg_pending_set = true;
    }
}

static void handle_eom(struct session *s, const struct milter_packet *p, struct buf *out)
{
    struct milter_actions a = {s};
    struct milter_reply r = milter_reply_of(MILTER_CONTINUE);

    if (p->len > 0) handle_body(s, p, out, false);
    buf_clear(&s->mods);
    if (pending(s, true))
        r = *pending(s, true);
    else if (s->cb->eom)
        r = s->cb->eom(&s->pub, &a);
    if ((r.verdict == MILTER_CONTINUE || r.verdict == MILTER_ACCEPT) && s->mods.len)
        buf_append(out, s->mods.data, s->mods.len);
    append_reply(out, &r, "eom");
    message_reset(s);
}

/* One packet; 0 go on, 1 quit, -1 close with err_set(). */
static int session_packet(struct session *s, const struct milter_packet *p, struct buf *out)
{
    struct milter_reply r;

    if (!s->negotiated && p->cmd != MILTER_CMD_OPTNEG && p->cmd != MILTER_CMD_QUIT) {
        err_set("milter command '%c' before option negotiation", p->cmd);
        return -1;
    }
    switch (p->cmd) {
    case MILTER_CMD_OPTNEG:
        return handle_optneg(s, p, out);
    case MILTER_CMD_MACRO:
        handle_macros(s, p);
        return 0;
    case MILTER_CMD_CONNECT:
        return handle_connect(s, p, out);
    case MILTER_CMD_HELO:
        r = milter_reply_of(MILTER_CONTINUE);
        if (pending(s, false))
            r = *pending(s, false);
        else if (s->cb->helo)
            r = s->cb->helo(&s->pub, scratch_copy(s, p));
        stage_done(s, MILTER_P_NR_HELO, false, &r, "helo", out);
        return 0;
    case MILTER_CMD_MAIL:
        if (s->in_message) message_reset(s); /* MAIL without abort: a new message anyway */
        s->in_message = true;
        r = run_args_stage(s, p, s->cb->mail);
        stage_done(s, MILTER_P_NR_MAIL, true, &r, "mail", out);
        return 0;
    case MILTER_CMD_RCPT:
        s->in_message = true;
        r = run_args_stage(s, p, s->cb->rcpt);
        stage_done(s, MILTER_P_NR_RCPT, true, &r, "rcpt", out);
        return 0;
    case MILTER_CMD_DATA:
        s->in_message = true;
        r = milter_reply_of(MILTER_CONTINUE);
        if (pending(s, true))
            r = *pending(s, true);
        else if (s->cb->data)
            r = s->cb->data(&s->pub);
        stage_done(s, MILTER_P_NR_DATA, true, &r, "data", out);
        return 0;
    case MILTER_CMD_HEADER:
        s->in_message = true;
        return handle_header(s, p, out);
    case MILTER_CMD_EOH:
        s->in_message = true;
        r = milter_reply_of(MILTER_CONTINUE);
        if (pending(s, true))
            r = *pending(s, true);
        else if (s->cb->eoh)
            r = s->cb->eoh(&s->pub);
        stage_done(s, MILTER_P_NR_EOH, true, &r, "eoh", out);
        return 0;
    case MILTER_CMD_BODY:
        s->in_message = true;
        handle_body(s, p, out, true);
        return 0;
    case MILTER_CMD_BODYEOB:
        handle_eom(s, p, out);
        return 0;
    case MILTER_CMD_UNKNOWN:
        r = milter_reply_of(MILTER_CONTINUE);
        if (pending(s, false))
            r = *pending(s, false);
        else if (s->cb->unknown)
            r = s->cb->unknown(&s->pub, scratch_copy(s, p));
        stage_done(s, MILTER_P_NR_UNKN, false, &r, "unknown", out);
        return 0;
    case MILTER_CMD_ABORT:
        if (s->cb->abort) s->cb->abort(&s->pub);
        message_reset(s);
        return 0;
    case MILTER_CMD_QUIT_NC: /* same connection, new SMTP session: forget it all */
        if (s->in_message && s->cb->abort) s->cb->abort(&s->pub);
        message_reset(s);
        macros_forget(s, LEVEL_CONNECTION);
        s->conn_pending_set = false;
        return 0;
    case MILTER_CMD_QUIT:
        if (s->in_message && s->cb->abort) s->cb->abort(&s->pub);
        message_reset(s);
        return 1;
    default:
        err_set("milter unknown command 0x%02x", (unsigned char)p->cmd);
        return -1;
    }
}

int milter_session_feed(struct milter_session *pub, const void *bytes, size_t n, struct buf *out)
{
    struct session *s = impl(pub);
    struct milter_packet p;
    int rc;

    milter_decoder_feed(&s->dec, bytes, n);
    while ((rc = milter_decoder_next(&s->dec, &p)) == 1) {
        rc = session_packet(s, &p, out);
        if (rc != 0) return rc;
    }
    return rc; /* 0: need more input; -1: malformed stream */
}

/* ---- end-of-message actions ---- */

static int header_name_valid(const char *name)
{
    const unsigned char *p = (const unsigned char *)name;
    if (*p == '\0') return 0;
    for (; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || *p == ':') return 0;
    return 1;
}

/* name NUL value NUL, the value with every line break turned into folding. */
static void append_header_fields(struct buf *b, const char *name, const char *value)
{
    const char *v;
    buf_append(b, name, strlen(name) + 1);
    for (v = value; *v; v++) {
        unsigned char c = (unsigned char)*v;
        if (c == '\r') continue;
        if (c == '\n') {
            if (v[1] == '\0') break; /* a trailing line break would leave an empty line */
            /* folding keeps its line break; a bare one would start a new header */
            if (v[1] == ' ' || v[1] == '\t')
                buf_append_char(b, '\n');
            else
                buf_append(b, "\n\t", 2);
            continue;
        }
        buf_append_char(b, c < 0x20 && c != '\t' ? ' ' : (char)c);
    }
    buf_append_char(b, '\0');
}

static int header_action(struct milter_actions *a, char cmd, bool with_index, unsigned index,
                         const char *name, const char *value, uint32_t needs)
{
    struct buf b = {0};
    unsigned char idx[4];

    if (!(a->s->actions & needs)) {
        err_set("milter action '%c' was not allowed by the MTA", cmd);
        return -1;
    }
    if (name == NULL || !header_name_valid(name)) {
        err_set("milter invalid header name");
        return -1;
    }
    if (with_index) {
        milter_put_u32(idx, index);
        buf_append(&b, idx, 4);
    }
    append_header_fields(&b, name, value ? value : "");
    milter_packet_append(&a->s->mods, cmd, b.data, b.len);
    buf_free(&b);
    return 0;
}

int milter_add_header(struct milter_actions *a, const char *name, const char *value)
{
    return header_action(a, MILTER_RESP_ADDHEADER, false, 0, name, value, MILTER_ACT_ADDHDRS);
}

int milter_insert_header(struct milter_actions *a, unsigned index, const char *name,
                         const char *value)
{
    return header_action(a, MILTER_RESP_INSHEADER, true, index, name, value, MILTER_ACT_ADDHDRS);
}

int milter_change_header(struct milter_actions *a, const char *name, unsigned index,
                         const char *value)
{
    if (index == 0) {
        err_set("milter header index is 1-based");
        return -1;
    }
    return header_action(a, MILTER_RESP_CHGHEADER, true, index, name, value, MILTER_ACT_CHGHDRS);
}

int milter_quarantine(struct milter_actions *a, const char *reason)
{
    struct buf b = {0};
    if (!(a->s->actions & MILTER_ACT_QUARANTINE)) {
        err_set("milter quarantine was not allowed by the MTA");
        return -1;
    }
    append_sanitised(&b, reason && *reason ? reason : "quarantined");
    milter_packet_append(&a->s->mods, MILTER_RESP_QUARANTINE, b.data, b.len);
    buf_free(&b);
    return 0;
}

/* ---- server ---- */

struct conn {
    int fd;
    bool tcp;
    struct milter_session *session;
    bool busy;          /* a worker took its event and is serving it */
    bool in_message;    /* copy of the session's state, for the sweeper */
    const char *doomed; /* the sweeper shut it down for this reason */
    int64_t last_active_ms;
    struct conn *prev, *next; /* all connections */
};

struct milter_server {
    char *listen;
    char *unix_path; /* NULL for TCP */
    dev_t unix_dev;
    ino_t unix_ino;
    int listen_fd;
    int port;
    int epoll_fd;
    int workers;
    int read_timeout_ms;
    int shutdown_timeout_ms;
    const struct milter_callbacks *cb;
    void *app;

    pthread_mutex_t lock;
    struct conn *conns; /* under lock */
    bool stopping, force_close;
    atomic_bool workers_exit;
    bool ran;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void unix_socket_remove(struct milter_server *srv)
{
    struct stat st;
    if (srv->unix_path == NULL) return;
    /* only our own socket: another server may have replaced it since */
    if (lstat(srv->unix_path, &st) == 0 && st.st_dev == srv->unix_dev && st.st_ino == srv->unix_ino)
        unlink(srv->unix_path);
    free(srv->unix_path);
    srv->unix_path = NULL;
}

/* The gid of group name, or -1 with err_set(). */
static int group_id(const char *name, gid_t *gid)
{
    struct group gr, *found = NULL;
    char buf[4096];
    if (getgrnam_r(name, &gr, buf, sizeof buf, &found) != 0 || found == NULL) {
        err_set("milter socket group %s not found", name);
        return -1;
    }
    *gid = found->gr_gid;
    return 0;
}

static int listen_unix(struct milter_server *srv, const char *path, const char *group)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    gid_t gid = (gid_t)-1;
    int fd;

    if (group != NULL && group_id(group, &gid) != 0) return -1;

    if (strlen(path) >= sizeof sa.sun_path || path[0] == '\0') {
        err_set("milter socket path empty or too long: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    if (lstat(path, &st) == 0) {
        int probe;
        if (!S_ISSOCK(st.st_mode)) {
            err_set("milter %s exists and is not a socket", path);
            return -1;
        }
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(probe);
            err_set("milter %s: another server is listening there", path);
            return -1;
        }
        if (probe >= 0) close(probe);
        unlink(path); /* stale: left by a process that died */
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        err_set("milter bind %s: %s", sa.sun_path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    if (chmod(path, 0660) != 0 || (group != NULL && chown(path, (uid_t)-1, gid) != 0) ||
        listen(fd, SOMAXCONN) != 0 || lstat(path, &st) != 0) {
        err_set("milter listen %s: %s", sa.sun_path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    srv->unix_path = xstrdup(path);
    srv->unix_dev = st.st_dev;
    srv->unix_ino = st.st_ino;
    return fd;
}

static int listen_inet(struct milter_server *srv, const char *spec)
{
    struct addrinfo hints = {0}, *res = NULL;
    const char *colon = strrchr(spec, ':');
    char host[256];
    size_t hlen;
    int fd = -1, one = 1, rc;

    if (colon == NULL || colon == spec || colon[1] == '\0') {
        err_set("milter listen address needs HOST:PORT: %s", spec);
        return -1;
    }
    hlen = (size_t)(colon - spec);
    if (spec[0] == '[' && hlen >= 2 && spec[hlen - 1] == ']') {
        spec++;
        hlen -= 2;
    }
    if (hlen >= sizeof host) {
        err_set("milter listen host too long");
        return -1;
    }
    memcpy(host, spec, hlen);
    host[hlen] = '\0';
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0) {
        err_set("milter listen address %s: %s", spec, gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    /* SO_REUSEADDR: re-binding right after a restart must work (libmilter's failure) */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        err_set("milter listen %s: %s", srv->listen, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
            srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                       : ((struct sockaddr_in *)&ss)->sin_port);
    }
    return fd;
}

struct milter_server *milter_server_new(const struct milter_server_config *cfg,
                                        const struct milter_callbacks *cb, void *app)
{
    struct milter_server *srv;
    const char *l = cfg->listen;

    if (l == NULL) {
        err_set("milter listen address missing");
        return NULL;
    }
    srv = xcalloc(1, sizeof *srv);
    srv->listen = xstrdup(l);
    srv->cb = cb;
    srv->app = app;
    srv->epoll_fd = -1;
    srv->workers = cfg->workers > 0 ? cfg->workers : WORKERS_DEFAULT;
    srv->read_timeout_ms = cfg->read_timeout_ms > 0 ? cfg->read_timeout_ms : READ_TIMEOUT_DEF_MS;
    srv->shutdown_timeout_ms =
        cfg->shutdown_timeout_ms > 0 ? cfg->shutdown_timeout_ms : SHUTDOWN_DEF_MS;
    if (strncmp(l, "unix:", 5) == 0)
        srv->listen_fd = listen_unix(srv, l + 5, cfg->unix_group);
    else if (strncmp(l, "local:", 6) == 0)
        srv->listen_fd = listen_unix(srv, l + 6, cfg->unix_group);
    else if (strncmp(l, "inet:", 5) == 0)
        srv->listen_fd = listen_inet(srv, l + 5);
    else if (strncmp(l, "inet6:", 6) == 0)
        srv->listen_fd = listen_inet(srv, l + 6);
    else {
        err_set("milter listen address must start with unix: or inet: (%s)", l);
        srv->listen_fd = -1;
    }
    if (srv->listen_fd < 0) {
        free(srv->listen);
        free(srv);
        return NULL;
    }
    pthread_mutex_init(&srv->lock, NULL);
    return srv;
}

int milter_server_port(const struct milter_server *srv)
{
    return srv->port;
}

void milter_server_free(struct milter_server *srv)
{
    if (srv == NULL) return;
    if (srv->listen_fd >= 0) close(srv->listen_fd);
    unix_socket_remove(srv);
    if (srv->epoll_fd >= 0) close(srv->epoll_fd);
    pthread_mutex_destroy(&srv->lock);
    free(srv->listen);
    free(srv);
}

/* Unlinks c from the connection list; caller holds the lock. */
static void conn_unlink(struct milter_server *srv, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
}

/* Ends a connection nobody else can reach any more (unlinked, not in epoll). */
static void conn_destroy(struct conn *c, const char *why)
{
    if (c->in_message || milter_session_in_message(c->session))
        log_warn("milter event=close_in_message reason=\"%s\"", why);
    milter_session_free(c->session);
    close(c->fd);
    free(c);
}

/* Sends all of out; false on error or when the MTA stops reading for timeout_ms. */
static bool send_all(int fd, const struct buf *out, int timeout_ms)
{
    size_t done = 0;
    while (done < out->len) {
        ssize_t n = send(fd, out->data + done, out->len - done, MSG_NOSIGNAL);
        if (n > 0) {
            done += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, timeout_ms) <= 0) return false;
        } else {
            return false;
        }
    }
    return true;
}

/* One turn of a worker on a connection: read what is there, answer, write once. */
static void conn_turn(struct milter_server *srv, struct conn *c, char *rbuf, size_t rsize,
                      struct buf *out)
{
    const char *why = NULL;
    int reads = 0, rc = 0;
    bool replied = false;

    for (;;) {
        ssize_t n = recv(c->fd, rbuf, rsize, 0);
        if (n > 0) {
            replied = false;
            if (c->tcp) {
                /*
                 * Postfix writes the macros and the command that follows as two
                 * packets and then waits: with Nagle on its side, the second one
                 * waits for our ACK, which Linux would delay by up to 40 ms. Quick
                 * ACK mode is reset by the kernel, so it is set again on every read.
                 */
                int one = 1;
                setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
            }
            rc = milter_session_feed(c->session, rbuf, (size_t)n, out);
            if (out->len && !send_all(c->fd, out, srv->read_timeout_ms)) {
                why = "write failed";
                buf_clear(out);
                break;
            }
            if (out->len) {
                replied = true;
                buf_clear(out);
                milter_session_replied(c->session);
            }
            if (rc == 1) {
                why = "quit";
                break;
            }
            if (rc < 0) {
                log_warn("milter event=protocol_error reason=\"%s\"", err_msg());
                why = "protocol error";
                break;
            }
            if (++reads >= READS_PER_TURN) break; /* let other connections have a turn */
        } else if (n == 0) {
            why = "disconnected";
            break;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /*
             * The MTA is not waiting for us (no reply went out: macros, or headers
             * and body chunks negotiated as no-reply), so its next packet is
             * microseconds away. Waiting for it here briefly saves a round through
             * epoll_ctl and epoll_wait for each such packet.
             */
            struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
            bool stopping;
            if (replied || reads == 0) break;
            pthread_mutex_lock(&srv->lock);
            stopping = srv->stopping;
            pthread_mutex_unlock(&srv->lock);
            if (stopping || poll(&pfd, 1, LINGER_MS) <= 0) break;
            replied = true; /* one linger per quiet spell */
        } else {
            why = "read failed";
            break;
        }
    }

    pthread_mutex_lock(&srv->lock);
    c->in_message = milter_session_in_message(c->session);
    if (why == NULL && (srv->force_close || (srv->stopping && !c->in_message))) why = "shutdown";
    if (why == NULL) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.ptr = c};
        c->busy = false;
        c->last_active_ms = now_ms();
        if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) != 0) why = "epoll failed";
    }
    if (why != NULL) {
        if (c->doomed) why = c->doomed;
        conn_unlink(srv, c);
    }
    pthread_mutex_unlock(&srv->lock);
    if (why != NULL) conn_destroy(c, why);
}

static void accept_all(struct milter_server *srv);

/*
 * Every worker waits on the shared epoll set. EPOLLONESHOT hands each event of a
 * connection to exactly one worker, which serves it inline and re-arms it: no
 * dispatcher thread, no queue, one wake-up per packet.
 */
static void *worker_main(void *arg)
{
    struct milter_server *srv = arg;
    size_t rsize = 64 * 1024 + 16;
    char *rbuf = xmalloc(rsize);
    struct buf out = {0};

    while (!atomic_load(&srv->workers_exit)) {
        struct epoll_event ev;
        struct conn *c;
        int n = epoll_wait(srv->epoll_fd, &ev, 1, 100);
        if (n <= 0) continue;
        c = ev.data.ptr;
        if (c == NULL) {
            accept_all(srv);
            continue;
        }
        pthread_mutex_lock(&srv->lock);
        c->busy = true;
        pthread_mutex_unlock(&srv->lock);
        conn_turn(srv, c, rbuf, rsize, &out);
    }
    free(rbuf);
    buf_free(&out);
    return NULL;
}

/*
 * (Re)arms the listening socket in the epoll set, one-shot: one worker takes a
 * new connection and accepts until the backlog is empty, then re-arms it. Level
 * triggered, every idle worker woke for each connection and all but one found
 * nothing to accept (7 wake-ups per connection with 8 workers). Caller holds
 * srv->lock (run() may close the listener); a closed listener is left alone.
 */
static int listener_arm(struct milter_server *srv, int op)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = NULL};
    if (srv->listen_fd < 0) return 0;
    return epoll_ctl(srv->epoll_fd, op, srv->listen_fd, &ev);
}

static void accept_all(struct milter_server *srv)
{
    for (;;) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT};
        struct conn *c;
        int fd, one = 1;

        /* under the lock: run() may close the listener at any time */
        pthread_mutex_lock(&srv->lock);
        fd = srv->listen_fd < 0 ? -1
                                : accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = srv->listen_fd < 0 ? EAGAIN : errno;
            if (e == EINTR || e == ECONNABORTED) {
                pthread_mutex_unlock(&srv->lock);
                continue;
            }
            if (e != EAGAIN && e != EWOULDBLOCK) {
                pthread_mutex_unlock(&srv->lock);
                log_warn("milter event=accept_failed error=\"%s\"", strerror(e));
                poll(NULL, 0, 10); /* out of descriptors: do not spin */
                pthread_mutex_lock(&srv->lock);
            }
            listener_arm(srv, EPOLL_CTL_MOD);
            pthread_mutex_unlock(&srv->lock);
            return;
        }
        if (srv->unix_path == NULL) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c = xcalloc(1, sizeof *c);
        c->fd = fd;
        c->tcp = srv->unix_path == NULL;
        c->session = milter_session_new(srv->cb, srv->app);
        c->last_active_ms = now_ms();
        ev.data.ptr = c;
        c->next = srv->conns;
        if (srv->conns) srv->conns->prev = c;
        srv->conns = c;
        if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            conn_unlink(srv, c);
            pthread_mutex_unlock(&srv->lock);
            log_warn("milter event=epoll_failed error=\"%s\"", strerror(errno));
            conn_destroy(c, "epoll failed");
            continue;
        }
        pthread_mutex_unlock(&srv->lock);
    }
}

/*
 * Ends idle connections that timed out, or (stopping) that are between messages,
 * or (force) all idle ones. It never frees one: it shuts the socket down, so the
 * connection becomes readable and the worker that takes the event closes it (only
 * workers free connections, so none is freed under another worker's feet).
 * Returns the number of connections left.
 */
static size_t sweep(struct milter_server *srv)
{
    struct conn *c;
    int64_t now = now_ms();
    size_t left = 0;

    pthread_mutex_lock(&srv->lock);
    for (c = srv->conns; c; c = c->next) {
        left++;
        if (c->busy || c->doomed) continue;
        if (srv->force_close || (srv->stopping && !c->in_message))
            c->doomed = "shutdown";
        else if (now - c->last_active_ms > srv->read_timeout_ms)
            c->doomed = "read timeout";
        if (c->doomed) shutdown(c->fd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&srv->lock);
    return left;
}

int milter_server_run(struct milter_server *srv, volatile sig_atomic_t *stop)
{
    pthread_t *threads;
    int64_t deadline = 0;
    int i, started = 0;

    if (srv->ran || srv->listen_fd < 0) {
        err_set("milter server already ran");
        return -1;
    }
    srv->ran = true;
    srv->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (srv->epoll_fd < 0 || listener_arm(srv, EPOLL_CTL_ADD) != 0) {
        err_set("milter epoll: %s", strerror(errno));
        return -1;
    }
    threads = xcalloc((size_t)srv->workers, sizeof *threads);
    for (i = 0; i < srv->workers; i++)
        if (pthread_create(&threads[started], NULL, worker_main, srv) == 0) started++;
    if (started == 0) {
        free(threads);
        err_set("milter could not start worker threads");
        return -1;
    }
    log_info("milter event=listening address=%s workers=%d", srv->listen, started);

    for (;;) {
        int64_t now;
        size_t left;

        poll(NULL, 0, 100);
        now = now_ms();
        if (*stop && !srv->stopping) {
            pthread_mutex_lock(&srv->lock);
            epoll_ctl(srv->epoll_fd, EPOLL_CTL_DEL, srv->listen_fd, NULL);
            close(srv->listen_fd);
            srv->listen_fd = -1;
            srv->stopping = true;
            pthread_mutex_unlock(&srv->lock);
            unix_socket_remove(srv);
            deadline = now + srv->shutdown_timeout_ms;
            log_info("milter event=stopping");
        }
        if (srv->stopping && now >= deadline && !srv->force_close) {
            pthread_mutex_lock(&srv->lock);
            srv->force_close = true;
            pthread_mutex_unlock(&srv->lock);
            log_warn("milter event=shutdown_timeout action=close_remaining");
        }
        left = sweep(srv);
        if (srv->stopping && left == 0) break;
    }

    atomic_store(&srv->workers_exit, true);
    for (i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    log_info("milter event=stopped");
    return 0;
}
