/* pk_prof.h — percentile profiler: a fixed-memory log-bucketed histogram with a bounded relative
   error, and a lock-free-when-recording profiler of named labels.

   QUICK START
   -----------
   In exactly one C or C++ file #define PK_PROF_IMPLEMENTATION before #include "pk_prof.h";
   everywhere else just include it. A complete program:

   ---8<--- example
   #define PK_PROF_IMPLEMENTATION
   #include "pk_prof.h"

   static volatile int sink;
   static void work(void) { int i; for (i = 0; i < 1000; i++) sink = i; }

   int main(void)
   {
       pk_prof *p;
       pk_hist *h;
       pk_prof_stats st;
       int parse, i;
       if (pk_prof_create(&p, NULL) != 0) return 1;   // 1 ns .. 1 hour, 3 digits
       parse = pk_prof_label(p, "parse");             // the same name gives the same id
       for (i = 0; i < 1000; i++) {
           uint64_t t0 = pk_prof_now();
           work();
           pk_prof_record(p, parse, pk_prof_now() - t0);  // from any thread, no lock
       }
       PK_PROF_SCOPE(p, parse) { work(); }            // the same, for a block
       pk_prof_stats_get(p, parse, &st);
       printf("p50 %llu ns, p99 %llu ns\n", (unsigned long long)st.p50, (unsigned long long)st.p99);
       pk_prof_report(p, stdout, PK_PROF_TEXT);       // or _MARKDOWN, _CSV, _JSON
       pk_prof_destroy(p);

       if (pk_hist_create(&h, 1000000, 3) != 0) return 1;  // a histogram alone: one writer
       for (i = 1; i <= 1000; i++) pk_hist_record(h, (uint64_t)i * 1000);
       printf("p99 %llu\n", (unsigned long long)pk_hist_percentile(h, 99.0));  // 990000 +- 0.1%
       pk_hist_destroy(h);
       return st.count == 1001 ? 0 : 1;
   }
   --->8---

   Build: C99 or C++11, POSIX. Link with -pthread; no libm needed. Under strict -std=c99 define
   _POSIX_C_SOURCE=200809L (with -std=gnu99 or the compiler's default nothing is needed).

   OPTIONS (#define before including the implementation)
   -------
   PK_PROF_STATIC          make every function static (private to the including file)
   PK_MALLOC(n), PK_REALLOC(p, n), PK_FREE(p)   allocator; default malloc/realloc/free; all three or none
   PK_ASSERT(x)            default assert(x)

   API
   ---
   Histogram (pk_hist):
     pk_hist_create(&h, max_value, digits)  0; -EINVAL (h NULL, max_value 0, digits outside 1..5);
                                            -ENOMEM
     pk_hist_destroy(h)                     NULL is fine
     pk_hist_record(h, v)                   HOT. O(1), no allocation, no search. v > max_value is
                                            recorded as max_value and counted in `clamped`
     pk_hist_record_n(h, v, n)              n samples of value v (n = 0 does nothing)
     pk_hist_percentile(h, pct)             see ACCURACY; 0 when empty or h NULL
     pk_hist_merge(dst, src)                0; -EINVAL (NULL, or shapes differ: dst unchanged)
     pk_hist_reset(h)                       zero counts, min and max
     pk_hist_stats(h, &st)                  count, min, max, p50..p999, mean, stddev, clamped
     pk_hist_count(h), pk_hist_clamped(h)   samples recorded (clamped ones included) / clamped
     pk_hist_memory(h)                      bytes owned by h
     pk_hist_compare(base, cand, &cmp)      as pk_prof_compare, on two histograms of one shape
   Profiler (pk_prof):
     pk_prof_create(&p, cfg)                cfg NULL or zero = 1 hour in ns, 3 digits. 0; -EINVAL;
                                            -ENOMEM; -EAGAIN (no pthread key left)
     pk_prof_destroy(p)                     frees everything, including per-thread shards
     pk_prof_label(p, name)                 id >= 0; -EINVAL (NULL); -ENOMEM; -ENOSPC (INT_MAX - 1
                                            labels already). Same name, same id
     pk_prof_label_name(p, id)              the name, or NULL for an unknown id
     pk_prof_labels(p)                      number of labels
     pk_prof_now()                          monotonic ns (clock_gettime, vDSO: ~20 ns)
     pk_prof_record(p, id, ns)              HOT. any thread, no lock, no shared write. An unknown
                                            id or NULL p is ignored
     pk_prof_stats_get(p, id, &st)          0; -EINVAL (NULL, unknown id)
     pk_prof_hist_merge(p, id, dst)         adds the label's counts into dst (same shape); 0; -EINVAL
     pk_prof_report(p, out, format)         0; -EINVAL (NULL, unknown format); -EIO (write error)
     pk_prof_compare(p, base, cand, &cmp)   0; -EINVAL (NULL, unknown id); -ENOENT (no samples)
     pk_prof_reset(p)                       zero all counts, keep labels
     pk_prof_mem_snapshot(&m)               current and peak RSS (VmRSS, VmHWM of /proc/self/status:
                                            the kernel's counters, which may lag by a few pages);
                                            -EINVAL (NULL); -ENOSYS off Linux or without /proc
     PK_PROF_SCOPE(p, id) { ... }           times the block; a return/goto out of it skips the
                                            record. It is a for loop: break and continue inside
                                            it apply to the scope itself (break leaves it without
                                            recording, continue ends it and records), never to an
                                            enclosing loop or switch

   REPORT FORMATS
     PK_PROF_TEXT      aligned table (a column per code point), human units (ns, µs, ms, s; UTF-8 "µ")
     PK_PROF_MARKDOWN  GitHub table, same units, '|' in names escaped
     PK_PROF_CSV       header row; times in integer ns (mean and stddev with 1 decimal); RFC 4180
                       quoting of names
     PK_PROF_JSON      {"unit":"ns","max_value":..,"digits":..,"labels":[{"name":..,"count":..,
                       "min":..,"p50":..,"p90":..,"p95":..,"p99":..,"p999":..,"max":..,"mean":..,
                       "stddev":..,"clamped":..},..]}; names escaped, invalid UTF-8 replaced by U+FFFD
     Columns: count, min, p50, p90, p95, p99, p99.9, max, mean, stddev, clamped. Labels in id order.

   COMPARE
     ratio_p50 = cand.p50 / base.p50, ratio_mean = cand.mean / base.mean (1 when both are 0),
     improvement_pct = (1 - ratio_mean) * 100 (50 = the candidate takes half the time; -1e308, not
     -inf, when the baseline mean is 0 and the candidate's is not).
     `significant` comes from the Mann-Whitney U test (two-sided, alpha = 0.01, normal
     approximation with tie correction and continuity correction), computed exactly from the two
     histograms' buckets: samples in one bucket count as ties. Also reported: z and p_value. With
     few samples on one side the approximation overstates significance, so p_value is never below
     2 / C(N, k), the smallest p an exact test could give (N samples in all, k on the smaller
     side): 1 sample against 50 can never be significant (p >= 0.039), 3 against 30 can.
     Assumptions: the samples are independent (true of separate runs; timing noise that drifts
     over a run breaks it: interleave base and candidate runs) and the question is "does one tend to take longer than the other", not "do
     the means differ". With millions of samples tiny differences are significant: look at
     improvement_pct for the size of the effect. Identical data gives z = 0.

   THREAD SAFETY
     pk_hist: one writer; reading or merging it while another thread records into it is not
     allowed (that is what pk_prof is for).
     pk_prof: every function may be called from any thread at once, except destroy (no other call
     may be running or start; threads that recorded must have returned from pk_prof_record, and a
     thread that is exiting must have finished exiting, i.e. join them first).
     pk_prof_record is lock-free: each thread records into its own shard (one histogram per label,
     made on the thread's first record of that label) found through a one-entry thread-local cache
     of the profiler it recorded into last: the fast path compares two stamps, checks the id, makes
     two loads and the histogram's plain increment, with no atomic read-modify-write and no fence.
     A thread that alternates between profilers refills that cache on each switch
     (pthread_getspecific, no lock: a few ns). Readers (stats, report, compare, merge) lock the
     profiler, sum the shards with relaxed atomic loads and read one consistent snapshot per
     label. A thread that exits folds its shard into the profiler, so no record is lost and
     memory follows live threads. Records made while a reader runs land in this snapshot or the
     next, never lost; records racing with pk_prof_reset land before or after it. If a shard
     cannot be allocated, the record goes to the profiler's own histogram under the lock (slow,
     never lost).

   ACCURACY AND MEMORY
     Values are integers 0..max_value. Each histogram has fixed buckets decided at create:
       - values below T (a power of two, 2^9 = 512 for 3 digits) have one bucket each: exact;
       - above, each octave [2^k, 2^(k+1)) is split into Q equal pieces and each piece into n
         equal buckets, n chosen per piece so that the bucket's width is at most about
         2 * 10^-digits of its lowest value (a piecewise-linear approximation of logarithmic
         buckets: about 1.03x the buckets of ideal log buckets, where plain HdrHistogram-style
         log-linear buckets need 1.44x and power-of-two sub-bucket counts more again).
     Record: clz to find the octave, one load from a small table (octave, piece) -> (first
     bucket, n), one multiply, one increment. No branch on the value except the clamp (a cmov).
     Percentile semantics: rank = ceil(pct/100 * count) (at least 1); the result is the value of
     the bucket holding the rank-th smallest sample, where a bucket's value is the integer in it
     that minimises the largest relative error to any value of the bucket (near 2*lo*hi/(lo+hi)),
     then clamped to the recorded min and max. So |result - exact| <= 10^-digits * exact for every
     percentile (checked by the tests against sorted data). pct <= 0 gives min, pct >= 100 gives
     max (clamped: pct outside 0..100 is not an error); NaN gives 0. Clamped samples count as
     max_value. min and max are exact (max is clamped to max_value). mean and stddev are computed
     from the bucket values: the mean's relative error is at most 10^-digits too; the stddev's
     error is absolute, up to about the width of the samples' buckets (samples within one bucket
     give 0). Counts saturate at 2^64 - 1 instead of wrapping. Ranks are ceil(pct / 100 * count),
     computed so that p99.9 of 1000 samples is the 999th, not the 1000th.
     Memory, counts are uint64_t (bytes of one histogram, table included):
       1 ns .. 1 hour (3.6e12), digits 1..5:  2.5 KB, 14 KB, 110 KB, 0.94 MB, 8.3 MB
       (208, 1587, 13077, 116372 and 1034682 buckets). HdrHistogram_c needs about 270 KB at
       3 digits for the same range. pk_hist_memory() tells.
     A pk_prof holds per label one histogram plus one per thread that recorded it, and two
     scratch histograms.

   LIMITS
     digits 1..5; max_value >= 1. At most INT_MAX - 1 labels. One pthread key per pk_prof (glibc has
     1024 keys per process). Timing overhead of pk_prof_now() + pk_prof_record() is about the
     cost of the clock read (vDSO clock_gettime) plus a few ns.
     Built into a shared library (-fPIC), the thread-local cache is reached through
     __tls_get_addr: measured 6.6 ns a record instead of 3.7 ns in an executable. Compiling that
     file with -mtls-dialect=gnu2 (4.9 ns) or, for a library that is linked rather than
     dlopen()ed, -ftls-model=initial-exec (4.3 ns) takes most of it back.

   REVISIONS
     0.1  first version.

   LICENSE at the end of the file (MIT or public domain, your choice). */
