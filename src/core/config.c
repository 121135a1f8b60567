/*
 * config - INI configuration over defaults. See config.h.
 */
#include "core/config.h"
#include "core/log.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef MXW_DEFAULT_RULES_DIR
#define MXW_DEFAULT_RULES_DIR "rules"
#endif

struct config_parse {
    struct config *cfg;
    const char *path;
    char error[256];
};

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->kv_uri, sizeof cfg->kv_uri, "lmdb:var/tokens.lmdb");
    snprintf(cfg->db_uri, sizeof cfg->db_uri, "sqlite:var/mxwarden.db");
    cfg->bayes_min_learns = 200;
    cfg->bayes_min_learns_class = 50;
    cfg->bayes_per_tenant = false;
    cfg->autolearn = false;
    cfg->autolearn_spam = 12.0;
    cfg->autolearn_ham = -2.0;
    snprintf(cfg->rules_paths, sizeof cfg->rules_paths, "%s", MXW_DEFAULT_RULES_DIR);
    cfg->rules_score_set = 2;
    snprintf(cfg->rules_cache_dir, sizeof cfg->rules_cache_dir, "var/cache");
    cfg->auth_enabled = true;
    cfg->dns_port = 53;
    cfg->dns_timeout_ms = 2000;
    cfg->dns_cache_entries = 4096;
    cfg->dns_budget_ms = 3000;
    snprintf(cfg->milter_listen, sizeof cfg->milter_listen, "unix:var/milter.sock");
    snprintf(cfg->milter_socket_group, sizeof cfg->milter_socket_group, "postfix");
    cfg->milter_workers = 8;
    cfg->max_message_bytes = 50u * 1024u * 1024u;
    cfg->capture = true;
    snprintf(cfg->capture_dir, sizeof cfg->capture_dir, "var/capture");
    cfg->log_retention_days = 30;
    cfg->capture_retention_days = 30;
    cfg->quarantine_retention_days = 30;
    cfg->greylist_delay_s = 300;
    cfg->greylist_window_s = 4 * 3600;
    cfg->greylist_pass_ttl_s = 36 * 86400;
    snprintf(cfg->ratelimit_client_ip, sizeof cfg->ratelimit_client_ip, "600/1h");
    snprintf(cfg->ratelimit_sender_domain, sizeof cfg->ratelimit_sender_domain, "2000/1h");
    snprintf(cfg->ratelimit_recipient, sizeof cfg->ratelimit_recipient, "500/1h");
    cfg->dnsbl_enabled = true;
    snprintf(cfg->dnsbl_disabled, sizeof cfg->dnsbl_disabled, "ivmsip ivmuri");
    cfg->reputation_enabled = true;
    cfg->reputation_min_volume = 5;
    cfg->reputation_full_volume = 100;
    cfg->reputation_max_url_domains = 8;
    cfg->reputation_record_ham_below = 0.0;
}

static int config_bool(const char *v, bool *out)
{
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcasecmp(v, "on") || !strcmp(v, "1"))
        *out = true;
    else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcasecmp(v, "off") ||
             !strcmp(v, "0"))
        *out = false;
    else
        return -1;
    return 0;
}

static int config_unsigned(const char *v, unsigned *out)
{
    char *end;
    unsigned long n;
    errno = 0;
    n = strtoul(v, &end, 10);
    if (errno || *v == '-' || end == v || *end || n > 100000000) return -1;
    *out = (unsigned)n;
    return 0;
}

static int config_double(const char *v, double *out)
{
    char *end;
    double d;
    errno = 0;
    d = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(d)) return -1;
    *out = d;
    return 0;
}

static int config_string(const char *v, char *out)
{
    if (strlen(v) >= CONFIG_MAX_VALUE) return -1;
    strcpy(out, v);
    return 0;
}

static int config_small_string(const char *v, char *out, size_t size)
{
    if (strlen(v) >= size) return -1;
    strcpy(out, v);
    return 0;
}

