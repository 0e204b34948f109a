/* Method `cmedl`: cross-modality educed distillation (methods.md section 1). The translator
 * (continued from models/translator.h5 when present), an MRI teacher and a CT student in one graph
 * per iteration: generator losses + w_seg_teacher x the teacher's segmentation loss on G(x_ct)
 * with the CT mask (and on real labelled MRI) + w_seg_student x the student's on x_ct +
 * lambda_hint x the hint MSE between the student's features on x_ct and the teacher's on G(x_ct);
 * one backward; Adam steps of G, F, teacher, student; then the discriminator step.
 * Writes models/cmedl_student.h5, cmedl_teacher.h5 and cmedl_translator.h5. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_fs.h"
#include "mk_method.h"
#include "nn/mk_nn_blocks.h"
#include "stage_internal.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
typedef mk_cmedl_params P;

static const mk_param_row ROWS[] = {
    MK_P_INT(P, iterations, "iterations", "1500", 1, 1e9, "joint training iterations"),
    MK_P_INT(P, batch, "batch", "4", 1, 1024, "labelled CT slices (and MRI slices) per batch"),
    MK_P_FLOAT(P, lr, "lr", "1e-3", 0, 1, "Adam learning rate of teacher and student"),
    MK_P_NAMES(P, hint_layers, "hint_layers", "[\"dec_prev\", \"dec_last\"]",
               "feature maps tied by the hint loss: encN, bottleneck, decN, logits, dec_last, "
               "dec_prev"),
    MK_P_FLOAT(P, lambda_hint, "lambda_hint", "0.1", 0, 1e6,
               "weight of the hint (feature distillation) loss"),
    MK_P_FLOAT(P, w_seg_student, "w_seg_student", "1.0", 0, 1e6,
               "weight of the student's segmentation loss"),
    MK_P_FLOAT(P, w_seg_teacher, "w_seg_teacher", "1.0", 0, 1e6,
               "weight of the teacher's segmentation loss (pseudo-MRI and MRI)"),
    MK_P_FLOAT(P, dice_weight, "dice_weight", "0.5", 0, 1, "segmentation loss = w*Dice + (1-w)*CE"),
    MK_P_BOOL(P, hint_to_teacher, "hint_to_teacher", "false",
              "let the hint loss update the teacher too"),
    MK_P_BOOL(P, seg_to_i2i, "seg_to_i2i", "true",
              "let the teacher's loss on pseudo-MRI update the translator"),
    MK_P_FLOAT(P, w_seg_i2i, "w_seg_i2i", "1.0", 0, 1e6,
               "with seg_to_i2i: factor on the gradient the loss on pseudo-MRI sends into the "
               "translator"),
    MK_P_FLOAT(P, lambda_tumour_i2i, "lambda_tumour_i2i", "0.0", 0, 1e6,
               "extension: weight of a loss pulling the pseudo-MRI inside the CT mask to the real "
               "MRI tumours' mean value (needs labelled MRI)"),
    MK_P_CHOICE(P, teacher_init_student, "teacher_init", "own", "own|student",
                "teacher's initial weights: its own random draw, or a copy of the student's"),
    MK_P_INT(P, hint_rampup, "hint_rampup", "0", 0, 1e9,
             "iterations over which lambda_hint ramps up as exp(-5 (1 - t)^2) (0: full weight "
             "from the start)"),
    MK_P_CHOICE(P, hint_teacher_correct, "hint_where", "all", "all|teacher_correct",
                "positions the hint loss counts: all, or only where the teacher's prediction on "
                "pseudo-MRI is right"),
    MK_P_FLOAT(P, ema, "ema", "0.0", 0, 0.99999,
               "> 0: save the moving average of the student's weights with this decay (CMEDL and "
               "baseline alike)"),
    MK_P_BOOL(P, teacher_mri_labels, "teacher_mri_labels", "true",
              "the teacher also learns on real MRI with its masks (when every MRI train row has "
              "one)"),
    MK_P_BOOL(P, teacher_learns_pmri, "teacher_learns_pmri", "true",
              "the teacher's loss on pseudo-MRI (CT masks) trains the teacher; false: only the "
              "translator, through a frozen copy of a teacher that learns on real MRI alone "
              "(tumour-aware translation)"),
    MK_P_BOOL(P, oracle_pmri, "oracle_pmri", "false",
              "diagnostic: the teacher sees each CT slice's paired MR rendering (manifest column "
              "paired_mr, synth.paired) instead of the pseudo-MRI: perfect translation, an upper "
              "bound"),
    MK_P_BOOL(P, hint_pseudo_ct, "hint_pseudo_ct", "false",
              "extension: also tie the student's features on pseudo-CT F(MRI) to the teacher's on "
              "that MRI"),
    MK_P_FLOAT(P, w_seg_pseudo_ct, "w_seg_pseudo_ct", "0.0", 0, 1e6,
               "extension: weight of the student's segmentation loss on pseudo-CT F(MRI) with the "
               "MRI mask"),
    MK_P_CHOICE(P, schedule, "schedule", "constant", "constant|poly|cosine",
                "learning-rate schedule of teacher and student (poly: power 0.9, as nnU-Net)"),
    MK_P_BOOL(P, unlabelled_hint, "unlabelled_hint", "false",
              "semi-supervised reading: also compute the hint loss on CT slices without labels "
              "(CT train rows without a label, and labelled rows beyond data.ct_train_cases)"),
    MK_P_FLOAT(P, lambda_hint_unlabelled, "lambda_hint_unlabelled", "0.1", 0, 1e6,
               "with unlabelled_hint: weight of the hint loss on unlabelled CT (ramped like "
               "lambda_hint)"),
};
const mk_param_section mk_cmedl_section = {
    "cmedl", "cross-modality educed distillation: MRI teacher guides a CT student", ROWS, N(ROWS)};

void mk_cmedl_defaults(mk_cmedl_params *p)
{
    memset(p, 0, sizeof *p);
    mk_param_defaults(ROWS, N(ROWS), p);
}

/* Weight of the hint loss at iteration it: lambda * exp(-5 (1 - it/R)^2) during a ramp-up of R
 * iterations (the sigmoid-shaped ramp of the mean-teacher literature), lambda afterwards. */
