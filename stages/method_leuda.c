/* Method `leuda`: LE-UDA, label-efficient unsupervised domain adaptation (Zhao et al., IEEE TMI
 * 2022), on MT-UDA (MICCAI 2021, public code); methods notes §3.
 *
 * Source domain: data.mri_modality (few labelled volumes, leuda.source_volumes); target domain:
 * data.ct_modality (unlabelled: its label files are never read). The translator of the translate
 * stage (frozen; G: CT -> MR = target -> source, F: MR -> CT) gives the six pixel-aligned sets
 * of §3.2, computed once at the start for every stored training slice and kept beside it (same
 * index, so every batch draws a slice and its translations together):
 *   x^s, x^{s->t} = F(x^s), x^{s->t->s} = G(F(x^s));  x^t, x^{t->s} = G(x^t), x^{t->s->t} =
 * F(G(x^t)). A student U-Net and two EMA teachers of it (intra-domain and inter-domain). Per
 * iteration L = L_seg + w_kd(t) L_kd + w_con(t) L_con + w_adv(t) (L_adv^intra + L_adv^inter) L_seg
 * seg(x^s) + seg(x^{s->t->s}) on a labelled batch, the same mask (w Dice + (1-w) CE); L_kd    intra
 * consistency: mean softmax-MSE of student(x) and intra teacher(x + noise), x in {x^s, x^{t->s}} of
 * the unlabelled batches; L_con   inter consistency: mean MEL over the pairs (student input, inter
 * teacher input) (x^s, x^{s->t}), (x^{s->t->s}, x^{s->t}), (x^{t->s}, x^t), (x^{t->s},
 * x^{t->s->t}); L_adv   LE-UDA's feature alignment: at two sites (the feature map leuda.adv_feature
 * and the output probabilities) a PatchGAN discriminator per teacher tells the teacher's maps
 *           (label 1) from the student's (0) with LSGAN losses; the student minimises
 *           (D(f_S) - 1)^2. Intra: student vs intra teacher on {x^s, x^{t->s}}; inter: student on
 *           {x^s, x^{s->t->s}, x^{t->s}} vs inter teacher on {x^{s->t}, x^t, x^{t->s->t}}. The
 *           discriminators have their own Adam (adv_lr, beta1 0.5) and step on detached maps.
 * Noise: clamp(N(0, noise_sigma^2), +-noise_clip) on every teacher input. Augmentation: one random
 * affine (scale 1 +- aug_scale, rotation +- aug_rotate degrees) per slice, shared by all images of
 * the slice's aligned set (so both images of every pair), drawn from the stream's RNG. Weights:
 * 0 during the first `warmup` share of the iterations, then w x sigmoid_rampup(t, rampup x
 * iterations); the learning rate warms up linearly over the same `warmup` share (MT-UDA:
 * 30 of 150 epochs, ramps over 150). Teachers: MT-UDA's update_ema_variables (copy for
 * ema_pretrain iterations, then min(1 - 1/(t - pretrain + 1), ema)), parameters only; their
 * forwards run in training mode (batch statistics) and keep their own running statistics, so the
 * inter teacher's are those of target-like images.
 * Switches: wo_source (no intra teacher: no L_kd, no intra discriminators), wo_target (no inter
 * teacher), adversarial = false (MT-UDA). Writes models/leuda_student.h5, leuda_intra.h5,
 * leuda_inter.h5 and leuda_translator.h5 (G and F of the translator used, for evaluation on
 * fake-source test images). The shared source part (translator, labelled batches, student,
 * L_seg) is also the source-only baseline `leuda_source` (method_leuda_source.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_fs.h"
#include "mk_method.h"
#include "nn/mk_nn_blocks.h"
#include "stage_internal.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
typedef mk_leuda_params P;

static const mk_param_row ROWS[] = {
    MK_P_INT(P, iterations, "iterations", "1500", 1, 1e9, "training iterations"),
    MK_P_INT(P, batch, "batch", "4", 1, 1024,
             "labelled source slices per batch (each also as its cycle image x^{s->t->s})"),
    MK_P_INT(P, unlabelled_batch, "unlabelled_batch", "2", 1, 1024,
             "unlabelled slices per domain and batch (each with its two translations)"),
    MK_P_FLOAT(P, lr, "lr", "2e-3", 0, 1, "Adam learning rate of the student"),
    MK_P_CHOICE(P, schedule, "schedule", "constant", "constant|poly|cosine",
                "learning-rate schedule after the warm-up (MT-UDA: constant)"),
    MK_P_FLOAT(P, warmup, "warmup", "0.2", 0, 1,
               "share of the iterations of linear learning-rate warm-up, during which the "
               "consistency and adversarial weights are 0 (MT-UDA: 30 of 150 epochs)"),
    MK_P_FLOAT(P, rampup, "rampup", "1.0", 0, 1,
               "share of the iterations over which those weights ramp up (sigmoid_rampup; "
               "MT-UDA: 150 of 150 epochs)"),
    MK_P_FLOAT(P, dice_weight, "dice_weight", "0.5", 0, 1, "L_seg = w*Dice + (1-w)*CE"),
    MK_P_FLOAT(P, w_kd, "w_kd", "1.0", 0, 1e4,
               "weight of the intra-domain consistency (softmax-MSE; MT-UDA --kd 1)"),
    MK_P_FLOAT(P, w_con, "w_con", "0.1", 0, 1e4,
               "weight of the inter-domain consistency (MEL; MT-UDA --consistency 0.1)"),
    MK_P_FLOAT(P, w_adv, "w_adv", "0.01", 0, 1e4,
               "weight of the adversarial feature alignment (LE-UDA; not published, 0.01 as "
               "output-space adversarial UDA)"),
    MK_P_BOOL(P, adversarial, "adversarial", "true",
              "LE-UDA's discriminators (false: MT-UDA-style self-ensembling only)"),
    MK_P_BOOL(P, wo_source, "wo_source", "false",
              "ablation: no intra-domain teacher (no L_kd, no intra discriminators)"),
    MK_P_BOOL(P, wo_target, "wo_target", "false",
              "ablation: no inter-domain teacher (no L_con, no inter discriminators)"),
    MK_P_FLOAT(P, ema, "ema", "0.99", 0, 0.99999, "EMA decay of both teachers (MT-UDA 0.99)"),
    MK_P_INT(P, ema_pretrain, "ema_pretrain", "30", 0, 1e9,
             "iterations during which the teachers copy the student (MT-UDA iter_pretrain)"),
    MK_P_FLOAT(P, noise_sigma, "noise_sigma", "0.1", 0, 10, "teacher input noise sigma"),
    MK_P_FLOAT(P, noise_clip, "noise_clip", "0.2", 0, 10, "teacher input noise clip"),
    MK_P_BOOL(P, augment, "augment", "true",
              "random affine per slice (MT-UDA --sup_aug --tea_aug), shared by its aligned images"),
    MK_P_FLOAT(P, aug_scale, "aug_scale", "0.1", 0, 0.9, "affine scale range 1 +- this"),
    MK_P_FLOAT(P, aug_rotate, "aug_rotate", "10.0", 0, 180, "affine rotation range +- degrees"),
    MK_P_STR(P, adv_feature, "adv_feature", "dec_last",
             "feature map of the first adversarial site (the decoder's last block before the "
             "output convolution; any cmedl.hint_layers name)"),
    MK_P_FLOAT(P, adv_lr, "adv_lr", "2e-4", 0, 1, "Adam learning rate of the discriminators"),
    MK_P_INT(P, adv_width, "adv_width", "8", 1, 512, "discriminator channels"),
    MK_P_INT(P, source_volumes, "source_volumes", "0", 0, 1e6,
             "labelled source volumes used (the first N labelled training rows of "
             "data.mri_modality; 0: all); fewer in the manifest is an error before the run"),
    MK_P_PATH(P, translator_model, "translator_model", MK_PARAM_MUST_EXIST,
              "the translator file (G: CT -> MR, F: MR -> CT); unset: models/translator.h5 of "
              "this run (the translate stage before leuda)"),
};
const mk_param_section mk_leuda_section = {
    "leuda",
    "LE-UDA: MR -> CT domain adaptation with few source labels (self-ensembling + "
    "adversarial feature alignment)",
    ROWS, N(ROWS)};

typedef struct cfg_t {
    P p;
    mk_translate_params tp;
} cfg_t;

/* ---------------------------------------------------------------- the shared source part */