#ifndef PK_PROF_H
#define PK_PROF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef PK_PROF_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define PK_PROF_DEF static __attribute__((unused))
#else
#define PK_PROF_DEF static
#endif
#else
#define PK_PROF_DEF extern
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pk_hist pk_hist;

typedef struct pk_prof_stats {
    uint64_t count, min, max, p50, p90, p95, p99, p999;
    double mean, stddev;
    uint64_t clamped; /* samples above max_value, recorded as max_value (included in count) */
} pk_prof_stats;

typedef struct pk_prof_cmp {
    double ratio_p50, ratio_mean, improvement_pct;
    int significant;  /* Mann-Whitney U, two-sided, alpha 0.01: p_value < 0.01 */
    double z;         /* U's z score (positive: candidate tends to be larger) */
    double p_value;   /* two-sided */
} pk_prof_cmp;

PK_PROF_DEF int pk_hist_create(pk_hist **out, uint64_t max_value, int digits);
PK_PROF_DEF void pk_hist_destroy(pk_hist *h);
PK_PROF_DEF void pk_hist_record(pk_hist *h, uint64_t value);
PK_PROF_DEF void pk_hist_record_n(pk_hist *h, uint64_t value, uint64_t count);
PK_PROF_DEF uint64_t pk_hist_percentile(const pk_hist *h, double pct);
PK_PROF_DEF int pk_hist_merge(pk_hist *dst, const pk_hist *src);
PK_PROF_DEF void pk_hist_reset(pk_hist *h);
PK_PROF_DEF void pk_hist_stats(const pk_hist *h, pk_prof_stats *out);
PK_PROF_DEF uint64_t pk_hist_count(const pk_hist *h);
PK_PROF_DEF uint64_t pk_hist_clamped(const pk_hist *h);
PK_PROF_DEF size_t pk_hist_memory(const pk_hist *h);
PK_PROF_DEF int pk_hist_compare(const pk_hist *base, const pk_hist *cand, pk_prof_cmp *out);

typedef struct pk_prof pk_prof;
typedef struct pk_prof_config {
    uint64_t max_value; /* largest value kept apart; 0 = 1 hour in ns */
    int digits;         /* significant decimal digits, 1..5; 0 = 3 */
} pk_prof_config;

enum { PK_PROF_TEXT, PK_PROF_MARKDOWN, PK_PROF_CSV, PK_PROF_JSON };

typedef struct pk_prof_mem {
    uint64_t rss_bytes, peak_rss_bytes;
} pk_prof_mem;

PK_PROF_DEF int pk_prof_create(pk_prof **out, const pk_prof_config *cfg);
PK_PROF_DEF void pk_prof_destroy(pk_prof *p);
PK_PROF_DEF int pk_prof_label(pk_prof *p, const char *name);
PK_PROF_DEF const char *pk_prof_label_name(pk_prof *p, int id);
PK_PROF_DEF int pk_prof_labels(pk_prof *p);
PK_PROF_DEF uint64_t pk_prof_now(void);
PK_PROF_DEF void pk_prof_record(pk_prof *p, int id, uint64_t ns);
PK_PROF_DEF int pk_prof_stats_get(pk_prof *p, int id, pk_prof_stats *out);
PK_PROF_DEF int pk_prof_hist_merge(pk_prof *p, int id, pk_hist *dst);
PK_PROF_DEF int pk_prof_report(pk_prof *p, FILE *out, int format);
PK_PROF_DEF int pk_prof_compare(pk_prof *p, int base_id, int cand_id, pk_prof_cmp *out);
PK_PROF_DEF void pk_prof_reset(pk_prof *p);
PK_PROF_DEF int pk_prof_mem_snapshot(pk_prof_mem *out);

/* Times the statement or block that follows; records on normal exit from it. */
#define PK_PROF__CAT2(a, b) a##b
#define PK_PROF__CAT(a, b) PK_PROF__CAT2(a, b)
#define PK_PROF_SCOPE(p, id)                                                                      \
    for (uint64_t PK_PROF__CAT(pk_prof__t0_, __LINE__) = pk_prof_now(),                           \
                  PK_PROF__CAT(pk_prof__once_, __LINE__) = 1;                                     \
         PK_PROF__CAT(pk_prof__once_, __LINE__);                                                  \
         PK_PROF__CAT(pk_prof__once_, __LINE__) = 0,                                              \
                  pk_prof_record((p), (id), pk_prof_now() - PK_PROF__CAT(pk_prof__t0_, __LINE__)))

#ifdef __cplusplus
}
#endif
#endif /* PK_PROF_H */

/* ============================================================================================== */
#if defined(PK_PROF_IMPLEMENTATION) && !defined(PK_PROF_IMPLEMENTATION_DONE)
#define PK_PROF_IMPLEMENTATION_DONE

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#if defined(__GNUC__) || defined(__clang__)
#define PK_PROF__PRIV static __attribute__((unused))
#define PK_PROF__LIKELY(x) __builtin_expect(!!(x), 1)
#else
#define PK_PROF__PRIV static
#define PK_PROF__LIKELY(x) (x)
#endif

/* Every counter may be read by another thread (pk_prof readers) while its one writer updates it:
   relaxed atomic loads and stores (plain moves on x86 and ARM, no lock prefix) keep that free of
   data races without costing the writer anything. Only the owner ever writes a counter, so a
   load-add-store loses nothing. */
#define PK_PROF__LD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define PK_PROF__ST(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* ---- data structures ---------------------------------------------------------------------------

   Bucket layout (shared by every histogram of one shape, i.e. one (max_value, digits)):
     values v < T          bucket v (exact)
     v in octave k >= K0   bucket tab[(k << q) + piece].base + ((g * n) >> 32), where piece is the
                           top q bits of v's fraction within the octave, g the next 32 bits, and
                           n = tab[..].n the bucket count of that piece
     v > max_value         bucket `ovf` (the last), valued max_value
   A bucket [lo, hi] of piece p in octave k has hi - lo < 2^k / (Q n) + 2^(k-q-32); n is the least
   count with (1/n + 2^-32) / (2(Q+p)) <= eps - 2^-(k+1), eps = 10^-digits, which bounds the
   relative error of the bucket's value (see pk_prof__bucket_value) by eps; n is capped at the
   piece's integer count 2^(k-q) (then every bucket holds one integer). q is chosen at create to
   minimise the bucket count. */
typedef struct pk_prof__layout {
    uint64_t max_value;
    uint64_t T;      /* linear region [0, T) */
    unsigned q;      /* log2 of pieces per octave */
    unsigned K0;     /* first log-bucketed octave: T = 2^K0 */
    unsigned Kmax;   /* octave of max_value (>= K0 for table sizing) */
    int digits;
    size_t nbuckets; /* including the overflow bucket, which is the last */
    size_t ntab;     /* (Kmax + 1) << q entries */
} pk_prof__layout;

/* A table entry: low 32 bits = first bucket index (bucket counts stay far below 2^32), high 32 bits
   = n, the bucket count of the piece (0 for pieces entirely above max_value). */

struct pk_hist {
    /* read by every record, written only at create */
    uint64_t max_value, lowmask; /* lowmask = T - 1 */
    const uint64_t *tab;
    unsigned q;
    uint32_t ovf;
    uint64_t *counts; /* nbuckets */
    /* written by every record: min and max of the raw values (clamped when read) */
    uint64_t min, max;
    /* cold */
    pk_prof__layout L;
    void *raw;        /* what PK_MALLOC returned (the struct is 64-byte aligned inside it) */
    size_t bytes;     /* owned bytes, the shared table included only when owned */
};

/* ---- small numeric helpers (no libm) ---------------------------------------------------------- */

PK_PROF__PRIV unsigned pk_prof__clz64(uint64_t x) /* x != 0 */
{
#if defined(__GNUC__) || defined(__clang__)
    return (unsigned)__builtin_clzll(x);
#else
    unsigned n = 0;
    while (!(x & 0x8000000000000000ull)) { x <<= 1; n++; }
    return n;
#endif
}

PK_PROF__PRIV double pk_prof__sqrt(double x)
{
    double y;
    uint64_t b;
    int i;
    if (!(x > 0)) return 0;
    memcpy(&b, &x, sizeof b);
    b = 0x1ff7a3bea91d9b1bull + (b >> 1); /* halve the exponent: a guess within a few percent */
    memcpy(&y, &b, sizeof y);
    for (i = 0; i < 6; i++) y = 0.5 * (y + x / y);
    return y;
}

PK_PROF__PRIV double pk_prof__exp(double x)
{
    double r, s, t, y;
    int64_t n;
    uint64_t b;
    int i;
    if (x < -745) return 0;
    if (x > 709) return 1e308;
    n = (int64_t)(x * 1.4426950408889634 + (x >= 0 ? 0.5 : -0.5));
    r = x - (double)n * 0.6931471805599453;
    s = 1, t = 1;
    for (i = 1; i < 18; i++) { t *= r / i; s += t; }
    y = s;
    while (n < -1000) { y *= 9.332636185032189e-302; n += 1000; } /* 2^-1000 */
    b = (uint64_t)(n + 1023) << 52;
    memcpy(&t, &b, sizeof t);
    return y * t;
}

