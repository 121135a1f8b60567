/*
 * kv_lmdb - the embedded kv backend: one LMDB file. See kv.h for the contract.
 *
 * URI: "lmdb:PATH[?OPTION=VALUE&...]". PATH is a single file, created if
 * absent (its directory must exist), with LMDB's lock file beside it as
 * "PATH-lock". Options (sizes take an optional k/m/g suffix, powers of 1024):
 *   map_size=BYTES      initial map size (default 64m); the map doubles when full
 *   max_map_size=BYTES  never grow beyond this (default 0: as far as address space goes)
 *   sync=full|meta|none fsync policy of each commit (default meta): "full" syncs data
 *                       and meta page; "meta" (MDB_NOMETASYNC) skips the meta page's
 *                       sync, so an OS crash may undo the last commit but never breaks
 *                       the file; "none" (MDB_NOSYNC) leaves it all to the OS.
 * The default is "meta": it keeps the file intact through any crash and
 * halves the fsyncs of the small, frequent commits of rate limits and
 * greylisting (measured: ~7,600 one-key commits/s against ~3,900 with "full");
 * losing the last commit on a power cut is harmless for counters. Large
 * commits (learning) are bound by writing their dirty pages either way.
 *
 * Sharing. LMDB forbids opening one file twice in a process (closing either
 * drops the other's POSIX locks), so handles share one MDB_env per file,
 * found by device and inode (immune to path aliases) in a registry guarded by
 * a mutex and reference-counted. The first open's options win. The env is
 * opened with MDB_NOTLS: a read txn belongs to its handle, not to a thread,
 * so each handle keeps one read txn and resets/renews it per call.
 *
 * Layout: one unnamed database. Key = namespace bytes, 0x00, a tag, payload.
 * Namespaces contain no NUL, so the 0x00 ends them and two namespaces never
 * share a key; the tag keeps counters and blobs of a namespace apart:
 *   'c'  counter; payload = the 64-bit key big-endian, so that memcmp order is
 *        numeric order and sorted batches walk the B-tree left to right;
 *   'b'  blob; payload = the key bytes;
 *   'h'  blob whose key would exceed LMDB's key limit (511 bytes): payload =
 *        as many leading key bytes as fit, then XXH3-128 of the whole key (a
 *        collision is as likely as a random 128-bit match, i.e. never).
 * Value = a flags byte, an optional expiry, then the payload:
 *   byte 0   bit 7: an expiry follows; bits 0..4: counter width (0 for a blob);
 *            bits 5..6 must be zero (a future format sets them; we refuse to
 *            misread it)
 *   [8 bytes] expiry, milliseconds since the epoch, u64 little-endian (wall
 *            clock, because the file outlives the process)
 *   counters: width × u32 little-endian; blobs: the value bytes.
 * An expired entry reads as absent. It is deleted lazily: overwritten by the
 * next put, or restarted from zero by the next increment; no sweeper thread.
 * A counter vector that reaches all zeros is deleted (absent reads as zeros),
 * so unlearning gives the space back.
 *
 * Map growth. A commit that meets MDB_MAP_FULL (in a put or in the commit
 * itself) is aborted, the map is doubled, and the whole batch is replayed in
 * a new transaction; if it cannot grow (max_map_size, or no address space)
 * the commit fails with KV_FULL and nothing is written. mdb_env_set_mapsize()
 * must not run while any txn of this process is live, so every txn runs
 * under the env's map_lock held for reading and growth takes it for writing
 * (a writer-preferring rwlock, so readers cannot starve a growth). A reset
 * read txn holds no pointer into the map and may stay across a remap.
 * When another process has grown the file, LMDB answers MDB_MAP_RESIZED and
 * we adopt the size recorded in the file the same way.
 */
#include "store/kv_backend.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <xxhash.h>

#define KV_LMDB_DEFAULT_MAP_BYTES ((size_t)64 << 20)
#define KV_LMDB_MIN_MAP_BYTES     ((size_t)64 << 10)
#define KV_LMDB_MAX_READERS       1024
#define KV_LMDB_FLAG_EXPIRY       0x80u
#define KV_LMDB_FLAG_WIDTH        0x1fu
#define KV_LMDB_KEY_BUF           (KV_MAX_NS + 2 + KV_MAX_KEY)
#define KV_LMDB_HASH_BYTES        16
/* Remaps in one call before we give up: growth doubles, so this is far beyond need. */
#define KV_LMDB_MAX_REMAPS 48
/* Below this many keys, sorting a read costs more than the locality it buys. */
#define KV_LMDB_SORT_MIN 32
/* Our own code for "an entry is not in our format" (MDB codes are <= -30780 or errno > 0). */
#define KV_LMDB_CORRUPT (-1)

struct kv_lmdb_env {
    struct kv_lmdb_env *next; /* registry list, guarded by kv_lmdb_registry_lock */
    unsigned refs;            /* handles open on this env; guarded likewise */
    dev_t dev;
    ino_t ino;
    char *path;
    MDB_env *env;
    MDB_dbi dbi;
    size_t max_key_bytes; /* mdb_env_get_maxkeysize() */
    size_t max_map_bytes; /* 0: unlimited */
    pthread_rwlock_t map_lock;
    /* Written under map_lock held for writing, read under it held for reading: */
    uint64_t map_generation; /* bumped by each remap */
    bool map_lost;           /* a remap failed after LMDB had unmapped: unusable */
};

static pthread_mutex_t kv_lmdb_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kv_lmdb_env *kv_lmdb_registry;

struct kv_counter_ref {
    uint64_t key;
    uint32_t ns;
    uint32_t index; /* position in the caller's keys, or of the op in the batch */
};

