/* Losses: scalar nodes with their backward passes (sums in double). */
#include <math.h>
#include <string.h>

#include "mk_nn_impl.h"

static mk_var *scalar_node(mk_nn_graph *g, mk_op op, int nin, mk_var *const *in)
{
    int64_t one = 1;
    return mk__node(g, op, 1, &one, nin, in);
}

static int32_t *copy_labels(mk_nn_graph *g, const int32_t *labels, int64_t n)
{
    int32_t *l = mk__scratch(g, (size_t)n * sizeof(int32_t));
    if (l)
        memcpy(l, labels, (size_t)n * sizeof(int32_t));
    return l;
}

/* log-sum-exp over channel k at stride S, scaled inputs x/T */
static double lse(const float *x, int64_t c, int64_t S, double invT)
{
    double mx = x[0] * invT;
    for (int64_t k = 1; k < c; k++)
        if (x[k * S] * invT > mx)
            mx = x[k * S] * invT;
    double z = 0;
    for (int64_t k = 0; k < c; k++)
        z += exp(x[k * S] * invT - mx);
    return mx + log(z);
}

double mk__exp_terms(const float *x, int64_t c, int64_t S, double *e, double *sum)
{
    double mx = x[0];
    for (int64_t k = 1; k < c; k++)
        if (x[k * S] > mx)
            mx = x[k * S];
    double z = 0;
    for (int64_t k = 0; k < c; k++)
        z += e[k] = exp(x[k * S] - mx);
    *sum = z;
    return mx;
}

/* Softmax over channel k at stride S: p[k] (c <= 64), one exp per channel (the log-sum-exp's
 * terms divided by their sum). */
static void softmax_at(const float *x, int64_t c, int64_t S, double *p)
{
    double z;
    mk__exp_terms(x, c, S, p, &z);
    double iz = 1.0 / z;
    for (int64_t k = 0; k < c; k++)
        p[k] *= iz;
}

/* Position blocks for the parallel loss loops: positions p = i * S + s are split into NB fixed
 * blocks whose partial sums are added in block order, so a loss does not depend on the thread
 * count. */
#define NB 256

static int64_t blk_lo(int64_t P, int nb, int b)
{
    return P * b / nb;
}

static int loss_threads(const mk_nn_graph *g, int64_t work)
{
    return work < 262144 ? 1 : mk_nn_graph_threads(g);
}

/* Samples of a loss input: dim 0 of a batch (ndim >= 2), else the whole tensor is one. The
 * per-sample sums are added in sample order (mk__fold_d), the same however a batch is split. */
static int64_t sample_count(const mk_var *v)
{
    return v->t.ndim >= 2 && v->t.ne[0] > 0 ? v->t.ne[0] : 1;
}

/* The mean over the whole batch from per-sample sums ps[0..ns) of `per` elements each (x: the
 * batch input): the sums added in global sample order (mk__fold_d), divided by the whole batch's
 * element count, which v keeps for its backward pass (aux). Releases the op's temporaries. */
static mk_var *mean_node(mk_nn_graph *g, mk_var *v, const mk_var *x, const double *ps, int64_t ns,
                         int64_t per)
{
    double tot = 0;
    mk__fold_d(g, x, ps, ns, 1, &tot);
    mk__tmp_release(g);
    double *cnt = mk__scratch(g, sizeof(double)); /* elements of the whole batch */
    if (!cnt)
        return NULL;
    *cnt = (double)(mk__global_n(g, x, ns) * per);
    v->aux = cnt;
    v->t.data[0] = (float)(tot / *cnt);
    return v;
}

/* ---------------------------------------------------------------- cross-entropy */