float mk_cmedl_hint_weight(const mk_cmedl_params *p, long long it)
{
    if (p->hint_rampup <= 0 || it >= p->hint_rampup)
        return p->lambda_hint;
    return (float)((double)p->lambda_hint *
                   mk_nn_sigmoid_rampup((double)it, (double)p->hint_rampup));
}

/* ---------------------------------------------------------------- hint layer names */

mk_status mk_stage_hint_check(mk_ctx *ctx, const char *key, int levels, int n,
                              const char names[][32], char resolved[][32])
{
    char valid[64][32];
    int nv = 0;
    for (int i = 0; i + 1 < levels && nv < 60; i++)
        snprintf(valid[nv++], 32, "enc%d", i);
    snprintf(valid[nv++], 32, "bottleneck");
    for (int i = 0; i + 1 < levels && nv < 62; i++)
        snprintf(valid[nv++], 32, "dec%d", i);
    snprintf(valid[nv++], 32, "logits");
    for (int k = 0; k < n; k++) {
        char want[32];
        snprintf(want, sizeof want, "%s", names[k]);
        if (strcmp(want, "dec_last") == 0 && levels >= 2)
            snprintf(want, sizeof want, "dec%d", levels - 2);
        else if (strcmp(want, "dec_prev") == 0 && levels >= 3)
            snprintf(want, sizeof want, "dec%d", levels - 3);
        int ok = 0;
        for (int i = 0; i < nv && !ok; i++)
            ok = strcmp(valid[i], want) == 0;
        if (!ok) {
            char list[1024] = "";
            for (int i = 0; i < nv; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                         valid[i]);
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                     levels >= 2 ? ", dec_last" : "", levels >= 3 ? ", dec_prev" : "");
            return mk_err(ctx, MK_ERR_CONFIG,
                          "%s[%d]: '%s' is not a feature map "
                          "of the U-Net with %d levels; valid names: %s",
                          key, k, names[k], levels, list);
        }
        if (resolved)
            snprintf(resolved[k], 32, "%s", want);
    }
    if (n < 1)
        return mk_err(ctx, MK_ERR_CONFIG, "%s: expected at least one layer name", key);
    return MK_OK;
}

