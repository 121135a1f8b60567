/*
 * rule_engine - a rule set compiled for scanning. See rule_engine.h.
 *
 * Every rule that runs gets a slot (its index in e->rules); a scan counts hits
 * per slot in the scratch. Regex rules of one kind share one regex set whose
 * ids are slots, so a match callback only bumps a counter. Header rules are
 * grouped by the text they read ("target": header name, :raw/:addr/:name and
 * the if-unset text), each target with its own set; the texts are built once
 * per scan. Metas are compiled to postfix programs and run in dependency
 * order after the regex rules, so a meta sees every rule below it.
 *
 * The text each kind sees follows SpamAssassin 4.0 (Mail::SpamAssassin::
 * Message and PerMsgStatus) as closely as our message model allows: the
 * rendered body is the Subject line followed by paragraphs with whitespace
 * collapsed; header values end in "\n". Where our model differs (HTML
 * rendering, relay trust), the agreement benchmark measures the difference.
 */
#include "checks/rule_engine.h"
#include "checks/regex.h"
#include "checks/rules.h"
#include "checks/symbols.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "message/message.h"
#include "message/url.h"
#include "scan/result.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <gmime/gmime.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BODY_LINE_MAX  2048 /* SpamAssassin's MAX_BODY_LINE_LENGTH */
#define META_MAX_OPS   512
#define META_MAX_STACK 128
#define TIMEOUT_SYMBOL "RULE_TIMEOUT"

enum meta_op {
    MOP_NUM,     /* push value */
    MOP_RULE,    /* push hits of slot arg */
    MOP_SYMBOL,  /* push 1 if registry symbol arg hit, else 0 */
    MOP_UNKNOWN, /* push "unknown": a rule we cannot evaluate (an eval: test, a bad regex) */
    MOP_NOT,
    MOP_NEG,
    MOP_MUL,
    MOP_DIV,
    MOP_ADD,
    MOP_SUB,
    MOP_LT,
    MOP_GT,
    MOP_LE,
    MOP_GE,
    MOP_EQ,
    MOP_NE,
    MOP_AND,
    MOP_OR,
};

struct meta_insn {
    enum meta_op op;
    int arg;
    double num;
};

/* A meta operand or result: a number, and whether it rests on a rule we could not run. */
struct meta_value {
    double v;
    bool unknown;
};

struct slot {
    const struct rule *r;
    int symbol;       /* registry id; -1 for sub-rules (__NAME) */
    int target;       /* header rules: index into e->targets */
    bool runs_regex;  /* has a compiled regex */
    unsigned maxhits; /* 0: one hit; otherwise the most hits counted (tflags multiple) */
    bool partial;     /* a meta that reads (perhaps through other metas) a rule we cannot run */
    struct meta_insn *prog; /* metas */
    size_t n_prog;
    /* A meta's value when every rule it reads has no hit and is known, and no built-in symbol
     * it reads hit: most metas on most messages, answered without running prog. */
    struct meta_value quiet;
};

/* What a target's name selects: a header, or one of SpamAssassin's pseudo-headers. */
enum target_kind {
    TARGET_HEADER,
    TARGET_ALL,
    TARGET_ENVELOPE_FROM,
    TARGET_TO_CC,
    TARGET_MESSAGE_ID,
    TARGET_RELAYS_EXTERNAL,
    TARGET_RELAYS_TRUSTED,
};

struct target {
    char *name; /* header name as the rules write it, e.g. "From", "ALL", "ToCc" */
    enum target_kind kind;
    enum rule_header_part part;
    bool raw;
    const char *if_unset; /* text when the header is absent, or NULL */
    struct regex_set *set;
    int *slots; /* header rules reading this text (regex and exists:) */
    size_t n_slots;
    /* The slots whose hit is not simply their regex's: exists: and !~ rules. */
    int *special_slots;
    size_t n_special;
    /* What the regexes find in the text of an absent header ("" or the if-unset text),
     * computed once at build: most targets are absent from most messages. */
    int *absent_slots;
    unsigned *absent_hits;
    size_t n_absent;
};

/* A meta as the scan loop sees it: its slot and what it is when quiet (struct slot). */
struct meta_brief {
    int slot;
    bool quiet_hit, quiet_unknown;
    bool reads_symbols;
};

struct rule_engine {
    const struct rule_set *rs;
    struct slot *slots;
    size_t n_slots;
    int *slot_of_rule; /* rule set index -> slot, -1 when the rule does not run */
    struct target *targets;
    size_t n_targets;
    struct regex_set *body, *rawbody, *uri, *full;
    int *metas; /* meta slots in evaluation order */
    size_t n_metas;
    /* What a scan reads of each meta, in order, packed (the slots are large and scattered). */
    struct meta_brief *meta_briefs;
    /* The metas that read each slot (MOP_RULE), as one array: those of slot i are
     * meta_readers[reader_start[i] .. reader_start[i + 1]). */
    size_t *reader_start;
    int *meta_readers;
    int timeout_symbol;
    struct rule_engine_stats stats;
};

struct rule_scratch {
    size_t n_targets;
    unsigned *hits;           /* per slot */
    unsigned char *timed_out; /* per slot */
    unsigned char *unknown;   /* per slot: a meta whose value depends on what we cannot evaluate */
    unsigned char *stirred;   /* per slot: a meta that reads a slot which hit or is unknown */
    struct regex_scratch **target_scratch;
    struct regex_scratch *body, *rawbody, *uri, *full;
    struct buf text;
    struct buf line;
    uint32_t *header_hashes; /* header_name_hash() of each header of the message being scanned */
    /* Each header's address list, parsed the first time a target reads it (From:addr and
     * From:name, To:addr and ToCc:addr, ...) and released once the header targets are done. */
    InternetAddressList **address_lists;
    unsigned char *address_parsed;
    size_t header_hashes_cap;
};

/* ---------------------------------------------------------------- build -- */

static double rule_score(const struct rule *r, int set)
{
    if (r->has_score) return r->scores[set];
    {
        double s = strncmp(r->name, "T_", 2) == 0 ? 0.01 : 1.0;
        return (r->tflags & RULE_TF_NICE) ? -s : s;
    }
}

static bool is_subrule(const struct rule *r)
{
    return r->name[0] == '_' && r->name[1] == '_';
}

static enum target_kind target_kind_of(const char *n)
{
    if (strcmp(n, "ALL") == 0) return TARGET_ALL;
    if (strcasecmp(n, "EnvelopeFrom") == 0) return TARGET_ENVELOPE_FROM;
    if (strcasecmp(n, "ToCc") == 0) return TARGET_TO_CC;
    if (strcmp(n, "MESSAGEID") == 0) return TARGET_MESSAGE_ID;
    if (strcasecmp(n, "X-Spam-Relays-External") == 0 ||
        strcasecmp(n, "X-Spam-Relays-Untrusted") == 0)
        return TARGET_RELAYS_EXTERNAL;
    if (strcasecmp(n, "X-Spam-Relays-Trusted") == 0 || strcasecmp(n, "X-Spam-Relays-Internal") == 0)
        return TARGET_RELAYS_TRUSTED;
    return TARGET_HEADER;
}

