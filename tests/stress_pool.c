/* stress_pool.c — pk_pool.h under 8+ threads for STRESS_SECONDS (default 60; `make stress`).

   Half the time: object pools (one unbounded, one with max and max_idle) hammered by 8 threads
   that acquire, release, hand objects to each other, flush, read stats and try bad releases;
   workers exit and are replaced all the time (thread-exit destructor), and each object carries an
   owner word that must be free when it is acquired.
   The other half: a resource pool whose create fails half the time, whose validate fails now and
   then, with short lifetimes, 8 borrowers with mixed timeouts (0, short, forever), invalidations,
   and a maintain thread. Invariants are checked while running and at the end (exclusive loans,
   bounds, created == destroyed, nothing leaked). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pk_test.h"

#define PK_MALLOC(n) pk_test_malloc(n)
#define PK_REALLOC(p, n) pk_test_realloc(p, n)
#define PK_FREE(p) pk_test_free(p)
#define PK_POOL_IMPLEMENTATION
#include "pk_pool.h"

#include <pthread.h>

static uint64_t g_stop_at;
static int stop_now(void) { return pk_test_now_ns() >= __atomic_load_n(&g_stop_at, __ATOMIC_RELAXED); }

/* ================================ object pools =============================================== */

typedef struct sobj { long owner; long payload[7]; } sobj;

#define NSLOTS 16
typedef struct opools {
    pk_pool *p[2];
    size_t max[2];
    sobj *slots[2][NSLOTS]; /* hand-off slots between threads */
    long ops, nulls, bad_ok;
} opools;

static int so_init(void *o, void *u)
{
    (void)u;
    memset(o, 0, sizeof(sobj));
    return 0;
}

typedef struct oworker { opools *s; long id; uint64_t seed; long budget; } oworker;

static void *obj_worker(void *vp)
{
    oworker *w = (oworker *)vp;
    opools *s = w->s;
    sobj *held[2][48];
    int n[2] = {0, 0}, k;
    long i, ops = 0, nulls = 0;
    for (i = 0; i < w->budget && !stop_now(); i++) {
        uint64_t r = pk_test_rand(&w->seed);
        int which = (int)(r & 1), op = (int)((r >> 1) % 100);
        pk_pool *p = s->p[which];
        if (op < 45 && n[which] < 48) {
            sobj *o = (sobj *)pk_pool_acquire(p);
            if (!o) {
                nulls++;
                PK_CHECK_MSG(s->max[which] != 0, "NULL from an unbounded pool");
                continue;
            }
            PK_CHECK_MSG(__atomic_exchange_n(&o->owner, w->id, __ATOMIC_ACQ_REL) == 0, "object %p lent twice", (void *)o);
            o->payload[0] = w->id;
            held[which][n[which]++] = o;
        } else if (op < 85 && n[which] > 0) {
            int j = (int)((r >> 8) % (uint64_t)n[which]);
            sobj *o = held[which][j];
            held[which][j] = held[which][--n[which]];
            PK_CHECK(o->payload[0] == w->id);
            PK_CHECK(__atomic_exchange_n(&o->owner, 0, __ATOMIC_ACQ_REL) == w->id);
            if ((r >> 16) % 4 == 0) { /* through a hand-off slot: another thread releases it */
                sobj *prev = __atomic_exchange_n(&s->slots[which][(r >> 20) % NSLOTS], o, __ATOMIC_ACQ_REL);
                if (prev) PK_CHECK_EQ(pk_pool_release(p, prev), 0);
            } else {
                PK_CHECK_EQ(pk_pool_release(p, o), 0);
            }
        } else if (op < 90) {
            long local;
            PK_CHECK_EQ(pk_pool_release(p, &local), -EINVAL);
            if (n[which]) PK_CHECK_EQ(pk_pool_release(p, (char *)held[which][0] + 8), -EINVAL);
        } else if (op < 93) {
            pk_pool_flush(p);
        } else {
            pk_pool_stats st;
            pk_pool_stats_get(p, &st);
            if (s->max[which]) {
                PK_CHECK(st.created - st.freed <= s->max[which]);
                PK_CHECK(st.peak_in_use <= s->max[which]);
            }
            PK_CHECK(st.in_use + st.idle == st.created - st.freed);
        }
        ops++;
    }
    for (k = 0; k < 2; k++)
        while (n[k]) {
            sobj *o = held[k][--n[k]];
            __atomic_store_n(&o->owner, 0, __ATOMIC_RELEASE);
            PK_CHECK_EQ(pk_pool_release(s->p[k], o), 0);
        }
    __atomic_add_fetch(&s->ops, ops, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->nulls, nulls, __ATOMIC_RELAXED);
    return NULL;
}

