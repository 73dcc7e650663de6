/* test_cache_crash.c — snapshots survive SIGKILL: a child process saves a large cache over and
   over (each save a new generation of every value) while the parent kills it at a random moment.
   After every kill the snapshot file must load completely: every entry present, all of one
   generation, never older than the last one seen, and never a partial file. Runs in a mkdtemp
   directory under /tmp that is removed at the end. */
#include "pk_test.h"
#define PK_CACHE_IMPLEMENTATION
#include "pk_cache.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#define N_ENTRIES 20000
#define VAL_LEN 200

static char dir[64], path[128];

static pk_cache *make_cache(void)
{
    pk_cache_config cfg;
    pk_cache *c = NULL;
    memset(&cfg, 0, sizeof cfg);
    cfg.max_entries = N_ENTRIES;
    cfg.shards = 1; /* the whole bound in one shard: N keys always fit */
    if (pk_cache_create(&c, &cfg) != 0) abort();
    return c;
}

/* Every value of generation g: "g=<g>;i=<i>;" padded with a byte derived from both. */
static void fill(pk_cache *c, long g)
{
    char k[32], v[VAL_LEN];
    int i;
    for (i = 0; i < N_ENTRIES; i++) {
        int n = sprintf(k, "entry:%d", i);
        int m = sprintf(v, "g=%ld;i=%d;", g, i);
        memset(v + m, 'a' + (int)((g + i) % 26), VAL_LEN - (size_t)m);
        if (pk_cache_put(c, k, (size_t)n, v, VAL_LEN, PK_CACHE_TTL_NEVER) != 0) abort();
    }
}

static void child(long round)
{
    pk_cache *c = make_cache();
    long g;
    for (g = round * 1000 + 1;; g++) {
        fill(c, g);
        if (pk_cache_save(c, path) != 0) _exit(3);
    }
}

/* Loads the snapshot and checks it is one whole generation; returns the generation or -1. */
static long check_snapshot(void)
{
    pk_cache *c = make_cache();
    pk_cache_stats st;
    char k[32], v[VAL_LEN + 1];
    long g = -1;
    int i, rc = pk_cache_load(c, path);
    PK_CHECK_EQ(rc, 0);
    pk_cache_stats_get(c, &st);
    PK_CHECK_EQ(st.entries, N_ENTRIES);
    for (i = 0; i < N_ENTRIES && rc == 0; i++) {
        size_t n = 0;
        long gi = -2;
        int ii = -1, m;
        sprintf(k, "entry:%d", i);
        if (pk_cache_get(c, k, strlen(k), v, VAL_LEN, &n) != 0 || n != VAL_LEN) {
            PK_CHECK_MSG(0, "entry %d missing or short", i);
            break;
        }
        v[VAL_LEN] = 0;
        if (sscanf(v, "g=%ld;i=%d;", &gi, &ii) != 2 || ii != i || (g >= 0 && gi != g)) {
            PK_CHECK_MSG(0, "entry %d holds a mix of generations (%ld vs %ld)", i, gi, g);
            break;
        }
        g = gi;
        m = (int)(strchr(v, ';') - v);
        m = (int)(strchr(v + m + 1, ';') - v) + 1;
        if (v[VAL_LEN - 1] != 'a' + (int)((g + i) % 26) || v[m] != v[VAL_LEN - 1]) {
            PK_CHECK_MSG(0, "entry %d has damaged bytes", i);
            break;
        }
    }
    pk_cache_destroy(c);
    return g;
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[400];
    if (!d) return;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static long count_leftovers(void)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    long n = 0;
    if (!d) return 0;
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static void test_sigkill_during_save(void)
{
    long rounds = pk_test_scale(48), r, last = 0, newer = 0;
    uint64_t seed = (uint64_t)getpid() ^ pk_test_now_ns();
    uint64_t t_end = pk_test_now_ns() + 20000000000ull; /* never more than ~20 s */
    uint64_t t0 = pk_test_now_ns(), cycle;
    pk_cache *c = make_cache();
    fill(c, 0);
    PK_CHECK_EQ(pk_cache_save(c, path), 0);
    pk_cache_destroy(c);
    /* one fill + save, timed here, sets the kill window: sanitizers make it 5-20x slower */
    cycle = pk_test_now_ns() - t0;
    if (cycle < 10000000ull) cycle = 10000000ull;
    PK_CHECK_EQ(check_snapshot(), 0);
    for (r = 1; r <= rounds && pk_test_now_ns() < t_end; r++) {
        pid_t pid;
        int status;
        long g;
        fflush(stdout);
        pid = fork();
        if (pid < 0) {
            PK_CHECK_MSG(0, "fork failed");
            break;
        }
        if (pid == 0) child(r);
        /* kill at a random moment: sometimes while building, mostly in the middle of saves */
        pk_test_sleep_ns(cycle / 2 + pk_test_rand(&seed) % (4 * cycle));
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        PK_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL); /* it did not stop on its own */
        g = check_snapshot();
        PK_CHECK_MSG(g >= last, "round %ld: the snapshot went back from generation %ld to %ld", r, last, g);
        if (g > last) newer++;
        last = g;
    }
    printf("    %ld rounds; %ld left a newer snapshot; %ld killed mid-save (temporary files left)\n", r - 1, newer,
           count_leftovers());
    PK_CHECK(newer > 0); /* saves did complete between kills */
}

int main(void)
{
    pk_test_main_begin("test_cache_crash");
    strcpy(dir, "/tmp/pk_cache_crash.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    sprintf(path, "%s/cache.snap", dir);
    PK_TEST(test_sigkill_during_save);
    remove_dir();
    return pk_test_main_end();
}
