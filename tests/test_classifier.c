/* models/mk_classifier.h: the patch classifier's shapes, parameter count (analytic) and names, its
 * gradients against central finite differences, that it learns a colour task; the conditional
 * generator's input (noise + one-hot), output shape and range, and that its class input matters;
 * bad configurations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/mk_classifier.h"
#include "nn/mk_optim.h"

static void wrap(mk_tensor *t, float *d, int64_t n, int64_t c, int64_t h)
{
    memset(t, 0, sizeof *t);
    mk_tensor_set_shape(t, 4, (int64_t[4]){n, c, h, h});
    t->data = d;
}

static void test_shapes_and_count(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    for (int w = 2; w <= 16; w *= 2)
        for (int d = 1; d <= 4; d++) {
            mk_classifier_cfg cfg = mk_classifier_defaults();
            cfg.base = w;
            cfg.depth = d;
            mk_classifier *c;
            assert_int_equal(mk_classifier_new(&ctx, &cfg, 3, &c), MK_OK);
            int64_t want = 0, cin = 3;
            for (int i = 0; i < d; i++) {
                int64_t ch = (int64_t)w << i;
                want += 9 * cin * ch + 9 * ch * ch + 4 * ch; /* two convs, two BN (gamma, beta) */
                cin = ch;
            }
            want += cin * 2 + 2; /* head */
            assert_int_equal(mk_nn_params_numel(mk_classifier_params(c)), want);
            assert_int_equal(mk_classifier_features(&cfg), cin);
            assert_non_null(mk_nn_params_find(mk_classifier_params(c), "enc.0.4.running_var"));
            assert_non_null(mk_nn_params_find(mk_classifier_params(c), "head.bias"));
            int side = 8 << (d - 1);
            float *x = calloc((size_t)(5 * 3 * side * side), sizeof *x);
            for (int i = 0; i < 5 * 3 * side * side; i++)
                x[i] = (float)((i * 37) % 101) / 101.0f;
            mk_nn_graph *g = mk_nn_graph_new(1, 1);
            mk_tensor t;
            wrap(&t, x, 5, 3, side);
            mk_nn_graph_begin(g, 1);
            mk_var *f = NULL, *lg = mk_classifier_forward(c, g, mk_nn_input(g, &t, 0), &f);
            assert_non_null(lg);
            assert_int_equal(lg->t.ndim, 4);
            assert_int_equal(lg->t.ne[0], 5);
            assert_int_equal(lg->t.ne[1], 2);
            assert_int_equal(lg->t.ne[2], 1);
            assert_int_equal(f->t.ne[1], cin);
            mk_nn_graph_free(g);
            free(x);
            mk_classifier_free(c);
        }
    /* bad configurations name the field */
    mk_classifier_cfg bad = mk_classifier_defaults();
    mk_classifier *c = NULL;
    bad.depth = 9;
    assert_int_equal(mk_classifier_new(&ctx, &bad, 1, &c), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "depth"));
    bad = mk_classifier_defaults();
    bad.classes = 1;
    assert_int_equal(mk_classifier_new(&ctx, &bad, 1, &c), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "classes"));
    assert_null(c);
}

/* cross-entropy of the classifier (training mode: batch statistics) on a fixed batch */
static double loss_of(mk_classifier *c, mk_nn_graph *g, mk_tensor *t, const int32_t *y, int back)
{
    mk_nn_graph_set_update_stats(g, 0);
    mk_nn_graph_begin(g, 1);
    mk_var *lg = mk_classifier_forward(c, g, mk_nn_input(g, t, 0), NULL);
    mk_var *l = mk_nn_cross_entropy(g, lg, y, NULL, -100);
    double v = mk_nn_value(l);
    if (back)
        mk_nn_backward(g, l);
    return v;
}

static void test_gradients(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_classifier_cfg cfg = mk_classifier_defaults();
    cfg.base = 3;
    cfg.depth = 2;
    mk_classifier *c;
    assert_int_equal(mk_classifier_new(&ctx, &cfg, 11, &c), MK_OK);
    const int n = 4, side = 8;
    float x[4 * 3 * 8 * 8];
    mk_rng r;
    mk_rng_seed(&r, 5);
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = (float)mk_rng_normal(&r);
    int32_t y[4] = {0, 1, 1, 0};
    mk_tensor t;
    wrap(&t, x, n, 3, side);
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    mk_nn_params *ps = mk_classifier_params(c);
    mk_nn_params_zero_grad(ps);
    loss_of(c, g, &t, y, 1);
    const char *names[] = {"enc.0.0.weight", "enc.1.3.weight", "enc.1.4.weight", "head.weight",
                           "head.bias"};
    /* conv weights move ReLU / max-pool kinks, so a few entries may straddle one: at least 90 %
     * agree; the head (after the global pool) is smooth in its weights: every entry agrees */
    int checked = 0, off = 0;
    for (int k = 0; k < 5; k++) {
        mk_param *p = mk_nn_params_find(ps, names[k]);
        assert_non_null(p);
        int64_t ne = mk_tensor_numel(&p->value);
        for (int64_t j = 0; j<ne; j += ne> 7 ? ne / 7 : 1) {
            float v0 = p->value.data[j], h = 1e-3f;
            p->value.data[j] = v0 + h;
            double lp = loss_of(c, g, &t, y, 0);
            p->value.data[j] = v0 - h;
            double lm = loss_of(c, g, &t, y, 0);
            p->value.data[j] = v0;
            double fd = (lp - lm) / (2.0 * h), an = p->grad[j];
            int bad = fabs(fd - an) > 1e-3 + 2e-2 * fabs(fd);
            if (bad && !strncmp(names[k], "head", 4))
                fail_msg("%s[%lld]: analytic %g, finite difference %g", names[k], (long long)j, an,
                         fd);
            if (bad)
                print_message("%s[%lld]: analytic %g, finite difference %g (a kink?)\n", names[k],
                              (long long)j, an, fd);
            off += bad;
            checked++;
        }
    }
    assert_true(checked >= 20);
    if (off * 10 > checked)
        fail_msg("%d of %d entries disagree with finite differences", off, checked);
    mk_nn_graph_free(g);
    mk_classifier_free(c);
}

