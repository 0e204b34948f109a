/* Multi-class segmentation at stage level: the class/label mapping helpers of mk_data_params,
 * training slices with class indices (a hand-made volume with label values 1, 2, 3 and an
 * unmapped 7), inference writing the label value of the argmax class (a 4-class U-Net with hand
 * weights whose argmax is known, and a random one checked against mk_unet_forward), the largest
 * component per structure, and the evaluate stage's per-structure reports and summaries
 * (summary.json read with cJSON, summary.md) on hand masks with dice computed by hand. */
#define _GNU_SOURCE
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_tmp.h"
#include <cJSON.h>

#include "core/mk_fs.h"
#include "io/mk_nifti.h"
#include "models/mk_unet.h"
#include "stages/mk_evaluate.h"
#include "stages/mk_stages.h"

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

static void sub(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_tmp, name);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

static void set_mapping(mk_data_params *p, int n, const int *values, const char *const *names)
{
    p->classes = n + 1;
    p->nlabels = n;
    for (int j = 0; j < n; j++) {
        p->label_values[j] = values[j];
        snprintf(p->label_names[j], sizeof p->label_names[j], "%s", names ? names[j] : "");
    }
}

/* ---------------------------------------------------------------- mapping helpers */

static void test_label_helpers(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_data_params p;
    mk_data_defaults(&p);
    legacy_data(&p);
    char buf[32];
    /* defaults: two classes, class 1 is `label` */
    assert_int_equal(p.classes, 2);
    assert_int_equal(p.nlabels, 0);
    assert_int_equal(mk_data_check_labels(&ctx, &p), MK_OK);
    assert_int_equal(mk_data_nstructures(&p), 1);
    assert_int_equal(mk_data_value_of_class(&p, 0), 0);
    assert_int_equal(mk_data_value_of_class(&p, 1), 1);
    assert_int_equal(mk_data_value_of_class(&p, 2), 0);
    p.label = 5;
    assert_int_equal(mk_data_value_of_class(&p, 1), 5);
    assert_int_equal(mk_data_class_of_value(&p, 5), 1);
    assert_int_equal(mk_data_class_of_value(&p, 1), 0);
    assert_int_equal(mk_data_class_of_value(&p, 0), 0);
    assert_string_equal(mk_data_class_name(&p, 1, buf, sizeof buf), "label_5");
    /* four classes without a mapping: class c is value c */
    p.classes = 4;
    assert_int_equal(mk_data_check_labels(&ctx, &p), MK_OK);
    for (int c = 0; c < 4; c++) {
        assert_int_equal(mk_data_value_of_class(&p, c), c);
        assert_int_equal(mk_data_class_of_value(&p, c), c);
    }
    assert_int_equal(mk_data_class_of_value(&p, 4), 0);
    /* a mapping: values 2, 5, 9 named RV, MYO, (unnamed) */
    int v[3] = {2, 5, 9};
    const char *nm[3] = {"RV", "MYO", ""};
    set_mapping(&p, 3, v, nm);
    assert_int_equal(mk_data_check_labels(&ctx, &p), MK_OK);
    assert_int_equal(mk_data_nstructures(&p), 3);
    int want_val[5] = {0, 2, 5, 9, 0};
    for (int c = 0; c < 5; c++)
        assert_int_equal(mk_data_value_of_class(&p, c), want_val[c]);
    assert_int_equal(mk_data_value_of_class(&p, -1), 0);
    long long probe[9] = {-3, 0, 1, 2, 3, 5, 9, 10, 300};
    int want_cls[9] = {0, 0, 0, 1, 0, 2, 3, 0, 0};
    for (int i = 0; i < 9; i++)
        assert_int_equal(mk_data_class_of_value(&p, probe[i]), want_cls[i]);
    assert_string_equal(mk_data_class_name(&p, 1, buf, sizeof buf), "RV");
    assert_string_equal(mk_data_class_name(&p, 2, buf, sizeof buf), "MYO");
    assert_string_equal(mk_data_class_name(&p, 3, buf, sizeof buf), "label_9");
    /* the 16-class maximum */
    int v15[15];
    for (int j = 0; j < 15; j++)
        v15[j] = 10 + 3 * j;
    set_mapping(&p, 15, v15, NULL);
    assert_int_equal(p.classes, MK_MAX_CLASSES);
    assert_int_equal(mk_data_check_labels(&ctx, &p), MK_OK);
    assert_int_equal(mk_data_class_of_value(&p, 52), 15);
    assert_int_equal(mk_data_value_of_class(&p, 15), 52);
    /* errors */
    struct {
        int classes, nlabels, v0, v1, label;
        const char *msg;
    } bad[] = {
        {1, 0, 0, 0, 1, "data.classes"}, {17, 0, 0, 0, 1, "data.classes"},
        {2, 0, 0, 0, 0, "data.label"},   {2, 0, 0, 0, 256, "data.label"},
        {4, 2, 1, 2, 1, "data.labels"},  {3, 2, 2, 2, 1, "ascending"},
        {3, 2, 3, 2, 1, "ascending"},    {3, 2, 0, 2, 1, "1..255"},
        {3, 2, 1, 256, 1, "1..255"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mk_data_defaults(&p);
        legacy_data(&p);
        p.classes = bad[i].classes;
        p.nlabels = bad[i].nlabels;
        p.label_values[0] = bad[i].v0;
        p.label_values[1] = bad[i].v1;
        p.label = bad[i].label;
        assert_int_equal(mk_data_check_labels(&ctx, &p), MK_ERR_INVALID);
        if (!strstr(mk_ctx_errmsg(&ctx), bad[i].msg))
            fail_msg("case %zu: expected '%s' in: %s", i, bad[i].msg, mk_ctx_errmsg(&ctx));
    }
}

/* ---------------------------------------------------------------- training slices */

/* CT 12 x 10 x 5 (i, j, k): air outside a body box i 2..9, j 1..8 on slices k >= 1. Labels:
 * k = 1: value 1 at i 3..4, j 2..3; k = 2: value 2 at i 5..6, j 5..6, value 3 at i 7..8, j 2,
 * value 7 at (2, 8); k = 3: value 7 only, at i 4..5, j 4; k = 4: none. */
static int hand_value(int i, int j, int k)
{
    if (k == 1 && i >= 3 && i <= 4 && j >= 2 && j <= 3)
        return 1;
    if (k == 2 && i >= 5 && i <= 6 && j >= 5 && j <= 6)
        return 2;
    if (k == 2 && i >= 7 && i <= 8 && j == 2)
        return 3;
    if ((k == 2 && i == 2 && j == 8) || (k == 3 && i >= 4 && i <= 5 && j == 4))
        return 7;
    return 0;
}

static void write_hand(const char *dir, char *man, size_t n)
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
                int body = k > 0 && i >= 2 && i <= 9 && j >= 1 && j <= 8;
                mk_image_set(img, q, body ? 50 : -1000);
                mk_image_set(lab, q, hand_value(i, j, k));
            }
    char p[800];
    assert_int_equal(mk_fs_mkdirs(&ctx, dir), MK_OK);
    snprintf(p, sizeof p, "%s/ct.nii.gz", dir);
    assert_int_equal(mk_io_nifti_write(&ctx, p, img), MK_OK);
    snprintf(p, sizeof p, "%s/ct_label.nii.gz", dir);
    assert_int_equal(mk_io_nifti_write(&ctx, p, lab), MK_OK);
    snprintf(man, n, "%s/manifest.csv", dir);
    write_file(man, "id,modality,image,label,split,domain\n"
                    "c0,CT,ct.nii.gz,ct_label.nii.gz,train,ct\n");
    mk_image_free(img);
    mk_image_free(lab);
}

