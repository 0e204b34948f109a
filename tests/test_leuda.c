/* LE-UDA (stages/method_leuda*.c) on small cardiac phantoms (MR source, CT target):
 *   - the random affine: identity is exact, a linear ramp is reproduced exactly where the source
 *     lies inside the slice (bilinear interpolation is exact on linear functions), a quarter turn
 *     of a label map is the rotation permutation, draws stay in their ranges and follow the seed;
 *   - aligned batches: pick + crop draws what mk_slices_sample draws, and the crop of a set derived
 *     voxel by voxel from the slices (a stand-in for a translation) is the derived crop;
 *   - the translations: mk__leuda_translate equals the generator's own forward on even sizes bit
 *     for bit, and on odd sizes the forward of the edge-padded image, cropped;
 *   - during the warm-up (all weights 0) leuda's student is leuda_source's, parameter for
 *     parameter (same initial weights, labelled batches, augmentation and learning rate), and the
 *     unlabelled terms change it once they count;
 *   - both teachers copy the student during ema_pretrain; the switches drop their terms and
 *     files (wo_source: kd and leuda_intra.h5, wo_target: con and leuda_inter.h5, adversarial =
 *     false: adv and disc); the translator written beside the models is the one read;
 *   - bad configs: more labelled source volumes than exist, no translator, a bad feature name,
 *     source = target modality. */
#define _GNU_SOURCE
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/mk_fs.h"
#include "nn/mk_nn.h"
#include "phantoms/mk_phantoms.h"
#include "stages/mk_method.h"
#include "stages/stage_internal.h"
#include "test_nets.h"
#include "test_tmp.h"

static char g_tmp[512], g_man[700], g_tr[800];

typedef struct {
    mk_leuda_params p;
    mk_translate_params tp;
} leuda_cfg; /* the layout of leuda's config (its own section first) */
typedef struct {
    int iterations;
    mk_leuda_params p;
    mk_translate_params tp;
} source_cfg; /* leuda_source's */

static void common(mk_stage_common *c, const char *name, char *dir, size_t n)
{
    snprintf(dir, n, "%s/%s", g_tmp, name);
    mk_stage_common_defaults(c);
    c->run_dir = dir;
    c->seed = 4;
    c->threads = 1;
    c->data.manifest = g_man;
    c->data.patch[0] = c->data.patch[1] = 32;
    c->data.slice_axis = 2;
    c->unet.classes = 4;
    c->unet.base = 4;
    c->unet.levels = 3;
    c->log_every = 1000;
    c->checkpoint_every = 100;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_stage_common_finish(&ctx, c), MK_OK);
}

/* The defaults of `method` with small nets and batches, the translator of setup. */
static void *cfg_of(const char *method, int iterations)
{
    const mk_method *m = mk_method_find(method);
    assert_non_null(m);
    void *cfg = calloc(1, m->cfg_size);
    mk_method_defaults(m, cfg);
    for (int u = 0; u < m->nuses; u++) {
        char *base = (char *)cfg + m->uses[u].offset;
        if (m->uses[u].section == &mk_leuda_section) {
            mk_leuda_params *p = (mk_leuda_params *)base;
            p->iterations = iterations;
            p->batch = p->unlabelled_batch = 2;
            p->adv_width = 4;
            p->translator_model = g_tr;
        } else if (m->uses[u].section == &mk_translate_section) {
            mk_translate_params *p = (mk_translate_params *)base;
            p->iterations = iterations;
            p->batch = 2;
            p->gen_width = p->disc_width = 4;
        }
    }
    return cfg;
}

static mk_status train_stats(const char *method, const mk_stage_common *c, void *cfg,
                             mk_train_stats *st, char *msg, size_t n)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_status s = mk_method_train(&ctx, mk_method_find(method), c, cfg, st);
    if (msg)
        snprintf(msg, n, "%s", mk_ctx_errmsg(&ctx));
    return s;
}

static void train(const char *method, const mk_stage_common *c, void *cfg, mk_train_stats *st)
{
    char msg[1024];
    if (train_stats(method, c, cfg, st, msg, sizeof msg) != MK_OK)
        fail_msg("%s: %s", method, msg);
}

