/* bench_prof.c — pk_prof.h against the floor (a bare counter increment), an HdrHistogram-style
   histogram, and the seeds' way (store every sample, sort at the end).

   Every figure is the median of interleaved trials over the same pre-generated value stream
   (latency-like: log-normal around 20 µs with a 1% tail 50x slower; 2^18 values = 2 MB, read
   sequentially, several passes), timed in CPU time of the measuring thread.

   The floor: `counts[v & mask]++` with counts as large as the histogram's bucket array (same
   cache footprint, same value stream). pk_hist_record is an extern function that users call from
   their own files, so the floor that sets its target is the same increment behind the same call
   boundary (a call through a function pointer, for both). The same pair fully inlined into the
   loop is printed too, without a target: there the floor is one load-add-store per value and any
   histogram (clz, table, multiply, min/max) costs several times it.

   HdrHistogram-style: log-linear buckets with 2048 sub-buckets (HdrHistogram_c's layout for 3
   digits), total count and min/max kept per record, written here from the algorithm's
   description (HdrHistogram_c is not packaged for Debian). It calibrates the floor: the issue
   says HdrHistogram_c's record measures about 3x it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* CPU_SET, pthread_setaffinity_np */
#endif
#include "bench_util.h"
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

/* Every measured loop, and every function those loops call (pk's included, by redeclaring them
   before the implementation is compiled), starts on a 64-byte boundary: the code layout of the
   rest of the program then cannot move a loop across a fetch boundary. Without it, the floor
   measured 1.41 or 1.67 ns/op on this machine depending on unrelated code elsewhere in the file. */
#define HOT __attribute__((noinline, aligned(64)))
#include "pk_prof.h"
void pk_hist_record(pk_hist *h, uint64_t value) HOT;
void pk_prof_record(pk_prof *p, int id, uint64_t ns) HOT;
#define PK_PROF_IMPLEMENTATION
#include "pk_prof.h"

#define HOUR_NS 3600000000000ull

static uint64_t *g_vals, *g_vals2;
static size_t g_n;   /* values in a stream */
static int g_reps;   /* passes over the stream per measurement */
static int g_ncpu;

/* CPU time of the calling thread: the machine is shared, and time spent preempted by other
   processes is not a cost of the code measured. Cache misses and stalls do count. */
static uint64_t cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
#define PER_OP(t0) ((double)(cpu_now() - (t0)) / ((double)g_n * g_reps))

/* ---- the floor ---- */

typedef struct floor_ctx {
    uint64_t *counts;
    uint64_t mask;
} floor_ctx;

static HOT void floor_inc(floor_ctx *f, uint64_t v) { f->counts[v & f->mask]++; }

/* ---- HdrHistogram-style histogram (3 digits: 2048 sub-buckets, half 1024) ---- */

typedef struct hdr {
    int64_t *counts;
    int64_t total;
    uint64_t min, max;
    int sub_bucket_half_magnitude; /* 10 */
    uint64_t sub_bucket_mask;      /* 2047 */
    int unit_magnitude;            /* 0 */
    int sub_bucket_half_count;     /* 1024 */
    size_t counts_len;
} hdr;

static int hdr_init(hdr *h, uint64_t max_value)
{
    uint64_t smallest_untrackable = 2048;
    int buckets = 1;
    while (smallest_untrackable <= max_value) {
        if (smallest_untrackable > UINT64_MAX / 2) {
            buckets++;
            break;
        }
        smallest_untrackable <<= 1;
        buckets++;
    }
    h->sub_bucket_half_magnitude = 10;
    h->sub_bucket_mask = 2047;
    h->unit_magnitude = 0;
    h->sub_bucket_half_count = 1024;
    h->counts_len = (size_t)(buckets + 1) * 1024;
    h->counts = (int64_t *)calloc(h->counts_len, sizeof *h->counts);
    h->total = 0;
    h->min = UINT64_MAX;
    h->max = 0;
    return h->counts ? 0 : -1;
}

static size_t hdr_index(const hdr *h, uint64_t v)
{
    int pow2ceiling = 64 - __builtin_clzll(v | h->sub_bucket_mask);
    int bucket = pow2ceiling - h->unit_magnitude - (h->sub_bucket_half_magnitude + 1);
    int64_t sub = (int64_t)(v >> (bucket + h->unit_magnitude));
    return (size_t)(((int64_t)(bucket + 1) << h->sub_bucket_half_magnitude) + (sub - h->sub_bucket_half_count));
}

