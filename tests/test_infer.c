/* Inference with a self-describing model (stages/mk_infer.h, issue 17): the description written
 * beside the weights round-trips into the parameters inference uses; files without it, or with a
 * broken one, are refused naming the field; windows are placed as nnU-Net places them; the
 * mirrored test-time augmentation equals the hand-computed average of the four mirrored forward
 * passes; mk_infer_volume equals the evaluate stage's prediction on the input's exact grid
 * (also for a reoriented input); the geometry check refuses a mask on another grid. */
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

#include "core/mk_fs.h"
#include "io/mk_resample.h"
#include "models/mk_unet.h"
#include "nn/mk_nn.h"
#include "stages/mk_infer.h"
#include "stages/stage_internal.h"

static char g_tmp[512];

static mk_unet_cfg small_cfg(void)
{
    mk_unet_cfg c = mk_unet_defaults(2);
    c.base = 4;
    c.levels = 2;
    c.classes = 3;
    return c;
}

static void params(mk_data_params *p)
{
    mk_data_defaults(p);
    p->classes = 3;
    p->nlabels = 2;
    p->label_values[0] = 2;
    p->label_values[1] = 7;
    snprintf(p->label_names[0], sizeof p->label_names[0], "soft");
    snprintf(p->label_names[1], sizeof p->label_names[1], "hard \"x\"");
    p->ct_window[0] = -150;
    p->ct_window[1] = 900;
    p->patch[0] = 12;
    p->patch[1] = 8;
    p->spacing[2] = 0; /* no resampling */
    p->window_step = 0.25;
    p->blend_uniform = 1;
}

/* A random 3-class U-Net whose head follows its features (several classes win), saved with a
 * description. */
static void save_model(const char *path, const mk_data_params *p, int largest)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_unet_cfg cfg = small_cfg();
    mk_unet *net = NULL;
    assert_int_equal(mk_unet_new(&ctx, &cfg, 11, &net), MK_OK);
    mk_param *hw = mk_nn_params_find(mk_unet_params(net), "head.weight");
    assert_non_null(hw);
    mk_param *hb = mk_nn_params_find(mk_unet_params(net), "head.bias");
    assert_non_null(hb);
    for (int64_t q = 0; q < mk_tensor_numel(&hw->value); q++)
        hw->value.data[q] *= 50.0f;
    memset(hb->value.data, 0, (size_t)mk_tensor_numel(&hb->value) * sizeof(float));
    mk_model_info info = {"supervised", "student", "CT", "test", "fnv1a64:0123", largest};
    char *text = mk_model_info_json(&cfg, p, &info);
    assert_non_null(text);
    assert_int_equal(mk_model_save_info(&ctx, path, mk_unet_params(net), NULL, MK_INFER_ATTR, text),
                     MK_OK);
    free(text);
    mk_unet_free(net);
}

/* CT 20 x 14 x 3 with a smooth pattern of HU from -400 to 1200 (identity LPS geometry, spacing
 * 0.8 x 0.9 x 2.5) */
static mk_image *volume(void)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {20, 14, 3};
    mk_image *img = NULL;
    assert_int_equal(mk_image_new(&ctx, MK_DT_INT16, 3, dim, &img), MK_OK);
    img->geom.spacing[0] = 0.8;
    img->geom.spacing[1] = 0.9;
    img->geom.spacing[2] = 2.5;
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 14; j++)
            for (int i = 0; i < 20; i++)
                mk_image_set(img, i + 20 * (j + 14 * k),
                             -400 + 1600 * (0.5 + 0.5 * sin(0.4 * i + 0.7 * j + 1.3 * k)));
    return img;
}