static int setup(void **s)
{
    (void)s;
    if (mk_test_tmp_make(g_tmp, sizeof g_tmp, "leuda") != 0)
        return -1;
    if (mk_test_cardiac(g_tmp, 3, 10, 0.5, g_man, sizeof g_man) != 0)
        return -1;
    /* one translator for every run */
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_stage_common c;
    char dir[700];
    common(&c, "translate", dir, sizeof dir);
    void *tc = cfg_of("translate", 3);
    if (mk_method_train(&ctx, mk_method_find("translate"), &c, tc, NULL) != MK_OK) {
        fprintf(stderr, "translate: %s\n", mk_ctx_errmsg(&ctx));
        return -1;
    }
    free(tc);
    snprintf(g_tr, sizeof g_tr, "%s/models/translator.h5", dir);
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    mk_test_nets_free();
    mk_test_tmp_remove(g_tmp);
    return 0;
}

/* ---------------------------------------------------------------- augmentation */

static void test_affine(void **s)
{
    (void)s;
    enum { H = 9, W = 11 };
    float in[H * W], out[H * W];
    int32_t lab[H * W], lout[H * W];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            in[y * W + x] = 0.25f * (float)x - 0.5f * (float)y + 3.0f;
            lab[y * W + x] = y * W + x;
        }
    /* identity */
    mk__affine I = mk__affine_make(1.0, 0.0);
    mk__affine_image(&I, H, W, in, out);
    assert_memory_equal(in, out, sizeof in);
    mk__affine_labels(&I, H, W, lab, lout);
    assert_memory_equal(lab, lout, sizeof lab);
    /* a linear ramp: exact wherever the source position lies inside the slice */
    mk__affine A = mk__affine_make(1.07, 0.13);
    mk__affine_image(&A, H, W, in, out);
    double cx = 0.5 * (W - 1), cy = 0.5 * (H - 1);
    int inside = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double sx = cx + A.a[0] * (x - cx) + A.a[1] * (y - cy);
            double sy = cy + A.a[2] * (x - cx) + A.a[3] * (y - cy);
            if (sx < 0 || sy < 0 || sx > W - 1 || sy > H - 1)
                continue;
            inside++;
            assert_float_equal(out[y * W + x], 0.25 * sx - 0.5 * sy + 3.0, 1e-5);
        }
    assert_true(inside > H * W / 2);
    /* scale 1.07 shrinks the source grid: the ramp's slope in the output is 1/1.07 of it */
    assert_float_equal(mk__affine_make(2.0, 0.0).a[0], 0.5, 1e-12);
    /* a quarter turn of a square label map about its centre pixel is the rotation permutation */
    enum { Q = 7 };
    int32_t sq[Q * Q], rot[Q * Q];
    for (int i = 0; i < Q * Q; i++)
        sq[i] = i;
    mk__affine R = mk__affine_make(1.0, M_PI / 2);
    mk__affine_labels(&R, Q, Q, sq, rot);
    for (int y = 0; y < Q; y++)
        for (int x = 0; x < Q; x++) {
            int dx = x - Q / 2, dy = y - Q / 2;
            /* source = c + (dy, -dx) */
            assert_int_equal(rot[y * Q + x], sq[(Q / 2 - dx) * Q + (Q / 2 + dy)]);
        }
    /* draws: in range, a function of the seed */
    mk_rng r1, r2;
    mk_rng_seed(&r1, 11);
    mk_rng_seed(&r2, 11);
    for (int k = 0; k < 200; k++) {
        mk__affine a = mk__affine_draw(&r1, 0.1, 10.0), b = mk__affine_draw(&r2, 0.1, 10.0);
        assert_memory_equal(&a, &b, sizeof a);
        double scale = 1.0 / sqrt(a.a[0] * a.a[0] + a.a[1] * a.a[1]);
        double ang = atan2(a.a[1], a.a[0]) * 180.0 / M_PI;
        assert_true(scale >= 0.9 - 1e-9 && scale <= 1.1 + 1e-9);
        assert_true(fabs(ang) <= 10.0 + 1e-9);
    }
}

/* ---------------------------------------------------------------- aligned sets */

