/* scenario_shed.c — load shedding at twice the capacity (the seeds' AdaptiveQueueManager).
 *
 * Two workers serve requests that each take 2 ms of waiting (a backend call); capacity is therefore
 * 1,000 requests/s. A generator offers 2,000 requests/s for a few seconds: 10% HIGH (interactive, no
 * deadline), 30% NORMAL (deadline 100 ms), 60% LOW (background, deadline 50 ms).
 *   pk:   pk_exec_submit_opts with priorities and deadlines, queue_max 64. HIGH goes first; work whose
 *         deadline passes in the queue is dropped and reported through on_drop; when the queue is full,
 *         a higher-priority task displaces the newest lower one (reported too), else submit refuses it.
 *   FIFO: the same executor with an unbounded queue and no priorities — what most code does.
 * Latency is from submit to the end of the request, recorded in pk_prof per class. Every request is
 * accounted for: ran, dropped (deadline or displaced, through on_drop) or refused at submit.
 */
#define PK_EXEC_IMPLEMENTATION
#define PK_PROF_IMPLEMENTATION
#include "pk_exec.h"
#include "pk_prof.h"

#include "bench_util.h"

#include <errno.h>

#define THREADS 2
#define SERVICE_MS 2.0

typedef struct req {
    struct run *run;
    uint64_t submitted;
    int prio;
    int quarter; /* which quarter of the run submitted it: shows whether latency keeps growing */
    int outcome; /* 0 pending, 1 ran, 2 dropped: deadline, 3 dropped: displaced */
} req;

typedef struct run {
    pk_prof *prof;
    int l_class[3];   /* LOW, NORMAL, HIGH */
    int l_quarter[4]; /* every class, by quarter of the run */
} run;

static void serve(void *arg)
{
    req *r = (req *)arg;
    bench_sleep_ms(SERVICE_MS);
    __atomic_store_n(&r->outcome, 1, __ATOMIC_RELEASE);
    uint64_t lat = pk_prof_now() - r->submitted;
    pk_prof_record(r->run->prof, r->run->l_class[r->prio + 1], lat);
    pk_prof_record(r->run->prof, r->run->l_quarter[r->quarter], lat);
}

static void dropped(void *arg, int reason)
{
    req *r = (req *)arg;
    __atomic_store_n(&r->outcome, reason == -ETIMEDOUT ? 2 : 3, __ATOMIC_RELEASE);
}

static void sleep_until(uint64_t t)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(t / 1000000000u);
    ts.tv_nsec = (long)(t % 1000000000u);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

/* Offers n requests at 2x capacity; returns how many submit refused. */
static long offer(pk_exec *e, req *reqs, long n, int prioritized, run *ru)
{
    uint64_t interval = (uint64_t)(SERVICE_MS * bench_latency_scale() * 1e6 / THREADS / 2.0), next = pk_prof_now();
    uint64_t rng = 1;
    long i, refused = 0;
    for (i = 0; i < n; i++) {
        uint64_t u = bench_rand_next(&rng) % 100;
        pk_exec_task_opts o;
        req *r = &reqs[i];
        memset(&o, 0, sizeof o);
        r->run = ru;
        r->prio = u < 10 ? PK_EXEC_HIGH : u < 40 ? PK_EXEC_NORMAL : PK_EXEC_LOW;
        r->quarter = (int)(i * 4 / n);
        sleep_until(next);
        next += interval;
        r->submitted = pk_prof_now();
        if (prioritized) {
            o.priority = r->prio;
            if (r->prio == PK_EXEC_NORMAL) o.deadline_ns = r->submitted + (uint64_t)(100e6 * bench_latency_scale());
            if (r->prio == PK_EXEC_LOW) o.deadline_ns = r->submitted + (uint64_t)(50e6 * bench_latency_scale());
            o.on_drop = dropped;
        }
        if (pk_exec_submit_opts(e, serve, r, &o) != 0) refused++;
    }
    pk_exec_wait_idle(e);
    return refused;
}

int main(void)
{
    long n = (long)bench_scale(6000, 3), i;
    req *reqs = (req *)calloc((size_t)n, sizeof(req));
    const char *cls[3] = {"LOW", "NORMAL", "HIGH"};
    double p99[2][3];
    int mode;
    if (!reqs) return 1;
    printf("shed     %ld requests offered at 2x capacity (%d workers x %.0f ms service)\n", n, THREADS, SERVICE_MS);
    for (mode = 1; mode >= 0; mode--) { /* 1 = pk priorities + deadlines, 0 = unbounded FIFO */
        pk_exec *e;
        pk_exec_config cfg;
        run ru;
        long refused, count[4] = {0, 0, 0, 0};
        int c;
        memset(&cfg, 0, sizeof cfg);
        cfg.threads = THREADS;
        cfg.queue_max = mode ? 64 : 0;
        memset(reqs, 0, sizeof(req) * (size_t)n);
        if (pk_exec_create(&e, &cfg) != 0 || pk_prof_create(&ru.prof, NULL) != 0) return 1;
        for (c = 0; c < 3; c++) ru.l_class[c] = pk_prof_label(ru.prof, cls[c]);
        for (c = 0; c < 4; c++) {
            char q[16];
            snprintf(q, sizeof q, "quarter %d", c + 1);
            ru.l_quarter[c] = pk_prof_label(ru.prof, q);
        }
        refused = offer(e, reqs, n, mode, &ru);
        pk_exec_destroy(e);
        for (i = 0; i < n; i++) count[reqs[i].outcome]++;
        for (c = 2; c >= 0; c--) {
            pk_prof_stats st;
            char series[96];
            memset(&st, 0, sizeof st);
            pk_prof_stats_get(ru.prof, ru.l_class[c], &st);
            p99[mode][c] = (double)st.p99 / 1e6;
            snprintf(series, sizeof series, "%s, %s", mode ? "pk priorities+deadlines" : "unbounded FIFO", cls[c]);
            bench_pct("shed", series, (double)st.p50 / 1e6, (double)st.p90 / 1e6, (double)st.p99 / 1e6,
                      (double)st.p999 / 1e6, "ms");
        }
        {
            char note[200];
            int len = snprintf(note, sizeof note, "%s: p99 latency of the requests that ran, by quarter of the run:",
                               mode ? "pk" : "unbounded FIFO");
            for (c = 0; c < 4 && len > 0 && (size_t)len < sizeof note; c++) {
                pk_prof_stats st;
                memset(&st, 0, sizeof st);
                pk_prof_stats_get(ru.prof, ru.l_quarter[c], &st);
                len += snprintf(note + len, sizeof note - (size_t)len, " %.1f", (double)st.p99 / 1e6);
            }
            if (len > 0 && (size_t)len < sizeof note - 4) strcat(note, " ms");
            bench_note("shed", note);
        }
        printf("shed     %s: ran %ld, dropped at deadline %ld, displaced %ld, refused at submit %ld, unaccounted %ld\n",
               mode ? "pk" : "FIFO", count[1], count[2], count[3], refused, count[0] - refused);
        if (count[0] != refused) {
            fprintf(stderr, "shed: %ld requests neither ran nor were reported dropped\n", count[0] - refused);
            return 1;
        }
        pk_prof_destroy(ru.prof);
    }
    bench_result("shed", "HIGH p99 latency at 2x load: pk vs unbounded FIFO", p99[1][2], "unbounded FIFO", p99[0][2], "ms",
                 "<= 0.1");
    bench_result("shed", "HIGH p99 latency / service time (2 ms)", p99[1][2], "service time", SERVICE_MS * bench_latency_scale(),
                 "ms", "<= 5");
    free(reqs);
    return 0;
}
