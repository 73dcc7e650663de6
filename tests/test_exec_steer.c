/* test_exec_steer.c — how pk_exec.h wakes its workers. Placement (Linux): a map that wakes a
   sleeping worker narrows that worker's CPU mask to its own minus the caller's CPU, so the kernel
   cannot queue it behind its caller, and the worker restores its own mask as soon as it wakes,
   before it runs anything, even when the map is over by then. A private hook (PK_EXEC__TEST_WOKEN)
   reports the mask each worker woke with, before it restores it. Also: wake-ups are passed on when
   spinners counted by two publishers went elsewhere, the shared-cv fallback, and fork()ed children.
   Needs a process allowed on 2 CPUs or more; with fewer it says so and checks only that maps work. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <sys/wait.h>

#include "pk_test.h"

#define MAXW 64
struct woken {
    int steered;
    cpu_set_t mask;
};
static struct woken woke[MAXW], snap[MAXW]; /* snap: the tests' copy, taken by snapshot() */
static int nwoke, nsnap;
static pthread_mutex_t woke_mu = PTHREAD_MUTEX_INITIALIZER; /* a wake-up may be reported after
                                                                the map that caused it is over */

static void on_woken(int steered)
{
    pthread_mutex_lock(&woke_mu);
    if (nwoke < MAXW) {
        woke[nwoke].steered = steered;
        sched_getaffinity(0, sizeof woke[nwoke].mask, &woke[nwoke].mask);
    }
    nwoke++;
    pthread_mutex_unlock(&woke_mu);
}

static void snapshot(void)
{
    pthread_mutex_lock(&woke_mu);
    nsnap = nwoke < MAXW ? nwoke : MAXW;
    memcpy(snap, woke, sizeof snap);
    pthread_mutex_unlock(&woke_mu);
}
#define PK_EXEC__TEST_WOKEN(steered) on_woken(steered)
/* workers made while this is set get no condition variable of their own: the work_cv fallback */
static int no_own_cv;
#define PK_EXEC__COND_INIT(cv) (__atomic_load_n(&no_own_cv, __ATOMIC_SEQ_CST) ? EAGAIN : pthread_cond_init(cv, NULL))
/* while set, making a worker thread takes 100 ms (the shared pool's creation holds its lock meanwhile) */
static int slow_create;
static int slow_thread_create(pthread_t *t, void *(*start)(void *), void *arg)
{
    if (__atomic_load_n(&slow_create, __ATOMIC_SEQ_CST)) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    return pthread_create(t, NULL, start, arg);
}
#define PK_EXEC_THREAD_CREATE(t, start, arg) slow_thread_create(t, start, arg)
#define PK_EXEC_IMPLEMENTATION
#include "../pk_exec.h"

/* Items wait (up to 2 s) until `need` of them have started, so every participant takes one: the
   woken workers must join for the map to end early. Each records its mask while it runs. */
static struct {
    int need, started;
    cpu_set_t mask[16];
    int worker[16]; /* ran on a pool worker, not the caller */
} run;
static pthread_t caller;

static int meet(void *ctx, size_t i)
{
    uint64_t t0 = pk_test_now_ns();
    (void)ctx;
    sched_getaffinity(0, sizeof run.mask[i], &run.mask[i]);
    run.worker[i] = !pthread_equal(pthread_self(), caller);
    __atomic_add_fetch(&run.started, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&run.started, __ATOMIC_SEQ_CST) < run.need && pk_test_now_ns() - t0 < 2000000000u)
        sched_yield();
    return 0;
}

/* Threads of this process whose CPU mask is not `want` (read from /proc/self/task). */
static int threads_not_on(const cpu_set_t *want)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    int bad = 0;
    if (!d) return -1;
    while ((de = readdir(d)) != NULL) {
        cpu_set_t m;
        long tid = atol(de->d_name);
        if (tid <= 0) continue;
        CPU_ZERO(&m);
        if (sched_getaffinity((pid_t)tid, sizeof m, &m) == 0 && !CPU_EQUAL(&m, want)) bad++;
    }
    closedir(d);
    return bad;
}

static int nothing(void *ctx, size_t i)
{
    (void)ctx;
    (void)i;
    return 0;
}

