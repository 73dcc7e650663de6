/* pk_pool.h — object pools and resource pools (connections) with deadlines, validation and leak reports.

   Two tools in one single-file header:
     pk_pool     fixed-size objects, O(1) acquire/release, cheaper than malloc+free once warm;
     pk_respool  expensive resources (database/cache connections, sessions, handles) borrowed and
                 returned, in the manner of HikariCP: min kept warm, max bound, FIFO waiters with a
                 true monotonic deadline, validation, idle/lifetime retirement, leak reports.

   In exactly one C or C++ file:
       #define PK_POOL_IMPLEMENTATION
       #include "pk_pool.h"
   Elsewhere just #include "pk_pool.h". Add #define PK_POOL_STATIC before the include to make every
   function static (private to that file). Under strict -std=c99 define _POSIX_C_SOURCE=200809L
   (gnu99 or the compiler default need nothing). Needs pthreads; gcc or clang (uses __atomic).

   QUICK START (compiled and run by `make test`) -------------------------------------------------
   ---8<--- example
   #define PK_POOL_IMPLEMENTATION
   #include "pk_pool.h"
   #include <errno.h>
   #include <stdio.h>
   #include <stdlib.h>
   #include <string.h>
   #include <sys/socket.h>
   #include <unistd.h>

   typedef struct msg { char text[200]; size_t len; } msg;
   static void msg_reset(void *obj, void *user) { (void)user; ((msg *)obj)->len = 0; }

   // A pooled connection is a heap struct that owns a socket.
   typedef struct conn { int fd; } conn;
   static int conn_open(void **res, void *user)
   {
       conn *c = (conn *)malloc(sizeof *c);
       (void)user;                                  // e.g. the server's address
       if (!c) return -ENOMEM;
       c->fd = socket(AF_INET, SOCK_STREAM, 0);     // a real client connect()s here
       if (c->fd < 0) { int e = -errno; free(c); return e; }
       *res = c;
       return 0;
   }
   static void conn_close(void *res, void *user) { (void)user; close(((conn *)res)->fd); free(res); }

   int main(void)
   {
       pk_pool *mp;
       pk_pool_config pc;
       pk_respool *rp;
       pk_respool_config rc;
       msg *m;
       void *r;

       memset(&pc, 0, sizeof pc);
       pc.size = sizeof(msg);
       pc.prealloc = 1024;
       pc.reset = msg_reset;                        // runs on every release
       if (pk_pool_create(&mp, &pc) != 0) return 1;
       m = (msg *)pk_pool_acquire(mp);              // NULL only when max is reached or memory is out
       if (!m) return 1;
       m->len = (size_t)snprintf(m->text, sizeof m->text, "hello");
       if (pk_pool_release(mp, m) != 0) return 1;
       if (pk_pool_release(mp, m) != -EINVAL) return 1; // a double release is refused
       pk_pool_destroy(mp);

       memset(&rc, 0, sizeof rc);
       rc.min = 2;                                  // kept warm
       rc.max = 16;                                 // never more
       rc.create = conn_open;
       rc.destroy = conn_close;
       rc.idle_timeout_ns = 60 * 1000000000ull;     // idle ones above min closed after a minute
       rc.max_lifetime_ns = 30 * 60 * 1000000000ull; // recycled after half an hour
       if (pk_respool_create(&rp, &rc) != 0) return 1; // fails with create's error if min can't be made
       if (pk_respool_acquire(rp, &r, 50 * 1000000ull) == 0) { // 0, -ETIMEDOUT or create's error
           int broken = ((conn *)r)->fd < 0;        // a real client: did the request fail?
           if (broken) pk_respool_invalidate(rp, r); // destroyed; a waiter may make a new one
           else pk_respool_release(rp, r);
       }
       pk_respool_maintain(rp);                     // from a timer, e.g. once a second
       pk_respool_destroy(rp);
       puts("ok");
       return 0;
   }
   --->8---

   OPTIONS (#define before the implementation) ---------------------------------------------------
     PK_MALLOC(n), PK_REALLOC(p, n), PK_FREE(p)   allocator (default: C library); all three or none
     PK_ASSERT(x)                                  default: assert(x)
     PK_POOL_CACHE           per-thread cache of an object pool, in objects (default 64; 0 = none)
     PK_POOL_CHUNK_BYTES     target size of one slab of objects (default 65536)
     PK_POOL_NO_MEMBARRIER   never use Linux membarrier(2); the per-thread fast path then uses one
                             full fence per call (correct everywhere, ~5 ns slower per call)
     PK_POOL_STRICT_RELEASE  make the in-use flip on release an atomic exchange, so that even two
                             threads racing to release the same pointer at the same instant are caught
                             (costs one atomic read-modify-write per release; see "Double release")

   OBJECT POOL API ---------------------------------------------------------------------------------
     int   pk_pool_create(pk_pool **out, const pk_pool_config *cfg);
             0; -EINVAL (NULL out/cfg, size 0, align not a power of two or above 1 MiB, prealloc >
             max, sizes that overflow); -ENOMEM; -ECANCELED when init fails during prealloc (nothing leaked).
     void  pk_pool_destroy(pk_pool *p);
             calls fini on every object (lent or idle) and frees all the pool's memory. Objects still
             lent become invalid. No other call on p may run or start meanwhile; threads that still
             hold a per-thread cache for p free it when they exit or next create a cache (see below).
     void *pk_pool_acquire(pk_pool *p);
             an object, or NULL when max objects really are in use (idle objects cached by other
             threads are reclaimed first; counted in `exhausted`), when memory is out, or when init
             failed for the new object. Objects that another thread's trim is finalising count as
             free for up to 1 s (acquire waits for their fini), then as in use; a thread that is
             itself inside a fini never waits (two fini callbacks acquiring from each other's
             pools would wait for each other). HOT.
     int   pk_pool_release(pk_pool *p, void *obj);
             0; -EINVAL for NULL, a pointer the pool never gave out, an interior pointer, or an
             object that is not lent right now (double release). reset runs on success only. HOT.
     void  pk_pool_flush(pk_pool *p);
             gives the calling thread's cached idle objects back to the shared depot (where max_idle
             applies). For a thread about to go quiet for a long time; never needed for correctness.
     void  pk_pool_stats_get(pk_pool *p, pk_pool_stats *out);

   RESOURCE POOL API -------------------------------------------------------------------------------
     int  pk_respool_create(pk_respool **out, const pk_respool_config *cfg);
            makes `min` resources; 0; -EINVAL (NULL out/cfg, max 0, min > max, create or destroy NULL);
            -ENOMEM; or the first error create returned (all made so far destroyed).
     void pk_respool_destroy(pk_respool *p);
            destroys every idle resource. A resource still lent is NOT destroyed: the borrower owns
            it now and must dispose of it itself (the pool cannot know it is not in use). With leak
            reporting on (leak_ns > 0), each is REPORTED through on_leak whatever its held time
            (held_ns = how long it has been out; even if maintain reported that loan already: this
            report hands it over); with leak_ns = 0 nothing is reported, as everywhere else. Then
            the pool frees all its own memory. No call on p may run or start meanwhile (no waiter,
            no borrower returning a resource).
     int  pk_respool_acquire(pk_respool *p, void **res, uint64_t timeout_ns);
            0; -ETIMEDOUT; create's error when it had to create and create failed; -ENOMEM; -EINVAL.
            Order: an idle resource (one parked by a recent release first, then the most recently used;
            validated first when idle at least
            validate_idle_ns; a failing or over-age one is destroyed and the next tried), else create
            when fewer than max exist, else wait in a FIFO queue. timeout_ns is a deadline on the
            monotonic clock (spurious wake-ups do not extend it); 0 never waits; PK_FOREVER waits
            without limit.
     int  pk_respool_release(pk_respool *p, void *res);
            0, or -EINVAL if res is not lent out from p. Goes straight to the longest waiter if any
            (not validated then), else to the idle list. A resource past max_lifetime_ns is destroyed
            instead and its place given to a waiter, who creates a replacement.
     int  pk_respool_invalidate(pk_respool *p, void *res);
            0 or -EINVAL as release. Destroys res (outside the lock) and lets the longest waiter
            create a replacement. max counts slots, not live resources: the replacement's create
            may run while the old resource's destroy is still running (likewise for retirement
            and maintain), so a server-side connection limit needs max below it.
     size_t pk_respool_maintain(pk_respool *p);
            destroys idle resources above min idle for idle_timeout_ns, retires idle resources past
            max_lifetime_ns, reports loans older than leak_ns through on_leak (once per loan), then
            creates resources up to min (stops at the first create failure). Returns the number of
            resources destroyed + created + leaks reported. Call it from a timer.
     void pk_respool_stats_get(pk_respool *p, pk_respool_stats *out);

   THREAD SAFETY -------------------------------------------------------------------------------------
   Every call may be made from any thread at once, except destroy (nothing else may be running).
   Callbacks (init, reset, fini, create, validate, destroy, on_leak) never run while the pool holds a
   lock of its own, so they may block (a slow connect never blocks releases) and may call into the
   pool: reset, and create/validate/destroy/on_leak, may call the same pool's functions; init and fini
   may too. Two exceptions: init during create's prealloc (nobody else can see the pool yet), and a
   respool's clock_ns, which runs with or without the pool's mutex held, from any thread at once:
   it must be quick and thread-safe, and must not call the pool.

   HOW THE OBJECT POOL IS FAST (and what it costs) -------------------------------------------------
   Per-thread caches. Each thread that uses a pool gets, on its first call, a cache of up to
   PK_POOL_CACHE (64) objects for that pool (fewer for big objects: about 256 KiB of them but at
   least 4, so a burst of 32 page-sized buffers still stays in the cache; so a thread may keep 4
   idle 64 MiB objects: pk_pool_flush hands them to max_idle, and max under 32 turns caches off),
   a small FIFO ring: acquire takes from one end, release puts at the other, with no lock, no
   atomic read-modify-write and no fence. A thread-local one-entry memo (the last pool used and its
   cache) finds the cache in one compare; a thread that alternates pools falls back to an 8-entry
   thread-local table keyed by the pool's generation id (unique per pool ever created, so a pool
   destroyed and another created at the same address never mix), then to its list of caches.
   Release finds the object's state byte by address arithmetic on
   the chunk of its previous release (the "hint", see Slabs), so the hot release does no table
   lookup. An empty or full cache moves half its capacity at once to or from a shared depot under
   the pool's mutex. Memory cost: about 280 + 16 * PK_POOL_CACHE bytes (1.3 KiB) per thread per pool,
   plus the objects it holds. With `max` set the cache shrinks to max/8 (no cache when that is below
   4), so that small pools rarely need to reclaim, and its calls take the handshake below (a few ns
   more); pools with a reset callback also take a slightly longer path (reset is a call anyway).
   Reclaiming: when acquire finds no idle object, no free slot and max reached, it takes every object
   out of every other thread's cache (steal protocol: the owner marks itself busy with a plain store;
   the thief sets a flag, issues membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) so every running thread
   passes a full barrier, and waits for the owner to be idle — an asymmetric Dekker handshake; where
   membarrier is unavailable, and under ThreadSanitizer, the owner pays a full fence per call
   instead). So NULL means max objects really are lent out (or being initialised).
   Thread exit: a pthread key destructor hands the thread's cached objects back to each live pool.
   Pool destroyed first: the pool struct is reference-counted by the caches; destroy takes every
   cached object back, and a cache left in another thread is freed by that thread at its exit (or
   when it next makes a cache) — about 1.3 KiB per such thread until then.
   Approximations (stated by the contract): idle objects in thread caches are not counted against
   max_idle, so up to PK_POOL_CACHE more idle objects per thread may be kept; peak_in_use is sampled
   when a thread goes to the depot and at stats_get, so it may miss up to PK_POOL_CACHE per thread.
   in_use/idle are exact when no call is running.

   Slabs and ownership. Objects live in slabs ("chunks") of about PK_POOL_CHUNK_BYTES that the pool
   allocates (starting on a 64-byte line); each slot's state (raw, idle, lent) is a byte in pool-owned
   metadata, never in the object. Release finds the chunk by address alone: first the calling
   thread's hint (a copy of the last chunk's range, valid while the pool's seqlock counter has not
   moved since it was taken, which the release checks after reading the state byte), else a small
   hash table of the chunks' address ranges (readers under the seqlock, no lock), then checks the
   state byte, so a foreign, interior or
   already-released pointer gives -EINVAL without the pool ever reading memory it does not own. A
   chunk whose objects have all been freed (max_idle) is given back to the allocator (one empty chunk
   is kept as a spare); its metadata record is kept for reuse so a racing lookup never touches freed
   memory. Metadata cost: 2 bytes per slot for states (padded so two threads' batches do not share a
   cache line), 4 bytes per slot for the free-slot stack, and about 100 bytes per chunk.
   Idle objects keep their contents (init runs once per object, reset on each release): the pool
   never writes into an object.

   Double release. The state byte flips to idle on every release, in the thread cache path too, so
   any second release of a pointer that is ordered after the first one (same thread, or any
   synchronisation between the two) gets -EINVAL. Two threads racing to release the same pointer at
   the very same instant is a data race in the caller; by default it may go undetected (the flip is a
   plain load and store, no atomic read-modify-write); define PK_POOL_STRICT_RELEASE to catch that too.
   A pointer released, re-acquired by someone else, then released again by its first owner cannot be
   told apart from a legitimate release by any pool that recognises pointers by address.

   HOW THE RESOURCE POOL IS FAST. When nobody waits, a release parks the resource in one of 8 atomic
   slots and an acquire claims one, without the mutex (one compare-and-swap each, plus one on the
   resource's loan tag); the releasing thread finds the resource's record through a thread-local memo
   of its last loan, so it needs no lookup. Anything else (waiters, creation, a release by another
   thread than the borrower, every slot full) takes the mutex; waiters are still served first come,
   first served, and a parked resource is handed to a waiter as soon as one queues. A resource's
   record is kept for reuse until the pool is destroyed (about 80 bytes each, at most max of them).

   LIMITS: object size up to SIZE_MAX/4; align a power of two up to 1 MiB above max_align_t is honoured
   by padding each chunk. A resource pool keeps one small heap record per resource and a hash map from
   resource to record; timeouts use CLOCK_MONOTONIC condition variables.

   REVISION: 1.1 lock-free fast paths (object pool without handshake; resource pool parking slots).
             1.0 first release.                                                                   */
