/*
 * quarantine_cmd - the `mxwarden quarantine` command. See quarantine_cmd.h.
 *
 * Arguments, ids included, are checked completely before anything runs, so a
 * typo never half-applies a bulk action. Actions open the records database
 * first and refuse to run without it: the audit log must see everything an
 * operator did. Each audit row is written after its action with the outcome
 * in its details ({"result":"ok"} or the error), so a failed attempt is on
 * record too; if the row cannot be written after the action happened, the
 * command says so and fails (exit 1), because the action cannot be undone.
 */
#include "mta/quarantine_cmd.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "mta/postfix.h"
#include "store/db.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QCMD_OK        0
#define QCMD_FAIL      1
#define QCMD_USAGE     2
#define QCMD_NOT_FOUND 3

struct qcmd {
    const struct quarantine_env *env;
    struct postfix_conf pc;
    struct db *db;
    const char *actor;
    FILE *out, *err;
    int status; /* the worst outcome so far */
};

static void qcmd_usage(FILE *err)
{
    fprintf(err, "usage: mxwarden quarantine list\n"
                 "       mxwarden quarantine show ID\n"
                 "       mxwarden quarantine release [--allow-sender] ID...\n"
                 "       mxwarden quarantine delete ID...\n"
                 "       mxwarden quarantine reject [--reason TEXT] ID...\n"
                 "       mxwarden quarantine purge [--older-than DAYS]\n"
                 "ID: a Postfix queue id of the hold queue ([0-9A-Za-z]+)\n");
}

/* Records an outcome: failures outrank not-found, which outranks success. */
static void qcmd_outcome(struct qcmd *q, int rc)
{
    int status = rc == POSTFIX_OK ? QCMD_OK : rc == POSTFIX_NOT_FOUND ? QCMD_NOT_FOUND : QCMD_FAIL;
    if (status == QCMD_FAIL || (status == QCMD_NOT_FOUND && q->status == QCMD_OK))
        q->status = status;
}

static int qcmd_open_db(struct qcmd *q)
{
    const char *uri = q->env->db_uri ? q->env->db_uri : DB_URI_DEFAULT;
    if (db_open(uri, &q->db) == DB_OK) return 0;
    fprintf(q->err, "mxwarden quarantine: cannot open the records database: %s\n", err_msg());
    return -1;
}

/* Writes the audit row of one action; details gets {"result":..., "error":..., extra}. */
static void qcmd_audit(struct qcmd *q, const char *action, const char *target, int rc,
                       const char *extra_key, const char *extra_value)
{
    struct buf details = {0};
    const char *result = rc == POSTFIX_OK ? "ok" : rc == POSTFIX_NOT_FOUND ? "not_found" : "error";
    buf_printf(&details, "{\"result\":\"%s\"", result);
    if (rc != POSTFIX_OK) {
        const char *why = err_msg();
        buf_append_str(&details, ",\"error\":");
        buf_append_json_string(&details, why, strlen(why));
    }
    if (extra_key && extra_value) {
        buf_printf(&details, ",\"%s\":", extra_key);
        buf_append_json_string(&details, extra_value, strlen(extra_value));
    }
    buf_append_char(&details, '}');
    if (db_audit_add(q->db, q->actor, action, target, details.data, NULL) != DB_OK) {
        fprintf(q->err,
                "mxwarden quarantine: %s %s was done but not recorded in the audit log: "
                "%s\n",
                action, target ? target : "", err_msg());
        q->status = QCMD_FAIL;
    }
    buf_free(&details);
}