void mk__leuda_translator_path(const mk_stage_common *c, const P *p, char *buf, size_t n)
{
    if (p->translator_model && p->translator_model[0])
        snprintf(buf, n, "%s", p->translator_model);
    else
        snprintf(buf, n, "%s/models/translator.h5", c->run_dir);
}

mk_status mk__leuda_translate(mk_ctx *ctx, mk_nn_graph *g, mk_translator *gen, int64_t n,
                              int64_t ch, int64_t cw, const float *in, float *out)
{
    /* the generator needs even sizes: an odd canvas gets one more row / column (a copy of the
     * last), cropped off again */
    int64_t eh = ch + ch % 2, ew = cw + cw % 2;
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
        int64_t nb = n - i0 < 16 ? n - i0 : 16;
        int64_t ne[4] = {nb, 1, eh, ew};
        mk_tensor x = {0};
        if (mk_tensor_new(&x, 4, ne) != 0)
            return mk_err(ctx, MK_ERR_NOMEM, "leuda: out of memory (translations)");
        for (int64_t b = 0; b < nb; b++)
            for (int64_t y = 0; y < eh; y++)
                for (int64_t q = 0; q < ew; q++)
                    x.data[(b * eh + y) * ew + q] =
                        in[((i0 + b) * ch + (y < ch ? y : ch - 1)) * cw + (q < cw ? q : cw - 1)];
        mk_nn_graph_begin(g, 0);
        int ng = mk_nn_graph_set_no_grad(g, 1);
        mk_var *v = mk_translator_forward(gen, g, mk_nn_input(g, &x, 0));
        mk_nn_graph_set_no_grad(g, ng);
        mk_tensor_free(&x);
        if (!v || mk_nn_graph_oom(g))
            return mk_err(ctx, MK_ERR_NOMEM, "leuda: out of memory (translations)");
        for (int64_t b = 0; b < nb; b++)
            for (int64_t y = 0; y < ch; y++)
                memcpy(out + ((i0 + b) * ch + y) * cw, v->t.data + (b * eh + y) * ew,
                       (size_t)cw * sizeof *out);
    }
    return MK_OK;
}

