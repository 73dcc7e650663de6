/* fuzz_pool.c — libFuzzer target: object-pool and resource-pool operation sequences decoded from
   the input, checked against a model of who owns what (single-threaded).

   Input: byte 0 picks the surface (even: object pool, odd: resource pool) and bytes 1..7 the
   configuration; then one operation per 2 bytes. An allocation-failure rate is part of the
   configuration, so error paths run too.

   Invariants checked after every operation:
   object pool  - an acquired object is not held by anyone else, is aligned, and lies wholly in memory
                  the pool owns (ASan); a held object's contents are never touched by the pool;
                  release of a held object: 0; of a non-held, interior or foreign pointer: -EINVAL;
                  NULL only when max objects are held, or init or an allocation failed in that call;
                  stats: in_use == held, created - freed == in_use + idle <= max; after a flush
                  idle <= max_idle; init/fini balance at destroy.
   resource pool - a lent resource is not lent twice; -ETIMEDOUT (timeout 0) only when max are lent;
                  release/invalidate of a non-lent pointer: -EINVAL; total == idle + in_use <= max;
                  stats.created/destroyed agree with the callbacks; at most one leak report per loan;
                  at destroy every lent resource is reported and everything else destroyed. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long fz_alloc_n, fz_fail_every, fz_injected, fz_live;
static void *fz_malloc(size_t n)
{
    if (fz_fail_every && ++fz_alloc_n % fz_fail_every == 0) {
        fz_injected++;
        return NULL;
    }
    fz_live++;
    return malloc(n ? n : 1);
}
static void *fz_realloc(void *p, size_t n)
{
    if (fz_fail_every && ++fz_alloc_n % fz_fail_every == 0) {
        fz_injected++;
        return NULL;
    }
    if (!p) fz_live++;
    return realloc(p, n ? n : 1);
}
static void fz_free(void *p)
{
    if (p) fz_live--;
    free(p);
}
#define PK_MALLOC(n) fz_malloc(n)
#define PK_REALLOC(p, n) fz_realloc(p, n)
#define PK_FREE(p) fz_free(p)
#define PK_POOL_IMPLEMENTATION
#include "pk_pool.h"

#define FZ_CHECK(c)                                                                                \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_pool: check failed at line %d: %s\n", __LINE__, #c);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

typedef struct rd { const uint8_t *d; size_t n, i; } rd;
static unsigned rb(rd *r) { return r->i < r->n ? r->d[r->i++] : 0; }

/* ================================ object pool ================================================ */

#define MAXHELD 200
typedef struct omodel {
    size_t size, align, max, max_idle;
    long inits, finis, init_calls, init_fail_mod;
    unsigned char *held[MAXHELD];
    uint32_t stamp[MAXHELD];
    int nheld;
    unsigned char *gone[64]; /* released (maybe reused since: check against held first) */
    int ngone, gpos;
    uint32_t next_stamp;
} omodel;

static int o_init(void *o, void *u)
{
    omodel *m = (omodel *)u;
    m->init_calls++;
    if (m->init_fail_mod && m->init_calls % m->init_fail_mod == 0) return -1;
    m->inits++;
    memset(o, 0x5A, m->size);
    return 0;
}
static void o_reset(void *o, void *u)
{
    omodel *m = (omodel *)u;
    memset(o, 0x5A, m->size < 8 ? m->size : 8); /* reset may write; the rest must stay as the user left it */
}
static void o_fini(void *o, void *u)
{
    omodel *m = (omodel *)u;
    size_t i;
    for (i = 0; i < m->size; i++) FZ_CHECK(((unsigned char *)o)[i] != 0xEE || i >= 8); /* not lent */
    m->finis++;
}

static int o_is_held(omodel *m, const void *p)
{
    int i;
    for (i = 0; i < m->nheld; i++)
        if (m->held[i] == p) return 1;
    return 0;
}

static void o_stamp(omodel *m, unsigned char *o, uint32_t s)
{
    size_t i;
    for (i = 0; i < m->size; i++) o[i] = (unsigned char)(i < 8 ? 0xEE : (s >> ((i % 4) * 8)) & 0xFF);
}
static void o_verify(omodel *m, const unsigned char *o, uint32_t s)
{
    size_t i;
    for (i = 0; i < m->size; i++) FZ_CHECK(o[i] == (unsigned char)(i < 8 ? 0xEE : (s >> ((i % 4) * 8)) & 0xFF));
}

