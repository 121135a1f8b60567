/*
 * utf8 - validation and repair of UTF-8. See utf8.h.
 */
#include "core/utf8.h"
#include "core/buf.h"

#include <string.h>

size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n, i;
    uint32_t cp;

    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07;
    else return 0;
    if (avail < n) return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        size_t n;
        if (*p < 0x80) {
            p++;
            continue;
        }
        n = utf8_seq_len(p, (size_t)(end - p));
        if (n == 0) return false;
        p += n;
    }
    return true;
}

size_t utf8_repair(struct buf *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;
    size_t replaced = 0;

    buf_reserve(out, len);
    while (p < end) {
        size_t n;
        if (*p >= 0x20 && *p < 0x80) {
            p++;
            continue;
        }
        if (*p < 0x80) {
            if (*p != 0) {
                p++;
                continue;
            }
            n = 0;
        } else {
            n = utf8_seq_len(p, (size_t)(end - p));
        }
        if (n > 0) {
            p += n;
            continue;
        }
        buf_append(out, run, (size_t)(p - run));
        if (*p == 0) buf_append_char(out, ' ');
        else buf_append(out, "\xEF\xBF\xBD", 3);
        replaced++;
        p++;
        run = p;
    }
    buf_append(out, run, (size_t)(p - run));
    return replaced;
}

void utf8_append_codepoint(struct buf *out, uint32_t cp)
{
    char tmp[4];
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
    if (cp < 0x80) {
        tmp[0] = (char)cp;
        buf_append(out, tmp, 1);
    } else if (cp < 0x800) {
        tmp[0] = (char)(0xC0 | (cp >> 6));
        tmp[1] = (char)(0x80 | (cp & 0x3F));
        buf_append(out, tmp, 2);
    } else if (cp < 0x10000) {
        tmp[0] = (char)(0xE0 | (cp >> 12));
        tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        tmp[2] = (char)(0x80 | (cp & 0x3F));
        buf_append(out, tmp, 3);
    } else {
        tmp[0] = (char)(0xF0 | (cp >> 18));
        tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        tmp[3] = (char)(0x80 | (cp & 0x3F));
        buf_append(out, tmp, 4);
    }
}
