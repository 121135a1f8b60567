/*
 * main - the mxwarden command: dispatches to subcommands.
 *
 *   mxwarden [-c FILE] scan [--json] [--from A] [--rcpt A]... [--ip IP] [--helo H] [--time T]
 *            FILE...|-
 *   mxwarden [-c FILE] learn --class CLASS [--tenant DOMAIN] [--files-from] PATH...
 *   mxwarden [-c FILE] unlearn PATH...
 *   mxwarden [-c FILE] stat [--tenant DOMAIN]
 *   mxwarden rules check DIR
 *   mxwarden dump FILE|-
 *   mxwarden version
 *
 * Exit status: 0 when every input was processed; 1 when the configuration or
 * the store cannot be used; 2 for a usage error; 3 when at least one input
 * could not be read or learned (each gets a one-line error naming it on
 * stderr, and the others are still processed).
 */
#include "checks/auth.h"
#include "checks/regex.h"
#include "checks/rule_engine.h"
#include "checks/rules.h"
#include "checks/symbols.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/file.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "message/dump.h"
#include "message/message.h"
#include "message/source.h"
#include "mta/gateway.h"
#include "mta/quarantine_cmd.h"
#include "mta/senders_cmd.h"
#include "scan/report.h"
#include "scan/scan.h"
#include "scan/settings_cmd.h"
#include "stat/bayes.h"
#include "store/kv.h"
#include "text/features.h"

#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef MXW_VERSION
#define MXW_VERSION "0.0.0"
#endif

enum { EXIT_STORE = 1, EXIT_USAGE = 2, EXIT_UNREADABLE = 3 };

static struct config config;

_Static_assert(SENDERS_APPLY_DELAY_S == 2, "the usage text below says 2 s");

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mxwarden [-c mxwarden.conf] COMMAND [OPTIONS]\n"
            "\n"
            "commands:\n"
            "  scan [--json] [--from ADDR] [--rcpt ADDR]... [--ip IP] [--helo NAME]\n"
            "       [--time UNIX_SECONDS] [--files-from] FILE...|-\n"
            "                  scan messages and print their spam reports\n"
            "  learn --class CLASS [--tenant DOMAIN] [--files-from] PATH...\n"
            "                  teach the Bayes classifier (files, directories, mbox files;\n"
            "                  --files-from: each PATH is a list of paths, - for stdin);\n"
            "                  CLASS: spam, ham, phishing, bec, newsletter, transactional\n"
            "  unlearn PATH... undo what learning these messages did\n"
            "  stat [--tenant DOMAIN]\n"
            "                  learned messages per class, tokens and store size\n"
            "  rules check DIR load the *.cf rule files of DIR and count what loads and compiles\n"
            "  rules list      the rules scans run with this configuration (NAME KIND SCORE)\n"
            "  quarantine list | show ID | release [--allow-sender] ID... | delete ID...\n"
            "           | reject [--reason TEXT] ID... | purge [--older-than DAYS]\n"
            "                  the messages held in Postfix's hold queue ([postfix]\n"
            "                  config_directory); every action is audited\n"
            "  senders list | add allow|block VALUE [--comment TEXT] | remove ID|VALUE...\n"
            "                  the operator's sender rules, applied at SMTP time: VALUE is an\n"
            "                  address, a domain (and its subdomains), an IP or a CIDR network;\n"
            "                  a running serve applies changes within 2 s (SIGHUP: at once);\n"
            "                  every change is audited\n"
            "  serve [--pid-file FILE]\n"
            "                  run the Postfix milter gateway in the foreground ([milter] listen,\n"
            "                  default unix:var/milter.sock); SIGHUP reloads, SIGTERM stops\n"
            "  settings set SCOPE KEY VALUE [KEY VALUE]... | get SCOPE [KEY] | list [SCOPE]\n"
            "           | unset SCOPE KEY...\n"
            "                  per-domain and per-address thresholds and tagging; SCOPE is\n"
            "                  global, a domain or an address; KEY: threshold.tag,\n"
            "                  threshold.quarantine, threshold.reject, subject_prefix,\n"
            "                  add_report_header\n"
            "  dump FILE|-     print the parsed message: headers, MIME tree, text, URLs, features\n"
            "  version         print the version\n"
            "\n"
            "exit status: 0 all inputs processed, 1 configuration or store unusable,\n"
            "             2 usage error, 3 some input unreadable or not learned\n");
}

