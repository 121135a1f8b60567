/*
 * result - symbol hits, total and action of one scan. See result.h.
 */
#include "scan/result.h"
#include "checks/symbols.h"
#include "core/arena.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *scan_action_name(enum scan_action action)
{
    switch (action) {
    case ACTION_DELIVER:
        return "deliver";
    case ACTION_TAG:
        return "tag";
    case ACTION_QUARANTINE:
        return "quarantine";
    case ACTION_REJECT:
        return "reject";
    }
    return "deliver";
}

struct thresholds thresholds_default(void)
{
    struct thresholds t = {THRESHOLD_TAG_DEFAULT, THRESHOLD_QUARANTINE_DEFAULT,
                           THRESHOLD_REJECT_DEFAULT};
    return t;
}

enum scan_action thresholds_action(const struct thresholds *t, double score)
{
    if (score > t->reject) return ACTION_REJECT;
    if (score > t->quarantine) return ACTION_QUARANTINE;
    if (score > t->tag) return ACTION_TAG;
    return ACTION_DELIVER;
}

void result_init(struct scan_result *r, struct arena *a, const struct symbol_registry *symbols)
{
    memset(r, 0, sizeof *r);
    r->arena = a;
    r->symbols = symbols;
    r->thresholds = thresholds_default();
    r->decided_by = "default";
}

static struct symbol_hit *result_hit(struct scan_result *r, int id)
{
    size_t i;
    for (i = 0; i < r->n_hits; i++)
        if (r->hits[i].id == id) return &r->hits[i];
    return NULL;
}

void result_add(struct scan_result *r, int id, double weight, const char *option)
{
    const struct symbol_def *def = symbols_get(r->symbols, id);
    struct symbol_hit *h = result_hit(r, id);
    double score = def->score * weight;

    if (h == NULL) {
        if (r->n_hits == r->cap_hits) {
            size_t cap = r->cap_hits ? r->cap_hits * 2 : 16;
            struct symbol_hit *hits = arena_alloc(r->arena, cap * sizeof *hits);
            if (r->n_hits) memcpy(hits, r->hits, r->n_hits * sizeof *hits);
            r->hits = hits;
            r->cap_hits = cap;
        }
        h = &r->hits[r->n_hits++];
        memset(h, 0, sizeof *h);
        h->id = id;
        h->score = score;
    } else if (fabs(score) > fabs(h->score)) {
        h->score = score;
    }
    if (option == NULL) return;
    if (h->n_options == RESULT_MAX_OPTIONS) {
        h->n_options_dropped++;
        return;
    }
    if (h->options == NULL) h->options = arena_alloc(r->arena, RESULT_MAX_OPTIONS * sizeof(char *));
    h->options[h->n_options++] = arena_strdup(r->arena, option);
}

const struct symbol_hit *result_find(const struct scan_result *r, int id)
{
    size_t i;
    for (i = 0; i < r->n_hits; i++)
        if (r->hits[i].id == id) return &r->hits[i];
    return NULL;
}

static int result_hit_cmp(const void *pa, const void *pb, void *ctx)
{
    const struct symbol_hit *a = pa, *b = pb;
    const struct symbol_registry *symbols = ctx;
    double da = fabs(a->score), db = fabs(b->score);
    if (da != db) return da > db ? -1 : 1;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return strcmp(symbols_get(symbols, a->id)->name, symbols_get(symbols, b->id)->name);
}

void result_finish(struct scan_result *r, const struct thresholds *t, const char *decided_by)
{
    double total = 0;
    size_t i;

    for (i = 0; i < r->n_hits; i++)
        total += r->hits[i].score;
    /* Keep the report free of -0.00 and of float dust such as 5.9999999. */
    r->score = round(total * 100.0) / 100.0 + 0.0;
    if (r->n_hits > 1)
        qsort_r(r->hits, r->n_hits, sizeof *r->hits, result_hit_cmp, (void *)r->symbols);
    if (t) r->thresholds = *t;
    if (decided_by) r->decided_by = decided_by;
    r->action = thresholds_action(&r->thresholds, r->score);
}

void result_set_action(struct scan_result *r, enum scan_action action, const struct thresholds *t,
                       const char *decided_by)
{
    r->action = action;
    r->thresholds = *t;
    r->decided_by = decided_by;
}
