/* test_exec.c — tests of pk_exec.h: map results and error rules, concurrency bound, fail-fast,
   progress, nesting three deep from every worker, blocking items, the submit queue (priorities,
   deadlines, displacement, exactly-once under 4 submitters), wait_idle, destroy, bad input,
   thread-creation and allocation failure at create, statistics, the shared pool. */
#include <pthread.h>

#include "pk_test.h"

#define PK_MALLOC(n) pk_test_malloc(n)
#define PK_REALLOC(p, n) pk_test_realloc(p, n)
#define PK_FREE(p) pk_test_free(p)

/* thread creation that the tests can make fail (the k-th call from now), and that counts the
   worker threads alive, to prove a failed create leaves none behind */
static long tc_calls, tc_fail_at, tc_alive;
static long tc_budget = -1; /* >= 0: creations still allowed, then every creation fails */
typedef struct tc_start { void *(*fn)(void *); void *arg; } tc_start;
static void *tc_trampoline(void *p)
{
    tc_start s = *(tc_start *)p;
    void *r;
    free(p);
    __atomic_add_fetch(&tc_alive, 1, __ATOMIC_SEQ_CST);
    r = s.fn(s.arg);
    __atomic_sub_fetch(&tc_alive, 1, __ATOMIC_SEQ_CST);
    return r;
}
static int tc_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
    long n = __atomic_add_fetch(&tc_calls, 1, __ATOMIC_SEQ_CST);
    tc_start *s;
    int rc;
    if (tc_fail_at && n == tc_fail_at) return EAGAIN;
    if (__atomic_load_n(&tc_budget, __ATOMIC_SEQ_CST) >= 0 && __atomic_sub_fetch(&tc_budget, 1, __ATOMIC_SEQ_CST) < 0)
        return EAGAIN;
    s = (tc_start *)malloc(sizeof *s);
    if (!s) return ENOMEM;
    s->fn = fn;
    s->arg = arg;
    rc = pthread_create(t, NULL, tc_trampoline, s);
    if (rc) free(s);
    return rc;
}
#define PK_EXEC_THREAD_CREATE(t, fn, arg) tc_create((t), (fn), (arg))

#define PK_EXEC_IMPLEMENTATION
#include "../pk_exec.h"

static int slow_mode(void)
{
    const char *s = getenv("PK_TEST_SLOW");
    return s && *s && *s != '0';
}

/* ---- helpers -------------------------------------------------------------------------------- */

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open, started;
} gate;

static void gate_init(gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = g->started = 0;
}
static void gate_fini(gate *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}
/* a task that holds its worker until the gate opens */
static void gate_task(void *arg)
{
    gate *g = (gate *)arg;
    pthread_mutex_lock(&g->mu);
    g->started++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}
static void gate_wait_started(gate *g, int n)
{
    pthread_mutex_lock(&g->mu);
    while (g->started < n) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}
static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* an ordered log of events: id*8 + kind (kind 0 = ran, 1 = dropped -ETIMEDOUT, 2 = dropped -EAGAIN) */
static int ev_log[4096];
static int ev_n;
static void ev_reset(void) { __atomic_store_n(&ev_n, 0, __ATOMIC_SEQ_CST); }
static void ev_push(int v)
{
    int i = __atomic_fetch_add(&ev_n, 1, __ATOMIC_SEQ_CST);
    if (i < 4096) ev_log[i] = v;
}
static void ev_run(void *arg) { ev_push((int)(intptr_t)arg * 8); }
static void ev_drop(void *arg, int reason) { ev_push((int)(intptr_t)arg * 8 + (reason == -ETIMEDOUT ? 1 : reason == -EAGAIN ? 2 : 7)); }

static uint64_t fake_now = 1000000;
static uint64_t fake_clock(void *user)
{
    (void)user;
    return __atomic_load_n(&fake_now, __ATOMIC_SEQ_CST);
}

/* (the header's Quick start is a complete program: tests/run.sh compiles and runs it) */

static int square(void *ctx, size_t i)
{
    int *v = (int *)ctx;
    v[i] *= v[i];
    return 0;
}

/* ---- bad input ------------------------------------------------------------------------------ */

static int calls;
static int count_fn(void *ctx, size_t i)
{
    (void)ctx;
    (void)i;
    __atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST);
    return 0;
}
static void noop_task(void *arg) { (void)arg; }

static void test_bad_input(void)
{
    pk_exec *e = (pk_exec *)&calls, *e2;
    pk_exec_config cfg;
    pk_exec_task_opts to;
    pk_exec_stats st;
    long live0 = pk_test_alloc_live();
    memset(&cfg, 0, sizeof cfg);
    memset(&to, 0, sizeof to);
    PK_CHECK_EQ(pk_exec_create(NULL, NULL), -EINVAL);
    cfg.threads = PK_EXEC_MAX_THREADS + 1;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), -EINVAL);
    PK_CHECK(e == (pk_exec *)&calls); /* untouched on failure */
    cfg.threads = 2;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    calls = 0;
    PK_CHECK_EQ(pk_exec_map(e, 0, count_fn, NULL, NULL), 0);
    PK_CHECK_EQ(pk_exec_map(e, 0, NULL, NULL, NULL), -EINVAL);
    PK_CHECK_EQ(calls, 0);
    PK_CHECK_EQ(pk_exec_map(NULL, 5, count_fn, NULL, NULL), -EINVAL);
    PK_CHECK_EQ(pk_exec_map(e, 5, NULL, NULL, NULL), -EINVAL);
    if (sizeof(size_t) >= 8) PK_CHECK_EQ(pk_exec_map(e, (size_t)-1, count_fn, NULL, NULL), -EINVAL);
    PK_CHECK_EQ(pk_exec_parallel_map(0, count_fn, NULL, 0, NULL), 0);
    PK_CHECK_EQ(pk_exec_parallel_map(3, NULL, NULL, 0, NULL), -EINVAL);
    PK_CHECK_EQ(pk_exec_submit(NULL, noop_task, NULL), -EINVAL);
    PK_CHECK_EQ(pk_exec_submit(e, NULL, NULL), -EINVAL);
    to.priority = 2;
    PK_CHECK_EQ(pk_exec_submit_opts(e, noop_task, NULL, &to), -EINVAL);
    to.priority = -2;
    PK_CHECK_EQ(pk_exec_submit_opts(e, noop_task, NULL, &to), -EINVAL);
    to.priority = PK_EXEC_HIGH;
    to.deadline_ns = 1; /* long past */
    PK_CHECK_EQ(pk_exec_submit_opts(e, noop_task, NULL, &to), -ETIMEDOUT);
    pk_exec_wait_idle(NULL);
    pk_exec_stats_get(NULL, &st);
    pk_exec_stats_get(e, NULL);
    pk_exec_stats_get(e, &st);
    PK_CHECK_EQ(st.submitted, 0);
    PK_CHECK_EQ(st.rejected_expired, 1);
    PK_CHECK_EQ(st.threads, 2);
    pk_exec_destroy(NULL);
    pk_exec_destroy(e);
    /* threads = 1 and a huge queue_max are fine */
    cfg.threads = 1;
    cfg.queue_max = (size_t)-1;
    PK_CHECK_EQ(pk_exec_create(&e2, &cfg), 0);
    PK_CHECK_EQ(pk_exec_map(e2, 3, count_fn, NULL, NULL), 0);
    pk_exec_destroy(e2);
    PK_CHECK_EQ(pk_test_alloc_live(), live0);
}

/* ---- map results ------------------------------------------------------------------------------ */

typedef struct res_ctx {
    int *ran;     /* per index: times run */
    size_t fail_a, fail_b, fail_c;
} res_ctx;

static int res_fn(void *ctx, size_t i)
{
    res_ctx *c = (res_ctx *)ctx;
    __atomic_add_fetch(&c->ran[i], 1, __ATOMIC_RELAXED);
    if (i == c->fail_a) return -EIO;
    if (i == c->fail_b) return -ENOENT;
    if (i == c->fail_c) return -E2BIG;
    return 0;
}