mk_var *mk_nn_cross_entropy(mk_nn_graph *g, mk_var *logits, const int32_t *labels,
                            const float *weight, int ignore_index)
{
    if (!logits)
        return NULL;
    mk_var *v = scalar_node(g, MK_OP_CROSS_ENTROPY, 1, &logits);
    if (!v)
        return NULL;
    int64_t n, c, sp[3];
    mk__dims(logits, &n, &c, sp);
    int64_t S = sp[0] * sp[1] * sp[2];
    int32_t *lab = copy_labels(g, labels, n * S);
    float *w = NULL;
    if (weight) {
        w = mk__scratch(g, (size_t)c * sizeof(float));
        if (w)
            memcpy(w, weight, (size_t)c * sizeof(float));
    }
    if (!lab || (weight && !w))
        return NULL;
    /* per sample: fixed position blocks (partials added in block order), then the samples' sums
     * added in global sample order (mk__fold_d): the loss of the whole batch, the same bits
     * however it is split over processes or threads */
    int nb = S < NB ? (int)S : NB;
    double *part = mk__tmp(g, (size_t)(3 * nb * n + 3 * n + 3) * sizeof(double));
    if (!part)
        return NULL;
    double *ps = part + 3 * nb * n, *tot3 = ps + 3 * n;
#pragma omp parallel for num_threads(loss_threads(g, n *S *c)) schedule(dynamic, 1)
    for (int64_t u = 0; u < n * nb; u++) {
        int64_t i = u / nb;
        int b = (int)(u % nb);
        double t = 0, ws = 0, bad = 0;
        for (int64_t s = blk_lo(S, nb, b); s < blk_lo(S, nb, b + 1); s++) {
            int32_t y = lab[i * S + s];
            if (y == ignore_index)
                continue;
            if (y < 0 || y >= c) {
                bad++;
                continue;
            }
            const float *z = logits->t.data + i * c * S + s;
            double wy = w ? w[y] : 1.0;
            t += wy * (lse(z, c, S, 1.0) - z[y * S]);
            ws += wy;
        }
        part[3 * u] = t;
        part[3 * u + 1] = ws;
        part[3 * u + 2] = bad;
    }
    memset(ps, 0, (size_t)(3 * n + 3) * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        for (int b = 0; b < nb; b++)
            for (int k = 0; k < 3; k++)
                ps[3 * i + k] += part[3 * (i * nb + b) + k];
    mk__fold_d(g, logits, ps, n, 3, tot3);
    double tot = tot3[0], wsum = tot3[1];
    g->bad_labels += (long long)tot3[2];
    mk__tmp_release(g);
    v->aux = lab;
    v->aux2 = w;
    v->ip[0] = ignore_index;
    v->fp[0] = (float)wsum;
    v->t.data[0] = wsum > 0 ? (float)(tot / wsum) : 0.0f;
    return v;
}

void mk__ce_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *x = v->in[0];
    if (v->fp[0] <= 0)
        return;
    float *dx = mk__grad(g, x);
    if (!dx)
        return;
    int64_t n, c, sp[3];
    mk__dims(x, &n, &c, sp);
    int64_t S = sp[0] * sp[1] * sp[2];
    const int32_t *lab = v->aux;
    const float *w = v->aux2;
    double scale = v->grad[0] / (double)v->fp[0];
    int64_t P = n * S;
#pragma omp parallel for num_threads(loss_threads(g, P *c)) schedule(dynamic, 4096)
    for (int64_t p = 0; p < P; p++) {
        int64_t i = p / S, s = p % S;
        int32_t y = lab[p];
        if (y == v->ip[0] || y < 0 || y >= c)
            continue;
        const float *z = x->t.data + i * c * S + s;
        float *d = dx + i * c * S + s;
        double f = scale * (w ? w[y] : 1.0);
        if (c <= 64) {
            double pr[64];
            softmax_at(z, c, S, pr);
            for (int64_t k = 0; k < c; k++)
                d[k * S] += (float)(f * (pr[k] - (k == y)));
        } else {
            double l = lse(z, c, S, 1.0);
            for (int64_t k = 0; k < c; k++)
                d[k * S] += (float)(f * (exp(z[k * S] - l) - (k == y)));
        }
    }
}

/* ---------------------------------------------------------------- soft Dice */

