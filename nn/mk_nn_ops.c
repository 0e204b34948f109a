/* Ops: forward (record a node) and backward (accumulate into the inputs' gradients), and the op
 * table. Every backward adds into in[i]->grad only when in[i]->requires_grad, so a gradient that
 * reaches a node from several consumers is summed. Reductions accumulate in double in a fixed
 * order, so results depend only on the thread count (static OpenMP schedules). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mk_nn_impl.h"
#include "nn/mk_conv.h"

/* Below this many elements loops stay serial (a parallel region costs tens of microseconds with
 * passive waiting). */
#define PAR_MIN 262144

static int nthreads(const mk_nn_graph *g, int64_t work)
{
    return work < PAR_MIN ? 1 : g->threads;
}

static int want(const mk_var *v)
{
    return v && v->requires_grad;
}

/* ---------------------------------------------------------------- convolution */

/* Fills a mk_conv_shape from x's spatial extent; `ns` spatial axes (2 or 3) take their values from
 * the last ns entries of the 3-vectors. */
static void conv_shape(mk_conv_shape *s, int64_t n, int64_t cin, int64_t cout, const int64_t sp[3],
                       const int64_t *w_ne, int ns, const int *stride, const int *pad,
                       const int *dil)
{
    memset(s, 0, sizeof *s);
    s->n = (int)n;
    s->cin = (int)cin;
    s->cout = (int)cout;
    for (int a = 0; a < 3; a++) {
        s->in[a] = (int)sp[a];
        s->k[a] = 1;
        s->stride[a] = 1;
        s->pad[a] = 0;
        s->dil[a] = 1;
    }
    for (int i = 0; i < ns; i++) {
        int a = 3 - ns + i;
        s->k[a] = (int)w_ne[2 + i];
        s->stride[a] = stride ? stride[i] : 1;
        s->pad[a] = pad ? pad[i] : 0;
        s->dil[a] = dil ? dil[i] : 1;
    }
}

/* Multiply-adds x 2 of conv s (any of its three products). */
static double conv_flops(const mk_conv_shape *s)
{
    return 2.0 * s->n * s->cout * s->cin * s->k[0] * s->k[1] * s->k[2] * s->out[0] * s->out[1] *
           s->out[2];
}

/* Profile: a part of a backward pass (conv data/weight gradient), from t0. */
static void prof_part(const char *op, const char *phase, double t0, double flops)
{
    if (t0 > 0)
        mk_nn_profile_add(op, phase, mk_nn_profile_now() - t0, flops);
}

static double prof_t0(void)
{
    return mk__prof_on() ? mk_nn_profile_now() : 0;
}

/* Workers for one conv product: one below CONV_PAR_MIN FLOPs, where starting and joining the
 * workers (tens of microseconds with passive waiting) costs more than they save; the small
 * networks of the demo and the tiny students run their convs on one thread. The kernels give the
 * same bits for any thread count (docs/kernels.md), so this is a speed choice only. */
#define CONV_PAR_MIN 4e6

static int conv_threads(const mk_nn_graph *g, const mk_conv_shape *s)
{
    return conv_flops(s) < CONV_PAR_MIN ? 1 : g->threads;
}

static void *conv_ws(mk_nn_graph *g, const mk_conv_shape *s)
{
    size_t b = mk_conv_workspace_size(s, conv_threads(g, s));
    return b ? mk__tmp(g, b) : NULL;
}

mk_var *mk_nn_conv(mk_nn_graph *g, mk_var *x, mk_var *w, mk_var *b, const int *stride,
                   const int *pad, const int *dil)
{
    if (!x || !w)
        return NULL;
    int ns = x->t.ndim - 2;
    MK_ASSERT(ns >= 1 && ns <= 3 && w->t.ndim == x->t.ndim && w->t.ne[1] == x->t.ne[1]);
    int64_t n, c, sp[3];
    mk__dims(x, &n, &c, sp);
    mk_conv_shape s;
    conv_shape(&s, n, c, w->t.ne[0], sp, w->t.ne, ns, stride, pad, dil);
    MK_ASSERT(mk_conv_shape_finish(&s) == 0);
    int64_t ne[5] = {n, w->t.ne[0]};
    for (int i = 0; i < ns; i++)
        ne[2 + i] = s.out[3 - ns + i];
    mk_var *in[3] = {x, w, b};
    mk_var *v = mk__node(g, MK_OP_CONV, x->t.ndim, ne, b ? 3 : 2, in);
    if (!v)
        return NULL;
    memcpy(v->aux2 = mk__scratch(g, sizeof s), &s, sizeof s);
    if (!v->aux2)
        return NULL;
    void *ws = conv_ws(g, &s);
    if (g->oom)
        return NULL;
    mk_conv_fwd(&s, x->t.data, w->t.data, b ? b->t.data : NULL, v->t.data, ws, conv_threads(g, &s));
    mk__tmp_release(g);
    if (mk__prof_on())
        mk__prof_flops("conv", "forward", conv_flops(&s));
    return v;
}

/* dw += the weight gradient of conv s, one partial per sample added in global sample order
 * (mk__fold_f): the same bits however the batch is split. x: the conv's input, dy: the gradient
 * of its output; v: the node (its batch mark). */
static void wgrad_fold(mk_nn_graph *g, const mk_var *v, const mk_conv_shape *s, const float *x,
                       const float *dy, float *dw, void *ws, int is_param)
{
    if (!dw || g->oom)
        return;
    const size_t nw = (size_t)s->cout * s->cin * s->k[0] * s->k[1] * s->k[2];
    float *part = malloc((size_t)s->n * nw * sizeof(float));
    if (!part) {
        g->oom = 1;
        return;
    }
    mk_conv_bwd_weight_samples(s, x, dy, part, ws, conv_threads(g, s));
    if (is_param) /* a parameter's gradient: fused into one gather per backward pass */
        mk__fold_defer(g, v, part, s->n, nw, 0, dw);
    else {
        mk__fold_f(g, v, part, s->n, nw, dw);
        free(part);
    }
}

/* db[c] += sum of gy over the batch and space, per-sample partials in double (mk__fold_d). */
static void bias_fold(mk_nn_graph *g, const mk_var *v, const float *gy, float *db, int is_param)
{
    if (!db || g->oom)
        return;
    int64_t n, c, sp[3];
    mk__dims(v, &n, &c, sp);
    int64_t S = sp[0] * sp[1] * sp[2];
    double *part = malloc((size_t)(n * c > 0 ? n * c : 1) * sizeof(double));
    if (!part) {
        g->oom = 1;
        return;
    }
#pragma omp parallel for num_threads(nthreads(g, n *c *S)) schedule(dynamic, 1)
    for (int64_t i = 0; i < n * c; i++) {
        double a = 0;
        for (int64_t k = 0; k < S; k++)
            a += gy[i * S + k];
        part[i] = a;
    }
    if (is_param) { /* fused, as the weights' */
        mk__fold_defer(g, v, part, n, (size_t)c, 1, db);
        return;
    }
    double acc[4096];
    MK_ASSERT(c <= 4096);
    memset(acc, 0, (size_t)c * sizeof(double));
    mk__fold_d(g, v, part, n, (size_t)c, acc);
    for (int64_t ch = 0; ch < c; ch++)
        db[ch] += (float)acc[ch];
    free(part);
}