static void write_out(const struct buf *b)
{
    if (b->len && fwrite(b->data, 1, b->len, stdout) != b->len) {
        log_error("msg=\"cannot write to standard output\"");
        exit(1);
    }
}

/* Reads path; prints the one-line error and returns -1 if it cannot be used. */
static int read_input(const char *path, char **data, size_t *len)
{
    if (file_read(path, data, len) != 0) {
        fprintf(stderr, "mxwarden: %s: %s\n", path, err_msg());
        return -1;
    }
    if (*len == 0) {
        fprintf(stderr, "mxwarden: %s: empty, not a mail message\n", path);
        free(*data);
        return -1;
    }
    return 0;
}

struct scan_run {
    struct scan_worker *worker;
    const struct envelope *env;
    struct buf out;
    int json, many, status;
};

static void scan_one(struct scan_run *run, const char *path)
{
    char *data;
    size_t len;
    struct scan *sc;

    if (read_input(path, &data, &len) != 0) {
        run->status = EXIT_UNREADABLE;
        return;
    }
    sc = scan_message(run->worker, data, len, run->env);
    buf_clear(&run->out);
    if (run->json) {
        report_json(&run->out, &sc->result, path);
        buf_append_char(&run->out, '\n');
    } else {
        if (run->many) buf_printf(&run->out, "File: %s\n", path);
        report_text(&run->out, &sc->result);
        if (run->many) buf_append_char(&run->out, '\n');
    }
    write_out(&run->out);
    scan_free(sc);
    free(data);
}

static int cmd_scan(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"from", required_argument, NULL, 'f'},
                                         {"rcpt", required_argument, NULL, 'r'},
                                         {"ip", required_argument, NULL, 'i'},
                                         {"helo", required_argument, NULL, 'h'},
                                         {"help", no_argument, NULL, '?'},
                                         {"files-from", no_argument, NULL, 'F'},
                                         {"time", required_argument, NULL, 't'},
                                         {NULL, 0, NULL, 0}};
    struct envelope env = {0};
    char *end;
    struct scan_run run = {.env = &env};
    const char **rcpt = NULL;
    int c, i, files_from = 0;
    struct scanner *scanner;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            run.json = 1;
            break;
        case 'f':
            env.mail_from = optarg;
            break;
        case 'r':
            rcpt = xrealloc(rcpt, (env.n_rcpt + 1) * sizeof *rcpt);
            rcpt[env.n_rcpt++] = optarg;
            break;
        case 'i':
            env.client_ip = optarg;
            break;
        case 'h':
            env.helo = optarg;
            break;
        case 'F':
            files_from = 1;
            break;
        case 't':
            env.arrival_unix = strtoll(optarg, &end, 10);
            if (*end || end == optarg || env.arrival_unix <= 0) {
                fprintf(stderr, "mxwarden: --time wants seconds since 1970, not \"%s\"\n", optarg);
                free(rcpt);
                return EXIT_USAGE;
            }
            break;
        default:
            usage(stderr);
            free(rcpt);
            return EXIT_USAGE;
        }
    }
    env.rcpt = rcpt;
    if (optind >= argc) {
        fprintf(stderr, "mxwarden scan: no input (give files, or - for standard input)\n");
        free(rcpt);
        return EXIT_USAGE;
    }
    scanner = scanner_new(&config);
    run.worker = scan_worker_new(scanner);
    run.many = files_from || argc - optind > 1;
    for (i = optind; i < argc; i++) {
        if (files_from) {
            FILE *list = strcmp(argv[i], "-") == 0 ? stdin : fopen(argv[i], "r");
            char line[4096];
            if (list == NULL) {
                fprintf(stderr, "mxwarden: %s: %s\n", argv[i], strerror(errno));
                run.status = EXIT_UNREADABLE;
                continue;
            }
            while (fgets(line, sizeof line, list)) {
                line[strcspn(line, "\r\n")] = '\0';
                if (line[0]) scan_one(&run, line);
            }
            if (list != stdin) fclose(list);
        } else {
            scan_one(&run, argv[i]);
        }
    }
    fflush(stdout);
    buf_free(&run.out);
    scan_worker_free(run.worker);
    scanner_free(scanner);
    free(rcpt);
    return run.status;
}

