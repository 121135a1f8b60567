/*
 * ratelimit - windowed event counters in the kv store (see ratelimit.h).
 *
 * One counter (width 1) per (kind, value, window length, window index) in
 * namespace "rate"; its 64-bit key is XXH3 of "kind|value|window_s" seeded
 * with the window index, so the current and the previous bucket are two
 * keys read together. A bucket lives two windows (plus a minute) in the
 * store, long enough to serve as the previous bucket; the TTL is wall-clock
 * time while the window index comes from the caller's `now`, which only
 * matters for tests that jump far ahead (they see empty buckets, as they
 * should).
 *
 * Failure: any kv error allows the event and logs one warning line.
 */
#include "checks/ratelimit.h"
#include "core/buf.h"
#include "core/log.h"
#include "store/kv.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct ratelimit_config ratelimit_config_default(void)
{
    struct ratelimit_config c;
    memset(&c, 0, sizeof c);
    c.rules[RATELIMIT_CLIENT_IP] = (struct ratelimit_rule){600, 3600};
    c.rules[RATELIMIT_SENDER_DOMAIN] = (struct ratelimit_rule){2000, 3600};
    c.rules[RATELIMIT_RECIPIENT] = (struct ratelimit_rule){500, 3600};
    c.mode = RATELIMIT_SLIDING;
    return c;
}

const char *ratelimit_kind_name(enum ratelimit_kind kind)
{
    switch (kind) {
    case RATELIMIT_CLIENT_IP:
        return "client_ip";
    case RATELIMIT_SENDER_DOMAIN:
        return "sender_domain";
    case RATELIMIT_RECIPIENT:
        return "recipient";
    default:
        return "unknown";
    }
}

int ratelimit_rule_parse(const char *text, struct ratelimit_rule *out)
{
    const char *p = text, *slash;
    char *end;
    unsigned long limit, n = 1, unit = 1;

    if (text == NULL) goto bad;
    while (isspace((unsigned char)*p))
        p++;
    if (strcmp(p, "0") == 0 || strcmp(p, "off") == 0) {
        *out = (struct ratelimit_rule){0, 0};
        return 0;
    }
    slash = strchr(p, '/');
    if (slash == NULL || !isdigit((unsigned char)*p)) goto bad;
    limit = strtoul(p, &end, 10);
    if (end != slash || limit > 100000000ul) goto bad;
    p = slash + 1;
    if (isdigit((unsigned char)*p)) {
        n = strtoul(p, &end, 10);
        p = end;
    }
    switch (*p) {
    case 's':
        unit = 1;
        p++;
        break;
    case 'm':
        unit = 60;
        p++;
        break;
    case 'h':
        unit = 3600;
        p++;
        break;
    case 'd':
        unit = 86400;
        p++;
        break;
    case '\0':
        break;
    default:
        goto bad;
    }
    while (isspace((unsigned char)*p))
        p++;
    if (*p != '\0' || n == 0 || n > 366ul * 86400 || n * unit > 366ul * 86400) goto bad;
    out->limit = (unsigned)limit;
    out->window_s = (unsigned)(n * unit);
    return 0;
bad:
    err_set("ratelimit: \"%s\" is not LIMIT/WINDOW (e.g. 600/1h, 100/90s) or off",
            text ? text : "");
    return -1;
}

/*
 * The value actually counted, lowercased, into key (cleared first): the
 * canonical address (IPv6: its /64), the sender's domain, the recipient.
 * Returns 1, 0 when there is nothing to count (bounce sender), -1 if unusable.
 */
static int ratelimit_subject(enum ratelimit_kind kind, const char *value, struct buf *key)
{
    buf_clear(key);
    if (value == NULL) value = "";
    if (kind == RATELIMIT_CLIENT_IP) {
        unsigned char a[16];
        char text[INET6_ADDRSTRLEN];
        if (inet_pton(AF_INET, value, a) == 1) {
            inet_ntop(AF_INET, a, text, sizeof text);
            buf_append_str(key, text);
        } else if (inet_pton(AF_INET6, value, a) == 1) {
            static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
            if (memcmp(a, mapped, 12) == 0) {
                inet_ntop(AF_INET, a + 12, text, sizeof text);
                buf_append_str(key, text);
            } else {
                memset(a + 8, 0, 8);
                inet_ntop(AF_INET6, a, text, sizeof text);
                buf_printf(key, "%s/64", text);
            }
        } else {
            return -1;
        }
        return 1;
    }
    if (kind == RATELIMIT_SENDER_DOMAIN) {
        const char *at = strrchr(value, '@');
        if (strcmp(value, "<>") == 0) value = ""; /* the bounce sender */
        if (at) value = at + 1;
    }
    if (value[0] == '\0') return kind == RATELIMIT_SENDER_DOMAIN ? 0 : -1;
    for (; *value; value++)
        buf_append_char(key, (char)tolower((unsigned char)*value));
    if (key->len > 0 && key->data[key->len - 1] == '.') key->data[--key->len] = '\0';
    return key->len > 0 ? 1 : -1;
}

