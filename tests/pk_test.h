/* READ /work/main/DEVELOPERS.md FIRST: conventions, file layout, deadlines. */
/* pk_test.h — the tiny test harness shared by pk's test programs.

   One test program = one C file that includes this header once. It gives:
     PK_CHECK(cond)            a check; a failure prints file:line and the expression
     PK_CHECK_EQ(a, b)         integer equality, printing both values (as long long)
     PK_CHECK_MSG(cond, ...)   a check with a printf-style message on failure
     PK_TEST(fn)               runs `static void fn(void)`; it passes if no check in it failed
     pk_test_main_begin(name)  starts the watchdog (PK_TEST_TIMEOUT seconds, default 300)
     pk_test_main_end()        prints "NAME: N passed, N failed" and returns the exit status

   Allocation-failure injector, for every header's tests through PK_MALLOC/PK_REALLOC/PK_FREE:
     #define PK_MALLOC(n)     pk_test_malloc(n)
     #define PK_REALLOC(p, n) pk_test_realloc(p, n)
     #define PK_FREE(p)       pk_test_free(p)
   before including the header's implementation. Then
     pk_test_alloc_fail_at(n)  the n-th allocation from now fails (1 = the next one); 0 = none fail
     pk_test_alloc_fail_every(k) every k-th allocation fails (0 = off), for stress with failures
     pk_test_alloc_live()      allocations not yet freed (assert 0 after destroy: nothing leaked)
     pk_test_alloc_count()     allocations attempted so far
     pk_test_alloc_injected()  failures injected so far
     pk_test_alloc_sweep(...)  runs a scenario with the 1st, 2nd, ... allocation failing until a run
                               makes no failing allocation; checks no leak after each run
   Counters are atomic, so threads may allocate; injection is meant for single-threaded scenarios.

   Helpers: pk_test_now_ns(), pk_test_sleep_ns(), pk_test_rand(&state) (splitmix64),
   pk_test_scale(n): n in a plain build, n/8 (at least 1) when tests/run.sh runs the program under a
   sanitizer (it sets PK_TEST_SLOW=1), so stress loops keep `make test` short. */
#ifndef PK_TEST_H
#define PK_TEST_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Every helper is static and may go unused by a given test program. */
#if defined(__GNUC__) || defined(__clang__)
#define PK_TEST__FN static __attribute__((unused))
#else
#define PK_TEST__FN static
#endif

static const char *pk_test__name = "test";
PK_TEST__FN int pk_test__passed, pk_test__failed; /* test functions */
PK_TEST__FN long pk_test__checks, pk_test__check_failures;
PK_TEST__FN int pk_test__cur_failed;

