/* nn building blocks (nn/mk_nn_blocks.h): EMA teacher updates and ramps against values computed by
 * hand, every loss's value against a hand-computed tiny case and a plain double reference on random
 * tensors, gradients against central finite differences, gradient reversal sign and scale, the
 * CTKD temperature chain, and the clamped input noise (bounds, determinism).
 *
 * Finite differences follow tests/test_nn_grad.c: h = 1e-2 on float32 inputs, the loss read back
 * as float32 and differenced in double, tolerance |fd - an| <= 1e-3 * max(s, 1e-3) + 2e-2 * |fd|
 * (s = largest |analytic gradient| of that input). The float32 loss carries ~6e-8 relative
 * rounding, i.e. ~3e-6 |L| after dividing by 2h, well below the absolute term for the O(0.1-1)
 * losses and gradients of these tiny tensors; the O(h^2) truncation error of these smooth losses
 * is covered by the 2 % relative term. Every check also verifies it would have caught an analytic
 * gradient that is 10 % off, so a passing check is not a vacuous one. */
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
#include "nn/mk_nn_blocks.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define PI 3.14159265358979323846
#define MAXIN 3

static mk_rng g_rng;

static mk_var *input4(mk_nn_graph *g, int64_t n, int64_t c, int64_t h, int64_t w, const float *v,
                      int rg)
{
    int64_t ne[4] = {n, c, h, w};
    mk_tensor t;
    mk_tensor_set_shape(&t, 4, ne);
    t.data = (float *)v;
    t.view_of = NULL;
    return mk_nn_input(g, &t, rg);
}

static void fill_normal(float *x, int64_t n, double scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(scale * mk_rng_normal(&g_rng));
}

/* ---------------------------------------------------------------- finite differences */

typedef struct fd_case fd_case;
typedef mk_var *(*fd_build)(mk_nn_graph *g, mk_var **in, const fd_case *c);

struct fd_case {
    const char *name;
    int nin;
    int ndim[MAXIN];
    int64_t ne[MAXIN][4];
    int grad[MAXIN];     /* input gets a gradient and is checked */
    int positive[MAXIN]; /* draw 0.5 + |N(0,1)| (temperatures) instead of 1.5 N(0,1) */
    fd_build build;
    const int32_t *labels;
    int flags;
    float f;          /* extra float argument of the builder */
    double fd_factor; /* expected analytic gradient = fd_factor * fd (0 means 1) */
};

/* builds the loss on fresh inputs in[0..nin) and leaves the loss node in in[MAXIN] */
static double eval_loss(mk_nn_graph *g, const fd_case *c, mk_tensor *x, mk_var **in)
{
    mk_nn_graph_begin(g, 1);
    for (int i = 0; i < c->nin; i++)
        in[i] = mk_nn_input(g, &x[i], c->grad[i]);
    mk_var *y = c->build(g, in, c);
    assert_non_null(y);
    assert_int_equal(mk_tensor_numel(&y->t), 1);
    assert_false(mk_nn_graph_oom(g));
    in[MAXIN] = y;
    return y->t.data[0];
}

/* Checks every element of every input with grad[i] set; fails the test on a mismatch, and also
 * fails if an analytic gradient scaled by 1.1 would have passed everywhere (vacuous check). */
static void fd_check(const fd_case *c)
{
    mk_nn_graph *g = mk_nn_graph_new(1, 3);
    mk_tensor x[MAXIN];
    for (int i = 0; i < c->nin; i++) {
        assert_int_equal(mk_tensor_new(&x[i], c->ndim[i], c->ne[i]), 0);
        int64_t n = mk_tensor_numel(&x[i]);
        for (int64_t k = 0; k < n; k++) {
            double v = mk_rng_normal(&g_rng);
            x[i].data[k] = (float)(c->positive[i] ? 0.5 + fabs(v) : 1.5 * v);
        }
    }
    mk_var *in[MAXIN + 1];
    eval_loss(g, c, x, in);
    mk_nn_backward(g, in[MAXIN]);
    float *an[MAXIN] = {0};
    for (int i = 0; i < c->nin; i++) {
        if (!c->grad[i])
            continue;
        int64_t n = mk_tensor_numel(&x[i]);
        an[i] = calloc((size_t)n, sizeof(float));
        assert_non_null(in[i]->grad);
        memcpy(an[i], in[i]->grad, (size_t)n * sizeof(float));
    }
    const double h = 1e-2, factor = c->fd_factor != 0 ? c->fd_factor : 1.0;
    int fails = 0, control = 0;
    for (int i = 0; i < c->nin; i++) {
        if (!c->grad[i])
            continue;
        int64_t n = mk_tensor_numel(&x[i]);
        double s = 0;
        for (int64_t k = 0; k < n; k++)
            s = fabs(an[i][k]) > s ? fabs(an[i][k]) : s;
        for (int64_t k = 0; k < n; k++) {
            float o = x[i].data[k];
            x[i].data[k] = (float)(o + h);
            double lp = eval_loss(g, c, x, in);
            x[i].data[k] = (float)(o - h);
            double lm = eval_loss(g, c, x, in);
            x[i].data[k] = o;
            double fd = factor * (lp - lm) / (2 * h);
            double tol = 1e-3 * (s > 1e-3 ? s : 1e-3) + 2e-2 * fabs(fd);
            if (fabs(fd - an[i][k]) > tol && fails++ < 5)
                print_message("%s: input %d elem %lld: fd %.6g analytic %.6g\n", c->name, i,
                              (long long)k, fd, an[i][k]);
            if (fabs(fd - 1.1 * an[i][k]) > tol)
                control++;
        }
    }
    for (int i = 0; i < c->nin; i++) {
        free(an[i]);
        mk_tensor_free(&x[i]);
    }
    mk_nn_graph_free(g);
    if (fails)
        fail_msg("%s: %d gradient mismatches", c->name, fails);
    if (!control)
        fail_msg("%s: a 10%% gradient error would go unnoticed", c->name);
}

