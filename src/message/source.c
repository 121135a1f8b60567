/*
 * source - files, directories and mbox files as a stream of messages.
 *
 * mbox: a message starts at a line beginning with "From " at the start of the
 * file or after a blank line, the common mboxo/mboxrd reading; the separator
 * line itself is not part of the message. ">From " quoting is left as is,
 * since it changes no feature worth the cost of copying.
 */
#include "message/source.h"
#include "core/file.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int source_is_mbox(const char *data, size_t len)
{
    return len > 5 && memcmp(data, "From ", 5) == 0;
}

long source_mbox_each(const char *path, const char *data, size_t len,
                      source_message_fn on_message, void *ctx)
{
    const char *p = data, *end = data + len, *start = NULL;
    long count = 0;
    char label[4096 + 32];

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *next = nl ? nl + 1 : end;
        int separator = (size_t)(end - p) > 5 && memcmp(p, "From ", 5) == 0 &&
                        (p == data || (p >= data + 2 && p[-2] == '\n') ||
                         (p >= data + 3 && p[-2] == '\r' && p[-3] == '\n'));
        if (separator) {
            if (start && p > start) {
                snprintf(label, sizeof label, "%s#%ld", path, count + 1);
                if (on_message(ctx, label, start, (size_t)(p - start)) != 0) return -1;
                count++;
            }
            start = next;
        }
        p = next;
    }
    if (start && end > start) {
        snprintf(label, sizeof label, "%s#%ld", path, count + 1);
        if (on_message(ctx, label, start, (size_t)(end - start)) != 0) return -1;
        count++;
    }
    return count;
}

static int source_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

long source_each(const char *path, source_message_fn on_message, source_error_fn on_error,
                 void *ctx)
{
    struct stat st;
    long count = 0;

    if (strcmp(path, "-") != 0 && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        DIR *dir = opendir(path);
        struct dirent *de;
        char **names = NULL;
        size_t n = 0, cap = 0, i;

        if (dir == NULL) {
            on_error(ctx, path, strerror(errno));
            return 0;
        }
        while ((de = readdir(dir)) != NULL) {
            if (de->d_name[0] == '.') continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                names = xrealloc(names, cap * sizeof *names);
            }
            names[n++] = xstrdup(de->d_name);
        }
        closedir(dir);
        qsort(names, n, sizeof *names, source_name_cmp);
        for (i = 0; i < n; i++) {
            char *child = xmalloc(strlen(path) + strlen(names[i]) + 2);
            long r;
            sprintf(child, "%s/%s", path, names[i]);
            r = count >= 0 ? source_each(child, on_message, on_error, ctx) : 0;
            if (r < 0) count = -1;
            else if (count >= 0) count += r;
            free(child);
            free(names[i]);
        }
        free(names);
        return count;
    } else {
        char *data;
        size_t len;
        if (file_read(path, &data, &len) != 0) {
            on_error(ctx, path, err_msg());
            return 0;
        }
        if (len == 0) {
            on_error(ctx, path, "empty, not a mail message");
            count = 0;
        } else if (source_is_mbox(data, len)) {
            count = source_mbox_each(path, data, len, on_message, ctx);
        } else {
            count = on_message(ctx, path, data, len) != 0 ? -1 : 1;
        }
        free(data);
        return count;
    }
}
