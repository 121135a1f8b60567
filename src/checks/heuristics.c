/*
 * heuristics - identity, date, attachment and URL symbols (see heuristics.h).
 *
 * Domains are compared by their registrable domain (public suffix list, via
 * url_registrable_domain()), so mail.example.com and news.example.com are the
 * same sender and example.com vs example.net are not. Each symbol alone stays
 * below the tag threshold; legitimate mail trips most of them now and then
 * (mailing lists rewrite envelopes, help desks set Reply-To elsewhere, old
 * mailers write odd dates), so they count in combination with the rule set's
 * meta rules and the classifiers.
 *
 * Nothing here fails: a missing or unparseable field simply does not fire the
 * symbols that need it. All scratch strings go to the result's arena.
 */
#include "checks/heuristics.h"
#include "checks/symbols.h"
#include "core/arena.h"
#include "message/message.h"
#include "message/url.h"
#include "scan/result.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define OPTION_VALUE_MAX 80 /* bytes of a header value quoted in an option */

void heuristics_register(struct symbol_registry *reg, struct heuristics_ids *ids)
{
    ids->forged_sender =
        symbols_add(reg, "FORGED_SENDER", 1.0,
                    "The From address belongs to a different domain than the envelope sender and "
                    "no valid DKIM signature vouches for it",
                    "headers");
    ids->from_spoofs_rcpt_domain =
        symbols_add(reg, "FROM_SPOOFS_RCPT_DOMAIN", 2.5,
                    "The From address claims the recipient's own domain, but the message came "
                    "from elsewhere without a DKIM signature of that domain",
                    "headers");
    ids->missing_date =
        symbols_add(reg, "MXW_MISSING_DATE", 1.0, "The message has no Date header", "headers");
    ids->invalid_date = symbols_add(reg, "MXW_INVALID_DATE", 1.5,
                                    "The Date header is not a valid date in the form mail "
                                    "standards require",
                                    "headers");
    ids->date_in_future = symbols_add(
        reg, "DATE_IN_FUTURE", 1.5, "The Date header is more than a day in the future", "headers");
    ids->date_in_past = symbols_add(
        reg, "DATE_IN_PAST", 1.0,
        "The Date header is more than a year older than the time of arrival", "headers");
    ids->missing_message_id = symbols_add(reg, "MISSING_MESSAGE_ID", 1.0,
                                          "The message has no Message-ID header", "headers");
    ids->missing_from =
        symbols_add(reg, "MXW_MISSING_FROM", 1.5,
                    "The message has no From header or no address in it", "headers");
    ids->reply_to_differs =
        symbols_add(reg, "REPLY_TO_DIFFERS", 0.3,
                    "Replies go to a different domain than the one in the From address", "headers");
    ids->reply_to_freemail = symbols_add(
        reg, "REPLY_TO_FREEMAIL", 1.5,
        "Replies go to a free-mail mailbox although the From address is elsewhere", "headers");
    ids->from_name_has_address =
        symbols_add(reg, "FROM_NAME_HAS_ADDRESS", 1.5,
                    "The sender's display name shows an e-mail address of another domain than "
                    "the real From address",
                    "headers");
    ids->subject_has_rcpt_address = symbols_add(
        reg, "SUBJECT_HAS_RCPT_ADDRESS", 1.0,
        "The subject contains the recipient's e-mail address (common in phishing)", "headers");
    ids->attach_executable = symbols_add(reg, "ATTACH_EXECUTABLE", 3.5,
                                         "An attachment is a program or script that runs when "
                                         "opened (.exe, .js, .vbs, .lnk, ...)",
                                         "attachments");
    ids->attach_disguised =
        symbols_add(reg, "ATTACH_DISGUISED", 2.5,
                    "An attachment hides its real type: a double extension such as .pdf.exe, "
                    "program bytes under a document name, or a right-to-left trick",
                    "attachments");
    ids->attach_macro = symbols_add(reg, "ATTACH_MACRO", 2.5,
                                    "An Office document that can carry macros (.docm, .xlsm, "
                                    ".pptm, ...) is attached",
                                    "attachments");
    ids->attach_disk_image = symbols_add(reg, "ATTACH_DISK_IMAGE", 2.5,
                                         "A disk image (.iso, .img, .vhd) is attached, a common "
                                         "way to smuggle programs past filters",
                                         "attachments");
    ids->attach_only =
        symbols_add(reg, "ATTACH_ONLY", 0.5, "The message has an attachment and no text of its own",
                    "attachments");
    ids->url_numeric_host =
        symbols_add(reg, "URL_NUMERIC_HOST", 2.5,
                    "A link hides its server behind a disguised number (decimal, hex or octal "
                    "address)",
                    "uri");
    ids->url_userinfo = symbols_add(reg, "URL_USERINFO", 2.0,
                                    "A link shows one name before an '@' but leads to the host "
                                    "after it",
                                    "uri");
    ids->url_mixed_script =
        symbols_add(reg, "URL_MIXED_SCRIPT", 2.5,
                    "A link's host name mixes alphabets (look-alike letters, e.g. Cyrillic in a "
                    "Latin name)",
                    "uri");
    ids->html_form_external = symbols_add(reg, "HTML_FORM_EXTERNAL", 1.5,
                                          "The HTML contains a form that sends what you type to "
                                          "a web server",
                                          "html");
}