/* erfc for x >= 0 (Numerical Recipes' erfcc, fractional error < 1.2e-7). */
PK_PROF__PRIV double pk_prof__erfc(double x)
{
    double t = 1.0 / (1.0 + 0.5 * x);
    return t * pk_prof__exp(-x * x - 1.26551223 +
                            t * (1.00002368 +
                                 t * (0.37409196 +
                                      t * (0.09678418 +
                                           t * (-0.18628806 +
                                                t * (0.27886807 +
                                                     t * (-1.13520398 +
                                                          t * (1.48851587 +
                                                               t * (-0.82215223 + t * 0.17087277)))))))));
}

/* ---- layout ------------------------------------------------------------------------------------ */

/* n for piece p of octave k (see the layout comment); 0 if no count meets the bound. */
PK_PROF__PRIV uint64_t pk_prof__piece_n(unsigned k, unsigned q, unsigned p, int digits)
{
    double eps = 1, r;
    uint64_t n, cap;
    int i;
    for (i = 0; i < digits; i++) eps /= 10;
    cap = k >= q ? (1ull << (k - q)) : 1;
    r = 2.0 * (double)((1u << q) + p) * (eps - 0.5 / (double)(1ull << k)) - 1.0 / 4294967296.0;
    if (r <= 0) return cap <= 0xffffffffull ? cap : 0;
    r = 1.0 / r;
    r = r * (1 + 1e-9) + 1e-9; /* stay on the safe side of rounding */
    if (r >= 4294967295.0) return cap <= 0xffffffffull ? cap : 0;
    n = (uint64_t)r;
    if ((double)n < r) n++;
    if (n < 1) n = 1;
    return n < cap ? n : cap;
}

/* Fills L for (max_value, digits) with piece count 2^q, and the table if tab != NULL.
   Returns the bucket count (overflow included), or 0 if q cannot be used. */
/* Table slot of piece p of octave k >= K0. The index reads the top q+1 bits of the value
   normalised to its octave *with* its leading bit, p' = Q + p, at slot (k << q) + p'. The linear
   region is seen as octave K0-1 holding [0, 2^K0) (values below 2^(K0-1) have no leading bit
   there), so its p' covers all of [0, 2Q): slots [(K0-1)Q, (K0+1)Q), just below octave K0's.
   One path indexes every value: HdrHistogram's trick for its first bucket. */
#define PK_PROF__SLOT(k, q, p) ((((size_t)(k) + 1) << (q)) + (size_t)(p))

PK_PROF__PRIV size_t pk_prof__layout_make(pk_prof__layout *L, uint64_t max_value, int digits, unsigned q,
                                          uint64_t *tab)
{
    unsigned k, K0, Kmax, p, Q = 1u << q;
    uint64_t base;
    /* K0: the first octave where some piece's buckets are wider than one integer (K0 > q: at
       k = q every piece holds one integer) */
    for (K0 = q; K0 < 63; K0++) {
        for (p = 0; p < Q; p++)
            if (pk_prof__piece_n(K0, q, p, digits) < (1ull << (K0 - q))) break;
        if (p < Q) break;
    }
    Kmax = 63 - pk_prof__clz64(max_value | 1);
    memset(L, 0, sizeof *L);
    L->max_value = max_value;
    L->digits = digits;
    L->q = q;
    L->K0 = K0;
    L->Kmax = Kmax > K0 ? Kmax : K0;
    L->ntab = (size_t)(L->Kmax + 2) << q;
    L->T = 1ull << K0;
    if (tab) {
        /* the linear region: octave K0-1 of the index, 2Q pieces of 2^(K0-1-q) unit buckets */
        uint64_t w = 1ull << (K0 - 1 - q);
        memset(tab, 0, L->ntab * sizeof *tab);
        for (p = 0; p < 2 * Q; p++) tab[((size_t)(K0 - 1) << q) + p] = ((uint64_t)p * w) | (w << 32);
    }
    if (max_value < L->T) { /* all linear */
        L->nbuckets = (size_t)max_value + 2;
        return L->nbuckets;
    }
    base = L->T;
    for (k = K0; k <= Kmax; k++) {
        for (p = 0; p < Q; p++) {
            uint64_t n = pk_prof__piece_n(k, q, p, digits), lo = (1ull << k) + ((uint64_t)p << (k - q)), cnt;
            if (n == 0) return 0;
            if (lo > max_value) break;
            cnt = n;
            if (k == Kmax) {
                /* only buckets up to the one holding max_value */
                uint64_t f = (max_value << (63 - k)) << 1;
                uint64_t g = (f << q) >> 32;
                uint64_t pm = q ? f >> (64 - q) : 0;
                if (pm == p) cnt = ((g * n) >> 32) + 1;
            }
            if (tab) tab[PK_PROF__SLOT(k, q, p)] = base | (n << 32);
            base += cnt;
            if (base > 0xfffffff0ull) return 0;
        }
    }
    L->nbuckets = (size_t)base + 1;
    return L->nbuckets;
}

/* The layout with the fewest buckets over q = 0..5. */
PK_PROF__PRIV int pk_prof__layout_best(pk_prof__layout *L, uint64_t max_value, int digits)
{
    unsigned q, bq = 99;
    size_t best = 0, n;
    pk_prof__layout t;
    for (q = 0; q <= 5; q++) {
        n = pk_prof__layout_make(&t, max_value, digits, q, NULL);
        if (n && (!best || n + ((size_t)(t.Kmax + 1) << q) / 4 < best)) {
            best = n + ((size_t)(t.Kmax + 1) << q) / 4; /* the table costs too (8 bytes a piece, but
                                                          only the octaves in use are hot) */
            bq = q;
        }
    }
    if (bq == 99) return -EINVAL;
    pk_prof__layout_make(L, max_value, digits, bq, NULL);
    return 0;
}

/* The bucket index of v <= max_value: the hot path. No branch, one path for every value (see
   PK_PROF__SLOT): clz, one table load, one multiply. */
static inline uint32_t pk_prof__index(const pk_hist *h, uint64_t v)
{
    unsigned k = 63 - pk_prof__clz64(v | h->lowmask); /* octave; K0-1 for the linear region */
    uint64_t u = v << (63 - k);                         /* normalised, leading bit at 63 (or 0) */
    unsigned q = h->q;
    uint64_t e = h->tab[((size_t)k << q) + (size_t)(u >> (63 - q))];
    uint64_t g = (u << q << 1) >> 32; /* the next 32 bits: position within the piece */
    return (uint32_t)e + (uint32_t)((g * (e >> 32)) >> 32);
}

/* Lowest value of bucket j of table entry e (octave k, piece p). j may be n (the next piece's lo). */
PK_PROF__PRIV uint64_t pk_prof__sub_lo(unsigned k, unsigned q, unsigned p, uint64_t n, uint64_t j)
{
    uint64_t gq, off, w = k - q; /* bits of offset within the piece */
    if (j >= n) return (1ull << k) + ((uint64_t)(p + 1) << w);
    gq = ((j << 32) + n - 1) / n; /* least g with (g * n) >> 32 >= j */
    if (w <= 32) {
        unsigned s = (unsigned)(32 - w);
        off = (gq + (1ull << s) - 1) >> s;
    } else {
        off = gq << (w - 32);
    }
    return (1ull << k) + ((uint64_t)p << w) + off;
}

/* The value reported for a bucket [lo, hi]: the integer minimising the largest relative error to
   any value in it (near the harmonic midpoint 2 lo hi / (lo + hi)). */
PK_PROF__PRIV uint64_t pk_prof__bucket_value(uint64_t lo, uint64_t hi)
{
    double r, e1, e2;
    uint64_t a, b;
    if (hi <= lo + 1) return lo; /* {lo, lo+1}: lo is off by 1/(lo+1) at most, lo+1 by 1/lo */
    r = 2.0 * (double)lo * (double)hi / ((double)lo + (double)hi);
    a = (uint64_t)r;
    if (a < lo) a = lo;
    if (a > hi) a = hi;
    b = a < hi ? a + 1 : a;
    e1 = (double)(a - lo) / (double)lo;
    if ((double)(hi - a) / (double)hi > e1) e1 = (double)(hi - a) / (double)hi;
    e2 = (double)(b - lo) / (double)lo;
    if ((double)(hi - b) / (double)hi > e2) e2 = (double)(hi - b) / (double)hi;
    return e2 < e1 ? b : a;
}

/* Walks the non-empty buckets in value order: calls fn(ctx, lo, hi, count, index). The overflow
   bucket comes last as [max_value, max_value]. counts may be any array of the layout's shape. */
typedef int (*pk_prof__walk_fn)(void *ctx, uint64_t lo, uint64_t hi, uint64_t count, size_t index);

PK_PROF__PRIV void pk_prof__walk(const pk_hist *h, const uint64_t *counts, pk_prof__walk_fn fn, void *ctx)
{
    const pk_prof__layout *L = &h->L;
    uint64_t i, c;
    unsigned k, p, Q = 1u << L->q;
    size_t idx;
    for (i = 0; i < L->T && i <= L->max_value; i++) {
        c = PK_PROF__LD(counts[i]);
        if (c && fn(ctx, i, i, c, (size_t)i)) return;
    }
    if (L->T <= L->max_value) {
        for (k = L->K0; k <= L->Kmax; k++) {
            for (p = 0; p < Q; p++) {
                uint64_t e = h->tab[PK_PROF__SLOT(k, L->q, p)], n = e >> 32, base = (uint32_t)e, j, next, nlo = 0;
                int known;
                uint64_t lo0 = (1ull << k) + ((uint64_t)p << (k - L->q));
                if (n == 0 || lo0 > L->max_value) continue;
                /* buckets of this piece: up to the next entry's base (or the overflow bucket) */
                next = (uint64_t)L->nbuckets - 1;
                if (p + 1 < Q) {
                    uint64_t e2 = h->tab[PK_PROF__SLOT(k, L->q, p + 1)];
                    if (e2 >> 32) next = (uint32_t)e2;
                } else if (k + 1 <= L->Kmax) {
                    uint64_t e2 = h->tab[PK_PROF__SLOT(k + 1, L->q, 0)];
                    if (e2 >> 32) next = (uint32_t)e2;
                }
                for (j = 0, known = 0; base + j < next; j++) {
                    c = PK_PROF__LD(counts[base + j]);
                    if (c) {
                        uint64_t lo = known ? nlo : pk_prof__sub_lo(k, L->q, p, n, j), hi;
                        nlo = pk_prof__sub_lo(k, L->q, p, n, j + 1);
                        known = 1;
                        hi = nlo - 1 > L->max_value ? L->max_value : nlo - 1;
                        if (fn(ctx, lo, hi, c, (size_t)(base + j))) return;
                    } else {
                        known = 0;
                    }
                }
            }
        }
    }
    idx = L->nbuckets - 1;
    c = PK_PROF__LD(counts[idx]);
    if (c) fn(ctx, L->max_value, L->max_value, c, idx);
}