static uint64_t ratelimit_key(enum ratelimit_kind kind, const struct buf *subject,
                              unsigned window_s, uint64_t window_index)
{
    char head[48];
    int n = snprintf(head, sizeof head, "%d|%u|", (int)kind, window_s);
    uint64_t h = XXH3_64bits_withSeed(head, (size_t)n, window_index);
    return XXH3_64bits_withSeed(subject->data, subject->len, h);
}

static enum ratelimit_status ratelimit_done(struct ratelimit_result *out,
                                            enum ratelimit_status status)
{
    out->status = status;
    if (status != RATELIMIT_EXCEEDED) out->reply[0] = '\0';
    return status;
}

enum ratelimit_status ratelimit_check(const struct ratelimit_config *cfg, struct kv *kv,
                                      enum ratelimit_kind kind, const char *value, time_t now,
                                      struct ratelimit_result *out)
{
    struct ratelimit_config def = ratelimit_config_default();
    const struct ratelimit_rule *rule;
    struct buf subject = {0};
    uint64_t keys[2], index;
    uint32_t counts[2] = {0, 0};
    int rc, usable;
    enum ratelimit_status status;

    if (cfg == NULL) cfg = &def;
    memset(out, 0, sizeof *out);
    if ((unsigned)kind >= RATELIMIT_N_KINDS) return ratelimit_done(out, RATELIMIT_ERROR);
    rule = &cfg->rules[kind];
    out->limit = rule->limit;
    out->window_s = rule->window_s;
    if (rule->limit == 0 || rule->window_s == 0) return ratelimit_done(out, RATELIMIT_SKIPPED);

    usable = ratelimit_subject(kind, value, &subject);
    if (usable <= 0) {
        buf_free(&subject);
        if (usable == 0) return ratelimit_done(out, RATELIMIT_SKIPPED);
        log_warn("event=ratelimit_skipped kind=%s reason=bad_value", ratelimit_kind_name(kind));
        return ratelimit_done(out, RATELIMIT_ERROR);
    }
    if (kv == NULL) {
        buf_free(&subject);
        log_warn("event=ratelimit_unavailable kind=%s reason=\"no kv store\" action=allow",
                 ratelimit_kind_name(kind));
        return ratelimit_done(out, RATELIMIT_ERROR);
    }

    index = (uint64_t)(now < 0 ? 0 : now) / rule->window_s;
    keys[0] = ratelimit_key(kind, &subject, rule->window_s, index);
    keys[1] = ratelimit_key(kind, &subject, rule->window_s, index - 1);
    rc = kv_counters_get(kv, RATELIMIT_NS, keys, cfg->mode == RATELIMIT_SLIDING ? 2 : 1, 1, counts);
    if (rc == KV_OK) {
        struct kv_batch *b;
        double estimate = counts[0];
        if (cfg->mode == RATELIMIT_SLIDING) {
            /* The share of the previous window still inside the last window_s seconds. */
            double into = (double)((uint64_t)(now < 0 ? 0 : now) % rule->window_s);
            estimate += counts[1] * (1.0 - into / rule->window_s);
        }
        out->count = estimate >= 4294967295.0 ? UINT32_MAX : (unsigned)estimate;
        if (out->count >= rule->limit) {
            snprintf(out->reply, sizeof out->reply,
                     "451 4.7.1 Rate limit exceeded for %s, try again later",
                     kind == RATELIMIT_CLIENT_IP       ? "your address"
                     : kind == RATELIMIT_SENDER_DOMAIN ? "the sender domain"
                                                       : "this recipient");
            log_info("event=ratelimit_exceeded kind=%s value=%s count=%u limit=%u window_s=%u",
                     ratelimit_kind_name(kind), subject.data, out->count, rule->limit,
                     rule->window_s);
            buf_free(&subject);
            return ratelimit_done(out, RATELIMIT_EXCEEDED);
        }
        b = kv_batch_new();
        {
            int32_t one = 1;
            kv_batch_incr(b, RATELIMIT_NS, keys[0], 1, &one, 2 * rule->window_s + 60);
        }
        rc = kv_batch_commit(kv, b);
        kv_batch_free(b);
    }
    if (rc == KV_OK) {
        status = RATELIMIT_ALLOW;
    } else {
        log_warn("event=ratelimit_unavailable kind=%s rc=%d error=\"%s\" action=allow",
                 ratelimit_kind_name(kind), rc, err_msg());
        status = RATELIMIT_ERROR;
    }
    buf_free(&subject);
    return ratelimit_done(out, status);
}
