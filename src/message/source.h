/*
 * source - the messages named on a command line: files, directories
 * (recursively, in name order) and mbox files (split on "From " lines).
 *
 * source_each() calls the callback once per message with its bytes (valid
 * only during the call) and a label for messages ("path" or "path#3" for the
 * third message of an mbox). A path that cannot be read is reported through
 * the error callback and the walk goes on.
 */
#ifndef MXW_SOURCE_H
#define MXW_SOURCE_H

#include <stddef.h>

typedef int (*source_message_fn)(void *ctx, const char *label, const char *data, size_t len);
typedef void (*source_error_fn)(void *ctx, const char *path, const char *reason);

/*
 * Walks path. Returns the number of messages seen, or -1 if the callback
 * asked to stop (by returning non-zero). Hidden files (".name") in
 * directories are skipped.
 */
long source_each(const char *path, source_message_fn on_message, source_error_fn on_error,
                 void *ctx);

/*
 * Calls on_message once per message of the mbox data[0..len), labelled
 * "label#N". Returns the number of messages, or -1 if the callback asked to stop.
 */
long source_mbox_each(const char *label, const char *data, size_t len,
                      source_message_fn on_message, void *ctx);

/* True if data looks like an mbox file (starts with a "From " separator line). */
int source_is_mbox(const char *data, size_t len);

#endif
