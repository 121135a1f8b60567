/*
 * milter_client - the MTA side of the milter protocol, for tests and benchmarks.
 *
 * It speaks like Postfix 3.7 with milter_protocol = 6: it offers every action and
 * protocol flag, then honours what the filter negotiated: a stage the filter
 * switched off (SMFIP_NO*) is not sent, and for a no-reply stage (SMFIP_NR_*) it does
 * not wait. Packets the filter need not answer are batched and sent with the next
 * one it must answer. All calls block for at most the timeout given at open.
 *
 * Errors: functions return 0, or -1 on a transport error, a timeout, or a protocol
 * violation by the filter, with the reason in err_msg() (core/log.h). After -1 the
 * connection should be freed.
 */
#ifndef MXW_TEST_MILTER_CLIENT_H
#define MXW_TEST_MILTER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What Postfix 3.7 offers: every SMFIF_* action and every SMFIP_* flag it knows. */
#define MILTER_CLIENT_ALL_ACTIONS  0x1ffu
#define MILTER_CLIENT_ALL_PROTOCOL 0x1fffffu

struct milter_client;

/* A reply to one stage. cmd 0: the stage was not sent (NO flag) or needs no reply (NR). */
struct milter_client_reply {
    char cmd;        /* 'c' 'a' 'r' 't' 'd' 'y' */
    char text[1024]; /* for 'y': "550 5.7.1 ..." */
};

/* One modification received at end of message. */
struct milter_client_mod {
    char cmd;       /* 'h' add, 'i' insert, 'm' change, 'q' quarantine, others as received */
    unsigned index; /* 'i' and 'm' */
    char *name;     /* header name, or the quarantine reason for 'q' */
    char *value;    /* header value ("" deletes for 'm'); NULL for 'q' */
};

/* The outcome of a message. Free with milter_client_result_free(). */
struct milter_client_result {
    struct milter_client_reply reply; /* the deciding reply (end of message, or earlier) */
    char stage;                       /* command letter that got it: 'M', 'R', 'L', 'E', ... */
    size_t rcpts_rejected;
    struct milter_client_mod *mods;
    size_t n_mods;
    const char *quarantine; /* the last 'q' reason (points into mods), or NULL */
};

struct milter_client_envelope {
    const char *queue_id;     /* sent as macro "i" at DATA and end of message; may be NULL */
    const char *auth_authen;  /* macro "{auth_authen}" at MAIL; may be NULL */
    const char *sender;       /* "<a@b>" */
    const char *const *rcpts; /* "<c@d>" each */
    size_t n_rcpts;
    const char *message; /* the raw message: headers, empty line, body (LF or CRLF) */
    size_t message_len;
};

/*
 * Connects to "unix:/path" or "inet:HOST:PORT" (TCP_NODELAY set). timeout_ms bounds
 * every later read and write. NULL with err_set() on failure.
 */
struct milter_client *milter_client_open(const char *address, int timeout_ms);
/*
 * Writes like Postfix's milter client: TCP_NODELAY off and one write per packet,
 * even for packets that need no reply (the pattern that meets delayed ACKs).
 */
void milter_client_postfix_writes(struct milter_client *c);
/* Closes and frees; NULL is a no-op. */
void milter_client_free(struct milter_client *c);

/* 'O': offers version 6 with actions/protocol; stores what the filter chose. */
int milter_client_negotiate(struct milter_client *c, uint32_t actions, uint32_t protocol);
uint32_t milter_client_filter_actions(const struct milter_client *c);
uint32_t milter_client_filter_protocol(const struct milter_client *c);

/* 'D': macros for stage (a command letter); pairs is name, value, name, value ... */
int milter_client_macros(struct milter_client *c, char stage, const char *const *pairs,
                         size_t n_pairs);
/* The stages; reply is filled (cmd 0 when no reply was due). */
int milter_client_connect(struct milter_client *c, const char *host, char family, const char *addr,
                          unsigned port, struct milter_client_reply *reply);
int milter_client_helo(struct milter_client *c, const char *name,
                       struct milter_client_reply *reply);
int milter_client_mail(struct milter_client *c, const char *const *args, size_t n_args,
                       struct milter_client_reply *reply);
int milter_client_rcpt(struct milter_client *c, const char *const *args, size_t n_args,
                       struct milter_client_reply *reply);
int milter_client_data(struct milter_client *c, struct milter_client_reply *reply);
int milter_client_header(struct milter_client *c, const char *name, const char *value,
                         struct milter_client_reply *reply);
int milter_client_eoh(struct milter_client *c, struct milter_client_reply *reply);
int milter_client_body(struct milter_client *c, const void *data, size_t len,
                       struct milter_client_reply *reply);
/* 'E': collects the modifications and the final reply into res (initialised here). */
int milter_client_eom(struct milter_client *c, struct milter_client_result *res);
/* 'A', 'K' and 'Q' (no replies). */
int milter_client_abort(struct milter_client *c);
int milter_client_quit_nc(struct milter_client *c);
int milter_client_quit(struct milter_client *c);

/*
 * A whole message: MAIL, every RCPT, DATA, the headers, EOH, the body in chunks of
 * 65,535 bytes, end of message. Stops at the first stage that does not continue
 * (a rejected recipient only counts, unless all are rejected) and then sends 'A' so
 * that the connection can carry the next message. res is initialised here.
 */
int milter_client_message(struct milter_client *c, const struct milter_client_envelope *env,
                          struct milter_client_result *res);
void milter_client_result_free(struct milter_client_result *res);

/* Raw access for malformed-input tests. */
int milter_client_send_raw(struct milter_client *c, const void *bytes, size_t len);
/* Ends our side of the stream (shutdown SHUT_WR): the filter sees EOF. */
int milter_client_end_input(struct milter_client *c);
/* True if the filter closes the connection within timeout_ms (input before EOF is skipped). */
bool milter_client_wait_closed(struct milter_client *c, int timeout_ms);

#endif
