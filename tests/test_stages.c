/* Tests of the training stages: data slicing and normalisation on a hand-made volume, translator
 * shapes and parameter counts, hint-layer validation, a tiny CMEDL run (finite, decreasing
 * losses), the baseline = CMEDL student with lambda_hint 0 (same data, seed, iterations),
 * resume after SIGKILL / cancel equals an uninterrupted run bit for bit, and inference. */
#define _GNU_SOURCE
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/mk_fs.h"
#include "io/mk_nifti.h"
#include "models/mk_translator.h"
#include "phantoms/mk_phantoms.h"
#include "io/mk_manifest.h"
#include "stages/mk_evaluate.h"
#include "stages/mk_stages.h"
#include "test_tmp.h"
#include "stages/stage_internal.h"

/* These tests pin the voxel-axis slicing, the centred crop and no hold-out (the data layout
 * they check by hand); the random sampler, anatomical slicing and the hold-out have their own
 * tests (tests/test_data_geometry.c). */
static void legacy_data(mk_data_params *p)
{
    p->slice_axis = 2;
    p->sampler = MK_SAMPLER_CENTRED;
    p->val_fraction = 0; /* no validation hold-out from the train rows */
}

static char g_tmp[512];
static char g_phantoms[600];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void sub(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_tmp, name);
}

/* ---------------------------------------------------------------- data on a hand-made volume */

/* CT volume 12 x 10 x 5 (i, j, k), int16 HU: air -1000 outside a body box i in [2, 9], j in [1, 8]
 * (HU 50 = window centre -> 0.0), a "tumour" of HU 300 (-> +1) at i 4..5, j 3..4 on slice k = 2,
 * slice k = 0 empty of body (all air). */
static void write_hand_volume(const char *img_path, const char *lab_path)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {12, 10, 5};
    mk_image *img = NULL, *lab = NULL;
    assert_int_equal(mk_image_new(&ctx, MK_DT_INT16, 3, dim, &img), MK_OK);
    assert_int_equal(mk_image_new(&ctx, MK_DT_UINT8, 3, dim, &lab), MK_OK);
    for (int k = 0; k < 5; k++)
        for (int j = 0; j < 10; j++)
            for (int i = 0; i < 12; i++) {
                int64_t q = i + 12 * (j + 10 * k);
                double v = -1000;
                if (k > 0 && i >= 2 && i <= 9 && j >= 1 && j <= 8)
                    v = 50;
                if (k == 2 && i >= 4 && i <= 5 && j >= 3 && j <= 4) {
                    v = 300;
                    mk_image_set(lab, q, 1);
                }
                if (k == 3 && i == 9 && j == 8)
                    mk_image_set(lab, q, 2); /* another label value: not the structure */
                mk_image_set(img, q, v);
            }
    assert_int_equal(mk_io_nifti_write(&ctx, img_path, img), MK_OK);
    assert_int_equal(mk_io_nifti_write(&ctx, lab_path, lab), MK_OK);
    mk_image_free(img);
    mk_image_free(lab);
}

/* A folder under the test root holding the hand volume (ct.nii.gz, ct_label.nii.gz) and a
 * manifest.csv with the given text; dir and man (700 bytes each) receive their paths. */
static void hand_fixture(const char *name, const char *manifest_text, char *dir, char *man)
{
    char img[800], lab[800];
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    sub(dir, 600, name);
    assert_int_equal(mk_fs_mkdirs(&ctx, dir), MK_OK);
    snprintf(img, sizeof img, "%s/ct.nii.gz", dir);
    snprintf(lab, sizeof lab, "%s/ct_label.nii.gz", dir);
    snprintf(man, 700, "%s/manifest.csv", dir);
    write_hand_volume(img, lab);
    FILE *f = fopen(man, "w");
    assert_non_null(f);
    fputs(manifest_text, f);
    fclose(f);
}

/* Rewrite the manifest `man` with `text`, load `modality` rows of the train split, and expect the
 * status `want` (MK_OK is never expected here: -1 means any error) with `msg` in the message. */
static void expect_load_error(const char *man, const char *text, const mk_data_params *p,
                              int need_labels, int want, const char *msg)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    FILE *f = fopen(man, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    mk_slices s;
    mk_status st = mk_data_load(&ctx, p, "CT", "train", need_labels, 5, &s);
    if (want < 0)
        assert_int_not_equal(st, MK_OK);
    else
        assert_int_equal(st, want);
    if (!strstr(mk_ctx_errmsg(&ctx), msg))
        fail_msg("expected '%s' in: %s", msg, mk_ctx_errmsg(&ctx));
}

static void test_data_hand_volume(void **state)
{
    (void)state;
    char dir[700], man[700];
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    hand_fixture("hand",
                 "id,modality,image,label,split,domain\n"
                 "c0,CT,ct.nii.gz,ct_label.nii.gz,train,ct\n"
                 "m0,MR,ct.nii.gz,,train,mr\n",
                 dir, man);

    mk_data_params p;
    mk_data_defaults(&p);
    legacy_data(&p);
    p.manifest = man;
    p.patch[0] = 8; /* along i */
    p.patch[1] = 4; /* along j */
    p.empty_ratio = 1.0;
    mk_slices s;
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 1, 5, &s), MK_OK);
    /* body slices k = 1..4; one with the tumour (k = 2), one empty kept per tumour slice */
    assert_int_equal(s.n, 2);
    assert_int_equal(s.n_fg, 1);
    assert_int_equal(s.w, 8);
    assert_int_equal(s.h, 4);
    assert_non_null(s.lab);
    /* slices keep volume order; find the tumour slice */
    int fg = -1;
    for (int i = 0; i < 2; i++) {
        int any = 0;
        for (int q = 0; q < 32; q++)
            any |= s.lab[i * 32 + q];
        if (any)
            fg = i;
    }
    assert_true(fg >= 0);
    /* body bbox i 2..9 (centre (2+9+1)/2 = 6, start 6-4 = 2), j 1..8 (centre 5, start 3): the
     * tumour j 3..4 lies in [3, 6]: crop starts (2, 3). Tumour at x = 4-2..5-2, y = 0..1. */
    const float *im = s.img + fg * 32;
    const int32_t *lb = s.lab + fg * 32;
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 8; x++) {
            int i = x + 2, j = y + 3;
            int tum = i >= 4 && i <= 5 && j >= 3 && j <= 4;
            int body = i >= 2 && i <= 9 && j >= 1 && j <= 8;
            float want = tum ? 1.0f : body ? 0.0f : -1.0f; /* (HU+200)/500*2-1 */
            assert_float_equal(im[y * 8 + x], want, 1e-6);
            assert_int_equal(lb[y * 8 + x], tum);
        }
    mk_slices_free(&s);

    /* crop_jitter 1: the slice is kept as a 10 x 6 canvas, centred the same way (i: body centre 6,
     * start 6 - 5 = 1; j: centre 5, start 5 - 3 = 2), so the patch at offset (1, 1) is the
     * fixed crop above and the patch at (0, 0) starts at (i, j) = (1, 2) */
    p.crop_jitter = 1;
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 1, 5, &s), MK_OK);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.w, 8);
    assert_int_equal(s.h, 4);
    assert_int_equal(s.cw, 10);
    assert_int_equal(s.ch, 6);
    float px[32];
    int32_t py[32];
    for (int sl = 0; sl < 2; sl++)
        for (int off = 0; off < 2; off++) {
            mk_slices_crop(&s, sl, off, off, px, py, NULL);
            int any = 0;
            for (int q = 0; q < 32; q++)
                any |= py[q];
            if (!any)
                continue; /* the empty slice */
            for (int y = 0; y < 4; y++)
                for (int x = 0; x < 8; x++) {
                    int i = x + 1 + off, j = y + 2 + off;
                    int tum = i >= 4 && i <= 5 && j >= 3 && j <= 4;
                    int body = i >= 2 && i <= 9 && j >= 1 && j <= 8;
                    assert_float_equal(px[y * 8 + x], tum ? 1.0f : body ? 0.0f : -1.0f, 1e-6);
                    assert_int_equal(py[y * 8 + x], tum);
                }
        }
    mk_slices_free(&s);
    p.crop_jitter = 0;

    /* empty_ratio 0: the tumour slice only; label value 2 selects the other structure */
    p.empty_ratio = 0;
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 1, 5, &s), MK_OK);
    assert_int_equal(s.n, 1);
    mk_slices_free(&s);
    p.label = 2;
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 1, 5, &s), MK_OK);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.n_fg, 1);
    /* the crop was shifted to contain i = 9, j = 8: u0 = max(2, 9-8+1) = 2, v0 = max(3, 8-4+1) = 5
     */
    assert_int_equal(s.lab[3 * 8 + 7], 1);
    mk_slices_free(&s);
    p.label = 1;

    /* unlabelled MRI rows: every body slice, min-max normalisation [-1000, 300] -> [-1, 1] */
    p.mri_norm = MK_MRI_MINMAX;
    assert_int_equal(mk_data_load(&ctx, &p, "MR", "train", 0, 5, &s), MK_OK);
    assert_int_equal(s.n, 4);
    assert_null(s.lab);
    double want = (50.0 + 1000.0) / 1300.0 * 2.0 - 1.0;
    assert_float_equal(s.img[1 * 8 + 4], want, 1e-5); /* slice k=1, i=6, j=4: body */
    mk_slices_free(&s);

    /* errors: labels required but missing, no rows, bad manifest header */
    assert_int_equal(mk_data_load(&ctx, &p, "MR", "train", 1, 5, &s), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "column label"));
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "test", 1, 5, &s), MK_ERR_NOT_FOUND);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "split 'test'"));
    /* no label column: the stage that needs labels says which row lacks one */
    expect_load_error(man, "id,modality,image,split\nc0,CT,ct.nii.gz,train\n", &p, 1, MK_ERR_FORMAT,
                      "manifest.csv:2: column label");
    expect_load_error(man, "id,modality,image,label,split\nc0,CT,missing.nii.gz,,train\n", &p, 0,
                      -1, "manifest.csv:2: column image");
}

