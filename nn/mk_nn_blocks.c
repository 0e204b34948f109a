/* Shared building blocks (mk_nn_blocks.h): EMA updates, schedules, and the consistency / entropy /
 * Dice losses with their backward passes. The losses recompute the softmax from the logits in
 * backward (nothing but the labels and a few class sums is saved) and use serial loops with double
 * sums, so their values depend on nothing but the inputs. */
#include <math.h>
#include <string.h>

#include "mk_nn_blocks.h"
#include "mk_nn_impl.h"

#define MK_BLK_PI 3.14159265358979323846
#define MK_BLK_CMAX 64 /* classes per position held on the stack */

/* ---------------------------------------------------------------- EMA teacher */

double mk_nn_ema_alpha(double decay, long long step)
{
    if (step <= 0)
        return 0.0;
    double a = 1.0 - 1.0 / ((double)step + 1.0);
    return a < decay ? a : decay;
}

mk_status mk_nn_params_ema_alpha(mk_ctx *ctx, mk_nn_params *teacher, const mk_nn_params *student,
                                 double alpha, mk_nn_ema_buffers buffers)
{
    /* the store API has no const accessor; the student is only read */
    mk_nn_params *src = (mk_nn_params *)student;
    float a = (float)alpha, b = 1.0f - a;
    for (int i = 0; i < mk_nn_params_count(src); i++) {
        const mk_param *sp = mk_nn_params_at(src, i);
        mk_param *tp = mk_nn_params_find(teacher, sp->name);
        if (!tp)
            return mk_err(ctx, MK_ERR_NOT_FOUND, "ema: %s missing in the teacher", sp->name);
        if (!mk_tensor_same_shape(&tp->value, &sp->value) || tp->is_buffer != sp->is_buffer)
            return mk_err(ctx, MK_ERR_INVALID, "ema: %s: shape or kind differs", sp->name);
        if (sp->is_buffer && buffers == MK_NN_EMA_KEEP_BUFFERS)
            continue;
        if (a == 0.0f || (sp->is_buffer && buffers == MK_NN_EMA_COPY_BUFFERS)) {
            mk_tensor_copy(&tp->value, &sp->value);
            continue;
        }
        const float *s = sp->value.data;
        float *t = tp->value.data;
        int64_t n = mk_tensor_numel(&tp->value);
        for (int64_t k = 0; k < n; k++)
            t[k] = a * t[k] + b * s[k];
    }
    return MK_OK;
}

mk_status mk_nn_params_ema_step(mk_ctx *ctx, mk_nn_params *teacher, const mk_nn_params *student,
                                double decay, long long step, mk_nn_ema_buffers buffers)
{
    return mk_nn_params_ema_alpha(ctx, teacher, student, mk_nn_ema_alpha(decay, step), buffers);
}

/* ---------------------------------------------------------------- ramps */

