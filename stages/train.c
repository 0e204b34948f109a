/* The training stages: translate (CycleGAN), cmedl (translator + MRI teacher + CT student with
 * hint losses) and baseline (the student on CT alone). One trainer drives all three so the
 * baseline sees exactly the CT batches, initial weights and updates of the CMEDL student minus the
 * teacher's guidance. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mk_fs.h"
#include "stage_internal.h"

void mk_stage_common_defaults(mk_stage_common *c)
{
    memset(c, 0, sizeof *c);
    c->run_dir = ".";
    c->seed = 1;
    c->threads = 1;
    c->checkpoint_every = 200;
    c->log_every = 50;
    mk_data_defaults(&c->data);
    c->unet = mk_unet_defaults(2);
    c->unet.base = 8;
    c->unet.levels = 3;
    c->unet.classes = 2;
}

void mk_translate_defaults(mk_translate_params *p)
{
    memset(p, 0, sizeof *p);
    p->iterations = 400;
    p->batch = 4;
    p->lr = 2e-4f;
    p->beta1 = 0.5f;
    p->lambda_cycle = 10.0f;
    p->lambda_identity = 0.5f;
    p->gen_width = 16;
    p->disc_width = 16;
}

void mk_cmedl_defaults(mk_cmedl_params *p)
{
    memset(p, 0, sizeof *p);
    p->iterations = 1500;
    p->batch = 4;
    p->lr = 1e-3f;
    p->n_hint = 2;
    snprintf(p->hint_layers[0], sizeof p->hint_layers[0], "dec_prev");
    snprintf(p->hint_layers[1], sizeof p->hint_layers[1], "dec_last");
    p->lambda_hint = 0.1f;
    p->w_seg_student = 1.0f;
    p->w_seg_teacher = 1.0f;
    p->dice_weight = 0.5f;
    p->hint_to_teacher = 0;
    p->seg_to_i2i = 1;
    p->teacher_init_student = 0;
    p->hint_rampup = 0;
    p->schedule = MK_TRAIN_CONSTANT;
    p->hint_pseudo_ct = 0;
    p->teacher_mri_labels = 1;
    p->ema = 0;
    p->hint_teacher_correct = 0;
    p->w_seg_pseudo_ct = 0;
    p->teacher_learns_pmri = 1;
    p->w_seg_i2i = 1.0f;
    p->lambda_tumour_i2i = 0.0f;
}

/* Weight of the hint loss at iteration it: lambda * exp(-5 (1 - it/R)^2) during a ramp-up of R
 * iterations (the sigmoid-shaped ramp of the mean-teacher literature), lambda afterwards. */
float mk_cmedl_hint_weight(const mk_cmedl_params *p, long long it)
{
    if (p->hint_rampup <= 0 || it >= p->hint_rampup)
        return p->lambda_hint;
    double x = 1.0 - (double)it / (double)p->hint_rampup;
    return (float)((double)p->lambda_hint * exp(-5.0 * x * x));
}

/* ---------------------------------------------------------------- hint layer names */

mk_status mk_stage_hint_check(mk_ctx *ctx, int levels, int n, const char names[][32],
                              char resolved[][32])
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
            return mk_err(ctx, MK_ERR_CONFIG, "cmedl.hint_layers[%d]: '%s' is not a feature map "
                          "of the U-Net with %d levels; valid names: %s", k, names[k], levels,
                          list);
        }
        if (resolved)
            snprintf(resolved[k], 32, "%s", want);
    }
    if (n < 1)
        return mk_err(ctx, MK_ERR_CONFIG, "cmedl.hint_layers: expected at least one layer name");
    return MK_OK;
}

/* ---------------------------------------------------------------- trainer */

typedef enum tr_mode { TR_TRANSLATE = 0, TR_CMEDL, TR_BASELINE } tr_mode;

static const char *const MODE_NAME[] = {"translate", "cmedl", "baseline"};

enum { NET_G, NET_F, NET_DM, NET_DC, NET_T, NET_S, NET_COUNT };
static const char *const NET_NAME[NET_COUNT] = {"G", "F", "D_MR", "D_CT", "teacher", "student"};

typedef struct trainer {
    mk_ctx *ctx;
    tr_mode mode;
    const mk_stage_common *c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    long long total, it; /* iterations in all / the one being run */
    int batch;
    mk_sched sched;      /* teacher and student learning rate */
    mk_slices ct, mr;
    mk_translator *tr[4];
    mk_unet *un[2];            /* teacher, student */
    mk_unet *ema;              /* moving average of the student (cp.ema > 0), or NULL */
    mk_unet *judge;            /* frozen copy of the teacher for pseudo-MRI (teacher_learns_pmri 0) */
    mk_nn_params *params[NET_COUNT];
    mk_optim *opt[NET_COUNT];
    mk_rng rng_ct, rng_mr;
    mk_nn_graph *g;
    mk_tensor xc, xm, fake_m, fake_c;
    mk_tensor xo; /* the CT batch's paired MRI (cmedl.oracle_pmri) */
    mk_tensor hint_tgt[MK_HINT_MAX]; /* masked hint targets (hint_teacher_correct) */
    mk_tensor tum_tgt;               /* pseudo-MRI target of the tumour-contrast loss */
    float mr_tumour_mean;            /* mean normalised real-MRI value inside the MRI masks */
    uint8_t *tmask;                  /* teacher-correct mask, batch x patch */
    int32_t *yc, *ym;
    char hint[MK_HINT_MAX][32];
    /* running loss sums for the log line */
    double sum[6];
    long long nsum;
    double *trace, *trace_hint; /* per-iteration main / hint loss */
} trainer;