static void conv_backward(mk_nn_graph *g, mk_var *v)
{
    const mk_conv_shape *s = v->aux2;
    mk_var *x = v->in[0], *w = v->in[1], *b = v->nin > 2 ? v->in[2] : NULL;
    void *ws = conv_ws(g, s);
    if (g->oom)
        return;
    double t0 = prof_t0();
    if (want(x)) {
        float *dx = mk__grad(g, x);
        if (!dx)
            return;
        mk_conv_bwd_data(s, v->grad, w->t.data, dx, ws, conv_threads(g, s));
        prof_part("conv", "  data gradient", t0, conv_flops(s));
    }
    t0 = prof_t0();
    if (want(w))
        wgrad_fold(g, v, s, x->t.data, v->grad, mk__grad(g, w), ws, w->param != NULL);
    prof_part("conv", "  weight gradient", t0, want(w) ? conv_flops(s) : 0);
    t0 = prof_t0();
    if (want(b))
        bias_fold(g, v, v->grad, mk__grad(g, b), b->param != NULL);
    prof_part("conv", "  bias gradient", t0, 0);
}

mk_var *mk_nn_conv_transpose(mk_nn_graph *g, mk_var *x, mk_var *w, mk_var *b, const int *stride,
                             const int *pad, const int *dil)
{
    if (!x || !w)
        return NULL;
    int ns = x->t.ndim - 2;
    MK_ASSERT(ns >= 1 && ns <= 3 && w->t.ndim == x->t.ndim && w->t.ne[0] == x->t.ne[1]);
    int64_t n, c, sp[3];
    mk__dims(x, &n, &c, sp);
    int64_t cout = w->t.ne[1];
    /* output extent of the transposed conv = input extent of the adjoint conv */
    int64_t osp[3] = {sp[0], sp[1], sp[2]};
    for (int i = 0; i < ns; i++) {
        int a = 3 - ns + i;
        int st = stride ? stride[i] : 1, pd = pad ? pad[i] : 0, dl = dil ? dil[i] : 1;
        osp[a] = (sp[a] - 1) * st - 2 * pd + (int64_t)dl * (w->t.ne[2 + i] - 1) + 1;
        MK_ASSERT(osp[a] > 0);
    }
    mk_conv_shape s;
    conv_shape(&s, n, cout, c, osp, w->t.ne, ns, stride, pad, dil);
    MK_ASSERT(mk_conv_shape_finish(&s) == 0);
    for (int a = 0; a < 3; a++)
        MK_ASSERT(s.out[a] == sp[a]);
    int64_t ne[5] = {n, cout};
    for (int i = 0; i < ns; i++)
        ne[2 + i] = osp[3 - ns + i];
    mk_var *in[3] = {x, w, b};
    mk_var *v = mk__node(g, MK_OP_CONVT, x->t.ndim, ne, b ? 3 : 2, in);
    if (!v)
        return NULL;
    v->aux2 = mk__scratch(g, sizeof s);
    void *ws = conv_ws(g, &s);
    if (g->oom)
        return NULL;
    memcpy(v->aux2, &s, sizeof s);
    int64_t nv = mk__numel(v);
    memset(v->t.data, 0, (size_t)nv * sizeof(float));
    mk_conv_bwd_data(&s, x->t.data, w->t.data, v->t.data, ws, conv_threads(g, &s));
    mk__tmp_release(g);
    if (mk__prof_on())
        mk__prof_flops("conv_transpose", "forward", conv_flops(&s));
    if (b) {
        int64_t S = osp[0] * osp[1] * osp[2];
        for (int64_t i = 0; i < n * cout; i++) {
            float bv = b->t.data[i % cout];
            float *y = v->t.data + i * S;
            for (int64_t k = 0; k < S; k++)
                y[k] += bv;
        }
    }
    return v;
}

static void convt_backward(mk_nn_graph *g, mk_var *v)
{
    const mk_conv_shape *s = v->aux2;
    mk_var *x = v->in[0], *w = v->in[1], *b = v->nin > 2 ? v->in[2] : NULL;
    void *ws = conv_ws(g, s);
    if (g->oom)
        return;
    double t0 = prof_t0();
    if (want(x)) {
        int64_t nx = mk__numel(x);
        float *tmp = mk__tmp(g, (size_t)nx * sizeof(float));
        float *dx = mk__grad(g, x);
        if (!tmp || !dx)
            return;
        mk_conv_fwd(s, v->grad, w->t.data, NULL, tmp, ws, conv_threads(g, s));
        for (int64_t i = 0; i < nx; i++)
            dx[i] += tmp[i];
        prof_part("conv_transpose", "  data gradient", t0, conv_flops(s));
    }
    t0 = prof_t0();
    if (want(w))
        wgrad_fold(g, v, s, v->grad, x->t.data, mk__grad(g, w), ws, w->param != NULL);
    prof_part("conv_transpose", "  weight gradient", t0, want(w) ? conv_flops(s) : 0);
    t0 = prof_t0();
    if (want(b))
        bias_fold(g, v, v->grad, mk__grad(g, b), b->param != NULL);
    prof_part("conv_transpose", "  bias gradient", t0, 0);
}

/* ---------------------------------------------------------------- pooling */

static mk_var *pool_node(mk_nn_graph *g, mk_op op, mk_var *x, int k, int s, int64_t osp[3])
{
    int ns = x->t.ndim - 2;
    int64_t n, c, sp[3];
    mk__dims(x, &n, &c, sp);
    int64_t ne[5] = {n, c};
    for (int a = 0; a < 3; a++)
        osp[a] = sp[a];
    for (int i = 0; i < ns; i++) {
        int a = 3 - ns + i;
        MK_ASSERT(sp[a] >= k);
        osp[a] = (sp[a] - k) / s + 1;
        ne[2 + i] = osp[a];
    }
    mk_var *v = mk__node(g, op, x->t.ndim, ne, 1, &x);
    if (v) {
        v->ip[0] = k;
        v->ip[1] = s;
        v->ip[2] = ns;
    }
    return v;
}

/* 1 when val replaces best (NaN propagates like PyTorch; ties keep the first). */
static inline int pool_takes(float val, float best)
{
    return val > best || (isnan(val) && !isnan(best));
}

/* The U-Nets' 2 x 2 (x 2) stride-2 max pool of P planes [D][H][W] (kd = 1: 2D, D = 1; kd = 2:
 * 3D): the generic loop's order and results, without its index arithmetic per tap. */
static void maxpool2(const float *x, float *y, int32_t *arg, int64_t P, const int64_t sp[3],
                     const int64_t osp[3], int kd, int nt)
{
    const int64_t H = sp[1], W = sp[2], oD = osp[0], oH = osp[1], oW = osp[2];
    const int64_t S = sp[0] * H * W, O = oD * oH * oW;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t p = 0; p < P; p++) {
        const float *xp = x + p * S;
        float *yp = y + p * O;
        int32_t *ap = arg ? arg + p * O : NULL;
        for (int64_t od = 0; od < oD; od++)
            for (int64_t oh = 0; oh < oH; oh++) {
                const int64_t o0 = (od * oH + oh) * oW;
                for (int64_t ow = 0; ow < oW; ow++) {
                    float best = 0;
                    int64_t bi = -1;
                    for (int a = 0; a < kd; a++) {
                        const int64_t r0 = ((od * kd + a) * H + 2 * oh) * W + 2 * ow;
                        const int64_t idx[4] = {r0, r0 + 1, r0 + W, r0 + W + 1};
                        for (int t = 0; t < 4; t++)
                            if (bi < 0 || pool_takes(xp[idx[t]], best)) {
                                best = xp[idx[t]];
                                bi = idx[t];
                            }
                    }
                    yp[o0 + ow] = best;
                    if (ap)
                        ap[o0 + ow] = (int32_t)bi;
                }
            }
    }
}