/* ---- learn / unlearn / stat ---- */

struct learn_run {
    struct bayes *bayes;
    int cls; /* -1: unlearn */
    const char *tenant;
    long done, already, moved, failed, seen;
    int progress; /* stderr is a terminal */
    int stop;     /* the store failed: no point going on */
};

static void learn_error(void *ctx, const char *path, const char *reason)
{
    struct learn_run *run = ctx;
    run->failed++;
    fprintf(stderr, "%smxwarden: %s: %s\n", run->progress ? "\r\033[K" : "", path, reason);
}

static int learn_message(void *ctx, const char *label, const char *data, size_t len)
{
    struct learn_run *run = ctx;
    struct message *m = message_parse(data, len, NULL);
    uint8_t digest[BAYES_DIGEST_BYTES];
    struct features f;
    int rc;

    run->seen++;
    if (!message_is_mail(m)) {
        learn_error(run, label, "not a mail message (no mail headers); nothing learned");
        message_free(m);
        return 0;
    }
    features_extract_opts(m->arena, m, &f, FEATURES_NO_PAIRS, NULL, NULL); /* what Bayes reads */
    bayes_digest(data, len, digest);
    if (run->cls >= 0) {
        enum bayes_learn_outcome outcome;
        rc = bayes_learn(run->bayes, digest, &f, (enum bayes_class)run->cls, run->tenant,
                         BAYES_ORIGIN_MANUAL, &outcome);
        if (rc == 0) {
            if (outcome == BAYES_LEARNED)
                run->done++;
            else if (outcome == BAYES_MOVED)
                run->moved++;
            else
                run->already++;
        }
    } else {
        enum bayes_class was;
        rc = bayes_unlearn(run->bayes, digest, &f, &was);
        if (rc == 0)
            run->done++;
        else if (rc == BAYES_ERR_NOT_LEARNED)
            run->already++, rc = 0;
    }
    message_free(m);
    if (rc != 0) {
        learn_error(run, label, err_msg());
        if (rc == KV_UNAVAILABLE || rc == KV_FULL || rc == BAYES_ERR_VERSION) {
            run->stop = 1;
            return 1;
        }
        return 0;
    }
    if (run->progress && run->seen % 100 == 0) fprintf(stderr, "\r%ld messages...", run->seen);
    return 0;
}

static struct bayes *open_bayes(struct kv **kv)
{
    struct bayes_config bc = {config.bayes_min_learns, config.bayes_min_learns_class,
                              config.bayes_per_tenant};
    if (kv_open(config.kv_uri, kv) != KV_OK) {
        fprintf(stderr, "mxwarden: store %s: %s\n", config.kv_uri, err_msg());
        return NULL;
    }
    return bayes_new(*kv, &bc);
}