/* A pool of `threads` workers that fall asleep 1 us after they run out of work. */
static pk_exec *sleepy_pool(unsigned threads)
{
    pk_exec *e = NULL;
    pk_exec_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = threads;
    cfg.spin_ns = 1000;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    return e;
}

/* Lets every worker fall asleep (spin_ns is 1 us in these pools), then forgets earlier wake-ups. */
static void settle(void)
{
    pk_test_sleep_ns(50000000);
    pthread_mutex_lock(&woke_mu);
    nwoke = 0;
    pthread_mutex_unlock(&woke_mu);
}

static int map_meeting(pk_exec *e, int items)
{
    pk_exec_map_opts o;
    memset(&o, 0, sizeof o);
    memset(&run, 0, sizeof run);
    o.grain = 1;
    o.concurrency = (unsigned)items;
    run.need = items;
    caller = pthread_self();
    return pk_exec_map(e, (size_t)items, meet, NULL, &o);
}

/* One helper for a CPU-bound map on 2+ CPUs: it wakes steered off the caller's CPU (the caller is
   pinned to one CPU so that "the caller's CPU" is well defined) and runs its item, and the task
   that follows, with its own mask back. */
static void note_mask(void *arg) { sched_getaffinity(0, sizeof(cpu_set_t), (cpu_set_t *)arg); }

static void test_woken_helper_kept_off_the_callers_cpu(void)
{
    cpu_set_t all, one, later;
    pk_exec *e = NULL;
    int round, cpu, k, steered = 0;
    PK_CHECK_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    e = sleepy_pool(1); /* the worker inherits `all` */
    for (round = 0; round < 5; round++) {
        cpu = sched_getcpu();
        PK_CHECK(cpu >= 0 && CPU_ISSET(cpu, &all));
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        PK_CHECK_EQ(sched_setaffinity(0, sizeof one, &one), 0);
        settle();
        PK_CHECK_EQ(map_meeting(e, 2), 0);
        PK_CHECK_EQ(__atomic_load_n(&run.started, __ATOMIC_SEQ_CST), 2);
        PK_CHECK_MSG((snapshot(), nsnap) >= 1, "round %d: the worker never woke", round);
        for (snapshot(), k = 0; k < nsnap; k++) {
            if (!snap[k].steered) continue;
            steered++;
            PK_CHECK_MSG(!CPU_ISSET(cpu, &snap[k].mask), "round %d: woke with the caller's CPU %d allowed", round, cpu);
            PK_CHECK_EQ(CPU_COUNT(&snap[k].mask), CPU_COUNT(&all) - 1);
        }
        /* the worker's item ran with its own mask back */
        for (k = 0; k < 2; k++)
            if (run.worker[k]) PK_CHECK(CPU_EQUAL(&run.mask[k], &all));
        PK_CHECK(run.worker[0] || run.worker[1]);
        /* and so does a task after the map */
        CPU_ZERO(&later);
        PK_CHECK_EQ(pk_exec_submit(e, note_mask, &later), 0);
        pk_exec_wait_idle(e);
        PK_CHECK(CPU_EQUAL(&later, &all));
        PK_CHECK_EQ(sched_setaffinity(0, sizeof all, &all), 0);
    }
    PK_CHECK_EQ(steered, 5); /* one wake-up per round, each steered */
    pk_exec_destroy(e);
}

/* A map with more participants than CPUs (blocking work) leaves masks alone: there is no CPU to
   keep free for the caller. */
static void test_oversubscribed_map_not_steered(void)
{
    cpu_set_t all;
    pk_exec *e = NULL;
    int k, items;
    PK_CHECK_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    items = CPU_COUNT(&all) + 1;
    if (items > 16) items = 16;
    e = sleepy_pool((unsigned)items - 1);
    settle();
    PK_CHECK_EQ(map_meeting(e, items), 0);
    PK_CHECK_EQ(__atomic_load_n(&run.started, __ATOMIC_SEQ_CST), items);
    PK_CHECK((snapshot(), nsnap) >= 1);
    for (snapshot(), k = 0; k < nsnap; k++) {
        PK_CHECK_EQ(snap[k].steered, 0);
        PK_CHECK(CPU_EQUAL(&snap[k].mask, &all));
    }
    pk_exec_destroy(e);
}

/* Submitted tasks are not steered: their submitter does not take part. */

