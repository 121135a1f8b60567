/*
 * html - visible text, hidden text and links of an HTML part. See html.h.
 *
 * libxml2's HTML parser runs in SAX mode with our own handler; no tree is
 * built. The parser keeps its own stack of open elements and, in recovery
 * mode, closes elements itself (implied ends, unclosed tags at the end) and
 * reports those ends too. We mirror that stack with a style frame per open
 * element up to HTML_MAX_DEPTH; deeper elements share the deepest frame
 * (HTML_F_DEEP). Everything else that depends on nesting (inside
 * script/style, inside an anchor, hidden beyond the frame limit) is a
 * "started at depth d" marker, so it works at any depth without a frame.
 * libxml2's SAX stream is not quite balanced: a start tag whose '>' never
 * comes is popped from its stack without an endElement. So each event is
 * checked against the parser's own stack depth (nameNr), and an end whose
 * name does not match the top frame pops back to the nearest frame of that
 * name or is ignored: the mirror never drifts, underflows, or pops below the
 * root.
 *
 * Behaviour decisions:
 * - No text from script, style, title (the Subject carries it), template, or
 *   comments. Text directly in <head> is kept: browsers show it, and libxml2
 *   wraps it in an implied <p>.
 * - <img alt> is visible text, spaced off from its neighbours: mail clients
 *   block images by default, so the alt text is what the reader sees. It goes
 *   to hidden text when the image itself is hidden, and into the anchor text
 *   of an enclosing link. <area alt> is not text (it is never displayed).
 * - Whitespace (ASCII, NBSP and the Unicode space characters) collapses to one
 *   space; a block boundary gives one newline; no leading or trailing
 *   whitespace. Hidden or skipped text between two visible words adds no
 *   space, because a reader sees "Via<span hidden>x</span>gra" as "Viagra".
 * - Hidden: display:none, the hidden attribute and opacity 0 (no descendant
 *   can undo them); visibility:hidden/collapse (undone by visibility:visible);
 *   a computed font size below 2px (CSS units are resolved against the parent
 *   size, default 16px; unitless sizes are px as in quirks mode;
 *   font:0/0 a counts; <font size=0> is 0px, other <font size> values map to
 *   the browser's 10..48px); color:transparent; a text colour equal to the
 *   effective background colour. Colours come from style color /
 *   background-color / background, <font color>, <body text> and bgcolor on
 *   any element; the default is black on white. A background image or
 *   gradient makes the background unknown, so light text over a picture is
 *   not called hidden. Styles in <style> sheets (class selectors) are not
 *   evaluated.
 * - Beyond HTML_MAX_DEPTH, an element's own style is computed against the
 *   deepest frame; if it hides text, everything inside it stays hidden until
 *   it closes (a deeper element cannot reveal it again).
 * - Links, in document order, at most HTML_MAX_LINKS: a/area href, img src,
 *   iframe/frame src, form action, link/base href, embed src, object data,
 *   input src (type=image), and the background attribute of any element.
 *   Empty values are not links. Tag strings are static or arena-owned.
 *   n_images counts every <img> element.
 * - Input that is not valid UTF-8 or contains NUL bytes is repaired first
 *   (U+FFFD, NUL as space) and flagged HTML_F_BROKEN: libxml2 would otherwise
 *   stop at a NUL or re-decode the rest of the document as Latin-1.
 * - libxml2 has error-recovery paths whose cost is the depth of its element
 *   stack (a stray end tag is searched for in the whole stack), so 100,000
 *   open elements followed by 100,000 stray end tags would take quadratic
 *   time. Every reported error is charged the current stack depth; past a
 *   budget linear in the input size the parse stops and what was extracted
 *   so far is returned (HTML_F_BROKEN | HTML_F_DEEP).
 *
 * Thread-safety: all state lives in one call's struct html_state and the
 * parser context; errors go to a per-context structured handler, never to
 * libxml2's global handlers or stderr.
 */
#include "message/html.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/utf8.h"
#include "core/xalloc.h"

#include <libxml/HTMLparser.h>
#include <libxml/encoding.h>
#include <libxml/parserInternals.h>
#include <libxml/parser.h>
#include <libxml/xmlerror.h>

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HTML_ANCHOR_TEXT_MAX_BYTES 1024
#define HTML_DEFAULT_FONT_PX       16.0f
#define HTML_HIDDEN_FONT_PX        2.0f
#define HTML_MAX_FONT_PX           1e6 /* clamp, so a huge number never overflows a float */
#define HTML_HIDDEN_OPACITY        0.01

/* Colours are 0xRRGGBB; these values lie outside that range. */
#define HTML_COLOR_NONE        0xFFFFFFFFu /* not a colour we understand */
#define HTML_COLOR_TRANSPARENT 0x01000000u
#define HTML_COLOR_UNKNOWN     0x02000000u /* background image or gradient: compares to nothing */

/* Error-recovery work allowed: base + per input byte (see the file comment). */
#define HTML_ERROR_WORK_BASE     10000000u
#define HTML_ERROR_WORK_PER_BYTE 16u

enum html_elem_kind {
    HTML_E_BLOCK = 0x001,  /* newline before and after */
    HTML_E_SKIP = 0x002,   /* content is never text */
    HTML_E_ANCHOR = 0x004, /* link whose text is collected */
    HTML_E_AREA = 0x008,   /* link with empty text */
    HTML_E_IMAGE = 0x010,
    HTML_E_SCRIPT = 0x020,
    HTML_E_FORM = 0x040,
    HTML_E_IFRAME = 0x080,
    HTML_E_FONT = 0x100, /* color and size attributes apply */
    HTML_E_BODY = 0x200, /* text attribute applies */
};

struct html_elem {
    const char *name;
    const char *url_attr; /* attribute that holds a link, or NULL */
    unsigned kind;        /* HTML_E_* */
};

