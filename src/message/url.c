/*
 * url - finding, parsing and normalising URLs. See url.h for the contract.
 *
 * Parsing follows what browsers do (the WHATWG URL standard) rather than
 * RFC 3986, because what matters to a filter is where a click would go:
 * tabs and newlines inside a URL are ignored, backslashes count as slashes in
 * http/https/ftp, the host is whatever follows the last '@' of the authority,
 * the host is percent-decoded, mapped through UTS #46 (libidn2) and, when it
 * ends in a number, read as an IPv4 address in any of the C notations
 * (decimal, 0x hex, 0-prefixed octal, 1 to 4 parts). A host that a browser
 * would refuse (bad escapes, forbidden characters, a number that is not a
 * valid address, "[::1" without its bracket) makes url_parse() return -1. We
 * are stricter than browsers on one point: host characters are limited to
 * letters, digits, '-', '_' and '.', since nothing else resolves in the DNS.
 *
 * The path is kept as found, except that bytes which cannot live in a C
 * string or in valid UTF-8 (controls, space, NUL, invalid sequences) are
 * percent-encoded, so every string handed out is valid UTF-8 text.
 *
 * The public suffix list is loaded once into a static (url_init(), or lazily
 * on first use) and only read afterwards: libpsl lookups on a loaded context
 * are thread-safe, and the scan path takes no lock. Without any list at all
 * the registrable domain falls back to the last two labels.
 *
 * url_find_in_text() looks only at ':' (scheme candidates) and 'w'/'W' (bare
 * "www.") bytes; everything else costs one table lookup. The end of a run of
 * URL characters is cached, so a hostile text of repeated "http://" without
 * spaces is still scanned once. Each failed candidate costs a parse of up to
 * URL_MAX_BYTES, so after URL_RUN_FAILS_MAX failures in one run the rest of
 * the run is skipped: that keeps the scan linear, and a browser would not
 * make a link out of such a run either.
 */
#include "message/url.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/utf8.h"

#include <arpa/inet.h>
#include <idn2.h>
#include <libpsl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#define URL_FIND_MAX            10000 /* URLs reported per url_find_in_text() call */
#define URL_HOST_MAX_BYTES      253   /* DNS limits: longer names cannot resolve */
#define URL_LABEL_MAX_BYTES     63
#define URL_LINK_TEXT_MAX_BYTES 4096 /* anchor text looked at by url_domain_in_text() */
#define URL_RUN_FAILS_MAX       16   /* failed candidates tried in one run of non-separators */

struct url_scheme {
    const char *name;
    size_t len;
    int default_port;
    bool hierarchical; /* scheme://authority/path, with browser slash handling */
};

static const struct url_scheme url_schemes[] = {
    {"http", 4, 80, true},
    {"https", 5, 443, true},
    {"ftp", 3, 21, true},
    {"mailto", 6, 0, false},
};

/* The public suffix list: written under url_lock, read without a lock once url_ready is set. */
static pthread_mutex_t url_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool url_ready;
static _Atomic(const psl_ctx_t *) url_psl;
static psl_ctx_t *url_psl_owned; /* what psl_latest() returned; freed by url_shutdown() */

/* Host name bytes we accept (after ASCII lowercasing); non-ASCII bytes go to IDN. */
static const bool url_host_char[128] = {
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['-'] = 1, ['_'] = 1, ['.'] = 1,
};

/* Bytes worth a closer look while scanning text: ':' ends a scheme, 'w' may start "www.". */
static const bool url_trigger[256] = {[':'] = 1, ['w'] = 1, ['W'] = 1};

/*
 * ASCII bytes that end a URL in text: whitespace, controls (NUL included), DEL,
 * quotes and angle brackets, which in plain text delimit a URL rather than
 * belong to it.
 */
static const bool url_ascii_stop[128] = {
    [0] = 1,   [1] = 1,   [2] = 1,    [3] = 1,   [4] = 1,   [5] = 1,   [6] = 1,    [7] = 1,
    [8] = 1,   [9] = 1,   [10] = 1,   [11] = 1,  [12] = 1,  [13] = 1,  [14] = 1,   [15] = 1,
    [16] = 1,  [17] = 1,  [18] = 1,   [19] = 1,  [20] = 1,  [21] = 1,  [22] = 1,   [23] = 1,
    [24] = 1,  [25] = 1,  [26] = 1,   [27] = 1,  [28] = 1,  [29] = 1,  [30] = 1,   [31] = 1,
    [' '] = 1, ['"'] = 1, ['\''] = 1, ['<'] = 1, ['>'] = 1, ['`'] = 1, [0x7F] = 1,
};

/* Characters that glue "www." to a preceding word, path or address (no word boundary). */
static const bool url_word_char[128] = {
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1,  ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,  ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,  ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1, ['A'] = 1, ['B'] = 1,  ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,  ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,  ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1,
    ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,  ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,  ['8'] = 1, ['9'] = 1, ['.'] = 1, ['-'] = 1,
    ['_'] = 1, ['@'] = 1, ['/'] = 1, ['\\'] = 1, ['%'] = 1, ['+'] = 1, ['&'] = 1, ['='] = 1,
    ['~'] = 1, ['#'] = 1, ['$'] = 1,
};

