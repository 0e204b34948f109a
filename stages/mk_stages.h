/* medkd stages: the training stages of `pipeline run` (translate, cmedl, baseline) and inference
 * with a trained student. Stages never see the config: the one adapter of pipeline/run_method.c
 * binds the plain parameter structs below (see docs/stages.md for the config keys).
 *
 *     mk_stage_common c;
 *     mk_stage_common_defaults(&c);
 *     c.run_dir = "runs/demo"; c.data.manifest = "demo-data/manifest.csv";
 *     mk_translate_params tp; mk_translate_defaults(&tp);
 *     mk_cmedl_params cp;     mk_cmedl_defaults(&cp);
 *     st = mk_stage_translate(ctx, &c, &tp, NULL);          // models/translator.h5
 *     st = mk_stage_cmedl(ctx, &c, &tp, &cp, NULL);         // models/cmedl_{student,teacher}.h5
 *     st = mk_stage_baseline(ctx, &c, &cp, 0, NULL);        // models/baseline_student.h5
 *
 * Run directory layout written here: models/<name>.h5 (mk_model_save format, see
 * models/mk_unet.h; translator.h5 holds groups G/, F/, D_MR/, D_CT/ with params/ each) and
 * checkpoints/<stage>.h5 (every model, every Adam state, iteration and every RNG state; written
 * atomically every checkpoint_every iterations and on cancel). With `resume` a stage continues from
 * its checkpoint and ends with bit-identical weights to an uninterrupted run with the same seed and
 * threads.
 *
 * Data (stages/data.c): the manifest CSV (id, modality, image, label, split, domain; paths
 * relative to the manifest's folder) is read, volumes of the wanted modality and split are cut
 * into 2D slices across `slice_axis`, normalised (CT: window [lo, hi] HU -> [-1, 1] clipped;
 * MRI zscore: (v - mean) / (3 std) clipped to [-1, 1]; MRI minmax: [min, max] -> [-1, 1]), and
 * cropped/padded to the patch, centred on the body's bounding box and shifted to contain the
 * slice's structure. Every slice with the structure is kept, plus `empty_ratio` empty body slices
 * per structure slice (chosen with the seed). Labels: class indices 0..classes-1 of the label
 * mapping (mk_data_class_of_value; classes == 2: 1 where label == data.label, else 0).
 */
#ifndef MK_STAGES_H
#define MK_STAGES_H

#include <stddef.h>
#include <stdint.h>

#include "core/mk_param.h"
#include "core/mk_rng.h"
#include "core/mk_status.h"
#include "io/mk_image.h"
#include "io/mk_manifest.h"
#include "models/mk_unet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- data */

typedef enum mk_mri_norm { MK_MRI_ZSCORE = 0, MK_MRI_MINMAX } mk_mri_norm;

/* The manifest column naming each CT case's paired MRI rendering (`pipeline synth --paired`):
 * what cmedl.oracle_pmri trains the teacher on and the evaluate stage's oracle_teacher reads. */
#define MK_STAGE_PAIRED_MR_COLUMN "paired_mr"

/* Classes of a segmentation including the background: 2 (one structure) to MK_MAX_CLASSES. */
#define MK_MAX_CLASSES 16

