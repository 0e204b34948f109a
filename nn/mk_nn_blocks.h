/* medkd nn: shared building blocks of the distillation / mean-teacher methods (methods.md
 * §0.2-0.5, §4.2-4.4): EMA teacher updates, ramp and decay schedules, consistency / entropy /
 * distillation / Dice / LSGAN losses, the CTKD temperature, and clamped Gaussian input noise.
 * ACT-Net (EMA co-teacher), LE-UDA / MT-UDA (mean teachers, consistency, MEL, LSGAN) and CTKD
 * (learnable temperature behind a gradient reversal) compose these; nothing here knows about
 * stages.
 *
 *     // one mean-teacher step (MT-UDA main.py, ema_decay 0.99, iter_pretrain 30)
 *     mk_nn_noise_clamped(rng, &x_teacher, 0.1f, 0.2f);            // teacher input only
 *     mk_var *s = mk_unet_forward(student, g, mk_nn_input(g, &x, 0));
 *     int old = mk_nn_graph_set_no_grad(g, 1);                     // teacher: no gradient
 *     mk_var *t = mk_unet_forward(teacher, g, mk_nn_input(g, &x_teacher, 0));
 *     mk_nn_graph_set_no_grad(g, old);
 *     double w = 1.0 * mk_nn_sigmoid_rampup(epoch, 150);
 *     mk_var *l = mk_nn_add(g, sup, mk_nn_scale(g, mk_nn_softmax_mse(g, s, t), (float)w));
 *     mk_nn_backward(g, l);  mk_optim_step(opt);
 *     mk_nn_params_ema_step(ctx, tparams, sparams, 0.99, it - 30, MK_NN_EMA_KEEP_BUFFERS);
 *
 * Losses are scalar graph nodes (ops in the table of mk_nn_ops.c) with forward and backward, sums
 * in double in a fixed order (serial loops: results do not depend on the thread count). Logits are
 * [N, C, spatial...] with C <= 64 and softmax over axis 1; "positions" are the N * spatial pixels.
 * A two-input loss sends a gradient to every input that requires one: to train only the student,
 * pass the teacher's logits as a no-grad node (mk_nn_input(g, t, 0), or a forward in no-grad mode)
 * -- what MT-UDA does (teacher under torch.no_grad). All pointers returned are borrowed from the
 * graph (valid until the next mk_nn_graph_begin); NULL inputs and OOM give NULL, as every op.
 */
#ifndef MK_NN_BLOCKS_H
#define MK_NN_BLOCKS_H

#include <stdint.h>

#include "core/mk_status.h"
#include "mk_nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- EMA teacher (§0.3) */

/* What an EMA update does with buffers (is_buffer = 1: BN running mean / var). */
typedef enum mk_nn_ema_buffers {
    /* Leave the teacher's buffers alone (MT-UDA update_ema_variables averages .parameters() only;
     * its teachers run in train mode, so their BN layers use batch statistics and their own
     * running statistics come from their own forwards when stats updating is on). */
    MK_NN_EMA_KEEP_BUFFERS = 0,
    /* Average buffers with the same alpha as the parameters (what mk_nn_params_ema does). */
    MK_NN_EMA_AVERAGE_BUFFERS = 1,
    /* Copy the student's buffers (teacher evaluated with the student's running statistics). */
    MK_NN_EMA_COPY_BUFFERS = 2
} mk_nn_ema_buffers;

/* MT-UDA's step-dependent decay: alpha = min(1 - 1/(step + 1), decay), and 0 for step <= 0 (the
 * teacher becomes a copy of the student). With a pre-training phase pass step - iter_pretrain:
 * MT-UDA sets alpha = 0 while global_step <= iter_pretrain and min(1 - 1/(global_step -
 * iter_pretrain + 1), decay) after, which is exactly mk_nn_ema_alpha(decay, global_step -
 * iter_pretrain). Example: decay 0.99 gives 0, 0.5, 2/3, 0.75 for steps 0..3, 0.99 from 99 on. */
double mk_nn_ema_alpha(double decay, long long step);

/* teacher = alpha * teacher + (1 - alpha) * student over the student's parameters (matched by
 * name; shapes and is_buffer must agree), computed in float as a * t + (1 - a) * s with
 * a = (float)alpha, so alpha = 0 copies exactly. Buffers follow `buffers` (above). Frozen
 * parameters are averaged too (frozen only stops the optimiser). Returns MK_OK, MK_ERR_NOT_FOUND
 * (a student entry missing in the teacher) or MK_ERR_INVALID (shape or kind differs); on error the
 * entries before the offending one are already updated. */
mk_status mk_nn_params_ema_alpha(mk_ctx *ctx, mk_nn_params *teacher, const mk_nn_params *student,
                                 double alpha, mk_nn_ema_buffers buffers);
