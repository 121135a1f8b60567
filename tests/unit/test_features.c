/*
 * Tests for src/text/features.c: the feature stream, version 3 (docs/features.md).
 *
 * Messages are built by hand in an arena, as the parser would leave them, so
 * these tests depend on struct message only, not on the parser; the one
 * exception is a Received header's hop, which is filled by received_parse()
 * exactly as message_parse() fills it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/utf8.h"
#include "core/xalloc.h"
#include "message/html.h"
#include "message/message.h"
#include "message/received.h"
#include "text/features.h"

/* ---- building messages ---- */

#define TEST_MAX_ITEMS 32

static struct message *msg_new(struct arena *a)
{
    struct message *m = arena_calloc(a, 1, sizeof *m);

    m->arena = a;
    m->headers = arena_calloc(a, TEST_MAX_ITEMS, sizeof *m->headers);
    m->parts = arena_calloc(a, TEST_MAX_ITEMS, sizeof *m->parts);
    m->texts = arena_calloc(a, TEST_MAX_ITEMS, sizeof *m->texts);
    m->urls = arena_calloc(a, TEST_MAX_ITEMS, sizeof *m->urls);
    m->hops = arena_calloc(a, TEST_MAX_ITEMS, sizeof *m->hops);
    return m;
}

static void msg_add_header(struct message *m, const char *name, const char *value)
{
    assert_true(m->n_headers < TEST_MAX_ITEMS);
    m->headers[m->n_headers].name = name;
    m->headers[m->n_headers].value = value;
    m->headers[m->n_headers].raw = value;
    m->n_headers++;
}

/* A Received header and its hop, parsed from the same value as message_parse() does. */
static void msg_add_received(struct message *m, const char *value)
{
    assert_true(m->n_hops < TEST_MAX_ITEMS);
    msg_add_header(m, "Received", value);
    received_parse(m->arena, value, strlen(value), &m->hops[m->n_hops]);
    m->n_hops++;
    m->n_received++;
}

static struct msg_part *msg_add_part(struct message *m, const char *type, const char *charset)
{
    struct msg_part *p;

    assert_true(m->n_parts < TEST_MAX_ITEMS);
    p = &m->parts[m->n_parts];
    p->parent = m->n_parts ? 0 : -1;
    p->depth = m->n_parts ? 1 : 0;
    p->type = type;
    p->charset = charset;
    p->text_index = -1;
    m->n_parts++;
    return p;
}

/* A text part with its msg_text; hidden may be NULL. */
static struct msg_text *msg_add_text(struct message *m, const char *text, bool html,
                                     const char *hidden)
{
    struct msg_part *p = msg_add_part(m, html ? "text/html" : "text/plain", "utf-8");
    struct msg_text *t;

    assert_true(m->n_texts < TEST_MAX_ITEMS);
    t = &m->texts[m->n_texts];
    p->text_index = (int)m->n_texts;
    t->part = (int)(m->n_parts - 1);
    t->is_html = html;
    t->text = text;
    t->len = strlen(text);
    t->hidden = hidden ? hidden : "";
    t->hidden_len = hidden ? strlen(hidden) : 0;
    t->hidden_chars = t->hidden_len;
    m->n_texts++;
    return t;
}

static struct url *msg_add_url(struct message *m, const char *raw, const char *host,
                               const char *domain, unsigned flags)
{
    struct url *u;

    assert_true(m->n_urls < TEST_MAX_ITEMS);
    u = &m->urls[m->n_urls++];
    u->raw = raw;
    u->normalised = raw;
    u->scheme = "http";
    u->host = host;
    u->host_unicode = host;
    u->domain = domain;
    u->path = "/";
    u->flags = flags;
    u->source = URL_SRC_TEXT;
    return u;
}

/* ---- recording the debug callback ---- */

struct rec_entry {
    enum feature_kind kind;
    char *token;
    unsigned distance;
    uint64_t hash;
};

struct recorder {
    struct rec_entry *e;
    size_t n, cap;
    struct buf dump; /* "KIND token[ d=N]\n" per feature */
};

static void rec_fn(void *ctx, enum feature_kind kind, const char *token, size_t token_len,
                   unsigned distance, uint64_t hash)
{
    static const char *const names[] = {"WORD", "OSB", "META"};
    struct recorder *r = ctx;

    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->e = xrealloc(r->e, r->cap * sizeof *r->e);
    }
    r->e[r->n].kind = kind;
    r->e[r->n].token = xstrndup(token, token_len);
    r->e[r->n].distance = distance;
    r->e[r->n].hash = hash;
    r->n++;
    buf_printf(&r->dump, "%s %.*s", names[kind], (int)token_len, token);
    if (kind == FEAT_OSB) buf_printf(&r->dump, " d=%u", distance);
    buf_append_char(&r->dump, '\n');
}

static void rec_free(struct recorder *r)
{
    size_t i;

    for (i = 0; i < r->n; i++)
        free(r->e[i].token);
    free(r->e);
    buf_free(&r->dump);
}

/* Extracts with a recorder and checks the recorder saw exactly the stream. */
static void extract_recorded(struct arena *a, const struct message *m, struct features *f,
                             struct recorder *r)
{
    size_t i;

    features_extract(a, m, f, rec_fn, r);
    assert_int_equal(r->n, f->n);
    for (i = 0; i < f->n; i++) {
        assert_int_equal(r->e[i].kind, f->kind[i]);
        assert_true(r->e[i].hash == f->hash[i]);
        if (f->kind[i] != FEAT_OSB)
            assert_true(f->hash[i] == features_hash_token(r->e[i].token, strlen(r->e[i].token)));
    }
}

