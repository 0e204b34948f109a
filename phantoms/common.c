/* Phantom basics: random streams, names, parameters, splits, smooth fields, geometry. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_rng.h"
#include "../io/mk_nifti.h"
#include "phantom_internal.h"

/* ---- random numbers ---- */

uint64_t mk_phantom_splitmix64(uint64_t *state)
{
    return mk_splitmix64(state);
}

void mk_phantom_rng_seed(mk_phantom_rng *r, uint64_t seed, uint64_t stream)
{
    /* Mix the stream key into the seed through one splitmix step so that neighbouring keys
     * do not give overlapping splitmix sequences. */
    uint64_t st = seed;
    uint64_t a = mk_phantom_splitmix64(&st);
    st = a ^ (stream * 0xD1B54A32D192ED03ull);
    for (int i = 0; i < 4; i++)
        r->s[i] = mk_phantom_splitmix64(&st);
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0)
        r->s[0] = 1; /* xoshiro must not start from the all-zero state */
}

uint64_t mk_phantom_rng_u64(mk_phantom_rng *r)
{
    return mk_xoshiro256ss(r->s);
}

double mk_phantom_rng_uniform(mk_phantom_rng *r)
{
    return mk_u64_to_unit(mk_phantom_rng_u64(r));
}

double mk_phantom_rng_normal(mk_phantom_rng *r)
{
    double u1 = mk_phantom_rng_uniform(r), u2 = mk_phantom_rng_uniform(r);
    return mk_box_muller(u1, u2);
}

double mk__ph_fast_normal(mk_phantom_rng *r)
{
    /* Irwin-Hall: the sum of four 16-bit uniforms from one draw, centred and scaled to unit
     * variance (each U(0,1) has variance 1/12). Bounded by +-3.46; for textures and pixel noise. */
    uint64_t x = mk_phantom_rng_u64(r);
    double s = (double)(x & 0xFFFF) + (double)((x >> 16) & 0xFFFF) + (double)((x >> 32) & 0xFFFF) +
               (double)(x >> 48);
    return (s * (1.0 / 65536.0) - 2.0 + 2.0 / 65536.0) * 1.7320508075688772;
}

uint64_t mk_phantom_case_stream(mk_phantom_kind k, mk_phantom_domain d, int index)
{
    return ((uint64_t)(k + 1) << 48) ^ ((uint64_t)(d + 1) << 40) ^ (uint64_t)(uint32_t)index;
}

/* ---- names ---- */

static const char *const TISSUE_NAMES[MK_TISSUE_COUNT] = {
    [MK_TISSUE_AIR] = "air",
    [MK_TISSUE_LUNG] = "lung",
    [MK_TISSUE_VESSEL] = "vessel",
    [MK_TISSUE_FAT] = "fat",
    [MK_TISSUE_MUSCLE] = "muscle",
    [MK_TISSUE_MEDIASTINUM] = "mediastinum",
    [MK_TISSUE_BONE] = "bone",
    [MK_TISSUE_TUMOUR] = "tumour",
    [MK_TISSUE_LV_BLOOD] = "lv_blood",
    [MK_TISSUE_MYO] = "myocardium",
    [MK_TISSUE_RV_BLOOD] = "rv_blood",
    [MK_TISSUE_LIVER] = "liver",
    [MK_TISSUE_GREAT_VESSEL] = "great_vessel",
};
_Static_assert(sizeof TISSUE_NAMES / sizeof TISSUE_NAMES[0] == MK_TISSUE_COUNT, "tissue names");

const char *mk_phantom_tissue_name(int code)
{
    return code >= 0 && code < MK_TISSUE_COUNT ? TISSUE_NAMES[code] : "?";
}

static const char *const KIND_NAMES[MK_PHANTOM_KIND_COUNT] = {"lung", "cardiac", "histo"};
static const char *const DOMAIN_NAMES[MK_PHANTOM_DOMAIN_COUNT] = {"ct", "mr", "siteA", "siteB"};