/* ---------------------------------------------------------------- the method */

typedef struct mk_cmedl_cfg {
    mk_translate_params tp;
    mk_cmedl_params cp;
} cfg_t;

typedef struct state {
    const mk_translate_params *tp;
    const mk_cmedl_params *cp;
    mk__i2i t;
    int ct, mr, unl;           /* streams (unl: -1 without unlabelled_hint) */
    int teacher, student, ema; /* nets (ema: -1 without cmedl.ema) */
    mk_unet *judge; /* frozen copy of the teacher for pseudo-MRI (teacher_learns_pmri 0) */
    mk_tensor xo;   /* the CT batch's paired MRI (oracle_pmri) */
    mk_tensor xu;   /* unlabelled CT batch */
    mk_tensor hint_tgt[MK_HINT_MAX]; /* masked hint targets (hint_teacher_correct) */
    mk_tensor tum_tgt;               /* pseudo-MRI target of the tumour-contrast loss */
    float mr_tumour_mean;
    uint8_t *tmask;
    char hint[MK_HINT_MAX][32];
} state;

static mk_status check(mk_ctx *ctx, const mk_stage_common *c, const void *cfgp)
{
    const mk_cmedl_params *cp = &((const cfg_t *)cfgp)->cp;
    if (c->unet.classes != 2 && cp->hint_teacher_correct)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "cmedl.hint_where = \"teacher_correct\": needs "
                      "model.classes = 2");
    if (cp->hint_layers.n > MK_HINT_MAX)
        return mk_err(ctx, MK_ERR_CONFIG, "cmedl.hint_layers: expected 1 to %d layer names",
                      MK_HINT_MAX);
    mk_status st = mk_stage_hint_check(ctx, "cmedl.hint_layers", c->unet.levels, cp->hint_layers.n,
                                       (const char(*)[32])cp->hint_layers.v, NULL);
    if (st != MK_OK)
        return st;
    if (cp->oracle_pmri && !cp->teacher_learns_pmri)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "cmedl.oracle_pmri: the teacher then learns on the "
                      "oracle pseudo-MRI, which needs cmedl.teacher_learns_pmri = true");
    if (!cp->teacher_learns_pmri && (!cp->seg_to_i2i || cp->hint_to_teacher))
        return mk_err(ctx, MK_ERR_CONFIG,
                      "cmedl.teacher_learns_pmri = false needs "
                      "seg_to_i2i = true (the loss on pseudo-MRI then trains only the "
                      "translator) and hint_to_teacher = false");
    if (!cp->teacher_learns_pmri && !cp->teacher_mri_labels)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "cmedl.teacher_learns_pmri = false: the teacher then "
                      "learns on real MRI only, which needs teacher_mri_labels = true");
    return MK_OK;
}

static int needs(const mk_stage_common *c, const void *cfgp, mk_data_need *out)
{
    const mk_cmedl_params *cp = &((const cfg_t *)cfgp)->cp;
    out[0] =
        (mk_data_need){c->data.ct_modality, 1, cp->oracle_pmri ? MK_STAGE_PAIRED_MR_COLUMN : NULL,
                       "cmedl.oracle_pmri", 0, 0};
    out[1] = (mk_data_need){c->data.mri_modality, 0, NULL, NULL, 0, 0};
    return 2;
}

static long long iterations(const void *cfgp)
{
    return ((const cfg_t *)cfgp)->cp.iterations;
}