/*
 * A per-handle cache of counter vectors read from the store. An entry is
 * valid only for the snapshot (LMDB transaction id) it was read in, so any
 * commit, by any process, makes every entry stale at once with no
 * invalidation traffic; absent keys are cached as zeros, which matters
 * because most features of a message are not in the store. Entries with an
 * expiry are not cached. Direct-mapped: a collision replaces the older entry.
 * Classification of a stream of messages with no learning in between hits it
 * for the common words and header tokens.
 */
#define KV_LMDB_CACHE_SLOTS 32768 /* power of two; about 2.5 MB per handle */

struct kv_lmdb_cached {
    uint64_t key;
    uint64_t ns_hash; /* 0: empty */
    uint64_t txnid;
    uint32_t width;
    uint32_t counters[KV_MAX_WIDTH];
};

struct kv_lmdb {
    struct kv_lmdb_env *shared;  /* one reference, dropped by close */
    struct kv_lmdb_cached *cache; /* KV_LMDB_CACHE_SLOTS, allocated on first counter read */
    MDB_txn *read_txn;           /* reset between calls, or NULL */
    MDB_cursor *read_cursor;     /* bound to read_txn, or NULL */
    struct kv_counter_ref *refs; /* 2 * refs_cap entries of scratch for sorting, reused */
    size_t refs_cap;
};

struct kv_lmdb_entry {
    bool has_expiry;
    uint64_t expires_ms;
    unsigned width; /* 0 for a blob */
    const unsigned char *payload;
    size_t payload_len;
};

struct kv_lmdb_options {
    size_t map_bytes;
    size_t max_map_bytes;
    unsigned env_flags;
};

/* ---- value and key encoding ---- */

static void kv_put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t kv_get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void kv_put_le64(unsigned char *p, uint64_t v)
{
    kv_put_le32(p, (uint32_t)v);
    kv_put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t kv_get_le64(const unsigned char *p)
{
    return (uint64_t)kv_get_le32(p) | (uint64_t)kv_get_le32(p + 4) << 32;
}

/* Returns false if v is not a value this module wrote. */
static bool kv_lmdb_decode(const MDB_val *v, struct kv_lmdb_entry *e)
{
    const unsigned char *p = v->mv_data;
    size_t header;

    if (v->mv_size < 1 || (p[0] & 0x60u) != 0) return false;
    e->has_expiry = (p[0] & KV_LMDB_FLAG_EXPIRY) != 0;
    e->width = p[0] & KV_LMDB_FLAG_WIDTH;
    header = e->has_expiry ? 9 : 1;
    if (v->mv_size < header || e->width > KV_MAX_WIDTH) return false;
    e->expires_ms = e->has_expiry ? kv_get_le64(p + 1) : 0;
    e->payload = p + header;
    e->payload_len = v->mv_size - header;
    if (e->width && e->payload_len != (size_t)e->width * 4) return false;
    return true;
}

static bool kv_lmdb_expired(const struct kv_lmdb_entry *e, uint64_t now_ms)
{
    return e->has_expiry && now_ms >= e->expires_ms;
}

/* Writes the flags byte and expiry at p; returns the header length. */
static size_t kv_lmdb_header(unsigned char *p, unsigned width, unsigned ttl_seconds,
                             uint64_t now_ms)
{
    p[0] = (unsigned char)width;
    if (ttl_seconds == 0) return 1;
    p[0] |= KV_LMDB_FLAG_EXPIRY;
    kv_put_le64(p + 1, now_ms + (uint64_t)ttl_seconds * 1000u);
    return 9;
}

static size_t kv_lmdb_counter_key(unsigned char *out, const char *ns, size_t ns_len, uint64_t key)
{
    unsigned i;
    memcpy(out, ns, ns_len);
    out[ns_len] = 0;
    out[ns_len + 1] = 'c';
    for (i = 0; i < 8; i++)
        out[ns_len + 2 + i] = (unsigned char)(key >> (56 - 8 * i));
    return ns_len + 10;
}

static size_t kv_lmdb_blob_key(const struct kv_lmdb_env *sh, unsigned char *out, const char *ns,
                               size_t ns_len, const void *key, size_t key_len)
{
    size_t head = ns_len + 2, keep;
    XXH128_canonical_t digest;

    memcpy(out, ns, ns_len);
    out[ns_len] = 0;
    if (head + key_len <= sh->max_key_bytes) {
        out[ns_len + 1] = 'b';
        if (key_len) memcpy(out + head, key, key_len);
        return head + key_len;
    }
    out[ns_len + 1] = 'h';
    keep = sh->max_key_bytes - head - KV_LMDB_HASH_BYTES;
    memcpy(out + head, key, keep);
    XXH128_canonicalFromHash(&digest, XXH3_128bits(key, key_len));
    memcpy(out + head + keep, digest.digest, KV_LMDB_HASH_BYTES);
    return sh->max_key_bytes;
}

/* ---- errors ---- */

static int kv_lmdb_fail(const struct kv_lmdb_env *sh, const char *what, int rc)
{
    err_set("kv lmdb: %s: %s: %s", sh->path, what, mdb_strerror(rc));
    return rc == ENOSPC ? KV_FULL : KV_ERR;
}

/* ---- the process-wide registry of environments ---- */

static int kv_lmdb_parse_size(const char *s, size_t len, size_t *out)
{
    size_t i = 0, v = 0, mult = 1;
    if (len == 0) return -1;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (SIZE_MAX - 9) / 10) return -1;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    if (i == 0) return -1;
    if (i + 1 == len) {
        switch (s[i]) {
        case 'k':
        case 'K':
            mult = (size_t)1 << 10;
            break;
        case 'm':
        case 'M':
            mult = (size_t)1 << 20;
            break;
        case 'g':
        case 'G':
            mult = (size_t)1 << 30;
            break;
        default:
            return -1;
        }
    } else if (i != len) {
        return -1;
    }
    if (v > SIZE_MAX / mult) return -1;
    *out = v * mult;
    return 0;
}