/* Load G and F of the translator file. */
static mk_status load_translator(mk_loop *L, mk__leuda_src *s, const mk_translate_params *tp)
{
    mk_ctx *ctx = mk_loop_ctx(L);
    mk__leuda_translator_path(mk_loop_common(L), s->p, s->translator, sizeof s->translator);
    if (!mk_fs_is_file(s->translator))
        return mk_err(ctx, MK_ERR_NOT_FOUND,
                      "%s: no translator at %s (run the translate stage before it, or set "
                      "leuda.translator_model)",
                      mk_loop_stage(L), s->translator);
    mk_status st = mk_translator_new(ctx, MK_TRANSLATOR_GEN, tp->gen_width, 0, &s->G);
    if (st == MK_OK)
        st = mk_translator_new(ctx, MK_TRANSLATOR_GEN, tp->gen_width, 0, &s->F);
    if (st != MK_OK)
        return st;
    mk__ck_model m[2] = {{"G", mk_translator_params(s->G), NULL},
                         {"F", mk_translator_params(s->F), NULL}};
    if ((st = mk__ckpt_load(ctx, s->translator, "translator", NULL, m, 2, NULL, 0)) != MK_OK)
        return mk_err_prefix(ctx,
                             "%s: translator %s (translate.gen_width must be the one it was "
                             "trained with)",
                             mk_loop_stage(L), s->translator);
    MK_LOG_I(ctx, "%s: translator (frozen) from %s", mk_loop_stage(L), s->translator);
    return MK_OK;
}

mk_status mk__leuda_src_init(mk_loop *L, mk__leuda_src *s, const P *p,
                             const mk_translate_params *tp)
{
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    s->p = p;
    s->lab = s->student = -1;
    mk_status st = load_translator(L, s, tp);
    if (st != MK_OK)
        return st;
    mk_data_params dl = c->data;
    dl.skip_unlabelled = 1;
    dl.train_cap = p->source_volumes;
    if ((st = mk__load_data(L, &dl, c->data.mri_modality, 1, 100, "labelled", 30, &s->lab)) !=
        MK_OK)
        return st;
    const mk_slices *sl = mk_loop_slices(L, s->lab);
    if (p->source_volumes > 0 && sl->volumes < p->source_volumes)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "leuda.source_volumes: asks for %d labelled %s training volumes, the "
                      "manifest has %d",
                      p->source_volumes, c->data.mri_modality, sl->volumes);
    MK_LOG_I(ctx, "%s: %lld labelled source (%s) slices (%lld with a structure) from %d volumes",
             mk_loop_stage(L), (long long)sl->n, c->data.mri_modality, (long long)sl->n_fg,
             sl->volumes);
    size_t np = (size_t)(sl->n * sl->ch * sl->cw);
    float *tmp = malloc(np * sizeof *tmp);
    if (!tmp || !(s->cyc = malloc(np * sizeof *s->cyc))) {
        free(tmp);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory (cycle images)", mk_loop_stage(L));
    }
    st = mk__leuda_translate(ctx, mk_loop_graph(L), s->F, sl->n, sl->ch, sl->cw, sl->img, tmp);
    if (st == MK_OK)
        st = mk__leuda_translate(ctx, mk_loop_graph(L), s->G, sl->n, sl->ch, sl->cw, tmp, s->cyc);
    free(tmp);
    if (st != MK_OK)
        return st;
    if ((s->student = mk_loop_add_unet(L, "student", &c->unet, mk__seed(c->seed, 50))) < 0)
        return ctx->status;
    mk_sched sched = mk_method_sched(p->schedule, p->lr, p->iterations);
    sched.warmup_iters = (long long)llround(p->warmup * (double)p->iterations);
    sched.warmup_start = sched.warmup_iters > 0 ? 1.0f / (float)sched.warmup_iters : 1.0f;
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    oc.lr = p->lr;
    if ((st = mk_loop_add_optim(L, s->student, &oc, &sched)) != MK_OK)
        return st;
    int64_t ne[4] = {p->batch, 1, c->data.patch[1], c->data.patch[0]};
    int64_t ne1[4] = {1, 1, c->data.patch[1], c->data.patch[0]};
    size_t nl = (size_t)(p->batch * ne[2] * ne[3]);
    if (mk_tensor_new(&s->xl, 4, ne) || mk_tensor_new(&s->xc, 4, ne) ||
        mk_tensor_new(&s->tmp, 4, ne1) || !(s->yl = calloc(nl, sizeof *s->yl)) ||
        !(s->ytmp = calloc((size_t)(ne[2] * ne[3]), sizeof *s->ytmp)))
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory (batches)", mk_loop_stage(L));
    MK_LOG_I(ctx, "%s: student U-Net %d levels, width %d: %lld parameters", mk_loop_stage(L),
             c->unet.levels, c->unet.base,
             (long long)mk_nn_params_numel(mk_loop_params(L, s->student)));
    return MK_OK;
}

/* Slice b of x through A (into s->tmp and back). */
static void augment_slice(mk__leuda_src *s, const mk__affine *A, int b, mk_tensor *x)
{
    int h = (int)x->ne[2], w = (int)x->ne[3];
    float *sl = x->data + (int64_t)b * h * w;
    mk__affine_image(A, h, w, sl, s->tmp.data);
    memcpy(sl, s->tmp.data, (size_t)h * w * sizeof *sl);
}

