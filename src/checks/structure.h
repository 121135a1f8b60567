/*
 * structure - symbols from the shape of the message itself: Received hop
 * count, MIME well-formedness, HTML-only bodies, hidden text, and links whose
 * visible text names a different domain than they lead to.
 *
 * structure_register() adds the symbols to a registry at start-up and keeps
 * their ids in *ids; structure_check() only reads the message and adds hits.
 */
#ifndef MXW_STRUCTURE_H
#define MXW_STRUCTURE_H

struct message;
struct scan_result;
struct symbol_registry;

#define STRUCTURE_RCVD_MAX 12 /* RCVD_COUNT_12 means twelve or more */

/* Hidden text shorter than this (non-space characters) is layout, not stuffing. */
#define STRUCTURE_ZERO_FONT_MIN_CHARS 20

struct structure_ids {
    int rcvd_count[STRUCTURE_RCVD_MAX + 1];
    int mime_good;
    int mime_bad;
    int mime_html_only;
    int zero_font;
    int html_link_mismatch;
};

void structure_register(struct symbol_registry *reg, struct structure_ids *ids);
void structure_check(const struct structure_ids *ids, const struct message *m,
                     struct scan_result *r);

#endif
