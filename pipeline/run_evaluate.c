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

/* Models that `evaluate` knows how to find, in report order: the stage that trains them, their
 * report name, the U-Net file, the translator whose G maps CT first (or NULL), the config key
 * that must be true for it to be evaluated (NULL: always), and the manifest column of the image
 * it segments instead of the CT (NULL: the CT). */
static const struct {
    const char *stage, *name, *file, *translator, *when, *column;
} MODELS[] = {
    {"cmedl", "cmedl", "models/cmedl_student.h5", NULL, NULL, NULL},
    {"baseline", "baseline", "models/baseline_student.h5", NULL, NULL, NULL},
    {"cmedl", "pmri_teacher", "models/cmedl_teacher.h5", "models/cmedl_translator.h5",
     "evaluate.teacher_on_pmri", NULL},
    /* the teacher on what it learned on in the oracle run: each CT's paired MRI */
    {"cmedl", "oracle_teacher", "models/cmedl_teacher.h5", NULL, "cmedl.oracle_pmri",
     MK_STAGE_PAIRED_MR_COLUMN},
};
enum { N_MODELS = sizeof MODELS / sizeof MODELS[0] };

mk_status mk_run_evaluate(mk_run_env *env)
{
    mk_ctx *ctx = env->ctx;
    const mk_cfg *cfg = env->cfg;
    mk_stage_common c;
    mk_status st = mk_run_train_params(env, &c, NULL, NULL);
    if (st != MK_OK)
        return st;
    c.data.blend_uniform = !strcmp(mk_cfg_str(cfg, "evaluate.window_blend"), "uniform");
    mk_eval_stage_params ep = {0};
    ep.split = mk_cfg_str(cfg, "evaluate.split");
    ep.tolerance_mm = mk_cfg_float(cfg, "evaluate.tolerance_mm");
    if ((st = mk_metric_conv_parse(ctx, mk_cfg_str(cfg, "evaluate.convention"), &ep.convention)) !=
        MK_OK)
        return st;
    ep.write_masks = mk_cfg_bool(cfg, "evaluate.write_masks");
    int gen_width = (int)mk_cfg_int(cfg, "translate.gen_width");
    ep.largest_component = mk_cfg_bool(cfg, "evaluate.largest_component");
    ep.write_pmri = mk_cfg_bool(cfg, "evaluate.write_pmri");
    ep.version = MK_VERSION;
    ep.command_line = "pipeline run";

    mk_eval_model models[N_MODELS];
    char paths[N_MODELS][4200], tpaths[N_MODELS][4200];
    int n = 0;
    for (int i = 0; i < N_MODELS; i++) {
        int listed = 0;
        for (int k = 0; k < mk_cfg_list_len(cfg, "run.stages"); k++)
            if (!strcmp(mk_cfg_list_str(cfg, "run.stages", k), MODELS[i].stage))
                listed = 1;
        if (!listed || (MODELS[i].when && !mk_cfg_bool(cfg, MODELS[i].when)))
            continue;
        memset(&models[n], 0, sizeof models[n]);
        snprintf(paths[n], sizeof paths[n], "%s/%s", env->run_dir, MODELS[i].file);
        models[n].name = MODELS[i].name;
        models[n].model_h5 = paths[n];
        models[n].input_column = MODELS[i].column;
        if (MODELS[i].translator) {
            snprintf(tpaths[n], sizeof tpaths[n], "%s/%s", env->run_dir, MODELS[i].translator);
            models[n].translator_h5 = tpaths[n];
            models[n].gen_width = gen_width;
        }
        n++;
    }
    if (n == 0)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "%s:%d: key 'run.stages': 'evaluate' needs a training stage before it "
                      "(cmedl or baseline)",
                      mk_cfg_path(cfg), mk_cfg_line(cfg, "run.stages"));
    return mk_stage_evaluate(ctx, &c, &ep, models, n, NULL);
}