typedef struct mk_data_params {
    const char *manifest;     /* CSV path (borrowed) */
    const char *ct_modality;  /* manifest modality of CT ("CT") */
    const char *mri_modality; /* manifest modality of MRI ("MR") */
    double ct_window[2];      /* HU window mapped to [-1, 1] */
    mk_mri_norm mri_norm;
    int slice_axis;          /* data.slice_axis: 0 = i, 1 = j, 2 = k (voxel axes of the volume as
                                stored), 3 = axial, 4 = coronal, 5 = sagittal (anatomical: every volume
                                is first reoriented to `orientation`); mk_data_axis gives the voxel axis */
    const char *orientation; /* three-letter code (RAS, LPS, ...) volumes are reoriented to before
                                anatomical slicing (borrowed) */
    double spacing[3];       /* target spacing in mm along the (reoriented) voxel axes; 0 keeps
                                an axis' own spacing; images linear, labels nearest */
    const char *case_table;  /* optional CSV (id, then any of modality, domain, split) overriding
                                those fields of the manifest's rows by id (borrowed; NULL: none) */
    double val_fraction;     /* share of the labelled train rows of each modality held out as
                                split "val" (seeded with split_seed) when no row is in "val" */
    int split_seed;
    int sampler; /* 0 random: patches at random positions of whole slices, the share
                    foreground_share of each batch centred on a structure voxel; 1
                    centred: the fixed crop around the body and structure (+ jitter) */
    double foreground_share;
    int patch[2]; /* patch size along the two in-plane voxel axes (lower axis first) */
    int label;    /* label value of the structure (classes == 2, nlabels == 0) */
    /* Classes and label mapping (multi-class segmentation). classes counts the background
     * (default 2, at most MK_MAX_CLASSES). nlabels == 0: class 1 is `label` when classes == 2,
     * else class c is label value c (c = 1..classes-1). nlabels > 0 (must be classes - 1):
     * class c = j + 1 is the label-file value label_values[j], j = 0..nlabels-1, values in
     * 1..255 strictly ascending; label_names[j] its structure name ("" = "label_<value>").
     * Label-file values outside the mapping are background (class 0). */
    int classes;
    int nlabels;
    int label_values[MK_MAX_CLASSES];
    char label_names[MK_MAX_CLASSES][32];
    double empty_ratio;        /* empty body slices kept per structure slice (default 1) */
    int ct_train_cases;        /* > 0: only the first N CT rows of split train (label-scarce runs;
                                  the translator, teacher and student alike); 0: all */
    int crop_jitter;           /* training: slices are kept with this many extra voxels on each
                                  side of the patch, and every batch crops the patch at a random
                                  offset in [0, 2 * jitter] per axis (augmentation; 0: the fixed
                                  centred crop) */
    const char *paired_column; /* non-NULL (CT training data of cmedl.oracle_pmri): every row
                                  also names an image in this extra manifest column, on the
                                  row image's grid; it is normalised as MRI and cut with the
                                  same crops into mk_slices.img2 (borrowed) */
    int unlabelled_rest;       /* 1 (cmedl.unlabelled_hint): select instead the train rows of the
                                  modality that the labelled set leaves out: rows without a label
                                  and labelled rows beyond ct_train_cases; loaded without labels */
    int skip_unlabelled;       /* 1: rows without a label are left out (not an error with
                                  need_labels, not counted by ct_train_cases) */
    int no_labels;             /* 1 (set by methods): label files are not read (LE-UDA's target
                                  domain: its masks exist only for scoring) */
    int train_cap;             /* > 0 (set by methods, e.g. leuda.source_volumes): only the first
                                  N train rows of the modality loaded, whatever the modality
                                  (overrides ct_train_cases; with skip_unlabelled the first N
                                  labelled rows) */
    double window_step;        /* sliding-window inference: window step as a fraction of the patch
                                  (nnU-Net placement; 0 = 0.5) */
    int tta;                   /* sliding-window inference: 1 = average over the 4 mirrorings of
                                  each window (not with a generator) */
    int blend_uniform;         /* sliding-window inference: 1 = plain mean of overlapping windows;
                                  0 (default) = Gaussian importance weights, sigma = patch / 8, so
                                  a pixel is decided by the windows it is central in (nnU-Net) */
} mk_data_params;

void mk_data_defaults(mk_data_params *p);

#define MK_SAMPLER_RANDOM 0
#define MK_SAMPLER_CENTRED 1
/* Cases whose spacing differs by more than this factor on an axis, without a target spacing,
 * get a warning (they are sliced as they are, at their own scales). */
