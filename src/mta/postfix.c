/*
 * postfix - hold-queue operations through Postfix's commands. See postfix.h.
 *
 * postfix_run() is the one place that starts a process: fork, then exec of
 * an argument vector (no shell, so nothing is ever re-parsed), standard
 * input from a socket pair (written with MSG_NOSIGNAL: a command that exits
 * early must not kill us with SIGPIPE) or /dev/null, standard output and
 * error read through pipes in one poll loop until both close or the deadline
 * passes, when the child is killed and reaped. A failed exec is reported
 * back through a close-on-exec pipe, so "not installed" reads as such rather
 * than as exit status 127.
 *
 * Postfix's commands answer "no such message" with exit status 0 and a
 * count on stderr ("Deleted: 0 messages", "Released from hold: 0
 * messages"), so those counts are parsed; postcat exits 1 with "open queue
 * file ID: No such file or directory".
 */
#include "mta/postfix.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define POSTFIX_STDOUT_MAX (512u * 1024 * 1024) /* a 10,000-message listing is ~3 MB */
#define POSTFIX_STDERR_MAX (64u * 1024)
#define POSTFIX_ERR_SHOWN  400 /* bytes of stderr quoted in an error */
#define POSTFIX_REASON_MAX 500
#define POSTFIX_MAX_ARGS   16

bool postfix_queue_id_valid(const char *id)
{
    size_t i;
    if (id == NULL) return false;
    for (i = 0; id[i]; i++) {
        char c = id[i];
        if (i >= POSTFIX_QUEUE_ID_MAX) return false;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return false;
    }
    return i > 0;
}

static int postfix_check_id(const char *id)
{
    if (postfix_queue_id_valid(id)) return POSTFIX_OK;
    err_set("postfix: invalid queue id \"%.80s\" (expected 1..%d of [0-9A-Za-z])", id ? id : "",
            POSTFIX_QUEUE_ID_MAX);
    return POSTFIX_INVALID;
}

/* ---- running a command ---- */

struct postfix_cmd {
    const char *argv[POSTFIX_MAX_ARGS + 1]; /* argv[0] is the program name */
    int argc;
};

static void postfix_arg(struct postfix_cmd *cmd, const char *arg)
{
    /* Our own call sites pass a handful of fixed arguments. */
    assert(cmd->argc < POSTFIX_MAX_ARGS);
    cmd->argv[cmd->argc++] = arg;
    cmd->argv[cmd->argc] = NULL;
}

/* Starts a command: program plus "-c DIR" (flag "-c" or "-C") when a config dir is set. */
static void postfix_cmd_init(struct postfix_cmd *cmd, const struct postfix_conf *pc,
                             const char *program, const char *config_flag)
{
    cmd->argc = 0;
    postfix_arg(cmd, program);
    if (pc && pc->config_dir && config_flag) {
        postfix_arg(cmd, config_flag);
        postfix_arg(cmd, pc->config_dir);
    }
}

