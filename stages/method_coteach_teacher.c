/* Method `coteach_teacher`: the large U-Net of ACT-Net (methods notes §2.4 step 1), trained
 * supervised on the labelled training slices of coteach.modality (the rows of the split that have
 * a label; the unlabelled ones are left to the student). Its width and depth are its own; the
 * `coteach` stage then distils it, frozen, into a tiny student. Writes
 * models/coteach_teacher.h5. */
#include <stdlib.h>
#include <string.h>

#include "mk_method.h"
#include "stage_internal.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const mk_param_row ROWS[] = {
    MK_P_INT(mk_coteach_teacher_params, iterations, "iterations", "1500", 1, 1e9,
             "training iterations of the large teacher"),
    MK_P_INT(mk_coteach_teacher_params, batch, "batch", "4", 1, 1024, "labelled slices per batch"),
    MK_P_FLOAT(mk_coteach_teacher_params, lr, "lr", "1e-3", 0, 1, "Adam learning rate"),
    MK_P_INT(mk_coteach_teacher_params, width, "width", "16", 1, 512,
             "channels of the teacher's first level (doubling per level)"),
    MK_P_INT(mk_coteach_teacher_params, depth, "depth", "5", 2, 6,
             "resolution levels of the teacher"),
    MK_P_FLOAT(mk_coteach_teacher_params, dice_weight, "dice_weight", "0.5", 0, 1,
               "segmentation loss = w*Dice + (1-w)*CE (the group's 0.5 Dice + 0.5 CE)"),
    MK_P_CHOICE(mk_coteach_teacher_params, schedule, "schedule", "poly", "constant|poly|cosine",
                "learning-rate schedule"),
};
const mk_param_section mk_coteach_teacher_section = {
    "coteach_teacher", "ACT-Net's large teacher, trained on the labelled slices", ROWS, N(ROWS)};

typedef struct cfg_t {
    mk_coteach_teacher_params tp;
    mk_coteach_params cp; /* modality, and the labelled data the student sees */
} cfg_t;

typedef struct state {
    const cfg_t *cfg;
    int data, net;
    mk_tensor x;
    int32_t *y;
} state;

static int needs(const mk_stage_common *c, const void *cfgp, mk_data_need *out)
{
    (void)c;
    const cfg_t *cfg = cfgp;
    /* at least one labelled row (the others are the student's unlabelled share) */
    out[0] = (mk_data_need){cfg->cp.modality, 1, NULL, NULL, 0, 0};
    return 1;
}

static long long iterations(const void *cfgp)
{
    return ((const cfg_t *)cfgp)->tp.iterations;
}

static mk_status check(mk_ctx *ctx, const mk_stage_common *c, const void *cfgp)
{
    const cfg_t *cfg = cfgp;
    int div = 1 << (cfg->tp.depth - 1);
    if (c->data.patch[0] % div || c->data.patch[1] % div)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "key 'coteach_teacher.depth': data.patch %dx%d must be a multiple of %d "
                      "for a teacher of depth %d",
                      c->data.patch[0], c->data.patch[1], div, cfg->tp.depth);
    return MK_OK;
}

static mk_status init(mk_loop *L, void *sp, const void *cfgp)
{
    state *s = sp;
    const cfg_t *cfg = cfgp;
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    s->cfg = cfg;
    mk_status st = mk__coteach_labelled(L, &c->data, cfg->cp.modality, &s->data);
    if (st != MK_OK)
        return st;
    mk_unet_cfg uc = c->unet;
    uc.base = cfg->tp.width;
    uc.levels = cfg->tp.depth;
    if ((s->net = mk_loop_add_unet(L, "teacher", &uc, mk__seed(c->seed, 40))) < 0)
        return ctx->status;
    MK_LOG_I(ctx, "coteach_teacher: a U-Net of width %d, depth %d: %lld parameters", cfg->tp.width,
             cfg->tp.depth, (long long)mk_nn_params_numel(mk_loop_params(L, s->net)));
    mk_sched sched = mk_method_sched(cfg->tp.schedule, cfg->tp.lr, cfg->tp.iterations);
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    oc.lr = cfg->tp.lr;
    if ((st = mk_loop_add_optim(L, s->net, &oc, &sched)) != MK_OK)
        return st;
    int64_t ne[4] = {cfg->tp.batch, 1, c->data.patch[1], c->data.patch[0]};
    if (mk_tensor_new(&s->x, 4, ne) ||
        !(s->y = calloc((size_t)(cfg->tp.batch * ne[2] * ne[3]), sizeof *s->y)))
        return mk_err(ctx, MK_ERR_NOMEM, "coteach_teacher: out of memory (batches)");
    return MK_OK;
}

static mk_status step(mk_loop *L, void *sp, mk_terms *terms)
{
    state *s = sp;
    return mk_method_supervised_step(L, s->data, s->net, s->cfg->tp.batch, &s->x, s->y,
                                     s->cfg->tp.dice_weight, 1, "seg", terms);
}

static mk_status save(mk_loop *L, void *sp)
{
    state *s = sp;
    return mk_loop_save_unet(L, "coteach_teacher.h5", s->net, s->cfg->cp.modality, "teacher");
}

static void free_state(void *sp)
{
    state *s = sp;
    mk_tensor_free(&s->x);
    free(s->y);
}

static int val_net(mk_loop *L, void *sp, const char **modality)
{
    (void)L;
    state *s = sp;
    *modality = s->cfg->cp.modality;
    return s->net;
}

static const mk_method_use USES[] = {
    {&mk_coteach_teacher_section, offsetof(cfg_t, tp)},
    {&mk_coteach_section, offsetof(cfg_t, cp)},
};
static const mk_method_output OUTPUTS[] = {
    {"coteach_teacher", "models/coteach_teacher.h5", NULL, NULL, NULL, "coteach.modality"},
};

const mk_method mk_method_coteach_teacher = {
    .name = "coteach_teacher",
    .summary = "ACT-Net's large teacher on the labelled slices",
    .uses = USES,
    .nuses = N(USES),
    .cfg_size = sizeof(cfg_t),
    .state_size = sizeof(state),
    .check = check,
    .needs = needs,
    .iterations = iterations,
    .init = init,
    .step = step,
    .save = save,
    .free = free_state,
    .outputs = OUTPUTS,
    .noutputs = N(OUTPUTS),
    .val_net = val_net,
    .data_parallel = 1,
    .split_batches = {"coteach_teacher.batch"},
};
