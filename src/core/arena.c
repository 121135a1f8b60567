/*
 * arena - bump allocation in chunks, freed all at once.
 *
 * Small requests are carved from the current chunk; a request larger than a
 * quarter of the chunk size gets a chunk of its own, so a 50 MB text buffer
 * does not waste the rest of a chunk nor force the next chunk to be huge.
 */
#include "core/arena.h"
#include "core/xalloc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 16

struct arena_chunk {
    struct arena_chunk *next;
    size_t size_bytes; /* usable bytes after the header */
    size_t used_bytes;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

struct arena_adopted {
    struct arena_adopted *next;
    void *ptr;
};

struct arena {
    struct arena_chunk *head; /* current chunk first */
    struct arena_adopted *adopted;
    size_t chunk_bytes;
    size_t total_bytes;
};

static struct arena_chunk *arena_chunk_new(size_t size_bytes)
{
    struct arena_chunk *c = xmalloc(sizeof *c + size_bytes);
    c->next = NULL;
    c->size_bytes = size_bytes;
    c->used_bytes = 0;
    return c;
}

struct arena *arena_new(size_t chunk_bytes)
{
    struct arena *a = xcalloc(1, sizeof *a);
    a->chunk_bytes = chunk_bytes ? chunk_bytes : 64 * 1024;
    a->head = arena_chunk_new(a->chunk_bytes);
    a->total_bytes = a->chunk_bytes;
    return a;
}

static void arena_release(struct arena *a, struct arena_chunk *keep)
{
    struct arena_chunk *c = a->head, *next;
    struct arena_adopted *ad = a->adopted, *adnext;

    for (; ad; ad = adnext) {
        adnext = ad->next;
        free(ad->ptr);
    }
    a->adopted = NULL;
    for (; c; c = next) {
        next = c->next;
        if (c != keep) free(c);
    }
}

void arena_free(struct arena *a)
{
    if (a == NULL) return;
    arena_release(a, NULL);
    free(a);
}

void arena_reset(struct arena *a)
{
    struct arena_chunk *last = a->head;

    /* The first chunk allocated is the last in the list and has the default size. */
    while (last->next) last = last->next;
    /* Adopted records live in chunks, so walk them before releasing chunks. */
    arena_release(a, last);
    last->used_bytes = 0;
    last->next = NULL;
    a->head = last;
    a->total_bytes = last->size_bytes;
}

void *arena_alloc(struct arena *a, size_t size_bytes)
{
    struct arena_chunk *c = a->head;
    size_t need = (size_bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    void *p;

    if (need < size_bytes) abort(); /* overflow */
    if (need > a->chunk_bytes / 4) {
        /* Oversized: its own chunk, linked behind the current one. */
        struct arena_chunk *big = arena_chunk_new(need);
        big->used_bytes = need;
        big->next = c->next;
        c->next = big;
        a->total_bytes += need;
        return big->data;
    }
    if (c->size_bytes - c->used_bytes < need) {
        c = arena_chunk_new(a->chunk_bytes);
        c->next = a->head;
        a->head = c;
        a->total_bytes += a->chunk_bytes;
    }
    p = c->data + c->used_bytes;
    c->used_bytes += need;
    return p;
}

void *arena_calloc(struct arena *a, size_t count, size_t size_bytes)
{
    void *p;
    if (size_bytes && count > SIZE_MAX / size_bytes) abort();
    p = arena_alloc(a, count * size_bytes);
    memset(p, 0, count * size_bytes);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
    char *p;
    if (s == NULL) return NULL;
    p = arena_alloc(a, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return s ? arena_strndup(a, s, strlen(s)) : NULL;
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    int n;
    char *p;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return arena_strdup(a, "");
    p = arena_alloc(a, (size_t)n + 1);
    if ((size_t)n < sizeof small) {
        memcpy(p, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return p;
}

void arena_adopt(struct arena *a, void *ptr)
{
    struct arena_adopted *ad;
    if (ptr == NULL) return;
    ad = arena_alloc(a, sizeof *ad);
    ad->ptr = ptr;
    ad->next = a->adopted;
    a->adopted = ad;
}

size_t arena_used_bytes(const struct arena *a)
{
    return a->total_bytes;
}
