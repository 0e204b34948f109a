/* Metric library tests against hand-derived values (docs/metrics.md tolerances: dice 1e-12 abs,
 * volumes 1e-9 rel, distances 1e-6 rel+abs, surface Dice 1e-9 abs). Every expected number below is
 * derived in the comment next to it from the geometry of the case, not taken from the code. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../metrics/mk_metrics.h"

#define S2 1.4142135623730951
#define S3 1.7320508075688772

static void near_dist(double got, double want, const char *what)
{
    if (isinf(want) && isinf(got) && (want > 0) == (got > 0))
        return;
    if (isnan(want) && isnan(got))
        return;
    double tol = 1e-6 * (1.0 + fabs(want));
    if (!(fabs(got - want) <= tol)) {
        print_error("%s: got %.17g want %.17g\n", what, got, want);
        fail();
    }
}

static void near_abs(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol)) {
        print_error("%s: got %.17g want %.17g\n", what, got, want);
        fail();
    }
}

/* uint8 volume helper */
typedef struct vol8 {
    int64_t d[3];
    uint8_t *v;
} vol8;

static vol8 v8(int64_t x, int64_t y, int64_t z)
{
    vol8 r = {{x, y, z}, calloc((size_t)(x * y * z), 1)};
    assert_non_null(r.v);
    return r;
}

static void box8(vol8 *a, int64_t x0, int64_t y0, int64_t z0, int64_t nx, int64_t ny, int64_t nz,
                 uint8_t val)
{
    for (int64_t z = z0; z < z0 + nz; z++)
        for (int64_t y = y0; y < y0 + ny; y++)
            for (int64_t x = x0; x < x0 + nx; x++)
                a->v[x + a->d[0] * (y + a->d[1] * z)] = val;
}

static mk_metric_vol mv(const vol8 *a, const double sp[3], const char *name)
{
    mk_metric_vol m;
    memset(&m, 0, sizeof m);
    m.type = MK_METRIC_U8;
    m.data = a->v;
    for (int k = 0; k < 3; k++) {
        m.dim[k] = a->d[k];
        m.spacing[k] = sp[k];
    }
    m.name = name;
    return m;
}

static mk_metric_result eval1(const vol8 *p, const vol8 *r, const double sp[3], int64_t label,
                              mk_metric_conv c, double tol)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_metric_vol mp = mv(p, sp, "pred"), mr = mv(r, sp, "ref");
    mk_metric_opts o;
    mk_metric_opts_default(&o);
    o.convention = c;
    o.tolerance_mm = tol;
    mk_metric_result res;
    mk_status st = mk_metric_eval(&ctx, &mp, &mr, &label, 1, &o, &res);
    if (st != MK_OK)
        print_error("%s\n", mk_ctx_errmsg(&ctx));
    assert_int_equal(st, MK_OK);
    return res;
}

/* ---------------------------------------------------------------- surfel table */

static void test_surfel_table(void **state)
{
    (void)state;
    const double sp[3] = {0.7, 1.3, 2.9};
    const double a = sp[0], b = sp[1], c = sp[2];
    double t[256];
    mk_metric_surfel_areas_3d(sp, t);
    /* one corner voxel: triangle through 3 edge midpoints, area vector (1/8)(1,1,1) in index
     * space, scaled to (bc, ac, ab)/8 */
    double corner = sqrt(b * c * b * c + a * c * a * c + a * b * a * b) / 8.0;
    for (int k = 0; k < 8; k++)
        near_abs(t[1 << k], corner, 1e-15, "single corner");
    /* two voxels along axis 0 (bits 0,1): a quad with sides a and sqrt(b^2+c^2)/2 */
    near_abs(t[3], a * 0.5 * sqrt(b * b + c * c), 1e-15, "edge pair axis 0");
    /* four voxels of the face dz=0 (bits 0..3): the plane z=1/2 across the cell, area a*b */
    near_abs(t[15], a * b, 1e-15, "face");
    near_abs(t[0xf0], a * b, 1e-15, "face (top)");
    /* L of 3 voxels (0,0,0),(1,0,0),(0,1,0) = bits 0,1,2: triangle in the plane z=1/2 (legs of 1,
     * area ab/2) plus the planar quad in x+y+z=3/2 with area vector (3/8)(1,1,1) */
    double quad = 0.375 * sqrt(b * c * b * c + a * c * a * c + a * b * a * b);
    near_abs(t[7], 0.5 * a * b + quad, 1e-14, "L pentagon");
    /* complement symmetry: 5..7 voxels take their background's surface */
    for (int code = 1; code < 255; code++)
        if (__builtin_popcount((unsigned)code) <= 3)
            near_abs(t[255 - code], t[code], 1e-14, "complement");
    /* star of 4 (corner 0 and its 3 neighbours, bits 0,1,2,4): planar regular hexagon
     * x+y+z = 3/2, area vector 2*(3/8)(1,1,1)... = (3/4)(1,1,1)*(1/2)*... derive: hexagon side
     * sqrt(2)/2, area 3*sqrt(3)/2*(1/2) = 3*sqrt(3)/4 iso; as a vector (3/4)(1,1,1)/sqrt(3)*sqrt(3)
     * -> (3/4)/sqrt(3)*sqrt(3)... keep iso check: */
    const double iso[3] = {1, 1, 1};
    double ti[256];
    mk_metric_surfel_areas_3d(iso, ti);
    near_abs(ti[1 + 2 + 4 + 16], 3.0 * S3 / 4.0, 1e-14, "star hexagon");
    near_abs(ti[1], S3 / 8.0, 1e-15, "iso corner");
    near_abs(ti[1 + 8], 2 * S3 / 8.0, 1e-15,
             "two opposite corners of a face diagonal are separate");
    /* zig-zag of 4: Lorensen's split is a quad of area sqrt(3)/2 in plane normal (1,1,1) plus two
     * triangles of area sqrt(2)/4: total sqrt(3)/2 + sqrt(2)/2; bits 0,1,3,7 = (0,0,0),(1,0,0),
     * (1,1,0),(1,1,1) */
    near_abs(ti[1 + 2 + 8 + 128], S3 / 2.0 + S2 / 2.0, 1e-14, "zig-zag hexagon");
}

