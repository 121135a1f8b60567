/*
 * Tests for src/mta/milter.c: the codec, the session state machine and the server,
 * driven through tests/support/milter_client.c the way Postfix drives a milter.
 *
 * Two servers run for the whole suite, one on a unix socket in a temporary
 * directory and one on a free TCP port on 127.0.0.1, each in its own thread with
 * test callbacks whose behaviour is chosen by the input (a host "reject.example"
 * is rejected at connect, a sender "<blocked@...>" gets 550, and so on), so the
 * tests need no shared switches. Tests that stop a server or need a short read
 * timeout start their own. The 1,000-message tests print messages per second.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "milter_client.h"
#include "mta/milter.h"
#include "redis_server.h"
#include "tmpdir.h"

/* ---- the test application ---- */

struct counters {
    atomic_int connects, closes, aborts, eoms, rcpts, replied;
};

struct per_session {
    int headers;
    size_t body_bytes;
    int rcpts;
    char subject[256];
    bool fail_eom;
};

static struct per_session *ps(struct milter_session *s)
{
    return s->app_data;
}

static struct milter_reply ok(void)
{
    return milter_reply_of(MILTER_CONTINUE);
}

static struct milter_reply cb_connect(struct milter_session *s, const char *host, int family,
                                      const char *addr, unsigned port)
{
    struct counters *k = s->app;
    (void)family;
    (void)addr;
    (void)port;
    atomic_fetch_add(&k->connects, 1);
    if (s->app_data == NULL) s->app_data = xcalloc(1, sizeof(struct per_session));
    if (strcmp(host, "reject.example") == 0) return milter_reply_of(MILTER_REJECT);
    if (strcmp(host, "tempfail.example") == 0) return milter_reply_of(MILTER_TEMPFAIL);
    if (strcmp(host, "code.example") == 0)
        return milter_reply_code("554", "5.7.1", "No thanks\r\nX-Injected: 1 at 100%%");
    if (strcmp(host, "badcode.example") == 0) return milter_reply_code("250", NULL, "fine");
    return ok();
}

static struct milter_reply cb_helo(struct milter_session *s, const char *name)
{
    (void)s;
    return strcmp(name, "bad.helo") == 0 ? milter_reply_of(MILTER_REJECT) : ok();
}

static struct milter_reply cb_mail(struct milter_session *s, const char *const *args, size_t n)
{
    assert_true(n >= 1);
    if (s->app_data == NULL) s->app_data = xcalloc(1, sizeof(struct per_session));
    memset(s->app_data, 0, sizeof(struct per_session));
    if (strcmp(args[0], "<blocked@spam.example>") == 0)
        return milter_reply_code("550", "5.7.1", "Sender blocked");
    if (strcmp(args[0], "<temp@spam.example>") == 0) return milter_reply_of(MILTER_TEMPFAIL);
    if (strcmp(args[0], "<err@spam.example>") == 0) return milter_reply_of(MILTER_ERROR);
    return ok();
}

static struct milter_reply cb_rcpt(struct milter_session *s, const char *const *args, size_t n)
{
    struct counters *k = s->app;
    assert_true(n >= 1);
    atomic_fetch_add(&k->rcpts, 1);
    if (strcmp(args[0], "<nobody@local.test>") == 0)
        return milter_reply_code("550", "5.1.1", "No such user");
    if (strcmp(args[0], "<err@local.test>") == 0) return milter_reply_of(MILTER_ERROR);
    ps(s)->rcpts++;
    return ok();
}

static struct milter_reply cb_header(struct milter_session *s, const char *name, const char *value)
{
    ps(s)->headers++;
    if (strcasecmp(name, "Subject") == 0)
        snprintf(ps(s)->subject, sizeof ps(s)->subject, "%s", value);
    if (strcasecmp(name, "X-Test-Fail") == 0) return milter_reply_of(MILTER_ERROR);
    return ok();
}

static struct milter_reply cb_body(struct milter_session *s, const unsigned char *chunk, size_t len)
{
    (void)chunk;
    ps(s)->body_bytes += len;
    return ok();
}

static struct milter_reply cb_eom(struct milter_session *s, struct milter_actions *a)
{
    struct counters *k = s->app;
    struct per_session *p = ps(s);
    const char *qid = milter_macro(s, "i"), *auth = milter_macro(s, "auth_authen");
    char v[300];

    atomic_fetch_add(&k->eoms, 1);
    if (strstr(p->subject, "slow")) test_sleep_ms(400);
    if (strstr(p->subject, "eomfail")) return milter_reply_of(MILTER_ERROR);
    if (strstr(p->subject, "reject")) {
        milter_add_header(a, "X-Not-Sent", "because rejected");
        return milter_reply_code("550", "5.7.1", "Spam, score %d", 20);
    }
    if (milter_add_header(a, "X-Queue-Id", qid ? qid : "none") != 0)
        return milter_reply_of(MILTER_ERROR);
    snprintf(v, sizeof v, "%d", p->headers);
    milter_add_header(a, "X-Mxw-Headers", v);
    snprintf(v, sizeof v, "%zu", p->body_bytes);
    milter_add_header(a, "X-Mxw-Body-Bytes", v);
    snprintf(v, sizeof v, "%d", p->rcpts);
    milter_add_header(a, "X-Mxw-Rcpts", v);
    if (auth) milter_add_header(a, "X-Mxw-Auth", auth);
    if (strstr(p->subject, "spam")) {
        snprintf(v, sizeof v, "[SPAM] %s", p->subject);
        milter_change_header(a, "Subject", 1, v);
    }
    if (strstr(p->subject, "inject")) milter_add_header(a, "X-Inject", "a\r\nBcc: evil@x");
    if (strstr(p->subject, "quarantine")) milter_quarantine(a, "score 14 > 12");
    if (milter_add_header(a, "Bad Name", "x") == 0) return milter_reply_of(MILTER_ERROR);
    return ok();
}

