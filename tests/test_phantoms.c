/* Tests of the phantom generators (phantoms/) and of `synth` output on disk.
 *
 * References are independent of the generator code: published xoshiro256** / splitmix64 outputs,
 * the intensity ranges stated in the issue (air -1000 HU, lung about -850, muscle and mediastinum
 * 30..60, bone 400..1000, tumour 20..60), anatomical facts (the LV blood pool is enclosed by the
 * myocardium, the spine is posterior), and nibabel reading the written files. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/mk_fs.h"
#include "io/mk_manifest.h"
#include "io/mk_nifti.h"
#include "io/mk_tiff.h"
#include "phantoms/mk_phantoms.h"

#ifndef MK_PHANTOMS_HAVE_TIFF_WRITER
#define MK_PHANTOMS_HAVE_TIFF_WRITER 0
#endif

static mk_ctx g_ctx;

/* ---- helpers ---- */

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Mean and median of the voxels of tissue t whose 8 in-plane neighbours have the same tissue
 * (the in-plane PSF is 3x3, so these voxels carry no partial volume). Returns the count. */
static long interior_stats(const mk_image *img, const mk_image *tis, int t, double *mean,
                           double *median)
{
    int64_t n0 = img->dim[0], n1 = img->dim[1], n2 = img->dim[2];
    const uint8_t *T = tis->data;
    double *v = malloc((size_t)(n0 * n1 * n2) * sizeof *v);
    assert_non_null(v);
    long n = 0;
    double s = 0;
    for (int64_t k = 0; k < n2; k++)
        for (int64_t j = 1; j + 1 < n1; j++)
            for (int64_t i = 1; i + 1 < n0; i++) {
                int64_t q = (k * n1 + j) * n0 + i;
                if (T[q] != t)
                    continue;
                int ok = 1;
                for (int dj = -1; dj <= 1 && ok; dj++)
                    for (int di = -1; di <= 1; di++)
                        ok &= T[q + dj * n0 + di] == t;
                if (!ok)
                    continue;
                v[n] = mk_image_get(img, q);
                s += v[n++];
            }
    if (n) {
        *mean = s / n;
        qsort(v, (size_t)n, sizeof *v, cmp);
        *median = v[n / 2];
    }
    free(v);
    return n;
}

static void small_params(mk_phantom_params *p, mk_phantom_kind k)
{
    mk_phantom_params_default(p, k);
    p->seed = 42;
}

/* ---- random numbers ---- */

static void test_rng_reference(void **state)
{
    (void)state;
    /* splitmix64 from state 0: reference outputs of Vigna's splitmix64.c */
    uint64_t st = 0;
    assert_true(mk_phantom_splitmix64(&st) == 0xe220a8397b1dcdafull);
    assert_true(mk_phantom_splitmix64(&st) == 0x6e789e6aa1b965f4ull);
    /* xoshiro256** from state {1,2,3,4}: reference outputs of Vigna's xoshiro256starstar.c */
    mk_phantom_rng r = {{1, 2, 3, 4}};
    assert_true(mk_phantom_rng_u64(&r) == 11520ull);
    assert_true(mk_phantom_rng_u64(&r) == 0ull);
    assert_true(mk_phantom_rng_u64(&r) == 1509978240ull);
    assert_true(mk_phantom_rng_u64(&r) == 1215971899390074240ull);
    /* uniform in [0,1), normal with mean 0 and variance 1 (200k samples: sd of the mean 0.0022) */
    mk_phantom_rng_seed(&r, 7, 1);
    double s = 0, s2 = 0, umin = 1, umax = 0;
    for (int i = 0; i < 200000; i++) {
        double u = mk_phantom_rng_uniform(&r);
        umin = u < umin ? u : umin;
        umax = u > umax ? u : umax;
        double z = mk_phantom_rng_normal(&r);
        s += z;
        s2 += z * z;
    }
    assert_true(umin >= 0 && umax < 1 && umin < 1e-3 && umax > 0.999);
    assert_true(fabs(s / 200000) < 0.01);
    assert_true(fabs(s2 / 200000 - 1) < 0.02);
    /* different streams differ */
    mk_phantom_rng a, b;
    mk_phantom_rng_seed(&a, 1, mk_phantom_case_stream(MK_PHANTOM_LUNG, MK_PHANTOM_DOMAIN_CT, 0));
    mk_phantom_rng_seed(&b, 1, mk_phantom_case_stream(MK_PHANTOM_LUNG, MK_PHANTOM_DOMAIN_CT, 1));
    assert_true(mk_phantom_rng_u64(&a) != mk_phantom_rng_u64(&b));
}

static void test_split_and_labelled(void **state)
{
    (void)state;
    int ntrain = 0, nval = 0, ntest = 0, lab_half = 0, lab0 = 0, lab1 = 0;
    for (int i = 0; i < 100; i++) {
        const char *s = mk_phantom_split(i);
        ntrain += strcmp(s, "train") == 0;
        nval += strcmp(s, "val") == 0;
        ntest += strcmp(s, "test") == 0;
        if (strcmp(s, "train") == 0) {
            lab_half += mk_phantom_is_labelled(i, 0.5);
            lab0 += mk_phantom_is_labelled(i, 0.0);
            lab1 += mk_phantom_is_labelled(i, 1.0);
        } else {
            assert_int_equal(mk_phantom_is_labelled(i, 0.0), 1); /* val/test keep labels */
        }
    }
    assert_int_equal(ntrain, 60);
    assert_int_equal(nval, 20);
    assert_int_equal(ntest, 20);
    assert_int_equal(lab_half, 30);
    assert_int_equal(lab0, 0);
    assert_int_equal(lab1, 60);
}

