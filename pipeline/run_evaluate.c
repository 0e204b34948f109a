/* Stage adapter: `evaluate` scores every student trained earlier in the same run (cmedl, baseline)
 * on the [evaluate] split and writes masks and reports (stages/mk_evaluate.h). */
#include <stdio.h>
#include <string.h>

#include "../stages/mk_evaluate.h"
#include "mk_run_stages.h"
#include "run_train.h"

#ifndef MK_VERSION
#define MK_VERSION "unknown"
#endif

/* Students that `evaluate` knows how to find, in report order. */
static const struct {
    const char *stage;
    const char *file;
} STUDENTS[] = {
    {"cmedl", "models/cmedl_student.h5"},
    {"baseline", "models/baseline_student.h5"},
};

mk_status mk_run_evaluate(mk_run_env *env)
{
    mk_ctx *ctx = env->ctx;
    const mk_cfg *cfg = env->cfg;
    mk_stage_common c;
    mk_status st = mk_run_train_params(env, &c, NULL, NULL);
    if (st != MK_OK)
        return st;
    mk_eval_stage_params ep = {0};
    ep.split = mk_cfg_str(cfg, "evaluate.split");
    ep.tolerance_mm = mk_cfg_float(cfg, "evaluate.tolerance_mm");
    if ((st = mk_metric_conv_parse(ctx, mk_cfg_str(cfg, "evaluate.convention"), &ep.convention)) !=
        MK_OK)
        return st;
    ep.write_masks = mk_cfg_bool(cfg, "evaluate.write_masks");
    ep.version = MK_VERSION;
    ep.command_line = "pipeline run";

    mk_eval_model models[2];
    char paths[2][4200];
    int n = 0;
    for (size_t i = 0; i < sizeof STUDENTS / sizeof STUDENTS[0]; i++) {
        int listed = 0;
        for (int k = 0; k < mk_cfg_list_len(cfg, "run.stages"); k++)
            if (!strcmp(mk_cfg_list_str(cfg, "run.stages", k), STUDENTS[i].stage))
                listed = 1;
        if (!listed)
            continue;
        snprintf(paths[n], sizeof paths[n], "%s/%s", env->run_dir, STUDENTS[i].file);
        models[n].name = STUDENTS[i].stage;
        models[n].model_h5 = paths[n];
        n++;
    }
    if (n == 0)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "%s:%d: key 'run.stages': 'evaluate' needs a training stage before it "
                      "(cmedl or baseline)",
                      mk_cfg_path(cfg), mk_cfg_line(cfg, "run.stages"));
    return mk_stage_evaluate(ctx, &c, &ep, models, n, NULL);
}
