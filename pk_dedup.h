/* pk_dedup.h — in-flight deduplication ("single flight"): concurrent calls with equal keys share
   one execution of the work and its result.

   When a hundred requests for the same model answer or the same file analysis arrive at once,
   exactly one of them does the work and all of them get its result. Like Go's singleflight, plus
   per-waiter deadlines, reference-counted results, self-deadlock detection and stats.

   Quick start (a complete program; `make test` compiles and runs it):

   ---8<--- example
#define PK_DEDUP_IMPLEMENTATION
#include "pk_dedup.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int load_answer(void *arg, void **value, size_t *len)
{
    const char *question = (const char *)arg;
    char *answer = (char *)malloc(64);              // owned by the dedup once returned
    if (!answer) return -ENOMEM;
    snprintf(answer, 64, "answer to %s", question);
    *value = answer;
    *len = strlen(answer) + 1;
    return 0;                                       // or a negative errno: every waiter gets it
}

int main(void)
{
    pk_dedup *d;
    pk_dedup_result r;
    if (pk_dedup_create(&d, NULL) != 0) return 1;   // NULL config: defaults, free_value = free
    // Every thread asking for "q42" while one computes it waits and shares that one result.
    if (pk_dedup_do(d, "q42", 3, load_answer, (void *)"q42", PK_FOREVER, &r) == 0)
        printf("%s (shared: %d)\n", (const char *)r.value, r.shared);
    pk_dedup_release(d, &r);                        // after every call, whatever it returned
    pk_dedup_destroy(d);
    return 0;
}
   --->8---

   Options (#define before including the implementation)
     PK_DEDUP_IMPLEMENTATION   in exactly one C/C++ file: compiles the implementation.
     PK_DEDUP_STATIC           makes every function static (private to that file).
     PK_MALLOC(n), PK_REALLOC(p, n), PK_FREE(p)  allocator (default malloc/realloc/free); define
                               all three or none (shared by all pk headers; this one never reallocates)
     PK_ASSERT(x)              default assert(x).
     Under strict -std=c99 define _POSIX_C_SOURCE=200809L (clock_gettime, pthread_condattr_setclock);
     with -std=gnu99 or the compiler default nothing is needed. Link with -pthread.

   API
     int  pk_dedup_create(pk_dedup **out, const pk_dedup_config *cfg);
          cfg NULL or all-zero = defaults. shards: number of hash buckets (rounded up to a power of
          two, at most 1<<20); 0 = automatic (128 per online CPU, between 256 and 8192: 16 KiB
          on a 2-CPU machine). More buckets than keys in flight keep threads that work on
          different keys off each other's cache lines.
          free_value(value, user) frees fn's values; NULL = PK_FREE(value).
          Errors: -EINVAL (out NULL), -ENOMEM.
     void pk_dedup_destroy(pk_dedup *d);
          NULL is ignored. No pk_dedup_do may be running and every result must have been
          released (a result still held is not freed by destroy).
     int  pk_dedup_do(pk_dedup *d, const void *key, size_t klen, pk_dedup_fn fn, void *arg,
                      uint64_t timeout_ns, pk_dedup_result *res);
          If no execution for an equal key (same klen, same bytes) is in flight, this caller is the
          LEADER: it runs fn(arg, &value, &len) on its own thread with no lock held. Callers with an
          equal key arriving while fn runs are FOLLOWERS: they wait up to timeout_ns (a deadline on
          the monotonic clock fixed when the follower finds the execution; PK_FOREVER = no limit;
          0 = do not wait at all) and receive the same rc, value and len. res->shared != 0 for
          every receiver when more than one caller received the result, the leader included; a
          follower that timed out before fn finished is not a receiver. A call that starts after the
          execution finished starts a new one: nothing is cached.
          fn starts with *value = NULL, *len = 0; whatever it stores in *value is owned by the
          dedup from then on, whatever fn returns (so an error may carry a value too); success
          without a value gives value NULL and len 0.
          Returns what it stores in res->rc: fn's result, or
            -ETIMEDOUT  a follower whose deadline passed before fn finished (counted in timeouts);
                        the execution goes on for the others;
            -EDEADLK    the calling thread is itself running fn for an equal key (fn called
                        pk_dedup_do on its own key): waiting would hang forever, so the call
                        returns at once whatever timeout_ns says (after pk_dedup_forget of that
                        key the running call is detached, and such a call leads a new execution);
            -ENOMEM     the first follower of an execution could not allocate the shared result
                        block (the execution and its other callers are unaffected);
            -EINVAL     d, fn or res NULL, or key NULL with klen > 0 (nothing counted).
          A zero-length key is a valid key (key may then be NULL): all zero-length calls share.
          The key bytes must stay unchanged until the call returns (they are not copied).
          When the dedup itself refuses or gives up (the four errors above, as opposed to the same
          codes returned by fn), res->value is NULL and res->len 0.
     void pk_dedup_release(pk_dedup *d, pk_dedup_result *res);
          Required once after every pk_dedup_do, whatever it returned. Drops this receiver's
          reference; free_value runs once, after the last receiver released, on the releasing
          thread, outside any lock of the dedup. Clears res->value, res->len and res->call_, so a
          second release of the same result is harmless; res->rc and res->shared stay. NULL
          arguments are ignored. Use the dedup that produced the result.
     int  pk_dedup_forget(pk_dedup *d, const void *key, size_t klen);
          Detaches the in-flight execution for key: later callers start a new execution, while the
          current one finishes and delivers to the followers that already joined it.
          Returns 0, -ENOENT (nothing in flight for key) or -EINVAL (d NULL, key NULL with klen > 0).
     void pk_dedup_stats_get(pk_dedup *d, pk_dedup_stats *out);
          calls = executions + coalesced (calls refused with -EINVAL are not counted);
          executions: calls that ran fn; coalesced: calls that found an execution in flight —
          followers, including those that timed out (also counted in timeouts), and those refused
          with -EDEADLK or -ENOMEM; in_flight: executions whose fn is running now. Counters are
          striped per bucket and summed on read: a snapshot, exact when the dedup is quiet.

   Thread safety
     Every function may be called from any number of threads at once, except destroy. fn and
     free_value run with no lock of the dedup held, and may call pk_dedup_do on other keys (that
     nests: the inner call may lead or follow). fn calling pk_dedup_do on its own key from the same
     thread gets -EDEADLK (detected by the leader's thread id recorded in the call; the id cannot
     be recycled while fn runs). A cycle through other threads (fn for k1 waits on a thread whose fn
     for k2 waits on k1), or fn waiting for a thread of its own that calls on the same key, is not
     detected: use deadlines where such cycles are possible.

   Accuracy / limits / cost
     - Uncontended path (hot): hash the key, lock one 64-byte bucket, link a call record that lives
       on the leader's stack, unlock, run fn, lock, unlink, unlock. No allocation, no system call,
       no clock read. The key bytes are not copied: the record points at the leader's key, which
       stays valid while the leader is inside pk_dedup_do.
     - The first follower allocates one block (mutex, condition variable, reference count, the
       result); later followers only take a reference. Waiting uses a condition variable on
       CLOCK_MONOTONIC.
     - Bucket locks are 4-byte test-and-test-and-set locks that spin briefly and then yield; they
       are held for a few dozen instructions, never across fn, free_value or an allocation.
     - The table never resizes: it holds only calls whose fn is running (one per thread, more
       only when fn nests calls), so chains stay short.
     - fn must return normally: a longjmp or C++ exception out of fn would leave the call record
       (on the unwound stack) linked in the table.

   Revision notes
     1.0  first release.

   License: MIT or public domain, your choice; see LICENSE at the end of this file. */