void mk__leuda_augment(mk__leuda_src *s, const mk__affine *A, int b, mk_tensor *x, int32_t *y)
{
    augment_slice(s, A, b, x);
    if (y) {
        int h = (int)x->ne[2], w = (int)x->ne[3];
        int32_t *yl = y + (int64_t)b * h * w;
        mk__affine_labels(A, h, w, yl, s->ytmp);
        memcpy(yl, s->ytmp, (size_t)h * w * sizeof *yl);
    }
}

mk_var *mk__leuda_src_seg(mk_loop *L, mk__leuda_src *s)
{
    const P *p = s->p;
    mk_nn_graph *g = mk_loop_graph(L);
    const float *planes[1] = {s->cyc};
    mk_loop_batch_aligned(L, s->lab, p->batch, &s->xl, s->yl, planes, 1, &s->xc);
    if (p->augment)
        for (int b = 0; b < p->batch; b++) { /* a draw for every sample of the global batch */
            mk__affine A =
                mk__affine_draw(mk_loop_stream_rng(L, s->lab), p->aug_scale, p->aug_rotate);
            int64_t row;
            if (!mk_loop_mine(L, &s->xl, b, &row))
                continue;
            mk__leuda_augment(s, &A, (int)row, &s->xl, s->yl);
            augment_slice(s, &A, (int)row, &s->xc);
        }
    mk_unet *stu = mk_loop_unet(L, s->student);
    mk_var *a = mk_method_seg_loss(g, mk_unet_forward(stu, g, mk_nn_input(g, &s->xl, 0)), s->yl,
                                   p->dice_weight);
    mk_var *b = mk_method_seg_loss(g, mk_unet_forward(stu, g, mk_nn_input(g, &s->xc, 0)), s->yl,
                                   p->dice_weight);
    return a && b ? mk_nn_add(g, a, b) : NULL;
}

mk_status mk__leuda_src_save(mk_loop *L, mk__leuda_src *s, const char *file)
{
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    mk_status st = mk_loop_save_unet(L, file, s->student, c->data.mri_modality, "student");
    if (!mk_loop_primary(L))
        return st; /* rank 0 writes the job's files */
    char path[4200];
    if (st == MK_OK)
        st = mk__run_path(ctx, c->run_dir, "models", "leuda_translator.h5", path, sizeof path);
    mk__ck_model m[2] = {{"G", mk_translator_params(s->G), NULL},
                         {"F", mk_translator_params(s->F), NULL}};
    if (st == MK_OK)
        st = mk__ckpt_save(ctx, path, "translator", 0, m, 2, NULL, 0);
    return st;
}

void mk__leuda_src_free(mk__leuda_src *s)
{
    mk_translator_free(s->G);
    mk_translator_free(s->F);
    free(s->cyc);
    mk_tensor_free(&s->xl);
    mk_tensor_free(&s->xc);
    mk_tensor_free(&s->tmp);
    free(s->yl);
    free(s->ytmp);
}

/* ---------------------------------------------------------------- the method */

/* Unlabelled sets: source x^s (0), x^{s->t} (1), x^{s->t->s} (2); target x^t (3), x^{t->s} (4),
 * x^{t->s->t} (5). */
enum { XS, XST, XSTS, XT, XTS, XTST, NSETS };
/* Student inputs (source-like), intra teacher inputs, inter teacher inputs. */
static const int STU[3] = {XS, XSTS, XTS}, INTRA[2] = {XS, XTS}, INTER[3] = {XST, XT, XTST};
/* The MEL pairs: (index into STU, index into INTER). */
static const int PAIR[4][2] = {{0, 0}, {1, 0}, {2, 1}, {2, 2}};

/* Maps kept for the discriminators' step: [site][k] (site 0 features, 1 probabilities). */
typedef struct maps {
    mk_tensor stu[2][3], intra[2][2], inter[2][3];
} maps;

typedef struct state {
    mk__leuda_src src;
    const P *p;
    int src_u, tgt_u;           /* streams */
    float *aux[4];              /* x^{s->t}, x^{s->t->s} of src_u; x^{t->s}, x^{t->s->t} of tgt_u */
    int intra, inter;           /* teachers (-1: off) */
    int d_intra[2], d_inter[2]; /* discriminators per site (-1: off) */
    char feat[32];              /* the resolved feature name */
    mk_tensor x[NSETS], noisy[NSETS];
    maps keep;
} state;

static mk_status check(mk_ctx *ctx, const mk_stage_common *c, const void *cfgp)
{
    const P *p = &((const cfg_t *)cfgp)->p;
    char names[1][32];
    snprintf(names[0], sizeof names[0], "%s", p->adv_feature ? p->adv_feature : "");
    if (p->adversarial && !(p->wo_source && p->wo_target)) {
        mk_status st = mk_stage_hint_check(ctx, "leuda.adv_feature", c->unet.levels, 1,
                                           (const char(*)[32])names, NULL);
        if (st != MK_OK)
            return st;
    }
    if (!strcmp(c->data.mri_modality, c->data.ct_modality))
        return mk_err(ctx, MK_ERR_CONFIG,
                      "leuda: data.mri_modality (the source domain) and data.ct_modality (the "
                      "target) are both '%s'",
                      c->data.ct_modality);
    return MK_OK;
}

static int needs(const mk_stage_common *c, const void *cfgp, mk_data_need *out)
{
    const P *p = &((const cfg_t *)cfgp)->p;
    out[0] =
        (mk_data_need){c->data.mri_modality, 1, NULL, "leuda.source_volumes", 0, p->source_volumes};
    out[1] = (mk_data_need){c->data.ct_modality, 0, NULL, NULL, 0, 0};
    return 2;
}

