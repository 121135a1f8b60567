/*
 * regex - many regular expressions against one text. See regex.h.
 *
 * Every pattern is compiled by PCRE2 (without UTF, so bytes are bytes). The
 * patterns Hyperscan also accepts go into one Hyperscan database compiled
 * with HS_FLAG_SINGLEMATCH: one pass over the text says which of them match
 * at all, which for most rules on most messages is "none". Only for those
 * that do match, PCRE2 then walks the text to report each non-overlapping
 * match with its exact start and end, the way Perl's m//g (and therefore
 * SpamAssassin's tflags multiple) counts them. The patterns Hyperscan
 * rejects (back-references, look-around, ...) are run by PCRE2 alone, JIT
 * compiled. So both engines report identical matches by construction, and
 * Hyperscan is the fast filter that saves running thousands of PCRE2
 * patterns on every text.
 *
 * Hyperscan does not need to know where matches start (SOM is costly and
 * unsupported for some patterns), nor report more than once, which keeps the
 * database small and the scan fast.
 *
 * Classification: hs_expression_info() says whether Hyperscan accepts a
 * pattern exactly, or else as a prefilter (HS_FLAG_PREFILTER: a looser pattern
 * that matches whenever the real one does, e.g. with a back-reference
 * widened). Both kinds go into one database, so one pass per text serves
 * both; a prefilter hit only makes PCRE2 run that pattern. Asking costs
 * (thousands of patterns: most of a second and ~150 MB of transient memory),
 * so it is done at build time and only when the disk cache does not say
 * (regex_builder_add() asks at once only if the caller wants the engine).
 * If the compile still fails on one expression (resource limits), that one
 * becomes plain PCRE2 and the compile is retried.
 *
 * Cache file (cache_dir/regex-<xxh3>.hsdb): magic, the input hash, the entry
 * count, one byte per entry (0: PCRE2 alone, 1: exact in the database, 2:
 * prefilter in the database), the serialized database. The hash covers hs_version(), the host's
 * CPU platform (hs_populate_platform) and every (id, flags, pattern), so a
 * changed rule set or library never loads a stale database.
 */
#include "checks/regex.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hs/hs.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <xxhash.h>

#include "core/buf.h"
#include "core/file.h"
#include "core/log.h"
#include "core/xalloc.h"

/* Bounds on one pcre2_match() call: a backtracking blow-up stops here. */
#define REGEX_MATCH_LIMIT     1000000u
#define REGEX_DEPTH_LIMIT     20000u
#define REGEX_JIT_STACK_BYTES (512u * 1024u)

#define CACHE_MAGIC "MXWRXHS2"

struct regex_entry {
    unsigned id;
    unsigned flags;
    char *pattern;
    char *hs_expr;    /* pattern as given to Hyperscan ((?x) prefixed if extended) */
    pcre2_code *code; /* always compiled; JIT when PCRE2 matches (!in_hs, or counts hits) */
    bool in_hs;       /* in the Hyperscan database */
    bool in_pf;       /* not in_hs, but in the database as a prefilter (HS_FLAG_PREFILTER) */
    bool classified;  /* in_hs is known (asking Hyperscan is slow: done only when needed) */
};

struct regex_builder {
    struct regex_entry *entries;
    size_t count;
    size_t cap;
};

struct regex_set {
    struct regex_entry *entries; /* owned */
    size_t count;
    size_t *pcre2_only; /* indices of entries not in the database */
    size_t pcre2_only_count;
    size_t hs_count;
    hs_database_t *db; /* NULL when no pattern is in Hyperscan */
    size_t pf_count;   /* PCRE2 entries with a prefilter in db */
    bool from_cache;
};

struct regex_scratch {
    hs_scratch_t *hs; /* NULL when the set has no database */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
    size_t *hits; /* entry indices Hyperscan reported in the current scan */
    size_t hit_count;
    size_t hit_cap;
    unsigned char *pf_hit; /* per entry: its prefilter matched in the current scan */
};

static unsigned hs_flags_for(unsigned flags)
{
    unsigned f = HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY;
    if (flags & REGEX_CASELESS) f |= HS_FLAG_CASELESS;
    if (flags & REGEX_MULTILINE) f |= HS_FLAG_MULTILINE;
    if (flags & REGEX_DOTALL) f |= HS_FLAG_DOTALL;
    return f;
}

static uint32_t pcre2_options_for(unsigned flags)
{
    uint32_t o = 0;
    if (flags & REGEX_CASELESS) o |= PCRE2_CASELESS;
    if (flags & REGEX_MULTILINE) o |= PCRE2_MULTILINE;
    if (flags & REGEX_DOTALL) o |= PCRE2_DOTALL;
    if (flags & REGEX_EXTENDED) o |= PCRE2_EXTENDED;
    return o;
}

