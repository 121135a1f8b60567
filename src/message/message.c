/*
 * message - the parsed model of one mail message (see message.h).
 *
 * GMime parses the structure (headers, RFC 2047, the MIME tree, boundaries),
 * except for a plain single part, whose header block we split ourselves (see
 * plain_parse(): same model, a third of the cost); everything below the tree
 * is ours: we take each leaf's still-encoded body
 * straight out of GMime's memory stream (no copy), decode it with decoders
 * that report damage (decode.h), convert text to UTF-8 with our own guesses
 * when the declared charset is wrong, and hand HTML to html.h and URLs to
 * url.h. Every result is copied into the message's arena, and the GMime
 * objects are released before message_parse() returns, so a parsed message
 * holds no GObject and is safe to share between threads.
 *
 * The raw input is never copied as a whole: it is wrapped in a GByteArray
 * that GMime reads but does not own, which keeps the memory of a 100 MB
 * message close to its size.
 */
#include "message/message.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/utf8.h"
#include "core/xalloc.h"
#include "message/decode.h"
#include "message/html.h"
#include "message/received.h"

#include <ctype.h>
#include <errno.h>
#include <gmime/gmime.h>
#include <libxml/parser.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <xxhash.h>

#define URL_TABLE_SLOTS 4096 /* power of two, > 2 * MSG_MAX_URLS */
#define SNIFF_BYTES     64

struct parse_state {
    struct message *m;
    struct arena *a;
    size_t cap_parts, cap_texts, cap_urls;
    int32_t *url_slots; /* open addressing over m->urls, -1 empty; allocated on first URL */
    uint64_t *url_hashes;
    struct buf decoded; /* scratch: transfer-decoded bytes of the current part */
    const char *raw;    /* the bytes GMime parsed (after any mbox From line); header offsets
                         * and content bounds are relative to them */
    size_t raw_len;
    const char *boundary; /* boundary of the innermost enclosing multipart, or NULL */
};

void message_library_init(void)
{
    g_mime_init();
    xmlInitParser();
    url_init();
}

void message_library_shutdown(void)
{
    url_shutdown();
    xmlCleanupParser();
    g_mime_shutdown();
}

/* ---- small string helpers ---- */

static char *lowercase_dup(struct arena *a, const char *s, size_t len)
{
    char *d = arena_alloc(a, len + 1);
    size_t i;
    for (i = 0; i < len; i++) d[i] = (char)tolower((unsigned char)s[i]);
    d[len] = '\0';
    return d;
}

/* A trimmed, lowercased copy of s (quotes dropped), or NULL for NULL or empty. */
static const char *token_dup(struct arena *a, const char *s)
{
    const char *e;
    if (s == NULL) return NULL;
    while (*s == ' ' || *s == '\t' || *s == '"' || *s == '\'') s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '"' || e[-1] == '\'' ||
                     e[-1] == '\r' || e[-1] == '\n'))
        e--;
    return e > s ? lowercase_dup(a, s, (size_t)(e - s)) : NULL;
}

/* A copy of s that is valid UTF-8 (repaired), owned by the arena. */
static const char *utf8_dup(struct arena *a, const char *s, size_t len)
{
    struct buf b = {0};
    const char *r;
    if (utf8_valid(s, len) && memchr(s, '\0', len) == NULL) return arena_strndup(a, s, len);
    utf8_repair(&b, s, len);
    r = arena_strndup(a, b.data, b.len);
    buf_free(&b);
    return r;
}

/* True if s holds only 7-bit bytes. */
static bool ascii_only(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return false;
    return true;
}

/* Unfolds a raw header value: line breaks dropped, leading (a value may start on the next
 * line) and trailing whitespace trimmed. */
static const char *header_unfold_n(struct arena *a, const char *raw, size_t len)
{
    size_t i, o = 0;
    char *tmp = arena_alloc(a, len + 1);
    const char *r;

    while (len && (*raw == ' ' || *raw == '\t' || *raw == '\r' || *raw == '\n')) raw++, len--;
    for (i = 0; i < len;) {
        /* Runs of bytes above '\r' are copied whole; CR and LF are dropped, and a fold's
         * leading tab reads as one space. */
        size_t j = i;
        while (j < len && (unsigned char)raw[j] > '\r')
            j++;
        memcpy(tmp + o, raw + i, j - i);
        o += j - i;
        if (j == len) break;
        if (raw[j] != '\r' && raw[j] != '\n') tmp[o++] = raw[j] == '\t' ? ' ' : raw[j];
        i = j + 1;
    }
    while (o && (tmp[o - 1] == ' ' || tmp[o - 1] == '\t')) o--;
    tmp[o] = '\0';
    if (utf8_valid(tmp, o)) return tmp;
    r = utf8_dup(a, tmp, o);
    return r;
}

static const char *header_unfold(struct arena *a, const char *raw)
{
    return header_unfold_n(a, raw, strlen(raw));
}

/* The lowercase domain after the last '@' of addr, or NULL. */
static const char *address_domain(struct arena *a, const char *addr)
{
    const char *at = addr ? strrchr(addr, '@') : NULL;
    size_t len;
    if (at == NULL || at[1] == '\0') return NULL;
    len = strlen(at + 1);
    while (len && (at[len] == '>' || at[len] == '.' || at[len] == ' ')) len--;
    return len ? lowercase_dup(a, at + 1, len) : NULL;
}

/* ---- raw-input checks that GMime does not report ---- */

static unsigned raw_line_end_flags(const char *data, size_t len)
{
    const char *p = data, *end = data + len, *nl;
    size_t crlf = 0, lf = 0;
    unsigned flags = 0;

    if (memchr(data, '\0', len)) flags |= MSG_F_NUL_BYTES;
    while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (nl > data && nl[-1] == '\r') crlf++;
        else lf++;
        if (crlf && lf) break;
        p = nl + 1;
    }
    if (crlf && lf) flags |= MSG_F_BARE_LINE_ENDS;
    /* A CR not followed by LF (old Mac endings, or injection attempts). */
    for (p = data; p < end && !(flags & MSG_F_BARE_LINE_ENDS);) {
        const char *cr = memchr(p, '\r', (size_t)(end - p));
        if (cr == NULL) break;
        if (cr + 1 < end && cr[1] != '\n') flags |= MSG_F_BARE_LINE_ENDS;
        p = cr + 1;
    }
    return flags;
}

/*
 * ---- damage GMime's parser would have warned about ----
 *
 * GMime reports header and structure damage through a warning callback, but
 * setting one makes it decode every header of every part while parsing (a
 * seventh of the whole scan). These checks give the same message flags from
 * the raw bytes and from what GMime keeps anyway (raw header values, header
 * offsets, content bounds, boundaries), reproducing GMime 3.2's rules:
 *
 *   unencoded 8-bit header   a name with 8-bit bytes, or a raw value that is not valid UTF-8
 *   invalid RFC 2047 value   an encoded word, as GMime's lenient tokenizer finds it, that
 *                            contains blanks ("=?utf-8?q?a b?=")
 *   invalid header name      a header line whose name has blanks inside or control bytes,
 *                            or no colon
 *   conflicting header       Content-* or MIME-Version given twice with different raw values
 *                            in one part's header block
 *   conflicting parameter    a Content-Type/-Disposition parameter given twice, differently
 *   truncated                a header block cut by the end of input, or a multipart whose
 *                            closing boundary never came
 *   malformed multipart      a multipart closed by an enclosing multipart's boundary
 *   part without headers or  a boundary right after a boundary
 *   content
 *
 * They read header bytes only; no body is scanned.
 */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* True if the field name at the start of a header line is one GMime refuses: blanks inside
 * it (blanks before the colon are allowed), a control byte, no colon on the line, or, before
 * the block's first header (first_header), an empty name. A name cut by the end of input is
 * not refused here: the block is truncated instead. */
