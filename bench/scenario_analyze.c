/* scenario_analyze.c — the seeds' "analyze a codebase" example, in C with pk.
 *
 * The seeds (TypeScript) analyse 10 files: list 150 ms, read 50 ms each, model call 1,500 ms each,
 * save 30 ms each: 15,950 ms sequential, 1,730 ms optimized, 9.2x. Here every latency is scaled by
 * 1/10 (list 15 ms, read 5 ms, model 150 ms, save 3 ms; opening a model session 5 ms) and simulated
 * by a sleep, since that is what a remote call costs the caller; everything else is real: the files
 * are written to and read from a temporary directory, hashed, "analysed" (lines and braces counted),
 * and the analyses written back.
 *
 * Sequential: list, then for each file read, analyse, save.
 * pk:         list, then pk_exec_map over the files (at most 10 in flight), each item:
 *             read -> hash content -> pk_cache (results keyed by content hash) -> on a miss pk_dedup
 *             (identical files analysed once) -> a model session from pk_respool (at most 8) -> save.
 *             pk_prof records every stage. Two of the ten files are copies of others, as in any real
 *             tree (vendored code, generated stubs).
 * Cold = fresh cache; warm = the same run again with the cache filled (the seeds' repeat analysis).
 *
 *   scenario_analyze                  all measurements, result lines for make bench
 *   scenario_analyze --only sequential | --only pk    one pass, for hyperfine
 */
#define PK_CACHE_IMPLEMENTATION
#define PK_DEDUP_IMPLEMENTATION
#define PK_EXEC_IMPLEMENTATION
#define PK_POOL_IMPLEMENTATION
#define PK_PROF_IMPLEMENTATION
#include "pk_cache.h"
#include "pk_dedup.h"
#include "pk_exec.h"
#include "pk_pool.h"
#include "pk_prof.h"

#include "bench_util.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define NFILES 10
#define LIST_MS 15.0
#define READ_MS 5.0
#define MODEL_MS 150.0
#define SAVE_MS 3.0
#define SESSION_MS 5.0
#define MAX_SESSIONS 8

typedef struct app {
    char dir[256];
    char names[NFILES][64];
    int nfiles;
    long model_calls; /* atomic */
    long sessions_made; /* atomic */
    pk_cache *cache;
    pk_dedup *dedup;
    pk_respool *sessions;
    pk_exec *exec;
    pk_prof *prof;
    int l_list, l_read, l_hash, l_model, l_save, l_file;
} app;

/* ---- the work, the same for both versions ---- */

static void make_tree(app *a)
{
    int i, j;
    snprintf(a->dir, sizeof a->dir, "/tmp/pk_analyze_XXXXXX");
    if (!mkdtemp(a->dir)) { perror("mkdtemp"); exit(1); }
    for (i = 0; i < NFILES; i++) {
        char path[512];
        FILE *f;
        int src = (i == 7) ? 2 : (i == 9) ? 4 : i; /* files 7 and 9 are copies of 2 and 4 */
        snprintf(path, sizeof path, "%s/file%02d.c", a->dir, i);
        f = fopen(path, "w");
        if (!f) { perror("fopen"); exit(1); }
        for (j = 0; j < 120 + src * 13; j++)
            fprintf(f, "static int fn_%d_%d(int x) { return x * %d + %d; }\n", src, j, j, src);
        fclose(f);
    }
}