mk_var *mk_nn_maxpool(mk_nn_graph *g, mk_var *x, int k, int s)
{
    if (!x)
        return NULL;
    int64_t osp[3];
    mk_var *v = pool_node(g, MK_OP_MAXPOOL, x, k, s, osp);
    if (!v)
        return NULL;
    int64_t n, c, sp[3];
    mk__dims(x, &n, &c, sp);
    int ns = v->ip[2];
    int kd = ns == 3 ? k : 1, sd = ns == 3 ? s : 1;
    int64_t S = sp[0] * sp[1] * sp[2], O = osp[0] * osp[1] * osp[2];
    int32_t *arg = NULL;
    if (v->requires_grad) {
        arg = mk__scratch(g, (size_t)(n * c * O) * sizeof(int32_t));
        if (!arg)
            return NULL;
    }
    v->aux = arg;
    if ((ns == 2 || ns == 3) && k == 2 && s == 2) {
        maxpool2(x->t.data, v->t.data, arg, n * c, sp, osp, kd, nthreads(g, n * c * O));
        return v;
    }
#pragma omp parallel for num_threads(nthreads(g, n *c *O)) schedule(dynamic, 1)
    for (int64_t p = 0; p < n * c; p++) {
        const float *xp = x->t.data + p * S;
        float *yp = v->t.data + p * O;
        for (int64_t od = 0; od < osp[0]; od++)
            for (int64_t oh = 0; oh < osp[1]; oh++)
                for (int64_t ow = 0; ow < osp[2]; ow++) {
                    float best = -INFINITY;
                    int64_t bi = -1;
                    for (int a = 0; a < kd; a++)
                        for (int b2 = 0; b2 < k; b2++)
                            for (int c2 = 0; c2 < k; c2++) {
                                int64_t idx =
                                    ((od * sd + a) * sp[1] + oh * s + b2) * sp[2] + ow * s + c2;
                                float val = xp[idx];
                                /* NaN propagates like PyTorch; ties keep the first */
                                if (bi < 0 || val > best || (isnan(val) && !isnan(best))) {
                                    best = val;
                                    bi = idx;
                                }
                            }
                    int64_t o = (od * osp[1] + oh) * osp[2] + ow;
                    yp[o] = best;
                    if (arg)
                        arg[p * O + o] = (int32_t)bi;
                }
    }
    return v;
}

static void maxpool_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *x = v->in[0];
    float *dx = mk__grad(g, x);
    if (!dx)
        return;
    int64_t n, c, sp[3], on, oc, osp[3];
    mk__dims(x, &n, &c, sp);
    mk__dims(v, &on, &oc, osp);
    int64_t S = sp[0] * sp[1] * sp[2], O = osp[0] * osp[1] * osp[2];
    const int32_t *arg = v->aux;
#pragma omp parallel for num_threads(nthreads(g, n *c *O)) schedule(dynamic, 1)
    for (int64_t p = 0; p < n * c; p++)
        for (int64_t o = 0; o < O; o++)
            dx[p * S + arg[p * O + o]] += v->grad[p * O + o];
}

mk_var *mk_nn_avgpool(mk_nn_graph *g, mk_var *x, int k, int s)
{
    if (!x)
        return NULL;
    int64_t osp[3];
    mk_var *v = pool_node(g, MK_OP_AVGPOOL, x, k, s, osp);
    if (!v)
        return NULL;
    int64_t n, c, sp[3];
    mk__dims(x, &n, &c, sp);
    int ns = v->ip[2];
    int kd = ns == 3 ? k : 1, sd = ns == 3 ? s : 1;
    int64_t S = sp[0] * sp[1] * sp[2], O = osp[0] * osp[1] * osp[2];
    float inv = 1.0f / (float)(kd * k * k);
#pragma omp parallel for num_threads(nthreads(g, n *c *O)) schedule(dynamic, 1)
    for (int64_t p = 0; p < n * c; p++) {
        const float *xp = x->t.data + p * S;
        float *yp = v->t.data + p * O;
        for (int64_t od = 0; od < osp[0]; od++)
            for (int64_t oh = 0; oh < osp[1]; oh++)
                for (int64_t ow = 0; ow < osp[2]; ow++) {
                    float acc = 0;
                    for (int a = 0; a < kd; a++)
                        for (int b2 = 0; b2 < k; b2++)
                            for (int c2 = 0; c2 < k; c2++)
                                acc +=
                                    xp[((od * sd + a) * sp[1] + oh * s + b2) * sp[2] + ow * s + c2];
                    yp[(od * osp[1] + oh) * osp[2] + ow] = acc * inv;
                }
    }
    return v;
}

static void avgpool_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *x = v->in[0];
    float *dx = mk__grad(g, x);
    if (!dx)
        return;
    int k = v->ip[0], s = v->ip[1], ns = v->ip[2];
    int kd = ns == 3 ? k : 1, sd = ns == 3 ? s : 1;
    int64_t n, c, sp[3], on, oc, osp[3];
    mk__dims(x, &n, &c, sp);
    mk__dims(v, &on, &oc, osp);
    int64_t S = sp[0] * sp[1] * sp[2], O = osp[0] * osp[1] * osp[2];
    float inv = 1.0f / (float)(kd * k * k);
#pragma omp parallel for num_threads(nthreads(g, n *c *O)) schedule(dynamic, 1)
    for (int64_t p = 0; p < n * c; p++) {
        float *dxp = dx + p * S;
        const float *gy = v->grad + p * O;
        for (int64_t od = 0; od < osp[0]; od++)
            for (int64_t oh = 0; oh < osp[1]; oh++)
                for (int64_t ow = 0; ow < osp[2]; ow++) {
                    float gv = gy[(od * osp[1] + oh) * osp[2] + ow] * inv;
                    for (int a = 0; a < kd; a++)
                        for (int b2 = 0; b2 < k; b2++)
                            for (int c2 = 0; c2 < k; c2++)
                                dxp[((od * sd + a) * sp[1] + oh * s + b2) * sp[2] + ow * s + c2] +=
                                    gv;
                }
    }
}

/* ---------------------------------------------------------------- upsampling */

static mk_var *up_node(mk_nn_graph *g, mk_op op, mk_var *x, int f)
{
    MK_ASSERT(f >= 1);
    int64_t ne[5];
    for (int i = 0; i < x->t.ndim; i++)
        ne[i] = i >= 2 ? x->t.ne[i] * f : x->t.ne[i];
    mk_var *v = mk__node(g, op, x->t.ndim, ne, 1, &x);
    if (v)
        v->ip[0] = f;
    return v;
}

mk_var *mk_nn_upsample_nearest(mk_nn_graph *g, mk_var *x, int f)
{
    if (!x)
        return NULL;
    mk_var *v = up_node(g, MK_OP_UPSAMPLE_NEAREST, x, f);
    if (!v)
        return NULL;
    int64_t n, c, sp[3], on, oc, osp[3];
    mk__dims(x, &n, &c, sp);
    mk__dims(v, &on, &oc, osp);
    int64_t S = sp[0] * sp[1] * sp[2], O = osp[0] * osp[1] * osp[2];
    int fd = x->t.ndim == 5 ? f : 1;
#pragma omp parallel for num_threads(nthreads(g, n *c *O)) schedule(dynamic, 1)
    for (int64_t p = 0; p < n * c; p++)
        for (int64_t od = 0; od < osp[0]; od++)
            for (int64_t oh = 0; oh < osp[1]; oh++)
                for (int64_t ow = 0; ow < osp[2]; ow++)
                    v->t.data[p * O + (od * osp[1] + oh) * osp[2] + ow] =
                        x->t.data[p * S + ((od / fd) * sp[1] + oh / f) * sp[2] + ow / f];
    return v;
}

