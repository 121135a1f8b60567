/*
 * file - reading whole files and streams into memory.
 */
#ifndef MXW_FILE_H
#define MXW_FILE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Reads all of path ("-" for standard input) into a malloc'd buffer (caller
 * frees; NUL-terminated, the NUL not counted in *len). Returns 0, or -1 with
 * err_set() naming the reason (not found, a directory, permission, I/O).
 */
int file_read(const char *path, char **data, size_t *len);

/* Creates the directories leading to path (like mkdir -p of its dirname).
 * Returns 0, or -1 with err_set(). */
int file_mkdir_parents(const char *path);

/* True if path names a directory (following symbolic links). */
bool file_is_dir(const char *path);

#endif
