/*
 * heuristics - symbols a regular expression cannot compute: comparisons of
 * identities (From against the envelope sender, the DKIM signers, Reply-To,
 * the recipients), the Date header against the time of arrival, the
 * attachments' names against their sniffed contents, and the URL model's
 * flags (obfuscated numeric hosts, userinfo, mixed-script host names, forms).
 *
 * heuristics_register() adds the symbols to a registry at start-up and keeps
 * their ids in *ids; heuristics_check() only reads the message and adds hits
 * with a short option saying why (the file name, the two domains, ...).
 *
 * Three names carry an MXW_ prefix (MXW_MISSING_DATE, MXW_INVALID_DATE,
 * MXW_MISSING_FROM) because SpamAssassin's stock rules, which load beside
 * ours, already use the plain names.
 *
 * Attachments are judged by name, declared type and sniffed type only: the
 * message model keeps no attachment bytes, so VBA streams inside legacy
 * .doc/.xls files and executables inside archives cannot be seen here.
 */
#ifndef MXW_HEURISTICS_H
#define MXW_HEURISTICS_H

#include <stdbool.h>
#include <stddef.h>

struct message;
struct scan_result;
struct symbol_registry;

#define HEURISTICS_FUTURE_SECONDS (24LL * 3600)       /* DATE_IN_FUTURE: more than a day ahead */
#define HEURISTICS_PAST_SECONDS   (365LL * 24 * 3600) /* DATE_IN_PAST: more than a year old */

struct heuristics_ids {
    int forged_sender;
    int from_spoofs_rcpt_domain;
    int missing_date;
    int invalid_date;
    int date_in_future;
    int date_in_past;
    int missing_message_id;
    int missing_from;
    int reply_to_differs;
    int reply_to_freemail;
    int from_name_has_address;
    int subject_has_rcpt_address;
    int attach_executable;
    int attach_disguised;
    int attach_macro;
    int attach_disk_image;
    int attach_only;
    int url_numeric_host;
    int url_userinfo;
    int url_mixed_script;
    int html_form_external;
};

/* Registers every symbol above with its default score and description. */
void heuristics_register(struct symbol_registry *reg, struct heuristics_ids *ids);

/*
 * Adds the hits for m to r. dkim_domains[0..n_dkim_domains) are the d=
 * domains of the DKIM signatures that verified (may be NULL when none); they
 * are only read. now is the arrival time (Unix seconds) that the Date header
 * is compared with; now <= 0 skips the two date-distance symbols. Strings
 * the hits need are allocated from r->arena; the message is not modified.
 * Cannot fail.
 */
void heuristics_check(const struct heuristics_ids *ids, const struct message *m,
                      const char *const *dkim_domains, size_t n_dkim_domains, long long now,
                      struct scan_result *r);

/*
 * True if the Date value s has the form RFC 5322 allows (including its
 * obsolete two-digit years and named zones): [day-name ","] day month year
 * hh:mm[:ss] zone [comment]. Exposed for tests.
 */
bool heuristics_date_syntax_ok(const char *s);

#endif
