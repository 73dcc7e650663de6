/* bench_pool.c — pk_pool against malloc+free, pk_respool against APR's apr_reslist.

   Object pool: acquire+release of one object in a loop, and bursts (32 acquires, then 32 releases),
   against malloc+free of the same size, for a small object (64 B) and a buffer (4 KiB), on one
   thread and on two threads at once (each thread its own objects from one shared pool). Peers:
   glibc in this process; jemalloc and mimalloc by re-running this program with LD_PRELOAD (the
   pool's numbers are measured again in that process so both sides share the allocator). The
   0.5x target is checked against glibc; the preloaded allocators are shown for comparison.

   Resource pool (with -DPK_HAVE_APR and apr-util): acquire+release of an idle resource, one thread
   and two threads, against apr_reslist_acquire/release with the same min/max. Target 0.5x.

   Interleaved trials (pk, peer, pk, peer ...; the first of each pair alternates), medians.
   Build: cc -O2 -pthread -I. -Ibench bench/bench_pool.c -o bench_pool
          [-DPK_HAVE_APR $(pkg-config --cflags --libs apr-util-1 apr-1)]  (bench/peers.sh does this) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bench_util.h"

#define PK_POOL_IMPLEMENTATION
#include "pk_pool.h"

#include <errno.h>
#include <glob.h>
#include <pthread.h>
#include <unistd.h>

#ifdef PK_HAVE_APR
#include <apr_general.h>
#include <apr_pools.h>
#include <apr_reslist.h>
#endif

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BENCH_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define BENCH_SANITIZED 1
#endif
#endif

#define TRIALS_FULL 9
static int g_trials = TRIALS_FULL;
static const char *g_peer = "glibc"; /* the allocator malloc goes to in this process */

/* ---------------------------------------------------------------------------------------------- */
/* object workloads: each returns ns per acquire+release (or malloc+free) pair                      */

enum { W_LOOP, W_BURST };
enum { BURST = 32 };

typedef struct owork {
    int kind, use_pool;
    size_t size, iters;
    pk_pool *pool;
    pthread_barrier_t *bar;
    double ns;
} owork;

/* One function per loop, not inlined: each loop keeps its counter and bound in registers, the same
   for the pool and for malloc (in one big function the compiler spilled the bound to the stack and
   reloaded it every iteration, which cost the side with the shorter loop body relatively more). */
#if defined(__GNUC__) || defined(__clang__)
#define BENCH_NOINLINE __attribute__((noinline))
/* the pointer escapes (costs no instruction): a compiler may not elide a malloc/free pair */
#define BENCH_ESCAPE(x) __asm__ volatile("" : : "r"(x))
#else
#define BENCH_NOINLINE
#define BENCH_ESCAPE(x) ((void)(x))
#endif

static BENCH_NOINLINE uint64_t loop_pool(pk_pool *p, size_t n)
{
    uint64_t sink = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        char *o = (char *)pk_pool_acquire(p);
        BENCH_ESCAPE(o);
        o[0] = (char)i;
        sink += (uint64_t)(unsigned char)o[0];
        pk_pool_release(p, o);
    }
    return sink;
}

static BENCH_NOINLINE uint64_t loop_malloc(size_t size, size_t n)
{
    uint64_t sink = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        char *o = (char *)malloc(size);
        BENCH_ESCAPE(o);
        o[0] = (char)i;
        sink += (uint64_t)(unsigned char)o[0];
        free(o);
    }
    return sink;
}

static BENCH_NOINLINE uint64_t burst_pool(pk_pool *p, size_t rounds)
{
    uint64_t sink = 0;
    void *v[BURST];
    size_t i, j;
    for (i = 0; i < rounds; i++) {
        for (j = 0; j < BURST; j++) {
            v[j] = pk_pool_acquire(p);
            BENCH_ESCAPE(v[j]);
            ((char *)v[j])[0] = (char)j;
        }
        for (j = 0; j < BURST; j++) {
            sink += (uint64_t)((unsigned char *)v[j])[0];
            pk_pool_release(p, v[j]);
        }
    }
    return sink;
}

