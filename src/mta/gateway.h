/*
 * gateway - `mxwarden serve`: the milter application that Postfix talks to.
 *
 * Each SMTP session walks the milter stages (milter.h) and the gateway
 * applies the SMTP-time policy at each: operator sender rules (client IP at
 * connect, sender at MAIL: block -> 5xx, allow -> spam actions skipped), rate
 * limits (client IP, sender domain, recipient: 4xx over the limit) and
 * greylisting (per client network, sender and recipient: 4xx on a first
 * attempt). At end of message it rebuilds the raw message from the headers
 * and body the MTA sent, runs the same scan_message() every entry point uses,
 * and turns the verdict into the MTA's action: X-Spam-* headers (and a subject
 * prefix when tagging), the hold queue (quarantine), or a 5xx. Every message
 * that reaches end of data, and every refusal at connect/MAIL/RCPT, gets a row
 * in the message log; accepted and held messages are captured under
 * capture_dir.
 *
 * Mail is never lost: any internal failure (the scan cannot run, the log
 * cannot be written for a message we would hold) answers tempfail, so the
 * sending server retries. A state store that is down never blocks mail
 * (greylisting and rate limits then let it through, logged).
 *
 * Sender rules come from the records database (`mxwarden senders`): serve
 * polls their generation every SENDERS_APPLY_DELAY_S seconds and swaps in a
 * new snapshot when it moved, so a change applies without a restart (SIGHUP
 * reloads them at once). A set the snapshot builder refuses, or a database
 * that cannot be read, keeps the previous rules (logged).
 *
 * Retention, at start and then hourly: message-log rows older than [gateway]
 * log_retention_days and captures older than capture_retention_days are
 * deleted (0 keeps them), one log line per run saying how many.
 *
 * Threads: the milter server's workers call in concurrently. The scanner and
 * the sender rules are shared read-only, reference-counted snapshots, swapped
 * on reload under a lock; each worker thread keeps its own scan worker and
 * state-store handle. Message-log rows go through one writer thread with its
 * own records database connection, which commits the rows of concurrent
 * messages in one transaction; a worker waits for its row's commit before it
 * replies (store/msglog.h). Stopping (SIGTERM) lets the workers finish their
 * messages, then commits what is still queued.
 */
#ifndef MXW_GATEWAY_H
#define MXW_GATEWAY_H

#include <signal.h>
#include <stdbool.h>

struct config;

/*
 * Runs the gateway with the configuration at config_path (NULL: the
 * defaults and ./mxwarden.conf) until SIGTERM or SIGINT; SIGHUP reloads the
 * configuration, rules and settings without dropping connections. pid_file
 * may be NULL. Returns the process exit status (0 after a clean stop).
 */
int gateway_serve(const char *config_path, const char *pid_file);

#endif
