/* Shared helpers of the io tests: scratch folders, python (nibabel/h5py) runners, byte patching.
 * Header-only (static functions) so each test executable stays self-contained. */
#ifndef TEST_IO_UTIL_H
#define TEST_IO_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define PY "/usr/bin/python3"

static char g_tmp[1024];

/* Fresh scratch folder (removed by tio_cleanup). */
static inline int tio_setup(void **state)
{
    (void)state;
    const char *b = getenv("MK_BUILD_DIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/io_test_XXXXXX", b && *b ? b : "/tmp");
    if (!mkdtemp(g_tmp)) {
        snprintf(g_tmp, sizeof g_tmp, "/tmp/io_test_XXXXXX");
        if (!mkdtemp(g_tmp))
            return -1;
    }
    return 0;
}

static inline int tio_cleanup(void **state)
{
    (void)state;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static inline const char *tio_path(char *buf, size_t n, const char *name)
{
    int r = snprintf(buf, n, "%s/%s", g_tmp, name);
    assert_true(r > 0 && (size_t)r < n);
    return buf;
}

static inline int tio_have_py(const char *modules)
{
    if (access(PY, X_OK) != 0)
        return 0;
    char cmd[512];
    snprintf(cmd, sizeof cmd, PY " -c 'import %s' >/dev/null 2>&1", modules);
    return system(cmd) == 0;
}

/* A declared test dependency (scripts/deps.list) that is missing fails the test, never skips it. */
static inline void tio_require_py(const char *modules)
{
    if (!tio_have_py(modules))
        fail_msg("python3 modules '%s' are missing: they are declared in scripts/deps.list; "
                 "install them with 'make deps' (as root)",
                 modules);
}

/* Run a python snippet with argv[1..] = args (space-separated, already quoted). 0 on success. */
static inline int tio_py(const char *code, const char *args)
{
    char sp[1100], cmd[4096];
    snprintf(sp, sizeof sp, "%s/snippet_%d.py", g_tmp, (int)getpid());
    FILE *f = fopen(sp, "w");
    if (!f)
        return -1;
    fputs(code, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, PY " '%s' %s", sp, args ? args : "");
    int rc = system(cmd);
    return rc;
}

static inline int tio_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Overwrite n bytes at off of a plain file. */
static inline void tio_patch(const char *path, long off, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

static inline void tio_truncate(const char *path, long size)
{
    assert_int_equal(truncate(path, size), 0);
}

/* First n bytes of a (possibly gzipped) file. Returns bytes read. */
static inline int tio_read_gz(const char *path, void *buf, unsigned n)
{
    gzFile g = gzopen(path, "rb");
    if (!g)
        return -1;
    int r = gzread(g, buf, n);
    gzclose(g);
    return r;
}

static inline int tio_count_files(const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -v '^snippet_' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

static inline const char *tio_shared(char *buf, size_t n, const char *rel)
{
    const char *s = getenv("MK_SHARED_DIR");
    snprintf(buf, n, "%s/%s", s && *s ? s : "/work/shared", rel);
    return buf;
}

#endif
