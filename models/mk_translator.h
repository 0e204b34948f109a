/* medkd models: small CycleGAN-style image-to-image networks for unpaired CT <-> MRI translation.
 *
 * Generator (2D, 1 channel in and out, width w), every conv with bias:
 *   c0   conv k3 p1      1 -> w     InstanceNorm(affine) ReLU           (full resolution)
 *   down conv k3 s2 p1   w -> 2w    InstanceNorm ReLU                   (half resolution)
 *   res  x + IN(conv k3 p1 (ReLU(IN(conv k3 p1 x))))   2w -> 2w         (one residual block)
 *   up   transposed conv k2 s2  2w -> w  InstanceNorm ReLU              (full resolution)
 *   out  conv k3 p1      w -> 1     tanh                                (images in [-1, 1])
 * Spatial sizes must be even.
 *
 * PatchGAN discriminator (3 convs, width w): conv k4 s2 p1 1 -> w, LeakyReLU 0.2; conv k4 s2 p1
 * w -> 2w, InstanceNorm, LeakyReLU 0.2; conv k3 p1 2w -> 1 (raw scores, one per patch; use with
 * mk_nn_adv_ls). A 48x48 input gives a 12x12 score map.
 *
 * Parameter names: "<layer>.weight", "<layer>.bias", "<layer>_in.weight", "<layer>_in.bias" with
 * layer c0, down, res0, res1, up, out (generator) or d0, d1, d2 (discriminator). Initialisation is
 * PyTorch's default conv init from `seed`, instance-norm gamma 1 and beta 0. Save and load with
 * mk_model_save / mk_model_load (models/mk_unet.h), which work on any parameter store.
 *
 *     mk_translator *g;
 *     if (mk_translator_new(ctx, MK_TRANSLATOR_GEN, 16, seed, &g) != MK_OK) ...
 *     mk_var *fake_mr = mk_translator_forward(g, graph, ct);   // [N, 1, H, W]
 *     mk_translator_free(g);
 */
#ifndef MK_TRANSLATOR_H
#define MK_TRANSLATOR_H

#include <stdint.h>

#include "core/mk_status.h"
#include "nn/mk_nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mk_translator_kind {
    MK_TRANSLATOR_GEN = 0, /* generator: image -> image */
    MK_TRANSLATOR_DISC     /* PatchGAN discriminator: image -> score map */
} mk_translator_kind;

typedef struct mk_translator mk_translator;

/* Build and initialise a network of `kind` and width (>= 1). Caller owns *out (mk_translator_free).
 * Returns MK_OK, MK_ERR_INVALID (bad kind/width), MK_ERR_NOMEM. */
mk_status mk_translator_new(mk_ctx *ctx, mk_translator_kind kind, int width, uint64_t seed,
                            mk_translator **out);
/* The same with in_ch input channels (a discriminator of feature or probability maps, e.g.
 * LE-UDA's; generators take 1). */
mk_status mk_translator_new_in(mk_ctx *ctx, mk_translator_kind kind, int in_ch, int width,
                               uint64_t seed, mk_translator **out);
void mk_translator_free(mk_translator *t);
/* Borrowed parameter store (valid until mk_translator_free). */
mk_nn_params *mk_translator_params(mk_translator *t);
mk_translator_kind mk_translator_kind_of(const mk_translator *t);
/* Records the forward pass of x [N, in_ch, H, W] on g (H, W even). NULL on OOM (or NULL x). */
mk_var *mk_translator_forward(mk_translator *t, mk_nn_graph *g, mk_var *x);

#ifdef __cplusplus
}
#endif
#endif
