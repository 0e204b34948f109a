/* Method `histo_kd`: a small student patch classifier distilled from the large teacher of
 * histo_cls (Hinton KD): loss = (1 - alpha) CE(student, label) on a batch of the labelled patches
 * + alpha T^2 KL(softmax(teacher / T) || softmax(student / T)) on a batch of the transfer set
 * (the labelled patches, or every tissue patch of the training slides: histo_kd.transfer).
 * T fixed (histo_kd.t_fixed) or CTKD's global learnable temperature (T = t_start + t_end
 * sigmoid(theta) behind a gradient reversal whose factor follows CTKD's cosine curriculum 0 -> -1
 * over ctkd_ramp of the iterations; theta in the student's optimiser settings). The teacher runs
 * in eval mode (its running statistics), never updated. Writes models/histo_kd_student.h5. */
#include <stdlib.h>
#include <string.h>

#include "core/mk_log.h"
#include "mk_histo_stage.h"
#include "mk_method.h"
#include "nn/mk_nn_blocks.h"
#include "stage_internal.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

enum { T_FIXED = 0, T_GLOBAL };
enum { TR_LABELLED = 0, TR_TISSUE };

typedef struct kd_params {
    int iterations, width, depth;
    float alpha, t_fixed, t_start, t_end, ctkd_ramp;
    int temperature, transfer;
    int transfer_per_slide;
    const char *teacher_model;
} kd_params;

typedef struct cfg_t {
    kd_params kp;
    mk_histo_params hp;
} cfg_t;

#define K kd_params
static const mk_param_row ROWS[] = {
    MK_P_INT(K, iterations, "iterations", "0", 0, 1e9, "iterations (0: histo.iterations)"),
    MK_P_INT(K, width, "width", "4", 1, 1024, "channels of the student's first level"),
    MK_P_INT(K, depth, "depth", "0", 0, 6, "levels of the student (0: histo.depth)"),
    MK_P_FLOAT(K, alpha, "alpha", "0.9", 0, 1, "weight of the KD term (1 - alpha: cross-entropy)"),
    MK_P_CHOICE(K, temperature, "temperature", "fixed", "fixed|global",
                "fixed T (t_fixed), or CTKD's global learnable temperature"),
    MK_P_FLOAT(K, t_fixed, "t_fixed", "4.0", 1e-3, 1e3, "temperature = \"fixed\": T"),
    MK_P_FLOAT(K, t_start, "t_start", "1.0", 1e-3, 1e3,
               "CTKD: T = t_start + t_end * sigmoid(theta)"),
    MK_P_FLOAT(K, t_end, "t_end", "20.0", 0, 1e3, "CTKD: the range of T above t_start"),
    MK_P_FLOAT(K, ctkd_ramp, "ctkd_ramp", "0.1", 0, 1,
               "CTKD: share of the iterations over which the reversal factor goes 0 -> -1"),
    MK_P_CHOICE(K, transfer, "transfer", "tissue", "labelled|tissue",
                "KD batches from the labelled patches, or from every tissue patch of the "
                "training slides (labels not used)"),
    MK_P_INT(K, transfer_per_slide, "transfer_per_slide", "512", 0, 1e9,
             "transfer = \"tissue\": at most this many patches a slide (0: all)"),
    MK_P_PATH(K, teacher_model, "teacher_model", MK_PARAM_MUST_EXIST,
              "the teacher's model file; unset: models/histo_cls.h5 of this run (histo_cls "
              "before histo_kd)"),
};
#undef K
const mk_param_section mk_histo_kd_section = {
    "histo_kd", "a small student classifier distilled from histo_cls's teacher (KD, CTKD)", ROWS,
    N(ROWS)};

typedef struct state {
    const cfg_t *cfg;
    mk_histo_set lab, tr;
    mk_rng *rl, *rt;
    int teacher, student, temp;
    float *xl, *xt;
    int32_t *yl, *yt;
    float *tlog; /* teacher logits of the transfer batch [B][C] */
} state;

static mk_status check(mk_ctx *ctx, const mk_stage_common *c, const void *cfgp)
{
    (void)c;
    return mk_histo_params_check(ctx, &((const cfg_t *)cfgp)->hp);
}

static int needs(const mk_stage_common *c, const void *cfgp, mk_data_need *out)
{
    (void)c;
    out[0] = (mk_data_need){((const cfg_t *)cfgp)->hp.modality, 1, NULL, NULL, 0, 0};
    return 1;
}

static long long iterations(const void *cfgp)
{
    const cfg_t *cfg = cfgp;
    return cfg->kp.iterations > 0 ? cfg->kp.iterations : cfg->hp.iterations;
}

static const char *after(const void *cfgp)
{
    return ((const cfg_t *)cfgp)->kp.teacher_model ? NULL : "histo_cls";
}

