/* fuzz_prof.c — libFuzzer target for pk_prof.h, checked against an exact model.

   Input: byte 0 picks digits (1..5) and a max_value (small, medium, 1 hour, UINT64_MAX); then one
   byte per operation with argument bytes:
     record v / record_n v c / merge the second histogram in / reset / percentile p / stats,
   on two histograms of one shape and a third of another shape (merges between shapes must fail
   and change nothing), and on a profiler: label (name bytes from the input, any bytes), record on
   a label (any id, valid or not), reset, stats, compare, report in each format (the JSON one is
   checked by a small grammar validator).
   The model keeps every sample of histogram A (clamped values as max_value); every percentile
   and stats figure is checked against the sorted samples within 10^-digits, count, min, max and
   clamped exactly. */
#define PK_PROF_IMPLEMENTATION
#include "pk_prof.h"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FZ_CHECK(c)                                                                                \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_prof: check failed at line %d: %s\n", __LINE__, #c);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_SAMPLES 4096
#define MAX_N 1000

typedef struct in {
    const uint8_t *d;
    size_t n, i;
} in;

static unsigned get8(in *x) { return x->i < x->n ? x->d[x->i++] : 0; }
static uint64_t get64(in *x, int bytes)
{
    uint64_t v = 0;
    int k;
    for (k = 0; k < bytes; k++) v = (v << 8) | get8(x);
    return v;
}

/* models: every sample (after clamping) with its multiplicity, of histogram A and of B */
typedef struct model {
    uint64_t vals[MAX_SAMPLES], mult[MAX_SAMPLES];
    size_t nv;
    uint64_t total, clamped;
} model;
static model g_a, g_b;

static int within(uint64_t got, uint64_t exact, int d)
{
    static const uint64_t P[6] = {1, 10, 100, 1000, 10000, 100000};
    uint64_t diff = got > exact ? got - exact : exact - got;
    return diff <= exact / P[d];
}

static int cmp_pair(const void *a, const void *b)
{
    const uint64_t *x = (const uint64_t *)a, *y = (const uint64_t *)b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* exact value at rank (1-based) of model m */
static uint64_t model_at(const model *m, uint64_t rank)
{
    static uint64_t pairs[MAX_SAMPLES * 2];
    size_t i;
    uint64_t cum = 0;
    for (i = 0; i < m->nv; i++) pairs[2 * i] = m->vals[i], pairs[2 * i + 1] = m->mult[i];
    qsort(pairs, m->nv, 2 * sizeof(uint64_t), cmp_pair);
    for (i = 0; i < m->nv; i++) {
        cum += pairs[2 * i + 1];
        if (cum >= rank) return pairs[2 * i];
    }
    return 0;
}

/* 0 when the model is full (the caller then skips the operation) */
static int model_add(model *m, uint64_t v, uint64_t c, uint64_t maxv)
{
    if (m->nv >= MAX_SAMPLES) return 0;
    if (c == 0) return 1;
    if (v > maxv) v = maxv, m->clamped += c;
    m->vals[m->nv] = v;
    m->mult[m->nv++] = c;
    m->total += c;
    return 1;
}

/* the exact rank ceil(pct / 100 * total), in integers: every pct used here is a multiple of 0.1 */
static uint64_t rank_of(double pct, uint64_t total)
{
    __extension__ typedef unsigned __int128 u128;
    u128 tenths = (u128)(uint64_t)(pct * 10 + 0.5), k = (tenths * total + 999) / 1000;
    if (k > total) k = total;
    return k < 1 ? 1 : (uint64_t)k;
}

static int g_checks_left; /* full checks per input: they walk every bucket */

/* Every count, percentile, merge and stats call reads every bucket, and under libFuzzer each bucket
   costs a few comparison callbacks (trace-cmp). A budget of bucket reads per input keeps an input
   within a few ms whatever its shape: operations past it are skipped (the final check always runs). */
static long g_scan_budget;
static int scan_ok(const pk_hist *h, int scans)
{
    long cost = (long)h->L.nbuckets * scans;
    if (g_scan_budget < cost) return 0;
    g_scan_budget -= cost;
    return 1;
}

static void check_model(pk_hist *h, const model *m, int d)
{
    static const double pcts[] = {0, 1, 25, 50, 90, 99, 99.9, 100};
    pk_prof_stats st;
    size_t k;
    uint64_t mn = UINT64_MAX, mx = 0;
    size_t i;
    if (g_checks_left-- <= 0 || !scan_ok(h, 12)) return;
    pk_hist_stats(h, &st);
    FZ_CHECK(st.count == m->total);
    FZ_CHECK(pk_hist_count(h) == m->total);
    FZ_CHECK(st.clamped == m->clamped);
    FZ_CHECK(pk_hist_clamped(h) == m->clamped);
    if (m->total == 0) {
        FZ_CHECK(pk_hist_percentile(h, 50) == 0);
        return;
    }
    for (i = 0; i < m->nv; i++) {
        if (m->vals[i] < mn) mn = m->vals[i];
        if (m->vals[i] > mx) mx = m->vals[i];
    }
    FZ_CHECK(st.min == mn);
    FZ_CHECK(st.max == mx);
    for (k = 0; k < sizeof pcts / sizeof pcts[0]; k++) {
        uint64_t got = pk_hist_percentile(h, pcts[k]);
        uint64_t exact = model_at(m, rank_of(pcts[k], m->total));
        FZ_CHECK(within(got, exact, d));
        FZ_CHECK(got >= mn && got <= mx);
    }
    FZ_CHECK(st.p50 == pk_hist_percentile(h, 50));
    FZ_CHECK(st.p999 == pk_hist_percentile(h, 99.9));
    FZ_CHECK(st.mean >= (double)mn * (1 - 1e-9) && st.mean <= (double)mx * (1 + 1e-9));
    FZ_CHECK(st.stddev >= 0);
}

/* A JSON grammar check (RFC 8259): returns the index after one value, or 0 on error. */
static size_t jv(const char *s, size_t i, size_t n, int depth);

static size_t jws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) i++;
    return i;
}

