/*
 * received - best-effort parsing of Received: headers.
 *
 * The sending IP is the first IP literal in brackets after "from" (Postfix:
 * "from helo (rdns [1.2.3.4])"; Exim: "from rdns ([1.2.3.4] helo=x)"), or a
 * bare IPv4 in the parenthesis (qmail: "from unknown (HELO x) (1.2.3.4)").
 * An IP must parse with inet_pton, so "[unix socket]" or "[127.0.0.1.5]" is
 * not taken for one.
 */
#include "message/received.h"
#include "core/arena.h"
#include "message/message.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

static const char *received_word_after(const char *s, const char *end, const char *keyword,
                                       size_t *word_len)
{
    size_t klen = strlen(keyword);
    const char *p = s;

    while (p + klen < end) {
        const char *hit = memmem(p, (size_t)(end - p), keyword, klen);
        if (hit == NULL) return NULL;
        /* The keyword must stand alone: start of text or after whitespace, then a space. */
        if ((hit == s || isspace((unsigned char)hit[-1]) || hit[-1] == ';') && hit + klen < end &&
            isspace((unsigned char)hit[klen])) {
            const char *w = hit + klen;
            const char *we;
            while (w < end && isspace((unsigned char)*w)) w++;
            we = w;
            while (we < end && !isspace((unsigned char)*we) && *we != '(' && *we != ';') we++;
            if (we == w) return NULL;
            *word_len = (size_t)(we - w);
            return w;
        }
        p = hit + 1;
    }
    return NULL;
}

/* Copies an IP literal from s[0..len) if it is one (IPv6 may carry an "IPv6:" prefix). */
static const char *received_ip(struct arena *a, const char *s, size_t len)
{
    char tmp[INET6_ADDRSTRLEN + 8];
    unsigned char addr[16];

    if (len > 5 && strncasecmp(s, "IPv6:", 5) == 0) s += 5, len -= 5;
    if (len == 0 || len >= sizeof tmp) return NULL;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    if (inet_pton(AF_INET, tmp, addr) == 1 || inet_pton(AF_INET6, tmp, addr) == 1)
        return arena_strndup(a, tmp, len);
    return NULL;
}

void received_parse(struct arena *a, const char *value, size_t len, struct msg_hop *hop)
{
    const char *end = value + len;
    const char *by_kw, *from_end = end, *w, *p;
    size_t wl;

    memset(hop, 0, sizeof *hop);
    w = received_word_after(value, end, "by", &wl);
    if (w) {
        hop->by = arena_strndup(a, w, wl);
        by_kw = w - 3;
        if (by_kw > value) from_end = by_kw;
    }
    w = received_word_after(value, from_end, "from", &wl);
    if (w == NULL) return;
    hop->from_helo = arena_strndup(a, w, wl);

    /* The parenthesised part after the helo: "(rdns [ip])" possibly with more. */
    p = w + wl;
    while (p < from_end && hop->ip == NULL) {
        const char *open = memchr(p, '[', (size_t)(from_end - p));
        const char *close;
        if (open == NULL) break;
        close = memchr(open, ']', (size_t)(from_end - open));
        if (close == NULL) break;
        hop->ip = received_ip(a, open + 1, (size_t)(close - open - 1));
        p = close + 1;
    }
    p = memchr(w + wl, '(', (size_t)(from_end - (w + wl)));
    if (p) {
        const char *q = p + 1, *qe;
        while (q < from_end && isspace((unsigned char)*q)) q++;
        qe = q;
        while (qe < from_end && !isspace((unsigned char)*qe) && *qe != ')' && *qe != '[') qe++;
        if (qe > q && *q != '[') {
            const char *ip = received_ip(a, q, (size_t)(qe - q));
            if (ip && hop->ip == NULL) hop->ip = ip;
            else if (ip == NULL && strncasecmp(q, "HELO", 4) != 0 && memchr(q, '=', (size_t)(qe - q)) == NULL)
                hop->from_rdns = arena_strndup(a, q, (size_t)(qe - q));
        }
    }
    if (hop->ip == NULL) {
        /* qmail: "(1.2.3.4)" in a second parenthesis, or the helo itself is an IP. */
        if (wl > 2 && w[0] == '[' && w[wl - 1] == ']') hop->ip = received_ip(a, w + 1, wl - 2);
        else hop->ip = received_ip(a, w, wl);
        for (p = w + wl; hop->ip == NULL && p < from_end;) {
            const char *open = memchr(p, '(', (size_t)(from_end - p));
            const char *close;
            if (open == NULL) break;
            close = memchr(open, ')', (size_t)(from_end - open));
            if (close == NULL) break;
            hop->ip = received_ip(a, open + 1, (size_t)(close - open - 1));
            p = close + 1;
        }
    }
}
