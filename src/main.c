/*
 * main - the mxwarden command: dispatches to subcommands.
 *
 *   mxwarden scan [--json] [--from A] [--rcpt A]... [--ip IP] [--helo H] FILE...|-
 *   mxwarden dump FILE|-
 *   mxwarden version
 *
 * Exit status: 0 when every input was processed; 2 for a usage error; 3 when
 * at least one input could not be read (each gets a one-line error naming it
 * on stderr, and the others are still processed).
 */
#include "core/buf.h"
#include "core/file.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "message/dump.h"
#include "message/message.h"
#include "scan/report.h"
#include "scan/scan.h"
#include "text/features.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef MXW_VERSION
#define MXW_VERSION "0.0.0"
#endif

enum { EXIT_USAGE = 2, EXIT_UNREADABLE = 3 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mxwarden COMMAND [OPTIONS]\n"
            "\n"
            "commands:\n"
            "  scan [--json] [--from ADDR] [--rcpt ADDR]... [--ip IP] [--helo NAME] FILE...|-\n"
            "                  scan messages and print their spam reports\n"
            "  dump FILE|-     print the parsed message: headers, MIME tree, text, URLs, features\n"
            "  version         print the version\n"
            "\n"
            "exit status: 0 all inputs processed, 2 usage error, 3 some input unreadable\n");
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

static int cmd_scan(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},     {"from", required_argument, NULL, 'f'},
        {"rcpt", required_argument, NULL, 'r'}, {"ip", required_argument, NULL, 'i'},
        {"helo", required_argument, NULL, 'h'}, {"help", no_argument, NULL, '?'},
        {NULL, 0, NULL, 0}};
    struct envelope env = {0};
    const char **rcpt = NULL;
    int json = 0, c, i, status = 0;
    struct scanner *scanner;
    struct buf out = {0};

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'f': env.mail_from = optarg; break;
        case 'r':
            rcpt = xrealloc(rcpt, (env.n_rcpt + 1) * sizeof *rcpt);
            rcpt[env.n_rcpt++] = optarg;
            break;
        case 'i': env.client_ip = optarg; break;
        case 'h': env.helo = optarg; break;
        default: usage(stderr); free(rcpt); return EXIT_USAGE;
        }
    }
    env.rcpt = rcpt;
    if (optind >= argc) {
        fprintf(stderr, "mxwarden scan: no input (give files, or - for standard input)\n");
        free(rcpt);
        return EXIT_USAGE;
    }
    scanner = scanner_new();
    for (i = optind; i < argc; i++) {
        char *data;
        size_t len;
        struct scan *sc;

        if (read_input(argv[i], &data, &len) != 0) {
            status = EXIT_UNREADABLE;
            continue;
        }
        sc = scan_message(scanner, data, len, &env);
        buf_clear(&out);
        if (json) {
            report_json(&out, &sc->result, argv[i]);
            buf_append_char(&out, '\n');
        } else {
            if (argc - optind > 1) buf_printf(&out, "File: %s\n", argv[i]);
            report_text(&out, &sc->result);
            if (i + 1 < argc) buf_append_char(&out, '\n');
        }
        write_out(&out);
        scan_free(sc);
        free(data);
    }
    fflush(stdout);
    buf_free(&out);
    scanner_free(scanner);
    free(rcpt);
    return status;
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

int main(int argc, char **argv)
{
    int status;

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
    } else if (strcmp(argv[1], "dump") == 0) {
        status = cmd_dump(argc - 1, argv + 1);
    } else {
        fprintf(stderr, "mxwarden: unknown command \"%s\"\n", argv[1]);
        usage(stderr);
        status = EXIT_USAGE;
    }
    message_library_shutdown();
    return status;
}
