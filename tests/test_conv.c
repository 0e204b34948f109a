/* Convolution kernels: the scalar references against independent formulations (hand-derived
 * values, the all-ones tap count, adjoint identities, finite differences), then every fast kernel
 * against the references on random shapes, and run-to-run determinism of the fast kernels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/mk_conv.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static int quick; /* --quick: fewer random shapes (sanitizer build) */

static uint32_t rng_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static int rng_int(int lo, int hi) /* inclusive */
{
    return lo + (int)(rng_u32() % (uint32_t)(hi - lo + 1));
}

static float rng_float(void) /* uniform in [-1, 1) */
{
    return (float)((double)(rng_u32() & 0xffffff) / 8388608.0 - 1.0);
}

static float *rand_buf(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = rng_float();
    return p;
}

static float *copy_buf(const float *a, size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    memcpy(p, a, n * sizeof *p);
    return p;
}

static size_t n_x(const mk_conv_shape *s)
{
    return (size_t)s->n * s->cin * s->in[0] * s->in[1] * s->in[2];
}
static size_t n_y(const mk_conv_shape *s)
{
    return (size_t)s->n * s->cout * s->out[0] * s->out[1] * s->out[2];
}
static size_t n_w(const mk_conv_shape *s)
{
    return (size_t)s->cout * s->cin * s->k[0] * s->k[1] * s->k[2];
}

static double dot(const float *a, const float *b, size_t n)
{
    double acc = 0.0;
    for (size_t i = 0; i < n; i++)
        acc += (double)a[i] * (double)b[i];
    return acc;
}

static mk_conv_shape shape2d(int n, int cin, int cout, int h, int w, int k, int stride, int pad,
                             int dil)
{
    mk_conv_shape s = {.n = n, .cin = cin, .cout = cout};
    s.in[0] = 1, s.in[1] = h, s.in[2] = w;
    s.k[0] = 1, s.k[1] = k, s.k[2] = k;
    s.stride[0] = 1, s.stride[1] = stride, s.stride[2] = stride;
    s.pad[0] = 0, s.pad[1] = pad, s.pad[2] = pad;
    s.dil[0] = 1, s.dil[1] = dil, s.dil[2] = dil;
    return s;
}

static mk_conv_shape shape3d(int n, int cin, int cout, int d, int h, int w, int k, int stride,
                             int pad, int dil)
{
    mk_conv_shape s = {.n = n, .cin = cin, .cout = cout};
    for (int a = 0; a < 3; a++)
        s.k[a] = k, s.stride[a] = stride, s.pad[a] = pad, s.dil[a] = dil;
    s.in[0] = d, s.in[1] = h, s.in[2] = w;
    return s;
}

/* A random valid shape; dims = 2 or 3. */
static mk_conv_shape rand_shape(int dims, int max_c, int max_in)
{
    for (;;) {
        mk_conv_shape s = {.n = rng_int(1, 3), .cin = rng_int(1, max_c), .cout = rng_int(1, max_c)};
        for (int a = 0; a < 3; a++) {
            s.k[a] = rng_int(1, 3);
            s.stride[a] = rng_int(1, 2);
            s.pad[a] = rng_int(0, 2);
            s.dil[a] = rng_int(1, 2);
            s.in[a] = rng_int(1, max_in);
        }
        if (dims == 2) {
            s.in[0] = 1, s.k[0] = 1, s.stride[0] = 1, s.pad[0] = 0, s.dil[0] = 1;
        }
        /* keep the k = 2 stride 2 special case and 1x1 in the mix */
        int r = rng_int(0, 5);
        if (r == 0) {
            for (int a = 3 - dims; a < 3; a++)
                s.k[a] = 2, s.stride[a] = 2, s.pad[a] = 0, s.dil[a] = 1,
                s.in[a] = 2 * rng_int(1, max_in / 2 + 1);
        } else if (r == 1) {
            for (int a = 3 - dims; a < 3; a++)
                s.k[a] = 1, s.stride[a] = 1, s.pad[a] = 0, s.dil[a] = 1;
        } else if (r == 2) {
            for (int a = 3 - dims; a < 3; a++)
                s.k[a] = 3, s.stride[a] = 1, s.pad[a] = 1, s.dil[a] = 1;
        }
        if (mk_conv_shape_finish(&s) == 0)
            return s;
    }
}

