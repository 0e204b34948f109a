/* Cardiac phantom: short-axis stack through both ventricles (ACDC-like labels 1 RV, 2 MYO, 3 LV),
 * rendered as bSSFP cine MR (bright blood AND bright fat) or as contrast CT (bright blood, dark
 * fat), the intensity mapping blended by the domain-shift knob.
 *
 * The anatomy is built in a heart frame whose z axis is the long axis (base superior, apex
 * inferior); the image geometry is the double-oblique rotation of that frame, as for real
 * short-axis acquisitions, so the affine carries the obliquity. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phantom_internal.h"

typedef struct heart_anat {
    double cx, cy, rot;      /* LV centre (heart frame) and in-plane rotation */
    double lv_a, lv_b, wall; /* LV endocardial semi-axes and myocardial thickness */
    double z_base, z_apex, z_cyl;
    double rv_phi, rv_d, rv_a, rv_b, rv_zlow;
    double body_a, body_b, fat, muscle;
    double lung_x[2], lung_y, lung_a, lung_b;
    double liver_z, liver_cx, liver_cy, liver_r;
    double spine_y, spine_r;
    double gv_x, gv_y, gv_r; /* aorta above the base */
    double epi_fat;
} heart_anat;

static double U(mk_phantom_rng *r, double lo, double hi)
{
    return lo + (hi - lo) * mk_phantom_rng_uniform(r);
}

static void sample_heart(heart_anat *H, mk_phantom_rng *r, double z_half)
{
    memset(H, 0, sizeof *H);
    H->cx = U(r, -10, 10);
    H->cy = U(r, -10, 10);
    H->rot = U(r, -0.4, 0.4);
    H->lv_a = U(r, 20, 28);
    H->lv_b = U(r, 18, 25);
    H->wall = U(r, 7, 12);
    H->z_base = z_half * U(r, 0.75, 0.95);
    H->z_apex = -z_half * U(r, 0.7, 0.85);
    H->z_cyl = U(r, 0, 0.3) * z_half;
    H->rv_phi = M_PI + U(r, -0.45, 0.45);
    H->rv_d = U(r, 22, 30);
    H->rv_a = U(r, 42, 52);
    H->rv_b = U(r, 26, 34);
    H->rv_zlow = H->z_apex + U(r, 0.25, 0.45) * (H->z_base - H->z_apex);
    H->body_a = U(r, 112, 130);
    H->body_b = U(r, 88, 102);
    H->fat = U(r, 6, 14);
    H->muscle = U(r, 8, 14);
    H->lung_x[0] = -U(r, 78, 92);
    H->lung_x[1] = U(r, 78, 92);
    H->lung_y = U(r, 0, 20);
    H->lung_a = U(r, 30, 40);
    H->lung_b = U(r, 55, 70);
    H->liver_z = H->z_apex + U(r, -5, 15);
    H->liver_cx = U(r, -70, -40);
    H->liver_cy = U(r, 10, 40);
    H->liver_r = U(r, 55, 75);
    H->spine_r = U(r, 13, 17);
    H->spine_y = H->body_b - H->fat - H->muscle - H->spine_r - 3;
    H->gv_x = H->cx + U(r, 5, 15);
    H->gv_y = H->cy + U(r, -15, -5);
    H->gv_r = U(r, 12, 16);
    H->epi_fat = U(r, 3, 7);
}

/* LV shape scale at height z: 1 in the basal cylinder, shrinking to 0 at the apex. */
static double lv_scale(double z, double z_cyl, double z_apex)
{
    if (z >= z_cyl)
        return 1.0;
    double u = (z_cyl - z) / (z_cyl - z_apex);
    return u >= 1 ? 0.0 : sqrt(1.0 - u * u);
}

