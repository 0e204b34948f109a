/* nn engine behaviour: op values derived by hand, running statistics, optimisers against
 * hand-computed steps, schedules, autograd bookkeeping (accumulation, no-grad, frozen, EMA,
 * named feature maps), arena steady state, PRNG, and bit-identical determinism. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/mk_unet.h"
#include "nn/mk_nn.h"
#include "nn/mk_optim.h"

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

static void test_tensor_views(void **state)
{
    (void)state;
    int64_t ne[3] = {2, 3, 4};
    mk_tensor t, u;
    assert_int_equal(mk_tensor_new(&t, 3, ne), 0);
    for (int i = 0; i < 24; i++)
        t.data[i] = (float)i;
    mk_tensor v = mk_tensor_view(&t, 1, 1, 2); /* [2][2][4], rows 1..2 */
    assert_false(mk_tensor_is_contiguous(&v));
    assert_true(v.view_of == &t);
    int64_t ne2[3] = {2, 2, 4};
    assert_int_equal(mk_tensor_new(&u, 3, ne2), 0);
    mk_tensor_copy(&u, &v);
    assert_true(u.data[0] == 4.0f && u.data[7] == 11.0f && u.data[8] == 16.0f);
    int64_t flat[1] = {24};
    mk_tensor r = mk_tensor_reshape(&t, 1, flat);
    assert_true(r.data == t.data && r.ne[0] == 24);
    mk_tensor_free(&u);
    mk_tensor_free(&t);
}

static void test_arena(void **state)
{
    (void)state;
    mk_arena a;
    mk_arena_init(&a, 4096);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 10; i++) {
            unsigned char *p = mk_arena_alloc(&a, 3000);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % 64, 0);
            memset(p, i, 3000);
        }
        size_t before = a.n_mallocs;
        mk_arena_reset(&a);
        if (round > 0) /* after the first round one merged block holds a whole round */
            assert_int_equal(a.n_mallocs, before);
    }
    mk_arena_free(&a);
}

static void test_rng(void **state)
{
    (void)state;
    mk_rng a, b;
    mk_rng_seed(&a, 42);
    mk_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++)
        assert_true(mk_rng_u64(&a) == mk_rng_u64(&b));
    double s = 0;
    for (int i = 0; i < 100000; i++) {
        float u = mk_rng_uniform(&a);
        assert_true(u >= 0 && u < 1);
        s += u;
    }
    assert_true(fabs(s / 100000 - 0.5) < 0.01);
    int64_t idx[50], seen[50] = {0};
    for (int i = 0; i < 50; i++)
        idx[i] = i;
    mk_rng_shuffle(&a, idx, 50);
    for (int i = 0; i < 50; i++)
        seen[idx[i]]++;
    for (int i = 0; i < 50; i++)
        assert_int_equal(seen[i], 1);
    for (int i = 0; i < 1000; i++)
        assert_true(mk_rng_below(&a, 7) < 7);
}