static void entry_free(struct regex_entry *e)
{
    free(e->pattern);
    free(e->hs_expr);
    pcre2_code_free(e->code);
}

struct regex_builder *regex_builder_new(void)
{
    return xcalloc(1, sizeof(struct regex_builder));
}

size_t regex_builder_count(const struct regex_builder *b)
{
    return b->count;
}

void regex_builder_free(struct regex_builder *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->count; i++)
        entry_free(&b->entries[i]);
    free(b->entries);
    free(b);
}

/* Does Hyperscan accept expr with these flags? Parses only; builds nothing. */
static bool hyperscan_accepts(const char *expr, unsigned hs_flags)
{
    hs_expr_info_t *info = NULL;
    hs_compile_error_t *cerr = NULL;
    if (hs_expression_info(expr, hs_flags, &info, &cerr) != HS_SUCCESS) {
        hs_free_compile_error(cerr);
        return false;
    }
    free(info); /* allocated with the misc allocator, malloc by default */
    return true;
}

int regex_builder_add(struct regex_builder *b, unsigned id, const char *pattern, unsigned flags,
                      enum regex_engine *engine)
{
    assert(b && pattern);
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                     pcre2_options_for(flags), &errcode, &erroff, NULL);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        err_set("regex id=%u invalid pattern at offset %zu: %s", id, (size_t)erroff,
                (const char *)msg);
        return -1;
    }

    struct regex_entry e = {.id = id, .flags = flags, .pattern = xstrdup(pattern), .code = code};
    if (flags & REGEX_EXTENDED) {
        /* Hyperscan has no extended compile flag but honours the inline (?x);
         * it rejects a # comment that no newline ends, hence the one added. */
        size_t n = strlen(pattern);
        e.hs_expr = xmalloc(n + 6);
        memcpy(e.hs_expr, "(?x)", 4);
        memcpy(e.hs_expr + 4, pattern, n);
        memcpy(e.hs_expr + 4 + n, "\n", 2);
    } else {
        e.hs_expr = xstrdup(pattern);
    }
    /* Whether Hyperscan takes it is asked now only if the caller wants to know; otherwise
     * at build time, and only if the disk cache does not already say. */
    if (engine) {
        e.in_hs = hyperscan_accepts(e.hs_expr, hs_flags_for(flags));
        e.classified = true;
    }

    if (b->count == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->entries = xrealloc(b->entries, b->cap * sizeof(*b->entries));
    }
    b->entries[b->count++] = e;
    if (engine) *engine = e.in_hs ? REGEX_ENGINE_HYPERSCAN : REGEX_ENGINE_PCRE2;
    return 0;
}

static uint64_t entries_hash(const struct regex_entry *entries, size_t count)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) log_fatal("event=oom what=xxh3_state");
    XXH3_64bits_reset(st);
    const char *ver = hs_version();
    XXH3_64bits_update(st, ver, strlen(ver) + 1);
    /* The host's CPU features too: a database compiled for another CPU (another machine, or
     * this one under valgrind, which hides AVX2/AVX-512) loads but scans more slowly, or not at
     * all when it needs features this CPU lacks. */
    hs_platform_info_t plat;
    if (hs_populate_platform(&plat) == HS_SUCCESS) {
        uint64_t p[2] = {plat.tune, plat.cpu_features};
        XXH3_64bits_update(st, p, sizeof p);
    }
    for (size_t i = 0; i < count; i++) {
        const struct regex_entry *e = &entries[i];
        uint32_t head[3] = {e->id, e->flags, (uint32_t)strlen(e->pattern)};
        XXH3_64bits_update(st, head, sizeof(head));
        XXH3_64bits_update(st, e->pattern, head[2]);
    }
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

static char *cache_path(const char *cache_dir, uint64_t hash)
{
    struct buf p = {0};
    buf_printf(&p, "%s/regex-%016llx.hsdb", cache_dir, (unsigned long long)hash);
    return buf_release(&p);
}

/* The cache's byte per entry: which way Hyperscan takes it. */
enum { CACHE_PCRE2 = 0, CACHE_EXACT = 1, CACHE_PREFILTER = 2 };

/*
 * Loads the database for these entries from path and sets each entry's
 * in_hs / in_pf from it. Returns NULL (entries untouched) if the file is
 * missing or does not fit; a bad file is only worth a warning, the caller
 * recompiles.
 */
