/*
 * regex - many regular expressions matched against one text in one pass.
 *
 * A set is built once (at start-up or rule reload) from (id, pattern, flags)
 * entries and then only read, so threads share it; each thread scans with
 * its own scratch. Patterns Hyperscan accepts are compiled together into one
 * Hyperscan database; the rest (back-references, look-around, ...) fall back
 * to PCRE2 with JIT, each matched on its own. Both engines report the same
 * thing: which ids match the text, and where (start..end byte offsets).
 *
 * Match semantics (both engines, identical by construction): for each id,
 * every non-overlapping match, found left to right as Perl's m//g finds them
 * (leftmost, then greedy/lazy as the pattern says; after an empty match the
 * next one must be non-empty or start one byte later). This is what
 * SpamAssassin counts for tflags multiple. from..to is the exact match,
 * [from, to) in bytes. Hyperscan only decides which ids match at all (one
 * pass, one report per id); PCRE2 then walks the text for those ids alone
 * to report their matches.
 *
 * Patterns and texts are bytes: neither engine is in UTF mode, so invalid
 * UTF-8 and NUL bytes in the text are matched like any other byte, and \xff
 * in a pattern means the byte 0xff.
 *
 * PCRE2 runs with match and depth limits (1e6 / 2e4 per search), so a
 * Patterns Hyperscan rejects are still prefiltered by it where it can
 * (HS_FLAG_PREFILTER: a looser pattern that matches whenever the real one
 * does), so PCRE2 runs them only on texts that might match.
 *
 * catastrophically backtracking pattern stops early: regex_scan() then
 * reports it through on_timeout and treats it as not matching -- unless
 * Hyperscan already proved a match and PCRE2 had not yet reported one; then
 * exactly one match is reported with from = to = 0 (position unknown). A compiled Hyperscan
 * database can be cached on disk under a directory keyed by the hash of all patterns, so a restart
 * does not recompile thousands of rules.
 *
 * Errors: builder functions return 0 or -1 with err_set(); regex_scan()
 * returns 0, or -1 on an engine failure (out of scratch memory).
 */
#ifndef MXW_REGEX_H
#define MXW_REGEX_H

#include <stdbool.h>
#include <stddef.h>

#define REGEX_CASELESS  0x01u /* i */
#define REGEX_MULTILINE 0x02u /* m: ^ and $ at line breaks */
#define REGEX_DOTALL    0x04u /* s: . matches a newline */
#define REGEX_EXTENDED  0x08u /* x: whitespace and # comments in the pattern are ignored */
/* Not a regex flag: the caller only needs to know whether the pattern matches at all. A
 * Hyperscan hit is then reported once, at 0..0, without asking PCRE2 where it is. */
#define REGEX_EXISTS_ONLY 0x10u

enum regex_engine { REGEX_ENGINE_HYPERSCAN, REGEX_ENGINE_PCRE2 };

struct regex_builder;
struct regex_set;
struct regex_scratch;

struct regex_builder *regex_builder_new(void);
void regex_builder_free(struct regex_builder *b);
/*
 * Adds pattern (PCRE syntax, without delimiters; copied) under id. Fails
 * (-1, with err_set naming the reason and offset) if PCRE2 cannot compile it:
 * every pattern is compiled by PCRE2, which reports the matches. *engine
 * (may be NULL) says which engine will search for it; regex_set_build() may
 * still move a pattern Hyperscan accepted alone but cannot fit into the
 * database to PCRE2 (regex_set_stats() has the final counts). ids need not
 * be dense; each id should be added once (duplicates are reported twice).
 */
int regex_builder_add(struct regex_builder *b, unsigned id, const char *pattern, unsigned flags,
                      enum regex_engine *engine);
/* Patterns added since the builder was made or last built. */
size_t regex_builder_count(const struct regex_builder *b);
/*
 * Compiles everything added into a set; the builder is left empty. cache_dir
 * may be NULL; otherwise the Hyperscan database is read from / written to
 * cache_dir/regex-<XXH3 of hs_version and all (id, flags, pattern)>.hsdb
 * (directories created; written via a temporary file and rename). A missing,
 * unreadable or invalid cache file is ignored with a warning and the
 * database is compiled; a Hyperscan failure moves patterns to PCRE2. So it
 * never fails today; NULL with err_set() is reserved for future failures.
 * The caller still frees b.
 */
struct regex_set *regex_set_build(struct regex_builder *b, const char *cache_dir);
void regex_set_free(struct regex_set *set);

struct regex_stats {
    size_t hyperscan; /* patterns in the Hyperscan database */
    size_t pcre2;     /* patterns run by PCRE2 */
    bool from_cache;  /* the Hyperscan database was loaded from cache_dir */
};
void regex_set_stats(const struct regex_set *set, struct regex_stats *st);

/* Per-thread scratch for scanning with set. Never NULL. */
struct regex_scratch *regex_scratch_new(const struct regex_set *set);
void regex_scratch_free(struct regex_scratch *s);

/* Called for each match, in order of from within one id; return non-zero to stop
 * reporting this id (the scan goes on with the others). */
typedef int (*regex_match_fn)(void *ctx, unsigned id, size_t from, size_t to);
/* Called when PCRE2 hit its match/depth/stack limit for id on this text (at most once per id
 * and scan). */
typedef void (*regex_timeout_fn)(void *ctx, unsigned id);

/*
 * Matches every pattern of set against text[0..len) (need not be
 * NUL-terminated; NULL only with len 0; at most 4 GiB when the set has a
 * Hyperscan database). on_match gets every non-overlapping match of each id
 * (see the top of this file), in no particular order between ids;
 * on_timeout may be NULL. Returns 0, or -1 with err_set() if an engine failed
 * (matches already reported stand).
 */
int regex_scan(const struct regex_set *set, struct regex_scratch *s, const char *text, size_t len,
               regex_match_fn on_match, regex_timeout_fn on_timeout, void *ctx);

#endif
