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
    return work < 32768 ? 1 : mk_nn_graph_threads(g);
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
    int64_t P = n * S;
    int nb = P < NB ? (int)P : NB;
    double *part = mk__tmp(g, (size_t)(3 * NB) * sizeof(double));
    if (!part)
        return NULL;
#pragma omp parallel for num_threads(loss_threads(g, P *c)) schedule(static)
    for (int b = 0; b < nb; b++) {
        double t = 0, ws = 0, bad = 0;
        for (int64_t p = blk_lo(P, nb, b); p < blk_lo(P, nb, b + 1); p++) {
            int64_t i = p / S, s = p % S;
            int32_t y = lab[p];
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
        part[3 * b] = t;
        part[3 * b + 1] = ws;
        part[3 * b + 2] = bad;
    }
    double tot = 0, wsum = 0;
    for (int b = 0; b < nb; b++) {
        tot += part[3 * b];
        wsum += part[3 * b + 1];
        g->bad_labels += (long long)part[3 * b + 2];
    }
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
#pragma omp parallel for num_threads(loss_threads(g, P *c)) schedule(static)
    for (int64_t p = 0; p < P; p++) {
        int64_t i = p / S, s = p % S;
        int32_t y = lab[p];
        if (y == v->ip[0] || y < 0 || y >= c)
            continue;
        const float *z = x->t.data + i * c * S + s;
        float *d = dx + i * c * S + s;
        double l = lse(z, c, S, 1.0);
        double f = scale * (w ? w[y] : 1.0);
        for (int64_t k = 0; k < c; k++)
            d[k * S] += (float)(f * (exp(z[k * S] - l) - (k == y)));
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
    int64_t NP = n * S;
    int nb = NP < NB ? (int)NP : NB;
    double *part = mk__tmp(g, (size_t)nb * (size_t)(3 * c + 1) * sizeof(double));
    if (!part)
        return NULL;
#pragma omp parallel for num_threads(loss_threads(g, NP *c)) schedule(static)
    for (int b = 0; b < nb; b++) {
        double *pb = part + (size_t)b * (size_t)(3 * c + 1);
        memset(pb, 0, (size_t)(3 * c + 1) * sizeof(double));
        for (int64_t p = blk_lo(NP, nb, b); p < blk_lo(NP, nb, b + 1); p++) {
            int64_t i = p / S, s = p % S;
            const float *z = logits->t.data + i * c * S + s;
            double l = lse(z, c, S, 1.0);
            int32_t y = lab[p];
            if (y < 0 || y >= c) {
                pb[3 * c] += 1;
                y = -1;
            }
            for (int64_t k = 0; k < c; k++) {
                double pr = exp(z[k * S] - l);
                pb[c + k] += pr;
                if (k == y) {
                    pb[k] += pr;
                    pb[2 * c + k] += 1;
                }
            }
        }
    }
    for (int b = 0; b < nb; b++) {
        const double *pb = part + (size_t)b * (size_t)(3 * c + 1);
        for (int64_t k = 0; k < 3 * c; k++)
            acc[k] += pb[k];
        g->bad_labels += (long long)pb[3 * c];
    }
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
#pragma omp parallel for num_threads(loss_threads(g, NP *c)) schedule(static)
    for (int64_t q = 0; q < NP; q++) {
        double dp[64], p[64];
        int64_t i = q / S, s = q % S;
        const float *z = x->t.data + i * c * S + s;
        float *d = dx + i * c * S + s;
        double l = lse(z, c, S, 1.0);
        int32_t y = lab[q];
        double dot = 0;
        for (int64_t k = 0; k < c; k++) {
            p[k] = exp(z[k * S] - l);
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
    int64_t n = mk__numel(a);
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a->t.data[i] - b->t.data[i];
        s += op == MK_OP_MSE ? d * d : fabs(d);
    }
    v->t.data[0] = (float)(s / (double)n);
    return v;
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
    float f = v->grad[0] / (float)n;
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
    double tot = 0;
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
        tot += T * T * ti;
    }
    v->t.data[0] = (float)(tot / (double)(n * S));
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
    double M = (double)(n * S), up = v->grad[0];
    double lps[64], lpt[64];
    MK_ASSERT(c <= 64);
    double gT = 0; /* the shared temperature's gradient, summed over the samples */
    for (int64_t i = 0; i < n; i++) {
        double T = tv->t.data[nT == 1 ? 0 : i], iT = 1.0 / T;
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
        if (dT && nT == 1)
            gT += gi;
        else if (dT)
            dT[i] += (float)gi;
    }
    if (dT && nT == 1)
        dT[0] += (float)gT;
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
    int64_t n = mk__numel(d);
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = d->t.data[i];
        if (op == MK_OP_ADV_LS)
            s += (x - target) * (x - target);
        else
            s += (x > 0 ? x : 0) + log1p(exp(-fabs(x))) - target * x;
    }
    v->t.data[0] = (float)(s / (double)n);
    return v;
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
    double f = v->grad[0] / (double)n, t = v->fp[0];
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
