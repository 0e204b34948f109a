#define _POSIX_C_SOURCE 200809L
#include "mk_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- where the bytes of an output go (see the rule in mk_fs.h) ------------------------------ */

typedef enum out_kind {
    OUT_FILE,   /* absent or a regular file: temporary beside it, then rename */
    OUT_LINK,   /* a symlink to a regular file: the same on the file it resolves to */
    OUT_STREAM, /* a FIFO or a character device (or a symlink to one): opened and written */
    OUT_FD      /* "-", /dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N: descriptor N */
} out_kind;

typedef struct out_target {
    out_kind kind;
    int fd;              /* OUT_FD */
    char real[PATH_MAX]; /* OUT_LINK: the resolved regular file */
} out_target;

/* The descriptor a name stands for, or -1. */
static int fd_of_name(const char *path)
{
    if (strcmp(path, "-") == 0 || strcmp(path, "/dev/stdout") == 0)
        return 1;
    if (strcmp(path, "/dev/stderr") == 0)
        return 2;
    const char *num = strncmp(path, "/dev/fd/", 8) == 0          ? path + 8
                      : strncmp(path, "/proc/self/fd/", 14) == 0 ? path + 14
                                                                 : NULL;
    if (!num || !*num || strlen(num) > 9 || strspn(num, "0123456789") != strlen(num))
        return -1;
    return atoi(num);
}

int mk_fs_is_stdout(const char *path)
{
    return path && fd_of_name(path) == 1;
}

static const char *mode_name(mode_t m)
{
    return S_ISDIR(m)    ? "a directory"
           : S_ISBLK(m)  ? "a block device"
           : S_ISSOCK(m) ? "a socket"
           : S_ISLNK(m)  ? "a symlink"
           : S_ISFIFO(m) ? "a FIFO"
           : S_ISCHR(m)  ? "a character device"
                         : "a special file";
}

static mk_status refuse(mk_ctx *ctx, const char *path, const char *what, const char *detail)
{
    return mk_err(ctx, MK_ERR_IO,
                  "%s: not a regular file (%s%s%s): refusing to replace it; an output may be a "
                  "regular file, a symlink to one, a FIFO, a character device or '-' (standard "
                  "output)",
                  path, what, detail ? ": " : "", detail ? detail : "");
}

static mk_status out_target_of(mk_ctx *ctx, const char *path, out_target *t)
{
    t->kind = OUT_FILE;
    t->fd = -1;
    t->real[0] = '\0';
    int fd = fd_of_name(path);
    if (fd >= 0) {
        if (fcntl(fd, F_GETFL) == -1)
            return mk_err(ctx, MK_ERR_IO, "%s: cannot write: descriptor %d is not open", path, fd);
        t->kind = OUT_FD;
        t->fd = fd;
        return MK_OK;
    }
    struct stat ls;
    if (lstat(path, &ls) != 0 || S_ISREG(ls.st_mode))
        return MK_OK; /* absent, or not even stat-able: creating the temporary says why */
    if (S_ISFIFO(ls.st_mode) || S_ISCHR(ls.st_mode)) {
        t->kind = OUT_STREAM;
        return MK_OK;
    }
    if (!S_ISLNK(ls.st_mode))
        return refuse(ctx, path, mode_name(ls.st_mode), NULL);
    struct stat st;
    if (stat(path, &st) != 0)
        return refuse(ctx, path, "a symlink that resolves to nothing", strerror(errno));
    if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
        t->kind = OUT_STREAM;
        return MK_OK;
    }
    if (!S_ISREG(st.st_mode)) {
        char what[64];
        snprintf(what, sizeof what, "a symlink to %s", mode_name(st.st_mode));
        return refuse(ctx, path, what, NULL);
    }
    if (!realpath(path, t->real))
        return mk_err(ctx, MK_ERR_IO, "%s: cannot resolve the symlink: %s", path, strerror(errno));
    t->kind = OUT_LINK;
    return MK_OK;
}

