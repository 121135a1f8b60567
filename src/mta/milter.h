/*
 * milter - the Sendmail/Postfix milter protocol (version 6), our own implementation.
 *
 * Three layers, each usable alone:
 *   1. the codec: milter_decoder splits a byte stream into packets (4-byte big-endian
 *      length, one command byte, data); milter_packet_append() writes one. Packets
 *      longer than MILTER_MAX_PACKET_BYTES, or of length 0, are errors, never crashes.
 *   2. the session: the filter side of one MTA connection as a state machine.
 *      milter_session_feed() takes bytes as they arrive, runs the application's
 *      callbacks and appends the replies to an output buffer that the caller writes
 *      once (one write per reply batch: no Nagle stalls, no small writes).
 *   3. the server: a listener (unix socket or TCP) and a fixed pool of worker threads
 *      waiting together on one epoll set; a connection with input is served by one
 *      worker at a time, so N workers serve any number of connections and no thread
 *      is created per connection or message. The caller of milter_server_run only
 *      watches timeouts and the stop flag.
 *
 * Negotiation: the filter answers the MTA's 'O' with the actions it may take
 * (ADDHDRS, CHGHDRS, INSHDR-capable ADDHDRS, QUARANTINE) and with SMFIP_NO* for every
 * stage whose callback is NULL (the MTA does not send them at all) and SMFIP_NR_* for
 * the stages listed in callbacks.no_reply_stages (the MTA does not wait for a reply).
 * A no-reply stage whose callback nevertheless returns a verdict other than continue
 * is not lost: the verdict is held and given at the next stage the MTA waits for
 * (for a header or body callback, at end of message).
 *
 * Failure policy (DESIGN.md: mail is never lost): a callback that returns
 * MILTER_ERROR, an invalid reply text, or any internal error answers
 * "451 4.3.0 ..." (tempfail); nothing is accepted by accident. Malformed input from
 * the MTA closes that connection only (the MTA then applies milter_default_action).
 * Reply texts are sanitised: control characters (CR, LF, ...) become spaces and '%'
 * is doubled (Postfix un-doubles it), so a reply cannot inject protocol lines.
 *
 * Threads: the callbacks of one session are called by one thread at a time, but
 * different sessions run concurrently on different workers.
 */
#ifndef MXW_MILTER_H
#define MXW_MILTER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

/* ---- protocol constants (the numbers libmilter's mfdef.h and Postfix's milter8.c use) ---- */

#define MILTER_PROTOCOL_VERSION 6
#define MILTER_MAX_PACKET_BYTES (64u * 1024 * 1024)
#define MILTER_BODY_CHUNK_BYTES 65535u

/* MTA -> filter commands */
#define MILTER_CMD_ABORT   'A'
#define MILTER_CMD_BODY    'B'
#define MILTER_CMD_CONNECT 'C'
#define MILTER_CMD_BODYEOB 'E'
#define MILTER_CMD_HELO    'H'
#define MILTER_CMD_QUIT_NC 'K'
#define MILTER_CMD_HEADER  'L'
#define MILTER_CMD_MAIL    'M'
#define MILTER_CMD_EOH     'N'
#define MILTER_CMD_OPTNEG  'O'
#define MILTER_CMD_QUIT    'Q'
#define MILTER_CMD_RCPT    'R'
#define MILTER_CMD_DATA    'T'
#define MILTER_CMD_UNKNOWN 'U'
#define MILTER_CMD_MACRO   'D'

/* filter -> MTA replies and modification actions */
#define MILTER_RESP_ADDRCPT    '+'
#define MILTER_RESP_DELRCPT    '-'
#define MILTER_RESP_ACCEPT     'a'
#define MILTER_RESP_REPLBODY   'b'
#define MILTER_RESP_CONTINUE   'c'
#define MILTER_RESP_DISCARD    'd'
#define MILTER_RESP_CHGFROM    'e'
#define MILTER_RESP_ADDHEADER  'h'
#define MILTER_RESP_INSHEADER  'i'
#define MILTER_RESP_CHGHEADER  'm'
#define MILTER_RESP_PROGRESS   'p'
#define MILTER_RESP_QUARANTINE 'q'
#define MILTER_RESP_REJECT     'r'
#define MILTER_RESP_SKIP       's'
#define MILTER_RESP_TEMPFAIL   't'
#define MILTER_RESP_REPLYCODE  'y'
#define MILTER_RESP_OPTNEG     'O'

