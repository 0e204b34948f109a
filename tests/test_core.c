/* Core: status strings, the per-context error buffer, atomic file commit, console sinks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/mk_fs.h"
#include "core/mk_log.h"
#include "core/mk_status.h"

static void print_lines(FILE *out, const void *arg)
{
    for (int i = 1; i <= 2; i++)
        fprintf(out, "line %d %s\n", i, (const char *)arg);
}

static void test_status_strings(void **state)
{
    (void)state;
    for (int s = 0; s < MK_STATUS_COUNT; s++) {
        const char *str = mk_status_str((mk_status)s);
        assert_non_null(str);
        assert_string_not_equal(str, "unknown status");
    }
    assert_string_equal(mk_status_str((mk_status)999), "unknown status");
    assert_int_equal(mk_status_exit_code(MK_OK), 0);
    assert_int_equal(mk_status_exit_code(MK_ERR_USAGE), 2);
    assert_int_equal(mk_status_exit_code(MK_ERR_CONFIG), 2);
    assert_int_equal(mk_status_exit_code(MK_ERR_IO), 1);
    assert_int_equal(mk_status_exit_code(MK_ERR_FORMAT), 1);
}

static void test_error_buffer_is_per_context(void **state)
{
    (void)state;
    mk_ctx a, b;
    mk_ctx_init(&a);
    mk_ctx_init(&b);
    assert_int_equal(mk_err(&a, MK_ERR_IO, "open %s: %s", "x.nii", "no such file"), MK_ERR_IO);
    assert_string_equal(mk_ctx_errmsg(&a), "open x.nii: no such file");
    assert_string_equal(mk_ctx_errmsg(&b), "");
    assert_int_equal(mk_err_prefix(&a, "reading case %d", 3), MK_ERR_IO);
    assert_string_equal(mk_ctx_errmsg(&a), "reading case 3: open x.nii: no such file");
    mk_err_clear(&a);
    assert_int_equal(a.status, MK_OK);
    assert_string_equal(mk_ctx_errmsg(&a), "");
    /* NULL ctx is allowed and still returns the status */
    assert_int_equal(mk_err(NULL, MK_ERR_FORMAT, "x"), MK_ERR_FORMAT);
}

struct capture {
    int n;
    mk_log_level last;
    char msg[256];
};

static void cap_log(void *user, mk_log_level l, const char *m)
{
    struct capture *c = user;
    c->n++;
    c->last = l;
    snprintf(c->msg, sizeof c->msg, "%s", m);
}

static void test_log_levels(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    struct capture c = {0};
    ctx.log = cap_log;
    ctx.log_user = &c;
    ctx.log_level = MK_LOG_WARN;
    MK_LOG_I(&ctx, "hidden %d", 1);
    assert_int_equal(c.n, 0);
    MK_LOG_W(&ctx, "shown %d", 2);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.last, MK_LOG_WARN);
    assert_string_equal(c.msg, "shown 2");
}

static void test_console_plain_and_json(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    mk_console con;
    mk_console_init(&con, f, 1);
    mk_console_log(&con, MK_LOG_WARN, "quote \" and \\ here");
    mk_console_progress(&con, "train", 10, 10, "iter", "loss 0.5");
    fclose(f);
    assert_non_null(strstr(buf, "\"level\":\"warning\""));
    assert_non_null(strstr(buf, "quote \\\" and \\\\ here"));
    assert_non_null(strstr(buf, "\"progress\":\"train\""));
    assert_non_null(strstr(buf, "\"done\":10,\"total\":10"));
    free(buf);

    buf = NULL;
    f = open_memstream(&buf, &len);
    mk_console_init(&con, f, 0);
    con.tty = 0;
    mk_console_progress(&con, "eval", 1, 4, "case", NULL);
    mk_console_progress(&con, "eval", 2, 4, "case", NULL); /* within interval: suppressed */
    mk_console_progress(&con, "eval", 4, 4, "case", NULL); /* final: always printed */
    fclose(f);
    assert_non_null(strstr(buf, "eval: 1/4 case"));
    assert_null(strstr(buf, "eval: 2/4 case"));
    assert_non_null(strstr(buf, "eval: 4/4 case"));
    free(buf);
}