/* Slice `sl` of s is volume slice k: every label equals the class of the hand value. */
static void expect_slice(const mk_slices *s, int64_t sl, int k, const mk_data_params *p)
{
    for (int j = 0; j < 10; j++)
        for (int i = 0; i < 12; i++) {
            int want = mk_data_class_of_value(p, hand_value(i, j, k));
            int got = s->lab[sl * 120 + j * 12 + i];
            if (got != want)
                fail_msg("slice %lld (k = %d), i %d, j %d: class %d, expected %d", (long long)sl, k,
                         i, j, got, want);
        }
}

static void test_data_classes(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char dir[600], man[700];
    sub(dir, sizeof dir, "hand");
    write_hand(dir, man, sizeof man);
    mk_data_params p;
    mk_data_defaults(&p);
    legacy_data(&p);
    p.manifest = man;
    p.patch[0] = 12; /* the whole slice: the crop is the identity */
    p.patch[1] = 10;
    p.empty_ratio = 0;
    int v123[3] = {1, 2, 3};
    const char *nm[3] = {"RV", "MYO", "LV"};
    set_mapping(&p, 3, v123, nm);
    mk_slices s;
    if (mk_data_load(&ctx, &p, "CT", "train", 1, 5, &s) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    /* structure slices k = 1, 2 (k = 3 holds only the unmapped 7) */
    assert_int_equal(s.n, 2);
    assert_int_equal(s.n_fg, 2);
    expect_slice(&s, 0, 1, &p);
    expect_slice(&s, 1, 2, &p);
    assert_int_equal(s.lab[0 * 120 + 2 * 12 + 3], 1); /* k = 1, (3, 2): RV */
    assert_int_equal(s.lab[1 * 120 + 5 * 12 + 5], 2); /* k = 2, (5, 5): MYO */
    assert_int_equal(s.lab[1 * 120 + 2 * 12 + 8], 3); /* k = 2, (8, 2): LV */
    assert_int_equal(s.lab[1 * 120 + 8 * 12 + 2], 0); /* k = 2, (2, 8): value 7 -> background */
    mk_slices_free(&s);
    /* one empty body slice per structure slice: both empty ones (k = 3, 4), in volume order */
    p.empty_ratio = 1;
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 1, 5, &s), MK_OK);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.n_fg, 2);
    for (int sl = 0; sl < 4; sl++)
        expect_slice(&s, sl, sl + 1, &p);
    for (int q = 0; q < 120; q++)
        assert_int_equal(s.lab[2 * 120 + q], 0);
    mk_slices_free(&s);
    /* 7 mapped (values 1, 3, 7): class 3 is 7, value 2 is background, k = 3 has a structure */
    p.empty_ratio = 0;
    int v137[3] = {1, 3, 7};
    set_mapping(&p, 3, v137, NULL);
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 1, 5, &s), MK_OK);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.n_fg, 3);
    for (int sl = 0; sl < 3; sl++)
        expect_slice(&s, sl, sl + 1, &p);
    assert_int_equal(s.lab[1 * 120 + 2 * 12 + 8], 2); /* value 3 -> class 2 */
    assert_int_equal(s.lab[1 * 120 + 8 * 12 + 2], 3); /* value 7 -> class 3 */
    assert_int_equal(s.lab[1 * 120 + 5 * 12 + 5], 0); /* value 2 -> background */
    mk_slices_free(&s);
    /* values 2, 3 only: the RV slice k = 1 is empty now */
    int v23[2] = {2, 3};
    set_mapping(&p, 2, v23, NULL);
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 1, 5, &s), MK_OK);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.n_fg, 1);
    expect_slice(&s, 0, 2, &p);
    mk_slices_free(&s);
    /* two classes, label 3: class 1 where the value is 3, exactly as before */
    mk_data_params q;
    mk_data_defaults(&q);
    legacy_data(&q);
    q.manifest = man;
    q.patch[0] = 12;
    q.patch[1] = 10;
    q.empty_ratio = 0;
    q.label = 3;
    assert_int_equal(mk_data_load(&ctx, &q, "CT", "train", 1, 5, &s), MK_OK);
    assert_int_equal(s.n, 1);
    for (int j = 0; j < 10; j++)
        for (int i = 0; i < 12; i++)
            assert_int_equal(s.lab[j * 12 + i], hand_value(i, j, 2) == 3);
    mk_slices_free(&s);
    /* a bad mapping stops the load before any file is read */
    p.nlabels = 1;
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 1, 5, &s), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "data.labels"));
    set_mapping(&p, 2, v23, NULL);
    p.label_values[1] = 300;
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 1, 5, &s), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "300"));
}

