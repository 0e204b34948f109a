/* nn: every op's backward against central finite differences.
 *
 * For an op y = f(x1..xk) the check seeds backward with a fixed random R (so the scalar is
 * L = sum y * R, accumulated in double) and compares dL/dx from the tape with
 * (L(x + h e_i) - L(x - h e_i)) / 2h for a random subset of elements of every input. The engine is
 * float32, so h is large (1e-2) and the tolerance relative (|fd - an| <= 1e-3 * s + 2e-2 * |fd|,
 * s = largest |gradient| of that input); inputs of kinked ops (ReLU, max-pool, L1) are drawn away
 * from the kinks by more than h so the finite difference never straddles one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/mk_nn.h"

/* cases are positional initializers; trailing fields default to zero */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define MAXIN 4

typedef struct gc_case gc_case;
typedef mk_var *(*gc_build)(mk_nn_graph *g, mk_var **in, const gc_case *c);

struct gc_case {
    const char *name;
    int nin;
    int ndim[MAXIN];
    int64_t ne[MAXIN][5];
    int grad[MAXIN]; /* input needs a gradient check */
    int kind[MAXIN]; /* 0 normal, 1 away from 0 (kinks), 2 distinct grid values, 3 positive */
    gc_build build;
    int training;
    int iargs[8];
    float fargs[4]; /* fargs[0] != 0: expected gradient = fargs[0] * finite difference */
    const int32_t *labels;
    const float *weights;
};

static mk_rng g_rng;

static void fill(mk_tensor *t, int kind)
{
    int64_t n = mk_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = mk_rng_normal(&g_rng);
        if (kind == 1)
            v = (v >= 0 ? 0.1 : -0.1) + 0.9 * v;
        else if (kind == 3)
            v = 0.5 + fabs(v);
        t->data[i] = (float)v;
    }
    if (kind == 2) { /* a shuffled grid with spacing 0.05 > 2h: no ties, no crossings */
        int64_t *idx = malloc((size_t)n * sizeof *idx);
        for (int64_t i = 0; i < n; i++)
            idx[i] = i;
        mk_rng_shuffle(&g_rng, idx, n);
        for (int64_t i = 0; i < n; i++)
            t->data[idx[i]] = (float)(0.05 * (double)i - 0.025 * (double)n);
        free(idx);
    }
}

static double eval_L(mk_nn_graph *g, const gc_case *c, mk_tensor *x, const float *R, int64_t *nout)
{
    mk_nn_graph_begin(g, c->training);
    mk_rng_seed(mk_nn_graph_rng(g), 99); /* same dropout mask every time */
    mk_var *in[MAXIN];
    for (int i = 0; i < c->nin; i++)
        in[i] = mk_nn_input(g, &x[i], c->grad[i]);
    mk_var *y = c->build(g, in, c);
    assert_non_null(y);
    int64_t n = mk_tensor_numel(&y->t);
    if (nout)
        *nout = n;
    double L = 0;
    if (R)
        for (int64_t i = 0; i < n; i++)
            L += (double)y->t.data[i] * R[i];
    return L;
}