static mk_status init(mk_loop *L, void *sp, const void *cfgp)
{
    state *s = sp;
    const cfg_t *cfg = cfgp;
    const kd_params *kp = &cfg->kp;
    const mk_histo_params *hp = &cfg->hp;
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    s->cfg = cfg;
    s->temp = -1;
    mk_status st = mk__histo_train_set(L, hp, &s->lab);
    if (st != MK_OK)
        return st;
    if (kp->transfer == TR_TISSUE) {
        if ((st = mk_histo_set_load(ctx, &c->data, hp, "train", hp->train_domain, 0, 0,
                                    kp->transfer_per_slide, mk__seed(c->seed, 610), 0, &s->tr,
                                    NULL)) != MK_OK)
            return mk_err_prefix(ctx, "histo_kd: transfer patches");
        MK_LOG_I(ctx, "histo_kd: transfer set: %lld tissue patches of %d slides",
                 (long long)s->tr.n, s->tr.nslides);
    }
    if (!(s->rl = mk_loop_add_rng(L, "patches", mk__seed(c->seed, 601))) ||
        !(s->rt = mk_loop_add_rng(L, "transfer", mk__seed(c->seed, 611))))
        return ctx->status;
    /* the teacher, its shape from its file */
    char tpath[4200];
    if (kp->teacher_model)
        snprintf(tpath, sizeof tpath, "%s", kp->teacher_model);
    else
        snprintf(tpath, sizeof tpath, "%s/models/histo_cls.h5", c->run_dir);
    mk_histo_model tm;
    if ((st = mk_histo_model_load(ctx, tpath, &tm)) != MK_OK)
        return mk_err_prefix(ctx, "histo_kd: teacher");
    if (tm.p.level != hp->level || tm.p.patch != hp->patch || tm.p.norm != hp->norm) {
        mk_histo_model_free(&tm);
        return mk_err(ctx, MK_ERR_CONFIG,
                      "histo_kd: the teacher %s reads level %d, %d px patches, norm %s; [histo] "
                      "asks for level %d, %d px, norm %s",
                      tpath, tm.p.level, tm.p.patch, mk_histo_norm_name(tm.p.norm), hp->level,
                      hp->patch, mk_histo_norm_name(hp->norm));
    }
    mk_classifier *tnet = tm.net;
    tm.net = NULL;
    mk_histo_model_free(&tm);
    if ((s->teacher = mk_loop_add_model(L, "teacher", tnet, mk_classifier_params(tnet),
                                        (void (*)(void *))mk_classifier_free)) < 0)
        return ctx->status;
    mk_classifier_cfg sc = mk_histo_classifier_cfg(hp, kp->width, kp->depth);
    if ((s->student = mk_histo_loop_classifier(L, "student", &sc, mk__seed(c->seed, 612))) < 0)
        return ctx->status;
    if ((st = mk__histo_add_optim(L, s->student, hp, 0, iterations(cfg))) != MK_OK)
        return st;
    if (kp->temperature == T_GLOBAL) {
        mk_nn_params *tp = mk_nn_params_new();
        int64_t one = 1;
        mk_param *th = tp ? mk_nn_params_add(tp, "theta", 1, &one, 0) : NULL;
        if (!th) {
            mk_nn_params_free(tp);
            return mk_err(ctx, MK_ERR_NOMEM, "histo_kd: out of memory (temperature)");
        }
        th->value.data[0] = 1.0f; /* CTKD: theta0 = 1 */
        if ((s->temp = mk_loop_add_params(L, "temperature", tp)) < 0 ||
            (st = mk__histo_add_optim(L, s->temp, hp, 0, iterations(cfg))) != MK_OK)
            return ctx->status;
    }
    int64_t np_t = mk_nn_params_numel(mk_loop_params(L, s->teacher));
    int64_t np_s = mk_nn_params_numel(mk_loop_params(L, s->student));
    MK_LOG_I(ctx,
             "histo_kd: teacher %lld parameters (width %d, depth %d), student %lld (width %d, "
             "depth %d): %.1fx fewer",
             (long long)np_t, mk_classifier_config(tnet)->base, mk_classifier_config(tnet)->depth,
             (long long)np_s, sc.base, sc.depth, (double)np_t / (double)np_s);
    size_t plane = 3 * (size_t)hp->patch * (size_t)hp->patch, B = (size_t)hp->batch;
    if (!(s->xl = malloc(B * plane * sizeof(float))) ||
        !(s->xt = malloc(B * plane * sizeof(float))) || !(s->yl = malloc(B * sizeof(int32_t))) ||
        !(s->yt = malloc(B * sizeof(int32_t))) ||
        !(s->tlog = malloc(B * MK_HISTO_CLASSES * sizeof(float))))
        return mk_err(ctx, MK_ERR_NOMEM, "histo_kd: out of memory (batches)");
    return MK_OK;
}