/* A paired column (cmedl.oracle_pmri): the paired image is cut with the row image's crops. Paired
 * image here = the label map itself (values 0, 1 and one voxel of 2), min-max normalised as MRI:
 * L -> L - 1, so the paired patch must read 0 exactly on the tumour and -1 elsewhere. */
static void test_data_paired_column(void **state)
{
    (void)state;
    char dir[700], man[700], small[800];
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    hand_fixture("paired",
                 "id,modality,image,label,split,domain,paired_mr\n"
                 "c0,CT,ct.nii.gz,ct_label.nii.gz,train,ct,ct_label.nii.gz\n",
                 dir, man);
    snprintf(small, sizeof small, "%s/small.nii.gz", dir);
    mk_data_params p;
    mk_data_defaults(&p);
    legacy_data(&p);
    p.manifest = man;
    p.patch[0] = 8;
    p.patch[1] = 4;
    p.crop_jitter = 1;
    p.mri_norm = MK_MRI_MINMAX;
    p.paired_column = "paired_mr";
    mk_slices s;
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 1, 5, &s), MK_OK);
    assert_int_equal(s.n, 2);
    assert_non_null(s.img2);
    float px[32], p2[32];
    int32_t py[32];
    int seen_fg = 0;
    for (int sl = 0; sl < 2; sl++)
        for (int off = 0; off < 3; off++) {
            mk_slices_crop(&s, sl, off, 2 - off, px, py, p2);
            int any = 0;
            for (int q = 0; q < 32; q++)
                any |= py[q];
            seen_fg += any;
            for (int q = 0; q < 32; q++) {
                /* the label-2 voxel (k = 3) may lie in the empty slice: it reads +1 */
                float want = py[q] ? 0.0f : -1.0f;
                if (!any && p2[q] > 0.5f)
                    want = 1.0f;
                assert_float_equal(p2[q], want, 1e-6);
                /* the CT patch is the same crop: tumour voxels read +1 there too */
                assert_true(!py[q] || px[q] == 1.0f);
            }
        }
    assert_int_equal(seen_fg, 3);
    mk_slices_free(&s);
    /* without paired_column nothing is loaded for it */
    p.paired_column = NULL;
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 1, 5, &s), MK_OK);
    assert_null(s.img2);
    mk_slices_free(&s);
    p.paired_column = "paired_mr";

    /* errors: no such column, an empty field, another grid */
    expect_load_error(man, "id,modality,image,label,split\nc0,CT,ct.nii.gz,ct_label.nii.gz,train\n",
                      &p, 1, MK_ERR_FORMAT, "column 'paired_mr'");
    expect_load_error(man,
                      "id,modality,image,label,split,paired_mr\n"
                      "c0,CT,ct.nii.gz,ct_label.nii.gz,train,\n",
                      &p, 1, MK_ERR_FORMAT, "manifest.csv:2: column paired_mr");
    mk_image *im = NULL;
    int64_t dim[3] = {4, 4, 4};
    assert_int_equal(mk_image_new(&ctx, MK_DT_FLOAT32, 3, dim, &im), MK_OK);
    assert_int_equal(mk_io_nifti_write(&ctx, small, im), MK_OK);
    mk_image_free(im);
    expect_load_error(man,
                      "id,modality,image,label,split,paired_mr\n"
                      "c0,CT,ct.nii.gz,ct_label.nii.gz,train,small.nii.gz\n",
                      &p, 1, MK_ERR_GEOMETRY, "expected the image's grid 12x10x5, got 4x4x4");
}

/* ---------------------------------------------------------------- translator */

static void test_translator_shapes(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_translator *G = NULL, *D = NULL;
    int w = 4;
    assert_int_equal(mk_translator_new(&ctx, MK_TRANSLATOR_GEN, w, 3, &G), MK_OK);
    assert_int_equal(mk_translator_new(&ctx, MK_TRANSLATOR_DISC, w, 4, &D), MK_OK);
    mk_translator *bad = NULL;
    assert_int_equal(mk_translator_new(&ctx, MK_TRANSLATOR_GEN, 0, 3, &bad), MK_ERR_INVALID);
    assert_null(bad);
    /* parameter counts by hand: generator convs (w*1*9+w) + (2w*w*9+2w) + 2*(2w*2w*9+2w)
     * + transposed (2w*w*4+w) + (1*w*9+1); instance norms 2*(w + 2w + 2w + 2w + w) */
    int64_t gen = (w * 9 + w) + (2 * w * w * 9 + 2 * w) + 2 * (4 * w * w * 9 + 2 * w) +
                  (2 * w * w * 4 + w) + (w * 9 + 1) + 2 * (w + 2 * w + 2 * w + 2 * w + w);
    int64_t disc = (w * 16 + w) + (2 * w * w * 16 + 2 * w) + (2 * w * 9 + 1) + 2 * (2 * w);
    assert_int_equal(mk_nn_params_numel(mk_translator_params(G)), gen);
    assert_int_equal(mk_nn_params_numel(mk_translator_params(D)), disc);
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    mk_nn_graph_begin(g, 1);
    int64_t ne[4] = {2, 1, 16, 12};
    mk_var *x = mk_nn_zeros(g, 4, ne);
    for (int i = 0; i < 2 * 16 * 12; i++)
        x->t.data[i] = sinf(0.37f * (float)i);
    mk_var *y = mk_translator_forward(G, g, x);
    assert_non_null(y);
    assert_int_equal(y->t.ndim, 4);
    assert_int_equal(y->t.ne[0], 2);
    assert_int_equal(y->t.ne[1], 1);
    assert_int_equal(y->t.ne[2], 16);
    assert_int_equal(y->t.ne[3], 12);
    for (int i = 0; i < 2 * 16 * 12; i++)
        assert_true(y->t.data[i] > -1.0f && y->t.data[i] < 1.0f);
    mk_var *d = mk_translator_forward(D, g, y);
    /* k4 s2 p1 twice: 16 -> 8 -> 4, 12 -> 6 -> 3; then k3 p1 keeps it */
    assert_int_equal(d->t.ne[1], 1);
    assert_int_equal(d->t.ne[2], 4);
    assert_int_equal(d->t.ne[3], 3);
    /* gradient reaches the generator's first layer through D */
    mk_nn_backward(g, mk_nn_adv_ls(g, d, 1.0f));
    mk_param *p0 = mk_nn_params_find(mk_translator_params(G), "c0.weight");
    assert_non_null(p0);
    double gs = 0;
    for (int i = 0; i < w * 9; i++)
        gs += fabs(p0->grad[i]);
    assert_true(gs > 0);
    mk_nn_graph_free(g);
    mk_translator_free(G);
    mk_translator_free(D);
}

