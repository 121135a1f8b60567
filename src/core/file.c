/*
 * file - whole-file reads. See file.h.
 */
#include "core/file.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int file_read(const char *path, char **data, size_t *len)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    size_t cap, n = 0;
    char *buf;

    if (fd < 0) {
        err_set("%s", strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        err_set("is a directory");
        if (fd != STDIN_FILENO) close(fd);
        return -1;
    }
    cap = (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) ? (size_t)st.st_size + 1 : 65536;
    buf = xmalloc(cap);
    for (;;) {
        ssize_t r;
        if (n + 1 >= cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        r = read(fd, buf + n, cap - n - 1);
        if (r < 0) {
            if (errno == EINTR) continue;
            err_set("%s", strerror(errno));
            free(buf);
            if (fd != STDIN_FILENO) close(fd);
            return -1;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    if (fd != STDIN_FILENO) close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

int file_mkdir_parents(const char *path)
{
    char tmp[4096];
    char *p;
    size_t len = strlen(path);

    if (len >= sizeof tmp) {
        err_set("path too long");
        return -1;
    }
    memcpy(tmp, path, len + 1);
    for (p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
            err_set("cannot create %s: %s", tmp, strerror(errno));
            return -1;
        }
        *p = '/';
    }
    return 0;
}

bool file_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}
