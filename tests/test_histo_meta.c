/* histo_meta's teacher gradient (mk__histo_meta_hypergrad, stages/method_histo_meta.c) against
 * the meta objective itself: J(phi) = CE(S_theta'(xv), yv) with theta' = theta - a
 * grad_theta CE(S_theta(G_phi(z)), ys), computed here with the engine's forward and backward only
 * (not the method's code). The gradient h is second order in the networks, and ReLU / max-pool
 * kinks make such quantities jump under a finite difference of phi (per-entry differences are
 * noise), so the checks are what the teacher's update relies on: moving phi along -h lowers J
 * and along +h raises it, at three step sizes; across 24 random directions u, h . u correlates
 * with J's central difference (> 0.5; chance about 0.21 sd); the reported meta objective is J.
 * Also: the student's parameters, buffers and gradients and the teacher's parameters and
 * buffers are left as they were; a zero meta gradient gives no teacher update. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/mk_classifier.h"
#include "stages/mk_histo_stage.h"

#define B 16
#define SIDE 16

typedef struct fixture {
    mk_ctx ctx;
    mk_nn_graph *g;
    mk_classifier *S;
    mk_cgen *G;
    mk_tensor zin, xv;
    int32_t ys[B], yv[B];
} fixture;

static void make(fixture *f)
{
    mk_ctx_init(&f->ctx);
    f->g = mk_nn_graph_new(1, 7);
    assert_non_null(f->g);
    mk_classifier_cfg cc = mk_classifier_defaults();
    cc.base = 4;
    cc.depth = 2;
    assert_int_equal(mk_classifier_new(&f->ctx, &cc, 11, &f->S), MK_OK);
    mk_cgen_cfg gc = mk_cgen_defaults();
    gc.zdim = 4;
    gc.classes = 2;
    gc.base = 4;
    gc.size = SIDE;
    assert_int_equal(mk_cgen_new(&f->ctx, &gc, 12, &f->G), MK_OK);
    mk_rng r;
    mk_rng_seed(&r, 13);
    for (int b = 0; b < B; b++) {
        f->ys[b] = b % 2;
        f->yv[b] = (b / 2) % 2;
    }
    assert_int_equal(mk_tensor_new(&f->zin, 4, (int64_t[4]){B, gc.zdim + 2, 1, 1}), 0);
    mk_cgen_input(mk_cgen_config(f->G), &r, f->ys, &f->zin);
    assert_int_equal(mk_tensor_new(&f->xv, 4, (int64_t[4]){B, 3, SIDE, SIDE}), 0);
    /* real patches: class 1 redder than class 0, plus noise */
    for (int b = 0; b < B; b++)
        for (int k = 0; k < 3 * SIDE * SIDE; k++)
            f->xv.data[b * 3 * SIDE * SIDE + k] =
                0.3f * mk_rng_uniform(&r) + (k < SIDE * SIDE ? 0.5f * f->yv[b] : 0.2f);
}

static void destroy(fixture *f)
{
    mk_tensor_free(&f->zin);
    mk_tensor_free(&f->xv);
    mk_classifier_free(f->S);
    mk_cgen_free(f->G);
    mk_nn_graph_free(f->g);
}

static int64_t count(mk_nn_params *p)
{
    int64_t n = 0;
    for (int i = 0; i < mk_nn_params_count(p); i++)
        n += mk_tensor_numel(&mk_nn_params_at(p, i)->value);
    return n;
}

/* every value (parameters and buffers) of p into v, or back */
static void copy(mk_nn_params *p, float *v, int save)
{
    for (int i = 0; i < mk_nn_params_count(p); i++) {
        mk_tensor *t = &mk_nn_params_at(p, i)->value;
        size_t n = (size_t)mk_tensor_numel(t);
        if (save)
            memcpy(v, t->data, n * sizeof *v);
        else
            memcpy(t->data, v, n * sizeof *v);
        v += n;
    }
}