const char *mk_phantom_kind_name(mk_phantom_kind k)
{
    return (int)k >= 0 && k < MK_PHANTOM_KIND_COUNT ? KIND_NAMES[k] : "?";
}

const char *mk_phantom_domain_name(mk_phantom_domain d)
{
    return (int)d >= 0 && d < MK_PHANTOM_DOMAIN_COUNT ? DOMAIN_NAMES[d] : "?";
}

mk_status mk_phantom_kind_parse(mk_ctx *ctx, const char *s, mk_phantom_kind *out)
{
    for (int k = 0; k < MK_PHANTOM_KIND_COUNT; k++)
        if (strcmp(s, KIND_NAMES[k]) == 0) {
            *out = (mk_phantom_kind)k;
            return MK_OK;
        }
    return mk_err(ctx, MK_ERR_USAGE, "--kind: expected one of lung, cardiac, histo, got '%s'", s);
}

/* ---- intensity tables ----
 * base: noise-free mean of the tissue before bias/blur; tex: amplitude (sd) of the tissue's own
 * smooth texture; lo/hi: stated range of per-case means/medians (see mk_phantom_tissue_range). */
typedef struct tissue_row {
    double base, tex, lo, hi;
} tissue_row;

/* lung CT, HU. Tumour base and range move with contrast (see lung.c). */
static const tissue_row LUNG_CT[MK_TISSUE_COUNT] = {
    [MK_TISSUE_AIR] = {-1000, 0, -1010, -990}, [MK_TISSUE_LUNG] = {-850, 20, -900, -800},
    [MK_TISSUE_VESSEL] = {40, 0, -450, 60},    [MK_TISSUE_FAT] = {-100, 10, -150, -50},
    [MK_TISSUE_MUSCLE] = {50, 4, 30, 60},      [MK_TISSUE_MEDIASTINUM] = {38, 4, 30, 60},
    [MK_TISSUE_BONE] = {700, 120, 400, 1000},  [MK_TISSUE_TUMOUR] = {48, 14, 20, 60},
};
/* lung T2w fat-saturated MR, arbitrary units (0..1000), before the multiplicative bias field. */
static const tissue_row LUNG_MR[MK_TISSUE_COUNT] = {
    [MK_TISSUE_AIR] = {0, 0, 0, 80},          [MK_TISSUE_LUNG] = {50, 10, 20, 140},
    [MK_TISSUE_VESSEL] = {60, 0, 20, 160},    [MK_TISSUE_FAT] = {150, 15, 80, 260},
    [MK_TISSUE_MUSCLE] = {230, 15, 150, 350}, [MK_TISSUE_MEDIASTINUM] = {280, 20, 180, 400},
    [MK_TISSUE_BONE] = {260, 40, 100, 450},   [MK_TISSUE_TUMOUR] = {800, 40, 600, 1000},
};
/* cardiac bSSFP cine MR, arbitrary units. */
static const tissue_row CARD_MR[MK_TISSUE_COUNT] = {
    [MK_TISSUE_AIR] = {0, 0, 0, 80},         [MK_TISSUE_LUNG] = {60, 10, 20, 160},
    [MK_TISSUE_FAT] = {700, 30, 500, 900},   [MK_TISSUE_MUSCLE] = {250, 15, 150, 350},
    [MK_TISSUE_BONE] = {400, 50, 200, 600},  [MK_TISSUE_LV_BLOOD] = {850, 25, 650, 1000},
    [MK_TISSUE_MYO] = {250, 15, 150, 350},   [MK_TISSUE_RV_BLOOD] = {800, 25, 600, 1000},
    [MK_TISSUE_LIVER] = {380, 20, 250, 500}, [MK_TISSUE_GREAT_VESSEL] = {820, 25, 600, 1000},
};
/* cardiac contrast-enhanced CT at full domain shift, HU. */
static const tissue_row CARD_CT[MK_TISSUE_COUNT] = {
    [MK_TISSUE_AIR] = {-1000, 0, -1010, -990}, [MK_TISSUE_LUNG] = {-850, 20, -900, -780},
    [MK_TISSUE_FAT] = {-100, 10, -150, -50},   [MK_TISSUE_MUSCLE] = {50, 5, 30, 70},
    [MK_TISSUE_BONE] = {700, 120, 400, 1000},  [MK_TISSUE_LV_BLOOD] = {350, 15, 250, 450},
    [MK_TISSUE_MYO] = {120, 8, 80, 160},       [MK_TISSUE_RV_BLOOD] = {290, 15, 200, 400},
    [MK_TISSUE_LIVER] = {80, 6, 50, 110},      [MK_TISSUE_GREAT_VESSEL] = {350, 15, 250, 450},
};