#ifndef PK_DEDUP_H
#define PK_DEDUP_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#ifndef PK_FOREVER
#define PK_FOREVER UINT64_MAX
#endif

#ifdef PK_DEDUP_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define PK_DEDUP_DEF static __attribute__((unused))
#else
#define PK_DEDUP_DEF static
#endif
#else
#define PK_DEDUP_DEF extern
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pk_dedup pk_dedup;
/* The work: 0 or a negative errno. *value (and *len) go to every receiver; *value is owned by
   the dedup afterwards and freed with free_value after the last release. */
typedef int (*pk_dedup_fn)(void *arg, void **value, size_t *len);
typedef struct pk_dedup_config {
    unsigned shards;                               /* hash buckets; 0 = automatic */
    void (*free_value)(void *value, void *user);   /* NULL = PK_FREE */
    void *user;
} pk_dedup_config;
typedef struct pk_dedup_result {
    int rc;             /* what pk_dedup_do returned */
    const void *value;  /* fn's value (may be NULL); valid until pk_dedup_release */
    size_t len;
    int shared;         /* nonzero when more than one caller received this result */
    void *call_;        /* private: the reference release drops */
} pk_dedup_result;
typedef struct pk_dedup_stats {
    uint64_t calls, executions, coalesced, timeouts;
    size_t in_flight;
} pk_dedup_stats;

