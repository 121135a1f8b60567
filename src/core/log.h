/*
 * log - one line per event on stderr, as key=value pairs.
 *
 * Four verbs: log_info, log_warn, log_error, and log_fatal (which exits with
 * status 1). The format string should itself be key=value pairs; the line is
 * prefixed with ts= and level=. Lines are written with a single write(2) so
 * that threads do not interleave them.
 *
 * err_set()/err_msg() carry a human-readable reason for the last failure of
 * the calling thread, the way errno does for system calls: a function that
 * returns an error code sets it, and its caller may log it.
 */
#ifndef MXW_LOG_H
#define MXW_LOG_H

#include <stdarg.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR, LOG_LEVEL_FATAL };

/* Messages below this level are dropped. Default: LOG_LEVEL_INFO. */
void log_set_level(enum log_level level);

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Records the reason for the current failure (thread-local, truncated to 511 bytes). */
void err_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The last reason set by err_set() in this thread, or "" if none. */
const char *err_msg(void);

#endif
