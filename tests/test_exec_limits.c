/* test_exec_limits.c — pk_exec.h built with compile-time overrides the main test cannot use:
   - a small PK_EXEC_MAX_THREADS, standing in for a machine with more CPUs than the limit: the
     default thread count (online CPUs) is capped at the limit, not refused, while an explicit
     config.threads above it is still -EINVAL;
   - a PK_MALLOC that moves a fake clock, standing in for time passing while submit allocates a
     task node (with the pool's lock dropped);
   - a counting PK_EXEC_THREAD_CREATE, to see that a refused call made no threads. */
#include "pk_test.h"

static uint64_t fake_ns = 1000000;
static int malloc_moves_clock;
static void *clock_moving_malloc(size_t n)
{
    if (malloc_moves_clock) __atomic_add_fetch(&fake_ns, 100, __ATOMIC_SEQ_CST);
    return malloc(n);
}
static uint64_t fake_clock(void *user)
{
    (void)user;
    return __atomic_load_n(&fake_ns, __ATOMIC_SEQ_CST);
}
#define PK_MALLOC(n) clock_moving_malloc(n)
#define PK_REALLOC(p, n) realloc(p, n)
#define PK_FREE(p) free(p)
#define PK_EXEC_MAX_THREADS 1
static int threads_made;
#define PK_EXEC_THREAD_CREATE(thr, start, arg) \
    (__atomic_add_fetch(&threads_made, 1, __ATOMIC_SEQ_CST), pthread_create(thr, NULL, start, arg))
#define PK_EXEC_IMPLEMENTATION
#include "../pk_exec.h"

static int twice(void *ctx, size_t i)
{
    ((int *)ctx)[i] *= 2;
    return 0;
}

static void test_default_threads_capped(void)
{
    pk_exec *e = NULL;
    pk_exec_config cfg;
    pk_exec_stats st;
    int v[100], i;
    PK_CHECK_EQ(pk_exec_create(&e, NULL), 0); /* NULL config: online CPUs (2 here), capped at 1 */
    PK_CHECK(e != NULL);
    if (!e) return;
    pk_exec_stats_get(e, &st);
    PK_CHECK_EQ(st.threads, 1);
    for (i = 0; i < 100; i++) v[i] = i;
    PK_CHECK_EQ(pk_exec_map(e, 100, twice, v, NULL), 0);
    for (i = 0; i < 100; i++) PK_CHECK_EQ(v[i], 2 * i);
    pk_exec_destroy(e);

    memset(&cfg, 0, sizeof cfg); /* all-zero config: the same */
    e = NULL;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    if (e) {
        pk_exec_stats_get(e, &st);
        PK_CHECK_EQ(st.threads, 1);
        pk_exec_destroy(e);
    }

    cfg.threads = 2; /* asked for explicitly: refused, nothing made */
    e = NULL;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), -EINVAL);
    PK_CHECK(e == NULL);
    cfg.threads = 1;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    if (e) pk_exec_destroy(e);
}

/* A full queue makes room by dropping tasks past their deadline, judged at the time of the
   decision: submit used to judge by the clock read before it allocated the node (lock dropped),
   so a task that expired meanwhile stayed and the newcomer got -EAGAIN. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open, gate_started;
static void gate_task(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&gate_mu);
    gate_started = 1;
    pthread_cond_broadcast(&gate_cv);
    while (!gate_open) pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}
static int ran_b, dropped_a;
static void run_b(void *arg) { (void)arg; ran_b++; }
static void noop(void *arg) { (void)arg; }
static void drop_a(void *arg, int reason) { (void)arg; dropped_a = reason; }

static void test_full_queue_judges_expiry_after_malloc(void)
{
    pk_exec *e = NULL;
    pk_exec_config cfg;
    pk_exec_task_opts o;
    pk_exec_stats st;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 1;
    cfg.queue_max = 1;
    cfg.clock_ns = fake_clock;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    if (!e) return;
    PK_CHECK_EQ(pk_exec_submit(e, gate_task, NULL), 0); /* holds the only worker */
    pthread_mutex_lock(&gate_mu);
    while (!gate_started) pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    memset(&o, 0, sizeof o);
    o.priority = PK_EXEC_LOW;
    o.on_drop = drop_a;
    o.deadline_ns = fake_clock(NULL) + 50;
    PK_CHECK_EQ(pk_exec_submit_opts(e, noop, NULL, &o), 0); /* A: queued, expires in 50 ns */
    o.deadline_ns = 0;
    o.on_drop = NULL;
    malloc_moves_clock = 1; /* B's node comes from malloc: no node has been recycled yet */
    PK_CHECK_EQ(pk_exec_submit_opts(e, run_b, NULL, &o), 0); /* A expired meanwhile: dropped, B in */
    malloc_moves_clock = 0;
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    pk_exec_wait_idle(e);
    PK_CHECK_EQ(ran_b, 1);
    PK_CHECK_EQ(dropped_a, -ETIMEDOUT);
    pk_exec_stats_get(e, &st);
    PK_CHECK_EQ(st.rejected_full, 0);
    PK_CHECK_EQ(st.dropped_timeout, 1);
    pk_exec_destroy(e);
}

/* A map too large for pk (n above 2^51) is refused before the shared pool is made or grown. */
static void test_parallel_map_too_large_makes_no_threads(void)
{
    int before = __atomic_load_n(&threads_made, __ATOMIC_SEQ_CST);
    if (sizeof(size_t) < 8) {
        PK_CHECK(1);
        return;
    }
    PK_CHECK_EQ(pk_exec_parallel_map((size_t)1 << 52, twice, NULL, 4, NULL), -EINVAL);
    PK_CHECK_EQ(__atomic_load_n(&threads_made, __ATOMIC_SEQ_CST), before);
    PK_CHECK_EQ(pk_exec_parallel_map(SIZE_MAX, twice, NULL, 0, NULL), -EINVAL);
    PK_CHECK_EQ(__atomic_load_n(&threads_made, __ATOMIC_SEQ_CST), before);
}

int main(void)
{
    pk_test_main_begin("test_exec_limits");
    PK_TEST(test_default_threads_capped);
    PK_TEST(test_full_queue_judges_expiry_after_malloc);
    PK_TEST(test_parallel_map_too_large_makes_no_threads);
    return pk_test_main_end();
}