/* ---------------------------------------------------------------- hint names */

static void test_hint_names(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char names[3][32] = {"dec_prev", "dec_last", "bottleneck"}, res[3][32];
    assert_int_equal(
        mk_stage_hint_check(&ctx, "cmedl.hint_layers", 3, 3, (const char(*)[32])names, res), MK_OK);
    assert_string_equal(res[0], "dec0");
    assert_string_equal(res[1], "dec1");
    assert_string_equal(res[2], "bottleneck");
    char bad[2][32] = {"dec1", "prelogits"};
    assert_int_equal(
        mk_stage_hint_check(&ctx, "cmedl.hint_layers", 3, 2, (const char(*)[32])bad, NULL),
        MK_ERR_CONFIG);
    const char *m = mk_ctx_errmsg(&ctx);
    assert_non_null(strstr(m, "cmedl.hint_layers[1]: 'prelogits'"));
    assert_non_null(strstr(m, "enc0, enc1, bottleneck, dec0, dec1, logits"));
    char bad2[1][32] = {"dec2"};
    assert_int_equal(
        mk_stage_hint_check(&ctx, "cmedl.hint_layers", 3, 1, (const char(*)[32])bad2, NULL),
        MK_ERR_CONFIG);
    assert_int_equal(
        mk_stage_hint_check(&ctx, "cmedl.hint_layers", 4, 1, (const char(*)[32])bad2, NULL), MK_OK);

    /* the stage itself refuses a bad name before loading any data */
    mk_stage_common c;
    mk_stage_common_defaults(&c);
    c.data.manifest = "/nonexistent/manifest.csv";
    c.run_dir = g_tmp;
    mk_translate_params tp;
    mk_translate_defaults(&tp);
    mk_cmedl_params cp;
    mk_cmedl_defaults(&cp);
    snprintf(cp.hint_layers.v[1], 32, "prelogits");
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL), MK_ERR_CONFIG);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "valid names"));
}

/* ---------------------------------------------------------------- small training runs */

static void small_setup(mk_stage_common *c, mk_translate_params *tp, mk_cmedl_params *cp,
                        const char *run_dir)
{
    static char man[700];
    snprintf(man, sizeof man, "%s/manifest.csv", g_phantoms);
    mk_stage_common_defaults(c);
    c->run_dir = run_dir;
    c->seed = 3;
    c->threads = 1;
    c->data.manifest = man;
    legacy_data(&c->data);
    c->data.patch[0] = c->data.patch[1] = 16;
    c->unet.base = 4;
    c->log_every = 1000;
    c->checkpoint_every = 1000;
    mk_translate_defaults(tp);
    tp->gen_width = 4;
    tp->disc_width = 4;
    tp->batch = 2;
    mk_cmedl_defaults(cp);
    cp->batch = 4;
    cp->lr = 2e-3f;
}

static void load_unet(const char *path, mk_unet_cfg *cfg, mk_unet **out)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_unet_new(&ctx, cfg, 0, out), MK_OK);
    assert_int_equal(mk_model_load(&ctx, path, "params", mk_unet_params(*out), NULL), MK_OK);
}

/* 1 if every parameter and buffer of the two files is bit-identical */
static int same_weights(const char *a, const char *b, mk_unet_cfg *cfg)
{
    mk_unet *na, *nb;
    load_unet(a, cfg, &na);
    load_unet(b, cfg, &nb);
    mk_nn_params *pa = mk_unet_params(na), *pb = mk_unet_params(nb);
    int same = 1;
    for (int i = 0; i < mk_nn_params_count(pa); i++) {
        mk_param *x = mk_nn_params_at(pa, i), *y = mk_nn_params_at(pb, i);
        same &= memcmp(x->value.data, y->value.data,
                       (size_t)mk_tensor_numel(&x->value) * sizeof(float)) == 0;
    }
    mk_unet_free(na);
    mk_unet_free(nb);
    return same;
}

static void test_cmedl_tiny_run(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char rd[600], path[700];
    sub(rd, sizeof rd, "run_tiny");
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    small_setup(&c, &tp, &cp, rd);
    tp.iterations = 6;
    cp.iterations = 40;
    mk_train_stats ts, cs;
    assert_int_equal(mk_stage_translate(&ctx, &c, &tp, &ts), MK_OK);
    assert_true(isfinite(ts.first_loss) && isfinite(ts.last_loss));
    snprintf(path, sizeof path, "%s/models/translator.h5", rd);
    assert_true(mk_fs_is_file(path));
    int rc = mk_stage_cmedl(&ctx, &c, &tp, &cp, &cs);
    if (rc != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    print_message("cmedl tiny: loss_s %.4f -> %.4f, hint %.5f, %.1f it/s\n", cs.first_loss,
                  cs.last_loss, cs.last_hint, cs.iters_per_s);
    assert_true(isfinite(cs.first_loss) && isfinite(cs.last_loss) && isfinite(cs.last_hint));
    assert_true(cs.last_loss < cs.first_loss);
    assert_true(cs.last_hint > 0);
    const char *files[] = {"models/cmedl_student.h5", "models/cmedl_teacher.h5",
                           "models/cmedl_translator.h5", "checkpoints/cmedl.h5"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", rd, files[i]);
        assert_true(mk_fs_is_file(path));
    }

    /* inference with the student on a phantom CT volume: uint8 mask on the CT's grid */
    char ctp[800];
    snprintf(ctp, sizeof ctp, "%s/ct/lung_ct_000.nii.gz", g_phantoms);
    mk_image *ct = NULL, *mask = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, ctp, &ct), MK_OK);
    snprintf(path, sizeof path, "%s/models/cmedl_student.h5", rd);
    assert_int_equal(mk_stage_predict_volume(&ctx, path, &c.unet, ct, &c.data, 2, &mask), MK_OK);
    assert_int_equal(mask->dtype, MK_DT_UINT8);
    for (int a = 0; a < 3; a++)
        assert_int_equal(mask->dim[a], ct->dim[a]);
    assert_true(mk_geom_same_grid(mask, ct, 1e-9));
    int64_t n = mk_image_nvox(mask);
    for (int64_t i = 0; i < n; i++)
        assert_true(((uint8_t *)mask->data)[i] <= 1);
    mk_image_free(mask);
    /* a missing model file is a clear error */
    assert_int_not_equal(
        mk_stage_predict_volume(&ctx, "/nonexistent.h5", &c.unet, ct, &c.data, 1, &mask), MK_OK);
    assert_null(mask);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "/nonexistent.h5"));

    /* the teacher on pseudo-MRI, with the pseudo-MRI itself returned: float32 on the CT's grid,
     * in G's tanh range; with one window per slice (patch = slice) it is G applied to the
     * normalised slice, which is computed here directly for one slice */
    char tpath[700], gpath[700];
    snprintf(tpath, sizeof tpath, "%s/models/cmedl_teacher.h5", rd);
    snprintf(gpath, sizeof gpath, "%s/models/cmedl_translator.h5", rd);
    mk_image *pm = NULL;
    assert_int_equal(mk_stage_predict_volume_via(&ctx, tpath, &c.unet, gpath, tp.gen_width, ct,
                                                 &c.data, 1, &mask, &pm),
                     MK_OK);
    assert_non_null(pm);
    assert_int_equal(pm->dtype, MK_DT_FLOAT32);
    assert_true(mk_geom_same_grid(pm, ct, 1e-9));
    for (int64_t i = 0; i < mk_image_nvox(pm); i++)
        assert_true(fabsf(((float *)pm->data)[i]) <= 1.0f);
    mk_image_free(pm);
    mk_image_free(mask);
    pm = mask = NULL;
    mk_data_params whole = c.data;
    whole.patch[0] = (int)ct->dim[0];
    whole.patch[1] = (int)ct->dim[1];
    assert_int_equal(mk_stage_predict_volume_via(&ctx, tpath, &c.unet, gpath, tp.gen_width, ct,
                                                 &whole, 1, &mask, &pm),
                     MK_OK);
    mk_translator *gen = NULL;
    assert_int_equal(mk_translator_new(&ctx, MK_TRANSLATOR_GEN, tp.gen_width, 0, &gen), MK_OK);
    mk__ck_model gm = {"G", mk_translator_params(gen), NULL};
    assert_int_equal(mk__ckpt_load(&ctx, gpath, "translator", NULL, &gm, 1, NULL, 0), MK_OK);
    int64_t W = ct->dim[0], H = ct->dim[1], ks = ct->dim[2] / 2;
    float *vol = malloc((size_t)mk_image_nvox(ct) * sizeof *vol);
    assert_non_null(vol);
    assert_int_equal(mk_data_normalise(&ctx, &c.data, ct, 1, vol), MK_OK);
    mk_tensor x = {0};
    int64_t xne[4] = {1, 1, H, W};
    assert_int_equal(mk_tensor_new(&x, 4, xne), 0);
    memcpy(x.data, vol + ks * W * H, (size_t)(W * H) * sizeof(float));
    mk_nn_graph *g = mk_nn_graph_new(1, 0);
    mk_nn_graph_begin(g, 0);
    mk_nn_graph_set_no_grad(g, 1);
    mk_var *y = mk_translator_forward(gen, g, mk_nn_input(g, &x, 0));
    assert_non_null(y);
    double worst = 0;
    for (int64_t q = 0; q < W * H; q++)
        worst = fmax(worst, fabs((double)y->t.data[q] - ((float *)pm->data)[ks * W * H + q]));
    print_message("pseudo-MRI vs G on slice %lld: max |diff| %.3g\n", (long long)ks, worst);
    assert_true(worst < 1e-6);
    mk_nn_graph_free(g);
    mk_tensor_free(&x);
    free(vol);
    mk_translator_free(gen);
    mk_image_free(pm);
    mk_image_free(mask);
    mk_image_free(ct);
}

