/* Lung phantom: thorax with chest wall, ribs, spine, two lungs with vessels, mediastinum and one
 * lobulated tumour, rendered as CT (HU) or T2w fat-saturated MR.
 *
 * Anatomy lives in patient LPS millimetres (x to the patient's left, y posterior, z superior); the
 * image grid is placed over it through an oblique/flipped geometry, so reading the files with the
 * right affine puts the anatomy back upright. Labels are evaluated at voxel centres (exact), and
 * intensities go through tissue texture, a mild in-plane PSF and acquisition noise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phantom_internal.h"

#define MAX_SEG 128

typedef struct seg {
    double a[3], b[3], r;
} seg;

typedef struct lung_anat {
    double body_a, body_b;      /* outer body ellipse semi-axes (x, y) */
    double fat, muscle;         /* layer thicknesses */
    double lung_c[2][3];        /* lung ellipsoid centres */
    double lung_ax[2][3];       /* semi-axes */
    double z_dia;               /* diaphragm level (lowest point) */
    double spine_c[2], spine_r; /* vertebral body */
    double rib_pitch, rib_phase;
    seg seg[MAX_SEG];
    int nseg;
    /* tumour */
    double tc[3], tr;
    double lob_u[4][3], lob_a[4], lob_f[4], lob_ph[4];
    int hard;
} lung_anat;

static double U(mk_phantom_rng *r, double lo, double hi)
{
    return lo + (hi - lo) * mk_phantom_rng_uniform(r);
}

/* Ellipse "radius" of (x, y) for semi-axes (a, b): < 1 inside. */
static double ell(double x, double y, double a, double b)
{
    return sqrt((x / a) * (x / a) + (y / b) * (y / b));
}

static int in_lung_shape(const lung_anat *A, int s, const double p[3], double margin)
{
    const double *c = A->lung_c[s], *ax = A->lung_ax[s];
    double dx = (p[0] - c[0]) / (ax[0] - margin), dy = (p[1] - c[1]) / (ax[1] - margin),
           dz = (p[2] - c[2]) / (ax[2] - margin);
    double q = dx * dx + dy * dy + dz * dz;
    if (q >= 1.0)
        return 0;
    /* diaphragm dome: higher under the middle of each lung */
    double r2 = dx * dx + dy * dy;
    double zd = A->z_dia + 30.0 * (1.0 - (r2 > 1 ? 1 : r2));
    if (p[2] < zd + margin)
        return 0;
    /* inside the chest wall, 2 mm away from it */
    double ia = A->body_a - A->fat - A->muscle - 2 - margin,
           ib = A->body_b - A->fat - A->muscle - 2 - margin;
    if (ell(p[0], p[1], ia, ib) >= 1.0)
        return 0;
    /* keep clear of the spine */
    double sx = p[0] - A->spine_c[0], sy = p[1] - A->spine_c[1];
    if (sqrt(sx * sx + sy * sy) < A->spine_r + 4 + margin)
        return 0;
    return 1;
}

static double seg_dist(const seg *g, const double p[3])
{
    double d[3], w[3], dd = 0, t = 0;
    for (int a = 0; a < 3; a++) {
        d[a] = g->b[a] - g->a[a];
        w[a] = p[a] - g->a[a];
        dd += d[a] * d[a];
        t += d[a] * w[a];
    }
    t = dd > 0 ? mk__ph_clamp(t / dd, 0, 1) : 0;
    double s = 0;
    for (int a = 0; a < 3; a++) {
        double e = w[a] - t * d[a];
        s += e * e;
    }
    return sqrt(s);
}

static void add_vessel_tree(lung_anat *A, mk_phantom_rng *r, const double start[3],
                            const double dir0[3], double radius, double len, int depth)
{
    if (A->nseg >= MAX_SEG || depth < 0)
        return;
    seg *g = &A->seg[A->nseg++];
    double dir[3], n = 0;
    for (int a = 0; a < 3; a++) {
        dir[a] = dir0[a] + 0.35 * mk_phantom_rng_normal(r);
        n += dir[a] * dir[a];
    }
    n = sqrt(n);
    for (int a = 0; a < 3; a++) {
        g->a[a] = start[a];
        g->b[a] = start[a] + len * dir[a] / n;
    }
    g->r = radius;
    double end[3] = {g->b[0], g->b[1], g->b[2]}, nd[3] = {dir[0] / n, dir[1] / n, dir[2] / n};
    for (int c = 0; c < 2; c++)
        add_vessel_tree(A, r, end, nd, radius * 0.7, len * 0.75, depth - 1);
}