/* Prints s with control characters as spaces (a field of a tab-separated line). */
static void qcmd_field(FILE *out, const char *s)
{
    for (; s && *s; s++)
        fputc((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s, out);
}

static void qcmd_time(char *text, size_t size, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL || strftime(text, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(text, size, "%lld", (long long)t);
}

static int qcmd_list(struct qcmd *q)
{
    struct postfix_queue_list held;
    size_t i, j;
    int rc;

    /* The join is a convenience: without the database the queue is still worth seeing. */
    if (db_open(q->env->db_uri ? q->env->db_uri : DB_URI_DEFAULT, &q->db) != DB_OK) {
        fprintf(q->err, "mxwarden quarantine: message log unavailable, listing without it: %s\n",
                err_msg());
        q->db = NULL;
    }
    rc = postfix_hold_list(&q->pc, &held);
    if (rc != POSTFIX_OK) {
        fprintf(q->err, "mxwarden quarantine: cannot list the hold queue: %s\n", err_msg());
        postfix_queue_list_free(&held);
        return QCMD_FAIL;
    }
    for (i = 0; i < held.n; i++) {
        const struct postfix_queue_item *it = &held.items[i];
        struct db_message logged = {0};
        bool found = false;
        char when[32];

        if (q->db && db_message_get_by_queue_id(q->db, it->queue_id, &logged, &found) != DB_OK) {
            fprintf(q->err, "mxwarden quarantine: message log lookup of %s failed: %s\n",
                    it->queue_id, err_msg());
            q->status = QCMD_FAIL;
        }
        qcmd_time(when, sizeof when, it->arrival_time);
        fprintf(q->out, "%s\t%s\t%lld\t", it->queue_id, when, (long long)it->size_bytes);
        qcmd_field(q->out, it->sender);
        fputc('\t', q->out);
        for (j = 0; j < it->n_recipients; j++) {
            if (j) fputc(',', q->out);
            qcmd_field(q->out, it->recipients[j]);
        }
        if (found)
            fprintf(q->out, "\t%.2f\t", logged.score);
        else
            fputs("\t-\t", q->out);
        if (found) qcmd_field(q->out, logged.subject);
        fputc('\t', q->out);
        if (found) qcmd_field(q->out, logged.reason ? logged.reason : logged.decided_by);
        fputc('\n', q->out);
        db_message_free(&logged);
    }
    postfix_queue_list_free(&held);
    return q->status;
}

static int qcmd_show(struct qcmd *q, const char *id)
{
    struct buf text = {0};
    int rc;
    if (qcmd_open_db(q) != 0) return QCMD_FAIL;
    rc = postfix_show(&q->pc, id, &text);
    if (rc == POSTFIX_OK)
        fwrite(text.data, 1, text.len, q->out);
    else
        fprintf(q->err, "mxwarden quarantine: %s: %s\n", id, err_msg());
    qcmd_outcome(q, rc);
    qcmd_audit(q, "quarantine.show", id, rc, NULL, NULL);
    buf_free(&text);
    return q->status;
}

/* Prints one bulk item's outcome. */
static void qcmd_report(struct qcmd *q, const char *id, int rc, const char *done, const char *error)
{
    if (rc == POSTFIX_OK)
        fprintf(q->out, "%s: %s\n", id, done);
    else if (rc == POSTFIX_NOT_FOUND)
        fprintf(q->err, "mxwarden quarantine: %s: not in the hold queue\n", id);
    else
        fprintf(q->err, "mxwarden quarantine: %s: %s\n", id, error ? error : err_msg());
    qcmd_outcome(q, rc);
}

/* Adds an allow rule for the sender of a released message, with its own audit row. */
static void qcmd_allow_sender(struct qcmd *q, const char *id, const char *sender)
{
    char note[160];
    if (sender == NULL || sender[0] == '\0') {
        fprintf(q->out, "%s: null sender, no rule added\n", id);
        return;
    }
    snprintf(note, sizeof note, "released %s by %.100s", id, q->actor);
    if (db_sender_rule_add(q->db, "address", sender, "allow", note, NULL) != DB_OK) {
        fprintf(q->err, "mxwarden quarantine: %s: sender rule not added: %s\n", id, err_msg());
        q->status = QCMD_FAIL;
        qcmd_audit(q, "sender_rule.add", sender, POSTFIX_ERR, "queue_id", id);
        return;
    }
    fprintf(q->out, "%s: sender ", id);
    qcmd_field(q->out, sender);
    fprintf(q->out, " allowed\n");
    qcmd_audit(q, "sender_rule.add", sender, POSTFIX_OK, "queue_id", id);
}

static int qcmd_release(struct qcmd *q, char **ids, size_t n, bool allow_sender)
{
    size_t i;
    if (qcmd_open_db(q) != 0) return QCMD_FAIL;
    for (i = 0; i < n; i++) {
        struct postfix_envelope env = {0};
        int rc = POSTFIX_OK;
        /* The sender comes from the queue file itself, read before the release moves it. */
        if (allow_sender) rc = postfix_envelope_read(&q->pc, ids[i], &env);
        if (rc == POSTFIX_OK) rc = postfix_release(&q->pc, ids[i]);
        qcmd_report(q, ids[i], rc, "released", NULL);
        qcmd_audit(q, "quarantine.release", ids[i], rc, allow_sender ? "sender" : NULL, env.sender);
        if (rc == POSTFIX_OK && allow_sender) qcmd_allow_sender(q, ids[i], env.sender);
        postfix_envelope_free(&env);
    }
    return q->status;
}

static int qcmd_delete_or_reject(struct qcmd *q, enum postfix_action action, char **ids, size_t n,
                                 const char *reason)
{
    struct postfix_outcome *outcomes;
    char audit_action[32];
    size_t i;

    if (qcmd_open_db(q) != 0) return QCMD_FAIL;
    outcomes = xcalloc(n, sizeof *outcomes);
    postfix_bulk(&q->pc, action, (const char *const *)ids, n, reason, outcomes);
    snprintf(audit_action, sizeof audit_action, "quarantine.%s", postfix_action_name(action));
    for (i = 0; i < n; i++) {
        qcmd_report(q, ids[i], outcomes[i].rc, action == POSTFIX_DELETE ? "deleted" : "rejected",
                    outcomes[i].error);
        if (outcomes[i].error) err_set("%s", outcomes[i].error); /* for the audit details */
        qcmd_audit(q, audit_action, ids[i], outcomes[i].rc,
                   action == POSTFIX_REJECT && reason ? "reason" : NULL, reason);
    }
    postfix_outcomes_free(outcomes, n);
    free(outcomes);
    return q->status;
}

static int qcmd_purge(struct qcmd *q, long days)
{
    struct postfix_queue_list held;
    int64_t cutoff = (int64_t)time(NULL) - (int64_t)days * 86400;
    size_t i, purged = 0;
    char detail[32];

    if (qcmd_open_db(q) != 0) return QCMD_FAIL;
    if (postfix_hold_list(&q->pc, &held) != POSTFIX_OK) {
        fprintf(q->err, "mxwarden quarantine: cannot list the hold queue: %s\n", err_msg());
        postfix_queue_list_free(&held);
        return QCMD_FAIL;
    }
    snprintf(detail, sizeof detail, "%ld", days);
    for (i = 0; i < held.n; i++) {
        const struct postfix_queue_item *it = &held.items[i];
        int rc;
        if (it->arrival_time >= cutoff) continue;
        rc = postfix_delete(&q->pc, it->queue_id);
        /* Released or deleted by someone else meanwhile: nothing left to purge. */
        if (rc == POSTFIX_NOT_FOUND) continue;
        if (rc == POSTFIX_OK) purged++;
        qcmd_report(q, it->queue_id, rc, "purged", NULL);
        qcmd_audit(q, "quarantine.purge", it->queue_id, rc, "older_than_days", detail);
    }
    fprintf(q->out, "purged %zu of %zu held messages (older than %ld days)\n", purged, held.n,
            days);
    postfix_queue_list_free(&held);
    return q->status;
}

/* Parses a non-negative number of days; -1 if text is not one. */
static long qcmd_days(const char *text)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < 0 || v > 36500) return -1;
    return v;
}