static void test_op_values(void **state)
{
    (void)state;
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    mk_nn_graph_begin(g, 1);
    /* linear upsampling, align_corners False: [1 2] -> [1 1.25 1.75 2] */
    float row[2] = {1, 2};
    mk_var *u = mk_nn_upsample_linear(g, input4(g, 1, 1, 1, 2, row, 0), 2);
    assert_int_equal(u->t.ne[3], 4);
    float want[4] = {1, 1.25f, 1.75f, 2};
    for (int i = 0; i < 4; i++)
        assert_float_equal(u->t.data[i], want[i], 1e-6);
    /* max and average pooling of a 2x4 plane */
    float p[8] = {1, 5, 2, 0, 3, -1, 7, 4};
    mk_var *xp = input4(g, 1, 1, 2, 4, p, 0);
    mk_var *mp = mk_nn_maxpool(g, xp, 2, 2), *ap = mk_nn_avgpool(g, xp, 2, 2);
    assert_true(mp->t.data[0] == 5 && mp->t.data[1] == 7);
    assert_float_equal(ap->t.data[0], 2.0f, 1e-6);
    assert_float_equal(ap->t.data[1], 3.25f, 1e-6);
    /* cross-entropy: logits (0, ln 3) label 0 -> ln 4; second voxel ignored; class weights
     * cancel in the weighted mean of a single voxel */
    float lg[4] = {0, 0, logf(3), 5}; /* [1][2 classes][1][2 voxels] */
    int32_t lab[2] = {0, -100};
    float w[2] = {2, 1};
    mk_var *ce = mk_nn_cross_entropy(g, input4(g, 1, 2, 1, 2, lg, 0), lab, w, -100);
    assert_float_equal(mk_nn_value(ce), logf(4), 1e-6);
    /* soft Dice: logits (0,0), label 0 -> p = (.5,.5); class 0 (1+e)/(1.5+e), class 1 e/(.5+e) */
    float z2[2] = {0, 0};
    int32_t l0[1] = {0};
    mk_var *dc = mk_nn_dice_loss(g, input4(g, 1, 2, 1, 1, z2, 0), l0, 1e-5f);
    double e = 1e-5, dv = 1 - 0.5 * ((1 + e) / (1.5 + e) + e / (0.5 + e));
    assert_float_equal(mk_nn_value(dc), dv, 1e-6);
    /* KL with T = 2: teacher logits (2 ln 3, 0) -> p_t = (3/4, 1/4); student (0,0) -> (1/2, 1/2)
     * T^2 * (3/4 ln 1.5 + 1/4 ln 0.5) */
    float tl[2] = {2 * logf(3), 0};
    mk_var *kl = mk_nn_kl_div(g, input4(g, 1, 2, 1, 1, z2, 0), input4(g, 1, 2, 1, 1, tl, 0),
                              mk_nn_scalar(g, 2.0f, 0));
    assert_float_equal(mk_nn_value(kl), 4 * (0.75 * log(1.5) + 0.25 * log(0.5)), 1e-6);
    /* adversarial: LS to 1 of (0, 3) = (1 + 4)/2; BCE to 0 of 0 = ln 2 */
    float d[2] = {0, 3};
    assert_float_equal(mk_nn_value(mk_nn_adv_ls(g, input4(g, 1, 1, 1, 2, d, 0), 1)), 2.5, 1e-6);
    assert_float_equal(mk_nn_value(mk_nn_adv_bce(g, input4(g, 1, 1, 1, 1, d, 0), 0)), log(2.0),
                       1e-6);
    /* softmax sums to one; dropout in eval is the identity, in training keeps ~1-p scaled */
    mk_var *sm = mk_nn_softmax(g, input4(g, 1, 2, 1, 2, lg, 0));
    assert_float_equal(sm->t.data[0] + sm->t.data[2], 1.0f, 1e-6);
    static float big[10000];
    for (int i = 0; i < 10000; i++)
        big[i] = 1;
    mk_var *dr = mk_nn_dropout(g, input4(g, 1, 1, 100, 100, big, 0), 0.25f);
    double s = 0;
    int zeros = 0;
    for (int i = 0; i < 10000; i++) {
        s += dr->t.data[i];
        zeros += dr->t.data[i] == 0;
        assert_true(dr->t.data[i] == 0 || fabsf(dr->t.data[i] - 1 / 0.75f) < 1e-6);
    }
    assert_true(zeros > 2200 && zeros < 2800);
    assert_true(fabs(s / 10000 - 1) < 0.05);
    assert_false(mk_nn_graph_oom(g));
    mk_nn_graph_free(g);
}