static void sample_anatomy(lung_anat *A, mk_phantom_rng *r, const mk_phantom_params *p)
{
    memset(A, 0, sizeof *A);
    A->body_a = U(r, 150, 172);
    A->body_b = U(r, 105, 125);
    A->fat = U(r, 8, 20);
    A->muscle = U(r, 10, 16);
    double half_gap = U(r, 30, 45);
    for (int s = 0; s < 2; s++) {
        double sign = s == 0 ? 1.0 : -1.0; /* 0: left lung (+x), 1: right lung */
        A->lung_ax[s][0] = U(r, 52, 64);
        A->lung_ax[s][1] = U(r, 78, 92);
        A->lung_ax[s][2] = U(r, 140, 170);
        A->lung_c[s][0] = sign * (half_gap + A->lung_ax[s][0]);
        A->lung_c[s][1] = U(r, 2, 14);
        A->lung_c[s][2] = U(r, -25, 0);
    }
    A->z_dia = U(r, -110, -85);
    double ib = A->body_b - A->fat - A->muscle;
    A->spine_r = U(r, 15, 19);
    A->spine_c[0] = 0;
    A->spine_c[1] = ib - A->spine_r - 4;
    A->rib_pitch = U(r, 26, 34);
    A->rib_phase = U(r, 0, 6.283185307179586);
    /* vessels: four roots per lung from the hilum */
    for (int s = 0; s < 2; s++) {
        double sign = s == 0 ? 1.0 : -1.0;
        for (int t = 0; t < 4; t++) {
            double st[3] = {sign * (half_gap + 4), A->lung_c[s][1] + U(r, -10, 10),
                            A->lung_c[s][2] + U(r, 0, 40)};
            double d[3] = {sign * 1.0, U(r, -0.8, 0.8), (t - 1.5) * 0.6};
            add_vessel_tree(A, r, st, d, U(r, 4.0, 5.5), U(r, 45, 65), 3);
        }
    }
    /* tumour */
    A->tr = U(r, 18, 32);
    A->hard = mk_phantom_rng_uniform(r) < p->hard_frac;
    int side = mk_phantom_rng_uniform(r) < 0.5 ? 0 : 1;
    double sign = side == 0 ? 1.0 : -1.0;
    const double *c = A->lung_c[side], *ax = A->lung_ax[side];
    for (int tries = 0; tries < 200; tries++) {
        if (A->hard) {
            /* on the medial lung surface, pushed 55 % of a radius into the lung: the tumour
             * then reaches about half a radius into the mediastinum */
            double fy = U(r, -0.35, 0.25), fz = U(r, -0.15, 0.4);
            double q = 1.0 - fy * fy - fz * fz;
            double xs = c[0] - sign * ax[0] * sqrt(q);
            A->tc[0] = xs + sign * 0.55 * A->tr;
            A->tc[1] = c[1] + fy * ax[1];
            A->tc[2] = c[2] + fz * ax[2];
        } else {
            A->tc[0] = c[0] + U(r, -0.6, 0.6) * ax[0];
            A->tc[1] = c[1] + U(r, -0.6, 0.6) * ax[1];
            A->tc[2] = c[2] + U(r, -0.1, 0.5) * ax[2];
        }
        double probe[3] = {A->tc[0], A->tc[1], A->tc[2]};
        double margin = A->hard ? 0 : A->tr + 6;
        if (A->hard)
            probe[0] += sign * 0.4 * A->tr; /* a point well inside the lung */
        if (in_lung_shape(A, side, probe, margin) && fabs(A->tc[2]) < 90)
            break;
    }
    for (int m = 0; m < 4; m++) {
        double u[3], n = 0;
        for (int a = 0; a < 3; a++) {
            u[a] = mk_phantom_rng_normal(r);
            n += u[a] * u[a];
        }
        n = sqrt(n) + 1e-12;
        for (int a = 0; a < 3; a++)
            A->lob_u[m][a] = u[a] / n;
        A->lob_a[m] = U(r, 0.04, 0.12);
        A->lob_f[m] = 2.0 + (double)(mk_phantom_rng_u64(r) % 3);
        A->lob_ph[m] = U(r, 0, 6.283185307179586);
    }
}

static int in_tumour(const lung_anat *A, const double p[3])
{
    double d[3] = {p[0] - A->tc[0], p[1] - A->tc[1], p[2] - A->tc[2]};
    double n = sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
    if (n > A->tr * 1.5)
        return 0;
    if (n < 1e-9)
        return 1;
    double rr = 1.0;
    for (int m = 0; m < 4; m++) {
        double c = (d[0] * A->lob_u[m][0] + d[1] * A->lob_u[m][1] + d[2] * A->lob_u[m][2]) / n;
        rr += A->lob_a[m] * cos(A->lob_f[m] * acos(mk__ph_clamp(c, -1, 1)) + A->lob_ph[m]);
    }
    return n < A->tr * rr;
}