/* ---------------------------------------------------------------- inference */

/* A one-level U-Net (base 1) with 4 classes that classifies each pixel by intensity: both 3x3
 * convolutions are the identity (centre tap 1), BN at its initial state is the identity (up to
 * eps), so the feature is f = relu(x) of the normalised CT x; the head's logits c f + b_c with
 * b = (0, -0.25, -0.75, -1.5) make class c win for f in (0.25 c, 0.25 (c + 1)). */
static mk_unet_cfg intensity_cfg(void)
{
    mk_unet_cfg cfg = mk_unet_defaults(2);
    cfg.classes = 4;
    cfg.base = 1;
    cfg.levels = 1;
    return cfg;
}

static void set_param(mk_nn_params *ps, const char *name, const float *v, int n)
{
    mk_param *p = mk_nn_params_find(ps, name);
    if (!p)
        fail_msg("no parameter %s", name);
    assert_int_equal(mk_tensor_numel(&p->value), n);
    memcpy(p->value.data, v, (size_t)n * sizeof *v);
}

static int64_t save_intensity_net(const char *path)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_unet_cfg cfg = intensity_cfg();
    mk_unet *net = NULL;
    assert_int_equal(mk_unet_new(&ctx, &cfg, 1, &net), MK_OK);
    mk_nn_params *ps = mk_unet_params(net);
    float id[9] = {0, 0, 0, 0, 1, 0, 0, 0, 0}, hw[4] = {0, 1, 2, 3},
          hb[4] = {0, -0.25f, -0.75f, -1.5f};
    set_param(ps, "enc.0.0.weight", id, 9);
    set_param(ps, "enc.0.3.weight", id, 9);
    set_param(ps, "head.weight", hw, 4);
    set_param(ps, "head.bias", hb, 4);
    assert_int_equal(mk_model_save(&ctx, path, ps, NULL), MK_OK);
    int64_t n = mk_nn_params_numel(ps);
    mk_unet_free(net);
    return n;
}

/* class of HU h under the intensity net with the CT window [-200, 300] */
static int intensity_class(double h)
{
    double x = (h + 200.0) / 500.0 * 2.0 - 1.0, f = x > 0 ? x : 0;
    return f < 0.25 ? 0 : f < 0.5 ? 1 : f < 0.75 ? 2 : 3;
}

static const double HU[5] = {-1000, 80, 150, 200, 280}; /* classes 0, 0, 1, 2, 3 */

static mk_image *pattern_ct(void)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {12, 10, 2};
    mk_image *img = NULL;
    assert_int_equal(mk_image_new(&ctx, MK_DT_INT16, 3, dim, &img), MK_OK);
    for (int64_t q = 0; q < 240; q++) {
        int i = (int)(q % 12), j = (int)(q / 12 % 10), k = (int)(q / 120);
        mk_image_set(img, q, HU[(i + 2 * j + k) % 5]);
    }
    return img;
}

