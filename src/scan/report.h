/*
 * report - the spam report of a scan, as text for people and JSON for tools.
 *
 * Text: one line per symbol, "NAME  score  description [options]", largest
 * contribution first, then "---", "Total: X" and "Action: Y". JSON: an object
 * with score, action, thresholds, decided_by and the symbols array, each with
 * name, score, description, group and options. Both append to a buf.
 */
#ifndef MXW_REPORT_H
#define MXW_REPORT_H

struct buf;
struct scan_result;

void report_text(struct buf *out, const struct scan_result *r);
/* file may be NULL; when given it is included as "file". */
void report_json(struct buf *out, const struct scan_result *r, const char *file);
/* Only the "symbols" array of report_json(), e.g. for the message log. */
void report_json_symbols(struct buf *out, const struct scan_result *r);

#endif