/* ---- shape rule --------------------------------------------------------------------------- */

static void test_shape_finish(void **state)
{
    (void)state;
    mk_conv_shape s = shape2d(8, 1, 16, 256, 256, 3, 1, 1, 1);
    assert_int_equal(mk_conv_shape_finish(&s), 0);
    assert_int_equal(s.out[0], 1);
    assert_int_equal(s.out[1], 256);
    assert_int_equal(s.out[2], 256);
    /* 7, k3, s2, p0: positions 0,2,4 -> 3 outputs */
    s = shape2d(1, 1, 1, 7, 8, 3, 2, 0, 1);
    assert_int_equal(mk_conv_shape_finish(&s), 0);
    assert_int_equal(s.out[1], 3);
    assert_int_equal(s.out[2], 3); /* 8: starts 0,2,4 (4 would need 4..6 ok), 6 needs 6..8 no */
    /* dilation 2, k3 spans 5: in 5 p0 -> 1 output; in 9 p2 s1 -> 9 */
    s = shape2d(1, 1, 1, 5, 9, 3, 1, 0, 2);
    assert_int_equal(mk_conv_shape_finish(&s), 0);
    assert_int_equal(s.out[1], 1);
    assert_int_equal(s.out[2], 5);
    /* k2 s2 on odd size drops the last row */
    s = shape3d(1, 1, 1, 64, 5, 1, 2, 2, 0, 1);
    assert_int_equal(mk_conv_shape_finish(&s), -1); /* W = 1 < k = 2: empty */
    s = shape3d(1, 1, 1, 64, 5, 2, 2, 2, 0, 1);
    assert_int_equal(mk_conv_shape_finish(&s), 0);
    assert_int_equal(s.out[0], 32);
    assert_int_equal(s.out[1], 2);
    assert_int_equal(s.out[2], 1);
    /* non-positive fields */
    s = shape2d(1, 0, 1, 5, 5, 3, 1, 1, 1);
    assert_int_equal(mk_conv_shape_finish(&s), -1);
    s = shape2d(1, 1, 1, 5, 5, 3, 0, 1, 1);
    assert_int_equal(mk_conv_shape_finish(&s), -1);
    s = shape2d(1, 1, 1, 5, 5, 3, 1, -1, 1);
    assert_int_equal(mk_conv_shape_finish(&s), -1);
    s = shape2d(1, 1, 1, 5, 5, 3, 1, 1, 0);
    assert_int_equal(mk_conv_shape_finish(&s), -1);
    assert_int_equal(mk_conv_shape_finish(NULL), -1);
}

/* ---- references against independent formulations ----------------------------------------- */

/* 1-D case worked by hand: x = [1 2 3 4], w = [1 0 -1], pad 1, bias 0.5:
 * y[o] = x[o-1] - x[o+1] + 0.5 = [-2+.5, -2+.5, -2+.5, 3+.5].
 * Its adjoint with dy = [1 1 1 1]: dx[i] = sum_o w[i-o+1] over the in-range o:
 * dx = [w1+w0, w2+w1+w0, w2+w1+w0, w2+w1] = [1 0 0 -1]. dw[t] = sum_o x[o-1+t] = [1+2+3, 1+2+3+4,
 * 2+3+4]. */
static void test_ref_hand_1d(void **state)
{
    (void)state;
    mk_conv_shape s = shape2d(1, 1, 1, 1, 4, 3, 1, 1, 1);
    s.k[1] = 1, s.pad[1] = 0; /* 1 x 3 kernel on a 1 x 4 image */
    assert_int_equal(mk_conv_shape_finish(&s), 0);
    const float x[4] = {1, 2, 3, 4}, w[3] = {1, 0, -1}, b[1] = {0.5f}, ones[4] = {1, 1, 1, 1};
    float y[4], dx[4] = {0}, dw[3] = {0}, db[1] = {0};
    mk_conv_fwd_ref(&s, x, w, b, y);
    const float ye[4] = {-1.5f, -1.5f, -1.5f, 3.5f};
    for (int i = 0; i < 4; i++)
        assert_float_equal(y[i], ye[i], 0);
    mk_conv_bwd_data_ref(&s, ones, w, dx);
    const float dxe[4] = {1, 0, 0, -1};
    for (int i = 0; i < 4; i++)
        assert_float_equal(dx[i], dxe[i], 0);
    mk_conv_bwd_weight_ref(&s, x, ones, dw, db);
    assert_float_equal(dw[0], 6, 0);
    assert_float_equal(dw[1], 10, 0);
    assert_float_equal(dw[2], 9, 0);
    assert_float_equal(db[0], 4, 0);
}

