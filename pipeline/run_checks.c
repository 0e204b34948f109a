/* Pre-run checks: everything that can be known wrong before a single iteration runs. Each
 * method's own rules (mk_method_check: the same function its stage calls) and, when the manifest
 * exists, what the method says it needs (modalities, labels, columns), what evaluate scores, and
 * the data itself (mk_check_data: files, grids, label values). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "../io/mk_manifest.h"
#include "../stages/mk_evaluate.h"
#include "../stages/mk_histo_stage.h"
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

/* A data error found before the run becomes a configuration error (exit 2) prefixed with the
 * config's FILE:LINE of data.manifest. */
static mk_status manifest_err(mk_run_env *env)
{
    const mk_cfg *cfg = env->cfg;
    env->ctx->status = MK_ERR_CONFIG;
    return mk_err_prefix(env->ctx, "%s:%d: data.manifest", mk_cfg_path(cfg),
                         mk_cfg_line(cfg, "data.manifest"));
}

/* The manifest as the stages will see it (mk_data_manifest: a CSV file, or an nnU-Net / MSD
 * dataset folder or its dataset.json, with data.case_table and the seeded validation hold-out),
 * or NULL when it does not exist yet or a stage still to run before the checked one produces it
 * (synth: checked once it has run). */
static mk_status open_manifest(mk_run_env *env, const mk_stage_common *c, mk_manifest **m)
{
    const char *path = c->data.manifest;
    *m = NULL;
    if (!path || (!mk_fs_is_file(path) && !mk_fs_is_dir(path)) || mk_runner_data_pending(env))
        return MK_OK;
    return mk_data_manifest(env->ctx, &c->data, m) == MK_OK ? MK_OK : manifest_err(env);
}