static inline unsigned char url_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static inline bool url_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static inline bool url_is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int url_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = url_lower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* True if byte c is one of the characters of set; unlike strchr(), never true for NUL. */
static inline bool url_in_set(unsigned char c, const char *set)
{
    return c != '\0' && strchr(set, c) != NULL;
}

/* True if s[0..len) equals the lowercase ASCII word, ignoring ASCII case. */
static bool url_ascii_caseeq(const char *s, const char *word, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        if (url_lower((unsigned char)s[i]) != (unsigned char)word[i]) return false;
    return true;
}

void url_init(void)
{
    pthread_mutex_lock(&url_lock);
    if (!atomic_load_explicit(&url_ready, memory_order_relaxed)) {
        /* psl_latest() picks the newer of Debian's file and the builtin copy. */
        psl_ctx_t *loaded = psl_latest(NULL);
        const psl_ctx_t *ctx = loaded;

        if (ctx == NULL) {
            ctx = psl_builtin();
            log_warn("module=url event=psl_file_unusable file=%s fallback=%s",
                     psl_dist_filename() ? psl_dist_filename() : "none",
                     ctx ? "builtin" : "last_two_labels");
        } else {
            log_debug("module=url event=psl_loaded source=%s",
                      ctx == psl_builtin() ? "builtin" : "file");
        }
        url_psl_owned = loaded;
        atomic_store_explicit(&url_psl, ctx, memory_order_relaxed);
        atomic_store_explicit(&url_ready, true, memory_order_release);
    }
    pthread_mutex_unlock(&url_lock);
}

void url_shutdown(void)
{
    pthread_mutex_lock(&url_lock);
    /* psl_free() ignores the builtin context, so whatever psl_latest() gave is safe to free. */
    psl_free(url_psl_owned);
    url_psl_owned = NULL;
    atomic_store_explicit(&url_psl, NULL, memory_order_relaxed);
    atomic_store_explicit(&url_ready, false, memory_order_release);
    pthread_mutex_unlock(&url_lock);
}

/* The loaded list (loading it on first use), or NULL when none could be loaded. */
static const psl_ctx_t *url_psl_get(void)
{
    if (!atomic_load_explicit(&url_ready, memory_order_acquire)) url_init();
    return atomic_load_explicit(&url_psl, memory_order_relaxed);
}

/* Decodes the UTF-8 sequence at s into *cp; returns its length, or 0 if invalid. */
static size_t url_utf8_decode(const unsigned char *s, size_t avail, uint32_t *cp)
{
    size_t n = utf8_seq_len(s, avail), i;
    uint32_t v;

    if (n == 0) return 0;
    if (n == 1) {
        *cp = s[0];
        return 1;
    }
    v = s[0] & (0xFFu >> (n + 1));
    for (i = 1; i < n; i++)
        v = (v << 6) | (s[i] & 0x3Fu);
    *cp = v;
    return n;
}

enum {
    URL_SCRIPT_LATIN = 1u,
    URL_SCRIPT_GREEK = 2u,
    URL_SCRIPT_CYRILLIC = 4u,
};

/* The script of a letter, for the scripts homograph attacks mix; 0 for anything else. */
static unsigned url_script_of(uint32_t cp)
{
    if (cp < 0x80) return url_is_alpha((unsigned char)cp) ? URL_SCRIPT_LATIN : 0;
    if ((cp >= 0x00C0 && cp <= 0x024F && cp != 0x00D7 && cp != 0x00F7) ||
        (cp >= 0x1E00 && cp <= 0x1EFF))
        return URL_SCRIPT_LATIN;
    if ((cp >= 0x0370 && cp <= 0x03FF) || (cp >= 0x1F00 && cp <= 0x1FFF)) return URL_SCRIPT_GREEK;
    if ((cp >= 0x0400 && cp <= 0x052F) || (cp >= 0x1C80 && cp <= 0x1C8F) ||
        (cp >= 0x2DE0 && cp <= 0x2DFF) || (cp >= 0xA640 && cp <= 0xA69F))
        return URL_SCRIPT_CYRILLIC;
    return 0;
}

/*
 * True if one label of the (Unicode) host has letters of two of Latin, Greek
 * and Cyrillic: "pаypal" with a Cyrillic 'а' renders exactly like "paypal".
 * Per label, because "пример.com" (a Cyrillic name under .com) is legitimate.
 */
static bool url_mixed_script(const char *host)
{
    const unsigned char *p = (const unsigned char *)host;
    size_t avail = strlen(host);
    unsigned seen = 0;

    while (avail > 0) {
        uint32_t cp;
        size_t n = url_utf8_decode(p, avail, &cp);
        if (n == 0) return false; /* cannot happen: libidn2 output is valid UTF-8 */
        if (cp == '.') {
            if (seen & (seen - 1)) return true;
            seen = 0;
        } else {
            seen |= url_script_of(cp);
        }
        p += n;
        avail -= n;
    }
    return (seen & (seen - 1)) != 0;
}

/*
 * Parses one part of an IPv4 address the way inet_aton() and browsers do:
 * "0x" prefix hex (digits may be empty), leading "0" octal, else decimal.
 * Values above 32 bits are clamped to 2^32 so they fail every range check.
 */