static void cb_abort(struct milter_session *s)
{
    struct counters *k = s->app;
    atomic_fetch_add(&k->aborts, 1);
}

static void cb_close(struct milter_session *s)
{
    struct counters *k = s->app;
    atomic_fetch_add(&k->closes, 1);
    free(s->app_data);
}

static void cb_replied(struct milter_session *s)
{
    struct counters *k = s->app;
    if (k) atomic_fetch_add(&k->replied, 1);
}

static const struct milter_callbacks test_callbacks = {
    .connect = cb_connect,
    .helo = cb_helo,
    .mail = cb_mail,
    .rcpt = cb_rcpt,
    .header = cb_header,
    .body = cb_body,
    .eom = cb_eom,
    .abort = cb_abort,
    .close = cb_close,
    .replied = cb_replied,
    .no_reply_stages = MILTER_STAGE_HEADER | MILTER_STAGE_BODY,
};

/* ---- servers ---- */

struct test_server {
    struct milter_server *srv;
    pthread_t thread;
    volatile sig_atomic_t stop;
    char address[300];
    struct counters counters;
    int run_rc;
};

static char tmpdir[256];
static struct test_server unix_server, tcp_server;

static void *server_thread(void *arg)
{
    struct test_server *t = arg;
    t->run_rc = milter_server_run(t->srv, &t->stop);
    return NULL;
}

static int server_start(struct test_server *t, const char *address, int workers,
                        int read_timeout_ms, int shutdown_timeout_ms)
{
    struct milter_server_config cfg = {.listen = address,
                                       .workers = workers,
                                       .read_timeout_ms = read_timeout_ms,
                                       .shutdown_timeout_ms = shutdown_timeout_ms};
    memset(&t->counters, 0, sizeof t->counters);
    t->stop = 0;
    t->srv = milter_server_new(&cfg, &test_callbacks, &t->counters);
    if (t->srv == NULL) {
        fprintf(stderr, "milter_server_new(%s): %s\n", address, err_msg());
        return -1;
    }
    if (strncmp(address, "inet:", 5) == 0)
        snprintf(t->address, sizeof t->address, "inet:127.0.0.1:%d", milter_server_port(t->srv));
    else
        snprintf(t->address, sizeof t->address, "%s", address);
    return pthread_create(&t->thread, NULL, server_thread, t) == 0 ? 0 : -1;
}

static void server_stop(struct test_server *t)
{
    t->stop = 1;
    pthread_join(t->thread, NULL);
    milter_server_free(t->srv);
    t->srv = NULL;
}

static int group_setup(void **state)
{
    char addr[300];
    int port = test_free_port();
    (void)state;
    log_set_level(LOG_LEVEL_ERROR);
    if (test_tmpdir_make(tmpdir, sizeof tmpdir, "milter") != 0) return -1;
    snprintf(addr, sizeof addr, "unix:%s/milter.sock", tmpdir);
    if (server_start(&unix_server, addr, 4, 0, 2000) != 0) return -1;
    snprintf(addr, sizeof addr, "inet:127.0.0.1:%d", port);
    if (server_start(&tcp_server, addr, 4, 0, 2000) != 0) return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    server_stop(&unix_server);
    server_stop(&tcp_server);
    test_tmpdir_remove(tmpdir);
    return 0;
}

/* ---- helpers ---- */

static struct milter_client *open_session(const char *address, const char *host)
{
    struct milter_client *c = milter_client_open(address, 5000);
    struct milter_client_reply r;
    const char *macros[] = {"j", "mx.local.test", "{client_addr}", "192.0.2.7"};

    if (c == NULL) fail_msg("open %s: %s", address, err_msg());
    if (milter_client_negotiate(c, MILTER_CLIENT_ALL_ACTIONS, MILTER_CLIENT_ALL_PROTOCOL) != 0)
        fail_msg("negotiate: %s", err_msg());
    milter_client_macros(c, 'C', macros, 2);
    assert_int_equal(milter_client_connect(c, host, '4', "192.0.2.7", 40000, &r), 0);
    assert_int_equal(r.cmd, 'c');
    assert_int_equal(milter_client_helo(c, "client.example", &r), 0);
    assert_int_equal(r.cmd, 'c');
    return c;
}

static const char *message_text(const char *subject, char *buf, size_t size)
{
    snprintf(buf, size,
             "From: Alice <alice@example.org>\r\n"
             "To: bob@local.test\r\n"
             "Subject: %s\r\n"
             "X-Folded: first\r\n\tsecond\r\n"
             "\r\n"
             "Hello Bob,\nthis is the body.\n",
             subject);
    return buf;
}

static int send_message(struct milter_client *c, const char *sender, const char *subject,
                        const char *qid, struct milter_client_result *res)
{
    static const char *rcpts[] = {"<bob@local.test>"};
    char text[1024];
    struct milter_client_envelope env = {
        .queue_id = qid, .sender = sender, .rcpts = rcpts, .n_rcpts = 1};
    env.message = message_text(subject, text, sizeof text);
    env.message_len = strlen(text);
    return milter_client_message(c, &env, res);
}

static const struct milter_client_mod *find_mod(const struct milter_client_result *res, char cmd,
                                                const char *name)
{
    size_t i;
    for (i = 0; i < res->n_mods; i++)
        if (res->mods[i].cmd == cmd && strcmp(res->mods[i].name, name) == 0) return &res->mods[i];
    return NULL;
}

static const char *added(const struct milter_client_result *res, const char *name)
{
    const struct milter_client_mod *m = find_mod(res, 'h', name);
    return m ? m->value : NULL;
}

static void wait_for(atomic_int *v, int want)
{
    double end = test_now_s() + 5;
    while (atomic_load(v) < want && test_now_s() < end)
        test_sleep_ms(5);
    assert_true(atomic_load(v) >= want);
}

/* ---- codec ---- */

