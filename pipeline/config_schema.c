/* The config schema: one declarative table per section. docs/config.md is generated from it
 * (`pipeline validate --explain --markdown`). Ranges: {min, max}; min > max means unbounded. */
#include "mk_config.h"

#define NR 1, 0 /* no range */
#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const mk_cfg_key RUN_KEYS[] = {
    {"name", MK_CFG_STRING, "\"run\"", NR, NULL, 0, "name of the run, used in reports"},
    {"out_dir", MK_CFG_PATH, "\"runs/run\"", NR, NULL, 0,
     "run directory: config copy, logs, checkpoints, models, masks, reports"},
    {"stages", MK_CFG_STRING_LIST, NULL, NR, NULL, MK_CFG_REQUIRED,
     "stages to run, in order (each reads the section of the same name)"},
    {"seed", MK_CFG_INT, "1", 0, 2147483647.0, NULL, 0,
     "master seed: initialisation, data order, augmentation, dropout"},
    {"threads", MK_CFG_INT, "0", 0, 256, NULL, 0, "worker threads (0: one per core)"},
    {"checkpoint_every", MK_CFG_INT, "200", 1, 1e9, NULL, 0,
     "training iterations between checkpoints (resume with --resume)"},
    {"log_every", MK_CFG_INT, "50", 1, 1e9, NULL, 0, "training iterations between loss log lines"},
};

static const mk_cfg_key DATA_KEYS[] = {
    {"manifest", MK_CFG_PATH, NULL, NR, NULL, MK_CFG_REQUIRED | MK_CFG_MUST_EXIST,
     "CSV manifest (id, modality, image, label, split, domain) or nnU-Net dataset folder"},
    {"ct_modality", MK_CFG_STRING, "\"CT\"", NR, NULL, 0, "manifest modality of the CT images"},
    {"mri_modality", MK_CFG_STRING, "\"MR\"", NR, NULL, 0, "manifest modality of the MRI images"},
    {"ct_window", MK_CFG_FLOAT_LIST, "[-200.0, 300.0]", -3000, 10000, NULL, 0,
     "CT intensity window in HU [low, high], mapped to [-1, 1]"},
    {"mri_norm", MK_CFG_STRING, "\"zscore\"", NR, "zscore|minmax", 0,
     "MRI intensity normalisation per volume"},
    {"slice_axis", MK_CFG_STRING, "\"k\"", NR, "i|j|k", 0,
     "voxel axis across which 2D slices are taken for training"},
    {"crop_jitter", MK_CFG_INT, "0", 0, 4096, NULL, 0,
     "training augmentation: each batch crops the patch at a random offset of up to 2 x this many "
     "voxels per axis from a slice kept this much larger on each side (0: fixed centred crop)"},
    {"empty_ratio", MK_CFG_FLOAT, "1.0", 0, 1e4, NULL, 0,
     "training slices without the structure kept per slice with it (labelled CT and MRI)"},
    {"ct_train_cases", MK_CFG_INT, "0", 0, 1e6, NULL, 0,
     "> 0: train on the first N CT cases of the train split only (label-scarce runs); 0: all"},
    {"patch", MK_CFG_INT_LIST, "[48, 48]", 8, 4096, NULL, 0, "training patch size in voxels"},
    {"label", MK_CFG_INT, "1", 1, 255, NULL, 0, "label value of the structure to segment"},
};

static const mk_cfg_key SYNTH_KEYS[] = {
    {"kind", MK_CFG_STRING, "\"lung\"", NR, "lung|cardiac|histo", 0, "phantom family"},
    {"out_dir", MK_CFG_PATH, "\"demo-data\"", NR, NULL, 0,
     "where the phantoms and their manifest are written (skipped when already complete)"},
    {"cases", MK_CFG_INT, "16", 1, 10000, NULL, 0, "cases per modality/domain"},
    {"seed", MK_CFG_INT, "7", 0, 2147483647.0, NULL, 0, "phantom seed (independent of run.seed)"},
    {"size", MK_CFG_INT_LIST, NULL, 8, 65536, NULL, 0,
     "volume size in voxels (i, j, k) or histo slide (width, height); unset: lung 64x64x24, "
     "cardiac 64x64x10, histo 1024x1024"},
    {"contrast", MK_CFG_FLOAT, "1.0", 0, 100, NULL, 0,
     "hard-domain target contrast multiplier (lung: CT tumour-mediastinum HU offset)"},
    {"noise", MK_CFG_FLOAT, "1.0", 0, 100, NULL, 0, "noise multiplier (CT HU sigma, MR Rician sigma)"},
    {"shift", MK_CFG_FLOAT, "1.0", 0, 1, NULL, 0, "domain-shift strength (cardiac CT mapping, histo stain)"},
    {"labelled", MK_CFG_FLOAT, "1.0", 0, 1, NULL, 0, "fraction of training cases with a label listed"},
    {"hard_frac", MK_CFG_FLOAT, "0.5", 0, 1, NULL, 0,
     "lung: fraction of tumours abutting the mediastinum"},
    {"paired", MK_CFG_BOOL, "false", NR, NULL, 0,
     "lung: also write each CT case imaged as MR on the CT grid (the oracle pseudo-MRI; "
     "manifest column paired_mr)"},
};