/* The mask value argmax of mk_unet_forward gives on slice k of ct (one window = the slice). */
static void forward_argmax(const char *model, const mk_unet_cfg *cfg, const mk_image *ct,
                           const mk_data_params *p, uint8_t *out)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_unet *net = NULL;
    assert_int_equal(mk_unet_new(&ctx, cfg, 0, &net), MK_OK);
    assert_int_equal(mk_model_load(&ctx, model, "params", mk_unet_params(net), NULL), MK_OK);
    int64_t W = ct->dim[0], H = ct->dim[1], K = ct->dim[2], C = cfg->classes;
    float *vol = malloc((size_t)mk_image_nvox(ct) * sizeof *vol);
    assert_non_null(vol);
    assert_int_equal(mk_data_normalise(&ctx, p, ct, 1, vol), MK_OK);
    mk_tensor x = {0};
    int64_t xne[4] = {1, 1, H, W};
    assert_int_equal(mk_tensor_new(&x, 4, xne), 0);
    mk_nn_graph *g = mk_nn_graph_new(1, 0);
    for (int64_t k = 0; k < K; k++) {
        memcpy(x.data, vol + k * W * H, (size_t)(W * H) * sizeof(float));
        mk_nn_graph_begin(g, 0);
        mk_nn_graph_set_no_grad(g, 1);
        mk_var *pr = mk_nn_softmax(g, mk_unet_forward(net, g, mk_nn_input(g, &x, 0)));
        assert_non_null(pr);
        for (int64_t q = 0; q < W * H; q++) {
            int best = 0;
            for (int c = 1; c < C; c++)
                if (pr->t.data[c * W * H + q] > pr->t.data[best * W * H + q])
                    best = c;
            out[k * W * H + q] = (uint8_t)mk_data_value_of_class(p, best);
        }
    }
    mk_nn_graph_free(g);
    mk_tensor_free(&x);
    free(vol);
    mk_unet_free(net);
}

static void test_predict_argmax(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char path[700];
    sub(path, sizeof path, "intensity.h5");
    save_intensity_net(path);
    mk_unet_cfg cfg = intensity_cfg();
    mk_image *ct = pattern_ct();
    mk_data_params p;
    mk_data_defaults(&p);
    legacy_data(&p);
    int v[3] = {2, 5, 9};
    set_mapping(&p, 3, v, NULL);
    uint8_t fwd[240];
    forward_argmax(path, &cfg, ct, &p, fwd);
    /* whole-slice window, 4 x 4 sliding windows, and a window larger than the slice (padded):
     * the network is pixel-wise, so every blending gives the known argmax */
    int patches[3][2] = {{12, 10}, {4, 4}, {16, 12}};
    int seen[4] = {0, 0, 0, 0};
    for (int t = 0; t < 3; t++) {
        p.patch[0] = patches[t][0];
        p.patch[1] = patches[t][1];
        mk_image *mask = NULL;
        if (mk_stage_predict_volume(&ctx, path, &cfg, ct, &p, 1, &mask) != MK_OK)
            fail_msg("%s", mk_ctx_errmsg(&ctx));
        assert_int_equal(mask->dtype, MK_DT_UINT8);
        const uint8_t *m = mask->data;
        for (int64_t q = 0; q < 240; q++) {
            int c = intensity_class(mk_image_get(ct, q));
            seen[c] = 1;
            if (m[q] != mk_data_value_of_class(&p, c) || m[q] != fwd[q])
                fail_msg("patch %dx%d, voxel %lld (HU %g): mask %d, expected %d (forward %d)",
                         p.patch[0], p.patch[1], (long long)q, mk_image_get(ct, q), m[q],
                         mk_data_value_of_class(&p, c), fwd[q]);
        }
        mk_image_free(mask);
    }
    for (int c = 0; c < 4; c++)
        assert_true(seen[c]); /* every class, so every label value, occurs */
    /* the network's classes must match the mapping */
    int v2[2] = {2, 5};
    set_mapping(&p, 2, v2, NULL);
    mk_image *mask = NULL;
    assert_int_equal(mk_stage_predict_volume(&ctx, path, &cfg, ct, &p, 1, &mask), MK_ERR_INVALID);
    assert_null(mask);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "4 classes"));

    /* a random 2-level U-Net with 4 classes: the mask is argmax of mk_unet_forward on the slice,
     * written as label values, and only values of the mapping occur */
    mk_unet_cfg rc = mk_unet_defaults(2);
    rc.classes = 4;
    rc.base = 4;
    rc.levels = 2;
    mk_unet *net = NULL;
    assert_int_equal(mk_unet_new(&ctx, &rc, 7, &net), MK_OK);
    /* a head that follows the features more than its bias, so that several classes win */
    mk_param *hw = mk_nn_params_find(mk_unet_params(net), "head.weight");
    mk_param *hb = mk_nn_params_find(mk_unet_params(net), "head.bias");
    assert_non_null(hw);
    assert_non_null(hb);
    for (int64_t q = 0; q < mk_tensor_numel(&hw->value); q++)
        hw->value.data[q] *= 20.0f;
    memset(hb->value.data, 0, (size_t)mk_tensor_numel(&hb->value) * sizeof(float));
    sub(path, sizeof path, "random4.h5");
    assert_int_equal(mk_model_save(&ctx, path, mk_unet_params(net), NULL), MK_OK);
    mk_unet_free(net);
    set_mapping(&p, 3, v, NULL);
    p.patch[0] = 12;
    p.patch[1] = 10;
    forward_argmax(path, &rc, ct, &p, fwd);
    assert_int_equal(mk_stage_predict_volume(&ctx, path, &rc, ct, &p, 1, &mask), MK_OK);
    int count[256] = {0};
    for (int64_t q = 0; q < 240; q++) {
        uint8_t m = ((uint8_t *)mask->data)[q];
        assert_int_equal(m, fwd[q]);
        count[m]++;
    }
    assert_int_equal(count[0] + count[2] + count[5] + count[9], 240);
    assert_true((count[0] > 0) + (count[2] > 0) + (count[5] > 0) + (count[9] > 0) >= 3);
    print_message("random 4-class net: %d / %d / %d / %d voxels of values 0 / 2 / 5 / 9\n",
                  count[0], count[2], count[5], count[9]);
    mk_image_free(mask);
    mk_image_free(ct);
}