mk_var *mk_nn_dice_loss(mk_nn_graph *g, mk_var *logits, const int32_t *labels, float eps)
{
    if (!logits)
        return NULL;
    mk_var *v = scalar_node(g, MK_OP_DICE, 1, &logits);
    if (!v)
        return NULL;
    int64_t n, c, sp[3];
    mk__dims(logits, &n, &c, sp);
    int64_t S = sp[0] * sp[1] * sp[2];
    int32_t *lab = copy_labels(g, labels, n * S);
    double *acc = mk__scratch(g, (size_t)(3 * c) * sizeof(double)); /* I, P, G per class */
    if (!lab || !acc)
        return NULL;
    MK_ASSERT(c <= 64);
    memset(acc, 0, (size_t)(3 * c) * sizeof(double));
    double *I = acc, *P = acc + c, *G = acc + 2 * c;
    /* per sample: fixed position blocks, then the samples' sums added in global sample order
     * (mk__fold_d): the batch Dice of the whole batch however it is split */
    const int64_t W = 3 * c + 1;
    int nb = S < NB ? (int)S : NB;
    double *part = mk__tmp(g, (size_t)(nb * n + n + 1) * (size_t)W * sizeof(double));
    if (!part)
        return NULL;
    double *ps = part + (size_t)nb * n * W, *all = ps + (size_t)n * W;
#pragma omp parallel for num_threads(loss_threads(g, n *S *c)) schedule(dynamic, 1)
    for (int64_t u = 0; u < n * nb; u++) {
        int64_t i = u / nb;
        int b = (int)(u % nb);
        double *pb = part + (size_t)u * W;
        memset(pb, 0, (size_t)W * sizeof(double));
        for (int64_t s = blk_lo(S, nb, b); s < blk_lo(S, nb, b + 1); s++) {
            const float *z = logits->t.data + i * c * S + s;
            double prs[64];
            softmax_at(z, c, S, prs);
            int32_t y = lab[i * S + s];
            if (y < 0 || y >= c) {
                pb[3 * c] += 1;
                y = -1;
            }
            for (int64_t k = 0; k < c; k++) {
                double pr = prs[k];
                pb[c + k] += pr;
                if (k == y) {
                    pb[k] += pr;
                    pb[2 * c + k] += 1;
                }
            }
        }
    }
    memset(ps, 0, (size_t)(n + 1) * W * sizeof(double));
    for (int64_t i = 0; i < n; i++)
        for (int b = 0; b < nb; b++)
            for (int64_t k = 0; k < W; k++)
                ps[i * W + k] += part[(i * nb + b) * W + k];
    mk__fold_d(g, logits, ps, n, (size_t)W, all);
    memcpy(acc, all, (size_t)(3 * c) * sizeof(double));
    g->bad_labels += (long long)all[3 * c];
    mk__tmp_release(g);
    double m = 0;
    for (int64_t k = 0; k < c; k++)
        m += (2 * I[k] + eps) / (P[k] + G[k] + eps);
    v->aux = lab;
    v->aux2 = acc;
    v->fp[0] = eps;
    v->t.data[0] = (float)(1.0 - m / (double)c);
    return v;
}

void mk__dice_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *x = v->in[0];
    float *dx = mk__grad(g, x);
    if (!dx)
        return;
    int64_t n, c, sp[3];
    mk__dims(x, &n, &c, sp);
    int64_t S = sp[0] * sp[1] * sp[2];
    const int32_t *lab = v->aux;
    const double *I = v->aux2, *P = I + c, *G = I + 2 * c;
    double eps = v->fp[0];
    /* dL/dp_k = -(1/C) (2 g_k D_k - N_k) / D_k^2; split into a label term and a constant term */
    double *cg = mk__tmp(g, (size_t)(2 * c) * sizeof(double));
    if (!cg)
        return;
    double *c0 = cg, *c1 = cg + c;
    for (int64_t k = 0; k < c; k++) {
        double D = P[k] + G[k] + eps, N = 2 * I[k] + eps;
        c0[k] = v->grad[0] * (N / (D * D)) / (double)c; /* for every voxel */
        c1[k] = -v->grad[0] * (2.0 / D) / (double)c;    /* extra where g_k = 1 */
    }
    int64_t NP = n * S;
#pragma omp parallel for num_threads(loss_threads(g, NP *c)) schedule(dynamic, 4096)
    for (int64_t q = 0; q < NP; q++) {
        double dp[64], p[64];
        int64_t i = q / S, s = q % S;
        const float *z = x->t.data + i * c * S + s;
        float *d = dx + i * c * S + s;
        softmax_at(z, c, S, p);
        int32_t y = lab[q];
        double dot = 0;
        for (int64_t k = 0; k < c; k++) {
            dp[k] = c0[k] + (k == y ? c1[k] : 0.0);
            dot += p[k] * dp[k];
        }
        for (int64_t k = 0; k < c; k++)
            d[k * S] += (float)(p[k] * (dp[k] - dot));
    }
}

/* ---------------------------------------------------------------- MSE, L1 */

