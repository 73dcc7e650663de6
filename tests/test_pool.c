/* test_pool.c — tests for pk_pool.h: object pool and resource pool.
   Build: cc -O1 -g -pthread -Itests -I. tests/test_pool.c -o test_pool */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pk_test.h"

#define PK_MALLOC(n) pk_test_malloc(n)
#define PK_REALLOC(p, n) pk_test_realloc(p, n)
#define PK_FREE(p) pk_test_free(p)
/* maintain's test hook, between finding a leaked loan and marking it reported (see
   test_respool_leak_of_next_loan) */
static int leak_hook_armed, leak_hook_in, leak_hook_go;
static void leak_hook(void)
{
    if (!__atomic_exchange_n(&leak_hook_armed, 0, __ATOMIC_SEQ_CST)) return;
    __atomic_store_n(&leak_hook_in, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&leak_hook_go, __ATOMIC_SEQ_CST)) pk_test_sleep_ns(1000000);
}
#define PK_POOL__TEST_LEAK_FOUND() leak_hook()
#define PK_POOL_IMPLEMENTATION
#include "pk_pool.h"

#include <pthread.h>
#include <stdint.h>

/* ================================ object pool ================================================ */

typedef struct counters { long init, reset, fini, init_fail_at, init_calls; } counters;

static int c_init(void *o, void *u)
{
    counters *c = (counters *)u;
    long n = __atomic_add_fetch(&c->init_calls, 1, __ATOMIC_SEQ_CST);
    if (c->init_fail_at && n == c->init_fail_at) return -1;
    __atomic_add_fetch(&c->init, 1, __ATOMIC_SEQ_CST);
    memset(o, 0xAB, 8);
    return 0;
}
static void c_reset(void *o, void *u) { (void)o; __atomic_add_fetch(&((counters *)u)->reset, 1, __ATOMIC_SEQ_CST); }
static void c_fini(void *o, void *u) { (void)o; __atomic_add_fetch(&((counters *)u)->fini, 1, __ATOMIC_SEQ_CST); }

static void test_pool_bad_input(void)
{
    pk_pool *p = (pk_pool *)1;
    pk_pool_config c;
    int local;
    char *heap;
    void *o;
    memset(&c, 0, sizeof c);
    PK_CHECK_EQ(pk_pool_create(NULL, &c), -EINVAL);
    PK_CHECK_EQ(pk_pool_create(&p, NULL), -EINVAL);
    PK_CHECK(p == NULL);
    PK_CHECK_EQ(pk_pool_create(&p, &c), -EINVAL); /* size 0 */
    c.size = 8;
    c.align = 3;
    PK_CHECK_EQ(pk_pool_create(&p, &c), -EINVAL);
    c.align = 24;
    PK_CHECK_EQ(pk_pool_create(&p, &c), -EINVAL);
    c.align = 0;
    c.max = 4;
    c.prealloc = 5;
    PK_CHECK_EQ(pk_pool_create(&p, &c), -EINVAL);
    c.max = 0;
    c.prealloc = 0;
    c.size = (size_t)-1;
    PK_CHECK_EQ(pk_pool_create(&p, &c), -EINVAL);
    c.size = 64;
    c.prealloc = (size_t)-1 / 2; /* prealloc x size overflows: refused before anything is allocated */
    PK_CHECK_EQ(pk_pool_create(&p, &c), -EINVAL);
    PK_CHECK(p == NULL);
    c.prealloc = 0;
    c.size = 8;
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    PK_CHECK(pk_pool_acquire(NULL) == NULL);
    PK_CHECK_EQ(pk_pool_release(NULL, &local), -EINVAL);
    PK_CHECK_EQ(pk_pool_release(p, NULL), -EINVAL);
    PK_CHECK_EQ(pk_pool_release(p, &local), -EINVAL); /* stack address */
    heap = (char *)malloc(64);
    PK_CHECK_EQ(pk_pool_release(p, heap), -EINVAL); /* heap address the pool never gave */
    o = pk_pool_acquire(p);
    PK_CHECK(o != NULL);
    PK_CHECK_EQ(pk_pool_release(p, (char *)o + 1), -EINVAL); /* interior */
    PK_CHECK_EQ(pk_pool_release(p, (char *)o + 8), -EINVAL); /* next slot, never lent */
    PK_CHECK_EQ(pk_pool_release(p, (char *)o - 16), -EINVAL);
    PK_CHECK_EQ(pk_pool_release(p, o), 0);
    PK_CHECK_EQ(pk_pool_release(p, o), -EINVAL); /* double */
    free(heap);
    pk_pool_stats_get(NULL, NULL);
    pk_pool_destroy(NULL);
    pk_pool_flush(NULL);
    pk_pool_destroy(p);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

/* max reached -> NULL, counted; a release lets the next acquire through. */
static void bounds_case(size_t max)
{
    pk_pool *p;
    pk_pool_config c;
    pk_pool_stats st;
    void **v = (void **)calloc(max + 1, sizeof(void *));
    size_t i, j;
    memset(&c, 0, sizeof c);
    c.size = 24;
    c.max = max;
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    for (i = 0; i < max; i++) {
        v[i] = pk_pool_acquire(p);
        PK_CHECK_MSG(v[i] != NULL, "max %zu: acquire %zu failed", max, i);
        for (j = 0; j < i; j++) PK_CHECK(v[j] != v[i]);
    }
    PK_CHECK(pk_pool_acquire(p) == NULL);
    PK_CHECK(pk_pool_acquire(p) == NULL);
    pk_pool_stats_get(p, &st);
    PK_CHECK_EQ(st.exhausted, 2);
    PK_CHECK_EQ(st.in_use, max);
    PK_CHECK_EQ(st.peak_in_use, max);
    PK_CHECK_EQ(st.created, max);
    PK_CHECK_EQ(pk_pool_release(p, v[max / 2]), 0);
    v[max / 2] = pk_pool_acquire(p);
    PK_CHECK(v[max / 2] != NULL);
    for (i = 0; i < max; i++) PK_CHECK_EQ(pk_pool_release(p, v[i]), 0);
    pk_pool_stats_get(p, &st);
    PK_CHECK_EQ(st.in_use, 0);
    PK_CHECK_EQ(st.idle, max);
    PK_CHECK_EQ(st.acquires, max + 1);
    pk_pool_destroy(p);
    free(v);
}

static void test_pool_bounds(void)
{
    bounds_case(1);
    bounds_case(10);    /* too small for a thread cache */
    bounds_case(64);    /* cache of 8 */
    bounds_case(5000);  /* several chunks, full caches */
}

static void test_pool_alignment(void)
{
    size_t aligns[] = {0, 1, 2, 8, 16, 32, 64, 128, 4096, 65536};
    size_t sizes[] = {1, 3, 17, 100, 4097};
    size_t a, s, i;
    for (a = 0; a < sizeof aligns / sizeof aligns[0]; a++)
        for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            pk_pool *p;
            pk_pool_config c;
            void *v[100];
            size_t want = aligns[a] ? aligns[a] : 16;
            memset(&c, 0, sizeof c);
            c.size = sizes[s];
            c.align = aligns[a];
            c.prealloc = 10;
            PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
            for (i = 0; i < 100; i++) {
                v[i] = pk_pool_acquire(p);
                PK_CHECK(v[i] != NULL);
                PK_CHECK_MSG(((uintptr_t)v[i] & (want - 1)) == 0, "align %zu size %zu: %p", aligns[a], sizes[s], v[i]);
                memset(v[i], (int)i, sizes[s]); /* the whole object is ours (ASan checks) */
            }
            for (i = 0; i < 100; i++) PK_CHECK_EQ(pk_pool_release(p, v[i]), 0);
            pk_pool_destroy(p);
        }
}

static void test_pool_reuse_and_callbacks(void)
{
    pk_pool *p;
    pk_pool_config c;
    pk_pool_stats st;
    counters k;
    void *a, *b, *seen[3];
    int i, nseen = 0;
    memset(&c, 0, sizeof c);
    memset(&k, 0, sizeof k);
    c.size = 64;
    c.prealloc = 3;
    c.init = c_init;
    c.reset = c_reset;
    c.fini = c_fini;
    c.user = &k;
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    PK_CHECK_EQ(k.init, 3);
    a = pk_pool_acquire(p);
    PK_CHECK(a != NULL);
    PK_CHECK_EQ(((unsigned char *)a)[0], 0xAB); /* init ran on it, contents kept */
    PK_CHECK_EQ(pk_pool_release(p, a), 0);
    PK_CHECK_EQ(k.reset, 1);
    for (i = 0; i < 1000; i++) { /* the warm objects come back (the thread cache is a small FIFO ring) */
        int j, known = 0;
        b = pk_pool_acquire(p);
        for (j = 0; j < nseen; j++) known |= seen[j] == b;
        if (!known && nseen < 3) seen[nseen++] = b;
        else PK_CHECK(known);
        PK_CHECK_EQ(pk_pool_release(p, b), 0);
    }
    PK_CHECK_EQ(k.init, 3); /* nothing new made */
    PK_CHECK_EQ(k.reset, 1001);
    PK_CHECK_EQ(pk_pool_release(p, a), -EINVAL);
    PK_CHECK_EQ(k.reset, 1001); /* no reset on a refused release */
    pk_pool_stats_get(p, &st);
    PK_CHECK_EQ(st.created, 3);
    PK_CHECK_EQ(st.acquires, 1001);
    PK_CHECK_EQ(st.idle, 3);
    a = pk_pool_acquire(p); /* destroy with one lent: fini for it too */
    PK_CHECK(a != NULL);
    pk_pool_destroy(p);
    PK_CHECK_EQ(k.fini, 3);
}

static void test_pool_double_and_foreign(void)
{
    pk_pool *p, *q;
    pk_pool_config c;
    void *v[300], *w;
    int i, j;
    memset(&c, 0, sizeof c);
    c.size = 40;
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    PK_CHECK_EQ(pk_pool_create(&q, &c), 0);
    for (i = 0; i < 300; i++) v[i] = pk_pool_acquire(p);
    w = pk_pool_acquire(q);
    PK_CHECK_EQ(pk_pool_release(p, w), -EINVAL); /* another pool's object */
    PK_CHECK_EQ(pk_pool_release(q, v[0]), -EINVAL);
    for (i = 0; i < 300; i += 2) PK_CHECK_EQ(pk_pool_release(p, v[i]), 0);
    for (i = 0; i < 300; i += 2) PK_CHECK_EQ(pk_pool_release(p, v[i]), -EINVAL); /* double, cached */
    pk_pool_flush(p);
    for (i = 0; i < 300; i += 2) PK_CHECK_EQ(pk_pool_release(p, v[i]), -EINVAL); /* double, in depot */
    for (i = 0; i < 300; i += 2) v[i] = pk_pool_acquire(p);
    for (i = 0; i < 300; i++) /* all distinct: no double release got an object listed twice */
        for (j = i + 1; j < 300; j++) PK_CHECK(v[i] != v[j]);
    for (i = 0; i < 300; i++) PK_CHECK_EQ(pk_pool_release(p, v[i]), 0);
    PK_CHECK_EQ(pk_pool_release(q, w), 0);
    pk_pool_destroy(q);
    pk_pool_destroy(p);
}

static void test_pool_max_idle(void)
{
    pk_pool *p;
    pk_pool_config c;
    pk_pool_stats st;
    counters k;
    void *v[3000];
    long live_full, live_trimmed;
    int i;
    memset(&c, 0, sizeof c);
    memset(&k, 0, sizeof k);
    c.size = 64;
    c.max_idle = 4;
    c.init = c_init;
    c.fini = c_fini;
    c.user = &k;
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    for (i = 0; i < 3000; i++) v[i] = pk_pool_acquire(p);
    live_full = pk_test_alloc_live();
    for (i = 0; i < 3000; i++) PK_CHECK_EQ(pk_pool_release(p, v[i]), 0);
    pk_pool_flush(p);
    pk_pool_stats_get(p, &st);
    PK_CHECK_EQ(st.idle, 4);
    PK_CHECK_EQ(st.in_use, 0);
    PK_CHECK_EQ(st.created, 3000);
    PK_CHECK_EQ(st.freed, 2996);
    PK_CHECK_EQ(k.fini, 2996);
    live_trimmed = pk_test_alloc_live();
    PK_CHECK_MSG(live_trimmed < live_full, "empty chunks given back (%ld -> %ld allocations)", live_full, live_trimmed);
    for (i = 0; i < 3000; i++) v[i] = pk_pool_acquire(p); /* the pool grows again */
    for (i = 0; i < 3000; i++) PK_CHECK(v[i] != NULL);
    for (i = 0; i < 3000; i++) PK_CHECK_EQ(pk_pool_release(p, v[i]), 0);
    pk_pool_destroy(p);
    PK_CHECK_EQ(k.fini, k.init);
}

/* The release fast path remembers the chunk of the previous release (the hint). Chunks given back
   (max_idle) and chunks made again, possibly at the same addresses, must not fool it: stale
   pointers stay -EINVAL (read no freed memory: ASan), fresh ones are accepted once. */
