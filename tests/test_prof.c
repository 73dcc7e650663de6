/* test_prof.c — pk_prof.h: bucket layout and error bound, percentile accuracy against sorted data,
   merge, record_n, clamping, reset, concurrency (no lost count, thread exit, reset while recording),
   report formats parsed back (JSON by a small parser below), compare verdicts, bad input,
   allocation-failure sweeps over create, label creation and the recording slow path. */
#include "pk_test.h"
#include <math.h>
#include <pthread.h>

#define PK_MALLOC(n) pk_test_malloc(n)
#define PK_REALLOC(p, n) pk_test_realloc(p, n)
#define PK_FREE(p) pk_test_free(p)
#define PK_PROF_IMPLEMENTATION
#include "pk_prof.h"

#define HOUR_NS 3600000000000ull

static const uint64_t POW10[6] = {1, 10, 100, 1000, 10000, 100000};

/* |got - exact| <= exact / 10^d, exactly (integers) */
static int within(uint64_t got, uint64_t exact, int d)
{
    uint64_t diff = got > exact ? got - exact : exact - got;
    return diff <= exact / POW10[d];
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double unif(uint64_t *s) { return (double)(pk_test_rand(s) >> 11) / 9007199254740992.0; }

/* ---- bucket layout: every bucket contiguous, consistent with the index, error bound held ---- */

typedef struct layout_ctx {
    const pk_hist *h;
    int d, bad;
    uint64_t prev_hi, n;
} layout_ctx;

static int layout_cb(void *vc, uint64_t lo, uint64_t hi, uint64_t count, size_t idx)
{
    layout_ctx *c = (layout_ctx *)vc;
    uint64_t r = pk_prof__bucket_value(lo, hi);
    (void)count;
    if (idx == c->h->L.nbuckets - 1) return 0; /* overflow bucket */
    if (c->n && lo != c->prev_hi + 1) c->bad++;
    if (!c->n && lo != 0) c->bad++;
    if (hi < lo || r < lo || r > hi) c->bad++;
    if (pk_prof__index(c->h, lo) != idx || pk_prof__index(c->h, hi) != idx) c->bad++;
    {
        uint64_t lo2, hi2;
        pk_prof__bounds(c->h, idx, &lo2, &hi2);
        if (lo2 != lo || hi2 != hi) c->bad++;
    }
    /* the value reported for the bucket is within 10^-d of every value in it */
    if (!within(r, lo, c->d) || !within(r, hi, c->d)) {
        if (c->bad < 3)
            printf("    bucket [%llu, %llu] value %llu off by more than 1e-%d\n", (unsigned long long)lo,
                   (unsigned long long)hi, (unsigned long long)r, c->d);
        c->bad++;
    }
    c->prev_hi = hi;
    c->n++;
    return 0;
}

static void test_layout(void)
{
    static const uint64_t maxes[] = {1, 7, 1000, 123456789, HOUR_NS, UINT64_MAX};
    size_t m;
    int d;
    for (m = 0; m < sizeof maxes / sizeof maxes[0]; m++) {
        for (d = 1; d <= 5; d++) {
            pk_hist *h = NULL;
            uint64_t *ones;
            size_t i;
            layout_ctx c;
            if (pk_test_scale(8) < 8 && d == 5 && maxes[m] == UINT64_MAX) continue; /* slow under sanitizers */
            PK_CHECK_EQ(pk_hist_create(&h, maxes[m], d), 0);
            if (!h) continue;
            ones = (uint64_t *)malloc(h->L.nbuckets * sizeof *ones);
            for (i = 0; i < h->L.nbuckets; i++) ones[i] = 1;
            memset(&c, 0, sizeof c);
            c.h = h;
            c.d = d;
            pk_prof__walk(h, ones, layout_cb, &c);
            PK_CHECK_MSG(c.bad == 0, "max %llu digits %d: %d bad buckets", (unsigned long long)maxes[m], d, c.bad);
            PK_CHECK_MSG(c.prev_hi == maxes[m], "max %llu digits %d: buckets end at %llu", (unsigned long long)maxes[m],
                         d, (unsigned long long)c.prev_hi);
            PK_CHECK_EQ(c.n + 1, h->L.nbuckets);
            free(ones);
            pk_hist_destroy(h);
        }
    }
}

static void test_memory(void)
{
    /* the doc's figures for 1 ns .. 1 h; HdrHistogram_c needs about 270 KB at 3 digits */
    static const size_t doc_kb[6] = {0, 3, 15, 110, 945, 8300};
    int d;
    for (d = 1; d <= 5; d++) {
        pk_hist *h;
        size_t kb;
        PK_CHECK_EQ(pk_hist_create(&h, HOUR_NS, d), 0);
        kb = (pk_hist_memory(h) + 999) / 1000;
        printf("    1 ns .. 1 h, %d digits: %zu buckets, %zu bytes\n", d, h->L.nbuckets, pk_hist_memory(h));
        PK_CHECK_MSG(kb <= doc_kb[d] + doc_kb[d] / 50, "digits %d: %zu KB, the doc says %zu", d, kb, doc_kb[d]);
        if (d == 3) PK_CHECK(pk_hist_memory(h) <= 135000); /* at most half HdrHistogram_c's */
        pk_hist_destroy(h);
    }
}

/* ---- accuracy against exact sorted percentiles ---- */

enum { DIST_UNIFORM, DIST_LOGUNIFORM, DIST_BIMODAL, DIST_SMALL };

static uint64_t draw(int dist, uint64_t *s)
{
    switch (dist) {
    case DIST_UNIFORM: return 1 + pk_test_rand(s) % 10000000u;               /* 1 ns .. 10 ms */
    case DIST_LOGUNIFORM: return (uint64_t)exp(unif(s) * log(1e12));         /* 1 ns .. 1000 s */
    case DIST_BIMODAL: /* a fast path around 2 µs and a slow one around 40 ms */
        if (pk_test_rand(s) % 10 < 8) return 1500 + pk_test_rand(s) % 1000;
        return 30000000 + pk_test_rand(s) % 20000000;
    default: return pk_test_rand(s) % 3000; /* dense small integers, where buckets are narrow */
    }
}

static void test_accuracy(void)
{
    static const double pcts[] = {0,  0.001, 0.1,  1,    5,     10,     25,      33.3, 50,  66.6,
                                  75, 90,    95,   99,   99.5,  99.9,   99.99,   99.999, 100};
    static const char *names[] = {"uniform", "log-uniform", "bimodal", "small"};
    long n = pk_test_scale(1000000);
    uint64_t *vals = (uint64_t *)malloc((size_t)n * sizeof *vals);
    int dist, d;
    for (dist = 0; dist < 4; dist++) {
        uint64_t seed = 42 + (uint64_t)dist;
        long i;
        double exact_mean = 0;
        for (i = 0; i < n; i++) vals[i] = draw(dist, &seed);
        for (i = 0; i < n; i++) exact_mean += (double)vals[i];
        exact_mean /= (double)n;
        for (d = 1; d <= 5; d++) {
            pk_hist *h;
            size_t k;
            int bad = 0;
            pk_prof_stats st;
            PK_CHECK_EQ(pk_hist_create(&h, HOUR_NS, d), 0);
            for (i = 0; i < n; i++) pk_hist_record(h, vals[i]);
            if (d == 1) qsort(vals, (size_t)n, sizeof *vals, cmp_u64);
            for (k = 0; k < sizeof pcts / sizeof pcts[0]; k++) {
                /* the exact rank ceil(pct / 100 * n) in integers: every pct here has at most 3 decimals */
                uint64_t mp = (uint64_t)(pcts[k] * 1000 + 0.5), got, exact;
                uint64_t rank = (mp * (uint64_t)n + 99999) / 100000;
                if (rank < 1) rank = 1;
                if (rank > (uint64_t)n) rank = (uint64_t)n;
                exact = vals[rank - 1];
                got = pk_hist_percentile(h, pcts[k]);
                if (!within(got, exact, d)) {
                    if (bad++ < 3)
                        printf("    %s digits %d p%g: got %llu, exact %llu\n", names[dist], d, pcts[k],
                               (unsigned long long)got, (unsigned long long)exact);
                }
            }
            PK_CHECK_MSG(bad == 0, "%s, digits %d: %d percentiles off", names[dist], d, bad);
            pk_hist_stats(h, &st);
            PK_CHECK_EQ(st.count, n);
            PK_CHECK_EQ(st.min, vals[0]);
            PK_CHECK_EQ(st.max, vals[n - 1]);
            PK_CHECK_EQ(st.p50, pk_hist_percentile(h, 50));
            PK_CHECK_EQ(st.p90, pk_hist_percentile(h, 90));
            PK_CHECK_EQ(st.p95, pk_hist_percentile(h, 95));
            PK_CHECK_EQ(st.p99, pk_hist_percentile(h, 99));
            PK_CHECK_EQ(st.p999, pk_hist_percentile(h, 99.9));
            PK_CHECK_MSG(fabs(st.mean - exact_mean) <= exact_mean / (double)POW10[d] + 1e-9,
                         "%s digits %d: mean %.3f, exact %.3f", names[dist], d, st.mean, exact_mean);
            PK_CHECK(st.stddev >= 0);
            PK_CHECK_EQ(st.clamped, 0);
            pk_hist_destroy(h);
        }
    }
    /* stddev of a known distribution: uniform 1..10^7 has sd 10^7/sqrt(12) */
    {
        pk_hist *h;
        pk_prof_stats st;
        uint64_t seed = 7;
        long i;
        double sd = 1e7 / sqrt(12.0);
        pk_hist_create(&h, HOUR_NS, 3);
        for (i = 0; i < n; i++) pk_hist_record(h, draw(DIST_UNIFORM, &seed));
        pk_hist_stats(h, &st);
        PK_CHECK_MSG(fabs(st.stddev - sd) < sd * 0.02, "stddev %.1f, expected %.1f", st.stddev, sd);
        pk_hist_destroy(h);
    }
    free(vals);
}

/* single values and tiny sets: percentile clamped to min/max, exact at the ends */
static void test_small_sets(void)
{
    pk_hist *h;
    pk_prof_stats st;
    PK_CHECK_EQ(pk_hist_create(&h, HOUR_NS, 2), 0);
    PK_CHECK_EQ(pk_hist_percentile(h, 50), 0); /* empty */
    pk_hist_stats(h, &st);
    PK_CHECK_EQ(st.count, 0);
    PK_CHECK_EQ(st.min, 0);
    PK_CHECK_EQ(st.max, 0);
    pk_hist_record(h, 123456789);
    PK_CHECK_EQ(pk_hist_percentile(h, 0), 123456789);
    PK_CHECK_EQ(pk_hist_percentile(h, 50), 123456789); /* clamped to min = max */
    PK_CHECK_EQ(pk_hist_percentile(h, 100), 123456789);
    pk_hist_stats(h, &st);
    PK_CHECK_EQ(st.p999, 123456789);
    PK_CHECK(fabs(st.mean - 123456789.0) < 1);
    PK_CHECK_EQ((long long)st.stddev, 0);
    pk_hist_record(h, 0);
    PK_CHECK_EQ(pk_hist_percentile(h, 0), 0);
    PK_CHECK_EQ(pk_hist_percentile(h, 50), 0);
    PK_CHECK_EQ(pk_hist_percentile(h, 50.1), 123456789);
    PK_CHECK_EQ(pk_hist_percentile(h, 100), 123456789);
    /* out-of-range pct is clamped; NaN gives 0 */
    PK_CHECK_EQ(pk_hist_percentile(h, -5), 0);
    PK_CHECK_EQ(pk_hist_percentile(h, 250), 123456789);
    PK_CHECK_EQ(pk_hist_percentile(h, NAN), 0);
    PK_CHECK_EQ(pk_hist_count(h), 2);
    pk_hist_destroy(h);
}

/* ---- merge, record_n, clamping, reset ---- */

static int same_counts(const pk_hist *a, const pk_hist *b)
{
    size_t i;
    if (a->L.nbuckets != b->L.nbuckets) return 0;
    for (i = 0; i < a->L.nbuckets; i++)
        if (a->counts[i] != b->counts[i]) return 0;
    return a->min == b->min && a->max == b->max;
}

static void test_merge(void)
{
    pk_hist *a, *b, *both, *other;
    uint64_t s1 = 1, s2 = 2;
    long i, n = pk_test_scale(200000);
    int d;
    for (d = 1; d <= 5; d += 2) {
        pk_hist_create(&a, HOUR_NS, d);
        pk_hist_create(&b, HOUR_NS, d);
        pk_hist_create(&both, HOUR_NS, d);
        for (i = 0; i < n; i++) {
            uint64_t x = draw(DIST_LOGUNIFORM, &s1), y = draw(DIST_BIMODAL, &s2);
            pk_hist_record(a, x);
            pk_hist_record(both, x);
            pk_hist_record(b, y);
            pk_hist_record(both, y);
        }
        pk_hist_record(b, HOUR_NS * 2); /* clamped ones merge too */
        pk_hist_record(both, HOUR_NS * 2);
        PK_CHECK_EQ(pk_hist_merge(a, b), 0);
        PK_CHECK(same_counts(a, both));
        PK_CHECK_EQ(pk_hist_count(a), 2 * n + 1);
        PK_CHECK_EQ(pk_hist_clamped(a), 1);
        PK_CHECK_EQ(pk_hist_percentile(a, 99.9), pk_hist_percentile(both, 99.9));
        /* merging an empty histogram changes nothing (min/max included) */
        pk_hist_reset(b);
        PK_CHECK_EQ(pk_hist_merge(a, b), 0);
        PK_CHECK(same_counts(a, both));
        /* different shapes: -EINVAL, dst unchanged */
        pk_hist_create(&other, HOUR_NS, d == 5 ? 4 : d + 1);
        pk_hist_record(other, 5);
        PK_CHECK_EQ(pk_hist_merge(a, other), -EINVAL);
        PK_CHECK_EQ(pk_hist_merge(other, a), -EINVAL);
        PK_CHECK(same_counts(a, both));
        PK_CHECK_EQ(pk_hist_count(other), 1);
        pk_hist_destroy(other);
        pk_hist_create(&other, HOUR_NS / 2, d);
        PK_CHECK_EQ(pk_hist_merge(a, other), -EINVAL);
        PK_CHECK(same_counts(a, both));
        /* a histogram merged into itself doubles */
        PK_CHECK_EQ(pk_hist_merge(both, both), 0);
        PK_CHECK_EQ(pk_hist_count(both), 4 * n + 2);
        pk_hist_destroy(other);
        pk_hist_destroy(a);
        pk_hist_destroy(b);
        pk_hist_destroy(both);
    }
}

static void test_record_n(void)
{
    pk_hist *a, *b;
    uint64_t s = 3;
    int i, k;
    pk_hist_create(&a, HOUR_NS, 3);
    pk_hist_create(&b, HOUR_NS, 3);
    for (i = 0; i < 2000; i++) {
        uint64_t v = draw(i % 2 ? DIST_LOGUNIFORM : DIST_SMALL, &s), c = 1 + pk_test_rand(&s) % 7;
        pk_hist_record_n(a, v, c);
        for (k = 0; k < (int)c; k++) pk_hist_record(b, v);
    }
    pk_hist_record_n(a, 77, 0); /* nothing, min untouched */
    pk_hist_record_n(a, HOUR_NS + 5, 3);
    for (k = 0; k < 3; k++) pk_hist_record(b, HOUR_NS + 5);
    PK_CHECK(same_counts(a, b));
    PK_CHECK_EQ(pk_hist_clamped(a), 3);
    /* a large count */
    pk_hist_reset(a);
    pk_hist_record_n(a, 1000, 1ull << 40);
    pk_hist_record(a, 2000);
    PK_CHECK_EQ(pk_hist_count(a), (1ull << 40) + 1);
    PK_CHECK_EQ(pk_hist_percentile(a, 99.9999), 1000);
    PK_CHECK_EQ(pk_hist_percentile(a, 100), 2000);
    pk_hist_destroy(a);
    pk_hist_destroy(b);
}

static void test_clamping(void)
{
    pk_hist *h;
    pk_prof_stats st;
    int i;
    PK_CHECK_EQ(pk_hist_create(&h, 1000, 3), 0);
    for (i = 0; i < 90; i++) pk_hist_record(h, 500);
    for (i = 0; i < 10; i++) pk_hist_record(h, 5000 + (uint64_t)i);
    pk_hist_record(h, UINT64_MAX);
    pk_hist_stats(h, &st);
    PK_CHECK_EQ(st.count, 101);
    PK_CHECK_EQ(st.clamped, 11);
    PK_CHECK_EQ(pk_hist_clamped(h), 11);
    PK_CHECK_EQ(st.max, 1000); /* clamped to max_value */
    PK_CHECK_EQ(st.p50, 500);
    PK_CHECK_EQ(st.p95, 1000);
    PK_CHECK_EQ(pk_hist_percentile(h, 100), 1000);
    PK_CHECK(fabs(st.mean - (90 * 500 + 11 * 1000) / 101.0) < 1e-6);
    pk_hist_reset(h);
    /* only clamped values: min and max are max_value */
    pk_hist_record(h, 99999);
    pk_hist_stats(h, &st);
    PK_CHECK_EQ(st.min, 1000);
    PK_CHECK_EQ(st.max, 1000);
    PK_CHECK_EQ(pk_hist_percentile(h, 0), 1000);
    pk_hist_destroy(h);
    /* max_value = UINT64_MAX: nothing is clamped, the top value is kept */
    PK_CHECK_EQ(pk_hist_create(&h, UINT64_MAX, 2), 0);
    pk_hist_record(h, UINT64_MAX);
    pk_hist_record(h, 0);
    PK_CHECK_EQ(pk_hist_clamped(h), 0);
    PK_CHECK_EQ(pk_hist_percentile(h, 100), UINT64_MAX);
    PK_CHECK_EQ(pk_hist_percentile(h, 0), 0);
    PK_CHECK(within(pk_hist_percentile(h, 75), UINT64_MAX, 2));
    pk_hist_destroy(h);
}

static void test_hist_reset(void)
{
    pk_hist *h;
    pk_prof_stats st;
    pk_hist_create(&h, HOUR_NS, 3);
    pk_hist_record(h, 5);
    pk_hist_record(h, 5000000);
    pk_hist_reset(h);
    PK_CHECK_EQ(pk_hist_count(h), 0);
    PK_CHECK_EQ(pk_hist_percentile(h, 99), 0);
    pk_hist_record(h, 700);
    pk_hist_stats(h, &st);
    PK_CHECK_EQ(st.count, 1);
    PK_CHECK_EQ(st.min, 700);
    PK_CHECK_EQ(st.max, 700);
    pk_hist_destroy(h);
}

/* ---- bad input ---- */

static void test_bad_input(void)
{
    pk_hist *h = (pk_hist *)&h, *g;
    pk_prof *p = (pk_prof *)&p;
    pk_prof_config cfg;
    pk_prof_stats st;
    pk_prof_cmp cmp;
    pk_prof_mem mem;
    int id;
    PK_CHECK_EQ(pk_hist_create(NULL, 100, 3), -EINVAL);
    PK_CHECK_EQ(pk_hist_create(&h, 100, 0), -EINVAL);
    PK_CHECK(h == NULL);
    PK_CHECK_EQ(pk_hist_create(&h, 100, 6), -EINVAL);
    PK_CHECK_EQ(pk_hist_create(&h, 100, -1), -EINVAL);
    PK_CHECK_EQ(pk_hist_create(&h, 0, 3), -EINVAL);
    pk_hist_destroy(NULL);
    pk_hist_record(NULL, 5);
    pk_hist_record_n(NULL, 5, 5);
    pk_hist_reset(NULL);
    PK_CHECK_EQ(pk_hist_percentile(NULL, 50), 0);
    PK_CHECK_EQ(pk_hist_count(NULL), 0);
    PK_CHECK_EQ(pk_hist_clamped(NULL), 0);
    PK_CHECK_EQ(pk_hist_memory(NULL), 0);
    pk_hist_stats(NULL, &st);
    PK_CHECK_EQ(st.count, 0);
    PK_CHECK_EQ(pk_hist_create(&h, 100, 3), 0);
    pk_hist_stats(h, NULL);
    PK_CHECK_EQ(pk_hist_merge(NULL, h), -EINVAL);
    PK_CHECK_EQ(pk_hist_merge(h, NULL), -EINVAL);
    PK_CHECK_EQ(pk_hist_compare(h, NULL, &cmp), -EINVAL);
    PK_CHECK_EQ(pk_hist_compare(h, h, NULL), -EINVAL);
    PK_CHECK_EQ(pk_hist_compare(h, h, &cmp), -ENOENT);
    PK_CHECK_EQ(pk_hist_create(&g, 1000, 3), 0);
    pk_hist_record(h, 5);
    pk_hist_record(g, 5);
    PK_CHECK_EQ(pk_hist_compare(h, g, &cmp), -EINVAL); /* shapes differ */
    pk_hist_destroy(g);
    pk_hist_destroy(h);

    memset(&cfg, 0, sizeof cfg);
    cfg.digits = 6;
    PK_CHECK_EQ(pk_prof_create(&p, &cfg), -EINVAL);
    PK_CHECK(p == NULL);
    cfg.digits = -2;
    PK_CHECK_EQ(pk_prof_create(&p, &cfg), -EINVAL);
    PK_CHECK_EQ(pk_prof_create(NULL, NULL), -EINVAL);
    pk_prof_destroy(NULL);
    pk_prof_record(NULL, 0, 5);
    pk_prof_reset(NULL);
    PK_CHECK_EQ(pk_prof_label(NULL, "x"), -EINVAL);
    PK_CHECK_EQ(pk_prof_labels(NULL), 0);
    PK_CHECK(pk_prof_label_name(NULL, 0) == NULL);
    PK_CHECK_EQ(pk_prof_stats_get(NULL, 0, &st), -EINVAL);
    PK_CHECK_EQ(pk_prof_report(NULL, stdout, PK_PROF_TEXT), -EINVAL);
    PK_CHECK_EQ(pk_prof_compare(NULL, 0, 0, &cmp), -EINVAL);
    PK_CHECK_EQ(pk_prof_mem_snapshot(NULL), -EINVAL);

    PK_CHECK_EQ(pk_prof_create(&p, NULL), 0);
    PK_CHECK_EQ(pk_prof_label(p, NULL), -EINVAL);
    id = pk_prof_label(p, "x");
    PK_CHECK_EQ(id, 0);
    /* unknown ids: ignored by record, -EINVAL elsewhere */
    pk_prof_record(p, -1, 5);
    pk_prof_record(p, 1, 5);
    pk_prof_record(p, 1000000, 5);
    pk_prof_record(p, id, 5);
    PK_CHECK_EQ(pk_prof_stats_get(p, 1, &st), -EINVAL);
    PK_CHECK_EQ(pk_prof_stats_get(p, -1, &st), -EINVAL);
    PK_CHECK_EQ(pk_prof_stats_get(p, id, NULL), -EINVAL);
    PK_CHECK_EQ(pk_prof_stats_get(p, id, &st), 0);
    PK_CHECK_EQ(st.count, 1);
    PK_CHECK_EQ(pk_prof_compare(p, id, 7, &cmp), -EINVAL);
    PK_CHECK_EQ(pk_prof_compare(p, -3, id, &cmp), -EINVAL);
    PK_CHECK_EQ(pk_prof_compare(p, id, id, NULL), -EINVAL);
    PK_CHECK_EQ(pk_prof_label(p, "empty"), 1);
    PK_CHECK_EQ(pk_prof_compare(p, id, 1, &cmp), -ENOENT);
    PK_CHECK_EQ(pk_prof_compare(p, 1, id, &cmp), -ENOENT);
    PK_CHECK_EQ(pk_prof_report(p, NULL, PK_PROF_TEXT), -EINVAL);
    PK_CHECK_EQ(pk_prof_report(p, stdout, 4), -EINVAL);
    PK_CHECK_EQ(pk_prof_report(p, stdout, -1), -EINVAL);
    { /* a write error is -EIO from the call itself, not later at fclose (the report is smaller
         than the stream's buffer) */
        FILE *full = fopen("/dev/full", "w");
        if (full) {
            int fmt;
            for (fmt = PK_PROF_TEXT; fmt <= PK_PROF_JSON; fmt++) {
                PK_CHECK_EQ(pk_prof_report(p, full, fmt), -EIO);
                clearerr(full);
            }
            fclose(full);
        }
    }
    PK_CHECK(pk_prof_label_name(p, 2) == NULL);
    PK_CHECK(pk_prof_label_name(p, -1) == NULL);
    PK_CHECK_EQ(pk_prof_hist_merge(p, id, NULL), -EINVAL);
    PK_CHECK_EQ(pk_hist_create(&h, 1000, 3), 0);
    PK_CHECK_EQ(pk_prof_hist_merge(p, id, h), -EINVAL); /* shape differs */
    PK_CHECK_EQ(pk_hist_count(h), 0);
    pk_hist_destroy(h);
    PK_CHECK_EQ(pk_prof_stats_get(p, id, &st), 0);
    PK_CHECK_EQ(st.count, 1); /* nothing lost or added by the bad calls */
    pk_prof_destroy(p);
#if defined(__linux__)
    PK_CHECK_EQ(pk_prof_mem_snapshot(&mem), 0);
    PK_CHECK(mem.rss_bytes > 0 && mem.peak_rss_bytes >= mem.rss_bytes);
#else
    PK_CHECK_EQ(pk_prof_mem_snapshot(&mem), -ENOSYS);
#endif
}

/* RSS follows memory the process touches; the peak never falls below the current figure. */
static void *volatile g_keep; /* the buffer escapes: the compiler may not drop malloc+memset+free */

static void test_mem_snapshot(void)
{
#if defined(__linux__)
    pk_prof_mem m0, m1, m2;
    size_t n = (size_t)32 << 20;
    char *buf;
    PK_CHECK_EQ(pk_prof_mem_snapshot(&m0), 0);
    buf = (char *)malloc(n);
    PK_CHECK(buf != NULL);
    if (!buf) return;
    memset(buf, 1, n);
    g_keep = buf;
    PK_CHECK_EQ(pk_prof_mem_snapshot(&m1), 0);
    PK_CHECK_MSG(m1.rss_bytes >= m0.rss_bytes + n / 2, "RSS %llu -> %llu after touching 32 MB",
                 (unsigned long long)m0.rss_bytes, (unsigned long long)m1.rss_bytes);
    PK_CHECK(m1.peak_rss_bytes >= m1.rss_bytes && m1.peak_rss_bytes >= m0.peak_rss_bytes);
    g_keep = NULL;
    free(buf);
    PK_CHECK_EQ(pk_prof_mem_snapshot(&m2), 0);
    /* the peak remembers, within the kernel's counter slack (per-CPU caches: a few dozen pages) */
    PK_CHECK_MSG(m2.peak_rss_bytes + (1u << 20) >= m1.rss_bytes, "peak %llu after free, RSS %llu before",
                 (unsigned long long)m2.peak_rss_bytes, (unsigned long long)m1.rss_bytes);
#else
    pk_prof_mem m;
    PK_CHECK_EQ(pk_prof_mem_snapshot(&m), -ENOSYS);
#endif
}

/* ---- profiler basics ---- */

static void test_labels(void)
{
    pk_prof *p;
    char name[32];
    int i, ids[3000], n = (int)pk_test_scale(3000);
    PK_CHECK_EQ(pk_prof_create(&p, NULL), 0);
    for (i = 0; i < n; i++) {
        snprintf(name, sizeof name, "label-%d", i);
        ids[i] = pk_prof_label(p, name);
        PK_CHECK_EQ(ids[i], i);
    }
    PK_CHECK_EQ(pk_prof_labels(p), n);
    for (i = n - 1; i >= 0; i--) {
        snprintf(name, sizeof name, "label-%d", i);
        PK_CHECK_EQ(pk_prof_label(p, name), ids[i]);
        PK_CHECK(strcmp(pk_prof_label_name(p, i), name) == 0);
    }
    PK_CHECK_EQ(pk_prof_label(p, ""), n); /* the empty name is a name */
    PK_CHECK_EQ(pk_prof_label(p, ""), n);
    PK_CHECK_EQ(pk_prof_labels(p), n + 1);
    /* records on many labels from one thread */
    for (i = 0; i < n; i++) pk_prof_record(p, ids[i], (uint64_t)i);
    for (i = 0; i < n; i += 97) {
        pk_prof_stats st;
        PK_CHECK_EQ(pk_prof_stats_get(p, ids[i], &st), 0);
        PK_CHECK_EQ(st.count, 1);
        PK_CHECK_EQ(st.min, i);
    }
    pk_prof_destroy(p);
}

static void test_prof_config(void)
{
    pk_prof *p;
    pk_prof_config cfg;
    pk_prof_stats st;
    pk_hist *h;
    int id;
    memset(&cfg, 0, sizeof cfg);
    cfg.max_value = 1000;
    cfg.digits = 2;
    PK_CHECK_EQ(pk_prof_create(&p, &cfg), 0);
    id = pk_prof_label(p, "x");
    pk_prof_record(p, id, 500);
    pk_prof_record(p, id, 5000);
    PK_CHECK_EQ(pk_prof_stats_get(p, id, &st), 0);
    PK_CHECK_EQ(st.count, 2);
    PK_CHECK_EQ(st.clamped, 1);
    PK_CHECK_EQ(st.max, 1000);
    /* pk_prof_hist_merge adds into a histogram of the same shape */
    PK_CHECK_EQ(pk_hist_create(&h, 1000, 2), 0);
    pk_hist_record(h, 7);
    PK_CHECK_EQ(pk_prof_hist_merge(p, id, h), 0);
    PK_CHECK_EQ(pk_hist_count(h), 3);
    PK_CHECK_EQ(pk_hist_clamped(h), 1);
    PK_CHECK_EQ(pk_hist_percentile(h, 0), 7);
    pk_hist_destroy(h);
    pk_prof_destroy(p);
    /* defaults: 1 hour, 3 digits */
    PK_CHECK_EQ(pk_prof_create(&p, NULL), 0);
    id = pk_prof_label(p, "y");
    pk_prof_record(p, id, HOUR_NS);
    pk_prof_record(p, id, HOUR_NS + 1);
    PK_CHECK_EQ(pk_prof_stats_get(p, id, &st), 0);
    PK_CHECK_EQ(st.clamped, 1);
    PK_CHECK_EQ(pk_hist_create(&h, HOUR_NS, 3), 0);
    PK_CHECK_EQ(pk_prof_hist_merge(p, id, h), 0);
    pk_hist_destroy(h);
    pk_prof_destroy(p);
}

static void test_scope_and_now(void)
{
    pk_prof *p;
    pk_prof_stats st;
    uint64_t a, b;
    int id, i;
    volatile int sink = 0;
    a = pk_prof_now();
    b = pk_prof_now();
    PK_CHECK(b >= a);
    PK_CHECK_EQ(pk_prof_create(&p, NULL), 0);
    id = pk_prof_label(p, "scope");
    for (i = 0; i < 3; i++) {
        PK_PROF_SCOPE(p, id) { sink += i; }
    }
    PK_PROF_SCOPE(p, id)
    pk_test_sleep_ns(2000000); /* a statement works too; nested scopes on one line are fine */
    PK_CHECK_EQ(pk_prof_stats_get(p, id, &st), 0);
    PK_CHECK_EQ(st.count, 4);
    PK_CHECK(st.max >= 2000000 - 2000000 / 1000);
    PK_CHECK(sink == 3);
    pk_prof_destroy(p);
}

/* Many profilers in one thread, recorded into in turn (each switch misses the one-entry thread
   cache), one destroyed and another made (maybe at the same address): counts go to the right place. */
static void test_many_profilers(void)
{
    pk_prof *ps[10];
    pk_prof_stats st;
    int i, r;
    for (i = 0; i < 10; i++) {
        PK_CHECK_EQ(pk_prof_create(&ps[i], NULL), 0);
        PK_CHECK_EQ(pk_prof_label(ps[i], "x"), 0);
    }
    for (r = 0; r < 100; r++)
        for (i = 0; i < 10; i++) pk_prof_record(ps[i], 0, (uint64_t)(i + 1) * 1000);
    for (i = 0; i < 10; i++) {
        PK_CHECK_EQ(pk_prof_stats_get(ps[i], 0, &st), 0);
        PK_CHECK_EQ(st.count, 100);
        PK_CHECK_EQ(st.min, (i + 1) * 1000);
        PK_CHECK_EQ(st.max, (i + 1) * 1000);
    }
    for (r = 0; r < 20; r++) { /* destroy and remake: no stale shard is ever used */
        pk_prof_destroy(ps[3]);
        PK_CHECK_EQ(pk_prof_create(&ps[3], NULL), 0);
        PK_CHECK_EQ(pk_prof_label(ps[3], "x"), 0);
        pk_prof_record(ps[3], 0, 1);
        PK_CHECK_EQ(pk_prof_stats_get(ps[3], 0, &st), 0);
        PK_CHECK_EQ(st.count, 1);
    }
    for (i = 0; i < 10; i++) pk_prof_destroy(ps[i]);
}

/* ---- concurrency ---- */

typedef struct rec_arg {
    pk_prof *p;
    int ids[3];
    long n;
    uint64_t seed;
} rec_arg;

static void *recorder(void *v)
{
    rec_arg *a = (rec_arg *)v;
    long i;
    for (i = 0; i < a->n; i++) {
        uint64_t x = pk_test_rand(&a->seed);
        pk_prof_record(a->p, a->ids[0], x % 100000);   /* the same label in every thread */
        if (i % 4 == 0) pk_prof_record(a->p, a->ids[1 + (x >> 40) % 2], x % 1000);
    }
    return NULL;
}

static volatile int g_stop_reader;

static void *reader(void *v)
{
    rec_arg *a = (rec_arg *)v;
    uint64_t last = 0;
    long rounds = 0;
    while (!__atomic_load_n(&g_stop_reader, __ATOMIC_ACQUIRE)) {
        pk_prof_stats st;
        FILE *f = tmpfile();
        PK_CHECK_EQ(pk_prof_stats_get(a->p, a->ids[0], &st), 0);
        PK_CHECK_MSG(st.count >= last, "count went back: %llu after %llu", (unsigned long long)st.count,
                     (unsigned long long)last);
        PK_CHECK(st.count == 0 || (st.min <= st.p50 && st.p50 <= st.p99 && st.p99 <= st.max));
        last = st.count;
        if (f) {
            PK_CHECK_EQ(pk_prof_report(a->p, f, (int)(rounds % 4)), 0);
            fclose(f);
        }
        rounds++;
    }
    return NULL;
}

static void test_threads(void)
{
    pk_prof *p;
    pthread_t t[4], rt;
    rec_arg a[4], ra;
    pk_prof_stats st, s1, s2;
    long n = pk_test_scale(400000);
    int i, id, id1, id2;
    PK_CHECK_EQ(pk_prof_create(&p, NULL), 0);
    id = pk_prof_label(p, "shared");
    id1 = pk_prof_label(p, "side-1");
    id2 = pk_prof_label(p, "side-2");
    memset(&ra, 0, sizeof ra);
    ra.p = p;
    ra.ids[0] = id;
    g_stop_reader = 0;
    pthread_create(&rt, NULL, reader, &ra);
    for (i = 0; i < 4; i++) {
        a[i].p = p;
        a[i].ids[0] = id;
        a[i].ids[1] = id1;
        a[i].ids[2] = id2;
        a[i].n = n;
        a[i].seed = 100 + (uint64_t)i;
        pthread_create(&t[i], NULL, recorder, &a[i]);
    }
    for (i = 0; i < 4; i++) pthread_join(t[i], NULL); /* the threads exit: their shards fold in */
    __atomic_store_n(&g_stop_reader, 1, __ATOMIC_RELEASE);
    pthread_join(rt, NULL);
    PK_CHECK_EQ(pk_prof_stats_get(p, id, &st), 0);
    PK_CHECK_EQ(st.count, 4 * n);
    PK_CHECK_EQ(pk_prof_stats_get(p, id1, &s1), 0);
    PK_CHECK_EQ(pk_prof_stats_get(p, id2, &s2), 0);
    PK_CHECK_EQ(s1.count + s2.count, 4 * ((n + 3) / 4));
    PK_CHECK(st.max < 100000);
    PK_CHECK(within(st.p50, 50000, 1));
    PK_CHECK(p->shards == NULL); /* every thread exited: no shard left */
    pk_prof_destroy(p);
}

/* A thread's exit frees its shard: memory follows live threads. */
static void test_thread_exit_frees(void)
{
    pk_prof *p;
    pthread_t t;
    rec_arg a;
    pk_prof_stats st;
    long live0;
    int r;
    PK_CHECK_EQ(pk_prof_create(&p, NULL), 0);
    memset(&a, 0, sizeof a);
    a.p = p;
    a.ids[0] = pk_prof_label(p, "a");
    a.ids[1] = pk_prof_label(p, "b");
    a.ids[2] = pk_prof_label(p, "c");
    a.n = 1000;
    live0 = pk_test_alloc_live();
    for (r = 0; r < 5; r++) {
        a.seed = (uint64_t)r;
        pthread_create(&t, NULL, recorder, &a);
        pthread_join(t, NULL);
        PK_CHECK_EQ(pk_test_alloc_live(), live0);
    }
    PK_CHECK_EQ(pk_prof_stats_get(p, a.ids[0], &st), 0);
    PK_CHECK_EQ(st.count, 5000);
    /* this thread's shard stays until destroy, which frees it */
    pk_prof_record(p, a.ids[0], 1);
    PK_CHECK(pk_test_alloc_live() > live0);
    pk_prof_destroy(p);
}

typedef struct reset_arg {
    pk_prof *p;
    int id;
    int phase; /* 0 record before, 1 wait, 2 record after */
} reset_arg;

static void *reset_worker(void *v)
{
    reset_arg *a = (reset_arg *)v;
    int i;
    for (i = 0; i < 1000; i++) pk_prof_record(a->p, a->id, 100);
    __atomic_store_n(&a->phase, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&a->phase, __ATOMIC_ACQUIRE) != 2) pk_test_sleep_ns(100000);
    for (i = 0; i < 10; i++) pk_prof_record(a->p, a->id, 300);
    __atomic_store_n(&a->phase, 3, __ATOMIC_RELEASE);
    while (__atomic_load_n(&a->phase, __ATOMIC_ACQUIRE) != 4) pk_test_sleep_ns(100000);
    return NULL;
}