static int64_t postfix_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The command line as text for messages: "postsuper -c DIR -d ID hold". */
static void postfix_cmd_text(const struct postfix_cmd *cmd, char *text, size_t size)
{
    size_t used = 0;
    int i;
    text[0] = '\0';
    for (i = 0; i < cmd->argc && used < size; i++) {
        int n = snprintf(text + used, size - used, "%s%s", i ? " " : "", cmd->argv[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
}

/* Child side: wire the descriptors and exec; never returns. */
static void postfix_child(const struct postfix_conf *pc, const struct postfix_cmd *cmd, int in_fd,
                          int out_fd, int err_fd, int report_fd)
{
    char path[4096];
    int e;
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &sa, NULL);
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) {
        e = errno;
        (void)!write(report_fd, &e, sizeof e);
        _exit(127);
    }
    if (pc && pc->bin_dir) {
        snprintf(path, sizeof path, "%s/%s", pc->bin_dir, cmd->argv[0]);
        execv(path, (char *const *)cmd->argv);
    } else {
        execvp(cmd->argv[0], (char *const *)cmd->argv);
        if (errno == ENOENT) {
            /* Postfix's tools live in /usr/sbin, which a non-root PATH often lacks. */
            snprintf(path, sizeof path, "/usr/sbin/%s", cmd->argv[0]);
            execv(path, (char *const *)cmd->argv);
        }
    }
    e = errno;
    (void)!write(report_fd, &e, sizeof e);
    _exit(127);
}

/* Reads what is available on *fd into b; closes and sets *fd = -1 at EOF or error. */
static void postfix_drain(int *fd, struct buf *b)
{
    char chunk[65536];
    ssize_t n = read(*fd, chunk, sizeof chunk);
    if (n > 0) {
        buf_append(b, chunk, (size_t)n);
        return;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    close(*fd);
    *fd = -1;
}

/*
 * Runs cmd with in[0..in_len) on standard input (in NULL: /dev/null), its
 * output appended to out and error to err. *status gets the exit status.
 * POSTFIX_OK if it ran and exited, whatever the status; POSTFIX_ERR if it
 * could not be started, timed out, or died of a signal (err_set()).
 */
static int postfix_run(const struct postfix_conf *pc, const struct postfix_cmd *cmd, const char *in,
                       size_t in_len, struct buf *out, struct buf *err, int *status)
{
    int timeout_ms = pc && pc->timeout_ms > 0 ? pc->timeout_ms : POSTFIX_TIMEOUT_MS_DEFAULT;
    int in_pair[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    int report[2] = {-1, -1};
    int in_fd, out_fd, err_fd, child_in, exec_errno = 0, wstatus = 0;
    int64_t deadline = postfix_now_ms() + timeout_ms;
    size_t in_done = 0;
    bool timed_out = false;
    char text[512];
    pid_t pid;

    *status = -1;
    postfix_cmd_text(cmd, text, sizeof text);
    out->limit_bytes = POSTFIX_STDOUT_MAX;
    err->limit_bytes = POSTFIX_STDERR_MAX;
    if (in) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_pair) != 0) goto sys_fail;
        child_in = in_pair[1];
    } else {
        in_pair[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (in_pair[1] < 0) goto sys_fail;
        child_in = in_pair[1];
    }
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0 ||
        pipe2(report, O_CLOEXEC) != 0)
        goto sys_fail;

    pid = fork();
    if (pid < 0) goto sys_fail;
    if (pid == 0) postfix_child(pc, cmd, child_in, out_pipe[1], err_pipe[1], report[1]);

    close(in_pair[1]);
    close(out_pipe[1]);
    close(err_pipe[1]);
    close(report[1]);
    in_fd = in ? in_pair[0] : -1;
    out_fd = out_pipe[0];
    err_fd = err_pipe[0];
    if (in_fd >= 0) {
        fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);
        if (in_len == 0) {
            close(in_fd);
            in_fd = -1;
        }
    }

    while (out_fd >= 0 || err_fd >= 0) {
        struct pollfd pfd[3];
        nfds_t n = 0;
        int64_t left = deadline - postfix_now_ms();
        int rc;
        if (left <= 0) {
            timed_out = true;
            break;
        }
        if (out_fd >= 0) pfd[n++] = (struct pollfd){.fd = out_fd, .events = POLLIN};
        if (err_fd >= 0) pfd[n++] = (struct pollfd){.fd = err_fd, .events = POLLIN};
        if (in_fd >= 0) pfd[n++] = (struct pollfd){.fd = in_fd, .events = POLLOUT};
        rc = poll(pfd, n, (int)left);
        if (rc < 0 && errno != EINTR) break;
        if (rc <= 0) continue;
        for (nfds_t i = 0; i < n; i++) {
            if (pfd[i].revents == 0) continue;
            if (pfd[i].fd == out_fd)
                postfix_drain(&out_fd, out);
            else if (pfd[i].fd == err_fd)
                postfix_drain(&err_fd, err);
            else if (pfd[i].fd == in_fd) {
                ssize_t w = send(in_fd, in + in_done, in_len - in_done, MSG_NOSIGNAL);
                if (w > 0) in_done += (size_t)w;
                if ((w < 0 && errno != EAGAIN && errno != EINTR) || in_done == in_len) {
                    shutdown(in_fd, SHUT_WR);
                    close(in_fd);
                    in_fd = -1;
                }
            }
        }
    }
    if (in_fd >= 0) close(in_fd);
    if (out_fd >= 0) close(out_fd);
    if (err_fd >= 0) close(err_fd);
    if (timed_out) kill(pid, SIGKILL);
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
    if (read(report[0], &exec_errno, sizeof exec_errno) != (ssize_t)sizeof exec_errno)
        exec_errno = 0;
    close(report[0]);

    if (exec_errno) {
        err_set("postfix: cannot run %s: %s%s", cmd->argv[0], strerror(exec_errno),
                exec_errno == ENOENT ? " (is Postfix installed?)" : "");
        return POSTFIX_ERR;
    }
    if (timed_out) {
        err_set("postfix: %s: no answer within %d ms; killed", text, timeout_ms);
        return POSTFIX_ERR;
    }
    if (WIFSIGNALED(wstatus)) {
        err_set("postfix: %s: killed by signal %d", text, WTERMSIG(wstatus));
        return POSTFIX_ERR;
    }
    *status = WEXITSTATUS(wstatus);
    return POSTFIX_OK;