static int target_for(struct rule_engine *e, const struct rule *r)
{
    size_t i;
    struct target *t;
    for (i = 0; i < e->n_targets; i++) {
        t = &e->targets[i];
        if (t->part == r->part && t->raw == r->raw && strcmp(t->name, r->header) == 0 &&
            ((t->if_unset == NULL && r->if_unset == NULL) ||
             (t->if_unset && r->if_unset && strcmp(t->if_unset, r->if_unset) == 0)))
            return (int)i;
    }
    e->targets = xrealloc(e->targets, (e->n_targets + 1) * sizeof *e->targets);
    t = &e->targets[e->n_targets];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(r->header);
    t->kind = target_kind_of(t->name);
    t->part = r->part;
    t->raw = r->raw;
    t->if_unset = r->if_unset;
    return (int)e->n_targets++;
}

static void target_add_slot(struct target *t, int slot)
{
    t->slots = xrealloc(t->slots, (t->n_slots + 1) * sizeof *t->slots);
    t->slots[t->n_slots++] = slot;
}

/* Adds the regex of slot to b; false (warned) if PCRE2 cannot compile it. */
static bool add_regex(struct rule_engine *e, struct regex_builder *b, int slot)
{
    const struct rule *r = e->slots[slot].r;
    /* One hit is all a rule without tflags multiple counts: Hyperscan's yes is enough. */
    unsigned flags = r->regex_flags | (e->slots[slot].maxhits ? 0 : REGEX_EXISTS_ONLY);
    if (regex_builder_add(b, (unsigned)slot, r->pattern, flags, NULL) != 0) {
        log_info("msg=\"rule skipped: regex does not compile\" rule=%s file=%s line=%d "
                 "reason=\"%s\"",
                 r->name, r->file, r->line, err_msg());
        e->stats.failed++;
        return false;
    }
    return true;
}

/* NULL for a kind without rules: the scan then skips building its text (with no body rule, as
 * in a Bayes-only configuration, that was about 4 % of a classify's instructions). */
static struct regex_set *build_set(struct rule_engine *e, struct regex_builder *b,
                                   const char *cache_dir)
{
    struct regex_set *set;
    struct regex_stats st;
    if (regex_builder_count(b) == 0) return NULL;
    set = regex_set_build(b, cache_dir);
    if (set == NULL) {
        log_error("msg=\"regex set not built\" reason=\"%s\"", err_msg());
        return NULL;
    }
    regex_set_stats(set, &st);
    e->stats.hyperscan += st.hyperscan;
    e->stats.pcre2 += st.pcre2;
    return set;
}

/* --- meta expressions: tokens, then shunting-yard into postfix ---------- */

enum tok_kind { TK_END, TK_NUM, TK_NAME, TK_OP, TK_LPAREN, TK_RPAREN, TK_BAD };

struct meta_lexer {
    const char *p;
    enum tok_kind kind;
    const char *start;
    size_t len;
    double num;
    enum meta_op op;
};

static void meta_next(struct meta_lexer *lx)
{
    const char *p = lx->p;
    while (*p == ' ' || *p == '\t')
        p++;
    lx->start = p;
    if (*p == '\0') {
        lx->kind = TK_END;
    } else if (isalpha((unsigned char)*p) || *p == '_') {
        while (isalnum((unsigned char)*p) || *p == '_')
            p++;
        lx->kind = TK_NAME;
    } else if (isdigit((unsigned char)*p) || (*p == '.' && isdigit((unsigned char)p[1]))) {
        char *end;
        lx->num = strtod(p, &end);
        p = end;
        lx->kind = TK_NUM;
    } else if (*p == '(' || *p == ')') {
        lx->kind = *p == '(' ? TK_LPAREN : TK_RPAREN;
        p++;
    } else {
        static const struct {
            const char *s;
            enum meta_op op;
        } ops[] = {{"&&", MOP_AND}, {"||", MOP_OR}, {"<=", MOP_LE}, {">=", MOP_GE}, {"==", MOP_EQ},
                   {"!=", MOP_NE},  {"<", MOP_LT},  {">", MOP_GT},  {"!", MOP_NOT}, {"+", MOP_ADD},
                   {"-", MOP_SUB},  {"*", MOP_MUL}, {"/", MOP_DIV}};
        size_t i;
        lx->kind = TK_BAD;
        for (i = 0; i < sizeof ops / sizeof ops[0]; i++) {
            size_t n = strlen(ops[i].s);
            if (strncmp(p, ops[i].s, n) == 0) {
                lx->kind = TK_OP;
                lx->op = ops[i].op;
                p += n;
                break;
            }
        }
    }
    lx->len = (size_t)(p - lx->start);
    lx->p = p;
}

/*
 * Which rules a scan needs: every rule with a score in the set, and what the
 * metas among them read, transitively. A sub-rule outside that (its metas all
 * scored 0, say) would cost a regex on every message and change nothing, so
 * it does not run. live[i] is for rules_at(rs, i); the caller frees it.
 */
static char *rules_live(const struct rule_set *rs, int set)
{
    size_t n = rules_count(rs), i, sp = 0;
    char *live = xcalloc(n ? n : 1, 1);
    size_t *stack = xmalloc((n ? n : 1) * sizeof *stack);
    const struct rule *first = rules_at(rs, 0);

    for (i = 0; i < n; i++) {
        const struct rule *r = rules_at(rs, i);
        if (r->kind == RULE_NONE || is_subrule(r) || rule_score(r, set) == 0.0) continue;
        live[i] = 1;
        stack[sp++] = i;
    }
    while (sp > 0) {
        const struct rule *r = rules_at(rs, stack[--sp]);
        struct meta_lexer lx = {.p = r->meta};
        if (r->kind != RULE_META || r->meta == NULL) continue;
        for (meta_next(&lx); lx.kind != TK_END; meta_next(&lx)) {
            char name[256];
            const struct rule *t;
            size_t k;
            if (lx.kind == TK_BAD) { /* meta_compile reports it; read on past it */
                lx.p++;
                continue;
            }
            if (lx.kind != TK_NAME || lx.len >= sizeof name) continue;
            memcpy(name, lx.start, lx.len);
            name[lx.len] = '\0';
            if ((t = rules_find(rs, name)) == NULL) continue;
            k = (size_t)(t - first);
            if (k < n && !live[k]) {
                live[k] = 1;
                stack[sp++] = k;
            }
        }
    }
    free(stack);
    return live;
}

