/* `pipeline plan DATASET -o CONFIG.toml`: fingerprint a dataset and write a config for it (see the
 * verb table and pipeline/mk_plan.h). */
#include <stdio.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "../pipeline/mk_plan.h"
#include "mk_verbs.h"

mk_status mk_verb_plan(mk_cli *cli, int argc, char **argv)
{
    mk_ctx *ctx = cli->ctx;
    const char *dataset = NULL, *out = NULL;
    mk_plan_opts o;
    mk_plan_opts_defaults(&o);
    mk_args a;
    mk_args_init(&a, argc, argv);
    mk_status st = MK_OK;
    long long v;
    while (mk_args_next(&a) && st == MK_OK) {
        const char *val = NULL;
        if (mk_args_is(&a, "-o") || mk_args_is(&a, "--out") || mk_args_is(&a, "--method") ||
            mk_args_is(&a, "--iterations") || mk_args_is(&a, "--threads") ||
            mk_args_is(&a, "--memory-gb") || mk_args_is(&a, "--samples") ||
            mk_args_is(&a, "--time-budget") || mk_args_is(&a, "--gflops")) {
            if (!(val = mk_args_value(&a)))
                return mk_args_missing(&a, ctx);
        }
        if (mk_args_is(&a, "-o") || mk_args_is(&a, "--out")) {
            out = val;
        } else if (mk_args_is(&a, "--method")) {
            if (strcmp(val, "auto") && strcmp(val, "supervised") && strcmp(val, "cmedl"))
                return mk_err(ctx, MK_ERR_USAGE,
                              "plan: --method: expected auto, supervised or cmedl, got '%s'", val);
            o.method = val;
        } else if (mk_args_is(&a, "--iterations")) {
            if ((st = mk_args_int(ctx, "plan: --iterations", val, 1, 1000000000, &v)) == MK_OK)
                o.iterations = v;
        } else if (mk_args_is(&a, "--threads")) {
            if ((st = mk_args_int(ctx, "plan: --threads", val, 0, 256, &v)) == MK_OK)
                o.threads = (int)v;
        } else if (mk_args_is(&a, "--samples")) {
            if ((st = mk_args_int(ctx, "plan: --samples", val, 1, 1000000000, &v)) == MK_OK)
                o.max_samples = v;
        } else if (mk_args_is(&a, "--memory-gb")) {
            st = mk_args_double(ctx, "plan: --memory-gb", val, 0.01, 65536, &o.memory_gb);
        } else if (mk_args_is(&a, "--time-budget")) {
            st = mk_args_double(ctx, "plan: --time-budget", val, 0.01, 1e6, &o.time_budget_min);
        } else if (mk_args_is(&a, "--gflops")) {
            st = mk_args_double(ctx, "plan: --gflops", val, 1e-3, 1e9, &o.gflops);
        } else if (mk_args_positional(&a) && !dataset) {
            dataset = a.arg;
        } else {
            return mk_args_unknown(&a, ctx);
        }
    }
    if (st != MK_OK)
        return st;
    if (!dataset)
        return mk_err(ctx, MK_ERR_USAGE,
                      "plan: expected a DATASET (CSV manifest, nnU-Net v2 / MSD folder or its "
                      "dataset.json; see 'pipeline help plan')");
    if (!out)
        return mk_err(ctx, MK_ERR_USAGE, "plan: expected -o CONFIG.toml (the config to write)");
    if (mk_fs_is_dir(out))
        return mk_err(ctx, MK_ERR_USAGE, "plan: -o %s: expected a file name, got a folder", out);
    mk_plan p;
    if ((st = mk_plan_write(ctx, dataset, out, &o, &p)) != MK_OK)
        return st;
    char fpath[4300];
    mk_plan_fingerprint_path(out, fpath, sizeof fpath);
    printf("%s: %s plan, %d structure%s, spacing %.4g x %.4g x %.4g mm, patch %d x %d, depth %d, "
           "width %d, batch %d, %lld iterations\n",
           out, p.cmedl ? "cmedl" : "supervised", p.nstruct, p.nstruct == 1 ? "" : "s",
           p.spacing[0], p.spacing[1], p.spacing[2], p.patch[0], p.patch[1], p.depth, p.width,
           p.batch, p.iterations);
    printf("%s: %.4g GFLOP/s (%s), %.3g s per iteration, expected run time %.3g min (budget "
           "%.4g min%s)\n",
           out, p.gflops, p.gflops_measured ? "measured" : "--gflops", p.sec_per_iter,
           p.expected_s / 60.0, p.time_budget_s / 60.0,
           p.budget_met ? "" : "; even the smallest network misses it");
    printf("%s: the dataset's fingerprint\nnext: pipeline run %s\n", fpath, out);
    if (!p.eval_has_model_key)
        MK_LOG_W(ctx, "plan: evaluate.model is not in this build's schema: written as a comment");
    return MK_OK;
}
