/* Method `histo_cls`: the supervised patch classifier (models/mk_classifier.h) on the few labelled
 * patches of [histo] (histo.labelled_per_class of each class from the train slides of
 * histo.train_domain), cross-entropy, Adam, random dihedral augmentation. It is the large
 * teacher of histo_kd and the real-data scorer of histo_synth. Writes models/histo_cls.h5. */
#include <stdlib.h>
#include <string.h>

#include "core/mk_log.h"
#include "mk_histo_stage.h"
#include "mk_method.h"
#include "models/mk_unet.h"
#include "stage_internal.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct cls_params {
    int iterations; /* 0: histo.iterations */
} cls_params;

typedef struct cfg_t {
    cls_params cp;
    mk_histo_params hp;
} cfg_t;

static const mk_param_row ROWS[] = {
    MK_P_INT(cls_params, iterations, "iterations", "0", 0, 1e9, "iterations (0: histo.iterations)"),
};
const mk_param_section mk_histo_cls_section = {
    "histo_cls", "supervised patch classifier on the labelled histology patches", ROWS, N(ROWS)};

typedef struct state {
    const cfg_t *cfg;
    mk_histo_set set;
    mk_rng *rng;
    int net;
    float *x;
    int32_t *y;
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
    return cfg->cp.iterations > 0 ? cfg->cp.iterations : cfg->hp.iterations;
}

/* The labelled training set of [histo], shared by the histology methods. */
mk_status mk__histo_train_set(mk_loop *L, const mk_histo_params *hp, mk_histo_set *set)
{
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    mk_status st =
        mk_histo_set_load(ctx, &c->data, hp, "train", hp->train_domain, hp->labelled_per_class, 1,
                          0, mk__seed(c->seed, 600), 0, set, NULL);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "%s: training patches", mk_loop_stage(L));
    int64_t pos = 0;
    for (int64_t i = 0; i < set->n; i++)
        pos += set->y[i] == 1;
    MK_LOG_I(ctx,
             "%s: %lld labelled patches (%lld %s, %lld %s) of %d px at level %d from %d "
             "slides%s%s",
             mk_loop_stage(L), (long long)set->n, (long long)(set->n - pos), hp->class_names.v[0],
             (long long)pos, hp->class_names.v[1], hp->patch, hp->level, set->nslides,
             hp->train_domain[0] ? " of " : "", hp->train_domain);
    return MK_OK;
}

/* One supervised step of classifier `net` on a batch of `set`. */
mk_status mk__histo_cls_step(mk_loop *L, int net, const mk_histo_set *set, mk_rng *rng,
                             const mk_histo_params *hp, float *x, int32_t *y, const char *term,
                             mk_terms *terms)
{
    mk_nn_graph *g = mk_loop_graph(L);
    mk_histo_batch(set, rng, hp->batch, hp->augment, x, y);
    mk_tensor t;
    mk__histo_wrap(&t, x, hp->batch, 3, set->size);
    mk_loop_take_share(L, &t, &y); /* data parallelism: this rank's patches */
    mk_nn_graph_begin(g, 1);
    mk_var *lg = mk_classifier_forward(mk_loop_model(L, net), g, mk_nn_input(g, &t, 0), NULL);
    mk_var *l = mk_nn_cross_entropy(g, lg, y, NULL, -100);
    if (mk_nn_graph_oom(g) || !l)
        return mk_err(mk_loop_ctx(L), MK_ERR_NOMEM, "%s: out of memory in the forward pass",
                      mk_loop_stage(L));
    mk_terms_add(terms, term, mk_nn_value(l), 1);
    mk_nn_backward(g, l);
    mk_loop_optim_step(L, net);
    return MK_OK;
}

mk_status mk__histo_add_optim(mk_loop *L, int net, const mk_histo_params *hp, long long start,
                              long long total)
{
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    oc.lr = hp->lr;
    mk_sched sched = mk_method_sched(MK_TRAIN_COSINE, hp->lr, total);
    sched.start_iter = start;
    return mk_loop_add_optim(L, net, &oc, &sched);
}

