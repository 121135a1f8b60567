/*
 * dump - a readable listing of a parsed message, for `mxwarden dump`.
 */
#ifndef MXW_DUMP_H
#define MXW_DUMP_H

struct buf;
struct message;

/* Appends headers, the MIME tree, texts, hidden text, URLs and hops to out. */
void message_dump(struct buf *out, const struct message *m);

#endif
