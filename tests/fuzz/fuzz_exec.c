/* fuzz_exec.c — libFuzzer target for pk_exec.h: the submit queue's rules (priorities, FIFO within a
   level, deadlines, dropping expired tasks first when full, displacement of the newest task of the
   lowest level below, refusals) and map's result rules, checked against a reference model.

   Determinism: the pool has ONE worker, held busy by a "gate" task while operations are decoded, on
   a fake clock that only the input moves. So submit sees exactly the queue the model sees, and a
   map runs on its caller alone (the only worker is busy), item by item in index order. A "release"
   opens the gate: the worker drains the queue with the clock frozen, the target waits for idle and
   compares the ordered log of runs and drops with the model's, then holds the worker again.

   Checked: every submit's return value; the on_drop calls made inside submit (which, in which
   order, with which reason); the run/drop order of a drain; stats after every operation that asks
   (queued by level, submitted, completed, dropped by reason, refused by reason, the identity
   submitted == queued + running + completed + dropped); map's return value, errors[], fail-fast
   skip counts and progress order; bad arguments refused without effect; at the end every accepted
   task ran or was dropped exactly once.

   Input: byte 0 = queue_max (0..8, 0 = unbounded); then operations of one or two bytes. */
#define PK_EXEC_IMPLEMENTATION
#include "pk_exec.h"
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FZ_CHECK(c)                                                                                \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_exec: check failed at line %d: %s\n", __LINE__, #c);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_TASKS 600
#define MAX_EV 2048

/* ---- the real side: events logged by tasks and on_drop ---------------------------------------- */

static pthread_mutex_t ev_mu = PTHREAD_MUTEX_INITIALIZER;
static int ev[MAX_EV], nev; /* id * 4 + kind: 0 ran, 1 dropped -ETIMEDOUT, 2 dropped -EAGAIN, 3 bad */

static void ev_push(int v)
{
    pthread_mutex_lock(&ev_mu);
    if (nev < MAX_EV) ev[nev++] = v;
    pthread_mutex_unlock(&ev_mu);
}
static void task_run(void *arg) { ev_push((int)(intptr_t)arg * 4); }
static void task_drop(void *arg, int reason)
{
    ev_push((int)(intptr_t)arg * 4 + (reason == -ETIMEDOUT ? 1 : reason == -EAGAIN ? 2 : 3));
}

static uint64_t fake_now;
static uint64_t fake_clock(void *user)
{
    (void)user;
    return __atomic_load_n(&fake_now, __ATOMIC_SEQ_CST);
}

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open, started;
} gate;
static gate g;
static void gate_task(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g.mu);
    g.started = 1;
    pthread_cond_broadcast(&g.cv);
    while (!g.open) pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
}

/* ---- the model -------------------------------------------------------------------------------- */

typedef struct mtask {
    int id, level, has_drop;
    uint64_t deadline;
} mtask;

static struct {
    mtask q[3][MAX_TASKS]; /* FIFO per level: LOW, NORMAL, HIGH */
    int n[3];
    int queue_max;
    uint64_t submitted, completed, dropped_timeout, dropped_displaced, rejected_full, rejected_expired;
    int outcome[MAX_TASKS]; /* 0 not accepted, 1 queued, 2 ran, 3 dropped */
    int next_id;
    int want[MAX_EV], nwant;
} m;

static int m_queued(void) { return m.n[0] + m.n[1] + m.n[2]; }

static void m_remove(int l, int k)
{
    memmove(&m.q[l][k], &m.q[l][k + 1], sizeof(mtask) * (size_t)(m.n[l] - k - 1));
    m.n[l]--;
}

static void m_expect(const mtask *t, int kind)
{
    if (kind == 0 || t->has_drop) m.want[m.nwant++] = t->id * 4 + kind;
    m.outcome[t->id] = kind == 0 ? 2 : 3;
}

/* the model of pk_exec_submit_opts */
static int m_submit(int id, int level, uint64_t deadline, int has_drop)
{
    uint64_t now = fake_now;
    mtask t;
    if (deadline && now >= deadline) {
        m.rejected_expired++;
        return -ETIMEDOUT;
    }
    if (m.queue_max && m_queued() >= m.queue_max) {
        int l, k;
        for (l = 2; l >= 0; l--)
            for (k = 0; k < m.n[l];) {
                if (m.q[l][k].deadline && now >= m.q[l][k].deadline) {
                    m_expect(&m.q[l][k], 1);
                    m.dropped_timeout++;
                    m_remove(l, k);
                } else {
                    k++;
                }
            }
        if (m_queued() >= m.queue_max) {
            for (l = 0; l < level; l++)
                if (m.n[l]) break;
            if (l < level) {
                m_expect(&m.q[l][m.n[l] - 1], 2);
                m.dropped_displaced++;
                m.n[l]--;
            } else {
                m.rejected_full++;
                return -EAGAIN;
            }
        }
    }
    t.id = id;
    t.level = level;
    t.deadline = deadline;
    t.has_drop = has_drop;
    m.q[level][m.n[level]++] = t;
    m.outcome[id] = 1;
    m.submitted++;
    return 0;
}