static void test_pool_hint_after_chunk_reuse(void)
{
    static void *v[3000], *old[3000];
    pk_pool *p;
    pk_pool_config c;
    pk_pool_stats st;
    int i, round;
    memset(&c, 0, sizeof c);
    c.size = 64;
    c.max_idle = 1;
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    for (round = 0; round < 3; round++) {
        for (i = 0; i < 3000; i++) {
            v[i] = pk_pool_acquire(p);
            PK_CHECK(v[i] != NULL);
        }
        for (i = 0; i < 3000; i++) PK_CHECK_EQ(pk_pool_release(p, v[i]), 0);
        for (i = 0; i < 3000; i += 7) PK_CHECK_EQ(pk_pool_release(p, v[i]), -EINVAL); /* hint still valid */
        pk_pool_flush(p); /* cache -> depot -> trimmed: chunks go back to the allocator */
        for (i = 0; i < 3000; i += 7) PK_CHECK_EQ(pk_pool_release(p, v[i]), -EINVAL); /* stale */
        if (round > 0)
            for (i = 0; i < 3000; i += 13) PK_CHECK_EQ(pk_pool_release(p, old[i]), -EINVAL);
        memcpy(old, v, sizeof v);
    }
    pk_pool_stats_get(p, &st);
    PK_CHECK_EQ(st.in_use, 0);
    PK_CHECK(st.idle <= 1);
    pk_pool_destroy(p);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

static void test_pool_init_failure(void)
{
    pk_pool *p;
    pk_pool_config c;
    counters k;
    void *a;
    memset(&c, 0, sizeof c);
    memset(&k, 0, sizeof k);
    c.size = 32;
    c.prealloc = 5;
    c.init = c_init;
    c.fini = c_fini;
    c.user = &k;
    k.init_fail_at = 3;
    PK_CHECK_EQ(pk_pool_create(&p, &c), -ECANCELED);
    PK_CHECK_EQ(k.init, 2);
    PK_CHECK_EQ(k.fini, 2);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
    /* in acquire: NULL, and the slot is reused afterwards */
    memset(&k, 0, sizeof k);
    c.prealloc = 0;
    k.init_fail_at = 1;
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    PK_CHECK(pk_pool_acquire(p) == NULL);
    a = pk_pool_acquire(p);
    PK_CHECK(a != NULL);
    PK_CHECK_EQ(pk_pool_release(p, a), 0);
    pk_pool_destroy(p);
    PK_CHECK_EQ(k.fini, k.init);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

static void test_pool_big_objects(void)
{
    pk_pool *p;
    pk_pool_config c;
    void *v[8];
    int i;
    memset(&c, 0, sizeof c);
    c.size = 1 << 20;
    c.align = 4096;
    c.max = 8;
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    for (i = 0; i < 8; i++) {
        v[i] = pk_pool_acquire(p);
        PK_CHECK(v[i] != NULL);
        PK_CHECK(((uintptr_t)v[i] & 4095) == 0);
        memset(v[i], 1, 1 << 20);
    }
    PK_CHECK(pk_pool_acquire(p) == NULL);
    PK_CHECK_EQ(pk_pool_release(p, (char *)v[3] + 4096), -EINVAL);
    for (i = 0; i < 8; i++) PK_CHECK_EQ(pk_pool_release(p, v[i]), 0);
    pk_pool_destroy(p);
}

/* More live pools than the thread-local table has ways: each object goes back to its own pool. */
static void test_pool_many_pools(void)
{
    enum { NP = 21 };
    pk_pool *p[NP];
    pk_pool_config c;
    void *v[NP][10];
    int i, j, r;
    memset(&c, 0, sizeof c);
    for (i = 0; i < NP; i++) {
        c.size = (size_t)(8 + i * 8);
        PK_CHECK_EQ(pk_pool_create(&p[i], &c), 0);
    }
    for (r = 0; r < 50; r++) {
        for (i = 0; i < NP; i++)
            for (j = 0; j < 10; j++) v[i][j] = pk_pool_acquire(p[(i * 7) % NP]);
        for (i = 0; i < NP; i++)
            for (j = 0; j < 10; j++) {
                PK_CHECK_EQ(pk_pool_release(p[((i * 7) + 1) % NP], v[i][j]), -EINVAL);
                PK_CHECK_EQ(pk_pool_release(p[(i * 7) % NP], v[i][j]), 0);
            }
    }
    /* destroy and re-create (maybe at the same address): no mix-up with stale thread-local entries */
    for (i = 0; i < NP; i += 2) {
        pk_pool_destroy(p[i]);
        c.size = 16;
        PK_CHECK_EQ(pk_pool_create(&p[i], &c), 0);
    }
    for (i = 0; i < NP; i++) {
        void *o = pk_pool_acquire(p[i]);
        PK_CHECK(o != NULL);
        PK_CHECK_EQ(pk_pool_release(p[i], o), 0);
        PK_CHECK_EQ(pk_pool_release(p[i], o), -EINVAL);
    }
    for (i = 0; i < NP; i++) pk_pool_destroy(p[i]);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

/* ---- threads ---- */

typedef struct obj_t { long owner; long data[5]; } obj_t;

static int obj_init(void *o, void *u)
{
    (void)u;
    memset(o, 0, sizeof(obj_t)); /* a new object's bytes are unspecified until init sets them */
    return 0;
}

typedef struct hammer_arg {
    pk_pool *p;
    long id, iters, nulls, ops;
    uint64_t seed;
    obj_t **handoff; /* for cross-thread releases */
} hammer_arg;

static void *hammer(void *vp)
{
    hammer_arg *a = (hammer_arg *)vp;
    obj_t *held[32];
    int n = 0;
    long i;
    for (i = 0; i < a->iters; i++) {
        uint64_t r = pk_test_rand(&a->seed);
        if (n < 32 && (n == 0 || (r & 3) != 0)) {
            obj_t *o = (obj_t *)pk_pool_acquire(a->p);
            if (!o) {
                a->nulls++;
                continue;
            }
            /* ownership: nobody else may hold it */
            PK_CHECK_MSG(__atomic_exchange_n(&o->owner, a->id, __ATOMIC_SEQ_CST) == 0, "object %p had an owner", (void *)o);
            o->data[0] = a->id;
            held[n++] = o;
        } else {
            int k = (int)((r >> 8) % (uint64_t)n);
            obj_t *o = held[k];
            held[k] = held[--n];
            PK_CHECK(o->data[0] == a->id);
            if ((r >> 20) % 7 == 0) { /* hand it to the shared slot; release whatever was there */
                obj_t *prev;
                __atomic_store_n(&o->owner, 0, __ATOMIC_SEQ_CST);
                o->data[0] = -1;
                prev = __atomic_exchange_n(a->handoff, o, __ATOMIC_ACQ_REL);
                if (prev) PK_CHECK_EQ(pk_pool_release(a->p, prev), 0);
            } else {
                PK_CHECK(__atomic_exchange_n(&o->owner, 0, __ATOMIC_SEQ_CST) == a->id);
                PK_CHECK_EQ(pk_pool_release(a->p, o), 0);
                /* (no double release here: once released, another thread may legitimately have it) */
            }
        }
        a->ops++;
    }
    while (n) {
        obj_t *o = held[--n];
        __atomic_store_n(&o->owner, 0, __ATOMIC_SEQ_CST);
        PK_CHECK_EQ(pk_pool_release(a->p, o), 0);
    }
    return NULL;
}

static void hammer_case(size_t max, size_t max_idle, int threads)
{
    pk_pool *p;
    pk_pool_config c;
    pk_pool_stats st;
    pthread_t t[8];
    hammer_arg a[8];
    obj_t *handoff = NULL;
    long nulls = 0;
    int i;
    memset(&c, 0, sizeof c);
    c.size = sizeof(obj_t);
    c.max = max;
    c.max_idle = max_idle;
    c.init = obj_init;
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    for (i = 0; i < threads; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].p = p;
        a[i].id = i + 1;
        a[i].iters = pk_test_scale(200000);
        a[i].seed = (uint64_t)(i + 1) * 7919u;
        a[i].handoff = &handoff;
        pthread_create(&t[i], NULL, hammer, &a[i]);
    }
    for (i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        nulls += a[i].nulls;
    }
    if (handoff) PK_CHECK_EQ(pk_pool_release(p, handoff), 0);
    /* every thread holds at most 32 and the hand-off slot 1: max >= threads*32+1 never runs out */
    if (max >= (size_t)threads * 32 + 1) PK_CHECK_MSG(nulls == 0, "max %zu: %ld NULLs", max, nulls);
    pk_pool_stats_get(p, &st);
    PK_CHECK_EQ(st.in_use, 0);
    if (max) PK_CHECK(st.created - st.freed <= max);
    PK_CHECK(st.peak_in_use >= 1);
    if (max) PK_CHECK(st.peak_in_use <= max);
    pk_pool_destroy(p);
}

static void test_pool_threads(void)
{
    hammer_case(0, 0, 4);
    hammer_case(4 * 32 + 1, 0, 4); /* exact fit: reclaim from other caches must find the objects */
    hammer_case(40, 0, 4);         /* real exhaustion, NULLs allowed */
    hammer_case(0, 8, 4);          /* trimming while hammering */
}

/* A thread fills its cache and stays alive; another thread must still get all max objects. */
typedef struct park_arg { pk_pool *p; int n; volatile int phase; } park_arg;
static void *park_thread(void *vp)
{
    park_arg *a = (park_arg *)vp;
    void *v[64];
    int i;
    for (i = 0; i < a->n; i++) v[i] = pk_pool_acquire(a->p);
    for (i = 0; i < a->n; i++) PK_CHECK_EQ(pk_pool_release(a->p, v[i]), 0);
    __atomic_store_n(&a->phase, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&a->phase, __ATOMIC_SEQ_CST) != 2) pk_test_sleep_ns(100000);
    /* its cache was emptied by the thief: the pool must still work from here */
    for (i = 0; i < a->n; i++) v[i] = pk_pool_acquire(a->p);
    for (i = 0; i < a->n; i++) PK_CHECK(v[i] != NULL);
    for (i = 0; i < a->n; i++) PK_CHECK_EQ(pk_pool_release(a->p, v[i]), 0);
    return NULL;
}

static void test_pool_reclaim_from_live_thread(void)
{
    pk_pool *p;
    pk_pool_config c;
    pk_pool_stats st;
    park_arg a;
    pthread_t t;
    void *v[256];
    int i;
    memset(&c, 0, sizeof c);
    c.size = 16;
    c.max = 256; /* cache of 32 */
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    a.p = p;
    a.n = 64;
    a.phase = 0;
    pthread_create(&t, NULL, park_thread, &a);
    while (__atomic_load_n(&a.phase, __ATOMIC_SEQ_CST) != 1) pk_test_sleep_ns(100000);
    for (i = 0; i < 256; i++) {
        v[i] = pk_pool_acquire(p);
        PK_CHECK_MSG(v[i] != NULL, "acquire %d of 256 failed with objects idle in another thread", i);
    }
    PK_CHECK(pk_pool_acquire(p) == NULL);
    for (i = 0; i < 256; i++) PK_CHECK_EQ(pk_pool_release(p, v[i]), 0);
    __atomic_store_n(&a.phase, 2, __ATOMIC_SEQ_CST);
    pthread_join(t, NULL);
    pk_pool_stats_get(p, &st);
    PK_CHECK_EQ(st.in_use, 0);
    PK_CHECK_EQ(st.created, 256);
    pk_pool_destroy(p);
}

/* Objects cached by a thread that exits are not lost. */
static void *use_and_exit(void *vp)
{
    pk_pool *p = (pk_pool *)vp;
    void *v[20];
    int i;
    for (i = 0; i < 20; i++) v[i] = pk_pool_acquire(p);
    for (i = 0; i < 20; i++) PK_CHECK_EQ(pk_pool_release(p, v[i]), 0);
    return NULL;
}

static void test_pool_thread_exit(void)
{
    pk_pool *p;
    pk_pool_config c;
    pk_pool_stats st;
    pthread_t t;
    void *v[40];
    int i;
    memset(&c, 0, sizeof c);
    c.size = 16;
    c.max = 40; /* cache of 5 */
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    for (i = 0; i < 2; i++) {
        pthread_create(&t, NULL, use_and_exit, p);
        pthread_join(t, NULL);
    }
    pk_pool_stats_get(p, &st);
    PK_CHECK_EQ(st.in_use, 0);
    PK_CHECK_EQ(st.idle, 20);
    for (i = 0; i < 40; i++) PK_CHECK((v[i] = pk_pool_acquire(p)) != NULL);
    pk_pool_stats_get(p, &st);
    PK_CHECK_EQ(st.created, 40);
    for (i = 0; i < 40; i++) PK_CHECK_EQ(pk_pool_release(p, v[i]), 0);
    pk_pool_destroy(p);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

/* A pool destroyed while another thread still has a cache for it; a new pool (maybe at the same
   address) used by that thread afterwards. */
typedef struct late_arg { pk_pool *volatile p; volatile int phase; } late_arg;
static void *late_thread(void *vp)
{
    late_arg *a = (late_arg *)vp;
    void *o = pk_pool_acquire(a->p);
    PK_CHECK(o != NULL);
    PK_CHECK_EQ(pk_pool_release(a->p, o), 0);
    __atomic_store_n(&a->phase, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&a->phase, __ATOMIC_SEQ_CST) != 2) pk_test_sleep_ns(100000);
    o = pk_pool_acquire(a->p); /* the new pool */
    PK_CHECK(o != NULL);
    PK_CHECK_EQ(pk_pool_release(a->p, o), 0);
    PK_CHECK_EQ(pk_pool_release(a->p, o), -EINVAL);
    return NULL;
}

static void test_pool_destroy_with_foreign_caches(void)
{
    pk_pool_config c;
    late_arg a;
    pthread_t t;
    counters k;
    pk_pool *p;
    memset(&c, 0, sizeof c);
    memset(&k, 0, sizeof k);
    c.size = 48;
    c.init = c_init;
    c.fini = c_fini;
    c.user = &k;
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    a.p = p;
    a.phase = 0;
    pthread_create(&t, NULL, late_thread, &a);
    while (__atomic_load_n(&a.phase, __ATOMIC_SEQ_CST) != 1) pk_test_sleep_ns(100000);
    pk_pool_destroy(p); /* the other thread's cache holds an object: fini'd here */
    PK_CHECK_EQ(k.fini, k.init);
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    a.p = p;
    __atomic_store_n(&a.phase, 2, __ATOMIC_SEQ_CST);
    pthread_join(t, NULL);
    pk_pool_destroy(p);
    PK_CHECK_EQ(k.fini, k.init);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

/* ---- allocation-failure sweep ---- */

static int pool_scenario(void *ctx)
{
    pk_pool *p;
    pk_pool_config c;
    pk_pool_stats st;
    counters k;
    void *v[400];
    int i, rc, bad = 0;
    (void)ctx;
    memset(&c, 0, sizeof c);
    memset(&k, 0, sizeof k);
    c.size = 200;
    c.prealloc = 50;
    c.max_idle = 100;
    c.init = c_init;
    c.fini = c_fini;
    c.user = &k;
    rc = pk_pool_create(&p, &c);
    if (rc != 0) return rc == -ENOMEM && k.init == k.fini ? 0 : 1;
    for (i = 0; i < 400; i++) v[i] = pk_pool_acquire(p); /* NULL allowed: memory out */
    for (i = 0; i < 400; i++)
        if (v[i]) {
            if (pk_pool_release(p, v[i]) != 0) bad |= 2;
            if (pk_pool_release(p, v[i]) != -EINVAL) bad |= 4;
        }
    pk_pool_flush(p);
    v[0] = pk_pool_acquire(p); /* still usable: an idle object exists */
    if (!v[0]) bad |= 8;
    else if (pk_pool_release(p, v[0]) != 0) bad |= 16;
    pk_pool_stats_get(p, &st);
    if (st.in_use != 0) bad |= 32;
    pk_pool_destroy(p);
    if (k.init != k.fini) bad |= 64;
    return bad;
}

/* Trim drops the pool mutex while fini runs. (1) A detached thread that finished with the pool may
   still be in its exit-time trim when destroy runs: destroy must wait for that fini instead of
   freeing the memory under it (ASan reported a use after free). (2) Objects being finalised turn
   free when fini returns: an acquire must wait for them, not answer NULL below max. */
static pk_pool *slowfini_pool;
static int slowfini_calls, slowfini_running, slowfini_worker_done;
static void slowfini_fini(void *obj, void *user)
{
    (void)obj;
    (void)user;
    __atomic_store_n(&slowfini_running, 1, __ATOMIC_SEQ_CST);
    pk_test_sleep_ns(20000000);
    __atomic_add_fetch(&slowfini_calls, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&slowfini_running, 0, __ATOMIC_SEQ_CST);
}
static void *slowfini_worker(void *arg)
{
    void *v[8];
    int i;
    (void)arg;
    for (i = 0; i < 8; i++) v[i] = pk_pool_acquire(slowfini_pool);
    for (i = 0; i < 8; i++) pk_pool_release(slowfini_pool, v[i]); /* into this thread's cache */
    __atomic_store_n(&slowfini_worker_done, 1, __ATOMIC_SEQ_CST);
    return NULL; /* the exit-time trim runs fini, 20 ms each */
}
static void *slowfini_acquirer(void *arg)
{
    void **got = (void **)arg;
    while (!__atomic_load_n(&slowfini_running, __ATOMIC_SEQ_CST)) pk_test_sleep_ns(1000000);
    got[0] = pk_pool_acquire(slowfini_pool);
    got[1] = pk_pool_acquire(slowfini_pool);
    return NULL;
}
static void test_pool_trim_fini_races(void)
{
    pk_pool_config cfg;
    pthread_t th;
    pthread_attr_t at;
    void *v[8], *got[2];
    pk_pool_stats st;
    int i;
    /* (1) destroy while a detached thread's exit-time trim runs fini */
    memset(&cfg, 0, sizeof cfg);
    cfg.size = 32;
    cfg.max_idle = 1;
    cfg.fini = slowfini_fini;
    slowfini_calls = slowfini_running = slowfini_worker_done = 0;
    PK_CHECK_EQ(pk_pool_create(&slowfini_pool, &cfg), 0);
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    PK_CHECK_EQ(pthread_create(&th, &at, slowfini_worker, NULL), 0);
    pthread_attr_destroy(&at);
    while (!__atomic_load_n(&slowfini_worker_done, __ATOMIC_SEQ_CST)) pk_test_sleep_ns(1000000);
    while (!__atomic_load_n(&slowfini_running, __ATOMIC_SEQ_CST)) pk_test_sleep_ns(1000000);
    pk_pool_stats_get(slowfini_pool, &st);
    PK_CHECK(st.created >= 8);
    pk_pool_destroy(slowfini_pool); /* no call on the pool is running: allowed */
    /* every object made was finalised once: by the exiting thread's trim or by destroy */
    PK_CHECK_EQ((uint64_t)__atomic_load_n(&slowfini_calls, __ATOMIC_SEQ_CST), st.created);
    /* (2) acquire while a release's trim finalises: max 8 (no thread cache), 7 in use */
    memset(&cfg, 0, sizeof cfg);
    cfg.size = 64;
    cfg.max = 8;
    cfg.max_idle = 1;
    cfg.fini = slowfini_fini;
    slowfini_calls = slowfini_running = 0;
    PK_CHECK_EQ(pk_pool_create(&slowfini_pool, &cfg), 0);
    for (i = 0; i < 8; i++) PK_CHECK((v[i] = pk_pool_acquire(slowfini_pool)) != NULL);
    PK_CHECK_EQ(pthread_create(&th, NULL, slowfini_acquirer, got), 0);
    pk_pool_release(slowfini_pool, v[0]);
    pk_pool_release(slowfini_pool, v[1]); /* 2 idle > max_idle 1: one is finalised (20 ms) */
    pthread_join(th, NULL);
    PK_CHECK_MSG(got[0] && got[1], "acquire returned NULL with an object being finalised (%p %p)", got[0], got[1]);
    pk_pool_stats_get(slowfini_pool, &st);
    PK_CHECK_EQ(st.exhausted, 0);
    for (i = 0; i < 2; i++)
        if (got[i]) pk_pool_release(slowfini_pool, got[i]);
    for (i = 2; i < 8; i++) pk_pool_release(slowfini_pool, v[i]);
    pk_pool_destroy(slowfini_pool);
}

/* Callbacks may call pools, nested: P's fini (run by a trim) releases to Q, whose trim runs Q's fini,
   which acquires from P at its max. That acquire must answer NULL, not wait for the object this
   very thread is finalising for P: the thread used to record only the innermost trim's pool (Q)
   and spin forever. Run on a thread so that a hang is a failed check. */
static pk_pool *nest_p, *nest_q;
static void *nest_q_obj;
static int nest_done, nest_inner_null;
static void nest_fini_p(void *o, void *u)
{
    (void)o;
    (void)u;
    if (nest_q_obj) {
        void *x = nest_q_obj;
        nest_q_obj = NULL;
        PK_CHECK_EQ(pk_pool_release(nest_q, x), 0); /* trims Q: Q's fini runs inside this one */
    }
}
static void nest_fini_q(void *o, void *u)
{
    void *a, *b;
    (void)o;
    (void)u;
    a = pk_pool_acquire(nest_p); /* P's other object: free */
    b = pk_pool_acquire(nest_p); /* P at max, its last object being finalised by this thread */
    nest_inner_null = a != NULL && b == NULL;
    if (a) PK_CHECK_EQ(pk_pool_release(nest_p, a), 0);
    if (b) PK_CHECK_EQ(pk_pool_release(nest_p, b), 0);
}
static void *nest_run(void *v)
{
    pk_pool_config c;
    void *a, *b, *q1;
    (void)v;
    memset(&c, 0, sizeof c);
    c.size = 32;
    c.max = 2; /* no per-thread cache (max / 8 < 4): every release goes to the depot */
    c.max_idle = 1;
    c.fini = nest_fini_p;
    PK_CHECK_EQ(pk_pool_create(&nest_p, &c), 0);
    c.fini = nest_fini_q;
    PK_CHECK_EQ(pk_pool_create(&nest_q, &c), 0);
    q1 = pk_pool_acquire(nest_q);
    nest_q_obj = pk_pool_acquire(nest_q);
    PK_CHECK_EQ(pk_pool_release(nest_q, q1), 0);
    a = pk_pool_acquire(nest_p);
    b = pk_pool_acquire(nest_p);
    PK_CHECK_EQ(pk_pool_release(nest_p, a), 0);
    PK_CHECK_EQ(pk_pool_release(nest_p, b), 0); /* P's depot over max_idle: trim, fini P, ... */
    __atomic_store_n(&nest_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}
static void test_pool_nested_fini_across_pools(void)
{
    pthread_t t;
    uint64_t t0 = pk_test_now_ns();
    int done;
    nest_done = nest_inner_null = 0;
    pthread_create(&t, NULL, nest_run, NULL);
    while (!(done = __atomic_load_n(&nest_done, __ATOMIC_SEQ_CST)) && pk_test_now_ns() - t0 < 10000000000ull)
        pk_test_sleep_ns(1000000);
    PK_CHECK_MSG(done, "nested fini across two pools: still spinning after 10 s");
    if (!done) return; /* the thread spins in acquire: leave it and its pools */
    pthread_join(t, NULL);
    PK_CHECK_EQ(nest_inner_null, 1);
    pk_pool_destroy(nest_q); /* first: its fini still uses P */
    pk_pool_destroy(nest_p);
}

/* An acquire at max waits for objects being finalised by another thread's trim, but (A) not from
   inside a fini: two threads whose fini callbacks acquire from each other's pools, each at max with
   one object in the other's fini, used to wait for each other forever; and (B) not forever: a
   fini blocked on a lock the acquirer holds hung both. Scenarios run on threads so that a hang is
   a failed check. */
static pk_pool *cross_p, *cross_q;
static pthread_barrier_t cross_b1, cross_b2;
static void *cross_got[2];
static int cross_staged[2], cross_done;
static void cross_fini(int which)
{
    if (__atomic_fetch_add(&cross_staged[which], 1, __ATOMIC_SEQ_CST)) return; /* the trim's fini only */
    pthread_barrier_wait(&cross_b1); /* both fini running */
    pthread_barrier_wait(&cross_b2); /* the last idle object of each pool taken */
    cross_got[which] = pk_pool_acquire(which ? cross_p : cross_q);
    if (cross_got[which]) PK_CHECK_EQ(pk_pool_release(which ? cross_p : cross_q, cross_got[which]), 0);
}
static void cross_fini_p(void *o, void *u)
{
    (void)o;
    (void)u;
    cross_fini(0);
}
static void cross_fini_q(void *o, void *u)
{
    (void)o;
    (void)u;
    cross_fini(1);
}
static void *cross_release(void *v)
{
    void **a = (void **)v;
    PK_CHECK_EQ(pk_pool_release((pk_pool *)a[0], a[1]), 0); /* over max_idle: trim, fini */
    return NULL;
}
static void *cross_run(void *v)
{
    pk_pool_config c;
    void *p1, *p2, *q1, *q2, *ax[2], *ay[2];
    pthread_t x, y;
    (void)v;
    memset(&c, 0, sizeof c);
    c.size = 64;
    c.max = 2; /* no thread caches */
    c.max_idle = 1;
    c.fini = cross_fini_p;
    PK_CHECK_EQ(pk_pool_create(&cross_p, &c), 0);
    c.fini = cross_fini_q;
    PK_CHECK_EQ(pk_pool_create(&cross_q, &c), 0);
    pthread_barrier_init(&cross_b1, NULL, 3);
    pthread_barrier_init(&cross_b2, NULL, 3);
    p1 = pk_pool_acquire(cross_p);
    p2 = pk_pool_acquire(cross_p);
    q1 = pk_pool_acquire(cross_q);
    q2 = pk_pool_acquire(cross_q);
    PK_CHECK_EQ(pk_pool_release(cross_p, p2), 0);
    PK_CHECK_EQ(pk_pool_release(cross_q, q2), 0);
    ax[0] = cross_p;
    ax[1] = p1;
    ay[0] = cross_q;
    ay[1] = q1;
    pthread_create(&x, NULL, cross_release, ax);
    pthread_create(&y, NULL, cross_release, ay);
    pthread_barrier_wait(&cross_b1);
    p2 = pk_pool_acquire(cross_p);
    q2 = pk_pool_acquire(cross_q);
    PK_CHECK(p2 != NULL && q2 != NULL);
    pthread_barrier_wait(&cross_b2);
    pthread_join(x, NULL);
    pthread_join(y, NULL);
    PK_CHECK_EQ(pk_pool_release(cross_p, p2), 0);
    PK_CHECK_EQ(pk_pool_release(cross_q, q2), 0);
    __atomic_store_n(&cross_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}
static pthread_mutex_t block_lock = PTHREAD_MUTEX_INITIALIZER;
static pk_pool *block_p;
static int block_in_fini, block_done;
static void *block_second;
static uint64_t block_ns;
static void block_fini(void *o, void *u)
{
    (void)o;
    (void)u;
    __atomic_store_n(&block_in_fini, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&block_lock); /* held by the acquirer below */
    pthread_mutex_unlock(&block_lock);
}
static void *block_release(void *x)
{
    PK_CHECK_EQ(pk_pool_release(block_p, x), 0); /* over max_idle: trim, fini waits for the lock */
    return NULL;
}
static void *block_run(void *v)
{
    pk_pool_config c;
    void *x, *y;
    pthread_t t;
    uint64_t t0;
    (void)v;
    memset(&c, 0, sizeof c);
    c.size = 64;
    c.max = 2;
    c.max_idle = 1;
    c.fini = block_fini;
    PK_CHECK_EQ(pk_pool_create(&block_p, &c), 0);
    x = pk_pool_acquire(block_p);
    y = pk_pool_acquire(block_p);
    PK_CHECK_EQ(pk_pool_release(block_p, y), 0);
    pthread_mutex_lock(&block_lock);
    pthread_create(&t, NULL, block_release, x);
    while (!__atomic_load_n(&block_in_fini, __ATOMIC_SEQ_CST)) pk_test_sleep_ns(1000000);
    y = pk_pool_acquire(block_p); /* the idle one */
    PK_CHECK(y != NULL);
    t0 = pk_test_now_ns();
    block_second = pk_pool_acquire(block_p); /* 1 lent, 1 in a fini that waits for us: NULL */
    block_ns = pk_test_now_ns() - t0;
    pthread_mutex_unlock(&block_lock);
    pthread_join(t, NULL);
    if (y) PK_CHECK_EQ(pk_pool_release(block_p, y), 0);
    __atomic_store_n(&block_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}
static int wait_flag(int *flag, uint64_t ns)
{
    uint64_t t0 = pk_test_now_ns();
    while (!__atomic_load_n(flag, __ATOMIC_SEQ_CST))
        if (pk_test_now_ns() - t0 > ns) return 0;
        else pk_test_sleep_ns(1000000);
    return 1;
}
static void test_pool_fini_waits_are_bounded(void)
{
    pthread_t t;
    cross_done = block_done = block_in_fini = 0;
    cross_staged[0] = cross_staged[1] = 0;
    pthread_create(&t, NULL, cross_run, NULL);
    if (!wait_flag(&cross_done, 10000000000ull)) {
        PK_CHECK_MSG(0, "two fini callbacks acquiring from each other's pools: still waiting after 10 s");
        return; /* stuck threads: leave their pools alone */
    }
    pthread_join(t, NULL);
    pk_pool_destroy(cross_p);
    pk_pool_destroy(cross_q);
    pthread_barrier_destroy(&cross_b1);
    pthread_barrier_destroy(&cross_b2);
    pthread_create(&t, NULL, block_run, NULL);
    if (!wait_flag(&block_done, 10000000000ull)) {
        PK_CHECK_MSG(0, "acquire waiting for a fini that waits for the acquirer: still waiting after 10 s");
        return;
    }
    pthread_join(t, NULL);
    PK_CHECK(block_second == NULL);
    PK_CHECK_MSG(block_ns >= 900000000u && block_ns < 5000000000ull, "gave up after %llu ns (1 s expected)",
                 (unsigned long long)block_ns);
    pk_pool_destroy(block_p);
}

static void test_pool_alloc_failures(void)
{
    long n = pk_test_alloc_sweep("object pool", pool_scenario, NULL);
    PK_CHECK(n >= 5);
}

/* ================================ resource pool ============================================== */

typedef struct res_t { long id; int healthy; int lent; } res_t;

typedef struct rctx {
    long made, destroyed, next_id, validations, leaks_reported;
    int fail_mode;      /* 0 never, 1 always, 2 every other (by a shared counter), 3 next one only */
    int fail_rc;
    long fail_counter;
    uint64_t now;       /* fake clock */
    int use_fake_clock;
    long last_leak_id;
    uint64_t last_leak_held;
    uint64_t create_sleep_ns;
} rctx;

static int r_create(void **res, void *u)
{
    rctx *c = (rctx *)u;
    res_t *r;
    long n = __atomic_add_fetch(&c->fail_counter, 1, __ATOMIC_SEQ_CST);
    if (c->create_sleep_ns) pk_test_sleep_ns(c->create_sleep_ns);
    if (c->fail_mode == 1 || (c->fail_mode == 2 && (n & 1)) || (c->fail_mode == 3 && (c->fail_mode = 0, 1)))
        return c->fail_rc ? c->fail_rc : -ECONNREFUSED;
    r = (res_t *)malloc(sizeof *r);
    if (!r) return -ENOMEM;
    r->id = __atomic_add_fetch(&c->next_id, 1, __ATOMIC_SEQ_CST);
    r->healthy = 1;
    r->lent = 0;
    __atomic_add_fetch(&c->made, 1, __ATOMIC_SEQ_CST);
    *res = r;
    return 0;
}
static void r_destroy(void *res, void *u)
{
    rctx *c = (rctx *)u;
    __atomic_add_fetch(&c->destroyed, 1, __ATOMIC_SEQ_CST);
    free(res);
}
static int r_validate(void *res, void *u)
{
    __atomic_add_fetch(&((rctx *)u)->validations, 1, __ATOMIC_SEQ_CST);
    return ((res_t *)res)->healthy ? 0 : -EIO;
}
static void r_leak(void *res, uint64_t held, void *u)
{
    rctx *c = (rctx *)u;
    c->leaks_reported++;
    c->last_leak_id = ((res_t *)res)->id;
    c->last_leak_held = held;
}
static uint64_t r_clock(void *u) { return __atomic_load_n(&((rctx *)u)->now, __ATOMIC_SEQ_CST); }

static void rcfg(pk_respool_config *c, rctx *x, size_t min, size_t max)
{
    memset(c, 0, sizeof *c);
    c->min = min;
    c->max = max;
    c->create = r_create;
    c->destroy = r_destroy;
    c->user = x;
}

static void test_respool_bad_input(void)
{
    pk_respool *p = (pk_respool *)1;
    pk_respool_config c;
    rctx x;
    void *r, *r2;
    int local;
    memset(&x, 0, sizeof x);
    rcfg(&c, &x, 0, 0);
    PK_CHECK_EQ(pk_respool_create(NULL, &c), -EINVAL);
    PK_CHECK_EQ(pk_respool_create(&p, NULL), -EINVAL);
    PK_CHECK(p == NULL);
    PK_CHECK_EQ(pk_respool_create(&p, &c), -EINVAL); /* max 0 */
    c.max = 2;
    c.min = 3;
    PK_CHECK_EQ(pk_respool_create(&p, &c), -EINVAL); /* max < min */
    c.min = 1;
    c.create = NULL;
    PK_CHECK_EQ(pk_respool_create(&p, &c), -EINVAL);
    c.create = r_create;
    c.destroy = NULL;
    PK_CHECK_EQ(pk_respool_create(&p, &c), -EINVAL);
    c.destroy = r_destroy;
    PK_CHECK_EQ(pk_respool_create(&p, &c), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, NULL, 0), -EINVAL);
    PK_CHECK_EQ(pk_respool_acquire(NULL, &r, 0), -EINVAL);
    PK_CHECK_EQ(pk_respool_release(p, &local), -EINVAL);
    PK_CHECK_EQ(pk_respool_release(p, NULL), -EINVAL);
    PK_CHECK_EQ(pk_respool_invalidate(p, &local), -EINVAL);
    PK_CHECK_EQ(pk_respool_acquire(p, &r, 0), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r2, 0), 0);
    PK_CHECK_EQ(pk_respool_release(p, r), 0);
    PK_CHECK_EQ(pk_respool_release(p, r), -EINVAL); /* idle now: not lent */
    PK_CHECK_EQ(pk_respool_invalidate(p, r), -EINVAL);
    PK_CHECK_EQ(pk_respool_invalidate(p, r2), 0);
    PK_CHECK_EQ(pk_respool_release(p, r2), -EINVAL); /* gone */
    PK_CHECK_EQ(pk_respool_release(NULL, r2), -EINVAL);
    PK_CHECK_EQ(pk_respool_maintain(NULL), 0);
    pk_respool_stats_get(NULL, NULL);
    pk_respool_destroy(NULL);
    pk_respool_destroy(p);
    PK_CHECK_EQ(x.made, x.destroyed);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

static void test_respool_min_and_create_failure(void)
{
    pk_respool *p;
    pk_respool_config c;
    pk_respool_stats st;
    rctx x;
    void *r, *lent[3];
    int i;
    memset(&x, 0, sizeof x);
    rcfg(&c, &x, 3, 5);
    PK_CHECK_EQ(pk_respool_create(&p, &c), 0);
    pk_respool_stats_get(p, &st);
    PK_CHECK_EQ(st.total, 3);
    PK_CHECK_EQ(st.idle, 3);
    PK_CHECK_EQ(st.created, 3);
    /* a dead backend: the caller gets create's error, the slot is free again */
    x.fail_mode = 1;
    x.fail_rc = -EHOSTUNREACH;
    PK_CHECK_EQ(pk_respool_acquire(p, &lent[0], 0), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &lent[1], 0), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &lent[2], 0), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r, 0), -EHOSTUNREACH);
    PK_CHECK_EQ(pk_respool_acquire(p, &r, 1000000), -EHOSTUNREACH);
    pk_respool_stats_get(p, &st);
    PK_CHECK_EQ(st.total, 3);
    PK_CHECK_EQ(st.create_failures, 2);
    PK_CHECK_EQ(st.in_use, 3);
    pk_respool_destroy(p); /* three lent: reported, not destroyed */
    PK_CHECK_EQ(x.destroyed, 0);
    for (i = 0; i < 3; i++) r_destroy(lent[i], &x); /* the borrower disposes of them */
    /* create at pool creation fails: the error, nothing leaked */
    memset(&x, 0, sizeof x);
    rcfg(&c, &x, 3, 5);
    x.fail_mode = 3;
    PK_CHECK_EQ(pk_respool_create(&p, &c), -ECONNREFUSED);
    memset(&x, 0, sizeof x);
    x.fail_counter = 0;
    x.fail_mode = 2; /* 1st fails... */
    PK_CHECK_EQ(pk_respool_create(&p, &c), -ECONNREFUSED);
    x.fail_counter = 1; /* 2nd call fails: one made then destroyed */
    PK_CHECK_EQ(pk_respool_create(&p, &c), -ECONNREFUSED);
    PK_CHECK_EQ(x.made, x.destroyed);
    PK_CHECK(x.made >= 1);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

static void test_respool_timeouts(void)
{
    pk_respool *p;
    pk_respool_config c;
    pk_respool_stats st;
    rctx x;
    void *r, *r2;
    uint64_t t0, el;
    uint64_t waits[] = {0, 1000000, 20000000, 60000000};
    size_t i;
    memset(&x, 0, sizeof x);
    rcfg(&c, &x, 1, 1);
    PK_CHECK_EQ(pk_respool_create(&p, &c), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r, 0), 0);
    for (i = 0; i < sizeof waits / sizeof waits[0]; i++) {
        t0 = pk_test_now_ns();
        PK_CHECK_EQ(pk_respool_acquire(p, &r2, waits[i]), -ETIMEDOUT);
        el = pk_test_now_ns() - t0;
        PK_CHECK_MSG(el >= waits[i], "timeout %llu returned after %llu ns", (unsigned long long)waits[i],
                     (unsigned long long)el);
        PK_CHECK_MSG(el < waits[i] + 250000000u, "timeout %llu ns took %llu ns", (unsigned long long)waits[i],
                     (unsigned long long)el);
    }
    pk_respool_stats_get(p, &st);
    PK_CHECK_EQ(st.timeouts, 4);
    PK_CHECK(st.wait_ns_max >= 60000000u);
    PK_CHECK(st.wait_ns_total >= 81000000u);
    PK_CHECK_EQ(st.waiting, 0);
    PK_CHECK_EQ(pk_respool_release(p, r), 0);
    pk_respool_destroy(p);
    PK_CHECK_EQ(x.made, x.destroyed);
}

/* Timeouts so short that the deadline passes before the caller has queued as a waiter (1 ns always
   does): each must return -ETIMEDOUT at once. The wait step used to wrap (deadline - now) and
   sleep 8.5 years. Runs on a thread so that a hang is a failed check, not a stuck test. */
typedef struct tiny_arg {
    pk_respool *p;
    int done, wrong;
} tiny_arg;
static void *tiny_waiter(void *vp)
{
    tiny_arg *a = (tiny_arg *)vp;
    static const uint64_t tmo[] = {1, 10, 100, 1000, 10000, 100000};
    void *r;
    int i;
    for (i = 0; i < 60; i++)
        if (pk_respool_acquire(a->p, &r, tmo[i % 6]) != -ETIMEDOUT) __atomic_add_fetch(&a->wrong, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&a->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}
static void test_respool_tiny_timeouts(void)
{
    pk_respool *p;
    pk_respool_config c;
    pk_respool_stats st;
    rctx x;
    tiny_arg a;
    pthread_t th;
    void *r;
    uint64_t t0;
    int finished;
    memset(&x, 0, sizeof x);
    rcfg(&c, &x, 1, 1);
    PK_CHECK_EQ(pk_respool_create(&p, &c), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r, 0), 0);
    memset(&a, 0, sizeof a);
    a.p = p;
    PK_CHECK_EQ(pthread_create(&th, NULL, tiny_waiter, &a), 0);
    t0 = pk_test_now_ns();
    while (!(finished = __atomic_load_n(&a.done, __ATOMIC_SEQ_CST)) && pk_test_now_ns() - t0 < 10000000000ull)
        pk_test_sleep_ns(1000000);
    PK_CHECK_MSG(finished, "60 acquires with timeouts of 1 ns to 100 us still running after 10 s");
    PK_CHECK_EQ(pk_respool_release(p, r), 0); /* unblocks a stuck waiter, if any */
    pthread_join(th, NULL);
    PK_CHECK_EQ(a.wrong, 0);
    pk_respool_stats_get(p, &st);
    PK_CHECK_EQ(st.timeouts, finished ? 60 : st.timeouts);
    PK_CHECK_EQ(st.waiting, 0);
    pk_respool_destroy(p);
    PK_CHECK_EQ(x.made, x.destroyed);
}

/* Two races between the lock-free release (which parks the resource, then serves a waiter that
   queued meanwhile under the lock) and the locked paths, staged with a clock_ns that holds chosen
   threads at chosen points. (1) maintain got the lock first, unparked the resources and retired
   old ones while waiters queued: freeing a retired one's slot handed the next idle resource to a
   waiter, and the loop then retired that one too, so the waiter got a destroyed resource (idle
   timeout) or spun forever in the table holding the lock (max lifetime). (2) the release that
   served the waiter did it through the idle list, so the waiter validated a resource handed
   straight from a release, which the contract says is not validated. */
static PK_POOL__TLS int stage_role; /* 1: held in clock_ns at gate A; 2: held at gate B */
static int stage_gate_a, stage_gate_b, stage_in_a, stage_in_b, stage_ids, stage_validations;
static uint64_t stage_now;
static void *stage_destroyed[16];
static int stage_ndestroyed;
static uint64_t stage_clock(void *u)
{
    (void)u;
    if (stage_role == 1) {
        __atomic_add_fetch(&stage_in_a, 1, __ATOMIC_SEQ_CST);
        while (!__atomic_load_n(&stage_gate_a, __ATOMIC_SEQ_CST)) pk_test_sleep_ns(1000000);
        stage_role = 0;
    } else if (stage_role == 2) {
        __atomic_store_n(&stage_in_b, 1, __ATOMIC_SEQ_CST);
        while (!__atomic_load_n(&stage_gate_b, __ATOMIC_SEQ_CST)) pk_test_sleep_ns(1000000);
        stage_role = 0;
        return 0;
    }
    return __atomic_load_n(&stage_now, __ATOMIC_SEQ_CST);
}
static int stage_create(void **res, void *u)
{
    int *x = (int *)malloc(sizeof *x);
    (void)u;
    if (!x) return -ENOMEM;
    *x = __atomic_add_fetch(&stage_ids, 1, __ATOMIC_SEQ_CST);
    *res = x;
    return 0;
}
static void stage_destroy(void *res, void *u)
{
    int i = __atomic_fetch_add(&stage_ndestroyed, 1, __ATOMIC_SEQ_CST);
    (void)u;
    if (i < 16) stage_destroyed[i] = res;
}
static int stage_validate(void *res, void *u)
{
    (void)res;
    (void)u;
    __atomic_add_fetch(&stage_validations, 1, __ATOMIC_SEQ_CST);
    return 0;
}
static pk_respool *stage_p;
static int stage_go, stage_done, stage_lent;
typedef struct stage_arg {
    void *res;
    int rc;
} stage_arg;
static void *stage_releaser(void *v) /* lends one, then releases it, held at gate A after the loan ended */
{
    stage_arg *a = (stage_arg *)v;
    PK_CHECK_EQ(pk_respool_acquire(stage_p, &a->res, 0), 0);
    __atomic_add_fetch(&stage_lent, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&stage_go, __ATOMIC_SEQ_CST)) pk_test_sleep_ns(1000000);
    stage_role = 1;
    a->rc = pk_respool_release(stage_p, a->res);
    __atomic_add_fetch(&stage_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}
static void *stage_waiter(void *v)
{
    stage_arg *a = (stage_arg *)v;
    a->rc = pk_respool_acquire(stage_p, &a->res, 5000000000ull);
    __atomic_add_fetch(&stage_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}
static void *stage_holder(void *v) /* releases by the locked path, held at gate B with the lock */
{
    stage_arg *a = (stage_arg *)v;
    stage_role = 2;
    a->rc = pk_respool_release(stage_p, a->res);
    __atomic_add_fetch(&stage_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}
static void *stage_maintain(void *v)
{
    (void)v;
    pk_respool_maintain(stage_p);
    __atomic_add_fetch(&stage_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}
static void stage_reset(void)
{
    stage_gate_a = stage_gate_b = stage_in_a = stage_in_b = stage_ids = stage_validations = 0;
    stage_now = 0;
    stage_ndestroyed = 0;
    stage_go = stage_done = stage_lent = 0;
}
static void stage_wait_waiting(size_t n)
{
    pk_respool_stats st;
    int i;
    for (i = 0; i < 5000; i++) {
        pk_respool_stats_get(stage_p, &st);
        if (st.waiting == n) return;
        pk_test_sleep_ns(1000000);
    }
    PK_CHECK_MSG(0, "never saw %zu waiters", n);
}

static void respool_maintain_vs_parked(int lifetime)
{
    pk_respool_config c;
    pk_respool_stats st;
    pthread_t r1, r2, w1, w2, h, m;
    stage_arg a1, a2, b1, b2, hz;
    uint64_t t0;
    int i, all;
    stage_reset();
    memset(&c, 0, sizeof c);
    memset(&a1, 0, sizeof a1);
    memset(&a2, 0, sizeof a2);
    memset(&b1, 0, sizeof b1);
    memset(&b2, 0, sizeof b2);
    memset(&hz, 0, sizeof hz);
    c.max = 3;
    c.create = stage_create;
    c.destroy = stage_destroy;
    c.clock_ns = stage_clock;
    if (lifetime) c.max_lifetime_ns = 1000;
    else c.idle_timeout_ns = 1000;
    PK_CHECK_EQ(pk_respool_create(&stage_p, &c), 0);
    pthread_create(&r1, NULL, stage_releaser, &a1);
    pthread_create(&r2, NULL, stage_releaser, &a2);
    while (__atomic_load_n(&stage_lent, __ATOMIC_SEQ_CST) < 2) pk_test_sleep_ns(1000000);
    PK_CHECK_EQ(pk_respool_acquire(stage_p, &hz.res, 0), 0); /* the third: released by the locked path */
    __atomic_store_n(&stage_go, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&stage_in_a, __ATOMIC_SEQ_CST) < 2) pk_test_sleep_ns(1000000); /* loans ended */
    pthread_create(&w1, NULL, stage_waiter, &b1);
    stage_wait_waiting(1);
    pthread_create(&w2, NULL, stage_waiter, &b2);
    stage_wait_waiting(2);
    pthread_create(&h, NULL, stage_holder, &hz);
    while (!__atomic_load_n(&stage_in_b, __ATOMIC_SEQ_CST)) pk_test_sleep_ns(1000000); /* holds the lock */
    pthread_create(&m, NULL, stage_maintain, NULL);
    pk_test_sleep_ns(50000000);                           /* maintain waits for the lock */
    __atomic_store_n(&stage_gate_a, 1, __ATOMIC_SEQ_CST); /* both park theirs, then wait for the lock */
    pk_test_sleep_ns(50000000);
    __atomic_store_n(&stage_now, 5000, __ATOMIC_SEQ_CST); /* all three are now old (or idle too long) */
    __atomic_store_n(&stage_gate_b, 1, __ATOMIC_SEQ_CST);
    t0 = pk_test_now_ns();
    while (!(all = __atomic_load_n(&stage_done, __ATOMIC_SEQ_CST) == 6) && pk_test_now_ns() - t0 < 10000000000ull)
        pk_test_sleep_ns(1000000);
    PK_CHECK_MSG(all, "maintain racing parked hand-offs: %d of 6 threads finished in 10 s", stage_done);
    if (!all) return; /* a thread spins holding the pool's lock: leave the pool alone */
    pthread_join(r1, NULL);
    pthread_join(r2, NULL);
    pthread_join(w1, NULL);
    pthread_join(w2, NULL);
    pthread_join(h, NULL);
    pthread_join(m, NULL);
    PK_CHECK_EQ(a1.rc, 0);
    PK_CHECK_EQ(a2.rc, 0);
    PK_CHECK_EQ(hz.rc, 0);
    PK_CHECK_EQ(b1.rc, 0);
    PK_CHECK_EQ(b2.rc, 0);
    for (i = 0; i < stage_ndestroyed && i < 16; i++) {
        PK_CHECK_MSG(stage_destroyed[i] != b1.res && stage_destroyed[i] != b2.res,
                     "a waiter holds destroyed resource %d", *(int *)stage_destroyed[i]);
    }
    pk_respool_stats_get(stage_p, &st);
    PK_CHECK_EQ(st.in_use, 2);
    PK_CHECK_EQ(st.waiting, 0);
    PK_CHECK(st.idle <= st.total && st.total <= 3);
    PK_CHECK_EQ(pk_respool_release(stage_p, b1.res), 0);
    PK_CHECK_EQ(pk_respool_release(stage_p, b2.res), 0);
    pk_respool_destroy(stage_p);
    for (i = 0; i < stage_ndestroyed && i < 16; i++) free(stage_destroyed[i]);
    PK_CHECK_EQ(stage_ndestroyed, stage_ids); /* every resource made was destroyed once */
}
static void test_respool_maintain_vs_parked(void)
{
    respool_maintain_vs_parked(1);
    respool_maintain_vs_parked(0);
}

static void *stage_open_after_waiter(void *v) /* queues a waiter while the release is held, then opens */
{
    pthread_t w;
    while (!__atomic_load_n(&stage_in_a, __ATOMIC_SEQ_CST)) pk_test_sleep_ns(1000000);
    pthread_create(&w, NULL, stage_waiter, v);
    stage_wait_waiting(1);
    __atomic_store_n(&stage_gate_a, 1, __ATOMIC_SEQ_CST);
    pthread_join(w, NULL);
    return NULL;
}
static void test_respool_fast_release_handoff_not_validated(void)
{
    pk_respool_config c;
    pthread_t opener;
    stage_arg x, got;
    int i;
    stage_reset();
    memset(&c, 0, sizeof c);
    memset(&x, 0, sizeof x);
    memset(&got, 0, sizeof got);
    c.max = 1;
    c.create = stage_create;
    c.destroy = stage_destroy;
    c.validate = stage_validate; /* validate_idle_ns 0: every idle resource is validated */
    c.max_lifetime_ns = 1000000000000ull; /* the release reads the clock: gate A */
    c.clock_ns = stage_clock;
    PK_CHECK_EQ(pk_respool_create(&stage_p, &c), 0);
    PK_CHECK_EQ(pk_respool_acquire(stage_p, &x.res, 0), 0);
    /* this thread's release (the lock-free one) is held at gate A after it ended the loan, while
       another thread queues a waiter; then it parks the resource and serves the waiter */
    pthread_create(&opener, NULL, stage_open_after_waiter, &got);
    stage_role = 1;
    PK_CHECK_EQ(pk_respool_release(stage_p, x.res), 0);
    stage_role = 0;
    pthread_join(opener, NULL);
    PK_CHECK_EQ(got.rc, 0);
    PK_CHECK(got.res == x.res);
    PK_CHECK_EQ(stage_validations, 0); /* handed straight from a release: not validated */
    PK_CHECK_EQ(pk_respool_release(stage_p, got.res), 0);
    pk_respool_destroy(stage_p);
    for (i = 0; i < stage_ndestroyed && i < 16; i++) free(stage_destroyed[i]);
    PK_CHECK_EQ(stage_ndestroyed, 1);
}

/* A parked resource that fails validation on the lock-free acquire: the caller keeps its slot and
   creates a new one, as when the bad one was idle. It used to give the slot up, so a waiter that
   queued during validate took it and the caller, first to come, got -ETIMEDOUT. */
static pk_respool *bad_p;
static int bad_gate, bad_validations;
static int bad_validate(void *res, void *u)
{
    pk_respool_stats st;
    int i;
    (void)res;
    (void)u;
    if (__atomic_add_fetch(&bad_validations, 1, __ATOMIC_SEQ_CST) > 1) return 0;
    __atomic_store_n(&bad_gate, 1, __ATOMIC_SEQ_CST); /* the first caller is validating */
    for (i = 0; i < 5000; i++) {                      /* until the second one waits */
        pk_respool_stats_get(bad_p, &st);
        if (st.waiting == 1) break;
        pk_test_sleep_ns(1000000);
    }
    return -EIO;
}
static void *bad_second(void *v)
{
    stage_arg *a = (stage_arg *)v;
    while (!__atomic_load_n(&bad_gate, __ATOMIC_SEQ_CST)) pk_test_sleep_ns(500000);
    a->rc = pk_respool_acquire(bad_p, &a->res, 5000000000ull);
    if (a->rc == 0) {
        pk_test_sleep_ns(50000000); /* held: the first caller cannot take it back meanwhile */
        PK_CHECK_EQ(pk_respool_release(bad_p, a->res), 0);
    }
    return NULL;
}
static void test_respool_bad_parked_keeps_slot(void)
{
    int parked;
    for (parked = 0; parked < 2; parked++) {
        pk_respool_config c;
        pk_respool_stats st;
        rctx x;
        stage_arg second;
        pthread_t t;
        void *r;
        memset(&x, 0, sizeof x);
        memset(&second, 0, sizeof second);
        rcfg(&c, &x, 0, 1);
        c.validate = bad_validate;
        c.validate_idle_ns = 0; /* every idle or parked resource is validated */
        bad_gate = bad_validations = 0;
        PK_CHECK_EQ(pk_respool_create(&bad_p, &c), 0);
        PK_CHECK_EQ(pk_respool_acquire(bad_p, &r, 0), 0); /* created: not validated */
        PK_CHECK_EQ(pk_respool_release(bad_p, r), 0);     /* the lock-free release parks it */
        if (!parked) pk_respool_stats_get(bad_p, &st);   /* moves it to the idle list */
        pthread_create(&t, NULL, bad_second, &second);
        PK_CHECK_EQ(pk_respool_acquire(bad_p, &r, 0), 0); /* first to come: the bad one's slot makes a new one */
        PK_CHECK_EQ(pk_respool_release(bad_p, r), 0);
        pthread_join(t, NULL);
        PK_CHECK_EQ(second.rc, 0);
        pk_respool_stats_get(bad_p, &st);
        PK_CHECK_EQ(st.validation_failures, 1);
        PK_CHECK_EQ(st.timeouts, 0);
        PK_CHECK(st.total <= 1);
        pk_respool_destroy(bad_p);
        PK_CHECK_EQ(x.made, x.destroyed);
    }
}

/* Leak reports are once per loan, so a loan that begins while maintain is reporting the one
   before it (same resource: released and re-lent without the lock) is still reported. Maintain
   used to mark the resource, not the loan, as reported: the new loan never was. */
static uint64_t lk_now;
static int lk_reports;
static uint64_t lk_clock(void *u)
{
    (void)u;
    return __atomic_load_n(&lk_now, __ATOMIC_SEQ_CST);
}
static void lk_on_leak(void *res, uint64_t held, void *u)
{
    (void)res;
    (void)held;
    (void)u;
    __atomic_add_fetch(&lk_reports, 1, __ATOMIC_SEQ_CST);
}
static void *lk_maintain(void *v)
{
    (void)v;
    pk_respool_maintain(bad_p);
    return NULL;
}
static void *lk_borrow(void *v)
{
    stage_arg *a = (stage_arg *)v;
    a->rc = pk_respool_acquire(bad_p, &a->res, 0); /* the lock-free claim of the parked resource */
    return NULL;
}
static void test_respool_leak_of_next_loan(void)
{
    pk_respool_config c;
    pk_respool_stats st;
    rctx x;
    stage_arg b;
    pthread_t m, t;
    void *r;
    memset(&x, 0, sizeof x);
    memset(&b, 0, sizeof b);
    rcfg(&c, &x, 1, 1);
    c.clock_ns = lk_clock;
    c.leak_ns = 100;
    c.on_leak = lk_on_leak;
    lk_now = 0;
    lk_reports = 0;
    leak_hook_in = leak_hook_go = 0;
    PK_CHECK_EQ(pk_respool_create(&bad_p, &c), 0);
    PK_CHECK_EQ(pk_respool_acquire(bad_p, &r, 0), 0); /* loan 1, at 0 */
    __atomic_store_n(&lk_now, 1000, __ATOMIC_SEQ_CST);  /* loan 1 is a leak */
    __atomic_store_n(&leak_hook_armed, 1, __ATOMIC_SEQ_CST);
    pthread_create(&m, NULL, lk_maintain, NULL);
    while (!__atomic_load_n(&leak_hook_in, __ATOMIC_SEQ_CST)) pk_test_sleep_ns(1000000); /* found it */
    PK_CHECK_EQ(pk_respool_release(bad_p, r), 0); /* loan 1 ends (lock-free) */
    pthread_create(&t, NULL, lk_borrow, &b);       /* loan 2 begins on another thread */
    pthread_join(t, NULL);
    PK_CHECK_EQ(b.rc, 0);
    PK_CHECK(b.res == r);
    __atomic_store_n(&leak_hook_go, 1, __ATOMIC_SEQ_CST);
    pthread_join(m, NULL);
    PK_CHECK_EQ(lk_reports, 1);
    __atomic_store_n(&lk_now, 1000000, __ATOMIC_SEQ_CST); /* loan 2 held for ~1 ms: a leak too */
    pk_respool_maintain(bad_p);
    PK_CHECK_EQ(lk_reports, 2);
    pk_respool_maintain(bad_p);
    PK_CHECK_EQ(lk_reports, 2); /* once per loan */
    pk_respool_stats_get(bad_p, &st);
    PK_CHECK_EQ(st.leaks, 2);
    PK_CHECK_EQ(pk_respool_release(bad_p, b.res), 0);
    pk_respool_destroy(bad_p);
    PK_CHECK_EQ(x.made, x.destroyed);
}

/* FIFO: waiters queued in a known order get the resource in that order. */
typedef struct order_arg {
    pk_respool *p;
    int id;
    int *order, *pos;
    pthread_mutex_t *mu;
    int rc;
} order_arg;
static void *order_waiter(void *vp)
{
    order_arg *a = (order_arg *)vp;
    void *r;
    a->rc = pk_respool_acquire(a->p, &r, PK_FOREVER);
    if (a->rc == 0) {
        pthread_mutex_lock(a->mu);
        a->order[(*a->pos)++] = a->id;
        pthread_mutex_unlock(a->mu);
        pk_test_sleep_ns(2000000);
        PK_CHECK_EQ(pk_respool_release(a->p, r), 0);
    }
    return NULL;
}

static void wait_for_waiters(pk_respool *p, size_t n)
{
    pk_respool_stats st;
    int i;
    for (i = 0; i < 5000; i++) {
        pk_respool_stats_get(p, &st);
        if (st.waiting == n) return;
        pk_test_sleep_ns(1000000);
    }
    PK_CHECK_MSG(0, "never saw %zu waiters", n);
}

static void test_respool_handoff_order(void)
{
    enum { NW = 6 };
    pk_respool *p;
    pk_respool_config c;
    pk_respool_stats st;
    rctx x;
    pthread_t t[NW];
    order_arg a[NW];
    int order[NW], pos = 0, i;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    void *r;
    memset(&x, 0, sizeof x);
    rcfg(&c, &x, 0, 1);
    c.validate = r_validate;
    PK_CHECK_EQ(pk_respool_create(&p, &c), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r, 0), 0);
    for (i = 0; i < NW; i++) {
        a[i].p = p;
        a[i].id = i;
        a[i].order = order;
        a[i].pos = &pos;
        a[i].mu = &mu;
        pthread_create(&t[i], NULL, order_waiter, &a[i]);
        wait_for_waiters(p, (size_t)i + 1);
    }
    PK_CHECK_EQ(pk_respool_release(p, r), 0);
    for (i = 0; i < NW; i++) pthread_join(t[i], NULL);
    PK_CHECK_EQ(pos, NW);
    for (i = 0; i < NW; i++) PK_CHECK_EQ(order[i], i);
    pk_respool_stats_get(p, &st);
    PK_CHECK_EQ(st.created, 1);     /* one resource handed along the queue */
    PK_CHECK_EQ(x.validations, 0);  /* a hand-off is not validated */
    PK_CHECK_EQ(st.acquires, NW + 1);
    PK_CHECK(st.wait_ns_max >= 2000000u);
    pk_respool_destroy(p);
    PK_CHECK_EQ(x.made, x.destroyed);
}

/* invalidate wakes a waiter that creates the replacement; a failed create passes the slot on. */
typedef struct slot_arg { pk_respool *p; int rc; long id; } slot_arg;
static void *slot_waiter(void *vp)
{
    slot_arg *a = (slot_arg *)vp;
    void *r = NULL;
    a->rc = pk_respool_acquire(a->p, &r, 5000000000ull);
    if (a->rc == 0) {
        a->id = ((res_t *)r)->id;
        PK_CHECK_EQ(pk_respool_release(a->p, r), 0);
    }
    return NULL;
}

static void test_respool_invalidate(void)
{
    pk_respool *p;
    pk_respool_config c;
    pk_respool_stats st;
    rctx x;
    pthread_t t1, t2;
    slot_arg a1, a2;
    void *r;
    memset(&x, 0, sizeof x);
    rcfg(&c, &x, 0, 1);
    PK_CHECK_EQ(pk_respool_create(&p, &c), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r, 0), 0);
    PK_CHECK_EQ(((res_t *)r)->id, 1);
    a1.p = a2.p = p;
    a1.id = a2.id = 0;
    pthread_create(&t1, NULL, slot_waiter, &a1);
    wait_for_waiters(p, 1);
    pthread_create(&t2, NULL, slot_waiter, &a2);
    wait_for_waiters(p, 2);
    x.fail_mode = 3; /* the first waiter's create fails; the second gets the slot and succeeds */
    PK_CHECK_EQ(pk_respool_invalidate(p, r), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    PK_CHECK_EQ(a1.rc, -ECONNREFUSED);
    PK_CHECK_EQ(a2.rc, 0);
    PK_CHECK_EQ(a2.id, 2);
    pk_respool_stats_get(p, &st);
    PK_CHECK_EQ(st.destroyed, 1);
    PK_CHECK_EQ(st.create_failures, 1);
    PK_CHECK_EQ(st.total, 1);
    PK_CHECK_EQ(st.idle, 1);
    pk_respool_destroy(p);
    PK_CHECK_EQ(x.made, x.destroyed);
}

/* The lock-free release uses the releasing thread's memo of its last loan. A loan ended elsewhere
   (another thread's release, an invalidate) or a record reused for a new resource must not fool it. */
typedef struct rel_arg { pk_respool *p; void *r; int rc; } rel_arg;
static void *rel_other(void *vp)
{
    rel_arg *a = (rel_arg *)vp;
    a->rc = pk_respool_release(a->p, a->r);
    return NULL;
}

static void test_respool_stale_memo(void)
{
    pk_respool *p;
    pk_respool_config c;
    pk_respool_stats st;
    rctx x;
    pthread_t t;
    rel_arg a;
    void *r, *r2;
    int i;
    memset(&x, 0, sizeof x);
    rcfg(&c, &x, 1, 2);
    PK_CHECK_EQ(pk_respool_create(&p, &c), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r, 0), 0);
    a.p = p;
    a.r = r;
    a.rc = 1;
    pthread_create(&t, NULL, rel_other, &a); /* the borrower hands it over; another thread returns it */
    pthread_join(t, NULL);
    PK_CHECK_EQ(a.rc, 0);
    PK_CHECK_EQ(pk_respool_release(p, r), -EINVAL); /* our memo still names that loan */
    PK_CHECK_EQ(pk_respool_acquire(p, &r2, 0), 0);  /* parked or idle: the same resource again */
    PK_CHECK(r2 == r);
    PK_CHECK_EQ(pk_respool_release(p, r2), 0);
    PK_CHECK_EQ(pk_respool_release(p, r2), -EINVAL);
    for (i = 0; i < 20; i++) { /* invalidate, record reused for a new resource (maybe at r's address) */
        PK_CHECK_EQ(pk_respool_acquire(p, &r, 0), 0);
        PK_CHECK_EQ(pk_respool_invalidate(p, r), 0);
        PK_CHECK_EQ(pk_respool_release(p, r), -EINVAL);
        PK_CHECK_EQ(pk_respool_invalidate(p, r), -EINVAL);
        PK_CHECK_EQ(pk_respool_acquire(p, &r2, 0), 0);
        PK_CHECK_EQ(pk_respool_release(p, r2), 0);
        PK_CHECK_EQ(pk_respool_release(p, r), -EINVAL); /* idle now, whoever's address it is */
    }
    pk_respool_stats_get(p, &st);
    PK_CHECK_EQ(st.in_use, 0);
    PK_CHECK_EQ(st.total, 1);
    PK_CHECK_EQ(st.idle, 1);
    PK_CHECK_EQ(st.acquires, 42);
    pk_respool_destroy(p);
    PK_CHECK_EQ(x.made, x.destroyed);
}

static void test_respool_validation(void)
{
    pk_respool *p;
    pk_respool_config c;
    pk_respool_stats st;
    rctx x;
    void *r[3], *q;
    memset(&x, 0, sizeof x);
    rcfg(&c, &x, 3, 3);
    c.validate = r_validate;
    c.validate_idle_ns = 1000;
    c.clock_ns = r_clock;
    PK_CHECK_EQ(pk_respool_create(&p, &c), 0);
    /* idle less than validate_idle_ns: no validation */
    PK_CHECK_EQ(pk_respool_acquire(p, &q, 0), 0);
    PK_CHECK_EQ(x.validations, 0);
    PK_CHECK_EQ(pk_respool_release(p, q), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r[0], 0), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r[1], 0), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r[2], 0), 0);
    ((res_t *)r[2])->healthy = 0;
    ((res_t *)r[1])->healthy = 0;
    PK_CHECK_EQ(pk_respool_release(p, r[0]), 0);
    PK_CHECK_EQ(pk_respool_release(p, r[1]), 0);
    PK_CHECK_EQ(pk_respool_release(p, r[2]), 0); /* idle list, most recent first: r2, r1, r0 */
    x.now += 1000;
    PK_CHECK_EQ(pk_respool_acquire(p, &q, 0), 0); /* r2 fails, r1 fails, r0 is healthy */
    PK_CHECK(q == r[0]);
    PK_CHECK_EQ(x.validations, 3);
    pk_respool_stats_get(p, &st);
    PK_CHECK_EQ(st.validation_failures, 2);
    PK_CHECK_EQ(st.destroyed, 2);
    PK_CHECK_EQ(st.total, 1);
    PK_CHECK_EQ(pk_respool_acquire(p, &r[1], 0), 0); /* a new one: created, not validated */
    PK_CHECK_EQ(((res_t *)r[1])->id, 4);
    PK_CHECK_EQ(x.validations, 3);
    PK_CHECK_EQ(pk_respool_release(p, r[1]), 0);
    PK_CHECK_EQ(pk_respool_release(p, q), 0);
    PK_CHECK_EQ(pk_respool_maintain(p), 1); /* refill to min 3 */
    pk_respool_destroy(p);
    PK_CHECK_EQ(x.made, x.destroyed);
}