/* Sorted by name (strcmp order) for bsearch. */
static const struct html_elem html_elems[] = {
    {"a", "href", HTML_E_ANCHOR},
    {"address", NULL, HTML_E_BLOCK},
    {"area", "href", HTML_E_AREA},
    {"article", NULL, HTML_E_BLOCK},
    {"aside", NULL, HTML_E_BLOCK},
    {"base", "href", 0},
    {"blockquote", NULL, HTML_E_BLOCK},
    {"body", NULL, HTML_E_BODY},
    {"br", NULL, HTML_E_BLOCK},
    {"caption", NULL, HTML_E_BLOCK},
    {"center", NULL, HTML_E_BLOCK},
    {"dd", NULL, HTML_E_BLOCK},
    {"details", NULL, HTML_E_BLOCK},
    {"dialog", NULL, HTML_E_BLOCK},
    {"dir", NULL, HTML_E_BLOCK},
    {"div", NULL, HTML_E_BLOCK},
    {"dl", NULL, HTML_E_BLOCK},
    {"dt", NULL, HTML_E_BLOCK},
    {"embed", "src", 0},
    {"fieldset", NULL, HTML_E_BLOCK},
    {"figcaption", NULL, HTML_E_BLOCK},
    {"figure", NULL, HTML_E_BLOCK},
    {"font", NULL, HTML_E_FONT},
    {"footer", NULL, HTML_E_BLOCK},
    {"form", "action", HTML_E_BLOCK | HTML_E_FORM},
    {"frame", "src", HTML_E_IFRAME},
    {"frameset", NULL, HTML_E_BLOCK},
    {"h1", NULL, HTML_E_BLOCK},
    {"h2", NULL, HTML_E_BLOCK},
    {"h3", NULL, HTML_E_BLOCK},
    {"h4", NULL, HTML_E_BLOCK},
    {"h5", NULL, HTML_E_BLOCK},
    {"h6", NULL, HTML_E_BLOCK},
    {"header", NULL, HTML_E_BLOCK},
    {"hgroup", NULL, HTML_E_BLOCK},
    {"hr", NULL, HTML_E_BLOCK},
    {"iframe", "src", HTML_E_IFRAME},
    {"img", "src", HTML_E_IMAGE},
    {"input", "src", 0},
    {"legend", NULL, HTML_E_BLOCK},
    {"li", NULL, HTML_E_BLOCK},
    {"link", "href", 0},
    {"listing", NULL, HTML_E_BLOCK},
    {"main", NULL, HTML_E_BLOCK},
    {"menu", NULL, HTML_E_BLOCK},
    {"nav", NULL, HTML_E_BLOCK},
    {"object", "data", 0},
    {"ol", NULL, HTML_E_BLOCK},
    {"option", NULL, HTML_E_BLOCK},
    {"p", NULL, HTML_E_BLOCK},
    {"plaintext", NULL, HTML_E_BLOCK},
    {"pre", NULL, HTML_E_BLOCK},
    {"script", NULL, HTML_E_SKIP | HTML_E_SCRIPT},
    {"section", NULL, HTML_E_BLOCK},
    {"style", NULL, HTML_E_SKIP},
    {"summary", NULL, HTML_E_BLOCK},
    {"table", NULL, HTML_E_BLOCK},
    {"tbody", NULL, HTML_E_BLOCK},
    {"td", NULL, HTML_E_BLOCK},
    {"template", NULL, HTML_E_SKIP},
    {"tfoot", NULL, HTML_E_BLOCK},
    {"th", NULL, HTML_E_BLOCK},
    {"thead", NULL, HTML_E_BLOCK},
    {"title", NULL, HTML_E_SKIP},
    {"tr", NULL, HTML_E_BLOCK},
    {"ul", NULL, HTML_E_BLOCK},
    {"xmp", NULL, HTML_E_BLOCK},
};

struct html_named_color {
    const char *name;
    uint32_t rgb;
};

static const struct html_named_color html_named_colors[] = {
    {"aqua", 0x00FFFF},
    {"black", 0x000000},
    {"blue", 0x0000FF},
    {"cyan", 0x00FFFF},
    {"darkgray", 0xA9A9A9},
    {"darkgrey", 0xA9A9A9},
    {"fuchsia", 0xFF00FF},
    {"gray", 0x808080},
    {"green", 0x008000},
    {"grey", 0x808080},
    {"lightgray", 0xD3D3D3},
    {"lightgrey", 0xD3D3D3},
    {"lime", 0x00FF00},
    {"magenta", 0xFF00FF},
    {"maroon", 0x800000},
    {"navy", 0x000080},
    {"olive", 0x808000},
    {"orange", 0xFFA500},
    {"purple", 0x800080},
    {"red", 0xFF0000},
    {"silver", 0xC0C0C0},
    {"teal", 0x008080},
    {"transparent", HTML_COLOR_TRANSPARENT},
    {"white", 0xFFFFFF},
    {"whitesmoke", 0xF5F5F5},
    {"yellow", 0xFFFF00},
};

enum html_sep { HTML_SEP_NONE, HTML_SEP_SPACE, HTML_SEP_NEWLINE };

/* A text output: the separator owed before the next word is written lazily,
 * so runs of whitespace and block boundaries collapse and nothing trails. */
struct html_out {
    struct buf b;
    enum html_sep pending;
};

/* Computed style of one open element (inherited by its descendants). */
struct html_frame {
    const xmlChar *name; /* owned by the parser's dictionary (or static); NULL for the root */
    uint32_t color;      /* text colour, or HTML_COLOR_TRANSPARENT */
    uint32_t bg;         /* effective background, or HTML_COLOR_UNKNOWN */
    float font_px;
    bool invisible;  /* display:none, hidden, opacity:0: no descendant can undo it */
    bool vis_hidden; /* visibility:hidden: visibility:visible undoes it */
};

#define HTML_ELEM_CACHE_SIZE 64

struct html_elem_cache {
    const xmlChar *name;
    const struct html_elem *elem;
};