static void test_contour_table(void **state)
{
    (void)state;
    const double sp[2] = {0.6, 1.7};
    double t[16];
    mk_metric_contour_lengths_2d(sp, t);
    double diag = 0.5 * sqrt(sp[0] * sp[0] + sp[1] * sp[1]);
    near_abs(t[0], 0, 0, "empty");
    near_abs(t[15], 0, 0, "full");
    near_abs(t[1], diag, 1e-15, "corner");
    near_abs(t[14], diag, 1e-15, "3 corners");
    near_abs(t[3], sp[0], 1e-15, "pair along axis 0 -> segment along axis 0");
    near_abs(t[5], sp[1], 1e-15, "pair along axis 1");
    near_abs(t[6], 2 * diag, 1e-15, "diagonal pair");
    near_abs(t[9], 2 * diag, 1e-15, "other diagonal pair");
}

/* ---------------------------------------------------------------- EDT */

static void test_edt_bruteforce(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    const int64_t d[3] = {13, 7, 9};
    const double sp[3] = {0.8, 1.1, 2.5};
    int64_t n = d[0] * d[1] * d[2];
    double *f = malloc((size_t)n * sizeof *f);
    uint8_t *feat = calloc((size_t)n, 1);
    assert_non_null(f);
    srand(7);
    for (int64_t i = 0; i < n; i++)
        feat[i] = (rand() % 53) == 0;
    for (int64_t i = 0; i < n; i++)
        f[i] = feat[i] ? 0.0 : INFINITY;
    assert_int_equal(mk_metric_edt_sq(&ctx, f, d, sp), MK_OK);
    for (int64_t z = 0; z < d[2]; z++)
        for (int64_t y = 0; y < d[1]; y++)
            for (int64_t x = 0; x < d[0]; x++) {
                double best = INFINITY;
                for (int64_t i = 0; i < n; i++)
                    if (feat[i]) {
                        double dx = (double)(x - i % d[0]) * sp[0];
                        double dy = (double)(y - (i / d[0]) % d[1]) * sp[1];
                        double dz = (double)(z - i / (d[0] * d[1])) * sp[2];
                        double q = dx * dx + dy * dy + dz * dz;
                        if (q < best)
                            best = q;
                    }
                near_abs(f[x + d[0] * (y + d[1] * z)], best, 1e-9, "edt");
            }
    /* no feature at all: +inf everywhere */
    for (int64_t i = 0; i < n; i++)
        f[i] = INFINITY;
    assert_int_equal(mk_metric_edt_sq(&ctx, f, d, sp), MK_OK);
    for (int64_t i = 0; i < n; i++)
        assert_true(isinf(f[i]));
    free(f);
    free(feat);
}

/* ---------------------------------------------------------------- metric cases */

/* Single voxel vs the same voxel shifted by k along axis `ax`. Each surface is the 8 corners of
 * one voxel, all with the same surfel area (single-corner codes). Pred corners sit at axis
 * coordinates {v, v+1}, ref at {v+k, v+k+1}: 4 at (k-1)*s and 4 at k*s in each direction.
 * hd = hd95 = k*s; assd = masd = (k-1/2)*s; surface Dice = 1/2 if (k-1)s <= tol < ks. */
static void single_voxel_case(int ax, int k, const double sp[3], int at_border)
{
    vol8 p = v8(6, 7, 8), r = v8(6, 7, 8);
    int64_t o[3] = {at_border ? 0 : 1, at_border ? 0 : 2, at_border ? 0 : 1};
    box8(&p, o[0], o[1], o[2], 1, 1, 1, 1);
    o[ax] += k;
    box8(&r, o[0], o[1], o[2], 1, 1, 1, 1);
    double s = sp[ax];
    for (int c = 0; c < 2; c++) {
        mk_metric_result m = eval1(&p, &r, sp, 1, MK_METRIC_DEEPMIND, (k - 1) * s + 1e-9);
        if (c == 1)
            m = eval1(&p, &r, sp, 1, MK_METRIC_DEEPMIND, k * s + 1e-9);
        near_abs(m.dice, 0.0, 1e-12, "dice");
        near_abs(m.jaccard, 0.0, 1e-12, "jaccard");
        near_dist(m.hd, k * s, "hd");
        near_dist(m.hd95, k * s, "hd95");
        near_dist(m.assd, (k - 0.5) * s, "assd");
        near_dist(m.masd, (k - 0.5) * s, "masd");
        near_abs(m.surface_dice, c == 0 ? 0.5 : 1.0, 1e-9, "surface dice");
        assert_int_equal(m.empty, MK_METRIC_EMPTY_NONE);
        assert_int_equal(m.voxels_pred, 1);
        near_abs(m.volume_ref_ml, sp[0] * sp[1] * sp[2] / 1000.0, 1e-15, "volume");
    }
    /* medpy: one surface voxel each, distance k*s between centres */
    mk_metric_result m = eval1(&p, &r, sp, 1, MK_METRIC_MEDPY, 0.5 * s);
    near_dist(m.hd, k * s, "medpy hd");
    near_dist(m.hd95, k * s, "medpy hd95");
    near_dist(m.assd, k * s, "medpy assd");
    near_abs(m.surface_dice, 0.0, 1e-9, "medpy sd");
    free(p.v);
    free(r.v);
}