/* Sliding-window blending weights against hand values: an 8 x 4 window has sigma 1 and 0.5,
 * centre (3.5, 1.5); weights are exp(-((x-3.5)^2 + 4 (y-1.5)^2) / 2) over the central value
 * exp(-0.625). */
static void test_window_weights(void **state)
{
    (void)state;
    float w[32];
    mk__window_weights(8, 4, 0, w);
    assert_float_equal(w[1 * 8 + 3], 1.0f, 1e-7);
    assert_float_equal(w[2 * 8 + 4], 1.0f, 1e-7);
    assert_float_equal(w[0], (float)exp(-10.0), 1e-10);
    assert_float_equal(w[3 * 8 + 7], (float)exp(-10.0), 1e-10);
    assert_float_equal(w[0 * 8 + 3], (float)exp(-4.0), 1e-8);
    assert_float_equal(w[1 * 8 + 0], (float)exp(-6.0), 1e-8);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 8; x++)
            assert_float_equal(w[y * 8 + x], w[(3 - y) * 8 + (7 - x)], 1e-9);
    mk__window_weights(8, 4, 1, w);
    for (int i = 0; i < 32; i++)
        assert_float_equal(w[i], 1.0f, 0);
}

static void load_translator_g(const char *path, int width, mk_translator **out)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_translator_new(&ctx, MK_TRANSLATOR_GEN, width, 0, out), MK_OK);
    mk__ck_model gm = {"G", mk_translator_params(*out), NULL};
    assert_int_equal(mk__ckpt_load(&ctx, path, "translator", NULL, &gm, 1, NULL, 0), MK_OK);
}

/* 1 if G of the two cmedl runs is bit-identical */
static int same_generator(const char *run_a, const char *run_b, int width)
{
    char pa[700], pb[700];
    snprintf(pa, sizeof pa, "%s/models/cmedl_translator.h5", run_a);
    snprintf(pb, sizeof pb, "%s/models/cmedl_translator.h5", run_b);
    mk_translator *ga, *gb;
    load_translator_g(pa, width, &ga);
    load_translator_g(pb, width, &gb);
    mk_nn_params *qa = mk_translator_params(ga), *qb = mk_translator_params(gb);
    int same = mk_nn_params_count(qa) == mk_nn_params_count(qb);
    for (int i = 0; same && i < mk_nn_params_count(qa); i++) {
        mk_param *x = mk_nn_params_at(qa, i), *y = mk_nn_params_at(qb, i);
        same &= memcmp(x->value.data, y->value.data,
                       (size_t)mk_tensor_numel(&x->value) * sizeof(float)) == 0;
    }
    mk_translator_free(ga);
    mk_translator_free(gb);
    return same;
}

/* teacher_learns_pmri = false: the teacher learns on real MRI alone, so its weights cannot depend
 * on the translator (here: G's learning rate), while with the default they do; its loss on
 * pseudo-MRI still trains G (G differs from a run where that loss is cut off with seg_to_i2i
 * semantics through w_seg_i2i = 0). Inconsistent settings are refused before training. */
static void test_teacher_learns_pmri(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    const char *names[5] = {"run_tlp0_a", "run_tlp0_b", "run_tlp1_a", "run_tlp1_b", "run_tlp0_w0"};
    char r[5][600], pt[5][700];
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    for (int i = 0; i < 5; i++) {
        sub(r[i], sizeof r[i], names[i]);
        small_setup(&c, &tp, &cp, r[i]);
        cp.iterations = 4;
        cp.teacher_learns_pmri = i == 2 || i == 3 ? 1 : 0;
        tp.lr = i == 1 || i == 3 ? 1e-3f : 2e-4f;
        cp.w_seg_i2i = i == 4 ? 0.0f : 1.0f;
        if (mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL) != MK_OK)
            fail_msg("%s: %s", names[i], mk_ctx_errmsg(&ctx));
        snprintf(pt[i], sizeof pt[i], "%.600s/models/cmedl_teacher.h5", r[i]);
    }
    assert_true(same_weights(pt[0], pt[1], &c.unet));
    assert_false(same_weights(pt[2], pt[3], &c.unet));
    assert_true(same_weights(pt[0], pt[4], &c.unet)); /* the teacher never sees that gradient */
    assert_false(same_generator(r[0], r[4], tp.gen_width));

    char bad[600];
    sub(bad, sizeof bad, "run_tlp_bad");
    small_setup(&c, &tp, &cp, bad);
    cp.iterations = 1;
    cp.teacher_learns_pmri = 0;
    cp.teacher_mri_labels = 0;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL), MK_ERR_CONFIG);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "teacher_mri_labels"));
    cp.teacher_mri_labels = 1;
    cp.hint_to_teacher = 1;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL), MK_ERR_CONFIG);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "hint_to_teacher"));
}

/* Mean of the pseudo-MRI of CT case 0 (a training case) inside its tumour mask, with the
 * generator of a cmedl run. */
static double pmri_tumour_mean(const char *run_dir, mk_stage_common *c, int gen_width)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char ctp[800], lbp[800], tpath[700], gpath[700];
    snprintf(ctp, sizeof ctp, "%s/ct/lung_ct_000.nii.gz", g_phantoms);
    snprintf(lbp, sizeof lbp, "%s/ct/lung_ct_000_label.nii.gz", g_phantoms);
    snprintf(tpath, sizeof tpath, "%.600s/models/cmedl_teacher.h5", run_dir);
    snprintf(gpath, sizeof gpath, "%.600s/models/cmedl_translator.h5", run_dir);
    mk_image *ct = NULL, *lab = NULL, *mask = NULL, *pm = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, ctp, &ct), MK_OK);
    assert_int_equal(mk_io_nifti_read(&ctx, lbp, &lab), MK_OK);
    assert_int_equal(mk_stage_predict_volume_via(&ctx, tpath, &c->unet, gpath, gen_width, ct,
                                                 &c->data, 1, &mask, &pm),
                     MK_OK);
    double sum = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < mk_image_nvox(lab); i++)
        if (mk_image_get(lab, i) == 1) {
            sum += ((float *)pm->data)[i];
            n++;
        }
    assert_true(n > 0);
    mk_image_free(ct);
    mk_image_free(lab);
    mk_image_free(mask);
    mk_image_free(pm);
    return sum / (double)n;
}

