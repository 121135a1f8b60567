/*
 * fuzz_message - libFuzzer target for the whole parse path: MIME (GMime and
 * our decoders), charset conversion, HTML extraction, URL parsing, Received
 * parsing, the feature stream and the structural checks, i.e. everything
 * `mxwarden scan` does with untrusted bytes.
 */
#include "message/message.h"
#include "scan/scan.h"
#include "text/features.h"

#include <stddef.h>
#include <stdint.h>

static struct scanner *fuzz_scanner;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    message_library_init();
    fuzz_scanner = scanner_new();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *rcpt[] = {"user@example.org"};
    struct envelope env = {.mail_from = "sender@example.com", .rcpt = rcpt, .n_rcpt = 1,
                           .client_ip = "192.0.2.1", .helo = "mail.example.com"};
    struct scan *sc = scan_message(fuzz_scanner, (const char *)data, size, &env);
    struct features f;

    features_extract(sc->message->arena, sc->message, &f, NULL, NULL);
    scan_free(sc);
    return 0;
}
