/* Method `coteach_tiny`: the tiny network of ACT-Net trained supervised alone, for comparison
 * (study arm (a)). It reads [coteach] for the student's width, depth, batch, learning rate,
 * schedule and loss, and draws the same initial weights and the same labelled batches as the
 * coteach student, minus the teacher and the co-teacher: coteach with w_kd = w_co = 0 trains the
 * same weights. Writes models/coteach_tiny.h5. */
#include <stdlib.h>
#include <string.h>

#include "mk_method.h"
#include "stage_internal.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct cfg_t {
    int iterations; /* 0: coteach.iterations */
    mk_coteach_params cp;
} cfg_t;

static const mk_param_row ROWS[] = {
    MK_P_INT(cfg_t, iterations, "iterations", "0", 0, 1e9,
             "iterations of the tiny supervised network (0: the same as coteach.iterations)"),
};
const mk_param_section mk_coteach_tiny_section = {
    "coteach_tiny", "the tiny student trained on the labelled slices alone, for comparison", ROWS,
    N(ROWS)};

typedef struct state {
    const cfg_t *cfg;
    int lab, net;
    mk_tensor x;
    int32_t *y;
} state;

static int needs(const mk_stage_common *c, const void *cfgp, mk_data_need *out)
{
    (void)c;
    out[0] = (mk_data_need){((const cfg_t *)cfgp)->cp.modality, 1, NULL, NULL, 0, 0};
    return 1;
}

static long long iterations(const void *cfgp)
{
    const cfg_t *cfg = cfgp;
    return cfg->iterations > 0 ? cfg->iterations : cfg->cp.iterations;
}

static mk_status init(mk_loop *L, void *sp, const void *cfgp)
{
    state *s = sp;
    const cfg_t *cfg = cfgp;
    const mk_coteach_params *p = &cfg->cp;
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    s->cfg = cfg;
    mk_status st = mk__coteach_labelled(L, &c->data, p->modality, &s->lab);
    if (st != MK_OK)
        return st;
    mk_unet_cfg su = c->unet;
    su.base = p->width;
    su.levels = p->depth;
    /* the coteach student's initialisation stream */
    if ((s->net = mk_loop_add_unet(L, "student", &su, mk__seed(c->seed, 41))) < 0)
        return ctx->status;
    MK_LOG_I(ctx, "coteach_tiny: %lld parameters (width %d, depth %d)",
             (long long)mk_nn_params_numel(mk_loop_params(L, s->net)), p->width, p->depth);
    mk_sched sched = mk_method_sched(p->schedule, p->lr, p->iterations);
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    oc.lr = p->lr;
    if ((st = mk_loop_add_optim(L, s->net, &oc, &sched)) != MK_OK)
        return st;
    int64_t ne[4] = {p->batch, 1, c->data.patch[1], c->data.patch[0]};
    if (mk_tensor_new(&s->x, 4, ne) ||
        !(s->y = calloc((size_t)(p->batch * ne[2] * ne[3]), sizeof *s->y)))
        return mk_err(ctx, MK_ERR_NOMEM, "coteach_tiny: out of memory (batches)");
    return MK_OK;
}

static mk_status step(mk_loop *L, void *sp, mk_terms *terms)
{
    state *s = sp;
    const mk_coteach_params *p = &s->cfg->cp;
    return mk_method_supervised_step(L, s->lab, s->net, p->batch, &s->x, s->y, p->dice_weight, 1,
                                     "seg", terms);
}

static mk_status save(mk_loop *L, void *sp)
{
    state *s = sp;
    return mk_loop_save_unet(L, "coteach_tiny.h5", s->net, s->cfg->cp.modality, "student");
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
    {&mk_coteach_tiny_section, 0},
    {&mk_coteach_section, offsetof(cfg_t, cp)},
};
static const mk_method_output OUTPUTS[] = {
    {"coteach_tiny", "models/coteach_tiny.h5", NULL, NULL, NULL, "coteach.modality"},
};

const mk_method mk_method_coteach_tiny = {
    .name = "coteach_tiny",
    .summary = "ACT-Net's tiny network, supervised on the labelled slices alone",
    .uses = USES,
    .nuses = N(USES),
    .cfg_size = sizeof(cfg_t),
    .state_size = sizeof(state),
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
    .split_batches = {"coteach.batch"},
};