PK_DEDUP_DEF int pk_dedup_create(pk_dedup **out, const pk_dedup_config *cfg);
PK_DEDUP_DEF void pk_dedup_destroy(pk_dedup *d);
PK_DEDUP_DEF int pk_dedup_do(pk_dedup *d, const void *key, size_t klen, pk_dedup_fn fn, void *arg,
                             uint64_t timeout_ns, pk_dedup_result *res);
PK_DEDUP_DEF void pk_dedup_release(pk_dedup *d, pk_dedup_result *res);
PK_DEDUP_DEF int pk_dedup_forget(pk_dedup *d, const void *key, size_t klen);
PK_DEDUP_DEF void pk_dedup_stats_get(pk_dedup *d, pk_dedup_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* PK_DEDUP_H */

/* ============================================================================================ */

#if defined(PK_DEDUP_IMPLEMENTATION) && !defined(PK_DEDUP_IMPLEMENTATION_DONE)
#define PK_DEDUP_IMPLEMENTATION_DONE

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
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

/* ---- Data structures -------------------------------------------------------------------------

   pk_dedup         a power-of-two array of buckets, each one 64-byte cache line.
   bucket           lock (4 bytes) + head of a doubly linked chain of in-flight calls + this
                    bucket's stat counters. The lock protects the chain, every call linked in it
                    (its `shared` pointer, its links) and the counters executions, coalesced and
                    in_flight. `timeouts` is bumped atomically without the lock. Stats are striped
                    this way so that counting costs no extra cache line and no extra atomic.
   call             one execution in flight. It lives on the LEADER's stack: the uncontended call
                    allocates nothing. Invariant: a call is linked in its bucket from the moment its
                    leader inserts it until the leader finishes fn or forget detaches it, and no one
                    touches it except under the bucket lock; the leader unlinks (if still linked)
                    under that lock before returning, so its stack frame is never seen afterwards.
   shared           made by the first follower (under the bucket lock, installed in call->shared)
                    and from then on the only thing followers and results point at: mutex +
                    condition variable for the wait, the result, `waiting` (followers still waiting,
                    under mu) and `refs` (atomic: the leader + every follower that joined; the last
                    reference dropped frees the value and the block). Followers join only while the
                    call is linked, the leader publishes only after unlinking, so `waiting` at
                    publication counts exactly the receivers other than the leader.
   results          res->call_ is NULL (nothing held), the dedup itself (the leader had no
                    followers and owns the value alone: release frees it directly), or a shared
                    block (release drops one reference).                                          */

typedef struct pk_dedup__shared {
    pthread_mutex_t mu;   /* protects done, rc, value, len, shared, waiting */
    pthread_cond_t cv;    /* broadcast once, when done becomes 1 */
    int done, rc, shared;
    void *value;
    size_t len;
    unsigned waiting;     /* followers still waiting (not timed out) */
    unsigned refs;        /* atomic */
} pk_dedup__shared;

typedef struct pk_dedup__call {
    struct pk_dedup__call *next, **pprev; /* bucket chain; pprev == NULL once unlinked */
    uint64_t hash;
    const void *key;                      /* the leader's key bytes (valid while linked) */
    size_t klen;
    pthread_t leader;                     /* for -EDEADLK */
    pk_dedup__shared *shared;             /* NULL until the first follower joins */
} pk_dedup__call;

#define PK_DEDUP__LINE 64
typedef struct pk_dedup__bucket_s {
    unsigned lock;                  /* 0 free, 1 held */
    pk_dedup__call *head;
    uint64_t executions, coalesced; /* written under lock, read atomically */
    uint64_t timeouts;              /* atomic add */
    uint64_t in_flight;             /* written under lock */
} pk_dedup__bucket_s;
typedef union pk_dedup__bucket {
    pk_dedup__bucket_s b;
    char line_[PK_DEDUP__LINE];
} pk_dedup__bucket;

struct pk_dedup {
    pk_dedup__bucket *buckets;      /* aligned to PK_DEDUP__LINE inside mem */
    void *mem;
    size_t mask;
    void (*free_value)(void *value, void *user);
    void *user;
};

/* ---- helpers ---- */

static uint64_t pk_dedup__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pk_dedup__pause(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_ia32_pause();
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
    __asm__ __volatile__("yield");
#endif
}

/* Test-and-test-and-set with a short spin, then sched_yield: hold times are a few dozen
   instructions, so a futex would only add a system call on the (rare) contended path, and a
   pthread_mutex_t (40 bytes) would not leave room for the chain and stats in one cache line. */
static void pk_dedup__lock_slow(unsigned *l)
{
    int spins = 0;
    do {
        while (__atomic_load_n(l, __ATOMIC_RELAXED) != 0) {
            if (++spins < 64) pk_dedup__pause();
            else {
                sched_yield();
                spins = 0;
            }
        }
    } while (__atomic_exchange_n(l, 1u, __ATOMIC_ACQUIRE) != 0);
}

#define pk_dedup__lock(l)                                                                          \
    do {                                                                                           \
        if (__atomic_exchange_n((l), 1u, __ATOMIC_ACQUIRE) != 0) pk_dedup__lock_slow(l);           \
    } while (0)

static void pk_dedup__unlock(unsigned *l) { __atomic_store_n(l, 0u, __ATOMIC_RELEASE); }

/* Counters written under the bucket lock but read without it: a plain read-modify-write made
   of two relaxed atomic accesses costs nothing over ++ and keeps the lock-free reads defined. */
static void pk_dedup__bump(uint64_t *c, uint64_t by)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + by, __ATOMIC_RELAXED);
}