static double clip(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

double mk_nn_sigmoid_rampup(double current, double length)
{
    if (length <= 0)
        return 1.0;
    double phase = 1.0 - clip(current, 0.0, length) / length;
    return exp(-5.0 * phase * phase);
}

double mk_nn_linear_rampup(double current, double length)
{
    if (length <= 0 || current >= length)
        return 1.0;
    return (current > 0 ? current : 0.0) / length;
}

double mk_nn_cosine_rampdown(double current, double length)
{
    if (length <= 0)
        return 1.0;
    return 0.5 * (cos(MK_BLK_PI * clip(current, 0.0, length) / length) + 1.0);
}

double mk_nn_ctkd_cosine_decay(double epoch, double max_value, double min_value, double loops)
{
    if (loops <= 0)
        return min_value;
    double i = clip(epoch, 0.0, loops);
    double v = (cos(i * MK_BLK_PI / loops) + 1.0) * 0.5;
    return v * (max_value - min_value) + min_value;
}

/* ---------------------------------------------------------------- CTKD temperature, LSGAN, KD */

mk_var *mk_nn_ctkd_temperature(mk_nn_graph *g, mk_var *theta, float grad_factor, float t_start,
                               float t_end)
{
    if (!theta)
        return NULL;
    MK_ASSERT(mk__numel(theta) == 1);
    /* mk_nn_grad_reverse multiplies by -lambda: lambda = -grad_factor gives grad_factor * grad */
    mk_var *s = mk_nn_sigmoid(g, mk_nn_grad_reverse(g, theta, -grad_factor));
    return mk_nn_add(g, mk_nn_scale(g, s, t_end), mk_nn_scalar(g, t_start, 0));
}

mk_var *mk_nn_lsgan_g(mk_nn_graph *g, mk_var *d_fake)
{
    return mk_nn_adv_ls(g, d_fake, 1.0f);
}

mk_var *mk_nn_lsgan_d(mk_nn_graph *g, mk_var *d_real, mk_var *d_fake)
{
    mk_var *l = mk_nn_add(g, mk_nn_adv_ls(g, d_real, 1.0f), mk_nn_adv_ls(g, d_fake, 0.0f));
    return mk_nn_scale(g, l, 0.5f);
}

mk_var *mk_nn_kd_kl(mk_nn_graph *g, mk_var *student, mk_var *teacher, mk_var *temperature,
                    mk_nn_kd_reduction reduction)
{
    mk_var *v = mk_nn_kl_div(g, student, teacher, temperature);
    if (!v || reduction == MK_NN_KD_PER_PIXEL)
        return v;
    int64_t n, c, sp[3];
    mk__dims(student, &n, &c, sp);
    int64_t S = sp[0] * sp[1] * sp[2];
    /* kl_div divides by N * S; batchmean divides by N */
    return S == 1 ? v : mk_nn_scale(g, v, (float)S);
}

/* ---------------------------------------------------------------- loss helpers */

/* log-softmax over the channel axis (stride S) of one position into lp[0..c) */
static void log_softmax(const float *z, int64_t c, int64_t S, double *lp)
{
    double sum, mx = mk__exp_terms(z, c, S, lp, &sum);
    double l = mx + log(sum);
    for (int64_t k = 0; k < c; k++)
        lp[k] = z[k * S] - l;
}

/* dz += p * (dp - <p, dp>): the softmax Jacobian applied to dL/dp at one position */
static void softmax_back(const double *p, const double *dp, int64_t c, int64_t S, float *dz)
{
    double dot = 0;
    for (int64_t k = 0; k < c; k++)
        dot += p[k] * dp[k];
    for (int64_t k = 0; k < c; k++)
        dz[k * S] += (float)(p[k] * (dp[k] - dot));
}

/* N, C, positions per sample; asserts C fits the stack buffers */
static void loss_dims(const mk_var *x, int64_t *n, int64_t *c, int64_t *S)
{
    int64_t sp[3];
    mk__dims(x, n, c, sp);
    *S = sp[0] * sp[1] * sp[2];
    MK_ASSERT(*c >= 1 && *c <= MK_BLK_CMAX);
}

static mk_var *pair_node(mk_nn_graph *g, mk_op op, mk_var *a, mk_var *b)
{
    if (!a || !b)
        return NULL;
    MK_ASSERT(mk_tensor_same_shape(&a->t, &b->t));
    mk_var *in[2] = {a, b};
    int64_t one = 1; /* split-invariant (fold_total): not through scalar_node's guard */
    return mk__node(g, op, 1, &one, 2, in);
}

/* The sum over the batch of per-sample sums ps[0..n) (in double), added in global sample order
 * (mk__fold_d): the same however the batch is split over processes. v: the batch input. */
static double fold_total(mk_nn_graph *g, const mk_var *v, const double *ps, int64_t n)
{
    double tot = 0;
    mk__fold_d(g, v, ps, n, 1, &tot);
    return tot;
}

/* ---------------------------------------------------------------- softmax-MSE */

mk_var *mk_nn_softmax_mse(mk_nn_graph *g, mk_var *a, mk_var *b)
{
    mk_var *v = pair_node(g, MK_OP_SOFTMAX_MSE, a, b);
    if (!v)
        return NULL;
    int64_t n, c, S;
    loss_dims(a, &n, &c, &S);
    double la[MK_BLK_CMAX], lb[MK_BLK_CMAX];
    double *ps = mk__tmp(g, (size_t)(n > 0 ? n : 1) * sizeof(double));
    if (!ps)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        double t = 0;
        for (int64_t s = 0; s < S; s++) {
            int64_t o = i * c * S + s;
            log_softmax(a->t.data + o, c, S, la);
            log_softmax(b->t.data + o, c, S, lb);
            for (int64_t k = 0; k < c; k++) {
                double d = exp(la[k]) - exp(lb[k]);
                t += d * d;
            }
        }
        ps[i] = t;
    }
    double tot = fold_total(g, a, ps, n);
    mk__tmp_release(g);
    v->t.data[0] = (float)(tot / (double)(mk__global_n(g, a, n) * c * S));
    return v;
}

