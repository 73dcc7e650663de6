/* scenario_memcached.c — a real memcached behind pk: the seeds' multi-level cache.
 *
 * The benchmark starts memcached (Debian `memcached`) on 127.0.0.1 on a free port, waits for it, and
 * stops it at the end; without memcached it prints a note and exits 0. Everything here is real: TCP
 * over loopback, memcached's text protocol.
 *
 * Part 1 (pk_respool): GET requests over connections held in a pk_respool (validated when idle,
 *   retired after a lifetime) against opening a new connection per request — what code without a pool
 *   does. p50/p99 and throughput from pk_prof, two client threads.
 * Part 2 (pk_cache as L1): a Zipf(0.99) read mix over 20,000 keys, with pk_cache (2,000 entries,
 *   S3-FIFO) in front of memcached as the in-process tier, against memcached alone. L1 hit latency,
 *   memcached round trip, end-to-end p50/p99. Seeds' claim: L1 access < 0.1 ms.
 * memcached is the shared tier when a service outgrows one machine; pk is the local tier in front.
 */
#define PK_CACHE_IMPLEMENTATION
#define PK_POOL_IMPLEMENTATION
#define PK_PROF_IMPLEMENTATION
#include "pk_cache.h"
#include "pk_pool.h"
#include "pk_prof.h"

#include "bench_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define NKEYS 20000
#define VALUE_BYTES 200

static int g_port;
static pid_t g_server = -1;

static void stop_server(void)
{
    if (g_server > 0) {
        kill(g_server, SIGTERM);
        waitpid(g_server, NULL, 0);
        g_server = -1;
    }
}

static int connect_port(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0) return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static int start_server(void)
{
    char port[16];
    int i, fd;
    if (system("command -v memcached >/dev/null 2>&1") != 0) return -1;
    g_port = free_port();
    if (g_port <= 0) return -1;
    snprintf(port, sizeof port, "%d", g_port);
    g_server = fork();
    if (g_server == 0) {
        execlp("memcached", "memcached", "-l", "127.0.0.1", "-p", port, "-U", "0", "-m", "128", "-t", "2", "-c", "4096",
               "-u", "root", (char *)NULL);
        _exit(127);
    }
    if (g_server < 0) return -1;
    atexit(stop_server);
    for (i = 0; i < 500; i++) { /* up to 5 s */
        fd = connect_port(g_port);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        usleep(10000);
    }
    return -1;
}

/* ---- a connection and memcached's text protocol ---- */

typedef struct conn { int fd; char buf[4096]; } conn;

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until the buffer ends with `end` (e.g. "END\r\n"); returns bytes read or -1. */
static int read_until(conn *c, const char *end)
{
    size_t n = 0, el = strlen(end);
    while (n < sizeof c->buf - 1) {
        ssize_t r = read(c->fd, c->buf + n, sizeof c->buf - 1 - n);
        if (r <= 0) return -1;
        n += (size_t)r;
        if (n >= el && memcmp(c->buf + n - el, end, el) == 0) break;
    }
    c->buf[n] = 0;
    return (int)n;
}

static int mc_set(conn *c, const char *key, const char *val, size_t vlen)
{
    char hdr[128];
    int h = snprintf(hdr, sizeof hdr, "set %s 0 0 %zu\r\n", key, vlen);
    if (write_all(c->fd, hdr, (size_t)h) || write_all(c->fd, val, vlen) || write_all(c->fd, "\r\n", 2)) return -EIO;
    return read_until(c, "\r\n") > 0 && strncmp(c->buf, "STORED", 6) == 0 ? 0 : -EIO;
}

