/*
 * fuzz_milter - libFuzzer target for the milter codec and session (src/mta/milter.c).
 *
 * The first input byte picks a configuration: which callbacks exist (all, or none,
 * so every SMFIP_NO* path is taken), which stages are negotiated as no-reply, whether
 * a valid option negotiation is prepended (so the fuzzer reaches the stages without
 * having to discover 'O' first), and how the rest is cut into reads. The callbacks
 * read macros and, at end of message, add, change and insert headers and quarantine
 * with values taken from the input. Checked: no crash or leak, -1 always comes with
 * a reason, and whatever the session writes decodes as well-formed reply packets.
 */
#include "core/buf.h"
#include "core/log.h"
#include "mta/milter.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static char last_value[256];

static void remember(const char *s)
{
    strncpy(last_value, s, sizeof last_value - 1);
    last_value[sizeof last_value - 1] = '\0';
}

static struct milter_reply verdict_of(const char *s)
{
    /* let the input choose a verdict now and then, including bad reply texts */
    switch (s[0] ? (unsigned char)s[strlen(s) - 1] % 11 : 0) {
    case 1:
        return milter_reply_of(MILTER_REJECT);
    case 2:
        return milter_reply_of(MILTER_TEMPFAIL);
    case 3:
        return milter_reply_of(MILTER_ERROR);
    case 4:
        return milter_reply_code("550", "5.7.1", "%s", s);
    case 5:
        return milter_reply_code(s, NULL, "x");
    default:
        return milter_reply_of(MILTER_CONTINUE);
    }
}

static struct milter_reply f_connect(struct milter_session *s, const char *host, int family,
                                     const char *addr, unsigned port)
{
    (void)s;
    (void)family;
    (void)port;
    remember(addr);
    return verdict_of(host);
}

static struct milter_reply f_helo(struct milter_session *s, const char *name)
{
    (void)s;
    return verdict_of(name);
}

static struct milter_reply f_args(struct milter_session *s, const char *const *args, size_t n)
{
    const char *m = milter_macro(s, "i");
    if (m) remember(m);
    remember(args[n - 1]);
    return verdict_of(args[0]);
}

static struct milter_reply f_data(struct milter_session *s)
{
    (void)s;
    return milter_reply_of(MILTER_CONTINUE);
}

static struct milter_reply f_header(struct milter_session *s, const char *name, const char *value)
{
    (void)s;
    remember(value);
    return verdict_of(name);
}

static struct milter_reply f_body(struct milter_session *s, const unsigned char *chunk, size_t len)
{
    (void)s;
    return len && chunk[0] == 'X' ? milter_reply_of(MILTER_REJECT)
                                  : milter_reply_of(MILTER_CONTINUE);
}

static struct milter_reply f_eom(struct milter_session *s, struct milter_actions *a)
{
    const char *q = milter_macro(s, "{queue_id}");
    milter_add_header(a, "X-Fuzz", last_value);
    milter_add_header(a, last_value, "v");
    milter_change_header(a, "Subject", (unsigned)strlen(last_value), last_value);
    milter_insert_header(a, 0, "X-First", last_value);
    milter_quarantine(a, q ? q : last_value);
    return verdict_of(last_value);
}

static struct milter_reply f_unknown(struct milter_session *s, const char *cmd)
{
    (void)s;
    return verdict_of(cmd);
}

static void f_abort(struct milter_session *s)
{
    (void)s;
}

static void f_close(struct milter_session *s)
{
    (void)s;
}

static struct milter_callbacks all = {
    .connect = f_connect,
    .helo = f_helo,
    .mail = f_args,
    .rcpt = f_args,
    .data = f_data,
    .header = f_header,
    .eoh = f_data,
    .body = f_body,
    .eom = f_eom,
    .unknown = f_unknown,
    .abort = f_abort,
    .close = f_close,
};
static struct milter_callbacks none;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_LEVEL_FATAL); /* bad replies warn; expected here */
    return 0;
}

/* Every byte the session wrote must be a sequence of complete, known reply packets. */
static void check_output(const struct buf *out)
{
    struct milter_decoder d;
    struct milter_packet p;
    int rc;

    milter_decoder_init(&d, 0);
    milter_decoder_feed(&d, out->data, out->len);
    while ((rc = milter_decoder_next(&d, &p)) == 1)
        if (p.cmd == '\0' || strchr("OcartdyhmiqCpsb+-e", p.cmd) == NULL) __builtin_trap();
    if (rc != 0 || d.len != 0) __builtin_trap();
    milter_decoder_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct milter_callbacks *cb;
    struct milter_session *s;
    struct buf out = {0};
    size_t pos = 1, step;
    uint8_t mode;
    int rc = 0;

    if (size == 0) return 0;
    mode = data[0];
    cb = (mode & 1) ? &none : &all;
    all.no_reply_stages = (mode & 2) ? 0x1ff : (mode & 4) ? 0xa0 : 0;
    step = (mode >> 4) ? (size_t)(mode >> 4) * 7 : size;
    s = milter_session_new(cb, NULL);
    if (mode & 8) {
        unsigned char o[12];
        struct buf in = {0};
        milter_put_u32(o, 6);
        milter_put_u32(o + 4, 0x1ff);
        milter_put_u32(o + 8, 0x1fffff);
        milter_packet_append(&in, 'O', o, 12);
        rc = milter_session_feed(s, in.data, in.len, &out);
        check_output(&out);
        buf_clear(&out);
        buf_free(&in);
    }
    while (rc == 0 && pos < size) {
        size_t n = size - pos < step ? size - pos : step;
        err_set("%s", "");
        rc = milter_session_feed(s, data + pos, n, &out);
        if (rc < 0 && err_msg()[0] == '\0') __builtin_trap();
        check_output(&out);
        buf_clear(&out);
        pos += n;
    }
    milter_session_free(s);
    buf_free(&out);
    return 0;
}
