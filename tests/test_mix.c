/* test_mix.c — the five headers in one program, used together the way a service uses them:
 * pk_exec_map runs requests; each request takes a scratch buffer from a pk_pool, looks its key up in
 * pk_cache, on a miss joins or leads a pk_dedup flight that borrows a "model session" from a
 * pk_respool; pk_prof records every request from the worker threads. The checks: every request got
 * the right answer, each distinct key cost exactly one model call (the cache is checked again inside
 * the flight), nothing is lent out or leaked at the end, and the profiler saw every request. */
#include "pk_test.h"

#define PK_MALLOC(n) pk_test_malloc(n)
#define PK_REALLOC(p, n) pk_test_realloc(p, n)
#define PK_FREE(p) pk_test_free(p)
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

#define NKEYS 37
#define NREQ 2000

typedef struct service {
    pk_cache *cache;
    pk_dedup *dedup;
    pk_exec *exec;
    pk_pool *scratch;
    pk_respool *sessions;
    pk_prof *prof;
    int l_req;
    long model_calls[NKEYS]; /* atomic */
    long sessions_live;      /* atomic */
    long wrong;              /* atomic */
} service;

typedef struct call { service *s; int key; } call;

static int session_create(void **res, void *user)
{
    service *s = (service *)user;
    int *x = (int *)malloc(sizeof *x);
    if (!x) return -ENOMEM;
    *x = 7;
    __atomic_add_fetch(&s->sessions_live, 1, __ATOMIC_RELAXED);
    *res = x;
    return 0;
}

static void session_destroy(void *res, void *user)
{
    service *s = (service *)user;
    __atomic_sub_fetch(&s->sessions_live, 1, __ATOMIC_RELAXED);
    free(res);
}

static void answer_of(int key, char *out, size_t cap) { snprintf(out, cap, "answer-%d-%d", key, key * key); }

static int model(void *arg, void **value, size_t *len)
{
    call *c = (call *)arg;
    char buf[64], *v;
    size_t n;
    void *session;
    int rc;
    if (pk_cache_get(c->s->cache, &c->key, sizeof c->key, buf, sizeof buf, &n) == 0) {
        v = (char *)PK_MALLOC(n);
        if (!v) return -ENOMEM;
        memcpy(v, buf, n);
        *value = v;
        *len = n;
        return 0;
    }
    rc = pk_respool_acquire(c->s->sessions, &session, PK_FOREVER);
    if (rc) return rc;
    PK_CHECK_EQ(*(int *)session, 7);
    __atomic_add_fetch(&c->s->model_calls[c->key], 1, __ATOMIC_RELAXED);
    answer_of(c->key, buf, sizeof buf);
    n = strlen(buf);
    pk_respool_release(c->s->sessions, session);
    v = (char *)PK_MALLOC(n);
    if (!v) return -ENOMEM;
    memcpy(v, buf, n);
    PK_CHECK_EQ(pk_cache_put(c->s->cache, &c->key, sizeof c->key, v, n, PK_CACHE_TTL_NEVER), 0);
    *value = v;
    *len = n;
    return 0;
}

static int request(void *ctx, size_t i)
{
    service *s = (service *)ctx;
    uint64_t t0 = pk_prof_now();
    char *scratch = (char *)pk_pool_acquire(s->scratch);
    char want[64];
    size_t n = 0;
    call c;
    if (!scratch) return -ENOMEM;
    c.s = s;
    c.key = (int)((i * 7919u) % NKEYS);
    if (pk_cache_get(s->cache, &c.key, sizeof c.key, scratch, 64, &n) != 0) {
        pk_dedup_result r;
        int rc = pk_dedup_do(s->dedup, &c.key, sizeof c.key, model, &c, PK_FOREVER, &r);
        if (rc == 0) {
            n = r.len;
            memcpy(scratch, r.value, n);
        }
        pk_dedup_release(s->dedup, &r);
        if (rc) {
            pk_pool_release(s->scratch, scratch);
            return rc;
        }
    }
    answer_of(c.key, want, sizeof want);
    if (n != strlen(want) || memcmp(scratch, want, n) != 0) __atomic_add_fetch(&s->wrong, 1, __ATOMIC_RELAXED);
    PK_CHECK_EQ(pk_pool_release(s->scratch, scratch), 0);
    pk_prof_record(s->prof, s->l_req, pk_prof_now() - t0);
    return 0;
}

