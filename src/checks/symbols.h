/*
 * symbols - the registry of every symbol a check can emit.
 *
 * A symbol has a name (UPPER_CASE), a default score, a description a mail
 * administrator understands, and a group ("mime", "html", "headers", ...).
 * Checks register their symbols once at start-up and keep the returned id;
 * rule files (later) register theirs when loaded. During scans the registry
 * is only read, so any number of threads may share it.
 *
 * Ownership: the registry copies every string it is given and frees them in
 * symbols_free().
 */
#ifndef MXW_SYMBOLS_H
#define MXW_SYMBOLS_H

#include <stddef.h>

struct symbol_def {
    const char *name;
    double score;
    const char *description;
    const char *group;
};

struct symbol_registry;

struct symbol_registry *symbols_new(void);
void symbols_free(struct symbol_registry *reg);

/*
 * Registers name, or updates the score, description and group of an existing
 * symbol (description/group NULL keeps the old ones). Returns the symbol's id
 * (stable for the registry's life), or -1 with err_set() if the name is not
 * a valid symbol name ([A-Z0-9_], 1..100 characters).
 */
int symbols_add(struct symbol_registry *reg, const char *name, double score,
                const char *description, const char *group);
/* The id of name, or -1. */
int symbols_lookup(const struct symbol_registry *reg, const char *name);
/* The definition of id; id must be valid. */
const struct symbol_def *symbols_get(const struct symbol_registry *reg, int id);
size_t symbols_count(const struct symbol_registry *reg);

#endif