static void test_prof_reset(void)
{
    pk_prof *p;
    pthread_t t;
    reset_arg a;
    pk_prof_stats st;
    int other;
    PK_CHECK_EQ(pk_prof_create(&p, NULL), 0);
    a.p = p;
    a.id = pk_prof_label(p, "r");
    a.phase = 0;
    other = pk_prof_label(p, "other");
    pk_prof_record(p, a.id, 50);
    pk_prof_record(p, other, 50);
    pthread_create(&t, NULL, reset_worker, &a);
    while (__atomic_load_n(&a.phase, __ATOMIC_ACQUIRE) != 1) pk_test_sleep_ns(100000);
    PK_CHECK_EQ(pk_prof_stats_get(p, a.id, &st), 0);
    PK_CHECK_EQ(st.count, 1001);
    pk_prof_reset(p); /* the worker's shard is live and holds 1000 */
    PK_CHECK_EQ(pk_prof_stats_get(p, a.id, &st), 0);
    PK_CHECK_EQ(st.count, 0);
    PK_CHECK_EQ(pk_prof_labels(p), 2); /* labels kept */
    PK_CHECK_EQ(pk_prof_label(p, "r"), a.id);
    __atomic_store_n(&a.phase, 2, __ATOMIC_RELEASE);
    while (__atomic_load_n(&a.phase, __ATOMIC_ACQUIRE) != 3) pk_test_sleep_ns(100000);
    pk_prof_record(p, a.id, 200);
    PK_CHECK_EQ(pk_prof_stats_get(p, a.id, &st), 0);
    PK_CHECK_EQ(st.count, 11);
    PK_CHECK_EQ(st.min, 200);
    PK_CHECK_EQ(st.max, 300);
    PK_CHECK_EQ(pk_prof_stats_get(p, other, &st), 0);
    PK_CHECK_EQ(st.count, 0);
    __atomic_store_n(&a.phase, 4, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    PK_CHECK_EQ(pk_prof_stats_get(p, a.id, &st), 0);
    PK_CHECK_EQ(st.count, 11); /* folded in at exit, not doubled */
    pk_prof_reset(p);
    pk_prof_reset(p);
    PK_CHECK_EQ(pk_prof_stats_get(p, a.id, &st), 0);
    PK_CHECK_EQ(st.count, 0);
    pk_prof_destroy(p);
}

/* ---- a small JSON parser (RFC 8259), enough to read the report back ---- */

typedef struct jv jv;
struct jv {
    int type; /* 'o' object, 'a' array, 's' string, 'n' number, 't' true, 'f' false, 'z' null */
    char *str;
    double num;
    int n;
    char **keys;
    jv **items;
};

typedef struct jp {
    const char *s;
    size_t i, len;
    int err;
} jp;

static void jv_free(jv *v)
{
    int i;
    if (!v) return;
    for (i = 0; i < v->n; i++) {
        if (v->keys) free(v->keys[i]);
        jv_free(v->items[i]);
    }
    free(v->keys);
    free(v->items);
    free(v->str);
    free(v);
}

static void jp_ws(jp *p)
{
    while (p->i < p->len && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static void put_utf8(char *out, size_t *o, unsigned cp)
{
    if (cp < 0x80) out[(*o)++] = (char)cp;
    else if (cp < 0x800) out[(*o)++] = (char)(0xc0 | (cp >> 6)), out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    else if (cp < 0x10000)
        out[(*o)++] = (char)(0xe0 | (cp >> 12)), out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f)),
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    else
        out[(*o)++] = (char)(0xf0 | (cp >> 18)), out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f)),
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f)), out[(*o)++] = (char)(0x80 | (cp & 0x3f));
}

