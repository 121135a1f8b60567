/*
 * dnsbl - DNS block lists: the client IP against IP lists (DNSBL) at connect,
 * and the registrable domains of a message's URLs against domain lists
 * (URIBL) at end of message.
 *
 * A list is a DNS zone: the client 192.0.2.7 is looked up as A record
 * 7.2.0.192.<zone> (IPv6: the 32 nibbles reversed, for lists that take
 * IPv6), a domain as <domain>.<zone>. No answer (NXDOMAIN/NODATA) means not
 * listed; an answer in 127.0.0.0/8 is a return code that the list's code map
 * turns into a symbol and score. A code is either an address range
 * (127.0.0.4-127.0.0.7) or a bit mask over the last octet (&8: any answer
 * whose last octet has bit 8 set), for lists such as SURBL multi that
 * combine several sub-lists in one answer. All lists are queried in parallel
 * (dns_query_many), on the caller's per-thread resolver.
 *
 * When a list cannot answer - a timeout, SERVFAIL, a malformed answer, an
 * answer outside 127.0.0.0/8 (some resolvers rewrite NXDOMAIN), a code the
 * map marks "refused", or anything in 127.255.255.0/24 (Spamhaus uses that
 * range to refuse queries, e.g. from public resolvers) - no listing symbol is
 * added but the list's zero-score <NAME>_TEMPFAIL symbol is, with the reason
 * as option, so a report shows that the check did not run.
 *
 * Default lists (names as used in configuration):
 *   zen     zen.spamhaus.org        ip (IPv4 and IPv6)
 *           127.0.0.2, .3  RBL_SPAMHAUS_SBL  4.0
 *           127.0.0.4-.7   RBL_SPAMHAUS_XBL  4.0
 *           127.0.0.10,.11 RBL_SPAMHAUS_PBL  2.0
 *   surbl   multi.surbl.org         domain, bit mask on the last octet
 *           &8 URIBL_SURBL_PH 4.5, &16 URIBL_SURBL_MW 5.0, &64 URIBL_SURBL_ABUSE 4.5,
 *           &128 URIBL_SURBL_CR 3.0; 127.0.0.1 = refused
 *   ivmsip  ivmsip.invaluement.com  ip (IPv4)       127.0.0.2 RBL_IVMSIP   3.5
 *   ivmuri  ivmuri.invaluement.com  domain          127.0.0.2 URIBL_IVMURI 4.0
 * These code maps are our reading of each list's documentation when this
 * was written; check them against the list's current documentation.
 *
 * USAGE TERMS. Every one of these lists has usage terms of its own, and
 * using them in production without checking those terms may break them:
 *   - Spamhaus: the public zone is for low-volume, non-commercial use and
 *     refuses queries that come through public/open resolvers (the 127.255.
 *     255.x answers); other use needs a registration with Spamhaus, which
 *     gives a zone of its own (configure it as a list named "zen" to replace
 *     the default). Check the list's terms.
 *   - SURBL: free use is limited; larger or commercial use needs a
 *     subscription. Check the list's terms.
 *   - invaluement (ivmSIP, ivmURI): a subscription service as far as we know;
 *     without one these queries are not answered usefully. Check the list's
 *     terms.
 * We do not know every list's current terms: check them, and disable a list
 * ("disabled = ivmsip, ivmuri") when they do not fit.
 *
 * Operator lists: a configuration string of lists separated by ';' or
 * newlines, each
 *     NAME ZONE type=ip|domain [ipv6] CODE=TARGET[,CODE=TARGET...]
 * where CODE is an address (127.0.0.2), a range (127.0.0.4-127.0.0.7) or a
 * mask (&8), and TARGET is SYMBOL[:SCORE] (default score 1.0) or the word
 * "refused". NAME is [a-z0-9_-], at most 31 characters; a list with the name
 * of a default replaces it. Example:
 *     example-bl bl.example.net type=ip 127.0.0.2=RBL_EXAMPLE:3.5,127.0.0.3=RBL_EXAMPLE_DYN:1
 *
 * Connect time and end of message: the milter knows the client IP at
 * connect but scores at end of message. dnsbl_ip_start() looks the client up
 * synchronously, on the caller's resolver, and keeps the answers;
 * dnsbl_lookup_collect() adds them to each message's result. The daemon does
 * not call dnsbl_ip_start() on its milter threads: dnsbl_async.h runs it on
 * lookup threads of their own from connect on, so the lookup overlaps the
 * SMTP dialogue, and end of message waits for it. Lists disabled for the
 * recipients' domain are filtered at collect time.
 *
 * Threads: a struct dnsbl is read-only after dnsbl_register() (but for its
 * reference count) and may be shared; a resolver and a lookup belong to one
 * thread at a time.
 */