struct html_state {
    struct arena *arena;
    htmlParserCtxtPtr ctxt;
    struct html_out text;
    struct html_out hidden;
    struct html_out anchor;
    size_t depth;            /* elements open, as reported by SAX */
    size_t skip_at;          /* depth of the outermost open script/style/title, 0: none */
    size_t deep_hidden_at;   /* beyond HTML_MAX_DEPTH: depth where hiding began, 0: none */
    size_t anchor_at;        /* depth of the anchor collecting text, 0: none */
    size_t anchor_link;      /* its index in links */
    struct html_link *links; /* malloc'd; adopted by the arena at the end */
    size_t n_links;
    size_t cap_links;
    size_t n_images;
    unsigned flags;
    uint64_t error_work;
    uint64_t error_budget;
    bool stopped;
    struct html_elem_cache elem_cache[HTML_ELEM_CACHE_SIZE];
    struct html_frame frames[HTML_MAX_DEPTH + 1]; /* [0] is the document's defaults */
};

/* ---- small string helpers (ASCII, locale-independent) ---- */

static int html_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static bool html_is_css_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* True if s[0..n) equals the lowercase literal lit, ignoring ASCII case. */
static bool html_ci_eq(const char *s, size_t n, const char *lit)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (lit[i] == '\0' || html_lower((unsigned char)s[i]) != lit[i]) return false;
    return lit[n] == '\0';
}

static bool html_ci_prefix(const char *s, size_t n, const char *lit)
{
    size_t i;
    for (i = 0; lit[i]; i++)
        if (i >= n || html_lower((unsigned char)s[i]) != lit[i]) return false;
    return true;
}

static void html_trim(const char **s, size_t *n)
{
    while (*n > 0 && html_is_css_space(**s))
        (*s)++, (*n)--;
    while (*n > 0 && html_is_css_space((*s)[*n - 1]))
        (*n)--;
}

static int html_hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = (char)html_lower((unsigned char)c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/*
 * Parses a signed decimal number ("12", "-0.5", ".5") at the start of
 * s[0..n) into *out. Returns the bytes used, 0 if there is no number. Unlike
 * strtod it ignores the locale and needs no NUL terminator.
 */
static size_t html_parse_number(const char *s, size_t n, double *out)
{
    size_t i = 0;
    double v = 0, scale = 1;
    bool neg = false, digits = false;

    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        digits = true;
        if (v < 1e12) v = v * 10 + (s[i] - '0');
    }
    if (i < n && s[i] == '.') {
        size_t frac_digits = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            digits = true;
            if (frac_digits++ < 12) {
                scale /= 10;
                v += (s[i] - '0') * scale;
            }
        }
    }
    if (!digits) return 0;
    *out = neg ? -v : v;
    return i;
}

/*
 * Splits s[0..n) into whitespace/comma separated tokens, keeping anything in
 * parentheses or quotes in one token ("rgb(1, 2, 3)", "'Times New Roman'").
 * Returns false when no token is left.
 */
static bool html_next_token(const char **s, const char *end, const char **tok, size_t *tok_len)
{
    const char *p = *s;
    int paren = 0;
    char quote = 0;

    while (p < end && (html_is_css_space(*p) || *p == ','))
        p++;
    if (p == end) return false;
    *tok = p;
    for (; p < end; p++) {
        if (quote) {
            if (*p == quote) quote = 0;
        } else if (*p == '"' || *p == '\'') {
            quote = *p;
        } else if (*p == '(') {
            paren++;
        } else if (*p == ')') {
            if (paren) paren--;
        } else if (!paren && (html_is_css_space(*p) || *p == ',')) {
            break;
        }
    }
    *tok_len = (size_t)(p - *tok);
    *s = p;
    return true;
}

/* ---- colours and sizes ---- */

static uint32_t html_parse_hex_color(const char *s, size_t n)
{
    uint32_t v = 0;
    size_t i;

    for (i = 0; i < n; i++)
        if (html_hex_digit(s[i]) < 0) return HTML_COLOR_NONE;
    switch (n) {
    case 3:
    case 4: /* #rgb, #rgba: each digit doubled */
        if (n == 4 && html_hex_digit(s[3]) == 0) return HTML_COLOR_TRANSPARENT;
        for (i = 0; i < 3; i++)
            v = (v << 8) | (uint32_t)(html_hex_digit(s[i]) * 17);
        return v;
    case 6:
    case 8: /* #rrggbb, #rrggbbaa */
        if (n == 8 && html_hex_digit(s[6]) == 0 && html_hex_digit(s[7]) == 0)
            return HTML_COLOR_TRANSPARENT;
        for (i = 0; i < 6; i++)
            v = (v << 4) | (uint32_t)html_hex_digit(s[i]);
        return v;
    default:
        return HTML_COLOR_NONE;
    }
}

/* rgb(r, g, b), rgba(r, g, b, a), rgb(r g b / a); components as numbers or percentages. */
static uint32_t html_parse_rgb(const char *s, size_t n)
{
    const char *p = memchr(s, '(', n), *end = s + n;
    double comp[4];
    size_t k = 0;
    uint32_t v = 0;

    if (p == NULL) return HTML_COLOR_NONE;
    p++;
    while (p < end && *p != ')' && k < 4) {
        size_t used;
        while (p < end && (html_is_css_space(*p) || *p == ',' || *p == '/'))
            p++;
        used = html_parse_number(p, (size_t)(end - p), &comp[k]);
        if (used == 0) return HTML_COLOR_NONE;
        p += used;
        if (p < end && *p == '%') {
            comp[k] = k < 3 ? comp[k] * 255.0 / 100.0 : comp[k] / 100.0;
            p++;
        }
        k++;
        while (p < end && html_is_css_space(*p))
            p++;
    }
    if (k < 3) return HTML_COLOR_NONE;
    if (k == 4 && comp[3] <= 0) return HTML_COLOR_TRANSPARENT;
    for (size_t i = 0; i < 3; i++) {
        double c = comp[i] < 0 ? 0 : comp[i] > 255 ? 255 : comp[i];
        v = (v << 8) | (uint32_t)(c + 0.5);
    }
    return v;
}

/*
 * A CSS or HTML-attribute colour: #rgb, #rrggbb (with optional alpha), the
 * same digits without '#' (HTML attributes and quirks-mode CSS accept them),
 * rgb()/rgba(), or a common name. HTML_COLOR_NONE if not understood.
 */