sys_fail:
    err_set("postfix: cannot start %s: %s", text, strerror(errno));
    for (int i = 0; i < 2; i++) {
        if (in_pair[i] >= 0) close(in_pair[i]);
        if (out_pipe[i] >= 0) close(out_pipe[i]);
        if (err_pipe[i] >= 0) close(err_pipe[i]);
        if (report[i] >= 0) close(report[i]);
    }
    return POSTFIX_ERR;
}

/* stderr made fit for a one-line message: newlines become "; ", truncated. */
static void postfix_err_text(const struct buf *err, char *text, size_t size)
{
    size_t i, used = 0;
    text[0] = '\0';
    for (i = 0; i < err->len && used + 3 < size; i++) {
        char c = err->data[i];
        if (c == '\n') {
            if (i + 1 < err->len) {
                text[used++] = ';';
                text[used++] = ' ';
            }
        } else if ((unsigned char)c >= 0x20) {
            text[used++] = c;
        }
    }
    text[used] = '\0';
}

/* Runs cmd and requires exit status 0; otherwise POSTFIX_ERR naming the command and its stderr. */
static int postfix_run_ok(const struct postfix_conf *pc, const struct postfix_cmd *cmd,
                          const char *in, size_t in_len, struct buf *out, struct buf *err)
{
    char text[512], shown[POSTFIX_ERR_SHOWN];
    int status, rc = postfix_run(pc, cmd, in, in_len, out, err, &status);
    if (rc != POSTFIX_OK) return rc;
    if (status == 0) return POSTFIX_OK;
    postfix_cmd_text(cmd, text, sizeof text);
    postfix_err_text(err, shown, sizeof shown);
    err_set("postfix: %s: exit status %d: %s", text, status, shown[0] ? shown : "(no message)");
    return POSTFIX_ERR;
}

/* ---- listing ---- */

static char *postfix_json_string(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? xstrdup(s) : NULL;
}

static void postfix_item_free(struct postfix_queue_item *it)
{
    size_t i;
    free(it->queue_id);
    free(it->queue_name);
    free(it->sender);
    for (i = 0; i < it->n_recipients; i++)
        free(it->recipients[i]);
    free(it->recipients);
    free(it->delay_reason);
}

void postfix_queue_list_free(struct postfix_queue_list *list)
{
    size_t i;
    if (list == NULL) return;
    for (i = 0; i < list->n; i++)
        postfix_item_free(&list->items[i]);
    free(list->items);
    list->items = NULL;
    list->n = 0;
}

/* Fills it from one postqueue -j object; -1 if a required member is missing. */
static int postfix_item_parse(json_t *obj, struct postfix_queue_item *it)
{
    json_t *rcpts = json_object_get(obj, "recipients");
    size_t i, n;

    memset(it, 0, sizeof *it);
    it->queue_name = postfix_json_string(obj, "queue_name");
    it->queue_id = postfix_json_string(obj, "queue_id");
    it->sender = postfix_json_string(obj, "sender");
    if (!it->queue_name || !postfix_queue_id_valid(it->queue_id) || !it->sender ||
        !json_is_array(rcpts))
        return -1;
    it->arrival_time = json_integer_value(json_object_get(obj, "arrival_time"));
    it->size_bytes = json_integer_value(json_object_get(obj, "message_size"));
    n = json_array_size(rcpts);
    it->recipients = xcalloc(n ? n : 1, sizeof *it->recipients);
    for (i = 0; i < n; i++) {
        json_t *r = json_array_get(rcpts, i);
        const char *addr = json_string_value(json_object_get(r, "address"));
        if (addr == NULL) return -1;
        it->recipients[it->n_recipients++] = xstrdup(addr);
        if (it->delay_reason == NULL) it->delay_reason = postfix_json_string(r, "delay_reason");
    }
    return 0;
}

