/* Internal to nn/: the graph struct, node helpers and the op table entries. */
#ifndef MK_NN_IMPL_H
#define MK_NN_IMPL_H

#include "mk_nn.h"

/* A recyclable arena buffer: gradients of inner nodes and op temporaries are handed back after
 * use, so backward needs a few buffers per shape instead of one per node. */
typedef struct mk_slot {
    void *p;
    size_t bytes;
    int busy;
} mk_slot;

#define MK_TMP_MAX 16

struct mk_nn_graph {
    mk_arena arena;
    mk_slot *slots; /* malloc'd, grows rarely; emptied by mk_nn_graph_begin */
    int n_slots, cap_slots;
    int tmp[MK_TMP_MAX], n_tmp;
    mk_var **nodes; /* creation order; malloc'd, grows geometrically (rarely) */
    int n_nodes, cap;
    int training, no_grad, threads, oom, update_stats, recycle;
    volatile int *cancel; /* mk_nn_graph_set_cancel; NULL: never */
    int cancelled;        /* the flag was seen set while this graph was built or differentiated */
    long long bad_labels;
    float kink_tol;
    uint64_t kink_side;
    long long kinks;
    mk_rng rng;
    int have_share;
    mk_nn_share share;
    struct mk_pending *pending; /* deferred gradient folds (mk__fold_defer), malloc'd */
    int n_pending, cap_pending;
};

typedef void (*mk_backward_fn)(mk_nn_graph *g, mk_var *v);

struct mk_op_info {
    const char *name;
    int nin_max;             /* most inputs the op records */
    mk_backward_fn backward; /* NULL for leaves */
};

/* New node with value shape ne (data uninitialised arena memory), inputs in[0..nin). Returns NULL
 * (and sets g->oom) when out of memory, or when an input is NULL. */
mk_var *mk__node(mk_nn_graph *g, mk_op op, int ndim, const int64_t *ne, int nin, mk_var *const *in);
/* Gradient buffer of v, allocated zeroed in the arena on first use (NULL on OOM). */
float *mk__grad(mk_nn_graph *g, mk_var *v);
/* Scratch memory from the arena, alive until the next mk_nn_graph_begin (NULL on OOM, sets
 * g->oom). */
void *mk__scratch(mk_nn_graph *g, size_t bytes);
/* Temporary buffer for the running op only: recycled by mk__tmp_release, which the graph calls
 * after every backward op; forward ops call it themselves when done. */
void *mk__tmp(mk_nn_graph *g, size_t bytes);
void mk__tmp_release(mk_nn_graph *g);
/* Like mk__node but the value aliases `data` (in-place ops). */
mk_var *mk__node_alias(mk_nn_graph *g, mk_op op, mk_var *x, float *data);
/* N, C and the spatial extent as D, H, W (D = 1 for 4-D tensors). */
void mk__dims(const mk_var *v, int64_t *n, int64_t *c, int64_t sp[3]);
int64_t mk__numel(const mk_var *v);

/* Backward functions of the losses (mk_nn_loss.c), referenced by the op table. */
void mk__ce_backward(mk_nn_graph *g, mk_var *v);
void mk__dice_backward(mk_nn_graph *g, mk_var *v);
void mk__mse_backward(mk_nn_graph *g, mk_var *v);
void mk__l1_backward(mk_nn_graph *g, mk_var *v);
void mk__kl_backward(mk_nn_graph *g, mk_var *v);
void mk__adv_ls_backward(mk_nn_graph *g, mk_var *v);
void mk__adv_bce_backward(mk_nn_graph *g, mk_var *v);
/* Backward functions of the shared building-block losses (mk_nn_blocks.c). */
void mk__softmax_mse_backward(mk_nn_graph *g, mk_var *v);
void mk__entropy_backward(mk_nn_graph *g, mk_var *v);
void mk__mel_backward(mk_nn_graph *g, mk_var *v);
void mk__dice_ex_backward(mk_nn_graph *g, mk_var *v);

const struct mk_op_info *mk__op_info(mk_op op);
/* e[k] = exp(x[k S] - max) over the c channels of one position (stride S), *sum their sum, in
 * channel order; returns the max (the softmaxes and log-softmaxes of the losses). */
double mk__exp_terms(const float *x, int64_t c, int64_t S, double *e, double *sum);

/* The profile (mk_nn_prof.c): on?, a node created (the previous forward op ends), a graph begun
 * (nothing runs), FLOPs of a row. */
int mk__prof_on(void);
void mk__prof_node(const char *op);
void mk__prof_drop(void);
void mk__prof_flops(const char *op, const char *phase, double flops);

/* Batch reductions (see mk_nn_share): part holds n per-sample partial vectors of len values, this
 * process's samples in order; out[i] += part_s[i] for every sample s of the batch in global order
 * (the gathered partials of every rank when v is a batch share, else the n given). */
void mk__fold_d(mk_nn_graph *g, const mk_var *v, const double *part, int64_t n, size_t len,
                double *out);
void mk__fold_f(mk_nn_graph *g, const mk_var *v, const float *part, int64_t n, size_t len,
                float *out);
/* The same for a parameter's gradient, which nothing reads before backward ends: on a batch share
 * the fold is deferred, and mk_nn_backward gathers every deferred fold of the pass in one
 * collective (fused) and applies them in the order they were made, so the bits are those of
 * immediate folds. part (malloc'd; the graph frees it) holds n rows of len values: floats added
 * into out (kind 0), or doubles added in double, then out[i] += (float)sum (kind 1). Elsewhere
 * (one process, or v not a share) it is applied at once. */
void mk__fold_defer(mk_nn_graph *g, const mk_var *v, void *part, int64_t n, size_t len, int kind,
                    float *out);
/* Samples of the whole batch v is part of (n when v is not a batch share). */
int64_t mk__global_n(const mk_nn_graph *g, const mk_var *v, int64_t n);
/* Stops when v is a batch share: for ops that have no split-invariant reduction yet. */
void mk__whole_batch_only(const mk_nn_graph *g, const mk_var *v, const char *op);

#endif