static long long iterations(const void *cfgp)
{
    return ((const cfg_t *)cfgp)->p.iterations;
}

/* An unlabelled stream of `modality` (every train row, labels not read) and its two translations
 * through a then b: aux[0] = a(x), aux[1] = b(a(x)). */
static mk_status unlabelled(mk_loop *L, const char *modality, uint64_t data_stream,
                            const char *name, uint64_t rng_stream, mk_translator *a,
                            mk_translator *b, int *stream, float **aux)
{
    const mk_stage_common *c = mk_loop_common(L);
    mk_data_params d = c->data;
    d.no_labels = 1;
    mk_status st = mk__load_data(L, &d, modality, 0, data_stream, name, rng_stream, stream);
    if (st != MK_OK)
        return st;
    const mk_slices *sl = mk_loop_slices(L, *stream);
    size_t np = (size_t)(sl->n * sl->ch * sl->cw);
    if (!(aux[0] = malloc(np * sizeof *aux[0])) || !(aux[1] = malloc(np * sizeof *aux[1])))
        return mk_err(mk_loop_ctx(L), MK_ERR_NOMEM, "leuda: out of memory (translations)");
    mk_ctx *ctx = mk_loop_ctx(L);
    mk_nn_graph *g = mk_loop_graph(L);
    if ((st = mk__leuda_translate(ctx, g, a, sl->n, sl->ch, sl->cw, sl->img, aux[0])) != MK_OK ||
        (st = mk__leuda_translate(ctx, g, b, sl->n, sl->ch, sl->cw, aux[0], aux[1])) != MK_OK)
        return st;
    MK_LOG_I(ctx, "leuda: %lld unlabelled %s slices from %d volumes, with their translations",
             (long long)sl->n, modality, sl->volumes);
    return MK_OK;
}

/* Channels of the feature map `name` of the student (a forward of a zero batch). */
static int feature_channels(mk_loop *L, state *s, int64_t h, int64_t w)
{
    mk_nn_graph *g = mk_loop_graph(L);
    int64_t ne[4] = {1, 1, h, w};
    mk_tensor z = {0};
    if (mk_tensor_new(&z, 4, ne) != 0)
        return -1;
    mk_nn_graph_begin(g, 0);
    int ng = mk_nn_graph_set_no_grad(g, 1);
    mk_unet_forward(mk_loop_unet(L, s->src.student), g, mk_nn_input(g, &z, 0));
    mk_nn_graph_set_no_grad(g, ng);
    mk_var *f = mk_nn_find(g, s->feat);
    mk_tensor_free(&z);
    return f ? (int)f->t.ne[1] : -1;
}

static mk_status init(mk_loop *L, void *sp, const void *cfgp)
{
    state *s = sp;
    const cfg_t *cfg = cfgp;
    const P *p = &cfg->p;
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    s->p = p;
    s->intra = s->inter = -1;
    for (int k = 0; k < 2; k++)
        s->d_intra[k] = s->d_inter[k] = -1;
    mk_status st = mk__leuda_src_init(L, &s->src, p, &cfg->tp);
    if (st != MK_OK)
        return st;
    if ((st = unlabelled(L, c->data.mri_modality, 101, "source", 31, s->src.F, s->src.G, &s->src_u,
                         &s->aux[0])) != MK_OK ||
        (st = unlabelled(L, c->data.ct_modality, 102, "target", 32, s->src.G, s->src.F, &s->tgt_u,
                         &s->aux[2])) != MK_OK)
        return st;
    /* the teachers start as the student (the same initialisation stream) */
    if (!p->wo_source &&
        (s->intra = mk_loop_add_unet(L, "intra_teacher", &c->unet, mk__seed(c->seed, 50))) < 0)
        return ctx->status;
    if (!p->wo_target &&
        (s->inter = mk_loop_add_unet(L, "inter_teacher", &c->unet, mk__seed(c->seed, 50))) < 0)
        return ctx->status;
    int64_t h = c->data.patch[1], w = c->data.patch[0];
    if (p->adversarial && (s->intra >= 0 || s->inter >= 0)) {
        char names[1][32], res[1][32];
        snprintf(names[0], sizeof names[0], "%s", p->adv_feature);
        if ((st = mk_stage_hint_check(ctx, "leuda.adv_feature", c->unet.levels, 1,
                                      (const char(*)[32])names, res)) != MK_OK)
            return st;
        snprintf(s->feat, sizeof s->feat, "%s", res[0]);
        int fch = feature_channels(L, s, h, w), in_ch[2] = {fch, c->unet.classes};
        if (fch < 1)
            return mk_err(ctx, MK_ERR_NOMEM, "leuda: out of memory (feature shape)");
        static const char *const DN[2][2] = {{"D_intra_feat", "D_intra_out"},
                                             {"D_inter_feat", "D_inter_out"}};
        mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
        oc.lr = p->adv_lr;
        oc.beta1 = 0.5f;
        for (int t = 0; t < 2; t++) {
            if ((t == 0 ? s->intra : s->inter) < 0)
                continue;
            int *d = t == 0 ? s->d_intra : s->d_inter;
            for (int k = 0; k < 2; k++) {
                d[k] = mk_loop_add_disc(L, DN[t][k], in_ch[k], p->adv_width,
                                        mk__seed(c->seed, 52 + (uint64_t)(2 * t + k)));
                if (d[k] < 0)
                    return ctx->status;
                if ((st = mk_loop_add_optim(L, d[k], &oc, NULL)) != MK_OK)
                    return st;
            }
        }
        MK_LOG_I(ctx, "leuda: discriminators at '%s' (%d channels) and the output (%d)", s->feat,
                 fch, c->unet.classes);
    }
    int64_t ne[4] = {p->unlabelled_batch, 1, h, w};
    for (int k = 0; k < NSETS; k++)
        if (mk_tensor_new(&s->x[k], 4, ne) || mk_tensor_new(&s->noisy[k], 4, ne))
            return mk_err(ctx, MK_ERR_NOMEM, "leuda: out of memory (batches)");
    return MK_OK;
}

