/*
 * Tests for src/scan/settings.c: scope and value parsing, inheritance
 * (address -> domain -> global -> defaults), validation of the merged
 * thresholds, the action for several recipients, and the reloadable cache
 * under concurrent readers.
 *
 * Each test gets a fresh SQLite records database in a private temporary
 * directory, written through settings_apply() as the console and the
 * command line do (or through db.h directly to store what validation would
 * refuse).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "scan/settings.h"
#include "store/db.h"
#include "tmpdir.h"

struct fixture {
    char dir[256];
    char uri[340];
    struct db *db;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL || test_tmpdir_make(f->dir, sizeof f->dir, "settings") != 0) return -1;
    snprintf(f->uri, sizeof f->uri, "sqlite:%s/mxwarden.db", f->dir);
    if (db_open(f->uri, &f->db) != DB_OK) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    db_close(f->db);
    test_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* settings_apply() of one change, scope as an admin types it; returns its result. */
static int apply1(struct db *db, const char *scope_text, const char *key, const char *value)
{
    char scope[DB_MAX_SCOPE + 1];
    struct settings_change c;
    int k = settings_key_find(key);
    if (k < 0) fail_msg("unknown key %s", key);
    if (settings_scope_parse(scope_text, scope, sizeof scope) != SETTINGS_OK)
        fail_msg("scope %s: %s", scope_text, err_msg());
    c.scope = scope;
    c.key = (enum settings_key)k;
    c.value = value;
    return settings_apply(db, &c, 1);
}

static void set_ok(struct db *db, const char *scope_text, const char *key, const char *value)
{
    int rc = apply1(db, scope_text, key, value);
    if (rc != SETTINGS_OK)
        fail_msg("set %s %s %s: rc=%d %s", scope_text, key, value, rc, err_msg());
}

static void set_thresholds(struct db *db, const char *scope_text, const char *tag,
                           const char *quarantine, const char *reject)
{
    char scope[DB_MAX_SCOPE + 1];
    struct settings_change c[3];
    assert_int_equal(settings_scope_parse(scope_text, scope, sizeof scope), SETTINGS_OK);
    c[0] = (struct settings_change){scope, SETTING_THRESHOLD_TAG, tag};
    c[1] = (struct settings_change){scope, SETTING_THRESHOLD_QUARANTINE, quarantine};
    c[2] = (struct settings_change){scope, SETTING_THRESHOLD_REJECT, reject};
    if (settings_apply(db, c, 3) != SETTINGS_OK) fail_msg("%s: %s", scope_text, err_msg());
}

static struct settings *load(struct db *db)
{
    struct settings *s = NULL;
    assert_int_equal(settings_load(db, &s), SETTINGS_OK);
    assert_non_null(s);
    return s;
}

static void assert_thresholds(const struct thresholds *t, double tag, double q, double r)
{
    assert_float_equal(t->tag, tag, 1e-9);
    assert_float_equal(t->quarantine, q, 1e-9);
    assert_float_equal(t->reject, r, 1e-9);
}

/* ---- parsing ---- */

static void test_scopes_are_normalised(void **state)
{
    char out[DB_MAX_SCOPE + 1];
    (void)state;

    assert_int_equal(settings_scope_parse("global", out, sizeof out), SETTINGS_OK);
    assert_string_equal(out, "global");
    assert_int_equal(settings_scope_parse("Example.ORG.", out, sizeof out), SETTINGS_OK);
    assert_string_equal(out, "domain:example.org");
    assert_int_equal(settings_scope_parse("Bob.Smith@Example.ORG", out, sizeof out), SETTINGS_OK);
    assert_string_equal(out, "address:Bob.Smith@example.org");
    assert_string_equal(settings_scope_display(out), "Bob.Smith@example.org");
    assert_int_equal(settings_scope_parse("domain:example.org", out, sizeof out), SETTINGS_OK);
    assert_string_equal(out, "domain:example.org");
    assert_int_equal(settings_scope_parse("b\xc3\xbc"
                                          "cher.example",
                                          out, sizeof out),
                     SETTINGS_OK);
    assert_string_equal(out, "domain:xn--bcher-kva.example");

    assert_int_equal(settings_scope_parse("*.example.org", out, sizeof out), SETTINGS_INVALID);
    assert_non_null(strstr(err_msg(), "wildcards"));
    assert_int_equal(settings_scope_parse("exa mple.org", out, sizeof out), SETTINGS_INVALID);
    assert_int_equal(settings_scope_parse("example..org", out, sizeof out), SETTINGS_INVALID);
    assert_int_equal(settings_scope_parse("@example.org", out, sizeof out), SETTINGS_INVALID);
    assert_int_equal(settings_scope_parse("bob@", out, sizeof out), SETTINGS_INVALID);
    assert_int_equal(settings_scope_parse("", out, sizeof out), SETTINGS_INVALID);
    assert_int_equal(settings_scope_parse("address:nobody", out, sizeof out), SETTINGS_INVALID);
}

