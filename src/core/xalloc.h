/*
 * xalloc - allocation that never returns NULL.
 *
 * On exhaustion these log one line and abort: a daemon that cannot allocate
 * a few bytes cannot do anything useful, and the milter answers tempfail when
 * the process is gone. Callers therefore never check for NULL.
 */
#ifndef MXW_XALLOC_H
#define MXW_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size_bytes);
void *xcalloc(size_t count, size_t size_bytes);
void *xrealloc(void *ptr, size_t size_bytes);
/* Returns a malloc'd copy; xstrdup(NULL) is NULL. Caller frees. */
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t len);

#endif
