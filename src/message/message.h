/*
 * message - the parsed model of one mail message, built on GMime 3.
 *
 * message_parse() never refuses input: any byte string gives a message. What
 * could not be understood is recorded in flags (MSG_F_*, PART_F_*) so that the
 * checks can score it (MIME_BAD) rather than the parser failing. Headers are
 * RFC 2047-decoded to UTF-8; every text part is transfer-decoded and converted
 * to UTF-8 (a declared charset that the bytes contradict is replaced by a
 * better guess, and flagged); HTML parts are reduced to visible text, hidden
 * text and links (html.h); URLs from text and HTML are parsed and normalised
 * (url.h).
 *
 * Bounds keep hostile input cheap: at most MSG_MAX_PARTS parts and
 * MSG_MAX_DEPTH levels of nesting are modelled, at most MSG_MAX_TEXT_BYTES of
 * decoded text per part is kept, and attachments are never decoded beyond what
 * type sniffing needs.
 *
 * Everything reachable from struct message is owned by the message and freed
 * by message_free(). A message is immutable after parsing and may be read by
 * several threads.
 */
#ifndef MXW_MESSAGE_H
#define MXW_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "message/url.h"

struct arena;

#define MSG_MAX_PARTS      1000
#define MSG_MAX_DEPTH      64
#define MSG_MAX_TEXT_BYTES (2u * 1024 * 1024) /* decoded text kept per part */
#define MSG_MAX_URLS       2000
#define MSG_MAX_HOPS       50

/* What the MTA told us; every field is optional (NULL / 0). */
struct envelope {
    const char *mail_from;    /* envelope sender, without <> */
    const char *const *rcpt;  /* envelope recipients */
    size_t n_rcpt;
    const char *client_ip;
    const char *helo;
    const char *queue_id;
    long long arrival_unix;   /* when the message arrived (Unix seconds); 0: now */
};

struct msg_header {
    const char *name;  /* as written */
    const char *value; /* unfolded, RFC 2047 decoded, valid UTF-8 */
    const char *raw;   /* unfolded raw value, valid UTF-8 (8-bit bytes repaired) */
};

#define PART_F_BAD_BASE64      0x0001u /* invalid characters or length in base64 */
#define PART_F_BAD_QP          0x0002u /* malformed =XX escapes in quoted-printable */
#define PART_F_BAD_ENCODING    0x0004u /* unknown Content-Transfer-Encoding */
#define PART_F_CHARSET_WRONG   0x0008u /* declared charset contradicted by the bytes; guessed */
#define PART_F_CHARSET_UNKNOWN 0x0010u /* charset not known to iconv; guessed */
#define PART_F_TRUNCATED       0x0020u /* text beyond MSG_MAX_TEXT_BYTES dropped */
#define PART_F_NO_BOUNDARY     0x0040u /* multipart without a usable boundary */
#define PART_F_8BIT_IN_7BIT    0x0080u /* 8-bit bytes in a part declared 7bit */

struct msg_part {
    int parent;              /* index of the enclosing multipart/message part, -1 for the root */
    int depth;               /* 0 for the root */
    const char *type;        /* lowercase "text/plain"; "text/plain" when absent */
    const char *charset;     /* declared charset, lowercase, or NULL */
    const char *encoding;    /* lowercase Content-Transfer-Encoding, or NULL */
    const char *disposition; /* lowercase "inline" / "attachment", or NULL */
    const char *filename;    /* UTF-8 file name, or NULL */
    const char *sniffed_type; /* type from the first bytes (leaves only), or NULL if unknown */
    size_t encoded_bytes;    /* size of the part's body as transmitted */
    size_t size_bytes;       /* decoded size (estimated for undecoded attachments) */
    bool is_multipart;       /* a container: multipart/x or message/rfc822 */
    bool is_attachment;      /* a leaf that is not body text */
    int text_index;          /* index into message.texts, or -1 */
    unsigned flags;          /* PART_F_* */
};

struct msg_text {
    int part;          /* index into message.parts */
    bool is_html;      /* came from text/html (text is the visible text) */
    const char *text;  /* UTF-8, valid; for HTML the visible text */
    size_t len;
    const char *source; /* decoded and converted to UTF-8 but not rendered: for HTML the
                           markup; for plain text the same pointer as text */
    size_t source_len;
    const char *hidden; /* HTML only: text a reader would not see; "" otherwise */
    size_t hidden_len;
    size_t hidden_chars;
    unsigned html_flags; /* HTML_F_* for HTML parts */
};

