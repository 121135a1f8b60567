/*
 * bayes - multi-class naive Bayes on the kv store. See bayes.h.
 *
 * Store layout (namespaces of kv.h; T is the tenant, absent for global):
 *   "bt" / "bt:T"  counter vectors, width 6: per feature hash, the number of
 *                  learned messages of each class that contain the feature
 *   "bm" / "bm:T"  key 0, width 6: learned messages per class
 *   "bd"           blobs: message digest -> class byte, origin byte, tenant name
 *   "bv"           blob "stream": the feature stream version of the counts
 *
 * Each message counts a feature once however often it repeats (documents,
 * not occurrences), so the features are deduplicated first with a small
 * open-addressing set that is reused between calls (no allocation per token).
 * Bayes uses the word and metadata features and leaves the OSB pairs to the
 * neural model: pairs are four fifths of the stream, and on bench/accuracy
 * they made Fisher's combination worse (they repeat the evidence of their
 * words, which the test assumes independent) while costing four times the
 * store lookups.
 *
 * The per-token estimate is Robinson's: with p = (ns/Ns) / (ns/Ns + nh/Nh),
 * n = ns + nh, f = (s*x + n*p) / (s + n), which pulls rarely seen tokens
 * towards the prior x. Tokens whose f is within min_dev of 0.5 say little and
 * are ignored. Fisher's method then asks how unlikely the f values (and the
 * 1-f values) are under chance; the chi-square tails are computed in log
 * space because a long message has thousands of tokens and the plain series
 * underflows.
 *
 * Fisher's test assumes the tokens independent, and the worst offenders are
 * tokens that always come together: a mailing list's relay adds its host
 * name, domain, IP, /24 and Return-Path to every message it carries, one
 * sender's header block repeats its domain in four headers. Such tokens have
 * the same counts (they were learned from the same messages), so among the
 * tokens of one message seen in at least BAYES_SAME_COUNTS_MIN learned
 * messages, a count pair that was already combined is combined only once:
 * one piece of evidence, one vote. Below that many messages equal counts are
 * as often chance as a common origin, so rare tokens all count. This is a
 * rule of the classification alone (the counts stay exact); on bench/accuracy
 * it lowered FN at FP <= 0.1 % from 73 to 65 spam, and by 8 to 15 spam on
 * three other fold assignments (see the commit that brought it).
 */
#include "stat/bayes.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "store/kv.h"
#include "text/features.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

/* Robinson's prior and its strength, the minimum deviation from 0.5, and how
 * many of the most extreme tokens are combined. All measured on
 * bench/accuracy (5-fold, 6,046 messages; see bench/README.md): bogofilter's
 * defaults (0.52, 0.0178, 0.375) ranked worse here, and combining every token
 * instead of the 250 strongest doubled 1-AUC, because the many weak,
 * correlated tokens of a long message swamp Fisher's test. */
#define BAYES_ROBX                0.5
#define BAYES_ROBS                0.25
#define BAYES_MIN_DEV             0.1
#define BAYES_MAX_DISCRIMINATORS  250
/* Tokens seen in at least this many learned messages whose counts equal
 * another such token's of the same message are combined once (file comment). */
#define BAYES_SAME_COUNTS_MIN     6

#define BAYES_LEARN_RETRIES 8

struct bayes {
    struct kv *kv;
    struct bayes_config cfg;
    int version_checked; /* 0 unknown, 1 matches, -1 store is empty */
    /* scratch, grown as needed and kept between calls */
    uint64_t *keys;
    uint32_t *counts;
    double *columns; /* two columns of cap_keys counts for bayes_combine() */
    double *fvals;   /* cap_keys token estimates for bayes_combine() */
    size_t cap_keys;
    uint64_t *set;
    uint32_t *set_gen;
    size_t set_slots;
    uint32_t generation;
    struct kv_batch *batch;
    bool bulk;
    size_t pending;                                       /* messages queued in bulk mode */
    uint8_t pending_digests[BAYES_BULK_MESSAGES][BAYES_DIGEST_BYTES];
};

static const char *const bayes_class_names[BAYES_N_CLASSES] = {
    "spam", "ham", "phishing", "bec", "newsletter", "transactional"};

const char *bayes_class_name(enum bayes_class c)
{
    return (unsigned)c < BAYES_N_CLASSES ? bayes_class_names[c] : "unknown";
}

int bayes_class_parse(const char *name)
{
    int i;
    for (i = 0; i < BAYES_N_CLASSES; i++)
        if (strcmp(name, bayes_class_names[i]) == 0) return i;
    return -1;
}