/* Index of the first recorded feature with this kind and token, or -1. */
static long rec_find(const struct recorder *r, enum feature_kind kind, const char *token)
{
    size_t i;

    for (i = 0; i < r->n; i++)
        if (r->e[i].kind == kind && strcmp(r->e[i].token, token) == 0) return (long)i;
    return -1;
}

static size_t rec_count(const struct recorder *r, enum feature_kind kind, const char *token)
{
    size_t i, n = 0;

    for (i = 0; i < r->n; i++)
        if (r->e[i].kind == kind && (token == NULL || strcmp(r->e[i].token, token) == 0)) n++;
    return n;
}

static size_t count_kind(const struct features *f, enum feature_kind kind)
{
    size_t i, n = 0;

    for (i = 0; i < f->n; i++)
        n += f->kind[i] == kind;
    return n;
}

/* The metadata tokens starting with prefix, in stream order, one per line. */
static char *rec_meta_with_prefix(const struct recorder *r, const char *prefix)
{
    struct buf out = {0};
    size_t i, n = strlen(prefix);

    for (i = 0; i < r->n; i++)
        if (r->e[i].kind == FEAT_META && strncmp(r->e[i].token, prefix, n) == 0)
            buf_printf(&out, "%s\n", r->e[i].token);
    return buf_release(&out); /* never NULL; the caller frees it */
}

/* Index of the first (first_of) or last metadata feature whose token starts with prefix, or -1. */
static long rec_find_prefix(const struct recorder *r, const char *prefix, bool first_of)
{
    size_t i, n = strlen(prefix);
    long found = -1;

    for (i = 0; i < r->n; i++) {
        if (r->e[i].kind != FEAT_META || strncmp(r->e[i].token, prefix, n) != 0) continue;
        found = (long)i;
        if (first_of) break;
    }
    return found;
}

/* ---- hashing ---- */

static void test_hash_token_is_xxh3_of_the_bytes(void **state)
{
    (void)state;
    assert_true(features_hash_token("hello", 5) == XXH3_64bits("hello", 5));
    /* Pinned: a seed or algorithm change would silently invalidate every stored token. */
    assert_true(features_hash_token("hello", 5) == UINT64_C(0x9555e8555c62dcfd));
    assert_true(features_hash_token("hello world", 5) == features_hash_token("hello", 5));
}

static void test_hash_pair_is_order_sensitive(void **state)
{
    uint64_t a = features_hash_token("cheap", 5), b = features_hash_token("pills", 5);
    (void)state;
    assert_true(features_hash_pair(a, b, 1) != features_hash_pair(b, a, 1));
    assert_true(features_hash_pair(a, a, 1) != features_hash_pair(a, a, 2));
}

static void test_hash_pair_layout_is_pinned(void **state)
{
    unsigned char bytes[16];
    uint64_t first = UINT64_C(0x0102030405060708), second = UINT64_C(0x1112131415161718);
    int i;
    (void)state;
    /* docs/features.md: XXH3 of le64(first) || le64(second), seeded with the distance. */
    for (i = 0; i < 8; i++) {
        bytes[i] = (unsigned char)(first >> (8 * i));
        bytes[8 + i] = (unsigned char)(second >> (8 * i));
    }
    assert_true(features_hash_pair(first, second, 3) == XXH3_64bits_withSeed(bytes, 16, 3));
    assert_true(features_hash_pair(first, second, 3) == UINT64_C(0xfd1059d417a95c5b));
}

/* ---- words and OSB ---- */

static void test_osb_pairs_window_of_five(void **state)
{
    static const char *const w[] = {"w1aa", "w2bb", "w3cc", "w4dd", "w5ee", "w6ff"};
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    uint64_t h[6];
    size_t i, k = 0, d;
    (void)state;
    msg_add_text(m, "w1aa w2bb w3cc w4dd w5ee w6ff", false, NULL);
    features_extract(a, m, &f, NULL, NULL);
    for (i = 0; i < 6; i++)
        h[i] = features_hash_token(w[i], strlen(w[i]));

    /* Skip the metadata, then: word i, then pairs with words i-1 .. i-4 (at most 4). */
    while (k < f.n && f.kind[k] == FEAT_META)
        k++;
    for (i = 0; i < 6; i++) {
        assert_int_equal(f.kind[k], FEAT_WORD);
        assert_true(f.hash[k] == h[i]);
        k++;
        for (d = 1; d <= 4 && d <= i; d++, k++) {
            assert_int_equal(f.kind[k], FEAT_OSB);
            assert_true(f.hash[k] == features_hash_pair(h[i - d], h[i], (unsigned)d));
        }
    }
    assert_int_equal(k, f.n);
    /* 6 words, and 0+1+2+3+4+4 pairs: w1 and w6 (distance 5) never pair. */
    assert_int_equal(count_kind(&f, FEAT_WORD), 6);
    assert_int_equal(count_kind(&f, FEAT_OSB), 14);
    for (i = 0; i < f.n; i++)
        assert_true(f.hash[i] != features_hash_pair(h[0], h[5], 5));
    arena_free(a);
}

static void test_osb_window_restarts_per_text(void **state)
{
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    (void)state;
    m->subject = "subject line";
    msg_add_text(m, "first body", false, NULL);
    msg_add_text(m, "second body", true, NULL);
    extract_recorded(a, m, &f, &r);
    assert_true(rec_find(&r, FEAT_OSB, "subject line") >= 0);
    assert_true(rec_find(&r, FEAT_OSB, "first body") >= 0);
    assert_int_equal(rec_find(&r, FEAT_OSB, "line first"), -1);
    assert_int_equal(rec_find(&r, FEAT_OSB, "body second"), -1);
    assert_int_equal(rec_count(&r, FEAT_OSB, NULL), 3);
    rec_free(&r);
    arena_free(a);
}