static HOT void hdr_record(hdr *h, uint64_t v)
{
    size_t i = hdr_index(h, v);
    if (i >= h->counts_len) return;
    h->counts[i]++;
    h->total++;
    if (v < h->min && v != 0) h->min = v;
    if (v > h->max) h->max = v;
}

static uint64_t hdr_value_at(const hdr *h, size_t i)
{
    int bucket = (int)(i >> h->sub_bucket_half_magnitude) - 1;
    int64_t sub = (int64_t)(i & (uint64_t)(h->sub_bucket_half_count - 1)) + h->sub_bucket_half_count;
    if (bucket < 0) {
        sub -= h->sub_bucket_half_count;
        bucket = 0;
    }
    return (uint64_t)sub << (bucket + h->unit_magnitude);
}

static uint64_t hdr_percentile(const hdr *h, double pct)
{
    int64_t want = (int64_t)(pct / 100.0 * (double)h->total + 0.5), seen = 0;
    size_t i;
    if (want < 1) want = 1;
    for (i = 0; i < h->counts_len; i++) {
        seen += h->counts[i];
        if (seen >= want) return hdr_value_at(h, i);
    }
    return h->max;
}

/* ---- store every sample, sort at the end ---- */

typedef struct store {
    uint64_t *v;
    size_t n;
} store;

static HOT void store_add(store *s, uint64_t v) { s->v[s->n++] = v; }

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- the measured loops: calls through function pointers the compiler cannot see through ---- */

static void (*volatile fp_floor)(floor_ctx *, uint64_t) = floor_inc;
static void (*volatile fp_hist)(pk_hist *, uint64_t) = pk_hist_record;
static void (*volatile fp_hdr)(hdr *, uint64_t) = hdr_record;
static void (*volatile fp_store)(store *, uint64_t) = store_add;
static void (*volatile fp_prof)(pk_prof *, int, uint64_t) = pk_prof_record;

static HOT double run_floor_call(floor_ctx *f)
{
    void (*fn)(floor_ctx *, uint64_t) = fp_floor;
    uint64_t t0 = cpu_now();
    size_t i;
    int r;
    for (r = 0; r < g_reps; r++)
        for (i = 0; i < g_n; i++) fn(f, g_vals[i]);
    return PER_OP(t0);
}

static HOT double run_floor_inline(floor_ctx *f)
{
    uint64_t t0 = cpu_now(), *c = f->counts, m = f->mask;
    size_t i;
    int r;
    for (r = 0; r < g_reps; r++)
        for (i = 0; i < g_n; i++) c[g_vals[i] & m]++;
    return PER_OP(t0);
}

static HOT double run_hist_call(pk_hist *h)
{
    void (*fn)(pk_hist *, uint64_t) = fp_hist;
    uint64_t t0 = cpu_now();
    size_t i;
    int r;
    for (r = 0; r < g_reps; r++)
        for (i = 0; i < g_n; i++) fn(h, g_vals[i]);
    return PER_OP(t0);
}

static HOT double run_hist_inline(pk_hist *h)
{
    uint64_t t0 = cpu_now();
    size_t i;
    int r;
    for (r = 0; r < g_reps; r++)
        for (i = 0; i < g_n; i++) pk_prof__hist_add(h, g_vals[i], 1); /* pk_hist_record's body, inlined */
    return PER_OP(t0);
}

static HOT double run_hdr_call(hdr *h)
{
    void (*fn)(hdr *, uint64_t) = fp_hdr;
    uint64_t t0 = cpu_now();
    size_t i;
    int r;
    for (r = 0; r < g_reps; r++)
        for (i = 0; i < g_n; i++) fn(h, g_vals[i]);
    return PER_OP(t0);
}

/* store all, then sort and read p50/p99: the cost per sample, sort included */
static HOT double run_store_sort(store *s)
{
    void (*fn)(store *, uint64_t) = fp_store;
    uint64_t t0 = cpu_now();
    size_t i;
    s->n = 0;
    for (i = 0; i < g_n; i++) fn(s, g_vals[i]);
    qsort(s->v, s->n, sizeof *s->v, cmp_u64);
    bench_sink += s->v[s->n / 2] + s->v[s->n * 99 / 100];
    return (double)(cpu_now() - t0) / (double)g_n; /* one pass: the sort is per stream */
}