/* ---- domains ---- */

/* The lowercase domain after the last '@' of addr (no trailing '>' or '.'), or NULL. */
static const char *addr_domain(struct arena *a, const char *addr)
{
    const char *at = addr ? strrchr(addr, '@') : NULL;
    size_t len, i;
    char *d;

    if (at == NULL) return NULL;
    at++;
    len = strlen(at);
    while (len && (at[len - 1] == '>' || at[len - 1] == '.' || at[len - 1] == ' '))
        len--;
    if (len == 0) return NULL;
    d = arena_strndup(a, at, len);
    for (i = 0; i < len; i++)
        d[i] = (char)tolower((unsigned char)d[i]);
    return d;
}

/* The registrable domain of domain, or domain itself when the list has none. */
static const char *org_domain(struct arena *a, const char *domain)
{
    const char *r;
    if (domain == NULL) return NULL;
    r = url_registrable_domain(a, domain);
    return r ? r : domain;
}

static bool same_org(struct arena *a, const char *org, const char *domain)
{
    const char *other = org_domain(a, domain);
    return other != NULL && strcmp(org, other) == 0;
}

/*
 * Free-mail providers anyone can sign up with. Families are matched by the
 * first label of the registrable domain (yahoo.co.uk, hotmail.fr, gmx.net).
 */
static const char *const freemail_domains[] = {
    "gmail.com", "googlemail.com", "aol.com",      "msn.com",     "icloud.com",  "me.com",
    "mac.com",   "protonmail.com", "proton.me",    "pm.me",       "zoho.com",    "zohomail.com",
    "mail.com",  "email.com",      "web.de",       "qq.com",      "163.com",     "126.com",
    "sina.com",  "rediffmail.com", "tutanota.com", "tuta.io",     "yopmail.com", "inbox.com",
    "lycos.com", "fastmail.com",   "hushmail.com", "naver.com",   "seznam.cz",   "wp.pl",
    "o2.pl",     "interia.pl",     "libero.it",    "laposte.net", "mail.ru",     "bk.ru",
    "list.ru",   "inbox.ru",       "rambler.ru",   "ukr.net",     "gmx.com",     "gmx.de",
    "gmx.net",   "usa.com",        NULL,
};
static const char *const freemail_families[] = {
    "yahoo", "ymail", "rocketmail", "hotmail", "outlook", "live", "yandex", "gmx", NULL,
};