static void up_nearest_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *x = v->in[0];
    float *dx = mk__grad(g, x);
    if (!dx)
        return;
    int f = v->ip[0];
    int fd = x->t.ndim == 5 ? f : 1;
    int64_t n, c, sp[3], on, oc, osp[3];
    mk__dims(x, &n, &c, sp);
    mk__dims(v, &on, &oc, osp);
    int64_t S = sp[0] * sp[1] * sp[2], O = osp[0] * osp[1] * osp[2];
#pragma omp parallel for num_threads(nthreads(g, n *c *O)) schedule(dynamic, 1)
    for (int64_t p = 0; p < n * c; p++)
        for (int64_t od = 0; od < osp[0]; od++)
            for (int64_t oh = 0; oh < osp[1]; oh++)
                for (int64_t ow = 0; ow < osp[2]; ow++)
                    dx[p * S + ((od / fd) * sp[1] + oh / f) * sp[2] + ow / f] +=
                        v->grad[p * O + (od * osp[1] + oh) * osp[2] + ow];
}

/* Source index pair and weight of output o along an axis of input length in (align_corners False):
 * src = (o + 0.5) / f - 0.5 clamped at 0. */
static void lin_src(int64_t o, int f, int64_t in, int64_t *i0, int64_t *i1, float *l)
{
    float src = ((float)o + 0.5f) / (float)f - 0.5f;
    if (src < 0)
        src = 0;
    int64_t a = (int64_t)src;
    if (a > in - 1)
        a = in - 1;
    *i0 = a;
    *i1 = a + 1 < in ? a + 1 : in - 1;
    *l = src - (float)a;
}

/* forward (dir = 0) or backward (dir = 1) of linear upsampling of one plane */
static void up_linear_plane(const float *src, float *dst, const int64_t sp[3], const int64_t osp[3],
                            const int fa[3], int dir)
{
    for (int64_t od = 0; od < osp[0]; od++) {
        int64_t d0, d1;
        float ld;
        lin_src(od, fa[0], sp[0], &d0, &d1, &ld);
        for (int64_t oh = 0; oh < osp[1]; oh++) {
            int64_t h0, h1;
            float lh;
            lin_src(oh, fa[1], sp[1], &h0, &h1, &lh);
            for (int64_t ow = 0; ow < osp[2]; ow++) {
                int64_t w0, w1;
                float lw;
                lin_src(ow, fa[2], sp[2], &w0, &w1, &lw);
                int64_t ds[2] = {d0, d1}, hs[2] = {h0, h1}, ws[2] = {w0, w1};
                float wd[2] = {1 - ld, ld}, wh[2] = {1 - lh, lh}, ww[2] = {1 - lw, lw};
                int64_t o = (od * osp[1] + oh) * osp[2] + ow;
                float acc = 0;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++)
                        for (int c = 0; c < 2; c++) {
                            int64_t i = (ds[a] * sp[1] + hs[b]) * sp[2] + ws[c];
                            float wt = wd[a] * wh[b] * ww[c];
                            if (dir == 0)
                                acc += wt * src[i];
                            else
                                dst[i] += wt * src[o];
                        }
                if (dir == 0)
                    dst[o] = acc;
            }
        }
    }
}

mk_var *mk_nn_upsample_linear(mk_nn_graph *g, mk_var *x, int f)
{
    if (!x)
        return NULL;
    mk_var *v = up_node(g, MK_OP_UPSAMPLE_LINEAR, x, f);
    if (!v)
        return NULL;
    int64_t n, c, sp[3], on, oc, osp[3];
    mk__dims(x, &n, &c, sp);
    mk__dims(v, &on, &oc, osp);
    int fa[3] = {x->t.ndim == 5 ? f : 1, x->t.ndim >= 4 ? f : 1, f};
    int64_t S = sp[0] * sp[1] * sp[2], O = osp[0] * osp[1] * osp[2];
#pragma omp parallel for num_threads(nthreads(g, n *c *O)) schedule(dynamic, 1)
    for (int64_t p = 0; p < n * c; p++)
        up_linear_plane(x->t.data + p * S, v->t.data + p * O, sp, osp, fa, 0);
    return v;
}

static void up_linear_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *x = v->in[0];
    float *dx = mk__grad(g, x);
    if (!dx)
        return;
    int f = v->ip[0];
    int64_t n, c, sp[3], on, oc, osp[3];
    mk__dims(x, &n, &c, sp);
    mk__dims(v, &on, &oc, osp);
    int fa[3] = {x->t.ndim == 5 ? f : 1, x->t.ndim >= 4 ? f : 1, f};
    int64_t S = sp[0] * sp[1] * sp[2], O = osp[0] * osp[1] * osp[2];
#pragma omp parallel for num_threads(nthreads(g, n *c *O)) schedule(dynamic, 1)
    for (int64_t p = 0; p < n * c; p++)
        up_linear_plane(v->grad + p * O, dx + p * S, sp, osp, fa, 1);
}

/* ---------------------------------------------------------------- normalisation */

/* Shared by batch and instance norm: G groups (statistics units), each made of R segments of S
 * contiguous values; segment r of group j starts at r*stride_r + j*S. Channel of group j: j % C. */
typedef struct norm_layout {
    int64_t G, R, S, stride_r, C;
} norm_layout;

/* Reductions for the norms: 16 float lanes over blocks of 256 values (vectorisable without
 * reassociation, error of a 16-term float sum per lane), blocks added in double. */
#define RB 256

static double red_sum(const float *p, int64_t n)
{
    double tot = 0;
    for (int64_t k0 = 0; k0 < n; k0 += RB) {
        int64_t k1 = k0 + RB < n ? k0 + RB : n, k = k0;
        float acc[16] = {0};
        for (; k + 16 <= k1; k += 16)
            for (int l = 0; l < 16; l++)
                acc[l] += p[k + l];
        double s = 0;
        for (int l = 0; l < 16; l++)
            s += acc[l];
        for (; k < k1; k++)
            s += p[k];
        tot += s;
    }
    return tot;
}

static double red_sqdev(const float *p, int64_t n, float m)
{
    double tot = 0;
    for (int64_t k0 = 0; k0 < n; k0 += RB) {
        int64_t k1 = k0 + RB < n ? k0 + RB : n, k = k0;
        float acc[16] = {0};
        for (; k + 16 <= k1; k += 16)
            for (int l = 0; l < 16; l++) {
                float d = p[k + l] - m;
                acc[l] += d * d;
            }
        double s = 0;
        for (int l = 0; l < 16; l++)
            s += acc[l];
        for (; k < k1; k++)
            s += (double)(p[k] - m) * (p[k] - m);
        tot += s;
    }
    return tot;
}

/* *a += sum gy, *b += sum gy * (x - m) * is */
static void red_dy(const float *gy, const float *x, int64_t n, float m, float is, double *a,
                   double *b)
{
    for (int64_t k0 = 0; k0 < n; k0 += RB) {
        int64_t k1 = k0 + RB < n ? k0 + RB : n, k = k0;
        float aa[16] = {0}, bb[16] = {0};
        for (; k + 16 <= k1; k += 16)
            for (int l = 0; l < 16; l++) {
                aa[l] += gy[k + l];
                bb[l] += gy[k + l] * ((x[k + l] - m) * is);
            }
        double sa = 0, sb = 0;
        for (int l = 0; l < 16; l++) {
            sa += aa[l];
            sb += bb[l];
        }
        for (; k < k1; k++) {
            sa += gy[k];
            sb += (double)gy[k] * ((x[k] - m) * is);
        }
        *a += sa;
        *b += sb;
    }
}

