/*
 * normalize - NFKC_Casefold with ASCII and stable-run fast paths. See normalize.h.
 *
 * The utf8proc path does what utf8proc_map() does (decompose into a code
 * point array, then compose and re-encode in place) but with our own reusable
 * array instead of a malloc per call: utf8proc_decompose() reports the size it
 * needs when the array is too small, so we grow and retry once.
 *
 * utf8proc costs a few hundred instructions per code point, so the stable-run
 * test matters for non-English mail: the answer for each BMP code point is
 * kept in a table, filled from utf8proc's own mapping the first time the
 * process meets the code point, so the fast path can never disagree with
 * utf8proc about a single code point.
 */
#include "text/normalize.h"
#include "core/buf.h"
#include "core/utf8.h"
#include "core/xalloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* utf8proc_NFKC_Casefold() without UTF8PROC_NULLTERM: our spans carry a length. */
#define NORMALIZE_OPTIONS                                                                          \
    ((utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_COMPOSE |                    \
                         UTF8PROC_CASEFOLD | UTF8PROC_IGNORE))

void normalizer_free(struct normalizer *nz)
{
    free(nz->cps);
    if (nz->tmp) {
        buf_free(nz->tmp);
        free(nz->tmp);
    }
    memset(nz, 0, sizeof *nz);
}

bool normalize_is_ascii(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char acc = 0;
    size_t i;

    /* OR-ing all bytes lets the compiler vectorise; spans are short anyway. */
    for (i = 0; i < len; i++)
        acc |= p[i];
    return acc < 0x80;
}

const char *normalize_unicode_version(void)
{
    return utf8proc_unicode_version();
}

static bool normalize_is_jamo(int32_t cp)
{
    return (cp >= 0x1100 && cp <= 0x11FF) || (cp >= 0xA960 && cp <= 0xA97F) ||
           (cp >= 0xD7B0 && cp <= 0xD7FF);
}

/*
 * Could canonical composition attach cp to a starter before it? Only marks
 * and the Hangul vowel (V) and trailing consonant (T) jamo can: every second
 * element of a canonical decomposition is one of them (the test checks this
 * over all of Unicode).
 */
static bool normalize_may_compose_back(int32_t cp)
{
    const utf8proc_property_t *p = utf8proc_get_property(cp);

    return p->combining_class != 0 ||
           (p->category >= UTF8PROC_CATEGORY_MN && p->category <= UTF8PROC_CATEGORY_ME) ||
           (cp >= 0x1161 && cp <= 0x1175) || (cp >= 0x11A8 && cp <= 0x11C2);
}

/* The definition of normalize_cp_is_stable(), computed with utf8proc. */
static bool normalize_compute_stable(int32_t cp)
{
    utf8proc_int32_t d[32];
    utf8proc_ssize_t n;
    int boundclass = 0;

    if (normalize_is_jamo(cp) || normalize_may_compose_back(cp)) return false;
    /*
     * Full decomposition (compatibility, case folding, ignorables) of cp alone.
     * Its first element must not compose back either, or it could join the
     * code point before (a Hangul syllable starts with an L jamo, which is
     * fine). No Unicode 15 code point fails only this test; the argument in
     * normalize.h needs it, so a future Unicode version cannot break it.
     */
    n = utf8proc_decompose_char(cp, d, 31, NORMALIZE_OPTIONS, &boundclass);
    if (n < 1 || n > 31 || normalize_may_compose_back(d[0])) return false;
    /* Recomposed, cp alone must come back as itself. */
    n = utf8proc_normalize_utf32(d, n, NORMALIZE_OPTIONS);
    return n == 1 && d[0] == cp;
}

/*
 * normalize_cp_is_stable() of each BMP code point, computed the first time the
 * process meets it (the whole table cost 17 M instructions at every start):
 * 0 not known yet, NORMALIZE_STABLE or NORMALIZE_UNSTABLE. Threads may race to
 * fill one entry with the same value; relaxed atomic byte accesses keep that
 * race defined.
 */
