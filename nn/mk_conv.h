/* medkd convolution kernels (float32, NCHW / NCDHW, groups = 1).
 *
 * 2D convolutions are the 3D ones with D = 1, k[0] = 1, stride[0] = 1, pad[0] = 0, dil[0] = 1.
 * Layouts: x [n][cin][D][H][W], w [cout][cin][kd][kh][kw] (PyTorch Conv weight layout),
 * y [n][cout][oD][oH][oW].
 * Transposed convolution (PyTorch ConvTranspose, weight [cin_t][cout_t][k...]) is the adjoint:
 *   convT forward  = mk_conv_bwd_data  of the conv with cin = cout_t, cout = cin_t
 *   convT dgrad    = mk_conv_fwd       of that conv
 *   convT wgrad    = mk_conv_bwd_weight with x and dy swapped.
 *
 * Every kernel has a plain scalar reference (`_ref`) kept as the test oracle, and a fast path
 * (im2col/vol2col + OpenBLAS sgemm where it pays, own blocked/direct kernels for small channel
 * counts, OpenMP over the batch/pixels with OpenBLAS kept single-threaded inside parallel regions).
 * Fast and reference agree to float rounding.
 */
#ifndef MK_CONV_H
#define MK_CONV_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_conv_shape {
    int n, cin, cout;
    int in[3]; /* D, H, W (2D: D = 1) */
    int k[3];  /* kernel D, H, W */
    int stride[3];
    int pad[3];
    int dil[3];
    int out[3]; /* filled by mk_conv_shape_finish */
} mk_conv_shape;

/* Computes out[] from the others; returns 0 on success, -1 if the output would be empty or a
 * field is non-positive. */
int mk_conv_shape_finish(mk_conv_shape *s);

/* Bytes of scratch the fast kernels need for this shape (with `threads` workers). */
size_t mk_conv_workspace_size(const mk_conv_shape *s, int threads);

/* y = conv(x, w) (+ bias[cout] if bias != NULL). Overwrites y. ws: workspace of
 * mk_conv_workspace_size bytes (or NULL: the kernel allocates). */
void mk_conv_fwd(const mk_conv_shape *s, const float *x, const float *w, const float *bias,
                 float *y, void *ws, int threads);
/* dx += conv^T(dy, w)  (accumulates into dx). */
void mk_conv_bwd_data(const mk_conv_shape *s, const float *dy, const float *w, float *dx, void *ws,
                      int threads);
/* dw += sum_n dy (x) x  (accumulates into dw); db += sum over n and pixels of dy if db != NULL. */
void mk_conv_bwd_weight(const mk_conv_shape *s, const float *x, const float *dy, float *dw,
                        float *db, void *ws, int threads);
/* part[i][cout * cin * kvol] = sample i's weight gradient alone (overwritten; no db), for every
 * i < s->n. Each sample's bits are those of mk_conv_bwd_weight of that sample alone (n = 1) into
 * zeros, whatever the batch and the thread count: the graph adds the partials in global sample
 * order (nn/mk_nn.h, mk_nn_share). Workers take whole samples when there are enough of them, or
 * share each sample otherwise. */
void mk_conv_bwd_weight_samples(const mk_conv_shape *s, const float *x, const float *dy,
                                float *part, void *ws, int threads);

/* Engine choice for stride-1 problems: those with at least `channels` output channels (cout for
 * fwd / bwd_weight, cin for bwd_data) use vol2col + sgemm instead of the direct kernels; <= 0
 * restores the default (direct kernels everywhere: measured faster on the target at widths <= 128).
 * Process-wide; meant for tests and benchmarks, call it while no kernel runs. Workspace sizes
 * cover both engines. */
void mk_conv_set_sgemm_min_channels(int channels);

/* Scalar references with the same contracts (single-threaded, no workspace). */
void mk_conv_fwd_ref(const mk_conv_shape *s, const float *x, const float *w, const float *bias,
                     float *y);
void mk_conv_bwd_data_ref(const mk_conv_shape *s, const float *dy, const float *w, float *dx);
void mk_conv_bwd_weight_ref(const mk_conv_shape *s, const float *x, const float *dy, float *dw,
                            float *db);

#ifdef __cplusplus
}
#endif
#endif