static void test_decoder_splits_packets_fed_byte_by_byte(void **state)
{
    struct buf in = {0};
    struct milter_decoder d;
    struct milter_packet p;
    size_t i;
    int got = 0;
    (void)state;

    milter_packet_append(&in, 'H', "helo.example", 13);
    milter_packet_append(&in, 'N', NULL, 0);
    milter_decoder_init(&d, 0);
    for (i = 0; i < in.len; i++) {
        milter_decoder_feed(&d, in.data + i, 1);
        while (milter_decoder_next(&d, &p) == 1) {
            if (got == 0) {
                assert_int_equal(p.cmd, 'H');
                assert_int_equal(p.len, 13);
                assert_string_equal(p.data, "helo.example");
            } else {
                assert_int_equal(p.cmd, 'N');
                assert_int_equal(p.len, 0);
            }
            got++;
        }
    }
    assert_int_equal(got, 2);
    milter_decoder_free(&d);
    buf_free(&in);
}

static void test_decoder_rejects_zero_and_oversized_lengths(void **state)
{
    const unsigned char zero[] = {0, 0, 0, 0, 'Q'};
    const unsigned char huge[] = {0x04, 0x00, 0x00, 0x01, 'B'}; /* 64 MiB + 1 */
    const unsigned char max_ok[] = {0x04, 0x00, 0x00, 0x00, 'B'};
    struct milter_decoder d;
    struct milter_packet p;
    (void)state;

    milter_decoder_init(&d, 0);
    milter_decoder_feed(&d, zero, sizeof zero);
    assert_int_equal(milter_decoder_next(&d, &p), -1);
    assert_int_equal(milter_decoder_next(&d, &p), -1); /* stays failed */
    milter_decoder_free(&d);

    milter_decoder_init(&d, 0);
    milter_decoder_feed(&d, huge, sizeof huge);
    assert_int_equal(milter_decoder_next(&d, &p), -1);
    assert_non_null(strstr(err_msg(), "out of range"));
    milter_decoder_free(&d);

    milter_decoder_init(&d, 0);
    milter_decoder_feed(&d, max_ok, sizeof max_ok);
    assert_int_equal(milter_decoder_next(&d, &p), 0); /* legal, waits for the data */
    milter_decoder_free(&d);
}

/* ---- transactions ---- */

static void full_transaction(const char *address)
{
    struct milter_client *c = open_session(address, "client.example");
    struct milter_client_result res;
    const struct milter_client_mod *m;

    /* what we negotiated: header actions and quarantine; no DATA/UNKNOWN; no replies to headers */
    assert_int_equal(milter_client_filter_actions(c), 0x31);
    assert_true(milter_client_filter_protocol(c) & MILTER_P_NODATA);
    assert_true(milter_client_filter_protocol(c) & MILTER_P_NOUNKNOWN);
    assert_true(milter_client_filter_protocol(c) & MILTER_P_NOEOH);
    assert_true(milter_client_filter_protocol(c) & MILTER_P_NR_HDR);
    assert_true(milter_client_filter_protocol(c) & MILTER_P_NR_BODY);
    assert_false(milter_client_filter_protocol(c) & MILTER_P_NOMAIL);
    assert_false(milter_client_filter_protocol(c) & MILTER_P_NR_RCPT);

    assert_int_equal(send_message(c, "<alice@example.org>", "hello spam", "4XyZ1", &res), 0);
    assert_int_equal(res.stage, 'E');
    assert_int_equal(res.reply.cmd, 'c');
    assert_string_equal(added(&res, "X-Queue-Id"), "4XyZ1");
    assert_string_equal(added(&res, "X-Mxw-Headers"), "4");
    assert_string_equal(added(&res, "X-Mxw-Body-Bytes"), "31"); /* two CRLF lines */
    assert_string_equal(added(&res, "X-Mxw-Rcpts"), "1");
    m = find_mod(&res, 'm', "Subject");
    assert_non_null(m);
    assert_int_equal(m->index, 1);
    assert_string_equal(m->value, "[SPAM] hello spam");
    assert_null(res.quarantine);
    milter_client_result_free(&res);

    assert_int_equal(send_message(c, "<alice@example.org>", "please quarantine", "4XyZ2", &res), 0);
    assert_int_equal(res.reply.cmd, 'c');
    assert_non_null(res.quarantine);
    assert_string_equal(res.quarantine, "score 14 > 12");
    assert_string_equal(added(&res, "X-Queue-Id"), "4XyZ2");
    assert_null(find_mod(&res, 'm', "Subject"));
    milter_client_result_free(&res);

    assert_int_equal(milter_client_quit(c), 0);
    assert_true(milter_client_wait_closed(c, 2000));
    milter_client_free(c);
}

static void test_full_transaction_over_unix_socket(void **state)
{
    (void)state;
    full_transaction(unix_server.address);
}

/* After each reply batch the server calls `replied`, e.g. for work kept off the SMTP clock. */
static void test_replied_runs_after_each_reply(void **state)
{
    struct milter_client *c = open_session(unix_server.address, "client.example");
    struct milter_client_result res;
    int before, i;
    (void)state;

    before = atomic_load(&unix_server.counters.replied);
    assert_int_equal(send_message(c, "<alice@example.org>", "hello", "4R1", &res), 0);
    milter_client_result_free(&res);
    /* MAIL, RCPT and end of message each got a reply (headers and body do not). */
    for (i = 0; i < 200 && atomic_load(&unix_server.counters.replied) < before + 3; i++)
        usleep(5000);
    assert_true(atomic_load(&unix_server.counters.replied) >= before + 3);
    assert_int_equal(milter_client_quit(c), 0);
    milter_client_free(c);
}

static void test_full_transaction_over_tcp(void **state)
{
    (void)state;
    full_transaction(tcp_server.address);
}