static bool header_name_invalid(const char *p, const char *end, bool first_header)
{
    const char *start = p;
    bool blank = false;

    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == ':') return p == start && first_header;
        if (is_blank((char)c))
            blank = true;
        else if (blank || c < 0x20 || c == 0x7f)
            return true;
    }
    return false;
}

/* The line that ends just before offset pos (which starts a line) is blank or a boundary
 * line, or pos is the start of the input: a header block may begin at pos. */
static bool block_may_start_at(const char *data, size_t pos)
{
    const char *line_end, *p;

    if (pos == 0) return true;
    line_end = data + pos - 1; /* the '\n' of the previous line */
    if (line_end > data && line_end[-1] == '\r') line_end--;
    p = line_end;
    while (p > data && p[-1] != '\n')
        p--;
    return p == line_end || (line_end - p >= 2 && p[0] == '-' && p[1] == '-');
}

/*
 * Flags for the header block at data[start..len): invalid header names, and truncation when
 * the input ends before the blank line that closes the block. A line that starts with
 * "--boundary" (the enclosing multipart's) also closes it. At offset 0 without a boundary
 * (the message's own block), a refused first line ends the parse.
 */
static unsigned header_block_flags(const char *data, size_t len, size_t start, const char *boundary)
{
    const char *p = data + start, *end = data + len;
    size_t blen = boundary ? strlen(boundary) : 0;
    bool first = true, have_header = false;
    unsigned flags = 0;

    if (start == 0 && boundary == NULL && len == 0) return 0; /* GMime: no message, no warning */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;

        if (p == nl || (p[0] == '\r' && p + 1 == nl)) return flags;
        if (boundary && line_end - p >= (ptrdiff_t)blen + 2 && p[0] == '-' && p[1] == '-' &&
            memcmp(p + 2, boundary, blen) == 0)
            return flags;
        if (first || !is_blank(*p)) {
            if (header_name_invalid(p, nl ? nl + 1 : end, !have_header)) {
                /* The message's first line: GMime gives up on the whole message. */
                if (first && start == 0 && boundary == NULL) return MSG_F_BAD_HEADERS;
                flags |= MSG_F_BAD_HEADERS;
            } else {
                have_header = true;
            }
        }
        first = false;
        if (nl == NULL) break;
        p = nl + 1;
    }
    return flags | MSG_F_TRUNCATED | MSG_F_MIME_BAD;
}

/*
 * True if text holds an encoded word that GMime's lenient RFC 2047 tokenizer finds and then
 * refuses because it has blanks inside. Words start at "=?" even inside other text; an "=?"
 * without a valid "?B?"/"?Q?" or without a closing "?=" is plain text. Line breaks are folds
 * (GMime unfolds before it decodes).
 */
static bool encoded_word_has_blank(const char *text)
{
    const char *p = text;

    while (*p) {
        const char *word, *q;

        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        word = p;
        if (p[0] == '=' && p[1] == '?') {
            p += 2;
            while (*p && *p != '?')
                p++;
            if (p[0] == '?' && p[1] && strchr("BbQq", p[1]) && p[2] == '?') {
                p += 3;
                while (*p && !(p[0] == '?' && p[1] == '='))
                    p++;
                if (*p) {
                    p += 2;
                    for (q = word; q < p; q++)
                        if (is_blank(*q)) return true;
                    continue;
                }
                p = word + 2;
            }
        }
        while (*p && !is_blank(*p) && *p != '\r' && *p != '\n' && !(p[0] == '=' && p[1] == '?'))
            p++;
    }
    return false;
}

/* Copies the next parameter of a Content-Type/-Disposition value: its name (lowercase, into
 * name) and value (unquoted, into value). Returns the position after it, or NULL at the end.
 * Names and values longer than the buffers are cut; the comparison stays conservative. */
static const char *param_next(const char *p, char *name, size_t name_cap, char *value,
                              size_t value_cap)
{
    size_t n = 0, v = 0;

    p = strchr(p, ';');
    if (p == NULL) return NULL;
    p++;
    while (is_blank(*p) || *p == '\r' || *p == '\n')
        p++;
    while (*p && *p != '=' && *p != ';' && !is_blank(*p)) {
        if (n + 1 < name_cap) name[n++] = (char)tolower((unsigned char)*p);
        p++;
    }
    name[n] = '\0';
    while (is_blank(*p))
        p++;
    if (*p == '=') {
        p++;
        while (is_blank(*p))
            p++;
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1]) p++;
                if (v + 1 < value_cap) value[v++] = *p;
            }
            if (*p == '"') p++;
        } else {
            for (; *p && *p != ';' && !is_blank(*p) && *p != '\r' && *p != '\n'; p++)
                if (v + 1 < value_cap) value[v++] = *p;
        }
    }
    value[v] = '\0';
    return p;
}

/* True if a parameter (other than RFC 2231 pieces, "name*0*=...") is given twice with
 * different values: GMime's conflicting parameter. At most the first 16 are compared. */
static bool params_conflict(const char *raw)
{
    char names[16][32], values[16][128];
    size_t n = 0, i;
    const char *p = raw;

    if (strchr(raw, ';') == NULL) return false;
    while (n < 16 &&
           (p = param_next(p, names[n], sizeof names[n], values[n], sizeof values[n])) != NULL) {
        if (names[n][0] == '\0' || strchr(names[n], '*')) continue;
        for (i = 0; i < n; i++)
            if (strcmp(names[i], names[n]) == 0 && strcmp(values[i], values[n]) != 0) return true;
        n++;
    }
    return false;
}

/* A Content-* or MIME-Version field name: name[0..len), not necessarily terminated. */
static bool is_mime_header(const char *name, size_t len)
{
    return (len >= 8 && strncasecmp(name, "Content-", 8) == 0) ||
           (len == 12 && strncasecmp(name, "MIME-Version", 12) == 0);
}

/*
 * Flags for the headers of one list: 8-bit and bad encoded words always; for a part's list
 * (part_list), Content-* and MIME-Version headers that conflict with the first of their name,
 * and conflicting parameters. An embedded message's own list holds no Content-* header and
 * GMime checks nothing there but RFC 5322's single headers, which are not flagged.
 */
static unsigned header_list_flags(GMimeHeaderList *hl, bool part_list)
{
    int i, j, n = hl ? g_mime_header_list_get_count(hl) : 0;
    unsigned flags = 0;

    for (i = 0; i < n; i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
        const char *name = g_mime_header_get_name(h);
        const char *raw = g_mime_header_get_raw_value(h);

        if (name == NULL) continue;
        if (raw == NULL) raw = "";
        if (!ascii_only(name) || (!ascii_only(raw) && !g_utf8_validate(raw, -1, NULL)))
            flags |= MSG_F_8BIT_HEADERS | MSG_F_BAD_HEADERS;
        if (strstr(raw, "=?") && encoded_word_has_blank(raw)) flags |= MSG_F_BAD_HEADERS;
        if (!part_list || !is_mime_header(name, strlen(name))) continue;
        for (j = 0; j < i; j++) {
            GMimeHeader *e = g_mime_header_list_get_header_at(hl, j);
            const char *ename = g_mime_header_get_name(e);
            const char *eraw = g_mime_header_get_raw_value(e);
            if (ename == NULL || strcasecmp(ename, name) != 0) continue;
            if (strcmp(eraw ? eraw : "", raw) != 0) flags |= MSG_F_BAD_HEADERS;
            break;
        }
        if ((strcasecmp(name, "Content-Type") == 0 ||
             strcasecmp(name, "Content-Disposition") == 0) &&
            params_conflict(raw))
            flags |= MSG_F_MIME_BAD;
    }
    return flags;
}

/* ---- URLs ---- */

