/*
 * decode - base64 and quoted-printable decoders that report damage.
 */
#include "message/decode.h"
#include "core/buf.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* 0..63 for the alphabet, 64 for '=', 65 for whitespace, 66 for anything else. */
enum { B64_PAD = 64, B64_SPACE = 65, B64_BAD = 66 };
static uint8_t base64_value[256];
static pthread_once_t base64_once = PTHREAD_ONCE_INIT;

static void decode_base64_table(void)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int i;

    for (i = 0; i < 256; i++) base64_value[i] = B64_BAD;
    for (i = 0; i < 64; i++) base64_value[(unsigned char)alphabet[i]] = (uint8_t)i;
    base64_value['='] = B64_PAD;
    base64_value[' '] = base64_value['\t'] = base64_value['\r'] = B64_SPACE;
    base64_value['\n'] = base64_value['\f'] = base64_value['\v'] = B64_SPACE;
}

static inline const uint8_t *base64_table(void)
{
    pthread_once(&base64_once, decode_base64_table);
    return base64_value;
}

unsigned decode_base64(struct buf *out, const char *in, size_t len, size_t max_out)
{
    const uint8_t *t = base64_table();
    const unsigned char *p = (const unsigned char *)in, *end = p + len;
    unsigned flags = 0;
    uint32_t acc = 0;
    int nbits = 0, pad = 0;
    size_t start_len = out->len;
    unsigned char chunk[768];
    size_t n = 0;

    buf_reserve(out, len / 4 * 3 < max_out ? len / 4 * 3 : max_out);
    for (; p < end; p++) {
        uint8_t v = t[*p];
        if (v < 64) {
            if (pad) {
                /* Data after padding: a second encoded body glued on, or garbage. */
                flags |= DECODE_F_BAD;
                pad = 0;
                acc = 0;
                nbits = 0;
            }
            acc = (acc << 6) | v;
            nbits += 6;
            if (nbits >= 8) {
                nbits -= 8;
                chunk[n++] = (unsigned char)(acc >> nbits);
                acc &= (1u << nbits) - 1;
                if (n == sizeof chunk) {
                    if (out->len - start_len + n > max_out) break;
                    buf_append(out, chunk, n);
                    n = 0;
                }
            }
        } else if (v == B64_PAD) {
            pad++;
        } else if (v == B64_BAD) {
            flags |= DECODE_F_BAD;
        }
    }
    if (out->len - start_len + n > max_out) {
        n = max_out - (out->len - start_len);
        flags |= DECODE_F_TRUNCATED;
    }
    buf_append(out, chunk, n);
    /* Leftover bits beyond what padding explains mean a cut-off quantum. */
    if (p == end && nbits >= 6) flags |= DECODE_F_BAD;
    return flags;
}

size_t decode_base64_size(const char *in, size_t len, unsigned *flags)
{
    const uint8_t *t = base64_table();
    const unsigned char *p = (const unsigned char *)in, *end = p + len;
    size_t chars = 0;
    int pad = 0;

    for (; p < end; p++) {
        uint8_t v = t[*p];
        if (v < 64) {
            if (pad) *flags |= DECODE_F_BAD;
            chars++;
        } else if (v == B64_PAD) {
            pad = 1;
        } else if (v == B64_BAD) {
            *flags |= DECODE_F_BAD;
        }
    }
    if (chars % 4 == 1) *flags |= DECODE_F_BAD;
    return chars / 4 * 3 + (chars % 4 ? chars % 4 - 1 : 0);
}

static inline int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

unsigned decode_qp(struct buf *out, const char *in, size_t len, size_t max_out)
{
    const char *p = in, *end = in + len;
    size_t start_len = out->len;
    unsigned flags = 0;

    buf_reserve(out, len < max_out ? len : max_out);
    while (p < end) {
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *stop = eq ? eq : end;
        size_t run = (size_t)(stop - p);

        if (out->len - start_len + run > max_out) {
            buf_append(out, p, max_out - (out->len - start_len));
            return flags | DECODE_F_TRUNCATED;
        }
        buf_append(out, p, run);
        if (eq == NULL) break;
        p = eq + 1;
        if (p < end && (*p == '\r' || *p == '\n')) {
            /* Soft line break. */
            if (*p == '\r') p++;
            if (p < end && *p == '\n') p++;
            continue;
        }
        {
            /* Trailing whitespace before a soft break is allowed: "=  \r\n". */
            const char *q = p;
            while (q < end && (*q == ' ' || *q == '\t')) q++;
            if (q > p && (q == end || *q == '\r' || *q == '\n')) {
                if (q < end && *q == '\r') q++;
                if (q < end && *q == '\n') q++;
                p = q;
                continue;
            }
        }
        if (end - p >= 2 && hex_value((unsigned char)p[0]) >= 0 &&
            hex_value((unsigned char)p[1]) >= 0) {
            buf_append_char(out, (char)(hex_value((unsigned char)p[0]) * 16 +
                                        hex_value((unsigned char)p[1])));
            p += 2;
        } else {
            if (p < end) flags |= DECODE_F_BAD; /* a bare '=' at the very end is tolerated */
            buf_append_char(out, '=');
        }
        if (out->len - start_len >= max_out) {
            if (p < end) flags |= DECODE_F_TRUNCATED;
            break;
        }
    }
    return flags;
}
