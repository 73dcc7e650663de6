/* bench_exec.c — pk_exec.h against OpenMP (gcc -fopenmp, -DPK_HAVE_OPENMP), thread-per-item and
   sequential code, in one process, trials interleaved, medians reported.

   Measures (ratios are pk / peer, lower is better):
     1. per-item cost at grain 1            vs  #pragma omp for schedule(dynamic,1)
     2. automatic grain, uniform tiny items vs  schedule(guided)
     3. automatic grain, uneven items       vs  schedule(guided), in both forms as for tiny items: pk's
                                                range fn against OpenMP's inlined loop body, and pk's
                                                item fn against OpenMP calling the same function
     4. small map fork/join latency         vs  an OpenMP parallel-for region of the same size
     5. 32 blocking 10 ms items             vs  one item's time (target <= 1.5), a thread per item,
                                                and sequential
     reference, no target: measure 3's range form again with pk's workers spinning 10 ms after a
     map (spin_ns) instead of the default 50 us, against OpenMP's guided loop
     bound, no target: measure 3 (range form) against the same loop run on one thread divided by
     the team size, the best any scheduler can do with CPU-bound items; OpenMP's figure against it
     is printed as a note. (Not for the tiny items: they are bound by memory as much as by the CPU,
     and two threads get 1.3-1.9x one thread's speed, depending on the run.)

   Fairness: both sides use the same number of threads: OpenMP's team is omp_get_max_threads()
   (the master included); pk's pool has that many minus one workers, since pk's caller takes part
   too. OpenMP's idle team spins (GOMP_SPINCOUNT, milliseconds) and pk's idle workers spin for up to
   50 us: a thread still spinning from one side's trial would steal a core from the other side's.
   So after every trial the benchmark waits until the process uses no CPU (quiesce(): process CPU
   time stops growing over 10 ms, see there why not less): every trial of either side starts with
   its threads asleep and pays its own wake-up, and never runs against the other side's spinning.
   Both sides run their measures in the same order, so each pair of figures compared starts from
   the same cache contents (the 16 MB array fits the 32 MB L3; the previous measure decides what is
   in each core's L2). Build: cc -O2 -fopenmp -DPK_HAVE_OPENMP bench/bench_exec.c -pthread */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define PK_EXEC_IMPLEMENTATION
#include "../pk_exec.h"
#include "bench_util.h"

#ifdef PK_HAVE_OPENMP
#include <omp.h>
#endif

/* ---- work ------------------------------------------------------------------------------------- */

static uint32_t *data;

/* A tiny item: a few ns of integer work on its own element. */
static inline uint32_t tiny_work(uint32_t x, size_t i)
{
    x ^= (uint32_t)i;
    x *= 0x9E3779B1u;
    x ^= x >> 15;
    return x;
}

/* An uneven item: cost grows with the index in a sawtooth of period 1024 (0 to ~2 us), so
   contiguous blocks are unequal: a static split or a too-large grain is unbalanced. */
static inline uint32_t uneven_work(uint32_t x, size_t i)
{
    unsigned k, reps = (unsigned)(i & 1023) * 2;
    for (k = 0; k < reps; k++) x = x * 1664525u + 1013904223u;
    return x;
}

static int tiny_item(void *ctx, size_t i)
{
    (void)ctx;
    data[i] = tiny_work(data[i], i);
    return 0;
}

static int uneven_item(void *ctx, size_t i)
{
    (void)ctx;
    data[i] = uneven_work(data[i], i);
    return 0;
}

static int uneven_range(void *ctx, size_t b, size_t e)
{
    size_t i;
    (void)ctx;
    for (i = b; i < e; i++) data[i] = uneven_work(data[i], i);
    return 0;
}

static int tiny_range(void *ctx, size_t b, size_t e)
{
    size_t i;
    (void)ctx;
    for (i = b; i < e; i++) data[i] = tiny_work(data[i], i);
    return 0;
}

/* about 1 us of work: the fork/join measure with items big enough to need the helpers */
static int us_item(void *ctx, size_t i)
{
    uint32_t x = data[i];
    unsigned k;
    (void)ctx;
    for (k = 0; k < 1500; k++) x = x * 1664525u + 1013904223u;
    data[i] = x;
    return 0;
}