static void test_batchnorm_running_stats(void **state)
{
    (void)state;
    mk_nn_params *ps = mk_nn_params_new();
    int64_t one = 1;
    mk_param *rm = mk_nn_params_add(ps, "rm", 1, &one, 1);
    mk_param *rv = mk_nn_params_add(ps, "rv", 1, &one, 1);
    mk_nn_fill(rv, 1);
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    mk_nn_graph_begin(g, 1);
    float x[4] = {1, 2, 3, 4}; /* N = 2, C = 1, 1x2 */
    mk_var *y = mk_nn_batchnorm(g, input4(g, 2, 1, 1, 2, x, 0), NULL, NULL, rm, rv, 0.1f, 1e-5f);
    /* batch mean 2.5, biased var 1.25 normalises; unbiased 5/3 goes into the running var */
    assert_float_equal(y->t.data[0], (1 - 2.5) / sqrt(1.25 + 1e-5), 1e-6);
    assert_float_equal(rm->value.data[0], 0.25f, 1e-7);
    assert_float_equal(rv->value.data[0], 0.9 + 0.1 * 5.0 / 3.0, 1e-6);
    /* eval uses the running statistics */
    mk_nn_graph_begin(g, 0);
    y = mk_nn_batchnorm(g, input4(g, 2, 1, 1, 2, x, 0), NULL, NULL, rm, rv, 0.1f, 1e-5f);
    assert_float_equal(y->t.data[3], (4 - 0.25) / sqrt(rv->value.data[0] + 1e-5), 1e-5);
    assert_float_equal(rm->value.data[0], 0.25f, 1e-7); /* unchanged in eval */
    /* instance norm: per sample */
    y = mk_nn_instnorm(g, input4(g, 2, 1, 1, 2, x, 0), NULL, NULL, 0);
    assert_float_equal(y->t.data[0], -1.0f, 1e-5);
    assert_float_equal(y->t.data[3], 1.0f, 1e-5);
    mk_nn_graph_free(g);
    mk_nn_params_free(ps);
}

/* one scalar parameter with a constant gradient 0.5, two steps */
static float two_steps(mk_optim_cfg cfg, float *after1)
{
    mk_nn_params *ps = mk_nn_params_new();
    int64_t one = 1;
    mk_param *p = mk_nn_params_add(ps, "p", 1, &one, 0);
    p->value.data[0] = 1;
    mk_optim *o = mk_optim_new(ps, &cfg);
    for (int s = 0; s < 2; s++) {
        p->grad[0] = 0.5f;
        mk_optim_step(o);
        if (s == 0)
            *after1 = p->value.data[0];
    }
    float v = p->value.data[0];
    mk_optim_free(o);
    mk_nn_params_free(ps);
    return v;
}

static void test_optimizers(void **state)
{
    (void)state;
    float a1;
    mk_optim_cfg c = mk_optim_defaults(MK_OPTIM_SGD);
    c.lr = 0.1f;
    assert_float_equal(two_steps(c, &a1), 0.9f, 1e-6); /* plain: 1 - 2 * 0.05 */
    c.momentum = 0.9f;
    c.weight_decay = 0.01f;
    /* g1 = .51, buf = .51, p = .949; g2 = .50949, buf = .459 + .50949, p = .949 - .096849 */
    assert_float_equal(two_steps(c, &a1), 0.852151f, 1e-6);
    assert_float_equal(a1, 0.949f, 1e-6);
    c.nesterov = 1;
    /* step 1: .51 + .9 * .51 = .969 -> .9031; step 2: buf .968031, g 1.3802589 -> .76507411 */
    assert_float_equal(two_steps(c, &a1), 0.76507411f, 1e-6);
    assert_float_equal(a1, 0.9031f, 1e-6);
    mk_optim_cfg a = mk_optim_defaults(MK_OPTIM_ADAM);
    a.lr = 0.1f;
    /* constant gradient: bias-corrected m/sqrt(v) = 1 -> lr per step */
    assert_float_equal(two_steps(a, &a1), 0.8f, 1e-6);
    assert_float_equal(a1, 0.9f, 1e-6);
    a.weight_decay = 0.1f; /* L2: g1 = .6, g2 = .59 -> m2 = .113, v2 = .00070774 */
    double m2 = 0.113 / 0.19, v2 = 0.00070774 / (1 - 0.999 * 0.999);
    assert_float_equal(two_steps(a, &a1), 0.9 - 0.1 * m2 / (sqrt(v2) + 1e-8), 1e-6);
    mk_optim_cfg w = mk_optim_defaults(MK_OPTIM_ADAMW);
    w.lr = 0.1f;
    w.weight_decay = 0.1f; /* decoupled: p *= 0.99 then -0.1 */
    assert_float_equal(two_steps(w, &a1), 0.89f * 0.99f - 0.1f, 1e-6);
    assert_float_equal(a1, 0.89f, 1e-6);
}