static uint32_t html_parse_color(const char *s, size_t n)
{
    size_t i;

    html_trim(&s, &n);
    if (n == 0) return HTML_COLOR_NONE;
    if (s[0] == '#') return html_parse_hex_color(s + 1, n - 1);
    if (html_ci_prefix(s, n, "rgb")) return html_parse_rgb(s, n);
    for (i = 0; i < sizeof html_named_colors / sizeof html_named_colors[0]; i++)
        if (html_ci_eq(s, n, html_named_colors[i].name)) return html_named_colors[i].rgb;
    /* Hex digits without '#' (HTML attributes, quirks-mode CSS); NONE if not hex. */
    if (n == 3 || n == 6) return html_parse_hex_color(s, n);
    return HTML_COLOR_NONE;
}

/* A CSS font-size in px, resolved against parent_px; negative if not understood. */
static double html_parse_font_size(const char *s, size_t n, double parent_px)
{
    static const struct {
        const char *name;
        double px;
    } keywords[] = {
        {"xx-small", 9}, {"x-small", 10}, {"small", 13},    {"medium", 16},
        {"large", 18},   {"x-large", 24}, {"xx-large", 32}, {"xxx-large", 48},
    };
    double v, px;
    size_t used, i;
    const char *unit;
    size_t unit_len;

    html_trim(&s, &n);
    for (i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
        if (html_ci_eq(s, n, keywords[i].name)) return keywords[i].px;
    if (html_ci_eq(s, n, "smaller")) return parent_px / 1.2;
    if (html_ci_eq(s, n, "larger")) return parent_px * 1.2;
    used = html_parse_number(s, n, &v);
    if (used == 0 || v < 0) return -1;
    unit = s + used;
    unit_len = n - used;
    if (unit_len == 0 || html_ci_eq(unit, unit_len, "px"))
        px = v; /* unitless: quirks mode */
    else if (html_ci_eq(unit, unit_len, "pt"))
        px = v * 4.0 / 3.0;
    else if (html_ci_eq(unit, unit_len, "pc"))
        px = v * 16.0;
    else if (html_ci_eq(unit, unit_len, "in"))
        px = v * 96.0;
    else if (html_ci_eq(unit, unit_len, "cm"))
        px = v * 96.0 / 2.54;
    else if (html_ci_eq(unit, unit_len, "mm"))
        px = v * 96.0 / 25.4;
    else if (html_ci_eq(unit, unit_len, "q"))
        px = v * 96.0 / 101.6;
    else if (html_ci_eq(unit, unit_len, "em"))
        px = v * parent_px;
    else if (html_ci_eq(unit, unit_len, "rem"))
        px = v * HTML_DEFAULT_FONT_PX;
    else if (html_ci_eq(unit, unit_len, "ex") || html_ci_eq(unit, unit_len, "ch"))
        px = v * parent_px / 2.0;
    else if (html_ci_eq(unit, unit_len, "%"))
        px = v * parent_px / 100.0;
    else if (v == 0)
        px = 0; /* 0vw, 0vh, ...: zero whatever the viewport */
    else
        return -1;
    return px > HTML_MAX_FONT_PX ? HTML_MAX_FONT_PX : px;
}

/* The size in a font shorthand ("bold 12px/1.2 Arial", "0/0 a"); negative if none. */
static double html_parse_font_shorthand(const char *s, size_t n, double parent_px)
{
    const char *p = s, *end = s + n, *tok;
    size_t len;

    while (html_next_token(&p, end, &tok, &len)) {
        const char *slash = memchr(tok, '/', len);
        double v, px;
        size_t used;

        if (slash) len = (size_t)(slash - tok);
        used = html_parse_number(tok, len, &v);
        /* A bare number without a '/' is a font-weight (700), unless it is 0. */
        if (used > 0 && used == len && !slash && v != 0) continue;
        px = html_parse_font_size(tok, len, parent_px);
        if (px >= 0) return px;
    }
    return -1;
}

/* Pixel size for <font size=N>: 1..7, or relative +N/-N to 3; 0 is taken as hidden. */
static double html_parse_font_attr(const char *s)
{
    static const double px_by_size[8] = {0, 10, 13, 16, 18, 24, 32, 48};
    size_t n = strlen(s), used;
    double v;
    int size;

    html_trim(&s, &n);
    used = html_parse_number(s, n, &v);
    if (used == 0) return -1;
    if (s[0] == '+' || s[0] == '-')
        v += 3;
    else if (v == 0)
        return 0;
    size = v < 1 ? 1 : v > 7 ? 7 : (int)v;
    return px_by_size[size];
}

/* ---- style frames ---- */

static bool html_frame_hidden(const struct html_frame *f)
{
    return f->invisible || f->vis_hidden || f->font_px < HTML_HIDDEN_FONT_PX ||
           f->color == HTML_COLOR_TRANSPARENT || f->color == f->bg;
}

static void html_set_bg(struct html_frame *f, uint32_t c)
{
    /* A transparent background shows the parent's. */
    if (c != HTML_COLOR_NONE && c != HTML_COLOR_TRANSPARENT) f->bg = c;
}

static void html_apply_background(struct html_frame *f, const char *v, size_t n)
{
    const char *p = v, *end = v + n, *tok;
    size_t len;
    uint32_t color = HTML_COLOR_NONE;

    while (html_next_token(&p, end, &tok, &len)) {
        if (memchr(tok, '(', len) != NULL && !html_ci_prefix(tok, len, "rgb")) {
            f->bg = HTML_COLOR_UNKNOWN; /* url(), a gradient: an image over the colour */
            return;
        }
        if (color == HTML_COLOR_NONE) color = html_parse_color(tok, len);
    }
    html_set_bg(f, color);
}

static void html_apply_declaration(struct html_frame *f, double parent_px, const char *name,
                                   size_t name_len, const char *v, size_t n)
{
    double px, num;

    if (html_ci_eq(name, name_len, "color")) {
        uint32_t c = html_parse_color(v, n);
        if (c != HTML_COLOR_NONE) f->color = c;
    } else if (html_ci_eq(name, name_len, "background-color")) {
        html_set_bg(f, html_parse_color(v, n));
    } else if (html_ci_eq(name, name_len, "background")) {
        html_apply_background(f, v, n);
    } else if (html_ci_eq(name, name_len, "background-image")) {
        if (!html_ci_eq(v, n, "none")) f->bg = HTML_COLOR_UNKNOWN;
    } else if (html_ci_eq(name, name_len, "font-size")) {
        px = html_parse_font_size(v, n, parent_px);
        if (px >= 0) f->font_px = (float)px;
    } else if (html_ci_eq(name, name_len, "font")) {
        px = html_parse_font_shorthand(v, n, parent_px);
        if (px >= 0) f->font_px = (float)px;
    } else if (html_ci_eq(name, name_len, "display")) {
        if (html_ci_eq(v, n, "none")) f->invisible = true;
    } else if (html_ci_eq(name, name_len, "visibility")) {
        if (html_ci_eq(v, n, "hidden") || html_ci_eq(v, n, "collapse"))
            f->vis_hidden = true;
        else if (html_ci_eq(v, n, "visible"))
            f->vis_hidden = false;
    } else if (html_ci_eq(name, name_len, "opacity")) {
        size_t used = html_parse_number(v, n, &num);
        if (used > 0) {
            if (used < n && v[used] == '%') num /= 100.0;
            if (num < HTML_HIDDEN_OPACITY) f->invisible = true;
        }
    }
}

/* Applies each "name: value" declaration of a style attribute, in order. */
static void html_apply_style(struct html_frame *f, double parent_px, const char *s)
{
    const char *p = s;

    while (*p) {
        const char *name, *value;
        size_t name_len, value_len;
        int paren = 0;
        char quote = 0;

        while (*p == ';' || html_is_css_space(*p))
            p++;
        if (*p == '\0') break;
        name = p;
        while (*p && *p != ':' && *p != ';')
            p++;
        if (*p != ':') continue;
        name_len = (size_t)(p - name);
        value = ++p;
        for (; *p; p++) {
            if (quote) {
                if (*p == quote) quote = 0;
            } else if (*p == '"' || *p == '\'') {
                quote = *p;
            } else if (*p == '(') {
                paren++;
            } else if (*p == ')') {
                if (paren) paren--;
            } else if (*p == ';' && !paren) {
                break;
            }
        }
        value_len = (size_t)(p - value);
        html_trim(&name, &name_len);
        html_trim(&value, &value_len);
        if (value_len >= 10 && html_ci_eq(value + value_len - 10, 10, "!important")) {
            value_len -= 10;
            html_trim(&value, &value_len);
        }
        html_apply_declaration(f, parent_px, name, name_len, value, value_len);
    }
}

/* The attributes of one start tag that matter to us, found in one pass. */
struct html_attrs {
    const char *style;
    const char *bgcolor;
    const char *background;
    const char *color; /* <font color> */
    const char *size;  /* <font size> */
    const char *text;  /* <body text> */
    const char *alt;   /* <img alt> */
    const char *url;   /* the element's link attribute (html_elem.url_attr) */
    bool hidden;
};

/*
 * libxml2 lowercases attribute names and drops repeated ones, so a switch on
 * the first byte and one strcmp find each; a NULL value is an attribute
 * written without "=".
 */
static void html_collect_attrs(const struct html_elem *e, const xmlChar **atts,
                               struct html_attrs *out)
{
    const char *url_attr = e ? e->url_attr : NULL;
    size_t i;

    memset(out, 0, sizeof *out);
    if (atts == NULL) return;
    for (i = 0; atts[i] != NULL; i += 2) {
        const char *k = (const char *)atts[i], *v = (const char *)atts[i + 1];

        if (k[0] == 'h' && strcmp(k, "hidden") == 0) out->hidden = true;
        if (v == NULL) continue;
        if (url_attr && k[0] == url_attr[0] && strcmp(k, url_attr) == 0) out->url = v;
        switch (k[0]) {
        case 'a':
            if (strcmp(k, "alt") == 0) out->alt = v;
            break;
        case 'b':
            if (strcmp(k, "bgcolor") == 0)
                out->bgcolor = v;
            else if (strcmp(k, "background") == 0)
                out->background = v;
            break;
        case 'c':
            if (strcmp(k, "color") == 0) out->color = v;
            break;
        case 's':
            if (strcmp(k, "style") == 0)
                out->style = v;
            else if (strcmp(k, "size") == 0)
                out->size = v;
            break;
        case 't':
            if (strcmp(k, "text") == 0) out->text = v;
            break;
        default:
            break;
        }
    }
}

/*
 * Computes an element's frame from its parent's (already copied into *f) and
 * its attributes: presentational attributes first, then the style attribute,
 * which overrides them as in a browser.
 */
static void html_apply_attrs(struct html_frame *f, unsigned kind, const struct html_attrs *at)
{
    double parent_px = f->font_px;
    uint32_t c;

    if (at->hidden) f->invisible = true;
    if (at->bgcolor) html_set_bg(f, html_parse_color(at->bgcolor, strlen(at->bgcolor)));
    if (at->background && at->background[0] != '\0') f->bg = HTML_COLOR_UNKNOWN;
    if ((kind & HTML_E_FONT) && at->color) {
        c = html_parse_color(at->color, strlen(at->color));
        if (c != HTML_COLOR_NONE) f->color = c;
    }
    if ((kind & HTML_E_FONT) && at->size) {
        double px = html_parse_font_attr(at->size);
        if (px >= 0) f->font_px = (float)px;
    }
    if ((kind & HTML_E_BODY) && at->text) {
        c = html_parse_color(at->text, strlen(at->text));
        if (c != HTML_COLOR_NONE) f->color = c;
    }
    if (at->style) html_apply_style(f, parent_px, at->style);
}

/* ---- text output ---- */

static void html_out_sep(struct html_out *o, enum html_sep sep)
{
    if (sep > o->pending) o->pending = sep;
}

static void html_out_word(struct html_out *o, const char *s, size_t n)
{
    if (o->pending != HTML_SEP_NONE && o->b.len > 0)
        buf_append_char(&o->b, o->pending == HTML_SEP_NEWLINE ? '\n' : ' ');
    o->pending = HTML_SEP_NONE;
    buf_append(&o->b, s, n);
}

/* Length of the whitespace character at p (ASCII, NBSP, Unicode spaces), 0 if none. */
static size_t html_space_len(const unsigned char *p, const unsigned char *end)
{
    size_t avail = (size_t)(end - p);

    switch (p[0]) {
    case ' ':
    case '\t':
    case '\n':
    case '\r':
    case '\f':
    case '\v':
        return 1;
    case 0xC2: /* U+0085 NEL, U+00A0 NBSP */
        return avail >= 2 && (p[1] == 0xA0 || p[1] == 0x85) ? 2 : 0;
    case 0xE2: /* U+2000..U+200A, U+2028, U+2029, U+202F, U+205F */
        if (avail < 3) return 0;
        if (p[1] == 0x80 &&
            ((p[2] >= 0x80 && p[2] <= 0x8A) || p[2] == 0xA8 || p[2] == 0xA9 || p[2] == 0xAF))
            return 3;
        return p[1] == 0x81 && p[2] == 0x9F ? 3 : 0;
    case 0xE3: /* U+3000 ideographic space */
        return avail >= 3 && p[1] == 0x80 && p[2] == 0x80 ? 3 : 0;
    default:
        return 0;
    }
}

static bool html_may_be_space(unsigned char c)
{
    return c <= ' ' || c == 0xC2 || c == 0xE2 || c == 0xE3;
}

/* Sends text to the visible or hidden output (and the open anchor), word by word. */
static void html_emit_text(struct html_state *st, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n, *word = NULL;
    const struct html_frame *f;
    struct html_out *out;
    bool hidden, in_anchor;

    if (st->skip_at != 0 || n == 0) return;
    f = &st->frames[st->depth <= HTML_MAX_DEPTH ? st->depth : HTML_MAX_DEPTH];
    hidden = html_frame_hidden(f) || st->deep_hidden_at != 0;
    out = hidden ? &st->hidden : &st->text;
    in_anchor = !hidden && st->anchor_at != 0;
    while (p < end) {
        size_t sp = html_may_be_space(*p) ? html_space_len(p, end) : 0;
        if (sp == 0) {
            if (word == NULL) word = p;
            p++;
            continue;
        }
        if (word) {
            html_out_word(out, (const char *)word, (size_t)(p - word));
            if (in_anchor) html_out_word(&st->anchor, (const char *)word, (size_t)(p - word));
            word = NULL;
        }
        html_out_sep(out, HTML_SEP_SPACE);
        if (in_anchor) html_out_sep(&st->anchor, HTML_SEP_SPACE);
        p += sp;
    }
    if (word) {
        html_out_word(out, (const char *)word, (size_t)(p - word));
        if (in_anchor) html_out_word(&st->anchor, (const char *)word, (size_t)(p - word));
    }
    /* Hidden fragments on either side of visible text are not one word. */
    if (!hidden) html_out_sep(&st->hidden, HTML_SEP_SPACE);
}

/* A block boundary: a newline in both outputs, a space in anchor text. */
static void html_block_break(struct html_state *st)
{
    html_out_sep(&st->text, HTML_SEP_NEWLINE);
    html_out_sep(&st->hidden, HTML_SEP_NEWLINE);
    if (st->anchor_at) html_out_sep(&st->anchor, HTML_SEP_SPACE);
}

/* An inline boundary that a reader sees as a gap (around alt text). */
static void html_inline_break(struct html_state *st)
{
    html_out_sep(&st->text, HTML_SEP_SPACE);
    html_out_sep(&st->hidden, HTML_SEP_SPACE);
    if (st->anchor_at) html_out_sep(&st->anchor, HTML_SEP_SPACE);
}

/*
 * Drops what a byte limit may have left at the end of b: half of a UTF-8
 * sequence, or a separator whose word did not fit.
 */
static void html_buf_trim_tail(struct buf *b)
{
    size_t len = b->len, k;

    if (len == 0) return;
    k = len - 1;
    while (k > 0 && len - k < 4 && ((unsigned char)b->data[k] & 0xC0) == 0x80)
        k--;
    if ((unsigned char)b->data[k] >= 0x80 &&
        utf8_seq_len((const unsigned char *)b->data + k, len - k) != len - k)
        len = k;
    while (len > 0 && (b->data[len - 1] == ' ' || b->data[len - 1] == '\n'))
        len--;
    b->len = len;
    b->data[len] = '\0';
}

/*
 * True if s[0..n) is valid UTF-8 without NUL bytes. Runs of ASCII are checked
 * eight bytes at a time: this runs over every HTML part before parsing.
 */
static bool html_utf8_clean(const char *s, size_t n)
{
    const uint64_t lo = 0x0101010101010101ull, hi = 0x8080808080808080ull;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;

    while (p < end) {
        size_t len;
        if (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, sizeof w);
            /* No byte with the high bit set, and no zero byte. */
            if (((w & hi) | ((w - lo) & ~w & hi)) == 0) {
                p += 8;
                continue;
            }
        }
        if (*p == 0) return false;
        if (*p < 0x80) {
            p++;
            continue;
        }
        len = utf8_seq_len(p, (size_t)(end - p));
        if (len == 0) return false;
        p += len;
    }
    return true;
}

