/* Internal helpers shared by the stage sources (not installed). */
#ifndef MK_STAGE_INTERNAL_H
#define MK_STAGE_INTERNAL_H

#include "mk_stages.h"
#include "models/mk_translator.h"
#include "nn/mk_optim.h"

/* cmedl hint_where = "teacher_correct". mask[b][i] = 1 where the 2-class logits [B,2,H,W] predict
 * the label y (0 / non-zero) at pixel i. The masked target is tf where every mask pixel under a
 * feature position (features [B,C,h,w], h = H/s) is 1, else sf, so the MSE against it counts
 * only teacher-correct positions (the others contribute 0 and no gradient). */
void mk__hint_correct_mask(const mk_tensor *logits, const int32_t *y, uint8_t *mask);
void mk__hint_masked_target(const uint8_t *mask, int64_t H, int64_t W, const mk_tensor *tf,
                            const mk_tensor *sf, mk_tensor *out);

/* One model of a multi-model checkpoint file. */
typedef struct mk__ck_model {
    const char *name; /* HDF5 group */
    mk_nn_params *params;
    mk_optim *opt; /* NULL: no optimiser state */
} mk__ck_model;

typedef struct mk__ck_rng {
    const char *name;
    mk_rng *rng;
} mk__ck_rng;

/* Multi-model HDF5 file, written to a temp name and renamed:
 *   /<model>/params/<param name, '.' -> '/'>   float32
 *   /<model>/optim/state0|state1/<name>        Adam m / v; attribute steps on /<model>/optim
 *   /rng/<name>                                uint64[4] xoshiro state
 *   root attributes: format "medkd-stage-checkpoint", stage, iteration */
mk_status mk__ckpt_save(mk_ctx *ctx, const char *path, const char *stage, long long iteration,
                        const mk__ck_model *m, int nm, const mk__ck_rng *r, int nr);
/* Load what mk__ckpt_save wrote (every listed model/rng must be present, same shapes). Models with
 * opt == NULL load parameters only. iteration may be NULL. */
mk_status mk__ckpt_load(mk_ctx *ctx, const char *path, const char *stage, long long *iteration,
                        const mk__ck_model *m, int nm, const mk__ck_rng *r, int nr);

/* path = run_dir/sub/name, creating run_dir/sub */
mk_status mk__run_path(mk_ctx *ctx, const char *run_dir, const char *sub, const char *name,
                       char *buf, size_t n);

/* Blending weights of one pw x ph inference window, row-major: 1 everywhere (uniform), or
 * exp(-d^2 / 2) with d the distance from the window's centre in units of size / 8 per axis,
 * scaled so that the central pixel(s) weigh 1. */
void mk__window_weights(int pw, int ph, int uniform, float *w);

/* The value a normalised volume is padded with outside its bounds: -1 (the CT window's floor) for
 * CT, the volume's minimum for MRI. */
float mk__pad_value(const float *vol, int64_t n, int is_ct);

/* The normalisation of one volume (mk_data_normalise), applied voxel by voxel so inference need not
 * keep a float copy of the volume: CT (x - lo) / (hi - lo) x 2 - 1, MRI x a + b, clipped to
 * [-1, 1] (the same arithmetic as mk_data_normalise, bit for bit). */
typedef struct mk__norm {
    int is_ct;
    double lo, hi, a, b;
} mk__norm;
mk_status mk__norm_init(mk_ctx *ctx, const mk_data_params *p, const mk_image *img, int is_ct,
                        mk__norm *n);
static inline float mk__norm_apply(const mk__norm *n, double x)
{
    double v = n->is_ct ? (x - n->lo) / (n->hi - n->lo) * 2.0 - 1.0 : x * n->a + n->b;
    return (float)(v < -1 ? -1 : v > 1 ? 1 : v);
}
/* mk_data_cut from the image itself, normalising each voxel read (the same values as cutting the
 * mk_data_normalise'd volume). */
void mk__cut_image(const mk_image *img, const mk__norm *n, int axis, int64_t s, int64_t u0,
                   int64_t v0, int pw, int ph, float pad, float *out);
/* The padding value outside the volume, as mk__pad_value gives it for the normalised volume. */
float mk__norm_pad(const mk__norm *n, const mk_image *img);

/* ---- the translator's networks and steps (stages/method_translate.c), shared with cmedl ---- */
struct mk_loop;
typedef struct mk__i2i {
    int net[4]; /* loop nets G, F, D_MR, D_CT */
    const mk_translate_params *tp;
    mk_tensor xc, xm, fake_m, fake_c; /* [batch, 1, patch[1], patch[0]] */
    int32_t *yc, *ym;                 /* batch labels */
} mk__i2i;
/* G (seed stream 10), F (11), D_MR (12), D_CT (13), each with Adam (lr, beta1 of tp). */
mk_status mk__i2i_init(struct mk_loop *L, mk__i2i *t, const mk_translate_params *tp, int batch);
void mk__i2i_free(mk__i2i *t);
void mk__i2i_freeze_d(struct mk_loop *L, const mk__i2i *t, int frozen);
/* The generators' loss on this batch (LSGAN + cycle + identity) in the loop's graph; the fakes
 * G(x_ct) and F(x_mr) into *fake_m, *fake_c. */