static void o_stats(pk_pool *p, omodel *m, int flushed)
{
    pk_pool_stats st;
    pk_pool_stats_get(p, &st);
    FZ_CHECK(st.in_use == (size_t)m->nheld);
    FZ_CHECK(st.created - st.freed == st.in_use + st.idle);
    FZ_CHECK((long)(st.created - st.freed) == m->inits - m->finis);
    if (m->max) FZ_CHECK(st.created - st.freed <= m->max);
    if (flushed && m->max_idle) FZ_CHECK(st.idle <= m->max_idle);
    FZ_CHECK(st.peak_in_use >= st.in_use);
}

static void fuzz_objects(rd *r)
{
    static const size_t aligns[8] = {0, 1, 8, 16, 32, 64, 256, 4096};
    pk_pool_config c;
    omodel m;
    pk_pool *p = NULL;
    unsigned b1 = rb(r), b2 = rb(r), b3 = rb(r), b4 = rb(r), b5 = rb(r), b6 = rb(r);
    int rc, i;
    memset(&m, 0, sizeof m);
    memset(&c, 0, sizeof c);
    m.size = 8 + b1 % 120 + (b6 & 0x80 ? 1000 : 0);
    m.align = aligns[b2 % 8];
    m.max = b3 % 3 == 0 ? 0 : 1 + b3 % 150;
    m.max_idle = b4 % 2 ? 0 : b4 % 20;
    m.init_fail_mod = b5 % 4 == 0 ? 2 + b5 % 9 : 0;
    fz_fail_every = b6 % 5 == 0 ? 3 + (b6 & 0x3F) : 0;
    c.size = m.size;
    c.align = m.align;
    c.max = m.max;
    c.max_idle = m.max_idle;
    c.prealloc = (b5 >> 4) % 8;
    if (m.max && c.prealloc > m.max) c.prealloc = m.max;
    c.init = o_init;
    c.reset = o_reset;
    c.fini = o_fini;
    c.user = &m;
    rc = pk_pool_create(&p, &c);
    if (rc != 0) {
        FZ_CHECK(rc == -ENOMEM || rc == -ECANCELED);
        FZ_CHECK(m.inits == m.finis && p == NULL);
        return;
    }
    while (r->i < r->n) {
        unsigned op = rb(r), arg = rb(r);
        switch (op % 8) {
        case 0:
        case 1: { /* acquire */
            long inj0 = fz_injected, fail0 = m.init_calls - m.inits;
            unsigned char *o = (unsigned char *)pk_pool_acquire(p);
            if (!o) {
                int excused = fz_injected != inj0 || (m.init_calls - m.inits) != fail0 ||
                              (m.max && (size_t)m.nheld >= m.max);
                FZ_CHECK(excused);
                break;
            }
            FZ_CHECK(!o_is_held(&m, o));
            FZ_CHECK(((uintptr_t)o & ((m.align ? m.align : 16) - 1)) == 0);
            if (m.max) FZ_CHECK((size_t)m.nheld < m.max);
            if (m.nheld == MAXHELD) {
                FZ_CHECK(pk_pool_release(p, o) == 0);
                break;
            }
            m.held[m.nheld] = o;
            m.stamp[m.nheld] = ++m.next_stamp;
            o_stamp(&m, o, m.next_stamp);
            m.nheld++;
            break;
        }
        case 2:
        case 3: { /* release a held one */
            int k;
            unsigned char *o;
            if (!m.nheld) break;
            k = (int)(arg % (unsigned)m.nheld);
            o = m.held[k];
            o_verify(&m, o, m.stamp[k]);
            m.held[k] = m.held[m.nheld - 1];
            m.stamp[k] = m.stamp[m.nheld - 1];
            m.nheld--;
            FZ_CHECK(pk_pool_release(p, o) == 0);
            m.gone[m.gpos++ % 64] = o;
            if (m.ngone < 64) m.ngone++;
            break;
        }
        case 4: { /* double release, or a released pointer given back again */
            int k;
            if (!m.ngone) break;
            k = (int)(arg % (unsigned)m.ngone);
            if (o_is_held(&m, m.gone[k])) break; /* reused since: a legitimate release now */
            FZ_CHECK(pk_pool_release(p, m.gone[k]) == -EINVAL);
            break;
        }
        case 5: { /* foreign and interior pointers */
            unsigned char local[16];
            if (m.nheld) {
                unsigned char *o = m.held[arg % (unsigned)m.nheld];
                size_t off = 1 + arg % (m.size - 1);
                FZ_CHECK(pk_pool_release(p, o + off) == -EINVAL);
            }
            FZ_CHECK(pk_pool_release(p, local + (arg & 7)) == -EINVAL);
            FZ_CHECK(pk_pool_release(p, NULL) == -EINVAL);
            break;
        }
        case 6:
            pk_pool_flush(p);
            o_stats(p, &m, 1);
            break;
        default:
            o_stats(p, &m, 0);
            break;
        }
    }
    o_stats(p, &m, 0);
    for (i = 0; i < m.nheld; i++) o_verify(&m, m.held[i], m.stamp[i]);
    if ((r->d[0] >> 1) & 1) { /* give everything back, or destroy with objects still lent */
        for (i = 0; i < m.nheld; i++) FZ_CHECK(pk_pool_release(p, m.held[i]) == 0);
        m.nheld = 0;
    } else {
        for (i = 0; i < m.nheld; i++) memset(m.held[i], 0, 8); /* destroy finis lent ones too */
    }
    pk_pool_destroy(p);
    FZ_CHECK(m.inits == m.finis);
}

