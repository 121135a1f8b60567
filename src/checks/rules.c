/*
 * rules - SpamAssassin-syntax rule files. See rules.h.
 *
 * Lines are read as SpamAssassin reads them: an unescaped '#' starts a
 * comment, "\#" is a literal '#', surrounding whitespace goes. The first word
 * is the directive. Conditionals keep a stack of "is this level active";
 * inside an inactive level only the nesting is tracked. Rules are found by
 * name through an open-addressing index, so a score line may come before its
 * rule (the stock 50_scores.cf does exactly that).
 */
#include "checks/rules.h"
#include "checks/regex.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <xxhash.h>

#define RULES_MAX_INCLUDE_DEPTH 10
#define RULES_MAX_COND_DEPTH    64
#define RULES_MAX_WARNINGS      1000 /* kept; later ones are counted only */

struct rule_set {
    struct arena *a;
    struct rule *rules;
    size_t n, cap;
    int *slots; /* index into rules by name; -1 empty; power-of-two size > 2n */
    size_t n_slots;
    const char **warnings;
    size_t n_warnings, cap_warnings, warnings_total;
    const char **warned_directives; /* unknown directives already warned about */
    size_t n_warned, cap_warned;
    size_t skipped;
    size_t files;
    int include_depth;
};

/* The plugins whose rules we evaluate, or accept as harmless to enable. */
static const char *const rules_plugins[] = {
    "Mail::SpamAssassin::Plugin::Bayes",      "Mail::SpamAssassin::Plugin::BodyEval",
    "Mail::SpamAssassin::Plugin::HeaderEval", "Mail::SpamAssassin::Plugin::MIMEEval",
    "Mail::SpamAssassin::Plugin::HTMLEval",   "Mail::SpamAssassin::Plugin::SPF",
    "Mail::SpamAssassin::Plugin::DKIM",       "Mail::SpamAssassin::Plugin::DMARC",
    "Mail::SpamAssassin::Plugin::URIDetail",  NULL};

bool rules_plugin_known(const char *name)
{
    size_t i;
    for (i = 0; rules_plugins[i]; i++)
        if (strcmp(name, rules_plugins[i]) == 0) return true;
    return false;
}

struct rule_set *rules_new(void)
{
    struct rule_set *rs = xcalloc(1, sizeof *rs);
    rs->a = arena_new(0);
    rs->n_slots = 256;
    rs->slots = xmalloc(rs->n_slots * sizeof *rs->slots);
    memset(rs->slots, 0xff, rs->n_slots * sizeof *rs->slots);
    return rs;
}

void rules_free(struct rule_set *rs)
{
    if (rs == NULL) return;
    free(rs->rules);
    free(rs->slots);
    free(rs->warnings);
    free(rs->warned_directives);
    arena_free(rs->a);
    free(rs);
}

