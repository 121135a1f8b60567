/*
 * greylist - triplet greylisting over the kv store (see greylist.h).
 *
 * One blob per triplet in namespace "grey". Key: "NET|sender|recipient"
 * (lowercase; "<>" for the bounce sender), or "#" and the hex XXH3-128 of
 * that text when it would exceed KV_MAX_KEY. Value, in text so that an
 * operator can read it with redis-cli:
 *   "G <first_seen>"             seen, not yet passed
 *   "P <passed_at> <first_seen>" passed; passes at once until passed_at + pass_ttl
 * Times are Unix seconds of the `now` given by the caller.
 *
 * Every write expects the value it read (absent for a new triplet), so a
 * node that lost a race gets KV_CONFLICT, re-reads and decides on what the
 * winner wrote. At most GREYLIST_ATTEMPTS rounds; a store that keeps
 * conflicting is treated like a store that is down (accept, logged).
 *
 * The kv TTLs are set from the same intervals plus a day of slack; they only
 * remove abandoned entries and never decide anything, because the caller's
 * `now` need not be the wall clock.
 */
#include "checks/greylist.h"
#include "core/buf.h"
#include "core/log.h"
#include "store/kv.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define GREYLIST_ATTEMPTS 4
#define GREYLIST_SLACK_S  86400u /* added to kv TTLs: garbage collection only */
#define GREYLIST_RENEW_S  86400u /* a passed triplet's record is renewed at most this often */

struct greylist_config greylist_config_default(void)
{
    struct greylist_config c = {GREYLIST_DELAY_DEFAULT_S, GREYLIST_WINDOW_DEFAULT_S,
                                GREYLIST_PASS_TTL_DEFAULT_S};
    return c;
}

int greylist_client_network(const char *client_ip, char *out, size_t size)
{
    unsigned char a[16];
    char text[INET6_ADDRSTRLEN];
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    int n;

    if (client_ip == NULL) return -1;
    if (inet_pton(AF_INET, client_ip, a) == 1) {
        n = snprintf(out, size, "%u.%u.%u.0/24", a[0], a[1], a[2]);
    } else if (inet_pton(AF_INET6, client_ip, a) == 1) {
        if (memcmp(a, mapped, sizeof mapped) == 0) {
            n = snprintf(out, size, "%u.%u.%u.0/24", a[12], a[13], a[14]);
        } else {
            memset(a + 8, 0, 8);
            inet_ntop(AF_INET6, a, text, sizeof text);
            n = snprintf(out, size, "%s/64", text);
        }
    } else {
        return -1;
    }
    return n > 0 && (size_t)n < size ? 0 : -1;
}

/* Appends s lowercased; "" or NULL as "<>". */
static void greylist_append_lower(struct buf *b, const char *s)
{
    if (s && s[0] == '<' && s[1] == '>' && s[2] == '\0') s = "";
    if (s == NULL || *s == '\0') {
        buf_append_str(b, "<>");
        return;
    }
    for (; *s; s++)
        buf_append_char(b, (char)tolower((unsigned char)*s));
}

/* The kv key of the triplet into key (cleared first). */
static void greylist_key(const char *net, const char *sender, const char *recipient,
                         struct buf *key)
{
    buf_clear(key);
    buf_append_str(key, net);
    buf_append_char(key, '|');
    greylist_append_lower(key, sender);
    buf_append_char(key, '|');
    greylist_append_lower(key, recipient);
    if (key->len > KV_MAX_KEY) {
        XXH128_hash_t h = XXH3_128bits(key->data, key->len);
        buf_clear(key);
        buf_printf(key, "#%016" PRIx64 "%016" PRIx64, (uint64_t)h.high64, (uint64_t)h.low64);
    }
}

struct greylist_record {
    char state; /* 'G' or 'P'; 0 when absent or unreadable */
    long long first_seen;
    long long passed_at;
};

static void greylist_parse(const struct buf *v, struct greylist_record *rec)
{
    memset(rec, 0, sizeof *rec);
    if (v->len == 0) return;
    if (v->data[0] == 'G' && sscanf(v->data, "G %lld", &rec->first_seen) == 1) {
        rec->state = 'G';
    } else if (v->data[0] == 'P' &&
               sscanf(v->data, "P %lld %lld", &rec->passed_at, &rec->first_seen) == 2) {
        rec->state = 'P';
    }
}

static enum greylist_status greylist_set(struct greylist_result *out, enum greylist_status status,
                                         unsigned seconds_left)
{
    out->status = status;
    out->first_attempt = false;
    out->seconds_left = status == GREYLIST_GREYLISTED ? seconds_left : 0;
    if (status == GREYLIST_GREYLISTED)
        snprintf(out->reply, sizeof out->reply, "451 4.7.1 Greylisted, try again in %u seconds",
                 seconds_left);
    else
        out->reply[0] = '\0';
    return status;
}