static void test_single_voxels(void **state)
{
    (void)state;
    const double iso[3] = {1, 1, 1}, an[3] = {0.7, 1.3, 2.9};
    single_voxel_case(0, 1, iso, 0);
    single_voxel_case(0, 3, iso, 0);
    single_voxel_case(2, 1, an, 0);
    single_voxel_case(1, 2, an, 0);
    single_voxel_case(0, 2, an, 1); /* touches the image border */
    single_voxel_case(2, 4, an, 1);
}

/* Cube of 3^3 voxels centred in a cube of 5^3 (spacing 1), pred = small, ref = big.
 * deepmind: pred border corners (56) are all at distance 1 from the ref surface; pred area
 * A_p = 24*1 (face corners) + 24*sqrt2/2 (edges) + 8*sqrt3/8 (corners) = 24 + 12 sqrt2 + sqrt3.
 * Ref corners: 96 face corners (area 1, d 1), 48 edge corners (area sqrt2/2, d sqrt2), 8 cube
 * corners (area sqrt3/8, d sqrt3): A_r = 96 + 24 sqrt2 + sqrt3, sum d*a = 96 + 48 + 3 = 147.
 * Cumulative ref fraction after d=1 is 96/A_r = 0.73 < 0.95, after sqrt2 0.987 -> hd95 sqrt2.
 * medpy: pred surface voxels 26 (d 1); ref 98 = 54 (d 1) + 36 (d sqrt2) + 8 (d sqrt3). */
static void test_nested_cubes(void **state)
{
    (void)state;
    const double sp[3] = {1, 1, 1};
    vol8 p = v8(9, 9, 9), r = v8(9, 9, 9);
    box8(&r, 2, 2, 2, 5, 5, 5, 1);
    box8(&p, 3, 3, 3, 3, 3, 3, 1);
    double Ap = 24 + 12 * S2 + S3, Ar = 96 + 24 * S2 + S3;
    mk_metric_result m = eval1(&p, &r, sp, 1, MK_METRIC_DEEPMIND, 1.0);
    near_abs(m.dice, 54.0 / 152.0, 1e-12, "dice");
    near_abs(m.jaccard, 27.0 / 125.0, 1e-12, "jaccard");
    near_dist(m.hd, S3, "hd");
    near_dist(m.hd95, S2, "hd95");
    near_dist(m.dir_hd[MK_METRIC_PRED2REF], 1.0, "hd pred->ref");
    near_dist(m.dir_hd95[MK_METRIC_REF2PRED], S2, "hd95 ref->pred");
    near_dist(m.dir_mean[MK_METRIC_REF2PRED], 147.0 / Ar, "mean ref->pred");
    near_dist(m.dir_mean[MK_METRIC_PRED2REF], 1.0, "mean pred->ref");
    near_dist(m.assd, (147.0 + Ap) / (Ar + Ap), "assd");
    near_dist(m.masd, 0.5 * (147.0 / Ar + 1.0), "masd");
    near_abs(m.surface_dice, (96.0 + Ap) / (Ar + Ap), 1e-9, "surface dice at 1 mm");
    near_dist(m.surface[MK_METRIC_PRED2REF], Ap, "pred area");
    near_dist(m.surface[MK_METRIC_REF2PRED], Ar, "ref area");
    /* tolerance sqrt2 (inclusive) takes the edge corners too */
    m = eval1(&p, &r, sp, 1, MK_METRIC_DEEPMIND, S2);
    near_abs(m.surface_dice, (96.0 + 24 * S2 + Ap) / (Ar + Ap), 1e-9, "surface dice at sqrt2");

    m = eval1(&p, &r, sp, 1, MK_METRIC_MEDPY, 1.0);
    near_dist(m.hd, S3, "medpy hd");
    /* union: 80 at 1, 36 at sqrt2, 8 at sqrt3 (n=124): numpy index 0.95*123 = 116.85 -> sqrt3 */
    near_dist(m.hd95, S3, "medpy hd95");
    near_dist(m.assd, (80.0 + 36 * S2 + 8 * S3) / 124.0, "medpy assd");
    near_dist(m.masd, 0.5 * (1.0 + (54.0 + 36 * S2 + 8 * S3) / 98.0), "medpy masd");
    near_abs(m.surface_dice, 80.0 / 124.0, 1e-9, "medpy surface dice");
    near_dist(m.dir_hd95[MK_METRIC_REF2PRED], S3,
              "medpy directed hd95 (index 0.95*97=92.15 -> sqrt3)");
    free(p.v);
    free(r.v);
}

