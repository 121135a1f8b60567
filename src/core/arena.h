/*
 * arena - a bump allocator for everything that lives as long as one message.
 *
 * A scan allocates its parse tree, strings and feature arrays from one arena
 * and frees them all with arena_free(). Allocation never fails (it aborts on
 * exhaustion, like xmalloc). Blocks are 16-byte aligned. Memory obtained with
 * malloc elsewhere can be handed over with arena_adopt() so that it is freed
 * with the arena. Not thread-safe: one arena belongs to one thread at a time.
 */
#ifndef MXW_ARENA_H
#define MXW_ARENA_H

#include <stddef.h>

struct arena;

/* A new arena whose chunks are at least chunk_bytes (0: 64 KiB). Free with arena_free(). */
struct arena *arena_new(size_t chunk_bytes);
/* Frees every block and adopted pointer, then the arena itself. NULL is a no-op. */
void arena_free(struct arena *a);
/* Frees all blocks but keeps the first chunk for reuse. */
void arena_reset(struct arena *a);

/* size_bytes of uninitialised memory owned by the arena. */
void *arena_alloc(struct arena *a, size_t size_bytes);
/* Zeroed memory owned by the arena. */
void *arena_calloc(struct arena *a, size_t count, size_t size_bytes);
/* NUL-terminated copies owned by the arena; NULL in, NULL out. */
char *arena_strdup(struct arena *a, const char *s);
char *arena_strndup(struct arena *a, const char *s, size_t len);
/* A formatted string owned by the arena. */
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The arena takes ownership of ptr (from malloc) and frees it with free() when it is freed. */
void arena_adopt(struct arena *a, void *ptr);
/* Bytes obtained from the system for this arena so far (for memory reports). */
size_t arena_used_bytes(const struct arena *a);

#endif