static bool is_freemail(const char *org)
{
    size_t i, first;
    for (i = 0; freemail_domains[i]; i++)
        if (strcmp(org, freemail_domains[i]) == 0) return true;
    first = strcspn(org, ".");
    if (org[first] == '\0') return false;
    for (i = 0; freemail_families[i]; i++)
        if (strlen(freemail_families[i]) == first && strncmp(org, freemail_families[i], first) == 0)
            return true;
    return false;
}

/* ---- identities ---- */

/*
 * Mail a mailing list delivers: the list's own envelope sender, and often its
 * own Reply-To, stand in for the author's by design, so the identity
 * comparisons below say nothing about forgery there.
 */
static bool is_list_mail(const struct message *m)
{
    static const char *const list_headers[] = {"List-Id",        "List-Post",   "Mailing-List",
                                               "X-Mailing-List", "X-BeenThere", NULL};
    size_t i;
    for (i = 0; list_headers[i]; i++)
        if (message_header_count(m, list_headers[i]) > 0) return true;
    return false;
}

static void check_sender(const struct heuristics_ids *ids, const struct message *m,
                         const char *const *dkim_domains, size_t n_dkim, struct scan_result *r)
{
    struct arena *a = r->arena;
    const char *from_org, *env_org;
    size_t i;

    /* No envelope sender: a bounce (or nobody told us), nothing to compare with. */
    if (m->from_domain == NULL || m->env_from_domain == NULL || is_list_mail(m)) return;
    from_org = org_domain(a, m->from_domain);
    env_org = org_domain(a, m->env_from_domain);
    if (strcmp(from_org, env_org) == 0) return;
    for (i = 0; i < n_dkim; i++)
        if (dkim_domains[i] && same_org(a, from_org, dkim_domains[i])) return;
    result_add(r, ids->forged_sender, 1.0,
               arena_printf(a, "from=%s envelope=%s", m->from_domain, m->env_from_domain));

    for (i = 0; i < m->env.n_rcpt; i++) {
        const char *rd = addr_domain(a, m->env.rcpt[i]);
        if (rd && same_org(a, from_org, rd)) {
            result_add(r, ids->from_spoofs_rcpt_domain, 1.0, from_org);
            break;
        }
    }
}

static bool addr_char(unsigned char c)
{
    return isalnum(c) || c == '.' || c == '-' || c == '_' || c == '+' || c == '%';
}

/* A display name like "paypal@service.paypal.com" over a From of another domain. */
static void check_from_name(const struct heuristics_ids *ids, const struct message *m,
                            struct scan_result *r)
{
    struct arena *a = r->arena;
    const char *name = m->from_name, *at, *from_org;

    if (name == NULL || m->from_domain == NULL) return;
    from_org = org_domain(a, m->from_domain);
    for (at = strchr(name, '@'); at; at = strchr(at + 1, '@')) {
        const char *start = at, *end = at + 1;
        const char *domain;
        while (start > name && addr_char((unsigned char)start[-1]))
            start--;
        while (addr_char((unsigned char)*end))
            end++;
        while (end > at + 1 && end[-1] == '.')
            end--;
        if (start == at || memchr(at + 1, '.', (size_t)(end - at - 1)) == NULL) continue;
        domain = addr_domain(a, arena_strndup(a, at, (size_t)(end - at)));
        if (domain == NULL || same_org(a, from_org, domain)) continue;
        result_add(
            r, ids->from_name_has_address, 1.0,
            arena_printf(a, "name shows %.*s, from=%s", (int)(end - start), start, m->from_domain));
        return;
    }
}

static void check_reply_to(const struct heuristics_ids *ids, const struct message *m,
                           struct scan_result *r)
{
    struct arena *a = r->arena;
    const char *reply_dom = addr_domain(a, m->reply_to_addr);
    const char *reply_org, *from_org;

    if (reply_dom == NULL || m->from_domain == NULL || is_list_mail(m)) return;
    reply_org = org_domain(a, reply_dom);
    from_org = org_domain(a, m->from_domain);
    if (strcmp(reply_org, from_org) == 0) return;
    result_add(r, ids->reply_to_differs, 1.0,
               arena_printf(a, "from=%s reply-to=%s", m->from_domain, reply_dom));
    if (is_freemail(reply_org)) result_add(r, ids->reply_to_freemail, 1.0, reply_dom);
}