/* 2D: 3x3 square inside a 5x5 square, in a (9,9,1) volume and in a (1,9,9) volume.
 * deepmind: pred contour = 8 edge corners (length 1) + 4 convex corners (sqrt2/2), all at d 1;
 * ref = 16 edge corners (length 1, d 1) + 4 convex corners (sqrt2/2, d sqrt2).
 * Lp = 8 + 2 sqrt2; Lr = 16 + 2 sqrt2, sum d*l over ref = 16 + 4 = 20; ref fraction at d=1 is
 * 16/18.83 < 0.95 -> hd95 sqrt2. medpy: 8 pred pixels at 1; ref 12 at 1 + 4 at sqrt2. */
static void square_case(int layout)
{
    int64_t d[3] = {9, 9, 1};
    if (layout == 1)
        d[0] = 1, d[1] = 9, d[2] = 9;
    vol8 p = v8(d[0], d[1], d[2]), r = v8(d[0], d[1], d[2]);
    if (layout == 0) {
        box8(&r, 2, 2, 0, 5, 5, 1, 1);
        box8(&p, 3, 3, 0, 3, 3, 1, 1);
    } else {
        box8(&r, 0, 2, 2, 1, 5, 5, 1);
        box8(&p, 0, 3, 3, 1, 3, 3, 1);
    }
    const double sp[3] = {1, 1, 1};
    double Lp = 8 + 2 * S2, Lr = 16 + 2 * S2;
    mk_metric_result m = eval1(&p, &r, sp, 1, MK_METRIC_DEEPMIND, 1.0);
    assert_int_equal(m.ndim, 2);
    near_abs(m.dice, 18.0 / 34.0, 1e-12, "2d dice");
    near_dist(m.hd, S2, "2d hd");
    near_dist(m.hd95, S2, "2d hd95");
    near_dist(m.assd, (20.0 + Lp) / (Lr + Lp), "2d assd");
    near_dist(m.masd, 0.5 * (20.0 / Lr + 1.0), "2d masd");
    near_abs(m.surface_dice, (16.0 + Lp) / (Lr + Lp), 1e-9, "2d sd");
    m = eval1(&p, &r, sp, 1, MK_METRIC_MEDPY, 1.0);
    assert_int_equal(m.ndim, 2);
    near_dist(m.hd, S2, "2d medpy hd");
    /* union 20 at 1 + 4 at sqrt2 (n=24): index 0.95*23 = 21.85 -> sqrt2 */
    near_dist(m.hd95, S2, "2d medpy hd95");
    near_dist(m.assd, (20.0 + 4 * S2) / 24.0, "2d medpy assd");
    near_abs(m.surface_dice, 20.0 / 24.0, 1e-9, "2d medpy sd");
    free(p.v);
    free(r.v);
}

static void test_squares_2d(void **state)
{
    (void)state;
    square_case(0);
    square_case(1);
}

/* 2D single pixel shifted by 2 along axis 1 with spacing (0.6, 1.7): 4 corners of length
 * diag each side, 2 at distance 1*1.7 and 2 at 2*1.7 -> hd 3.4, assd 1.5*1.7. */
static void test_pixel_2d_aniso(void **state)
{
    (void)state;
    vol8 p = v8(5, 6, 1), r = v8(5, 6, 1);
    box8(&p, 2, 1, 0, 1, 1, 1, 1);
    box8(&r, 2, 3, 0, 1, 1, 1, 1);
    const double sp[3] = {0.6, 1.7, 3.0};
    mk_metric_result m = eval1(&p, &r, sp, 1, MK_METRIC_DEEPMIND, 1.7);
    near_dist(m.hd, 3.4, "hd");
    near_dist(m.hd95, 3.4, "hd95");
    near_dist(m.assd, 1.5 * 1.7, "assd");
    near_abs(m.surface_dice, 0.5, 1e-9, "sd");
    /* volume uses all three spacings */
    near_abs(m.volume_pred_ml, 0.6 * 1.7 * 3.0 / 1000.0, 1e-15, "2d volume");
    free(p.v);
    free(r.v);
}

static void test_empty(void **state)
{
    (void)state;
    const double sp[3] = {1, 1, 1};
    vol8 e = v8(5, 5, 5), f = v8(5, 5, 5);
    box8(&f, 1, 1, 1, 2, 2, 2, 1);
    for (int conv = 0; conv < 2; conv++) {
        mk_metric_result m = eval1(&e, &e, sp, 1, (mk_metric_conv)conv, 1.0);
        assert_int_equal(m.empty, MK_METRIC_EMPTY_BOTH);
        near_abs(m.dice, 1, 0, "both dice");
        near_abs(m.jaccard, 1, 0, "both jaccard");
        near_abs(m.hd, 0, 0, "both hd");
        near_abs(m.hd95, 0, 0, "both hd95");
        near_abs(m.assd, 0, 0, "both assd");
        near_abs(m.masd, 0, 0, "both masd");
        near_abs(m.surface_dice, 1, 0, "both sd");
        for (int w = 0; w < 2; w++) {
            m = w == 0 ? eval1(&e, &f, sp, 1, (mk_metric_conv)conv, 1.0)
                       : eval1(&f, &e, sp, 1, (mk_metric_conv)conv, 1.0);
            assert_int_equal(m.empty, w == 0 ? MK_METRIC_EMPTY_PRED : MK_METRIC_EMPTY_REF);
            near_abs(m.dice, 0, 0, "one dice");
            near_abs(m.jaccard, 0, 0, "one jaccard");
            assert_true(isinf(m.hd) && isinf(m.hd95) && isinf(m.assd) && isinf(m.masd));
            near_abs(m.surface_dice, 0, 0, "one sd");
            assert_int_equal(w == 0 ? m.voxels_ref : m.voxels_pred, 8);
            near_abs(w == 0 ? m.volume_ref_ml : m.volume_pred_ml, 0.008, 1e-15, "volume");
        }
        /* none: identical masks */
        m = eval1(&f, &f, sp, 1, (mk_metric_conv)conv, 0.0);
        assert_int_equal(m.empty, MK_METRIC_EMPTY_NONE);
        near_abs(m.dice, 1, 1e-12, "same dice");
        near_abs(m.hd, 0, 0, "same hd");
        near_abs(m.surface_dice, 1, 1e-9, "same sd at tolerance 0 (inclusive)");
    }
    free(e.v);
    free(f.v);
}