/* ---------------------------------------------------------------- post-processing */

static void test_largest_components(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {8, 6, 1};
    mk_image *m = NULL;
    assert_int_equal(mk_image_new(&ctx, MK_DT_UINT8, 3, dim, &m), MK_OK);
    uint8_t *d = m->data;
#define AT(i, j) d[(i) + 8 * (j)]
    AT(0, 0) = AT(1, 0) = AT(2, 0) = 1;            /* label 1: 3 voxels */
    AT(7, 5) = 1;                                  /* and 1 */
    AT(0, 3) = AT(0, 4) = 2;                       /* label 2: 2 voxels */
    AT(4, 2) = AT(5, 2) = AT(4, 3) = AT(5, 3) = 2; /* and 4 */
    AT(7, 0) = 3;                                  /* label 3: one component */
    int labels[3] = {1, 2, 3};
    int64_t removed = -1;
    assert_int_equal(mk_stage_keep_largest_components(&ctx, m, labels, 3, &removed), MK_OK);
    assert_int_equal(removed, 3);
    int cnt[4] = {0, 0, 0, 0};
    for (int q = 0; q < 48; q++)
        cnt[d[q]]++;
    assert_int_equal(cnt[1], 3);
    assert_int_equal(cnt[2], 4);
    assert_int_equal(cnt[3], 1);
    assert_int_equal(AT(7, 5), 0);
    assert_int_equal(AT(0, 3), 0);
    assert_int_equal(AT(5, 3), 2);
    assert_int_equal(AT(7, 0), 3);
#undef AT
    mk_image_free(m);
}

/* ---------------------------------------------------------------- evaluate */

/* Two test cases on a 12 x 10 x 3 grid (spacing 1 mm), segmented by the intensity net:
 * predicted LV (HU 280) i 1..4, j 1..4; MYO (HU 200) i 6..9, j 1..4; RV (HU 150) i 1..4, j 6..8,
 * on every slice; case c1 adds an isolated RV voxel (11, 9, 1) and MYO voxel (11, 0, 1).
 * References: c0 LV the same, MYO i 6..7 (24 voxels), RV i 3..6 (36 voxels, 18 shared), a voxel
 * of the unmapped value 7 at (0, 9, 0); c1 the three predicted boxes. Dice by hand: c0 RV 0.5,
 * MYO 2 x 24 / 72 = 2/3, LV 1; c1 1, 1, 1 with the largest component per structure, else RV
 * 72/73 and MYO 96/97. */
static int box_lv(int i, int j)
{
    return i >= 1 && i <= 4 && j >= 1 && j <= 4;
}
static int box_myo(int i, int j)
{
    return i >= 6 && i <= 9 && j >= 1 && j <= 4;
}
static int box_rv(int i, int j)
{
    return i >= 1 && i <= 4 && j >= 6 && j <= 8;
}