static void check_subject_rcpt(const struct heuristics_ids *ids, const struct message *m,
                               struct scan_result *r)
{
    size_t i;
    if (m->subject == NULL) return;
    for (i = 0; i < m->env.n_rcpt; i++) {
        const char *rcpt = m->env.rcpt[i];
        size_t len;
        char *bare;
        if (rcpt == NULL) continue;
        if (*rcpt == '<') rcpt++;
        len = strcspn(rcpt, ">");
        if (len < 3 || memchr(rcpt, '@', len) == NULL) continue;
        bare = arena_strndup(r->arena, rcpt, len);
        if (strcasestr(m->subject, bare)) {
            result_add(r, ids->subject_has_rcpt_address, 1.0, bare);
            return;
        }
    }
}

/* ---- headers that must be there ---- */

static const char *skip_cfws(const char *p)
{
    int depth = 0;
    for (;; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')' && depth > 0)
            depth--;
        else if (*p == '\\' && depth > 0 && p[1])
            p++;
        else if (*p == '\0')
            return p;
        else if (depth == 0 && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return p;
    }
}

/* Reads 1..max digits at *p into *value; returns how many were read. */
static int read_digits(const char **p, int max, int *value)
{
    int n = 0;
    *value = 0;
    while (n < max && isdigit((unsigned char)**p)) {
        *value = *value * 10 + (**p - '0');
        (*p)++;
        n++;
    }
    return n;
}

static bool word_in(const char *p, size_t len, const char *const *list)
{
    size_t i;
    for (i = 0; list[i]; i++)
        if (strlen(list[i]) == len && strncasecmp(p, list[i], len) == 0) return true;
    return false;
}

/* The end of the run of ASCII letters starting at p. */
static const char *skip_alpha(const char *p)
{
    while (isalpha((unsigned char)*p))
        p++;
    return p;
}

bool heuristics_date_syntax_ok(const char *s)
{
    static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", NULL};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
                                         "Aug", "Sep", "Oct", "Nov", "Dec", NULL};
    static const char *const zones[] = {"UT",  "UTC", "GMT", "EST", "EDT", "CST",
                                        "CDT", "MST", "MDT", "PST", "PDT", NULL};
    const char *p = skip_cfws(s), *w;
    int day, year, hh, mm, ss = 0, zone, n;

    if (isalpha((unsigned char)*p)) {
        w = p;
        p = skip_alpha(p);
        if (!word_in(w, (size_t)(p - w), days)) return false;
        p = skip_cfws(p);
        if (*p++ != ',') return false;
        p = skip_cfws(p);
    }
    if (read_digits(&p, 2, &day) == 0 || day < 1 || day > 31) return false;
    p = skip_cfws(p);
    w = p;
    p = skip_alpha(p);
    if (!word_in(w, (size_t)(p - w), months)) return false;
    p = skip_cfws(p);
    n = read_digits(&p, 4, &year);
    if (n < 2 || isdigit((unsigned char)*p)) return false;
    p = skip_cfws(p);
    if (read_digits(&p, 2, &hh) != 2 || hh > 23 || *p++ != ':') return false;
    if (read_digits(&p, 2, &mm) != 2 || mm > 59) return false;
    if (*p == ':') {
        p++;
        if (read_digits(&p, 2, &ss) != 2 || ss > 60) return false;
    }
    p = skip_cfws(p);
    if (*p == '+' || *p == '-') {
        p++;
        if (read_digits(&p, 4, &zone) != 4 || zone % 100 > 59) return false;
    } else {
        w = p;
        p = skip_alpha(p);
        if (!word_in(w, (size_t)(p - w), zones) && p - w != 1) return false;
    }
    return *skip_cfws(p) == '\0';
}