#define MK_DATA_SPACING_WARN 1.5

/* The voxel axis slices are cut across in a volume prepared by mk_data_prepare (0..2). */
int mk_data_axis(const mk_data_params *p);
/* 1 when p asks volumes to be reoriented (anatomical slice axis) or resampled (a spacing). */
int mk_data_transforms(const mk_data_params *p);
/* The volume training and inference work on: `img` reoriented to p->orientation (anatomical
 * slice axes only; exact, no interpolation) and resampled to p->spacing (when set; labels with
 * is_label: nearest, else linear). *out is a new image (a copy when nothing changes). */
mk_status mk_data_prepare(mk_ctx *ctx, const mk_data_params *p, const mk_image *img, int is_label,
                          mk_image **out);
/* The inverse for a label map predicted on mk_data_prepare(orig): back onto orig's exact grid
 * (dims, geometry, NIfTI meta): nearest resampling when p resamples, then the exact inverse
 * permutation/flip. *out new. */
mk_status mk_data_restore(mk_ctx *ctx, const mk_data_params *p, const mk_image *work,
                          const mk_image *orig, mk_image **out);

/* The manifest of p: a CSV file, an nnU-Net v2 or MSD dataset folder or its dataset.json
 * (mk_manifest_import_nnunet), with p->case_table applied and, when no row is in split "val",
 * round(val_fraction x n) of each modality's labelled train rows (at least 1 when n >= 2 and
 * val_fraction > 0) moved to "val", chosen with split_seed (the same rows for every stage and
 * check). Ownership: *out new, mk_manifest_free. */
mk_status mk_data_manifest(mk_ctx *ctx, const mk_data_params *p, mk_manifest **out);

/* The class/label mapping of mk_data_params (classes, nlabels, label_values, label_names).
 * mk_data_check_labels: MK_ERR_INVALID naming the field when classes is outside
 * 2..MK_MAX_CLASSES, nlabels is neither 0 nor classes - 1, a value is outside 1..255 or the
 * values are not strictly ascending (`label` outside 1..255 with classes == 2, nlabels == 0). */
mk_status mk_data_check_labels(mk_ctx *ctx, const mk_data_params *p);
/* Number of structures (foreground classes): classes - 1. */
int mk_data_nstructures(const mk_data_params *p);
/* Label-file value of class c (0 for c = 0, and for c outside 1..classes-1). */
int mk_data_value_of_class(const mk_data_params *p, int c);
/* Class of label-file value v: 1..classes-1 for the mapped values, 0 for every other value. */
int mk_data_class_of_value(const mk_data_params *p, long long v);
/* Structure name of class c >= 1: label_names[c - 1] when set, else "label_<value>" written
 * into buf (n bytes); returns label_names[c - 1] or buf. */
const char *mk_data_class_name(const mk_data_params *p, int c, char *buf, size_t n);

/* A set of 2D slices, [n][1][h][w] floats with w along the lower in-plane voxel axis. */
typedef struct mk_slices {
    int64_t n;
    int h, w;     /* patch (what a batch holds) */
    int ch, cw;   /* stored canvas: h + 2 jitter, w + 2 jitter */
    float *img;   /* n*ch*cw, owned */
    int32_t *lab; /* n*ch*cw class indices 0..classes-1 (mk_data_class_of_value), owned;
                     NULL when the volumes have no labels */
    float *img2;  /* n*ch*cw paired images (mk_data_params.paired_column), owned; else NULL */
    int64_t n_fg; /* slices that contain a structure (any class >= 1) */
    int volumes;  /* volumes read */
    /* sampler random (mk_data_params.sampler): slice i's body extent is its ew[i] x eh[i]
     * top-left part of the canvas (>= the patch; the rest is padding), present[i] has bit c set
     * when class c appears in it; batches take patches at random positions of it, the share
     * fg_share of each batch centred on a random voxel of a random class present. NULL with the
     * centred sampler (owned). */
    int random;
    double fg_share;
    int32_t *ew, *eh;
    uint16_t *present;
} mk_slices;