#ifndef PK_POOL_H
#define PK_POOL_H

#include <stddef.h>
#include <stdint.h>

#ifndef PK_POOL_DEF
#ifdef PK_POOL_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define PK_POOL_DEF static __attribute__((unused))
#else
#define PK_POOL_DEF static
#endif
#else
#define PK_POOL_DEF extern
#endif
#endif

#ifndef PK_FOREVER
#define PK_FOREVER UINT64_MAX
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- object pool ---- */
typedef struct pk_pool pk_pool;
typedef struct pk_pool_config {
    size_t size;       /* object size in bytes (required) */
    size_t align;      /* 0 = alignof(max_align_t); else a power of two */
    size_t prealloc;   /* objects made at create */
    size_t max;        /* bound on objects in existence; 0 = unbounded */
    size_t max_idle;   /* idle objects kept in the shared depot; more are freed on release; 0 = keep all */
    int  (*init)(void *obj, void *user);   /* once per new object; nonzero = failure */
    void (*reset)(void *obj, void *user);  /* on every release */
    void (*fini)(void *obj, void *user);   /* before an object's memory is freed */
    void  *user;
} pk_pool_config;
typedef struct pk_pool_stats {
    size_t   in_use, idle, peak_in_use;
    uint64_t acquires, created, freed, exhausted;
} pk_pool_stats;

PK_POOL_DEF int   pk_pool_create(pk_pool **out, const pk_pool_config *cfg);
PK_POOL_DEF void  pk_pool_destroy(pk_pool *p);
PK_POOL_DEF void *pk_pool_acquire(pk_pool *p);
PK_POOL_DEF int   pk_pool_release(pk_pool *p, void *obj);
PK_POOL_DEF void  pk_pool_flush(pk_pool *p);
PK_POOL_DEF void  pk_pool_stats_get(pk_pool *p, pk_pool_stats *out);

/* ---- resource pool ---- */
typedef struct pk_respool pk_respool;
typedef struct pk_respool_config {
    size_t   min, max;           /* kept warm / total bound (max required) */
    uint64_t idle_timeout_ns;    /* idle resources above min older than this are destroyed; 0 = never */
    uint64_t max_lifetime_ns;    /* resources older than this are retired when next idle; 0 = never */
    uint64_t validate_idle_ns;   /* validate on acquire when idle at least this long; 0 = every acquire */
    uint64_t leak_ns;            /* report a resource held longer than this via on_leak; 0 = off */
    int  (*create)(void **res, void *user);    /* 0 or -errno (required) */
    int  (*validate)(void *res, void *user);   /* 0 = healthy; optional */
    void (*destroy)(void *res, void *user);    /* required */
    void (*on_leak)(void *res, uint64_t held_ns, void *user); /* optional */
    void  *user;
    uint64_t (*clock_ns)(void *user); /* time source for ages (idle, lifetime, validation, leaks);
                                         NULL = CLOCK_MONOTONIC. acquire deadlines always use the real
                                         monotonic clock. Lets tests drive maintain without sleeping. */
} pk_respool_config;
typedef struct pk_respool_stats {
    size_t   total, idle, in_use, waiting;
    uint64_t acquires, timeouts, created, destroyed, create_failures, validation_failures, leaks;
    uint64_t wait_ns_total, wait_ns_max;
} pk_respool_stats;

PK_POOL_DEF int    pk_respool_create(pk_respool **out, const pk_respool_config *cfg);
PK_POOL_DEF void   pk_respool_destroy(pk_respool *p);
PK_POOL_DEF int    pk_respool_acquire(pk_respool *p, void **res, uint64_t timeout_ns);
PK_POOL_DEF int    pk_respool_release(pk_respool *p, void *res);
PK_POOL_DEF int    pk_respool_invalidate(pk_respool *p, void *res);
PK_POOL_DEF size_t pk_respool_maintain(pk_respool *p);
PK_POOL_DEF void   pk_respool_stats_get(pk_respool *p, pk_respool_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* PK_POOL_H */

/* ============================================================================================== */
#if defined(PK_POOL_IMPLEMENTATION) && !defined(PK_POOL_IMPLEMENTATION_DONE)
#define PK_POOL_IMPLEMENTATION_DONE

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#if !defined(__cplusplus) && defined(SYS_membarrier)
extern long syscall(long number, ...); /* not declared under strict -std=c99 + _POSIX_C_SOURCE */
#endif
#endif

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
#ifndef PK_POOL_CACHE
#define PK_POOL_CACHE 64
#endif
/* the most objects one refill moves (half a cache), +1; at least 3 so that no compiler sees a
   one-element array indexed by a loop (a cache below 4 objects is no cache: see create) */
#define PK_POOL__BATCH_MAX ((PK_POOL_CACHE < 4 ? 4 : PK_POOL_CACHE) / 2 + 1)
#ifndef PK_POOL_CHUNK_BYTES
#define PK_POOL_CHUNK_BYTES 65536
#endif

#if defined(__GNUC__) || defined(__clang__)
#define PK_POOL__UNUSED __attribute__((unused))
#define PK_POOL__NOINLINE __attribute__((noinline))
#define PK_POOL__LIKELY(x) __builtin_expect(!!(x), 1)
#define PK_POOL__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define PK_POOL__UNUSED
#define PK_POOL__NOINLINE
#define PK_POOL__LIKELY(x) (x)
#define PK_POOL__UNLIKELY(x) (x)
#endif
#define PK_POOL__FN static PK_POOL__UNUSED

#if defined(__cplusplus) && __cplusplus >= 201103L
#define PK_POOL__TLS thread_local
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define PK_POOL__TLS _Thread_local
#else
#define PK_POOL__TLS __thread
#endif

#if defined(__SANITIZE_THREAD__)
#define PK_POOL__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PK_POOL__TSAN 1
#endif
#endif

/* ThreadSanitizer does not model fences (and warns about them): there the seqlock leans on the
   acquire/release of its counter alone, which is all TSan checks anyway. */
#ifdef PK_POOL__TSAN
#define PK_POOL__FENCE_ACQ() ((void)0)
#define PK_POOL__FENCE_REL() ((void)0)
#else
#define PK_POOL__FENCE_ACQ() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define PK_POOL__FENCE_REL() __atomic_thread_fence(__ATOMIC_RELEASE)
#endif
#define PK_POOL__LD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define PK_POOL__ST(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define PK_POOL__LDA(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define PK_POOL__STR(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#define PK_POOL__INC(x) PK_POOL__ST(x, PK_POOL__LD(x) + 1) /* single writer counters */

#if defined(__SIZEOF_INT128__)
__extension__ typedef unsigned __int128 pk_pool__u128;
#endif

/* ---- object pool: data structures -----------------------------------------------------------

   pool ──< chunk records (rec) ── each: one slab of nslots objects + a state byte per slot
        ├── table: hash of "pages" (address >> page_shift) -> rec, for release-by-address; a chunk
        │          spans at most two pages. Read without lock under the seqlock `seq`.
        ├── depot: stack of idle (object, state*) pairs, under `mu`
        ├── rawlist: recs that have raw (never made or freed) slots, under `mu`
        └── caches: every thread cache registered for this pool, under `mu`
   thread ── memo (last pool, its cache) + 8-way table by pool generation ──> its cache for a pool:
             a FIFO ring of idle (object, state*) pairs and a release hint (a copy of one chunk's
             range, trusted while `seq` has not moved). The fast paths touch only the memo, the
             cache's first 80 bytes, a ring slot, one state byte, and `seq`.

   Slot states: RAW (no object), IDLE (made, not lent: in the depot or in a thread cache), LENT,
   BUSY (being made by init or unmade by fini, outside the lock). A rec is never freed before the
   pool: a racing lookup may still read it after its chunk went back to the allocator. */

enum { PK_POOL__RAW = 0, PK_POOL__IDLE = 1, PK_POOL__LENT = 2, PK_POOL__BUSY = 3 };
#define PK_POOL__GROUP 32 /* states of 32 slots fill one 64-byte line (a batch of 32 is a line) */
#define PK_POOL__SIDX(i) ((i)*2) /* one state byte every 2 bytes: the x86 scaled index is free */

typedef struct pk_pool__pair { void *obj; unsigned char *st; } pk_pool__pair;

typedef struct pk_pool__rec {
    uintptr_t base;     /* first object; 0 when the rec holds no chunk (atomic: read by lookups) */
    size_t bytes;       /* nslots * stride; 0 when dead (atomic) */
    unsigned char *st;  /* per-slot state, at PK_POOL__SIDX(slot); fixed for the rec's life */
    uint32_t *raw;      /* stack of raw slot indices below nfresh */
    void *mem;          /* what PK_MALLOC returned for the chunk */
    size_t nslots, nfresh, nraw, nlive; /* nlive = slots not RAW */
    int in_rawlist;
    struct pk_pool__rec *rnext, *rprev; /* rawlist */
    struct pk_pool__rec *dnext;         /* dead list (recs without a chunk) */
    struct pk_pool__rec *anext;         /* every rec, for destroy */
} pk_pool__rec;

typedef struct pk_pool__tabent { uint64_t key; pk_pool__rec *r; } pk_pool__tabent; /* key = page + 1 */
typedef struct pk_pool__tab {
    size_t mask, n;
    struct pk_pool__tab *retired; /* older, smaller tables: readers may still hold them; freed at destroy */
    pk_pool__tabent *e;
} pk_pool__tab;

/* A thread cache is a FIFO ring, not a stack: acquire advances `head`, release advances `tail`, and
   an empty slot holds obj NULL, so each fast path reads and writes one index of its own (and the
   acquire count comes free from `head`). Measured on this project's machine (AMD EPYC, Zen 4): a bare
   FIFO ring and a bare LIFO stack cost the same, 3.0 ns per acquire+release pair. The price of FIFO:
   a loop cycles through the cached objects (up to 64, at most 256 KiB) instead of reusing the
   hottest one, so a caller who touches whole large buffers works from L2 rather than L1.
   The fast paths touch only this struct's first 80 bytes, a ring slot, the object's state byte and
   p->seq (release).
   `guard`: the pool has a max, so a thief may empty this ring (steal); the owner then brackets every
   ring access with the busy/steal handshake. A pool without max never steals and skips it.
   Release hint: the chunk of the last release (hbase/hslots/hst copied from its rec) while the
   pool's seqlock still reads hseq; a release into that chunk needs no table lookup. */
typedef struct pk_pool__cache {
    size_t head, tail; /* free-running; count = tail - head; slot = index & mask; empty slots hold
                          obj NULL, so the fast release tests its slot instead of the count */
    size_t mask;       /* cap - 1; cap: a power of two */
    pk_pool__pair *objs;
    uintptr_t hbase;   /* release hint (see above); hslots 0 = none */
    size_t hslots;
    unsigned char *hst;
    uint64_t ex_inv;   /* copies of the pool's (a NULL pool meets `nocache`, whose are 0) */
    uint64_t hseq;
    unsigned ex_rot;
    int guard;
    /* the rest: locked paths, thieves, stats */
    unsigned busy;   /* owner: 1 while it touches the ring without the lock (guard only) */
    unsigned steal;  /* a thief (holding mu) wants this cache: owner must take the locked path */
    size_t cap;
    size_t moved;    /* ring pops made by locked paths; head - moved = fast-path acquires */
    uint64_t gen;
    struct pk_pool *pool;
    struct pk_pool__cache *pnext, *pprev; /* pool's list (mu) */
    struct pk_pool__cache *tnext;         /* thread's list (owner only) */
} pk_pool__cache;

struct pk_pool {
    /* read-mostly, first line: everything the fast paths need */
    uint64_t gen;
    uint64_t seq;       /* seqlock over table/rec ranges: odd while a writer changes them */
    int fence_mode;     /* 1: owners use a full fence (no membarrier) */
    pk_pool__tab *tab;  /* atomic pointer, published under seq */
    size_t stride;
    int stride_shift;   /* >= 0 when stride is a power of two */
    uint64_t div_m;     /* ceil(2^64 / stride) for exact division of offsets < 2^32; 0 = use '/' */
    uint64_t ex_inv;    /* stride = odd << ex_rot; ex_inv = odd^-1 mod 2^64: see pk_pool__exact */
    unsigned ex_rot;
    unsigned page_shift;
    void (*reset)(void *, void *);
    void *user;
    /* configuration */
    size_t size, align, max, max_idle, per_chunk, cache_cap;
    int (*init)(void *, void *);
    void (*fini)(void *, void *);
    /* shared state, under mu */
    pthread_mutex_t mu;
    pk_pool__pair *dep;
    size_t ndep, depcap;
    size_t nslots;      /* slots in chunks + reserved for chunks being allocated; <= max */
    size_t nempty;      /* recs with a chunk and no live object */
    pk_pool__rec *rawlist, *dead, *all;
    pk_pool__cache *caches;
    uint64_t acq;    /* acquires not counted by a registered cache's ring (slow path, exited threads) */
    size_t nfini;    /* objects taken from the depot and being fini'd (still idle for the stats) */
    uint64_t created, freed, exhausted;
    size_t peak;
    int adding; /* chunk_add calls between their reservation and their chunk (mu dropped) */
    int refs;  /* 1 for the pool + 1 per thread cache; the struct is freed at 0 */
    int dead_; /* set by destroy */
};

/* ---- process-wide plumbing (per translation unit): generation ids, thread-exit key, membarrier ---- */

typedef struct pk_pool__tlent { uint64_t gen; pk_pool__cache *c; } pk_pool__tlent;
#define PK_POOL__TLWAYS 8
static PK_POOL__TLS pk_pool__tlent pk_pool__tl[PK_POOL__TLWAYS];
/* The last unguarded cache this thread used, keyed by the pool's address: the fast paths' one
   compare. Safe against a new pool at a dead pool's address because the cache holds a reference
   on its pool struct: the struct cannot be freed (nor its address reused) while the memo is set.
   An unset memo points at `nocache`, an empty one-slot ring with no hint that is never written: a
   NULL p matches it and fails both fast paths' checks (the slow paths then refuse NULL). */
typedef struct pk_pool__memo1 { struct pk_pool *p; pk_pool__cache *c; } pk_pool__memo1;
static pk_pool__pair pk_pool__noslot[1];
static pk_pool__cache pk_pool__nocache = {0, 0, 0, pk_pool__noslot, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL};
static PK_POOL__TLS pk_pool__memo1 pk_pool__tl1 = {NULL, &pk_pool__nocache};
static inline void pk_pool__memo_clear(void)
{
    pk_pool__tl1.p = NULL;
    pk_pool__tl1.c = &pk_pool__nocache;
}
static PK_POOL__TLS pk_pool__cache *pk_pool__tl_list;
static PK_POOL__TLS int pk_pool__tl_keyed;
/* How many fini calls for trims this thread is inside (a fini may release to another pool, whose
   trim runs its fini...). Such a thread's acquire at max never waits for objects being finalised:
   they may include one its own outer fini holds, or one whose fini (on another thread) is waiting
   for this thread's. */
static PK_POOL__TLS int pk_pool__tl_fini;

PK_POOL__FN uint64_t pk_pool__mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Whether an acquire at max should yield and retry for objects another thread's trim is
   finalising (their slots turn free when fini returns): for up to 1 s from the first wait (*t0),
   so that a fini that blocks (on a lock the caller holds, say) cannot hang it; never from inside
   a fini. */
static int pk_pool__wait_fini(const pk_pool *p, uint64_t *t0)
{
    uint64_t now;
    if (!p->nfini || pk_pool__tl_fini) return 0;
    now = pk_pool__mono_ns();
    if (!*t0) *t0 = now;
    return now - *t0 < 1000000000u;
}
static uint64_t pk_pool__gens;
static pthread_once_t pk_pool__once = PTHREAD_ONCE_INIT;
static pthread_key_t pk_pool__key;
static int pk_pool__key_ok, pk_pool__membarrier_ok;

#define PK_POOL__MB_QUERY 0
#define PK_POOL__MB_PRIVATE_EXPEDITED (1 << 3)
#define PK_POOL__MB_REGISTER_PRIVATE_EXPEDITED (1 << 4)

PK_POOL__FN void pk_pool__thread_exit(void *arg);

PK_POOL__FN void pk_pool__init_once(void)
{
    pk_pool__key_ok = pthread_key_create(&pk_pool__key, pk_pool__thread_exit) == 0;
#if defined(__linux__) && defined(SYS_membarrier) && !defined(PK_POOL_NO_MEMBARRIER) && !defined(PK_POOL__TSAN)
    {
        long q = syscall(SYS_membarrier, PK_POOL__MB_QUERY, 0);
        if (q > 0 && (q & PK_POOL__MB_PRIVATE_EXPEDITED) &&
            syscall(SYS_membarrier, PK_POOL__MB_REGISTER_PRIVATE_EXPEDITED, 0) == 0)
            pk_pool__membarrier_ok = 1;
    }
#endif
}

/* Makes every running thread of the process pass a full memory barrier (the heavy side of the
   asymmetric handshake). Only called when membarrier registration succeeded. */
PK_POOL__FN void pk_pool__heavy_barrier(void)
{
#if defined(__linux__) && defined(SYS_membarrier)
    if (syscall(SYS_membarrier, PK_POOL__MB_PRIVATE_EXPEDITED, 0) == 0) return;
#endif
    PK_ASSERT(0 && "membarrier failed after registration");
}

PK_POOL__FN void pk_pool__cpu_relax(unsigned *spins)
{
    if (++*spins > 64) sched_yield();
}

/* The pool struct and the thread caches have fields read on every call: each gets cache lines of
   its own (start and end rounded to 64 bytes), so no neighbouring allocation's writes share them.
   The pointer PK_MALLOC returned is kept just below the aligned block. */
PK_POOL__FN void *pk_pool__alloc64(size_t n)
{
    unsigned char *m = (unsigned char *)PK_MALLOC(((n + 63) & ~(size_t)63) + 64 + sizeof(void *));
    unsigned char *a;
    if (!m) return NULL;
    a = (unsigned char *)(((uintptr_t)m + sizeof(void *) + 63) & ~(uintptr_t)63);
    memcpy(a - sizeof(void *), &m, sizeof m);
    return a;
}
PK_POOL__FN void pk_pool__free64(void *a)
{
    void *m;
    if (!a) return;
    memcpy(&m, (unsigned char *)a - sizeof(void *), sizeof m);
    PK_FREE(m);
}

/* ---- the address table ---- */

static inline uint64_t pk_pool__hash(uint64_t k) { return k * 0x9E3779B97F4A7C15ull; }

/* Under the seqlock (or mu): finds the rec whose chunk contains a; *off = a - base. */
static inline pk_pool__rec *pk_pool__tab_find(pk_pool *p, uintptr_t a, uintptr_t *off)
{
    pk_pool__tab *t = __atomic_load_n(&p->tab, __ATOMIC_ACQUIRE);
    uint64_t key = ((uint64_t)a >> p->page_shift) + 1;
    size_t mask = t->mask, i = (size_t)(pk_pool__hash(key) >> 32) & mask, probes = 0;
    for (;;) {
        uint64_t k = __atomic_load_n(&t->e[i].key, __ATOMIC_ACQUIRE); /* pairs with tab_put's release */
        if (k == 0 || probes++ > mask) return NULL;
        if (k == key) {
            /* Inside a write section (the caller re-checks the seqlock) a shifting deletion can
               pair a key with a slot's old r, possibly never set: skip NULL. Records are never
               freed before destroy, so any other r is safe to read. */
            pk_pool__rec *r = __atomic_load_n(&t->e[i].r, __ATOMIC_ACQUIRE);
            uintptr_t o = r ? a - PK_POOL__LD(r->base) : 0;
            if (r && o < PK_POOL__LD(r->bytes)) {
                *off = o;
                return r;
            }
        }
        i = (i + 1) & mask;
    }
}

/* mu held, inside a seqlock write section. */
PK_POOL__FN void pk_pool__tab_put(pk_pool__tab *t, uint64_t key, pk_pool__rec *r)
{
    size_t i = (size_t)(pk_pool__hash(key) >> 32) & t->mask;
    while (t->e[i].key) i = (i + 1) & t->mask;
    __atomic_store_n(&t->e[i].r, r, __ATOMIC_RELEASE);
    __atomic_store_n(&t->e[i].key, key, __ATOMIC_RELEASE); /* a reader that sees the key sees r */
    t->n++;
}

/* mu held, inside a seqlock write section: removes (key, r), backward-shift deletion. */
PK_POOL__FN void pk_pool__tab_del(pk_pool__tab *t, uint64_t key, pk_pool__rec *r)
{
    size_t mask = t->mask, i = (size_t)(pk_pool__hash(key) >> 32) & mask, j;
    while (t->e[i].key && !(t->e[i].key == key && t->e[i].r == r)) i = (i + 1) & mask;
    if (!t->e[i].key) return;
    j = i;
    for (;;) {
        size_t h;
        j = (j + 1) & mask;
        if (!t->e[j].key) break;
        h = (size_t)(pk_pool__hash(t->e[j].key) >> 32) & mask;
        /* can e[j] move to the hole at i? only if its home h is not cyclically in (i, j] */
        if ((j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j))) {
            __atomic_store_n(&t->e[i].r, t->e[j].r, __ATOMIC_RELEASE);
            PK_POOL__ST(t->e[i].key, t->e[j].key);
            i = j;
        }
    }
    PK_POOL__ST(t->e[i].key, (uint64_t)0);
    t->n--;
}