static void remove_tree(app *a)
{
    char path[512];
    DIR *d = opendir(a->dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", a->dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(a->dir);
}

static int cmp_names(const void *x, const void *y) { return strcmp((const char *)x, (const char *)y); }

static void list_files(app *a)
{
    DIR *d;
    struct dirent *e;
    bench_sleep_ms(LIST_MS);
    a->nfiles = 0;
    d = opendir(a->dir);
    while (d && (e = readdir(d)) != NULL && a->nfiles < NFILES) {
        size_t n = strlen(e->d_name);
        if (n > 2 && strcmp(e->d_name + n - 2, ".c") == 0) snprintf(a->names[a->nfiles++], 64, "%s", e->d_name);
    }
    if (d) closedir(d);
    qsort(a->names, (size_t)a->nfiles, sizeof a->names[0], cmp_names);
}

static char *read_file(app *a, int i, size_t *len)
{
    char path[512];
    FILE *f;
    long n;
    char *buf;
    bench_sleep_ms(READ_MS);
    snprintf(path, sizeof path, "%s/%s", a->dir, a->names[i]);
    f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (char *)malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static uint64_t hash_content(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: enough to key a cache of file contents here */
    size_t i;
    for (i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* The "model call": 150 ms of waiting, then a real (if small) analysis of the text. */
static char *model_analyze(app *a, const char *content, size_t len, size_t *outlen)
{
    size_t i, lines = 0, fns = 0;
    char *out = (char *)malloc(128);
    bench_sleep_ms(MODEL_MS);
    __atomic_add_fetch(&a->model_calls, 1, __ATOMIC_RELAXED);
    for (i = 0; i < len; i++) {
        if (content[i] == '\n') lines++;
        if (content[i] == '{') fns++;
    }
    if (!out) return NULL;
    *outlen = (size_t)snprintf(out, 128, "%zu lines, %zu functions, hash %016llx", lines, fns,
                               (unsigned long long)hash_content(content, len));
    return out;
}

static void save_analysis(app *a, int i, const char *analysis, size_t len)
{
    char path[512];
    FILE *f;
    bench_sleep_ms(SAVE_MS);
    snprintf(path, sizeof path, "%s/%s.analysis", a->dir, a->names[i]);
    f = fopen(path, "w");
    if (!f) return;
    fwrite(analysis, 1, len, f);
    fclose(f);
}

static double run_sequential(app *a)
{
    uint64_t t0 = bench_now_ns();
    int i;
    list_files(a);
    for (i = 0; i < a->nfiles; i++) {
        size_t len, alen;
        char *content = read_file(a, i, &len);
        char *analysis = content ? model_analyze(a, content, len, &alen) : NULL;
        if (analysis) save_analysis(a, i, analysis, alen);
        free(analysis);
        free(content);
    }
    return (double)(bench_now_ns() - t0) / 1e6;
}

/* ---- the pk version ---- */

static int session_create(void **res, void *user)
{
    app *a = (app *)user;
    int *s = (int *)malloc(sizeof *s);
    if (!s) return -ENOMEM;
    bench_sleep_ms(SESSION_MS); /* a handshake with the model server */
    *s = (int)__atomic_add_fetch(&a->sessions_made, 1, __ATOMIC_RELAXED);
    *res = s;
    return 0;
}

static void session_destroy(void *res, void *user)
{
    (void)user;
    free(res);
}

typedef struct analyze_job { app *a; const char *key; const char *content; size_t len; } analyze_job;

/* Runs once per distinct content at a time (pk_dedup); holds a model session for the call. */
static int analyze_with_session(void *arg, void **value, size_t *len)
{
    analyze_job *j = (analyze_job *)arg;
    void *session;
    char *out, cached[256];
    uint64_t t0;
    int rc;
    /* Checked again inside the flight: a copy that missed the cache just before the previous flight
       for the same content filled it must not pay for a second model call. */
    if (pk_cache_get(j->a->cache, j->key, 16, cached, sizeof cached, len) == 0) {
        if (*len > sizeof cached) *len = sizeof cached;
        out = (char *)malloc(*len ? *len : 1);
        if (!out) return -ENOMEM;
        memcpy(out, cached, *len);
        *value = out;
        return 0;
    }
    rc = pk_respool_acquire(j->a->sessions, &session, 10ull * 1000000000u);
    if (rc) return rc;
    t0 = pk_prof_now();
    out = model_analyze(j->a, j->content, j->len, len);
    pk_prof_record(j->a->prof, j->a->l_model, pk_prof_now() - t0);
    pk_respool_release(j->a->sessions, session);
    if (!out) return -ENOMEM;
    /* cached before the flight ends, so a copy of this file arriving just after finds it */
    pk_cache_put(j->a->cache, j->key, 16, out, *len, PK_CACHE_TTL_DEFAULT);
    *value = out;
    return 0;
}

static int analyze_item(void *ctx, size_t i)
{
    app *a = (app *)ctx;
    uint64_t t0 = pk_prof_now(), t1, t2, t3;
    size_t len, vlen = 0;
    char key[17], result[256];
    char *content = read_file(a, (int)i, &len);
    int rc = 0;
    if (!content) return -EIO;
    t1 = pk_prof_now();
    pk_prof_record(a->prof, a->l_read, t1 - t0);
    snprintf(key, sizeof key, "%016llx", (unsigned long long)hash_content(content, len));
    t2 = pk_prof_now();
    pk_prof_record(a->prof, a->l_hash, t2 - t1);
    if (pk_cache_get(a->cache, key, 16, result, sizeof result, &vlen) != 0) {
        analyze_job job;
        pk_dedup_result res;
        job.a = a;
        job.key = key;
        job.content = content;
        job.len = len;
        rc = pk_dedup_do(a->dedup, key, 16, analyze_with_session, &job, PK_FOREVER, &res);
        if (rc == 0) {
            vlen = res.len < sizeof result ? res.len : sizeof result;
            memcpy(result, res.value, vlen);
        }
        pk_dedup_release(a->dedup, &res);
    }
    t3 = pk_prof_now();
    if (rc == 0) save_analysis(a, (int)i, result, vlen < sizeof result ? vlen : sizeof result);
    pk_prof_record(a->prof, a->l_save, pk_prof_now() - t3);
    pk_prof_record(a->prof, a->l_file, pk_prof_now() - t0);
    free(content);
    return rc;
}

static void pk_setup(app *a)
{
    pk_cache_config cc;
    pk_exec_config ec;
    pk_respool_config rc;
    memset(&cc, 0, sizeof cc);
    cc.max_entries = 10000;
    cc.ttl_ns = 3600ull * 1000000000u;
    memset(&ec, 0, sizeof ec);
    ec.threads = NFILES; /* blocking work: more threads than cores */
    memset(&rc, 0, sizeof rc);
    rc.min = 2;
    rc.max = MAX_SESSIONS;
    rc.create = session_create;
    rc.destroy = session_destroy;
    rc.user = a;
    if (pk_cache_create(&a->cache, &cc) || pk_dedup_create(&a->dedup, NULL) || pk_exec_create(&a->exec, &ec) ||
        pk_respool_create(&a->sessions, &rc) || pk_prof_create(&a->prof, NULL)) {
        fprintf(stderr, "scenario_analyze: setup failed\n");
        exit(1);
    }
    a->l_list = pk_prof_label(a->prof, "list files");
    a->l_read = pk_prof_label(a->prof, "read file");
    a->l_hash = pk_prof_label(a->prof, "hash content");
    a->l_model = pk_prof_label(a->prof, "model call");
    a->l_save = pk_prof_label(a->prof, "save analysis");
    a->l_file = pk_prof_label(a->prof, "whole file");
}

static void pk_teardown(app *a)
{
    pk_exec_destroy(a->exec);
    pk_respool_destroy(a->sessions);
    pk_dedup_destroy(a->dedup);
    pk_cache_destroy(a->cache);
    pk_prof_destroy(a->prof);
}

static double run_pk(app *a)
{
    uint64_t t0 = bench_now_ns(), t1;
    pk_exec_map_opts o;
    int rc;
    list_files(a);
    t1 = bench_now_ns();
    pk_prof_record(a->prof, a->l_list, t1 - t0);
    memset(&o, 0, sizeof o);
    o.concurrency = NFILES;
    rc = pk_exec_map(a->exec, (size_t)a->nfiles, analyze_item, a, &o);
    if (rc) fprintf(stderr, "scenario_analyze: map failed: %d\n", rc);
    return (double)(bench_now_ns() - t0) / 1e6;
}

int main(int argc, char **argv)
{
    app a;
    int trials = bench_quick() ? 1 : 3, t, warm_reps = bench_quick() ? 3 : 7;
    double seq[3], cold[3], warm_trial[3], warm[7], seq_ms, cold_ms, warm_ms;
    long cold_calls = 0, warm_calls = 0;
    pk_prof_stats st;
    memset(&a, 0, sizeof a);
    make_tree(&a);

    if (argc == 3 && strcmp(argv[1], "--only") == 0) { /* one pass, for hyperfine */
        if (strcmp(argv[2], "sequential") == 0) {
            run_sequential(&a);
        } else {
            pk_setup(&a);
            run_pk(&a);
            pk_teardown(&a);
        }
        remove_tree(&a);
        return 0;
    }

    printf("analyze: %d files (2 are copies), latencies scaled 1/10 from the seeds: list %.0f ms, read %.0f ms,"
           " model %.0f ms, save %.0f ms\n", NFILES, LIST_MS, READ_MS, MODEL_MS, SAVE_MS);
    for (t = 0; t < trials; t++) { /* interleaved: sequential, pk cold, pk warm x N */
        int r;
        long calls0;
        a.model_calls = 0;
        seq[t] = run_sequential(&a);
        pk_setup(&a);
        calls0 = a.model_calls;
        cold[t] = run_pk(&a);
        cold_calls = a.model_calls - calls0;
        calls0 = a.model_calls;
        for (r = 0; r < warm_reps; r++) warm[r] = run_pk(&a);
        warm_calls = a.model_calls - calls0;
        warm_trial[t] = bench_median(warm, warm_reps);
        if (t == trials - 1) {
            /* per-stage percentiles of the last trial (cold and warm passes together) */
            const char *names[] = {"read file", "hash content", "model call", "save analysis", "whole file"};
            int ids[5], k;
            ids[0] = a.l_read; ids[1] = a.l_hash; ids[2] = a.l_model; ids[3] = a.l_save; ids[4] = a.l_file;
            for (k = 0; k < 5; k++) {
                if (pk_prof_stats_get(a.prof, ids[k], &st) == 0 && st.count)
                    bench_pct("analyze", names[k], (double)st.p50 / 1e6, (double)st.p90 / 1e6, (double)st.p99 / 1e6,
                              (double)st.p999 / 1e6, "ms");
            }
        }
        pk_teardown(&a);
    }
    seq_ms = bench_median(seq, trials);
    cold_ms = bench_median(cold, trials);
    warm_ms = bench_median(warm_trial, trials);
    bench_result("analyze", "10 files, cold cache: pk vs sequential", cold_ms, "sequential", seq_ms, "ms", "<= 0.125");
    bench_result("analyze", "10 files, warm cache: pk vs sequential", warm_ms, "sequential", seq_ms, "ms", "<= 0.02");
    printf("analyze  speed-up: cold %.1fx (target >= 8x), warm %.1fx (target >= 50x); model calls: sequential %d,"
           " pk cold %ld (duplicates coalesced by pk_dedup), pk warm %ld (pk_cache)\n",
           seq_ms / cold_ms, seq_ms / warm_ms, NFILES, cold_calls, warm_calls);
    bench_claim("analyze", "10-file analysis, sequential -> parallel+cached (15,950 -> 1,730 ms)", 9.2, seq_ms / cold_ms, "x");
    bench_claim("analyze", "10-file analysis, repeat run from cache (issue target >= 50x)", 50, seq_ms / warm_ms, "x");
    remove_tree(&a);
    return 0;
}