static HOT double run_prof_call(pk_prof *p, int id, const uint64_t *vals)
{
    void (*fn)(pk_prof *, int, uint64_t) = fp_prof;
    uint64_t t0 = cpu_now();
    size_t i;
    int r;
    for (r = 0; r < g_reps; r++)
        for (i = 0; i < g_n; i++) fn(p, id, vals[i]);
    return PER_OP(t0);
}

/* ---- two threads at once ---- */

typedef struct duo {
    pthread_barrier_t *bar;
    const uint64_t *vals;
    int mode; /* 0 pk_prof_record, 1 atomic add into a shared histogram */
    pk_prof *p;
    int id;
    pk_hist *shared;
    double ns_per_op;
    uint64_t wall0, wall1, cpu0, cpu1;
    int cpu;
} duo;

/* One histogram shared by the threads, updated the way HdrHistogram_c's atomic record does it:
   atomic adds on the bucket and on the total count, min/max by CAS. What a profiler without
   per-thread shards has to do. */
static uint64_t g_shared_total __attribute__((aligned(64)));

static HOT void shared_record(pk_hist *h, uint64_t v)
{
    uint32_t i;
    uint64_t cur;
    if (v > h->max_value) v = h->max_value;
    i = pk_prof__index(h, v);
    __atomic_fetch_add(&h->counts[i], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&g_shared_total, 1, __ATOMIC_RELAXED);
    cur = __atomic_load_n(&h->min, __ATOMIC_RELAXED);
    while (v < cur && !__atomic_compare_exchange_n(&h->min, &cur, v, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    cur = __atomic_load_n(&h->max, __ATOMIC_RELAXED);
    while (v > cur && !__atomic_compare_exchange_n(&h->max, &cur, v, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}
static void (*volatile fp_shared)(pk_hist *, uint64_t) = shared_record;

static HOT double run_shared_call(pk_hist *h, const uint64_t *vals)
{
    void (*fn)(pk_hist *, uint64_t) = fp_shared;
    uint64_t t0 = cpu_now();
    size_t i;
    int r;
    for (r = 0; r < g_reps; r++)
        for (i = 0; i < g_n; i++) fn(h, vals[i]);
    return PER_OP(t0);
}

static void *duo_main(void *v)
{
    duo *d = (duo *)v;
#ifdef __linux__
    if (d->cpu >= 0) { /* one thread per core, so that they really run at once */
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(d->cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
#endif
    pthread_barrier_wait(d->bar);
    d->cpu0 = cpu_now();
    d->wall0 = bench_now_ns();
    d->ns_per_op = d->mode == 0 ? run_prof_call(d->p, d->id, d->vals) : run_shared_call(d->shared, d->vals);
    d->wall1 = bench_now_ns();
    d->cpu1 = cpu_now();
    return NULL;
}

/* Per-thread cost per record with two threads recording at once (the mean of the two). Adds to
   *overlap the fraction of the run during which both ran. */
static double run_two(int mode, pk_prof *p, int id, pk_hist *shared, double *overlap)
{
    pthread_t t[2];
    pthread_barrier_t bar;
    duo d[2];
    int i;
    pthread_barrier_init(&bar, NULL, 2);
    for (i = 0; i < 2; i++) {
        d[i].bar = &bar;
        d[i].vals = i ? g_vals2 : g_vals;
        d[i].mode = mode;
        d[i].p = p;
        d[i].id = id;
        d[i].shared = shared;
        d[i].cpu = g_ncpu >= 2 ? i : -1;
        pthread_create(&t[i], NULL, duo_main, &d[i]);
    }
    for (i = 0; i < 2; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&bar);
    {
        uint64_t a = d[0].wall0 > d[1].wall0 ? d[0].wall0 : d[1].wall0;
        uint64_t b = d[0].wall1 < d[1].wall1 ? d[0].wall1 : d[1].wall1;
        uint64_t a0 = d[0].wall0 < d[1].wall0 ? d[0].wall0 : d[1].wall0;
        uint64_t b1 = d[0].wall1 > d[1].wall1 ? d[0].wall1 : d[1].wall1;
        (void)a;
        (void)b;
        /* parallelism: CPU time of both over the wall span; 2 = they really ran at once, 1 = they
           took turns on one core (then nothing is measured about sharing) */
        *overlap += (double)(d[0].cpu1 - d[0].cpu0 + d[1].cpu1 - d[1].cpu0) / (double)(b1 - a0);
    }
    return (d[0].ns_per_op + d[1].ns_per_op) / 2;
}

/* the one-thread baseline, in a fresh thread like the two-thread runs */
static void *one_main(void *v)
{
    duo *d = (duo *)v;
    d->ns_per_op = d->mode == 0 ? run_prof_call(d->p, d->id, d->vals) : run_shared_call(d->shared, d->vals);
    return NULL;
}

static double run_one(int mode, pk_prof *p, int id, pk_hist *shared)
{
    pthread_t t;
    duo d;
    memset(&d, 0, sizeof d);
    d.vals = g_vals;
    d.mode = mode;
    d.p = p;
    d.id = id;
    d.shared = shared;
    pthread_create(&t, NULL, one_main, &d);
    pthread_join(t, NULL);
    return d.ns_per_op;
}

/* A latency-like value: log-normal around 20 µs (sigma 0.7), and 1% of requests 50x slower. */
static uint64_t latency(uint64_t *s)
{
    double u = ((double)(bench_rand_next(s) >> 11) + 0.5) / 9007199254740992.0;
    double w = (double)(bench_rand_next(s) >> 11) / 9007199254740992.0;
    double z = sqrt(-2.0 * log(u)) * cos(6.283185307179586 * w);
    double x = 20000.0 * exp(0.7 * z);
    if (bench_rand_next(s) % 100 == 0) x *= 50;
    return (uint64_t)x;
}

#define MAXT 15

int main(void)
{
    size_t i, mask = 1;
    uint64_t s = 12345;
    int trials = bench_smoke() ? 1 : bench_quick() ? 5 : 11, t;
    double f_call[MAXT], f_inl[MAXT], h_call[MAXT], h_inl[MAXT], hd[MAXT], st[MAXT], p1[MAXT], p2[MAXT];
    double a1[MAXT], a2[MAXT], q99[MAXT], hq99[MAXT];
    floor_ctx fl;
    pk_hist *h, *shared;
    hdr hh;
    store so;
    pk_prof *p;
    pk_prof_stats pst;
    pk_prof_mem mem;
    int id;
    char buf[256];
    uint64_t expect = 0;
    double overlap = 0;

    g_ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    g_n = bench_scale((size_t)1 << 18, 1);
    g_reps = bench_smoke() ? 1 : bench_quick() ? 4 : 16;
    g_vals = (uint64_t *)malloc(g_n * sizeof *g_vals);
    g_vals2 = (uint64_t *)malloc(g_n * sizeof *g_vals2);
    for (i = 0; i < g_n; i++) {
        g_vals[i] = latency(&s);
        g_vals2[i] = latency(&s);
    }
    if (pk_hist_create(&h, HOUR_NS, 3) || pk_hist_create(&shared, HOUR_NS, 3) || pk_prof_create(&p, NULL) ||
        hdr_init(&hh, HOUR_NS)) {
        fprintf(stderr, "bench_prof: out of memory\n");
        return 1;
    }
    while (mask < h->L.nbuckets) mask <<= 1;
    fl.mask = mask - 1;
    fl.counts = (uint64_t *)calloc(mask, sizeof *fl.counts);
    so.v = (uint64_t *)malloc(g_n * sizeof *so.v);
    id = pk_prof_label(p, "bench");
    /* warm up: every page touched, every shard made */
    run_floor_call(&fl);
    run_hist_call(h);
    run_hdr_call(&hh);
    run_prof_call(p, id, g_vals);
    expect += g_n * (uint64_t)g_reps;

    for (t = 0; t < trials; t++) {
        f_call[t] = run_floor_call(&fl);
        h_call[t] = run_hist_call(h);
        hd[t] = run_hdr_call(&hh);
        f_inl[t] = run_floor_inline(&fl);
        h_inl[t] = run_hist_inline(h);
        st[t] = run_store_sort(&so);
        p1[t] = run_one(0, p, id, NULL);
        p2[t] = run_two(0, p, id, NULL, &overlap);
        a1[t] = run_one(1, p, id, shared);
        a2[t] = run_two(1, p, id, shared, &overlap);
        expect += 3 * g_n * (uint64_t)g_reps;
        {
            uint64_t t0 = cpu_now();
            int k, reps = bench_smoke() ? 1 : 200;
            for (k = 0; k < reps; k++) bench_sink += pk_hist_percentile(h, 99.0 - (k & 1) * 1e-9);
            q99[t] = (double)(cpu_now() - t0) / reps;
            t0 = cpu_now();
            for (k = 0; k < reps; k++) bench_sink += hdr_percentile(&hh, 99.0 - (k & 1) * 1e-9);
            hq99[t] = (double)(cpu_now() - t0) / reps;
        }
    }

    /* sanity: the two histograms agree on p99 within their precision, no record was lost */
    pk_prof_stats_get(p, id, &pst);
    snprintf(buf, sizeof buf, "p99 of the stream: pk %llu ns, HdrHistogram-style %llu ns, exact-by-sort %llu ns",
             (unsigned long long)pk_hist_percentile(h, 99), (unsigned long long)hdr_percentile(&hh, 99),
             (unsigned long long)so.v[(g_n * 99 + 99) / 100 - 1]);
    bench_note("prof", buf);
    snprintf(buf, sizeof buf, "records lost by pk_prof (1 and 2 threads, threads exited): %lld of %llu",
             (long long)(expect - pst.count), (unsigned long long)expect);
    bench_note("prof", buf);
    snprintf(buf, sizeof buf, "two-thread runs: parallelism %.2f (CPU time of both threads over wall time; 2.00 = both ran all the time; the machine has %d CPUs)",
             overlap / (2.0 * trials), g_ncpu);
    bench_note("prof", buf);

    bench_result("prof", "pk_hist_record vs counter increment, called", bench_median(h_call, trials),
                 "floor: counts[v&mask]++ called", bench_median(f_call, trials), "ns/op", "<= 2.2");
    bench_result("prof", "HdrHistogram-style record vs the same floor", bench_median(hd, trials),
                 "floor: counts[v&mask]++ called", bench_median(f_call, trials), "ns/op", "-");
    bench_result("prof", "pk_hist_record vs counter increment, inlined", bench_median(h_inl, trials),
                 "floor: counts[v&mask]++ inline", bench_median(f_inl, trials), "ns/op", "-");
    bench_result("prof", "pk_hist_record vs store all + qsort (per sample)", bench_median(h_call, trials),
                 "store all, qsort at end", bench_median(st, trials), "ns/op", "<= 1");
    bench_result("prof", "pk_prof_record, 1 thread, vs counter increment", bench_median(p1, trials),
                 "floor: counts[v&mask]++ called", bench_median(f_call, trials), "ns/op", "<= 3");
    bench_result("prof", "pk_prof_record, 2 threads same label, per thread", bench_median(p2, trials),
                 "pk_prof_record, 1 thread", bench_median(p1, trials), "ns/op", "<= 1.3");
    bench_result("prof", "shared histogram + atomic add, 2 threads", bench_median(a2, trials),
                 "shared histogram + atomic add, 1 thread", bench_median(a1, trials), "ns/op", "-");
    bench_result("prof", "pk_prof_record 2 threads vs shared atomic 2 threads", bench_median(p2, trials),
                 "shared histogram + atomic add, 2 thr", bench_median(a2, trials), "ns/op", "<= 1");
    bench_result("prof", "p99 query, 3 digits (13k buckets)", bench_median(q99, trials),
                 "HdrHistogram-style (33k buckets)", bench_median(hq99, trials), "ns", "-");
    bench_result("prof", "memory, 1 ns..1 h at 3 digits", (double)pk_hist_memory(h) / 1024.0,
                 "HdrHistogram_c layout", (double)(hh.counts_len * sizeof(int64_t)) / 1024.0, "KiB", "<= 1");
    if (pk_prof_mem_snapshot(&mem) == 0) {
        snprintf(buf, sizeof buf, "process RSS %.1f MiB, peak %.1f MiB (value streams %.1f MiB)",
                 (double)mem.rss_bytes / 1048576.0, (double)mem.peak_rss_bytes / 1048576.0,
                 (double)(3 * g_n * 8) / 1048576.0);
        bench_note("prof", buf);
    }
    if (!bench_smoke()) {
        pk_prof_reset(p);
        run_prof_call(p, id, g_vals);
        pk_prof_report(p, stdout, PK_PROF_TEXT);
    }
    pk_prof_destroy(p);
    pk_hist_destroy(h);
    pk_hist_destroy(shared);
    free(hh.counts);
    free(fl.counts);
    free(so.v);
    free(g_vals);
    free(g_vals2);
    return expect == pst.count ? 0 : 1;
}
