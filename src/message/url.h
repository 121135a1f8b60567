/*
 * url - finding, parsing and normalising URLs, and registrable domains.
 *
 * A URL found in text or HTML is parsed into its parts and normalised:
 * scheme and host lowercased, host percent-decoded and converted to its ASCII
 * (punycode) form, a trailing dot dropped, the default port dropped, numeric
 * host forms (decimal 3232235777, hex 0xC0A80101, octal, short dotted forms)
 * rewritten as dotted-quad IPv4. The registrable domain comes from the public
 * suffix list (libpsl). Userinfo ("http://paypal.com@evil.example/") is
 * removed from the normalised form and flagged, since it is the classic way of
 * showing one host and visiting another.
 *
 * All strings returned are owned by the arena passed in. No function here
 * fails on hostile input: unparseable text gives -1 (url_parse) or is skipped
 * (url_find_in_text).
 */
#ifndef MXW_URL_H
#define MXW_URL_H

#include <stdbool.h>
#include <stddef.h>

struct arena;

enum url_source {
    URL_SRC_TEXT,        /* plain text (or HTML visible text) */
    URL_SRC_HTML_HREF,   /* <a href>, <area href> */
    URL_SRC_HTML_SRC,    /* <img src>, <iframe src>, ... */
    URL_SRC_HTML_ACTION, /* <form action> */
};

#define URL_F_IP_LITERAL    0x0001u /* host is an IP address (any notation) */
#define URL_F_NUMERIC_HOST  0x0002u /* host was an obfuscated number (decimal, hex, octal) */
#define URL_F_USERINFO      0x0004u /* user[:pass]@ before the host */
#define URL_F_IDN           0x0008u /* host has non-ASCII labels (or xn-- labels) */
#define URL_F_MIXED_SCRIPT  0x0010u /* one label mixes scripts, e.g. Latin with Cyrillic */
#define URL_F_PERCENT_HOST  0x0020u /* host contained percent-encoding */
#define URL_F_LINK_MISMATCH 0x0040u /* visible link text names another registrable domain */
#define URL_F_NONSTD_PORT   0x0080u /* an explicit port other than the scheme's default */
#define URL_F_NO_SCHEME     0x0100u /* found as "www.example.com" without a scheme */

/*
 * An IPv6 host keeps its brackets ("[2001:db8::1]"), as in a browser's
 * hostname. A mailto: URL normalises to "mailto:local@host[?query]" and its
 * path is everything after "mailto:".
 */
struct url {
    const char *raw;          /* the text as found (at most URL_MAX_BYTES) */
    const char *normalised;   /* scheme://host[:port]/path[?query] */
    const char *scheme;       /* lowercase: "http", "https", "ftp", "mailto", ... */
    const char *host;         /* lowercase ASCII (punycode for IDN); "" for mailto without host */
    const char *host_unicode; /* host for display, IDN decoded; equals host when ASCII */
    const char *domain;       /* registrable domain of host, or host when none (IP, single label) */
    const char *path;         /* path + query + fragment as found, "/" at least */
    int port;                 /* explicit or default port; 0 when unknown */
    const char *link_text_domain; /* HTML anchors: registrable domain shown in the link text, or NULL */
    unsigned flags;               /* URL_F_* */
    enum url_source source;
};

#define URL_MAX_BYTES 2048

/* Library set-up; safe to call more than once. Loads the public suffix list. */
void url_init(void);

/*
 * Frees the public suffix list loaded by url_init(). Only at exit (or at the
 * end of a test), when no other thread uses this module; a later call of any
 * url_ function loads the list again.
 */
void url_shutdown(void);

/*
 * Parses s[0..len) as an absolute URL (a scheme:// URL, a mailto:, or a bare
 * "www." host) into *out. Returns 0, or -1 if it is not a URL with a usable
 * host (relative references, javascript:, data:, garbage).
 */
int url_parse(struct arena *a, const char *s, size_t len, enum url_source source, struct url *out);

/*
 * Calls found(ctx, url) for each URL in plain text, in order, stopping after
 * 10,000. Returns how many were found. *u lives only for the call: copy the
 * struct to keep it (its strings are owned by the arena). A mailto: without
 * an address and e-mail addresses in the text are not reported.
 */
size_t url_find_in_text(struct arena *a, const char *text, size_t len,
                        void (*found)(void *ctx, const struct url *u), void *ctx);

/*
 * The registrable domain of a host name ("mail.example.co.uk" ->
 * "example.co.uk"), lowercase ASCII; the host itself for IP literals and
 * names with no public suffix; NULL for an empty host or one that is not a
 * valid host name.
 */
const char *url_registrable_domain(struct arena *a, const char *host);

/*
 * If text (visible link text of an anchor) shows a host name or URL, returns
 * that host's registrable domain; otherwise NULL. "Click here" gives NULL,
 * "www.paypal.com" and "https://paypal.com/login" give "paypal.com".
 * Only the first 4 KiB of text is looked at.
 */
const char *url_domain_in_text(struct arena *a, const char *text, size_t len);

#endif