static void write_eval_case(const char *dir, int cs)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {12, 10, 3};
    mk_image *img = NULL, *lab = NULL;
    assert_int_equal(mk_image_new(&ctx, MK_DT_INT16, 3, dim, &img), MK_OK);
    assert_int_equal(mk_image_new(&ctx, MK_DT_UINT8, 3, dim, &lab), MK_OK);
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 10; j++)
            for (int i = 0; i < 12; i++) {
                int64_t q = i + 12 * (j + 10 * k);
                double h = 0;
                int r = 0;
                if (box_lv(i, j) && cs != 2) /* case 2: no LV in image or label */
                    h = 280;
                if (box_myo(i, j))
                    h = 200;
                if (box_rv(i, j))
                    h = 150;
                if (cs == 1 && k == 1 && i == 11 && j == 9)
                    h = 150;
                if (cs == 1 && k == 1 && i == 11 && j == 0)
                    h = 200;
                if (cs == 2) {
                    r = box_lv(i, j) ? 0 : box_myo(i, j) ? 2 : box_rv(i, j) ? 1 : 0;
                } else if (cs == 1) {
                    r = box_lv(i, j) ? 3 : box_myo(i, j) ? 2 : box_rv(i, j) ? 1 : 0;
                } else {
                    r = box_lv(i, j) ? 3 : 0;
                    if (box_myo(i, j) && i <= 7)
                        r = 2;
                    if (i >= 3 && i <= 6 && j >= 6 && j <= 8)
                        r = 1;
                    if (i == 0 && j == 9 && k == 0)
                        r = 7;
                }
                mk_image_set(img, q, h);
                mk_image_set(lab, q, r);
            }
    char p[800];
    snprintf(p, sizeof p, "%s/c%d.nii.gz", dir, cs);
    assert_int_equal(mk_io_nifti_write(&ctx, p, img), MK_OK);
    snprintf(p, sizeof p, "%s/c%d_label.nii.gz", dir, cs);
    assert_int_equal(mk_io_nifti_write(&ctx, p, lab), MK_OK);
    mk_image_free(img);
    mk_image_free(lab);
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        fail_msg("expected a number at key '%s'", key);
    return v->valuedouble;
}

static const cJSON *model_of(const cJSON *root, const char *name)
{
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(root, "models"), *m;
    assert_true(cJSON_IsArray(ms));
    cJSON_ArrayForEach(m, ms)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(m, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name))
            return m;
    }
    fail_msg("no model %s in summary.json", name);
    return NULL;
}

static void run_eval_policy(const char *run, const char *man, const char *model, int lc,
                            mk_metric_both_empty both, mk_eval_model_summary *sum);

static void run_eval(const char *run, const char *man, const char *model, int lc,
                     mk_eval_model_summary *sum)
{
    run_eval_policy(run, man, model, lc, MK_METRIC_BOTH_ONE, sum);
}

static void run_eval_policy(const char *run, const char *man, const char *model, int lc,
                            mk_metric_both_empty both, mk_eval_model_summary *sum)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_stage_common c;
    mk_stage_common_defaults(&c);
    c.run_dir = run;
    c.data.manifest = man;
    c.data.patch[0] = 12;
    c.data.patch[1] = 10;
    int v[3] = {1, 2, 3};
    const char *nm[3] = {"RV", "MYO", "LV"};
    set_mapping(&c.data, 3, v, nm);
    c.unet = intensity_cfg();
    mk_eval_stage_params ep = {0};
    ep.split = "test";
    ep.tolerance_mm = 1.0;
    assert_int_equal(mk_metric_conv_parse(&ctx, "deepmind", &ep.convention), MK_OK);
    ep.write_masks = 1;
    ep.largest_component = lc;
    ep.both_empty = both;
    ep.version = "test";
    ep.command_line = "test";
    mk_eval_model mod = {0};
    mod.name = "multi";
    mod.model_h5 = model;
    if (mk_stage_evaluate(&ctx, &c, &ep, &mod, 1, sum) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
}

