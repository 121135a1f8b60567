/*
 * normalize - NFKC normalisation and case folding of UTF-8 text (utf8proc).
 *
 * Tokens are compared after this mapping, so that "ＦＲＥＥ", "Free", "ﬁnance",
 * "Straße" and "vi<U+200B>agra" meet their plain forms ("free", "finance",
 * "strasse", "viagra"). The mapping is exactly utf8proc's NFKC_Casefold:
 * compatibility decomposition, case folding, canonical composition, and
 * removal of default-ignorable code points (soft hyphen, zero-width space and
 * joiners, bidi controls, variation selectors). Its output depends on the
 * Unicode version of the linked utf8proc (normalize_unicode_version()).
 *
 * Cost: most mail is ASCII, and for ASCII NFKC_Casefold is plain A-Z -> a-z,
 * so ASCII input is lowercased directly and utf8proc is only called for input
 * with a non-ASCII byte. utf8proc works on a code point array that lives in
 * struct normalizer and is reused from call to call, so normalising allocates
 * only when a span is longer than any seen before.
 *
 * A zeroed struct normalizer is ready for use; normalizer_free() releases its
 * scratch. Not thread-safe: one normalizer per thread (or per call chain).
 */
#ifndef MXW_NORMALIZE_H
#define MXW_NORMALIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

struct normalizer {
    int32_t *cps;     /* utf8proc's working array, owned; NULL until first needed */
    size_t cap_cps;   /* entries in cps */
    struct buf *tmp;  /* repair buffer for invalid input, owned; NULL until needed */
};

/* Frees the scratch of nz and leaves it zeroed (ready for reuse). */
void normalizer_free(struct normalizer *nz);

/*
 * Appends NFKC_Casefold(s[0..len)) to out and returns the number of bytes
 * appended (0 if everything was ignorable). s need not be NUL-terminated and
 * should be valid UTF-8; if it is not, it is first repaired (utf8_repair():
 * invalid bytes become U+FFFD, NUL a space), so this never fails. Respects
 * out->limit_bytes.
 */
size_t normalize_append(struct normalizer *nz, struct buf *out, const char *s, size_t len);

/* True if s[0..len) has no byte >= 0x80 (then normalising is ASCII lowercasing). */
bool normalize_is_ascii(const char *s, size_t len);

/* ASCII-only lowercasing of one byte: the whole of NFKC_Casefold on ASCII. */
static inline unsigned char normalize_ascii_lower(unsigned char c)
{
    return (unsigned char)(c - 'A') < 26u ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* The Unicode version of the linked utf8proc ("15.0.0"), which the mapping depends on. */
const char *normalize_unicode_version(void);

#endif