static void test_values_are_checked_and_canonical(void **state)
{
    char out[128];
    (void)state;

    assert_int_equal(settings_value_parse(SETTING_THRESHOLD_TAG, "7.5", out, sizeof out),
                     SETTINGS_OK);
    assert_string_equal(out, "7.5");
    assert_int_equal(settings_value_parse(SETTING_THRESHOLD_REJECT, "-3", out, sizeof out),
                     SETTINGS_OK);
    assert_int_equal(settings_value_parse(SETTING_ADD_REPORT_HEADER, "Off", out, sizeof out),
                     SETTINGS_OK);
    assert_string_equal(out, "no");
    assert_int_equal(settings_value_parse(SETTING_ADD_REPORT_HEADER, "true", out, sizeof out),
                     SETTINGS_OK);
    assert_string_equal(out, "yes");
    assert_int_equal(settings_value_parse(SETTING_SUBJECT_PREFIX, "[SPAM]", out, sizeof out),
                     SETTINGS_OK);
    assert_int_equal(settings_value_parse(SETTING_SUBJECT_PREFIX, "", out, sizeof out),
                     SETTINGS_OK);

    const char *bad_numbers[] = {"",    "abc",  "6x",   "inf",     "nan",
                                 "1e3", "0x10", "2000", "-1000.5", " 6"};
    for (size_t i = 0; i < sizeof bad_numbers / sizeof *bad_numbers; i++)
        if (settings_value_parse(SETTING_THRESHOLD_QUARANTINE, bad_numbers[i], out, sizeof out) !=
            SETTINGS_INVALID)
            fail_msg("threshold \"%s\" accepted", bad_numbers[i]);
    assert_non_null(strstr(err_msg(), "threshold.quarantine"));
    assert_int_equal(settings_value_parse(SETTING_ADD_REPORT_HEADER, "maybe", out, sizeof out),
                     SETTINGS_INVALID);
    assert_int_equal(settings_value_parse(SETTING_SUBJECT_PREFIX, "a\r\nBcc: x", out, sizeof out),
                     SETTINGS_INVALID);
    assert_int_equal(settings_value_parse(SETTING_SUBJECT_PREFIX,
                                          "0123456789012345678901234567890123456789"
                                          "0123456789012345678901234567890123456789",
                                          out, sizeof out),
                     SETTINGS_INVALID);
    assert_int_equal(settings_key_find("threshold.reject"), SETTING_THRESHOLD_REJECT);
    assert_int_equal(settings_key_find("threshold.spam"), -1);
}

/* ---- inheritance ---- */

static void test_defaults_apply_without_settings(void **state)
{
    struct fixture *f = *state;
    struct settings *s = load(f->db);
    const struct settings_effective *e = settings_for_recipient(s, "bob@example.org");
    int k;

    assert_thresholds(&e->thresholds, THRESHOLD_TAG_DEFAULT, THRESHOLD_QUARANTINE_DEFAULT,
                      THRESHOLD_REJECT_DEFAULT);
    assert_string_equal(e->subject_prefix, "");
    assert_true(e->add_report_header);
    for (k = 0; k < SETTINGS_N_KEYS; k++)
        assert_string_equal(e->source[k], "default");
    assert_int_equal(settings_db_generation(s), 0);
    settings_free(s);
}