/* Number of in-range taps along one axis for output o. */
static int taps_1d(const mk_conv_shape *s, int a, int o)
{
    int c = 0;
    for (int t = 0; t < s->k[a]; t++) {
        int i = o * s->stride[a] - s->pad[a] + t * s->dil[a];
        c += i >= 0 && i < s->in[a];
    }
    return c;
}

/* x = 1, w = 1: every output equals cin times the product of per-axis in-range tap counts. */
static void test_ref_all_ones(void **state)
{
    (void)state;
    for (int rep = 0; rep < 20; rep++) {
        mk_conv_shape s = rand_shape(rep & 1 ? 3 : 2, 4, 7);
        size_t nx = n_x(&s), ny = n_y(&s), nw = n_w(&s);
        float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *y = malloc(ny * sizeof *y);
        assert_non_null(x);
        assert_non_null(w);
        assert_non_null(y);
        for (size_t i = 0; i < nx; i++)
            x[i] = 1;
        for (size_t i = 0; i < nw; i++)
            w[i] = 1;
        mk_conv_fwd_ref(&s, x, w, NULL, y);
        size_t i = 0;
        for (int n = 0; n < s.n; n++)
            for (int co = 0; co < s.cout; co++)
                for (int od = 0; od < s.out[0]; od++)
                    for (int oh = 0; oh < s.out[1]; oh++)
                        for (int ow = 0; ow < s.out[2]; ow++, i++) {
                            int e = s.cin * taps_1d(&s, 0, od) * taps_1d(&s, 1, oh) *
                                    taps_1d(&s, 2, ow);
                            assert_float_equal(y[i], (float)e, 0);
                        }
        free(x);
        free(w);
        free(y);
    }
}

/* <conv(x, w), dy> = <x, conv^T(dy, w)> = <w, dW(x, dy)>; <dy, 1 per channel> = db. */
static void test_ref_adjoint(void **state)
{
    (void)state;
    for (int rep = 0; rep < 40; rep++) {
        mk_conv_shape s = rand_shape(rep % 3 == 0 ? 3 : 2, 6, 9);
        size_t nx = n_x(&s), ny = n_y(&s), nw = n_w(&s);
        float *x = rand_buf(nx), *w = rand_buf(nw), *dy = rand_buf(ny);
        float *y = rand_buf(ny), *dx = calloc(nx, sizeof *dx), *dw = calloc(nw, sizeof *dw);
        float *db = calloc((size_t)s.cout, sizeof *db);
        assert_non_null(dx);
        assert_non_null(dw);
        assert_non_null(db);
        mk_conv_fwd_ref(&s, x, w, NULL, y);
        mk_conv_bwd_data_ref(&s, dy, w, dx);
        mk_conv_bwd_weight_ref(&s, x, dy, dw, db);
        double a = dot(y, dy, ny), b = dot(x, dx, nx), c = dot(w, dw, nw);
        double scale = 1e-5 * (1.0 + sqrt((double)ny * s.cin * s.k[0] * s.k[1] * s.k[2]));
        assert_true(fabs(a - b) <= scale);
        assert_true(fabs(a - c) <= scale);
        /* db: the bias gradient is the plain sum of dy per channel */
        size_t vout = (size_t)s.out[0] * s.out[1] * s.out[2];
        for (int co = 0; co < s.cout; co++) {
            double e = 0;
            for (int n = 0; n < s.n; n++)
                for (size_t i = 0; i < vout; i++)
                    e += dy[((size_t)n * s.cout + co) * vout + i];
            assert_true(fabs(e - db[co]) <= 1e-5 * (1 + fabs(e)));
        }
        free(x), free(w), free(dy), free(y), free(dx), free(dw), free(db);
    }
}