static void test_task_wake_not_steered(void)
{
    cpu_set_t all, seen;
    pk_exec *e = NULL;
    int k;
    PK_CHECK_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    e = sleepy_pool(1);
    settle();
    CPU_ZERO(&seen);
    PK_CHECK_EQ(pk_exec_submit(e, note_mask, &seen), 0);
    pk_exec_wait_idle(e);
    PK_CHECK(CPU_EQUAL(&seen, &all));
    snapshot();
    PK_CHECK(nsnap >= 1);
    for (snapshot(), k = 0; k < nsnap; k++) PK_CHECK_EQ(snap[k].steered, 0);
    pk_exec_destroy(e);
}

/* A worker the program confined to one CPU stays there: steering only ever removes the caller's
   CPU from a mask that keeps another, and restores the worker's own mask, never a wider one. */
static void test_confined_worker_keeps_its_mask(void)
{
    cpu_set_t all, one;
    pk_exec *e = NULL;
    int k, cpu = sched_getcpu();
    PK_CHECK_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    PK_CHECK(cpu >= 0);
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    PK_CHECK_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    e = sleepy_pool(1); /* the worker inherits `one` */
    settle();
    PK_CHECK_EQ(map_meeting(e, 2), 0);
    PK_CHECK_EQ(__atomic_load_n(&run.started, __ATOMIC_SEQ_CST), 2);
    for (snapshot(), k = 0; k < nsnap; k++) {
        PK_CHECK_EQ(snap[k].steered, 0);
        PK_CHECK(CPU_EQUAL(&snap[k].mask, &one));
    }
    for (k = 0; k < 2; k++)
        if (run.worker[k]) PK_CHECK(CPU_EQUAL(&run.mask[k], &one));
    PK_CHECK(run.worker[0] || run.worker[1]);
    PK_CHECK_EQ(sched_setaffinity(0, sizeof all, &all), 0);
    pk_exec_destroy(e);
}

/* A map over before its woken worker gets going: the worker still restores its mask rather than
   sleep on narrowed. */
static void test_worker_woken_for_a_finished_map_restores(void)
{
    cpu_set_t all;
    pk_exec *e = NULL;
    pk_exec_map_opts o;
    int round, steered = 0, k;
    PK_CHECK_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    e = sleepy_pool(1);
    memset(&o, 0, sizeof o);
    o.grain = 1;
    for (round = 0; round < 10; round++) {
        settle();
        PK_CHECK_EQ(pk_exec_map(e, 2, nothing, NULL, &o), 0); /* over in microseconds */
        pk_test_sleep_ns(50000000);
        PK_CHECK_MSG(threads_not_on(&all) == 0, "round %d: a thread left with a narrowed mask", round);
        for (snapshot(), k = 0; k < nsnap; k++) steered += snap[k].steered;
    }
    PK_CHECK(steered >= 1); /* the wake-ups were steered: the case was exercised */
    pk_exec_destroy(e);
}

/* Threads that an item makes on a woken helper inherit the full mask, and a mask an item sets on
   its own thread is kept. */
static pk_exec *made;
static int make_pool_or_pin(void *ctx, size_t i)
{
    int pin = *(int *)ctx;
    meet(NULL, i);
    if (run.worker[i]) {
        if (pin < 0) {
            pk_exec_config c;
            memset(&c, 0, sizeof c);
            c.threads = 2;
            PK_CHECK_EQ(pk_exec_create(&made, &c), 0);
        } else {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(pin, &one);
            PK_CHECK_EQ(sched_setaffinity(0, sizeof one, &one), 0);
        }
    }
    return 0;
}