static void test_params_check(void **state)
{
    (void)state;
    mk_phantom_params p;
    mk_phantom_params_default(&p, MK_PHANTOM_LUNG);
    assert_int_equal(mk_phantom_params_check(&g_ctx, &p), MK_OK);
    p.shift = 1.5;
    assert_int_equal(mk_phantom_params_check(&g_ctx, &p), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&g_ctx), "shift"));
    mk_phantom_params_default(&p, MK_PHANTOM_LUNG);
    p.size[2] = 2;
    assert_int_equal(mk_phantom_params_check(&g_ctx, &p), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&g_ctx), "size[2]"));
    mk_phantom_kind k;
    assert_int_equal(mk_phantom_kind_parse(&g_ctx, "brain", &k), MK_ERR_USAGE);
    assert_non_null(strstr(mk_ctx_errmsg(&g_ctx), "lung, cardiac, histo"));
}

/* ---- lung ---- */

/* Ranges stated in the issue (HU), checked on interior voxels' mean and median. */
static const struct {
    int t;
    double lo, hi;
} CT_STATED[] = {
    {MK_TISSUE_AIR, -1010, -990},    {MK_TISSUE_LUNG, -900, -800}, {MK_TISSUE_MUSCLE, 30, 60},
    {MK_TISSUE_MEDIASTINUM, 30, 60}, {MK_TISSUE_BONE, 400, 1000},  {MK_TISSUE_TUMOUR, 20, 60},
};

static void test_lung_ct_ranges_and_geometry(void **state)
{
    (void)state;
    mk_phantom_params p;
    small_params(&p, MK_PHANTOM_LUNG);
    for (int c = 0; c < 4; c++) {
        mk_image *img, *lab, *tis;
        mk_phantom_info info;
        assert_int_equal(
            mk_phantom_volume(&g_ctx, &p, MK_PHANTOM_DOMAIN_CT, c, &img, &lab, &tis, &info), MK_OK);
        assert_int_equal(img->dtype, MK_DT_INT16);
        assert_int_equal(lab->dtype, MK_DT_UINT8);
        assert_int_equal(img->dim[0], 64);
        assert_int_equal(img->dim[2], 24);
        assert_true(mk_geom_same_grid(img, lab, 1e-9) && mk_geom_same_grid(img, tis, 1e-9));
        /* anisotropic voxels and a non-identity (flipped + oblique) direction */
        assert_true(img->geom.spacing[2] > 1.5 * img->geom.spacing[0]);
        int diag = 1;
        for (int a = 0; a < 9; a++)
            diag &= fabs(img->geom.direction[a] - (a % 4 == 0 ? 1.0 : 0.0)) < 1e-9;
        assert_false(diag);
        assert_int_equal(img->nifti.qform_code, 1);
        assert_int_equal(img->nifti.sform_code, 2);
        /* label == tumour tissue, and a tumour exists */
        int64_t nv = mk_image_nvox(img), fg = 0;
        const uint8_t *L = lab->data, *T = tis->data;
        for (int64_t q = 0; q < nv; q++) {
            assert_int_equal(L[q], T[q] == MK_TISSUE_TUMOUR);
            fg += L[q];
        }
        assert_true(fg > 20);
        assert_int_equal(fg, info.fg_voxels);
        for (size_t r = 0; r < sizeof CT_STATED / sizeof CT_STATED[0]; r++) {
            double mean = 0, med = 0;
            long n = interior_stats(img, tis, CT_STATED[r].t, &mean, &med);
            if (n < 5)
                continue; /* e.g. a small tumour with no interior voxel */
            if (!(mean >= CT_STATED[r].lo && mean <= CT_STATED[r].hi && med >= CT_STATED[r].lo &&
                  med <= CT_STATED[r].hi))
                fail_msg("case %d %s: mean %.1f median %.1f (n=%ld) outside [%g, %g]", c,
                         mk_phantom_tissue_name(CT_STATED[r].t), mean, med, n, CT_STATED[r].lo,
                         CT_STATED[r].hi);
            double lo, hi; /* the library's own table must agree with the stated ranges */
            assert_true(
                mk_phantom_tissue_range(&p, MK_PHANTOM_DOMAIN_CT, CT_STATED[r].t, &lo, &hi));
            assert_true(lo >= CT_STATED[r].lo - 1e-9 && hi <= CT_STATED[r].hi + 1e-9);
        }
        mk_image_free(img);
        mk_image_free(lab);
        mk_image_free(tis);
    }
}