/* Accumulating contracts: bwd_data and bwd_weight add to what is there. */
static void test_ref_accumulates(void **state)
{
    (void)state;
    mk_conv_shape s = rand_shape(2, 4, 6);
    size_t nx = n_x(&s), ny = n_y(&s), nw = n_w(&s);
    float *x = rand_buf(nx), *w = rand_buf(nw), *dy = rand_buf(ny);
    float *dx0 = rand_buf(nx), *dx = copy_buf(dx0, nx), *dxz = calloc(nx, sizeof *dxz);
    float *dw0 = rand_buf(nw), *dw = copy_buf(dw0, nw), *dwz = calloc(nw, sizeof *dwz);
    assert_non_null(dxz);
    assert_non_null(dwz);
    mk_conv_bwd_data_ref(&s, dy, w, dx);
    mk_conv_bwd_data_ref(&s, dy, w, dxz);
    for (size_t i = 0; i < nx; i++)
        assert_float_equal(dx[i], dx0[i] + dxz[i], 1e-6);
    mk_conv_bwd_weight_ref(&s, x, dy, dw, NULL);
    mk_conv_bwd_weight_ref(&s, x, dy, dwz, NULL);
    for (size_t i = 0; i < nw; i++)
        assert_float_equal(dw[i], dw0[i] + dwz[i], 1e-5);
    free(x), free(w), free(dy), free(dx0), free(dx), free(dxz), free(dw0), free(dw), free(dwz);
}

/* Central finite differences of L(w, x) = <conv(x, w) + b, r> against the backward kernels. */
static void test_ref_finite_differences(void **state)
{
    (void)state;
    for (int rep = 0; rep < 10; rep++) {
        mk_conv_shape s = rand_shape(rep & 1 ? 3 : 2, 3, 6);
        size_t nx = n_x(&s), ny = n_y(&s), nw = n_w(&s);
        float *x = rand_buf(nx), *w = rand_buf(nw), *r = rand_buf(ny),
              *b = rand_buf((size_t)s.cout);
        float *y = malloc(ny * sizeof *y), *dw = calloc(nw, sizeof *dw),
              *dx = calloc(nx, sizeof *dx);
        float *db = calloc((size_t)s.cout, sizeof *db);
        assert_non_null(y);
        assert_non_null(dw);
        assert_non_null(dx);
        assert_non_null(db);
        mk_conv_bwd_weight_ref(&s, x, r, dw, db);
        mk_conv_bwd_data_ref(&s, r, w, dx);
        const float h = 0.125f; /* exact in binary; L is linear in w, x, b so h can be large */
        for (int probe = 0; probe < 6; probe++) {
            float *v;
            size_t idx;
            float g;
            int which = probe % 3;
            if (which == 0)
                idx = (size_t)rng_int(0, (int)nw - 1), v = w, g = dw[idx];
            else if (which == 1)
                idx = (size_t)rng_int(0, (int)nx - 1), v = x, g = dx[idx];
            else
                idx = (size_t)rng_int(0, s.cout - 1), v = b, g = db[idx];
            float keep = v[idx];
            v[idx] = keep + h;
            mk_conv_fwd_ref(&s, x, w, b, y);
            double lp = dot(y, r, ny);
            v[idx] = keep - h;
            mk_conv_fwd_ref(&s, x, w, b, y);
            double lm = dot(y, r, ny);
            v[idx] = keep;
            double fd = (lp - lm) / (2.0 * h);
            assert_true(fabs(fd - g) <= 1e-4 * (1 + sqrt((double)ny)));
        }
        free(x), free(w), free(r), free(b), free(y), free(dw), free(dx), free(db);
    }
}

/* ---- fast kernels against the references -------------------------------------------------- */

static double max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i]));
    return m;
}

/* max |a - b| / (max |b| + tiny): error relative to the array's magnitude */
static double rel_err(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m / (max_abs(b, n) + 1e-30);
}

