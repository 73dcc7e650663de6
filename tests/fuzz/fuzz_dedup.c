/* fuzz_dedup.c — libFuzzer target for pk_dedup.h: sequences of do / forget / release / stats
   decoded from the input, run on one thread through a fake fn that itself executes the next
   operations (so calls nest: fn calls do on other keys, forgets its own key, returns early...),
   checked against a model of what must happen:
     - do on a key led by a call in progress on this thread: -EDEADLK, whatever the timeout;
     - any other do runs fn once and returns exactly fn's rc, value and len (NULL/0 when fn set none);
     - forget: 0 when the key is linked in flight, else -ENOENT;
     - stats: calls = executions + coalesced, executions and in_flight as the model counts them;
     - every value is freed exactly once, after its last release (ASan checks the rest).
   One operation spawns a real follower thread on a key in flight (waiting forever, or with
   timeout 0); the target waits until it has joined, so the run stays deterministic, and checks
   that it receives the leader's result with shared set on both sides.

   Input: byte 0 picks the shard count; then one byte per operation (+ argument bytes). */
#define PK_DEDUP_IMPLEMENTATION
#include "pk_dedup.h"
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 6
#define MAX_HELD 8
#define MAX_FOL 3
#define MAX_OPS 400

#define FZ_CHECK(c)                                                                                \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_dedup: check failed at line %d: %s\n", __LINE__, #c);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char *const KEYS[5] = {"alpha", "beta", "", "a-much-longer-key-over-sixteen-bytes", "beta2"};

typedef struct follower {
    pthread_t th;
    int key, rc;
    uint64_t timeout;
    pk_dedup_result res;
} follower;

typedef struct frame {
    int key;
    int linked;          /* model: found by callers and by forget */
    int made_value;      /* fn of this frame returned a value */
    int nfol;
    follower fol[MAX_FOL];
} frame;

typedef struct value_t {
    uint64_t exec;
    int key;
} value_t;

static struct {
    const uint8_t *p;
    size_t n, i;
    int ops;
    pk_dedup *d;
    frame *stack[MAX_DEPTH];
    int depth;
    pk_dedup_result held[MAX_HELD];
    uint64_t executions, coalesced, values_made, frees;
} S;

static void count_free(void *v, void *user)
{
    (void)user;
    S.frees++;
    free(v);
}

static int next(void)
{
    if (S.i >= S.n) return -1;
    return S.p[S.i++];
}

static int linked_frame(int key)
{
    int l;
    for (l = 0; l < S.depth; l++)
        if (S.stack[l]->key == key && S.stack[l]->linked) return l;
    return -1;
}

static void check_stats(void)
{
    pk_dedup_stats st;
    pk_dedup_stats_get(S.d, &st);
    FZ_CHECK(st.calls == st.executions + st.coalesced);
    FZ_CHECK(st.executions == S.executions);
    FZ_CHECK(st.coalesced == S.coalesced);
    FZ_CHECK(st.in_flight == (size_t)S.depth);
}

static void hold(pk_dedup_result *r)
{
    int i;
    for (i = 0; i < MAX_HELD; i++)
        if (!S.held[i].call_) {
            S.held[i] = *r;
            return;
        }
    pk_dedup_release(S.d, r);
}

static int never_fn(void *arg, void **value, size_t *len)
{
    (void)arg;
    (void)value;
    (void)len;
    FZ_CHECK(!"a follower ran fn: it should have joined the call in flight");
    return 0;
}

static void *follower_main(void *arg)
{
    follower *f = (follower *)arg;
    f->rc = pk_dedup_do(S.d, KEYS[f->key], strlen(KEYS[f->key]), never_fn, NULL, f->timeout, &f->res);
    return NULL;
}

static void run_ops(int until_return, int *rc_out, int *want_value);

static int fake_fn(void *arg, void **value, size_t *len)
{
    frame *f = (frame *)arg;
    int rc = 0, want_value = 1;
    S.stack[S.depth++] = f;
    run_ops(1, &rc, &want_value);
    S.depth--;
    FZ_CHECK(S.stack[S.depth] == f);
    if (want_value) {
        value_t *v = (value_t *)malloc(sizeof *v);
        FZ_CHECK(v != NULL);
        v->exec = S.executions;
        v->key = f->key;
        *value = v;
        *len = sizeof *v;
        S.values_made++;
        f->made_value = 1;
    } else {
        *len = 7; /* no value: must be reported as 0 */
    }
    return rc;
}

static void op_do(int key, uint64_t timeout)
{
    pk_dedup_result r;
    int rc, l = linked_frame(key), i;
    frame f;
    if (l >= 0) { /* led by this thread: refused, not waited for */
        rc = pk_dedup_do(S.d, KEYS[key], strlen(KEYS[key]), fake_fn, NULL, timeout, &r);
        S.coalesced++;
        FZ_CHECK(rc == -EDEADLK && r.rc == -EDEADLK && r.value == NULL && r.call_ == NULL);
        pk_dedup_release(S.d, &r);
        return;
    }
    if (S.depth >= MAX_DEPTH) return;
    memset(&f, 0, sizeof f);
    f.key = key;
    f.linked = 1;
    S.executions++;
    {
        rc = pk_dedup_do(S.d, KEYS[key], strlen(KEYS[key]), fake_fn, &f, timeout, &r);
        FZ_CHECK(rc == r.rc);
        if (f.made_value) {
            const value_t *v = (const value_t *)r.value;
            FZ_CHECK(v != NULL && v->key == key && r.len == sizeof *v);
        } else {
            FZ_CHECK(r.value == NULL && r.len == 0);
        }
    }
    FZ_CHECK((r.shared != 0) == (f.nfol > 0)); /* followers that wait forever all receive */
    for (i = 0; i < f.nfol; i++) {
        follower *o = &f.fol[i];
        pthread_join(o->th, NULL);
        FZ_CHECK(o->rc == rc && o->res.value == r.value && o->res.len == r.len && o->res.shared && r.shared);
        hold(&o->res);
    }
    hold(&r);
}