static void test_words_capped(void **state)
{
    const size_t n_words = FEATURES_MAX_WORDS + 5000;
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct buf text = {0};
    size_t i;
    (void)state;
    /* Distinct two-letter-plus words so nothing is dropped: "waa wab ...". */
    for (i = 0; i < n_words; i++)
        buf_printf(&text, "w%c%c%c ", 'a' + (int)(i / 676 % 26), 'a' + (int)(i / 26 % 26),
                   'a' + (int)(i % 26));
    msg_add_text(m, text.data, false, NULL);
    features_extract(a, m, &f, NULL, NULL);
    assert_int_equal(count_kind(&f, FEAT_WORD), FEATURES_MAX_WORDS);
    /* 4 pairs per word except the first four words of the text (0+1+2+3 = 6). */
    assert_int_equal(count_kind(&f, FEAT_OSB), 4 * FEATURES_MAX_WORDS - 10);
    /* n_words counts the tokens beyond the cap as well. */
    assert_int_equal(f.n_words, n_words);
    buf_free(&text);
    arena_free(a);
}

static void test_cap_spans_subject_and_texts(void **state)
{
    const size_t per_text = FEATURES_MAX_WORDS / 2 + 10;
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct buf text = {0};
    size_t i;
    (void)state;
    for (i = 0; i < per_text; i++)
        buf_append_str(&text, "spam ");
    m->subject = "cheap offer";
    msg_add_text(m, text.data, false, NULL);
    msg_add_text(m, text.data, false, NULL);
    features_extract(a, m, &f, NULL, NULL);
    assert_int_equal(count_kind(&f, FEAT_WORD), FEATURES_MAX_WORDS);
    assert_int_equal(f.n_words, 2 + 2 * per_text);
    buf_free(&text);
    arena_free(a);
}

/* ---- metadata ---- */

static void test_subject_words_are_marked(void **state)
{
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    (void)state;
    m->subject = "Re: URGENT \xEF\xBC\xA6\xEF\xBC\xB2\xEF\xBC\xA5\xEF\xBC\xA5 offer 2024";
    extract_recorded(a, m, &f, &r);
    assert_true(rec_find(&r, FEAT_META, "subj:re") >= 0);
    assert_true(rec_find(&r, FEAT_META, "subj:urgent") >= 0);
    assert_true(rec_find(&r, FEAT_META, "subj:free") >= 0); /* fullwidth, NFKC-folded */
    assert_true(rec_find(&r, FEAT_META, "subj:2024") >= 0); /* 2..4 digits stay literal */
    /* The subject is also the first text of the word section. */
    assert_true(rec_find(&r, FEAT_WORD, "urgent") > rec_find(&r, FEAT_META, "subj:offer"));
    assert_int_equal(rec_count(&r, FEAT_WORD, NULL), 5);
    assert_int_equal(f.n_words, 5);
    rec_free(&r);
    arena_free(a);
}

static void test_sender_domains_become_meta(void **state)
{
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    (void)state;
    m->from_domain = "Example.COM";
    m->env_from_domain = "bounce.example.net";
    m->reply_to_addr = "Someone@Free.Example.org";
    extract_recorded(a, m, &f, &r);
    assert_string_equal(r.dump.data, "META from_domain:example.com\n"
                                     "META env_from_domain:bounce.example.net\n"
                                     "META reply_to_domain:free.example.org\n");
    rec_free(&r);
    arena_free(a);
}

static void test_header_words_follow_mailer_and_precede_hops(void **state)
{
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    (void)state;
    m->subject = "Hello";
    msg_add_received(m, "from relay.example ([192.0.2.25]) by mx.example.net");
    msg_add_header(m, "X-Mailer", "Microsoft Outlook 16.0");
    msg_add_header(m, "MIME-Version", "1.0");
    msg_add_header(m, "From", "Sales Team <sales@shop.example>");
    msg_add_header(m, "user-AGENT", "Mozilla Thunderbird");
    extract_recorded(a, m, &f, &r);
    /*
     * Mailer words, then h: words in header order, then the hops, then the
     * subject. Header names alone no longer give tokens (no "hdr:"). "16.0"
     * keeps its 16 and drops the lone 0; the IP's 0 and 2 are dropped too,
     * which is why the hop gives rcvd_ip: and rcvd_net:.
     */
    assert_string_equal(r.dump.data, "META from_domain:none\n"
                                     "META x-mailer:microsoft\n"
                                     "META x-mailer:outlook\n"
                                     "META x-mailer:16\n"
                                     "META user-agent:mozilla\n"
                                     "META user-agent:thunderbird\n"
                                     "META h:received:from\n"
                                     "META h:received:relay\n"
                                     "META h:received:example\n"
                                     "META h:received:192\n"
                                     "META h:received:25\n"
                                     "META h:received:by\n"
                                     "META h:received:mx\n"
                                     "META h:received:example\n"
                                     "META h:received:net\n"
                                     "META h:from:sales\n"
                                     "META h:from:team\n"
                                     "META h:from:email:shop.example\n"
                                     "META rcvd_ip:192.0.2.25\n"
                                     "META rcvd_net:192.0.2\n"
                                     "META subj:hello\n"
                                     "WORD hello\n");
    rec_free(&r);
    arena_free(a);
}

