/* medkd phantoms: synthetic CT, MRI and histology with exact labels.
 *
 * No patient data ships with medkd, so the demo and the tests run on phantoms whose ground truth is
 * known by construction. Three kinds:
 *
 *   lung     CT (int16 HU) and T2-weighted-MRI-like (float32) chest volumes of DIFFERENT synthetic
 *            patients (unpaired), label = tumour mask (uint8 0/1). On CT the tumour differs from
 * the mediastinum by a few HU plus a texture cue; on MRI it is bright (CMEDL's premise). cardiac
 * short-axis cine-MRI-like (float32) and contrast-CT-like (int16 HU) stacks of different patients;
 * label uint8 ACDC-like: 0 background, 1 RV, 2 MYO, 3 LV blood pool. histo    H&E-like RGB slides
 * (Beer-Lambert stain model), region mask uint8 (0 background, 1 normal tissue, 2 tumour), patch
 * labels derived from the mask.
 *
 * Every volume also has a tissue map (uint8, codes mk_phantom_tissue) on the same grid so tests
 * and users can check intensities per tissue class.
 *
 * Determinism: each case has its own random stream derived from (seed, kind, domain, index) by
 * splitmix64, and xoshiro256** draws from it. Case i is therefore the same whatever the number of
 * cases, and two runs with the same parameters give the same bytes on the same platform.
 *
 *     mk_phantom_params p;
 *     mk_phantom_params_default(&p, MK_PHANTOM_LUNG);
 *     mk_image *ct = NULL, *lab = NULL, *tis = NULL;
 *     if (mk_phantom_volume(&ctx, &p, MK_PHANTOM_DOMAIN_CT, 0, &ct, &lab, &tis, NULL) != MK_OK) ...
 *     mk_image_free(ct); mk_image_free(lab); mk_image_free(tis);
 *
 *     mk_phantom_synth(&ctx, &p, "out/lung", &summary);   // all cases + manifest.csv on disk
 */
#ifndef MK_PHANTOMS_H
#define MK_PHANTOMS_H

#include <stdint.h>

#include "../core/mk_status.h"
#include "../io/mk_image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mk_phantom_kind {
    MK_PHANTOM_LUNG = 0,
    MK_PHANTOM_CARDIAC,
    MK_PHANTOM_HISTO,
    MK_PHANTOM_KIND_COUNT
} mk_phantom_kind;

/* Domains. lung: CT and MR. cardiac: MR (source) and CT (target). histo: two staining sites. */
typedef enum mk_phantom_domain {
    MK_PHANTOM_DOMAIN_CT = 0,
    MK_PHANTOM_DOMAIN_MR,
    MK_PHANTOM_DOMAIN_SITE_A,
    MK_PHANTOM_DOMAIN_SITE_B,
    MK_PHANTOM_DOMAIN_COUNT
} mk_phantom_domain;

/* Tissue codes of the tissue maps (lung and cardiac). */
typedef enum mk_phantom_tissue {
    MK_TISSUE_AIR = 0,      /* outside the body */
    MK_TISSUE_LUNG,         /* lung parenchyma */
    MK_TISSUE_VESSEL,       /* pulmonary vessel (voxel more than half vessel) */
    MK_TISSUE_FAT,          /* subcutaneous / epicardial fat */
    MK_TISSUE_MUSCLE,       /* chest wall muscle */
    MK_TISSUE_MEDIASTINUM,  /* mediastinal soft tissue, heart and great vessels (lung kind) */
    MK_TISSUE_BONE,         /* ribs, vertebrae, sternum */
    MK_TISSUE_TUMOUR,       /* lung tumour */
    MK_TISSUE_LV_BLOOD,     /* cardiac: left-ventricle blood pool */
    MK_TISSUE_MYO,          /* cardiac: LV myocardium */
    MK_TISSUE_RV_BLOOD,     /* cardiac: right-ventricle blood pool */
    MK_TISSUE_LIVER,        /* cardiac: liver dome in the inferior slices */
    MK_TISSUE_GREAT_VESSEL, /* cardiac: aorta / pulmonary trunk (bright blood, label 0) */
    MK_TISSUE_COUNT
} mk_phantom_tissue;