static void test_items_on_a_woken_helper_see_its_own_mask(void)
{
    cpu_set_t all, one;
    pk_exec *e = NULL;
    pk_exec_map_opts o;
    int how, pinned = 0, k;
    PK_CHECK_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    while (pinned < CPU_SETSIZE - 1 && !CPU_ISSET(pinned, &all)) pinned++; /* the first allowed CPU */
    e = sleepy_pool(1);
    memset(&o, 0, sizeof o);
    o.grain = 1;
    o.concurrency = 2;
    /* first an item that makes a pool, then one that pins its own thread */
    for (k = 0; k < 2; k++) {
        settle();
        memset(&run, 0, sizeof run);
        run.need = 2;
        caller = pthread_self();
        made = NULL;
        how = k == 0 ? -1 : pinned;
        PK_CHECK_EQ(pk_exec_map(e, 2, make_pool_or_pin, &how, &o), 0);
        PK_CHECK(run.worker[0] || run.worker[1]);
        if (k == 0) {
            PK_CHECK(made != NULL);
            pk_test_sleep_ns(20000000);
            PK_CHECK_EQ(threads_not_on(&all), 0); /* the new pool's threads too */
            pk_exec_destroy(made);
        } else {
            pk_test_sleep_ns(50000000); /* the worker sleeps again, with the item's mask */
            CPU_ZERO(&one);
            CPU_SET(pinned, &one);
            PK_CHECK_EQ(threads_not_on(&all), 1); /* the worker, still on the item's mask */
            {
                cpu_set_t seen;
                CPU_ZERO(&seen);
                PK_CHECK_EQ(pk_exec_submit(e, note_mask, &seen), 0);
                pk_exec_wait_idle(e);
                PK_CHECK(CPU_EQUAL(&seen, &one));
            }
        }
    }
    pk_exec_destroy(e);
}

/* A fork()ed child's map must not touch the parent's workers (their thread ids are the parent's):
   after the child's map, the parent's sleeping worker still has its full mask. */
static void test_forked_child_does_not_steer_the_parents_workers(void)
{
    cpu_set_t all;
    pid_t pid;
    int st = 0;
    PK_CHECK_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    PK_CHECK_EQ(pk_exec_parallel_map(4, nothing, NULL, 2, NULL), 0); /* the shared pool: 1+ workers */
    pk_test_sleep_ns(50000000);                                     /* asleep */
    PK_CHECK_EQ(threads_not_on(&all), 0);
    pid = fork();
    if (pid == 0) _exit(pk_exec_parallel_map(4, nothing, NULL, 2, NULL) != 0);
    PK_CHECK(pid > 0);
    PK_CHECK_EQ(waitpid(pid, &st, 0), pid);
    PK_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    PK_CHECK_EQ(threads_not_on(&all), 0);
}

/* Every thread confined to one CPU while the worker sleeps (what `taskset -a -p` does): the map
   that wakes it must neither move it off that CPU nor widen its mask afterwards. */
static void all_threads_to(const cpu_set_t *m)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    if (!d) return;
    while ((de = readdir(d)) != NULL)
        if (atol(de->d_name) > 0) sched_setaffinity((pid_t)atol(de->d_name), sizeof *m, m);
    closedir(d);
}

static void test_mask_changed_while_asleep_is_kept(void)
{
    cpu_set_t all, one;
    pk_exec *e = NULL;
    int cpu, k;
    PK_CHECK_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    e = sleepy_pool(1);
    settle(); /* the worker sleeps with every CPU */
    cpu = sched_getcpu();
    PK_CHECK(cpu >= 0);
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    all_threads_to(&one);
    PK_CHECK_EQ(threads_not_on(&one), 0);
    PK_CHECK_EQ(map_meeting(e, 2), 0);
    PK_CHECK(run.worker[0] || run.worker[1]);
    for (k = 0; k < 2; k++)
        if (run.worker[k]) PK_CHECK(CPU_EQUAL(&run.mask[k], &one));
    for (snapshot(), k = 0; k < nsnap; k++) PK_CHECK_EQ(snap[k].steered, 0); /* its only CPU: left alone */
    pk_test_sleep_ns(20000000);
    PK_CHECK_EQ(threads_not_on(&one), 0);
    all_threads_to(&all);
    pk_exec_destroy(e);
}

/* A fork()ed child's pk_exec_parallel_map runs on its caller alone and never blocks on a lock that
   one of the parent's workers held at the fork (the parent keeps its shared pool waking and
   sleeping meanwhile). A child stuck for 2 s is killed by its alarm and counted. */
static int churn_stop;
static void *churn(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&churn_stop, __ATOMIC_SEQ_CST)) {
        pk_exec_parallel_map(2, nothing, NULL, 2, NULL);
        pk_test_sleep_ns(60000); /* longer than spin_ns: the worker sleeps and is woken each time */
    }
    return NULL;
}

