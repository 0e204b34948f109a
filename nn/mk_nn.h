/* medkd nn: parameters, the autograd tape and the ops (forward + backward).
 *
 * A forward pass records one node (mk_var) per op on a graph (mk_nn_graph). All activations,
 * gradients of activations and op scratch live in the graph's arena, so a training step does not
 * call malloc once the arena has learnt the step's size. Parameters live outside the graph in a
 * parameter store (mk_nn_params) with persistent gradient buffers; gradients accumulate there until
 * mk_nn_params_zero_grad, so several backward passes add up (gradient accumulation).
 *
 *     mk_nn_graph *g = mk_nn_graph_new(threads, seed);
 *     for (step...) {
 *         mk_nn_graph_begin(g, 1);                  // 1 = training mode (BN batch stats, dropout)
 *         mk_var *x = mk_nn_input(g, &batch);       // copies into the arena, no grad
 *         mk_var *y = mk_unet_forward(model, g, x); // records the ops
 *         mk_var *l = mk_nn_add(g, mk_nn_cross_entropy(g, y, labels, NULL, -100),
 *                                  mk_nn_dice_loss(g, y, labels, 1e-5f));
 *         mk_nn_params_zero_grad(params);
 *         mk_nn_backward(g, l);                     // grads land in params
 *         mk_optim_step(opt);
 *     }
 *     mk_nn_graph_free(g);
 *
 * Ops are listed once in enum mk_op and the table in mk_nn_ops.c (name + backward), which a
 * _Static_assert keeps in step with the enum. Shapes: NC + 1 to 3 spatial axes; "2D" ops take
 * [N,C,H,W], "3D" [N,C,D,H,W]; every op accepts both. Ops assert on programmer errors (mismatched
 * shapes); an arena that cannot grow sets the graph's `oom` flag and the op returns NULL, which
 * every op passes through (check mk_nn_graph_oom after the forward).
 *
 * Threads: `threads` workers for convolutions (handed to mk_conv_*) and OpenMP loops; results are
 * bit-identical for the same seed and thread count (static schedules, no atomics).
 */
#ifndef MK_NN_H
#define MK_NN_H

#include <stdint.h>

#include "core/mk_status.h"
#include "mk_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- parameters */

#define MK_NN_NAME_MAX 96
#define MK_NN_MAX_GROUPS 8

typedef struct mk_param {
    char name[MK_NN_NAME_MAX]; /* PyTorch state_dict key, e.g. "enc.0.1.weight" */
    mk_tensor value;           /* owned */
    float *grad;               /* owned, same numel; NULL for buffers */
    int is_buffer;             /* running statistics: saved/loaded, never optimised */
    int frozen;                /* no gradient, optimiser skips it */
    int group;                 /* parameter group (per-group lr scale / weight decay) */
} mk_param;

/* Opaque store of named parameters and buffers, in registration order. */
typedef struct mk_nn_params mk_nn_params;

mk_nn_params *mk_nn_params_new(void);
void mk_nn_params_free(mk_nn_params *p);
/* Add a zeroed parameter (is_buffer = 0) or buffer. Returns the borrowed mk_param (stable address
 * until mk_nn_params_free) or NULL when out of memory / the name exists. */
mk_param *mk_nn_params_add(mk_nn_params *p, const char *name, int ndim, const int64_t *ne,
                           int is_buffer);
int mk_nn_params_count(const mk_nn_params *p);
mk_param *mk_nn_params_at(mk_nn_params *p, int i);
mk_param *mk_nn_params_find(mk_nn_params *p, const char *name);
/* Number of trainable scalars (is_buffer == 0). */
int64_t mk_nn_params_numel(const mk_nn_params *p);
void mk_nn_params_zero_grad(mk_nn_params *p);
/* Freeze/unfreeze every parameter whose name starts with prefix ("" = all). Returns the count. */
int mk_nn_params_set_frozen(mk_nn_params *p, const char *prefix, int frozen);
/* Put every parameter whose name starts with prefix into group g. Returns the count. */
int mk_nn_params_set_group(mk_nn_params *p, const char *prefix, int group);
/* Copy values (parameters and buffers, matched by name) from src into dst. */
mk_status mk_nn_params_copy(mk_ctx *ctx, mk_nn_params *dst, const mk_nn_params *src);
/* Mean teacher: teacher = decay * teacher + (1 - decay) * student for parameters and buffers,
 * matched by name (shapes must agree). */