static void test_lung_mr_ranges(void **state)
{
    (void)state;
    mk_phantom_params p;
    small_params(&p, MK_PHANTOM_LUNG);
    for (int c = 0; c < 3; c++) {
        mk_image *img, *lab, *tis;
        assert_int_equal(
            mk_phantom_volume(&g_ctx, &p, MK_PHANTOM_DOMAIN_MR, c, &img, &lab, &tis, NULL), MK_OK);
        assert_int_equal(img->dtype, MK_DT_FLOAT32);
        double mt = 0, mm = 0, med;
        for (int t = 0; t < MK_TISSUE_COUNT; t++) {
            double lo, hi, mean = 0;
            if (!mk_phantom_tissue_range(&p, MK_PHANTOM_DOMAIN_MR, t, &lo, &hi))
                continue;
            if (interior_stats(img, tis, t, &mean, &med) < 5)
                continue;
            if (!(mean >= lo && mean <= hi))
                fail_msg("MR case %d %s: mean %.1f outside [%g, %g]", c, mk_phantom_tissue_name(t),
                         mean, lo, hi);
            if (t == MK_TISSUE_TUMOUR)
                mt = mean;
            if (t == MK_TISSUE_MEDIASTINUM)
                mm = mean;
        }
        /* T2w: the tumour is bright against the mediastinum (at least twice as bright) */
        assert_true(mt > 2 * mm);
        /* Rician magnitude data are never negative */
        const float *f = img->data;
        for (int64_t q = 0; q < mk_image_nvox(img); q++)
            assert_true(f[q] >= 0);
        mk_image_free(img);
        mk_image_free(lab);
        mk_image_free(tis);
    }
}

/* Paired rendering: render == dom reproduces the ordinary volume byte for byte (the same draws);
 * CT anatomy imaged as MR keeps the CT grid and geometry, and each CT tissue takes the MR
 * contrast stated for it (so the CT tumour is bright, as in real MRI). */
static void test_lung_paired_rendering(void **state)
{
    (void)state;
    mk_phantom_params p;
    small_params(&p, MK_PHANTOM_LUNG);
    for (int c = 0; c < 3; c++) {
        mk_image *ct, *lab, *tis, *mr, *same;
        assert_int_equal(
            mk_phantom_volume(&g_ctx, &p, MK_PHANTOM_DOMAIN_CT, c, &ct, &lab, &tis, NULL), MK_OK);
        assert_int_equal(mk_phantom_volume_paired(&g_ctx, &p, MK_PHANTOM_DOMAIN_CT,
                                                  MK_PHANTOM_DOMAIN_CT, c, &same),
                         MK_OK);
        assert_int_equal(same->dtype, ct->dtype);
        assert_memory_equal(same->data, ct->data, (size_t)mk_image_nvox(ct) * sizeof(int16_t));
        mk_image_free(same);
        assert_int_equal(mk_phantom_volume_paired(&g_ctx, &p, MK_PHANTOM_DOMAIN_CT,
                                                  MK_PHANTOM_DOMAIN_MR, c, &mr),
                         MK_OK);
        assert_int_equal(mr->dtype, MK_DT_FLOAT32);
        for (int a = 0; a < 3; a++) {
            assert_int_equal(mr->dim[a], ct->dim[a]);
            assert_true(mr->geom.spacing[a] == ct->geom.spacing[a] &&
                        mr->geom.origin[a] == ct->geom.origin[a]);
            for (int b = 0; b < 3; b++)
                assert_true(mr->geom.direction[3 * a + b] == ct->geom.direction[3 * a + b]);
        }
        double mt = 0, mm = 0, med;
        for (int t = 0; t < MK_TISSUE_COUNT; t++) {
            double lo, hi, mean = 0;
            if (!mk_phantom_tissue_range(&p, MK_PHANTOM_DOMAIN_MR, t, &lo, &hi) ||
                interior_stats(mr, tis, t, &mean, &med) < 5)
                continue;
            if (!(mean >= lo && mean <= hi))
                fail_msg("CT case %d as MR, %s: mean %.1f outside [%g, %g]", c,
                         mk_phantom_tissue_name(t), mean, lo, hi);
            if (t == MK_TISSUE_TUMOUR)
                mt = mean;
            if (t == MK_TISSUE_MEDIASTINUM)
                mm = mean;
        }
        assert_true(mm > 0 && mt > 2 * mm);
        assert_memory_equal(mr->nifti.sform, ct->nifti.sform, sizeof ct->nifti.sform);
        mk_image_free(ct);
        mk_image_free(lab);
        mk_image_free(tis);
        mk_image_free(mr);
    }
    mk_image *x = NULL;
    mk_phantom_params q;
    small_params(&q, MK_PHANTOM_CARDIAC);
    assert_int_equal(
        mk_phantom_volume_paired(&g_ctx, &q, MK_PHANTOM_DOMAIN_MR, MK_PHANTOM_DOMAIN_CT, 0, &x),
        MK_ERR_UNSUPPORTED);
    assert_null(x);
    assert_non_null(strstr(mk_ctx_errmsg(&g_ctx), "lung"));
    q.paired = 1;
    assert_int_equal(mk_phantom_params_check(&g_ctx, &q), MK_ERR_INVALID);
}

/* CMEDL's premise, measured without learning: the best single-threshold tumour Dice (inside the
 * tumour box + 15 mm) is low on CT, high on MR, and lowest for tumours at the mediastinum. */