static void t_service(void)
{
    service s;
    pk_cache_config cc;
    pk_exec_config ec;
    pk_pool_config pc;
    pk_respool_config rc;
    pk_exec_map_opts mo;
    pk_pool_stats ps;
    pk_respool_stats rs;
    pk_prof_stats st;
    pk_dedup_stats ds;
    int k, round;
    memset(&s, 0, sizeof s);
    memset(&cc, 0, sizeof cc);
    memset(&ec, 0, sizeof ec);
    memset(&pc, 0, sizeof pc);
    memset(&rc, 0, sizeof rc);
    cc.max_entries = 1000;
    ec.threads = 4;
    pc.size = 64;
    rc.min = 1;
    rc.max = 3;
    rc.create = session_create;
    rc.destroy = session_destroy;
    rc.user = &s;
    PK_CHECK_EQ(pk_cache_create(&s.cache, &cc), 0);
    PK_CHECK_EQ(pk_dedup_create(&s.dedup, NULL), 0);
    PK_CHECK_EQ(pk_exec_create(&s.exec, &ec), 0);
    PK_CHECK_EQ(pk_pool_create(&s.scratch, &pc), 0);
    PK_CHECK_EQ(pk_respool_create(&s.sessions, &rc), 0);
    PK_CHECK_EQ(pk_prof_create(&s.prof, NULL), 0);
    if (!s.cache || !s.dedup || !s.exec || !s.scratch || !s.sessions || !s.prof) return;
    s.l_req = pk_prof_label(s.prof, "request");
    PK_CHECK(s.l_req >= 0);

    memset(&mo, 0, sizeof mo);
    mo.concurrency = 5;
    for (round = 0; round < 2; round++) /* the second round is answered by the cache alone */
        PK_CHECK_EQ(pk_exec_map(s.exec, NREQ, request, &s, &mo), 0);

    PK_CHECK_EQ(s.wrong, 0);
    for (k = 0; k < NKEYS; k++) PK_CHECK_MSG(s.model_calls[k] == 1, "key %d: %ld model calls", k, s.model_calls[k]);
    PK_CHECK_EQ(pk_prof_stats_get(s.prof, s.l_req, &st), 0);
    PK_CHECK_EQ(st.count, 2 * NREQ);
    pk_pool_stats_get(s.scratch, &ps);
    PK_CHECK_EQ(ps.in_use, 0);
    PK_CHECK(ps.peak_in_use >= 1);
    pk_respool_stats_get(s.sessions, &rs);
    PK_CHECK_EQ(rs.in_use, 0);
    PK_CHECK(rs.total <= 3);
    pk_dedup_stats_get(s.dedup, &ds);
    PK_CHECK_EQ(ds.in_flight, 0);
    PK_CHECK_EQ(ds.calls, ds.executions + ds.coalesced);

    pk_exec_destroy(s.exec);
    pk_respool_destroy(s.sessions);
    PK_CHECK_EQ(s.sessions_live, 0);
    pk_pool_destroy(s.scratch);
    pk_dedup_destroy(s.dedup);
    pk_cache_destroy(s.cache);
    pk_prof_destroy(s.prof);
    PK_CHECK_EQ(pk_test_alloc_live(), 0);
}

int main(void)
{
    pk_test_main_begin("test_mix");
    PK_TEST(t_service);
    return pk_test_main_end();
}