static BENCH_NOINLINE uint64_t burst_malloc(size_t size, size_t rounds)
{
    uint64_t sink = 0;
    void *v[BURST];
    size_t i, j;
    for (i = 0; i < rounds; i++) {
        for (j = 0; j < BURST; j++) {
            v[j] = malloc(size);
            BENCH_ESCAPE(v[j]);
            ((char *)v[j])[0] = (char)j;
        }
        for (j = 0; j < BURST; j++) {
            sink += (uint64_t)((unsigned char *)v[j])[0];
            free(v[j]);
        }
    }
    return sink;
}

static void run_obj(owork *w)
{
    size_t n = w->iters;
    uint64_t t0, sink;
    if (w->bar) pthread_barrier_wait(w->bar);
    t0 = bench_now_ns();
    if (w->kind == W_LOOP) {
        sink = w->use_pool ? loop_pool(w->pool, n) : loop_malloc(w->size, n);
    } else {
        n = n / BURST;
        sink = w->use_pool ? burst_pool(w->pool, n) : burst_malloc(w->size, n);
        n *= BURST;
    }
    w->ns = (double)(bench_now_ns() - t0) / (double)n;
    bench_sink += sink;
}

static void *obj_thread(void *a)
{
    run_obj((owork *)a);
    return NULL;
}

/* One trial: `threads` threads at once; the result is the mean per-thread ns per pair. */
static double obj_trial(int kind, int use_pool, size_t size, int threads, size_t iters, pk_pool *pool)
{
    owork w[2];
    pthread_t t[2];
    pthread_barrier_t bar;
    int i;
    double ns = 0;
    if (threads == 1) {
        memset(&w[0], 0, sizeof w[0]);
        w[0].kind = kind;
        w[0].use_pool = use_pool;
        w[0].size = size;
        w[0].iters = iters;
        w[0].pool = pool;
        run_obj(&w[0]);
        return w[0].ns;
    }
    pthread_barrier_init(&bar, NULL, (unsigned)threads);
    for (i = 0; i < threads; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].kind = kind;
        w[i].use_pool = use_pool;
        w[i].size = size;
        w[i].iters = iters;
        w[i].pool = pool;
        w[i].bar = &bar;
        pthread_create(&t[i], NULL, obj_thread, &w[i]);
    }
    for (i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        ns += w[i].ns;
    }
    pthread_barrier_destroy(&bar);
    return ns / threads;
}

static void bench_objects(int threads, int kind, size_t size, const char *target)
{
    pk_pool *pool;
    pk_pool_config cfg;
    double pk[TRIALS_FULL], peer[TRIALS_FULL];
    size_t iters = bench_scale(kind == W_LOOP ? 4000000 : 4000000, 8);
    char measure[96], peer_name[64];
    int t;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = size;
    if (pk_pool_create(&pool, &cfg) != 0) {
        bench_note("pool", "pk_pool_create failed");
        return;
    }
    obj_trial(kind, 1, size, threads, iters / 10 + 1, pool); /* warm both */
    obj_trial(kind, 0, size, threads, iters / 10 + 1, pool);
    for (t = 0; t < g_trials; t++) {
        if (t & 1) {
            peer[t] = obj_trial(kind, 0, size, threads, iters, pool);
            pk[t] = obj_trial(kind, 1, size, threads, iters, pool);
        } else {
            pk[t] = obj_trial(kind, 1, size, threads, iters, pool);
            peer[t] = obj_trial(kind, 0, size, threads, iters, pool);
        }
    }
    snprintf(measure, sizeof measure, "%s %zu B, %d thread%s", kind == W_LOOP ? "acquire+release" : "burst of 32,",
             size, threads, threads > 1 ? "s" : "");
    snprintf(peer_name, sizeof peer_name, "%s malloc+free", g_peer);
    bench_result("pool", measure, bench_median(pk, g_trials), peer_name, bench_median(peer, g_trials), "ns/op", target);
    pk_pool_destroy(pool);
}