/* Bounds [lo, hi] of bucket idx: a binary search over the table (pieces are in bucket order). */
PK_PROF__PRIV void pk_prof__bounds(const pk_hist *h, size_t idx, uint64_t *lo, uint64_t *hi)
{
    const pk_prof__layout *L = &h->L;
    size_t a, b, m;
    uint64_t e, n;
    unsigned k, p;
    if (idx + 1 >= L->nbuckets) { /* the overflow bucket */
        *lo = *hi = L->max_value;
        return;
    }
    if (idx < L->T) {
        *lo = *hi = idx;
        return;
    }
    /* search the pieces j = 0.. of octaves K0..Kmax in order (slot of j: octave K0 + j/Q, piece j%Q) */
    a = 0;
    b = ((size_t)(L->Kmax - L->K0) + 1) << L->q;
#define PK_PROF__JSLOT(j) PK_PROF__SLOT(L->K0 + (unsigned)((j) >> L->q), L->q, (j) & (((size_t)1 << L->q) - 1))
    while (b > a + 1 && (h->tab[PK_PROF__JSLOT(b - 1)] >> 32) == 0) b--; /* pieces above max_value */
    while (b - a > 1) { /* the last piece with base <= idx */
        m = a + (b - a) / 2;
        if ((uint32_t)h->tab[PK_PROF__JSLOT(m)] <= idx) a = m;
        else b = m;
    }
    e = h->tab[PK_PROF__JSLOT(a)];
    n = e >> 32;
    k = L->K0 + (unsigned)(a >> L->q);
    p = (unsigned)(a & (((size_t)1 << L->q) - 1));
#undef PK_PROF__JSLOT
    *lo = pk_prof__sub_lo(k, L->q, p, n, idx - (uint32_t)e);
    *hi = pk_prof__sub_lo(k, L->q, p, n, idx - (uint32_t)e + 1) - 1;
    if (*hi > L->max_value) *hi = L->max_value;
}

/* The value at rank (1-based) of counts, clamped to [mn, mx]: scans from the nearer end. */
PK_PROF__PRIV uint64_t pk_prof__at_rank(const pk_hist *h, const uint64_t *counts, uint64_t total, uint64_t rank,
                                        uint64_t mn, uint64_t mx)
{
    size_t i, nb = h->L.nbuckets;
    uint64_t cum = 0, lo, hi, v;
    if (rank <= 1) return mn;
    if (rank >= total) return mx;
    /* plain loads, as in pk_prof__sum; runs of empty buckets are skipped 4 at a time */
    if (rank > total / 2) {
        uint64_t above = total - rank; /* samples above the one wanted */
        for (i = nb; i >= 4 && (counts[i - 1] | counts[i - 2] | counts[i - 3] | counts[i - 4]) == 0;) i -= 4;
        while (i-- > 0) {
            cum = counts[i] > UINT64_MAX - cum ? UINT64_MAX : cum + counts[i]; /* counts saturate */
            if (cum > above) break;
        }
    } else {
        for (i = 0; i + 4 <= nb && (counts[i] | counts[i + 1] | counts[i + 2] | counts[i + 3]) == 0;) i += 4;
        for (; i < nb; i++) {
            cum = counts[i] > UINT64_MAX - cum ? UINT64_MAX : cum + counts[i];
            if (cum >= rank) break;
        }
    }
    pk_prof__bounds(h, i, &lo, &hi);
    v = pk_prof__bucket_value(lo, hi);
    return v < mn ? mn : (v > mx ? mx : v);
}

/* ---- pk_hist ----------------------------------------------------------------------------------- */

/* One allocation: [pad][struct pk_hist, 64-aligned][counts][table if own_tab]. Sizes rounded to
   64 bytes so that no two histograms (of two threads) share a cache line. */
PK_PROF__PRIV pk_hist *pk_prof__hist_new(const pk_prof__layout *L, const uint64_t *shared_tab)
{
    size_t hdr = (sizeof(pk_hist) + 63) & ~(size_t)63;
    size_t cbytes = (L->nbuckets * sizeof(uint64_t) + 63) & ~(size_t)63;
    size_t tbytes = shared_tab ? 0 : L->ntab * sizeof(uint64_t);
    size_t total = 64 + hdr + cbytes + tbytes;
    unsigned char *raw = (unsigned char *)PK_MALLOC(total), *a;
    pk_hist *h;
    if (!raw) return NULL;
    a = raw + ((64 - ((uintptr_t)raw & 63)) & 63);
    h = (pk_hist *)(void *)a;
    memset(h, 0, sizeof *h);
    h->L = *L;
    h->raw = raw;
    h->bytes = total;
    h->max_value = L->max_value;
    h->lowmask = L->T - 1;
    h->q = L->q;
    h->ovf = (uint32_t)(L->nbuckets - 1);
    h->counts = (uint64_t *)(void *)(a + hdr);
    memset(h->counts, 0, L->nbuckets * sizeof(uint64_t));
    if (shared_tab) {
        h->tab = shared_tab;
    } else {
        uint64_t *t = (uint64_t *)(void *)(a + hdr + cbytes);
        pk_prof__layout tmp;
        pk_prof__layout_make(&tmp, L->max_value, L->digits, L->q, t);
        h->tab = t;
    }
    h->min = UINT64_MAX;
    h->max = 0;
    return h;
}

PK_PROF_DEF int pk_hist_create(pk_hist **out, uint64_t max_value, int digits)
{
    pk_prof__layout L;
    pk_hist *h;
    if (!out) return -EINVAL;
    *out = NULL;
    if (max_value == 0 || digits < 1 || digits > 5) return -EINVAL;
    if (pk_prof__layout_best(&L, max_value, digits) != 0) return -EINVAL;
    h = pk_prof__hist_new(&L, NULL);
    if (!h) return -ENOMEM;
    *out = h;
    return 0;
}

PK_PROF_DEF void pk_hist_destroy(pk_hist *h)
{
    if (h) PK_FREE(h->raw);
}

/* Values above max_value: counted in the overflow bucket, recorded as max_value. Kept out of line. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline, cold))
#endif
static void pk_prof__hist_add_over(pk_hist *h, uint64_t v, uint64_t n)
{
    uint64_t c = PK_PROF__LD(h->counts[h->ovf]) + n;
    if (v > PK_PROF__LD(h->max)) PK_PROF__ST(h->max, v);
    if (v < PK_PROF__LD(h->min)) PK_PROF__ST(h->min, v);
    __atomic_store_n(&h->counts[h->ovf], c < n ? UINT64_MAX : c, __ATOMIC_RELEASE);
}

/* HOT: single writer. `sat`, a constant at every call: the bucket's count saturates at 2^64 - 1
   instead of wrapping to 0 (a pk_hist that pk_hist_record_n filled). pk_prof's own histograms
   skip that: they only ever gain one count per pk_prof_record call (folds saturate), so 2^64 is
   out of reach, and the check cost 0.2-0.6 ns of pk_prof_record's ~3.6 (bench_prof, 3 paired runs). */
static inline void pk_prof__hist_put(pk_hist *h, uint64_t v, uint64_t n, int sat)
{
    uint32_t i;
    if (!PK_PROF__LIKELY(v <= h->max_value)) {
        pk_prof__hist_add_over(h, v, n);
        return;
    }
    i = pk_prof__index(h, v);
    /* min and max are stored only when they change (rarely, after warm-up): an unconditional store
       would chain every record to the previous one through store-to-load forwarding. They are
       stored before the count, which is released: a reader that sees the count (acquire) sees
       them too, so no snapshot holds a sample outside its min..max. (Plain stores on x86.) */
    if (v < PK_PROF__LD(h->min)) PK_PROF__ST(h->min, v);
    if (v > PK_PROF__LD(h->max)) PK_PROF__ST(h->max, v);
    {
        /* the fix-up is a branch, not a select: it stays off the load-add-store chain that
           records into one bucket form (a select on it cost pk_hist_record ~0.15 ns) */
        uint64_t c = PK_PROF__LD(h->counts[i]) + n;
        __atomic_store_n(&h->counts[i], c, __ATOMIC_RELEASE);
        if (sat && !PK_PROF__LIKELY(c >= n)) __atomic_store_n(&h->counts[i], UINT64_MAX, __ATOMIC_RELEASE);
    }
}
static inline void pk_prof__hist_add(pk_hist *h, uint64_t v, uint64_t n) { pk_prof__hist_put(h, v, n, 1); }
static inline void pk_prof__hist_inc(pk_hist *h, uint64_t v) { pk_prof__hist_put(h, v, 1, 0); }

PK_PROF_DEF void pk_hist_record(pk_hist *h, uint64_t value)
{
    if (PK_PROF__LIKELY(h != NULL)) pk_prof__hist_add(h, value, 1);
}

PK_PROF_DEF void pk_hist_record_n(pk_hist *h, uint64_t value, uint64_t count)
{
    /* the bucket's count saturates instead of wrapping (sums saturate too): O(1), no sum here */
    if (h && count) pk_prof__hist_add(h, value, count);
}

/* Sum of counts. Plain loads (they vectorise): only used on a pk_hist that no thread records
   into meanwhile (pk_hist's contract; pk_prof sums shards into a private scratch first). */
PK_PROF__PRIV uint64_t pk_prof__sum(const uint64_t *c, size_t n)
{
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, any = 0, t;
    size_t i;
    for (i = 0; i + 4 <= n; i += 4) {
        s0 += c[i], s1 += c[i + 1], s2 += c[i + 2], s3 += c[i + 3];
        any |= c[i] | c[i + 1] | c[i + 2] | c[i + 3];
    }
    for (; i < n; i++) s0 += c[i], any |= c[i];
    /* every count below 2^43 and fewer than 2^21 buckets (digits 5 has about 2^20): no wrap */
    if (any >> 43 == 0 && n < (size_t)1 << 21) return s0 + s1 + s2 + s3;
    for (t = 0, i = 0; i < n; i++) t = c[i] > UINT64_MAX - t ? UINT64_MAX : t + c[i]; /* saturate */
    return t;
}