int postfix_hold_list(const struct postfix_conf *pc, struct postfix_queue_list *out)
{
    struct postfix_cmd cmd;
    struct buf text = {0}, err = {0};
    size_t cap = 0, line_no = 0;
    char *line, *next;
    int rc;

    memset(out, 0, sizeof *out);
    postfix_cmd_init(&cmd, pc, "postqueue", "-c");
    postfix_arg(&cmd, "-j");
    rc = postfix_run_ok(pc, &cmd, NULL, 0, &text, &err);
    if (rc == POSTFIX_OK && text.truncated) {
        err_set("postfix: postqueue -j printed more than %u bytes", POSTFIX_STDOUT_MAX);
        rc = POSTFIX_ERR;
    }
    for (line = text.data; rc == POSTFIX_OK && line && *line; line = next) {
        json_error_t jerr;
        json_t *obj;
        struct postfix_queue_item item;

        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        line_no++;
        if (*line == '\0') continue;
        obj = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(obj)) {
            err_set("postfix: postqueue -j line %zu is not a JSON object: %s", line_no,
                    obj ? "another JSON value" : jerr.text);
            json_decref(obj);
            rc = POSTFIX_ERR;
            break;
        }
        if (postfix_item_parse(obj, &item) != 0) {
            err_set("postfix: postqueue -j line %zu lacks queue_name, queue_id, sender or "
                    "recipients",
                    line_no);
            postfix_item_free(&item);
            json_decref(obj);
            rc = POSTFIX_ERR;
            break;
        }
        json_decref(obj);
        if (strcmp(item.queue_name, "hold") != 0) {
            postfix_item_free(&item);
            continue;
        }
        if (out->n == cap) {
            cap = cap ? cap * 2 : 64;
            out->items = xrealloc(out->items, cap * sizeof *out->items);
        }
        out->items[out->n++] = item;
    }
    buf_free(&text);
    buf_free(&err);
    return rc;
}

/* ---- one message ---- */

/* Maps postcat's "no such file" to POSTFIX_NOT_FOUND. */
static int postfix_postcat(const struct postfix_conf *pc, const char *id, const char *flags,
                           struct buf *out)
{
    struct postfix_cmd cmd;
    struct buf err = {0};
    int rc;

    postfix_cmd_init(&cmd, pc, "postcat", "-c");
    if (flags) postfix_arg(&cmd, flags);
    postfix_arg(&cmd, "-q");
    postfix_arg(&cmd, id);
    rc = postfix_run_ok(pc, &cmd, NULL, 0, out, &err);
    if (rc == POSTFIX_ERR && err.data && strstr(err.data, "No such file or directory")) {
        err_set("postfix: no message %s in the queue", id);
        rc = POSTFIX_NOT_FOUND;
    }
    buf_free(&err);
    return rc;
}

/* The queue name of postcat's "*** ENVELOPE RECORDS QUEUE/ID ***" line, or NULL. */
static char *postfix_postcat_queue(const char *text)
{
    const char *p = strstr(text, "*** ENVELOPE RECORDS ");
    const char *slash;
    if (p == NULL) return NULL;
    p += strlen("*** ENVELOPE RECORDS ");
    slash = strchr(p, '/');
    if (slash == NULL || memchr(p, '\n', (size_t)(slash - p))) return NULL;
    return xstrndup(p, (size_t)(slash - p));
}

int postfix_show(const struct postfix_conf *pc, const char *id, struct buf *out)
{
    struct buf text = {0};
    char *queue;
    int rc = postfix_check_id(id);
    if (rc != POSTFIX_OK) return rc;
    rc = postfix_postcat(pc, id, NULL, &text);
    if (rc == POSTFIX_OK) {
        queue = postfix_postcat_queue(text.data ? text.data : "");
        if (queue == NULL || strcmp(queue, "hold") != 0) {
            err_set("postfix: message %s is not in the hold queue (%s)", id,
                    queue ? queue : "queue unknown");
            rc = POSTFIX_NOT_FOUND;
        } else {
            buf_append(out, text.data, text.len);
        }
        free(queue);
    }
    buf_free(&text);
    return rc;
}

