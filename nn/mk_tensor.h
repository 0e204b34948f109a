/* medkd nn: float32 tensors, a bump arena for activations, and a seeded PRNG.
 *
 * Axis order is PyTorch's (C order): 2D images NCHW = [n][c][y][x], volumes NCDHW =
 * [n][c][z][y][x]. A tensor is a plain struct: shape `ne`, element strides `st` (C-contiguous
 * unless it is a view), and a borrowed or owned `data` pointer. Ownership is named by the function
 * that made it: mk_tensor_new  -> caller owns data, release with mk_tensor_free; mk_tensor_view ->
 * borrows the parent's data (`view_of` is set), never free it; mk_arena_tensor -> data lives in the
 * arena until mk_arena_reset / mk_arena_free.
 *
 *     mk_arena a;
 *     mk_arena_init(&a, 1 << 20);
 *     int64_t shape[4] = {8, 1, 256, 256};
 *     mk_tensor x;
 *     mk_arena_tensor(&a, &x, 4, shape);       // zeroed float32 tensor in the arena
 *     ...
 *     mk_arena_reset(&a);                      // next step reuses the same memory, no malloc
 *     mk_arena_free(&a);
 *
 * The arena grows by whole blocks while it learns the peak size of a step; mk_arena_reset then
 * merges the blocks into one, so every later step with the same shapes runs without malloc.
 */
#ifndef MK_TENSOR_H
#define MK_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MK_TENSOR_MAX_DIMS 5

typedef struct mk_tensor {
    int ndim;
    int64_t ne[MK_TENSOR_MAX_DIMS]; /* shape, outermost first */
    int64_t st[MK_TENSOR_MAX_DIMS]; /* strides in elements */
    float *data;
    const struct mk_tensor *view_of; /* non-NULL for views: data is borrowed */
    /* 0, or the size of the global batch whose share dim 0 holds when a batch is split over
     * processes (data-parallel training: set by the training loop, carried by the graph's ops;
     * nn/mk_nn.h, mk_nn_share) */
    int64_t batch_of;
} mk_tensor;

/* Fill shape and C-contiguous strides (data untouched). */
void mk_tensor_set_shape(mk_tensor *t, int ndim, const int64_t *ne);
/* Number of elements (product of ne). */
int64_t mk_tensor_numel(const mk_tensor *t);
/* 1 if the strides are C-contiguous. */
int mk_tensor_is_contiguous(const mk_tensor *t);
/* 1 if a and b have the same ndim and shape. */
int mk_tensor_same_shape(const mk_tensor *a, const mk_tensor *b);

/* Allocate a zeroed contiguous tensor (64-byte aligned). Returns 0, or -1 when out of memory.
 * Caller owns: release with mk_tensor_free (accepts a zeroed struct). */
int mk_tensor_new(mk_tensor *t, int ndim, const int64_t *ne);
void mk_tensor_free(mk_tensor *t);

/* View of `src` restricted to [start, start+len) along axis `dim` (borrowed data). */
mk_tensor mk_tensor_view(const mk_tensor *src, int dim, int64_t start, int64_t len);
/* Contiguous reshape view of a contiguous tensor (same numel, asserted). */
mk_tensor mk_tensor_reshape(const mk_tensor *src, int ndim, const int64_t *ne);
/* Copy src into dst (same shape, any strides). */
void mk_tensor_copy(mk_tensor *dst, const mk_tensor *src);

/* ---------------------------------------------------------------- arena */

typedef struct mk_arena_block {
    struct mk_arena_block *next;
    size_t size, used;
    unsigned char *mem; /* 64-byte aligned */
} mk_arena_block;

typedef struct mk_arena {
    mk_arena_block *head; /* current block first */
    size_t block_min;     /* smallest new block */
    size_t used_peak;     /* largest total use seen between resets */
    size_t used_now;
    size_t n_mallocs; /* blocks allocated so far (tests check steady state) */
} mk_arena;

void mk_arena_init(mk_arena *a, size_t block_min);
/* 64-byte aligned, uninitialised memory valid until reset/free. NULL when out of memory. */
void *mk_arena_alloc(mk_arena *a, size_t bytes);
/* Same, zero-filled. */
void *mk_arena_calloc(mk_arena *a, size_t bytes);
/* Zeroed contiguous tensor in the arena; returns 0 or -1 (out of memory). */
int mk_arena_tensor(mk_arena *a, mk_tensor *t, int ndim, const int64_t *ne);
/* Forget every allocation; keeps (one merged block of) the memory. */
void mk_arena_reset(mk_arena *a);
void mk_arena_free(mk_arena *a);

/* ---------------------------------------------------------------- PRNG */

/* xoshiro256** seeded through splitmix64: the same seed gives the same stream on every machine. */
typedef struct mk_rng {
    uint64_t s[4];
} mk_rng;

void mk_rng_seed(mk_rng *r, uint64_t seed);
uint64_t mk_rng_u64(mk_rng *r);
/* Uniform in [0, 1) with 24 random bits (float) / 53 bits (double). */
float mk_rng_uniform(mk_rng *r);
double mk_rng_uniform_d(mk_rng *r);
/* Standard normal (Box-Muller, no cached second value so the stream position is explicit). */
double mk_rng_normal(mk_rng *r);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t mk_rng_below(mk_rng *r, uint64_t n);
/* Fisher-Yates shuffle of idx[0..n) (data order). */
void mk_rng_shuffle(mk_rng *r, int64_t *idx, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