/* Hands an output's text to the arena; guaranteed valid UTF-8 and never NULL. */
static const char *html_out_finish(struct arena *a, struct html_out *o, size_t *len)
{
    char *s;

    /* buf_reserve() on an empty buffer leaves it unterminated; appending nothing fixes that. */
    buf_append(&o->b, "", 0);
    html_buf_trim_tail(&o->b);
    if (!html_utf8_clean(o->b.data, o->b.len)) {
        struct buf fixed = {0};
        utf8_repair(&fixed, o->b.data, o->b.len);
        buf_free(&o->b);
        o->b = fixed;
    }
    *len = o->b.len;
    s = buf_release(&o->b);
    arena_adopt(a, s);
    return s;
}

static size_t html_count_nonspace(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    size_t count = 0;

    while (p < end) {
        size_t sp = html_may_be_space(*p) ? html_space_len(p, end) : 0;
        if (sp) {
            p += sp;
            continue;
        }
        if ((*p & 0xC0) != 0x80) count++;
        p++;
    }
    return count;
}

/* ---- links ---- */

/* Appends a link; returns its index, or -1 if the value is empty or the list is full. */
static long html_link_add(struct html_state *st, const char *tag, const char *value)
{
    struct html_link *l;
    size_t n = strlen(value);

    while (n > 0 && html_is_css_space(*value))
        value++, n--;
    while (n > 0 && html_is_css_space(value[n - 1]))
        n--;
    if (n == 0 || st->n_links >= HTML_MAX_LINKS) return -1;
    if (st->n_links == st->cap_links) {
        st->cap_links = st->cap_links ? st->cap_links * 2 : 16;
        st->links = xrealloc(st->links, st->cap_links * sizeof *st->links);
    }
    l = &st->links[st->n_links];
    l->tag = tag;
    if (html_utf8_clean(value, n)) {
        l->url = arena_strndup(st->arena, value, n);
    } else {
        struct buf fixed = {0};
        utf8_repair(&fixed, value, n);
        l->url = arena_strndup(st->arena, fixed.data, fixed.len);
        buf_free(&fixed);
    }
    l->text = NULL;
    return (long)st->n_links++;
}