void postfix_envelope_free(struct postfix_envelope *env)
{
    size_t i;
    if (env == NULL) return;
    free(env->queue_name);
    free(env->sender);
    for (i = 0; i < env->n_recipients; i++)
        free(env->recipients[i]);
    free(env->recipients);
    free(env->headers);
    memset(env, 0, sizeof *env);
}

int postfix_envelope_read(const struct postfix_conf *pc, const char *id,
                          struct postfix_envelope *out)
{
    struct buf text = {0}, headers = {0};
    size_t cap = 0;
    char *line, *next;
    enum { BEFORE, ENVELOPE, HEADERS, AFTER } part = BEFORE;
    int rc;

    memset(out, 0, sizeof *out);
    if ((rc = postfix_check_id(id)) != POSTFIX_OK) return rc;
    rc = postfix_postcat(pc, id, "-eh", &text);
    if (rc != POSTFIX_OK) goto done;
    out->queue_name = postfix_postcat_queue(text.data ? text.data : "");
    if (out->queue_name == NULL || strcmp(out->queue_name, "hold") != 0) {
        err_set("postfix: message %s is not in the hold queue (%s)", id,
                out->queue_name ? out->queue_name : "queue unknown");
        rc = POSTFIX_NOT_FOUND;
        goto done;
    }
    for (line = text.data; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        if (strncmp(line, "*** ", 4) == 0) {
            if (strncmp(line, "*** ENVELOPE RECORDS", 20) == 0)
                part = ENVELOPE;
            else if (strncmp(line, "*** MESSAGE CONTENTS", 20) == 0)
                part = HEADERS;
            else
                part = AFTER;
            continue;
        }
        if (part == ENVELOPE && strncmp(line, "sender: ", 8) == 0 && out->sender == NULL) {
            out->sender = xstrdup(line + 8);
        } else if (part == ENVELOPE && strcmp(line, "sender:") == 0 && out->sender == NULL) {
            out->sender = xstrdup("");
        } else if (part == ENVELOPE && strncmp(line, "recipient: ", 11) == 0) {
            if (out->n_recipients == cap) {
                cap = cap ? cap * 2 : 8;
                out->recipients = xrealloc(out->recipients, cap * sizeof *out->recipients);
            }
            out->recipients[out->n_recipients++] = xstrdup(line + 11);
        } else if (part == HEADERS) {
            buf_append_str(&headers, line);
            buf_append_char(&headers, '\n');
        }
    }
    if (out->sender == NULL) {
        err_set("postfix: postcat shows no sender for %s", id);
        rc = POSTFIX_ERR;
        goto done;
    }
    out->headers = buf_release(&headers);
done:
    buf_free(&text);
    buf_free(&headers);
    return rc;
}

/* The N of postsuper's "LABEL: N message(s)" on stderr, or -1 if absent. */
static long postfix_postsuper_count(const struct buf *err, const char *label)
{
    const char *p = err->data ? strstr(err->data, label) : NULL;
    if (p == NULL) return -1;
    return strtol(p + strlen(label), NULL, 10);
}

/* Runs postsuper FLAG ID [hold] and checks its count of messages affected. */
static int postfix_postsuper(const struct postfix_conf *pc, const char *flag, const char *id,
                             const char *label)
{
    struct postfix_cmd cmd;
    struct buf out = {0}, err = {0};
    int rc;
    long count;

    postfix_cmd_init(&cmd, pc, "postsuper", "-c");
    postfix_arg(&cmd, flag);
    postfix_arg(&cmd, id);
    if (strcmp(flag, "-d") == 0) postfix_arg(&cmd, "hold"); /* never delete mail in transit */
    rc = postfix_run_ok(pc, &cmd, NULL, 0, &out, &err);
    if (rc == POSTFIX_OK) {
        count = postfix_postsuper_count(&err, label);
        if (count == 0) {
            err_set("postfix: no message %s in the hold queue", id);
            rc = POSTFIX_NOT_FOUND;
        } else if (count < 0) {
            char shown[POSTFIX_ERR_SHOWN];
            postfix_err_text(&err, shown, sizeof shown);
            err_set("postfix: postsuper %s %s: unexpected answer: %s", flag, id,
                    shown[0] ? shown : "(nothing)");
            rc = POSTFIX_ERR;
        }
    }
    buf_free(&out);
    buf_free(&err);
    return rc;
}

