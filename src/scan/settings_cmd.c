/*
 * settings_cmd - the `mxwarden settings` command. See settings_cmd.h.
 *
 * Arguments are checked completely before the database is opened, so a typo
 * never creates or touches a database file. Every write goes through
 * settings_apply(), the same validation the console will use, so the command
 * line cannot store what the console would refuse.
 */
#include "scan/settings_cmd.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "scan/settings.h"
#include "store/db.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SETTINGS_CMD_OK      0
#define SETTINGS_CMD_STORE   1
#define SETTINGS_CMD_INVALID 2

static void settings_cmd_usage(FILE *err)
{
    int k;
    fprintf(err, "usage: mxwarden settings set SCOPE KEY VALUE [KEY VALUE]...\n"
                 "       mxwarden settings get SCOPE [KEY]\n"
                 "       mxwarden settings list [SCOPE]\n"
                 "       mxwarden settings unset SCOPE KEY...\n"
                 "SCOPE: global, a domain (example.org) or an address (bob@example.org)\n"
                 "KEY:  ");
    for (k = 0; k < SETTINGS_N_KEYS; k++)
        fprintf(err, " %s", settings_key_name((enum settings_key)k));
    fprintf(err, "\n");
}

/* Parses SCOPE into out; on failure prints why and returns the exit status. */
static int settings_cmd_scope(const char *text, char *out, size_t size, FILE *err)
{
    if (settings_scope_parse(text, out, size) == SETTINGS_OK) return SETTINGS_CMD_OK;
    fprintf(err, "mxwarden settings: invalid scope: %s\n", err_msg());
    return SETTINGS_CMD_INVALID;
}

/* The key named text, or -1 after printing why. */
static int settings_cmd_key(const char *text, FILE *err)
{
    int k = settings_key_find(text);
    if (k < 0) {
        fprintf(err, "mxwarden settings: unknown setting \"%s\"; known:", text);
        for (k = 0; k < SETTINGS_N_KEYS; k++)
            fprintf(err, " %s", settings_key_name((enum settings_key)k));
        fprintf(err, "\n");
        return -1;
    }
    return k;
}

static int settings_cmd_open(const char *db_uri, struct db **db, FILE *err)
{
    if (db_open(db_uri ? db_uri : DB_URI_DEFAULT, db) == DB_OK) return SETTINGS_CMD_OK;
    fprintf(err, "mxwarden settings: %s\n", err_msg());
    return SETTINGS_CMD_STORE;
}

/* Applies changes and reports the outcome; returns the exit status. */
static int settings_cmd_apply(const char *db_uri, const struct settings_change *changes, size_t n,
                              FILE *err)
{
    struct db *db;
    int rc = settings_cmd_open(db_uri, &db, err);
    if (rc != SETTINGS_CMD_OK) return rc;
    rc = settings_apply(db, changes, n);
    db_close(db);
    if (rc == SETTINGS_OK) return SETTINGS_CMD_OK;
    fprintf(err, "mxwarden settings: %s\n", err_msg());
    return rc == SETTINGS_INVALID ? SETTINGS_CMD_INVALID : SETTINGS_CMD_STORE;
}

static int settings_cmd_set(int argc, char **argv, const char *db_uri, FILE *out, FILE *err)
{
    char scope[DB_MAX_SCOPE + 1];
    struct settings_change *changes;
    size_t n = 0;
    int i, rc;

    if (argc < 5 || (argc - 3) % 2 != 0) {
        settings_cmd_usage(err);
        return SETTINGS_CMD_INVALID;
    }
    if ((rc = settings_cmd_scope(argv[2], scope, sizeof scope, err)) != SETTINGS_CMD_OK) return rc;
    changes = xcalloc((size_t)(argc - 3) / 2, sizeof *changes);
    for (i = 3; i + 1 < argc; i += 2) {
        int k = settings_cmd_key(argv[i], err);
        if (k < 0) {
            free(changes);
            return SETTINGS_CMD_INVALID;
        }
        changes[n].scope = scope;
        changes[n].key = (enum settings_key)k;
        changes[n].value = argv[i + 1];
        n++;
    }
    rc = settings_cmd_apply(db_uri, changes, n, err);
    if (rc == SETTINGS_CMD_OK)
        for (i = 3; i + 1 < argc; i += 2)
            fprintf(out, "%s: %s = %s\n", settings_scope_display(scope), argv[i], argv[i + 1]);
    free(changes);
    return rc;
}