/* mean and biased variance of group j; the variance is taken around the float-rounded mean
 * (exact enough: the correction (mean - m)^2 is below float resolution). */
static void norm_stats(const float *x, const norm_layout *L, int64_t j, double *mean, double *var)
{
    double s = 0;
    for (int64_t r = 0; r < L->R; r++)
        s += red_sum(x + r * L->stride_r + j * L->S, L->S);
    double m = s / (double)(L->R * L->S);
    float mf = (float)m;
    double q = 0;
    for (int64_t r = 0; r < L->R; r++)
        q += red_sqdev(x + r * L->stride_r + j * L->S, L->S, mf);
    double dm = m - (double)mf; /* sum (x - mf)^2 = sum (x - m)^2 + M dm^2 */
    *mean = m;
    *var = q / (double)(L->R * L->S) - dm * dm;
}

/* y = gamma * (x - mean) * invstd + beta per group; mean/invstd arrays of G. */
static void norm_apply(mk_nn_graph *g, const float *x, float *y, const norm_layout *L,
                       const float *mean, const float *invstd, const float *gamma,
                       const float *beta)
{
#pragma omp parallel for num_threads(nthreads(g, L->G * L->R * L->S)) schedule(dynamic, 1)
    for (int64_t j = 0; j < L->G; j++) {
        int64_t ch = j % L->C;
        float a = invstd[j] * (gamma ? gamma[ch] : 1.0f);
        float b = beta ? beta[ch] : 0.0f, m = mean[j];
        /* (x - mean) first: exact for x near the mean, so values near 0 (where a following ReLU
         * decides) carry no extra rounding from a large mean */
        for (int64_t r = 0; r < L->R; r++) {
            const float *p = x + r * L->stride_r + j * L->S;
            float *q = y + r * L->stride_r + j * L->S;
            for (int64_t k = 0; k < L->S; k++)
                q[k] = (p[k] - m) * a + b;
        }
    }
}

static mk_var *norm_forward(mk_nn_graph *g, mk_op op, mk_var *x, mk_var *gamma, mk_var *beta,
                            mk_param *rm, mk_param *rv, float momentum, float eps)
{
    if (!x)
        return NULL;
    if ((gamma && !gamma->t.data) || (beta && !beta->t.data))
        return NULL;
    int64_t n, c, sp[3];
    mk__dims(x, &n, &c, sp);
    int64_t S = sp[0] * sp[1] * sp[2];
    norm_layout L;
    if (op == MK_OP_BATCHNORM)
        L = (norm_layout){c, n, S, c * S, c};
    else
        L = (norm_layout){n * c, 1, S, 0, c};
    mk_var *in[3] = {x, gamma, beta};
    /* inputs may be NULL (no affine): record only the real ones at fixed slots */
    mk_var *v = mk__node(g, op, x->t.ndim, x->t.ne, 1, in);
    if (!v)
        return NULL;
    v->in[1] = gamma;
    v->in[2] = beta;
    v->nin = 3;
    if (want(gamma) || want(beta))
        v->requires_grad = !g->no_grad;
    v->fp[0] = eps;
    float *mean = mk__scratch(g, (size_t)L.G * sizeof(float));
    float *invstd = mk__scratch(g, (size_t)L.G * sizeof(float));
    if (!mean || !invstd)
        return NULL;
    int batch_stats = op == MK_OP_INSTNORM || g->training || !rm || !rv;
    v->ip[0] = batch_stats;
    if (batch_stats && op == MK_OP_BATCHNORM) {
        /* per-sample sums added in global sample order (mk__fold_d): the statistics of the whole
         * batch, the same bits however it is split over processes */
        int update = g->training && g->update_stats && rm && rv;
        int64_t M = mk__global_n(g, x, n) * L.S;
        double *part = mk__tmp(g, (size_t)(L.R + 2) * L.G * sizeof(double));
        if (!part)
            return NULL;
        double *sum = part + L.R * L.G, *sq = sum + L.G;
        int nt = nthreads(g, L.G * L.R * L.S);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int64_t j = 0; j < L.G; j++)
            for (int64_t r = 0; r < L.R; r++)
                part[r * L.G + j] = red_sum(x->t.data + r * L.stride_r + j * L.S, L.S);
        memset(sum, 0, (size_t)(2 * L.G) * sizeof(double));
        mk__fold_d(g, x, part, L.R, (size_t)L.G, sum);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int64_t j = 0; j < L.G; j++) {
            float mf = (float)(sum[j] / (double)M);
            for (int64_t r = 0; r < L.R; r++)
                part[r * L.G + j] = red_sqdev(x->t.data + r * L.stride_r + j * L.S, L.S, mf);
        }
        mk__fold_d(g, x, part, L.R, (size_t)L.G, sq);
        for (int64_t j = 0; j < L.G; j++) {
            double m = sum[j] / (double)M;
            double dm = m - (double)(float)m; /* sum (x - mf)^2 = sum (x - m)^2 + M dm^2 */
            double var = sq[j] / (double)M - dm * dm;
            mean[j] = (float)m;
            invstd[j] = (float)(1.0 / sqrt(var + eps));
            if (update) {
                double unb = M > 1 ? var * (double)M / (double)(M - 1) : var;
                rm->value.data[j] = (1 - momentum) * rm->value.data[j] + momentum * (float)m;
                rv->value.data[j] = (1 - momentum) * rv->value.data[j] + momentum * (float)unb;
            }
        }
        mk__tmp_release(g);
    } else if (batch_stats) { /* instance norm: every group is one sample's */
#pragma omp parallel for num_threads(nthreads(g, L.G *L.R *L.S)) schedule(dynamic, 1)
        for (int64_t j = 0; j < L.G; j++) {
            double m, var;
            norm_stats(x->t.data, &L, j, &m, &var);
            mean[j] = (float)m;
            invstd[j] = (float)(1.0 / sqrt(var + eps));
        }
    } else {
        for (int64_t j = 0; j < L.G; j++) {
            mean[j] = rm->value.data[j];
            invstd[j] = (float)(1.0 / sqrt((double)rv->value.data[j] + eps));
        }
    }
    v->aux = mean;
    v->aux2 = invstd;
    norm_apply(g, x->t.data, v->t.data, &L, mean, invstd, gamma ? gamma->t.data : NULL,
               beta ? beta->t.data : NULL);
    return v;
}