static void test_evaluate_structures(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char dir[600], man[700], model[700], run[700], path[900];
    sub(dir, sizeof dir, "eval");
    assert_int_equal(mk_fs_mkdirs(&ctx, dir), MK_OK);
    write_eval_case(dir, 0);
    write_eval_case(dir, 1);
    snprintf(man, sizeof man, "%s/manifest.csv", dir);
    write_file(man, "id,modality,image,label,split,domain\n"
                    "c0,CT,c0.nii.gz,c0_label.nii.gz,test,ct\n"
                    "c1,CT,c1.nii.gz,c1_label.nii.gz,test,ct\n");
    snprintf(model, sizeof model, "%s/intensity.h5", dir);
    int64_t params = save_intensity_net(model);
    snprintf(run, sizeof run, "%s/run_lc", dir);
    mk_eval_model_summary sum;
    run_eval(run, man, model, 1, &sum);

    /* the returned summary: per structure and over cases and structures */
    const double s2 = sqrt(2.0);
    const double want_mean[3] = {0.75, 5.0 / 6.0, 1.0};
    const double want_std[3] = {0.5 / s2, (1.0 / 3.0) / s2, 0.0};
    const double want_vref[3] = {0.036, 0.036, 0.048}, want_vpred[3] = {0.036, 0.048, 0.048};
    const char *names[3] = {"RV", "MYO", "LV"};
    assert_int_equal(sum.cases, 2);
    assert_int_equal(sum.params, params);
    assert_int_equal(sum.nstructures, 3);
    for (int j = 0; j < 3; j++) {
        const mk_report_structure_summary *t = &sum.structures[j];
        assert_int_equal(t->label, j + 1);
        assert_string_equal(t->name, names[j]);
        assert_int_equal(t->cases, 2);
        assert_float_equal(t->dice_mean, want_mean[j], 1e-12);
        assert_float_equal(t->dice_std, want_std[j], 1e-12);
        assert_float_equal(t->volume_ref_ml_mean, want_vref[j], 1e-12);
        assert_float_equal(t->volume_pred_ml_mean, want_vpred[j], 1e-12);
        assert_true(isfinite(t->hd95_mean) && isfinite(t->assd_mean));
        assert_int_equal(t->n_infinite, 0);
    }
    double all[6] = {0.5, 2.0 / 3.0, 1, 1, 1, 1}, m6 = 0, v6 = 0;
    for (int q = 0; q < 6; q++)
        m6 += all[q] / 6;
    for (int q = 0; q < 6; q++)
        v6 += (all[q] - m6) * (all[q] - m6) / 5;
    assert_float_equal(sum.dice_mean, m6, 1e-12);
    assert_float_equal(sum.dice_std, sqrt(v6), 1e-12);
    assert_float_equal(sum.dice_median, 1.0, 1e-12);

    /* summary.json: the old per-model fields are the means over structures */
    snprintf(path, sizeof path, "%s/reports/summary.json", run);
    char *text = read_file(path);
    cJSON *root = cJSON_Parse(text);
    if (!root)
        fail_msg("summary.json is not JSON:\n%s", text);
    const cJSON *mo = model_of(root, "multi");
    assert_int_equal((int)num(mo, "cases"), 2);
    assert_int_equal((int64_t)num(mo, "params"), params);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(mo, "structures"), *t;
    assert_true(cJSON_IsArray(st));
    assert_int_equal(cJSON_GetArraySize(st), 3);
    const char *mean_keys[4] = {"dice_mean", "hd95_mean_mm", "assd_mean_mm", "surface_dice_mean"};
    double over[4] = {0, 0, 0, 0};
    int j = 0;
    cJSON_ArrayForEach(t, st)
    {
        assert_int_equal((int)num(t, "label"), j + 1);
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(t, "name");
        assert_true(cJSON_IsString(nm));
        assert_string_equal(nm->valuestring, names[j]);
        assert_int_equal((int)num(t, "cases"), 2);
        assert_float_equal(num(t, "dice_mean"), want_mean[j], 1e-6);
        assert_float_equal(num(t, "dice_std"), want_std[j], 1e-6);
        assert_float_equal(num(t, "volume_ref_ml_mean"), want_vref[j], 1e-6);
        assert_float_equal(num(t, "volume_pred_ml_mean"), want_vpred[j], 1e-6);
        for (int k = 0; k < 4; k++)
            over[k] += num(t, mean_keys[k]) / 3;
        j++;
    }
    for (int k = 0; k < 4; k++)
        assert_float_equal(num(mo, mean_keys[k]), over[k], 2e-6);
    assert_float_equal(num(mo, "dice_mean"), m6, 1e-6);
    assert_int_equal((int)num(mo, "cases_with_infinite_distance"), 0);
    const cJSON *lcj = cJSON_GetObjectItemCaseSensitive(root, "largest_component");
    assert_true(cJSON_IsTrue(lcj));
    cJSON_Delete(root);
    free(text);

    /* summary.md: a per-structure table after the model table */
    snprintf(path, sizeof path, "%s/reports/summary.md", run);
    text = read_file(path);
    char model_row[96];
    snprintf(model_row, sizeof model_row, "| multi | 2 | %.3f ± %.3f | 1.000 |", m6, sqrt(v6));
    const char *rows[] = {
        model_row, "## multi: per structure", "| RV | 1 | 2 | 0.750 ± 0.354 | 0.750 |",
        "| MYO | 2 | 2 | 0.833 ± 0.236 | 0.833 |", "| LV | 3 | 2 | 1.000 ± 0.000 | 1.000 |"};
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
        if (!strstr(text, rows[r]))
            fail_msg("summary.md lacks '%s':\n%s", rows[r], text);
    assert_true(strstr(text, "## multi: per structure") > strstr(text, "| multi | 2 |"));
    free(text);

    /* the model's own report carries every structure: labels, names, per-case Dice */
    snprintf(path, sizeof path, "%s/reports/multi.json", run);
    text = read_file(path);
    root = cJSON_Parse(text);
    assert_non_null(root);
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(root, "labels");
    const cJSON *lnm = cJSON_GetObjectItemCaseSensitive(root, "label_names");
    assert_int_equal(cJSON_GetArraySize(lab), 3);
    assert_int_equal(cJSON_GetArraySize(lnm), 3);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(cJSON_GetArrayItem(lab, k)->valueint, k + 1);
        assert_string_equal(cJSON_GetArrayItem(lnm, k)->valuestring, names[k]);
    }
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "cases"), 0);
    const cJSON *c0l = cJSON_GetObjectItemCaseSensitive(c0, "labels");
    const double c0_dice[3] = {0.5, 2.0 / 3.0, 1.0};
    for (int k = 0; k < 3; k++) {
        char key[8];
        snprintf(key, sizeof key, "%d", k + 1);
        assert_float_equal(num(cJSON_GetObjectItemCaseSensitive(c0l, key), "dice"), c0_dice[k],
                           1e-12);
    }
    cJSON_Delete(root);
    free(text);
    snprintf(path, sizeof path, "%s/reports/multi.h5", run);
    int32_t *h5l = NULL;
    int64_t nl = 0;
    assert_int_equal(mk_model_h5_read_i32(&ctx, path, "/labels", &h5l, &nl), MK_OK);
    assert_int_equal(nl, 3);
    for (int k = 0; k < 3; k++)
        assert_int_equal(h5l[k], k + 1);
    free(h5l);
    snprintf(path, sizeof path, "%s/reports/multi.csv", run);
    text = read_file(path);
    int lines = 0;
    for (const char *q = text; *q; q++)
        lines += *q == '\n';
    assert_int_equal(lines, 1 + 2 * 3); /* header + case x structure */
    free(text);

    /* the written masks hold label values; each structure lost its isolated voxel */
    snprintf(path, sizeof path, "%s/masks/multi/c1.nii.gz", run);
    mk_image *m = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, path, &m), MK_OK);
    assert_int_equal((int)mk_image_get(m, 11 + 12 * (9 + 10 * 1)), 0);
    assert_int_equal((int)mk_image_get(m, 11 + 12 * (0 + 10 * 1)), 0);
    assert_int_equal((int)mk_image_get(m, 2 + 12 * (7 + 10 * 1)), 1);
    assert_int_equal((int)mk_image_get(m, 7 + 12 * (2 + 10 * 1)), 2);
    assert_int_equal((int)mk_image_get(m, 2 + 12 * (2 + 10 * 1)), 3);
    mk_image_free(m);

    /* without the post-processing the isolated voxels stay and cost Dice in case c1 */
    snprintf(run, sizeof run, "%s/run_raw", dir);
    run_eval(run, man, model, 0, &sum);
    assert_float_equal(sum.structures[0].dice_mean, (0.5 + 72.0 / 73.0) / 2, 1e-12);
    assert_float_equal(sum.structures[1].dice_mean, (2.0 / 3.0 + 96.0 / 97.0) / 2, 1e-12);
    assert_float_equal(sum.structures[2].dice_mean, 1.0, 1e-12);
    snprintf(path, sizeof path, "%s/masks/multi/c1.nii.gz", run);
    assert_int_equal(mk_io_nifti_read(&ctx, path, &m), MK_OK);
    assert_int_equal((int)mk_image_get(m, 11 + 12 * (9 + 10 * 1)), 1);
    assert_int_equal((int)mk_image_get(m, 11 + 12 * (0 + 10 * 1)), 2);
    mk_image_free(m);
}

