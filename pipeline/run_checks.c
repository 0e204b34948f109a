/* Pre-run checks of the training and evaluation stages: everything that can be known wrong before
 * a single iteration runs (config semantics such as hint-layer names, and, when the manifest
 * exists, that the modalities and splits the stage needs are in it). */
#include <stdio.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "../io/mk_manifest.h"
#include "mk_run_stages.h"
#include "run_train.h"

/* Count rows of a modality in a split (labelled: only rows with a label). */
static int count_rows(const mk_manifest *m, const char *modality, const char *split, int labelled)
{
    int n = 0;
    for (int r = 0; r < m->nrows; r++)
        if (!strcmp(m->rows[r].modality, modality) && !strcmp(m->rows[r].split, split) &&
            (!labelled || m->rows[r].label_path))
            n++;
    return n;
}

/* When the manifest exists: every (modality, split, labelled) need of the stage must be met. */
static mk_status check_data(mk_run_env *env, const char *stage, int need_ct_train, int need_mr_train,
                            const char *eval_split, int need_paired)
{
    const mk_cfg *cfg = env->cfg;
    const char *path = mk_cfg_str(cfg, "data.manifest");
    if (!mk_fs_is_file(path))
        return MK_OK; /* produced by an earlier stage (synth); checked again once it exists */
    mk_manifest *m = NULL;
    mk_status st = mk_manifest_read(env->ctx, path, &m);
    if (st != MK_OK) {
        env->ctx->status = MK_ERR_CONFIG;
        return mk_err_prefix(env->ctx, "%s:%d: data.manifest", mk_cfg_path(cfg),
                             mk_cfg_line(cfg, "data.manifest"));
    }
    const char *ct = mk_cfg_str(cfg, "data.ct_modality");
    const char *mr = mk_cfg_str(cfg, "data.mri_modality");
    if (need_ct_train && count_rows(m, ct, "train", 1) == 0)
        st = mk_err(env->ctx, MK_ERR_CONFIG,
                    "stage %s: manifest %s has no labelled '%s' rows in split 'train' (modalities "
                    "come from data.ct_modality = \"%s\")",
                    stage, path, ct, ct);
    else if (need_mr_train && count_rows(m, mr, "train", 0) == 0)
        st = mk_err(env->ctx, MK_ERR_CONFIG,
                    "stage %s: manifest %s has no '%s' rows in split 'train' (data.mri_modality = "
                    "\"%s\")",
                    stage, path, mr, mr);
    else if (eval_split && count_rows(m, ct, eval_split, 1) == 0)
        st = mk_err(env->ctx, MK_ERR_CONFIG,
                    "%s:%d: key 'evaluate.split': manifest %s has no labelled '%s' rows in split "
                    "'%s'",
                    mk_cfg_path(cfg), mk_cfg_line(cfg, "evaluate.split"), path, ct, eval_split);
    if (st == MK_OK && need_paired && mk_manifest_extra_index(m, MK_STAGE_PAIRED_MR_COLUMN) < 0)
        st = mk_err(env->ctx, MK_ERR_CONFIG,
                    "%s:%d: key 'cmedl.oracle_pmri': stage %s: manifest %s has no column '%s' "
                    "(the paired MRI of each CT case; `pipeline synth --paired` or "
                    "synth.paired = true writes it)",
                    mk_cfg_path(cfg), mk_cfg_line(cfg, "cmedl.oracle_pmri"), stage, path,
                    MK_STAGE_PAIRED_MR_COLUMN);
    mk_manifest_free(m);
    return st;
}

/* cmedl.oracle_pmri is on and the run trains cmedl (the oracle teacher needs paired MRI) */
static int oracle_run(const mk_cfg *cfg)
{
    if (!mk_cfg_bool(cfg, "cmedl.oracle_pmri"))
        return 0;
    for (int k = 0; k < mk_cfg_list_len(cfg, "run.stages"); k++)
        if (!strcmp(mk_cfg_list_str(cfg, "run.stages", k), "cmedl"))
            return 1;
    return 0;
}

mk_status mk_check_translate(mk_run_env *env)
{
    mk_stage_common c;
    mk_translate_params tp;
    mk_status st = mk_run_train_params(env, &c, &tp, NULL);
    return st != MK_OK ? st : check_data(env, "translate", 0, 1, NULL, 0);
}

mk_status mk_check_cmedl(mk_run_env *env)
{
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    mk_status st = mk_run_train_params(env, &c, &tp, &cp);
    if (st == MK_OK && cp.oracle_pmri && !cp.teacher_learns_pmri)
        st = mk_err(env->ctx, MK_ERR_CONFIG,
                    "%s:%d: key 'cmedl.oracle_pmri': the teacher then learns on the oracle "
                    "pseudo-MRI, which needs cmedl.teacher_learns_pmri = true",
                    mk_cfg_path(env->cfg), mk_cfg_line(env->cfg, "cmedl.oracle_pmri"));
    return st != MK_OK ? st : check_data(env, "cmedl", 1, 1, NULL, cp.oracle_pmri);
}

mk_status mk_check_baseline(mk_run_env *env)
{
    mk_stage_common c;
    mk_cmedl_params cp;
    mk_status st = mk_run_train_params(env, &c, NULL, &cp);
    return st != MK_OK ? st : check_data(env, "baseline", 1, 0, NULL, 0);
}

mk_status mk_check_evaluate(mk_run_env *env)
{
    mk_stage_common c;
    mk_status st = mk_run_train_params(env, &c, NULL, NULL);
    if (st != MK_OK)
        return st;
    int trained = 0;
    for (int k = 0; k < mk_cfg_list_len(env->cfg, "run.stages"); k++) {
        const char *s = mk_cfg_list_str(env->cfg, "run.stages", k);
        if (!strcmp(s, "evaluate"))
            break;
        if (!strcmp(s, "cmedl") || !strcmp(s, "baseline"))
            trained = 1;
    }
    if (!trained)
        return mk_err(env->ctx, MK_ERR_CONFIG,
                      "%s:%d: key 'run.stages': 'evaluate' needs a training stage before it "
                      "(cmedl or baseline)",
                      mk_cfg_path(env->cfg), mk_cfg_line(env->cfg, "run.stages"));
    return check_data(env, "evaluate", 0, 0, mk_cfg_str(env->cfg, "evaluate.split"),
                      oracle_run(env->cfg));
}