static void test_lung_premise(void **state)
{
    (void)state;
    mk_phantom_params p;
    small_params(&p, MK_PHANTOM_LUNG);
    p.hard_frac = 0.5;
    double d[2] = {0}, dh = 0;
    int nh = 0;
    const int N = 6;
    for (int dom = 0; dom < 2; dom++)
        for (int c = 0; c < N; c++) {
            mk_image *img, *lab;
            mk_phantom_info info;
            assert_int_equal(mk_phantom_volume(&g_ctx, &p,
                                               dom ? MK_PHANTOM_DOMAIN_MR : MK_PHANTOM_DOMAIN_CT, c,
                                               &img, &lab, NULL, &info),
                             MK_OK);
            uint8_t *roi = malloc((size_t)mk_image_nvox(lab));
            assert_non_null(roi);
            assert_true(mk_phantom_label_box_roi(lab, 15.0, roi));
            double dice, thr;
            assert_int_equal(mk_phantom_best_threshold_dice(&g_ctx, img, lab, roi, &dice, &thr),
                             MK_OK);
            d[dom] += dice / N;
            if (dom == 0 && info.hard) {
                dh += dice;
                nh++;
            }
            free(roi);
            mk_image_free(img);
            mk_image_free(lab);
        }
    print_message("best-threshold Dice (tumour box + 15 mm): CT %.3f (abutting mediastinum %.3f, "
                  "n=%d), MR %.3f\n",
                  d[0], nh ? dh / nh : -1.0, nh, d[1]);
    assert_true(d[1] > 0.9);
    assert_true(d[0] < d[1] - 0.3);
    if (nh)
        assert_true(dh / nh < 0.6);
}

static void test_threshold_dice_analytic(void **state)
{
    (void)state;
    /* 1-D image 0..9, label = values >= 6 plus value 3: best cut t in (5,6) gives tp 4, pred 4,
     * fg 5 -> Dice 8/9 */
    int64_t dim[1] = {10};
    mk_image *img, *lab;
    assert_int_equal(mk_image_new(&g_ctx, MK_DT_FLOAT32, 1, dim, &img), MK_OK);
    assert_int_equal(mk_image_new(&g_ctx, MK_DT_UINT8, 1, dim, &lab), MK_OK);
    for (int i = 0; i < 10; i++) {
        mk_image_set(img, i, i);
        mk_image_set(lab, i, i >= 6 || i == 3);
    }
    double dice, thr;
    assert_int_equal(mk_phantom_best_threshold_dice(&g_ctx, img, lab, NULL, &dice, &thr), MK_OK);
    assert_true(fabs(dice - 8.0 / 9.0) < 1e-12);
    assert_true(thr > 5 && thr < 6);
    mk_image_free(img);
    mk_image_free(lab);
}

static uint64_t fnv1a(const void *p, size_t n, uint64_t h)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t case_hash(const mk_phantom_params *p, mk_phantom_domain dom, int c)
{
    mk_image *img, *lab, *tis;
    assert_int_equal(mk_phantom_volume(&g_ctx, p, dom, c, &img, &lab, &tis, NULL), MK_OK);
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv1a(img->data, (size_t)mk_image_nvox(img) * mk_dtype_size(img->dtype), h);
    h = fnv1a(lab->data, (size_t)mk_image_nvox(lab), h);
    h = fnv1a(tis->data, (size_t)mk_image_nvox(tis), h);
    h = fnv1a(&img->geom, sizeof img->geom, h);
    mk_image_free(img);
    mk_image_free(lab);
    mk_image_free(tis);
    return h;
}

static void test_determinism_in_memory(void **state)
{
    (void)state;
    mk_phantom_params p;
    small_params(&p, MK_PHANTOM_LUNG);
    p.size[0] = p.size[1] = 32;
    p.size[2] = 8;
    uint64_t h3 = case_hash(&p, MK_PHANTOM_DOMAIN_CT, 3);
    (void)case_hash(&p, MK_PHANTOM_DOMAIN_CT, 0); /* other cases in between change nothing */
    p.cases = 1;                                  /* nor does the number of cases */
    assert_true(case_hash(&p, MK_PHANTOM_DOMAIN_CT, 3) == h3);
    assert_true(case_hash(&p, MK_PHANTOM_DOMAIN_CT, 4) != h3);
    assert_true(case_hash(&p, MK_PHANTOM_DOMAIN_MR, 3) != h3);
    p.seed = 43;
    assert_true(case_hash(&p, MK_PHANTOM_DOMAIN_CT, 3) != h3);
    /* a different seed gives a different patient: tumour size and tissue maps differ */
    mk_image *a, *la, *ta, *b, *lb, *tb;
    mk_phantom_info ia, ib;
    assert_int_equal(mk_phantom_volume(&g_ctx, &p, MK_PHANTOM_DOMAIN_CT, 0, &a, &la, &ta, &ia),
                     MK_OK);
    p.seed = 42;
    assert_int_equal(mk_phantom_volume(&g_ctx, &p, MK_PHANTOM_DOMAIN_CT, 0, &b, &lb, &tb, &ib),
                     MK_OK);
    assert_true(ia.lesion_radius_mm != ib.lesion_radius_mm);
    int64_t diff = 0;
    for (int64_t q = 0; q < mk_image_nvox(ta); q++)
        diff += ((uint8_t *)ta->data)[q] != ((uint8_t *)tb->data)[q];
    assert_true(diff > 50);
    mk_image_free(a), mk_image_free(la), mk_image_free(ta);
    mk_image_free(b), mk_image_free(lb), mk_image_free(tb);
}

/* ---- cardiac ---- */