static int url_ipv4_number(const char *s, size_t len, uint64_t *value)
{
    unsigned radix = 10;
    uint64_t v = 0;
    size_t i;

    if (len == 0) return -1;
    if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        radix = 16;
        s += 2, len -= 2;
    } else if (len >= 2 && s[0] == '0') {
        radix = 8;
        s++, len--;
    }
    for (i = 0; i < len; i++) {
        int d = url_hex_value((unsigned char)s[i]);
        if (d < 0 || (unsigned)d >= radix) return -1;
        v = v * radix + (unsigned)d;
        if (v > UINT32_MAX) v = (uint64_t)UINT32_MAX + 1;
    }
    *value = v;
    return 0;
}

/* WHATWG "ends in a number": the last label is all digits or a valid 0x number. */
static bool url_ends_in_number(const char *s, size_t len)
{
    size_t start = len, i;
    uint64_t ignored;

    while (start > 0 && s[start - 1] != '.')
        start--;
    if (start == len) return false;
    i = start;
    while (i < len && url_is_digit((unsigned char)s[i]))
        i++;
    if (i == len) return true;
    return len - start >= 2 && s[start] == '0' && (s[start + 1] == 'x' || s[start + 1] == 'X') &&
           url_ipv4_number(s + start, len - start, &ignored) == 0;
}

/*
 * Returns 1 and *addr (host byte order) if s[0..len) is an IPv4 address in
 * any notation, 0 if it is a name, and -1 if it ends in a number but is not a
 * valid address ("1.2.3.4.5", "256.1.1.1", "example.09"), which browsers
 * refuse as a host.
 */
static int url_ipv4_parse(const char *s, size_t len, uint32_t *addr)
{
    uint64_t parts[4], v;
    size_t n = 0, start = 0, i;

    if (!url_ends_in_number(s, len)) return 0;
    for (i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') continue;
        if (n == 4 || url_ipv4_number(s + start, i - start, &parts[n]) < 0) return -1;
        n++;
        start = i + 1;
    }
    for (i = 0; i + 1 < n; i++)
        if (parts[i] > 255) return -1;
    if (parts[n - 1] >= (uint64_t)1 << (8 * (5 - n))) return -1;
    v = parts[n - 1];
    for (i = 0; i + 1 < n; i++)
        v += parts[i] << (8 * (3 - i));
    *addr = (uint32_t)v;
    return 1;
}

/* "[v6]" to its canonical compressed form, brackets kept; NULL if not an IPv6 address. */
static const char *url_ipv6_normalise(struct arena *a, const char *h, size_t len, unsigned *flags)
{
    char in[INET6_ADDRSTRLEN], out[INET6_ADDRSTRLEN];
    struct in6_addr addr;

    if (len < 3 || h[0] != '[' || h[len - 1] != ']' || len - 2 >= sizeof in) return NULL;
    memcpy(in, h + 1, len - 2);
    in[len - 2] = '\0';
    /* inet_pton() would stop at an embedded NUL and accept the prefix. */
    if (memchr(in, '\0', len - 2) != NULL) return NULL;
    if (inet_pton(AF_INET6, in, &addr) != 1) return NULL;
    if (inet_ntop(AF_INET6, &addr, out, sizeof out) == NULL) return NULL;
    *flags |= URL_F_IP_LITERAL;
    return arena_printf(a, "[%s]", out);
}

/*
 * Non-ASCII host name (valid UTF-8, NUL-terminated in buf) to its ASCII form,
 * in place. UTS #46 non-transitional first (what current browsers use), then
 * transitional, which also admits symbols such as emoji that some registries
 * sell. Returns the new length, or -1.
 */
static long url_idn_to_ascii(char *buf, size_t cap)
{
    char *ascii = NULL;
    size_t n;

    if (idn2_to_ascii_8z(buf, &ascii, IDN2_NONTRANSITIONAL) != IDN2_OK) {
        idn2_free(ascii);
        ascii = NULL;
        if (idn2_to_ascii_8z(buf, &ascii, IDN2_TRANSITIONAL) != IDN2_OK) {
            idn2_free(ascii);
            return -1;
        }
    }
    n = strlen(ascii);
    if (n >= cap) {
        idn2_free(ascii);
        return -1;
    }
    memcpy(buf, ascii, n + 1);
    idn2_free(ascii);
    return (long)n;
}

/*
 * Normalises a host name (already percent-decoded, any case) into the lowercase
 * ASCII form owned by the arena; sets URL_F_IP_LITERAL, URL_F_NUMERIC_HOST,
 * URL_F_IDN and URL_F_MIXED_SCRIPT in *flags and the display form in *unicode.
 * Returns NULL for anything that is not a usable host name.
 */