/* Perl's precedence, higher binds tighter. */
static int meta_prec(enum meta_op op)
{
    switch (op) {
    case MOP_NOT:
    case MOP_NEG:
        return 7;
    case MOP_MUL:
    case MOP_DIV:
        return 6;
    case MOP_ADD:
    case MOP_SUB:
        return 5;
    case MOP_LT:
    case MOP_GT:
    case MOP_LE:
    case MOP_GE:
        return 4;
    case MOP_EQ:
    case MOP_NE:
        return 3;
    case MOP_AND:
        return 2;
    case MOP_OR:
        return 1;
    default:
        return 0;
    }
}

static bool meta_unary(enum meta_op op)
{
    return op == MOP_NOT || op == MOP_NEG;
}

/* What a name in a meta refers to: a rule slot, a built-in symbol, or nothing. */
static struct meta_insn meta_operand(const struct rule_engine *e, const struct symbol_registry *reg,
                                     const char *name, size_t len)
{
    struct meta_insn in = {MOP_NUM, -1, 0};
    char buf[128];
    const struct rule *r;
    if (len >= sizeof buf) return in;
    memcpy(buf, name, len);
    buf[len] = '\0';
    if (strcmp(buf, "local_tests_only") == 0) {
        in.num = 1; /* we never run SpamAssassin's network tests */
        return in;
    }
    r = rules_find(e->rs, buf);
    if (r && r->kind != RULE_NONE) {
        int slot = e->slot_of_rule[r - rules_at(e->rs, 0)];
        if (slot >= 0) {
            bool regex_kind = r->kind != RULE_META && !(r->kind == RULE_HEADER && r->exists);
            in.op = regex_kind && !e->slots[slot].runs_regex ? MOP_UNKNOWN : MOP_RULE;
            in.arg = slot;
        }
        return in; /* disabled (score 0): 0, as SpamAssassin never runs it */
    }
    in.arg = symbols_lookup(reg, buf);
    if (in.arg >= 0)
        in.op = MOP_SYMBOL; /* a built-in check, perhaps standing in for an eval */
    else if (r && r->unsupported)
        in.op = MOP_UNKNOWN;
    return in;
}

/* Compiles s->r->meta into s->prog. -1 if the expression is malformed. */
static int meta_compile(const struct rule_engine *e, const struct symbol_registry *reg,
                        struct slot *s)
{
    struct meta_lexer lx = {.p = s->r->meta};
    enum meta_op ops[META_MAX_STACK];
    bool is_paren[META_MAX_STACK];
    size_t n_ops = 0, n = 0;
    int depth = 0; /* values on the stack the program would have */
    bool want_operand = true;
    struct meta_insn prog[META_MAX_OPS];

#define EMIT(insn)                                                                                 \
    do {                                                                                           \
        if (n == META_MAX_OPS) return -1;                                                          \
        prog[n++] = (insn);                                                                        \
    } while (0)
#define EMIT_OP(o)                                                                                 \
    do {                                                                                           \
        struct meta_insn in_ = {(o), 0, 0}; /* o evaluated once: it may pop the stack */           \
        if (meta_unary(in_.op)) {                                                                  \
            if (depth < 1) return -1;                                                              \
        } else {                                                                                   \
            if (depth < 2) return -1;                                                              \
            depth--;                                                                               \
        }                                                                                          \
        EMIT(in_);                                                                                 \
    } while (0)

    for (meta_next(&lx); lx.kind != TK_END; meta_next(&lx)) {
        switch (lx.kind) {
        case TK_NUM:
        case TK_NAME: {
            struct meta_insn in = {MOP_NUM, 0, lx.num};
            if (!want_operand) return -1;
            if (lx.kind == TK_NAME) in = meta_operand(e, reg, lx.start, lx.len);
            EMIT(in);
            depth++;
            want_operand = false;
            break;
        }
        case TK_LPAREN:
            if (!want_operand || n_ops == META_MAX_STACK) return -1;
            is_paren[n_ops] = true;
            ops[n_ops++] = MOP_NUM;
            break;
        case TK_RPAREN:
            if (want_operand) {
                /* "()" is an empty meta: SpamAssassin treats it as 0. */
                if (n_ops && is_paren[n_ops - 1] && n == 0) {
                    struct meta_insn zero = {MOP_NUM, 0, 0};
                    EMIT(zero);
                    depth++;
                    want_operand = false;
                } else {
                    return -1;
                }
            }
            while (n_ops && !is_paren[n_ops - 1])
                EMIT_OP(ops[--n_ops]);
            if (n_ops == 0) return -1;
            n_ops--;
            break;
        case TK_OP: {
            enum meta_op op = lx.op;
            if (want_operand) {
                if (op == MOP_SUB)
                    op = MOP_NEG;
                else if (op == MOP_ADD)
                    break; /* unary plus */
                else if (op != MOP_NOT)
                    return -1;
            } else if (op == MOP_NOT) {
                return -1;
            }
            if (!meta_unary(op)) {
                while (n_ops && !is_paren[n_ops - 1] && meta_prec(ops[n_ops - 1]) >= meta_prec(op))
                    EMIT_OP(ops[--n_ops]);
                want_operand = true;
            }
            if (n_ops == META_MAX_STACK) return -1;
            is_paren[n_ops] = false;
            ops[n_ops++] = op;
            break;
        }
        default:
            return -1;
        }
    }
    if (want_operand) return -1;
    while (n_ops) {
        if (is_paren[n_ops - 1]) return -1;
        EMIT_OP(ops[--n_ops]);
    }
    if (depth != 1) return -1;
#undef EMIT
#undef EMIT_OP
    s->prog = xmalloc(n * sizeof *s->prog);
    memcpy(s->prog, prog, n * sizeof *s->prog);
    s->n_prog = n;
    return 0;
}

/* Orders the metas so each comes after the metas it reads; metas in a cycle are dropped. */
static void meta_order(struct rule_engine *e, int *metas, size_t n)
{
    unsigned char *state = xcalloc(e->n_slots, 1); /* 0 new, 1 pending, 2 placed, 3 dropped */
    size_t i, placed = 0;
    bool progress = true;

    e->metas = xmalloc((n ? n : 1) * sizeof *e->metas);
    for (i = 0; i < n; i++)
        state[metas[i]] = 1;
    while (progress) {
        progress = false;
        for (i = 0; i < n; i++) {
            const struct slot *s = &e->slots[metas[i]];
            size_t k;
            bool ready = true;
            if (state[metas[i]] != 1) continue;
            for (k = 0; k < s->n_prog && ready; k++)
                if (s->prog[k].op == MOP_RULE && state[s->prog[k].arg] == 1) ready = false;
            if (!ready) continue;
            state[metas[i]] = 2;
            e->metas[placed++] = metas[i];
            progress = true;
        }
    }
    for (i = 0; i < n; i++) {
        if (state[metas[i]] != 1) continue;
        log_info("msg=\"meta rule dropped: circular dependency\" rule=%s file=%s line=%d",
                 e->slots[metas[i]].r->name, e->slots[metas[i]].r->file,
                 e->slots[metas[i]].r->line);
        e->stats.meta_bad++;
        free(e->slots[metas[i]].prog);
        e->slots[metas[i]].prog = NULL;
        e->slots[metas[i]].n_prog = 0;
    }
    e->n_metas = placed;
    /* In evaluation order, so a meta's inputs are settled before it. */
    for (i = 0; i < placed; i++) {
        struct slot *s = &e->slots[e->metas[i]];
        size_t k;
        for (k = 0; k < s->n_prog; k++)
            if (s->prog[k].op == MOP_UNKNOWN ||
                (s->prog[k].op == MOP_RULE && e->slots[s->prog[k].arg].partial))
                s->partial = true;
    }
    free(state);
}