PK_PROF_DEF uint64_t pk_hist_count(const pk_hist *h)
{
    return h ? pk_prof__sum(h->counts, h->L.nbuckets) : 0;
}

PK_PROF_DEF uint64_t pk_hist_clamped(const pk_hist *h)
{
    return h ? PK_PROF__LD(h->counts[h->ovf]) : 0;
}

PK_PROF_DEF size_t pk_hist_memory(const pk_hist *h)
{
    return h ? h->bytes : 0;
}

PK_PROF__PRIV int pk_prof__same_shape(const pk_hist *a, const pk_hist *b)
{
    return a->L.max_value == b->L.max_value && a->L.digits == b->L.digits && a->L.nbuckets == b->L.nbuckets &&
           a->L.q == b->L.q;
}

/* dst += src, counts saturating. Reads src's counts with acquire loads (it may be another
   thread's shard: a count seen means its sample's min/max are seen, see pk_prof__hist_add). */
PK_PROF__PRIV void pk_prof__hist_add_all(pk_hist *dst, const pk_hist *src)
{
    size_t i;
    uint64_t a, b;
    for (i = 0; i < dst->L.nbuckets; i++) {
        uint64_t c = __atomic_load_n(&src->counts[i], __ATOMIC_ACQUIRE);
        if (c) {
            uint64_t d = PK_PROF__LD(dst->counts[i]);
            PK_PROF__ST(dst->counts[i], c > UINT64_MAX - d ? UINT64_MAX : d + c);
        }
    }
    a = PK_PROF__LD(src->min);
    b = PK_PROF__LD(dst->min);
    PK_PROF__ST(dst->min, a < b ? a : b);
    a = PK_PROF__LD(src->max);
    b = PK_PROF__LD(dst->max);
    PK_PROF__ST(dst->max, a > b ? a : b);
}

PK_PROF_DEF int pk_hist_merge(pk_hist *dst, const pk_hist *src)
{
    if (!dst || !src || !pk_prof__same_shape(dst, src)) return -EINVAL;
    if (dst != src) {
        pk_prof__hist_add_all(dst, src);
    } else { /* merging into itself doubles it */
        size_t i;
        for (i = 0; i < dst->L.nbuckets; i++) {
            uint64_t d = PK_PROF__LD(dst->counts[i]);
            PK_PROF__ST(dst->counts[i], d > UINT64_MAX / 2 ? UINT64_MAX : d * 2);
        }
    }
    return 0;
}

PK_PROF__PRIV void pk_prof__hist_zero(pk_hist *h)
{
    size_t i;
    for (i = 0; i < h->L.nbuckets; i++) PK_PROF__ST(h->counts[i], 0);
    PK_PROF__ST(h->min, UINT64_MAX);
    PK_PROF__ST(h->max, 0);
}

PK_PROF_DEF void pk_hist_reset(pk_hist *h)
{
    if (h) pk_prof__hist_zero(h);
}

/* One walk computes everything of pk_prof_stats. */
typedef struct pk_prof__stats_ctx {
    uint64_t rank[5], cum, total, min, max;
    uint64_t val[5];
    int next;
    double sum, sum2, ref; /* moments around ref (the min) to keep stddev accurate */
} pk_prof__stats_ctx;

PK_PROF__PRIV int pk_prof__stats_cb(void *vctx, uint64_t lo, uint64_t hi, uint64_t count, size_t index)
{
    pk_prof__stats_ctx *c = (pk_prof__stats_ctx *)vctx;
    uint64_t v = pk_prof__bucket_value(lo, hi);
    double d;
    (void)index;
    if (v < c->min) v = c->min;
    if (v > c->max) v = c->max;
    d = (double)v - c->ref;
    c->sum += d * (double)count;
    c->sum2 += d * d * (double)count;
    c->cum = count > UINT64_MAX - c->cum ? UINT64_MAX : c->cum + count;
    while (c->next < 5 && c->cum >= c->rank[c->next]) {
        uint64_t r = c->rank[c->next];
        c->val[c->next] = r <= 1 ? c->min : (r >= c->total ? c->max : v);
        c->next++;
    }
    return 0;
}

/* ceil(pct / 100 * total), where a product that lands a rounding error above an integer counts as
   that integer (99.9 / 100 * 1000 is 999.0000000000001 in doubles: rank 999, not 1000). */
PK_PROF__PRIV uint64_t pk_prof__rank(double pct, uint64_t total)
{
    double r = pct * (double)total / 100.0;
    uint64_t k;
    if (r >= (double)total) return total;
    k = (uint64_t)r;
    if ((double)k < r && r - (double)k > r * 1e-12) k++;
    return k < 1 ? 1 : k;
}

PK_PROF__PRIV void pk_prof__hist_stats(const pk_hist *h, const uint64_t *counts, pk_prof_stats *out)
{
    static const double pcts[5] = {50, 90, 95, 99, 99.9};
    pk_prof__stats_ctx c;
    size_t i;
    double mean, var;
    memset(out, 0, sizeof *out);
    memset(&c, 0, sizeof c);
    c.total = pk_prof__sum(counts, h->L.nbuckets);
    if (c.total == 0) return;
    c.min = PK_PROF__LD(h->min);
    c.max = PK_PROF__LD(h->max);
    if (c.max > h->L.max_value) c.max = h->L.max_value;
    if (c.min > c.max) c.min = c.max;
    c.ref = (double)c.min;
    for (i = 0; i < 5; i++) c.rank[i] = pk_prof__rank(pcts[i], c.total);
    pk_prof__walk(h, counts, pk_prof__stats_cb, &c);
    out->count = c.total;
    out->min = c.min;
    out->max = c.max;
    out->p50 = c.val[0];
    out->p90 = c.val[1];
    out->p95 = c.val[2];
    out->p99 = c.val[3];
    out->p999 = c.val[4];
    mean = c.sum / (double)c.total;
    var = c.sum2 / (double)c.total - mean * mean;
    out->mean = c.ref + mean;
    out->stddev = c.total > 1 ? pk_prof__sqrt(var > 0 ? var * (double)c.total / (double)(c.total - 1) : 0) : 0;
    out->clamped = PK_PROF__LD(counts[h->L.nbuckets - 1]);
}

PK_PROF_DEF void pk_hist_stats(const pk_hist *h, pk_prof_stats *out)
{
    if (!out) return;
    if (!h) {
        memset(out, 0, sizeof *out);
        return;
    }
    pk_prof__hist_stats(h, h->counts, out);
}

PK_PROF_DEF uint64_t pk_hist_percentile(const pk_hist *h, double pct)
{
    uint64_t total, mn, mx;
    if (!h || pct != pct) return 0;
    total = pk_hist_count(h);
    if (total == 0) return 0;
    mn = PK_PROF__LD(h->min);
    mx = PK_PROF__LD(h->max);
    if (mx > h->L.max_value) mx = h->L.max_value;
    if (mn > mx) mn = mx;
    if (pct <= 0) return mn;
    if (pct >= 100) return mx;
    return pk_prof__at_rank(h, h->counts, total, pk_prof__rank(pct, total), mn, mx);
}

/* Mann-Whitney U over two count arrays of one layout: samples in one bucket are ties. */
PK_PROF__PRIV void pk_prof__mwu(const pk_hist *shape, const uint64_t *a, const uint64_t *b, double *z_out)
{
    size_t i, nb = shape->L.nbuckets;
    double n1 = 0, n2 = 0, below_a = 0, u = 0, spread = 0, seen = 0, N, mu, var, z;
    for (i = 0; i < nb; i++) {
        n1 += (double)PK_PROF__LD(a[i]);
        n2 += (double)PK_PROF__LD(b[i]);
    }
    /* U counts pairs (x from a, y from b) with y > x, plus half the ties: how often the candidate
       (b) is the larger. */
    for (i = 0; i < nb; i++) {
        double ca = (double)PK_PROF__LD(a[i]), cb = (double)PK_PROF__LD(b[i]), t = ca + cb;
        if (t == 0) continue;
        u += cb * below_a + 0.5 * ca * cb;
        below_a += ca;
        spread += 3 * seen * t * (seen + t); /* (seen + t)^3 - seen^3 - t^3 */
        seen += t;
    }
    N = n1 + n2;
    mu = n1 * n2 / 2;
    /* Tie-corrected variance n1 n2 / 12 * ((N + 1) - sum(t^3 - t) / (N (N - 1))), written as
       n1 n2 / 12 * (N^3 - sum t^3) / (N (N - 1)) with N^3 - sum t^3 summed bucket by bucket: no
       difference of two huge near-equal terms (with ~1e17 samples in one bucket it came out <= 0). */
    var = N > 1 ? n1 * n2 / 12.0 * (spread / (N * (N - 1))) : 0;
    if (var <= 0) {
        *z_out = 0;
        return;
    }
    z = u - mu;
    if (z > 0.5) z -= 0.5;
    else if (z < -0.5) z += 0.5;
    else z = 0;
    *z_out = z / pk_prof__sqrt(var);
}

PK_PROF__PRIV double pk_prof__ratio(double num, double den)
{
    if (den == 0) return num == 0 ? 1.0 : 1e308;
    return num / den;
}

PK_PROF__PRIV int pk_prof__compare(const pk_hist *hb, const uint64_t *cb, const pk_hist *hc, const uint64_t *cc,
                                   pk_prof_cmp *out)
{
    pk_prof_stats sb, sc;
    double z;
    pk_prof__hist_stats(hb, cb, &sb);
    pk_prof__hist_stats(hc, cc, &sc);
    if (sb.count == 0 || sc.count == 0) return -ENOENT;
    out->ratio_p50 = pk_prof__ratio((double)sc.p50, (double)sb.p50);
    out->ratio_mean = pk_prof__ratio(sc.mean, sb.mean);
    out->improvement_pct = out->ratio_mean >= 1e300 ? -1e308 : (1.0 - out->ratio_mean) * 100.0; /* finite */
    pk_prof__mwu(hb, cb, cc, &z);
    out->z = z;
    out->p_value = pk_prof__erfc((z < 0 ? -z : z) / 1.4142135623730951);
    {
        /* With few samples on one side the normal approximation overstates significance (50 tied
           baseline samples against 1 larger one gave z 6.9, p 4e-12). No exact test can give a p
           below 2 / C(N, k), k the smaller side (its most extreme arrangement; ties only make
           the exact distribution coarser), so p is floored there. C(N, k) grows at least 2x a
           step (N - k >= k): at most ~1000 steps before it passes 1e300. */
        double n = (double)sb.count + (double)sc.count, k = (double)(sb.count < sc.count ? sb.count : sc.count);
        double comb = 1, i;
        for (i = 1; i <= k && comb < 1e300; i++) comb = comb * (n - k + i) / i;
        if (out->p_value < 2 / comb) out->p_value = 2 / comb;
    }
    if (out->p_value > 1) out->p_value = 1;
    out->significant = out->p_value < 0.01; /* two-sided alpha 0.01: |z| > 2.5758 with enough samples */
    return 0;
}