static const char *url_host_normalise(struct arena *a, const char *h, size_t len, unsigned *flags,
                                      const char **unicode)
{
    char buf[URL_MAX_BYTES + 1];
    bool nonascii = false, punycode = false;
    size_t n = len, i, label_start;
    uint32_t addr;
    char *host;
    int ip;

    if (len == 0 || len > URL_MAX_BYTES) return NULL;
    if (h[0] == '[') {
        const char *v6 = url_ipv6_normalise(a, h, len, flags);
        *unicode = v6;
        return v6;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c >= 0x80) {
            nonascii = true;
        } else {
            c = url_lower(c);
            if (!url_host_char[c]) return NULL;
        }
        buf[i] = (char)c;
    }
    buf[n] = '\0';
    if (nonascii) {
        long r;
        if (!utf8_valid(buf, n)) return NULL;
        r = url_idn_to_ascii(buf, sizeof buf);
        if (r < 0) return NULL;
        n = (size_t)r;
        *flags |= URL_F_IDN;
        /* UTS #46 maps e.g. U+FF0F (fullwidth solidus) to '/': check the result again. */
        for (i = 0; i < n; i++)
            if ((unsigned char)buf[i] >= 0x80 || !url_host_char[(unsigned char)buf[i]]) return NULL;
    }
    if (n > 0 && buf[n - 1] == '.') buf[--n] = '\0';
    if (n == 0) return NULL;

    /* After IDN mapping, so that fullwidth digits are read as the address they show. */
    ip = url_ipv4_parse(buf, n, &addr);
    if (ip < 0) return NULL;
    if (ip > 0) {
        char *dotted = arena_printf(a, "%u.%u.%u.%u", addr >> 24, (addr >> 16) & 0xFF,
                                    (addr >> 8) & 0xFF, addr & 0xFF);
        *flags |= URL_F_IP_LITERAL;
        if (nonascii || strcmp(dotted, buf) != 0) *flags |= URL_F_NUMERIC_HOST;
        *unicode = dotted;
        return dotted;
    }

    if (n > URL_HOST_MAX_BYTES) return NULL;
    label_start = 0;
    for (i = 0; i <= n; i++) {
        if (i < n && buf[i] != '.') continue;
        if (i == label_start || i - label_start > URL_LABEL_MAX_BYTES) return NULL;
        if (i - label_start >= 4 && memcmp(buf + label_start, "xn--", 4) == 0) punycode = true;
        label_start = i + 1;
    }

    host = arena_strndup(a, buf, n);
    *unicode = host;
    if (punycode) {
        char *u = NULL;
        *flags |= URL_F_IDN;
        /* An undecodable xn-- label is still a resolvable ASCII name: keep it for display. */
        if (idn2_to_unicode_8z8z(host, &u, 0) == IDN2_OK && u != NULL) {
            *unicode = arena_strdup(a, u);
            if (url_mixed_script(*unicode)) *flags |= URL_F_MIXED_SCRIPT;
        }
        idn2_free(u);
    }
    return host;
}

/* Registrable domain without a list: the last two labels. */
static const char *url_domain_fallback(const char *host)
{
    const char *last = strrchr(host, '.'), *p;

    if (last == NULL) return host;
    for (p = last; p > host; p--)
        if (p[-1] == '.') return p;
    return host;
}

/*
 * The public suffix list answers the same few hosts again and again (a
 * message's links, every message of a newsletter): each thread remembers
 * recent answers as where in the host its registrable domain starts.
 */
#define URL_DOMAIN_CACHE_SLOTS 256 /* a power of two */
#define URL_DOMAIN_CACHE_HOST  64  /* longer hosts are not cached */
struct url_domain_cached {
    char host[URL_DOMAIN_CACHE_HOST]; /* "" for an empty slot */
    unsigned char skip;               /* the registrable domain is host + skip */
};
static _Thread_local struct url_domain_cached url_domain_cache[URL_DOMAIN_CACHE_SLOTS];

/* The registrable domain of a normalised host; a suffix of host, or host itself. */
static const char *url_domain_of(const char *host, unsigned flags)
{
    const psl_ctx_t *psl;
    const char *d;
    struct url_domain_cached *c = NULL;
    size_t len;

    if (host[0] == '\0' || (flags & URL_F_IP_LITERAL)) return host;
    len = strlen(host);
    if (len < URL_DOMAIN_CACHE_HOST) {
        c = &url_domain_cache[XXH3_64bits(host, len) & (URL_DOMAIN_CACHE_SLOTS - 1)];
        if (strcmp(c->host, host) == 0) return host + c->skip;
    }
    psl = url_psl_get();
    d = psl ? psl_registrable_domain(psl, host) : url_domain_fallback(host);
    if (d == NULL) d = host;
    if (c && d >= host && d <= host + len) {
        memcpy(c->host, host, len + 1);
        c->skip = (unsigned char)(d - host);
    }
    return d;
}

const char *url_registrable_domain(struct arena *a, const char *host)
{
    unsigned flags = 0;
    const char *unicode, *ascii;

    if (host == NULL || host[0] == '\0') return NULL;
    ascii = url_host_normalise(a, host, strlen(host), &flags, &unicode);
    return ascii ? url_domain_of(ascii, flags) : NULL;
}

/*
 * Decodes %XX escapes of s[0..len) into out (room for len bytes). Returns the
 * decoded length, or -1 for a malformed escape (browsers refuse such hosts).
 * *last_escape_out is the output index of the last decoded escape, or
 * SIZE_MAX when there was none.
 */
static long url_percent_decode(const char *s, size_t len, char *out, size_t *last_escape_out)
{
    size_t i, o = 0;
    int hi, lo;

    *last_escape_out = SIZE_MAX;
    for (i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= len) return -1;
        hi = url_hex_value((unsigned char)s[i + 1]);
        lo = url_hex_value((unsigned char)s[i + 2]);
        if (hi < 0 || lo < 0) return -1;
        *last_escape_out = o;
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    return (long)o;
}

/*
 * Copies s[0..len) into the arena, percent-encoding the bytes that cannot be
 * kept in a C string or valid UTF-8 (controls, space, DEL, invalid sequences).
 * For http/https/ftp (special), backslashes before the query become slashes
 * and an empty path or one starting with '?' or '#' gets a leading '/'.
 */
