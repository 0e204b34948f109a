/* Stage adapter: `cmedl` (translator + MRI teacher + CT student, [cmedl] and [translate]), and the
 * config reading shared by the training adapters. */
#include <stdio.h>
#include <string.h>

#include "mk_run_stages.h"
#include "run_train.h"

static mk_status bad(mk_run_env *env, const char *key, const char *what)
{
    return mk_err(env->ctx, MK_ERR_CONFIG, "%s:%d: key '%s': %s", mk_cfg_path(env->cfg),
                  mk_cfg_line(env->cfg, key), key, what);
}

mk_status mk_run_train_params(mk_run_env *env, mk_stage_common *c, mk_translate_params *tp,
                              mk_cmedl_params *cp)
{
    const mk_cfg *cfg = env->cfg;
    mk_stage_common_defaults(c);
    c->run_dir = env->run_dir;
    c->seed = (uint64_t)env->seed;
    c->threads = env->threads > 0 ? env->threads : 1;
    c->resume = env->resume;
    c->checkpoint_every = (int)mk_cfg_int(cfg, "run.checkpoint_every");
    c->log_every = (int)mk_cfg_int(cfg, "run.log_every");
    mk_data_params *d = &c->data;
    d->manifest = mk_cfg_str(cfg, "data.manifest");
    d->ct_modality = mk_cfg_str(cfg, "data.ct_modality");
    d->mri_modality = mk_cfg_str(cfg, "data.mri_modality");
    if (mk_cfg_list_len(cfg, "data.ct_window") != 2)
        return bad(env, "data.ct_window", "expected 2 values [low, high]");
    d->ct_window[0] = mk_cfg_list_num(cfg, "data.ct_window", 0);
    d->ct_window[1] = mk_cfg_list_num(cfg, "data.ct_window", 1);
    if (!(d->ct_window[1] > d->ct_window[0]))
        return bad(env, "data.ct_window", "expected low < high");
    d->mri_norm = strcmp(mk_cfg_str(cfg, "data.mri_norm"), "minmax") == 0 ? MK_MRI_MINMAX
                                                                          : MK_MRI_ZSCORE;
    d->slice_axis = mk_cfg_str(cfg, "data.slice_axis")[0] - 'i';
    if (mk_cfg_list_len(cfg, "data.patch") != 2)
        return bad(env, "data.patch", "expected 2 values (2D training patch)");
    d->patch[0] = (int)mk_cfg_list_num(cfg, "data.patch", 0);
    d->patch[1] = (int)mk_cfg_list_num(cfg, "data.patch", 1);
    d->label = (int)mk_cfg_int(cfg, "data.label");
    d->ct_train_cases = (int)mk_cfg_int(cfg, "data.ct_train_cases");
    d->empty_ratio = mk_cfg_float(cfg, "data.empty_ratio");
    d->crop_jitter = (int)mk_cfg_int(cfg, "data.crop_jitter");
    c->unet.base = (int)mk_cfg_int(cfg, "model.width");
    c->unet.levels = (int)mk_cfg_int(cfg, "model.depth");
    c->unet.classes = (int)mk_cfg_int(cfg, "model.classes");
    if (strcmp(mk_cfg_str(cfg, "model.norm"), "batch") != 0)
        return bad(env, "model.norm", "only \"batch\" is implemented by the U-Net");
    if (c->unet.classes != 2)
        return bad(env, "model.classes", "the training stages segment one structure: expected 2");
    int div = 1 << (c->unet.levels - 1);
    for (int a = 0; a < 2; a++)
        if (d->patch[a] % div != 0 || d->patch[a] % 4 != 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "expected multiples of %d (U-Net depth %d and the "
                     "translator), got [%d, %d]", div > 4 ? div : 4, c->unet.levels, d->patch[0],
                     d->patch[1]);
            return bad(env, "data.patch", msg);
        }
    if (tp) {
        mk_translate_defaults(tp);
        tp->iterations = (int)mk_cfg_int(cfg, "translate.iterations");
        tp->batch = (int)mk_cfg_int(cfg, "translate.batch");
        tp->lr = (float)mk_cfg_float(cfg, "translate.lr");
        tp->beta1 = (float)mk_cfg_float(cfg, "translate.beta1");
        tp->lambda_cycle = (float)mk_cfg_float(cfg, "translate.lambda_cycle");
        tp->lambda_identity = (float)mk_cfg_float(cfg, "translate.lambda_identity");
        tp->gen_width = (int)mk_cfg_int(cfg, "translate.gen_width");
        tp->disc_width = (int)mk_cfg_int(cfg, "translate.disc_width");
    }
    if (cp) {
        mk_cmedl_defaults(cp);
        cp->iterations = (int)mk_cfg_int(cfg, "cmedl.iterations");
        cp->batch = (int)mk_cfg_int(cfg, "cmedl.batch");
        cp->lr = (float)mk_cfg_float(cfg, "cmedl.lr");
        int n = mk_cfg_list_len(cfg, "cmedl.hint_layers");
        if (n < 1 || n > MK_HINT_MAX)
            return bad(env, "cmedl.hint_layers", "expected 1 to 8 layer names");
        cp->n_hint = n;
        for (int i = 0; i < n; i++)
            snprintf(cp->hint_layers[i], sizeof cp->hint_layers[i], "%s",
                     mk_cfg_list_str(cfg, "cmedl.hint_layers", i));
        cp->lambda_hint = (float)mk_cfg_float(cfg, "cmedl.lambda_hint");
        cp->w_seg_student = (float)mk_cfg_float(cfg, "cmedl.w_seg_student");
        cp->w_seg_teacher = (float)mk_cfg_float(cfg, "cmedl.w_seg_teacher");
        cp->dice_weight = (float)mk_cfg_float(cfg, "cmedl.dice_weight");
        cp->hint_to_teacher = mk_cfg_bool(cfg, "cmedl.hint_to_teacher");
        cp->seg_to_i2i = mk_cfg_bool(cfg, "cmedl.seg_to_i2i");
        cp->teacher_init_student = strcmp(mk_cfg_str(cfg, "cmedl.teacher_init"), "student") == 0;
        cp->hint_rampup = (int)mk_cfg_int(cfg, "cmedl.hint_rampup");
        cp->hint_pseudo_ct = mk_cfg_bool(cfg, "cmedl.hint_pseudo_ct");
        cp->teacher_mri_labels = mk_cfg_bool(cfg, "cmedl.teacher_mri_labels");
        cp->teacher_learns_pmri = mk_cfg_bool(cfg, "cmedl.teacher_learns_pmri");
        cp->w_seg_i2i = (float)mk_cfg_float(cfg, "cmedl.w_seg_i2i");
        cp->lambda_tumour_i2i = (float)mk_cfg_float(cfg, "cmedl.lambda_tumour_i2i");
        cp->oracle_pmri = mk_cfg_bool(cfg, "cmedl.oracle_pmri");
        cp->ema = (float)mk_cfg_float(cfg, "cmedl.ema");
        cp->hint_teacher_correct = !strcmp(mk_cfg_str(cfg, "cmedl.hint_where"), "teacher_correct");
        cp->w_seg_pseudo_ct = (float)mk_cfg_float(cfg, "cmedl.w_seg_pseudo_ct");
        const char *sc = mk_cfg_str(cfg, "cmedl.schedule");
        cp->schedule = !strcmp(sc, "poly")     ? MK_TRAIN_POLY
                       : !strcmp(sc, "cosine") ? MK_TRAIN_COSINE
                                               : MK_TRAIN_CONSTANT;
        mk_status st = mk_stage_hint_check(env->ctx, c->unet.levels, cp->n_hint,
                                           (const char(*)[32])cp->hint_layers, NULL);
        if (st != MK_OK)
            return mk_err_prefix(env->ctx, "%s:%d", mk_cfg_path(cfg),
                                 mk_cfg_line(cfg, "cmedl.hint_layers"));
    }
    return MK_OK;
}

mk_status mk_run_cmedl(mk_run_env *env)
{
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    mk_status st = mk_run_train_params(env, &c, &tp, &cp);
    if (st != MK_OK)
        return st;
    return mk_stage_cmedl(env->ctx, &c, &tp, &cp, NULL);
}