/* Affine map of MR units to HU used at shift 0 (the CT domain is then a rescaled MR). */
static double mr_to_hu(double v)
{
    return -1000.0 + 1.4 * v;
}

static const tissue_row *table_for(mk_phantom_kind k, mk_phantom_domain d)
{
    if (k == MK_PHANTOM_LUNG)
        return d == MK_PHANTOM_DOMAIN_CT ? LUNG_CT : d == MK_PHANTOM_DOMAIN_MR ? LUNG_MR : NULL;
    if (k == MK_PHANTOM_CARDIAC)
        return d == MK_PHANTOM_DOMAIN_CT ? CARD_CT : d == MK_PHANTOM_DOMAIN_MR ? CARD_MR : NULL;
    return NULL;
}

void mk__ph_tissue_value(const mk_phantom_params *p, mk_phantom_domain d, int t, double *base,
                         double *tex)
{
    const tissue_row *tab = table_for(p->kind, d);
    MK_ASSERT(tab && t >= 0 && t < MK_TISSUE_COUNT);
    *base = tab[t].base;
    *tex = tab[t].tex;
    if (p->kind == MK_PHANTOM_LUNG && d == MK_PHANTOM_DOMAIN_CT && t == MK_TISSUE_TUMOUR)
        *base = LUNG_CT[MK_TISSUE_MEDIASTINUM].base + 10.0 * p->contrast;
    if (p->kind == MK_PHANTOM_CARDIAC && d == MK_PHANTOM_DOMAIN_CT) {
        double s = p->shift;
        *base = (1.0 - s) * mr_to_hu(CARD_MR[t].base) + s * CARD_CT[t].base;
        *tex = (1.0 - s) * 1.4 * CARD_MR[t].tex + s * CARD_CT[t].tex;
    }
}

int mk_phantom_tissue_range(const mk_phantom_params *p, mk_phantom_domain d, int t, double *lo,
                            double *hi)
{
    const tissue_row *tab = table_for(p->kind, d);
    if (!tab || t < 0 || t >= MK_TISSUE_COUNT || (tab[t].lo == 0 && tab[t].hi == 0))
        return 0;
    *lo = tab[t].lo;
    *hi = tab[t].hi;
    if (p->kind == MK_PHANTOM_LUNG && d == MK_PHANTOM_DOMAIN_CT && t == MK_TISSUE_TUMOUR) {
        *lo += 10.0 * (p->contrast - 1.0);
        *hi += 10.0 * (p->contrast - 1.0);
    }
    if (p->kind == MK_PHANTOM_CARDIAC && d == MK_PHANTOM_DOMAIN_CT) {
        double s = p->shift;
        *lo = (1.0 - s) * mr_to_hu(CARD_MR[t].lo) + s * tab[t].lo;
        *hi = (1.0 - s) * mr_to_hu(CARD_MR[t].hi) + s * tab[t].hi;
    }
    return 1;
}

/* ---- parameters ---- */