static void test_atomic_commit(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char dir[] = "/tmp/mk_test_core_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[512], path[600], tmp[700];
    snprintf(sub, sizeof sub, "%s/a/b/c", dir);
    assert_int_equal(mk_fs_mkdirs(&ctx, sub), MK_OK);
    assert_true(mk_fs_is_dir(sub));
    snprintf(path, sizeof path, "%s/out.txt", sub);
    assert_int_equal(mk_fs_tmp_path(&ctx, path, tmp, sizeof tmp), MK_OK);
    FILE *f = fopen(tmp, "w");
    fputs("hello", f);
    fclose(f);
    assert_false(mk_fs_is_file(path));
    assert_int_equal(mk_fs_commit(&ctx, tmp, path), MK_OK);
    assert_true(mk_fs_is_file(path));
    assert_false(mk_fs_is_file(tmp));
    char *data;
    size_t n;
    assert_int_equal(mk_fs_read_all(&ctx, path, &data, &n), MK_OK);
    assert_int_equal(n, 5);
    assert_string_equal(data, "hello");
    free(data);
    /* whole-buffer atomic write replaces the file and leaves no temporary behind */
    assert_int_equal(mk_fs_write_atomic(&ctx, path, "bye\n", 4), MK_OK);
    assert_int_equal(mk_fs_read_all(&ctx, path, &data, &n), MK_OK);
    assert_int_equal(n, 4);
    assert_string_equal(data, "bye\n");
    free(data);
    assert_false(mk_fs_is_file(tmp));
    /* the printer variant: what the printer wrote, atomically */
    assert_int_equal(mk_fs_write_atomic_printed(&ctx, path, print_lines, "ab"), MK_OK);
    assert_int_equal(mk_fs_read_all(&ctx, path, &data, &n), MK_OK);
    assert_string_equal(data, "line 1 ab\nline 2 ab\n");
    free(data);
    assert_false(mk_fs_is_file(tmp));
    char bad[700];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.txt", dir);
    assert_int_equal(mk_fs_write_atomic(&ctx, bad, "x", 1), MK_ERR_IO);
    assert_int_equal(mk_fs_write_atomic_printed(&ctx, bad, print_lines, "ab"), MK_ERR_IO);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), bad));
    /* reading a missing file names it */
    assert_int_equal(mk_fs_read_all(&ctx, "/nonexistent/zz.toml", &data, &n), MK_ERR_IO);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "/nonexistent/zz.toml"));
    char d[64];
    mk_fs_dirname("a/b/c.toml", d, sizeof d);
    assert_string_equal(d, "a/b");
    mk_fs_dirname("c.toml", d, sizeof d);
    assert_string_equal(d, ".");
    char j[64];
    assert_int_equal(mk_fs_join(&ctx, "a/b", "x.nii", j, sizeof j), MK_OK);
    assert_string_equal(j, "a/b/x.nii");
    assert_int_equal(mk_fs_join(&ctx, "a/b", "/abs/x.nii", j, sizeof j), MK_OK);
    assert_string_equal(j, "/abs/x.nii");
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- atomic output onto targets that are not regular files (issue 23, D7) ------------------- */

static char *slurp_file(const char *path, size_t *n)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char *data = NULL;
    assert_int_equal(mk_fs_read_all(&ctx, path, &data, n), MK_OK);
    return data;
}

static int count_entries(const char *dir)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