PK_POOL__FN pk_pool__tab *pk_pool__tab_new(size_t cap)
{
    pk_pool__tab *t = (pk_pool__tab *)PK_MALLOC(sizeof(pk_pool__tab) + cap * sizeof(pk_pool__tabent));
    if (!t) return NULL;
    t->mask = cap - 1;
    t->n = 0;
    t->retired = NULL;
    t->e = (pk_pool__tabent *)(void *)(t + 1);
    memset(t->e, 0, cap * sizeof(pk_pool__tabent));
    return t;
}

PK_POOL__FN void pk_pool__seq_begin(pk_pool *p)
{
    __atomic_store_n(&p->seq, p->seq + 1, __ATOMIC_SEQ_CST);
    PK_POOL__FENCE_REL();
}
PK_POOL__FN void pk_pool__seq_end(pk_pool *p) { __atomic_store_n(&p->seq, p->seq + 1, __ATOMIC_RELEASE); }

/* mu held: makes room for `more` entries at load <= 1/2. A grown table is published; the old one
   is kept (readers may hold it) until destroy: tables only double, so that costs < 1x. */
PK_POOL__FN int pk_pool__tab_reserve(pk_pool *p, size_t more)
{
    pk_pool__tab *t = p->tab, *nt;
    size_t cap = t->mask + 1, i;
    if ((t->n + more) * 2 <= cap) return 0;
    while ((t->n + more) * 2 > cap) cap *= 2;
    nt = pk_pool__tab_new(cap);
    if (!nt) return -ENOMEM;
    for (i = 0; i <= t->mask; i++)
        if (t->e[i].key) pk_pool__tab_put(nt, t->e[i].key, t->e[i].r);
    nt->retired = t;
    pk_pool__seq_begin(p);
    __atomic_store_n(&p->tab, nt, __ATOMIC_RELEASE);
    pk_pool__seq_end(p);
    return 0;
}

static inline size_t pk_pool__div(const pk_pool *p, uintptr_t off)
{
    if (p->stride_shift >= 0) return (size_t)(off >> p->stride_shift);
#if defined(__SIZEOF_INT128__)
    if (p->div_m && (uint64_t)off <= 0xFFFFFFFFu) /* Lemire-Kaser-Kurz: exact for 32-bit numerators */
        return (size_t)(((pk_pool__u128)(uint64_t)off * p->div_m) >> 64);
#endif
    return (size_t)(off / p->stride);
}

/* Exact division test in one multiply and one rotate (Granlund-Montgomery / Lemire): with
   stride = odd * 2^k, rotr(off * odd^-1, k) equals off / stride when stride divides off, and is
   larger than UINT64_MAX / stride otherwise. So "result < slots in the chunk" checks at once that
   off is inside the chunk and at the start of a slot. */
static inline uint64_t pk_pool__exact(uint64_t inv, unsigned rot, uintptr_t off)
{
    uint64_t x = (uint64_t)off * inv;
    return (x >> rot) | (x << ((64u - rot) & 63u));
}

/* Slot index of offset off into a chunk; 0 when off is not the start of a slot. */
static inline int pk_pool__slot_of(const pk_pool *p, uintptr_t off, size_t *idx)
{
    if (p->stride_shift >= 0) {
        *idx = (size_t)(off >> p->stride_shift);
        return (off & (p->stride - 1)) == 0;
    }
    *idx = pk_pool__div(p, off);
    return *idx * p->stride == off;
}

/* Lock-free: the state byte of the slot that starts exactly at a, or NULL; *state is its value,
   read inside the seqlock section (so a rec reused for another chunk meanwhile is noticed). Reads
   only pool-owned memory. With c: records the chunk as c's release hint. */
PK_POOL__FN unsigned char *pk_pool__lookup(pk_pool *p, uintptr_t a, pk_pool__cache *c, unsigned char *state)
{
    unsigned spins = 0;
    for (;;) {
        uint64_t s = __atomic_load_n(&p->seq, __ATOMIC_ACQUIRE);
        pk_pool__rec *r;
        uintptr_t off = 0, base = 0;
        size_t idx = 0, bytes = 0;
        unsigned char *st = NULL, v = 0;
        if (PK_POOL__UNLIKELY(s & 1)) {
            pk_pool__cpu_relax(&spins);
            continue;
        }
        r = pk_pool__tab_find(p, a, &off);
        if (r) {
            base = PK_POOL__LD(r->base);
            bytes = PK_POOL__LD(r->bytes);
            if (pk_pool__slot_of(p, off, &idx)) {
                st = r->st + PK_POOL__SIDX(idx);
                v = PK_POOL__LD(*st);
            }
        }
        PK_POOL__FENCE_ACQ();
        if (PK_POOL__UNLIKELY(PK_POOL__LD(p->seq) != s)) continue;
        if (r && c && !c->guard && !p->reset) { /* the fast release takes neither: see there */
            c->hbase = base;
            c->hslots = bytes / p->stride;
            c->hst = r->st;
            c->hseq = s;
        }
        *state = v;
        return st;
    }
}

/* mu held: rec and slot of a pooled object. */
PK_POOL__FN pk_pool__rec *pk_pool__locate(pk_pool *p, void *obj, size_t *idx)
{
    uintptr_t off = 0;
    pk_pool__rec *r = pk_pool__tab_find(p, (uintptr_t)obj, &off);
    PK_ASSERT(r);
    *idx = pk_pool__div(p, off);
    return r;
}

/* ---- chunks and slots (mu held unless said) ---- */

PK_POOL__FN void pk_pool__raw_link(pk_pool *p, pk_pool__rec *r)
{
    r->rprev = NULL;
    r->rnext = p->rawlist;
    if (p->rawlist) p->rawlist->rprev = r;
    p->rawlist = r;
    r->in_rawlist = 1;
}
PK_POOL__FN void pk_pool__raw_unlink(pk_pool *p, pk_pool__rec *r)
{
    if (r->rprev) r->rprev->rnext = r->rnext;
    else p->rawlist = r->rnext;
    if (r->rnext) r->rnext->rprev = r->rprev;
    r->rnext = r->rprev = NULL;
    r->in_rawlist = 0;
}

static inline size_t pk_pool__avail(const pk_pool__rec *r) { return r->nslots - r->nfresh + r->nraw; }