/* The paired image of manifest row `row` (extra column `col` of m, mk_manifest_extra_index),
 * resolved against the manifest folder. It must lie on `ref`'s grid (mk_geom_same_grid). Errors
 * name FILE:LINE and the column: an empty field (MK_ERR_FORMAT), the read error, another grid
 * (MK_ERR_GEOMETRY). Caller owns *out. */
mk_status mk_data_read_paired(mk_ctx *ctx, const mk_manifest *m, const mk_manifest_row *row,
                              int col, const mk_image *ref, mk_image **out);

/* Load the slices of every manifest row with `modality` and `split`. need_labels: 1 = every row
 * must name a label file (error otherwise), 0 = labels are read when every row has one, else
 * out->lab is NULL and all body slices are kept. Errors name the manifest, its line and the field.
 * A split with no rows of that modality is MK_ERR_NOT_FOUND. Caller frees with mk_slices_free. */
mk_status mk_data_load(mk_ctx *ctx, const mk_data_params *p, const char *modality,
                       const char *split, int need_labels, uint64_t seed, mk_slices *out);
void mk_slices_free(mk_slices *s);

/* Normalise a whole volume into a float buffer (nvox) like training does; is_ct selects the CT
 * window, else the MRI normalisation. */
mk_status mk_data_normalise(mk_ctx *ctx, const mk_data_params *p, const mk_image *img, int is_ct,
                            float *out);
/* Cut slice s across axis into a (pw x ph) window starting at (u0, v0) of the in-plane axes,
 * padding outside the volume with `pad`. Helper shared by training and inference. */
/* Copy the h x w patch at offset (ox, oy) of stored slice i into x (its labels into y and its
 * paired image into x2, each when both exist). 0 <= ox <= cw - w, 0 <= oy <= ch - h. */
void mk_slices_crop(const mk_slices *s, int64_t i, int ox, int oy, float *x, int32_t *y, float *x2);
/* Sample b (0-based) of a batch of `batch`: a slice and a patch position drawn with r, as the
 * sampler of s says (mk_slices.random), copied into x (h x w), y and x2 (may be NULL). With the
 * random sampler the last round(batch x fg_share) samples are centred on a random voxel of a
 * random class present in a random slice holding a structure (clamped to the slice's extent). */
void mk_slices_sample(const mk_slices *s, mk_rng *r, int b, int batch, float *x, int32_t *y,
                      float *x2);
/* What mk_slices_sample draws (the same draws from r): the slice and the patch offset. */
void mk_slices_pick(const mk_slices *s, mk_rng *r, int b, int batch, int64_t *slice, int *ox,
                    int *oy);
/* The h x w patch at (ox, oy) of slice i of `canvas`, an image set aligned with s (n x ch x cw,
 * e.g. the translations of s->img), into out. */
void mk_slices_crop_plane(const mk_slices *s, const float *canvas, int64_t i, int ox, int oy,
                          float *out);
void mk_data_cut(const float *vol, const int64_t *dim, int axis, int64_t s, int64_t u0, int64_t v0,
                 int pw, int ph, float pad, float *out);

/* ---------------------------------------------------------------- stages */

/* What every stage shares. The config sections [data] and [model] (and run.checkpoint_every,
 * run.log_every) are bound into it by their parameter rows (stages/params.c, mk_data_section and
 * mk_model_section of stages/mk_method.h); mk_stage_common_defaults fills the rows' defaults. */
/* Data-parallel training over processes (pipeline/mpi.c fills it under an MPI launcher; NULL in
 * mk_stage_common: one process). Every rank runs the same training stage on its share of every
 * global batch (share: nn/mk_nn.h); rank 0 alone writes checkpoints, models, validation and log
 * lines, and every rank reads what rank 0 wrote (a shared file system). */
