/* pk_cache.h — thread-safe LRU/TTL cache of byte strings, with a scan-resistant S3-FIFO policy
   and crash-safe snapshots. Single header; C99 and C++11; libc and pthreads only.

   Keys and values are byte strings copied into the cache. Bounds on entries and/or bytes, a
   time-to-live per entry, zero-copy pinned reads, removal by prefix or glob, a removal callback
   that may re-enter the cache, statistics, and snapshots to disk.

   Under strict -std=c99 define _POSIX_C_SOURCE=200809L before including (gnu99 needs nothing).

   QUICK START
   -----------
   ---8<--- example
   #define PK_CACHE_IMPLEMENTATION
   #include "pk_cache.h"
   #include <stdio.h>
   #include <string.h>

   int main(void)
   {
       pk_cache *c;
       pk_cache_config cfg;
       char buf[64];
       size_t n;
       memset(&cfg, 0, sizeof cfg);
       cfg.max_entries = 1000;              // or max_bytes, or both
       cfg.policy = PK_CACHE_S3FIFO;        // scan-resistant; PK_CACHE_LRU is the default
       if (pk_cache_create(&c, &cfg) != 0) return 1;
       pk_cache_put(c, "user:1", 6, "alice", 5, PK_CACHE_TTL_DEFAULT);
       if (pk_cache_get(c, "user:1", 6, buf, sizeof buf, &n) == 0)
           printf("user:1 = %.*s\n", (int)n, buf);
       pk_cache_remove_prefix(c, "user:", 5);
       if (pk_cache_get(c, "user:1", 6, buf, sizeof buf, &n) != -ENOENT) return 1;
       pk_cache_destroy(c);
       return 0;
   }
   --->8---

   OPTIONS (define before the implementation is included)
   -------
   PK_CACHE_IMPLEMENTATION  in exactly one file: compiles the implementation.
   PK_CACHE_STATIC          every function static (private to that file).
   PK_MALLOC(n), PK_REALLOC(p, n), PK_FREE(p)   allocator (default: malloc, realloc, free); all three
                                                or none (shared by all pk headers).
   PK_ASSERT(x)             internal assertions (default: assert).

   API (every function taking pk_cache * requires a valid cache; errors are negative errno values)
   ---
   pk_cache_create(&c, cfg)   zeroed fields = defaults, but a bound is required: -EINVAL for cfg
                              NULL or both bounds 0, an unknown policy, out NULL. -ENOMEM.
   pk_cache_destroy(c)        frees everything; calls no callback. NULL is a no-op.
   pk_cache_put(c, k, kl, v, vl, ttl)   copies key and value; replaces an equal key (reported as
                              PK_CACHE_REPLACED; counts as a use); an equal key that has expired is
                              reported as PK_CACHE_EXPIRED and the put counts as an insert. ttl: PK_CACHE_TTL_DEFAULT (0) =
                              cfg.ttl_ns, PK_CACHE_TTL_NEVER, or nanoseconds from now (saturating).
                              Evicts as needed. -EINVAL: key NULL with kl > 0, value NULL with vl > 0.
                              -E2BIG: can never fit (see limits); nothing is evicted. -ENOMEM: the
                              cache is unchanged.
   pk_cache_get(c, k, kl, buf, cap, &vlen)   hit: 0, copies min(cap, len) bytes, *vlen = full
                              length (vlen may be NULL; buf may be NULL when cap is 0). -ENOENT: miss
                              or expired. -EINVAL: bad pointers.
   pk_cache_acquire(c, k, kl, &ref) / pk_cache_release(c, &ref)   zero-copy read: ref.value/ref.len
                              stay valid until release even if the entry is replaced, removed,
                              evicted or cleared. acquire: 0, -ENOENT, -EINVAL. Release a ref once;
                              releasing a zeroed ref is a no-op. Values are 8-byte aligned.
   pk_cache_remove(c, k, kl)  0, or -ENOENT (also for an expired entry, which is then reported to
                              on_remove as PK_CACHE_EXPIRED), -EINVAL.
   pk_cache_remove_prefix(c, p, pl)   removes keys starting with p (pl 0: every key); returns the
                              count removed.
   pk_cache_remove_match(c, glob)     '*' any bytes, '?' one byte (NUL bytes in keys included),
                              other bytes literal (the glob is a C string: no literal NUL); returns
                              the count removed. NULL glob removes nothing.
   pk_cache_purge_expired(c)  removes every expired entry now; returns the count.
   pk_cache_clear(c)          removes everything (PK_CACHE_CLEARED for each).
   pk_cache_stats_get(c, &s)  hits/misses (get and acquire), inserts (new keys), updates (puts on an
                              existing key), evictions, expirations, removals (remove, prefix, match,
                              clear), entries, bytes. Per shard the counters are read under its lock,
                              so always: entries == inserts - evictions - expirations - removals.
   pk_cache_save(c, path)     writes a snapshot: to "path.tmp.<pid>.<cache>.<n>", fsync, rename over path,
                              fsync the directory. A crash leaves the old file or the new one, never
                              a mix. Entries carry their remaining TTL. -EINVAL, -ENOMEM, -EIO (or
                              the errno of the failing system call).
   pk_cache_load(c, path)     adds the snapshot's live entries (equal keys replaced, bounds apply and
                              may evict; entries too large for this cache are skipped). The whole
                              file is read and verified before the cache is touched: on any error
                              the cache is exactly as it was. -ENOENT no file; -EINVAL a foreign
                              file or unknown version; -EIO damaged (truncated, bad checksum,
                              inconsistent lengths); -ENOMEM.

   on_remove(user, key, klen, val, vlen, reason) is called for every entry that leaves the cache
   (EVICTED, EXPIRED, REMOVED, REPLACED, CLEARED), after the cache dropped its lock, in the thread
   whose call removed it: it may call any function of this cache. Not called by destroy.

   THREAD SAFETY
   -------------
   Every function may be called from any thread at once, except destroy (nothing may use the cache
   during or after it; a pin may still be released after it: the pin owns its entry). The cache is
   split into shards by key hash, each with its own mutex (adaptive on glibc with more than one
   CPU: a busy shard is retried briefly before sleeping); no lock is global. load takes all shard locks while it commits.

   POLICIES
   --------
   PK_CACHE_LRU (default): exact least-recently-used order within a shard; with shards == 1 it is
   exact LRU for the whole cache. A hit relinks the entry (cheap, but it writes).
   PK_CACHE_S3FIFO: S3-FIFO (Yang et al., SOSP'23): new keys enter a small probation FIFO (1% of
   the shard, not the paper's 10%: with the admission filter below, the benchmark's Zipf trace with
   a scan measured 1.106x Belady's miss ratio with 1% and 1.112x with 10%); keys
   evicted from it are remembered in a ghost set and re-enter straight into the main FIFO; main
   entries carry a 2-bit use counter and get another round while it is nonzero. A hit only bumps
   that counter, so hits never relink. On top of it a TinyLFU frequency sketch
   (Einziger et al., "TinyLFU", 2017) decides admission whenever a key would enter a full main
   (promoted from probation, or back from the ghost): it enters only if it was requested more
   often recently than the entry main would evict for it. That keeps one-off scans and rarely
   used keys from displacing the hot set. Extra memory: 16 bytes per table slot (the sketch; the
   ghost's fingerprints fit in the table's own slots).

   ACCURACY / LIMITS
   -----------------
   Bytes charged per entry = klen + vlen + PK_CACHE_ENTRY_OVERHEAD (128), so that max_bytes bounds
   real memory: an entry costs its 56-byte header, the allocator's header and rounding (about 16),
   and 21-43 bytes of table slots (the table is 3/8 to 3/4 full); S3-FIFO's sketch as much again.
   Measured with 1M entries of 16 + 16 bytes: RSS grew by key + value + 98 bytes per entry (LRU)
   and + 132 (S3-FIFO). stats.bytes is the sum of the charges. Without on_remove each
   shard may also keep one dropped entry of at most 512 bytes for reuse (not charged).
   Shards: cfg.shards, or automatic: 64, halved while a shard would get under 64 entries of the
   entry bound or under 1 MiB of the byte bound (at least 1). At most 1024, and at most
   max_entries when that is set. Each shard gets an equal share of max_entries and max_bytes (the
   first max_bytes % shards shards get one byte more, likewise for entries), so with shards > 1 a
   put whose charge exceeds its shard's share (about max_bytes / shards) is refused with -E2BIG
   even though the whole bound would hold it; shards = 1 lifts that. A key or value whose size
   computation overflows is also -E2BIG. Keys may be empty (klen 0; key may then be NULL) and are at most 4 GiB - 1 bytes.
   TTL: expire time = now + ttl, saturating; an entry expires when now >= its expire time.
   Expired entries are never returned; they are removed when touched or by purge_expired.
   Snapshot format (little-endian): "PKCACHE1" magic, u32 version (1), u32 flags (0); per entry u64
   klen, u64 vlen, u64 remaining TTL ns (UINT64_MAX = never), key, value; trailer u64 entry count,
   u64 body bytes, u64 checksum of everything before it, "PKCEND\0\0".

   LICENSE: MIT or public domain, your choice; see LICENSE.

   REVISIONS: 0.1 first release. */
#ifndef PK_CACHE_H
#define PK_CACHE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#ifndef PK_CACHE_DEF
#ifdef PK_CACHE_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define PK_CACHE_DEF static __attribute__((unused))
#else
#define PK_CACHE_DEF static
#endif
#else
#define PK_CACHE_DEF extern
#endif
#endif

#ifndef PK_FOREVER
#define PK_FOREVER UINT64_MAX
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pk_cache pk_cache;
enum { PK_CACHE_EVICTED = 1, PK_CACHE_EXPIRED, PK_CACHE_REMOVED, PK_CACHE_REPLACED, PK_CACHE_CLEARED };
enum { PK_CACHE_LRU = 0, PK_CACHE_S3FIFO = 1 };
#define PK_CACHE_TTL_DEFAULT 0
#define PK_CACHE_TTL_NEVER UINT64_MAX
#define PK_CACHE_ENTRY_OVERHEAD 128 /* bytes charged per entry on top of key and value */