static void test_schedules(void **state)
{
    (void)state;
    mk_sched s = {MK_SCHED_POLY, 0.01f, 0, 100, 0, 0, 0.9f, 0, 0, 0};
    assert_float_equal(mk_sched_lr(&s, 50), 0.01 * pow(0.5, 0.9), 1e-8);
    assert_float_equal(mk_sched_lr(&s, 0), 0.01f, 1e-9);
    assert_float_equal(mk_sched_lr(&s, 100), 0.0f, 1e-9);
    s.kind = MK_SCHED_COSINE;
    s.min_lr = 0.001f;
    assert_float_equal(mk_sched_lr(&s, 50), 0.0055f, 1e-8);
    assert_float_equal(mk_sched_lr(&s, 100), 0.001f, 1e-8);
    s.kind = MK_SCHED_STEP;
    s.step_size = 10;
    s.gamma = 0.5f;
    assert_float_equal(mk_sched_lr(&s, 25), 0.0025f, 1e-9);
    mk_sched c = {MK_SCHED_CONSTANT, 1.0f, 0, 100, 0, 0, 0, 10, 0.1f, 0};
    assert_float_equal(mk_sched_lr(&c, 0), 0.1f, 1e-7);
    assert_float_equal(mk_sched_lr(&c, 5), 0.55f, 1e-7);
    assert_float_equal(mk_sched_lr(&c, 10), 1.0f, 1e-7);
}

static void test_autograd_bookkeeping(void **state)
{
    (void)state;
    mk_nn_params *ps = mk_nn_params_new();
    int64_t two = 2;
    mk_param *p = mk_nn_params_add(ps, "a.weight", 1, &two, 0);
    mk_param *q = mk_nn_params_add(ps, "b.weight", 1, &two, 0);
    p->value.data[0] = 1;
    p->value.data[1] = 2;
    mk_nn_fill(q, 3);
    mk_nn_graph *g = mk_nn_graph_new(1, 1);
    /* L = sum(3 p + q): dL/dp = 3, dL/dq = 1; two backward passes accumulate */
    for (int k = 0; k < 2; k++) {
        mk_nn_graph_begin(g, 1);
        mk_var *l =
            mk_nn_sum(g, mk_nn_add(g, mk_nn_scale(g, mk_nn_param(g, p), 3), mk_nn_param(g, q)));
        assert_float_equal(mk_nn_value(l), 3 * 3 + 6, 1e-6);
        mk_nn_backward(g, l);
    }
    assert_float_equal(p->grad[1], 6, 1e-6);
    assert_float_equal(q->grad[0], 2, 1e-6);
    /* no-grad: nothing recorded for backward, gradients untouched */
    mk_nn_params_zero_grad(ps);
    mk_nn_graph_begin(g, 1);
    mk_nn_graph_set_no_grad(g, 1);
    mk_var *l = mk_nn_sum(g, mk_nn_scale(g, mk_nn_param(g, p), 3));
    assert_false(l->requires_grad);
    mk_nn_backward(g, l);
    assert_true(p->grad[0] == 0);
    mk_nn_graph_set_no_grad(g, 0);
    /* frozen: no gradient, optimiser leaves it */
    assert_int_equal(mk_nn_params_set_frozen(ps, "a.", 1), 1);
    mk_nn_graph_begin(g, 1);
    l = mk_nn_sum(g, mk_nn_add(g, mk_nn_param(g, p), mk_nn_param(g, q)));
    mk_nn_backward(g, l);
    assert_true(p->grad[0] == 0 && q->grad[0] == 1);
    mk_optim_cfg c = mk_optim_defaults(MK_OPTIM_SGD);
    c.lr = 1;
    mk_optim *o = mk_optim_new(ps, &c);
    /* parameter groups: group 1 at half the learning rate */
    assert_int_equal(mk_nn_params_set_group(ps, "b.", 1), 1);
    mk_optim_set_group(o, 1, 0.5f, 0.0f);
    mk_optim_step(o);
    assert_true(p->value.data[0] == 1);
    assert_float_equal(q->value.data[0], 2.5f, 1e-6);
    /* EMA teacher = .9 teacher + .1 student */
    mk_nn_params *t = mk_nn_params_new();
    mk_param *tp = mk_nn_params_add(t, "a.weight", 1, &two, 0);
    mk_param *tq = mk_nn_params_add(t, "b.weight", 1, &two, 0);
    mk_nn_fill(tp, 0);
    mk_nn_fill(tq, 10);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_nn_params_ema(&ctx, t, ps, 0.9f), MK_OK);
    assert_float_equal(tp->value.data[1], 0.2f, 1e-6);
    assert_float_equal(tq->value.data[0], 9.25f, 1e-5);
    mk_optim_free(o);
    mk_nn_params_free(t);
    mk_nn_graph_free(g);
    mk_nn_params_free(ps);
}