/* Name of a tissue code ("lung", "tumour", ...), "?" if out of range. */
const char *mk_phantom_tissue_name(int code);
/* Name of a kind ("lung", "cardiac", "histo") / domain ("ct", "mr", "siteA", "siteB"). */
const char *mk_phantom_kind_name(mk_phantom_kind k);
const char *mk_phantom_domain_name(mk_phantom_domain d);
/* Kind from its name; MK_ERR_USAGE naming the choices if unknown. */
mk_status mk_phantom_kind_parse(mk_ctx *ctx, const char *s, mk_phantom_kind *out);

/* Stated intensity range of a tissue in a domain (HU for CT, arbitrary units 0..1000 for MR) for
 * the parameters p (contrast and shift move some ranges). The per-case mean and median of the
 * tissue's voxels lie inside it at noise <= 1. Returns 0 if the tissue has no stated range there
 * (or does not occur in that kind). Tests check generated images against these. */
struct mk_phantom_params;
int mk_phantom_tissue_range(const struct mk_phantom_params *p, mk_phantom_domain dom, int tissue,
                            double *lo, double *hi);

/* Generation parameters. Defaults from mk_phantom_params_default; all knobs are multipliers or
 * fractions so 1.0 / the default means "as documented in docs/phantoms.md". */
typedef struct mk_phantom_params {
    mk_phantom_kind kind;
    uint64_t seed;
    int cases;        /* cases per domain (>= 1) */
    int size[3];      /* volume grid i,j,k (lung/cardiac); histo: slide width, height, unused */
    double contrast;  /* hard-domain target contrast multiplier: CT tumour-minus-mediastinum HU
                       * offset (lung), tumour nuclear size/density excess (histo); >= 0 */
    double noise;     /* noise multiplier (CT HU sigma, MR Rician sigma, bias field); >= 0 */
    double shift;     /* domain-shift strength 0..1 (cardiac CT intensity mapping, histo stain) */
    double labelled;  /* fraction of training cases whose label is listed in the manifest, 0..1 */
    double hard_frac; /* lung: fraction of tumours abutting the mediastinum, 0..1 */
    int tile;         /* histo: TIFF tile size (multiple of 16) */
    int patch;        /* histo: patch size in level-0 pixels for the patch labels */
    int paired;       /* lung, synth only: also write each CT case rendered as MR (the oracle
                       * pseudo-MRI, mk_phantom_volume_paired) in manifest column paired_mr */
} mk_phantom_params;

void mk_phantom_params_default(mk_phantom_params *p, mk_phantom_kind kind);
/* Validate ranges; MK_ERR_INVALID naming the field otherwise. */
mk_status mk_phantom_params_check(mk_ctx *ctx, const mk_phantom_params *p);

/* Facts about one generated case (for manifests, sidecars and subgroup analysis). */
typedef struct mk_phantom_info {
    int hard;          /* lung: tumour abuts the mediastinum; histo: slide has tumour */
    int64_t fg_voxels; /* label > 0 voxels / pixels */
    double fg_ml;      /* lung/cardiac: foreground volume in ml; histo: tumour fraction */
    double lesion_radius_mm;
} mk_phantom_info;

/* Generate one lung or cardiac volume in memory.
 *   dom: lung CT|MR, cardiac MR|CT.  index: case number (>= 0).
 *   *img: CT int16 HU or MR float32; *label: uint8 (tumour mask / ACDC labels); *tissue: uint8
 *   tissue map (NULL to skip). All on the same grid with the same geometry and NIfTI qform/sform.
 *   info may be NULL. Caller owns and frees the images. */
mk_status mk_phantom_volume(mk_ctx *ctx, const mk_phantom_params *p, mk_phantom_domain dom,
                            int index, mk_image **img, mk_image **label, mk_image **tissue,
                            mk_phantom_info *info);

