/*
 * decode - Content-Transfer-Encoding decoders that report damage.
 *
 * GMime's own decoders silently skip what they do not understand; we decode
 * ourselves so that broken base64 or quoted-printable becomes a flag the
 * checks can score (MIME_BAD), and so that decoding can stop once enough
 * output exists (text parts are capped, attachments only need a few bytes
 * for type sniffing). Decoding never fails: damaged input decodes as well as
 * it can.
 */
#ifndef MXW_DECODE_H
#define MXW_DECODE_H

#include <stddef.h>

struct buf;

#define DECODE_F_BAD       0x1u /* invalid characters, bad escapes or bad length */
#define DECODE_F_TRUNCATED 0x2u /* stopped at max_out bytes of output */

/*
 * Decodes base64 in[0..len) and appends at most max_out bytes to out.
 * Whitespace is skipped; other characters outside the alphabet, data after
 * padding, or a length that is not a whole number of quanta set DECODE_F_BAD.
 * Returns DECODE_F_* flags.
 */
unsigned decode_base64(struct buf *out, const char *in, size_t len, size_t max_out);

/* Quoted-printable (RFC 2045): soft line breaks removed, =XX decoded; a
 * malformed escape is kept literally and sets DECODE_F_BAD. */
unsigned decode_qp(struct buf *out, const char *in, size_t len, size_t max_out);

/* The decoded size of base64 in[0..len), counting alphabet characters only;
 * sets *flags (DECODE_F_BAD) if the data is damaged. One pass, no output. */
size_t decode_base64_size(const char *in, size_t len, unsigned *flags);

#endif