static mk_status init(mk_loop *L, void *sp, const void *cfgp)
{
    state *s = sp;
    const cfg_t *cfg = cfgp;
    const mk_cmedl_params *cp = &cfg->cp;
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    uint64_t seed = c->seed;
    s->tp = &cfg->tp;
    s->cp = cp;
    s->unl = -1;
    s->ema = -1;
    mk_status st = mk_stage_hint_check(ctx, "cmedl.hint_layers", c->unet.levels, cp->hint_layers.n,
                                       (const char(*)[32])cp->hint_layers.v, s->hint);
    if (st != MK_OK)
        return st;
    mk_data_params dct = c->data;
    if (cp->oracle_pmri)
        dct.paired_column = MK_STAGE_PAIRED_MR_COLUMN;
    dct.skip_unlabelled = cp->unlabelled_hint; /* unlabelled rows feed the hint stream only */
    if ((st = mk__load_data(L, &dct, c->data.ct_modality, 1, 100, "ct", 30, &s->ct)) != MK_OK ||
        (st = mk__load_data(L, &c->data, c->data.mri_modality, 0, 101, "mr", 31, &s->mr)) != MK_OK)
        return st;
    if (cp->unlabelled_hint) {
        mk_data_params du = c->data;
        du.unlabelled_rest = 1;
        if ((st = mk__load_data(L, &du, c->data.ct_modality, 0, 102, "ct_unlabelled", 33,
                                &s->unl)) != MK_OK)
            return st;
        const mk_slices *u = mk_loop_slices(L, s->unl);
        MK_LOG_I(ctx, "cmedl: %lld unlabelled CT slices from %d volumes for the hint loss",
                 (long long)u->n, u->volumes);
    }
    mk_slices *ct = mk_loop_slices(L, s->ct), *mr = mk_loop_slices(L, s->mr);
    if (cp->lambda_tumour_i2i > 0) {
        if (!mr->lab)
            return mk_err(ctx, MK_ERR_CONFIG,
                          "cmedl.lambda_tumour_i2i > 0 needs a mask for every "
                          "MRI training row (the target is the real MRI tumours' mean value)");
        double sum = 0;
        int64_t cnt = 0, np = mr->n * (int64_t)mr->ch * mr->cw;
        for (int64_t q = 0; q < np; q++)
            if (mr->lab[q]) {
                sum += mr->img[q];
                cnt++;
            }
        if (cnt == 0)
            return mk_err(ctx, MK_ERR_CONFIG,
                          "cmedl.lambda_tumour_i2i > 0: the MRI training masks "
                          "hold no voxel of label %d",
                          c->data.label);
        s->mr_tumour_mean = (float)(sum / (double)cnt);
        MK_LOG_I(ctx, "cmedl: tumour-contrast target for the pseudo-MRI %.3f (%lld MRI voxels)",
                 s->mr_tumour_mean, (long long)cnt);
    }
    if (mr->lab && !cp->teacher_mri_labels) {
        free(mr->lab);
        mr->lab = NULL;
    }
    if (!cp->teacher_learns_pmri && !mr->lab)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "cmedl.teacher_learns_pmri = false: the teacher "
                      "then learns on real MRI only, which needs teacher_mri_labels = true "
                      "and a mask for every MRI training row");
    MK_LOG_I(ctx, "cmedl: %lld CT slices (%lld with the structure) from %d volumes",
             (long long)ct->n, (long long)ct->n_fg, ct->volumes);
    MK_LOG_I(ctx, "cmedl: %lld MRI slices (%s) from %d volumes", (long long)mr->n,
             mr->lab ? "labelled" : "unlabelled", mr->volumes);
    if ((st = mk__i2i_init(L, &s->t, s->tp, cp->batch)) != MK_OK)
        return st;
    /* networks: each from its own seed stream, the same in every stage */
    s->teacher = mk_loop_add_unet(L, "teacher", &c->unet,
                                  mk__seed(seed, cp->teacher_init_student ? 21 : 20));
    s->student = s->teacher < 0 ? -1 : mk_loop_add_unet(L, "student", &c->unet, mk__seed(seed, 21));
    if (s->student < 0)
        return ctx->status;
    if (!cp->teacher_learns_pmri) {
        if ((st = mk_unet_new(ctx, &c->unet, mk__seed(seed, 20), &s->judge)) != MK_OK)
            return st;
        mk_nn_params_set_frozen(mk_unet_params(s->judge), "", 1);
    }
    mk_sched sched = mk_method_sched(cp->schedule, cp->lr, cp->iterations);
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    oc.lr = cp->lr;
    if ((st = mk_loop_add_optim(L, s->teacher, &oc, &sched)) != MK_OK ||
        (st = mk_loop_add_optim(L, s->student, &oc, &sched)) != MK_OK)
        return st;
    if (cp->ema > 0 &&
        (s->ema = mk_loop_add_ema(L, "student_ema", s->student, cp->ema, mk__seed(seed, 21))) < 0)
        return ctx->status;
    int64_t ne[4] = {cp->batch, 1, c->data.patch[1], c->data.patch[0]};
    if ((ct->img2 && mk_tensor_new(&s->xo, 4, ne)) || (s->unl >= 0 && mk_tensor_new(&s->xu, 4, ne)))
        return mk_err(ctx, MK_ERR_NOMEM, "cmedl: out of memory (batches)");
    return MK_OK;
}