mk_var *mk__i2i_gen(struct mk_loop *L, mk__i2i *t, const mk_translate_params *tp, mk_var *xc,
                    mk_var *xm, mk_var **fake_m, mk_var **fake_c);
/* The discriminator step on real batches and t->fake_m / fake_c (a graph of its own). */
mk_status mk__i2i_disc(struct mk_loop *L, mk__i2i *t, double *ldisc);
/* Keep the step's translations G(x_ct), F(x_mr) for the discriminator pass (this process's rows).
 */
void mk__i2i_keep_fakes(mk__i2i *t, const mk_var *fake_m, const mk_var *fake_c);
/* models/<file>: groups G, F, D_MR, D_CT (the translator format). */
mk_status mk__i2i_save(struct mk_loop *L, const mk__i2i *t, const char *file);
/* Load the train slices of `modality` (data seed stream data_stream) into a new loop stream
 * named stream_name whose RNG is seed stream rng_stream. */
mk_status mk__load_data(struct mk_loop *L, const mk_data_params *d, const char *modality,
                        int need_labels, uint64_t data_stream, const char *stream_name,
                        uint64_t rng_stream, int *stream);

/* ---- ACT-Net (stages/method_coteach*.c): the parameters the three stages share ---- */
typedef struct mk_coteach_teacher_params {
    int iterations, batch;
    float lr;
    int width, depth;
    float dice_weight;
    int schedule;
} mk_coteach_teacher_params;

enum { MK_COTEACH_KD_KL = 0, MK_COTEACH_KD_SOFTMAX_MSE = 1 };
enum { MK_COTEACH_T_FIXED = 0, MK_COTEACH_T_GLOBAL = 1, MK_COTEACH_T_INSTANCE = 2 };

typedef struct mk_coteach_params {
    int iterations, batch, unlabelled_batch;
    float lr;
    int schedule;
    int width, depth; /* the tiny student (and its co-teacher) */
    float dice_weight;
    float w_kd, w_co;     /* weights of the teacher and co-teacher paths (0: off) */
    float rampup;         /* share of the iterations of both weights' sigmoid ramp-up */
    int kd_loss;          /* MK_COTEACH_KD_* of the teacher path */
    int temperature;      /* MK_COTEACH_T_* */
    float t_fixed;        /* the fixed temperature */
    float t_start, t_end; /* CTKD: T = t_start + t_end * sigmoid(.) */
    float ctkd_ramp;      /* share of the iterations over which CTKD's lambda goes 0 -> -1 */
    int mlp_hidden;       /* instance-wise temperature: hidden units of the MLP */
    float ema;            /* co-teacher EMA decay */
    int ema_pretrain;     /* iterations over which the co-teacher copies the student */
    float noise_sigma, noise_clip; /* the co-teacher's input noise */
    const char *modality;
    const char *teacher_model; /* NULL / "": models/coteach_teacher.h5 of the run */
} mk_coteach_params;

/* The labelled train slices of `modality` (rows without a label skipped) as the loop stream
 * "labelled": data seed stream 100, RNG stream 30 (the same batches in every coteach stage). */
mk_status mk__coteach_labelled(struct mk_loop *L, const mk_data_params *d, const char *modality,
                               int *stream);

/* ---- random affine augmentation of 2D slices (stages/augment.c) ---- */
/* out(p) = in(c + A (p - c)) for pixel centres p of an h x w slice, c its centre: A = R(-angle) /
 * scale, a rotation by `angle` radians and a zoom by `scale` (> 1 enlarges). */
typedef struct mk__affine {
    double
        a[4]; /* row-major 2x2: x_in - cx = a0 (x - cx) + a1 (y - cy), y_in - cy = a2 .. + a3 .. */
} mk__affine;
/* scale uniform in [1 - dscale, 1 + dscale], angle uniform in [-deg, deg] degrees (two draws). */
mk__affine mk__affine_draw(mk_rng *r, double dscale, double deg);
mk__affine mk__affine_make(double scale, double angle_rad);
/* Bilinear (images) or nearest (labels) resampling; source positions outside the slice take the
 * nearest edge pixel. in and out must not overlap. */
void mk__affine_image(const mk__affine *A, int h, int w, const float *in, float *out);
void mk__affine_labels(const mk__affine *A, int h, int w, const int32_t *in, int32_t *out);

/* ---- LE-UDA (stages/method_leuda*.c): parameters and the supervised source part ---- */
typedef struct mk_leuda_params {
    int iterations, batch, unlabelled_batch;
    float lr;
    int schedule;
    float warmup, rampup; /* shares of the iterations */
    float dice_weight;
    float w_kd, w_con, w_adv;
    int adversarial, wo_source, wo_target;
    float ema;
    int ema_pretrain;
    float noise_sigma, noise_clip;
    int augment;
    float aug_scale, aug_rotate;
    const char *adv_feature;
    float adv_lr;
    int adv_width;
    int source_volumes;
    const char *translator_model; /* NULL / "": models/translator.h5 of the run */
} mk_leuda_params;