static char *url_path_copy(struct arena *a, const char *s, size_t len, bool special)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = arena_alloc(a, len * 3 + 2), *o = out;
    bool in_path = true;
    size_t i = 0;

    if (special && (len == 0 || s[0] == '?' || s[0] == '#')) *o++ = '/';
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t n = utf8_seq_len((const unsigned char *)s + i, len - i);
            if (n > 0) {
                memcpy(o, s + i, n);
                o += n, i += n;
                continue;
            }
        }
        if (c <= 0x20 || c >= 0x7F) {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 0xF];
            i++;
            continue;
        }
        if (c == '?' || c == '#') in_path = false;
        if (c == '\\' && special && in_path) c = '/';
        *o++ = (char)c;
        i++;
    }
    *o = '\0';
    return out;
}

/* The raw text for struct url: as found, repaired only if it is not valid UTF-8 or holds NUL. */
static const char *url_text_copy(struct arena *a, const char *s, size_t len)
{
    struct buf b = {0};
    char *copy;

    if (utf8_valid(s, len) && memchr(s, '\0', len) == NULL) return arena_strndup(a, s, len);
    utf8_repair(&b, s, len);
    copy = arena_strndup(a, b.data, b.len);
    buf_free(&b);
    return copy;
}

/* Bytes stripped from both ends of an href or a found URL. */
static bool url_is_trim_char(unsigned char c)
{
    return c <= 0x20 || c == '"' || c == '\'' || c == '<' || c == '>';
}

/* Length of the scheme name at w[0..n) followed by ':', or 0 if there is none. */
static size_t url_scheme_len(const char *w, size_t n)
{
    size_t i;

    if (n == 0 || !url_is_alpha((unsigned char)w[0])) return 0;
    for (i = 1; i < n; i++) {
        unsigned char c = (unsigned char)w[i];
        if (c == ':') return i;
        if (!url_is_alpha(c) && !url_is_digit(c) && c != '+' && c != '-' && c != '.') return 0;
    }
    return 0;
}

static int url_parse_mailto(struct arena *a, const char *w, size_t n, struct url *out)
{
    char decoded[URL_MAX_BYTES];
    size_t addr_len, at, i, query, query_end, last_escape;
    const char *unicode, *host;
    long dlen;

    if (n == 0) return -1;
    /* The first recipient only; headers (?subject=...) follow the address list. */
    for (addr_len = 0; addr_len < n; addr_len++)
        if (url_in_set((unsigned char)w[addr_len], "?#,;")) break;
    query = 0;
    while (query < n && w[query] != '?')
        query++;
    query_end = query;
    while (query_end < n && w[query_end] != '#')
        query_end++;

    dlen = url_percent_decode(w, addr_len, decoded, &last_escape);
    if (dlen < 0) return -1;
    at = (size_t)dlen;
    while (at > 0 && decoded[at - 1] != '@')
        at--;
    /* The address is shown to the user: no controls, space or broken UTF-8 in it. */
    for (i = 0; i < (size_t)dlen; i++)
        if ((unsigned char)decoded[i] <= 0x20 || decoded[i] == 0x7F) return -1;
    if (!utf8_valid(decoded, (size_t)dlen)) return -1;

    if (at == 0) {
        /* "mailto:?to=..." or "mailto:postmaster": no domain to report. */
        out->host = out->host_unicode = out->domain = "";
        out->normalised = arena_printf(a, "mailto:%.*s%.*s", (int)dlen, decoded,
                                       (int)(query_end - query), w + query);
    } else {
        size_t dom = at, dom_len = (size_t)dlen - at;
        const char *local;

        if (at == 1) return -1; /* "@example.com" has no local part */
        local = arena_strndup(a, decoded, at - 1);
        /* An address literal "user@[192.0.2.1]": the brackets are SMTP syntax, not IPv6. */
        if (dom_len > 2 && decoded[dom] == '[' && decoded[dom + dom_len - 1] == ']' &&
            memchr(decoded + dom, ':', dom_len) == NULL)
            dom++, dom_len -= 2;
        host = url_host_normalise(a, decoded + dom, dom_len, &out->flags, &unicode);
        if (host == NULL) return -1;
        if (last_escape != SIZE_MAX && last_escape >= at - 1) out->flags |= URL_F_PERCENT_HOST;
        out->host = host;
        out->host_unicode = unicode;
        out->domain = url_domain_of(host, out->flags);
        out->normalised =
            arena_printf(a, "mailto:%s@%s%.*s", local, host, (int)(query_end - query), w + query);
    }
    out->scheme = "mailto";
    out->port = 0;
    out->path = url_path_copy(a, w, n, false);
    return 0;
}

/* Parses the part after "scheme:" of an http/https/ftp URL (or a whole bare "www." URL). */
static int url_parse_hier(struct arena *a, const char *w, size_t n, const struct url_scheme *sch,
                          struct url *out)
{
    char decoded[URL_MAX_BYTES];
    size_t p = 0, auth_end, hs, he, at, frag, last_escape;
    const char *host_in, *host, *unicode;
    size_t host_len;
    long port = -1;
    char port_text[8] = "";

