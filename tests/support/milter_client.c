/*
 * milter_client - the MTA side of the milter protocol for tests. See milter_client.h.
 *
 * It reuses the codec of src/mta/milter.c (packet framing only), so a framing bug
 * there would show up on both sides; the tests therefore also check raw bytes.
 */
#include "milter_client.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "mta/milter.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct milter_client {
    int fd;
    int timeout_ms;
    uint32_t actions, protocol; /* what the filter chose */
    struct buf out;             /* packets not yet sent */
    bool packet_writes;         /* flush every packet on its own */
    struct milter_decoder dec;
};

static int connect_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;
    if (strlen(path) >= sizeof sa.sun_path) {
        err_set("socket path too long");
        return -1;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        err_set("connect %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static int connect_inet(const char *spec)
{
    const char *colon = strrchr(spec, ':');
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    char host[256];
    int fd, one = 1;
    size_t hlen;

    if (colon == NULL || (hlen = (size_t)(colon - spec)) >= sizeof host) {
        err_set("bad address %s", spec);
        return -1;
    }
    memcpy(host, spec, hlen);
    host[hlen] = '\0';
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
        err_set("cannot resolve %s", spec);
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        err_set("connect %s: %s", spec, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

struct milter_client *milter_client_open(const char *address, int timeout_ms)
{
    struct milter_client *c;
    int fd;

    if (strncmp(address, "unix:", 5) == 0)
        fd = connect_unix(address + 5);
    else if (strncmp(address, "inet:", 5) == 0)
        fd = connect_inet(address + 5);
    else {
        err_set("address must start with unix: or inet:");
        fd = -1;
    }
    if (fd < 0) return NULL;
    c = xcalloc(1, sizeof *c);
    c->fd = fd;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
    milter_decoder_init(&c->dec, 0);
    return c;
}

void milter_client_free(struct milter_client *c)
{
    if (c == NULL) return;
    close(c->fd);
    buf_free(&c->out);
    milter_decoder_free(&c->dec);
    free(c);
}

uint32_t milter_client_filter_actions(const struct milter_client *c)
{
    return c->actions;
}

uint32_t milter_client_filter_protocol(const struct milter_client *c)
{
    return c->protocol;
}

static int flush(struct milter_client *c)
{
    size_t done = 0;
    while (done < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + done, c->out.len - done, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            err_set("send: %s", strerror(errno));
            buf_clear(&c->out);
            return -1;
        }
        done += (size_t)n;
    }
    buf_clear(&c->out);
    return 0;
}

static void queue(struct milter_client *c, char cmd, const void *data, size_t len)
{
    milter_packet_append(&c->out, cmd, data, len);
    if (c->packet_writes) flush(c); /* an error shows at the next read */
}

void milter_client_postfix_writes(struct milter_client *c)
{
    int zero = 0;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &zero, sizeof zero);
    c->packet_writes = true;
}

/* Flushes pending output, then reads one packet (valid until the next read). */
static int read_packet(struct milter_client *c, struct milter_packet *p)
{
    char rbuf[65536];
    int rc;

    if (c->out.len && flush(c) != 0) return -1;
    while ((rc = milter_decoder_next(&c->dec, p)) == 0) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        ssize_t n;
        if (poll(&pfd, 1, c->timeout_ms) <= 0) {
            err_set("timeout waiting for the filter");
            return -1;
        }
        n = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            err_set("filter closed the connection");
            return -1;
        }
        milter_decoder_feed(&c->dec, rbuf, (size_t)n);
    }
    return rc == 1 ? 0 : -1;
}

static void reply_from_packet(struct milter_client_reply *r, const struct milter_packet *p)
{
    size_t n = p->len < sizeof r->text - 1 ? p->len : sizeof r->text - 1;
    r->cmd = p->cmd;
    memcpy(r->text, p->data, n);
    r->text[n] = '\0';
}

/* Reads the reply to a stage, skipping progress packets. */
static int read_reply(struct milter_client *c, struct milter_client_reply *r)
{
    struct milter_packet p;
    do {
        if (read_packet(c, &p) != 0) return -1;
    } while (p.cmd == MILTER_RESP_PROGRESS);
    if (strchr("cartdy", p.cmd) == NULL || p.cmd == '\0') {
        err_set("unexpected reply '%c' to a stage", p.cmd);
        return -1;
    }
    reply_from_packet(r, &p);
    return 0;
}

