/* test_dedup.c — pk_dedup.h: coalescing, sharing, deadlines, forget, self re-entry, reference
   counted results, stats, bad input, allocation failures, and a 4-thread random-key stress. */
#include "pk_test.h"
#include <pthread.h>

#define PK_MALLOC(n) pk_test_malloc(n)
#define PK_REALLOC(p, n) pk_test_realloc(p, n)
#define PK_FREE(p) pk_test_free(p)
#define PK_DEDUP_IMPLEMENTATION
#include "pk_dedup.h"
#include "pk_dedup.h" /* twice: the guards hold */

/* ---- helpers ---- */

static pk_dedup_stats stats_of(pk_dedup *d)
{
    pk_dedup_stats s;
    pk_dedup_stats_get(d, &s);
    return s;
}

/* Polls until *counter (read atomically) reaches at least want, or 30 s pass. */
static int wait_u64(const uint64_t *counter, uint64_t want)
{
    uint64_t t0 = pk_test_now_ns();
    while (__atomic_load_n(counter, __ATOMIC_SEQ_CST) < want) {
        if (pk_test_now_ns() - t0 > 30000000000ull) return 0;
        pk_test_sleep_ns(100000);
    }
    return 1;
}

/* Polls until the dedup's stats field selected by which reaches want, or 30 s pass. */
enum { ST_COALESCED, ST_TIMEOUTS, ST_EXECUTIONS, ST_IN_FLIGHT };
static int wait_stat(pk_dedup *d, int which, uint64_t want)
{
    uint64_t t0 = pk_test_now_ns();
    for (;;) {
        pk_dedup_stats s = stats_of(d);
        uint64_t v = which == ST_COALESCED ? s.coalesced : which == ST_TIMEOUTS ? s.timeouts
                   : which == ST_EXECUTIONS ? s.executions : (uint64_t)s.in_flight;
        if (v >= want) return 1;
        if (pk_test_now_ns() - t0 > 30000000000ull) return 0;
        pk_test_sleep_ns(100000);
    }
}

/* Frees counted through free_value. */
static uint64_t g_frees;
static void count_free(void *value, void *user)
{
    (void)user;
    __atomic_add_fetch(&g_frees, 1, __ATOMIC_SEQ_CST);
    pk_test_free(value);
}

static pk_dedup *make(unsigned shards)
{
    pk_dedup *d = NULL;
    pk_dedup_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.shards = shards;
    cfg.free_value = count_free;
    PK_CHECK_EQ(pk_dedup_create(&d, &cfg), 0);
    return d;
}

/* A value: which key and which execution made it. */
typedef struct val {
    uint64_t key, exec;
} val;

static uint64_t g_exec_seq;

static val *new_val(uint64_t key)
{
    val *v = (val *)pk_test_malloc(sizeof *v);
    if (!v) return NULL;
    v->key = key;
    v->exec = __atomic_add_fetch(&g_exec_seq, 1, __ATOMIC_SEQ_CST);
    return v;
}

/* ---- a gated fn: runs until the test opens its gate, after an optional condition ---- */

typedef struct gate {
    pk_dedup *d;
    uint64_t key;
    int rc;                 /* what fn returns */
    uint64_t wait_coalesced; /* fn first waits until stats.coalesced >= this (0 = no wait) */
    uint64_t wait_timeouts;  /* then until stats.timeouts >= this */
    uint64_t open;          /* then until this is nonzero (atomic) unless wait_open == 0 */
    int wait_open;
    uint64_t started, runs; /* atomic */
} gate;

static int gated_fn(void *arg, void **value, size_t *len)
{
    gate *g = (gate *)arg;
    val *v;
    __atomic_add_fetch(&g->runs, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&g->started, 1, __ATOMIC_SEQ_CST);
    if (g->wait_coalesced) PK_CHECK(wait_stat(g->d, ST_COALESCED, g->wait_coalesced));
    if (g->wait_timeouts) PK_CHECK(wait_stat(g->d, ST_TIMEOUTS, g->wait_timeouts));
    if (g->wait_open) PK_CHECK(wait_u64(&g->open, 1));
    v = new_val(g->key);
    if (!v) return -ENOMEM;
    *value = v;
    *len = sizeof *v;
    return g->rc;
}

typedef struct caller {
    pk_dedup *d;
    gate *g;
    const void *key;
    size_t klen;
    uint64_t timeout_ns;
    pk_dedup_result res;
    int rc;
    uint64_t elapsed_ns;
    pthread_t th;
} caller;