static int heart_tissue(const heart_anat *H, const double q[3], uint8_t *lab)
{
    double x = q[0], y = q[1], z = q[2];
    *lab = 0;
    /* body and chest wall */
    double e = sqrt((x / H->body_a) * (x / H->body_a) + (y / H->body_b) * (y / H->body_b));
    if (e >= 1.0)
        return MK_TISSUE_AIR;
    double depth = (1.0 - e) * 0.5 * (H->body_a + H->body_b);
    if (depth < H->fat)
        return MK_TISSUE_FAT;
    if (depth < H->fat + H->muscle)
        return MK_TISSUE_MUSCLE;
    double sy = y - H->spine_y;
    if (sqrt(x * x + sy * sy) < H->spine_r)
        return MK_TISSUE_BONE;
    /* heart, in the LV frame */
    double dx = x - H->cx, dy = y - H->cy;
    double c = cos(H->rot), s = sin(H->rot);
    double u = c * dx + s * dy, v = -s * dx + c * dy;
    if (z <= H->z_base) {
        double sl = lv_scale(z, H->z_cyl, H->z_apex);
        double se = lv_scale(z, H->z_cyl, H->z_apex - H->wall);
        double rl =
            sl > 0 ? sqrt((u / H->lv_a) * (u / H->lv_a) + (v / H->lv_b) * (v / H->lv_b)) / sl : 2.0;
        double ea = H->lv_a + H->wall, eb = H->lv_b + H->wall;
        double re = se > 0 ? sqrt((u / ea) * (u / ea) + (v / eb) * (v / eb)) / se : 2.0;
        if (rl < 1.0) {
            *lab = 3;
            return MK_TISSUE_LV_BLOOD;
        }
        if (re < 1.0) {
            *lab = 2;
            return MK_TISSUE_MYO;
        }
        /* RV: ellipse beside the LV, outside the LV epicardium, with a 3 mm free wall */
        if (z >= H->rv_zlow) {
            double rs = lv_scale(z, H->z_cyl, H->rv_zlow);
            double ox = H->rv_d * cos(H->rv_phi), oy = H->rv_d * sin(H->rv_phi);
            double cp = cos(H->rv_phi), sp = sin(H->rv_phi);
            double ru = cp * (u - ox) + sp * (v - oy), rv = -sp * (u - ox) + cp * (v - oy);
            double rr =
                rs > 0
                    ? sqrt((ru / (H->rv_b)) * (ru / (H->rv_b)) + (rv / H->rv_a) * (rv / H->rv_a)) /
                          rs
                    : 2.0;
            double rw = rs > 0 ? sqrt((ru / (H->rv_b + 3)) * (ru / (H->rv_b + 3)) +
                                      (rv / (H->rv_a + 3)) * (rv / (H->rv_a + 3))) /
                                     rs
                               : 2.0;
            if (rr < 1.0) {
                *lab = 1;
                return MK_TISSUE_RV_BLOOD;
            }
            if (rw < 1.0)
                return MK_TISSUE_MUSCLE;
            double rf =
                rs > 0
                    ? sqrt((ru / (H->rv_b + 3 + H->epi_fat)) * (ru / (H->rv_b + 3 + H->epi_fat)) +
                           (rv / (H->rv_a + 3 + H->epi_fat)) * (rv / (H->rv_a + 3 + H->epi_fat))) /
                          rs
                    : 2.0;
            if (rf < 1.0)
                return MK_TISSUE_FAT;
        }
        double fa = ea + H->epi_fat, fb = eb + H->epi_fat;
        double rfe = se > 0 ? sqrt((u / fa) * (u / fa) + (v / fb) * (v / fb)) / se : 2.0;
        if (rfe < 1.0)
            return MK_TISSUE_FAT;
    } else {
        double gx = x - H->gv_x, gy = y - H->gv_y;
        if (sqrt(gx * gx + gy * gy) < H->gv_r)
            return MK_TISSUE_GREAT_VESSEL;
    }
    for (int l = 0; l < 2; l++) {
        double lx = (x - H->lung_x[l]) / H->lung_a, ly = (y - H->lung_y) / H->lung_b;
        if (lx * lx + ly * ly < 1.0)
            return MK_TISSUE_LUNG;
    }
    double zx = x - H->liver_cx, zy = y - H->liver_cy, zz = z - (H->liver_z - H->liver_r);
    if (zx * zx + zy * zy + zz * zz < H->liver_r * H->liver_r)
        return MK_TISSUE_LIVER;
    return MK_TISSUE_MUSCLE; /* remaining soft tissue */
}