/*
 * Writes value for key if the blob still holds old (old NULL: is absent).
 * KV_OK, KV_CONFLICT, or another KV_* error.
 */
static int greylist_write(struct kv *kv, const struct buf *key, const struct buf *old, bool found,
                          const char *value, unsigned ttl_s)
{
    struct kv_batch *b = kv_batch_new();
    int rc;
    if (found)
        kv_batch_expect(b, GREYLIST_NS, key->data, key->len, old->data, old->len);
    else
        kv_batch_expect(b, GREYLIST_NS, key->data, key->len, NULL, 0);
    kv_batch_put(b, GREYLIST_NS, key->data, key->len, value, strlen(value), ttl_s);
    rc = kv_batch_commit(kv, b);
    kv_batch_free(b);
    return rc;
}

enum greylist_status greylist_check(const struct greylist_config *cfg, struct kv *kv,
                                    const char *client_ip, const char *sender,
                                    const char *recipient, time_t now, struct greylist_result *out)
{
    struct greylist_config def = greylist_config_default();
    struct buf key = {0}, old = {0};
    char net[INET6_ADDRSTRLEN + 4], value[64];
    enum greylist_status status = GREYLIST_ERROR;
    int attempt, rc = KV_OK;

    if (cfg == NULL) cfg = &def;
    greylist_set(out, GREYLIST_ERROR, 0);
    if (greylist_client_network(client_ip, net, sizeof net) != 0 || recipient == NULL ||
        recipient[0] == '\0') {
        log_warn("event=greylist_skipped reason=bad_input client_ip=%s",
                 client_ip ? client_ip : "");
        return GREYLIST_ERROR;
    }
    if (kv == NULL) {
        log_warn("event=greylist_unavailable reason=\"no kv store\" action=accept");
        return GREYLIST_ERROR;
    }
    greylist_key(net, sender, recipient, &key);

    for (attempt = 0; attempt < GREYLIST_ATTEMPTS; attempt++) {
        struct greylist_record rec;
        bool found = false;
        long long elapsed;

        buf_clear(&old);
        rc = kv_get(kv, GREYLIST_NS, key.data, key.len, &old, &found);
        if (rc != KV_OK) break;
        greylist_parse(&old, &rec);

        if (rec.state == 'P' && now - rec.passed_at <= (long long)cfg->pass_ttl_s) {
            status = greylist_set(out, GREYLIST_PASS, 0);
            if (now - rec.passed_at >= (long long)GREYLIST_RENEW_S) {
                snprintf(value, sizeof value, "P %lld %lld", (long long)now, rec.first_seen);
                rc =
                    greylist_write(kv, &key, &old, true, value, cfg->pass_ttl_s + GREYLIST_SLACK_S);
                if (rc != KV_OK && rc != KV_CONFLICT)
                    log_warn("event=greylist_renew_failed rc=%d error=\"%s\"", rc, err_msg());
                rc = KV_OK; /* the triplet passes either way */
            }
            break;
        }
        elapsed = rec.state == 'G' ? now - rec.first_seen : -1;
        if (rec.state == 'G' && elapsed < 0) elapsed = 0; /* another node's clock is ahead */
        if (rec.state == 'G' && elapsed < (long long)cfg->delay_s) {
            status = greylist_set(out, GREYLIST_GREYLISTED, (unsigned)(cfg->delay_s - elapsed));
            break;
        }
        if (rec.state == 'G' && elapsed <= (long long)cfg->retry_window_s) {
            snprintf(value, sizeof value, "P %lld %lld", (long long)now, rec.first_seen);
            rc = greylist_write(kv, &key, &old, true, value, cfg->pass_ttl_s + GREYLIST_SLACK_S);
            if (rc == KV_CONFLICT) continue;
            if (rc == KV_OK) status = greylist_set(out, GREYLIST_PASS, 0);
            break;
        }
        /* New, expired, retried too late, or unreadable: this attempt is the first. */
        snprintf(value, sizeof value, "G %lld", (long long)now);
        rc = greylist_write(kv, &key, &old, found, value, cfg->retry_window_s + GREYLIST_SLACK_S);
        if (rc == KV_CONFLICT) continue;
        if (rc == KV_OK) {
            unsigned left = cfg->delay_s > 0 ? cfg->delay_s : 1;
            status = greylist_set(out, GREYLIST_GREYLISTED, left);
            out->first_attempt = true;
            log_info("event=greylisted net=%s key_len=%zu delay_s=%u", net, key.len, left);
        }
        break;
    }
    if (attempt == GREYLIST_ATTEMPTS) {
        rc = KV_CONFLICT;
        err_set("greylist: the record kept changing under us");
    }
    if (rc != KV_OK) {
        log_warn("event=greylist_unavailable rc=%d error=\"%s\" action=accept", rc, err_msg());
        status = greylist_set(out, GREYLIST_ERROR, 0);
    }
    buf_free(&key);
    buf_free(&old);
    return status;
}