/* Parses "name=value&..." into opt; returns KV_OK or KV_ERR with err_set(). */
static int kv_lmdb_parse_options(const char *q, struct kv_lmdb_options *opt)
{
    struct kv_option o;

    while (kv_option_next(&q, &o)) {
        const char *name = o.name, *val = o.value;
        size_t name_len = o.name_len, val_len = o.value_len;
        int bad = 0;

        if (name_len == 8 && memcmp(name, "map_size", 8) == 0) {
            bad = kv_lmdb_parse_size(val, val_len, &opt->map_bytes) != 0 ||
                  opt->map_bytes < KV_LMDB_MIN_MAP_BYTES;
        } else if (name_len == 12 && memcmp(name, "max_map_size", 12) == 0) {
            bad = kv_lmdb_parse_size(val, val_len, &opt->max_map_bytes) != 0;
        } else if (name_len == 4 && memcmp(name, "sync", 4) == 0) {
            if (val_len == 4 && memcmp(val, "full", 4) == 0)
                opt->env_flags = 0;
            else if (val_len == 4 && memcmp(val, "meta", 4) == 0)
                opt->env_flags = MDB_NOMETASYNC;
            else if (val_len == 4 && memcmp(val, "none", 4) == 0)
                opt->env_flags = MDB_NOSYNC;
            else
                bad = 1;
        } else {
            err_set("kv lmdb: unknown option \"%.*s\" (known: map_size, max_map_size, sync)",
                    (int)(name_len > 40 ? 40 : name_len), name);
            return KV_ERR;
        }
        if (bad) {
            err_set("kv lmdb: bad value \"%.*s\" for option %.*s (map_size is at least %zu)",
                    (int)(val_len > 40 ? 40 : val_len), val, (int)name_len, name,
                    KV_LMDB_MIN_MAP_BYTES);
            return KV_ERR;
        }
    }
    if (opt->max_map_bytes && opt->max_map_bytes < opt->map_bytes) {
        err_set("kv lmdb: max_map_size %zu is below map_size %zu", opt->max_map_bytes,
                opt->map_bytes);
        return KV_ERR;
    }
    return KV_OK;
}

/* Opens a new env on path (registry lock held). Returns KV_OK and *out, or an error. */
static int kv_lmdb_env_open(const char *path, const struct kv_lmdb_options *opt, bool existed,
                            struct kv_lmdb_env **out)
{
    struct kv_lmdb_env *sh = xcalloc(1, sizeof *sh);
    pthread_rwlockattr_t attr;
    MDB_envinfo info;
    MDB_txn *txn = NULL;
    struct stat st;
    int fd, rc;

    sh->path = xstrdup(path);
    sh->max_map_bytes = opt->max_map_bytes;
    rc = mdb_env_create(&sh->env);
    if (rc != 0) goto fail;
    mdb_env_set_maxreaders(sh->env, KV_LMDB_MAX_READERS);
    /* For an existing file, 0 means "the size recorded in the file", so a map
     * that grew in an earlier run starts at its grown size. */
    mdb_env_set_mapsize(sh->env, existed ? 0 : opt->map_bytes);
    rc = mdb_env_open(sh->env, path, MDB_NOSUBDIR | MDB_NOTLS | MDB_NORDAHEAD | opt->env_flags, 0600);
    if (rc != 0) goto fail;
    mdb_env_info(sh->env, &info);
    if (info.me_mapsize < opt->map_bytes) {
        rc = mdb_env_set_mapsize(sh->env, opt->map_bytes);
        if (rc != 0) goto fail;
    }
    sh->max_key_bytes = (size_t)mdb_env_get_maxkeysize(sh->env);
    /* The long-key form needs room for the hash after the longest namespace. */
    assert(sh->max_key_bytes >= KV_MAX_NS + 2 + KV_LMDB_HASH_BYTES + 1);
    rc = mdb_txn_begin(sh->env, NULL, 0, &txn);
    if (rc != 0) goto fail;
    rc = mdb_dbi_open(txn, NULL, 0, &sh->dbi);
    if (rc != 0) {
        mdb_txn_abort(txn);
        goto fail;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) goto fail;
    mdb_env_get_fd(sh->env, &fd);
    if (fstat(fd, &st) != 0) {
        rc = errno;
        goto fail;
    }
    sh->dev = st.st_dev;
    sh->ino = st.st_ino;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&sh->map_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    sh->refs = 1;
    *out = sh;
    return KV_OK;

fail:
    err_set("kv lmdb: cannot open %s: %s", path, mdb_strerror(rc));
    if (sh->env) mdb_env_close(sh->env);
    free(sh->path);
    free(sh);
    return KV_ERR;
}

static void kv_lmdb_env_release(struct kv_lmdb_env *sh)
{
    struct kv_lmdb_env **pp;

    pthread_mutex_lock(&kv_lmdb_registry_lock);
    assert(sh->refs > 0);
    if (--sh->refs > 0) {
        pthread_mutex_unlock(&kv_lmdb_registry_lock);
        return;
    }
    for (pp = &kv_lmdb_registry; *pp != sh; pp = &(*pp)->next)
        assert(*pp != NULL);
    *pp = sh->next;
    pthread_mutex_unlock(&kv_lmdb_registry_lock);
    mdb_env_close(sh->env);
    pthread_rwlock_destroy(&sh->map_lock);
    free(sh->path);
    free(sh);
}