/* The both-empty policy: MK_METRIC_BOTH_ONE (default) scores 1 / 0, MK_METRIC_BOTH_NAN makes
 * every score NaN; results of labels present in either mask do not depend on it. */
static void test_both_empty_policy(void **state)
{
    (void)state;
    const double sp[3] = {0.9, 1.1, 1.3};
    vol8 p = v8(12, 10, 8), r = v8(12, 10, 8);
    box8(&p, 2, 2, 2, 3, 3, 3, 1);
    box8(&r, 3, 2, 2, 3, 3, 3, 1);
    box8(&r, 8, 6, 5, 2, 2, 2, 2); /* only in ref */
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_metric_vol mp = mv(&p, sp, "p"), mr = mv(&r, sp, "r");
    const int64_t labels[3] = {1, 2, 5}; /* 5: in neither */
    mk_metric_result one[3], nan3[3];
    for (int conv = 0; conv < 2; conv++) {
        mk_metric_opts o;
        mk_metric_opts_default(&o);
        assert_int_equal(o.both_empty, MK_METRIC_BOTH_ONE);
        o.convention = (mk_metric_conv)conv;
        assert_int_equal(mk_metric_eval(&ctx, &mp, &mr, labels, 3, &o, one), MK_OK);
        o.both_empty = MK_METRIC_BOTH_NAN;
        assert_int_equal(mk_metric_eval(&ctx, &mp, &mr, labels, 3, &o, nan3), MK_OK);
        assert_int_equal(one[2].empty, MK_METRIC_EMPTY_BOTH);
        near_abs(one[2].dice, 1, 0, "one: dice");
        near_abs(one[2].hd95, 0, 0, "one: hd95");
        assert_int_equal(nan3[2].empty, MK_METRIC_EMPTY_BOTH);
        assert_true(isnan(nan3[2].dice) && isnan(nan3[2].jaccard) && isnan(nan3[2].surface_dice));
        assert_true(isnan(nan3[2].hd) && isnan(nan3[2].hd95) && isnan(nan3[2].assd) &&
                    isnan(nan3[2].masd));
        assert_true(isnan(nan3[2].dir_hd[0]) && isnan(nan3[2].dir_mean[1]));
        assert_int_equal(nan3[2].voxels_pred, 0);
        near_abs(nan3[2].volume_ref_ml, 0, 0, "nan: volume");
        /* present in at least one mask: bit-identical under both policies */
        for (int j = 0; j < 2; j++)
            assert_memory_equal(&one[j], &nan3[j], sizeof one[j]);
    }
    mk_metric_result r1;
    mk_metric_result_empty(&r1, 4, MK_METRIC_EMPTY_PRED);
    mk_metric_result_both_empty(&r1, MK_METRIC_BOTH_NAN); /* not both-empty: unchanged */
    near_abs(r1.dice, 0, 0, "one-empty dice under nan");
    assert_true(isinf(r1.hd95));
    mk_metric_both_empty pol;
    assert_int_equal(mk_metric_both_empty_parse(&ctx, "nan", &pol), MK_OK);
    assert_int_equal(pol, MK_METRIC_BOTH_NAN);
    assert_int_equal(mk_metric_both_empty_parse(&ctx, "zero", &pol), MK_ERR_USAGE);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "--both-empty"));
    assert_string_equal(mk_metric_both_empty_name(MK_METRIC_BOTH_ONE), "one");
    free(p.v);
    free(r.v);
}