static void gradcheck(const gc_case *c)
{
    mk_nn_graph *g = mk_nn_graph_new(1, 5);
    mk_nn_graph_set_update_stats(g, 0);
    mk_tensor x[MAXIN];
    for (int i = 0; i < c->nin; i++) {
        assert_int_equal(mk_tensor_new(&x[i], c->ndim[i], c->ne[i]), 0);
        fill(&x[i], c->kind[i]);
    }
    int64_t nout;
    eval_L(g, c, x, NULL, &nout);
    float *R = malloc((size_t)nout * sizeof *R);
    for (int64_t i = 0; i < nout; i++)
        R[i] = (float)mk_rng_normal(&g_rng);
    /* analytic */
    mk_nn_graph_begin(g, c->training);
    mk_rng_seed(mk_nn_graph_rng(g), 99);
    mk_var *in[MAXIN];
    for (int i = 0; i < c->nin; i++)
        in[i] = mk_nn_input(g, &x[i], c->grad[i]);
    mk_var *y = c->build(g, in, c);
    mk_nn_backward_with(g, y, R);
    float *an[MAXIN] = {0};
    for (int i = 0; i < c->nin; i++) {
        if (!c->grad[i])
            continue;
        int64_t n = mk_tensor_numel(&x[i]);
        an[i] = calloc((size_t)n, sizeof(float));
        if (in[i]->grad)
            memcpy(an[i], in[i]->grad, (size_t)n * sizeof(float));
    }
    const double h = 1e-2;
    int fails = 0;
    for (int i = 0; i < c->nin; i++) {
        if (!c->grad[i])
            continue;
        int64_t n = mk_tensor_numel(&x[i]);
        double s = 0;
        for (int64_t k = 0; k < n; k++)
            s = fabs(an[i][k]) > s ? fabs(an[i][k]) : s;
        int checks = n < 24 ? (int)n : 24;
        for (int j = 0; j < checks; j++) {
            int64_t k = n < 24 ? j : (int64_t)mk_rng_below(&g_rng, (uint64_t)n);
            float o = x[i].data[k];
            x[i].data[k] = (float)(o + h);
            double lp = eval_L(g, c, x, R, NULL);
            x[i].data[k] = (float)(o - h);
            double lm = eval_L(g, c, x, R, NULL);
            x[i].data[k] = o;
            double fd = (lp - lm) / (2 * h);
            if (c->fargs[0] != 0)
                fd *= c->fargs[0];
            double tol = 1e-3 * (s > 1e-3 ? s : 1e-3) + 2e-2 * fabs(fd);
            if (fabs(fd - an[i][k]) > tol) {
                if (fails++ < 5)
                    print_message("%s: input %d elem %lld: fd %.6g analytic %.6g\n", c->name, i,
                                  (long long)k, fd, an[i][k]);
            }
        }
    }
    for (int i = 0; i < c->nin; i++) {
        free(an[i]);
        mk_tensor_free(&x[i]);
    }
    free(R);
    mk_nn_graph_free(g);
    if (fails)
        fail_msg("%s: %d gradient mismatches", c->name, fails);
}

/* ---------------------------------------------------------------- op builders */

static mk_var *b_conv(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    int st[3] = {c->iargs[0], c->iargs[0], c->iargs[0]},
        pd[3] = {c->iargs[1], c->iargs[1], c->iargs[1]},
        dl[3] = {c->iargs[2], c->iargs[2], c->iargs[2]};
    return mk_nn_conv(g, in[0], in[1], c->nin > 2 ? in[2] : NULL, st, pd, dl);
}

static mk_var *b_convt(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    int st[3] = {c->iargs[0], c->iargs[0], c->iargs[0]},
        pd[3] = {c->iargs[1], c->iargs[1], c->iargs[1]},
        dl[3] = {c->iargs[2], c->iargs[2], c->iargs[2]};
    return mk_nn_conv_transpose(g, in[0], in[1], c->nin > 2 ? in[2] : NULL, st, pd, dl);
}

static mk_var *b_maxpool(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_maxpool(g, in[0], c->iargs[0], c->iargs[1]);
}

static mk_var *b_avgpool(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_avgpool(g, in[0], c->iargs[0], c->iargs[1]);
}

static mk_var *b_up_nearest(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_upsample_nearest(g, in[0], c->iargs[0]);
}

static mk_var *b_up_linear(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_upsample_linear(g, in[0], c->iargs[0]);
}

static mk_var *b_bn(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_batchnorm(g, in[0], c->nin > 1 ? in[1] : NULL, c->nin > 2 ? in[2] : NULL, NULL,
                           NULL, 0.1f, 1e-5f);
}

static mk_param *g_rm, *g_rv;

static mk_var *b_bn_eval(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_batchnorm(g, in[0], in[1], in[2], g_rm, g_rv, 0.1f, 1e-5f);
}

static mk_var *b_in(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_instnorm(g, in[0], c->nin > 1 ? in[1] : NULL, c->nin > 2 ? in[2] : NULL, 1e-5f);
}

static mk_var *b_relu(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_relu(g, in[0]);
}

static mk_var *b_leaky(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_leaky_relu(g, in[0], 0.2f);
}

static mk_var *b_tanh(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_tanh(g, in[0]);
}

static mk_var *b_sigmoid(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_sigmoid(g, in[0]);
}

