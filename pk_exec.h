/* pk_exec.h — a pthread pool with a bounded parallel map, prioritized submit and load shedding.

   One file, two halves (stb style). In exactly one C or C++ file:
       #define PK_EXEC_IMPLEMENTATION
       #include "pk_exec.h"
   Everywhere else just #include "pk_exec.h". Link with -pthread.
   Under strict -std=c99 define _POSIX_C_SOURCE=200809L before any include; with -std=gnu99, C++ or
   the compiler default nothing is needed.

   Quick start (a complete program; `make test` compiles and runs it as C99 and C++11):

   ---8<--- example
#define PK_EXEC_IMPLEMENTATION
#include "pk_exec.h"
#include <stdio.h>
#include <string.h>

static int twice(void *ctx, size_t i)                // one item: 0 or a negative errno
{
    int *v = (int *)ctx;
    v[i] *= 2;
    return 0;
}

static void job(void *arg) { printf("task: %s\n", (const char *)arg); }

int main(void)
{
    pk_exec *e;
    pk_exec_map_opts mo;
    int v[1000], errs[1000], rc, i;
    for (i = 0; i < 1000; i++) v[i] = i;
    if (pk_exec_create(&e, NULL) != 0) return 1;      // NULL config: one worker per online CPU
    memset(&mo, 0, sizeof mo);                         // all-zero options: defaults
    mo.errors = errs;                                  // optional: each item's result
    rc = pk_exec_map(e, 1000, twice, v, &mo);          // the caller helps; 0 = every item returned 0
    printf("map: %d, v[999] = %d\n", rc, v[999]);
    pk_exec_submit(e, job, (void *)"fire and forget"); // queued, run by a worker
    pk_exec_wait_idle(e);                              // until the queue is drained
    pk_exec_destroy(e);
    rc = pk_exec_parallel_map(1000, twice, v, 0, NULL); // no pool to manage (one shared pool)
    return rc != 0 || v[999] != 3996;
}
   --->8---

   For blocking work (network calls, model calls, disk) make more threads than CPUs:
       pk_exec_config cfg = {0}; cfg.threads = 64;  ...  mo.concurrency = 32;
   32 items that each wait 10 ms then finish in about 10 ms, not 320 ms.

   OPTIONS (#define before the implementation) --------------------------------------------------------
   PK_EXEC_STATIC           every function static (private to the including file)
   PK_EXEC_DEF              linkage of the public functions (default extern, or static with the above)
   PK_MALLOC(n) PK_FREE(p) PK_REALLOC(p, n)   allocator (default malloc/free/realloc); shared by pk
                            headers: define all three or none
   PK_ASSERT(x)             default assert(x)
   PK_EXEC_MAX_THREADS      upper bound on config.threads (default 4096); above it create says -EINVAL
   PK_EXEC_SPIN_NS          default for config.spin_ns: 50000 (50 us)
   PK_EXEC_SHARED_MAX_THREADS  bound on the shared pool of pk_exec_parallel_map (default 256)
   PK_EXEC_THREAD_CREATE(thr, start, arg)   how a worker thread is made (default pthread_create with
                            default attributes); tests override it to inject thread-creation failure,
                            users to set a stack size
   PK_EXEC_NO_STEER         do not keep woken helpers off their map caller's CPU (Linux; see
                            PLACEMENT below): for a seccomp filter that forbids sched_setaffinity, or
                            a program that sets its threads' CPU masks itself

   API ------------------------------------------------------------------------------------------------
   Errors are 0 or a negative errno. Time is uint64_t nanoseconds on CLOCK_MONOTONIC.

   int  pk_exec_create(pk_exec **out, const pk_exec_config *cfg)
        cfg NULL or all-zero = defaults (threads = online CPUs, capped at PK_EXEC_MAX_THREADS).
        -EINVAL: out NULL, config.threads > PK_EXEC_MAX_THREADS.
        -ENOMEM: out of memory. -EAGAIN: a worker thread could not be made (the system's thread or
        memory limit): the threads already made are stopped and joined and everything is freed, so
        no partial pool is left behind. *out is set only on success.
   void pk_exec_destroy(pk_exec *e)
        Runs what is queued (tasks past their deadline are dropped as usual), waits for running tasks,
        joins the threads, frees. NULL is ignored. Called on one of this pool's workers (inside its
        tasks, on_drop callbacks, or map items and progress callbacks a worker runs), or inside an
        on_drop that submit delivers for it, it does NOTHING and returns at once: a thread cannot join
        itself. Destroy the pool later from another thread. No other call on the pool may be in
        progress or follow, except submits from its own tasks and on_drop callbacks while destroy
        drains the queue: those tasks also run or are dropped before destroy returns, and the
        workers stay until no task is running, so a task may submit a follow-up and wait for it.
        Workers spinning for work (spin_ns) stop at once.

   int  pk_exec_map(pk_exec *e, size_t n, pk_exec_fn fn, void *ctx, const pk_exec_map_opts *opts)
        Runs fn(ctx, i) for i in [0, n) and returns when every item has run or been skipped.
        - At most opts->concurrency items run at once (0 = every worker plus the caller). The calling
          thread runs items itself; idle workers join as helpers, up to concurrency - 1 of them.
        - Items are claimed in grains. Each participant claims from its own share of [0, n) (a range
          in its own cache line, so a claim is one uncontended compare-and-swap) and, when its share
          runs out, steals the lower half of the largest share left: no participant idles while
          unclaimed items remain, and at grain 1 the claims do not bounce a shared line between
          cores. Items start in index order within each share, not overall. With at most two
          shares (concurrency <= 2, or fewer than 48 claim units), a caller that no helper joins
          runs them all in index order, like a loop; with more it may not.
          grain 0 = automatic: each claim takes max(1, what is left of the claimer's share / (2 x
          the participants sharing it)), so a million tiny items cost a few dozen claims, the last
          claims are single items that even out uneven ones, and n blocking items at concurrency n
          all start at once. A map with one participant (concurrency 1, or a caller running alone
          because every helper slot is taken) claims all items at once and runs them as a loop.
          A fixed grain g takes g indices per claim, starting on a multiple of g.
        - errors (optional, n entries) receives each item's result; skipped items get -ECANCELED.
        - Return: 0 if every item that ran returned 0, else the result of the lowest-indexed item
          that ran and failed. Skipped items are not failures.
        - fail_fast: after the first failure, items not yet started are skipped (-ECANCELED). Items
          already running finish; at most concurrency - 1 of them can still fail after the first.
        - progress(ctx, done, total) is called as items finish, never two calls at once, with done
          strictly increasing and the last call having done == total; all calls happen before the map
          returns. Each call accounts for at least one more item; items finishing while another
          thread is inside progress are reported together in its next call, and skipped items are
          reported in bulk. progress runs on whichever participating thread finished the item, with
          no lock of the pool held; a slow progress never stalls the other participants' items.
        -EINVAL: e or fn NULL, n above 2^51. n == 0 returns 0 at once without calling anything.
        NESTING: fn may call pk_exec_map (on this pool or another) and this never deadlocks, even
        when every worker is busy in an outer map: a map's caller runs its items itself and waits
        only for helpers that have already taken items, never for a worker to become free. Helpers
        are an optimisation, never a requirement. The same holds for maps called from submitted tasks.
        Hot path: per claim one compare-and-swap on the claimer's own cache line; per item one
        indirect call plus, only when asked for, an errors[] store, a fail-fast flag load and a
        progress counter add. No allocation, no lock, no system call when workers are already
        awake (spinning).
   int  pk_exec_map_range(pk_exec *e, size_t n, pk_exec_range_fn fn, void *ctx, const pk_exec_map_opts *o)
        The same, but fn(ctx, begin, end) gets each claimed grain [begin, end) in one call: for items
        so small (a few ns) that one indirect call per item would cost more than the item, and so
        the loop body can be inlined and vectorised (TBB's blocked_range, OpenMP's loop body). A
        range's result counts for every index in it: errors[begin..end) all get it, the return value
        is the result of the lowest failing range, fail_fast skips whole unstarted ranges, progress
        counts items. Ranges are disjoint, cover [0, n), and are at most `grain` long (automatic:
        large first, single items at the end; a map with one participant gets [0, n) as one range;
        for n of 2^32 or more, claims come in multiples of ceil(n / (2^32 - 1)) items, so the last
        ones are that long).
   int  pk_exec_parallel_map(size_t n, pk_exec_fn fn, void *ctx, unsigned concurrency, int *errors)
        pk_exec_map without a pool to manage, on ONE PROCESS-WIDE POOL made on first use (under a
        static mutex, so concurrent first calls are safe) and kept until the process exits.
        concurrency 0 = the number of online CPUs (the caller counts as one). A call asking for more
        concurrency than the pool has threads (blocking work) adds threads to it, up to
        PK_EXEC_SHARED_MAX_THREADS; idle threads sleep. Why shared, not a pool per call: making
        threads costs tens of microseconds each, far more than a small map, and a shared pool lets
        maps called from many threads at once share the CPUs instead of oversubscribing them.
        If the shared pool cannot be made (out of memory or threads), the items run on the calling
        thread alone, with the same results. Safe to call from many threads at once and from inside
        items. After fork() only the thread that forked exists in the child: call it there only if
        the parent never used it, or accept that the child runs items on its caller only. A child
        forked from inside an item must not return into that map (its helpers are the parent's).

   int  pk_exec_submit(pk_exec *e, void (*fn)(void *arg), void *arg)
        = pk_exec_submit_opts(e, fn, arg, NULL): NORMAL priority, no deadline, no on_drop.
   int  pk_exec_submit_opts(pk_exec *e, void (*fn)(void *), void *arg, const pk_exec_task_opts *o)
        Queues fn(arg) to run on a worker. HIGH runs before NORMAL before LOW; FIFO within a level.
        0: accepted; from then on the task either runs once or its on_drop is called once, never both,
           never neither:
           - on_drop(arg, -ETIMEDOUT): its deadline passed before it started. It is dropped when a
             worker would otherwise start it, or when a full queue needs room (below).
           - on_drop(arg, -EAGAIN): displaced from a full queue by a higher-priority task.
           A task without on_drop is dropped silently, but counted in the stats.
        -EAGAIN:    the queue holds queue_max tasks and no room could be made. Room is made by first
                    dropping every queued task past its deadline (-ETIMEDOUT), then, if still full, by
                    displacing the newest task of the lowest non-empty level below the new task's
                    level (-EAGAIN). A LOW task never displaces, a HIGH task can displace NORMAL or LOW.
        -ETIMEDOUT: deadline_ns is not 0 and already reached at submit (on the pool's clock:
                    config.clock_ns, or CLOCK_MONOTONIC as pk_exec_now_ns() reads it).
        -EINVAL:    e or fn NULL, priority not LOW/NORMAL/HIGH.  -ENOMEM: out of memory.
        A task refused by the return value is neither run nor dropped. on_drop is never called with a
        lock of the pool held: displaced and expired tasks found by submit are reported on the
        submitting thread just before it returns; others on a worker thread.
        Workers prefer helping a map over starting a queued task (the map's caller is blocked on
        it), but a worker that has just helped a map starts a queued task before helping another:
        back-to-back maps cannot starve the queue, nor the queue the maps.
   void pk_exec_wait_idle(pk_exec *e)
        Until no submitted task is queued, running, or inside its on_drop. Maps are not counted.
        Called on one of this pool's workers (inside a task or on_drop, or a map item or progress
        callback that a worker runs), or inside an on_drop that submit delivers for this pool, it
        returns at once: it could wait for itself forever. From a map's calling thread it waits.
   void pk_exec_stats_get(pk_exec *e, pk_exec_stats *out)
        A consistent snapshot of the counters below (see pk_exec_stats). Sizing the pool: with
        arrival rate r and mean run time s = run_ns_total / completed, about r * s threads are busy;
        a wait_ns_total / started that keeps growing, dropped_* or rejected_* above zero mean too few
        threads (or too small a queue) for the load.
   uint64_t pk_exec_now_ns(void)   CLOCK_MONOTONIC in ns: the clock deadlines use by default.

   THREAD SAFETY --------------------------------------------------------------------------------------
   Every function may be called from many threads at once, including from inside items, tasks,
   progress and on_drop callbacks, except destroy (see above). Worker threads start with all signals
   blocked, so the application's signal handlers run on its own threads.

   IDLE WORKERS AND SPINNING ---------------------------------------------------------------------------
   A worker that runs out of work polls for new work for at most spin_ns (default 50 us, one poll
   per pause instruction, at most as many spinning workers as online CPUs) and then sleeps on a
   condition variable; the caller of a map waiting for its last helpers does the same. This makes
   back-to-back maps start as fast as OpenMP's spinning teams, while an idle pool uses no CPU after
   50 us. spin_ns = 1 effectively turns spinning off. On a virtual machine, a map that starts after
   the other CPUs have idled for ~20 ms may find the kernel queueing its woken workers behind the
   caller on the caller's CPU for a few ms (measured on a 2-vCPU KVM guest). A spin_ns longer than
   the gaps between maps avoids that (OpenMP's teams spin for milliseconds), at the price of the
   CPU those spins burn; blocking items then suffer (see the README).

   LIMITS ---------------------------------------------------------------------------------------------
   Up to 64 maps per pool can have helpers at once; a map started while 64 others are running still
   works, on its caller alone. threads <= PK_EXEC_MAX_THREADS. Memory: one pool is 49 KB (64 map
   slots of 768 bytes, each with 8 claim cells on cache lines of their own) plus 8 bytes per thread
   (and each thread's stack); a queued task is one 64-byte node, recycled through a free
   list (up to 1024 kept).

   CHOOSING threads AND concurrency ------------------------------------------------------------------
   CPU-bound maps: the caller takes part, so threads = CPUs - 1 with the default concurrency, or the
   default threads (= CPUs) with concurrency = CPUs, keeps one runnable participant per CPU (the
   benchmark uses the former). Blocking items (I/O, sleeps, model calls): threads >= the concurrency
   you want minus one; 32 items of 10 ms at concurrency 32 on 32 threads take about 10.5 ms.
   Submitted tasks: threads = arrival rate x mean run time (pk_exec_stats: run_ns_total / completed),
   plus headroom; queue_max bounds the wait a task can see to about queue_max / threads run times.

   PLACEMENT (Linux) ---------------------------------------------------------------------------------
   A map that wakes sleeping workers, with no more participants than those workers have CPUs,
   first narrows their CPU masks to their own masks minus the caller's CPU, so that the kernel
   places each woken worker elsewhere; each restores its own mask as soon as it wakes, before it
   runs anything (threads made by items inherit the full mask). Why: on a VM the kernel often
   queued the woken helper on its caller's busy CPU, where it waited for the caller's time slice
   (1.4-4.6 ms) before the map got its second CPU. Measured on a 22 ms CPU-bound map after an idle
   pause: 1.00-1.20x OpenMP's time (median 1.03, 25 runs) without this, 0.98-1.02x with it. Cost:
   syscalls of about 2 us for the caller and 1 us for the worker per woken worker, none while
   workers still spin. Maps with more participants than CPUs (blocking work), submitted tasks and
   maps in a fork()ed child are left alone. The caller reads each worker's mask when it wakes it,
   so masks the program or an item sets on a worker are kept; only one set on it between that
   read and the worker's restore (microseconds) is replaced by the restore. Define PK_EXEC_NO_STEER
   to turn this off.

   LICENSE: MIT or public domain, your choice; see LICENSE.
   Revision: 1.0 first release.
*/
#ifndef PK_EXEC_H
#define PK_EXEC_H