static void test_aligned_crop(void **s)
{
    (void)s;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_stage_common c;
    char dir[700];
    common(&c, "slices", dir, sizeof dir);
    c.data.crop_jitter = 3;
    mk_slices sl;
    assert_int_equal(mk_data_load(&ctx, &c.data, "MR", "train", 0, 5, &sl), MK_OK);
    int64_t np = sl.n * sl.ch * sl.cw, plane = (int64_t)sl.h * sl.w;
    float *derived = malloc((size_t)np * sizeof *derived);
    for (int64_t q = 0; q < np; q++)
        derived[q] = 2.0f * sl.img[q] + 1.0f;
    float *a = malloc((size_t)plane * sizeof *a), *b = malloc((size_t)plane * sizeof *b),
          *d = malloc((size_t)plane * sizeof *d);
    mk_rng r1, r2;
    mk_rng_seed(&r1, 8);
    mk_rng_seed(&r2, 8);
    int moved = 0;
    for (int k = 0; k < 40; k++) {
        int64_t i;
        int ox, oy;
        mk_slices_sample(&sl, &r1, k % 4, 4, a, NULL, NULL);
        mk_slices_pick(&sl, &r2, k % 4, 4, &i, &ox, &oy);
        moved |= ox != 3 || oy != 3;
        mk_slices_crop(&sl, i, ox, oy, b, NULL, NULL);
        assert_memory_equal(a, b, (size_t)plane * sizeof *a);
        mk_slices_crop_plane(&sl, derived, i, ox, oy, d);
        for (int64_t q = 0; q < plane; q++)
            assert_true(d[q] == 2.0f * a[q] + 1.0f);
    }
    assert_true(moved); /* the jitter did move the crops */
    free(a);
    free(b);
    free(d);
    free(derived);
    mk_slices_free(&sl);
}

static void test_translate(void **s)
{
    (void)s;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_translator *G = NULL;
    assert_int_equal(mk_translator_new(&ctx, MK_TRANSLATOR_GEN, 4, 21, &G), MK_OK);
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    /* 18 images: two batches of the chunked loop */
    for (int odd = 0; odd < 2; odd++) {
        int64_t n = 18, h = odd ? 7 : 8, w = odd ? 9 : 10, eh = h + h % 2, ew = w + w % 2;
        float *in = malloc((size_t)(n * h * w) * sizeof *in);
        float *out = malloc((size_t)(n * h * w) * sizeof *out);
        for (int64_t q = 0; q < n * h * w; q++)
            in[q] = (float)sin(0.37 * (double)q);
        assert_int_equal(mk__leuda_translate(&ctx, g, G, n, h, w, in, out), MK_OK);
        int64_t ne[4] = {1, 1, eh, ew};
        mk_tensor x = {0};
        assert_int_equal(mk_tensor_new(&x, 4, ne), 0);
        for (int64_t i = 0; i < n; i++) {
            for (int64_t y = 0; y < eh; y++)
                for (int64_t q = 0; q < ew; q++)
                    x.data[y * ew + q] =
                        in[(i * h + (y < h ? y : h - 1)) * w + (q < w ? q : w - 1)];
            mk_nn_graph_begin(g, 0);
            mk_var *v = mk_translator_forward(G, g, mk_nn_input(g, &x, 0));
            assert_non_null(v);
            for (int64_t y = 0; y < h; y++)
                for (int64_t q = 0; q < w; q++)
                    if (out[(i * h + y) * w + q] != v->t.data[y * ew + q])
                        fail_msg("odd %d image %lld (%lld, %lld): %g != %g", odd, (long long)i,
                                 (long long)y, (long long)q, out[(i * h + y) * w + q],
                                 v->t.data[y * ew + q]);
        }
        mk_tensor_free(&x);
        free(in);
        free(out);
    }
    mk_nn_graph_free(g);
    mk_translator_free(G);
}

/* ---------------------------------------------------------------- the method */

static mk_nn_params *load_unet(const char *path, int width, int depth)
{
    mk_nn_params *p = mk_test_load_unet(path, width, depth);
    assert_non_null(p);
    return p;
}

static mk_nn_params *model(const char *dir, const char *file)
{
    char p[900];
    snprintf(p, sizeof p, "%s/models/%s", dir, file);
    return load_unet(p, 4, 3);
}

