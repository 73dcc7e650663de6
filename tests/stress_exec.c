/* stress_exec.c — pk_exec.h at 10x overload for STRESS_SECONDS (default 60), 10 threads mixing calls:
     - 6 submitters offer tasks at ten times what the pool can run (4 workers, tasks that block for
       200 us: capacity 20k tasks/s, offered 200k/s), priorities 5% HIGH / 25% NORMAL / 70% LOW (HIGH alone is half the capacity),
       half with a deadline 2..20 ms ahead, a few already expired, every one with on_drop; some tasks
       submit a HIGH follow-up, some run a small map from inside the task;
     - 1 thread runs maps on the same pool (nested two deep, fail_fast, progress) and checks them;
     - 1 thread runs pk_exec_parallel_map and checks it;
     - 1 thread reads stats and checks their identities while everything runs;
     - 1 thread creates small pools, queues tasks, destroys them (destroy runs what is queued);
   in the second half every 13th allocation fails (submit says -ENOMEM, create says -ENOMEM).
   Checked: every accepted task runs or is dropped exactly once (a task record is freed by
   whichever happens, after checking it was still live), nothing leaks, stats add up to what the
   threads counted, queue never above queue_max, and the important work gets through: HIGH tasks
   complete at a far higher rate than LOW ones. */
#include "pk_test.h"
#include <pthread.h>

#define PK_MALLOC(n) pk_test_malloc(n)
#define PK_REALLOC(p, n) pk_test_realloc(p, n)
#define PK_FREE(p) pk_test_free(p)
#define PK_EXEC_IMPLEMENTATION
#include "pk_exec.h"

#define WORKERS 4
#define SUBMITTERS 6
#define QUEUE_MAX 256
#define TASK_NS 200000u
#define LIVE 0x7A5C11FEu
#define DEAD 0xDEADDEADu

typedef struct rec {
    unsigned magic;
    int level;     /* 0 LOW, 1 NORMAL, 2 HIGH */
    int follow_up; /* submit a HIGH follow-up when run */
    int map_inside;
} rec;

static pk_exec *E;
static int g_stop, g_half;
/* per level: accepted, ran, dropped at deadline, displaced, refused full, refused expired, -ENOMEM */
static long c_acc[3], c_ran[3], c_dto[3], c_dis[3], c_full[3], c_exp[3], c_nomem[3];
static long c_maps, c_pmaps, c_stats, c_pools, c_inner_maps;

static int inner_item(void *ctx, size_t i)
{
    (void)ctx;
    return i == 5 ? -EIO : 0;
}

static int submit_rec(int level, int follow_up, int map_inside, uint64_t deadline);

static void task_run(void *arg)
{
    rec *r = (rec *)arg;
    struct timespec ts = {0, TASK_NS};
    PK_CHECK(r->magic == LIVE);
    r->magic = DEAD;
    __atomic_add_fetch(&c_ran[r->level], 1, __ATOMIC_RELAXED);
    if (r->map_inside) {
        int errs[8];
        pk_exec_map_opts o;
        memset(&o, 0, sizeof o);
        o.errors = errs;
        PK_CHECK_EQ(pk_exec_map(E, 8, inner_item, NULL, &o), -EIO);
        PK_CHECK_EQ(errs[5], -EIO);
        PK_CHECK_EQ(errs[7], 0);
        __atomic_add_fetch(&c_inner_maps, 1, __ATOMIC_RELAXED);
    }
    nanosleep(&ts, NULL); /* the blocking part: a model call, a disk read */
    if (r->follow_up) submit_rec(2, 0, 0, 0);
    pk_test_free(r);
}

static void task_drop(void *arg, int reason)
{
    rec *r = (rec *)arg;
    PK_CHECK(r->magic == LIVE);
    PK_CHECK(reason == -ETIMEDOUT || reason == -EAGAIN);
    r->magic = DEAD;
    __atomic_add_fetch(reason == -ETIMEDOUT ? &c_dto[r->level] : &c_dis[r->level], 1, __ATOMIC_RELAXED);
    pk_test_free(r);
}

