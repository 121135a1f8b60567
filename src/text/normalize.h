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
 * so ASCII input is lowercased directly. Most non-ASCII words (lowercase
 * Cyrillic, Greek, Arabic, CJK, precomposed accented letters) are already
 * normalised: a run made only of *stable* code points (see
 * normalize_cp_is_stable()) is copied with A-Z lowered, again without
 * utf8proc. Only the remaining runs go through utf8proc, which works on a code
 * point array that lives in struct normalizer and is reused from call to call,
 * so normalising allocates only when a run is longer than any seen before.
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
    int32_t *cps;    /* utf8proc's working array, owned; NULL until first needed */
    size_t cap_cps;  /* entries in cps */
    struct buf *tmp; /* repair buffer for invalid input, owned; NULL until needed */
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

/*
 * True if NFKC_Casefold leaves cp unchanged wherever it stands between other
 * stable code points, so that a string of them is its own normal form: cp
 * maps to itself, is not a conjoining Hangul jamo, and neither cp nor the
 * first code point of its full decomposition can compose with a code point
 * before it (combining class 0, not a mark, not a Hangul V or T jamo). Every
 * second element of a canonical composition is a mark or a V or T jamo, so
 * nothing composes across stable code points, and with no non-starters
 * nothing is reordered (tests/unit/test_normalize.c checks the premises over
 * all of Unicode). Basic Multilingual Plane answers come from a table built
 * once per process (thread-safe).
 */
bool normalize_cp_is_stable(int32_t cp);

/*
 * Decodes the UTF-8 sequence at s (avail >= 1 bytes): sets *cp and returns its
 * length (1..4), or returns 0 if it is not valid UTF-8 by the rules of
 * utf8_seq_len() (overlong forms, surrogates and values above U+10FFFF are
 * invalid). Inline because the text modules call it for every code point.
 */
static inline size_t normalize_decode(const unsigned char *s, size_t avail, int32_t *cp)
{
    unsigned char c = s[0];
    int32_t v;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c < 0xC2) return 0;
    if (c < 0xE0) {
        if (avail < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (c < 0xF0) {
        if (avail < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        v = ((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        if (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF)) return 0;
        *cp = v;
        return 3;
    }
    if (c < 0xF5) {
        if (avail < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        v = ((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        if (v < 0x10000 || v > 0x10FFFF) return 0;
        *cp = v;
        return 4;
    }
    return 0;
}

/* The Unicode version of the linked utf8proc ("15.0.0"), which the mapping depends on. */
const char *normalize_unicode_version(void);

#endif