static int has_term(const mk_train_stats *st, const char *name)
{
    for (int k = 0; k < st->nterms; k++)
        if (!strcmp(st->term_name[k], name))
            return 1;
    return 0;
}

static void test_warmup_is_source_only(void **s)
{
    (void)s;
    char a[700], b[700], d[700];
    mk_stage_common c;
    /* every iteration inside the warm-up: the unlabelled terms weigh 0 */
    common(&c, "warm", a, sizeof a);
    leuda_cfg *cfg = cfg_of("leuda", 5);
    cfg->p.warmup = 1.0f;
    mk_train_stats st;
    train("leuda", &c, cfg, &st);
    assert_true(has_term(&st, "kd") && has_term(&st, "con") && has_term(&st, "adv") &&
                has_term(&st, "disc"));
    common(&c, "source", b, sizeof b);
    source_cfg *sc = cfg_of("leuda_source", 5);
    sc->p.warmup = 1.0f; /* the same learning-rate warm-up */
    train("leuda_source", &c, sc, NULL);
    mk_nn_params *x = model(a, "leuda_student.h5"), *y = model(b, "leuda_source.h5");
    assert_true(mk_test_params_diff(x, y, 0) == 0.0);
    /* the running statistics differ: leuda's student also saw the unlabelled slices */
    assert_true(mk_test_params_diff(x, y, 1) > 0.0);
    /* once they count, the student moves away */
    common(&c, "count", d, sizeof d);
    leuda_cfg *on = cfg_of("leuda", 5);
    on->p.warmup = 0;
    on->p.rampup = 0;
    train("leuda", &c, on, NULL);
    assert_true(mk_test_params_diff(model(d, "leuda_student.h5"), y, 0) > 0.0);
    /* leuda_source's own iterations key: 0 takes leuda's */
    const mk_method *m = mk_method_find("leuda_source");
    assert_int_equal(m->iterations(sc), 5);
    sc->iterations = 7;
    assert_int_equal(m->iterations(sc), 7);
    /* the translator written beside the models is the one read (G and F) */
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_translator *t[4];
    for (int k = 0; k < 4; k++)
        assert_int_equal(mk_translator_new(&ctx, MK_TRANSLATOR_GEN, 4, 0, &t[k]), MK_OK);
    char wp[900];
    snprintf(wp, sizeof wp, "%s/models/leuda_translator.h5", a);
    mk__ck_model m0[2] = {{"G", mk_translator_params(t[0]), NULL},
                          {"F", mk_translator_params(t[1]), NULL}};
    mk__ck_model m1[2] = {{"G", mk_translator_params(t[2]), NULL},
                          {"F", mk_translator_params(t[3]), NULL}};
    assert_int_equal(mk__ckpt_load(&ctx, g_tr, "translator", NULL, m0, 2, NULL, 0), MK_OK);
    assert_int_equal(mk__ckpt_load(&ctx, wp, "translator", NULL, m1, 2, NULL, 0), MK_OK);
    assert_true(mk_test_params_diff(mk_translator_params(t[0]), mk_translator_params(t[2]), 1) ==
                0);
    assert_true(mk_test_params_diff(mk_translator_params(t[1]), mk_translator_params(t[3]), 1) ==
                0);
    for (int k = 0; k < 4; k++)
        mk_translator_free(t[k]);
    free(cfg);
    free(sc);
    free(on);
}

