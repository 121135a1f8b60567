/*
 * quarantine_cmd - `mxwarden quarantine`: the operator's view of the Postfix
 * hold queue, where the milter quarantines mail.
 *
 *   quarantine list                          held messages joined with the message log:
 *                                            QUEUE_ID TAB ARRIVAL TAB SIZE TAB SENDER TAB
 *                                            RECIPIENTS TAB SCORE TAB SUBJECT TAB REASON
 *                                            (SCORE "-" and empty fields when not logged)
 *   quarantine show ID                       the message as postcat prints it
 *   quarantine release [--allow-sender] ID...  deliver; optionally allow each sender from now on
 *   quarantine delete ID...                  drop silently
 *   quarantine reject [--reason TEXT] ID...  notify each sender, then drop
 *   quarantine purge [--older-than DAYS]     delete held mail older than DAYS (default:
 *                                            the environment's retention, else 30)
 *
 * Bulk forms print one line per id ("ID: released", "ID: not in the hold
 * queue") and go on after a failure. Every action (show, release, delete,
 * reject, purge, and a sender rule added) writes an audit row naming the
 * actor; an action is refused when the records database cannot be opened,
 * so nothing happens unaudited. list works without the database (no join).
 */
#ifndef MXW_QUARANTINE_CMD_H
#define MXW_QUARANTINE_CMD_H

#include <stdio.h>

#define QUARANTINE_RETENTION_DAYS_DEFAULT 30

/* What the command runs against. Strings are borrowed for the call. */
struct quarantine_env {
    const char *db_uri;             /* the records database; NULL: DB_URI_DEFAULT */
    const char *postfix_config_dir; /* Postfix's -c DIR; NULL: the system's */
    const char *postfix_bin_dir;    /* where Postfix's commands are; NULL: PATH, then /usr/sbin */
    const char *actor;  /* who acts, for the audit log (the Unix user); NULL: "unknown" */
    int retention_days; /* purge's default age; 0: QUARANTINE_RETENTION_DAYS_DEFAULT */
};

/*
 * Runs the command in argv[1..argc) (argv[0] is "quarantine" and is
 * ignored). Results go to out, diagnostics (lines starting "mxwarden
 * quarantine: ") to err. Returns the exit status: 0 everything done; 1 a
 * store or Postfix failure (for bulk forms: at least one item failed other
 * than by being absent); 2 a usage error or a malformed queue id (nothing
 * done); 3 at least one id was not in the hold queue (the others were done).
 */
int quarantine_command(int argc, char **argv, const struct quarantine_env *env, FILE *out,
                       FILE *err);

#endif
