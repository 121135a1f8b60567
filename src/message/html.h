/*
 * html - visible text, hidden text and links of an HTML part.
 *
 * Uses libxml2's tolerant HTML parser in SAX mode (no DOM is built), so broken
 * markup, unclosed tags and absurd nesting cost time linear in the input.
 * Script, style, <title> and other <head> metadata, and comments produce no text. Block
 * elements (p, div, br, li, tr, h1..h6, ...) separate text with newlines, so
 * words from adjacent blocks never run together.
 *
 * Text is "hidden" when a reader would not see it: font-size 0 or below 2px
 * (style or <font size=0>), display:none, visibility:hidden, or a text colour
 * equal to the effective background colour. Hidden text is kept apart from
 * visible text and counted, because spammers use it to stuff words that fool
 * statistical filters.
 *
 * Input must be UTF-8 (the MIME layer converts first); any <meta charset> in
 * the document is ignored.
 */
#ifndef MXW_HTML_H
#define MXW_HTML_H

#include <stddef.h>

struct arena;

struct html_link {
    const char *tag;  /* lowercase element name: "a", "area", "img", "form", "iframe", ... */
    const char *url;  /* attribute value, entities decoded, surrounding whitespace trimmed */
    const char *text; /* for a/area: the visible text inside the element (may be ""); else NULL */
};

#define HTML_F_SCRIPT  0x01u /* <script> present */
#define HTML_F_FORM    0x02u /* <form> present */
#define HTML_F_IFRAME  0x04u /* <iframe> or <frame> present */
#define HTML_F_DEEP    0x08u /* nesting beyond HTML_MAX_DEPTH: styles of deeper elements inherited */
#define HTML_F_BROKEN  0x10u /* parser errors (unclosed tags, bad syntax), NUL bytes or bad UTF-8 */

#define HTML_MAX_DEPTH 256
#define HTML_MAX_LINKS 1000
#define HTML_MAX_TEXT_BYTES (4u * 1024 * 1024)

struct html_result {
    const char *text;     /* visible text, UTF-8, whitespace collapsed; never NULL */
    size_t text_len;
    const char *hidden;   /* hidden text, UTF-8; never NULL */
    size_t hidden_len;
    size_t hidden_chars;  /* non-space code points of hidden text */
    struct html_link *links; /* in document order, at most HTML_MAX_LINKS; NULL when none */
    size_t n_links;
    size_t n_images;
    unsigned flags;       /* HTML_F_* */
};

/*
 * Extracts text and links from html[0..len) into *out; all memory is owned by
 * the arena. Never fails: broken HTML gives whatever text could be recovered.
 * Text beyond HTML_MAX_TEXT_BYTES is dropped.
 */
void html_extract(struct arena *a, const char *html, size_t len, struct html_result *out);

#endif