static size_t jstr(const char *s, size_t i, size_t n)
{
    if (i >= n || s[i] != '"') return 0;
    for (i++; i < n && s[i] != '"'; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20) return 0;
        if (c == '\\') {
            i++;
            if (i >= n || !strchr("\"\\/bfnrtu", s[i])) return 0;
            if (s[i] == 'u') {
                int k;
                for (k = 1; k <= 4; k++)
                    if (i + (size_t)k >= n || !strchr("0123456789abcdefABCDEF", s[i + (size_t)k])) return 0;
                i += 4;
            }
        } else if (c >= 0x80) {
            int len = pk_prof__utf8_len((const unsigned char *)s + i);
            if (len == 0 || i + (size_t)len > n) return 0;
            i += (size_t)len - 1;
        }
    }
    return i < n ? i + 1 : 0;
}

static size_t jv(const char *s, size_t i, size_t n, int depth)
{
    i = jws(s, i, n);
    if (i >= n || depth > 32) return 0;
    if (s[i] == '{' || s[i] == '[') {
        char close = s[i] == '{' ? '}' : ']';
        int obj = s[i] == '{';
        i = jws(s, i + 1, n);
        if (i < n && s[i] == close) return i + 1;
        for (;;) {
            if (obj) {
                i = jstr(s, jws(s, i, n), n);
                if (!i) return 0;
                i = jws(s, i, n);
                if (i >= n || s[i] != ':') return 0;
                i++;
            }
            i = jv(s, i, n, depth + 1);
            if (!i) return 0;
            i = jws(s, i, n);
            if (i < n && s[i] == ',') {
                i++;
                continue;
            }
            if (i < n && s[i] == close) return i + 1;
            return 0;
        }
    }
    if (s[i] == '"') return jstr(s, i, n);
    if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
        if (s[i] == '-') i++;
        if (i < n && s[i] == '0') i++;
        else if (i < n && s[i] >= '1' && s[i] <= '9')
            while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        else return 0;
        if (i < n && s[i] == '.') {
            i++;
            if (i >= n || s[i] < '0' || s[i] > '9') return 0;
            while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        }
        return i;
    }
    if (n - i >= 4 && (!strncmp(s + i, "true", 4) || !strncmp(s + i, "null", 4))) return i + 4;
    if (n - i >= 5 && !strncmp(s + i, "false", 5)) return i + 5;
    return 0;
}