static void test_address_overrides_domain_overrides_global(void **state)
{
    struct fixture *f = *state;
    struct settings *s;
    const struct settings_effective *e;

    set_ok(f->db, "global", "threshold.tag", "5");
    set_ok(f->db, "example.org", "threshold.quarantine", "10");
    set_ok(f->db, "example.org", "subject_prefix", "[SPAM]");
    set_ok(f->db, "bob@example.org", "threshold.reject", "15");
    set_ok(f->db, "bob@example.org", "add_report_header", "no");
    s = load(f->db);

    e = settings_for_recipient(s, "bob@example.org");
    assert_thresholds(&e->thresholds, 5, 10, 15);
    assert_string_equal(e->source[SETTING_THRESHOLD_TAG], "global");
    assert_string_equal(e->source[SETTING_THRESHOLD_QUARANTINE], "domain:example.org");
    assert_string_equal(e->source[SETTING_THRESHOLD_REJECT], "address:bob@example.org");
    assert_string_equal(e->subject_prefix, "[SPAM]");
    assert_false(e->add_report_header);
    assert_string_equal(e->scope, "address:bob@example.org");

    e = settings_for_recipient(s, "alice@example.org");
    assert_thresholds(&e->thresholds, 5, 10, 18);
    assert_true(e->add_report_header);
    assert_string_equal(e->scope, "domain:example.org");

    e = settings_for_recipient(s, "carol@other.org");
    assert_thresholds(&e->thresholds, 5, 12, 18);
    assert_string_equal(e->subject_prefix, "");
    assert_string_equal(e->source[SETTING_THRESHOLD_REJECT], "default");

    /* The same answers by scope, as `settings get` asks. */
    assert_thresholds(&settings_for_scope(s, "address:dave@example.org")->thresholds, 5, 10, 18);
    assert_thresholds(&settings_for_scope(s, "domain:none.org")->thresholds, 5, 12, 18);
    assert_thresholds(&settings_global(s)->thresholds, 5, 12, 18);
    settings_free(s);
}

static void test_domain_matches_case_insensitively_local_part_exactly(void **state)
{
    struct fixture *f = *state;
    struct settings *s;

    set_ok(f->db, "Example.ORG", "threshold.tag", "3");
    set_ok(f->db, "Bob@example.org", "threshold.tag", "2");
    s = load(f->db);
    assert_float_equal(settings_for_recipient(s, "x@EXAMPLE.org.")->thresholds.tag, 3, 1e-9);
    assert_float_equal(settings_for_recipient(s, "Bob@EXAMPLE.ORG")->thresholds.tag, 2, 1e-9);
    assert_float_equal(settings_for_recipient(s, "bob@example.org")->thresholds.tag, 3, 1e-9);
    settings_free(s);
}

static void test_subdomain_does_not_inherit_parent(void **state)
{
    struct fixture *f = *state;
    struct settings *s;

    set_ok(f->db, "example.org", "threshold.tag", "3");
    s = load(f->db);
    assert_float_equal(settings_for_recipient(s, "a@lists.example.org")->thresholds.tag,
                       THRESHOLD_TAG_DEFAULT, 1e-9);
    assert_float_equal(settings_for_recipient(s, "a@example.org")->thresholds.tag, 3, 1e-9);
    settings_free(s);
}

static void test_international_domain_matches_recipient_in_either_form(void **state)
{
    struct fixture *f = *state;
    struct settings *s;

    set_ok(f->db,
           "b\xc3\xbc"
           "cher.example",
           "threshold.tag", "4");
    s = load(f->db);
    assert_float_equal(settings_for_recipient(s, "a@xn--bcher-kva.example")->thresholds.tag, 4,
                       1e-9);
    assert_float_equal(settings_for_recipient(s, "a@b\xc3\xbc"
                                                 "cher.example")
                           ->thresholds.tag,
                       4, 1e-9);
    settings_free(s);
}

