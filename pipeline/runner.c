#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/mk_fs.h"
#include "../core/mk_log.h"
#include "mk_runner.h"

#ifndef MK_VERSION
#define MK_VERSION "unknown"
#endif

mk_status mk_runner_check(mk_ctx *ctx, const mk_cfg *cfg)
{
    int n = mk_cfg_list_len(cfg, "run.stages");
    if (n == 0)
        return mk_err(ctx, MK_ERR_CONFIG, "%s:%d: key 'run.stages': expected at least one stage",
                      mk_cfg_path(cfg), mk_cfg_line(cfg, "run.stages"));
    for (int i = 0; i < n; i++) {
        const char *s = mk_cfg_list_str(cfg, "run.stages", i);
        if (!mk_runner_find_stage(s)) {
            char avail[512] = "";
            int ns;
            const mk_stage_entry *all = mk_runner_stages(&ns);
            for (int k = 0; k < ns; k++) {
                if (k)
                    strncat(avail, ", ", sizeof avail - strlen(avail) - 1);
                strncat(avail, all[k].name, sizeof avail - strlen(avail) - 1);
            }
            return mk_err(ctx, MK_ERR_CONFIG,
                          "%s:%d: key 'run.stages'[%d]: stage \"%s\" is not available in this "
                          "build (available: %s)",
                          mk_cfg_path(cfg), mk_cfg_line(cfg, "run.stages"), i, s,
                          *avail ? avail : "none");
        }
    }
    return MK_OK;
}

mk_status mk_runner_check_stages(mk_run_env *env, int from)
{
    int n = mk_cfg_list_len(env->cfg, "run.stages");
    for (int i = from; i < n; i++) {
        const mk_stage_entry *s = mk_runner_find_stage(mk_cfg_list_str(env->cfg, "run.stages", i));
        if (s && s->check) {
            env->stage = s;
            mk_status st = s->check(env);
            if (st != MK_OK)
                return st;
        }
    }
    return MK_OK;
}

static int dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 1;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            empty = 0;
            break;
        }
    }
    closedir(d);
    return empty;
}

/* Copy a file atomically. */
static mk_status copy_file(mk_ctx *ctx, const char *src, const char *dst)
{
    char *buf = NULL;
    size_t len = 0;
    mk_status st = mk_fs_read_all(ctx, src, &buf, &len);
    if (st == MK_OK)
        st = mk_fs_write_atomic(ctx, dst, buf, len);
    free(buf);
    return st;
}

static mk_status write_text(mk_ctx *ctx, const char *path, const char *text)
{
    return mk_fs_write_atomic(ctx, path, text, strlen(text));
}

/* Log tee: every message also goes to run_dir/log.txt with a timestamp. */
typedef struct log_tee {
    FILE *f;
    mk_log_fn next;
    void *next_user;
    mk_log_level console_level; /* the console keeps its own threshold (--quiet) */
} log_tee;

static void tee_log(void *user, mk_log_level level, const char *msg)
{
    log_tee *t = user;
    if (t->f) {
        time_t now = time(NULL);
        struct tm tmv;
        gmtime_r(&now, &tmv);
        char ts[32];
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tmv);
        static const char *const words[] = {"debug", "info", "warning", "error", ""};
        fprintf(t->f, "%s %s %s\n", ts, words[level <= MK_LOG_QUIET ? level : MK_LOG_QUIET], msg);
        fflush(t->f);
    }
    if (t->next && level >= t->console_level)
        t->next(t->next_user, level, msg);
}

static mk_status run_stages(mk_run_env *env, const char *cmdline);

mk_status mk_runner_run(mk_run_env *env, const char *cmdline)
{
    return run_stages(env, cmdline);
}

static void print_cfg(FILE *out, const void *cfg)
{
    mk_cfg_print(cfg, out);
}