static void html_anchor_finish(struct html_state *st)
{
    struct buf *b = &st->anchor.b;

    html_buf_trim_tail(b);
    st->links[st->anchor_link].text = arena_strndup(st->arena, b->data ? b->data : "", b->len);
    buf_clear(b);
    st->anchor.pending = HTML_SEP_NONE;
    st->anchor_at = 0;
}

/* ---- SAX callbacks ---- */

static int html_elem_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct html_elem *)elem)->name);
}

/*
 * The table entry for an element name, or NULL. libxml2 interns names in its
 * dictionary, so one name is one pointer for the whole parse and a small
 * cache keyed by pointer saves the binary search for all but the first.
 */
static const struct html_elem *html_elem_find(struct html_state *st, const xmlChar *name)
{
    struct html_elem_cache *c = &st->elem_cache[((uintptr_t)name >> 3) % HTML_ELEM_CACHE_SIZE];

    if (c->name != name) {
        c->name = name;
        c->elem = bsearch(name, html_elems, sizeof html_elems / sizeof html_elems[0],
                          sizeof html_elems[0], html_elem_cmp);
    }
    return c->elem;
}

static bool html_name_eq(const xmlChar *a, const xmlChar *b)
{
    return a == b || (a != NULL && b != NULL && strcmp((const char *)a, (const char *)b) == 0);
}