static void test_odd_recipients_fall_back_to_global(void **state)
{
    struct fixture *f = *state;
    struct settings *s;

    set_ok(f->db, "global", "threshold.tag", "4");
    set_ok(f->db, "example.org", "threshold.tag", "3");
    s = load(f->db);
    assert_float_equal(settings_for_recipient(s, "postmaster")->thresholds.tag, 4, 1e-9);
    assert_float_equal(settings_for_recipient(s, "a@")->thresholds.tag, 4, 1e-9);
    assert_float_equal(settings_for_recipient(s, "")->thresholds.tag, 4, 1e-9);
    assert_float_equal(settings_for_recipient(s, NULL)->thresholds.tag, 4, 1e-9);
    assert_float_equal(settings_for_recipient(s, "a@\xff\xfe.org")->thresholds.tag, 4, 1e-9);
    settings_free(s);
}

/* ---- validation ---- */

static void test_merged_threshold_order_is_enforced(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(apply1(f->db, "example.org", "threshold.quarantine", "5"), SETTINGS_INVALID);
    assert_string_equal(err_msg(),
                        "threshold.quarantine (5) must be greater than threshold.tag (6) for "
                        "example.org");
    assert_int_equal(apply1(f->db, "global", "threshold.tag", "13"), SETTINGS_INVALID);
    assert_string_equal(
        err_msg(), "threshold.tag (13) must be less than threshold.quarantine (12) for global");
    assert_int_equal(apply1(f->db, "bob@example.org", "threshold.reject", "12"), SETTINGS_INVALID);
    assert_string_equal(err_msg(), "threshold.reject (12) must be greater than "
                                   "threshold.quarantine (12) for bob@example.org");

    /* All three at once can move past the old values in any order. */
    set_thresholds(f->db, "example.org", "20", "30", "40");

    /* A global change is checked against every scope that inherits it. */
    set_ok(f->db, "other.org", "threshold.quarantine", "10");
    assert_int_equal(apply1(f->db, "global", "threshold.tag", "11"), SETTINGS_INVALID);
    assert_string_equal(err_msg(), "threshold.tag (11) must be less than threshold.quarantine "
                                   "(10) for other.org");
    /* A domain change is checked against its addresses. */
    set_ok(f->db, "bob@example.org", "threshold.reject", "35");
    assert_int_equal(apply1(f->db, "example.org", "threshold.quarantine", "36"), SETTINGS_INVALID);
    assert_non_null(strstr(err_msg(), "for bob@example.org"));

    /* Nothing refused was written. */
    {
        struct settings *s = load(f->db);
        assert_thresholds(&settings_global(s)->thresholds, 6, 12, 18);
        assert_thresholds(&settings_for_recipient(s, "bob@example.org")->thresholds, 20, 30, 35);
        settings_free(s);
    }
}

static void test_unset_is_validated_too(void **state)
{
    struct fixture *f = *state;
    struct settings *s;

    set_thresholds(f->db, "example.org", "2", "4", "8");
    /* Without its own tag the domain would inherit 6, above its quarantine of 4. */
    assert_int_equal(apply1(f->db, "example.org", "threshold.tag", NULL), SETTINGS_INVALID);
    assert_non_null(strstr(err_msg(), "threshold.tag (6)"));
    set_ok(f->db, "example.org", "threshold.reject", NULL); /* inherits 18: fine */
    s = load(f->db);
    assert_thresholds(&settings_for_recipient(s, "a@example.org")->thresholds, 2, 4, 18);
    assert_string_equal(
        settings_for_recipient(s, "a@example.org")->source[SETTING_THRESHOLD_REJECT], "default");
    settings_free(s);
}

static void test_bad_rows_in_database_do_not_stop_loading(void **state)
{
    struct fixture *f = *state;
    struct settings *s;

    /* Written behind validation's back: out of order, unknown key, bad value, bad scope. */
    assert_int_equal(db_setting_set(f->db, "domain:example.org", "threshold.quarantine", "3"),
                     DB_OK);
    assert_int_equal(db_setting_set(f->db, "domain:example.org", "subject_prefix", "[S]"), DB_OK);
    assert_int_equal(db_setting_set(f->db, "global", "future.key", "x"), DB_OK);
    assert_int_equal(db_setting_set(f->db, "global", "threshold.tag", "many"), DB_OK);
    assert_int_equal(db_setting_set(f->db, "domain:EXAMPLE.net", "threshold.tag", "1"), DB_OK);
    assert_int_equal(db_setting_set(f->db, "realm:x", "threshold.tag", "1"), DB_OK);

    s = load(f->db);
    {
        const struct settings_effective *e = settings_for_recipient(s, "a@example.org");
        /* The domain's out-of-order thresholds give way to the inherited ones; the rest holds. */
        assert_thresholds(&e->thresholds, 6, 12, 18);
        assert_string_equal(e->source[SETTING_THRESHOLD_QUARANTINE], "default");
        assert_string_equal(e->subject_prefix, "[S]");
        assert_float_equal(settings_global(s)->thresholds.tag, 6, 1e-9);
        assert_float_equal(settings_for_recipient(s, "a@example.net")->thresholds.tag, 6, 1e-9);
    }
    settings_free(s);
}