/* ---------------------------------------------------------------- double references */

/* softmax over channels of position (i, s) into p */
static void ref_softmax(const float *x, int64_t c, int64_t S, int64_t i, int64_t s, double *p)
{
    double z = 0;
    for (int64_t k = 0; k < c; k++)
        z += exp((double)x[(i * c + k) * S + s]);
    for (int64_t k = 0; k < c; k++)
        p[k] = exp((double)x[(i * c + k) * S + s]) / z;
}

static double ref_softmax_mse(const float *a, const float *b, int64_t n, int64_t c, int64_t S)
{
    double pa[16], pb[16], t = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < S; s++) {
            ref_softmax(a, c, S, i, s, pa);
            ref_softmax(b, c, S, i, s, pb);
            for (int64_t k = 0; k < c; k++)
                t += (pa[k] - pb[k]) * (pa[k] - pb[k]);
        }
    return t / (double)(n * c * S);
}

static double ref_entropy(const float *a, int64_t n, int64_t c, int64_t S)
{
    double p[16], t = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < S; s++) {
            ref_softmax(a, c, S, i, s, p);
            for (int64_t k = 0; k < c; k++)
                t -= p[k] * log(p[k]);
        }
    return t / (double)(n * S);
}

static double ref_mel(const float *a, const float *b, int64_t n, int64_t c, int64_t S)
{
    double p[16], q[16], t = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < S; s++) {
            ref_softmax(a, c, S, i, s, p);
            ref_softmax(b, c, S, i, s, q);
            for (int64_t k = 0; k < c; k++) {
                double r = p[k] * log2(p[k] + 1e-8) - q[k] * log2(q[k] + 1e-8);
                t += r * r;
            }
        }
    return t / (double)(n * S);
}

/* T^2 * sum over positions of KL(p_t || p_s), not yet divided */
static double ref_kd_sum(const float *st, const float *te, int64_t n, int64_t c, int64_t S,
                         double T)
{
    double ps[16], pt[16], t = 0;
    float zs[64], zt[64];
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < S; s++) {
            for (int64_t k = 0; k < c; k++) { /* one position, scaled by 1/T */
                zs[k] = (float)(st[(i * c + k) * S + s] / T);
                zt[k] = (float)(te[(i * c + k) * S + s] / T);
            }
            ref_softmax(zs, c, 1, 0, 0, ps);
            ref_softmax(zt, c, 1, 0, 0, pt);
            for (int64_t k = 0; k < c; k++)
                t += pt[k] * log(pt[k] / ps[k]);
        }
    return T * T * t;
}

static double ref_dice(const float *x, const int32_t *lab, int64_t n, int64_t c, int64_t S,
                       double eps, int squared, int no_bg)
{
    double I[16] = {0}, P[16] = {0}, G[16] = {0}, p[16];
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < S; s++) {
            ref_softmax(x, c, S, i, s, p);
            for (int64_t k = 0; k < c; k++) {
                double y = lab[i * S + s] == k ? 1.0 : 0.0;
                I[k] += p[k] * y;
                P[k] += squared ? p[k] * p[k] : p[k];
                G[k] += y * y;
            }
        }
    double m = 0;
    for (int64_t k = no_bg; k < c; k++)
        m += (2 * I[k] + eps) / (P[k] + G[k] + eps);
    return 1.0 - m / (double)(c - no_bg);
}

static void assert_rel(double got, double want, double rel)
{
    double tol = rel * (fabs(want) > 1 ? fabs(want) : 1.0);
    if (fabs(got - want) > tol)
        fail_msg("got %.9g want %.9g (tol %.3g)", got, want, tol);
}

/* ---------------------------------------------------------------- EMA */

static void test_ema_alpha(void **state)
{
    (void)state;
    assert_true(mk_nn_ema_alpha(0.99, 0) == 0.0);
    assert_true(mk_nn_ema_alpha(0.99, -5) == 0.0); /* inside iter_pretrain */
    assert_true(mk_nn_ema_alpha(0.99, 1) == 0.5);
    assert_rel(mk_nn_ema_alpha(0.99, 2), 2.0 / 3.0, 1e-15);
    assert_true(mk_nn_ema_alpha(0.99, 3) == 0.75);
    assert_rel(mk_nn_ema_alpha(0.99, 9), 0.9, 1e-15);
    assert_rel(mk_nn_ema_alpha(0.99, 98), 1.0 - 1.0 / 99.0, 1e-15); /* still below decay */
    assert_true(mk_nn_ema_alpha(0.99, 99) == 0.99);                 /* 1 - 1/100 == decay */
    assert_true(mk_nn_ema_alpha(0.99, 100000) == 0.99);
    assert_true(mk_nn_ema_alpha(0.5, 5) == 0.5);
    /* MT-UDA with iter_pretrain 30: alpha 0 up to step 30, 0.5 at 31 */
    assert_true(mk_nn_ema_alpha(0.99, 30 - 30) == 0.0);
    assert_true(mk_nn_ema_alpha(0.99, 31 - 30) == 0.5);
}