static void *caller_main(void *arg)
{
    caller *c = (caller *)arg;
    uint64_t t0 = pk_test_now_ns();
    c->rc = pk_dedup_do(c->d, c->key, c->klen, gated_fn, c->g, c->timeout_ns, &c->res);
    c->elapsed_ns = pk_test_now_ns() - t0;
    return NULL;
}

static void start(caller *c, pk_dedup *d, gate *g, const char *key, uint64_t timeout_ns)
{
    memset(&c->res, 0, sizeof c->res);
    c->d = d;
    c->g = g;
    c->key = key;
    c->klen = strlen(key);
    c->timeout_ns = timeout_ns;
    PK_CHECK_EQ(pthread_create(&c->th, NULL, caller_main, c), 0);
}

/* ---- tests ---- */

static int quick_fn(void *arg, void **value, size_t *len)
{
    val *v = new_val((uint64_t)(uintptr_t)arg);
    if (!v) return -ENOMEM;
    *value = v;
    *len = sizeof *v;
    return 0;
}

static void test_single_call(void)
{
    pk_dedup *d = make(0);
    pk_dedup_result r;
    pk_dedup_stats s;
    g_frees = 0;
    PK_CHECK_EQ(pk_dedup_do(d, "k", 1, quick_fn, (void *)(uintptr_t)7, PK_FOREVER, &r), 0);
    PK_CHECK_EQ(r.rc, 0);
    PK_CHECK(r.value != NULL && ((const val *)r.value)->key == 7);
    PK_CHECK_EQ(r.len, sizeof(val));
    PK_CHECK_EQ(r.shared, 0);
    PK_CHECK_EQ(g_frees, 0);
    pk_dedup_release(d, &r);
    PK_CHECK_EQ(g_frees, 1);
    PK_CHECK(r.value == NULL && r.call_ == NULL);
    pk_dedup_release(d, &r); /* twice: harmless */
    PK_CHECK_EQ(g_frees, 1);
    s = stats_of(d);
    PK_CHECK_EQ(s.calls, 1);
    PK_CHECK_EQ(s.executions, 1);
    PK_CHECK_EQ(s.coalesced, 0);
    PK_CHECK_EQ(s.in_flight, 0);
    pk_dedup_destroy(d);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

#define NCALLERS 32
static void test_32_callers_one_execution(void)
{
    pk_dedup *d = make(0);
    gate g;
    caller c[NCALLERS];
    int i;
    const void *v0;
    pk_dedup_stats s;
    memset(&g, 0, sizeof g);
    g.d = d;
    g.key = 42;
    g.wait_coalesced = NCALLERS - 1; /* the leader returns only once every other caller joined */
    g_frees = 0;
    for (i = 0; i < NCALLERS; i++) start(&c[i], d, &g, "the-key", PK_FOREVER);
    for (i = 0; i < NCALLERS; i++) pthread_join(c[i].th, NULL);
    PK_CHECK_EQ(g.runs, 1);
    v0 = c[0].res.value;
    PK_CHECK(v0 != NULL);
    for (i = 0; i < NCALLERS; i++) {
        PK_CHECK_EQ(c[i].rc, 0);
        PK_CHECK_EQ(c[i].res.rc, 0);
        PK_CHECK(c[i].res.value == v0);
        PK_CHECK_EQ(c[i].res.len, sizeof(val));
        PK_CHECK(c[i].res.shared != 0);
    }
    s = stats_of(d);
    PK_CHECK_EQ(s.calls, NCALLERS);
    PK_CHECK_EQ(s.executions, 1);
    PK_CHECK_EQ(s.coalesced, NCALLERS - 1);
    PK_CHECK_EQ(s.timeouts, 0);
    PK_CHECK_EQ(s.in_flight, 0);
    for (i = 0; i < NCALLERS - 1; i++) pk_dedup_release(d, &c[i].res);
    PK_CHECK_EQ(g_frees, 0); /* one receiver still holds it */
    PK_CHECK_EQ(((const val *)c[NCALLERS - 1].res.value)->key, 42);
    pk_dedup_release(d, &c[NCALLERS - 1].res);
    PK_CHECK_EQ(g_frees, 1);
    pk_dedup_destroy(d);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

/* Two different keys: each fn waits until both fns are running, which only happens if the
   dedup runs them in parallel. Also with shards = 1, where both keys share one bucket. */
static uint64_t g_par_running;
static int par_fn(void *arg, void **value, size_t *len)
{
    (void)arg;
    (void)value;
    (void)len;
    __atomic_add_fetch(&g_par_running, 1, __ATOMIC_SEQ_CST);
    return wait_u64(&g_par_running, 2) ? 0 : -ETIMEDOUT;
}
typedef struct par_arg {
    pk_dedup *d;
    const char *key;
    int rc;
    pk_dedup_result r;
} par_arg;
static void *par_main(void *arg)
{
    par_arg *p = (par_arg *)arg;
    p->rc = pk_dedup_do(p->d, p->key, strlen(p->key), par_fn, NULL, PK_FOREVER, &p->r);
    return NULL;
}
static void test_distinct_keys_parallel(void)
{
    unsigned shards[2] = {0, 1};
    int k;
    for (k = 0; k < 2; k++) {
        pk_dedup *d = make(shards[k]);
        par_arg a, b;
        pthread_t ta, tb;
        g_par_running = 0;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        a.d = b.d = d;
        a.key = "alpha";
        b.key = "beta";
        pthread_create(&ta, NULL, par_main, &a);
        pthread_create(&tb, NULL, par_main, &b);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        PK_CHECK_EQ(a.rc, 0);
        PK_CHECK_EQ(b.rc, 0);
        PK_CHECK(a.r.value == NULL && a.r.len == 0); /* success without a value */
        PK_CHECK_EQ(a.r.shared, 0);
        PK_CHECK_EQ(b.r.shared, 0);
        PK_CHECK_EQ(stats_of(d).executions, 2);
        pk_dedup_release(d, &a.r);
        pk_dedup_release(d, &b.r);
        pk_dedup_destroy(d);
    }
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

static void test_sequential_calls_each_execute(void)
{
    pk_dedup *d = make(0);
    pk_dedup_result r;
    uint64_t last = 0;
    int i;
    g_frees = 0;
    for (i = 0; i < 5; i++) {
        PK_CHECK_EQ(pk_dedup_do(d, "same", 4, quick_fn, (void *)(uintptr_t)1, PK_FOREVER, &r), 0);
        PK_CHECK(((const val *)r.value)->exec != last); /* a new execution each time: no caching */
        last = ((const val *)r.value)->exec;
        PK_CHECK_EQ(r.shared, 0);
        pk_dedup_release(d, &r);
    }
    PK_CHECK_EQ(stats_of(d).executions, 5);
    PK_CHECK_EQ(stats_of(d).coalesced, 0);
    PK_CHECK_EQ(g_frees, 5);
    pk_dedup_destroy(d);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

static void test_error_to_all(void)
{
    pk_dedup *d = make(0);
    gate g;
    caller c[8];
    int i;
    memset(&g, 0, sizeof g);
    g.d = d;
    g.key = 5;
    g.rc = -EIO;
    g.wait_coalesced = 7;
    g_frees = 0;
    for (i = 0; i < 8; i++) start(&c[i], d, &g, "err", PK_FOREVER);
    for (i = 0; i < 8; i++) pthread_join(c[i].th, NULL);
    PK_CHECK_EQ(g.runs, 1);
    for (i = 0; i < 8; i++) {
        PK_CHECK_EQ(c[i].rc, -EIO);
        PK_CHECK_EQ(c[i].res.rc, -EIO);
        PK_CHECK(c[i].res.shared != 0);
        PK_CHECK(c[i].res.value == c[0].res.value); /* the value that came with the error */
    }
    for (i = 0; i < 8; i++) pk_dedup_release(d, &c[i].res);
    PK_CHECK_EQ(g_frees, 1);
    pk_dedup_destroy(d);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

static void test_follower_timeout(void)
{
    pk_dedup *d = make(0);
    gate g;
    caller lead, quick, slow1, slow2, far;
    pk_dedup_result r0;
    pk_dedup_stats s;
    memset(&g, 0, sizeof g);
    g.d = d;
    g.key = 9;
    g.wait_open = 1;
    g_frees = 0;
    start(&lead, d, &g, "slow", PK_FOREVER);
    PK_CHECK(wait_u64(&g.started, 1));
    /* timeout 0: does not wait, does not join */
    PK_CHECK_EQ(pk_dedup_do(d, "slow", 4, gated_fn, &g, 0, &r0), -ETIMEDOUT);
    PK_CHECK(r0.value == NULL);
    pk_dedup_release(d, &r0);
    start(&quick, d, &g, "slow", 50000000); /* 50 ms */
    start(&slow1, d, &g, "slow", PK_FOREVER);
    start(&slow2, d, &g, "slow", 60000000000ull);
    start(&far, d, &g, "slow", (uint64_t)1 << 62); /* 146 years: waited for in bounded steps */
    PK_CHECK(wait_stat(d, ST_COALESCED, 5));
    pthread_join(quick.th, NULL); /* times out while the execution goes on */
    PK_CHECK_EQ(quick.rc, -ETIMEDOUT);
    PK_CHECK_EQ(quick.res.rc, -ETIMEDOUT);
    PK_CHECK(quick.res.value == NULL);
    PK_CHECK_MSG(quick.elapsed_ns >= 50000000, "timed out after %llu ns", (unsigned long long)quick.elapsed_ns);
    pk_dedup_release(d, &quick.res);
    __atomic_store_n(&g.open, 1, __ATOMIC_SEQ_CST);
    pthread_join(lead.th, NULL);
    pthread_join(slow1.th, NULL);
    pthread_join(slow2.th, NULL);
    pthread_join(far.th, NULL);
    PK_CHECK_EQ(far.rc, 0);
    PK_CHECK(far.res.value == lead.res.value);
    pk_dedup_release(d, &far.res);
    PK_CHECK_EQ(g.runs, 1);
    PK_CHECK_EQ(lead.rc, 0);
    PK_CHECK_EQ(slow1.rc, 0);
    PK_CHECK_EQ(slow2.rc, 0);
    PK_CHECK(lead.res.value == slow1.res.value && lead.res.value == slow2.res.value);
    PK_CHECK(lead.res.shared && slow1.res.shared && slow2.res.shared);
    s = stats_of(d);
    PK_CHECK_EQ(s.timeouts, 2);
    PK_CHECK_EQ(s.coalesced, 5);
    PK_CHECK_EQ(s.executions, 1);
    PK_CHECK_EQ(s.calls, 6);
    pk_dedup_release(d, &slow1.res);
    pk_dedup_release(d, &lead.res);
    PK_CHECK_EQ(g_frees, 0);
    pk_dedup_release(d, &slow2.res);
    PK_CHECK_EQ(g_frees, 1);
    pk_dedup_destroy(d);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

/* Every follower leaves before fn finishes: the leader is the only receiver (not shared) and the
   value is still freed exactly once, at the leader's release. */
static void test_all_followers_time_out(void)
{
    pk_dedup *d = make(0);
    gate g;
    caller lead, f[3];
    int i;
    memset(&g, 0, sizeof g);
    g.d = d;
    g.key = 11;
    g.wait_timeouts = 3;
    g_frees = 0;
    start(&lead, d, &g, "k", PK_FOREVER);
    PK_CHECK(wait_u64(&g.started, 1));
    for (i = 0; i < 3; i++) start(&f[i], d, &g, "k", 1000000 * (uint64_t)(i + 1));
    for (i = 0; i < 3; i++) {
        pthread_join(f[i].th, NULL);
        PK_CHECK_EQ(f[i].rc, -ETIMEDOUT);
        pk_dedup_release(d, &f[i].res);
    }
    pthread_join(lead.th, NULL);
    PK_CHECK_EQ(lead.rc, 0);
    PK_CHECK_EQ(lead.res.shared, 0);
    PK_CHECK_EQ(g_frees, 0);
    pk_dedup_release(d, &lead.res);
    PK_CHECK_EQ(g_frees, 1);
    PK_CHECK_EQ(stats_of(d).timeouts, 3);
    pk_dedup_destroy(d);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

static void test_forget(void)
{
    pk_dedup *d = make(0);
    gate g1, g2;
    caller lead1, f1, lead2;
    pk_dedup_stats s;
    memset(&g1, 0, sizeof g1);
    memset(&g2, 0, sizeof g2);
    g1.d = g2.d = d;
    g1.key = 1;
    g2.key = 2;
    g1.wait_open = 1;
    g_frees = 0;
    PK_CHECK_EQ(pk_dedup_forget(d, "f", 1), -ENOENT);
    start(&lead1, d, &g1, "f", PK_FOREVER);
    PK_CHECK(wait_u64(&g1.started, 1));
    start(&f1, d, &g1, "f", PK_FOREVER);
    PK_CHECK(wait_stat(d, ST_COALESCED, 1));
    PK_CHECK_EQ(pk_dedup_forget(d, "f", 1), 0);
    PK_CHECK_EQ(pk_dedup_forget(d, "f", 1), -ENOENT); /* detached already */
    /* a later caller starts a new execution while the first still runs */
    start(&lead2, d, &g2, "f", PK_FOREVER);
    pthread_join(lead2.th, NULL);
    PK_CHECK_EQ(lead2.rc, 0);
    PK_CHECK_EQ(g2.runs, 1);
    PK_CHECK_EQ(((const val *)lead2.res.value)->key, 2);
    PK_CHECK_EQ(lead2.res.shared, 0);
    s = stats_of(d);
    PK_CHECK_EQ(s.executions, 2);
    PK_CHECK_EQ(s.in_flight, 1);
    /* the first execution finishes for its follower */
    __atomic_store_n(&g1.open, 1, __ATOMIC_SEQ_CST);
    pthread_join(lead1.th, NULL);
    pthread_join(f1.th, NULL);
    PK_CHECK_EQ(g1.runs, 1);
    PK_CHECK_EQ(lead1.rc, 0);
    PK_CHECK_EQ(f1.rc, 0);
    PK_CHECK(f1.res.value == lead1.res.value);
    PK_CHECK_EQ(((const val *)f1.res.value)->key, 1);
    PK_CHECK(f1.res.shared && lead1.res.shared);
    PK_CHECK_EQ(stats_of(d).in_flight, 0);
    pk_dedup_release(d, &lead1.res);
    pk_dedup_release(d, &f1.res);
    pk_dedup_release(d, &lead2.res);
    PK_CHECK_EQ(g_frees, 2);
    PK_CHECK_EQ(g_frees, stats_of(d).executions);
    pk_dedup_destroy(d);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

/* fn calling pk_dedup_do: its own key -> -EDEADLK (immediately, whatever the timeout); another
   key -> runs nested; its own key after forgetting it -> a new nested execution. */
typedef struct reent {
    pk_dedup *d;
    int self_rc, self_rc_timeout, other_rc, after_forget_rc, forget_rc;
    uint64_t other_key;
} reent;
static int reent_fn(void *arg, void **value, size_t *len)
{
    reent *e = (reent *)arg;
    pk_dedup_result r;
    uint64_t t0 = pk_test_now_ns();
    e->self_rc = pk_dedup_do(e->d, "me", 2, reent_fn, arg, PK_FOREVER, &r);
    pk_dedup_release(e->d, &r);
    e->self_rc_timeout = pk_dedup_do(e->d, "me", 2, reent_fn, arg, 10000000000ull, &r);
    pk_dedup_release(e->d, &r);
    PK_CHECK(pk_test_now_ns() - t0 < 5000000000ull); /* did not wait for its deadline */
    e->other_rc = pk_dedup_do(e->d, "other", 5, quick_fn, (void *)(uintptr_t)77, PK_FOREVER, &r);
    if (e->other_rc == 0) e->other_key = ((const val *)r.value)->key;
    pk_dedup_release(e->d, &r);
    e->forget_rc = pk_dedup_forget(e->d, "me", 2);
    e->after_forget_rc = pk_dedup_do(e->d, "me", 2, quick_fn, (void *)(uintptr_t)78, PK_FOREVER, &r);
    pk_dedup_release(e->d, &r);
    *value = NULL;
    *len = 123; /* no value: len is reported as 0 */
    return 0;
}
static void test_self_reentry(void)
{
    pk_dedup *d = make(0);
    reent e;
    pk_dedup_result r;
    pk_dedup_stats s;
    memset(&e, 0, sizeof e);
    e.d = d;
    PK_CHECK_EQ(pk_dedup_do(d, "me", 2, reent_fn, &e, PK_FOREVER, &r), 0);
    PK_CHECK(r.value == NULL);
    PK_CHECK_EQ(r.len, 0);
    pk_dedup_release(d, &r);
    PK_CHECK_EQ(e.self_rc, -EDEADLK);
    PK_CHECK_EQ(e.self_rc_timeout, -EDEADLK);
    PK_CHECK_EQ(e.other_rc, 0);
    PK_CHECK_EQ(e.other_key, 77);
    PK_CHECK_EQ(e.forget_rc, 0);
    PK_CHECK_EQ(e.after_forget_rc, 0);
    s = stats_of(d);
    PK_CHECK_EQ(s.executions, 3);
    PK_CHECK_EQ(s.coalesced, 2);
    PK_CHECK_EQ(s.calls, 5);
    PK_CHECK_EQ(s.in_flight, 0);
    pk_dedup_destroy(d);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

static int zero_fn(void *arg, void **value, size_t *len)
{
    (void)arg;
    (void)value;
    (void)len;
    return 0;
}

/* free_value runs outside any lock: it may call back into the dedup, even on the same key
   (a spin lock is not recursive, so a held bucket lock would hang here). Both the sole-owner
   path and the shared-block path. */
static int g_cb_rc1, g_cb_rc2;
static void reentrant_free(void *value, void *user)
{
    pk_dedup *d = *(pk_dedup **)user;
    pk_dedup_result r;
    g_cb_rc1 = pk_dedup_forget(d, "cb", 2);
    g_cb_rc2 = pk_dedup_do(d, "cb", 2, zero_fn, NULL, PK_FOREVER, &r);
    pk_dedup_release(d, &r);
    count_free(value, NULL);
}
static void test_callbacks_hold_no_lock(void)
{
    pk_dedup *d = NULL;
    pk_dedup_config cfg;
    pk_dedup_result r;
    gate g;
    caller lead, f;
    memset(&cfg, 0, sizeof cfg);
    cfg.shards = 1;
    cfg.free_value = reentrant_free;
    cfg.user = &d;
    g_frees = 0;
    PK_CHECK_EQ(pk_dedup_create(&d, &cfg), 0);
    PK_CHECK_EQ(pk_dedup_do(d, "cb", 2, quick_fn, NULL, PK_FOREVER, &r), 0);
    g_cb_rc1 = g_cb_rc2 = 1;
    pk_dedup_release(d, &r);
    PK_CHECK_EQ(g_frees, 1);
    PK_CHECK_EQ(g_cb_rc1, -ENOENT);
    PK_CHECK_EQ(g_cb_rc2, 0);
    memset(&g, 0, sizeof g);
    g.d = d;
    g.wait_coalesced = 1;
    start(&lead, d, &g, "cb", PK_FOREVER);
    PK_CHECK(wait_u64(&g.started, 1));
    start(&f, d, &g, "cb", PK_FOREVER);
    pthread_join(lead.th, NULL);
    pthread_join(f.th, NULL);
    PK_CHECK(lead.res.shared && f.res.shared);
    pk_dedup_release(d, &lead.res);
    g_cb_rc1 = g_cb_rc2 = 1;
    pk_dedup_release(d, &f.res); /* the last reference: frees through the shared block */
    PK_CHECK_EQ(g_frees, 2);
    PK_CHECK_EQ(g_cb_rc1, -ENOENT);
    PK_CHECK_EQ(g_cb_rc2, 0);
    pk_dedup_destroy(d);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

static void test_bad_input(void)
{
    pk_dedup *d = make(0);
    pk_dedup_result r;
    pk_dedup_stats s;
    PK_CHECK_EQ(pk_dedup_create(NULL, NULL), -EINVAL);
    PK_CHECK_EQ(pk_dedup_do(NULL, "k", 1, zero_fn, NULL, 0, &r), -EINVAL);
    PK_CHECK_EQ(r.rc, -EINVAL);
    PK_CHECK(r.call_ == NULL);
    pk_dedup_release(d, &r);
    PK_CHECK_EQ(pk_dedup_do(d, "k", 1, NULL, NULL, 0, &r), -EINVAL);
    PK_CHECK_EQ(pk_dedup_do(d, "k", 1, zero_fn, NULL, 0, NULL), -EINVAL);
    PK_CHECK_EQ(pk_dedup_do(d, NULL, 3, zero_fn, NULL, 0, &r), -EINVAL);
    s = stats_of(d);
    PK_CHECK_EQ(s.calls, 0); /* -EINVAL is not counted */
    /* zero-length key, NULL or not: one valid key */
    PK_CHECK_EQ(pk_dedup_do(d, NULL, 0, zero_fn, NULL, 0, &r), 0);
    pk_dedup_release(d, &r);
    PK_CHECK_EQ(pk_dedup_do(d, "", 0, zero_fn, NULL, 0, &r), 0);
    pk_dedup_release(d, &r);
    PK_CHECK_EQ(stats_of(d).executions, 2);
    PK_CHECK_EQ(pk_dedup_forget(NULL, "k", 1), -EINVAL);
    PK_CHECK_EQ(pk_dedup_forget(d, NULL, 1), -EINVAL);
    PK_CHECK_EQ(pk_dedup_forget(d, NULL, 0), -ENOENT);
    pk_dedup_release(NULL, &r);
    pk_dedup_release(d, NULL);
    pk_dedup_stats_get(d, NULL);
    memset(&s, 0xff, sizeof s); /* NULL dedup: the snapshot is zeroed, not left as it was */
    pk_dedup_stats_get(NULL, &s);
    PK_CHECK_EQ(s.calls, 0);
    PK_CHECK_EQ(s.executions, 0);
    pk_dedup_destroy(NULL);
    pk_dedup_destroy(d);
    /* all-zero config and explicit shard counts */
    {
        pk_dedup_config cfg;
        unsigned sh[4] = {1, 3, 100000, 4000000000u};
        int i;
        memset(&cfg, 0, sizeof cfg);
        for (i = 0; i < 4; i++) {
            cfg.shards = sh[i];
            PK_CHECK_EQ(pk_dedup_create(&d, &cfg), 0);
            PK_CHECK_EQ(pk_dedup_do(d, "x", 1, quick_fn, NULL, PK_FOREVER, &r), 0);
            pk_dedup_release(d, &r); /* free_value NULL: PK_FREE */
            pk_dedup_destroy(d);
        }
    }
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

/* ---- allocation-failure sweep: create, a leader whose fn waits for a follower on another
   thread (the follower's shared block is the one allocation on the call path), a value made by
   fn through PK_MALLOC, then a second call that must still work, destroy. ---- */

typedef struct sweep_ctx {
    pk_dedup *d;
    caller f;
    gate g;
} sweep_ctx;

static int sweep_leader_fn(void *arg, void **value, size_t *len)
{
    sweep_ctx *x = (sweep_ctx *)arg;
    val *v;
    start(&x->f, x->d, &x->g, "sw", PK_FOREVER);
    if (!wait_stat(x->d, ST_COALESCED, 1)) return -EIO; /* joined, or refused with -ENOMEM */
    v = new_val(3);
    if (!v) return -ENOMEM;
    *value = v;
    *len = sizeof *v;
    return 0;
}

static int sweep_scenario(void *ctx)
{
    sweep_ctx *x = (sweep_ctx *)ctx;
    pk_dedup_result r;
    int rc, ok = 1;
    memset(x, 0, sizeof *x);
    rc = pk_dedup_create(&x->d, NULL);
    if (rc != 0) return rc == -ENOMEM && x->d == NULL ? 0 : 1;
    x->g.d = x->d;
    x->g.key = 4;
    rc = pk_dedup_do(x->d, "sw", 2, sweep_leader_fn, x, PK_FOREVER, &r);
    pthread_join(x->f.th, NULL);
    if (rc != 0 && rc != -ENOMEM) ok = 0;
    if (x->f.rc == -ENOMEM && rc == 0) { /* refused follower: the leader alone received */
        if (r.shared != 0 || x->f.res.value != NULL) ok = 0;
    } else if (x->f.rc != rc || x->f.res.value != r.value || (rc == 0 && (!r.shared || !x->f.res.shared))) {
        ok = 0;
    }
    pk_dedup_release(x->d, &x->f.res);
    pk_dedup_release(x->d, &r);
    /* the dedup stays usable */
    rc = pk_dedup_do(x->d, "sw", 2, zero_fn, NULL, PK_FOREVER, &r);
    pk_dedup_release(x->d, &r);
    if (rc != 0) ok = 0;
    if (stats_of(x->d).in_flight != 0) ok = 0;
    pk_dedup_destroy(x->d);
    return ok ? 0 : 1;
}

static void test_alloc_failure_sweep(void)
{
    sweep_ctx x;
    long n = pk_test_alloc_sweep("dedup create + follower + value", sweep_scenario, &x);
    PK_CHECK(n >= 3);
}

/* ---- 4 threads, random keys from a small set, random timeouts and forgets: every call that
   succeeded got the value of an execution for its own key; frees == executions. ---- */

typedef struct stress_arg {
    pk_dedup *d;
    uint64_t seed;
    long iters;
    long ok, timeouts, bad;
} stress_arg;

static int stress_fn(void *arg, void **value, size_t *len)
{
    uint64_t key = (uint64_t)(uintptr_t)arg;
    val *v = new_val(key);
    if (!v) return -ENOMEM;
    if (v->exec % 3 == 0) sched_yield();
    if (v->exec % 17 == 0) pk_test_sleep_ns(20000);
    *value = v;
    *len = sizeof *v;
    return v->exec % 29 == 0 ? -EIO : 0;
}

static void *stress_main(void *p)
{
    stress_arg *a = (stress_arg *)p;
    long i;
    for (i = 0; i < a->iters; i++) {
        uint64_t r = pk_test_rand(&a->seed);
        uint64_t key = r % 8, tmo = (r >> 8) % 10 == 0 ? 0 : (r >> 8) % 10 == 1 ? 5000 : PK_FOREVER;
        char kb[16];
        pk_dedup_result res;
        int rc;
        snprintf(kb, sizeof kb, "key-%u", (unsigned)key);
        if ((r >> 16) % 50 == 0) {
            rc = pk_dedup_forget(a->d, kb, strlen(kb));
            if (rc != 0 && rc != -ENOENT) a->bad++;
            continue;
        }
        rc = pk_dedup_do(a->d, kb, strlen(kb), stress_fn, (void *)(uintptr_t)key, tmo, &res);
        if (rc == -ETIMEDOUT) {
            a->timeouts++;
            if (res.value) a->bad++;
        } else if (rc == 0 || rc == -EIO) {
            const val *v = (const val *)res.value;
            if (!v || v->key != key || v->exec == 0 || v->exec > __atomic_load_n(&g_exec_seq, __ATOMIC_SEQ_CST) ||
                (rc == -EIO) != (v->exec % 29 == 0) || res.len != sizeof *v)
                a->bad++;
            else a->ok++;
        } else {
            a->bad++;
        }
        pk_dedup_release(a->d, &res);
    }
    return NULL;
}

static void test_stress_4_threads(void)
{
    unsigned shards[2] = {0, 1};
    int k, i;
    for (k = 0; k < 2; k++) {
        pk_dedup *d = make(shards[k]);
        stress_arg a[4];
        pthread_t th[4];
        pk_dedup_stats s;
        long ok = 0, tmo = 0;
        g_frees = 0;
        g_exec_seq = 0;
        for (i = 0; i < 4; i++) {
            memset(&a[i], 0, sizeof a[i]);
            a[i].d = d;
            a[i].seed = 1000 + (uint64_t)i + 10 * (uint64_t)k;
            a[i].iters = pk_test_scale(40000);
            pthread_create(&th[i], NULL, stress_main, &a[i]);
        }
        for (i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            PK_CHECK_EQ(a[i].bad, 0);
            ok += a[i].ok;
            tmo += a[i].timeouts;
        }
        s = stats_of(d);
        PK_CHECK_EQ(s.calls, s.executions + s.coalesced);
        PK_CHECK_EQ(s.in_flight, 0);
        PK_CHECK_EQ(s.timeouts, (uint64_t)tmo);
        PK_CHECK_EQ(s.calls, (uint64_t)(ok + tmo));
        PK_CHECK_EQ(s.executions, g_exec_seq);
        PK_CHECK_EQ(g_frees, s.executions); /* every value freed once, none leaked */
        printf("    shards=%u: %llu calls, %llu executions, %llu coalesced, %llu timeouts\n", shards[k],
               (unsigned long long)s.calls, (unsigned long long)s.executions,
               (unsigned long long)s.coalesced, (unsigned long long)s.timeouts);
        pk_dedup_destroy(d);
    }
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

int main(void)
{
    pk_test_main_begin("test_dedup");
    PK_TEST(test_single_call);
    PK_TEST(test_32_callers_one_execution);
    PK_TEST(test_distinct_keys_parallel);
    PK_TEST(test_sequential_calls_each_execute);
    PK_TEST(test_error_to_all);
    PK_TEST(test_follower_timeout);
    PK_TEST(test_all_followers_time_out);
    PK_TEST(test_forget);
    PK_TEST(test_self_reentry);
    PK_TEST(test_callbacks_hold_no_lock);
    PK_TEST(test_bad_input);
    PK_TEST(test_alloc_failure_sweep);
    PK_TEST(test_stress_4_threads);
    return pk_test_main_end();
}
