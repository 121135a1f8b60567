/*
 * capture - raw messages appended to day segments under a directory. See
 * capture.h.
 *
 * Every path this module opens is built from the caller's directory plus
 * names it validated itself: a day directory from digits, a segment name
 * from digits, an old-layout file name from a checked id. capture_read() and
 * capture_delete() re-parse the reference completely rather than trusting
 * it, since it comes back from a database row or a web request, and check
 * its range against the file. Nothing follows a name containing "/" or "..".
 *
 * The open segment (one per process and day) is shared by the writing
 * threads under seg_lock. A record goes out with one writev() at the
 * segment's end; a short or failed write is cut off again with ftruncate(),
 * so the next record starts where this one would have.
 */
#include "store/capture.h"
#include "core/file.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define SEG_MAGIC "MXWCAP1 "
/* A capture longer than this is refused when read back (the gateway's limit is far lower). */
#define CAPTURE_MAX_BYTES ((uint64_t)1 << 32)

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

/* A reference, taken apart: the file under dir and, for a segment, the byte range. */
struct capture_ref {
    char file[CAPTURE_REL_MAX]; /* "YYYY/MM/DD/s123.seg" or "YYYY/MM/DD/ID.eml" */
    bool segment;
    uint64_t offset, length;
};

/* Parses decimal s[0..n) (1..20 digits) into *v; false on anything else or overflow. */
static bool capture_number(const char *s, size_t n, uint64_t *v)
{
    size_t i;
    *v = 0;
    if (n == 0 || n > 20) return false;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        if (*v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10) return false;
        *v = *v * 10 + (uint64_t)(s[i] - '0');
    }
    return true;
}

/*
 * Parses rel: "YYYY/MM/DD/s<PID>.seg:<OFFSET>:<LENGTH>" or the old
 * "YYYY/MM/DD/ID.eml". False for anything else, a range past INT64_MAX or a
 * length above CAPTURE_MAX_BYTES.
 */
static bool capture_ref_parse(const char *rel, struct capture_ref *r)
{
    size_t len, name_len;
    const char *name, *colon1, *colon2;
    if (rel == NULL) return false;
    len = strnlen(rel, CAPTURE_REL_MAX);
    if (len < 11 + 1 + 4 || len >= CAPTURE_REL_MAX) return false;
    for (size_t i = 0; i < 10; i++) {
        bool slash = i == 4 || i == 7;
        if (slash ? rel[i] != '/' : (rel[i] < '0' || rel[i] > '9')) return false;
    }
    if (rel[10] != '/') return false;
    name = rel + 11;
    memset(r, 0, sizeof *r);
    colon1 = strchr(name, ':');
    if (colon1 == NULL) { /* the old layout */
        name_len = len - 11;
        if (name_len <= 4 || memcmp(rel + len - 4, ".eml", 4) != 0 ||
            !capture_id_valid(name, name_len - 4))
            return false;
        memcpy(r->file, rel, len + 1);
        return true;
    }
    colon2 = strchr(colon1 + 1, ':');
    name_len = (size_t)(colon1 - name);
    if (colon2 == NULL || name_len < 6 || name[0] != 's' ||
        memcmp(colon1 - 4, ".seg", 4) != 0)
        return false;
    for (size_t i = 1; i < name_len - 4; i++)
        if (name[i] < '0' || name[i] > '9') return false;
    if (!capture_number(colon1 + 1, (size_t)(colon2 - colon1 - 1), &r->offset) ||
        !capture_number(colon2 + 1, strlen(colon2 + 1), &r->length) ||
        r->offset > (uint64_t)INT64_MAX - r->length || r->length > CAPTURE_MAX_BYTES)
        return false;
    memcpy(r->file, rel, 11 + name_len);
    r->file[11 + name_len] = '\0';
    r->segment = true;
    return true;
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

/* Writes all of iov[0..n) to fd (advancing over short writes); 0 or -1 with errno. */
static int capture_writev_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* The segment this process appends to; seg_lock guards all of it. */
static pthread_mutex_t seg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    int fd;                 /* -1: none open */
    char dir[PATH_MAX];     /* the capture directory it is under */
    int day;                /* YYYYMMDD */
    uint64_t size;          /* where the next record starts */
    char rel[CAPTURE_REL_MAX]; /* "YYYY/MM/DD/s<pid>.seg" */
} seg = {.fd = -1};