/* one parameter "w" [3] and one buffer "bn.running_mean" [2] */
static mk_nn_params *ema_store(mk_param **w, mk_param **b)
{
    mk_nn_params *p = mk_nn_params_new();
    int64_t three = 3, two = 2;
    *w = mk_nn_params_add(p, "w", 1, &three, 0);
    *b = mk_nn_params_add(p, "bn.running_mean", 1, &two, 1);
    assert_non_null(*w);
    assert_non_null(*b);
    return p;
}

static void set3(mk_param *p, float a, float b, float c)
{
    p->value.data[0] = a;
    p->value.data[1] = b;
    p->value.data[2] = c;
}

static void set2(mk_param *p, float a, float b)
{
    p->value.data[0] = a;
    p->value.data[1] = b;
}

static void test_ema_step(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    for (int mode = 0; mode < 3; mode++) {
        mk_param *sw, *sb, *tw, *tb;
        mk_nn_params *S = ema_store(&sw, &sb), *T = ema_store(&tw, &tb);
        set3(tw, 100, 100, 100);
        set2(tb, 10, 20);
        /* step 0: alpha 0, the teacher parameters become a copy */
        set3(sw, 1, 2, 3);
        set2(sb, 0, 4);
        assert_int_equal(mk_nn_params_ema_step(&ctx, T, S, 0.99, 0, (mk_nn_ema_buffers)mode),
                         MK_OK);
        assert_true(tw->value.data[0] == 1 && tw->value.data[1] == 2 && tw->value.data[2] == 3);
        /* step 1: alpha 1/2: .5 {1,2,3} + .5 {3,2,-1} = {2,2,1} */
        set3(sw, 3, 2, -1);
        set2(sb, 2, 8);
        assert_int_equal(mk_nn_params_ema_step(&ctx, T, S, 0.99, 1, (mk_nn_ema_buffers)mode),
                         MK_OK);
        assert_true(tw->value.data[0] == 2 && tw->value.data[1] == 2 && tw->value.data[2] == 1);
        if (mode == MK_NN_EMA_KEEP_BUFFERS) /* MT-UDA: buffers untouched */
            assert_true(tb->value.data[0] == 10 && tb->value.data[1] == 20);
        else if (mode == MK_NN_EMA_AVERAGE_BUFFERS) /* copied {0,4} at step 0, then .5/.5 */
            assert_true(tb->value.data[0] == 1 && tb->value.data[1] == 6);
        else
            assert_true(tb->value.data[0] == 2 && tb->value.data[1] == 8);
        /* step 2: alpha 2/3: 2/3 {2,2,1} + 1/3 {5,-1,4} = {3,1,2} */
        set3(sw, 5, -1, 4);
        assert_int_equal(mk_nn_params_ema_step(&ctx, T, S, 0.99, 2, (mk_nn_ema_buffers)mode),
                         MK_OK);
        assert_float_equal(tw->value.data[0], 3.0f, 1e-6);
        assert_float_equal(tw->value.data[1], 1.0f, 1e-6);
        assert_float_equal(tw->value.data[2], 2.0f, 1e-6);
        mk_nn_params_free(S);
        mk_nn_params_free(T);
    }
    /* averaging buffers with a fixed alpha is mk_nn_params_ema, bit for bit */
    mk_param *sw, *sb, *tw, *tb, *uw, *ub;
    mk_nn_params *S = ema_store(&sw, &sb), *T = ema_store(&tw, &tb), *U = ema_store(&uw, &ub);
    set3(sw, 0.3f, -1.7f, 2.9f);
    set2(sb, 0.11f, 5.5f);
    set3(tw, 1.1f, 0.2f, -0.4f);
    set2(tb, 3.3f, -2.2f);
    assert_int_equal(mk_nn_params_copy(&ctx, U, T), MK_OK);
    assert_int_equal(mk_nn_params_ema(&ctx, T, S, 0.9f), MK_OK);
    assert_int_equal(mk_nn_params_ema_alpha(&ctx, U, S, 0.9f, MK_NN_EMA_AVERAGE_BUFFERS), MK_OK);
    assert_memory_equal(tw->value.data, uw->value.data, 3 * sizeof(float));
    assert_memory_equal(tb->value.data, ub->value.data, 2 * sizeof(float));
    /* a student entry the teacher lacks, and a shape mismatch */
    int64_t four = 4;
    mk_param *extra = mk_nn_params_add(S, "extra", 1, &four, 0);
    assert_non_null(extra);
    assert_int_equal(mk_nn_params_ema_step(&ctx, T, S, 0.99, 5, MK_NN_EMA_KEEP_BUFFERS),
                     MK_ERR_NOT_FOUND);
    assert_non_null(strstr(ctx.msg, "extra"));
    int64_t two = 2;
    assert_non_null(mk_nn_params_add(T, "extra", 1, &two, 0));
    assert_int_equal(mk_nn_params_ema_step(&ctx, T, S, 0.99, 5, MK_NN_EMA_KEEP_BUFFERS),
                     MK_ERR_INVALID);
    mk_nn_params_free(S);
    mk_nn_params_free(T);
    mk_nn_params_free(U);
}

/* ---------------------------------------------------------------- ramps and schedules */