static const mk_cfg_key MODEL_KEYS[] = {
    {"width", MK_CFG_INT, "8", 1, 512, NULL, 0, "channels of the first U-Net level (doubling per level)"},
    {"depth", MK_CFG_INT, "3", 2, 6, NULL, 0, "resolution levels of the U-Net"},
    {"classes", MK_CFG_INT, "2", 2, 64, NULL, 0, "output classes including background"},
    {"norm", MK_CFG_STRING, "\"batch\"", NR, "batch|instance", 0, "normalisation layer"},
};

static const mk_cfg_key TRANSLATE_KEYS[] = {
    {"iterations", MK_CFG_INT, "400", 0, 1e9, NULL, 0, "warm-up iterations of CT->MRI translation alone"},
    {"batch", MK_CFG_INT, "4", 1, 1024, NULL, 0, "slices per batch"},
    {"lr", MK_CFG_FLOAT, "2e-4", 0, 1, NULL, 0, "Adam learning rate of generators and discriminators"},
    {"beta1", MK_CFG_FLOAT, "0.5", 0, 0.999999, NULL, 0, "Adam beta1"},
    {"lambda_cycle", MK_CFG_FLOAT, "10.0", 0, 1e6, NULL, 0, "weight of the cycle-consistency L1 loss"},
    {"lambda_identity", MK_CFG_FLOAT, "0.5", 0, 1e6, NULL, 0,
     "weight of the identity loss (relative to lambda_cycle)"},
    {"gen_width", MK_CFG_INT, "16", 1, 512, NULL, 0, "generator channels"},
    {"disc_width", MK_CFG_INT, "16", 1, 512, NULL, 0, "PatchGAN discriminator channels"},
};

static const mk_cfg_key CMEDL_KEYS[] = {
    {"iterations", MK_CFG_INT, "1500", 1, 1e9, NULL, 0, "joint training iterations"},
    {"batch", MK_CFG_INT, "4", 1, 1024, NULL, 0, "labelled CT slices (and MRI slices) per batch"},
    {"lr", MK_CFG_FLOAT, "1e-3", 0, 1, NULL, 0, "Adam learning rate of teacher and student"},
    {"hint_layers", MK_CFG_STRING_LIST, "[\"dec_prev\", \"dec_last\"]", NR, NULL, 0,
     "feature maps tied by the hint loss: encN, bottleneck, decN, logits, dec_last, dec_prev"},
    {"lambda_hint", MK_CFG_FLOAT, "0.1", 0, 1e6, NULL, 0, "weight of the hint (feature distillation) loss"},
    {"w_seg_student", MK_CFG_FLOAT, "1.0", 0, 1e6, NULL, 0, "weight of the student's segmentation loss"},
    {"w_seg_teacher", MK_CFG_FLOAT, "1.0", 0, 1e6, NULL, 0,
     "weight of the teacher's segmentation loss (pseudo-MRI and MRI)"},
    {"dice_weight", MK_CFG_FLOAT, "0.5", 0, 1, NULL, 0, "segmentation loss = w*Dice + (1-w)*CE"},
    {"hint_to_teacher", MK_CFG_BOOL, "false", NR, NULL, 0, "let the hint loss update the teacher too"},
    {"seg_to_i2i", MK_CFG_BOOL, "true", NR, NULL, 0,
     "let the teacher's loss on pseudo-MRI update the translator"},
    {"w_seg_i2i", MK_CFG_FLOAT, "1.0", 0, 1e6, NULL, 0,
     "with seg_to_i2i: factor on the gradient the loss on pseudo-MRI sends into the translator"},
    {"lambda_tumour_i2i", MK_CFG_FLOAT, "0.0", 0, 1e6, NULL, 0,
     "extension: weight of a loss pulling the pseudo-MRI inside the CT mask to the real MRI "
     "tumours' mean value (needs labelled MRI)"},
    {"teacher_init", MK_CFG_STRING, "\"own\"", NR, "own|student", 0,
     "teacher's initial weights: its own random draw, or a copy of the student's"},
    {"hint_rampup", MK_CFG_INT, "0", 0, 1e9, NULL, 0,
     "iterations over which lambda_hint ramps up as exp(-5 (1 - t)^2) (0: full weight from the start)"},
    {"hint_where", MK_CFG_STRING, "\"all\"", NR, "all|teacher_correct", 0,
     "positions the hint loss counts: all, or only where the teacher's prediction on pseudo-MRI is right"},
    {"ema", MK_CFG_FLOAT, "0.0", 0, 0.99999, NULL, 0,
     "> 0: save the moving average of the student's weights with this decay (CMEDL and baseline alike)"},
    {"teacher_mri_labels", MK_CFG_BOOL, "true", NR, NULL, 0,
     "the teacher also learns on real MRI with its masks (when every MRI train row has one)"},
    {"teacher_learns_pmri", MK_CFG_BOOL, "true", NR, NULL, 0,
     "the teacher's loss on pseudo-MRI (CT masks) trains the teacher; false: only the translator, "
     "through a frozen copy of a teacher that learns on real MRI alone (tumour-aware translation)"},
    {"oracle_pmri", MK_CFG_BOOL, "false", NR, NULL, 0,
     "diagnostic: the teacher sees each CT slice's paired MR rendering (manifest column "
     "paired_mr, synth.paired) instead of the pseudo-MRI: perfect translation, an upper bound"},
    {"hint_pseudo_ct", MK_CFG_BOOL, "false", NR, NULL, 0,
     "extension: also tie the student's features on pseudo-CT F(MRI) to the teacher's on that MRI"},
    {"w_seg_pseudo_ct", MK_CFG_FLOAT, "0.0", 0, 1e6, NULL, 0,
     "extension: weight of the student's segmentation loss on pseudo-CT F(MRI) with the MRI mask"},
    {"schedule", MK_CFG_STRING, "\"constant\"", NR, "constant|poly|cosine", 0,
     "learning-rate schedule of teacher and student (poly: power 0.9, as nnU-Net)"},
};