/* Opens (creating) this process's segment of tm's day under dir as the current one; with
 * sync, a new segment's directory is synced. 0, or -1 with err_set. Called with seg_lock. */
static int capture_segment_open(const char *dir, const struct tm *tm, bool sync)
{
    char day[PATH_MAX + 16], path[PATH_MAX + 64];
    struct stat st;
    bool created = false;
    int fd;

    if ((size_t)snprintf(day, sizeof day, "%s/%04d/%02d/%02d", dir, tm->tm_year + 1900,
                         tm->tm_mon + 1, tm->tm_mday) >= sizeof day - 32 ||
        strlen(dir) >= sizeof seg.dir) {
        err_set("capture: directory name too long: %.100s", dir);
        return -1;
    }
    /* dir itself may be nested (var/capture): create its parents the usual way, then each date
     * level private. */
    snprintf(path, sizeof path, "%s/x", dir);
    if (file_mkdir_parents(path) != 0) return -1;
    snprintf(path, sizeof path, "%.*s", (int)(strlen(dir) + 5), day);
    if (capture_mkdir(path) != 0) return -1;
    snprintf(path, sizeof path, "%.*s", (int)(strlen(dir) + 8), day);
    if (capture_mkdir(path) != 0 || capture_mkdir(day) != 0) return -1;

    snprintf(path, sizeof path, "%s/s%ld.seg", day, (long)getpid());
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0)
        created = true;
    else if (errno == EEXIST)
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        err_set("capture: cannot open %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    if (created && sync && capture_sync_dir(day) != 0) {
        close(fd);
        return -1;
    }
    if (seg.fd >= 0) close(seg.fd);
    seg.fd = fd;
    snprintf(seg.dir, sizeof seg.dir, "%s", dir);
    seg.day = (tm->tm_year + 1900) * 10000 + (tm->tm_mon + 1) * 100 + tm->tm_mday;
    seg.size = (uint64_t)st.st_size;
    snprintf(seg.rel, sizeof seg.rel, "%04d/%02d/%02d/s%ld.seg", tm->tm_year + 1900,
             tm->tm_mon + 1, tm->tm_mday, (long)getpid());
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
    char header[sizeof SEG_MAGIC + CAPTURE_ID_MAX + 24];
    struct iovec iov[3];
    struct tm tm;
    int day, header_len, rc = -1;
    uint64_t offset;

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
    if ((uint64_t)len > CAPTURE_MAX_BYTES) {
        err_set("capture: %zu bytes is more than a capture holds", len);
        return -1;
    }
    header_len = snprintf(header, sizeof header, SEG_MAGIC "%s %zu\n", id, len);
    day = (tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;

    pthread_mutex_lock(&seg_lock);
    if (seg.fd >= 0) {
        /* A segment deleted under us (an operator removed the day) would take every later
         * capture with it: start a new one. */
        struct stat st;
        if (fstat(seg.fd, &st) != 0 || st.st_nlink == 0) {
            close(seg.fd);
            seg.fd = -1;
        }
    }
    if ((seg.fd < 0 || seg.day != day || strcmp(seg.dir, dir) != 0) &&
        capture_segment_open(dir, &tm, (flags & CAPTURE_SYNC) != 0) != 0)
        goto out;
    iov[0] = (struct iovec){header, (size_t)header_len};
    iov[1] = (struct iovec){(void *)data, len};
    iov[2] = (struct iovec){(void *)"\n", 1};
    if (capture_writev_all(seg.fd, iov, 3) != 0 ||
        ((flags & CAPTURE_SYNC) && fdatasync(seg.fd) != 0)) {
        err_set("capture: cannot write to %s/%s: %s", dir, seg.rel, strerror(errno));
        /* Cut the partial record off; if even that fails, start a new segment next time
         * (this one stays walkable up to here, and its readers check every range). */
        if (ftruncate(seg.fd, (off_t)seg.size) != 0) {
            close(seg.fd);
            seg.fd = -1;
        }
        goto out;
    }
    offset = seg.size + (uint64_t)header_len;
    seg.size = offset + len + 1;
    if ((size_t)snprintf(rel, CAPTURE_REL_MAX, "%s:%" PRIu64 ":%zu", seg.rel, offset, len) >=
        CAPTURE_REL_MAX) { /* cannot happen: seg.rel is at most 26 bytes */
        rel[0] = '\0';
        err_set("capture: reference too long");
        goto out;
    }
    rc = 0;
out:
    pthread_mutex_unlock(&seg_lock);
    return rc;
}

