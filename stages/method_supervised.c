/* Method `supervised`: a plain supervised U-Net on the labelled train rows of one modality (any
 * number of structures). The smallest complete method, and the template for a new one: one file,
 * one row in stages/methods.c, one section in docs/stages.md. Writes
 * models/supervised_student.h5. */
#include <stdlib.h>
#include <string.h>

#include "mk_method.h"
#include "stage_internal.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct mk_supervised_params {
    int iterations, batch;
    float lr, dice_weight, ema;
    int dice_background; /* 1: the soft Dice averages every class, background included */
    int schedule;        /* mk_train_schedule */
    const char *modality;
} P;

static const mk_param_row ROWS[] = {
    MK_P_INT(P, iterations, "iterations", "1000", 1, 1e9, "training iterations"),
    MK_P_INT(P, batch, "batch", "4", 1, 1024, "labelled slices per batch"),
    MK_P_FLOAT(P, lr, "lr", "1e-3", 0, 1, "Adam learning rate"),
    MK_P_FLOAT(P, dice_weight, "dice_weight", "0.5", 0, 1,
               "segmentation loss = w*Dice + (1-w)*CE (soft Dice over every class)"),
    MK_P_BOOL(P, dice_background, "dice_background", "true",
              "the soft Dice averages every class including the background (false: the "
              "structures only, methods notes 0.2)"),
    MK_P_FLOAT(P, ema, "ema", "0.0", 0, 0.99999,
               "> 0: save the moving average of the weights with this decay"),
    MK_P_CHOICE(P, schedule, "schedule", "poly", "constant|poly|cosine",
                "learning-rate schedule (poly: power 0.9, as nnU-Net)"),
    MK_P_STR(P, modality, "modality", "MR",
             "manifest modality trained on (normalised as CT when it is data.ct_modality, else as "
             "MRI)"),
};
const mk_param_section mk_supervised_section = {
    "supervised", "a plain supervised U-Net on one modality (any number of structures)", ROWS,
    N(ROWS)};

typedef struct state {
    const P *p;
    int data, net, ema;
    mk_tensor x;
    int32_t *y;
} state;

static int needs(const mk_stage_common *c, const void *cfg, mk_data_need *out)
{
    (void)c;
    out[0] = (mk_data_need){((const P *)cfg)->modality, 1, NULL, NULL, 0, 0};
    return 1;
}

static long long iterations(const void *cfg)
{
    return ((const P *)cfg)->iterations;
}

static mk_status init(mk_loop *L, void *sp, const void *cfg)
{
    state *s = sp;
    const P *p = cfg;
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    s->p = p;
    s->ema = -1;
    mk_status st = mk__load_data(L, &c->data, p->modality, 1, 100, "train", 30, &s->data);
    if (st != MK_OK)
        return st;
    const mk_slices *d = mk_loop_slices(L, s->data);
    MK_LOG_I(ctx,
             "supervised: %lld %s slices (%lld with a structure) from %d volumes, %d "
             "classes",
             (long long)d->n, p->modality, (long long)d->n_fg, d->volumes, c->unet.classes);
    if ((s->net = mk_loop_add_unet(L, "student", &c->unet, mk__seed(c->seed, 21))) < 0)
        return ctx->status;
    mk_sched sched = mk_method_sched(p->schedule, p->lr, p->iterations);
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    oc.lr = p->lr;
    if ((st = mk_loop_add_optim(L, s->net, &oc, &sched)) != MK_OK)
        return st;
    if (p->ema > 0 &&
        (s->ema = mk_loop_add_ema(L, "student_ema", s->net, p->ema, mk__seed(c->seed, 21))) < 0)
        return ctx->status;
    int64_t ne[4] = {p->batch, 1, c->data.patch[1], c->data.patch[0]};
    if (mk_tensor_new(&s->x, 4, ne) ||
        !(s->y = calloc((size_t)(p->batch * ne[2] * ne[3]), sizeof *s->y)))
        return mk_err(ctx, MK_ERR_NOMEM, "supervised: out of memory (batches)");
    return MK_OK;
}

static mk_status step(mk_loop *L, void *sp, mk_terms *terms)
{
    state *s = sp;
    return mk_method_supervised_step(L, s->data, s->net, s->p->batch, &s->x, s->y,
                                     s->p->dice_weight, s->p->dice_background, "loss", terms);
}

static mk_status save(mk_loop *L, void *sp)
{
    state *s = sp;
    return mk_loop_save_unet(L, "supervised_student.h5", s->ema >= 0 ? s->ema : s->net,
                             s->p->modality, "student");
}

static void free_state(void *sp)
{
    state *s = sp;
    mk_tensor_free(&s->x);
    free(s->y);
}

static const mk_method_use USES[] = {{&mk_supervised_section, 0}};
static const mk_method_output OUTPUTS[] = {
    {"supervised", "models/supervised_student.h5", NULL, NULL, NULL, "supervised.modality"},
};

static int val_net(mk_loop *L, void *sp, const char **modality)
{
    (void)L;
    state *s = sp;
    *modality = s->p->modality;
    return s->ema >= 0 ? s->ema : s->net;
}

const mk_method mk_method_supervised = {
    .name = "supervised",
    .summary = "a plain supervised U-Net on one modality",
    .uses = USES,
    .nuses = N(USES),
    .cfg_size = sizeof(P),
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
    .split_batches = {"supervised.batch"},
};