static void metas_index_readers(struct rule_engine *e);
static void targets_index_special(struct rule_engine *e);
static void targets_precompute_absent(struct rule_engine *e);
static struct meta_value meta_eval(const struct slot *s, const unsigned *hits,
                                   const unsigned char *unknown, const struct scan_result *r);

struct rule_engine *rule_engine_new(const struct rule_set *rs, struct symbol_registry *reg,
                                    const struct rule_engine_options *opt)
{
    struct rule_engine *e = xcalloc(1, sizeof *e);
    int set = opt && opt->score_set >= 0 && opt->score_set <= 3 ? opt->score_set : 0;
    const char *cache = opt ? opt->cache_dir : NULL;
    size_t i, n = rules_count(rs), n_metas = 0;
    struct regex_builder *bb = regex_builder_new(), *br = regex_builder_new(),
                         *bu = regex_builder_new(), *bf = regex_builder_new();
    struct regex_builder **bt = NULL; /* one per header target */
    size_t n_bt = 0;
    int *metas;
    char *live;

    e->rs = rs;
    e->slots = xcalloc(n ? n : 1, sizeof *e->slots);
    e->slot_of_rule = xmalloc((n ? n : 1) * sizeof *e->slot_of_rule);
    e->timeout_symbol = symbols_add(reg, TIMEOUT_SYMBOL, 0.0,
                                    "A rule's regular expression needed too much work on "
                                    "this message and was stopped; it counted as not matching",
                                    "rules");

    /* Slots and symbols. */
    live = rules_live(rs, set);
    for (i = 0; i < n; i++) {
        const struct rule *r = rules_at(rs, i);
        double score = rule_score(r, set);
        struct slot *s;

        e->slot_of_rule[i] = -1;
        if (r->kind == RULE_NONE) {
            /* A score line for a built-in symbol re-scores it. */
            int id = r->has_score ? symbols_lookup(reg, r->name) : -1;
            if (id >= 0) symbols_add(reg, r->name, score, r->description, NULL);
            continue;
        }
        if (score == 0.0 && !is_subrule(r)) {
            e->stats.disabled++;
            continue;
        }
        if (!live[i]) {
            e->stats.unused++;
            continue;
        }
        s = &e->slots[e->n_slots];
        s->r = r;
        s->symbol = -1;
        s->target = -1;
        if (r->tflags & RULE_TF_MULTIPLE) s->maxhits = r->maxhits ? r->maxhits : ~0u;
        if (!is_subrule(r)) {
            s->symbol = symbols_add(reg, r->name, score, r->description ? r->description : r->name,
                                    "rules");
            if (s->symbol < 0) {
                log_info("msg=\"rule skipped: bad name\" rule=%s file=%s line=%d", r->name, r->file,
                         r->line);
                continue;
            }
        }
        e->slot_of_rule[i] = (int)e->n_slots++;
    }
    free(live);

    /* Regexes, grouped by what they read. */
    metas = xmalloc((e->n_slots ? e->n_slots : 1) * sizeof *metas);
    for (i = 0; i < e->n_slots; i++) {
        struct slot *s = &e->slots[i];
        const struct rule *r = s->r;
        switch (r->kind) {
        case RULE_HEADER: {
            int t = target_for(e, r);
            if (e->n_targets > n_bt) {
                bt = xrealloc(bt, e->n_targets * sizeof *bt);
                bt[n_bt++] = regex_builder_new();
            }
            s->target = t;
            target_add_slot(&e->targets[t], (int)i);
            if (!r->exists) s->runs_regex = add_regex(e, bt[t], (int)i);
            break;
        }
        case RULE_BODY:
            s->runs_regex = add_regex(e, bb, (int)i);
            break;
        case RULE_RAWBODY:
            s->runs_regex = add_regex(e, br, (int)i);
            break;
        case RULE_URI:
            s->runs_regex = add_regex(e, bu, (int)i);
            break;
        case RULE_FULL:
            s->runs_regex = add_regex(e, bf, (int)i);
            break;
        default:
            break;
        }
    }
    /* Metas after every regex rule: whether an operand runs is known only now. */
    for (i = 0; i < e->n_slots; i++) {
        struct slot *s = &e->slots[i];
        if (s->r->kind != RULE_META) continue;
        if (meta_compile(e, reg, s) != 0) {
            log_info("msg=\"meta rule dropped: bad expression\" rule=%s file=%s line=%d",
                     s->r->name, s->r->file, s->r->line);
            e->stats.meta_bad++;
        } else {
            metas[n_metas++] = (int)i;
        }
    }
    for (i = 0; i < e->n_targets; i++) {
        e->targets[i].set = build_set(e, bt[i], cache);
        regex_builder_free(bt[i]);
    }
    free(bt);
    e->body = build_set(e, bb, cache);
    e->rawbody = build_set(e, br, cache);
    e->uri = build_set(e, bu, cache);
    e->full = build_set(e, bf, cache);
    regex_builder_free(bb);
    regex_builder_free(br);
    regex_builder_free(bu);
    regex_builder_free(bf);
    meta_order(e, metas, n_metas);
    {
        /* Each meta's value on a message where nothing it reads hit (see struct slot). */
        unsigned *zero_hits = xcalloc(e->n_slots ? e->n_slots : 1, sizeof *zero_hits);
        unsigned char *zero_unknown = xcalloc(e->n_slots ? e->n_slots : 1, 1);
        for (i = 0; i < n_metas; i++) {
            struct slot *sl = &e->slots[metas[i]];
            sl->quiet = meta_eval(sl, zero_hits, zero_unknown, NULL);
        }
        free(zero_hits);
        free(zero_unknown);
    }
    free(metas);

    e->stats.rules = e->n_slots;
    e->stats.metas = e->n_metas;
    e->stats.header_targets = e->n_targets;
    metas_index_readers(e);
    targets_index_special(e);
    targets_precompute_absent(e);
    return e;
}