/* ================================ resource pool ============================================== */

typedef struct fres { long id; int healthy, lent, reported; } fres;

typedef struct rmodel {
    long made, destroyed, create_calls, create_fail_mod, leaks_seen;
    uint64_t now;
    fres *lent[16];
    int nlent;
    size_t max;
} rmodel;

static int r_create(void **res, void *u)
{
    rmodel *m = (rmodel *)u;
    fres *f;
    m->create_calls++;
    if (m->create_fail_mod && m->create_calls % m->create_fail_mod == 0) return -ECONNREFUSED;
    f = (fres *)calloc(1, sizeof *f);
    if (!f) return -ENOMEM;
    f->id = ++m->made;
    f->healthy = 1;
    *res = f;
    return 0;
}
static void r_destroy(void *res, void *u)
{
    rmodel *m = (rmodel *)u;
    FZ_CHECK(!((fres *)res)->lent);
    m->destroyed++;
    free(res);
}
static int r_validate(void *res, void *u)
{
    (void)u;
    FZ_CHECK(!((fres *)res)->lent);
    return ((fres *)res)->healthy ? 0 : -EIO;
}
static void r_leak(void *res, uint64_t held, void *u)
{
    rmodel *m = (rmodel *)u;
    fres *f = (fres *)res;
    (void)held;
    FZ_CHECK(f->lent);
    FZ_CHECK(!f->reported); /* once per loan */
    f->reported = 1;
    m->leaks_seen++;
}
static uint64_t r_clock(void *u) { return ((rmodel *)u)->now; }

static void r_stats(pk_respool *p, rmodel *m)
{
    pk_respool_stats st;
    pk_respool_stats_get(p, &st);
    FZ_CHECK(st.total == st.idle + st.in_use);
    FZ_CHECK(st.in_use == (size_t)m->nlent);
    FZ_CHECK(st.total <= m->max);
    FZ_CHECK(st.waiting == 0);
    FZ_CHECK((long)st.created == m->made);
    FZ_CHECK((long)st.destroyed == m->destroyed);
    FZ_CHECK(st.created - st.destroyed == st.total);
    FZ_CHECK((long)st.leaks == m->leaks_seen);
}

