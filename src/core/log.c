/*
 * log - key=value log lines on stderr and the per-thread error reason.
 */
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_min_level = LOG_LEVEL_INFO;
static _Thread_local char err_reason[512];

void log_set_level(enum log_level level)
{
    log_min_level = level;
}

static void log_write(enum log_level level, const char *fmt, va_list ap)
{
    static const char *const names[] = {"debug", "info", "warn", "error", "fatal"};
    char line[2048];
    struct timespec now;
    struct tm tm;
    int n;

    if (level < log_min_level) return;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 now.tv_nsec / 1000000, names[level]);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* Nowhere left to report a failure to write the log. */
    }
}

#define LOG_VERB(name, level)                                                                      \
    void name(const char *fmt, ...)                                                                \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        log_write(level, fmt, ap);                                                                 \
        va_end(ap);                                                                                \
    }

LOG_VERB(log_debug, LOG_LEVEL_DEBUG)
LOG_VERB(log_info, LOG_LEVEL_INFO)
LOG_VERB(log_warn, LOG_LEVEL_WARN)
LOG_VERB(log_error, LOG_LEVEL_ERROR)

void log_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_write(LOG_LEVEL_FATAL, fmt, ap);
    va_end(ap);
    exit(1);
}

void err_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_reason, sizeof err_reason, fmt, ap);
    va_end(ap);
}

const char *err_msg(void)
{
    return err_reason;
}