void mk__softmax_mse_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *a = v->in[0], *b = v->in[1];
    float *da = a->requires_grad ? mk__grad(g, a) : NULL;
    float *db = b->requires_grad ? mk__grad(g, b) : NULL;
    if (g->oom)
        return;
    int64_t n, c, S;
    loss_dims(a, &n, &c, &S);
    double f = 2.0 * v->grad[0] / (double)(mk__global_n(g, a, n) * c * S);
    double pa[MK_BLK_CMAX], pb[MK_BLK_CMAX], dp[MK_BLK_CMAX];
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < S; s++) {
            int64_t o = i * c * S + s;
            log_softmax(a->t.data + o, c, S, pa);
            log_softmax(b->t.data + o, c, S, pb);
            for (int64_t k = 0; k < c; k++) {
                pa[k] = exp(pa[k]);
                pb[k] = exp(pb[k]);
            }
            if (da) {
                for (int64_t k = 0; k < c; k++)
                    dp[k] = f * (pa[k] - pb[k]);
                softmax_back(pa, dp, c, S, da + o);
            }
            if (db) {
                for (int64_t k = 0; k < c; k++)
                    dp[k] = f * (pb[k] - pa[k]);
                softmax_back(pb, dp, c, S, db + o);
            }
        }
}

/* ---------------------------------------------------------------- entropy */

mk_var *mk_nn_entropy(mk_nn_graph *g, mk_var *logits)
{
    if (!logits)
        return NULL;
    int64_t one = 1; /* split-invariant (fold_total): not through scalar_node's guard */
    mk_var *v = mk__node(g, MK_OP_ENTROPY, 1, &one, 1, &logits);
    if (!v)
        return NULL;
    int64_t n, c, S;
    loss_dims(logits, &n, &c, &S);
    double lp[MK_BLK_CMAX];
    double *ps = mk__tmp(g, (size_t)(n > 0 ? n : 1) * sizeof(double));
    if (!ps)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        double t = 0;
        for (int64_t s = 0; s < S; s++) {
            log_softmax(logits->t.data + i * c * S + s, c, S, lp);
            for (int64_t k = 0; k < c; k++)
                t -= exp(lp[k]) * lp[k];
        }
        ps[i] = t;
    }
    double tot = fold_total(g, logits, ps, n);
    mk__tmp_release(g);
    v->t.data[0] = (float)(tot / (double)(mk__global_n(g, logits, n) * S));
    return v;
}

void mk__entropy_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *x = v->in[0];
    float *dx = mk__grad(g, x);
    if (!dx)
        return;
    int64_t n, c, S;
    loss_dims(x, &n, &c, &S);
    double f = v->grad[0] / (double)(mk__global_n(g, x, n) * S);
    double lp[MK_BLK_CMAX];
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < S; s++) {
            int64_t o = i * c * S + s;
            log_softmax(x->t.data + o, c, S, lp);
            double H = 0;
            for (int64_t k = 0; k < c; k++)
                H -= exp(lp[k]) * lp[k];
            /* dH/dz_j = -p_j (log p_j + H) */
            for (int64_t k = 0; k < c; k++)
                dx[o + k * S] += (float)(-f * exp(lp[k]) * (lp[k] + H));
        }
}

/* ---------------------------------------------------------------- mean entropy loss (MT-UDA) */

/* p log2(p + smooth) and its derivative */
static double mel_f(double p, double smooth)
{
    return p * log2(p + smooth);
}

static double mel_df(double p, double smooth)
{
    return log2(p + smooth) + p / ((p + smooth) * M_LN2);
}