static int kv_lmdb_open(const char *spec, void **state)
{
    struct kv_lmdb_options opt = {KV_LMDB_DEFAULT_MAP_BYTES, 0, MDB_NOMETASYNC};
    const char *q = strchr(spec, '?');
    size_t path_len = q ? (size_t)(q - spec) : strlen(spec);
    struct kv_lmdb_env *sh = NULL;
    struct kv_lmdb *h;
    struct stat st;
    bool existed;
    char *path;
    int rc;

    if (path_len == 0) {
        err_set("kv lmdb: empty path (expected lmdb:PATH)");
        return KV_ERR;
    }
    if (q && kv_lmdb_parse_options(q + 1, &opt) != KV_OK) return KV_ERR;
    path = xstrndup(spec, path_len);
    pthread_mutex_lock(&kv_lmdb_registry_lock);
    existed = stat(path, &st) == 0;
    if (existed && !S_ISREG(st.st_mode)) {
        pthread_mutex_unlock(&kv_lmdb_registry_lock);
        err_set("kv lmdb: %s is not a regular file", path);
        free(path);
        return KV_ERR;
    }
    if (existed) {
        for (sh = kv_lmdb_registry; sh; sh = sh->next)
            if (sh->dev == st.st_dev && sh->ino == st.st_ino) break;
    }
    if (sh) {
        sh->refs++;
    } else {
        rc = kv_lmdb_env_open(path, &opt, existed, &sh);
        if (rc != KV_OK) {
            pthread_mutex_unlock(&kv_lmdb_registry_lock);
            free(path);
            return rc;
        }
        sh->next = kv_lmdb_registry;
        kv_lmdb_registry = sh;
    }
    pthread_mutex_unlock(&kv_lmdb_registry_lock);
    free(path);
    h = xcalloc(1, sizeof *h);
    h->shared = sh;
    *state = h;
    return KV_OK;
}

static void kv_lmdb_close(void *state)
{
    struct kv_lmdb *h = state;
    if (h->read_cursor) mdb_cursor_close(h->read_cursor);
    if (h->read_txn) mdb_txn_abort(h->read_txn);
    kv_lmdb_env_release(h->shared);
    free(h->refs);
    free(h->cache);
    free(h);
}

/* ---- remapping ---- */

/*
 * Remaps the env unless someone did since seen_generation: to new_bytes, or
 * with new_bytes 0 to the size another process recorded in the file. Takes
 * map_lock for writing, so the caller must not hold it.
 */