/* the model of one worker draining the queue with the clock frozen */
static void m_drain(void)
{
    int l, k;
    uint64_t now = fake_now;
    for (l = 2; l >= 0; l--) {
        for (k = 0; k < m.n[l]; k++) {
            mtask *t = &m.q[l][k];
            if (t->deadline && now >= t->deadline) {
                m_expect(t, 1);
                m.dropped_timeout++;
            } else {
                m_expect(t, 0);
                m.completed++;
            }
        }
        m.n[l] = 0;
    }
}

/* compares the real log with the model's expectations, then clears both */
static void compare_log(const char *where)
{
    int i, same;
    pthread_mutex_lock(&ev_mu);
    same = nev == m.nwant;
    for (i = 0; same && i < nev; i++) same = ev[i] == m.want[i];
    if (!same) {
        fprintf(stderr, "fuzz_exec: %s: event log differs\n  want:", where);
        for (i = 0; i < m.nwant; i++) fprintf(stderr, " %d.%d", m.want[i] / 4, m.want[i] % 4);
        fprintf(stderr, "\n  got: ");
        for (i = 0; i < nev; i++) fprintf(stderr, " %d.%d", ev[i] / 4, ev[i] % 4);
        fprintf(stderr, "\n");
    }
    nev = 0;
    m.nwant = 0;
    pthread_mutex_unlock(&ev_mu);
    FZ_CHECK(same);
}

/* ---- the pool's gate --------------------------------------------------------------------------------- */

static uint64_t gates; /* gate tasks submitted (they count in submitted and completed) */

static void hold_worker(pk_exec *e)
{
    pthread_mutex_lock(&g.mu);
    g.open = 0;
    g.started = 0;
    pthread_mutex_unlock(&g.mu);
    FZ_CHECK(pk_exec_submit(e, gate_task, NULL) == 0); /* the queue is empty: accepted */
    gates++;
    pthread_mutex_lock(&g.mu);
    while (!g.started) pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
}

static void release_and_drain(pk_exec *e)
{
    pthread_mutex_lock(&g.mu);
    g.open = 1;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pk_exec_wait_idle(e);
    m_drain();
    compare_log("drain");
}

static void check_stats(pk_exec *e, int running)
{
    pk_exec_stats st;
    pk_exec_stats_get(e, &st);
    FZ_CHECK(st.threads == 1);
    FZ_CHECK(st.queued == (size_t)m_queued());
    FZ_CHECK(st.queued_low == (size_t)m.n[0] && st.queued_normal == (size_t)m.n[1] && st.queued_high == (size_t)m.n[2]);
    FZ_CHECK(st.running == (size_t)running);
    FZ_CHECK(st.submitted == m.submitted + gates);
    FZ_CHECK(st.completed == m.completed + gates - (uint64_t)running);
    FZ_CHECK(st.dropped_timeout == m.dropped_timeout);
    FZ_CHECK(st.dropped_displaced == m.dropped_displaced);
    FZ_CHECK(st.rejected_full == m.rejected_full);
    FZ_CHECK(st.rejected_expired == m.rejected_expired);
    FZ_CHECK(st.submitted == st.queued + st.running + st.completed + st.dropped_timeout + st.dropped_displaced);
    FZ_CHECK(st.started == st.completed + st.running);
    FZ_CHECK(!m.queue_max || st.queue_peak <= (size_t)m.queue_max);
}

/* ---- maps, run on the caller alone (the only worker is held) ------------------------------------------ */

typedef struct map_ctx {
    uint8_t pattern;
    size_t ran_next; /* items must run in index order */
    int order_ok;
    size_t last_done, calls, total;
    int progress_ok;
} map_ctx;

static int item_rc(uint8_t pattern, size_t i)
{
    return ((i * 7 + pattern) % 11 == 0 && pattern > 64) ? -(int)(i % 5 + 1) : 0;
}

static int map_item(void *ctx, size_t i)
{
    map_ctx *c = (map_ctx *)ctx;
    if (i != c->ran_next) c->order_ok = 0;
    c->ran_next = i + 1;
    return item_rc(c->pattern, i);
}

static void map_progress(void *ctx, size_t done, size_t total)
{
    map_ctx *c = (map_ctx *)ctx;
    if (done <= c->last_done || done > total || total != c->total) c->progress_ok = 0;
    c->last_done = done;
    c->calls++;
}