/* Paired rendering (lung only): case `index` of domain dom -- its anatomy, grid, geometry and
 * textures, the same voxels as mk_phantom_volume(dom) -- imaged with domain render's tissue
 * contrasts and acquisition (CT: int16 HU with CT noise; MR: float32, bias field, Rician noise).
 * The CT of case i rendered as MR is the "oracle pseudo-MRI" of docs/results.md: what a perfect
 * CT->MRI translator would produce. The label of dom's case applies unchanged. */
mk_status mk_phantom_volume_paired(mk_ctx *ctx, const mk_phantom_params *p, mk_phantom_domain dom,
                                   mk_phantom_domain render, int index, mk_image **img);

/* Generate one histology slide in memory: *rgb is a 2-D MK_DT_RGB24 image (level 0),
 * *mask a 2-D uint8 region mask on the same grid (0 background, 1 tissue, 2 tumour).
 * dom: SITE_A or SITE_B (stain variation). Pixel size 1 um (spacing 0.001 mm). */
mk_status mk_phantom_slide(mk_ctx *ctx, const mk_phantom_params *p, mk_phantom_domain dom,
                           int index, mk_image **rgb, mk_image **mask, mk_phantom_info *info);

/* Split of case `index` ("train", "val", "test"), independent of the number of cases:
 * index % 5 == 3 -> val, index % 5 == 4 -> test, else train. */
const char *mk_phantom_split(int index);
/* 1 if training case `index` has its label listed, for labelled fraction f (independent of the
 * number of cases: the k-th training case is labelled iff floor((k+1)f) > floor(kf)). */
int mk_phantom_is_labelled(int index, double f);

typedef struct mk_phantom_summary {
    int files;      /* files written */
    int cases;      /* cases over all domains */
    double seconds; /* wall time */
} mk_phantom_summary;

/* Write every case of p->kind under out_dir plus out_dir/manifest.csv (columns id, modality, image,
 * label, split, domain; paths relative to the manifest) and out_dir/cases.csv (per-case facts);
 * histo also writes out_dir/patches.csv. Each file is written atomically. summary may be NULL. */
mk_status mk_phantom_synth(mk_ctx *ctx, const mk_phantom_params *p, const char *out_dir,
                           mk_phantom_summary *summary);

/* ---- difficulty check without learning ----
 * Best single-threshold Dice: the maximum over thresholds t of Dice({img > t}, {label > 0}),
 * restricted to voxels where roi != 0 (roi NULL: the whole image). This is the accuracy of the
 * best possible intensity-only classifier with one cut; CMEDL's premise is that it is low on CT
 * and high on MR. *thr receives the best threshold (may be NULL). Returns MK_ERR_INVALID if the
 * grids differ, MK_ERR_NOMEM on allocation failure. An empty label gives dice 0. */
mk_status mk_phantom_best_threshold_dice(mk_ctx *ctx, const mk_image *img, const mk_image *label,
                                         const uint8_t *roi, double *dice, double *thr);
/* ROI = bounding box of label > 0 grown by margin_mm on each side (through the spacing).
 * roi has nvox bytes, set to 0/1. Returns 0 if the label is empty (roi all 0). */
int mk_phantom_label_box_roi(const mk_image *label, double margin_mm, uint8_t *roi);

/* ---- random numbers (exposed for tests and other modules) ---- */
typedef struct mk_phantom_rng {
    uint64_t s[4];
} mk_phantom_rng;

uint64_t mk_phantom_splitmix64(uint64_t *state);
/* Seed a xoshiro256** stream from a key; different keys give independent streams. */
void mk_phantom_rng_seed(mk_phantom_rng *r, uint64_t seed, uint64_t stream);
uint64_t mk_phantom_rng_u64(mk_phantom_rng *r);
double mk_phantom_rng_uniform(mk_phantom_rng *r); /* [0,1) with 53 random bits */
double mk_phantom_rng_normal(mk_phantom_rng *r);  /* standard normal (Box-Muller, no caching) */
/* Stream key of a case: mixes kind, domain and index. */
uint64_t mk_phantom_case_stream(mk_phantom_kind k, mk_phantom_domain d, int index);

#ifdef __cplusplus
}
#endif
#endif
