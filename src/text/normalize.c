/*
 * normalize - NFKC_Casefold with an ASCII fast path. See normalize.h.
 *
 * The non-ASCII path does what utf8proc_map() does (decompose into a code
 * point array, then compose and re-encode in place) but with our own reusable
 * array instead of a malloc per call: utf8proc_decompose() reports the size it
 * needs when the array is too small, so we grow and retry once.
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
#define NORMALIZE_OPTIONS                                                                      \
    ((utf8proc_option_t)(UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_COMPOSE |               \
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
    for (i = 0; i < len; i++) acc |= p[i];
    return acc < 0x80;
}

const char *normalize_unicode_version(void)
{
    return utf8proc_unicode_version();
}

/* Makes room for at least n code points plus the terminator utf8proc_reencode() writes. */
static void normalize_reserve(struct normalizer *nz, size_t n)
{
    size_t cap;

    if (n + 1 <= nz->cap_cps) return;
    cap = nz->cap_cps ? nz->cap_cps : 256;
    while (cap < n + 1) cap *= 2;
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
        n = utf8proc_decompose(u, (utf8proc_ssize_t)len, nz->cps,
                               (utf8proc_ssize_t)nz->cap_cps - 1, NORMALIZE_OPTIONS);
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
    size_t start = out->len, i;
    unsigned char *d;

    if (normalize_is_ascii(s, len)) {
        /* Copy then fold in place, so that a buffer limit truncates as buf_append() does. */
        buf_append(out, s, len);
        d = (unsigned char *)out->data;
        for (i = start; i < out->len; i++) d[i] = normalize_ascii_lower(d[i]);
        return out->len - start;
    }
    if (utf8_valid(s, len)) return normalize_unicode(nz, out, s, len);

    /* Callers promise valid UTF-8; if one breaks the promise, repair rather than fail. */
    if (nz->tmp == NULL) nz->tmp = xcalloc(1, sizeof *nz->tmp);
    buf_clear(nz->tmp);
    utf8_repair(nz->tmp, s, len);
    return normalize_unicode(nz, out, nz->tmp->data, nz->tmp->len);
}