static void test_header_words_only_of_listed_headers(void **state)
{
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    (void)state;
    /* The seven listed headers among others (Content-Type is no longer one), some of whose
     * names contain a listed one. */
    msg_add_header(m, "X-Foo", "foo words");
    msg_add_header(m, "Subject", "subject words");
    msg_add_header(m, "From", "alice@sender.example");
    msg_add_header(m, "Resent-From", "resent words");
    msg_add_header(m, "To", "Bob <bob@rcpt.example>");
    msg_add_header(m, "Delivered-To", "delivered words");
    msg_add_header(m, "Reply-To", "replies@sender.example");
    msg_add_header(m, "Return-Path", "<bounce@bounce.example>");
    msg_add_header(m, "Content-Type", "text/html; charset=utf-8");
    msg_add_header(m, "Message-ID", "<a1b2@mx.example>");
    msg_add_header(m, "Date", "Tue, 10 Nov 2026 09:14:02 +0000");
    msg_add_received(m, "by mx.example.net with LMTP"); /* no "from": a hop without an IP */
    msg_add_header(m, "Received-SPF", "pass (spf words)");
    msg_add_header(m, "List-Unsubscribe", "<https://list.example/u>");
    msg_add_header(m, "X-Original-To", "original words");
    extract_recorded(a, m, &f, &r);
    assert_string_equal(r.dump.data, "META from_domain:none\n"
                                     "META h:from:email:sender.example\n"
                                     "META h:to:bob\n"
                                     "META h:to:email:rcpt.example\n"
                                     "META h:reply-to:email:sender.example\n"
                                     "META h:return-path:email:bounce.example\n"
                                     "META h:message-id:email:mx.example\n"
                                     "META h:date:tue\n"
                                     "META h:date:10\n"
                                     "META h:date:nov\n"
                                     "META h:date:2026\n"
                                     "META h:date:09\n"
                                     "META h:date:14\n"
                                     "META h:date:02\n"
                                     "META h:date:0000\n"
                                     "META h:received:by\n"
                                     "META h:received:mx\n"
                                     "META h:received:example\n"
                                     "META h:received:net\n"
                                     "META h:received:with\n"
                                     "META h:received:lmtp\n");
    assert_int_equal(rec_find_prefix(&r, "h:x-foo:", true), -1);
    rec_free(&r);
    arena_free(a);
}

static void test_header_words_capped_per_header(void **state)
{
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    struct buf value = {0}, want = {0};
    char *got;
    size_t i;
    (void)state;
    for (i = 0; i < 60; i++)
        buf_printf(&value, "w%02zu ", i);
    msg_add_header(m, "To", value.data);
    msg_add_header(m, "To", "carol dave");
    msg_add_header(m, "Date", "Tue");
    extract_recorded(a, m, &f, &r);
    /* 50 words of the first To; the cap is per header, so the second To and Date still count. */
    for (i = 0; i < 50; i++)
        buf_printf(&want, "h:to:w%02zu\n", i);
    buf_append_str(&want, "h:to:carol\nh:to:dave\nh:date:tue\n");
    got = rec_meta_with_prefix(&r, "h:");
    assert_string_equal(got, want.data);
    free(got);
    buf_free(&value);
    buf_free(&want);
    rec_free(&r);
    arena_free(a);
}

static void test_header_words_capped_in_all(void **state)
{
    enum { N_HEADERS = 24, WORDS_EACH = 45 };
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    struct buf value = {0}, want = {0};
    char *got;
    size_t i, k, n_want = 0;
    (void)state;
    m->subject = "after";
    for (i = 0; i < N_HEADERS; i++) {
        buf_clear(&value);
        for (k = 0; k < WORDS_EACH; k++) {
            buf_printf(&value, "h%02zuw%02zu ", i, k);
            /* 1000 in all: 22 whole headers (990 words), then 10 words of the 23rd. */
            if (n_want < 1000) {
                buf_printf(&want, "h:received:h%02zuw%02zu\n", i, k);
                n_want++;
            }
        }
        msg_add_received(m, arena_strndup(a, value.data, value.len));
    }
    extract_recorded(a, m, &f, &r);
    got = rec_meta_with_prefix(&r, "h:");
    assert_string_equal(got, want.data);
    /* Other lists have caps of their own. */
    assert_true(rec_find(&r, FEAT_META, "subj:after") >= 0);
    free(got);
    buf_free(&value);
    buf_free(&want);
    rec_free(&r);
    arena_free(a);
}

/* The stream of a message with three listed headers whose names are spelt as given. */
static void extract_named(struct arena *a, const char *const names[3], struct features *f,
                          struct recorder *r)
{
    struct message *m = msg_new(a);

    msg_add_header(m, names[0], "<a1b2@mx.example>");
    msg_add_header(m, names[1], "alice@sender.example");
    msg_add_header(m, names[2], "text/plain");
    extract_recorded(a, m, f, r);
}

static void test_header_name_match_is_case_insensitive(void **state)
{
    static const char *const canonical[3] = {"Message-ID", "From", "Return-Path"};
    static const char *const odd[3] = {"message-id", "FROM", "return-PATH"};
    struct arena *a = arena_new(0);
    struct features f1, f2;
    struct recorder r1 = {0}, r2 = {0};
    (void)state;
    extract_named(a, canonical, &f1, &r1);
    extract_named(a, odd, &f2, &r2);
    /* Whatever the spelling, the prefix is the lowercase name of the list. */
    assert_string_equal(r1.dump.data, "META from_domain:none\n"
                                      "META h:message-id:email:mx.example\n"
                                      "META h:from:email:sender.example\n"
                                      "META h:return-path:text\n"
                                      "META h:return-path:plain\n");
    assert_string_equal(r2.dump.data, r1.dump.data);
    assert_int_equal(f1.n, f2.n);
    assert_memory_equal(f1.hash, f2.hash, f1.n * sizeof *f1.hash);
    rec_free(&r1);
    rec_free(&r2);
    arena_free(a);
}