static void html_start_links(struct html_state *st, const struct html_elem *e, const xmlChar *name,
                             const struct html_attrs *at)
{
    const char *tag = e ? e->name : NULL;

    /* Anchors do not nest: a new one ends the text of an open one. */
    if (e && (e->kind & HTML_E_ANCHOR) && st->anchor_at) html_anchor_finish(st);
    if (at->url) {
        long idx = html_link_add(st, tag, at->url);
        if (idx >= 0 && (e->kind & (HTML_E_ANCHOR | HTML_E_AREA))) {
            st->links[idx].text = "";
            if (e->kind & HTML_E_ANCHOR) {
                st->anchor_at = st->depth;
                st->anchor_link = (size_t)idx;
            }
        }
    }
    if (at->background) {
        if (tag == NULL) tag = arena_strdup(st->arena, (const char *)name);
        html_link_add(st, tag, at->background);
    }
}

/*
 * Makes depth d the innermost open element: what was opened deeper is
 * closed. libxml2 sometimes drops an element from its stack without an
 * endElement (a start tag whose '>' never comes); its stack depth, nameNr,
 * is then below ours and this catches up.
 */
static void html_close_to(struct html_state *st, size_t d)
{
    st->depth = d;
    if (st->skip_at > d) st->skip_at = 0;
    if (st->deep_hidden_at > d) st->deep_hidden_at = 0;
    if (st->anchor_at > d) html_anchor_finish(st);
}

static void html_sax_start(void *ctx, const xmlChar *name, const xmlChar **atts)
{
    struct html_state *st = ctx;
    const struct html_elem *e = html_elem_find(st, name);
    unsigned kind = e ? e->kind : 0;
    struct html_attrs at;

    if (st->stopped) return;
    html_collect_attrs(e, atts, &at);
    /* libxml2 has pushed this element already: its parent is at nameNr - 1. */
    if (st->ctxt->nameNr > 0 && (size_t)st->ctxt->nameNr <= st->depth)
        html_close_to(st, (size_t)st->ctxt->nameNr - 1);
    st->depth++;
    if (kind & HTML_E_BLOCK) html_block_break(st);
    if (st->depth <= HTML_MAX_DEPTH) {
        struct html_frame *f = &st->frames[st->depth];
        *f = st->frames[st->depth - 1];
        f->name = name;
        html_apply_attrs(f, kind, &at);
    } else {
        st->flags |= HTML_F_DEEP;
        if (st->deep_hidden_at == 0) {
            struct html_frame f = st->frames[HTML_MAX_DEPTH];
            html_apply_attrs(&f, kind, &at);
            if (html_frame_hidden(&f) && !html_frame_hidden(&st->frames[HTML_MAX_DEPTH]))
                st->deep_hidden_at = st->depth;
        }
    }
    if ((kind & HTML_E_SKIP) && st->skip_at == 0) st->skip_at = st->depth;
    if (kind & HTML_E_SCRIPT) st->flags |= HTML_F_SCRIPT;
    if (kind & HTML_E_FORM) st->flags |= HTML_F_FORM;
    if (kind & HTML_E_IFRAME) st->flags |= HTML_F_IFRAME;
    html_start_links(st, e, name, &at);
    if (kind & HTML_E_IMAGE) {
        st->n_images++;
        if (at.alt) {
            html_inline_break(st);
            html_emit_text(st, at.alt, strlen(at.alt));
            html_inline_break(st);
        }
    }
}