static void url_add(struct parse_state *st, const struct url *u)
{
    struct message *m = st->m;
    uint64_t h = XXH3_64bits(u->normalised, strlen(u->normalised));
    size_t slot;

    if (st->url_slots == NULL) {
        st->url_slots = arena_alloc(st->a, URL_TABLE_SLOTS * sizeof *st->url_slots);
        memset(st->url_slots, 0xff, URL_TABLE_SLOTS * sizeof *st->url_slots);
    }
    for (slot = h & (URL_TABLE_SLOTS - 1); st->url_slots[slot] >= 0;
         slot = (slot + 1) & (URL_TABLE_SLOTS - 1)) {
        int32_t i = st->url_slots[slot];
        if (st->url_hashes[i] == h && strcmp(m->urls[i].normalised, u->normalised) == 0) {
            /* Seen before: keep the first occurrence, learn what the new one adds. */
            m->urls[i].flags |= u->flags;
            if (m->urls[i].link_text_domain == NULL)
                m->urls[i].link_text_domain = u->link_text_domain;
            return;
        }
    }
    if (m->n_urls >= MSG_MAX_URLS) return;
    if (m->n_urls == st->cap_urls) {
        st->cap_urls = st->cap_urls ? st->cap_urls * 2 : 16;
        m->urls = xrealloc(m->urls, st->cap_urls * sizeof *m->urls);
        st->url_hashes = xrealloc(st->url_hashes, st->cap_urls * sizeof *st->url_hashes);
    }
    m->urls[m->n_urls] = *u;
    st->url_hashes[m->n_urls] = h;
    st->url_slots[slot] = (int32_t)m->n_urls;
    m->n_urls++;
}

static void url_found_in_text(void *ctx, const struct url *u)
{
    url_add(ctx, u);
}

static void urls_from_html(struct parse_state *st, const struct html_result *hr)
{
    size_t i;
    for (i = 0; i < hr->n_links; i++) {
        const struct html_link *l = &hr->links[i];
        enum url_source src = URL_SRC_HTML_SRC;
        struct url u;

        if (strcmp(l->tag, "a") == 0 || strcmp(l->tag, "area") == 0) src = URL_SRC_HTML_HREF;
        else if (strcmp(l->tag, "form") == 0) src = URL_SRC_HTML_ACTION;
        if (url_parse(st->a, l->url, strlen(l->url), src, &u) != 0) continue;
        if (l->text && *l->text) {
            u.link_text_domain = url_domain_in_text(st->a, l->text, strlen(l->text));
            if (u.link_text_domain && u.domain && strcmp(u.link_text_domain, u.domain) != 0)
                u.flags |= URL_F_LINK_MISMATCH;
        }
        url_add(st, &u);
    }
}

/* ---- charset conversion ---- */

/* windows-1252 bytes 0x80..0x9F; the five undefined ones keep their C1 code point. */
static const uint16_t cp1252_high[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

static void convert_cp1252(struct buf *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;

    buf_reserve(out, len + len / 4);
    for (; p < end; p++) {
        if (*p >= 0x80 || *p == 0) {
            buf_append(out, run, (size_t)(p - run));
            if (*p == 0) buf_append_char(out, ' ');
            else if (*p < 0xA0) utf8_append_codepoint(out, cp1252_high[*p - 0x80]);
            else utf8_append_codepoint(out, *p);
            run = p + 1;
        }
    }
    buf_append(out, run, (size_t)(p - run));
}

static bool has_8bit(const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80) return true;
    return false;
}

/* Converts with iconv; returns false if the charset is unknown to iconv. */
static bool convert_iconv(struct buf *out, const char *charset, const char *s, size_t len,
                          unsigned *flags)
{
    const char *name = g_mime_charset_iconv_name(charset);
    iconv_t cd = g_mime_iconv_open("UTF-8", name);
    char *in = (char *)s;
    size_t inleft = len;
    size_t start = out->len;
    struct buf tmp = {0};

    if (cd == (iconv_t)-1) return false;
    buf_reserve(&tmp, len * 2 + 16);
    while (inleft > 0) {
        char *o = tmp.data + tmp.len;
        size_t oleft = tmp.cap - tmp.len - 1;
        size_t r = iconv(cd, &in, &inleft, &o, &oleft);
        tmp.len = (size_t)(o - tmp.data);
        if (r != (size_t)-1) break;
        if (errno == E2BIG) {
            buf_reserve(&tmp, inleft * 2 + 16);
        } else if (errno == EILSEQ) {
            /* A byte the charset does not have: the label is probably wrong. */
            *flags |= PART_F_CHARSET_WRONG;
            buf_append(&tmp, "\xEF\xBF\xBD", 3);
            in++;
            inleft--;
        } else {
            /* EINVAL: an incomplete sequence at the end. */
            *flags |= PART_F_CHARSET_WRONG;
            break;
        }
    }
    iconv(cd, NULL, NULL, NULL, NULL);
    g_mime_iconv_close(cd);
    (void)start;
    utf8_repair(out, tmp.data ? tmp.data : "", tmp.len);
    buf_free(&tmp);
    return true;
}

static bool charset_is(const char *cs, const char *const *names)
{
    for (; *names; names++)
        if (strcmp(cs, *names) == 0) return true;
    return false;
}

/*
 * Appends s[0..len) converted from the declared charset to UTF-8. The label is
 * distrusted when the bytes contradict it: text declared as ASCII or UTF-8
 * that is not valid UTF-8 is read as windows-1252 (by far the most common
 * truth), and text declared as a Latin single-byte charset that is valid,
 * non-ASCII UTF-8 is read as UTF-8.
 */
static void convert_to_utf8(struct buf *out, const char *charset, const char *s, size_t len,
                            unsigned *flags)
{
    static const char *const utf8_names[] = {"utf-8", "utf8", NULL};
    static const char *const ascii_names[] = {"us-ascii", "ascii", "ansi_x3.4-1968", NULL};
    static const char *const latin_names[] = {"iso-8859-1", "iso8859-1", "latin1",
                                              "windows-1252", "cp1252", "iso-8859-15",
                                              "latin-1", NULL};
    bool valid;

    if (!has_8bit(s, len)) {
        utf8_repair(out, s, len); /* only NUL bytes can need repair */
        return;
    }
    valid = utf8_valid(s, len);
    if (charset == NULL || charset_is(charset, utf8_names) || charset_is(charset, ascii_names)) {
        if (valid) {
            if (charset && charset_is(charset, ascii_names)) *flags |= PART_F_CHARSET_WRONG;
            utf8_repair(out, s, len);
        } else {
            if (charset) *flags |= PART_F_CHARSET_WRONG;
            convert_cp1252(out, s, len);
        }
        return;
    }
    if (charset_is(charset, latin_names)) {
        if (valid) {
            *flags |= PART_F_CHARSET_WRONG;
            utf8_repair(out, s, len);
        } else {
            convert_cp1252(out, s, len);
        }
        return;
    }
    if (!convert_iconv(out, charset, s, len, flags)) {
        *flags |= PART_F_CHARSET_UNKNOWN;
        if (valid) utf8_repair(out, s, len);
        else convert_cp1252(out, s, len);
    }
}

/* ---- type sniffing ---- */