void mk_phantom_params_default(mk_phantom_params *p, mk_phantom_kind kind)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->seed = 1;
    p->contrast = 1.0;
    p->noise = 1.0;
    p->shift = 1.0;
    p->labelled = 1.0;
    p->hard_frac = 0.5;
    p->tile = 128;
    p->patch = 64;
    switch (kind) {
    case MK_PHANTOM_LUNG:
        p->cases = 12;
        p->size[0] = 64, p->size[1] = 64, p->size[2] = 24;
        break;
    case MK_PHANTOM_CARDIAC:
        p->cases = 12;
        p->size[0] = 64, p->size[1] = 64, p->size[2] = 10;
        break;
    default:
        p->cases = 4;
        p->size[0] = 1024, p->size[1] = 1024, p->size[2] = 1;
        break;
    }
}

mk_status mk_phantom_params_check(mk_ctx *ctx, const mk_phantom_params *p)
{
    if ((int)p->kind < 0 || p->kind >= MK_PHANTOM_KIND_COUNT)
        return mk_err(ctx, MK_ERR_INVALID, "phantom: kind: expected lung, cardiac or histo");
    if (p->cases < 1 || p->cases > 100000)
        return mk_err(ctx, MK_ERR_INVALID, "phantom: cases: expected 1..100000, got %d", p->cases);
    if (p->paired != 0 && p->paired != 1)
        return mk_err(ctx, MK_ERR_INVALID, "phantom: paired: expected 0 or 1, got %d", p->paired);
    if (p->paired && p->kind != MK_PHANTOM_LUNG)
        return mk_err(ctx, MK_ERR_INVALID,
                      "phantom: paired: paired renderings exist for the lung "
                      "kind only, got %s",
                      mk_phantom_kind_name(p->kind));
    if (p->kind == MK_PHANTOM_HISTO) {
        for (int a = 0; a < 2; a++)
            if (p->size[a] < 256 || p->size[a] > 65536)
                return mk_err(ctx, MK_ERR_INVALID,
                              "phantom: size[%d]: expected 256..65536 pixels for histo, got %d", a,
                              p->size[a]);
        if (p->tile < 16 || p->tile > 4096 || p->tile % 16)
            return mk_err(ctx, MK_ERR_INVALID,
                          "phantom: tile: expected a multiple of 16 in 16..4096, got %d", p->tile);
        if (p->patch < 8 || p->patch > p->size[0] || p->patch > p->size[1])
            return mk_err(ctx, MK_ERR_INVALID, "phantom: patch: expected 8..slide size, got %d",
                          p->patch);
    } else {
        static const int lo[3] = {16, 16, 4};
        for (int a = 0; a < 3; a++)
            if (p->size[a] < lo[a] || p->size[a] > 1024)
                return mk_err(ctx, MK_ERR_INVALID,
                              "phantom: size[%d]: expected %d..1024 voxels, got %d", a, lo[a],
                              p->size[a]);
    }
    struct {
        const char *name;
        double v, lo, hi;
    } k[] = {{"contrast", p->contrast, 0, 10},
             {"noise", p->noise, 0, 10},
             {"shift", p->shift, 0, 1},
             {"labelled", p->labelled, 0, 1},
             {"hard_frac", p->hard_frac, 0, 1}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (!(k[i].v >= k[i].lo && k[i].v <= k[i].hi))
            return mk_err(ctx, MK_ERR_INVALID, "phantom: %s: expected %g..%g, got %g", k[i].name,
                          k[i].lo, k[i].hi, k[i].v);
    return MK_OK;
}

/* ---- splits ---- */

const char *mk_phantom_split(int index)
{
    int m = index % 5;
    return m == 3 ? "val" : m == 4 ? "test" : "train";
}

int mk_phantom_is_labelled(int index, double f)
{
    if (strcmp(mk_phantom_split(index), "train") != 0)
        return 1;
    int k = (index / 5) * 3 + index % 5; /* ordinal among training cases */
    /* small epsilon so that f = 0.5 labels exactly every second case despite rounding */
    return floor((k + 1) * f + 1e-9) > floor(k * f + 1e-9);
}

/* ---- smooth fields ---- */

static void box_line(float *f, size_t n, size_t stride, int r, float *tmp)
{
    for (size_t i = 0; i < n; i++)
        tmp[i] = f[i * stride];
    /* running sum with clamped (replicated) borders */
    double sum = 0;
    for (int d = -r; d <= r; d++) {
        long q = d < 0 ? 0 : (d >= (long)n ? (long)n - 1 : d);
        sum += tmp[q];
    }
    double inv = 1.0 / (2 * r + 1);
    for (size_t i = 0; i < n; i++) {
        f[i * stride] = (float)(sum * inv);
        long out = (long)i - r, in = (long)i + r + 1;
        if (out < 0)
            out = 0;
        if (in >= (long)n)
            in = (long)n - 1;
        sum += tmp[in] - tmp[out];
    }
}

mk_status mk__ph_blur(mk_ctx *ctx, float *f, const int n[3], const int rad[3])
{
    size_t nmax = (size_t)(n[0] > n[1] ? (n[0] > n[2] ? n[0] : n[2]) : (n[1] > n[2] ? n[1] : n[2]));
    float *tmp = malloc(nmax * sizeof *tmp);
    if (!tmp)
        return mk_err(ctx, MK_ERR_NOMEM, "phantom: out of memory (blur line of %zu)", nmax);
    size_t sx = 1, sy = (size_t)n[0], sz = (size_t)n[0] * (size_t)n[1];
    for (int pass = 0; pass < 3; pass++) {
        if (rad[0] > 0)
            for (int k = 0; k < n[2]; k++)
                for (int j = 0; j < n[1]; j++)
                    box_line(f + k * sz + j * sy, (size_t)n[0], sx, rad[0], tmp);
        if (rad[1] > 0)
            for (int k = 0; k < n[2]; k++)
                for (int i = 0; i < n[0]; i++)
                    box_line(f + k * sz + (size_t)i, (size_t)n[1], sy, rad[1], tmp);
        if (rad[2] > 0)
            for (int j = 0; j < n[1]; j++)
                for (int i = 0; i < n[0]; i++)
                    box_line(f + j * sy + (size_t)i, (size_t)n[2], sz, rad[2], tmp);
    }
    free(tmp);
    return MK_OK;
}

mk_status mk__ph_smooth_noise(mk_ctx *ctx, mk_phantom_rng *r, const int n[3], const int rad[3],
                              float *f)
{
    size_t nv = (size_t)n[0] * (size_t)n[1] * (size_t)n[2];
    for (size_t v = 0; v < nv; v++)
        f[v] = (float)mk__ph_fast_normal(r);
    mk_status st = mk__ph_blur(ctx, f, n, rad);
    if (st != MK_OK)
        return st;
    double s1 = 0, s2 = 0;
    for (size_t v = 0; v < nv; v++)
        s1 += f[v], s2 += (double)f[v] * f[v];
    double mean = s1 / (double)nv, var = s2 / (double)nv - mean * mean;
    double inv = var > 1e-20 ? 1.0 / sqrt(var) : 0.0;
    for (size_t v = 0; v < nv; v++)
        f[v] = (float)((f[v] - mean) * inv);
    return MK_OK;
}

/* ---- geometry ---- */

void mk__ph_set_geometry(mk_image *img, const double spacing[3], double yaw, double tilt,
                         const int flip[3], const double centre[3])
{
    /* R = Rz(yaw) * Rx(tilt); columns are the axis directions in LPS, then flipped. */
    double cz = cos(yaw), sz = sin(yaw), cx = cos(tilt), sx = sin(tilt);
    double R[9] = {cz, -sz * cx, sz * sx,  /* row 0 */
                   sz, cz * cx,  -cz * sx, /* row 1 */
                   0,  sx,       cx};
    mk_geom *g = &img->geom;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++)
            g->direction[r * 3 + c] = R[r * 3 + c] * (flip[c] ? -1.0 : 1.0);
    for (int a = 0; a < 3; a++)
        g->spacing[a] = spacing[a];
    g->tr = 0;
    /* origin so that the grid centre maps to `centre` */
    double half[3];
    for (int a = 0; a < 3; a++)
        half[a] = 0.5 * (double)(img->dim[a] - 1) * spacing[a];
    for (int r = 0; r < 3; r++) {
        double o = centre[r];
        for (int c = 0; c < 3; c++)
            o -= g->direction[r * 3 + c] * half[c];
        g->origin[r] = o;
    }
    /* NIfTI header fields describing the same geometry (RAS): qform code 1 (scanner),
     * sform code 2 (aligned), both the same affine */
    mk_nifti_meta_from_geom(g, 1, 2, &img->nifti);
}