static int cmd_learn(int argc, char **argv, int unlearn)
{
    static const struct option opts[] = {{"class", required_argument, NULL, 'c'},
                                         {"tenant", required_argument, NULL, 't'},
                                         {"files-from", no_argument, NULL, 'f'},
                                         {NULL, 0, NULL, 0}};
    struct learn_run run = {.cls = -1};
    struct kv *kv = NULL;
    int c, i, files_from = 0;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (unlearn) goto usage;
            run.cls = bayes_class_parse(optarg);
            if (run.cls < 0) {
                fprintf(stderr,
                        "mxwarden learn: unknown class \"%s\" (spam, ham, phishing, "
                        "bec, newsletter, transactional)\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        case 't':
            run.tenant = optarg;
            break;
        case 'f':
            files_from = 1;
            break;
        default:
            goto usage;
        }
    }
    if ((!unlearn && run.cls < 0) || optind >= argc) goto usage;
    if ((run.bayes = open_bayes(&kv)) == NULL) {
        kv_close(kv);
        return EXIT_STORE;
    }
    run.progress = isatty(STDERR_FILENO);
    bayes_set_bulk(run.bayes, true);
    for (i = optind; i < argc && !run.stop; i++) {
        if (files_from) {
            FILE *list = strcmp(argv[i], "-") == 0 ? stdin : fopen(argv[i], "r");
            char line[4096];
            if (list == NULL) {
                learn_error(&run, argv[i], strerror(errno));
                continue;
            }
            while (!run.stop && fgets(line, sizeof line, list)) {
                line[strcspn(line, "\r\n")] = '\0';
                if (line[0]) source_each(line, learn_message, learn_error, &run);
            }
            if (list != stdin) fclose(list);
        } else {
            source_each(argv[i], learn_message, learn_error, &run);
        }
    }
    {
        size_t dropped = 0;
        if (bayes_flush(run.bayes, &dropped) != 0) {
            fprintf(stderr, "mxwarden: the last %zu messages were not learned: %s\n", dropped,
                    err_msg());
            /* The dropped group is counted as failed; it may have held repeats too. */
            run.failed += (long)dropped;
            run.done = run.done > (long)dropped ? run.done - (long)dropped : 0;
            run.stop = 1;
        }
    }
    if (run.progress) fprintf(stderr, "\r\033[K");
    if (unlearn)
        printf("unlearned %ld, not learned before %ld, errors %ld\n", run.done, run.already,
               run.failed);
    else
        printf("learned %ld as %s, already learned %ld, moved from another class %ld, errors %ld\n",
               run.done, bayes_class_name((enum bayes_class)run.cls), run.already, run.moved,
               run.failed);
    bayes_free(run.bayes);
    kv_close(kv);
    if (run.stop) return EXIT_STORE;
    return run.failed ? EXIT_UNREADABLE : 0;
usage:
    fprintf(stderr, unlearn ? "usage: mxwarden unlearn PATH...\n"
                            : "usage: mxwarden learn --class CLASS [--tenant DOMAIN] PATH...\n");
    return EXIT_USAGE;
}

static int cmd_stat(int argc, char **argv)
{
    static const struct option opts[] = {{"tenant", required_argument, NULL, 't'},
                                         {NULL, 0, NULL, 0}};
    const char *tenant = NULL;
    struct bayes_stat st;
    struct kv_stat ks;
    struct kv *kv = NULL;
    struct bayes *b;
    int c, rc;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c != 't') {
            fprintf(stderr, "usage: mxwarden stat [--tenant DOMAIN]\n");
            return EXIT_USAGE;
        }
        tenant = optarg;
    }
    if ((b = open_bayes(&kv)) == NULL) {
        kv_close(kv);
        return EXIT_STORE;
    }
    rc = bayes_stat(b, tenant, &st);
    if (rc == 0) rc = kv_stat(kv, &ks);
    if (rc != 0) {
        fprintf(stderr, "mxwarden: store %s: %s\n", config.kv_uri, err_msg());
    } else {
        printf("store: %s (%s)\n", config.kv_uri, kv_backend_name(kv));
        if (tenant) printf("tenant: %s\n", tenant);
        for (c = 0; c < BAYES_N_CLASSES; c++)
            printf("learned %-13s %u\n", bayes_class_name((enum bayes_class)c), st.learned[c]);
        printf("entries: %llu\nsize: %.1f MB\n", (unsigned long long)ks.entries,
               (double)ks.size_bytes / 1e6);
    }
    bayes_free(b);
    kv_close(kv);
    return rc == 0 ? 0 : EXIT_STORE;
}

/* `mxwarden rules check DIR`: what a rule directory gives us, and what it does not. */
/* `rules list`: the rules a scan runs with this configuration, one per line:
 * NAME KIND SCORE [partial] (sub-rules have score "-"; "partial": a meta that reads
 * rules we cannot run, so it hits only when the others decide alone). */