static void check_required(const struct heuristics_ids *ids, const struct message *m, long long now,
                           struct scan_result *r)
{
    if (message_header_count(m, "Date") == 0) {
        result_add(r, ids->missing_date, 1.0, NULL);
    } else if (m->date_unix == 0 || m->date == NULL || !heuristics_date_syntax_ok(m->date)) {
        result_add(r, ids->invalid_date, 1.0,
                   arena_printf(r->arena, "%.*s", OPTION_VALUE_MAX, m->date ? m->date : ""));
    }
    if (m->date_unix != 0 && now > 0) {
        long long ahead = m->date_unix - now;
        if (ahead > HEURISTICS_FUTURE_SECONDS)
            result_add(r, ids->date_in_future, 1.0,
                       arena_printf(r->arena, "%lld hours ahead", ahead / 3600));
        else if (-ahead > HEURISTICS_PAST_SECONDS)
            result_add(r, ids->date_in_past, 1.0,
                       arena_printf(r->arena, "%lld days old", -ahead / 86400));
    }
    if (message_header_count(m, "Message-ID") == 0)
        result_add(r, ids->missing_message_id, 1.0, NULL);
    if (message_header_count(m, "From") == 0)
        result_add(r, ids->missing_from, 1.0, "no From header");
    else if (m->from_addr == NULL)
        result_add(r, ids->missing_from, 1.0, "no address in From");
}

/* ---- attachments ---- */

/* Programs and scripts Windows (or a browser, or Java) runs when the file is opened. */
static const char *const exe_exts[] = {
    "exe",       "com",  "scr", "pif", "bat", "cmd",  "vbs",  "vbe",    "js",
    "jse",       "wsf",  "wsh", "hta", "cpl", "msi",  "msp",  "msc",    "jar",
    "ps1",       "psm1", "lnk", "reg", "inf", "scf",  "dll",  "gadget", "application",
    "appref-ms", "url",  "chm", "sct", "xll", "appx", "msix", NULL,
};
static const char *const macro_exts[] = {
    "docm", "dotm", "xlsm", "xltm", "xlam", "pptm", "potm", "ppsm", "ppam", "sldm", NULL,
};
static const char *const disk_image_exts[] = {"iso", "img", "vhd", "vhdx", NULL};
/* What a disguised program pretends to be. */
static const char *const innocent_exts[] = {
    "pdf", "doc",  "docx", "xls", "xlsx", "ppt", "pptx", "rtf", "txt",  "csv",
    "jpg", "jpeg", "png",  "gif", "bmp",  "tif", "tiff", "htm", "html", "zip",
    "rar", "mp3",  "mp4",  "avi", "wav",  "odt", "ods",  NULL,
};
static const char *const exe_types[] = {
    "application/x-msdownload", "application/x-executable",   "application/x-msdos-program",
    "application/x-dosexec",    "application/x-ms-installer", "application/x-msi",
    "application/hta",          "application/x-ms-shortcut",  NULL,
};

/*
 * The extension ending at name[0..end) (without the dot) in *ext and *ext_len;
 * trailing spaces, dots and underscores before end are ignored, as Windows
 * ignores them. Returns the index of the dot, or -1 when there is none.
 */
static long last_ext(const char *name, size_t end, const char **ext, size_t *ext_len)
{
    size_t e = end, dot;
    while (e > 0 && (name[e - 1] == ' ' || name[e - 1] == '.' || name[e - 1] == '_'))
        e--;
    for (dot = e; dot > 0 && name[dot - 1] != '.'; dot--)
        if (name[dot - 1] == '/' || name[dot - 1] == '\\') return -1;
    if (dot == 0) return -1;
    *ext = name + dot;
    *ext_len = e - dot;
    return (long)dot - 1;
}

static bool type_in(const char *type, const char *const *list)
{
    size_t i;
    if (type == NULL) return false;
    for (i = 0; list[i]; i++)
        if (strcmp(type, list[i]) == 0) return true;
    return false;
}