static void test_description_roundtrip(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char path[700];
    snprintf(path, sizeof path, "%s/m.h5", g_tmp);
    mk_data_params p;
    params(&p);
    p.slice_axis = 4; /* coronal */
    p.orientation = "LPS";
    p.spacing[0] = 1.25;
    save_model(path, &p, 1);
    mk_infer_model *m = NULL;
    if (mk_infer_model_load(&ctx, path, &m) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    const mk_data_params *q = &m->data;
    assert_int_equal(m->cfg.base, 4);
    assert_int_equal(m->cfg.levels, 2);
    assert_int_equal(m->cfg.classes, 3);
    assert_true(m->is_ct);
    assert_string_equal(m->modality, "CT");
    assert_string_equal(m->method, "supervised");
    assert_string_equal(m->role, "student");
    assert_string_equal(m->config_hash, "fnv1a64:0123");
    assert_true(!strncmp(m->model_hash, "fnv1a64:", 8) && strlen(m->model_hash) == 24);
    assert_float_equal(q->ct_window[0], -150, 0);
    assert_float_equal(q->ct_window[1], 900, 0);
    assert_int_equal(q->slice_axis, 4);
    assert_string_equal(q->orientation, "LPS");
    assert_float_equal(q->spacing[0], 1.25, 0);
    assert_float_equal(q->spacing[1], 0, 0);
    assert_int_equal(q->patch[0], 12);
    assert_int_equal(q->patch[1], 8);
    assert_int_equal(q->classes, 3);
    assert_int_equal(mk_data_value_of_class(q, 1), 2);
    assert_int_equal(mk_data_value_of_class(q, 2), 7);
    char nb[48];
    assert_string_equal(mk_data_class_name(q, 2, nb, sizeof nb), "hard \"x\"");
    assert_true(q->blend_uniform);
    assert_float_equal(q->window_step, 0.25, 0);
    assert_true(m->largest_component);
    mk_infer_model_free(m);

    /* MRI: the normalisation by name */
    p.mri_norm = MK_MRI_MINMAX;
    mk_model_info info = {"cmedl", "teacher", "MR", "test", "", 0};
    mk_unet_cfg cfg = small_cfg();
    char *text = mk_model_info_json(&cfg, &p, &info);
    assert_non_null(strstr(text, "\"normalisation\":\t\"minmax\""));
    assert_null(strstr(text, "ct_window"));
    free(text);
}

static void expect_refused(const char *path, const char *msg)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_infer_model *m = NULL;
    assert_int_not_equal(mk_infer_model_load(&ctx, path, &m), MK_OK);
    assert_null(m);
    if (!strstr(mk_ctx_errmsg(&ctx), msg))
        fail_msg("expected '%s' in: %s", msg, mk_ctx_errmsg(&ctx));
}

static void test_refused(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char path[700];
    snprintf(path, sizeof path, "%s/plain.h5", g_tmp);
    mk_unet_cfg cfg = small_cfg();
    mk_unet *net = NULL;
    assert_int_equal(mk_unet_new(&ctx, &cfg, 1, &net), MK_OK);
    assert_int_equal(mk_model_save(&ctx, path, mk_unet_params(net), NULL), MK_OK);
    expect_refused(path, "expected a model file with the attribute 'medkd_inference'");
    /* descriptions that do not fit: a patch not a multiple of 2^(depth-1), a wrong width (the
     * weights' shapes), an unknown slice axis */
    const char *bad[][2] = {
        {"\"patch\":\t[12, 8]", "\"patch\":\t[13, 8]"},
        {"\"width\":\t4", "\"width\":\t6"},
        {"\"slice_axis\":\t\"axial\"", "\"slice_axis\":\t\"oblique\""},
        {"\"classes\":\t3", "\"classes\":\t40"},
    };
    const char *msgs[] = {"field patch", "weights do not match the description",
                          "field geometry.slice_axis", "field network.classes"};
    mk_data_params p;
    params(&p);
    mk_model_info info = {"supervised", "student", "CT", "test", "", 0};
    for (int b = 0; b < 4; b++) {
        char *text = mk_model_info_json(&cfg, &p, &info);
        char *at = strstr(text, bad[b][0]);
        assert_non_null(at);
        size_t la = strlen(bad[b][0]), lb = strlen(bad[b][1]);
        char *t2 = malloc(strlen(text) + lb + 1);
        memcpy(t2, text, (size_t)(at - text));
        strcpy(t2 + (at - text), bad[b][1]);
        strcat(t2, at + la);
        snprintf(path, sizeof path, "%s/bad%d.h5", g_tmp, b);
        assert_int_equal(
            mk_model_save_info(&ctx, path, mk_unet_params(net), NULL, MK_INFER_ATTR, t2), MK_OK);
        expect_refused(path, msgs[b]);
        free(t2);
        free(text);
    }
    mk_unet_free(net);
}

/* nnU-Net's compute_steps_for_sliding_window: ceil((d - p) / (p step)) + 1 steps, evenly, numpy
 * rounding */