/* lambda_tumour_i2i pulls the pseudo-MRI inside the CT tumours towards the real MRI tumours' mean
 * (normalised MRI tumours sit near the top of the range): after the same short training, the
 * pseudo-MRI of a training case is brighter inside its tumour with the loss than without. */
static void test_tumour_contrast_loss(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char r0[600], r1[600];
    sub(r0, sizeof r0, "run_tum_off");
    sub(r1, sizeof r1, "run_tum_on");
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    double m[2];
    for (int i = 0; i < 2; i++) {
        small_setup(&c, &tp, &cp, i ? r1 : r0);
        cp.iterations = 25;
        tp.lr = 2e-3f;
        cp.lambda_tumour_i2i = i ? 20.0f : 0.0f;
        if (mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL) != MK_OK)
            fail_msg("%s", mk_ctx_errmsg(&ctx));
        m[i] = pmri_tumour_mean(i ? r1 : r0, &c, tp.gen_width);
    }
    print_message("pseudo-MRI inside the tumour: %.3f without, %.3f with the loss\n", m[0], m[1]);
    assert_true(m[1] > m[0] + 0.1);
}

/* w_seg_i2i scales only the gradient the pseudo-MRI loss sends into G: 0 gives exactly the run
 * with seg_to_i2i = false (every network bit-identical), and 3 moves G away from 1. */
static void test_w_seg_i2i(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    const char *names[4] = {"run_wi_0", "run_wi_off", "run_wi_1", "run_wi_3"};
    char r[4][600], ps[4][700], pt[4][700];
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    for (int i = 0; i < 4; i++) {
        sub(r[i], sizeof r[i], names[i]);
        small_setup(&c, &tp, &cp, r[i]);
        cp.iterations = 3;
        cp.seg_to_i2i = i != 1;
        cp.w_seg_i2i = i == 0 ? 0.0f : i == 3 ? 3.0f : 1.0f;
        assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL), MK_OK);
        snprintf(ps[i], sizeof ps[i], "%.600s/models/cmedl_student.h5", r[i]);
        snprintf(pt[i], sizeof pt[i], "%.600s/models/cmedl_teacher.h5", r[i]);
    }
    assert_true(same_generator(r[0], r[1], tp.gen_width));
    assert_true(same_weights(ps[0], ps[1], &c.unet));
    assert_true(same_weights(pt[0], pt[1], &c.unet));
    assert_false(same_generator(r[0], r[2], tp.gen_width));
    assert_false(same_generator(r[2], r[3], tp.gen_width));
}

/* cmedl.oracle_pmri: the teacher sees the paired MR rendering, a constant input, so the
 * translator gets only its own losses -- bit-identical to seg_to_i2i = false -- while teacher
 * and student differ from that run (their input is another image). */
static void test_oracle_pmri(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char ra[600], rb[600], pa[2][700], pb[2][700];
    sub(ra, sizeof ra, "run_oracle");
    sub(rb, sizeof rb, "run_oracle_ref");
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    small_setup(&c, &tp, &cp, ra);
    cp.iterations = 3;
    cp.oracle_pmri = 1;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL), MK_OK);
    small_setup(&c, &tp, &cp, rb);
    cp.iterations = 3;
    cp.seg_to_i2i = 0;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL), MK_OK);
    assert_true(same_generator(ra, rb, tp.gen_width));
    for (int k = 0; k < 2; k++) {
        const char *n = k ? "teacher" : "student";
        snprintf(pa[k], sizeof pa[k], "%s/models/cmedl_%s.h5", ra, n);
        snprintf(pb[k], sizeof pb[k], "%s/models/cmedl_%s.h5", rb, n);
        assert_false(same_weights(pa[k], pb[k], &c.unet));
    }
    /* the oracle replaces the pseudo-MRI the teacher learns on: no frozen-teacher mode with it */
    char rc[600];
    sub(rc, sizeof rc, "run_oracle_bad");
    small_setup(&c, &tp, &cp, rc);
    cp.iterations = 1;
    cp.oracle_pmri = 1;
    cp.teacher_learns_pmri = 0;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL), MK_ERR_CONFIG);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "oracle_pmri"));
}

/* The evaluate stage's input_column (the oracle teacher): each test case's mask is the model's
 * prediction on the case's paired MRI, normalised as MRI, not on the CT; a missing column is named
 * in the error and writes nothing. */
static void test_evaluate_input_column(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char ra[600], teacher[700], man[700];
    sub(ra, sizeof ra, "run_oracle_eval");
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    small_setup(&c, &tp, &cp, ra);
    cp.iterations = 30; /* enough for the teacher's masks to depend on its input */
    cp.oracle_pmri = 1;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL), MK_OK);
    snprintf(teacher, sizeof teacher, "%s/models/cmedl_teacher.h5", ra);
    mk_eval_stage_params ep = {0};
    ep.split = "test";
    ep.tolerance_mm = 1.0;
    assert_int_equal(mk_metric_conv_parse(&ctx, "deepmind", &ep.convention), MK_OK);
    ep.write_masks = 1;
    ep.version = "test";
    ep.command_line = "test";
    mk_eval_model mod = {0};
    mod.name = "oracle_teacher";
    mod.model_h5 = teacher;
    mod.input_column = "paired_mr";
    mk_eval_model_summary sum;
    if (mk_stage_evaluate(&ctx, &c, &ep, &mod, 1, &sum) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    snprintf(man, sizeof man, "%s/manifest.csv", g_phantoms);
    mk_manifest *m = NULL;
    assert_int_equal(mk_manifest_read(&ctx, man, &m), MK_OK);
    int pcol = -1, ncase = 0, differs = 0;
    for (int e = 0; e < m->nextra; e++)
        if (!strcmp(m->extra_names[e], "paired_mr"))
            pcol = e;
    assert_true(pcol >= 0);
    for (int r = 0; r < m->nrows; r++) {
        const mk_manifest_row *row = &m->rows[r];
        if (strcmp(row->modality, "CT") || strcmp(row->split, "test"))
            continue;
        char mp[1400], wp[1400];
        snprintf(mp, sizeof mp, "%s/%s", m->dir, row->extra[pcol]);
        snprintf(wp, sizeof wp, "%s/masks/oracle_teacher/%s.nii.gz", ra, row->id);
        mk_image *ct = NULL, *mr = NULL, *want = NULL, *on_ct = NULL, *got = NULL;
        assert_int_equal(mk_io_nifti_read(&ctx, row->image_path, &ct), MK_OK);
        assert_int_equal(mk_io_nifti_read(&ctx, mp, &mr), MK_OK);
        assert_int_equal(mk_io_nifti_read(&ctx, wp, &got), MK_OK);
        assert_int_equal(mk_stage_predict_volume_mr(&ctx, teacher, &c.unet, mr, &c.data, 1, &want),
                         MK_OK);
        assert_int_equal(mk_stage_predict_volume(&ctx, teacher, &c.unet, ct, &c.data, 1, &on_ct),
                         MK_OK);
        int64_t n = mk_image_nvox(ct);
        assert_int_equal(mk_image_nvox(got), n);
        for (int64_t i = 0; i < n; i++) {
            assert_true(mk_image_get(got, i) == mk_image_get(want, i));
            differs += mk_image_get(on_ct, i) != mk_image_get(want, i);
        }
        ncase++;
        mk_image_free(ct);
        mk_image_free(mr);
        mk_image_free(want);
        mk_image_free(on_ct);
        mk_image_free(got);
    }
    mk_manifest_free(m);
    assert_true(ncase > 0);
    assert_int_equal(sum.cases, ncase);
    print_message("oracle teacher: %d test cases, %d voxels differ from the teacher on CT\n", ncase,
                  differs);
    assert_true(differs > 0); /* the paired MRI, not the CT, was segmented */
    /* two models on the same cases: summary.json's comparisons, report.html with the panels of
     * the worst and the best case of each (their images recorded in the reports) */
    char rt[600], path[800];
    sub(rt, sizeof rt, "run_two_models");
    c.run_dir = rt;
    mk_eval_model two[2] = {mod, {0}};
    two[1].name = "teacher_on_ct";
    two[1].model_h5 = teacher;
    ep.report_html = 1;
    ep.report_window[0] = -160;
    ep.report_window[1] = 240;
    ep.report_worst = 1;
    ep.bootstrap = 500;
    if (mk_stage_evaluate(&ctx, &c, &ep, two, 2, NULL) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    char *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/reports/summary.json", rt);
    assert_int_equal(mk_fs_read_all(&ctx, path, &text, &len), MK_OK);
    char want[200];
    snprintf(want, sizeof want,
             "\"comparisons\": [\n  {\"a\": \"oracle_teacher\", \"b\": \"teacher_on_ct\", "
             "\"metric\": \"dice\", \"structure\": 1");
    if (!strstr(text, want))
        fail_msg("no comparison in %s:\n%s", path, text);
    snprintf(want, sizeof want, "\"n\": %d, \"n_excluded\": 0", ncase);
    assert_non_null(strstr(text, want));
    free(text);
    snprintf(path, sizeof path, "%s/reports/teacher_on_ct.json", rt);
    assert_int_equal(mk_fs_read_all(&ctx, path, &text, &len), MK_OK);
    assert_non_null(strstr(text, "\"image\": "));
    assert_non_null(strstr(text, "\"run\": {\"split\": \"test\""));
    free(text);
    snprintf(path, sizeof path, "%s/reports/report.html", rt);
    assert_int_equal(mk_fs_read_all(&ctx, path, &text, &len), MK_OK);
    int imgs = 0;
    for (const char *q = text; (q = strstr(q, "<img ")); q++)
        imgs++;
    assert_int_equal(imgs, 2 * (ncase >= 2 ? 2 : 1));
    assert_non_null(strstr(text, "oracle_teacher</td><td class=\"l\">teacher_on_ct"));
    assert_null(strstr(text, "image not found"));
    free(text);
    ep.report_html = 0;
    /* a manifest without the column: named in the error, no report written */
    char rb[600], rep[700];
    sub(rb, sizeof rb, "run_oracle_eval_bad");
    c.run_dir = rb;
    mod.input_column = "no_such_column";
    assert_int_equal(mk_stage_evaluate(&ctx, &c, &ep, &mod, 1, NULL), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "no_such_column"));
    snprintf(rep, sizeof rep, "%s/reports/oracle_teacher.h5", rb);
    assert_int_equal(access(rep, F_OK), -1);
}