static void op_follower(int level, int forever)
{
    frame *f;
    follower *o;
    pk_dedup_stats st;
    if (level >= S.depth) return;
    f = S.stack[level];
    if (!f->linked) return;
    if (!forever) { /* timeout 0 from another thread: -ETIMEDOUT at once, nothing joined */
        follower tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.key = f->key;
        tmp.timeout = 0;
        FZ_CHECK(pthread_create(&tmp.th, NULL, follower_main, &tmp) == 0);
        pthread_join(tmp.th, NULL);
        S.coalesced++;
        FZ_CHECK(tmp.rc == -ETIMEDOUT && tmp.res.value == NULL);
        pk_dedup_release(S.d, &tmp.res);
        return;
    }
    if (f->nfol >= MAX_FOL) return;
    o = &f->fol[f->nfol++];
    memset(o, 0, sizeof *o);
    o->key = f->key;
    o->timeout = PK_FOREVER;
    FZ_CHECK(pthread_create(&o->th, NULL, follower_main, o) == 0);
    S.coalesced++;
    for (;;) { /* wait until it has joined */
        pk_dedup_stats_get(S.d, &st);
        if (st.coalesced == S.coalesced) break;
        sched_yield();
    }
}

static void run_ops(int until_return, int *rc_out, int *want_value)
{
    int b, a;
    while (S.ops < MAX_OPS && (b = next()) >= 0) {
        S.ops++;
        switch (b % 9) {
        case 0:
        case 1: /* do */
            a = next();
            if (a < 0) return;
            op_do(a % 5, (a >> 3) % 3 == 0 ? 0 : (a >> 3) % 3 == 1 ? 1000000000ull : PK_FOREVER);
            break;
        case 2: /* return from the innermost fn */
            a = next();
            if (!until_return) break;
            if (a < 0) a = 0;
            *rc_out = a % 4 == 0 ? -EIO : a % 4 == 1 ? -ENOENT : 0;
            *want_value = (a >> 2) % 3 != 0;
            return;
        case 3: /* forget */
            a = next();
            if (a < 0) return;
            {
                int key = a % 5, l = linked_frame(key);
                int rc = pk_dedup_forget(S.d, KEYS[key], strlen(KEYS[key]));
                FZ_CHECK(rc == (l >= 0 ? 0 : -ENOENT));
                if (l >= 0) S.stack[l]->linked = 0;
            }
            break;
        case 4: /* release a held result (maybe one already released: harmless) */
            a = next();
            if (a < 0) return;
            pk_dedup_release(S.d, &S.held[a % MAX_HELD]);
            FZ_CHECK(S.held[a % MAX_HELD].call_ == NULL);
            break;
        case 5:
            check_stats();
            break;
        case 6: /* a follower thread on a call in flight */
            a = next();
            if (a < 0) return;
            op_follower(a % MAX_DEPTH, (a >> 4) & 1);
            break;
        case 7: /* bad input: refused, nothing counted */
            {
                pk_dedup_result r;
                FZ_CHECK(pk_dedup_do(S.d, NULL, 3, fake_fn, NULL, 0, &r) == -EINVAL);
                FZ_CHECK(pk_dedup_do(S.d, "x", 1, NULL, NULL, 0, &r) == -EINVAL);
                FZ_CHECK(pk_dedup_do(NULL, "x", 1, fake_fn, NULL, 0, &r) == -EINVAL);
                FZ_CHECK(pk_dedup_do(S.d, "x", 1, fake_fn, NULL, 0, NULL) == -EINVAL);
                FZ_CHECK(pk_dedup_forget(S.d, NULL, 2) == -EINVAL);
                pk_dedup_release(S.d, &r);
            }
            break;
        default: /* read a held value: must still be intact */
            a = next();
            if (a < 0) return;
            if (S.held[a % MAX_HELD].value) {
                const value_t *v = (const value_t *)S.held[a % MAX_HELD].value;
                FZ_CHECK(v->key >= 0 && v->key < 5 && v->exec >= 1 && v->exec <= S.executions);
            }
            break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pk_dedup_config cfg;
    int i, rc = 0, wv = 1;
    memset(&S, 0, sizeof S);
    memset(&cfg, 0, sizeof cfg);
    if (size < 1) return 0;
    cfg.shards = data[0] % 3 == 0 ? 1 : data[0] % 3 == 1 ? 0 : 4;
    cfg.free_value = count_free;
    FZ_CHECK(pk_dedup_create(&S.d, &cfg) == 0);
    S.p = data + 1;
    S.n = size - 1;
    run_ops(0, &rc, &wv);
    check_stats();
    for (i = 0; i < MAX_HELD; i++) pk_dedup_release(S.d, &S.held[i]);
    FZ_CHECK(S.frees == S.values_made);
    pk_dedup_destroy(S.d);
    return 0;
}