static mk_status init(mk_loop *L, void *sp, const void *cfgp)
{
    state *s = sp;
    const cfg_t *cfg = cfgp;
    const mk_stage_common *c = mk_loop_common(L);
    s->cfg = cfg;
    mk_status st = mk__histo_train_set(L, &cfg->hp, &s->set);
    if (st != MK_OK)
        return st;
    if (!(s->rng = mk_loop_add_rng(L, "patches", mk__seed(c->seed, 601))))
        return mk_loop_ctx(L)->status;
    mk_classifier_cfg cc = mk_histo_classifier_cfg(&cfg->hp, 0, 0);
    if ((s->net = mk_histo_loop_classifier(L, "classifier", &cc, mk__seed(c->seed, 602))) < 0)
        return mk_loop_ctx(L)->status;
    if ((st = mk__histo_add_optim(L, s->net, &cfg->hp, 0, iterations(cfg))) != MK_OK)
        return st;
    size_t plane = 3 * (size_t)cfg->hp.patch * (size_t)cfg->hp.patch;
    if (!(s->x = malloc((size_t)cfg->hp.batch * plane * sizeof *s->x)) ||
        !(s->y = malloc((size_t)cfg->hp.batch * sizeof *s->y)))
        return mk_err(mk_loop_ctx(L), MK_ERR_NOMEM, "histo_cls: out of memory (batches)");
    MK_LOG_I(mk_loop_ctx(L), "histo_cls: classifier width %d, depth %d: %lld parameters", cc.base,
             cc.depth, (long long)mk_nn_params_numel(mk_loop_params(L, s->net)));
    return MK_OK;
}

static mk_status step(mk_loop *L, void *sp, mk_terms *terms)
{
    state *s = sp;
    return mk__histo_cls_step(L, s->net, &s->set, s->rng, &s->cfg->hp, s->x, s->y, "loss_ce",
                              terms);
}

static mk_status save(mk_loop *L, void *sp)
{
    state *s = sp;
    return mk_histo_save_classifier(L, &s->cfg->hp, "histo_cls.h5", s->net, "classifier");
}

static void free_state(void *sp)
{
    state *s = sp;
    mk_histo_set_free(&s->set);
    free(s->x);
    free(s->y);
}

static const mk_method_use USES[] = {
    {&mk_histo_cls_section, offsetof(cfg_t, cp)},
    {&mk_histo_section, offsetof(cfg_t, hp)},
};
static const mk_method_output OUTPUTS[] = {
    {"histo_cls", "models/histo_cls.h5", NULL, NULL, NULL, "histo.modality"},
};

const mk_method mk_method_histo_cls = {
    .name = "histo_cls",
    .summary = "supervised histology patch classifier",
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
    .data_parallel = 1,
    .split_batches = {"histo.batch"},
};

mk_status mk__histo_load_into(mk_loop *L, const char *path, int net)
{
    mk_status st = mk_model_load(mk_loop_ctx(L), path, "params", mk_loop_params(L, net), NULL);
    return st == MK_OK ? st : mk_err_prefix(mk_loop_ctx(L), "%s", mk_loop_stage(L));
}

mk_status mk__histo_check_generator(mk_ctx *ctx, const mk_histo_params *hp, const char *who)
{
    mk_status st = mk_histo_params_check(ctx, hp);
    if (st != MK_OK)
        return st;
    if (hp->norm != MK_HISTO_NORM_NONE)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "histo.norm: %s makes RGB in [0, 1], so it needs \"none\", got \"%s\"", who,
                      mk_histo_norm_name(hp->norm));
    if (hp->patch % 8 != 0)
        return mk_err(ctx, MK_ERR_CONFIG, "histo.patch: %s needs a multiple of 8, got %d", who,
                      hp->patch);
    return MK_OK;
}

void mk__histo_wrap(mk_tensor *t, float *data, int64_t n, int64_t c, int64_t side)
{
    memset(t, 0, sizeof *t);
    mk_tensor_set_shape(t, 4, (int64_t[4]){n, c, side, side});
    t->data = data;
}