/* J(phi) with the engine alone; theta and every buffer restored afterwards */
static double meta_objective(fixture *f, float a)
{
    mk_nn_params *ps = mk_classifier_params(f->S), *pg = mk_cgen_params(f->G);
    float *t0 = malloc((size_t)count(ps) * sizeof(float));
    float *g0 = malloc((size_t)count(pg) * sizeof(float));
    copy(ps, t0, 1);
    copy(pg, g0, 1);
    mk_nn_params_zero_grad(ps);
    mk_nn_graph_begin(f->g, 1);
    mk_var *x = mk_cgen_forward(f->G, f->g, mk_nn_input(f->g, &f->zin, 0));
    mk_var *l =
        mk_nn_cross_entropy(f->g, mk_classifier_forward(f->S, f->g, x, NULL), f->ys, NULL, -100);
    mk_nn_backward(f->g, l);
    for (int i = 0; i < mk_nn_params_count(ps); i++) {
        mk_param *q = mk_nn_params_at(ps, i);
        for (int64_t k = 0; !q->is_buffer && k < mk_tensor_numel(&q->value); k++)
            q->value.data[k] -= a * q->grad[k];
    }
    mk_nn_graph_begin(f->g, 1);
    l = mk_nn_cross_entropy(f->g,
                            mk_classifier_forward(f->S, f->g, mk_nn_input(f->g, &f->xv, 0), NULL),
                            f->yv, NULL, -100);
    double J = mk_nn_value(l);
    copy(ps, t0, 0);
    copy(pg, g0, 0);
    mk_nn_params_zero_grad(ps);
    mk_nn_params_zero_grad(pg);
    free(t0);
    free(g0);
    return J;
}

/* phi += s v over the teacher's trainable parameters */
static void move(mk_nn_params *pg, const double *v, double s)
{
    int64_t o = 0;
    for (int i = 0; i < mk_nn_params_count(pg); i++) {
        mk_param *q = mk_nn_params_at(pg, i);
        int64_t n = mk_tensor_numel(&q->value);
        for (int64_t k = 0; k < n; k++)
            if (!q->is_buffer)
                q->value.data[k] += (float)(s * v[o + k]);
        o += n;
    }
}

static double fd_along(fixture *f, const double *v, double t, float a)
{
    mk_nn_params *pg = mk_cgen_params(f->G);
    move(pg, v, t);
    double jp = meta_objective(f, a);
    move(pg, v, -2 * t);
    double jm = meta_objective(f, a);
    move(pg, v, t);
    return (jp - jm) / (2 * t);
}