static void bench_all_objects(const char *target)
{
    size_t sizes[2] = {64, 4096};
    int s, threads;
    for (s = 0; s < 2; s++)
        for (threads = 1; threads <= 2; threads++) {
            bench_objects(threads, W_LOOP, sizes[s], target);
            bench_objects(threads, W_BURST, sizes[s], target);
        }
}

/* Re-runs this program with an allocator preloaded. */
static void run_preloaded(const char *argv0, const char *name, const char *pattern)
{
    glob_t g;
    char cmd[4096];
    int rc;
    if (glob(pattern, 0, NULL, &g) != 0 || g.gl_pathc == 0) {
        char note[256];
        snprintf(note, sizeof note, "%s not installed (apt-get install lib%s-dev): skipped", name, name);
        bench_note("pool", note);
        return;
    }
    snprintf(cmd, sizeof cmd, "LD_PRELOAD='%s' BENCH_POOL_PEER='%s' '%s' --objects-only", g.gl_pathv[0], name, argv0);
    globfree(&g);
    fflush(stdout);
    rc = system(cmd);
    if (rc != 0) {
        char note[128];
        snprintf(note, sizeof note, "%s run failed (status %d)", name, rc);
        bench_note("pool", note);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* resource pool                                                                                    */

typedef struct fake_res { int fd; long uses; } fake_res;

static int fr_create(void **res, void *u)
{
    fake_res *r = (fake_res *)malloc(sizeof *r);
    (void)u;
    if (!r) return -ENOMEM;
    r->fd = 3;
    r->uses = 0;
    *res = r;
    return 0;
}
static void fr_destroy(void *res, void *u)
{
    (void)u;
    free(res);
}

#ifdef PK_HAVE_APR
static apr_status_t apr_con(void **res, void *params, apr_pool_t *pool)
{
    (void)pool;
    return fr_create(res, params) == 0 ? APR_SUCCESS : APR_ENOMEM;
}
static apr_status_t apr_de(void *res, void *params, apr_pool_t *pool)
{
    (void)pool;
    fr_destroy(res, params);
    return APR_SUCCESS;
}
#endif

typedef struct rwork {
    int use_pk;
    size_t iters;
    pk_respool *rp;
#ifdef PK_HAVE_APR
    apr_reslist_t *rl;
#endif
    pthread_barrier_t *bar;
    double ns;
    int errors;
} rwork;

static void run_res(rwork *w)
{
    size_t i;
    uint64_t t0;
    if (w->bar) pthread_barrier_wait(w->bar);
    t0 = bench_now_ns();
    if (w->use_pk) {
        for (i = 0; i < w->iters; i++) {
            void *r;
            if (pk_respool_acquire(w->rp, &r, PK_FOREVER) != 0) {
                w->errors++;
                continue;
            }
            ((fake_res *)r)->uses++;
            pk_respool_release(w->rp, r);
        }
    } else {
#ifdef PK_HAVE_APR
        for (i = 0; i < w->iters; i++) {
            void *r;
            if (apr_reslist_acquire(w->rl, &r) != APR_SUCCESS) {
                w->errors++;
                continue;
            }
            ((fake_res *)r)->uses++;
            apr_reslist_release(w->rl, r);
        }
#endif
    }
    w->ns = (double)(bench_now_ns() - t0) / (double)w->iters;
}

static void *res_thread(void *a)
{
    run_res((rwork *)a);
    return NULL;
}

#ifdef PK_HAVE_APR
static double res_trial(int use_pk, int threads, size_t iters, pk_respool *rp, apr_reslist_t *rl)
{
    rwork w[2];
    pthread_t t[2];
    pthread_barrier_t bar;
    double ns = 0;
    int i;
    pthread_barrier_init(&bar, NULL, (unsigned)threads);
    for (i = 0; i < threads; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].use_pk = use_pk;
        w[i].iters = iters;
        w[i].rp = rp;
        w[i].rl = rl;
        w[i].bar = threads > 1 ? &bar : NULL;
        if (threads > 1) pthread_create(&t[i], NULL, res_thread, &w[i]);
        else run_res(&w[i]);
    }
    if (threads > 1)
        for (i = 0; i < threads; i++) pthread_join(t[i], NULL);
    for (i = 0; i < threads; i++) ns += w[i].ns;
    pthread_barrier_destroy(&bar);
    return ns / threads;
}
#endif

static void bench_resources(void)
{
#ifdef PK_HAVE_APR
    apr_pool_t *ap;
    apr_reslist_t *rl;
    pk_respool *rp;
    pk_respool_config cfg;
    size_t iters = bench_scale(2000000, 8);
    int threads, t;
    if (apr_initialize() != APR_SUCCESS || apr_pool_create(&ap, NULL) != APR_SUCCESS) {
        bench_note("respool", "APR failed to initialise: skipped");
        return;
    }
    if (apr_reslist_create(&rl, 8, 8, 8, 0, apr_con, apr_de, NULL, ap) != APR_SUCCESS) {
        bench_note("respool", "apr_reslist_create failed: skipped");
        return;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.min = 8;
    cfg.max = 8;
    cfg.create = fr_create;
    cfg.destroy = fr_destroy;
    if (pk_respool_create(&rp, &cfg) != 0) {
        bench_note("respool", "pk_respool_create failed: skipped");
        return;
    }
    for (threads = 1; threads <= 2; threads++) {
        double pk[TRIALS_FULL], peer[TRIALS_FULL];
        char measure[96];
        res_trial(1, threads, iters / 10 + 1, rp, rl);
        res_trial(0, threads, iters / 10 + 1, rp, rl);
        for (t = 0; t < g_trials; t++) {
            if (t & 1) {
                peer[t] = res_trial(0, threads, iters, rp, rl);
                pk[t] = res_trial(1, threads, iters, rp, rl);
            } else {
                pk[t] = res_trial(1, threads, iters, rp, rl);
                peer[t] = res_trial(0, threads, iters, rp, rl);
            }
        }
        snprintf(measure, sizeof measure, "acquire+release idle of 8, %d thread%s", threads, threads > 1 ? "s" : "");
        bench_result("respool", measure, bench_median(pk, g_trials), "apr_reslist", bench_median(peer, g_trials),
                     "ns/op", "<= 0.5");
    }
    pk_respool_destroy(rp);
    apr_reslist_destroy(rl);
    apr_pool_destroy(ap);
    apr_terminate();
#else
    bench_note("respool", "built without PK_HAVE_APR (apt-get install libaprutil1-dev): apr_reslist comparison skipped");
#endif
}

int main(int argc, char **argv)
{
    const char *peer = getenv("BENCH_POOL_PEER");
    int objects_only = argc > 1 && strcmp(argv[1], "--objects-only") == 0;
    if (bench_quick()) g_trials = 5;
    if (bench_smoke()) g_trials = 1;
    if (peer && *peer) g_peer = peer;
    if (objects_only) {
        bench_all_objects("-");
        return 0;
    }
    bench_all_objects("<= 0.5");
#if defined(BENCH_SANITIZED)
    bench_note("pool", "sanitizer build: jemalloc/mimalloc runs skipped");
#else
    if (!bench_smoke()) {
        run_preloaded(argv[0], "jemalloc", "/usr/lib/*/libjemalloc.so.2");
        run_preloaded(argv[0], "mimalloc", "/usr/lib/*/libmimalloc.so.2*");
    }
#endif
    bench_resources();
    return 0;
}