/* the item function reached through a pointer the compiler cannot see through, for OpenMP to call
   the very same per-item function pk calls */
static int (*volatile item_ptr)(void *, size_t) = tiny_item;
static int (*volatile uneven_ptr)(void *, size_t) = uneven_item;

static int sleep_item(void *ctx, size_t i)
{
    struct timespec ts;
    (void)ctx;
    (void)i;
    ts.tv_sec = 0;
    ts.tv_nsec = 10000000;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    return 0;
}

/* ---- fairness ------------------------------------------------------------------------------------ */

static uint64_t cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_utime.tv_sec * 1000000000u + (uint64_t)ru.ru_utime.tv_usec * 1000u +
           (uint64_t)ru.ru_stime.tv_sec * 1000000000u + (uint64_t)ru.ru_stime.tv_usec * 1000u;
}

/* Waits until no thread of the process burns CPU (spinning pools gone to sleep), up to 300 ms.
   The window must be longer than the kernel's accounting tick: the CPU time of a thread running on
   another CPU is only brought up to date at a tick or a context switch, so a 2 ms window read a
   still-spinning OpenMP team as idle (measured here: ~20 us of CPU reported for a 2 ms window in
   which libgomp's worker spun throughout, then ~4 ms at once in the next). With 2 ms windows the
   OpenMP trials ran with their team still spinning (no wake-up to pay), pk's with its workers
   asleep: the comparison favoured OpenMP. 10 ms windows (> 2 ticks at 250 Hz) see a spinner. */
static void quiesce(void)
{
    uint64_t t_end = bench_now_ns() + 300000000u;
    if (bench_smoke()) return;
    while (bench_now_ns() < t_end) {
        uint64_t c0 = cpu_ns();
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        if (cpu_ns() - c0 < 1000000) return; /* < 10% of one CPU over 10 ms */
    }
}

/* ---- pk side ------------------------------------------------------------------------------------- */

static pk_exec *pool;
static unsigned team; /* threads on each side, the caller/master included */

static double pk_map_ns(size_t n, pk_exec_fn fn, size_t grain, int reps)
{
    pk_exec_map_opts o;
    uint64_t t0;
    int r;
    memset(&o, 0, sizeof o);
    o.grain = grain;
    o.concurrency = team;
    t0 = bench_now_ns();
    for (r = 0; r < reps; r++) pk_exec_map(pool, n, fn, NULL, &o);
    return (double)(bench_now_ns() - t0) / reps;
}

static double pk_range_ns(size_t n, pk_exec_range_fn fn, int reps)
{
    pk_exec_map_opts o;
    uint64_t t0;
    int r;
    memset(&o, 0, sizeof o);
    o.concurrency = team;
    t0 = bench_now_ns();
    for (r = 0; r < reps; r++) pk_exec_map_range(pool, n, fn, NULL, &o);
    return (double)(bench_now_ns() - t0) / reps;
}

/* ---- OpenMP side ---------------------------------------------------------------------------------- */

#ifdef PK_HAVE_OPENMP
static double omp_dynamic1_ns(size_t n, int reps)
{
    uint64_t t0 = bench_now_ns();
    int r;
    for (r = 0; r < reps; r++) {
        long i;
#pragma omp parallel for schedule(dynamic, 1)
        for (i = 0; i < (long)n; i++) data[i] = tiny_work(data[i], (size_t)i);
    }
    return (double)(bench_now_ns() - t0) / reps;
}

static double omp_guided_ns(size_t n, int uneven, int reps)
{
    uint64_t t0 = bench_now_ns();
    int r;
    for (r = 0; r < reps; r++) {
        long i;
        if (uneven) {
#pragma omp parallel for schedule(guided)
            for (i = 0; i < (long)n; i++) data[i] = uneven_work(data[i], (size_t)i);
        } else {
#pragma omp parallel for schedule(guided)
            for (i = 0; i < (long)n; i++) data[i] = tiny_work(data[i], (size_t)i);
        }
    }
    return (double)(bench_now_ns() - t0) / reps;
}