PK_PROF_DEF int pk_hist_compare(const pk_hist *base, const pk_hist *cand, pk_prof_cmp *out)
{
    if (!base || !cand || !out || !pk_prof__same_shape(base, cand)) return -EINVAL;
    return pk_prof__compare(base, base->counts, cand, cand->counts, out);
}

/* ---- pk_prof ------------------------------------------------------------------------------------

   Each recording thread owns one shard per profiler: an array of histograms indexed by label id,
   made on the thread's first record of a label. Only the owner writes a shard's counters (relaxed
   atomic stores); readers hold p->lock and read them with relaxed loads. The owner finds its shard
   through a one-entry thread-local cache (pk_prof__tce), with pthread_getspecific(p->key) behind
   it; the key's destructor folds the shard into the profiler's base histograms when the thread
   exits.

   The stamp makes reset and address reuse safe without touching other threads' memory: every
   create and every reset takes a fresh stamp from a counter. A shard whose stamp is not the
   profiler's holds only pre-reset counts: readers skip it and the owner zeroes it (under the lock)
   on its next record. A cache entry whose stamp is stale (a reset, or a destroyed profiler whose
   address came back) misses. */
typedef struct pk_prof__shard {
    pk_prof *owner;
    uint64_t stamp;   /* written by the owner under p->lock; read by readers under it */
    pk_hist **hists;  /* [nhists]; grown by the owner under p->lock */
    int nhists;
    struct pk_prof__shard *prev, *next;
} pk_prof__shard;

struct pk_prof {
    char pad0_[64];
    /* read by every record, written only by create and reset: a line of its own */
    uint64_t stamp;
    pthread_key_t key;
    char pad1_[64];
    pthread_mutex_t lock; /* protects everything below and the shards' hists arrays */
    pk_prof__layout L;
    pk_hist *shape;       /* owns the bucket table; also the scratch for readers */
    pk_hist *scratch2;    /* second scratch (compare) */
    char **names;
    pk_hist **base;       /* per label: fallback records and the shards of exited threads */
    int nlabels, cap;
    int *index;           /* open addressing: label id + 1, 0 = empty; icap a power of two */
    size_t icap;
    pk_prof__shard *shards;
};

/* The thread's cache of the profiler it recorded into last. A stamp is unique to one profiler
   between two resets (see pk_prof__new_stamp), so e.stamp == p->stamp alone says that hists is this
   thread's shard of p, current: the fast path needs no other key. One entry, at a fixed TLS
   address: a thread that alternates between profilers takes the slow path's lock-free refill
   (pthread_getspecific) on each switch. */
typedef struct pk_prof__tce {
    uint64_t stamp;
    pk_hist **hists; /* the shard's, cached: the owner updates this entry whenever it changes them */
    int nhists;
    pk_prof__shard *s;
} pk_prof__tce;

#if defined(__cplusplus) && __cplusplus >= 201103L
static thread_local pk_prof__tce pk_prof__tcache;
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
static _Thread_local pk_prof__tce pk_prof__tcache;
#else
static __thread pk_prof__tce pk_prof__tcache;
#endif

static uint64_t pk_prof__stamps; /* a source of unique stamps, nothing else */

PK_PROF__PRIV uint64_t pk_prof__new_stamp(void)
{
    uint64_t s = __atomic_add_fetch(&pk_prof__stamps, 1, __ATOMIC_RELAXED);
    /* mixed with this counter's address so that two copies of the implementation (PK_PROF_STATIC in
       two files) do not hand out the same stamps */
    return (s << 20) ^ ((uint64_t)(uintptr_t)&pk_prof__stamps >> 4) ^ 0x5bd1e995u;
}

PK_PROF__PRIV uint64_t pk_prof__hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

PK_PROF__PRIV void pk_prof__shard_free(pk_prof__shard *s)
{
    int i;
    for (i = 0; i < s->nhists; i++) pk_hist_destroy(s->hists[i]);
    PK_FREE(s->hists);
    PK_FREE(s);
}

/* The key destructor: the owner thread is exiting. */
PK_PROF__PRIV void pk_prof__thread_exit(void *v)
{
    pk_prof__shard *s = (pk_prof__shard *)v;
    pk_prof *p = s->owner;
    int i;
    pthread_mutex_lock(&p->lock);
    if (s->stamp == PK_PROF__LD(p->stamp))
        for (i = 0; i < s->nhists && i < p->nlabels; i++)
            if (s->hists[i]) pk_prof__hist_add_all(p->base[i], s->hists[i]);
    if (s->prev) s->prev->next = s->next;
    else p->shards = s->next;
    if (s->next) s->next->prev = s->prev;
    pthread_mutex_unlock(&p->lock);
    if (pk_prof__tcache.s == s) memset(&pk_prof__tcache, 0, sizeof pk_prof__tcache);
    pk_prof__shard_free(s);
}

PK_PROF_DEF int pk_prof_create(pk_prof **out, const pk_prof_config *cfg)
{
    pk_prof *p;
    uint64_t maxv = cfg && cfg->max_value ? cfg->max_value : 3600000000000ull;
    int digits = cfg && cfg->digits ? cfg->digits : 3, rc;
    if (!out) return -EINVAL;
    *out = NULL;
    if (digits < 1 || digits > 5) return -EINVAL;
    p = (pk_prof *)PK_MALLOC(sizeof *p);
    if (!p) return -ENOMEM;
    memset(p, 0, sizeof *p);
    if (pk_prof__layout_best(&p->L, maxv, digits) != 0) {
        PK_FREE(p);
        return -EINVAL;
    }
    p->shape = pk_prof__hist_new(&p->L, NULL);
    if (!p->shape) {
        PK_FREE(p);
        return -ENOMEM;
    }
    p->scratch2 = pk_prof__hist_new(&p->L, p->shape->tab);
    if (!p->scratch2) {
        pk_hist_destroy(p->shape);
        PK_FREE(p);
        return -ENOMEM;
    }
    rc = pthread_mutex_init(&p->lock, NULL);
    if (rc) {
        pk_hist_destroy(p->scratch2);
        pk_hist_destroy(p->shape);
        PK_FREE(p);
        return -rc;
    }
    rc = pthread_key_create(&p->key, pk_prof__thread_exit);
    if (rc) {
        pthread_mutex_destroy(&p->lock);
        pk_hist_destroy(p->scratch2);
        pk_hist_destroy(p->shape);
        PK_FREE(p);
        return -rc;
    }
    PK_PROF__ST(p->stamp, pk_prof__new_stamp());
    *out = p;
    return 0;
}

PK_PROF_DEF void pk_prof_destroy(pk_prof *p)
{
    pk_prof__shard *s, *n;
    int i;
    if (!p) return;
    pthread_key_delete(p->key); /* no destructor runs for it from now on */
    for (s = p->shards; s; s = n) {
        n = s->next;
        pk_prof__shard_free(s);
    }
    for (i = 0; i < p->nlabels; i++) {
        PK_FREE(p->names[i]);
        pk_hist_destroy(p->base[i]);
    }
    PK_FREE(p->names);
    PK_FREE(p->base);
    PK_FREE(p->index);
    pk_hist_destroy(p->scratch2);
    pk_hist_destroy(p->shape);
    pthread_mutex_destroy(&p->lock);
    /* this thread's cache; other threads' entries never match a stamp again */
    if (pk_prof__tcache.stamp == PK_PROF__LD(p->stamp))
        memset(&pk_prof__tcache, 0, sizeof pk_prof__tcache);
    PK_FREE(p);
}

/* Under the lock. Returns the id or -1. */
PK_PROF__PRIV int pk_prof__find(pk_prof *p, const char *name, uint64_t hv)
{
    size_t i, m;
    if (!p->icap) return -1;
    m = p->icap - 1;
    for (i = (size_t)hv & m;; i = (i + 1) & m) {
        int v = p->index[i];
        if (v == 0) return -1;
        if (strcmp(p->names[v - 1], name) == 0) return v - 1;
    }
}

PK_PROF_DEF int pk_prof_label(pk_prof *p, const char *name)
{
    uint64_t hv;
    int id;
    size_t len, i;
    char *copy;
    pk_hist *h;
    if (!p || !name) return -EINVAL;
    hv = pk_prof__hash(name);
    pthread_mutex_lock(&p->lock);
    id = pk_prof__find(p, name, hv);
    if (id >= 0) goto done;
    if (p->nlabels == INT_MAX - 1) {
        id = -ENOSPC;
        goto done;
    }
    /* grow the arrays first: a failure leaves everything as it was */
    if (p->nlabels == p->cap) {
        int nc = p->cap ? (p->cap > INT_MAX / 2 ? INT_MAX - 1 : p->cap * 2) : 8;
        char **nn = (char **)PK_REALLOC(p->names, (size_t)nc * sizeof *nn);
        pk_hist **nbase;
        if (!nn) goto nomem;
        p->names = nn;
        nbase = (pk_hist **)PK_REALLOC(p->base, (size_t)nc * sizeof *nbase);
        if (!nbase) goto nomem;
        p->base = nbase;
        p->cap = nc;
    }
    if ((size_t)(p->nlabels + 1) * 2 > p->icap) {
        size_t nic = p->icap ? p->icap * 2 : 16, m = nic - 1;
        int *ni = (int *)PK_MALLOC(nic * sizeof *ni);
        if (!ni) goto nomem;
        memset(ni, 0, nic * sizeof *ni);
        for (i = 0; i < (size_t)p->nlabels; i++) {
            size_t j = (size_t)pk_prof__hash(p->names[i]) & m;
            while (ni[j]) j = (j + 1) & m;
            ni[j] = (int)i + 1;
        }
        PK_FREE(p->index);
        p->index = ni;
        p->icap = nic;
    }
    len = strlen(name);
    copy = (char *)PK_MALLOC(len + 1);
    if (!copy) goto nomem;
    memcpy(copy, name, len + 1);
    h = pk_prof__hist_new(&p->L, p->shape->tab);
    if (!h) {
        PK_FREE(copy);
        goto nomem;
    }
    id = p->nlabels;
    p->names[id] = copy;
    p->base[id] = h;
    for (i = (size_t)hv & (p->icap - 1); p->index[i]; i = (i + 1) & (p->icap - 1)) {
    }
    p->index[i] = id + 1;
    __atomic_store_n(&p->nlabels, id + 1, __ATOMIC_RELEASE);
done:
    pthread_mutex_unlock(&p->lock);
    return id;
nomem:
    pthread_mutex_unlock(&p->lock);
    return -ENOMEM;
}

