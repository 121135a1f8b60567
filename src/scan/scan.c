/*
 * scan - the scan pipeline. See scan.h.
 */
#include "scan/scan.h"
#include "checks/structure.h"
#include "checks/symbols.h"
#include "core/arena.h"
#include "core/xalloc.h"

#include <stdlib.h>

struct scanner {
    struct symbol_registry *symbols;
    struct structure_ids structure;
};

struct scanner *scanner_new(void)
{
    struct scanner *s = xcalloc(1, sizeof *s);
    s->symbols = symbols_new();
    structure_register(s->symbols, &s->structure);
    return s;
}

void scanner_free(struct scanner *s)
{
    if (s == NULL) return;
    symbols_free(s->symbols);
    free(s);
}

const struct symbol_registry *scanner_symbols(const struct scanner *s)
{
    return s->symbols;
}

struct scan *scan_message(const struct scanner *s, const char *data, size_t len,
                          const struct envelope *env)
{
    struct message *m = message_parse(data, len, env);
    struct scan *sc = arena_calloc(m->arena, 1, sizeof *sc);
    struct thresholds t = thresholds_default();

    sc->message = m;
    result_init(&sc->result, m->arena, s->symbols);
    structure_check(&s->structure, m, &sc->result);
    result_finish(&sc->result, &t, "default");
    return sc;
}

void scan_free(struct scan *sc)
{
    /* The scan lives in its message's arena. */
    if (sc) message_free(sc->message);
}