static const char *sniff_type(const unsigned char *p, size_t n)
{
    static const struct {
        const char *magic;
        size_t len;
        const char *type;
    } magics[] = {
        {"MZ", 2, "application/x-msdownload"},
        {"\x7f" "ELF", 4, "application/x-executable"},
        {"%PDF", 4, "application/pdf"},
        {"PK\x03\x04", 4, "application/zip"},
        {"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", 8, "application/x-ole-storage"},
        {"Rar!", 4, "application/x-rar"},
        {"7z\xBC\xAF\x27\x1C", 6, "application/x-7z-compressed"},
        {"\x1F\x8B", 2, "application/gzip"},
        {"{\\rtf", 5, "application/rtf"},
        {"GIF87a", 6, "image/gif"},
        {"GIF89a", 6, "image/gif"},
        {"\x89PNG\r\n\x1A\n", 8, "image/png"},
        {"\xFF\xD8\xFF", 3, "image/jpeg"},
        {"II*\0", 4, "image/tiff"},
        {"MM\0*", 4, "image/tiff"},
        {"%!PS", 4, "application/postscript"},
        {"BEGIN:VCALENDAR", 15, "text/calendar"},
    };
    size_t i, printable = 0;

    if (n == 0) return NULL;
    for (i = 0; i < sizeof magics / sizeof magics[0]; i++)
        if (n >= magics[i].len && memcmp(p, magics[i].magic, magics[i].len) == 0)
            return magics[i].type;
    if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0) return "image/webp";
    for (i = 0; i < n && isspace(p[i]); i++) continue;
    if (n - i >= 5 && (strncasecmp((const char *)p + i, "<html", 5) == 0 ||
                       (n - i >= 9 && strncasecmp((const char *)p + i, "<!doctype", 9) == 0)))
        return "text/html";
    if (n - i >= 5 && strncmp((const char *)p + i, "<?xml", 5) == 0) return "text/xml";
    for (i = 0; i < n; i++)
        if (p[i] >= 0x20 || p[i] == '\t' || p[i] == '\r' || p[i] == '\n') printable++;
    return printable == n ? "text/plain" : "application/octet-stream";
}

/* ---- the MIME tree ---- */

/* The still-encoded body of a leaf, without copying when GMime holds it in memory. */
static bool part_raw_body(GMimePart *part, struct buf *scratch, const char **data, size_t *len)
{
    GMimeDataWrapper *content = g_mime_part_get_content(part);
    GMimeStream *stream;

    *data = "";
    *len = 0;
    if (content == NULL) return true;
    stream = g_mime_data_wrapper_get_stream(content);
    if (stream == NULL) return true;
    if (GMIME_IS_STREAM_MEM(stream)) {
        GByteArray *ba = GMIME_STREAM_MEM(stream)->buffer;
        gint64 start = stream->bound_start, end = stream->bound_end;
        if (ba == NULL) return true;
        if (end < 0 || end > (gint64)ba->len) end = (gint64)ba->len;
        if (start < 0) start = 0;
        if (start > end) start = end;
        *data = (const char *)ba->data + start;
        *len = (size_t)(end - start);
        return true;
    }
    /* Not expected (we always parse from memory), but stay correct if it happens. */
    buf_clear(scratch);
    g_mime_stream_reset(stream);
    for (;;) {
        ssize_t n;
        buf_reserve(scratch, 65536);
        n = g_mime_stream_read(stream, scratch->data + scratch->len, 65536);
        if (n <= 0) break;
        scratch->len += (size_t)n;
        if (scratch->len > 2 * MSG_MAX_TEXT_BYTES) break;
    }
    g_mime_stream_reset(stream);
    *data = scratch->data ? scratch->data : "";
    *len = scratch->len;
    return false;
}

static bool type_is_text_body(const char *type)
{
    return strcmp(type, "text/plain") == 0 || strcmp(type, "text/html") == 0 ||
           (strncmp(type, "text/", 5) == 0 && strcmp(type, "text/calendar") != 0 &&
            strcmp(type, "text/x-vcard") != 0 && strcmp(type, "text/vcard") != 0);
}

static int part_new(struct parse_state *st, int parent, int depth)
{
    struct message *m = st->m;
    struct msg_part *p;

    if (m->n_parts >= MSG_MAX_PARTS) {
        m->flags |= MSG_F_TOO_MANY_PARTS;
        return -1;
    }
    if (m->n_parts == st->cap_parts) {
        st->cap_parts = st->cap_parts ? st->cap_parts * 2 : 8;
        m->parts = xrealloc(m->parts, st->cap_parts * sizeof *m->parts);
    }
    p = &m->parts[m->n_parts];
    memset(p, 0, sizeof *p);
    p->parent = parent;
    p->depth = depth;
    p->text_index = -1;
    return (int)m->n_parts++;
}

static struct msg_text *text_new(struct parse_state *st, int part_index)
{
    struct message *m = st->m;
    struct msg_text *t;

    if (m->n_texts == st->cap_texts) {
        st->cap_texts = st->cap_texts ? st->cap_texts * 2 : 4;
        m->texts = xrealloc(m->texts, st->cap_texts * sizeof *m->texts);
    }
    t = &m->texts[m->n_texts];
    memset(t, 0, sizeof *t);
    t->part = part_index;
    t->hidden = "";
    m->parts[part_index].text_index = (int)m->n_texts++;
    return t;
}

static void leaf_text(struct parse_state *st, int index, const char *body, size_t body_len)
{
    struct msg_part *p = &st->m->parts[index];
    const char *enc = p->encoding ? p->encoding : "7bit";
    struct buf text = {0};
    const char *src = body;
    size_t src_len = body_len;
    unsigned dflags = 0;
    struct msg_text *t;

    if (strcmp(enc, "base64") == 0 || strcmp(enc, "quoted-printable") == 0) {
        buf_clear(&st->decoded);
        dflags = enc[0] == 'b' ? decode_base64(&st->decoded, body, body_len, MSG_MAX_TEXT_BYTES)
                               : decode_qp(&st->decoded, body, body_len, MSG_MAX_TEXT_BYTES);
        if (dflags & DECODE_F_BAD) p->flags |= enc[0] == 'b' ? PART_F_BAD_BASE64 : PART_F_BAD_QP;
        if (dflags & DECODE_F_TRUNCATED) p->flags |= PART_F_TRUNCATED;
        src = st->decoded.data ? st->decoded.data : "";
        src_len = st->decoded.len;
        p->size_bytes = src_len;
    } else {
        if (src_len > MSG_MAX_TEXT_BYTES) {
            src_len = MSG_MAX_TEXT_BYTES;
            p->flags |= PART_F_TRUNCATED;
        }
        if (strcmp(enc, "7bit") == 0 && has_8bit(src, src_len)) p->flags |= PART_F_8BIT_IN_7BIT;
    }
    convert_to_utf8(&text, p->charset, src, src_len, &p->flags);

    t = text_new(st, index);
    if (strcmp(p->type, "text/html") == 0) {
        struct html_result hr;
        html_extract(st->a, text.data ? text.data : "", text.len, &hr);
        t->is_html = true;
        t->text = hr.text;
        t->len = hr.text_len;
        t->hidden = hr.hidden;
        t->hidden_len = hr.hidden_len;
        t->hidden_chars = hr.hidden_chars;
        t->html_flags = hr.flags;
        t->source_len = text.len;
        t->source = buf_release(&text);
        arena_adopt(st->a, (void *)t->source);
        urls_from_html(st, &hr);
    } else {
        t->len = text.len;
        t->text = buf_release(&text);
        arena_adopt(st->a, (void *)t->text);
        t->source = t->text;
        t->source_len = t->len;
    }
}

static void leaf_attachment(struct parse_state *st, int index, const char *body, size_t body_len)
{
    struct msg_part *p = &st->m->parts[index];
    const char *enc = p->encoding ? p->encoding : "7bit";
    const unsigned char *head = (const unsigned char *)body;
    size_t head_len = body_len < SNIFF_BYTES ? body_len : SNIFF_BYTES;
    struct buf sniff = {0};
    unsigned dflags = 0;

    if (strcmp(enc, "base64") == 0) {
        p->size_bytes = decode_base64_size(body, body_len, &dflags);
        if (dflags & DECODE_F_BAD) p->flags |= PART_F_BAD_BASE64;
        decode_base64(&sniff, body, body_len < 4 * SNIFF_BYTES ? body_len : 4 * SNIFF_BYTES,
                      SNIFF_BYTES);
        head = (const unsigned char *)(sniff.data ? sniff.data : "");
        head_len = sniff.len;
    } else if (strcmp(enc, "quoted-printable") == 0) {
        p->size_bytes = body_len; /* close enough: QP attachments are rare */
        decode_qp(&sniff, body, body_len < 4 * SNIFF_BYTES ? body_len : 4 * SNIFF_BYTES,
                  SNIFF_BYTES);
        head = (const unsigned char *)(sniff.data ? sniff.data : "");
        head_len = sniff.len;
    } else {
        p->size_bytes = body_len;
    }
    p->sniffed_type = sniff_type(head, head_len);
    buf_free(&sniff);
}