static void rules_warn(struct rule_set *rs, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void rules_warn(struct rule_set *rs, const char *file, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    char *w;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rs->warnings_total++;
    if (rs->n_warnings >= RULES_MAX_WARNINGS) return;
    w = arena_printf(rs->a, "%s:%d: %s", file, line, msg);
    if (rs->n_warnings == rs->cap_warnings) {
        rs->cap_warnings = rs->cap_warnings ? rs->cap_warnings * 2 : 32;
        rs->warnings = xrealloc(rs->warnings, rs->cap_warnings * sizeof *rs->warnings);
    }
    rs->warnings[rs->n_warnings++] = w;
    log_info("msg=\"rule file\" file=%s line=%d problem=\"%s\"", file, line, msg);
}

/* ---- the name index ---- */

static size_t rules_slot(const struct rule_set *rs, const char *name)
{
    size_t mask = rs->n_slots - 1, slot = XXH3_64bits(name, strlen(name)) & mask;
    while (rs->slots[slot] >= 0 && strcmp(rs->rules[rs->slots[slot]].name, name) != 0)
        slot = (slot + 1) & mask;
    return slot;
}

static void rules_grow_index(struct rule_set *rs)
{
    size_t i;
    free(rs->slots);
    rs->n_slots *= 2;
    rs->slots = xmalloc(rs->n_slots * sizeof *rs->slots);
    memset(rs->slots, 0xff, rs->n_slots * sizeof *rs->slots);
    for (i = 0; i < rs->n; i++)
        rs->slots[rules_slot(rs, rs->rules[i].name)] = (int)i;
}

static bool rules_valid_name(const char *name)
{
    const char *p;
    if (*name == '\0' || strlen(name) > 100) return false;
    for (p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_') return false;
    return true;
}

/* The rule called name, created (RULE_NONE) on first mention. */
static struct rule *rules_get(struct rule_set *rs, const char *name, const char *file, int line)
{
    size_t slot = rules_slot(rs, name);
    struct rule *r;

    if (rs->slots[slot] >= 0) return &rs->rules[rs->slots[slot]];
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 256;
        rs->rules = xrealloc(rs->rules, rs->cap * sizeof *rs->rules);
    }
    r = &rs->rules[rs->n];
    memset(r, 0, sizeof *r);
    r->name = arena_strdup(rs->a, name);
    r->file = file;
    r->line = line;
    rs->slots[slot] = (int)rs->n++;
    if (rs->n * 2 >= rs->n_slots) rules_grow_index(rs);
    return r;
}

size_t rules_count(const struct rule_set *rs)
{
    return rs->n;
}

const struct rule *rules_at(const struct rule_set *rs, size_t i)
{
    return i < rs->n ? &rs->rules[i] : NULL;
}

const struct rule *rules_find(const struct rule_set *rs, const char *name)
{
    int i = rs->slots[rules_slot(rs, name)];
    return i >= 0 ? &rs->rules[i] : NULL;
}

size_t rules_warning_count(const struct rule_set *rs)
{
    return rs->n_warnings;
}

const char *rules_warning_at(const struct rule_set *rs, size_t i)
{
    return i < rs->n_warnings ? rs->warnings[i] : NULL;
}

void rules_stats(const struct rule_set *rs, struct rule_set_stats *st)
{
    size_t i;
    memset(st, 0, sizeof *st);
    for (i = 0; i < rs->n; i++) {
        st->by_kind[rs->rules[i].kind]++;
        if (rs->rules[i].kind != RULE_NONE) st->defined++;
    }
    st->skipped = rs->skipped;
    st->warnings = rs->warnings_total;
    st->files = rs->files;
}

/* ---- lexing helpers ---- */

/* Cuts the next whitespace-separated word off *p; returns it (NUL-terminated in place) or NULL. */
static char *rules_word(char **p)
{
    char *s = *p, *w;
    while (*s && isspace((unsigned char)*s))
        s++;
    if (*s == '\0') {
        *p = s;
        return NULL;
    }
    w = s;
    while (*s && !isspace((unsigned char)*s))
        s++;
    if (*s) *s++ = '\0';
    *p = s;
    return w;
}

static char *rules_trim(char *s)
{
    char *e;
    while (*s && isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* Removes an unescaped '#' comment and turns "\#" into "#", in place. */
static void rules_strip_comment(char *line)
{
    char *r = line, *w = line;
    for (; *r; r++) {
        if (*r == '\\' && r[1] == '#') {
            *w++ = '#';
            r++;
            continue;
        }
        if (*r == '#') break;
        *w++ = *r;
    }
    *w = '\0';
}

static char rules_closing(char open)
{
    switch (open) {
    case '{':
        return '}';
    case '(':
        return ')';
    case '[':
        return ']';
    case '<':
        return '>';
    default:
        return open;
    }
}

/*
 * Parses a Perl-style regex literal at s: /re/flags or m{re}flags (any
 * delimiter). On success stores the pattern (without delimiters) and flags,
 * returns a pointer just past the flags; NULL if s is not a regex literal.
 */
static const char *rules_regex(struct rule_set *rs, const char *s, const char **pattern,
                               unsigned *flags)
{
    char open, close;
    const char *p, *start;
    int depth = 1;

    while (isspace((unsigned char)*s))
        s++;
    if (*s == '/') {
        open = close = '/';
        s++;
    } else if (*s == 'm' && s[1] && !isalnum((unsigned char)s[1]) &&
               !isspace((unsigned char)s[1])) {
        open = s[1];
        close = rules_closing(open);
        s += 2;
    } else {
        return NULL;
    }
    start = s;
    for (p = s; *p; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            continue;
        }
        if (open != close && *p == open)
            depth++;
        else if (*p == close && --depth == 0)
            break;
    }
    if (*p != close) return NULL;
    *pattern = arena_strndup(rs->a, start, (size_t)(p - start));
    *flags = 0;
    for (p++; *p && isalpha((unsigned char)*p); p++) {
        switch (*p) {
        case 'i':
            *flags |= REGEX_CASELESS;
            break;
        case 'm':
            *flags |= REGEX_MULTILINE;
            break;
        case 's':
            *flags |= REGEX_DOTALL;
            break;
        case 'x':
            *flags |= REGEX_EXTENDED;
            break;
        default:
            break; /* g, o and the like change nothing for a match test */
        }
    }
    return p;
}

/* ---- conditionals ---- */

/* The SpamAssassin 4.0 capabilities whose rules we read as 4.0 does ("if can(...)"). */
static const char *const rules_capabilities[] = {
    "Mail::SpamAssassin::Conf::feature_bug6558_free",
    "Mail::SpamAssassin::Conf::feature_welcomelist_blocklist",
    "Mail::SpamAssassin::Conf::perl_min_version_5010000", NULL};

static bool rules_can(const char *name)
{
    size_t i;
    for (i = 0; rules_capabilities[i]; i++)
        if (strcmp(name, rules_capabilities[i]) == 0) return true;
    return false;
}

/* Evaluates the expression of an `if` line; warns and returns false when not understood. */
static bool rules_if(struct rule_set *rs, const char *file, int line, const char *expr)
{
    char buf[256], *e;
    size_t n = strlen(expr);
    double v;
    char op[3] = {0};

    if (n >= sizeof buf) n = sizeof buf - 1;
    memcpy(buf, expr, n);
    buf[n] = '\0';
    e = rules_trim(buf);
    /* Drop outer parentheses: "((version >= 3.004000))". */
    n = strlen(e);
    if (e[0] == '!') return !rules_if(rs, file, line, e + 1);
    while (n >= 2 && e[0] == '(' && e[n - 1] == ')') {
        e[n - 1] = '\0';
        e = rules_trim(e + 1);
        n = strlen(e);
        if (e[0] == '!') return !rules_if(rs, file, line, e + 1);
    }
    if (strncmp(e, "plugin(", 7) == 0 || strncmp(e, "can(", 4) == 0) {
        char *open = strchr(e, '('), *end = strrchr(e, ')');
        if (end && end > open) {
            *end = '\0';
            return e[0] == 'p' ? rules_plugin_known(rules_trim(open + 1))
                               : rules_can(rules_trim(open + 1));
        }
    }
    if (sscanf(e, "version %2[<>=!] %lf", op, &v) == 2) {
        if (!strcmp(op, ">=")) return RULES_SA_VERSION >= v;
        if (!strcmp(op, ">")) return RULES_SA_VERSION > v;
        if (!strcmp(op, "<=")) return RULES_SA_VERSION <= v;
        if (!strcmp(op, "<")) return RULES_SA_VERSION < v;
        if (!strcmp(op, "==")) return RULES_SA_VERSION == v;
        if (!strcmp(op, "!=")) return RULES_SA_VERSION != v;
    }
    rules_warn(rs, file, line, "condition not understood, taken as false: if %.100s", expr);
    return false;
}

/* ---- directives ---- */

static void rules_unknown_directive(struct rule_set *rs, const char *file, int line,
                                    const char *directive)
{
    size_t i;
    for (i = 0; i < rs->n_warned; i++)
        if (strcmp(rs->warned_directives[i], directive) == 0) return;
    if (rs->n_warned == rs->cap_warned) {
        rs->cap_warned = rs->cap_warned ? rs->cap_warned * 2 : 16;
        rs->warned_directives =
            xrealloc(rs->warned_directives, rs->cap_warned * sizeof *rs->warned_directives);
    }
    rs->warned_directives[rs->n_warned++] = arena_strdup(rs->a, directive);
    rules_warn(rs, file, line, "unsupported directive \"%.60s\" ignored (warned once)", directive);
}

static void rules_skip(struct rule_set *rs, const char *file, int line, const char *name,
                       const char *why)
{
    rs->skipped++;
    rules_warn(rs, file, line, "rule %s skipped: %s", name, why);
    /* Metas that read it must know its result is unknown, not "did not hit". */
    if (rules_valid_name(name)) rules_get(rs, name, file, line)->unsupported = true;
}

/* Gives name the test line r (kind, where, what to match), keeping the score,
 * description and tflags it may already have from earlier lines. */
static void rules_define(struct rule_set *rs, const char *name, const struct rule *r)
{
    struct rule *dst = rules_get(rs, name, r->file, r->line);
    struct rule kept = *dst;

    *dst = *r;
    dst->name = kept.name;
    dst->has_score = kept.has_score;
    memcpy(dst->scores, kept.scores, sizeof dst->scores);
    dst->description = kept.description;
    dst->tflags = kept.tflags;
    dst->maxhits = kept.maxhits;
}

static void rules_header(struct rule_set *rs, const char *file, int line, const char *name,
                         char *rest)
{
    struct rule r = {0};
    char *target = rules_word(&rest), *colon, *op;
    const char *after;

    if (target == NULL) {
        rules_skip(rs, file, line, name, "header rule without a header");
        return;
    }
    if (strncmp(target, "eval:", 5) == 0) {
        rules_skip(rs, file, line, name, "eval tests are not supported");
        return;
    }
    if (strncmp(target, "exists:", 7) == 0) {
        r.exists = true;
        r.header = arena_strdup(rs->a, target + 7);
    } else {
        colon = strchr(target, ':');
        if (colon) *colon = '\0';
        /* Modifiers chain: "From:name:raw". */
        while (colon) {
            char *mod = colon + 1, *next = strchr(mod, ':');
            if (next) *next = '\0';
            if (!strcmp(mod, "raw"))
                r.raw = true;
            else if (!strcmp(mod, "addr"))
                r.part = RULE_HDR_ADDR;
            else if (!strcmp(mod, "name"))
                r.part = RULE_HDR_NAME;
            else {
                rules_skip(rs, file, line, name, "unknown header modifier");
                return;
            }
            colon = next;
        }
        r.header = arena_strdup(rs->a, target);
        op = rules_word(&rest);
        if (op == NULL || (strcmp(op, "=~") != 0 && strcmp(op, "!~") != 0)) {
            rules_skip(rs, file, line, name, "expected =~ or !~ after the header name");
            return;
        }
        r.negate = op[0] == '!';
        after = rules_regex(rs, rest, &r.pattern, &r.regex_flags);
        if (after == NULL) {
            rules_skip(rs, file, line, name, "malformed regular expression");
            return;
        }
        while (isspace((unsigned char)*after))
            after++;
        if (strncmp(after, "[if-unset:", 10) == 0) {
            const char *end = strchr(after, ']');
            if (end) r.if_unset = arena_strndup(rs->a, after + 10, (size_t)(end - after - 10));
            if (r.if_unset) r.if_unset = rules_trim((char *)r.if_unset);
        }
    }
    if (r.header[0] == '\0') {
        rules_skip(rs, file, line, name, "empty header name");
        return;
    }
    r.kind = RULE_HEADER;
    r.file = file;
    r.line = line;
    rules_define(rs, name, &r);
}

static void rules_pattern_rule(struct rule_set *rs, const char *file, int line, const char *name,
                               enum rule_kind kind, char *rest)
{
    struct rule r = {.kind = kind, .file = file, .line = line};

    rest = rules_trim(rest);
    if (strncmp(rest, "eval:", 5) == 0) {
        rules_skip(rs, file, line, name, "eval tests are not supported");
        return;
    }
    if (rules_regex(rs, rest, &r.pattern, &r.regex_flags) == NULL) {
        rules_skip(rs, file, line, name, "malformed regular expression");
        return;
    }
    rules_define(rs, name, &r);
}

/* A meta expression is names, numbers, parentheses and the operators of
 * && || ! + - * / < > <= >= == != ?: with balanced parentheses. */
static const char *rules_meta_problem(const char *expr)
{
    int depth = 0;
    const char *p;
    if (*expr == '\0') return "empty meta expression";
    for (p = expr; *p; p++) {
        if (*p == '(') {
            depth++;
        } else if (*p == ')') {
            if (--depth < 0) return "unbalanced parentheses";
        } else if (!isalnum((unsigned char)*p) && !isspace((unsigned char)*p) &&
                   !strchr("_&|!+-*/<>=.?:", *p)) {
            return "unexpected character in meta expression";
        }
    }
    return depth ? "unbalanced parentheses" : NULL;
}

static void rules_meta(struct rule_set *rs, const char *file, int line, const char *name,
                       char *rest)
{
    const char *expr = rules_trim(rest), *problem = rules_meta_problem(expr);
    struct rule r = {.kind = RULE_META, .file = file, .line = line};

    if (problem) {
        rules_skip(rs, file, line, name, problem);
        return;
    }
    r.meta = arena_strdup(rs->a, expr);
    rules_define(rs, name, &r);
}

static void rules_score(struct rule_set *rs, const char *file, int line, const char *name,
                        char *rest)
{
    double v[4];
    int n = 0;
    char *w;

    while (n < 5 && (w = rules_word(&rest)) != NULL) {
        char *end;
        double d;
        if (*w == '(') w++; /* "(0.5)" marks an immutable score in SpamAssassin */
        d = strtod(w, &end);
        if (*end == ')') end++;
        if (end == w || *end != '\0' || n == 4) {
            rules_warn(rs, file, line, "bad score line for %s", name);
            return;
        }
        v[n++] = d;
    }
    if (n != 1 && n != 4) {
        rules_warn(rs, file, line, "score for %s needs one or four values", name);
        return;
    }
    {
        struct rule *dst = rules_get(rs, name, file, line);
        int i;
        for (i = 0; i < 4; i++)
            dst->scores[i] = n == 1 ? v[0] : v[i];
        dst->has_score = true;
    }
}

static void rules_tflags(struct rule_set *rs, const char *file, int line, const char *name,
                         char *rest)
{
    struct rule *dst = rules_get(rs, name, file, line);
    char *w;

    while ((w = rules_word(&rest)) != NULL) {
        if (!strcmp(w, "nice"))
            dst->tflags |= RULE_TF_NICE;
        else if (!strcmp(w, "multiple"))
            dst->tflags |= RULE_TF_MULTIPLE;
        else if (!strcmp(w, "net"))
            dst->tflags |= RULE_TF_NET;
        else if (!strcmp(w, "learn"))
            dst->tflags |= RULE_TF_LEARN;
        else if (!strncmp(w, "maxhits=", 8))
            dst->maxhits = (unsigned)strtoul(w + 8, NULL, 10);
        /* Other flags (userconf, noautolearn, publish, ...) change nothing we do. */
    }
}

static int rules_load(struct rule_set *rs, const char *path);

static void rules_include(struct rule_set *rs, const char *file, int line, const char *arg)
{
    char path[4096];
    const char *slash = strrchr(file, '/');

    if (arg[0] == '/' || slash == NULL)
        snprintf(path, sizeof path, "%s", arg);
    else
        snprintf(path, sizeof path, "%.*s/%s", (int)(slash - file), file, arg);
    if (rs->include_depth >= RULES_MAX_INCLUDE_DEPTH) {
        rules_warn(rs, file, line, "include nested too deep: %.200s", path);
        return;
    }
    rs->include_depth++;
    if (rules_load(rs, path) != 0)
        rules_warn(rs, file, line, "cannot include %.200s: %s", path, err_msg());
    rs->include_depth--;
}

static void rules_line(struct rule_set *rs, const char *file, int line, char *text)
{
    char *rest = text, *directive = rules_word(&rest), *name;
    enum rule_kind kind = RULE_NONE;

    if (directive == NULL) return;
    if (!strcmp(directive, "include")) {
        rules_include(rs, file, line, rules_trim(rest));
        return;
    }
    if (!strcmp(directive, "header"))
        kind = RULE_HEADER;
    else if (!strcmp(directive, "body"))
        kind = RULE_BODY;
    else if (!strcmp(directive, "rawbody"))
        kind = RULE_RAWBODY;
    else if (!strcmp(directive, "uri"))
        kind = RULE_URI;
    else if (!strcmp(directive, "full"))
        kind = RULE_FULL;
    else if (!strcmp(directive, "meta"))
        kind = RULE_META;
    else if (strcmp(directive, "score") != 0 && strcmp(directive, "describe") != 0 &&
             strcmp(directive, "tflags") != 0) {
        rules_unknown_directive(rs, file, line, directive);
        return;
    }
    name = rules_word(&rest);
    if (name == NULL || !rules_valid_name(name)) {
        rules_warn(rs, file, line, "%s needs a rule name ([A-Za-z0-9_])", directive);
        if (kind != RULE_NONE) rs->skipped++;
        return;
    }
    switch (kind) {
    case RULE_HEADER:
        rules_header(rs, file, line, name, rest);
        return;
    case RULE_META:
        rules_meta(rs, file, line, name, rest);
        return;
    case RULE_BODY:
    case RULE_RAWBODY:
    case RULE_URI:
    case RULE_FULL:
        rules_pattern_rule(rs, file, line, name, kind, rest);
        return;
    case RULE_NONE:
        break;
    }
    if (!strcmp(directive, "score")) {
        rules_score(rs, file, line, name, rest);
    } else if (!strcmp(directive, "describe")) {
        rules_get(rs, name, file, line)->description = arena_strdup(rs->a, rules_trim(rest));
    } else {
        rules_tflags(rs, file, line, name, rest);
    }
}

/* True when `ifplugin NAME` / `if plugin(NAME)` names a SpamAssassin plugin we lack. */
static bool rules_lacks_plugin(const char *word, const char *rest)
{
    const char *name = rest;
    char buf[128];
    size_t n;
    if (word[2] != 'p') { /* if plugin(NAME) */
        while (*name == ' ' || *name == '(' || *name == '!')
            name++;
        if (strncmp(name, "plugin", 6) != 0) return false;
        name += 6;
        while (*name == ' ' || *name == '(')
            name++;
    }
    for (n = 0; name[n] && name[n] != ')' && name[n] != ' ' && n < sizeof buf - 1; n++)
        buf[n] = name[n];
    buf[n] = '\0';
    return strncmp(buf, "Mail::SpamAssassin::Plugin::", 28) == 0 && !rules_plugin_known(buf);
}

/* A rule test line inside a lacking plugin's block: remember the name as unsupported. */
static void rules_mark_unsupported(struct rule_set *rs, const char *file, int line,
                                   const char *word, const char *rest)
{
    static const char *const defining[] = {
        "header",     "body",   "rawbody",  "uri",       "full",     "meta",      "mimeheader",
        "uri_detail", "askdns", "urirhsbl", "urirhssub", "uridnsbl", "uridnssub", NULL};
    char name[128];
    size_t i, n;
    for (i = 0; defining[i] && strcmp(word, defining[i]) != 0; i++)
        continue;
    if (defining[i] == NULL) return;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    for (n = 0; rest[n] && rest[n] != ' ' && rest[n] != '\t' && n < sizeof name - 1; n++)
        name[n] = rest[n];
    name[n] = '\0';
    if (rules_valid_name(name)) {
        struct rule *r = rules_get(rs, name, file, line);
        if (r->kind == RULE_NONE) r->unsupported = true;
    }
}

static int rules_load(struct rule_set *rs, const char *path)
{
    bool active[RULES_MAX_COND_DEPTH + 1];
    bool cond[RULES_MAX_COND_DEPTH + 1];
    /* Inside the true branch of a plugin SpamAssassin has and we lack: the rules defined
     * there exist for SpamAssassin, so metas must see them as unknown, not absent. */
    bool lacking[RULES_MAX_COND_DEPTH + 1];
    int depth = 0, line = 0;
    char *data, *p, *file;
    size_t len;

    if (file_read(path, &data, &len) != 0) return -1;
    rs->files++;
    file = arena_strdup(rs->a, path);
    active[0] = true;
    cond[0] = true;
    lacking[0] = false;
    for (p = data; p < data + len;) {
        char *nl = memchr(p, '\n', (size_t)(data + len - p)), *text, *rest, *word;
        if (nl) *nl = '\0';
        line++;
        rules_strip_comment(p);
        text = rules_trim(p);
        p = nl ? nl + 1 : data + len;
        if (*text == '\0') continue;
        rest = text;
        word = rules_word(&rest);
        if (!strcmp(word, "if") || !strcmp(word, "ifplugin")) {
            bool c = false;
            if (depth == RULES_MAX_COND_DEPTH) {
                rules_warn(rs, file, line, "conditionals nested too deep");
                continue;
            }
            if (active[depth])
                c = word[2] == 'p' ? rules_plugin_known(rules_trim(rest))
                                   : rules_if(rs, file, line, rest);
            depth++;
            cond[depth] = c;
            active[depth] = active[depth - 1] && c;
            lacking[depth] =
                lacking[depth - 1] || (active[depth - 1] && !c && rules_lacks_plugin(word, rest));
            continue;
        }
        if (!strcmp(word, "else")) {
            if (depth == 0)
                rules_warn(rs, file, line, "else without if");
            else {
                active[depth] = active[depth - 1] && !cond[depth];
                lacking[depth] = lacking[depth - 1];
            }
            continue;
        }
        if (!strcmp(word, "endif")) {
            if (depth == 0)
                rules_warn(rs, file, line, "endif without if");
            else
                depth--;
            continue;
        }
        if (!active[depth]) {
            if (lacking[depth]) rules_mark_unsupported(rs, file, line, word, rest);
            continue;
        }
        /* rules_word cut the directive off in place: rebuild "directive rest". */
        if (*rest) rest[-1] = ' ';
        rules_line(rs, file, line, text);
    }
    if (depth) rules_warn(rs, file, line, "%d if/ifplugin without endif", depth);
    free(data);
    return 0;
}

int rules_load_file(struct rule_set *rs, const char *path)
{
    return rules_load(rs, path);
}

static int rules_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int rules_load_dir(struct rule_set *rs, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL, path[4096];
    size_t n = 0, cap = 0, i;

    if (d == NULL) {
        err_set("%s: %s", dir, strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len < 4 || strcmp(de->d_name + len - 3, ".cf") != 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            names = xrealloc(names, cap * sizeof *names);
        }
        names[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, rules_name_cmp);
    for (i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (rules_load(rs, path) != 0) rules_warn(rs, path, 0, "cannot read: %s", err_msg());
        free(names[i]);
    }
    free(names);
    return 0;
}
