/*
 * postfix - operations on a Postfix mail queue by running Postfix's own
 * commands: list the hold queue (where the milter quarantines), show a
 * message, release, delete, or reject it with a notice to its sender.
 *
 * Every command runs with fork/exec, never through a shell, with -c
 * CONFIG_DIR when one is given (sendmail: -C), a timeout, and its standard
 * error captured into the error message. Queue ids are checked
 * ([0-9A-Za-z]+, at most POSTFIX_QUEUE_ID_MAX) before anything runs, so an id
 * can never become an option or a path. Operations on a message act on the
 * hold queue only: an operator cannot delete mail that is on its way.
 *
 * Privileges: postsuper and postcat need root (queue files are 0700
 * postfix); postqueue -j needs a running Postfix (it asks the showq daemon).
 * A missing binary, a failing command or a timeout is an error with a
 * readable reason, never a crash.
 *
 * Errors: functions return POSTFIX_OK or a negative POSTFIX_* code and set
 * err_set(). POSTFIX_NOT_FOUND says the id is not in the hold queue (Postfix
 * itself exits 0 in that case and says so only on stderr; we read it).
 */
#ifndef MXW_POSTFIX_H
#define MXW_POSTFIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

enum {
    POSTFIX_OK = 0,
    POSTFIX_ERR = -1,       /* a command is missing, failed, timed out or printed nonsense */
    POSTFIX_NOT_FOUND = -2, /* no such message in the hold queue */
    POSTFIX_INVALID = -3,   /* a malformed queue id or argument; nothing was run */
};

#define POSTFIX_QUEUE_ID_MAX       64
#define POSTFIX_TIMEOUT_MS_DEFAULT 60000

/* Where and how to run the commands. A NULL struct, or zero/NULL fields, mean the defaults. */
struct postfix_conf {
    const char *config_dir; /* passed as -c DIR; NULL: the system's configuration */
    const char *bin_dir;    /* directory of postqueue, postsuper, postcat, sendmail, postconf;
                               NULL: search PATH, then /usr/sbin */
    int timeout_ms;         /* per command; 0: POSTFIX_TIMEOUT_MS_DEFAULT */
};

/* One message of a queue listing (postqueue -j). The item owns its strings. */
struct postfix_queue_item {
    char *queue_id;
    char *queue_name;     /* "hold" for every item of postfix_hold_list() */
    int64_t arrival_time; /* seconds since the epoch */
    int64_t size_bytes;
    char *sender;      /* "" for the null sender */
    char **recipients; /* n_recipients addresses */
    size_t n_recipients;
    char *delay_reason; /* the first recipient's, or NULL */
};

struct postfix_queue_list {
    struct postfix_queue_item *items;
    size_t n;
};

/* A held message's envelope and headers, as postcat shows them. Owns its strings. */
struct postfix_envelope {
    char *queue_name;
    char *sender; /* "" for the null sender */
    char **recipients;
    size_t n_recipients;
    char *headers; /* the message's header lines, '\n'-terminated */
};

/* True if id is 1..POSTFIX_QUEUE_ID_MAX characters of [0-9A-Za-z]. */
bool postfix_queue_id_valid(const char *id);

/*
 * Lists the hold queue: runs `postqueue -j` and keeps queue_name "hold".
 * *out is emptied first; free it with postfix_queue_list_free() whatever the
 * result. A line that is not the JSON object Postfix documents is an error
 * (the format changed: better to say so than to show a partial queue).
 */
int postfix_hold_list(const struct postfix_conf *pc, struct postfix_queue_list *out);
void postfix_queue_list_free(struct postfix_queue_list *list);

/* Appends the held message id as `postcat -q ID` prints it (envelope, headers, body) to out. */
int postfix_show(const struct postfix_conf *pc, const char *id, struct buf *out);

/* Reads the envelope and headers of held message id (postcat -e -h). *out is zeroed first; free
 * it with postfix_envelope_free() whatever the result. */
int postfix_envelope_read(const struct postfix_conf *pc, const char *id,
                          struct postfix_envelope *out);
void postfix_envelope_free(struct postfix_envelope *env);

/*
 * Releases held message id (postsuper -H) and asks Postfix to deliver it now
 * (postqueue -i; without it the message waits in the deferred queue). If
 * only the second step fails, the message is out of the hold queue and will
 * go at the next queue run: that is POSTFIX_OK with a warning logged.
 */
int postfix_release(const struct postfix_conf *pc, const char *id);

/* Deletes held message id (postsuper -d ID hold). */
int postfix_delete(const struct postfix_conf *pc, const char *id);

/*
 * Rejects held message id: mails a delivery status notification (from the
 * null sender, through Postfix's sendmail) to its envelope sender, naming
 * reason (NULL: a generic one; control characters become spaces), then
 * deletes it. A message from the null sender is deleted without a notice.
 * If the notice cannot be sent the message stays held and this fails.
 */
int postfix_reject(const struct postfix_conf *pc, const char *id, const char *reason);

/* ---- bulk forms ---- */

enum postfix_action { POSTFIX_RELEASE, POSTFIX_DELETE, POSTFIX_REJECT };

/* The outcome of one item of a bulk call; error is malloc'd, NULL on success. */
struct postfix_outcome {
    int rc;
    char *error;
};

/*
 * Applies action to ids[0..n) one by one (a failure does not stop the rest);
 * outcomes[i] (an array of n, owned by the caller) gets each result: free
 * the messages with postfix_outcomes_free(). reason is for POSTFIX_REJECT.
 * Returns how many failed.
 */
size_t postfix_bulk(const struct postfix_conf *pc, enum postfix_action action,
                    const char *const *ids, size_t n, const char *reason,
                    struct postfix_outcome *outcomes);
void postfix_outcomes_free(struct postfix_outcome *outcomes, size_t n);

/* "release", "delete", "reject". */
const char *postfix_action_name(enum postfix_action action);

#endif