/* With lambda_hint 0 the CMEDL student gets exactly the baseline's gradients: the two stages
 * share data, seed, initial weights and CT batches, so the students must be bit-identical. */
static void test_baseline_equals_unguided_student(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char ra[600], rb[600], pa[700], pb[700];
    sub(ra, sizeof ra, "run_nohint");
    sub(rb, sizeof rb, "run_base");
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    small_setup(&c, &tp, &cp, ra);
    cp.iterations = 6;
    cp.lambda_hint = 0;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL), MK_OK);
    c.run_dir = rb;
    assert_int_equal(mk_stage_baseline(&ctx, &c, &cp, 0, NULL), MK_OK);
    snprintf(pa, sizeof pa, "%s/models/cmedl_student.h5", ra);
    snprintf(pb, sizeof pb, "%s/models/baseline_student.h5", rb);
    assert_true(same_weights(pa, pb, &c.unet));
    /* and with the hint on, the student differs */
    char rc[600], pc[700];
    sub(rc, sizeof rc, "run_hint");
    c.run_dir = rc;
    cp.lambda_hint = 1;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL), MK_OK);
    snprintf(pc, sizeof pc, "%s/models/cmedl_student.h5", rc);
    assert_false(same_weights(pa, pc, &c.unet));
}

/* teacher_init = "student": with no iterations the saved teacher is the student's initial network,
 * bit for bit; with "own" it is another draw. A poly schedule changes training (its first
 * step uses the base rate, so one iteration equals the constant schedule's). */
static void test_teacher_init_and_schedule(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char r1[600], r2[600], p1s[700], p1t[700], p2t[700];
    sub(r1, sizeof r1, "run_tinit_student");
    sub(r2, sizeof r2, "run_tinit_own");
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    small_setup(&c, &tp, &cp, r1);
    cp.iterations = 0;
    cp.teacher_init_student = 1;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL), MK_OK);
    snprintf(p1s, sizeof p1s, "%s/models/cmedl_student.h5", r1);
    snprintf(p1t, sizeof p1t, "%s/models/cmedl_teacher.h5", r1);
    assert_true(same_weights(p1s, p1t, &c.unet));
    c.run_dir = r2;
    cp.teacher_init_student = 0;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL), MK_OK);
    snprintf(p2t, sizeof p2t, "%s/models/cmedl_teacher.h5", r2);
    assert_false(same_weights(p1s, p2t, &c.unet));

    char b[4][600], pb[4][700];
    const char *names[4] = {"run_sched_c1", "run_sched_p1", "run_sched_c4", "run_sched_p4"};
    small_setup(&c, &tp, &cp, NULL);
    for (int i = 0; i < 4; i++) {
        sub(b[i], sizeof b[i], names[i]);
        c.run_dir = b[i];
        cp.schedule = i % 2 ? MK_TRAIN_POLY : MK_TRAIN_CONSTANT;
        assert_int_equal(mk_stage_baseline(&ctx, &c, &cp, i < 2 ? 1 : 4, NULL), MK_OK);
        snprintf(pb[i], sizeof pb[i], "%.600s/models/baseline_student.h5", b[i]);
    }
    assert_true(same_weights(pb[0], pb[1], &c.unet));
    assert_false(same_weights(pb[2], pb[3], &c.unet));
}

/* The mirror pairing trains: finite losses, the student moves away from the plain CMEDL student,
 * and the teacher (trained on the same batches, its loss unchanged) is untouched by it. */
static void test_pseudo_ct_pairing(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char ra[600], rb[600], pa[700], pb[700];
    sub(ra, sizeof ra, "run_pct_off");
    sub(rb, sizeof rb, "run_pct_on");
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    small_setup(&c, &tp, &cp, ra);
    cp.iterations = 4;
    mk_train_stats s0, s1;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, &s0), MK_OK);
    c.run_dir = rb;
    cp.hint_pseudo_ct = 1;
    cp.w_seg_pseudo_ct = 1.0f;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, &s1), MK_OK);
    assert_true(isfinite(s1.last_loss) && isfinite(s1.last_hint));
    snprintf(pa, sizeof pa, "%s/models/cmedl_student.h5", ra);
    snprintf(pb, sizeof pb, "%s/models/cmedl_student.h5", rb);
    assert_false(same_weights(pa, pb, &c.unet));
    snprintf(pa, sizeof pa, "%s/models/cmedl_teacher.h5", ra);
    snprintf(pb, sizeof pb, "%s/models/cmedl_teacher.h5", rb);
    assert_true(same_weights(pa, pb, &c.unet));
}

/* data.ct_train_cases: the first N CT train rows only; MRI and other splits are not capped */
static void test_ct_train_cases(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    small_setup(&c, &tp, &cp, g_tmp);
    mk_slices all, one, mr, test;
    assert_int_equal(mk_data_load(&ctx, &c.data, "CT", "train", 1, 1, &all), MK_OK);
    c.data.ct_train_cases = 1;
    assert_int_equal(mk_data_load(&ctx, &c.data, "CT", "train", 1, 1, &one), MK_OK);
    assert_int_equal(mk_data_load(&ctx, &c.data, "MR", "train", 0, 1, &mr), MK_OK);
    assert_int_equal(mk_data_load(&ctx, &c.data, "CT", "test", 1, 1, &test), MK_OK);
    assert_true(all.volumes > 1);
    assert_int_equal(one.volumes, 1);
    assert_true(one.n < all.n);
    assert_int_equal(mr.volumes, all.volumes);
    assert_true(test.volumes >= 1);
    mk_slices_free(&all);
    mk_slices_free(&one);
    mk_slices_free(&mr);
    mk_slices_free(&test);
}

/* cmedl.unlabelled_hint trains: the unlabelled CT rows (beyond ct_train_cases) feed a hint term
 * of their own (hint_unl, finite and non-zero), and the student differs from the labelled-only
 * run's. */