static void test_forked_children_never_hang(void)
{
    pthread_t t;
    int i, hung = 0, forks = (int)pk_test_scale(200);
    PK_CHECK_EQ(pk_exec_parallel_map(2, nothing, NULL, 2, NULL), 0);
    PK_CHECK_EQ(pthread_create(&t, NULL, churn, NULL), 0);
    for (i = 0; i < forks; i++) {
        int st = 0;
        pid_t pid = fork();
        if (pid == 0) {
            alarm(2);
            _exit(pk_exec_parallel_map(4, nothing, NULL, 2, NULL) != 0);
        }
        PK_CHECK(pid > 0);
        if (pid <= 0) break;
        PK_CHECK_EQ(waitpid(pid, &st, 0), pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) hung++;
    }
    __atomic_store_n(&churn_stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(t, NULL);
    PK_CHECK_MSG(hung == 0, "%d of %d forked children hung or failed", hung, forks);
}

/* Workers without a condition variable of their own (pthread_cond_init failed) share work_cv: a
   map that wakes one of them wakes that one only (the others go back to sleep), and it is the one
   the map steered; tasks still run exactly once. */
static int task_runs;
static void count_task(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&task_runs, 1, __ATOMIC_SEQ_CST);
}

static void test_shared_cv_fallback_wakes_the_steered_one(void)
{
    pk_exec *e = NULL;
    int round, k, i;
    __atomic_store_n(&no_own_cv, 1, __ATOMIC_SEQ_CST);
    e = sleepy_pool(3);
    settle(); /* every worker has started (and fallen asleep) before the flag is cleared */
    __atomic_store_n(&no_own_cv, 0, __ATOMIC_SEQ_CST);
    for (round = 0; round < 10; round++) {
        settle();
        PK_CHECK_EQ(map_meeting(e, 2), 0);
        PK_CHECK_EQ(__atomic_load_n(&run.started, __ATOMIC_SEQ_CST), 2);
        pk_test_sleep_ns(20000000);
        snapshot();
        PK_CHECK_MSG(nsnap == 1, "round %d: %d workers woke for a map that wanted one", round, nsnap);
        for (k = 0; k < nsnap; k++) PK_CHECK_EQ(snap[k].steered, 1);
    }
    __atomic_store_n(&task_runs, 0, __ATOMIC_SEQ_CST);
    for (i = 0; i < 200; i++) {
        PK_CHECK_EQ(pk_exec_submit(e, count_task, NULL), 0);
        if (i % 50 == 0) pk_test_sleep_ns(2000000); /* let them fall asleep between some */
    }
    pk_exec_wait_idle(e);
    PK_CHECK_EQ(__atomic_load_n(&task_runs, __ATOMIC_SEQ_CST), 200);
    pk_exec_destroy(e);
}

/* A fork()ed child's pk_exec_parallel_map while the parent is still making the shared pool (its
   lock held by a parent's thread that does not exist in the child): the child runs alone. Must run
   before anything else in this process makes the shared pool. */
static void *first_parallel_map(void *arg)
{
    (void)arg;
    pk_exec_parallel_map(4, nothing, NULL, 2, NULL);
    return NULL;
}