mk_var *mk_nn_mel(mk_nn_graph *g, mk_var *a, mk_var *b, float smooth)
{
    mk_var *v = pair_node(g, MK_OP_MEL, a, b);
    if (!v)
        return NULL;
    int64_t n, c, S;
    loss_dims(a, &n, &c, &S);
    double la[MK_BLK_CMAX], lb[MK_BLK_CMAX];
    double *ps = mk__tmp(g, (size_t)(n > 0 ? n : 1) * sizeof(double));
    if (!ps)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        double t = 0;
        for (int64_t s = 0; s < S; s++) {
            int64_t o = i * c * S + s;
            log_softmax(a->t.data + o, c, S, la);
            log_softmax(b->t.data + o, c, S, lb);
            for (int64_t k = 0; k < c; k++) {
                double r = mel_f(exp(la[k]), smooth) - mel_f(exp(lb[k]), smooth);
                t += r * r;
            }
        }
        ps[i] = t;
    }
    double tot = fold_total(g, a, ps, n);
    mk__tmp_release(g);
    v->fp[0] = smooth;
    v->t.data[0] = (float)(tot / (double)(mk__global_n(g, a, n) * S));
    return v;
}

void mk__mel_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *a = v->in[0], *b = v->in[1];
    float *da = a->requires_grad ? mk__grad(g, a) : NULL;
    float *db = b->requires_grad ? mk__grad(g, b) : NULL;
    if (g->oom)
        return;
    int64_t n, c, S;
    loss_dims(a, &n, &c, &S);
    double f = 2.0 * v->grad[0] / (double)(mk__global_n(g, a, n) * S), sm = v->fp[0];
    double pa[MK_BLK_CMAX], pb[MK_BLK_CMAX], r[MK_BLK_CMAX], dp[MK_BLK_CMAX];
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < S; s++) {
            int64_t o = i * c * S + s;
            log_softmax(a->t.data + o, c, S, pa);
            log_softmax(b->t.data + o, c, S, pb);
            for (int64_t k = 0; k < c; k++) {
                pa[k] = exp(pa[k]);
                pb[k] = exp(pb[k]);
                r[k] = mel_f(pa[k], sm) - mel_f(pb[k], sm);
            }
            if (da) {
                for (int64_t k = 0; k < c; k++)
                    dp[k] = f * r[k] * mel_df(pa[k], sm);
                softmax_back(pa, dp, c, S, da + o);
            }
            if (db) {
                for (int64_t k = 0; k < c; k++)
                    dp[k] = -f * r[k] * mel_df(pb[k], sm);
                softmax_back(pb, dp, c, S, db + o);
            }
        }
}

/* ---------------------------------------------------------------- soft Dice with options */

mk_var *mk_nn_dice_loss_ex(mk_nn_graph *g, mk_var *logits, const int32_t *labels, float eps,
                           int flags)
{
    if (!logits)
        return NULL;
    MK_ASSERT((flags & ~(MK_NN_DICE_SQUARED | MK_NN_DICE_NO_BACKGROUND)) == 0);
    int64_t one = 1; /* split-invariant: not through scalar_node's whole-batch guard */
    mk_var *v = mk__node(g, MK_OP_DICE_EX, 1, &one, 1, &logits);
    if (!v)
        return NULL;
    int64_t n, c, S;
    loss_dims(logits, &n, &c, &S);
    int64_t k0 = flags & MK_NN_DICE_NO_BACKGROUND ? 1 : 0;
    MK_ASSERT(c > k0);
    int32_t *lab = mk__scratch(g, (size_t)(n * S) * sizeof(int32_t));
    double *acc = mk__scratch(g, (size_t)(3 * c) * sizeof(double)); /* I, P, G per class */
    if (!lab || !acc)
        return NULL;
    memcpy(lab, labels, (size_t)(n * S) * sizeof(int32_t));
    memset(acc, 0, (size_t)(3 * c) * sizeof(double));
    double *I = acc, *P = acc + c, *G = acc + 2 * c;
    int sq = flags & MK_NN_DICE_SQUARED;
    double lp[MK_BLK_CMAX];
    /* per-sample sums (I, P, G per class and the bad labels), added in global sample order
     * (mk__fold_d): the batch Dice of the whole batch however it is split over processes */
    const int64_t W = 3 * c + 1;
    double *ps = mk__tmp(g, (size_t)(n + 1) * (size_t)W * sizeof(double));
    if (!ps)
        return NULL;
    memset(ps, 0, (size_t)(n + 1) * (size_t)W * sizeof(double));
    for (int64_t q = 0; q < n * S; q++) {
        int64_t i = q / S, s = q % S;
        double *pi = ps + i * W;
        log_softmax(logits->t.data + i * c * S + s, c, S, lp);
        int32_t y = lab[q];
        if (y < 0 || y >= c) {
            pi[3 * c] += 1;
            y = -1;
        }
        for (int64_t k = 0; k < c; k++) {
            double pr = exp(lp[k]);
            pi[c + k] += sq ? pr * pr : pr;
            if (k == y) {
                pi[k] += pr;
                pi[2 * c + k] += 1; /* g = g^2 for a one-hot target */
            }
        }
    }
    double *all = ps + n * W;
    mk__fold_d(g, logits, ps, n, (size_t)W, all);
    memcpy(acc, all, (size_t)(3 * c) * sizeof(double));
    g->bad_labels += (long long)all[3 * c];
    mk__tmp_release(g);
    double m = 0;
    for (int64_t k = k0; k < c; k++)
        m += (2 * I[k] + eps) / (P[k] + G[k] + eps);
    v->aux = lab;
    v->aux2 = acc;
    v->ip[0] = flags;
    v->fp[0] = eps;
    v->t.data[0] = (float)(1.0 - m / (double)(c - k0));
    return v;
}

