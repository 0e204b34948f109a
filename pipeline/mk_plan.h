/* medkd dataset fingerprint and plan (`pipeline plan`, `pipeline import`).
 *
 * The data decides the configuration (nnU-Net's lesson): mk_fingerprint_compute reads every case
 * of a dataset once and summarises it per modality; mk_plan_make turns that summary into the
 * choices of a training config (target spacing, patch, network depth, batch for a memory budget,
 * then a smaller network and the iterations for a compute (time) budget at the machine's measured
 * or given GFLOP/s, CT window or MRI z-score, labels); mk_plan_write does both and writes the
 * config as TOML with every choice explained in a comment, and the fingerprint as JSON beside it.
 * docs/plan.md states each rule.
 *
 * Fingerprint, per modality (the manifest's modality column; rows without one are refused):
 *   cases, labelled, unlabelled, rows per split;
 *   geometry of every case along the RAS world axes x (R-L), y (A-P), z (S-I) after
 *     reorientation to RAS (mk_geom_axis_map: the voxel axis that points mostly along each world
 *     axis; exact for non-oblique grids): spacing (mm) and size (voxels) min/median/max;
 *     orientation codes as stored (mk_geom_orient_code) with counts;
 *   intensities of the whole volumes (every case): mean and sd (population, exact);
 *   intensities of the foreground (label > 0) of labelled cases: mean and sd (exact), and the
 *     percentiles 0.5, 50 and 99.5 (numpy's linear rule) of a deterministic subsample: at most
 *     ceil(max_samples / labelled cases) voxels per case, every k-th foreground voxel in file
 *     order (i fastest), k = ceil(foreground voxels / that budget);
 *   label values present (the number of labelled cases each appears in), foreground share
 *     (foreground voxels / voxels of the labelled cases), foreground bounding-box extent in mm
 *     along x, y, z (median and max over the labelled cases with foreground).
 * Only channel 0 (the image column) is read; 4-D images contribute their first volume.
 *
 *     mk_manifest *m; mk_fingerprint *fp; mk_plan plan; mk_plan_opts o;
 *     mk_plan_opts_defaults(&o);
 *     if (mk_plan_open_dataset(ctx, "Dataset501_Cranium", &m) != MK_OK) ...;
 *     if (mk_fingerprint_compute(ctx, m, &o, &fp) != MK_OK) ...;
 *     if (mk_plan_make(ctx, m, fp, &o, &plan) != MK_OK) ...;
 *     mk_fingerprint_free(fp); mk_manifest_free(m);
 *  or in one call: mk_plan_write(ctx, "Dataset501_Cranium", "plan.toml", &o, &plan).
 */
#ifndef MK_PLAN_H
#define MK_PLAN_H

#include <stdint.h>

#include "../core/mk_status.h"
#include "../io/mk_manifest.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MK_PLAN_MAX_ORIENT 48     /* distinct orientation codes (there are 48) */
#define MK_PLAN_MAX_LABEL 255     /* label values are 0..255 */
#define MK_PLAN_MAX_STRUCTURES 15 /* model.classes <= 16, background included */
#define MK_PLAN_MAX_CANDIDATES 32 /* network sizes the compute budget tries */
#define MK_PLAN_MIN_ITERS 600     /* iterations a candidate must fit in the budget */
#define MK_PLAN_MAX_ITERS 4000    /* iterations at most */

typedef struct mk_plan_opts {
    const char *method;     /* "auto" (NULL too), "supervised" or "cmedl" */
    long long iterations;   /* training iterations written (0: from the compute budget) */
    int threads;            /* fingerprint workers and [run].threads (0: one per core) */
    double memory_gb;       /* activation memory budget of one training batch (default 2) */
    long long max_samples;  /* foreground voxels kept per modality for the percentiles (10^6) */
    double time_budget_min; /* wall-clock budget of the whole `pipeline run` (default 30) */
    double gflops; /* sustained training GFLOP/s of this machine (0: mk_plan_measure_gflops) */
} mk_plan_opts;

void mk_plan_opts_defaults(mk_plan_opts *o);