typedef struct mk_stage_dist {
    mk_nn_share share;
    int (*max_int)(void *user, int v);                    /* the largest v of the ranks */
    void (*abort)(void *user, int code, const char *msg); /* ends every rank now */
    /* collectives since the start and the bytes this rank received from them */
    void (*traffic)(void *user, long long *calls, double *bytes);
} mk_stage_dist;

typedef struct mk_stage_common {
    const char *run_dir; /* models/ and checkpoints/ go below it */
    uint64_t seed;
    int threads;          /* >= 1 */
    int resume;           /* continue from checkpoints/<stage>.h5 when present */
    int checkpoint_every; /* iterations between checkpoints (>= 1) */
    int validate;         /* 1: score the method's val_net on the validation split during
                             training (sliding-window Dice per structure) */
    int val_every;        /* iterations between validations (0: ten times per run) */
    int log_every;        /* iterations between loss log lines (>= 1) */
    mk_data_params data;
    mk_unet_cfg unet; /* teacher and student shape (dim 2, in_ch 1; [model] width, depth,
                         classes) */
    int model_norm;   /* [model] norm: 0 batch (the only one implemented), 1 instance */
    /* written into every saved model's description (stages/mk_infer.h; set by the adapter) */
    const char *version;     /* medkd version (NULL: "unknown") */
    const char *config_hash; /* of the resolved config (NULL: "") */
    int largest_component;   /* evaluate.largest_component: the model's post-processing */
    mk_label_table labels;   /* [data] labels: structure names by label value (n = 0: not given) */
    const mk_stage_dist *dist; /* data-parallel training (NULL: one process) */
} mk_stage_common;

void mk_stage_common_defaults(mk_stage_common *c);
/* After binding: the class <-> label-value mapping of c->data from c->unet.classes,
 * c->data.label and c->labels (data.labels: value -> name, ascending; classes - 1 entries).
 * MK_ERR_CONFIG naming the key on a mismatch (more labels than model.classes allows, ...). */
mk_status mk_stage_common_finish(mk_ctx *ctx, mk_stage_common *c);

typedef struct mk_translate_params {
    int iterations, batch;
    float lr, beta1;
    float lambda_cycle;    /* weight of the cycle L1 */
    float lambda_identity; /* identity L1 weight relative to lambda_cycle */
    int gen_width, disc_width;
} mk_translate_params;

void mk_translate_defaults(mk_translate_params *p);

#define MK_HINT_MAX 8

typedef enum mk_train_schedule {
    MK_TRAIN_CONSTANT = 0,
    MK_TRAIN_POLY,  /* lr (1 - it/total)^0.9, as nnU-Net */
    MK_TRAIN_COSINE /* lr (1 + cos(pi it/total)) / 2 */
} mk_train_schedule;

