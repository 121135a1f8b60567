/*
 * bayes_check - statistical classifier symbols. See bayes_check.h.
 */
#include "checks/bayes_check.h"
#include "checks/symbols.h"
#include "core/log.h"
#include "scan/result.h"

#include <stdio.h>

#define BAYES_UNDECIDED 0.1 /* |p - 0.5| below this fires nothing */
#define BAYES_CLASS_MIN 0.9

void bayes_check_register(struct symbol_registry *reg, struct bayes_check_ids *ids)
{
    ids->spam = symbols_add(reg, "BAYES_SPAM", 5.0,
                            "The statistical classifier (Bayes) says spam", "bayes");
    ids->ham = symbols_add(reg, "BAYES_HAM", -3.0,
                           "The statistical classifier (Bayes) says legitimate mail", "bayes");
    ids->cls[BAYES_CLASS_SPAM] = ids->cls[BAYES_CLASS_HAM] = -1;
    ids->cls[BAYES_CLASS_PHISHING] =
        symbols_add(reg, "BAYES_PHISHING", 3.0, "Bayes: reads like learned phishing", "bayes");
    ids->cls[BAYES_CLASS_BEC] = symbols_add(
        reg, "BAYES_BEC", 3.0, "Bayes: reads like learned CEO fraud / business email compromise",
        "bayes");
    ids->cls[BAYES_CLASS_NEWSLETTER] =
        symbols_add(reg, "BAYES_NEWSLETTER", 0.0, "Bayes: reads like a newsletter", "bayes");
    ids->cls[BAYES_CLASS_TRANSACTIONAL] = symbols_add(
        reg, "BAYES_TRANSACTIONAL", -0.5,
        "Bayes: reads like a transactional message (order, notification)", "bayes");
    ids->unavailable = symbols_add(reg, "BAYES_UNAVAILABLE", 0.0,
                                   "Bayes statistics could not be read; scored without them",
                                   "bayes");
}

void bayes_check_symbols(const struct bayes_check_ids *ids, int rc, const struct bayes_result *res,
                         struct scan_result *r)
{
    char opt[64];
    int c;

    if (rc != 0) {
        snprintf(opt, sizeof opt, "%.60s", err_msg());
        result_add(r, ids->unavailable, 1.0, opt);
        return;
    }
    if (!res->ready) return;
    snprintf(opt, sizeof opt, "%.2f%%", res->p_spam * 100.0);
    if (res->p_spam >= 0.5 + BAYES_UNDECIDED)
        result_add(r, ids->spam, (res->p_spam - 0.5) * 2.0, opt);
    else if (res->p_spam <= 0.5 - BAYES_UNDECIDED)
        result_add(r, ids->ham, (0.5 - res->p_spam) * 2.0, opt);
    for (c = BAYES_CLASS_PHISHING; c < BAYES_N_CLASSES; c++) {
        if (res->p_class[c] < BAYES_CLASS_MIN) continue;
        snprintf(opt, sizeof opt, "%.2f%%", res->p_class[c] * 100.0);
        result_add(r, ids->cls[c], 1.0, opt);
    }
}