static void norm_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *x = v->in[0], *gamma = v->in[1], *beta = v->in[2];
    int64_t n, c, sp[3];
    mk__dims(x, &n, &c, sp);
    int64_t S = sp[0] * sp[1] * sp[2];
    norm_layout L;
    if (v->op == MK_OP_BATCHNORM)
        L = (norm_layout){c, n, S, c * S, c};
    else
        L = (norm_layout){n * c, 1, S, 0, c};
    const float *mean = v->aux, *invstd = v->aux2;
    float *dx = want(x) ? mk__grad(g, x) : NULL;
    float *dg = want(gamma) ? mk__grad(g, gamma) : NULL;
    float *db = want(beta) ? mk__grad(g, beta) : NULL;
    if (g->oom)
        return;
    /* per-group sums of dy and dy*xhat; for instance norm several groups share a gamma entry, so
     * the affine gradients are reduced over groups serially afterwards (deterministic). */
    double *sdy = mk__tmp(g, (size_t)L.G * sizeof(double));
    double *sdyx = mk__tmp(g, (size_t)L.G * sizeof(double));
    if (!sdy || !sdyx)
        return;
    int64_t M = L.R * L.S;
    int batch_stats = v->ip[0];
    int bn = v->op == MK_OP_BATCHNORM;
    int nt = nthreads(g, L.G * M);
    if (bn) {
        /* per-sample sums of dy and dy*xhat, added in global sample order (mk__fold_d) */
        M = mk__global_n(g, x, n) * L.S;
        double *part = mk__tmp(g, (size_t)L.R * 2 * L.G * sizeof(double));
        double *both = mk__tmp(g, (size_t)2 * L.G * sizeof(double));
        if (!part || !both)
            return;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
        for (int64_t j = 0; j < L.G; j++)
            for (int64_t r = 0; r < L.R; r++) {
                double a = 0, b = 0;
                red_dy(v->grad + r * L.stride_r + j * L.S, x->t.data + r * L.stride_r + j * L.S,
                       L.S, mean[j], invstd[j], &a, &b);
                part[(r * L.G + j) * 2] = a;
                part[(r * L.G + j) * 2 + 1] = b;
            }
        memset(both, 0, (size_t)2 * L.G * sizeof(double));
        mk__fold_d(g, x, part, L.R, (size_t)(2 * L.G), both);
        for (int64_t j = 0; j < L.G; j++) {
            sdy[j] = both[2 * j];
            sdyx[j] = both[2 * j + 1];
        }
    }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t j = 0; j < L.G; j++) {
        float m = mean[j], is = invstd[j];
        if (!bn) {
            double a = 0, b = 0;
            red_dy(v->grad + j * L.S, x->t.data + j * L.S, L.S, m, is, &a, &b);
            sdy[j] = a;
            sdyx[j] = b;
        }
        if (!dx)
            continue;
        double a = sdy[j], b = sdyx[j];
        float gm = gamma ? gamma->t.data[j % L.C] : 1.0f;
        if (batch_stats) {
            /* dx = gamma*invstd/M * (M dy - sum dy - xhat sum(dy xhat)) */
            float k1 = gm * is;
            float ma = (float)(a / (double)M), mb = (float)(b / (double)M);
            for (int64_t r = 0; r < L.R; r++) {
                const float *xp = x->t.data + r * L.stride_r + j * L.S;
                const float *gp = v->grad + r * L.stride_r + j * L.S;
                float *dp = dx + r * L.stride_r + j * L.S;
                for (int64_t k = 0; k < L.S; k++) {
                    float xh = (xp[k] - m) * is;
                    dp[k] += k1 * (gp[k] - ma - xh * mb);
                }
            }
        } else {
            float k1 = gm * is;
            for (int64_t r = 0; r < L.R; r++) {
                const float *gp = v->grad + r * L.stride_r + j * L.S;
                float *dp = dx + r * L.stride_r + j * L.S;
                for (int64_t k = 0; k < L.S; k++)
                    dp[k] += k1 * gp[k];
            }
        }
    }
    if (bn) {
        for (int64_t j = 0; j < L.G; j++) {
            if (dg)
                dg[j] += (float)sdyx[j];
            if (db)
                db[j] += (float)sdy[j];
        }
        return;
    }
    /* instance norm: groups j = sample * C + channel share an affine entry per channel; the
     * samples' float sums are added in global sample order (mk__fold_f) */
    if (dg || db) {
        float *pf = mk__tmp(g, (size_t)(2 * L.G) * sizeof(float));
        float *both = mk__tmp(g, (size_t)(2 * L.C) * sizeof(float));
        if (!pf || !both)
            return;
        for (int64_t j = 0; j < L.G; j++) {
            int64_t i = j / L.C, ch = j % L.C;
            pf[(i * 2) * L.C + ch] = (float)sdyx[j];
            pf[(i * 2 + 1) * L.C + ch] = (float)sdy[j];
        }
        memset(both, 0, (size_t)(2 * L.C) * sizeof(float));
        if (dg)
            memcpy(both, dg, (size_t)L.C * sizeof(float));
        if (db)
            memcpy(both + L.C, db, (size_t)L.C * sizeof(float));
        mk__fold_f(g, x, pf, n, (size_t)(2 * L.C), both);
        if (dg)
            memcpy(dg, both, (size_t)L.C * sizeof(float));
        if (db)
            memcpy(db, both + L.C, (size_t)L.C * sizeof(float));
    }
}

mk_var *mk_nn_batchnorm(mk_nn_graph *g, mk_var *x, mk_var *gamma, mk_var *beta,
                        mk_param *running_mean, mk_param *running_var, float momentum, float eps)
{
    return norm_forward(g, MK_OP_BATCHNORM, x, gamma, beta, running_mean, running_var, momentum,
                        eps);
}

mk_var *mk_nn_instnorm(mk_nn_graph *g, mk_var *x, mk_var *gamma, mk_var *beta, float eps)
{
    return norm_forward(g, MK_OP_INSTNORM, x, gamma, beta, NULL, NULL, 0, eps);
}

/* ---------------------------------------------------------------- elementwise */

static mk_var *unary(mk_nn_graph *g, mk_op op, mk_var *x)
{
    if (!x)
        return NULL;
    return mk__node(g, op, x->t.ndim, x->t.ne, 1, &x);
}

mk_var *mk_nn_relu(mk_nn_graph *g, mk_var *x)
{
    mk_var *v = unary(g, MK_OP_RELU, x);
    if (!v)
        return NULL;
    int64_t n = mk__numel(v);
    const float *a = x->t.data;
    float *y = v->t.data;
#pragma omp parallel for num_threads(nthreads(g, n)) schedule(dynamic, 16384)
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] > 0 ? a[i] : 0.0f;
    return v;
}

mk_var *mk_nn_relu_inplace(mk_nn_graph *g, mk_var *x)
{
    if (!x)
        return NULL;
    if (g->kink_tol > 0) /* the kink policy reads the input, so keep it */
        return mk_nn_relu(g, x);
    mk_var *v = mk__node_alias(g, MK_OP_RELU, x, x->t.data);
    if (!v)
        return NULL;
    int64_t n = mk__numel(v);
    float *y = v->t.data;
#pragma omp parallel for num_threads(nthreads(g, n)) schedule(dynamic, 16384)
    for (int64_t i = 0; i < n; i++)
        y[i] = y[i] > 0 ? y[i] : 0.0f;
    return v;
}

static void relu_backward(mk_nn_graph *g, mk_var *v)
{
    float *dx = mk__grad(g, v->in[0]);
    if (!dx)
        return;
    int64_t n = mk__numel(v);
    const float *y = v->t.data, *gy = v->grad;
    if (g->kink_tol > 0) {
        const float *x = v->in[0]->t.data;
        for (int64_t i = 0; i < n; i++) {
            if (fabsf(x[i]) <= g->kink_tol) {
                int bit = g->kinks < 63 ? (int)g->kinks : 63;
                g->kinks++;
                if ((g->kink_side >> bit) & 1)
                    dx[i] += gy[i];
            } else if (x[i] > 0) {
                dx[i] += gy[i];
            }
        }
        return;
    }
#pragma omp parallel for num_threads(nthreads(g, n)) schedule(dynamic, 16384)
    for (int64_t i = 0; i < n; i++)
        if (y[i] > 0)
            dx[i] += gy[i];
}

mk_var *mk_nn_leaky_relu(mk_nn_graph *g, mk_var *x, float slope)
{
    mk_var *v = unary(g, MK_OP_LEAKY_RELU, x);
    if (!v)
        return NULL;
    v->fp[0] = slope;
    int64_t n = mk__numel(v);
    for (int64_t i = 0; i < n; i++)
        v->t.data[i] = x->t.data[i] > 0 ? x->t.data[i] : slope * x->t.data[i];
    return v;
}