static int submit_rec(int level, int follow_up, int map_inside, uint64_t deadline)
{
    rec *r = (rec *)pk_test_malloc(sizeof *r);
    pk_exec_task_opts o;
    int rc;
    if (!r) {
        __atomic_add_fetch(&c_nomem[level], 1, __ATOMIC_RELAXED);
        return -ENOMEM;
    }
    r->magic = LIVE;
    r->level = level;
    r->follow_up = follow_up;
    r->map_inside = map_inside;
    memset(&o, 0, sizeof o);
    o.priority = level - 1;
    o.deadline_ns = deadline;
    o.on_drop = task_drop;
    rc = pk_exec_submit_opts(E, task_run, r, &o);
    if (rc == 0) __atomic_add_fetch(&c_acc[level], 1, __ATOMIC_RELAXED);
    else {
        r->magic = DEAD;
        pk_test_free(r);
        if (rc == -EAGAIN) __atomic_add_fetch(&c_full[level], 1, __ATOMIC_RELAXED);
        else if (rc == -ETIMEDOUT) __atomic_add_fetch(&c_exp[level], 1, __ATOMIC_RELAXED);
        else if (rc == -ENOMEM) __atomic_add_fetch(&c_nomem[level], 1, __ATOMIC_RELAXED);
        else PK_CHECK_MSG(0, "submit returned %d", rc);
    }
    return rc;
}

static long g_offered;

static void *submitter(void *arg)
{
    uint64_t rs = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    /* offered rate per submitter: 10x capacity / SUBMITTERS, sent in bursts every millisecond */
    const double per_ms = 10.0 * (double)WORKERS * (1e6 / (double)TASK_NS) / SUBMITTERS;
    uint64_t t0 = pk_test_now_ns(), sent = 0;
    while (!__atomic_load_n(&g_stop, __ATOMIC_RELAXED)) {
        uint64_t due = (uint64_t)((double)(pk_test_now_ns() - t0) / 1e6 * per_ms);
        while (sent < due) {
            uint64_t r = pk_test_rand(&rs), deadline = 0;
            int level = r % 20 == 0 ? 2 : r % 20 < 6 ? 1 : 0; /* 5% HIGH, 25% NORMAL, 70% LOW */
            if ((r >> 8) % 2) deadline = pk_exec_now_ns() + 2000000u + (r >> 16) % 18000000u;
            if ((r >> 40) % 200 == 0) deadline = pk_exec_now_ns() - 1; /* already expired */
            submit_rec(level, (r >> 48) % 50 == 0, (r >> 56) % 64 == 0, deadline);
            sent++;
        }
        pk_test_sleep_ns(1000000);
    }
    __atomic_add_fetch(&g_offered, (long)sent, __ATOMIC_RELAXED);
    return NULL;
}

/* ---- maps on the overloaded pool ---- */

typedef struct map_ctx {
    int depth;
    long last_done;
    int progress_bad;
} map_ctx;

static int map_item(void *ctx, size_t i)
{
    map_ctx *c = (map_ctx *)ctx;
    if (c->depth == 0 && i % 16 == 0) {
        map_ctx sub;
        int errs[20];
        size_t k;
        pk_exec_map_opts o;
        memset(&sub, 0, sizeof sub);
        sub.depth = 1;
        memset(&o, 0, sizeof o);
        o.errors = errs;
        if (pk_exec_map(E, 20, map_item, &sub, &o) != 0) return -EPROTO;
        for (k = 0; k < 20; k++)
            if (errs[k]) return -EPROTO;
    }
    return 0;
}

static void map_progress(void *ctx, size_t done, size_t total)
{
    map_ctx *c = (map_ctx *)ctx;
    if ((long)done <= c->last_done || done > total) c->progress_bad = 1;
    c->last_done = (long)done;
}

static int ff_item(void *ctx, size_t i)
{
    (void)ctx;
    return i == 100 ? -EIO : 0;
}

static void *mapper(void *arg)
{
    uint64_t rs = 77;
    (void)arg;
    while (!__atomic_load_n(&g_stop, __ATOMIC_RELAXED)) {
        uint64_t r = pk_test_rand(&rs);
        size_t n = 1 + r % 500;
        map_ctx c;
        pk_exec_map_opts o;
        static int errs[2000];
        memset(&c, 0, sizeof c);
        c.last_done = 0;
        memset(&o, 0, sizeof o);
        o.concurrency = (unsigned)((r >> 16) % 6);
        o.grain = (r >> 24) % 4;
        o.progress = (r >> 32) % 2 ? map_progress : NULL;
        PK_CHECK_EQ(pk_exec_map(E, n, map_item, &c, &o), 0);
        PK_CHECK(!c.progress_bad);
        if (o.progress) PK_CHECK_EQ(c.last_done, (long)n);
        /* fail fast: item 100 fails, the others after it are skipped or ran, nothing else */
        memset(&o, 0, sizeof o);
        o.fail_fast = 1;
        o.errors = errs;
        o.concurrency = (unsigned)((r >> 40) % 5);
        PK_CHECK_EQ(pk_exec_map(E, 2000, ff_item, NULL, &o), -EIO);
        {
            size_t i;
            int bad = 0;
            for (i = 0; i < 2000; i++)
                if (errs[i] != 0 && errs[i] != -ECANCELED && !(i == 100 && errs[i] == -EIO)) bad++;
            PK_CHECK_EQ(bad, 0);
            PK_CHECK_EQ(errs[100], -EIO);
        }
        __atomic_add_fetch(&c_maps, 2, __ATOMIC_RELAXED);
    }
    return NULL;
}

