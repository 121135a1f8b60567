/*
 * dump - readable listing of a parsed message. See dump.h.
 */
#include "message/dump.h"
#include "core/buf.h"
#include "message/html.h"
#include "message/message.h"

#include <string.h>

static void dump_flag_names(struct buf *out, unsigned flags, const char *const *names)
{
    unsigned bit;
    int first = 1;
    for (bit = 0; names[bit]; bit++) {
        if (!(flags & (1u << bit))) continue;
        buf_printf(out, "%s%s", first ? " [" : ",", names[bit]);
        first = 0;
    }
    if (!first) buf_append_char(out, ']');
}

static const char *const message_flag_names[] = {
    "no_headers", "bad_headers", "mime_bad", "truncated", "too_many_parts", "too_deep",
    "html_only", "nul_bytes", "bare_line_ends", "8bit_headers", NULL};
static const char *const part_flag_names[] = {
    "bad_base64", "bad_qp", "bad_encoding", "charset_wrong", "charset_unknown", "truncated",
    "no_boundary", "8bit_in_7bit", NULL};
static const char *const url_flag_names[] = {
    "ip_literal", "numeric_host", "userinfo", "idn", "mixed_script", "percent_host",
    "link_mismatch", "nonstd_port", "no_scheme", NULL};
static const char *const html_flag_names[] = {"script", "form", "iframe", "deep", "broken", NULL};

static const char *or_dash(const char *s)
{
    return s ? s : "-";
}

void message_dump(struct buf *out, const struct message *m)
{
    size_t i;

    buf_printf(out, "size: %zu bytes\nflags:", m->raw_size);
    dump_flag_names(out, m->flags, message_flag_names);
    buf_append_char(out, '\n');
    if (m->env.mail_from || m->env.n_rcpt || m->env.client_ip || m->env.helo) {
        buf_printf(out, "envelope: from=%s ip=%s helo=%s rcpt=", or_dash(m->env.mail_from),
                   or_dash(m->env.client_ip), or_dash(m->env.helo));
        for (i = 0; i < m->env.n_rcpt; i++) buf_printf(out, "%s%s", i ? "," : "", m->env.rcpt[i]);
        buf_append_char(out, '\n');
    }
    buf_printf(out, "\n== headers (%zu)\n", m->n_headers);
    for (i = 0; i < m->n_headers; i++)
        buf_printf(out, "%s: %s\n", m->headers[i].name, m->headers[i].value);
    buf_printf(out, "\nsubject: %s\nfrom: %s <%s> domain=%s\nreply-to: %s\nmessage-id: %s\n"
                    "date: %s (%lld)\n",
               or_dash(m->subject), or_dash(m->from_name), or_dash(m->from_addr),
               or_dash(m->from_domain), or_dash(m->reply_to_addr), or_dash(m->message_id),
               or_dash(m->date), m->date_unix);

    buf_printf(out, "\n== received hops (%zu)\n", m->n_received);
    for (i = 0; i < m->n_hops; i++)
        buf_printf(out, "%zu: from=%s rdns=%s ip=%s by=%s\n", i, or_dash(m->hops[i].from_helo),
                   or_dash(m->hops[i].from_rdns), or_dash(m->hops[i].ip), or_dash(m->hops[i].by));

    buf_printf(out, "\n== parts (%zu)\n", m->n_parts);
    for (i = 0; i < m->n_parts; i++) {
        const struct msg_part *p = &m->parts[i];
        buf_printf(out, "%*s%zu: %s", p->depth * 2, "", i, p->type);
        if (p->charset) buf_printf(out, " charset=%s", p->charset);
        if (p->encoding) buf_printf(out, " encoding=%s", p->encoding);
        if (p->disposition) buf_printf(out, " disposition=%s", p->disposition);
        if (p->filename) buf_printf(out, " filename=\"%s\"", p->filename);
        if (!p->is_multipart) buf_printf(out, " size=%zu", p->size_bytes);
        if (p->sniffed_type) buf_printf(out, " sniffed=%s", p->sniffed_type);
        if (p->is_attachment) buf_append_str(out, " attachment");
        dump_flag_names(out, p->flags, part_flag_names);
        buf_append_char(out, '\n');
    }

    for (i = 0; i < m->n_texts; i++) {
        const struct msg_text *t = &m->texts[i];
        buf_printf(out, "\n== text %zu (part %d, %s, %zu bytes)", i, t->part,
                   t->is_html ? "html" : "plain", t->len);
        if (t->is_html) dump_flag_names(out, t->html_flags, html_flag_names);
        buf_append_char(out, '\n');
        buf_append(out, t->text, t->len);
        buf_append_char(out, '\n');
        if (t->hidden_len) {
            buf_printf(out, "-- hidden (%zu characters)\n", t->hidden_chars);
            buf_append(out, t->hidden, t->hidden_len);
            buf_append_char(out, '\n');
        }
    }

    buf_printf(out, "\n== urls (%zu)\n", m->n_urls);
    for (i = 0; i < m->n_urls; i++) {
        const struct url *u = &m->urls[i];
        buf_printf(out, "%s host=%s domain=%s", u->normalised, u->host, or_dash(u->domain));
        if (u->host_unicode && strcmp(u->host_unicode, u->host) != 0)
            buf_printf(out, " unicode=%s", u->host_unicode);
        if (u->link_text_domain) buf_printf(out, " shown=%s", u->link_text_domain);
        dump_flag_names(out, u->flags, url_flag_names);
        buf_append_char(out, '\n');
    }
}

void message_dump_all(struct buf *out, const struct message *m)
{
    size_t i;

    message_dump(out, m);
    buf_printf(out, "\n== model\nflags=%#x from=%s reply-to=%s\n", m->flags, or_dash(m->from),
               or_dash(m->reply_to_addr));
    for (i = 0; i < m->n_headers; i++)
        buf_printf(out, "raw %s: %s\n", m->headers[i].name, m->headers[i].raw);
    for (i = 0; i < m->n_parts; i++) {
        const struct msg_part *p = &m->parts[i];
        buf_printf(out,
                   "part %zu parent=%d depth=%d encoded=%zu size=%zu multipart=%d text=%d "
                   "flags=%#x\n",
                   i, p->parent, p->depth, p->encoded_bytes, p->size_bytes, p->is_multipart,
                   p->text_index, p->flags);
    }
    for (i = 0; i < m->n_texts; i++) {
        const struct msg_text *t = &m->texts[i];
        buf_printf(out, "source %zu (%zu bytes, %zu hidden characters)\n", i, t->source_len,
                   t->hidden_chars);
        buf_append(out, t->source, t->source_len);
        buf_append_char(out, '\n');
    }
    for (i = 0; i < m->n_urls; i++)
        buf_printf(out, "url %s flags=%#x\n", m->urls[i].normalised, m->urls[i].flags);
}