/* One case: its manifest row and what was measured. Axes [3] are the RAS world axes x, y, z. */
typedef struct mk_fp_case {
    int row;           /* manifest row */
    int mod;           /* index into mk_fingerprint.mod */
    int labelled;      /* 1 when the row has a label */
    double spacing[3]; /* mm */
    int64_t size[3];   /* voxels */
    char orient[4];    /* orientation code as stored ("LPS") */
    int64_t voxels;
    double mean, sd; /* whole volume */
    int64_t fg;      /* foreground voxels (labelled cases) */
    double fg_mean, fg_sd;
    double extent_mm[3]; /* foreground bounding box (0 when fg == 0) */
    int64_t sample_step; /* k: every k-th foreground voxel went into the percentile sample */
    int64_t sampled;
    unsigned char present[MK_PLAN_MAX_LABEL + 1]; /* 1: the label value occurs in this case */
} mk_fp_case;

typedef struct mk_fp_modality {
    char *name;
    int cases, labelled, unlabelled;
    int split_rows[4];          /* train, val, test, none */
    int labelled_split_rows[4]; /* the same for labelled rows */
    double spacing_min[3], spacing_median[3], spacing_max[3];
    double size_min[3], size_median[3], size_max[3];
    int norient;
    char orient[MK_PLAN_MAX_ORIENT][4];
    int orient_count[MK_PLAN_MAX_ORIENT];
    int64_t voxels;
    double mean, sd; /* whole volumes */
    int64_t fg_voxels, fg_sampled, labelled_voxels;
    int subsampled; /* 1 when the percentiles come from a subsample */
    double fg_mean, fg_sd, fg_p005, fg_p50, fg_p995;
    double fg_share;
    int label_cases[MK_PLAN_MAX_LABEL + 1]; /* labelled cases in which each value occurs */
    int extent_cases;                       /* labelled cases with foreground */
    double extent_median[3], extent_max[3];
} mk_fp_modality;

typedef struct mk_fingerprint {
    char *dataset;    /* name: the imported folder's name, else the CSV's stem */
    char *source;     /* the dataset as given */
    const char *kind; /* "nnunet-v2", "msd" or "csv" (static) */
    long long max_samples;
    int nmod;
    mk_fp_modality *mod; /* sorted by name */
    int ncases;
    mk_fp_case *cases; /* manifest order */
} mk_fingerprint;

/* A CSV manifest, an nnU-Net v2 / MSD dataset folder, or its dataset.json. *out new. */
mk_status mk_plan_open_dataset(mk_ctx *ctx, const char *path, mk_manifest **out);

/* Read every case of m (images through mk_io_read_image, with o->threads workers) and summarise.
 * Errors name the manifest, the case and the column (a label on another grid than its image:
 * MK_ERR_GEOMETRY; a label value that is not an integer in 0..255: MK_ERR_FORMAT; a row without a
 * modality: MK_ERR_INVALID). Ownership: *out new, mk_fingerprint_free. */
mk_status mk_fingerprint_compute(mk_ctx *ctx, const mk_manifest *m, const mk_plan_opts *o,
                                 mk_fingerprint **out);
void mk_fingerprint_free(mk_fingerprint *fp); /* NULL ok */

/* A network the compute budget tried. */
typedef struct mk_plan_candidate {
    int patch[2], depth, width, batch;
    double sec_per_iter; /* training time of one iteration at mk_plan.gflops */
    double fixed_s;      /* validations and evaluation with this network */
    long long fit;       /* iterations that fit the budget (may be < MK_PLAN_MIN_ITERS) */
} mk_plan_candidate;