/* Gives the chunk of an empty rec back to the allocator; the rec goes to the dead list. */
PK_POOL__FN void pk_pool__chunk_free(pk_pool *p, pk_pool__rec *r)
{
    uintptr_t base = r->base;
    size_t bytes = r->bytes;
    uint64_t k0 = ((uint64_t)base >> p->page_shift) + 1, k1 = ((uint64_t)(base + bytes - 1) >> p->page_shift) + 1;
    PK_ASSERT(r->nlive == 0);
    if (r->in_rawlist) pk_pool__raw_unlink(p, r);
    pk_pool__seq_begin(p);
    pk_pool__tab_del(p->tab, k0, r);
    if (k1 != k0) pk_pool__tab_del(p->tab, k1, r);
    PK_POOL__ST(r->bytes, (size_t)0);
    PK_POOL__ST(r->base, (uintptr_t)0);
    pk_pool__seq_end(p);
    PK_FREE(r->mem);
    r->mem = NULL;
    p->nslots -= r->nslots;
    r->nslots = r->nfresh = r->nraw = 0;
    p->nempty--;
    r->dnext = p->dead;
    p->dead = r;
}

/* Slot back to RAW (after fini or a failed init). */
PK_POOL__FN void pk_pool__slot_to_raw(pk_pool *p, void *obj)
{
    size_t idx;
    pk_pool__rec *r = pk_pool__locate(p, obj, &idx);
    PK_POOL__ST(r->st[PK_POOL__SIDX(idx)], (unsigned char)PK_POOL__RAW);
    r->raw[r->nraw++] = (uint32_t)idx;
    if (!r->in_rawlist) pk_pool__raw_link(p, r);
    if (--r->nlive == 0) {
        p->nempty++;
        if (p->nempty > 1) pk_pool__chunk_free(p, r); /* keep one empty chunk as a spare */
    }
}

/* Takes a raw slot (state BUSY) or returns 0. */
PK_POOL__FN int pk_pool__take_raw(pk_pool *p, pk_pool__pair *out)
{
    pk_pool__rec *r = p->rawlist;
    size_t idx;
    if (!r) return 0;
    idx = r->nraw ? r->raw[--r->nraw] : r->nfresh++;
    if (r->nlive++ == 0) p->nempty--;
    if (pk_pool__avail(r) == 0) pk_pool__raw_unlink(p, r);
    out->obj = (void *)(r->base + idx * p->stride);
    out->st = r->st + PK_POOL__SIDX(idx);
    PK_POOL__ST(*out->st, (unsigned char)PK_POOL__BUSY);
    return 1;
}

PK_POOL__FN pk_pool__rec *pk_pool__rec_new(pk_pool *p)
{
    size_t stbytes = ((p->per_chunk + PK_POOL__GROUP - 1) / PK_POOL__GROUP) * 64;
    size_t hdr = (sizeof(pk_pool__rec) + 63) & ~(size_t)63;
    pk_pool__rec *r = (pk_pool__rec *)PK_MALLOC(hdr + stbytes + p->per_chunk * sizeof(uint32_t) + 64);
    if (!r) return NULL;
    memset(r, 0, sizeof *r);
    /* states on their own 64-byte lines (PK_MALLOC gives 16-byte alignment; round up) */
    r->st = (unsigned char *)(((uintptr_t)r + hdr + 63) & ~(uintptr_t)63);
    memset(r->st, 0, stbytes);
    r->raw = (uint32_t *)(void *)(r->st + stbytes);
    return r;
}

/* Chunks start on a cache line (or the object alignment if larger): objects whose stride is a
   multiple of 64 then never share a line, so two threads' objects never false-share. */
static inline size_t pk_pool__chunk_align(const pk_pool *p) { return p->align < 64 ? 64 : p->align; }

/* Adds a chunk. May drop and retake mu (the allocation is done outside it). 0, -EAGAIN when max is
   reached, -ENOMEM. */
PK_POOL__FN int pk_pool__chunk_add(pk_pool *p)
{
    size_t n = p->per_chunk, bytes;
    pk_pool__rec *r, *fresh = NULL;
    void *mem;
    if (p->max) {
        if (p->nslots >= p->max) return -EAGAIN;
        if (n > p->max - p->nslots) n = p->max - p->nslots;
    }
    p->nslots += n; /* reserve, so that a concurrent add respects max */
    p->adding++;
    r = p->dead;
    if (r) p->dead = r->dnext;
    bytes = n * p->stride;
    pthread_mutex_unlock(&p->mu);
    mem = PK_MALLOC(bytes + pk_pool__chunk_align(p) - 1);
    if (!r && mem) fresh = r = pk_pool__rec_new(p);
    pthread_mutex_lock(&p->mu);
    p->adding--;
    if (fresh) { /* every rec ever made is on `all`, for destroy */
        fresh->anext = p->all;
        p->all = fresh;
    }
    if (mem && r && p->depcap < p->nslots) {
        size_t cap = p->depcap ? p->depcap : 64;
        pk_pool__pair *d;
        while (cap < p->nslots) cap *= 2;
        d = (pk_pool__pair *)PK_REALLOC(p->dep, cap * sizeof(pk_pool__pair));
        if (d) {
            p->dep = d;
            p->depcap = cap;
        }
    }
    if (!mem || !r || p->depcap < p->nslots || pk_pool__tab_reserve(p, 2) != 0) {
        if (mem) PK_FREE(mem);
        if (r) {
            r->dnext = p->dead;
            p->dead = r;
        }
        p->nslots -= n;
        return -ENOMEM;
    }
    r->mem = mem;
    r->nslots = n;
    r->nfresh = r->nraw = r->nlive = 0;
    memset(r->st, 0, ((p->per_chunk + PK_POOL__GROUP - 1) / PK_POOL__GROUP) * 64);
    {
        uintptr_t base = ((uintptr_t)mem + pk_pool__chunk_align(p) - 1) & ~(uintptr_t)(pk_pool__chunk_align(p) - 1);
        uint64_t k0 = ((uint64_t)base >> p->page_shift) + 1;
        uint64_t k1 = ((uint64_t)(base + bytes - 1) >> p->page_shift) + 1;
        pk_pool__seq_begin(p);
        PK_POOL__ST(r->base, base);
        PK_POOL__ST(r->bytes, bytes);
        pk_pool__tab_put(p->tab, k0, r);
        if (k1 != k0) pk_pool__tab_put(p->tab, k1, r);
        pk_pool__seq_end(p);
    }
    pk_pool__raw_link(p, r);
    p->nempty++;
    return 0;
}

/* ---- thread caches ---- */

PK_POOL__FN void pk_pool__unref(pk_pool *p)
{
    if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        pthread_mutex_destroy(&p->mu);
        pk_pool__free64(p);
    }
}

/* Calling thread's cache for p, made on first use; NULL when caching is off or out of memory. */
PK_POOL__FN PK_POOL__NOINLINE pk_pool__cache *pk_pool__cache_get(pk_pool *p)
{
    pk_pool__cache *c, **pc;
    pk_pool__tlent *e = &pk_pool__tl[p->gen & (PK_POOL__TLWAYS - 1)];
    if (!p->cache_cap || !pk_pool__key_ok) return NULL;
    for (pc = &pk_pool__tl_list; (c = *pc) != NULL;) {
        if (c->gen == p->gen) {
            e->gen = c->gen;
            e->c = c;
            return c;
        }
        if (__atomic_load_n(&c->pool->dead_, __ATOMIC_ACQUIRE)) { /* its pool is gone: free it */
            size_t w;
            *pc = c->tnext;
            for (w = 0; w < PK_POOL__TLWAYS; w++)
                if (pk_pool__tl[w].c == c) pk_pool__tl[w].gen = 0;
            if (pk_pool__tl1.c == c) pk_pool__memo_clear();
            pk_pool__unref(c->pool);
            pk_pool__free64(c);
            continue;
        }
        pc = &c->tnext;
    }
    if (!pk_pool__tl_keyed) {
        if (pthread_setspecific(pk_pool__key, (void *)&pk_pool__tl_keyed) != 0) return NULL;
        pk_pool__tl_keyed = 1;
    }
    c = (pk_pool__cache *)pk_pool__alloc64(sizeof(pk_pool__cache) + p->cache_cap * sizeof(pk_pool__pair));
    if (!c) return NULL;
    memset(c, 0, sizeof(pk_pool__cache) + p->cache_cap * sizeof(pk_pool__pair)); /* empty slots are NULL */
    c->objs = (pk_pool__pair *)(void *)(c + 1);
    c->guard = p->max != 0;
    c->ex_inv = p->ex_inv;
    c->ex_rot = p->ex_rot;
    c->cap = p->cache_cap;
    c->mask = c->cap - 1;
    c->gen = p->gen;
    c->pool = p;
    __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&p->mu);
    c->pnext = p->caches;
    if (p->caches) p->caches->pprev = c;
    p->caches = c;
    pthread_mutex_unlock(&p->mu);
    c->tnext = pk_pool__tl_list;
    pk_pool__tl_list = c;
    e->gen = c->gen;
    e->c = c;
    return c;
}

/* Slow paths: the calling thread's cache for p via the 8-way table (or made); an unguarded one
   becomes the fast paths' memo. */
static inline pk_pool__cache *pk_pool__cache_find(pk_pool *p)
{
    pk_pool__tlent *e = &pk_pool__tl[p->gen & (PK_POOL__TLWAYS - 1)];
    pk_pool__cache *c = e->gen == p->gen ? e->c : pk_pool__cache_get(p);
    if (c && !c->guard) {
        pk_pool__tl1.p = p;
        pk_pool__tl1.c = c;
    }
    return c;
}

/* Light side of the handshake: the owner announces itself. Returns 0 when a thief is at work
   (then the owner must take the locked path). */
static inline int pk_pool__enter(const pk_pool *p, pk_pool__cache *c)
{
    if (PK_POOL__UNLIKELY(p->fence_mode)) {
        __atomic_store_n(&c->busy, 1u, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&c->steal, __ATOMIC_SEQ_CST)) {
            __atomic_store_n(&c->busy, 0u, __ATOMIC_RELEASE);
            return 0;
        }
        return 1;
    }
    PK_POOL__ST(c->busy, 1u);
    __atomic_signal_fence(__ATOMIC_SEQ_CST); /* membarrier from a thief orders these for us */
    if (PK_POOL__UNLIKELY(__atomic_load_n(&c->steal, __ATOMIC_ACQUIRE))) {
        __atomic_store_n(&c->busy, 0u, __ATOMIC_RELEASE);
        return 0;
    }
    return 1;
}
static inline void pk_pool__leave(pk_pool__cache *c) { __atomic_store_n(&c->busy, 0u, __ATOMIC_RELEASE); }

/* Ring helpers for the locked paths (mu held, or the owner inside enter/leave). */
static inline size_t pk_pool__c_count(const pk_pool__cache *c) { return PK_POOL__LD(c->tail) - PK_POOL__LD(c->head); }
static inline pk_pool__pair pk_pool__c_pop(pk_pool__cache *c)
{
    pk_pool__pair x = c->objs[c->head & c->mask];
    c->objs[c->head & c->mask].obj = NULL;
    PK_POOL__ST(c->head, c->head + 1);
    PK_POOL__ST(c->moved, c->moved + 1);
    return x;
}
static inline void pk_pool__c_push(pk_pool__cache *c, pk_pool__pair x)
{
    c->objs[c->tail & c->mask] = x;
    PK_POOL__ST(c->tail, c->tail + 1);
}
/* mu held: the k oldest cached objects go to the depot. */
PK_POOL__FN void pk_pool__c_to_depot(pk_pool *p, pk_pool__cache *c, size_t k)
{
    while (k--) p->dep[p->ndep++] = pk_pool__c_pop(c);
}

/* mu held: moves every object out of every other thread's cache into the depot. Returns how many. */
PK_POOL__FN size_t pk_pool__steal(pk_pool *p, pk_pool__cache *self)
{
    pk_pool__cache *c;
    size_t moved = 0;
    int any = 0;
    for (c = p->caches; c; c = c->pnext)
        if (c != self && pk_pool__c_count(c)) {
            __atomic_store_n(&c->steal, 1u, __ATOMIC_SEQ_CST);
            any = 1;
        }
    if (!any) return 0;
    if (!p->fence_mode) pk_pool__heavy_barrier();
    for (c = p->caches; c; c = c->pnext) {
        unsigned spins = 0;
        size_t cn;
        if (c == self || !PK_POOL__LD(c->steal)) continue;
        while (__atomic_load_n(&c->busy, __ATOMIC_SEQ_CST)) pk_pool__cpu_relax(&spins);
        cn = pk_pool__c_count(c);
        pk_pool__c_to_depot(p, c, cn);
        moved += cn;
        __atomic_store_n(&c->steal, 0u, __ATOMIC_RELEASE);
    }
    return moved;
}

/* mu held: frees depot objects above max_idle. Drops mu while fini runs. */
PK_POOL__FN void pk_pool__trim(pk_pool *p)
{
    pk_pool__pair v[64];
    while (p->max_idle && p->ndep > p->max_idle) {
        size_t k = p->ndep - p->max_idle, i;
        if (k > 64) k = 64;
        for (i = 0; i < k; i++) {
            v[i] = p->dep[--p->ndep];
            PK_POOL__ST(*v[i].st, (unsigned char)PK_POOL__BUSY);
        }
        p->nfini += k;
        if (p->fini) {
            pk_pool__tl_fini++;
            pthread_mutex_unlock(&p->mu);
            for (i = 0; i < k; i++) p->fini(v[i].obj, p->user);
            pthread_mutex_lock(&p->mu);
            pk_pool__tl_fini--;
        }
        for (i = 0; i < k; i++) pk_pool__slot_to_raw(p, v[i].obj);
        p->nfini -= k;
        p->freed += k;
    }
}

/* mu held: cache (if any) -> depot. */
PK_POOL__FN void pk_pool__cache_drain(pk_pool *p, pk_pool__cache *c)
{
    pk_pool__c_to_depot(p, c, pk_pool__c_count(c));
}

PK_POOL__FN void pk_pool__cache_unregister(pk_pool *p, pk_pool__cache *c)
{
    if (c->pprev) c->pprev->pnext = c->pnext;
    else p->caches = c->pnext;
    if (c->pnext) c->pnext->pprev = c->pprev;
    c->pnext = c->pprev = NULL;
    p->acq += PK_POOL__LD(c->head) - PK_POOL__LD(c->moved);
}