void bayes_digest(const char *raw, size_t len, uint8_t out[BAYES_DIGEST_BYTES])
{
    /* Message-ID plus the body: MTAs add Received, Delivered-To and X-Spam
     * headers on the way, and the same message must keep its identity. */
    const char *body = NULL, *mid = NULL, *p;
    size_t mid_len = 0;
    XXH3_state_t st;
    XXH128_hash_t h;

    for (p = raw; p < raw + len;) {
        const char *nl = memchr(p, '\n', (size_t)(raw + len - p));
        const char *end = nl ? nl : raw + len;
        size_t line = (size_t)(end - p);
        if (line == 0 || (line == 1 && *p == '\r')) {
            body = nl ? nl + 1 : raw + len;
            break;
        }
        if (mid == NULL && line > 11 && strncasecmp(p, "Message-ID:", 11) == 0) {
            mid = p + 11;
            mid_len = line - 11;
            while (mid_len && (*mid == ' ' || *mid == '\t')) mid++, mid_len--;
            while (mid_len && (mid[mid_len - 1] == '\r' || mid[mid_len - 1] == ' ')) mid_len--;
        }
        if (nl == NULL) break;
        p = nl + 1;
    }
    XXH3_128bits_reset(&st);
    if (mid) XXH3_128bits_update(&st, mid, mid_len);
    XXH3_128bits_update(&st, "\n", 1);
    if (body) XXH3_128bits_update(&st, body, (size_t)(raw + len - body));
    else XXH3_128bits_update(&st, raw, len); /* no body: the headers are all there is */
    h = XXH3_128bits_digest(&st);
    memcpy(out, &h.high64, 8);
    memcpy(out + 8, &h.low64, 8);
}

struct bayes *bayes_new(struct kv *kv, const struct bayes_config *cfg)
{
    struct bayes *b = xcalloc(1, sizeof *b);
    b->kv = kv;
    b->cfg = *cfg;
    b->batch = kv_batch_new();
    return b;
}

void bayes_free(struct bayes *b)
{
    if (b == NULL) return;
    free(b->keys);
    free(b->counts);
    free(b->columns);
    free(b->fvals);
    free(b->set);
    free(b->set_gen);
    kv_batch_free(b->batch);
    free(b);
}

/* Empties the set b->set, which must have room for at least 2 * n values. */
static void bayes_set_clear(struct bayes *b, size_t n)
{
    size_t need = 16;

    while (need < n * 2)
        need *= 2;
    if (need > b->set_slots) {
        free(b->set);
        free(b->set_gen);
        b->set = xmalloc(need * sizeof *b->set);
        b->set_gen = xcalloc(need, sizeof *b->set_gen);
        b->set_slots = need;
        b->generation = 0;
    }
    if (++b->generation == 0) {
        /* Wrapped: clear the stamps once every 4 billion calls. */
        memset(b->set_gen, 0, b->set_slots * sizeof *b->set_gen);
        b->generation = 1;
    }
}

/* Adds h to the set; returns false if it was there already. */
static bool bayes_set_add(struct bayes *b, uint64_t h)
{
    size_t slot = (size_t)(h ^ (h >> 29)) & (b->set_slots - 1);
    while (b->set_gen[slot] == b->generation && b->set[slot] != h)
        slot = (slot + 1) & (b->set_slots - 1);
    if (b->set_gen[slot] == b->generation) return false;
    b->set_gen[slot] = b->generation;
    b->set[slot] = h;
    return true;
}

/* Copies the unique hashes of f into b->keys; returns how many. */
static size_t bayes_unique(struct bayes *b, const struct features *f)
{
    size_t i, n = 0;

    bayes_set_clear(b, f->n);
    if (f->n > b->cap_keys) {
        b->cap_keys = f->n;
        b->keys = xrealloc(b->keys, b->cap_keys * sizeof *b->keys);
        b->counts = xrealloc(b->counts, b->cap_keys * BAYES_N_CLASSES * sizeof *b->counts);
        b->columns = xrealloc(b->columns, 2 * b->cap_keys * sizeof *b->columns);
        b->fvals = xrealloc(b->fvals, b->cap_keys * sizeof *b->fvals);
    }
    for (i = 0; i < f->n; i++) {
        if (f->kind[i] == FEAT_OSB) continue; /* see the file comment */
        if (bayes_set_add(b, f->hash[i])) b->keys[n++] = f->hash[i];
    }
    return n;
}