int postfix_release(const struct postfix_conf *pc, const char *id)
{
    struct postfix_cmd cmd;
    struct buf out = {0}, err = {0};
    int rc = postfix_check_id(id);
    if (rc != POSTFIX_OK) return rc;
    rc = postfix_postsuper(pc, "-H", id, "Released from hold: ");
    if (rc != POSTFIX_OK) return rc;
    postfix_cmd_init(&cmd, pc, "postqueue", "-c");
    postfix_arg(&cmd, "-i");
    postfix_arg(&cmd, id);
    if (postfix_run_ok(pc, &cmd, NULL, 0, &out, &err) != POSTFIX_OK)
        log_warn("msg=\"released message not flushed; it goes at the next queue run\" "
                 "queue_id=%s reason=\"%s\"",
                 id, err_msg());
    buf_free(&out);
    buf_free(&err);
    return POSTFIX_OK;
}

int postfix_delete(const struct postfix_conf *pc, const char *id)
{
    int rc = postfix_check_id(id);
    if (rc != POSTFIX_OK) return rc;
    return postfix_postsuper(pc, "-d", id, "Deleted: ");
}

/* Appends s with every control character (and DEL) replaced by a space, at most max bytes. */
static void postfix_append_clean(struct buf *b, const char *s, size_t max)
{
    size_t i;
    for (i = 0; i < max && s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        buf_append_char(b, c < 0x20 || c == 0x7f ? ' ' : (char)c);
    }
}