/* mk_nn_params_ema_alpha with alpha = mk_nn_ema_alpha(decay, step): MT-UDA's update_ema_variables
 * (the fixed-decay mk_nn_params_ema is unchanged and still averages buffers too). */
mk_status mk_nn_params_ema_step(mk_ctx *ctx, mk_nn_params *teacher, const mk_nn_params *student,
                                double decay, long long step, mk_nn_ema_buffers buffers);

/* ---------------------------------------------------------------- ramps (§0.4, §4.4) */

/* MT-UDA utils/ramps.py (the mean-teacher ramps). current and length in any unit (epochs,
 * iterations); where the Python asserts on out-of-range values these clamp instead.
 *   sigmoid_rampup:  exp(-5 (1 - clip(t, 0, T)/T)^2), 1 if T <= 0.
 *   linear_rampup:   min(max(t, 0)/T, 1), 1 if T <= 0 (Python: 1.0 when t >= T, T = 0 included).
 *   cosine_rampdown: 0.5 (cos(pi clip(t, 0, T)/T) + 1), 1 if T <= 0. */
double mk_nn_sigmoid_rampup(double current, double length);
double mk_nn_linear_rampup(double current, double length);
double mk_nn_cosine_rampdown(double current, double length);

/* CTKD train_student.py CosineDecay(max_value, min_value, num_loops).get_value(i):
 *   i = clip(i, 0, loops);  min + (max - min) * 0.5 (cos(pi i/loops) + 1)
 * so it goes from max (i = 0) to min (i >= loops). CTKD's curriculum uses max 0, min -1, loops 10
 * per epoch: 0, -0.0245 (e = 1), -0.5 (e = 5), -1 (e >= 10). That value is the factor CTKD's
 * gradient reversal multiplies theta's gradient by (the sign lives in the schedule): pass it as
 * grad_factor of mk_nn_ctkd_temperature, or as -value to mk_nn_grad_reverse. loops <= 0: min. */
double mk_nn_ctkd_cosine_decay(double epoch, double max_value, double min_value, double loops);

/* ---------------------------------------------------------------- gradient reversal (§0.5) */

/* mk_nn_grad_reverse (mk_nn.h) is the reversal op: forward identity (bit-exact copy), backward
 * -lambda * grad, with lambda passed per call (a schedule drives it each step) or changed later
 * with mk_nn_grad_reverse_set. CTKD's GradientReversal(x, lambda_) multiplies by lambda_ itself,
 * so CTKD's lambda_e corresponds to mk_nn_grad_reverse(g, x, -lambda_e); -(-l) * g == l * g
 * exactly in float.
 *
 * CTKD global temperature (models/temp_global.py): T = t_start + t_end * sigmoid(GRL(theta)),
 * theta a [1] node (a parameter wrapped with mk_nn_param, initialised to 1 in CTKD), t_start 1,
 * t_end 20 (T in (1, 21), 15.62 at theta = 1). Backward: d theta = grad_factor * t_end * s (1 - s)
 * * dT, s = sigmoid(theta); grad_factor is CTKD's lambda_e (<= 0: theta ascends the KD loss).
 * Returns a [1] node to pass as the temperature of mk_nn_kd_kl / mk_nn_kl_div. */
mk_var *mk_nn_ctkd_temperature(mk_nn_graph *g, mk_var *theta, float grad_factor, float t_start,
                               float t_end);

/* ---------------------------------------------------------------- losses (§0.2, §4.3) */

/* Softmax-MSE consistency (MT-UDA losses.softmax_mse_loss, then torch.mean):
 *   mean over all N*C*spatial elements of (softmax(a) - softmax(b))^2.
 * a, b same shape. Gradient to a and/or b, whichever requires grad (see the top of this file). */
mk_var *mk_nn_softmax_mse(mk_nn_graph *g, mk_var *a, mk_var *b);

/* Mean Shannon entropy of softmax(logits) (natural log), the entropy-minimisation term:
 *   mean over positions of -sum_c p_c log p_c.
 * No eps: log p_c is computed as z_c - logsumexp(z), finite for every finite logit, so p log p
 * is exact where a p log(p + eps) form is off by up to ~eps per class. Range [0, log C]. */
mk_var *mk_nn_entropy(mk_nn_graph *g, mk_var *logits);

/* MT-UDA "mean entropy loss" (utils/losses.py::mean_entropy_loss, the inter-domain consistency
 * of §3.4), p = softmax(a), q = softmax(b):
 *   mean over positions of sum_c (p_c log2(p_c + smooth) - q_c log2(q_c + smooth))^2
 * with smooth = 1e-8 in MT-UDA (the eps sits inside the log, as there). Note it is not the
 * entropy of one prediction (mk_nn_entropy) but a squared difference of entropy terms. Gradient to
 * a and/or b, whichever requires grad. */
