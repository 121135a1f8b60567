/*
 * tmpdir - a private scratch directory for a test, removed with everything in it.
 */
#ifndef MXW_TEST_TMPDIR_H
#define MXW_TEST_TMPDIR_H

#include <stddef.h>

/* Creates /tmp/mxw-test-<tag>-XXXXXX (or under $TMPDIR) into dir; 0, or -1. */
int test_tmpdir_make(char *dir, size_t size, const char *tag);
/* Removes dir and its contents; 0, or -1. */
int test_tmpdir_remove(const char *dir);

#endif