/* One Received: header, newest first as in the message. */
struct msg_hop {
    const char *from_helo; /* the name after "from", or NULL */
    const char *from_rdns; /* reverse DNS name in the parenthesis, or NULL */
    const char *ip;        /* the sending IP address (v4 or v6), or NULL */
    const char *by;        /* the receiving host after "by", or NULL */
};

#define MSG_F_NO_HEADERS     0x0001u /* no header block at all */
#define MSG_F_BAD_HEADERS    0x0002u /* invalid header lines, 8-bit headers, bad RFC 2047 */
#define MSG_F_MIME_BAD       0x0004u /* some part is broken (see parts[].flags) or the tree is */
#define MSG_F_TRUNCATED      0x0008u /* unterminated multipart or truncated message */
#define MSG_F_TOO_MANY_PARTS 0x0010u /* parts beyond MSG_MAX_PARTS not modelled */
#define MSG_F_TOO_DEEP       0x0020u /* nesting beyond MSG_MAX_DEPTH not modelled */
#define MSG_F_HTML_ONLY      0x0040u /* has HTML text and no plain text alternative */
#define MSG_F_NUL_BYTES      0x0080u /* the raw message contains NUL bytes */
#define MSG_F_BARE_LINE_ENDS 0x0100u /* bare CR or bare LF line ends mixed with CRLF */
#define MSG_F_8BIT_HEADERS   0x0200u /* raw 8-bit bytes in headers */

struct message {
    struct arena *arena;   /* owns everything below */
    size_t raw_size;       /* bytes of the raw message */
    unsigned flags;        /* MSG_F_* */

    bool gmime_tree; /* GMime built the tree; false for a single part with a plain
                        header block, which message_parse() reads itself */

    struct msg_header *headers; /* top-level headers, in order */
    size_t n_headers;

    const char *subject;      /* decoded, or NULL */
    const char *from;         /* decoded From: as written, or NULL */
    const char *from_name;    /* display name of the first From: mailbox, or NULL */
    const char *from_addr;    /* address of the first From: mailbox, lowercase domain, or NULL */
    const char *from_domain;  /* lowercase ASCII domain of from_addr, or NULL */
    const char *reply_to_addr;
    const char *message_id;
    const char *date;         /* raw Date: value, or NULL */
    long long date_unix;      /* parsed Date:, or 0 if absent/invalid */

    struct msg_part *parts;   /* the MIME tree in depth-first order; parts[0] is the root */
    size_t n_parts;
    struct msg_text *texts;   /* body text parts in document order */
    size_t n_texts;
    struct url *urls;         /* unique by normalised form, document order */
    size_t n_urls;
    struct msg_hop *hops;     /* parsed Received: headers, newest first */
    size_t n_hops;
    size_t n_received;        /* Received: headers present (n_hops may be capped) */

    struct envelope env;      /* copied from the caller, strings owned by the message */
    const char *env_from_domain; /* lowercase domain of env.mail_from, or NULL */
};

/* Process-wide set-up of GMime, libxml2 and the URL tables. Call once before threads start. */
void message_library_init(void);
/* Releases what message_library_init() set up (for leak-free test runs). */
void message_library_shutdown(void);

/*
 * Parses the raw message data[0..len) (which need not be NUL-terminated, and
 * may contain anything). The data is copied as needed; the caller keeps
 * ownership of data. env may be NULL. Never returns NULL. Free with
 * message_free().
 */
struct message *message_parse(const char *data, size_t len, const struct envelope *env);

/* Options of message_parse_opts(). */
#define MSG_PARSE_GMIME                                                                            \
    0x1u /* let GMime build every tree, even a plain single part: the                              \
          * tests compare the two ways over the same input */
struct message *message_parse_opts(const char *data, size_t len, const struct envelope *env,
                                   unsigned opts);
void message_free(struct message *m);

/* True if the message has at least one header that mail carries (From, Date,
 * Subject, Message-ID, Received, ...): a file without any is not mail. */
bool message_is_mail(const struct message *m);

/* The decoded value of the first header called name (case-insensitive), or NULL. */
const char *message_header(const struct message *m, const char *name);
/* How many headers called name the message has. */
size_t message_header_count(const struct message *m, const char *name);

#endif