/* Sends a stage packet (unless switched off) and reads its reply (unless no-reply). */
static int stage(struct milter_client *c, char cmd, uint32_t no_flag, uint32_t nr_flag,
                 const void *data, size_t len, struct milter_client_reply *r)
{
    struct milter_client_reply ignored;
    if (r == NULL) r = &ignored;
    r->cmd = 0;
    r->text[0] = '\0';
    if (c->protocol & no_flag) return 0;
    queue(c, cmd, data, len);
    if (c->protocol & nr_flag) return c->out.len > 65536 ? flush(c) : 0;
    return read_reply(c, r);
}

int milter_client_negotiate(struct milter_client *c, uint32_t actions, uint32_t protocol)
{
    unsigned char d[12];
    struct milter_packet p;

    milter_put_u32(d, 6);
    milter_put_u32(d + 4, actions);
    milter_put_u32(d + 8, protocol);
    queue(c, MILTER_CMD_OPTNEG, d, sizeof d);
    if (read_packet(c, &p) != 0) return -1;
    if (p.cmd != MILTER_RESP_OPTNEG || p.len < 12) {
        err_set("bad option negotiation reply '%c' len=%zu", p.cmd, p.len);
        return -1;
    }
    if (milter_get_u32(p.data) != 6) {
        err_set("filter chose version %lu", (unsigned long)milter_get_u32(p.data));
        return -1;
    }
    c->actions = milter_get_u32(p.data + 4);
    c->protocol = milter_get_u32(p.data + 8);
    if ((c->actions & ~actions) || (c->protocol & ~protocol)) {
        err_set("filter asked for flags that were not offered");
        return -1;
    }
    return 0;
}

int milter_client_macros(struct milter_client *c, char stage_cmd, const char *const *pairs,
                         size_t n_pairs)
{
    struct buf b = {0};
    size_t i;
    buf_append_char(&b, stage_cmd);
    for (i = 0; i < 2 * n_pairs; i++)
        buf_append(&b, pairs[i], strlen(pairs[i]) + 1);
    queue(c, MILTER_CMD_MACRO, b.data, b.len);
    buf_free(&b);
    return 0;
}

int milter_client_connect(struct milter_client *c, const char *host, char family, const char *addr,
                          unsigned port, struct milter_client_reply *reply)
{
    struct buf b = {0};
    unsigned char pb[2] = {(unsigned char)(port >> 8), (unsigned char)port};
    int rc;

    buf_append(&b, host, strlen(host) + 1);
    buf_append_char(&b, family);
    if (family != 'U') {
        buf_append(&b, pb, 2);
        buf_append(&b, addr, strlen(addr) + 1);
    }
    rc = stage(c, MILTER_CMD_CONNECT, MILTER_P_NOCONNECT, MILTER_P_NR_CONN, b.data, b.len, reply);
    buf_free(&b);
    return rc;
}

int milter_client_helo(struct milter_client *c, const char *name, struct milter_client_reply *reply)
{
    return stage(c, MILTER_CMD_HELO, MILTER_P_NOHELO, MILTER_P_NR_HELO, name, strlen(name) + 1,
                 reply);
}

static int args_stage(struct milter_client *c, char cmd, uint32_t no, uint32_t nr,
                      const char *const *args, size_t n, struct milter_client_reply *reply)
{
    struct buf b = {0};
    size_t i;
    int rc;
    for (i = 0; i < n; i++)
        buf_append(&b, args[i], strlen(args[i]) + 1);
    rc = stage(c, cmd, no, nr, b.data, b.len, reply);
    buf_free(&b);
    return rc;
}

int milter_client_mail(struct milter_client *c, const char *const *args, size_t n_args,
                       struct milter_client_reply *reply)
{
    return args_stage(c, MILTER_CMD_MAIL, MILTER_P_NOMAIL, MILTER_P_NR_MAIL, args, n_args, reply);
}

int milter_client_rcpt(struct milter_client *c, const char *const *args, size_t n_args,
                       struct milter_client_reply *reply)
{
    return args_stage(c, MILTER_CMD_RCPT, MILTER_P_NORCPT, MILTER_P_NR_RCPT, args, n_args, reply);
}

int milter_client_data(struct milter_client *c, struct milter_client_reply *reply)
{
    return stage(c, MILTER_CMD_DATA, MILTER_P_NODATA, MILTER_P_NR_DATA, NULL, 0, reply);
}

int milter_client_header(struct milter_client *c, const char *name, const char *value,
                         struct milter_client_reply *reply)
{
    struct buf b = {0};
    int rc;
    buf_append(&b, name, strlen(name) + 1);
    buf_append(&b, value, strlen(value) + 1);
    rc = stage(c, MILTER_CMD_HEADER, MILTER_P_NOHDRS, MILTER_P_NR_HDR, b.data, b.len, reply);
    buf_free(&b);
    return rc;
}

