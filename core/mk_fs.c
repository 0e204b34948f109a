#define _POSIX_C_SOURCE 200809L
#include "mk_fs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

mk_status mk_fs_tmp_path(mk_ctx *ctx, const char *path, char *buf, size_t n)
{
    int k = snprintf(buf, n, "%s.tmp.%ld", path, (long)getpid());
    if (k < 0 || (size_t)k >= n)
        return mk_err(ctx, MK_ERR_INVALID, "%s: path too long", path);
    return MK_OK;
}

mk_status mk_fs_commit(mk_ctx *ctx, const char *tmp, const char *path)
{
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return mk_err(ctx, MK_ERR_IO, "%s: cannot move finished file into place: %s", path,
                      strerror(e));
    }
    return MK_OK;
}

mk_status mk_fs_write_atomic_printed(mk_ctx *ctx, const char *path,
                                     void (*print)(FILE *out, const void *arg), const void *arg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    print(f, arg);
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    mk_status st = bad ? mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory while formatting", path)
                       : mk_fs_write_atomic(ctx, path, buf, len);
    free(buf);
    return st;
}

mk_status mk_fs_write_atomic(mk_ctx *ctx, const char *path, const void *data, size_t len)
{
    char tmp[4352];
    mk_status st = mk_fs_tmp_path(ctx, path, tmp, sizeof tmp);
    if (st != MK_OK)
        return st;
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    int ok = fwrite(data, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (!ok) {
        mk_fs_discard(tmp);
        return mk_err(ctx, MK_ERR_IO, "%s: write failed (disk full?)", path);
    }
    return mk_fs_commit(ctx, tmp, path);
}

void mk_fs_discard(const char *tmp)
{
    if (tmp && *tmp)
        unlink(tmp);
}

int mk_fs_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int mk_fs_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

mk_status mk_fs_mkdirs(mk_ctx *ctx, const char *dir)
{
    char buf[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof buf)
        return mk_err(ctx, MK_ERR_INVALID, "bad directory path '%s'", dir);
    memcpy(buf, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return mk_err(ctx, MK_ERR_IO, "%s: cannot create directory: %s", buf,
                              strerror(errno));
            if (!mk_fs_is_dir(buf))
                return mk_err(ctx, MK_ERR_IO, "%s: exists and is not a directory", buf);
            buf[i] = c;
        }
    }
    return MK_OK;
}

mk_status mk_fs_read_all(mk_ctx *ctx, const char *path, char **out, size_t *len)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) {
            if (ferror(f)) {
                free(buf);
                fclose(f);
                return mk_err(ctx, MK_ERR_IO, "%s: read error", path);
            }
            break;
        }
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) {
            free(buf);
            fclose(f);
            return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return MK_OK;
}

mk_status mk_fs_join(mk_ctx *ctx, const char *dir, const char *rel, char *buf, size_t n)
{
    int k;
    if (rel[0] == '/' || !dir || !*dir || strcmp(dir, ".") == 0)
        k = snprintf(buf, n, "%s", rel);
    else
        k = snprintf(buf, n, "%s/%s", dir, rel);
    if (k < 0 || (size_t)k >= n)
        return mk_err(ctx, MK_ERR_INVALID, "path too long: %s/%s", dir, rel);
    return MK_OK;
}

void mk_fs_dirname(const char *path, char *buf, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(buf, n, ".");
    } else if (slash == path) {
        snprintf(buf, n, "/");
    } else {
        size_t k = (size_t)(slash - path);
        if (k >= n)
            k = n - 1;
        memcpy(buf, path, k);
        buf[k] = '\0';
    }
}

/* the escape of byte c into e (at most 7 bytes with the NUL); returns its length */
static int json_char(unsigned char c, char e[8])
{
    if (c == '"' || c == '\\')
        return snprintf(e, 8, "\\%c", c);
    if (c == '\n')
        return snprintf(e, 8, "\\n");
    if (c == '\t')
        return snprintf(e, 8, "\\t");
    if (c < 0x20)
        return snprintf(e, 8, "\\u%04x", c);
    e[0] = (char)c;
    e[1] = '\0';
    return 1;
}

void mk_json_put(FILE *f, const char *s)
{
    char e[8];
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        json_char(*p, e);
        fputs(e, f);
    }
    fputc('"', f);
}

void mk_json_escape(const char *s, char *buf, size_t n)
{
    size_t k = 0;
    char e[8];
    if (n == 0)
        return;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        size_t l = (size_t)json_char(*p, e);
        if (k + l + 1 > n)
            break;
        memcpy(buf + k, e, l);
        k += l;
    }
    buf[k] = '\0';
}

uint64_t mk_fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}
