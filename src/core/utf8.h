/*
 * utf8 - validation and repair of UTF-8 byte strings.
 *
 * Everything mxwarden keeps as text is valid UTF-8: decoders call
 * utf8_repair() on whatever a message claims to be, so later stages never
 * meet a broken sequence.
 */
#ifndef MXW_UTF8_H
#define MXW_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

/* Length (1..4) of the valid UTF-8 sequence at s, or 0 if it is not valid. */
size_t utf8_seq_len(const unsigned char *s, size_t avail);
/* True if all len bytes are valid UTF-8 (NUL bytes count as valid). */
bool utf8_valid(const char *s, size_t len);
/* Appends s to out with each invalid byte replaced by U+FFFD and NUL by a space.
 * Returns the number of bytes replaced. */
size_t utf8_repair(struct buf *out, const char *s, size_t len);
/* Appends the UTF-8 encoding of code point cp (invalid ones become U+FFFD). */
void utf8_append_codepoint(struct buf *out, uint32_t cp);

#endif