static const char *known_encodings[] = {"7bit", "8bit", "binary", "base64", "quoted-printable",
                                        NULL};

/* Where a part's header block is, as far as the damage checks need to know. */
enum block_kind {
    BLOCK_ROOT,  /* the message's own headers: checked by message_parse() */
    BLOCK_CHILD, /* a multipart's child: its block follows a boundary line */
    BLOCK_BODY,  /* an embedded message's body: its block is the message's, checked there */
};

/* A leaf part: its disposition and file name as GMime gives them, and its still-encoded body
 * (which may point into st->decoded). */
static void leaf(struct parse_state *st, int index, const char *disposition, const char *filename,
                 const char *body, size_t body_len)
{
    struct msg_part *p = &st->m->parts[index];

    p->disposition = token_dup(st->a, disposition);
    if (filename && *filename) p->filename = utf8_dup(st->a, filename, strlen(filename));
    if (p->encoding && !charset_is(p->encoding, known_encodings)) {
        p->flags |= PART_F_BAD_ENCODING;
        p->encoding = NULL; /* read it as 8bit */
    }
    p->encoded_bytes = body_len;
    p->is_attachment = !type_is_text_body(p->type) ||
                       (p->disposition && strcmp(p->disposition, "attachment") == 0 &&
                        p->filename != NULL);
    if (p->is_attachment) {
        /* body may point into the scratch buffer, which leaf_text reuses: attachments first. */
        leaf_attachment(st, index, body, body_len);
    } else {
        if (st->decoded.data && body >= st->decoded.data &&
            body < st->decoded.data + st->decoded.cap) {
            /* Rare fallback path: move the raw body out of the scratch buffer. */
            char *copy = xstrndup(body, body_len);
            leaf_text(st, index, copy, body_len);
            free(copy);
        } else {
            leaf_text(st, index, body, body_len);
        }
    }
    if (p->flags & (PART_F_BAD_BASE64 | PART_F_BAD_QP | PART_F_BAD_ENCODING))
        st->m->flags |= MSG_F_MIME_BAD;
}

static void walk_leaf(struct parse_state *st, GMimePart *part, int index)
{
    const char *body;
    size_t body_len;

    part_raw_body(part, &st->decoded, &body, &body_len);
    leaf(st, index, g_mime_object_get_disposition(GMIME_OBJECT(part)),
         g_mime_part_get_filename(part), body, body_len);
}

/* Offset of the first header of hl, or -1. */
static gint64 header_list_first_offset(GMimeHeaderList *hl)
{
    int i, n = hl ? g_mime_header_list_get_count(hl) : 0;
    gint64 first = -1;
    for (i = 0; i < n; i++) {
        gint64 o = g_mime_header_get_offset(g_mime_header_list_get_header_at(hl, i));
        if (o >= 0 && (first < 0 || o < first)) first = o;
    }
    return first;
}

/* Offset of a leaf's content in st->raw, or -1 if GMime does not hold it there. */
static gint64 leaf_content_offset(const struct parse_state *st, GMimeObject *obj)
{
    GMimeDataWrapper *content =
        GMIME_IS_PART(obj) ? g_mime_part_get_content(GMIME_PART(obj)) : NULL;
    GMimeStream *stream = content ? g_mime_data_wrapper_get_stream(content) : NULL;
    gint64 start;

    if (stream == NULL || !GMIME_IS_STREAM_MEM(stream)) return -1;
    if (GMIME_STREAM_MEM(stream)->buffer == NULL ||
        (const char *)GMIME_STREAM_MEM(stream)->buffer->data != st->raw)
        return -1;
    start = stream->bound_start;
    return start >= 0 && (size_t)start <= st->raw_len ? start : -1;
}

/* 1 if the line of raw starting at pos is "--boundary", 2 if it is the closing
 * "--boundary--" (either may end in blanks), 0 otherwise. */
static int boundary_line(const struct parse_state *st, size_t pos, const char *boundary)
{
    const char *p = st->raw + pos, *end = st->raw + st->raw_len;
    const char *eol = pos < st->raw_len ? memchr(p, '\n', (size_t)(end - p)) : NULL;
    size_t blen = strlen(boundary);
    int kind = 1;

    if (eol == NULL) eol = end;
    if (eol - p < (ptrdiff_t)blen + 2 || p[0] != '-' || p[1] != '-' ||
        memcmp(p + 2, boundary, blen) != 0)
        return 0;
    p += blen + 2;
    if (eol - p >= 2 && p[0] == '-' && p[1] == '-') {
        p += 2;
        kind = 2;
    }
    for (; p < eol; p++)
        if (!is_blank(*p) && *p != '\r') return 0;
    return kind;
}

/* Start of the line before the one starting at pos, or (size_t)-1 if pos is the first. */
static size_t line_before(const char *raw, size_t pos)
{
    size_t line;
    if (pos == 0) return (size_t)-1;
    line = pos - 1;
    while (line > 0 && raw[line - 1] != '\n')
        line--;
    return line;
}

/* Start of the line after the one containing pos, or raw_len. */
static size_t line_after(const struct parse_state *st, size_t pos)
{
    const char *nl = pos < st->raw_len ? memchr(st->raw + pos, '\n', st->raw_len - pos) : NULL;
    return nl ? (size_t)(nl - st->raw) + 1 : st->raw_len;
}

/* GMime drops a part that is a boundary line right after a boundary line, with a warning
 * that it had neither headers nor content (and one that the second boundary is no header
 * name): true if the boundary line at pos is one of such a pair. */
static bool boundary_pair_at(const struct parse_state *st, size_t pos, bool look_back)
{
    size_t other;
    if (st->boundary == NULL || boundary_line(st, pos, st->boundary) != 1) return false;
    if (look_back) {
        other = line_before(st->raw, pos);
        return other != (size_t)-1 && boundary_line(st, other, st->boundary) == 1;
    }
    other = line_after(st, pos);
    return other < st->raw_len && boundary_line(st, other, st->boundary) != 0;
}

#define EMPTY_PART_FLAGS (MSG_F_MIME_BAD | MSG_F_BAD_HEADERS)

/* Flags for the header block of a block that starts at or before offset first (a header's),
 * enclosed by st->boundary: a block must start after a boundary or blank line, or the lines
 * before first were refused header lines. */
static unsigned child_block_flags(const struct parse_state *st, gint64 first)
{
    unsigned flags = header_block_flags(st->raw, st->raw_len, (size_t)first, st->boundary);
    size_t before = line_before(st->raw, (size_t)first);
    if (!block_may_start_at(st->raw, (size_t)first)) flags |= MSG_F_BAD_HEADERS;
    if (before != (size_t)-1 && boundary_pair_at(st, before, true)) flags |= EMPTY_PART_FLAGS;
    return flags;
}

/* Flags for a multipart child without headers, from where its content starts: a blank line
 * just before (the empty header block) must follow the boundary line, else the lines in
 * between were refused header lines; no blank line means the boundary came right after the
 * boundary (GMime: a part without headers or content, the boundary taken for a header). */
