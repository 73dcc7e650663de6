/* stress_dedup.c — pk_dedup.h under 8 threads for STRESS_SECONDS (default 60): do with random
   keys and deadlines (0, short, forever), nested do from inside fn (other keys, and its own key
   which must give -EDEADLK), forget from outside and from inside fn, results held across
   iterations and released late, stats read while running; in the second half every 13th
   allocation fails. Checked while running: every result comes from an execution for its own key,
   its value is alive while held, rc and value agree. At the end: every value freed exactly once,
   nothing leaked, stats add up to what the threads counted. */
#include "pk_test.h"
#include <pthread.h>

#define PK_MALLOC(n) pk_test_malloc(n)
#define PK_REALLOC(p, n) pk_test_realloc(p, n)
#define PK_FREE(p) pk_test_free(p)
#define PK_DEDUP_IMPLEMENTATION
#include "pk_dedup.h"

#define THREADS 8
#define NKEYS 12
#define HELD 4
#define LIVE 0x11FEC0DEu
#define DEAD 0xDEADDEADu

typedef struct val {
    unsigned magic;
    int key;
    uint64_t exec;
} val;

static pk_dedup *D;
static uint64_t g_exec, g_values, g_frees, g_stop, g_half;
static char KEY[NKEYS][16];

static void free_val(void *p, void *user)
{
    val *v = (val *)p;
    (void)user;
    PK_CHECK(v->magic == LIVE);
    v->magic = DEAD;
    __atomic_add_fetch(&g_frees, 1, __ATOMIC_SEQ_CST);
    pk_test_free(v);
}

typedef struct tstate {
    uint64_t seed;
    long ops, calls, timeouts, deadlks, enomem, forgets, bad;
    int depth;
    pk_dedup_result held[HELD];
    int held_key[HELD];
    int next_held;
} tstate;

typedef struct fnarg {
    tstate *t;
    int key;
} fnarg;

static void check_result(tstate *t, int key, int rc, const pk_dedup_result *r)
{
    const val *v = (const val *)r->value;
    if (rc != r->rc) t->bad++;
    if (rc == -ETIMEDOUT || rc == -EDEADLK) {
        if (v || r->call_) t->bad++;
        return;
    }
    if (v) {
        if (v->magic != LIVE || v->key != key || v->exec == 0 ||
            v->exec > __atomic_load_n(&g_exec, __ATOMIC_SEQ_CST) || r->len != sizeof *v)
            t->bad++;
    } else if (r->len != 0) {
        t->bad++;
    }
}

static void one_call(tstate *t, int key, uint64_t timeout);

static int work_fn(void *arg, void **value, size_t *len)
{
    fnarg *a = (fnarg *)arg;
    tstate *t = a->t;
    uint64_t r = pk_test_rand(&t->seed), exec = __atomic_add_fetch(&g_exec, 1, __ATOMIC_SEQ_CST);
    val *v;
    t->depth++;
    switch (r % 16) {
    case 0: /* its own key: -EDEADLK, not a hang (unless someone forgot the key meanwhile) */
        if (t->depth < 3) one_call(t, a->key, 1000000);
        break;
    case 1:
    case 2: /* nested call on another key */
        /* finite deadline: a thread waiting while it leads a call could close a cycle through
           other threads (k1 waits on k2 whose fn waits on k1), which pk_dedup cannot detect */
        if (t->depth < 3) one_call(t, (int)((r >> 8) % NKEYS), (r >> 20) % 2 ? 2000000 : 200000);
        break;
    case 3: /* forget its own key: later callers start afresh */
        if (pk_dedup_forget(D, KEY[a->key], strlen(KEY[a->key])) == 0) t->forgets++;
        break;
    case 4:
    case 5:
        pk_test_sleep_ns(20000 + (r >> 8) % 50000);
        break;
    default:
        if ((r >> 8) % 4 == 0) sched_yield();
        break;
    }
    t->depth--;
    if ((r >> 32) % 7 == 0) return (r >> 40) % 2 ? -EIO : 0; /* no value */
    v = (val *)pk_test_malloc(sizeof *v);
    if (!v) return -ENOMEM;
    v->magic = LIVE;
    v->key = a->key;
    v->exec = exec;
    __atomic_add_fetch(&g_values, 1, __ATOMIC_SEQ_CST);
    *value = v;
    *len = sizeof *v;
    return (r >> 40) % 5 == 0 ? -EIO : 0;
}