static int rules_list(void)
{
    static const char *const kinds[] = {"none", "header", "body", "rawbody", "uri", "full", "meta"};
    struct scanner *s = scanner_new(&config);
    const struct rule_engine *e = scanner_rules(s);
    const struct symbol_registry *reg = scanner_symbols(s);
    size_t i;

    for (i = 0; i < rule_engine_count(e); i++) {
        const struct rule *r = rule_engine_rule(e, i);
        int id = symbols_lookup(reg, r->name);
        const char *partial = rule_engine_rule_partial(e, i) ? " partial" : "";
        if (r->name[0] == '_' && r->name[1] == '_')
            printf("%s %s -%s\n", r->name, kinds[r->kind], partial);
        else
            printf("%s %s %g%s\n", r->name, kinds[r->kind], symbols_get(reg, id)->score, partial);
    }
    scanner_free(s);
    return 0;
}

static int cmd_rules(int argc, char **argv)
{
    struct rule_set *rs;
    struct rule_set_stats st;
    struct regex_builder *b;
    struct regex_set *set;
    struct regex_stats rx = {0};
    size_t i, regex_rules = 0, failed = 0, shown = 0;

    if (argc == 2 && strcmp(argv[1], "list") == 0) return rules_list();
    if (argc != 3 || strcmp(argv[1], "check") != 0) {
        fprintf(stderr, "usage: mxwarden rules check DIR | mxwarden rules list\n");
        return EXIT_USAGE;
    }
    log_set_level(LOG_LEVEL_ERROR); /* the warnings are listed below instead */
    rs = rules_new();
    if (rules_load_dir(rs, argv[2]) != 0) {
        fprintf(stderr, "mxwarden: %s\n", err_msg());
        rules_free(rs);
        return EXIT_UNREADABLE;
    }
    b = regex_builder_new();
    for (i = 0; i < rules_count(rs); i++) {
        const struct rule *r = rules_at(rs, i);
        if (r->pattern == NULL || r->kind == RULE_NONE || r->kind == RULE_META) continue;
        regex_rules++;
        if (regex_builder_add(b, (unsigned)i, r->pattern, r->regex_flags, NULL) != 0) {
            failed++;
            if (shown++ < 20)
                printf("skipped %s (%s:%d): %s\n", r->name, r->file, r->line, err_msg());
        }
    }
    set = regex_set_build(b, NULL);
    if (set == NULL) {
        fprintf(stderr, "mxwarden: regex set: %s\n", err_msg());
    } else {
        regex_set_stats(set, &rx);
        regex_set_free(set);
    }
    regex_builder_free(b);
    rules_stats(rs, &st);
    printf("files: %zu\nrules loaded: %zu (header %zu, body %zu, rawbody %zu, uri %zu, full %zu, "
           "meta %zu)\n",
           st.files, st.defined, st.by_kind[RULE_HEADER], st.by_kind[RULE_BODY],
           st.by_kind[RULE_RAWBODY], st.by_kind[RULE_URI], st.by_kind[RULE_FULL],
           st.by_kind[RULE_META]);
    printf("regular expressions: %zu, compiled in Hyperscan: %zu, in PCRE2: %zu, failed: %zu\n",
           regex_rules, rx.hyperscan, rx.pcre2, failed);
    printf("skipped rule lines: %zu (eval tests and malformed lines)\nwarnings: %zu\n", st.skipped,
           st.warnings);
    for (i = 0; i < rules_warning_count(rs); i++)
        printf("  %s\n", rules_warning_at(rs, i));
    rules_free(rs);
    return 0;
}

static void dump_feature(void *ctx, enum feature_kind kind, const char *token, size_t token_len,
                         unsigned distance, uint64_t hash)
{
    static const char *const kinds[] = {"word", "osb", "meta"};
    struct buf *out = ctx;
    buf_printf(out, "%s %016llx ", kinds[kind], (unsigned long long)hash);
    buf_append(out, token, token_len);
    if (distance) buf_printf(out, " (d=%u)", distance);
    buf_append_char(out, '\n');
}

