/* sqlite_exec - see sqlite_exec.h. */
#include "sqlite_exec.h"

#include <sqlite3.h>
#include <stdio.h>

int test_sqlite_exec(const char *path, const char *sql)
{
    sqlite3 *raw = NULL;
    char *msg = NULL;
    int rc = sqlite3_open(path, &raw);
    if (rc == SQLITE_OK) rc = sqlite3_exec(raw, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "test_sqlite_exec %s: %s\n", path, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    sqlite3_close(raw);
    return rc;
}