static void html_sax_end(void *ctx, const xmlChar *name)
{
    struct html_state *st = ctx;
    const struct html_elem *e;

    if (st->stopped || st->depth == 0) return;
    /* libxml2 reports the end before popping: the element is at nameNr. */
    if (st->ctxt->nameNr > 0 && (size_t)st->ctxt->nameNr < st->depth)
        html_close_to(st, (size_t)st->ctxt->nameNr);
    if (st->depth <= HTML_MAX_DEPTH && !html_name_eq(st->frames[st->depth].name, name)) {
        /* Not the innermost element: close back to the nearest one of this name. */
        size_t d = st->depth - 1;
        while (d > 0 && !html_name_eq(st->frames[d].name, name))
            d--;
        if (d == 0) return;
        st->depth = d;
    }
    e = html_elem_find(st, name);
    if (e && (e->kind & HTML_E_BLOCK)) html_block_break(st);
    html_close_to(st, st->depth - 1);
}

static void html_sax_characters(void *ctx, const xmlChar *ch, int len)
{
    struct html_state *st = ctx;

    if (st->stopped || len <= 0) return;
    html_emit_text(st, (const char *)ch, (size_t)len);
}

/*
 * Every parser error lands here instead of stderr. Each is charged the depth
 * of libxml2's element stack, which is what its recovery may scan; past the
 * budget the parse stops so that hostile nesting stays linear.
 */
static void html_sax_error(void *ctx, xmlErrorPtr err)
{
    struct html_state *st = ctx;

    if (err != NULL && err->level < XML_ERR_ERROR) return;
    st->flags |= HTML_F_BROKEN;
    st->error_work += (uint64_t)(st->ctxt->nameNr > 0 ? st->ctxt->nameNr : 0) + 1;
    if (st->error_work > st->error_budget && !st->stopped) {
        st->stopped = true;
        st->flags |= HTML_F_DEEP;
        log_debug("event=html_parse_stopped reason=error_budget depth=%d", st->ctxt->nameNr);
        xmlStopParser(st->ctxt);
    }
}

/* ---- driver ---- */

static void html_parse(struct html_state *st, const char *in, size_t len)
{
    htmlSAXHandler *sax;
    htmlParserCtxtPtr ctxt;

    xmlInitParser(); /* idempotent; normally done once at process start */
    ctxt = htmlCreateMemoryParserCtxt(in, (int)len);
    if (ctxt == NULL) {
        /* Only on allocation failure inside libxml2. */
        st->flags |= HTML_F_BROKEN;
        return;
    }
    st->ctxt = ctxt;
    sax = ctxt->sax;
    memset(sax, 0, sizeof *sax);
    /* XML_SAX2_MAGIC makes libxml2 use serror, our per-context error channel. */
    sax->initialized = XML_SAX2_MAGIC;
    sax->startElement = html_sax_start;
    sax->endElement = html_sax_end;
    sax->characters = html_sax_characters;
    sax->cdataBlock = html_sax_characters;
    sax->ignorableWhitespace = html_sax_characters;
    sax->serror = html_sax_error;
    ctxt->userData = st;
    /*
     * The input is UTF-8 already. A memory context starts with no charset, in
     * which libxml2 guesses from <meta> or falls back to Latin-1 at the first
     * 8-bit byte; declaring UTF-8 (no conversion) and IGNORE_ENC stop both.
     */
    xmlSwitchEncoding(ctxt, XML_CHAR_ENCODING_UTF8);
    htmlCtxtUseOptions(ctxt, HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                                 HTML_PARSE_NONET | HTML_PARSE_NODEFDTD | HTML_PARSE_IGNORE_ENC);
    htmlParseDocument(ctxt);
    if (!ctxt->wellFormed) st->flags |= HTML_F_BROKEN;
    st->ctxt = NULL;
    htmlFreeParserCtxt(ctxt);
}

void html_extract(struct arena *a, const char *html, size_t len, struct html_result *out)
{
    struct html_state *st = xcalloc(1, sizeof *st);
    struct buf clean = {0};
    const char *in = html;

    st->arena = a;
    st->text.b.limit_bytes = HTML_MAX_TEXT_BYTES;
    st->hidden.b.limit_bytes = HTML_MAX_TEXT_BYTES;
    st->anchor.b.limit_bytes = HTML_ANCHOR_TEXT_MAX_BYTES;
    st->frames[0].color = 0x000000;
    st->frames[0].bg = 0xFFFFFF;
    st->frames[0].font_px = HTML_DEFAULT_FONT_PX;

    if (!html_utf8_clean(html, len)) {
        utf8_repair(&clean, html, len);
        in = clean.data;
        len = clean.len;
        st->flags |= HTML_F_BROKEN;
    }
    if (len > INT_MAX) {
        /* libxml2 takes an int length; no message part comes near this. */
        len = INT_MAX;
        st->flags |= HTML_F_BROKEN;
    }
    /* Visible text is usually a third to a half of the markup: one allocation, not a dozen. */
    buf_reserve(&st->text.b, len / 2 < HTML_MAX_TEXT_BYTES ? len / 2 : HTML_MAX_TEXT_BYTES);
    st->error_budget = HTML_ERROR_WORK_BASE + (uint64_t)len * HTML_ERROR_WORK_PER_BYTE;
    if (len > 0) html_parse(st, in, len);
    buf_free(&clean);
    if (st->anchor_at) html_anchor_finish(st);

    memset(out, 0, sizeof *out);
    out->text = html_out_finish(a, &st->text, &out->text_len);
    out->hidden = html_out_finish(a, &st->hidden, &out->hidden_len);
    out->hidden_chars = html_count_nonspace(out->hidden, out->hidden_len);
    out->links = st->links;
    arena_adopt(a, st->links);
    out->n_links = st->n_links;
    out->n_images = st->n_images;
    out->flags = st->flags;
    buf_free(&st->anchor.b);
    free(st);
}