/* Parses rel and builds dir/<its file> into path; 0 or -1 with err_set. */
static int capture_locate(const char *dir, const char *rel, struct capture_ref *r, char *path,
                          size_t size)
{
    if (!capture_ref_parse(rel, r)) {
        err_set("capture: \"%.100s\" is not a capture path (YYYY/MM/DD/s<pid>.seg:<offset>:"
                "<length>)",
                rel ? rel : "");
        return -1;
    }
    if ((size_t)snprintf(path, size, "%s/%s", dir, r->file) >= size) {
        err_set("capture: path too long under %.100s", dir);
        return -1;
    }
    return 0;
}

/* Reads exactly n bytes at offset; 0 or -1 with errno (EIO for end of file). */
static int capture_pread_all(int fd, char *buf, size_t n, uint64_t offset)
{
    while (n > 0) {
        ssize_t got = pread(fd, buf, n, (off_t)offset);
        if (got < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (got == 0) {
            errno = EIO;
            return -1;
        }
        buf += got;
        n -= (size_t)got;
        offset += (uint64_t)got;
    }
    return 0;
}

/* Opens a segment and checks r's range lies inside it; the fd, or -1 with err_set. */
static int capture_segment_range(const char *path, const struct capture_ref *r, int mode)
{
    struct stat st;
    int fd = open(path, mode | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        err_set("capture: cannot open %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    if (r->offset + r->length > (uint64_t)st.st_size) {
        err_set("capture: %s holds no capture at %" PRIu64 "+%" PRIu64 " (size %lld)", path,
                r->offset, r->length, (long long)st.st_size);
        close(fd);
        return -1;
    }
    return fd;
}

/* A deleted capture's bytes read back as zeros; a message never starts with a NUL. */
static bool capture_zeroed(const char *head, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (head[i] != '\0') return false;
    return true;
}

int capture_read(const char *dir, const char *rel, char **data, size_t *len)
{
    char path[4096], *buf;
    struct capture_ref r;
    int fd;

    *data = NULL;
    *len = 0;
    if (capture_locate(dir, rel, &r, path, sizeof path) != 0) return -1;
    if (!r.segment) { /* an old-layout file */
        if (file_read(path, data, len) != 0) {
            err_set("capture: cannot read %s: %s", path, err_msg());
            return -1;
        }
        return 0;
    }
    if ((fd = capture_segment_range(path, &r, O_RDONLY)) < 0) return -1;
    /* A record's bytes end at its closing '\n': room for it, read with them. */
    buf = xmalloc((size_t)r.length + 1);
    if (capture_pread_all(fd, buf, (size_t)r.length + 1, r.offset) != 0 ||
        buf[r.length] != '\n') {
        err_set("capture: %s: no capture ends at %" PRIu64 "+%" PRIu64, path, r.offset,
                r.length);
        goto fail;
    }
    if (r.length > 0 && capture_zeroed(buf, r.length < 16 ? (size_t)r.length : 16)) {
        err_set("capture: %s was deleted", rel);
        goto fail;
    }
    close(fd);
    buf[r.length] = '\0';
    *data = buf;
    *len = (size_t)r.length;
    return 0;
fail:
    close(fd);
    free(buf);
    return -1;
}

/* Overwrites [offset, offset+len) of fd with zeros the way the filesystem allows. */
static int capture_erase(int fd, uint64_t offset, uint64_t len)
{
    static const char zeros[65536];
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len) == 0)
        return 0;
    while (len > 0) {
        size_t n = len < sizeof zeros ? (size_t)len : sizeof zeros;
        ssize_t w = pwrite(fd, zeros, n, (off_t)offset);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        offset += (uint64_t)w;
        len -= (uint64_t)w;
    }
    return 0;
}