/* dst := v's values (allocated on first use). */
static int keep(mk_tensor *dst, const mk_var *v)
{
    if (!v)
        return -1;
    if (!dst->data || !mk_tensor_same_shape(dst, &v->t)) {
        mk_tensor_free(dst);
        if (mk_tensor_new(dst, v->t.ndim, v->t.ne) != 0)
            return -1;
    }
    mk_tensor_copy(dst, &v->t);
    dst->batch_of = v->t.batch_of;
    return 0;
}

static double weight(const P *p, long long it, float w)
{
    double W = p->warmup * (double)p->iterations, R = p->rampup * (double)p->iterations;
    if ((double)it < W)
        return 0;
    return w * mk_nn_sigmoid_rampup((double)it, R);
}

/* Mean over n of the LSGAN generator loss of D on the maps v[0..n-1]. */
static mk_var *adv_g(mk_nn_graph *g, mk_translator *D, mk_var *const *v, int n)
{
    mk_var *a = NULL;
    for (int k = 0; k < n; k++) {
        mk_var *l = mk_nn_lsgan_g(g, mk_translator_forward(D, g, v[k]));
        a = a ? mk_nn_add(g, a, l) : l;
    }
    return mk_nn_scale(g, a, 1.0f / (float)n);
}

static mk_status step(mk_loop *L, void *sp, mk_terms *terms)
{
    state *s = sp;
    const P *p = s->p;
    mk_ctx *ctx = mk_loop_ctx(L);
    mk_nn_graph *g = mk_loop_graph(L);
    long long it = mk_loop_iter(L);
    int adv = s->d_intra[0] >= 0 || s->d_inter[0] >= 0;
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 2; k++) {
            int d = t == 0 ? s->d_intra[k] : s->d_inter[k];
            if (d >= 0)
                mk_nn_params_set_frozen(mk_loop_params(L, d), "", 1);
        }
    mk_nn_graph_begin(g, 1);
    mk_var *seg = mk__leuda_src_seg(L, &s->src);
    if (!seg)
        return mk_err(ctx, MK_ERR_NOMEM, "leuda: out of memory in the forward pass");
    mk_terms_add(terms, "seg", mk_nn_value(seg), 1);
    mk_var *total = seg;

    /* the unlabelled sets, one affine per slice shared by its aligned images */
    const float *sp_src[2] = {s->aux[0], s->aux[1]}, *sp_tgt[2] = {s->aux[2], s->aux[3]};
    mk_tensor o_src[2] = {s->x[XST], s->x[XSTS]}, o_tgt[2] = {s->x[XTS], s->x[XTST]};
    int ub = p->unlabelled_batch;
    mk_loop_batch_aligned(L, s->src_u, ub, &s->x[XS], NULL, sp_src, 2, o_src);
    mk_loop_batch_aligned(L, s->tgt_u, ub, &s->x[XT], NULL, sp_tgt, 2, o_tgt);
    const int oi[4] = {XST, XSTS, XTS, XTST}; /* the rows (and batch) the copies were given */
    for (int k = 0; k < 4; k++) {
        const mk_tensor *o = k < 2 ? &o_src[k] : &o_tgt[k - 2];
        s->x[oi[k]].ne[0] = o->ne[0];
        s->x[oi[k]].batch_of = o->batch_of;
    }
    if (p->augment)
        for (int dom = 0; dom < 2; dom++)
            for (int b = 0; b < ub; b++) {
                mk__affine A = mk__affine_draw(mk_loop_stream_rng(L, dom ? s->tgt_u : s->src_u),
                                               p->aug_scale, p->aug_rotate);
                int64_t row;
                if (!mk_loop_mine(L, &s->x[3 * dom], b, &row))
                    continue; /* another rank's sample: drawn, not applied here */
                for (int k = 0; k < 3; k++)
                    mk__leuda_augment(&s->src, &A, (int)row, &s->x[3 * dom + k], NULL);
            }
    double wkd = weight(p, it, p->w_kd), wcon = weight(p, it, p->w_con),
           wadv = weight(p, it, p->w_adv);
    if (s->intra >= 0 || s->inter >= 0) {
        mk_unet *stu = mk_loop_unet(L, s->src.student);
        mk_var *zs[3], *fs[3] = {0}, *ps[3] = {0};
        for (int k = 0; k < 3; k++) {
            zs[k] = mk_unet_forward(stu, g, mk_nn_input(g, &s->x[STU[k]], 0));
            if (adv) {
                fs[k] = mk_nn_find(g, s->feat);
                ps[k] = mk_nn_softmax(g, zs[k]);
            }
        }
        /* the teachers on noisy copies (no gradient; training mode, as MT-UDA's ema models) */
        mk_rng *r = mk_nn_graph_rng(g);
        mk_var *zi[2] = {0}, *ze[3] = {0};
        int ng = mk_nn_graph_set_no_grad(g, 1);
        for (int k = 0; k < 2 && s->intra >= 0; k++) {
            mk_tensor *n = &s->noisy[INTRA[k]];
            mk_loop_copy(n, &s->x[INTRA[k]]);
            mk_loop_noise(L, r, n, p->noise_sigma, p->noise_clip);
            zi[k] = mk_unet_forward(mk_loop_unet(L, s->intra), g, mk_nn_input(g, n, 0));
            if (adv && (keep(&s->keep.intra[0][k], mk_nn_find(g, s->feat)) ||
                        keep(&s->keep.intra[1][k], mk_nn_softmax(g, zi[k]))))
                return mk_err(ctx, MK_ERR_NOMEM, "leuda: out of memory (teacher maps)");
        }
        for (int k = 0; k < 3 && s->inter >= 0; k++) {
            mk_tensor *n = &s->noisy[INTER[k]];
            mk_loop_copy(n, &s->x[INTER[k]]);
            mk_loop_noise(L, r, n, p->noise_sigma, p->noise_clip);
            ze[k] = mk_unet_forward(mk_loop_unet(L, s->inter), g, mk_nn_input(g, n, 0));
            if (adv && (keep(&s->keep.inter[0][k], mk_nn_find(g, s->feat)) ||
                        keep(&s->keep.inter[1][k], mk_nn_softmax(g, ze[k]))))
                return mk_err(ctx, MK_ERR_NOMEM, "leuda: out of memory (teacher maps)");
        }
        mk_nn_graph_set_no_grad(g, ng);
        if (s->intra >= 0) {
            /* x^s and x^{t->s}: STU[0] and STU[2] */
            mk_var *kd = mk_nn_scale(g,
                                     mk_nn_add(g, mk_nn_softmax_mse(g, zs[0], zi[0]),
                                               mk_nn_softmax_mse(g, zs[2], zi[1])),
                                     0.5f);
            if (!kd)
                return mk_err(ctx, MK_ERR_NOMEM, "leuda: out of memory (intra consistency)");
            mk_terms_add(terms, "kd", mk_nn_value(kd), (float)wkd);
            total = mk_nn_add(g, total, mk_nn_scale(g, kd, (float)wkd));
        }
        if (s->inter >= 0) {
            mk_var *con = NULL;
            for (int k = 0; k < 4; k++) {
                mk_var *m = mk_nn_mel(g, zs[PAIR[k][0]], ze[PAIR[k][1]], 1e-8f);
                con = con ? mk_nn_add(g, con, m) : m;
            }
            con = mk_nn_scale(g, con, 0.25f);
            if (!con)
                return mk_err(ctx, MK_ERR_NOMEM, "leuda: out of memory (inter consistency)");
            mk_terms_add(terms, "con", mk_nn_value(con), (float)wcon);
            total = mk_nn_add(g, total, mk_nn_scale(g, con, (float)wcon));
        }
        if (adv) {
            for (int k = 0; k < 3; k++)
                if (keep(&s->keep.stu[0][k], fs[k]) || keep(&s->keep.stu[1][k], ps[k]))
                    return mk_err(ctx, MK_ERR_NOMEM, "leuda: out of memory (student maps)");
            mk_var *a = NULL;
            if (s->intra >= 0) {
                mk_var *vf[2] = {fs[0], fs[2]}, *vp[2] = {ps[0], ps[2]};
                a = mk_nn_add(g, adv_g(g, mk_loop_translator(L, s->d_intra[0]), vf, 2),
                              adv_g(g, mk_loop_translator(L, s->d_intra[1]), vp, 2));
            }
            if (s->inter >= 0) {
                mk_var *b = mk_nn_add(g, adv_g(g, mk_loop_translator(L, s->d_inter[0]), fs, 3),
                                      adv_g(g, mk_loop_translator(L, s->d_inter[1]), ps, 3));
                a = a ? mk_nn_add(g, a, b) : b;
            }
            if (!a)
                return mk_err(ctx, MK_ERR_NOMEM, "leuda: out of memory (adversarial terms)");
            mk_terms_add(terms, "adv", mk_nn_value(a), (float)wadv);
            total = mk_nn_add(g, total, mk_nn_scale(g, a, (float)wadv));
        }
    }
    if (mk_nn_graph_oom(g) || !total)
        return mk_err(ctx, MK_ERR_NOMEM, "leuda: out of memory in the forward pass");
    mk_nn_backward(g, total);
    mk_loop_optim_step(L, s->src.student);

    if (adv) {
        /* the discriminators: teacher maps real (1), student maps fake (0), all detached */
        mk_nn_graph_begin(g, 1);
        mk_var *ld = NULL;
        for (int t = 0; t < 2; t++)
            for (int site = 0; site < 2; site++) {
                int d = t == 0 ? s->d_intra[site] : s->d_inter[site];
                if (d < 0)
                    continue;
                mk_nn_params_set_frozen(mk_loop_params(L, d), "", 0);
                mk_nn_params_zero_grad(mk_loop_params(L, d));
                mk_translator *D = mk_loop_translator(L, d);
                int n = t == 0 ? 2 : 3;
                mk_var *l = NULL;
                for (int k = 0; k < n; k++) {
                    mk_tensor *real = t == 0 ? &s->keep.intra[site][k] : &s->keep.inter[site][k];
                    mk_tensor *fake = &s->keep.stu[site][t == 0 ? (k == 0 ? 0 : 2) : k];
                    mk_var *e =
                        mk_nn_lsgan_d(g, mk_translator_forward(D, g, mk_nn_input(g, real, 0)),
                                      mk_translator_forward(D, g, mk_nn_input(g, fake, 0)));
                    l = l ? mk_nn_add(g, l, e) : e;
                }
                l = mk_nn_scale(g, l, 1.0f / (float)n);
                ld = ld ? mk_nn_add(g, ld, l) : l;
            }
        if (!ld || mk_nn_graph_oom(g))
            return mk_err(ctx, MK_ERR_NOMEM, "leuda: out of memory in the discriminator pass");
        mk_terms_add(terms, "disc", mk_nn_value(ld), 1);
        mk_nn_backward(g, ld);
        for (int t = 0; t < 2; t++)
            for (int site = 0; site < 2; site++) {
                int d = t == 0 ? s->d_intra[site] : s->d_inter[site];
                if (d >= 0)
                    mk_loop_optim_step(L, d);
            }
    }
    /* both teachers follow the student (MT-UDA update_ema_variables, parameters only) */
    mk_status st = MK_OK;
    for (int t = 0; t < 2 && st == MK_OK; t++) {
        int net = t == 0 ? s->intra : s->inter;
        if (net >= 0)
            st = mk_nn_params_ema_step(ctx, mk_loop_params(L, net),
                                       mk_loop_params(L, s->src.student), p->ema,
                                       (it + 1) - p->ema_pretrain, MK_NN_EMA_KEEP_BUFFERS);
    }
    return st;
}