static void do_map(pk_exec *e, uint8_t a, uint8_t b)
{
    size_t n = a % 40, i, first_fail = (size_t)-1;
    int errs[40], r, want = 0;
    map_ctx c;
    pk_exec_map_opts o;
    memset(&c, 0, sizeof c);
    memset(&o, 0, sizeof o);
    c.pattern = (uint8_t)(a ^ b);
    c.order_ok = c.progress_ok = 1;
    c.total = n;
    o.grain = b % 5;
    o.concurrency = (unsigned)(b / 5) % 4;
    o.fail_fast = (b / 20) & 1;
    if ((b / 40) & 1) o.progress = map_progress;
    if ((b / 80) & 1) o.errors = errs;
    for (i = 0; i < 40; i++) errs[i] = 12345;
    for (i = 0; i < n; i++)
        if (item_rc(c.pattern, i)) {
            first_fail = i;
            want = item_rc(c.pattern, i);
            break;
        }
    r = pk_exec_map(e, n, map_item, &c, &o);
    FZ_CHECK(r == want);
    FZ_CHECK(c.order_ok);
    /* without fail_fast everything ran; with it, everything up to the first failure */
    FZ_CHECK(c.ran_next == (o.fail_fast && first_fail != (size_t)-1 ? first_fail + 1 : n));
    if (o.errors)
        for (i = 0; i < 40; i++) {
            int w = i >= n ? 12345 : (o.fail_fast && first_fail != (size_t)-1 && i > first_fail) ? -ECANCELED
                                                                                              : item_rc(c.pattern, i);
            FZ_CHECK(errs[i] == w);
        }
    if (o.progress) {
        FZ_CHECK(c.progress_ok);
        FZ_CHECK(c.last_done == n);
        FZ_CHECK(n == 0 ? c.calls == 0 : c.calls >= 1 && c.calls <= n);
    }
}

/* ---- the target ------------------------------------------------------------------------------------------ */

static void reset_all(void)
{
    memset(&m, 0, sizeof m);
    nev = 0;
    gates = 0;
    fake_now = 1000000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    pk_exec *e;
    pk_exec_config cfg;
    size_t p = 1;
    int ops = 0;
    if (!inited) {
        pthread_mutex_init(&g.mu, NULL);
        pthread_cond_init(&g.cv, NULL);
        inited = 1;
    }
    if (size < 1) return 0;
    reset_all();
    m.queue_max = data[0] % 9;
    memset(&cfg, 0, sizeof cfg);
    cfg.threads = 1;
    cfg.queue_max = (size_t)m.queue_max;
    cfg.clock_ns = fake_clock;
    FZ_CHECK(pk_exec_create(&e, &cfg) == 0);
    hold_worker(e);
    while (p < size && ops < 400) {
        uint8_t op = data[p++], a = p < size ? data[p] : 0;
        ops++;
        switch (op % 8) {
        case 0:
        case 1:
        case 2: { /* submit */
            int id = m.next_id, level = a % 3, dmode = (a / 3) % 4, has_drop = (a / 48) != 0, rc, wrc;
            uint64_t deadline = 0;
            pk_exec_task_opts o;
            p++;
            if (id >= MAX_TASKS) break;
            m.next_id++;
            if (dmode == 1) deadline = fake_now - 1 - (a % 7);
            else if (dmode == 2) deadline = fake_now;
            else if (dmode == 3) deadline = fake_now + 1 + (uint64_t)((a / 12) % 8) * 10;
            memset(&o, 0, sizeof o);
            o.priority = level - 1;
            o.deadline_ns = deadline;
            o.on_drop = has_drop ? task_drop : NULL;
            if (op % 8 == 2 && level == 1 && !deadline && has_drop == 0)
                rc = pk_exec_submit(e, task_run, (void *)(intptr_t)id); /* the plain call */
            else
                rc = pk_exec_submit_opts(e, task_run, (void *)(intptr_t)id, &o);
            wrc = m_submit(id, level, deadline, has_drop);
            if (rc != wrc) fprintf(stderr, "fuzz_exec: submit %d returned %d, model %d\n", id, rc, wrc);
            FZ_CHECK(rc == wrc);
            compare_log("submit"); /* drops made by submit are reported before it returns */
            break;
        }
        case 3: /* move the clock */
            p++;
            fake_now += (uint64_t)(a % 16) * 10;
            break;
        case 4: /* let the worker drain the queue, then hold it again */
            release_and_drain(e);
            check_stats(e, 0);
            hold_worker(e);
            break;
        case 5:
            check_stats(e, 1);
            break;
        case 6: { /* a map */
            uint8_t b = p + 1 < size ? data[p + 1] : 0;
            p += 2;
            do_map(e, a, b);
            break;
        }
        case 7: { /* bad arguments change nothing */
            pk_exec_task_opts o;
            memset(&o, 0, sizeof o);
            o.priority = (a & 1) ? 2 : -2;
            p++;
            FZ_CHECK(pk_exec_submit_opts(e, task_run, NULL, &o) == -EINVAL);
            FZ_CHECK(pk_exec_submit(e, NULL, NULL) == -EINVAL);
            FZ_CHECK(pk_exec_map(e, a, NULL, NULL, NULL) == -EINVAL);
            FZ_CHECK(pk_exec_map(e, 0, map_item, NULL, NULL) == 0);
            check_stats(e, 1);
            break;
        }
        }
    }
    release_and_drain(e);
    check_stats(e, 0);
    pk_exec_destroy(e);
    {
        int i;
        for (i = 0; i < m.next_id; i++) FZ_CHECK(m.outcome[i] != 1); /* nothing left queued */
    }
    return 0;
}
