/* READ /work/main/DEVELOPERS.md FIRST: conventions, file layout, deadlines. */
/* bench_util.h — what every pk benchmark shares: a clock, medians of interleaved trials, quick
   mode, and one result-line format that bench/run.sh collects into bench/results.{md,json} and the
   chart.

   bench_result("cache", "get hit, 100k entries", pk_ns, "uthash LRU", peer_ns, "ns/op", "<= 0.5");
   prints a human line and a machine line:
     @result<TAB>group<TAB>measure<TAB>pk<TAB>peer-name<TAB>peer<TAB>unit<TAB>ratio<TAB>target<TAB>met
   ratio = pk / peer (lower is better for times; for throughput-like units the benchmark passes the
   figures so that the ratio still reads "pk over peer", and the target says which way it must go).
   A target is "<= X", ">= X" or "-" (none). met is yes/no/-.

   bench_pct("scenario", "series", p50, p90, p99, p999, "ms") prints latency percentiles (@pct).
   bench_claim("analyze", "10 files cold speed-up", 9.2, measured, "x") prints a seed claim (@claim).
   bench_note("...") prints a line that the runner keeps as a note (e.g. "uthash not installed:
   apt-get install uthash-dev").

   Environment: BENCH_QUICK=1 makes bench_quick() true: benchmarks shrink sizes and trials so the
   whole `make bench QUICK=1` takes about a minute. BENCH_SMOKE=1 (used by `make test`) shrinks them
   to a few milliseconds: nothing is timed seriously, the program only shows it still runs. */
#ifndef PK_BENCH_UTIL_H
#define PK_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Each helper is static and a given benchmark may use only some. */
#if defined(__GNUC__) || defined(__clang__)
#define BENCH_FN static __attribute__((unused))
#else
#define BENCH_FN static
#endif

BENCH_FN uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

BENCH_FN int bench_smoke(void)
{
    const char *s = getenv("BENCH_SMOKE");
    return s && *s && *s != '0';
}

BENCH_FN int bench_quick(void)
{
    const char *s = getenv("BENCH_QUICK");
    return bench_smoke() || (s && *s && *s != '0');
}

/* Scales a full-size count: full in a normal run, full/quick_div in quick mode, at least 1, and
   tiny in smoke mode. */
BENCH_FN size_t bench_scale(size_t full, size_t quick_div)
{
    size_t n = full;
    if (bench_smoke()) n = full / (quick_div ? quick_div * 100 : 100);
    else if (bench_quick()) n = full / (quick_div ? quick_div : 1);
    return n ? n : 1;
}

BENCH_FN int bench__cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of n values (sorts them in place). */
BENCH_FN double bench_median(double *v, int n)
{
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof *v, bench__cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* splitmix64: a small, fast, well-mixed generator for benchmark inputs. */
BENCH_FN uint64_t bench_rand_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A sink the optimizer cannot see through. */
static volatile uint64_t bench_sink;

BENCH_FN void bench_result(const char *group, const char *measure, double pk, const char *peer_name,
                         double peer, const char *unit, const char *target)
{
    double ratio = peer > 0 ? pk / peer : 0;
    const char *met = "-";
    double x;
    if (target && (target[0] == '<' || target[0] == '>') && target[1] == '=') {
        x = atof(target + 2);
        met = (target[0] == '<' ? ratio <= x : ratio >= x) ? "yes" : "no";
    }
    printf("%-8s %-44s pk %12.2f %-8s | %-22s %12.2f | ratio %6.3f  target %-7s %s\n", group, measure, pk,
           unit, peer_name, peer, ratio, target ? target : "-", met);
    printf("@result\t%s\t%s\t%.6g\t%s\t%.6g\t%s\t%.4f\t%s\t%s\n", group, measure, pk, peer_name, peer, unit,
           ratio, target ? target : "-", met);
    fflush(stdout);
}

/* Latency percentiles of one series of a scenario (for the table and the chart's second part). */
BENCH_FN void bench_pct(const char *scenario, const char *series, double p50, double p90, double p99, double p999,
                      const char *unit)
{
    printf("%-8s %-44s p50 %10.3f  p90 %10.3f  p99 %10.3f  p99.9 %10.3f %s\n", scenario, series, p50, p90, p99,
           p999, unit);
    printf("@pct\t%s\t%s\t%.6g\t%.6g\t%.6g\t%.6g\t%s\n", scenario, series, p50, p90, p99, p999, unit);
    fflush(stdout);
}

/* One of the seeds' claims beside what the scenario measured (README's "claimed, measured" lines). */
BENCH_FN void bench_claim(const char *scenario, const char *claim, double claimed, double measured, const char *unit)
{
    printf("%-8s seeds' claim: %s: claimed %.4g %s, measured %.4g %s (measured/claimed %.2f)\n", scenario, claim,
           claimed, unit, measured, unit, claimed != 0 ? measured / claimed : 0);
    printf("@claim\t%s\t%s\t%.6g\t%.6g\t%s\n", scenario, claim, claimed, measured, unit);
    fflush(stdout);
}

/* A simulated latency (a model call, a tool run): ms milliseconds, scaled down in smoke mode so
   `make test` stays fast. Sleeps are what such calls cost the caller: time, not CPU. */
BENCH_FN double bench_latency_scale(void)
{
    return bench_smoke() ? 0.02 : 1.0;
}

BENCH_FN void bench_sleep_ms(double ms)
{
    struct timespec ts;
    double s = ms * bench_latency_scale() / 1000.0;
    if (s <= 0) return;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0) {
    }
}

BENCH_FN void bench_note(const char *group, const char *text)
{
    printf("%-8s note: %s\n", group, text);
    printf("@note\t%s\t%s\n", group, text);
    fflush(stdout);
}

#endif /* PK_BENCH_UTIL_H */