int capture_delete(const char *dir, const char *rel, int *existed)
{
    char path[4096], head[16];
    struct capture_ref r;
    size_t n;
    int fd;

    if (existed) *existed = 0;
    if (capture_locate(dir, rel, &r, path, sizeof path) != 0) return -1;
    if (!r.segment) { /* an old-layout file */
        if (unlink(path) != 0) {
            if (errno == ENOENT) return 0;
            err_set("capture: cannot delete %s: %s", path, strerror(errno));
            return -1;
        }
        if (existed) *existed = 1;
        return 0;
    }
    if ((fd = capture_segment_range(path, &r, O_RDWR)) < 0) return -1;
    n = r.length < sizeof head ? (size_t)r.length : sizeof head;
    if (capture_pread_all(fd, head, n, r.offset) != 0) {
        err_set("capture: cannot read %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (n == 0 || capture_zeroed(head, n)) { /* already deleted (or empty) */
        close(fd);
        return 0;
    }
    if (capture_erase(fd, r.offset, r.length) != 0) {
        err_set("capture: cannot delete in %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    if (existed) *existed = 1;
    return 0;
}

/* True if name is a segment: "s" digits ".seg". */
static bool capture_is_segment(const char *name)
{
    size_t len = strlen(name), i;
    if (len < 6 || name[0] != 's' || strcmp(name + len - 4, ".seg") != 0) return false;
    for (i = 1; i < len - 4; i++)
        if (name[i] < '0' || name[i] > '9') return false;
    return true;
}

/* True if name is a file purge may remove: a segment, an old "ID.eml" or ".ID.XXXXXX.tmp". */
static bool capture_purgeable(const char *name)
{
    size_t len = strlen(name);
    if (capture_is_segment(name)) return true;
    if (len > 4 && strcmp(name + len - 4, ".eml") == 0) return capture_id_valid(name, len - 4);
    return name[0] == '.' && len > 5 && strcmp(name + len - 4, ".tmp") == 0 &&
           strchr(name, '/') == NULL;
}

/* The records of a segment, walking its header lines; 1 if it cannot be walked (but is not
 * empty), 0 for an empty one. */
static size_t capture_segment_records(const char *path)
{
    FILE *fp = fopen(path, "re");
    char line[sizeof SEG_MAGIC + CAPTURE_ID_MAX + 32];
    size_t records = 0;
    struct stat st;

    if (fp == NULL) return 1;
    if (fstat(fileno(fp), &st) != 0 || st.st_size == 0) {
        fclose(fp);
        return 0;
    }
    while (fgets(line, sizeof line, fp) != NULL) {
        const char *sp = strrchr(line, ' ');
        uint64_t n;
        size_t digits = sp ? strcspn(sp + 1, "\n") : 0;
        if (strncmp(line, SEG_MAGIC, sizeof SEG_MAGIC - 1) != 0 || sp == NULL ||
            !capture_number(sp + 1, digits, &n) || n > CAPTURE_MAX_BYTES ||
            fseeko(fp, (off_t)n + 1, SEEK_CUR) != 0)
            break;
        records++;
        if (ftello(fp) >= st.st_size) break;
    }
    fclose(fp);
    return records ? records : 1;
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
        if (capture_is_segment(e->d_name)) {
            size_t records = capture_segment_records(file);
            if (unlink(file) != 0 && errno != ENOENT) {
                err_set("capture: cannot delete %s: %s", file, strerror(errno));
                rc = -1;
                break;
            }
            *deleted += records;
            continue;
        }
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