static void bayes_ns(char *out, size_t size, const char *prefix, const char *tenant)
{
    if (tenant && *tenant) snprintf(out, size, "%s:%s", prefix, tenant);
    else snprintf(out, size, "%s", prefix);
}

static int bayes_read_stat(struct bayes *b, const char *tenant, uint32_t learned[BAYES_N_CLASSES])
{
    char ns[KV_MAX_NS];
    uint64_t key = 0;
    bayes_ns(ns, sizeof ns, "bm", tenant);
    return kv_counters_get(b->kv, ns, &key, 1, BAYES_N_CLASSES, learned);
}

int bayes_stat(struct bayes *b, const char *tenant, struct bayes_stat *st)
{
    return bayes_read_stat(b, tenant, st->learned);
}

/* Checks the store's feature stream version once per handle. */
static int bayes_check_version(struct bayes *b)
{
    struct buf v = {0};
    bool found = false;
    int rc;
    char want[16];

    if (b->version_checked == 1) return 0;
    rc = kv_get(b->kv, "bv", "stream", 6, &v, &found);
    if (rc != KV_OK) {
        buf_free(&v);
        return rc;
    }
    snprintf(want, sizeof want, "%d", FEATURE_STREAM_VERSION);
    if (!found) {
        b->version_checked = -1;
    } else if (strcmp(v.data, want) != 0) {
        err_set("the Bayes statistics were learned with feature stream version %s, this build "
                "uses %s: learn the corpus again into a new store",
                v.data, want);
        buf_free(&v);
        return BAYES_ERR_VERSION;
    } else {
        b->version_checked = 1;
    }
    buf_free(&v);
    return 0;
}

/*
 * log of the chi-square upper tail Q(x2, v) for even v: with m = x2 / 2,
 * Q = e^-m * sum_{i < v/2} m^i / i!. The terms are summed in linear space,
 * scaled down by 2^-600 (exactly, with the scale's log kept aside) whenever
 * they grow past 2^600, so a long message's thousands of tokens neither
 * overflow nor pay for a log() and exp() per term (they did, a twentieth of a
 * classify). The sum stops once a term past the peak adds less than e^-40.
 */
static double bayes_log_chi2q(double x2, size_t v)
{
    const double big = 0x1p600, small = 0x1p-600, log_big = 600.0 * M_LN2;
    double m = x2 / 2.0, term = 1.0, sum = 1.0, log_scale = 0.0, r;
    size_t i;

    for (i = 1; i < v / 2; i++) {
        term *= m / (double)i;
        sum += term;
        if (sum > big) {
            term *= small;
            sum *= small;
            log_scale += log_big;
        }
        if ((double)i > m && term < sum * 4.248354255291589e-18) break; /* e^-40 */
    }
    r = -m + log(sum) + log_scale;
    return r > 0 ? 0 : r;
}

static inline double bayes_dev(double f)
{
    return fabs(f - 0.5);
}

/* Restores the min-heap (by deviation from 0.5) of f[0..k) below position i. */
static void bayes_heap_down(double *f, size_t k, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        double t;
        if (l < k && bayes_dev(f[l]) < bayes_dev(f[m])) m = l;
        if (r < k && bayes_dev(f[r]) < bayes_dev(f[m])) m = r;
        if (m == i) return;
        t = f[i], f[i] = f[m], f[m] = t;
        i = m;
    }
}

/* Moves the k values of f[0..n) farthest from 0.5 to f[0..k): a min-heap of
 * the best k seen so far, O(n log k). */
static void bayes_select_extreme(double *f, size_t n, size_t k)
{
    size_t i;
    for (i = k / 2; i-- > 0;) bayes_heap_down(f, k, i);
    for (i = k; i < n; i++) {
        if (bayes_dev(f[i]) <= bayes_dev(f[0])) continue;
        f[0] = f[i];
        bayes_heap_down(f, k, 0);
    }
}

/*
 * Fisher-combined probability that a message with these token counts is in
 * class a rather than class b (count columns ca, cb; totals na, nb). Returns
 * 0.5 when no token is informative.
 */