void rule_engine_free(struct rule_engine *e)
{
    size_t i;
    if (e == NULL) return;
    for (i = 0; i < e->n_slots; i++)
        free(e->slots[i].prog);
    for (i = 0; i < e->n_targets; i++) {
        regex_set_free(e->targets[i].set);
        free(e->targets[i].slots);
        free(e->targets[i].special_slots);
        free(e->targets[i].absent_slots);
        free(e->targets[i].absent_hits);
        free(e->targets[i].name);
    }
    regex_set_free(e->body);
    regex_set_free(e->rawbody);
    regex_set_free(e->uri);
    regex_set_free(e->full);
    free(e->targets);
    free(e->slots);
    free(e->slot_of_rule);
    free(e->metas);
    free(e->reader_start);
    free(e->meta_readers);
    free(e->meta_briefs);
    free(e);
}

void rule_engine_stats(const struct rule_engine *e, struct rule_engine_stats *st)
{
    *st = e->stats;
}

size_t rule_engine_count(const struct rule_engine *e)
{
    return e->n_slots;
}

const struct rule *rule_engine_rule(const struct rule_engine *e, size_t i)
{
    return e->slots[i].r;
}

bool rule_engine_rule_partial(const struct rule_engine *e, size_t i)
{
    return e->slots[i].partial;
}

static struct regex_scratch *scratch_for(const struct regex_set *set)
{
    return set ? regex_scratch_new(set) : NULL;
}

struct rule_scratch *rule_scratch_new(const struct rule_engine *e)
{
    struct rule_scratch *s = xcalloc(1, sizeof *s);
    size_t i;
    s->hits = xcalloc(e->n_slots ? e->n_slots : 1, sizeof *s->hits);
    s->timed_out = xcalloc(e->n_slots ? e->n_slots : 1, 1);
    s->unknown = xcalloc(e->n_slots ? e->n_slots : 1, 1);
    s->stirred = xcalloc(e->n_slots ? e->n_slots : 1, 1);
    s->n_targets = e->n_targets;
    s->target_scratch = xcalloc(e->n_targets ? e->n_targets : 1, sizeof *s->target_scratch);
    for (i = 0; i < e->n_targets; i++)
        s->target_scratch[i] = scratch_for(e->targets[i].set);
    s->body = scratch_for(e->body);
    s->rawbody = scratch_for(e->rawbody);
    s->uri = scratch_for(e->uri);
    s->full = scratch_for(e->full);
    return s;
}

void rule_scratch_free(struct rule_scratch *s)
{
    size_t i;
    if (s == NULL) return;
    for (i = 0; i < s->n_targets; i++)
        regex_scratch_free(s->target_scratch[i]);
    free(s->hits);
    free(s->timed_out);
    free(s->unknown);
    free(s->stirred);
    regex_scratch_free(s->body);
    regex_scratch_free(s->rawbody);
    regex_scratch_free(s->uri);
    regex_scratch_free(s->full);
    buf_free(&s->text);
    buf_free(&s->line);
    free(s->target_scratch);
    free(s->header_hashes);
    free(s->address_lists);
    free(s->address_parsed);
    free(s);
}

/* ----------------------------------------------------------------- scan -- */

struct match_ctx {
    const struct rule_engine *e;
    struct rule_scratch *s;
};

static int on_match(void *ctx, unsigned id, size_t from, size_t to)
{
    struct match_ctx *mc = ctx;
    const struct slot *sl = &mc->e->slots[id];
    unsigned *h = &mc->s->hits[id];
    (void)from;
    (void)to;
    if (sl->maxhits == 0) {
        *h = 1;
        return 1;
    }
    if (*h < sl->maxhits) (*h)++;
    return *h >= sl->maxhits;
}

static void on_timeout(void *ctx, unsigned id)
{
    struct match_ctx *mc = ctx;
    mc->s->timed_out[id] = 1;
}

static void scan_text(struct match_ctx *mc, const struct regex_set *set, struct regex_scratch *rs,
                      const char *text, size_t len)
{
    if (set == NULL) return;
    if (regex_scan(set, rs, text, len, on_match, on_timeout, mc) != 0)
        log_warn("msg=\"regex scan failed\" reason=\"%s\"", err_msg());
}

/*
 * Which metas read which slots (the reverse of their MOP_RULE operands), and which metas
 * read built-in symbols: a scan then runs only the metas whose operands moved from their
 * quiet state, instead of reading every meta's program (see rule_engine_scan()).
 */
static void metas_index_readers(struct rule_engine *e)
{
    size_t i, k, n_edges = 0;
    size_t *fill;

    e->reader_start = xcalloc(e->n_slots + 1, sizeof *e->reader_start);
    for (i = 0; i < e->n_metas; i++) {
        const struct slot *sl = &e->slots[e->metas[i]];
        for (k = 0; k < sl->n_prog; k++) {
            if (sl->prog[k].op != MOP_RULE) continue;
            e->reader_start[sl->prog[k].arg + 1]++;
            n_edges++;
        }
    }
    for (i = 0; i < e->n_slots; i++)
        e->reader_start[i + 1] += e->reader_start[i];
    e->meta_readers = xmalloc((n_edges ? n_edges : 1) * sizeof *e->meta_readers);
    fill = xmalloc((e->n_slots ? e->n_slots : 1) * sizeof *fill);
    memcpy(fill, e->reader_start, e->n_slots * sizeof *fill);
    for (i = 0; i < e->n_metas; i++) {
        const struct slot *sl = &e->slots[e->metas[i]];
        for (k = 0; k < sl->n_prog; k++)
            if (sl->prog[k].op == MOP_RULE) e->meta_readers[fill[sl->prog[k].arg]++] = e->metas[i];
    }
    free(fill);
    e->meta_briefs = xcalloc(e->n_metas ? e->n_metas : 1, sizeof *e->meta_briefs);
    for (i = 0; i < e->n_metas; i++) {
        const struct slot *sl = &e->slots[e->metas[i]];
        struct meta_brief *b = &e->meta_briefs[i];
        b->slot = e->metas[i];
        b->quiet_hit = !sl->quiet.unknown && sl->quiet.v != 0;
        b->quiet_unknown = sl->quiet.unknown;
        for (k = 0; k < sl->n_prog; k++)
            if (sl->prog[k].op == MOP_SYMBOL) b->reads_symbols = true;
    }
}

/* The exists: and !~ rules of each target (see struct target). */
static void targets_index_special(struct rule_engine *e)
{
    size_t i, k;
    for (i = 0; i < e->n_targets; i++) {
        struct target *t = &e->targets[i];
        t->special_slots = xmalloc((t->n_slots ? t->n_slots : 1) * sizeof *t->special_slots);
        for (k = 0; k < t->n_slots; k++) {
            const struct rule *r = e->slots[t->slots[k]].r;
            if (r->exists || r->negate) t->special_slots[t->n_special++] = t->slots[k];
        }
    }
}

