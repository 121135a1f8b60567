/*
 * bayes - the statistical classifier: multi-class naive Bayes over the
 * feature stream, with learn/unlearn kept in the kv store.
 *
 * Six classes: spam, ham, phishing, bec, newsletter, transactional. For each
 * feature the store keeps one counter per class (the number of learned
 * messages of that class containing it), and per class the number of learned
 * messages. Spam versus ham is Robinson's per-token estimate combined with
 * Fisher's chi-square method; each of the other four classes is scored the
 * same way as "this class versus all others".
 *
 * Learning is idempotent per message: a digest of the message (Message-ID and
 * body bytes, so headers added in transit do not matter) records the class it
 * was learned as. Learning it again as the same class changes nothing;
 * learning it as another class moves its counts; unlearning removes them
 * exactly. Every learn or unlearn is one all-or-nothing kv batch, guarded by
 * an expectation on the digest record, so two nodes learning the same message
 * at once cannot count it twice.
 *
 * Statistics can also be kept per tenant (recipient domain): learning then
 * writes both the global and the tenant's counts, and classification uses
 * the tenant's own once it has min_learns spam and ham of its own.
 *
 * A struct bayes is used by one thread at a time (it holds a kv handle and
 * scratch space); open one per thread. Errors: negative KV_* codes from the
 * store (KV_UNAVAILABLE when Redis is down), BAYES_ERR_* below, err_set().
 */
#ifndef MXW_BAYES_H
#define MXW_BAYES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct features;
struct kv;

enum bayes_class {
    BAYES_CLASS_SPAM,
    BAYES_CLASS_HAM,
    BAYES_CLASS_PHISHING,
    BAYES_CLASS_BEC,
    BAYES_CLASS_NEWSLETTER,
    BAYES_CLASS_TRANSACTIONAL,
    BAYES_N_CLASSES
};

enum {
    BAYES_ERR_VERSION = -20, /* the store was built from another feature stream version */
    BAYES_ERR_NOT_LEARNED = -21, /* unlearn of a message that was never learned */
    BAYES_ERR_BUSY = -22,        /* kept conflicting with concurrent learners */
};

#define BAYES_DIGEST_BYTES 16

struct bayes_config {
    unsigned min_learns;       /* spam and ham each, before spam/ham results count */
    unsigned min_learns_class; /* for each of the other four classes */
    bool per_tenant;
};

struct bayes_result {
    bool ready;                /* enough spam and ham learned for p_spam to mean something */
    double p_spam;             /* 0..1: spam (1) versus ham (0); 0.5 when not ready */
    double p_class[BAYES_N_CLASSES]; /* phishing..transactional versus the rest; -1 if not ready */
    const char *tenant;        /* whose statistics were used: NULL for the global ones */
    size_t tokens_used;        /* features that took part in the decision */
};

enum bayes_learn_outcome {
    BAYES_LEARNED,         /* counted as the class */
    BAYES_ALREADY_LEARNED, /* was already learned as that class; nothing changed */
    BAYES_MOVED,           /* was learned as another class; moved */
};

/* Who taught a message: an operator (or a user's move to Junk), or autolearn. */
enum bayes_origin { BAYES_ORIGIN_MANUAL = 'm', BAYES_ORIGIN_AUTO = 'a' };

struct bayes_stat {
    uint32_t learned[BAYES_N_CLASSES];
};

const char *bayes_class_name(enum bayes_class c);
/* The class called name ("spam", "ham", ...), or -1. */
int bayes_class_parse(const char *name);

/* The digest that identifies a message for learning. */
void bayes_digest(const char *raw, size_t len, uint8_t out[BAYES_DIGEST_BYTES]);

/* A classifier over kv (not owned: the caller closes it after bayes_free). Never NULL. */
struct bayes *bayes_new(struct kv *kv, const struct bayes_config *cfg);
void bayes_free(struct bayes *b);

/* Classifies the features f for tenant (NULL: global). */
int bayes_classify(struct bayes *b, const struct features *f, const char *tenant,
                   struct bayes_result *out);

/* Learns f (with the message digest) as cls, for tenant (NULL: global only). */
int bayes_learn(struct bayes *b, const uint8_t digest[BAYES_DIGEST_BYTES],
                const struct features *f, enum bayes_class cls, const char *tenant,
                enum bayes_origin origin, enum bayes_learn_outcome *outcome);
/* Removes what learning digest added; *was is the class it had. */
int bayes_unlearn(struct bayes *b, const uint8_t digest[BAYES_DIGEST_BYTES],
                  const struct features *f, enum bayes_class *was);
/* The class digest was learned as (-1 if it was not) and by whom (origin may be NULL). */
int bayes_learned_class(struct bayes *b, const uint8_t digest[BAYES_DIGEST_BYTES], int *cls,
                        enum bayes_origin *origin);
/*
 * Bulk mode, for learning a corpus: learns and unlearns are queued and
 * committed together every BAYES_BULK_MESSAGES messages (and by
 * bayes_flush()), which is many times faster than a commit per message. The
 * group is still all or nothing: if a flush fails, none of the queued
 * messages is learned, and bayes_flush() says how many were dropped.
 */
#define BAYES_BULK_MESSAGES 256
void bayes_set_bulk(struct bayes *b, bool bulk);
/* Commits what bulk mode queued. *dropped (may be NULL) is set to the number
 * of queued messages lost when the commit fails. */
int bayes_flush(struct bayes *b, size_t *dropped);

/* Learned messages per class for tenant (NULL: global). */
int bayes_stat(struct bayes *b, const char *tenant, struct bayes_stat *st);

#endif
