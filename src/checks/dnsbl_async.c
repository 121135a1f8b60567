/*
 * dnsbl_async - connect-time DNSBL lookups on a pool of lookup threads (see
 * dnsbl_async.h for the contract and why threads).
 *
 * One mutex per pool guards the queue, the thread counts and every pending
 * lookup's state; `work` wakes idle threads, `done` wakes waiters (broadcast:
 * a wait is rare, since most lookups end during the SMTP dialogue). A pending
 * lookup has two references, its owner's and the pool's (dropped when its
 * thread has run it, or skipped it because the owner freed it first); the
 * last one frees it. Threads are started when the queue is longer than the
 * number of idle threads, so a burst of connections gets as many lookups in
 * flight as it has, up to max_threads.
 *
 * Each thread builds its resolver from the first lookup's DNS settings and
 * builds it again when a lookup brings others (a reload changed [dns]).
 */
#include "checks/dnsbl_async.h"
#include "checks/dnsbl.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct dnsbl_pending {
    struct dnsbl_pending *next; /* in the queue */
    int refs;                   /* owner + pool; under the pool's lock */
    struct dnsbl_pool *pool;
    const struct dnsbl *d; /* a reference */
    struct dns_config dns;
    char client_ip[64];
    uint64_t deadline_ms;
    bool running, done, cancelled;  /* under the pool's lock */
    struct dnsbl_lookup *lookup;    /* the thread's answers, once done */
    struct dnsbl_lookup *timed_out; /* what a wait that gave up returned, if one did */
};

struct dnsbl_pool {
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    struct dnsbl_pending *head, *tail;
    size_t queued, idle;
    pthread_t *threads;
    unsigned n_threads, max_threads;
    size_t live; /* pending lookups not yet freed */
    bool stopping;
};

static uint64_t dnsbl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool dnsbl_same_dns(const struct dns_config *a, const struct dns_config *b)
{
    return strcmp(a->server, b->server) == 0 && a->port == b->port &&
           a->timeout_ms == b->timeout_ms && a->cache_entries == b->cache_entries;
}

/* Drops a reference; the caller holds the lock. True if it was the last (free it unlocked). */
static bool dnsbl_pending_unref_locked(struct dnsbl_pending *p)
{
    assert(p->refs > 0);
    return --p->refs == 0;
}

static void dnsbl_pending_destroy(struct dnsbl_pending *p)
{
    dnsbl_lookup_free(p->lookup);
    dnsbl_lookup_free(p->timed_out);
    dnsbl_free(p->d);
    free(p);
}

/* Runs p on the thread's resolver *r (rebuilt for other settings); returns the answers. */
static struct dnsbl_lookup *dnsbl_pool_run(struct dnsbl_pending *p, struct dns_resolver **r,
                                           struct dns_config *r_cfg)
{
    uint64_t now = dnsbl_now_ms();

    /* Taken from the queue too late: nothing is sent, the lists read as timed out. */
    if (now >= p->deadline_ms) return dnsbl_ip_unanswered(p->d, p->client_ip, DNS_TIMEOUT);
    if (*r == NULL || !dnsbl_same_dns(r_cfg, &p->dns)) {
        dns_resolver_free(*r);
        *r = dns_resolver_new(&p->dns);
        *r_cfg = p->dns;
        if (*r == NULL) {
            log_error("msg=\"DNS resolver of a lookup thread not started\" reason=\"%s\"",
                      err_msg());
            return dnsbl_ip_unanswered(p->d, p->client_ip, DNS_SERVFAIL);
        }
    }
    dns_begin_scan(*r, (unsigned)(p->deadline_ms - now));
    return dnsbl_ip_start(p->d, *r, p->client_ip);
}

static void *dnsbl_pool_thread(void *arg)
{
    struct dnsbl_pool *pool = arg;
    struct dns_resolver *r = NULL;
    struct dns_config r_cfg;

    memset(&r_cfg, 0, sizeof r_cfg);
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        struct dnsbl_pending *p;
        struct dnsbl_lookup *lk = NULL;
        bool run, last;

        while (pool->head == NULL && !pool->stopping) {
            pool->idle++;
            pthread_cond_wait(&pool->work, &pool->lock);
            pool->idle--;
        }
        if (pool->head == NULL) break; /* stopping, and nothing left to run */
        p = pool->head;
        pool->head = p->next;
        if (pool->head == NULL) pool->tail = NULL;
        pool->queued--;
        run = p->running = !p->cancelled; /* freed by its owner while queued: skipped */
        pthread_mutex_unlock(&pool->lock);

        if (run) lk = dnsbl_pool_run(p, &r, &r_cfg);

        pthread_mutex_lock(&pool->lock);
        p->lookup = lk;
        p->running = false;
        p->done = true;
        pthread_cond_broadcast(&pool->done);
        last = dnsbl_pending_unref_locked(p);
        if (last) pool->live--;
        pthread_mutex_unlock(&pool->lock);
        if (last) dnsbl_pending_destroy(p);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    dns_resolver_free(r);
    return NULL;
}