/* Scans each target's absent-header text once and keeps the hits (see struct target). */
static void targets_precompute_absent(struct rule_engine *e)
{
    struct rule_scratch *s = rule_scratch_new(e);
    struct match_ctx mc = {e, s};
    size_t i, k;
    for (i = 0; i < e->n_targets; i++) {
        struct target *t = &e->targets[i];
        const char *text = t->if_unset ? t->if_unset : "";
        for (k = 0; k < t->n_slots; k++)
            s->hits[t->slots[k]] = 0;
        scan_text(&mc, t->set, s->target_scratch[i], text, strlen(text));
        t->absent_slots = xmalloc((t->n_slots ? t->n_slots : 1) * sizeof *t->absent_slots);
        t->absent_hits = xmalloc((t->n_slots ? t->n_slots : 1) * sizeof *t->absent_hits);
        for (k = 0; k < t->n_slots; k++) {
            if (s->hits[t->slots[k]] == 0) continue;
            t->absent_slots[t->n_absent] = t->slots[k];
            t->absent_hits[t->n_absent++] = s->hits[t->slots[k]];
        }
    }
    rule_scratch_free(s);
}

/* A case-blind hash of a header name (FNV-1a over the lowercase bytes): a scan compares it
 * before the names, which 98 targets times every header of a message made a cost. */
static uint32_t header_name_hash(const char *name)
{
    uint32_t h = 2166136261u;
    for (; *name; name++) {
        unsigned char c = (unsigned char)*name;
        h = (h ^ (uint32_t)(c >= 'A' && c <= 'Z' ? c + 32 : c)) * 16777619u;
    }
    return h;
}

static bool header_is(const struct msg_header *h, const char *name)
{
    return strcasecmp(h->name, name) == 0;
}

/* Header i's address list (NULL if none parses), parsed once per scan. */
static InternetAddressList *header_addresses(struct rule_scratch *s, const struct message *m,
                                             size_t i)
{
    if (!s->address_parsed[i]) {
        s->address_lists[i] = internet_address_list_parse(NULL, m->headers[i].raw);
        s->address_parsed[i] = 1;
    }
    return s->address_lists[i];
}

/* Appends the addresses (part ADDR) or display names (NAME) of list, one per line. */
static size_t append_addresses(struct buf *out, InternetAddressList *list,
                               enum rule_header_part part)
{
    size_t found = 0;
    int i, n;
    if (list == NULL) return 0;
    n = internet_address_list_length(list);
    for (i = 0; i < n; i++) {
        InternetAddress *ia = internet_address_list_get_address(list, i);
        const char *s = NULL;
        if (part == RULE_HDR_NAME) {
            s = internet_address_get_name(ia);
        } else if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
            s = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
        } else if (INTERNET_ADDRESS_IS_GROUP(ia)) {
            InternetAddressList *members =
                internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia));
            int k, nm = members ? internet_address_list_length(members) : 0;
            for (k = 0; k < nm; k++) {
                InternetAddress *m = internet_address_list_get_address(members, k);
                if (!INTERNET_ADDRESS_IS_MAILBOX(m)) continue;
                if (found++) buf_append_char(out, '\n');
                buf_append_str(out, internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(m)));
            }
            continue;
        }
        if (s == NULL || (part == RULE_HDR_NAME && *s == '\0')) continue;
        if (found++) buf_append_char(out, '\n');
        buf_append_str(out, s);
    }
    return found;
}

/* Appends every instance of name; returns how many were found. */
static size_t append_header(struct buf *out, const struct message *m, struct rule_scratch *s,
                            const char *name, const struct target *t)
{
    size_t i, found = 0;
    uint32_t want = header_name_hash(name);
    for (i = 0; i < m->n_headers; i++) {
        const struct msg_header *h = &m->headers[i];
        if (s->header_hashes[i] != want || !header_is(h, name)) continue;
        if (t->part != RULE_HDR_VALUE) {
            size_t before = found;
            if (found) buf_append_char(out, '\n');
            found += append_addresses(out, header_addresses(s, m, i), t->part);
            if (found == before && before) out->len--; /* drop the separator */
            continue;
        }
        buf_append_str(out, t->raw ? h->raw : h->value);
        buf_append_char(out, '\n');
        found++;
    }
    return found;
}

