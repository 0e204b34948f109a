/* The parameter rows of the sections every stage shares: [data] and [model] (bound into
 * mk_stage_common), and the training part of [run]. Declared once here: the config schema,
 * docs/config.md, the binder and mk_stage_common_defaults all come from these rows. */
#include <stdio.h>
#include <string.h>

#include "mk_method.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define NR 1, 0 /* no range */
typedef mk_stage_common C;

static const mk_param_row DATA_ROWS[] = {
    MK_P_PATH(C, data.manifest, "manifest", MK_PARAM_REQUIRED | MK_PARAM_MUST_EXIST,
              "CSV manifest (id, modality, image, label, split, domain), or an nnU-Net v2 / MSD "
              "dataset folder or its dataset.json"),
    MK_P_STR(C, data.ct_modality, "ct_modality", "CT", "manifest modality of the CT images"),
    MK_P_STR(C, data.mri_modality, "mri_modality", "MR", "manifest modality of the MRI images"),
    MK_P_DOUBLES(C, data.ct_window, 2, "ct_window", "[-200.0, 300.0]", -3000, 10000,
                 "CT intensity window in HU [low, high], mapped to [-1, 1]"),
    MK_P_CHOICE(C, data.mri_norm, "mri_norm", "zscore", "zscore|minmax",
                "MRI intensity normalisation per volume"),
    MK_P_CHOICE(C, data.slice_axis, "slice_axis", "axial", "i|j|k|axial|coronal|sagittal",
                "2D slices are cut across this axis: axial, coronal or sagittal (every volume "
                "reoriented to data.orientation first), or a voxel axis i, j, k of the volumes "
                "as stored (no reorientation)"),
    MK_P_STR(C, data.orientation, "orientation", "RAS",
             "orientation code volumes are reoriented to before anatomical slicing (exact "
             "permutation and flips of the voxel axes; masks are written back on each input's "
             "own grid)"),
    MK_P_DOUBLES(C, data.spacing, 3, "spacing", "[0.0, 0.0, 0.0]", 0, 100,
                 "target voxel spacing in mm along the (reoriented) axes; 0 keeps an axis' own "
                 "spacing (images linear, labels per-label linear; predictions are resampled "
                 "back to each input's grid)"),
    MK_P_PATH(C, data.case_table, "case_table", 0,
              "optional CSV with column id and any of modality, domain, split: overrides those "
              "fields of the manifest's rows by case id (e.g. the modality of nnU-Net channels)"),
    MK_P_DOUBLE(C, data.val_fraction, "val_fraction", "0.2", 0, 0.9,
                "share of each modality's labelled training cases held out as the validation "
                "split (seeded with split_seed) when the manifest puts no case in split val"),
    MK_P_INT(C, data.split_seed, "split_seed", "12345", 0, 2147483647,
             "seed of the validation hold-out (independent of run.seed)"),
    MK_P_CHOICE(C, data.sampler, "sampler", "random", "random|centred",
                "training patches: random positions on whole slices with foreground "
                "oversampling (nnU-Net), or the fixed crop centred on the body and the "
                "structure (with crop_jitter; the protocol of the phantom studies)"),
    MK_P_DOUBLE(C, data.foreground_share, "foreground_share", "0.33", 0, 1,
                "sampler random: share of each batch centred on a voxel of a structure (a "
                "random structure present in the slice)"),
    MK_P_INT(C, data.crop_jitter, "crop_jitter", "0", 0, 4096,
             "sampler centred: each batch crops the patch at a random offset of up to 2 x this "
             "many voxels per axis from a slice kept this much larger on each side (0: fixed "
             "centred crop)"),
    MK_P_DOUBLE(C, data.empty_ratio, "empty_ratio", "1.0", 0, 1e4,
                "training slices without the structure kept per slice with it (labelled CT and "
                "MRI)"),
    MK_P_INT(C, data.ct_train_cases, "ct_train_cases", "0", 0, 1e6,
             "> 0: train on the first N CT cases of the train split only (label-scarce runs); 0: "
             "all"),
    MK_P_INTS(C, data.patch, 2, "patch", "[48, 48]", 8, 4096, "training patch size in voxels"),
    MK_P_INT(C, data.label, "label", "1", 1, 255,
             "label value of the structure to segment (model.classes = 2 and no data.labels)"),
    MK_P_LABELS(C, labels, "labels",
                "structures by label value, e.g. {1 = \"RV\", 2 = \"MYO\", 3 = \"LV\"}: class c is "
                "the c-th value in ascending order; model.classes - 1 entries (unset: the names of "
                "a dataset folder's dataset.json when it lists model.classes - 1 structures, else "
                "class c = value c, or data.label with 2 classes)"),
};
const mk_param_section mk_data_section = {"data", "the dataset", DATA_ROWS, N(DATA_ROWS)};