static void test_unix_socket_has_mode_0660(void **state)
{
    struct stat st;
    (void)state;
    assert_int_equal(stat(unix_server.address + 5, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);
}

static void connect_verdict(const char *host, char want_cmd, const char *want_text)
{
    struct milter_client *c = milter_client_open(unix_server.address, 5000);
    struct milter_client_reply r;

    assert_non_null(c);
    assert_int_equal(
        milter_client_negotiate(c, MILTER_CLIENT_ALL_ACTIONS, MILTER_CLIENT_ALL_PROTOCOL), 0);
    assert_int_equal(milter_client_connect(c, host, '4', "192.0.2.9", 1234, &r), 0);
    assert_int_equal(r.cmd, want_cmd);
    if (want_text) assert_string_equal(r.text, want_text);
    milter_client_quit(c);
    milter_client_free(c);
}

static void test_connect_reject_tempfail_and_replycode(void **state)
{
    (void)state;
    connect_verdict("reject.example", 'r', NULL);
    connect_verdict("tempfail.example", 't', NULL);
    /* CR/LF become spaces; '%' is doubled for Postfix, which un-doubles it */
    connect_verdict("code.example", 'y', "554 5.7.1 No thanks  X-Injected: 1 at 100%%");
    /* a 2xx "reply" is not a refusal: it must not pass, it becomes a tempfail */
    connect_verdict("badcode.example", 'y',
                    "451 4.3.0 Temporary failure in the mail filter, "
                    "try again later");
}

static void test_mail_and_rcpt_verdicts(void **state)
{
    struct milter_client *c = open_session(tcp_server.address, "client.example");
    struct milter_client_result res;
    static const char *rcpts[] = {"<nobody@local.test>", "<bob@local.test>"};
    struct milter_client_envelope env = {.sender = "<alice@example.org>",
                                         .rcpts = rcpts,
                                         .n_rcpts = 2,
                                         .message = "Subject: x\n\nhi\n",
                                         .message_len = 15};
    (void)state;

    assert_int_equal(send_message(c, "<blocked@spam.example>", "x", NULL, &res), 0);
    assert_int_equal(res.stage, 'M');
    assert_int_equal(res.reply.cmd, 'y');
    assert_string_equal(res.reply.text, "550 5.7.1 Sender blocked");
    milter_client_result_free(&res);

    assert_int_equal(send_message(c, "<temp@spam.example>", "x", NULL, &res), 0);
    assert_int_equal(res.stage, 'M');
    assert_int_equal(res.reply.cmd, 't');
    milter_client_result_free(&res);

    /* one recipient refused, the other goes through */
    assert_int_equal(milter_client_message(c, &env, &res), 0);
    assert_int_equal(res.rcpts_rejected, 1);
    assert_int_equal(res.stage, 'E');
    assert_int_equal(res.reply.cmd, 'c');
    assert_string_equal(added(&res, "X-Mxw-Rcpts"), "1");
    milter_client_result_free(&res);

    /* all recipients refused: the message stops at RCPT with the reply code */
    env.n_rcpts = 1;
    assert_int_equal(milter_client_message(c, &env, &res), 0);
    assert_int_equal(res.stage, 'R');
    assert_int_equal(res.reply.cmd, 'y');
    assert_string_equal(res.reply.text, "550 5.1.1 No such user");
    milter_client_result_free(&res);

    milter_client_quit(c);
    milter_client_free(c);
}

static void test_reject_at_end_of_message_sends_no_modifications(void **state)
{
    struct milter_client *c = open_session(unix_server.address, "client.example");
    struct milter_client_result res;
    (void)state;

    assert_int_equal(send_message(c, "<alice@example.org>", "reject me", "Q1", &res), 0);
    assert_int_equal(res.reply.cmd, 'y');
    assert_string_equal(res.reply.text, "550 5.7.1 Spam, score 20");
    assert_int_equal(res.n_mods, 0);
    milter_client_result_free(&res);
    milter_client_quit(c);
    milter_client_free(c);
}

static void test_callback_errors_answer_tempfail(void **state)
{
    struct milter_client *c = open_session(unix_server.address, "client.example");
    struct milter_client_result res;
    static const char *rcpts[] = {"<err@local.test>"};
    struct milter_client_envelope env = {.sender = "<alice@example.org>",
                                         .rcpts = rcpts,
                                         .n_rcpts = 1,
                                         .message = "Subject: x\n\nhi\n",
                                         .message_len = 15};
    const char *msg = "Subject: hi\nX-Test-Fail: yes\n\nbody\n";
    const char *tempfail = "451 4.3.0 Temporary failure in the mail filter, try again later";
    (void)state;

    assert_int_equal(send_message(c, "<err@spam.example>", "x", NULL, &res), 0);
    assert_int_equal(res.stage, 'M');
    assert_int_equal(res.reply.cmd, 'y');
    assert_string_equal(res.reply.text, tempfail);
    milter_client_result_free(&res);

    assert_int_equal(milter_client_message(c, &env, &res), 0);
    assert_int_equal(res.stage, 'R');
    assert_string_equal(res.reply.text, tempfail);
    milter_client_result_free(&res);

    /* a header callback fails, but headers need no reply: the failure is given at EOM */
    rcpts[0] = "<bob@local.test>";
    env.message = msg;
    env.message_len = strlen(msg);
    assert_int_equal(milter_client_message(c, &env, &res), 0);
    assert_int_equal(res.stage, 'E');
    assert_int_equal(res.reply.cmd, 'y');
    assert_string_equal(res.reply.text, tempfail);
    assert_int_equal(res.n_mods, 0);
    milter_client_result_free(&res);

    assert_int_equal(send_message(c, "<alice@example.org>", "eomfail", NULL, &res), 0);
    assert_string_equal(res.reply.text, tempfail);
    milter_client_result_free(&res);

    /* and the connection still carries a good message afterwards */
    assert_int_equal(send_message(c, "<alice@example.org>", "fine", "Q9", &res), 0);
    assert_int_equal(res.reply.cmd, 'c');
    assert_string_equal(added(&res, "X-Queue-Id"), "Q9");
    milter_client_result_free(&res);
    milter_client_quit(c);
    milter_client_free(c);
}

static void test_header_values_cannot_inject_lines(void **state)
{
    struct milter_client *c = open_session(unix_server.address, "client.example");
    struct milter_client_result res;
    (void)state;

    assert_int_equal(send_message(c, "<alice@example.org>", "inject", NULL, &res), 0);
    assert_string_equal(added(&res, "X-Inject"), "a\n\tBcc: evil@x");
    milter_client_result_free(&res);
    milter_client_quit(c);
    milter_client_free(c);
}

static void test_abort_then_second_message_on_same_connection(void **state)
{
    struct milter_client *c = open_session(unix_server.address, "client.example");
    struct milter_client_reply r;
    struct milter_client_result res;
    const char *from[] = {"<alice@example.org>"}, *to[] = {"<bob@local.test>"};
    const char *qid[] = {"i", "OLDQID"};
    int aborts = atomic_load(&unix_server.counters.aborts);
    (void)state;

    milter_client_macros(c, 'E', qid, 1); /* a message-level macro of the aborted message */
    assert_int_equal(milter_client_mail(c, from, 1, &r), 0);
    assert_int_equal(r.cmd, 'c');
    assert_int_equal(milter_client_rcpt(c, to, 1, &r), 0);
    assert_int_equal(milter_client_header(c, "Subject", "first", &r), 0);
    assert_int_equal(milter_client_abort(c), 0);

    assert_int_equal(send_message(c, "<alice@example.org>", "second", NULL, &res), 0);
    assert_int_equal(res.reply.cmd, 'c');
    assert_string_equal(added(&res, "X-Mxw-Headers"), "4"); /* the first one's header is gone */
    assert_string_equal(added(&res, "X-Queue-Id"), "none"); /* and so is its macro */
    milter_client_result_free(&res);
    wait_for(&unix_server.counters.aborts, aborts + 1);
    milter_client_quit(c);
    milter_client_free(c);
}

static void test_quit_nc_starts_a_new_session_on_the_connection(void **state)
{
    struct milter_client *c = open_session(tcp_server.address, "client.example");
    struct milter_client_reply r;
    struct milter_client_result res;
    const char *auth[] = {"{auth_authen}", "alice"};
    int connects;
    (void)state;

    milter_client_macros(c, 'M', auth, 1);
    assert_int_equal(send_message(c, "<alice@example.org>", "one", NULL, &res), 0);
    /* milter_client_message sends no auth macro itself; ours came before MAIL */
    assert_string_equal(added(&res, "X-Mxw-Auth"), "alice");
    milter_client_result_free(&res);

    connects = atomic_load(&tcp_server.counters.connects);
    assert_int_equal(milter_client_quit_nc(c), 0);
    assert_int_equal(milter_client_connect(c, "reject.example", '4', "192.0.2.8", 1, &r), 0);
    assert_int_equal(r.cmd, 'r');
    assert_int_equal(milter_client_quit_nc(c), 0);
    assert_int_equal(milter_client_connect(c, "client.example", '6', "2001:db8::1", 2, &r), 0);
    assert_int_equal(r.cmd, 'c');
    assert_int_equal(atomic_load(&tcp_server.counters.connects), connects + 2);
    assert_int_equal(send_message(c, "<alice@example.org>", "two", NULL, &res), 0);
    assert_int_equal(res.reply.cmd, 'c');
    assert_null(added(&res, "X-Mxw-Auth")); /* the old session's macros are gone */
    milter_client_result_free(&res);
    milter_client_quit(c);
    milter_client_free(c);
}

static void many_messages(const char *address, const char *label)
{
    struct milter_client *c = open_session(address, "client.example");
    struct milter_client_result res;
    int eoms = atomic_load(&unix_server.counters.eoms) + atomic_load(&tcp_server.counters.eoms);
    double t0 = test_now_s(), dt;
    int i;
    char qid[32];

    for (i = 0; i < 1000; i++) {
        snprintf(qid, sizeof qid, "Q%05d", i);
        if (send_message(c, "<alice@example.org>", "bulk", qid, &res) != 0)
            fail_msg("message %d: %s", i, err_msg());
        assert_int_equal(res.reply.cmd, 'c');
        assert_string_equal(added(&res, "X-Queue-Id"), qid);
        milter_client_result_free(&res);
    }
    dt = test_now_s() - t0;
    milter_client_quit(c);
    milter_client_free(c);
    assert_int_equal(atomic_load(&unix_server.counters.eoms) +
                         atomic_load(&tcp_server.counters.eoms),
                     eoms + 1000);
    print_message("milter %s: 1000 messages on one connection in %.3f s = %.0f msg/s\n", label, dt,
                  1000 / dt);

    /* one connection per SMTP session, as Postfix does */
    t0 = test_now_s();
    for (i = 0; i < 300; i++) {
        c = open_session(address, "client.example");
        assert_int_equal(send_message(c, "<alice@example.org>", "bulk", "Q", &res), 0);
        assert_int_equal(res.reply.cmd, 'c');
        milter_client_result_free(&res);
        milter_client_quit(c);
        milter_client_free(c);
    }
    dt = test_now_s() - t0;
    print_message("milter %s: 300 sessions (connect, negotiate, one message, quit) in %.3f s = "
                  "%.0f msg/s\n",
                  label, dt, 300 / dt);
}

static void test_thousand_messages_over_one_unix_connection(void **state)
{
    (void)state;
    many_messages(unix_server.address, "unix");
}

static void test_thousand_messages_over_one_tcp_connection(void **state)
{
    (void)state;
    many_messages(tcp_server.address, "tcp");
}

/*
 * Postfix writes each packet on its own with Nagle on; unless the filter ACKs at
 * once, every macro+command pair stalls for a delayed ACK (~40 ms on Linux): 200
 * messages would take more than 8 s instead of a fraction of one.
 */
static void test_tcp_acks_at_once_for_postfix_style_writes(void **state)
{
    struct milter_client *c = milter_client_open(tcp_server.address, 5000);
    struct milter_client_result res;
    struct milter_client_reply r;
    const char *j[] = {"j", "mx.local.test"};
    double t0;
    int i;
    (void)state;

    assert_non_null(c);
    milter_client_postfix_writes(c);
    assert_int_equal(
        milter_client_negotiate(c, MILTER_CLIENT_ALL_ACTIONS, MILTER_CLIENT_ALL_PROTOCOL), 0);
    milter_client_macros(c, 'C', j, 1);
    assert_int_equal(milter_client_connect(c, "client.example", '4', "192.0.2.7", 1, &r), 0);
    t0 = test_now_s();
    for (i = 0; i < 200; i++) {
        assert_int_equal(send_message(c, "<alice@example.org>", "nagle", "QN", &res), 0);
        assert_int_equal(res.reply.cmd, 'c');
        milter_client_result_free(&res);
    }
    print_message("milter tcp, Postfix-style writes: 200 messages in %.3f s\n", test_now_s() - t0);
    assert_true(test_now_s() - t0 < 4.0);
    milter_client_quit(c);
    milter_client_free(c);
}

static void test_ten_thousand_recipients(void **state)
{
    struct milter_client *c = open_session(unix_server.address, "client.example");
    struct milter_client_result res;
    struct milter_client_envelope env = {
        .sender = "<alice@example.org>", .message = "Subject: many\n\nhi\n", .message_len = 18};
    char **rcpts = xcalloc(10000, sizeof *rcpts);
    int i;
    (void)state;

    for (i = 0; i < 10000; i++) {
        rcpts[i] = xmalloc(40);
        snprintf(rcpts[i], 40, "<user%d@local.test>", i);
    }
    env.rcpts = (const char *const *)rcpts;
    env.n_rcpts = 10000;
    assert_int_equal(milter_client_message(c, &env, &res), 0);
    assert_int_equal(res.reply.cmd, 'c');
    assert_string_equal(added(&res, "X-Mxw-Rcpts"), "10000");
    milter_client_result_free(&res);
    for (i = 0; i < 10000; i++)
        free(rcpts[i]);
    free(rcpts);
    milter_client_quit(c);
    milter_client_free(c);
}

static void test_client_disconnect_mid_message_leaves_server_serving(void **state)
{
    struct milter_client *a = open_session(unix_server.address, "client.example");
    struct milter_client *b = open_session(unix_server.address, "client.example");
    struct milter_client_reply r;
    struct milter_client_result res;
    const char *from[] = {"<alice@example.org>"}, *to[] = {"<bob@local.test>"};
    int closes = atomic_load(&unix_server.counters.closes);
    (void)state;

    assert_int_equal(milter_client_mail(a, from, 1, &r), 0);
    assert_int_equal(milter_client_rcpt(a, to, 1, &r), 0);
    assert_int_equal(milter_client_header(a, "Subject", "half", &r), 0);
    assert_int_equal(milter_client_body(a, "partial bo", 10, &r), 0);
    milter_client_send_raw(a,
                           "\0\0\0\x20"
                           "Bonly part of a body",
                           20); /* truncated packet */
    milter_client_free(a);
    wait_for(&unix_server.counters.closes, closes + 1);

    assert_int_equal(send_message(b, "<alice@example.org>", "still here", "B1", &res), 0);
    assert_int_equal(res.reply.cmd, 'c');
    milter_client_result_free(&res);
    milter_client_quit(b);
    milter_client_free(b);
}

static void malformed(const char *bytes, size_t len, bool negotiate_first, bool then_eof)
{
    struct milter_client *c = milter_client_open(tcp_server.address, 5000);
    struct milter_client_result res;
    assert_non_null(c);
    if (negotiate_first)
        assert_int_equal(
            milter_client_negotiate(c, MILTER_CLIENT_ALL_ACTIONS, MILTER_CLIENT_ALL_PROTOCOL), 0);
    assert_int_equal(milter_client_send_raw(c, bytes, len), 0);
    if (then_eof) assert_int_equal(milter_client_end_input(c), 0);
    assert_true(milter_client_wait_closed(c, 3000));
    milter_client_free(c);

    /* the server is alive */
    c = open_session(tcp_server.address, "client.example");
    assert_int_equal(send_message(c, "<alice@example.org>", "after", NULL, &res), 0);
    assert_int_equal(res.reply.cmd, 'c');
    milter_client_result_free(&res);
    milter_client_quit(c);
    milter_client_free(c);
}

static void test_malformed_packets_close_the_connection_only(void **state)
{
    (void)state;
    malformed("\0\0\0\0", 4, true, false); /* length 0 */
    malformed("\x7f\xff\xff\xff"
              "B",
              5, true, false); /* length 2 GiB */
    malformed("\x04\x00\x00\x01"
              "B",
              5, true, false); /* 64 MiB + 1 */
    malformed("\0\0\0\x01"
              "Z",
              5, true, false); /* unknown command */
    malformed("\0\0\0\x01"
              "M",
              5, false, false); /* MAIL before negotiation */
    malformed("\0\0\0\x05"
              "O\0\0\0\0",
              9, false, false); /* negotiation too short */
    malformed("\0\0\0\x0d"
              "O\0\0\0\x01\0\0\0\0\0\0\0\0",
              17, false, false); /* version 1 */
    malformed("\0\0\0\x02"
              "Cx",
              6, true, false); /* connect: host without NUL nor family */
    malformed("\0\0\0\x10"
              "Cabc",
              8, true, true);         /* truncated packet, then EOF */
    malformed("\0\0", 2, true, true); /* truncated length, then EOF */
}

static void test_stale_socket_is_replaced_and_live_one_refused(void **state)
{
    char path[300], addr[310];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct milter_server_config cfg = {0};
    struct milter_server *srv;
    struct stat st;
    int fd;
    (void)state;

    snprintf(path, sizeof path, "%s/stale.sock", tmpdir);
    snprintf(addr, sizeof addr, "unix:%s", path);
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd); /* the file stays: a stale socket */
    cfg.listen = addr;
    srv = milter_server_new(&cfg, &test_callbacks, NULL);
    assert_non_null(srv);

    /* a live server there is not replaced */
    assert_null(milter_server_new(&cfg, &test_callbacks, NULL));
    assert_non_null(strstr(err_msg(), "another server"));
    cfg.listen = unix_server.address;
    assert_null(milter_server_new(&cfg, &test_callbacks, NULL));

    milter_server_free(srv);
    assert_int_equal(stat(path, &st), -1); /* removed on exit */

    /* a regular file is never deleted */
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    close(fd);
    cfg.listen = addr;
    assert_null(milter_server_new(&cfg, &test_callbacks, NULL));
    assert_int_equal(stat(path, &st), 0);
    unlink(path);

    /* the socket's group is set, and an unknown group is refused */
    {
        /* as root, a group other than ours shows that chown happened */
        struct group *g =
            getuid() == 0 && getgrnam("nogroup") ? getgrnam("nogroup") : getgrgid(getgid());
        gid_t want = g->gr_gid;
        cfg.unix_group = g->gr_name;
        srv = milter_server_new(&cfg, &test_callbacks, NULL);
        assert_non_null(srv);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_gid, want);
    }
    milter_server_free(srv);
    cfg.unix_group = "no-such-group-mxw";
    assert_null(milter_server_new(&cfg, &test_callbacks, NULL));
    assert_non_null(strstr(err_msg(), "no-such-group-mxw"));
    cfg.unix_group = NULL;

    cfg.listen = "tcp:127.0.0.1:1";
    assert_null(milter_server_new(&cfg, &test_callbacks, NULL));
}