/* GET: copies the value into out; returns its length, -ENOENT on a miss, -EIO on a broken link. */
static int mc_get(conn *c, const char *key, char *out, size_t cap)
{
    char req[128];
    int q = snprintf(req, sizeof req, "get %s\r\n", key), n;
    char *nl;
    size_t vlen;
    if (write_all(c->fd, req, (size_t)q)) return -EIO;
    n = read_until(c, "END\r\n");
    if (n < 0) return -EIO;
    if (strncmp(c->buf, "END", 3) == 0) return -ENOENT;
    nl = strstr(c->buf, "\r\n");
    if (strncmp(c->buf, "VALUE ", 6) != 0 || !nl) return -EIO;
    {
        /* VALUE <key> <flags> <bytes>: the last number before the CRLF */
        char *p = nl;
        while (p > c->buf && p[-1] != ' ') p--;
        vlen = (size_t)strtoul(p, NULL, 10);
    }
    if (vlen > cap) vlen = cap;
    memcpy(out, nl + 2, vlen);
    return (int)vlen;
}

static int conn_create(void **res, void *user)
{
    conn *c = (conn *)malloc(sizeof *c);
    (void)user;
    if (!c) return -ENOMEM;
    c->fd = connect_port(g_port);
    if (c->fd < 0) {
        free(c);
        return -ECONNREFUSED;
    }
    *res = c;
    return 0;
}

/* An idle connection the server closed shows as readable (EOF) or in error: not healthy. */
static int conn_validate(void *res, void *user)
{
    struct pollfd p;
    (void)user;
    p.fd = ((conn *)res)->fd;
    p.events = POLLIN;
    p.revents = 0;
    return poll(&p, 1, 0) == 0 ? 0 : -EIO;
}

static void conn_destroy(void *res, void *user)
{
    (void)user;
    close(((conn *)res)->fd);
    free(res);
}

static void key_of(long k, char *out) { snprintf(out, 32, "user:%06ld:profile", k); }

/* ---- part 1: pooled connections against a connection per request ---- */

typedef struct client {
    pk_respool *pool; /* NULL: connect per request */
    pk_prof *prof;
    int label;
    long n, errors;
    uint64_t seed;
} client;

static void *client_run(void *arg)
{
    client *cl = (client *)arg;
    char key[32], val[VALUE_BYTES + 8];
    long i;
    for (i = 0; i < cl->n; i++) {
        uint64_t t0 = pk_prof_now();
        conn *c = NULL;
        void *r;
        int rc;
        key_of((long)(bench_rand_next(&cl->seed) % NKEYS), key);
        if (cl->pool) {
            if (pk_respool_acquire(cl->pool, &r, 1000000000ull) != 0) { cl->errors++; continue; }
            c = (conn *)r;
        } else if (conn_create(&r, NULL) == 0) {
            c = (conn *)r;
        } else {
            cl->errors++;
            continue;
        }
        rc = mc_get(c, key, val, sizeof val);
        if (rc < 0) cl->errors++;
        if (cl->pool) {
            if (rc == -EIO) pk_respool_invalidate(cl->pool, c);
            else pk_respool_release(cl->pool, c);
        } else {
            conn_destroy(c, NULL);
        }
        pk_prof_record(cl->prof, cl->label, pk_prof_now() - t0);
    }
    return NULL;
}

static double run_clients(pk_respool *pool, pk_prof *prof, int label, long per_thread, long *errors)
{
    pthread_t th[2];
    client cl[2];
    uint64_t t0 = bench_now_ns();
    int i;
    for (i = 0; i < 2; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        cl[i].pool = pool;
        cl[i].prof = prof;
        cl[i].label = label;
        cl[i].n = per_thread;
        cl[i].seed = (uint64_t)(i + 1) * 977;
        pthread_create(&th[i], NULL, client_run, &cl[i]);
    }
    for (i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        *errors += cl[i].errors;
    }
    return (double)(bench_now_ns() - t0) / 1e9;
}

