/*
 * kv_redis - the shared kv backend: one hiredis connection per handle. See
 * kv.h for the contract and docs/redis-keys.md for the key layout.
 *
 * URI: "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?OPTION=VALUE&...]", port
 * 6379 and db 0 by default; USER and PASSWORD may be %-encoded. Options:
 *   connect_timeout_ms (default 1000) and timeout_ms (per command, default 2000).
 * On connect: AUTH if a password is given, SELECT if DB is not 0, and PING,
 * all in one round trip; the clamp script is loaded at the same time.
 *
 * Keys (docs/redis-keys.md): "mxw:" NS ":" then
 *   16 lowercase hex digits       a counter vector, a HASH with fields "0".."w-1"
 *   "=" and the key bytes         a blob whose key is all "safe" characters
 *   "#" and the key in hex        any other blob key (binary, ':', spaces...)
 * The part after the last ':' never contains ':', so namespaces (which may)
 * cannot collide, and its first character tells counters from blobs.
 *
 * Reads: kv_counters_get appends one HMGET per key and reads the n replies:
 * one round trip, parsed straight into the caller's array without allocating.
 * Values are clamped to 0..UINT32_MAX on read.
 * Writes: kv_batch_commit sends, in one round trip, MULTI, the writes, EXEC.
 * With expectations it first WATCHes their keys and GETs them (one more round
 * trip); a mismatch gives KV_CONFLICT after UNWATCH, and EXEC answering nil
 * (a watched key changed in between) gives KV_CONFLICT too. Increments are
 * HINCRBY per non-zero delta, then EXPIRE (ttl) or PERSIST (ttl 0), so a key
 * written without TTL lives forever as kv.h says. An increment with a
 * negative delta runs a small Lua script instead (EVALSHA, inside the same
 * MULTI), which sets a field that went below zero back to 0: a counter is
 * clamped at every step, exactly as in LMDB, so later increments count from
 * zero and the two backends agree. Above UINT32_MAX, Redis keeps counting
 * (HINCRBY is 64-bit) and reads clamp; the backends differ only there.
 * Redis does not roll back a transaction whose command fails at run time
 * (only possible if something else wrote our keys with another type); we
 * report KV_ERR and say so.
 *
 * Failures: connection refused, lost or timed out → KV_UNAVAILABLE, the
 * context is freed, and a later call reconnects, at most once a second (so a
 * dead Redis costs one connect attempt per second, not one per message).
 * A read that fails on a connection which had worked is retried once at once:
 * Redis may have restarted between two messages. Writes are never retried
 * (EXEC may have been applied before the connection dropped); instead a
 * commit on a connection idle for a second or more PINGs it first and
 * reconnects if it is dead, so a restart at low traffic costs nothing.
 * The calling thread blocks SIGPIPE while it talks to Redis, so a server that
 * dies mid-write cannot kill the process whatever its signal disposition.
 * Error replies LOADING, BUSY, MASTERDOWN and TRYAGAIN (a server that will
 * answer soon) are KV_UNAVAILABLE too; other error replies are KV_ERR.
 */
#include "store/kv_backend.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KV_REDIS_PREFIX             "mxw:"
#define KV_REDIS_DEFAULT_PORT       6379
#define KV_REDIS_CONNECT_TIMEOUT_MS 1000
#define KV_REDIS_COMMAND_TIMEOUT_MS 2000
#define KV_REDIS_RECONNECT_MS       1000
/* A connection idle this long is PINGed before a commit, which is never retried. */
#define KV_REDIS_IDLE_CHECK_MS 1000

/*
 * KEYS[1]: a counter hash. ARGV[1]: ttl seconds (0: no expiry). ARGV[2..]:
 * field, delta pairs. Clamps each field into 0..UINT32_MAX after adding.
 */
static const char kv_redis_clamp_script[] =
    "local k = KEYS[1]\n"
    "for i = 2, #ARGV, 2 do\n"
    "  local v = redis.call('HINCRBY', k, ARGV[i], ARGV[i + 1])\n"
    "  if v < 0 then redis.call('HSET', k, ARGV[i], 0)\n"
    "  elseif v > 4294967295 then redis.call('HSET', k, ARGV[i], 4294967295) end\n"
    "end\n"
    "if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', k, ARGV[1])\n"
    "else redis.call('PERSIST', k) end\n"
    "return 0\n";

struct kv_redis {
    char *host;
    int port;
    int db;
    char *user;     /* NULL: AUTH with the password alone */
    char *password; /* NULL: no AUTH */
    int connect_timeout_ms;
    int command_timeout_ms;
    char where[300]; /* "host:port/db" for messages */

    redisContext *ctx;        /* NULL while disconnected */
    bool ever_connected;      /* to log a reconnection, not the first connection */
    bool attempted;           /* last_attempt_ms is valid */
    uint64_t last_attempt_ms; /* CLOCK_MONOTONIC */
    uint64_t last_reply_ms;   /* CLOCK_MONOTONIC, when a reply last arrived */
    char clamp_sha[41];       /* SHA1 of kv_redis_clamp_script, from SCRIPT LOAD */
    struct buf out;           /* RESP being pipelined; reused across calls */
};

/* Blocks SIGPIPE in this thread for the span of one exchange with Redis. */
struct kv_sigpipe_guard {
    sigset_t old_mask;
    bool was_pending;
};

static void kv_sigpipe_block(struct kv_sigpipe_guard *g)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old_mask);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE) == 1;
}

static void kv_sigpipe_unblock(struct kv_sigpipe_guard *g)
{
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pending);
    if (!g->was_pending && sigismember(&pending, SIGPIPE) == 1) {
        /* Ours: consume it so that unblocking does not deliver it. */
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old_mask, NULL);
}