/* ---- several recipients ---- */

/* strict.org rejects above 3, lenient.org only above 70; default.org has no settings. */
static struct settings *mixed_setup(struct db *db)
{
    set_thresholds(db, "strict.org", "1", "2", "3");
    set_thresholds(db, "lenient.org", "50", "60", "70");
    set_ok(db, "tagger.org", "subject_prefix", "[SPAM]");
    return load(db);
}

static void decide(const struct settings *s, double score, const char *const *rcpt, size_t n,
                   struct settings_decision *d)
{
    settings_action_for_recipients(s, score, rcpt, n, d);
    assert_non_null(d->settings);
    assert_non_null(d->decided_by);
}

static void test_all_recipients_reject_means_reject(void **state)
{
    struct fixture *f = *state;
    struct settings *s = mixed_setup(f->db);
    const char *rcpt[] = {"a@default.org", "b@strict.org"};
    struct settings_decision d;

    decide(s, 25, rcpt, 2, &d);
    assert_int_equal(d.action, ACTION_REJECT);
    assert_string_equal(d.decided_by, "a@default.org");
    assert_thresholds(&d.thresholds, 6, 12, 18);
    settings_free(s);
}

static void test_one_reject_and_one_deliver_means_quarantine(void **state)
{
    struct fixture *f = *state;
    struct settings *s = mixed_setup(f->db);
    const char *rcpt[] = {"a@lenient.org", "b@strict.org"};
    struct settings_decision d;

    decide(s, 10, rcpt, 2, &d);
    assert_int_equal(d.action, ACTION_QUARANTINE);
    /* Nobody's own thresholds say quarantine: the outvoted rejecting recipient decided. */
    assert_string_equal(d.decided_by, "b@strict.org");
    assert_thresholds(&d.thresholds, 1, 2, 3);
    settings_free(s);
}

static void test_one_quarantine_means_quarantine(void **state)
{
    struct fixture *f = *state;
    struct settings *s = mixed_setup(f->db);
    const char *rcpt[] = {"a@lenient.org", "b@default.org", "c@lenient.org"};
    struct settings_decision d;

    decide(s, 13, rcpt, 3, &d);
    assert_int_equal(d.action, ACTION_QUARANTINE);
    assert_string_equal(d.decided_by, "b@default.org");
    settings_free(s);
}

static void test_quarantining_recipient_decides_over_rejecting_one(void **state)
{
    struct fixture *f = *state;
    struct settings *s = mixed_setup(f->db);
    const char *rcpt[] = {"a@strict.org", "b@default.org"};
    struct settings_decision d;

    decide(s, 13, rcpt, 2, &d);
    assert_int_equal(d.action, ACTION_QUARANTINE);
    assert_string_equal(d.decided_by, "b@default.org");
    assert_thresholds(&d.thresholds, 6, 12, 18);
    settings_free(s);
}

static void test_tag_and_deliver_means_tag_with_taggers_options(void **state)
{
    struct fixture *f = *state;
    struct settings *s = mixed_setup(f->db);
    const char *rcpt[] = {"a@lenient.org", "b@tagger.org", "c@default.org"};
    struct settings_decision d;

    decide(s, 8, rcpt, 3, &d);
    assert_int_equal(d.action, ACTION_TAG);
    assert_string_equal(d.decided_by, "b@tagger.org");
    assert_string_equal(d.settings->subject_prefix, "[SPAM]");

    decide(s, 1, rcpt, 3, &d);
    assert_int_equal(d.action, ACTION_DELIVER);
    assert_string_equal(d.decided_by, "a@lenient.org");
    settings_free(s);
}

