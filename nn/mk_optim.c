/* Optimisers and schedules (see mk_optim.h). */
#include "mk_optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mk_optim {
    mk_optim_cfg cfg;
    mk_nn_params *params;
    int n;
    float **s0, **s1; /* per parameter state (NULL for buffers) */
    unsigned char *has_s0;
    long long steps;
    float lr_scale[MK_NN_MAX_GROUPS], wd[MK_NN_MAX_GROUPS];
};

mk_optim_cfg mk_optim_defaults(mk_optim_kind kind)
{
    mk_optim_cfg c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.lr = kind == MK_OPTIM_SGD ? 1e-2f : 1e-3f;
    c.weight_decay = kind == MK_OPTIM_ADAMW ? 1e-2f : 0.0f;
    return c;
}

void mk_optim_free(mk_optim *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->n; i++) {
        free(o->s0[i]);
        free(o->s1[i]);
    }
    free(o->s0);
    free(o->s1);
    free(o->has_s0);
    free(o);
}

mk_optim *mk_optim_new(mk_nn_params *params, const mk_optim_cfg *cfg)
{
    mk_optim *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->cfg = *cfg;
    o->params = params;
    o->n = mk_nn_params_count(params);
    o->s0 = calloc((size_t)o->n + 1, sizeof(float *));
    o->s1 = calloc((size_t)o->n + 1, sizeof(float *));
    o->has_s0 = calloc((size_t)o->n + 1, 1);
    if (!o->s0 || !o->s1 || !o->has_s0) {
        mk_optim_free(o);
        return NULL;
    }
    for (int gi = 0; gi < MK_NN_MAX_GROUPS; gi++) {
        o->lr_scale[gi] = 1.0f;
        o->wd[gi] = cfg->weight_decay;
    }
    int need0 = cfg->kind != MK_OPTIM_SGD || cfg->momentum != 0.0f;
    int need1 = cfg->kind != MK_OPTIM_SGD;
    for (int i = 0; i < o->n; i++) {
        mk_param *p = mk_nn_params_at(params, i);
        if (p->is_buffer)
            continue;
        size_t ne = (size_t)mk_tensor_numel(&p->value);
        if (need0 && !(o->s0[i] = calloc(ne, sizeof(float))))
            goto fail;
        if (need1 && !(o->s1[i] = calloc(ne, sizeof(float))))
            goto fail;
    }
    return o;
fail:
    mk_optim_free(o);
    return NULL;
}

void mk_optim_set_lr(mk_optim *o, float lr)
{
    o->cfg.lr = lr;
}

float mk_optim_lr(const mk_optim *o)
{
    return o->cfg.lr;
}

void mk_optim_set_group(mk_optim *o, int group, float lr_scale, float weight_decay)
{
    MK_ASSERT(group >= 0 && group < MK_NN_MAX_GROUPS);
    o->lr_scale[group] = lr_scale;
    o->wd[group] = weight_decay;
}

long long mk_optim_steps(const mk_optim *o)
{
    return o->steps;
}

void mk_optim_set_steps(mk_optim *o, long long steps)
{
    o->steps = steps;
    /* a restored SGD momentum buffer is live from the next step on */
    for (int i = 0; i < o->n; i++)
        o->has_s0[i] = steps > 0 && o->s0[i] != NULL;
}

const mk_optim_cfg *mk_optim_config(const mk_optim *o)
{
    return &o->cfg;
}

float *mk_optim_state(mk_optim *o, int i, int slot)
{
    MK_ASSERT(i >= 0 && i < o->n);
    return slot == 0 ? o->s0[i] : o->s1[i];
}

static void step_sgd(mk_optim *o, int i, mk_param *p, float lr, float wd)
{
    const mk_optim_cfg *c = &o->cfg;
    int64_t n = mk_tensor_numel(&p->value);
    float *w = p->value.data, *gr = p->grad, *buf = o->s0[i];
    int first = !o->has_s0[i];
    for (int64_t k = 0; k < n; k++) {
        float g = gr[k] + wd * w[k];
        if (buf) {
            buf[k] = first ? g : c->momentum * buf[k] + (1.0f - c->dampening) * g;
            g = c->nesterov ? g + c->momentum * buf[k] : buf[k];
        }
        w[k] -= lr * g;
    }
    o->has_s0[i] = 1;
}

static void step_adam(mk_optim *o, int i, mk_param *p, float lr, float wd)
{
    const mk_optim_cfg *c = &o->cfg;
    int64_t n = mk_tensor_numel(&p->value);
    float *w = p->value.data, *gr = p->grad, *m = o->s0[i], *v = o->s1[i];
    double t = (double)o->steps;
    float bc1 = (float)(1.0 - pow(c->beta1, t));
    float bc2s = (float)sqrt(1.0 - pow(c->beta2, t));
    float step = lr / bc1;
    int decoupled = c->kind == MK_OPTIM_ADAMW;
    for (int64_t k = 0; k < n; k++) {
        float g = gr[k];
        if (decoupled)
            w[k] *= 1.0f - lr * wd;
        else
            g += wd * w[k];
        m[k] = c->beta1 * m[k] + (1.0f - c->beta1) * g;
        v[k] = c->beta2 * v[k] + (1.0f - c->beta2) * g * g;
        float denom = sqrtf(v[k]) / bc2s + c->eps;
        w[k] -= step * m[k] / denom;
    }
}

void mk_optim_step(mk_optim *o)
{
    o->steps++;
    for (int i = 0; i < o->n; i++) {
        mk_param *p = mk_nn_params_at(o->params, i);
        if (p->is_buffer || p->frozen || !p->grad)
            continue;
        float lr = o->cfg.lr * o->lr_scale[p->group];
        float wd = o->wd[p->group];
        if (o->cfg.kind == MK_OPTIM_SGD)
            step_sgd(o, i, p, lr, wd);
        else
            step_adam(o, i, p, lr, wd);
    }
}

float mk_sched_lr(const mk_sched *s, long long it)
{
    it -= s->start_iter;
    if (it < 0)
        it = 0;
    double lr = s->base_lr;
    double tot = s->total_iters > 0 ? (double)s->total_iters : 1.0;
    double f = (double)it / tot;
    if (f > 1)
        f = 1;
    switch (s->kind) {
    case MK_SCHED_CONSTANT: break;
    case MK_SCHED_STEP:
        if (s->step_size > 0)
            lr *= pow(s->gamma, (double)(it / s->step_size));
        break;
    case MK_SCHED_POLY: lr *= pow(1.0 - f, s->power); break;
    case MK_SCHED_COSINE: lr = s->min_lr + (lr - s->min_lr) * 0.5 * (1.0 + cos(M_PI * f)); break;
    }
    if (s->warmup_iters > 0 && it < s->warmup_iters)
        lr *= s->warmup_start + (1.0 - s->warmup_start) * (double)it / (double)s->warmup_iters;
    return (float)lr;
}
