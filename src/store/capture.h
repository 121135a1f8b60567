/*
 * capture - raw message bytes kept on disk for preview, EML download and
 * training, subject to retention.
 *
 * Layout: captures are appended to segment files, one per UTC day and
 * writing process: DIR/YYYY/MM/DD/s<PID>.seg (default DIR:
 * CAPTURE_DIR_DEFAULT). A file per message would cost an inode per message,
 * and creating inodes was a third of the gateway's CPU under load. Each
 * record is a header line "MXWCAP1 <id> <length>\n", the message's bytes and
 * a "\n", so a segment can be walked without an index. Callers keep the
 * reference capture_write() returns, "YYYY/MM/DD/s<PID>.seg:<offset>:<length>"
 * (the message's bytes, without the header line), e.g. in the message log,
 * and hand it back to capture_read()/capture_delete(), which accept only that
 * exact shape: a stored or user-supplied reference can never name a file
 * outside DIR or a range outside its file. IDs are 1..CAPTURE_ID_MAX
 * characters of [A-Za-z0-9_-] (a Postfix queue id, a hex id).
 *
 * Threads: the writing threads of one process share the open segment of the
 * day under a mutex; every record is written at the segment's end in one go
 * (a failed write is cut off again), so records never interleave. A segment
 * deleted while open (an operator removing the day) is replaced by a new one
 * at the next capture. A reference must end at its record's closing "\n".
 *
 * Durability: with CAPTURE_SYNC the segment is fdatasync'd after the record
 * (and its directory fsync'd when the segment is new), so after an OS crash or
 * power cut the capture is there. Without it (the gateway's default: the
 * message itself is Postfix's to keep, and a sync per message costs more than
 * the scan) the captures of the last moments may be lost or cut short by
 * such a crash; capture_read() then fails on them rather than return what is
 * not the message.
 *
 * Deleting a capture punches a hole over its bytes (or overwrites them with
 * zeros where the filesystem cannot): the message is gone from the disk at
 * once, its header line (id, length) stays until retention removes the day.
 * Files are 0600 and directories 0700: messages are private.
 *
 * Old layout: captures written by earlier versions as DIR/YYYY/MM/DD/ID.eml
 * are still read and deleted by their reference "YYYY/MM/DD/ID.eml", and
 * retention removes them with their day.
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
/* Bytes of the longest reference, NUL included: "YYYY/MM/DD/" + the longer of an old-layout
 * "ID.eml" and "s<pid>.seg:<offset>:<length>" (pid up to 10 digits, numbers up to 20). */
#define CAPTURE_REL_MAX (11 + CAPTURE_ID_MAX + 4 + 1 + 24)

/*
 * Appends data[0..len) as capture id to the segment of the UTC day of when.
 * rel (CAPTURE_REL_MAX bytes) gets the reference. Creates dir, the day
 * directories and the segment as needed. The same id may be captured twice:
 * each capture is its own record. Returns 0, or -1 (invalid id, I/O error;
 * nothing of the record is left behind then).
 */
int capture_write(const char *dir, const char *id, time_t when, const void *data, size_t len,
                  char *rel);
#define CAPTURE_SYNC 0x1u /* sync the record (and a new segment's directory) before returning */
/* capture_write() with flags: 0, or CAPTURE_SYNC (what capture_write() does). */
int capture_write_flags(const char *dir, const char *id, time_t when, const void *data,
                        size_t len, unsigned flags, char *rel);

/* Reads the capture at rel (as capture_write() returned it) into a malloc'd, NUL-terminated
 * buffer (caller frees; *len excludes the NUL). -1 for a malformed rel, a missing file, a
 * range the file does not hold, or a deleted capture. */
int capture_read(const char *dir, const char *rel, char **data, size_t *len);

/* Deletes the capture at rel (its bytes are overwritten on disk). A capture already gone is
 * not an error (*existed, may be NULL, says whether it was there). -1 for a malformed rel, a
 * range the file does not hold, or an I/O error. */
int capture_delete(const char *dir, const char *rel, int *existed);

/*
 * Retention: deletes the segments (and old-layout captures and stray
 * temporary files) of every day before the UTC day of cutoff, then the day,
 * month and year directories it emptied. Only names of the capture layout are
 * touched; anything else under dir is left alone. *deleted (may be NULL) gets
 * how many captures went (the records of each segment; one for a segment
 * whose records cannot be walked).
 * Returns 0, or -1 on the first I/O error (what was deleted stays deleted).
 */
int capture_purge_before(const char *dir, time_t cutoff, size_t *deleted);

#endif
