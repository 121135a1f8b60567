/*
 * senders_cmd - the `mxwarden senders` command. See senders_cmd.h.
 *
 * A value is validated by building a one-rule sender_rules snapshot of it:
 * the same code the gateway loads the table with, so the command cannot
 * store a rule the gateway would refuse (which would stop the gateway from
 * taking up any later change: a snapshot with a bad rule is not built). The
 * snapshot also gives the normalised text we store. Domains get one check
 * more than the snapshot makes (labels of host-name characters, no empty
 * label), and a value of digits and dots that is not an IPv4 address is
 * refused rather than taken for a domain, so "192.0.2.300" is a typo, not a
 * rule that never matches.
 *
 * Audit rows are written after each change, as quarantine_cmd does; if one
 * cannot be written the command says so and exits 1, because the change
 * itself is done.
 */
#include "mta/senders_cmd.h"
#include "checks/sender_rules.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/utf8.h"
#include "core/xalloc.h"
#include "store/db.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SENDERS_OK        0
#define SENDERS_STORE     1
#define SENDERS_USAGE     2
#define SENDERS_NOT_FOUND 3

#define SENDERS_MAX_COMMENT 1024 /* bytes */

/* A rule value as the user typed it, resolved to its kind and normalised text. */
struct senders_value {
    enum sender_rule_kind kind;
    char value[DB_MAX_FIELD + 1];
};

static void senders_usage(FILE *err)
{
    fprintf(err,
            "usage: mxwarden senders list\n"
            "       mxwarden senders add allow|block VALUE [--comment TEXT]\n"
            "       mxwarden senders remove ID|VALUE...\n"
            "VALUE: an address (user@example.com), a domain and its subdomains\n"
            "       (example.com), an IP address or a CIDR network (192.0.2.0/24)\n"
            "A running `mxwarden serve` applies changes within %d s (SIGHUP: at once).\n",
            SENDERS_APPLY_DELAY_S);
}

const char *senders_default_actor(void)
{
    const char *who = getenv("SUDO_USER");
    if (who && *who) return who;
    who = getenv("USER");
    if (who && *who) return who;
    return "cli";
}

/* True if s has only digits and dots (what an IPv4 address is written with). */
static bool senders_digits_and_dots(const char *s)
{
    for (; *s; s++)
        if (!(*s >= '0' && *s <= '9') && *s != '.') return false;
    return true;
}

/* A host name of labels of letters, digits, '-' (not first or last), '_' or non-ASCII (an IDN in
 * UTF-8), separated by single dots, with an optional trailing dot; at most 253 bytes. */
static bool senders_domain_ok(const char *d)
{
    size_t len = strlen(d), label = 0, i;
    if (len > 0 && d[len - 1] == '.') len--;
    if (len == 0 || len > 253 || !utf8_valid(d, len)) return false;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c == '.') {
            if (label == 0 || d[i - 1] == '-') return false;
            label = 0;
            continue;
        }
        if (c == '-' && label == 0) return false;
        if (!(c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
        if (++label > 63) return false;
    }
    return d[len - 1] != '-';
}

/*
 * Resolves text into *out: its kind and the normalised value the gateway
 * matches. 0, or -1 after printing why on err.
 */
static int senders_parse_value(const char *text, struct senders_value *out, FILE *err)
{
    struct sender_rule rule = {.value = text, .action = SENDER_RULE_BLOCK};
    const struct sender_rule *matched = NULL;
    struct sender_rules *sr;
    const char *at = strchr(text, '@');
    char host[DB_MAX_FIELD + 1];

    if (text[0] == '\0' || strlen(text) > DB_MAX_FIELD) {
        fprintf(err, "mxwarden senders: invalid value \"%.80s\": empty or longer than %d bytes\n",
                text, DB_MAX_FIELD);
        return -1;
    }
    if (at && at != text) {
        rule.kind = SENDER_RULE_ADDRESS;
        if (!senders_domain_ok(strrchr(text, '@') + 1)) {
            fprintf(err, "mxwarden senders: invalid address \"%s\": bad domain part\n", text);
            return -1;
        }
    } else if (at == NULL &&
               (strchr(text, ':') || strchr(text, '/') || senders_digits_and_dots(text))) {
        rule.kind = SENDER_RULE_IP;
    } else {
        rule.kind = SENDER_RULE_DOMAIN;
        if (at) rule.value = text + 1; /* "@example.com" */
        if (!senders_domain_ok(rule.value)) {
            fprintf(err, "mxwarden senders: invalid domain \"%s\"\n", text);
            return -1;
        }
    }
    sr = sender_rules_new(&rule, 1);
    if (sr == NULL) {
        fprintf(err, "mxwarden senders: invalid %s \"%s\"\n", sender_rule_kind_name(rule.kind),
                text);
        return -1;
    }
    switch (rule.kind) {
    case SENDER_RULE_ADDRESS:
        sender_rules_check_sender(sr, rule.value, &matched);
        break;
    case SENDER_RULE_DOMAIN:
        sender_rules_check_domain(sr, rule.value, &matched);
        break;
    case SENDER_RULE_IP:
        /* The network's own address (or the address) lies inside the rule it makes. */
        snprintf(host, sizeof host, "%.*s", (int)strcspn(rule.value, "/"), rule.value);
        sender_rules_check_ip(sr, host, &matched);
        break;
    }
    assert(matched != NULL);
    out->kind = rule.kind;
    snprintf(out->value, sizeof out->value, "%s", matched ? matched->value : rule.value);
    sender_rules_free(sr);
    return 0;
}