static void test_received_hops_give_ip_and_net(void **state)
{
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    char *got;
    (void)state;
    m->subject = "hi there";
    msg_add_received(m, "from mx.example.org (mx.example.org [192.0.2.25]) by mail.example.net");
    msg_add_received(m, "from mail.example.org (mail.example.org [IPv6:2001:DB8::25]) by "
                        "mx.example.org");
    msg_add_received(m, "from gw.example.org (gw.example.org [IPv6:::ffff:198.51.100.7]) by "
                        "mail.example.org");
    msg_add_received(m, "by mail.example.net with LMTP"); /* no IP: nothing */
    msg_add_received(m, "from [203.0.113.77] (helo=pc) by mail.example.net");
    extract_recorded(a, m, &f, &r);
    /* One rcvd_ip: per hop with an IP, in hop order; rcvd_net: (a /24) for IPv4 only. */
    got = rec_meta_with_prefix(&r, "rcvd_");
    assert_string_equal(got, "rcvd_ip:192.0.2.25\n"
                             "rcvd_net:192.0.2\n"
                             "rcvd_ip:2001:db8::25\n"
                             "rcvd_ip:::ffff:198.51.100.7\n"
                             "rcvd_ip:203.0.113.77\n"
                             "rcvd_net:203.0.113\n");
    /* All of them between the header words and the subject words. */
    assert_true(rec_find_prefix(&r, "h:", false) < rec_find_prefix(&r, "rcvd_", true));
    assert_int_equal(rec_find_prefix(&r, "rcvd_", false) + 1, rec_find_prefix(&r, "subj:", true));
    free(got);
    rec_free(&r);
    arena_free(a);
}

static void test_mime_and_attachment_tokens(void **state)
{
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    struct msg_part *p;
    (void)state;
    p = msg_add_part(m, "multipart/mixed", NULL);
    p->is_multipart = true;
    p = msg_add_part(m, "text/plain", "ISO-8859-1");
    p->flags = PART_F_BAD_QP | PART_F_8BIT_IN_7BIT;
    p = msg_add_part(m, "application/octet-stream", NULL);
    p->is_attachment = true;
    p->disposition = "attachment";
    p->filename = "Invoice.PDF.exe";
    p->sniffed_type = "application/x-msdownload";
    p = msg_add_part(m, "application/zip", NULL);
    p->is_attachment = true;
    p->sniffed_type = "application/zip";
    extract_recorded(a, m, &f, &r);
    assert_string_equal(r.dump.data, "META from_domain:none\n"
                                     "META mime:multipart/mixed\n"
                                     "META mime:text/plain\n"
                                     "META charset:iso-8859-1\n"
                                     "META part_flag:bad_qp\n"
                                     "META part_flag:8bit_in_7bit\n"
                                     "META mime:application/octet-stream\n"
                                     "META attach:application/octet-stream\n"
                                     "META attach_sniffed:application/x-msdownload\n"
                                     "META attach_ext:exe\n"
                                     "META mime:application/zip\n"
                                     "META attach:application/zip\n"
                                     "META attach_ext:none\n");
    rec_free(&r);
    arena_free(a);
}

/* The attach_ext: token of one attachment named filename. */
static void check_attach_ext(const char *filename, const char *want)
{
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    struct msg_part *p = msg_add_part(m, "application/octet-stream", NULL);

    p->is_attachment = true;
    p->filename = filename;
    extract_recorded(a, m, &f, &r);
    assert_true(r.n >= 1);
    assert_string_equal(r.e[r.n - 1].token, want);
    rec_free(&r);
    arena_free(a);
}

static void test_attachment_extension_rules(void **state)
{
    (void)state;
    check_attach_ext("report.pdf.exe. . ", "attach_ext:exe"); /* Windows drops trailing dots */
    check_attach_ext("\xEF\xBC\xB2\xEF\xBD\x85\xEF\xBD\x81\xEF\xBD\x84.\xEF\xBC\xA5\xEF\xBC\xB8"
                     "\xEF\xBC\xA5",
                     "attach_ext:exe"); /* Ｒｅａｄ.ＥＸＥ */
    check_attach_ext("archive.tar.GZ", "attach_ext:gz");
    check_attach_ext("README", "attach_ext:none");
    check_attach_ext("trailing.", "attach_ext:none");
    check_attach_ext("notes.this is not one", "attach_ext:odd");
    check_attach_ext("x.verylongextension", "attach_ext:odd");
    check_attach_ext("x.\xD0\xB5x\xD0\xB5", "attach_ext:odd"); /* Cyrillic е look-alike */
}

static void test_url_domains_and_flags_become_meta(void **state)
{
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    (void)state;
    msg_add_url(m, "http://paypal.com@1.2.3.4/", "1.2.3.4", "1.2.3.4",
                URL_F_IP_LITERAL | URL_F_USERINFO);
    msg_add_url(m, "mailto:x@example.com", "", "", 0); /* no domain: nothing */
    msg_add_url(m, "www.Example.com", "www.example.com", "Example.com", URL_F_NO_SCHEME);
    extract_recorded(a, m, &f, &r);
    assert_string_equal(r.dump.data, "META from_domain:none\n"
                                     "META url_domain:1.2.3.4\n"
                                     "META url_flag:ip_literal\n"
                                     "META url_flag:userinfo\n"
                                     "META url_domain:example.com\n"
                                     "META url_flag:no_scheme\n");
    rec_free(&r);
    arena_free(a);
}

