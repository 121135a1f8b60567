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
 * no_email_before = j skips them. And the letters and digits of a run are
 * scanned once: an attempt is only made when the run goes on with '@' or
 * another local-part character, since otherwise it must fail.
 *
 * Per-byte and per-code-point decisions are table lookups: tok_class for
 * ASCII (constant), tok_bmp_class for the Basic Multilingual Plane (filled from
 * utf8proc as code points are first met); rarer code points ask utf8proc directly.
 */
#include "text/tokenize.h"
#include "core/utf8.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>
#include <utf8proc.h>

/*
 * Byte classes, one table lookup per byte on the hot path. Bytes >= 0x80 have
 * no class: they are handled as code points.
 */
enum {
    TOK_C_DIGIT = 0x01,    /* 0-9 */
    TOK_C_ALNUM = 0x02,    /* A-Z a-z 0-9 */
    TOK_C_LOCAL = 0x04,    /* e-mail local part: alnum . _ % + - */
    TOK_C_LABEL = 0x08,    /* domain label: alnum - */
    TOK_C_HOST = 0x10,     /* URL host: alnum - . _ % */
    TOK_C_USERINFO = 0x20, /* URL userinfo and port: alnum - . _ ~ % ! $ & ' ( ) * + , ; = : */
    TOK_C_URL_TAIL = 0x40, /* rest of a URL: ! to ~ except < > " ` { } | \ ^ */
};

#define TOK_C_LETTER                                                                               \
    (TOK_C_ALNUM | TOK_C_LOCAL | TOK_C_LABEL | TOK_C_HOST | TOK_C_USERINFO | TOK_C_URL_TAIL)
#define TOK_C_SUB (TOK_C_USERINFO | TOK_C_URL_TAIL) /* RFC 3986 sub-delimiters and ':' */

static const unsigned char tok_class[256] = {
    ['0' ... '9'] = TOK_C_DIGIT | TOK_C_LETTER,
    ['A' ... 'Z'] = TOK_C_LETTER,
    ['a' ... 'z'] = TOK_C_LETTER,
    ['!'] = TOK_C_SUB,
    ['$'] = TOK_C_SUB,
    ['&'] = TOK_C_SUB,
    ['\''] = TOK_C_SUB,
    ['('] = TOK_C_SUB,
    [')'] = TOK_C_SUB,
    ['*'] = TOK_C_SUB,
    [','] = TOK_C_SUB,
    [':'] = TOK_C_SUB,
    [';'] = TOK_C_SUB,
    ['='] = TOK_C_SUB,
    ['~'] = TOK_C_SUB,
    ['+'] = TOK_C_SUB | TOK_C_LOCAL,
    ['%'] = TOK_C_SUB | TOK_C_LOCAL | TOK_C_HOST,
    ['.'] = TOK_C_SUB | TOK_C_LOCAL | TOK_C_HOST,
    ['_'] = TOK_C_SUB | TOK_C_LOCAL | TOK_C_HOST,
    ['-'] = TOK_C_SUB | TOK_C_LOCAL | TOK_C_HOST | TOK_C_LABEL,
    ['#'] = TOK_C_URL_TAIL,
    ['/'] = TOK_C_URL_TAIL,
    ['?'] = TOK_C_URL_TAIL,
    ['@'] = TOK_C_URL_TAIL,
    ['['] = TOK_C_URL_TAIL,
    [']'] = TOK_C_URL_TAIL,
};

static inline bool tok_is(unsigned char c, unsigned cls)
{
    return (tok_class[c] & cls) != 0;
}

static inline bool tok_ascii_digit(unsigned char c)
{
    return tok_is(c, TOK_C_DIGIT);
}