static int setup(void **state)
{
    (void)state;
    return mk_test_tmp_make(g_tmp, sizeof g_tmp, "multiclass");
}

static int teardown(void **state)
{
    (void)state;
    mk_test_tmp_remove(g_tmp);
    return 0;
}

/* A structure in neither mask of a case (case 2 has no LV anywhere): with evaluate.both_empty =
 * "one" it scores Dice 1 and enters the means; with "nan" (the config default, nnU-Net's rule)
 * it is left out of the structure's and the model's figures and counted. */
static void test_evaluate_both_empty(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char dir[600], man[700], model[700], run[700];
    sub(dir, sizeof dir, "eval_both");
    assert_int_equal(mk_fs_mkdirs(&ctx, dir), MK_OK);
    write_eval_case(dir, 2);
    snprintf(man, sizeof man, "%s/manifest.csv", dir);
    write_file(man, "id,modality,image,label,split,domain\n"
                    "c2,CT,c2.nii.gz,c2_label.nii.gz,test,ct\n");
    snprintf(model, sizeof model, "%s/intensity.h5", dir);
    save_intensity_net(model);
    mk_eval_model_summary one, nan_;
    snprintf(run, sizeof run, "%s/run_one", dir);
    run_eval_policy(run, man, model, 0, MK_METRIC_BOTH_ONE, &one);
    snprintf(run, sizeof run, "%s/run_nan", dir);
    run_eval_policy(run, man, model, 0, MK_METRIC_BOTH_NAN, &nan_);
    assert_int_equal(one.nstructures, 3);
    assert_int_equal(nan_.nstructures, 3);
    /* RV and MYO are scored alike under both policies */
    for (int j = 0; j < 2; j++)
        assert_float_equal(one.structures[j].dice_mean, nan_.structures[j].dice_mean, 1e-12);
    double rv = one.structures[0].dice_mean, myo = one.structures[1].dice_mean;
    /* LV: Dice 1 in the means, or left out and counted */
    assert_float_equal(one.structures[2].dice_mean, 1.0, 1e-12);
    assert_int_equal(one.structures[2].n_excluded, 0);
    assert_true(isnan(nan_.structures[2].dice_mean));
    assert_int_equal(nan_.structures[2].n_excluded, 1);
    assert_float_equal(one.dice_mean, (rv + myo + 1.0) / 3.0, 1e-12);
    assert_float_equal(nan_.dice_mean, (rv + myo) / 2.0, 1e-12);
    assert_int_equal(nan_.n_excluded, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_helpers),       cmocka_unit_test(test_data_classes),
        cmocka_unit_test(test_predict_argmax),      cmocka_unit_test(test_largest_components),
        cmocka_unit_test(test_evaluate_structures), cmocka_unit_test(test_evaluate_both_empty),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