static void stress_objects(uint64_t ns)
{
    enum { NT = 8 };
    opools s;
    pk_pool_config c;
    pthread_t t[NT];
    oworker w[NT];
    long spawned = 0;
    int i, k;
    memset(&s, 0, sizeof s);
    memset(&c, 0, sizeof c);
    c.size = sizeof(sobj);
    c.init = so_init;
    PK_CHECK_EQ(pk_pool_create(&s.p[0], &c), 0);
    c.max = 300; /* 8 threads x 48 held can exceed it: NULLs are expected, reclaim is exercised */
    c.max_idle = 20;
    s.max[1] = 300;
    PK_CHECK_EQ(pk_pool_create(&s.p[1], &c), 0);
    __atomic_store_n(&g_stop_at, pk_test_now_ns() + ns, __ATOMIC_RELAXED);
    for (i = 0; i < NT; i++) {
        w[i].s = &s;
        w[i].id = ++spawned;
        w[i].seed = (uint64_t)spawned * 0x9E3779B9u;
        w[i].budget = 1000 + (long)(pk_test_rand(&w[i].seed) % 200000);
        pthread_create(&t[i], NULL, obj_worker, &w[i]);
    }
    /* keep replacing workers as they finish their budget: thread exit with a full cache */
    while (!stop_now()) {
        for (i = 0; i < NT; i++) {
            pthread_join(t[i], NULL);
            if (stop_now()) {
                t[i] = 0;
                continue;
            }
            w[i].id = ++spawned;
            w[i].seed = (uint64_t)spawned * 0x9E3779B9u;
            w[i].budget = 1000 + (long)(pk_test_rand(&w[i].seed) % 200000);
            pthread_create(&t[i], NULL, obj_worker, &w[i]);
        }
    }
    for (i = 0; i < NT; i++)
        if (t[i]) pthread_join(t[i], NULL);
    for (k = 0; k < 2; k++) {
        pk_pool_stats st;
        for (i = 0; i < NSLOTS; i++)
            if (s.slots[k][i]) PK_CHECK_EQ(pk_pool_release(s.p[k], s.slots[k][i]), 0);
        pk_pool_stats_get(s.p[k], &st);
        PK_CHECK_EQ(st.in_use, 0);
        PK_CHECK_EQ(st.idle, st.created - st.freed);
        if (k == 1) PK_CHECK(st.created - st.freed <= 300);
        printf("    object pool %d: %llu acquires, %llu created, %llu freed, %llu exhausted, peak %zu\n", k,
               (unsigned long long)st.acquires, (unsigned long long)st.created, (unsigned long long)st.freed,
               (unsigned long long)st.exhausted, st.peak_in_use);
        pk_pool_destroy(s.p[k]);
    }
    printf("    object pools: %ld operations by %ld threads (%ld NULLs at max)\n", s.ops, spawned, s.nulls);
}

/* ================================ resource pool ============================================== */

typedef struct sres { long id; int lent; int healthy; } sres;
typedef struct rstate {
    pk_respool *p;
    long made, destroyed, fails, calls;
    long ops, ok, timeouts, cfail, leaks;
} rstate;

static int sr_create(void **res, void *u)
{
    rstate *s = (rstate *)u;
    sres *r;
    long n = __atomic_add_fetch(&s->calls, 1, __ATOMIC_RELAXED);
    if ((n * 2654435761u >> 7) & 1) { /* half of the calls fail */
        __atomic_add_fetch(&s->fails, 1, __ATOMIC_RELAXED);
        if (n % 5 == 0) pk_test_sleep_ns(50000); /* a slow refusal now and then */
        return -ECONNREFUSED;
    }
    r = (sres *)malloc(sizeof *r);
    if (!r) return -ENOMEM;
    r->id = n;
    r->lent = 0;
    r->healthy = 1;
    __atomic_add_fetch(&s->made, 1, __ATOMIC_RELAXED);
    *res = r;
    return 0;
}
static void sr_destroy(void *res, void *u)
{
    rstate *s = (rstate *)u;
    PK_CHECK_MSG(__atomic_load_n(&((sres *)res)->lent, __ATOMIC_ACQUIRE) == 0, "destroyed while lent");
    __atomic_add_fetch(&s->destroyed, 1, __ATOMIC_RELAXED);
    free(res);
}
static int sr_validate(void *res, void *u)
{
    (void)u;
    PK_CHECK(__atomic_load_n(&((sres *)res)->lent, __ATOMIC_ACQUIRE) == 0);
    return __atomic_load_n(&((sres *)res)->healthy, __ATOMIC_ACQUIRE) ? 0 : -EIO;
}
static void sr_leak(void *res, uint64_t held, void *u)
{
    (void)res;
    (void)held;
    __atomic_add_fetch(&((rstate *)u)->leaks, 1, __ATOMIC_RELAXED);
}

typedef struct rworker { rstate *s; uint64_t seed; } rworker;