/* three Adam steps of a small U-Net with dropout on the logits; returns a malloc'd copy of every
 * parameter value and the number of arena block allocations made after step 2 */
static float *train_small(uint64_t seed, int threads, int64_t *n_out, size_t *late_mallocs)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_unet_cfg cfg = {2, 1, 3, 4, 2, 0.1f, 1e-5f};
    mk_unet *net;
    assert_int_equal(mk_unet_new(&ctx, &cfg, seed, &net), MK_OK);
    mk_nn_params *ps = mk_unet_params(net);
    mk_nn_graph *g = mk_nn_graph_new(threads, seed);
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    mk_optim *o = mk_optim_new(ps, &oc);
    int64_t ne[4] = {2, 1, 16, 16};
    mk_tensor x;
    assert_int_equal(mk_tensor_new(&x, 4, ne), 0);
    mk_rng r;
    mk_rng_seed(&r, seed);
    int32_t lab[512];
    for (int i = 0; i < 512; i++) {
        x.data[i] = (float)mk_rng_normal(&r);
        lab[i] = (int32_t)mk_rng_below(&r, 3);
    }
    size_t m2 = 0;
    for (int step = 0; step < 4; step++) {
        mk_nn_graph_begin(g, 1);
        mk_var *lg = mk_unet_forward(net, g, mk_nn_input(g, &x, 0));
        if (step == 0) {
            mk_var *e0 = mk_nn_find(g, "enc0"), *b = mk_nn_find(g, "bottleneck");
            assert_non_null(e0);
            assert_non_null(b);
            assert_true(e0->t.ne[1] == 4 && e0->t.ne[3] == 16 && b->t.ne[1] == 8 &&
                        b->t.ne[3] == 8);
            assert_true(mk_nn_find(g, "logits") == lg);
        }
        mk_var *dl = mk_nn_dropout(g, lg, 0.2f);
        mk_var *l = mk_nn_add(g, mk_nn_cross_entropy(g, dl, lab, NULL, -100),
                              mk_nn_dice_loss(g, dl, lab, 1e-5f));
        assert_non_null(l);
        mk_nn_params_zero_grad(ps);
        mk_nn_backward(g, l);
        mk_optim_step(o);
        if (step == 1)
            m2 = mk_nn_graph_arena(g)->n_mallocs;
    }
    *late_mallocs = mk_nn_graph_arena(g)->n_mallocs - m2;
    int64_t tot = 0;
    for (int i = 0; i < mk_nn_params_count(ps); i++)
        tot += mk_tensor_numel(&mk_nn_params_at(ps, i)->value);
    float *out = malloc((size_t)tot * sizeof(float));
    int64_t off = 0;
    for (int i = 0; i < mk_nn_params_count(ps); i++) {
        mk_param *p = mk_nn_params_at(ps, i);
        int64_t n = mk_tensor_numel(&p->value);
        memcpy(out + off, p->value.data, (size_t)n * sizeof(float));
        off += n;
    }
    *n_out = tot;
    mk_tensor_free(&x);
    mk_optim_free(o);
    mk_nn_graph_free(g);
    mk_unet_free(net);
    return out;
}

