/* Core: status strings, the per-context error buffer, atomic file commit, console sinks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
        cmocka_unit_test(test_status_strings), cmocka_unit_test(test_error_buffer_is_per_context),
        cmocka_unit_test(test_log_levels),     cmocka_unit_test(test_console_plain_and_json),
        cmocka_unit_test(test_atomic_commit),  cmocka_unit_test(test_json_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