/* pthread key destructor: the exiting thread's caches go back to their pools. */
PK_POOL__FN void pk_pool__thread_exit(void *arg)
{
    pk_pool__cache *c = pk_pool__tl_list, *next;
    (void)arg;
    pk_pool__tl_list = NULL;
    pk_pool__tl_keyed = 0;
    memset(pk_pool__tl, 0, sizeof pk_pool__tl);
    pk_pool__memo_clear();
    for (; c; c = next) {
        pk_pool *p = c->pool;
        next = c->tnext;
        pthread_mutex_lock(&p->mu);
        if (!p->dead_) {
            pk_pool__cache_drain(p, c);
            pk_pool__cache_unregister(p, c);
            pk_pool__trim(p);
        }
        pthread_mutex_unlock(&p->mu);
        pk_pool__free64(c);
        pk_pool__unref(p);
    }
}

/* mu held: objects lent right now = made - freed - idle (exact when no call is running; the ring
   indices of other threads are read as they are). */
PK_POOL__FN size_t pk_pool__in_use(pk_pool *p)
{
    size_t idle = p->ndep + p->nfini, live = (size_t)(p->created - p->freed);
    pk_pool__cache *c;
    for (c = p->caches; c; c = c->pnext) idle += pk_pool__c_count(c);
    return live > idle ? live - idle : 0;
}

/* ---- object pool: API ---- */

PK_POOL_DEF int pk_pool_create(pk_pool **out, const pk_pool_config *cfg)
{
    pk_pool *p;
    size_t align, stride, i, chunk;
    int rc = 0;
    if (!out) return -EINVAL;
    *out = NULL;
    if (!cfg || cfg->size == 0) return -EINVAL;
    if (cfg->align) {
        align = cfg->align;
        if (align & (align - 1)) return -EINVAL;
        if (align > (size_t)1 << 20) return -EINVAL;
    } else {
        /* alignof(max_align_t) without needing C11: the strictest of the usual suspects */
        union pk_pool__maxalign { long double ld; long long ll; void *vp; double d; void (*fp)(void); };
        struct pk_pool__al { char c; union pk_pool__maxalign u; };
        align = offsetof(struct pk_pool__al, u);
    }
    if (cfg->size > ((size_t)-1 >> 2)) return -EINVAL;
    if (cfg->max && cfg->prealloc > cfg->max) return -EINVAL;
    stride = (cfg->size + align - 1) & ~(align - 1);
    if (cfg->prealloc > ((size_t)-1 >> 1) / stride) return -EINVAL; /* prealloc x size overflows */
    pthread_once(&pk_pool__once, pk_pool__init_once);
    p = (pk_pool *)pk_pool__alloc64(sizeof *p);
    if (!p) return -ENOMEM;
    memset(p, 0, sizeof *p);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        pk_pool__free64(p);
        return -ENOMEM;
    }
    p->gen = __atomic_add_fetch(&pk_pool__gens, 1, __ATOMIC_RELAXED);
    p->fence_mode = !pk_pool__membarrier_ok;
    p->size = cfg->size;
    p->align = align;
    p->stride = stride;
    p->stride_shift = (stride & (stride - 1)) ? -1 : __builtin_ctzll((unsigned long long)stride);
    p->div_m = (stride > 1 && stride <= 0xFFFFFFFFu) ? UINT64_MAX / stride + 1 : 0;
    p->ex_rot = (unsigned)__builtin_ctzll((unsigned long long)stride);
    {
        uint64_t odd = (uint64_t)stride >> p->ex_rot, inv = odd;
        for (i = 0; i < 5; i++) inv *= 2 - odd * inv; /* Newton: each step doubles the correct bits */
        p->ex_inv = inv;
    }
    p->max = cfg->max;
    p->max_idle = cfg->max_idle;
    p->init = cfg->init;
    p->reset = cfg->reset;
    p->fini = cfg->fini;
    p->user = cfg->user;
    p->refs = 1;
    chunk = PK_POOL_CHUNK_BYTES / stride;
    if (chunk > 65536) chunk = 65536;
    if (chunk >= PK_POOL__GROUP) chunk -= chunk % PK_POOL__GROUP;
    if (chunk < 1) chunk = 1;
    if (p->max && chunk > p->max) chunk = p->max;
    p->per_chunk = chunk;
    p->page_shift = 0;
    while (((size_t)1 << p->page_shift) < chunk * stride) p->page_shift++;
    {
        /* at most ~256 KiB of idle objects per thread: a burst of 32 page-sized buffers must fit,
           or every burst goes to the depot under the mutex */
        size_t cap = PK_POOL_CACHE, byte_cap = ((size_t)256 << 10) / stride;
        if (cap > byte_cap) cap = byte_cap < 4 ? 4 : byte_cap;
        if (cap > PK_POOL_CACHE) cap = PK_POOL_CACHE; /* never above it: batches are sized by it */
        if (p->max && cap > p->max / 8) cap = p->max / 8;
        while (cap & (cap - 1)) cap &= cap - 1; /* a power of two */
        p->cache_cap = cap < 4 ? 0 : cap;
    }
    p->tab = pk_pool__tab_new(16);
    if (!p->tab) {
        pthread_mutex_destroy(&p->mu);
        pk_pool__free64(p);
        return -ENOMEM;
    }
    /* prealloc: chunks, then init each object (no other thread can see p yet) */
    pthread_mutex_lock(&p->mu);
    while (p->nslots < cfg->prealloc && rc == 0) rc = pk_pool__chunk_add(p);
    for (i = 0; rc == 0 && i < cfg->prealloc; i++) {
        pk_pool__pair e;
        if (!pk_pool__take_raw(p, &e)) {
            rc = -ENOMEM;
            break;
        }
        if (p->init && p->init(e.obj, p->user) != 0) {
            pk_pool__slot_to_raw(p, e.obj);
            rc = -ECANCELED;
            break;
        }
        PK_POOL__ST(*e.st, (unsigned char)PK_POOL__IDLE);
        p->dep[p->ndep++] = e;
        p->created++;
    }
    pthread_mutex_unlock(&p->mu);
    if (rc != 0) {
        pk_pool_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

PK_POOL_DEF void pk_pool_destroy(pk_pool *p)
{
    pk_pool__cache *c, **pc;
    pk_pool__rec *r, *rn;
    pk_pool__tab *t, *tn;
    size_t w;
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    /* A thread exiting now may be finalising trimmed objects (its cache's thread_exit trims, with
       mu dropped while fini runs): let it finish before the memory goes. */
    while (p->nfini) {
        pthread_mutex_unlock(&p->mu);
        sched_yield();
        pthread_mutex_lock(&p->mu);
    }
    while ((c = p->caches) != NULL) {
        pk_pool__cache_unregister(p, c);
        PK_POOL__ST(c->head, c->tail); /* its objects are fini'd below with all the others */
        memset(c->objs, 0, c->cap * sizeof(pk_pool__pair));
    }
    __atomic_store_n(&p->dead_, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&p->mu);
    /* From here no other thread touches p's contents: exiting threads see dead_ and free their cache. */
    for (r = p->all; r; r = r->anext) {
        size_t i;
        if (!r->mem) continue;
        if (p->fini)
            for (i = 0; i < r->nfresh; i++) {
                unsigned char s = PK_POOL__LD(r->st[PK_POOL__SIDX(i)]);
                if (s == PK_POOL__IDLE || s == PK_POOL__LENT) p->fini((void *)(r->base + i * p->stride), p->user);
            }
        PK_FREE(r->mem);
    }
    for (r = p->all; r; r = rn) {
        rn = r->anext;
        PK_FREE(r);
    }
    for (t = p->tab; t; t = tn) {
        tn = t->retired;
        PK_FREE(t);
    }
    PK_FREE(p->dep);
    /* the calling thread's own cache for p can go now */
    for (pc = &pk_pool__tl_list; (c = *pc) != NULL; pc = &c->tnext)
        if (c->pool == p) {
            *pc = c->tnext;
            pk_pool__free64(c);
            __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL); /* the pool's own ref still holds it */
            break;
        }
    for (w = 0; w < PK_POOL__TLWAYS; w++)
        if (pk_pool__tl[w].gen == p->gen) pk_pool__tl[w].gen = 0;
    if (pk_pool__tl1.p == p) pk_pool__memo_clear();
    pk_pool__unref(p);
}

/* Takes mu: an object for the caller (and a batch for its cache) from the cache, the depot, new
   slots, or other threads' caches. Returns the caller's object or NULL. */
PK_POOL__FN PK_POOL__NOINLINE void *pk_pool__acquire_slow(pk_pool *p, pk_pool__cache *c)
{
    pk_pool__pair got[PK_POOL__BATCH_MAX];
    void *obj = NULL;
    int tries = 0;
    uint64_t fini_t0 = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        size_t want, n = 0, ok = 0, i;
        if (c && pk_pool__c_count(c)) { /* a thief was at work when we tried the fast path */
            pk_pool__pair e = pk_pool__c_pop(c);
            obj = e.obj;
            PK_POOL__ST(*e.st, (unsigned char)PK_POOL__LENT);
            break;
        }
        if (p->ndep) {
            pk_pool__pair e = p->dep[--p->ndep];
            obj = e.obj;
            PK_POOL__ST(*e.st, (unsigned char)PK_POOL__LENT);
            /* the caller's object counts toward the batch: cap/2 objects in all, as a batch of fresh
               slots is, so batches that went through the depot keep to one state line (with 32
               per line, a 33rd object would share another thread's line and bounce it) */
            if (c)
                while (p->ndep && pk_pool__c_count(c) + 1 < c->cap / 2) pk_pool__c_push(c, p->dep[--p->ndep]);
            break;
        }
        want = (c && !p->init) ? c->cap / 2 : 1;
        if (want < 1) want = 1;
        while (n < want && pk_pool__take_raw(p, &got[n])) n++;
        if (n == 0) {
            int rc = pk_pool__chunk_add(p);
            if (rc == 0) continue;
            if (rc == -EAGAIN && pk_pool__steal(p, c)) continue;
            /* Objects in flight show up in a moment: a chunk another thread is adding (its slots are
               reserved against max), objects a trim is finalising (their slots turn free when fini
               returns), a release between its state flip and the ring or the depot (perhaps
               waiting for this very mutex). Let them land before answering NULL. */
            if (rc == -EAGAIN && (p->adding || pk_pool__wait_fini(p, &fini_t0) || tries++ < 4)) {
                pthread_mutex_unlock(&p->mu);
                sched_yield();
                pthread_mutex_lock(&p->mu);
                continue;
            }
            if (rc == -EAGAIN) p->exhausted++;
            break;
        }
        if (p->init) {
            void *bad[PK_POOL__BATCH_MAX];
            size_t nbad = 0;
            pthread_mutex_unlock(&p->mu);
            for (i = 0; i < n; i++) {
                if (p->init(got[i].obj, p->user) == 0) got[ok++] = got[i];
                else bad[nbad++] = got[i].obj;
            }
            pthread_mutex_lock(&p->mu);
            for (i = 0; i < nbad; i++) pk_pool__slot_to_raw(p, bad[i]);
        } else {
            ok = n;
        }
        p->created += ok;
        if (ok == 0) break; /* init failed */
        obj = got[0].obj;
        PK_POOL__ST(*got[0].st, (unsigned char)PK_POOL__LENT);
        for (i = 1; i < ok; i++) {
            PK_POOL__ST(*got[i].st, (unsigned char)PK_POOL__IDLE);
            if (c && pk_pool__c_count(c) < c->cap) pk_pool__c_push(c, got[i]);
            else p->dep[p->ndep++] = got[i];
        }
        break;
    }
    if (obj) {
        size_t u;
        p->acq++;
        u = pk_pool__in_use(p);
        if (u > (size_t)(p->created - p->freed)) u = (size_t)(p->created - p->freed); /* racy sums */
        if (u > p->peak) p->peak = u;
    }
    pthread_mutex_unlock(&p->mu);
    return obj;
}

/* Cache miss, guarded cache (pool with max) or no cache: the ring under the handshake, else mu. */
PK_POOL__FN PK_POOL__NOINLINE void *pk_pool__acquire_miss(pk_pool *p)
{
    pk_pool__cache *c;
    if (!p) return NULL;
    c = pk_pool__cache_find(p);
    if (c && (!c->guard || pk_pool__enter(p, c))) {
        size_t h = c->head;
        if (h != PK_POOL__LD(c->tail)) {
            pk_pool__pair x = c->objs[h & c->mask];
            c->objs[h & c->mask].obj = NULL;
            PK_POOL__ST(c->head, h + 1);
            if (c->guard) pk_pool__leave(c);
            PK_POOL__ST(*x.st, (unsigned char)PK_POOL__LENT);
            return x.obj;
        }
        if (c->guard) pk_pool__leave(c);
    }
    return pk_pool__acquire_slow(p, c);
}

/* HOT: a pop from the calling thread's ring; no lock, no atomic read-modify-write, no fence. */
PK_POOL_DEF void *pk_pool_acquire(pk_pool *p)
{
    if (PK_POOL__LIKELY(pk_pool__tl1.p == p)) { /* a NULL p meets nocache: slow path */
        pk_pool__cache *c = pk_pool__tl1.c;
        size_t h = c->head;
        pk_pool__pair *slot = &c->objs[h & c->mask];
        pk_pool__pair x = *slot;
        if (PK_POOL__LIKELY(x.obj != NULL)) { /* a full slot at head: the ring is not empty */
            slot->obj = NULL; /* empty slots hold NULL: neither fast path reads the other's index */
            PK_POOL__ST(c->head, h + 1);
            PK_POOL__ST(*x.st, (unsigned char)PK_POOL__LENT);
            return x.obj;
        }
    }
    return pk_pool__acquire_miss(p);
}

/* Every release the fast path did not finish: full lookup (and a new hint), the error cases, reset,
   guarded caches, a full ring. */
