/*
 * buf - a growable byte string, always NUL-terminated.
 *
 * A zeroed struct buf is an empty buffer ready for use. The buffer owns its
 * data until buf_release() hands it to the caller; buf_free() frees it.
 * Growth never fails (xalloc). Appending beyond limit_bytes (if set) is
 * silently truncated and sets truncated, so a hostile input cannot make a
 * buffer grow without bound.
 */
#ifndef MXW_BUF_H
#define MXW_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t limit_bytes; /* 0: unlimited */
    bool truncated;
};

void buf_reserve(struct buf *b, size_t extra_bytes);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_append_str(struct buf *b, const char *s);
void buf_append_char(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal, quotes included; invalid UTF-8 becomes U+FFFD. */
void buf_append_json_string(struct buf *b, const char *s, size_t len);
void buf_clear(struct buf *b);
/* Returns the data (caller frees; never NULL) and leaves b empty. */
char *buf_release(struct buf *b);
void buf_free(struct buf *b);

#endif