/* Tissue at p; *vfrac receives the vessel occupancy (0..1) for lung voxels. */
static int tissue_at(const lung_anat *A, const double p[3], double h, double *vfrac)
{
    *vfrac = 0;
    double e = ell(p[0], p[1], A->body_a, A->body_b);
    if (e >= 1.0)
        return MK_TISSUE_AIR;
    /* depth below the skin along the ellipse normal, approximated with the mean semi-axis */
    double depth = (1.0 - e) * 0.5 * (A->body_a + A->body_b);
    int t;
    if (depth < A->fat) {
        t = MK_TISSUE_FAT;
    } else if (depth < A->fat + A->muscle) {
        double rel = (depth - A->fat) / A->muscle;
        double ang = atan2(p[1], p[0]);
        double rib = sin(6.283185307179586 * p[2] / A->rib_pitch + A->rib_phase + 0.8 * ang);
        /* ribs do not cross the midline (sternum in front, vertebra behind) */
        t = (rel > 0.25 && rel < 0.8 && rib > 0.55 && fabs(p[0]) > 25) ? MK_TISSUE_BONE
                                                                       : MK_TISSUE_MUSCLE;
    } else {
        double sx = p[0] - A->spine_c[0], sy = p[1] - A->spine_c[1];
        double ib = A->body_b - A->fat - A->muscle;
        if (sqrt(sx * sx + sy * sy) < A->spine_r) {
            t = MK_TISSUE_BONE;
        } else if (fabs(p[0]) < 12 && p[1] < -ib + 10 && p[1] > -ib - 2) {
            t = MK_TISSUE_BONE; /* sternum */
        } else if (in_lung_shape(A, 0, p, 0) || in_lung_shape(A, 1, p, 0)) {
            double best = 0;
            for (int s = 0; s < A->nseg; s++) {
                double d = seg_dist(&A->seg[s], p);
                double f = mk__ph_clamp((A->seg[s].r - d) / h + 0.5, 0, 1);
                if (f > best)
                    best = f;
            }
            *vfrac = best;
            t = best > 0.5 ? MK_TISSUE_VESSEL : MK_TISSUE_LUNG;
        } else {
            t = MK_TISSUE_MEDIASTINUM;
        }
    }
    if ((t == MK_TISSUE_LUNG || t == MK_TISSUE_VESSEL || t == MK_TISSUE_MEDIASTINUM) &&
        in_tumour(A, p)) {
        *vfrac = 0;
        t = MK_TISSUE_TUMOUR;
    }
    return t;
}

