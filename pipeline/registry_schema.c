/* The config schema, collected from the parameter rows declared beside each stage and method:
 * [data] and [model] in stages/params.c, [histo] in stages/histo.c, one section per method in
 * stages/method_<name>.c, and here the rows of the runner ([run]), the phantom stage ([synth]) and
 * the evaluate stage. docs/config.md is generated from it (`pipeline validate --explain
 * --markdown`). Ranges: {min, max}; min > max means unbounded. */
#include <string.h>

#include "../stages/mk_histo_stage.h"
#include "../stages/mk_method.h"
#include "../config/mk_config.h"
#include "mk_runner.h"

#define NR 1, 0 /* no range */
/* The rows below have no storage (MK_BIND_NONE, the trailing fields left zero): the runner, the
 * phantom stage and evaluate read them by name. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
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
    {"noise", MK_CFG_FLOAT, "1.0", 0, 100, NULL, 0,
     "noise multiplier (CT HU sigma, MR Rician sigma)"},
    {"shift", MK_CFG_FLOAT, "1.0", 0, 1, NULL, 0,
     "domain-shift strength (cardiac CT mapping, histo stain)"},
    {"labelled", MK_CFG_FLOAT, "1.0", 0, 1, NULL, 0,
     "fraction of training cases with a label listed"},
    {"hard_frac", MK_CFG_FLOAT, "0.5", 0, 1, NULL, 0,
     "lung: fraction of tumours abutting the mediastinum"},
    {"paired", MK_CFG_BOOL, "false", NR, NULL, 0,
     "lung: also write each CT case imaged as MR on the CT grid (the oracle pseudo-MRI; "
     "manifest column paired_mr)"},
};

static const mk_cfg_key EVALUATE_KEYS[] = {
    {"split", MK_CFG_STRING, "\"auto\"", NR, "auto|test|val|train", 0,
     "manifest split to evaluate (auto: test when it has labelled cases of the evaluated "
     "modality, else the validation split)"},
    {"model", MK_CFG_STRING, "\"best\"", NR, "best|last", 0,
     "which network of a validated training stage is evaluated: the best validation score "
     "(models/<model>_best.h5, when validation ran) or the last"},
    {"tolerance_mm", MK_CFG_FLOAT, "1.0", 0, 1e4, NULL, 0, "surface Dice tolerance in mm"},
    {"convention", MK_CFG_STRING, "\"deepmind\"", NR, "deepmind|medpy", 0,
     "surface-distance convention (see docs/metrics.md)"},
    {"write_masks", MK_CFG_BOOL, "true", NR, NULL, 0, "write predicted masks as NIfTI"},
    {"both_empty", MK_CFG_STRING, "\"nan\"", NR, "nan|one", 0,
     "a structure in neither the prediction nor the reference of a case: nan = every score NaN, "
     "left out of the means and counted (nnU-Net; `pipeline eval`'s default), one = Dice 1, "
     "distances 0"},
    {"window_blend", MK_CFG_STRING, "\"gaussian\"", NR, "gaussian|uniform", 0,
     "sliding-window inference: overlapping windows blended with Gaussian weights (sigma = "
     "patch/8, "
     "as nnU-Net) or a plain mean"},
    {"largest_component", MK_CFG_BOOL, "false", NR, NULL, 0,
     "keep only the largest 6-connected component of each predicted mask (every model alike)"},
    {"teacher_on_pmri", MK_CFG_BOOL, "false", NR, NULL, 0,
     "also report the CMEDL teacher segmenting pseudo-MRI made from each CT (pmri_teacher)"},
    {"write_pmri", MK_CFG_BOOL, "false", NR, NULL, 0,
     "with teacher_on_pmri: also write each CT's pseudo-MRI (the CMEDL generator's output, "
     "float32 in [-1, 1], the CT's geometry) as pmri/<case>.nii.gz"},
    {"report", MK_CFG_BOOL, "true", NR, NULL, 0,
     "write the self-contained pages: reports/report.html for segmentation models (for "
     "radiologists), reports/classification.html for patch classifiers (docs/report.md)"},
    {"report_window", MK_CFG_FLOAT_LIST, "[-160.0, 240.0]", -1e5, 1e5, NULL, 0,
     "grey window [low, high] of the report's CT image panels (default W400/L40, soft tissue); "
     "other modalities use each image's 0.5-99.5 percentiles"},
    {"report_worst", MK_CFG_INT, "3", 0, 1000, NULL, 0,
     "image panels in the report per model: the N worst cases by mean Dice (and the best one "
     "when N > 0)"},
    {"bootstrap", MK_CFG_INT, "2000", 100, 1000000, NULL, 0,
     "bootstrap resamples of the report's 95 % confidence intervals and paired comparisons "
     "(fixed seed)"},
};

/* The schema: [run], the shared sections, [synth], one section per registered method (its own
 * rows, from stages/method_<name>.c), [evaluate]. Built once from the registry. */
#define MAX_SECTIONS (MK_METHOD_COUNT + 8)
static mk_cfg_section g_sections[MAX_SECTIONS];
static int g_n;

static void add(const char *name, const char *doc, const mk_cfg_key *keys, int n, int is_stage)
{
    MK_ASSERT(g_n < MAX_SECTIONS);
    g_sections[g_n++] = (mk_cfg_section){name, doc, keys, n, is_stage, NULL, 0};
}

void mk_pipeline_schema_install(void)
{
    if (g_n > 0)
        return;
    /* [run]: the runner's rows, then the training loop's (stages/params.c) */
    static mk_cfg_key run[N(RUN_KEYS) + 8];
    int nr = 0;
    for (int i = 0; i < N(RUN_KEYS); i++)
        run[nr++] = RUN_KEYS[i];
    for (int i = 0; i < mk_run_section.nrows && nr < N(run); i++)
        run[nr++] = mk_run_section.rows[i];
    add("run", mk_run_section.doc, run, nr, 0);
    add(mk_data_section.name, mk_data_section.doc, mk_data_section.rows, mk_data_section.nrows, 0);
    add(mk_model_section.name, mk_model_section.doc, mk_model_section.rows, mk_model_section.nrows,
        0);
    /* [histo]: shared by the histology methods (stages/histo.c) */
    add(mk_histo_section.name, mk_histo_section.doc, mk_histo_section.rows, mk_histo_section.nrows,
        0);
    add("synth", "generate phantom data with exact labels", SYNTH_KEYS, N(SYNTH_KEYS), 1);
    g_sections[g_n - 1].produces_inputs = 1; /* it writes data.manifest and the images */
    for (int i = 0; i < MK_METHOD_COUNT; i++) {
        const mk_param_section *own = MK_METHODS[i]->uses[0].section;
        add(own->name, own->doc, own->rows, own->nrows, 1);
    }
    /* a method that reads another method's section: that section is used by it too */
    for (int i = 0; i < MK_METHOD_COUNT; i++)
        for (int u = 1; u < MK_METHODS[i]->nuses; u++)
            for (int s = 0; s < g_n; s++)
                if (!strcmp(g_sections[s].name, MK_METHODS[i]->uses[u].section->name))
                    g_sections[s].used_by = MK_METHODS[i]->name;
    add("evaluate", "inference on the evaluation split, masks and the metrics report",
        EVALUATE_KEYS, N(EVALUATE_KEYS), 1);
    mk_cfg_set_schema(g_sections, g_n);
}