mk_status mk_nn_params_ema(mk_ctx *ctx, mk_nn_params *teacher, const mk_nn_params *student,
                           float decay);

/* PyTorch default init for conv / transposed conv: weight ~ U(-b, b) with b = 1/sqrt(fan_in)
 * (kaiming_uniform a = sqrt(5)), bias ~ U(-b, b). fan_in = ne[1] * prod(kernel) as in PyTorch
 * (for a transposed conv weight [in, out, k..] that is out * prod(k)). bias may be NULL. */
void mk_nn_init_conv(mk_rng *r, mk_param *weight, mk_param *bias);
void mk_nn_fill(mk_param *p, float v);

/* ---------------------------------------------------------------- graph */

typedef enum mk_op {
    MK_OP_LEAF = 0,
    MK_OP_CONV,
    MK_OP_CONVT,
    MK_OP_MAXPOOL,
    MK_OP_AVGPOOL,
    MK_OP_UPSAMPLE_NEAREST,
    MK_OP_UPSAMPLE_LINEAR,
    MK_OP_BATCHNORM,
    MK_OP_INSTNORM,
    MK_OP_RELU,
    MK_OP_LEAKY_RELU,
    MK_OP_TANH,
    MK_OP_SIGMOID,
    MK_OP_CONCAT,
    MK_OP_ADD,
    MK_OP_SCALE,
    MK_OP_DROPOUT,
    MK_OP_SOFTMAX,
    MK_OP_CROSS_ENTROPY,
    MK_OP_DICE,
    MK_OP_MSE,
    MK_OP_L1,
    MK_OP_KL_DIV,
    MK_OP_ADV_LS,
    MK_OP_ADV_BCE,
    MK_OP_GRAD_REVERSE,
    MK_OP_SUM,
    MK_OP_SOFTMAX_MSE, /* the four below: nn/mk_nn_blocks.h */
    MK_OP_ENTROPY,
    MK_OP_MEL,
    MK_OP_DICE_EX,
    MK_OP_COUNT
} mk_op;

/* Name of an op ("conv", "batchnorm", ...). */
const char *mk_op_name(mk_op op);

#define MK_VAR_MAX_IN 4

typedef struct mk_nn_graph mk_nn_graph;

/* One recorded value. Fields are public for reading; ops fill them. */
typedef struct mk_var {
    mk_tensor t; /* value (arena or parameter memory) */
    float *grad; /* d loss / d value, contiguous; NULL until backward reaches it */
    mk_op op;
    int requires_grad;
    int nin;
    struct mk_var *in[MK_VAR_MAX_IN];
    mk_param *param;  /* leaf of a parameter: grad is param->grad */
    const char *name; /* set by mk_nn_set_name (feature maps for distillation) */
    int ip[16];       /* integer op attributes */
    float fp[4];      /* float op attributes */
    void *aux, *aux2; /* saved for backward (arena) */
    int slot_;        /* internal: recyclable gradient buffer + 1, 0 if none */
    int vslot_;       /* internal: recyclable value buffer + 1 (recycle mode), 0 if none */
} mk_var;

/* New graph with `threads` workers (>= 1) and a PRNG seeded with `seed` (dropout). Caller owns. */
mk_nn_graph *mk_nn_graph_new(int threads, uint64_t seed);
void mk_nn_graph_free(mk_nn_graph *g);
/* Start a new forward: forgets the previous nodes (arena reset). training selects batch statistics
 * for batch norm and active dropout. */
void mk_nn_graph_begin(mk_nn_graph *g, int training);
int mk_nn_graph_training(const mk_nn_graph *g);
int mk_nn_graph_threads(const mk_nn_graph *g);
void mk_nn_graph_set_threads(mk_nn_graph *g, int threads);
/* No-grad mode: while on, new nodes do not require grad and save nothing for backward. Returns the
 * previous value. */
int mk_nn_graph_set_no_grad(mk_nn_graph *g, int no_grad);
/* Recycle mode for inference (no-grad forwards only): node values come from a recycling pool
 * and mk_nn_release hands a value back once no later op reads it, so peak memory is the live set,
 * not the whole forward. Off by default (values stay readable, e.g. teacher feature maps). Returns
 * the previous setting. */
