/*
 * features - the deterministic feature stream of a message.
 *
 * The statistical (Bayes) and neural classifiers, and the models they store,
 * see a message only through this stream, so its definition is versioned:
 * any change to what is emitted or how it is hashed must bump
 * FEATURE_STREAM_VERSION, which invalidates stored statistics and models.
 * docs/features.md describes the stream in full.
 *
 * In short: text is NFKC-normalised and case-folded (utf8proc), split into
 * word tokens (letters, digits, marks), with long words, numbers, URLs and
 * e-mail addresses replaced by normalised shapes. Each word token gives a
 * FEAT_WORD feature; each pair of words at distance 1..4 inside a window of
 * 5 gives a FEAT_OSB feature (orthogonal sparse bigrams); metadata (sender
 * domain, words of the sender and route headers, Received relays, subject
 * words, MIME and attachment types, URL domains, charsets) gives FEAT_META
 * features. Every feature is a 64-bit XXH3
 * hash. The same message always gives the same stream, in the same order.
 */
#ifndef MXW_FEATURES_H
#define MXW_FEATURES_H

#include <stddef.h>
#include <stdint.h>

struct arena;
struct message;

#define FEATURE_STREAM_VERSION 3

/* Bounds that keep a huge message cheap: later tokens are ignored. */
#define FEATURES_MAX_WORDS 20000

enum feature_kind {
    FEAT_WORD = 0, /* a normalised word token */
    FEAT_OSB = 1,  /* a pair of word tokens at a distance of 1..4 */
    FEAT_META = 2, /* a metadata token such as "from_domain:example.com" */
};

struct features {
    uint64_t *hash;  /* n hashes, owned by the arena */
    uint8_t *kind;   /* n enum feature_kind values, owned by the arena */
    size_t n;
    size_t n_words;  /* word tokens seen (before the cap), for statistics */
};

/*
 * Called for every feature as it is emitted (for `mxwarden dump` and tests).
 * token is the readable form: the word, "a b" for OSB pairs (with the
 * distance in distance, 0 otherwise), or the metadata token.
 */
typedef void (*feature_debug_fn)(void *ctx, enum feature_kind kind, const char *token,
                                 size_t token_len, unsigned distance, uint64_t hash);

/*
 * Computes the feature stream of m into *out, allocating from a. debug may be
 * NULL. Never fails.
 */
void features_extract(struct arena *a, const struct message *m, struct features *out,
                      feature_debug_fn debug, void *debug_ctx);

/* Options of features_extract_opts(). */
#define FEATURES_NO_PAIRS                                                                          \
    0x1u /* leave out the FEAT_OSB pairs: the stream filtered to words                             \
          * and metadata, in the same order (what Bayes reads), for a                              \
          * fifth of the work */
void features_extract_opts(struct arena *a, const struct message *m, struct features *out,
                           unsigned opts, feature_debug_fn debug, void *debug_ctx);

/* The hash a word token or metadata token string gets in the stream. */
uint64_t features_hash_token(const char *token, size_t len);
/* The hash of an OSB pair from the hashes of its two tokens and their distance (1..4). */
uint64_t features_hash_pair(uint64_t first, uint64_t second, unsigned distance);

#endif