static double bayes_combine(struct bayes *b, size_t n, const double *na_counts,
                            const double *nb_counts, double na, double nb, size_t *used)
{
    double sum_ln_f = 0, sum_ln_1f = 0, s_tail, h_tail;
    double *fs = b->fvals;
    size_t i, k = 0;

    bayes_set_clear(b, n); /* the count pairs combined so far (file comment) */
    for (i = 0; i < n; i++) {
        double a = na_counts[i], c = nb_counts[i], pa, pb, p, f, tot = a + c;
        if (tot <= 0) continue;
        if (tot >= BAYES_SAME_COUNTS_MIN) {
            /* The store's counts are uint32_t (a sum of other classes' counts
             * passes 2^32 only after 4 billion learned messages); the odd
             * multiplier spreads small pairs over the slots and is invertible,
             * so distinct pairs stay distinct. */
            uint64_t pair = ((uint64_t)a << 32 | (uint64_t)c) * 0x9E3779B97F4A7C15ull;
            if (!bayes_set_add(b, pair)) continue;
        }
        pa = a / na;
        pb = c / nb;
        p = pa / (pa + pb);
        f = (BAYES_ROBS * BAYES_ROBX + tot * p) / (BAYES_ROBS + tot);
        if (fabs(f - 0.5) < BAYES_MIN_DEV) continue;
        if (f < 1e-6) f = 1e-6;
        if (f > 1 - 1e-6) f = 1 - 1e-6;
        fs[k++] = f;
    }
    if (k > BAYES_MAX_DISCRIMINATORS) {
        bayes_select_extreme(fs, k, BAYES_MAX_DISCRIMINATORS);
        k = BAYES_MAX_DISCRIMINATORS;
    }
    *used = k;
    if (k == 0) return 0.5;
    {
        /* The sums of logs as the logs of two products, their binary exponents taken out
         * (frexp, exact) before they could underflow: every factor is at least 1e-6. Two
         * log() calls per message instead of two per token. */
        double pf = 1.0, p1f = 1.0;
        int ef = 0, e1f = 0, e;
        for (i = 0; i < k; i++) {
            pf *= fs[i];
            p1f *= 1.0 - fs[i];
            if (pf < 0x1p-500) pf = frexp(pf, &e), ef += e;
            if (p1f < 0x1p-500) p1f = frexp(p1f, &e), e1f += e;
        }
        sum_ln_f = log(pf) + ef * M_LN2;
        sum_ln_1f = log(p1f) + e1f * M_LN2;
    }
    /* S near 1 when the f are jointly high (class a), H near 1 when jointly low. */
    s_tail = -expm1(bayes_log_chi2q(-2.0 * sum_ln_1f, 2 * k));
    h_tail = -expm1(bayes_log_chi2q(-2.0 * sum_ln_f, 2 * k));
    return (1.0 + s_tail - h_tail) / 2.0;
}

int bayes_classify(struct bayes *b, const struct features *f, const char *tenant,
                   struct bayes_result *out)
{
    uint32_t learned[BAYES_N_CLASSES], tenant_learned[BAYES_N_CLASSES];
    char ns[KV_MAX_NS];
    size_t n, i;
    int rc, c;
    double *ca, *cb;

    memset(out, 0, sizeof *out);
    out->p_spam = 0.5;
    for (c = 0; c < BAYES_N_CLASSES; c++) out->p_class[c] = -1;
    if ((rc = bayes_check_version(b)) != 0) return rc;
    if ((rc = bayes_read_stat(b, NULL, learned)) != KV_OK) return rc;
    if (tenant && b->cfg.per_tenant) {
        if ((rc = bayes_read_stat(b, tenant, tenant_learned)) != KV_OK) return rc;
        if (tenant_learned[BAYES_CLASS_SPAM] >= b->cfg.min_learns &&
            tenant_learned[BAYES_CLASS_HAM] >= b->cfg.min_learns) {
            memcpy(learned, tenant_learned, sizeof learned);
            out->tenant = tenant;
        }
    }
    if (learned[BAYES_CLASS_SPAM] < b->cfg.min_learns ||
        learned[BAYES_CLASS_HAM] < b->cfg.min_learns)
        return 0;
    out->ready = true;

    n = bayes_unique(b, f);
    bayes_ns(ns, sizeof ns, "bt", out->tenant);
    if ((rc = kv_counters_get(b->kv, ns, b->keys, n, BAYES_N_CLASSES, b->counts)) != KV_OK)
        return rc;

    ca = b->columns;
    cb = b->columns + b->cap_keys;
    for (i = 0; i < n; i++) {
        ca[i] = b->counts[i * BAYES_N_CLASSES + BAYES_CLASS_SPAM];
        cb[i] = b->counts[i * BAYES_N_CLASSES + BAYES_CLASS_HAM];
    }
    out->p_spam = bayes_combine(b, n, ca, cb, learned[BAYES_CLASS_SPAM],
                                learned[BAYES_CLASS_HAM], &out->tokens_used);