static void test_cmedl_unlabelled_hint(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char r1[600], r2[600], a[700], b[700];
    sub(r1, sizeof r1, "run_unl_off");
    sub(r2, sizeof r2, "run_unl_on");
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    small_setup(&c, &tp, &cp, r1);
    c.data.ct_train_cases = 1;
    cp.iterations = 4;
    mk_train_stats st;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, &st), MK_OK);
    c.run_dir = r2;
    cp.unlabelled_hint = 1;
    cp.lambda_hint_unlabelled = 1.0f;
    if (mk_stage_cmedl(&ctx, &c, &tp, &cp, &st) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    int found = 0;
    for (int k = 0; k < st.nterms; k++) {
        assert_true(isfinite(st.term_last[k]));
        found |= !strcmp(st.term_name[k], "hint_unl") && st.term_last[k] > 0;
    }
    assert_true(found);
    snprintf(a, sizeof a, "%s/models/cmedl_student.h5", r1);
    snprintf(b, sizeof b, "%s/models/cmedl_student.h5", r2);
    assert_false(same_weights(a, b, &c.unet));
}

/* hint_where = teacher_correct on hand-made tensors: a 1x2x4x4 logit map right everywhere but
 * pixel (0,3), features at full resolution (1 channel) and at half resolution (2 channels). */
static void test_hint_teacher_correct_mask(void **state)
{
    (void)state;
    int64_t nl[4] = {1, 2, 4, 4}, nf[4] = {1, 1, 4, 4}, nh[4] = {1, 2, 2, 2};
    mk_tensor lg, tf, sf, out, tf2, sf2, out2;
    assert_int_equal(mk_tensor_new(&lg, 4, nl), 0);
    int32_t y[16];
    for (int i = 0; i < 16; i++) {
        y[i] = i % 5 == 0;                /* labels on the diagonal-ish pixels 0, 5, 10, 15 */
        lg.data[i] = y[i] ? -1.0f : 1.0f; /* class 0 logit */
        lg.data[16 + i] = y[i] ? 1.0f : -1.0f;
    }
    lg.data[16 + 3] = 2.0f; /* pixel (row 0, col 3): label 0, predicted 1 -> wrong */
    uint8_t m[16];
    mk__hint_correct_mask(&lg, y, m);
    for (int i = 0; i < 16; i++)
        assert_int_equal(m[i], i == 3 ? 0 : 1);
    assert_int_equal(mk_tensor_new(&tf, 4, nf), 0);
    assert_int_equal(mk_tensor_new(&sf, 4, nf), 0);
    assert_int_equal(mk_tensor_new(&out, 4, nf), 0);
    for (int i = 0; i < 16; i++) {
        tf.data[i] = 10.0f + (float)i;
        sf.data[i] = -(float)i;
    }
    mk__hint_masked_target(m, 4, 4, &tf, &sf, &out);
    for (int i = 0; i < 16; i++)
        assert_float_equal(out.data[i], i == 3 ? sf.data[i] : tf.data[i], 0);
    /* half resolution: position (0,1) covers pixels (0..1, 2..3), which holds the wrong pixel */
    assert_int_equal(mk_tensor_new(&tf2, 4, nh), 0);
    assert_int_equal(mk_tensor_new(&sf2, 4, nh), 0);
    assert_int_equal(mk_tensor_new(&out2, 4, nh), 0);
    for (int i = 0; i < 8; i++) {
        tf2.data[i] = 1.0f;
        sf2.data[i] = 2.0f;
    }
    mk__hint_masked_target(m, 4, 4, &tf2, &sf2, &out2);
    for (int c = 0; c < 2; c++)
        for (int p = 0; p < 4; p++)
            assert_float_equal(out2.data[c * 4 + p], p == 1 ? 2.0f : 1.0f, 0);
    mk_tensor_free(&lg);
    mk_tensor_free(&tf);
    mk_tensor_free(&sf);
    mk_tensor_free(&out);
    mk_tensor_free(&tf2);
    mk_tensor_free(&sf2);
    mk_tensor_free(&out2);
}

/* hint ramp-up: lambda exp(-5 (1 - it/R)^2), then lambda */
/* cmedl.unlabelled_hint: the labelled set (skip_unlabelled: rows without a label left out and not
 * counted by ct_train_cases) and its complement (unlabelled_rest, loaded without labels). */
static void test_unlabelled_rest(void **state)
{
    (void)state;
    char dir[600], man[700];
    hand_fixture("unl",
                 "id,modality,image,label,split,domain\n"
                 "c1,CT,ct.nii.gz,ct_label.nii.gz,train,ct\n"
                 "c2,CT,ct.nii.gz,,train,ct\n"
                 "c3,CT,ct.nii.gz,ct_label.nii.gz,train,ct\n"
                 "c4,CT,ct.nii.gz,ct_label.nii.gz,train,ct\n"
                 "t1,CT,ct.nii.gz,ct_label.nii.gz,test,ct\n",
                 dir, man);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_data_params p;
    mk_data_defaults(&p);
    legacy_data(&p);
    p.manifest = man;
    p.patch[0] = p.patch[1] = 8;
    mk_slices s;
    /* without skip_unlabelled the unlabelled row is an error for a labelled load, as before */
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 1, 5, &s), MK_ERR_FORMAT);
    p.skip_unlabelled = 1;
    p.ct_train_cases = 2; /* c1, c3 */
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 1, 5, &s), MK_OK);
    assert_int_equal(s.volumes, 2);
    assert_non_null(s.lab);
    mk_slices_free(&s);
    p.skip_unlabelled = 0;
    p.unlabelled_rest = 1; /* c2 (no label) and c4 (beyond the cap) */
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 0, 5, &s), MK_OK);
    assert_int_equal(s.volumes, 2);
    assert_null(s.lab);
    mk_slices_free(&s);
    p.ct_train_cases = 0; /* every labelled row is in the labelled set: only c2 is left */
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 0, 5, &s), MK_OK);
    assert_int_equal(s.volumes, 1);
    mk_slices_free(&s);
}

static void test_hint_rampup(void **state)
{
    (void)state;
    mk_cmedl_params cp;
    mk_cmedl_defaults(&cp);
    cp.lambda_hint = 2.0f;
    assert_float_equal(mk_cmedl_hint_weight(&cp, 0), 2.0, 1e-6);
    cp.hint_rampup = 100;
    assert_float_equal(mk_cmedl_hint_weight(&cp, 0), 2.0 * exp(-5.0), 1e-6);
    assert_float_equal(mk_cmedl_hint_weight(&cp, 50), 2.0 * exp(-1.25), 1e-6);
    assert_float_equal(mk_cmedl_hint_weight(&cp, 99), 2.0 * exp(-5e-4), 1e-6);
    assert_float_equal(mk_cmedl_hint_weight(&cp, 100), 2.0, 0);
    assert_float_equal(mk_cmedl_hint_weight(&cp, 5000), 2.0, 0);
}

/* largest 6-connected component on a hand-made mask: a 2x2x2 cube (8), a 3x1x1 bar (3) touching
 * the cube only along an edge (not a face: separate), a single voxel (1), and another label (2)
 * that must be left alone. */
