/*
 * config - mxwarden.conf, an INI file (inih), with built-in defaults.
 *
 * Every setting has a default, so no file is needed on one machine. Unknown
 * sections and keys are warned about (file, section, key) and ignored, so a newer
 * configuration does not stop an older binary; a value that does not parse is
 * an error. Live per-domain settings live in the records database, not here.
 *
 *   [store]
 *   kv = lmdb:var/tokens.lmdb        ; or redis://[:password@]host:port[/db]
 *   db = sqlite:var/mxwarden.db      ; records: settings, message log, labels, audit
 *   [bayes]
 *   min_learns = 200                 ; spam and ham each, before any Bayes symbol
 *   min_learns_class = 50            ; phishing, bec, newsletter, transactional
 *   per_tenant = no                  ; also keep statistics per recipient domain
 *   autolearn = no
 *   autolearn_spam = 12.0            ; score >= this learns spam
 *   autolearn_ham = -2.0             ; score <= this learns ham
 *   [rules]
 *   paths = rules                    ; rule files and directories, separated by spaces, read
 *                                    ; in order (a later score line wins); "" for none.
 *                                    ; Default: the rules/ directory mxwarden was built with
 *   score_set = 2                    ; SpamAssassin score set: 0 plain, 1 +net, 2 +Bayes, 3 both
 *   cache_dir = var/cache            ; compiled regex databases
 *   [auth]
 *   enabled = yes                    ; SPF, DKIM and DMARC (needs DNS)
 *   [dns]
 *   server =                         ; resolver address; empty: those of /etc/resolv.conf
 *   port = 53
 *   timeout_ms = 2000                ; per query
 *   cache_entries = 4096             ; per scanning thread (and per DNSBL lookup thread)
 *   budget_ms = 3000                 ; all DNS of one scan together; `serve`'s client DNSBL
 *                                    ; lookup gets as long from connect
 *   [milter]
 *   listen = unix:var/milter.sock    ; or inet:127.0.0.1:11432
 *   socket_group = postfix           ; group of the unix socket (mode 0660), so smtpd can connect
 *   workers = 8
 *   max_message_bytes = 52428800     ; bigger messages: 552 at end of data
 *   [gateway]
 *   node =                           ; this node's name in the message log (default: hostname)
 *   capture = yes                    ; keep raw messages for preview and training
 *   capture_dir = var/capture
 *   log_retention_days = 30          ; `serve` deletes message-log rows older than this (at
 *                                    ; start, then hourly); 0 keeps them forever
 *   capture_retention_days = 30      ; ... and captured raw messages older than this; as long
 *                                    ; as [quarantine] retention_days, so held mail can be
 *                                    ; previewed until it is purged; 0 keeps them forever
 *   capture_sync = no                ; sync each capture to disk (a sync per message); the
 *                                    ; message itself is Postfix's to keep, so off by default
 *   [postfix]
 *   config_directory =               ; Postfix's -c DIR for queue operations; empty: the system's
 *   [quarantine]
 *   retention_days = 30              ; `quarantine purge` removes held mail older than this
 *   [greylist]
 *   enabled = no
 *   delay_s = 300                    ; a retry is accepted this long after the first attempt
 *   window_s = 14400                 ; ... and until this long after it
 *   pass_ttl_s = 3110400             ; a passed triplet passes at once for 36 days
 *   [ratelimit]
 *   enabled = no
 *   client_ip = 600/1h               ; LIMIT/WINDOW (s, m, h, d); 0 turns one off
 *   sender_domain = 2000/1h
 *   recipient = 500/1h
 *   [dnsbl]
 *   enabled = yes                    ; client IP and URL domains against DNS blocklists
 *   lists =                          ; operator lists, replacing or adding to the defaults
 *                                    ; (format in src/checks/dnsbl.h)
 *   disabled = ivmsip ivmuri         ; these need a subscription: enable them once you have it
 *   [reputation]
 *   enabled = yes
 *   min_volume = 5                   ; verdicts in 24 h before an entity scores
 *   full_volume = 100                ; verdicts at which its score is at full strength
 *   max_url_domains = 8              ; URL domains per message (16 at most)
 *   record_ham_below = 0.0           ; a delivered message scoring <= this counts as ham
 *   allow = 192.0.2.0/24 example.com ; never penalised (addresses, networks, domains)
 */
#ifndef MXW_CONFIG_H
#define MXW_CONFIG_H

#include <stdbool.h>

#define CONFIG_MAX_VALUE 512

struct config {
    char kv_uri[CONFIG_MAX_VALUE];
    char db_uri[CONFIG_MAX_VALUE];
    unsigned bayes_min_learns;
    unsigned bayes_min_learns_class;
    bool bayes_per_tenant;
    bool autolearn;
    double autolearn_spam;
    double autolearn_ham;
    char rules_paths[CONFIG_MAX_VALUE];
    unsigned rules_score_set;
    char rules_cache_dir[CONFIG_MAX_VALUE];
    bool auth_enabled;
    char dns_server[64];
    unsigned dns_port;
    unsigned dns_timeout_ms;
    unsigned dns_cache_entries;
    unsigned dns_budget_ms;
    char milter_listen[CONFIG_MAX_VALUE];
    char milter_socket_group[64];
    unsigned milter_workers;
    unsigned max_message_bytes;
    char node[128];
    bool capture;
    bool capture_sync;
    char capture_dir[CONFIG_MAX_VALUE];
    unsigned log_retention_days;     /* 0: forever */
    unsigned capture_retention_days; /* 0: forever */
    char postfix_config_dir[CONFIG_MAX_VALUE];
    unsigned quarantine_retention_days;
    bool greylist_enabled;
    unsigned greylist_delay_s;
    unsigned greylist_window_s;
    unsigned greylist_pass_ttl_s;
    bool ratelimit_enabled;
    char ratelimit_client_ip[64];
    char ratelimit_sender_domain[64];
    char ratelimit_recipient[64];
    bool dnsbl_enabled;
    char dnsbl_lists[CONFIG_MAX_VALUE];
    char dnsbl_disabled[CONFIG_MAX_VALUE];
    bool reputation_enabled;
    unsigned reputation_min_volume;
    unsigned reputation_full_volume;
    unsigned reputation_max_url_domains;
    double reputation_record_ham_below;
    char reputation_allow[CONFIG_MAX_VALUE];
};

/* Fills cfg with the defaults. */
void config_defaults(struct config *cfg);
/*
 * Loads path over the defaults. path NULL: "mxwarden.conf" if it exists,
 * else the defaults alone. Returns 0, or -1 with err_set() naming the file
 * and line of the first bad value (or why the file cannot be read).
 */
int config_load(const char *path, struct config *cfg);

#endif