/* The census of an image: distinct non-zero values and non-integral voxels, every value type. */
static void test_label_census(void **state)
{
    (void)state;
    const double sp[3] = {1, 1, 1};
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_metric_census c;
    /* uint8 with 3 labels */
    vol8 a = v8(7, 6, 5);
    box8(&a, 1, 1, 1, 2, 2, 2, 1);
    box8(&a, 4, 1, 1, 2, 2, 2, 2);
    box8(&a, 1, 4, 3, 1, 1, 1, 255);
    mk_metric_vol m = mv(&a, sp, "a");
    assert_int_equal(mk_metric_label_census(&ctx, &m, &c), MK_OK);
    assert_int_equal(c.n_distinct, 3);
    assert_int_equal(c.n_nonint, 0);
    assert_int_equal(c.bad_voxel[0], -1);
    /* int16 "CT": 3000 distinct values, negative ones included, in a stored box */
    const int64_t n = 20 * 15 * 10;
    int16_t *ct = calloc((size_t)n, sizeof *ct);
    for (int64_t i = 0; i < n; i++)
        ct[i] = (int16_t)(i % 3000 - 1000);
    m.type = MK_METRIC_I16;
    m.data = ct;
    m.dim[0] = 40, m.dim[1] = 30, m.dim[2] = 20;
    m.box_lo[0] = 5, m.box_lo[1] = 5, m.box_lo[2] = 5;
    m.box_dim[0] = 20, m.box_dim[1] = 15, m.box_dim[2] = 10;
    assert_int_equal(mk_metric_label_census(&ctx, &m, &c), MK_OK);
    assert_int_equal(c.n_distinct, 2999); /* 0 is background */
    assert_int_equal(c.n_nonint, 0);
    /* int32 and uint64 through the key set: 70000 distinct values are "more than 65535" */
    int32_t *i32 = calloc(70000, sizeof *i32);
    for (int i = 0; i < 70000; i++)
        i32[i] = i % 2 ? i : -i;
    mk_metric_vol w = {.type = MK_METRIC_I32, .data = i32, .dim = {70000, 1, 1}, .name = "w"};
    assert_int_equal(mk_metric_label_census(&ctx, &w, &c), MK_OK);
    assert_int_equal(c.n_distinct, MK_METRIC_MAX_DISTINCT + 1);
    for (int i = 0; i < 70000; i++)
        i32[i] = i % 7;
    assert_int_equal(mk_metric_label_census(&ctx, &w, &c), MK_OK);
    assert_int_equal(c.n_distinct, 6);
    uint64_t u64[4] = {0, 3, 3, UINT64_MAX};
    mk_metric_vol u = {.type = MK_METRIC_U64, .data = u64, .dim = {4, 1, 1}, .name = "u"};
    assert_int_equal(mk_metric_label_census(&ctx, &u, &c), MK_OK);
    assert_int_equal(c.n_distinct, 2);
    assert_int_equal(c.n_nonint, 1);
    assert_int_equal(c.bad_voxel[0], 3);
    /* float: integral labels, then an intensity image (fractions, NaN) */
    float *f = calloc(60, sizeof *f);
    f[3] = 2.0f, f[7] = 2.0f, f[9] = -1.0f;
    mk_metric_vol fv = {.type = MK_METRIC_F32, .data = f, .dim = {5, 4, 3}, .name = "f"};
    assert_int_equal(mk_metric_label_census(&ctx, &fv, &c), MK_OK);
    assert_int_equal(c.n_distinct, 2);
    assert_int_equal(c.n_nonint, 0);
    for (int i = 0; i < 60; i++)
        f[i] = (float)i * 0.25f; /* f[0] = 0: background */
    f[59] = NAN;
    assert_int_equal(mk_metric_label_census(&ctx, &fv, &c), MK_OK);
    assert_int_equal(c.n_distinct, 59);
    assert_int_equal(c.n_nonint, 44 + 1); /* 0.25..14.5: 58 values, 14 integral; and NaN */
    assert_int_equal(c.bad_voxel[0], 1);
    assert_int_equal(c.bad_voxel[1], 0);
    assert_int_equal(c.bad_voxel[2], 0);
    near_abs(c.bad_value, 0.25, 0, "first non-integral value");
    double *d = calloc(8, sizeof *d);
    d[5] = 1e300;
    mk_metric_vol dv = {.type = MK_METRIC_F64, .data = d, .dim = {2, 2, 2}, .name = "d"};
    assert_int_equal(mk_metric_label_census(&ctx, &dv, &c), MK_OK);
    assert_int_equal(c.n_nonint, 1); /* beyond 2^53 */
    assert_int_equal(c.bad_voxel[0], 1);
    assert_int_equal(c.bad_voxel[1], 0);
    assert_int_equal(c.bad_voxel[2], 1);
    /* an all-zero (empty box) image */
    mk_metric_vol z = {
        .type = MK_METRIC_U8, .data = NULL, .dim = {4, 4, 4}, .box_dim = {1, 0, 0}, .name = "z"};
    assert_int_equal(mk_metric_label_census(&ctx, &z, &c), MK_OK);
    assert_int_equal(c.n_distinct, 0);
    free(a.v);
    free(ct);
    free(i32);
    free(f);
    free(d);
}

/* Two labels in one volume score like separate volumes; labels absent from both are both-empty;
 * find_labels lists every non-zero value of either volume. */
