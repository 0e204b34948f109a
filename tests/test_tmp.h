/* The scratch folder of a cmocka test group: made under $MK_BUILD_DIR (else /tmp) at setup,
 * removed at teardown unless MK_KEEP_TMP is set. One copy for the stage-level tests.
 *
 *     static char g_tmp[512];
 *     static int setup(void **s) { (void)s; return mk_test_tmp_make(g_tmp, sizeof g_tmp, "infer");
 * } static int teardown(void **s) { (void)s; mk_test_tmp_remove(g_tmp); return 0; }
 */
#ifndef MK_TEST_TMP_H
#define MK_TEST_TMP_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_status.h"

static int mk_test_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* dir (n bytes) = a new folder <build>/<name>-test-XXXXXX; 0 on success, -1 otherwise */
static inline int mk_test_tmp_make(char *dir, size_t n, const char *name)
{
    const char *bd = getenv("MK_BUILD_DIR");
    snprintf(dir, n, "%s/%s-test-XXXXXX", bd ? bd : "/tmp", name);
    return mkdtemp(dir) ? 0 : -1;
}

static inline void mk_test_tmp_remove(const char *dir)
{
    if (!getenv("MK_KEEP_TMP"))
        nftw(dir, mk_test_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A context that cancels itself, as SIGINT / SIGTERM do (mk_ctx.cancel), once a stage's progress
 * reports `at` units done: mk_test_cancelling(&cc, 2); mk_method_train(&cc, ...) ==
 * MK_ERR_ABORTED. One cancelling context at a time. */
static int mk_test_cancel_at_;
static mk_ctx *mk_test_cancel_ctx_;

static inline void mk_test_cancel_cb(void *user, const char *what, long long done, long long total,
                                     const char *unit, const char *detail)
{
    (void)user;
    (void)what;
    (void)total;
    (void)detail;
    /* training iterations only (not the progress of reading data, e.g. a slide's tile rows) */
    if (done == mk_test_cancel_at_ && unit && !strcmp(unit, "iter"))
        mk_test_cancel_ctx_->cancel = 1;
}

static inline void mk_test_cancelling(mk_ctx *cc, int at)
{
    mk_ctx_init(cc);
    cc->progress = mk_test_cancel_cb;
    mk_test_cancel_at_ = at;
    mk_test_cancel_ctx_ = cc;
}

#endif