    if (!(out->flags & URL_F_NO_SCHEME)) {
        /* Browsers skip any run of slashes and backslashes: "http:\\evil.com" goes to evil.com. */
        while (p < n && (w[p] == '/' || w[p] == '\\'))
            p++;
        if (p == 0) return -1;
    }
    for (auth_end = p; auth_end < n; auth_end++)
        if (url_in_set((unsigned char)w[auth_end], "/\\?#")) break;

    /* The host follows the last '@': "http://paypal.com@evil.example/" visits evil.example. */
    hs = p;
    for (at = auth_end; at > p; at--) {
        if (w[at - 1] == '@') {
            hs = at;
            out->flags |= URL_F_USERINFO;
            break;
        }
    }

    if (hs < auth_end && w[hs] == '[') {
        const char *rb = memchr(w + hs, ']', auth_end - hs);
        if (rb == NULL) return -1;
        he = (size_t)(rb - w) + 1;
        if (he < auth_end && w[he] != ':') return -1;
    } else {
        const char *colon = memchr(w + hs, ':', auth_end - hs);
        he = colon ? (size_t)(colon - w) : auth_end;
    }
    if (he < auth_end) {
        size_t i;
        /* An empty port ("host:/") means the default, as in browsers. */
        for (i = he + 1; i < auth_end; i++) {
            if (!url_is_digit((unsigned char)w[i])) return -1;
            port = (port < 0 ? 0 : port) * 10 + (w[i] - '0');
            if (port > 65535) return -1;
        }
    }

    host_in = w + hs;
    host_len = he - hs;
    if (host_len > 0 && host_in[0] != '[' && memchr(host_in, '%', host_len) != NULL) {
        long dlen = url_percent_decode(host_in, host_len, decoded, &last_escape);
        if (dlen < 0) return -1;
        out->flags |= URL_F_PERCENT_HOST;
        host_in = decoded;
        host_len = (size_t)dlen;
    }
    host = url_host_normalise(a, host_in, host_len, &out->flags, &unicode);
    if (host == NULL) return -1;

    if (port >= 0 && port != sch->default_port) {
        out->flags |= URL_F_NONSTD_PORT;
        snprintf(port_text, sizeof port_text, ":%ld", port);
    }
    out->port = port >= 0 ? (int)port : sch->default_port;
    out->scheme = sch->name;
    out->host = host;
    out->host_unicode = unicode;
    out->domain = url_domain_of(host, out->flags);
    out->path = url_path_copy(a, w + auth_end, n - auth_end, true);
    /* The fragment never leaves the browser, so it is not part of the normalised form. */
    frag = strcspn(out->path, "#");
    {
        /* scheme "://" host port path-without-fragment, built by hand: this runs for every
         * URL of every message, and arena_printf() formats twice. */
        size_t ls = strlen(sch->name), lh = strlen(host), lp = strlen(port_text);
        char *d = arena_alloc(a, ls + 3 + lh + lp + frag + 1);
        out->normalised = d;
        memcpy(d, sch->name, ls);
        memcpy(d + ls, "://", 3);
        memcpy(d + ls + 3, host, lh);
        memcpy(d + ls + 3 + lh, port_text, lp);
        memcpy(d + ls + 3 + lh + lp, out->path, frag);
        d[ls + 3 + lh + lp + frag] = '\0';
    }
    return 0;
}

int url_parse(struct arena *a, const char *s, size_t len, enum url_source source, struct url *out)
{
    char work[URL_MAX_BYTES];
    const struct url_scheme *sch = NULL;
    size_t n = 0, i;
    int rc;

    memset(out, 0, sizeof *out);
    if (s == NULL) return -1;
    while (len > 0 && url_is_trim_char((unsigned char)s[0]))
        s++, len--;
    while (len > 0 && url_is_trim_char((unsigned char)s[len - 1]))
        len--;
    if (len > URL_MAX_BYTES) {
        /* Cut before a UTF-8 sequence that would straddle the limit. */
        len = URL_MAX_BYTES;
        for (i = 0; i < 3 && len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80; i++)
            len--;
    }
    if (len == 0) return -1;

    /* Browsers drop tabs and newlines anywhere in a URL ("java\nscript:" is javascript:). */
    if (memchr(s, '\n', len) == NULL && memchr(s, '\t', len) == NULL &&
        memchr(s, '\r', len) == NULL) {
        memcpy(work, s, len);
        n = len;
    } else {
        for (i = 0; i < len; i++)
            if (s[i] != '\t' && s[i] != '\n' && s[i] != '\r') work[n++] = s[i];
    }

    out->source = source;
    if (n > 4 && url_ascii_caseeq(work, "www.", 4)) {
        out->flags |= URL_F_NO_SCHEME;
        rc = url_parse_hier(a, work, n, &url_schemes[0], out);
    } else {
        size_t scheme_len = url_scheme_len(work, n);
        for (i = 0; scheme_len > 0 && i < sizeof url_schemes / sizeof url_schemes[0]; i++) {
            if (url_schemes[i].len == scheme_len &&
                url_ascii_caseeq(work, url_schemes[i].name, scheme_len)) {
                sch = &url_schemes[i];
                break;
            }
        }
        /* javascript:, data:, vbscript:, relative references and text without a scheme. */
        if (sch == NULL) return -1;
        if (sch->hierarchical)
            rc = url_parse_hier(a, work + scheme_len + 1, n - scheme_len - 1, sch, out);
        else
            rc = url_parse_mailto(a, work + scheme_len + 1, n - scheme_len - 1, out);
    }
    if (rc < 0) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    out->raw = url_text_copy(a, s, len);
    return 0;
}

