/* Geometry operations: exact reorientation (checked voxel by voxel through world positions and
 * against nibabel's as_closest_canonical), the way back (bit-identical), trilinear resampling of
 * a linear function (exact by construction), per-label and nearest resampling of a mask and back to
 * the original grid with the original header. */
#include "test_io_util.h"

#include <math.h>

#include "io/mk_image.h"
#include "io/mk_nifti.h"
#include "io/mk_resample.h"

static void world(const mk_image *img, int64_t i, int64_t j, int64_t k, double p[3])
{
    double a[4][4];
    mk_geom_affine_lps(&img->geom, a);
    for (int r = 0; r < 3; r++)
        p[r] = a[r][0] * (double)i + a[r][1] * (double)j + a[r][2] * (double)k + a[r][3];
}

static void test_reorient_real_lsa(void **state)
{
    (void)state;
    char p[1200];
    tio_shared(p, sizeof p, "data/real/mri/itk_kmeans/KmeansTest_T1UCharRaw.nii.gz");
    if (!tio_exists(p))
        fail_msg("%s is missing: the shared/ data beside the checkout (MK_SHARED_DIR)", p);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL, *ras = NULL, *back = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, p, &img), MK_OK);
    assert_int_equal(mk_reorient(&ctx, img, "RAS", &ras), MK_OK);
    char code[4];
    mk_geom_orient_code(&ras->geom, code);
    assert_string_equal(code, "RAS");
    /* LSA -> RAS: i flipped, j <- k, k <- j flipped: dims 128, 62, 128 */
    assert_int_equal(ras->dim[0], 128);
    assert_int_equal(ras->dim[1], 62);
    assert_int_equal(ras->dim[2], 128);
    /* every voxel of the output sits at the world position of an input voxel with the same value */
    double ai[4][4], inv_sp[3];
    mk_geom_affine_lps(&img->geom, ai);
    for (int d = 0; d < 3; d++)
        inv_sp[d] = 1.0 / img->geom.spacing[d];
    int64_t checked = 0;
    for (int64_t k = 0; k < ras->dim[2]; k += 7)
        for (int64_t j = 0; j < ras->dim[1]; j += 5)
            for (int64_t i = 0; i < ras->dim[0]; i += 3) {
                double w[3];
                world(ras, i, j, k, w);
                /* input index: direction is orthonormal, so idx = D^T (w - o) / spacing */
                int64_t idx[3];
                for (int c = 0; c < 3; c++) {
                    double s = 0;
                    for (int r = 0; r < 3; r++)
                        s += img->geom.direction[r * 3 + c] * (w[r] - img->geom.origin[r]);
                    double x = s * inv_sp[c];
                    idx[c] = (int64_t)llround(x);
                    assert_true(fabs(x - (double)idx[c]) < 1e-6);
                }
                assert_true(
                    mk_image_get(ras, i + ras->dim[0] * (j + ras->dim[1] * k)) ==
                    mk_image_get(img, idx[0] + img->dim[0] * (idx[1] + img->dim[1] * idx[2])));
                checked++;
            }
    assert_true(checked > 1000);
    (void)ai;
    assert_int_equal(mk_reorient_to(&ctx, ras, img, &back), MK_OK);
    assert_memory_equal(back->data, img->data,
                        (size_t)mk_image_nvox(img) * mk_dtype_size(img->dtype));
    assert_memory_equal(&back->geom, &img->geom, sizeof img->geom);
    assert_memory_equal(&back->nifti, &img->nifti, sizeof img->nifti);

    /* nibabel's canonical (RAS+) view of the same file: same affine and voxels */
    tio_require_py("nibabel");
    {
        char out[1200], args[2600];
        assert_int_equal(mk_io_nifti_write(&ctx, tio_path(out, sizeof out, "ras.nii"), ras), MK_OK);
        snprintf(args, sizeof args, "'%s' '%s'", p, out);
        const char *py =
            "import sys, numpy as np, nibabel as nib\n"
            "c = nib.as_closest_canonical(nib.load(sys.argv[1]))\n"
            "o = nib.load(sys.argv[2])\n"
            "assert c.shape == o.shape, (c.shape, o.shape)\n"
            "assert np.allclose(c.affine, o.affine, atol=1e-4), (c.affine, o.affine)\n"
            "assert np.array_equal(np.asanyarray(c.dataobj), np.asanyarray(o.dataobj))\n";
        assert_int_equal(tio_py(py, args), 0);
    }
    mk_image_free(back);
    assert_int_equal(mk_reorient(&ctx, img, "RRS", &back), MK_ERR_INVALID);
    assert_int_equal(mk_reorient(&ctx, img, "XAS", &back), MK_ERR_INVALID);
    mk_image_free(ras);
    mk_image_free(img);
}

