/*
 * tokenize - the word tokens of a UTF-8 text, as the feature stream sees them.
 *
 * A token is a normalised string (normalize.h) ready to be hashed:
 *
 *   TOKEN_WORD      "hello", "straße" -> "strasse", "日" (one token per CJK character)
 *   TOKEN_NUMBER    "2024" as it is (2..4 digits), "num:6" for "123456" (a run of
 *                   digits, after NFKC; single digits are dropped)
 *   TOKEN_LONGWORD  "longword:abc:64" for a word of 33..64 code points starting "abc"
 *   TOKEN_URL       "url:example.com" for "https://www.example.com/x?y"
 *   TOKEN_EMAIL     "email:example.com" for "john@example.com"
 *
 * Words are maximal runs of letters, digits and marks (plus symbols whose
 * compatibility form is a letter or digit, such as circled letters, and
 * format characters such as zero-width space inside a run). URL and e-mail
 * spans are recognised before words are cut, so that a URL gives one token
 * for its domain instead of a dozen path fragments. docs/features.md defines
 * every rule exactly; this module is its reference implementation, so any
 * change here changes the feature stream (FEATURE_STREAM_VERSION).
 *
 * Cost: one pass over the text. ASCII words are lowercased straight from the
 * input; only runs with non-ASCII bytes go through utf8proc. Token strings are
 * built in scratch buffers owned by the tokenizer and reused, so tokenizing
 * allocates nothing once the buffers have grown to the longest run seen.
 * Recognising e-mail addresses never rescans a byte run twice, so hostile
 * input ("a.a.a.a..." for a megabyte) stays linear.
 *
 * A zeroed struct tokenizer is ready for use (set url_domain if wanted);
 * tokenizer_free() releases its scratch. One tokenizer per thread.
 */
#ifndef MXW_TOKENIZE_H
#define MXW_TOKENIZE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "text/normalize.h"

#define TOKEN_MIN_CPS          2  /* shorter words and numbers are dropped (not CJK) */
/* Numbers up to this many digits stay literal: prices, percentages and years
 * carry meaning ("100", "50"), longer ones are mostly serials and phone numbers.
 * Measured on bench/accuracy: shapes for every number cost 0.003 % of 1-AUC. */
#define TOKEN_NUMBER_LITERAL_MAX 4
#define TOKEN_MAX_CPS          32 /* longer words become "longword:" shapes */
#define TOKEN_SHAPE_PREFIX_CPS 3  /* code points of a long word kept in its shape */

enum token_kind {
    TOKEN_WORD,
    TOKEN_NUMBER,
    TOKEN_LONGWORD,
    TOKEN_URL,
    TOKEN_EMAIL,
};

struct token {
    enum token_kind kind;
    const char *text; /* the normalised token, not NUL-terminated; valid during the callback */
    size_t len;
};

/*
 * Called for each token in order. Return false to stop tokenizing. The
 * callback must not use the same tokenizer (its scratch holds tok->text).
 */
typedef bool (*token_fn)(void *ctx, const struct token *tok);

/*
 * Maps a URL host found in text (normalised: NFKC-casefolded, trailing dots
 * removed) to the domain its "url:" token names. Returns NULL when it does
 * not know the host; the tokenizer then uses the host itself, minus a
 * leading "www." label. The returned string must stay valid until the next
 * call and need not be NUL-terminated (its length goes in *domain_len).
 */
typedef const char *(*token_domain_fn)(void *ctx, const char *host, size_t host_len,
                                       size_t *domain_len);

struct tokenizer {
    token_domain_fn url_domain; /* optional, set by the caller */
    void *url_domain_ctx;

    /* Scratch, owned, reused from call to call. */
    struct normalizer norm;
    struct buf span;  /* a normalised non-ASCII run */
    struct buf token; /* the token being built */
    struct buf host;  /* a normalised URL host */

    /* State of the current tokenize() call. */
    token_fn fn;
    void *ctx;
    size_t n_tokens;
    bool stopped;
};

/* Frees the scratch of t; t may be reused afterwards (url_domain is kept). */
void tokenizer_free(struct tokenizer *t);

/*
 * Calls fn(ctx, token) for each token of text[0..len), in order, until fn
 * returns false. text need not be NUL-terminated and should be valid UTF-8
 * (invalid bytes separate words). Returns the number of tokens passed to fn.
 */
size_t tokenize(struct tokenizer *t, const char *text, size_t len, token_fn fn, void *ctx);

/*
 * If s[0..len) starts with a URL as the tokenizer recognises it in text
 * ("http://", "https://", "ftp://" or "www."), sets *host to its normalised
 * host (in t's scratch, valid until t is used again) and returns true.
 * Lets callers key URLs the same way text does.
 */
bool tokenizer_url_host(struct tokenizer *t, const char *s, size_t len, const char **host,
                        size_t *host_len);

#endif
