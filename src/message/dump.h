/*
 * dump - a readable listing of a parsed message, for `mxwarden dump`.
 */
#ifndef MXW_DUMP_H
#define MXW_DUMP_H

struct buf;
struct message;

/* Appends headers, the MIME tree, texts, hidden text, URLs and hops to out. */
void message_dump(struct buf *out, const struct message *m);

/* message_dump() plus every field it leaves out (raw header values, part nesting and byte
 * counts, undecoded sources, flags of texts and URLs in full): two messages with the same
 * listing are the same model. The tests compare GMime's parse with the plain path by it. */
void message_dump_all(struct buf *out, const struct message *m);

#endif
