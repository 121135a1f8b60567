/*
 * features - the feature stream of a message, version 2. See features.h; the
 * stream is defined in docs/features.md, and this file must match it to the
 * byte: a classifier trained on one stream cannot read another.
 *
 * Layout of the work. Metadata comes first (flags, sender domains, mailer
 * words, the words of the sender/route headers, Received relays, subject
 * words, MIME parts, URLs, hidden HTML text), then the word section (subject, then every text part), where each
 * word gives a FEAT_WORD hash followed by its OSB pairs with the up to four
 * words before it in the same text. A ring of the last four word hashes is
 * all OSB needs, so nothing is kept per token and nothing is allocated per
 * token: token strings live in the tokenizer's scratch, metadata strings in
 * one reused buffer, and the output arrays are sized from the text length and
 * doubled in the arena when the guess was short.
 *
 * URL tokens in text name the registrable domain the parser computed for the
 * same URL (m->urls). The text only shows the URL as written, so a small hash
 * map keyed by host (as the tokenizer extracts it from each URL's raw text,
 * plus the parsed host and its Unicode form) takes a text host to that
 * domain; hosts the parser did not see fall back to the host itself.
 */
#include "text/features.h"
#include "core/arena.h"
#include "core/buf.h"
#include "message/html.h"
#include "message/message.h"
#include "text/normalize.h"
#include "text/tokenize.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
/*
 * The hashes are computed millions of times per second on short inputs: use
 * xxHash's inline build (same algorithm and values as libxxhash, which the
 * tests check), so that the compiler specialises the 17-byte pair hash.
 */
#define XXH_INLINE_ALL
#include <xxhash.h>

/* At most this many entries of each metadata list: headers, subject words, parts, ... */
#define FEATURES_MAX_META_EACH 1000
#define FEATURES_HEADER_WORDS  50 /* words of one header value */
#define FEATURES_HEADER_NAME_MAX 16
#define FEATURES_OSB_PREVIOUS  4 /* a window of 5 words: the current one and 4 before */

struct feat_flag_name {
    unsigned bit;
    const char *name;
};

/*
 * Only flags named here enter the stream, so a flag added to message.h
 * changes nothing until it is added here (with a version bump).
 */
static const struct feat_flag_name feat_msg_flags[] = {
    {MSG_F_NO_HEADERS, "no_headers"},
    {MSG_F_BAD_HEADERS, "bad_headers"},
    {MSG_F_MIME_BAD, "mime_bad"},
    {MSG_F_TRUNCATED, "truncated"},
    {MSG_F_TOO_MANY_PARTS, "too_many_parts"},
    {MSG_F_TOO_DEEP, "too_deep"},
    {MSG_F_HTML_ONLY, "html_only"},
    {MSG_F_NUL_BYTES, "nul_bytes"},
    {MSG_F_BARE_LINE_ENDS, "bare_line_ends"},
    {MSG_F_8BIT_HEADERS, "8bit_headers"},
};

static const struct feat_flag_name feat_part_flags[] = {
    {PART_F_BAD_BASE64, "bad_base64"},           {PART_F_BAD_QP, "bad_qp"},
    {PART_F_BAD_ENCODING, "bad_encoding"},       {PART_F_CHARSET_WRONG, "charset_wrong"},
    {PART_F_CHARSET_UNKNOWN, "charset_unknown"}, {PART_F_TRUNCATED, "truncated"},
    {PART_F_NO_BOUNDARY, "no_boundary"},         {PART_F_8BIT_IN_7BIT, "8bit_in_7bit"},
};

static const struct feat_flag_name feat_html_flags[] = {
    {HTML_F_SCRIPT, "script"}, {HTML_F_FORM, "form"},     {HTML_F_IFRAME, "iframe"},
    {HTML_F_DEEP, "deep"},     {HTML_F_BROKEN, "broken"},
};

static const struct feat_flag_name feat_url_flags[] = {
    {URL_F_IP_LITERAL, "ip_literal"},       {URL_F_NUMERIC_HOST, "numeric_host"},
    {URL_F_USERINFO, "userinfo"},           {URL_F_IDN, "idn"},
    {URL_F_MIXED_SCRIPT, "mixed_script"},   {URL_F_PERCENT_HOST, "percent_host"},
    {URL_F_LINK_MISMATCH, "link_mismatch"}, {URL_F_NONSTD_PORT, "nonstd_port"},
    {URL_F_NO_SCHEME, "no_scheme"},
};

