/* medkd models: the reference 2D / 3D U-Nets and HDF5 checkpoints.
 *
 * The U-Net is the one of ../shared/peers/torch_unet.py: `levels` resolution levels with widths
 * base * 2^i; each level a conv block 2 x [conv k3 pad 1 no bias -> BatchNorm -> ReLU]; 2x max-pool
 * down; transposed conv k2 s2 (with bias) up, halving channels; skip concatenation [up, skip]; a
 * 1x1 conv head (with bias). Parameter names are PyTorch's state_dict keys of that module:
 *   enc.<i>.0.weight, enc.<i>.1.{weight,bias,running_mean,running_var}, enc.<i>.3.weight,
 *   enc.<i>.4.*, up.<j>.{weight,bias}, dec.<j>.{0,1,3,4}.*, head.{weight,bias}
 * (running statistics are buffers). The forward pass names its feature maps for distillation:
 *   "enc0".."enc<L-2>" (encoder block outputs), "bottleneck", "dec0".."dec<L-2>", "logits".
 *
 *     mk_unet_cfg cfg = mk_unet_defaults(2);          // 2D: base 16, 4 levels, 4 classes
 *     mk_unet *net;
 *     if (mk_unet_new(&ctx, &cfg, seed, &net) != MK_OK) ...
 *     mk_var *logits = mk_unet_forward(net, g, x);    // x: [N, in_ch, H, W] node
 *     mk_unet_free(net);
 *
 * Checkpoints (HDF5, written to PATH.tmp.<pid> and renamed, so a crash never leaves a half file):
 *   /params/<name with '.' -> '/'>   every parameter and buffer (float32, PyTorch layout) - the
 * same layout as the golden files' /params group; /optim (group, optional)         attributes kind,
 * lr, beta1, beta2, eps, weight_decay, momentum, dampening, nesterov, steps; datasets
 * state0/<name>, state1/<name> (SGD momentum or Adam m; Adam v); root attributes format =
 * "medkd-checkpoint", version = 1.
 */
#ifndef MK_UNET_H
#define MK_UNET_H

#include <stdint.h>

#include "core/mk_status.h"
#include "nn/mk_nn.h"
#include "nn/mk_optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_unet_cfg {
    int dim;     /* 2 or 3 */
    int in_ch;   /* input channels */
    int classes; /* output channels */
    int base;    /* width of level 0 */
    int levels;  /* resolution levels incl. bottleneck (>= 1) */
    float bn_momentum, bn_eps;
} mk_unet_cfg;

typedef struct mk_unet mk_unet;

/* Reference configuration: dim 2 -> base 16, 4 levels; dim 3 -> base 8, 3 levels; 1 input
 * channel, 4 classes, BN momentum 0.1, eps 1e-5. */
mk_unet_cfg mk_unet_defaults(int dim);
/* Build and initialise (PyTorch default init from `seed`). MK_ERR_INVALID for a bad cfg,
 * MK_ERR_NOMEM. Caller owns *out. */
mk_status mk_unet_new(mk_ctx *ctx, const mk_unet_cfg *cfg, uint64_t seed, mk_unet **out);
void mk_unet_free(mk_unet *net);
/* Borrowed: the model's parameter store (valid until mk_unet_free). */
mk_nn_params *mk_unet_params(mk_unet *net);
const mk_unet_cfg *mk_unet_config(const mk_unet *net);
/* Records the forward pass on g; returns the logits node [N, classes, spatial] (NULL on OOM).
 * Spatial sizes must be divisible by 2^(levels-1). */
mk_var *mk_unet_forward(mk_unet *net, mk_nn_graph *g, mk_var *x);
/* Analytic conv + transposed-conv FLOPs (2 x multiply-adds) of one forward of one sample of the
 * given spatial size (dim entries), as torch_unet.conv_flops; *first gets the first layer's. */
double mk_unet_conv_flops(const mk_unet_cfg *cfg, const int *size, double *first);

/* ---------------------------------------------------------------- HDF5 */

/* Save parameters (+ optimiser state when opt != NULL) atomically to path. */
mk_status mk_model_save(mk_ctx *ctx, const char *path, mk_nn_params *params, mk_optim *opt);
/* The same with one more string attribute `attr` = text on the root group (a description such as
 * the inference metadata of stages/mk_infer.h; attr NULL: none). */
mk_status mk_model_save_info(mk_ctx *ctx, const char *path, mk_nn_params *params, mk_optim *opt,
                             const char *attr, const char *text);
/* Read that attribute (at most 1 MiB) into *text (caller frees); MK_ERR_FORMAT naming the file
 * when it has none, MK_ERR_IO when the file is missing. */
mk_status mk_model_read_info(mk_ctx *ctx, const char *path, const char *attr, char **text);
/* Load every parameter/buffer of the store from group `group` ("params" for checkpoints and golden
 * files) and, when opt != NULL and the file has /optim, the optimiser state. Every dataset must
 * exist with the store's shape; errors name the file and dataset. */
mk_status mk_model_load(mk_ctx *ctx, const char *path, const char *group, mk_nn_params *params,
                        mk_optim *opt);
/* Read a float dataset (any float/int type, converted) into a new tensor with the file's shape
 * (rank 0 -> 1 element, rank <= 5). Caller owns out (mk_tensor_free). */
mk_status mk_model_h5_read(mk_ctx *ctx, const char *path, const char *dset, mk_tensor *out);
/* Read an integer dataset as int32 into a malloc'd array (caller frees), *n elements. */
mk_status mk_model_h5_read_i32(mk_ctx *ctx, const char *path, const char *dset, int32_t **out,
                               int64_t *n);

#ifdef __cplusplus
}
#endif
#endif
