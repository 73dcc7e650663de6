/* stress_cache.c — 10 threads mixing every pk_cache call on three caches (LRU and S3-FIFO with a
   removal callback, and S3-FIFO without one, whose puts refill evicted entries' memory) for
   STRESS_SECONDS (default 60), with invariants checked while running (bounds, counters adding
   up, values and pinned bytes intact) and at the end (callback counts equal the counters). */
#include "pk_test.h"
#define PK_CACHE_IMPLEMENTATION
#include "pk_cache.h"

#include <pthread.h>
#include <sys/stat.h>

#define THREADS 10
#define MAX_E 2000
#define MAX_B 400000

typedef struct counts {
    long reason[6];
} counts;

static counts cb[3];
static volatile int stop;
static long total_ops;
static char dir[64];

static void on_remove(void *user, const void *key, size_t klen, const void *val, size_t vlen, int reason)
{
    counts *c = (counts *)user;
    size_t i;
    /* the value is derived from the key: check it is intact while it is being reported */
    for (i = 0; i < vlen; i++)
        if (((const unsigned char *)val)[i] != (unsigned char)(klen ? ((const unsigned char *)key)[klen - 1] : 0)) {
            PK_CHECK_MSG(0, "value damaged in callback");
            break;
        }
    if (reason >= 1 && reason <= 5) __atomic_add_fetch(&c->reason[reason], 1, __ATOMIC_RELAXED);
}

static void check_invariants(pk_cache *c)
{
    pk_cache_stats st;
    pk_cache_stats_get(c, &st);
    PK_CHECK(st.entries <= MAX_E);
    PK_CHECK(st.bytes <= MAX_B);
    PK_CHECK_EQ(st.entries, st.inserts - st.evictions - st.expirations - st.removals);
}

typedef struct targ {
    pk_cache *c[3];
    int id;
    long ops;
} targ;

static void *worker(void *p)
{
    targ *t = (targ *)p;
    uint64_t s = (uint64_t)t->id * 7919 + 17;
    char k[32], v[1024], buf[1024], path[128];
    sprintf(path, "%s/snap%d", dir, t->id % 3);
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        uint64_t x = pk_test_rand(&s);
        pk_cache *c = t->c[x % 3];
        int key = (int)((x >> 8) % 5000), op = (int)((x >> 24) % 1000), kl;
        size_t vlen = (size_t)((x >> 40) % 700), n;
        kl = sprintf(k, "s:%d:%d", key % 13, key);
        memset(v, k[kl - 1], vlen);
        if (op < 450) {
            if (pk_cache_get(c, k, (size_t)kl, buf, sizeof buf, &n) == 0)
                PK_CHECK(n < 700 && (n == 0 || (buf[0] == k[kl - 1] && buf[n - 1] == k[kl - 1])));
        } else if (op < 750) {
            uint64_t ttl = (x >> 60) ? PK_CACHE_TTL_DEFAULT : 1000000 + (x >> 44) % 50000000;
            PK_CHECK_EQ(pk_cache_put(c, k, (size_t)kl, v, vlen, ttl), 0);
        } else if (op < 850) {
            pk_cache_ref ref;
            if (pk_cache_acquire(c, k, (size_t)kl, &ref) == 0) {
                size_t i;
                sched_yield(); /* let others replace or evict it meanwhile */
                for (i = 0; i < ref.len; i++)
                    if (((const char *)ref.value)[i] != k[kl - 1]) break;
                PK_CHECK(i == ref.len);
                pk_cache_release(c, &ref);
            }
        } else if (op < 930) {
            pk_cache_remove(c, k, (size_t)kl);
        } else if (op < 940) {
            char pre[16];
            int pl = sprintf(pre, "s:%d:", key % 13);
            pk_cache_remove_prefix(c, pre, (size_t)pl);
        } else if (op < 950) {
            pk_cache_remove_match(c, "s:1?:*7");
        } else if (op < 965) {
            pk_cache_purge_expired(c);
        } else if (op < 990) {
            check_invariants(c);
        } else if (op < 991) {
            pk_cache_clear(c);
        } else if (op < 996) {
            int rc = pk_cache_save(c, path);
            PK_CHECK_EQ(rc, 0);
        } else {
            int rc = pk_cache_load(c, path);
            PK_CHECK(rc == 0 || rc == -ENOENT);
        }
        t->ops++;
    }
    return NULL;
}

static void test_stress(void)
{
    const char *env = getenv("STRESS_SECONDS");
    double secs = env ? atof(env) : 60;
    pthread_t th[THREADS];
    targ a[THREADS];
    pk_cache *c[3];
    int i, p;
    uint64_t t0 = pk_test_now_ns();
    for (p = 0; p < 3; p++) {
        pk_cache_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.max_entries = MAX_E;
        cfg.max_bytes = MAX_B;
        cfg.ttl_ns = 20000000;
        cfg.shards = 8;
        cfg.policy = p ? PK_CACHE_S3FIFO : PK_CACHE_LRU;
        cfg.on_remove = p < 2 ? on_remove : NULL;
        cfg.user = &cb[p];
        PK_CHECK_EQ(pk_cache_create(&c[p], &cfg), 0);
    }
    for (i = 0; i < THREADS; i++) {
        a[i].c[0] = c[0];
        a[i].c[1] = c[1];
        a[i].c[2] = c[2];
        a[i].id = i;
        a[i].ops = 0;
        pthread_create(&th[i], NULL, worker, &a[i]);
    }
    while ((double)(pk_test_now_ns() - t0) / 1e9 < secs) {
        pk_test_sleep_ns(50000000);
        check_invariants(c[0]);
        check_invariants(c[1]);
        check_invariants(c[2]);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        total_ops += a[i].ops;
    }
    for (p = 0; p < 3; p++) {
        pk_cache_stats st;
        check_invariants(c[p]);
        pk_cache_stats_get(c[p], &st);
        if (p < 2) {
            PK_CHECK_EQ(cb[p].reason[PK_CACHE_EVICTED], st.evictions);
            PK_CHECK_EQ(cb[p].reason[PK_CACHE_EXPIRED], st.expirations);
            PK_CHECK_EQ(cb[p].reason[PK_CACHE_REMOVED] + cb[p].reason[PK_CACHE_CLEARED], st.removals);
            PK_CHECK_EQ(cb[p].reason[PK_CACHE_REPLACED], st.updates);
        }
        printf("    %s: hits %llu misses %llu inserts %llu evictions %llu expirations %llu entries %zu\n",
               p == 0 ? "LRU" : p == 1 ? "S3-FIFO" : "S3-FIFO, no callback", (unsigned long long)st.hits, (unsigned long long)st.misses,
               (unsigned long long)st.inserts, (unsigned long long)st.evictions, (unsigned long long)st.expirations,
               st.entries);
        pk_cache_destroy(c[p]);
    }
    printf("    %ld operations in %.1f s by %d threads\n", total_ops, (double)(pk_test_now_ns() - t0) / 1e9, THREADS);
}

int main(void)
{
    int i;
    pk_test_main_begin("stress_cache");
    strcpy(dir, "/tmp/pk_cache_stress.XXXXXX");
    if (!mkdtemp(dir)) return 1;
    PK_TEST(test_stress);
    for (i = 0; i < 3; i++) {
        char p[128];
        sprintf(p, "%s/snap%d", dir, i);
        unlink(p);
    }
    rmdir(dir);
    return pk_test_main_end();
}