static mk_status start(mk_loop *L, void *sp, int resumed)
{
    state *s = sp;
    mk_ctx *ctx = mk_loop_ctx(L);
    const mk_stage_common *c = mk_loop_common(L);
    if (!resumed) {
        char tpath[4200];
        snprintf(tpath, sizeof tpath, "%s/models/translator.h5", c->run_dir);
        if (mk_fs_is_file(tpath)) {
            if (mk_loop_load_nets(L, tpath, "translator", s->t.net, 4) != MK_OK)
                return mk_err_prefix(ctx, "cmedl: translator from the translate stage");
            MK_LOG_I(ctx, "cmedl: translator continues from %s", tpath);
        }
    }
    MK_LOG_I(ctx, "cmedl: student U-Net %d levels, width %d: %lld parameters", c->unet.levels,
             c->unet.base, (long long)mk_nn_params_numel(mk_loop_params(L, s->student)));
    return MK_OK;
}

/* Target for the hint at one layer when only teacher-correct positions count (the mask is
 * computed at k == 0, once per step). Returns the target tensor or NULL (out of memory). */
static mk_tensor *masked_hint_target(state *s, int k, const mk_tensor *tl, const mk_tensor *tf,
                                     const mk_tensor *sf)
{
    int64_t B = tl->ne[0], H = tl->ne[2], W = tl->ne[3];
    if (!s->tmask && !(s->tmask = malloc((size_t)(B * H * W))))
        return NULL;
    if (k == 0)
        mk__hint_correct_mask(tl, s->t.yc, s->tmask);
    mk_tensor *o = &s->hint_tgt[k];
    if (!o->data || !mk_tensor_same_shape(o, tf)) {
        mk_tensor_free(o);
        if (mk_tensor_new(o, tf->ndim, tf->ne) != 0)
            return NULL;
    }
    mk__hint_masked_target(s->tmask, H, W, tf, sf, o);
    return o;
}

void mk__hint_correct_mask(const mk_tensor *logits, const int32_t *y, uint8_t *mask)
{
    int64_t B = logits->ne[0], plane = logits->ne[2] * logits->ne[3];
    for (int64_t b = 0; b < B; b++) {
        const float *lg = logits->data + b * 2 * plane;
        for (int64_t i = 0; i < plane; i++)
            mask[b * plane + i] = (lg[plane + i] > lg[i]) == (y[b * plane + i] != 0);
    }
}

void mk__hint_masked_target(const uint8_t *mask, int64_t H, int64_t W, const mk_tensor *tf,
                            const mk_tensor *sf, mk_tensor *out)
{
    int64_t B = tf->ne[0], C = tf->ne[1], h = tf->ne[2], w = tf->ne[3], sy = H / h, sx = W / w;
    for (int64_t b = 0; b < B; b++)
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++) {
                int ok = 1;
                for (int64_t dy = 0; dy < sy && ok; dy++)
                    for (int64_t dx = 0; dx < sx && ok; dx++)
                        ok = mask[b * H * W + (y * sy + dy) * W + x * sx + dx];
                for (int64_t c = 0; c < C; c++) {
                    int64_t q = ((b * C + c) * h + y) * w + x;
                    out->data[q] = ok ? tf->data[q] : sf->data[q];
                }
            }
}