static mk_var *b_concat(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_concat(g, in[0], in[1]);
}

static mk_var *b_add(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_add(g, in[0], in[1]);
}

static mk_var *b_scale(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_scale(g, in[0], -1.7f);
}

static mk_var *b_dropout(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_dropout(g, in[0], 0.3f);
}

static mk_var *b_softmax(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_softmax(g, in[0]);
}

static mk_var *b_sum(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_sum(g, in[0]);
}

static mk_var *b_grl(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    /* gradient reversal inside a smooth function so the check sees -lambda * d tanh */
    return mk_nn_tanh(g, mk_nn_grad_reverse(g, in[0], 0.7f));
}

static mk_var *b_ce(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_cross_entropy(g, in[0], c->labels, c->weights, 255);
}

static mk_var *b_dice(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_dice_loss(g, in[0], c->labels, 1e-5f);
}

static mk_var *b_mse(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_mse(g, in[0], in[1]);
}

static mk_var *b_l1(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    /* b is drawn on a grid and a away from it: the difference never crosses 0 under h */
    return mk_nn_l1(g, in[0], mk_nn_scale(g, in[1], 0.0f));
}

static mk_var *b_kl(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_kl_div(g, in[0], in[1], in[2]);
}

static mk_var *b_adv_ls(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_adv_ls(g, in[0], 1.0f);
}

static mk_var *b_adv_bce(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    return mk_nn_adv_bce(g, in[0], 0.0f);
}

/* ---------------------------------------------------------------- cases */

#define SH4(a, b, c, d)                                                                            \
    {                                                                                              \
        a, b, c, d                                                                                 \
    }
#define SH5(a, b, c, d, e)                                                                         \
    {                                                                                              \
        a, b, c, d, e                                                                              \
    }

static void test_conv(void **state)
{
    (void)state;
    gc_case c1 = {"conv2d s2 p1", 3,   {4, 4, 1}, {SH4(2, 3, 7, 6), SH4(4, 3, 3, 3), {4}},
                  {1, 1, 1},      {0}, b_conv,    1,
                  {2, 1, 1}};
    gradcheck(&c1);
    gc_case c2 = {"conv2d dil2", 2, {4, 4},   {SH4(1, 2, 8, 8), SH4(3, 2, 3, 3)}, {1, 1}, {0},
                  b_conv,        1, {1, 2, 2}};
    gradcheck(&c2);
    gc_case c3 = {"conv3d",  3,   {5, 5, 1}, {SH5(2, 2, 4, 5, 4), SH5(3, 2, 3, 3, 3), {3}},
                  {1, 1, 1}, {0}, b_conv,    1,
                  {1, 1, 1}};
    gradcheck(&c3);
}

static void test_conv_transpose(void **state)
{
    (void)state;
    gc_case c1 = {"convT2d k3 s2 p1", 3,   {4, 4, 1}, {SH4(2, 3, 4, 5), SH4(3, 2, 3, 3), {2}},
                  {1, 1, 1},          {0}, b_convt,   1,
                  {2, 1, 1}};
    gradcheck(&c1);
    gc_case c2 = {"convT3d k2 s2", 3,   {5, 5, 1}, {SH5(1, 4, 3, 2, 3), SH5(4, 2, 2, 2, 2), {2}},
                  {1, 1, 1},       {0}, b_convt,   1,
                  {2, 0, 1}};
    gradcheck(&c2);
}

static void test_pool(void **state)
{
    (void)state;
    gc_case m2 = {"maxpool2d", 1, {4}, {SH4(2, 3, 6, 6)}, {1}, {2}, b_maxpool, 1, {2, 2}};
    gradcheck(&m2);
    gc_case m3 = {"maxpool2d k3 s2", 1, {4}, {SH4(1, 2, 7, 7)}, {1}, {2}, b_maxpool, 1, {3, 2}};
    gradcheck(&m3);
    gc_case m4 = {"maxpool3d", 1, {5}, {SH5(1, 2, 4, 4, 6)}, {1}, {2}, b_maxpool, 1, {2, 2}};
    gradcheck(&m4);
    gc_case a2 = {"avgpool2d k3 s2", 1, {4}, {SH4(2, 2, 7, 5)}, {1}, {0}, b_avgpool, 1, {3, 2}};
    gradcheck(&a2);
    gc_case a3 = {"avgpool3d", 1, {5}, {SH5(1, 2, 4, 4, 4)}, {1}, {0}, b_avgpool, 1, {2, 2}};
    gradcheck(&a3);
}