void mk__ph_voxel_world(const mk_image *img, int i, int j, int k, double p[3])
{
    const mk_geom *g = &img->geom;
    double v[3] = {i * g->spacing[0], j * g->spacing[1], k * g->spacing[2]};
    for (int r = 0; r < 3; r++)
        p[r] = g->origin[r] + g->direction[r * 3] * v[0] + g->direction[r * 3 + 1] * v[1] +
               g->direction[r * 3 + 2] * v[2];
}

/* ---- dispatch ---- */

mk_status mk_phantom_volume(mk_ctx *ctx, const mk_phantom_params *p, mk_phantom_domain dom,
                            int index, mk_image **img, mk_image **label, mk_image **tissue,
                            mk_phantom_info *info)
{
    *img = NULL;
    *label = NULL;
    if (tissue)
        *tissue = NULL;
    mk_status st = mk_phantom_params_check(ctx, p);
    if (st != MK_OK)
        return st;
    if (index < 0)
        return mk_err(ctx, MK_ERR_INVALID, "phantom: case index must be >= 0, got %d", index);
    if (dom != MK_PHANTOM_DOMAIN_CT && dom != MK_PHANTOM_DOMAIN_MR)
        return mk_err(ctx, MK_ERR_INVALID, "phantom: %s volumes have domains ct and mr, got %s",
                      mk_phantom_kind_name(p->kind), mk_phantom_domain_name(dom));
    mk_phantom_info tmp;
    if (!info)
        info = &tmp;
    memset(info, 0, sizeof *info);
    switch (p->kind) {
    case MK_PHANTOM_LUNG: return mk__ph_lung(ctx, p, dom, dom, index, img, label, tissue, info);
    case MK_PHANTOM_CARDIAC: return mk__ph_cardiac(ctx, p, dom, index, img, label, tissue, info);
    default: return mk_err(ctx, MK_ERR_INVALID, "phantom: kind histo makes slides, not volumes");
    }
}