static void check_attachment(const struct heuristics_ids *ids, const struct msg_part *p,
                             struct scan_result *r)
{
    const char *name = p->filename, *ext = NULL, *inner = NULL;
    size_t ext_len = 0, inner_len = 0;
    long dot = -1;
    bool exe_name = false, exe_bytes, inner_innocent = false, rlo;
    const char *label;

    if (name) {
        dot = last_ext(name, strlen(name), &ext, &ext_len);
        if (dot >= 0) {
            exe_name = word_in(ext, ext_len, exe_exts);
            inner_innocent = last_ext(name, (size_t)dot, &inner, &inner_len) >= 0 &&
                             word_in(inner, inner_len, innocent_exts);
        }
    }
    exe_bytes = type_in(p->sniffed_type, exe_types) || type_in(p->type, exe_types);
    label = name ? name : arena_printf(r->arena, "unnamed %s", p->type);

    if (exe_name || exe_bytes) result_add(r, ids->attach_executable, 1.0, label);

    /* U+202E RIGHT-TO-LEFT OVERRIDE makes "x\u202Efdp.exe" display as "xexe.pdf". */
    rlo = name && strstr(name, "\xE2\x80\xAE") != NULL;
    if ((exe_name && inner_innocent) || rlo ||
        (exe_bytes && dot >= 0 && word_in(ext, ext_len, innocent_exts)))
        result_add(r, ids->attach_disguised, 1.0, label);

    if (dot >= 0 && word_in(ext, ext_len, macro_exts)) result_add(r, ids->attach_macro, 1.0, label);
    if (dot >= 0 && word_in(ext, ext_len, disk_image_exts))
        result_add(r, ids->attach_disk_image, 1.0, label);
}

static bool text_is_blank(const struct msg_text *t)
{
    size_t i;
    for (i = 0; i < t->len; i++)
        if (!isspace((unsigned char)t->text[i])) return false;
    return true;
}

static void check_attachments(const struct heuristics_ids *ids, const struct message *m,
                              struct scan_result *r)
{
    size_t i;
    bool any_attachment = false, any_text = false;

    for (i = 0; i < m->n_parts; i++) {
        const struct msg_part *p = &m->parts[i];
        if (p->is_multipart) continue;
        if (p->is_attachment) any_attachment = true;
        if (p->filename || p->is_attachment) check_attachment(ids, p, r);
    }
    for (i = 0; i < m->n_texts && !any_text; i++)
        any_text = !text_is_blank(&m->texts[i]);
    if (any_attachment && !any_text) result_add(r, ids->attach_only, 1.0, NULL);
}

/* ---- URLs ---- */

static void check_urls(const struct heuristics_ids *ids, const struct message *m,
                       struct scan_result *r)
{
    size_t i;
    for (i = 0; i < m->n_urls; i++) {
        const struct url *u = &m->urls[i];
        if (u->flags & URL_F_NUMERIC_HOST) result_add(r, ids->url_numeric_host, 1.0, u->raw);
        if ((u->flags & URL_F_USERINFO) && strcmp(u->scheme, "mailto") != 0)
            result_add(r, ids->url_userinfo, 1.0, u->raw);
        if (u->flags & URL_F_MIXED_SCRIPT) result_add(r, ids->url_mixed_script, 1.0, u->host);
        if (u->source == URL_SRC_HTML_ACTION) result_add(r, ids->html_form_external, 1.0, u->host);
    }
}

void heuristics_check(const struct heuristics_ids *ids, const struct message *m,
                      const char *const *dkim_domains, size_t n_dkim_domains, long long now,
                      struct scan_result *r)
{
    check_sender(ids, m, dkim_domains, n_dkim_domains, r);
    check_from_name(ids, m, r);
    check_reply_to(ids, m, r);
    check_subject_rcpt(ids, m, r);
    check_required(ids, m, now, r);
    check_attachments(ids, m, r);
    check_urls(ids, m, r);
}