static mk_status save(mk_loop *L, void *sp)
{
    state *s = sp;
    const char *mr = mk_loop_common(L)->data.mri_modality;
    mk_status st = mk__leuda_src_save(L, &s->src, "leuda_student.h5");
    if (st == MK_OK && s->intra >= 0)
        st = mk_loop_save_unet(L, "leuda_intra.h5", s->intra, mr, "intra_teacher");
    if (st == MK_OK && s->inter >= 0)
        st = mk_loop_save_unet(L, "leuda_inter.h5", s->inter, mr, "inter_teacher");
    return st;
}

static void free_state(void *sp)
{
    state *s = sp;
    mk__leuda_src_free(&s->src);
    for (int k = 0; k < 4; k++)
        free(s->aux[k]);
    for (int k = 0; k < NSETS; k++) {
        mk_tensor_free(&s->x[k]);
        mk_tensor_free(&s->noisy[k]);
    }
    for (int site = 0; site < 2; site++)
        for (int k = 0; k < 3; k++) {
            mk_tensor_free(&s->keep.stu[site][k]);
            mk_tensor_free(&s->keep.inter[site][k]);
            if (k < 2)
                mk_tensor_free(&s->keep.intra[site][k]);
        }
}

static int val_net(mk_loop *L, void *sp, const char **modality)
{
    *modality = mk_loop_common(L)->data.mri_modality;
    return ((state *)sp)->src.student;
}