static mk_var *pair_loss(mk_nn_graph *g, mk_op op, mk_var *a, mk_var *b)
{
    if (!a || !b)
        return NULL;
    MK_ASSERT(mk__numel(a) == mk__numel(b));
    mk_var *in[2] = {a, b};
    mk_var *v = scalar_node(g, op, 2, in);
    if (!v)
        return NULL;
    int64_t n = mk__numel(a), ns = sample_count(a), per = n / ns;
    double *ps = mk__tmp(g, (size_t)(ns + 1) * sizeof(double));
    if (!ps)
        return NULL;
    for (int64_t i = 0; i < ns; i++) {
        double s = 0;
        for (int64_t k = i * per; k < (i + 1) * per; k++) {
            double d = (double)a->t.data[k] - b->t.data[k];
            s += op == MK_OP_MSE ? d * d : fabs(d);
        }
        ps[i] = s;
    }
    return mean_node(g, v, a, ps, ns, per);
}

mk_var *mk_nn_mse(mk_nn_graph *g, mk_var *a, mk_var *b)
{
    return pair_loss(g, MK_OP_MSE, a, b);
}

mk_var *mk_nn_l1(mk_nn_graph *g, mk_var *a, mk_var *b)
{
    return pair_loss(g, MK_OP_L1, a, b);
}

static void pair_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *a = v->in[0], *b = v->in[1];
    int64_t n = mk__numel(a);
    float *da = a->requires_grad ? mk__grad(g, a) : NULL;
    float *db = b->requires_grad ? mk__grad(g, b) : NULL;
    if (g->oom)
        return;
    float f = (float)(v->grad[0] / *(const double *)v->aux);
    for (int64_t i = 0; i < n; i++) {
        float d = a->t.data[i] - b->t.data[i];
        float gi = v->op == MK_OP_MSE ? 2.0f * d * f : (d > 0 ? f : d < 0 ? -f : 0.0f);
        if (da)
            da[i] += gi;
        if (db)
            db[i] -= gi;
    }
}

void mk__mse_backward(mk_nn_graph *g, mk_var *v)
{
    pair_backward(g, v);
}

void mk__l1_backward(mk_nn_graph *g, mk_var *v)
{
    pair_backward(g, v);
}

/* ---------------------------------------------------------------- KL with temperature */

mk_var *mk_nn_kl_div(mk_nn_graph *g, mk_var *student, mk_var *teacher, mk_var *temperature)
{
    if (!student || !teacher || !temperature)
        return NULL;
    int64_t n, c, sp[3];
    mk__dims(student, &n, &c, sp);
    int64_t nT = mk__numel(temperature);
    MK_ASSERT(mk_tensor_same_shape(&student->t, &teacher->t) && (nT == 1 || nT == n));
    mk_var *in[3] = {student, teacher, temperature};
    mk_var *v = scalar_node(g, MK_OP_KL_DIV, 3, in);
    if (!v)
        return NULL;
    int64_t S = sp[0] * sp[1] * sp[2];
    double *ps = mk__tmp(g, (size_t)(n + 1) * sizeof(double));
    if (!ps)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        /* one temperature for the batch, or one per sample (CTKD instance-wise) */
        double T = temperature->t.data[nT == 1 ? 0 : i], iT = 1.0 / T, ti = 0;
        for (int64_t s = 0; s < S; s++) {
            const float *zs = student->t.data + i * c * S + s;
            const float *zt = teacher->t.data + i * c * S + s;
            double ls = lse(zs, c, S, iT), lt = lse(zt, c, S, iT);
            for (int64_t k = 0; k < c; k++) {
                double lpt = zt[k * S] * iT - lt, lps = zs[k * S] * iT - ls;
                ti += exp(lpt) * (lpt - lps);
            }
        }
        ps[i] = T * T * ti;
    }
    /* the samples' terms added in global sample order (mk__fold_d) */
    double *tot = ps + n;
    *tot = 0;
    mk__fold_d(g, student, ps, n, 1, tot);
    v->t.data[0] = (float)(*tot / (double)(mk__global_n(g, student, n) * S));
    mk__tmp_release(g);
    return v;
}