static void check_fast_vs_ref(const mk_conv_shape *s, int threads, int use_ws)
{
    size_t nx = n_x(s), ny = n_y(s), nw = n_w(s);
    float *x = rand_buf(nx), *w = rand_buf(nw), *dy = rand_buf(ny), *b = rand_buf((size_t)s->cout);
    int with_bias = rng_int(0, 1);
    float *y_ref = malloc(ny * sizeof *y_ref), *y = rand_buf(ny);
    float *dx0 = rand_buf(nx), *dx_ref = copy_buf(dx0, nx), *dx = copy_buf(dx0, nx);
    float *dw0 = rand_buf(nw), *dw_ref = copy_buf(dw0, nw), *dw = copy_buf(dw0, nw);
    float *db_ref = calloc((size_t)s->cout, sizeof *db_ref),
          *db = calloc((size_t)s->cout, sizeof *db);
    assert_non_null(y_ref);
    assert_non_null(db_ref);
    assert_non_null(db);
    void *ws = NULL;
    if (use_ws) {
        size_t bytes = mk_conv_workspace_size(s, threads);
        ws = malloc(bytes ? bytes : 1);
        assert_non_null(ws);
    }
    mk_conv_fwd_ref(s, x, w, with_bias ? b : NULL, y_ref);
    mk_conv_fwd(s, x, w, with_bias ? b : NULL, y, ws, threads);
    mk_conv_bwd_data_ref(s, dy, w, dx_ref);
    mk_conv_bwd_data(s, dy, w, dx, ws, threads);
    mk_conv_bwd_weight_ref(s, x, dy, dw_ref, with_bias ? db_ref : NULL);
    mk_conv_bwd_weight(s, x, dy, dw, with_bias ? db : NULL, ws, threads);
    double ef = rel_err(y, y_ref, ny), ed = rel_err(dx, dx_ref, nx), ew = rel_err(dw, dw_ref, nw);
    double eb = with_bias ? rel_err(db, db_ref, (size_t)s->cout) : 0;
    if (ef > 1e-5 || ed > 1e-5 || ew > 1e-5 || eb > 1e-5) {
        print_error(
            "shape n%d cin%d cout%d in %dx%dx%d k %dx%dx%d s %d,%d,%d p %d,%d,%d d %d,%d,%d "
            "thr %d ws %d: err fwd %.3g dgrad %.3g wgrad %.3g bias %.3g\n",
            s->n, s->cin, s->cout, s->in[0], s->in[1], s->in[2], s->k[0], s->k[1], s->k[2],
            s->stride[0], s->stride[1], s->stride[2], s->pad[0], s->pad[1], s->pad[2], s->dil[0],
            s->dil[1], s->dil[2], threads, use_ws, ef, ed, ew, eb);
        fail();
    }
    free(x), free(w), free(dy), free(b), free(y_ref), free(y), free(dx0), free(dx_ref), free(dx);
    free(dw0), free(dw_ref), free(dw), free(db_ref), free(db), free(ws);
}

static void test_fast_random_2d(void **state)
{
    (void)state;
    const int nrep = quick ? 30 : 150, nbig = quick ? 20 : 100;
    for (int rep = 0; rep < nrep; rep++) {
        mk_conv_shape s = rand_shape(2, rep < nbig ? 12 : 40, rep < nbig ? 20 : 9);
        /* every third shape through the sgemm engine (stride-1 problems) */
        mk_conv_set_sgemm_min_channels(rep % 3 == 2 ? 1 : 0);
        check_fast_vs_ref(&s, 1 + (rep & 1), (rep >> 1) & 1);
    }
    mk_conv_set_sgemm_min_channels(0);
}

static void test_fast_random_3d(void **state)
{
    (void)state;
    const int nrep = quick ? 15 : 80, nbig = quick ? 12 : 60;
    for (int rep = 0; rep < nrep; rep++) {
        mk_conv_shape s = rand_shape(3, rep < nbig ? 10 : 40, rep < nbig ? 9 : 5);
        mk_conv_set_sgemm_min_channels(rep % 3 == 2 ? 1 : 0);
        check_fast_vs_ref(&s, 1 + (rep & 1), (rep >> 1) & 1);
    }
    mk_conv_set_sgemm_min_channels(0);
}

