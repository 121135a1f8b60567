/*
 * received - parsing one Received: header into a hop.
 *
 * Received headers have no enforced grammar; every MTA writes its own. We
 * take what the common ones (Postfix, Sendmail, Exim, Exchange, qmail) agree
 * on: "from HELO (RDNS [IP])" and "by HOST". Anything missing is NULL.
 */
#ifndef MXW_RECEIVED_H
#define MXW_RECEIVED_H

#include <stddef.h>

struct arena;
struct msg_hop;

/* Parses value[0..len) (unfolded) into *hop; strings are owned by the arena. */
void received_parse(struct arena *a, const char *value, size_t len, struct msg_hop *hop);

#endif