/*
 * Length of the separator at s if it ends a URL in text: ASCII stop bytes,
 * and the Unicode spaces that HTML-derived text is full of (U+00A0, U+2000 to
 * U+200B, U+2028, U+2029, U+202F, U+3000, U+FEFF). 0 otherwise.
 */
static size_t url_separator_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];

    if (c < 0x80) return url_ascii_stop[c];
    if (c == 0xC2) return avail >= 2 && s[1] == 0xA0 ? 2 : 0;
    if (avail < 3) return 0;
    if (c == 0xE2 && s[1] == 0x80 && (s[2] <= 0x8B || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF))
        return 3;
    if (c == 0xE3 && s[1] == 0x80 && s[2] == 0x80) return 3;
    if (c == 0xEF && s[1] == 0xBB && s[2] == 0xBF) return 3;
    return 0;
}

/* Index of the first separator at or after start. */
static size_t url_run_end(const unsigned char *t, size_t start, size_t len)
{
    size_t i = start;

    while (i < len) {
        unsigned char c = t[i];
        if (c < 0x80) {
            if (url_ascii_stop[c]) return i;
        } else if (url_separator_len(t + i, len - i) > 0) {
            return i;
        }
        i++;
    }
    return len;
}

/* Length of trailing sentence punctuation ending at s[len) that is not part of a URL, or 0. */
static size_t url_trailing_punct_len(const unsigned char *s, size_t len)
{
    unsigned char c = s[len - 1];

    if (c < 0x80) return url_in_set(c, ".,;:!?") ? 1 : 0;
    /* Ideographic and fullwidth full stops and commas: U+3001, U+3002, U+FF0C, U+FF0E, U+FF61. */
    if (len < 3) return 0;
    if (s[len - 3] == 0xE3 && s[len - 2] == 0x80 && (c == 0x81 || c == 0x82)) return 3;
    if (s[len - 3] == 0xEF && s[len - 2] == 0xBC && (c == 0x8C || c == 0x8E)) return 3;
    if (s[len - 3] == 0xEF && s[len - 2] == 0xBD && c == 0xA1) return 3;
    return 0;
}

/*
 * Drops the trailing punctuation of a sentence from a URL found in text. A
 * closing bracket stays when the URL opened it ("wiki/Foo_(bar)"), so the
 * brackets are counted once and the counts kept as closers are dropped.
 */
static size_t url_trim_trailing(const unsigned char *s, size_t len)
{
    static const char closers[] = ")]}", openers[] = "([{";
    size_t opens[3] = {0}, closes[3] = {0}, i;
    bool counted = false;

    while (len > 0) {
        size_t punct = url_trailing_punct_len(s, len);
        const char *k;
        if (punct > 0) {
            len -= punct;
            continue;
        }
        if (!url_in_set(s[len - 1], closers)) break;
        k = strchr(closers, s[len - 1]);
        if (!counted) {
            for (i = 0; i < len; i++) {
                if (url_in_set(s[i], openers)) opens[strchr(openers, s[i]) - openers]++;
                if (url_in_set(s[i], closers)) closes[strchr(closers, s[i]) - closers]++;
            }
            counted = true;
        }
        if (closes[k - closers] <= opens[k - closers]) break;
        closes[k - closers]--;
        len--;
    }
    return len;
}

/* True if "www." at t[i] starts a word rather than continuing a name, path or address. */
static bool url_www_at_boundary(const unsigned char *t, size_t i)
{
    unsigned char prev;

    if (i == 0) return true;
    prev = t[i - 1];
    /* Non-ASCII before "www." is a Unicode space or a CJK text without spaces. */
    return prev >= 0x80 || !url_word_char[prev];
}

/*
 * The scheme ending at the ':' at t[colon] that starts a URL in text, or NULL.
 * http/https/ftp need two slashes or backslashes after the colon; mailto needs
 * something after it.
 */
static const struct url_scheme *url_scheme_before(const unsigned char *t, size_t colon, size_t len)
{
    size_t k;

    for (k = 0; k < sizeof url_schemes / sizeof url_schemes[0]; k++) {
        const struct url_scheme *sch = &url_schemes[k];
        if (colon < sch->len ||
            !url_ascii_caseeq((const char *)t + colon - sch->len, sch->name, sch->len))
            continue;
        if (sch->hierarchical)
            return colon + 2 < len && (t[colon + 1] == '/' || t[colon + 1] == '\\') &&
                           (t[colon + 2] == '/' || t[colon + 2] == '\\')
                       ? sch
                       : NULL;
        return colon + 1 < len && url_separator_len(t + colon + 1, len - colon - 1) == 0 ? sch
                                                                                         : NULL;
    }
    return NULL;
}

typedef void (*url_found_fn)(void *ctx, const struct url *u, size_t offset);

/*
 * The scanner behind url_find_in_text() and url_domain_in_text(): calls found
 * with each URL and its offset in t, up to max URLs. A URL that parses ends
 * the candidates inside it; one that does not lets the scan go on after its
 * trigger, so "www..http://evil.example" still yields evil.example.
 */