static void test_respool_retirement(void)
{
    pk_respool *p;
    pk_respool_config c;
    pk_respool_stats st;
    rctx x;
    void *r[4];
    int i;
    memset(&x, 0, sizeof x);
    x.now = 1000000;
    rcfg(&c, &x, 1, 4);
    c.idle_timeout_ns = 100;
    c.max_lifetime_ns = 1000;
    c.clock_ns = r_clock;
    PK_CHECK_EQ(pk_respool_create(&p, &c), 0);
    for (i = 0; i < 4; i++) PK_CHECK_EQ(pk_respool_acquire(p, &r[i], 0), 0);
    for (i = 0; i < 3; i++) PK_CHECK_EQ(pk_respool_release(p, r[i]), 0);
    PK_CHECK_EQ(pk_respool_maintain(p), 0); /* nothing is old yet */
    x.now += 100;
    /* idle timeout: idle ones above min go, but min (counting the lent one) stays */
    PK_CHECK_EQ(pk_respool_maintain(p), 3);
    pk_respool_stats_get(p, &st);
    PK_CHECK_EQ(st.total, 1);
    PK_CHECK_EQ(st.idle, 0);
    PK_CHECK_EQ(st.in_use, 1);
    /* lifetime: the lent one is past max lifetime: retired on release, not reused */
    x.now += 1000;
    PK_CHECK_EQ(pk_respool_release(p, r[3]), 0);
    pk_respool_stats_get(p, &st);
    PK_CHECK_EQ(st.total, 0);
    PK_CHECK_EQ(pk_respool_maintain(p), 1); /* refill to min */
    pk_respool_stats_get(p, &st);
    PK_CHECK_EQ(st.total, 1);
    PK_CHECK_EQ(st.idle, 1);
    /* an idle one past lifetime: retired by maintain (and refilled), or skipped by acquire */
    x.now += 1000;
    PK_CHECK_EQ(pk_respool_maintain(p), 2);
    x.now += 1000;
    PK_CHECK_EQ(pk_respool_acquire(p, &r[0], 0), 0);
    PK_CHECK_EQ(((res_t *)r[0])->id, 7);
    PK_CHECK_EQ(pk_respool_release(p, r[0]), 0);
    /* the idle timeout keeps min even when min are idle */
    x.now += 500;
    PK_CHECK_EQ(pk_respool_maintain(p), 0);
    pk_respool_stats_get(p, &st);
    PK_CHECK_EQ(st.total, 1);
    PK_CHECK_EQ(st.destroyed, x.destroyed);
    pk_respool_destroy(p);
    PK_CHECK_EQ(x.made, x.destroyed);
}

