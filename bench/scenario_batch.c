/* scenario_batch.c — the seeds' batching claim: five independent queries, 5-10x faster together.
 *
 * Each query is a model call simulated by a 100 ms sleep (what a remote call costs the caller), plus
 * real work on its answer (a checksum over a 64 KiB reply). One by one, five take ~500 ms; through
 * pk_exec_map with concurrency 5 they take about one call's time. The seeds' upper figure (10x) comes
 * from batching ten; five independent calls cannot beat 5x, so the target is 4.5x.
 *
 *   scenario_batch                         all measurements
 *   scenario_batch --only sequential | --only pk     one pass, for hyperfine
 */
#define PK_EXEC_IMPLEMENTATION
#define PK_PROF_IMPLEMENTATION
#include "pk_exec.h"
#include "pk_prof.h"

#include "bench_util.h"

#define NQ 5
#define QUERY_MS 100.0
#define REPLY_BYTES 65536

typedef struct batch { pk_prof *prof; int l_query; uint64_t sums[NQ]; } batch;

static int query(void *ctx, size_t i)
{
    batch *b = (batch *)ctx;
    uint64_t t0 = pk_prof_now(), sum = 0;
    unsigned char *reply = (unsigned char *)malloc(REPLY_BYTES);
    size_t k;
    if (!reply) return -12;
    bench_sleep_ms(QUERY_MS);
    for (k = 0; k < REPLY_BYTES; k++) reply[k] = (unsigned char)(k * 31u + i);
    for (k = 0; k < REPLY_BYTES; k++) sum = sum * 131u + reply[k];
    b->sums[i] = sum;
    free(reply);
    if (b->prof) pk_prof_record(b->prof, b->l_query, pk_prof_now() - t0);
    return 0;
}

static double run_sequential(batch *b)
{
    uint64_t t0 = bench_now_ns();
    size_t i;
    for (i = 0; i < NQ; i++) query(b, i);
    return (double)(bench_now_ns() - t0) / 1e6;
}

static double run_pk(pk_exec *e, batch *b)
{
    uint64_t t0 = bench_now_ns();
    pk_exec_map_opts o;
    memset(&o, 0, sizeof o);
    o.concurrency = NQ;
    if (pk_exec_map(e, NQ, query, b, &o) != 0) fprintf(stderr, "batch: a query failed\n");
    return (double)(bench_now_ns() - t0) / 1e6;
}

int main(int argc, char **argv)
{
    batch b;
    pk_exec *e;
    pk_exec_config cfg;
    int trials = bench_quick() ? 3 : 9, t;
    double seq[9], par[9], seq_ms, par_ms;
    pk_prof_stats st;
    memset(&b, 0, sizeof b);
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = NQ; /* blocking calls want more threads than cores */
    if (argc == 3 && strcmp(argv[1], "--only") == 0) {
        if (strcmp(argv[2], "sequential") == 0) {
            run_sequential(&b);
        } else {
            if (pk_exec_create(&e, &cfg) != 0) return 1;
            run_pk(e, &b);
            pk_exec_destroy(e);
        }
        return 0;
    }
    if (pk_exec_create(&e, &cfg) != 0 || pk_prof_create(&b.prof, NULL) != 0) return 1;
    b.l_query = pk_prof_label(b.prof, "query");
    for (t = 0; t < trials; t++) {
        seq[t] = run_sequential(&b);
        par[t] = run_pk(e, &b);
    }
    seq_ms = bench_median(seq, trials);
    par_ms = bench_median(par, trials);
    pk_prof_stats_get(b.prof, b.l_query, &st);
    bench_pct("batch", "one query (100 ms model call + reply checksum)", (double)st.p50 / 1e6, (double)st.p90 / 1e6,
              (double)st.p99 / 1e6, (double)st.p999 / 1e6, "ms");
    bench_result("batch", "5 independent queries: pk_exec_map vs one by one", par_ms, "one by one", seq_ms, "ms",
                 "<= 0.222");
    bench_claim("batch", "5 queries batched (5-10x)", 5, seq_ms / par_ms, "x");
    pk_prof_destroy(b.prof);
    pk_exec_destroy(e);
    return 0;
}