static double omp_guided_ptr_ns(size_t n, int (*volatile *fp)(void *, size_t), int reps)
{
    uint64_t t0 = bench_now_ns();
    int r;
    for (r = 0; r < reps; r++) {
        long i;
        int (*f)(void *, size_t) = *fp;
#pragma omp parallel for schedule(guided)
        for (i = 0; i < (long)n; i++) f(NULL, (size_t)i);
    }
    return (double)(bench_now_ns() - t0) / reps;
}

static double omp_region_ns(size_t n, int big, int reps)
{
    uint64_t t0 = bench_now_ns();
    int r;
    for (r = 0; r < reps; r++) {
        long i;
        if (big) {
#pragma omp parallel for
            for (i = 0; i < (long)n; i++) us_item(NULL, (size_t)i);
        } else {
#pragma omp parallel for
            for (i = 0; i < (long)n; i++) data[i] = tiny_work(data[i], (size_t)i);
        }
    }
    return (double)(bench_now_ns() - t0) / reps;
}
#endif

/* ---- thread per item ------------------------------------------------------------------------------ */

static void *tpi_main(void *arg)
{
    sleep_item(NULL, (size_t)(uintptr_t)arg);
    return NULL;
}

static double thread_per_item_ns(size_t n)
{
    pthread_t th[64];
    size_t i;
    uint64_t t0 = bench_now_ns();
    for (i = 0; i < n; i++) pthread_create(&th[i], NULL, tpi_main, (void *)(uintptr_t)i);
    for (i = 0; i < n; i++) pthread_join(th[i], NULL);
    return (double)(bench_now_ns() - t0);
}

/* ---- main ------------------------------------------------------------------------------------------ */

#define MAXT 31

