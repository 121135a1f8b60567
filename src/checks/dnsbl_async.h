/*
 * dnsbl_async - the client IP against the IP block lists, started at connect
 * and awaited at end of message, so the lookup overlaps the SMTP dialogue.
 *
 * dnsbl_ip_begin() queues the lookup and returns at once; a lookup thread of
 * a struct dnsbl_pool runs dnsbl_ip_start() (every list in parallel, as the
 * synchronous path does) on a resolver of its own. dnsbl_pending_wait() blocks
 * until the lookup is done or its deadline passes: the DNS budget counted
 * from dnsbl_ip_begin(). A lookup still unanswered then reads as if every
 * IP list had timed out (each list's <NAME>_TEMPFAIL with "<ip>: TIMEOUT"),
 * which is what a DNS timeout gives on the synchronous path, so a slow list
 * never holds a message longer than the budget.
 *
 * Why a pool of threads: a resolver (dns.h) belongs to one thread, and the
 * tested synchronous lookup needs one; each lookup thread keeps its resolver,
 * and with it its DNS cache, across lookups. Threads are started as lookups
 * wait for one, up to max_threads, so that many connections look up at once
 * and one slow list delays no other connection's lookup. When all are busy,
 * lookups queue; the budget runs from dnsbl_ip_begin() all the same, and a
 * lookup taken from the queue after its deadline sends nothing.
 *
 * Ownership: the caller owns a pending lookup from dnsbl_ip_begin() until
 * dnsbl_pending_free(); the pool owns it while it runs too, so freeing it
 * early (a client that disconnects first) is safe and immediate: a queued
 * lookup is then never sent, a running one is freed by its thread when it
 * ends. A pending lookup holds a reference on its struct dnsbl (dnsbl_ref),
 * so the lists may be freed by their owner (a reload) while it runs.
 *
 * Threads: the pool's functions are safe from any thread. One pending lookup
 * is used by one thread at a time (the callbacks of a milter session may run
 * on different threads, one after another).
 */
#ifndef MXW_DNSBL_ASYNC_H
#define MXW_DNSBL_ASYNC_H

#include "checks/dns.h"

struct dnsbl;
struct dnsbl_lookup;
struct dnsbl_pool;
struct dnsbl_pending;

#define DNSBL_POOL_THREADS_DEF 16
/* How long a wait gives a lookup that is running at its deadline to hand in its answers (the
 * lookup itself stops at the deadline; this covers reading them and waking the waiter). */
#define DNSBL_WAIT_GRACE_MS 50

/* A pool of at most max_threads lookup threads (0: DNSBL_POOL_THREADS_DEF), none started yet. */
struct dnsbl_pool *dnsbl_pool_new(unsigned max_threads);
/*
 * Stops the threads once the lookups they run have ended (each within its
 * budget) and frees the pool. Every pending lookup must have been freed
 * first. NULL is a no-op.
 */
void dnsbl_pool_free(struct dnsbl_pool *pool);

/*
 * Starts looking client_ip up in d's IP lists, on a resolver configured as
 * dns, within budget_ms from now (0: dns->timeout_ms, or DNS_TIMEOUT_DEF_MS). Returns at
 * once; never NULL. d gets a reference (dnsbl_ref) until the lookup is freed.
 * A local, private or invalid address is not looked up (an empty lookup).
 */
struct dnsbl_pending *dnsbl_ip_begin(struct dnsbl_pool *pool, const struct dnsbl *d,
                                     const struct dns_config *dns, unsigned budget_ms,
                                     const char *client_ip);

/*
 * The lookup's outcome: waits until it is done, or until its deadline (plus
 * DNSBL_WAIT_GRACE_MS when it is running then), and returns the answers, or
 * every IP list timed out if it did not end in time. May be called again (at
 * each message of a connection): a lookup that has ended since gives its
 * answers. The result is owned by p and valid until dnsbl_pending_free().
 */
const struct dnsbl_lookup *dnsbl_pending_wait(struct dnsbl_pending *p);

/* Frees p (and what dnsbl_pending_wait returned), now or when its thread is done. NULL: no-op. */
void dnsbl_pending_free(struct dnsbl_pending *p);

#endif