enum { LS_STUDENT, LS_TEACHER, LS_HINT, LS_GEN, LS_DISC, LS_MAIN };

static int has_net(const trainer *t, int k)
{
    switch (t->mode) {
    case TR_TRANSLATE: return k <= NET_DC;
    case TR_CMEDL: return 1;
    default: return k == NET_S;
    }
}

static void trainer_free(trainer *t)
{
    for (int k = 0; k < NET_COUNT; k++)
        mk_optim_free(t->opt[k]);
    for (int k = 0; k < 4; k++)
        mk_translator_free(t->tr[k]);
    mk_unet_free(t->un[0]);
    mk_unet_free(t->un[1]);
    mk_unet_free(t->ema);
    mk_unet_free(t->judge);
    mk_nn_graph_free(t->g);
    mk_slices_free(&t->ct);
    mk_slices_free(&t->mr);
    mk_tensor_free(&t->xc);
    mk_tensor_free(&t->xm);
    mk_tensor_free(&t->fake_m);
    mk_tensor_free(&t->fake_c);
    mk_tensor_free(&t->xo);
    for (int k = 0; k < MK_HINT_MAX; k++)
        mk_tensor_free(&t->hint_tgt[k]);
    mk_tensor_free(&t->tum_tgt);
    free(t->tmask);
    free(t->yc);
    free(t->ym);
    free(t->trace);
    free(t->trace_hint);
}