static mk_status step(mk_loop *L, void *sp, mk_terms *terms)
{
    state *s = sp;
    mk__i2i *t = &s->t;
    const mk_cmedl_params *cp = s->cp;
    mk_ctx *ctx = mk_loop_ctx(L);
    mk_nn_graph *g = mk_loop_graph(L);
    const mk_slices *mrs = mk_loop_slices(L, s->mr);
    int mr_lab = mrs->lab != NULL;
    mk_loop_batch(L, s->ct, cp->batch, &t->xc, t->yc, &s->xo);
    mk_loop_batch(L, s->mr, cp->batch, &t->xm, t->ym, NULL);

    /* generators, teacher and student in one graph: one backward of the weighted sum */
    mk__i2i_freeze_d(L, t, 1);
    mk_nn_graph_begin(g, 1);
    mk_var *xc = mk_nn_input(g, &t->xc, 0), *xm = mk_nn_input(g, &t->xm, 0), *fake_m, *fake_c;
    mk_var *total = mk__i2i_gen(L, t, s->tp, xc, xm, &fake_m, &fake_c);
    if (cp->lambda_tumour_i2i > 0 && fake_m) {
        /* tumour contrast: G(x_ct) inside the CT mask towards the real MRI tumours' mean;
         * elsewhere the target is G's own value, which adds nothing to loss or gradient */
        if (!s->tum_tgt.data && mk_tensor_new(&s->tum_tgt, 4, fake_m->t.ne) != 0)
            return mk_err(ctx, MK_ERR_NOMEM, "cmedl: out of memory (tumour target)");
        /* the voxel and tumour counts of the whole batch (data parallelism: every rank's) */
        int64_t n = mk_tensor_numel(&fake_m->t), rows = fake_m->t.ne[0], per = n / rows;
        double cnt[1024];
        MK_ASSERT(rows <= 1024);
        for (int64_t r = 0; r < rows; r++) {
            int64_t c = 0;
            for (int64_t q = r * per; q < (r + 1) * per; q++) {
                int tum = t->yc[q] != 0;
                s->tum_tgt.data[q] = tum ? s->mr_tumour_mean : fake_m->t.data[q];
                c += tum;
            }
            cnt[r] = (double)c;
        }
        double nt = mk_loop_sum_rows(L, &fake_m->t, cnt);
        double nall = (double)per * (double)(fake_m->t.batch_of ? fake_m->t.batch_of : rows);
        if (nt > 0)
            total = mk_nn_add(g, total,
                              mk_nn_scale(g, mk_nn_mse(g, fake_m, mk_nn_input(g, &s->tum_tgt, 0)),
                                          cp->lambda_tumour_i2i * (float)nall / (float)nt));
    }
    if (mk_nn_graph_oom(g) || !total)
        return mk_err(ctx, MK_ERR_NOMEM, "cmedl: out of memory in the forward pass");
    double l_gen = mk_nn_value(total);
    mk__i2i_keep_fakes(t, fake_m, fake_c);

    mk_var *tf[MK_HINT_MAX] = {0}, *sf[MK_HINT_MAX] = {0}, *tfm[MK_HINT_MAX] = {0};
    int nh = cp->hint_layers.n;
    int mirror = cp->hint_pseudo_ct || (cp->w_seg_pseudo_ct > 0 && mr_lab);
    mk_var *tin = cp->seg_to_i2i ? fake_m : mk_nn_input(g, &t->fake_m, 0);
    if (cp->seg_to_i2i && cp->w_seg_i2i != 1.0f) /* identity; gradient x w_seg_i2i */
        tin = mk_nn_grad_reverse(g, tin, -cp->w_seg_i2i);
    if (cp->oracle_pmri) /* the perfect translation: the CT anatomy imaged as MR */
        tin = mk_nn_input(g, &s->xo, 0);
    mk_unet *teacher = mk_loop_unet(L, s->teacher), *tnet = teacher;
    if (s->judge) {
        /* the teacher's current weights, frozen: its loss on pseudo-MRI reaches only G */
        mk_status cs = mk_nn_params_copy(ctx, mk_unet_params(s->judge), mk_unet_params(teacher));
        if (cs != MK_OK)
            return cs;
        tnet = s->judge;
    }
    mk_var *tlog = mk_unet_forward(tnet, g, tin);
    for (int k = 0; k < nh; k++)
        tf[k] = mk_nn_find(g, s->hint[k]);
    mk_var *lt = mk_method_seg_loss(g, tlog, t->yc, cp->dice_weight);
    if (mr_lab || cp->hint_pseudo_ct) {
        mk_var *tm = mk_unet_forward(teacher, g, xm);
        for (int k = 0; k < nh; k++)
            tfm[k] = mk_nn_find(g, s->hint[k]);
        if (mr_lab)
            lt = mk_nn_add(g, lt, mk_method_seg_loss(g, tm, t->ym, cp->dice_weight));
    }
    double l_teacher = lt ? mk_nn_value(lt) : 0;
    total = mk_nn_add(g, total, mk_nn_scale(g, lt, cp->w_seg_teacher));
    mk_var *sl = mk_unet_forward(mk_loop_unet(L, s->student), g, xc);
    mk_var *ls = mk_method_seg_loss(g, sl, t->yc, cp->dice_weight);
    if (!ls)
        return mk_err(ctx, MK_ERR_NOMEM, "cmedl: out of memory in the forward pass");
    double l_student = mk_nn_value(ls);
    total = mk_nn_add(g, total, mk_nn_scale(g, ls, cp->w_seg_student));
    mk_var *hint = NULL;
    for (int k = 0; k < nh; k++) {
        sf[k] = mk_nn_find(g, s->hint[k]);
        MK_ASSERT(tf[k] && sf[k] && sf[k] != tf[k]);
        mk_var *target;
        if (cp->hint_teacher_correct) {
            mk_tensor *mt = masked_hint_target(s, k, &tlog->t, &tf[k]->t, &sf[k]->t);
            if (!mt)
                return mk_err(ctx, MK_ERR_NOMEM, "cmedl: out of memory (hint mask)");
            target = mk_nn_input(g, mt, 0);
        } else {
            target = cp->hint_to_teacher ? tf[k] : mk_nn_input(g, &tf[k]->t, 0);
        }
        mk_var *h = mk_nn_mse(g, sf[k], target);
        hint = hint ? mk_nn_add(g, hint, h) : h;
    }
    if (mirror) {
        /* the student on pseudo-CT F(x_mr) (detached), against the teacher on x_mr */
        mk_var *pl = mk_unet_forward(mk_loop_unet(L, s->student), g, mk_nn_input(g, &t->fake_c, 0));
        for (int k = 0; cp->hint_pseudo_ct && k < nh; k++) {
            mk_var *s2 = mk_nn_find(g, s->hint[k]);
            MK_ASSERT(tfm[k] && s2 && s2 != tfm[k]);
            hint = mk_nn_add(g, hint, mk_nn_mse(g, s2, mk_nn_input(g, &tfm[k]->t, 0)));
        }
        if (cp->w_seg_pseudo_ct > 0 && mr_lab)
            total = mk_nn_add(g, total,
                              mk_nn_scale(g, mk_method_seg_loss(g, pl, t->ym, cp->dice_weight),
                                          cp->w_seg_pseudo_ct));
    }
    double l_hint = hint ? mk_nn_value(hint) : 0;
    float wh = mk_cmedl_hint_weight(cp, mk_loop_iter(L));
    total = mk_nn_add(g, total, mk_nn_scale(g, hint, wh));
    double l_unl = 0;
    float wu = 0;
    if (s->unl >= 0) {
        /* semi-supervised: the same hint on CT slices without labels. The teacher's features on
         * their pseudo-MRI G(x_u) are the (detached) target; no segmentation loss on them. */
        mk_loop_batch(L, s->unl, cp->batch, &s->xu, NULL, NULL);
        mk_var *xu = mk_nn_input(g, &s->xu, 0);
        mk_var *gu = mk_translator_forward(mk_loop_translator(L, t->net[0]), g, xu);
        if (!gu)
            return mk_err(ctx, MK_ERR_NOMEM, "cmedl: out of memory in the forward pass");
        mk_var *pu = mk_nn_input(g, &gu->t, 0);
        mk_var *tfu[MK_HINT_MAX] = {0}, *hu = NULL;
        mk_unet_forward(tnet, g, pu);
        for (int k = 0; k < nh; k++)
            tfu[k] = mk_nn_find(g, s->hint[k]);
        mk_unet_forward(mk_loop_unet(L, s->student), g, xu);
        for (int k = 0; k < nh; k++) {
            mk_var *su = mk_nn_find(g, s->hint[k]);
            MK_ASSERT(tfu[k] && su && su != tfu[k]);
            mk_var *h = mk_nn_mse(g, su, mk_nn_input(g, &tfu[k]->t, 0));
            hu = hu ? mk_nn_add(g, hu, h) : h;
        }
        l_unl = hu ? mk_nn_value(hu) : 0;
        wu = cp->lambda_hint > 0 ? cp->lambda_hint_unlabelled * wh / cp->lambda_hint
                                 : cp->lambda_hint_unlabelled;
        total = mk_nn_add(g, total, mk_nn_scale(g, hu, wu));
    }
    if (mk_nn_graph_oom(g) || !total)
        return mk_err(ctx, MK_ERR_NOMEM, "cmedl: out of memory in the forward pass");
    mk_nn_backward(g, total);
    mk_loop_optim_step(L, t->net[0]);
    mk_loop_optim_step(L, t->net[1]);
    mk_loop_optim_step(L, s->teacher);
    mk_loop_optim_step(L, s->student);
    double l_disc = 0;
    mk_status st = mk__i2i_disc(L, t, &l_disc);
    mk_terms_add(terms, "loss_s", l_student, cp->w_seg_student);
    mk_terms_add(terms, "loss_t", l_teacher, cp->w_seg_teacher);
    mk_terms_add(terms, "hint", l_hint, wh);
    if (s->unl >= 0)
        mk_terms_add(terms, "hint_unl", l_unl, wu);
    mk_terms_add(terms, "gen", l_gen, 1);
    mk_terms_add(terms, "disc", l_disc, 1);
    return st;
}

