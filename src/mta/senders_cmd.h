/*
 * senders_cmd - `mxwarden senders`: the operator's allow and block rules for
 * senders (checks/sender_rules.h), kept in the records database.
 *
 *   senders list                                   ID TAB ACTION TAB KIND TAB VALUE TAB
 *                                                  CREATED TAB COMMENT, ordered by kind, value
 *   senders add allow|block VALUE [--comment TEXT] VALUE: an address (user@example.com), a
 *                                                  domain (example.com or @example.com: it
 *                                                  and its subdomains), an IP or a CIDR network
 *   senders remove ID|VALUE...                     by the id list shows, or by the value
 *
 * The kind follows from the value: an '@' inside makes an address, an IP
 * address or network an ip rule, anything else a domain. Values are stored
 * normalised the way the gateway matches them (domain in lower case, network
 * masked: "192.0.2.9/24" is stored as "192.0.2.0/24"), so adding an existing
 * rule replaces its action and comment, and removing by value finds it.
 *
 * A running `mxwarden serve` applies every change within
 * SENDERS_APPLY_DELAY_S seconds, without a restart (it polls the database's
 * sender-rules generation; SIGHUP reloads at once).
 *
 * Every add and remove writes an audit row (actions "sender_rule.add" and
 * "sender_rule.delete", target the value, details JSON with id, kind and
 * action) naming the actor.
 */
#ifndef MXW_SENDERS_CMD_H
#define MXW_SENDERS_CMD_H

#include <stdio.h>

/* How long a running gateway takes at most to apply a change (its poll period). */
#define SENDERS_APPLY_DELAY_S 2

/*
 * Runs the command in argv[1..argc) (argv[0] is "senders" and is ignored)
 * against the records database at db_uri (NULL: DB_URI_DEFAULT). actor names
 * who acts in the audit log; NULL: senders_default_actor(). Results go to
 * out, diagnostics (lines starting "mxwarden senders: ") to err. Arguments
 * are checked completely before the database is opened, so a bad value
 * writes nothing. Returns the exit status: 0 done; 1 the database could not
 * be opened, read or written (or an audit row not written); 2 a usage error
 * or an invalid value, id or comment (nothing done); 3 at least one id or
 * value given to remove matched no rule (the others were removed).
 */
int senders_command(int argc, char **argv, const char *db_uri, const char *actor, FILE *out,
                    FILE *err);

/* $SUDO_USER, else $USER, else "cli" (a static or environment string; do not free). */
const char *senders_default_actor(void);

#endif
