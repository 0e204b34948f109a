/* Pre-run checks: everything that can be known wrong before a single iteration runs. Each
 * method's own rules (mk_method_check: the same function its stage calls) and, when the manifest
 * exists, what the method says it needs (modalities, labels, columns) and what evaluate scores. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "../io/mk_manifest.h"
#include "mk_run_stages.h"

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

/* The manifest, or NULL when it does not exist yet (produced by an earlier stage such as synth;
 * checked again once it exists). */
static mk_status open_manifest(mk_run_env *env, mk_manifest **m)
{
    const mk_cfg *cfg = env->cfg;
    const char *path = mk_cfg_str(cfg, "data.manifest");
    *m = NULL;
    if (!mk_fs_is_file(path))
        return MK_OK;
    mk_status st = mk_manifest_read(env->ctx, path, m);
    if (st != MK_OK) {
        env->ctx->status = MK_ERR_CONFIG;
        return mk_err_prefix(env->ctx, "%s:%d: data.manifest", mk_cfg_path(cfg),
                             mk_cfg_line(cfg, "data.manifest"));
    }
    return MK_OK;
}

static mk_status check_needs(mk_run_env *env, const char *stage, const mk_data_need *nd, int n)
{
    const mk_cfg *cfg = env->cfg;
    mk_manifest *m = NULL;
    mk_status st = open_manifest(env, &m);
    if (st != MK_OK || !m)
        return st;
    const char *path = mk_cfg_str(cfg, "data.manifest");
    for (int i = 0; i < n && st == MK_OK; i++) {
        if (count_rows(m, nd[i].modality, "train", nd[i].labelled) == 0)
            st = mk_err(env->ctx, MK_ERR_CONFIG,
                        "stage %s: manifest %s has no %s'%s' rows in split 'train' (modalities "
                        "come from data.ct_modality, data.mri_modality or the stage's own "
                        "modality key)",
                        stage, path, nd[i].labelled ? "labelled " : "", nd[i].modality);
        else if (nd[i].column && mk_manifest_extra_index(m, nd[i].column) < 0)
            st = mk_err(env->ctx, MK_ERR_CONFIG,
                        "%s:%d: key '%s': stage %s: manifest %s has no column '%s' (the paired "
                        "MRI of each CT case; `pipeline synth --paired` or synth.paired = true "
                        "writes it)",
                        mk_cfg_path(cfg), mk_cfg_line(cfg, nd[i].key), nd[i].key, stage, path,
                        nd[i].column);
    }
    mk_manifest_free(m);
    return st;
}

mk_status mk_check_method(mk_run_env *env)
{
    const mk_method *m = env->stage->method;
    mk_stage_common c;
    void *cfg;
    mk_status st = mk_run_method_bind(env, &c, &cfg);
    if (st == MK_OK)
        st = mk_run_keyed_err(env, mk_method_check(env->ctx, m, &c, cfg));
    mk_data_need nd[MK_NEEDS_MAX];
    if (st == MK_OK && m->needs)
        st = check_needs(env, m->name, nd, m->needs(&c, cfg, nd));
    free(cfg);
    return st;
}

mk_status mk_check_evaluate(mk_run_env *env)
{
    const mk_cfg *cfg = env->cfg;
    mk_stage_common c;
    mk_status st = mk_run_common(env, &c);
    if (st != MK_OK)
        return st;
    /* the models evaluate will score: the outputs of the training stages before it */
    int trained = 0;
    const char *paired_key = NULL;
    const char *modality[16];
    int nmod = 0;
    for (int k = 0; k < mk_cfg_list_len(cfg, "run.stages"); k++) {
        const mk_stage_entry *s = mk_runner_find_stage(mk_cfg_list_str(cfg, "run.stages", k));
        if (s == env->stage)
            break;
        for (int o = 0; s && s->method && o < s->method->noutputs; o++) {
            const mk_method_output *out = &s->method->outputs[o];
            if (out->when && !mk_cfg_bool(cfg, out->when))
                continue;
            trained = 1;
            if (out->column)
                paired_key = out->when ? out->when : "run.stages";
            if (nmod < 16)
                modality[nmod++] =
                    out->modality_key ? mk_cfg_str(cfg, out->modality_key) : c.data.ct_modality;
        }
    }
    if (!trained)
        return mk_err(env->ctx, MK_ERR_CONFIG,
                      "%s:%d: key 'run.stages': 'evaluate' needs a training stage before it "
                      "(one that produces a model: cmedl, baseline, supervised, ...)",
                      mk_cfg_path(cfg), mk_cfg_line(cfg, "run.stages"));
    mk_manifest *m = NULL;
    if ((st = open_manifest(env, &m)) != MK_OK || !m)
        return st;
    const char *split = mk_cfg_str(cfg, "evaluate.split"), *path = mk_cfg_str(cfg, "data.manifest");
    for (int i = 0; i < nmod && st == MK_OK; i++)
        if (count_rows(m, modality[i], split, 1) == 0)
            st = mk_err(env->ctx, MK_ERR_CONFIG,
                        "%s:%d: key 'evaluate.split': manifest %s has no labelled '%s' rows in "
                        "split '%s'",
                        mk_cfg_path(cfg), mk_cfg_line(cfg, "evaluate.split"), path, modality[i],
                        split);
    if (st == MK_OK && paired_key && mk_manifest_extra_index(m, MK_STAGE_PAIRED_MR_COLUMN) < 0)
        st = mk_err(env->ctx, MK_ERR_CONFIG,
                    "%s:%d: key '%s': stage evaluate: manifest %s has no column '%s'",
                    mk_cfg_path(cfg), mk_cfg_line(cfg, paired_key), paired_key, path,
                    MK_STAGE_PAIRED_MR_COLUMN);
    mk_manifest_free(m);
    return st;
}