/* 64-bit hash of the key. Keys of up to 16 bytes (the common case) take two possibly overlapping
   loads and no loop; longer keys are folded 16 bytes at a time. Quality only spreads buckets
   (equality is always checked with memcmp), so speed wins: this is on the hot path. */
static uint64_t pk_dedup__rd64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}
static uint64_t pk_dedup__rd32(const unsigned char *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}
static uint64_t pk_dedup__hash(const void *key, size_t n)
{
    const unsigned char *p = (const unsigned char *)key;
    uint64_t a, b, h = (uint64_t)n * 0x9E3779B97F4A7C15ull;
    if (n <= 16) {
        if (n >= 8) {
            a = pk_dedup__rd64(p);
            b = pk_dedup__rd64(p + n - 8);
        } else if (n >= 4) {
            a = pk_dedup__rd32(p);
            b = pk_dedup__rd32(p + n - 4);
        } else if (n > 0) {
            a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t left = n;
        a = b = 0;
        while (left > 16) {
            a = (a ^ pk_dedup__rd64(p)) * 0x87C37B91114253D5ull;
            b = (b ^ pk_dedup__rd64(p + 8)) * 0x4CF5AD432745937Full;
            a = (a << 31) | (a >> 33);
            b = (b << 29) | (b >> 35);
            p += 16;
            left -= 16;
        }
        a ^= pk_dedup__rd64(p + left - 16);
        b ^= pk_dedup__rd64(p + left - 8);
    }
    /* two independent multiplies, then the splitmix64 finaliser */
    h ^= (a ^ 0xA0761D6478BD642Full) * 0xE7037ED1A0B428DBull;
    h ^= ((b ^ 0x8EBC6AF09C88C6E3ull) * 0x589965CC75374CC3ull) >> 7;
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 31;
    return h;
}

static pk_dedup__call *pk_dedup__find(pk_dedup__bucket_s *b, uint64_t h, const void *key, size_t klen)
{
    pk_dedup__call *c;
    for (c = b->head; c; c = c->next)
        if (c->hash == h && c->klen == klen && (klen == 0 || memcmp(c->key, key, klen) == 0)) return c;
    return NULL;
}

static void pk_dedup__unlink(pk_dedup__call *c)
{
    *c->pprev = c->next;
    if (c->next) c->next->pprev = c->pprev;
    c->next = NULL;
    c->pprev = NULL;
}

static void pk_dedup__free_value(pk_dedup *d, void *value)
{
    if (!value) return;
    if (d->free_value) d->free_value(value, d->user);
    else PK_FREE(value);
}

static pk_dedup__shared *pk_dedup__shared_new(void)
{
    pk_dedup__shared *s = (pk_dedup__shared *)PK_MALLOC(sizeof *s);
    pthread_condattr_t ca;
    int ok;
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        PK_FREE(s);
        return NULL;
    }
    ok = pthread_condattr_init(&ca) == 0;
    if (ok) {
#if !defined(__APPLE__)
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
#endif
        ok = pthread_cond_init(&s->cv, &ca) == 0;
        pthread_condattr_destroy(&ca);
    }
    if (!ok) {
        pthread_mutex_destroy(&s->mu);
        PK_FREE(s);
        return NULL;
    }
    return s;
}