static inline bool tok_ascii_alnum(unsigned char c)
{
    return tok_is(c, TOK_C_ALNUM);
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

/*
 * What a non-ASCII code point is to the tokenizer. Looked up per code point,
 * so the Basic Multilingual Plane is classified once per process into a table
 * (utf8proc's category lookup and the compatibility test cost far more).
 */
enum {
    TOK_U_START = 0x01, /* starts a word in raw text: L, M, N, or a letter-like symbol */
    TOK_U_CONT = 0x02,  /* continues a word in raw text: the above, or Cf */
    TOK_U_PIECE = 0x04, /* belongs to a piece of normalised text: L, M, N, Cf */
    TOK_U_MARK = 0x08,  /* category M: stays with a CJK character before it */
    TOK_U_CJK = 0x10,   /* a CJK character, a token by itself */
};

static unsigned char tok_bmp_class[0x10000];

static unsigned tok_compute_uclass(int32_t cp)
{
    utf8proc_category_t cat = utf8proc_category(cp);
    unsigned k = 0;

    if (tok_cat_letter_digit_mark(cat))
        k |= TOK_U_START | TOK_U_CONT | TOK_U_PIECE;
    else if (cat >= UTF8PROC_CATEGORY_SM && cat <= UTF8PROC_CATEGORY_SO &&
             tok_symbol_is_compat_alnum(cp))
        k |= TOK_U_START | TOK_U_CONT;
    else if (cat == UTF8PROC_CATEGORY_CF)
        k |= TOK_U_CONT | TOK_U_PIECE;
    if (tok_cat_mark(cat)) k |= TOK_U_MARK;
    if (tok_is_cjk(cp, cat)) k |= TOK_U_CJK;
    return k;
}

/*
 * The class of a BMP code point, computed the first time the process meets it
 * (a whole-table build cost 6 M instructions at every start, and mail uses few
 * code points). Entries are 0 until known, then the class | TOK_U_KNOWN. Threads
 * may race to fill one entry: they compute the same value, and relaxed atomic
 * byte accesses keep that race defined.
 */
#define TOK_U_KNOWN 0x80

static inline unsigned tok_uclass(int32_t cp)
{
    unsigned char v;

    if (cp >= 0x10000) return tok_compute_uclass(cp);
    v = __atomic_load_n(&tok_bmp_class[cp], __ATOMIC_RELAXED);
    if (v == 0) {
        v = (unsigned char)(tok_compute_uclass(cp) | TOK_U_KNOWN);
        __atomic_store_n(&tok_bmp_class[cp], v, __ATOMIC_RELAXED);
    }
    return v & (unsigned)~TOK_U_KNOWN;
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
    buf_clear(&t->token);
    buf_append(&t->token, "longword:", 9);
    buf_append(&t->token, prefix, prefix_len);
    buf_append_char(&t->token, ':');
    if (n_cps > 1024) {
        buf_append(&t->token, "big", 3);
    } else {
        size_t bucket = 64;
        while (bucket < n_cps)
            bucket *= 2;
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
        for (i = 0; i < TOKEN_SHAPE_PREFIX_CPS; i++)
            prefix[i] = (char)normalize_ascii_lower(s[i]);
        tok_emit_longword(t, prefix, TOKEN_SHAPE_PREFIX_CPS, n);
        return;
    }
    if (all_digits && n > TOKEN_NUMBER_LITERAL_MAX) {
        tok_emit_number(t, n);
        return;
    }
    if (n < TOKEN_MIN_CPS) return;
    if (t->token.cap < n + 1) buf_reserve(&t->token, n);
    d = t->token.data;
    for (i = 0; i < n; i++)
        d[i] = (char)normalize_ascii_lower(s[i]);
    tok_emit(t, all_digits ? TOKEN_NUMBER : TOKEN_WORD, d, n);
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
    if (all_digits && n_cps > TOKEN_NUMBER_LITERAL_MAX) {
        tok_emit_number(t, n_cps);
        return;
    }
    if (n_cps < TOKEN_MIN_CPS && !cjk) return;
    tok_emit(t, all_digits ? TOKEN_NUMBER : TOKEN_WORD, p, len);
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
        int32_t cp = 0xFFFD;
        size_t len = normalize_decode(q, (size_t)(e - q), &cp);
        unsigned k;

        if (len == 0) len = 1; /* cannot happen: utf8proc output is valid */
        k = cp < 0x80 ? (tok_ascii_alnum((unsigned char)cp) ? TOK_U_PIECE : 0) : tok_uclass(cp);
        if (k & TOK_U_CJK) {
            const unsigned char *r = q + len;
            size_t cps = 1;
            if (piece)
                tok_emit_piece(t, (const char *)piece, (size_t)(q - piece), piece_cps, piece_digits,
                               false);
            piece = NULL;
            while (r < e) {
                int32_t cp2;
                size_t l2 = normalize_decode(r, (size_t)(e - r), &cp2);
                if (l2 == 0 || cp2 < 0x80 || !(tok_uclass(cp2) & TOK_U_MARK)) break;
                r += l2;
                cps++;
            }
            if (!t->stopped) tok_emit_piece(t, (const char *)q, (size_t)(r - q), cps, false, true);
            q = r;
            continue;
        }
        if (k & TOK_U_PIECE) {
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

/*
 * Cuts the word starting at s[i] (a word start) and returns the index after
 * it. s[i..ascii_end) is already known to be ASCII letters and digits (maybe
 * empty), all digits if all_digits.
 */
static size_t tok_word(struct tokenizer *t, const unsigned char *s, size_t i, size_t ascii_end,
                       bool all_digits, size_t len)
{
    size_t j = ascii_end;

    while (j < len) {
        int32_t cp;
        size_t n;
        if (s[j] < 0x80) {
            if (!tok_ascii_alnum(s[j])) break;
            j++;
            continue;
        }
        n = normalize_decode(s + j, len - j, &cp);
        if (n == 0 || !(tok_uclass(cp) & TOK_U_CONT)) break;
        j += n;
    }
    if (j == ascii_end)
        tok_emit_ascii_word(t, s + i, j - i, all_digits);
    else
        tok_emit_unicode_run(t, s + i, j - i);
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
        while (j < len && tok_is(s[j], TOK_C_LABEL))
            j++;
        if (j == start) break;
        (*n_labels)++;
        end = j;
        if (j + 1 < len && s[j] == '.')
            j++;
        else
            break;
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
 * labels. s[i..from) is known to be local-part characters. Emits "email:<domain>" and returns the
 * index after the domain, or returns 0 and moves *no_email_before past the run that cannot start
 * one.
 */
static size_t tok_try_email(struct tokenizer *t, const unsigned char *s, size_t i, size_t from,
                            size_t len, size_t *no_email_before)
{
    size_t j = from, dend, n_labels;

    while (j < len && tok_is(s[j], TOK_C_LOCAL))
        j++;
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
    size_t h, j;
    bool www = false;

    if (tok_prefix(s, i, len, "https://", 8))
        h = i + 8;
    else if (tok_prefix(s, i, len, "http://", 7))
        h = i + 7;
    else if (tok_prefix(s, i, len, "ftp://", 6))
        h = i + 6;
    else if (tok_prefix(s, i, len, "www.", 4))
        h = i, www = true;
    else
        return 0;

    if (!www) {
        /* Skip userinfo: "http://paypal.com@evil.example/" visits evil.example. */
        for (j = h;;) {
            size_t r = j;
            while (r < len && tok_is(s[r], TOK_C_USERINFO))
                r++;
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
        while (j < len && (tok_ascii_alnum(s[j]) || s[j] == ':' || s[j] == '.'))
            j++;
        if (j >= len || s[j] != ']' || j == h + 1) return 0;
        *host_off = h + 1;
        *host_len = j - h - 1;
        j++;
    } else {
        size_t host_end;
        j = h;
        while (j < len) {
            int32_t cp;
            size_t n;
            if (s[j] < 0x80) {
                if (!tok_is(s[j], TOK_C_HOST)) break;
                j++;
                continue;
            }
            n = normalize_decode(s + j, len - j, &cp);
            if (n == 0 || !(tok_uclass(cp) & TOK_U_CONT)) break;
            j += n;
        }
        host_end = j;
        while (host_end > h && s[host_end - 1] == '.')
            host_end--;
        if (host_end == h) return 0;
        if (www) {
            /* "www.example" alone is too weak; need "www.<label>.<label>". */
            const void *dot = host_end > h + 5 ? memchr(s + h + 5, '.', host_end - h - 5) : NULL;
            if (host_end < h + 5 || s[h + 4] == '.' || dot == NULL) return 0;
        }
        *host_off = h;
        *host_len = host_end - h;
    }
    while (j < len && tok_is(s[j], TOK_C_URL_TAIL))
        j++;
    return j;
}

/* Normalises the host s[0..n) into t->host. */
static void tok_host_normalise(struct tokenizer *t, const char *s, size_t n)
{
    buf_clear(&t->host);
    normalize_append(&t->norm, &t->host, s, n);
    /* NFKC can leave a trailing dot (a fullwidth letter cannot, but be exact). */
    while (t->host.len && t->host.data[t->host.len - 1] == '.')
        t->host.data[--t->host.len] = '\0';
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
        int32_t cp;
        size_t n;

        if (c < 0x80) {
            size_t k = i;
            bool all_digits = true;

            if (!tok_ascii_alnum(c)) {
                i++;
                continue;
            }
            /* The ASCII letters and digits from i, scanned once for every use below. */
            while (k < len && tok_ascii_alnum(s[k])) {
                all_digits = all_digits && tok_ascii_digit(s[k]);
                k++;
            }
            /* An address needs the run to go on with '@' or another local-part character. */
            if (i >= no_email_before && k < len && (s[k] == '@' || tok_is(s[k], TOK_C_LOCAL)) &&
                (end = tok_try_email(t, s, i, k, len, &no_email_before))) {
                i = end;
                continue;
            }
            if ((c | 0x20) == 'm' && tok_prefix(s, i, len, "mailto:", 7) && i + 7 < len &&
                tok_ascii_alnum(s[i + 7]) &&
                (end = tok_try_email(t, s, i + 7, i + 7, len, &no_email_before))) {
                i = end;
                continue;
            }
            if (((c | 0x20) == 'h' || (c | 0x20) == 'f' || (c | 0x20) == 'w') &&
                (end = tok_try_url(t, s, i, len))) {
                i = end;
                continue;
            }
            i = tok_word(t, s, i, k, all_digits, len);
            continue;
        }
        n = normalize_decode(s + i, len - i, &cp);
        if (n == 0) {
            i++; /* invalid byte: a separator */
            continue;
        }
        if (tok_uclass(cp) & TOK_U_START)
            i = tok_word(t, s, i, i, false, len);
        else
            i += n;
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