static void check_report(pk_prof *p, int format)
{
    char *buf = NULL;
    size_t len = 0;
    long n;
    FILE *f = open_memstream(&buf, &len); /* in memory: a temporary file costs more than the report */
    if (!f) return;
    FZ_CHECK(pk_prof_report(p, f, format) == 0);
    FZ_CHECK(fclose(f) == 0 && buf != NULL);
    n = (long)len;
    if (format == PK_PROF_JSON) {
        size_t end = jv(buf, 0, (size_t)n, 0);
        FZ_CHECK(end != 0 && jws(buf, end, (size_t)n) == (size_t)n);
    } else if (format == PK_PROF_CSV) {
        FZ_CHECK(strncmp(buf, "label,count,", 12) == 0);
    } else {
        /* one line per label plus header (and the Markdown rule) */
        long lines = 0, i;
        for (i = 0; i < n; i++) lines += buf[i] == '\n';
        FZ_CHECK(lines == pk_prof_labels(p) + (format == PK_PROF_MARKDOWN ? 2 : 1));
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t maxes[4] = {1000, 123456789, 3600000000000ull, UINT64_MAX};
    in x;
    unsigned b0;
    int d, ops = 0, labels = 0;
    uint64_t maxv;
    pk_hist *a = NULL, *b = NULL, *other = NULL;
    pk_prof *p = NULL;
    pk_prof_config cfg;
    x.d = data;
    x.n = size;
    x.i = 0;
    b0 = get8(&x);
    d = 1 + (int)(b0 % 5);
    maxv = maxes[(b0 / 5) % 4];
    /* keep histograms small for fuzzing speed: at most ~40k buckets, except one d = 5 shape in four
       (196k buckets) so that its log-bucketed region is fuzzed too */
    if (d == 4 && maxv > 1000000) maxv = 1000000;
    if (d == 5 && maxv > 1000) maxv = maxv == 123456789 ? 300000 : 30000;
    memset(&g_a, 0, sizeof g_a);
    memset(&g_b, 0, sizeof g_b);
    g_checks_left = 8;
    g_scan_budget = 1500000;
    FZ_CHECK(pk_hist_create(&a, maxv, d) == 0);
    FZ_CHECK(pk_hist_create(&b, maxv, d) == 0);
    FZ_CHECK(pk_hist_create(&other, maxv == 1000 ? 2000 : 1000, d) == 0);
    memset(&cfg, 0, sizeof cfg);
    cfg.max_value = maxv > 10000000 ? 10000000 : maxv; /* the profiler's own logic, on small histograms */
    cfg.digits = d > 2 ? 2 : d;
    FZ_CHECK(pk_prof_create(&p, &cfg) == 0);
    while (x.i < x.n && ops++ < MAX_N) {
        unsigned op = get8(&x);
        switch (op % 14) {
        case 0: { /* record into A: value of 1..8 bytes */
            uint64_t v = get64(&x, 1 + (int)(get8(&x) % 8));
            if (model_add(&g_a, v, 1, maxv)) pk_hist_record(a, v);
            break;
        }
        case 1: { /* record_n into A */
            uint64_t v = get64(&x, 1 + (int)(get8(&x) % 8)), c = get64(&x, 2);
            if (model_add(&g_a, v, c, maxv)) pk_hist_record_n(a, v, c);
            break;
        }
        case 2: { /* record into B (and into the histogram of the other shape) */
            uint64_t v = get64(&x, 1 + (int)(get8(&x) % 8));
            if (model_add(&g_b, v, 1, maxv)) {
                pk_hist_record(b, v);
                pk_hist_record(other, v);
            }
            break;
        }
        case 3: { /* merge B into A, then reset B: A holds both sample sets */
            size_t i;
            if (g_a.nv + g_b.nv > MAX_SAMPLES || !scan_ok(a, 2)) break;
            FZ_CHECK(pk_hist_merge(a, b) == 0);
            for (i = 0; i < g_b.nv; i++) model_add(&g_a, g_b.vals[i], g_b.mult[i], maxv);
            g_a.clamped += g_b.clamped; /* B's samples were stored clamped already */
            pk_hist_reset(b);
            memset(&g_b, 0, sizeof g_b);
            check_model(a, &g_a, d);
            break;
        }
        case 4: { /* merges across shapes fail and change nothing */
            uint64_t ca, co;
            if (!scan_ok(a, 2) || !scan_ok(other, 2)) break;
            ca = pk_hist_count(a), co = pk_hist_count(other);
            FZ_CHECK(pk_hist_merge(a, other) == -EINVAL);
            FZ_CHECK(pk_hist_merge(other, a) == -EINVAL);
            FZ_CHECK(pk_hist_count(a) == ca && pk_hist_count(other) == co);
            break;
        }
        case 5: /* reset A */
            if (!scan_ok(a, 1)) break;
            pk_hist_reset(a);
            memset(&g_a, 0, sizeof g_a);
            break;
        case 6: { /* a percentile, pct from a byte (incl. out of range) */
            double pct = ((double)get8(&x) - 20.0) * 0.5;
            uint64_t got;
            if (!scan_ok(a, 2)) break;
            got = pk_hist_percentile(a, pct);
            if (g_a.total) {
                double c = pct < 0 ? 0 : pct > 100 ? 100 : pct;
                FZ_CHECK(within(got, model_at(&g_a, rank_of(c, g_a.total)), d));
            } else {
                FZ_CHECK(got == 0);
            }
            break;
        }
        case 7:
            check_model(a, &g_a, d);
            break;
        case 8: { /* a label with a name from the input (any bytes but NUL) */
            char name[32];
            unsigned len = get8(&x) % 24, k;
            int id, again;
            for (k = 0; k < len; k++) {
                name[k] = (char)get8(&x);
                if (!name[k]) name[k] = '?';
            }
            name[len] = 0;
            id = pk_prof_label(p, name);
            FZ_CHECK(id >= 0 && id <= labels);
            if (id == labels) labels++;
            again = pk_prof_label(p, name);
            FZ_CHECK(again == id);
            FZ_CHECK(strcmp(pk_prof_label_name(p, id), name) == 0);
            break;
        }
        case 9: { /* record on a label id from the input: unknown ids are ignored */
            int id = (int)(signed char)get8(&x);
            uint64_t v = get64(&x, 1 + (int)(get8(&x) % 8));
            pk_prof_stats before, after;
            int known = id >= 0 && id < labels;
            if (known) FZ_CHECK(pk_prof_stats_get(p, id, &before) == 0);
            pk_prof_record(p, id, v);
            if (known) {
                FZ_CHECK(pk_prof_stats_get(p, id, &after) == 0);
                FZ_CHECK(after.count == before.count + 1);
                FZ_CHECK(after.max >= (v > cfg.max_value ? cfg.max_value : v));
                FZ_CHECK(after.min <= (v > cfg.max_value ? cfg.max_value : v));
            } else {
                FZ_CHECK(pk_prof_stats_get(p, id, &after) == -EINVAL);
            }
            break;
        }
        case 10: { /* compare two labels */
            int i1 = (int)(get8(&x) % 8), i2 = (int)(get8(&x) % 8), rc;
            pk_prof_cmp c;
            pk_prof_stats s1, s2;
            rc = pk_prof_compare(p, i1, i2, &c);
            if (i1 >= labels || i2 >= labels) {
                FZ_CHECK(rc == -EINVAL);
                break;
            }
            pk_prof_stats_get(p, i1, &s1);
            pk_prof_stats_get(p, i2, &s2);
            if (!s1.count || !s2.count) {
                FZ_CHECK(rc == -ENOENT);
                break;
            }
            FZ_CHECK(rc == 0);
            FZ_CHECK(c.p_value >= 0 && c.p_value <= 1);
            FZ_CHECK(c.ratio_mean >= 0 && c.ratio_p50 >= 0);
            if (i1 == i2) FZ_CHECK(!c.significant && c.z == 0);
            break;
        }
        case 11:
            check_report(p, (int)(get8(&x) % 4));
            break;
        case 12:
            pk_prof_reset(p);
            break;
        default: { /* stats on a label */
            int id = (int)(get8(&x) % 8);
            pk_prof_stats st;
            int rc = pk_prof_stats_get(p, id, &st);
            FZ_CHECK(rc == (id < labels ? 0 : -EINVAL));
            if (rc == 0 && st.count) FZ_CHECK(st.min <= st.p50 && st.p50 <= st.p99 && st.p99 <= st.max);
            break;
        }
        }
    }
    g_checks_left = 1;
    g_scan_budget = 1L << 30;
    check_model(a, &g_a, d);
    check_report(p, PK_PROF_JSON);
    pk_hist_destroy(a);
    pk_hist_destroy(b);
    pk_hist_destroy(other);
    pk_prof_destroy(p);
    return 0;
}