/* A symlink to a regular file: the file it points at is replaced atomically, the link stays. */
static void test_atomic_write_through_symlink(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char dir[] = "/tmp/mk_test_core_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[512], target[600], link[600], tmp[4352];
    snprintf(sub, sizeof sub, "%s/real", dir);
    assert_int_equal(mk_fs_mkdirs(&ctx, sub), MK_OK);
    snprintf(target, sizeof target, "%s/real/out.csv", dir);
    snprintf(link, sizeof link, "%s/out.csv", dir);
    assert_int_equal(mk_fs_write_atomic(&ctx, target, "old\n", 4), MK_OK);
    assert_int_equal(symlink("real/out.csv", link), 0);

    assert_int_equal(mk_fs_write_atomic(&ctx, link, "new\n", 4), MK_OK);
    struct stat ls;
    assert_int_equal(lstat(link, &ls), 0);
    assert_true(S_ISLNK(ls.st_mode));
    size_t n;
    char *data = slurp_file(target, &n);
    assert_string_equal(data, "new\n");
    free(data);

    /* the writers' path (temporary beside the file pointed at, then commit) does the same */
    assert_int_equal(mk_fs_tmp_path(&ctx, link, tmp, sizeof tmp), MK_OK);
    assert_non_null(strstr(tmp, "/real/out.csv.tmp."));
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs("newer\n", f);
    fclose(f);
    assert_int_equal(mk_fs_commit(&ctx, tmp, link), MK_OK);
    assert_int_equal(lstat(link, &ls), 0);
    assert_true(S_ISLNK(ls.st_mode));
    data = slurp_file(target, &n);
    assert_string_equal(data, "newer\n");
    free(data);
    /* the printer variant too, and no temporary is left anywhere */
    assert_int_equal(mk_fs_write_atomic_printed(&ctx, link, print_lines, "s"), MK_OK);
    assert_int_equal(lstat(link, &ls), 0);
    assert_true(S_ISLNK(ls.st_mode));
    data = slurp_file(target, &n);
    assert_string_equal(data, "line 1 s\nline 2 s\n");
    free(data);
    assert_int_equal(count_entries(dir), 2);
    assert_int_equal(count_entries(sub), 1);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

typedef struct fifo_reader {
    int fd;
    char *buf;
    size_t n, cap;
} fifo_reader;

/* Reads the FIFO to its end (all writers closed). */
static void *fifo_read_all(void *arg)
{
    fifo_reader *r = arg;
    for (;;) {
        if (r->n == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 4096;
            r->buf = realloc(r->buf, r->cap + 1);
            if (!r->buf)
                break;
        }
        ssize_t k = read(r->fd, r->buf + r->n, r->cap - r->n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        r->n += (size_t)k;
    }
    close(r->fd);
    return NULL;
}

/* Write to a FIFO through one of the API's entries (0 whole buffer, 1 temporary + commit) while a
 * reader thread drains it; returns what the reader got. The test keeps a writer end open itself
 * until the call returns so that the reader never blocks forever, whatever the code under test
 * does with the path. */
static char *write_to_fifo(const char *fifo, int how, const char *data, size_t len, size_t *got,
                           mk_status *st)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int keep = open(fifo, O_RDWR);
    assert_true(keep >= 0);
    fifo_reader r = {open(fifo, O_RDONLY), NULL, 0, 0}; /* does not block: keep is a writer */
    assert_true(r.fd >= 0);
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, fifo_read_all, &r), 0);
    if (how == 0) {
        *st = mk_fs_write_atomic(&ctx, fifo, data, len);
    } else {
        char tmp[4352];
        *st = mk_fs_tmp_path(&ctx, fifo, tmp, sizeof tmp);
        if (*st == MK_OK) {
            FILE *f = fopen(tmp, "wb");
            assert_non_null(f);
            assert_int_equal(fwrite(data, 1, len, f), len);
            fclose(f);
            *st = mk_fs_commit(&ctx, tmp, fifo);
            assert_false(mk_fs_is_file(tmp));
        }
    }
    if (*st != MK_OK)
        print_error("%s\n", mk_ctx_errmsg(&ctx));
    close(keep);
    pthread_join(tid, NULL);
    *got = r.n;
    return r.buf;
}

/* A FIFO gets the bytes written into it and stays a FIFO (no temporary renamed over it). */
static void test_atomic_write_to_fifo(void **state)
{
    (void)state;
    char dir[] = "/tmp/mk_test_core_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char fifo[600];
    snprintf(fifo, sizeof fifo, "%s/pipe", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    /* larger than a pipe's buffer, so the writer must wait for the reader */
    size_t len = 300000;
    char *data = malloc(len);
    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)('a' + i % 23);
    for (int how = 0; how < 2; how++) {
        size_t got = 0;
        mk_status st;
        char *buf = write_to_fifo(fifo, how, data, len, &got, &st);
        assert_int_equal(st, MK_OK);
        assert_int_equal(got, len);
        assert_memory_equal(buf, data, len);
        free(buf);
        struct stat ls;
        assert_int_equal(lstat(fifo, &ls), 0);
        assert_true(S_ISFIFO(ls.st_mode));
        assert_int_equal(count_entries(dir), 1);
    }
    free(data);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* A directory, a symlink to one and a dangling symlink are refused, named, and left as they are. */
static void test_atomic_write_refuses_non_regular(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char dir[] = "/tmp/mk_test_core_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char d[600], l[600], dl[600], tmp[4352];
    snprintf(d, sizeof d, "%s/adir", dir);
    snprintf(l, sizeof l, "%s/tolink", dir);
    snprintf(dl, sizeof dl, "%s/dangling", dir);
    assert_int_equal(mkdir(d, 0777), 0);
    assert_int_equal(symlink("adir", l), 0);
    assert_int_equal(symlink("nothing-here", dl), 0);
    const char *targets[3] = {d, l, dl};
    for (int t = 0; t < 3; t++) {
        const char *p = targets[t];
        mk_err_clear(&ctx);
        assert_int_not_equal(mk_fs_write_atomic(&ctx, p, "x\n", 2), MK_OK);
        const char *m = mk_ctx_errmsg(&ctx);
        if (!strstr(m, p) || !strstr(m, "not a regular file"))
            fail_msg("%s: message '%s' should name the path and say 'not a regular file'", p, m);
        assert_int_not_equal(mk_fs_write_atomic_printed(&ctx, p, print_lines, "x"), MK_OK);
        assert_non_null(strstr(mk_ctx_errmsg(&ctx), "not a regular file"));
        /* the writers' entry refuses before anything is written */
        assert_int_not_equal(mk_fs_tmp_path(&ctx, p, tmp, sizeof tmp), MK_OK);
        assert_non_null(strstr(mk_ctx_errmsg(&ctx), "not a regular file"));
    }
    /* commit re-checks: a temporary made while the path was free is not renamed over a directory
     * that appeared since, and is removed */
    char late[600];
    snprintf(late, sizeof late, "%s/late", dir);
    assert_int_equal(mk_fs_tmp_path(&ctx, late, tmp, sizeof tmp), MK_OK);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(symlink("adir", late), 0);
    assert_int_not_equal(mk_fs_commit(&ctx, tmp, late), MK_OK);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "not a regular file"));
    assert_false(mk_fs_is_file(tmp));
    struct stat ls;
    assert_int_equal(lstat(d, &ls), 0);
    assert_true(S_ISDIR(ls.st_mode));
    assert_int_equal(lstat(l, &ls), 0);
    assert_true(S_ISLNK(ls.st_mode));
    assert_int_equal(lstat(dl, &ls), 0);
    assert_true(S_ISLNK(ls.st_mode));
    assert_int_equal(lstat(late, &ls), 0);
    assert_true(S_ISLNK(ls.st_mode));
    assert_int_equal(count_entries(d), 0);
    assert_int_equal(count_entries(dir), 4);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* "-" is standard output, and /dev/fd/N the open descriptor N: bytes are written to the
 * descriptor where it stands (after what was printed before), no file is created or replaced. */