static mk_status save(mk_loop *L, void *sp)
{
    state *s = sp;
    mk_status st;
    if ((st = mk_loop_save_unet(L, "cmedl_student.h5", s->ema >= 0 ? s->ema : s->student,
                                mk_loop_common(L)->data.ct_modality, "student")) != MK_OK ||
        (st = mk_loop_save_unet(L, "cmedl_teacher.h5", s->teacher,
                                mk_loop_common(L)->data.mri_modality, "teacher")) != MK_OK)
        return st;
    return mk__i2i_save(L, &s->t, "cmedl_translator.h5");
}

static void free_state(void *sp)
{
    state *s = sp;
    mk__i2i_free(&s->t);
    mk_unet_free(s->judge);
    mk_tensor_free(&s->xo);
    mk_tensor_free(&s->xu);
    for (int k = 0; k < MK_HINT_MAX; k++)
        mk_tensor_free(&s->hint_tgt[k]);
    mk_tensor_free(&s->tum_tgt);
    free(s->tmask);
}

static const mk_method_use USES[] = {
    {&mk_cmedl_section, offsetof(cfg_t, cp)},
    {&mk_translate_section, offsetof(cfg_t, tp)},
};

static const mk_method_output OUTPUTS[] = {
    {"cmedl", "models/cmedl_student.h5", NULL, NULL, NULL, NULL},
    {"pmri_teacher", "models/cmedl_teacher.h5", "models/cmedl_translator.h5", NULL,
     "evaluate.teacher_on_pmri", NULL},
    /* the teacher on what it learned on in the oracle run: each CT's paired MRI */
    {"oracle_teacher", "models/cmedl_teacher.h5", NULL, MK_STAGE_PAIRED_MR_COLUMN,
     "cmedl.oracle_pmri", NULL},
};

static int val_net(mk_loop *L, void *sp, const char **modality)
{
    state *s = sp;
    *modality = mk_loop_common(L)->data.ct_modality;
    return s->ema >= 0 ? s->ema : s->student;
}

const mk_method mk_method_cmedl = {
    .name = "cmedl",
    .summary = "translator + MRI teacher + CT student with hint losses",
    .uses = USES,
    .nuses = N(USES),
    .cfg_size = sizeof(cfg_t),
    .state_size = sizeof(state),
    .check = check,
    .needs = needs,
    .iterations = iterations,
    .init = init,
    .start = start,
    .step = step,
    .save = save,
    .free = free_state,
    .outputs = OUTPUTS,
    .noutputs = N(OUTPUTS),
    .val_net = val_net,
    .data_parallel = 1,
    .split_batches = {"cmedl.batch"},
};

mk_status mk_stage_cmedl(mk_ctx *ctx, const mk_stage_common *c, const mk_translate_params *tp,
                         const mk_cmedl_params *cp, mk_train_stats *stats)
{
    cfg_t cfg = {*tp, *cp};
    return mk_method_train(ctx, &mk_method_cmedl, c, &cfg, stats);
}