struct dnsbl_pool *dnsbl_pool_new(unsigned max_threads)
{
    struct dnsbl_pool *pool = xcalloc(1, sizeof *pool);
    pthread_condattr_t attr;

    pool->max_threads = max_threads ? max_threads : DNSBL_POOL_THREADS_DEF;
    pool->threads = xcalloc(pool->max_threads, sizeof *pool->threads);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work, NULL);
    /* Waiters time out on the monotonic clock, like the deadline. */
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&pool->done, &attr);
    pthread_condattr_destroy(&attr);
    return pool;
}

void dnsbl_pool_free(struct dnsbl_pool *pool)
{
    unsigned i;
    if (pool == NULL) return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    for (i = 0; i < pool->n_threads; i++)
        pthread_join(pool->threads[i], NULL);
    assert(pool->live == 0 && pool->head == NULL); /* every pending lookup was freed */
    pthread_cond_destroy(&pool->work);
    pthread_cond_destroy(&pool->done);
    pthread_mutex_destroy(&pool->lock);
    free(pool->threads);
    free(pool);
}

struct dnsbl_pending *dnsbl_ip_begin(struct dnsbl_pool *pool, const struct dnsbl *d,
                                     const struct dns_config *dns, unsigned budget_ms,
                                     const char *client_ip)
{
    struct dnsbl_pending *p = xcalloc(1, sizeof *p);

    if (budget_ms == 0) budget_ms = dns->timeout_ms ? dns->timeout_ms : DNS_TIMEOUT_DEF_MS;
    p->refs = 2;
    p->pool = pool;
    p->d = dnsbl_ref(d);
    p->dns = *dns;
    snprintf(p->client_ip, sizeof p->client_ip, "%s", client_ip ? client_ip : "");
    p->deadline_ms = dnsbl_now_ms() + budget_ms;

    pthread_mutex_lock(&pool->lock);
    assert(!pool->stopping);
    pool->live++;
    if (pool->tail)
        pool->tail->next = p;
    else
        pool->head = p;
    pool->tail = p;
    pool->queued++;
    if (pool->queued > pool->idle && pool->n_threads < pool->max_threads) {
        int rc = pthread_create(&pool->threads[pool->n_threads], NULL, dnsbl_pool_thread, pool);
        if (rc == 0)
            pool->n_threads++;
        else /* the lookup waits for a busy thread, or times out at its deadline */
            log_warn("msg=\"DNSBL lookup thread not started\" threads=%u reason=\"%s\"",
                     pool->n_threads, strerror(rc));
    }
    pthread_cond_signal(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    return p;
}

const struct dnsbl_lookup *dnsbl_pending_wait(struct dnsbl_pending *p)
{
    struct dnsbl_pool *pool = p->pool;
    const struct dnsbl_lookup *lk;

    pthread_mutex_lock(&pool->lock);
    while (!p->done) {
        /* A running lookup stops at the deadline by itself: give it a moment to hand in. */
        uint64_t limit = p->deadline_ms + (p->running ? DNSBL_WAIT_GRACE_MS : 0);
        struct timespec ts;
        if (dnsbl_now_ms() >= limit) break;
        ts.tv_sec = (time_t)(limit / 1000u);
        ts.tv_nsec = (long)(limit % 1000u) * 1000000L;
        pthread_cond_timedwait(&pool->done, &pool->lock, &ts);
    }
    lk = p->done ? p->lookup : NULL;
    pthread_mutex_unlock(&pool->lock);
    if (lk) return lk;
    if (p->timed_out == NULL) {
        log_warn("msg=\"DNSBL lookup not done by its deadline\" client=%s", p->client_ip);
        p->timed_out = dnsbl_ip_unanswered(p->d, p->client_ip, DNS_TIMEOUT);
    }
    return p->timed_out;
}

void dnsbl_pending_free(struct dnsbl_pending *p)
{
    struct dnsbl_pool *pool;
    bool last;
    if (p == NULL) return;
    pool = p->pool;
    pthread_mutex_lock(&pool->lock);
    p->cancelled = true; /* a queued lookup is skipped; a running one ends on its own */
    last = dnsbl_pending_unref_locked(p);
    if (last) pool->live--;
    pthread_mutex_unlock(&pool->lock);
    if (last) dnsbl_pending_destroy(p);
}