/* inih callback: returns 0 to stop at the first bad value. */
static int config_handler(void *user, const char *section, const char *name, const char *value)
{
    struct config_parse *p = user;
    struct config *c = p->cfg;
    int rc;

    if (!strcmp(section, "store") && !strcmp(name, "kv"))
        rc = config_string(value, c->kv_uri);
    else if (!strcmp(section, "store") && !strcmp(name, "db"))
        rc = config_string(value, c->db_uri);
    else if (!strcmp(section, "bayes") && !strcmp(name, "min_learns"))
        rc = config_unsigned(value, &c->bayes_min_learns);
    else if (!strcmp(section, "bayes") && !strcmp(name, "min_learns_class"))
        rc = config_unsigned(value, &c->bayes_min_learns_class);
    else if (!strcmp(section, "bayes") && !strcmp(name, "per_tenant"))
        rc = config_bool(value, &c->bayes_per_tenant);
    else if (!strcmp(section, "bayes") && !strcmp(name, "autolearn"))
        rc = config_bool(value, &c->autolearn);
    else if (!strcmp(section, "bayes") && !strcmp(name, "autolearn_spam"))
        rc = config_double(value, &c->autolearn_spam);
    else if (!strcmp(section, "bayes") && !strcmp(name, "autolearn_ham"))
        rc = config_double(value, &c->autolearn_ham);
    else if (!strcmp(section, "rules") && !strcmp(name, "paths"))
        rc = config_string(value, c->rules_paths);
    else if (!strcmp(section, "rules") && !strcmp(name, "score_set"))
        rc = config_unsigned(value, &c->rules_score_set) || c->rules_score_set > 3 ? -1 : 0;
    else if (!strcmp(section, "rules") && !strcmp(name, "cache_dir"))
        rc = config_string(value, c->rules_cache_dir);
    else if (!strcmp(section, "auth") && !strcmp(name, "enabled"))
        rc = config_bool(value, &c->auth_enabled);
    else if (!strcmp(section, "dns") && !strcmp(name, "server"))
        rc = config_small_string(value, c->dns_server, sizeof c->dns_server);
    else if (!strcmp(section, "dns") && !strcmp(name, "port"))
        rc = config_unsigned(value, &c->dns_port) || c->dns_port > 65535;
    else if (!strcmp(section, "dns") && !strcmp(name, "timeout_ms"))
        rc = config_unsigned(value, &c->dns_timeout_ms) || c->dns_timeout_ms == 0;
    else if (!strcmp(section, "dns") && !strcmp(name, "cache_entries"))
        rc = config_unsigned(value, &c->dns_cache_entries);
    else if (!strcmp(section, "dns") && !strcmp(name, "budget_ms"))
        rc = config_unsigned(value, &c->dns_budget_ms) || c->dns_budget_ms == 0;
    else if (!strcmp(section, "milter") && !strcmp(name, "listen"))
        rc = (strncmp(value, "unix:", 5) && strncmp(value, "inet:", 5))
                 ? -1
                 : config_string(value, c->milter_listen);
    else if (!strcmp(section, "milter") && !strcmp(name, "socket_group"))
        rc = config_small_string(value, c->milter_socket_group, sizeof c->milter_socket_group);
    else if (!strcmp(section, "milter") && !strcmp(name, "workers"))
        rc = config_unsigned(value, &c->milter_workers) || c->milter_workers == 0 ||
             c->milter_workers > 1024;
    else if (!strcmp(section, "milter") && !strcmp(name, "max_message_bytes"))
        rc = config_unsigned(value, &c->max_message_bytes) || c->max_message_bytes < 1024;
    else if (!strcmp(section, "gateway") && !strcmp(name, "node"))
        rc = config_small_string(value, c->node, sizeof c->node);
    else if (!strcmp(section, "gateway") && !strcmp(name, "capture"))
        rc = config_bool(value, &c->capture);
    else if (!strcmp(section, "gateway") && !strcmp(name, "capture_sync"))
        rc = config_bool(value, &c->capture_sync);
    else if (!strcmp(section, "gateway") && !strcmp(name, "capture_dir"))
        rc = config_string(value, c->capture_dir);
    else if (!strcmp(section, "gateway") && !strcmp(name, "log_retention_days"))
        rc = config_unsigned(value, &c->log_retention_days) || c->log_retention_days > 36500;
    else if (!strcmp(section, "gateway") && !strcmp(name, "capture_retention_days"))
        rc =
            config_unsigned(value, &c->capture_retention_days) || c->capture_retention_days > 36500;
    else if (!strcmp(section, "postfix") && !strcmp(name, "config_directory"))
        rc = config_string(value, c->postfix_config_dir);
    else if (!strcmp(section, "quarantine") && !strcmp(name, "retention_days"))
        rc = config_unsigned(value, &c->quarantine_retention_days) ||
             c->quarantine_retention_days == 0;
    else if (!strcmp(section, "greylist") && !strcmp(name, "enabled"))
        rc = config_bool(value, &c->greylist_enabled);
    else if (!strcmp(section, "greylist") && !strcmp(name, "delay_s"))
        rc = config_unsigned(value, &c->greylist_delay_s);
    else if (!strcmp(section, "greylist") && !strcmp(name, "window_s"))
        rc = config_unsigned(value, &c->greylist_window_s) || c->greylist_window_s == 0;
    else if (!strcmp(section, "greylist") && !strcmp(name, "pass_ttl_s"))
        rc = config_unsigned(value, &c->greylist_pass_ttl_s);
    else if (!strcmp(section, "ratelimit") && !strcmp(name, "enabled"))
        rc = config_bool(value, &c->ratelimit_enabled);
    else if (!strcmp(section, "ratelimit") && !strcmp(name, "client_ip"))
        rc = config_small_string(value, c->ratelimit_client_ip, sizeof c->ratelimit_client_ip);
    else if (!strcmp(section, "ratelimit") && !strcmp(name, "sender_domain"))
        rc = config_small_string(value, c->ratelimit_sender_domain,
                                 sizeof c->ratelimit_sender_domain);
    else if (!strcmp(section, "ratelimit") && !strcmp(name, "recipient"))
        rc = config_small_string(value, c->ratelimit_recipient, sizeof c->ratelimit_recipient);
    else if (!strcmp(section, "dnsbl") && !strcmp(name, "enabled"))
        rc = config_bool(value, &c->dnsbl_enabled);
    else if (!strcmp(section, "dnsbl") && !strcmp(name, "lists"))
        rc = config_string(value, c->dnsbl_lists);
    else if (!strcmp(section, "dnsbl") && !strcmp(name, "disabled"))
        rc = config_string(value, c->dnsbl_disabled);
    else if (!strcmp(section, "reputation") && !strcmp(name, "enabled"))
        rc = config_bool(value, &c->reputation_enabled);
    else if (!strcmp(section, "reputation") && !strcmp(name, "min_volume"))
        rc = config_unsigned(value, &c->reputation_min_volume) || c->reputation_min_volume < 1;
    else if (!strcmp(section, "reputation") && !strcmp(name, "full_volume"))
        rc = config_unsigned(value, &c->reputation_full_volume) || c->reputation_full_volume < 2;
    else if (!strcmp(section, "reputation") && !strcmp(name, "max_url_domains"))
        rc = config_unsigned(value, &c->reputation_max_url_domains) ||
             c->reputation_max_url_domains > 16;
    else if (!strcmp(section, "reputation") && !strcmp(name, "record_ham_below"))
        rc = config_double(value, &c->reputation_record_ham_below);
    else if (!strcmp(section, "reputation") && !strcmp(name, "allow"))
        rc = config_string(value, c->reputation_allow);
    else {
        log_warn("msg=\"unknown setting ignored\" file=%s section=%s key=%s", p->path, section,
                 name);
        return 1;
    }
    if (rc != 0) {
        snprintf(p->error, sizeof p->error, "bad value for [%s] %s: \"%.80s\"", section, name,
                 value);
        return 0;
    }
    return 1;
}

int config_load(const char *path, struct config *cfg)
{
    struct config_parse p = {.cfg = cfg};
    int rc;

    if (path == NULL) {
        if (access("mxwarden.conf", R_OK) != 0) return 0;
        path = "mxwarden.conf";
    }
    p.path = path;
    rc = ini_parse(path, config_handler, &p);
    if (rc == -1) {
        err_set("%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (p.error[0]) {
        /* inih returns the line of the first error, which is the bad value. */
        err_set("%s:%d: %s", path, rc, p.error);
        return -1;
    }
    if (rc != 0) {
        err_set("%s:%d: syntax error", path, rc);
        return -1;
    }
    return 0;
}