static size_t url_scan_text(struct arena *a, const char *text, size_t len, size_t max,
                            url_found_fn found, void *ctx)
{
    const unsigned char *t = (const unsigned char *)text;
    size_t i, count = 0, run_start = 0, run_end = 0, run_fails = 0;

    if (text == NULL) return 0;
    for (i = 0; i < len && count < max; i++) {
        const struct url_scheme *sch = NULL;
        size_t start, end, trimmed;
        struct url u;

        if (!url_trigger[t[i]]) continue;
        if (t[i] == ':') {
            sch = url_scheme_before(t, i, len);
            if (sch == NULL) continue;
            start = i - sch->len;
        } else {
            if (i + 4 > len || (t[i + 1] | 0x20) != 'w' || (t[i + 2] | 0x20) != 'w' ||
                t[i + 3] != '.' || !url_www_at_boundary(t, i))
                continue;
            start = i;
        }
        /* Separators do not depend on where a candidate starts: reuse the run's end. */
        if (start < run_start || start >= run_end) {
            run_start = start;
            run_end = url_run_end(t, start, len);
            run_fails = 0;
        }
        end = run_end;
        /* Beyond the cap url_parse() truncates anyway, so the tail needs no trimming. */
        trimmed =
            end - start <= URL_MAX_BYTES ? url_trim_trailing(t + start, end - start) : end - start;
        if (url_parse(a, text + start, trimmed, URL_SRC_TEXT, &u) < 0) {
            if (++run_fails >= URL_RUN_FAILS_MAX) i = run_end;
            continue;
        }
        i = end; /* the loop's i++ then skips the separator */
        /* A mailto: without an address names no host: nothing to report. */
        if (u.host[0] == '\0') continue;
        found(ctx, &u, start);
        count++;
    }
    return count;
}

struct url_find_ctx {
    void (*found)(void *ctx, const struct url *u);
    void *ctx;
};

static void url_find_adapter(void *ctx, const struct url *u, size_t offset)
{
    struct url_find_ctx *f = ctx;

    (void)offset;
    f->found(f->ctx, u);
}

size_t url_find_in_text(struct arena *a, const char *text, size_t len,
                        void (*found)(void *ctx, const struct url *u), void *ctx)
{
    struct url_find_ctx f = {found, ctx};

    return url_scan_text(a, text, len, URL_FIND_MAX, url_find_adapter, &f);
}

struct url_first {
    const char *domain;
    size_t offset;
};

static void url_take_first(void *ctx, const struct url *u, size_t offset)
{
    struct url_first *first = ctx;

    first->domain = u->domain;
    first->offset = offset;
}

/* True if label is a suffix on the real list (not only by libpsl's implicit "*" rule). */
static bool url_is_listed_suffix(const char *label)
{
    const psl_ctx_t *psl = url_psl_get();

    return psl != NULL &&
           psl_is_public_suffix2(psl, label, PSL_TYPE_ANY | PSL_TYPE_NO_STAR_RULE) != 0;
}

/* Separators between words of anchor text. */
static size_t url_token_separator_len(const unsigned char *s, size_t avail)
{
    if (url_in_set(s[0], "()[]{},;!?|*")) return 1;
    return url_separator_len(s, avail);
}

/*
 * The registrable domain named by one word of anchor text ("PayPal.com",
 * "paypal.com/login"), or NULL. The last label must be on the public suffix
 * list, so "file.txt" and "v1.2" are not names. An address is not a name
 * either: '@' is not a host character, so the host check refuses it.
 */
static const char *url_token_domain(struct arena *a, const char *t, size_t len)
{
    const char *host, *unicode, *tld, *d;
    unsigned flags = 0;
    size_t host_len;

    while (len > 0 && (t[len - 1] == '.' || t[len - 1] == ':'))
        len--;
    for (host_len = 0; host_len < len; host_len++)
        if (url_in_set((unsigned char)t[host_len], "/?#:")) break;
    if (host_len == 0 || memchr(t, '.', host_len) == NULL) return NULL;
    host = url_host_normalise(a, t, host_len, &flags, &unicode);
    if (host == NULL || (flags & URL_F_IP_LITERAL)) return NULL;
    tld = strrchr(host, '.');
    if (tld == NULL || !url_is_listed_suffix(tld + 1)) return NULL;
    /* NULL when the word is itself a suffix, such as "co.uk". */
    d = psl_registrable_domain(url_psl_get(), host);
    return d;
}

const char *url_domain_in_text(struct arena *a, const char *text, size_t len)
{
    const unsigned char *t = (const unsigned char *)text;
    struct url_first first = {NULL, 0};
    size_t i = 0, limit;

    if (text == NULL || len == 0) return NULL;
    if (len > URL_LINK_TEXT_MAX_BYTES) len = URL_LINK_TEXT_MAX_BYTES;
    url_scan_text(a, text, len, 1, url_take_first, &first);
    /* A bare name before the first URL is what the reader sees first. */
    limit = first.domain ? first.offset : len;
    while (i < limit) {
        size_t sep = url_token_separator_len(t + i, len - i), start;
        const char *d;
        if (sep > 0) {
            i += sep;
            continue;
        }
        start = i;
        while (i < len && url_token_separator_len(t + i, len - i) == 0)
            i++;
        d = url_token_domain(a, text + start, i - start);
        if (d != NULL) return d;
    }
    return first.domain;
}