mk_status mk__ph_cardiac(mk_ctx *ctx, const mk_phantom_params *p, mk_phantom_domain dom, int index,
                         mk_image **img, mk_image **label, mk_image **tissue, mk_phantom_info *info)
{
    mk_phantom_rng r;
    mk_phantom_rng_seed(&r, p->seed, mk_phantom_case_stream(p->kind, dom, index));
    int n[3] = {p->size[0], p->size[1], p->size[2]};
    int is_ct = dom == MK_PHANTOM_DOMAIN_CT;
    /* 200 x 200 mm short-axis field of view, slices covering 100 mm of the long axis */
    double sp[3] = {200.0 / n[0], 200.0 / n[1], 100.0 / n[2]};
    heart_anat H;
    sample_heart(&H, &r, 0.5 * (n[2] - 1) * sp[2]);
    /* double-oblique short-axis planes: about 40 deg yaw and 35 deg tilt from axial */
    double yaw = U(&r, 30, 50) * M_PI / 180, tilt = U(&r, 25, 45) * M_PI / 180;
    int flip[3] = {0, 0, is_ct ? 0 : 1};
    double centre[3] = {U(&r, 20, 40), U(&r, -10, 10), U(&r, -20, 0)};

    mk_image *im = NULL, *lab = NULL, *tis = NULL;
    float *sig = NULL, *tex = NULL;
    int64_t dims[3] = {n[0], n[1], n[2]};
    mk_status st = mk_image_new(ctx, is_ct ? MK_DT_INT16 : MK_DT_FLOAT32, 3, dims, &im);
    if (st != MK_OK)
        return st;
    mk__ph_set_geometry(im, sp, yaw, tilt, flip, centre);
    snprintf(im->descrip, sizeof im->descrip, "medkd phantom cardiac %s case %d",
             mk_phantom_domain_name(dom), index);
    if ((st = mk_image_new_like(ctx, im, MK_DT_UINT8, &lab)) != MK_OK ||
        (st = mk_image_new_like(ctx, im, MK_DT_UINT8, &tis)) != MK_OK)
        goto fail;
    size_t nv = (size_t)n[0] * (size_t)n[1] * (size_t)n[2];
    sig = malloc(nv * sizeof *sig);
    tex = malloc(nv * sizeof *tex);
    if (!sig || !tex) {
        st = mk_err(ctx, MK_ERR_NOMEM, "phantom: out of memory for a %dx%dx%d volume", n[0], n[1],
                    n[2]);
        goto fail;
    }
    uint8_t *T = tis->data, *L = lab->data;
    int64_t fg = 0;
    /* heart-frame coordinates of voxel (i,j,k): centred grid times spacing (the geometry maps
     * these axes onto the oblique patient directions) */
    size_t v = 0;
    for (int k = 0; k < n[2]; k++)
        for (int j = 0; j < n[1]; j++)
            for (int i = 0; i < n[0]; i++, v++) {
                /* flipped k (MR) stores the apex first; anatomy stays base-up in the heart frame */
                int kk = flip[2] ? n[2] - 1 - k : k;
                double q[3] = {(i - 0.5 * (n[0] - 1)) * sp[0], (j - 0.5 * (n[1] - 1)) * sp[1],
                               (kk - 0.5 * (n[2] - 1)) * sp[2]};
                T[v] = (uint8_t)heart_tissue(&H, q, &L[v]);
                fg += L[v] > 0;
            }
    int rc[3] = {2, 2, 1};
    if ((st = mk__ph_smooth_noise(ctx, &r, n, rc, tex)) != MK_OK)
        goto fail;
    double base[MK_TISSUE_COUNT], tx[MK_TISSUE_COUNT];
    for (int t = 0; t < MK_TISSUE_COUNT; t++) {
        base[t] = tx[t] = 0;
        if (t != MK_TISSUE_VESSEL && t != MK_TISSUE_MEDIASTINUM && t != MK_TISSUE_TUMOUR)
            mk__ph_tissue_value(p, dom, t, &base[t], &tx[t]);
    }
    for (v = 0; v < nv; v++)
        sig[v] = (float)(base[T[v]] + tx[T[v]] * tex[v]);
    if ((st = mk__ph_psf_inplane(ctx, sig, n)) != MK_OK)
        goto fail;
    if (is_ct) {
        int16_t *out = im->data;
        double sigma = 25.0 * p->noise;
        for (v = 0; v < nv; v++) {
            double x = sig[v] + sigma * mk_phantom_rng_normal(&r);
            out[v] = (int16_t)lrint(mk__ph_clamp(x, -1024, 3071));
        }
    } else {
        mk__ph_mr_finish(&r, sig, im->data, n, 25.0 * p->noise,
                         mk__ph_clamp(0.2 * p->noise, 0, 0.6));
    }
    info->hard = 0;
    info->fg_voxels = fg;
    info->fg_ml = (double)fg * sp[0] * sp[1] * sp[2] / 1000.0;
    info->lesion_radius_mm = 0.5 * (H.lv_a + H.lv_b);
    free(sig);
    free(tex);
    *img = im;
    *label = lab;
    if (tissue)
        *tissue = tis;
    else
        mk_image_free(tis);
    return MK_OK;
fail:
    free(sig);
    free(tex);
    mk_image_free(im);
    mk_image_free(lab);
    mk_image_free(tis);
    return st;
}