static uint64_t kv_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- RESP encoding: commands are written into r->out, then handed to hiredis at once ---- */

static void kv_resp_uint(struct buf *o, char lead, size_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    tmp[--i] = '\n';
    tmp[--i] = '\r';
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    tmp[--i] = lead;
    buf_append(o, tmp + i, sizeof tmp - i);
}

static void kv_resp_array(struct buf *o, size_t argc)
{
    kv_resp_uint(o, '*', argc);
}

static void kv_resp_bulk(struct buf *o, const void *data, size_t len)
{
    kv_resp_uint(o, '$', len);
    buf_append(o, data, len);
    buf_append(o, "\r\n", 2);
}

static void kv_resp_str(struct buf *o, const char *s)
{
    kv_resp_bulk(o, s, strlen(s));
}

static void kv_resp_int(struct buf *o, long long v)
{
    char tmp[24];
    int len = snprintf(tmp, sizeof tmp, "%lld", v);
    kv_resp_bulk(o, tmp, (size_t)len);
}

static const char kv_hex_digits[] = "0123456789abcdef";

/* Appends the bulk string "mxw:NS:%016x" in one reservation: it runs 1,500 times a message. */
static void kv_redis_counter_key(struct buf *o, const char *ns, size_t ns_len, uint64_t key)
{
    size_t key_len = sizeof KV_REDIS_PREFIX - 1 + ns_len + 1 + 16;
    char *p;
    int i;

    kv_resp_uint(o, '$', key_len);
    buf_reserve(o, key_len + 2);
    p = o->data + o->len;
    memcpy(p, KV_REDIS_PREFIX, sizeof KV_REDIS_PREFIX - 1);
    p += sizeof KV_REDIS_PREFIX - 1;
    memcpy(p, ns, ns_len);
    p += ns_len;
    *p++ = ':';
    for (i = 15; i >= 0; i--, key >>= 4)
        p[i] = kv_hex_digits[key & 15];
    p += 16;
    *p++ = '\r';
    *p++ = '\n';
    *p = '\0';
    o->len = (size_t)(p - o->data);
}

/* Characters a blob key may keep verbatim: readable in redis-cli, and never ':'. */
static bool kv_redis_safe_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-._@+/=|,;~", c) != NULL;
}

static void kv_redis_blob_key(struct buf *o, const char *ns, size_t ns_len, const void *key,
                              size_t key_len)
{
    const unsigned char *p = key;
    bool raw = key_len > 0;
    size_t i;

    for (i = 0; raw && i < key_len; i++)
        raw = p[i] != 0 && kv_redis_safe_byte(p[i]);
    kv_resp_uint(o, '$', sizeof KV_REDIS_PREFIX - 1 + ns_len + 2 + (raw ? key_len : 2 * key_len));
    buf_append(o, KV_REDIS_PREFIX, sizeof KV_REDIS_PREFIX - 1);
    buf_append(o, ns, ns_len);
    buf_append(o, raw ? ":=" : ":#", 2);
    if (raw) {
        buf_append(o, key, key_len);
    } else {
        buf_reserve(o, 2 * key_len);
        for (i = 0; i < key_len; i++) {
            o->data[o->len++] = kv_hex_digits[p[i] >> 4];
            o->data[o->len++] = kv_hex_digits[p[i] & 15];
        }
        o->data[o->len] = '\0';
    }
    buf_append(o, "\r\n", 2);
}

/* ---- connection ---- */

/* Frees the context after a transport failure; returns KV_UNAVAILABLE with the reason. */
static int kv_redis_drop(struct kv_redis *r, const char *during)
{
    err_set("kv redis: %s: connection lost during %s: %s", r->where, during,
            r->ctx->errstr[0] ? r->ctx->errstr : "unknown error");
    log_warn("event=kv_redis_lost server=%s during=%s error=\"%s\"", r->where, during,
             r->ctx->errstr);
    redisFree(r->ctx);
    r->ctx = NULL;
    return KV_UNAVAILABLE;
}

/* KV_UNAVAILABLE for the error replies of a server that will be back soon, else KV_ERR. */
static int kv_redis_reply_error(struct kv_redis *r, const redisReply *reply, const char *during)
{
    static const char *const transient[] = {"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN"};
    size_t i;
    err_set("kv redis: %s: %s: %.200s", r->where, during, reply->str);
    for (i = 0; i < sizeof transient / sizeof transient[0]; i++)
        if (strncmp(reply->str, transient[i], strlen(transient[i])) == 0) return KV_UNAVAILABLE;
    return KV_ERR;
}

/* Hands r->out to hiredis; the replies are then read with redisGetReply(). */
static int kv_redis_send(struct kv_redis *r)
{
    if (redisAppendFormattedCommand(r->ctx, r->out.data, r->out.len) != REDIS_OK)
        return kv_redis_drop(r, "send");
    return KV_OK;
}

/*
 * Reads one reply; the caller frees it with freeReplyObject(). NULL: the
 * connection failed and is gone (KV_UNAVAILABLE, reason set by kv_redis_drop).
 */
static redisReply *kv_redis_read(struct kv_redis *r, const char *during)
{
    void *p = NULL;
    if (redisGetReply(r->ctx, &p) != REDIS_OK || p == NULL) {
        kv_redis_drop(r, during);
        return NULL;
    }
    r->last_reply_ms = kv_monotonic_ms();
    return p;
}

static int kv_redis_connect(struct kv_redis *r);

