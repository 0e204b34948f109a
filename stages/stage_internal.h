/* Internal helpers shared by the stage sources (not installed). */
#ifndef MK_STAGE_INTERNAL_H
#define MK_STAGE_INTERNAL_H

#include "mk_stages.h"
#include "models/mk_translator.h"
#include "nn/mk_optim.h"

/* cmedl hint_where = "teacher_correct". mask[b][i] = 1 where the 2-class logits [B,2,H,W] predict
 * the label y (0 / non-zero) at pixel i. The masked target is tf where every mask pixel under a
 * feature position (features [B,C,h,w], h = H/s) is 1, else sf, so the MSE against it counts
 * only teacher-correct positions (the others contribute 0 and no gradient). */
void mk__hint_correct_mask(const mk_tensor *logits, const int32_t *y, uint8_t *mask);
void mk__hint_masked_target(const uint8_t *mask, int64_t H, int64_t W, const mk_tensor *tf,
                            const mk_tensor *sf, mk_tensor *out);

/* One model of a multi-model checkpoint file. */
typedef struct mk__ck_model {
    const char *name;     /* HDF5 group */
    mk_nn_params *params;
    mk_optim *opt;        /* NULL: no optimiser state */
} mk__ck_model;

typedef struct mk__ck_rng {
    const char *name;
    mk_rng *rng;
} mk__ck_rng;

/* Multi-model HDF5 file, written to a temp name and renamed:
 *   /<model>/params/<param name, '.' -> '/'>   float32
 *   /<model>/optim/state0|state1/<name>        Adam m / v; attribute steps on /<model>/optim
 *   /rng/<name>                                uint64[4] xoshiro state
 *   root attributes: format "medkd-stage-checkpoint", stage, iteration */
mk_status mk__ckpt_save(mk_ctx *ctx, const char *path, const char *stage, long long iteration,
                        const mk__ck_model *m, int nm, const mk__ck_rng *r, int nr);
/* Load what mk__ckpt_save wrote (every listed model/rng must be present, same shapes). Models with
 * opt == NULL load parameters only. iteration may be NULL. */
mk_status mk__ckpt_load(mk_ctx *ctx, const char *path, const char *stage, long long *iteration,
                        const mk__ck_model *m, int nm, const mk__ck_rng *r, int nr);

/* path = run_dir/sub/name, creating run_dir/sub */
mk_status mk__run_path(mk_ctx *ctx, const char *run_dir, const char *sub, const char *name,
                       char *buf, size_t n);

/* Blending weights of one pw x ph inference window, row-major: 1 everywhere (uniform), or
 * exp(-d^2 / 2) with d the distance from the window's centre in units of size / 8 per axis,
 * scaled so that the central pixel(s) weigh 1. */
void mk__window_weights(int pw, int ph, int uniform, float *w);

/* The value a normalised volume is padded with outside its bounds: -1 (the CT window's floor) for
 * CT, the volume's minimum for MRI. */
float mk__pad_value(const float *vol, int64_t n, int is_ct);

/* splitmix64 of seed and a stream number: independent seeds for each network and data stream */
uint64_t mk__seed(uint64_t seed, uint64_t stream);

#endif