void mk__dice_ex_backward(mk_nn_graph *g, mk_var *v)
{
    mk_var *x = v->in[0];
    float *dx = mk__grad(g, x);
    if (!dx)
        return;
    int64_t n, c, S;
    loss_dims(x, &n, &c, &S);
    const int32_t *lab = v->aux;
    const double *I = v->aux2, *P = I + c, *G = I + 2 * c;
    double eps = v->fp[0];
    int sq = v->ip[0] & MK_NN_DICE_SQUARED;
    int64_t k0 = v->ip[0] & MK_NN_DICE_NO_BACKGROUND ? 1 : 0;
    /* d_k = N_k / D_k; dL/dp_k = -(1/K) (2 g_k / D_k - N_k / D_k^2 * dden/dp), dden/dp = 1 or 2p */
    double c0[MK_BLK_CMAX], c1[MK_BLK_CMAX];
    for (int64_t k = 0; k < c; k++) {
        double D = P[k] + G[k] + eps, N = 2 * I[k] + eps, K = (double)(c - k0);
        c0[k] = k < k0 ? 0.0 : v->grad[0] * (N / (D * D)) / K * (sq ? 2.0 : 1.0);
        c1[k] = k < k0 ? 0.0 : -v->grad[0] * (2.0 / D) / K;
    }
    double lp[MK_BLK_CMAX], p[MK_BLK_CMAX], dp[MK_BLK_CMAX];
    for (int64_t q = 0; q < n * S; q++) {
        int64_t i = q / S, s = q % S, o = i * c * S + s;
        log_softmax(x->t.data + o, c, S, lp);
        int32_t y = lab[q];
        for (int64_t k = 0; k < c; k++) {
            p[k] = exp(lp[k]);
            dp[k] = c0[k] * (sq ? p[k] : 1.0) + (k == y ? c1[k] : 0.0);
        }
        softmax_back(p, dp, c, S, dx + o);
    }
}

/* ---------------------------------------------------------------- input noise */

void mk_nn_noise_clamped(mk_rng *r, mk_tensor *x, float sigma, float clip_at)
{
    mk_nn_noise_clamped_rows(r, x, sigma, clip_at, 0, 0);
}

void mk_nn_noise_clamped_rows(mk_rng *r, mk_tensor *x, float sigma, float clip_at, int64_t before,
                              int64_t after)
{
    MK_ASSERT(mk_tensor_is_contiguous(x) && sigma >= 0 && clip_at >= 0 && before >= 0 &&
              after >= 0);
    int64_t n = mk_tensor_numel(x);
    for (int64_t i = 0; i < before; i++) /* the draws of the samples before x's */
        (void)clip(sigma * mk_rng_normal(r), -(double)clip_at, (double)clip_at);
    for (int64_t i = 0; i < n; i++)
        x->data[i] += (float)clip(sigma * mk_rng_normal(r), -(double)clip_at, (double)clip_at);
    for (int64_t i = 0; i < after; i++)
        (void)clip(sigma * mk_rng_normal(r), -(double)clip_at, (double)clip_at);
}