static void test_respool_leaks(void)
{
    pk_respool *p;
    pk_respool_config c;
    pk_respool_stats st;
    rctx x;
    void *r, *r2;
    memset(&x, 0, sizeof x);
    rcfg(&c, &x, 0, 2);
    c.leak_ns = 1000;
    c.on_leak = r_leak;
    c.clock_ns = r_clock;
    PK_CHECK_EQ(pk_respool_create(&p, &c), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r, 0), 0);
    x.now += 999;
    PK_CHECK_EQ(pk_respool_maintain(p), 0);
    x.now += 1;
    PK_CHECK_EQ(pk_respool_maintain(p), 1);
    PK_CHECK_EQ(x.leaks_reported, 1);
    PK_CHECK_EQ(x.last_leak_id, 1);
    PK_CHECK_EQ(x.last_leak_held, 1000);
    x.now += 5000;
    PK_CHECK_EQ(pk_respool_maintain(p), 0); /* once per loan */
    PK_CHECK_EQ(x.leaks_reported, 1);
    PK_CHECK_EQ(pk_respool_release(p, r), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r, 0), 0); /* a new loan */
    x.now += 2000;
    PK_CHECK_EQ(pk_respool_maintain(p), 1);
    PK_CHECK_EQ(x.leaks_reported, 2);
    pk_respool_stats_get(p, &st);
    PK_CHECK_EQ(st.leaks, 2);
    /* destroy with resources lent: each reported, not destroyed; the borrower disposes of them */
    PK_CHECK_EQ(pk_respool_acquire(p, &r2, 0), 0);
    pk_respool_destroy(p);
    PK_CHECK_EQ(x.leaks_reported, 4);
    PK_CHECK_EQ(x.destroyed, 0);
    r_destroy(r, &x);
    r_destroy(r2, &x);
    PK_CHECK_EQ(x.made, x.destroyed);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);

    /* leak_ns = 0 is "off" (API.md): on_leak set, but never called, not even at destroy */
    memset(&x, 0, sizeof x);
    rcfg(&c, &x, 0, 2);
    c.leak_ns = 0;
    c.on_leak = r_leak;
    c.clock_ns = r_clock;
    PK_CHECK_EQ(pk_respool_create(&p, &c), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r, 0), 0);
    x.now += 1000000000u;
    PK_CHECK_EQ(pk_respool_maintain(p), 0);
    pk_respool_destroy(p);
    PK_CHECK_EQ(x.leaks_reported, 0);
    PK_CHECK_EQ(x.destroyed, 0); /* still the borrower's */
    r_destroy(r, &x);
    PK_CHECK_EQ(x.made, x.destroyed);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