static mk_status check_needs(mk_run_env *env, const mk_stage_common *c, const char *stage,
                             const mk_data_need *nd, int n)
{
    const mk_cfg *cfg = env->cfg;
    mk_manifest *m = NULL;
    mk_status st = open_manifest(env, c, &m);
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
        else if (nd[i].unlabelled && count_rows(m, nd[i].modality, "train", 0) ==
                                         count_rows(m, nd[i].modality, "train", 1))
            st = mk_err(env->ctx, MK_ERR_CONFIG,
                        "%s:%d: key '%s': stage %s: manifest %s has no unlabelled '%s' rows in "
                        "split 'train' (every training case has a label): the co-teacher learns "
                        "from the unlabelled share; leave some cases unlabelled or set %s = 0",
                        mk_cfg_path(cfg), mk_cfg_line(cfg, nd[i].key), nd[i].key, stage, path,
                        nd[i].modality, nd[i].key);
        else if (nd[i].min_labelled > 1 &&
                 count_rows(m, nd[i].modality, "train", 1) < nd[i].min_labelled)
            st = mk_err(env->ctx, MK_ERR_CONFIG,
                        "%s:%d: key '%s': stage %s: asks for %d labelled '%s' training volumes, "
                        "manifest %s has %d (rows of split 'train' with a label)",
                        mk_cfg_path(cfg), mk_cfg_line(cfg, nd[i].key), nd[i].key, stage,
                        nd[i].min_labelled, nd[i].modality, path,
                        count_rows(m, nd[i].modality, "train", 1));
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

/* Under MPI every rank needs at least one sample of each batch the method splits. */
static mk_status check_split(mk_run_env *env, const mk_method *m)
{
    if (!env->dist)
        return MK_OK;
    const mk_cfg *rc = env->cfg;
    int ranks = env->dist->share.ranks;
    for (int k = 0; k < 3 && m->split_batches[k]; k++) {
        const char *key = m->split_batches[k];
        long long b = mk_cfg_int(rc, key);
        if (b < ranks)
            return mk_err(env->ctx, MK_ERR_CONFIG,
                          "%s:%d: key '%s': stage '%s' splits a batch of %lld over %d MPI ranks: "
                          "every rank needs at least one sample (expected %s >= %d, or run fewer "
                          "ranks)",
                          mk_cfg_path(rc), mk_cfg_line(rc, key), key, m->name, b, ranks, key,
                          ranks);
    }
    return MK_OK;
}

mk_status mk_check_method(mk_run_env *env)
{
    const mk_method *m = env->stage->method;
    mk_stage_common c;
    void *cfg;
    mk_status st = mk_run_method_bind(env, &c, &cfg);
    const char *after = st == MK_OK && m->after ? m->after(cfg) : NULL;
    if (after) {
        /* the stage whose models this method reads must run before it */
        const mk_cfg *rc = env->cfg;
        int me = -1, dep = -1;
        for (int k = 0; k < mk_cfg_list_len(rc, "run.stages"); k++) {
            const char *nm = mk_cfg_list_str(rc, "run.stages", k);
            if (!strcmp(nm, m->name) && me < 0)
                me = k;
            if (!strcmp(nm, after) && dep < 0)
                dep = k;
        }
        if (dep < 0 || dep > me)
            st = mk_err(env->ctx, MK_ERR_CONFIG,
                        "%s:%d: key 'run.stages': stage '%s' needs stage '%s' before it (it "
                        "reads the models that stage trains)",
                        mk_cfg_path(rc), mk_cfg_line(rc, "run.stages"), m->name, after);
    }
    if (st == MK_OK)
        st = mk_run_keyed_err(env, mk_method_check(env->ctx, m, &c, cfg));
    if (st == MK_OK)
        st = check_split(env, m);
    mk_data_need nd[MK_NEEDS_MAX];
    if (st == MK_OK && m->needs)
        st = check_needs(env, &c, m->name, nd, m->needs(&c, cfg, nd));
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
    if (mk_cfg_list_len(cfg, "evaluate.report_window") != 2 ||
        !(mk_cfg_list_num(cfg, "evaluate.report_window", 0) <
          mk_cfg_list_num(cfg, "evaluate.report_window", 1)))
        return mk_err(env->ctx, MK_ERR_CONFIG,
                      "%s:%d: key 'evaluate.report_window': expected [low, high] with low < high",
                      mk_cfg_path(cfg), mk_cfg_line(cfg, "evaluate.report_window"));
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
            if (!mk_run_output_on(cfg, out))
                continue;
            trained = 1;
            if (out->column)
                paired_key = out->when && out->when[0] != '!' ? out->when : "run.stages";
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
    if ((st = open_manifest(env, &c, &m)) != MK_OK || !m)
        return st;
    const char *split = mk_cfg_str(cfg, "evaluate.split"), *path = mk_cfg_str(cfg, "data.manifest");
    for (int i = 0; i < nmod && st == MK_OK; i++) {
        const char *use = mk_eval_split(m, modality[i], split); /* "auto": test, else val */
        if (count_rows(m, modality[i], use, 1) == 0)
            st = mk_err(env->ctx, MK_ERR_CONFIG,
                        "%s:%d: key 'evaluate.split': manifest %s has no labelled '%s' rows in "
                        "split '%s'%s",
                        mk_cfg_path(cfg), mk_cfg_line(cfg, "evaluate.split"), path, modality[i],
                        use, strcmp(use, split) ? " (nor in 'test')" : "");
    }
    if (st == MK_OK && paired_key && mk_manifest_extra_index(m, MK_STAGE_PAIRED_MR_COLUMN) < 0)
        st = mk_err(env->ctx, MK_ERR_CONFIG,
                    "%s:%d: key '%s': stage evaluate: manifest %s has no column '%s'",
                    mk_cfg_path(cfg), mk_cfg_line(cfg, paired_key), paired_key, path,
                    MK_STAGE_PAIRED_MR_COLUMN);
    mk_manifest_free(m);
    return st;
}

/* The label values present in the label files of the labelled train rows of one modality. */
typedef struct label_values {
    const char *modality;
    int rows;          /* labelled train rows read */
    int first_row;     /* index of the first (messages) */
    char present[256]; /* value v in 0..255 occurs in at least one file */
    int other;         /* values outside 0..255 (or not integers) occur */
} label_values;

static mk_status read_label_values(mk_run_env *env, const mk_manifest *m, label_values *lv)
{
    for (int r = 0; r < m->nrows; r++) {
        const mk_manifest_row *w = &m->rows[r];
        if (strcmp(w->modality, lv->modality) || strcmp(w->split, "train") || !w->label_path)
            continue;
        mk_image *img = NULL;
        if (mk_io_read_image(env->ctx, w->label_path, &img) != MK_OK) {
            if (w->line > 0)
                mk_err_prefix(env->ctx, "%s:%d: column label", m->source, w->line);
            else
                mk_err_prefix(env->ctx, "%s: case %s: column label", m->source, w->id);
            return manifest_err(env);
        }
        int64_t nv = mk_image_nvox(img);
        if (img->dtype == MK_DT_UINT8) {
            const unsigned char *d = img->data;
            for (int64_t i = 0; i < nv; i++)
                lv->present[d[i]] = 1;
        } else {
            for (int64_t i = 0; i < nv; i++) {
                double v = mk_image_get(img, i);
                if (v >= 0 && v <= 255 && v == floor(v))
                    lv->present[(int)v] = 1;
                else
                    lv->other = 1;
            }
        }
        mk_image_free(img);
        if (lv->rows++ == 0)
            lv->first_row = r;
    }
    return MK_OK;
}

/* Every value of the label mapping (data.label, data.labels, or class c = value c) occurs in some
 * label file of the modality's labelled train rows. */
static mk_status check_label_values(mk_run_env *env, const mk_stage_common *c,
                                    const label_values *lv)
{
    const mk_cfg *cfg = env->cfg;
    const mk_data_params *p = &c->data;
    for (int k = 1; k < p->classes; k++) {
        int v = mk_data_value_of_class(p, k);
        if (v < 0 || v > 255 || lv->present[v])
            continue;
        char found[1024] = "";
        size_t n = 0;
        for (int u = 1; u < 256 && n + 16 < sizeof found; u++)
            if (lv->present[u])
                n += (size_t)snprintf(found + n, sizeof found - n, "%s%d", n ? ", " : "", u);
        if (!n)
            snprintf(found, sizeof found, "none but 0");
        char what[256];
        const char *key;
        if (p->nlabels > 0) {
            key = "data.labels";
            char nb[48];
            snprintf(what, sizeof what, "data.labels value %d (\"%s\")", v,
                     mk_data_class_name(p, k, nb, sizeof nb));
        } else if (p->classes == 2) {
            key = "data.label";
            snprintf(what, sizeof what, "data.label = %d", v);
        } else {
            key = "model.classes";
            snprintf(what, sizeof what, "model.classes = %d (class %d is label value %d)",
                     p->classes, k, v);
        }
        char where[4200];
        if (mk_cfg_line(cfg, key) > 0)
            snprintf(where, sizeof where, "%s:%d: ", mk_cfg_path(cfg), mk_cfg_line(cfg, key));
        else
            snprintf(where, sizeof where, "%s: ", mk_cfg_path(cfg));
        return mk_err(env->ctx, MK_ERR_CONFIG,
                      "%s%s: no label file of the %d labelled %s train row%s holds the value %d "
                      "(values found: %s%s)",
                      where, what, lv->rows, lv->modality, lv->rows == 1 ? "" : "s", v, found,
                      lv->other ? "; and values outside 0..255" : "");
    }
    return MK_OK;
}

/* The dims of `img` once mk_data_prepare has reoriented it (each voxel axis goes to the
 * anatomical axis its direction is nearest, as mk_reorient does) and resampled it (rounded, so
 * within a voxel). From the header alone. */
static void prepared_dims(const mk_data_params *p, const mk_image *img, int64_t out[3])
{
    for (int i = 0; i < 3; i++)
        out[i] = img->ndim > i ? img->dim[i] : 1;
    double sp[3];
    for (int i = 0; i < 3; i++)
        sp[i] = img->geom.spacing[i];
    if (p->slice_axis >= 3 && p->orientation && strlen(p->orientation) == 3) {
        int64_t d[3] = {out[0], out[1], out[2]};
        double s2[3] = {sp[0], sp[1], sp[2]};
        for (int t = 0; t < 3; t++) {
            char l = p->orientation[t];
            int anat = (l == 'R' || l == 'L') ? 0 : (l == 'A' || l == 'P') ? 1 : 2;
            for (int v = 0; v < 3; v++) {
                int best = 0;
                for (int r = 1; r < 3; r++)
                    if (fabs(img->geom.direction[r * 3 + v]) >
                        fabs(img->geom.direction[best * 3 + v]))
                        best = r;
                if (best == anat) {
                    out[t] = d[v];
                    sp[t] = s2[v];
                }
            }
        }
    }
    for (int t = 0; t < 3; t++)
        if (p->spacing[t] > 0 && sp[t] > 0)
            out[t] = (int64_t)floor((double)out[t] * sp[t] / p->spacing[t] + 0.5);
}

/* The patch fits the training slices: a patch larger than every slice along an in-plane axis
 * would only ever be padded there (nnU-Net pads images smaller than its patch, so a patch larger
 * than some slices is fine). Image headers of the train rows of the modalities the stages train
 * on, sized as mk_data_prepare will make them (a voxel of slack when resampling rounds). */
static mk_status check_patch(mk_run_env *env, const mk_stage_common *c, const mk_manifest *m,
                             const char *const *mods, int nmods)
{
    const mk_data_params *p = &c->data;
    if (nmods == 0)
        return MK_OK;
    int ax = mk_data_axis(p), a0 = ax == 0 ? 1 : 0, a1 = ax == 2 ? 1 : 2;
    int64_t big[2] = {0, 0};
    int rows = 0;
    for (int r = 0; r < m->nrows; r++) {
        const mk_manifest_row *w = &m->rows[r];
        int want = 0;
        for (int i = 0; i < nmods; i++)
            want |= !strcmp(w->modality, mods[i]);
        if (!want || strcmp(w->split, "train"))
            continue;
        mk_image *img = NULL;
        if (mk_io_read_header(env->ctx, w->image_path, &img) != MK_OK) {
            mk_err_prefix(env->ctx, "%s:%d: column image", m->source, w->line);
            return manifest_err(env);
        }
        if (img->ndim >= 2) {
            int64_t pd[3];
            prepared_dims(p, img, pd);
            int64_t d0 = pd[a0], d1 = pd[a1];
            big[0] = d0 > big[0] ? d0 : big[0];
            big[1] = d1 > big[1] ? d1 : big[1];
            rows++;
        }
        mk_image_free(img);
    }
    int slack = p->spacing[0] > 0 || p->spacing[1] > 0 || p->spacing[2] > 0;
    if (rows == 0 || (p->patch[0] <= big[0] + slack && p->patch[1] <= big[1] + slack))
        return MK_OK;
    const mk_cfg *cfg = env->cfg;
    char where[4200];
    if (mk_cfg_line(cfg, "data.patch") > 0)
        snprintf(where, sizeof where, "%s:%d: ", mk_cfg_path(cfg), mk_cfg_line(cfg, "data.patch"));
    else
        snprintf(where, sizeof where, "%s: ", mk_cfg_path(cfg));
    return mk_err(env->ctx, MK_ERR_CONFIG,
                  "%skey 'data.patch': [%d, %d] is larger than every training slice (the largest "
                  "of the %d train row%s is %lld x %lld voxels across data.slice_axis): every "
                  "patch would be padded; expected at most [%lld, %lld]",
                  where, p->patch[0], p->patch[1], rows, rows == 1 ? "" : "s", (long long)big[0],
                  (long long)big[1], (long long)big[0], (long long)big[1]);
}

mk_status mk_check_data(mk_run_env *env)
{
    const mk_cfg *cfg = env->cfg;
    const mk_stage_entry *saved = env->stage;
    mk_stage_common c;
    mk_status st = mk_run_common(env, &c);
    if (st != MK_OK)
        return st;
    mk_manifest *m = NULL;
    if ((st = open_manifest(env, &c, &m)) != MK_OK || !m)
        return st;
    /* every file of every row exists, and every label lies on its image's grid */
    if (mk_manifest_check_files(env->ctx, m) != MK_OK)
        st = manifest_err(env);
    for (int r = 0; r < m->nrows && st == MK_OK; r++)
        if (mk_manifest_check_grid(env->ctx, m, r) != MK_OK)
            st = manifest_err(env);
    /* the modalities the training stages still to run learn with labels */
    const char *mods[16], *tmods[16];
    int nmods = 0, ntmods = 0;
    int n = mk_cfg_list_len(cfg, "run.stages");
    for (int i = env->from; i < n && st == MK_OK; i++) {
        const mk_stage_entry *s = mk_runner_find_stage(mk_cfg_list_str(cfg, "run.stages", i));
        if (!s || !s->method || !s->method->needs)
            continue;
        env->stage = s;
        mk_stage_common sc;
        void *mcfg = NULL;
        mk_data_need nd[MK_NEEDS_MAX];
        if ((st = mk_run_method_bind(env, &sc, &mcfg)) != MK_OK)
            break;
        if (s->method->classifier) {
            /* slides and masks: headers, levels and patch sizes (stages/histo.c) */
            for (int u = 0; u < s->method->nuses && st == MK_OK; u++)
                if (s->method->uses[u].section == &mk_histo_section)
                    st = mk_histo_precheck(
                        env->ctx, m,
                        (const mk_histo_params *)((char *)mcfg + s->method->uses[u].offset));
            free(mcfg);
            if (st != MK_OK)
                st = mk_run_keyed_err(env, st);
            continue;
        }
        int nn = s->method->needs(&sc, mcfg, nd);
        for (int k = 0; k < nn; k++) {
            int seen = 0;
            for (int j = 0; j < nmods; j++)
                seen |= !strcmp(mods[j], nd[k].modality);
            if (nd[k].labelled && !seen && nmods < 16)
                mods[nmods++] = nd[k].modality; /* borrowed from the config */
            int tseen = 0;
            for (int j = 0; j < ntmods; j++)
                tseen |= !strcmp(tmods[j], nd[k].modality);
            if (!tseen && ntmods < 16)
                tmods[ntmods++] = nd[k].modality;
        }
        free(mcfg);
    }
    env->stage = saved;
    if (st == MK_OK)
        st = check_patch(env, &c, m, tmods, ntmods);
    /* every value of the label mapping occurs in some label file of those rows */
    for (int i = 0; i < nmods && st == MK_OK; i++) {
        label_values lv;
        memset(&lv, 0, sizeof lv);
        lv.modality = mods[i];
        st = read_label_values(env, m, &lv);
        if (st == MK_OK && lv.rows > 0)
            st = check_label_values(env, &c, &lv);
    }
    mk_manifest_free(m);
    return st;
}
