/*
 * msglog - the message-log writer (group commit). See msglog.h.
 *
 * Queue. A caller of msglog_write() builds a struct msglog_entry on its own
 * stack, pointing at its row, links it at the tail of a FIFO list and sleeps
 * on `done` until the writer marks the entry done. The writer takes up to
 * MSGLOG_BATCH_MAX entries from the head, copies the row structs (not their
 * strings) into its batch array, writes them with one
 * db_messages_insert_batch() and marks every entry of the batch done with
 * the result. Nothing is allocated per row.
 *
 * Locking: one mutex, `lock`, and two condition variables.
 *   - Guarded by lock: the queue (head, tail, queued), in_batch, callers,
 *     stopping, uri, stats, and the fields of every entry from the moment it
 *     is linked until its caller has seen done (done, rc, err; next while it
 *     is queued).
 *   - Owned by the writer thread alone, so unlocked: db, db_uri,
 *     open_failing and the batch arrays. msglog_new() sets them before the
 *     thread exists and msglog_free() reads them after pthread_join(), both
 *     ordered by thread creation and join.
 *   - `wake`: the writer waits for a queued row or for stopping. Only the
 *     writer waits on it, so a signal suffices.
 *   - `done`: callers wait for their entry, msglog_free() for the last caller
 *     to leave. Several callers wait at once, each for its own entry, so the
 *     writer broadcasts after each batch; a caller whose entry is not yet done
 *     sleeps again.
 * Lifetimes: an entry lives on its caller's stack. The writer touches it
 * only under lock or while it is in the batch being written (the row it
 * points at, read without the lock: the caller is asleep and changes
 * nothing until done). It sets done last for each entry and drops the lock
 * before the caller can see done, so it never touches an entry whose caller
 * may have returned. The writer runs the database calls without the lock,
 * so callers keep queueing during a commit: that is what makes the next
 * batch bigger than one row under load.
 *
 * Stop: msglog_free() sets stopping (new writes are refused from then on),
 * wakes the writer, which leaves its loop only when the queue is empty, so
 * every row queued before the stop is written and answered; joins it; then
 * waits until callers (counted under lock from enqueue to return) is 0, so
 * nobody is still inside pthread_cond_wait() on `done` or holds `lock` when
 * they are destroyed.
 *
 * The writer thread blocks every signal: the daemon's handlers run on the
 * other threads, and SQLite's system calls in the writer are not
 * interrupted.
 */
#include "store/msglog.h"
#include "core/log.h"
#include "core/xalloc.h"
#include "store/db.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One row handed in: lives on the stack of the msglog_write() call. */
struct msglog_entry {
    const struct db_message *row; /* the caller's; read until done */
    struct msglog_entry *next;    /* the next in the queue */
    bool done;                    /* the batch holding the row was written or failed */
    int rc;                       /* its result */
    char err[512];                /* its err_msg() when rc != DB_OK */
};

struct msglog {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the writer: a row was queued, or stopping */
    pthread_cond_t done; /* callers: a batch finished; msglog_free(): the last caller left */
    /* Guarded by lock. */
    struct msglog_entry *head, *tail; /* FIFO; tail NULL when empty */
    size_t queued;                    /* entries in the list */
    size_t in_batch;                  /* entries taken and being written */
    size_t callers;                   /* threads inside msglog_write() past the check */
    bool stopping;
    char *uri; /* where the next batch goes */
    struct msglog_stats stats;
    /* The writer thread's own. */
    pthread_t thread;
    struct db *db;     /* NULL while closed */
    char *db_uri;      /* what db was (or is to be) opened with */
    bool open_failing; /* the last open failed (warned once per outage) */
    struct msglog_entry *batch[MSGLOG_BATCH_MAX];
    struct db_message rows[MSGLOG_BATCH_MAX];
};

/* The writer's connection to db_uri, opened if closed; NULL with err_set() when it cannot be. */
static struct db *msglog_db(struct msglog *log)
{
    if (log->db != NULL) return log->db;
    if (db_open(log->db_uri, &log->db) != DB_OK) {
        if (!log->open_failing)
            log_warn("msg=\"message log database not available\" db=%s reason=\"%s\"", log->db_uri,
                     err_msg());
        log->open_failing = true;
        log->db = NULL;
        return NULL;
    }
    if (log->open_failing) log_info("msg=\"message log database available\" db=%s", log->db_uri);
    log->open_failing = false;
    return log->db;
}

/* Writes rows[0..n) in one transaction. Without the lock. */
static int msglog_commit(struct msglog *log, size_t n)
{
    struct db *db = msglog_db(log);
    int rc;
    if (db == NULL) return DB_ERR;
    rc = db_messages_insert_batch(db, log->rows, n, NULL);
    if (rc != DB_OK) {
        /* Start afresh at the next batch: a file replaced or damaged under us is reopened. */
        db_close(log->db);
        log->db = NULL;
    }
    return rc;
}