int mk_nn_graph_set_recycle(mk_nn_graph *g, int on);
/* In recycle mode + no-grad: release v's value (v->t.data becomes NULL). Otherwise a no-op. */
void mk_nn_release(mk_nn_graph *g, mk_var *v);

/* 1 if an allocation failed since mk_nn_graph_begin. */
int mk_nn_graph_oom(const mk_nn_graph *g);
/* Watch *flag (e.g. mk_ctx.cancel, set by a signal handler): once it is non-zero, the next op or
 * backward step of the graph stops it as running out of memory does (oom set, ops return NULL,
 * backward ends) and mk_nn_graph_cancelled says so until the next mk_nn_graph_begin. So a
 * SIGTERM is seen within one op, not one training iteration. NULL: never (the default). */
void mk_nn_graph_set_cancel(mk_nn_graph *g, volatile int *flag);
int mk_nn_graph_cancelled(const mk_nn_graph *g);
/* Voxels skipped by the losses since mk_nn_graph_begin because their label was outside
 * [0, C) and not the ignore index (callers validate labels; this catches what slipped through). */
long long mk_nn_graph_bad_labels(const mk_nn_graph *g);
mk_arena *mk_nn_graph_arena(mk_nn_graph *g);
mk_rng *mk_nn_graph_rng(mk_nn_graph *g);
/* Accumulate BN running statistics in training mode (default 1; set 0 for a teacher forward). */
void mk_nn_graph_set_update_stats(mk_nn_graph *g, int on);

/* Subgradient policy of ReLU at its kink, for comparisons against another engine: in backward,
 * the j-th input met with |x| <= tol (j counted from 0 in the order of the reverse pass, which is
 * deterministic) passes the gradient iff bit j of side_mask is set (bits past 63 use bit 63).
 * Default tol 0: the usual x > 0 rule. mk_nn_graph_relu_kinks counts the inputs within tol seen
 * since mk_nn_graph_begin. */
void mk_nn_graph_set_relu_kink(mk_nn_graph *g, float tol, uint64_t side_mask);
long long mk_nn_graph_relu_kinks(const mk_nn_graph *g);

/* A batch split over processes (data-parallel training under MPI). Every reduction over the batch
 * (normalisation statistics, losses, weight gradients) is computed as one partial per sample and
 * the partials are added in global sample order, so the result has the same bits whether the batch
 * is whole in one process or split: rank r holds samples [offset(r), offset(r) + n(r)) of a global
 * batch of B, n(r) = B / ranks plus one for r < B % ranks (mk_nn_share_range). `allgather` collects
 * every rank's bytes in rank order (counts[r] bytes from rank r) into `all` on every rank and
 * returns 0 (MPI_Allgatherv; the graph layer knows no MPI). A tensor whose batch_of is B
 * (mk_tensor.h) holds this rank's share of a batch of B: mk_nn_input keeps the mark while a share
 * is set, and ops carry it to their per-sample results (v->t.batch_of). Ops without a
 * split-invariant form stop on a batch share (MK_ASSERT). */
typedef struct mk_nn_share {
    int ranks, rank;
    int (*allgather)(void *user, const void *mine, void *all, const size_t *counts, int ranks);
    void *user;
} mk_nn_share;
/* Set the split (s copied; NULL: whole batches again). */
void mk_nn_graph_set_share(mk_nn_graph *g, const mk_nn_share *s);
/* Rank r's samples of a global batch of B over `ranks`: first index and count. */
void mk_nn_share_range(int64_t B, int ranks, int r, int64_t *offset, int64_t *n);

/* Name a node (the string must outlive the step; literals are fine) and look it up later. */
mk_var *mk_nn_set_name(mk_var *v, const char *name);
mk_var *mk_nn_find(mk_nn_graph *g, const char *name);

/* Leaves. mk_nn_input copies t into the arena (no grad unless requires_grad). mk_nn_param wraps a
 * parameter (no copy): its gradient accumulates in p->grad unless frozen or no-grad. */