static void test_ramps(void **state)
{
    (void)state;
    /* sigmoid: exp(-5 (1 - t/T)^2) */
    assert_rel(mk_nn_sigmoid_rampup(0, 150), 0.006737946999085467, 1e-14);
    assert_rel(mk_nn_sigmoid_rampup(75, 150), 0.2865047968601901, 1e-14); /* exp(-1.25) */
    assert_rel(mk_nn_sigmoid_rampup(15, 150), 0.0174223746394935, 1e-13); /* exp(-5 .81) */
    assert_true(mk_nn_sigmoid_rampup(150, 150) == 1.0);
    assert_true(mk_nn_sigmoid_rampup(400, 150) == 1.0);                     /* clipped */
    assert_rel(mk_nn_sigmoid_rampup(-3, 150), 0.006737946999085467, 1e-14); /* clipped */
    assert_true(mk_nn_sigmoid_rampup(7, 0) == 1.0);
    /* linear: min(t/T, 1) */
    assert_rel(mk_nn_linear_rampup(30, 100), 0.3, 1e-15);
    assert_true(mk_nn_linear_rampup(0, 100) == 0.0);
    assert_true(mk_nn_linear_rampup(100, 100) == 1.0);
    assert_true(mk_nn_linear_rampup(250, 100) == 1.0);
    assert_true(mk_nn_linear_rampup(0, 0) == 1.0);
    /* cosine rampdown: 0.5 (cos(pi t/T) + 1) */
    assert_true(mk_nn_cosine_rampdown(0, 10) == 1.0);
    assert_rel(mk_nn_cosine_rampdown(2.5, 10), 0.8535533905932737, 1e-14);
    assert_rel(mk_nn_cosine_rampdown(5, 10), 0.5, 1e-14);
    assert_true(fabs(mk_nn_cosine_rampdown(10, 10)) < 1e-15);
    assert_true(fabs(mk_nn_cosine_rampdown(12, 10)) < 1e-15);
}

static void test_ctkd_schedule(void **state)
{
    (void)state;
    /* CosineDecay(max 0, min -1, loops 10), §4.4: -0.024 at e = 1, -0.5 at 5, -1 from 10 on */
    assert_true(mk_nn_ctkd_cosine_decay(0, 0, -1, 10) == 0.0);
    assert_rel(mk_nn_ctkd_cosine_decay(1, 0, -1, 10), -0.02447174185242318, 1e-13);
    assert_rel(mk_nn_ctkd_cosine_decay(3, 0, -1, 10), -0.20610737385376343, 1e-13);
    assert_rel(mk_nn_ctkd_cosine_decay(5, 0, -1, 10), -0.5, 1e-14);
    assert_true(mk_nn_ctkd_cosine_decay(10, 0, -1, 10) == -1.0);
    assert_true(mk_nn_ctkd_cosine_decay(240, 0, -1, 10) == -1.0);
    assert_true(mk_nn_ctkd_cosine_decay(-2, 0, -1, 10) == 0.0);
    /* a general range: max 2, min 1, halfway 1.5 */
    assert_rel(mk_nn_ctkd_cosine_decay(4, 2, 1, 8), 1.5, 1e-14);
    assert_true(mk_nn_ctkd_cosine_decay(3, 2, 1, 0) == 1.0);
}

/* ---------------------------------------------------------------- gradient reversal, CTKD T */

static void test_grad_reverse(void **state)
{
    (void)state;
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    const float x[4] = {0.5f, -1.25f, 3.0f, 1e-3f}, dy[4] = {1.0f, -2.0f, 0.5f, 4.0f};
    for (int pass = 0; pass < 3; pass++) {
        float lambda = pass == 0 ? 0.3f : pass == 1 ? -0.7f : 0.0f;
        mk_nn_graph_begin(g, 1);
        mk_var *xi = input4(g, 1, 4, 1, 1, x, 1);
        mk_var *y = mk_nn_grad_reverse(g, xi, lambda);
        assert_memory_equal(y->t.data, x, sizeof x); /* forward: identity */
        mk_nn_backward_with(g, y, dy);
        for (int i = 0; i < 4; i++)
            assert_true(xi->grad[i] == -lambda * dy[i]); /* backward: -lambda * grad */
    }
    /* lambda changed after the forward, before backward (a schedule per step) */
    mk_nn_graph_begin(g, 1);
    mk_var *xi = input4(g, 1, 4, 1, 1, x, 1);
    mk_var *y = mk_nn_grad_reverse(g, xi, 1.0f);
    mk_nn_grad_reverse_set(y, 2.0f);
    mk_nn_backward_with(g, y, dy);
    assert_true(xi->grad[1] == 4.0f);
    mk_nn_graph_free(g);
}

static mk_var *b_ctkd_kd(mk_nn_graph *g, mk_var **in, const fd_case *c)
{
    mk_var *T = mk_nn_ctkd_temperature(g, in[2], c->f, 1.0f, 20.0f);
    return mk_nn_kd_kl(g, in[0], in[1], T, MK_NN_KD_PER_PIXEL);
}

static void test_ctkd_temperature(void **state)
{
    (void)state;
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    mk_nn_graph_begin(g, 1);
    mk_var *theta = mk_nn_scalar(g, 1.0f, 1);
    mk_var *T = mk_nn_ctkd_temperature(g, theta, -0.5f, 1.0f, 20.0f);
    /* 1 + 20 sigmoid(1) */
    assert_float_equal(mk_nn_value(T), 15.621171572600097f, 1e-5);
    mk_nn_backward(g, T);
    /* dT/dtheta = 20 s (1 - s) = 3.93224, times grad_factor -0.5 */
    assert_float_equal(theta->grad[0], -0.5f * 3.9322386648296366f, 1e-5);
    mk_nn_graph_free(g);
    /* the whole chain theta -> T -> KD by finite differences: grad_factor 1 is the plain gradient,
     * grad_factor -1 reverses it (CTKD from epoch 10 on) */
    fd_case plain = {
        "ctkd chain", 3, {4, 4, 1}, {{2, 3, 2, 2}, {2, 3, 2, 2}, {1}}, {1, 1, 1}, {0}, b_ctkd_kd,
        NULL,         0, 1.0f};
    fd_check(&plain);
    fd_case rev = {"ctkd chain reversed",
                   3,
                   {4, 4, 1},
                   {{2, 3, 2, 2}, {2, 3, 2, 2}, {1}},
                   {0, 0, 1},
                   {0},
                   b_ctkd_kd,
                   NULL,
                   0,
                   -1.0f,
                   -1.0};
    fd_check(&rev);
}