static void pk_dedup__shared_free(pk_dedup__shared *s)
{
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    PK_FREE(s);
}

static void pk_dedup__shared_put(pk_dedup *d, pk_dedup__shared *s)
{
    if (__atomic_sub_fetch(&s->refs, 1u, __ATOMIC_ACQ_REL) != 0) return;
    /* Last reference: done is 1 (the leader's reference outlives publication). */
    pk_dedup__free_value(d, s->value);
    pk_dedup__shared_free(s);
}

/* Waits on s->cv until done or the monotonic deadline passes. Called with s->mu held. One timed
   wait covers at most 2^28 s (8.5 years): a far deadline cannot overflow a 32-bit time_t or the
   realtime conversion; a wait that ends early just loops. */
static void pk_dedup__wait(pk_dedup__shared *s, uint64_t deadline)
{
    const uint64_t max_wait = ((uint64_t)1 << 28) * 1000000000u;
    struct timespec ts;
    while (!s->done) {
        uint64_t now, until;
        if (deadline == PK_FOREVER) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        now = pk_dedup__now_ns();
        if (now >= deadline) return;
        until = deadline - now > max_wait ? now + max_wait : deadline;
#if defined(__APPLE__)
        {   /* no pthread_condattr_setclock: convert the remaining time to the realtime clock */
            uint64_t abs_ns;
            clock_gettime(CLOCK_REALTIME, &ts);
            abs_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + (until - now);
            ts.tv_sec = (time_t)(abs_ns / 1000000000u);
            ts.tv_nsec = (long)(abs_ns % 1000000000u);
        }
#else
        ts.tv_sec = (time_t)(until / 1000000000u);
        ts.tv_nsec = (long)(until % 1000000000u);
#endif
        pthread_cond_timedwait(&s->cv, &s->mu, &ts); /* the loop looks at done and the clock again */
    }
}

/* ---- API ---- */

PK_DEDUP_DEF int pk_dedup_create(pk_dedup **out, const pk_dedup_config *cfg)
{
    pk_dedup *d;
    size_t n = 1, want, i;
    if (!out) return -EINVAL;
    *out = NULL;
    if (cfg && cfg->shards) {
        want = cfg->shards > (1u << 20) ? (size_t)1 << 20 : (size_t)cfg->shards;
    } else {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        want = (size_t)(cpus > 0 ? cpus : 1) * 128;
        if (want < 256) want = 256;
        if (want > 8192) want = 8192;
    }
    while (n < want) n <<= 1;
    d = (pk_dedup *)PK_MALLOC(sizeof *d);
    if (!d) return -ENOMEM;
    d->mem = PK_MALLOC(n * sizeof(pk_dedup__bucket) + PK_DEDUP__LINE);
    if (!d->mem) {
        PK_FREE(d);
        return -ENOMEM;
    }
    d->buckets = (pk_dedup__bucket *)(void *)(((uintptr_t)d->mem + PK_DEDUP__LINE - 1) &
                                              ~(uintptr_t)(PK_DEDUP__LINE - 1));
    memset(d->buckets, 0, n * sizeof(pk_dedup__bucket));
    for (i = 0; i < n; i++) d->buckets[i].b.head = NULL;
    d->mask = n - 1;
    d->free_value = cfg ? cfg->free_value : NULL;
    d->user = cfg ? cfg->user : NULL;
    *out = d;
    return 0;
}