static void test_determinism(void **state)
{
    (void)state;
    int64_t n1, n2, n3;
    size_t late1, late2, late3;
    float *a = train_small(7, 2, &n1, &late1);
    float *b = train_small(7, 2, &n2, &late2);
    float *c = train_small(8, 2, &n3, &late3);
    assert_true(n1 == n2 && n1 == n3);
    assert_memory_equal(a, b, (size_t)n1 * sizeof(float));
    assert_true(memcmp(a, c, (size_t)n1 * sizeof(float)) != 0);
    /* steady state: steps 3 and 4 reuse the arena without new blocks */
    assert_int_equal(late1, 0);
    free(a);
    free(b);
    free(c);
}

/* inference with recycled values gives the same logits in less memory */
static void test_recycle_inference(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_unet_cfg cfg = {3, 1, 2, 4, 3, 0.1f, 1e-5f};
    mk_unet *net;
    assert_int_equal(mk_unet_new(&ctx, &cfg, 5, &net), MK_OK);
    int64_t ne[5] = {1, 1, 16, 16, 16};
    mk_tensor x;
    assert_int_equal(mk_tensor_new(&x, 5, ne), 0);
    mk_rng r;
    mk_rng_seed(&r, 5);
    for (int i = 0; i < 4096; i++)
        x.data[i] = (float)mk_rng_normal(&r);
    float *out[2];
    size_t peak[2];
    for (int rec = 0; rec < 2; rec++) {
        mk_nn_graph *g = mk_nn_graph_new(2, 1);
        mk_nn_graph_set_no_grad(g, 1);
        mk_nn_graph_set_recycle(g, rec);
        mk_nn_graph_begin(g, 0);
        mk_var *lg = mk_unet_forward(net, g, mk_nn_input(g, &x, 0));
        assert_non_null(lg);
        out[rec] = malloc(2 * 4096 * sizeof(float));
        memcpy(out[rec], lg->t.data, 2 * 4096 * sizeof(float));
        if (rec)
            assert_null(mk_nn_find(g, "enc0")->t.data); /* released after its last use */
        peak[rec] = mk_nn_graph_arena(g)->used_peak;
        mk_nn_graph_free(g);
    }
    assert_memory_equal(out[0], out[1], 2 * 4096 * sizeof(float));
    assert_true(peak[1] * 10 < peak[0] * 9); /* conv workspaces dominate at this size */
    free(out[0]);
    free(out[1]);
    mk_tensor_free(&x);
    mk_unet_free(net);
}

static void test_op_table(void **state)
{
    (void)state;
    for (int op = 0; op < MK_OP_COUNT; op++)
        assert_string_not_equal(mk_op_name((mk_op)op), "?");
    assert_string_equal(mk_op_name(MK_OP_CONV), "conv");
    assert_string_equal(mk_op_name(MK_OP_COUNT), "?");
}

/* The 2 x 2 stride-2 max pool (its own fast path) against the definition scanned here: values
 * drawn from a few levels (many ties: the first wins), NaNs (they propagate, the first one
 * wins), odd sides (the last row and column are dropped); the gradient lands on the winners. */