static const mk_param_row MODEL_ROWS[] = {
    MK_P_INT(C, unet.base, "width", "8", 1, 512,
             "channels of the first U-Net level (doubling per level)"),
    MK_P_INT(C, unet.levels, "depth", "3", 2, 6, "resolution levels of the U-Net"),
    MK_P_INT(C, unet.classes, "classes", "2", 2, MK_MAX_CLASSES,
             "output classes including background"),
    MK_P_CHOICE(C, model_norm, "norm", "batch", "batch|instance", "normalisation layer"),
};
const mk_param_section mk_model_section = {
    "model", "segmentation network shape (teacher and student)", MODEL_ROWS, N(MODEL_ROWS)};

/* The rows of [run] that the training loop reads; the runner's own rows of [run] (name, out_dir,
 * stages, seed, threads) come first (pipeline/registry_schema.c). */
static const mk_param_row RUN_ROWS[] = {
    MK_P_INT(C, checkpoint_every, "checkpoint_every", "200", 1, 1e9,
             "training iterations between checkpoints (resume with --resume)"),
    MK_P_INT(C, log_every, "log_every", "50", 1, 1e9, "training iterations between loss log lines"),
    MK_P_BOOL(C, validate, "validate", "true",
              "score the trained network on the validation split during training (Dice per "
              "structure, sliding window; the best is kept as models/<model>_best.h5)"),
    MK_P_INT(C, val_every, "val_every", "0", 0, 1e9,
             "training iterations between validations (0: ten times per run)"),
};
const mk_param_section mk_run_section = {"run", "what to run and where", RUN_ROWS, N(RUN_ROWS)};

void mk_stage_common_defaults(mk_stage_common *c)
{
    memset(c, 0, sizeof *c);
    c->run_dir = ".";
    c->seed = 1;
    c->threads = 1;
    c->unet = mk_unet_defaults(2);
    mk_param_defaults(RUN_ROWS, N(RUN_ROWS), c);
    mk_param_defaults(DATA_ROWS, N(DATA_ROWS), c);
    mk_param_defaults(MODEL_ROWS, N(MODEL_ROWS), c);
    c->data.classes = c->unet.classes;
}

void mk_data_defaults(mk_data_params *p)
{
    mk_stage_common c;
    memset(&c, 0, sizeof c);
    mk_param_defaults(DATA_ROWS, N(DATA_ROWS), &c);
    *p = c.data;
    p->classes = 2;
}

mk_status mk_stage_common_finish(mk_ctx *ctx, mk_stage_common *c)
{
    int classes = c->unet.classes;
    if (classes < 2 || classes > MK_MAX_CLASSES)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "model.classes: expected 2 to %d (background included), "
                      "got %d",
                      MK_MAX_CLASSES, classes);
    c->data.classes = classes;
    c->data.nlabels = 0;
    if (c->labels.n > 0) {
        if (c->labels.n != classes - 1)
            return mk_err(ctx, MK_ERR_CONFIG,
                          "data.labels: names %d structure%s but "
                          "model.classes = %d segments %d (classes count the background)",
                          c->labels.n, c->labels.n == 1 ? "" : "s", classes, classes - 1);
        c->data.nlabels = c->labels.n;
        for (int j = 0; j < c->labels.n; j++) {
            c->data.label_values[j] = c->labels.value[j];
            snprintf(c->data.label_names[j], sizeof c->data.label_names[j], "%s",
                     c->labels.name[j]);
        }
    }
    mk_status st = mk_data_check_labels(ctx, &c->data);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "data.labels");
    return MK_OK;
}