PK_PROF_DEF const char *pk_prof_label_name(pk_prof *p, int id)
{
    const char *s = NULL;
    if (!p) return NULL;
    pthread_mutex_lock(&p->lock);
    if (id >= 0 && id < p->nlabels) s = p->names[id];
    pthread_mutex_unlock(&p->lock);
    return s;
}

PK_PROF_DEF int pk_prof_labels(pk_prof *p)
{
    return p ? __atomic_load_n(&p->nlabels, __ATOMIC_ACQUIRE) : 0;
}

PK_PROF_DEF uint64_t pk_prof_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The slow path of pk_prof_record: first record of this thread (or label) since create or reset, a
   cache miss, or a bad id. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static void pk_prof__record_slow(pk_prof *p, int id, uint64_t ns)
{
    pk_prof__shard *s;
    pk_prof__tce *e;
    uint64_t stamp;
    if (!p || id < 0) return;
    s = (pk_prof__shard *)pthread_getspecific(p->key);
    stamp = PK_PROF__LD(p->stamp);
    if (!s || s->stamp != stamp || id >= s->nhists || !s->hists[id]) {
        pthread_mutex_lock(&p->lock);
        if (id >= p->nlabels) { /* unknown label: ignored */
            pthread_mutex_unlock(&p->lock);
            return;
        }
        if (!s) {
            s = (pk_prof__shard *)PK_MALLOC(sizeof *s);
            if (!s) goto fallback;
            memset(s, 0, sizeof *s);
            s->owner = p;
            s->stamp = PK_PROF__LD(p->stamp);
            if (pthread_setspecific(p->key, s) != 0) {
                PK_FREE(s);
                s = NULL;
                goto fallback;
            }
            s->next = p->shards;
            if (p->shards) p->shards->prev = s;
            p->shards = s;
        }
        stamp = PK_PROF__LD(p->stamp);
        if (s->stamp != stamp) { /* a reset happened: this shard's counts are from before it */
            int i;
            for (i = 0; i < s->nhists; i++)
                if (s->hists[i]) pk_prof__hist_zero(s->hists[i]);
            PK_PROF__ST(s->stamp, stamp);
        }
        if (id >= s->nhists) {
            int n = p->nlabels, i;
            pk_hist **nh = (pk_hist **)PK_REALLOC(s->hists, (size_t)n * sizeof *nh);
            if (!nh) goto fallback;
            for (i = s->nhists; i < n; i++) nh[i] = NULL;
            s->hists = nh;
            s->nhists = n;
        }
        if (!s->hists[id]) {
            s->hists[id] = pk_prof__hist_new(&p->L, p->shape->tab);
            if (!s->hists[id]) goto fallback;
        }
        pthread_mutex_unlock(&p->lock);
    }
    e = &pk_prof__tcache;
    e->stamp = s->stamp;
    e->hists = s->hists;
    e->nhists = s->nhists;
    e->s = s;
    pk_prof__hist_inc(s->hists[id], ns);
    return;
fallback: /* out of memory: record under the lock into the label's own histogram */
    if (s && s->stamp == stamp) { /* s->hists may have been reallocated: the cache must not keep the old array */
        e = &pk_prof__tcache;
        e->stamp = s->stamp;
        e->hists = s->hists;
        e->nhists = s->nhists;
        e->s = s;
    }
    pk_prof__hist_inc(p->base[id], ns);
    pthread_mutex_unlock(&p->lock);
}

/* HOT: any thread. */
PK_PROF_DEF void pk_prof_record(pk_prof *p, int id, uint64_t ns)
{
    const pk_prof__tce *e = &pk_prof__tcache;
    if (PK_PROF__LIKELY(p != NULL && e->stamp == PK_PROF__LD(p->stamp) && (unsigned)id < (unsigned)e->nhists)) {
        pk_hist *h = e->hists[id];
        if (PK_PROF__LIKELY(h != NULL)) {
            pk_prof__hist_inc(h, ns);
            return;
        }
    }
    pk_prof__record_slow(p, id, ns);
}

/* Under the lock: the label's counts summed into dst (zeroed first). */
PK_PROF__PRIV void pk_prof__snapshot(pk_prof *p, int id, pk_hist *dst)
{
    pk_prof__shard *s;
    uint64_t stamp = PK_PROF__LD(p->stamp);
    pk_prof__hist_zero(dst);
    pk_prof__hist_add_all(dst, p->base[id]);
    for (s = p->shards; s; s = s->next)
        if (PK_PROF__LD(s->stamp) == stamp && id < s->nhists && s->hists[id])
            pk_prof__hist_add_all(dst, s->hists[id]);
}

PK_PROF_DEF int pk_prof_stats_get(pk_prof *p, int id, pk_prof_stats *out)
{
    if (!p || !out) return -EINVAL;
    pthread_mutex_lock(&p->lock);
    if (id < 0 || id >= p->nlabels) {
        pthread_mutex_unlock(&p->lock);
        return -EINVAL;
    }
    pk_prof__snapshot(p, id, p->shape);
    pk_prof__hist_stats(p->shape, p->shape->counts, out);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

PK_PROF_DEF int pk_prof_hist_merge(pk_prof *p, int id, pk_hist *dst)
{
    if (!p || !dst) return -EINVAL;
    pthread_mutex_lock(&p->lock);
    if (id < 0 || id >= p->nlabels || !pk_prof__same_shape(dst, p->shape)) {
        pthread_mutex_unlock(&p->lock);
        return -EINVAL;
    }
    pk_prof__snapshot(p, id, p->shape);
    pk_prof__hist_add_all(dst, p->shape);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

PK_PROF_DEF int pk_prof_compare(pk_prof *p, int base_id, int cand_id, pk_prof_cmp *out)
{
    int rc;
    if (!p || !out) return -EINVAL;
    pthread_mutex_lock(&p->lock);
    if (base_id < 0 || base_id >= p->nlabels || cand_id < 0 || cand_id >= p->nlabels) {
        pthread_mutex_unlock(&p->lock);
        return -EINVAL;
    }
    pk_prof__snapshot(p, base_id, p->shape);
    pk_prof__snapshot(p, cand_id, p->scratch2);
    rc = pk_prof__compare(p->shape, p->shape->counts, p->scratch2, p->scratch2->counts, out);
    pthread_mutex_unlock(&p->lock);
    return rc;
}

PK_PROF_DEF void pk_prof_reset(pk_prof *p)
{
    int i;
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    PK_PROF__ST(p->stamp, pk_prof__new_stamp());
    for (i = 0; i < p->nlabels; i++) pk_prof__hist_zero(p->base[i]);
    pthread_mutex_unlock(&p->lock);
}

/* ---- reports ------------------------------------------------------------------------------------ */

/* Human units: ns below 1 µs, then µs, ms, s with 4 significant digits. Returns display columns. */
PK_PROF__PRIV int pk_prof__human(char *buf, size_t cap, double ns)
{
    const char *unit;
    double v;
    int dec;
    if (ns < 999.5) {
        snprintf(buf, cap, "%.0fns", ns);
        return (int)strlen(buf);
    }
    if (ns < 999500.0) v = ns / 1e3, unit = "\xc2\xb5s"; /* µs */
    else if (ns < 999500000.0) v = ns / 1e6, unit = "ms";
    else v = ns / 1e9, unit = "s";
    dec = v < 9.9995 ? 3 : v < 99.995 ? 2 : v < 999.95 ? 1 : 0;
    snprintf(buf, cap, "%.*f%s", dec, v, unit);
    return (int)strlen(buf) - (unit[0] == '\xc2' ? 1 : 0);
}

PK_PROF__PRIV void pk_prof__pad(FILE *f, int n)
{
    while (n-- > 0) fputc(' ', f);
}

/* Length of a valid UTF-8 sequence at s (1..4), or 0 if invalid. */
PK_PROF__PRIV int pk_prof__utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    int n, i;
    unsigned cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) n = 4, cp = c & 0x07;
    else return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* A name as a table cell for people: control characters (C0, DEL, C1, U+2028/9) and bytes that are
   not UTF-8 shown as C escapes, so that every row stays on one line. Columns are counted one per
   code point: wide (CJK) or combining characters shift their row. Writes it if f != NULL; returns the
   display columns. md: also escape '|' (Markdown). */
PK_PROF__PRIV int pk_prof__cell_name(FILE *f, const char *s, int md)
{
    const unsigned char *u = (const unsigned char *)s;
    int cols = 0;
    while (*u) {
        int n = pk_prof__utf8_len(u);
        char esc[8];
        esc[0] = 0;
        if (n == 0 || *u < 0x20 || *u == 0x7f) {
            if (n != 0 && *u == '\n') strcpy(esc, "\\n");
            else if (n != 0 && *u == '\t') strcpy(esc, "\\t");
            else if (n != 0 && *u == '\r') strcpy(esc, "\\r");
            else snprintf(esc, sizeof esc, "\\x%02x", *u);
            n = 1;
        } else if (n == 2 && u[0] == 0xc2 && u[1] < 0xa0) { /* C1 controls (NEL, CSI, ...) */
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned)u[1]);
        } else if (n == 3 && u[0] == 0xe2 && u[1] == 0x80 && (u[2] == 0xa8 || u[2] == 0xa9)) { /* line/para sep */
            snprintf(esc, sizeof esc, "\\u%04x", 0x2000u + (u[2] & 0x3fu));
        } else if (md && (*u == '|' || *u == '\\')) {
            esc[0] = '\\', esc[1] = (char)*u, esc[2] = 0;
        }
        if (esc[0]) {
            if (f) fputs(esc, f);
            cols += (int)strlen(esc);
        } else {
            if (f) fwrite(u, 1, (size_t)n, f);
            cols++;
        }
        u += n;
    }
    return cols;
}