static int sum_item(void *ctx, size_t i)
{
    __atomic_add_fetch((long *)ctx, (long)i, __ATOMIC_RELAXED);
    return 0;
}

static void *pmapper(void *arg)
{
    uint64_t rs = 99;
    (void)arg;
    while (!__atomic_load_n(&g_stop, __ATOMIC_RELAXED)) {
        size_t n = 1 + pk_test_rand(&rs) % 3000;
        long sum = 0;
        PK_CHECK_EQ(pk_exec_parallel_map(n, sum_item, &sum, 0, NULL), 0);
        PK_CHECK_EQ(sum, (long)(n * (n - 1) / 2));
        __atomic_add_fetch(&c_pmaps, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *stats_reader(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&g_stop, __ATOMIC_RELAXED)) {
        pk_exec_stats st;
        pk_exec_stats_get(E, &st);
        PK_CHECK(st.submitted == st.queued + st.running + st.completed + st.dropped_timeout + st.dropped_displaced);
        PK_CHECK(st.queued == st.queued_low + st.queued_normal + st.queued_high);
        PK_CHECK(st.queued <= QUEUE_MAX);
        PK_CHECK(st.queue_peak <= QUEUE_MAX);
        PK_CHECK(st.running <= WORKERS);
        PK_CHECK(st.started == st.completed + st.running);
        __atomic_add_fetch(&c_stats, 1, __ATOMIC_RELAXED);
        pk_test_sleep_ns(200000);
    }
    return NULL;
}

static long churn_ran;
static void churn_task(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&churn_ran, 1, __ATOMIC_RELAXED);
}