static void test_graceful_stop_lets_message_in_progress_finish(void **state)
{
    struct test_server t;
    char addr[300];
    struct milter_client *busy, *idle, *late;
    struct milter_client_reply r;
    struct milter_client_result res;
    const char *from[] = {"<alice@example.org>"}, *to[] = {"<bob@local.test>"};
    struct stat st;
    double t0;
    (void)state;

    snprintf(addr, sizeof addr, "unix:%s/stop.sock", tmpdir);
    assert_int_equal(server_start(&t, addr, 2, 0, 5000), 0);
    busy = open_session(addr, "client.example");
    idle = open_session(addr, "client.example");
    assert_int_equal(milter_client_mail(busy, from, 1, &r), 0);
    assert_int_equal(milter_client_rcpt(busy, to, 1, &r), 0);
    assert_int_equal(r.cmd, 'c');
    assert_int_equal(milter_client_header(busy, "Subject", "slow one", &r), 0);
    assert_int_equal(milter_client_eoh(busy, &r), 0);

    t0 = test_now_s();
    t.stop = 1;
    /* the idle connection is closed, the listener is gone, the busy one is served */
    assert_true(milter_client_wait_closed(idle, 3000));
    milter_client_free(idle);
    test_sleep_ms(150);
    assert_int_equal(stat(addr + 5, &st), -1);
    late = milter_client_open(addr, 1000);
    assert_null(late);

    assert_int_equal(milter_client_body(busy, "text\r\n", 6, &r), 0);
    assert_int_equal(milter_client_eom(busy, &res), 0);
    assert_int_equal(res.reply.cmd, 'c');
    assert_string_equal(added(&res, "X-Mxw-Headers"), "1");
    milter_client_result_free(&res);
    assert_true(milter_client_wait_closed(busy, 3000)); /* closed after its message */
    milter_client_free(busy);

    pthread_join(t.thread, NULL);
    assert_true(test_now_s() - t0 < 4.0);
    assert_int_equal(t.run_rc, 0);
    assert_int_equal(atomic_load(&t.counters.closes), 2);
    milter_server_free(t.srv);
}