static void test_multilabel(void **state)
{
    (void)state;
    const double sp[3] = {0.9, 1.1, 1.3};
    vol8 p = v8(16, 12, 10), r = v8(16, 12, 10);
    box8(&r, 1, 1, 1, 5, 5, 5, 1);
    box8(&p, 2, 2, 2, 3, 3, 3, 1);
    box8(&p, 10, 5, 5, 1, 1, 1, 7);
    box8(&r, 12, 5, 5, 1, 1, 1, 7);
    box8(&r, 14, 10, 8, 1, 1, 1, 9); /* only in ref */
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_metric_vol mp = mv(&p, sp, "p"), mr = mv(&r, sp, "r");
    int64_t *labels;
    int n;
    assert_int_equal(mk_metric_find_labels(&ctx, &mp, &mr, &labels, &n), MK_OK);
    assert_int_equal(n, 3);
    assert_int_equal(labels[0], 1);
    assert_int_equal(labels[1], 7);
    assert_int_equal(labels[2], 9);
    free(labels);
    const int64_t want[4] = {1, 7, 9, 4};
    mk_metric_result res[4];
    mk_metric_opts o;
    mk_metric_opts_default(&o);
    assert_int_equal(mk_metric_eval(&ctx, &mp, &mr, want, 4, &o, res), MK_OK);
    /* label 7: single voxels 2 apart on axis 0 */
    near_dist(res[1].hd, 2 * 0.9, "label 7 hd");
    near_dist(res[1].assd, 1.5 * 0.9, "label 7 assd");
    assert_int_equal(res[2].empty, MK_METRIC_EMPTY_PRED);
    assert_true(isinf(res[2].hd));
    assert_int_equal(res[3].empty, MK_METRIC_EMPTY_BOTH);
    near_abs(res[3].dice, 1, 0, "absent label");
    /* label 1 equals a one-label run on a volume holding only it */
    vol8 p1 = v8(16, 12, 10), r1 = v8(16, 12, 10);
    box8(&r1, 1, 1, 1, 5, 5, 5, 1);
    box8(&p1, 2, 2, 2, 3, 3, 3, 1);
    mk_metric_result one = eval1(&p1, &r1, sp, 1, MK_METRIC_DEEPMIND, 1.0);
    near_dist(res[0].hd95, one.hd95, "label 1 hd95");
    near_dist(res[0].assd, one.assd, "label 1 assd");
    near_abs(res[0].dice, 54.0 / 152.0, 1e-12, "label 1 dice");
    free(p.v);
    free(r.v);
    free(p1.v);
    free(r1.v);
}

/* dtype handling: float32 integral labels score like uint8; a fraction is an error naming the
 * volume and voxel; int16 with negative labels works. Mismatched grids are errors. */
static void test_types_and_errors(void **state)
{
    (void)state;
    const double sp[3] = {1, 1, 1};
    vol8 p = v8(6, 6, 6), r = v8(6, 6, 6);
    box8(&p, 1, 1, 1, 2, 2, 2, 3);
    box8(&r, 2, 1, 1, 2, 2, 2, 3);
    mk_metric_result ref8 = eval1(&p, &r, sp, 3, MK_METRIC_DEEPMIND, 1.0);
    float *pf = calloc(216, sizeof *pf);
    int16_t *ri = calloc(216, sizeof *ri);
    for (int i = 0; i < 216; i++) {
        pf[i] = (float)p.v[i];
        ri[i] = (int16_t)r.v[i];
    }
    mk_metric_vol mp = mv(&p, sp, "pf.nii"), mr = mv(&r, sp, "ri.nii");
    mp.type = MK_METRIC_F32;
    mp.data = pf;
    mr.type = MK_METRIC_I16;
    mr.data = ri;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_metric_opts o;
    mk_metric_opts_default(&o);
    int64_t lab = 3;
    mk_metric_result m;
    assert_int_equal(mk_metric_eval(&ctx, &mp, &mr, &lab, 1, &o, &m), MK_OK);
    near_abs(m.dice, ref8.dice, 0, "float dice");
    near_dist(m.hd95, ref8.hd95, "float hd95");
    near_dist(m.assd, ref8.assd, "float assd");
    pf[1 + 6 * (1 + 6 * 1)] = 2.5f;
    assert_int_equal(mk_metric_eval(&ctx, &mp, &mr, &lab, 1, &o, &m), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "pf.nii"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "2.5"));
    pf[1 + 6 * (1 + 6 * 1)] = NAN;
    assert_int_equal(mk_metric_eval(&ctx, &mp, &mr, &lab, 1, &o, &m), MK_ERR_INVALID);
    pf[1 + 6 * (1 + 6 * 1)] = 3.0f;
    /* negative labels in int16 */
    for (int i = 0; i < 216; i++)
        ri[i] = (int16_t)(r.v[i] ? -4 : 0);
    int64_t *labels;
    int n;
    assert_int_equal(mk_metric_find_labels(&ctx, &mp, &mr, &labels, &n), MK_OK);
    assert_int_equal(n, 2);
    assert_int_equal(labels[0], -4);
    free(labels);
    /* mismatched shape and spacing */
    mk_metric_vol bad = mr;
    bad.dim[2] = 5;
    assert_int_equal(mk_metric_eval(&ctx, &mp, &bad, &lab, 1, &o, &m), MK_ERR_GEOMETRY);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "pf.nii"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "ri.nii"));
    bad = mr;
    bad.spacing[1] = 1.001;
    assert_int_equal(mk_metric_eval(&ctx, &mp, &bad, &lab, 1, &o, &m), MK_ERR_GEOMETRY);
    bad.spacing[1] = 1.00001; /* within 1e-4 relative */
    assert_int_equal(mk_metric_eval(&ctx, &mp, &bad, &lab, 1, &o, &m), MK_OK);
    free(pf);
    free(ri);
    free(p.v);
    free(r.v);
}