enum { NORMALIZE_STABLE = 1, NORMALIZE_UNSTABLE = 2 };
static unsigned char normalize_bmp_stable[0x10000];

bool normalize_cp_is_stable(int32_t cp)
{
    unsigned char v;

    if (cp < 0x80) return (unsigned)(cp - 'A') >= 26u;
    if (cp > 0x10FFFF) return false;
    if (cp >= 0x10000) return normalize_compute_stable(cp);
    v = __atomic_load_n(&normalize_bmp_stable[cp], __ATOMIC_RELAXED);
    if (v == 0) {
        v = !(cp >= 0xD800 && cp <= 0xDFFF) && normalize_compute_stable(cp) ? NORMALIZE_STABLE
                                                                            : NORMALIZE_UNSTABLE;
        __atomic_store_n(&normalize_bmp_stable[cp], v, __ATOMIC_RELAXED);
    }
    return v == NORMALIZE_STABLE;
}

/* Makes room for at least n code points plus the terminator utf8proc_reencode() writes. */
static void normalize_reserve(struct normalizer *nz, size_t n)
{
    size_t cap;

    if (n + 1 <= nz->cap_cps) return;
    cap = nz->cap_cps ? nz->cap_cps : 256;
    while (cap < n + 1)
        cap *= 2;
    nz->cps = xrealloc(nz->cps, cap * sizeof *nz->cps);
    nz->cap_cps = cap;
}

/* The utf8proc path for valid UTF-8 with at least one non-ASCII byte. */
static size_t normalize_unicode(struct normalizer *nz, struct buf *out, const char *s, size_t len)
{
    const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)s;
    utf8proc_ssize_t n, bytes;
    size_t start;

    /* A guess that fits almost every span: decomposition rarely more than doubles. */
    normalize_reserve(nz, len + 16);
    n = utf8proc_decompose(u, (utf8proc_ssize_t)len, nz->cps, (utf8proc_ssize_t)nz->cap_cps - 1,
                           NORMALIZE_OPTIONS);
    if (n > (utf8proc_ssize_t)nz->cap_cps - 1) {
        normalize_reserve(nz, (size_t)n);
        n = utf8proc_decompose(u, (utf8proc_ssize_t)len, nz->cps, (utf8proc_ssize_t)nz->cap_cps - 1,
                               NORMALIZE_OPTIONS);
    }
    /* Input was validated by the caller and no option can fail on valid UTF-8. */
    assert(n >= 0);
    if (n <= 0) return 0;
    bytes = utf8proc_reencode(nz->cps, n, NORMALIZE_OPTIONS);
    assert(bytes >= 0);
    if (bytes <= 0) return 0;
    start = out->len;
    buf_append(out, nz->cps, (size_t)bytes);
    return out->len - start;
}

size_t normalize_append(struct normalizer *nz, struct buf *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t start = out->len, i, n;
    bool stable = true;
    unsigned char *d;
    int32_t cp;

    /* One pass: validate, and see whether every non-ASCII code point is stable. */
    for (i = 0; i < len; i += n) {
        if (p[i] < 0x80) {
            n = 1;
            continue;
        }
        n = normalize_decode(p + i, len - i, &cp);
        if (n == 0) {
            /* Callers promise valid UTF-8; if one breaks the promise, repair rather than fail. */
            if (nz->tmp == NULL) nz->tmp = xcalloc(1, sizeof *nz->tmp);
            buf_clear(nz->tmp);
            utf8_repair(nz->tmp, s, len);
            return normalize_unicode(nz, out, nz->tmp->data, nz->tmp->len);
        }
        if (stable && !normalize_cp_is_stable(cp)) stable = false;
    }
    if (!stable) return normalize_unicode(nz, out, s, len);

    /*
     * ASCII, or ASCII and stable code points: NFKC_Casefold is A-Z -> a-z. Copy
     * then fold in place, so that a buffer limit truncates as buf_append() does.
     */
    buf_append(out, s, len);
    d = (unsigned char *)out->data;
    for (i = start; i < out->len; i++)
        d[i] = normalize_ascii_lower(d[i]);
    return out->len - start;
}