static mk_status trainer_init(trainer *t)
{
    mk_ctx *ctx = t->ctx;
    const mk_stage_common *c = t->c;
    mk_status st = MK_OK;
    const char *stage = MODE_NAME[t->mode];
    if (c->unet.dim != 2 || c->unet.in_ch != 1)
        return mk_err(ctx, MK_ERR_INVALID, "%s: the U-Net must be 2D with one input channel", stage);
    int div = 1 << (c->unet.levels - 1);
    for (int a = 0; a < 2; a++)
        if (c->data.patch[a] % div != 0 || (t->mode != TR_BASELINE && c->data.patch[a] % 4 != 0))
            return mk_err(ctx, MK_ERR_CONFIG, "data.patch[%d]: expected a multiple of %d (U-Net "
                          "with %d levels%s), got %d", a, div > 4 ? div : 4, c->unet.levels,
                          t->mode != TR_BASELINE ? " and the translator" : "", c->data.patch[a]);
    if (t->mode == TR_CMEDL &&
        (st = mk_stage_hint_check(ctx, c->unet.levels, t->cp.n_hint,
                                  (const char(*)[32])t->cp.hint_layers, t->hint)) != MK_OK)
        return st;
    if (t->batch < 1 || t->total < 0)
        return mk_err(ctx, MK_ERR_INVALID, "%s: batch %d / iterations %lld out of range", stage,
                      t->batch, t->total);
    /* data: CT slices (labelled for cmedl/baseline), MRI slices (translate/cmedl) */
    uint64_t s = c->seed;
    if (t->mode == TR_CMEDL && t->cp.oracle_pmri && !t->cp.teacher_learns_pmri)
        return mk_err(ctx, MK_ERR_CONFIG, "cmedl.oracle_pmri = true: the teacher then learns on "
                      "the oracle pseudo-MRI, which needs teacher_learns_pmri = true");
    mk_data_params dct = c->data;
    if (t->mode == TR_CMEDL && t->cp.oracle_pmri)
        dct.paired_column = MK_STAGE_PAIRED_MR_COLUMN;
    st = mk_data_load(ctx, &dct, c->data.ct_modality, "train", t->mode != TR_TRANSLATE,
                      mk__seed(s, 100), &t->ct);
    if (st == MK_OK && t->mode != TR_BASELINE)
        st = mk_data_load(ctx, &c->data, c->data.mri_modality, "train", 0, mk__seed(s, 101),
                          &t->mr);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "%s: training data", stage);
    if (t->mode == TR_CMEDL && t->cp.lambda_tumour_i2i > 0) {
        if (!t->mr.lab)
            return mk_err(ctx, MK_ERR_CONFIG, "cmedl.lambda_tumour_i2i > 0 needs a mask for every "
                          "MRI training row (the target is the real MRI tumours' mean value)");
        double sum = 0;
        int64_t cnt = 0, np = t->mr.n * (int64_t)t->mr.ch * t->mr.cw;
        for (int64_t q = 0; q < np; q++)
            if (t->mr.lab[q]) {
                sum += t->mr.img[q];
                cnt++;
            }
        if (cnt == 0)
            return mk_err(ctx, MK_ERR_CONFIG, "cmedl.lambda_tumour_i2i > 0: the MRI training masks "
                          "hold no voxel of label %d", c->data.label);
        t->mr_tumour_mean = (float)(sum / (double)cnt);
        MK_LOG_I(ctx, "cmedl: tumour-contrast target for the pseudo-MRI %.3f (%lld MRI voxels)",
                 t->mr_tumour_mean, (long long)cnt);
    }
    if (t->mr.lab && !t->cp.teacher_mri_labels) {
        free(t->mr.lab);
        t->mr.lab = NULL;
    }
    if (t->mode == TR_CMEDL && !t->cp.teacher_learns_pmri) {
        if (!t->mr.lab)
            return mk_err(ctx, MK_ERR_CONFIG, "cmedl.teacher_learns_pmri = false: the teacher "
                          "then learns on real MRI only, which needs teacher_mri_labels = true "
                          "and a mask for every MRI training row");
        if (!t->cp.seg_to_i2i || t->cp.hint_to_teacher)
            return mk_err(ctx, MK_ERR_CONFIG, "cmedl.teacher_learns_pmri = false needs "
                          "seg_to_i2i = true (the loss on pseudo-MRI then trains only the "
                          "translator) and hint_to_teacher = false");
    }
    MK_LOG_I(ctx, "%s: %lld CT slices (%lld with the structure) from %d volumes%s", stage,
             (long long)t->ct.n, (long long)t->ct.n_fg, t->ct.volumes, "");
    if (t->mode != TR_BASELINE)
        MK_LOG_I(ctx, "%s: %lld MRI slices (%s) from %d volumes", stage, (long long)t->mr.n,
                 t->mr.lab ? "labelled" : "unlabelled", t->mr.volumes);
    /* networks: each from its own seed stream, the same in every stage */
    for (int k = 0; k < 4 && st == MK_OK; k++)
        if (has_net(t, k))
            st = mk_translator_new(ctx, k < 2 ? MK_TRANSLATOR_GEN : MK_TRANSLATOR_DISC,
                                   k < 2 ? t->tp.gen_width : t->tp.disc_width, mk__seed(s, 10 + k),
                                   &t->tr[k]);
    for (int k = 0; k < 2 && st == MK_OK; k++)
        if (has_net(t, NET_T + k))
            st = mk_unet_new(ctx, &c->unet,
                             mk__seed(s, k == 0 && t->cp.teacher_init_student ? 21 : 20 + k),
                             &t->un[k]);
    if (st == MK_OK && t->mode == TR_CMEDL && !t->cp.teacher_learns_pmri &&
        (st = mk_unet_new(ctx, &c->unet, mk__seed(s, 20), &t->judge)) == MK_OK)
        mk_nn_params_set_frozen(mk_unet_params(t->judge), "", 1);
    if (st == MK_OK && t->mode != TR_TRANSLATE && t->cp.ema > 0 &&
        (st = mk_unet_new(ctx, &c->unet, mk__seed(s, 21), &t->ema)) == MK_OK)
        st = mk_nn_params_copy(ctx, mk_unet_params(t->ema), mk_unet_params(t->un[1]));
    if (st != MK_OK)
        return st;
    for (int k = 0; k < NET_COUNT; k++) {
        if (!has_net(t, k))
            continue;
        t->params[k] = k < 4 ? mk_translator_params(t->tr[k]) : mk_unet_params(t->un[k - 4]);
        mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
        if (k < 4) {
            oc.lr = t->tp.lr;
            oc.beta1 = t->tp.beta1;
        } else {
            oc.lr = t->cp.lr;
        }
        if (!(t->opt[k] = mk_optim_new(t->params[k], &oc)))
            return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory (optimiser)", stage);
    }
    memset(&t->sched, 0, sizeof t->sched);
    t->sched.kind = t->cp.schedule == MK_TRAIN_POLY     ? MK_SCHED_POLY
                    : t->cp.schedule == MK_TRAIN_COSINE ? MK_SCHED_COSINE
                                                        : MK_SCHED_CONSTANT;
    t->sched.base_lr = t->cp.lr;
    t->sched.total_iters = t->total;
    t->sched.power = 0.9f;
    mk_rng_seed(&t->rng_ct, mk__seed(s, 30));
    mk_rng_seed(&t->rng_mr, mk__seed(s, 31));
    if (!(t->g = mk_nn_graph_new(c->threads > 0 ? c->threads : 1, mk__seed(s, 32))))
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory (graph)", stage);
    int64_t ne[4] = {t->batch, 1, c->data.patch[1], c->data.patch[0]};
    int64_t plane = ne[2] * ne[3];
    if ((t->ct.img2 && mk_tensor_new(&t->xo, 4, ne)) ||
        mk_tensor_new(&t->xc, 4, ne) || mk_tensor_new(&t->xm, 4, ne) ||
        mk_tensor_new(&t->fake_m, 4, ne) || mk_tensor_new(&t->fake_c, 4, ne) ||
        !(t->yc = calloc((size_t)(t->batch * plane), sizeof *t->yc)) ||
        !(t->ym = calloc((size_t)(t->batch * plane), sizeof *t->ym)) ||
        !(t->trace = calloc((size_t)t->total + 1, sizeof *t->trace)) ||
        !(t->trace_hint = calloc((size_t)t->total + 1, sizeof *t->trace_hint)))
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory (batches)", stage);
    return MK_OK;
}

