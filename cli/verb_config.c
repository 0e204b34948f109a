/* `pipeline validate` and `pipeline run`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/mk_fs.h"
#include "../config/mk_config.h"
#include "../pipeline/mk_mpi.h"
#include "../pipeline/mk_runner.h"
#include "mk_verbs.h"

mk_status mk_verb_validate(mk_cli *cli, int argc, char **argv)
{
    mk_ctx *ctx = cli->ctx;
    const char *path = NULL;
    int explain = 0, markdown = 0, print = 0;
    mk_args a;
    mk_args_init(&a, argc, argv);
    while (mk_args_next(&a)) {
        if (mk_args_is(&a, "--explain"))
            explain = 1;
        else if (mk_args_is(&a, "--markdown"))
            markdown = 1;
        else if (mk_args_is(&a, "--print"))
            print = 1;
        else if (mk_args_positional(&a) && !path)
            path = a.arg;
        else
            return mk_args_unknown(&a, ctx);
    }
    if (explain && !path) {
        mk_cfg_explain(stdout, markdown);
        return MK_OK;
    }
    if (!path)
        return mk_err(ctx, MK_ERR_USAGE, "validate: expected a CONFIG file (or --explain)");
    mk_cfg *cfg = NULL;
    mk_status st = mk_cfg_load(ctx, path, &cfg);
    if (st == MK_OK) {
        /* the checks of `pipeline run` but those of the run directory (no --out, --resume) */
        mk_run_env env = {.ctx = ctx,
                          .cfg = cfg,
                          .run_dir = mk_cfg_str(cfg, "run.out_dir"),
                          .seed = mk_cfg_int(cfg, "run.seed"),
                          .threads = 1};
        st = mk_runner_precheck(&env, 0);
    }
    if (st != MK_OK) {
        mk_cfg_free(cfg);
        return st;
    }
    if (explain)
        mk_cfg_explain(stdout, markdown);
    if (print)
        mk_cfg_print(cfg, stdout);
    else
        printf("%s: ok\n", path);
    mk_cfg_free(cfg);
    return MK_OK;
}

/* TOML basic string of s (for overrides): TOML's escapes are JSON's. */
static void toml_quote(const char *s, char *buf, size_t n)
{
    if (n < 3)
        return;
    buf[0] = '"';
    mk_json_escape(s, buf + 1, n - 2);
    strcat(buf, "\"");
}

enum { MK_RUN_MAX_SETS = 65 };

/* --set SECTION.KEY=VALUE: VALUE is TOML (a bare word that is not a TOML value is taken as a
 * string, so --set evaluate.split=val works without shell quoting). */
static mk_status apply_set(mk_ctx *ctx, mk_cfg *cfg, const char *kv)
{
    const char *eq = strchr(kv, '=');
    char key[128], q[4200];
    if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof key)
        return mk_err(ctx, MK_ERR_USAGE, "--set '%s': expected SECTION.KEY=VALUE", kv);
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = '\0';
    const char *val = eq + 1;
    mk_ctx quiet = *ctx;
    quiet.msg[0] = '\0';
    if (mk_cfg_override(&quiet, cfg, key, val) == MK_OK)
        return MK_OK;
    int bare = *val != '\0' && *val != '"' && *val != '\'' && *val != '[';
    if (bare && strstr(quiet.msg, "unknown config key") == NULL) {
        toml_quote(val, q, sizeof q);
        if (mk_cfg_override(ctx, cfg, key, q) == MK_OK)
            return MK_OK;
    }
    return mk_err(ctx, MK_ERR_USAGE, "--set %s: %s", kv, quiet.msg);
}