static void test_url_in_text_becomes_domain_token(void **state)
{
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    (void)state;
    msg_add_url(m, "https://mail.example.co.uk/a", "mail.example.co.uk", "example.co.uk", 0);
    /* An obfuscated numeric host: the parser rewrote it, the raw text still has it. */
    msg_add_url(m, "http://3232235777/x", "192.168.1.1", "192.168.1.1", URL_F_NUMERIC_HOST);
    msg_add_text(m,
                 "Go to HTTPS://Mail.Example.co.uk/login?user=me or http://3232235777/x or "
                 "http://unknown.example.org/ now",
                 false, NULL);
    extract_recorded(a, m, &f, &r);
    assert_true(rec_find(&r, FEAT_WORD, "url:example.co.uk") >= 0);
    assert_true(rec_find(&r, FEAT_WORD, "url:192.168.1.1") >= 0);
    assert_true(rec_find(&r, FEAT_WORD, "url:unknown.example.org") >= 0);
    /* None of the URL's parts leak out as words. */
    assert_int_equal(rec_find(&r, FEAT_WORD, "login"), -1);
    assert_int_equal(rec_find(&r, FEAT_WORD, "mail"), -1);
    assert_int_equal(rec_find(&r, FEAT_WORD, "user"), -1);
    assert_int_equal(rec_find(&r, FEAT_WORD, "https"), -1);
    assert_true(rec_find(&r, FEAT_OSB, "to url:example.co.uk") >= 0);
    rec_free(&r);
    arena_free(a);
}

static void test_email_in_text_becomes_domain_token(void **state)
{
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    (void)state;
    msg_add_text(m, "reply to winner.claims@Lottery.Example now", false, NULL);
    extract_recorded(a, m, &f, &r);
    assert_true(rec_find(&r, FEAT_WORD, "email:lottery.example") >= 0);
    assert_int_equal(rec_find(&r, FEAT_WORD, "winner"), -1);
    assert_int_equal(rec_count(&r, FEAT_WORD, NULL), 4);
    rec_free(&r);
    arena_free(a);
}

static void test_hidden_text_is_meta_not_words(void **state)
{
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    struct msg_text *t;
    (void)state;
    t = msg_add_text(m, "Buy now", true, "meeting agenda quarterly");
    t->html_flags = HTML_F_SCRIPT | HTML_F_BROKEN;
    extract_recorded(a, m, &f, &r);
    assert_true(rec_find(&r, FEAT_META, "hidden:meeting") >= 0);
    assert_true(rec_find(&r, FEAT_META, "hidden:quarterly") >= 0);
    assert_true(rec_find(&r, FEAT_META, "html_flag:script") >= 0);
    assert_true(rec_find(&r, FEAT_META, "html_flag:broken") >= 0);
    assert_int_equal(rec_find(&r, FEAT_META, "html_flag:form"), -1);
    assert_int_equal(rec_find(&r, FEAT_WORD, "meeting"), -1);
    assert_int_equal(rec_count(&r, FEAT_WORD, NULL), 2);
    assert_int_equal(f.n_words, 2);
    rec_free(&r);
    arena_free(a);
}

static void test_message_flags_become_meta(void **state)
{
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    (void)state;
    /* 0x8000 is no MSG_F_* of version 2: it must not enter the stream. */
    m->flags = MSG_F_HTML_ONLY | MSG_F_NO_HEADERS | MSG_F_8BIT_HEADERS | 0x8000u;
    extract_recorded(a, m, &f, &r);
    assert_string_equal(r.dump.data, "META flag:no_headers\n"
                                     "META flag:html_only\n"
                                     "META flag:8bit_headers\n"
                                     "META from_domain:none\n");
    rec_free(&r);
    arena_free(a);
}

static void test_empty_message_with_no_texts(void **state)
{
    struct arena *a = arena_new(0);
    struct message *m = arena_calloc(a, 1, sizeof *m); /* every pointer NULL, every count 0 */
    struct features f;
    struct recorder r = {0};
    (void)state;
    m->arena = a;
    extract_recorded(a, m, &f, &r);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.n_words, 0);
    assert_int_equal(f.kind[0], FEAT_META);
    assert_string_equal(r.dump.data, "META from_domain:none\n");
    rec_free(&r);
    arena_free(a);
}

static void test_odd_text_does_not_break_the_stream(void **state)
{
    const size_t big = 1024 * 1024;
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    char *word = arena_alloc(a, big + 1);
    (void)state;
    memset(word, 'Q', big);
    word[big] = '\0';
    msg_add_text(m,
                 "Cafe\xCC\x81 \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D \xF0\x9F\x98\x80\xF0\x9F\x94\xA5 "
                 "\xE6\x97\xA5\xE6\x9C\xAC \xE2\x80\x8F\xE2\x80\x8F \xCC\x81",
                 false, NULL);
    msg_add_text(m, word, false, NULL);
    msg_add_text(m, "", false, "");
    extract_recorded(a, m, &f, &r);
    assert_string_equal(r.dump.data, "META from_domain:none\n"
                                     "META mime:text/plain\n"
                                     "META charset:utf-8\n"
                                     "META mime:text/plain\n"
                                     "META charset:utf-8\n"
                                     "META mime:text/plain\n"
                                     "META charset:utf-8\n"
                                     "WORD caf\xC3\xA9\n"
                                     "WORD \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D\n"
                                     "OSB caf\xC3\xA9 \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D d=1\n"
                                     "WORD \xE6\x97\xA5\n"
                                     "OSB \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D \xE6\x97\xA5 d=1\n"
                                     "OSB caf\xC3\xA9 \xE6\x97\xA5 d=2\n"
                                     "WORD \xE6\x9C\xAC\n"
                                     "OSB \xE6\x97\xA5 \xE6\x9C\xAC d=1\n"
                                     "OSB \xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D \xE6\x9C\xAC d=2\n"
                                     "OSB caf\xC3\xA9 \xE6\x9C\xAC d=3\n"
                                     "WORD longword:qqq:big\n");
    rec_free(&r);
    arena_free(a);
}

