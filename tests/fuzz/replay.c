/* replay.c — runs a libFuzzer target without libFuzzer: feeds it every file named on the command
   line (directories are walked one level). `make test` uses it to replay each target's seed corpus
   and tests/fuzz/crashes/<target>/, so every crash ever found stays a regression test. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static long replayed;

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (unsigned char *)malloc(n > 0 ? (size_t)n : 1);
    if (!buf || (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    replayed++;
    return 0;
}

int main(int argc, char **argv)
{
    int i;
    for (i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;
            char path[4096];
            if (!d) continue;
            while ((e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.') continue;
                snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
                if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) replay_file(path);
            }
            closedir(d);
        } else {
            replay_file(argv[i]);
        }
    }
    /* Also a few synthetic inputs, so a target with no corpus still runs. */
    {
        unsigned char z[64];
        memset(z, 0, sizeof z);
        LLVMFuzzerTestOneInput(z, 0);
        LLVMFuzzerTestOneInput(z, sizeof z);
        memset(z, 0xff, sizeof z);
        LLVMFuzzerTestOneInput(z, sizeof z);
        replayed += 3;
    }
    printf("%ld inputs replayed, no crash\n", replayed);
    return 0;
}
