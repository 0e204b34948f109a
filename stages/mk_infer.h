/* medkd inference with a self-describing model file (`pipeline infer`, `pipeline info MODEL.h5`).
 *
 * Every network a training stage saves for inference (models/<name>.h5 and its _best copy)
 * carries, beside its weights, one JSON string attribute "medkd_inference" on the file's root
 * (h5py: f.attrs["medkd_inference"]) holding what inference needs:
 *   {"format": "medkd-model", "version": 1, "medkd_version": "...", "method": "supervised",
 *    "role": "student", "config_hash": "fnv1a64:...",
 *    "network": {"kind": "unet2d", "width": 8, "depth": 3, "classes": 3, "in_channels": 1,
 *                "norm": "batch"},
 *    "input": {"modality": "CT", "normalisation": "ct_window", "ct_window": [-200, 300]}
 *             (MR: "normalisation": "zscore" | "minmax"),
 *    "geometry": {"slice_axis": "axial", "orientation": "RAS", "spacing": [0, 0, 0]},
 *    "patch": [48, 48],
 *    "labels": [{"value": 1, "name": "soft_tissue"}, ...],   (one per foreground class)
 *    "inference": {"blend": "gaussian", "largest_component": false, "step": 0.5}}
 * mk_infer_model_load reads it back into the data parameters and network shape the prediction
 * functions take, so a model is segmented exactly as it was evaluated.
 *
 *     mk_infer_model *m = NULL;
 *     if (mk_infer_model_load(&ctx, "run/models/supervised_student_best.h5", &m) != MK_OK) ...;
 *     mk_infer_opts o; mk_infer_opts_default(&o);
 *     mk_image *mask = NULL; mk_infer_times t;
 *     st = mk_infer_volume(&ctx, m, &o, img, &mask, &t);   // mask on img's exact grid
 *     mk_infer_model_free(m);
 */
#ifndef MK_INFER_H
#define MK_INFER_H

#include <stdint.h>

#include "mk_stages.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The attribute's name on the model file's root group. */
#define MK_INFER_ATTR "medkd_inference"

/* What a saved model was trained on and how it is applied (mk_model_info_json writes it). */
typedef struct mk_model_info {
    const char *method;      /* "cmedl", "supervised", ... */
    const char *role;        /* "student", "teacher" */
    const char *modality;    /* manifest modality of its inputs ("CT", "MR") */
    const char *version;     /* medkd version */
    const char *config_hash; /* "fnv1a64:..." of the resolved training config ("" unknown) */
    int largest_component;   /* post-processing of the evaluation */
} mk_model_info;

/* The JSON text of the attribute for a network of shape `cfg` trained with data params `p`
 * (normalisation, geometry, patch, labels, blending) and `info`. Caller frees. NULL: no memory. */
char *mk_model_info_json(const mk_unet_cfg *cfg, const mk_data_params *p,
                         const mk_model_info *info);

/* A loaded model: the network, and the parameters it is applied with. */
typedef struct mk_infer_model {
    mk_unet *net;
    mk_unet_cfg cfg;
    mk_data_params data; /* normalisation, geometry, patch, classes and labels, blending */
    int is_ct;           /* inputs normalised as CT (window) */
    int largest_component;
    char modality[32], method[32], role[32], version[32], config_hash[40];
    char model_hash[40]; /* "fnv1a64:..." of the model file's bytes */
    char orientation[4];
    char *json; /* the attribute as stored (owned) */
} mk_infer_model;

/* Load weights and description. A file without the attribute (written before it existed, or not
 * by a training stage) is MK_ERR_FORMAT saying so; a description that does not match the
 * weights (shape) is the weight loader's error. Ownership: *out new, mk_infer_model_free. */
mk_status mk_infer_model_load(mk_ctx *ctx, const char *path, mk_infer_model **out);
void mk_infer_model_free(mk_infer_model *m); /* NULL ok */
/* The network shape a model file describes (its MK_INFER_ATTR attribute): width, depth, classes
 * and input channels into *cfg (the rest of *cfg kept). *described = 0 and *cfg untouched when the
 * file has no description (files older than the attribute); a description that is not valid is
 * MK_ERR_FORMAT naming the file and the field. So networks of different shapes in one run (a
 * large teacher, a tiny student) are each rebuilt as they were trained. */
mk_status mk_infer_model_shape(mk_ctx *ctx, const char *path, mk_unet_cfg *cfg, int *described);

typedef struct mk_infer_opts {
    double step;     /* window step as a fraction of the patch (nnU-Net: 0.5), in (0, 1] */
    int tta;         /* 1: average the prediction over the mirrored inputs (x 4 cost in 2D) */
    int threads;     /* >= 1 */
    int postprocess; /* 1: the model's post-processing (largest component), 0: none */
} mk_infer_opts;
void mk_infer_opts_default(
    mk_infer_opts *o); /* the model's step, no TTA, 1 thread, post-processing */

/* Seconds spent per phase of one case (mk_infer_volume fills preprocess, network, postprocess;
 * the caller adds read and write). */
typedef struct mk_infer_times {
    double read, preprocess, network, postprocess, write;
    double forward; /* of network: the forward passes alone (the rest is cutting windows,
                       normalising and blending) */
} mk_infer_times;

/* Segment one volume: prepared as in training (reoriented, resampled, normalised), slice-wise
 * sliding windows (nnU-Net placement with o->step, the model's blending), argmax, mapped back
 * onto img's exact grid (mk_data_restore), the model's post-processing. *mask: uint8 label
 * values (uint16 past 255), img's dims, geometry and NIfTI meta. Memory: the prepared volume,
 * the mask and one slice of class probabilities; never a float copy of all logits.
 * Errors: MK_ERR_UNSUPPORTED for 4-D inputs, the dims/geometry messages of the steps. */
mk_status mk_infer_volume(mk_ctx *ctx, const mk_infer_model *m, const mk_infer_opts *o,
                          const mk_image *img, mk_image **mask, mk_infer_times *t);

/* The check every written mask passes: same dims as the input, same affine within 1e-4 x
 * max(spacing, 1) (mk_geom_grid_diff), same qform/sform codes; MK_ERR_GEOMETRY naming the field
 * otherwise (never only a warning). */
mk_status mk_infer_check_geometry(mk_ctx *ctx, const mk_image *input, const mk_image *mask);

#ifdef __cplusplus
}
#endif
#endif