static mk_status step(mk_loop *L, void *sp, mk_terms *terms)
{
    state *s = sp;
    const kd_params *kp = &s->cfg->kp;
    const mk_histo_params *hp = &s->cfg->hp;
    mk_nn_graph *g = mk_loop_graph(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    int B = hp->batch, C = MK_HISTO_CLASSES;
    const mk_histo_set *tr = kp->transfer == TR_TISSUE ? &s->tr : &s->lab;
    mk_histo_batch(&s->lab, s->rl, B, hp->augment, s->xl, s->yl);
    mk_histo_batch(tr, s->rt, B, hp->augment, s->xt, s->yt);
    mk_tensor tl, tt, tz;
    mk__histo_wrap(&tl, s->xl, B, 3, s->lab.size);
    mk__histo_wrap(&tt, s->xt, B, 3, s->lab.size);
    int32_t *yl = s->yl; /* data parallelism: this rank's patches of both batches */
    mk_loop_take_share(L, &tl, &yl);
    int64_t nt = mk_loop_take_share(L, &tt, NULL);
    /* the teacher: eval mode, no gradients */
    int prev = mk_nn_graph_set_no_grad(g, 1);
    mk_nn_graph_begin(g, 0);
    mk_var *zt =
        mk_classifier_forward(mk_loop_model(L, s->teacher), g, mk_nn_input(g, &tt, 0), NULL);
    mk_nn_graph_set_no_grad(g, prev);
    if (!zt || mk_nn_graph_oom(g))
        return mk_err(ctx, MK_ERR_NOMEM, "histo_kd: out of memory in the teacher's pass");
    memcpy(s->tlog, zt->t.data, (size_t)nt * C * sizeof(float));
    mk__histo_wrap(&tz, s->tlog, nt, C, 1);
    tz.batch_of = zt->t.batch_of;
    long long it = mk_loop_iter(L);
    double span = kp->ctkd_ramp * (double)mk_loop_total(L);
    float factor =
        (float)mk_nn_ctkd_cosine_decay(span > 0 ? 10.0 * (double)it / span : 10.0, 0, -1, 10);
    mk_nn_graph_begin(g, 1);
    mk_classifier *stu = mk_loop_model(L, s->student);
    mk_var *sl = mk_classifier_forward(stu, g, mk_nn_input(g, &tl, 0), NULL);
    mk_var *st_ = mk_classifier_forward(stu, g, mk_nn_input(g, &tt, 0), NULL);
    mk_var *T = s->temp >= 0
                    ? mk_nn_ctkd_temperature(
                          g, mk_nn_param(g, mk_nn_params_find(mk_loop_params(L, s->temp), "theta")),
                          factor, kp->t_start, kp->t_end)
                    : mk_nn_scalar(g, kp->t_fixed, 0);
    mk_var *ce = mk_nn_cross_entropy(g, sl, yl, NULL, -100);
    mk_var *kd = mk_nn_kd_kl(g, st_, mk_nn_input(g, &tz, 0), T, MK_NN_KD_BATCHMEAN);
    mk_var *l = mk_nn_add(g, mk_nn_scale(g, ce, 1.0f - kp->alpha), mk_nn_scale(g, kd, kp->alpha));
    if (!l || mk_nn_graph_oom(g))
        return mk_err(ctx, MK_ERR_NOMEM, "histo_kd: out of memory in the forward pass");
    mk_terms_add(terms, "loss", mk_nn_value(l), 1);
    mk_terms_add(terms, "ce", mk_nn_value(ce), 1.0f - kp->alpha);
    mk_terms_add(terms, "kd", mk_nn_value(kd), kp->alpha);
    if (s->temp >= 0)
        mk_terms_add(terms, "T", mk_nn_value(T), 0);
    mk_nn_backward(g, l);
    mk_loop_optim_step(L, s->student);
    if (s->temp >= 0)
        mk_loop_optim_step(L, s->temp);
    return MK_OK;
}

static mk_status save(mk_loop *L, void *sp)
{
    state *s = sp;
    return mk_histo_save_classifier(L, &s->cfg->hp, "histo_kd_student.h5", s->student, "student");
}

static void free_state(void *sp)
{
    state *s = sp;
    mk_histo_set_free(&s->lab);
    mk_histo_set_free(&s->tr);
    free(s->xl);
    free(s->xt);
    free(s->yl);
    free(s->yt);
    free(s->tlog);
}

static const mk_method_use USES[] = {
    {&mk_histo_kd_section, offsetof(cfg_t, kp)},
    {&mk_histo_section, offsetof(cfg_t, hp)},
};
static const mk_method_output OUTPUTS[] = {
    {"histo_kd_student", "models/histo_kd_student.h5", NULL, NULL, NULL, "histo.modality"},
};

const mk_method mk_method_histo_kd = {
    .name = "histo_kd",
    .summary = "small histology classifier distilled from histo_cls (KD, CTKD temperature)",
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
    .classifier = 1,
    .after = after,
    .data_parallel = 1,
    .split_batches = {"histo.batch"},
};