static void test_window_placement(void **state)
{
    (void)state;
    int64_t s[64];
    int n = mk__window_starts(256, 48, 0.5, s, 64);
    assert_int_equal(n, 10); /* ceil(208 / 24) + 1 */
    for (int i = 0; i < n; i++)
        assert_int_equal(s[i], (int64_t)nearbyint(i * 208.0 / 9.0));
    assert_int_equal(s[9], 208);
    n = mk__window_starts(64, 48, 0.5, s, 64);
    assert_int_equal(n, 2);
    assert_int_equal(s[0], 0);
    assert_int_equal(s[1], 16);
    n = mk__window_starts(100, 40, 0.25, s, 64); /* ceil(60 / 10) + 1 = 7, every 10 */
    assert_int_equal(n, 7);
    for (int i = 0; i < 7; i++)
        assert_int_equal(s[i], 10 * i);
    n = mk__window_starts(30, 48, 0.5, s, 64); /* smaller than the window: one, centred */
    assert_int_equal(n, 1);
    assert_int_equal(s[0], -9);
    n = mk__window_starts(50, 48, 1.0, s, 64); /* 2: 0 and flush with the end */
    assert_int_equal(n, 2);
    assert_int_equal(s[1], 2);
}

/* argmax over classes of a [C][h][w] buffer -> label values */
static void argmax(const float *pr, int C, int64_t plane, const mk_data_params *p, uint8_t *out)
{
    for (int64_t q = 0; q < plane; q++) {
        int best = 0;
        for (int c = 1; c < C; c++)
            if (pr[c * plane + q] > pr[best * plane + q])
                best = c;
        out[q] = (uint8_t)mk_data_value_of_class(p, best);
    }
}

static void test_tta_and_volume(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char path[700];
    snprintf(path, sizeof path, "%s/tta.h5", g_tmp);
    mk_data_params p;
    params(&p);
    p.slice_axis = 2; /* voxel axis k: slices as stored */
    p.patch[0] = 20;  /* one window per slice (the whole slice): blending does not matter */
    p.patch[1] = 14 + 2;
    p.blend_uniform = 0;
    save_model(path, &p, 0);
    mk_infer_model *m = NULL;
    assert_int_equal(mk_infer_model_load(&ctx, path, &m), MK_OK);
    mk_image *img = volume();
    float *vol = malloc(20 * 14 * 3 * sizeof *vol);
    assert_int_equal(mk_data_normalise(&ctx, &m->data, img, 1, vol), MK_OK);
    /* by hand: per slice, the four mirrored inputs (padded to 20 x 16 with -1: the slice is
     * centred, one padding row above and below), softmax, mirrored back, summed */
    const int W = 20, H = 16, C = 3;
    mk_tensor x = {0};
    int64_t ne[4] = {1, 1, H, W};
    assert_int_equal(mk_tensor_new(&x, 4, ne), 0);
    mk_nn_graph *g = mk_nn_graph_new(1, 0);
    uint8_t want[20 * 14 * 3], plain[20 * 14 * 3];
    for (int k = 0; k < 3; k++) {
        float sum[3 * 20 * 16] = {0}, one[3 * 20 * 16];
        for (int f = 0; f < 4; f++) {
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++) {
                    int sy = (f & 2) ? H - 1 - y : y, sx = (f & 1) ? W - 1 - xx : xx;
                    int j = sy - 1;
                    x.data[y * W + xx] = j >= 0 && j < 14 ? vol[sx + 20 * (j + 14 * k)] : -1.0f;
                }
            mk_nn_graph_begin(g, 0);
            mk_nn_graph_set_no_grad(g, 1);
            mk_var *pr = mk_nn_softmax(g, mk_unet_forward(m->net, g, mk_nn_input(g, &x, 0)));
            assert_non_null(pr);
            for (int c = 0; c < C; c++)
                for (int y = 0; y < H; y++)
                    for (int xx = 0; xx < W; xx++) {
                        int sy = (f & 2) ? H - 1 - y : y, sx = (f & 1) ? W - 1 - xx : xx;
                        float v = pr->t.data[c * W * H + sy * W + sx];
                        sum[c * W * H + y * W + xx] += v;
                        if (f == 0)
                            one[c * W * H + y * W + xx] = v;
                    }
        }
        uint8_t a[20 * 16], b[20 * 16];
        argmax(sum, C, W * H, &m->data, a);
        argmax(one, C, W * H, &m->data, b);
        for (int j = 0; j < 14; j++)
            for (int i = 0; i < 20; i++) {
                want[i + 20 * (j + 14 * k)] = a[(j + 1) * W + i];
                plain[i + 20 * (j + 14 * k)] = b[(j + 1) * W + i];
            }
    }
    mk_nn_graph_free(g);
    mk_tensor_free(&x);
    free(vol);
    mk_infer_opts o;
    mk_infer_opts_default(&o);
    mk_image *mask = NULL;
    mk_infer_times t;
    assert_int_equal(mk_infer_volume(&ctx, m, &o, img, &mask, &t), MK_OK);
    assert_memory_equal(mask->data, plain, sizeof plain);
    assert_true(t.network >= 0 && t.preprocess >= 0 && t.postprocess >= 0);
    mk_image_free(mask);
    o.tta = 1;
    assert_int_equal(mk_infer_volume(&ctx, m, &o, img, &mask, NULL), MK_OK);
    assert_memory_equal(mask->data, want, sizeof want);
    int differ = 0;
    for (size_t q = 0; q < sizeof want; q++)
        differ += want[q] != plain[q];
    int cnt[256] = {0};
    for (size_t q = 0; q < sizeof want; q++)
        cnt[want[q]]++;
    print_message("mirroring changed %d of %zu voxels (classes 0/2/7: %d/%d/%d)\n", differ,
                  sizeof want, cnt[0], cnt[2], cnt[7]);
    assert_true(differ > 0);                                      /* the mirrored passes mattered */
    assert_true((cnt[0] > 0) + (cnt[2] > 0) + (cnt[7] > 0) >= 2); /* not one class everywhere */
    mk_image_free(mask);
    mk_infer_model_free(m);
    mk_image_free(img);
}