static void test_fork_while_shared_pool_is_made(void)
{
    pthread_t t;
    pid_t pid;
    int st = 0, fd[2];
    char got = 0;
    PK_CHECK_EQ(pipe(fd), 0);
    __atomic_store_n(&slow_create, 1, __ATOMIC_SEQ_CST);
    PK_CHECK_EQ(pthread_create(&t, NULL, first_parallel_map, NULL), 0);
    pk_test_sleep_ns(30000000); /* it holds the shared pool's lock, making a thread */
    pid = fork();
    if (pid == 0) {
        /* the answer goes through a pipe: under valgrind the exit status reports the pool the
           parent's thread was making, unreachable in the child, as a leak */
        char c;
        alarm(2);
        c = pk_exec_parallel_map(4, nothing, NULL, 2, NULL) == 0 ? 'y' : 'n';
        if (write(fd[1], &c, 1) != 1) _exit(3);
        _exit(0);
    }
    close(fd[1]);
    PK_CHECK(pid > 0);
    if (pid > 0) PK_CHECK_EQ(waitpid(pid, &st, 0), pid);
    PK_CHECK_MSG(!WIFSIGNALED(st), "the child hung (killed by signal %d)", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    PK_CHECK_EQ(read(fd[0], &got, 1), 1);
    PK_CHECK_EQ(got, 'y');
    close(fd[0]);
    pthread_join(t, NULL);
    __atomic_store_n(&slow_create, 0, __ATOMIC_SEQ_CST);
}

/* Two maps opened at once (one nested in the other's item) both count the same spinning workers,
   which all go to the outer map: the inner map's wake-up must still reach the sleeping worker
   (passed on by the workers that joined), or its two items, which wait for each other, never
   meet. Workers: one more than may spin, so exactly one sleeps. */
static pk_exec *nest_pool;
static pthread_t nest_caller;
static int nest_met, nest_done;
static int nest_meet(void *ctx, size_t i)
{
    uint64_t t0 = pk_test_now_ns();
    (void)ctx;
    (void)i;
    __atomic_add_fetch(&nest_met, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&nest_met, __ATOMIC_SEQ_CST) < 2) {
        if (pk_test_now_ns() - t0 > 2000000000u) return -ETIMEDOUT;
        sched_yield();
    }
    return 0;
}
static int nest_outer(void *ctx, size_t i)
{
    (void)ctx;
    (void)i;
    if (pthread_equal(pthread_self(), nest_caller)) {
        pk_exec_map_opts o;
        int rc;
        memset(&o, 0, sizeof o);
        o.concurrency = 2;
        o.grain = 1;
        rc = pk_exec_map(nest_pool, 2, nest_meet, NULL, &o);
        __atomic_store_n(&nest_done, 1, __ATOMIC_SEQ_CST);
        return rc;
    } else {
        uint64_t t0 = pk_test_now_ns();
        while (!__atomic_load_n(&nest_done, __ATOMIC_SEQ_CST) && pk_test_now_ns() - t0 < 5000000000u)
            pk_test_sleep_ns(1000000);
        return 0;
    }
}

static void test_wake_passed_on_when_spinners_went_elsewhere(void)
{
    pk_exec_config cfg;
    pk_exec_map_opts o;
    unsigned ncpu = pk_exec__ncpu();
    int round;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = ncpu + 1;
    cfg.spin_ns = 20000000000ull; /* the spinners keep spinning through the test */
    PK_CHECK_EQ(pk_exec_create(&nest_pool, &cfg), 0);
    nest_caller = pthread_self();
    for (round = 0; round < 3; round++) {
        uint64_t t0;
        pk_test_sleep_ns(100000000); /* ncpu workers spin, one sleeps */
        __atomic_store_n(&nest_met, 0, __ATOMIC_SEQ_CST);
        __atomic_store_n(&nest_done, 0, __ATOMIC_SEQ_CST);
        memset(&o, 0, sizeof o);
        o.concurrency = ncpu + 1;
        o.grain = 1;
        t0 = pk_test_now_ns();
        PK_CHECK_MSG(pk_exec_map(nest_pool, ncpu + 1, nest_outer, NULL, &o) == 0,
                     "round %d: the inner map's items never met (no helper woken)", round);
        PK_CHECK(pk_test_now_ns() - t0 < 1500000000u);
    }
    pk_exec_destroy(nest_pool);
}

int main(void)
{
    cpu_set_t all;
    pk_test_main_begin("test_exec_steer");
    PK_TEST(test_fork_while_shared_pool_is_made); /* first: before the shared pool exists */
    PK_TEST(test_wake_passed_on_when_spinners_went_elsewhere);
    if (sched_getaffinity(0, sizeof all, &all) != 0 || CPU_COUNT(&all) < 2) {
        printf("test_exec_steer: fewer than 2 CPUs allowed: placement not exercised\n");
        PK_TEST(test_oversubscribed_map_not_steered);
        return pk_test_main_end();
    }
    PK_TEST(test_woken_helper_kept_off_the_callers_cpu);
    PK_TEST(test_oversubscribed_map_not_steered);
    PK_TEST(test_task_wake_not_steered);
    PK_TEST(test_confined_worker_keeps_its_mask);
    PK_TEST(test_worker_woken_for_a_finished_map_restores);
    PK_TEST(test_items_on_a_woken_helper_see_its_own_mask);
    PK_TEST(test_forked_child_does_not_steer_the_parents_workers);
    PK_TEST(test_mask_changed_while_asleep_is_kept);
    PK_TEST(test_forked_children_never_hang);
    PK_TEST(test_shared_cv_fallback_wakes_the_steered_one);
    return pk_test_main_end();
}