static void test_atomic_write_to_stdout(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char dir[] = "/tmp/mk_test_core_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cap[600], cwd[4096], fdname[64], tmp[4352];
    snprintf(cap, sizeof cap, "%s/captured", dir);
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0); /* a file named "-" would land here */
    fflush(stdout);
    int saved = dup(1);
    assert_true(saved >= 0);
    int fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(dup2(fd, 1), 1);
    printf("table\n"); /* buffered: must come out before the report */
    mk_status s1 = mk_fs_write_atomic(&ctx, "-", "a,b\n", 4);
    mk_status s2 = mk_fs_write_atomic_printed(&ctx, "-", print_lines, "p");
    mk_status s3 = mk_fs_tmp_path(&ctx, "-", tmp, sizeof tmp);
    if (s3 == MK_OK) {
        FILE *f = fopen(tmp, "w");
        if (f) {
            fputs("via tmp\n", f);
            fclose(f);
        }
        s3 = mk_fs_commit(&ctx, tmp, "-");
    }
    snprintf(fdname, sizeof fdname, "/dev/fd/%d", fd);
    mk_status s4 = mk_fs_write_atomic(&ctx, fdname, "fd\n", 3);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(fd);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(s1, MK_OK);
    assert_int_equal(s2, MK_OK);
    assert_int_equal(s3, MK_OK);
    assert_int_equal(s4, MK_OK);
    size_t n;
    char *data = slurp_file(cap, &n);
    assert_string_equal(data, "table\na,b\nline 1 p\nline 2 p\nvia tmp\nfd\n");
    free(data);
    assert_false(mk_fs_is_file(tmp));
    assert_int_equal(count_entries(dir), 1); /* only "captured": no "-" */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* The one JSON string escaper: every JSON writer of the project goes through it. */
static void test_json_escape(void **state)
{
    (void)state;
    char buf[64];
    mk_json_escape("a\"b\\c\nd\te\x01 \xc3\xa9", buf, sizeof buf);
    assert_string_equal(buf, "a\\\"b\\\\c\\nd\\te\\u0001 \xc3\xa9");
    /* truncation never splits an escape */
    mk_json_escape("ab\"cd", buf, 4);
    assert_string_equal(buf, "ab");
    mk_json_escape("ab\"cd", buf, 5);
    assert_string_equal(buf, "ab\\\"");
    mk_json_escape(NULL, buf, sizeof buf);
    assert_string_equal(buf, "");
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    assert_non_null(f);
    mk_json_put(f, "x\"\x1f");
    mk_json_put(f, NULL);
    fclose(f);
    assert_string_equal(mem, "\"x\\\"\\u001f\"\"\"");
    free(mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_error_buffer_is_per_context),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_console_plain_and_json),
        cmocka_unit_test(test_atomic_commit),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_atomic_write_through_symlink),
        cmocka_unit_test(test_atomic_write_to_fifo),
        cmocka_unit_test(test_atomic_write_refuses_non_regular),
        cmocka_unit_test(test_atomic_write_to_stdout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
