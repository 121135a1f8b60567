/*
 * result - what a scan found: symbol hits, the total score and the action.
 *
 * Checks add hits with result_add(); a symbol hit twice is one hit whose
 * options accumulate (at most RESULT_MAX_OPTIONS are kept, the rest are
 * counted). result_finish() sums the scores, orders the hits by how much each
 * contributed and chooses the action from the thresholds. All memory belongs
 * to the arena given to result_init().
 */
#ifndef MXW_RESULT_H
#define MXW_RESULT_H

#include <stdbool.h>
#include <stddef.h>

struct arena;
struct symbol_registry;

enum scan_action {
    ACTION_DELIVER,    /* score <= tag threshold */
    ACTION_TAG,        /* add X-Spam-* headers (and a subject prefix if configured) */
    ACTION_QUARANTINE, /* hold in Postfix's hold queue */
    ACTION_REJECT,     /* 5xx at SMTP time */
};

/* An action applies when the score is strictly above its threshold. */
struct thresholds {
    double tag;
    double quarantine;
    double reject;
};

#define THRESHOLD_TAG_DEFAULT        6.0
#define THRESHOLD_QUARANTINE_DEFAULT 12.0
#define THRESHOLD_REJECT_DEFAULT     18.0
#define RESULT_MAX_OPTIONS           16

struct symbol_hit {
    int id;               /* in the registry */
    double score;         /* the symbol's score times the weight the check gave */
    const char **options; /* details such as the matched URL; arena strings */
    size_t n_options;
    size_t n_options_dropped;
};

struct scan_result {
    struct arena *arena;
    const struct symbol_registry *symbols;
    struct symbol_hit *hits;
    size_t n_hits;
    size_t cap_hits;
    double score;
    enum scan_action action;
    struct thresholds thresholds;
    const char *decided_by; /* whose thresholds applied: a recipient, or "default" */
    const char *subject_prefix; /* the decider's subject tag for ACTION_TAG ("" for none) */
    bool add_report_header;     /* the decider wants X-Spam-Report added */
    bool bayes_ready;       /* the statistical classifier had enough to decide */
    double bayes_p_spam;    /* its spam probability (0..1) when bayes_ready */
};

const char *scan_action_name(enum scan_action action);
/* Default thresholds 6 / 12 / 18. */
struct thresholds thresholds_default(void);
/* The action for score under t. */
enum scan_action thresholds_action(const struct thresholds *t, double score);

void result_init(struct scan_result *r, struct arena *a, const struct symbol_registry *symbols);
/*
 * Records a hit of symbol id with score = registered score * weight. option
 * may be NULL; it is copied. Hitting the same symbol again adds the option
 * and keeps the larger weight.
 */
void result_add(struct scan_result *r, int id, double weight, const char *option);
/* The hit for id, or NULL. */
const struct symbol_hit *result_find(const struct scan_result *r, int id);
/* Sums, sorts (largest |score| first, then by name) and picks the action. */
void result_finish(struct scan_result *r, const struct thresholds *t, const char *decided_by);
/* Overrides the action result_finish() picked, when the recipients' settings decide it
 * (several recipients can outvote one's own thresholds). Strings must live as long as r. */
void result_set_action(struct scan_result *r, enum scan_action action, const struct thresholds *t,
                       const char *decided_by);

#endif