static void test_cardiac_anatomy_and_shift(void **state)
{
    (void)state;
    mk_phantom_params p;
    small_params(&p, MK_PHANTOM_CARDIAC);
    double sum[2][MK_TISSUE_COUNT] = {{0}};
    int cnt[2][MK_TISSUE_COUNT] = {{0}};
    for (int dom = 0; dom < 2; dom++)
        for (int c = 0; c < 3; c++) {
            mk_image *img, *lab, *tis;
            mk_phantom_domain d = dom ? MK_PHANTOM_DOMAIN_CT : MK_PHANTOM_DOMAIN_MR;
            assert_int_equal(mk_phantom_volume(&g_ctx, &p, d, c, &img, &lab, &tis, NULL), MK_OK);
            int64_t n0 = img->dim[0], n1 = img->dim[1], n2 = img->dim[2];
            const uint8_t *L = lab->data;
            long nlab[4] = {0};
            for (int64_t k = 0; k < n2; k++)
                for (int64_t j = 1; j + 1 < n1; j++)
                    for (int64_t i = 1; i + 1 < n0; i++) {
                        int64_t q = (k * n1 + j) * n0 + i;
                        nlab[L[q]]++;
                        if (L[q] != 3)
                            continue;
                        /* LV blood pool enclosed by myocardium: 4-neighbours are LV or MYO */
                        const int64_t nb[4] = {q - 1, q + 1, q - n0, q + n0};
                        for (int e = 0; e < 4; e++)
                            assert_true(L[nb[e]] == 3 || L[nb[e]] == 2);
                    }
            assert_true(nlab[1] > 50 && nlab[2] > 50 && nlab[3] > 50);
            for (int t = 0; t < MK_TISSUE_COUNT; t++) {
                double lo, hi, mean = 0, med;
                if (!mk_phantom_tissue_range(&p, d, t, &lo, &hi))
                    continue;
                if (interior_stats(img, tis, t, &mean, &med) < 5)
                    continue;
                if (!(mean >= lo && mean <= hi))
                    fail_msg("cardiac %s case %d %s: mean %.1f outside [%g, %g]",
                             mk_phantom_domain_name(d), c, mk_phantom_tissue_name(t), mean, lo, hi);
                sum[dom][t] += mean;
                cnt[dom][t]++;
            }
            mk_image_free(img);
            mk_image_free(lab);
            mk_image_free(tis);
        }
    double fat[2], myo[2], blood[2];
    for (int dom = 0; dom < 2; dom++) {
        assert_true(cnt[dom][MK_TISSUE_FAT] && cnt[dom][MK_TISSUE_MYO] &&
                    cnt[dom][MK_TISSUE_LV_BLOOD]);
        fat[dom] = sum[dom][MK_TISSUE_FAT] / cnt[dom][MK_TISSUE_FAT];
        myo[dom] = sum[dom][MK_TISSUE_MYO] / cnt[dom][MK_TISSUE_MYO];
        blood[dom] = sum[dom][MK_TISSUE_LV_BLOOD] / cnt[dom][MK_TISSUE_LV_BLOOD];
    }
    /* the shift: bSSFP fat is bright like blood; CT fat is darker than myocardium */
    assert_true(fat[0] > 2 * myo[0] && fat[0] > 0.6 * blood[0]);
    assert_true(fat[1] < myo[1] && blood[1] > myo[1]);
}

/* ---- histology ---- */

static void test_histo_slide(void **state)
{
    (void)state;
    mk_phantom_params p;
    small_params(&p, MK_PHANTOM_HISTO);
    p.size[0] = p.size[1] = 512;
    int saw_tumour = 0;
    for (int c = 0; c < 3; c++) {
        mk_image *rgb, *m;
        mk_phantom_info info;
        assert_int_equal(mk_phantom_slide(&g_ctx, &p, MK_PHANTOM_DOMAIN_SITE_A, c, &rgb, &m, &info),
                         MK_OK);
        assert_int_equal(rgb->dtype, MK_DT_RGB24);
        const uint8_t *px = rgb->data, *M = m->data;
        double sum[3][3] = {{0}}; /* [region][channel] */
        long n[3] = {0};
        long dark_purple = 0, dark = 0;
        for (int64_t q = 0; q < 512 * 512; q++) {
            assert_true(M[q] <= 2);
            for (int a = 0; a < 3; a++)
                sum[M[q]][a] += px[3 * q + a];
            n[M[q]]++;
            int r = px[3 * q], g = px[3 * q + 1], b = px[3 * q + 2];
            if (M[q] && r + g + b < 3 * 150) { /* dark tissue pixels are nuclei */
                dark++;
                dark_purple += b > r && b > g; /* hematoxylin: blue-purple */
            }
        }
        assert_true(n[0] > 0 && n[1] > 0);
        /* background: white glass */
        for (int a = 0; a < 3; a++)
            assert_true(sum[0][a] / n[0] > 225);
        /* stroma pink: red and blue above green */
        assert_true(sum[1][0] / n[1] > sum[1][1] / n[1] + 30 &&
                    sum[1][2] / n[1] > sum[1][1] / n[1]);
        assert_true(dark > 100 && dark_purple > 0.9 * dark);
        if (n[2] > 2000) {
            saw_tumour = 1;
            /* denser, larger nuclei: the tumour region is darker on average */
            double lt = (sum[2][0] + sum[2][1] + sum[2][2]) / n[2];
            double ln = (sum[1][0] + sum[1][1] + sum[1][2]) / n[1];
            assert_true(lt < ln - 20);
        }
        mk_image_free(rgb);
        mk_image_free(m);
    }
    assert_true(saw_tumour);
}

