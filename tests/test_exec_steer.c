/* test_exec_steer.c — pk_exec.h's placement of woken helpers (Linux): a map that wakes a sleeping
   worker narrows that worker's CPU mask to its own minus the caller's CPU, so the kernel cannot
   queue it behind its caller, and the worker restores its own mask once no map is left to help,
   before it runs a task or sleeps. A private
   hook (PK_EXEC__TEST_WOKEN) reports the mask each worker woke with, before it restores it.
   Needs a process allowed on 2 CPUs or more; with fewer it says so and checks only that maps work. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>

#include "pk_test.h"

#define MAXW 64
static struct woken {
    int steered;
    cpu_set_t mask;
} woke[MAXW];
static int nwoke;

static void on_woken(int steered)
{
    int k = __atomic_fetch_add(&nwoke, 1, __ATOMIC_SEQ_CST);
    if (k < MAXW) {
        woke[k].steered = steered;
        sched_getaffinity(0, sizeof woke[k].mask, &woke[k].mask);
    }
}
#define PK_EXEC__TEST_WOKEN(steered) on_woken(steered)
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

/* Lets every worker fall asleep (spin_ns is 1 us in these pools), then forgets earlier wake-ups. */
static void settle(void)
{
    pk_test_sleep_ns(50000000);
    __atomic_store_n(&nwoke, 0, __ATOMIC_SEQ_CST);
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
   pinned to one CPU so that "the caller's CPU" is well defined), stays off it for the map, and has
   its own mask back for the task that follows. */
static void note_mask(void *arg) { sched_getaffinity(0, sizeof(cpu_set_t), (cpu_set_t *)arg); }

static void test_woken_helper_kept_off_the_callers_cpu(void)
{
    cpu_set_t all, one, later;
    pk_exec *e = NULL;
    pk_exec_config cfg;
    int round, cpu, k, steered = 0;
    PK_CHECK_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 1;
    cfg.spin_ns = 1000;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0); /* the worker inherits `all` */
    for (round = 0; round < 5; round++) {
        cpu = sched_getcpu();
        PK_CHECK(cpu >= 0 && CPU_ISSET(cpu, &all));
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        PK_CHECK_EQ(sched_setaffinity(0, sizeof one, &one), 0);
        settle();
        PK_CHECK_EQ(map_meeting(e, 2), 0);
        PK_CHECK_EQ(__atomic_load_n(&run.started, __ATOMIC_SEQ_CST), 2);
        PK_CHECK_MSG(__atomic_load_n(&nwoke, __ATOMIC_SEQ_CST) >= 1, "round %d: the worker never woke", round);
        for (k = 0; k < nwoke && k < MAXW; k++) {
            if (!woke[k].steered) continue;
            steered++;
            PK_CHECK_MSG(!CPU_ISSET(cpu, &woke[k].mask), "round %d: woke with the caller's CPU %d allowed", round, cpu);
            PK_CHECK_EQ(CPU_COUNT(&woke[k].mask), CPU_COUNT(&all) - 1);
        }
        /* the worker's item ran still kept off the caller's CPU */
        for (k = 0; k < 2; k++)
            if (run.worker[k]) {
                PK_CHECK(!CPU_ISSET(cpu, &run.mask[k]));
                PK_CHECK_EQ(CPU_COUNT(&run.mask[k]), CPU_COUNT(&all) - 1);
            }
        PK_CHECK(run.worker[0] || run.worker[1]);
        /* then a task (the worker has nothing else to run it on) sees the worker's own mask */
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
    pk_exec_config cfg;
    int k, items;
    PK_CHECK_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    items = CPU_COUNT(&all) + 1;
    if (items > 16) items = 16;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = (unsigned)items - 1;
    cfg.spin_ns = 1000;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    settle();
    PK_CHECK_EQ(map_meeting(e, items), 0);
    PK_CHECK_EQ(__atomic_load_n(&run.started, __ATOMIC_SEQ_CST), items);
    PK_CHECK(__atomic_load_n(&nwoke, __ATOMIC_SEQ_CST) >= 1);
    for (k = 0; k < nwoke && k < MAXW; k++) {
        PK_CHECK_EQ(woke[k].steered, 0);
        PK_CHECK(CPU_EQUAL(&woke[k].mask, &all));
    }
    pk_exec_destroy(e);
}

/* Submitted tasks are not steered: their submitter does not take part. */

static void test_task_wake_not_steered(void)
{
    cpu_set_t all, seen;
    pk_exec *e = NULL;
    pk_exec_config cfg;
    int k;
    PK_CHECK_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 1;
    cfg.spin_ns = 1000;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    settle();
    CPU_ZERO(&seen);
    PK_CHECK_EQ(pk_exec_submit(e, note_mask, &seen), 0);
    pk_exec_wait_idle(e);
    PK_CHECK(CPU_EQUAL(&seen, &all));
    PK_CHECK(nwoke >= 1);
    for (k = 0; k < nwoke && k < MAXW; k++) PK_CHECK_EQ(woke[k].steered, 0);
    pk_exec_destroy(e);
}

/* A worker the program confined to one CPU stays there: steering only ever removes the caller's
   CPU from a mask that keeps another, and restores the worker's own mask, never a wider one. */
static void test_confined_worker_keeps_its_mask(void)
{
    cpu_set_t all, one;
    pk_exec *e = NULL;
    pk_exec_config cfg;
    int k, cpu = sched_getcpu();
    PK_CHECK_EQ(sched_getaffinity(0, sizeof all, &all), 0);
    PK_CHECK(cpu >= 0);
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    PK_CHECK_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 1;
    cfg.spin_ns = 1000;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0); /* the worker inherits `one` */
    settle();
    PK_CHECK_EQ(map_meeting(e, 2), 0);
    PK_CHECK_EQ(__atomic_load_n(&run.started, __ATOMIC_SEQ_CST), 2);
    for (k = 0; k < nwoke && k < MAXW; k++) {
        PK_CHECK_EQ(woke[k].steered, 0);
        PK_CHECK(CPU_EQUAL(&woke[k].mask, &one));
    }
    for (k = 0; k < 2; k++)
        if (run.worker[k]) PK_CHECK(CPU_EQUAL(&run.mask[k], &one));
    PK_CHECK(run.worker[0] || run.worker[1]);
    PK_CHECK_EQ(sched_setaffinity(0, sizeof all, &all), 0);
    pk_exec_destroy(e);
}

int main(void)
{
    cpu_set_t all;
    pk_test_main_begin("test_exec_steer");
    if (sched_getaffinity(0, sizeof all, &all) != 0 || CPU_COUNT(&all) < 2) {
        printf("test_exec_steer: fewer than 2 CPUs allowed: placement not exercised\n");
        PK_TEST(test_oversubscribed_map_not_steered);
        return pk_test_main_end();
    }
    PK_TEST(test_woken_helper_kept_off_the_callers_cpu);
    PK_TEST(test_oversubscribed_map_not_steered);
    PK_TEST(test_task_wake_not_steered);
    PK_TEST(test_confined_worker_keeps_its_mask);
    return pk_test_main_end();
}
