/*
 * scan - the pipeline every entry point calls: parse, checks, score, action.
 *
 * A scanner holds what scans share read-only: the symbol registry and each
 * check's symbol ids (later: rules, models, settings). Build one with
 * scanner_new() before starting threads; any number of threads may then call
 * scan_message() on it at once.
 *
 * The milter, the HTTP API, the spamd/rspamd protocols and `mxwarden scan`
 * all go through scan_message(), so a verdict never depends on how the
 * message arrived.
 */
#ifndef MXW_SCAN_H
#define MXW_SCAN_H

#include <stddef.h>

#include "message/message.h"
#include "scan/result.h"

struct scanner;

/* A scanner with the built-in checks registered. Free with scanner_free(). */
struct scanner *scanner_new(void);
void scanner_free(struct scanner *s);
const struct symbol_registry *scanner_symbols(const struct scanner *s);

struct scan {
    struct message *message; /* the parsed message, owned by the scan */
    struct scan_result result;
};

/*
 * Scans data[0..len) with the envelope env (may be NULL). Never fails and
 * never returns NULL; the caller keeps ownership of data, which must stay
 * valid only for the duration of the call. Free with scan_free().
 */
struct scan *scan_message(const struct scanner *s, const char *data, size_t len,
                          const struct envelope *env);
void scan_free(struct scan *sc);

#endif
