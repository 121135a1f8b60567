/*
 * symbols - a growable array of definitions with an open-addressing index.
 */
#include "checks/symbols.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct symbol_registry {
    struct symbol_def *defs;
    size_t n, cap;
    int *slots; /* index into defs, -1 when empty; size is a power of two > 2 * n */
    size_t n_slots;
};

struct symbol_registry *symbols_new(void)
{
    struct symbol_registry *reg = xcalloc(1, sizeof *reg);
    reg->n_slots = 64;
    reg->slots = xmalloc(reg->n_slots * sizeof *reg->slots);
    memset(reg->slots, 0xff, reg->n_slots * sizeof *reg->slots);
    return reg;
}

void symbols_free(struct symbol_registry *reg)
{
    size_t i;
    if (reg == NULL) return;
    for (i = 0; i < reg->n; i++) {
        free((char *)reg->defs[i].name);
        free((char *)reg->defs[i].description);
        free((char *)reg->defs[i].group);
    }
    free(reg->defs);
    free(reg->slots);
    free(reg);
}

static size_t symbols_slot(const struct symbol_registry *reg, const char *name, size_t len)
{
    size_t mask = reg->n_slots - 1;
    size_t slot = XXH3_64bits(name, len) & mask;
    while (reg->slots[slot] >= 0 && strcmp(reg->defs[reg->slots[slot]].name, name) != 0)
        slot = (slot + 1) & mask;
    return slot;
}

static void symbols_grow_index(struct symbol_registry *reg)
{
    size_t i;
    free(reg->slots);
    reg->n_slots *= 2;
    reg->slots = xmalloc(reg->n_slots * sizeof *reg->slots);
    memset(reg->slots, 0xff, reg->n_slots * sizeof *reg->slots);
    for (i = 0; i < reg->n; i++) {
        const char *name = reg->defs[i].name;
        reg->slots[symbols_slot(reg, name, strlen(name))] = (int)i;
    }
}

static int symbols_valid_name(const char *name, size_t len)
{
    size_t i;
    if (len == 0 || len > 100) return 0;
    for (i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              (c >= 'a' && c <= 'z')))
            return 0;
    }
    return 1;
}

int symbols_add(struct symbol_registry *reg, const char *name, double score,
                const char *description, const char *group)
{
    size_t len = strlen(name), slot;
    struct symbol_def *d;

    if (!symbols_valid_name(name, len)) {
        err_set("invalid symbol name \"%.100s\"", name);
        return -1;
    }
    slot = symbols_slot(reg, name, len);
    if (reg->slots[slot] >= 0) {
        d = &reg->defs[reg->slots[slot]];
        d->score = score;
        if (description) {
            free((char *)d->description);
            d->description = xstrdup(description);
        }
        if (group) {
            free((char *)d->group);
            d->group = xstrdup(group);
        }
        return reg->slots[slot];
    }
    if (reg->n == reg->cap) {
        reg->cap = reg->cap ? reg->cap * 2 : 64;
        reg->defs = xrealloc(reg->defs, reg->cap * sizeof *reg->defs);
    }
    d = &reg->defs[reg->n];
    d->name = xstrdup(name);
    d->score = score;
    d->description = xstrdup(description ? description : "");
    d->group = xstrdup(group ? group : "");
    reg->slots[slot] = (int)reg->n;
    reg->n++;
    if (reg->n * 2 >= reg->n_slots) symbols_grow_index(reg);
    return (int)reg->n - 1;
}

int symbols_lookup(const struct symbol_registry *reg, const char *name)
{
    return reg->slots[symbols_slot(reg, name, strlen(name))];
}

const struct symbol_def *symbols_get(const struct symbol_registry *reg, int id)
{
    assert(id >= 0 && (size_t)id < reg->n);
    return &reg->defs[id];
}

size_t symbols_count(const struct symbol_registry *reg)
{
    return reg->n;
}
