/* stress_prof.c — pk_prof.h under 10 threads for STRESS_SECONDS (default 60).

   Profiler P, exact accounting: 6 recorder threads record on 48 labels (made lazily by name, from
   several threads at once) while a reader thread takes stats, reports in all four formats,
   compares and merges into a pk_hist, and a churn thread starts short-lived threads that record
   and exit (their shards fold in at exit). Every ~100 ms the main thread pauses everyone, checks
   that each label's count is exactly what was recorded since the last reset (nothing lost, nothing
   doubled), sometimes resets, and lets them go on.
   Profiler Q, chaos: two threads record, make labels, reset and read it all at once; only
   consistency is checked (min <= p50 <= p99 <= max, count never above what was recorded).
   In the second half every 13th allocation fails: label creation may fail with -ENOMEM, records
   must still all arrive (they fall back to the profiler's own histogram).
   At the end: both destroyed, nothing leaked. */
#include "pk_test.h"
#include <pthread.h>

#define PK_MALLOC(n) pk_test_malloc(n)
#define PK_REALLOC(p, n) pk_test_realloc(p, n)
#define PK_FREE(p) pk_test_free(p)
#define PK_PROF_IMPLEMENTATION
#include "pk_prof.h"

#define RECORDERS 6
#define NLABELS 48

static pk_prof *P, *Q;
static int g_ids[NLABELS];               /* -1 until made */
static uint64_t g_expect[NLABELS];       /* records since the last reset of P */
static uint64_t g_q_recorded;            /* records into Q since its creation */
static int g_stop, g_pause, g_paused;    /* pause protocol for the P workers */
static long g_ops;

static void op(void) { __atomic_add_fetch(&g_ops, 1, __ATOMIC_RELAXED); }

/* Workers call this between operations: while paused, they wait (and say so). */
static void pause_point(void)
{
    if (!__atomic_load_n(&g_pause, __ATOMIC_ACQUIRE)) return;
    __atomic_add_fetch(&g_paused, 1, __ATOMIC_ACQ_REL);
    while (__atomic_load_n(&g_pause, __ATOMIC_ACQUIRE)) pk_test_sleep_ns(200000);
    __atomic_sub_fetch(&g_paused, 1, __ATOMIC_ACQ_REL);
}

static int label_of(int k)
{
    int id = __atomic_load_n(&g_ids[k], __ATOMIC_ACQUIRE);
    if (id < 0) {
        char name[32];
        snprintf(name, sizeof name, "label %d \"%c\"", k, 'a' + k % 26);
        id = pk_prof_label(P, name);
        if (id == -ENOMEM) return -1;
        PK_CHECK_MSG(id >= 0, "pk_prof_label: %d", id);
        if (id < 0) return -1;
        __atomic_store_n(&g_ids[k], id, __ATOMIC_RELEASE);
        op();
    }
    return id;
}

static void *recorder(void *v)
{
    uint64_t seed = (uint64_t)(uintptr_t)v * 7919 + 1;
    while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE)) {
        int i;
        pause_point();
        for (i = 0; i < 256; i++) {
            uint64_t r = pk_test_rand(&seed);
            int k = (int)(r % NLABELS), id = label_of(k);
            if (id < 0) continue;
            pk_prof_record(P, id, (r >> 20) % 5000000);
            __atomic_add_fetch(&g_expect[k], 1, __ATOMIC_RELAXED);
            op();
        }
    }
    return NULL;
}

static void *short_lived(void *v)
{
    int i, k = (int)(uintptr_t)v % NLABELS, id = label_of(k);
    if (id < 0) return NULL;
    for (i = 0; i < 100; i++) {
        pk_prof_record(P, id, (uint64_t)i * 1000);
        __atomic_add_fetch(&g_expect[k], 1, __ATOMIC_RELAXED);
    }
    op();
    return NULL;
}

static void *churn(void *v)
{
    uintptr_t n = 0;
    (void)v;
    while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE)) {
        pthread_t t;
        pause_point();
        if (pthread_create(&t, NULL, short_lived, (void *)n++) == 0) pthread_join(t, NULL);
    }
    return NULL;
}

static void *reader(void *v)
{
    uint64_t seed = 99;
    pk_hist *h = NULL;
    (void)v;
    while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE)) {
        int k = (int)(pk_test_rand(&seed) % NLABELS), id = __atomic_load_n(&g_ids[k], __ATOMIC_ACQUIRE);
        int k2 = (int)(pk_test_rand(&seed) % NLABELS), id2 = __atomic_load_n(&g_ids[k2], __ATOMIC_ACQUIRE);
        pk_prof_stats st;
        pk_prof_cmp c;
        FILE *f;
        pause_point();
        if (id >= 0) {
            PK_CHECK_EQ(pk_prof_stats_get(P, id, &st), 0);
            PK_CHECK(st.count == 0 || (st.min <= st.p50 && st.p50 <= st.p99 && st.p99 <= st.max));
            op();
        }
        if (id >= 0 && id2 >= 0) {
            int rc = pk_prof_compare(P, id, id2, &c);
            PK_CHECK(rc == 0 || rc == -ENOENT);
            op();
        }
        if (!h && pk_hist_create(&h, 3600000000000ull, 3) != 0) h = NULL;
        if (h && id >= 0) {
            pk_hist_reset(h);
            PK_CHECK_EQ(pk_prof_hist_merge(P, id, h), 0);
            op();
        }
        f = fopen("/dev/null", "w");
        if (f) {
            PK_CHECK_EQ(pk_prof_report(P, f, (int)(pk_test_rand(&seed) % 4)), 0);
            fclose(f);
            op();
        }
    }
    pk_hist_destroy(h);
    return NULL;
}