/* ---------------------------------------------------------------- softmax-MSE */

static mk_var *b_smse(mk_nn_graph *g, mk_var **in, const fd_case *c)
{
    return mk_nn_softmax_mse(g, in[0], in[1]);
}

/* two positions, two classes: a -> p (.25,.75) and (.5,.5); b -> (.5,.5) and (.75,.25) */
static const float HA[4] = {0, 0, 1.0986123f, 0}, HB[4] = {0, 1.0986123f, 0, 0};

static void test_softmax_mse(void **state)
{
    (void)state;
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    mk_nn_graph_begin(g, 1);
    mk_var *a = input4(g, 1, 2, 1, 2, HA, 1), *b = input4(g, 1, 2, 1, 2, HB, 0);
    mk_var *l = mk_nn_softmax_mse(g, a, b);
    assert_float_equal(mk_nn_value(l), 0.0625f, 1e-7); /* four squares of 0.25, mean */
    mk_nn_backward(g, l);
    /* position 0: dL/dp = 2 (p - q)/4 = (-.125, .125); dz = p (dp - <p,dp>) = -+.046875 */
    assert_float_equal(a->grad[0], -0.046875f, 1e-6);
    assert_float_equal(a->grad[2], 0.046875f, 1e-6);
    assert_null(b->grad); /* b detached: the gradient goes to a only */
    assert_string_equal(mk_op_name(MK_OP_SOFTMAX_MSE), "softmax_mse");
    /* random tensors against the double reference */
    float x[2 * 3 * 4 * 5], y[2 * 3 * 4 * 5];
    fill_normal(x, 120, 2.0);
    fill_normal(y, 120, 2.0);
    mk_nn_graph_begin(g, 1);
    l = mk_nn_softmax_mse(g, input4(g, 2, 3, 4, 5, x, 0), input4(g, 2, 3, 4, 5, y, 0));
    assert_rel(mk_nn_value(l), ref_softmax_mse(x, y, 2, 3, 20), 1e-6);
    mk_nn_graph_free(g);
    fd_case both = {"softmax_mse", 2, {4, 4}, {{2, 3, 2, 2}, {2, 3, 2, 2}}, {1, 1}, {0}, b_smse};
    fd_check(&both);
}

/* ---------------------------------------------------------------- entropy */

static mk_var *b_entropy(mk_nn_graph *g, mk_var **in, const fd_case *c)
{
    return mk_nn_entropy(g, in[0]);
}

static void test_entropy(void **state)
{
    (void)state;
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    mk_nn_graph_begin(g, 1);
    /* (.25,.75): 0.5623351, (.5,.5): log 2 -> mean 0.6277412 */
    assert_float_equal(mk_nn_value(mk_nn_entropy(g, input4(g, 1, 2, 1, 2, HA, 0))),
                       0.6277411625893767f, 1e-6);
    const float u[4] = {0.7f, 0.7f, 0.7f, 0.7f}; /* uniform over 4 classes: log 4 */
    assert_float_equal(mk_nn_value(mk_nn_entropy(g, input4(g, 1, 4, 1, 1, u, 0))),
                       1.3862943611198906f, 1e-6);
    const float sharp[2] = {60.0f, -60.0f}; /* p = (1, e^-120): 0, finite without an eps */
    float hs = mk_nn_value(mk_nn_entropy(g, input4(g, 1, 2, 1, 1, sharp, 0)));
    assert_true(isfinite(hs) && hs >= 0 && hs < 1e-30f);
    float x[3 * 5 * 2 * 3];
    fill_normal(x, 90, 2.0);
    assert_rel(mk_nn_value(mk_nn_entropy(g, input4(g, 3, 5, 2, 3, x, 0))), ref_entropy(x, 3, 5, 6),
               1e-6);
    mk_nn_graph_free(g);
    fd_case c = {"entropy", 1, {4}, {{2, 4, 2, 2}}, {1}, {0}, b_entropy};
    fd_check(&c);
}

/* ---------------------------------------------------------------- MEL */

static mk_var *b_mel(mk_nn_graph *g, mk_var **in, const fd_case *c)
{
    return mk_nn_mel(g, in[0], in[1], 1e-8f);
}

static void test_mel(void **state)
{
    (void)state;
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    mk_nn_graph_begin(g, 1);
    /* per position one term (.75 log2 .75 - .5 log2 .5)^2, the other ~0 */
    mk_var *l = mk_nn_mel(g, input4(g, 1, 2, 1, 2, HA, 0), input4(g, 1, 2, 1, 2, HB, 0), 1e-8f);
    assert_float_equal(mk_nn_value(l), 0.03561594630766256f, 1e-7);
    assert_string_equal(mk_op_name(MK_OP_MEL), "mean_entropy_loss");
    l = mk_nn_mel(g, input4(g, 1, 2, 1, 2, HA, 0), input4(g, 1, 2, 1, 2, HA, 0), 1e-8f);
    assert_true(mk_nn_value(l) == 0.0f);
    float x[2 * 4 * 3 * 3], y[2 * 4 * 3 * 3];
    fill_normal(x, 72, 2.0);
    fill_normal(y, 72, 2.0);
    l = mk_nn_mel(g, input4(g, 2, 4, 3, 3, x, 0), input4(g, 2, 4, 3, 3, y, 0), 1e-8f);
    assert_rel(mk_nn_value(l), ref_mel(x, y, 2, 4, 9), 1e-6);
    mk_nn_graph_free(g);
    fd_case c = {"mel", 2, {4, 4}, {{2, 3, 2, 2}, {2, 3, 2, 2}}, {1, 1}, {0}, b_mel};
    fd_check(&c);
}