static void *res_worker(void *vp)
{
    rworker *w = (rworker *)vp;
    rstate *s = w->s;
    long ops = 0, ok = 0, tmo = 0, cf = 0;
    while (!stop_now()) {
        uint64_t r = pk_test_rand(&w->seed);
        uint64_t timeout = (r & 3) == 0 ? 0 : (r & 3) == 1 ? 200000 : (r & 3) == 2 ? 5000000 : PK_FOREVER;
        void *res;
        int rc = pk_respool_acquire(s->p, &res, timeout);
        ops++;
        if (rc == 0) {
            sres *x = (sres *)res;
            PK_CHECK_MSG(__atomic_exchange_n(&x->lent, 1, __ATOMIC_ACQ_REL) == 0, "resource %ld lent twice", x->id);
            if ((r >> 8) % 8 == 0) pk_test_sleep_ns((r >> 12) % 100000);
            if ((r >> 20) % 50 == 0) __atomic_store_n(&x->healthy, 0, __ATOMIC_RELEASE);
            __atomic_store_n(&x->lent, 0, __ATOMIC_RELEASE);
            if ((r >> 28) % 10 == 0) PK_CHECK_EQ(pk_respool_invalidate(s->p, res), 0);
            else PK_CHECK_EQ(pk_respool_release(s->p, res), 0);
            /* (no second release here: another thread may legitimately have it by now) */
            ok++;
        } else if (rc == -ETIMEDOUT) {
            tmo++;
        } else {
            PK_CHECK_MSG(rc == -ECONNREFUSED, "unexpected acquire result %d", rc);
            cf++;
        }
    }
    __atomic_add_fetch(&s->ops, ops, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->ok, ok, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->timeouts, tmo, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->cfail, cf, __ATOMIC_RELAXED);
    return NULL;
}

static void *res_maintainer(void *vp)
{
    rstate *s = (rstate *)vp;
    while (!stop_now()) {
        pk_respool_stats st;
        pk_respool_maintain(s->p);
        pk_respool_stats_get(s->p, &st);
        PK_CHECK(st.total <= 4);
        PK_CHECK(st.idle + st.in_use <= st.total);
        PK_CHECK(st.waiting <= 8);
        pk_test_sleep_ns(1000000);
    }
    return NULL;
}

static void stress_resources(uint64_t ns)
{
    enum { NT = 8 };
    rstate s;
    pk_respool_config c;
    pk_respool_stats st;
    pthread_t t[NT], m;
    rworker w[NT];
    int i, rc = -1;
    long made0 = 0, fails0 = 0;
    memset(&s, 0, sizeof s);
    memset(&c, 0, sizeof c);
    c.min = 2;
    c.max = 4;
    c.create = sr_create;
    c.destroy = sr_destroy;
    c.validate = sr_validate;
    c.validate_idle_ns = 0; /* validate every idle pick (hand-offs to waiters skip it) */
    c.max_lifetime_ns = 20000000;
    c.idle_timeout_ns = 5000000;
    c.leak_ns = 50000;
    c.on_leak = sr_leak;
    c.user = &s;
    for (i = 0; i < 100 && rc != 0; i++) { /* min 2 with a flaky create: may take a few tries */
        made0 = s.made;
        fails0 = s.fails;
        rc = pk_respool_create(&s.p, &c);
    }
    PK_CHECK_EQ(rc, 0);
    if (rc != 0) return;
    __atomic_store_n(&g_stop_at, pk_test_now_ns() + ns, __ATOMIC_RELAXED);
    for (i = 0; i < NT; i++) {
        w[i].s = &s;
        w[i].seed = (uint64_t)(i + 1) * 0x51ED27u;
        pthread_create(&t[i], NULL, res_worker, &w[i]);
    }
    pthread_create(&m, NULL, res_maintainer, &s);
    for (i = 0; i < NT; i++) pthread_join(t[i], NULL);
    pthread_join(m, NULL);
    pk_respool_stats_get(s.p, &st);
    PK_CHECK_EQ(st.in_use, 0);
    PK_CHECK_EQ(st.waiting, 0);
    PK_CHECK_EQ(st.total, st.idle);
    PK_CHECK_EQ((long)st.created, s.made - made0);
    PK_CHECK_EQ((long)st.acquires, s.ok);
    PK_CHECK_EQ((long)st.create_failures, s.fails - fails0);
    printf("    resource pool: %ld operations (%ld loans, %ld timeouts, %ld create errors surfaced), %ld created, "
           "%llu validation failures, %ld leak reports, wait max %.2f ms\n",
           s.ops, s.ok, s.timeouts, s.cfail, s.made, (unsigned long long)st.validation_failures, s.leaks,
           (double)st.wait_ns_max / 1e6);
    pk_respool_destroy(s.p);
    PK_CHECK_EQ(s.made, s.destroyed);
}

static uint64_t g_ns;
static void test_stress_objects(void) { stress_objects(g_ns / 2); }
static void test_stress_resources(void) { stress_resources(g_ns - g_ns / 2); }

int main(void)
{
    const char *e = getenv("STRESS_SECONDS");
    double secs = e && *e ? atof(e) : 60.0;
    if (secs <= 0) secs = 1;
    g_ns = (uint64_t)(secs * 1e9);
    pk_test_main_begin("stress_pool");
    PK_TEST(test_stress_objects);
    PK_TEST(test_stress_resources);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
    return pk_test_main_end();
}