static void test_shutdown_timeout_closes_a_stuck_message(void **state)
{
    struct test_server t;
    char addr[300];
    struct milter_client *busy;
    struct milter_client_reply r;
    const char *from[] = {"<alice@example.org>"};
    double t0;
    (void)state;

    snprintf(addr, sizeof addr, "unix:%s/stuck.sock", tmpdir);
    assert_int_equal(server_start(&t, addr, 1, 0, 300), 0);
    busy = open_session(addr, "client.example");
    assert_int_equal(milter_client_mail(busy, from, 1, &r), 0);
    t0 = test_now_s();
    t.stop = 1;
    pthread_join(t.thread, NULL); /* the MTA never finishes: bounded by the timeout */
    assert_true(test_now_s() - t0 < 2.0);
    assert_true(milter_client_wait_closed(busy, 1000));
    milter_client_free(busy);
    milter_server_free(t.srv);
}

static void test_idle_connection_closed_after_read_timeout(void **state)
{
    struct test_server t;
    struct milter_client *c;
    char addr[64];
    double t0;
    (void)state;

    snprintf(addr, sizeof addr, "inet:127.0.0.1:%d", test_free_port());
    assert_int_equal(server_start(&t, addr, 1, 300, 1000), 0);
    c = open_session(t.address, "client.example");
    t0 = test_now_s();
    assert_true(milter_client_wait_closed(c, 5000));
    assert_true(test_now_s() - t0 >= 0.25);
    milter_client_free(c);
    server_stop(&t);
}

