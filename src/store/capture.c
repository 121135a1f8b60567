/*
 * capture - raw message files under a directory. See capture.h.
 *
 * Every path this module opens is built from the caller's directory plus
 * names it validated itself: a day directory from digits, a file name from a
 * checked id. capture_read()/capture_delete() re-parse the relative path
 * completely rather than trusting it, since it comes back from a database
 * row or a web request. Nothing follows a name containing "/" or "..".
 *
 * Failure paths unlink the temporary file; a crash between write and rename
 * leaves ".ID.XXXXXX.tmp", which purge removes with its day.
 */
#include "store/capture.h"
#include "core/file.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* True if id is 1..CAPTURE_ID_MAX characters of [A-Za-z0-9_-]. */
static bool capture_id_valid(const char *id, size_t len)
{
    size_t i;
    if (len == 0 || len > CAPTURE_ID_MAX) return false;
    for (i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* True if s is exactly n decimal digits. */
static bool capture_digits(const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return s[n] == '\0';
}

/* True if rel is "YYYY/MM/DD/ID.eml" with a valid id. */
static bool capture_rel_valid(const char *rel)
{
    size_t len, id_len;
    if (rel == NULL) return false;
    len = strnlen(rel, CAPTURE_REL_MAX);
    if (len < 11 + 1 + 4 || len >= CAPTURE_REL_MAX) return false;
    for (size_t i = 0; i < 10; i++) {
        bool slash = i == 4 || i == 7;
        if (slash ? rel[i] != '/' : (rel[i] < '0' || rel[i] > '9')) return false;
    }
    if (rel[10] != '/') return false;
    if (memcmp(rel + len - 4, ".eml", 4) != 0) return false;
    id_len = len - 11 - 4;
    return capture_id_valid(rel + 11, id_len);
}

/* Creates path (one level) with mode 0700 unless it exists as a directory. */
static int capture_mkdir(const char *path)
{
    if (mkdir(path, 0700) == 0 || (errno == EEXIST && file_is_dir(path))) return 0;
    err_set("capture: cannot create directory %s: %s", path, strerror(errno));
    return -1;
}

/* fsyncs a directory so that a rename or unlink in it is durable. */
static int capture_sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;
    if (fd < 0) {
        err_set("capture: cannot open directory %s: %s", path, strerror(errno));
        return -1;
    }
    rc = fsync(fd);
    if (rc != 0) err_set("capture: cannot sync directory %s: %s", path, strerror(errno));
    close(fd);
    return rc == 0 ? 0 : -1;
}

/* Writes all of data to fd; 0 or -1 with errno. */
static int capture_write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int capture_write(const char *dir, const char *id, time_t when, const void *data, size_t len,
                  char *rel)
{
    return capture_write_flags(dir, id, when, data, len, CAPTURE_SYNC, rel);
}

int capture_write_flags(const char *dir, const char *id, time_t when, const void *data,
                        size_t len, unsigned flags, char *rel)
{
    char day[4096], tmp[4096], final[4096];
    struct tm tm;
    int fd;

    rel[0] = '\0';
    if (id == NULL || !capture_id_valid(id, strnlen(id, CAPTURE_ID_MAX + 1))) {
        err_set("capture: invalid id \"%.80s\" (expected 1..%d of [A-Za-z0-9_-])", id ? id : "",
                CAPTURE_ID_MAX);
        return -1;
    }
    if (gmtime_r(&when, &tm) == NULL || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
        err_set("capture: time %lld out of range", (long long)when);
        return -1;
    }
    if ((size_t)snprintf(day, sizeof day, "%s/%04d/%02d/%02d", dir, tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday) >= sizeof day - CAPTURE_REL_MAX - 16) {
        err_set("capture: directory name too long: %.100s", dir);
        return -1;
    }
    /* dir itself may be nested (var/capture): create its parents the usual way, then each date
     * level private. */
    snprintf(tmp, sizeof tmp, "%s/x", dir);
    if (file_mkdir_parents(tmp) != 0) return -1;
    snprintf(tmp, sizeof tmp, "%.*s", (int)(strlen(dir) + 5), day);
    if (capture_mkdir(tmp) != 0) return -1;
    snprintf(tmp, sizeof tmp, "%.*s", (int)(strlen(dir) + 8), day);
    if (capture_mkdir(tmp) != 0 || capture_mkdir(day) != 0) return -1;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX.tmp", day, id) >= sizeof tmp ||
        (size_t)snprintf(final, sizeof final, "%s/%s.eml", day, id) >= sizeof final) {
        err_set("capture: directory name too long: %.100s", dir);
        return -1;
    }
    fd = mkostemps(tmp, 4, O_CLOEXEC);
    if (fd < 0) {
        err_set("capture: cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    if (capture_write_all(fd, data, len) != 0 || ((flags & CAPTURE_SYNC) && fsync(fd) != 0)) {
        err_set("capture: cannot write %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd) != 0) {
        err_set("capture: cannot write %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, final) != 0) {
        err_set("capture: cannot rename %s to %s: %s", tmp, final, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if ((flags & CAPTURE_SYNC) && capture_sync_dir(day) != 0) return -1;
    snprintf(rel, CAPTURE_REL_MAX, "%04d/%02d/%02d/%s.eml", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, id);
    return 0;
}

/* Builds dir/rel into path after checking rel's shape; 0 or -1 with err_set. */
static int capture_path(const char *dir, const char *rel, char *path, size_t size)
{
    if (!capture_rel_valid(rel)) {
        err_set("capture: \"%.100s\" is not a capture path (YYYY/MM/DD/ID.eml)", rel ? rel : "");
        return -1;
    }
    if ((size_t)snprintf(path, size, "%s/%s", dir, rel) >= size) {
        err_set("capture: path too long under %.100s", dir);
        return -1;
    }
    return 0;
}

int capture_read(const char *dir, const char *rel, char **data, size_t *len)
{
    char path[4096];
    *data = NULL;
    *len = 0;
    if (capture_path(dir, rel, path, sizeof path) != 0) return -1;
    if (file_read(path, data, len) != 0) {
        err_set("capture: cannot read %s: %s", path, err_msg());
        return -1;
    }
    return 0;
}

int capture_delete(const char *dir, const char *rel, int *existed)
{
    char path[4096];
    if (existed) *existed = 0;
    if (capture_path(dir, rel, path, sizeof path) != 0) return -1;
    if (unlink(path) != 0) {
        if (errno == ENOENT) return 0;
        err_set("capture: cannot delete %s: %s", path, strerror(errno));
        return -1;
    }
    if (existed) *existed = 1;
    return 0;
}

/* True if name is a file purge may remove: "ID.eml" or ".ID.XXXXXX.tmp". */
static bool capture_purgeable(const char *name)
{
    size_t len = strlen(name);
    if (len > 4 && strcmp(name + len - 4, ".eml") == 0) return capture_id_valid(name, len - 4);
    return name[0] == '.' && len > 5 && strcmp(name + len - 4, ".tmp") == 0 &&
           strchr(name, '/') == NULL;
}

/* Deletes the capture files of one day directory and the directory if that empties it. */
static int capture_purge_day(const char *path, size_t *deleted)
{
    DIR *d = opendir(path);
    struct dirent *e;
    int rc = 0;
    if (d == NULL) {
        err_set("capture: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        char file[4096];
        if (!capture_purgeable(e->d_name)) continue;
        if ((size_t)snprintf(file, sizeof file, "%s/%s", path, e->d_name) >= sizeof file) continue;
        if (unlink(file) != 0 && errno != ENOENT) {
            err_set("capture: cannot delete %s: %s", file, strerror(errno));
            rc = -1;
            break;
        }
        if (e->d_name[0] != '.') (*deleted)++;
    }
    closedir(d);
    if (rc == 0) (void)rmdir(path); /* fails harmlessly if something else lives there */
    return rc;
}

/* Purges under path, a directory of the layout at level (0: DIR with years, 1: a year with
 * months, 2: a month with days); prefix is the year (level 1) or year*100+month (level 2) and
 * cutoff_key the first day to keep as YYYYMMDD. */
static int capture_purge_level(const char *path, int level, int prefix, int cutoff_key,
                               size_t *deleted)
{
    static const size_t widths[3] = {4, 2, 2};
    DIR *d = opendir(path);
    struct dirent *e;
    int rc = 0;

    if (d == NULL) {
        if (errno == ENOENT) return 0;
        err_set("capture: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char sub[4096];
        int key;
        if (!capture_digits(e->d_name, widths[level])) continue;
        key = prefix * (level == 0 ? 1 : 100) + atoi(e->d_name);
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= sizeof sub) continue;
        if (level < 2) {
            /* A year or month wholly after the cutoff day holds nothing to purge. */
            int scale = level == 0 ? 10000 : 100;
            if (key * scale > cutoff_key) continue;
            rc = capture_purge_level(sub, level + 1, key, cutoff_key, deleted);
            if (rc == 0) (void)rmdir(sub); /* only if emptied */
        } else if (key < cutoff_key) {
            rc = capture_purge_day(sub, deleted);
        }
    }
    closedir(d);
    return rc;
}

int capture_purge_before(const char *dir, time_t cutoff, size_t *deleted)
{
    struct tm tm;
    size_t ignored = 0;
    int cutoff_key;

    if (deleted == NULL) deleted = &ignored;
    *deleted = 0;
    if (gmtime_r(&cutoff, &tm) == NULL) {
        err_set("capture: time %lld out of range", (long long)cutoff);
        return -1;
    }
    cutoff_key = (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
    return capture_purge_level(dir, 0, 0, cutoff_key, deleted);
}