static void fill_batch(const mk_slices *s, mk_rng *r, int batch, mk_tensor *x, int32_t *y,
                       mk_tensor *x2)
{
    int64_t plane = (int64_t)s->h * s->w;
    for (int b = 0; b < batch; b++) {
        int64_t i = (int64_t)mk_rng_below(r, (uint64_t)s->n);
        int ox = 0, oy = 0;
        if (s->cw > s->w || s->ch > s->h) { /* random crop (no extra draws without jitter) */
            ox = (int)mk_rng_below(r, (uint64_t)(s->cw - s->w + 1));
            oy = (int)mk_rng_below(r, (uint64_t)(s->ch - s->h + 1));
        }
        mk_slices_crop(s, i, ox, oy, x->data + b * plane, s->lab ? y + b * plane : NULL,
                       x2 && x2->data ? x2->data + b * plane : NULL);
    }
}

static mk_var *seg_loss(mk_nn_graph *g, mk_var *logits, const int32_t *y, float dw)
{
    mk_var *d = mk_nn_dice_loss(g, logits, y, 1e-5f);
    mk_var *ce = mk_nn_cross_entropy(g, logits, y, NULL, -100);
    return mk_nn_add(g, mk_nn_scale(g, d, dw), mk_nn_scale(g, ce, 1.0f - dw));
}

/* Target for the hint at one layer when only teacher-correct positions count (the mask is
 * computed at k == 0, once per step). Returns the target tensor or NULL (out of memory). */