static void test_hypergrad_vs_finite_difference(void **state)
{
    (void)state;
    static fixture f;
    make(&f);
    const float a = 0.05f;
    mk_nn_params *ps = mk_classifier_params(f.S), *pg = mk_cgen_params(f.G);
    const int64_t ns = count(ps), ng = count(pg);
    float *work = malloc((size_t)mk__histo_meta_work_size(f.S, f.G) * sizeof(float));
    float *s_before = malloc((size_t)ns * sizeof(float)), *s_after = malloc((size_t)ns * 4);
    float *g_before = malloc((size_t)ng * sizeof(float)), *g_after = malloc((size_t)ng * 4);
    double *h = calloc((size_t)ng, sizeof *h), *v = calloc((size_t)ng, sizeof *v);
    copy(ps, s_before, 1);
    copy(pg, g_before, 1);
    double lv = 0, ls = 0;
    mk_status st = mk__histo_meta_hypergrad(&f.ctx, f.g, f.S, f.G, &f.zin, f.ys, &f.xv, f.yv, a,
                                            1e-2f, work, &lv, &ls);
    if (st != MK_OK)
        fail_msg("hypergrad: %s", mk_ctx_errmsg(&f.ctx));
    /* the student and the teacher's values exactly as they were; the student's gradients 0 */
    copy(ps, s_after, 1);
    copy(pg, g_after, 1);
    assert_memory_equal(s_before, s_after, (size_t)ns * sizeof(float));
    assert_memory_equal(g_before, g_after, (size_t)ng * sizeof(float));
    for (int i = 0; i < mk_nn_params_count(ps); i++) {
        mk_param *q = mk_nn_params_at(ps, i);
        for (int64_t k = 0; q->grad && k < mk_tensor_numel(&q->value); k++)
            assert_true(q->grad[k] == 0.0f);
    }
    assert_true(lv > 0 && ls > 0);
    /* h: the teacher's gradient */
    double hn = 0;
    int64_t o = 0;
    for (int i = 0; i < mk_nn_params_count(pg); i++) {
        mk_param *q = mk_nn_params_at(pg, i);
        int64_t n = mk_tensor_numel(&q->value);
        for (int64_t k = 0; k < n; k++) {
            h[o + k] = q->is_buffer ? 0 : q->grad[k];
            hn += h[o + k] * h[o + k];
        }
        o += n;
    }
    hn = sqrt(hn);
    assert_true(hn > 0);
    /* the meta objective it reports is J(phi) (this zeroes the gradients: h is read first) */
    assert_true(fabs(lv - meta_objective(&f, a)) < 1e-5);
    for (int64_t k = 0; k < ng; k++)
        v[k] = h[k] / hn;
    /* along h: dJ = |h| */
    /* kinks (ReLU, max-pool) make a second-order quantity like this one jump under a finite
     * difference of the teacher's parameters, so the check is on what the teacher's update
     * needs: h is a descent direction of J, and across random directions its inner products
     * follow J's finite differences */
    const double J0 = meta_objective(&f, a);
    for (double tt = 1e-3; tt < 0.02; tt *= 3) {
        move(pg, v, -tt);
        double jm = meta_objective(&f, a);
        move(pg, v, 2 * tt);
        double jp = meta_objective(&f, a);
        move(pg, v, -tt);
        printf("along h, t %g: J(-) %.7f  J %.7f  J(+) %.7f\n", tt, jm, J0, jp);
        assert_true(jm < J0 && J0 < jp);
    }
    mk_rng r;
    mk_rng_seed(&r, 99);
    enum { K = 24 };
    double an[K], fd[K];
    for (int q = 0; q < K; q++) {
        double un = 0;
        for (int64_t k = 0; k < ng; k++) {
            v[k] = h[k] != 0 ? mk_rng_normal(&r) : 0;
            un += v[k] * v[k];
        }
        an[q] = 0;
        for (int64_t k = 0; k < ng; k++) {
            v[k] /= sqrt(un);
            an[q] += h[k] * v[k];
        }
        fd[q] = fd_along(&f, v, 1e-2, a);
    }
    double ma = 0, mf = 0, saa = 0, sff = 0, saf = 0;
    for (int q = 0; q < K; q++) {
        ma += an[q] / K;
        mf += fd[q] / K;
    }
    for (int q = 0; q < K; q++) {
        saa += (an[q] - ma) * (an[q] - ma);
        sff += (fd[q] - mf) * (fd[q] - mf);
        saf += (an[q] - ma) * (fd[q] - mf);
    }
    const double corr = saf / sqrt(saa * sff);
    printf("%d random directions: correlation of h . u with J's finite difference %.3f\n", K, corr);
    assert_true(corr > 0.5); /* chance: sd about 1 / sqrt(K - 1) = 0.21 */
    free(work);
    free(s_before);
    free(s_after);
    free(g_before);
    free(g_after);
    free(h);
    free(v);
    destroy(&f);
}

/* a meta objective with a zero gradient (the real labels ignored): no teacher update */
static void test_zero_meta_gradient(void **state)
{
    (void)state;
    static fixture f;
    make(&f);
    for (int b = 0; b < B; b++)
        f.yv[b] = -100; /* ignore_index: CE 0, gradient 0 */
    float *work = malloc((size_t)mk__histo_meta_work_size(f.S, f.G) * sizeof(float));
    mk_nn_params *pg = mk_cgen_params(f.G);
    for (int i = 0; i < mk_nn_params_count(pg); i++) {
        mk_param *q = mk_nn_params_at(pg, i);
        for (int64_t k = 0; q->grad && k < mk_tensor_numel(&q->value); k++)
            q->grad[k] = 1.0f;
    }
    assert_int_equal(mk__histo_meta_hypergrad(&f.ctx, f.g, f.S, f.G, &f.zin, f.ys, &f.xv, f.yv,
                                              0.5f, 1e-2f, work, NULL, NULL),
                     MK_OK);
    for (int i = 0; i < mk_nn_params_count(pg); i++) {
        mk_param *q = mk_nn_params_at(pg, i);
        for (int64_t k = 0; q->grad && k < mk_tensor_numel(&q->value); k++)
            assert_true(q->grad[k] == 0.0f);
    }
    free(work);
    destroy(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hypergrad_vs_finite_difference),
        cmocka_unit_test(test_zero_meta_gradient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