mk_status mk__ph_lung(mk_ctx *ctx, const mk_phantom_params *p, mk_phantom_domain dom,
                      mk_phantom_domain render, int index, mk_image **img, mk_image **label,
                      mk_image **tissue, mk_phantom_info *info)
{
    mk_phantom_rng r;
    mk_phantom_rng_seed(&r, p->seed, mk_phantom_case_stream(p->kind, dom, index));
    lung_anat A;
    sample_anatomy(&A, &r, p);

    int n[3] = {p->size[0], p->size[1], p->size[2]};
    /* anatomy, grid and textures come from dom's case stream; contrasts and acquisition from
     * render (the same as dom except for paired renderings) */
    int is_ct = dom == MK_PHANTOM_DOMAIN_CT, out_ct = render == MK_PHANTOM_DOMAIN_CT;
    /* field of view: CT 350 x 350 x 240 mm, MR 360 x 360 x 250 mm (anisotropic voxels) */
    double fov_xy = is_ct ? 350.0 : 360.0, fov_z = is_ct ? 240.0 : 250.0;
    double sp[3] = {fov_xy / n[0], fov_xy / n[1], fov_z / n[2]};
    int flip_ct[3] = {0, 1, 0}, flip_mr[3] = {1, 0, 1};
    double yaw = U(&r, -4, 4) * M_PI / 180, tilt = U(&r, -6, 6) * M_PI / 180;
    double centre[3] = {U(&r, -8, 8), U(&r, -8, 8), U(&r, -10, 10)};

    mk_image *im = NULL, *lab = NULL, *tis = NULL;
    float *sig = NULL, *fine = NULL, *coarse = NULL, *vf = NULL;
    int64_t dims[3] = {n[0], n[1], n[2]};
    mk_status st = mk_image_new(ctx, out_ct ? MK_DT_INT16 : MK_DT_FLOAT32, 3, dims, &im);
    if (st != MK_OK)
        return st;
    mk__ph_set_geometry(im, sp, yaw, tilt, is_ct ? flip_ct : flip_mr, centre);
    if (render == dom)
        snprintf(im->descrip, sizeof im->descrip, "medkd phantom lung %s case %d",
                 mk_phantom_domain_name(dom), index);
    else
        snprintf(im->descrip, sizeof im->descrip, "medkd phantom lung %s case %d as %s",
                 mk_phantom_domain_name(dom), index, mk_phantom_domain_name(render));
    if ((st = mk_image_new_like(ctx, im, MK_DT_UINT8, &lab)) != MK_OK ||
        (st = mk_image_new_like(ctx, im, MK_DT_UINT8, &tis)) != MK_OK)
        goto fail;
    size_t nv = (size_t)n[0] * (size_t)n[1] * (size_t)n[2];
    sig = malloc(nv * sizeof *sig);
    fine = malloc(nv * sizeof *fine);
    coarse = malloc(nv * sizeof *coarse);
    vf = malloc(nv * sizeof *vf);
    if (!sig || !fine || !coarse || !vf) {
        st = mk_err(ctx, MK_ERR_NOMEM, "phantom: out of memory for a %dx%dx%d volume", n[0], n[1],
                    n[2]);
        goto fail;
    }
    /* tissue map */
    uint8_t *T = tis->data, *L = lab->data;
    size_t v = 0;
    int64_t fg = 0;
    for (int k = 0; k < n[2]; k++)
        for (int j = 0; j < n[1]; j++)
            for (int i = 0; i < n[0]; i++, v++) {
                double w[3], f;
                mk__ph_voxel_world(im, i, j, k, w);
                T[v] = (uint8_t)tissue_at(&A, w, sp[0], &f);
                vf[v] = (float)f;
                L[v] = T[v] == MK_TISSUE_TUMOUR;
                fg += L[v];
            }
    /* textures: fine (about one voxel) and coarse (a few voxels) */
    int rf[3] = {1, 1, 0}, rc[3] = {2, 2, 1};
    if ((st = mk__ph_smooth_noise(ctx, &r, n, rf, fine)) != MK_OK ||
        (st = mk__ph_smooth_noise(ctx, &r, n, rc, coarse)) != MK_OK)
        goto fail;
    double base[MK_TISSUE_COUNT] = {0}, tex[MK_TISSUE_COUNT] = {0};
    for (int t = 0; t <= MK_TISSUE_TUMOUR; t++)
        mk__ph_tissue_value(p, render, t, &base[t], &tex[t]);
    for (v = 0; v < nv; v++) {
        int t = T[v];
        /* the tumour's texture is fine-grained (the CT cue); other tissues vary smoothly */
        double tx = t == MK_TISSUE_TUMOUR ? fine[v] : coarse[v];
        double val = base[t] + tex[t] * tx;
        if (t == MK_TISSUE_LUNG || t == MK_TISSUE_VESSEL) {
            double lungv = base[MK_TISSUE_LUNG] + tex[MK_TISSUE_LUNG] * coarse[v];
            val = lungv + vf[v] * (base[MK_TISSUE_VESSEL] - lungv);
        }
        sig[v] = (float)val;
    }
    if ((st = mk__ph_psf_inplane(ctx, sig, n)) != MK_OK)
        goto fail;
    if (out_ct) {
        int16_t *out = im->data;
        double sigma = 18.0 * p->noise;
        for (v = 0; v < nv; v++) {
            double x = sig[v] + sigma * mk_phantom_rng_normal(&r);
            out[v] = (int16_t)lrint(mk__ph_clamp(x, -1024, 3071));
        }
    } else {
        mk__ph_mr_finish(&r, sig, im->data, n, 25.0 * p->noise,
                         mk__ph_clamp(0.2 * p->noise, 0, 0.6));
    }
    info->hard = A.hard;
    info->fg_voxels = fg;
    info->fg_ml = (double)fg * sp[0] * sp[1] * sp[2] / 1000.0;
    info->lesion_radius_mm = A.tr;
    free(sig);
    free(fine);
    free(coarse);
    free(vf);
    *img = im;
    *label = lab;
    if (tissue)
        *tissue = tis;
    else
        mk_image_free(tis);
    return MK_OK;
fail:
    free(sig);
    free(fine);
    free(coarse);
    free(vf);
    mk_image_free(im);
    mk_image_free(lab);
    mk_image_free(tis);
    return st;
}