/* What leuda and its source-only baseline share: the frozen translator (G: target -> source,
 * F: source -> target), the labelled source slices x^s with their cycle reconstructions
 * x^{s->t->s} = G(F(x^s)) (same index, same mask), the student and its supervised loss. */
typedef struct mk__leuda_src {
    const mk_leuda_params *p;
    mk_translator *G, *F;
    char translator[4200]; /* the file they were read from */
    int lab;               /* loop stream of the labelled source slices */
    float *cyc;            /* x^{s->t->s} of every stored slice (the stream's canvas) */
    int student;
    mk_tensor xl, xc, tmp;
    int32_t *yl, *ytmp;
} mk__leuda_src;
/* The translator file (leuda.translator_model or the translate stage's models/translator.h5). */
void mk__leuda_translator_path(const mk_stage_common *c, const mk_leuda_params *p, char *buf,
                               size_t n);
/* The stage that must run before leuda / leuda_source: "translate", unless translator_model. */
const char *mk__leuda_after(const mk_leuda_params *p);
/* Translator, labelled stream (data seed stream 100, RNG stream 30), cycle images, student U-Net
 * (seed stream 50) with its Adam and schedule (linear warm-up over `warmup`). */
mk_status mk__leuda_src_init(struct mk_loop *L, mk__leuda_src *s, const mk_leuda_params *p,
                             const mk_translate_params *tp);
/* n images of ch x cw (`in`, contiguous) through gen into out, in graph g (eval mode, no
 * gradient, batches of 16; an odd size is padded by a copy of the last row / column, cropped
 * off again). */
mk_status mk__leuda_translate(mk_ctx *ctx, mk_nn_graph *g, mk_translator *gen, int64_t n,
                              int64_t ch, int64_t cw, const float *in, float *out);
/* One labelled batch (x^s and x^{s->t->s}, the same random affine per slice drawn from the
 * stream's RNG) and the student's loss sum seg(x^s) + seg(x^{s->t->s}) in the loop's graph
 * (begun by the caller). NULL on OOM. */
mk_var *mk__leuda_src_seg(struct mk_loop *L, mk__leuda_src *s);
/* Augment slice b of x (and the same slice of every extra tensor, and labels y) with affine A. */
void mk__leuda_augment(mk__leuda_src *s, const mk__affine *A, int b, mk_tensor *x, int32_t *y);
/* models/<file> (the student) and models/leuda_translator.h5 (G and F of the translator used). */
mk_status mk__leuda_src_save(struct mk_loop *L, mk__leuda_src *s, const char *file);
void mk__leuda_src_free(mk__leuda_src *s);

/* splitmix64 of seed and a stream number: independent seeds for each network and data stream */
uint64_t mk__seed(uint64_t seed, uint64_t stream);

/* Sliding-window starts along an axis of d voxels for windows of p (stages/predict.c): nnU-Net's
 * placement, n = ceil((d - p) / (step p)) + 1 windows evenly from 0 to d - p; one centred window
 * when d <= p. Returns n (at most max). */
int mk__window_starts(int64_t d, int p, double step, int64_t *out, int max);

/* Validation during training (stages/validation.c). */
typedef struct mk__val_entry {
    long long iteration;
    double dice; /* mean over the structures of the mean over cases */
    int nstruct;
    double structure[MK_MAX_CLASSES];
} mk__val_entry;
typedef struct mk__val mk__val;
/* The labelled val-split cases of `modality`, prepared; *out NULL (a warning logged) when there
 * are none. Ownership: *out new, mk__val_free. */
mk_status mk__val_open(mk_ctx *ctx, const mk_stage_common *c, const char *stage,
                       const char *modality, mk__val **out);
/* Read back checkpoints/<stage>.validation.json, keeping the entries up to iteration it0. */
mk_status mk__val_resume(mk__val *v, long long it0);
/* Score net at iteration it; *improved: 1 when it is the best mean Dice so far. */
mk_status mk__val_run(mk__val *v, mk_unet *net, long long it, int *improved);
const mk__val_entry *mk__val_best(const mk__val *v); /* NULL: none yet */
const mk__val_entry *mk__val_last(const mk__val *v);
int mk__val_count(const mk__val *v);
void mk__val_free(mk__val *v);

/* Slice-wise sliding-window segmentation with a loaded network (and generator, may be NULL) of
 * a volume already prepared (mk_data_prepare): the mask on that volume's grid (label values),
 * and with gen and via_out the generator's output. Caller owns both. *forward_s (may be NULL):
 * the seconds spent in the networks' forward passes alone. */
mk_status mk__predict_net(mk_ctx *ctx, mk_unet *net, mk_translator *gen, const mk_image *vol,
                          int is_ct, const mk_data_params *p, int threads, mk_image **mask_out,
                          mk_image **via_out, double *forward_s);

#endif
