/* test_exec_limits.c — pk_exec.h built with a small PK_EXEC_MAX_THREADS, standing in for a machine
   with more CPUs than the limit: the default thread count (online CPUs) is capped at the limit,
   not refused, while an explicit config.threads above it is still -EINVAL. */
#include "pk_test.h"

#define PK_EXEC_MAX_THREADS 1
#define PK_EXEC_IMPLEMENTATION
#include "../pk_exec.h"

static int twice(void *ctx, size_t i)
{
    ((int *)ctx)[i] *= 2;
    return 0;
}

static void test_default_threads_capped(void)
{
    pk_exec *e = NULL;
    pk_exec_config cfg;
    pk_exec_stats st;
    int v[100], i;
    PK_CHECK_EQ(pk_exec_create(&e, NULL), 0); /* NULL config: online CPUs (2 here), capped at 1 */
    PK_CHECK(e != NULL);
    if (!e) return;
    pk_exec_stats_get(e, &st);
    PK_CHECK_EQ(st.threads, 1);
    for (i = 0; i < 100; i++) v[i] = i;
    PK_CHECK_EQ(pk_exec_map(e, 100, twice, v, NULL), 0);
    for (i = 0; i < 100; i++) PK_CHECK_EQ(v[i], 2 * i);
    pk_exec_destroy(e);

    memset(&cfg, 0, sizeof cfg); /* all-zero config: the same */
    e = NULL;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    if (e) {
        pk_exec_stats_get(e, &st);
        PK_CHECK_EQ(st.threads, 1);
        pk_exec_destroy(e);
    }

    cfg.threads = 2; /* asked for explicitly: refused, nothing made */
    e = NULL;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), -EINVAL);
    PK_CHECK(e == NULL);
    cfg.threads = 1;
    PK_CHECK_EQ(pk_exec_create(&e, &cfg), 0);
    if (e) pk_exec_destroy(e);
}

int main(void)
{
    pk_test_main_begin("test_exec_limits");
    PK_TEST(test_default_threads_capped);
    return pk_test_main_end();
}