/* ---- shared rendering steps ---- */

mk_status mk__ph_psf_inplane(mk_ctx *ctx, float *f, const int n[3])
{
    /* separable [1 2 1]/4 along i and j: a mild in-plane point-spread function */
    size_t nx = (size_t)n[0], ny = (size_t)n[1], nz = (size_t)n[2];
    size_t nmax = nx > ny ? nx : ny;
    float *t = malloc(nmax * sizeof *t);
    if (!t)
        return mk_err(ctx, MK_ERR_NOMEM, "phantom: out of memory (psf)");
    for (size_t k = 0; k < nz; k++) {
        float *sl = f + k * nx * ny;
        for (size_t j = 0; j < ny; j++) {
            float *row = sl + j * nx;
            memcpy(t, row, nx * sizeof *t);
            for (size_t i = 0; i < nx; i++) {
                float a = t[i > 0 ? i - 1 : 0], b = t[i + 1 < nx ? i + 1 : nx - 1];
                row[i] = 0.25f * a + 0.5f * t[i] + 0.25f * b;
            }
        }
        for (size_t i = 0; i < nx; i++) {
            for (size_t j = 0; j < ny; j++)
                t[j] = sl[j * nx + i];
            for (size_t j = 0; j < ny; j++) {
                float a = t[j > 0 ? j - 1 : 0], b = t[j + 1 < ny ? j + 1 : ny - 1];
                sl[j * nx + i] = 0.25f * a + 0.5f * t[j] + 0.25f * b;
            }
        }
    }
    free(t);
    return MK_OK;
}