static void *msglog_main(void *arg)
{
    struct msglog *log = arg;
    char reason[512];
    size_t n, i;
    bool reopen;
    int rc;

    (void)msglog_db(log);
    pthread_mutex_lock(&log->lock);
    for (;;) {
        while (log->head == NULL && !log->stopping)
            pthread_cond_wait(&log->wake, &log->lock);
        if (log->head == NULL) break; /* stopping, and every row queued before is written */
        for (n = 0; n < MSGLOG_BATCH_MAX && log->head != NULL; n++) {
            struct msglog_entry *e = log->head;
            log->head = e->next;
            log->batch[n] = e;
            log->rows[n] = *e->row;
        }
        if (log->head == NULL) log->tail = NULL;
        log->queued -= n;
        log->in_batch = n;
        reopen = strcmp(log->uri, log->db_uri) != 0;
        if (reopen) {
            free(log->db_uri);
            log->db_uri = xstrdup(log->uri);
        }
        pthread_mutex_unlock(&log->lock);

        if (reopen) {
            db_close(log->db);
            log->db = NULL;
            log->open_failing = false;
        }
        rc = msglog_commit(log, n);
        if (rc != DB_OK) snprintf(reason, sizeof reason, "%s", err_msg());

        pthread_mutex_lock(&log->lock);
        for (i = 0; i < n; i++) {
            struct msglog_entry *e = log->batch[i];
            e->rc = rc;
            if (rc != DB_OK) memcpy(e->err, reason, sizeof e->err);
            e->done = true; /* last: from here the entry is its caller's again */
        }
        log->in_batch = 0;
        log->stats.rows += n;
        log->stats.batches++;
        if (n > log->stats.max_batch) log->stats.max_batch = n;
        pthread_cond_broadcast(&log->done);
    }
    pthread_mutex_unlock(&log->lock);
    return NULL;
}

struct msglog *msglog_new(const char *uri)
{
    struct msglog *log = xcalloc(1, sizeof *log);
    sigset_t all, old;

    pthread_mutex_init(&log->lock, NULL);
    pthread_cond_init(&log->wake, NULL);
    pthread_cond_init(&log->done, NULL);
    log->uri = xstrdup(uri);
    log->db_uri = xstrdup(uri);
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* the thread inherits the mask */
    if (pthread_create(&log->thread, NULL, msglog_main, log) != 0)
        log_fatal("msg=\"cannot start the message log writer\"");
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return log;
}

int msglog_write(struct msglog *log, const struct db_message *row)
{
    struct msglog_entry e;

    /* A bad row is refused here, alone, instead of failing the batch it would join. */
    if (db_message_check(row) != DB_OK) return DB_ERR;
    e.row = row;
    e.next = NULL;
    e.done = false;
    e.rc = DB_ERR;
    e.err[0] = '\0';

    pthread_mutex_lock(&log->lock);
    if (log->stopping) {
        pthread_mutex_unlock(&log->lock);
        err_set("msglog: the message log writer is stopping");
        return DB_ERR;
    }
    log->callers++;
    if (log->tail)
        log->tail->next = &e;
    else
        log->head = &e;
    log->tail = &e;
    log->queued++;
    pthread_cond_signal(&log->wake);
    while (!e.done)
        pthread_cond_wait(&log->done, &log->lock);
    log->callers--;
    if (log->callers == 0 && log->stopping) pthread_cond_broadcast(&log->done);
    pthread_mutex_unlock(&log->lock);

    if (e.rc != DB_OK) err_set("%s", e.err);
    return e.rc;
}

void msglog_set_uri(struct msglog *log, const char *uri)
{
    char *copy = xstrdup(uri), *old;
    pthread_mutex_lock(&log->lock);
    old = log->uri;
    log->uri = copy;
    pthread_mutex_unlock(&log->lock);
    free(old);
}

void msglog_stats(struct msglog *log, struct msglog_stats *out)
{
    pthread_mutex_lock(&log->lock);
    *out = log->stats;
    out->pending = log->queued + log->in_batch;
    pthread_mutex_unlock(&log->lock);
}

void msglog_free(struct msglog *log)
{
    if (log == NULL) return;
    pthread_mutex_lock(&log->lock);
    log->stopping = true;
    pthread_cond_signal(&log->wake);
    pthread_mutex_unlock(&log->lock);
    pthread_join(log->thread, NULL);

    pthread_mutex_lock(&log->lock);
    while (log->callers > 0)
        pthread_cond_wait(&log->done, &log->lock);
    pthread_mutex_unlock(&log->lock);

    log_info("msg=\"message log writer stopped\" rows=%llu batches=%llu max_batch=%zu",
             (unsigned long long)log->stats.rows, (unsigned long long)log->stats.batches,
             log->stats.max_batch);
    db_close(log->db);
    free(log->db_uri);
    free(log->uri);
    pthread_cond_destroy(&log->done);
    pthread_cond_destroy(&log->wake);
    pthread_mutex_destroy(&log->lock);
    free(log);
}