static void test_teachers_and_switches(void **s)
{
    (void)s;
    char d[700], p[900];
    mk_stage_common c;
    /* inside ema_pretrain both teachers are copies of the student */
    common(&c, "copy", d, sizeof d);
    leuda_cfg *cfg = cfg_of("leuda", 3);
    cfg->p.ema_pretrain = 5;
    train("leuda", &c, cfg, NULL);
    mk_nn_params *stu = model(d, "leuda_student.h5");
    assert_true(mk_test_params_diff(model(d, "leuda_intra.h5"), stu, 0) == 0.0);
    assert_true(mk_test_params_diff(model(d, "leuda_inter.h5"), stu, 0) == 0.0);
    /* after it they average (and differ from the student) */
    common(&c, "avg", d, sizeof d);
    cfg->p.ema_pretrain = 1;
    cfg->p.iterations = 4;
    train("leuda", &c, cfg, NULL);
    assert_true(mk_test_params_diff(model(d, "leuda_intra.h5"), model(d, "leuda_student.h5"), 0) >
                0);
    /* the switches */
    struct {
        const char *name;
        int wo_source, wo_target, adversarial;
        const char *absent[2], *present, *file_absent;
    } sw[] = {
        {"wo_source", 1, 0, 1, {"kd", NULL}, "con", "leuda_intra.h5"},
        {"wo_target", 0, 1, 1, {"con", NULL}, "kd", "leuda_inter.h5"},
        {"mtuda", 0, 0, 0, {"adv", "disc"}, "con", NULL},
    };
    for (size_t k = 0; k < sizeof sw / sizeof sw[0]; k++) {
        common(&c, sw[k].name, d, sizeof d);
        leuda_cfg *v = cfg_of("leuda", 2);
        v->p.wo_source = sw[k].wo_source;
        v->p.wo_target = sw[k].wo_target;
        v->p.adversarial = sw[k].adversarial;
        mk_train_stats st;
        train("leuda", &c, v, &st);
        for (int j = 0; j < 2; j++)
            if (sw[k].absent[j] && has_term(&st, sw[k].absent[j]))
                fail_msg("%s: term %s present", sw[k].name, sw[k].absent[j]);
        assert_true(has_term(&st, sw[k].present));
        if (sw[k].adversarial)
            assert_true(has_term(&st, "adv"));
        if (sw[k].file_absent) {
            snprintf(p, sizeof p, "%s/models/%s", d, sw[k].file_absent);
            assert_false(mk_fs_is_file(p));
        }
        snprintf(p, sizeof p, "%s/models/leuda_student.h5", d);
        assert_true(mk_fs_is_file(p));
        free(v);
    }
    free(cfg);
}

static void test_bad_configs(void **s)
{
    (void)s;
    char d[700], msg[1024];
    mk_stage_common c;
    common(&c, "bad", d, sizeof d);
    leuda_cfg *cfg = cfg_of("leuda", 2);
    const mk_method *m = mk_method_find("leuda");
    /* more labelled source volumes than the manifest has */
    cfg->p.source_volumes = 50;
    assert_int_equal(train_stats("leuda", &c, cfg, NULL, msg, sizeof msg), MK_ERR_CONFIG);
    assert_non_null(strstr(msg, "leuda.source_volumes"));
    mk_data_need nd[MK_NEEDS_MAX];
    assert_int_equal(m->needs(&c, cfg, nd), 2);
    assert_int_equal(nd[0].min_labelled, 50);
    assert_string_equal(nd[0].modality, "MR");
    assert_string_equal(nd[1].modality, "CT");
    cfg->p.source_volumes = 0;
    /* no translator */
    char missing[800];
    snprintf(missing, sizeof missing, "%s/none.h5", g_tmp);
    cfg->p.translator_model = missing;
    assert_int_equal(train_stats("leuda", &c, cfg, NULL, msg, sizeof msg), MK_ERR_NOT_FOUND);
    assert_non_null(strstr(msg, "translate stage"));
    cfg->p.translator_model = NULL;
    assert_string_equal(m->after(cfg), "translate");
    cfg->p.translator_model = g_tr;
    assert_null(m->after(cfg));
    /* a feature map the U-Net does not have; one modality for both domains */
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    cfg->p.adv_feature = "dec9";
    assert_int_equal(mk_method_check(&ctx, m, &c, cfg), MK_ERR_CONFIG);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "leuda.adv_feature[0]: 'dec9'"));
    cfg->p.adversarial = 0; /* not read without discriminators */
    assert_int_equal(mk_method_check(&ctx, m, &c, cfg), MK_OK);
    c.data.mri_modality = "CT";
    assert_int_equal(mk_method_check(&ctx, m, &c, cfg), MK_ERR_CONFIG);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "both 'CT'"));
    free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_affine),
        cmocka_unit_test(test_aligned_crop),
        cmocka_unit_test(test_translate),
        cmocka_unit_test(test_warmup_is_source_only),
        cmocka_unit_test(test_teachers_and_switches),
        cmocka_unit_test(test_bad_configs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