#include <stddef.h>
#include <stdint.h>

#ifndef PK_EXEC_DEF
#ifdef PK_EXEC_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define PK_EXEC_DEF static __attribute__((unused))
#else
#define PK_EXEC_DEF static
#endif
#else
#define PK_EXEC_DEF extern
#endif
#endif

#ifndef PK_FOREVER
#define PK_FOREVER UINT64_MAX
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pk_exec pk_exec;

typedef struct pk_exec_config {
    unsigned threads;   /* worker threads; 0 = online CPUs. Blocking (I/O) work wants more than CPUs. */
    size_t   queue_max; /* bound on queued submitted tasks; 0 = unbounded */
    uint64_t spin_ns;   /* how long an idle worker polls before it sleeps; 0 = PK_EXEC_SPIN_NS (50 us) */
    uint64_t (*clock_ns)(void *user); /* clock for deadlines and queue-wait stats; NULL = monotonic.
                                         Called with the pool's lock held: it must not call the pool */
    void    *user;      /* passed to clock_ns */
} pk_exec_config;

PK_EXEC_DEF int  pk_exec_create(pk_exec **out, const pk_exec_config *cfg);
PK_EXEC_DEF void pk_exec_destroy(pk_exec *e);

typedef int (*pk_exec_fn)(void *ctx, size_t index); /* 0 or -errno */
typedef struct pk_exec_map_opts {
    unsigned concurrency; /* at most this many items run at once; 0 = every worker plus the caller */
    int      fail_fast;   /* after a failure, items not yet started are skipped with -ECANCELED */
    int     *errors;      /* optional, n entries: each item's result */
    size_t   grain;       /* indices taken per claim; 0 = automatic */
    void   (*progress)(void *ctx, size_t done, size_t total); /* serialized, as items finish */
} pk_exec_map_opts;

PK_EXEC_DEF int pk_exec_map(pk_exec *e, size_t n, pk_exec_fn fn, void *ctx, const pk_exec_map_opts *opts);
typedef int (*pk_exec_range_fn)(void *ctx, size_t begin, size_t end); /* items [begin, end): 0 or -errno */
PK_EXEC_DEF int pk_exec_map_range(pk_exec *e, size_t n, pk_exec_range_fn fn, void *ctx, const pk_exec_map_opts *opts);
PK_EXEC_DEF int pk_exec_parallel_map(size_t n, pk_exec_fn fn, void *ctx, unsigned concurrency, int *errors);

PK_EXEC_DEF int pk_exec_submit(pk_exec *e, void (*fn)(void *arg), void *arg);
enum { PK_EXEC_LOW = -1, PK_EXEC_NORMAL = 0, PK_EXEC_HIGH = 1 };
typedef struct pk_exec_task_opts {
    int      priority;    /* PK_EXEC_HIGH runs before NORMAL (0, the default) before LOW; FIFO within a level */
    uint64_t deadline_ns; /* absolute, on the monotonic clock; a task not started by then is dropped; 0 = none */
    void   (*on_drop)(void *arg, int reason); /* -ETIMEDOUT (deadline passed) or -EAGAIN (displaced) */
} pk_exec_task_opts;
PK_EXEC_DEF int  pk_exec_submit_opts(pk_exec *e, void (*fn)(void *arg), void *arg, const pk_exec_task_opts *opts);
PK_EXEC_DEF void pk_exec_wait_idle(pk_exec *e);

/* Counters for sizing the pool. Submitted tasks obey, in every snapshot:
       submitted == queued + running + completed + dropped_timeout + dropped_displaced
   (a dropped task is counted when it leaves the queue, before its on_drop runs). */
typedef struct pk_exec_stats {
    unsigned threads;           /* worker threads now */
    size_t   queued;            /* submitted tasks waiting now, all levels */
    size_t   queued_high, queued_normal, queued_low; /* the same by level */
    size_t   queue_peak;        /* most tasks ever queued at once */
    size_t   running;           /* submitted tasks running now */
    uint64_t submitted;         /* submits that returned 0 */
    uint64_t completed;         /* tasks whose fn returned */
    uint64_t dropped_timeout;   /* on_drop(-ETIMEDOUT): deadline passed while queued */
    uint64_t dropped_displaced; /* on_drop(-EAGAIN): displaced by a higher-priority task */
    uint64_t rejected_full;     /* submits that returned -EAGAIN */
    uint64_t rejected_expired;  /* submits that returned -ETIMEDOUT */
    uint64_t started;           /* tasks that left the queue to run (completed + running) */
    uint64_t wait_ns_total;     /* sum over started tasks of the time from submit to start */
    uint64_t wait_ns_max;       /* longest such wait */
    uint64_t run_ns_total;      /* sum over completed tasks of fn's run time */
    uint64_t maps;              /* pk_exec_map calls with n > 0 */
    uint64_t map_items;         /* their items (run or skipped) */
    uint64_t maps_helped;       /* maps that were offered to helpers (the rest ran on their caller) */
} pk_exec_stats;
PK_EXEC_DEF void     pk_exec_stats_get(pk_exec *e, pk_exec_stats *out);
PK_EXEC_DEF uint64_t pk_exec_now_ns(void);

