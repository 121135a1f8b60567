/*
 * capture - raw message bytes kept on disk for preview, EML download and
 * training, subject to retention.
 *
 * Layout: DIR/YYYY/MM/DD/ID.eml, the date being the UTC day the message was
 * captured (default DIR: CAPTURE_DIR_DEFAULT). Callers keep the path
 * relative to DIR that capture_write() returns ("2026/11/22/ID.eml"), e.g. in
 * the message log, and hand it back to capture_read()/capture_delete(),
 * which accept only that exact shape: a stored or user-supplied path can
 * never name a file outside DIR. IDs are 1..CAPTURE_ID_MAX characters of
 * [A-Za-z0-9_-] (a Postfix queue id, a hex id).
 *
 * Durability: a capture is written to a temporary file in its day directory
 * and renamed over ID.eml, so a reader never sees half a capture. With
 * CAPTURE_SYNC the file and then the directory are fsync'd too, so after an
 * OS crash or power cut a capture is either complete or absent; without it
 * (the gateway's default: the message itself is Postfix's to keep, and two
 * fsyncs per message cost more than the scan) the last seconds of captures
 * may come back empty or missing after such a crash. A stray ".ID.*.tmp" may
 * remain either way; purge removes those. Files are 0600 and directories
 * 0700: messages are private.
 *
 * Errors: functions return 0 or -1 with err_set() naming the file.
 */
#ifndef MXW_CAPTURE_H
#define MXW_CAPTURE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define CAPTURE_DIR_DEFAULT "var/capture"
#define CAPTURE_ID_MAX      64
/* Bytes of the longest relative path, NUL included: "YYYY/MM/DD/" + id + ".eml". */
#define CAPTURE_REL_MAX (11 + CAPTURE_ID_MAX + 4 + 1)

/*
 * Writes data[0..len) as the capture id of the UTC day of when, replacing
 * an earlier capture with the same id and day. rel (CAPTURE_REL_MAX bytes)
 * gets the path relative to dir. Creates dir and the day directories.
 * Returns 0, or -1 (invalid id, I/O error; nothing left behind but what an
 * interrupted cleanup may leave).
 */
int capture_write(const char *dir, const char *id, time_t when, const void *data, size_t len,
                  char *rel);
#define CAPTURE_SYNC 0x1u /* fsync the file and its directory before returning */
/* capture_write() with flags: 0, or CAPTURE_SYNC (what capture_write() does). */
int capture_write_flags(const char *dir, const char *id, time_t when, const void *data,
                        size_t len, unsigned flags, char *rel);

/* Reads the capture at rel (as capture_write() returned it) into a malloc'd, NUL-terminated
 * buffer (caller frees; *len excludes the NUL). -1 for a malformed rel or a missing file. */
int capture_read(const char *dir, const char *rel, char **data, size_t *len);

/* Deletes the capture at rel. A capture already gone is not an error (*existed, may be NULL,
 * says whether it was there). -1 for a malformed rel or an I/O error. */
int capture_delete(const char *dir, const char *rel, int *existed);

/*
 * Retention: deletes the captures (and stray temporary files) of every day
 * before the UTC day of cutoff, then the day, month and year directories it
 * emptied. Only names of the capture layout are touched; anything else under
 * dir is left alone. *deleted (may be NULL) gets how many captures went.
 * Returns 0, or -1 on the first I/O error (what was deleted stays deleted).
 */
int capture_purge_before(const char *dir, time_t cutoff, size_t *deleted);

#endif
