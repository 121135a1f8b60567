/*
 * report - text and JSON spam reports. See report.h.
 */
#include "scan/report.h"
#include "checks/symbols.h"
#include "core/buf.h"
#include "scan/result.h"

#include <string.h>

static void report_options_text(struct buf *out, const struct symbol_hit *h)
{
    size_t i;
    if (h->n_options == 0) return;
    buf_append_str(out, "  [");
    for (i = 0; i < h->n_options; i++) {
        if (i) buf_append(out, ", ", 2);
        buf_append_str(out, h->options[i]);
    }
    if (h->n_options_dropped) buf_printf(out, ", +%zu more", h->n_options_dropped);
    buf_append_char(out, ']');
}

void report_text(struct buf *out, const struct scan_result *r)
{
    size_t i, width = 0;

    for (i = 0; i < r->n_hits; i++) {
        size_t len = strlen(symbols_get(r->symbols, r->hits[i].id)->name);
        if (len > width) width = len;
    }
    for (i = 0; i < r->n_hits; i++) {
        const struct symbol_hit *h = &r->hits[i];
        const struct symbol_def *d = symbols_get(r->symbols, h->id);
        buf_printf(out, "%-*s %6.2f  %s", (int)width, d->name, h->score + 0.0, d->description);
        report_options_text(out, h);
        buf_append_char(out, '\n');
    }
    buf_append_str(out, "---\n");
    buf_printf(out, "Total: %.2f\n", r->score);
    /* Whose thresholds decided: with several recipients it may not be the first one's. */
    if (r->decided_by && strcmp(r->decided_by, "default") != 0)
        buf_printf(out, "Action: %s (thresholds of %s: %.2f / %.2f / %.2f)\n",
                   scan_action_name(r->action), r->decided_by, r->thresholds.tag,
                   r->thresholds.quarantine, r->thresholds.reject);
    else
        buf_printf(out, "Action: %s (default thresholds: %.2f / %.2f / %.2f)\n",
                   scan_action_name(r->action), r->thresholds.tag, r->thresholds.quarantine,
                   r->thresholds.reject);
}

static void report_json_number(struct buf *out, double v)
{
    buf_printf(out, "%.2f", v + 0.0);
}

void report_json(struct buf *out, const struct scan_result *r, const char *file)
{
    buf_append_char(out, '{');
    if (file) {
        buf_append_str(out, "\"file\":");
        buf_append_json_string(out, file, strlen(file));
        buf_append_char(out, ',');
    }
    buf_append_str(out, "\"score\":");
    report_json_number(out, r->score);
    buf_printf(out, ",\"action\":\"%s\",\"thresholds\":{\"tag\":", scan_action_name(r->action));
    report_json_number(out, r->thresholds.tag);
    buf_append_str(out, ",\"quarantine\":");
    report_json_number(out, r->thresholds.quarantine);
    buf_append_str(out, ",\"reject\":");
    report_json_number(out, r->thresholds.reject);
    buf_append_str(out, "},\"decided_by\":");
    buf_append_json_string(out, r->decided_by, strlen(r->decided_by));
    if (r->bayes_ready) buf_printf(out, ",\"bayes\":{\"p_spam\":%.6f}", r->bayes_p_spam);
    buf_append_str(out, ",\"symbols\":");
    report_json_symbols(out, r);
    buf_append_char(out, '}');
}

void report_json_symbols(struct buf *out, const struct scan_result *r)
{
    size_t i, j;

    buf_append_char(out, '[');
    for (i = 0; i < r->n_hits; i++) {
        const struct symbol_hit *h = &r->hits[i];
        const struct symbol_def *d = symbols_get(r->symbols, h->id);
        if (i) buf_append_char(out, ',');
        buf_append_str(out, "{\"name\":");
        buf_append_json_string(out, d->name, strlen(d->name));
        buf_append_str(out, ",\"score\":");
        report_json_number(out, h->score);
        buf_append_str(out, ",\"description\":");
        buf_append_json_string(out, d->description, strlen(d->description));
        buf_append_str(out, ",\"group\":");
        buf_append_json_string(out, d->group, strlen(d->group));
        buf_append_str(out, ",\"options\":[");
        for (j = 0; j < h->n_options; j++) {
            if (j) buf_append_char(out, ',');
            buf_append_json_string(out, h->options[j], strlen(h->options[j]));
        }
        buf_append_str(out, "]}");
    }
    buf_append_char(out, ']');
}