static void leaky_backward(mk_nn_graph *g, mk_var *v)
{
    float *dx = mk__grad(g, v->in[0]);
    if (!dx)
        return;
    int64_t n = mk__numel(v);
    for (int64_t i = 0; i < n; i++)
        dx[i] += v->in[0]->t.data[i] > 0 ? v->grad[i] : v->fp[0] * v->grad[i];
}

mk_var *mk_nn_tanh(mk_nn_graph *g, mk_var *x)
{
    mk_var *v = unary(g, MK_OP_TANH, x);
    if (!v)
        return NULL;
    int64_t n = mk__numel(v);
    for (int64_t i = 0; i < n; i++)
        v->t.data[i] = tanhf(x->t.data[i]);
    return v;
}

static void tanh_backward(mk_nn_graph *g, mk_var *v)
{
    float *dx = mk__grad(g, v->in[0]);
    if (!dx)
        return;
    int64_t n = mk__numel(v);
    for (int64_t i = 0; i < n; i++)
        dx[i] += v->grad[i] * (1.0f - v->t.data[i] * v->t.data[i]);
}

mk_var *mk_nn_sigmoid(mk_nn_graph *g, mk_var *x)
{
    mk_var *v = unary(g, MK_OP_SIGMOID, x);
    if (!v)
        return NULL;
    int64_t n = mk__numel(v);
    for (int64_t i = 0; i < n; i++) {
        float a = x->t.data[i];
        /* split by sign so exp never overflows */
        v->t.data[i] = a >= 0 ? 1.0f / (1.0f + expf(-a)) : expf(a) / (1.0f + expf(a));
    }
    return v;
}

static void sigmoid_backward(mk_nn_graph *g, mk_var *v)
{
    float *dx = mk__grad(g, v->in[0]);
    if (!dx)
        return;
    int64_t n = mk__numel(v);
    for (int64_t i = 0; i < n; i++)
        dx[i] += v->grad[i] * v->t.data[i] * (1.0f - v->t.data[i]);
}

mk_var *mk_nn_concat(mk_nn_graph *g, mk_var *a, mk_var *b)
{
    if (!a || !b)
        return NULL;
    MK_ASSERT(a->t.ndim == b->t.ndim && a->t.ne[0] == b->t.ne[0]);
    for (int i = 2; i < a->t.ndim; i++)
        MK_ASSERT(a->t.ne[i] == b->t.ne[i]);
    int64_t ne[5];
    for (int i = 0; i < a->t.ndim; i++)
        ne[i] = a->t.ne[i];
    ne[1] = a->t.ne[1] + b->t.ne[1];
    mk_var *in[2] = {a, b};
    mk_var *v = mk__node(g, MK_OP_CONCAT, a->t.ndim, ne, 2, in);
    if (!v)
        return NULL;
    int64_t n = ne[0];
    int64_t la = mk__numel(a) / n, lb = mk__numel(b) / n;
    for (int64_t i = 0; i < n; i++) {
        memcpy(v->t.data + i * (la + lb), a->t.data + i * la, (size_t)la * sizeof(float));
        memcpy(v->t.data + i * (la + lb) + la, b->t.data + i * lb, (size_t)lb * sizeof(float));
    }
    return v;
}

static void concat_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *a = v->in[0], *b = v->in[1];
    int64_t n = v->t.ne[0];
    int64_t la = mk__numel(a) / n, lb = mk__numel(b) / n;
    float *da = want(a) ? mk__grad(g, a) : NULL;
    float *db = want(b) ? mk__grad(g, b) : NULL;
    if (g->oom)
        return;
#pragma omp parallel for num_threads(nthreads(g, n *(la + lb))) schedule(dynamic, 1)
    for (int64_t i = 0; i < n; i++) {
        const float *gy = v->grad + i * (la + lb);
        if (da)
            for (int64_t k = 0; k < la; k++)
                da[i * la + k] += gy[k];
        if (db)
            for (int64_t k = 0; k < lb; k++)
                db[i * lb + k] += gy[la + k];
    }
}

mk_var *mk_nn_add(mk_nn_graph *g, mk_var *a, mk_var *b)
{
    if (!a || !b)
        return NULL;
    int scalar_b = mk__numel(b) == 1 && mk__numel(a) != 1;
    MK_ASSERT(scalar_b || mk__numel(a) == mk__numel(b));
    mk_var *in[2] = {a, b};
    mk_var *v = mk__node(g, MK_OP_ADD, a->t.ndim, a->t.ne, 2, in);
    if (!v)
        return NULL;
    int64_t n = mk__numel(v);
    for (int64_t i = 0; i < n; i++)
        v->t.data[i] = a->t.data[i] + b->t.data[scalar_b ? 0 : i];
    return v;
}

static void add_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *a = v->in[0], *b = v->in[1];
    int64_t n = mk__numel(v);
    if (want(a)) {
        float *da = mk__grad(g, a);
        if (!da)
            return;
        for (int64_t i = 0; i < n; i++)
            da[i] += v->grad[i];
    }
    if (want(b)) {
        float *db = mk__grad(g, b);
        if (!db)
            return;
        if (mk__numel(b) == 1 && n != 1) {
            double s = 0;
            for (int64_t i = 0; i < n; i++)
                s += v->grad[i];
            db[0] += (float)s;
        } else {
            for (int64_t i = 0; i < n; i++)
                db[i] += v->grad[i];
        }
    }
}

mk_var *mk_nn_scale(mk_nn_graph *g, mk_var *x, float alpha)
{
    mk_var *v = unary(g, MK_OP_SCALE, x);
    if (!v)
        return NULL;
    v->fp[0] = alpha;
    int64_t n = mk__numel(v);
    for (int64_t i = 0; i < n; i++)
        v->t.data[i] = alpha * x->t.data[i];
    return v;
}

static void scale_backward(mk_nn_graph *g, mk_var *v)
{
    float *dx = mk__grad(g, v->in[0]);
    if (!dx)
        return;
    int64_t n = mk__numel(v);
    for (int64_t i = 0; i < n; i++)
        dx[i] += v->fp[0] * v->grad[i];
}

mk_var *mk_nn_grad_reverse(mk_nn_graph *g, mk_var *x, float lambda)
{
    mk_var *v = unary(g, MK_OP_GRAD_REVERSE, x);
    if (!v)
        return NULL;
    v->fp[0] = lambda;
    memcpy(v->t.data, x->t.data, (size_t)mk__numel(v) * sizeof(float));
    return v;
}

void mk_nn_grad_reverse_set(mk_var *v, float lambda)
{
    MK_ASSERT(v && v->op == MK_OP_GRAD_REVERSE);
    v->fp[0] = lambda;
}

static void grad_reverse_backward(mk_nn_graph *g, mk_var *v)
{
    float *dx = mk__grad(g, v->in[0]);
    if (!dx)
        return;
    int64_t n = mk__numel(v);
    for (int64_t i = 0; i < n; i++)
        dx[i] -= v->fp[0] * v->grad[i];
}

