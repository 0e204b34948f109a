/* medkd nn: optimisers (SGD, Adam, AdamW with PyTorch semantics) and learning-rate schedules.
 *
 *     mk_optim_cfg cfg = mk_optim_defaults(MK_OPTIM_ADAM);
 *     cfg.lr = 1e-3f;
 *     mk_optim *opt = mk_optim_new(params, &cfg);      // caller owns; params must outlive it
 *     mk_optim_set_group(opt, 1, 0.1f, 0.0f);          // group 1: lr x 0.1, no weight decay
 *     ... backward ...
 *     mk_optim_set_lr(opt, mk_sched_lr(&sched, iter));
 *     mk_optim_step(opt);
 *
 * Per parameter (PyTorch torch.optim, g = grad):
 *   SGD:   g += wd p; buf = g (first step) or mom buf + (1 - dampening) g;
 *          g = nesterov ? g + mom buf : buf; p -= lr g
 *   Adam:  g += wd p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *          p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   AdamW: p *= 1 - lr wd, then Adam without the wd term.
 * Frozen parameters and buffers are skipped (their state is left untouched). lr and weight decay of
 * a parameter are the optimiser's lr x group lr scale and the group's weight decay (group 0 uses
 * cfg.weight_decay unless changed).
 */
#ifndef MK_OPTIM_H
#define MK_OPTIM_H

#include "mk_nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mk_optim_kind { MK_OPTIM_SGD = 0, MK_OPTIM_ADAM, MK_OPTIM_ADAMW } mk_optim_kind;

typedef struct mk_optim_cfg {
    mk_optim_kind kind;
    float lr;
    float momentum, dampening; /* SGD */
    int nesterov;              /* SGD */
    float beta1, beta2, eps;   /* Adam/AdamW */
    float weight_decay;
} mk_optim_cfg;

typedef struct mk_optim mk_optim;

/* PyTorch defaults for the kind (Adam: lr 1e-3, betas 0.9/0.999, eps 1e-8; AdamW wd 1e-2;
 * SGD: lr 1e-2, no momentum). */
mk_optim_cfg mk_optim_defaults(mk_optim_kind kind);
/* NULL when out of memory. Caller owns; free with mk_optim_free (NULL ok). */
mk_optim *mk_optim_new(mk_nn_params *params, const mk_optim_cfg *cfg);
void mk_optim_free(mk_optim *o);
void mk_optim_set_lr(mk_optim *o, float lr);
float mk_optim_lr(const mk_optim *o);
/* Group g in [0, MK_NN_MAX_GROUPS): lr multiplier and weight decay. */
void mk_optim_set_group(mk_optim *o, int group, float lr_scale, float weight_decay);
/* One update of every trainable, unfrozen parameter from its gradient. */
void mk_optim_step(mk_optim *o);
/* Steps taken (Adam's t). */
long long mk_optim_steps(const mk_optim *o);
const mk_optim_cfg *mk_optim_config(const mk_optim *o);

/* State access for checkpoints: for parameter index i of the store, slot 0 = momentum buffer / m,
 * slot 1 = v (Adam). Returns NULL when the kind has no such slot (or for buffers). Borrowed. */
float *mk_optim_state(mk_optim *o, int param_index, int slot);
/* Restore the step count after loading state; steps > 0 also marks SGD momentum buffers as live
 * (PyTorch starts a momentum buffer from the first gradient). */
void mk_optim_set_steps(mk_optim *o, long long steps);

/* ---------------------------------------------------------------- schedules */

typedef enum mk_sched_kind {
    MK_SCHED_CONSTANT = 0,
    MK_SCHED_STEP,  /* lr * gamma^(floor(it / step_size)) */
    MK_SCHED_POLY,  /* lr * (1 - it / total)^power  (nnU-Net uses power 0.9) */
    MK_SCHED_COSINE /* min_lr + (lr - min_lr) (1 + cos(pi it / total)) / 2 */
} mk_sched_kind;

typedef struct mk_sched {
    mk_sched_kind kind;
    float base_lr, min_lr;
    long long total_iters, step_size;
    float gamma, power;
    long long warmup_iters; /* linear warm-up from warmup_start * lr over these iterations */
    float warmup_start;     /* fraction of the scheduled lr at iteration 0 */
    long long start_iter;   /* the schedule's iteration 0 is iteration start_iter of the caller
                               (a later training phase); earlier iterations get iteration 0's lr */
} mk_sched;

/* Learning rate at iteration it (0-based). During warm-up the scheduled value is multiplied by
 * warmup_start + (1 - warmup_start) * it / warmup_iters. Iterations past total_iters clamp. */
float mk_sched_lr(const mk_sched *s, long long it);

#ifdef __cplusplus
}
#endif
#endif
