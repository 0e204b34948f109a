/* Method `translate`: unpaired CT->MRI translation (CycleGAN-style, LSGAN). G: CT->MR, F: MR->CT,
 * D_MR, D_CT. Per iteration one generator step (LSGAN (D(fake)-1)^2, cycle L1 x lambda_cycle,
 * identity L1 x lambda_cycle * lambda_identity) and one discriminator step
 * (0.5 [(D(real)-1)^2 + D(fake)^2] on this iteration's fakes). Writes models/translator.h5.
 * Its networks and steps (mk__i2i_*) are shared with cmedl, which trains the translator jointly. */
#include <stdlib.h>
#include <string.h>

#include "mk_method.h"
#include "stage_internal.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
typedef mk_translate_params P;

static const mk_param_row ROWS[] = {
    MK_P_INT(P, iterations, "iterations", "400", 0, 1e9,
             "warm-up iterations of CT->MRI translation alone"),
    MK_P_INT(P, batch, "batch", "4", 1, 1024, "slices per batch"),
    MK_P_FLOAT(P, lr, "lr", "2e-4", 0, 1, "Adam learning rate of generators and discriminators"),
    MK_P_FLOAT(P, beta1, "beta1", "0.5", 0, 0.999999, "Adam beta1"),
    MK_P_FLOAT(P, lambda_cycle, "lambda_cycle", "10.0", 0, 1e6,
               "weight of the cycle-consistency L1 loss"),
    MK_P_FLOAT(P, lambda_identity, "lambda_identity", "0.5", 0, 1e6,
               "weight of the identity loss (relative to lambda_cycle)"),
    MK_P_INT(P, gen_width, "gen_width", "16", 1, 512, "generator channels"),
    MK_P_INT(P, disc_width, "disc_width", "16", 1, 512, "PatchGAN discriminator channels"),
};
const mk_param_section mk_translate_section = {
    "translate", "unpaired CT->MRI translation (CycleGAN-style)", ROWS, N(ROWS)};

void mk_translate_defaults(mk_translate_params *p)
{
    memset(p, 0, sizeof *p);
    mk_param_defaults(ROWS, N(ROWS), p);
}

/* ---------------------------------------------------------------- shared with cmedl */

static const char *const I2I_NAME[4] = {"G", "F", "D_MR", "D_CT"};

mk_status mk__i2i_init(mk_loop *L, mk__i2i *t, const mk_translate_params *tp, int batch)
{
    const mk_stage_common *c = mk_loop_common(L);
    for (int k = 0; k < 4; k++) {
        t->net[k] = mk_loop_add_translator(
            L, I2I_NAME[k], k < 2 ? MK_TRANSLATOR_GEN : MK_TRANSLATOR_DISC,
            k < 2 ? tp->gen_width : tp->disc_width, mk__seed(c->seed, 10 + (uint64_t)k));
        if (t->net[k] < 0)
            return mk_loop_ctx(L)->status;
    }
    for (int k = 0; k < 4; k++) {
        mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
        oc.lr = tp->lr;
        oc.beta1 = tp->beta1;
        mk_status st = mk_loop_add_optim(L, t->net[k], &oc, NULL);
        if (st != MK_OK)
            return st;
    }
    int64_t ne[4] = {batch, 1, c->data.patch[1], c->data.patch[0]};
    if (mk_tensor_new(&t->xc, 4, ne) || mk_tensor_new(&t->xm, 4, ne) ||
        mk_tensor_new(&t->fake_m, 4, ne) || mk_tensor_new(&t->fake_c, 4, ne) ||
        !(t->yc = calloc((size_t)(batch * ne[2] * ne[3]), sizeof *t->yc)) ||
        !(t->ym = calloc((size_t)(batch * ne[2] * ne[3]), sizeof *t->ym)))
        return mk_err(mk_loop_ctx(L), MK_ERR_NOMEM, "%s: out of memory (batches)",
                      mk_loop_stage(L));
    return MK_OK;
}

void mk__i2i_free(mk__i2i *t)
{
    mk_tensor_free(&t->xc);
    mk_tensor_free(&t->xm);
    mk_tensor_free(&t->fake_m);
    mk_tensor_free(&t->fake_c);
    free(t->yc);
    free(t->ym);
}

