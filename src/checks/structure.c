/*
 * structure - structural symbols (see structure.h).
 *
 * Scores are deliberately modest: each of these appears in some legitimate
 * mail (tracking links show one domain and point to another, marketing tools
 * send HTML only), so on their own they must never push a message over the
 * tag threshold; they matter in combination with rules and classifiers.
 */
#include "checks/structure.h"
#include "checks/symbols.h"
#include "core/arena.h"
#include "message/html.h"
#include "message/message.h"
#include "scan/result.h"

#include <stdio.h>
#include <string.h>

void structure_register(struct symbol_registry *reg, struct structure_ids *ids)
{
    int n;
    for (n = 0; n <= STRUCTURE_RCVD_MAX; n++) {
        char name[32], desc[96];
        snprintf(name, sizeof name, "RCVD_COUNT_%d", n);
        if (n == STRUCTURE_RCVD_MAX)
            snprintf(desc, sizeof desc, "Passed through %d or more mail servers (Received headers)", n);
        else
            snprintf(desc, sizeof desc, "Passed through %d mail server%s (Received headers)", n,
                     n == 1 ? "" : "s");
        ids->rcvd_count[n] = symbols_add(reg, name, 0.0, desc, "headers");
    }
    ids->mime_good = symbols_add(reg, "MIME_GOOD", -0.1, "Well-formed MIME structure", "mime");
    ids->mime_bad = symbols_add(reg, "MIME_BAD", 1.0,
                                "Broken MIME structure or encoding",
                                "mime");
    ids->mime_html_only = symbols_add(reg, "MIME_HTML_ONLY", 0.5,
                                      "Message has only an HTML body, no plain-text version",
                                      "mime");
    ids->zero_font = symbols_add(reg, "ZERO_FONT", 2.0,
                                 "Text hidden from the reader (tiny font, invisible colour, "
                                 "display:none)",
                                 "html");
    ids->html_link_mismatch = symbols_add(reg, "HTML_LINK_MISMATCH", 1.0,
                                          "A link shows one domain but leads to another", "html");
}

static void mime_bad_reasons(const struct structure_ids *ids, const struct message *m,
                             struct scan_result *r)
{
    unsigned pf = 0;
    size_t i;

    for (i = 0; i < m->n_parts; i++) pf |= m->parts[i].flags;
    if (pf & PART_F_BAD_BASE64) result_add(r, ids->mime_bad, 1.0, "bad base64");
    if (pf & PART_F_BAD_QP) result_add(r, ids->mime_bad, 1.0, "bad quoted-printable");
    if (pf & PART_F_BAD_ENCODING) result_add(r, ids->mime_bad, 1.0, "unknown transfer encoding");
    if (pf & PART_F_NO_BOUNDARY) result_add(r, ids->mime_bad, 1.0, "multipart without boundary");
    if (m->flags & MSG_F_TRUNCATED) result_add(r, ids->mime_bad, 1.0, "truncated");
    if (m->flags & MSG_F_TOO_DEEP) result_add(r, ids->mime_bad, 1.0, "nested too deep");
    if (m->flags & MSG_F_TOO_MANY_PARTS) result_add(r, ids->mime_bad, 1.0, "too many parts");
    if (result_find(r, ids->mime_bad) == NULL)
        result_add(r, ids->mime_bad, 1.0, "malformed MIME structure");
}

void structure_check(const struct structure_ids *ids, const struct message *m,
                     struct scan_result *r)
{
    size_t i, hidden = 0;
    int mismatches = 0;
    size_t rc = m->n_received;

    result_add(r, ids->rcvd_count[rc > STRUCTURE_RCVD_MAX ? STRUCTURE_RCVD_MAX : rc], 1.0, NULL);

    if (m->flags & (MSG_F_MIME_BAD | MSG_F_TOO_DEEP | MSG_F_TOO_MANY_PARTS))
        mime_bad_reasons(ids, m, r);
    else if (!(m->flags & MSG_F_NO_HEADERS))
        result_add(r, ids->mime_good, 1.0, NULL);

    if (m->flags & MSG_F_HTML_ONLY) result_add(r, ids->mime_html_only, 1.0, NULL);

    for (i = 0; i < m->n_texts; i++) hidden += m->texts[i].hidden_chars;
    if (hidden >= STRUCTURE_ZERO_FONT_MIN_CHARS) {
        char opt[48];
        snprintf(opt, sizeof opt, "%zu hidden characters", hidden);
        result_add(r, ids->zero_font, 1.0, opt);
    }

    for (i = 0; i < m->n_urls; i++) {
        const struct url *u = &m->urls[i];
        if (!(u->flags & URL_F_LINK_MISMATCH)) continue;
        if (mismatches++ < RESULT_MAX_OPTIONS) {
            char *opt = arena_printf(r->arena, "%s -> %s", u->link_text_domain, u->domain);
            result_add(r, ids->html_link_mismatch, 1.0, opt);
        }
    }
}
