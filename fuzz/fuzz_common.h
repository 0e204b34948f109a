/* Shared by the fuzz targets (libFuzzer, `make fuzz`): the readers under test take paths, so each
 * input is written to a file of its own in one private folder per process (under $TMPDIR, else
 * /tmp), removed at exit. Messages of failed reads are dropped: the fuzzer looks for crashes,
 * sanitizer reports, leaks and over-large allocations, not for errors, which are the expected
 * answer to most inputs. */
#ifndef MK_FUZZ_COMMON_H
#define MK_FUZZ_COMMON_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mk_status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char mk_fuzz_root[512];

static inline void mk_fuzz_rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            mk_fuzz_rm_tree(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static inline void mk_fuzz_cleanup(void)
{
    if (*mk_fuzz_root)
        mk_fuzz_rm_tree(mk_fuzz_root);
}

/* The private folder, made on first use. */
static inline const char *mk_fuzz_dir(void)
{
    if (!*mk_fuzz_root) {
        const char *t = getenv("TMPDIR");
        snprintf(mk_fuzz_root, sizeof mk_fuzz_root, "%s/mk-fuzz.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(mk_fuzz_root))
            abort();
        atexit(mk_fuzz_cleanup);
    }
    return mk_fuzz_root;
}

/* Write `size` bytes to NAME in the private folder (replacing it); returns the path (static
 * storage, valid until the next call). */
static inline const char *mk_fuzz_write(const char *name, const uint8_t *data, size_t size)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", mk_fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    if (fclose(f) != 0)
        abort();
    return path;
}

static inline void mk_fuzz_ctx(mk_ctx *ctx)
{
    mk_ctx_init(ctx);
    ctx->log = NULL; /* warnings are dropped too */
}

#endif