void mk__i2i_freeze_d(mk_loop *L, const mk__i2i *t, int frozen)
{
    for (int k = 2; k < 4; k++)
        mk_nn_params_set_frozen(mk_loop_params(L, t->net[k]), "", frozen);
}

mk_var *mk__i2i_gen(mk_loop *L, mk__i2i *t, const mk_translate_params *tp, mk_var *xc, mk_var *xm,
                    mk_var **fake_m_out, mk_var **fake_c_out)
{
    mk_nn_graph *g = mk_loop_graph(L);
    mk_translator *G = mk_loop_translator(L, t->net[0]), *F = mk_loop_translator(L, t->net[1]);
    mk_translator *DM = mk_loop_translator(L, t->net[2]), *DC = mk_loop_translator(L, t->net[3]);
    mk_var *fake_m = mk_translator_forward(G, g, xc);
    mk_var *rec_c = mk_translator_forward(F, g, fake_m);
    mk_var *fake_c = mk_translator_forward(F, g, xm);
    mk_var *rec_m = mk_translator_forward(G, g, fake_c);
    mk_var *adv = mk_nn_add(g, mk_nn_adv_ls(g, mk_translator_forward(DM, g, fake_m), 1),
                            mk_nn_adv_ls(g, mk_translator_forward(DC, g, fake_c), 1));
    mk_var *cyc = mk_nn_add(g, mk_nn_l1(g, rec_c, xc), mk_nn_l1(g, rec_m, xm));
    mk_var *total = mk_nn_add(g, adv, mk_nn_scale(g, cyc, tp->lambda_cycle));
    if (tp->lambda_identity > 0) {
        mk_var *id = mk_nn_add(g, mk_nn_l1(g, mk_translator_forward(G, g, xm), xm),
                               mk_nn_l1(g, mk_translator_forward(F, g, xc), xc));
        total = mk_nn_add(g, total, mk_nn_scale(g, id, tp->lambda_cycle * tp->lambda_identity));
    }
    *fake_m_out = fake_m;
    *fake_c_out = fake_c;
    return total;
}

void mk__i2i_keep_fakes(mk__i2i *t, const mk_var *fake_m, const mk_var *fake_c)
{
    t->fake_m.ne[0] = fake_m->t.ne[0]; /* this process's share of the batch */
    t->fake_c.ne[0] = fake_c->t.ne[0];
    t->fake_m.batch_of = fake_m->t.batch_of;
    t->fake_c.batch_of = fake_c->t.batch_of;
    mk_tensor_copy(&t->fake_m, &fake_m->t);
    mk_tensor_copy(&t->fake_c, &fake_c->t);
}

mk_status mk__i2i_disc(mk_loop *L, mk__i2i *t, double *ldisc)
{
    mk_nn_graph *g = mk_loop_graph(L);
    mk__i2i_freeze_d(L, t, 0);
    mk_nn_graph_begin(g, 1);
    mk_nn_params_zero_grad(mk_loop_params(L, t->net[2]));
    mk_nn_params_zero_grad(mk_loop_params(L, t->net[3]));
    mk_var *xm = mk_nn_input(g, &t->xm, 0), *xc = mk_nn_input(g, &t->xc, 0);
    mk_var *fm = mk_nn_input(g, &t->fake_m, 0), *fc = mk_nn_input(g, &t->fake_c, 0);
    mk_translator *dm = mk_loop_translator(L, t->net[2]), *dc = mk_loop_translator(L, t->net[3]);
    mk_var *ld = mk_nn_add(g, mk_nn_adv_ls(g, mk_translator_forward(dm, g, xm), 1),
                           mk_nn_adv_ls(g, mk_translator_forward(dm, g, fm), 0));
    ld = mk_nn_add(g, ld, mk_nn_adv_ls(g, mk_translator_forward(dc, g, xc), 1));
    ld = mk_nn_scale(g, mk_nn_add(g, ld, mk_nn_adv_ls(g, mk_translator_forward(dc, g, fc), 0)),
                     0.5f);
    if (mk_nn_graph_oom(g) || !ld)
        return mk_err(mk_loop_ctx(L), MK_ERR_NOMEM, "%s: out of memory in the discriminator pass",
                      mk_loop_stage(L));
    *ldisc = mk_nn_value(ld);
    mk_nn_backward(g, ld);
    mk_loop_optim_step(L, t->net[2]);
    mk_loop_optim_step(L, t->net[3]);
    return MK_OK;
}