/* on_leak calling back into the pool, and the borrower invalidating the resource while on_leak runs:
   the reporter destroys it afterwards (pinned). */
typedef struct pin_ctx { rctx x; pk_respool *p; void *res; int rc; } pin_ctx;
static void pin_leak(void *res, uint64_t held, void *u)
{
    pin_ctx *pc = (pin_ctx *)u;
    pk_respool_stats st;
    (void)held;
    pk_respool_stats_get(pc->p, &st); /* re-entrant: no lock held */
    pc->rc = pk_respool_invalidate(pc->p, res);
    PK_CHECK_EQ(((res_t *)res)->id, 1); /* still alive while we look at it */
}
static int pin_create(void **res, void *u) { return r_create(res, &((pin_ctx *)u)->x); }
static void pin_destroy(void *res, void *u) { r_destroy(res, &((pin_ctx *)u)->x); }
static uint64_t pin_clock(void *u) { return ((pin_ctx *)u)->x.now; }

static void test_respool_leak_pinned(void)
{
    pin_ctx pc;
    pk_respool_config c;
    void *r;
    memset(&pc, 0, sizeof pc);
    memset(&c, 0, sizeof c);
    c.max = 1;
    c.create = pin_create;
    c.destroy = pin_destroy;
    c.on_leak = pin_leak;
    c.leak_ns = 10;
    c.clock_ns = pin_clock;
    c.user = &pc;
    PK_CHECK_EQ(pk_respool_create(&pc.p, &c), 0);
    PK_CHECK_EQ(pk_respool_acquire(pc.p, &r, 0), 0);
    pc.x.now = 100;
    PK_CHECK_EQ(pk_respool_maintain(pc.p), 1);
    PK_CHECK_EQ(pc.rc, 0);
    PK_CHECK_EQ(pc.x.destroyed, 1);
    PK_CHECK_EQ(pk_respool_acquire(pc.p, &r, 0), 0);
    PK_CHECK_EQ(((res_t *)r)->id, 2);
    PK_CHECK_EQ(pk_respool_release(pc.p, r), 0);
    pk_respool_destroy(pc.p);
    PK_CHECK_EQ(pc.x.made, pc.x.destroyed);
}

