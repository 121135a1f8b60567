/*
 * bayes_check - the symbols of the statistical classifier.
 *
 * BAYES_SPAM (up to +5) and BAYES_HAM (down to -3) scale with how far the
 * spam probability is from 0.5; nothing fires in the undecided middle
 * (0.4..0.6) or before enough spam and ham are learned. BAYES_PHISHING,
 * BAYES_BEC, BAYES_NEWSLETTER and BAYES_TRANSACTIONAL fire when their class
 * probability reaches 0.9. BAYES_UNAVAILABLE (0) says the statistics could
 * not be read (store unreachable), so a verdict without Bayes is visible.
 * Every symbol carries its probability as an option.
 */
#ifndef MXW_BAYES_CHECK_H
#define MXW_BAYES_CHECK_H

#include "stat/bayes.h"

struct scan_result;
struct symbol_registry;

struct bayes_check_ids {
    int spam;
    int ham;
    int cls[BAYES_N_CLASSES]; /* phishing..transactional; spam/ham unused */
    int unavailable;
};

void bayes_check_register(struct symbol_registry *reg, struct bayes_check_ids *ids);
/* Adds the symbols for res; rc is what bayes_classify() returned. */
void bayes_check_symbols(const struct bayes_check_ids *ids, int rc, const struct bayes_result *res,
                         struct scan_result *r);

#endif