/* ---------------------------------------------------------------- KD-KL */

static mk_var *b_kd(mk_nn_graph *g, mk_var **in, const fd_case *c)
{
    return mk_nn_kd_kl(g, in[0], in[1], in[2], (mk_nn_kd_reduction)c->flags);
}

static void test_kd_kl(void **state)
{
    (void)state;
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    mk_nn_graph_begin(g, 1);
    /* classification [1,2]: s/T -> (.5,.5), t/T -> (.25,.75), T = 2: 4 KL = 0.5232481 */
    const float s2[2] = {0, 0}, t2[2] = {0, 2.1972246f};
    int64_t ne2[2] = {1, 2};
    mk_tensor ts, tt;
    mk_tensor_set_shape(&ts, 2, ne2);
    mk_tensor_set_shape(&tt, 2, ne2);
    ts.data = (float *)s2;
    tt.data = (float *)t2;
    ts.view_of = tt.view_of = NULL;
    mk_var *T2 = mk_nn_scalar(g, 2.0f, 0);
    for (int r = 0; r < 2; r++)
        assert_float_equal(
            mk_nn_value(mk_nn_kd_kl(g, mk_nn_input(g, &ts, 0), mk_nn_input(g, &tt, 0), T2,
                                    (mk_nn_kd_reduction)r)),
            0.5232481437645479f, 1e-6);
    /* segmentation [1,2,1,2]: second pixel identical (KL 0): per pixel half, batchmean whole */
    const float ss[4] = {0, 0, 0, 0.3f}, st[4] = {0, 0, 2.1972246f, 0.3f};
    assert_float_equal(
        mk_nn_value(mk_nn_kd_kl(g, input4(g, 1, 2, 1, 2, ss, 0), input4(g, 1, 2, 1, 2, st, 0), T2,
                                MK_NN_KD_PER_PIXEL)),
        0.26162407188227393f, 1e-6);
    assert_float_equal(
        mk_nn_value(mk_nn_kd_kl(g, input4(g, 1, 2, 1, 2, ss, 0), input4(g, 1, 2, 1, 2, st, 0), T2,
                                MK_NN_KD_BATCHMEAN)),
        0.5232481437645479f, 1e-6);
    /* a temperature per sample (CTKD instance-wise): sample 0 as above at T 2, sample 1 with
     * identical logits (KL 0 whatever its T 5): the mean over the 2 samples is half of 0.5232 */
    {
        const float sb[4] = {0, 0, 0.4f, -1}, tb[4] = {0, 2.1972246f, 0.4f, -1}, tv[2] = {2, 5};
        int64_t ne[2] = {2, 2}, n2 = 2;
        mk_tensor a, b, tt2;
        mk_tensor_set_shape(&a, 2, ne);
        mk_tensor_set_shape(&b, 2, ne);
        mk_tensor_set_shape(&tt2, 1, &n2);
        a.data = (float *)sb;
        b.data = (float *)tb;
        tt2.data = (float *)tv;
        a.view_of = b.view_of = tt2.view_of = NULL;
        assert_float_equal(mk_nn_value(mk_nn_kd_kl(g, mk_nn_input(g, &a, 0), mk_nn_input(g, &b, 0),
                                                   mk_nn_input(g, &tt2, 0), MK_NN_KD_PER_PIXEL)),
                           0.26162407188227393f, 1e-6);
    }
    /* random tensors: both reductions against the reference */
    float x[2 * 4 * 3 * 2], y[2 * 4 * 3 * 2];
    fill_normal(x, 48, 3.0);
    fill_normal(y, 48, 3.0);
    mk_var *T = mk_nn_scalar(g, 3.5f, 0);
    double ref = ref_kd_sum(x, y, 2, 4, 6, 3.5);
    assert_rel(mk_nn_value(mk_nn_kd_kl(g, input4(g, 2, 4, 3, 2, x, 0), input4(g, 2, 4, 3, 2, y, 0),
                                       T, MK_NN_KD_PER_PIXEL)),
               ref / 12.0, 1e-5);
    assert_rel(mk_nn_value(mk_nn_kd_kl(g, input4(g, 2, 4, 3, 2, x, 0), input4(g, 2, 4, 3, 2, y, 0),
                                       T, MK_NN_KD_BATCHMEAN)),
               ref / 2.0, 1e-5);
    /* dL/dT against the analytic form of methods.md §4.3 (one position, [1,4]) */
    const float zs[4] = {0.3f, -1.2f, 2.0f, 0.1f}, zt[4] = {1.5f, 0.2f, -0.7f, 0.9f};
    const double Tv = 2.5;
    mk_var *Tg = mk_nn_scalar(g, (float)Tv, 1);
    mk_var *l = mk_nn_kd_kl(g, input4(g, 1, 4, 1, 1, zs, 0), input4(g, 1, 4, 1, 1, zt, 0), Tg,
                            MK_NN_KD_PER_PIXEL);
    mk_nn_backward(g, l);
    double a[4], b[4], p[4], q[4], za = 0, zb = 0;
    for (int k = 0; k < 4; k++) {
        a[k] = zt[k] / Tv;
        b[k] = zs[k] / Tv;
        za += exp(a[k]);
        zb += exp(b[k]);
    }
    double ma = 0, mb = 0, kl = 0;
    for (int k = 0; k < 4; k++) {
        p[k] = exp(a[k]) / za;
        q[k] = exp(b[k]) / zb;
        ma += p[k] * a[k];
        mb += q[k] * b[k];
        kl += p[k] * log(p[k] / q[k]);
    }
    double dkl = 0;
    for (int k = 0; k < 4; k++)
        dkl += -(1 / Tv) * p[k] * (a[k] - ma) * log(p[k] / q[k]) + (1 / Tv) * p[k] * (b[k] - mb);
    assert_rel(Tg->grad[0], 2 * Tv * kl + Tv * Tv * dkl, 1e-5);
    mk_nn_graph_free(g);
    /* finite differences for student, teacher and T, both reductions */
    for (int r = 0; r < 2; r++) {
        fd_case c = {r ? "kd batchmean" : "kd per pixel",
                     3,
                     {4, 4, 1},
                     {{2, 3, 2, 2}, {2, 3, 2, 2}, {1}},
                     {1, 1, 1},
                     {0, 0, 1},
                     b_kd,
                     NULL,
                     r};
        fd_check(&c);
    }
    fd_case cls = {"kd classification", 3,    {2, 2, 1}, {{3, 5}, {3, 5}, {1}}, {1, 0, 1},
                   {0, 0, 1},           b_kd, NULL,      MK_NN_KD_BATCHMEAN};
    fd_check(&cls);
}