const char *mk__leuda_after(const P *p)
{
    return p->translator_model && p->translator_model[0] ? NULL : "translate";
}

static const char *after(const void *cfgp)
{
    return mk__leuda_after(&((const cfg_t *)cfgp)->p);
}

static const mk_method_use USES[] = {
    {&mk_leuda_section, offsetof(cfg_t, p)},
    {&mk_translate_section, offsetof(cfg_t, tp)},
};
#define TR "models/leuda_translator.h5"
/* name: on the target test images translated to the source look (G), the authors' protocol;
 * name_ct: on the target images as they are. */
static const mk_method_output OUTPUTS[] = {
    {"leuda", "models/leuda_student.h5", TR, NULL, NULL, NULL},
    {"leuda_ct", "models/leuda_student.h5", NULL, NULL, NULL, NULL},
    {"leuda_intra", "models/leuda_intra.h5", TR, NULL, "!leuda.wo_source", NULL},
    {"leuda_intra_ct", "models/leuda_intra.h5", NULL, NULL, "!leuda.wo_source", NULL},
    {"leuda_inter", "models/leuda_inter.h5", TR, NULL, "!leuda.wo_target", NULL},
    {"leuda_inter_ct", "models/leuda_inter.h5", NULL, NULL, "!leuda.wo_target", NULL},
};

const mk_method mk_method_leuda = {
    .name = "leuda",
    .summary = "LE-UDA: student + intra/inter EMA teachers + adversarial feature alignment",
    .uses = USES,
    .nuses = N(USES),
    .cfg_size = sizeof(cfg_t),
    .state_size = sizeof(state),
    .check = check,
    .needs = needs,
    .iterations = iterations,
    .init = init,
    .step = step,
    .save = save,
    .free = free_state,
    .outputs = OUTPUTS,
    .noutputs = N(OUTPUTS),
    .val_net = val_net,
    .after = after,
    .data_parallel = 1,
    .split_batches = {"leuda.batch", "leuda.unlabelled_batch"},
};
