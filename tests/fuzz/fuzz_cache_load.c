/* fuzz_cache_load.c — the snapshot loader fed arbitrary bytes. The input is written to a file and
   loaded into a cache that already holds a few entries. On an error the cache must be exactly as
   it was; on success it must be a valid cache (bounds held, counters add up, old keys either kept
   or replaced). When the first byte is odd the harness patches a correct checksum into the input
   first, so the fuzzer also reaches the parser behind the checksum. */
#define PK_CACHE_IMPLEMENTATION
#include "pk_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* tmpfs when there is one: snapshots fsync, which is slow on a disk */
static const char *tmp_dir(void) { return access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"; }

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            fprintf(stderr, "fuzz_cache_load: check failed at line %d: %s\n", __LINE__, #x);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char path[64];
static unsigned char *copy;
static size_t copy_cap;

static uint64_t clock_fn(void *u)
{
    (void)u;
    return 1000000;
}

static void cleanup(void) { unlink(path); }

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const char *keys[] = {"alpha", "beta", "gamma", "delta"};
    pk_cache *c;
    pk_cache_config cfg;
    pk_cache_stats s0, s1;
    FILE *f;
    int rc, i;
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/fuzz_cache_load.%ld.snap", tmp_dir(), (long)getpid());
        atexit(cleanup);
    }
    if (size > copy_cap) {
        free(copy);
        copy = (unsigned char *)malloc(size);
        copy_cap = size;
    }
    if (size) memcpy(copy, data, size);
    if (size >= 48 && (data[0] & 1)) /* make the checksum right so the parser is reached */
        pk_cache__put64(copy + size - 16, pk_cache__sum(0x736e617073686f74ull, copy, size - 16, 1));
    f = fopen(path, "wb");
    if (!f) return 0;
    if (size) fwrite(copy, 1, size, f);
    fclose(f);

    memset(&cfg, 0, sizeof cfg);
    cfg.max_entries = 16;
    cfg.max_bytes = 4096;
    cfg.shards = size % 2 ? 1 : 2;
    cfg.policy = size % 3 == 0 ? PK_CACHE_S3FIFO : PK_CACHE_LRU;
    cfg.clock_ns = clock_fn;
    if (pk_cache_create(&c, &cfg) != 0) return 0;
    for (i = 0; i < 4; i++) CHECK(pk_cache_put(c, keys[i], strlen(keys[i]), keys[i], strlen(keys[i]), 0) == 0);
    pk_cache_stats_get(c, &s0);
    rc = pk_cache_load(c, path);
    pk_cache_stats_get(c, &s1);
    CHECK(rc == 0 || rc == -EIO || rc == -EINVAL || rc == -ENOMEM);
    CHECK(s1.entries == s1.inserts - s1.evictions - s1.expirations - s1.removals);
    CHECK(s1.entries <= 16 && s1.bytes <= 4096);
    if (rc != 0) { /* unchanged */
        CHECK(s1.entries == s0.entries && s1.bytes == s0.bytes && s1.inserts == s0.inserts &&
              s1.updates == s0.updates && s1.evictions == s0.evictions);
        for (i = 0; i < 4; i++) {
            char buf[16];
            size_t n = 0;
            CHECK(pk_cache_get(c, keys[i], strlen(keys[i]), buf, sizeof buf, &n) == 0);
            CHECK(n == strlen(keys[i]) && memcmp(buf, keys[i], n) == 0);
        }
    } else { /* every entry readable; a saved copy loads back the same */
        pk_cache *d;
        pk_cache_stats sd;
        CHECK(pk_cache_save(c, path) == 0);
        CHECK(pk_cache_create(&d, &cfg) == 0);
        CHECK(pk_cache_load(d, path) == 0);
        pk_cache_stats_get(d, &sd);
        CHECK(sd.entries <= s1.entries);
        pk_cache_destroy(d);
    }
    pk_cache_destroy(c);
    return 0;
}