static void test_output_grows_beyond_the_estimate(void **state)
{
    const size_t n_chars = 3000;
    struct arena *a = arena_new(0);
    struct message *m = msg_new(a);
    struct features f;
    struct recorder r = {0};
    struct buf text = {0};
    size_t i;
    (void)state;
    /* Han text: 3 bytes per token, more features than one per 5 bytes predicts. */
    for (i = 0; i < n_chars; i++)
        utf8_append_codepoint(&text, (uint32_t)(0x4E00 + i));
    msg_add_text(m, text.data, false, NULL);
    extract_recorded(a, m, &f, &r); /* also checks every hash survived the growth */
    assert_int_equal(count_kind(&f, FEAT_WORD), n_chars);
    assert_int_equal(count_kind(&f, FEAT_OSB), 4 * n_chars - 10);
    rec_free(&r);
    buf_free(&text);
    arena_free(a);
}

/* ---- the stream as a whole ---- */

/* The example of docs/features.md, section 6. */
static struct message *doc_example(struct arena *a)
{
    struct message *m = msg_new(a);

    m->subject = "Win a FREE iPhone 15!!";
    m->from_domain = "prize.example.com";
    msg_add_received(m, "from [192.0.2.25] by mx.example.net");
    msg_add_header(m, "From", "Prize <win@prize.example.com>");
    msg_add_header(m, "Subject", m->subject);
    msg_add_text(m, "Claim at https://www.prize.example.com/x?id=9", false, NULL);
    msg_add_url(m, "https://www.prize.example.com/x?id=9", "www.prize.example.com", "example.com",
                0);
    return m;
}

static void test_documented_example_is_exact(void **state)
{
    struct arena *a = arena_new(0);
    struct features f;
    struct recorder r = {0};
    (void)state;
    extract_recorded(a, doc_example(a), &f, &r);
    assert_string_equal(r.dump.data, "META from_domain:prize.example.com\n"
                                     "META h:received:from\n"
                                     "META h:received:192\n"
                                     "META h:received:25\n"
                                     "META h:received:by\n"
                                     "META h:received:mx\n"
                                     "META h:received:example\n"
                                     "META h:received:net\n"
                                     "META h:from:prize\n"
                                     "META h:from:email:prize.example.com\n"
                                     "META rcvd_ip:192.0.2.25\n"
                                     "META rcvd_net:192.0.2\n"
                                     "META subj:win\n"
                                     "META subj:free\n"
                                     "META subj:iphone\n"
                                     "META subj:15\n"
                                     "META mime:text/plain\n"
                                     "META charset:utf-8\n"
                                     "META url_domain:example.com\n"
                                     "WORD win\n"
                                     "WORD free\n"
                                     "OSB win free d=1\n"
                                     "WORD iphone\n"
                                     "OSB free iphone d=1\n"
                                     "OSB win iphone d=2\n"
                                     "WORD 15\n"
                                     "OSB iphone 15 d=1\n"
                                     "OSB free 15 d=2\n"
                                     "OSB win 15 d=3\n"
                                     "WORD claim\n"
                                     "WORD at\n"
                                     "OSB claim at d=1\n"
                                     "WORD url:example.com\n"
                                     "OSB at url:example.com d=1\n"
                                     "OSB claim url:example.com d=2\n");
    assert_int_equal(f.n_words, 7);
    rec_free(&r);
    arena_free(a);
}

/* A message exercising every section, for determinism and the pinned digest. */
static struct message *rich_message(struct arena *a)
{
    struct message *m = doc_example(a);
    struct msg_part *p;
    struct msg_text *t;

    m->flags = MSG_F_HTML_ONLY | MSG_F_BAD_HEADERS;
    m->env_from_domain = "bounces.example.net";
    m->reply_to_addr = "claims@freemail.example";
    msg_add_header(m, "X-Mailer", "PHPMailer 6.1.4");
    msg_add_header(m, "User-Agent", "Roundcube Webmail/1.6.0");
    msg_add_header(m, "To", "undisclosed-recipients:;");
    msg_add_header(m, "Reply-To", "claims@freemail.example");
    msg_add_header(m, "Return-Path", "<bounce+12345@bounces.example.net>");
    msg_add_header(m, "Content-Type", "multipart/mixed; boundary=\"b1_x\"");
    msg_add_header(m, "message-id", "<20240117.4711@mailer.prize.example.com>");
    msg_add_header(m, "Date", "Wed, 17 Jan 2024 09:14:02 +0100");
    msg_add_header(m, "X-Campaign", "spring sale 2024");
    msg_add_received(m, "from mail.example.org (mail.example.org [IPv6:2001:db8::25]) by "
                        "mx.example.net");
    t = msg_add_text(m,
                     "Dear \xC3\xA9l\xC3\xA8ve, \xE6\x97\xA5\xE6\x9C\xAC \xD7\xA9\xD7\x9C\xD7\x95"
                     "\xD7\x9D write winner@claims.example.org 1,000,000 USD, "
                     "ref 20240117 zip 90210",
                     true, "invisible ham words");
    t->html_flags = HTML_F_FORM;
    p = msg_add_part(m, "application/zip", NULL);
    p->is_attachment = true;
    p->filename = "prize.zip";
    msg_add_url(m, "http://3232235777/", "192.168.1.1", "192.168.1.1",
                URL_F_NUMERIC_HOST | URL_F_IP_LITERAL);
    return m;
}

static uint64_t stream_digest(const struct features *f)
{
    XXH3_state_t *st = XXH3_createState();
    uint64_t d;
    size_t i;

    XXH3_64bits_reset(st);
    for (i = 0; i < f->n; i++) {
        unsigned char b[9];
        int k;
        for (k = 0; k < 8; k++)
            b[k] = (unsigned char)(f->hash[i] >> (8 * k));
        b[8] = f->kind[i];
        XXH3_64bits_update(st, b, sizeof b);
    }
    d = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return d;
}

