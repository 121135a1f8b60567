/*
 * tokenize - word, number, URL and e-mail tokens of a text. See tokenize.h and
 * docs/features.md, which defines the rules implemented here.
 *
 * The scanner walks the raw text once. At each ASCII letter or digit that
 * starts a run it first tries an e-mail address, then a URL; failing both it
 * cuts a word. A word made only of ASCII is classified and lowercased on the
 * spot (for ASCII, NFKC_Casefold is exactly A-Z -> a-z, so the fast path is
 * not an approximation). A run with non-ASCII code points is normalised as a
 * whole and then cut again into pieces, because normalisation can turn one
 * run into several words ("⒈" -> "1.") and because CJK text, which has no
 * spaces, is cut into one token per character (OSB pairs then supply the
 * character bigrams).
 *
 * Why e-mail detection is linear: a failed attempt from position i scans the
 * local-part characters up to some j and finds no usable '@' there; every
 * later start inside [i, j) would stop at the same j and fail the same way, so
 * no_email_before = j skips them.
 */
#include "text/tokenize.h"
#include "core/utf8.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>
#include <utf8proc.h>

static inline bool tok_ascii_digit(unsigned char c)
{
    return (unsigned char)(c - '0') < 10u;
}

static inline bool tok_ascii_alnum(unsigned char c)
{
    return tok_ascii_digit(c) || (unsigned char)((c | 0x20) - 'a') < 26u;
}