static void test_upsample(void **state)
{
    (void)state;
    gc_case n2 = {"nearest2d", 1, {4}, {SH4(2, 2, 3, 4)}, {1}, {0}, b_up_nearest, 1, {2}};
    gradcheck(&n2);
    gc_case n3 = {"nearest3d", 1, {5}, {SH5(1, 2, 2, 3, 2)}, {1}, {0}, b_up_nearest, 1, {2}};
    gradcheck(&n3);
    gc_case l2 = {"bilinear", 1, {4}, {SH4(2, 2, 3, 4)}, {1}, {0}, b_up_linear, 1, {2}};
    gradcheck(&l2);
    gc_case l3 = {"trilinear x3", 1, {5}, {SH5(1, 2, 2, 3, 2)}, {1}, {0}, b_up_linear, 1, {3}};
    gradcheck(&l3);
}

static void test_norm(void **state)
{
    (void)state;
    gc_case b1 = {"batchnorm2d train", 3,   {4, 1, 1}, {SH4(3, 3, 4, 5), {3}, {3}},
                  {1, 1, 1},           {0}, b_bn,      1};
    gradcheck(&b1);
    gc_case b2 = {"batchnorm3d train no affine", 1, {5}, {SH5(2, 2, 3, 3, 2)}, {1}, {0}, b_bn, 1};
    gradcheck(&b2);
    mk_nn_params *ps = mk_nn_params_new();
    int64_t c3 = 3;
    g_rm = mk_nn_params_add(ps, "rm", 1, &c3, 1);
    g_rv = mk_nn_params_add(ps, "rv", 1, &c3, 1);
    for (int i = 0; i < 3; i++) {
        g_rm->value.data[i] = 0.1f * (float)i;
        g_rv->value.data[i] = 0.5f + (float)i;
    }
    gc_case b3 = {"batchnorm2d eval", 3,   {4, 1, 1}, {SH4(2, 3, 3, 3), {3}, {3}},
                  {1, 1, 1},          {0}, b_bn_eval, 0};
    gradcheck(&b3);
    mk_nn_params_free(ps);
    gc_case i1 = {"instnorm2d affine", 3,   {4, 1, 1}, {SH4(2, 3, 4, 4), {3}, {3}},
                  {1, 1, 1},           {0}, b_in,      1};
    gradcheck(&i1);
    gc_case i2 = {"instnorm3d", 1, {5}, {SH5(2, 2, 2, 3, 3)}, {1}, {0}, b_in, 0};
    gradcheck(&i2);
}