struct feat_url_slot {
    const char *host; /* arena copy; NULL for an empty slot */
    size_t host_len;
    const char *domain; /* owned by the message */
    size_t domain_len;
    uint64_t hash;
};

struct feat_ctx {
    struct arena *a;
    struct features *out;
    size_t cap;
    feature_debug_fn debug;
    void *debug_ctx;

    struct tokenizer tok;
    struct buf meta; /* the metadata token being built */

    /* Word section: the last FEATURES_OSB_PREVIOUS word hashes, newest at ring_pos - 1. */
    uint64_t ring[FEATURES_OSB_PREVIOUS];
    size_t ring_n;
    size_t ring_pos;
    struct buf ring_text[FEATURES_OSB_PREVIOUS]; /* their strings, kept only for debug */
    struct buf pair_text;
    size_t words_emitted;
    bool no_pairs; /* FEATURES_NO_PAIRS */

    /* A metadata word list in progress ("subj:", "hidden:", ...). */
    const char *list_prefix;
    size_t list_prefix_len;
    size_t *list_left;

    struct feat_url_slot *url_slots;
    size_t url_mask;
};

uint64_t features_hash_token(const char *token, size_t len)
{
    return XXH3_64bits(token, len);
}

/* v as 8 little-endian bytes on every host (the stream must not depend on the CPU). */
static inline void feat_store_le64(unsigned char *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* One store, which XXH3 then reads back as one load: the byte loop is not optimised away. */
    memcpy(p, &v, sizeof v);
#else
    int i;
    for (i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
#endif
}

uint64_t features_hash_pair(uint64_t first, uint64_t second, unsigned distance)
{
    unsigned char b[16];

    /*
     * Position matters: (a, b) and (b, a) are different byte strings. The
     * distance goes in as the seed, which keeps the input at 16 bytes, XXH3's
     * cheapest path for more than 8: this runs four times per word.
     */
    feat_store_le64(b, first);
    feat_store_le64(b + 8, second);
    return XXH3_64bits_withSeed(b, sizeof b, (XXH64_hash_t)distance);
}

/* Grows the output arrays to hold at least need features; the old ones stay in the arena. */
static void feat_grow(struct feat_ctx *c, size_t need)
{
    size_t cap = c->cap;
    uint64_t *hash;
    uint8_t *kind;

    while (cap < need)
        cap *= 2;
    hash = arena_alloc(c->a, cap * sizeof *hash);
    kind = arena_alloc(c->a, cap * sizeof *kind);
    memcpy(hash, c->out->hash, c->out->n * sizeof *hash);
    memcpy(kind, c->out->kind, c->out->n * sizeof *kind);
    c->out->hash = hash;
    c->out->kind = kind;
    c->cap = cap;
}

static inline void feat_push(struct feat_ctx *c, enum feature_kind kind, uint64_t hash)
{
    if (c->out->n == c->cap) feat_grow(c, c->out->n + 1);
    c->out->hash[c->out->n] = hash;
    c->out->kind[c->out->n] = (uint8_t)kind;
    c->out->n++;
}

/* Emits c->meta as a FEAT_META feature. */
static void feat_meta_emit(struct feat_ctx *c)
{
    uint64_t h = features_hash_token(c->meta.data, c->meta.len);

    feat_push(c, FEAT_META, h);
    if (c->debug) c->debug(c->debug_ctx, FEAT_META, c->meta.data, c->meta.len, 0, h);
}

/* Emits prefix + value (ASCII letters of value lowercased). */
static void feat_meta(struct feat_ctx *c, const char *prefix, const char *value, size_t len)
{
    size_t i, start;

    buf_clear(&c->meta);
    buf_append_str(&c->meta, prefix);
    start = c->meta.len;
    buf_append(&c->meta, value, len);
    for (i = start; i < c->meta.len; i++)
        c->meta.data[i] = (char)normalize_ascii_lower((unsigned char)c->meta.data[i]);
    feat_meta_emit(c);
}

static void feat_meta_str(struct feat_ctx *c, const char *prefix, const char *value)
{
    if (value && *value) feat_meta(c, prefix, value, strlen(value));
}

static void feat_meta_flags(struct feat_ctx *c, const char *prefix,
                            const struct feat_flag_name *names, size_t n_names, unsigned flags)
{
    size_t i;

    for (i = 0; i < n_names; i++)
        if (flags & names[i].bit) feat_meta_str(c, prefix, names[i].name);
}

/* Token callback for metadata word lists: prefix + token, until the list is full. */
static bool feat_on_meta_word(void *ctx, const struct token *tok)
{
    struct feat_ctx *c = ctx;

    if (*c->list_left == 0) return false;
    (*c->list_left)--;
    buf_clear(&c->meta);
    buf_append(&c->meta, c->list_prefix, c->list_prefix_len);
    buf_append(&c->meta, tok->text, tok->len);
    feat_meta_emit(c);
    return *c->list_left > 0;
}

static void feat_meta_words(struct feat_ctx *c, const char *prefix, const char *text, size_t len,
                            size_t *left)
{
    if (text == NULL || len == 0 || *left == 0) return;
    c->list_prefix = prefix;
    c->list_prefix_len = strlen(prefix);
    c->list_left = left;
    tokenize(&c->tok, text, len, feat_on_meta_word, c);
}

/* Reports a word and its pairs, just stored at out[first..], to the debug callback. */
static void feat_debug_word(struct feat_ctx *c, const struct token *tok, size_t first)
{
    size_t d, slot;

    c->debug(c->debug_ctx, FEAT_WORD, tok->text, tok->len, 0, c->out->hash[first]);
    for (d = 1; d <= c->ring_n; d++) {
        struct buf *prev = &c->ring_text[(c->ring_pos - d) % FEATURES_OSB_PREVIOUS];
        buf_clear(&c->pair_text);
        buf_append(&c->pair_text, prev->data, prev->len);
        buf_append_char(&c->pair_text, ' ');
        buf_append(&c->pair_text, tok->text, tok->len);
        c->debug(c->debug_ctx, FEAT_OSB, c->pair_text.data, c->pair_text.len, (unsigned)d,
                 c->out->hash[first + d]);
    }
    slot = c->ring_pos % FEATURES_OSB_PREVIOUS;
    buf_clear(&c->ring_text[slot]);
    buf_append(&c->ring_text[slot], tok->text, tok->len);
}

/* Token callback for the word section: FEAT_WORD, then its OSB pairs. The hot loop. */
static bool feat_on_word(void *ctx, const struct token *tok)
{
    struct feat_ctx *c = ctx;
    uint64_t h, *hash;
    uint8_t *kind;
    size_t d, first = c->out->n;

    c->out->n_words++;
    if (c->words_emitted >= FEATURES_MAX_WORDS) return true; /* keep counting n_words */
    c->words_emitted++;
    if (c->no_pairs) {
        h = features_hash_token(tok->text, tok->len);
        feat_push(c, FEAT_WORD, h);
        if (c->debug) c->debug(c->debug_ctx, FEAT_WORD, tok->text, tok->len, 0, h);
        return true;
    }

    /* One bounds check per word for the word and its up to four pairs. */
    if (first + 1 + FEATURES_OSB_PREVIOUS > c->cap) feat_grow(c, first + 1 + FEATURES_OSB_PREVIOUS);
    hash = c->out->hash + first;
    kind = c->out->kind + first;
    h = features_hash_token(tok->text, tok->len);
    hash[0] = h;
    kind[0] = FEAT_WORD;
    for (d = 1; d <= c->ring_n; d++) {
        hash[d] =
            features_hash_pair(c->ring[(c->ring_pos - d) % FEATURES_OSB_PREVIOUS], h, (unsigned)d);
        kind[d] = FEAT_OSB;
    }
    c->out->n = first + 1 + c->ring_n;
    if (c->debug) feat_debug_word(c, tok, first);

    c->ring[c->ring_pos % FEATURES_OSB_PREVIOUS] = h;
    c->ring_pos++;
    if (c->ring_n < FEATURES_OSB_PREVIOUS) c->ring_n++;
    return true;
}

/* The words of one text: an OSB window never spans two texts. */
static void feat_words(struct feat_ctx *c, const char *text, size_t len)
{
    if (text == NULL || len == 0) return;
    c->ring_n = 0;
    c->ring_pos = 0;
    tokenize(&c->tok, text, len, feat_on_word, c);
}

static uint64_t feat_url_hash(const char *host, size_t len)
{
    return XXH3_64bits(host, len);
}

/* Adds host -> domain unless host is already mapped: the first URL wins. */
static void feat_url_map_add(struct feat_ctx *c, const char *host, size_t host_len,
                             const char *domain, size_t domain_len)
{
    uint64_t h;
    size_t i;

    if (host_len == 0) return;
    h = feat_url_hash(host, host_len);
    for (i = (size_t)h & c->url_mask; c->url_slots[i].host; i = (i + 1) & c->url_mask) {
        struct feat_url_slot *s = &c->url_slots[i];
        if (s->hash == h && s->host_len == host_len && memcmp(s->host, host, host_len) == 0) return;
    }
    c->url_slots[i].host = arena_strndup(c->a, host, host_len);
    c->url_slots[i].host_len = host_len;
    c->url_slots[i].domain = domain;
    c->url_slots[i].domain_len = domain_len;
    c->url_slots[i].hash = h;
}

/* Normalises a parsed host the way the tokenizer normalises a host in text, into c->meta. */
static void feat_url_map_add_host(struct feat_ctx *c, const char *host, const char *domain,
                                  size_t domain_len)
{
    if (host == NULL || *host == '\0') return;
    buf_clear(&c->meta);
    normalize_append(&c->tok.norm, &c->meta, host, strlen(host));
    while (c->meta.len && c->meta.data[c->meta.len - 1] == '.')
        c->meta.data[--c->meta.len] = '\0';
    feat_url_map_add(c, c->meta.data, c->meta.len, domain, domain_len);
}

static void feat_url_map_build(struct feat_ctx *c, const struct message *m)
{
    size_t i, slots = 16;

    if (m->n_urls == 0) return;
    while (slots < 4 * m->n_urls)
        slots *= 2; /* up to 3 keys per URL, load <= 3/4 */
    c->url_slots = arena_calloc(c->a, slots, sizeof *c->url_slots);
    c->url_mask = slots - 1;
    for (i = 0; i < m->n_urls; i++) {
        const struct url *u = &m->urls[i];
        const char *host;
        size_t host_len, domain_len;

        if (u->domain == NULL || *u->domain == '\0') continue;
        domain_len = strlen(u->domain);
        if (u->raw && tokenizer_url_host(&c->tok, u->raw, strlen(u->raw), &host, &host_len))
            feat_url_map_add(c, host, host_len, u->domain, domain_len);
        feat_url_map_add_host(c, u->host, u->domain, domain_len);
        feat_url_map_add_host(c, u->host_unicode, u->domain, domain_len);
    }
}

/* token_domain_fn: the registrable domain the parser found for a host seen in text. */
static const char *feat_url_domain(void *ctx, const char *host, size_t host_len, size_t *domain_len)
{
    struct feat_ctx *c = ctx;
    uint64_t h;
    size_t i;

    if (c->url_slots == NULL) return NULL;
    h = feat_url_hash(host, host_len);
    for (i = (size_t)h & c->url_mask; c->url_slots[i].host; i = (i + 1) & c->url_mask) {
        const struct feat_url_slot *s = &c->url_slots[i];
        if (s->hash == h && s->host_len == host_len && memcmp(s->host, host, host_len) == 0) {
            *domain_len = s->domain_len;
            return s->domain;
        }
    }
    return NULL;
}

/* The domain of an address: what follows its last '@'. */
static void feat_meta_addr_domain(struct feat_ctx *c, const char *prefix, const char *addr)
{
    const char *at = addr ? strrchr(addr, '@') : NULL;

    if (at && at[1]) feat_meta_str(c, prefix, at + 1);
}

/* The first header called name (ASCII case-insensitive), or NULL. */
static const struct msg_header *feat_header(const struct message *m, const char *name)
{
    size_t i;

    for (i = 0; i < m->n_headers; i++)
        if (m->headers[i].name && strcasecmp(m->headers[i].name, name) == 0) return &m->headers[i];
    return NULL;
}

static void feat_meta_header_words(struct feat_ctx *c, const struct message *m, const char *name,
                                   const char *prefix)
{
    const struct msg_header *h = feat_header(m, name);
    size_t left = FEATURES_MAX_META_EACH;

    if (h && h->value) feat_meta_words(c, prefix, h->value, strlen(h->value), &left);
}

/*
 * "h:<name>:<word>" for the words of the headers that say who sent the
 * message, through which relays and with which software: From, To, Reply-To,
 * Return-Path, Message-ID, Date and Received, at most
 * FEATURES_HEADER_WORDS per header and FEATURES_MAX_META_EACH in all. The
 * prefix keeps "example" in a Received line apart from "example" in a From
 * line. Other headers were measured on bench/accuracy and made the Bayes
 * ranking worse (list and tracking headers mostly add noise); so did the
 * top-level Content-Type once the parse kept it among the headers (FN at
 * FP <= 0.1 % 3.85 -> 4.69 %): the MIME structure features carry it.
 */
static const char *const feat_header_words_of[] = {
    "from", "to", "reply-to", "return-path", "message-id", "date", "received", NULL};

static void feat_meta_header_values(struct feat_ctx *c, const struct message *m)
{
    char prefix[FEATURES_HEADER_NAME_MAX + 4];
    size_t i, j, total = FEATURES_MAX_META_EACH;

    for (i = 0; i < m->n_headers && total > 0; i++) {
        const struct msg_header *h = &m->headers[i];
        size_t n, each = FEATURES_HEADER_WORDS, before;
        if (h->name == NULL || h->value == NULL) continue;
        for (j = 0; feat_header_words_of[j]; j++)
            if (strcasecmp(h->name, feat_header_words_of[j]) == 0) break;
        if (feat_header_words_of[j] == NULL) continue;
        n = strlen(feat_header_words_of[j]);
        prefix[0] = 'h';
        prefix[1] = ':';
        memcpy(prefix + 2, feat_header_words_of[j], n);
        prefix[2 + n] = ':';
        prefix[3 + n] = '\0';
        if (each > total) each = total;
        before = each;
        feat_meta_words(c, prefix, h->value, strlen(h->value), &each);
        total -= before - each;
    }
}

/* "rcvd_ip:<ip>" and "rcvd_net:<first three octets>" for the relays of the Received headers;
 * the tokenizer would turn the numbers into shapes. */
static void feat_meta_hops(struct feat_ctx *c, const struct message *m)
{
    size_t i;

    for (i = 0; i < m->n_hops; i++) {
        const char *ip = m->hops[i].ip, *dot;
        if (ip == NULL) continue;
        feat_meta_str(c, "rcvd_ip:", ip);
        dot = strrchr(ip, '.');
        if (dot && strchr(ip, ':') == NULL) feat_meta(c, "rcvd_net:", ip, (size_t)(dot - ip));
    }
}

/*
 * "attach_ext:<ext>": the text after the last dot of the file name, once
 * trailing dots and spaces are gone (Windows drops them, so "x.exe." runs as
 * an .exe), NFKC-casefolded; "none" without a name or a dot, "odd" when the
 * result is not 1..10 ASCII letters and digits.
 */
static void feat_meta_attach_ext(struct feat_ctx *c, const char *filename)
{
    size_t n = filename ? strlen(filename) : 0, i, start;
    const char *dot = NULL;
    bool ok;

    while (n && (filename[n - 1] == '.' || filename[n - 1] == ' '))
        n--;
    for (i = n; i > 0 && dot == NULL; i--)
        if (filename[i - 1] == '.') dot = filename + i - 1;
    if (dot == NULL || (size_t)(dot - filename) + 1 == n) {
        feat_meta_str(c, "attach_ext:", "none");
        return;
    }
    buf_clear(&c->meta);
    buf_append(&c->meta, "attach_ext:", 11);
    start = c->meta.len;
    normalize_append(&c->tok.norm, &c->meta, dot + 1, n - (size_t)(dot - filename) - 1);
    ok = c->meta.len > start && c->meta.len - start <= 10;
    for (i = start; ok && i < c->meta.len; i++) {
        unsigned char ch = (unsigned char)c->meta.data[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
    }
    if (!ok) {
        feat_meta_str(c, "attach_ext:", "odd");
        return;
    }
    feat_meta_emit(c);
}

static void feat_meta_part(struct feat_ctx *c, const struct msg_part *p)
{
    feat_meta_str(c, "mime:", p->type);
    feat_meta_str(c, "charset:", p->charset);
    if (p->is_attachment) {
        feat_meta_str(c, "attach:", p->type);
        if (p->sniffed_type && *p->sniffed_type &&
            (p->type == NULL || strcasecmp(p->sniffed_type, p->type) != 0))
            feat_meta_str(c, "attach_sniffed:", p->sniffed_type);
        feat_meta_attach_ext(c, p->filename);
    }
    feat_meta_flags(c, "part_flag:", feat_part_flags,
                    sizeof feat_part_flags / sizeof feat_part_flags[0], p->flags);
}

/* How many entries of a metadata list of n enter the stream. */
static size_t feat_list_len(size_t n)
{
    return n < FEATURES_MAX_META_EACH ? n : FEATURES_MAX_META_EACH;
}

static void feat_meta_section(struct feat_ctx *c, const struct message *m, const char *subject,
                              size_t subject_len)
{
    size_t i, n, left;

    feat_meta_flags(c, "flag:", feat_msg_flags, sizeof feat_msg_flags / sizeof feat_msg_flags[0],
                    m->flags);
    if (m->from_domain && *m->from_domain)
        feat_meta_str(c, "from_domain:", m->from_domain);
    else
        feat_meta_str(c, "from_domain:", "none");
    feat_meta_str(c, "env_from_domain:", m->env_from_domain);
    feat_meta_addr_domain(c, "reply_to_domain:", m->reply_to_addr);

    feat_meta_header_words(c, m, "x-mailer", "x-mailer:");
    feat_meta_header_words(c, m, "user-agent", "user-agent:");
    feat_meta_header_values(c, m);
    feat_meta_hops(c, m);

    left = FEATURES_MAX_META_EACH;
    feat_meta_words(c, "subj:", subject, subject_len, &left);

    n = feat_list_len(m->n_parts);
    for (i = 0; i < n; i++)
        feat_meta_part(c, &m->parts[i]);

    n = feat_list_len(m->n_urls);
    for (i = 0; i < n; i++) {
        feat_meta_str(c, "url_domain:", m->urls[i].domain);
        feat_meta_flags(c, "url_flag:", feat_url_flags,
                        sizeof feat_url_flags / sizeof feat_url_flags[0], m->urls[i].flags);
    }

    left = FEATURES_MAX_META_EACH;
    for (i = 0; i < m->n_texts; i++) {
        const struct msg_text *t = &m->texts[i];
        if (t->is_html)
            feat_meta_flags(c, "html_flag:", feat_html_flags,
                            sizeof feat_html_flags / sizeof feat_html_flags[0], t->html_flags);
        feat_meta_words(c, "hidden:", t->hidden, t->hidden_len, &left);
    }
}

/*
 * A first guess at the stream length, so that the arrays rarely grow:
 * about one word per 5 bytes of text and 5 features per word, plus the
 * metadata.
 */
static size_t feat_estimate(const struct message *m, size_t subject_len, bool no_pairs)
{
    size_t bytes = subject_len, words, meta, i;

    for (i = 0; i < m->n_texts; i++)
        bytes += m->texts[i].len;
    words = bytes / 5 + 8;
    if (words > FEATURES_MAX_WORDS) words = FEATURES_MAX_WORDS;
    meta = 32 + m->n_headers + 8 * m->n_parts + 2 * m->n_urls + subject_len / 4;
    if (meta > 8 * FEATURES_MAX_META_EACH) meta = 8 * FEATURES_MAX_META_EACH;
    return (no_pairs ? 1 : FEATURES_OSB_PREVIOUS + 1) * words + meta;
}

void features_extract(struct arena *a, const struct message *m, struct features *out,
                      feature_debug_fn debug, void *debug_ctx)
{
    features_extract_opts(a, m, out, 0, debug, debug_ctx);
}

void features_extract_opts(struct arena *a, const struct message *m, struct features *out,
                           unsigned opts, feature_debug_fn debug, void *debug_ctx)
{
    struct feat_ctx c;
    size_t subject_len = m->subject ? strlen(m->subject) : 0, i;

    memset(&c, 0, sizeof c);
    memset(out, 0, sizeof *out);
    c.a = a;
    c.out = out;
    c.debug = debug;
    c.debug_ctx = debug_ctx;
    c.no_pairs = (opts & FEATURES_NO_PAIRS) != 0;
    c.cap = feat_estimate(m, subject_len, c.no_pairs);
    out->hash = arena_alloc(a, c.cap * sizeof *out->hash);
    out->kind = arena_alloc(a, c.cap * sizeof *out->kind);

    feat_url_map_build(&c, m);
    c.tok.url_domain = feat_url_domain;
    c.tok.url_domain_ctx = &c;

    feat_meta_section(&c, m, m->subject, subject_len);
    feat_words(&c, m->subject, subject_len);
    for (i = 0; i < m->n_texts; i++)
        feat_words(&c, m->texts[i].text, m->texts[i].len);
    assert(c.words_emitted <= FEATURES_MAX_WORDS && out->n <= c.cap);

    tokenizer_free(&c.tok);
    buf_free(&c.meta);
    buf_free(&c.pair_text);
    for (i = 0; i < FEATURES_OSB_PREVIOUS; i++)
        buf_free(&c.ring_text[i]);
}
