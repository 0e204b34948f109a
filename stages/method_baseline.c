/* Method `baseline`: the CMEDL student trained on CT alone, for comparison. It reads [cmedl] for
 * everything it shares with the CMEDL student (batch, learning rate and schedule, loss weights,
 * EMA) and draws the same initial weights, batches and updates, minus the teacher's guidance.
 * Writes models/baseline_student.h5. */
#include <stdlib.h>
#include <string.h>

#include "mk_method.h"
#include "stage_internal.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct mk_baseline_cfg {
    mk_cmedl_params cp;
    int iterations; /* 0: cp.iterations */
} cfg_t;

static const mk_param_row ROWS[] = {
    MK_P_INT(cfg_t, iterations, "iterations", "0", 0, 1e9,
             "iterations of the CT-only student (0: the same as cmedl.iterations)"),
};
const mk_param_section mk_baseline_section = {
    "baseline", "the same student trained on CT alone, for comparison", ROWS, N(ROWS)};

typedef struct state {
    const mk_cmedl_params *cp;
    int ct, student, ema;
    mk_tensor xc;
    int32_t *yc;
} state;

static int needs(const mk_stage_common *c, const void *cfg, mk_data_need *out)
{
    (void)cfg;
    out[0] = (mk_data_need){c->data.ct_modality, 1, NULL, NULL, 0, 0};
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
    const mk_cmedl_params *cp = &cfg->cp;
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    s->cp = cp;
    s->ema = -1;
    mk_status st = mk__load_data(L, &c->data, c->data.ct_modality, 1, 100, "ct", 30, &s->ct);
    if (st != MK_OK)
        return st;
    const mk_slices *ct = mk_loop_slices(L, s->ct);
    MK_LOG_I(ctx, "baseline: %lld CT slices (%lld with the structure) from %d volumes",
             (long long)ct->n, (long long)ct->n_fg, ct->volumes);
    if ((s->student = mk_loop_add_unet(L, "student", &c->unet, mk__seed(c->seed, 21))) < 0)
        return ctx->status;
    mk_sched sched = mk_method_sched(cp->schedule, cp->lr, iterations(cfg));
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    oc.lr = cp->lr;
    if ((st = mk_loop_add_optim(L, s->student, &oc, &sched)) != MK_OK)
        return st;
    if (cp->ema > 0 && (s->ema = mk_loop_add_ema(L, "student_ema", s->student, cp->ema,
                                                 mk__seed(c->seed, 21))) < 0)
        return ctx->status;
    int64_t ne[4] = {cp->batch, 1, c->data.patch[1], c->data.patch[0]};
    if (mk_tensor_new(&s->xc, 4, ne) ||
        !(s->yc = calloc((size_t)(cp->batch * ne[2] * ne[3]), sizeof *s->yc)))
        return mk_err(ctx, MK_ERR_NOMEM, "baseline: out of memory (batches)");
    return MK_OK;
}

static mk_status start(mk_loop *L, void *sp, int resumed)
{
    (void)resumed;
    state *s = sp;
    const mk_stage_common *c = mk_loop_common(L);
    MK_LOG_I(mk_loop_ctx(L), "baseline: student U-Net %d levels, width %d: %lld parameters",
             c->unet.levels, c->unet.base,
             (long long)mk_nn_params_numel(mk_loop_params(L, s->student)));
    return MK_OK;
}

static mk_status step(mk_loop *L, void *sp, mk_terms *terms)
{
    state *s = sp;
    mk_nn_graph *g = mk_loop_graph(L);
    mk_loop_batch(L, s->ct, s->cp->batch, &s->xc, s->yc, NULL);
    mk_nn_graph_begin(g, 1);
    mk_var *logits = mk_unet_forward(mk_loop_unet(L, s->student), g, mk_nn_input(g, &s->xc, 0));
    mk_var *ls = mk_method_seg_loss(g, logits, s->yc, s->cp->dice_weight);
    if (mk_nn_graph_oom(g) || !ls)
        return mk_err(mk_loop_ctx(L), MK_ERR_NOMEM,
                      "baseline: out of memory in the forward "
                      "pass");
    double l = mk_nn_value(ls);
    mk_nn_backward(g, mk_nn_scale(g, ls, s->cp->w_seg_student));
    mk_loop_optim_step(L, s->student);
    mk_terms_add(terms, "loss_s", l, s->cp->w_seg_student);
    return MK_OK;
}

static mk_status save(mk_loop *L, void *sp)
{
    state *s = sp;
    return mk_loop_save_unet(L, "baseline_student.h5", s->ema >= 0 ? s->ema : s->student,
                             mk_loop_common(L)->data.ct_modality, "student");
}

static void free_state(void *sp)
{
    state *s = sp;
    mk_tensor_free(&s->xc);
    free(s->yc);
}

static const mk_method_use USES[] = {
    {&mk_baseline_section, 0},
    {&mk_cmedl_section, offsetof(cfg_t, cp)},
};
static const mk_method_output OUTPUTS[] = {
    {"baseline", "models/baseline_student.h5", NULL, NULL, NULL, NULL},
};

static int val_net(mk_loop *L, void *sp, const char **modality)
{
    state *s = sp;
    *modality = mk_loop_common(L)->data.ct_modality;
    return s->ema >= 0 ? s->ema : s->student;
}

const mk_method mk_method_baseline = {
    .name = "baseline",
    .summary = "the CMEDL student trained on CT alone",
    .uses = USES,
    .nuses = N(USES),
    .cfg_size = sizeof(cfg_t),
    .state_size = sizeof(state),
    .needs = needs,
    .iterations = iterations,
    .init = init,
    .start = start,
    .step = step,
    .save = save,
    .free = free_state,
    .outputs = OUTPUTS,
    .noutputs = N(OUTPUTS),
    .val_net = val_net,
    .data_parallel = 1,
    .split_batches = {"cmedl.batch"},
};

mk_status mk_stage_baseline(mk_ctx *ctx, const mk_stage_common *c, const mk_cmedl_params *cp,
                            int iterations, mk_train_stats *stats)
{
    cfg_t cfg;
    cfg.cp = *cp;
    cfg.iterations = iterations;
    return mk_method_train(ctx, &mk_method_baseline, c, &cfg, stats);
}