int milter_client_eoh(struct milter_client *c, struct milter_client_reply *reply)
{
    return stage(c, MILTER_CMD_EOH, MILTER_P_NOEOH, MILTER_P_NR_EOH, NULL, 0, reply);
}

int milter_client_body(struct milter_client *c, const void *data, size_t len,
                       struct milter_client_reply *reply)
{
    return stage(c, MILTER_CMD_BODY, MILTER_P_NOBODY, MILTER_P_NR_BODY, data, len, reply);
}

static void result_init(struct milter_client_result *res)
{
    memset(res, 0, sizeof *res);
}

void milter_client_result_free(struct milter_client_result *res)
{
    size_t i;
    for (i = 0; i < res->n_mods; i++) {
        free(res->mods[i].name);
        free(res->mods[i].value);
    }
    free(res->mods);
    result_init(res);
}

/* Parses one modification packet into res. */
static int add_mod(struct milter_client_result *res, const struct milter_packet *p)
{
    struct milter_client_mod m = {.cmd = p->cmd};
    const char *d = p->data, *end = p->data + p->len;

    if (p->cmd == MILTER_RESP_INSHEADER || p->cmd == MILTER_RESP_CHGHEADER) {
        if (p->len < 4) goto bad;
        m.index = milter_get_u32(d);
        d += 4;
    }
    if (d >= end || end[-1] != '\0') goto bad;
    m.name = xstrdup(d);
    if (p->cmd != MILTER_RESP_QUARANTINE) {
        d += strlen(d) + 1;
        if (d >= end) {
            free(m.name);
            goto bad;
        }
        m.value = xstrdup(d);
    }
    res->mods = xrealloc(res->mods, (res->n_mods + 1) * sizeof *res->mods);
    res->mods[res->n_mods++] = m;
    return 0;
bad:
    err_set("malformed modification '%c'", p->cmd);
    return -1;
}

int milter_client_eom(struct milter_client *c, struct milter_client_result *res)
{
    struct milter_packet p;
    size_t i;

    result_init(res);
    res->stage = MILTER_CMD_BODYEOB;
    queue(c, MILTER_CMD_BODYEOB, NULL, 0);
    for (;;) {
        if (read_packet(c, &p) != 0) return -1;
        if (p.cmd == MILTER_RESP_PROGRESS) continue;
        if (strchr("cartdy", p.cmd) != NULL && p.cmd != '\0') break;
        if (p.cmd == '\0' || strchr("hmiqbe+-", p.cmd) == NULL) {
            err_set("unexpected packet '%c' at end of message", p.cmd);
            return -1;
        }
        if (add_mod(res, &p) != 0) return -1;
    }
    reply_from_packet(&res->reply, &p);
    for (i = 0; i < res->n_mods; i++)
        if (res->mods[i].cmd == MILTER_RESP_QUARANTINE) res->quarantine = res->mods[i].name;
    return 0;
}

int milter_client_abort(struct milter_client *c)
{
    queue(c, MILTER_CMD_ABORT, NULL, 0);
    return flush(c);
}

int milter_client_quit_nc(struct milter_client *c)
{
    queue(c, MILTER_CMD_QUIT_NC, NULL, 0);
    return flush(c);
}

int milter_client_quit(struct milter_client *c)
{
    queue(c, MILTER_CMD_QUIT, NULL, 0);
    return flush(c);
}

int milter_client_send_raw(struct milter_client *c, const void *bytes, size_t len)
{
    buf_append(&c->out, bytes, len);
    return flush(c);
}

int milter_client_end_input(struct milter_client *c)
{
    if (c->out.len && flush(c) != 0) return -1;
    if (shutdown(c->fd, SHUT_WR) != 0) {
        err_set("shutdown: %s", strerror(errno));
        return -1;
    }
    return 0;
}

bool milter_client_wait_closed(struct milter_client *c, int timeout_ms)
{
    char rbuf[4096];
    for (;;) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        ssize_t n;
        if (poll(&pfd, 1, timeout_ms) <= 0) return false;
        n = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (n == 0 || (n < 0 && errno != EINTR)) return true;
    }
}

/* A stage reply that ends the message ('c' or no reply continue). */
static bool decisive(const struct milter_client_reply *r)
{
    return r->cmd != 0 && r->cmd != MILTER_RESP_CONTINUE;
}

/* Sends the header block of the raw message; returns where the body starts. */
static int send_headers(struct milter_client *c, const char *msg, size_t len, size_t *body_at,
                        struct milter_client_result *res)
{
    struct buf name = {0}, value = {0};
    size_t pos = 0;
    int rc = 0;
    bool have = false;