static void one_call(tstate *t, int key, uint64_t timeout)
{
    fnarg a;
    pk_dedup_result r;
    int rc, slot;
    a.t = t;
    a.key = key;
    rc = pk_dedup_do(D, KEY[key], strlen(KEY[key]), work_fn, &a, timeout, &r);
    t->calls++;
    if (rc == -ETIMEDOUT) t->timeouts++;
    else if (rc == -EDEADLK) t->deadlks++;
    else if (rc == -ENOMEM) t->enomem++;
    else if (rc != 0 && rc != -EIO) t->bad++;
    check_result(t, key, rc, &r);
    if (t->depth > 0) { /* inside fn: release now */
        pk_dedup_release(D, &r);
        return;
    }
    slot = t->next_held;
    t->next_held = (t->next_held + 1) % HELD;
    if (t->held[slot].value) { /* still alive while held */
        const val *v = (const val *)t->held[slot].value;
        if (v->magic != LIVE || v->key != t->held_key[slot]) t->bad++;
    }
    pk_dedup_release(D, &t->held[slot]);
    t->held[slot] = r;
    t->held_key[slot] = key;
}

static void *thread_main(void *arg)
{
    tstate *t = (tstate *)arg;
    int i;
    while (!__atomic_load_n(&g_stop, __ATOMIC_SEQ_CST)) {
        uint64_t r = pk_test_rand(&t->seed);
        int key = (int)(r % NKEYS);
        t->ops++;
        switch ((r >> 8) % 20) {
        case 0:
            if (pk_dedup_forget(D, KEY[key], strlen(KEY[key])) == 0) t->forgets++;
            break;
        case 1: {
            pk_dedup_stats s;
            pk_dedup_stats_get(D, &s);
            if (s.calls != s.executions + s.coalesced || s.in_flight > THREADS * 3) t->bad++;
            break;
        }
        case 2:
            one_call(t, key, 0);
            break;
        case 3:
        case 4:
            one_call(t, key, 1000 + (r >> 16) % 100000);
            break;
        default:
            one_call(t, key, PK_FOREVER);
            break;
        }
    }
    for (i = 0; i < HELD; i++) pk_dedup_release(D, &t->held[i]);
    return NULL;
}

static void test_stress(void)
{
    const char *env = getenv("STRESS_SECONDS");
    double secs = env ? atof(env) : 60;
    pthread_t th[THREADS];
    tstate *ts = (tstate *)calloc(THREADS, sizeof *ts);
    pk_dedup_config cfg;
    pk_dedup_stats s;
    long ops = 0, calls = 0, timeouts = 0, deadlks = 0, enomem = 0, forgets = 0, bad = 0;
    uint64_t t0 = pk_test_now_ns(), reads = 0;
    int i;
    if (secs <= 0) secs = 1;
    for (i = 0; i < NKEYS; i++) snprintf(KEY[i], sizeof KEY[i], "key-%d", i);
    memset(&cfg, 0, sizeof cfg);
    cfg.free_value = free_val;
    cfg.shards = 8; /* few buckets: chains with several calls, shared locks */
    PK_CHECK_EQ(pk_dedup_create(&D, &cfg), 0);
    for (i = 0; i < THREADS; i++) {
        ts[i].seed = 0x5eed + (uint64_t)i * 7919;
        pthread_create(&th[i], NULL, thread_main, &ts[i]);
    }
    while (pk_test_now_ns() - t0 < (uint64_t)(secs * 1e9)) {
        pk_dedup_stats_get(D, &s);
        PK_CHECK(s.calls == s.executions + s.coalesced);
        reads++;
        if (!g_half && pk_test_now_ns() - t0 > (uint64_t)(secs * 0.5e9)) {
            g_half = 1;
            pk_test_alloc_fail_every(13);
        }
        pk_test_sleep_ns(10000000);
    }
    __atomic_store_n(&g_stop, 1, __ATOMIC_SEQ_CST);
    for (i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        ops += ts[i].ops;
        calls += ts[i].calls;
        timeouts += ts[i].timeouts;
        deadlks += ts[i].deadlks;
        enomem += ts[i].enomem;
        forgets += ts[i].forgets;
        bad += ts[i].bad;
    }
    pk_test_alloc_fail_every(0);
    pk_dedup_stats_get(D, &s);
    PK_CHECK_EQ(bad, 0);
    PK_CHECK_EQ(s.calls, calls);
    PK_CHECK_EQ(s.executions, g_exec);
    PK_CHECK_EQ(s.timeouts, timeouts);
    PK_CHECK_EQ(s.in_flight, 0);
    PK_CHECK_EQ(g_frees, g_values); /* every value freed exactly once */
    PK_CHECK(s.coalesced > 0);
    PK_CHECK(deadlks > 0);
    pk_dedup_destroy(D);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
    printf("    %ld operations (%ld calls: %llu executions, %llu coalesced, %ld timeouts, %ld -EDEADLK, "
           "%ld -ENOMEM, %ld forgets), %llu stats reads, %.0f s, 8 threads\n",
           ops, calls, (unsigned long long)s.executions, (unsigned long long)s.coalesced, timeouts, deadlks,
           enomem, forgets, (unsigned long long)reads, secs);
    free(ts);
}

int main(void)
{
    pk_test_main_begin("stress_dedup");
    PK_TEST(test_stress);
    return pk_test_main_end();
}