static unsigned headerless_child_flags(const struct parse_state *st, gint64 content)
{
    const char *raw = st->raw;
    size_t pos = (size_t)content, line;

    if (pos == 0) return 0;
    line = pos - 1; /* the '\n' ending the line before the content */
    if (line > 0 && raw[line - 1] == '\r') line--;
    while (line > 0 && raw[line - 1] != '\n')
        line--;
    if (pos - line <= 2 && (raw[line] == '\n' || raw[line] == '\r')) {
        size_t before = line_before(raw, line);
        unsigned flags = block_may_start_at(raw, line) ? 0 : MSG_F_BAD_HEADERS;
        if (before != (size_t)-1 && boundary_pair_at(st, before, true)) flags |= EMPTY_PART_FLAGS;
        return flags;
    }
    return EMPTY_PART_FLAGS;
}

/* A part's lowercase type ("text/plain" without one) and declared charset, from ct. */
static void part_set_type(struct parse_state *st, struct msg_part *p, GMimeContentType *ct)
{
    const char *media = ct ? g_mime_content_type_get_media_type(ct) : NULL;
    const char *sub = ct ? g_mime_content_type_get_media_subtype(ct) : NULL;

    if (media && sub && *media && *sub) {
        size_t ml = strlen(media), sl = strlen(sub);
        char *t = arena_alloc(st->a, ml + sl + 2);
        size_t i;
        for (i = 0; i < ml; i++)
            t[i] = (char)tolower((unsigned char)media[i]);
        t[ml] = '/';
        for (i = 0; i < sl; i++)
            t[ml + 1 + i] = (char)tolower((unsigned char)sub[i]);
        t[ml + sl + 1] = '\0';
        p->type = t;
    } else {
        p->type = "text/plain";
    }
    p->charset = ct ? token_dup(st->a, g_mime_content_type_get_parameter(ct, "charset")) : NULL;
}

static void walk(struct parse_state *st, GMimeObject *obj, int parent, int depth,
                 enum block_kind kind)
{
    struct message *m = st->m;
    GMimeContentType *ct = g_mime_object_get_content_type(obj);
    gint64 first, content;
    int index;
    struct msg_part *p;

    if (depth > MSG_MAX_DEPTH) {
        m->flags |= MSG_F_TOO_DEEP | MSG_F_MIME_BAD;
        return;
    }
    m->flags |= header_list_flags(g_mime_object_get_header_list(obj), true);
    first = header_list_first_offset(g_mime_object_get_header_list(obj));
    content = kind == BLOCK_CHILD && GMIME_IS_PART(obj) ? leaf_content_offset(st, obj) : -1;
    if (kind == BLOCK_CHILD && first >= 0)
        m->flags |= child_block_flags(st, first);
    else if (content >= 0)
        m->flags |= headerless_child_flags(st, content);
    if (content >= 0) {
        /* The boundary line after the content, and whether another follows at once. */
        GMimeStream *stream =
            g_mime_data_wrapper_get_stream(g_mime_part_get_content(GMIME_PART(obj)));
        gint64 end = stream->bound_end;
        if (end >= 0 && (size_t)end < st->raw_len &&
            boundary_pair_at(st, line_after(st, (size_t)end), false))
            m->flags |= EMPTY_PART_FLAGS;
    }
    index = part_new(st, parent, depth);
    if (index < 0) return;
    p = &m->parts[index];
    part_set_type(st, p, ct);
    p->encoding = token_dup(st->a, g_mime_object_get_header(obj, "Content-Transfer-Encoding"));

    if (GMIME_IS_MULTIPART(obj)) {
        GMimeMultipart *mp = GMIME_MULTIPART(obj);
        /* Not g_mime_multipart_get_boundary(), which makes one up when there is none. */
        const char *boundary = g_mime_object_get_content_type_parameter(obj, "boundary");
        const char *outer = st->boundary;
        int i, n = g_mime_multipart_get_count(mp);
        p->is_multipart = true;
        if (boundary == NULL) {
            p->flags |= PART_F_NO_BOUNDARY;
            m->flags |= MSG_F_MIME_BAD;
        } else if (!mp->write_end_boundary) {
            /* GMime saw no closing boundary: an enclosing multipart's boundary ended it, or,
             * for the outermost one (nothing encloses it), the end of the input. */
            m->flags |= MSG_F_MIME_BAD | (outer == NULL ? MSG_F_TRUNCATED : 0);
        }
        if (boundary) st->boundary = boundary;
        if (boundary && n == 0 && first >= 0) {
            /* No part at all: fine after "--boundary--", not after an empty one. */
            size_t pos = (size_t)first;
            int b = 0;
            while (pos < st->raw_len && (b = boundary_line(st, pos, boundary)) == 0)
                pos = line_after(st, pos);
            if (b == 1) m->flags |= EMPTY_PART_FLAGS;
        }
        for (i = 0; i < n && !(m->flags & MSG_F_TOO_MANY_PARTS); i++)
            walk(st, g_mime_multipart_get_part(mp, i), index, depth + 1, BLOCK_CHILD);
        st->boundary = outer;
    } else if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
        GMimeObject *body = inner ? g_mime_message_get_mime_part(inner) : NULL;
        p->is_multipart = true;
        if (inner) {
            GMimeHeaderList *inner_headers = g_mime_object_get_header_list(GMIME_OBJECT(inner));
            gint64 inner_first = header_list_first_offset(inner_headers), body_first;
            m->flags |= header_list_flags(inner_headers, false);
            body_first = body ? header_list_first_offset(g_mime_object_get_header_list(body)) : -1;
            if (body_first >= 0 && (inner_first < 0 || body_first < inner_first))
                inner_first = body_first;
            if (inner_first >= 0) m->flags |= child_block_flags(st, inner_first);
        }
        if (body) walk(st, body, index, depth + 1, BLOCK_BODY);
    } else if (GMIME_IS_PART(obj)) {
        walk_leaf(st, GMIME_PART(obj), index);
    }
}

/* ---- headers ---- */

static void headers_done(struct parse_state *st);

static void read_headers(struct parse_state *st, GMimeObject *top)
{
    struct message *m = st->m;
    GMimeHeaderList *hl = g_mime_object_get_header_list(top);
    int i, n = hl ? g_mime_header_list_get_count(hl) : 0;

    m->headers = arena_calloc(st->a, (size_t)(n > 0 ? n : 1), sizeof *m->headers);
    for (i = 0; i < n; i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
        const char *name = g_mime_header_get_name(h);
        const char *raw = g_mime_header_get_raw_value(h);
        struct msg_header *mh;

        if (name == NULL) continue;
        mh = &m->headers[m->n_headers++];
        mh->name = utf8_dup(st->a, name, strlen(name));
        mh->raw = header_unfold(st->a, raw ? raw : "");
        /* Decoding (RFC 2047 words, 8-bit text from a guessed charset) is GMime's, and costs a
         * tenth of the parse; plain ASCII without an encoded word decodes to itself (checked
         * over the whole corpus), so only the others ask for it. */
        if (raw && (!ascii_only(raw) || strstr(raw, "=?") != NULL)) {
            const char *value = g_mime_header_get_value(h);
            mh->value = value ? header_unfold(st->a, value) : mh->raw;
        } else {
            mh->value = mh->raw;
        }
        if (strcasecmp(name, "Received") == 0) m->n_received++;
    }
    headers_done(st);
}

/* What follows from the header list, however it was read: the Received hops. */
static void headers_done(struct parse_state *st)
{
    struct message *m = st->m;
    size_t i, nhops = 0;

    if (m->n_headers == 0) m->flags |= MSG_F_NO_HEADERS;

    if (m->n_received) {
        m->hops = arena_calloc(st->a, m->n_received < MSG_MAX_HOPS ? m->n_received : MSG_MAX_HOPS,
                               sizeof *m->hops);
        for (i = 0; i < m->n_headers && nhops < MSG_MAX_HOPS; i++) {
            const struct msg_header *mh = &m->headers[i];
            if (strcasecmp(mh->name, "Received") != 0) continue;
            received_parse(st->a, mh->raw, strlen(mh->raw), &m->hops[nhops++]);
        }
        m->n_hops = nhops;
    }
}

