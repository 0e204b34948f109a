/* Internal helpers shared by the phantom generators (not installed, not public API). */
#ifndef MK_PHANTOM_INTERNAL_H
#define MK_PHANTOM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "mk_phantoms.h"

/* Approximately standard normal (Irwin-Hall of four 16-bit uniforms, one draw), bounded. */
double mk__ph_fast_normal(mk_phantom_rng *r);

/* Smooth random field: white normal noise blurred by `passes` box filters of half-width r
 * (voxels, per axis), then scaled to unit standard deviation. f has n[0]*n[1]*n[2] floats. */
mk_status mk__ph_smooth_noise(mk_ctx *ctx, mk_phantom_rng *r, const int n[3], const int rad[3],
                              float *f);
/* In-place separable box blur (3 passes of half-width rad[a] along each axis a; 0 skips). */
mk_status mk__ph_blur(mk_ctx *ctx, float *f, const int n[3], const int rad[3]);

/* Geometry of a generated volume: LPS direction from a rotation about z by `yaw` and about x by
 * `tilt` (radians) followed by optional axis flips; origin chosen so the grid centre maps to
 * `centre` (LPS mm). Also fills the NIfTI qform/sform (RAS) with codes 1 (scanner) and 2
 * (aligned). */
void mk__ph_set_geometry(mk_image *img, const double spacing[3], double yaw, double tilt,
                         const int flip[3], const double centre[3]);
/* World (LPS mm) position of voxel (i,j,k). */
void mk__ph_voxel_world(const mk_image *img, int i, int j, int k, double p[3]);

/* In-place mild in-plane point-spread function ([1 2 1]/4 along i and j). */
mk_status mk__ph_psf_inplane(mk_ctx *ctx, float *f, const int n[3]);
/* MR acquisition: out = Rician(sig * bias), bias a smooth field within [1-bias_amp, 1+bias_amp],
 * sigma the noise sd per channel. Draws from r. */
void mk__ph_mr_finish(mk_phantom_rng *r, const float *sig, float *out, const int n[3], double sigma,
                      double bias_amp);
void mk__ph_bias_coeffs(mk_phantom_rng *r, double c[10]);
double mk__ph_bias_factor(const double c[10], double amp, double u, double v, double w);

/* Per-kind generators behind mk_phantom_volume. */
/* lung: render != dom draws case `index` of dom (anatomy, grid, textures) with render's
 * contrasts and acquisition (a paired rendering); render == dom is the ordinary case. */
mk_status mk__ph_lung(mk_ctx *ctx, const mk_phantom_params *p, mk_phantom_domain dom,
                      mk_phantom_domain render, int index, mk_image **img, mk_image **label,
                      mk_image **tissue, mk_phantom_info *info);
mk_status mk__ph_cardiac(mk_ctx *ctx, const mk_phantom_params *p, mk_phantom_domain dom, int index,
                         mk_image **img, mk_image **label, mk_image **tissue,
                         mk_phantom_info *info);

/* Noise-free base value and texture amplitude of tissue t in domain d for the params. */
void mk__ph_tissue_value(const mk_phantom_params *p, mk_phantom_domain d, int t, double *base,
                         double *tex);

static inline double mk__ph_clamp(double x, double lo, double hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

#endif