PK_TEST__FN void pk_test__fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    __atomic_add_fetch(&pk_test__check_failures, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&pk_test__cur_failed, 1, __ATOMIC_RELAXED);
    fprintf(stderr, "%s:%d: FAIL: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

#define PK_CHECK(cond)                                                             \
    do {                                                                           \
        __atomic_add_fetch(&pk_test__checks, 1, __ATOMIC_RELAXED);                 \
        if (!(cond)) pk_test__fail(__FILE__, __LINE__, "%s", #cond);               \
    } while (0)

#define PK_CHECK_MSG(cond, ...)                                                    \
    do {                                                                           \
        __atomic_add_fetch(&pk_test__checks, 1, __ATOMIC_RELAXED);                 \
        if (!(cond)) pk_test__fail(__FILE__, __LINE__, __VA_ARGS__);               \
    } while (0)

#define PK_CHECK_EQ(a, b)                                                          \
    do {                                                                           \
        long long pk_test__a = (long long)(a), pk_test__b = (long long)(b);        \
        __atomic_add_fetch(&pk_test__checks, 1, __ATOMIC_RELAXED);                 \
        if (pk_test__a != pk_test__b)                                              \
            pk_test__fail(__FILE__, __LINE__, "%s == %s (%lld != %lld)", #a, #b,   \
                          pk_test__a, pk_test__b);                                 \
    } while (0)

#define PK_TEST(fn) pk_test__run(#fn, fn)

PK_TEST__FN void pk_test__run(const char *name, void (*fn)(void))
{
    uint64_t t0, t1;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t0 = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    pk_test__cur_failed = 0;
    fn();
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t1 = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    if (pk_test__cur_failed) pk_test__failed++;
    else pk_test__passed++;
    printf("  %-4s %s (%.1f ms)\n", pk_test__cur_failed ? "FAIL" : "ok", name, (double)(t1 - t0) / 1e6);
    fflush(stdout);
}

PK_TEST__FN void pk_test__on_alarm(int sig)
{
    static const char msg[] = "pk_test: watchdog expired (a hang?) — set PK_TEST_TIMEOUT to raise it\n";
    ssize_t r;
    (void)sig;
    r = write(2, msg, sizeof msg - 1);
    (void)r;
    _exit(124);
}

PK_TEST__FN void pk_test_main_begin(const char *name)
{
    const char *t = getenv("PK_TEST_TIMEOUT");
    unsigned secs = t ? (unsigned)atoi(t) : 300u;
    pk_test__name = name;
    signal(SIGALRM, pk_test__on_alarm);
    if (secs) alarm(secs);
    printf("%s\n", name);
    fflush(stdout);
}

PK_TEST__FN int pk_test_main_end(void)
{
    printf("%s: %ld checks, %ld failed checks\n", pk_test__name, pk_test__checks, pk_test__check_failures);
    printf("%s: %d passed, %d failed\n", pk_test__name, pk_test__passed, pk_test__failed);
    fflush(stdout);
    return pk_test__failed ? 1 : 0;
}

/* ---- time and randomness ---- */

PK_TEST__FN uint64_t pk_test_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

PK_TEST__FN void pk_test_sleep_ns(uint64_t ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

PK_TEST__FN uint64_t pk_test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

PK_TEST__FN long pk_test_scale(long n)
{
    const char *s = getenv("PK_TEST_SLOW");
    if (s && *s && *s != '0') n /= 8;
    return n > 0 ? n : 1;
}

/* ---- allocation-failure injection ---- */

PK_TEST__FN long pk_test__alloc_live, pk_test__alloc_count, pk_test__alloc_injected;
PK_TEST__FN long pk_test__alloc_fail_at;    /* absolute allocation number that fails; 0 = none */
PK_TEST__FN long pk_test__alloc_fail_every; /* every k-th fails; 0 = off */

PK_TEST__FN void pk_test_alloc_fail_at(long n)
{
    long now = __atomic_load_n(&pk_test__alloc_count, __ATOMIC_SEQ_CST);
    __atomic_store_n(&pk_test__alloc_fail_at, n > 0 ? now + n : 0, __ATOMIC_SEQ_CST);
}
PK_TEST__FN void pk_test_alloc_fail_every(long k) { __atomic_store_n(&pk_test__alloc_fail_every, k, __ATOMIC_SEQ_CST); }
PK_TEST__FN long pk_test_alloc_live(void) { return __atomic_load_n(&pk_test__alloc_live, __ATOMIC_SEQ_CST); }
PK_TEST__FN long pk_test_alloc_count(void) { return __atomic_load_n(&pk_test__alloc_count, __ATOMIC_SEQ_CST); }
PK_TEST__FN long pk_test_alloc_injected(void) { return __atomic_load_n(&pk_test__alloc_injected, __ATOMIC_SEQ_CST); }

PK_TEST__FN int pk_test__alloc_should_fail(void)
{
    long n = __atomic_add_fetch(&pk_test__alloc_count, 1, __ATOMIC_SEQ_CST);
    long at = __atomic_load_n(&pk_test__alloc_fail_at, __ATOMIC_SEQ_CST);
    long every = __atomic_load_n(&pk_test__alloc_fail_every, __ATOMIC_SEQ_CST);
    if ((at && n == at) || (every > 0 && n % every == 0)) {
        __atomic_add_fetch(&pk_test__alloc_injected, 1, __ATOMIC_SEQ_CST);
        return 1;
    }
    return 0;
}

PK_TEST__FN void *pk_test_malloc(size_t n)
{
    void *p;
    if (pk_test__alloc_should_fail()) return NULL;
    p = malloc(n ? n : 1);
    if (p) __atomic_add_fetch(&pk_test__alloc_live, 1, __ATOMIC_SEQ_CST);
    return p;
}

PK_TEST__FN void *pk_test_realloc(void *old, size_t n)
{
    void *p;
    if (pk_test__alloc_should_fail()) return NULL; /* old stays valid, as with realloc */
    p = realloc(old, n ? n : 1);
    if (p && !old) __atomic_add_fetch(&pk_test__alloc_live, 1, __ATOMIC_SEQ_CST);
    return p;
}

PK_TEST__FN void pk_test_free(void *p)
{
    if (!p) return;
    __atomic_sub_fetch(&pk_test__alloc_live, 1, __ATOMIC_SEQ_CST);
    free(p);
}

/* Runs scenario(ctx) with the 1st, 2nd, 3rd ... allocation failing, until a run completes with no
   injected failure. The scenario returns 0 when everything it checked held (each call returned its
   documented error, the object stayed usable) and must free all it made; the sweep checks that the
   live-allocation count is back where it started. Returns the number of failure points swept. */
PK_TEST__FN long pk_test_alloc_sweep(const char *what, int (*scenario)(void *ctx), void *ctx)
{
    long n, live0 = pk_test_alloc_live();
    for (n = 1; n < 1000000; n++) {
        long inj0 = pk_test_alloc_injected();
        int rc;
        pk_test_alloc_fail_at(n);
        rc = scenario(ctx);
        pk_test_alloc_fail_at(0);
        PK_CHECK_MSG(rc == 0, "%s: scenario failed with allocation %ld failing (rc %d)", what, n, rc);
        PK_CHECK_MSG(pk_test_alloc_live() == live0, "%s: %ld allocations leaked with allocation %ld failing",
                     what, pk_test_alloc_live() - live0, n);
        if (pk_test_alloc_injected() == inj0) break; /* this run made fewer than n allocations */
    }
    printf("    %s: %ld allocation-failure points swept\n", what, n - 1);
    return n - 1;
}

#endif /* PK_TEST_H */
