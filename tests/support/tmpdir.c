/*
 * tmpdir - private scratch directories for tests. See tmpdir.h.
 */
#include "tmpdir.h"

#include <stdio.h>
#include <stdlib.h>

int test_tmpdir_make(char *dir, size_t size, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, size, "%s/mxw-test-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    return mkdtemp(dir) ? 0 : -1;
}

int test_tmpdir_remove(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}