/* ---- files on disk ---- */

/* nibabel checks of a lung synth folder (32x32x8, 3 cases): manifest columns, dtypes, codes,
 * spacing, obliquity, orientation codes, stated CT ranges per tissue, anatomy placement. */
static const char NIBABEL_CHECK[] =
    "import csv, os, sys\n"
    "import numpy as np, nibabel as nib\n"
    "root = sys.argv[1]\n"
    "rows = list(csv.DictReader(open(os.path.join(root, 'manifest.csv'))))\n"
    "assert [*rows[0].keys()] == ['id', 'modality', 'image', 'label', 'split', 'domain'], "
    "rows[0].keys()\n"
    "assert len(rows) == 6, len(rows)\n"
    "STATED = {0: (-1010, -990), 1: (-900, -800), 4: (30, 60), 5: (30, 60), 6: (400, 1000), 7: "
    "(20, 60)}\n"
    "for r in rows:\n"
    "    ct = r['modality'] == 'CT'\n"
    "    img = nib.load(os.path.join(root, r['image']))\n"
    "    lab = nib.load(os.path.join(root, r['label']))\n"
    "    tis = nib.load(os.path.join(root, r['image'].replace('.nii.gz', '_tissue.nii.gz')))\n"
    "    h = img.header\n"
    "    assert img.shape == (32, 32, 8), img.shape\n"
    "    assert img.get_data_dtype() == (np.int16 if ct else np.float32), img.get_data_dtype()\n"
    "    assert lab.get_data_dtype() == np.uint8 and lab.shape == img.shape\n"
    "    assert int(h['qform_code']) == 1 and int(h['sform_code']) == 2, (h['qform_code'], "
    "h['sform_code'])\n"
    "    # the qform is a float32 quaternion: it matches the sform to about 1e-4 relative\n"
    "    assert np.allclose(h.get_qform(), h.get_sform(), atol=1e-2)\n"
    "    assert np.allclose(lab.affine, img.affine) and np.allclose(tis.affine, img.affine)\n"
    "    want = (350 / 32, 350 / 32, 240 / 8) if ct else (360 / 32, 360 / 32, 250 / 8)\n"
    "    assert np.allclose(h.get_zooms(), want, rtol=1e-5), (h.get_zooms(), want)\n"
    "    R = img.affine[:3, :3] / np.array(want)\n"
    "    assert np.abs(R - np.diag(np.diag(R))).max() > 0.01, 'expected an oblique direction'\n"
    "    codes = ''.join(nib.aff2axcodes(img.affine))\n"
    "    assert codes == ('LAS' if ct else 'RPI'), codes\n"
    "    d = np.asarray(img.dataobj).astype(float)\n"
    "    t = np.asarray(tis.dataobj)\n"
    "    l = np.asarray(lab.dataobj)\n"
    "    assert ((l == 1) == (t == 7)).all() and l.sum() > 0\n"
    "    if ct:\n"
    "        for code, (lo, hi) in STATED.items():\n"
    "            m = t == code\n"
    "            inner = m.copy()\n"
    "            for di in (-1, 0, 1):\n"
    "                for dj in (-1, 0, 1):\n"
    "                    inner &= np.roll(np.roll(m, di, 0), dj, 1)\n"
    "            inner[0, :, :] = inner[-1, :, :] = inner[:, 0, :] = inner[:, -1, :] = False\n"
    "            if inner.sum() >= 5:\n"
    "                v = d[inner]\n"
    "                assert lo <= v.mean() <= hi and lo <= np.median(v) <= hi, (r['id'], code, "
    "v.mean())\n"
    "    # anatomy in world coordinates (RAS mm): the midline bone mass is posterior (spine), and\n"
    "    # there is less lung in the lowest third (diaphragm) than in the middle third\n"
    "    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in img.shape], indexing='ij'), "
    "-1).reshape(-1, 3)\n"
    "    xyz = nib.affines.apply_affine(img.affine, ijk).reshape(img.shape + (3,))\n"
    "    body = t > 0\n"
    "    cy = xyz[..., 1][body].mean()\n"
    "    cx = xyz[..., 0][body].mean()\n"
    "    mid_bone = (t == 6) & (np.abs(xyz[..., 0] - cx) < 20)\n"
    "    post = (xyz[..., 1][mid_bone] < cy).sum()\n"
    "    assert post > mid_bone.sum() - post, (r['id'], 'spine not posterior')\n"
    "    z = xyz[..., 2]\n"
    "    zlo, zhi = z.min(), z.max()\n"
    "    third = (zhi - zlo) / 3\n"
    "    lung = t == 1\n"
    "    low = (lung & (z < zlo + third)).sum()\n"
    "    mid = (lung & (z >= zlo + third) & (z < zhi - third)).sum()\n"
    "    assert low < mid, (r['id'], low, mid)\n"
    "print('nibabel checks passed for', len(rows), 'cases')\n";

static char *read_file_all(const char *path, size_t *n)
{
    char *buf = NULL;
    assert_int_equal(mk_fs_read_all(&g_ctx, path, &buf, n), MK_OK);
    return buf;
}

