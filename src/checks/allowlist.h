/*
 * allowlist - the operator's allow rules for senders: client addresses and
 * networks, sender and URL domains that are never penalised by reputation.
 *
 * Read from one line of text ([reputation] allow in mxwarden.conf): entries
 * separated by spaces or commas, each an IPv4/IPv6 address, a network in CIDR
 * form (192.0.2.0/24, 2001:db8::/32) or a domain (example.com, which also
 * covers its subdomains). Built once, then only read: threads share it.
 * (The console's sender rules will feed the same structure.)
 */
#ifndef MXW_ALLOWLIST_H
#define MXW_ALLOWLIST_H

#include <stdbool.h>

#include "checks/reputation.h"

struct allowlist;

/* Parses spec (may be NULL or empty). NULL with err_set() naming the first bad entry. */
struct allowlist *allowlist_parse(const char *spec);
void allowlist_free(struct allowlist *al);

/* True if ip (text form) is listed or inside a listed network. */
bool allowlist_has_ip(const struct allowlist *al, const char *ip);
/* True if domain (lowercase ASCII) or one of its parent domains is listed. */
bool allowlist_has_domain(const struct allowlist *al, const char *domain);
/* The reputation_allow_fn: ctx is the allowlist (may be NULL: nothing allowed). */
bool allowlist_reputation(void *ctx, enum reputation_kind kind, const char *value);

#endif