/* A rule id: decimal digits only, 1..INT64_MAX. */
static bool senders_parse_id(const char *text, int64_t *id)
{
    char *end;
    long long v;
    if (text[0] < '0' || text[0] > '9') return false;
    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno || *end || v <= 0) return false;
    *id = (int64_t)v;
    return true;
}

static int senders_open(const char *db_uri, struct db **db, FILE *err)
{
    if (db_open(db_uri ? db_uri : DB_URI_DEFAULT, db) == DB_OK) return SENDERS_OK;
    fprintf(err, "mxwarden senders: cannot open the records database: %s\n", err_msg());
    return SENDERS_STORE;
}

/* Writes one audit row; SENDERS_OK, or SENDERS_STORE after saying the change went unrecorded. */
static int senders_audit(struct db *db, const char *actor, const char *action, int64_t id,
                         const char *kind, const char *value, const char *rule_action,
                         const char *comment, FILE *err)
{
    struct buf details = {0};
    int rc = SENDERS_OK;
    buf_printf(&details, "{\"id\":%lld,\"kind\":\"%s\",\"action\":\"%s\"", (long long)id, kind,
               rule_action);
    if (comment) {
        buf_append_str(&details, ",\"comment\":");
        buf_append_json_string(&details, comment, strlen(comment));
    }
    buf_append_char(&details, '}');
    if (db_audit_add(db, actor, action, value, details.data, NULL) != DB_OK) {
        fprintf(err, "mxwarden senders: %s %s was done but not recorded in the audit log: %s\n",
                action, value, err_msg());
        rc = SENDERS_STORE;
    }
    buf_free(&details);
    return rc;
}

/* Prints s with control characters as spaces (a field of a tab-separated line). */
static void senders_field(FILE *out, const char *s)
{
    for (; s && *s; s++)
        fputc((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s, out);
}

static int senders_list(int argc, const char *db_uri, FILE *out, FILE *err)
{
    struct db_sender_rule_list list;
    struct db *db;
    size_t i;
    int rc;

    if (argc != 2) {
        senders_usage(err);
        return SENDERS_USAGE;
    }
    if ((rc = senders_open(db_uri, &db, err)) != SENDERS_OK) return rc;
    rc = db_sender_rule_list(db, &list);
    db_close(db);
    if (rc != DB_OK) {
        fprintf(err, "mxwarden senders: %s\n", err_msg());
        db_sender_rule_list_free(&list);
        return SENDERS_STORE;
    }
    for (i = 0; i < list.n; i++) {
        const struct db_sender_rule *r = &list.items[i];
        char when[32] = "";
        time_t t = (time_t)r->created;
        struct tm tm;
        if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        fprintf(out, "%lld\t%s\t%s\t", (long long)r->id, r->action, r->kind);
        senders_field(out, r->value);
        fprintf(out, "\t%s\t", when);
        senders_field(out, r->note);
        fputc('\n', out);
    }
    db_sender_rule_list_free(&list);
    return SENDERS_OK;
}

static int senders_add(int argc, char **argv, const char *db_uri, const char *actor, FILE *out,
                       FILE *err)
{
    const char *positional[2], *comment = NULL, *action;
    struct senders_value v;
    struct db *db;
    int64_t id = 0;
    int i, n = 0, rc;

    for (i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--comment") == 0 && i + 1 < argc) {
            comment = argv[++i];
        } else if (strncmp(argv[i], "--comment=", 10) == 0) {
            comment = argv[i] + 10;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(err, "mxwarden senders: unknown option %s\n", argv[i]);
            senders_usage(err);
            return SENDERS_USAGE;
        } else if (n < 2) {
            positional[n++] = argv[i];
        } else {
            n++;
        }
    }
    if (n != 2) {
        senders_usage(err);
        return SENDERS_USAGE;
    }
    action = positional[0];
    if (strcmp(action, "allow") != 0 && strcmp(action, "block") != 0) {
        fprintf(err, "mxwarden senders: action \"%s\" (expected allow or block)\n", action);
        return SENDERS_USAGE;
    }
    if (senders_parse_value(positional[1], &v, err) != 0) return SENDERS_USAGE;
    if (comment) {
        size_t len = strlen(comment), k;
        bool ok = len <= SENDERS_MAX_COMMENT && utf8_valid(comment, len);
        for (k = 0; ok && k < len; k++)
            if ((unsigned char)comment[k] < 0x20 || comment[k] == 0x7f) ok = false;
        if (!ok) {
            fprintf(err,
                    "mxwarden senders: invalid comment: at most %d bytes of UTF-8 text "
                    "without control characters\n",
                    SENDERS_MAX_COMMENT);
            return SENDERS_USAGE;
        }
        if (len == 0) comment = NULL;
    }
    if ((rc = senders_open(db_uri, &db, err)) != SENDERS_OK) return rc;
    if (db_sender_rule_add(db, sender_rule_kind_name(v.kind), v.value, action, comment, &id) !=
        DB_OK) {
        fprintf(err, "mxwarden senders: %s\n", err_msg());
        db_close(db);
        return SENDERS_STORE;
    }
    fprintf(out, "%lld\t%s\t%s\t%s\n", (long long)id, action, sender_rule_kind_name(v.kind),
            v.value);
    rc = senders_audit(db, actor, "sender_rule.add", id, sender_rule_kind_name(v.kind), v.value,
                       action, comment, err);
    db_close(db);
    return rc;
}