/* The layer classes of the reference U-Nets at reduced spatial size. */
static void test_fast_unet_classes(void **state)
{
    (void)state;
    const int c2[][2] = {{1, 16}, {16, 16}, {32, 16}, {16, 32}, {64, 32}, {64, 128}, {128, 64}};
    for (size_t i = 0; i < sizeof c2 / sizeof c2[0]; i++) {
        mk_conv_shape s = quick ? shape2d(1, c2[i][0], c2[i][1], 7, 9, 3, 1, 1, 1)
                                : shape2d(2, c2[i][0], c2[i][1], 19, 24, 3, 1, 1, 1);
        assert_int_equal(mk_conv_shape_finish(&s), 0);
        check_fast_vs_ref(&s, 2, 1);
        mk_conv_set_sgemm_min_channels(64); /* wide layers through sgemm */
        check_fast_vs_ref(&s, 2, 1);
        mk_conv_set_sgemm_min_channels(0);
    }
    const int c3[][2] = {{1, 8}, {8, 8}, {16, 8}, {8, 16}, {32, 16}};
    for (size_t i = 0; i < sizeof c3 / sizeof c3[0]; i++) {
        mk_conv_shape s = quick ? shape3d(1, c3[i][0], c3[i][1], 3, 4, 5, 3, 1, 1, 1)
                                : shape3d(1, c3[i][0], c3[i][1], 6, 7, 10, 3, 1, 1, 1);
        assert_int_equal(mk_conv_shape_finish(&s), 0);
        check_fast_vs_ref(&s, 2, 1);
    }
    /* stride-2 k2 (transposed-conv adjoint) and 1x1 heads */
    mk_conv_shape s = shape2d(2, 16, 32, 20, 22, 2, 2, 0, 1);
    assert_int_equal(mk_conv_shape_finish(&s), 0);
    check_fast_vs_ref(&s, 2, 1);
    s = shape3d(2, 8, 16, 8, 6, 10, 2, 2, 0, 1);
    assert_int_equal(mk_conv_shape_finish(&s), 0);
    check_fast_vs_ref(&s, 1, 0);
    s = shape2d(2, 16, 4, 17, 33, 1, 1, 0, 1);
    assert_int_equal(mk_conv_shape_finish(&s), 0);
    check_fast_vs_ref(&s, 2, 1);
    s = shape3d(1, 8, 4, 9, 10, 11, 1, 1, 0, 1);
    assert_int_equal(mk_conv_shape_finish(&s), 0);
    check_fast_vs_ref(&s, 2, 0);
}

/* Same inputs -> identical bits, run after run and for 1, 2 and 3 threads (outputs are computed by
 * one thread each; weight gradients are summed over fixed slots in a fixed order). Shapes cover
 * the direct and sgemm engines, the patch (2x2 stride 2) path and the generic strided path. */
static void test_fast_deterministic(void **state)
{
    (void)state;
    mk_conv_shape shapes[5] = {
        shape2d(3, 16, 16, 37, 41, 3, 1, 1, 1), shape3d(2, 8, 16, 9, 10, 12, 3, 1, 1, 1),
        shape2d(2, 40, 64, 21, 17, 3, 1, 1, 1), shape2d(3, 16, 32, 34, 40, 2, 2, 0, 1),
        shape3d(2, 5, 7, 9, 8, 11, 3, 2, 1, 1)};
    const int nshape = (int)(sizeof shapes / sizeof shapes[0]);
    for (int k = 0; k < nshape; k++)
        assert_int_equal(mk_conv_shape_finish(&shapes[k]), 0);
    for (int k = 0; k < 2 * nshape; k++) {
        mk_conv_set_sgemm_min_channels(k < nshape ? 0 : 1); /* both engines */
        const mk_conv_shape *s = &shapes[k % nshape];
        size_t nx = n_x(s), ny = n_y(s), nw = n_w(s);
        float *x = rand_buf(nx), *w = rand_buf(nw), *dy = rand_buf(ny),
              *b = rand_buf((size_t)s->cout);
        float *y[4], *dx[4], *dw[4], *db[4];
        const int threads[4] = {1, 1, 2, 3};
        for (int run = 0; run < 4; run++) {
            y[run] = malloc(ny * sizeof(float));
            dx[run] = calloc(nx, sizeof(float));
            dw[run] = calloc(nw, sizeof(float));
            db[run] = calloc((size_t)s->cout, sizeof(float));
            assert_non_null(y[run]);
            assert_non_null(dx[run]);
            assert_non_null(dw[run]);
            assert_non_null(db[run]);
            mk_conv_fwd(s, x, w, b, y[run], NULL, threads[run]);
            mk_conv_bwd_data(s, dy, w, dx[run], NULL, threads[run]);
            mk_conv_bwd_weight(s, x, dy, dw[run], db[run], NULL, threads[run]);
        }
        for (int run = 1; run < 4; run++) {
            assert_memory_equal(y[0], y[run], ny * sizeof(float));
            assert_memory_equal(dx[0], dx[run], nx * sizeof(float));
            assert_memory_equal(dw[0], dw[run], nw * sizeof(float));
            assert_memory_equal(db[0], db[run], (size_t)s->cout * sizeof(float));
        }
        for (int run = 0; run < 4; run++)
            free(y[run]), free(dx[run]), free(dw[run]), free(db[run]);
        free(x), free(w), free(dy), free(b);
    }
    mk_conv_set_sgemm_min_channels(0);
}