int main(void)
{
    pk_exec_config cfg;
    const int trials = bench_smoke() ? 1 : bench_quick() ? 5 : 21;
    const size_t n_item = bench_scale(400000, 4);   /* per-item cost: items per map */
    const size_t n_guided = bench_scale(4000000, 4); /* automatic grain, tiny items */
    const size_t n_uneven = bench_scale(40000, 4);   /* automatic grain, uneven items */
    const int reps_region = (int)bench_scale(20000, 4);
    double v[8][2][MAXT];
    double seq_uneven[MAXT]; /* one thread, inlined loop, ns/item */
    double blk_pk[MAXT], blk_tpi[MAXT], blk_seq = 0;
    int t, m;
    size_t n_small;

#ifdef PK_HAVE_OPENMP
    team = (unsigned)omp_get_max_threads();
#else
    team = pk_exec__ncpu();
    bench_note("exec", "OpenMP not available (built without -fopenmp -DPK_HAVE_OPENMP): loop measures print pk only");
#endif
    if (team < 1) team = 1;
    n_small = team; /* one item per thread: fork/join cost only */
    data = (uint32_t *)calloc(n_guided > n_item ? n_guided : n_item, sizeof(uint32_t));
    /* fault the whole array in now: otherwise the first trial to touch it (pk's, in trial 0) pays
       4,000 page faults that the other side never sees */
    if (data) memset(data, 1, (n_guided > n_item ? n_guided : n_item) * sizeof(uint32_t));
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = team > 1 ? team - 1 : 1;
    if (pk_exec_create(&pool, &cfg) != 0) {
        fprintf(stderr, "bench_exec: pk_exec_create failed\n");
        return 1;
    }
    {
        char note[200];
        snprintf(note, sizeof note,
                 "%u threads a side (pk: %u workers + the caller; OpenMP: team of %u); quiesced between trials", team,
                 cfg.threads, team);
        bench_note("exec", note);
    }

    /* warm up both sides (thread creation, page faults) */
    pk_map_ns(n_item, tiny_item, 1, 1);
#ifdef PK_HAVE_OPENMP
    omp_dynamic1_ns(n_item, 1);
#endif

    memset(v, 0, sizeof v);
    for (t = 0; t < trials; t++) {
        /* alternate which side goes first */
        int side;
        for (side = 0; side < 2; side++) {
            int pk_side = (side + t) % 2 == 0;
            if (pk_side) {
                quiesce();
                v[0][0][t] = pk_map_ns(n_item, tiny_item, 1, 1) / (double)n_item;
                quiesce();
                v[1][0][t] = pk_map_ns(n_guided, tiny_item, 0, 1) / (double)n_guided;
                quiesce();
                v[2][0][t] = pk_range_ns(n_uneven, uneven_range, 1) / (double)n_uneven;
                quiesce();
                v[7][0][t] = pk_map_ns(n_uneven, uneven_item, 0, 1) / (double)n_uneven;
                quiesce();
                v[3][0][t] = pk_map_ns(n_small, tiny_item, 0, reps_region);
                quiesce();
                v[4][0][t] = pk_map_ns(n_small, us_item, 0, reps_region / 4);
                quiesce();
                v[5][0][t] = pk_range_ns(n_guided, tiny_range, 1) / (double)n_guided;
                v[6][0][t] = v[1][0][t];
            } else {
#ifdef PK_HAVE_OPENMP
                quiesce();
                v[0][1][t] = omp_dynamic1_ns(n_item, 1) / (double)n_item;
                quiesce();
                v[6][1][t] = omp_guided_ptr_ns(n_guided, &item_ptr, 1) / (double)n_guided;
                quiesce();
                v[2][1][t] = omp_guided_ns(n_uneven, 1, 1) / (double)n_uneven;
                quiesce();
                v[7][1][t] = omp_guided_ptr_ns(n_uneven, &uneven_ptr, 1) / (double)n_uneven;
                quiesce();
                v[3][1][t] = omp_region_ns(n_small, 0, reps_region);
                quiesce();
                v[4][1][t] = omp_region_ns(n_small, 1, reps_region / 4);
                quiesce();
                v[1][1][t] = omp_guided_ns(n_guided, 0, 1) / (double)n_guided;
                v[5][1][t] = v[1][1][t];
#endif
            }
        }
        /* the bound: the same loop on this thread alone (quiesced like the others) */
        {
            size_t i;
            uint64_t t0;
            quiesce();
            t0 = bench_now_ns();
            for (i = 0; i < n_uneven; i++) data[i] = uneven_work(data[i], i);
            seq_uneven[t] = (double)(bench_now_ns() - t0) / (double)n_uneven / team;
        }
    }
    {
        /* order of the lines: the three targeted loop measures first */
        static const int order[8] = {0, 5, 6, 2, 7, 4, 3, 1};
        static const char *names[8] = {"per-item cost, grain 1",
                                       "auto grain, 4M tiny items, item fn",
                                       "auto grain, 40k uneven items, range fn",
                                       "fork/join, 1 tiny item per thread",
                                       "fork/join, 1 item of 1 us per thread",
                                       "auto grain, 4M tiny items, range fn",
                                       "auto grain, 4M tiny items, item fn",
                                       "auto grain, 40k uneven items, item fn"};
        static const char *peers[8] = {"OpenMP dynamic,1", "OpenMP guided inlined", "OpenMP guided inlined",
                                       "OpenMP parallel for", "OpenMP parallel for", "OpenMP guided inlined",
                                       "OpenMP guided, same fn", "OpenMP guided, same fn"};
        static const char *units[8] = {"ns/item", "ns/item", "ns/item", "ns/map", "ns/map", "ns/item", "ns/item", "ns/item"};
        static const char *targets[8] = {"<= 1.0", "-", "<= 1.0", "<= 1.0", "<= 1.0", "<= 1.0", "<= 1.0", "<= 1.0"};
        int k;
        for (k = 0; k < 8; k++) {
            double pk;
            m = order[k];
            pk = bench_median(v[m][0], trials);
#ifdef PK_HAVE_OPENMP
            bench_result("exec", names[m], pk, peers[m], bench_median(v[m][1], trials), units[m], targets[m]);
#else
            bench_result("exec", names[m], pk, "(no OpenMP)", 0, units[m], "-");
            (void)peers;
            (void)targets;
#endif
        }
    }

    {
        /* How close each side gets to the bound (sequential time / team): OpenMP as a note, since
           a result line's first figure is pk's */
        double bu = bench_median(seq_uneven, trials);
        char note[200];
        bench_result("exec", "auto grain, 40k uneven items, range fn, vs the bound", bench_median(v[2][0], trials),
                     "one thread's loop / threads", bu, "ns/item", "-");
#ifdef PK_HAVE_OPENMP
        snprintf(note, sizeof note,
                 "bound (one thread's inlined loop / %u) of the 40k uneven items: OpenMP guided inlined at %.3fx it",
                 team, bench_median(v[2][1], trials) / bu);
        bench_note("exec", note);
#else
        (void)note;
#endif
    }

#ifdef PK_HAVE_OPENMP
    /* Reference, no target: the uneven range measure again, in the same position (after the 4M
       tiny-item map), with pk's workers spinning 10 ms after each map instead of 50 us. On this
       VM a map that starts after the other vCPU idled ~20 ms often has its woken helper queued
       on the caller's CPU (see the README); OpenMP's team spins for milliseconds after a region,
       so its vCPU idles less. This row shows what pk's spin_ns changes. */
    {
        pk_exec *spin_pool;
        double vs[2][MAXT];
        memset(&cfg, 0, sizeof cfg);
        cfg.threads = team > 1 ? team - 1 : 1;
        cfg.spin_ns = 10000000;
        if (pk_exec_create(&spin_pool, &cfg) == 0) {
            pk_exec *main_pool = pool;
            pool = spin_pool; /* pk_map_ns and pk_range_ns use `pool` */
            for (t = 0; t < trials; t++) {
                int side;
                for (side = 0; side < 2; side++) {
                    if ((side + t) % 2 == 0) {
                        quiesce();
                        pk_map_ns(n_guided, tiny_item, 0, 1);
                        quiesce();
                        vs[0][t] = pk_range_ns(n_uneven, uneven_range, 1) / (double)n_uneven;
                    } else {
                        quiesce();
                        omp_guided_ptr_ns(n_guided, &item_ptr, 1);
                        quiesce();
                        vs[1][t] = omp_guided_ns(n_uneven, 1, 1) / (double)n_uneven;
                    }
                }
            }
            pool = main_pool;
            pk_exec_destroy(spin_pool);
            bench_result("exec", "auto grain, 40k uneven items, range fn, pk spin_ns 10 ms", bench_median(vs[0], trials),
                         "OpenMP guided inlined", bench_median(vs[1], trials), "ns/item", "-");
        }
    }
#endif

    /* blocking: 32 items that each sleep 10 ms */
    pk_exec_destroy(pool);
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 32;
    if (pk_exec_create(&pool, &cfg) != 0) return 1;
    {
        const int btrials = bench_smoke() ? 1 : bench_quick() ? 3 : 7;
        pk_exec_map_opts o;
        memset(&o, 0, sizeof o);
        o.concurrency = 32;
        pk_exec_map(pool, 32, sleep_item, NULL, &o); /* warm-up */
        for (t = 0; t < btrials; t++) {
            uint64_t t0;
            quiesce();
            t0 = bench_now_ns();
            pk_exec_map(pool, 32, sleep_item, NULL, &o);
            blk_pk[t] = (double)(bench_now_ns() - t0) / 1e6;
            quiesce();
            blk_tpi[t] = thread_per_item_ns(32) / 1e6;
        }
        {
            uint64_t t0 = bench_now_ns();
            size_t i;
            for (i = 0; i < (bench_smoke() ? 2u : 32u); i++) sleep_item(NULL, i);
            blk_seq = (double)(bench_now_ns() - t0) / 1e6;
            if (bench_smoke()) blk_seq *= 16;
        }
        {
            double pk = bench_median(blk_pk, btrials), tpi = bench_median(blk_tpi, btrials);
            bench_result("exec", "32 blocking 10 ms items / one item's time", pk, "one item", 10.0, "ms", "<= 1.5");
            bench_result("exec", "32 blocking 10 ms items, thread per item", pk, "thread per item", tpi, "ms", "-");
            bench_result("exec", "32 blocking 10 ms items, sequential", pk, "sequential", blk_seq, "ms", "-");
        }
    }
    pk_exec_destroy(pool);
    free(data);
    return 0;
}
