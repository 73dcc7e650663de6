/* test_pool_variants.c — pk_pool.h built with compile-time options the main test does not use:
   PK_POOL_CACHE 1 (a per-thread cache below the minimum of 4: none at all) with objects big enough
   that the byte cap alone would have asked for 4 (create used to raise it to 4 while the batch
   arrays were sized for 1: a stack overflow that ASan catches), and PK_POOL_STRICT_RELEASE (two
   threads releasing the same object: exactly one succeeds). */
#include "pk_test.h"

#define PK_POOL_CACHE 1
#define PK_POOL_STRICT_RELEASE
#define PK_POOL_CHUNK_BYTES (4 << 20)
#define PK_POOL_IMPLEMENTATION
#include "../pk_pool.h"

#include <pthread.h>

static void test_cache_1_big_objects(void)
{
    pk_pool *p = NULL;
    pk_pool_config c;
    pk_pool_stats st;
    void *o[6];
    int i, round;
    memset(&c, 0, sizeof c);
    c.size = 512 * 1024; /* 8 to a 4 MiB chunk */
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    if (!p) return;
    for (round = 0; round < 3; round++) {
        for (i = 0; i < 6; i++) {
            o[i] = pk_pool_acquire(p);
            PK_CHECK(o[i] != NULL);
            if (o[i]) memset(o[i], i, 64);
        }
        for (i = 0; i < 6; i++) PK_CHECK(i == 0 || o[i] != o[i - 1]);
        for (i = 0; i < 6; i++) PK_CHECK_EQ(pk_pool_release(p, o[i]), 0);
        for (i = 0; i < 6; i++) PK_CHECK_EQ(pk_pool_release(p, o[i]), -EINVAL); /* double */
    }
    pk_pool_stats_get(p, &st);
    PK_CHECK_EQ(st.in_use, 0);
    pk_pool_destroy(p);
}

typedef struct race_arg {
    pk_pool *p;
    void **objs;
    int n, won;
    pthread_barrier_t *bar;
} race_arg;
static void *race_release(void *v)
{
    race_arg *a = (race_arg *)v;
    int i;
    pthread_barrier_wait(a->bar);
    for (i = 0; i < a->n; i++) a->won += pk_pool_release(a->p, a->objs[i]) == 0;
    return NULL;
}
static void test_strict_double_release_race(void)
{
    pk_pool *p = NULL;
    pk_pool_config c;
    void *objs[256];
    race_arg a[2];
    pthread_t t[2];
    pthread_barrier_t bar;
    int round, i, rounds = (int)pk_test_scale(200);
    memset(&c, 0, sizeof c);
    c.size = 64;
    PK_CHECK_EQ(pk_pool_create(&p, &c), 0);
    if (!p) return;
    for (round = 0; round < rounds; round++) {
        for (i = 0; i < 256; i++) objs[i] = pk_pool_acquire(p);
        pthread_barrier_init(&bar, NULL, 2);
        for (i = 0; i < 2; i++) {
            a[i].p = p;
            a[i].objs = objs;
            a[i].n = 256;
            a[i].won = 0;
            a[i].bar = &bar;
            pthread_create(&t[i], NULL, race_release, &a[i]);
        }
        for (i = 0; i < 2; i++) pthread_join(t[i], NULL);
        pthread_barrier_destroy(&bar);
        PK_CHECK_EQ(a[0].won + a[1].won, 256); /* each object: exactly one release succeeded */
    }
    pk_pool_destroy(p);
}

int main(void)
{
    pk_test_main_begin("test_pool_variants");
    PK_TEST(test_cache_1_big_objects);
    PK_TEST(test_strict_double_release_race);
    return pk_test_main_end();
}