/* 8 threads, create fails half the time, some invalidations: no deadlock, exclusive loans,
   created == destroyed, nothing leaked. */
typedef struct churn_arg { pk_respool *p; uint64_t seed; long ok, fail, tmo; } churn_arg;
static void *churn(void *vp)
{
    churn_arg *a = (churn_arg *)vp;
    long i, n = pk_test_scale(4000);
    for (i = 0; i < n; i++) {
        void *r;
        uint64_t x = pk_test_rand(&a->seed);
        int rc = pk_respool_acquire(a->p, &r, (x & 7) ? 200000000u : 0);
        if (rc == 0) {
            res_t *rs = (res_t *)r;
            PK_CHECK_MSG(__atomic_exchange_n(&rs->lent, 1, __ATOMIC_SEQ_CST) == 0, "resource %ld lent twice", rs->id);
            if ((x >> 8) % 16 == 0) sched_yield();
            __atomic_store_n(&rs->lent, 0, __ATOMIC_SEQ_CST);
            if ((x >> 16) % 10 == 0) PK_CHECK_EQ(pk_respool_invalidate(a->p, r), 0);
            else PK_CHECK_EQ(pk_respool_release(a->p, r), 0);
            a->ok++;
        } else if (rc == -ETIMEDOUT) {
            a->tmo++;
        } else {
            PK_CHECK_EQ(rc, -ECONNREFUSED);
            a->fail++;
        }
        if ((x >> 24) % 500 == 0) pk_respool_maintain(a->p);
    }
    return NULL;
}