/* An RFC 5322 date for now, independent of the locale. */
static void postfix_date(char *out, size_t size, time_t now)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(out, size, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Postfix's myhostname (postconf -h), for the notice's Reporting-MTA; "localhost" if unknown. */
static void postfix_myhostname(const struct postfix_conf *pc, char *out, size_t size)
{
    struct postfix_cmd cmd;
    struct buf text = {0}, err = {0};
    size_t len;

    snprintf(out, size, "localhost");
    postfix_cmd_init(&cmd, pc, "postconf", "-c");
    postfix_arg(&cmd, "-h");
    postfix_arg(&cmd, "myhostname");
    if (postfix_run_ok(pc, &cmd, NULL, 0, &text, &err) == POSTFIX_OK && text.data) {
        len = strcspn(text.data, "\r\n \t;");
        if (len > 0 && len < size) snprintf(out, size, "%.*s", (int)len, text.data);
    }
    buf_free(&text);
    buf_free(&err);
}

/* Composes the delivery status notification for a rejected held message. */
static void postfix_dsn(struct buf *b, const char *id, const struct postfix_envelope *env,
                        const char *reason, const char *hostname)
{
    char date[64], boundary[96];
    time_t now = time(NULL);
    size_t i;

    postfix_date(date, sizeof date, now);
    snprintf(boundary, sizeof boundary, "mxwarden-dsn-%s-%lld", id, (long long)now);
    buf_printf(b, "From: Mail Delivery System <MAILER-DAEMON>\n"
                  "To: <");
    postfix_append_clean(b, env->sender, 1000);
    buf_printf(b,
               ">\n"
               "Subject: Undelivered Mail Returned to Sender\n"
               "Date: %s\n"
               "Auto-Submitted: auto-replied\n"
               "MIME-Version: 1.0\n"
               "Content-Type: multipart/report; report-type=delivery-status;\n"
               "\tboundary=\"%s\"\n"
               "\n"
               "This is a MIME-encapsulated message.\n"
               "\n"
               "--%s\n"
               "Content-Type: text/plain; charset=utf-8\n"
               "\n"
               "Your message (queue id %s) was not delivered to the recipients below:\n"
               "it was held by the recipient site's mail filter and then rejected by an\n"
               "operator.\n\n",
               date, boundary, boundary, id);
    for (i = 0; i < env->n_recipients; i++) {
        buf_append_str(b, "    <");
        postfix_append_clean(b, env->recipients[i], 1000);
        buf_append_str(b, ">\n");
    }
    buf_append_str(b, "\nReason: ");
    postfix_append_clean(b, reason, POSTFIX_REASON_MAX);
    buf_printf(b,
               "\n\n--%s\n"
               "Content-Type: message/delivery-status\n"
               "\n"
               "Reporting-MTA: dns; %s\n"
               "X-Postfix-Queue-ID: %s\n",
               boundary, hostname, id);
    for (i = 0; i < env->n_recipients; i++) {
        buf_append_str(b, "\nFinal-Recipient: rfc822; ");
        postfix_append_clean(b, env->recipients[i], 1000);
        buf_append_str(b, "\nAction: failed\nStatus: 5.7.1\nDiagnostic-Code: X-mxwarden; ");
        postfix_append_clean(b, reason, POSTFIX_REASON_MAX);
        buf_append_str(b, "\n");
    }
    buf_printf(b,
               "\n--%s\n"
               "Content-Type: text/rfc822-headers\n"
               "\n",
               boundary);
    buf_append_str(b, env->headers ? env->headers : "");
    buf_printf(b, "\n--%s--\n", boundary);
}

int postfix_reject(const struct postfix_conf *pc, const char *id, const char *reason)
{
    struct postfix_envelope env;
    struct postfix_cmd cmd;
    struct buf dsn = {0}, out = {0}, err = {0};
    int rc;

    if (reason == NULL || *reason == '\0') reason = "message rejected by the recipient's site";
    rc = postfix_envelope_read(pc, id, &env);
    if (rc != POSTFIX_OK) goto done;
    if (env.sender[0] == '\0') {
        log_info("msg=\"rejected message has the null sender; no notice sent\" queue_id=%s", id);
    } else {
        char hostname[256];
        postfix_myhostname(pc, hostname, sizeof hostname);
        postfix_dsn(&dsn, id, &env, reason, hostname);
        postfix_cmd_init(&cmd, pc, "sendmail", "-C");
        postfix_arg(&cmd, "-f");
        postfix_arg(&cmd, "<>"); /* a notice never gets a notice back */
        postfix_arg(&cmd, "-i");
        postfix_arg(&cmd, "--");
        postfix_arg(&cmd, env.sender);
        rc = postfix_run_ok(pc, &cmd, dsn.data, dsn.len, &out, &err);
        if (rc != POSTFIX_OK) {
            err_set("postfix: notice to the sender of %s not sent; message left held: %s", id,
                    err_msg());
            goto done;
        }
    }
    rc = postfix_delete(pc, id);
    if (rc == POSTFIX_NOT_FOUND) {
        /* Gone between the read and the delete (another operator): the notice went, which is
         * what was asked. */
        log_warn("msg=\"rejected message vanished before delete\" queue_id=%s", id);
        rc = POSTFIX_OK;
    }
done:
    postfix_envelope_free(&env);
    buf_free(&dsn);
    buf_free(&out);
    buf_free(&err);
    return rc;
}

/* ---- bulk ---- */

const char *postfix_action_name(enum postfix_action action)
{
    switch (action) {
    case POSTFIX_RELEASE:
        return "release";
    case POSTFIX_DELETE:
        return "delete";
    case POSTFIX_REJECT:
        return "reject";
    }
    return "?";
}

size_t postfix_bulk(const struct postfix_conf *pc, enum postfix_action action,
                    const char *const *ids, size_t n, const char *reason,
                    struct postfix_outcome *outcomes)
{
    size_t i, failed = 0;
    for (i = 0; i < n; i++) {
        int rc;
        switch (action) {
        case POSTFIX_RELEASE:
            rc = postfix_release(pc, ids[i]);
            break;
        case POSTFIX_DELETE:
            rc = postfix_delete(pc, ids[i]);
            break;
        case POSTFIX_REJECT:
        default:
            rc = postfix_reject(pc, ids[i], reason);
            break;
        }
        outcomes[i].rc = rc;
        outcomes[i].error = rc == POSTFIX_OK ? NULL : xstrdup(err_msg());
        if (rc != POSTFIX_OK) failed++;
    }
    return failed;
}

void postfix_outcomes_free(struct postfix_outcome *outcomes, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        free(outcomes[i].error);
        outcomes[i].error = NULL;
    }
}