/*
 * Before a commit on a connection idle for a while, checks that it is alive
 * (and reconnects if not): a commit cannot be retried blindly, and after a
 * Redis restart the first command on an old connection always fails. Busy
 * connections skip this; on them a restart costs one KV_UNAVAILABLE.
 */
static int kv_redis_check_idle(struct kv_redis *r)
{
    redisReply *reply;
    int rc;

    if (r->ctx == NULL || kv_monotonic_ms() - r->last_reply_ms < KV_REDIS_IDLE_CHECK_MS)
        return kv_redis_connect(r);
    r->out.len = 0;
    kv_resp_array(&r->out, 1);
    kv_resp_str(&r->out, "PING");
    rc = kv_redis_send(r);
    if (rc == KV_OK && (reply = kv_redis_read(r, "PING")) != NULL) {
        freeReplyObject(reply);
        return KV_OK;
    }
    return kv_redis_connect(r);
}

static struct timeval kv_timeval(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* AUTH, SELECT, SCRIPT LOAD and PING on a fresh context, one round trip. */
static int kv_redis_handshake(struct kv_redis *r)
{
    size_t n = 0, i;
    int rc = KV_OK;

    r->out.len = 0;
    if (r->password) {
        kv_resp_array(&r->out, r->user ? 3 : 2);
        kv_resp_str(&r->out, "AUTH");
        if (r->user) kv_resp_str(&r->out, r->user);
        kv_resp_str(&r->out, r->password);
        n++;
    }
    if (r->db != 0) {
        kv_resp_array(&r->out, 2);
        kv_resp_str(&r->out, "SELECT");
        kv_resp_int(&r->out, r->db);
        n++;
    }
    kv_resp_array(&r->out, 3);
    kv_resp_str(&r->out, "SCRIPT");
    kv_resp_str(&r->out, "LOAD");
    kv_resp_str(&r->out, kv_redis_clamp_script);
    kv_resp_array(&r->out, 1);
    kv_resp_str(&r->out, "PING");
    n += 2;
    if ((rc = kv_redis_send(r)) != KV_OK) return rc;
    for (i = 0; i < n; i++) {
        redisReply *reply = kv_redis_read(r, "connect");
        if (reply == NULL) return KV_UNAVAILABLE;
        if (reply->type == REDIS_REPLY_ERROR && rc == KV_OK) {
            rc = kv_redis_reply_error(r, reply, i == 0 && r->password ? "AUTH" : "connect");
        } else if (i == n - 2 && reply->type == REDIS_REPLY_STRING && reply->len == 40) {
            memcpy(r->clamp_sha, reply->str, 40);
            r->clamp_sha[40] = '\0';
        }
        freeReplyObject(reply);
    }
    if (rc == KV_OK && r->clamp_sha[0] == '\0') {
        err_set("kv redis: %s: SCRIPT LOAD gave no SHA1", r->where);
        rc = KV_ERR;
    }
    return rc;
}

/* Makes sure r->ctx is a live, authenticated connection. */
static int kv_redis_connect(struct kv_redis *r)
{
    uint64_t now = kv_monotonic_ms();
    int rc;

    if (r->ctx) return KV_OK;
    if (r->attempted && now - r->last_attempt_ms < KV_REDIS_RECONNECT_MS) {
        err_set("kv redis: %s unavailable; next reconnect in %d ms", r->where,
                (int)(KV_REDIS_RECONNECT_MS - (now - r->last_attempt_ms)));
        return KV_UNAVAILABLE;
    }
    r->attempted = true;
    r->last_attempt_ms = now;
    r->ctx = redisConnectWithTimeout(r->host, r->port, kv_timeval(r->connect_timeout_ms));
    if (r->ctx == NULL) {
        err_set("kv redis: %s: cannot allocate a connection", r->where);
        return KV_UNAVAILABLE;
    }
    if (r->ctx->err) {
        err_set("kv redis: cannot connect to %s: %s", r->where, r->ctx->errstr);
        redisFree(r->ctx);
        r->ctx = NULL;
        return KV_UNAVAILABLE;
    }
    if (redisSetTimeout(r->ctx, kv_timeval(r->command_timeout_ms)) != REDIS_OK)
        return kv_redis_drop(r, "connect");
    rc = kv_redis_handshake(r);
    if (rc != KV_OK) {
        if (r->ctx) {
            redisFree(r->ctx);
            r->ctx = NULL;
        }
        return rc;
    }
    if (r->ever_connected) log_info("event=kv_redis_reconnected server=%s", r->where);
    r->ever_connected = true;
    return KV_OK;
}

/* ---- URI ---- */

static int kv_hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A malloc'd %-decoded copy of s[0..len), or NULL if an escape is broken or decodes to NUL. */
static char *kv_percent_decode(const char *s, size_t len)
{
    char *out = xmalloc(len + 1), *o = out;
    size_t i;
    for (i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        hi = i + 2 < len ? kv_hex_value(s[i + 1]) : -1;
        lo = i + 2 < len ? kv_hex_value(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        *o++ = (char)(hi * 16 + lo);
        i += 2;
    }
    *o = '\0';
    return out;
}

/* Parses a decimal in [min, max] from s[0..len). */
static int kv_parse_int(const char *s, size_t len, long min, long max, int *out)
{
    long v = 0;
    size_t i;
    if (len == 0 || len > 9) return -1;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max) return -1;
    *out = (int)v;
    return 0;
}

static int kv_redis_parse_options(struct kv_redis *r, const char *q)
{
    struct kv_option o;

    while (kv_option_next(&q, &o)) {
        int *target;

        if (o.name_len == 10 && memcmp(o.name, "timeout_ms", 10) == 0) {
            target = &r->command_timeout_ms;
        } else if (o.name_len == 18 && memcmp(o.name, "connect_timeout_ms", 18) == 0) {
            target = &r->connect_timeout_ms;
        } else {
            err_set("kv redis: unknown option \"%.*s\" (known: timeout_ms, connect_timeout_ms)",
                    (int)(o.name_len > 40 ? 40 : o.name_len), o.name);
            return KV_ERR;
        }
        if (kv_parse_int(o.value, o.value_len, 1, 600000, target) != 0) {
            err_set("kv redis: bad value \"%.*s\" for %.*s (1..600000 ms)",
                    (int)(o.value_len > 40 ? 40 : o.value_len), o.value, (int)o.name_len, o.name);
            return KV_ERR;
        }
    }
    return KV_OK;
}

/* Fills r from spec (the URI after "redis://"); KV_ERR with err_set() if malformed. */
static int kv_redis_parse_uri(struct kv_redis *r, const char *spec)
{
    size_t authority_len = strcspn(spec, "/?");
    const char *at = NULL, *p, *host, *host_end, *rest = spec + authority_len;
    size_t i;

    for (i = 0; i < authority_len; i++)
        if (spec[i] == '@') at = spec + i;
    if (at) {
        const char *colon = memchr(spec, ':', (size_t)(at - spec));
        if (colon == NULL) {
            err_set("kv redis: credentials must be [USER]:PASSWORD@ in the URI");
            return KV_ERR;
        }
        if (colon > spec && (r->user = kv_percent_decode(spec, (size_t)(colon - spec))) == NULL)
            goto bad_escape;
        if ((r->password = kv_percent_decode(colon + 1, (size_t)(at - colon - 1))) == NULL)
            goto bad_escape;
        host = at + 1;
    } else {
        host = spec;
    }
    p = host;
    if (*p == '[') {
        host_end = memchr(p, ']', (size_t)(rest - p));
        if (host_end == NULL) {
            err_set("kv redis: unterminated [IPv6] host in the URI");
            return KV_ERR;
        }
        r->host = xstrndup(p + 1, (size_t)(host_end - p - 1));
        p = host_end + 1;
    } else {
        host_end = memchr(p, ':', (size_t)(rest - p));
        if (host_end == NULL) host_end = rest;
        r->host = xstrndup(p, (size_t)(host_end - p));
        p = host_end;
    }
    if (r->host[0] == '\0') {
        err_set("kv redis: no host in the URI (expected redis://HOST:PORT)");
        return KV_ERR;
    }
    r->port = KV_REDIS_DEFAULT_PORT;
    if (p < rest) {
        if (*p != ':' || kv_parse_int(p + 1, (size_t)(rest - p - 1), 1, 65535, &r->port) != 0) {
            err_set("kv redis: bad port \"%.*s\" in the URI (1..65535)", (int)(rest - p), p);
            return KV_ERR;
        }
    }
    if (*rest == '/') {
        size_t db_len = strcspn(rest + 1, "?");
        if (db_len > 0 && kv_parse_int(rest + 1, db_len, 0, 1000000, &r->db) != 0) {
            err_set("kv redis: bad database number \"%.*s\" in the URI", (int)db_len, rest + 1);
            return KV_ERR;
        }
        rest += 1 + db_len;
    }
    if (*rest == '?') return kv_redis_parse_options(r, rest + 1);
    return KV_OK;

bad_escape:
    err_set("kv redis: bad %%-escape in the URI credentials");
    return KV_ERR;
}

static void kv_redis_free(struct kv_redis *r)
{
    if (r->ctx) redisFree(r->ctx);
    free(r->host);
    free(r->user);
    if (r->password) {
        /* Credentials do not linger in freed memory. */
        memset(r->password, 0, strlen(r->password));
        free(r->password);
    }
    buf_free(&r->out);
    free(r);
}

static int kv_redis_open(const char *spec, void **state)
{
    struct kv_redis *r = xcalloc(1, sizeof *r);
    struct kv_sigpipe_guard guard;
    int rc;

    r->connect_timeout_ms = KV_REDIS_CONNECT_TIMEOUT_MS;
    r->command_timeout_ms = KV_REDIS_COMMAND_TIMEOUT_MS;
    if (kv_redis_parse_uri(r, spec) != KV_OK) {
        kv_redis_free(r);
        return KV_ERR;
    }
    snprintf(r->where, sizeof r->where, "%s:%d/%d", r->host, r->port, r->db);
    /* Failing here, rather than handing out a handle that is never usable,
     * tells the operator at startup that the URI or the server is wrong. */
    kv_sigpipe_block(&guard);
    rc = kv_redis_connect(r);
    kv_sigpipe_unblock(&guard);
    if (rc != KV_OK) {
        kv_redis_free(r);
        return rc;
    }
    *state = r;
    return KV_OK;
}

static void kv_redis_close(void *state)
{
    kv_redis_free(state);
}

/* ---- reads ---- */

/* Parses a counter from an HMGET element into 0..UINT32_MAX; false if not a number. */
static bool kv_redis_counter_value(const redisReply *e, uint32_t *out)
{
    const char *s;
    size_t i = 0, len;
    bool negative = false;
    uint64_t v = 0;

    if (e->type == REDIS_REPLY_NIL) {
        *out = 0;
        return true;
    }
    if (e->type == REDIS_REPLY_INTEGER) {
        *out = e->integer < 0 ? 0 : e->integer > UINT32_MAX ? UINT32_MAX : (uint32_t)e->integer;
        return true;
    }
    if (e->type != REDIS_REPLY_STRING || e->len == 0) return false;
    s = e->str;
    len = e->len;
    if (s[0] == '-') {
        negative = true;
        i = 1;
    }
    if (i == len) return false;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        if (v <= UINT32_MAX) v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = negative ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    return true;
}

/*
 * HMGET replies are parsed straight into the caller's array: hiredis's reader
 * is given these object functions for the span of one kv_counters_get, so the
 * 1,500 replies of a message cost no allocation (the default functions would
 * make 4,500 redisReply objects). Every "object" is the address of
 * kv_sink_token, since the reader treats NULL as out of memory.
 */
struct kv_hmget_sink {
    uint32_t *out;
    unsigned width;
    size_t n;
    size_t reply;    /* index of the reply being parsed */
    bool bad_shape;  /* a reply was not an array of width strings or nils */
    bool bad_number; /* a field held something other than an integer */
    char error[200]; /* the first error reply, if any */
};

static char kv_sink_token;

static uint32_t *kv_sink_slot(const redisReadTask *task)
{
    struct kv_hmget_sink *s = task->privdata;
    if (task->parent == NULL || task->idx < 0 || (unsigned)task->idx >= s->width ||
        s->reply >= s->n) {
        s->bad_shape = true;
        return NULL;
    }
    return &s->out[s->reply * s->width + (unsigned)task->idx];
}

static void *kv_sink_string(const redisReadTask *task, char *str, size_t len)
{
    struct kv_hmget_sink *s = task->privdata;
    redisReply e = {.type = task->type, .str = str, .len = len};
    uint32_t *slot;

    if (task->parent == NULL && task->type == REDIS_REPLY_ERROR) {
        if (s->error[0] == '\0') snprintf(s->error, sizeof s->error, "%.*s", (int)len, str);
        return &kv_sink_token;
    }
    if ((slot = kv_sink_slot(task)) != NULL && !kv_redis_counter_value(&e, slot))
        s->bad_number = true;
    return &kv_sink_token;
}

static void *kv_sink_array(const redisReadTask *task, int elements)
{
    struct kv_hmget_sink *s = task->privdata;
    if (task->parent != NULL || elements != (int)s->width) s->bad_shape = true;
    return &kv_sink_token;
}

static void *kv_sink_integer(const redisReadTask *task, long long value)
{
    redisReply e = {.type = REDIS_REPLY_INTEGER, .integer = value};
    uint32_t *slot = kv_sink_slot(task);
    if (slot) kv_redis_counter_value(&e, slot);
    return &kv_sink_token;
}

static void *kv_sink_nil(const redisReadTask *task)
{
    uint32_t *slot = kv_sink_slot(task);
    if (slot) *slot = 0;
    return &kv_sink_token;
}

static void kv_sink_free(void *obj)
{
    (void)obj; /* nothing was allocated */
}

static redisReplyObjectFunctions kv_sink_functions = {
    kv_sink_string, kv_sink_array, kv_sink_integer, kv_sink_nil, kv_sink_free,
};

static int kv_redis_counters_get_once(struct kv_redis *r, const char *ns, size_t ns_len,
                                      const uint64_t *keys, size_t n, unsigned width, uint32_t *out)
{
    struct kv_hmget_sink sink = {.out = out, .width = width, .n = n};
    redisReplyObjectFunctions *saved_fn;
    void *saved_privdata;
    char fields[KV_MAX_WIDTH * 8];
    size_t fields_len = 0, i;
    int rc = kv_redis_connect(r);
    unsigned c;

    if (rc != KV_OK) return rc;
    for (c = 0; c < width; c++)
        fields_len += (size_t)snprintf(fields + fields_len, sizeof fields - fields_len,
                                       c < 10 ? "$1\r\n%u\r\n" : "$2\r\n%u\r\n", c);
    r->out.len = 0;
    buf_reserve(&r->out, n * (40 + ns_len + fields_len));
    for (i = 0; i < n; i++) {
        kv_resp_array(&r->out, 2 + width);
        buf_append(&r->out, "$5\r\nHMGET\r\n", 11);
        kv_redis_counter_key(&r->out, ns, ns_len, keys[i]);
        buf_append(&r->out, fields, fields_len);
    }
    if ((rc = kv_redis_send(r)) != KV_OK) return rc;
    /* Elements a malformed reply leaves unset must not be garbage. */
    memset(out, 0, n * width * sizeof *out);
    saved_fn = r->ctx->reader->fn;
    saved_privdata = r->ctx->reader->privdata;
    r->ctx->reader->fn = &kv_sink_functions;
    r->ctx->reader->privdata = &sink;
    for (i = 0; i < n; i++, sink.reply++) {
        void *reply = NULL;
        if (redisGetReply(r->ctx, &reply) != REDIS_OK || reply == NULL)
            return kv_redis_drop(r, "HMGET"); /* frees the reader with our no-op free */
    }
    r->ctx->reader->fn = saved_fn;
    r->ctx->reader->privdata = saved_privdata;
    r->last_reply_ms = kv_monotonic_ms();
    if (sink.error[0]) {
        redisReply e = {.type = REDIS_REPLY_ERROR, .str = sink.error, .len = strlen(sink.error)};
        return kv_redis_reply_error(r, &e, "HMGET");
    }
    if (sink.bad_shape || sink.bad_number) {
        err_set("kv redis: %s: unexpected HMGET reply in namespace %s (%s)", r->where, ns,
                sink.bad_number ? "a counter is not a number" : "not an array of width fields");
        return KV_ERR;
    }
    return KV_OK;
}

/*
 * A read that failed on a connection which had worked (Redis restarted since
 * the last call) is worth one immediate retry: reads are idempotent.
 */
static bool kv_redis_retry_read(const struct kv_redis *r, int rc, bool had_connection)
{
    return rc == KV_UNAVAILABLE && had_connection && r->ctx == NULL;
}

static int kv_redis_counters_get(void *state, const char *ns, size_t ns_len, const uint64_t *keys,
                                 size_t n, unsigned width, uint32_t *out)
{
    struct kv_redis *r = state;
    struct kv_sigpipe_guard guard;
    bool had_connection = r->ctx != NULL;
    int rc;

    kv_sigpipe_block(&guard);
    rc = kv_redis_counters_get_once(r, ns, ns_len, keys, n, width, out);
    if (kv_redis_retry_read(r, rc, had_connection))
        rc = kv_redis_counters_get_once(r, ns, ns_len, keys, n, width, out);
    kv_sigpipe_unblock(&guard);
    return rc;
}

static int kv_redis_get_once(struct kv_redis *r, const char *ns, size_t ns_len, const void *key,
                             size_t key_len, struct buf *value, bool *found)
{
    redisReply *reply;
    int rc = kv_redis_connect(r);

    if (rc != KV_OK) return rc;
    r->out.len = 0;
    kv_resp_array(&r->out, 2);
    kv_resp_str(&r->out, "GET");
    kv_redis_blob_key(&r->out, ns, ns_len, key, key_len);
    if ((rc = kv_redis_send(r)) != KV_OK) return rc;
    if ((reply = kv_redis_read(r, "GET")) == NULL) return KV_UNAVAILABLE;
    if (reply->type == REDIS_REPLY_STRING) {
        buf_append(value, reply->str, reply->len);
        *found = true;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        rc = kv_redis_reply_error(r, reply, "GET");
    } else if (reply->type != REDIS_REPLY_NIL) {
        err_set("kv redis: %s: unexpected GET reply type %d", r->where, reply->type);
        rc = KV_ERR;
    }
    freeReplyObject(reply);
    return rc;
}

static int kv_redis_get(void *state, const char *ns, size_t ns_len, const void *key, size_t key_len,
                        struct buf *value, bool *found)
{
    struct kv_redis *r = state;
    struct kv_sigpipe_guard guard;
    bool had_connection = r->ctx != NULL;
    int rc;

    *found = false;
    kv_sigpipe_block(&guard);
    rc = kv_redis_get_once(r, ns, ns_len, key, key_len, value, found);
    if (kv_redis_retry_read(r, rc, had_connection))
        rc = kv_redis_get_once(r, ns, ns_len, key, key_len, value, found);
    kv_sigpipe_unblock(&guard);
    return rc;
}

static int kv_redis_stat_once(struct kv_redis *r, struct kv_stat *st)
{
    redisReply *reply;
    int rc = kv_redis_connect(r), first_error = KV_OK, i;

    if (rc != KV_OK) return rc;
    r->out.len = 0;
    kv_resp_array(&r->out, 1);
    kv_resp_str(&r->out, "DBSIZE");
    kv_resp_array(&r->out, 2);
    kv_resp_str(&r->out, "INFO");
    kv_resp_str(&r->out, "memory");
    if ((rc = kv_redis_send(r)) != KV_OK) return rc;
    for (i = 0; i < 2; i++) {
        if ((reply = kv_redis_read(r, "stat")) == NULL) return KV_UNAVAILABLE;
        if (reply->type == REDIS_REPLY_ERROR) {
            if (first_error == KV_OK) first_error = kv_redis_reply_error(r, reply, "stat");
        } else if (i == 0 && reply->type == REDIS_REPLY_INTEGER) {
            st->entries = (uint64_t)reply->integer;
        } else if (i == 1 && reply->type == REDIS_REPLY_STRING) {
            const char *line = strstr(reply->str, "\nused_memory:");
            if (line == NULL && strncmp(reply->str, "used_memory:", 12) == 0) line = reply->str - 1;
            if (line) st->size_bytes = strtoull(line + 13, NULL, 10);
        }
        freeReplyObject(reply);
    }
    return first_error;
}

static int kv_redis_stat(void *state, struct kv_stat *st)
{
    struct kv_redis *r = state;
    struct kv_sigpipe_guard guard;
    bool had_connection = r->ctx != NULL;
    int rc;

    kv_sigpipe_block(&guard);
    rc = kv_redis_stat_once(r, st);
    if (kv_redis_retry_read(r, rc, had_connection)) rc = kv_redis_stat_once(r, st);
    kv_sigpipe_unblock(&guard);
    return rc;
}

/* ---- writes ---- */

/*
 * WATCHes the expected blobs and compares them, in one round trip. KV_OK:
 * all hold and the keys stay watched for the MULTI that follows;
 * KV_CONFLICT: one does not (already UNWATCHed).
 */
static int kv_redis_check_expectations(struct kv_redis *r, const struct kv_batch *b)
{
    size_t i, n_replies = 1 + b->n_expect;
    const struct kv_op **expects = xmalloc(b->n_expect * sizeof *expects);
    size_t n = 0;
    bool mismatch = false;
    int rc = KV_OK;

    r->out.len = 0;
    kv_resp_array(&r->out, 1 + b->n_expect);
    kv_resp_str(&r->out, "WATCH");
    for (i = 0; i < b->n_ops; i++) {
        const struct kv_op *op = &b->ops[i];
        size_t ns_len;
        const char *ns;
        if (op->kind != KV_OP_EXPECT) continue;
        ns = kv_op_ns(b, op, &ns_len);
        kv_redis_blob_key(&r->out, ns, ns_len, kv_op_key(b, op), op->key_len);
        expects[n++] = op;
    }
    assert(n == b->n_expect);
    for (i = 0; i < n; i++) {
        size_t ns_len;
        const char *ns = kv_op_ns(b, expects[i], &ns_len);
        kv_resp_array(&r->out, 2);
        kv_resp_str(&r->out, "GET");
        kv_redis_blob_key(&r->out, ns, ns_len, kv_op_key(b, expects[i]), expects[i]->key_len);
    }
    if ((rc = kv_redis_send(r)) != KV_OK) goto out;
    for (i = 0; i < n_replies; i++) {
        redisReply *reply = kv_redis_read(r, "WATCH");
        if (reply == NULL) {
            rc = KV_UNAVAILABLE;
            goto out;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
            if (rc == KV_OK) rc = kv_redis_reply_error(r, reply, "WATCH/GET");
        } else if (i > 0 && !mismatch) {
            const struct kv_op *op = expects[i - 1];
            if (op->expect_absent)
                mismatch = reply->type != REDIS_REPLY_NIL;
            else
                mismatch = reply->type != REDIS_REPLY_STRING || reply->len != op->value_len ||
                           memcmp(reply->str, kv_op_value(b, op), op->value_len) != 0;
        }
        freeReplyObject(reply);
    }
    if (rc == KV_OK && !mismatch) goto out;
    /* Leave no watch behind: it would make this connection's next MULTI fail. */
    {
        redisReply *reply = NULL;
        r->out.len = 0;
        kv_resp_array(&r->out, 1);
        kv_resp_str(&r->out, "UNWATCH");
        if (kv_redis_send(r) != KV_OK || (reply = kv_redis_read(r, "UNWATCH")) == NULL) {
            rc = KV_UNAVAILABLE;
            goto out;
        }
        freeReplyObject(reply);
    }
    if (rc == KV_OK) {
        err_set("kv redis: %s: an expectation of the batch does not hold; nothing written",
                r->where);
        rc = KV_CONFLICT;
    }
out:
    free(expects);
    return rc;
}

/* Appends the commands for one increment; returns how many. */
static size_t kv_redis_append_incr(struct kv_redis *r, const struct kv_batch *b,
                                   const struct kv_op *op)
{
    const int32_t *deltas = kv_op_deltas(b, op);
    size_t ns_len, n = 0;
    const char *ns = kv_op_ns(b, op, &ns_len);
    unsigned c, nonzero = 0;

    for (c = 0; c < op->width; c++)
        if (deltas[c] != 0) nonzero++;
    if (op->has_negative) {
        kv_resp_array(&r->out, 5 + 2 * nonzero);
        kv_resp_str(&r->out, "EVALSHA");
        kv_resp_bulk(&r->out, r->clamp_sha, 40);
        buf_append(&r->out, "$1\r\n1\r\n", 7);
        kv_redis_counter_key(&r->out, ns, ns_len, op->key);
        kv_resp_int(&r->out, op->ttl_seconds);
        for (c = 0; c < op->width; c++) {
            if (deltas[c] == 0) continue;
            kv_resp_int(&r->out, c);
            kv_resp_int(&r->out, deltas[c]);
        }
        return 1;
    }
    for (c = 0; c < op->width; c++) {
        if (deltas[c] == 0) continue;
        kv_resp_array(&r->out, 4);
        buf_append(&r->out, "$7\r\nHINCRBY\r\n", 13);
        kv_redis_counter_key(&r->out, ns, ns_len, op->key);
        kv_resp_int(&r->out, c);
        kv_resp_int(&r->out, deltas[c]);
        n++;
    }
    if (op->ttl_seconds) {
        kv_resp_array(&r->out, 3);
        buf_append(&r->out, "$6\r\nEXPIRE\r\n", 12);
        kv_redis_counter_key(&r->out, ns, ns_len, op->key);
        kv_resp_int(&r->out, op->ttl_seconds);
    } else {
        kv_resp_array(&r->out, 2);
        buf_append(&r->out, "$7\r\nPERSIST\r\n", 13);
        kv_redis_counter_key(&r->out, ns, ns_len, op->key);
    }
    return n + 1;
}

static size_t kv_redis_append_blob(struct kv_redis *r, const struct kv_batch *b,
                                   const struct kv_op *op)
{
    size_t ns_len;
    const char *ns = kv_op_ns(b, op, &ns_len);

    if (op->kind == KV_OP_DEL) {
        kv_resp_array(&r->out, 2);
        kv_resp_str(&r->out, "DEL");
        kv_redis_blob_key(&r->out, ns, ns_len, kv_op_key(b, op), op->key_len);
        return 1;
    }
    assert(op->kind == KV_OP_PUT);
    kv_resp_array(&r->out, op->ttl_seconds ? 5 : 3);
    kv_resp_str(&r->out, "SET");
    kv_redis_blob_key(&r->out, ns, ns_len, kv_op_key(b, op), op->key_len);
    kv_resp_bulk(&r->out, kv_op_value(b, op), op->value_len);
    if (op->ttl_seconds) {
        kv_resp_str(&r->out, "EX");
        kv_resp_int(&r->out, op->ttl_seconds);
    }
    return 1;
}

/*
 * The replies of a transaction (+QUEUED per command, then EXEC's array) are
 * only checked, never kept: like HMGET's, they go through object functions
 * that allocate nothing and remember the first error and the shape of the
 * top-level reply.
 */
struct kv_status_sink {
    bool top_nil;   /* the reply was nil: EXEC after a watched key changed */
    bool top_array; /* the reply was an array (EXEC's results) */
    int error_idx;  /* where the first error sits in the array, -1 at top level */
    char error[200];
};

static void *kv_status_string(const redisReadTask *task, char *str, size_t len)
{
    struct kv_status_sink *s = task->privdata;
    if (task->type == REDIS_REPLY_ERROR && s->error[0] == '\0') {
        snprintf(s->error, sizeof s->error, "%.*s", (int)len, str);
        s->error_idx = task->parent ? task->idx : -1;
    }
    return &kv_sink_token;
}

static void *kv_status_array(const redisReadTask *task, int elements)
{
    struct kv_status_sink *s = task->privdata;
    (void)elements;
    if (task->parent == NULL) s->top_array = true;
    return &kv_sink_token;
}

static void *kv_status_integer(const redisReadTask *task, long long value)
{
    (void)task;
    (void)value;
    return &kv_sink_token;
}

static void *kv_status_nil(const redisReadTask *task)
{
    struct kv_status_sink *s = task->privdata;
    if (task->parent == NULL) s->top_nil = true;
    return &kv_sink_token;
}

static redisReplyObjectFunctions kv_status_functions = {
    kv_status_string, kv_status_array, kv_status_integer, kv_status_nil, kv_sink_free,
};

/* What EXEC's reply, as seen by the status sink, means. */
static int kv_redis_exec_result(struct kv_redis *r, const struct kv_status_sink *s)
{
    if (s->top_nil) {
        err_set("kv redis: %s: a watched blob changed before EXEC; nothing written", r->where);
        return KV_CONFLICT;
    }
    if (s->error[0] && !s->top_array) {
        redisReply e = {
            .type = REDIS_REPLY_ERROR, .str = (char *)s->error, .len = strlen(s->error)};
        return kv_redis_reply_error(r, &e, "EXEC");
    }
    if (s->error[0]) {
        err_set("kv redis: %s: command %d of the transaction failed (%s); Redis applied the "
                "others",
                r->where, s->error_idx + 1, s->error);
        return KV_ERR;
    }
    if (!s->top_array) {
        err_set("kv redis: %s: unexpected EXEC reply", r->where);
        return KV_ERR;
    }
    return KV_OK;
}

static int kv_redis_commit_once(struct kv_redis *r, const struct kv_batch *b)
{
    struct kv_status_sink sink;
    redisReplyObjectFunctions *saved_fn;
    void *saved_privdata;
    size_t i, n_queued = 0, n_replies;
    int rc = kv_redis_check_idle(r), first_error = KV_OK;

    if (rc != KV_OK) return rc;
    if (b->n_expect) {
        rc = kv_redis_check_expectations(r, b);
        if (rc != KV_OK) return rc;
    }
    r->out.len = 0;
    if (b->has_negative) {
        /* Outside the transaction, so that EVALSHA inside it finds the script
         * even if someone ran SCRIPT FLUSH since we connected. */
        kv_resp_array(&r->out, 3);
        kv_resp_str(&r->out, "SCRIPT");
        kv_resp_str(&r->out, "LOAD");
        kv_resp_str(&r->out, kv_redis_clamp_script);
    }
    kv_resp_array(&r->out, 1);
    kv_resp_str(&r->out, "MULTI");
    for (i = 0; i < b->n_ops; i++) {
        const struct kv_op *op = &b->ops[i];
        if (op->kind == KV_OP_INCR)
            n_queued += kv_redis_append_incr(r, b, op);
        else if (op->kind != KV_OP_EXPECT)
            n_queued += kv_redis_append_blob(r, b, op);
    }
    kv_resp_array(&r->out, 1);
    kv_resp_str(&r->out, "EXEC");
    if ((rc = kv_redis_send(r)) != KV_OK) return rc;
    n_replies = (b->has_negative ? 1 : 0) + 1 + n_queued + 1;
    saved_fn = r->ctx->reader->fn;
    saved_privdata = r->ctx->reader->privdata;
    r->ctx->reader->fn = &kv_status_functions;
    r->ctx->reader->privdata = &sink;
    for (i = 0; i < n_replies; i++) {
        void *reply = NULL;
        memset(&sink, 0, sizeof sink);
        if (redisGetReply(r->ctx, &reply) != REDIS_OK || reply == NULL)
            return kv_redis_drop(r, "EXEC"); /* frees the reader with our no-op free */
        if (i == n_replies - 1) {
            rc = kv_redis_exec_result(r, &sink);
            if (first_error == KV_OK) first_error = rc;
        } else if (sink.error[0] && first_error == KV_OK) {
            /* A command refused while queueing makes EXEC abort: nothing applied. */
            redisReply e = {
                .type = REDIS_REPLY_ERROR, .str = sink.error, .len = strlen(sink.error)};
            first_error = kv_redis_reply_error(r, &e, "MULTI");
        }
    }
    r->ctx->reader->fn = saved_fn;
    r->ctx->reader->privdata = saved_privdata;
    r->last_reply_ms = kv_monotonic_ms();
    return first_error;
}

static int kv_redis_commit(void *state, const struct kv_batch *b)
{
    struct kv_redis *r = state;
    struct kv_sigpipe_guard guard;
    int rc;

    kv_sigpipe_block(&guard);
    rc = kv_redis_commit_once(r, b);
    kv_sigpipe_unblock(&guard);
    return rc;
}

const struct kv_ops kv_redis_ops = {
    .name = "redis",
    .open = kv_redis_open,
    .close = kv_redis_close,
    .counters_get = kv_redis_counters_get,
    .get = kv_redis_get,
    .commit = kv_redis_commit,
    .stat = kv_redis_stat,
};