static bool ip_is_internal(const char *ip)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (ip == NULL) return false;
    if (inet_pton(AF_INET, ip, &a4) == 1) {
        uint32_t v = ntohl(a4.s_addr);
        return (v >> 24) == 10 || (v >> 24) == 127 || (v >> 16) == 0xc0a8 || (v >> 20) == 0xac1;
    }
    if (inet_pton(AF_INET6, ip, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (a6.s6_addr[0] & 0xfe) == 0xfc ||
               IN6_IS_ADDR_LINKLOCAL(&a6);
    return false;
}

/*
 * X-Spam-Relays-*: SpamAssassin's one-line summary of the Received chain,
 * newest first. Without trusted_networks it trusts the hops from private
 * addresses at the top of the chain; so do we. External = untrusted here.
 */
static size_t append_relays(struct buf *out, const struct message *m, bool trusted)
{
    size_t i, first_external = 0, found = 0;
    while (first_external < m->n_hops && ip_is_internal(m->hops[first_external].ip))
        first_external++;
    for (i = trusted ? 0 : first_external; i < (trusted ? first_external : m->n_hops); i++) {
        const struct msg_hop *h = &m->hops[i];
        if (h->ip == NULL) continue;
        if (found++) buf_append_char(out, ' ');
        buf_append_str(out, "[ ip=");
        buf_append_str(out, h->ip);
        buf_append_str(out, " rdns=");
        buf_append_str(out, h->from_rdns ? h->from_rdns : "");
        buf_append_str(out, " helo=");
        buf_append_str(out, h->from_helo ? h->from_helo : "");
        buf_append_str(out, " by=");
        buf_append_str(out, h->by ? h->by : "");
        buf_append_str(out, trusted ? " ident= envfrom= intl=1 id= auth= msa=0 ]"
                                    : " ident= envfrom= intl=0 id= auth= msa=0 ]");
    }
    if (found) buf_append_char(out, '\n');
    return found;
}

/* Builds the text target t reads into out; false if the header is absent. */
static bool target_text(const struct target *t, const struct message *m, struct rule_scratch *s,
                        struct buf *out)
{
    const char *n = t->name;
    size_t i, found = 0;

    buf_clear(out);
    switch (t->kind) {
    case TARGET_ALL:
        for (i = 0; i < m->n_headers; i++) {
            buf_append_str(out, m->headers[i].name);
            buf_append(out, ": ", 2);
            buf_append_str(out, t->raw ? m->headers[i].raw : m->headers[i].value);
            buf_append_char(out, '\n');
            found++;
        }
        break;
    case TARGET_ENVELOPE_FROM:
        if (m->env.mail_from) {
            buf_append_str(out, m->env.mail_from);
            found = 1;
        } else {
            struct target rp = *t;
            rp.part = RULE_HDR_ADDR;
            found = append_header(out, m, s, "Return-Path", &rp);
        }
        break;
    case TARGET_TO_CC:
        found = append_header(out, m, s, "To", t);
        found += append_header(out, m, s, "Cc", t);
        break;
    case TARGET_MESSAGE_ID: {
        static const char *const ids[] = {"X-Message-Id", "Resent-Message-Id",
                                          "X-Original-Message-ID", "Message-Id"};
        for (i = 0; i < 4; i++)
            found += append_header(out, m, s, ids[i], t);
        break;
    }
    case TARGET_RELAYS_EXTERNAL:
        found = append_relays(out, m, false);
        break;
    case TARGET_RELAYS_TRUSTED:
        found = append_relays(out, m, true);
        break;
    case TARGET_HEADER:
        found = append_header(out, m, s, n, t);
        break;
    }
    if (found == 0) {
        buf_clear(out);
        if (t->if_unset) buf_append_str(out, t->if_unset);
    }
    return found > 0;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/*
 * The rendered body as SpamAssassin builds it: paragraphs (two or more line
 * breaks) become one line each, any other run of white space one space.
 */
static void body_collapse(struct buf *out, const char *text, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (!is_space((unsigned char)text[i])) {
            size_t j = i + 1;
            while (j < len && !is_space((unsigned char)text[j]))
                j++;
            buf_append(out, text + i, j - i);
            i = j;
            continue;
        }
        /* A white-space run [i, j): a paragraph break when it holds two line breaks
         * reachable as \n+\s*\n+ from its first line break. */
        {
            size_t j = i, first_nl = len, last_nl = len, nls = 0;
            while (j < len && is_space((unsigned char)text[j])) {
                if (text[j] == '\n') {
                    if (first_nl == len) first_nl = j;
                    last_nl = j;
                    nls++;
                }
                j++;
            }
            if (nls >= 2) {
                if (first_nl > i) buf_append_char(out, ' ');
                buf_append_char(out, '\n');
                if (last_nl + 1 < j) buf_append_char(out, ' ');
            } else {
                buf_append_char(out, ' ');
            }
            i = j;
        }
    }
}

static void scan_body(struct match_ctx *mc, const struct message *m)
{
    struct buf *t = &mc->s->text, *raw = &mc->s->line;
    size_t i, start;

    buf_clear(raw);
    for (i = 0; i < m->n_texts; i++) {
        const struct msg_text *mt = &m->texts[i];
        if (raw->len) buf_append_char(raw, '\n');
        buf_append(raw, mt->text, mt->len);
        if (mt->hidden_len) {
            buf_append_char(raw, ' ');
            buf_append(raw, mt->hidden, mt->hidden_len);
        }
    }
    buf_clear(t);
    buf_append_str(t, m->subject ? m->subject : "");
    buf_append_char(t, '\n');
    body_collapse(t, raw->data ? raw->data : "", raw->len);

    /* One regex pass per line, lines longer than BODY_LINE_MAX cut at a space. */
    for (start = 0; start < t->len;) {
        const char *nl = memchr(t->data + start, '\n', t->len - start);
        size_t end = nl ? (size_t)(nl - t->data) + 1 : t->len;
        while (end - start > BODY_LINE_MAX) {
            size_t cut = BODY_LINE_MAX;
            while (cut > 0 && t->data[start + cut - 1] != ' ')
                cut--;
            if (cut == 0) cut = BODY_LINE_MAX;
            scan_text(mc, mc->e->body, mc->s->body, t->data + start, cut);
            start += cut;
        }
        scan_text(mc, mc->e->body, mc->s->body, t->data + start, end - start);
        start = end;
    }
}

static void scan_rawbody(struct match_ctx *mc, const struct message *m)
{
    size_t i;
    for (i = 0; i < m->n_texts; i++) {
        const struct msg_text *mt = &m->texts[i];
        const char *p = mt->source ? mt->source : mt->text;
        size_t len = mt->source ? mt->source_len : mt->len, ofs = 0;
        /* Long parts in pieces of 2,048..4,096 bytes, cut after a line end when possible. */
        while (len - ofs > 2 * BODY_LINE_MAX) {
            const char *cut = memchr(p + ofs + BODY_LINE_MAX, '\n', BODY_LINE_MAX);
            size_t j = cut ? (size_t)(cut - p) : ofs + BODY_LINE_MAX;
            scan_text(mc, mc->e->rawbody, mc->s->rawbody, p + ofs, j - ofs + 1);
            ofs = j + 1;
        }
        scan_text(mc, mc->e->rawbody, mc->s->rawbody, p + ofs, len - ofs);
    }
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/*
 * Redirectors carry their target in the query ("google.com/url?q=https://...",
 * "...?u=https%3A%2F%2F..."): uri rules see each embedded http(s) URL too, as
 * SpamAssassin's redirector handling and rspamd do, percent-decoded, up to the
 * next '&'.
 */
static void scan_embedded_urls(struct match_ctx *mc, const char *raw)
{
    struct buf *d = &mc->s->line;
    const char *p;
    size_t i;

    buf_clear(d);
    for (p = raw; *p; p++) {
        if (*p == '%' && hex_value(p[1]) >= 0 && hex_value(p[2]) >= 0) {
            buf_append_char(d, (char)(hex_value(p[1]) * 16 + hex_value(p[2])));
            p += 2;
        } else {
            buf_append_char(d, *p);
        }
    }
    for (i = 1; i + 8 <= d->len; i++) {
        const char *at = d->data + i;
        size_t end;
        if (strncasecmp(at, "http://", 7) != 0 && strncasecmp(at, "https://", 8) != 0) continue;
        for (end = i; end < d->len && d->data[end] != '&' && !is_space((unsigned char)d->data[end]);
             end++)
            continue;
        scan_text(mc, mc->e->uri, mc->s->uri, at, end - i);
        i = end;
    }
}

/*
 * A meta's value with three-valued logic: a rule we cannot evaluate is
 * "unknown", and so is anything computed from it, except where the known
 * operands decide alone (0 && x is 0, 1 || x is 1). A meta whose value is
 * unknown does not hit: we never fire a rule on a guess.
 */

static struct meta_value meta_eval(const struct slot *s, const unsigned *hits,
                                   const unsigned char *unknown, const struct scan_result *r)
{
    struct meta_value st[META_MAX_STACK];
    size_t i, sp = 0;
    for (i = 0; i < s->n_prog; i++) {
        const struct meta_insn *in = &s->prog[i];
        struct meta_value a, b;
        switch (in->op) {
        case MOP_NUM:
            st[sp++] = (struct meta_value){in->num, false};
            continue;
        case MOP_RULE:
            st[sp++] = (struct meta_value){hits[in->arg], unknown[in->arg] != 0};
            continue;
        case MOP_SYMBOL:
            st[sp++] = (struct meta_value){r && result_find(r, in->arg) ? 1 : 0, false};
            continue;
        case MOP_UNKNOWN:
            st[sp++] = (struct meta_value){0, true};
            continue;
        case MOP_NOT:
            st[sp - 1].v = st[sp - 1].v == 0;
            continue;
        case MOP_NEG:
            st[sp - 1].v = -st[sp - 1].v;
            continue;
        default:
            break;
        }
        b = st[--sp];
        a = st[sp - 1];
        if (in->op == MOP_AND) {
            /* Perl: a is the value when false, else b. */
            if (!a.unknown && a.v == 0)
                st[sp - 1] = a;
            else if (!b.unknown && b.v == 0)
                st[sp - 1] = b;
            else
                st[sp - 1] = (struct meta_value){b.v, a.unknown || b.unknown};
            continue;
        }
        if (in->op == MOP_OR) {
            if (!a.unknown && a.v != 0)
                st[sp - 1] = a;
            else if (!b.unknown && b.v != 0)
                st[sp - 1] = b;
            else
                st[sp - 1] = (struct meta_value){b.v, a.unknown || b.unknown};
            continue;
        }
        a.unknown = a.unknown || b.unknown;
        switch (in->op) {
        case MOP_MUL:
            a.v = a.v * b.v;
            break;
        case MOP_DIV:
            if (b.v == 0 && !a.unknown) /* Perl dies; SpamAssassin scores the meta 0 */
                return (struct meta_value){0, false};
            a.v = b.v == 0 ? 0 : a.v / b.v;
            break;
        case MOP_ADD:
            a.v = a.v + b.v;
            break;
        case MOP_SUB:
            a.v = a.v - b.v;
            break;
        case MOP_LT:
            a.v = a.v < b.v;
            break;
        case MOP_GT:
            a.v = a.v > b.v;
            break;
        case MOP_LE:
            a.v = a.v <= b.v;
            break;
        case MOP_GE:
            a.v = a.v >= b.v;
            break;
        case MOP_EQ:
            a.v = a.v == b.v;
            break;
        case MOP_NE:
            a.v = a.v != b.v;
            break;
        default:
            break;
        }
        st[sp - 1] = a;
    }
    return sp == 1 ? st[0] : (struct meta_value){0, false};
}

/* True if no built-in symbol sl's meta reads hit. */
static bool meta_symbols_quiet(const struct slot *sl, const struct scan_result *r)
{
    size_t i;
    for (i = 0; i < sl->n_prog; i++) {
        const struct meta_insn *in = &sl->prog[i];
        if (in->op == MOP_SYMBOL && result_find(r, in->arg)) return false;
    }
    return true;
}

/* Marks the metas that read slot as having an operand out of its quiet state. */
static void meta_stir_readers(const struct rule_engine *e, struct rule_scratch *s, size_t slot)
{
    size_t k;
    for (k = e->reader_start[slot]; k < e->reader_start[slot + 1]; k++)
        s->stirred[e->meta_readers[k]] = 1;
}

void rule_engine_scan(const struct rule_engine *e, struct rule_scratch *s, const struct message *m,
                      const char *raw, size_t raw_len, struct scan_result *r)
{
    struct match_ctx mc = {e, s};
    size_t i, k;

    memset(s->hits, 0, e->n_slots * sizeof *s->hits);
    memset(s->timed_out, 0, e->n_slots);
    memset(s->unknown, 0, e->n_slots);
    if (m->n_headers > s->header_hashes_cap) {
        s->header_hashes_cap = m->n_headers;
        s->header_hashes = xrealloc(s->header_hashes, m->n_headers * sizeof *s->header_hashes);
        s->address_lists = xrealloc(s->address_lists, m->n_headers * sizeof *s->address_lists);
        s->address_parsed = xrealloc(s->address_parsed, m->n_headers);
    }
    for (i = 0; i < m->n_headers; i++)
        s->header_hashes[i] = header_name_hash(m->headers[i].name);
    if (m->n_headers) memset(s->address_parsed, 0, m->n_headers);

    for (i = 0; i < e->n_targets; i++) {
        const struct target *t = &e->targets[i];
        bool present = target_text(t, m, s, &s->text);
        if (present)
            scan_text(&mc, t->set, s->target_scratch[i], s->text.data ? s->text.data : "",
                      s->text.len);
        else
            for (k = 0; k < t->n_absent; k++)
                s->hits[t->absent_slots[k]] = t->absent_hits[k];
        for (k = 0; k < t->n_special; k++) {
            int slot = t->special_slots[k];
            const struct rule *rule = e->slots[slot].r;
            if (rule->exists)
                s->hits[slot] = present != rule->negate;
            else
                s->hits[slot] = s->hits[slot] == 0 && e->slots[slot].runs_regex;
        }
    }
    for (i = 0; i < m->n_headers; i++)
        if (s->address_parsed[i] && s->address_lists[i]) g_object_unref(s->address_lists[i]);
    if (e->body) scan_body(&mc, m);
    if (e->rawbody) scan_rawbody(&mc, m);
    if (e->uri) {
        for (i = 0; i < m->n_urls; i++) {
            const struct url *u = &m->urls[i];
            scan_text(&mc, e->uri, s->uri, u->normalised, strlen(u->normalised));
            if (strcmp(u->raw, u->normalised) != 0)
                scan_text(&mc, e->uri, s->uri, u->raw, strlen(u->raw));
            scan_embedded_urls(&mc, u->raw);
        }
    }
    if (e->full) scan_text(&mc, e->full, s->full, raw ? raw : "", raw ? raw_len : 0);

    /*
     * A meta none of whose operands hit or is unknown, and none of whose built-in symbols
     * hit, is quiet: its value is sl->quiet, computed at build. Only the readers of slots
     * that hit (few per message) are stirred and run; a meta that then hits or is unknown
     * stirs its own readers, which come later in the order.
     */
    memset(s->stirred, 0, e->n_slots);
    for (i = 0; i < e->n_slots; i++)
        if (s->hits[i] || s->unknown[i]) meta_stir_readers(e, s, i);
    for (i = 0; i < e->n_metas; i++) {
        const struct meta_brief *b = &e->meta_briefs[i];
        int m = b->slot;
        if (!s->stirred[m] && (!b->reads_symbols || meta_symbols_quiet(&e->slots[m], r))) {
            s->hits[m] = b->quiet_hit;
            s->unknown[m] = b->quiet_unknown;
        } else {
            struct meta_value v = meta_eval(&e->slots[m], s->hits, s->unknown, r);
            /* An unknown meta does not hit, but metas above it still know it is unknown. */
            s->hits[m] = !v.unknown && v.v != 0;
            s->unknown[m] = v.unknown;
        }
        if (s->hits[m] || s->unknown[m]) meta_stir_readers(e, s, (size_t)m);
    }

    for (i = 0; i < e->n_slots; i++) {
        const struct slot *sl = &e->slots[i];
        if (s->timed_out[i]) result_add(r, e->timeout_symbol, 1.0, sl->r->name);
        if (s->hits[i] == 0 || sl->symbol < 0) continue;
        result_add(r, sl->symbol, sl->maxhits ? (double)s->hits[i] : 1.0, NULL);
    }
}