/* The choices of a config (docs/plan.md gives each rule). */
typedef struct mk_plan {
    int cmedl;  /* 0: stages supervised, evaluate; 1: translate, cmedl, baseline, evaluate */
    int mod;    /* trained modality (cmedl: the CT student's), index into fp->mod */
    int ct, mr; /* CT modality and (cmedl, or a non-CT trained modality) MR modality; -1: none */
    int ncases; /* cases the geometry rules used (the planned modalities) */
    double spacing[3];    /* target spacing, mm along x, y, z */
    int slice_axis;       /* RAS axis slices are cut across: 0 sagittal, 1 coronal, 2 axial */
    int plane[2];         /* the in-plane RAS axes (ascending), the patch's axes */
    double extent_vox[2]; /* median foreground extent at the target spacing (in-plane u, v) */
    double image_vox[2];  /* median image size at the target spacing (in-plane u, v) */
    int patch[2], depth, width, classes, batch;
    int patch_shrunk;        /* 1: the memory budget made the patch smaller */
    double bytes_per_sample; /* activation-memory estimate of one patch (nnU-Net-style network) */
    double gflop_per_iter;   /* training work of one iteration, GFLOP (mk_plan_unet_work) */
    double conv_gflop_per_iter; /* of which convolutions (forward + backward = 3 x forward) */
    long long iterations;
    /* the compute budget (docs/plan.md): the candidates tried, the nnU-Net-style one first */
    double gflops;        /* GFLOP/s used (given, or measured) */
    int gflops_measured;  /* 1: measured by mk_plan_measure_gflops */
    double time_budget_s; /* the budget of the whole run */
    double sec_per_iter;  /* training time of one iteration of the chosen candidate */
    double fixed_s;       /* validations during training + the evaluation, estimated */
    double expected_s;    /* iterations x sec_per_iter + fixed_s */
    int budget_met;       /* 0: even the smallest candidate misses the budget (kept anyway) */
    int iterations_given; /* 1: --iterations set the count */
    int val_cases, eval_cases, slices,
        windows; /* what fixed_s counts (per case: slices, windows) */
    int ncand;
    mk_plan_candidate cand[MK_PLAN_MAX_CANDIDATES]; /* the last one is the chosen network */
    int nstruct;
    int label_values[MK_PLAN_MAX_STRUCTURES];
    char label_names[MK_PLAN_MAX_STRUCTURES][32];
    int has_ct_window;
    double ct_window[2];
    int has_val_rows; /* the manifest already has split "val" rows */
    const char *eval_split;
    int eval_has_model_key; /* the schema has evaluate.model */
} mk_plan;

/* Choose the plan from a fingerprint (m gives the label names of dataset.json); o->gflops 0:
 * measured here (mk_plan_measure_gflops, logged), so only a given figure makes the plan
 * reproducible. MK_ERR_INVALID
 * when there is nothing to train on (no labelled case with foreground), --method cmedl without CT
 * and MR rows; MK_ERR_UNSUPPORTED for more than 15 structures. */
mk_status mk_plan_make(mk_ctx *ctx, const mk_manifest *m, const mk_fingerprint *fp,
                       const mk_plan_opts *o, mk_plan *plan);

/* Activation-memory estimate (bytes) of one training sample of a 2-D U-Net on a pu x pv patch:
 * values and gradients of every forward output in float32, plus the largest im2col buffer. */
double mk_plan_unet_bytes(int pu, int pv, int width, int depth, int classes);

/* Training work (GFLOP-equivalents, the plan's one FLOP model) of one sample of one iteration:
 * 3 x the forward convolution FLOPs (mk_unet_conv_flops: forward + backward) plus
 * MK_PLAN_ELEM_FLOPS per activation element (the forward outputs mk_plan_unet_bytes counts: batch
 * norm, ReLU, pooling, concatenation, im2col and the losses, memory-bound, cost about that many
 * convolution FLOPs each on medkd's engine). */
#define MK_PLAN_ELEM_FLOPS 300.0
double mk_plan_unet_work(int pu, int pv, int width, int depth, int classes);

/* Sustained training GFLOP/s of this machine with `threads` workers (0: one per core): times
 * forward + backward + Adam steps of a fixed 2-D U-Net (width 8, depth 4, 3 classes, batch 2 of
 * 128 x 128) on a fixed batch for about 0.3 s after 2 warm-up steps, and divides its work by the
 * mean step time. *seconds (may be NULL) receives the time it took. */
mk_status mk_plan_measure_gflops(mk_ctx *ctx, int threads, double *gflops, double *seconds);

/* Where the fingerprint of a config goes: "<config without .toml>.fingerprint.json". */
void mk_plan_fingerprint_path(const char *config_path, char *buf, size_t n);

/* Fingerprint `dataset`, plan, check the config against the schema, and write the fingerprint
 * (JSON) and the config (TOML), each atomically; the config's folder is created. *plan (may be
 * NULL) receives the plan. */
mk_status mk_plan_write(mk_ctx *ctx, const char *dataset, const char *config_path,
                        const mk_plan_opts *o, mk_plan *plan);

#ifdef __cplusplus
}
#endif
#endif
