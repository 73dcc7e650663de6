/* fuzz_cache_ops.c — cache operations decoded from the input, checked against a simple reference
   model (differential): an LRU list with entry and byte bounds, TTLs on a fake clock, prefix and
   glob removal, pins, and a snapshot round trip. shards = 1, so the cache must agree exactly:
   same results, same values, same eviction order, same entry and byte counts. Bit 0x40 of the
   first byte runs without on_remove, where puts refill the memory of evicted entries. */
#define PK_CACHE_IMPLEMENTATION
#include "pk_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXM 64
#define MAXK 4
#define MAXV 64

typedef struct ment {
    unsigned char key[MAXK], val[MAXV];
    size_t klen, vlen;
    uint64_t expire;
} ment;

static ment model[MAXM]; /* model[0] = least recent */
static size_t mn, mbytes, max_e, max_b;
static uint64_t now_ns;
static int failed;
static unsigned char evicted[MAXM][MAXK + 1]; /* keys evicted by the current call, in order */
static size_t nev;
static int with_cb; /* 0: no on_remove, so put refills evicted entries' memory (eviction order is
                       then checked only through what the cache still returns) */

/* tmpfs when there is one: snapshots fsync, which is slow on a disk */
static const char *tmp_dir(void) { return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"; }

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_cache_ops: check failed at line %d: %s\n", __LINE__, #x);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static uint64_t clock_fn(void *u)
{
    (void)u;
    return now_ns;
}

static void on_remove(void *u, const void *key, size_t klen, const void *val, size_t vlen, int reason)
{
    (void)u;
    (void)val;
    (void)vlen;
    CHECK(klen <= MAXK && (klen == 0 || key != NULL));
    if (reason == PK_CACHE_EVICTED && nev < MAXM) {
        evicted[nev][0] = (unsigned char)klen;
        if (klen) memcpy(evicted[nev] + 1, key, klen);
        nev++;
    }
}

static size_t charge(size_t klen, size_t vlen) { return klen + vlen + PK_CACHE_ENTRY_OVERHEAD; }
static int expired(const ment *m) { return now_ns >= m->expire; }

static long mfind(const unsigned char *k, size_t kl)
{
    size_t i;
    for (i = 0; i < mn; i++)
        if (model[i].klen == kl && memcmp(model[i].key, k, kl) == 0) return (long)i;
    return -1;
}

static void mdel(size_t i)
{
    mbytes -= charge(model[i].klen, model[i].vlen);
    memmove(&model[i], &model[i + 1], (mn - i - 1) * sizeof *model);
    mn--;
}

/* An independent glob: recursive. */
static int mglob(const char *p, const unsigned char *k, size_t n)
{
    if (!*p) return n == 0;
    if (*p == '*') return mglob(p + 1, k, n) || (n > 0 && mglob(p, k + 1, n - 1));
    if (n == 0) return 0;
    if (*p == '?' || (unsigned char)*p == k[0]) return mglob(p + 1, k + 1, n - 1);
    return 0;
}

static const unsigned char ALPHA[] = {'a', 'b', 'c', '*', '?', 0};

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    pk_cache *c;
    pk_cache_config cfg;
    pk_cache_ref pins[4];
    ment pinned[4];
    size_t pos = 0, i;
    char snap[64];
    if (size < 2) return 0;
    memset(&cfg, 0, sizeof cfg);
    memset(pins, 0, sizeof pins);
    max_e = data[0] % 9;                                    /* 0..8, 0 = no entry bound */
    max_b = data[1] % 4 == 0 ? 0 : 70 + (size_t)data[1] * 2; /* 0 or a few entries' worth */
    if (!max_e && !max_b) max_e = 3;
    cfg.max_entries = max_e;
    cfg.max_bytes = max_b;
    cfg.shards = 1;
    cfg.policy = PK_CACHE_LRU;
    cfg.ttl_ns = data[0] & 0x80 ? 50 : 0;
    cfg.clock_ns = clock_fn;
    with_cb = !(data[0] & 0x40);
    cfg.on_remove = with_cb ? on_remove : NULL;
    mn = mbytes = 0;
    now_ns = 1000;
    failed = 0;
    if (pk_cache_create(&c, &cfg) != 0) return 0;
    snprintf(snap, sizeof snap, "%s/fuzz_cache_ops.%ld.snap", tmp_dir(), (long)getpid());
    pos = 2;
    while (pos + 3 <= size) {
        unsigned op = data[pos] % 12, a = data[pos + 1], b = data[pos + 2];
        unsigned char key[MAXK], val[MAXV], buf[MAXV];
        size_t kl = a % (MAXK + 1), vl = b % MAXV, n = 0;
        long at;
        int rc;
        pos += 3;
        for (i = 0; i < kl; i++) key[i] = ALPHA[(a >> (i + 1)) % 5];
        memset(val, b, vl);
        at = mfind(key, kl);
        nev = 0;
        switch (op) {
        case 0:
        case 1:
        case 2: { /* put (TTL from the op) */
            uint64_t ttl = op == 0 ? PK_CACHE_TTL_DEFAULT : op == 1 ? PK_CACHE_TTL_NEVER : (uint64_t)(b % 40) + 1;
            uint64_t eff = ttl == PK_CACHE_TTL_DEFAULT ? (cfg.ttl_ns ? cfg.ttl_ns : PK_CACHE_TTL_NEVER) : ttl;
            size_t ch = charge(kl, vl), ev = 0;
            rc = pk_cache_put(c, key, kl, val, vl, ttl);
            if (max_b && ch > max_b) {
                CHECK(rc == -E2BIG);
                CHECK(nev == 0);
                break;
            }
            CHECK(rc == 0);
            if (at >= 0) mdel((size_t)at);
            while (mn && ((max_e && mn + 1 > max_e) || (max_b && mbytes + ch > max_b))) {
                CHECK(!with_cb || (ev < nev && evicted[ev][0] == model[0].klen &&
                                   memcmp(evicted[ev] + 1, model[0].key, model[0].klen) == 0));
                ev++;
                mdel(0);
            }
            CHECK(!with_cb || ev == nev);
            memcpy(model[mn].key, key, kl);
            memcpy(model[mn].val, val, vl);
            model[mn].klen = kl;
            model[mn].vlen = vl;
            model[mn].expire = eff == PK_CACHE_TTL_NEVER ? PK_CACHE_TTL_NEVER : now_ns + eff;
            mbytes += ch;
            mn++;
            break;
        }
        case 3:
        case 4: { /* get */
            rc = pk_cache_get(c, kl ? key : NULL, kl, buf, b % (MAXV + 1), &n);
            if (at >= 0 && expired(&model[at])) {
                mdel((size_t)at);
                at = -1;
            }
            CHECK(rc == (at >= 0 ? 0 : -ENOENT));
            if (at >= 0) {
                ment m = model[at];
                CHECK(n == m.vlen);
                CHECK(memcmp(buf, m.val, (b % (MAXV + 1)) < n ? (b % (MAXV + 1)) : n) == 0);
                memmove(&model[at], &model[at + 1], (mn - (size_t)at - 1) * sizeof *model);
                model[mn - 1] = m;
            }
            break;
        }
        case 5: /* remove */
            rc = pk_cache_remove(c, key, kl);
            if (at >= 0) {
                int was_live = !expired(&model[at]);
                mdel((size_t)at);
                CHECK(rc == (was_live ? 0 : -ENOENT));
            } else {
                CHECK(rc == -ENOENT);
            }
            break;
        case 6:
        case 7: { /* remove_prefix / remove_match */
            char glob[8];
            size_t removed, expect = 0, gl = b % 6;
            for (i = 0; i < gl; i++) glob[i] = (char)ALPHA[(b + i * 7 + a) % 5];
            glob[gl] = 0;
            removed = op == 6 ? pk_cache_remove_prefix(c, key, kl) : pk_cache_remove_match(c, glob);
            for (i = mn; i-- > 0;) {
                int pick = op == 6 ? (model[i].klen >= kl && memcmp(model[i].key, key, kl) == 0)
                                   : mglob(glob, model[i].key, model[i].klen);
                if (!pick) continue;
                if (!expired(&model[i])) expect++;
                mdel(i);
            }
            CHECK(removed == expect);
            break;
        }
        case 8: { /* purge, then time passes */
            size_t expect = 0;
            for (i = mn; i-- > 0;)
                if (expired(&model[i])) {
                    mdel(i);
                    expect++;
                }
            CHECK(pk_cache_purge_expired(c) == expect);
            now_ns += b % 30;
            break;
        }
        case 9: /* pin, release later; the pinned bytes stay as they were */
            if (pins[a % 4].pin_) {
                CHECK(pins[a % 4].len == pinned[a % 4].vlen &&
                      memcmp(pins[a % 4].value, pinned[a % 4].val, pinned[a % 4].vlen) == 0);
                pk_cache_release(c, &pins[a % 4]);
            } else {
                rc = pk_cache_acquire(c, key, kl, &pins[a % 4]);
                if (at >= 0 && expired(&model[at])) {
                    mdel((size_t)at);
                    at = -1;
                }
                CHECK(rc == (at >= 0 ? 0 : -ENOENT));
                if (at >= 0) {
                    ment m = model[at];
                    pinned[a % 4] = m;
                    memmove(&model[at], &model[at + 1], (mn - (size_t)at - 1) * sizeof *model);
                    model[mn - 1] = m;
                }
            }
            break;
        case 10: /* clear (rarely) or time passes */
            if (b < 16) {
                pk_cache_clear(c);
                mn = mbytes = 0;
            } else {
                now_ns += b % 16;
            }
            break;
        default: /* snapshot round trip into the same cache: same contents, same order */
            if (b < 32) {
                size_t live = 0;
                CHECK(pk_cache_save(c, snap) == 0);
                for (i = mn; i-- > 0;)
                    if (expired(&model[i])) mdel(i); /* not saved; the load drops nothing else */
                    else live++;
                pk_cache_purge_expired(c);
                CHECK(pk_cache_load(c, snap) == 0);
                (void)live;
            }
            break;
        }
        {
            pk_cache_stats st;
            pk_cache_stats_get(c, &st);
            CHECK(st.entries == mn);
            CHECK(st.bytes == mbytes);
            CHECK(st.entries == st.inserts - st.evictions - st.expirations - st.removals);
            CHECK(!max_e || st.entries <= max_e);
            CHECK(!max_b || st.bytes <= max_b);
        }
    }
    /* final contents agree */
    for (i = 0; i < mn; i++) {
        unsigned char buf[MAXV];
        size_t n = 0;
        int rc = pk_cache_get(c, model[i].klen ? model[i].key : NULL, model[i].klen, buf, sizeof buf, &n);
        if (expired(&model[i])) {
            CHECK(rc == -ENOENT);
        } else {
            CHECK(rc == 0 && n == model[i].vlen && memcmp(buf, model[i].val, n) == 0);
        }
    }
    for (i = 0; i < 4; i++) pk_cache_release(c, &pins[i]);
    pk_cache_destroy(c);
    unlink(snap);
    return 0;
}