static void test_session_without_callbacks_switches_stages_off(void **state)
{
    static const struct milter_callbacks none = {0};
    struct milter_session *s = milter_session_new(&none, NULL);
    struct buf in = {0}, out = {0};
    unsigned char o[12];
    (void)state;

    milter_put_u32(o, 6);
    milter_put_u32(o + 4, 0x1ff);
    milter_put_u32(o + 8, 0x1fffff);
    milter_packet_append(&in, 'O', o, 12);
    milter_packet_append(&in, 'E', NULL, 0);
    milter_packet_append(&in, 'Q', NULL, 0);
    assert_int_equal(milter_session_feed(s, in.data, in.len, &out), 1);
    /* O reply (4+1+12) then 'c' for end of message (4+1) */
    assert_int_equal(out.len, 17 + 5);
    assert_int_equal(out.data[4], 'O');
    assert_int_equal(milter_get_u32(out.data + 13),
                     MILTER_P_NOCONNECT | MILTER_P_NOHELO | MILTER_P_NOMAIL | MILTER_P_NORCPT |
                         MILTER_P_NOBODY | MILTER_P_NOHDRS | MILTER_P_NOEOH | MILTER_P_NR_HDR |
                         MILTER_P_NOUNKNOWN | MILTER_P_NODATA | MILTER_P_NR_CONN |
                         MILTER_P_NR_HELO | MILTER_P_NR_MAIL | MILTER_P_NR_RCPT | MILTER_P_NR_DATA |
                         MILTER_P_NR_UNKN | MILTER_P_NR_EOH | MILTER_P_NR_BODY);
    assert_int_equal(out.data[21], 'c');
    milter_session_free(s);
    buf_free(&in);
    buf_free(&out);
}