#ifdef __cplusplus
}
#endif

#endif /* PK_EXEC_H */

/* ================================================================================================ */

#if defined(PK_EXEC_IMPLEMENTATION) && !defined(PK_EXEC_IMPLEMENTATION_DONE)
#define PK_EXEC_IMPLEMENTATION_DONE

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__) && !defined(PK_EXEC_NO_STEER)
#include <sys/syscall.h>
#if defined(SYS_sched_setaffinity) && defined(SYS_sched_getaffinity) && defined(SYS_getcpu) && defined(SYS_gettid)
#define PK_EXEC__STEER 1
#if !defined(__cplusplus)
extern long syscall(long number, ...); /* not declared under strict -std=c99 + _POSIX_C_SOURCE */
#endif
#endif
#endif

/* PK_MALLOC, PK_REALLOC and PK_FREE go together (all pk headers share them): define all three or
   none, or a header that reallocates would mix your allocator with libc's */
#if (defined(PK_MALLOC) || defined(PK_REALLOC) || defined(PK_FREE)) && \
    !(defined(PK_MALLOC) && defined(PK_REALLOC) && defined(PK_FREE))
#error "pk: define PK_MALLOC, PK_REALLOC and PK_FREE together, or none of them"
#endif
#ifndef PK_MALLOC
#include <stdlib.h>
#define PK_MALLOC(n) malloc(n)
#endif
#ifndef PK_REALLOC
#include <stdlib.h>
#define PK_REALLOC(p, n) realloc(p, n)
#endif
#ifndef PK_FREE
#include <stdlib.h>
#define PK_FREE(p) free(p)
#endif
#ifndef PK_ASSERT
#include <assert.h>
#define PK_ASSERT(x) assert(x)
#endif
#ifndef PK_EXEC_MAX_THREADS
#define PK_EXEC_MAX_THREADS 4096
#endif
#ifndef PK_EXEC__COND_INIT /* private: tests make it fail, to run the work_cv fallback */
#define PK_EXEC__COND_INIT(cv) pthread_cond_init(cv, NULL)
#endif
#ifndef PK_EXEC_SPIN_NS
#define PK_EXEC_SPIN_NS 50000u
#endif
#ifndef PK_EXEC_SHARED_MAX_THREADS
#define PK_EXEC_SHARED_MAX_THREADS 256
#endif
#ifndef PK_EXEC_THREAD_CREATE
#define PK_EXEC_THREAD_CREATE(thr, start, arg) pthread_create((thr), NULL, (start), (arg))
#endif

#if defined(__x86_64__) || defined(__i386__)
#define PK_EXEC__PAUSE() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define PK_EXEC__PAUSE() __asm__ __volatile__("yield" ::: "memory")
#else
#define PK_EXEC__PAUSE() ((void)0)
#endif

#define PK_EXEC__LD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define PK_EXEC__LDR(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define PK_EXEC__LDA(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define PK_EXEC__ST(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define PK_EXEC__STR(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define PK_EXEC__ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
#define PK_EXEC__ADDR(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define PK_EXEC__SUB(p, v) __atomic_sub_fetch((p), (v), __ATOMIC_SEQ_CST)
#define PK_EXEC__XCHG(p, v) __atomic_exchange_n((p), (v), __ATOMIC_SEQ_CST)

/* ---- data structures ----------------------------------------------------------------------------

   Two kinds of work share the workers:

   MAPS. A map is a pk_exec__job: up to 8 cells of unclaimed index ranges, one per participant
   (shared when there are more), plus the map's parameters and its result record. A participant
   claims from its own cell and steals half of the fullest cell when its own is empty (see
   pk_exec__cell). A map that wants helpers copies itself into one of 64 slots inside the pool and
   "opens" it; a map that does not (concurrency 1, one item, or all slots taken) runs its job on the
   caller's stack, never seen by workers. Slots live in pool memory, so a worker may look at a slot
   at any time without a lock and without ever touching memory that was freed: that is what lets
   helpers join and leave with atomics only.
   Slot state word (what helpers race on to join and leave):  seq:32 | OPEN:1 | max_helpers:15 | helpers:16
     - the owner opens the slot with a new seq, OPEN and max_helpers and helpers 0 (release);
     - a helper joins by CAS helpers -> helpers + 1 while OPEN and helpers < max_helpers; the CAS
       compares the whole word, so a stale view of an earlier map in that slot (other seq) fails;
     - a helper reads the job only after joining, and leaves by an atomic decrement, after which it
       touches nothing of the job (the owner may reuse the slot at once);
     - the owner clears OPEN when every cell is empty and waits until helpers is 0: then every
       item's side effects are visible to it (acquire) and the slot is released.
   A slot's owner waiting too long sleeps on map_cv; a leaving helper that sees helpers reach 0 and
   `waiting` set broadcasts it (Dekker pair: helper decrements then loads waiting, owner stores
   waiting then loads helpers, all seq_cst: at least one of them sees the other).

   SUBMITTED TASKS. Three doubly linked FIFO lists (LOW, NORMAL, HIGH) of pk_exec__task nodes, under
   the pool mutex. Doubly linked because tasks leave from the head (start), the tail (displacement)
   and the middle (expired when the queue is full). Nodes are recycled through a free list.
   earliest_deadline is a lower bound of the deadlines in the queue (exact after each sweep), so a
   full queue is swept for expired tasks only when one may really have expired.

   WAKING. `gen` counts publications (map opened, task queued). An idle worker polls gen for at most
   spin_ns (and only while fewer than `max_spinners` workers poll), then sleeps on its own condition
   variable, its pk_exec__sleeper (on its stack) at the tail of `sleepers` and `sleeping` raised. A
   waker takes sleepers off the head and signals each one's own variable, so a worker is woken once
   and the waker knows which. A map wakes sleepers only when the spinning workers are not enough
   (its caller runs items anyway), steering them first (PLACEMENT); submit wakes one whenever one
   sleeps, since a spinner may go to a map instead of the task; destroy and the last task of a
   stopping pool wake all. destroy bumps gen too, so spinners see `stopping` at once. */

#define PK_EXEC__SLOTS 64
#define PK_EXEC__MASK_WORDS 16 /* CPU masks of up to 1024 CPUs (more: no steering) */
#define PK_EXEC__OPEN ((uint64_t)1 << 31)
#define PK_EXEC__HELPERS(s) ((unsigned)((s) & 0xffffu))
#define PK_EXEC__MAXH(s) ((unsigned)(((s) >> 16) & 0x7fffu))
#define PK_EXEC__MAX_ITEMS (((uint64_t)1) << 51) /* documented bound of n */

/* Each participant claims from its own cell (a range of unclaimed units, one cache line), so a
   claim is an uncontended CAS on a line that stays in its core; a participant whose cell is empty
   steals the lower half of the fullest cell. Units are grains (fixed grain) or items (automatic),
   so every claim starts on a multiple of the grain. */
#define PK_EXEC__CELLS 8

typedef struct pk_exec__cell {
    uint64_t w; /* atomic: first unclaimed unit << 32 | end unit; empty when first >= end */
    char pad[64 - sizeof(uint64_t)];
} pk_exec__cell;

typedef struct pk_exec__job {
    pk_exec__cell cell[PK_EXEC__CELLS]; /* first: pk_exec__job_init clears from n on */
    uint64_t n;
    uint64_t unit;     /* items per unit: the grain, or 1 when automatic (more if n needs it) */
    size_t grain;      /* fixed grain, or 0 = automatic */
    unsigned ncells;   /* cells in use (see pk_exec__job_init) */
    unsigned share;    /* participants per cell, rounded up */
    unsigned joins;    /* atomic: helpers that joined; helper k uses cell k % ncells, the owner 0 */
    pk_exec_fn fn;     /* per item, or NULL when range_fn is set */
    pk_exec_range_fn range_fn;
    void *ctx;
    int *errors;
    int fail_fast;
    void (*progress)(void *ctx, size_t done, size_t total);
    int failed;        /* atomic: some item failed (read per item only with fail_fast) */
    int fail_lock;     /* spin lock for fail_idx/fail_rc (taken only on failure) */
    uint64_t fail_idx; /* lowest failing index so far, UINT64_MAX = none */
    int fail_rc;
    uint64_t done;     /* atomic: items finished or skipped (only with progress) */
    int prog_lock;     /* atomic try-lock: who is calling progress */
    uint64_t reported; /* under prog_lock: the last done passed to progress */
} pk_exec__job;

typedef struct pk_exec__slot {
    uint64_t state; /* atomic: seq:32 | OPEN:1 | max_helpers:15 | helpers:16 */
    int waiting;    /* atomic: the owner sleeps on map_cv until helpers reach 0 */
    char pad0[64 - sizeof(uint64_t) - sizeof(int)];
    pk_exec__job job;
    char pad1[64 - sizeof(pk_exec__job) % 64]; /* slots (and so cells) stay 64-byte aligned */
} pk_exec__slot;

typedef struct pk_exec__task {
    struct pk_exec__task *prev, *next;
    void (*fn)(void *arg);
    void *arg;
    void (*on_drop)(void *arg, int reason);
    uint64_t deadline; /* 0 = none */
    uint64_t enq_ns;
    int level;         /* 0 LOW, 1 NORMAL, 2 HIGH */
    int reason;        /* set when dropped */
} pk_exec__task;

typedef struct pk_exec__fifo {
    pk_exec__task *head, *tail;
    size_t count;
} pk_exec__fifo;