static hs_database_t *cache_load(const char *path, uint64_t hash, struct regex_entry *entries,
                                 size_t count)
{
    if (access(path, R_OK) != 0) return NULL;
    char *data;
    size_t len;
    if (file_read(path, &data, &len) != 0) {
        log_warn("event=regex_cache_unreadable path=%s reason=\"%s\"", path, err_msg());
        return NULL;
    }
    hs_database_t *db = NULL;
    size_t head = 8 + 8 + 8;
    uint64_t file_hash, file_count;
    if (len < head + count || memcmp(data, CACHE_MAGIC, 8) != 0) goto bad;
    memcpy(&file_hash, data + 8, 8);
    memcpy(&file_count, data + 16, 8);
    if (file_hash != hash || file_count != count) goto bad;
    for (size_t i = 0; i < count; i++)
        if (data[head + i] > CACHE_PREFILTER) goto bad;
    if (hs_deserialize_database(data + head + count, len - head - count, &db) != HS_SUCCESS) {
        db = NULL;
        goto bad;
    }
    for (size_t i = 0; i < count; i++) {
        entries[i].in_hs = data[head + i] == CACHE_EXACT;
        entries[i].in_pf = data[head + i] == CACHE_PREFILTER;
        entries[i].classified = true;
    }
    free(data);
    return db;
bad:
    log_warn("event=regex_cache_invalid path=%s", path);
    free(data);
    return NULL;
}

/* Writes the cache file via a temporary file and rename, so readers never see half of it. */
static void cache_store(const char *path, uint64_t hash, const struct regex_entry *entries,
                        size_t count, const hs_database_t *db)
{
    char *ser = NULL;
    size_t ser_len = 0;
    if (hs_serialize_database(db, &ser, &ser_len) != HS_SUCCESS) {
        log_warn("event=regex_cache_serialize_failed path=%s", path);
        return;
    }
    struct buf tmp = {0};
    buf_printf(&tmp, "%s.XXXXXX", path);
    FILE *f = NULL;
    int fd = -1;
    if (file_mkdir_parents(path) != 0) {
        log_warn("event=regex_cache_write_failed path=%s reason=\"%s\"", path, err_msg());
        goto out;
    }
    if ((fd = mkstemp(tmp.data)) < 0 || !(f = fdopen(fd, "wb"))) {
        log_warn("event=regex_cache_write_failed path=%s reason=\"%s\"", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp.data);
        }
        goto out;
    }
    uint64_t h = hash, n = count;
    bool ok =
        fwrite(CACHE_MAGIC, 1, 8, f) == 8 && fwrite(&h, 8, 1, f) == 1 && fwrite(&n, 8, 1, f) == 1;
    for (size_t i = 0; ok && i < count; i++)
        ok = fputc(entries[i].in_hs   ? CACHE_EXACT
                   : entries[i].in_pf ? CACHE_PREFILTER
                                      : CACHE_PCRE2,
                   f) != EOF;
    ok = ok && fwrite(ser, 1, ser_len, f) == ser_len;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp.data, path) != 0) {
        log_warn("event=regex_cache_write_failed path=%s reason=\"%s\"", path, strerror(errno));
        unlink(tmp.data);
    }
out:
    buf_free(&tmp);
    free(ser); /* hs_serialize_database uses the misc allocator, malloc by default */
}

/* Marks which entries Hyperscan takes exactly (in_hs) or only as a prefilter (in_pf). */
static void classify(struct regex_entry *entries, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        struct regex_entry *e = &entries[i];
        if (!e->classified) {
            e->in_hs = hyperscan_accepts(e->hs_expr, hs_flags_for(e->flags));
            e->classified = true;
        }
        e->in_pf =
            !e->in_hs && hyperscan_accepts(e->hs_expr, hs_flags_for(e->flags) | HS_FLAG_PREFILTER);
    }
}

/*
 * Compiles the entries marked in_hs (exact) and in_pf (HS_FLAG_PREFILTER)
 * into one database, so one pass over a text serves both. An expression the
 * multi-compile still rejects is moved to plain PCRE2 and the compile
 * retried; a failure not tied to one expression moves them all. Returns NULL
 * if none is left for Hyperscan.
 */