static void test_linear_reproduces_linear_function(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {20, 16, 12};
    mk_image *img = NULL, *out = NULL;
    assert_int_equal(mk_image_new(&ctx, MK_DT_FLOAT64, 3, dim, &img), MK_OK);
    img->geom.spacing[0] = 1.0;
    img->geom.spacing[1] = 1.25;
    img->geom.spacing[2] = 2.0;
    img->geom.origin[0] = 5;
    /* f(world) = 2x - 3y + 0.5z + 7 */
    for (int64_t k = 0; k < 12; k++)
        for (int64_t j = 0; j < 16; j++)
            for (int64_t i = 0; i < 20; i++) {
                double w[3];
                world(img, i, j, k, w);
                ((double *)img->data)[i + 20 * (j + 16 * k)] = 2 * w[0] - 3 * w[1] + 0.5 * w[2] + 7;
            }
    double sp[3] = {0.5, 2.5, 0.75};
    assert_int_equal(mk_resample_spacing(&ctx, img, sp, MK_INTERP_LINEAR, &out), MK_OK);
    assert_int_equal(out->dim[0], 40);
    assert_int_equal(out->dim[1], 8);
    assert_int_equal(out->dim[2], 32);
    assert_true(out->geom.origin[0] == 5 && out->geom.spacing[2] == 0.75);
    int64_t n = 0;
    for (int64_t k = 0; k < out->dim[2]; k++)
        for (int64_t j = 0; j < out->dim[1]; j++)
            for (int64_t i = 0; i < out->dim[0]; i++) {
                double w[3];
                world(out, i, j, k, w);
                /* inside the input's extent only (outside, edge clamping applies) */
                if (w[0] > 5 + 19 || w[1] > 1.25 * 15 || w[2] > 2.0 * 11)
                    continue;
                double want = 2 * w[0] - 3 * w[1] + 0.5 * w[2] + 7;
                double got = ((double *)out->data)[i + out->dim[0] * (j + out->dim[1] * k)];
                if (fabs(got - want) > 1e-9)
                    fail_msg("voxel %lld %lld %lld: %g vs %g", (long long)i, (long long)j,
                             (long long)k, got, want);
                n++;
            }
    assert_true(n > 1000);
    mk_image_free(out);
    mk_image_free(img);
}

static void test_mask_label_and_back(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {40, 36, 30};
    mk_image *ref = NULL, *mask = NULL, *lo = NULL, *back = NULL, *near = NULL;
    assert_int_equal(mk_image_new(&ctx, MK_DT_INT16, 3, dim, &ref), MK_OK);
    ref->geom.spacing[0] = 0.8;
    ref->geom.spacing[1] = 0.8;
    ref->geom.spacing[2] = 1.5;
    mk_nifti_meta_from_geom(&ref->geom, 2, 1, &ref->nifti);
    assert_int_equal(mk_image_new_like(&ctx, ref, MK_DT_UINT8, &mask), MK_OK);
    /* two nested spheres: label 1 (r 10 mm) containing label 2 (r 5 mm) */
    for (int64_t k = 0; k < 30; k++)
        for (int64_t j = 0; j < 36; j++)
            for (int64_t i = 0; i < 40; i++) {
                double x = (i - 20) * 0.8, y = (j - 18) * 0.8, z = (k - 15) * 1.5;
                double r = sqrt(x * x + y * y + z * z);
                ((uint8_t *)mask->data)[i + 40 * (j + 36 * k)] = r < 5 ? 2 : r < 10 ? 1 : 0;
            }
    double sp[3] = {1.6, 1.6, 1.6};
    assert_int_equal(mk_resample_spacing(&ctx, mask, sp, MK_INTERP_LABEL, &lo), MK_OK);
    assert_int_equal(mk_resample_spacing(&ctx, mask, sp, MK_INTERP_NEAREST, &near), MK_OK);
    assert_int_equal(lo->dtype, MK_DT_UINT8);
    /* only labels that exist, nothing invented */
    for (int64_t i = 0; i < mk_image_nvox(lo); i++)
        assert_true(((uint8_t *)lo->data)[i] <= 2);
    assert_int_equal(mk_resample_like(&ctx, lo, ref, MK_INTERP_LABEL, &back), MK_OK);
    /* back on the original grid with the original header */
    assert_memory_equal(&back->geom, &ref->geom, sizeof ref->geom);
    assert_memory_equal(&back->nifti, &ref->nifti, sizeof ref->nifti);
    int64_t inter[3] = {0}, a[3] = {0}, b[3] = {0};
    for (int64_t i = 0; i < mk_image_nvox(mask); i++) {
        int u = ((uint8_t *)mask->data)[i], v = ((uint8_t *)back->data)[i];
        a[u]++;
        b[v]++;
        if (u == v)
            inter[u]++;
    }
    for (int l = 1; l <= 2; l++) {
        double dice = 2.0 * (double)inter[l] / (double)(a[l] + b[l]);
        if (dice < 0.85)
            fail_msg("label %d dice after down/up %g", l, dice);
    }
    /* volume preserved within 10% at the coarse grid (voxel 1.6^3 vs 0.8*0.8*1.5) */
    int64_t c1 = 0;
    for (int64_t i = 0; i < mk_image_nvox(lo); i++)
        c1 += ((uint8_t *)lo->data)[i] >= 1;
    double vol_lo = (double)c1 * 1.6 * 1.6 * 1.6, vol = (double)(a[1] + a[2]) * 0.8 * 0.8 * 1.5;
    assert_true(fabs(vol_lo - vol) < 0.1 * vol);
    /* identity resampling of an integer image is exact */
    mk_image *same = NULL;
    assert_int_equal(mk_resample_like(&ctx, mask, mask, MK_INTERP_LINEAR, &same), MK_OK);
    assert_memory_equal(same->data, mask->data, (size_t)mk_image_nvox(mask));
    mk_image_free(same);
    double bad[3] = {1, 0, 1};
    assert_int_equal(mk_resample_spacing(&ctx, mask, bad, MK_INTERP_LINEAR, &same), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "spacing[1]"));
    mk_image_free(near);
    mk_image_free(back);
    mk_image_free(lo);
    mk_image_free(mask);
    mk_image_free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reorient_real_lsa),
        cmocka_unit_test(test_linear_reproduces_linear_function),
        cmocka_unit_test(test_mask_label_and_back),
    };
    return cmocka_run_group_tests(tests, tio_setup, tio_cleanup);
}