/* A volume stored as a box inside a larger zero grid scores like the whole volume. */
static void test_boxed_storage(void **state)
{
    (void)state;
    const double sp[3] = {0.8, 0.8, 1.5};
    vol8 p = v8(20, 18, 12), r = v8(20, 18, 12);
    box8(&p, 4, 5, 3, 6, 4, 5, 1);
    box8(&r, 5, 5, 2, 6, 5, 4, 1);
    mk_metric_result whole = eval1(&p, &r, sp, 1, MK_METRIC_DEEPMIND, 1.0);
    /* store pred as the box x 3..11, y 4..10, z 2..9 */
    int64_t lo[3] = {3, 4, 2}, bn[3] = {9, 7, 8};
    uint8_t *bx = calloc((size_t)(bn[0] * bn[1] * bn[2]), 1);
    for (int64_t z = 0; z < bn[2]; z++)
        for (int64_t y = 0; y < bn[1]; y++)
            for (int64_t x = 0; x < bn[0]; x++)
                bx[x + bn[0] * (y + bn[1] * z)] =
                    p.v[(x + lo[0]) + 20 * ((y + lo[1]) + 18 * (z + lo[2]))];
    mk_metric_vol mp = mv(&p, sp, "p"), mr = mv(&r, sp, "r");
    mp.data = bx;
    for (int k = 0; k < 3; k++) {
        mp.box_lo[k] = lo[k];
        mp.box_dim[k] = bn[k];
    }
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_metric_opts o;
    mk_metric_opts_default(&o);
    int64_t lab = 1;
    mk_metric_result m;
    assert_int_equal(mk_metric_eval(&ctx, &mp, &mr, &lab, 1, &o, &m), MK_OK);
    near_abs(m.dice, whole.dice, 0, "boxed dice");
    near_abs(m.hd95, whole.hd95, 0, "boxed hd95");
    near_abs(m.assd, whole.assd, 0, "boxed assd");
    near_abs(m.surface_dice, whole.surface_dice, 0, "boxed sd");
    /* dice by hand: overlap x 5..9 (5), y 5..8 (4), z 3..5 (3) = 60; |P| = 120, |R| = 120 */
    near_abs(m.dice, 120.0 / 240.0, 1e-12, "dice by hand");
    free(bx);
    free(p.v);
    free(r.v);
}

static void test_numeric_helpers(void **state)
{
    (void)state;
    /* numpy.percentile([1,2,3,4], 95) = 3 + 0.85 = 3.85; [1..10] 50 -> 5.5; 25 -> 3.25 */
    const double a[4] = {1, 2, 3, 4};
    near_abs(mk_metric_percentile_sorted(a, 4, 95), 3.85, 1e-15, "p95");
    const double b[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    near_abs(mk_metric_percentile_sorted(b, 10, 50), 5.5, 1e-15, "median");
    near_abs(mk_metric_percentile_sorted(b, 10, 25), 3.25, 1e-15, "q1");
    const double c[3] = {1, INFINITY, INFINITY};
    assert_true(isinf(mk_metric_percentile_sorted(c, 3, 50)));
    double big[1000];
    double ref = 0;
    for (int i = 0; i < 1000; i++) {
        big[i] = 1.0 / (i + 1);
        ref += big[i];
    }
    near_abs(mk_metric_pairwise_sum(big, 1000), ref, 1e-12, "pairwise");
    mk_metric_stats s;
    const double v[5] = {0.5, 1.0, INFINITY, 2.0, NAN};
    mk_metric_stats_compute(v, 5, &s);
    assert_int_equal(s.n, 5);
    assert_int_equal(s.n_finite, 3);
    assert_int_equal(s.n_inf, 1);
    assert_int_equal(s.n_nan, 1);
    assert_true(isinf(s.mean)); /* NaN left out, inf propagates */
    near_abs(s.mean_finite, 3.5 / 3.0, 1e-15, "mean finite");
    near_abs(s.median, 1.5, 1e-15, "median over non-NaN");
    /* NaN (undefined: both-empty under the nan policy) is left out of mean and std as well, as
     * numpy.nanmean / nanstd do */
    const double vn[4] = {NAN, 0.5, 1.0, 2.0};
    mk_metric_stats_compute(vn, 4, &s);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.n_nan, 1);
    near_abs(s.mean, 3.5 / 3.0, 1e-15, "mean without NaN");
    near_abs(s.std,
             sqrt(((0.5 - 3.5 / 3) * (0.5 - 3.5 / 3) + (1 - 3.5 / 3) * (1 - 3.5 / 3) +
                   (2 - 3.5 / 3) * (2 - 3.5 / 3)) /
                  3),
             1e-15, "std without NaN");
    near_abs(s.median, 1.0, 0, "median without NaN");
    const double all_nan[2] = {NAN, NAN};
    mk_metric_stats_compute(all_nan, 2, &s);
    assert_int_equal(s.n_nan, 2);
    assert_true(isnan(s.mean) && isnan(s.std) && isnan(s.median));
    const double w[4] = {1, 2, 3, 4};
    mk_metric_stats_compute(w, 4, &s);
    near_abs(s.mean, 2.5, 0, "mean");
    near_abs(s.std, sqrt(1.25), 1e-15, "std ddof 0");
    near_abs(s.q1, 1.75, 1e-15, "q1");
    near_abs(s.q3, 3.25, 1e-15, "q3");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_surfel_table),      cmocka_unit_test(test_contour_table),
        cmocka_unit_test(test_edt_bruteforce),    cmocka_unit_test(test_single_voxels),
        cmocka_unit_test(test_nested_cubes),      cmocka_unit_test(test_squares_2d),
        cmocka_unit_test(test_pixel_2d_aniso),    cmocka_unit_test(test_empty),
        cmocka_unit_test(test_multilabel),        cmocka_unit_test(test_types_and_errors),
        cmocka_unit_test(test_boxed_storage),     cmocka_unit_test(test_numeric_helpers),
        cmocka_unit_test(test_both_empty_policy), cmocka_unit_test(test_label_census),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