static void test_respool_threads_flaky_create(void)
{
    enum { NT = 8 };
    pk_respool *p;
    pk_respool_config c;
    pk_respool_stats st;
    rctx x;
    pthread_t t[NT];
    churn_arg a[NT];
    long ok = 0, fail = 0;
    int i;
    memset(&x, 0, sizeof x);
    x.fail_mode = 2;
    rcfg(&c, &x, 1, 3);
    c.validate = r_validate;
    c.validate_idle_ns = 0;
    c.max_lifetime_ns = 2000000; /* 2 ms: retirements during the run */
    c.idle_timeout_ns = 1000000;
    /* min 1 at create: the 1st create call fails in mode 2 (odd counter), so start at 1 */
    x.fail_counter = 1;
    PK_CHECK_EQ(pk_respool_create(&p, &c), 0);
    for (i = 0; i < NT; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].p = p;
        a[i].seed = (uint64_t)i * 1000003u + 1;
        pthread_create(&t[i], NULL, churn, &a[i]);
    }
    for (i = 0; i < NT; i++) {
        pthread_join(t[i], NULL);
        ok += a[i].ok;
        fail += a[i].fail;
    }
    PK_CHECK(ok > 0);
    PK_CHECK(fail > 0);
    pk_respool_stats_get(p, &st);
    PK_CHECK_EQ(st.in_use, 0);
    PK_CHECK_EQ(st.waiting, 0);
    PK_CHECK(st.total <= 3);
    PK_CHECK_EQ(st.created, (uint64_t)x.made);
    PK_CHECK_EQ(st.acquires, (uint64_t)ok);
    printf("    8 threads: %ld loans, %ld create failures surfaced, %llu created, %llu timeouts\n", ok, fail,
           (unsigned long long)st.created, (unsigned long long)st.timeouts);
    pk_respool_destroy(p);
    PK_CHECK_EQ(x.made, x.destroyed);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