mk_var *mk_nn_mel(mk_nn_graph *g, mk_var *a, mk_var *b, float smooth);

/* Knowledge-distillation KL with temperature (CTKD distiller_zoo/KD.py):
 *   T^2 * KL(softmax(t/T) || softmax(s/T)) = T^2 sum_c p_t (log p_t - log p_s), summed per
 * position, then reduced: MK_NN_KD_PER_PIXEL divides by the number of positions N * spatial (for
 * segmentation; = mk_nn_kl_div), MK_NN_KD_BATCHMEAN by N only (PyTorch reduction 'batchmean':
 * sum over classes and pixels, mean over samples; for [N, C] logits both are the same). The
 * temperature is a [1] node: a constant (mk_nn_scalar(g, 4, 0)) or a learnable one
 * (mk_nn_ctkd_temperature), which then receives dL/dT as well. Gradients for s, t and T. */
typedef enum mk_nn_kd_reduction {
    MK_NN_KD_PER_PIXEL = 0,
    MK_NN_KD_BATCHMEAN = 1
} mk_nn_kd_reduction;
mk_var *mk_nn_kd_kl(mk_nn_graph *g, mk_var *student, mk_var *teacher, mk_var *temperature,
                    mk_nn_kd_reduction reduction);

/* Soft Dice with explicit options, p = softmax(logits), g = one-hot(labels), sums over batch and
 * space, d_c = (2 sum p_c g_c + eps) / (den_c + eps), loss = 1 - mean_c d_c:
 *   flags 0:                     den_c = sum p_c + sum g_c, mean over all C classes: the same
 *                                formula as mk_nn_dice_loss (which stays as it is; values agree
 *                                to float rounding, not bit for bit).
 *   MK_NN_DICE_SQUARED:          den_c = sum p_c^2 + sum g_c^2 (MT-UDA DiceLoss, §0.2).
 *   MK_NN_DICE_NO_BACKGROUND:    mean over classes 1..C-1 only (class 0 = background is left out
 *                                of the mean; its softmax share still shapes p). Needs C >= 2.
 * §0.2's supervised term is flags MK_NN_DICE_SQUARED, eps 1e-5 (background included). Labels
 * outside [0, C) count in mk_nn_graph_bad_labels and belong to no class, as in mk_nn_dice_loss. */
#define MK_NN_DICE_SQUARED 1
#define MK_NN_DICE_NO_BACKGROUND 2
mk_var *mk_nn_dice_loss_ex(mk_nn_graph *g, mk_var *logits, const int32_t *labels, float eps,
                           int flags);

/* LSGAN (§0.2, §1.3, §3.4) on discriminator outputs, built on mk_nn_adv_ls
 * (mean((d - target)^2)):
 *   generator:     mean((D(fake) - 1)^2)                     = mk_nn_adv_ls(d_fake, 1)
 *   discriminator: 0.5 (mean((D(real) - 1)^2) + mean(D(fake)^2))
 * For the discriminator step d_fake must come from a detached fake (generator output copied with
 * mk_nn_input(g, &fake->t, 0) or produced in no-grad mode), or the generator gets this gradient. */
mk_var *mk_nn_lsgan_g(mk_nn_graph *g, mk_var *d_fake);
mk_var *mk_nn_lsgan_d(mk_nn_graph *g, mk_var *d_real, mk_var *d_fake);

/* ---------------------------------------------------------------- input noise (§2.3, §3.4) */

/* In place: x_i += clamp(sigma * n_i, -clip, clip), n_i ~ N(0, 1) from r (mk_rng_normal, one
 * draw per element in index order, computed in double then rounded to float), so a seed fixes the
 * noise. MT-UDA's teacher noise is sigma 0.1, clip 0.2. x must be contiguous. For a graph input,
 * add the noise to the tensor before mk_nn_input (or to a no-grad input node's t): the noise is a
 * constant, nothing to differentiate. r may be mk_nn_graph_rng(g) (this advances the stream
 * dropout also draws from) or a separate mk_rng. */
void mk_nn_noise_clamped(mk_rng *r, mk_tensor *x, float sigma, float clip);
/* The same for x holding rows of a larger batch: first the draws of `before` elements (other
 * processes' samples, discarded), then x's, then `after` more, so the generator ends where the
 * whole batch's draws end (data parallelism: every rank's r stays the same). */
void mk_nn_noise_clamped_rows(mk_rng *r, mk_tensor *x, float sigma, float clip_at, int64_t before,
                              int64_t after);

#ifdef __cplusplus
}
#endif
#endif
