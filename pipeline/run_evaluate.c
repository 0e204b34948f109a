/* Stage adapter: `evaluate` scores every model the training stages before it in run.stages
 * produce (their mk_method_output rows) on the [evaluate] split and writes masks and reports
 * (stages/mk_evaluate.h). */
#include <stdio.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "../stages/mk_evaluate.h"
#include "../stages/mk_histo_stage.h"
#include "mk_run_stages.h"

#ifndef MK_VERSION
#define MK_VERSION "unknown"
#endif

#define MAX_MODELS 16

mk_status mk_run_evaluate(mk_run_env *env)
{
    mk_ctx *ctx = env->ctx;
    const mk_cfg *cfg = env->cfg;
    mk_stage_common c;
    mk_status st = mk_run_common(env, &c);
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
    if ((st = mk_metric_both_empty_parse(ctx, mk_cfg_str(cfg, "evaluate.both_empty"),
                                         &ep.both_empty)) != MK_OK)
        return st;
    int gen_width = (int)mk_cfg_int(cfg, "translate.gen_width");
    ep.largest_component = mk_cfg_bool(cfg, "evaluate.largest_component");
    ep.write_pmri = mk_cfg_bool(cfg, "evaluate.write_pmri");
    ep.version = MK_VERSION;
    ep.command_line = "pipeline run";
    ep.config_hash = env->config_hash[0] ? env->config_hash : NULL;
    ep.report_html = mk_cfg_bool(cfg, "evaluate.report");
    ep.report_window[0] = mk_cfg_list_num(cfg, "evaluate.report_window", 0);
    ep.report_window[1] = mk_cfg_list_num(cfg, "evaluate.report_window", 1);
    ep.report_worst = (int)mk_cfg_int(cfg, "evaluate.report_worst");
    ep.bootstrap = (int)mk_cfg_int(cfg, "evaluate.bootstrap");

    mk_eval_model models[MAX_MODELS];
    char paths[MAX_MODELS][4200], tpaths[MAX_MODELS][4200], cpaths[MAX_MODELS][4200];
    mk_histo_eval_model cls[MAX_MODELS];
    int n = 0, ncls = 0;
    for (int k = 0; k < mk_cfg_list_len(cfg, "run.stages"); k++) {
        const mk_stage_entry *s = mk_runner_find_stage(mk_cfg_list_str(cfg, "run.stages", k));
        if (s == env->stage)
            break;
        for (int o = 0; s && s->method && o < s->method->noutputs && n < MAX_MODELS; o++) {
            const mk_method_output *out = &s->method->outputs[o];
            if (!mk_run_output_on(cfg, out))
                continue;
            if (s->method->classifier) {
                if (ncls < MAX_MODELS) {
                    snprintf(cpaths[ncls], sizeof cpaths[ncls], "%s/%s", env->run_dir, out->file);
                    cls[ncls] = (mk_histo_eval_model){out->name, cpaths[ncls]};
                    ncls++;
                }
                continue;
            }
            memset(&models[n], 0, sizeof models[n]);
            snprintf(paths[n], sizeof paths[n], "%s/%s", env->run_dir, out->file);
            /* the validated network's best copy (mk_method.val_net, outputs[0]) */
            if (o == 0 && s->method->val_net &&
                !strcmp(mk_cfg_str(cfg, "evaluate.model"), "best")) {
                char best[4200];
                size_t len = strlen(paths[n]);
                if (len > 3 && !strcmp(paths[n] + len - 3, ".h5"))
                    snprintf(best, sizeof best, "%.*s_best.h5", (int)(len - 3), paths[n]);
                if (len > 3 && mk_fs_is_file(best)) {
                    MK_LOG_I(ctx, "evaluate %s: the best validated network, %s", out->name, best);
                    snprintf(paths[n], sizeof paths[n], "%s", best);
                }
            }
            models[n].name = out->name;
            models[n].model_h5 = paths[n];
            models[n].input_column = out->column;
            models[n].modality = out->modality_key ? mk_cfg_str(cfg, out->modality_key) : NULL;
            if (out->translator) {
                snprintf(tpaths[n], sizeof tpaths[n], "%s/%s", env->run_dir, out->translator);
                models[n].translator_h5 = tpaths[n];
                models[n].gen_width = gen_width;
            }
            n++;
        }
    }
    if (ncls > 0) {
        mk_histo_params hp;
        mk_param_defaults(mk_histo_section.rows, mk_histo_section.nrows, &hp);
        if ((st = mk_cfg_bind(ctx, cfg, mk_histo_section.name, &hp)) != MK_OK)
            return st;
        const char *split = !strcmp(ep.split, "auto") ? "test" : ep.split;
        if ((st = mk_histo_evaluate(ctx, &c, &hp, split, cls, ncls, ep.report_html, ep.version)) !=
                MK_OK ||
            n == 0)
            return st;
    }
    if (n == 0)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "%s:%d: key 'run.stages': 'evaluate' needs a training stage before it "
                      "(one that produces a model: cmedl, baseline, supervised, ...)",
                      mk_cfg_path(cfg), mk_cfg_line(cfg, "run.stages"));
    return mk_stage_evaluate(ctx, &c, &ep, models, n, NULL);
}