PK_DEDUP_DEF void pk_dedup_destroy(pk_dedup *d)
{
    if (!d) return;
    PK_FREE(d->mem);
    PK_FREE(d);
}

/* Hot path: the leader branch below (no allocation, no system call, no clock read). */
PK_DEDUP_DEF int pk_dedup_do(pk_dedup *d, const void *key, size_t klen, pk_dedup_fn fn, void *arg,
                             uint64_t timeout_ns, pk_dedup_result *res)
{
    pk_dedup__bucket_s *b;
    pk_dedup__call self, *c;
    pk_dedup__shared *spare = NULL, *s;
    uint64_t h, deadline = PK_FOREVER;
    int have_deadline = 0, alloc_failed = 0, rc;
    void *value;
    size_t len;

    if (!res) return -EINVAL;
    res->value = NULL;
    res->len = 0;
    res->shared = 0;
    res->call_ = NULL;
    if (!d || !fn || (!key && klen)) return res->rc = -EINVAL;

    h = pk_dedup__hash(key, klen);
    b = &d->buckets[h & d->mask].b;
    pk_dedup__lock(&b->lock);
    for (;;) {
        c = pk_dedup__find(b, h, key, klen);
        if (!c) break; /* lead */
        if (pthread_equal(c->leader, pthread_self())) {
            rc = -EDEADLK;
            goto refused;
        }
        if (timeout_ns == 0) {
            __atomic_add_fetch(&b->timeouts, 1u, __ATOMIC_RELAXED);
            rc = -ETIMEDOUT;
            goto refused;
        }
        if (!have_deadline) { /* fixed once, when this follower first finds the execution */
            have_deadline = 1;
            if (timeout_ns != PK_FOREVER) {
                uint64_t now = pk_dedup__now_ns();
                deadline = timeout_ns > PK_FOREVER - 1 - now ? PK_FOREVER : now + timeout_ns;
            }
        }
        s = c->shared;
        if (s) { /* join an execution that already has followers */
            __atomic_add_fetch(&s->refs, 1u, __ATOMIC_RELAXED);
            __atomic_add_fetch(&s->waiting, 1u, __ATOMIC_RELAXED);
            pk_dedup__bump(&b->coalesced, 1);
            pk_dedup__unlock(&b->lock);
            if (spare) pk_dedup__shared_free(spare);
            goto wait;
        }
        if (alloc_failed) {
            rc = -ENOMEM;
            goto refused;
        }
        if (spare) { /* first follower: install the block made outside the lock */
            s = spare;
            spare = NULL;
            s->refs = 2; /* the leader and this follower */
            s->waiting = 1;
            c->shared = s;
            pk_dedup__bump(&b->coalesced, 1);
            pk_dedup__unlock(&b->lock);
            goto wait;
        }
        /* Allocate without holding the bucket lock, then look again: the execution may have
           finished (we lead a new one) or another follower may have installed its block. */
        pk_dedup__unlock(&b->lock);
        spare = pk_dedup__shared_new();
        alloc_failed = spare == NULL;
        pk_dedup__lock(&b->lock);
    }

    /* Leader. */
    self.hash = h;
    self.key = key;
    self.klen = klen;
    self.leader = pthread_self();
    self.shared = NULL;
    self.next = b->head;
    self.pprev = &b->head;
    if (b->head) b->head->pprev = &self.next;
    b->head = &self;
    pk_dedup__bump(&b->executions, 1);
    pk_dedup__bump(&b->in_flight, 1);
    pk_dedup__unlock(&b->lock);
    if (spare) pk_dedup__shared_free(spare);

    value = NULL;
    len = 0;
    rc = fn(arg, &value, &len); /* no lock held */
    if (!value) len = 0;

    pk_dedup__lock(&b->lock);
    if (self.pprev) pk_dedup__unlink(&self); /* else forget detached it */
    pk_dedup__bump(&b->in_flight, (uint64_t)-1);
    s = self.shared;
    pk_dedup__unlock(&b->lock);

    res->rc = rc;
    res->value = value;
    res->len = len;
    if (!s) {
        res->call_ = value ? (void *)d : NULL;
        return rc;
    }
    pthread_mutex_lock(&s->mu);
    s->rc = rc;
    s->value = value;
    s->len = len;
    s->shared = __atomic_load_n(&s->waiting, __ATOMIC_RELAXED) > 0;
    s->done = 1;
    pthread_cond_broadcast(&s->cv);
    res->shared = s->shared;
    pthread_mutex_unlock(&s->mu);
    res->call_ = s;
    return rc;

wait:
    pthread_mutex_lock(&s->mu);
    pk_dedup__wait(s, deadline);
    if (s->done) {
        res->rc = s->rc;
        res->value = s->value;
        res->len = s->len;
        res->shared = s->shared;
        res->call_ = s;
        pthread_mutex_unlock(&s->mu);
        return res->rc;
    }
    __atomic_sub_fetch(&s->waiting, 1u, __ATOMIC_RELAXED); /* under mu: the leader reads it there */
    pthread_mutex_unlock(&s->mu);
    __atomic_add_fetch(&b->timeouts, 1u, __ATOMIC_RELAXED);
    pk_dedup__shared_put(d, s);
    return res->rc = -ETIMEDOUT;

refused: /* with the bucket lock held */
    pk_dedup__bump(&b->coalesced, 1);
    pk_dedup__unlock(&b->lock);
    if (spare) pk_dedup__shared_free(spare);
    return res->rc = rc;
}