/* ---------------------------------------------------------------- Dice variants */

static const int32_t DICE_LAB[2 * 2 * 3] = {0, 1, 2, 2, 1, 0, 1, 1, 0, 2, 0, 1};

static mk_var *b_dice_ex(mk_nn_graph *g, mk_var **in, const fd_case *c)
{
    return mk_nn_dice_loss_ex(g, in[0], c->labels, 1e-5f, c->flags);
}

static void test_dice_ex(void **state)
{
    (void)state;
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    mk_nn_graph_begin(g, 1);
    /* p = (.25,.75) labelled 1 and (.5,.5) labelled 0:
     * linear  I = (.5,.75), P = (.75,1.25), G = (1,1); squared P = (.3125,.8125) */
    const int32_t lab[2] = {1, 0};
    const double want[4] = {0.3809504157321335, 0.20525313295514258, 0.33333185185843617,
                            0.1724128418601828};
    for (int f = 0; f < 4; f++) {
        mk_var *l = mk_nn_dice_loss_ex(g, input4(g, 1, 2, 1, 2, HA, 0), lab, 1e-5f, f);
        assert_float_equal(mk_nn_value(l), (float)want[f], 1e-6);
    }
    assert_string_equal(mk_op_name(MK_OP_DICE_EX), "dice_ex");
    /* flags 0 is mk_nn_dice_loss's formula: same value and gradient up to float rounding */
    float x[2 * 3 * 2 * 3];
    fill_normal(x, 36, 2.0);
    mk_var *x1 = input4(g, 2, 3, 2, 3, x, 1), *x2 = input4(g, 2, 3, 2, 3, x, 1);
    mk_var *l1 = mk_nn_dice_loss(g, x1, DICE_LAB, 1e-5f);
    mk_var *l2 = mk_nn_dice_loss_ex(g, x2, DICE_LAB, 1e-5f, 0);
    assert_float_equal(mk_nn_value(l1), mk_nn_value(l2), 1e-6);
    mk_nn_backward(g, l1);
    mk_nn_backward(g, l2);
    for (int i = 0; i < 36; i++)
        assert_float_equal(x1->grad[i], x2->grad[i], 1e-6);
    for (int f = 0; f < 4; f++)
        assert_rel(
            mk_nn_value(mk_nn_dice_loss_ex(g, input4(g, 2, 3, 2, 3, x, 0), DICE_LAB, 1e-5f, f)),
            ref_dice(x, DICE_LAB, 2, 3, 6, 1e-5, f & MK_NN_DICE_SQUARED,
                     (f & MK_NN_DICE_NO_BACKGROUND) ? 1 : 0),
            1e-6);
    /* a label outside [0, C) is counted and belongs to no class */
    const int32_t bad[2] = {1, 7};
    long long before = mk_nn_graph_bad_labels(g);
    mk_var *lb = mk_nn_dice_loss_ex(g, input4(g, 1, 2, 1, 2, HA, 0), bad, 1e-5f, 0);
    assert_int_equal(mk_nn_graph_bad_labels(g) - before, 1);
    /* class 0: I 0, P .75, G 0 -> 1e-5/(.75+1e-5); class 1: 1.5/(2.25) */
    assert_float_equal(mk_nn_value(lb),
                       (float)(1 - (1e-5 / (0.75 + 1e-5) + (1.5 + 1e-5) / (2.25 + 1e-5)) / 2),
                       1e-6);
    mk_nn_graph_free(g);
    for (int f = 0; f < 4; f++) {
        static const char *names[4] = {"dice_ex linear", "dice_ex squared", "dice_ex no bg",
                                       "dice_ex squared no bg"};
        fd_case c = {names[f], 1, {4}, {{2, 3, 2, 3}}, {1}, {0}, b_dice_ex, DICE_LAB, f};
        fd_check(&c);
    }
}

