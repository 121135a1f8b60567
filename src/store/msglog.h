/*
 * msglog - the message-log writer: one thread, with its own records
 * database connection, that commits the rows many threads hand it in
 * batches (group commit).
 *
 * The gateway must not accept a message before its row is committed
 * (DESIGN.md), so msglog_write() blocks until the batch holding the row is
 * committed and returns that batch's result. The writer starts a batch as
 * soon as a row arrives (no timer): with one message in flight a batch is
 * one row; rows that arrive while a batch is being written wait and go
 * together in the next one, up to MSGLOG_BATCH_MAX, in one transaction
 * (db_messages_insert_batch()). Concurrent writers then share one write lock
 * and one WAL commit instead of queueing on SQLite's busy handler.
 *
 * Ownership: the row is not copied. msglog_write() reads the caller's row
 * and its strings until it returns, and the caller is blocked until then, so
 * stack and per-message memory are fine.
 *
 * Failure: a batch is all or nothing, so every row of a failed batch gets
 * its error (a DB_* code, and err_set() in the caller's thread with the
 * writer's reason). A row db_message_check() refuses is refused in the
 * caller's thread without joining a batch, so it cannot fail others. After a
 * failure the writer closes its connection and opens it again for the next
 * batch; a database that cannot be opened fails the rows of each batch until
 * it can.
 *
 * Database: the URI given to msglog_new(); msglog_set_uri() moves the next
 * batches to another one (a reload that changes [store] db).
 */
#ifndef MXW_MSGLOG_H
#define MXW_MSGLOG_H

#include <stddef.h>
#include <stdint.h>

struct db_message;
struct msglog;

/* Rows per transaction at most. */
#define MSGLOG_BATCH_MAX 256

/* What the writer did so far (for tests and the stop log line). */
struct msglog_stats {
    uint64_t rows;    /* rows the writer committed or failed */
    uint64_t batches; /* transactions it attempted */
    size_t max_batch; /* rows in its largest batch */
    size_t pending;   /* rows handed in whose caller is still waiting */
};

/*
 * Starts the writer thread for the records database at uri (copied), which
 * it opens at once; a database that cannot be opened is logged and tried
 * again at each batch. Free with msglog_free(). Aborts if the thread cannot
 * start.
 */
struct msglog *msglog_new(const char *uri);

/*
 * Appends row to the log and waits until the batch holding it is committed.
 * DB_OK, or the batch's DB_* error with err_set(): the row is then not in
 * the log. row->time 0 means the batch's commit time. Safe from any number
 * of threads at once.
 */
int msglog_write(struct msglog *log, const struct db_message *row);

/* The batches the writer starts from now on go to uri (copied); the one it is writing, if
 * any, goes where it was going. */
void msglog_set_uri(struct msglog *log, const char *uri);

void msglog_stats(struct msglog *log, struct msglog_stats *out);

/*
 * Commits every row handed in so far (their callers get their results),
 * stops the thread, waits for every msglog_write() caller to have returned
 * and frees the writer. No msglog_write() may start once msglog_free() is
 * called (one that still gets in before the writer stops is refused with
 * DB_ERR). NULL is a no-op.
 */
void msglog_free(struct msglog *log);

#endif