typedef struct pk_cache_config {
    size_t max_entries; /* bound on entries; 0 = no entry bound */
    size_t max_bytes;   /* bound on bytes charged (see PK_CACHE_ENTRY_OVERHEAD); 0 = none */
    uint64_t ttl_ns;    /* default time to live; 0 = entries never expire */
    unsigned shards;    /* lock stripes; 0 = automatic */
    int policy;         /* PK_CACHE_LRU (default) or PK_CACHE_S3FIFO */
    void (*on_remove)(void *user, const void *key, size_t klen, const void *val, size_t vlen, int reason);
    void *user;
    uint64_t (*clock_ns)(void *user); /* time source; NULL = CLOCK_MONOTONIC */
} pk_cache_config;

typedef struct pk_cache_ref {
    const void *value;
    size_t len;
    void *pin_;
} pk_cache_ref;

typedef struct pk_cache_stats {
    uint64_t hits, misses, inserts, updates, evictions, expirations, removals;
    size_t entries, bytes;
} pk_cache_stats;

PK_CACHE_DEF int pk_cache_create(pk_cache **out, const pk_cache_config *cfg);
PK_CACHE_DEF void pk_cache_destroy(pk_cache *c);
PK_CACHE_DEF int pk_cache_put(pk_cache *c, const void *key, size_t klen, const void *val, size_t vlen,
                              uint64_t ttl_ns);
PK_CACHE_DEF int pk_cache_get(pk_cache *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen);
PK_CACHE_DEF int pk_cache_acquire(pk_cache *c, const void *key, size_t klen, pk_cache_ref *ref);
PK_CACHE_DEF void pk_cache_release(pk_cache *c, pk_cache_ref *ref);
PK_CACHE_DEF int pk_cache_remove(pk_cache *c, const void *key, size_t klen);
PK_CACHE_DEF size_t pk_cache_remove_prefix(pk_cache *c, const void *prefix, size_t plen);
PK_CACHE_DEF size_t pk_cache_remove_match(pk_cache *c, const char *glob);
PK_CACHE_DEF size_t pk_cache_purge_expired(pk_cache *c);
PK_CACHE_DEF void pk_cache_clear(pk_cache *c);
PK_CACHE_DEF void pk_cache_stats_get(pk_cache *c, pk_cache_stats *out);
PK_CACHE_DEF int pk_cache_save(pk_cache *c, const char *path);
PK_CACHE_DEF int pk_cache_load(pk_cache *c, const char *path);

#ifdef __cplusplus
}
#endif
#endif /* PK_CACHE_H */

#if defined(PK_CACHE_IMPLEMENTATION) && !defined(PK_CACHE_IMPLEMENTATION_DONE)
#define PK_CACHE_IMPLEMENTATION_DONE

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* PK_MALLOC, PK_REALLOC and PK_FREE go together (all pk headers share them): define all three or
   none, or a header that reallocates would mix your allocator with libc's */
#if (defined(PK_MALLOC) || defined(PK_REALLOC) || defined(PK_FREE)) && \
    !(defined(PK_MALLOC) && defined(PK_REALLOC) && defined(PK_FREE))
#error "pk: define PK_MALLOC, PK_REALLOC and PK_FREE together, or none of them"
#endif
#ifndef PK_MALLOC
#define PK_MALLOC(n) malloc(n)
#endif
#ifndef PK_REALLOC
#define PK_REALLOC(p, n) realloc(p, n)
#endif
#ifndef PK_FREE
#define PK_FREE(p) free(p)
#endif
#ifndef PK_ASSERT
#include <assert.h>
#define PK_ASSERT(x) assert(x)
#endif

/* ---- data structures -----------------------------------------------------------------------

   An entry is one allocation: this header, then the key, then the value (8-byte aligned). It is
   owned by its shard while it is in the table (one reference) plus one reference per pin; the last
   reference frees it, so a pinned value outlives replace/evict/clear.

   A shard is an open-addressing table (linear probing, backward-shift deletion, load <= 3/4) whose
   slots hold 32 bits of the hash and the entry pointer: probing compares hashes without touching
   entries, so a hit costs two dependent cache misses (slot, entry), the slot's started before
   the lock is taken. The entries of a shard are on doubly-linked queues: one for LRU (head =
   least recent), two for S3-FIFO (small, main; head = oldest). In S3-FIFO the slots also hold
   the ghost (fingerprints of keys that left probation, kept at their home slot) and the shard
   owns a frequency sketch sized with the table. Everything in a shard is protected by its mutex;
   shards are cache-line aligned so that threads on different shards share no written line.

   Where the time goes (100k entries, more than the CPU cache holds): a get hit is the two misses
   above; a put that evicts is the new key's slot miss plus the victim's lines (its slot and the
   next line, its successor, and all of the victim, whose memory the next put refills), which the
   previous eviction in that shard prefetched (the victim is always a queue head). With one shard
   a put costs 65-76 ns (64 with everything in cache); with 64 shards about 100: prefetching only
   the victim's first line left the refill's stores missing under the lock (paired runs:
   0.81-0.89x of that, e.g. 125 -> 102 ns). S3-FIFO's ghost adds no miss to a put: the new
   key's ghost entries are in its home slot, which the put reads anyway, and the victim's go to
   its home slot, which the eviction touches anyway (see the ghost notes below). Without
   on_remove, a shard keeps the last unpinned entry it dropped (the spare, at most
   PK_CACHE__SPARE_MAX bytes) and the next put of about that size refills it under the lock: a
   full cache of similar entries then runs without malloc and free. Otherwise an evicted entry
   nobody pins is freed without a locked instruction. An LRU hit also writes its two neighbours'
   links; that costs less than a third miss (LRU hit 213 ns against S3-FIFO's 196 on the
   benchmark, medians of 12). Deferring the relinking to a per-shard log applied in batches with
   the neighbours prefetched (Caffeine's read buffer, kept exact) measured no gain (216 ns), so
   hits relink at once. */

typedef struct pk_cache__entry {
    struct pk_cache__entry *prev, *next; /* queue links; next also links the victim list */
    uint64_t hash;
    uint64_t expire_ns; /* PK_CACHE_TTL_NEVER = never */
    size_t vlen;
    uint32_t klen;
    int refs;               /* 1 while in the cache + 1 per pin; atomic */
    unsigned char freq;     /* S3-FIFO use counter, 0..3 */
    unsigned char queue;    /* PK_CACHE__SMALL or PK_CACHE__MAIN (LRU uses SMALL's list) */
    unsigned char reason;   /* why it left, for on_remove */
} pk_cache__entry;

enum { PK_CACHE__SMALL = 0, PK_CACHE__MAIN = 1 };

typedef struct pk_cache__slot {
    uint32_t hash;      /* low 32 bits of the key's hash: its home (tables have at most 2^32 slots) */
    uint16_t ghost[2];  /* S3-FIFO: fingerprints of keys homed here that left probation, newer first;
                           0 = none. They belong to the position: entries move, ghosts stay. */
    pk_cache__entry *e; /* NULL = empty */
} pk_cache__slot;

typedef struct pk_cache__queue {
    pk_cache__entry *head, *tail;
    size_t count, bytes;
} pk_cache__queue;

/* Field order matters for threads: with two threads every line a hit writes moves between
   cores. A hit writes the lock, hits and, for LRU, q[0]'s head/tail pointers: on glibc (a 40-byte
   mutex) all in the first line. slots and mask, read by every call, sit in the second line, which
   only puts and removals write. */
typedef struct pk_cache__shard_fields {
    pthread_mutex_t lock; /* protects every field below and the entries linked here */
    uint64_t hits;
    pk_cache__queue q[2];       /* LRU uses q[0]; S3-FIFO q[SMALL], q[MAIN] */
    pk_cache__slot *slots;
    size_t mask;                /* table capacity - 1 (capacity is a power of two) */
    size_t count, bytes;        /* entries and bytes charged */
    size_t max_entries, max_bytes; /* this shard's share; SIZE_MAX = unbounded */
    pk_cache__entry *spare;     /* a dead entry kept for the next put to reuse, or NULL; atomic */
    size_t spare_size;          /* its allocation size (0 = none), read by put before locking; atomic */
    int recycle;                /* no on_remove: dead entries may become the spare */
    uint64_t *sketch;           /* S3-FIFO: PK_CACHE__AUX * (mask + 1) words of 16 4-bit counters */
    size_t sketch_samples;      /* increments since the last halving */
    uint64_t misses, inserts, updates, evictions, expirations, removals;
} pk_cache__shard_fields;

typedef union pk_cache__shard {
    pk_cache__shard_fields f;
    char pad[(sizeof(pk_cache__shard_fields) + 63) / 64 * 64];
} pk_cache__shard;

struct pk_cache {
    pk_cache__shard *shards; /* 64-byte aligned inside shards_mem */
    void *shards_mem;
    unsigned nshards;
    int policy;
    uint64_t seed;
    uint64_t ttl_ns;
    void (*on_remove)(void *user, const void *key, size_t klen, const void *val, size_t vlen, int reason);
    void *user;
    uint64_t (*clock_ns)(void *user);
    unsigned save_seq; /* names temporary snapshot files; atomic */
};

#define PK_CACHE__HDR_SIZE (sizeof(pk_cache__entry))
#define PK_CACHE__FREQ_MAX 3
#define PK_CACHE__AUX 2        /* S3-FIFO sketch words per table slot */
#define PK_CACHE__SMALL_PCT 1  /* S3-FIFO probation share of a shard, percent */
#define PK_CACHE__SPARE_MAX 512 /* largest allocation kept as a shard's spare (filled under the lock) */

/* ---- small helpers ---- */