static void test_largest_component(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {8, 7, 6};
    mk_image *m = NULL;
    assert_int_equal(mk_image_new(&ctx, MK_DT_UINT8, 3, dim, &m), MK_OK);
    uint8_t *d = m->data;
#define AT(i, j, k) d[(i) + 8 * ((j) + 7 * (k))]
    for (int k = 1; k <= 2; k++)
        for (int j = 1; j <= 2; j++)
            for (int i = 1; i <= 2; i++)
                AT(i, j, k) = 1;
    for (int i = 3; i <= 5; i++)
        AT(i, 3, 1) = 1; /* shares only the edge (2..3, 2..3) with the cube */
    AT(7, 6, 5) = 1;
    AT(0, 6, 0) = 2;
    AT(1, 6, 0) = 2;
    int64_t removed = -1;
    assert_int_equal(mk_stage_keep_largest_component(&ctx, m, 1, &removed), MK_OK);
    assert_int_equal(removed, 4);
    int64_t ones = 0, twos = 0;
    for (int64_t i = 0; i < mk_image_nvox(m); i++) {
        ones += d[i] == 1;
        twos += d[i] == 2;
    }
    assert_int_equal(ones, 8);
    assert_int_equal(twos, 2);
    assert_int_equal(AT(1, 1, 1), 1);
    assert_int_equal(AT(4, 3, 1), 0);
    assert_int_equal(AT(7, 6, 5), 0);
    /* one component: nothing removed; an empty mask: nothing to do */
    assert_int_equal(mk_stage_keep_largest_component(&ctx, m, 1, &removed), MK_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(mk_stage_keep_largest_component(&ctx, m, 3, &removed), MK_OK);
    assert_int_equal(removed, 0);
#undef AT
    mk_image_free(m);
}

static int g_kill_at;

static void kill_progress(void *user, const char *what, long long done, long long total,
                          const char *unit, const char *detail)
{
    (void)user;
    (void)what;
    (void)total;
    (void)unit;
    (void)detail;
    if (done == g_kill_at)
        raise(SIGKILL);
}

static void test_resume_bit_identical(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char ra[600], rb[600], pa[700], pb[700];
    sub(ra, sizeof ra, "run_straight");
    sub(rb, sizeof rb, "run_killed");
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    small_setup(&c, &tp, &cp, ra);
    cp.iterations = 8;
    c.checkpoint_every = 4;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, NULL), MK_OK);

    /* the same run killed with SIGKILL during iteration 6 (checkpoint at 4), then resumed. The
     * child is a fresh exec of this program: forking a process whose OpenMP pool is running
     * would deadlock libgomp. */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_stages", "--kill-child", rb, g_phantoms, (char *)NULL);
        _exit(4);
    }
    int wst = 0;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);
    snprintf(pb, sizeof pb, "%s/checkpoints/cmedl.h5", rb);
    assert_true(mk_fs_is_file(pb));
    snprintf(pb, sizeof pb, "%s/models/cmedl_student.h5", rb);
    assert_false(mk_fs_is_file(pb));
    c.run_dir = rb;
    c.resume = 1;
    mk_train_stats st;
    assert_int_equal(mk_stage_cmedl(&ctx, &c, &tp, &cp, &st), MK_OK);
    assert_int_equal(st.resumed_from, 4);
    snprintf(pa, sizeof pa, "%s/models/cmedl_student.h5", ra);
    assert_true(same_weights(pa, pb, &c.unet));
    snprintf(pa, sizeof pa, "%s/models/cmedl_teacher.h5", ra);
    snprintf(pb, sizeof pb, "%s/models/cmedl_teacher.h5", rb);
    assert_true(same_weights(pa, pb, &c.unet));

    /* baseline: cancel (SIGINT path) at iteration 3, resume from the checkpoint it writes */
    char rc[600], rd[600];
    sub(rc, sizeof rc, "run_base_straight");
    sub(rd, sizeof rd, "run_base_cancel");
    c.resume = 0;
    c.run_dir = rc;
    assert_int_equal(mk_stage_baseline(&ctx, &c, &cp, 7, NULL), MK_OK);
    mk_ctx cc;
    mk_test_cancelling(&cc, 3);
    c.run_dir = rd;
    assert_int_equal(mk_stage_baseline(&cc, &c, &cp, 7, NULL), MK_ERR_ABORTED);
    assert_non_null(strstr(mk_ctx_errmsg(&cc), "--resume"));
    c.resume = 1;
    assert_int_equal(mk_stage_baseline(&ctx, &c, &cp, 7, &st), MK_OK);
    assert_int_equal(st.resumed_from, 3);
    snprintf(pa, sizeof pa, "%s/models/baseline_student.h5", rc);
    snprintf(pb, sizeof pb, "%s/models/baseline_student.h5", rd);
    assert_true(same_weights(pa, pb, &c.unet));
}

static int setup(void **state)
{
    (void)state;
    const char *bd = getenv("MK_BUILD_DIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/stages-test-XXXXXX", bd ? bd : "/tmp");
    if (!mkdtemp(g_tmp))
        return -1;
    snprintf(g_phantoms, sizeof g_phantoms, "%s/phantoms", g_tmp);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_phantom_params p;
    mk_phantom_params_default(&p, MK_PHANTOM_LUNG);
    p.seed = 11;
    p.cases = 6;
    p.size[0] = p.size[1] = 32;
    p.size[2] = 12;
    p.paired =
        1; /* manifest column paired_mr: the oracle pseudo-MRI (an extra column for the rest) */
    mk_phantom_summary sum;
    if (mk_phantom_synth(&ctx, &p, g_phantoms, &sum) != MK_OK) {
        fprintf(stderr, "phantoms: %s\n", mk_ctx_errmsg(&ctx));
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (!getenv("MK_KEEP_TMP"))
        rm_rf(g_tmp);
    return 0;
}

/* child of test_resume_bit_identical: the killed run (never returns normally) */
static int kill_child(const char *run_dir, const char *phantoms)
{
    snprintf(g_phantoms, sizeof g_phantoms, "%s", phantoms);
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    small_setup(&c, &tp, &cp, run_dir);
    cp.iterations = 8;
    c.checkpoint_every = 4;
    mk_ctx cc;
    mk_ctx_init(&cc);
    cc.progress = kill_progress;
    g_kill_at = 6;
    mk_stage_cmedl(&cc, &c, &tp, &cp, NULL);
    return 3;
}

/* Weight averaging: with 0 iterations the saved student is the initial network either way; after
 * training the averaged student differs from the last iterate; and the average is part of the
 * checkpoint: cancel + resume gives the same averaged student bit for bit. */
static void test_student_ema(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    const char *names[5] = {"run_ema0_off", "run_ema0_on", "run_ema_off", "run_ema_on",
                            "run_ema_cancel"};
    char r[5][600], p[5][700];
    mk_stage_common c;
    mk_translate_params tp;
    mk_cmedl_params cp;
    small_setup(&c, &tp, &cp, NULL);
    for (int i = 0; i < 5; i++) {
        sub(r[i], sizeof r[i], names[i]);
        snprintf(p[i], sizeof p[i], "%.600s/models/baseline_student.h5", r[i]);
    }
    for (int i = 0; i < 4; i++) {
        c.run_dir = r[i];
        cp.ema = i % 2 ? 0.9f : 0.0f;
        cp.iterations = i < 2 ? 0 : 6;
        assert_int_equal(mk_stage_baseline(&ctx, &c, &cp, 0, NULL), MK_OK);
    }
    assert_true(same_weights(p[0], p[1], &c.unet));
    assert_false(same_weights(p[2], p[3], &c.unet));
    mk_ctx cc;
    mk_test_cancelling(&cc, 3);
    c.run_dir = r[4];
    cp.ema = 0.9f;
    assert_int_equal(mk_stage_baseline(&cc, &c, &cp, 0, NULL), MK_ERR_ABORTED);
    c.resume = 1;
    assert_int_equal(mk_stage_baseline(&ctx, &c, &cp, 0, NULL), MK_OK);
    assert_true(same_weights(p[3], p[4], &c.unet));
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--kill-child") == 0)
        return kill_child(argv[2], argv[3]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_hand_volume),
        cmocka_unit_test(test_data_paired_column),
        cmocka_unit_test(test_translator_shapes),
        cmocka_unit_test(test_hint_names),
        cmocka_unit_test(test_cmedl_tiny_run),
        cmocka_unit_test(test_baseline_equals_unguided_student),
        cmocka_unit_test(test_resume_bit_identical),
        cmocka_unit_test(test_teacher_init_and_schedule),
        cmocka_unit_test(test_hint_rampup),
        cmocka_unit_test(test_unlabelled_rest),
        cmocka_unit_test(test_cmedl_unlabelled_hint),
        cmocka_unit_test(test_hint_teacher_correct_mask),
        cmocka_unit_test(test_pseudo_ct_pairing),
        cmocka_unit_test(test_ct_train_cases),
        cmocka_unit_test(test_student_ema),
        cmocka_unit_test(test_largest_component),
        cmocka_unit_test(test_window_weights),
        cmocka_unit_test(test_teacher_learns_pmri),
        cmocka_unit_test(test_w_seg_i2i),
        cmocka_unit_test(test_oracle_pmri),
        cmocka_unit_test(test_evaluate_input_column),
        cmocka_unit_test(test_tumour_contrast_loss),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