static hs_database_t *hyperscan_compile(struct regex_entry *entries, size_t count)
{
    const char **exprs = xmalloc((count ? count : 1) * sizeof(*exprs));
    unsigned *flags = xmalloc((count ? count : 1) * sizeof(*flags));
    unsigned *ids = xmalloc((count ? count : 1) * sizeof(*ids));
    hs_database_t *db = NULL;
    for (;;) {
        unsigned n = 0;
        for (size_t i = 0; i < count; i++) {
            if (!entries[i].in_hs && !entries[i].in_pf) continue;
            exprs[n] = entries[i].hs_expr;
            flags[n] = hs_flags_for(entries[i].flags) | (entries[i].in_pf ? HS_FLAG_PREFILTER : 0);
            ids[n] = (unsigned)i; /* Hyperscan ids are entry indices */
            n++;
        }
        if (n == 0) break;
        hs_compile_error_t *cerr = NULL;
        if (hs_compile_multi(exprs, flags, ids, n, HS_MODE_BLOCK, NULL, &db, &cerr) == HS_SUCCESS)
            break;
        db = NULL;
        if (cerr->expression >= 0 && (unsigned)cerr->expression < n) {
            struct regex_entry *e = &entries[ids[cerr->expression]];
            log_warn("event=regex_moved_to_pcre2 id=%u reason=\"%s\"", e->id, cerr->message);
            e->in_hs = e->in_pf = false;
        } else {
            log_warn("event=regex_hyperscan_failed patterns=%u reason=\"%s\"", n, cerr->message);
            for (size_t i = 0; i < count; i++)
                entries[i].in_hs = entries[i].in_pf = false;
        }
        hs_free_compile_error(cerr);
    }
    free(exprs);
    free(flags);
    free(ids);
    return db;
}

struct regex_set *regex_set_build(struct regex_builder *b, const char *cache_dir)
{
    assert(b);
    struct regex_set *set = xcalloc(1, sizeof(*set));
    set->entries = b->entries;
    set->count = b->count;
    b->entries = NULL;
    b->count = b->cap = 0;

    uint64_t hash = 0;
    char *path = NULL;
    if (cache_dir && set->count) {
        hash = entries_hash(set->entries, set->count);
        path = cache_path(cache_dir, hash);
        set->db = cache_load(path, hash, set->entries, set->count);
        set->from_cache = set->db != NULL;
    }
    if (!set->db) {
        classify(set->entries, set->count);
        set->db = hyperscan_compile(set->entries, set->count);
        if (path && set->db) cache_store(path, hash, set->entries, set->count, set->db);
    }
    free(path);

    set->pcre2_only = xmalloc((set->count ? set->count : 1) * sizeof(size_t));
    for (size_t i = 0; i < set->count; i++) {
        struct regex_entry *e = &set->entries[i];
        if (!set->db) e->in_hs = e->in_pf = false;
        if (e->in_hs) {
            set->hs_count++;
            /* Hyperscan says whether it matches; counting the matches of a rule with tflags
             * multiple is PCRE2's, on every message that has one: compiled, not interpreted
             * (the interpreter was an eighth of a full scan). */
            if (!(e->flags & REGEX_EXISTS_ONLY))
                (void)pcre2_jit_compile(e->code, PCRE2_JIT_COMPLETE);
            continue;
        }
        set->pf_count += e->in_pf;
        /* JIT failure is not fatal: pcre2_match() then interprets. */
        (void)pcre2_jit_compile(e->code, PCRE2_JIT_COMPLETE);
        set->pcre2_only[set->pcre2_only_count++] = i;
    }
    return set;
}

void regex_set_free(struct regex_set *set)
{
    if (!set) return;
    for (size_t i = 0; i < set->count; i++)
        entry_free(&set->entries[i]);
    free(set->entries);
    free(set->pcre2_only);
    hs_free_database(set->db);
    free(set);
}

void regex_set_stats(const struct regex_set *set, struct regex_stats *st)
{
    st->hyperscan = set->hs_count;
    st->pcre2 = set->pcre2_only_count;
    st->from_cache = set->from_cache;
}

struct regex_scratch *regex_scratch_new(const struct regex_set *set)
{
    struct regex_scratch *s = xcalloc(1, sizeof(*s));
    if (set->db && hs_alloc_scratch(set->db, &s->hs) != HS_SUCCESS)
        log_fatal("event=oom what=hs_scratch");
    s->pf_hit = xcalloc(set->count ? set->count : 1, 1);
    /* One ovector pair is enough: we only need the whole match. */
    s->md = pcre2_match_data_create(1, NULL);
    s->mctx = pcre2_match_context_create(NULL);
    s->jit_stack = pcre2_jit_stack_create(32 * 1024, REGEX_JIT_STACK_BYTES, NULL);
    if (!s->md || !s->mctx || !s->jit_stack) log_fatal("event=oom what=pcre2_scratch");
    pcre2_set_match_limit(s->mctx, REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(s->mctx, REGEX_DEPTH_LIMIT);
    pcre2_jit_stack_assign(s->mctx, NULL, s->jit_stack);
    s->hit_cap = set->hs_count;
    s->hits = xmalloc((s->hit_cap ? s->hit_cap : 1) * sizeof(*s->hits));
    return s;
}

void regex_scratch_free(struct regex_scratch *s)
{
    if (!s) return;
    hs_free_scratch(s->hs);
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jit_stack);
    free(s->hits);
    free(s->pf_hit);
    free(s);
}

