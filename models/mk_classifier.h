/* medkd models: a small patch classifier (RGB patches -> class logits) and a class-conditional
 * patch generator (noise + class -> RGB patch), for the histology methods.
 *
 * Classifier (width w, depth d; PyTorch layout and default init from `seed`):
 *   level i = 0..d-1:  [conv k3 p1 (no bias) -> BatchNorm -> ReLU] x 2 with w 2^i channels,
 *                      then maxpool 2 (not after the last level)
 *   global average pool -> features [N, w 2^(d-1), 1, 1] -> dropout -> conv 1x1 (bias) -> logits
 *   [N, classes, 1, 1] (use with mk_nn_cross_entropy and labels [N]).
 * The patch side must be divisible by 2^(d-1). Parameter names "enc.<i>.<0|3>.weight" (convs),
 * "enc.<i>.<1|4>.{weight,bias,running_mean,running_var}" (norms), "head.{weight,bias}".
 *
 * Generator (DCGAN-like, width w, side s = 8 s0 with s0 >= 1): input [N, zdim + classes, 1, 1]
 * (noise then the one-hot class), transposed conv k s0 -> [N, 4w, s0, s0], BN, ReLU; then three
 * stages [transposed conv k2 s2 -> BN -> ReLU -> conv k3 p1 -> BN -> ReLU] to 2w, w, w channels
 * (sides 2 s0, 4 s0, 8 s0); conv k3 p1 (bias) -> 3 channels -> (tanh + 1) / 2: RGB in [0, 1].
 *
 *     mk_classifier *net;
 *     mk_classifier_cfg cfg = mk_classifier_defaults();  cfg.base = 16;
 *     mk_classifier_new(ctx, &cfg, seed, &net);
 *     mk_var *feat, *logits = mk_classifier_forward(net, g, x, &feat);
 *     mk_classifier_free(net);
 */
#ifndef MK_CLASSIFIER_H
#define MK_CLASSIFIER_H

#include <stdint.h>

#include "core/mk_status.h"
#include "nn/mk_nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_classifier_cfg {
    int in_ch;   /* 3 (RGB) */
    int classes; /* >= 2 */
    int base;    /* channels of the first level (>= 1) */
    int depth;   /* levels, 1..6 */
    float dropout;
    float bn_momentum, bn_eps;
} mk_classifier_cfg;
/* in_ch 3, classes 2, base 16, depth 3, dropout 0, BN momentum 0.1, eps 1e-5 */
mk_classifier_cfg mk_classifier_defaults(void);

typedef struct mk_classifier mk_classifier;

/* Caller owns *out (mk_classifier_free). MK_ERR_INVALID naming the bad field, MK_ERR_NOMEM. */
mk_status mk_classifier_new(mk_ctx *ctx, const mk_classifier_cfg *cfg, uint64_t seed,
                            mk_classifier **out);
void mk_classifier_free(mk_classifier *c);
mk_nn_params *mk_classifier_params(mk_classifier *c); /* borrowed */
const mk_classifier_cfg *mk_classifier_config(const mk_classifier *c);
/* Feature width (channels after the global pool). */
int mk_classifier_features(const mk_classifier_cfg *cfg);
/* x [N, in_ch, s, s] -> logits [N, classes, 1, 1]; *features (may be NULL) gets the pooled
 * features [N, F, 1, 1]. NULL on OOM or NULL x. */
mk_var *mk_classifier_forward(mk_classifier *c, mk_nn_graph *g, mk_var *x, mk_var **features);

typedef struct mk_cgen_cfg {
    int zdim;    /* noise channels (>= 1) */
    int classes; /* >= 2 */
    int base;    /* w (>= 1) */
    int size;    /* output side, a multiple of 8 */
    float bn_momentum, bn_eps;
} mk_cgen_cfg;
/* zdim 32, classes 2, base 16, size 32 */
mk_cgen_cfg mk_cgen_defaults(void);

typedef struct mk_cgen mk_cgen;
mk_status mk_cgen_new(mk_ctx *ctx, const mk_cgen_cfg *cfg, uint64_t seed, mk_cgen **out);
void mk_cgen_free(mk_cgen *g);
mk_nn_params *mk_cgen_params(mk_cgen *g);
const mk_cgen_cfg *mk_cgen_config(const mk_cgen *g);
/* Fill in [N, zdim + classes, 1, 1] with standard normal noise from r and the one-hot of
 * labels[n]. in must have that shape. */
void mk_cgen_input(const mk_cgen_cfg *cfg, mk_rng *r, const int32_t *labels, mk_tensor *in);
/* in [N, zdim + classes, 1, 1] -> RGB [N, 3, size, size] in [0, 1]. */
mk_var *mk_cgen_forward(mk_cgen *gen, mk_nn_graph *g, mk_var *in);

#ifdef __cplusplus
}
#endif
#endif