static struct milter_reply nr_mail(struct milter_session *s, const char *const *args, size_t n)
{
    (void)s;
    return n && strcmp(args[0], "<bad@example.org>") == 0 ? milter_reply_of(MILTER_REJECT)
                                                           : milter_reply_of(MILTER_CONTINUE);
}

static struct milter_reply nr_rcpt(struct milter_session *s, const char *const *args, size_t n)
{
    (void)s;
    (void)args;
    (void)n;
    return milter_reply_of(MILTER_CONTINUE);
}

static struct milter_reply nr_eom(struct milter_session *s, struct milter_actions *a)
{
    (void)s;
    (void)a;
    return milter_reply_of(MILTER_CONTINUE);
}

static unsigned nr_now(struct milter_session *s)
{
    (void)s;
    return MILTER_STAGE_MAIL | MILTER_STAGE_RCPT;
}

/* Stages the application makes no-reply for this connection get no reply; a refusal one of
 * them returns anyway is given at the next stage that replies. */
static void test_no_reply_now_holds_a_refusal_for_the_next_reply(void **state)
{
    static const struct milter_callbacks cb = {
        .mail = nr_mail, .rcpt = nr_rcpt, .eom = nr_eom, .no_reply_now = nr_now};
    struct milter_session *s = milter_session_new(&cb, NULL);
    struct buf in = {0}, out = {0};
    unsigned char o[12];
    static const char bad[] = "<bad@example.org>", rcpt[] = "<bob@example.net>";
    (void)state;

    milter_put_u32(o, 6);
    milter_put_u32(o + 4, 0x1ff);
    milter_put_u32(o + 8, 0x1fffff);
    milter_packet_append(&in, 'O', o, 12);
    milter_packet_append(&in, 'M', bad, sizeof bad);
    milter_packet_append(&in, 'R', rcpt, sizeof rcpt);
    milter_packet_append(&in, 'E', NULL, 0);
    assert_int_equal(milter_session_feed(s, in.data, in.len, &out), 0);
    assert_int_equal(out.data[4], 'O');
    assert_true(milter_get_u32(out.data + 13) & MILTER_P_NR_MAIL);
    assert_true(milter_get_u32(out.data + 13) & MILTER_P_NR_RCPT);
    assert_false(milter_get_u32(out.data + 13) & MILTER_P_NOMAIL);
    /* Nothing for MAIL and RCPT; the end of message gets the held reject. */
    assert_int_equal(out.len, 17 + 5);
    assert_int_equal(out.data[21], 'r');
    milter_session_free(s);
    buf_free(&in);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoder_splits_packets_fed_byte_by_byte),
        cmocka_unit_test(test_decoder_rejects_zero_and_oversized_lengths),
        cmocka_unit_test(test_session_without_callbacks_switches_stages_off),
        cmocka_unit_test(test_no_reply_now_holds_a_refusal_for_the_next_reply),
        cmocka_unit_test(test_full_transaction_over_unix_socket),
        cmocka_unit_test(test_replied_runs_after_each_reply),
        cmocka_unit_test(test_full_transaction_over_tcp),
        cmocka_unit_test(test_unix_socket_has_mode_0660),
        cmocka_unit_test(test_connect_reject_tempfail_and_replycode),
        cmocka_unit_test(test_mail_and_rcpt_verdicts),
        cmocka_unit_test(test_reject_at_end_of_message_sends_no_modifications),
        cmocka_unit_test(test_callback_errors_answer_tempfail),
        cmocka_unit_test(test_header_values_cannot_inject_lines),
        cmocka_unit_test(test_abort_then_second_message_on_same_connection),
        cmocka_unit_test(test_quit_nc_starts_a_new_session_on_the_connection),
        cmocka_unit_test(test_thousand_messages_over_one_unix_connection),
        cmocka_unit_test(test_thousand_messages_over_one_tcp_connection),
        cmocka_unit_test(test_tcp_acks_at_once_for_postfix_style_writes),
        cmocka_unit_test(test_ten_thousand_recipients),
        cmocka_unit_test(test_client_disconnect_mid_message_leaves_server_serving),
        cmocka_unit_test(test_malformed_packets_close_the_connection_only),
        cmocka_unit_test(test_stale_socket_is_replaced_and_live_one_refused),
        cmocka_unit_test(test_graceful_stop_lets_message_in_progress_finish),
        cmocka_unit_test(test_shutdown_timeout_closes_a_stuck_message),
        cmocka_unit_test(test_idle_connection_closed_after_read_timeout),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