/* What one argument of remove names: a rule id, or a (kind, value). */
struct senders_target {
    const char *arg;
    bool by_id;
    int64_t id;
    struct senders_value v;
};

/* The rule of list that t names, or NULL. */
static const struct db_sender_rule *senders_find(const struct db_sender_rule_list *list,
                                                 const struct senders_target *t)
{
    size_t i;
    for (i = 0; i < list->n; i++) {
        const struct db_sender_rule *r = &list->items[i];
        if (t->by_id ? r->id == t->id
                     : strcmp(r->kind, sender_rule_kind_name(t->v.kind)) == 0 &&
                           strcmp(r->value, t->v.value) == 0)
            return r;
    }
    return NULL;
}

static int senders_remove(int argc, char **argv, const char *db_uri, const char *actor, FILE *out,
                          FILE *err)
{
    struct senders_target *targets;
    struct db_sender_rule_list list = {0};
    struct db *db;
    int i, n = argc - 2, status = SENDERS_OK, rc;

    if (n < 1) {
        senders_usage(err);
        return SENDERS_USAGE;
    }
    targets = xcalloc((size_t)n, sizeof *targets);
    for (i = 0; i < n; i++) {
        struct senders_target *t = &targets[i];
        t->arg = argv[i + 2];
        t->by_id = senders_parse_id(t->arg, &t->id);
        if (!t->by_id && senders_parse_value(t->arg, &t->v, err) != 0) {
            free(targets);
            return SENDERS_USAGE;
        }
    }
    if ((rc = senders_open(db_uri, &db, err)) != SENDERS_OK) {
        free(targets);
        return rc;
    }
    if (db_sender_rule_list(db, &list) != DB_OK) {
        fprintf(err, "mxwarden senders: %s\n", err_msg());
        status = SENDERS_STORE;
        goto out;
    }
    for (i = 0; i < n; i++) {
        const struct db_sender_rule *r = senders_find(&list, &targets[i]);
        bool existed = false;
        if (r != NULL && db_sender_rule_delete(db, r->id, &existed) != DB_OK) {
            fprintf(err, "mxwarden senders: %s: %s\n", targets[i].arg, err_msg());
            status = SENDERS_STORE;
            continue;
        }
        if (!existed) {
            fprintf(out, "%s: no such rule\n", targets[i].arg);
            if (status == SENDERS_OK) status = SENDERS_NOT_FOUND;
            continue;
        }
        fprintf(out, "%lld\tremoved\t%s\t%s\t", (long long)r->id, r->action, r->kind);
        senders_field(out, r->value);
        fputc('\n', out);
        if (senders_audit(db, actor, "sender_rule.delete", r->id, r->kind, r->value, r->action,
                          r->note, err) != SENDERS_OK)
            status = SENDERS_STORE;
    }
out:
    db_sender_rule_list_free(&list);
    db_close(db);
    free(targets);
    return status;
}

int senders_command(int argc, char **argv, const char *db_uri, const char *actor, FILE *out,
                    FILE *err)
{
    const char *verb = argc >= 2 ? argv[1] : "";
    if (actor == NULL || actor[0] == '\0') actor = senders_default_actor();
    if (strcmp(verb, "list") == 0) return senders_list(argc, db_uri, out, err);
    if (strcmp(verb, "add") == 0) return senders_add(argc, argv, db_uri, actor, out, err);
    if (strcmp(verb, "remove") == 0) return senders_remove(argc, argv, db_uri, actor, out, err);
    senders_usage(err);
    return SENDERS_USAGE;
}