static void test_elementwise(void **state)
{
    (void)state;
    gc_case cs[] = {
        {"relu", 1, {4}, {SH4(2, 3, 4, 4)}, {1}, {1}, b_relu, 1},
        {"leaky_relu", 1, {4}, {SH4(2, 3, 4, 4)}, {1}, {1}, b_leaky, 1},
        {"tanh", 1, {4}, {SH4(2, 3, 4, 4)}, {1}, {0}, b_tanh, 1},
        {"sigmoid", 1, {4}, {SH4(2, 3, 4, 4)}, {1}, {0}, b_sigmoid, 1},
        {"concat", 2, {5, 5}, {SH5(2, 2, 2, 3, 2), SH5(2, 3, 2, 3, 2)}, {1, 1}, {0}, b_concat, 1},
        {"add", 2, {4, 4}, {SH4(2, 3, 2, 2), SH4(2, 3, 2, 2)}, {1, 1}, {0}, b_add, 1},
        {"add scalar", 2, {4, 1}, {SH4(2, 3, 2, 2), {1}}, {1, 1}, {0}, b_add, 1},
        {"scale", 1, {4}, {SH4(2, 3, 2, 2)}, {1}, {0}, b_scale, 1},
        {"dropout train", 1, {4}, {SH4(2, 3, 4, 4)}, {1}, {0}, b_dropout, 1},
        {"dropout eval", 1, {4}, {SH4(2, 3, 4, 4)}, {1}, {0}, b_dropout, 0},
        {"softmax", 1, {4}, {SH4(2, 4, 3, 3)}, {1}, {0}, b_softmax, 1},
        {"sum", 1, {4}, {SH4(2, 4, 3, 3)}, {1}, {0}, b_sum, 1},
        {"grad_reverse", 1, {4}, {SH4(2, 2, 3, 3)}, {1}, {0}, b_grl, 1, {0}, {-0.7f}},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        gradcheck(&cs[i]);
}

static void test_losses(void **state)
{
    (void)state;
    int32_t lab[2 * 5 * 4];
    for (int i = 0; i < 40; i++)
        lab[i] = (int32_t)mk_rng_below(&g_rng, 4);
    lab[3] = 255; /* ignored */
    lab[17] = 255;
    float w[4] = {0.5f, 1.0f, 2.0f, 1.5f};
    gc_case ce = {"cross_entropy weighted+ignore", 1, {4}, {SH4(2, 4, 5, 4)}, {1}, {0}, b_ce, 1};
    ce.labels = lab;
    ce.weights = w;
    gradcheck(&ce);
    int32_t lab3[2 * 3 * 2 * 2];
    for (int i = 0; i < 24; i++)
        lab3[i] = (int32_t)mk_rng_below(&g_rng, 3);
    gc_case dice = {"dice 3d", 1, {5}, {SH5(2, 3, 3, 2, 2)}, {1}, {0}, b_dice, 1};
    dice.labels = lab3;
    gradcheck(&dice);
    gc_case mse = {"mse", 2, {4, 4}, {SH4(2, 3, 2, 2), SH4(2, 3, 2, 2)}, {1, 1}, {0}, b_mse, 1};
    gradcheck(&mse);
    gc_case l1 = {"l1", 2, {4, 4}, {SH4(2, 3, 2, 2), SH4(2, 3, 2, 2)}, {1, 0}, {1, 0}, b_l1, 1};
    gradcheck(&l1);
    gc_case kl = {"kl_div with temperature",
                  3,
                  {4, 4, 1},
                  {SH4(2, 4, 3, 2), SH4(2, 4, 3, 2), {1}},
                  {1, 1, 1},
                  {0, 0, 3},
                  b_kl,
                  1};
    gradcheck(&kl);
    /* one temperature per sample (CTKD instance-wise): T [3] for a batch of 3 */
    gc_case kli = {"kl_div with a temperature per sample",
                   3,
                   {4, 4, 1},
                   {SH4(3, 4, 3, 2), SH4(3, 4, 3, 2), {3}},
                   {1, 1, 1},
                   {0, 0, 3},
                   b_kl,
                   1};
    gradcheck(&kli);
    gc_case ls = {"adv least squares", 1, {4}, {SH4(2, 1, 3, 3)}, {1}, {0}, b_adv_ls, 1};
    gradcheck(&ls);
    gc_case bce = {"adv bce", 1, {4}, {SH4(2, 1, 3, 3)}, {1}, {0}, b_adv_bce, 1};
    gradcheck(&bce);
}

/* a small chain through several ops, to check accumulation across consumers */
static mk_var *b_chain(mk_nn_graph *g, mk_var **in, const gc_case *c)
{
    static const int one[2] = {1, 1};
    mk_var *y = mk_nn_conv(g, in[0], in[1], NULL, one, one, one);
    mk_var *z = mk_nn_tanh(g, y);
    mk_var *s = mk_nn_add(g, z, mk_nn_scale(g, y, 0.5f)); /* y used twice */
    return mk_nn_concat(g, s, mk_nn_sigmoid(g, y));
}

static void test_chain(void **state)
{
    (void)state;
    gc_case c = {"chain", 2, {4, 4}, {SH4(2, 2, 4, 4), SH4(2, 2, 3, 3)}, {1, 1}, {0}, b_chain, 1};
    gradcheck(&c);
}

int main(void)
{
    mk_rng_seed(&g_rng, 20240601);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv),   cmocka_unit_test(test_conv_transpose),
        cmocka_unit_test(test_pool),   cmocka_unit_test(test_upsample),
        cmocka_unit_test(test_norm),   cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_losses), cmocka_unit_test(test_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