static mk_status run_stages(mk_run_env *env, const char *cmdline)
{
    mk_ctx *ctx = env->ctx;
    const mk_cfg *cfg = env->cfg;
    const char *dir = env->run_dir;
    mk_status st;
    /* everything that can be checked before training is checked before anything is written */
    if ((st = mk_runner_check_stages(env, 0)) != MK_OK)
        return st;
    if (!env->resume && mk_fs_is_dir(dir) && !dir_is_empty(dir))
        return mk_err(ctx, MK_ERR_USAGE,
                      "run directory '%s' already holds a run: use --resume to continue it, or "
                      "--out for a new directory",
                      dir);
    if (env->resume && !mk_fs_is_dir(dir))
        MK_LOG_W(ctx, "--resume: run directory '%s' does not exist yet; starting a new run", dir);
    if ((st = mk_fs_mkdirs(ctx, dir)) != MK_OK)
        return st;
    char path[4200];
    snprintf(path, sizeof path, "%s/stages", dir);
    if ((st = mk_fs_mkdirs(ctx, path)) != MK_OK)
        return st;
    snprintf(path, sizeof path, "%s/config.toml", dir);
    if ((st = copy_file(ctx, mk_cfg_path(cfg), path)) != MK_OK)
        return st;
    /* what actually ran: defaults filled in, --seed/--threads/--out/--set applied */
    snprintf(path, sizeof path, "%s/config.resolved.toml", dir);
    if ((st = mk_fs_write_atomic_printed(ctx, path, print_cfg, cfg)) != MK_OK)
        return st;
    char info[8192];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    char ts[64];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    char esc[4096];
    size_t k = 0;
    for (const char *p = cmdline; *p && k + 3 < sizeof esc; p++) {
        if (*p == '"' || *p == '\\')
            esc[k++] = '\\';
        esc[k++] = *p;
    }
    esc[k] = '\0';
    snprintf(info, sizeof info,
             "{\"medkd_version\": \"%s\", \"seed\": %lld, \"threads\": %d, \"resume\": %s, "
             "\"command\": \"%s\", \"started\": \"%s\"}\n",
             MK_VERSION, env->seed, env->threads, env->resume ? "true" : "false", esc, ts);
    snprintf(path, sizeof path, "%s/run.json", dir);
    if ((st = write_text(ctx, path, info)) != MK_OK)
        return st;

    /* from here on, log lines are also kept in run_dir/log.txt (appended on --resume) */
    snprintf(path, sizeof path, "%s/log.txt", dir);
    log_tee tee = {fopen(path, "a"), ctx->log, ctx->log_user, ctx->log_level};
    if (!tee.f)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot open the run log: %s", path, strerror(errno));
    mk_log_level saved_level = ctx->log_level;
    ctx->log = tee_log;
    ctx->log_user = &tee;
    if (ctx->log_level > MK_LOG_INFO)
        ctx->log_level = MK_LOG_INFO; /* the log file keeps info lines even with --quiet */
    MK_LOG_I(ctx, "run %s: %s (medkd %s, seed %lld, threads %d)", dir, cmdline, MK_VERSION,
             env->seed, env->threads);
    st = MK_OK;
    int n = mk_cfg_list_len(cfg, "run.stages");
    for (int i = 0; i < n && st == MK_OK; i++) {
        const char *name = mk_cfg_list_str(cfg, "run.stages", i);
        const mk_stage_entry *s = mk_runner_find_stage(name);
        MK_ASSERT(s); /* checked by mk_runner_check */
        char done[4200];
        snprintf(done, sizeof done, "%s/stages/%s.done", dir, name);
        if (env->resume && mk_fs_is_file(done)) {
            MK_LOG_I(ctx, "stage %d/%d %s: already complete, skipped (--resume)", i + 1, n, name);
            continue;
        }
        MK_LOG_I(ctx, "stage %d/%d %s: %s", i + 1, n, name, s->summary);
        double t0 = mk_now_s();
        env->stage = s;
        st = s->run(env);
        if (st != MK_OK) {
            mk_err_prefix(ctx, "stage %s", name);
            break;
        }
        if (ctx->cancel) {
            st = mk_err(ctx, MK_ERR_ABORTED, "interrupted after stage %s", name);
            break;
        }
        char txt[128];
        snprintf(txt, sizeof txt, "%.3f s\n", mk_now_s() - t0);
        if ((st = write_text(ctx, done, txt)) != MK_OK)
            break;
        MK_LOG_I(ctx, "stage %d/%d %s: done in %.1f s", i + 1, n, name, mk_now_s() - t0);
        st = mk_runner_check_stages(env, i + 1);
    }
    if (st != MK_OK)
        fprintf(tee.f, "error: %s\n", mk_ctx_errmsg(ctx));
    fclose(tee.f);
    ctx->log = tee.next;
    ctx->log_user = tee.next_user;
    ctx->log_level = saved_level;
    return st;
}