static int hex4(const char *s, unsigned *out)
{
    int i;
    *out = 0;
    for (i = 0; i < 4; i++) {
        char c = s[i];
        *out <<= 4;
        if (c >= '0' && c <= '9') *out |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') *out |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') *out |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    return 0;
}

static char *jp_string(jp *p)
{
    char *out;
    size_t o = 0;
    if (p->i >= p->len || p->s[p->i] != '"') return p->err = 1, (char *)NULL;
    p->i++;
    out = (char *)malloc(p->len * 4 + 1);
    while (p->i < p->len && p->s[p->i] != '"') {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c < 0x20) return p->err = 1, free(out), (char *)NULL; /* raw control characters are not JSON */
        if (c == '\\') {
            char e;
            p->i++;
            if (p->i >= p->len) break;
            e = p->s[p->i++];
            if (e == '"' || e == '\\' || e == '/') out[o++] = e;
            else if (e == 'b') out[o++] = '\b';
            else if (e == 'f') out[o++] = '\f';
            else if (e == 'n') out[o++] = '\n';
            else if (e == 'r') out[o++] = '\r';
            else if (e == 't') out[o++] = '\t';
            else if (e == 'u') {
                unsigned cp, lo;
                if (p->i + 4 > p->len || hex4(p->s + p->i, &cp)) return p->err = 1, free(out), (char *)NULL;
                p->i += 4;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (p->i + 6 > p->len || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u' || hex4(p->s + p->i + 2, &lo) ||
                        lo < 0xdc00 || lo > 0xdfff)
                        return p->err = 1, free(out), (char *)NULL;
                    p->i += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                    return p->err = 1, free(out), (char *)NULL;
                }
                put_utf8(out, &o, cp);
            } else {
                return p->err = 1, free(out), (char *)NULL;
            }
        } else {
            int n = pk_prof__utf8_len((const unsigned char *)p->s + p->i), k;
            if (n == 0) return p->err = 1, free(out), (char *)NULL; /* JSON text must be UTF-8 */
            for (k = 0; k < n; k++) out[o++] = p->s[p->i++];
        }
    }
    if (p->i >= p->len) return p->err = 1, free(out), (char *)NULL;
    p->i++;
    out[o] = 0;
    return out;
}

