/*
 * rule_engine - runs a rule set (rules.h) against messages, the way
 * SpamAssassin would.
 *
 * rule_engine_new() turns a loaded rule set into compiled regex sets (one per
 * header target, one each for body, rawbody, uri and full), meta programs in
 * dependency order, and symbols in the registry (name, score of the chosen
 * score set, description). It is built once and then only read, so threads
 * share it; each thread scans with its own rule_scratch.
 *
 * What each kind of rule sees (SpamAssassin 4.0's semantics):
 *   header   every instance of the header, decoded, each followed by "\n",
 *            concatenated; :raw undecoded; :addr / :name the addresses / display
 *            names, one per line; ALL every header as "Name: value\n". An absent
 *            header reads as the empty string (or the [if-unset: ...] text), so
 *            `!~` rules on an absent header hit. exists: tests presence only.
 *            Pseudo-headers: EnvelopeFrom, ToCc, MESSAGEID,
 *            X-Spam-Relays-{External,Untrusted,Trusted,Internal}.
 *   body     the Subject, then every text part rendered (HTML as visible text),
 *            whitespace collapsed, one "line" per paragraph (at most 2,048 bytes);
 *            each line is matched on its own.
 *   rawbody  every text part decoded but not rendered (HTML source), one
 *            string per part.
 *   uri      each URL of the message (as written and normalised).
 *   full     the whole raw message.
 *   meta     an expression over other rules' hit counts and over the symbols
 *            the built-in checks emitted before (e.g. MIME_HTML_ONLY):
 *            ! && || + - * / < > <= >= == != with Perl's values (`a || b` is a
 *            when a is true, else b). Unknown names count 0; metas in a cycle
 *            never hit (warned at build).
 *
 * A rule whose score is 0 in the chosen score set does not run (as in
 * SpamAssassin), unless it is a sub-rule (__NAME, never reported). tflags
 * multiple counts every match (up to maxhits) and scores each. A regex that
 * exhausts PCRE2's limits counts as not matching; the scan reports it with
 * the RULE_TIMEOUT symbol (score 0, the rule's name as option).
 *
 * Errors: rule_engine_new() never fails on content (bad regexes are warned
 * about and skipped, with the file and line); it returns NULL only if the
 * registry refuses a name, with err_set().
 */
#ifndef MXW_RULE_ENGINE_H
#define MXW_RULE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>

struct message;
struct rule_set;
struct scan_result;
struct symbol_registry;

struct rule_engine_options {
    int score_set;         /* 0..3 as SpamAssassin: +1 network tests, +2 Bayes */
    const char *cache_dir; /* compiled Hyperscan databases, or NULL */
};

struct rule_engine_stats {
    size_t rules;          /* rules that run (score non-zero in the set, or sub-rules) */
    size_t disabled;       /* rules with score 0 in the chosen set */
    size_t unused;         /* sub-rules no scored rule reads, even through other metas */
    size_t hyperscan;      /* regexes in Hyperscan databases */
    size_t pcre2;          /* regexes run by PCRE2 */
    size_t failed;         /* regexes neither engine compiles; those rules never hit */
    size_t metas;          /* meta rules that run */
    size_t meta_bad;       /* meta rules dropped: bad expression or a cycle */
    size_t header_targets; /* distinct header texts the header rules read */
};

struct rule_engine;
struct rule_scratch;

/*
 * Compiles rs for scanning and registers its scored rules in reg. rs must
 * outlive the engine (names and descriptions are referenced). Warnings go to
 * the log, one per problem. NULL with err_set() only on a registry error.
 */
struct rule_engine *rule_engine_new(const struct rule_set *rs, struct symbol_registry *reg,
                                    const struct rule_engine_options *opt);
void rule_engine_free(struct rule_engine *e);
void rule_engine_stats(const struct rule_engine *e, struct rule_engine_stats *st);

/* The rules that run, in rule-file order (sub-rules included); i < rule_engine_count(). */
size_t rule_engine_count(const struct rule_engine *e);
const struct rule *rule_engine_rule(const struct rule_engine *e, size_t i);
/* True for a meta that reads, directly or through other metas, a rule we cannot run (an
 * eval: test, a regex neither engine compiles): it hits only when the rest decides alone. */
bool rule_engine_rule_partial(const struct rule_engine *e, size_t i);

/* Per-thread scratch (never NULL). */
struct rule_scratch *rule_scratch_new(const struct rule_engine *e);
void rule_scratch_free(struct rule_scratch *s);

/*
 * Runs every rule against m (raw[0..raw_len) is the message as received, for
 * full rules) and adds the hits of scored rules to r. Call after the built-in
 * checks so metas can see their symbols.
 */
void rule_engine_scan(const struct rule_engine *e, struct rule_scratch *s, const struct message *m,
                      const char *raw, size_t raw_len, struct scan_result *r);

#endif