/* ---------------------------------------------------------------- LSGAN */

static void test_lsgan(void **state)
{
    (void)state;
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    mk_nn_graph_begin(g, 1);
    const float dr[3] = {0.5f, 1.5f, 2.0f}, df[2] = {0.5f, -1.0f};
    mk_var *r = input4(g, 1, 1, 1, 3, dr, 1), *f = input4(g, 1, 1, 1, 2, df, 1);
    /* D: 0.5 (mean((dr-1)^2) + mean(df^2)) = 0.5 (0.5 + 0.625) */
    mk_var *ld = mk_nn_lsgan_d(g, r, f);
    assert_float_equal(mk_nn_value(ld), 0.5625f, 1e-7);
    mk_nn_backward(g, ld);
    const float gr[3] = {-1.0f / 6, 1.0f / 6, 1.0f / 3}, gf[2] = {0.25f, -0.5f};
    for (int i = 0; i < 3; i++)
        assert_float_equal(r->grad[i], gr[i], 1e-7); /* (dr - 1)/3 */
    for (int i = 0; i < 2; i++)
        assert_float_equal(f->grad[i], gf[i], 1e-7); /* df/2 */
    /* G: mean((df - 1)^2) = (0.25 + 4)/2, gradient 2 (df - 1)/2 */
    mk_var *f2 = input4(g, 1, 1, 1, 2, df, 1);
    mk_var *lg = mk_nn_lsgan_g(g, f2);
    assert_float_equal(mk_nn_value(lg), 2.125f, 1e-7);
    mk_nn_backward(g, lg);
    assert_float_equal(f2->grad[0], -0.5f, 1e-7);
    assert_float_equal(f2->grad[1], -2.0f, 1e-7);
    mk_nn_graph_free(g);
}

/* ---------------------------------------------------------------- input noise */

static void test_noise(void **state)
{
    (void)state;
    enum { N = 4096 };
    int64_t ne[1] = {N};
    mk_tensor a, b, c;
    assert_int_equal(mk_tensor_new(&a, 1, ne), 0);
    assert_int_equal(mk_tensor_new(&b, 1, ne), 0);
    assert_int_equal(mk_tensor_new(&c, 1, ne), 0);
    for (int i = 0; i < N; i++)
        a.data[i] = b.data[i] = c.data[i] = 0.01f * (float)(i % 7);
    mk_rng r1, r2, r3, rr;
    mk_rng_seed(&r1, 7);
    mk_rng_seed(&r2, 7);
    mk_rng_seed(&r3, 8);
    mk_rng_seed(&rr, 7);
    mk_nn_noise_clamped(&r1, &a, 0.1f, 0.2f);
    mk_nn_noise_clamped(&r2, &b, 0.1f, 0.2f);
    mk_nn_noise_clamped(&r3, &c, 0.1f, 0.2f);
    assert_memory_equal(a.data, b.data, N * sizeof(float)); /* same seed, same bits */
    assert_memory_not_equal(a.data, c.data, N * sizeof(float));
    int clipped = 0;
    double ss = 0;
    for (int i = 0; i < N; i++) {
        double base = 0.01f * (float)(i % 7);
        /* the documented formula: one normal per element in order, clamp, add */
        double n = 0.1f * mk_rng_normal(&rr);
        n = n < -0.2f ? -0.2f : n > 0.2f ? 0.2f : n;
        assert_true(a.data[i] == (float)base + (float)n);
        double d = a.data[i] - (float)base;
        assert_true(fabs(d) <= 0.2 + 1e-6);
        clipped += fabs(d) > 0.2 - 1e-6;
        ss += d * d;
    }
    /* P(|N(0, .1)| > .2) = 4.55 %; the clamp takes the std slightly below 0.1 */
    assert_in_range(clipped, N / 50, N / 12);
    double sd = sqrt(ss / N);
    assert_true(sd > 0.085 && sd < 0.1);
    /* sigma 1, clip 0.2: most values sit exactly on the bounds */
    memset(a.data, 0, N * sizeof(float));
    mk_nn_noise_clamped(&r1, &a, 1.0f, 0.2f);
    int at_bound = 0;
    for (int i = 0; i < N; i++) {
        assert_true(a.data[i] >= -0.2f && a.data[i] <= 0.2f);
        at_bound += a.data[i] == 0.2f || a.data[i] == -0.2f;
    }
    assert_true(at_bound > N * 3 / 4); /* P(|N(0,1)| > .2) = 0.84 */
    /* sigma 0: nothing changes */
    memcpy(c.data, b.data, N * sizeof(float));
    mk_nn_noise_clamped(&r1, &c, 0.0f, 0.2f);
    assert_memory_equal(c.data, b.data, N * sizeof(float));
    mk_tensor_free(&a);
    mk_tensor_free(&b);
    mk_tensor_free(&c);
}

int main(void)
{
    mk_rng_seed(&g_rng, 20260601);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ema_alpha),    cmocka_unit_test(test_ema_step),
        cmocka_unit_test(test_ramps),        cmocka_unit_test(test_ctkd_schedule),
        cmocka_unit_test(test_grad_reverse), cmocka_unit_test(test_ctkd_temperature),
        cmocka_unit_test(test_softmax_mse),  cmocka_unit_test(test_entropy),
        cmocka_unit_test(test_mel),          cmocka_unit_test(test_kd_kl),
        cmocka_unit_test(test_dice_ex),      cmocka_unit_test(test_lsgan),
        cmocka_unit_test(test_noise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