PK_POOL__FN PK_POOL__NOINLINE int pk_pool__release_slow(pk_pool *p, void *obj)
{
    pk_pool__cache *c;
    pk_pool__pair x;
    unsigned char v = 0;
    if (!p || !obj) return -EINVAL;
    c = pk_pool__cache_find(p);
    x.obj = obj;
#ifdef PK_POOL_STRICT_RELEASE
    /* lookup and flip under mu: freeing a chunk and reusing its record take mu, so the state byte
       found is still this object's when it is flipped (without mu, a racing release of the same
       object, a trim and a new chunk could retarget it: both releases said 0) */
    pthread_mutex_lock(&p->mu);
    x.st = pk_pool__lookup(p, (uintptr_t)obj, c, &v);
    if (!x.st || v != PK_POOL__LENT ||
        !__atomic_compare_exchange_n(x.st, &v, (unsigned char)PK_POOL__IDLE, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        pthread_mutex_unlock(&p->mu);
        return -EINVAL;
    }
    pthread_mutex_unlock(&p->mu);
#else
    x.st = pk_pool__lookup(p, (uintptr_t)obj, c, &v);
    if (!x.st || v != PK_POOL__LENT) return -EINVAL;
    PK_POOL__ST(*x.st, (unsigned char)PK_POOL__IDLE);
#endif
    if (p->reset) p->reset(obj, p->user);
    if (c && (!c->guard || pk_pool__enter(p, c))) {
        size_t t = c->tail;
        if (t - PK_POOL__LD(c->head) < c->cap) {
            c->objs[t & c->mask] = x;
            PK_POOL__ST(c->tail, t + 1);
            if (c->guard) pk_pool__leave(c);
            return 0;
        }
        if (c->guard) pk_pool__leave(c);
    }
    pthread_mutex_lock(&p->mu);
    if (c) {
        if (pk_pool__c_count(c) >= c->cap) pk_pool__c_to_depot(p, c, c->cap / 2); /* the older half */
        pk_pool__c_push(c, x);
    } else {
        p->dep[p->ndep++] = x;
    }
    pk_pool__trim(p);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

/* HOT: the slot found from the release hint by address arithmetic, checked lent (inside the
   seqlock read section), flipped to idle and pushed on the ring. Anything else: the slow path. */
PK_POOL_DEF int pk_pool_release(pk_pool *p, void *obj)
{
    if (PK_POOL__LIKELY(pk_pool__tl1.p == p)) { /* a NULL p meets nocache: slow path */
        pk_pool__cache *c = pk_pool__tl1.c;
        uintptr_t off = (uintptr_t)obj - c->hbase;
        size_t idx, t = c->tail; /* a NULL p meets nocache: hslots 0, and p is not read */
        pk_pool__pair *slot = &c->objs[t & c->mask]; /* computed once: the byte store below may alias */
        if (PK_POOL__LIKELY((idx = (size_t)pk_pool__exact(c->ex_inv, c->ex_rot, off)) < c->hslots && slot->obj == NULL)) {
            unsigned char *st = c->hst + PK_POOL__SIDX(idx);
            unsigned char v = PK_POOL__LD(*st);
            PK_POOL__FENCE_ACQ();
            if (PK_POOL__LIKELY(v == PK_POOL__LENT && PK_POOL__LD(p->seq) == c->hseq)) {
#ifdef PK_POOL_STRICT_RELEASE
                if (!__atomic_compare_exchange_n(st, &v, (unsigned char)PK_POOL__IDLE, 0, __ATOMIC_RELAXED,
                                                 __ATOMIC_RELAXED))
                    return -EINVAL;
#else
                PK_POOL__ST(*st, (unsigned char)PK_POOL__IDLE);
#endif
                slot->obj = obj;
                slot->st = st;
                PK_POOL__ST(c->tail, t + 1);
                return 0;
            }
        }
    }
    return pk_pool__release_slow(p, obj);
}

PK_POOL_DEF void pk_pool_flush(pk_pool *p)
{
    pk_pool__tlent *e;
    pk_pool__cache *c;
    if (!p) return;
    e = &pk_pool__tl[p->gen & (PK_POOL__TLWAYS - 1)];
    c = e->gen == p->gen ? e->c : NULL;
    if (!c) /* the table slot may hold another pool now: the thread's list has every cache */
        for (c = pk_pool__tl_list; c && c->gen != p->gen; c = c->tnext) {
        }
    pthread_mutex_lock(&p->mu);
    if (c) pk_pool__cache_drain(p, c);
    pk_pool__trim(p);
    pthread_mutex_unlock(&p->mu);
}

PK_POOL_DEF void pk_pool_stats_get(pk_pool *p, pk_pool_stats *out)
{
    size_t u, live;
    pk_pool__cache *c;
    uint64_t acq;
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    live = (size_t)(p->created - p->freed);
    u = pk_pool__in_use(p);
    if (u > live) u = live; /* counters read while threads run */
    if (u > p->peak) p->peak = u;
    acq = p->acq;
    for (c = p->caches; c; c = c->pnext) acq += PK_POOL__LD(c->head) - PK_POOL__LD(c->moved);
    out->in_use = u;
    out->idle = live - out->in_use;
    out->peak_in_use = p->peak;
    out->acquires = acq;
    out->created = p->created;
    out->freed = p->freed;
    out->exhausted = p->exhausted;
    pthread_mutex_unlock(&p->mu);
}

/* ================================ resource pool ================================================

   One mutex for everything but the common case. `total` counts every slot: idle + parked + lent +
   being validated + being created. Invariant: while the waiter queue is non-empty, there is no idle
   or parked resource and total == max (kick() restores it after every change). Every live resource
   lives in an item, found from the resource pointer by a hash map (mu). A waiter has its own
   condition variable on its stack and is woken only when it has been given something: an item
   (direct hand-off) or a slot (permission to create). Items that on_leak is being called for are
   pinned: whoever would destroy a pinned resource marks it doomed instead and the reporter destroys
   it after the callback.

   Lock-free fast path. A release with no waiter parks the item in one of PK_POOL__PARK atomic slots
   (CAS from NULL); an acquire with no waiter claims a parked item by CAS to NULL. Neither takes the
   mutex: two threads sharing one pool trade a cache line, not a sleeping lock. The releasing thread
   finds the item from the resource through a thread-local memo of its last loan (pool generation,
   resource, item, tag), so it needs no map lookup either; any other release takes the mutex.
   Race with waiters (Dekker): a waiter raises nwait, then (full barrier) unparks every slot under
   mu; a releaser parks (the CAS is a full barrier), then reads nwait and, if it is raised, takes mu
   and unparks. So no item stays parked while someone waits.
   Item tags: state in the low 3 bits, the item's loan count above. Leaving LENT is a CAS on the tag,
   so two releases of one loan cannot both succeed, and a stale memo (its loan count differs) never
   matches. Items are never freed before the pool (recycled through `spare`), so reading a stale
   memo's item is safe. Loan counts also give the `acquires` statistic without a shared counter. */

enum { PK_POOL__RP_IDLE = 1, PK_POOL__RP_LENT, PK_POOL__RP_CHECK, PK_POOL__RP_GONE, PK_POOL__RP_PARKED };
enum { PK_POOL__W_WAIT = 0, PK_POOL__W_ITEM, PK_POOL__W_SLOT };
#define PK_POOL__PARK 8

typedef struct pk_pool__item {
    uint64_t tag;               /* atomic: loans << 3 | state */
    uint64_t loans0;            /* loan count when the resource was made (mu) */
    void *res;
    uint64_t born_ns, since_ns; /* since_ns (atomic): went idle, or was lent */
    uint64_t leak_reported;     /* atomic: tag of the loan maintain reported (0: none) */
    int pinned, doomed;         /* mu */
    struct pk_pool__item *prev, *next; /* idle list; next: destroy list, spare list */
} pk_pool__item;

typedef struct pk_pool__waiter {
    pthread_cond_t cv;
    int state, from_idle;
    pk_pool__item *it;
    struct pk_pool__waiter *prev, *next;
} pk_pool__waiter;

struct pk_respool {
    /* fast path, read-mostly line */
    uint64_t gen;        /* unique per pool: keys the thread-local loan memo */
    size_t nwait;        /* atomic read by the fast paths, written under mu */
    int clock_on_lend;   /* loan times are needed (leak reports) */
    int clock_on_put;    /* idle/age times are needed (validation age, idle timeout, lifetime) */
    int check_on_take;   /* a parked item may need validation or retirement when taken */
    pk_respool_config cfg;
    /* the parking slots, on their own line */
    char pad_[64];
    pk_pool__item *park[PK_POOL__PARK];
    char pad2_[64];
    /* everything else: under mu */
    pthread_mutex_t mu;
    pthread_condattr_t cattr;
    size_t total, nidle;
    pk_pool__item *idle;                  /* most recently returned first */
    pk_pool__item *spare;                 /* items without a resource, for reuse */
    pk_pool__waiter *wq, *wq_tail;
    pk_pool__item **map;                  /* open addressing by res, linear probing */
    size_t map_cap, map_n;
    uint64_t acq_dead;                    /* loans of items destroyed */
    uint64_t timeouts, created, destroyed, create_failures, validation_failures, leaks;
    uint64_t wait_total, wait_max;
};

/* The calling thread's last loan (any respool): lets the same thread's release skip the map. */
typedef struct pk_pool__loan { uint64_t gen, tag; void *res; pk_pool__item *it; } pk_pool__loan;
static PK_POOL__TLS pk_pool__loan pk_pool__memo;

static inline int pk_pool__st(pk_pool__item *it) { return (int)(__atomic_load_n(&it->tag, __ATOMIC_ACQUIRE) & 7u); }
/* mu held or sole owner of the item: sets the state, keeps the loan count. */
static inline void pk_pool__set_st(pk_pool__item *it, int st)
{
    uint64_t t = PK_POOL__LD(it->tag);
    __atomic_store_n(&it->tag, (t & ~(uint64_t)7) | (uint64_t)st, __ATOMIC_RELEASE);
}

PK_POOL__FN uint64_t pk_pool__rp_now(pk_respool *p)
{
    return p->cfg.clock_ns ? p->cfg.clock_ns(p->cfg.user) : pk_pool__mono_ns();
}

static inline size_t pk_pool__ptrhash(const void *q)
{
    uint64_t x = (uint64_t)(uintptr_t)q;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

PK_POOL__FN pk_pool__item *pk_pool__map_find(pk_respool *p, const void *res)
{
    size_t m, i;
    if (!p->map_cap) return NULL;
    m = p->map_cap - 1;
    for (i = pk_pool__ptrhash(res) & m; p->map[i]; i = (i + 1) & m)
        if (p->map[i]->res == res) return p->map[i];
    return NULL;
}

PK_POOL__FN void pk_pool__map_put_raw(pk_pool__item **map, size_t cap, pk_pool__item *it)
{
    size_t i = pk_pool__ptrhash(it->res) & (cap - 1);
    while (map[i]) i = (i + 1) & (cap - 1);
    map[i] = it;
}

/* Room for `need` items at load <= 1/2. */
PK_POOL__FN int pk_pool__map_reserve(pk_respool *p, size_t need)
{
    size_t cap = p->map_cap ? p->map_cap : 16, i;
    pk_pool__item **nm;
    if (need * 2 <= p->map_cap) return 0;
    while (need * 2 > cap) cap *= 2;
    nm = (pk_pool__item **)PK_MALLOC(cap * sizeof *nm);
    if (!nm) return -ENOMEM;
    memset(nm, 0, cap * sizeof *nm);
    for (i = 0; i < p->map_cap; i++)
        if (p->map[i]) pk_pool__map_put_raw(nm, cap, p->map[i]);
    PK_FREE(p->map);
    p->map = nm;
    p->map_cap = cap;
    return 0;
}

PK_POOL__FN void pk_pool__map_del(pk_respool *p, pk_pool__item *it)
{
    size_t m = p->map_cap - 1, i = pk_pool__ptrhash(it->res) & m, j;
    while (p->map[i] != it) i = (i + 1) & m;
    j = i;
    for (;;) {
        size_t h;
        j = (j + 1) & m;
        if (!p->map[j]) break;
        h = pk_pool__ptrhash(p->map[j]->res) & m;
        if ((j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j))) {
            p->map[i] = p->map[j];
            i = j;
        }
    }
    p->map[i] = NULL;
    p->map_n--;
}

PK_POOL__FN void pk_pool__list_push(pk_pool__item **head, pk_pool__item *it)
{
    it->prev = NULL;
    it->next = *head;
    if (*head) (*head)->prev = it;
    *head = it;
}
PK_POOL__FN void pk_pool__list_del(pk_pool__item **head, pk_pool__item *it)
{
    if (it->prev) it->prev->next = it->next;
    else *head = it->next;
    if (it->next) it->next->prev = it->prev;
    it->prev = it->next = NULL;
}

PK_POOL__FN void pk_pool__wq_del(pk_respool *p, pk_pool__waiter *w)
{
    if (w->prev) w->prev->next = w->next;
    else p->wq = w->next;
    if (w->next) w->next->prev = w->prev;
    else p->wq_tail = w->prev;
    w->prev = w->next = NULL;
    __atomic_store_n(&p->nwait, p->nwait - 1, __ATOMIC_RELAXED);
}

/* mu held: every parked item goes to the head of the idle list. */
PK_POOL__FN void pk_pool__unpark(pk_respool *p)
{
    size_t i;
    for (i = 0; i < PK_POOL__PARK; i++) {
        pk_pool__item *it;
        /* seq_cst: after the waiter's nwait store (Dekker); free on x86, needed on weaker CPUs */
        if (!__atomic_load_n(&p->park[i], __ATOMIC_SEQ_CST)) continue;
        it = __atomic_exchange_n(&p->park[i], (pk_pool__item *)NULL, __ATOMIC_SEQ_CST);
        if (!it) continue;
        pk_pool__set_st(it, PK_POOL__RP_IDLE);
        pk_pool__list_push(&p->idle, it);
        p->nidle++;
    }
}

/* Serves waiters, oldest first, with idle items, then with free slots. */
PK_POOL__FN void pk_pool__kick(pk_respool *p)
{
    if (p->wq) pk_pool__unpark(p);
    while (p->wq) {
        pk_pool__waiter *w = p->wq;
        if (p->idle) {
            pk_pool__item *it = p->idle;
            pk_pool__list_del(&p->idle, it);
            p->nidle--;
            pk_pool__set_st(it, PK_POOL__RP_CHECK);
            w->it = it;
            w->from_idle = 1;
            w->state = PK_POOL__W_ITEM;
        } else if (p->total < p->cfg.max) {
            p->total++;
            w->state = PK_POOL__W_SLOT;
        } else {
            break;
        }
        pk_pool__wq_del(p, w);
        pthread_cond_signal(&w->cv);
    }
}

/* A slot is given up: to the longest waiter, else back to the pool. */
PK_POOL__FN void pk_pool__slot_free(pk_respool *p)
{
    p->total--;
    pk_pool__kick(p);
}

/* A resource becomes available: straight to the longest waiter (no validation), else idle. */
PK_POOL__FN void pk_pool__rp_put(pk_respool *p, pk_pool__item *it, uint64_t now)
{
    if (p->wq) {
        pk_pool__waiter *w = p->wq;
        pk_pool__set_st(it, PK_POOL__RP_CHECK);
        w->it = it;
        w->from_idle = 0;
        w->state = PK_POOL__W_ITEM;
        pk_pool__wq_del(p, w);
        pthread_cond_signal(&w->cv);
        return;
    }
    pk_pool__set_st(it, PK_POOL__RP_IDLE);
    PK_POOL__ST(it->since_ns, now);
    pk_pool__list_push(&p->idle, it);
    p->nidle++;
}

/* Takes an item out of the pool for destruction (it must be in no list and no parking slot).
   keep_slot: the caller goes on using its slot (to try another or create). The resource is
   destroyed by the caller outside the lock (pushed on *dl), or by the pinner when pinned. */
PK_POOL__FN void pk_pool__rp_kill(pk_respool *p, pk_pool__item *it, int keep_slot, pk_pool__item **dl)
{
    pk_pool__map_del(p, it);
    p->acq_dead += (PK_POOL__LD(it->tag) >> 3) - it->loans0;
    pk_pool__set_st(it, PK_POOL__RP_GONE);
    p->destroyed++;
    if (!keep_slot) pk_pool__slot_free(p);
    if (it->pinned) {
        it->doomed = 1;
    } else {
        it->next = *dl;
        *dl = it;
    }
}

/* Outside the lock: destroys the resources, then keeps the items as spares (never freed before the
   pool: a thread's loan memo may still point at one). */
PK_POOL__FN void pk_pool__rp_destroy_list(pk_respool *p, pk_pool__item *dl)
{
    pk_pool__item *it, *last = NULL;
    if (!dl) return;
    for (it = dl; it; it = it->next) {
        p->cfg.destroy(it->res, p->cfg.user);
        last = it;
    }
    pthread_mutex_lock(&p->mu);
    last->next = p->spare;
    p->spare = dl;
    pthread_mutex_unlock(&p->mu);
}

/* The caller owns it (taken from idle, a parking slot, a waiter hand-off, or just made): lends it. */
static inline void pk_pool__lend(pk_respool *p, pk_pool__item *it)
{
    uint64_t t = PK_POOL__LD(it->tag);
    PK_POOL__ST(it->since_ns, p->clock_on_lend ? pk_pool__rp_now(p) : (uint64_t)0);
    t = (((t >> 3) + 1) << 3) | (uint64_t)PK_POOL__RP_LENT;
    __atomic_store_n(&it->tag, t, __ATOMIC_RELEASE);
    pk_pool__memo.gen = p->gen;
    pk_pool__memo.tag = t;
    pk_pool__memo.res = it->res;
    pk_pool__memo.it = it;
}

/* mu held, slot reserved by the caller: creates a resource outside the lock. On success *out is a
   new item in the map (state CHECK, in no list); on failure the slot is still the caller's. */
PK_POOL__FN int pk_pool__rp_make(pk_respool *p, pk_pool__item **out)
{
    pk_pool__item *it;
    void *res = NULL;
    int rc;
    if (pk_pool__map_reserve(p, p->total) != 0) return -ENOMEM;
    it = p->spare;
    if (it) p->spare = it->next;
    pthread_mutex_unlock(&p->mu);
    if (!it) {
        it = (pk_pool__item *)PK_MALLOC(sizeof *it);
        if (it) memset(it, 0, sizeof *it);
    }
    rc = it ? p->cfg.create(&res, p->cfg.user) : -ENOMEM;
    if (rc == 0 && !res) rc = -EINVAL; /* create must give a resource */
    if (rc > 0) rc = -rc;
    pthread_mutex_lock(&p->mu);
    if (rc == 0 && pk_pool__map_find(p, res)) rc = -EEXIST; /* create returned a resource already pooled */
    if (rc == 0 && pk_pool__map_reserve(p, p->map_n + 1) != 0) { /* cannot happen: reserved above */
        pthread_mutex_unlock(&p->mu);
        p->cfg.destroy(res, p->cfg.user);
        pthread_mutex_lock(&p->mu);
        rc = -ENOMEM;
    }
    if (rc != 0) {
        if (it) {
            p->create_failures++;
            it->next = p->spare;
            p->spare = it;
        }
        return rc;
    }
    it->res = res;
    it->born_ns = pk_pool__rp_now(p);
    PK_POOL__ST(it->since_ns, it->born_ns);
    PK_POOL__ST(it->leak_reported, 0);
    it->pinned = it->doomed = 0;
    it->prev = it->next = NULL;
    it->loans0 = PK_POOL__LD(it->tag) >> 3; /* the tag's loan count runs on across reuse */
    pk_pool__set_st(it, PK_POOL__RP_CHECK);
    pk_pool__map_put_raw(p->map, p->map_cap, it);
    p->map_n++;
    p->created++;
    *out = it;
    return 0;
}

PK_POOL_DEF int pk_respool_create(pk_respool **out, const pk_respool_config *cfg)
{
    pk_respool *p;
    size_t i;
    int rc = 0;
    if (!out) return -EINVAL;
    *out = NULL;
    if (!cfg || cfg->max == 0 || cfg->min > cfg->max || !cfg->create || !cfg->destroy) return -EINVAL;
    p = (pk_respool *)PK_MALLOC(sizeof *p);
    if (!p) return -ENOMEM;
    memset(p, 0, sizeof *p);
    p->cfg = *cfg;
    p->gen = __atomic_add_fetch(&pk_pool__gens, 1, __ATOMIC_RELAXED);
    p->clock_on_lend = cfg->leak_ns || cfg->on_leak;
    p->clock_on_put = (cfg->validate && cfg->validate_idle_ns) || cfg->idle_timeout_ns || cfg->max_lifetime_ns;
    p->check_on_take = cfg->validate || cfg->max_lifetime_ns;
    if (pthread_condattr_init(&p->cattr) != 0) {
        PK_FREE(p);
        return -ENOMEM;
    }
    if (pthread_condattr_setclock(&p->cattr, CLOCK_MONOTONIC) != 0 || pthread_mutex_init(&p->mu, NULL) != 0) {
        pthread_condattr_destroy(&p->cattr);
        PK_FREE(p);
        return -ENOMEM;
    }
    pthread_mutex_lock(&p->mu);
    for (i = 0; i < cfg->min; i++) {
        pk_pool__item *it;
        p->total++;
        rc = pk_pool__rp_make(p, &it);
        if (rc != 0) {
            p->total--;
            break;
        }
        pk_pool__rp_put(p, it, pk_pool__rp_now(p));
    }
    pthread_mutex_unlock(&p->mu);
    if (rc != 0) {
        pk_respool_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

PK_POOL_DEF void pk_respool_destroy(pk_respool *p)
{
    pk_pool__item *it, *n;
    uint64_t now;
    size_t i;
    if (!p) return;
    now = pk_pool__rp_now(p);
    pk_pool__unpark(p);
    for (i = 0; i < p->map_cap; i++) {
        it = p->map[i];
        if (!it) continue;
        if (pk_pool__st(it) == PK_POOL__RP_LENT) { /* not destroyed: the borrower owns it */
            p->leaks++;
            if (p->cfg.on_leak && p->cfg.leak_ns) /* reported (handed over) only with leak reports on */
                p->cfg.on_leak(it->res, now - PK_POOL__LD(it->since_ns), p->cfg.user);
        } else {
            p->cfg.destroy(it->res, p->cfg.user);
        }
        PK_FREE(it);
    }
    for (it = p->spare; it; it = n) {
        n = it->next;
        PK_FREE(it);
    }
    PK_FREE(p->map);
    pthread_mutex_destroy(&p->mu);
    pthread_condattr_destroy(&p->cattr);
    PK_FREE(p);
}

/* The monotonic deadline of one timed wait: `at`, or at most 2^28 s (8.5 years) after `now`, so that
   a far deadline cannot overflow a 32-bit time_t; a step that ends early is followed by another. A
   deadline already past (a short timeout that ran out while the caller took the lock) is `now`: the
   wait returns at once (at - now would wrap and make it 8.5 years). */
PK_POOL__FN void pk_pool__deadline(struct timespec *ts, uint64_t now, uint64_t at)
{
    const uint64_t step = ((uint64_t)1 << 28) * 1000000000u;
    if (at < now) at = now;
    else if (at - now > step) at = now + step;
    ts->tv_sec = (time_t)(at / 1000000000u);
    ts->tv_nsec = (long)(at % 1000000000u);
}

/* Lock-free: claims a parked item, or NULL. */
static inline pk_pool__item *pk_pool__claim(pk_respool *p)
{
    size_t i;
    for (i = 0; i < PK_POOL__PARK; i++) {
        pk_pool__item *it = __atomic_load_n(&p->park[i], __ATOMIC_ACQUIRE);
        if (it && __atomic_compare_exchange_n(&p->park[i], &it, (pk_pool__item *)NULL, 0, __ATOMIC_ACQ_REL,
                                              __ATOMIC_RELAXED))
            return it;
    }
    return NULL;
}

/* A claimed item may need retiring (lifetime) or validating before it is lent. Returns 1 when it
   may be lent; else it has been destroyed and its slot is the caller's (as on the slow path: the
   next idle one is tried, else one is created; giving the slot up would let a waiter that queued
   during validate take it, and the caller, first to come, leave with -ETIMEDOUT). No lock held
   on entry or exit. */
PK_POOL__FN PK_POOL__NOINLINE int pk_pool__take_check(pk_respool *p, pk_pool__item *it)
{
    uint64_t now = p->clock_on_put ? pk_pool__rp_now(p) : 0;
    pk_pool__item *dl = NULL;
    int bad = 0;
    if (p->cfg.max_lifetime_ns && now - it->born_ns >= p->cfg.max_lifetime_ns) {
        bad = 1;
    } else if (p->cfg.validate && now - PK_POOL__LD(it->since_ns) >= p->cfg.validate_idle_ns) {
        pk_pool__set_st(it, PK_POOL__RP_CHECK);
        bad = p->cfg.validate(it->res, p->cfg.user) != 0;
        bad = bad ? 2 : 0;
    }
    if (!bad) return 1;
    pthread_mutex_lock(&p->mu);
    if (bad == 2) p->validation_failures++;
    pk_pool__rp_kill(p, it, 1, &dl);
    pthread_mutex_unlock(&p->mu);
    pk_pool__rp_destroy_list(p, dl);
    return 0;
}

PK_POOL_DEF int pk_respool_acquire(pk_respool *p, void **res, uint64_t timeout_ns)
{
    int have_slot = 0, rc;
    uint64_t deadline = 0;
    if (!res) return -EINVAL;
    *res = NULL;
    if (!p) return -EINVAL;
    /* HOT: a parked item, when nobody waits (waiters are served first) */
    while (__atomic_load_n(&p->nwait, __ATOMIC_SEQ_CST) == 0) {
        pk_pool__item *it = pk_pool__claim(p);
        if (!it) break;
        if (p->check_on_take && !pk_pool__take_check(p, it)) {
            have_slot = 1; /* the bad one's: the slow path tries the next idle one or creates */
            break;
        }
        pk_pool__lend(p, it);
        *res = it->res;
        return 0;
    }
    if (timeout_ns && timeout_ns != PK_FOREVER) {
        uint64_t t0 = pk_pool__mono_ns();
        deadline = t0 + timeout_ns < t0 ? UINT64_MAX : t0 + timeout_ns;
    }
    pthread_mutex_lock(&p->mu);
    pk_pool__unpark(p);
    pk_pool__kick(p); /* older waiters before us, for what was parked (see maintain) */
    for (;;) {
        pk_pool__item *it = NULL, *dl = NULL;
        int check = 0;
        if (have_slot && p->idle) { /* we hold a slot (after a bad idle one): prefer the next idle */
            it = p->idle;
            pk_pool__list_del(&p->idle, it);
            p->nidle--;
            p->total--;
            have_slot = 0;
            check = 1;
        } else if (!have_slot) {
            if (!p->wq && p->idle) {
                it = p->idle;
                pk_pool__list_del(&p->idle, it);
                p->nidle--;
                check = 1;
            } else if (!p->wq && p->total < p->cfg.max) {
                p->total++;
                have_slot = 1;
            } else if (timeout_ns == 0) {
                p->timeouts++;
                pthread_mutex_unlock(&p->mu);
                return -ETIMEDOUT;
            } else {
                pk_pool__waiter w;
                uint64_t t0 = pk_pool__mono_ns(), waited;
                struct timespec ts;
                memset(&w, 0, sizeof w);
                if (pthread_cond_init(&w.cv, &p->cattr) != 0) {
                    pthread_mutex_unlock(&p->mu);
                    return -ENOMEM;
                }
                w.prev = p->wq_tail;
                if (p->wq_tail) p->wq_tail->next = &w;
                else p->wq = &w;
                p->wq_tail = &w;
                __atomic_store_n(&p->nwait, p->nwait + 1, __ATOMIC_SEQ_CST); /* then unpark: see Dekker above */
                pk_pool__kick(p); /* in case something is free (keeps the invariant) */
                if (deadline) pk_pool__deadline(&ts, t0, deadline);
                while (w.state == PK_POOL__W_WAIT) {
                    if (!deadline) {
                        pthread_cond_wait(&w.cv, &p->mu);
                    } else {
                        int e = pthread_cond_timedwait(&w.cv, &p->mu, &ts);
                        uint64_t t;
                        if (w.state != PK_POOL__W_WAIT) break;
                        t = pk_pool__mono_ns();
                        if (t >= deadline) {
                            pk_pool__wq_del(p, &w);
                            break;
                        }
                        if (e == ETIMEDOUT) pk_pool__deadline(&ts, t, deadline); /* a step ended: the next */
                    }
                }
                pthread_cond_destroy(&w.cv);
                waited = pk_pool__mono_ns() - t0;
                p->wait_total += waited;
                if (waited > p->wait_max) p->wait_max = waited;
                if (w.state == PK_POOL__W_ITEM) {
                    it = w.it;
                    check = w.from_idle;
                } else if (w.state == PK_POOL__W_SLOT) {
                    have_slot = 1;
                } else {
                    p->timeouts++;
                    pthread_mutex_unlock(&p->mu);
                    return -ETIMEDOUT;
                }
            }
        }
        if (it) {
            uint64_t now = check && p->clock_on_put ? pk_pool__rp_now(p) : 0;
            if (check && p->cfg.max_lifetime_ns && now - it->born_ns >= p->cfg.max_lifetime_ns) {
                pk_pool__rp_kill(p, it, 1, &dl); /* too old: retire, keep the slot, try again */
                have_slot = 1;
            } else if (check && p->cfg.validate && now - it->since_ns >= p->cfg.validate_idle_ns) {
                int bad;
                pk_pool__set_st(it, PK_POOL__RP_CHECK);
                pthread_mutex_unlock(&p->mu);
                bad = p->cfg.validate(it->res, p->cfg.user) != 0;
                pthread_mutex_lock(&p->mu);
                if (bad) {
                    p->validation_failures++;
                    pk_pool__rp_kill(p, it, 1, &dl);
                    have_slot = 1;
                }
            }
            if (!have_slot) {
                pk_pool__lend(p, it);
                pthread_mutex_unlock(&p->mu);
                *res = it->res;
                return 0;
            }
            if (dl) {
                pthread_mutex_unlock(&p->mu);
                pk_pool__rp_destroy_list(p, dl);
                pthread_mutex_lock(&p->mu);
            }
            continue;
        }
        /* have_slot: create */
        rc = pk_pool__rp_make(p, &it);
        if (rc != 0) {
            pk_pool__slot_free(p);
            pthread_mutex_unlock(&p->mu);
            return rc;
        }
        pk_pool__lend(p, it);
        pthread_mutex_unlock(&p->mu);
        *res = it->res;
        return 0;
    }
}

/* mu held: ends the loan of res: its item (state CHECK, in no list) or NULL if res is not lent.
   A CAS, because a lock-free release of the same loan may run at the same time. */
PK_POOL__FN pk_pool__item *pk_pool__rp_unlend(pk_respool *p, void *res)
{
    pk_pool__item *it = pk_pool__map_find(p, res);
    uint64_t t;
    if (!it) return NULL;
    t = __atomic_load_n(&it->tag, __ATOMIC_ACQUIRE);
    if ((t & 7u) != PK_POOL__RP_LENT) return NULL;
    if (!__atomic_compare_exchange_n(&it->tag, &t, (t & ~(uint64_t)7) | PK_POOL__RP_CHECK, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return NULL;
    return it;
}

/* HOT when the calling thread made the loan (its memo) and nobody waits: ends the loan by CAS on
   the item's tag and parks the item, without the mutex. Returns 1 when done, 0 for the slow path. */
static inline int pk_pool__release_fast(pk_respool *p, void *res)
{
    pk_pool__loan *m = &pk_pool__memo;
    pk_pool__item *it = m->it;
    uint64_t t = m->tag, now;
    size_t i;
    if (m->gen != p->gen || m->res != res || __atomic_load_n(&p->nwait, __ATOMIC_RELAXED) != 0) return 0;
    if (!__atomic_compare_exchange_n(&it->tag, &t, (t & ~(uint64_t)7) | PK_POOL__RP_PARKED, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return 0; /* not that loan any more: the slow path says why */
    m->gen = 0;
    now = p->clock_on_put ? pk_pool__rp_now(p) : 0;
    __atomic_store_n(&it->since_ns, now, __ATOMIC_RELEASE);
    if (!(p->cfg.max_lifetime_ns && now - it->born_ns >= p->cfg.max_lifetime_ns))
        for (i = 0; i < PK_POOL__PARK; i++) {
            pk_pool__item *none = NULL;
            if (__atomic_load_n(&p->park[i], __ATOMIC_RELAXED) == NULL &&
                __atomic_compare_exchange_n(&p->park[i], &none, it, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
                if (PK_POOL__UNLIKELY(__atomic_load_n(&p->nwait, __ATOMIC_SEQ_CST) != 0)) {
                    pk_pool__item *mine = it;
                    pthread_mutex_lock(&p->mu); /* a waiter came meanwhile: serve it */
                    if (__atomic_compare_exchange_n(&p->park[i], &mine, (pk_pool__item *)NULL, 0, __ATOMIC_SEQ_CST,
                                                    __ATOMIC_RELAXED)) {
                        /* still ours: a hand-off straight from a release, not validated (the
                           contract); through the idle list it would have been */
                        pk_pool__set_st(it, PK_POOL__RP_CHECK);
                        pk_pool__rp_put(p, it, now);
                    }
                    pk_pool__kick(p);
                    pthread_mutex_unlock(&p->mu);
                }
                return 1;
            }
        }
    /* too old, or every slot full: the locked way (the item is ours, in no list) */
    {
        pk_pool__item *dl = NULL;
        pthread_mutex_lock(&p->mu);
        pk_pool__set_st(it, PK_POOL__RP_CHECK);
        if (p->cfg.max_lifetime_ns && now - it->born_ns >= p->cfg.max_lifetime_ns) pk_pool__rp_kill(p, it, 0, &dl);
        else pk_pool__rp_put(p, it, now);
        pthread_mutex_unlock(&p->mu);
        pk_pool__rp_destroy_list(p, dl);
    }
    return 1;
}

PK_POOL_DEF int pk_respool_release(pk_respool *p, void *res)
{
    pk_pool__item *it, *dl = NULL;
    uint64_t now;
    if (!p || !res) return -EINVAL;
    if (pk_pool__release_fast(p, res)) return 0;
    pthread_mutex_lock(&p->mu);
    it = pk_pool__rp_unlend(p, res);
    if (!it) {
        pthread_mutex_unlock(&p->mu);
        return -EINVAL;
    }
    now = p->clock_on_put ? pk_pool__rp_now(p) : 0;
    if (p->cfg.max_lifetime_ns && now - it->born_ns >= p->cfg.max_lifetime_ns) pk_pool__rp_kill(p, it, 0, &dl);
    else pk_pool__rp_put(p, it, now);
    pthread_mutex_unlock(&p->mu);
    pk_pool__rp_destroy_list(p, dl);
    return 0;
}

PK_POOL_DEF int pk_respool_invalidate(pk_respool *p, void *res)
{
    pk_pool__item *it, *dl = NULL;
    if (!p || !res) return -EINVAL;
    pthread_mutex_lock(&p->mu);
    it = pk_pool__rp_unlend(p, res);
    if (!it) {
        pthread_mutex_unlock(&p->mu);
        return -EINVAL;
    }
    pk_pool__rp_kill(p, it, 0, &dl);
    pthread_mutex_unlock(&p->mu);
    pk_pool__rp_destroy_list(p, dl);
    return 0;
}

#ifndef PK_POOL__TEST_LEAK_FOUND
#define PK_POOL__TEST_LEAK_FOUND() ((void)0)
#endif

/* mu held: a lent item whose loan is older than leak_ns and not reported yet, or NULL; *held = its
   age, *loan = its tag. Loans begin and end without the mutex (lend, release_fast), so the loan is
   read like a seqlock: tag, since_ns, tag again; a changed tag means that loan ended meanwhile. */
PK_POOL__FN pk_pool__item *pk_pool__leak_find(pk_respool *p, uint64_t now, uint64_t *held, uint64_t *loan)
{
    size_t i;
    for (i = 0; i < p->map_cap; i++) {
        pk_pool__item *it = p->map[i];
        uint64_t since, t;
        if (!it || it->pinned) continue;
        t = __atomic_load_n(&it->tag, __ATOMIC_ACQUIRE);
        if ((t & 7u) != PK_POOL__RP_LENT || PK_POOL__LD(it->leak_reported) == t) continue;
        since = __atomic_load_n(&it->since_ns, __ATOMIC_ACQUIRE); /* the tag below is read after it */
        if (__atomic_load_n(&it->tag, __ATOMIC_RELAXED) != t) continue; /* that loan ended meanwhile */
        if (now >= since && now - since >= p->cfg.leak_ns) { /* a loan begun after `now`: not yet */
            *held = now - since;
            *loan = t;
            return it;
        }
    }
    return NULL;
}

PK_POOL_DEF size_t pk_respool_maintain(pk_respool *p)
{
    size_t work = 0;
    pk_pool__item *it, *prev, *dl = NULL;
    uint64_t now;
    if (!p) return 0;
    pthread_mutex_lock(&p->mu);
    /* Parked items go to waiters first: a release that parked one while a waiter queued may not
       have served it yet. The retire loop below relies on it: with idle items and waiters both
       present, a kill's freed slot would hand the next idle item (the loop's `prev`) to a waiter
       and the loop would then retire it under the waiter's feet. */
    pk_pool__unpark(p);
    pk_pool__kick(p);
    now = pk_pool__rp_now(p);
    /* 1. retire idle: oldest idle first (the tail of the idle list) */
    for (it = p->idle; it && it->next; it = it->next) {
    }
    for (; it; it = prev) {
        int old, stale;
        prev = it->prev;
        old = p->cfg.max_lifetime_ns && now - it->born_ns >= p->cfg.max_lifetime_ns;
        stale = p->cfg.idle_timeout_ns && now - PK_POOL__LD(it->since_ns) >= p->cfg.idle_timeout_ns &&
                p->total > p->cfg.min;
        if (old || stale) {
            pk_pool__list_del(&p->idle, it);
            p->nidle--;
            pk_pool__rp_kill(p, it, 0, &dl);
            work++;
        }
    }
    if (dl) {
        pthread_mutex_unlock(&p->mu);
        pk_pool__rp_destroy_list(p, dl);
        dl = NULL;
        pthread_mutex_lock(&p->mu);
    }
    /* 2. leaks: one at a time, pinned while on_leak runs */
    while (p->cfg.leak_ns) {
        uint64_t held = 0, loan = 0;
        now = pk_pool__rp_now(p);
        it = pk_pool__leak_find(p, now, &held, &loan);
        if (!it) break;
        PK_POOL__TEST_LEAK_FOUND(); /* tests: hold maintain here while that loan ends, another begins */
        /* The loan's tag, not a flag: the loan may end and another begin (lock-free) before this
           store, and a flag would mark the new loan as reported; it was never reported then. */
        PK_POOL__ST(it->leak_reported, loan);
        p->leaks++;
        work++;
        if (p->cfg.on_leak) {
            it->pinned = 1;
            pthread_mutex_unlock(&p->mu);
            p->cfg.on_leak(it->res, held, p->cfg.user);
            pthread_mutex_lock(&p->mu);
            it->pinned = 0;
            if (it->doomed) {
                pthread_mutex_unlock(&p->mu);
                p->cfg.destroy(it->res, p->cfg.user);
                pthread_mutex_lock(&p->mu);
                it->next = p->spare;
                p->spare = it;
            }
        }
    }
    /* 3. refill to min */
    while (p->total < p->cfg.min) {
        int rc;
        p->total++;
        rc = pk_pool__rp_make(p, &it);
        if (rc != 0) {
            pk_pool__slot_free(p);
            break;
        }
        pk_pool__rp_put(p, it, pk_pool__rp_now(p));
        work++;
    }
    pthread_mutex_unlock(&p->mu);
    return work;
}

PK_POOL_DEF void pk_respool_stats_get(pk_respool *p, pk_respool_stats *out)
{
    size_t i, lent = 0;
    uint64_t acq;
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    pk_pool__unpark(p);
    pk_pool__kick(p); /* parked items go to waiters first (see maintain): idle and waiting stay consistent */
    acq = p->acq_dead;
    for (i = 0; i < p->map_cap; i++) {
        pk_pool__item *it = p->map[i];
        if (!it) continue;
        acq += (PK_POOL__LD(it->tag) >> 3) - it->loans0;
        lent += pk_pool__st(it) == PK_POOL__RP_LENT;
    }
    out->total = p->total;
    out->idle = p->nidle;
    out->in_use = lent;
    out->waiting = p->nwait;
    out->acquires = acq;
    out->timeouts = p->timeouts;
    out->created = p->created;
    out->destroyed = p->destroyed;
    out->create_failures = p->create_failures;
    out->validation_failures = p->validation_failures;
    out->leaks = p->leaks;
    out->wait_ns_total = p->wait_total;
    out->wait_ns_max = p->wait_max;
    pthread_mutex_unlock(&p->mu);
}

#endif /* PK_POOL_IMPLEMENTATION */

/* ------------------------------------------------------------------------------------------------
   LICENSE — choose whichever you prefer.
   A) MIT License. Copyright (c) 2025 the pk authors. Permission is hereby granted, free of charge, to
      any person obtaining a copy of this software and associated documentation files (the
      "Software"), to deal in the Software without restriction, including without limitation the
      rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the
      Software, and to permit persons to whom the Software is furnished to do so, subject to the
      following conditions: The above copyright notice and this permission notice shall be included
      in all copies or substantial portions of the Software. THE SOFTWARE IS PROVIDED "AS IS",
      WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.
   B) Public domain (www.unlicense.org): anyone is free to copy, modify, publish, use, compile, sell,
      or distribute this software, for any purpose, commercial or non-commercial, and by any means.
   ------------------------------------------------------------------------------------------------ */