static int cmd_dump(int argc, char **argv)
{
    struct buf out = {0};
    struct message *m;
    struct features f;
    char *data;
    size_t len;

    if (argc != 2) {
        fprintf(stderr, "usage: mxwarden dump FILE|-\n");
        return EXIT_USAGE;
    }
    if (read_input(argv[1], &data, &len) != 0) return EXIT_UNREADABLE;
    m = message_parse(data, len, NULL);
    message_dump(&out, m);
    buf_printf(&out, "\n== features (stream version %d)\n", FEATURE_STREAM_VERSION);
    features_extract(m->arena, m, &f, dump_feature, &out);
    buf_printf(&out, "-- %zu features, %zu words\n", f.n, f.n_words);
    write_out(&out);
    fflush(stdout);
    buf_free(&out);
    message_free(m);
    free(data);
    return 0;
}

/* Who runs a command, for the audit log: the user behind sudo, else the Unix user. */
static const char *command_actor(void)
{
    const char *sudo = getenv("SUDO_USER");
    struct passwd *pw;
    if (getuid() == 0 && sudo && *sudo) return sudo;
    pw = getpwuid(getuid());
    return pw ? pw->pw_name : "unknown";
}

/* `serve [--pid-file FILE]`: the milter gateway in the foreground until SIGTERM. */
static int cmd_serve(int argc, char **argv, const char *config_path)
{
    const char *pid_file = NULL;
    if (argc == 3 && strcmp(argv[1], "--pid-file") == 0) {
        pid_file = argv[2];
    } else if (argc != 1) {
        fprintf(stderr, "usage: mxwarden [-c mxwarden.conf] serve [--pid-file FILE]\n");
        return EXIT_USAGE;
    }
    log_set_level(LOG_LEVEL_INFO); /* a daemon says what it does */
    return gateway_serve(config_path, pid_file);
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    int status;

    if (argc >= 3 && strcmp(argv[1], "-c") == 0) {
        config_path = argv[2];
        argv[2] = argv[0];
        argv += 2;
        argc -= 2;
    }
    /* One-shot commands say only what went wrong; the daemon will log at info. */
    log_set_level(LOG_LEVEL_WARN);
    config_defaults(&config);
    if (config_load(config_path, &config) != 0) {
        fprintf(stderr, "mxwarden: %s\n", err_msg());
        return EXIT_STORE;
    }
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("mxwarden %s\n", MXW_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    message_library_init();
    if (strcmp(argv[1], "scan") == 0) {
        status = cmd_scan(argc - 1, argv + 1);
    } else if (strcmp(argv[1], "learn") == 0 || strcmp(argv[1], "unlearn") == 0) {
        status = cmd_learn(argc - 1, argv + 1, argv[1][0] == 'u');
    } else if (strcmp(argv[1], "stat") == 0) {
        status = cmd_stat(argc - 1, argv + 1);
    } else if (strcmp(argv[1], "rules") == 0) {
        status = cmd_rules(argc - 1, argv + 1);
    } else if (strcmp(argv[1], "quarantine") == 0) {
        struct quarantine_env qe = {
            .db_uri = config.db_uri,
            .postfix_config_dir = config.postfix_config_dir[0] ? config.postfix_config_dir : NULL,
            .actor = command_actor(),
            .retention_days = (int)config.quarantine_retention_days};
        status = quarantine_command(argc - 1, argv + 1, &qe, stdout, stderr);
    } else if (strcmp(argv[1], "senders") == 0) {
        status = senders_command(argc - 1, argv + 1, config.db_uri, NULL, stdout, stderr);
    } else if (strcmp(argv[1], "serve") == 0) {
        status = cmd_serve(argc - 1, argv + 1, config_path);
    } else if (strcmp(argv[1], "settings") == 0) {
        status = settings_command(argc - 1, argv + 1, config.db_uri, stdout, stderr);
    } else if (strcmp(argv[1], "dump") == 0) {
        status = cmd_dump(argc - 1, argv + 1);
    } else {
        fprintf(stderr, "mxwarden: unknown command \"%s\"\n", argv[1]);
        usage(stderr);
        status = EXIT_USAGE;
    }
    auth_library_shutdown();
    message_library_shutdown();
    return status;
}