/* action flags (SMFIF_*) */
#define MILTER_ACT_ADDHDRS    0x01u
#define MILTER_ACT_CHGBODY    0x02u
#define MILTER_ACT_ADDRCPT    0x04u
#define MILTER_ACT_DELRCPT    0x08u
#define MILTER_ACT_CHGHDRS    0x10u
#define MILTER_ACT_QUARANTINE 0x20u
#define MILTER_ACT_CHGFROM    0x40u

/* protocol flags (SMFIP_*) */
#define MILTER_P_NOCONNECT   0x01u
#define MILTER_P_NOHELO      0x02u
#define MILTER_P_NOMAIL      0x04u
#define MILTER_P_NORCPT      0x08u
#define MILTER_P_NOBODY      0x10u
#define MILTER_P_NOHDRS      0x20u
#define MILTER_P_NOEOH       0x40u
#define MILTER_P_NR_HDR      0x80u
#define MILTER_P_NOUNKNOWN   0x100u
#define MILTER_P_NODATA      0x200u
#define MILTER_P_SKIP        0x400u
#define MILTER_P_RCPT_REJ    0x800u
#define MILTER_P_NR_CONN     0x1000u
#define MILTER_P_NR_HELO     0x2000u
#define MILTER_P_NR_MAIL     0x4000u
#define MILTER_P_NR_RCPT     0x8000u
#define MILTER_P_NR_DATA     0x10000u
#define MILTER_P_NR_UNKN     0x20000u
#define MILTER_P_NR_EOH      0x40000u
#define MILTER_P_NR_BODY     0x80000u
#define MILTER_P_HDR_LEADSPC 0x100000u

/* ---- codec ---- */

struct milter_packet {
    char cmd;
    const char *data; /* points into the decoder; valid until the next feed/next call */
    size_t len;       /* bytes after the command byte */
};

/* A zeroed struct is not ready: call milter_decoder_init(). */
struct milter_decoder {
    char *data;
    size_t start, len, cap; /* unread bytes are data[start .. start+len) */
    size_t max_packet_bytes;
    bool failed;
};

/* max_packet_bytes 0: MILTER_MAX_PACKET_BYTES. */
void milter_decoder_init(struct milter_decoder *d, size_t max_packet_bytes);
/* Frees the decoder's buffer; the struct may be initialised again. */
void milter_decoder_free(struct milter_decoder *d);
/* Appends n bytes of input (copied). Packets already returned become invalid. */
void milter_decoder_feed(struct milter_decoder *d, const void *bytes, size_t n);
/*
 * The next complete packet into *p: 1; 0 if more input is needed; -1 on a malformed
 * stream (length 0 or above the limit), with err_set(). After -1 the decoder stays
 * failed: the connection must be dropped, the stream cannot be resynchronised.
 */
int milter_decoder_next(struct milter_decoder *d, struct milter_packet *p);
/* Appends one packet (length, cmd, data) to out. */
void milter_packet_append(struct buf *out, char cmd, const void *data, size_t len);
/* Big-endian 32-bit helpers for packet bodies. */
void milter_put_u32(unsigned char out[4], uint32_t v);
uint32_t milter_get_u32(const void *in4);

/* ---- replies ---- */

enum milter_verdict {
    MILTER_CONTINUE = 0, /* go on ('c') */
    MILTER_ACCEPT,       /* accept the message/connection without further callbacks ('a') */
    MILTER_REJECT,       /* 5xx with the MTA's default text ('r') */
    MILTER_TEMPFAIL,     /* 4xx with the MTA's default text ('t') */
    MILTER_DISCARD,      /* accept and drop silently ('d') */
    MILTER_REPLY,        /* text is a full reply, "550 5.7.1 Sender blocked" ('y') */
    MILTER_ERROR,        /* the callback failed: the server answers 451 4.3.0 */
};

