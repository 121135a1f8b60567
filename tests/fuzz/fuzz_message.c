/*
 * fuzz_message - libFuzzer target for the whole parse path: MIME (GMime and
 * our decoders), charset conversion, HTML extraction, URL parsing, Received
 * parsing, the feature stream and the structural checks, i.e. everything
 * `mxwarden scan` does with untrusted bytes.
 */
#include "core/buf.h"
#include "core/config.h"
#include "message/dump.h"
#include "message/message.h"
#include "scan/scan.h"
#include "text/features.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct scanner *fuzz_scanner;
static struct scan_worker *fuzz_worker;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct config cfg;
    (void)argc;
    (void)argv;
    /* An empty private token store: the Bayes path runs, nothing is learned. */
    config_defaults(&cfg);
    cfg.auth_enabled = false;
    cfg.dnsbl_enabled = false; /* test_dnsbl covers it on a local server */
    snprintf(cfg.kv_uri, sizeof cfg.kv_uri, "lmdb:/tmp/mxw-fuzz-%d.lmdb", (int)getpid());
    message_library_init();
    fuzz_scanner = scanner_new(&cfg);
    fuzz_worker = scan_worker_new(fuzz_scanner);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *rcpt[] = {"user@example.org"};
    struct envelope env = {.mail_from = "sender@example.com",
                           .rcpt = rcpt,
                           .n_rcpt = 1,
                           .client_ip = "192.0.2.1",
                           .helo = "mail.example.com"};
    struct scan *sc = scan_message(fuzz_worker, (const char *)data, size, &env);
    struct features f;

    features_extract(sc->message->arena, sc->message, &f, NULL, NULL);
    scan_free(sc);

    {
        struct message *plain = message_parse((const char *)data, size, NULL);
        struct message *tree = message_parse_opts((const char *)data, size, NULL, MSG_PARSE_GMIME);
        struct buf a = {0}, b = {0};
        message_dump_all(&a, plain);
        message_dump_all(&b, tree);
        if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0) {
            fprintf(stderr,
                    "fuzz_message: the plain path and GMime's tree differ\n"
                    "--- plain\n%.*s\n--- gmime\n%.*s\n",
                    (int)a.len, a.data, (int)b.len, b.data);
            abort();
        }
        buf_free(&a);
        buf_free(&b);
        message_free(plain);
        message_free(tree);
    }
    return 0;
}