static void fuzz_resources(rd *r)
{
    pk_respool_config c;
    rmodel m;
    pk_respool *p = NULL;
    unsigned b1 = rb(r), b2 = rb(r), b3 = rb(r), b4 = rb(r), b5 = rb(r), b6 = rb(r);
    int rc, i;
    memset(&m, 0, sizeof m);
    memset(&c, 0, sizeof c);
    c.max = 1 + b1 % 6;
    c.min = b2 % (c.max + 1);
    m.max = c.max;
    if (b3 & 1) c.validate = r_validate;
    c.validate_idle_ns = (b3 >> 1) % 4 * 10;
    c.idle_timeout_ns = b4 % 3 == 0 ? 0 : 5 + b4 % 40;
    c.max_lifetime_ns = (b4 >> 2) % 3 == 0 ? 0 : 20 + (b4 >> 4) * 5;
    c.leak_ns = b5 % 2 ? 0 : 1 + b5 % 50;
    c.on_leak = r_leak;
    c.create = r_create;
    c.destroy = r_destroy;
    c.clock_ns = r_clock;
    c.user = &m;
    m.create_fail_mod = b6 % 3 == 0 ? 2 + b6 % 5 : 0;
    fz_fail_every = (b6 >> 3) % 4 == 0 ? 3 + (b6 >> 5) : 0;
    rc = pk_respool_create(&p, &c);
    if (rc != 0) {
        FZ_CHECK(rc == -ENOMEM || rc == -ECONNREFUSED);
        FZ_CHECK(m.made == m.destroyed);
        return;
    }
    while (r->i < r->n) {
        unsigned op = rb(r), arg = rb(r);
        switch (op % 8) {
        case 0:
        case 1: { /* acquire, timeout 0 */
            void *res = NULL;
            long inj0 = fz_injected;
            rc = pk_respool_acquire(p, &res, 0);
            if (rc == 0) {
                fres *f = (fres *)res;
                FZ_CHECK(!f->lent);
                FZ_CHECK(m.nlent < 16 && (size_t)m.nlent < m.max);
                f->lent = 1;
                f->reported = 0;
                m.lent[m.nlent++] = f;
            } else if (rc == -ETIMEDOUT) {
                FZ_CHECK((size_t)m.nlent == m.max);
            } else {
                FZ_CHECK(rc == -ECONNREFUSED || (rc == -ENOMEM && fz_injected != inj0));
            }
            break;
        }
        case 2:
        case 3: { /* release or invalidate a lent one */
            int k;
            fres *f;
            if (!m.nlent) break;
            k = (int)(arg % (unsigned)m.nlent);
            f = m.lent[k];
            m.lent[k] = m.lent[--m.nlent];
            f->lent = 0;
            if (op & 0x80) FZ_CHECK(pk_respool_invalidate(p, f) == 0);
            else FZ_CHECK(pk_respool_release(p, f) == 0);
            break;
        }
        case 4: { /* bad releases */
            int local;
            FZ_CHECK(pk_respool_release(p, &local) == -EINVAL);
            FZ_CHECK(pk_respool_invalidate(p, &local) == -EINVAL);
            break;
        }
        case 5: /* time passes */
            m.now += arg;
            break;
        case 6: /* a lent resource breaks (validation will fail once idle) */
            if (m.nlent) m.lent[arg % (unsigned)m.nlent]->healthy = 0;
            break;
        default:
            pk_respool_maintain(p);
            break;
        }
        r_stats(p, &m);
    }
    for (i = 0; i < m.nlent; i++) m.lent[i]->reported = 0;
    {
        long leaks0 = m.leaks_seen;
        int nlent = m.nlent;
        pk_respool_destroy(p); /* lent ones: not destroyed; reported when leak reports are on */
        FZ_CHECK(m.leaks_seen - leaks0 == (c.leak_ns ? nlent : 0));
    }
    for (i = 0; i < m.nlent; i++) {
        m.lent[i]->lent = 0;
        r_destroy(m.lent[i], &m);
    }
    FZ_CHECK(m.made == m.destroyed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rd r;
    long live0;
    if (size < 1) return 0;
    r.d = data;
    r.n = size > 4096 ? 4096 : size;
    r.i = 1;
    live0 = fz_live;
    if (data[0] & 1) fuzz_resources(&r);
    else fuzz_objects(&r);
    fz_fail_every = 0;
    FZ_CHECK(fz_live == live0); /* nothing leaked (the pool's thread cache went with the pool) */
    return 0;
}
