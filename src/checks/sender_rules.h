/*
 * sender_rules - the operator's allow and block rules for senders, as an
 * immutable in-memory snapshot that the milter stages query.
 *
 * A rule is (kind, value, action):
 *   SENDER_RULE_ADDRESS  "user@example.com"  the envelope sender exactly. The
 *                        domain compares case-insensitively, the local part
 *                        exactly (RFC 5321 leaves its case to the receiving
 *                        system, so we do not assume "John" is "john").
 *   SENDER_RULE_DOMAIN   "example.com"       the domain and all its subdomains.
 *   SENDER_RULE_IP       "192.0.2.7", "192.0.2.0/24", "2001:db8::/32": the
 *                        client address, or any address in the network.
 * and the action is allow (skip spam actions, bypass greylisting) or block
 * (5xx for every recipient).
 *
 * Precedence: the most specific rule wins. For a sender: an address rule,
 * then the domain's own rule, then its parent domains one label at a time
 * (mail.example.com before example.com). For a client IP: the longest prefix
 * (a single address is /32 or /128). When an allow and a block rule are
 * equally specific (the same value listed twice), block wins: an operator who
 * blocked something must not be overridden by a forgotten allow.
 *
 * Building: sender_rules_new() copies an array of rules (the database loader
 * fills that array from the sender_rules table). The snapshot is then only
 * read, so any number of threads may share it; a reload builds a new snapshot
 * and swaps the pointer. Lookups allocate nothing.
 */
#ifndef MXW_SENDER_RULES_H
#define MXW_SENDER_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checks/reputation.h"

enum sender_rule_kind { SENDER_RULE_ADDRESS, SENDER_RULE_DOMAIN, SENDER_RULE_IP };
enum sender_rule_action { SENDER_RULE_NONE, SENDER_RULE_ALLOW, SENDER_RULE_BLOCK };

/*
 * One rule. As input to sender_rules_new() the strings belong to the caller;
 * the rules a snapshot returns point into the snapshot (normalised value:
 * lowercase domain, canonical network text "192.0.2.0/24") and live as long
 * as it does.
 */
struct sender_rule {
    enum sender_rule_kind kind;
    const char *value;
    enum sender_rule_action action; /* ALLOW or BLOCK */
    int64_t id;                     /* the database row, or 0; returned as given */
    const char *comment;            /* may be NULL; returned as given */
};

struct sender_rules;

/*
 * A snapshot of rules[0..n). Values are validated and normalised; a bad
 * value (an address without '@', an unparsable network, action NONE) fails
 * the whole build: NULL with err_set() naming the rule, because a silently
 * dropped block rule is worse than a reload that keeps the previous
 * snapshot. n 0 gives an empty snapshot. Free with sender_rules_free().
 */
struct sender_rules *sender_rules_new(const struct sender_rule *rules, size_t n);
/* NULL is a no-op. */
void sender_rules_free(struct sender_rules *sr);
/* Rules in the snapshot. */
size_t sender_rules_count(const struct sender_rules *sr);
/* True if some rule of the snapshot blocks (false for NULL). */
bool sender_rules_any_block(const struct sender_rules *sr);

/*
 * The action for the client address ip (text, IPv4 or IPv6; IPv4-mapped IPv6
 * is treated as IPv4). *matched (may be NULL) is set to the deciding rule, or
 * NULL. An unparsable ip or sr NULL give SENDER_RULE_NONE.
 */
enum sender_rule_action sender_rules_check_ip(const struct sender_rules *sr, const char *ip,
                                              const struct sender_rule **matched);

/*
 * The action for the envelope sender address ("user@example.com", without
 * <>). The empty sender (a bounce) and an address without a domain only
 * match nothing: SENDER_RULE_NONE.
 */
enum sender_rule_action sender_rules_check_sender(const struct sender_rules *sr,
                                                  const char *address,
                                                  const struct sender_rule **matched);

/* The action for a domain (and its parents); case-insensitive, trailing dot ignored. */
enum sender_rule_action sender_rules_check_domain(const struct sender_rules *sr, const char *domain,
                                                  const struct sender_rule **matched);

/*
 * The reputation_allow_fn over a snapshot (ctx: a struct sender_rules, NULL
 * allows nothing): true only where the deciding rule is an allow. IP: the
 * address; NET ("192.0.2.0/24"): the most specific rule that covers the
 * whole network; DOMAIN and URL: the domain rules (a URL host that is an IP
 * literal goes to the IP rules).
 */
bool sender_rules_reputation_allow(void *ctx, enum reputation_kind kind, const char *value);

/* "address", "domain", "ip"; "allow", "block", "none". */
const char *sender_rule_kind_name(enum sender_rule_kind kind);
const char *sender_rule_action_name(enum sender_rule_action action);
/*
 * The reverse, for the database's text columns (db.h struct db_sender_rule):
 * 0 and *out, or -1 with err_set() for an unknown word ("none" is refused).
 */
int sender_rule_kind_parse(const char *text, enum sender_rule_kind *out);
int sender_rule_action_parse(const char *text, enum sender_rule_action *out);

#endif