typedef struct mk_cmedl_params {
    int iterations, batch;
    float lr;             /* Adam lr of teacher and student (beta1 0.9) */
    mk_names hint_layers; /* feature maps tied by the hint loss (n <= MK_HINT_MAX) */
    float lambda_hint, w_seg_student, w_seg_teacher, dice_weight;
    int hint_to_teacher, seg_to_i2i;
    int teacher_init_student;   /* 1: the teacher starts from the student's initial weights */
    int hint_rampup;            /* iterations of the sigmoid ramp-up of lambda_hint (0: none) */
    mk_train_schedule schedule; /* learning rate of teacher and student */
    /* The mirror pairing (an extension, off by default): pseudo-CT F(x_mr) made from real MRI is
     * pixel-aligned with that MRI, where the teacher is on its home ground. hint_pseudo_ct adds
     * lambda_hint x the hint loss between the student's features on F(x_mr) and the teacher's on
     * x_mr; w_seg_pseudo_ct > 0 adds that weight x the student's segmentation loss on F(x_mr)
     * with the MRI mask (needs labelled MRI). F(x_mr) is detached: the student does not train F. */
    int hint_pseudo_ct;
    float w_seg_pseudo_ct;
    int hint_teacher_correct; /* 1: the hint loss counts only the positions where the teacher's
                                 prediction on pseudo-MRI equals the CT mask (a feature position
                                 at 1/s resolution counts when all s x s pixels under it do) */
    float ema; /* > 0: the saved student (CMEDL and baseline alike) is the exponential moving
                  average of its weights and BN statistics with this decay (Polyak averaging) */
    int teacher_mri_labels;  /* 1: the teacher also learns on real MRI with its masks (when every
                                MRI train row has one); 0: on pseudo-MRI only */
    int teacher_learns_pmri; /* 1: the teacher's loss on pseudo-MRI G(x_ct) with the CT mask
                                trains the teacher (and G when seg_to_i2i); 0: it trains G only,
                                through a frozen copy of the teacher, which itself learns on real
                                MRI alone - the tumour-aware translation: G must render the
                                tumour the way an MRI-trained network recognises it */
    float w_seg_i2i;         /* with seg_to_i2i: factor on the gradient that the loss on pseudo-MRI
                                sends into the translator (1: as the loss itself) */
    float lambda_tumour_i2i; /* > 0: tumour-contrast loss on G, weight x the mean squared
                                difference over the CT mask's pixels between G(x_ct) and the mean
                                normalised value of the real MRI tumours (labelled MRI needed) */
    int oracle_pmri;         /* 1 (a diagnostic, not the method): the teacher's pseudo-MRI input is
                                replaced by the paired MR rendering of the same CT anatomy
                                (manifest column paired_mr, `pipeline synth --paired`), an upper
                                bound for what translation can give; G is still trained */
    int unlabelled_hint;     /* 1 (the semi-supervised reading): the hint loss is also computed
                                on a batch of CT slices without labels (CT train rows without a
                                label, and labelled rows beyond data.ct_train_cases), with
                                their pseudo-MRI through the teacher; no segmentation loss on
                                them. 0: labelled CT only, as in the paper */
    float lambda_hint_unlabelled; /* weight of that hint loss (with unlabelled_hint) */
} mk_cmedl_params;

void mk_cmedl_defaults(mk_cmedl_params *p);
/* lambda_hint at iteration it (0-based), with the ramp-up applied. */
float mk_cmedl_hint_weight(const mk_cmedl_params *p, long long it);

/* Most loss terms one step of a method returns (mk_terms, stages/mk_method.h). */
#define MK_TERMS_MAX 12

/* Summary of a training run (optional out-parameter of the stages). */
typedef struct mk_train_stats {
    long long iterations;   /* total iterations of the stage */
    long long resumed_from; /* iteration the run resumed at (0: fresh) */
    double seconds;         /* wall time of the iterations run by this call */
    double iters_per_s;
    double first_loss, last_loss; /* mean main loss (student seg, or G loss for translate) over
                                   * the first / last min(50, iterations/4) iterations */
    double last_hint;             /* cmedl: mean hint loss over the last window */
    int validations;              /* validation scores computed (0: none) */
    double val_best, val_last;    /* mean Dice over structures: best and last */
    long long val_best_iter;
    int nterms; /* the loss terms of the last iteration (the method's step) */
    char term_name[MK_TERMS_MAX][16];
    double term_last[MK_TERMS_MAX];
} mk_train_stats;

/* Check hint layer names against the U-Net's feature taps: enc0..enc<L-2>, bottleneck,
 * dec0..dec<L-2>, logits, and the aliases dec_last (= dec<L-2>) and dec_prev (= dec<L-3>).
 * MK_ERR_CONFIG naming `key` (the config key, "cmedl.hint_layers") and listing the valid names
 * otherwise. resolved (may be NULL) gets canonical names. */
mk_status mk_stage_hint_check(mk_ctx *ctx, const char *key, int levels, int n,
                              const char names[][32], char resolved[][32]);