/* The scan's context for Hyperscan's callback. */
struct hs_ctx {
    const struct regex_set *set;
    struct regex_scratch *s;
};

static int on_hyperscan_match(unsigned int hs_id, unsigned long long from, unsigned long long to,
                              unsigned int flags, void *ctx)
{
    struct hs_ctx *c = ctx;
    (void)from, (void)to, (void)flags;
    if (c->set->entries[hs_id].in_pf) { /* a prefilter: PCRE2 decides */
        c->s->pf_hit[hs_id] = 1;
        return 0;
    }
    /* HS_FLAG_SINGLEMATCH: each id at most once, so hits never overflows. */
    assert(c->s->hit_count < c->s->hit_cap);
    c->s->hits[c->s->hit_count++] = hs_id;
    return 0;
}

static bool is_limit_error(int rc)
{
    return rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
           rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT;
}

/*
 * Reports the non-overlapping matches of e in text the way Perl's m//g finds
 * them: after an empty match, the next attempt at the same offset must not be
 * empty, otherwise the search moves on one byte. known_match says Hyperscan
 * saw a match, so a limit hit before the first match still reports one (at
 * 0..0: where is unknown). Returns 0, or -1 on an engine failure.
 */
static int pcre2_report(const struct regex_entry *e, struct regex_scratch *s, const char *text,
                        size_t len, bool known_match, regex_match_fn on_match,
                        regex_timeout_fn on_timeout, void *ctx)
{
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
    size_t start = 0;
    uint32_t opts = 0;
    bool reported = false;
    while (start <= len) {
        int rc = pcre2_match(e->code, (PCRE2_SPTR)text, len, start, opts, s->md, s->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) {
            if (opts == 0) break;
            /* No non-empty match at start after an empty one: advance a byte. */
            opts = 0;
            start++;
            continue;
        }
        if (rc < 0) {
            if (!is_limit_error(rc)) {
                PCRE2_UCHAR msg[128];
                pcre2_get_error_message(rc, msg, sizeof(msg));
                err_set("regex id=%u pcre2_match failed: %s", e->id, (const char *)msg);
                return -1;
            }
            if (on_timeout) on_timeout(ctx, e->id);
            if (known_match && !reported) on_match(ctx, e->id, 0, 0);
            return 0;
        }
        /* rc == 0 only means the one-pair ovector was too small for the groups. */
        size_t from = ov[0], to = ov[1];
        reported = true;
        if (on_match(ctx, e->id, from, to) != 0) break;
        start = to;
        opts = from == to ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
    }
    return 0;
}

int regex_scan(const struct regex_set *set, struct regex_scratch *s, const char *text, size_t len,
               regex_match_fn on_match, regex_timeout_fn on_timeout, void *ctx)
{
    assert(set && s && on_match && (text || len == 0));
    if (!text) text = "";
    int rc = 0;
    s->hit_count = 0;
    if (set->pf_count) memset(s->pf_hit, 0, set->count);
    if (set->db) {
        if (len > UINT32_MAX) {
            err_set("regex text too long for hyperscan len=%zu", len);
            return -1;
        }
        assert(s->hs);
        struct hs_ctx c = {set, s};
        hs_error_t hrc = hs_scan(set->db, text, (unsigned)len, 0, s->hs, on_hyperscan_match, &c);
        if (hrc != HS_SUCCESS) {
            err_set("regex hs_scan failed code=%d", (int)hrc);
            return -1;
        }
    }
    for (size_t i = 0; i < s->hit_count; i++) {
        const struct regex_entry *e = &set->entries[s->hits[i]];
        if (e->flags & REGEX_EXISTS_ONLY) { /* Hyperscan's word is final */
            on_match(ctx, e->id, 0, 0);
            continue;
        }
        if (pcre2_report(e, s, text, len, true, on_match, on_timeout, ctx) != 0) rc = -1;
    }
    for (size_t i = 0; i < set->pcre2_only_count; i++) {
        size_t k = set->pcre2_only[i];
        if (set->entries[k].in_pf && !s->pf_hit[k]) continue; /* its prefilter says: no match */
        if (pcre2_report(&set->entries[k], s, text, len, false, on_match, on_timeout, ctx) != 0)
            rc = -1;
    }
    return rc;
}