int main(void)
{
    pk_prof *prof;
    pk_respool *pool;
    pk_respool_config rc;
    conn *setup;
    void *r;
    char key[32], val[VALUE_BYTES + 8];
    long k, per_thread = (long)bench_scale(20000, 5), errors = 0;
    int l_pooled, l_fresh, l_l1hit, l_mc, l_e2e_l1, l_e2e_mc;
    pk_prof_stats sp, sf, s1, smc, se1, semc;
    double secs_pooled, secs_fresh;

    if (start_server() != 0) {
        bench_note("memcached", "memcached not installed or did not start: apt-get install memcached (scenario skipped)");
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (pk_prof_create(&prof, NULL) != 0) return 1;
    memset(&rc, 0, sizeof rc);
    rc.min = 2;
    rc.max = 8;
    rc.validate_idle_ns = 1000000000ull; /* check connections idle for a second or more */
    rc.max_lifetime_ns = 600ull * 1000000000u;
    rc.create = conn_create;
    rc.validate = conn_validate;
    rc.destroy = conn_destroy;
    if (pk_respool_create(&pool, &rc) != 0) return 1;

    /* fill memcached */
    if (pk_respool_acquire(pool, &r, PK_FOREVER) != 0) return 1;
    setup = (conn *)r;
    memset(val, 'v', VALUE_BYTES);
    for (k = 0; k < NKEYS; k++) {
        key_of(k, key);
        snprintf(val, 16, "%06ld", k);
        val[6] = 'v';
        if (mc_set(setup, key, val, VALUE_BYTES) != 0) { fprintf(stderr, "memcached set failed\n"); return 1; }
    }
    pk_respool_release(pool, setup);

    /* part 1 */
    l_pooled = pk_prof_label(prof, "GET, pooled connection (pk_respool)");
    l_fresh = pk_prof_label(prof, "GET, new connection per request");
    secs_fresh = run_clients(NULL, prof, l_fresh, per_thread / 4, &errors);
    secs_pooled = run_clients(pool, prof, l_pooled, per_thread, &errors);
    pk_prof_stats_get(prof, l_pooled, &sp);
    pk_prof_stats_get(prof, l_fresh, &sf);
    bench_pct("memcached", "GET over pk_respool connection", (double)sp.p50 / 1e3, (double)sp.p90 / 1e3,
              (double)sp.p99 / 1e3, (double)sp.p999 / 1e3, "us");
    bench_pct("memcached", "GET with a new connection each", (double)sf.p50 / 1e3, (double)sf.p90 / 1e3,
              (double)sf.p99 / 1e3, (double)sf.p999 / 1e3, "us");
    bench_result("memcached", "GET p50: pk_respool vs connect per request", (double)sp.p50 / 1e3, "connect per request",
                 (double)sf.p50 / 1e3, "us", "<= 0.5");
    bench_result("memcached", "GET p99: pk_respool vs connect per request", (double)sp.p99 / 1e3, "connect per request",
                 (double)sf.p99 / 1e3, "us", "-");
    bench_result("memcached", "GET throughput, 2 threads: pk_respool vs connect", 2.0 * (double)per_thread / secs_pooled,
                 "connect per request", 2.0 * (double)(per_thread / 4) / secs_fresh, "req/s", ">= 2");

    /* part 2: pk_cache as L1 in front of memcached */
    {
        pk_cache *l1;
        pk_cache_config cc;
        double *cdf = (double *)malloc(sizeof(double) * NKEYS), tot = 0;
        long i, n = (long)bench_scale(100000, 5), hits = 0;
        uint64_t rng = 99;
        memset(&cc, 0, sizeof cc);
        cc.max_entries = NKEYS / 10;
        cc.policy = PK_CACHE_S3FIFO;
        cc.ttl_ns = 60ull * 1000000000u;
        if (!cdf || pk_cache_create(&l1, &cc) != 0) return 1;
        for (k = 0; k < NKEYS; k++) tot += 1.0 / pow((double)(k + 1), 0.99);
        for (k = 0; k < NKEYS; k++) cdf[k] = (k ? cdf[k - 1] : 0) + 1.0 / pow((double)(k + 1), 0.99) / tot;
        l_l1hit = pk_prof_label(prof, "L1 hit (pk_cache_get)");
        l_mc = pk_prof_label(prof, "memcached round trip");
        l_e2e_l1 = pk_prof_label(prof, "end to end, with L1");
        l_e2e_mc = pk_prof_label(prof, "end to end, memcached only");
        for (i = 0; i < 2 * n; i++) {
            int with_l1 = (int)(i & 1); /* interleaved: the same mix with and without L1 */
            double u = (double)(bench_rand_next(&rng) >> 11) / 9007199254740992.0;
            long lo = 0, hi = NKEYS - 1;
            size_t vlen;
            uint64_t t0 = pk_prof_now(), t1;
            while (lo < hi) {
                long mid = (lo + hi) / 2;
                if (cdf[mid] < u) lo = mid + 1;
                else hi = mid;
            }
            key_of(lo, key);
            if (with_l1 && pk_cache_get(l1, key, strlen(key), val, sizeof val, &vlen) == 0) {
                t1 = pk_prof_now();
                pk_prof_record(prof, l_l1hit, t1 - t0);
                pk_prof_record(prof, l_e2e_l1, t1 - t0);
                hits++;
                continue;
            }
            if (pk_respool_acquire(pool, &r, 1000000000ull) != 0) { errors++; continue; }
            t1 = pk_prof_now();
            if (mc_get((conn *)r, key, val, sizeof val) < 0) errors++;
            pk_respool_release(pool, r);
            pk_prof_record(prof, l_mc, pk_prof_now() - t1);
            if (with_l1) pk_cache_put(l1, key, strlen(key), val, VALUE_BYTES, PK_CACHE_TTL_DEFAULT);
            pk_prof_record(prof, with_l1 ? l_e2e_l1 : l_e2e_mc, pk_prof_now() - t0);
        }
        pk_prof_stats_get(prof, l_l1hit, &s1);
        pk_prof_stats_get(prof, l_mc, &smc);
        pk_prof_stats_get(prof, l_e2e_l1, &se1);
        pk_prof_stats_get(prof, l_e2e_mc, &semc);
        bench_pct("memcached", "L1 hit (pk_cache)", (double)s1.p50 / 1e3, (double)s1.p90 / 1e3, (double)s1.p99 / 1e3,
                  (double)s1.p999 / 1e3, "us");
        bench_pct("memcached", "memcached round trip", (double)smc.p50 / 1e3, (double)smc.p90 / 1e3,
                  (double)smc.p99 / 1e3, (double)smc.p999 / 1e3, "us");
        bench_pct("memcached", "end to end, L1 + memcached", (double)se1.p50 / 1e3, (double)se1.p90 / 1e3,
                  (double)se1.p99 / 1e3, (double)se1.p999 / 1e3, "us");
        bench_pct("memcached", "end to end, memcached only", (double)semc.p50 / 1e3, (double)semc.p90 / 1e3,
                  (double)semc.p99 / 1e3, (double)semc.p999 / 1e3, "us");
        printf("memcached L1 hit rate %.1f%% on Zipf(0.99) over %d keys, L1 = %d entries\n", 100.0 * (double)hits / (double)n,
               NKEYS, NKEYS / 10);
        bench_result("memcached", "end-to-end p50: pk_cache L1 + memcached vs memcached", (double)se1.p50 / 1e3,
                     "memcached only", (double)semc.p50 / 1e3, "us", "<= 0.5");
        bench_result("memcached", "end-to-end p99: pk_cache L1 + memcached vs memcached", (double)se1.p99 / 1e3,
                     "memcached only", (double)semc.p99 / 1e3, "us", "-");
        bench_claim("memcached", "L1 access < 0.1 ms (p99 of an L1 hit, ms)", 0.1, (double)s1.p99 / 1e6, "ms");
        free(cdf);
        pk_cache_destroy(l1);
    }
    if (errors) printf("memcached %ld request errors\n", errors);
    pk_respool_destroy(pool);
    pk_prof_destroy(prof);
    stop_server();
    return errors ? 1 : 0;
}