    for (;;) {
        size_t eol = pos, next;
        while (eol < len && msg[eol] != '\n')
            eol++;
        next = eol < len ? eol + 1 : len;
        if (eol > pos && msg[eol - 1] == '\r') eol--;
        if (pos < len && (msg[pos] == ' ' || msg[pos] == '\t') && have) {
            buf_append_char(&value, '\n');
            buf_append(&value, msg + pos, eol - pos);
            pos = next;
            continue;
        }
        if (have) {
            rc = milter_client_header(c, name.data, value.data ? value.data : "", &res->reply);
            have = false;
            if (rc != 0 || decisive(&res->reply)) {
                res->stage = MILTER_CMD_HEADER;
                break;
            }
        }
        if (pos >= len || eol == pos) { /* end of headers */
            pos = next;
            break;
        }
        {
            const char *colon = memchr(msg + pos, ':', eol - pos);
            size_t vstart;
            if (colon == NULL) { /* not a header: the body starts here */
                break;
            }
            buf_clear(&name);
            buf_clear(&value);
            buf_append(&name, msg + pos, (size_t)(colon - (msg + pos)));
            vstart = (size_t)(colon - msg) + 1;
            if (vstart < eol && msg[vstart] == ' ' && !(c->protocol & MILTER_P_HDR_LEADSPC))
                vstart++;
            buf_append(&value, msg + vstart, eol - vstart);
            have = true;
        }
        pos = next;
    }
    buf_free(&name);
    buf_free(&value);
    *body_at = pos;
    return rc;
}

int milter_client_message(struct milter_client *c, const struct milter_client_envelope *env,
                          struct milter_client_result *res)
{
    const char *qid_pairs[2] = {"i", env->queue_id};
    struct buf body = {0};
    size_t i, body_at = 0, accepted = 0, off;
    int rc;

    result_init(res);
    if (env->auth_authen) {
        const char *pairs[2] = {"{auth_authen}", env->auth_authen};
        milter_client_macros(c, MILTER_CMD_MAIL, pairs, 1);
    }
    res->stage = MILTER_CMD_MAIL;
    if ((rc = milter_client_mail(c, &env->sender, 1, &res->reply)) != 0) return rc;
    if (decisive(&res->reply)) goto stopped;
    for (i = 0; i < env->n_rcpts; i++) {
        res->stage = MILTER_CMD_RCPT;
        if ((rc = milter_client_rcpt(c, &env->rcpts[i], 1, &res->reply)) != 0) return rc;
        if (res->reply.cmd == MILTER_RESP_REJECT || res->reply.cmd == MILTER_RESP_TEMPFAIL ||
            (res->reply.cmd == MILTER_RESP_REPLYCODE))
            res->rcpts_rejected++;
        else if (decisive(&res->reply))
            goto stopped; /* accept or discard: the message leaves the filter */
        else
            accepted++;
    }
    if (accepted == 0 && env->n_rcpts > 0) goto stopped;
    if (env->queue_id) milter_client_macros(c, MILTER_CMD_DATA, qid_pairs, 1);
    res->stage = MILTER_CMD_DATA;
    if ((rc = milter_client_data(c, &res->reply)) != 0) return rc;
    if (decisive(&res->reply)) goto stopped;
    if ((rc = send_headers(c, env->message, env->message_len, &body_at, res)) != 0) return rc;
    if (decisive(&res->reply)) goto stopped;
    res->stage = MILTER_CMD_EOH;
    if ((rc = milter_client_eoh(c, &res->reply)) != 0) return rc;
    if (decisive(&res->reply)) goto stopped;

    /* the body in SMTP form: CRLF line ends */
    for (off = body_at; off < env->message_len; off++) {
        if (env->message[off] == '\n' && (off == body_at || env->message[off - 1] != '\r'))
            buf_append_char(&body, '\r');
        buf_append_char(&body, env->message[off]);
    }
    res->stage = MILTER_CMD_BODY;
    for (off = 0; off < body.len; off += MILTER_BODY_CHUNK_BYTES) {
        size_t n =
            body.len - off < MILTER_BODY_CHUNK_BYTES ? body.len - off : MILTER_BODY_CHUNK_BYTES;
        if ((rc = milter_client_body(c, body.data + off, n, &res->reply)) != 0) break;
        if (decisive(&res->reply)) break;
    }
    buf_free(&body);
    if (rc != 0) return rc;
    if (decisive(&res->reply)) goto stopped;
    if (env->queue_id) milter_client_macros(c, MILTER_CMD_BODYEOB, qid_pairs, 1);
    {
        size_t rejected = res->rcpts_rejected;
        rc = milter_client_eom(c, res);
        res->rcpts_rejected = rejected;
    }
    return rc;

stopped:
    return milter_client_abort(c);
}