mk_var *mk_nn_input(mk_nn_graph *g, const mk_tensor *t, int requires_grad);
mk_var *mk_nn_param(mk_nn_graph *g, mk_param *p);
/* Zeroed node of a shape, e.g. to fill by hand (no grad). */
mk_var *mk_nn_zeros(mk_nn_graph *g, int ndim, const int64_t *ne);
/* Scalar leaf (e.g. a learnable temperature outside a parameter store). */
mk_var *mk_nn_scalar(mk_nn_graph *g, float v, int requires_grad);

/* Reverse pass from a scalar `loss` (seed gradient 1). Parameter gradients accumulate; leaves
 * (inputs, parameters) keep their gradients, inner nodes hand theirs back once used (their grad is
 * NULL afterwards), which keeps backward memory to a few buffers per shape. */
void mk_nn_backward(mk_nn_graph *g, mk_var *loss);
/* Same with an explicit seed gradient dy (numel of loss) for non-scalar outputs. */
void mk_nn_backward_with(mk_nn_graph *g, mk_var *out, const float *dy);

/* ---------------------------------------------------------------- profile */

/* A per-op profile for benchmarks (process-wide, off by default; one graph thread at a time).
 * With it on, every op's forward time is the wall time from its node's creation to the next
 * node's (mk_nn_profile_cut ends a forward pass without a backward one), its backward time is
 * the wall time of its backward function, and the convolutions split theirs into the data,
 * weight and bias gradients (sub-rows; the deferred parameter folds are a row of their own). FLOPs
 * are counted for the convolutions (2 per multiply-add). Rows keep the order they were first seen
 * in. */
typedef struct mk_nn_prof_row {
    const char *op, *phase; /* static strings */
    long long calls;
    double seconds, flops;
} mk_nn_prof_row;
void mk_nn_profile_enable(int on); /* clears the rows */
/* Ends the running forward op's time (a forward pass with no backward pass after it). */
void mk_nn_profile_cut(void);
/* Adds time (and flops) to a row, e.g. the optimizer's step; no-op when off. */
void mk_nn_profile_add(const char *op, const char *phase, double seconds, double flops);
/* Copies up to max rows into out; returns how many rows there are. */
int mk_nn_profile_rows(mk_nn_prof_row *out, int max);
double mk_nn_profile_now(void); /* monotonic seconds */

/* ---------------------------------------------------------------- ops */

/* Convolution, PyTorch Conv2d/Conv3d (groups 1). w [cout][cin][k..]; b [cout] or NULL.
 * stride/pad/dil: one value per spatial axis (2 or 3 values). */
mk_var *mk_nn_conv(mk_nn_graph *g, mk_var *x, mk_var *w, mk_var *b, const int *stride,
                   const int *pad, const int *dil);
/* Transposed convolution, PyTorch ConvTranspose (output_padding 0, dilation dil).
 * w [cin][cout][k..]. */
mk_var *mk_nn_conv_transpose(mk_nn_graph *g, mk_var *x, mk_var *w, mk_var *b, const int *stride,
                             const int *pad, const int *dil);
/* Max / average pooling with cubic kernel k and stride s (no padding, floor mode). */
mk_var *mk_nn_maxpool(mk_nn_graph *g, mk_var *x, int k, int s);
mk_var *mk_nn_avgpool(mk_nn_graph *g, mk_var *x, int k, int s);
/* Upsampling by an integer factor per spatial axis: nearest, or (bi/tri)linear with
 * align_corners = False (PyTorch semantics). */
mk_var *mk_nn_upsample_nearest(mk_nn_graph *g, mk_var *x, int factor);
mk_var *mk_nn_upsample_linear(mk_nn_graph *g, mk_var *x, int factor);
/* Batch norm over (N, spatial) per channel. Training: batch statistics (biased variance) and, when
 * running_mean/var are given and stats updating is on, running = (1-m) running + m batch with the
 * unbiased batch variance (PyTorch). Eval: running statistics. gamma/beta may be NULL. */
mk_var *mk_nn_batchnorm(mk_nn_graph *g, mk_var *x, mk_var *gamma, mk_var *beta,
                        mk_param *running_mean, mk_param *running_var, float momentum, float eps);
/* Instance norm: statistics per (n, c) over spatial axes, in training and eval (PyTorch's default
 * track_running_stats = False). gamma/beta may be NULL (affine = False). */
