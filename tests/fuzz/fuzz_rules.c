/*
 * fuzz_rules - libFuzzer target for rule files: the parser (checks/rules.c),
 * the compiler (checks/rule_engine.c: regexes, meta expressions, dependency
 * order) and one scan with the result. Any file must give a rule set, with
 * warnings at worst, and a scan that completes.
 */
#include "checks/rule_engine.h"
#include "checks/rules.h"
#include "checks/symbols.h"
#include "core/arena.h"
#include "core/log.h"
#include "message/message.h"
#include "scan/result.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char path[64];
static struct message *msg;
static const char sample[] = "From: A <a@example.org>\nTo: b@example.net\nSubject: Hello there\n"
                             "Content-Type: text/html\n\n<p>Click <a href=\"http://x.example/?u="
                             "https%3A%2F%2Fy.example\">here</a> now</p>\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(path, sizeof path, "/tmp/mxw-fuzz-rules-%d.cf", (int)getpid());
    log_set_level(LOG_LEVEL_FATAL);
    message_library_init();
    msg = message_parse(sample, sizeof sample - 1, NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rule_engine_options opt = {2, NULL};
    struct rule_set *rs;
    struct symbol_registry *reg;
    struct rule_engine *e;
    struct rule_scratch *s;
    struct scan_result r;
    FILE *f = fopen(path, "wb");

    if (f == NULL) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    rs = rules_new();
    if (rules_load_file(rs, path) != 0) __builtin_trap(); /* a readable file always loads */
    reg = symbols_new();
    symbols_add(reg, "MIME_HTML_ONLY", 0.5, "built-in", "mime");
    e = rule_engine_new(rs, reg, &opt);
    if (e) {
        struct arena *a = arena_new(0);
        s = rule_scratch_new(e);
        result_init(&r, a, reg);
        rule_engine_scan(e, s, msg, sample, sizeof sample - 1, &r);
        result_finish(&r, NULL, NULL);
        rule_scratch_free(s);
        arena_free(a);
        rule_engine_free(e);
    }
    symbols_free(reg);
    rules_free(rs);
    return 0;
}