/* Unpaired CT->MRI translation alone. Writes models/translator.h5. */
mk_status mk_stage_translate(mk_ctx *ctx, const mk_stage_common *c, const mk_translate_params *tp,
                             mk_train_stats *stats);
/* Joint translator + MRI teacher + CT student. Continues the translator from
 * models/translator.h5 when it exists. Writes models/cmedl_student.h5 and cmedl_teacher.h5. */
mk_status mk_stage_cmedl(mk_ctx *ctx, const mk_stage_common *c, const mk_translate_params *tp,
                         const mk_cmedl_params *cp, mk_train_stats *stats);
/* The same student on CT alone (same seed, batches, lr, loss); iterations 0 = cp->iterations.
 * Writes models/baseline_student.h5. */
mk_status mk_stage_baseline(mk_ctx *ctx, const mk_stage_common *c, const mk_cmedl_params *cp,
                            int iterations, mk_train_stats *stats);

/* ---------------------------------------------------------------- inference */

/* Load a student (mk_model_save file, e.g. models/cmedl_student.h5) and segment a CT volume slice
 * by slice across p->slice_axis, normalised like training, with a sliding window of p->patch
 * (stride half a patch, softmax blended with Gaussian weights, or averaged with
 * p->blend_uniform) when a slice exceeds the patch. *mask_out: uint8 mask
 * with the CT's geometry (mk_image_new_like): the label value of the winning class
 * (mk_data_value_of_class; 0 for background), argmax over the cfg->classes blended
 * probabilities (first class on ties). cfg->classes must equal p->classes (MK_ERR_INVALID).
 * Caller owns *mask_out. */
mk_status mk_stage_predict_volume(mk_ctx *ctx, const char *model_h5, const mk_unet_cfg *cfg,
                                  const mk_image *ct, const mk_data_params *p, int threads,
                                  mk_image **mask_out);
/* The same for an MRI volume (normalised as the stages normalise MRI, data.mri_norm; windows
 * reaching outside the volume are padded with its minimum): the teacher
 * segmenting real MRI, e.g. the paired MRI of a CT case (cmedl.oracle_pmri). */
mk_status mk_stage_predict_volume_mr(mk_ctx *ctx, const char *model_h5, const mk_unet_cfg *cfg,
                                     const mk_image *mr, const mk_data_params *p, int threads,
                                     mk_image **mask_out);
/* The same with the CT -> pseudo-MRI generator G of a translator file (models/translator.h5 or
 * models/cmedl_translator.h5, generator width gen_width) applied to each window first: the
 * teacher segmenting pseudo-MRI ("segment pMRI directly" of the CMEDL paper). translator_h5 NULL:
 * as mk_stage_predict_volume. via_out (may be NULL; only with a translator): the pseudo-MRI
 * itself, float32 in the network's [-1, 1] range with the CT's geometry, overlapping windows
 * averaged; caller owns it. */
mk_status mk_stage_predict_volume_via(mk_ctx *ctx, const char *model_h5, const mk_unet_cfg *cfg,
                                      const char *translator_h5, int gen_width, const mk_image *ct,
                                      const mk_data_params *p, int threads, mk_image **mask_out,
                                      mk_image **via_out);

/* Keep only the largest 6-connected component of `label` in a uint8 mask (ties: the component
 * met first in voxel order); other voxels of `label` become 0. *removed (may be NULL) gets the
 * number of voxels cleared. */
mk_status mk_stage_keep_largest_component(mk_ctx *ctx, mk_image *mask, int label, int64_t *removed);
/* The same for each of the n label values in turn (every structure keeps its own largest
 * component); *removed (may be NULL) gets the total number of voxels cleared. */
mk_status mk_stage_keep_largest_components(mk_ctx *ctx, mk_image *mask, const int *labels, int n,
                                           int64_t *removed);

#ifdef __cplusplus
}
#endif
#endif