/* Bytes of a leading mbox "From " line, its line end included; 0 if there is none. */
static size_t mbox_from_line_len(const char *data, size_t len)
{
    const char *nl;
    if (len < 5 || memcmp(data, "From ", 5) != 0) return 0;
    nl = memchr(data, '\n', len);
    return nl ? (size_t)(nl - data) + 1 : len;
}

/* The value of the last header called name, or NULL: what a GMimeMessage would keep. */
static const char *last_header(const struct message *m, const char *name)
{
    size_t i = m->n_headers;
    while (i-- > 0)
        if (strcasecmp(m->headers[i].name, name) == 0) return m->headers[i].value;
    return NULL;
}

/* The first mailbox of the first name header that has one, or NULL (caller unrefs the list
 * through *list). */
static InternetAddressMailbox *first_mailbox(const struct message *m, const char *name,
                                             InternetAddressList **list)
{
    size_t i;
    *list = NULL;
    for (i = 0; i < m->n_headers; i++) {
        const struct msg_header *h = &m->headers[i];
        int k, n;
        if (strcasecmp(h->name, name) != 0) continue;
        if (*list) g_object_unref(*list);
        *list = internet_address_list_parse(NULL, h->raw);
        n = *list ? internet_address_list_length(*list) : 0;
        for (k = 0; k < n; k++) {
            InternetAddress *ia = internet_address_list_get_address(*list, k);
            const char *addr;
            if (!INTERNET_ADDRESS_IS_MAILBOX(ia)) continue;
            addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
            if (addr && *addr) return INTERNET_ADDRESS_MAILBOX(ia);
        }
    }
    return NULL;
}

/*
 * Subject, Message-ID, Date, From and Reply-To from the headers. The message
 * is parsed as a MIME part, not a GMimeMessage, which would parse every
 * address header (To and Cc lists can be long) into objects nobody reads:
 * that and their teardown were a fifth of the parse. The results are what
 * GMimeMessage gives (checked over the whole corpus).
 */
static void read_addresses(struct parse_state *st)
{
    struct message *m = st->m;
    const char *subject = last_header(m, "Subject");
    const char *mid = last_header(m, "Message-ID");
    const char *date = last_header(m, "Date");
    InternetAddressList *list;
    InternetAddressMailbox *mb;

    if (subject) m->subject = subject;
    if (mid) {
        char *id = g_mime_utils_decode_message_id(mid);
        if (id) m->message_id = utf8_dup(st->a, id, strlen(id));
        g_free(id);
    }
    m->from = message_header(m, "From");
    m->date = message_header(m, "Date");
    if (date) {
        GDateTime *dt = g_mime_utils_header_decode_date(date);
        if (dt) {
            m->date_unix = g_date_time_to_unix(dt);
            g_date_time_unref(dt);
        }
    }
    if ((mb = first_mailbox(m, "From", &list)) != NULL) {
        const char *addr = internet_address_mailbox_get_addr(mb);
        /* The IDNA form differs from the address only in a non-ASCII domain (address_domain()
         * lowercases either); libidn2 is a tenth of the header work otherwise. */
        const char *idn = ascii_only(addr) ? addr : internet_address_mailbox_get_idn_addr(mb);
        const char *name = internet_address_get_name(INTERNET_ADDRESS(mb));
        m->from_addr = utf8_dup(st->a, addr, strlen(addr));
        m->from_domain = address_domain(st->a, idn ? idn : addr);
        if (name && *name) m->from_name = utf8_dup(st->a, name, strlen(name));
    }
    if (list) g_object_unref(list);
    if ((mb = first_mailbox(m, "Reply-To", &list)) != NULL) {
        const char *addr = internet_address_mailbox_get_addr(mb);
        m->reply_to_addr = utf8_dup(st->a, addr, strlen(addr));
    }
    if (list) g_object_unref(list);
}

static void copy_envelope(struct message *m, const struct envelope *env)
{
    struct arena *a = m->arena;
    size_t i;

    if (env == NULL) return;
    m->env.mail_from = arena_strdup(a, env->mail_from);
    m->env.client_ip = arena_strdup(a, env->client_ip);
    m->env.helo = arena_strdup(a, env->helo);
    m->env.queue_id = arena_strdup(a, env->queue_id);
    m->env.arrival_unix = env->arrival_unix;
    if (env->n_rcpt) {
        const char **rcpt = arena_alloc(a, env->n_rcpt * sizeof *rcpt);
        for (i = 0; i < env->n_rcpt; i++) rcpt[i] = arena_strdup(a, env->rcpt[i]);
        m->env.rcpt = rcpt;
        m->env.n_rcpt = env->n_rcpt;
    }
    m->env_from_domain = address_domain(a, m->env.mail_from);
}

static void finish(struct parse_state *st)
{
    struct message *m = st->m;
    size_t i, html = 0, plain = 0;

    for (i = 0; i < m->n_texts; i++) {
        const struct msg_text *t = &m->texts[i];
        if (t->is_html) html++;
        else plain++;
        url_find_in_text(st->a, t->text, t->len, url_found_in_text, st);
    }
    if (html && !plain) m->flags |= MSG_F_HTML_ONLY;
    for (i = 0; i < m->n_parts; i++)
        if (m->parts[i].flags & (PART_F_BAD_BASE64 | PART_F_BAD_QP | PART_F_BAD_ENCODING |
                                 PART_F_NO_BOUNDARY))
            m->flags |= MSG_F_MIME_BAD;
    /* The growable arrays were malloc'd; the arena frees them with the message. */
    arena_adopt(st->a, m->parts);
    arena_adopt(st->a, m->texts);
    arena_adopt(st->a, m->urls);
    free(st->url_hashes);
    buf_free(&st->decoded);
}

/* GMime parses the structure: any message the plain path below does not take. */
static void gmime_parse(struct parse_state *st)
{
    struct message *m = st->m;
    GByteArray *ba = g_byte_array_new_take((guint8 *)st->raw, st->raw_len);
    GMimeStream *stream = g_mime_stream_mem_new_with_byte_array(ba);
    GMimeParserOptions *options = g_mime_parser_options_new(); /* no warning callback */
    GMimeParser *parser;
    GMimeObject *root;

    m->gmime_tree = true;
    g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream), FALSE);
    parser = g_mime_parser_new_with_stream(stream);
    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    root = g_mime_parser_construct_part(parser, options);
    if (root) {
        read_headers(st, root);
        read_addresses(st);
        walk(st, root, -1, 0, BLOCK_ROOT);
        g_object_unref(root);
    }
    g_object_unref(parser);
    g_mime_parser_options_free(options);
    g_object_unref(stream);
    g_byte_array_free(ba, FALSE); /* frees the array, not the caller's bytes */
}

/*
 * ---- single-part messages without GMime's tree ----
 *
 * Most mail is one text part under a header block of plain ASCII fields. For
 * it GMime's parse is mostly the cost of its objects: a GObject per header,
 * built and torn down again, about a third of the whole parse. Such a message
 * is read here instead: the fields are split at their colons and folds, and
 * only the Content-Type and Content-Disposition values go through GMime's own
 * parsers, so types, parameters and file names come out as GMime gives them.
 * Anything less plain goes to GMime: a multipart or message type, 8-bit
 * bytes or an encoded word in the header block, a repeated Content-* or
 * MIME-Version field, a field name with blanks, a refused or cut-off header
 * block, NUL bytes or mixed line ends. The two ways give the same message
 * (tests/unit/test_message.c and the fuzz target compare them).
 */

struct plain_field {
    const char *name; /* into st->raw, not terminated */
    size_t name_len;
    const char *value; /* the raw value after the colon, folds included */
    size_t value_len;
};