PK_DEDUP_DEF void pk_dedup_release(pk_dedup *d, pk_dedup_result *res)
{
    void *call;
    if (!d || !res || !res->call_) return;
    call = res->call_;
    res->call_ = NULL;
    if (call == (void *)d) pk_dedup__free_value(d, (void *)(uintptr_t)res->value);
    else pk_dedup__shared_put(d, (pk_dedup__shared *)call);
    res->value = NULL;
    res->len = 0;
}

PK_DEDUP_DEF int pk_dedup_forget(pk_dedup *d, const void *key, size_t klen)
{
    pk_dedup__bucket_s *b;
    pk_dedup__call *c;
    uint64_t h;
    if (!d || (!key && klen)) return -EINVAL;
    h = pk_dedup__hash(key, klen);
    b = &d->buckets[h & d->mask].b;
    pk_dedup__lock(&b->lock);
    c = pk_dedup__find(b, h, key, klen);
    if (c) pk_dedup__unlink(c);
    pk_dedup__unlock(&b->lock);
    return c ? 0 : -ENOENT;
}

PK_DEDUP_DEF void pk_dedup_stats_get(pk_dedup *d, pk_dedup_stats *out)
{
    size_t i;
    uint64_t in_flight = 0;
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!d) return;
    for (i = 0; i <= d->mask; i++) {
        pk_dedup__bucket_s *b = &d->buckets[i].b;
        out->executions += __atomic_load_n(&b->executions, __ATOMIC_RELAXED);
        out->coalesced += __atomic_load_n(&b->coalesced, __ATOMIC_RELAXED);
        out->timeouts += __atomic_load_n(&b->timeouts, __ATOMIC_RELAXED);
        in_flight += __atomic_load_n(&b->in_flight, __ATOMIC_RELAXED);
    }
    out->calls = out->executions + out->coalesced;
    out->in_flight = (size_t)in_flight;
}

#endif /* PK_DEDUP_IMPLEMENTATION */

/* LICENSE
   This software is available under two licenses; choose the one you prefer.
   A) MIT License. Copyright (c) 2026 the pk authors. Permission is hereby granted, free of charge,
      to any person obtaining a copy of this software and associated documentation files (the
      "Software"), to deal in the Software without restriction, including without limitation the
      rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the
      Software, and to permit persons to whom the Software is furnished to do so, subject to the
      following conditions: The above copyright notice and this permission notice shall be included
      in all copies or substantial portions of the Software. THE SOFTWARE IS PROVIDED "AS IS",
      WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED.
   B) Public domain (www.unlicense.org). Anyone is free to copy, modify, publish, use, compile,
      sell, or distribute this software, for any purpose, commercial or non-commercial, and by any
      means. */