static void test_single_recipient_follows_its_thresholds(void **state)
{
    struct fixture *f = *state;
    struct settings *s = mixed_setup(f->db);
    const char *rcpt[] = {"x@strict.org"};
    struct settings_decision d;
    const double scores[] = {0.5, 1.5, 2.5, 3.5, 1.0, 3.0};
    const enum scan_action want[] = {ACTION_DELIVER, ACTION_TAG,     ACTION_QUARANTINE,
                                     ACTION_REJECT,  ACTION_DELIVER, ACTION_QUARANTINE};

    for (size_t i = 0; i < sizeof scores / sizeof *scores; i++) {
        decide(s, scores[i], rcpt, 1, &d);
        assert_int_equal(d.action, want[i]);
        assert_string_equal(d.decided_by, "x@strict.org");
    }
    settings_free(s);
}

static void test_no_recipients_uses_global_as_default(void **state)
{
    struct fixture *f = *state;
    struct settings *s;
    struct settings_decision d;

    set_ok(f->db, "global", "threshold.reject", "15");
    s = load(f->db);
    decide(s, 16, NULL, 0, &d);
    assert_int_equal(d.action, ACTION_REJECT);
    assert_string_equal(d.decided_by, "default");
    assert_thresholds(&d.thresholds, 6, 12, 15);
    settings_free(s);
}

/* ---- the cache ---- */

static void test_cache_swaps_in_reload_on_next_pin(void **state)
{
    struct fixture *f = *state;
    struct settings_cache *c = settings_cache_new();
    struct settings_ref ref = {0};
    const struct settings *before, *after;
    bool reloaded = true;

    before = settings_cache_pin(c, &ref);
    assert_float_equal(settings_global(before)->thresholds.tag, 6, 1e-9);
    assert_ptr_equal(settings_cache_pin(c, &ref), before); /* no reload: same snapshot */

    assert_int_equal(settings_cache_reload_if_changed(c, f->db, &reloaded), SETTINGS_OK);
    assert_true(reloaded); /* never loaded from the database yet */
    set_ok(f->db, "global", "threshold.tag", "4");
    /* The snapshot pinned before stays whole until this thread pins again. */
    assert_float_equal(settings_global(before)->thresholds.tag, 6, 1e-9);
    assert_int_equal(settings_cache_reload_if_changed(c, f->db, &reloaded), SETTINGS_OK);
    assert_true(reloaded);
    assert_int_equal(settings_cache_reload_if_changed(c, f->db, &reloaded), SETTINGS_OK);
    assert_false(reloaded);

    after = settings_cache_pin(c, &ref);
    assert_float_equal(settings_global(after)->thresholds.tag, 4, 1e-9);
    assert_int_equal(settings_db_generation(after), 1);
    settings_ref_drop(c, &ref);
    settings_cache_free(c);
}

#define PIN_THREADS 4

struct pin_arg {
    struct settings_cache *cache;
    atomic_bool *stop;
    atomic_long pins;
    long bad;
    double last_tag;
};

static void *pin_thread(void *p)
{
    struct pin_arg *a = p;
    struct settings_ref ref = {0};
    const char *rcpt[] = {"a@example.org", "b@other.org"};

    while (!atomic_load(a->stop)) {
        const struct settings *s = settings_cache_pin(a->cache, &ref);
        struct settings_decision d;
        const struct thresholds *t = &settings_for_recipient(s, "a@example.org")->thresholds;
        /* Every snapshot a scan can see is consistent: the domain is always tag+1, tag+2. */
        if (!(t->quarantine == t->tag + 1 && t->reject == t->tag + 2)) a->bad++;
        settings_action_for_recipients(s, 500, rcpt, 2, &d);
        if (d.action != ACTION_REJECT) a->bad++;
        a->last_tag = t->tag;
        atomic_fetch_add(&a->pins, 1);
    }
    settings_ref_drop(a->cache, &ref);
    return NULL;
}