static const mk_cfg_key BASELINE_KEYS[] = {
    {"iterations", MK_CFG_INT, "0", 0, 1e9, NULL, 0,
     "iterations of the CT-only student (0: the same as cmedl.iterations)"},
};

static const mk_cfg_key EVALUATE_KEYS[] = {
    {"split", MK_CFG_STRING, "\"test\"", NR, NULL, 0, "manifest split to evaluate"},
    {"tolerance_mm", MK_CFG_FLOAT, "1.0", 0, 1e4, NULL, 0, "surface Dice tolerance in mm"},
    {"convention", MK_CFG_STRING, "\"deepmind\"", NR, "deepmind|medpy", 0,
     "surface-distance convention (see docs/metrics.md)"},
    {"write_masks", MK_CFG_BOOL, "true", NR, NULL, 0, "write predicted masks as NIfTI"},
    {"window_blend", MK_CFG_STRING, "\"gaussian\"", NR, "gaussian|uniform", 0,
     "sliding-window inference: overlapping windows blended with Gaussian weights (sigma = patch/8, "
     "as nnU-Net) or a plain mean"},
    {"largest_component", MK_CFG_BOOL, "false", NR, NULL, 0,
     "keep only the largest 6-connected component of each predicted mask (every model alike)"},
    {"teacher_on_pmri", MK_CFG_BOOL, "false", NR, NULL, 0,
     "also report the CMEDL teacher segmenting pseudo-MRI made from each CT (pmri_teacher)"},
    {"write_pmri", MK_CFG_BOOL, "false", NR, NULL, 0,
     "with teacher_on_pmri: also write each CT's pseudo-MRI (the CMEDL generator's output, "
     "float32 in [-1, 1], the CT's geometry) as pmri/<case>.nii.gz"},
};

const mk_cfg_section MK_CFG_SCHEMA[] = {
    {"run", "what to run and where", RUN_KEYS, N(RUN_KEYS), 0, NULL},
    {"data", "the dataset", DATA_KEYS, N(DATA_KEYS), 0, NULL},
    {"model", "segmentation network shape (teacher and student)", MODEL_KEYS, N(MODEL_KEYS), 0, NULL},
    {"synth", "generate phantom data with exact labels", SYNTH_KEYS, N(SYNTH_KEYS), 1, NULL},
    {"translate", "unpaired CT->MRI translation (CycleGAN-style)", TRANSLATE_KEYS,
     N(TRANSLATE_KEYS), 1, "cmedl"},
    {"cmedl", "cross-modality educed distillation: MRI teacher guides a CT student", CMEDL_KEYS,
     N(CMEDL_KEYS), 1, "baseline"},
    {"baseline", "the same student trained on CT alone, for comparison", BASELINE_KEYS,
     N(BASELINE_KEYS), 1, NULL},
    {"evaluate", "inference on the evaluation split, masks and the metrics report", EVALUATE_KEYS,
     N(EVALUATE_KEYS), 1, NULL},
};
const int MK_CFG_SCHEMA_COUNT = N(MK_CFG_SCHEMA);