    for (c = BAYES_CLASS_PHISHING; c < BAYES_N_CLASSES; c++) {
        double others = 0;
        size_t used;
        int o;
        if (learned[c] < b->cfg.min_learns_class) continue;
        for (o = 0; o < BAYES_N_CLASSES; o++)
            if (o != c) others += learned[o];
        for (i = 0; i < n; i++) {
            const uint32_t *row = &b->counts[i * BAYES_N_CLASSES];
            ca[i] = row[c];
            cb[i] = 0;
            for (o = 0; o < BAYES_N_CLASSES; o++)
                if (o != c) cb[i] += row[o];
        }
        out->p_class[c] = bayes_combine(b, n, ca, cb, learned[c], others, &used);
    }
    return 0;
}

int bayes_learned_class(struct bayes *b, const uint8_t digest[BAYES_DIGEST_BYTES], int *cls,
                        enum bayes_origin *origin)
{
    struct buf v = {0};
    bool found = false;
    int rc = kv_get(b->kv, "bd", digest, BAYES_DIGEST_BYTES, &v, &found);
    *cls = (rc == KV_OK && found && v.len >= 2) ? (unsigned char)v.data[0] : -1;
    if (origin) *origin = *cls >= 0 ? (enum bayes_origin)v.data[1] : BAYES_ORIGIN_MANUAL;
    buf_free(&v);
    return rc;
}

/* Adds delta (+1/-1) for class cls of every unique key, and of the learned count, in ns T. */
static void bayes_batch_class(struct bayes *b, size_t n, const char *tenant, int cls, int delta)
{
    char ns[KV_MAX_NS];
    int32_t d[BAYES_N_CLASSES] = {0};
    uint64_t zero = 0;
    size_t i;

    d[cls] = delta;
    bayes_ns(ns, sizeof ns, "bt", tenant);
    for (i = 0; i < n; i++) kv_batch_incr(b->batch, ns, b->keys[i], BAYES_N_CLASSES, d, 0);
    bayes_ns(ns, sizeof ns, "bm", tenant);
    kv_batch_incr(b->batch, ns, zero, BAYES_N_CLASSES, d, 0);
}

/*
 * One attempt at changing what digest is learned as: from its current record
 * (read here) to new_cls (-1: unlearned). Returns KV_CONFLICT if another
 * writer got in between, so the caller retries.
 */
static int bayes_relearn(struct bayes *b, const uint8_t digest[BAYES_DIGEST_BYTES],
                         const struct features *f, int new_cls, const char *tenant,
                         enum bayes_origin origin, int *old_cls)
{
    struct buf rec = {0};
    bool found = false;
    char old_tenant[KV_MAX_NS] = "";
    char version[16];
    size_t n;
    int rc;