static void test_map_results(void)
{
    static const size_t ns[] = {1, 2, 3, 7, 64, 1000, 100003};
    static const size_t grains[] = {0, 1, 3, 64, 1000000};
    static const unsigned concs[] = {0, 1, 2, 3, 100};
    pk_exec *e;
    pk_exec_config cfg;
    size_t a, b, c, i;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 3;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    for (a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (b = 0; b < sizeof grains / sizeof grains[0]; b++)
            for (c = 0; c < sizeof concs / sizeof concs[0]; c++) {
                size_t n = ns[a];
                res_ctx rc;
                pk_exec_map_opts o;
                int *errs = (int *)calloc(n, sizeof(int)), *ran = (int *)calloc(n, sizeof(int));
                int r, bad = 0;
                memset(&o, 0, sizeof o);
                rc.ran = ran;
                rc.fail_a = n / 2;          /* failures at n/2, n-1 and n/3: the lowest wins */
                rc.fail_b = n - 1;
                rc.fail_c = n > 2 ? n / 3 : (size_t)-1;
                o.errors = errs;
                o.grain = grains[b];
                o.concurrency = concs[c];
                r = pk_exec_map(e, n, res_fn, &rc, &o);
                for (i = 0; i < n; i++) {
                    int want = i == rc.fail_a ? -EIO : i == rc.fail_b ? -ENOENT : i == rc.fail_c ? -E2BIG : 0;
                    if (ran[i] != 1 || errs[i] != want) bad++;
                }
                PK_CHECK_MSG(bad == 0, "n %zu grain %zu conc %u: %d items wrong", n, grains[b], concs[c], bad);
                {
                    size_t lo = rc.fail_a;
                    int want = -EIO;
                    if (rc.fail_c < lo) { lo = rc.fail_c; want = -E2BIG; }
                    if (rc.fail_b < lo) { lo = rc.fail_b; want = -ENOENT; }
                    if (n == 1) want = -EIO; /* all three are index 0; fail_a is tested first */
                    PK_CHECK_MSG(r == want, "n %zu grain %zu conc %u: returned %d, want %d", n, grains[b],
                                 concs[c], r, want);
                }
                /* without errors[] the return value is the same */
                memset(ran, 0, n * sizeof(int));
                o.errors = NULL;
                PK_CHECK_EQ(pk_exec_map(e, n, res_fn, &rc, &o), r);
                free(errs);
                free(ran);
            }
    pk_exec_destroy(e);
}

/* ---- concurrency bound ------------------------------------------------------------------------ */

typedef struct bound_ctx {
    int in_flight, max_seen;
} bound_ctx;

static int bound_fn(void *ctx, size_t i)
{
    bound_ctx *b = (bound_ctx *)ctx;
    int now = __atomic_add_fetch(&b->in_flight, 1, __ATOMIC_SEQ_CST), m;
    (void)i;
    m = __atomic_load_n(&b->max_seen, __ATOMIC_SEQ_CST);
    while (now > m && !__atomic_compare_exchange_n(&b->max_seen, &m, now, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    pk_test_sleep_ns(300000);
    __atomic_sub_fetch(&b->in_flight, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static void test_concurrency_bound(void)
{
    static const unsigned concs[] = {1, 2, 3, 5, 0};
    pk_exec *e;
    pk_exec_config cfg;
    size_t c;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 6;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    for (c = 0; c < sizeof concs / sizeof concs[0]; c++) {
        bound_ctx b = {0, 0};
        pk_exec_map_opts o;
        unsigned limit = concs[c] ? concs[c] : 7;
        memset(&o, 0, sizeof o);
        o.concurrency = concs[c];
        o.grain = 1;
        PK_CHECK_EQ(pk_exec_map(e, 120, bound_fn, &b, &o), 0);
        PK_CHECK_MSG(b.max_seen <= (int)limit, "concurrency %u: %d items ran at once", limit, b.max_seen);
        PK_CHECK_MSG(b.max_seen >= (limit > 2 ? 2 : 1), "concurrency %u: never more than %d at once (no helpers?)",
                     limit, b.max_seen);
        printf("    concurrency %u: at most %d items at once\n", limit, b.max_seen);
    }
    pk_exec_destroy(e);
}

/* ---- fail fast -------------------------------------------------------------------------------- */

typedef struct ff_ctx {
    size_t fail_at;
    int ran;
} ff_ctx;

static int ff_fn(void *ctx, size_t i)
{
    ff_ctx *f = (ff_ctx *)ctx;
    __atomic_add_fetch(&f->ran, 1, __ATOMIC_SEQ_CST);
    if (i >= f->fail_at && i % 2 == 0) return -EPIPE - (int)(i % 3); /* fail_at and even indices after */
    pk_test_sleep_ns(20000);
    return 0;
}

static void test_fail_fast(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    unsigned conc;
    const size_t n = 2000;
    int *errs = (int *)malloc(n * sizeof(int));
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 4;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    /* concurrency 1: exact counts */
    {
        ff_ctx f = {10, 0};
        pk_exec_map_opts o;
        size_t i, canceled = 0;
        memset(&o, 0, sizeof o);
        o.concurrency = 1;
        o.fail_fast = 1;
        o.errors = errs;
        PK_CHECK_EQ(pk_exec_map(e, n, ff_fn, &f, &o), -EPIPE - 1);
        PK_CHECK_EQ(f.ran, 11);
        for (i = 0; i < n; i++) canceled += errs[i] == -ECANCELED;
        PK_CHECK_EQ(canceled, n - 11);
        PK_CHECK_EQ(errs[9], 0);
        PK_CHECK_EQ(errs[10], -EPIPE - 1);
    }
    /* concurrency 1 without fail_fast: everything runs */
    {
        ff_ctx f = {1990, 0};
        pk_exec_map_opts o;
        memset(&o, 0, sizeof o);
        o.concurrency = 1;
        PK_CHECK_EQ(pk_exec_map(e, n, ff_fn, &f, &o), -EPIPE - (int)(1990 % 3));
        PK_CHECK_EQ(f.ran, (int)n);
    }
    /* several participants, grains of 1 and automatic: items running when the failure happened
       may finish (at most concurrency - 1 more start), the rest are skipped */
    for (conc = 2; conc <= 5; conc++) {
        size_t grain;
        for (grain = 0; grain <= 1; grain++) {
            ff_ctx f = {10, 0};
            pk_exec_map_opts o;
            size_t i, canceled = 0, ok = 0, failed = 0, lowest = n;
            int r;
            memset(&o, 0, sizeof o);
            o.concurrency = conc;
            o.fail_fast = 1;
            o.errors = errs;
            o.grain = grain;
            r = pk_exec_map(e, n, ff_fn, &f, &o);
            for (i = 0; i < n; i++) {
                if (errs[i] == -ECANCELED) canceled++;
                else if (errs[i] == 0) ok++;
                else {
                    failed++;
                    if (i < lowest) lowest = i;
                }
            }
            PK_CHECK_EQ(canceled + ok + failed, n);
            PK_CHECK_EQ((size_t)f.ran, ok + failed);
            PK_CHECK(lowest < n);
            PK_CHECK_EQ(r, errs[lowest]);
            PK_CHECK_MSG(f.ran <= 11 + 5 * (int)conc, "conc %u grain %zu: %d ran after a failure at 10", conc,
                         grain, f.ran);
            PK_CHECK(canceled >= n - 11 - 5 * conc);
        }
    }
    pk_exec_destroy(e);
    free(errs);
}

/* ---- progress ---------------------------------------------------------------------------------- */

typedef struct prog_ctx {
    int inside, overlap, calls, bad_order;
    size_t last, total_seen;
    int after_return;
    int returned;
} prog_ctx;

static int prog_item(void *ctx, size_t i)
{
    (void)ctx;
    if (i % 7 == 0) pk_test_sleep_ns(2000);
    return i == 333 ? -EIO : 0;
}

static void prog_cb(void *ctx, size_t done, size_t total)
{
    prog_ctx *p = (prog_ctx *)ctx;
    if (__atomic_add_fetch(&p->inside, 1, __ATOMIC_SEQ_CST) != 1) __atomic_store_n(&p->overlap, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&p->returned, __ATOMIC_SEQ_CST)) p->after_return = 1;
    if (done <= p->last || done > total) p->bad_order++;
    p->last = done;
    p->total_seen = total;
    p->calls++;
    if (p->calls % 50 == 0) pk_test_sleep_ns(20000); /* a slow reporter: others must go on */
    __atomic_sub_fetch(&p->inside, 1, __ATOMIC_SEQ_CST);
}

static void test_progress(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    int ff, conc;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 4;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    for (ff = 0; ff <= 1; ff++)
        for (conc = 1; conc <= 5; conc += 2) {
            prog_ctx p;
            pk_exec_map_opts o;
            int r;
            memset(&p, 0, sizeof p);
            memset(&o, 0, sizeof o);
            o.progress = prog_cb;
            o.fail_fast = ff;
            o.concurrency = (unsigned)conc;
            r = pk_exec_map(e, 3000, prog_item, &p, &o);
            __atomic_store_n(&p.returned, 1, __ATOMIC_SEQ_CST);
            PK_CHECK_EQ(r, -EIO);
            PK_CHECK_EQ(p.overlap, 0);
            PK_CHECK_EQ(p.bad_order, 0);
            PK_CHECK_EQ(p.last, 3000);
            PK_CHECK_EQ(p.total_seen, 3000);
            PK_CHECK(p.calls >= 1);
            if (!ff && conc == 1) PK_CHECK_EQ(p.calls, 3000); /* one call per item when nothing overlaps */
            pk_test_sleep_ns(1000000);
            PK_CHECK_EQ(p.after_return, 0);
        }
    pk_exec_destroy(e);
}

/* ---- nesting ----------------------------------------------------------------------------------- */

typedef struct nest_ctx {
    pk_exec *e;
    int arrived, participants;
    long leaves;
    int use_shared;
} nest_ctx;

typedef struct nest_arg {
    nest_ctx *root;
    int depth;
} nest_arg;

static int nest_fn(void *ctx, size_t i)
{
    nest_arg *a = (nest_arg *)ctx, sub;
    pk_exec_map_opts o;
    int errs[6], r;
    (void)i;
    if (a->depth == 0) {
        /* outer items wait (up to 2 s) until every participant holds one: then every worker is busy
           in the outer map when the nested maps start */
        uint64_t t0 = pk_test_now_ns();
        __atomic_add_fetch(&a->root->arrived, 1, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&a->root->arrived, __ATOMIC_SEQ_CST) < a->root->participants &&
               pk_test_now_ns() - t0 < 2000000000u)
            pk_test_sleep_ns(100000);
    }
    if (a->depth == 3) {
        __atomic_add_fetch(&a->root->leaves, 1, __ATOMIC_SEQ_CST);
        return 0;
    }
    sub.root = a->root;
    sub.depth = a->depth + 1;
    memset(&o, 0, sizeof o);
    o.errors = errs;
    r = a->root->use_shared ? pk_exec_parallel_map(6, nest_fn, &sub, 0, errs) : pk_exec_map(a->root->e, 6, nest_fn, &sub, &o);
    for (i = 0; i < 6; i++)
        if (errs[i] != 0) return -EPROTO;
    return r;
}

static void test_nested_three_deep(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    int shared;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 4;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    for (shared = 0; shared <= 1; shared++) {
        nest_ctx root;
        nest_arg top;
        pk_exec_map_opts o;
        int errs[5], i, r;
        memset(&root, 0, sizeof root);
        root.e = e;
        root.participants = 5; /* 4 workers + the caller */
        root.use_shared = shared;
        top.root = &root;
        top.depth = 0;
        memset(&o, 0, sizeof o);
        o.errors = errs;
        o.grain = 1;
        r = pk_exec_map(e, 5, nest_fn, &top, &o);
        PK_CHECK_EQ(r, 0);
        for (i = 0; i < 5; i++) PK_CHECK_EQ(errs[i], 0);
        PK_CHECK_EQ(root.leaves, 5 * 6 * 6 * 6);
        PK_CHECK_MSG(root.arrived == 5, "only %d of 5 participants took an outer item", root.arrived);
    }
    pk_exec_destroy(e);
}

/* more maps open at once than the pool has slots (64): the extra ones run on their callers */
static int many_inner(void *ctx, size_t i)
{
    (void)ctx;
    (void)i;
    pk_test_sleep_ns(200000);
    return 0;
}
static int many_outer(void *ctx, size_t i)
{
    pk_exec *e = (pk_exec *)ctx;
    int errs[4], k;
    pk_exec_map_opts o;
    (void)i;
    memset(&o, 0, sizeof o);
    o.errors = errs;
    if (pk_exec_map(e, 4, many_inner, NULL, &o) != 0) return -EPROTO;
    for (k = 0; k < 4; k++)
        if (errs[k]) return -EPROTO;
    return 0;
}
static void test_many_concurrent_maps(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    pk_exec_map_opts o;
    pk_exec_stats st;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 80;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    memset(&o, 0, sizeof o);
    o.grain = 1;
    PK_CHECK_EQ(pk_exec_map(e, 200, many_outer, e, &o), 0);
    pk_exec_stats_get(e, &st);
    PK_CHECK_EQ(st.maps, 201);
    PK_CHECK_EQ(st.map_items, 200 + 200 * 4);
    pk_exec_destroy(e);
}

/* ---- blocking items ----------------------------------------------------------------------------- */

static int sleep10(void *ctx, size_t i)
{
    (void)ctx;
    (void)i;
    pk_test_sleep_ns(10000000);
    return 0;
}

/* n items at concurrency n on a pool with enough threads must all be running at once: each item
   waits (up to seconds) for all n to have started. If the scheduler ever gave one participant two
   of them, the first would wait in vain. Deterministic, unlike a timing threshold. */
typedef struct rendezvous {
    int n, started, missed;
} rendezvous;

static int rendezvous_item(void *ctx, size_t i)
{
    rendezvous *r = (rendezvous *)ctx;
    uint64_t t0 = pk_test_now_ns(), limit = slow_mode() ? 60000000000u : 5000000000u;
    (void)i;
    __atomic_add_fetch(&r->started, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&r->started, __ATOMIC_SEQ_CST) < r->n) {
        struct timespec ts = {0, 200000};
        if (pk_test_now_ns() - t0 > limit) {
            __atomic_add_fetch(&r->missed, 1, __ATOMIC_SEQ_CST);
            break;
        }
        nanosleep(&ts, NULL);
    }
    return 0;
}

static void test_all_start_at_once(void)
{
    static const int ns[] = {2, 3, 8, 9, 17, 32};
    pk_exec *e;
    pk_exec_config cfg;
    size_t k, g;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 40;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    for (k = 0; k < sizeof ns / sizeof ns[0]; k++)
        for (g = 0; g <= 1; g++) {
            rendezvous r;
            pk_exec_map_opts o;
            memset(&r, 0, sizeof r);
            r.n = ns[k];
            memset(&o, 0, sizeof o);
            o.concurrency = (unsigned)ns[k];
            o.grain = g;
            PK_CHECK_EQ(pk_exec_map(e, (size_t)ns[k], rendezvous_item, &r, &o), 0);
            PK_CHECK_MSG(r.missed == 0 && r.started == ns[k], "n %d grain %zu: %d of %d items waited in vain", ns[k],
                         g, r.missed, r.started);
        }
    pk_exec_destroy(e);
}

static void test_blocking(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    pk_exec_map_opts o;
    uint64_t t0, dt, best = UINT64_MAX;
    int k;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 40;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    memset(&o, 0, sizeof o);
    o.concurrency = 32;
    for (k = 0; k < 3; k++) {
        t0 = pk_test_now_ns();
        PK_CHECK_EQ(pk_exec_map(e, 32, sleep10, NULL, &o), 0);
        dt = pk_test_now_ns() - t0;
        if (dt < best) best = dt;
    }
    /* a wide bound: this checks that the items overlap (sequentially they take 320 ms); that all
       32 start at once is test_all_start_at_once's job, and the time itself is the benchmark's */
    printf("    32 items of 10 ms at concurrency 32: %.1f ms (best of 3)\n", (double)best / 1e6);
    PK_CHECK_MSG(best < 80000000u, "took %.1f ms", (double)best / 1e6); /* sequential: 320 ms */
    pk_exec_destroy(e);
    /* the shared pool grows for blocking work */
    best = UINT64_MAX;
    for (k = 0; k < 3; k++) {
        t0 = pk_test_now_ns();
        PK_CHECK_EQ(pk_exec_parallel_map(32, sleep10, NULL, 32, NULL), 0);
        dt = pk_test_now_ns() - t0;
        if (dt < best) best = dt;
    }
    printf("    the same through pk_exec_parallel_map: %.1f ms\n", (double)best / 1e6);
    PK_CHECK_MSG(best < 80000000u, "took %.1f ms", (double)best / 1e6); /* sequential: 320 ms */
}

/* ---- submit: priorities, deadlines, displacement --------------------------------------------- */

static pk_exec *one_thread_pool(size_t queue_max, int fake)
{
    pk_exec *e = NULL;
    pk_exec_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 1;
    cfg.queue_max = queue_max;
    if (fake) cfg.clock_ns = fake_clock;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    return e;
}

static int submit_ev(pk_exec *e, int id, int prio, uint64_t deadline)
{
    pk_exec_task_opts o;
    memset(&o, 0, sizeof o);
    o.priority = prio;
    o.deadline_ns = deadline;
    o.on_drop = ev_drop;
    return pk_exec_submit_opts(e, ev_run, (void *)(intptr_t)id, &o);
}

static void check_log(const int *want, int n, const char *what)
{
    int i, got = __atomic_load_n(&ev_n, __ATOMIC_SEQ_CST), same = got == n;
    for (i = 0; same && i < n; i++) same = ev_log[i] == want[i];
    PK_CHECK_MSG(same, "%s: event log differs", what);
    if (!same) {
        fprintf(stderr, "    want:");
        for (i = 0; i < n; i++) fprintf(stderr, " %d.%d", want[i] / 8, want[i] % 8);
        fprintf(stderr, "\n    got: ");
        for (i = 0; i < got && i < 4096; i++) fprintf(stderr, " %d.%d", ev_log[i] / 8, ev_log[i] % 8);
        fprintf(stderr, "\n");
    }
}

static void test_priority_order(void)
{
    pk_exec *e = one_thread_pool(0, 0);
    gate g;
    static const int want[] = {5 * 8, 6 * 8, 3 * 8, 4 * 8, 7 * 8, 1 * 8, 2 * 8, 8 * 8};
    gate_init(&g);
    ev_reset();
    PK_CHECK_EQ(pk_exec_submit(e, gate_task, &g), 0);
    gate_wait_started(&g, 1);
    PK_CHECK_EQ(submit_ev(e, 1, PK_EXEC_LOW, 0), 0);
    PK_CHECK_EQ(submit_ev(e, 2, PK_EXEC_LOW, 0), 0);
    PK_CHECK_EQ(submit_ev(e, 3, PK_EXEC_NORMAL, 0), 0);
    PK_CHECK_EQ(submit_ev(e, 4, PK_EXEC_NORMAL, 0), 0);
    PK_CHECK_EQ(submit_ev(e, 5, PK_EXEC_HIGH, 0), 0);
    PK_CHECK_EQ(submit_ev(e, 6, PK_EXEC_HIGH, 0), 0);
    PK_CHECK_EQ(pk_exec_submit(e, ev_run, (void *)(intptr_t)7), 0); /* plain submit = NORMAL */
    PK_CHECK_EQ(submit_ev(e, 8, PK_EXEC_LOW, 0), 0);
    gate_open(&g);
    pk_exec_wait_idle(e);
    check_log(want, 8, "priority order");
    pk_exec_destroy(e);
    gate_fini(&g);
}

static void test_deadlines(void)
{
    pk_exec *e = one_thread_pool(0, 1);
    pk_exec_stats st;
    gate g;
    uint64_t t = fake_clock(NULL);
    static const int want[] = {2 * 8 + 1, 3 * 8, 1 * 8 + 1, 4 * 8};
    gate_init(&g);
    ev_reset();
    PK_CHECK_EQ(pk_exec_submit(e, gate_task, &g), 0);
    gate_wait_started(&g, 1);
    PK_CHECK_EQ(submit_ev(e, 1, PK_EXEC_NORMAL, t + 100), 0);
    PK_CHECK_EQ(submit_ev(e, 2, PK_EXEC_HIGH, t + 150), 0);
    PK_CHECK_EQ(submit_ev(e, 3, PK_EXEC_HIGH, t + 1000), 0);
    PK_CHECK_EQ(submit_ev(e, 4, PK_EXEC_LOW, 0), 0);
    PK_CHECK_EQ(submit_ev(e, 5, PK_EXEC_HIGH, t), -ETIMEDOUT);  /* already reached: refused */
    PK_CHECK_EQ(submit_ev(e, 6, PK_EXEC_LOW, t - 1), -ETIMEDOUT);
    __atomic_store_n(&fake_now, t + 150, __ATOMIC_SEQ_CST);     /* 1 and 2 expire (deadline reached) */
    gate_open(&g);
    pk_exec_wait_idle(e);
    check_log(want, 4, "deadlines");
    pk_exec_stats_get(e, &st);
    PK_CHECK_EQ(st.submitted, 5);
    PK_CHECK_EQ(st.completed, 3);
    PK_CHECK_EQ(st.dropped_timeout, 2);
    PK_CHECK_EQ(st.rejected_expired, 2);
    PK_CHECK_EQ(st.queued + st.running, 0);
    pk_exec_destroy(e);
    gate_fini(&g);
}

static void test_full_queue_drops_expired_first(void)
{
    pk_exec *e = one_thread_pool(3, 1);
    pk_exec_stats st;
    gate g;
    uint64_t t = fake_clock(NULL);
    static const int want_submit[] = {2 * 8 + 1, 3 * 8 + 1};
    static const int want_all[] = {2 * 8 + 1, 3 * 8 + 1, 1 * 8, 4 * 8};
    gate_init(&g);
    ev_reset();
    PK_CHECK_EQ(pk_exec_submit(e, gate_task, &g), 0);
    gate_wait_started(&g, 1);
    PK_CHECK_EQ(submit_ev(e, 1, PK_EXEC_HIGH, 0), 0);
    PK_CHECK_EQ(submit_ev(e, 2, PK_EXEC_HIGH, t + 10), 0);
    PK_CHECK_EQ(submit_ev(e, 3, PK_EXEC_NORMAL, t + 20), 0);
    __atomic_store_n(&fake_now, t + 30, __ATOMIC_SEQ_CST);
    /* full; 2 and 3 expired: both are dropped (on this thread, before submit returns), and a LOW
       task, which could displace nothing, gets in */
    PK_CHECK_EQ(submit_ev(e, 4, PK_EXEC_LOW, 0), 0);
    check_log(want_submit, 2, "expired dropped at submit");
    pk_exec_stats_get(e, &st);
    PK_CHECK_EQ(st.queued, 2);
    PK_CHECK_EQ(st.dropped_timeout, 2);
    gate_open(&g);
    pk_exec_wait_idle(e);
    check_log(want_all, 4, "expired dropped first, then run");
    pk_exec_destroy(e);
    gate_fini(&g);
}

static void test_displacement(void)
{
    pk_exec *e = one_thread_pool(3, 0);
    pk_exec_stats st;
    gate g;
    static const int want_before[] = {2 * 8 + 2, 1 * 8 + 2, 4 * 8 + 2, 3 * 8 + 2};
    static const int want_all[] = {2 * 8 + 2, 1 * 8 + 2, 4 * 8 + 2, 3 * 8 + 2, 5 * 8, 6 * 8, 7 * 8};
    gate_init(&g);
    ev_reset();
    PK_CHECK_EQ(pk_exec_submit(e, gate_task, &g), 0);
    gate_wait_started(&g, 1);
    PK_CHECK_EQ(submit_ev(e, 1, PK_EXEC_LOW, 0), 0);
    PK_CHECK_EQ(submit_ev(e, 2, PK_EXEC_LOW, 0), 0);
    PK_CHECK_EQ(submit_ev(e, 3, PK_EXEC_NORMAL, 0), 0);
    PK_CHECK_EQ(submit_ev(e, 9, PK_EXEC_LOW, 0), -EAGAIN);   /* full, nothing below LOW */
    PK_CHECK_EQ(submit_ev(e, 4, PK_EXEC_NORMAL, 0), 0);      /* displaces 2, the newest LOW */
    PK_CHECK_EQ(submit_ev(e, 5, PK_EXEC_HIGH, 0), 0);        /* displaces 1, the lowest level first */
    PK_CHECK_EQ(submit_ev(e, 6, PK_EXEC_HIGH, 0), 0);        /* displaces 4, the newest NORMAL */
    PK_CHECK_EQ(submit_ev(e, 10, PK_EXEC_NORMAL, 0), -EAGAIN); /* 3 NORMAL left: not below NORMAL */
    PK_CHECK_EQ(submit_ev(e, 7, PK_EXEC_HIGH, 0), 0);        /* displaces 3 */
    PK_CHECK_EQ(submit_ev(e, 11, PK_EXEC_HIGH, 0), -EAGAIN); /* all HIGH */
    PK_CHECK_EQ(pk_exec_submit(e, noop_task, NULL), -EAGAIN);
    check_log(want_before, 4, "displaced");
    pk_exec_stats_get(e, &st);
    PK_CHECK_EQ(st.queued_high, 3);
    PK_CHECK_EQ(st.dropped_displaced, 4);
    PK_CHECK_EQ(st.rejected_full, 4);
    PK_CHECK_EQ(st.queue_peak, 3);
    gate_open(&g);
    pk_exec_wait_idle(e);
    check_log(want_all, 7, "displaced then run");
    pk_exec_destroy(e);
    gate_fini(&g);
}

/* ---- exactly once under 4 submitting threads ---------------------------------------------------- */

#define EO_PER_THREAD 20000
typedef struct eo_task {
    int ran, dropped, accepted, reason;
} eo_task;
static eo_task eo[4 * EO_PER_THREAD];
typedef struct eo_ctx {
    pk_exec *e;
    int tid, n;
    long accepted, refused;
} eo_ctx;

static void eo_run(void *arg)
{
    eo_task *t = (eo_task *)arg;
    __atomic_add_fetch(&t->ran, 1, __ATOMIC_SEQ_CST);
    if (((t - eo) & 15) == 0) pk_test_sleep_ns(1000);
}
static void eo_drop(void *arg, int reason)
{
    eo_task *t = (eo_task *)arg;
    __atomic_add_fetch(&t->dropped, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&t->reason, reason, __ATOMIC_SEQ_CST);
}
static void *eo_thread(void *p)
{
    eo_ctx *c = (eo_ctx *)p;
    uint64_t rs = (uint64_t)c->tid * 7919 + 1;
    int i;
    for (i = 0; i < c->n; i++) {
        eo_task *t = &eo[c->tid * EO_PER_THREAD + i];
        uint64_t r = pk_test_rand(&rs);
        pk_exec_task_opts o;
        int rc;
        memset(&o, 0, sizeof o);
        o.priority = (int)(r % 3) - 1;
        o.on_drop = eo_drop;
        if ((r >> 8) % 4 == 0) o.deadline_ns = pk_exec_now_ns() + ((r >> 16) % 200000); /* up to 200 us */
        rc = pk_exec_submit_opts(c->e, eo_run, t, &o);
        if (rc == 0) {
            t->accepted = 1;
            c->accepted++;
        } else {
            PK_CHECK(rc == -EAGAIN || rc == -ETIMEDOUT);
            c->refused++;
        }
        if ((r >> 40) % 64 == 0) pk_test_sleep_ns(20000); /* let the queue drain now and then */
    }
    return NULL;
}

static void test_exactly_once_4_submitters(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    pk_exec_stats st;
    pthread_t th[4];
    eo_ctx c[4];
    int i, n = (int)pk_test_scale(EO_PER_THREAD);
    long accepted = 0, refused = 0, ran = 0, dropped = 0, bad = 0;
    memset(eo, 0, sizeof eo);
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 2;
    cfg.queue_max = 64;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    for (i = 0; i < 4; i++) {
        c[i].e = e;
        c[i].tid = i;
        c[i].n = n;
        c[i].accepted = c[i].refused = 0;
        pthread_create(&th[i], NULL, eo_thread, &c[i]);
    }
    for (i = 0; i < 4; i++) pthread_join(th[i], NULL);
    pk_exec_wait_idle(e);
    for (i = 0; i < 4; i++) {
        int k;
        accepted += c[i].accepted;
        refused += c[i].refused;
        for (k = 0; k < n; k++) {
            eo_task *t = &eo[i * EO_PER_THREAD + k];
            int total = t->ran + t->dropped;
            if (t->accepted ? total != 1 : total != 0) bad++;
            if (t->dropped && t->reason != -EAGAIN && t->reason != -ETIMEDOUT) bad++;
            ran += t->ran;
            dropped += t->dropped;
        }
    }
    pk_exec_stats_get(e, &st);
    printf("    %ld accepted (%ld ran, %ld dropped: %llu timed out, %llu displaced), %ld refused\n", accepted, ran,
           dropped, (unsigned long long)st.dropped_timeout, (unsigned long long)st.dropped_displaced, refused);
    PK_CHECK_EQ(bad, 0);
    PK_CHECK_EQ(st.submitted, accepted);
    PK_CHECK_EQ(st.completed, ran);
    PK_CHECK_EQ(st.dropped_timeout + st.dropped_displaced, dropped);
    PK_CHECK_EQ(st.rejected_full + st.rejected_expired, refused);
    PK_CHECK_EQ(st.queued + st.running, 0);
    PK_CHECK_EQ(st.started, st.completed);
    PK_CHECK(st.queue_peak <= 64);
    pk_exec_destroy(e);
}

/* ---- wait_idle, destroy ----------------------------------------------------------------------------- */

static int slow_done;
static void slow_task(void *arg)
{
    (void)arg;
    pk_test_sleep_ns(2000000);
    __atomic_add_fetch(&slow_done, 1, __ATOMIC_SEQ_CST);
}
static int drop_done;
static void slow_drop(void *arg, int reason)
{
    (void)arg;
    (void)reason;
    pk_test_sleep_ns(20000000);
    __atomic_add_fetch(&drop_done, 1, __ATOMIC_SEQ_CST);
}

static void test_wait_idle(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    pk_exec_task_opts o;
    gate g;
    int i;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 3;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    pk_exec_wait_idle(e); /* idle already: returns */
    slow_done = 0;
    for (i = 0; i < 20; i++) PK_CHECK_EQ(pk_exec_submit(e, slow_task, NULL), 0);
    pk_exec_wait_idle(e);
    PK_CHECK_EQ(slow_done, 20);
    /* a task dropped on a worker is waited for until its on_drop returns */
    gate_init(&g);
    for (i = 0; i < 3; i++) PK_CHECK_EQ(pk_exec_submit(e, gate_task, &g), 0);
    gate_wait_started(&g, 3);
    memset(&o, 0, sizeof o);
    o.deadline_ns = pk_exec_now_ns() + 20000000; /* wide: a submit preempted past it is refused */
    o.on_drop = slow_drop;
    drop_done = 0;
    PK_CHECK_EQ(pk_exec_submit_opts(e, slow_task, NULL, &o), 0);
    pk_test_sleep_ns(40000000);
    gate_open(&g);
    pk_exec_wait_idle(e);
    PK_CHECK_EQ(drop_done, 1);
    pk_exec_destroy(e);
    gate_fini(&g);
}

typedef struct chain_ctx {
    pk_exec *e;
    int left, ran;
} chain_ctx;
static void chain_task(void *arg)
{
    chain_ctx *c = (chain_ctx *)arg;
    __atomic_add_fetch(&c->ran, 1, __ATOMIC_SEQ_CST);
    if (__atomic_sub_fetch(&c->left, 1, __ATOMIC_SEQ_CST) > 0) PK_CHECK_EQ(pk_exec_submit(c->e, chain_task, c), 0);
}

static void test_destroy_runs_queued(void)
{
    pk_exec *e = one_thread_pool(0, 0);
    gate g;
    chain_ctx c;
    int i;
    gate_init(&g);
    slow_done = 0;
    PK_CHECK_EQ(pk_exec_submit(e, gate_task, &g), 0);
    gate_wait_started(&g, 1);
    for (i = 0; i < 10; i++) PK_CHECK_EQ(pk_exec_submit(e, slow_task, NULL), 0);
    c.e = e;
    c.left = 50;
    c.ran = 0;
    PK_CHECK_EQ(pk_exec_submit(e, chain_task, &c), 0); /* resubmits itself while destroy runs */
    gate_open(&g);
    pk_exec_destroy(e);
    PK_CHECK_EQ(slow_done, 10);
    PK_CHECK_EQ(c.ran, 50);
    gate_fini(&g);
}

/* A running task, once destroy has begun, submits a follow-up and waits for it: with two workers
   the other one must still be there to run it (it used to leave as soon as the queue was empty,
   and destroy then waited forever for the task that waited for its follow-up). */
typedef struct follow_ctx {
    pk_exec *e;
    int started, child_done, gave_up;
} follow_ctx;
static void follow_child(void *arg) { __atomic_store_n(&((follow_ctx *)arg)->child_done, 1, __ATOMIC_SEQ_CST); }
static void follow_parent(void *arg)
{
    follow_ctx *f = (follow_ctx *)arg;
    uint64_t t0;
    __atomic_store_n(&f->started, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&f->e->stopping, __ATOMIC_SEQ_CST)) pk_test_sleep_ns(1000000); /* destroy began */
    pk_test_sleep_ns(20000000); /* the other worker has found the queue empty by now */
    PK_CHECK_EQ(pk_exec_submit(f->e, follow_child, f), 0);
    t0 = pk_test_now_ns();
    while (!__atomic_load_n(&f->child_done, __ATOMIC_SEQ_CST)) {
        if (pk_test_now_ns() - t0 > 10000000000ull) { /* 10 s: not a hang of the whole test */
            __atomic_store_n(&f->gave_up, 1, __ATOMIC_SEQ_CST);
            return;
        }
        pk_test_sleep_ns(1000000);
    }
}
static void test_destroy_waits_for_follow_up(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    follow_ctx f;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 2;
    cfg.spin_ns = 1;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    memset(&f, 0, sizeof f);
    f.e = e;
    PK_CHECK_EQ(pk_exec_submit(e, follow_parent, &f), 0);
    while (!__atomic_load_n(&f.started, __ATOMIC_SEQ_CST)) pk_test_sleep_ns(1000000);
    pk_exec_destroy(e);
    PK_CHECK_EQ(f.gave_up, 0);
    PK_CHECK_EQ(f.child_done, 1);
}

typedef struct self_ctx {
    pk_exec *e;
    int done;
    uint64_t destroy_ns, idle_ns;
} self_ctx;
static void self_destroy_task(void *arg)
{
    self_ctx *s = (self_ctx *)arg;
    uint64_t t0 = pk_test_now_ns();
    pk_exec_destroy(s->e); /* refused: returns at once */
    s->destroy_ns = pk_test_now_ns() - t0;
    t0 = pk_test_now_ns();
    pk_exec_wait_idle(s->e); /* would wait for itself: returns at once */
    s->idle_ns = pk_test_now_ns() - t0;
    PK_CHECK_EQ(pk_exec_submit(s->e, noop_task, NULL), 0); /* the pool still works */
    __atomic_store_n(&s->done, 1, __ATOMIC_SEQ_CST);
}
static void self_destroy_drop(void *arg, int reason)
{
    self_ctx *s = (self_ctx *)arg;
    (void)reason;
    pk_exec_destroy(s->e); /* on_drop on the submitting thread: refused too */
    __atomic_store_n(&s->done, 2, __ATOMIC_SEQ_CST);
}
static int self_destroy_item(void *ctx, size_t i)
{
    self_ctx *s = (self_ctx *)ctx;
    (void)i;
    pk_exec_destroy(s->e); /* from a map item on a worker: refused (on the caller it would be a bug) */
    return 0;
}

static void self_destroy_map_task(void *arg)
{
    self_ctx *s = (self_ctx *)arg;
    pk_exec_map_opts mo;
    memset(&mo, 0, sizeof mo);
    mo.grain = 1;
    if (pk_exec_map(s->e, 100, self_destroy_item, s, &mo) == 0) __atomic_store_n(&s->done, 3, __ATOMIC_SEQ_CST);
}

static void test_destroy_from_task(void)
{
    pk_exec *e = one_thread_pool(1, 0);
    self_ctx s;
    pk_exec_task_opts o;
    gate g;
    memset(&s, 0, sizeof s);
    s.e = e;
    PK_CHECK_EQ(pk_exec_submit(e, self_destroy_task, &s), 0);
    pk_exec_wait_idle(e);
    PK_CHECK_EQ(s.done, 1);
    PK_CHECK(s.destroy_ns < 1000000000u);
    PK_CHECK(s.idle_ns < 1000000000u);
    /* displaced task whose on_drop (on this thread, inside submit) calls destroy */
    gate_init(&g);
    PK_CHECK_EQ(pk_exec_submit(e, gate_task, &g), 0);
    gate_wait_started(&g, 1);
    memset(&o, 0, sizeof o);
    o.priority = PK_EXEC_LOW;
    o.on_drop = self_destroy_drop;
    PK_CHECK_EQ(pk_exec_submit_opts(e, noop_task, &s, &o), 0);
    o.priority = PK_EXEC_HIGH;
    o.on_drop = NULL;
    PK_CHECK_EQ(pk_exec_submit_opts(e, noop_task, NULL, &o), 0); /* displaces the LOW one */
    PK_CHECK_EQ(s.done, 2);
    gate_open(&g);
    pk_exec_wait_idle(e);
    pk_exec_destroy(e);
    gate_fini(&g);
    /* destroy from map items: the map is called from a task, so every participant is a worker
       (on a thread outside the pool, destroy during one's own map is the caller's bug) */
    {
        pk_exec *e2;
        pk_exec_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.threads = 3;
        PK_CHECK_EQ(pk_exec_create(&e2, &cfg), 0);
        s.e = e2;
        s.done = 0;
        PK_CHECK_EQ(pk_exec_submit(e2, self_destroy_map_task, &s), 0);
        pk_exec_wait_idle(e2);
        PK_CHECK_EQ(s.done, 3);
        pk_exec_destroy(e2);
    }
}

/* ---- create failures ---------------------------------------------------------------------------------- */

static void test_thread_creation_failure(void)
{
    pk_exec *e = NULL;
    pk_exec_config cfg;
    long k;
    long alive0 = __atomic_load_n(&tc_alive, __ATOMIC_SEQ_CST); /* the shared pool's threads live on */
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 8;
    for (k = 1; k <= 8; k++) {
        long live = pk_test_alloc_live();
        __atomic_store_n(&tc_calls, 0, __ATOMIC_SEQ_CST);
        __atomic_store_n(&tc_fail_at, k, __ATOMIC_SEQ_CST);
        PK_CHECK_EQ(pk_exec_create(&e, &cfg), -EAGAIN);
        __atomic_store_n(&tc_fail_at, 0, __ATOMIC_SEQ_CST);
        PK_CHECK_EQ(__atomic_load_n(&tc_alive, __ATOMIC_SEQ_CST), alive0); /* every started worker was joined */
        PK_CHECK_EQ(pk_test_alloc_live(), live);                     /* nothing leaked */
        PK_CHECK(e == NULL);
    }
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    PK_CHECK_EQ(pk_exec_map(e, 100, count_fn, NULL, NULL), 0);
    pk_exec_destroy(e);
    PK_CHECK_EQ(__atomic_load_n(&tc_alive, __ATOMIC_SEQ_CST), alive0);
}

typedef struct sweep_ctx {
    int ran;
} sweep_ctx;
static void sweep_task(void *arg) { __atomic_add_fetch(&((sweep_ctx *)arg)->ran, 1, __ATOMIC_SEQ_CST); }
static void sweep_drop(void *arg, int reason)
{
    (void)reason;
    __atomic_add_fetch(&((sweep_ctx *)arg)->ran, 1000, __ATOMIC_SEQ_CST);
}

/* create, submit (allocates task nodes), map, wait, destroy with the n-th allocation failing */
static int sweep_scenario(void *p)
{
    pk_exec *e = NULL;
    pk_exec_config cfg;
    pk_exec_task_opts o;
    sweep_ctx c;
    int i, rc, accepted = 0;
    int errs[50];
    pk_exec_map_opts mo;
    (void)p;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 2;
    cfg.queue_max = 4;
    rc = pk_exec_create(&e, &cfg);
    if (rc == -ENOMEM) return e == NULL ? 0 : 1;
    if (rc != 0) return 2;
    c.ran = 0;
    memset(&o, 0, sizeof o);
    o.on_drop = sweep_drop;
    for (i = 0; i < 12; i++) {
        o.priority = i % 3 - 1;
        rc = pk_exec_submit_opts(e, sweep_task, &c, &o);
        if (rc == 0) accepted++;
        else if (rc != -ENOMEM && rc != -EAGAIN) return 3;
    }
    memset(&mo, 0, sizeof mo);
    mo.errors = errs;
    if (pk_exec_map(e, 50, count_fn, NULL, &mo) != 0) return 4;
    pk_exec_wait_idle(e);
    /* every accepted task ran once or was dropped once */
    if (c.ran % 1000 + c.ran / 1000 != accepted) return 5;
    pk_exec_destroy(e);
    return 0;
}

static void test_alloc_failure_sweep(void)
{
    long points = pk_test_alloc_sweep("create/submit/map/destroy", sweep_scenario, NULL);
    PK_CHECK(points >= 2);
}

/* ---- statistics ------------------------------------------------------------------------------------- */

static void test_stats(void)
{
    pk_exec *e = one_thread_pool(0, 1);
    pk_exec_stats st;
    gate g;
    uint64_t t = fake_clock(NULL);
    int i;
    gate_init(&g);
    ev_reset();
    PK_CHECK_EQ(pk_exec_submit(e, gate_task, &g), 0);
    gate_wait_started(&g, 1);
    for (i = 0; i < 5; i++) PK_CHECK_EQ(submit_ev(e, i, PK_EXEC_NORMAL, 0), 0);
    PK_CHECK_EQ(submit_ev(e, 9, PK_EXEC_HIGH, t + 500), 0);
    pk_exec_stats_get(e, &st);
    PK_CHECK_EQ(st.queued, 6);
    PK_CHECK_EQ(st.queued_normal, 5);
    PK_CHECK_EQ(st.queued_high, 1);
    PK_CHECK_EQ(st.running, 1);
    PK_CHECK_EQ(st.submitted, 7);
    PK_CHECK_EQ(st.submitted, st.queued + st.running + st.completed + st.dropped_timeout + st.dropped_displaced);
    __atomic_store_n(&fake_now, t + 1000, __ATOMIC_SEQ_CST); /* every queued task waited 1000 ns */
    gate_open(&g);
    pk_exec_wait_idle(e);
    pk_exec_stats_get(e, &st);
    PK_CHECK_EQ(st.completed, 6);
    PK_CHECK_EQ(st.dropped_timeout, 1);
    PK_CHECK_EQ(st.started, 6);
    PK_CHECK_EQ(st.wait_ns_total, 5 * 1000);
    PK_CHECK_EQ(st.wait_ns_max, 1000);
    PK_CHECK_EQ(st.queue_peak, 6);
    PK_CHECK_EQ(st.submitted, st.queued + st.running + st.completed + st.dropped_timeout + st.dropped_displaced);
    PK_CHECK_EQ(pk_exec_map(e, 10, count_fn, NULL, NULL), 0);
    pk_exec_stats_get(e, &st);
    PK_CHECK_EQ(st.maps, 1);
    PK_CHECK_EQ(st.map_items, 10);
    pk_exec_destroy(e);
    gate_fini(&g);
}

/* ---- maps from tasks, many callers, the shared pool ------------------------------------------------- */

typedef struct mt_ctx {
    pk_exec *e;
    int ok;
} mt_ctx;
static int mt_item(void *ctx, size_t i)
{
    long *sum = (long *)ctx;
    __atomic_add_fetch(sum, (long)i, __ATOMIC_RELAXED);
    return 0;
}
static void mt_task(void *arg)
{
    mt_ctx *c = (mt_ctx *)arg;
    long sum = 0;
    if (pk_exec_map(c->e, 1000, mt_item, &sum, NULL) == 0 && sum == 999L * 1000 / 2)
        __atomic_add_fetch(&c->ok, 1, __ATOMIC_SEQ_CST);
}

static void test_maps_from_tasks(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    mt_ctx c;
    int i;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 3;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    c.e = e;
    c.ok = 0;
    for (i = 0; i < 50; i++) PK_CHECK_EQ(pk_exec_submit(e, mt_task, &c), 0);
    pk_exec_wait_idle(e);
    PK_CHECK_EQ(c.ok, 50);
    pk_exec_destroy(e);
}

typedef struct caller_ctx {
    pk_exec *e; /* NULL = parallel_map */
    int ok, rounds;
} caller_ctx;
static void *caller_thread(void *p)
{
    caller_ctx *c = (caller_ctx *)p;
    int r;
    for (r = 0; r < c->rounds; r++) {
        long sum = 0;
        size_t n = 1 + (size_t)(r * 37 % 5000);
        int rc = c->e ? pk_exec_map(c->e, n, mt_item, &sum, NULL) : pk_exec_parallel_map(n, mt_item, &sum, 0, NULL);
        if (rc == 0 && sum == (long)(n - 1) * (long)n / 2) c->ok++;
    }
    return NULL;
}

static void test_many_callers(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    pthread_t th[6];
    caller_ctx c[6];
    int i, shared, rounds = (int)pk_test_scale(400);
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 3;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    for (shared = 0; shared <= 1; shared++) {
        for (i = 0; i < 6; i++) {
            c[i].e = shared ? NULL : e;
            c[i].ok = 0;
            c[i].rounds = rounds;
            pthread_create(&th[i], NULL, caller_thread, &c[i]);
        }
        for (i = 0; i < 6; i++) {
            pthread_join(th[i], NULL);
            PK_CHECK_EQ(c[i].ok, rounds);
        }
    }
    pk_exec_destroy(e);
}

/* Runs first: it makes the shared pool of pk_exec_parallel_map while the system (simulated) allows
   only 2 more threads. The pool must keep the threads it got and use them, not fail, run serially
   and make and join threads again on every call. */
typedef struct inflight_ctx {
    int now, peak, ran;
} inflight_ctx;
static int inflight_item(void *ctx, size_t i)
{
    inflight_ctx *c = (inflight_ctx *)ctx;
    int k = __atomic_add_fetch(&c->now, 1, __ATOMIC_SEQ_CST), p = __atomic_load_n(&c->peak, __ATOMIC_SEQ_CST);
    (void)i;
    while (k > p && !__atomic_compare_exchange_n(&c->peak, &p, k, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    pk_test_sleep_ns(2000000);
    __atomic_sub_fetch(&c->now, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&c->ran, 1, __ATOMIC_SEQ_CST);
    return 0;
}
static void test_shared_pool_thread_limit(void)
{
    inflight_ctx c;
    long made;
    memset(&c, 0, sizeof c);
    __atomic_store_n(&tc_budget, 2, __ATOMIC_SEQ_CST);
    made = __atomic_load_n(&tc_calls, __ATOMIC_SEQ_CST);
    PK_CHECK_EQ(pk_exec_parallel_map(64, inflight_item, &c, 8, NULL), 0);
    PK_CHECK_EQ(c.ran, 64);
    PK_CHECK_MSG(c.peak >= 2 && c.peak <= 3, "peak in flight %d with 2 threads allowed", c.peak);
    /* the next call does not try to make the pool again from scratch */
    memset(&c, 0, sizeof c);
    PK_CHECK_EQ(pk_exec_parallel_map(64, inflight_item, &c, 3, NULL), 0);
    PK_CHECK_EQ(c.ran, 64);
    PK_CHECK(c.peak >= 2 && c.peak <= 3);
    printf("    shared pool under a 2-thread limit: %ld creations tried, peak %d in flight\n",
           __atomic_load_n(&tc_calls, __ATOMIC_SEQ_CST) - made, c.peak);
    __atomic_store_n(&tc_budget, -1, __ATOMIC_SEQ_CST);
    /* without the limit it grows to what a call asks for */
    memset(&c, 0, sizeof c);
    PK_CHECK_EQ(pk_exec_parallel_map(64, inflight_item, &c, 6, NULL), 0);
    PK_CHECK_EQ(c.ran, 64);
    PK_CHECK(c.peak <= 6);
}

static void test_parallel_map(void)
{
    int v[300], errs[300], i;
    res_ctx rc;
    int ran[300];
    for (i = 0; i < 300; i++) v[i] = i;
    PK_CHECK_EQ(pk_exec_parallel_map(300, square, v, 0, NULL), 0);
    for (i = 0; i < 300; i++) PK_CHECK_EQ(v[i], i * i);
    memset(ran, 0, sizeof ran);
    rc.ran = ran;
    rc.fail_a = 200;
    rc.fail_b = 17;
    rc.fail_c = 299;
    PK_CHECK_EQ(pk_exec_parallel_map(300, res_fn, &rc, 3, errs), -ENOENT);
    for (i = 0; i < 300; i++) PK_CHECK_EQ(ran[i], 1);
    PK_CHECK_EQ(errs[200], -EIO);
    PK_CHECK_EQ(errs[299], -E2BIG);
    PK_CHECK_EQ(errs[0], 0);
    PK_CHECK_EQ(pk_exec_parallel_map(1, res_fn, &rc, 1, NULL), 0);
}

/* ---- map_range ---------------------------------------------------------------------------------- */

typedef struct range_ctx {
    int *ran;
    size_t fail_at; /* the range containing it fails */
    size_t max_len;
    long ranges;
} range_ctx;

static int range_fn(void *ctx, size_t b, size_t e)
{
    range_ctx *c = (range_ctx *)ctx;
    size_t i;
    int rc = 0;
    __atomic_add_fetch(&c->ranges, 1, __ATOMIC_RELAXED);
    if (e - b > __atomic_load_n(&c->max_len, __ATOMIC_RELAXED)) __atomic_store_n(&c->max_len, e - b, __ATOMIC_RELAXED);
    for (i = b; i < e; i++) {
        __atomic_add_fetch(&c->ran[i], 1, __ATOMIC_RELAXED);
        if (i == c->fail_at) rc = -EDOM;
    }
    return rc;
}

static void test_map_range(void)
{
    static const size_t grains[] = {0, 1, 7, 1000};
    pk_exec *e;
    pk_exec_config cfg;
    size_t gi, i, n = 10007;
    int *ran = (int *)malloc(n * sizeof(int)), *errs = (int *)malloc(n * sizeof(int));
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 3;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    for (gi = 0; gi < sizeof grains / sizeof grains[0]; gi++) {
        range_ctx c;
        pk_exec_map_opts o;
        int bad = 0;
        memset(&c, 0, sizeof c);
        memset(ran, 0, n * sizeof(int));
        c.ran = ran;
        c.fail_at = 5000;
        memset(&o, 0, sizeof o);
        o.grain = grains[gi];
        o.errors = errs;
        PK_CHECK_EQ(pk_exec_map_range(e, n, range_fn, &c, &o), -EDOM);
        for (i = 0; i < n; i++)
            if (ran[i] != 1) bad++;
        PK_CHECK_EQ(bad, 0);
        PK_CHECK_EQ(errs[5000], -EDOM);
        PK_CHECK_EQ(errs[0], 0);
        PK_CHECK_EQ(errs[n - 1], 0);
        if (grains[gi]) PK_CHECK(c.max_len <= grains[gi]);
        else PK_CHECK(c.ranges < (long)n / 10); /* automatic: far fewer calls than items */
        /* fail fast: whole unstarted ranges are skipped */
        o.fail_fast = 1;
        o.concurrency = 1;
        c.fail_at = 3;
        memset(ran, 0, n * sizeof(int));
        PK_CHECK_EQ(pk_exec_map_range(e, n, range_fn, &c, &o), -EDOM);
        PK_CHECK_EQ(errs[n - 1], grains[gi] == 0 ? -EDOM : -ECANCELED); /* alone + automatic: one range */
    }
    PK_CHECK_EQ(pk_exec_map_range(e, 10, NULL, NULL, NULL), -EINVAL);
    PK_CHECK_EQ(pk_exec_map_range(e, 0, range_fn, NULL, NULL), 0);
    pk_exec_destroy(e);
    free(ran);
    free(errs);
}

/* ---- how items are claimed: per-participant cells, stealing, grain alignment ---------------------- */

typedef struct tile_ctx {
    pthread_mutex_t mu;
    size_t grain, n;
    uint64_t (*r)[2]; /* the ranges seen */
    size_t nr, cap;
    int misaligned;
} tile_ctx;

static int tile_fn(void *ctx, size_t b, size_t e)
{
    tile_ctx *c = (tile_ctx *)ctx;
    pthread_mutex_lock(&c->mu);
    if (c->grain && (b % c->grain != 0 || (e - b != c->grain && e != c->n))) c->misaligned++;
    if (c->nr < c->cap) {
        c->r[c->nr][0] = b;
        c->r[c->nr][1] = e;
    }
    c->nr++;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static int cmp_range(const void *a, const void *b)
{
    const uint64_t *x = (const uint64_t *)a, *y = (const uint64_t *)b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* The ranges tile [0, n) exactly: sorted, each begins where the previous ended. */
static int tiles(tile_ctx *c)
{
    size_t k;
    uint64_t at = 0;
    if (c->nr > c->cap) return 0;
    qsort(c->r, c->nr, sizeof c->r[0], cmp_range);
    for (k = 0; k < c->nr; k++) {
        if (c->r[k][0] != at || c->r[k][1] <= c->r[k][0]) return 0;
        at = c->r[k][1];
    }
    return at == c->n;
}

static void test_claims(void)
{
    static const size_t grains[] = {1, 2, 3, 5, 8, 64};
    static const unsigned concs[] = {2, 3, 5, 8, 9, 17};
    pk_exec *e;
    pk_exec_config cfg;
    tile_ctx c;
    pk_exec_map_opts o;
    size_t gi, ci, n;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 16; /* more participants than cells: cells are shared */
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    c.cap = 1 << 16;
    c.r = (uint64_t(*)[2])malloc(c.cap * sizeof c.r[0]);
    /* fixed grains: every range starts on a multiple of the grain and is a whole grain but the last */
    for (n = 1; n <= 1000; n = n * 3 + 1)
        for (gi = 0; gi < sizeof grains / sizeof grains[0]; gi++)
            for (ci = 0; ci < sizeof concs / sizeof concs[0]; ci++) {
                c.grain = grains[gi];
                c.n = n;
                c.nr = 0;
                c.misaligned = 0;
                memset(&o, 0, sizeof o);
                o.grain = grains[gi];
                o.concurrency = concs[ci];
                PK_CHECK_EQ(pk_exec_map_range(e, n, tile_fn, &c, &o), 0);
                PK_CHECK_MSG(c.misaligned == 0 && tiles(&c), "n %zu grain %zu conc %u: %d misaligned, tiling %d", n,
                             grains[gi], concs[ci], c.misaligned, tiles(&c));
            }
    /* automatic grain over more items than 32-bit units hold: units grow, the ranges still tile,
       and there are few of them */
    for (ci = 0; ci < sizeof concs / sizeof concs[0]; ci++) {
        c.grain = 0;
        c.n = (size_t)1 << 40;
        c.nr = 0;
        memset(&o, 0, sizeof o);
        o.concurrency = concs[ci];
        PK_CHECK_EQ(pk_exec_map_range(e, c.n, tile_fn, &c, &o), 0);
        printf("    2^40 items, conc %u: %zu ranges\n", concs[ci], c.nr);
        PK_CHECK_MSG(tiles(&c) && c.nr < 50000, "2^40 items, conc %u: %zu ranges, tiling %d", concs[ci], c.nr, tiles(&c));
    }
    /* a fixed grain whose units would not fit 32 bits: a unit is several grains, claimed at once
       but still handed to fn one grain at a time */
    {
        pk_exec__job j;
        pk_exec__job_init(&j, (uint64_t)1 << 51, (size_t)1 << 18, 4);
        PK_CHECK_EQ(j.unit, (uint64_t)3 << 18); /* 2^33 grains: 3 grains a unit to fit 32 bits */
        PK_CHECK_EQ(PK_EXEC__HI(j.cell[3].w), ((uint64_t)1 << 33) / 3 + 1);
        PK_CHECK_EQ(pk_exec__item(&j, PK_EXEC__HI(j.cell[3].w)), (uint64_t)1 << 51);
        j.range_fn = tile_fn;
        j.ctx = &c;
        c.grain = (size_t)1 << 18;
        c.n = (size_t)1 << 51;
        c.nr = 0;
        c.misaligned = 0;
        pk_exec__run_units(&j, 5, 7);
        PK_CHECK_EQ(c.nr, 6);
        PK_CHECK_EQ(c.misaligned, 0);
        PK_CHECK_EQ(c.r[0][0], (uint64_t)15 << 18);
        PK_CHECK_EQ(c.r[5][1], (uint64_t)21 << 18);
    }
    free(c.r);
    pthread_mutex_destroy(&c.mu);
    pk_exec_destroy(e);
}

/* A participant whose cell runs dry steals: with one slow item at the start of the owner's cell,
   the helpers still finish everything else, and each participant runs items of several cells. */
static int slow_first(void *ctx, size_t i)
{
    int *who = (int *)ctx;
    static int ids;
    static __thread int me;
    if (!me) me = __atomic_add_fetch(&ids, 1, __ATOMIC_RELAXED);
    if (i == 0) {
        uint64_t t0 = pk_test_now_ns();
        while (pk_test_now_ns() - t0 < 200000000u) { /* 200 ms: room for a helper on a loaded machine */
        }
    }
    who[i] = me;
    return 0;
}

static void test_stealing(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    pk_exec_map_opts o;
    size_t n = 4000, i, other = 0;
    int *who = (int *)calloc(n, sizeof(int));
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 1;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    memset(&o, 0, sizeof o);
    o.grain = 1;
    o.concurrency = 2;
    PK_CHECK_EQ(pk_exec_map(e, n, slow_first, who, &o), 0);
    /* the owner's cell is [0, 2000): while it spins 200 ms in item 0, the helper (which joins
       within that time on any machine that runs this test) finishes its own cell and steals the
       rest of the owner's */
    for (i = 1; i < n / 2; i++)
        if (who[i] != who[0]) other++;
    if (!slow_mode()) PK_CHECK_MSG(other > n / 4, "only %zu items of the owner's cell ran elsewhere", other);
    for (i = 0; i < n; i++) PK_CHECK(who[i] != 0);
    pk_exec_destroy(e);
    free(who);
}

/* ---- fairness between maps and queued tasks; an idle pool sleeps ---------------------------------- */

static int busy_item(void *ctx, size_t i)
{
    uint64_t t0 = pk_test_now_ns();
    (void)ctx;
    (void)i;
    while (pk_test_now_ns() - t0 < 20000) {
    }
    return 0;
}

typedef struct mapper_ctx {
    pk_exec *e;
    int stop;
    long maps;
} mapper_ctx;

static void *mapper_thread(void *p)
{
    mapper_ctx *m = (mapper_ctx *)p;
    uint64_t t0 = pk_test_now_ns();
    while (!__atomic_load_n(&m->stop, __ATOMIC_SEQ_CST) && pk_test_now_ns() - t0 < 20000000000u) {
        pk_exec_map(m->e, 16, busy_item, NULL, NULL);
        m->maps++;
    }
    return NULL;
}

static void test_maps_do_not_starve_tasks(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    mapper_ctx m;
    pthread_t th;
    uint64_t t0, dt;
    int i;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 2;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    m.e = e;
    m.stop = 0;
    m.maps = 0;
    pthread_create(&th, NULL, mapper_thread, &m); /* back-to-back maps wanting every worker */
    pk_test_sleep_ns(20000000);
    slow_done = 0;
    t0 = pk_test_now_ns();
    for (i = 0; i < 30; i++) PK_CHECK_EQ(pk_exec_submit(e, slow_task, NULL), 0); /* 2 ms each */
    pk_exec_wait_idle(e);
    dt = pk_test_now_ns() - t0;
    __atomic_store_n(&m.stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);
    printf("    30 tasks of 2 ms ran in %.1f ms beside %ld back-to-back maps\n", (double)dt / 1e6, m.maps);
    PK_CHECK_EQ(slow_done, 30);
    PK_CHECK_MSG(dt < 10000000000u, "queued tasks starved for %.1f s", (double)dt / 1e9);
    pk_exec_destroy(e);
}

/* destroy must not wait out spin_ns: spinning workers are told to stop (an hour of spin here) */
static void test_destroy_while_spinning(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    uint64_t t0, dt;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 2;
    cfg.spin_ns = 3600ull * 1000000000u;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    PK_CHECK_EQ(pk_exec_map(e, 1000, count_fn, NULL, NULL), 0);
    PK_CHECK_EQ(pk_exec_submit(e, noop_task, NULL), 0);
    pk_exec_wait_idle(e);
    pk_test_sleep_ns(20000000); /* the workers are spinning now */
    t0 = pk_test_now_ns();
    pk_exec_destroy(e);
    dt = pk_test_now_ns() - t0;
    printf("    destroy with workers spinning (spin_ns 1 h) took %.2f ms\n", (double)dt / 1e6);
    PK_CHECK_MSG(dt < 30000000000u, "destroy waited %.1f s for spinning workers", (double)dt / 1e9);
}

/* A task submitted just before a map whose items wait for it: a worker must start it. Submit used
   to count spinning workers as takers, but a spinner may join the map instead, and the sleeping
   worker nobody woke left the task queued until the map ended: forever, here. Items give up after
   5 s (a failure) rather than hang. */
static int starved_flag;
static void starved_producer(void *arg)
{
    (void)arg;
    __atomic_store_n(&starved_flag, 1, __ATOMIC_SEQ_CST);
}
static int starved_consumer(void *ctx, size_t i)
{
    uint64_t t0 = pk_test_now_ns();
    (void)ctx;
    (void)i;
    while (!__atomic_load_n(&starved_flag, __ATOMIC_SEQ_CST)) {
        if (pk_test_now_ns() - t0 > 5000000000u) return -ETIMEDOUT;
        sched_yield();
    }
    return 0;
}
static void test_task_not_stuck_behind_map(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    pk_exec_map_opts o;
    int it, iters = (int)pk_test_scale(150), stalls = 0;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 3;
    cfg.spin_ns = 200000000; /* workers spin between iterations, more than the CPUs can run */
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    memset(&o, 0, sizeof o);
    o.concurrency = 3;
    for (it = 0; it < iters; it++) {
        PK_CHECK_EQ(pk_exec_map(e, 1000, count_fn, NULL, NULL), 0); /* everybody awake */
        pk_test_sleep_ns(2000000); /* settle: some spin, the rest sleep */
        __atomic_store_n(&starved_flag, 0, __ATOMIC_SEQ_CST);
        PK_CHECK_EQ(pk_exec_submit(e, starved_producer, NULL), 0);
        if (pk_exec_map(e, 3, starved_consumer, NULL, &o) != 0) stalls++;
        pk_exec_wait_idle(e);
    }
    printf("    %d tasks submitted just before a map that waits for them: %d stalled\n", iters, stalls);
    PK_CHECK_EQ(stalls, 0);
    pk_exec_destroy(e);
}

/* A task of pool A submits to pool B and displaces one of B's tasks: that task's on_drop runs on
   A's worker inside B's submit, so it is inside both pools. wait_idle(A) and destroy(A) from there
   must return at once (they used to see only B and wait for their own task). */
typedef struct two_pools {
    pk_exec *a, *b;
    int dropped;
    uint64_t wait_ns;
} two_pools;
static two_pools tp;
static void tp_on_drop(void *arg, int reason)
{
    uint64_t t0 = pk_test_now_ns();
    (void)arg;
    PK_CHECK_EQ(reason, -EAGAIN);
    pk_exec_wait_idle(tp.a); /* inside one of A's tasks: returns at once */
    pk_exec_destroy(tp.a);   /* likewise: does nothing */
    tp.wait_ns = pk_test_now_ns() - t0;
    __atomic_store_n(&tp.dropped, 1, __ATOMIC_SEQ_CST);
}
static void tp_task_a(void *arg)
{
    pk_exec_task_opts o;
    (void)arg;
    memset(&o, 0, sizeof o);
    o.priority = PK_EXEC_HIGH;
    PK_CHECK_EQ(pk_exec_submit_opts(tp.b, noop_task, NULL, &o), 0); /* displaces B's LOW task */
}
static void test_inside_two_pools(void)
{
    pk_exec_task_opts lo;
    gate g;
    memset(&tp, 0, sizeof tp);
    tp.a = one_thread_pool(0, 0);
    tp.b = one_thread_pool(1, 0);
    gate_init(&g);
    PK_CHECK_EQ(pk_exec_submit(tp.b, gate_task, &g), 0);
    gate_wait_started(&g, 1); /* B's worker is held */
    memset(&lo, 0, sizeof lo);
    lo.priority = PK_EXEC_LOW;
    lo.on_drop = tp_on_drop;
    PK_CHECK_EQ(pk_exec_submit_opts(tp.b, noop_task, NULL, &lo), 0); /* B's queue is full now */
    PK_CHECK_EQ(pk_exec_submit(tp.a, tp_task_a, NULL), 0);
    pk_exec_wait_idle(tp.a);
    PK_CHECK_EQ(__atomic_load_n(&tp.dropped, __ATOMIC_SEQ_CST), 1);
    PK_CHECK(tp.wait_ns < 1000000000u);
    gate_open(&g);
    pk_exec_destroy(tp.a);
    pk_exec_destroy(tp.b);
    gate_fini(&g);
}

/* A worker that drops expired tasks calls their on_drop before it picks the next task: a slow
   on_drop must not let a task start past its deadline, nor ahead of a HIGH task submitted while
   the on_drop runs (the worker used to take the next task first, then deliver the drops). */
static int od_in_drop, od_y_rc;
static uint64_t od_y_start, od_h_start;
static void od_slow_drop(void *arg, int reason)
{
    (void)arg;
    (void)reason;
    __atomic_store_n(&od_in_drop, 1, __ATOMIC_SEQ_CST);
    pk_test_sleep_ns(200000000);
}
static void od_y(void *arg)
{
    (void)arg;
    od_y_start = pk_test_now_ns();
}
static void od_y_drop(void *arg, int reason)
{
    (void)arg;
    od_y_rc = reason;
}
static void od_h(void *arg)
{
    (void)arg;
    od_h_start = pk_test_now_ns();
}
static void test_next_task_picked_after_drops(void)
{
    pk_exec *e = one_thread_pool(0, 0);
    pk_exec_task_opts o;
    gate g;
    od_in_drop = od_y_rc = 0;
    od_y_start = od_h_start = 0;
    gate_init(&g);
    PK_CHECK_EQ(pk_exec_submit(e, gate_task, &g), 0);
    gate_wait_started(&g, 1);
    memset(&o, 0, sizeof o);
    o.deadline_ns = pk_exec_now_ns() + 20000000; /* X: expired when the worker gets to it */
    o.on_drop = od_slow_drop;
    PK_CHECK_EQ(pk_exec_submit_opts(e, noop_task, NULL, &o), 0);
    o.deadline_ns = pk_exec_now_ns() + 100000000; /* Y: live when the gate opens, not after X's on_drop */
    o.on_drop = od_y_drop;
    PK_CHECK_EQ(pk_exec_submit_opts(e, od_y, NULL, &o), 0);
    pk_test_sleep_ns(50000000); /* X expires, Y does not */
    gate_open(&g);
    {
        uint64_t t0 = pk_test_now_ns();
        while (!__atomic_load_n(&od_in_drop, __ATOMIC_SEQ_CST) && pk_test_now_ns() - t0 < 10000000000u)
            pk_test_sleep_ns(1000000);
        PK_CHECK(od_in_drop);
    }
    memset(&o, 0, sizeof o);
    o.priority = PK_EXEC_HIGH;
    PK_CHECK_EQ(pk_exec_submit_opts(e, od_h, NULL, &o), 0); /* while X's on_drop runs */
    pk_exec_wait_idle(e);
    PK_CHECK(od_h_start != 0);
    PK_CHECK_MSG(od_y_start == 0, "Y started after its deadline");
    PK_CHECK_EQ(od_y_rc, -ETIMEDOUT);
    pk_exec_destroy(e);
    gate_fini(&g);
}

static uint64_t process_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void test_idle_pool_sleeps(void)
{
    pk_exec *e;
    pk_exec_config cfg;
    uint64_t c0, c1;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 4;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    PK_CHECK_EQ(pk_exec_map(e, 1000, count_fn, NULL, NULL), 0);
    PK_CHECK_EQ(pk_exec_submit(e, noop_task, NULL), 0);
    pk_test_sleep_ns(50000000); /* spinning ends after spin_ns (50 us) */
    c0 = process_cpu_ns();
    pk_test_sleep_ns(300000000);
    c1 = process_cpu_ns();
    printf("    an idle pool of 4 used %.2f ms of CPU in 300 ms\n", (double)(c1 - c0) / 1e6);
    PK_CHECK_MSG(c1 - c0 < 30000000u, "idle pool burnt %.1f ms of CPU in 300 ms", (double)(c1 - c0) / 1e6);
    pk_exec_destroy(e);
}

int main(void)
{
    pk_test_main_begin("test_exec");
    PK_TEST(test_shared_pool_thread_limit); /* first: it makes the shared pool */
    PK_TEST(test_bad_input);
    PK_TEST(test_map_results);
    PK_TEST(test_concurrency_bound);
    PK_TEST(test_fail_fast);
    PK_TEST(test_progress);
    PK_TEST(test_nested_three_deep);
    PK_TEST(test_many_concurrent_maps);
    PK_TEST(test_blocking);
    PK_TEST(test_priority_order);
    PK_TEST(test_deadlines);
    PK_TEST(test_full_queue_drops_expired_first);
    PK_TEST(test_displacement);
    PK_TEST(test_exactly_once_4_submitters);
    PK_TEST(test_wait_idle);
    PK_TEST(test_destroy_runs_queued);
    PK_TEST(test_destroy_waits_for_follow_up);
    PK_TEST(test_destroy_from_task);
    PK_TEST(test_thread_creation_failure);
    PK_TEST(test_alloc_failure_sweep);
    PK_TEST(test_stats);
    PK_TEST(test_maps_from_tasks);
    PK_TEST(test_many_callers);
    PK_TEST(test_parallel_map);
    PK_TEST(test_map_range);
    PK_TEST(test_claims);
    PK_TEST(test_stealing);
    PK_TEST(test_all_start_at_once);
    PK_TEST(test_maps_do_not_starve_tasks);
    PK_TEST(test_idle_pool_sleeps);
    PK_TEST(test_destroy_while_spinning);
    PK_TEST(test_task_not_stuck_behind_map);
    PK_TEST(test_inside_two_pools);
    PK_TEST(test_next_task_picked_after_drops);
    return pk_test_main_end();
}