/* Compare every file listed in dirA/manifest.csv (+ label) with dirB: 1 if all identical. */
static int same_files(const char *a, const char *b, const char *rel)
{
    char pa[1024], pb[1024];
    snprintf(pa, sizeof pa, "%s/%s", a, rel);
    snprintf(pb, sizeof pb, "%s/%s", b, rel);
    size_t na, nb;
    char *x = read_file_all(pa, &na), *y = read_file_all(pb, &nb);
    int same = na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static const char *tmpdir(const char *name)
{
    static char buf[4][1024];
    static int k;
    const char *base = getenv("MK_BUILD_DIR");
    char *o = buf[k++ % 4];
    snprintf(o, 1024, "%s/tests/phantoms_%s_%d", base ? base : ".", name, (int)getpid());
    return o;
}

static void rmrf(const char *dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_synth_files_deterministic(void **state)
{
    (void)state;
    mk_phantom_params p;
    small_params(&p, MK_PHANTOM_LUNG);
    p.cases = 3;
    p.size[0] = p.size[1] = 32;
    p.size[2] = 8;
    const char *A = tmpdir("a"), *B = tmpdir("b"), *C = tmpdir("c"), *D = tmpdir("d");
    mk_phantom_summary s;
    assert_int_equal(mk_phantom_synth(&g_ctx, &p, A, &s), MK_OK);
    assert_int_equal(s.files, 2 * 3 * 3 + 3);
    assert_int_equal(mk_phantom_synth(&g_ctx, &p, B, NULL), MK_OK);
    p.cases = 1;
    assert_int_equal(mk_phantom_synth(&g_ctx, &p, D, NULL), MK_OK);
    p.cases = 3;
    p.seed = 43;
    assert_int_equal(mk_phantom_synth(&g_ctx, &p, C, NULL), MK_OK);
    const char *files[] = {"ct/lung_ct_000.nii.gz", "ct/lung_ct_002_label.nii.gz",
                           "mr/lung_mr_001.nii.gz", "mr/lung_mr_002_tissue.nii.gz",
                           "manifest.csv",          "cases.csv"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        assert_true(same_files(A, B, files[i]));
    for (size_t i = 0; i < 4; i++)
        assert_false(same_files(A, C, files[i]));
    /* case 0 is the same when only one case is made */
    assert_true(same_files(A, D, "ct/lung_ct_000.nii.gz"));
    assert_true(same_files(A, D, "mr/lung_mr_000_label.nii.gz"));
    /* manifest header and a row */
    char path[1100];
    snprintf(path, sizeof path, "%s/manifest.csv", A);
    size_t n;
    char *man = read_file_all(path, &n);
    assert_true(strncmp(man, "id,modality,image,label,split,domain\n", 37) == 0);
    assert_non_null(strstr(
        man, "\nlung_ct_000,CT,ct/lung_ct_000.nii.gz,ct/lung_ct_000_label.nii.gz,train,ct\n"));
    assert_non_null(strstr(
        man, "\nlung_mr_002,MR,mr/lung_mr_002.nii.gz,mr/lung_mr_002_label.nii.gz,train,mr\n"));
    free(man);
    /* io's manifest reader accepts it: files exist, labels on the image grids */
    mk_manifest *m = NULL;
    assert_int_equal(mk_manifest_read(&g_ctx, path, &m), MK_OK);
    assert_int_equal(m->nrows, 6);
    assert_int_equal(mk_manifest_check_files(&g_ctx, m), MK_OK);
    for (int r = 0; r < m->nrows; r++)
        assert_int_equal(mk_manifest_check_grid(&g_ctx, m, r), MK_OK);
    assert_string_equal(m->rows[mk_manifest_find(m, "lung_mr_001")].domain, "mr");
    mk_manifest_free(m);
    /* read back through medkd's reader: same voxels as in memory */
    mk_image *img, *lab, *back;
    p.seed = 42;
    assert_int_equal(mk_phantom_volume(&g_ctx, &p, MK_PHANTOM_DOMAIN_MR, 1, &img, &lab, NULL, NULL),
                     MK_OK);
    snprintf(path, sizeof path, "%s/mr/lung_mr_001.nii.gz", A);
    assert_int_equal(mk_io_nifti_read(&g_ctx, path, &back), MK_OK);
    assert_int_equal(back->dtype, MK_DT_FLOAT32);
    assert_memory_equal(back->data, img->data, (size_t)mk_image_nvox(img) * 4);
    assert_true(mk_geom_same_grid(back, img, 1e-5));
    mk_image_free(back);
    mk_image_free(img);
    mk_image_free(lab);
    /* nibabel: geometry, dtypes and per-tissue HU from the files */
    /* nibabel and numpy are declared test dependencies (scripts/deps.list): missing fails */
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import nibabel, numpy' 2>/dev/null") != 0)
        fail_msg("python3 with nibabel and numpy is missing (declared in scripts/deps.list; "
                 "install with 'make deps' as root)");
    {
        char py[1100], cmd[4096];
        snprintf(py, sizeof py, "%s/check.py", A);
        FILE *f = fopen(py, "w");
        assert_non_null(f);
        fputs(NIBABEL_CHECK, f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", py, A);
        assert_int_equal(system(cmd), 0);
    }
    rmrf(A);
    rmrf(B);
    rmrf(C);
    rmrf(D);
}

static void test_synth_cardiac_unlabelled(void **state)
{
    (void)state;
    mk_phantom_params p;
    small_params(&p, MK_PHANTOM_CARDIAC);
    p.cases = 5;
    p.size[0] = p.size[1] = 32;
    p.size[2] = 6;
    p.labelled = 0.0;
    const char *A = tmpdir("card");
    assert_int_equal(mk_phantom_synth(&g_ctx, &p, A, NULL), MK_OK);
    char path[1100];
    snprintf(path, sizeof path, "%s/manifest.csv", A);
    size_t n;
    char *man = read_file_all(path, &n);
    /* training rows without labels, val/test rows with labels */
    assert_non_null(strstr(man, "\ncardiac_mr_000,MR,mr/cardiac_mr_000.nii.gz,,train,mr\n"));
    assert_non_null(strstr(
        man,
        "\ncardiac_ct_003,CT,ct/cardiac_ct_003.nii.gz,ct/cardiac_ct_003_label.nii.gz,val,ct\n"));
    assert_non_null(strstr(
        man,
        "\ncardiac_ct_004,CT,ct/cardiac_ct_004.nii.gz,ct/cardiac_ct_004_label.nii.gz,test,ct\n"));
    free(man);
    rmrf(A);
}

static void test_synth_histo(void **state)
{
    (void)state;
    mk_phantom_params p;
    small_params(&p, MK_PHANTOM_HISTO);
    p.cases = 1;
    p.size[0] = 512;
    p.size[1] = 384;
    const char *A = tmpdir("histo");
    mk_status st = mk_phantom_synth(&g_ctx, &p, A, NULL);
#if MK_PHANTOMS_HAVE_TIFF_WRITER
    assert_int_equal(st, MK_OK);
    char path[1100];
    snprintf(path, sizeof path, "%s/siteA/histo_siteA_000.tif", A);
    mk_tiff_slide *s = NULL;
    assert_int_equal(mk_tiff_open(&g_ctx, path, &s), MK_OK);
    /* levels: 512x384, 256x192, 128x96 (halving until the larger side <= tile 128) */
    assert_int_equal(mk_tiff_level_count(s), 3);
    mk_tiff_level lv;
    assert_int_equal(mk_tiff_level_info(&g_ctx, s, 2, &lv), MK_OK);
    assert_int_equal(lv.width, 128);
    assert_int_equal(lv.height, 96);
    assert_int_equal(mk_tiff_level_info(&g_ctx, s, 0, &lv), MK_OK);
    assert_int_equal(lv.tile_w, 128);
    /* level 0 is lossless: equal to the slide generated in memory */
    mk_image *rgb, *m;
    assert_int_equal(mk_phantom_slide(&g_ctx, &p, MK_PHANTOM_DOMAIN_SITE_A, 0, &rgb, &m, NULL),
                     MK_OK);
    uint8_t *buf = malloc(512 * 384 * 3);
    assert_int_equal(mk_tiff_read_region(&g_ctx, s, 0, 0, 0, 512, 384, buf), MK_OK);
    assert_memory_equal(buf, rgb->data, 512 * 384 * 3);
    free(buf);
    mk_tiff_close(s);
    mk_image_free(rgb);
    mk_image_free(m);
    snprintf(path, sizeof path, "%s/patches.csv", A);
    size_t n;
    char *pc = read_file_all(path, &n);
    assert_true(strncmp(pc, "id,image,level,x,y,size,label,tumour_frac,tissue_frac,split\n", 60) ==
                0);
    int rows = 0;
    for (char *c = pc; *c; c++)
        rows += *c == '\n';
    assert_int_equal(rows, 1 + 2 * (512 / 64) * (384 / 64));
    free(pc);
    /* the same seed gives the same TIFF bytes */
    const char *B = tmpdir("histo_b");
    assert_int_equal(mk_phantom_synth(&g_ctx, &p, B, NULL), MK_OK);
    assert_true(same_files(A, B, "siteB/histo_siteB_000.tif"));
    assert_true(same_files(A, B, "siteA/histo_siteA_000_mask.tif"));
    assert_true(same_files(A, B, "patches.csv"));
    rmrf(B);
#else
    assert_int_equal(st, MK_ERR_UNSUPPORTED);
    print_message("TIFF writer not built yet: histo files not tested\n");
#endif
    rmrf(A);
}

int main(void)
{
    mk_ctx_init(&g_ctx);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_reference),
        cmocka_unit_test(test_split_and_labelled),
        cmocka_unit_test(test_params_check),
        cmocka_unit_test(test_threshold_dice_analytic),
        cmocka_unit_test(test_lung_ct_ranges_and_geometry),
        cmocka_unit_test(test_lung_mr_ranges),
        cmocka_unit_test(test_lung_paired_rendering),
        cmocka_unit_test(test_lung_premise),
        cmocka_unit_test(test_determinism_in_memory),
        cmocka_unit_test(test_cardiac_anatomy_and_shift),
        cmocka_unit_test(test_histo_slide),
        cmocka_unit_test(test_synth_files_deterministic),
        cmocka_unit_test(test_synth_cardiac_unlabelled),
        cmocka_unit_test(test_synth_histo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