mk_var *mk_nn_dropout(mk_nn_graph *g, mk_var *x, float p)
{
    MK_ASSERT(p >= 0 && p < 1);
    mk_var *v = unary(g, MK_OP_DROPOUT, x);
    if (!v)
        return NULL;
    int64_t n = mk__numel(v);
    v->fp[0] = p;
    v->ip[0] = g->training && p > 0;
    if (!v->ip[0]) {
        memcpy(v->t.data, x->t.data, (size_t)n * sizeof(float));
        return v;
    }
    unsigned char *mask = mk__scratch(g, (size_t)n);
    if (!mask)
        return NULL;
    v->aux = mask;
    float keep = 1.0f / (1.0f - p);
    /* serial draw: the mask depends only on the seed and the order of dropout calls. A share of
     * a split batch draws the whole batch's mask (the other ranks' samples' draws discarded), so
     * every rank's generator stays the same and its rows get one process's mask */
    int64_t before = 0, after = 0;
    if (g->have_share && x->t.batch_of) {
        int64_t off, m, per = x->t.ne[0] > 0 ? n / x->t.ne[0] : 0;
        mk_nn_share_range(x->t.batch_of, g->share.ranks, g->share.rank, &off, &m);
        before = off * per;
        after = (x->t.batch_of - off - m) * per;
    }
    for (int64_t i = 0; i < before; i++)
        (void)mk_rng_uniform(&g->rng);
    for (int64_t i = 0; i < n; i++) {
        mask[i] = mk_rng_uniform(&g->rng) >= p;
        v->t.data[i] = mask[i] ? x->t.data[i] * keep : 0.0f;
    }
    for (int64_t i = 0; i < after; i++)
        (void)mk_rng_uniform(&g->rng);
    return v;
}

static void dropout_backward(mk_nn_graph *g, mk_var *v)
{
    float *dx = mk__grad(g, v->in[0]);
    if (!dx)
        return;
    int64_t n = mk__numel(v);
    if (!v->ip[0]) {
        for (int64_t i = 0; i < n; i++)
            dx[i] += v->grad[i];
        return;
    }
    const unsigned char *mask = v->aux;
    float keep = 1.0f / (1.0f - v->fp[0]);
    for (int64_t i = 0; i < n; i++)
        if (mask[i])
            dx[i] += v->grad[i] * keep;
}

mk_var *mk_nn_softmax(mk_nn_graph *g, mk_var *x)
{
    mk_var *v = unary(g, MK_OP_SOFTMAX, x);
    if (!v)
        return NULL;
    int64_t n, c, sp[3];
    mk__dims(x, &n, &c, sp);
    int64_t S = sp[0] * sp[1] * sp[2];
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < S; s++) {
            const float *a = x->t.data + i * c * S + s;
            float *y = v->t.data + i * c * S + s;
            float mx = a[0];
            for (int64_t k = 1; k < c; k++)
                mx = a[k * S] > mx ? a[k * S] : mx;
            double z = 0;
            for (int64_t k = 0; k < c; k++) {
                y[k * S] = expf(a[k * S] - mx);
                z += y[k * S];
            }
            float iz = (float)(1.0 / z);
            for (int64_t k = 0; k < c; k++)
                y[k * S] *= iz;
        }
    return v;
}

static void softmax_backward(mk_nn_graph *g, mk_var *v)
{
    float *dx = mk__grad(g, v->in[0]);
    if (!dx)
        return;
    int64_t n, c, sp[3];
    mk__dims(v, &n, &c, sp);
    int64_t S = sp[0] * sp[1] * sp[2];
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < S; s++) {
            int64_t o = i * c * S + s;
            double dot = 0;
            for (int64_t k = 0; k < c; k++)
                dot += (double)v->grad[o + k * S] * v->t.data[o + k * S];
            for (int64_t k = 0; k < c; k++)
                dx[o + k * S] += v->t.data[o + k * S] * (v->grad[o + k * S] - (float)dot);
        }
}

mk_var *mk_nn_sum(mk_nn_graph *g, mk_var *x)
{
    if (!x)
        return NULL;
    int64_t one = 1;
    mk_var *v = mk__node(g, MK_OP_SUM, 1, &one, 1, &x);
    if (!v)
        return NULL;
    mk__whole_batch_only(g, x, "sum");
    double s = 0;
    int64_t n = mk__numel(x);
    for (int64_t i = 0; i < n; i++)
        s += x->t.data[i];
    v->t.data[0] = (float)s;
    return v;
}

static void sum_backward(mk_nn_graph *g, mk_var *v)
{
    float *dx = mk__grad(g, v->in[0]);
    if (!dx)
        return;
    int64_t n = mk__numel(v->in[0]);
    for (int64_t i = 0; i < n; i++)
        dx[i] += v->grad[0];
}

/* ---------------------------------------------------------------- op table */

static const struct mk_op_info MK_OPS[] = {
    [MK_OP_LEAF] = {"leaf", 0, NULL},
    [MK_OP_CONV] = {"conv", 3, conv_backward},
    [MK_OP_CONVT] = {"conv_transpose", 3, convt_backward},
    [MK_OP_MAXPOOL] = {"maxpool", 1, maxpool_backward},
    [MK_OP_AVGPOOL] = {"avgpool", 1, avgpool_backward},
    [MK_OP_UPSAMPLE_NEAREST] = {"upsample_nearest", 1, up_nearest_backward},
    [MK_OP_UPSAMPLE_LINEAR] = {"upsample_linear", 1, up_linear_backward},
    [MK_OP_BATCHNORM] = {"batchnorm", 3, norm_backward},
    [MK_OP_INSTNORM] = {"instnorm", 3, norm_backward},
    [MK_OP_RELU] = {"relu", 1, relu_backward},
    [MK_OP_LEAKY_RELU] = {"leaky_relu", 1, leaky_backward},
    [MK_OP_TANH] = {"tanh", 1, tanh_backward},
    [MK_OP_SIGMOID] = {"sigmoid", 1, sigmoid_backward},
    [MK_OP_CONCAT] = {"concat", 2, concat_backward},
    [MK_OP_ADD] = {"add", 2, add_backward},
    [MK_OP_SCALE] = {"scale", 1, scale_backward},
    [MK_OP_DROPOUT] = {"dropout", 1, dropout_backward},
    [MK_OP_SOFTMAX] = {"softmax", 1, softmax_backward},
    [MK_OP_CROSS_ENTROPY] = {"cross_entropy", 1, mk__ce_backward},
    [MK_OP_DICE] = {"dice", 1, mk__dice_backward},
    [MK_OP_MSE] = {"mse", 2, mk__mse_backward},
    [MK_OP_L1] = {"l1", 2, mk__l1_backward},
    [MK_OP_KL_DIV] = {"kl_div", 3, mk__kl_backward},
    [MK_OP_ADV_LS] = {"adv_ls", 1, mk__adv_ls_backward},
    [MK_OP_ADV_BCE] = {"adv_bce", 1, mk__adv_bce_backward},
    [MK_OP_GRAD_REVERSE] = {"grad_reverse", 1, grad_reverse_backward},
    [MK_OP_SUM] = {"sum", 1, sum_backward},
    [MK_OP_SOFTMAX_MSE] = {"softmax_mse", 2, mk__softmax_mse_backward},
    [MK_OP_ENTROPY] = {"entropy", 1, mk__entropy_backward},
    [MK_OP_MEL] = {"mean_entropy_loss", 2, mk__mel_backward},
    [MK_OP_DICE_EX] = {"dice_ex", 1, mk__dice_ex_backward},
};
_Static_assert(sizeof MK_OPS / sizeof MK_OPS[0] == MK_OP_COUNT, "op table out of step with mk_op");

const struct mk_op_info *mk__op_info(mk_op op)
{
    MK_ASSERT(op >= 0 && op < MK_OP_COUNT && MK_OPS[op].name);
    return &MK_OPS[op];
}

const char *mk_op_name(mk_op op)
{
    return op >= 0 && op < MK_OP_COUNT && MK_OPS[op].name ? MK_OPS[op].name : "?";
}
