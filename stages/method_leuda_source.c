/* Method `leuda_source`: the source-only baseline of LE-UDA (methods notes §3.7). The student of
 * `leuda` trained on its labelled part alone: the labelled source slices x^s and their cycle
 * reconstructions x^{s->t->s} through the same frozen translator, the same mask, the same
 * initial weights, batches, augmentation, learning rate and warm-up (it reads the [leuda]
 * section), so it differs from leuda only by the unlabelled terms. Writes
 * models/leuda_source.h5 and models/leuda_translator.h5; evaluated, like leuda, on the target
 * test images translated to the source look (G) and as they are. */
#include <string.h>

#include "mk_method.h"
#include "stage_internal.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct cfg_t {
    int iterations; /* 0: leuda.iterations */
    mk_leuda_params p;
    mk_translate_params tp;
} cfg_t;

static const mk_param_row ROWS[] = {
    MK_P_INT(cfg_t, iterations, "iterations", "0", 0, 1e9,
             "iterations of the source-only student (0: the same as leuda.iterations)"),
};
const mk_param_section mk_leuda_source_section = {
    "leuda_source",
    "LE-UDA's source-only baseline (labelled source and its cycle images; reads [leuda])", ROWS,
    N(ROWS)};

typedef struct state {
    mk__leuda_src src; /* first: the shared part */
    mk_leuda_params p; /* [leuda] with this stage's iterations */
} state;

static int needs(const mk_stage_common *c, const void *cfgp, mk_data_need *out)
{
    const mk_leuda_params *p = &((const cfg_t *)cfgp)->p;
    out[0] =
        (mk_data_need){c->data.mri_modality, 1, NULL, "leuda.source_volumes", 0, p->source_volumes};
    return 1;
}

static long long iterations(const void *cfgp)
{
    const cfg_t *cfg = cfgp;
    return cfg->iterations > 0 ? cfg->iterations : cfg->p.iterations;
}

static mk_status init(mk_loop *L, void *sp, const void *cfgp)
{
    const cfg_t *cfg = cfgp;
    state *s = sp;
    s->p = cfg->p;
    s->p.iterations = (int)iterations(cfg);
    return mk__leuda_src_init(L, &s->src, &s->p, &cfg->tp);
}

static mk_status step(mk_loop *L, void *sp, mk_terms *terms)
{
    mk__leuda_src *s = &((state *)sp)->src;
    mk_nn_graph *g = mk_loop_graph(L);
    mk_nn_graph_begin(g, 1);
    mk_var *seg = mk__leuda_src_seg(L, s);
    if (!seg || mk_nn_graph_oom(g))
        return mk_err(mk_loop_ctx(L), MK_ERR_NOMEM,
                      "leuda_source: out of memory in the forward pass");
    mk_terms_add(terms, "seg", mk_nn_value(seg), 1);
    mk_nn_backward(g, seg);
    mk_loop_optim_step(L, s->student);
    return MK_OK;
}

static mk_status save(mk_loop *L, void *sp)
{
    return mk__leuda_src_save(L, &((state *)sp)->src, "leuda_source.h5");
}

static void free_state(void *sp)
{
    mk__leuda_src_free(&((state *)sp)->src);
}

static int val_net(mk_loop *L, void *sp, const char **modality)
{
    *modality = mk_loop_common(L)->data.mri_modality;
    return ((state *)sp)->src.student;
}

static const char *after(const void *cfgp)
{
    return mk__leuda_after(&((const cfg_t *)cfgp)->p);
}

static const mk_method_use USES[] = {
    {&mk_leuda_source_section, 0},
    {&mk_leuda_section, offsetof(cfg_t, p)},
    {&mk_translate_section, offsetof(cfg_t, tp)},
};
static const mk_method_output OUTPUTS[] = {
    {"leuda_source", "models/leuda_source.h5", "models/leuda_translator.h5", NULL, NULL, NULL},
    {"leuda_source_ct", "models/leuda_source.h5", NULL, NULL, NULL, NULL},
};

const mk_method mk_method_leuda_source = {
    .name = "leuda_source",
    .summary = "LE-UDA's source-only baseline: labelled source + its cycle images",
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
    .after = after,
    .data_parallel = 1,
    .split_batches = {"leuda.batch"},
};