/* Characters of an e-mail local part we recognise (a practical subset of RFC 5322). */
static inline bool tok_local_char(unsigned char c)
{
    return tok_ascii_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

/* Characters of a URL's userinfo and port ("user:pass@", ":8080"). */
static inline bool tok_userinfo_char(unsigned char c)
{
    return c < 0x80 && (tok_ascii_alnum(c) || (c != 0 && strchr("-._~%!$&'()*+,;=:", c)));
}

/* ASCII characters of a host name (IDN hosts may add non-ASCII word code points). */
static inline bool tok_host_char(unsigned char c)
{
    return tok_ascii_alnum(c) || c == '-' || c == '.' || c == '_' || c == '%';
}

/* Characters after the host that still belong to the URL (path, query, port). */
static inline bool tok_url_tail_char(unsigned char c)
{
    return c > 0x20 && c < 0x7F && c != '<' && c != '>' && c != '"' && c != '`' && c != '{' &&
           c != '}' && c != '|' && c != '\\' && c != '^';
}

/* Decodes the valid sequence of n bytes at s (n from utf8_seq_len()). */
static inline int32_t tok_decode(const unsigned char *s, size_t n)
{
    switch (n) {
    case 1: return s[0];
    case 2: return ((s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3: return ((s[0] & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default:
        return ((s[0] & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) |
               (s[3] & 0x3F);
    }
}

static inline bool tok_cat_letter_digit_mark(utf8proc_category_t cat)
{
    return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_NO;
}

static inline bool tok_cat_letter_digit(utf8proc_category_t cat)
{
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
           (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

static inline bool tok_cat_mark(utf8proc_category_t cat)
{
    return cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME;
}

/*
 * A symbol that NFKC turns into a letter or digit: "ⓥ" -> "v", "™" -> "tm",
 * "㎏" -> "kg". Spammers write words in such symbols precisely because naive
 * tokenizers drop them.
 */
static bool tok_symbol_is_compat_alnum(int32_t cp)
{
    utf8proc_int32_t d[8];
    int boundclass = 0;
    utf8proc_ssize_t n;

    n = utf8proc_decompose_char(cp, d, 8, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, &boundclass);
    return n >= 1 && d[0] != cp && tok_cat_letter_digit(utf8proc_category(d[0]));
}

/* A non-ASCII code point that may start a word in raw text. */
static bool tok_is_word_start(int32_t cp)
{
    utf8proc_category_t cat = utf8proc_category(cp);

    if (tok_cat_letter_digit_mark(cat)) return true;
    if (cat >= UTF8PROC_CATEGORY_SM && cat <= UTF8PROC_CATEGORY_SO)
        return tok_symbol_is_compat_alnum(cp);
    return false;
}

/*
 * A non-ASCII code point that continues a word in raw text: format characters
 * (zero-width space, soft hyphen, bidi controls) do not split "vi\u200Bagra";
 * normalisation then removes them.
 */
static bool tok_is_word_cont(int32_t cp)
{
    return utf8proc_category(cp) == UTF8PROC_CATEGORY_CF || tok_is_word_start(cp);
}

/* Scripts written without spaces between words, cut into one token per character. */
static bool tok_is_cjk(int32_t cp, utf8proc_category_t cat)
{
    bool in_range = (cp >= 0x2E80 && cp <= 0x2FDF) || (cp >= 0x3005 && cp <= 0x3007) ||
                    (cp >= 0x3021 && cp <= 0x3029) || (cp >= 0x3031 && cp <= 0x3035) ||
                    (cp >= 0x3040 && cp <= 0x30FF) || (cp >= 0x31F0 && cp <= 0x31FF) ||
                    (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF) ||
                    (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x20000 && cp <= 0x3FFFF);
    return in_range && tok_cat_letter_digit(cat);
}

static void tok_emit(struct tokenizer *t, enum token_kind kind, const char *text, size_t len)
{
    struct token tok = {kind, text, len};

    t->n_tokens++;
    if (!t->fn(t->ctx, &tok)) t->stopped = true;
}

static void tok_append_uint(struct buf *b, size_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_append(b, tmp + i, sizeof tmp - i);
}

/* "longword:<first 3 code points>:<bucket>"; prefix is already normalised. */
static void tok_emit_longword(struct tokenizer *t, const char *prefix, size_t prefix_len,
                              size_t n_cps)
{
    size_t bucket = 64;

    buf_clear(&t->token);
    buf_append(&t->token, "longword:", 9);
    buf_append(&t->token, prefix, prefix_len);
    buf_append_char(&t->token, ':');
    if (n_cps > 1024) {
        buf_append(&t->token, "big", 3);
    } else {
        while (bucket < n_cps) bucket *= 2;
        tok_append_uint(&t->token, bucket);
    }
    tok_emit(t, TOKEN_LONGWORD, t->token.data, t->token.len);
}

static void tok_emit_number(struct tokenizer *t, size_t n_digits)
{
    buf_clear(&t->token);
    buf_append(&t->token, "num:", 4);
    tok_append_uint(&t->token, n_digits);
    tok_emit(t, TOKEN_NUMBER, t->token.data, t->token.len);
}

/* An all-ASCII run s[0..n): the fast path, no utf8proc. */
static void tok_emit_ascii_word(struct tokenizer *t, const unsigned char *s, size_t n,
                                bool all_digits)
{
    char *d;
    size_t i;

    if (n > TOKEN_MAX_CPS) {
        char prefix[TOKEN_SHAPE_PREFIX_CPS];
        for (i = 0; i < TOKEN_SHAPE_PREFIX_CPS; i++) prefix[i] = (char)normalize_ascii_lower(s[i]);
        tok_emit_longword(t, prefix, TOKEN_SHAPE_PREFIX_CPS, n);
        return;
    }
    if (all_digits) {
        tok_emit_number(t, n);
        return;
    }
    if (n < TOKEN_MIN_CPS) return;
    buf_clear(&t->token);
    buf_reserve(&t->token, n);
    d = t->token.data;
    for (i = 0; i < n; i++) d[i] = (char)normalize_ascii_lower(s[i]);
    tok_emit(t, TOKEN_WORD, d, n);
}

/* One piece of a normalised run: the same rules as the ASCII path, by code points. */
static void tok_emit_piece(struct tokenizer *t, const char *p, size_t len, size_t n_cps,
                           bool all_digits, bool cjk)
{
    if (n_cps > TOKEN_MAX_CPS) {
        const unsigned char *q = (const unsigned char *)p;
        size_t i, off = 0;
        for (i = 0; i < TOKEN_SHAPE_PREFIX_CPS; i++) {
            size_t n = utf8_seq_len(q + off, len - off);
            off += n ? n : 1;
        }
        tok_emit_longword(t, p, off, n_cps);
        return;
    }
    if (all_digits) {
        tok_emit_number(t, n_cps);
        return;
    }
    if (n_cps < TOKEN_MIN_CPS && !cjk) return;
    tok_emit(t, TOKEN_WORD, p, len);
}

/*
 * A run s[0..n) with non-ASCII code points: normalise it, then cut the result
 * at code points that are not letters, digits, marks or format characters,
 * and around each CJK character (with the marks that follow it).
 */
static void tok_emit_unicode_run(struct tokenizer *t, const unsigned char *s, size_t n)
{
    const unsigned char *q, *e, *piece = NULL;
    size_t piece_cps = 0;
    bool piece_digits = true;

    buf_clear(&t->span);
    normalize_append(&t->norm, &t->span, (const char *)s, n);
    q = (const unsigned char *)t->span.data;
    e = q + t->span.len;
    while (q < e && !t->stopped) {
        size_t len = utf8_seq_len(q, (size_t)(e - q));
        int32_t cp;
        utf8proc_category_t cat;

        if (len == 0) len = 1, cp = 0xFFFD; /* cannot happen: utf8proc output is valid */
        else cp = tok_decode(q, len);
        cat = utf8proc_category(cp);
        if (tok_is_cjk(cp, cat)) {
            const unsigned char *r = q + len;
            size_t cps = 1;
            if (piece) tok_emit_piece(t, (const char *)piece, (size_t)(q - piece), piece_cps,
                                      piece_digits, false);
            piece = NULL;
            while (r < e) {
                size_t l2 = utf8_seq_len(r, (size_t)(e - r));
                if (l2 == 0 || !tok_cat_mark(utf8proc_category(tok_decode(r, l2)))) break;
                r += l2;
                cps++;
            }
            if (!t->stopped) tok_emit_piece(t, (const char *)q, (size_t)(r - q), cps, false, true);
            q = r;
            continue;
        }
        if (tok_cat_letter_digit_mark(cat) || cat == UTF8PROC_CATEGORY_CF) {
            if (piece == NULL) {
                piece = q;
                piece_cps = 0;
                piece_digits = true;
            }
            piece_cps++;
            piece_digits = piece_digits && cp >= '0' && cp <= '9';
        } else if (piece) {
            tok_emit_piece(t, (const char *)piece, (size_t)(q - piece), piece_cps, piece_digits,
                           false);
            piece = NULL;
        }
        q += len;
    }
    if (piece && !t->stopped)
        tok_emit_piece(t, (const char *)piece, (size_t)(q - piece), piece_cps, piece_digits, false);
}

/* Cuts the word starting at s[i] (a word start) and returns the index after it. */
static size_t tok_word(struct tokenizer *t, const unsigned char *s, size_t i, size_t len)
{
    size_t j = i, ascii_end;
    bool all_digits = true;

    while (j < len && s[j] < 0x80 && tok_ascii_alnum(s[j])) {
        all_digits = all_digits && tok_ascii_digit(s[j]);
        j++;
    }
    ascii_end = j;
    while (j < len) {
        size_t n;
        if (s[j] < 0x80) {
            if (!tok_ascii_alnum(s[j])) break;
            j++;
            continue;
        }
        n = utf8_seq_len(s + j, len - j);
        if (n == 0 || !tok_is_word_cont(tok_decode(s + j, n))) break;
        j += n;
    }
    if (j == ascii_end) tok_emit_ascii_word(t, s + i, j - i, all_digits);
    else tok_emit_unicode_run(t, s + i, j - i);
    return j;
}

/* Case-insensitive ASCII prefix test; lit is lowercase. */
static bool tok_prefix(const unsigned char *s, size_t i, size_t len, const char *lit,
                       size_t lit_len)
{
    size_t k;

    if (len - i < lit_len) return false;
    for (k = 0; k < lit_len; k++)
        if (normalize_ascii_lower(s[i + k]) != (unsigned char)lit[k]) return false;
    return true;
}

/*
 * The end of a domain of dot-separated labels [A-Za-z0-9-]+ starting at
 * s[i]; a dot not followed by a label ends it. Counts labels in *n_labels.
 */
static size_t tok_domain_end(const unsigned char *s, size_t i, size_t len, size_t *n_labels)
{
    size_t j = i, end = i;

    *n_labels = 0;
    for (;;) {
        size_t start = j;
        while (j < len && (tok_ascii_alnum(s[j]) || s[j] == '-')) j++;
        if (j == start) break;
        (*n_labels)++;
        end = j;
        if (j + 1 < len && s[j] == '.') j++;
        else break;
    }
    return end;
}

/* Emits prefix + s[0..n), with ASCII letters of s lowercased if lower. */
static void tok_emit_prefixed(struct tokenizer *t, enum token_kind kind, const char *prefix,
                              size_t prefix_len, const char *s, size_t n, bool lower)
{
    size_t k;
    char *d;

    buf_clear(&t->token);
    buf_reserve(&t->token, prefix_len + n);
    buf_append(&t->token, prefix, prefix_len);
    d = t->token.data + prefix_len;
    for (k = 0; k < n; k++)
        d[k] = lower ? (char)normalize_ascii_lower((unsigned char)s[k]) : s[k];
    t->token.len = prefix_len + n;
    t->token.data[t->token.len] = '\0';
    tok_emit(t, kind, t->token.data, t->token.len);
}

/*
 * An e-mail address starting at s[i]: local@domain, domain with at least two
 * labels. Emits "email:<domain>" and returns the index after the domain, or
 * returns 0 and moves *no_email_before past the run that cannot start one.
 */
static size_t tok_try_email(struct tokenizer *t, const unsigned char *s, size_t i, size_t len,
                            size_t *no_email_before)
{
    size_t j = i, dend, n_labels;

    while (j < len && tok_local_char(s[j])) j++;
    if (j >= len || s[j] != '@' || j == i) {
        *no_email_before = j;
        return 0;
    }
    dend = tok_domain_end(s, j + 1, len, &n_labels);
    if (n_labels < 2) {
        *no_email_before = j;
        return 0;
    }
    tok_emit_prefixed(t, TOKEN_EMAIL, "email:", 6, (const char *)s + j + 1, dend - j - 1, true);
    return dend;
}

/*
 * Recognises a URL at s[i] without emitting anything. Returns the index
 * after the URL (0 if there is none) and the raw host span in
 * *host_off and *host_len (trailing dots excluded).
 */
static size_t tok_parse_url(const unsigned char *s, size_t i, size_t len, size_t *host_off,
                            size_t *host_len)
{
    size_t h, j, host_end;
    bool www = false;

    if (tok_prefix(s, i, len, "https://", 8)) h = i + 8;
    else if (tok_prefix(s, i, len, "http://", 7)) h = i + 7;
    else if (tok_prefix(s, i, len, "ftp://", 6)) h = i + 6;
    else if (tok_prefix(s, i, len, "www.", 4)) h = i, www = true;
    else return 0;

    if (!www) {
        /* Skip userinfo: "http://paypal.com@evil.example/" visits evil.example. */
        for (j = h;;) {
            size_t r = j;
            while (r < len && tok_userinfo_char(s[r])) r++;
            if (r < len && s[r] == '@') {
                j = r + 1;
                h = j;
                continue;
            }
            break;
        }
    }
    if (h < len && s[h] == '[') {
        /* IPv6 literal: the host is what is inside the brackets. */
        j = h + 1;
        while (j < len && (tok_ascii_alnum(s[j]) || s[j] == ':' || s[j] == '.')) j++;
        if (j >= len || s[j] != ']' || j == h + 1) return 0;
        *host_off = h + 1;
        *host_len = j - h - 1;
        j++;
    } else {
        j = h;
        while (j < len) {
            size_t n;
            if (s[j] < 0x80) {
                if (!tok_host_char(s[j])) break;
                j++;
                continue;
            }
            n = utf8_seq_len(s + j, len - j);
            if (n == 0 || !tok_is_word_cont(tok_decode(s + j, n))) break;
            j += n;
        }
        host_end = j;
        while (host_end > h && s[host_end - 1] == '.') host_end--;
        if (host_end == h) return 0;
        if (www) {
            /* "www.example" alone is too weak; need "www.<label>.<label>". */
            const void *dot = host_end > h + 5 ? memchr(s + h + 5, '.', host_end - h - 5) : NULL;
            if (s[h + 4] == '.' || dot == NULL) return 0;
        }
        *host_off = h;
        *host_len = host_end - h;
    }
    while (j < len && tok_url_tail_char(s[j])) j++;
    return j;
}

/* Normalises the host s[0..n) into t->host. */
static void tok_host_normalise(struct tokenizer *t, const char *s, size_t n)
{
    buf_clear(&t->host);
    normalize_append(&t->norm, &t->host, s, n);
    /* NFKC can leave a trailing dot (a fullwidth letter cannot, but be exact). */
    while (t->host.len && t->host.data[t->host.len - 1] == '.') t->host.data[--t->host.len] = '\0';
}

static size_t tok_try_url(struct tokenizer *t, const unsigned char *s, size_t i, size_t len)
{
    size_t end, host_off = 0, host_len = 0, dlen = 0;
    const char *domain = NULL;

    end = tok_parse_url(s, i, len, &host_off, &host_len);
    if (end == 0) return 0;
    tok_host_normalise(t, (const char *)s + host_off, host_len);
    if (t->host.len == 0) return 0;
    if (t->url_domain) domain = t->url_domain(t->url_domain_ctx, t->host.data, t->host.len, &dlen);
    if (domain == NULL || dlen == 0) {
        domain = t->host.data;
        dlen = t->host.len;
        if (dlen > 4 && memcmp(domain, "www.", 4) == 0 && memchr(domain + 4, '.', dlen - 4)) {
            domain += 4;
            dlen -= 4;
        }
    }
    tok_emit_prefixed(t, TOKEN_URL, "url:", 4, domain, dlen, false);
    return end;
}

bool tokenizer_url_host(struct tokenizer *t, const char *s, size_t len, const char **host,
                        size_t *host_len)
{
    size_t off = 0, n = 0;

    if (len == 0 || tok_parse_url((const unsigned char *)s, 0, len, &off, &n) == 0) return false;
    tok_host_normalise(t, s + off, n);
    if (t->host.len == 0) return false;
    *host = t->host.data;
    *host_len = t->host.len;
    return true;
}

size_t tokenize(struct tokenizer *t, const char *text, size_t len, token_fn fn, void *ctx)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, no_email_before = 0, end;

    t->fn = fn;
    t->ctx = ctx;
    t->n_tokens = 0;
    t->stopped = false;
    while (i < len && !t->stopped) {
        unsigned char c = s[i];
        size_t n;

        if (c < 0x80) {
            if (!tok_ascii_alnum(c)) {
                i++;
                continue;
            }
            if (i >= no_email_before && (end = tok_try_email(t, s, i, len, &no_email_before))) {
                i = end;
                continue;
            }
            if ((c | 0x20) == 'm' && tok_prefix(s, i, len, "mailto:", 7) && i + 7 < len &&
                tok_ascii_alnum(s[i + 7]) &&
                (end = tok_try_email(t, s, i + 7, len, &no_email_before))) {
                i = end;
                continue;
            }
            if (((c | 0x20) == 'h' || (c | 0x20) == 'f' || (c | 0x20) == 'w') &&
                (end = tok_try_url(t, s, i, len))) {
                i = end;
                continue;
            }
            i = tok_word(t, s, i, len);
            continue;
        }
        n = utf8_seq_len(s + i, len - i);
        if (n == 0) {
            i++; /* invalid byte: a separator */
            continue;
        }
        if (tok_is_word_start(tok_decode(s + i, n))) i = tok_word(t, s, i, len);
        else i += n;
    }
    t->fn = NULL;
    t->ctx = NULL;
    return t->n_tokens;
}

void tokenizer_free(struct tokenizer *t)
{
    normalizer_free(&t->norm);
    buf_free(&t->span);
    buf_free(&t->token);
    buf_free(&t->host);
}