static mk_tensor *masked_hint_target(trainer *t, int k, const mk_tensor *tl, const mk_tensor *tf,
                                     const mk_tensor *sf)
{
    int64_t B = tl->ne[0], H = tl->ne[2], W = tl->ne[3];
    if (!t->tmask && !(t->tmask = malloc((size_t)(B * H * W))))
        return NULL;
    if (k == 0)
        mk__hint_correct_mask(tl, t->yc, t->tmask);
    mk_tensor *o = &t->hint_tgt[k];
    if (!o->data || !mk_tensor_same_shape(o, tf)) {
        mk_tensor_free(o);
        if (mk_tensor_new(o, tf->ndim, tf->ne) != 0)
            return NULL;
    }
    mk__hint_masked_target(t->tmask, H, W, tf, sf, o);
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

static void set_frozen_d(trainer *t, int frozen)
{
    for (int k = NET_DM; k <= NET_DC; k++)
        if (t->params[k])
            mk_nn_params_set_frozen(t->params[k], "", frozen);
}

/* One iteration; loss values into l[]. */
static mk_status train_step(trainer *t, double *l)
{
    mk_nn_graph *g = t->g;
    const mk_cmedl_params *cp = &t->cp;
    const mk_translate_params *tp = &t->tp;
    int i2i = t->mode != TR_BASELINE, seg = t->mode != TR_TRANSLATE;
    fill_batch(&t->ct, &t->rng_ct, t->batch, &t->xc, t->yc, &t->xo);
    if (i2i)
        fill_batch(&t->mr, &t->rng_mr, t->batch, &t->xm, t->ym, NULL);
    for (int k = 0; k < NET_COUNT; k++)
        if (t->params[k])
            mk_nn_params_zero_grad(t->params[k]);
    if (seg)
        for (int k = NET_T; k <= NET_S; k++)
            if (t->opt[k])
                mk_optim_set_lr(t->opt[k], mk_sched_lr(&t->sched, t->it));
    memset(l, 0, 6 * sizeof *l);

    /* generators, teacher and student in one graph: one backward of the weighted sum */
    set_frozen_d(t, 1);
    mk_nn_graph_begin(g, 1);
    mk_var *xc = mk_nn_input(g, &t->xc, 0), *total = NULL;
    mk_var *fake_m = NULL, *fake_c = NULL, *xm = NULL;
    if (i2i) {
        xm = mk_nn_input(g, &t->xm, 0);
        fake_m = mk_translator_forward(t->tr[NET_G], g, xc);
        mk_var *rec_c = mk_translator_forward(t->tr[NET_F], g, fake_m);
        fake_c = mk_translator_forward(t->tr[NET_F], g, xm);
        mk_var *rec_m = mk_translator_forward(t->tr[NET_G], g, fake_c);
        mk_var *adv = mk_nn_add(g, mk_nn_adv_ls(g, mk_translator_forward(t->tr[NET_DM], g, fake_m), 1),
                                mk_nn_adv_ls(g, mk_translator_forward(t->tr[NET_DC], g, fake_c), 1));
        mk_var *cyc = mk_nn_add(g, mk_nn_l1(g, rec_c, xc), mk_nn_l1(g, rec_m, xm));
        total = mk_nn_add(g, adv, mk_nn_scale(g, cyc, tp->lambda_cycle));
        if (tp->lambda_identity > 0) {
            mk_var *id = mk_nn_add(g, mk_nn_l1(g, mk_translator_forward(t->tr[NET_G], g, xm), xm),
                                   mk_nn_l1(g, mk_translator_forward(t->tr[NET_F], g, xc), xc));
            total = mk_nn_add(g, total, mk_nn_scale(g, id, tp->lambda_cycle * tp->lambda_identity));
        }
        if (t->mode == TR_CMEDL && cp->lambda_tumour_i2i > 0 && fake_m) {
            /* tumour contrast: G(x_ct) inside the CT mask towards the real MRI tumours' mean;
             * elsewhere the target is G's own value, which adds nothing to loss or gradient */
            if (!t->tum_tgt.data && mk_tensor_new(&t->tum_tgt, 4, fake_m->t.ne) != 0)
                return mk_err(t->ctx, MK_ERR_NOMEM, "cmedl: out of memory (tumour target)");
            int64_t n = mk_tensor_numel(&fake_m->t), nt = 0;
            for (int64_t q = 0; q < n; q++) {
                int tum = t->yc[q] != 0;
                t->tum_tgt.data[q] = tum ? t->mr_tumour_mean : fake_m->t.data[q];
                nt += tum;
            }
            if (nt > 0)
                total = mk_nn_add(g, total,
                                  mk_nn_scale(g, mk_nn_mse(g, fake_m, mk_nn_input(g, &t->tum_tgt, 0)),
                                              cp->lambda_tumour_i2i * (float)n / (float)nt));
        }
        if (mk_nn_graph_oom(g))
            return mk_err(t->ctx, MK_ERR_NOMEM, "%s: out of memory in the forward pass",
                          MODE_NAME[t->mode]);
        l[LS_GEN] = mk_nn_value(total);
        mk_tensor_copy(&t->fake_m, &fake_m->t);
        mk_tensor_copy(&t->fake_c, &fake_c->t);
    }
    if (seg) {
        mk_var *tf[MK_HINT_MAX] = {0}, *sf[MK_HINT_MAX] = {0}, *tfm[MK_HINT_MAX] = {0};
        mk_var *tlog = NULL;
        int mirror = t->mode == TR_CMEDL && (cp->hint_pseudo_ct || (cp->w_seg_pseudo_ct > 0 &&
                                                                    t->mr.lab));
        if (t->mode == TR_CMEDL) {
            mk_var *tin = cp->seg_to_i2i ? fake_m : mk_nn_input(g, &t->fake_m, 0);
            if (cp->seg_to_i2i && cp->w_seg_i2i != 1.0f) /* identity; gradient x w_seg_i2i */
                tin = mk_nn_grad_reverse(g, tin, -cp->w_seg_i2i);
            if (cp->oracle_pmri) /* the perfect translation: the CT anatomy imaged as MR */
                tin = mk_nn_input(g, &t->xo, 0);
            mk_unet *tnet = t->un[0];
            if (t->judge) {
                /* the teacher's current weights, frozen: its loss on pseudo-MRI reaches only G */
                mk_status cs = mk_nn_params_copy(t->ctx, mk_unet_params(t->judge),
                                                 mk_unet_params(t->un[0]));
                if (cs != MK_OK)
                    return cs;
                tnet = t->judge;
            }
            mk_var *tl = mk_unet_forward(tnet, g, tin);
            tlog = tl;
            for (int k = 0; k < cp->n_hint; k++)
                tf[k] = mk_nn_find(g, t->hint[k]);
            mk_var *lt = seg_loss(g, tl, t->yc, cp->dice_weight);
            if (t->mr.lab || cp->hint_pseudo_ct) {
                mk_var *tm = mk_unet_forward(t->un[0], g, xm);
                for (int k = 0; k < cp->n_hint; k++)
                    tfm[k] = mk_nn_find(g, t->hint[k]);
                if (t->mr.lab)
                    lt = mk_nn_add(g, lt, seg_loss(g, tm, t->ym, cp->dice_weight));
            }
            l[LS_TEACHER] = lt ? mk_nn_value(lt) : 0;
            total = mk_nn_add(g, total, mk_nn_scale(g, lt, cp->w_seg_teacher));
        }
        mk_var *sl = mk_unet_forward(t->un[1], g, xc);
        mk_var *ls = seg_loss(g, sl, t->yc, cp->dice_weight);
        if (!ls)
            return mk_err(t->ctx, MK_ERR_NOMEM, "%s: out of memory in the forward pass",
                          MODE_NAME[t->mode]);
        l[LS_STUDENT] = mk_nn_value(ls);
        ls = mk_nn_scale(g, ls, cp->w_seg_student);
        total = total ? mk_nn_add(g, total, ls) : ls;
        if (t->mode == TR_CMEDL) {
            mk_var *hint = NULL;
            for (int k = 0; k < cp->n_hint; k++) {
                sf[k] = mk_nn_find(g, t->hint[k]);
                MK_ASSERT(tf[k] && sf[k] && sf[k] != tf[k]);
                mk_var *target;
                if (cp->hint_teacher_correct) {
                    mk_tensor *mt = masked_hint_target(t, k, &tlog->t, &tf[k]->t, &sf[k]->t);
                    if (!mt)
                        return mk_err(t->ctx, MK_ERR_NOMEM, "cmedl: out of memory (hint mask)");
                    target = mk_nn_input(g, mt, 0);
                } else {
                    target = cp->hint_to_teacher ? tf[k] : mk_nn_input(g, &tf[k]->t, 0);
                }
                mk_var *h = mk_nn_mse(g, sf[k], target);
                hint = hint ? mk_nn_add(g, hint, h) : h;
            }
            if (mirror) {
                /* the student on pseudo-CT F(x_mr) (detached), against the teacher on x_mr */
                mk_var *pl = mk_unet_forward(t->un[1], g, mk_nn_input(g, &t->fake_c, 0));
                for (int k = 0; cp->hint_pseudo_ct && k < cp->n_hint; k++) {
                    mk_var *s2 = mk_nn_find(g, t->hint[k]);
                    MK_ASSERT(tfm[k] && s2 && s2 != tfm[k]);
                    hint = mk_nn_add(g, hint, mk_nn_mse(g, s2, mk_nn_input(g, &tfm[k]->t, 0)));
                }
                if (cp->w_seg_pseudo_ct > 0 && t->mr.lab)
                    total = mk_nn_add(g, total, mk_nn_scale(g, seg_loss(g, pl, t->ym,
                                                                        cp->dice_weight),
                                                            cp->w_seg_pseudo_ct));
            }
            l[LS_HINT] = hint ? mk_nn_value(hint) : 0;
            total = mk_nn_add(g, total, mk_nn_scale(g, hint, mk_cmedl_hint_weight(cp, t->it)));
        }
    }
    if (mk_nn_graph_oom(g) || !total)
        return mk_err(t->ctx, MK_ERR_NOMEM, "%s: out of memory in the forward pass",
                      MODE_NAME[t->mode]);
    mk_nn_backward(g, total);
    for (int k = 0; k < NET_COUNT; k++)
        if (t->opt[k] && k != NET_DM && k != NET_DC)
            mk_optim_step(t->opt[k]);
    if (t->ema) {
        mk_status st = mk_nn_params_ema(t->ctx, mk_unet_params(t->ema), t->params[NET_S],
                                        t->cp.ema);
        if (st != MK_OK)
            return st;
    }
    l[LS_MAIN] = seg ? l[LS_STUDENT] : l[LS_GEN];
    if (!i2i)
        return MK_OK;

    /* discriminators: LSGAN on real vs the (detached) fakes of this iteration */
    set_frozen_d(t, 0);
    mk_nn_graph_begin(g, 1);
    mk_nn_params_zero_grad(t->params[NET_DM]);
    mk_nn_params_zero_grad(t->params[NET_DC]);
    xm = mk_nn_input(g, &t->xm, 0);
    xc = mk_nn_input(g, &t->xc, 0);
    mk_var *fm = mk_nn_input(g, &t->fake_m, 0), *fc = mk_nn_input(g, &t->fake_c, 0);
    mk_translator *dm = t->tr[NET_DM], *dc = t->tr[NET_DC];
    mk_var *ld = mk_nn_add(g, mk_nn_adv_ls(g, mk_translator_forward(dm, g, xm), 1),
                           mk_nn_adv_ls(g, mk_translator_forward(dm, g, fm), 0));
    ld = mk_nn_add(g, ld, mk_nn_adv_ls(g, mk_translator_forward(dc, g, xc), 1));
    ld = mk_nn_scale(g, mk_nn_add(g, ld, mk_nn_adv_ls(g, mk_translator_forward(dc, g, fc), 0)), 0.5f);
    if (mk_nn_graph_oom(g) || !ld)
        return mk_err(t->ctx, MK_ERR_NOMEM, "%s: out of memory in the discriminator pass",
                      MODE_NAME[t->mode]);
    l[LS_DISC] = mk_nn_value(ld);
    mk_nn_backward(g, ld);
    mk_optim_step(t->opt[NET_DM]);
    mk_optim_step(t->opt[NET_DC]);
    return MK_OK;
}

static int collect(trainer *t, mk__ck_model *m, mk__ck_rng *r, int *nr)
{
    int n = 0;
    for (int k = 0; k < NET_COUNT; k++)
        if (t->params[k])
            m[n++] = (mk__ck_model){NET_NAME[k], t->params[k], t->opt[k]};
    if (t->ema)
        m[n++] = (mk__ck_model){"student_ema", mk_unet_params(t->ema), NULL};
    r[0] = (mk__ck_rng){"ct", &t->rng_ct};
    r[1] = (mk__ck_rng){"mr", &t->rng_mr};
    r[2] = (mk__ck_rng){"graph", mk_nn_graph_rng(t->g)};
    *nr = 3;
    return n;
}

static mk_status save_ckpt(trainer *t, const char *path, long long it)
{
    mk__ck_model m[NET_COUNT + 1];
    mk__ck_rng r[3];
    int nr, nm = collect(t, m, r, &nr);
    return mk__ckpt_save(t->ctx, path, MODE_NAME[t->mode], it, m, nm, r, nr);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double window_mean(const double *v, long long from, long long to)
{
    double s = 0;
    for (long long i = from; i < to; i++)
        s += v[i];
    return to > from ? s / (double)(to - from) : 0;
}

static mk_status save_models(trainer *t)
{
    mk_ctx *ctx = t->ctx;
    const char *rd = t->c->run_dir;
    char path[4200];
    mk_status st = MK_OK;
    if (t->mode == TR_TRANSLATE) {
        mk__ck_model m[4];
        for (int k = 0; k < 4; k++)
            m[k] = (mk__ck_model){NET_NAME[k], t->params[k], NULL};
        if ((st = mk__run_path(ctx, rd, "models", "translator.h5", path, sizeof path)) == MK_OK)
            st = mk__ckpt_save(ctx, path, "translator", t->total, m, 4, NULL, 0);
        return st;
    }
    const char *sname = t->mode == TR_CMEDL ? "cmedl_student.h5" : "baseline_student.h5";
    if ((st = mk__run_path(ctx, rd, "models", sname, path, sizeof path)) == MK_OK)
        st = mk_model_save(ctx, path, t->ema ? mk_unet_params(t->ema) : t->params[NET_S], NULL);
    if (st == MK_OK && t->mode == TR_CMEDL &&
        (st = mk__run_path(ctx, rd, "models", "cmedl_teacher.h5", path, sizeof path)) == MK_OK)
        st = mk_model_save(ctx, path, t->params[NET_T], NULL);
    if (st == MK_OK && t->mode == TR_CMEDL) {
        mk__ck_model m[4];
        for (int k = 0; k < 4; k++)
            m[k] = (mk__ck_model){NET_NAME[k], t->params[k], NULL};
        if ((st = mk__run_path(ctx, rd, "models", "cmedl_translator.h5", path, sizeof path)) ==
            MK_OK)
            st = mk__ckpt_save(ctx, path, "translator", t->total, m, 4, NULL, 0);
    }
    return st;
}

static mk_status run_trainer(trainer *t, mk_train_stats *stats)
{
    mk_ctx *ctx = t->ctx;
    const mk_stage_common *c = t->c;
    const char *stage = MODE_NAME[t->mode];
    char ck[4200];
    mk_status st = mk__run_path(ctx, c->run_dir, "checkpoints", "", ck, sizeof ck);
    if (st != MK_OK)
        return st;
    snprintf(ck, sizeof ck, "%s/checkpoints/%s.h5", c->run_dir, stage);
    long long it0 = 0;
    if (c->resume && mk_fs_is_file(ck)) {
        mk__ck_model m[NET_COUNT + 1];
        mk__ck_rng r[3];
        int nr, nm = collect(t, m, r, &nr);
        if ((st = mk__ckpt_load(ctx, ck, stage, &it0, m, nm, r, nr)) != MK_OK)
            return mk_err_prefix(ctx, "%s: resume", stage);
        if (it0 > t->total)
            return mk_err(ctx, MK_ERR_FORMAT, "%s: checkpoint at iteration %lld is past the "
                          "configured %lld iterations", ck, it0, t->total);
        MK_LOG_I(ctx, "%s: resuming from %s at iteration %lld/%lld", stage, ck, it0, t->total);
    } else if (t->mode == TR_CMEDL) {
        char tpath[4200];
        snprintf(tpath, sizeof tpath, "%s/models/translator.h5", c->run_dir);
        if (mk_fs_is_file(tpath)) {
            mk__ck_model m[4];
            for (int k = 0; k < 4; k++)
                m[k] = (mk__ck_model){NET_NAME[k], t->params[k], NULL};
            if ((st = mk__ckpt_load(ctx, tpath, "translator", NULL, m, 4, NULL, 0)) != MK_OK)
                return mk_err_prefix(ctx, "cmedl: translator from the translate stage");
            MK_LOG_I(ctx, "cmedl: translator continues from %s", tpath);
        }
    }
    if (t->mode == TR_CMEDL || t->mode == TR_BASELINE)
        MK_LOG_I(ctx, "%s: student U-Net %d levels, width %d: %lld parameters", stage,
                 c->unet.levels, c->unet.base, (long long)mk_nn_params_numel(t->params[NET_S]));
    double t0 = now_s(), c0 = (double)clock() / CLOCKS_PER_SEC, l[6];
    long long it = it0, w = t->total / 4 < 50 ? t->total / 4 : 50;
    if (w < 1)
        w = 1;
    memset(t->sum, 0, sizeof t->sum);
    t->nsum = 0;
    for (; it < t->total; it++) {
        if (ctx->cancel) {
            MK_LOG_W(ctx, "%s: interrupted at iteration %lld, writing %s", stage, it, ck);
            if ((st = save_ckpt(t, ck, it)) != MK_OK)
                return st;
            return mk_err(ctx, MK_ERR_ABORTED, "%s: interrupted at iteration %lld/%lld "
                          "(checkpoint %s; continue with --resume)", stage, it, t->total, ck);
        }
        t->it = it;
        if ((st = train_step(t, l)) != MK_OK)
            return st;
        if (!isfinite(l[LS_MAIN]) || !isfinite(l[LS_HINT]) || !isfinite(l[LS_TEACHER]))
            return mk_err(ctx, MK_ERR_INVALID, "%s: loss is not finite at iteration %lld "
                          "(student %g, teacher %g, hint %g): lower the learning rate", stage,
                          it + 1, l[LS_STUDENT], l[LS_TEACHER], l[LS_HINT]);
        t->trace[it] = l[LS_MAIN];
        t->trace_hint[it] = l[LS_HINT];
        for (int k = 0; k < 6; k++)
            t->sum[k] += l[k];
        t->nsum++;
        char detail[160];
        if (t->mode == TR_TRANSLATE)
            snprintf(detail, sizeof detail, "gen %.3f disc %.3f", l[LS_GEN], l[LS_DISC]);
        else if (t->mode == TR_CMEDL)
            snprintf(detail, sizeof detail, "loss_s %.3f loss_t %.3f hint %.4f gen %.3f disc %.3f",
                     l[LS_STUDENT], l[LS_TEACHER], l[LS_HINT], l[LS_GEN], l[LS_DISC]);
        else
            snprintf(detail, sizeof detail, "loss_s %.3f", l[LS_STUDENT]);
        mk_progress(ctx, stage, it + 1, t->total, "iter", detail);
        if ((it + 1) % c->log_every == 0 || it + 1 == t->total) {
            double n = (double)t->nsum, el = now_s() - t0;
            if (t->mode == TR_TRANSLATE)
                MK_LOG_I(ctx, "%s: iter %lld/%lld gen %.4f disc %.4f (%.2f it/s)", stage, it + 1,
                         t->total, t->sum[LS_GEN] / n, t->sum[LS_DISC] / n,
                         (double)(it + 1 - it0) / el);
            else if (t->mode == TR_BASELINE)
                MK_LOG_I(ctx, "%s: iter %lld/%lld loss_s %.4f (%.2f it/s)", stage, it + 1,
                         t->total, t->sum[LS_STUDENT] / n, (double)(it + 1 - it0) / el);
            else
                MK_LOG_I(ctx, "%s: iter %lld/%lld loss_s %.4f loss_t %.4f hint %.5f gen %.4f "
                         "disc %.4f (%.2f it/s)", stage, it + 1, t->total, t->sum[LS_STUDENT] / n,
                         t->sum[LS_TEACHER] / n, t->sum[LS_HINT] / n, t->sum[LS_GEN] / n,
                         t->sum[LS_DISC] / n, (double)(it + 1 - it0) / el);
            memset(t->sum, 0, sizeof t->sum);
            t->nsum = 0;
        }
        if ((it + 1) % c->checkpoint_every == 0 && it + 1 < t->total &&
            (st = save_ckpt(t, ck, it + 1)) != MK_OK)
            return st;
    }
    double el = now_s() - t0;
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->iterations = t->total;
        stats->resumed_from = it0;
        stats->seconds = el;
        stats->iters_per_s = el > 0 ? (double)(t->total - it0) / el : 0;
        stats->first_loss = window_mean(t->trace, it0, it0 + w < t->total ? it0 + w : t->total);
        stats->last_loss = window_mean(t->trace, t->total - w > it0 ? t->total - w : it0, t->total);
        stats->last_hint =
            window_mean(t->trace_hint, t->total - w > it0 ? t->total - w : it0, t->total);
    }
    double cpu = (double)clock() / CLOCKS_PER_SEC - c0;
    if (t->total > it0)
        MK_LOG_I(ctx, "%s: %lld iterations in %.1f s (%.2f it/s; %.1f s of CPU, %.1f ms CPU per "
                 "iteration)", stage, t->total - it0, el,
                 el > 0 ? (double)(t->total - it0) / el : 0.0, cpu,
                 1e3 * cpu / (double)(t->total - it0));
    if ((st = save_models(t)) != MK_OK)
        return st;
    /* the finished state, so a resume after a crash between here and the runner's marker only
     * re-saves the models */
    return save_ckpt(t, ck, t->total);
}

static mk_status run_mode(mk_ctx *ctx, tr_mode mode, const mk_stage_common *c,
                          const mk_translate_params *tp, const mk_cmedl_params *cp,
                          long long total, int batch, mk_train_stats *stats)
{
    trainer t;
    memset(&t, 0, sizeof t);
    t.ctx = ctx;
    t.mode = mode;
    t.c = c;
    if (tp)
        t.tp = *tp;
    if (cp)
        t.cp = *cp;
    t.total = total;
    t.batch = batch;
    mk_status st = trainer_init(&t);
    if (st == MK_OK)
        st = run_trainer(&t, stats);
    trainer_free(&t);
    return st;
}

mk_status mk_stage_translate(mk_ctx *ctx, const mk_stage_common *c, const mk_translate_params *tp,
                             mk_train_stats *stats)
{
    if (tp->iterations == 0) {
        MK_LOG_I(ctx, "translate: 0 iterations, nothing to do (cmedl trains the translator from "
                 "scratch)");
        if (stats)
            memset(stats, 0, sizeof *stats);
        return MK_OK;
    }
    return run_mode(ctx, TR_TRANSLATE, c, tp, NULL, tp->iterations, tp->batch, stats);
}

mk_status mk_stage_cmedl(mk_ctx *ctx, const mk_stage_common *c, const mk_translate_params *tp,
                         const mk_cmedl_params *cp, mk_train_stats *stats)
{
    return run_mode(ctx, TR_CMEDL, c, tp, cp, cp->iterations, cp->batch, stats);
}

mk_status mk_stage_baseline(mk_ctx *ctx, const mk_stage_common *c, const mk_cmedl_params *cp,
                            int iterations, mk_train_stats *stats)
{
    return run_mode(ctx, TR_BASELINE, c, NULL, cp, iterations > 0 ? iterations : cp->iterations,
                    cp->batch, stats);
}