/* mk_conv_bwd_weight_samples: each sample's partial has the bits of mk_conv_bwd_weight of that
 * sample alone (n = 1, into zeros) for batches of 1-5 and 1, 2 and 3 threads (both of its paths:
 * whole samples per worker, and workers sharing a sample), and the partials add up to the
 * reference weight gradient. */
static void test_wgrad_samples(void **state)
{
    (void)state;
    mk_conv_shape base[4] = {shape2d(1, 16, 16, 23, 29, 3, 1, 1, 1),
                             shape3d(1, 8, 8, 7, 9, 10, 3, 1, 1, 1),
                             shape2d(1, 16, 32, 20, 22, 2, 2, 0, 1), /* patch */
                             shape2d(1, 5, 7, 17, 15, 3, 2, 1, 1)};  /* generic, strided */
    for (int k = 0; k < 4; k++)
        for (int n = 1; n <= (quick ? 3 : 5); n++) {
            mk_conv_shape s = base[k], one = base[k];
            s.n = n;
            assert_int_equal(mk_conv_shape_finish(&s), 0);
            assert_int_equal(mk_conv_shape_finish(&one), 0);
            size_t nx = n_x(&s), ny = n_y(&s), nw = n_w(&s);
            size_t vx = nx / (size_t)n, vy = ny / (size_t)n;
            float *x = rand_buf(nx), *dy = rand_buf(ny);
            float *want = calloc((size_t)n * nw, sizeof(float));
            float *got = malloc((size_t)n * nw * sizeof(float));
            float *ref = calloc(nw, sizeof(float));
            assert_non_null(want);
            assert_non_null(got);
            assert_non_null(ref);
            for (int i = 0; i < n; i++)
                mk_conv_bwd_weight(&one, x + i * vx, dy + i * vy, want + i * nw, NULL, NULL, 1);
            mk_conv_bwd_weight_ref(&s, x, dy, ref, NULL);
            for (int t = 1; t <= 3; t++) {
                memset(got, 0x7f, (size_t)n * nw * sizeof(float)); /* overwritten */
                mk_conv_bwd_weight_samples(&s, x, dy, got, NULL, t);
                assert_memory_equal(want, got, (size_t)n * nw * sizeof(float));
            }
            double mx = 0, err = 0;
            for (size_t j = 0; j < nw; j++) {
                double sum = 0;
                for (int i = 0; i < n; i++)
                    sum += got[i * nw + j];
                mx = fmax(mx, fabs(ref[j]));
                err = fmax(err, fabs(sum - ref[j]));
            }
            assert_true(err <= 1e-5 * mx);
            free(x), free(dy), free(want), free(got), free(ref);
        }
}

int main(int argc, char **argv)
{
    quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_finish),      cmocka_unit_test(test_ref_hand_1d),
        cmocka_unit_test(test_ref_all_ones),      cmocka_unit_test(test_ref_adjoint),
        cmocka_unit_test(test_ref_accumulates),   cmocka_unit_test(test_ref_finite_differences),
        cmocka_unit_test(test_fast_random_2d),    cmocka_unit_test(test_fast_random_3d),
        cmocka_unit_test(test_fast_unet_classes), cmocka_unit_test(test_fast_deterministic),
        cmocka_unit_test(test_wgrad_samples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