mk_status mk__i2i_save(mk_loop *L, const mk__i2i *t, const char *file)
{
    return mk_loop_save_nets(L, file, "translator", t->net, 4);
}

/* ---------------------------------------------------------------- the method */

typedef struct state {
    mk__i2i t;
    int ct, mr;
    int batch;
} state;

static int needs(const mk_stage_common *c, const void *cfg, mk_data_need *out)
{
    (void)cfg;
    out[0] = (mk_data_need){c->data.mri_modality, 0, NULL, NULL, 0, 0};
    return 1;
}

static long long iterations(const void *cfg)
{
    return ((const P *)cfg)->iterations;
}

static mk_status init(mk_loop *L, void *sp, const void *cfg)
{
    state *s = sp;
    const P *tp = cfg;
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    s->batch = tp->batch;
    s->t.tp = tp;
    mk_status st = mk__load_data(L, &c->data, c->data.ct_modality, 0, 100, "ct", 30, &s->ct);
    if (st == MK_OK)
        st = mk__load_data(L, &c->data, c->data.mri_modality, 0, 101, "mr", 31, &s->mr);
    if (st != MK_OK)
        return st;
    const mk_slices *ct = mk_loop_slices(L, s->ct), *mr = mk_loop_slices(L, s->mr);
    MK_LOG_I(ctx, "translate: %lld CT slices (%lld with the structure) from %d volumes",
             (long long)ct->n, (long long)ct->n_fg, ct->volumes);
    MK_LOG_I(ctx, "translate: %lld MRI slices (%s) from %d volumes", (long long)mr->n,
             mr->lab ? "labelled" : "unlabelled", mr->volumes);
    return mk__i2i_init(L, &s->t, tp, tp->batch);
}

static mk_status step(mk_loop *L, void *sp, mk_terms *terms)
{
    state *s = sp;
    mk__i2i *t = &s->t;
    const P *tp = t->tp;
    mk_nn_graph *g = mk_loop_graph(L);
    mk_loop_batch(L, s->ct, s->batch, &t->xc, t->yc, NULL);
    mk_loop_batch(L, s->mr, s->batch, &t->xm, t->ym, NULL);
    mk__i2i_freeze_d(L, t, 1);
    mk_nn_graph_begin(g, 1);
    mk_var *xc = mk_nn_input(g, &t->xc, 0), *xm = mk_nn_input(g, &t->xm, 0), *fm, *fc;
    mk_var *total = mk__i2i_gen(L, t, tp, xc, xm, &fm, &fc);
    if (mk_nn_graph_oom(g) || !total)
        return mk_err(mk_loop_ctx(L), MK_ERR_NOMEM,
                      "translate: out of memory in the forward "
                      "pass");
    double lg = mk_nn_value(total), ld = 0;
    mk__i2i_keep_fakes(t, fm, fc);
    mk_nn_backward(g, total);
    mk_loop_optim_step(L, t->net[0]);
    mk_loop_optim_step(L, t->net[1]);
    mk_status st = mk__i2i_disc(L, t, &ld);
    mk_terms_add(terms, "gen", lg, 1);
    mk_terms_add(terms, "disc", ld, 1);
    return st;
}

static mk_status save(mk_loop *L, void *sp)
{
    return mk__i2i_save(L, &((state *)sp)->t, "translator.h5");
}

static void free_state(void *sp)
{
    mk__i2i_free(&((state *)sp)->t);
}

static const mk_method_use USES[] = {{&mk_translate_section, 0}};

const mk_method mk_method_translate = {
    .name = "translate",
    .summary = "unpaired CT->MRI translation (CycleGAN-style)",
    .uses = USES,
    .nuses = N(USES),
    .cfg_size = sizeof(P),
    .state_size = sizeof(state),
    .needs = needs,
    .iterations = iterations,
    .zero_skips = 1,
    .init = init,
    .step = step,
    .save = save,
    .free = free_state,
    .data_parallel = 1,
    .split_batches = {"translate.batch"},
};

mk_status mk_stage_translate(mk_ctx *ctx, const mk_stage_common *c, const mk_translate_params *tp,
                             mk_train_stats *stats)
{
    return mk_method_train(ctx, &mk_method_translate, c, tp, stats);
}