static uint64_t pk_cache__now_ns(void *unused)
{
    struct timespec ts;
    (void)unused;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t pk_cache__sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

static uint64_t pk_cache__mix(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

static uint64_t pk_cache__load64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static uint64_t pk_cache__load32(const unsigned char *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* Key hash: 8 bytes per multiply, the last 1..16 bytes read as two overlapping loads (no
   byte loop, no variable-length copy), then a full avalanche (the shard uses the high bits, the
   table the low ones). Seeded per cache so that keys cannot be chosen to collide. Hot. */
static uint64_t pk_cache__hash(const void *key, size_t n, uint64_t seed)
{
    const unsigned char *p = (const unsigned char *)key;
    uint64_t h = seed ^ ((uint64_t)n * 0x9E3779B97F4A7C15ull), a = 0, b = 0;
    while (n > 16) {
        h = (h ^ pk_cache__load64(p)) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n >= 8) {
        a = pk_cache__load64(p);
        b = pk_cache__load64(p + n - 8);
    } else if (n >= 4) {
        a = pk_cache__load32(p);
        b = pk_cache__load32(p + n - 4);
    } else if (n > 0) {
        a = (uint64_t)p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16;
    }
    h = (h ^ a) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
    h = (h ^ b) * 0x94d049bb133111ebull;
    return pk_cache__mix(h);
}

static const unsigned char *pk_cache__key(const pk_cache__entry *e) { return (const unsigned char *)(e + 1); }
static size_t pk_cache__val_off(size_t klen) { return (PK_CACHE__HDR_SIZE + klen + 7) & ~(size_t)7; }
static unsigned char *pk_cache__val(pk_cache__entry *e)
{
    return (unsigned char *)e + pk_cache__val_off(e->klen);
}
static size_t pk_cache__charge(const pk_cache__entry *e) { return e->klen + e->vlen + PK_CACHE_ENTRY_OVERHEAD; }

static size_t pk_cache__shard_index(const pk_cache *c, uint64_t h) { return (size_t)(((h >> 32) * c->nshards) >> 32); }
static pk_cache__shard_fields *pk_cache__shard_of(pk_cache *c, uint64_t h) { return &c->shards[pk_cache__shard_index(c, h)].f; }

/* Drops one reference. A count of 1 means the caller holds the only one, and nobody can take
   another (pins are only taken from entries still in a table), so a plain load skips the locked
   instruction, which would otherwise wait for the evicting put's stores to drain. */
static void pk_cache__unref(pk_cache__entry *e)
{
    if (__atomic_load_n(&e->refs, __ATOMIC_ACQUIRE) == 1 || __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0)
        PK_FREE(e);
}

static size_t pk_cache__alloc_size(size_t klen, size_t vlen) { return pk_cache__val_off(klen) + vlen; }

/* Makes e (pk_cache__alloc_size(klen, vlen) bytes or more) an unlinked entry holding copies of
   key and value. */
static void pk_cache__entry_fill(pk_cache__entry *e, uint64_t h, const void *key, size_t klen, const void *val,
                                 size_t vlen, uint64_t expire)
{
    size_t off = pk_cache__val_off(klen);
    memset(e, 0, sizeof *e);
    e->hash = h;
    e->expire_ns = expire;
    e->klen = (uint32_t)klen;
    e->vlen = vlen;
    e->refs = 1;
    if (klen) memcpy(e + 1, key, klen);
    if (vlen) memcpy((unsigned char *)e + off, val, vlen);
}

/* Builds an unlinked entry holding copies of key and value. NULL: out of memory. */
static pk_cache__entry *pk_cache__entry_new(uint64_t h, const void *key, size_t klen, const void *val, size_t vlen,
                                            uint64_t expire)
{
    pk_cache__entry *e = (pk_cache__entry *)PK_MALLOC(pk_cache__alloc_size(klen, vlen));
    if (e) pk_cache__entry_fill(e, h, key, klen, val, vlen, expire);
    return e;
}

/* ---- queues ---- */

static void pk_cache__q_push(pk_cache__queue *q, pk_cache__entry *e)
{
    e->next = NULL;
    e->prev = q->tail;
    if (q->tail) q->tail->next = e;
    else q->head = e;
    q->tail = e;
    q->count++;
    q->bytes += pk_cache__charge(e);
}

static void pk_cache__q_unlink(pk_cache__queue *q, pk_cache__entry *e)
{
    if (e->prev) e->prev->next = e->next;
    else q->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else q->tail = e->prev;
    q->count--;
    q->bytes -= pk_cache__charge(e);
}

/* LRU hit: moves e to the most recent end. Counts and bytes are unchanged, so the hit writes
   only the links (and the queue line's tail pointer). */
static void pk_cache__q_touch(pk_cache__queue *q, pk_cache__entry *e)
{
    if (!e->next) return; /* already the most recent */
    if (e->prev) e->prev->next = e->next;
    else q->head = e->next;
    e->next->prev = e->prev;
    e->prev = q->tail;
    e->next = NULL;
    q->tail->next = e;
    q->tail = e;
}

/* ---- table ---- */

/* Key equality. Keys of 4 to 16 bytes are compared with two overlapping word loads per side
   (a call to memcmp costs more than the compare). */
static int pk_cache__key_eq(const unsigned char *a, const unsigned char *b, size_t n)
{
    if (n >= 8 && n <= 16)
        return ((pk_cache__load64(a) ^ pk_cache__load64(b)) | (pk_cache__load64(a + n - 8) ^ pk_cache__load64(b + n - 8))) == 0;
    if (n >= 4 && n < 8)
        return ((pk_cache__load32(a) ^ pk_cache__load32(b)) | (pk_cache__load32(a + n - 4) ^ pk_cache__load32(b + n - 4))) == 0;
    return n == 0 || memcmp(a, b, n) == 0;
}

static size_t pk_cache__find(pk_cache__shard_fields *s, uint64_t h, const void *key, size_t klen)
{
    size_t i = (size_t)h & s->mask;
    for (;;) {
        pk_cache__entry *e = s->slots[i].e;
        if (!e) return (size_t)-1;
        if (s->slots[i].hash == (uint32_t)h && e->klen == klen && pk_cache__key_eq(pk_cache__key(e), (const unsigned char *)key, klen))
            return i;
        i = (i + 1) & s->mask;
    }
}

static void pk_cache__table_put(pk_cache__slot *slots, size_t mask, uint64_t h, pk_cache__entry *e)
{
    size_t i = (size_t)h & mask;
    while (slots[i].e) i = (i + 1) & mask;
    slots[i].hash = (uint32_t)h;
    slots[i].e = e;
}

/* Backward-shift deletion: later members of the probe run move up so no tombstones are needed. */
static void pk_cache__table_del(pk_cache__shard_fields *s, size_t i)
{
    size_t j = i, mask = s->mask;
    for (;;) {
        size_t home;
        j = (j + 1) & mask;
        if (!s->slots[j].e) break;
        home = (size_t)s->slots[j].hash & mask;
        /* slot j may move to i if its home is not in the cyclic range (i, j] */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->slots[i].hash = s->slots[j].hash; /* not the ghosts: they stay with the position */
            s->slots[i].e = s->slots[j].e;
            i = j;
        }
    }
    s->slots[i].e = NULL;
}

static size_t pk_cache__slot_of(pk_cache__shard_fields *s, const pk_cache__entry *e)
{
    size_t i = (size_t)e->hash & s->mask;
    while (s->slots[i].e != e) i = (i + 1) & s->mask;
    return i;
}

/* Makes room for `need` entries at load <= 3/4. The S3-FIFO ghost and sketch grow with the table,
   keeping their history: they are indexed by the low bits of a hash, so slot (or sketch word) j of
   the bigger array takes the ghosts (or counters) of j & old_mask of the old one, where every key
   that used the old one now lands (a ghost copy is found only by the key it belongs to: the
   fingerprint tells). So a grown shard behaves as before. Two steps: grow_prepare builds the
   bigger arrays beside the old ones (it can fail, changing nothing) and grow_install swaps them in
   (it cannot fail), so that load can prepare every shard before it changes any: a bigger table
   alone changes later S3-FIFO decisions (the sketch halves by table size, ghosts spread over it). */
typedef struct pk_cache__grown {
    pk_cache__slot *slots; /* NULL: the table is big enough */
    uint64_t *sketch;      /* S3-FIFO */
    size_t ncap;
} pk_cache__grown;

/* 0, or -ENOMEM with nothing allocated (also past 2^32 slots). Locked. */
static int pk_cache__grow_prepare(pk_cache *c, pk_cache__shard_fields *s, size_t need, pk_cache__grown *g)
{
    size_t cap = s->mask + 1, ncap = cap, i;
    pk_cache__slot *slots;
    uint64_t *sketch = NULL;
    memset(g, 0, sizeof *g);
    if (need <= cap / 4 * 3) return 0;
    while (need > ncap / 4 * 3) {
        /* a slot keeps 32 bits of the hash: enough to place keys in up to 2^32 slots */
        if (ncap > SIZE_MAX / 2 / sizeof(pk_cache__slot) || ncap > (size_t)0x7fffffff) return -ENOMEM;
        ncap *= 2;
    }
    slots = (pk_cache__slot *)PK_MALLOC(ncap * sizeof *slots);
    if (!slots) return -ENOMEM;
    memset(slots, 0, ncap * sizeof *slots);
    if (c->policy == PK_CACHE_S3FIFO) {
        sketch = (uint64_t *)PK_MALLOC(ncap * PK_CACHE__AUX * sizeof *sketch);
        if (!sketch) {
            PK_FREE(slots);
            return -ENOMEM;
        }
        for (i = 0; i < ncap * PK_CACHE__AUX; i++) sketch[i] = s->sketch[i & (cap * PK_CACHE__AUX - 1)];
        for (i = 0; i < ncap; i++) {
            slots[i].ghost[0] = s->slots[i & (cap - 1)].ghost[0];
            slots[i].ghost[1] = s->slots[i & (cap - 1)].ghost[1];
        }
    }
    for (i = 0; i < cap; i++)
        if (s->slots[i].e) pk_cache__table_put(slots, ncap - 1, s->slots[i].hash, s->slots[i].e);
    g->slots = slots;
    g->sketch = sketch;
    g->ncap = ncap;
    return 0;
}

/* Swaps in what grow_prepare built; the table must not have changed in between. Locked. */
static void pk_cache__grow_install(pk_cache__shard_fields *s, const pk_cache__grown *g)
{
    if (!g->slots) return;
    if (g->sketch) {
        PK_FREE(s->sketch);
        s->sketch = g->sketch;
    }
    PK_FREE(s->slots);
    /* published with atomic stores: pk_cache__prefetch reads them without the lock */
    __atomic_store_n(&s->slots, g->slots, __ATOMIC_RELAXED);
    __atomic_store_n(&s->mask, g->ncap - 1, __ATOMIC_RELAXED);
}

/* Makes room for `need` entries: 0 or -ENOMEM (shard unchanged). Locked. */
static int pk_cache__reserve(pk_cache *c, pk_cache__shard_fields *s, size_t need)
{
    pk_cache__grown g;
    int rc = pk_cache__grow_prepare(c, s, need, &g);
    if (!rc) pk_cache__grow_install(s, &g);
    return rc;
}

/* Second hash of a key, for the S3-FIFO ghost fingerprints and sketch (independent of the table
   position). */
static uint64_t pk_cache__h2(uint64_t h) { return (h ^ (h >> 31)) * 0x9E3779B97F4A7C15ull; }
static size_t pk_cache__aux_mask(const pk_cache__shard_fields *s) { return (s->mask + 1) * PK_CACHE__AUX - 1; }

#if defined(__GNUC__) || defined(__clang__)
#define PK_CACHE__PREFETCH(p) __builtin_prefetch(p)
#define PK_CACHE__PREFETCHW(p) __builtin_prefetch(p, 1)
#else
#define PK_CACHE__PREFETCH(p) ((void)(p))
#define PK_CACHE__PREFETCHW(p) ((void)(p))
#endif

/* Hot path helper: starts loading the key's table slot before the lock is taken, so that the
   miss overlaps the lock acquisition (and, in put, building the entry). The racy read is
   harmless: a stale table (freed by a resize) is only prefetched, never dereferenced. */
static void pk_cache__prefetch(pk_cache__shard_fields *s, uint64_t h)
{
    pk_cache__slot *slots = __atomic_load_n(&s->slots, __ATOMIC_RELAXED);
    size_t mask = __atomic_load_n(&s->mask, __ATOMIC_RELAXED);
    PK_CACHE__PREFETCH(&slots[(size_t)h & mask]);
}

/* ---- S3-FIFO: ghost set and frequency sketch ----

   Ghost: two 16-bit fingerprints in every table slot, for keys whose home is that slot, the
   newer first; a key stays until two newer keys with the same home have left probation after it
   (about 2 x table capacity keys: 2.7 to 5.3 x the shard's entries, the table being 3/8 to 3/4
   full). In the slot because a put reads the new key's home slot anyway, and an eviction has the
   victim's home slot in cache: with a ghost array of its own (until 2026-11-30), S3-FIFO puts
   took 145-150 ns against 105-118 right after the move (bench_cache, 3 paired runs); the miss
   ratio did not suffer (1.1073 x Belady with the array, 1.1068 after, medians of 5 runs: the
   array was the same size but direct-mapped with an age limit).
   Sketch: each key owns one 64-bit word of sixteen 4-bit counters and four of them (a blocked
   count-min sketch: one cache line per key); AUX words per table slot; estimate = the minimum;
   increments are conservative (only the minimum counters grow); all counters halve after 64 x
   table capacity increments so old popularity fades (TinyLFU's reset). It counts misses and the
   first hit of an entry in each CLOCK round (the others would cost a random miss per hit).
   Sizes were chosen on the benchmark's Zipf trace with a scan (miss ratio over Belady's):
   probation 10% -> 1% gained the most (1.118 -> 1.110: under Zipf, recent one-off keys are worth
   less than a main entry, and the ghost already filters them); a ghost and sketch twice the
   table (AUX 2) gained 1.110 -> 1.106. Neither helped further: 4x, sketch halving windows 16x to
   256x capacity, counters in disjoint nibble groups, counting saturated hits, doorkeeping first
   misses, admitting every miss by sketch, picking main's victim as the least frequent of 2-8.
   Nor did these (second round, same trace): probation 3% / 5% / 10% (1.108 / 1.109 / 1.112 against
   1.106 at 1%), a 3-bit use counter (1.106), counting every hit (1.107), admitting on equal
   estimates (1.109), a victim that wins the comparison going to main's tail (1.106), ghost hits
   entering main unfiltered while probation is over its share (1.122), ghost and sketch 8x or 32x
   the table (1.105). The structure is not what limits it: replacing the sketch by exact counts of
   every request since the start and main's CLOCK by exact LFU (evict the least requested main
   entry, compare every newcomer against it) measured 1.105 with the benchmark's 64 shards and
   1.104 with one. The rest of the way to the static oracle (1.081, which knows the whole trace's
   counts in advance) is what an online policy pays to learn which keys are popular: exact LFU
   over all-time counts with no probation and no shards (a reference row of bench_cache) measures
   1.101 (1.101-1.102 on eight trace seeds), about the bound for any online policy on a trace of
   independent requests. */

static uint16_t pk_cache__ghost_fp(uint64_t h) { return (uint16_t)((pk_cache__h2(h) >> 48) | 1u); }

/* Was the key in the ghost? It leaves it. */
static int pk_cache__ghost_take(pk_cache__shard_fields *s, uint64_t h)
{
    uint16_t *g = s->slots[(size_t)h & s->mask].ghost, fp = pk_cache__ghost_fp(h);
    if (g[0] == fp) {
        g[0] = 0;
        return 1;
    }
    if (g[1] == fp) {
        g[1] = 0;
        return 1;
    }
    return 0;
}

static void pk_cache__ghost_add(pk_cache__shard_fields *s, uint64_t h)
{
    uint16_t *g = s->slots[(size_t)h & s->mask].ghost;
    if (g[0]) g[1] = g[0]; /* the older one goes */
    g[0] = pk_cache__ghost_fp(h);
}

static uint64_t *pk_cache__sketch_word(pk_cache__shard_fields *s, uint64_t h)
{
    return &s->sketch[(size_t)(pk_cache__h2(h) >> 34) & pk_cache__aux_mask(s)];
}

/* The four counters of a key are nibbles of its word, chosen by its hash's low 16 bits. */
static unsigned pk_cache__sketch_min(uint64_t w, uint64_t h)
{
    unsigned k, m = 15;
    for (k = 0; k < 4; k++) {
        unsigned v = (unsigned)(w >> (((h >> (4 * k)) & 15) * 4)) & 15;
        if (v < m) m = v;
    }
    return m;
}

static unsigned pk_cache__sketch_get(pk_cache__shard_fields *s, uint64_t h)
{
    return pk_cache__sketch_min(*pk_cache__sketch_word(s, h), h);
}

static void pk_cache__sketch_inc(pk_cache__shard_fields *s, uint64_t h)
{
    uint64_t *wp = pk_cache__sketch_word(s, h), w = *wp, add = 0;
    unsigned k, m = pk_cache__sketch_min(w, h);
    if (m < 15) {
        for (k = 0; k < 4; k++) { /* conservative: only counters at the minimum grow, once each */
            unsigned sh = (unsigned)((h >> (4 * k)) & 15) * 4;
            if (((w >> sh) & 15) == m) add |= (uint64_t)1 << sh;
        }
        *wp = w + add;
    }
    if (++s->sketch_samples >= 64 * (s->mask + 1)) {
        size_t i, n = pk_cache__aux_mask(s) + 1;
        for (i = 0; i < n; i++) s->sketch[i] = (s->sketch[i] >> 1) & 0x7777777777777777ull;
        s->sketch_samples = 0;
    }
}

/* ---- removal and eviction (shard locked) ----

   Entries leaving the cache go on the caller's victim list (linked through next); the caller
   calls on_remove and drops the references after unlocking. */

static void pk_cache__detach(pk_cache__shard_fields *s, pk_cache__entry *e, size_t slot, int reason,
                             pk_cache__entry **victims)
{
    pk_cache__table_del(s, slot);
    pk_cache__q_unlink(&s->q[e->queue], e);
    s->count--;
    s->bytes -= pk_cache__charge(e);
    switch (reason) {
    case PK_CACHE_EVICTED: s->evictions++; break;
    case PK_CACHE_EXPIRED: s->expirations++; break;
    case PK_CACHE_REMOVED:
    case PK_CACHE_CLEARED: s->removals++; break;
    default: break; /* REPLACED: the update is counted by the caller */
    }
    /* Without a callback nobody looks at a dead entry again; if no pin holds it either, keep it
       as the shard's spare: the next put of a similar size reuses the memory (no malloc, no free,
       and the line is already in cache). Pins cannot appear now (the lock is held). */
    if (s->recycle && !s->spare && pk_cache__alloc_size(e->klen, e->vlen) <= PK_CACHE__SPARE_MAX &&
        __atomic_load_n(&e->refs, __ATOMIC_ACQUIRE) == 1) {
        __atomic_store_n(&s->spare_size, pk_cache__alloc_size(e->klen, e->vlen), __ATOMIC_RELAXED);
        __atomic_store_n(&s->spare, e, __ATOMIC_RELAXED);
        return;
    }
    e->reason = (unsigned char)reason;
    e->next = *victims;
    *victims = e;
}

static void pk_cache__evict(pk_cache__shard_fields *s, pk_cache__entry *e, pk_cache__entry **victims)
{
    pk_cache__detach(s, e, pk_cache__slot_of(s, e), PK_CACHE_EVICTED, victims);
}

/* Main's CLOCK: entries used since their last turn get another round (counter - 1). Returns the
   entry main would evict now (left at the head). */
static pk_cache__entry *pk_cache__main_victim(pk_cache__shard_fields *s)
{
    pk_cache__queue *m = &s->q[PK_CACHE__MAIN];
    for (;;) {
        pk_cache__entry *e = m->head;
        if (!e || e->freq == 0) return e;
        e->freq--;
        pk_cache__q_unlink(m, e);
        pk_cache__q_push(m, e);
    }
}

/* Is probation over its share (PK_CACHE__SMALL_PCT of the shard), not counting `minus` (NULL: none)? */
static int pk_cache__small_full(const pk_cache__shard_fields *s, const pk_cache__entry *minus)
{
    const pk_cache__queue *q = &s->q[PK_CACHE__SMALL];
    size_t n = q->count - (minus != NULL), bytes = q->bytes - (minus ? pk_cache__charge(minus) : 0);
    return (s->max_entries != SIZE_MAX && n > s->max_entries / 100 * PK_CACHE__SMALL_PCT) ||
           (s->max_bytes != SIZE_MAX && bytes > s->max_bytes / 100 * PK_CACHE__SMALL_PCT);
}

static void pk_cache__move_to_main(pk_cache__shard_fields *s, pk_cache__entry *e)
{
    pk_cache__q_unlink(&s->q[PK_CACHE__SMALL], e);
    e->queue = PK_CACHE__MAIN;
    e->freq = 0;
    pk_cache__q_push(&s->q[PK_CACHE__MAIN], e);
}

/* Evicts one entry (the shard is not empty). */
static void pk_cache__evict_one(pk_cache *c, pk_cache__shard_fields *s, pk_cache__entry **victims)
{
    pk_cache__queue *small = &s->q[PK_CACHE__SMALL], *main_q = &s->q[PK_CACHE__MAIN];
    if (c->policy == PK_CACHE_LRU) {
        pk_cache__evict(s, small->head, victims);
        return;
    }
    for (;;) {
        pk_cache__entry *cand = small->head, *v;
        if (!cand || (!pk_cache__small_full(s, NULL) && main_q->head)) {
            pk_cache__evict(s, pk_cache__main_victim(s), victims);
            return;
        }
        /* A key leaving probation goes to main if it was used there (S3-FIFO). When that would
           make main evict (probation is back within its share), TinyLFU decides between the key
           and main's victim by recent frequency instead. */
        if (cand->freq > 0 && main_q->head && !pk_cache__small_full(s, cand)) {
            v = pk_cache__main_victim(s);
            if (pk_cache__sketch_get(s, cand->hash) > pk_cache__sketch_get(s, v->hash)) {
                pk_cache__move_to_main(s, cand);
                pk_cache__evict(s, v, victims);
            } else {
                pk_cache__ghost_add(s, cand->hash);
                pk_cache__evict(s, cand, victims);
            }
            return;
        }
        if (cand->freq > 0 || !main_q->head) {
            pk_cache__move_to_main(s, cand);
            continue;
        }
        pk_cache__ghost_add(s, cand->hash);
        pk_cache__evict(s, cand, victims);
        return;
    }
}

/* Links a prepared entry into a locked shard whose table has room for one more: replaces an equal
   key, evicts until the new entry fits (its charge is within the shard's share). Never fails. */
static void pk_cache__insert_locked(pk_cache *c, pk_cache__shard_fields *s, pk_cache__entry *e,
                                    pk_cache__entry **victims)
{
    size_t i = pk_cache__find(s, e->hash, pk_cache__key(e), e->klen), charge = pk_cache__charge(e);
    int queue = PK_CACHE__SMALL, q, full;
    unsigned char freq = 0;
    if (i != (size_t)-1 && s->slots[i].e->expire_ns != PK_CACHE_TTL_NEVER &&
        c->clock_ns(c->user) >= s->slots[i].e->expire_ns) {
        /* the key is dead: it leaves as EXPIRED and the put inserts a new key */
        pk_cache__detach(s, s->slots[i].e, i, PK_CACHE_EXPIRED, victims);
        i = (size_t)-1;
    }
    if (i != (size_t)-1) {
        pk_cache__entry *old = s->slots[i].e;
        queue = old->queue;
        freq = (unsigned char)(old->freq < PK_CACHE__FREQ_MAX ? old->freq + 1 : old->freq);
        pk_cache__detach(s, old, i, PK_CACHE_REPLACED, victims);
        s->updates++;
    } else {
        s->inserts++;
    }
    full = s->count + 1 > s->max_entries || s->bytes + charge > s->max_bytes;
    if (s->count && full) {
        do
            pk_cache__evict_one(c, s, victims);
        while (s->count && (s->count + 1 > s->max_entries || s->bytes + charge > s->max_bytes));
        /* A full shard evicts on every insert, and its next victim is known: the head of the queue
           the next eviction takes from (in S3-FIFO probation while it is over its share, else
           main; prefetching only that one measured 0.93x the S3-FIFO put time with 1,000 entries
           and a median of 0.93x with 100k, 8 paired runs), just loaded by the unlinking. Start
           loading what the next eviction will touch so that the next put finds it in cache instead
           of making dependent misses: the head's table slot and the line after it (deleting it
           shifts the run that follows up to an empty slot; 0.93-1.01x the put time, median 0.96,
           6 paired runs), its successor's header (both lines: malloc's 16-byte alignment lets a
           header straddle two; in S3-FIFO the home slot also takes the head's ghost fingerprint),
           and the rest of the head itself: once evicted it is refilled by a put as the spare, or
           freed and handed out again by malloc, and the refill writes every line (without this,
           those stores missed under the lock). (Written out here: GCC drops a call to a function
           that only prefetches.) */
        q = c->policy == PK_CACHE_S3FIFO && !pk_cache__small_full(s, NULL) && s->q[PK_CACHE__MAIN].head;
        if (s->q[q].head) {
            const pk_cache__entry *v = s->q[q].head;
            uintptr_t line, last;
            size_t size;
            { /* its home slot's line, and the next (wrapping to the table's start) */
                uintptr_t hs = (uintptr_t)&s->slots[(size_t)v->hash & s->mask], nl = (hs | 63) + 1;
                PK_CACHE__PREFETCH((const void *)hs);
                PK_CACHE__PREFETCH(nl < (uintptr_t)(s->slots + s->mask + 1) ? (const void *)nl : (const void *)s->slots);
            }
            if (v->next) {
                PK_CACHE__PREFETCH(v->next);
                PK_CACHE__PREFETCH((const char *)v->next + sizeof *v - 1);
            }
            size = pk_cache__alloc_size(v->klen, v->vlen); /* the rest of the head, for writing */
            last = (uintptr_t)v + (size < PK_CACHE__SPARE_MAX ? size : PK_CACHE__SPARE_MAX) - 1;
            for (line = ((uintptr_t)v | 63) + 1; line <= last; line += 64) PK_CACHE__PREFETCHW((const void *)line);
        }
    }
    /* S3-FIFO: a key remembered by the ghost goes straight to main, unless main was full and
       TinyLFU prefers main's victim. (Its ghost entries are in its home slot, read by the find.) */
    if (i == (size_t)-1 && c->policy == PK_CACHE_S3FIFO && pk_cache__ghost_take(s, e->hash)) {
        queue = PK_CACHE__MAIN;
        if (full && s->q[PK_CACHE__MAIN].head &&
            pk_cache__sketch_get(s, e->hash) <= pk_cache__sketch_get(s, pk_cache__main_victim(s)->hash))
            queue = PK_CACHE__SMALL;
    }
    e->queue = (unsigned char)queue;
    e->freq = freq;
    pk_cache__table_put(s->slots, s->mask, e->hash, e);
    pk_cache__q_push(&s->q[queue], e);
    s->count++;
    s->bytes += charge;
}

/* After unlocking: report and drop each victim, in the order they left. */
static void pk_cache__finish(pk_cache *c, pk_cache__entry *victims)
{
    pk_cache__entry *rev = NULL;
    while (victims) { /* the list was built by pushing: reverse it */
        pk_cache__entry *e = victims;
        victims = e->next;
        e->next = rev;
        rev = e;
    }
    victims = rev;
    while (victims) {
        pk_cache__entry *e = victims;
        victims = e->next;
        if (c->on_remove)
            c->on_remove(c->user, e->klen ? pk_cache__key(e) : NULL, e->klen, pk_cache__val(e), e->vlen, e->reason);
        pk_cache__unref(e);
    }
}

/* ---- create / destroy ---- */

PK_CACHE_DEF int pk_cache_create(pk_cache **out, const pk_cache_config *cfg)
{
    pk_cache_config d;
    pk_cache *c;
    pthread_mutexattr_t ma;
    unsigned n, i;
    if (!out) return -EINVAL;
    *out = NULL;
    if (cfg) d = *cfg;
    else memset(&d, 0, sizeof d);
    if (d.max_entries == 0 && d.max_bytes == 0) return -EINVAL;
    if (d.policy != PK_CACHE_LRU && d.policy != PK_CACHE_S3FIFO) return -EINVAL;
    n = d.shards;
    if (n == 0) {
        n = 64;
        while (n > 1 && ((d.max_entries && d.max_entries / n < 64) || (d.max_bytes && d.max_bytes / n < (1u << 20))))
            n /= 2;
    }
    if (n > 1024) n = 1024;
    if (d.max_entries && n > d.max_entries) n = (unsigned)d.max_entries; /* every shard holds one */
    c = (pk_cache *)PK_MALLOC(sizeof *c);
    if (!c) return -ENOMEM;
    memset(c, 0, sizeof *c);
    c->shards_mem = PK_MALLOC((size_t)n * sizeof(pk_cache__shard) + 63);
    if (!c->shards_mem) {
        PK_FREE(c);
        return -ENOMEM;
    }
    c->shards = (pk_cache__shard *)(((uintptr_t)c->shards_mem + 63) & ~(uintptr_t)63);
    memset(c->shards, 0, (size_t)n * sizeof(pk_cache__shard));
    c->nshards = n;
    c->policy = d.policy;
    c->ttl_ns = d.ttl_ns;
    c->on_remove = d.on_remove;
    c->user = d.user;
    c->clock_ns = d.clock_ns ? d.clock_ns : pk_cache__now_ns;
    c->seed = pk_cache__mix((uint64_t)(uintptr_t)c ^ pk_cache__now_ns(NULL));
    pthread_mutexattr_init(&ma);
#ifdef __GLIBC__
    /* A shard is held for a few hundred nanoseconds, and blocking in the kernel and being woken
       costs microseconds: glibc's adaptive mutex retries a busy lock for a while before sleeping.
       With two threads, a hot key's shard otherwise keeps putting them to sleep (2-thread LRU gets
       on Zipf keys, over 1 thread: 1.61x plain, 2.07x adaptive; medians of 15 paired runs). Not on one CPU, where the holder cannot
       run while we spin. The uncontended path is the same compare-and-swap. */
    if (sysconf(_SC_NPROCESSORS_ONLN) > 1) pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
#endif
    for (i = 0; i < n; i++) {
        pk_cache__shard_fields *s = &c->shards[i].f;
        s->max_entries = d.max_entries ? d.max_entries / n + (i < d.max_entries % n) : SIZE_MAX;
        s->max_bytes = d.max_bytes ? d.max_bytes / n + (i < d.max_bytes % n) : SIZE_MAX;
        s->mask = 7;
        s->recycle = d.on_remove == NULL;
        pthread_mutex_init(&s->lock, &ma);
    }
    pthread_mutexattr_destroy(&ma);
    for (i = 0; i < n; i++) {
        pk_cache__shard_fields *s = &c->shards[i].f;
        s->slots = (pk_cache__slot *)PK_MALLOC(8 * sizeof *s->slots);
        if (s->slots) memset(s->slots, 0, 8 * sizeof *s->slots);
        if (c->policy == PK_CACHE_S3FIFO) {
            s->sketch = (uint64_t *)PK_MALLOC(8 * PK_CACHE__AUX * sizeof *s->sketch);
            if (s->sketch) memset(s->sketch, 0, 8 * PK_CACHE__AUX * sizeof *s->sketch);
            if (!s->sketch) break;
        }
        if (!s->slots) break;
    }
    if (i < n) {
        pk_cache_destroy(c);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

PK_CACHE_DEF void pk_cache_destroy(pk_cache *c)
{
    unsigned i;
    int q;
    if (!c) return;
    for (i = 0; i < c->nshards; i++) {
        pk_cache__shard_fields *s = &c->shards[i].f;
        for (q = 0; q < 2; q++) {
            pk_cache__entry *e = s->q[q].head;
            while (e) {
                pk_cache__entry *next = e->next;
                pk_cache__unref(e);
                e = next;
            }
        }
        PK_FREE(s->spare);
        PK_FREE(s->slots);
        PK_FREE(s->sketch);
        pthread_mutex_destroy(&s->lock);
    }
    PK_FREE(c->shards_mem);
    PK_FREE(c);
}

/* ---- put / get (hot) ---- */

/* The charge a key/value pair would have, or 0 when it cannot be represented (E2BIG). */
static size_t pk_cache__charge_of(size_t klen, size_t vlen)
{
    if (klen > UINT32_MAX || klen > SIZE_MAX / 2 || vlen > SIZE_MAX / 2 ||
        klen + vlen > SIZE_MAX / 2 - PK_CACHE__HDR_SIZE - 64) /* each half first: no wrap with 32-bit size_t */
        return 0;
    return klen + vlen + PK_CACHE_ENTRY_OVERHEAD;
}

PK_CACHE_DEF int pk_cache_put(pk_cache *c, const void *key, size_t klen, const void *val, size_t vlen, uint64_t ttl_ns)
{
    uint64_t h, expire = PK_CACHE_TTL_NEVER;
    pk_cache__shard_fields *s;
    pk_cache__entry *e, *victims = NULL;
    size_t charge, need, spare;
    int rc;
    if (!c || (!key && klen) || (!val && vlen)) return -EINVAL;
    charge = pk_cache__charge_of(klen, vlen);
    if (!charge) return -E2BIG;
    h = pk_cache__hash(key, klen, c->seed);
    s = pk_cache__shard_of(c, h);
    if (charge > s->max_bytes) return -E2BIG;
    if (ttl_ns == PK_CACHE_TTL_DEFAULT) ttl_ns = c->ttl_ns ? c->ttl_ns : PK_CACHE_TTL_NEVER;
    pk_cache__prefetch(s, h); /* overlaps the slot's miss with building the entry */
    if (ttl_ns != PK_CACHE_TTL_NEVER) expire = pk_cache__sat_add(c->clock_ns(c->user), ttl_ns);
    need = pk_cache__alloc_size(klen, vlen);
    e = NULL;
    /* A full shard that evicted an entry of about this size kept it: refill it under the lock.
       The size is read before locking to avoid locking twice; recheck under the lock. */
    spare = __atomic_load_n(&s->spare_size, __ATOMIC_RELAXED);
    if (spare >= need && spare - need < 64) {
        pthread_mutex_lock(&s->lock);
        e = s->spare;
        spare = s->spare_size;
        if (e && spare >= need && spare - need < 64) {
            __atomic_store_n(&s->spare, (pk_cache__entry *)NULL, __ATOMIC_RELAXED);
            __atomic_store_n(&s->spare_size, (size_t)0, __ATOMIC_RELAXED);
            pk_cache__entry_fill(e, h, key, klen, val, vlen, expire);
        } else {
            e = NULL;
            pthread_mutex_unlock(&s->lock);
        }
    }
    if (!e) {
        e = pk_cache__entry_new(h, key, klen, val, vlen, expire);
        if (!e) return -ENOMEM;
        pthread_mutex_lock(&s->lock);
    }
    rc = pk_cache__reserve(c, s, s->count + 1);
    if (rc == 0) pk_cache__insert_locked(c, s, e, &victims);
    pthread_mutex_unlock(&s->lock);
    if (rc) PK_FREE(e);
    pk_cache__finish(c, victims);
    return rc;
}

/* Finds a live entry and counts the lookup; an expired one is detached onto *victims. Locked. */
static pk_cache__entry *pk_cache__lookup(pk_cache *c, pk_cache__shard_fields *s, uint64_t h, const void *key,
                                         size_t klen, pk_cache__entry **victims)
{
    size_t i = pk_cache__find(s, h, key, klen);
    pk_cache__entry *e;
    if (i == (size_t)-1) {
        if (c->policy == PK_CACHE_S3FIFO) pk_cache__sketch_inc(s, h);
        s->misses++;
        return NULL;
    }
    e = s->slots[i].e;
    if (e->expire_ns != PK_CACHE_TTL_NEVER && c->clock_ns(c->user) >= e->expire_ns) {
        pk_cache__detach(s, e, i, PK_CACHE_EXPIRED, victims);
        s->misses++;
        return NULL;
    }
    s->hits++;
    if (c->policy == PK_CACHE_LRU) {
        pk_cache__q_touch(&s->q[0], e);
    } else if (e->freq < PK_CACHE__FREQ_MAX) {
        /* S3-FIFO hit: bump the counter, no relinking. The sketch counts only the first hit of
           a round (counter 0 -> 1): later ones add little to what admission compares (miss
           ratio 1.1056 -> 1.1061 of Belady on the benchmark's trace) and each costs a miss on a
           random sketch word, so most hits stay at two memory accesses (slot, entry). */
        if (++e->freq == 1) pk_cache__sketch_inc(s, h);
    }
    return e;
}

/* A lookup of a key longer than any stored key (klen > UINT32_MAX) misses without reading the
   key; it still counts as a miss, in shard 0's counter. */
static int pk_cache__miss_long_key(pk_cache *c)
{
    pk_cache__shard_fields *s = &c->shards[0].f;
    pthread_mutex_lock(&s->lock);
    s->misses++;
    pthread_mutex_unlock(&s->lock);
    return -ENOENT;
}

PK_CACHE_DEF int pk_cache_get(pk_cache *c, const void *key, size_t klen, void *buf, size_t cap, size_t *vlen)
{
    uint64_t h;
    pk_cache__shard_fields *s;
    pk_cache__entry *e, *victims = NULL;
    if (!c || (!key && klen) || (!buf && cap)) return -EINVAL;
    if (klen > UINT32_MAX) return pk_cache__miss_long_key(c);
    h = pk_cache__hash(key, klen, c->seed);
    s = pk_cache__shard_of(c, h);
    pk_cache__prefetch(s, h);
    pthread_mutex_lock(&s->lock);
    e = pk_cache__lookup(c, s, h, key, klen, &victims);
    if (e) {
        if (cap) memcpy(buf, pk_cache__val(e), cap < e->vlen ? cap : e->vlen);
        if (vlen) *vlen = e->vlen;
    }
    pthread_mutex_unlock(&s->lock);
    if (victims) pk_cache__finish(c, victims);
    return e ? 0 : -ENOENT;
}

PK_CACHE_DEF int pk_cache_acquire(pk_cache *c, const void *key, size_t klen, pk_cache_ref *ref)
{
    uint64_t h;
    pk_cache__shard_fields *s;
    pk_cache__entry *e, *victims = NULL;
    if (!ref) return -EINVAL;
    memset(ref, 0, sizeof *ref);
    if (!c || (!key && klen)) return -EINVAL;
    if (klen > UINT32_MAX) return pk_cache__miss_long_key(c);
    h = pk_cache__hash(key, klen, c->seed);
    s = pk_cache__shard_of(c, h);
    pk_cache__prefetch(s, h);
    pthread_mutex_lock(&s->lock);
    e = pk_cache__lookup(c, s, h, key, klen, &victims);
    if (e) {
        __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
        ref->value = pk_cache__val(e);
        ref->len = e->vlen;
        ref->pin_ = e;
    }
    pthread_mutex_unlock(&s->lock);
    if (victims) pk_cache__finish(c, victims);
    return e ? 0 : -ENOENT;
}

PK_CACHE_DEF void pk_cache_release(pk_cache *c, pk_cache_ref *ref)
{
    (void)c; /* the pin owns the entry; the cache is not touched (release may follow destroy) */
    if (!ref || !ref->pin_) return;
    pk_cache__unref((pk_cache__entry *)ref->pin_);
    memset(ref, 0, sizeof *ref);
}

/* ---- removal ---- */

PK_CACHE_DEF int pk_cache_remove(pk_cache *c, const void *key, size_t klen)
{
    uint64_t h;
    pk_cache__shard_fields *s;
    pk_cache__entry *victims = NULL, *e;
    size_t i;
    int rc = -ENOENT;
    if (!c || (!key && klen)) return -EINVAL;
    if (klen > UINT32_MAX) return -ENOENT;
    h = pk_cache__hash(key, klen, c->seed);
    s = pk_cache__shard_of(c, h);
    pthread_mutex_lock(&s->lock);
    i = pk_cache__find(s, h, key, klen);
    if (i != (size_t)-1) {
        e = s->slots[i].e;
        if (e->expire_ns != PK_CACHE_TTL_NEVER && c->clock_ns(c->user) >= e->expire_ns) {
            pk_cache__detach(s, e, i, PK_CACHE_EXPIRED, &victims);
        } else {
            pk_cache__detach(s, e, i, PK_CACHE_REMOVED, &victims);
            rc = 0;
        }
    }
    pthread_mutex_unlock(&s->lock);
    pk_cache__finish(c, victims);
    return rc;
}

/* Glob over bytes: '*' any run, '?' one byte. Backtracks only to the last '*': O(n * m) worst. */
static int pk_cache__glob(const unsigned char *p, const unsigned char *k, size_t klen)
{
    const unsigned char *star = NULL;
    size_t i = 0, star_i = 0;
    while (i < klen) {
        if (*p == '*') {
            star = ++p;
            star_i = i;
        } else if (*p && (*p == '?' || *p == k[i])) {
            p++;
            i++;
        } else if (star) {
            p = star;
            i = ++star_i;
        } else {
            return 0;
        }
    }
    while (*p == '*') p++;
    return *p == 0;
}

enum { PK_CACHE__SEL_PREFIX, PK_CACHE__SEL_GLOB, PK_CACHE__SEL_EXPIRED, PK_CACHE__SEL_ALL };

/* Removes the entries a selector picks from every shard, one shard lock at a time; expired entries
   met on the way are reported as expired. Returns the count removed with `reason`. The clock is
   read (at most) once per shard, under its lock: time passes between shards (the previous shard's
   on_remove calls, other threads), and an entry expired by then must count as expired. */
static size_t pk_cache__remove_where(pk_cache *c, int sel, const void *pat, size_t plen, int reason)
{
    size_t removed = 0;
    unsigned i;
    int q;
    for (i = 0; i < c->nshards; i++) {
        pk_cache__shard_fields *s = &c->shards[i].f;
        pk_cache__entry *victims = NULL, *e, *next;
        uint64_t now = 0;
        int have_now = 0;
        pthread_mutex_lock(&s->lock);
        for (q = 0; q < 2; q++) {
            for (e = s->q[q].head; e; e = next) {
                int pick, expired = 0;
                next = e->next;
                switch (sel) {
                case PK_CACHE__SEL_PREFIX:
                    pick = e->klen >= plen && (plen == 0 || memcmp(pk_cache__key(e), pat, plen) == 0);
                    break;
                case PK_CACHE__SEL_GLOB:
                    pick = pk_cache__glob((const unsigned char *)pat, pk_cache__key(e), e->klen);
                    break;
                case PK_CACHE__SEL_EXPIRED: pick = 0; break;
                default: pick = 1; break;
                }
                if (e->expire_ns != PK_CACHE_TTL_NEVER && (pick || sel == PK_CACHE__SEL_EXPIRED) &&
                    sel != PK_CACHE__SEL_ALL) {
                    if (!have_now) {
                        now = c->clock_ns(c->user);
                        have_now = 1;
                    }
                    expired = now >= e->expire_ns;
                }
                if (expired) {
                    pk_cache__detach(s, e, pk_cache__slot_of(s, e), PK_CACHE_EXPIRED, &victims);
                    if (sel == PK_CACHE__SEL_EXPIRED) removed++;
                } else if (pick) {
                    pk_cache__detach(s, e, pk_cache__slot_of(s, e), reason, &victims);
                    removed++;
                }
            }
        }
        pthread_mutex_unlock(&s->lock);
        pk_cache__finish(c, victims);
    }
    return removed;
}

PK_CACHE_DEF size_t pk_cache_remove_prefix(pk_cache *c, const void *prefix, size_t plen)
{
    if (!c || (!prefix && plen)) return 0;
    return pk_cache__remove_where(c, PK_CACHE__SEL_PREFIX, prefix, plen, PK_CACHE_REMOVED);
}

PK_CACHE_DEF size_t pk_cache_remove_match(pk_cache *c, const char *glob)
{
    if (!c || !glob) return 0;
    return pk_cache__remove_where(c, PK_CACHE__SEL_GLOB, glob, 0, PK_CACHE_REMOVED);
}

PK_CACHE_DEF size_t pk_cache_purge_expired(pk_cache *c)
{
    if (!c) return 0;
    return pk_cache__remove_where(c, PK_CACHE__SEL_EXPIRED, NULL, 0, PK_CACHE_EXPIRED);
}

PK_CACHE_DEF void pk_cache_clear(pk_cache *c)
{
    if (!c) return;
    pk_cache__remove_where(c, PK_CACHE__SEL_ALL, NULL, 0, PK_CACHE_CLEARED);
}

PK_CACHE_DEF void pk_cache_stats_get(pk_cache *c, pk_cache_stats *out)
{
    unsigned i;
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!c) return;
    for (i = 0; i < c->nshards; i++) {
        pk_cache__shard_fields *s = &c->shards[i].f;
        pthread_mutex_lock(&s->lock);
        out->hits += s->hits;
        out->misses += s->misses;
        out->inserts += s->inserts;
        out->updates += s->updates;
        out->evictions += s->evictions;
        out->expirations += s->expirations;
        out->removals += s->removals;
        out->entries += s->count;
        out->bytes += s->bytes;
        pthread_mutex_unlock(&s->lock);
    }
}

/* ---- snapshots ---- */

#define PK_CACHE__MAGIC "PKCACHE1"
#define PK_CACHE__END_MAGIC "PKCEND\0\0"
#define PK_CACHE__VERSION 1u
#define PK_CACHE__HEAD 16u  /* magic, version, flags */
#define PK_CACHE__TRAIL 32u /* count, body bytes, checksum, end magic */

/* Checksum: one multiply-rotate step per 8-byte word. Each step is a bijection of the running
   value, so any change confined to one word always changes the result. Streamable in chunks that
   are multiples of 8 bytes; the last chunk may be shorter. */
static uint64_t pk_cache__sum(uint64_t h, const unsigned char *p, size_t n, int last)
{
    uint64_t w;
    while (n >= 8) {
        h = (h ^ pk_cache__load64(p)) * 0x9E3779B97F4A7C15ull;
        h = (h << 29) | (h >> 35);
        p += 8;
        n -= 8;
    }
    if (last) {
        w = 0;
        if (n) memcpy(&w, p, n);
        h = (h ^ w ^ ((uint64_t)n << 56)) * 0xbf58476d1ce4e5b9ull;
        h = pk_cache__mix(h);
    }
    return h;
}

static void pk_cache__put64(unsigned char *p, uint64_t v)
{
    int i;
    for (i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t pk_cache__get64(const unsigned char *p)
{
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

typedef struct pk_cache__writer {
    int fd, err;
    uint64_t sum;
    size_t n;              /* bytes buffered */
    unsigned char buf[1 << 16];
} pk_cache__writer;

static void pk_cache__flush(pk_cache__writer *w)
{
    size_t off = 0;
    while (off < w->n && !w->err) {
        ssize_t r = write(w->fd, w->buf + off, w->n - off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) w->err = r < 0 && errno ? -errno : -EIO;
        else off += (size_t)r;
    }
    w->n = 0;
}

/* Buffers bytes; full buffers (a multiple of 8 bytes) are checksummed and written. */
static void pk_cache__emit(pk_cache__writer *w, const void *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;
    while (len) {
        size_t k = sizeof w->buf - w->n;
        if (k > len) k = len;
        memcpy(w->buf + w->n, p, k);
        w->n += k;
        p += k;
        len -= k;
        if (w->n == sizeof w->buf) {
            w->sum = pk_cache__sum(w->sum, w->buf, w->n, 0);
            pk_cache__flush(w);
        }
    }
}

/* Makes a rename in path's directory durable (best effort: the rename itself is done). `dir` is
   scratch of strlen(path) + 2 bytes or more, so that nothing can fail for want of memory after the
   rename (the save has replaced the file by then). */
static void pk_cache__fsync_dir(const char *path, char *dir)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 1;
    int fd;
    if (slash) memcpy(dir, path, n);
    else dir[0] = '.';
    if (n == 0) dir[n++] = '/';
    dir[n] = 0;
    fd = open(dir, O_RDONLY);
    if (fd < 0) return;
    fsync(fd);
    close(fd);
}

PK_CACHE_DEF int pk_cache_save(pk_cache *c, const char *path)
{
    pk_cache__writer *w;
    pk_cache__entry **pins = NULL;
    size_t npins, cap = 0, i, count = 0;
    uint64_t body = 0, now;
    unsigned char hdr[PK_CACHE__HEAD], rec[24];
    char *tmp;
    unsigned si;
    int rc = 0, q;
    if (!c || !path || !*path) return -EINVAL;
    tmp = (char *)PK_MALLOC(strlen(path) + 64);
    w = (pk_cache__writer *)PK_MALLOC(sizeof *w);
    if (!tmp || !w) {
        PK_FREE(tmp);
        PK_FREE(w);
        return -ENOMEM;
    }
    /* a name no other save uses: process, cache, sequence; O_EXCL in case one is left over */
    do {
        sprintf(tmp, "%s.tmp.%ld.%lx.%u", path, (long)getpid(), (unsigned long)((uintptr_t)c & 0xffffffffu),
                __atomic_add_fetch(&c->save_seq, 1, __ATOMIC_RELAXED));
        w->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    } while (w->fd < 0 && errno == EEXIST);
    if (w->fd < 0) {
        rc = -errno;
        PK_FREE(tmp);
        PK_FREE(w);
        return rc;
    }
    w->err = 0;
    w->n = 0;
    w->sum = 0x736e617073686f74ull;
    memcpy(hdr, PK_CACHE__MAGIC, 8);
    hdr[8] = PK_CACHE__VERSION & 255;
    hdr[9] = hdr[10] = hdr[11] = 0;
    memset(hdr + 12, 0, 4);
    pk_cache__emit(w, hdr, sizeof hdr);
    now = c->clock_ns(c->user);
    /* One shard at a time: pin its live entries under the lock (oldest first: main then small for
       S3-FIFO, LRU order for LRU, so a load re-creates the order), write them without the lock. */
    for (si = 0; si < c->nshards && !rc; si++) {
        pk_cache__shard_fields *s = &c->shards[si].f;
        pthread_mutex_lock(&s->lock);
        if (cap < s->count) {
            pk_cache__entry **np = (pk_cache__entry **)PK_REALLOC(pins, s->count * sizeof *pins);
            if (!np) rc = -ENOMEM;
            else {
                pins = np;
                cap = s->count;
            }
        }
        npins = 0;
        if (!rc) {
            for (q = 1; q >= 0; q--) {
                pk_cache__entry *e;
                for (e = s->q[q].head; e; e = e->next) {
                    if (e->expire_ns != PK_CACHE_TTL_NEVER && now >= e->expire_ns) continue;
                    __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
                    pins[npins++] = e;
                }
            }
        }
        pthread_mutex_unlock(&s->lock);
        for (i = 0; i < npins; i++) {
            pk_cache__entry *e = pins[i];
            pk_cache__put64(rec, e->klen);
            pk_cache__put64(rec + 8, e->vlen);
            pk_cache__put64(rec + 16, e->expire_ns == PK_CACHE_TTL_NEVER ? PK_CACHE_TTL_NEVER : e->expire_ns - now);
            pk_cache__emit(w, rec, sizeof rec);
            pk_cache__emit(w, pk_cache__key(e), e->klen);
            pk_cache__emit(w, pk_cache__val(e), e->vlen);
            body += sizeof rec + e->klen + e->vlen;
            count++;
            pk_cache__unref(e);
        }
    }
    PK_FREE(pins);
    if (!rc) {
        unsigned char trail[PK_CACHE__TRAIL];
        uint64_t sum;
        pk_cache__put64(trail, count);
        pk_cache__put64(trail + 8, body);
        pk_cache__emit(w, trail, 16);
        /* the buffer now holds the tail of the stream (fewer than 64 KiB bytes) */
        sum = pk_cache__sum(w->sum, w->buf, w->n, 1);
        pk_cache__put64(trail + 16, sum);
        memcpy(trail + 24, PK_CACHE__END_MAGIC, 8);
        if (w->n + 16 > sizeof w->buf) pk_cache__flush(w); /* the sum is taken: plain write */
        memcpy(w->buf + w->n, trail + 16, 16);
        w->n += 16;
        pk_cache__flush(w);
        rc = w->err;
    }
    if (!rc && fsync(w->fd) != 0) rc = errno ? -errno : -EIO;
    if (close(w->fd) != 0 && !rc) rc = errno ? -errno : -EIO;
    if (!rc && rename(tmp, path) != 0) rc = errno ? -errno : -EIO;
    if (rc) unlink(tmp);
    else pk_cache__fsync_dir(path, tmp); /* tmp's name is no longer needed: its buffer is the scratch */
    PK_FREE(tmp);
    PK_FREE(w);
    return rc;
}

typedef struct pk_cache__rec {
    const unsigned char *key, *val;
    size_t klen, vlen;
    uint64_t ttl;
} pk_cache__rec;

/* Reads the whole file. 0, -ENOENT, -EIO, -ENOMEM, or another -errno. */
static int pk_cache__read_file(const char *path, unsigned char **out, size_t *len)
{
    struct stat st;
    unsigned char *buf;
    size_t n, off = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK), rc = 0; /* a FIFO must not block the open: refused below */
    *out = NULL;
    *len = 0;
    if (fd < 0) return errno == ENOENT ? -ENOENT : -(errno ? errno : EIO);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0) {
        close(fd);
        return -EINVAL;
    }
    if ((uint64_t)st.st_size > (uint64_t)(SIZE_MAX / 2)) {
        close(fd);
        return -ENOMEM;
    }
    n = (size_t)st.st_size;
    buf = (unsigned char *)PK_MALLOC(n ? n : 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    while (off < n) {
        ssize_t r = read(fd, buf + off, n - off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        off += (size_t)r;
    }
    close(fd);
    if (off != n) rc = -EIO;
    if (rc) {
        PK_FREE(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Verifies a whole snapshot image and fills recs (count entries). */
static int pk_cache__parse(const unsigned char *b, size_t n, pk_cache__rec **recs_out, size_t *count_out)
{
    uint64_t count, body, i, off;
    pk_cache__rec *recs;
    *recs_out = NULL;
    *count_out = 0;
    if (n < 8) return memcmp(b, PK_CACHE__MAGIC, n) == 0 ? -EIO : -EINVAL; /* a cut-off snapshot or not one */
    if (memcmp(b, PK_CACHE__MAGIC, 8) != 0) return -EINVAL;
    if (n < PK_CACHE__HEAD) return -EIO;
    if (pk_cache__get64(b + 8) != PK_CACHE__VERSION) return -EINVAL; /* version and flags */
    if (n < PK_CACHE__HEAD + PK_CACHE__TRAIL) return -EIO;
    if (memcmp(b + n - 8, PK_CACHE__END_MAGIC, 8) != 0) return -EIO;
    if (pk_cache__sum(0x736e617073686f74ull, b, n - 16, 1) != pk_cache__get64(b + n - 16)) return -EIO;
    count = pk_cache__get64(b + n - 32);
    body = pk_cache__get64(b + n - 24);
    if (body != n - PK_CACHE__HEAD - PK_CACHE__TRAIL || count > body / 24) return -EIO;
    recs = (pk_cache__rec *)PK_MALLOC((size_t)(count ? count : 1) * sizeof *recs);
    if (!recs) return -ENOMEM;
    off = PK_CACHE__HEAD;
    for (i = 0; i < count; i++) {
        uint64_t kl, vl, end = PK_CACHE__HEAD + body;
        if (end - off < 24) break;
        kl = pk_cache__get64(b + off);
        vl = pk_cache__get64(b + off + 8);
        recs[i].ttl = pk_cache__get64(b + off + 16);
        off += 24;
        if (kl > end - off || vl > end - off - kl || kl > UINT32_MAX) break;
        recs[i].key = b + off;
        recs[i].klen = (size_t)kl;
        recs[i].val = b + off + kl;
        recs[i].vlen = (size_t)vl;
        off += kl + vl;
    }
    if (i != count || off != PK_CACHE__HEAD + body) {
        PK_FREE(recs);
        return -EIO;
    }
    *recs_out = recs;
    *count_out = (size_t)count;
    return 0;
}

PK_CACHE_DEF int pk_cache_load(pk_cache *c, const char *path)
{
    unsigned char *file;
    size_t n, count, i, live = 0, *per_shard;
    pk_cache__grown *grown;
    pk_cache__rec *recs = NULL;
    pk_cache__entry **ents = NULL, *victims = NULL;
    uint64_t now;
    unsigned si;
    int rc;
    if (!c || !path) return -EINVAL;
    rc = pk_cache__read_file(path, &file, &n);
    if (rc) return rc;
    rc = pk_cache__parse(file, n, &recs, &count);
    if (rc) {
        PK_FREE(file);
        return rc;
    }
    /* Build every entry before touching the cache. */
    per_shard = (size_t *)PK_MALLOC(c->nshards * sizeof *per_shard);
    grown = (pk_cache__grown *)PK_MALLOC(c->nshards * sizeof *grown);
    ents = (pk_cache__entry **)PK_MALLOC((count ? count : 1) * sizeof *ents);
    if (!per_shard || !grown || !ents) rc = -ENOMEM;
    now = c->clock_ns(c->user);
    if (!rc) memset(per_shard, 0, c->nshards * sizeof *per_shard);
    for (i = 0; i < count && !rc; i++) {
        pk_cache__rec *r = &recs[i];
        uint64_t h = pk_cache__hash(r->key, r->klen, c->seed);
        pk_cache__shard_fields *s = pk_cache__shard_of(c, h);
        size_t charge = pk_cache__charge_of(r->klen, r->vlen);
        if (r->ttl == 0 || !charge || charge > s->max_bytes) continue; /* expired or never fits */
        ents[live] = pk_cache__entry_new(h, r->key, r->klen, r->val, r->vlen,
                                         r->ttl == PK_CACHE_TTL_NEVER ? PK_CACHE_TTL_NEVER : pk_cache__sat_add(now, r->ttl));
        if (!ents[live]) rc = -ENOMEM;
        else {
            per_shard[pk_cache__shard_index(c, h)]++;
            live++;
        }
    }
    PK_FREE(recs);
    PK_FREE(file);
    /* Commit under every shard lock (in order, so concurrent loads cannot deadlock): every shard's
       bigger table is built first and installed only when all were, after which inserting cannot
       fail. */
    if (!rc) {
        unsigned made = 0;
        for (si = 0; si < c->nshards; si++) pthread_mutex_lock(&c->shards[si].f.lock);
        for (; made < c->nshards && !rc; made++) {
            pk_cache__shard_fields *s = &c->shards[made].f;
            size_t want = s->count + per_shard[made];
            if (want > s->max_entries) want = s->max_entries;
            rc = pk_cache__grow_prepare(c, s, want, &grown[made]);
        }
        for (si = 0; si < made; si++) {
            if (rc) {
                PK_FREE(grown[si].slots);
                PK_FREE(grown[si].sketch);
            } else {
                pk_cache__grow_install(&c->shards[si].f, &grown[si]);
            }
        }
        if (!rc)
            for (i = 0; i < live; i++) pk_cache__insert_locked(c, pk_cache__shard_of(c, ents[i]->hash), ents[i], &victims);
        for (si = c->nshards; si-- > 0;) pthread_mutex_unlock(&c->shards[si].f.lock);
    }
    if (rc)
        for (i = 0; i < live; i++) PK_FREE(ents[i]);
    PK_FREE(ents);
    PK_FREE(grown);
    PK_FREE(per_shard);
    pk_cache__finish(c, victims);
    return rc;
}

#endif /* PK_CACHE_IMPLEMENTATION */