mk_var *mk_nn_instnorm(mk_nn_graph *g, mk_var *x, mk_var *gamma, mk_var *beta, float eps);
mk_var *mk_nn_relu(mk_nn_graph *g, mk_var *x);
/* ReLU that overwrites x's value (no new activation buffer). Only valid when nothing else reads
 * x's value later, in forward or backward: e.g. straight after batch/instance norm or a conv, whose
 * backward passes read their inputs, not their outputs. */
mk_var *mk_nn_relu_inplace(mk_nn_graph *g, mk_var *x);
mk_var *mk_nn_leaky_relu(mk_nn_graph *g, mk_var *x, float slope);
mk_var *mk_nn_tanh(mk_nn_graph *g, mk_var *x);
mk_var *mk_nn_sigmoid(mk_nn_graph *g, mk_var *x);
/* Concatenate along the channel axis (axis 1), PyTorch cat([a, b], 1). */
mk_var *mk_nn_concat(mk_nn_graph *g, mk_var *a, mk_var *b);
/* a + b (same shape, or b a scalar). */
mk_var *mk_nn_add(mk_nn_graph *g, mk_var *a, mk_var *b);
/* alpha * x. */
mk_var *mk_nn_scale(mk_nn_graph *g, mk_var *x, float alpha);
/* Inverted dropout with probability p in training mode, identity in eval. */
mk_var *mk_nn_dropout(mk_nn_graph *g, mk_var *x, float p);
/* Softmax over the channel axis. */
mk_var *mk_nn_softmax(mk_nn_graph *g, mk_var *x);
/* Sum of all elements (scalar). */
mk_var *mk_nn_sum(mk_nn_graph *g, mk_var *x);
/* Identity forward, gradient multiplied by -lambda backward (domain-adversarial training, CTKD).
 * lambda can be changed between backward passes with mk_nn_grad_reverse_set. */
mk_var *mk_nn_grad_reverse(mk_nn_graph *g, mk_var *x, float lambda);
void mk_nn_grad_reverse_set(mk_var *v, float lambda);

/* ---------------------------------------------------------------- losses (scalar outputs) */

/* Softmax cross-entropy, PyTorch F.cross_entropy with reduction 'mean': logits [N,C,...], labels
 * int32 [N,...]. weight[C] (or NULL) weights each voxel by its target class and divides by the
 * sum of weights; voxels with label == ignore_index are skipped. */
mk_var *mk_nn_cross_entropy(mk_nn_graph *g, mk_var *logits, const int32_t *labels,
                            const float *weight, int ignore_index);
/* Soft Dice 1 - mean_c (2 sum(p g) + eps) / (sum p + sum g + eps), p = softmax(logits) over
 * channels, g = one-hot(labels); sums over batch and space (the peers' loss). */
mk_var *mk_nn_dice_loss(mk_nn_graph *g, mk_var *logits, const int32_t *labels, float eps);
/* mean((a - b)^2) and mean(|a - b|); gradients flow to both sides if they require grad. */
mk_var *mk_nn_mse(mk_nn_graph *g, mk_var *a, mk_var *b);
mk_var *mk_nn_l1(mk_nn_graph *g, mk_var *a, mk_var *b);
/* Distillation KL with temperature T (may require grad: CTKD):
 *   1 / M * sum_pos T^2 sum_c p_t (log p_t - log p_s),  p_s = softmax(s/T), p_t = softmax(t/T)
 * over the channel axis, M = number of positions (N * spatial). T is a [1] node (one temperature)
 * or a node of N elements (one per sample, CTKD's instance-wise temperature: sample i's
 * positions use T[i] and its T[i]^2 factor). Gradients for s, t and T. */
mk_var *mk_nn_kl_div(mk_nn_graph *g, mk_var *student, mk_var *teacher, mk_var *temperature);
/* Adversarial losses on discriminator outputs d against a constant target (1 real, 0 fake):
 * least squares mean((d - target)^2) and BCE-with-logits mean(softplus(d) - target * d). */
mk_var *mk_nn_adv_ls(mk_nn_graph *g, mk_var *d, float target);
mk_var *mk_nn_adv_bce(mk_nn_graph *g, mk_var *d, float target);

/* Scalar value of a 1-element node. */
float mk_nn_value(const mk_var *v);

#ifdef __cplusplus
}
#endif
#endif