#define MILTER_REPLY_TEXT_MAX 512

struct milter_reply {
    enum milter_verdict verdict;
    char text[MILTER_REPLY_TEXT_MAX]; /* MILTER_REPLY: "4xx|5xx[ x.y.z] text"; else unused */
};

/* Convenience constructors. */
struct milter_reply milter_reply_of(enum milter_verdict verdict);
/*
 * MILTER_REPLY with code (e.g. "550"), enhanced status (e.g. "5.7.1", or NULL) and a
 * printf-formatted text, truncated to fit. The text is sanitised when it is sent.
 */
struct milter_reply milter_reply_code(const char *code, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- session and callbacks ---- */

/*
 * What the callbacks see of a connection. app is the pointer given to
 * milter_server_new() (or milter_session_new()); app_data belongs to the application
 * (set it in connect, free it in close). The rest of the session is private.
 */
struct milter_session {
    void *app;
    void *app_data;
};

/* Modifications at end of message; valid only during the eom callback. */
struct milter_actions;

enum milter_family {
    MILTER_FAMILY_UNKNOWN = 'U',
    MILTER_FAMILY_UNIX = 'L',
    MILTER_FAMILY_INET = '4',
    MILTER_FAMILY_INET6 = '6',
};

/* Stage bits for milter_callbacks.no_reply_stages. */
#define MILTER_STAGE_CONNECT (1u << 0)
#define MILTER_STAGE_HELO    (1u << 1)
#define MILTER_STAGE_MAIL    (1u << 2)
#define MILTER_STAGE_RCPT    (1u << 3)
#define MILTER_STAGE_DATA    (1u << 4)
#define MILTER_STAGE_HEADER  (1u << 5)
#define MILTER_STAGE_EOH     (1u << 6)
#define MILTER_STAGE_BODY    (1u << 7)
#define MILTER_STAGE_UNKNOWN (1u << 8)

/*
 * Every string argument is NUL-terminated and valid only during the call: copy what
 * you keep. A NULL stage callback means "not needed": the MTA is asked not to send
 * that stage (SMFIP_NO*), which is the cheapest path. abort and close may be NULL.
 */
struct milter_callbacks {
    /* family: enum milter_family; port 0 if unknown; addr "" if unknown. */
    struct milter_reply (*connect)(struct milter_session *s, const char *host, int family,
                                   const char *addr, unsigned port);
    struct milter_reply (*helo)(struct milter_session *s, const char *name);
    /* args[0] is the address as given ("<a@b>"), then ESMTP parameters ("SIZE=123"). */
    struct milter_reply (*mail)(struct milter_session *s, const char *const *args, size_t n_args);
    struct milter_reply (*rcpt)(struct milter_session *s, const char *const *args, size_t n_args);
    struct milter_reply (*data)(struct milter_session *s);
    /* value without the leading space after the colon; folded lines keep "\n\t". */
    struct milter_reply (*header)(struct milter_session *s, const char *name, const char *value);
    struct milter_reply (*eoh)(struct milter_session *s);
    struct milter_reply (*body)(struct milter_session *s, const unsigned char *chunk, size_t len);
    /* Always called at end of message (unless an earlier verdict is pending). */
    struct milter_reply (*eom)(struct milter_session *s, struct milter_actions *actions);
    struct milter_reply (*unknown)(struct milter_session *s, const char *command);
    /* The MTA abandoned the current message (SMTP RSET, or a reject elsewhere). */
    void (*abort)(struct milter_session *s);
    /* The connection ends (quit, error, timeout, shutdown); free app_data here. */
    void (*close)(struct milter_session *s);
    /* The server wrote this session's replies to the MTA: for work that must not delay them
     * (the MTA is already going on). May be NULL. */
    void (*replied)(struct milter_session *s);
    /* MILTER_STAGE_* bits whose callback only ever continues: negotiated as SMFIP_NR_*. */
    unsigned no_reply_stages;
    /* More such bits for this connection, asked at option negotiation (may be NULL): stages
     * whose callback cannot refuse anything with the application's current settings. A
     * verdict such a stage returns anyway is held and given at the next stage that replies. */
    unsigned (*no_reply_now)(struct milter_session *s);
};

/*
 * A session outside any server (the server uses these; so do tests and the fuzzer).
 * cb must outlive the session. Never NULL.
 */
struct milter_session *milter_session_new(const struct milter_callbacks *cb, void *app);
/* Calls the close callback, then frees everything. NULL is a no-op. */
void milter_session_free(struct milter_session *s);
/*
 * Feeds n bytes from the MTA: every complete packet is processed and the replies
 * are appended to out (which the caller writes, then clears). Returns 0 to go on,
 * 1 when the MTA said quit ('Q'), -1 when the connection must be closed (malformed
 * input; err_msg() says why; out may still hold replies to write first).
 */
int milter_session_feed(struct milter_session *s, const void *bytes, size_t n, struct buf *out);
/* Calls the replied callback, if any: a server calls it after writing what
 * milter_session_feed() put in out, whenever that was something. */
void milter_session_replied(struct milter_session *s);
/* True between MAIL and the end (or abort) of that message. */
bool milter_session_in_message(const struct milter_session *s);
/*
 * The latest value of macro name ("i", "{i}", "{auth_authen}", "auth_authen" are
 * all accepted), or NULL. Valid until the next callback of this session returns.
 * Message-level macros (from MAIL on) are forgotten at the next message or abort.
 */
const char *milter_macro(const struct milter_session *s, const char *name);

/*
 * End-of-message modifications, sent before the final reply and only if that reply
 * is continue or accept. name: a header field name (printable ASCII, no ':' or
 * space); value: line breaks other than folding ("\n" followed by space or tab) and
 * CRs are replaced, so a value cannot add header lines. Each returns 0, or -1 with
 * err_set() for an invalid name or an action the MTA did not allow.
 */
int milter_add_header(struct milter_actions *a, const char *name, const char *value);
/* Inserts at position index (0: first header). */
int milter_insert_header(struct milter_actions *a, unsigned index, const char *name,
                         const char *value);
/* Changes the index-th (1-based) occurrence of name; value "" deletes it. */
int milter_change_header(struct milter_actions *a, const char *name, unsigned index,
                         const char *value);
/* Puts the message on hold (Postfix: hold queue; Postfix drops the reason). */
int milter_quarantine(struct milter_actions *a, const char *reason);

/* ---- server ---- */

struct milter_server_config {
    /* "unix:/path/to.sock" (mode 0660, a stale socket is removed) or "inet:HOST:PORT"
       (HOST may be "[::1]"). */
    const char *listen;
    /* Group of the unix socket (Postfix's smtpd runs as "postfix" and needs the 0660
       socket to be in a group it belongs to); NULL: the process's group. */
    const char *unix_group;
    int workers;             /* worker threads; 0: 4 */
    int read_timeout_ms;     /* an idle connection is closed after this; 0: 7,210,000 */
    int shutdown_timeout_ms; /* how long milter_server_run waits for messages; 0: 10,000 */
};

struct milter_server;

/*
 * Binds and listens at once (so a caller may connect as soon as this returns).
 * cfg->listen is copied; cb and app must outlive the server. NULL with err_set() on
 * failure (bad address, address in use, a live server on the unix socket, unknown group).
 */
struct milter_server *milter_server_new(const struct milter_server_config *cfg,
                                        const struct milter_callbacks *cb, void *app);
/*
 * Serves until *stop becomes non-zero (checked at least every 100 ms), then closes
 * the listener, removes the unix socket, lets every message in progress finish (at
 * most shutdown_timeout_ms; after that the remaining connections are closed and the
 * MTA tempfails), and joins the workers. 0, or -1 with err_set() if it could not
 * start. Call at most once per server.
 */
int milter_server_run(struct milter_server *srv, volatile sig_atomic_t *stop);
/* The bound TCP port (useful with "inet:127.0.0.1:0"), or 0 for a unix socket. */
int milter_server_port(const struct milter_server *srv);
/* Frees the server (closing the listener and removing its socket if still there). */
void milter_server_free(struct milter_server *srv);

#endif