static void test_maxpool_2x2(void **state)
{
    (void)state;
    const int n = 2, c = 3, h = 9, w = 12, oh = 4, ow = 6;
    float *x = malloc((size_t)n * c * h * w * sizeof *x);
    assert_non_null(x);
    uint64_t r = 12345;
    for (int i = 0; i < n * c * h * w; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int lv = (int)(r >> 59); /* 0..31 */
        x[i] = lv == 31 ? NAN : (float)(lv % 5);
    }
    mk_nn_graph *g = mk_nn_graph_new(2, 1);
    mk_nn_graph_begin(g, 1);
    mk_var *xv = input4(g, n, c, h, w, x, 1);
    mk_var *y = mk_nn_maxpool(g, xv, 2, 2);
    assert_int_equal(y->t.ne[2], oh);
    assert_int_equal(y->t.ne[3], ow);
    float *dy = malloc((size_t)n * c * oh * ow * sizeof *dy);
    float *want_dx = calloc((size_t)n * c * h * w, sizeof *want_dx);
    assert_non_null(dy);
    assert_non_null(want_dx);
    for (int p = 0; p < n * c; p++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                int best = -1;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++) {
                        int idx = (2 * i + a) * w + 2 * j + b;
                        float v = x[p * h * w + idx];
                        if (best < 0)
                            best = idx;
                        else {
                            float bv = x[p * h * w + best];
                            if (!isnan(bv) && (isnan(v) || v > bv))
                                best = idx;
                        }
                    }
                float got = y->t.data[(p * oh + i) * ow + j], want = x[p * h * w + best];
                assert_true(isnan(want) ? isnan(got) : got == want);
                float d = (float)(1 + (p * oh + i) * ow + j);
                dy[(p * oh + i) * ow + j] = d;
                want_dx[p * h * w + best] += d;
            }
    mk_nn_backward_with(g, y, dy);
    assert_memory_equal(xv->grad, want_dx, (size_t)n * c * h * w * sizeof *want_dx);
    /* 3D, 2 x 2 x 2: the same rule over the 8 taps (depth, then rows, then columns) */
    const int d = 5, od = 2;
    float *x3 = malloc((size_t)c * d * h * w * sizeof *x3);
    assert_non_null(x3);
    for (int i = 0; i < c * d * h * w; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int lv = (int)(r >> 59);
        x3[i] = lv == 31 ? NAN : (float)(lv % 3);
    }
    int64_t ne3[5] = {1, c, d, h, w};
    mk_tensor t3;
    mk_tensor_set_shape(&t3, 5, ne3);
    t3.data = x3;
    t3.view_of = NULL;
    mk_var *y3 = mk_nn_maxpool(g, mk_nn_input(g, &t3, 1), 2, 2);
    assert_int_equal(y3->t.ne[2], od);
    for (int p = 0; p < c; p++)
        for (int a = 0; a < od; a++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    float best = 0;
                    int have = 0;
                    for (int e = 0; e < 8; e++) {
                        float v =
                            x3[(((size_t)p * d + 2 * a + (e >> 2)) * h + 2 * i + ((e >> 1) & 1)) *
                                   w +
                               2 * j + (e & 1)];
                        if (!have || (!isnan(best) && (isnan(v) || v > best)))
                            best = v, have = 1;
                    }
                    float got = y3->t.data[((p * od + a) * oh + i) * ow + j];
                    assert_true(isnan(best) ? isnan(got) : got == best);
                }
    mk_nn_graph_free(g);
    free(x), free(x3), free(dy), free(want_dx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_views),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_op_values),
        cmocka_unit_test(test_maxpool_2x2),
        cmocka_unit_test(test_batchnorm_running_stats),
        cmocka_unit_test(test_optimizers),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_autograd_bookkeeping),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_recycle_inference),
        cmocka_unit_test(test_op_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