int quarantine_command(int argc, char **argv, const struct quarantine_env *env, FILE *out,
                       FILE *err)
{
    struct qcmd q = {0};
    const char *verb, *reason = NULL;
    bool allow_sender = false;
    long days = env->retention_days > 0 ? env->retention_days : QUARANTINE_RETENTION_DAYS_DEFAULT;
    char **ids;
    size_t n_ids = 0;
    int i, status;

    if (argc < 2) {
        qcmd_usage(err);
        return QCMD_USAGE;
    }
    verb = argv[1];
    if (strcmp(verb, "list") != 0 && strcmp(verb, "show") != 0 && strcmp(verb, "release") != 0 &&
        strcmp(verb, "delete") != 0 && strcmp(verb, "reject") != 0 && strcmp(verb, "purge") != 0) {
        fprintf(err, "mxwarden quarantine: unknown command \"%s\"\n", verb);
        qcmd_usage(err);
        return QCMD_USAGE;
    }
    ids = xcalloc((size_t)argc, sizeof *ids);
    for (i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--allow-sender") == 0 && strcmp(verb, "release") == 0) {
            allow_sender = true;
        } else if (strcmp(a, "--reason") == 0 && strcmp(verb, "reject") == 0 && i + 1 < argc) {
            reason = argv[++i];
        } else if (strcmp(a, "--older-than") == 0 && strcmp(verb, "purge") == 0 && i + 1 < argc) {
            days = qcmd_days(argv[++i]);
            if (days < 0) {
                fprintf(err, "mxwarden quarantine: --older-than \"%s\" is not a number of days\n",
                        argv[i]);
                free(ids);
                return QCMD_USAGE;
            }
        } else if (a[0] == '-') {
            fprintf(err, "mxwarden quarantine: unknown option \"%s\" for %s\n", a, verb);
            qcmd_usage(err);
            free(ids);
            return QCMD_USAGE;
        } else if (!postfix_queue_id_valid(a)) {
            fprintf(err, "mxwarden quarantine: \"%s\" is not a queue id ([0-9A-Za-z]+)\n", a);
            free(ids);
            return QCMD_USAGE;
        } else {
            ids[n_ids++] = argv[i];
        }
    }
    if (((strcmp(verb, "list") == 0 || strcmp(verb, "purge") == 0) && n_ids > 0) ||
        (strcmp(verb, "show") == 0 && n_ids != 1) ||
        (strcmp(verb, "list") != 0 && strcmp(verb, "purge") != 0 && n_ids == 0)) {
        qcmd_usage(err);
        free(ids);
        return QCMD_USAGE;
    }

    q.env = env;
    q.pc.config_dir = env->postfix_config_dir;
    q.pc.bin_dir = env->postfix_bin_dir;
    q.actor = env->actor && env->actor[0] ? env->actor : "unknown";
    q.out = out;
    q.err = err;
    if (strcmp(verb, "list") == 0)
        status = qcmd_list(&q);
    else if (strcmp(verb, "show") == 0)
        status = qcmd_show(&q, ids[0]);
    else if (strcmp(verb, "release") == 0)
        status = qcmd_release(&q, ids, n_ids, allow_sender);
    else if (strcmp(verb, "delete") == 0)
        status = qcmd_delete_or_reject(&q, POSTFIX_DELETE, ids, n_ids, NULL);
    else if (strcmp(verb, "reject") == 0)
        status = qcmd_delete_or_reject(&q, POSTFIX_REJECT, ids, n_ids, reason);
    else
        status = qcmd_purge(&q, days);
    db_close(q.db);
    free(ids);
    return status;
}