/* reddish vs bluish noisy patches: a few Adam steps reach 100 % on fresh samples */
static void make_batch(mk_rng *r, float *x, int32_t *y, int n, int side)
{
    int64_t plane = (int64_t)side * side;
    for (int b = 0; b < n; b++) {
        y[b] = (int32_t)mk_rng_below(r, 2);
        for (int ch = 0; ch < 3; ch++)
            for (int64_t i = 0; i < plane; i++) {
                float base = ch == 0 ? (y[b] ? 0.7f : 0.4f) : ch == 2 ? (y[b] ? 0.4f : 0.7f) : 0.5f;
                x[(b * 3 + ch) * plane + i] = base + 0.15f * (float)mk_rng_normal(r);
            }
    }
}

static void test_learns(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_classifier_cfg cfg = mk_classifier_defaults();
    cfg.base = 4;
    cfg.depth = 2;
    mk_classifier *c;
    assert_int_equal(mk_classifier_new(&ctx, &cfg, 2, &c), MK_OK);
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    oc.lr = 1e-2f;
    mk_optim *opt = mk_optim_new(mk_classifier_params(c), &oc);
    const int n = 16, side = 16;
    float *x = malloc((size_t)n * 3 * side * side * sizeof *x);
    int32_t y[16];
    mk_rng r;
    mk_rng_seed(&r, 9);
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    mk_tensor t;
    wrap(&t, x, n, 3, side);
    double first = 0, last = 0;
    for (int it = 0; it < 60; it++) {
        make_batch(&r, x, y, n, side);
        mk_nn_params_zero_grad(mk_classifier_params(c));
        mk_nn_graph_begin(g, 1);
        mk_var *lg = mk_classifier_forward(c, g, mk_nn_input(g, &t, 0), NULL);
        mk_var *l = mk_nn_cross_entropy(g, lg, y, NULL, -100);
        if (it == 0)
            first = mk_nn_value(l);
        last = mk_nn_value(l);
        mk_nn_backward(g, l);
        mk_optim_step(opt);
    }
    assert_true(last < 0.5 * first);
    int right = 0;
    for (int rep = 0; rep < 4; rep++) {
        make_batch(&r, x, y, n, side);
        mk_nn_graph_begin(g, 0);
        mk_var *lg = mk_classifier_forward(c, g, mk_nn_input(g, &t, 0), NULL);
        for (int b = 0; b < n; b++)
            right += (lg->t.data[b * 2 + 1] > lg->t.data[b * 2]) == (y[b] == 1);
    }
    if (right < 62)
        fail_msg("eval accuracy %d / 64 (loss %g -> %g)", right, first, last);
    mk_nn_graph_free(g);
    mk_optim_free(opt);
    free(x);
    mk_classifier_free(c);
}

static void test_generator(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_cgen_cfg cfg = mk_cgen_defaults();
    cfg.base = 4;
    cfg.zdim = 6;
    cfg.size = 16;
    mk_cgen *gen;
    assert_int_equal(mk_cgen_new(&ctx, &cfg, 4, &gen), MK_OK);
    mk_tensor in;
    assert_int_equal(mk_tensor_new(&in, 4, (int64_t[4]){3, 8, 1, 1}), 0);
    int32_t y[3] = {1, 0, 1};
    mk_rng r;
    mk_rng_seed(&r, 1);
    mk_cgen_input(&cfg, &r, y, &in);
    for (int b = 0; b < 3; b++) {
        assert_true(in.data[b * 8 + 6] == (y[b] == 0 ? 1.0f : 0.0f));
        assert_true(in.data[b * 8 + 7] == (y[b] == 1 ? 1.0f : 0.0f));
    }
    assert_true(in.data[0] != in.data[8]); /* fresh noise per sample */
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    mk_nn_graph_begin(g, 0);
    mk_var *o = mk_cgen_forward(gen, g, mk_nn_input(g, &in, 0));
    assert_non_null(o);
    assert_int_equal(o->t.ne[0], 3);
    assert_int_equal(o->t.ne[1], 3);
    assert_int_equal(o->t.ne[2], 16);
    assert_int_equal(o->t.ne[3], 16);
    int64_t nn = mk_tensor_numel(&o->t);
    for (int64_t i = 0; i < nn; i++)
        assert_true(o->t.data[i] > 0.0f && o->t.data[i] < 1.0f);
    /* the same noise with the other class gives another image */
    float keep = o->t.data[5];
    in.data[6] = 1.0f;
    in.data[7] = 0.0f;
    mk_nn_graph_begin(g, 0);
    o = mk_cgen_forward(gen, g, mk_nn_input(g, &in, 0));
    assert_true(o->t.data[5] != keep);
    mk_nn_graph_free(g);
    mk_tensor_free(&in);
    mk_cgen_free(gen);
    cfg.size = 20;
    assert_int_equal(mk_cgen_new(&ctx, &cfg, 4, &gen), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "multiple of 8"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes_and_count),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_learns),
        cmocka_unit_test(test_generator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
