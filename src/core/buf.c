/*
 * buf - growable NUL-terminated byte strings. See buf.h.
 */
#include "core/buf.h"
#include "core/utf8.h"
#include "core/xalloc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_reserve(struct buf *b, size_t extra_bytes)
{
    size_t need = b->len + extra_bytes + 1;
    size_t cap;

    if (need <= b->cap) return;
    cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
    b->data[b->len] = '\0'; /* a reserved empty buffer is still a valid string */
}

void buf_append(struct buf *b, const void *data, size_t len)
{
    if (b->limit_bytes && b->len + len > b->limit_bytes) {
        b->truncated = true;
        len = b->limit_bytes > b->len ? b->limit_bytes - b->len : 0;
    }
    buf_reserve(b, len);
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void buf_append_str(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_append_char(struct buf *b, char c)
{
    if (b->len + 1 < b->cap && (!b->limit_bytes || b->len < b->limit_bytes)) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
        return;
    }
    buf_append(b, &c, 1);
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->limit_bytes == 0) {
        /* Format straight into the free space; only a text that did not fit is formatted
         * again (below). */
        size_t room;
        buf_reserve(b, 63);
        room = b->cap - b->len;
        va_start(ap, fmt);
        n = vsnprintf(b->data + b->len, room, fmt, ap);
        va_end(ap);
        if (n < 0) n = 0;
        if ((size_t)n < room) {
            b->len += (size_t)n;
            b->data[b->len] = '\0';
            return;
        }
    } else {
        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n <= 0) return;
    }
    if (b->limit_bytes && b->len + (size_t)n > b->limit_bytes) {
        char *tmp = xmalloc((size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(tmp, (size_t)n + 1, fmt, ap);
        va_end(ap);
        buf_append(b, tmp, (size_t)n);
        free(tmp);
        return;
    }
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void buf_append_json_string(struct buf *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;

    buf_reserve(b, len + 2);
    buf_append_char(b, '"');
    while (p < end) {
        unsigned char c = *p;
        size_t n;
        if (c == '"' || c == '\\') {
            buf_append_char(b, '\\');
            buf_append_char(b, (char)c);
            p++;
        } else if (c < 0x20 || c == 0x7F) {
            switch (c) {
            case '\n': buf_append(b, "\\n", 2); break;
            case '\r': buf_append(b, "\\r", 2); break;
            case '\t': buf_append(b, "\\t", 2); break;
            default: buf_printf(b, "\\u%04x", c); break;
            }
            p++;
        } else if (c < 0x80) {
            buf_append_char(b, (char)c);
            p++;
        } else if ((n = utf8_seq_len(p, (size_t)(end - p))) > 0) {
            buf_append(b, p, n);
            p += n;
        } else {
            buf_append(b, "\xEF\xBF\xBD", 3);
            p++;
        }
    }
    buf_append_char(b, '"');
}

void buf_clear(struct buf *b)
{
    b->len = 0;
    b->truncated = false;
    if (b->data) b->data[0] = '\0';
}

char *buf_release(struct buf *b)
{
    char *d = b->data ? b->data : xstrdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    b->truncated = false;
    return d;
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->truncated = false;
}