static int kv_lmdb_remap(struct kv_lmdb_env *sh, uint64_t seen_generation, size_t new_bytes)
{
    int rc;

    pthread_rwlock_wrlock(&sh->map_lock);
    if (sh->map_generation != seen_generation) {
        pthread_rwlock_unlock(&sh->map_lock);
        return KV_OK;
    }
    if (new_bytes) {
        /* mdb_env_set_mapsize() unmaps first and cannot restore the old map if
         * the new mmap fails, so make sure the address space exists. */
        void *probe =
            mmap(NULL, new_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (probe == MAP_FAILED) {
            pthread_rwlock_unlock(&sh->map_lock);
            err_set("kv lmdb: %s: map full and no address space for %zu bytes; nothing written",
                    sh->path, new_bytes);
            return KV_FULL;
        }
        munmap(probe, new_bytes);
    }
    rc = mdb_env_set_mapsize(sh->env, new_bytes);
    if (rc == 0)
        sh->map_generation++;
    else
        sh->map_lost = true;
    pthread_rwlock_unlock(&sh->map_lock);
    if (rc != 0) {
        log_error("event=kv_lmdb_remap_failed path=%s map_bytes=%zu error=\"%s\"", sh->path,
                  new_bytes, mdb_strerror(rc));
        err_set("kv lmdb: %s: remap to %zu bytes failed (%s); reopen the store", sh->path,
                new_bytes, mdb_strerror(rc));
        return KV_ERR;
    }
    if (new_bytes) log_info("event=kv_lmdb_map_grown path=%s map_bytes=%zu", sh->path, new_bytes);
    return KV_OK;
}

/* Doubles the map after MDB_MAP_FULL, or KV_FULL if it may not or cannot grow. */
static int kv_lmdb_grow(struct kv_lmdb_env *sh, uint64_t seen_generation)
{
    MDB_envinfo info;
    size_t cur, want;

    pthread_rwlock_rdlock(&sh->map_lock);
    mdb_env_info(sh->env, &info);
    pthread_rwlock_unlock(&sh->map_lock);
    cur = info.me_mapsize;
    want = cur > SIZE_MAX / 2 ? SIZE_MAX : cur * 2;
    if (sh->max_map_bytes && want > sh->max_map_bytes) want = sh->max_map_bytes;
    if (want <= cur) {
        err_set("kv lmdb: %s: map full at %zu bytes and max_map_size=%zu forbids growth; "
                "nothing written",
                sh->path, cur, sh->max_map_bytes);
        return KV_FULL;
    }
    return kv_lmdb_remap(sh, seen_generation, want);
}

/* ---- reads ---- */

/*
 * Starts the handle's read txn and takes map_lock for reading; on KV_OK the
 * caller ends with kv_lmdb_read_end(). Adopts a map grown by another process.
 */
/* Takes the map lock for a transaction (shared: only growth takes it alone) and
 * reads the map generation; KV_ERR if a failed remap left no usable map. */
static int kv_lmdb_map_enter(struct kv_lmdb_env *sh, uint64_t *generation)
{
    pthread_rwlock_rdlock(&sh->map_lock);
    if (sh->map_lost) {
        pthread_rwlock_unlock(&sh->map_lock);
        err_set("kv lmdb: %s: the map was lost in a failed remap; reopen the store", sh->path);
        return KV_ERR;
    }
    *generation = sh->map_generation;
    return KV_OK;
}

static int kv_lmdb_read_begin(struct kv_lmdb *h)
{
    struct kv_lmdb_env *sh = h->shared;
    int attempt, rc = 0;

    for (attempt = 0; attempt < KV_LMDB_MAX_REMAPS; attempt++) {
        uint64_t generation;
        if (kv_lmdb_map_enter(sh, &generation) != KV_OK) return KV_ERR;
        if (h->read_txn) {
            rc = mdb_txn_renew(h->read_txn);
        } else {
            rc = mdb_txn_begin(sh->env, NULL, MDB_RDONLY, &h->read_txn);
            if (rc != 0) h->read_txn = NULL;
        }
        if (rc == 0) {
            rc = h->read_cursor ? mdb_cursor_renew(h->read_txn, h->read_cursor)
                                : mdb_cursor_open(h->read_txn, sh->dbi, &h->read_cursor);
            if (rc == 0) return KV_OK;
        }
        /* A failed txn or cursor is not worth reviving: start over next time. */
        if (h->read_cursor) mdb_cursor_close(h->read_cursor);
        h->read_cursor = NULL;
        if (h->read_txn) mdb_txn_abort(h->read_txn);
        h->read_txn = NULL;
        pthread_rwlock_unlock(&sh->map_lock);
        if (rc != MDB_MAP_RESIZED) break;
        if (kv_lmdb_remap(sh, generation, 0) != KV_OK) return KV_ERR;
    }
    return kv_lmdb_fail(sh, "begin read", rc);
}

static void kv_lmdb_read_end(struct kv_lmdb *h)
{
    mdb_txn_reset(h->read_txn);
    pthread_rwlock_unlock(&h->shared->map_lock);
}

/*
 * Sorts refs[0..n) by (ns, key), stably, with tmp[0..n) as scratch: an LSD
 * radix sort, byte by byte, skipping bytes that all keys share. Its cost does
 * not depend on how the keys are spread, which makes it the fallback of
 * kv_lmdb_sort_refs() below.
 */
static void kv_lmdb_radix_sort_refs(struct kv_counter_ref *refs, struct kv_counter_ref *tmp,
                                    size_t n)
{
    enum { DIGITS = 12 }; /* 8 bytes of key, then 4 of ns (most significant) */
    uint32_t counts[DIGITS][256];
    struct kv_counter_ref *src = refs, *dst = tmp, *swap;
    size_t i;
    int d;

    assert(n < UINT32_MAX);
    memset(counts, 0, sizeof counts);
    for (i = 0; i < n; i++) {
        for (d = 0; d < 8; d++)
            counts[d][(refs[i].key >> (8 * d)) & 255]++;
        for (d = 0; d < 4; d++)
            counts[8 + d][(refs[i].ns >> (8 * d)) & 255]++;
    }
    for (d = 0; d < DIGITS; d++) {
        uint32_t offsets[256], sum = 0;
        unsigned shift = d < 8 ? 8u * (unsigned)d : 8u * (unsigned)(d - 8);
        int bucket;
        bool uniform = false;

        for (bucket = 0; bucket < 256; bucket++) {
            if (counts[d][bucket] == n) uniform = true;
            offsets[bucket] = sum;
            sum += counts[d][bucket];
        }
        if (uniform) continue;
        for (i = 0; i < n; i++) {
            uint64_t v = d < 8 ? src[i].key : src[i].ns;
            dst[offsets[(v >> shift) & 255]++] = src[i];
        }
        swap = src;
        src = dst;
        dst = swap;
    }
    if (src != refs) memcpy(refs, src, n * sizeof *refs);
}

static bool kv_ref_less(const struct kv_counter_ref *a, const struct kv_counter_ref *b)
{
    return a->ns < b->ns || (a->ns == b->ns && a->key < b->key);
}

/* Stable insertion sort of r[0..n) by (ns, key). */
static void kv_lmdb_insertion_sort_refs(struct kv_counter_ref *r, size_t n)
{
    size_t i, j;
    for (i = 1; i < n; i++) {
        struct kv_counter_ref x = r[i];
        for (j = i; j > 0 && kv_ref_less(&x, &r[j - 1]); j--)
            r[j] = r[j - 1];
        r[j] = x;
    }
}

/*
 * Sorts refs[0..n) by (ns, key), stably, with tmp[0..n) as scratch. Keys are
 * hashes, so their top bits spread them evenly: one counting pass puts them
 * into about n/4 buckets by (ns, top bits) and an insertion sort orders each
 * bucket. A tenth of the radix sort's eight passes for the few hundred keys of
 * a message (whose 12 x 256 counters alone cost more than the keys); keys that
 * do not spread (a bucket of more than 64) take the radix sort. Stability keeps
 * the increments of one key in the order the caller queued them.
 */
static void kv_lmdb_sort_refs(struct kv_counter_ref *refs, struct kv_counter_ref *tmp, size_t n)
{
    enum { MAX_BUCKETS = 1 << 16, MAX_BUCKET_FILL = 64 };
    uint32_t small[1024], *count = small, max_ns = 0;
    unsigned bits = 1;
    size_t i, n_buckets, b, sum = 0;

    if (n < 32) {
        kv_lmdb_insertion_sort_refs(refs, n);
        return;
    }
    for (i = 0; i < n; i++)
        if (refs[i].ns > max_ns) max_ns = refs[i].ns;
    while (bits < 16 && ((size_t)1 << (bits + 2)) < n)
        bits++;
    n_buckets = ((size_t)max_ns + 1) << bits;
    if (max_ns >= 64 || n_buckets > MAX_BUCKETS) {
        kv_lmdb_radix_sort_refs(refs, tmp, n);
        return;
    }
    if (n_buckets + 1 > sizeof small / sizeof small[0])
        count = xcalloc(n_buckets + 1, sizeof *count);
    else
        memset(count, 0, (n_buckets + 1) * sizeof *count);
#define KV_REF_BUCKET(r) (((size_t)(r).ns << bits) | (size_t)((r).key >> (64 - bits)))
    for (i = 0; i < n; i++)
        count[KV_REF_BUCKET(refs[i]) + 1]++;
    for (b = 1; b <= n_buckets; b++) {
        if (count[b] > MAX_BUCKET_FILL) break;
        sum += count[b];
        count[b] = (uint32_t)sum;
    }
    if (b <= n_buckets) {
        if (count != small) free(count);
        kv_lmdb_radix_sort_refs(refs, tmp, n);
        return;
    }
    /* count[k] is now where bucket k starts. */
    for (i = 0; i < n; i++)
        tmp[count[KV_REF_BUCKET(refs[i])]++] = refs[i];
#undef KV_REF_BUCKET
    /* count[k] is now where bucket k ends: bucket k is tmp[count[k - 1] .. count[k]). */
    for (b = 0, sum = 0; b < n_buckets; b++) {
        kv_lmdb_insertion_sort_refs(tmp + sum, count[b] - sum);
        sum = count[b];
    }
    memcpy(refs, tmp, n * sizeof *refs);
    if (count != small) free(count);
#ifndef NDEBUG
    for (i = 1; i < n; i++)
        assert(!kv_ref_less(&refs[i], &refs[i - 1]));
#endif
}

/* The handle's scratch for n refs, followed by room for n more (the sort's). */
static struct kv_counter_ref *kv_lmdb_scratch(struct kv_lmdb *h, size_t n)
{
    if (n > h->refs_cap) {
        free(h->refs);
        h->refs_cap = n < 256 ? 256 : n;
        h->refs = xmalloc(2 * h->refs_cap * sizeof *h->refs);
    }
    return h->refs;
}

static inline struct kv_lmdb_cached *kv_lmdb_cache_slot(struct kv_lmdb *h, uint64_t ns_hash,
                                                         uint64_t key)
{
    uint64_t x = (key ^ ns_hash) * 0x9E3779B97F4A7C15ull;
    return &h->cache[x >> (64 - 15)]; /* 2^15 == KV_LMDB_CACHE_SLOTS */
}

static int kv_lmdb_counters_get(void *state, const char *ns, size_t ns_len, const uint64_t *keys,
                                size_t n, unsigned width, uint32_t *out)
{
    struct kv_lmdb *h = state;
    struct kv_lmdb_env *sh = h->shared;
    unsigned char kbuf[KV_LMDB_KEY_BUF];
    struct kv_counter_ref *refs;
    uint64_t now_ms = kv_now_ms(), txnid, ns_hash = XXH3_64bits(ns, ns_len) | 1;
    size_t i, misses = 0;
    int rc;

    _Static_assert(KV_LMDB_CACHE_SLOTS == 1u << 15, "kv_lmdb_cache_slot shifts by 15");
    rc = kv_lmdb_read_begin(h);
    if (rc != KV_OK) return rc;
    txnid = (uint64_t)mdb_txn_id(h->read_txn);
    if (h->cache == NULL) h->cache = xcalloc(KV_LMDB_CACHE_SLOTS, sizeof *h->cache);

    /* Cache hits first; the misses are looked up in B-tree order, where
     * neighbouring keys share leaf pages and the cursor searches from its
     * current page when the next key is on it. */
    refs = kv_lmdb_scratch(h, n);
    for (i = 0; i < n; i++) {
        const struct kv_lmdb_cached *c = kv_lmdb_cache_slot(h, ns_hash, keys[i]);
        if (c->ns_hash == ns_hash && c->key == keys[i] && c->txnid == txnid &&
            c->width == width) {
            memcpy(out + i * width, c->counters, width * sizeof *out);
            continue;
        }
        refs[misses].key = keys[i];
        refs[misses].ns = 0;
        refs[misses].index = (uint32_t)i;
        misses++;
    }
    if (misses >= KV_LMDB_SORT_MIN) kv_lmdb_sort_refs(refs, refs + misses, misses);
    for (i = 0; i < misses; i++) {
        size_t at = refs[i].index;
        uint32_t *dst = out + at * width;
        struct kv_lmdb_cached *slot;
        struct kv_lmdb_entry e;
        MDB_val k, v;
        unsigned c;

        k.mv_data = kbuf;
        k.mv_size = kv_lmdb_counter_key(kbuf, ns, ns_len, keys[at]);
        rc = mdb_cursor_get(h->read_cursor, &k, &v, MDB_SET);
        if (rc == MDB_NOTFOUND) {
            memset(dst, 0, width * sizeof *dst);
        } else if (rc != 0) {
            kv_lmdb_read_end(h);
            return kv_lmdb_fail(sh, "read", rc);
        } else if (!kv_lmdb_decode(&v, &e) || e.width == 0) {
            kv_lmdb_read_end(h);
            err_set("kv lmdb: %s: corrupt counter entry in namespace %s", sh->path, ns);
            return KV_ERR;
        } else if (e.has_expiry) {
            /* Not cached: its value changes with time, not only with commits. */
            if (kv_lmdb_expired(&e, now_ms)) memset(dst, 0, width * sizeof *dst);
            else
                for (c = 0; c < width; c++)
                    dst[c] = c < e.width ? kv_get_le32(e.payload + 4 * c) : 0;
            continue;
        } else {
            for (c = 0; c < width; c++)
                dst[c] = c < e.width ? kv_get_le32(e.payload + 4 * c) : 0;
        }
        slot = kv_lmdb_cache_slot(h, ns_hash, keys[at]);
        slot->key = keys[at];
        slot->ns_hash = ns_hash;
        slot->txnid = txnid;
        slot->width = width;
        memcpy(slot->counters, dst, width * sizeof *dst);
    }
    kv_lmdb_read_end(h);
    return KV_OK;
}

static int kv_lmdb_get(void *state, const char *ns, size_t ns_len, const void *key, size_t key_len,
                       struct buf *value, bool *found)
{
    struct kv_lmdb *h = state;
    struct kv_lmdb_env *sh = h->shared;
    unsigned char kbuf[KV_LMDB_KEY_BUF];
    struct kv_lmdb_entry e;
    MDB_val k, v;
    int rc;

    *found = false;
    rc = kv_lmdb_read_begin(h);
    if (rc != KV_OK) return rc;
    k.mv_data = kbuf;
    k.mv_size = kv_lmdb_blob_key(sh, kbuf, ns, ns_len, key, key_len);
    rc = mdb_get(h->read_txn, sh->dbi, &k, &v);
    if (rc == MDB_NOTFOUND) {
        kv_lmdb_read_end(h);
        return KV_OK;
    }
    if (rc != 0) {
        kv_lmdb_read_end(h);
        return kv_lmdb_fail(sh, "read", rc);
    }
    if (!kv_lmdb_decode(&v, &e) || e.width != 0) {
        kv_lmdb_read_end(h);
        err_set("kv lmdb: %s: corrupt blob entry in namespace %s", sh->path, ns);
        return KV_ERR;
    }
    if (!kv_lmdb_expired(&e, kv_now_ms())) {
        buf_append(value, e.payload, e.payload_len);
        *found = true;
    }
    kv_lmdb_read_end(h);
    return KV_OK;
}

static int kv_lmdb_stat(void *state, struct kv_stat *st)
{
    struct kv_lmdb *h = state;
    struct kv_lmdb_env *sh = h->shared;
    MDB_envinfo info;
    MDB_stat ms;
    int rc = kv_lmdb_read_begin(h);

    if (rc != KV_OK) return rc;
    rc = mdb_stat(h->read_txn, sh->dbi, &ms);
    mdb_env_info(sh->env, &info);
    kv_lmdb_read_end(h);
    if (rc != 0) return kv_lmdb_fail(sh, "stat", rc);
    st->entries = ms.ms_entries;
    st->size_bytes = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
    return KV_OK;
}

/* ---- writes ---- */

/* Sets *conflict if an expectation of b does not hold in txn. Returns an MDB code. */
static int kv_lmdb_check_expectations(struct kv_lmdb_env *sh, MDB_txn *txn,
                                      const struct kv_batch *b, uint64_t now_ms, bool *conflict)
{
    unsigned char kbuf[KV_LMDB_KEY_BUF];
    size_t i;

    for (i = 0; i < b->n_ops; i++) {
        const struct kv_op *op = &b->ops[i];
        struct kv_lmdb_entry e;
        const char *ns;
        size_t ns_len;
        bool present;
        MDB_val k, v;
        int rc;

        if (op->kind != KV_OP_EXPECT) continue;
        ns = kv_op_ns(b, op, &ns_len);
        k.mv_data = kbuf;
        k.mv_size = kv_lmdb_blob_key(sh, kbuf, ns, ns_len, kv_op_key(b, op), op->key_len);
        rc = mdb_get(txn, sh->dbi, &k, &v);
        if (rc != 0 && rc != MDB_NOTFOUND) return rc;
        present = rc == 0 && kv_lmdb_decode(&v, &e) && e.width == 0 && !kv_lmdb_expired(&e, now_ms);
        if (op->expect_absent ? present
                              : !present || e.payload_len != op->value_len ||
                                    memcmp(e.payload, kv_op_value(b, op), op->value_len) != 0) {
            err_set("kv lmdb: expectation on a blob in namespace %s does not hold; nothing "
                    "written",
                    ns);
            *conflict = true;
            return 0;
        }
    }
    return 0;
}

static int kv_lmdb_apply_blob(struct kv_lmdb_env *sh, MDB_txn *txn, const struct kv_batch *b,
                              const struct kv_op *op, uint64_t now_ms)
{
    unsigned char kbuf[KV_LMDB_KEY_BUF];
    unsigned char header[9];
    size_t ns_len, header_len;
    const char *ns = kv_op_ns(b, op, &ns_len);
    MDB_val k, v;
    int rc;

    k.mv_data = kbuf;
    k.mv_size = kv_lmdb_blob_key(sh, kbuf, ns, ns_len, kv_op_key(b, op), op->key_len);
    if (op->kind == KV_OP_DEL) {
        rc = mdb_del(txn, sh->dbi, &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    assert(op->kind == KV_OP_PUT);
    header_len = kv_lmdb_header(header, 0, op->ttl_seconds, now_ms);
    v.mv_size = header_len + op->value_len;
    v.mv_data = NULL;
    rc = mdb_put(txn, sh->dbi, &k, &v, MDB_RESERVE);
    if (rc != 0) return rc;
    memcpy(v.mv_data, header, header_len);
    if (op->value_len) memcpy((char *)v.mv_data + header_len, kv_op_value(b, op), op->value_len);
    return 0;
}

/*
 * Applies the increments refs[0..n) (all of one key, in batch order) at
 * cur's key, which the caller has just looked up (found or not): read once,
 * each delta applied and clamped in turn exactly as if written one by one,
 * written once. Learning a group of messages repeats common tokens hundreds
 * of times in one batch, so this saves most of the B-tree work.
 */
static int kv_lmdb_apply_incr(struct kv_lmdb_env *sh, MDB_cursor *cur, MDB_val *k, int found_rc,
                              const MDB_val *old, const struct kv_batch *b,
                              const struct kv_counter_ref *refs, size_t n, uint64_t now_ms)
{
    unsigned char val[9 + KV_MAX_WIDTH * 4];
    uint32_t counters[KV_MAX_WIDTH] = {0};
    struct kv_lmdb_entry e;
    unsigned width = 0, c;
    unsigned ttl_seconds = 0;
    bool all_zero = true;
    size_t header_len, i;
    MDB_val v;

    if (found_rc == 0) {
        if (!kv_lmdb_decode(old, &e) || e.width == 0) {
            err_set("kv lmdb: %s: corrupt counter entry; nothing written", sh->path);
            return KV_LMDB_CORRUPT;
        }
        if (!kv_lmdb_expired(&e, now_ms)) {
            /* A wider stored vector keeps its extra counters. */
            width = e.width;
            for (c = 0; c < e.width; c++)
                counters[c] = kv_get_le32(e.payload + 4 * c);
        }
    }
    for (i = 0; i < n; i++) {
        const struct kv_op *op = &b->ops[refs[i].index];
        const int32_t *deltas = kv_op_deltas(b, op);
        if (op->width > width) width = op->width;
        for (c = 0; c < op->width; c++) {
            int64_t next = (int64_t)counters[c] + deltas[c];
            counters[c] = next < 0 ? 0 : next > UINT32_MAX ? UINT32_MAX : (uint32_t)next;
        }
        ttl_seconds = op->ttl_seconds; /* each increment (re)sets it: the last one wins */
    }
    for (c = 0; c < width; c++)
        if (counters[c]) all_zero = false;
    if (all_zero) return found_rc == 0 ? mdb_cursor_del(cur, 0) : 0;
    header_len = kv_lmdb_header(val, width, ttl_seconds, now_ms);
    for (c = 0; c < width; c++)
        kv_put_le32(val + header_len + 4 * c, counters[c]);
    v.mv_data = val;
    v.mv_size = header_len + 4 * width;
    return mdb_cursor_put(cur, k, &v, found_rc == 0 ? MDB_CURRENT : 0);
}

/* Applies all of b inside txn. Returns an MDB code, or KV_LMDB_CORRUPT with err_set(). */
static int kv_lmdb_apply(struct kv_lmdb *h, MDB_txn *txn, const struct kv_batch *b,
                         const struct kv_counter_ref *refs, size_t n_incr, uint64_t now_ms,
                         bool *conflict)
{
    struct kv_lmdb_env *sh = h->shared;
    unsigned char kbuf[KV_LMDB_KEY_BUF];
    MDB_cursor *cur;
    size_t i;
    int rc;

    if (b->n_expect) {
        rc = kv_lmdb_check_expectations(sh, txn, b, now_ms, conflict);
        if (rc != 0 || *conflict) return rc;
    }
    if (b->n_blob_ops > b->n_expect) {
        for (i = 0; i < b->n_ops; i++) {
            const struct kv_op *op = &b->ops[i];
            if (op->kind != KV_OP_PUT && op->kind != KV_OP_DEL) continue;
            rc = kv_lmdb_apply_blob(sh, txn, b, op, now_ms);
            if (rc != 0) return rc;
        }
    }
    if (n_incr == 0) return 0;
    rc = mdb_cursor_open(txn, sh->dbi, &cur);
    if (rc != 0) return rc;
    /* Counters and blobs never share a key, so applying blobs first changes
     * nothing; increments of one key keep their order (the sort is stable). */
    for (i = 0; i < n_incr;) {
        const struct kv_op *op = &b->ops[refs[i].index];
        size_t ns_len, run = 1;
        const char *ns = kv_op_ns(b, op, &ns_len);
        MDB_val k, v;
        int found;

        /* Sorted by namespace and key: the increments of one key are adjacent. */
        while (i + run < n_incr && refs[i + run].key == refs[i].key &&
               refs[i + run].ns == refs[i].ns)
            run++;
        k.mv_data = kbuf;
        k.mv_size = kv_lmdb_counter_key(kbuf, ns, ns_len, op->key);
        found = mdb_cursor_get(cur, &k, &v, MDB_SET);
        if (found != 0 && found != MDB_NOTFOUND) {
            rc = found;
            break;
        }
        rc = kv_lmdb_apply_incr(sh, cur, &k, found, &v, b, refs + i, run, now_ms);
        if (rc != 0) break;
        i += run;
    }
    mdb_cursor_close(cur);
    return rc;
}

static int kv_lmdb_commit(void *state, const struct kv_batch *b)
{
    struct kv_lmdb *h = state;
    struct kv_lmdb_env *sh = h->shared;
    size_t n_incr = b->n_ops - b->n_blob_ops, i, j = 0;
    struct kv_counter_ref *refs = kv_lmdb_scratch(h, n_incr);
    uint64_t now_ms = kv_now_ms();
    int attempt, rc = 0;

    for (i = 0; i < b->n_ops; i++) {
        if (b->ops[i].kind != KV_OP_INCR) continue;
        refs[j].key = b->ops[i].key;
        refs[j].ns = b->ops[i].ns;
        refs[j].index = (uint32_t)i;
        j++;
    }
    assert(j == n_incr);
    if (n_incr > 1) kv_lmdb_sort_refs(refs, refs + n_incr, n_incr);

    for (attempt = 0; attempt < KV_LMDB_MAX_REMAPS; attempt++) {
        bool conflict = false;
        uint64_t generation;
        MDB_txn *txn;

        if (kv_lmdb_map_enter(sh, &generation) != KV_OK) return KV_ERR;
        rc = mdb_txn_begin(sh->env, NULL, 0, &txn);
        if (rc == 0) {
            rc = kv_lmdb_apply(h, txn, b, refs, n_incr, now_ms, &conflict);
            if (rc == 0 && !conflict)
                rc = mdb_txn_commit(txn);
            else
                mdb_txn_abort(txn);
        }
        pthread_rwlock_unlock(&sh->map_lock);
        if (conflict) return KV_CONFLICT;
        if (rc == 0) return KV_OK;
        if (rc == MDB_MAP_FULL) {
            int grown = kv_lmdb_grow(sh, generation);
            if (grown != KV_OK) return grown;
        } else if (rc == MDB_MAP_RESIZED) {
            if (kv_lmdb_remap(sh, generation, 0) != KV_OK) return KV_ERR;
        } else if (rc == KV_LMDB_CORRUPT) {
            return KV_ERR; /* reason already set */
        } else {
            return kv_lmdb_fail(sh, "commit", rc);
        }
    }
    return kv_lmdb_fail(sh, "commit (map kept changing)", rc);
}

const struct kv_ops kv_lmdb_ops = {
    .name = "lmdb",
    .open = kv_lmdb_open,
    .close = kv_lmdb_close,
    .counters_get = kv_lmdb_counters_get,
    .get = kv_lmdb_get,
    .commit = kv_lmdb_commit,
    .stat = kv_lmdb_stat,
};