static int settings_cmd_unset(int argc, char **argv, const char *db_uri, FILE *out, FILE *err)
{
    char scope[DB_MAX_SCOPE + 1];
    struct settings_change *changes;
    size_t n = 0;
    int i, rc;

    if (argc < 4) {
        settings_cmd_usage(err);
        return SETTINGS_CMD_INVALID;
    }
    if ((rc = settings_cmd_scope(argv[2], scope, sizeof scope, err)) != SETTINGS_CMD_OK) return rc;
    changes = xcalloc((size_t)argc - 3, sizeof *changes);
    for (i = 3; i < argc; i++) {
        int k = settings_cmd_key(argv[i], err);
        if (k < 0) {
            free(changes);
            return SETTINGS_CMD_INVALID;
        }
        changes[n].scope = scope;
        changes[n].key = (enum settings_key)k;
        changes[n].value = NULL;
        n++;
    }
    rc = settings_cmd_apply(db_uri, changes, n, err);
    if (rc == SETTINGS_CMD_OK)
        for (i = 3; i < argc; i++)
            fprintf(out, "%s: %s unset\n", settings_scope_display(scope), argv[i]);
    free(changes);
    return rc;
}

static void settings_cmd_print_effective(FILE *out, const struct settings_effective *e, int key)
{
    const char *name = settings_key_name((enum settings_key)key);
    const char *from = settings_scope_display(e->source[key]);
    switch ((enum settings_key)key) {
    case SETTING_THRESHOLD_TAG:
        fprintf(out, "%s = %g", name, e->thresholds.tag);
        break;
    case SETTING_THRESHOLD_QUARANTINE:
        fprintf(out, "%s = %g", name, e->thresholds.quarantine);
        break;
    case SETTING_THRESHOLD_REJECT:
        fprintf(out, "%s = %g", name, e->thresholds.reject);
        break;
    case SETTING_SUBJECT_PREFIX:
        fprintf(out, "%s = \"%s\"", name, e->subject_prefix);
        break;
    case SETTING_ADD_REPORT_HEADER:
        fprintf(out, "%s = %s", name, e->add_report_header ? "yes" : "no");
        break;
    default:
        return;
    }
    fprintf(out, " (from %s)\n", from);
}

static int settings_cmd_get(int argc, char **argv, const char *db_uri, FILE *out, FILE *err)
{
    char scope[DB_MAX_SCOPE + 1];
    struct settings *s;
    struct db *db;
    int key = -1, k, rc;

    if (argc != 3 && argc != 4) {
        settings_cmd_usage(err);
        return SETTINGS_CMD_INVALID;
    }
    if ((rc = settings_cmd_scope(argv[2], scope, sizeof scope, err)) != SETTINGS_CMD_OK) return rc;
    if (argc == 4 && (key = settings_cmd_key(argv[3], err)) < 0) return SETTINGS_CMD_INVALID;
    if ((rc = settings_cmd_open(db_uri, &db, err)) != SETTINGS_CMD_OK) return rc;
    rc = settings_load(db, &s);
    db_close(db);
    if (rc != SETTINGS_OK) {
        fprintf(err, "mxwarden settings: %s\n", err_msg());
        return SETTINGS_CMD_STORE;
    }
    for (k = 0; k < SETTINGS_N_KEYS; k++)
        if (key < 0 || key == k) settings_cmd_print_effective(out, settings_for_scope(s, scope), k);
    settings_free(s);
    return SETTINGS_CMD_OK;
}

static int settings_cmd_list(int argc, char **argv, const char *db_uri, FILE *out, FILE *err)
{
    char scope[DB_MAX_SCOPE + 1];
    struct db_setting_list list;
    struct db *db;
    size_t i;
    int rc;

    if (argc > 3) {
        settings_cmd_usage(err);
        return SETTINGS_CMD_INVALID;
    }
    if (argc == 3 &&
        (rc = settings_cmd_scope(argv[2], scope, sizeof scope, err)) != SETTINGS_CMD_OK)
        return rc;
    if ((rc = settings_cmd_open(db_uri, &db, err)) != SETTINGS_CMD_OK) return rc;
    rc = db_setting_list(db, argc == 3 ? scope : NULL, &list, NULL);
    db_close(db);
    if (rc != DB_OK) {
        fprintf(err, "mxwarden settings: %s\n", err_msg());
        db_setting_list_free(&list);
        return SETTINGS_CMD_STORE;
    }
    for (i = 0; i < list.n; i++) {
        char when[32] = "";
        time_t t = (time_t)list.items[i].updated_at;
        struct tm tm;
        if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
        fprintf(out, "%s\t%s\t%s\t%s\n", settings_scope_display(list.items[i].scope),
                list.items[i].key, list.items[i].value, when);
    }
    db_setting_list_free(&list);
    return SETTINGS_CMD_OK;
}

int settings_command(int argc, char **argv, const char *db_uri, FILE *out, FILE *err)
{
    const char *verb = argc >= 2 ? argv[1] : "";

    if (strcmp(verb, "set") == 0) return settings_cmd_set(argc, argv, db_uri, out, err);
    if (strcmp(verb, "get") == 0) return settings_cmd_get(argc, argv, db_uri, out, err);
    if (strcmp(verb, "list") == 0) return settings_cmd_list(argc, argv, db_uri, out, err);
    if (strcmp(verb, "unset") == 0) return settings_cmd_unset(argc, argv, db_uri, out, err);
    settings_cmd_usage(err);
    return SETTINGS_CMD_INVALID;
}
