/*
 * sqlite_exec - runs SQL on a database file through a connection of its own,
 * the way another process would: a test's fault injection (a trigger that
 * aborts inserts) or its look behind the store's back.
 */
#ifndef MXW_TEST_SQLITE_EXEC_H
#define MXW_TEST_SQLITE_EXEC_H

/* Opens path, runs sql (any number of statements), closes. SQLITE_OK, or SQLite's error code
 * with the message on stderr. */
int test_sqlite_exec(const char *path, const char *sql);

#endif