static void *pool_churn(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&g_stop, __ATOMIC_RELAXED)) {
        pk_exec *p;
        pk_exec_config cfg;
        long queued = 0, before = __atomic_load_n(&churn_ran, __ATOMIC_SEQ_CST);
        int i, rc;
        memset(&cfg, 0, sizeof cfg);
        cfg.threads = 2;
        cfg.queue_max = 32;
        rc = pk_exec_create(&p, &cfg);
        if (rc != 0) {
            PK_CHECK_MSG(rc == -ENOMEM, "create returned %d", rc);
            continue;
        }
        for (i = 0; i < 40; i++) {
            rc = pk_exec_submit(p, churn_task, NULL);
            if (rc == 0) queued++;
            else PK_CHECK(rc == -EAGAIN || rc == -ENOMEM);
        }
        pk_exec_destroy(p); /* runs what is queued */
        PK_CHECK_EQ(__atomic_load_n(&churn_ran, __ATOMIC_SEQ_CST) - before, queued);
        __atomic_add_fetch(&c_pools, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_overload(void)
{
    const char *env = getenv("STRESS_SECONDS");
    double secs = env ? atof(env) : 60;
    pk_exec_config cfg;
    pthread_t th[SUBMITTERS + 4];
    pk_exec_stats st;
    long acc = 0, ran = 0, dto = 0, dis = 0, full = 0, exp = 0, nomem = 0;
    uint64_t t0;
    int i, l;
    if (secs <= 0) secs = 60;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = WORKERS;
    cfg.queue_max = QUEUE_MAX;
    PK_CHECK_EQ(pk_exec_create(&E, &cfg), 0);
    t0 = pk_test_now_ns();
    for (i = 0; i < SUBMITTERS; i++) pthread_create(&th[i], NULL, submitter, (void *)(uintptr_t)(i + 1));
    pthread_create(&th[SUBMITTERS], NULL, mapper, NULL);
    pthread_create(&th[SUBMITTERS + 1], NULL, pmapper, NULL);
    pthread_create(&th[SUBMITTERS + 2], NULL, stats_reader, NULL);
    pthread_create(&th[SUBMITTERS + 3], NULL, pool_churn, NULL);
    pk_test_sleep_ns((uint64_t)(secs * 0.5e9));
    pk_test_alloc_fail_every(13); /* second half: every 13th allocation fails */
    __atomic_store_n(&g_half, 1, __ATOMIC_SEQ_CST);
    pk_test_sleep_ns((uint64_t)(secs * 0.5e9));
    __atomic_store_n(&g_stop, 1, __ATOMIC_SEQ_CST);
    for (i = 0; i < SUBMITTERS + 4; i++) pthread_join(th[i], NULL);
    pk_exec_wait_idle(E);
    pk_test_alloc_fail_every(0);
    pk_exec_stats_get(E, &st);
    for (l = 0; l < 3; l++) {
        acc += c_acc[l];
        ran += c_ran[l];
        dto += c_dto[l];
        dis += c_dis[l];
        full += c_full[l];
        exp += c_exp[l];
        nomem += c_nomem[l];
    }
    {
        double el = (double)(pk_test_now_ns() - t0) / 1e9, cap = WORKERS * (1e9 / TASK_NS) * el;
        static const char *nm[3] = {"LOW", "NORMAL", "HIGH"};
        printf("    %.1f s; offered %ld tasks = %.1fx what %d workers can run; accepted %ld: ran %ld, dropped %ld "
               "at deadline, %ld displaced; refused %ld full, %ld expired, %ld out of memory\n",
               el, g_offered, (double)g_offered / cap, WORKERS, acc, ran, dto, dis, full, exp, nomem);
        for (l = 2; l >= 0; l--) {
            long off = c_acc[l] + c_full[l] + c_exp[l] + c_nomem[l];
            printf("    %-6s offered %8ld  ran %8ld (%5.1f%%)  dropped at deadline %7ld  displaced %7ld  refused %8ld\n",
                   nm[l], off, c_ran[l], off ? 100.0 * (double)c_ran[l] / (double)off : 0.0, c_dto[l], c_dis[l],
                   c_full[l] + c_exp[l] + c_nomem[l]);
        }
        printf("    mean queue wait %.2f ms, max %.2f ms; queue peak %zu\n",
               st.started ? (double)st.wait_ns_total / (double)st.started / 1e6 : 0.0, (double)st.wait_ns_max / 1e6,
               st.queue_peak);
        printf("    %ld operations (%ld submits, %ld maps + %ld maps inside tasks, %ld parallel maps, %ld stats "
               "reads, %ld pools made and destroyed)\n",
               g_offered + c_ran[2] + c_maps + c_inner_maps + c_pmaps + c_stats + c_pools, g_offered, c_maps,
               c_inner_maps, c_pmaps, c_stats, c_pools);
        /* the load really was about 10x (submitters may fall behind a little on a small machine) */
        PK_CHECK_MSG((double)g_offered / cap > 5.0, "offered only %.1fx capacity", (double)g_offered / cap);
        /* the important work got through: a HIGH task ran far more often than a LOW one */
        {
            double hi = (double)c_ran[2] / (double)(c_acc[2] + c_full[2] + c_exp[2] + c_nomem[2] + 1);
            double lo = (double)c_ran[0] / (double)(c_acc[0] + c_full[0] + c_exp[0] + c_nomem[0] + 1);
            PK_CHECK_MSG(hi > 0.3 && hi > 5 * lo, "HIGH ran %.1f%%, LOW %.1f%%", hi * 100, lo * 100);
        }
    }
    /* every accepted task ran or was dropped exactly once (records are freed by either; a second
       call would have found the record dead or freed) */
    PK_CHECK_EQ(acc, ran + dto + dis);
    PK_CHECK_EQ(st.submitted, acc);
    PK_CHECK_EQ(st.completed, ran);
    PK_CHECK_EQ(st.dropped_timeout, dto);
    PK_CHECK_EQ(st.dropped_displaced, dis);
    PK_CHECK_EQ(st.rejected_full, full);
    PK_CHECK_EQ(st.rejected_expired, exp);
    PK_CHECK_EQ(st.queued + st.running, 0);
    pk_exec_destroy(E);
}

int main(void)
{
    long live0;
    pk_test_main_begin("stress_exec");
    live0 = pk_test_alloc_live();
    PK_TEST(test_overload);
    /* the shared pool of pk_exec_parallel_map stays: two allocations, the pool and its thread table */
    PK_CHECK_MSG(pk_test_alloc_live() - live0 <= 2, "%ld allocations leaked", pk_test_alloc_live() - live0 - 2);
    return pk_test_main_end();
}
