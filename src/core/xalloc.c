/*
 * xalloc - allocation wrappers that abort on exhaustion. See xalloc.h.
 */
#include "core/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void xalloc_die(size_t size_bytes)
{
    fprintf(stderr, "level=fatal msg=\"out of memory\" size_bytes=%zu\n", size_bytes);
    abort();
}

void *xmalloc(size_t size_bytes)
{
    void *p = malloc(size_bytes ? size_bytes : 1);
    if (p == NULL) xalloc_die(size_bytes);
    return p;
}

void *xcalloc(size_t count, size_t size_bytes)
{
    void *p = calloc(count ? count : 1, size_bytes ? size_bytes : 1);
    if (p == NULL) xalloc_die(count * size_bytes);
    return p;
}

void *xrealloc(void *ptr, size_t size_bytes)
{
    void *p = realloc(ptr, size_bytes ? size_bytes : 1);
    if (p == NULL) xalloc_die(size_bytes);
    return p;
}

char *xstrdup(const char *s)
{
    return s ? xstrndup(s, strlen(s)) : NULL;
}

char *xstrndup(const char *s, size_t len)
{
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}