#ifndef MXW_DNSBL_H
#define MXW_DNSBL_H

#include <stdbool.h>
#include <stddef.h>

#include "checks/dns.h"

struct dns_resolver;
struct message;
struct scan_result;
struct symbol_registry;

#define DNSBL_NAME_MAX        32 /* with the NUL */
#define DNSBL_MAX_LISTS       32
#define DNSBL_MAX_CODES       32 /* per list */
#define DNSBL_MAX_DOMAINS_DEF 16 /* URL domains looked up per message by default */

enum dnsbl_type { DNSBL_TYPE_IP, DNSBL_TYPE_DOMAIN };

struct dnsbl_config {
    const char *lists;    /* operator lists (format above); NULL or "": none */
    const char *disabled; /* list names separated by spaces or commas; NULL: none */
    bool no_defaults;     /* only the operator lists */
    unsigned max_domains; /* URL domains per message; 0: DNSBL_MAX_DOMAINS_DEF */
};

struct dnsbl;
struct dnsbl_lookup;

/*
 * The list set: the defaults (unless cfg->no_defaults), replaced or extended
 * by cfg->lists, minus cfg->disabled. cfg NULL: the defaults. NULL with
 * err_set() naming the bad list or code; an unknown name in disabled is an
 * error too (a typo must not leave a list on). Free with dnsbl_free().
 */
struct dnsbl *dnsbl_new(const struct dnsbl_config *cfg);
/*
 * Another reference on d, for a lookup that may outlive its creator's (a
 * lookup thread still running when a reload frees the scanner). Returns d;
 * drop it with dnsbl_free(). Safe from any thread.
 */
const struct dnsbl *dnsbl_ref(const struct dnsbl *d);
/* Drops a reference; the last one frees d. NULL is a no-op. Safe from any thread. */
void dnsbl_free(const struct dnsbl *d);

/*
 * Registers the symbols of every enabled list (their listing symbols and
 * <NAME>_TEMPFAIL) in reg and keeps the ids in d. Call once, at start-up,
 * before any lookup. 0, or -1 with err_set() (an invalid symbol name).
 */
int dnsbl_register(struct dnsbl *d, struct symbol_registry *reg);

/* Enabled lists, and the name, zone and type of the i-th. */
size_t dnsbl_list_count(const struct dnsbl *d);
const char *dnsbl_list_name(const struct dnsbl *d, size_t i);
const char *dnsbl_list_zone(const struct dnsbl *d, size_t i);
enum dnsbl_type dnsbl_list_type(const struct dnsbl *d, size_t i);

/*
 * Looks client_ip up in every enabled IP list and keeps the outcome. Never
 * NULL; the caller frees it with dnsbl_lookup_free() (at disconnect). Local,
 * private and invalid addresses are not looked up (the lookup is empty).
 * The lookup refers to d, which must outlive it.
 */
struct dnsbl_lookup *dnsbl_ip_start(const struct dnsbl *d, struct dns_resolver *r,
                                    const char *client_ip);
/*
 * The lookup dnsbl_ip_start() returns when every query of client_ip ends
 * with status (not DNS_OK) without being sent: each IP list gets its
 * <NAME>_TEMPFAIL hit ("<ip>: TIMEOUT" for DNS_TIMEOUT) and the warning a
 * failed query logs. For a lookup that ran out of time before it could ask.
 * Never NULL; free with dnsbl_lookup_free(). No DNS traffic, no resolver.
 */
struct dnsbl_lookup *dnsbl_ip_unanswered(const struct dnsbl *d, const char *client_ip,
                                         enum dns_status status);

/*
 * Adds the hits of l to res, except those of the lists named in disabled
 * (names separated by spaces or commas; NULL: none). May be called for
 * every message of the connection.
 */
void dnsbl_lookup_collect(const struct dnsbl_lookup *l, const char *disabled,
                          struct scan_result *res);
/* Number of listing hits (not counting TEMPFAIL) the lookup holds. */
size_t dnsbl_lookup_hits(const struct dnsbl_lookup *l);
void dnsbl_lookup_free(struct dnsbl_lookup *l);

/*
 * Looks domains[0..n) up in every enabled domain list not named in
 * disabled, all at once, and adds the hits to res. Duplicates, empty names
 * and IP literals are skipped; at most max_domains are looked up.
 */
void dnsbl_check_domains(const struct dnsbl *d, struct dns_resolver *r, const char *const *domains,
                         size_t n, const char *disabled, struct scan_result *res);

/* dnsbl_check_domains() over the registrable domains of m's URLs, in document order. */
void dnsbl_check_message_urls(const struct dnsbl *d, struct dns_resolver *r,
                              const struct message *m, const char *disabled,
                              struct scan_result *res);

#endif