static bool field_is(const struct plain_field *f, const char *name)
{
    return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

/* Splits the header block of raw[0..len) into fields. False if it is not plain (see above);
 * else *body is the offset after the blank line. *fields is malloc'd either way. */
static bool plain_fields(const char *raw, size_t len, struct plain_field **fields, size_t *n,
                         size_t *body)
{
    const char *p = raw, *end = raw + len;
    size_t cap = 0;

    *fields = NULL;
    *n = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *line_end, *q;
        if (nl == NULL) return false; /* cut off before the blank line */
        line_end = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
        if (line_end == p) {
            *body = (size_t)(nl + 1 - raw);
            return true;
        }
        for (q = p; q < line_end; q++) {
            unsigned char c = (unsigned char)*q;
            if (c >= 0x80 || c == '\0' || c == '\r') return false;
            if (c == '=' && q + 1 < line_end && q[1] == '?') return false;
        }
        if (is_blank(*p)) {
            if (*n == 0) return false;
            (*fields)[*n - 1].value_len = (size_t)(line_end - (*fields)[*n - 1].value);
        } else {
            const char *colon = memchr(p, ':', (size_t)(line_end - p));
            struct plain_field *f;
            if (colon == NULL || colon == p) return false;
            for (q = p; q < colon; q++)
                if ((unsigned char)*q <= ' ' || *q == 0x7f) return false;
            if (*n == cap) {
                cap = cap ? cap * 2 : 32;
                *fields = xrealloc(*fields, cap * sizeof **fields);
            }
            f = &(*fields)[(*n)++];
            f->name = p;
            f->name_len = (size_t)(colon - p);
            f->value = colon + 1;
            f->value_len = (size_t)(line_end - f->value);
        }
        p = nl + 1;
    }
    return false;
}

/* GMime's unfolded form of a field's value (for its structured-header parsers); g_free it. */
static char *field_unfolded(const struct plain_field *f)
{
    char *copy = g_strndup(f->value, f->value_len);
    char *unfolded = g_mime_utils_header_unfold(copy);
    g_free(copy);
    return unfolded;
}

static bool plain_parse(struct parse_state *st)
{
    struct message *m = st->m;
    struct plain_field *fields;
    const struct plain_field *ct_field = NULL, *cte_field = NULL, *cd_field = NULL;
    GMimeContentType *ct = NULL;
    GMimeContentDisposition *cd = NULL;
    const char *filename = NULL;
    size_t n, body, i, j;
    int index;

    if (!plain_fields(st->raw, st->raw_len, &fields, &n, &body)) goto not_plain;
    for (i = 0; i < n; i++) {
        if (!is_mime_header(fields[i].name, fields[i].name_len)) continue;
        for (j = 0; j < i; j++)
            if (fields[j].name_len == fields[i].name_len &&
                strncasecmp(fields[j].name, fields[i].name, fields[i].name_len) == 0)
                goto not_plain;
        if (field_is(&fields[i], "Content-Type"))
            ct_field = &fields[i];
        else if (field_is(&fields[i], "Content-Transfer-Encoding"))
            cte_field = &fields[i];
        else if (field_is(&fields[i], "Content-Disposition"))
            cd_field = &fields[i];
    }
    if (ct_field) {
        char *value = field_unfolded(ct_field);
        ct = g_mime_content_type_parse(NULL, value);
        g_free(value);
        if (ct && (g_mime_content_type_is_type(ct, "multipart", "*") ||
                   g_mime_content_type_is_type(ct, "message", "*")))
            goto not_plain;
    }

    m->headers = arena_calloc(st->a, n ? n : 1, sizeof *m->headers);
    for (i = 0; i < n; i++) {
        struct msg_header *mh = &m->headers[m->n_headers++];
        mh->name = arena_strndup(st->a, fields[i].name, fields[i].name_len);
        mh->raw = mh->value = header_unfold_n(st->a, fields[i].value, fields[i].value_len);
        if (field_is(&fields[i], "Received")) m->n_received++;
        if ((&fields[i] == ct_field || &fields[i] == cd_field) && params_conflict(mh->raw))
            m->flags |= MSG_F_MIME_BAD;
    }
    headers_done(st);
    read_addresses(st);

    index = part_new(st, -1, 0);
    part_set_type(st, &m->parts[index], ct);
    if (cte_field)
        m->parts[index].encoding = token_dup(st->a, m->headers[cte_field - fields].value);
    if (cd_field) {
        char *value = field_unfolded(cd_field);
        cd = g_mime_content_disposition_parse(NULL, value);
        g_free(value);
        if (cd) filename = g_mime_content_disposition_get_parameter(cd, "filename");
    }
    if (filename == NULL && ct) filename = g_mime_content_type_get_parameter(ct, "name");
    leaf(st, index, cd ? g_mime_content_disposition_get_disposition(cd) : NULL, filename,
         st->raw + body, st->raw_len - body);
    if (cd) g_object_unref(cd);
    if (ct) g_object_unref(ct);
    free(fields);
    return true;

not_plain:
    if (ct) g_object_unref(ct);
    free(fields);
    return false;
}

struct message *message_parse_opts(const char *data, size_t len, const struct envelope *env,
                                   unsigned opts)
{
    struct arena *a = arena_new(0);
    struct message *m = arena_calloc(a, 1, sizeof *m);
    struct parse_state st = {.m = m, .a = a};
    size_t skip;

    m->arena = a;
    m->raw_size = len;
    copy_envelope(m, env);
    m->flags |= raw_line_end_flags(data, len);

    /* GMime reads the caller's bytes in place: the array does not own them. A leading mbox
     * "From " line is not a header (GMime's message parser skipped it; its part parser, which
     * we use, would not). */
    skip = mbox_from_line_len(data, len);
    st.raw = data + skip;
    st.raw_len = len - skip;
    m->flags |= header_block_flags(st.raw, st.raw_len, 0, NULL);
    if ((opts & MSG_PARSE_GMIME) ||
        (m->flags &
         (MSG_F_NUL_BYTES | MSG_F_BARE_LINE_ENDS | MSG_F_BAD_HEADERS | MSG_F_TRUNCATED)) ||
        !plain_parse(&st))
        gmime_parse(&st);

    if (m->n_headers == 0) m->flags |= MSG_F_NO_HEADERS;
    if (m->n_parts == 0 && len > 0) {
        /* Nothing GMime recognised as a body: treat all bytes as plain text. */
        int index = part_new(&st, -1, 0);
        m->parts[index].type = "text/plain";
        leaf_text(&st, index, data, len);
    }
    finish(&st);
    return m;
}

struct message *message_parse(const char *data, size_t len, const struct envelope *env)
{
    return message_parse_opts(data, len, env, 0);
}

void message_free(struct message *m)
{
    if (m) arena_free(m->arena);
}

const char *message_header(const struct message *m, const char *name)
{
    size_t i;
    for (i = 0; i < m->n_headers; i++)
        if (strcasecmp(m->headers[i].name, name) == 0) return m->headers[i].value;
    return NULL;
}

size_t message_header_count(const struct message *m, const char *name)
{
    size_t i, n = 0;
    for (i = 0; i < m->n_headers; i++)
        if (strcasecmp(m->headers[i].name, name) == 0) n++;
    return n;
}

bool message_is_mail(const struct message *m)
{
    static const char *const mail_headers[] = {
        "From",       "To",           "Subject",      "Date",    "Message-ID", "Received",
        "Return-Path", "MIME-Version", "Content-Type", "Sender",  "Reply-To",   "Delivered-To",
        NULL};
    size_t i, j;

    for (i = 0; i < m->n_headers; i++)
        for (j = 0; mail_headers[j]; j++)
            if (strcasecmp(m->headers[i].name, mail_headers[j]) == 0) return true;
    return false;
}