PK_PROF__PRIV void pk_prof__json_str(FILE *f, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    fputc('"', f);
    while (*u) {
        int n = pk_prof__utf8_len(u);
        if (n == 0) {
            fputs("\\ufffd", f);
            u++;
            continue;
        }
        if (n > 1) {
            fwrite(u, 1, (size_t)n, f);
            u += n;
            continue;
        }
        if (*u == '"') fputs("\\\"", f);
        else if (*u == '\\') fputs("\\\\", f);
        else if (*u == '\n') fputs("\\n", f);
        else if (*u == '\r') fputs("\\r", f);
        else if (*u == '\t') fputs("\\t", f);
        else if (*u < 0x20 || *u == 0x7f) fprintf(f, "\\u%04x", *u);
        else fputc(*u, f);
        u++;
    }
    fputc('"', f);
}

PK_PROF__PRIV void pk_prof__csv_str(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n") && s[0] != ' ' && s[0] != '\0') {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

#define PK_PROF__NCOLS 11
static const char *const pk_prof__cols[PK_PROF__NCOLS] = {"count", "min",  "p50",  "p90",    "p95",    "p99",
                                                          "p99.9", "max", "mean", "stddev", "clamped"};

PK_PROF__PRIV void pk_prof__cells(const pk_prof_stats *st, char cells[PK_PROF__NCOLS][32], int *cols)
{
    double v[9];
    int i;
    snprintf(cells[0], 32, "%llu", (unsigned long long)st->count);
    cols[0] = (int)strlen(cells[0]);
    v[0] = (double)st->min, v[1] = (double)st->p50, v[2] = (double)st->p90, v[3] = (double)st->p95;
    v[4] = (double)st->p99, v[5] = (double)st->p999, v[6] = (double)st->max, v[7] = st->mean, v[8] = st->stddev;
    for (i = 0; i < 9; i++) {
        if (st->count == 0) {
            strcpy(cells[i + 1], "-");
            cols[i + 1] = 1;
        } else {
            cols[i + 1] = pk_prof__human(cells[i + 1], 32, v[i]);
        }
    }
    snprintf(cells[10], 32, "%llu", (unsigned long long)st->clamped);
    cols[10] = (int)strlen(cells[10]);
}

/* v >= 0 with `decimals` digits after a '.', whatever LC_NUMERIC says (a comma would break CSV
   and JSON). Returns buf (32 bytes). */
PK_PROF__PRIV const char *pk_prof__fixed(char *buf, double v, int decimals)
{
    uint64_t scale = 1, x;
    int d;
    for (d = 0; d < decimals; d++) scale *= 10;
    if (!(v >= 0)) v = 0;
    if (v * (double)scale >= 9.0e18) { /* no fraction at this size: print it without one */
        snprintf(buf, 32, "%.0f", v);
        return buf;
    }
    x = (uint64_t)(v * (double)scale + 0.5);
    if (decimals) snprintf(buf, 32, "%llu.%0*llu", (unsigned long long)(x / scale), decimals, (unsigned long long)(x % scale));
    else snprintf(buf, 32, "%llu", (unsigned long long)x);
    return buf;
}

PK_PROF_DEF int pk_prof_report(pk_prof *p, FILE *out, int format)
{
    int i, c, n;
    pk_prof_stats st;
    char f1[32], f2[32];
    if (!p || !out) return -EINVAL;
    if (format != PK_PROF_TEXT && format != PK_PROF_MARKDOWN && format != PK_PROF_CSV && format != PK_PROF_JSON)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    n = p->nlabels;
    if (format == PK_PROF_TEXT) {
        /* two passes: widths, then rows. The snapshot is taken twice, and records between the two
           can widen a cell beyond its column: every cell keeps at least one space before it. */
        int w[PK_PROF__NCOLS + 1], cols[PK_PROF__NCOLS];
        char cells[PK_PROF__NCOLS][32];
        w[0] = 5;
        for (c = 0; c < PK_PROF__NCOLS; c++) w[c + 1] = (int)strlen(pk_prof__cols[c]);
        for (i = 0; i < n; i++) {
            int lw = pk_prof__cell_name(NULL, p->names[i], 0);
            if (lw > w[0]) w[0] = lw;
            pk_prof__snapshot(p, i, p->shape);
            pk_prof__hist_stats(p->shape, p->shape->counts, &st);
            pk_prof__cells(&st, cells, cols);
            for (c = 0; c < PK_PROF__NCOLS; c++)
                if (cols[c] > w[c + 1]) w[c + 1] = cols[c];
        }
        w[1] += 2, w[11] += 2; /* counts may grow between the passes */
        fputs("label", out);
        pk_prof__pad(out, w[0] - 5);
        for (c = 0; c < PK_PROF__NCOLS; c++) {
            pk_prof__pad(out, 2 + w[c + 1] - (int)strlen(pk_prof__cols[c]));
            fputs(pk_prof__cols[c], out);
        }
        fputs("\n", out);
        for (i = 0; i < n; i++) {
            pk_prof__pad(out, w[0] - pk_prof__cell_name(out, p->names[i], 0));
            pk_prof__snapshot(p, i, p->shape);
            pk_prof__hist_stats(p->shape, p->shape->counts, &st);
            pk_prof__cells(&st, cells, cols);
            for (c = 0; c < PK_PROF__NCOLS; c++) {
                pk_prof__pad(out, 2 + w[c + 1] - cols[c] > 0 ? 2 + w[c + 1] - cols[c] : 1);
                fputs(cells[c], out);
            }
            fputs("\n", out);
        }
    } else if (format == PK_PROF_MARKDOWN) {
        int cols[PK_PROF__NCOLS];
        char cells[PK_PROF__NCOLS][32];
        fputs("| label |", out);
        for (c = 0; c < PK_PROF__NCOLS; c++) fprintf(out, " %s |", pk_prof__cols[c]);
        fputs("\n|:---|", out);
        for (c = 0; c < PK_PROF__NCOLS; c++) fputs("---:|", out);
        fputs("\n", out);
        for (i = 0; i < n; i++) {
            pk_prof__snapshot(p, i, p->shape);
            pk_prof__hist_stats(p->shape, p->shape->counts, &st);
            pk_prof__cells(&st, cells, cols);
            fputs("| ", out);
            pk_prof__cell_name(out, p->names[i], 1);
            fputs(" |", out);
            for (c = 0; c < PK_PROF__NCOLS; c++) fprintf(out, " %s |", cells[c]);
            fputs("\n", out);
        }
    } else if (format == PK_PROF_CSV) {
        fputs("label,count,min_ns,p50_ns,p90_ns,p95_ns,p99_ns,p999_ns,max_ns,mean_ns,stddev_ns,clamped\n", out);
        for (i = 0; i < n; i++) {
            pk_prof__snapshot(p, i, p->shape);
            pk_prof__hist_stats(p->shape, p->shape->counts, &st);
            pk_prof__csv_str(out, p->names[i]);
            fprintf(out, ",%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%s,%s,%llu\n", (unsigned long long)st.count,
                    (unsigned long long)st.min, (unsigned long long)st.p50, (unsigned long long)st.p90,
                    (unsigned long long)st.p95, (unsigned long long)st.p99, (unsigned long long)st.p999,
                    (unsigned long long)st.max, pk_prof__fixed(f1, st.mean, 1), pk_prof__fixed(f2, st.stddev, 1),
                    (unsigned long long)st.clamped);
        }
    } else {
        fprintf(out, "{\"unit\":\"ns\",\"max_value\":%llu,\"digits\":%d,\"labels\":[",
                (unsigned long long)p->L.max_value, p->L.digits);
        for (i = 0; i < n; i++) {
            pk_prof__snapshot(p, i, p->shape);
            pk_prof__hist_stats(p->shape, p->shape->counts, &st);
            fputs(i ? ",\n  {\"name\":" : "\n  {\"name\":", out);
            pk_prof__json_str(out, p->names[i]);
            fprintf(out,
                    ",\"count\":%llu,\"min\":%llu,\"p50\":%llu,\"p90\":%llu,\"p95\":%llu,\"p99\":%llu,"
                    "\"p999\":%llu,\"max\":%llu,\"mean\":%s,\"stddev\":%s,\"clamped\":%llu}",
                    (unsigned long long)st.count, (unsigned long long)st.min, (unsigned long long)st.p50,
                    (unsigned long long)st.p90, (unsigned long long)st.p95, (unsigned long long)st.p99,
                    (unsigned long long)st.p999, (unsigned long long)st.max, pk_prof__fixed(f1, st.mean, 3),
                    pk_prof__fixed(f2, st.stddev, 3), (unsigned long long)st.clamped);
        }
        fputs(n ? "\n]}\n" : "]}\n", out);
    }
    pthread_mutex_unlock(&p->lock);
    /* flushed: a report smaller than the stream's buffer would otherwise fail only at the
       caller's fclose (a full disk, /dev/full), after this said 0 */
    return (fflush(out) != 0 || ferror(out)) ? -EIO : 0;
}

PK_PROF_DEF int pk_prof_mem_snapshot(pk_prof_mem *out)
{
#if defined(__linux__)
    FILE *f;
    char line[256];
    int got = 0;
    if (!out) return -EINVAL;
    memset(out, 0, sizeof *out);
    f = fopen("/proc/self/status", "r");
    if (!f) return -ENOSYS;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "VmRSS: %llu", &kb) == 1) out->rss_bytes = kb * 1024, got |= 1;
        else if (sscanf(line, "VmHWM: %llu", &kb) == 1) out->peak_rss_bytes = kb * 1024, got |= 2;
    }
    fclose(f);
    return got == 3 ? 0 : -ENOSYS;
#else
    if (out) memset(out, 0, sizeof *out);
    return -ENOSYS;
#endif
}

#endif /* PK_PROF_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
This software is available under 2 licenses -- choose whichever you prefer.
------------------------------------------------------------------------------
ALTERNATIVE A - MIT License
Copyright (c) 2025 the pk authors
Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:
The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
ALTERNATIVE B - Public Domain (www.unlicense.org)
This is free and unencumbered software released into the public domain.
Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose,
commercial or non-commercial, and by any means.
In jurisdictions that recognize copyright laws, the author or authors of this
software dedicate any and all copyright interest in the software to the public
domain. We make this dedication for the benefit of the public at large and to
the detriment of our heirs and successors. We intend this dedication to be an
overt act of relinquishment in perpetuity of all present and future rights to
this software under copyright law.
THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN
ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
------------------------------------------------------------------------------
*/