static int write_full(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

/* Open a stream target (or take its descriptor) for writing; *own says whether to close it. */
static mk_status stream_open(mk_ctx *ctx, const char *path, const out_target *t, int *fd, int *own)
{
    *own = 0;
    if (t->kind == OUT_FD) {
        /* what was printed through stdio comes first */
        fflush(t->fd == 2 ? stderr : stdout);
        *fd = t->fd;
        return MK_OK;
    }
    *fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (*fd < 0)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
    *own = 1;
    return MK_OK;
}

static mk_status stream_close(mk_ctx *ctx, const char *path, int fd, int own, int ok, int err)
{
    if (own && close(fd) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (!ok)
        return mk_err(ctx, MK_ERR_IO, "%s: write failed: %s", path, strerror(err));
    return MK_OK;
}

static mk_status stream_write(mk_ctx *ctx, const char *path, const out_target *t, const void *data,
                              size_t len)
{
    int fd, own;
    mk_status st = stream_open(ctx, path, t, &fd, &own);
    if (st != MK_OK)
        return st;
    int ok = write_full(fd, data, len) == 0;
    return stream_close(ctx, path, fd, own, ok, errno);
}

/* Copy the finished temporary into a stream target. */
static mk_status stream_copy(mk_ctx *ctx, const char *tmp, const char *path, const out_target *t)
{
    int in = open(tmp, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot read the finished temporary %s: %s", path, tmp,
                      strerror(errno));
    int fd, own;
    mk_status st = stream_open(ctx, path, t, &fd, &own);
    if (st != MK_OK) {
        close(in);
        return st;
    }
    char buf[1 << 16];
    int ok = 1, err = 0, rerr = 0;
    for (;;) {
        ssize_t k = read(in, buf, sizeof buf);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            rerr = errno;
        if (k <= 0)
            break;
        if (write_full(fd, buf, (size_t)k) != 0) {
            ok = 0;
            err = errno;
            break;
        }
    }
    close(in);
    if (rerr) {
        if (own)
            close(fd);
        return mk_err(ctx, MK_ERR_IO, "%s: cannot read the finished temporary %s: %s", path, tmp,
                      strerror(rerr));
    }
    return stream_close(ctx, path, fd, own, ok, err);
}

mk_status mk_fs_tmp_path(mk_ctx *ctx, const char *path, char *buf, size_t n)
{
    out_target t;
    mk_status st = out_target_of(ctx, path, &t);
    if (st != MK_OK)
        return st;
    if (t.kind == OUT_FD || t.kind == OUT_STREAM) {
        /* nothing may be created beside a device or a FIFO (/dev is not ours): a private file in
         * the temporary folder, copied into the stream by mk_fs_commit */
        const char *dir = getenv("TMPDIR");
        if (!dir || dir[0] != '/')
            dir = "/tmp";
        int k = snprintf(buf, n, "%s/medkd-out.XXXXXX", dir);
        if (k < 0 || (size_t)k >= n)
            return mk_err(ctx, MK_ERR_INVALID, "%s: temporary folder path too long", path);
        int fd = mkstemp(buf);
        if (fd < 0)
            return mk_err(ctx, MK_ERR_IO, "%s: cannot create a temporary file in %s: %s", path, dir,
                          strerror(errno));
        close(fd);
        return MK_OK;
    }
    const char *base = t.kind == OUT_LINK ? t.real : path;
    int k = snprintf(buf, n, "%s.tmp.%ld", base, (long)getpid());
    if (k < 0 || (size_t)k >= n)
        return mk_err(ctx, MK_ERR_INVALID, "%s: path too long", path);
    return MK_OK;
}

mk_status mk_fs_commit(mk_ctx *ctx, const char *tmp, const char *path)
{
    out_target t;
    mk_status st = out_target_of(ctx, path, &t);
    if (st == MK_OK && (t.kind == OUT_FD || t.kind == OUT_STREAM))
        st = stream_copy(ctx, tmp, path, &t);
    if (st != MK_OK || t.kind == OUT_FD || t.kind == OUT_STREAM) {
        unlink(tmp);
        return st;
    }
    const char *dst = t.kind == OUT_LINK ? t.real : path;
    if (rename(tmp, dst) != 0) {
        int e = errno;
        unlink(tmp);
        if (t.kind == OUT_LINK)
            return mk_err(ctx, MK_ERR_IO,
                          "%s: cannot move finished file into place (as %s, the file the symlink "
                          "points at): %s",
                          path, dst, strerror(e));
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
    out_target t;
    mk_status st = out_target_of(ctx, path, &t);
    if (st != MK_OK)
        return st;
    if (t.kind == OUT_FD || t.kind == OUT_STREAM)
        return stream_write(ctx, path, &t, data, len);
    char tmp[4352];
    if ((st = mk_fs_tmp_path(ctx, path, tmp, sizeof tmp)) != MK_OK)
        return st;
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    errno = 0;
    int ok = fwrite(data, 1, len, f) == len;
    int e = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        mk_fs_discard(tmp);
        return mk_err(ctx, MK_ERR_IO, "%s: write failed: %s", path,
                      e ? strerror(e) : "short write (disk full?)");
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