mk_status mk_verb_run(mk_cli *cli, int argc, char **argv)
{
    mk_ctx *ctx = cli->ctx;
    const char *path = NULL, *out = NULL, *seed = NULL, *threads = NULL;
    const char *sets[MK_RUN_MAX_SETS];
    int resume = 0, force = 0, dry = 0, nsets = 0;
    mk_args a;
    mk_args_init(&a, argc, argv);
    while (mk_args_next(&a)) {
        if (mk_args_is(&a, "--resume"))
            resume = 1;
        else if (mk_args_is(&a, "--force"))
            force = 1;
        else if (mk_args_is(&a, "--dry-run"))
            dry = 1;
        else if (mk_args_is(&a, "--out")) {
            if (!(out = mk_args_value(&a)))
                return mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--seed")) {
            if (!(seed = mk_args_value(&a)))
                return mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--threads")) {
            if (!(threads = mk_args_value(&a)))
                return mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--set")) {
            if (!(sets[nsets] = mk_args_value(&a)))
                return mk_args_missing(&a, ctx);
            if (++nsets == MK_RUN_MAX_SETS)
                return mk_err(ctx, MK_ERR_USAGE, "at most %d --set options", MK_RUN_MAX_SETS - 1);
        } else if (mk_args_positional(&a) && !path)
            path = a.arg;
        else
            return mk_args_unknown(&a, ctx);
    }
    if (!path)
        return mk_err(ctx, MK_ERR_USAGE, "run: expected a CONFIG file (see 'pipeline help run')");
    mk_cfg *cfg = NULL;
    /* input paths are checked after the overrides: --set may point them elsewhere */
    mk_status st = mk_cfg_load_ex(ctx, path, MK_CFG_LOAD_DEFER_PATHS, &cfg);
    char q[4200];
    if (st == MK_OK && out) {
        toml_quote(out, q, sizeof q);
        st = mk_cfg_override(ctx, cfg, "run.out_dir", q);
    }
    if (st == MK_OK && seed)
        st = mk_cfg_override(ctx, cfg, "run.seed", seed);
    if (st == MK_OK && threads)
        st = mk_cfg_override(ctx, cfg, "run.threads", threads);
    for (int i = 0; st == MK_OK && i < nsets; i++)
        st = apply_set(ctx, cfg, sets[i]);
    if (st == MK_OK)
        st = mk_cfg_check_paths(ctx, cfg);
    if (st == MK_OK && force && !resume)
        st = mk_err(ctx, MK_ERR_USAGE, "run: --force is only meaningful with --resume");
    if (st != MK_OK) {
        if (st == MK_ERR_USAGE && (seed || threads || out || nsets))
            mk_err_prefix(ctx, "run");
        mk_cfg_free(cfg);
        return st;
    }
    int nthreads = (int)mk_cfg_int(cfg, "run.threads");
    if (nthreads == 0) {
        /* one worker per core, the cores shared by the ranks on this node under MPI */
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        long nl = local ? atol(local) : mk_mpi_size();
        nthreads = nc > 0 ? (int)(nc / (nl > 0 ? nl : 1)) : 1;
        if (nthreads < 1)
            nthreads = 1;
    }
    mk_run_env env = {.ctx = ctx,
                      .cfg = cfg,
                      .run_dir = mk_cfg_str(cfg, "run.out_dir"),
                      .seed = mk_cfg_int(cfg, "run.seed"),
                      .threads = nthreads,
                      .resume = resume,
                      .force = force,
                      .dist = mk_mpi_dist()};
    if (dry) {
        /* exactly the checks of the run itself (mk_runner_run calls the same function) */
        if ((st = mk_runner_precheck(&env, 1)) != MK_OK) {
            mk_cfg_free(cfg);
            return st;
        }
        mk_cfg_print(cfg, stdout);
        printf("\n# plan: run directory %s, seed %lld, threads %d, stages:",
               mk_cfg_str(cfg, "run.out_dir"), mk_cfg_int(cfg, "run.seed"), nthreads);
        for (int i = 0; i < mk_cfg_list_len(cfg, "run.stages"); i++)
            printf(" %s", mk_cfg_list_str(cfg, "run.stages", i));
        printf("\n");
        mk_cfg_free(cfg);
        return MK_OK;
    }
    char cmd[2048] = "pipeline";
    for (int i = 0; i < argc; i++) {
        strncat(cmd, " ", sizeof cmd - strlen(cmd) - 1);
        strncat(cmd, argv[i], sizeof cmd - strlen(cmd) - 1);
    }
    st = mk_runner_run(&env, cmd);
    mk_cfg_free(cfg);
    return st;
}
