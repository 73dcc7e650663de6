/* scenario_stampede.c — 100 concurrent identical requests.
 *
 * A hundred threads ask the same question at the same moment (a popular page, a retry storm, a
 * team opening the same repository). Without help each makes its own model call (simulated: 200 ms);
 * with pk_dedup in front of the model and pk_cache in front of that, exactly one call is made and
 * every request gets its answer. Then a second wave, which the cache answers with no call at all.
 */
#define PK_CACHE_IMPLEMENTATION
#define PK_DEDUP_IMPLEMENTATION
#define PK_PROF_IMPLEMENTATION
#include "pk_cache.h"
#include "pk_dedup.h"
#include "pk_prof.h"

#include "bench_util.h"

#include <pthread.h>

#define NREQ 100
#define MODEL_MS 200.0

typedef struct stampede {
    int use_pk;
    long model_calls; /* atomic */
    long wrong;       /* atomic: answers that were not the model's */
    pk_cache *cache;
    pk_dedup *dedup;
    pk_prof *prof;
    int l_req;
    pthread_barrier_t start;
} stampede;

static const char QUESTION[] = "what does the retry loop in net.c do?";

static int model_call(void *arg, void **value, size_t *len)
{
    stampede *s = (stampede *)arg;
    char *ans = (char *)malloc(64);
    bench_sleep_ms(MODEL_MS);
    __atomic_add_fetch(&s->model_calls, 1, __ATOMIC_RELAXED);
    if (!ans) return -12;
    *len = (size_t)snprintf(ans, 64, "it retries with backoff");
    *value = ans;
    return 0;
}

/* The leader fills the cache before its flight ends, so a request arriving just after the flight
   finds the answer cached and never starts a second call. */
static int model_call_and_cache(void *arg, void **value, size_t *len)
{
    stampede *s = (stampede *)arg;
    char buf[64];
    size_t n;
    int rc;
    /* Checked again inside the flight: a request that missed the cache just before the previous
       flight filled it must not start a second call. */
    if (pk_cache_get(s->cache, QUESTION, sizeof QUESTION - 1, buf, sizeof buf, &n) == 0) {
        char *copy = (char *)malloc(n ? n : 1);
        if (!copy) return -12;
        memcpy(copy, buf, n);
        *value = copy;
        *len = n;
        return 0;
    }
    rc = model_call(arg, value, len);
    if (rc == 0) pk_cache_put(s->cache, QUESTION, sizeof QUESTION - 1, *value, *len, PK_CACHE_TTL_DEFAULT);
    return rc;
}

static void *request(void *arg)
{
    stampede *s = (stampede *)arg;
    char buf[64];
    size_t len = 0;
    uint64_t t0;
    pthread_barrier_wait(&s->start);
    t0 = pk_prof_now();
    if (!s->use_pk) {
        void *v;
        if (model_call(s, &v, &len) == 0) {
            memcpy(buf, v, len);
            free(v);
        }
    } else if (pk_cache_get(s->cache, QUESTION, sizeof QUESTION - 1, buf, sizeof buf, &len) != 0) {
        pk_dedup_result r;
        if (pk_dedup_do(s->dedup, QUESTION, sizeof QUESTION - 1, model_call_and_cache, s, PK_FOREVER, &r) == 0) {
            len = r.len < sizeof buf ? r.len : sizeof buf;
            memcpy(buf, r.value, len);
        }
        pk_dedup_release(s->dedup, &r);
    }
    if (len != 23 || memcmp(buf, "it retries with backoff", 23) != 0) __atomic_add_fetch(&s->wrong, 1, __ATOMIC_RELAXED);
    pk_prof_record(s->prof, s->l_req, pk_prof_now() - t0);
    return NULL;
}

static double wave(stampede *s)
{
    pthread_t th[NREQ];
    int i;
    uint64_t t0;
    pthread_barrier_init(&s->start, NULL, NREQ + 1);
    for (i = 0; i < NREQ; i++) pthread_create(&th[i], NULL, request, s);
    t0 = bench_now_ns();
    pthread_barrier_wait(&s->start);
    for (i = 0; i < NREQ; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&s->start);
    return (double)(bench_now_ns() - t0) / 1e6;
}

int main(void)
{
    stampede s;
    pk_cache_config cc;
    double t_plain, t_pk, t_warm;
    long calls_plain, calls_pk, calls_warm;
    pk_prof_stats st;
    memset(&s, 0, sizeof s);
    memset(&cc, 0, sizeof cc);
    cc.max_entries = 1000;
    if (pk_cache_create(&s.cache, &cc) || pk_dedup_create(&s.dedup, NULL) || pk_prof_create(&s.prof, NULL)) return 1;
    s.l_req = pk_prof_label(s.prof, "request");

    t_plain = wave(&s);
    calls_plain = s.model_calls;
    s.use_pk = 1;
    s.model_calls = 0;
    t_pk = wave(&s);
    calls_pk = s.model_calls;
    pk_prof_stats_get(s.prof, s.l_req, &st);
    s.model_calls = 0;
    t_warm = wave(&s);
    calls_warm = s.model_calls;

    printf("stampede %d concurrent identical requests: without pk %ld model calls in %.1f ms; with pk_dedup+pk_cache"
           " %ld call in %.1f ms; second wave from the cache: %ld calls in %.1f ms; wrong answers: %ld\n",
           NREQ, calls_plain, t_plain, calls_pk, t_pk, calls_warm, t_warm, s.wrong);
    bench_result("stampede", "model calls for 100 identical concurrent requests", (double)calls_pk, "no dedup",
                 (double)calls_plain, "calls", "<= 0.01");
    bench_pct("stampede", "request with pk (both waves)", (double)st.p50 / 1e6, (double)st.p90 / 1e6,
              (double)st.p99 / 1e6, (double)st.p999 / 1e6, "ms");
    if (s.wrong || calls_pk != 1 || calls_warm != 0) {
        fprintf(stderr, "stampede: expected exactly one model call and right answers\n");
        return 1;
    }
    pk_prof_destroy(s.prof);
    pk_dedup_destroy(s.dedup);
    pk_cache_destroy(s.cache);
    return 0;
}