static jv *jp_value(jp *p, int depth);

static jv *jv_new(int type)
{
    jv *v = (jv *)calloc(1, sizeof *v);
    v->type = type;
    return v;
}

static void jv_push(jv *v, char *key, jv *item)
{
    v->items = (jv **)realloc(v->items, (size_t)(v->n + 1) * sizeof *v->items);
    if (v->type == 'o') v->keys = (char **)realloc(v->keys, (size_t)(v->n + 1) * sizeof *v->keys), v->keys[v->n] = key;
    v->items[v->n++] = item;
}

static jv *jp_value(jp *p, int depth)
{
    jv *v;
    jp_ws(p);
    if (p->i >= p->len || depth > 64) return p->err = 1, (jv *)NULL;
    if (p->s[p->i] == '{' || p->s[p->i] == '[') {
        int obj = p->s[p->i] == '{';
        char close = obj ? '}' : ']';
        v = jv_new(obj ? 'o' : 'a');
        p->i++;
        jp_ws(p);
        if (p->i < p->len && p->s[p->i] == close) {
            p->i++;
            return v;
        }
        for (;;) {
            char *key = NULL;
            jv *item;
            jp_ws(p);
            if (obj) {
                key = jp_string(p);
                jp_ws(p);
                if (p->err || p->i >= p->len || p->s[p->i] != ':') return free(key), p->err = 1, jv_free(v), (jv *)NULL;
                p->i++;
            }
            item = jp_value(p, depth + 1);
            if (p->err) return free(key), jv_free(item), jv_free(v), (jv *)NULL;
            jv_push(v, key, item);
            jp_ws(p);
            if (p->i < p->len && p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            if (p->i < p->len && p->s[p->i] == close) {
                p->i++;
                return v;
            }
            return p->err = 1, jv_free(v), (jv *)NULL;
        }
    }
    if (p->s[p->i] == '"') {
        v = jv_new('s');
        v->str = jp_string(p);
        if (p->err) return jv_free(v), (jv *)NULL;
        return v;
    }
    if (p->len - p->i >= 4 && !strncmp(p->s + p->i, "true", 4)) return p->i += 4, jv_new('t');
    if (p->len - p->i >= 5 && !strncmp(p->s + p->i, "false", 5)) return p->i += 5, jv_new('f');
    if (p->len - p->i >= 4 && !strncmp(p->s + p->i, "null", 4)) return p->i += 4, jv_new('z');
    { /* number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
        size_t st = p->i;
        char buf[64];
        if (p->i < p->len && p->s[p->i] == '-') p->i++;
        if (p->i < p->len && p->s[p->i] == '0') p->i++;
        else if (p->i < p->len && p->s[p->i] >= '1' && p->s[p->i] <= '9')
            while (p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
        else return p->err = 1, (jv *)NULL;
        if (p->i < p->len && p->s[p->i] == '.') {
            p->i++;
            if (!(p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9')) return p->err = 1, (jv *)NULL;
            while (p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
        }
        if (p->i < p->len && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
            p->i++;
            if (p->i < p->len && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
            if (!(p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9')) return p->err = 1, (jv *)NULL;
            while (p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
        }
        if (p->i - st >= sizeof buf) return p->err = 1, (jv *)NULL;
        memcpy(buf, p->s + st, p->i - st);
        buf[p->i - st] = 0;
        v = jv_new('n');
        v->num = strtod(buf, NULL);
        return v;
    }
}

static jv *json_parse(const char *s, size_t len)
{
    jp p;
    jv *v;
    p.s = s;
    p.i = 0;
    p.len = len;
    p.err = 0;
    v = jp_value(&p, 0);
    jp_ws(&p);
    if (p.err || p.i != p.len) {
        jv_free(v);
        return NULL;
    }
    return v;
}

static jv *jv_get(const jv *o, const char *key)
{
    int i;
    if (!o || o->type != 'o') return NULL;
    for (i = 0; i < o->n; i++)
        if (!strcmp(o->keys[i], key)) return o->items[i];
    return NULL;
}

static void test_json_parser_itself(void)
{
    static const char *good[] = {"{}", "[]", "[1,-0.5e3,\"a\\u00e9\\ud83d\\ude00\",true,false,null,{\"k\":[]}]", " 0 "};
    static const char *bad[] = {"{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\x01\"", "\"\\x\"", "[1] x", "\"\xff\"",
                                "{'a':1}", "\"\\ud800\""};
    size_t i;
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        jv *v = json_parse(good[i], strlen(good[i]));
        PK_CHECK_MSG(v != NULL, "valid JSON refused: %s", good[i]);
        jv_free(v);
    }
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        jv *v = json_parse(bad[i], strlen(bad[i]));
        PK_CHECK_MSG(v == NULL, "invalid JSON accepted: %s", bad[i]);
        jv_free(v);
    }
}

/* ---- reports parsed back ---- */

static char *report_to_string(pk_prof *p, int format, size_t *len)
{
    FILE *f = tmpfile();
    char *buf;
    long n;
    if (!f) return NULL;
    PK_CHECK_EQ(pk_prof_report(p, f, format), 0);
    n = ftell(f);
    rewind(f);
    buf = (char *)malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Splits one CSV record (RFC 4180) at *pos; returns the field count, fields in out. */
static int csv_record(const char *s, size_t len, size_t *pos, char out[16][256])
{
    int nf = 0;
    size_t i = *pos;
    if (i >= len) return 0;
    for (;;) {
        size_t o = 0;
        if (i < len && s[i] == '"') {
            i++;
            while (i < len) {
                if (s[i] == '"' && i + 1 < len && s[i + 1] == '"') {
                    if (o < 255) out[nf][o++] = '"';
                    i += 2;
                } else if (s[i] == '"') {
                    i++;
                    break;
                } else {
                    if (o < 255) out[nf][o++] = s[i];
                    i++;
                }
            }
        } else {
            while (i < len && s[i] != ',' && s[i] != '\n') {
                if (o < 255) out[nf][o++] = s[i];
                i++;
            }
        }
        out[nf][o] = 0;
        nf++;
        if (i < len && s[i] == ',' && nf < 16) {
            i++;
            continue;
        }
        if (i < len && s[i] == '\n') i++;
        break;
    }
    *pos = i;
    return nf;
}

static int display_cols(const char *s, size_t n)
{
    int c = 0;
    size_t i;
    for (i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80) c++;
    return c;
}

static void test_reports(void)
{
    static const char *names[] = {"plain", "with \"quotes\"", "back\\slash", "comma,separated", "pipe|bar",
                                  "new\nline",
                                  "tab\tand\x01"
                                  "ctl",
                                  "caf\xc3\xa9 \xc2\xb5s", "", "bad\xff"
                                                                "utf8"};
    enum { NL = sizeof names / sizeof names[0] };
    pk_prof *p;
    int ids[NL], i, f;
    uint64_t counts[NL];
    uint64_t seed = 5;
    PK_CHECK_EQ(pk_prof_create(&p, NULL), 0);
    for (i = 0; i < NL; i++) {
        int k, n = i == 8 ? 0 : 1 + i * 37; /* one label with no samples */
        ids[i] = pk_prof_label(p, names[i]);
        PK_CHECK_EQ(ids[i], i);
        for (k = 0; k < n; k++) pk_prof_record(p, ids[i], draw(DIST_LOGUNIFORM, &seed) % 100000000000ull);
        counts[i] = (uint64_t)n;
    }
    pk_prof_record(p, ids[0], HOUR_NS * 3); /* one clamped */
    counts[0]++;

    for (f = 0; f < 4; f++) {
        size_t len, pos = 0;
        char *out = report_to_string(p, f, &len);
        if (!out) continue;
        if (f == PK_PROF_JSON) {
            jv *root = json_parse(out, len), *labels;
            PK_CHECK_MSG(root != NULL, "JSON report does not parse:\n%s", out);
            labels = jv_get(root, "labels");
            PK_CHECK(jv_get(root, "unit") && !strcmp(jv_get(root, "unit")->str, "ns"));
            PK_CHECK(labels && labels->type == 'a' && labels->n == NL);
            for (i = 0; labels && i < labels->n && i < NL; i++) {
                jv *o = labels->items[i], *name = jv_get(o, "name"), *count = jv_get(o, "count");
                pk_prof_stats st;
                pk_prof_stats_get(p, ids[i], &st);
                PK_CHECK(name && name->type == 's');
                if (name && i != NL - 1) PK_CHECK_MSG(!strcmp(name->str, names[i]), "name %d: %s", i, name->str);
                if (name && i == NL - 1) PK_CHECK(!strcmp(name->str, "bad\xef\xbf\xbdutf8")); /* U+FFFD */
                PK_CHECK(count && count->type == 'n' && count->num == (double)counts[i]);
                PK_CHECK(jv_get(o, "p99") && jv_get(o, "p99")->num == (double)st.p99);
                PK_CHECK(jv_get(o, "p999") && jv_get(o, "max") && jv_get(o, "mean") && jv_get(o, "stddev"));
                PK_CHECK(jv_get(o, "clamped") && jv_get(o, "clamped")->num == (i == 0 ? 1.0 : 0.0));
            }
            jv_free(root);
        } else if (f == PK_PROF_CSV) {
            char fields[16][256];
            int nf = csv_record(out, len, &pos, fields);
            PK_CHECK_EQ(nf, 12);
            PK_CHECK(!strcmp(fields[0], "label") && !strcmp(fields[1], "count") && !strcmp(fields[4], "p90_ns"));
            for (i = 0; i < NL; i++) {
                pk_prof_stats st;
                nf = csv_record(out, len, &pos, fields);
                PK_CHECK_EQ(nf, 12);
                PK_CHECK_MSG(!strcmp(fields[0], names[i]), "CSV name %d: %s", i, fields[0]);
                PK_CHECK_EQ(strtoull(fields[1], NULL, 10), counts[i]);
                pk_prof_stats_get(p, ids[i], &st);
                PK_CHECK_EQ(strtoull(fields[5], NULL, 10), st.p95);
                PK_CHECK_EQ(strtoull(fields[8], NULL, 10), st.max);
            }
            PK_CHECK_EQ(pos, len);
        } else {
            /* text and Markdown: one line per label plus the header (and Markdown's rule); control
               characters and invalid UTF-8 in names are shown as C escapes, so rows stay aligned */
            int lines = 0, width = -1, aligned = 1;
            size_t st0 = 0, k;
            for (k = 0; k <= len; k++) {
                if (k == len || out[k] == '\n') {
                    if (k > st0) {
                        lines++;
                        if (f == PK_PROF_MARKDOWN) {
                            /* every row: | cell | ... | with 12 unescaped bars inside */
                            size_t j;
                            int bars = 0;
                            for (j = st0; j < k; j++)
                                if (out[j] == '|' && (j == st0 || out[j - 1] != '\\')) bars++;
                            PK_CHECK_MSG(bars == 13, "Markdown row with %d bars: %.*s", bars, (int)(k - st0), out + st0);
                        } else {
                            int w = display_cols(out + st0, k - st0);
                            if (width < 0) width = w;
                            else if (w != width) aligned = 0;
                        }
                    }
                    st0 = k + 1;
                }
            }
            if (f == PK_PROF_MARKDOWN) {
                PK_CHECK_EQ(lines, NL + 2);
                PK_CHECK(strstr(out, "pipe\\|bar") != NULL);
                PK_CHECK(strstr(out, "| label | count | min | p50 |") == out);
            } else {
                PK_CHECK_EQ(lines, NL + 1);
                PK_CHECK(strstr(out, "new\\nline") && strstr(out, "tab\\tand\\x01ctl") && strstr(out, "bad\\xffutf8"));
                PK_CHECK_MSG(aligned, "text report not aligned:\n%s", out);
                PK_CHECK(strncmp(out, "label", 5) == 0);
                PK_CHECK(strstr(out, "\xc2\xb5s") || strstr(out, "ms")); /* human units */
            }
        }
        free(out);
    }
    /* an empty profiler still makes valid reports */
    pk_prof_destroy(p);
    PK_CHECK_EQ(pk_prof_create(&p, NULL), 0);
    {
        size_t len;
        char *out = report_to_string(p, PK_PROF_JSON, &len);
        jv *root = out ? json_parse(out, len) : NULL;
        PK_CHECK(root != NULL);
        jv_free(root);
        free(out);
        out = report_to_string(p, PK_PROF_CSV, &len);
        PK_CHECK(out && !strncmp(out, "label,count,", 12));
        free(out);
    }
    pk_prof_destroy(p);
}

static void test_human_units(void)
{
    char buf[32];
    pk_prof__human(buf, sizeof buf, 999);
    PK_CHECK(!strcmp(buf, "999ns"));
    pk_prof__human(buf, sizeof buf, 1000);
    PK_CHECK(!strcmp(buf, "1.000\xc2\xb5s"));
    pk_prof__human(buf, sizeof buf, 123456);
    PK_CHECK(!strcmp(buf, "123.5\xc2\xb5s"));
    pk_prof__human(buf, sizeof buf, 45600000);
    PK_CHECK(!strcmp(buf, "45.60ms"));
    pk_prof__human(buf, sizeof buf, 3.6e12);
    PK_CHECK(!strcmp(buf, "3600s"));
}

/* ---- compare ---- */

static void fill(pk_prof *p, int id, int n, double scale, uint64_t seed)
{
    int i;
    for (i = 0; i < n; i++) {
        /* latency-like: log-normal-ish around 10 µs * scale */
        double u = unif(&seed), w = unif(&seed);
        double x = 10000.0 * scale * exp(0.5 * sqrt(-2 * log(u + 1e-300)) * cos(6.283185307179586 * w));
        pk_prof_record(p, id, (uint64_t)x);
    }
}

static void test_compare(void)
{
    pk_prof *p;
    pk_prof_cmp c;
    int base, same, shifted, indep, faster, trial, false_pos = 0, misses = 0;
    int trials = (int)pk_test_scale(200);
    double z2 = 0;
    PK_CHECK_EQ(pk_prof_create(&p, NULL), 0);
    base = pk_prof_label(p, "base");
    same = pk_prof_label(p, "same");
    shifted = pk_prof_label(p, "2x slower");
    faster = pk_prof_label(p, "2x faster");
    indep = pk_prof_label(p, "independent");
    fill(p, base, 3000, 1, 1);
    fill(p, same, 3000, 1, 1);    /* the very same samples */
    fill(p, indep, 3000, 1, 99);  /* same distribution, other samples */
    fill(p, shifted, 3000, 2, 7); /* twice as slow */
    fill(p, faster, 3000, 0.5, 8);
    PK_CHECK_EQ(pk_prof_compare(p, base, same, &c), 0);
    PK_CHECK_EQ(c.significant, 0);
    PK_CHECK(fabs(c.z) < 1e-9);
    PK_CHECK(fabs(c.ratio_p50 - 1) < 1e-12 && fabs(c.ratio_mean - 1) < 1e-12);
    PK_CHECK(fabs(c.improvement_pct) < 1e-9);
    PK_CHECK(c.p_value > 0.99);
    PK_CHECK_EQ(pk_prof_compare(p, base, indep, &c), 0);
    PK_CHECK_EQ(c.significant, 0);
    PK_CHECK(fabs(c.ratio_mean - 1) < 0.05);
    PK_CHECK_EQ(pk_prof_compare(p, base, shifted, &c), 0);
    PK_CHECK_EQ(c.significant, 1);
    PK_CHECK(c.z > 10);
    PK_CHECK(c.p_value < 1e-6);
    PK_CHECK(fabs(c.ratio_p50 - 2) < 0.1 && fabs(c.ratio_mean - 2) < 0.1);
    PK_CHECK(fabs(c.improvement_pct + 100) < 10); /* the candidate takes twice as long */
    PK_CHECK_EQ(pk_prof_compare(p, base, faster, &c), 0);
    PK_CHECK_EQ(c.significant, 1);
    PK_CHECK(c.z < -10);
    PK_CHECK(fabs(c.improvement_pct - 50) < 5); /* half the time: 50% better */
    PK_CHECK_EQ(pk_prof_compare(p, faster, base, &c), 0);
    PK_CHECK(c.z > 10);

    /* Few samples: 50 baseline samples in one bucket against 1 larger sample. The exact test's
       smallest two-sided p is 2 / C(51, 1) = 0.039; the normal approximation alone said z 6.9,
       p 4e-12, significant. 3 samples against 30, all larger: 2 / C(33, 3) = 3.7e-4, significant. */
    pk_prof_reset(p);
    {
        int i;
        for (i = 0; i < 50; i++) pk_prof_record(p, base, 100000 + (uint64_t)i);
        pk_prof_record(p, indep, 200000);
        PK_CHECK_EQ(pk_prof_compare(p, base, indep, &c), 0);
        PK_CHECK_EQ(c.significant, 0);
        PK_CHECK(c.p_value >= 2.0 / 51 - 1e-12);
        PK_CHECK(c.z > 0);
        pk_prof_reset(p);
        for (i = 0; i < 30; i++) pk_prof_record(p, base, 100000 + 1000 * (uint64_t)i);
        for (i = 0; i < 3; i++) pk_prof_record(p, indep, 900000 + 1000 * (uint64_t)i);
        PK_CHECK_EQ(pk_prof_compare(p, base, indep, &c), 0);
        PK_CHECK_EQ(c.significant, 1);
        PK_CHECK(c.p_value >= 2.0 / 5456 - 1e-12 && c.p_value < 0.01);
    }

    /* calibration: with alpha 0.01, same-distribution pairs are significant about 1% of the time;
       a 2x shift on 3000 samples, always */
    for (trial = 0; trial < trials; trial++) {
        pk_prof_reset(p);
        fill(p, base, 2000, 1, 1000 + (uint64_t)trial);
        fill(p, indep, 2000, 1, 5000 + (uint64_t)trial);
        PK_CHECK_EQ(pk_prof_compare(p, base, indep, &c), 0);
        false_pos += c.significant;
        z2 += c.z * c.z;
        if (trial % 10 == 0) {
            fill(p, shifted, 3000, 2, 9000 + (uint64_t)trial);
            PK_CHECK_EQ(pk_prof_compare(p, base, shifted, &c), 0);
            misses += !c.significant;
        }
    }
    printf("    null pairs significant: %d of %d (alpha 0.01), mean z^2 %.2f (1 expected); 2x shifts missed: %d\n",
           false_pos, trials, z2 / trials, misses);
    if (trials >= 100) PK_CHECK(z2 / trials > 0.6 && z2 / trials < 1.5); /* z is standard normal under the null */
    PK_CHECK(false_pos <= 2 + trials / 25);
    PK_CHECK_EQ(misses, 0);
    pk_prof_destroy(p);

    /* the p-value helper against known values */
    PK_CHECK(fabs(pk_prof__erfc(1.959963984540054 / 1.4142135623730951) - 0.05) < 1e-6);
    PK_CHECK(fabs(pk_prof__erfc(0) - 1) < 1e-6);
    PK_CHECK(fabs(pk_prof__sqrt(2) - 1.4142135623730951) < 1e-15);
    PK_CHECK(fabs(pk_prof__exp(-3.5) - exp(-3.5)) < 1e-15);
    PK_CHECK(fabs(pk_prof__exp(10) / exp(10) - 1) < 1e-14);
}

/* ---- allocation-failure sweeps ---- */

static int sweep_hist_create(void *ctx)
{
    pk_hist *h = NULL;
    int rc = pk_hist_create(&h, HOUR_NS, 3);
    (void)ctx;
    if (rc == -ENOMEM) return h == NULL ? 0 : 1;
    if (rc != 0) return 1;
    pk_hist_record(h, 5);
    rc = pk_hist_count(h) == 1 ? 0 : 1;
    pk_hist_destroy(h);
    return rc;
}

static int sweep_prof_create(void *ctx)
{
    pk_prof *p = NULL;
    int rc = pk_prof_create(&p, NULL);
    (void)ctx;
    if (rc == -ENOMEM) return p == NULL ? 0 : 1;
    if (rc != 0) return 1;
    pk_prof_destroy(p);
    return 0;
}

/* Label creation, the recording slow path (shard, hists array, histogram) in this thread and in
   another one, and the thread-exit fold: every call either works or fails with -ENOMEM, and no
   record is lost either way. */
static void *sweep_thread(void *v)
{
    pk_prof *p = (pk_prof *)v;
    int i;
    for (i = 0; i < 5; i++) pk_prof_record(p, i % 2, 1000 + (uint64_t)i);
    return NULL;
}

static int sweep_labels(void *ctx)
{
    pk_prof *p = NULL;
    pk_prof_stats st;
    pthread_t t;
    int rc, i, ok = 0, nl, expect[8];
    char name[16];
    (void)ctx;
    rc = pk_prof_create(&p, NULL);
    if (rc == -ENOMEM) return 0;
    if (rc) return 1;
    memset(expect, 0, sizeof expect);
    for (i = 0; i < 8; i++) {
        snprintf(name, sizeof name, "L%d", i);
        rc = pk_prof_label(p, name);
        if (rc == -ENOMEM) {
            if (pk_prof_labels(p) != ok) goto bad; /* nothing half-made */
            rc = pk_prof_label(p, name);         /* the next try works: the failure was one allocation */
        }
        if (rc != ok) goto bad;
        ok++;
        if (pk_prof_label(p, name) != rc) goto bad;
    }
    nl = pk_prof_labels(p);
    for (i = 0; i < 40; i++) {
        pk_prof_record(p, i % nl, (uint64_t)(i + 1) * 10);
        expect[i % nl]++;
    }
    if (pthread_create(&t, NULL, sweep_thread, p) == 0) {
        pthread_join(t, NULL);
        expect[0] += 3, expect[1] += 2;
    }
    pk_prof_reset(p);
    for (i = 0; i < nl; i++) expect[i] = 0;
    for (i = 0; i < 16; i++) {
        pk_prof_record(p, i % nl, 77);
        expect[i % nl]++;
    }
    for (i = 0; i < nl; i++) {
        if (pk_prof_stats_get(p, i, &st) != 0 || st.count != (uint64_t)expect[i]) goto bad;
    }
    pk_prof_destroy(p);
    return 0;
bad:
    pk_prof_destroy(p);
    return 1;
}

static void test_alloc_failures(void)
{
    PK_CHECK(pk_test_alloc_sweep("pk_hist_create", sweep_hist_create, NULL) >= 1);
    PK_CHECK(pk_test_alloc_sweep("pk_prof_create", sweep_prof_create, NULL) >= 2);
    PK_CHECK(pk_test_alloc_sweep("labels, records, thread exit, reset", sweep_labels, NULL) >= 20);
}

/* records with every 3rd allocation failing, from 3 threads: none lost */
static void *fail_thread(void *v)
{
    pk_prof *p = (pk_prof *)v;
    int i;
    for (i = 0; i < 3000; i++) pk_prof_record(p, i % 4, (uint64_t)i);
    return NULL;
}

static void test_records_under_alloc_failure(void)
{
    pk_prof *p;
    pthread_t t[3];
    pk_prof_stats st;
    uint64_t total = 0;
    int i;
    long live0 = pk_test_alloc_live();
    PK_CHECK_EQ(pk_prof_create(&p, NULL), 0);
    for (i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "%d", i);
        PK_CHECK_EQ(pk_prof_label(p, name), i);
    }
    pk_test_alloc_fail_every(3);
    for (i = 0; i < 3; i++) pthread_create(&t[i], NULL, fail_thread, p);
    fail_thread(p);
    for (i = 0; i < 3; i++) pthread_join(t[i], NULL);
    pk_test_alloc_fail_every(0);
    for (i = 0; i < 4; i++) {
        PK_CHECK_EQ(pk_prof_stats_get(p, i, &st), 0);
        total += st.count;
    }
    PK_CHECK_EQ(total, 4 * 3000);
    pk_prof_destroy(p);
    PK_CHECK_EQ(pk_test_alloc_live(), live0);
}

/* ---- regressions found by review ---- */

/* p99.9 of 1000 samples is the 999th: 99.9 / 100 * 1000 is 999.0000000000001 in doubles */
static void test_rank_rounding(void)
{
    pk_hist *h;
    pk_prof_stats st;
    int i;
    PK_CHECK_EQ(pk_hist_create(&h, HOUR_NS, 3), 0);
    pk_hist_record_n(h, 100, 999);
    pk_hist_record(h, 1000000000);
    PK_CHECK(within(pk_hist_percentile(h, 99.9), 100, 3));
    pk_hist_stats(h, &st);
    PK_CHECK(within(st.p999, 100, 3));
    PK_CHECK_EQ(st.max, 1000000000);
    pk_hist_destroy(h);
    PK_CHECK_EQ(pk_hist_create(&h, HOUR_NS, 5), 0);
    for (i = 1; i <= 100; i++) pk_hist_record(h, (uint64_t)i);
    PK_CHECK_EQ(pk_hist_percentile(h, 7), 7);
    PK_CHECK_EQ(pk_hist_percentile(h, 14), 14);
    PK_CHECK_EQ(pk_hist_percentile(h, 28), 28);
    PK_CHECK_EQ(pk_hist_percentile(h, 55), 55);
    PK_CHECK_EQ(pk_hist_percentile(h, 56), 56);
    pk_hist_destroy(h);
}

/* counts saturate instead of wrapping to an empty histogram; the comparison stays finite */
static void test_saturation_and_finite_compare(void)
{
    pk_hist *h, *g;
    pk_prof *p;
    pk_prof_cmp cmp;
    int a, b;
    PK_CHECK_EQ(pk_hist_create(&h, HOUR_NS, 2), 0);
    pk_hist_record_n(h, 100, UINT64_MAX);
    pk_hist_record(h, 200);
    PK_CHECK_EQ(pk_hist_count(h), UINT64_MAX);
    PK_CHECK(within(pk_hist_percentile(h, 50), 100, 2));
    PK_CHECK_EQ(pk_hist_create(&g, HOUR_NS, 2), 0);
    pk_hist_record_n(g, 100, (uint64_t)1 << 63);
    PK_CHECK_EQ(pk_hist_merge(g, g), 0);
    PK_CHECK_EQ(pk_hist_count(g), UINT64_MAX);
    PK_CHECK_EQ(pk_hist_merge(g, h), 0);
    PK_CHECK_EQ(pk_hist_count(g), UINT64_MAX);
    pk_hist_destroy(h);
    pk_hist_destroy(g);
    /* a full bucket stays full when one more sample lands in it (it used to wrap to 0: an empty
       histogram) */
    PK_CHECK_EQ(pk_hist_create(&h, HOUR_NS, 2), 0);
    pk_hist_record_n(h, 100, UINT64_MAX);
    pk_hist_record(h, 100);
    pk_hist_record_n(h, 100, 5);
    PK_CHECK_EQ(pk_hist_count(h), UINT64_MAX);
    PK_CHECK(within(pk_hist_percentile(h, 50), 100, 2));
    pk_hist_destroy(h);
    PK_CHECK_EQ(pk_prof_create(&p, NULL), 0);
    a = pk_prof_label(p, "zero");
    b = pk_prof_label(p, "five");
    pk_prof_record(p, a, 0);
    pk_prof_record(p, b, 5);
    PK_CHECK_EQ(pk_prof_compare(p, a, b, &cmp), 0);
    PK_CHECK(cmp.improvement_pct >= -1e308 && cmp.improvement_pct < 0);
    pk_prof_destroy(p);
    {
        char buf[32];
        PK_CHECK(strcmp(pk_prof__fixed(buf, 1.5, 3), "1.500") == 0);
        PK_CHECK(strcmp(pk_prof__fixed(buf, 0.04, 1), "0.0") == 0);
        PK_CHECK(strcmp(pk_prof__fixed(buf, 123.456, 1), "123.5") == 0);
        PK_CHECK(strcmp(pk_prof__fixed(buf, 1e19, 3), "10000000000000000000") == 0);
    }
}

/* A record whose new label's histogram cannot be allocated falls back to the label's own
   histogram; the thread's cache must not keep the shard's old (reallocated, freed) array. */
static void test_fallback_keeps_cache_valid(void)
{
    int k;
    for (k = 1; k <= 4; k++) {
        pk_prof *p;
        pk_prof_stats st;
        int a, b, i;
        PK_CHECK_EQ(pk_prof_create(&p, NULL), 0);
        a = pk_prof_label(p, "a");
        pk_prof_record(p, a, 10); /* this thread's shard and cache exist now */
        b = pk_prof_label(p, "b");
        pk_test_alloc_fail_at(k);
        pk_prof_record(p, b, 20);
        pk_test_alloc_fail_at(0);
        for (i = 0; i < 100; i++) pk_prof_record(p, a, 10); /* the fast path (ASan: no stale array) */
        pk_prof_record(p, b, 20);
        PK_CHECK_EQ(pk_prof_stats_get(p, a, &st), 0);
        PK_CHECK_EQ(st.count, 101);
        PK_CHECK_EQ(pk_prof_stats_get(p, b, &st), 0);
        PK_CHECK_EQ(st.count, 2);
        pk_prof_destroy(p);
    }
}

/* A reader's snapshot never holds a sample above its max: the writer stores max before the count. */
static pk_prof *torn_p;
static int torn_id, torn_stop;
static void *torn_writer(void *arg)
{
    uint64_t v = 16;
    (void)arg;
    while (!__atomic_load_n(&torn_stop, __ATOMIC_RELAXED)) {
        pk_prof_record(torn_p, torn_id, v);
        v += v / 8 + 1;
        if (v > (uint64_t)1 << 40) v = 16; /* max rises bucket by bucket, then starts over */
    }
    return NULL;
}
static void test_snapshot_max_consistent(void)
{
    pk_prof_config cfg;
    pk_hist *dst;
    pthread_t th;
    long it, torn = 0, n = pk_test_scale(400000);
    memset(&cfg, 0, sizeof cfg);
    cfg.max_value = (uint64_t)1 << 40;
    cfg.digits = 1;
    PK_CHECK_EQ(pk_prof_create(&torn_p, &cfg), 0);
    torn_id = pk_prof_label(torn_p, "x");
    PK_CHECK_EQ(pk_hist_create(&dst, cfg.max_value, 1), 0);
    torn_stop = 0;
    pthread_create(&th, NULL, torn_writer, NULL);
    for (it = 0; it < n; it++) {
        size_t i;
        uint64_t lo, hi;
        if (it % 64 == 0) pk_prof_reset(torn_p); /* max starts over */
        pk_hist_reset(dst);
        PK_CHECK_EQ(pk_prof_hist_merge(torn_p, torn_id, dst), 0);
        for (i = dst->L.nbuckets; i > 0 && !dst->counts[i - 1]; i--) {
        }
        if (i == 0) continue;
        pk_prof__bounds(dst, i - 1, &lo, &hi);
        if (dst->max < lo) torn++;
    }
    __atomic_store_n(&torn_stop, 1, __ATOMIC_RELAXED);
    pthread_join(th, NULL);
    printf("    %ld snapshots while recording: %ld with a sample above max\n", n, torn);
    PK_CHECK_EQ(torn, 0);
    pk_hist_destroy(dst);
    pk_prof_destroy(torn_p);
}

/* Mann-Whitney with nearly every sample in one bucket and counts near 1e17: the tie-corrected
   variance was a difference of two huge near-equal doubles and came out <= 0 (z = 0). The exact z
   for 1e17 samples at 100 against one at 200 is about 3.16e8. */
static void test_compare_huge_ties(void)
{
    pk_hist *a, *b;
    double z = 0;
    PK_CHECK_EQ(pk_hist_create(&a, HOUR_NS, 3), 0);
    PK_CHECK_EQ(pk_hist_create(&b, HOUR_NS, 3), 0);
    pk_hist_record_n(a, 100, 100000000000000000ull);
    pk_hist_record(b, 200);
    pk_prof__mwu(a, a->counts, b->counts, &z);
    PK_CHECK_MSG(z > 3.0e8 && z < 3.3e8, "z = %g, exact about 3.16e8", z);
    pk_hist_destroy(a);
    pk_hist_destroy(b);
}

/* C1 controls and U+2028/9 in a name are escaped in text and Markdown: a row stays on one line */
static void test_report_c1_escapes(void)
{
    pk_prof *p;
    char *txt;
    size_t len;
    PK_CHECK_EQ(pk_prof_create(&p, NULL), 0);
    pk_prof_record(p, pk_prof_label(p, "a\xc2\x85" "b\xe2\x80\xa8" "c"), 5);
    txt = report_to_string(p, PK_PROF_TEXT, &len);
    PK_CHECK(txt && strstr(txt, "a\\u0085b\\u2028c") != NULL);
    PK_CHECK(txt && strstr(txt, "\xc2\x85") == NULL && strstr(txt, "\xe2\x80\xa8") == NULL);
    free(txt);
    txt = report_to_string(p, PK_PROF_MARKDOWN, &len);
    PK_CHECK(txt && strstr(txt, "a\\u0085b\\u2028c") != NULL);
    free(txt);
    pk_prof_destroy(p);
}

int main(void)
{
    pk_test_main_begin("test_prof");
    PK_TEST(test_layout);
    PK_TEST(test_memory);
    PK_TEST(test_accuracy);
    PK_TEST(test_small_sets);
    PK_TEST(test_merge);
    PK_TEST(test_record_n);
    PK_TEST(test_clamping);
    PK_TEST(test_hist_reset);
    PK_TEST(test_bad_input);
    PK_TEST(test_mem_snapshot);
    PK_TEST(test_labels);
    PK_TEST(test_prof_config);
    PK_TEST(test_scope_and_now);
    PK_TEST(test_many_profilers);
    PK_TEST(test_threads);
    PK_TEST(test_thread_exit_frees);
    PK_TEST(test_prof_reset);
    PK_TEST(test_json_parser_itself);
    PK_TEST(test_reports);
    PK_TEST(test_human_units);
    PK_TEST(test_compare);
    PK_TEST(test_alloc_failures);
    PK_TEST(test_records_under_alloc_failure);
    PK_TEST(test_rank_rounding);
    PK_TEST(test_saturation_and_finite_compare);
    PK_TEST(test_fallback_keeps_cache_valid);
    PK_TEST(test_snapshot_max_consistent);
    PK_TEST(test_compare_huge_ties);
    PK_TEST(test_report_c1_escapes);
    return pk_test_main_end();
}