void mk__kl_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *st = v->in[0], *te = v->in[1], *tv = v->in[2];
    float *ds = st->requires_grad ? mk__grad(g, st) : NULL;
    float *dt = te->requires_grad ? mk__grad(g, te) : NULL;
    float *dT = tv->requires_grad ? mk__grad(g, tv) : NULL;
    if (g->oom)
        return;
    int64_t n, c, sp[3];
    mk__dims(st, &n, &c, sp);
    int64_t S = sp[0] * sp[1] * sp[2], nT = mk__numel(tv);
    /* one temperature for the batch, or one per sample; a share of a split batch with one
     * sample here is per sample (its batch mark says so) */
    const int shared = nT == 1 && !tv->t.batch_of;
    double M = (double)(mk__global_n(g, st, n) * S), up = v->grad[0];
    double lps[64], lpt[64];
    MK_ASSERT(c <= 64);
    /* the shared temperature's gradient: the samples' terms added in global sample order */
    double *gTs = mk__tmp(g, (size_t)(n + 1) * sizeof(double));
    if (!gTs)
        return;
    for (int64_t i = 0; i < n; i++) {
        double T = tv->t.data[shared ? 0 : i], iT = 1.0 / T;
        double ksum = 0, cross = 0; /* sum K_pos, sum_c((p_s-p_t) s + p_t (lpt-lps-K) t) */
        for (int64_t s = 0; s < S; s++) {
            int64_t o = i * c * S + s;
            const float *zs = st->t.data + o, *zt = te->t.data + o;
            double ls = lse(zs, c, S, iT), lt = lse(zt, c, S, iT);
            double K = 0;
            for (int64_t k = 0; k < c; k++) {
                lps[k] = zs[k * S] * iT - ls;
                lpt[k] = zt[k * S] * iT - lt;
                K += exp(lpt[k]) * (lpt[k] - lps[k]);
            }
            ksum += K;
            for (int64_t k = 0; k < c; k++) {
                double ps = exp(lps[k]), pt = exp(lpt[k]);
                double gs = ps - pt, gt = pt * (lpt[k] - lps[k] - K);
                if (ds)
                    ds[o + k * S] += (float)(up * T / M * gs);
                if (dt)
                    dt[o + k * S] += (float)(up * T / M * gt);
                cross += gs * zs[k * S] + gt * zt[k * S];
            }
        }
        double gi = up * (2.0 * T * ksum / M - cross / M);
        gTs[i] = gi;
        if (dT && !shared)
            dT[i] += (float)gi;
    }
    if (dT && shared) {
        gTs[n] = 0;
        mk__fold_d(g, st, gTs, n, 1, gTs + n);
        dT[0] += (float)gTs[n];
    }
}

/* ---------------------------------------------------------------- adversarial */

static mk_var *adv_loss(mk_nn_graph *g, mk_op op, mk_var *d, float target)
{
    if (!d)
        return NULL;
    mk_var *v = scalar_node(g, op, 1, &d);
    if (!v)
        return NULL;
    v->fp[0] = target;
    int64_t n = mk__numel(d), ns = sample_count(d), per = n / ns;
    double *ps = mk__tmp(g, (size_t)(ns + 1) * sizeof(double));
    if (!ps)
        return NULL;
    for (int64_t i = 0; i < ns; i++) {
        double s = 0;
        for (int64_t k = i * per; k < (i + 1) * per; k++) {
            double x = d->t.data[k];
            if (op == MK_OP_ADV_LS)
                s += (x - target) * (x - target);
            else
                s += (x > 0 ? x : 0) + log1p(exp(-fabs(x))) - target * x;
        }
        ps[i] = s;
    }
    return mean_node(g, v, d, ps, ns, per);
}

mk_var *mk_nn_adv_ls(mk_nn_graph *g, mk_var *d, float target)
{
    return adv_loss(g, MK_OP_ADV_LS, d, target);
}

mk_var *mk_nn_adv_bce(mk_nn_graph *g, mk_var *d, float target)
{
    return adv_loss(g, MK_OP_ADV_BCE, d, target);
}

static void adv_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *d = v->in[0];
    float *dd = mk__grad(g, d);
    if (!dd)
        return;
    int64_t n = mk__numel(d);
    double f = v->grad[0] / *(const double *)v->aux, t = v->fp[0];
    for (int64_t i = 0; i < n; i++) {
        double x = d->t.data[i];
        double sg = x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
        dd[i] += (float)(f * (v->op == MK_OP_ADV_LS ? 2.0 * (x - t) : sg - t));
    }
}

void mk__adv_ls_backward(mk_nn_graph *g, mk_var *v)
{
    adv_backward(g, v);
}

void mk__adv_bce_backward(mk_nn_graph *g, mk_var *v)
{
    adv_backward(g, v);
}