/* An idle worker asleep, on its own stack, listed in `sleepers` (see WAKING). A waker takes it off
   the list, sets `woken` and signals its own condition variable, so it knows exactly which workers
   it woke, and can steer those (PLACEMENT). */
typedef struct pk_exec__sleeper {
    struct pk_exec__sleeper *prev, *next; /* (mu) */
    pthread_cond_t cv;  /* it waits here (work_cv if cv could not be made) */
    pthread_cond_t *cvp;
    int woken;          /* (mu) taken off the list by a waker */
    long tid;           /* its thread id */
    int nmask;          /* (mu) > 0: a waker narrowed its CPU mask; `mask` (nmask bytes) is the
                           mask it had, which it restores at once when it wakes */
    unsigned long mask[PK_EXEC__MASK_WORDS];
} pk_exec__sleeper;

struct pk_exec {
    pk_exec__slot slots[PK_EXEC__SLOTS]; /* first: the pool is 64-byte aligned, and so are they */
    void *mem;              /* the allocation the pool was aligned in */
    pthread_mutex_t mu;     /* protects everything marked (mu) */
    pthread_cond_t work_cv; /* idle workers whose own condition variable could not be made sleep here */
    pthread_cond_t idle_cv; /* wait_idle and destroy wait here */
    pthread_cond_t map_cv;  /* map owners wait here for their last helpers */
    pthread_t *threads;     /* (mu) [threads_cap]; the first nthreads are running */
    unsigned nthreads;      /* atomic read, written under mu */
    unsigned threads_cap;
    unsigned max_spinners;
    int is_shared;          /* the process-wide pool of pk_exec_parallel_map */
    size_t queue_max;       /* 0 = unbounded */
    uint64_t spin_ns;
    uint64_t (*clock_ns)(void *user);
    void *clock_user;

    pk_exec__fifo q[3];     /* (mu) LOW, NORMAL, HIGH */
    size_t queued;          /* (mu) written; read atomically as a hint by workers */
    size_t running;         /* (mu) submitted tasks running */
    size_t dropping;        /* (mu) dropped tasks whose on_drop has not returned yet */
    size_t idle_waiters;    /* (mu) threads in wait_idle/destroy */
    int stopping;           /* (mu) written; read atomically */
    pk_exec__task *free_tasks; /* (mu) recycled nodes */
    size_t nfree;           /* (mu) */
    size_t with_deadline;   /* (mu) queued tasks with a deadline */
    uint64_t earliest_deadline; /* (mu) lower bound of their deadlines */

    long pid;               /* the process that made the pool: a fork()ed child's copy must not
                               steer, its sleepers' tids are the parent's threads */
    unsigned sleeping;      /* atomic: workers listed in `sleepers` (changed under mu) */
    pk_exec__sleeper *sleepers, *sleepers_tail; /* (mu) asleep and not yet woken, oldest first */
    unsigned spinning;      /* atomic: workers polling gen */
    uint64_t gen;           /* atomic: publications */
    uint64_t busy_mask;     /* atomic: slots owned by a map */
    uint64_t open_mask;     /* atomic: slots open to helpers */

    /* statistics (mu) */
    size_t queue_peak;
    uint64_t submitted, completed, dropped_timeout, dropped_displaced, rejected_full, rejected_expired;
    uint64_t started, wait_ns_total, wait_ns_max, run_ns_total;
    uint64_t maps, map_items, maps_helped; /* atomic, relaxed */
};

/* "A call from inside this pool", for destroy and wait_idle, which must not wait for themselves: a
   per-thread chain of frames on the stack, one pushed by each worker for its life and one around the
   on_drop calls submit makes. A chain, not one pointer: a task of pool A may submit to pool B, and
   B's on_drop then runs inside both. */
typedef struct pk_exec__frame {
    const pk_exec *e;
    struct pk_exec__frame *up;
} pk_exec__frame;
#if defined(__cplusplus) && __cplusplus >= 201103L
static thread_local pk_exec__frame *pk_exec__frames;
#else
static __thread pk_exec__frame *pk_exec__frames;
#endif

static int pk_exec__inside(const pk_exec *e)
{
    const pk_exec__frame *f;
    for (f = pk_exec__frames; f; f = f->up)
        if (f->e == e) return 1;
    return 0;
}

/* ---- small helpers ------------------------------------------------------------------------------ */

PK_EXEC_DEF uint64_t pk_exec_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t pk_exec__clock(pk_exec *e)
{
    return e->clock_ns ? e->clock_ns(e->clock_user) : pk_exec_now_ns();
}

static unsigned pk_exec__ncpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)(n > 65536 ? 65536 : n) : 1u;
}

static void pk_exec__spin_lock(int *l)
{
    unsigned k = 0;
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) {
        if (++k < 64) PK_EXEC__PAUSE();
        else sched_yield();
    }
}

