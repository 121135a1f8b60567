/*
 * rules - rule files in SpamAssassin's syntax, read into a rule set.
 *
 * Understood: header (with ALL, exists:, chained :name/:addr/:raw, =~ and !~, and
 * [if-unset: ...]), body, rawbody, uri, full, meta, score (one or four
 * values), describe, tflags (nice, multiple, maxhits=N; others kept as
 * text), ifplugin / if / else / endif, include. A rule may be scored or
 * described before (or without) its test line, as the stock rule files do.
 *
 * Never fatal: anything not understood (an unknown directive, an eval: test,
 * a malformed line, an unbalanced meta expression, an include that cannot be
 * read) is warned about once, with file and line, and skipped. Regular
 * expressions are only split from their delimiters and flags here; compiling
 * them is regex.h's job.
 *
 * Conditionals: `ifplugin NAME` and `if plugin(NAME)` are true for the
 * plugins mxwarden implements (rules_plugin_known()); `if version >= N` and
 * `if (version > N)` compare with RULES_SA_VERSION (we read the rule set of
 * that SpamAssassin version); `if can(NAME)` is true for the SpamAssassin 4.0
 * capabilities whose rules we read the same way; `!` negates any of these;
 * any other expression is false, with a warning.
 *
 * Memory: everything in a rule set belongs to it; rules_free() frees it all.
 */
#ifndef MXW_RULES_H
#define MXW_RULES_H

#include <stdbool.h>
#include <stddef.h>

/* SpamAssassin 4.0.1, as "if version >= 4.000000" expects. */
#define RULES_SA_VERSION 4.000001

enum rule_kind {
    RULE_NONE, /* only scored/described so far, no test line seen */
    RULE_HEADER,
    RULE_BODY,
    RULE_RAWBODY,
    RULE_URI,
    RULE_FULL,
    RULE_META,
};

enum rule_header_part {
    RULE_HDR_VALUE, /* the whole value */
    RULE_HDR_ADDR,  /* Header:addr, the address(es) only */
    RULE_HDR_NAME,  /* Header:name, the display name(s) only */
};

#define RULE_TF_NICE     0x01u /* a negative score is intended */
#define RULE_TF_MULTIPLE 0x02u /* score each match, up to maxhits */
#define RULE_TF_NET      0x04u /* needs the network */
#define RULE_TF_LEARN    0x08u /* a Bayes-learning rule */

struct rule {
    const char *name;
    enum rule_kind kind;
    const char *file; /* where its test line was (or first mention), for messages */
    int line;
    /* header rules */
    const char *header; /* "Subject", "ALL", ... */
    enum rule_header_part part;
    bool raw;    /* Header:raw: undecoded (combines with :addr/:name) */
    bool exists; /* exists:Header */
    const char *if_unset;
    /* regex rules (header without exists, body, rawbody, uri, full) */
    bool negate; /* !~ */
    const char *pattern;
    unsigned regex_flags; /* REGEX_* of regex.h */
    /* meta rules */
    const char *meta;
    /* every rule */
    bool has_score;
    double scores[4]; /* the four score sets; one value fills all four */
    const char *description;
    unsigned tflags;  /* RULE_TF_* */
    unsigned maxhits; /* tflags maxhits=N, 0: none */
    bool unsupported; /* kind RULE_NONE because its test line was skipped (an eval: test, ...) */
};

struct rule_set_stats {
    size_t defined; /* rules with a test line */
    size_t by_kind[RULE_META + 1];
    size_t skipped; /* test lines not understood */
    size_t warnings;
    size_t files;
};

struct rule_set;

struct rule_set *rules_new(void);
void rules_free(struct rule_set *rs);

/* Reads one file (and what it includes). Returns 0, or -1 if path cannot be read
 * at all (with err_set); everything inside a readable file is at worst a warning. */
int rules_load_file(struct rule_set *rs, const char *path);
/* Reads every *.cf file of dir in name order (as SpamAssassin does). */
int rules_load_dir(struct rule_set *rs, const char *dir);

size_t rules_count(const struct rule_set *rs);
const struct rule *rules_at(const struct rule_set *rs, size_t i);
/* The rule called name, or NULL. */
const struct rule *rules_find(const struct rule_set *rs, const char *name);
void rules_stats(const struct rule_set *rs, struct rule_set_stats *st);

/* The warnings so far, one per line "file:line: message", most recent last. */
size_t rules_warning_count(const struct rule_set *rs);
const char *rules_warning_at(const struct rule_set *rs, size_t i);

/* True if mxwarden implements (or deliberately accepts) the SpamAssassin plugin. */
bool rules_plugin_known(const char *name);

#endif