void mk__ph_bias_coeffs(mk_phantom_rng *r, double c[10])
{
    for (int q = 0; q < 10; q++)
        c[q] = mk_phantom_rng_normal(r) * (q < 4 ? 0.5 : 0.25);
}

double mk__ph_bias_factor(const double c[10], double amp, double u, double v, double w)
{
    /* smooth multiplicative field from a quadratic polynomial in normalised voxel coordinates
     * u,v,w in [-1,1]; exp of the polynomial, limited to [1-amp, 1+amp] by tanh */
    double s = c[0] * 0.2 + c[1] * u + c[2] * v + c[3] * w + c[4] * u * u + c[5] * v * v +
               c[6] * w * w + c[7] * u * v + c[8] * v * w + c[9] * u * w;
    return 1.0 + amp * tanh(0.6 * s);
}

void mk__ph_mr_finish(mk_phantom_rng *r, const float *sig, float *out, const int n[3], double sigma,
                      double bias_amp)
{
    double c[10];
    mk__ph_bias_coeffs(r, c);
    size_t v = 0;
    for (int k = 0; k < n[2]; k++)
        for (int j = 0; j < n[1]; j++)
            for (int i = 0; i < n[0]; i++, v++) {
                double u = n[0] > 1 ? 2.0 * i / (n[0] - 1) - 1 : 0;
                double vv = n[1] > 1 ? 2.0 * j / (n[1] - 1) - 1 : 0;
                double w = n[2] > 1 ? 2.0 * k / (n[2] - 1) - 1 : 0;
                double s = sig[v] * mk__ph_bias_factor(c, bias_amp, u, vv, w);
                /* Rician: magnitude of a complex signal with Gaussian noise on both channels */
                double re = s + sigma * mk_phantom_rng_normal(r);
                double im = sigma * mk_phantom_rng_normal(r);
                out[v] = (float)sqrt(re * re + im * im);
            }
}

mk_status mk_phantom_volume_paired(mk_ctx *ctx, const mk_phantom_params *p, mk_phantom_domain dom,
                                   mk_phantom_domain render, int index, mk_image **img)
{
    *img = NULL;
    mk_status st = mk_phantom_params_check(ctx, p);
    if (st != MK_OK)
        return st;
    if (p->kind != MK_PHANTOM_LUNG)
        return mk_err(ctx, MK_ERR_UNSUPPORTED,
                      "phantom: paired renderings exist for the lung "
                      "kind only, got %s",
                      mk_phantom_kind_name(p->kind));
    if (index < 0)
        return mk_err(ctx, MK_ERR_INVALID, "phantom: case index must be >= 0, got %d", index);
    for (int k = 0; k < 2; k++) {
        mk_phantom_domain d = k ? render : dom;
        if (d != MK_PHANTOM_DOMAIN_CT && d != MK_PHANTOM_DOMAIN_MR)
            return mk_err(ctx, MK_ERR_INVALID,
                          "phantom: lung volumes have domains ct and mr, "
                          "got %s",
                          mk_phantom_domain_name(d));
    }
    mk_phantom_info info;
    mk_image *lab = NULL;
    st = mk__ph_lung(ctx, p, dom, render, index, img, &lab, NULL, &info);
    mk_image_free(lab);
    return st;
}