static void pk_exec__spin_unlock(int *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

/* ---- maps: running items ----------------------------------------------------------------------- */

/* Reports k more finished/skipped items. Whoever gets the try-lock calls progress for everything
   counted so far; the others just count and go on. After releasing, the reporter looks again: an
   increment made while it held the lock (whose owner saw the lock taken and left) is then seen,
   because that increment precedes the owner's failed exchange, which precedes our release. */
static void pk_exec__report(pk_exec__job *j, size_t k)
{
    PK_EXEC__ADD(&j->done, (uint64_t)k);
    while (PK_EXEC__XCHG(&j->prog_lock, 1) == 0) {
        uint64_t d, last = j->reported;
        while ((d = PK_EXEC__LD(&j->done)) > last) {
            last = d;
            j->reported = d;
            j->progress(j->ctx, (size_t)d, (size_t)j->n);
        }
        PK_EXEC__ST(&j->prog_lock, 0);
        if (PK_EXEC__LD(&j->done) == last) break;
    }
}

static void pk_exec__cancel(pk_exec__job *j, uint64_t a, uint64_t b)
{
    uint64_t i;
    if (a >= b) return;
    if (j->errors)
        for (i = a; i < b; i++) j->errors[i] = -ECANCELED;
    if (j->progress) pk_exec__report(j, (size_t)(b - a));
}

#define PK_EXEC__LO(w) ((w) >> 32)
#define PK_EXEC__HI(w) ((w) & 0xffffffffu)
#define PK_EXEC__RANGE(lo, hi) ((uint64_t)(lo) << 32 | (uint64_t)(hi))

/* The first item of unit u (n for the end). */
static uint64_t pk_exec__item(const pk_exec__job *j, uint64_t u) { return u * j->unit < j->n ? u * j->unit : j->n; }

static void pk_exec__fail(pk_exec__job *j, uint64_t i, int rc)
{
    pk_exec__spin_lock(&j->fail_lock);
    if (i < j->fail_idx) {
        j->fail_idx = i;
        j->fail_rc = rc;
    }
    pk_exec__spin_unlock(&j->fail_lock);
    if (j->fail_fast) {
        unsigned c;
        __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
        /* take every unclaimed unit at once; whoever claimed before us sees `failed` per item, and
           a thief holding a stolen range sees it before its first claim from that range */
        for (c = 0; c < j->ncells; c++) {
            uint64_t w = PK_EXEC__XCHG(&j->cell[c].w, (uint64_t)0);
            if (PK_EXEC__LO(w) < PK_EXEC__HI(w))
                pk_exec__cancel(j, pk_exec__item(j, PK_EXEC__LO(w)), pk_exec__item(j, PK_EXEC__HI(w)));
        }
    }
}

/* Claims units from a cell: one unit with a fixed grain; automatic: max(1, left / (2 x the cell's
   participants)) (all of it when alone), so a cell's claims shrink geometrically, the last ones are
   single items, and n blocking items at concurrency n all start at once. */
static int pk_exec__claim(pk_exec__job *j, pk_exec__cell *c, uint64_t *a, uint64_t *b)
{
    uint64_t w = PK_EXEC__LDR(&c->w);
    for (;;) {
        uint64_t lo = PK_EXEC__LO(w), hi = PK_EXEC__HI(w), take;
        if (lo >= hi) return 0;
        take = j->grain ? 1 : j->ncells * j->share == 1 ? hi - lo : (hi - lo) / (2 * j->share);
        if (!take) take = 1;
        if (__atomic_compare_exchange_n(&c->w, &w, PK_EXEC__RANGE(lo + take, hi), 0, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
            *a = lo;
            *b = lo + take;
            return 1;
        }
    }
}

/* Takes the lower half (at least one unit) of the fullest cell. 0: every cell is empty. The lower
   half, so that a participant left alone runs every item in index order, as a loop would. */
static int pk_exec__steal(pk_exec__job *j, uint64_t *a, uint64_t *b)
{
    for (;;) {
        unsigned c, best = 0;
        uint64_t best_w = 0, most = 0;
        for (c = 0; c < j->ncells; c++) {
            uint64_t w = PK_EXEC__LDR(&j->cell[c].w);
            if (PK_EXEC__LO(w) < PK_EXEC__HI(w) && PK_EXEC__HI(w) - PK_EXEC__LO(w) > most) {
                most = PK_EXEC__HI(w) - PK_EXEC__LO(w);
                best = c;
                best_w = w;
            }
        }
        if (!most) return 0;
        {
            uint64_t lo = PK_EXEC__LO(best_w), hi = PK_EXEC__HI(best_w), mid = lo + (most + 1) / 2;
            if (__atomic_compare_exchange_n(&j->cell[best].w, &best_w, PK_EXEC__RANGE(mid, hi), 0, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED)) {
                *a = lo;
                *b = mid;
                return 1;
            }
        }
    }
}

/* Runs the units [ua, ub): fixed grain, one grain at a time; automatic, as one range. */
static void pk_exec__run_units(pk_exec__job *j, uint64_t ua, uint64_t ub)
{
    const uint64_t grain = j->grain ? j->grain : UINT64_MAX;
    uint64_t start = pk_exec__item(j, ua), stop = pk_exec__item(j, ub);
    pk_exec_fn const fn = j->fn;
    void *const ctx = j->ctx;
    int *const errors = j->errors;
    const int fail_fast = j->fail_fast;
    if (!errors && !fail_fast && !j->progress && fn) { /* the common case: nothing to record but failures */
        uint64_t i;
        for (i = start; i < stop; i++) {
            int rc = fn(ctx, (size_t)i);
            if (rc) pk_exec__fail(j, i, rc);
        }
        return;
    }
    while (start < stop) {
        uint64_t end = stop - start > grain ? start + grain : stop, i;
        if (fail_fast && __atomic_load_n(&j->failed, __ATOMIC_RELAXED)) {
            pk_exec__cancel(j, start, stop);
            return;
        }
        if (j->range_fn) {
            int rc = j->range_fn(ctx, (size_t)start, (size_t)end);
            if (errors)
                for (i = start; i < end; i++) errors[i] = rc;
            if (rc) pk_exec__fail(j, start, rc);
            if (j->progress) pk_exec__report(j, (size_t)(end - start));
        } else {
            for (i = start; i < end; i++) {
                int rc;
                if (fail_fast && __atomic_load_n(&j->failed, __ATOMIC_RELAXED)) {
                    pk_exec__cancel(j, i, stop);
                    return;
                }
                rc = fn(ctx, (size_t)i);
                if (errors) errors[i] = rc;
                if (rc) pk_exec__fail(j, i, rc);
                if (j->progress) pk_exec__report(j, 1);
            }
        }
        start = end;
    }
}

/* The loop every participant runs (hot). `s` is the map's slot, or NULL when it runs alone; `me`
   the participant's number (owner 0). */
static void pk_exec__close(pk_exec *e, pk_exec__slot *s);
static void pk_exec__run_items(pk_exec *e, pk_exec__slot *s, pk_exec__job *j, unsigned me)
{
    pk_exec__cell *own = &j->cell[me % j->ncells];
    uint64_t a, b;
    for (;;) {
        if (!pk_exec__claim(j, own, &a, &b)) {
            uint64_t expect = PK_EXEC__LDR(&own->w);
            if (!pk_exec__steal(j, &a, &b)) break;
            /* make the stolen range ours to claim from (and for others to steal from); if a
               participant sharing this cell refilled it meanwhile, run the range as one claim */
            if (b - a > 1 && PK_EXEC__LO(expect) >= PK_EXEC__HI(expect) &&
                __atomic_compare_exchange_n(&own->w, &expect, PK_EXEC__RANGE(a, b), 0, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED))
                continue;
        }
        pk_exec__run_units(j, a, b);
    }
    /* nothing left to claim: no more helpers wanted (else idle workers would keep joining) */
    if (s) pk_exec__close(e, s);
}

/* Sets up a job of n items for up to `participants`, the units split evenly between
   min(participants, PK_EXEC__CELLS, units / 16) cells (at least one): a small map shares one cell,
   since its few claims cost less than the cache lines more cells would move between cores. */
static void pk_exec__job_init(pk_exec__job *j, uint64_t n, size_t grain, unsigned participants)
{
    uint64_t unit = grain ? grain : 1, units, c;
    unsigned ncells = participants < PK_EXEC__CELLS ? participants : PK_EXEC__CELLS;
    memset(&j->n, 0, sizeof *j - offsetof(pk_exec__job, n)); /* the cells in use are set below */
    if ((n + unit - 1) / unit > 0xffffffffu) { /* units must fit 32 bits: bigger units */
        uint64_t k = ((n + unit - 1) / unit + 0xfffffffeu) / 0xffffffffu;
        unit *= k;
    }
    units = (n + unit - 1) / unit;
    if (ncells > units / 16) ncells = units / 16 ? (unsigned)(units / 16) : 1;
    j->n = n;
    j->unit = unit;
    j->grain = grain;
    j->ncells = ncells;
    j->share = (participants + ncells - 1) / ncells;
    for (c = 0; c < ncells; c++)
        j->cell[c].w = PK_EXEC__RANGE(units * c / ncells, units * (c + 1) / ncells);
    j->fail_idx = UINT64_MAX;
}

/* ---- maps: helpers ------------------------------------------------------------------------------ */

/* Stops helpers from joining. Done by the first participant that finds every cell empty, and
   by the owner (again) before it waits: the slot cannot be reused meanwhile, because the caller is
   a joined helper or the owner. */
static void pk_exec__close(pk_exec *e, pk_exec__slot *s)
{
    unsigned bit = (unsigned)(s - e->slots);
    if (PK_EXEC__LDR(&s->state) & PK_EXEC__OPEN) {
        __atomic_and_fetch(&e->open_mask, ~((uint64_t)1 << bit), __ATOMIC_SEQ_CST);
        __atomic_and_fetch(&s->state, ~PK_EXEC__OPEN, __ATOMIC_SEQ_CST);
    }
}

static void pk_exec__leave(pk_exec *e, pk_exec__slot *s)
{
    uint64_t st = PK_EXEC__SUB(&s->state, 1);
    if (PK_EXEC__HELPERS(st) == 0 && PK_EXEC__LD(&s->waiting)) {
        pthread_mutex_lock(&e->mu);
        pthread_cond_broadcast(&e->map_cv);
        pthread_mutex_unlock(&e->mu);
    }
}

static void pk_exec__pass_on(pk_exec *e);

/* Joins one open map with room, runs its items, leaves. Returns 1 if it joined one. */
static int pk_exec__help_one(pk_exec *e)
{
    uint64_t open = PK_EXEC__LDA(&e->open_mask);
    while (open) {
        unsigned i = (unsigned)__builtin_ctzll(open);
        pk_exec__slot *s = &e->slots[i];
        uint64_t st = PK_EXEC__LDA(&s->state);
        open &= open - 1;
        while ((st & PK_EXEC__OPEN) && PK_EXEC__HELPERS(st) < PK_EXEC__MAXH(st)) {
            if (__atomic_compare_exchange_n(&s->state, &st, st + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                pk_exec__pass_on(e);
                pk_exec__run_items(e, s, &s->job, __atomic_add_fetch(&s->job.joins, 1, __ATOMIC_RELAXED));
                pk_exec__leave(e, s);
                return 1;
            }
        }
    }
    return 0;
}

static int pk_exec__maps_want_help(pk_exec *e)
{
    uint64_t open = PK_EXEC__LD(&e->open_mask);
    while (open) {
        unsigned i = (unsigned)__builtin_ctzll(open);
        uint64_t st = PK_EXEC__LD(&e->slots[i].state);
        open &= open - 1;
        if ((st & PK_EXEC__OPEN) && PK_EXEC__HELPERS(st) < PK_EXEC__MAXH(st)) return 1;
    }
    return 0;
}

/* PLACEMENT (see the top comment): narrows sleeper s's CPU mask, as it is now, to that mask minus
   `cpu`, the map caller's, unless that leaves it nothing or the map's participants (the caller and
   `helpers`) outnumber its CPUs; saves the mask it had for the worker to restore. With mu held. */
static void pk_exec__steer_locked(pk_exec__sleeper *s, unsigned cpu, unsigned helpers)
{
#ifdef PK_EXEC__STEER
    const unsigned bits = 8 * sizeof(unsigned long);
    unsigned long m[PK_EXEC__MASK_WORDS];
    unsigned w, ncpu = 0;
    long n;
    memset(s->mask, 0, sizeof s->mask);
    n = syscall(SYS_sched_getaffinity, s->tid, sizeof s->mask, s->mask);
    if (n <= 0 || cpu >= (unsigned long)n * 8 || !(s->mask[cpu / bits] & (1ul << (cpu % bits)))) return;
    for (w = 0; w < PK_EXEC__MASK_WORDS; w++) ncpu += (unsigned)__builtin_popcountl(s->mask[w]);
    if (ncpu <= helpers) return; /* more participants than CPUs: nothing to keep apart */
    memcpy(m, s->mask, sizeof m);
    m[cpu / bits] &= ~(1ul << (cpu % bits));
    if (syscall(SYS_sched_setaffinity, s->tid, (size_t)n, m) == 0) s->nmask = (int)n;
#else
    (void)s;
    (void)cpu;
    (void)helpers;
#endif
}

/* Wakes up to k sleepers, oldest first: takes them off the list and signals each one's own
   condition variable. With steer, a map's caller steers them first (PLACEMENT); `helpers` is how
   many helpers the map wants. With mu held. */
static void pk_exec__wake_locked(pk_exec *e, unsigned k, int steer, unsigned helpers)
{
    unsigned cpu = 0;
#ifdef PK_EXEC__STEER
    if (steer && syscall(SYS_getcpu, &cpu, NULL, NULL) != 0) steer = 0;
#else
    steer = 0;
#endif
    while (k-- && e->sleepers) {
        pk_exec__sleeper *s = e->sleepers;
        e->sleepers = s->next;
        if (e->sleepers) e->sleepers->prev = NULL;
        else e->sleepers_tail = NULL;
        s->woken = 1;
        PK_EXEC__SUB(&e->sleeping, 1);
        if (steer) pk_exec__steer_locked(s, cpu, helpers);
        if (s->cvp == &e->work_cv) pthread_cond_broadcast(&e->work_cv); /* the other fallback sleepers
                                                                            go back to waiting */
        else pthread_cond_signal(s->cvp);
    }
}

/* Called by a worker that just took work. A publisher wakes sleepers only for the work spinning
   workers cannot take, and two publishers at once (two maps, or a submit and a map) may count the
   same spinners, which then all go to one of them: the other's work waits while a worker sleeps.
   So a worker that takes work wakes one more sleeper when none spins and work still waits; that
   one does the same, until the work is covered or the sleepers run out. Two loads otherwise. */
static void pk_exec__pass_on(pk_exec *e)
{
    if (!PK_EXEC__LD(&e->sleeping) || PK_EXEC__LD(&e->spinning)) return;
    if (!PK_EXEC__LDR(&e->queued) && !pk_exec__maps_want_help(e)) return;
    pthread_mutex_lock(&e->mu);
    pk_exec__wake_locked(e, 1, 0, 0);
    pthread_mutex_unlock(&e->mu);
}

/* A map's wake-up: up to `want` workers beyond those already spinning, steered (PLACEMENT). Not in
   a fork()ed child: its copy of the pool has no workers, and a parent's thread may have held mu
   at the fork. */
static void pk_exec__wake(pk_exec *e, unsigned want)
{
    unsigned sp = PK_EXEC__LD(&e->spinning), helpers = want;
    if (want <= sp) return;
    if (PK_EXEC__LD(&e->sleeping) == 0 || (long)getpid() != e->pid) return;
    pthread_mutex_lock(&e->mu);
    pk_exec__wake_locked(e, want - sp, 1, helpers);
    pthread_mutex_unlock(&e->mu);
}

/* ---- submitted tasks (all under mu) -------------------------------------------------------------- */

static void pk_exec__unlink(pk_exec *e, pk_exec__task *t)
{
    pk_exec__fifo *f = &e->q[t->level];
    if (t->prev) t->prev->next = t->next;
    else f->head = t->next;
    if (t->next) t->next->prev = t->prev;
    else f->tail = t->prev;
    f->count--;
    __atomic_store_n(&e->queued, e->queued - 1, __ATOMIC_RELAXED); /* read without mu as a hint */
    if (t->deadline) e->with_deadline--;
}

static void pk_exec__push_drop(pk_exec__task **drops, pk_exec__task *t, int reason)
{
    t->reason = reason;
    t->next = *drops;
    *drops = t;
}

/* Drops every queued task whose deadline is reached; recomputes earliest_deadline exactly. */
static size_t pk_exec__sweep_expired(pk_exec *e, uint64_t now, pk_exec__task **drops)
{
    size_t k = 0;
    int l;
    uint64_t earliest = UINT64_MAX;
    for (l = 2; l >= 0; l--) {
        pk_exec__task *t = e->q[l].head, *nx;
        for (; t; t = nx) {
            nx = t->next;
            if (!t->deadline) continue;
            if (now >= t->deadline) {
                pk_exec__unlink(e, t);
                pk_exec__push_drop(drops, t, -ETIMEDOUT);
                e->dropped_timeout++;
                k++;
            } else if (t->deadline < earliest) {
                earliest = t->deadline;
            }
        }
    }
    e->earliest_deadline = earliest;
    return k;
}

static void pk_exec__recycle(pk_exec *e, pk_exec__task *t)
{
    if (e->nfree < 1024 && (e->queue_max == 0 || e->nfree < 64 || e->nfree - 64 < e->queue_max)) {
        t->next = e->free_tasks;
        e->free_tasks = t;
        e->nfree++;
    } else {
        PK_FREE(t);
    }
}

/* Destroy has begun and nothing is queued, running or being dropped, so no task is left that could
   submit another: the workers may leave. Under mu. */
static int pk_exec__drained(const pk_exec *e)
{
    return e->stopping && !e->queued && !e->running && !e->dropping;
}

static void pk_exec__notify_idle(pk_exec *e)
{
    if (e->idle_waiters && !e->queued && !e->running && !e->dropping) pthread_cond_broadcast(&e->idle_cv);
    if (pk_exec__drained(e)) { /* the workers that stayed for running tasks' submits may leave */
        PK_EXEC__ADD(&e->gen, 1);
        pk_exec__wake_locked(e, ~0u, 0, 0);
    }
}

/* Calls on_drop for a list made under mu (which must NOT be held now), then, under mu again,
   recycles the nodes and lowers `dropping`. Reverses the list first so drops are reported in
   queue order. Returns with mu held. */
static void pk_exec__deliver_drops_and_lock(pk_exec *e, pk_exec__task *drops, size_t k)
{
    pk_exec__task *rev = NULL, *t, *nx;
    for (t = drops; t; t = nx) {
        nx = t->next;
        t->next = rev;
        rev = t;
    }
    for (t = rev; t; t = t->next)
        if (t->on_drop) t->on_drop(t->arg, t->reason);
    pthread_mutex_lock(&e->mu);
    for (t = rev; t; t = nx) {
        nx = t->next;
        pk_exec__recycle(e, t);
    }
    e->dropping -= k;
    pk_exec__notify_idle(e);
}

/* With mu held and queued > 0: takes the next task to start (dropping expired ones on the way),
   starts it with mu released, and returns with mu held again. When it dropped tasks, it only
   delivers their on_drop calls and returns: the next task is picked after them, so that a slow
   on_drop cannot make it start past its deadline, ahead of a higher-priority task submitted
   meanwhile, or with the on_drop time counted as its run time. */
static void pk_exec__run_next_locked(pk_exec *e)
{
    pk_exec__task *t = NULL, *drops = NULL;
    size_t k = 0;
    uint64_t now = pk_exec__clock(e), end;
    int l, later = 0;
    for (l = 2; l >= 0 && !t && !later; l--) {
        pk_exec__task *x;
        while ((x = e->q[l].head) != NULL) {
            if (k && !(x->deadline && now >= x->deadline)) { /* picked after the on_drops */
                later = 1;
                break;
            }
            pk_exec__unlink(e, x);
            if (x->deadline && now >= x->deadline) {
                pk_exec__push_drop(&drops, x, -ETIMEDOUT);
                e->dropped_timeout++;
                k++;
                continue;
            }
            t = x;
            break;
        }
    }
    if (!e->with_deadline) e->earliest_deadline = UINT64_MAX;
    e->dropping += k;
    if (t) {
        uint64_t w = now > t->enq_ns ? now - t->enq_ns : 0;
        e->running++;
        e->started++;
        e->wait_ns_total += w;
        if (w > e->wait_ns_max) e->wait_ns_max = w;
    }
    pthread_mutex_unlock(&e->mu);
    if (k) {
        pk_exec__deliver_drops_and_lock(e, drops, k);
        if (!t) return;
        pthread_mutex_unlock(&e->mu);
    }
    if (!t) {
        pthread_mutex_lock(&e->mu);
        return;
    }
    t->fn(t->arg);
    end = pk_exec__clock(e);
    pthread_mutex_lock(&e->mu);
    e->running--;
    e->completed++;
    /* `now` may be from a clock the user moves backwards (a fake clock in a test) */
    e->run_ns_total += end > now ? end - now : 0;
    pk_exec__recycle(e, t);
    pk_exec__notify_idle(e);
}

/* ---- workers ------------------------------------------------------------------------------------ */

static void *pk_exec__worker(void *arg)
{
    pk_exec *e = (pk_exec *)arg;
    uint64_t idle_since = 0; /* when this worker last found nothing to do; 0 = it just worked */
    int helped = 0;          /* the last thing done was helping a map */
    int waited;
    pk_exec__frame self;
    pk_exec__sleeper me;
    memset(&me, 0, sizeof me);
    me.cvp = PK_EXEC__COND_INIT(&me.cv) == 0 ? &me.cv : &e->work_cv;
#ifdef PK_EXEC__STEER
    me.tid = syscall(SYS_gettid);
#endif
    self.e = e;
    self.up = pk_exec__frames;
    pk_exec__frames = &self;
    for (;;) {
        uint64_t g = PK_EXEC__LD(&e->gen);
        /* maps first (their callers are blocked on them), but after helping one, a queued task
           goes first if there is one: neither kind of work can starve the other */
        if ((!helped || !PK_EXEC__LDR(&e->queued)) && pk_exec__help_one(e)) {
            helped = 1;
            idle_since = 0;
            continue;
        }
        helped = 0;
        if (PK_EXEC__LDR(&e->queued) || PK_EXEC__LDR(&e->stopping)) {
            int stop = 0, worked = 0;
            pthread_mutex_lock(&e->mu);
            if (e->queued) {
                /* as pk_exec__pass_on, for a map left waiting while this worker takes the task */
                if (e->sleepers && !PK_EXEC__LD(&e->spinning) && pk_exec__maps_want_help(e))
                    pk_exec__wake_locked(e, 1, 0, 0);
                pk_exec__run_next_locked(e);
                worked = 1;
            } else if (pk_exec__drained(e)) {
                /* Not before: a running task (or on_drop) may still submit, and may wait for what
                   it submitted, which needs a worker that has not left. */
                stop = 1;
            }
            pthread_mutex_unlock(&e->mu);
            if (stop) break;
            if (worked) {
                idle_since = 0;
                continue;
            }
        }
        /* Nothing to do: poll `gen` for a while, if allowed, then sleep. */
        if (!idle_since) idle_since = pk_exec_now_ns();
        if (PK_EXEC__ADD(&e->spinning, 1) <= e->max_spinners) {
            unsigned k = 0;
            int changed = 0;
            for (;;) {
                if (PK_EXEC__LDR(&e->gen) != g) {
                    changed = 1;
                    break;
                }
                PK_EXEC__PAUSE();
                if ((++k & 63) == 0 && pk_exec_now_ns() - idle_since >= e->spin_ns) break;
            }
            PK_EXEC__SUB(&e->spinning, 1);
            if (changed) continue;
        } else {
            PK_EXEC__SUB(&e->spinning, 1);
        }
        pthread_mutex_lock(&e->mu);
        PK_EXEC__ADD(&e->sleeping, 1);
        me.woken = 0;
        me.nmask = 0;
        me.next = NULL;
        me.prev = e->sleepers_tail;
        if (me.prev) me.prev->next = &me;
        else e->sleepers = &me;
        e->sleepers_tail = &me;
        /* Out when a waker took it (even if its map is over by now: the mask is restored below), or
           when it sees work itself: before waiting, or after a spurious wake-up. Not after a wake-up
           on the shared work_cv meant for another: that sleeper is the one woken (and steered). */
        for (waited = 0; !me.woken; waited = 1) {
            if ((!waited || me.cvp != &e->work_cv) &&
                (pk_exec__drained(e) || e->queued || pk_exec__maps_want_help(e)))
                break;
            pthread_cond_wait(me.cvp, &e->mu);
        }
        if (!me.woken) { /* found work on its own */
            if (me.prev) me.prev->next = me.next;
            else e->sleepers = me.next;
            if (me.next) me.next->prev = me.prev;
            else e->sleepers_tail = me.prev;
            PK_EXEC__SUB(&e->sleeping, 1);
        }
        pthread_mutex_unlock(&e->mu);
#ifdef PK_EXEC__TEST_WOKEN
        PK_EXEC__TEST_WOKEN(me.nmask > 0); /* private: tests read the mask the worker woke with */
#endif
#ifdef PK_EXEC__STEER
        /* The kernel placed it at the wake-up; widening the mask now does not move it. At once, not
           after the map: its items may make threads (which inherit the mask) or set a mask. */
        if (me.nmask > 0) (void)syscall(SYS_sched_setaffinity, 0, (size_t)me.nmask, me.mask);
#endif
        idle_since = 0; /* woken for work: a fresh spin budget */
    }
    if (me.cvp == &me.cv) pthread_cond_destroy(&me.cv);
    pk_exec__frames = self.up;
    return NULL;
}

/* Starts workers until nthreads == target (or a creation fails). With mu held. Workers start with
   all signals blocked. Returns 0 or -EAGAIN/-ENOMEM-like (the pthread error, negated). */
static int pk_exec__add_threads_locked(pk_exec *e, unsigned target)
{
    sigset_t all, old;
    int rc = 0;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (e->nthreads < target) {
        int r = PK_EXEC_THREAD_CREATE(&e->threads[e->nthreads], pk_exec__worker, (void *)e);
        if (r != 0) {
            rc = r == ENOMEM ? -ENOMEM : -EAGAIN;
            break;
        }
        PK_EXEC__ST(&e->nthreads, e->nthreads + 1);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Stops and joins all workers; runs what is left in the queue. Used by destroy and failed create. */
static void pk_exec__stop(pk_exec *e)
{
    unsigned i, n;
    pthread_mutex_lock(&e->mu);
    PK_EXEC__ST(&e->stopping, 1);
    PK_EXEC__ADD(&e->gen, 1); /* spinning workers poll only gen: without this, join waits out spin_ns */
    pk_exec__wake_locked(e, ~0u, 0, 0);
    n = e->nthreads;
    pthread_mutex_unlock(&e->mu);
    for (i = 0; i < n; i++) pthread_join(e->threads[i], NULL);
    pthread_mutex_lock(&e->mu);
    /* Workers leave only with an empty queue; a task submitted after that (by a thread racing with
       destroy, which the contract forbids) is still honoured here rather than lost. */
    while (e->queued) pk_exec__run_next_locked(e);
    e->idle_waiters++;
    while (e->running || e->dropping) pthread_cond_wait(&e->idle_cv, &e->mu);
    e->idle_waiters--;
    pthread_mutex_unlock(&e->mu);
}

static void pk_exec__free(pk_exec *e)
{
    pk_exec__task *t;
    while ((t = e->free_tasks) != NULL) {
        e->free_tasks = t->next;
        PK_FREE(t);
    }
    pthread_cond_destroy(&e->map_cv);
    pthread_cond_destroy(&e->idle_cv);
    pthread_cond_destroy(&e->work_cv);
    pthread_mutex_destroy(&e->mu);
    PK_FREE(e->threads);
    PK_FREE(e->mem);
}

static int pk_exec__create(pk_exec **out, const pk_exec_config *cfg, unsigned cap)
{
    pk_exec *e;
    void *mem;
    unsigned threads = cfg && cfg->threads ? cfg->threads : pk_exec__ncpu();
    int rc;
    if (!out) return -EINVAL;
    if (cfg && cfg->threads > PK_EXEC_MAX_THREADS) return -EINVAL;
    if (threads > PK_EXEC_MAX_THREADS) threads = PK_EXEC_MAX_THREADS; /* the default: capped, not refused */
    if (cap < threads) cap = threads;
    mem = PK_MALLOC(sizeof *e + 63);
    if (!mem) return -ENOMEM;
    e = (pk_exec *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
    memset(e, 0, sizeof *e);
    e->mem = mem;
    e->threads = (pthread_t *)PK_MALLOC(sizeof(pthread_t) * cap);
    if (!e->threads) {
        PK_FREE(mem);
        return -ENOMEM;
    }
    if (pthread_mutex_init(&e->mu, NULL) != 0) goto fail_mu;
    if (pthread_cond_init(&e->work_cv, NULL) != 0) goto fail_work;
    if (pthread_cond_init(&e->idle_cv, NULL) != 0) goto fail_idle;
    if (pthread_cond_init(&e->map_cv, NULL) != 0) goto fail_map;
    e->threads_cap = cap;
    e->queue_max = cfg ? cfg->queue_max : 0;
    e->spin_ns = cfg && cfg->spin_ns ? cfg->spin_ns : (uint64_t)PK_EXEC_SPIN_NS;
    e->clock_ns = cfg ? cfg->clock_ns : NULL;
    e->clock_user = cfg ? cfg->user : NULL;
    e->max_spinners = pk_exec__ncpu();
    e->pid = (long)getpid();
    e->earliest_deadline = UINT64_MAX;
    pthread_mutex_lock(&e->mu);
    rc = pk_exec__add_threads_locked(e, threads);
    pthread_mutex_unlock(&e->mu);
    if (rc != 0) {
        pk_exec__stop(e);
        pk_exec__free(e);
        return rc;
    }
    *out = e;
    return 0;
fail_map:
    pthread_cond_destroy(&e->idle_cv);
fail_idle:
    pthread_cond_destroy(&e->work_cv);
fail_work:
    pthread_mutex_destroy(&e->mu);
fail_mu:
    PK_FREE(e->threads);
    PK_FREE(mem);
    return -ENOMEM;
}

/* ---- public API ----------------------------------------------------------------------------------- */

PK_EXEC_DEF int pk_exec_create(pk_exec **out, const pk_exec_config *cfg)
{
    return pk_exec__create(out, cfg, 0);
}

PK_EXEC_DEF void pk_exec_destroy(pk_exec *e)
{
    if (!e || e->is_shared) return;
    if (pk_exec__inside(e)) return; /* from inside its own task: refuse (documented) */
    pk_exec__stop(e);
    pk_exec__free(e);
}

static int pk_exec__map(pk_exec *e, size_t n, pk_exec_fn fn, pk_exec_range_fn rfn, void *ctx,
                        const pk_exec_map_opts *opts, unsigned concurrency)
{
    pk_exec__job local, *j = &local;
    pk_exec__slot *s = NULL;
    unsigned nthreads, maxh, bit = 0;
    size_t grain;
    int rc;
    if (!e || (!fn && !rfn)) return -EINVAL;
    if (n == 0) return 0;
    if ((uint64_t)n > PK_EXEC__MAX_ITEMS) return -EINVAL;
    nthreads = PK_EXEC__LDR(&e->nthreads);
    if (!concurrency) concurrency = nthreads + 1;
    maxh = concurrency - 1 < nthreads ? concurrency - 1 : nthreads;
    if (maxh > 4096) maxh = 4096; /* fits the state word */
    grain = opts ? opts->grain : 0;
    if (grain > n) grain = n;
    {
        size_t claims = grain ? (n + grain - 1) / grain : n; /* most claims there can be */
        if ((size_t)maxh + 1 > claims) maxh = (unsigned)(claims - 1);
    }
    PK_EXEC__ADDR(&e->maps, 1);
    PK_EXEC__ADDR(&e->map_items, (uint64_t)n);
    if (maxh > 0) {
        /* claim a free slot; none free = run alone */
        uint64_t busy = PK_EXEC__LDR(&e->busy_mask);
        while (~busy) {
            bit = (unsigned)__builtin_ctzll(~busy);
            if (__atomic_compare_exchange_n(&e->busy_mask, &busy, busy | ((uint64_t)1 << bit), 0, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED)) {
                s = &e->slots[bit];
                j = &s->job;
                break;
            }
        }
    }
    pk_exec__job_init(j, n, grain, s ? maxh + 1 : 1);
    j->fn = fn;
    j->range_fn = rfn;
    j->ctx = ctx;
    j->errors = opts ? opts->errors : NULL;
    j->fail_fast = opts ? opts->fail_fast : 0;
    j->progress = opts ? opts->progress : NULL;
    if (s) {
        uint64_t seq = (PK_EXEC__LDR(&s->state) >> 32) + 1;
        PK_EXEC__ADDR(&e->maps_helped, 1);
        PK_EXEC__ST(&s->waiting, 0);
        __atomic_store_n(&s->state, (seq << 32) | PK_EXEC__OPEN | ((uint64_t)maxh << 16), __ATOMIC_RELEASE);
        __atomic_or_fetch(&e->open_mask, (uint64_t)1 << bit, __ATOMIC_SEQ_CST);
        PK_EXEC__ADD(&e->gen, 1);
        pk_exec__wake(e, maxh);
    }
    pk_exec__run_items(e, s, j, 0);
    if (s) {
        if (PK_EXEC__HELPERS(PK_EXEC__LDA(&s->state))) {
            uint64_t t0 = 0;
            unsigned k = 0;
            while (PK_EXEC__HELPERS(PK_EXEC__LDA(&s->state))) {
                PK_EXEC__PAUSE();
                if ((++k & 63) == 0) {
                    uint64_t now = pk_exec_now_ns();
                    if (!t0) t0 = now;
                    else if (now - t0 >= e->spin_ns) break;
                }
            }
            if (PK_EXEC__HELPERS(PK_EXEC__LDA(&s->state))) {
                pthread_mutex_lock(&e->mu);
                PK_EXEC__ST(&s->waiting, 1);
                while (PK_EXEC__HELPERS(PK_EXEC__LD(&s->state))) pthread_cond_wait(&e->map_cv, &e->mu);
                PK_EXEC__ST(&s->waiting, 0);
                pthread_mutex_unlock(&e->mu);
            }
        }
    }
    /* every participant has left: the results are ours */
    if (j->progress && j->reported < j->n) {
        /* cannot happen (the last reporter flushes), kept as a guarantee of the contract */
        j->reported = j->n;
        j->progress(ctx, n, n);
    }
    rc = j->fail_idx == UINT64_MAX ? 0 : j->fail_rc;
    if (s) __atomic_and_fetch(&e->busy_mask, ~((uint64_t)1 << bit), __ATOMIC_RELEASE);
    return rc;
}

PK_EXEC_DEF int pk_exec_map(pk_exec *e, size_t n, pk_exec_fn fn, void *ctx, const pk_exec_map_opts *opts)
{
    return pk_exec__map(e, n, fn, NULL, ctx, opts, opts ? opts->concurrency : 0);
}

PK_EXEC_DEF int pk_exec_map_range(pk_exec *e, size_t n, pk_exec_range_fn fn, void *ctx, const pk_exec_map_opts *opts)
{
    if (!fn) return -EINVAL;
    return pk_exec__map(e, n, NULL, fn, ctx, opts, opts ? opts->concurrency : 0);
}

/* The process-wide pool of pk_exec_parallel_map: made on first use under a static mutex (not
   pthread_once, so that a failed creation is retried by a later call instead of being final). */
static pk_exec *pk_exec__shared;
static pthread_mutex_t pk_exec__shared_mu = PTHREAD_MUTEX_INITIALIZER;
static long pk_exec__shared_owner; /* atomic: pid of the process whose thread took shared_mu last */

static pk_exec *pk_exec__shared_get(unsigned want_threads)
{
    const unsigned limit =
        PK_EXEC_SHARED_MAX_THREADS < PK_EXEC_MAX_THREADS ? PK_EXEC_SHARED_MAX_THREADS : PK_EXEC_MAX_THREADS;
    pk_exec *e = __atomic_load_n(&pk_exec__shared, __ATOMIC_ACQUIRE);
    unsigned ncpu, target;
    if (want_threads > limit) want_threads = limit;
    if (e && PK_EXEC__LDR(&e->nthreads) >= want_threads) return e; /* in a fork()ed child too: its
                                                                       maps wake no one (pk_exec__wake) */
    if (e && e->pid != (long)getpid()) return NULL; /* a child's copy: no workers, locks maybe held */
    if (pthread_mutex_trylock(&pk_exec__shared_mu) != 0) {
        /* Held by another thread of this process: wait for it. In a fork()ed child it may be held
           by a parent's thread that does not exist here (the pid says so): run alone instead. */
        if (__atomic_load_n(&pk_exec__shared_owner, __ATOMIC_ACQUIRE) != (long)getpid()) return NULL;
        pthread_mutex_lock(&pk_exec__shared_mu);
    }
    __atomic_store_n(&pk_exec__shared_owner, (long)getpid(), __ATOMIC_RELEASE);
    e = pk_exec__shared;
    if (!e) {
        /* one thread first, then as many more as the system gives (below): a thread limit then
           means fewer helpers, not a serial run after making and joining threads on every call */
        pk_exec_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.threads = 1;
        if (pk_exec__create(&e, &cfg, limit) == 0) {
            e->is_shared = 1;
            __atomic_store_n(&pk_exec__shared, e, __ATOMIC_RELEASE);
        } else {
            e = NULL;
        }
    }
    ncpu = pk_exec__ncpu();
    target = ncpu > 1 ? ncpu - 1 : 1; /* the caller is the last CPU's participant */
    if (target > limit) target = limit;
    if (target < want_threads) target = want_threads;
    if (e && PK_EXEC__LDR(&e->nthreads) < target) {
        pthread_mutex_lock(&e->mu);
        (void)pk_exec__add_threads_locked(e, target); /* fewer threads: fewer helpers, same results */
        pthread_mutex_unlock(&e->mu);
    }
    pthread_mutex_unlock(&pk_exec__shared_mu);
    return e;
}

PK_EXEC_DEF int pk_exec_parallel_map(size_t n, pk_exec_fn fn, void *ctx, unsigned concurrency, int *errors)
{
    pk_exec_map_opts o;
    pk_exec *e;
    unsigned want;
    if (!fn) return -EINVAL;
    if (n == 0) return 0;
    if ((uint64_t)n > PK_EXEC__MAX_ITEMS) return -EINVAL; /* before any pool is made or grown */
    if (!concurrency) concurrency = pk_exec__ncpu();
    want = concurrency - 1;
    if ((size_t)want > n - 1) want = (unsigned)(n - 1);
    if (want > PK_EXEC_SHARED_MAX_THREADS) want = PK_EXEC_SHARED_MAX_THREADS;
    memset(&o, 0, sizeof o);
    o.errors = errors;
    e = want ? pk_exec__shared_get(want) : NULL;
    if (!e) {
        /* no helper wanted, or no pool could be made: run on the caller alone, same results */
        pk_exec__job j;
        pk_exec__job_init(&j, n, 0, 1);
        j.fn = fn;
        j.ctx = ctx;
        j.errors = errors;
        pk_exec__run_items(NULL, NULL, &j, 0);
        return j.fail_idx == UINT64_MAX ? 0 : j.fail_rc;
    }
    return pk_exec__map(e, n, fn, NULL, ctx, &o, concurrency);
}

PK_EXEC_DEF int pk_exec_submit(pk_exec *e, void (*fn)(void *arg), void *arg)
{
    return pk_exec_submit_opts(e, fn, arg, NULL);
}

PK_EXEC_DEF int pk_exec_submit_opts(pk_exec *e, void (*fn)(void *arg), void *arg, const pk_exec_task_opts *opts)
{
    pk_exec__task *t, *drops = NULL;
    size_t k = 0;
    int level, rc = 0;
    uint64_t deadline, now;
    if (!e || !fn) return -EINVAL;
    level = opts ? opts->priority : PK_EXEC_NORMAL;
    if (level < PK_EXEC_LOW || level > PK_EXEC_HIGH) return -EINVAL;
    level += 1;
    deadline = opts ? opts->deadline_ns : 0;
    now = pk_exec__clock(e);
    pthread_mutex_lock(&e->mu);
    if (deadline && now >= deadline) {
        e->rejected_expired++;
        pthread_mutex_unlock(&e->mu);
        return -ETIMEDOUT;
    }
    t = e->free_tasks;
    if (t) {
        e->free_tasks = t->next;
        e->nfree--;
    } else {
        pthread_mutex_unlock(&e->mu);
        t = (pk_exec__task *)PK_MALLOC(sizeof *t);
        if (!t) return -ENOMEM;
        pthread_mutex_lock(&e->mu);
        now = pk_exec__clock(e); /* time passed in malloc: tasks may have expired meanwhile */
    }
    if (e->queue_max && e->queued >= e->queue_max) {
        /* 1. make room by dropping what has expired (only if something may have) */
        if (e->with_deadline && now >= e->earliest_deadline) k += pk_exec__sweep_expired(e, now, &drops);
        /* 2. displace the newest task of the lowest non-empty level below ours */
        if (e->queued >= e->queue_max) {
            int l;
            for (l = 0; l < level; l++)
                if (e->q[l].count) break;
            if (l < level) {
                pk_exec__task *v = e->q[l].tail;
                pk_exec__unlink(e, v);
                pk_exec__push_drop(&drops, v, -EAGAIN);
                e->dropped_displaced++;
                k++;
            } else {
                e->rejected_full++;
                pk_exec__recycle(e, t);
                t = NULL;
                rc = -EAGAIN;
            }
        }
    }
    if (t) {
        pk_exec__fifo *f = &e->q[level];
        t->fn = fn;
        t->arg = arg;
        t->on_drop = opts ? opts->on_drop : NULL;
        t->deadline = deadline;
        t->enq_ns = now;
        t->level = level;
        t->reason = 0;
        t->next = NULL;
        t->prev = f->tail;
        if (f->tail) f->tail->next = t;
        else f->head = t;
        f->tail = t;
        f->count++;
        __atomic_store_n(&e->queued, e->queued + 1, __ATOMIC_RELAXED);
        if (e->queued > e->queue_peak) e->queue_peak = e->queued;
        if (deadline) {
            e->with_deadline++;
            if (deadline < e->earliest_deadline) e->earliest_deadline = deadline;
        }
        e->submitted++;
        PK_EXEC__ADD(&e->gen, 1);
        /* Wake a sleeper whenever there is one, even if workers are spinning: a spinner may join a
           map that opens next instead, and the task would then wait for that map to end (or
           forever, if the map's items wait for the task). */
        pk_exec__wake_locked(e, 1, 0, 0);
    }
    e->dropping += k;
    pthread_mutex_unlock(&e->mu);
    if (k) {
        pk_exec__frame f; /* destroy from inside this on_drop must refuse: we still use e after it */
        f.e = e;
        f.up = pk_exec__frames;
        pk_exec__frames = &f;
        pk_exec__deliver_drops_and_lock(e, drops, k);
        pthread_mutex_unlock(&e->mu);
        pk_exec__frames = f.up;
    }
    return rc;
}

PK_EXEC_DEF void pk_exec_wait_idle(pk_exec *e)
{
    if (!e || pk_exec__inside(e)) return;
    pthread_mutex_lock(&e->mu);
    e->idle_waiters++;
    while (e->queued || e->running || e->dropping) pthread_cond_wait(&e->idle_cv, &e->mu);
    e->idle_waiters--;
    pthread_mutex_unlock(&e->mu);
}

PK_EXEC_DEF void pk_exec_stats_get(pk_exec *e, pk_exec_stats *out)
{
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    out->threads = e->nthreads;
    out->queued = e->queued;
    out->queued_low = e->q[0].count;
    out->queued_normal = e->q[1].count;
    out->queued_high = e->q[2].count;
    out->queue_peak = e->queue_peak;
    out->running = e->running;
    out->submitted = e->submitted;
    out->completed = e->completed;
    out->dropped_timeout = e->dropped_timeout;
    out->dropped_displaced = e->dropped_displaced;
    out->rejected_full = e->rejected_full;
    out->rejected_expired = e->rejected_expired;
    out->started = e->started;
    out->wait_ns_total = e->wait_ns_total;
    out->wait_ns_max = e->wait_ns_max;
    out->run_ns_total = e->run_ns_total;
    pthread_mutex_unlock(&e->mu);
    out->maps = PK_EXEC__LDR(&e->maps);
    out->map_items = PK_EXEC__LDR(&e->map_items);
    out->maps_helped = PK_EXEC__LDR(&e->maps_helped);
}

#endif /* PK_EXEC_IMPLEMENTATION */

/* License: MIT or public domain, your choice; see LICENSE. */