/* Q: everything at once, no pauses */
static void *chaos(void *v)
{
    uint64_t seed = (uint64_t)(uintptr_t)v + 5;
    while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE)) {
        uint64_t r = pk_test_rand(&seed);
        int what = (int)(r % 100), n = pk_prof_labels(Q);
        if (what < 80 && n > 0) {
            pk_prof_record(Q, (int)((r >> 8) % (uint64_t)(n + 2)) - 1, r >> 40); /* some ids unknown */
            __atomic_add_fetch(&g_q_recorded, 1, __ATOMIC_RELAXED);
        } else if (what < 88) {
            char name[16];
            snprintf(name, sizeof name, "q%u", (unsigned)((r >> 8) % 64));
            int id = pk_prof_label(Q, name);
            PK_CHECK(id >= 0 || id == -ENOMEM);
        } else if (what < 90) {
            pk_prof_reset(Q);
        } else if (n > 0) {
            pk_prof_stats st;
            int id = (int)((r >> 8) % (uint64_t)n);
            PK_CHECK_EQ(pk_prof_stats_get(Q, id, &st), 0);
            PK_CHECK(st.count <= __atomic_load_n(&g_q_recorded, __ATOMIC_RELAXED));
            PK_CHECK(st.count == 0 || (st.min <= st.p50 && st.p50 <= st.p99 && st.p99 <= st.max));
        }
        op();
    }
    return NULL;
}

static void check_round(int *bad_rounds)
{
    int k, bad = 0;
    for (k = 0; k < NLABELS; k++) {
        int id = __atomic_load_n(&g_ids[k], __ATOMIC_ACQUIRE);
        pk_prof_stats st;
        uint64_t want = __atomic_load_n(&g_expect[k], __ATOMIC_RELAXED);
        if (id < 0) {
            PK_CHECK_EQ(want, 0);
            continue;
        }
        PK_CHECK_EQ(pk_prof_stats_get(P, id, &st), 0);
        if (st.count != want) {
            if (bad++ < 3)
                printf("    label %d: count %llu, recorded %llu\n", k, (unsigned long long)st.count,
                       (unsigned long long)want);
        }
    }
    PK_CHECK_MSG(bad == 0, "%d labels with lost or doubled records", bad);
    *bad_rounds += bad != 0;
}

static void test_stress(void)
{
    const char *e = getenv("STRESS_SECONDS");
    double secs = e ? atof(e) : 60;
    pthread_t rec[RECORDERS], ch, rd, cq[2];
    uint64_t t0 = pk_test_now_ns(), end = t0 + (uint64_t)(secs * 1e9), half = t0 + (uint64_t)(secs * 0.5e9);
    long live0 = pk_test_alloc_live(), rounds = 0;
    int i, bad_rounds = 0, failing = 0;
    for (i = 0; i < NLABELS; i++) g_ids[i] = -1;
    PK_CHECK_EQ(pk_prof_create(&P, NULL), 0);
    PK_CHECK_EQ(pk_prof_create(&Q, NULL), 0);
    for (i = 0; i < RECORDERS; i++) pthread_create(&rec[i], NULL, recorder, (void *)(uintptr_t)(i + 1));
    pthread_create(&ch, NULL, churn, NULL);
    pthread_create(&rd, NULL, reader, NULL);
    for (i = 0; i < 2; i++) pthread_create(&cq[i], NULL, chaos, (void *)(uintptr_t)i);
    while (pk_test_now_ns() < end) {
        pk_test_sleep_ns(100000000);
        if (!failing && pk_test_now_ns() >= half) {
            pk_test_alloc_fail_every(13);
            failing = 1;
        }
        /* pause the P workers (recorders, churn, reader) and check the books */
        __atomic_store_n(&g_pause, 1, __ATOMIC_RELEASE);
        while (__atomic_load_n(&g_paused, __ATOMIC_ACQUIRE) < RECORDERS + 2) pk_test_sleep_ns(200000);
        check_round(&bad_rounds);
        if (rounds % 3 == 2) {
            int k;
            pk_prof_reset(P);
            for (k = 0; k < NLABELS; k++) __atomic_store_n(&g_expect[k], 0, __ATOMIC_RELAXED);
            check_round(&bad_rounds);
        }
        rounds++;
        __atomic_store_n(&g_pause, 0, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&g_stop, 1, __ATOMIC_RELEASE);
    for (i = 0; i < RECORDERS; i++) pthread_join(rec[i], NULL);
    pthread_join(ch, NULL);
    pthread_join(rd, NULL);
    for (i = 0; i < 2; i++) pthread_join(cq[i], NULL);
    pk_test_alloc_fail_every(0);
    check_round(&bad_rounds); /* every thread exited: all shards folded in */
    PK_CHECK(P->shards == NULL);
    printf("    %ld operations in %.1f s, %ld rounds checked, %d bad, %ld allocation failures injected\n",
           __atomic_load_n(&g_ops, __ATOMIC_RELAXED), (double)(pk_test_now_ns() - t0) / 1e9, rounds, bad_rounds,
           pk_test_alloc_injected());
    pk_prof_destroy(P);
    pk_prof_destroy(Q);
    PK_CHECK_EQ(pk_test_alloc_live(), live0);
}

int main(void)
{
    pk_test_main_begin("stress_prof");
    PK_TEST(test_stress);
    return pk_test_main_end();
}