static void test_volume_matches_evaluate(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char path[700];
    snprintf(path, sizeof path, "%s/ev.h5", g_tmp);
    mk_data_params p;
    params(&p); /* axial after reorientation to RAS, patch 12 x 8, step 0.25, uniform */
    save_model(path, &p, 0);
    mk_infer_model *m = NULL;
    assert_int_equal(mk_infer_model_load(&ctx, path, &m), MK_OK);
    mk_image *img = volume(), *a = NULL, *b = NULL, *ri = NULL, *rb = NULL, *back = NULL;
    mk_infer_opts o;
    mk_infer_opts_default(&o);
    o.step = 0.25;
    assert_int_equal(mk_infer_volume(&ctx, m, &o, img, &a, NULL), MK_OK);
    mk_unet_cfg cfg = small_cfg();
    assert_int_equal(mk_stage_predict_volume(&ctx, path, &cfg, img, &m->data, 1, &b), MK_OK);
    assert_memory_equal(a->data, b->data, (size_t)mk_image_nvox(a));
    assert_memory_equal(&a->geom, &img->geom, sizeof img->geom);
    assert_int_equal(mk_infer_check_geometry(&ctx, img, a), MK_OK);
    /* values only of the mapping */
    int count[256] = {0};
    for (int64_t q = 0; q < mk_image_nvox(a); q++)
        count[((uint8_t *)a->data)[q]]++;
    assert_int_equal(count[0] + count[2] + count[7], mk_image_nvox(a));
    /* the same volume stored PLS: the same mask, reoriented */
    assert_int_equal(mk_reorient(&ctx, img, "PLS", &ri), MK_OK);
    assert_int_equal(mk_infer_volume(&ctx, m, &o, ri, &rb, NULL), MK_OK);
    assert_memory_equal(&rb->geom, &ri->geom, sizeof ri->geom);
    assert_int_equal(mk_reorient_to(&ctx, rb, img, &back), MK_OK);
    assert_memory_equal(back->data, a->data, (size_t)mk_image_nvox(a));
    /* the geometry check fails, never warns, on another grid */
    a->geom.origin[0] += 0.5;
    assert_int_equal(mk_infer_check_geometry(&ctx, img, a), MK_ERR_GEOMETRY);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "output geometry"));
    a->geom.origin[0] -= 0.5;
    a->nifti.present = 1;
    img->nifti.present = 1;
    img->nifti.sform_code = 1;
    assert_int_equal(mk_infer_check_geometry(&ctx, img, a), MK_ERR_GEOMETRY);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "sform_code"));
    /* a bad step */
    o.step = -0.5;
    mk_image *c = NULL;
    assert_int_equal(mk_infer_volume(&ctx, m, &o, img, &c, NULL), MK_ERR_INVALID);
    mk_image_free(a);
    mk_image_free(b);
    mk_image_free(ri);
    mk_image_free(rb);
    mk_image_free(back);
    mk_image_free(img);
    mk_infer_model_free(m);
}

static int setup(void **state)
{
    (void)state;
    return mk_test_tmp_make(g_tmp, sizeof g_tmp, "infer");
}

static int teardown(void **state)
{
    (void)state;
    mk_test_tmp_remove(g_tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_description_roundtrip),   cmocka_unit_test(test_refused),
        cmocka_unit_test(test_window_placement),        cmocka_unit_test(test_tta_and_volume),
        cmocka_unit_test(test_volume_matches_evaluate),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