    if (b->bulk) {
        /* The same message twice in one group would read a record not yet written. */
        size_t i;
        for (i = 0; i < b->pending; i++)
            if (memcmp(b->pending_digests[i], digest, BAYES_DIGEST_BYTES) == 0) break;
        if (i < b->pending && (rc = bayes_flush(b, NULL)) != KV_OK) goto out;
    }
    if ((rc = kv_get(b->kv, "bd", digest, BAYES_DIGEST_BYTES, &rec, &found)) != KV_OK) goto out;
    *old_cls = found && rec.len >= 2 ? (unsigned char)rec.data[0] : -1;
    if (found && rec.len > 2) snprintf(old_tenant, sizeof old_tenant, "%.*s", (int)(rec.len - 2),
                                       rec.data + 2);
    if (*old_cls == new_cls && (new_cls < 0 || strcmp(old_tenant, tenant ? tenant : "") == 0) &&
        (new_cls < 0 || rec.data[1] == (char)origin)) {
        rc = KV_OK; /* nothing to change */
        goto out;
    }
    if (*old_cls >= BAYES_N_CLASSES) {
        err_set("corrupt learn record for this message");
        rc = KV_ERR;
        goto out;
    }
    n = bayes_unique(b, f);
    if (!b->bulk) kv_batch_clear(b->batch);
    kv_batch_expect(b->batch, "bd", digest, BAYES_DIGEST_BYTES, found ? rec.data : NULL,
                    found ? rec.len : 0);
    if (*old_cls >= 0) {
        bayes_batch_class(b, n, NULL, *old_cls, -1);
        if (old_tenant[0]) bayes_batch_class(b, n, old_tenant, *old_cls, -1);
    }
    if (new_cls >= 0) {
        char value[2 + KV_MAX_NS];
        size_t vlen = 2;
        bool with_tenant = tenant && *tenant && b->cfg.per_tenant;
        bayes_batch_class(b, n, NULL, new_cls, +1);
        value[0] = (char)new_cls;
        value[1] = (char)origin;
        if (with_tenant) {
            bayes_batch_class(b, n, tenant, new_cls, +1);
            vlen += (size_t)snprintf(value + 2, sizeof value - 2, "%s", tenant);
        }
        kv_batch_put(b->batch, "bd", digest, BAYES_DIGEST_BYTES, value, vlen, 0);
        snprintf(version, sizeof version, "%d", FEATURE_STREAM_VERSION);
        kv_batch_put(b->batch, "bv", "stream", 6, version, strlen(version), 0);
    } else {
        kv_batch_del(b->batch, "bd", digest, BAYES_DIGEST_BYTES);
    }
    if (b->bulk) {
        memcpy(b->pending_digests[b->pending++], digest, BAYES_DIGEST_BYTES);
        rc = b->pending == BAYES_BULK_MESSAGES ? bayes_flush(b, NULL) : KV_OK;
        goto out;
    }
    rc = kv_batch_commit(b->kv, b->batch);
    if (rc == KV_OK) b->version_checked = 1;
out:
    buf_free(&rec);
    return rc;
}

int bayes_learn(struct bayes *b, const uint8_t digest[BAYES_DIGEST_BYTES],
                const struct features *f, enum bayes_class cls, const char *tenant,
                enum bayes_origin origin, enum bayes_learn_outcome *outcome)
{
    int attempt, rc, old = -1;

    if ((unsigned)cls >= BAYES_N_CLASSES) {
        err_set("unknown Bayes class %d", (int)cls);
        return KV_ERR;
    }
    if ((rc = bayes_check_version(b)) != 0) return rc;
    for (attempt = 0; attempt < BAYES_LEARN_RETRIES; attempt++) {
        rc = bayes_relearn(b, digest, f, (int)cls, tenant, origin, &old);
        if (rc != KV_CONFLICT) break;
    }
    if (rc == KV_CONFLICT) {
        err_set("the message kept being learned concurrently; gave up after %d tries", attempt);
        return BAYES_ERR_BUSY;
    }
    if (rc != KV_OK) return rc;
    *outcome = old < 0 ? BAYES_LEARNED : old == (int)cls ? BAYES_ALREADY_LEARNED : BAYES_MOVED;
    return 0;
}

int bayes_unlearn(struct bayes *b, const uint8_t digest[BAYES_DIGEST_BYTES],
                  const struct features *f, enum bayes_class *was)
{
    int attempt, rc, old = -1;

    if ((rc = bayes_check_version(b)) != 0) return rc;
    for (attempt = 0; attempt < BAYES_LEARN_RETRIES; attempt++) {
        rc = bayes_relearn(b, digest, f, -1, NULL, BAYES_ORIGIN_MANUAL, &old);
        if (rc != KV_CONFLICT) break;
    }
    if (rc == KV_CONFLICT) {
        err_set("the message kept being learned concurrently; gave up after %d tries", attempt);
        return BAYES_ERR_BUSY;
    }
    if (rc != KV_OK) return rc;
    if (old < 0) {
        err_set("the message was never learned");
        return BAYES_ERR_NOT_LEARNED;
    }
    *was = (enum bayes_class)old;
    return 0;
}

void bayes_set_bulk(struct bayes *b, bool bulk)
{
    if (b->bulk && !bulk) bayes_flush(b, NULL);
    b->bulk = bulk;
    if (bulk) kv_batch_clear(b->batch);
}

int bayes_flush(struct bayes *b, size_t *dropped)
{
    int rc = KV_OK;
    if (dropped) *dropped = 0;
    if (b->pending == 0) return KV_OK;
    rc = kv_batch_commit(b->kv, b->batch);
    if (rc == KV_OK) {
        b->version_checked = 1;
    } else {
        if (dropped) *dropped = b->pending;
        log_warn("msg=\"bulk learn group not committed\" messages=%zu reason=\"%s\"", b->pending,
                 err_msg());
    }
    kv_batch_clear(b->batch);
    b->pending = 0;
    return rc;
}