static void test_cache_reloads_under_concurrent_readers(void **state)
{
    struct fixture *f = *state;
    struct settings_cache *c = settings_cache_new();
    struct pin_arg args[PIN_THREADS];
    pthread_t threads[PIN_THREADS];
    atomic_bool stop;
    int i;

    atomic_init(&stop, false);
    set_thresholds(f->db, "example.org", "10", "11", "12");
    assert_int_equal(settings_cache_reload(c, f->db), SETTINGS_OK);
    for (i = 0; i < PIN_THREADS; i++) {
        args[i] = (struct pin_arg){c, &stop, 0, 0, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, pin_thread, &args[i]), 0);
    }
    /* Every reader is running before the reloads start (they are quick without disk syncs). */
    for (i = 0; i < PIN_THREADS; i++)
        while (atomic_load(&args[i].pins) == 0)
            sched_yield();
    for (i = 1; i <= 40; i++) {
        char t[16], q[16], r[16];
        bool reloaded = false;
        snprintf(t, sizeof t, "%d", 10 + 3 * i);
        snprintf(q, sizeof q, "%d", 11 + 3 * i);
        snprintf(r, sizeof r, "%d", 12 + 3 * i);
        /* All three in one write: each step moves tag above the old reject. */
        set_thresholds(f->db, "example.org", t, q, r);
        assert_int_equal(settings_cache_reload_if_changed(c, f->db, &reloaded), SETTINGS_OK);
        assert_true(reloaded);
    }
    atomic_store(&stop, true);
    for (i = 0; i < PIN_THREADS; i++) {
        pthread_join(threads[i], NULL);
        assert_true(atomic_load(&args[i].pins) > 0);
        assert_int_equal(args[i].bad, 0);
    }
    {
        struct settings_ref ref = {0};
        const struct settings *s = settings_cache_pin(c, &ref);
        assert_float_equal(settings_for_recipient(s, "a@example.org")->thresholds.tag, 130, 1e-9);
        settings_ref_drop(c, &ref);
    }
    settings_cache_free(c);
}

static void test_failed_reload_keeps_old_snapshot(void **state)
{
    struct fixture *f = *state;
    struct settings_cache *c = settings_cache_new();
    struct settings_ref ref = {0};
    char path[400];
    sqlite3 *h;

    set_ok(f->db, "global", "threshold.tag", "3");
    assert_int_equal(settings_cache_reload(c, f->db), SETTINGS_OK);
    /* Another process breaks the database under the open connection. */
    snprintf(path, sizeof path, "%s/mxwarden.db", f->dir);
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "DROP TABLE settings", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);

    assert_int_equal(settings_cache_reload(c, f->db), SETTINGS_STORE);
    assert_non_null(strstr(err_msg(), "settings"));
    assert_float_equal(settings_global(settings_cache_pin(c, &ref))->thresholds.tag, 3, 1e-9);
    settings_ref_drop(c, &ref);
    settings_cache_free(c);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scopes_are_normalised),
        cmocka_unit_test(test_values_are_checked_and_canonical),
        T(test_defaults_apply_without_settings),
        T(test_address_overrides_domain_overrides_global),
        T(test_domain_matches_case_insensitively_local_part_exactly),
        T(test_subdomain_does_not_inherit_parent),
        T(test_international_domain_matches_recipient_in_either_form),
        T(test_odd_recipients_fall_back_to_global),
        T(test_merged_threshold_order_is_enforced),
        T(test_unset_is_validated_too),
        T(test_bad_rows_in_database_do_not_stop_loading),
        T(test_all_recipients_reject_means_reject),
        T(test_one_reject_and_one_deliver_means_quarantine),
        T(test_one_quarantine_means_quarantine),
        T(test_quarantining_recipient_decides_over_rejecting_one),
        T(test_tag_and_deliver_means_tag_with_taggers_options),
        T(test_single_recipient_follows_its_thresholds),
        T(test_no_recipients_uses_global_as_default),
        T(test_cache_swaps_in_reload_on_next_pin),
        T(test_cache_reloads_under_concurrent_readers),
        T(test_failed_reload_keeps_old_snapshot),
    };
    log_set_level(LOG_LEVEL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