static void test_stream_is_deterministic(void **state)
{
    struct arena *a1 = arena_new(0), *a2 = arena_new(4096);
    struct features f1, f2, f3;
    struct recorder r = {0};
    (void)state;
    /* Different arenas, with and without debug: the same stream every time. */
    features_extract(a1, rich_message(a1), &f1, NULL, NULL);
    features_extract(a2, rich_message(a2), &f2, rec_fn, &r);
    features_extract(a2, rich_message(a2), &f3, NULL, NULL);
    assert_int_equal(f1.n, f2.n);
    assert_int_equal(f1.n, f3.n);
    assert_int_equal(f1.n_words, f2.n_words);
    assert_memory_equal(f1.hash, f2.hash, f1.n * sizeof *f1.hash);
    assert_memory_equal(f1.kind, f2.kind, f1.n * sizeof *f1.kind);
    assert_memory_equal(f1.hash, f3.hash, f1.n * sizeof *f1.hash);
    rec_free(&r);
    arena_free(a1);
    arena_free(a2);
}

static void test_no_pairs_is_the_stream_without_pairs(void **state)
{
    struct arena *a = arena_new(0);
    struct features all, words;
    size_t i, k = 0, pairs = 0;
    (void)state;
    features_extract(a, rich_message(a), &all, NULL, NULL);
    features_extract_opts(a, rich_message(a), &words, FEATURES_NO_PAIRS, NULL, NULL);
    for (i = 0; i < all.n; i++) {
        if (all.kind[i] == FEAT_OSB) {
            pairs++;
            continue;
        }
        assert_true(k < words.n);
        assert_int_equal(words.kind[k], all.kind[i]);
        assert_true(words.hash[k] == all.hash[i]);
        k++;
    }
    assert_int_equal(k, words.n);
    assert_true(pairs > 0);
    assert_int_equal(words.n_words, all.n_words);
    arena_free(a);
}

static void test_stream_v3_digest_is_pinned(void **state)
{
    struct arena *a = arena_new(0);
    struct features f;
    uint64_t digest;
    (void)state;
    features_extract(a, rich_message(a), &f, NULL, NULL);
    digest = stream_digest(&f);
    arena_free(a);
    /*
     * If this fails, the stream changed: stored Bayes tokens and neural models
     * no longer match. Bump FEATURE_STREAM_VERSION, update docs/features.md,
     * then update the version and digest here together.
     */
    assert_int_equal(FEATURE_STREAM_VERSION, 3);
    if (digest != UINT64_C(0xc912a3480878d7c3))
        fail_msg("stream v3 digest changed: 0x%016llx", (unsigned long long)digest);
}

struct thread_run {
    uint64_t digest;
    size_t n;
};

static void *extract_in_thread(void *arg)
{
    struct thread_run *run = arg;
    struct arena *a = arena_new(0);
    struct features f;
    int i;

    for (i = 0; i < 50; i++) {
        features_extract(a, rich_message(a), &f, NULL, NULL);
        run->digest ^= stream_digest(&f) + (uint64_t)i;
        run->n = f.n;
        arena_reset(a);
    }
    arena_free(a);
    return NULL;
}

/*
 * The scan path runs on several threads with no locks: the Unicode tables are
 * built on first use (pthread_once), so this runs first, with them still cold.
 */
static void test_concurrent_extraction_agrees(void **state)
{
    enum { N_THREADS = 4 };
    pthread_t th[N_THREADS];
    struct thread_run runs[N_THREADS];
    int i;
    (void)state;
    memset(runs, 0, sizeof runs);
    for (i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, extract_in_thread, &runs[i]), 0);
    for (i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (i = 1; i < N_THREADS; i++) {
        assert_int_equal(runs[i].n, runs[0].n);
        assert_true(runs[i].digest == runs[0].digest);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_extraction_agrees), /* first: tables still cold */
        cmocka_unit_test(test_hash_token_is_xxh3_of_the_bytes),
        cmocka_unit_test(test_hash_pair_is_order_sensitive),
        cmocka_unit_test(test_hash_pair_layout_is_pinned),
        cmocka_unit_test(test_osb_pairs_window_of_five),
        cmocka_unit_test(test_osb_window_restarts_per_text),
        cmocka_unit_test(test_words_capped),
        cmocka_unit_test(test_cap_spans_subject_and_texts),
        cmocka_unit_test(test_subject_words_are_marked),
        cmocka_unit_test(test_sender_domains_become_meta),
        cmocka_unit_test(test_header_words_follow_mailer_and_precede_hops),
        cmocka_unit_test(test_header_words_only_of_listed_headers),
        cmocka_unit_test(test_header_words_capped_per_header),
        cmocka_unit_test(test_header_words_capped_in_all),
        cmocka_unit_test(test_header_name_match_is_case_insensitive),
        cmocka_unit_test(test_received_hops_give_ip_and_net),
        cmocka_unit_test(test_mime_and_attachment_tokens),
        cmocka_unit_test(test_attachment_extension_rules),
        cmocka_unit_test(test_url_domains_and_flags_become_meta),
        cmocka_unit_test(test_url_in_text_becomes_domain_token),
        cmocka_unit_test(test_email_in_text_becomes_domain_token),
        cmocka_unit_test(test_hidden_text_is_meta_not_words),
        cmocka_unit_test(test_message_flags_become_meta),
        cmocka_unit_test(test_empty_message_with_no_texts),
        cmocka_unit_test(test_odd_text_does_not_break_the_stream),
        cmocka_unit_test(test_output_grows_beyond_the_estimate),
        cmocka_unit_test(test_documented_example_is_exact),
        cmocka_unit_test(test_stream_is_deterministic),
        cmocka_unit_test(test_stream_v3_digest_is_pinned),
        cmocka_unit_test(test_no_pairs_is_the_stream_without_pairs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