/* A slow create does not block releases (create runs outside the lock). */
typedef struct slow_arg { pk_respool *p; int rc; } slow_arg;
static void *slow_creator(void *vp)
{
    slow_arg *a = (slow_arg *)vp;
    void *r;
    a->rc = pk_respool_acquire(a->p, &r, PK_FOREVER);
    if (a->rc == 0) pk_respool_release(a->p, r);
    return NULL;
}
static void test_respool_slow_create_does_not_block(void)
{
    pk_respool *p;
    pk_respool_config c;
    rctx x;
    pthread_t t;
    slow_arg a;
    void *r;
    uint64_t t0;
    memset(&x, 0, sizeof x);
    rcfg(&c, &x, 1, 2);
    PK_CHECK_EQ(pk_respool_create(&p, &c), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r, 0), 0);
    x.create_sleep_ns = 300000000; /* 300 ms connect */
    a.p = p;
    pthread_create(&t, NULL, slow_creator, &a);
    pk_test_sleep_ns(20000000);
    t0 = pk_test_now_ns();
    PK_CHECK_EQ(pk_respool_release(p, r), 0);
    PK_CHECK_EQ(pk_respool_acquire(p, &r, 0), 0);
    PK_CHECK_EQ(pk_respool_release(p, r), 0);
    PK_CHECK_MSG(pk_test_now_ns() - t0 < 150000000u, "release/acquire waited for a slow create");
    pthread_join(t, NULL);
    PK_CHECK_EQ(a.rc, 0);
    pk_respool_destroy(p);
    PK_CHECK_EQ(x.made, x.destroyed);
}

static int respool_scenario(void *ctx)
{
    pk_respool *p;
    pk_respool_config c;
    pk_respool_stats st;
    rctx x;
    void *r[4];
    int i, rc, bad = 0;
    (void)ctx;
    memset(&x, 0, sizeof x);
    rcfg(&c, &x, 2, 4);
    c.validate = r_validate;
    c.clock_ns = r_clock;
    c.idle_timeout_ns = 10;
    c.leak_ns = 5;
    c.on_leak = r_leak;
    rc = pk_respool_create(&p, &c);
    if (rc != 0) return (rc == -ENOMEM && x.made == x.destroyed) ? 0 : 1;
    for (i = 0; i < 4; i++) {
        rc = pk_respool_acquire(p, &r[i], 0);
        if (rc != 0) {
            r[i] = NULL;
            if (rc != -ENOMEM) bad |= 2;
        }
    }
    x.now += 10;
    pk_respool_maintain(p);
    if (r[0] && pk_respool_invalidate(p, r[0]) != 0) bad |= 4;
    for (i = 1; i < 4; i++)
        if (r[i] && pk_respool_release(p, r[i]) != 0) bad |= 8;
    x.now += 100;
    pk_respool_maintain(p);
    pk_respool_stats_get(p, &st);
    if (st.in_use != 0) bad |= 16;
    if (pk_respool_acquire(p, &r[0], 0) == 0) pk_respool_release(p, r[0]);
    pk_respool_destroy(p);
    if (x.made != x.destroyed) bad |= 32;
    return bad;
}

/* pk_pool_flush finds the thread's cache even when another pool has taken its slot in the
   thread's 8-way table since (flush used to look only there and keep the objects). */
static int flush_init(void *obj, void *user)
{
    (void)obj;
    (void)user;
    return 0;
}
static void test_pool_flush_after_table_alias(void)
{
    pk_pool_config cfg;
    pk_pool *a, *b[PK_POOL__TLWAYS];
    void *o[10], *x;
    pk_pool_stats st;
    int i;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = 32;
    cfg.max_idle = 1;
    cfg.init = flush_init; /* one object per cache refill: exactly 10 made */
    PK_CHECK_EQ(pk_pool_create(&a, &cfg), 0);
    for (i = 0; i < 10; i++) PK_CHECK((o[i] = pk_pool_acquire(a)) != NULL);
    for (i = 0; i < 10; i++) PK_CHECK_EQ(pk_pool_release(a, o[i]), 0); /* into this thread's cache */
    for (i = 0; i < PK_POOL__TLWAYS; i++) PK_CHECK_EQ(pk_pool_create(&b[i], &cfg), 0);
    for (i = 0; i < PK_POOL__TLWAYS; i++) { /* one of them shares a's table slot */
        PK_CHECK((x = pk_pool_acquire(b[i])) != NULL);
        PK_CHECK_EQ(pk_pool_release(b[i], x), 0);
    }
    pk_pool_flush(a);
    pk_pool_stats_get(a, &st);
    PK_CHECK_EQ(st.idle, 1); /* max_idle applied */
    PK_CHECK_EQ(st.freed, 9);
    for (i = 0; i < PK_POOL__TLWAYS; i++) pk_pool_destroy(b[i]);
    pk_pool_destroy(a);
}

/* maintain scans loans that begin and end without the mutex: a loan begun after maintain read the
   clock, or ended while it looked, must not be reported (it was, with held_ns near 2^64 or the
   machine's uptime). Loans here last microseconds; leak_ns is 10 s. */
static pk_respool *leakrace_p;
static int leakrace_stop;
static long leakrace_reports;
static void leakrace_on_leak(void *res, uint64_t held_ns, void *user)
{
    (void)res;
    (void)held_ns;
    (void)user;
    __atomic_add_fetch(&leakrace_reports, 1, __ATOMIC_SEQ_CST);
}
static void *leakrace_worker(void *arg)
{
    void *r;
    (void)arg;
    while (!__atomic_load_n(&leakrace_stop, __ATOMIC_RELAXED))
        if (pk_respool_acquire(leakrace_p, &r, PK_FOREVER) == 0) pk_respool_release(leakrace_p, r);
    return NULL;
}
static void test_respool_maintain_vs_fast_loans(void)
{
    pk_respool_config cfg;
    pthread_t th[2];
    long calls, n = pk_test_scale(2000000);
    int i;
    rctx rc;
    memset(&rc, 0, sizeof rc);
    memset(&cfg, 0, sizeof cfg);
    cfg.min = 4;
    cfg.max = 4;
    cfg.create = r_create;
    cfg.destroy = r_destroy;
    cfg.user = &rc;
    cfg.on_leak = leakrace_on_leak;
    cfg.leak_ns = 10ull * 1000000000u;
    leakrace_stop = 0;
    leakrace_reports = 0;
    PK_CHECK_EQ(pk_respool_create(&leakrace_p, &cfg), 0);
    for (i = 0; i < 2; i++) pthread_create(&th[i], NULL, leakrace_worker, NULL);
    for (calls = 0; calls < n; calls++) pk_respool_maintain(leakrace_p);
    __atomic_store_n(&leakrace_stop, 1, __ATOMIC_RELAXED);
    for (i = 0; i < 2; i++) pthread_join(th[i], NULL);
    printf("    %ld maintain calls beside lock-free loans: %ld false leak reports\n", calls, leakrace_reports);
    PK_CHECK_EQ(leakrace_reports, 0);
    pk_respool_destroy(leakrace_p);
    PK_CHECK_EQ(rc.made, rc.destroyed);
}

/* A deadline centuries away: the waiter is served when a resource comes back (each timed wait step
   is capped, so a 32-bit time_t cannot overflow into an immediate timeout). */
static pk_respool *far_p;
static void *far_waiter(void *arg)
{
    void *r = NULL;
    int *rc = (int *)arg;
    *rc = pk_respool_acquire(far_p, &r, (uint64_t)1 << 62);
    if (*rc == 0) pk_respool_release(far_p, r);
    return NULL;
}
static void test_respool_far_deadline(void)
{
    pk_respool_config cfg;
    pk_respool_stats st;
    pthread_t th;
    void *held;
    int rc = 1;
    rctx r;
    memset(&r, 0, sizeof r);
    memset(&cfg, 0, sizeof cfg);
    cfg.max = 1;
    cfg.create = r_create;
    cfg.destroy = r_destroy;
    cfg.user = &r;
    PK_CHECK_EQ(pk_respool_create(&far_p, &cfg), 0);
    PK_CHECK_EQ(pk_respool_acquire(far_p, &held, 0), 0);
    pthread_create(&th, NULL, far_waiter, &rc);
    do {
        pk_test_sleep_ns(1000000);
        pk_respool_stats_get(far_p, &st);
    } while (st.waiting == 0);
    pk_test_sleep_ns(20000000); /* it waits, not times out */
    PK_CHECK_EQ(rc, 1);
    PK_CHECK_EQ(pk_respool_release(far_p, held), 0);
    pthread_join(th, NULL);
    PK_CHECK_EQ(rc, 0);
    pk_respool_destroy(far_p);
}

static void test_respool_alloc_failures(void)
{
    long n = pk_test_alloc_sweep("resource pool", respool_scenario, NULL);
    PK_CHECK(n >= 4);
}

/* ---- the doc's quick start, compiled (with a fake dial) ---- */
typedef struct conn { int fd; } conn;
static int fake_dial(const char *addr) { return addr ? 42 : -ECONNREFUSED; }
static int talk(int fd) { return fd == 42 ? 0 : -1; }
static int conn_open(void **res, void *u)
{
    conn *c = (conn *)malloc(sizeof *c);
    if (!c) return -ENOMEM;
    c->fd = fake_dial((const char *)u);
    if (c->fd < 0) {
        int e = c->fd;
        free(c);
        return e;
    }
    *res = c;
    return 0;
}
static void conn_close(void *res, void *u)
{
    (void)u;
    free(res);
}
typedef struct msg { char buf[200]; size_t len; } msg;
static void msg_reset(void *o, void *u)
{
    (void)u;
    ((msg *)o)->len = 0;
}

static void test_quick_start(void)
{
    pk_pool *mp;
    pk_pool_config pc;
    pk_respool *rp;
    pk_respool_config rc;
    msg *m;
    void *r;
    int e;
    memset(&pc, 0, sizeof pc);
    pc.size = sizeof(msg);
    pc.prealloc = 1024;
    pc.reset = msg_reset;
    PK_CHECK_EQ(pk_pool_create(&mp, &pc), 0);
    m = (msg *)pk_pool_acquire(mp);
    PK_CHECK(m != NULL);
    m->len = 5;
    PK_CHECK_EQ(pk_pool_release(mp, m), 0);
    PK_CHECK_EQ(m->len, 0);
    pk_pool_destroy(mp);

    memset(&rc, 0, sizeof rc);
    rc.min = 2;
    rc.max = 16;
    rc.create = conn_open;
    rc.destroy = conn_close;
    rc.user = (void *)"127.0.0.1:11211";
    rc.idle_timeout_ns = 60 * 1000000000ull;
    rc.max_lifetime_ns = 30 * 60 * 1000000000ull;
    PK_CHECK_EQ(pk_respool_create(&rp, &rc), 0);
    e = pk_respool_acquire(rp, &r, 50 * 1000000ull);
    PK_CHECK_EQ(e, 0);
    if (e == 0) {
        if (talk(((conn *)r)->fd) == 0) PK_CHECK_EQ(pk_respool_release(rp, r), 0);
        else pk_respool_invalidate(rp, r);
    }
    pk_respool_maintain(rp);
    pk_respool_destroy(rp);
}

int main(void)
{
    pk_test_main_begin("pool");
    PK_TEST(test_pool_bad_input);
    PK_TEST(test_pool_bounds);
    PK_TEST(test_pool_alignment);
    PK_TEST(test_pool_reuse_and_callbacks);
    PK_TEST(test_pool_double_and_foreign);
    PK_TEST(test_pool_max_idle);
    PK_TEST(test_pool_hint_after_chunk_reuse);
    PK_TEST(test_pool_init_failure);
    PK_TEST(test_pool_big_objects);
    PK_TEST(test_pool_many_pools);
    PK_TEST(test_pool_threads);
    PK_TEST(test_pool_reclaim_from_live_thread);
    PK_TEST(test_pool_thread_exit);
    PK_TEST(test_pool_destroy_with_foreign_caches);
    PK_TEST(test_pool_trim_fini_races);
    PK_TEST(test_pool_nested_fini_across_pools);
    PK_TEST(test_pool_fini_waits_are_bounded);
    PK_TEST(test_pool_alloc_failures);
    PK_TEST(test_respool_bad_input);
    PK_TEST(test_respool_min_and_create_failure);
    PK_TEST(test_respool_timeouts);
    PK_TEST(test_respool_tiny_timeouts);
    PK_TEST(test_respool_maintain_vs_parked);
    PK_TEST(test_respool_fast_release_handoff_not_validated);
    PK_TEST(test_respool_bad_parked_keeps_slot);
    PK_TEST(test_respool_leak_of_next_loan);
    PK_TEST(test_respool_handoff_order);
    PK_TEST(test_respool_invalidate);
    PK_TEST(test_respool_stale_memo);
    PK_TEST(test_respool_validation);
    PK_TEST(test_respool_retirement);
    PK_TEST(test_respool_leaks);
    PK_TEST(test_respool_leak_pinned);
    PK_TEST(test_respool_threads_flaky_create);
    PK_TEST(test_respool_slow_create_does_not_block);
    PK_TEST(test_pool_flush_after_table_alias);
    PK_TEST(test_respool_maintain_vs_fast_loans);
    PK_TEST(test_respool_far_deadline);
    PK_TEST(test_respool_alloc_failures);
    PK_TEST(test_quick_start);
    return pk_test_main_end();
}
