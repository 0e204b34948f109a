/* Method `histo_meta`: generative meta curriculum learning (Li & Lovell 2023; methods.md §5.4).
 * One teacher generator (models/mk_classifier.h mk_cgen: noise + class -> RGB) is trained with
 * the student classifier, cooperating rather than competing: there is no discriminator; the
 * teacher is updated by how its samples improve the student on the real labelled patches.
 *
 * Each iteration (student theta, teacher phi, synthetic labels ys and noise z, a real batch r):
 *   1. look-ahead: theta' = theta - virtual_lr grad_theta CE(S_theta(G_phi(z)), ys)
 *      (one SGD step on the teacher's samples, on a copy of theta);
 *   2. g' = grad_theta' CE(S_theta'(x_v), y_v) on another real labelled batch v (the meta
 *      objective: the student's loss on real data after learning from the teacher);
 *   3. the teacher's gradient d CE(S_theta'(x_v)) / d phi = -virtual_lr (d^2 L_syn / d phi
 *      d theta) g', by a central difference as DARTS does: theta+- = theta +- eps g' with
 *      eps = fd_eps / |g'|, grad_phi = -virtual_lr (grad_phi L_syn(theta+) - grad_phi
 *      L_syn(theta-)) / (2 eps); Adam on phi;
 *   4. the student's own step (Adam, cosine): a batch of real patches and synth_share of the
 *      teacher's new samples (detached), cross-entropy.
 * The look-ahead is first order in the sense of methods.md (one unrolled step, no second
 * derivative taken through the optimiser): what it approximates is exact for SGD with
 * virtual_lr, and tests/test_histo_meta.c checks it against a finite difference of the meta
 * objective itself. theta (parameters and batch-norm buffers) is restored after the look-ahead.
 * The student starts from histo_cls's initial weights (the same seed), so histo_cls is the paired
 * no-synthetic arm. Writes models/histo_meta.h5 (the student) and models/histo_meta_teacher.h5. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_log.h"
#include "mk_histo_stage.h"
#include "mk_method.h"
#include "stage_internal.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define C MK_HISTO_CLASSES

typedef struct meta_params {
    int iterations, gen_width, zdim;
    float gen_lr, synth_share, virtual_lr, fd_eps;
} meta_params;

typedef struct cfg_t {
    meta_params mp;
    mk_histo_params hp;
} cfg_t;

#define S meta_params
static const mk_param_row ROWS[] = {
    MK_P_INT(S, iterations, "iterations", "0", 0, 1e9, "iterations (0: histo.iterations)"),
    MK_P_INT(S, gen_width, "gen_width", "16", 1, 1024, "teacher generator width"),
    MK_P_INT(S, zdim, "zdim", "32", 1, 1024, "noise channels of the teacher generator"),
    MK_P_FLOAT(S, gen_lr, "gen_lr", "0.0002", 1e-8, 10, "Adam learning rate of the teacher"),
    MK_P_FLOAT(S, synth_share, "synth_share", "0.5", 0, 0.95,
               "share of every student batch made by the teacher"),
    MK_P_FLOAT(S, virtual_lr, "virtual_lr", "0.05", 1e-6, 10,
               "SGD step of the student's look-ahead on the teacher's samples"),
    MK_P_FLOAT(
        S, fd_eps, "fd_eps", "0.01", 1e-6, 1,
        "finite-difference step of the meta-gradient, divided by the norm of g' (DARTS' 0.01)"),
};
#undef S
const mk_param_section mk_histo_meta_section = {
    "histo_meta",
    "generative meta curriculum: a teacher generator trained by the student's loss on real patches",
    ROWS, N(ROWS)};

typedef struct state {
    const cfg_t *cfg;
    mk_histo_set real;
    mk_rng *rr, *rv, *rz;
    int student, teacher;
    int bs;        /* synthetic patches per batch */
    float *x, *xv; /* [B][3][s][s] */
    int32_t *y, *yv, *ys;
    mk_tensor zin; /* [bs][zdim + C][1][1] */
    float *work;   /* mk__histo_meta_work_size */
} state;

static mk_status check(mk_ctx *ctx, const mk_stage_common *c, const void *cfgp)
{
    (void)c;
    const cfg_t *cfg = cfgp;
    mk_status st = mk__histo_check_generator(ctx, &cfg->hp, "histo_meta's teacher");
    if (st != MK_OK)
        return st;
    if ((int)lroundf(cfg->mp.synth_share * cfg->hp.batch) < 1)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "histo_meta.synth_share: %g of a batch of %d is no synthetic patch",
                      cfg->mp.synth_share, cfg->hp.batch);
    return MK_OK;
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
    return cfg->mp.iterations > 0 ? cfg->mp.iterations : cfg->hp.iterations;
}

static void free_cgen(void *g)
{
    mk_cgen_free(g);
}

/* ------------------------------------------------------------------ the meta-gradient */

static int64_t all_numel(mk_nn_params *p) /* parameters and buffers */
{
    int64_t n = 0;
    for (int i = 0; i < mk_nn_params_count(p); i++)
        n += mk_tensor_numel(&mk_nn_params_at(p, i)->value);
    return n;
}

int64_t mk__histo_meta_work_size(mk_classifier *student, mk_cgen *teacher)
{
    /* theta (with buffers), g'; the teacher's values (with buffers), its gradient at theta+ */
    return 2 * all_numel(mk_classifier_params(student)) + 2 * all_numel(mk_cgen_params(teacher));
}

/* copy every parameter and buffer of p to / from v */
static void snapshot(mk_nn_params *p, float *v, int save)
{
    for (int i = 0; i < mk_nn_params_count(p); i++) {
        mk_tensor *t = &mk_nn_params_at(p, i)->value;
        size_t n = (size_t)mk_tensor_numel(t);
        if (save)
            memcpy(v, t->data, n * sizeof *v);
        else
            memcpy(t->data, v, n * sizeof *v);
        v += n;
    }
}

/* theta := theta0 + a * d over the trainable parameters (d laid out as snapshot's, buffers
 * skipped: d is 0 there) */
static void axpy_params(mk_nn_params *p, const float *theta0, float a, const float *d)
{
    for (int i = 0; i < mk_nn_params_count(p); i++) {
        mk_param *q = mk_nn_params_at(p, i);
        int64_t n = mk_tensor_numel(&q->value);
        for (int64_t k = 0; k < n; k++)
            q->value.data[k] = q->is_buffer ? theta0[k] : theta0[k] + a * d[k];
        theta0 += n;
        d += n;
    }
}

/* d := the gradients of p (0 for buffers and frozen parameters) */
static double grads(mk_nn_params *p, float *d)
{
    double ss = 0;
    for (int i = 0; i < mk_nn_params_count(p); i++) {
        mk_param *q = mk_nn_params_at(p, i);
        int64_t n = mk_tensor_numel(&q->value);
        for (int64_t k = 0; k < n; k++) {
            d[k] = q->grad && !q->is_buffer && !q->frozen ? q->grad[k] : 0.0f;
            ss += (double)d[k] * d[k];
        }
        d += n;
    }
    return ss;
}

/* CE of the student on the teacher's samples G(zin) with labels ys; backward (gradients into
 * both networks' stores). */
static mk_status syn_pass(mk_ctx *ctx, mk_nn_graph *g, mk_classifier *S, mk_cgen *G,
                          const mk_tensor *zin, const int32_t *ys, double *loss)
{
    mk_nn_graph_begin(g, 1);
    mk_var *x = mk_cgen_forward(G, g, mk_nn_input(g, zin, 0));
    mk_var *l = mk_nn_cross_entropy(g, mk_classifier_forward(S, g, x, NULL), ys, NULL, -100);
    if (!l || mk_nn_graph_oom(g))
        return mk_err(ctx, MK_ERR_NOMEM, "histo_meta: out of memory in the teacher's pass");
    if (loss)
        *loss = mk_nn_value(l);
    mk_nn_backward(g, l);
    return MK_OK;
}

mk_status mk__histo_meta_hypergrad(mk_ctx *ctx, mk_nn_graph *g, mk_classifier *S, mk_cgen *G,
                                   const mk_tensor *zin, const int32_t *ys, const mk_tensor *xv,
                                   const int32_t *yv, float virtual_lr, float fd_eps, float *work,
                                   double *val_loss, double *syn_loss)
{
    mk_nn_params *ps = mk_classifier_params(S), *pg = mk_cgen_params(G);
    const int64_t ns = all_numel(ps), ng = all_numel(pg);
    float *theta0 = work, *gv = work + ns, *gplus = work + 2 * ns;
    float *phi_buf = gplus + ng; /* the teacher's buffers: its forwards here must not move them */
    snapshot(ps, theta0, 1);
    snapshot(pg, phi_buf, 1);
    /* 1. look-ahead on the teacher's samples */
    mk_nn_params_zero_grad(ps);
    mk_nn_params_zero_grad(pg);
    mk_status st = syn_pass(ctx, g, S, G, zin, ys, syn_loss);
    if (st == MK_OK) {
        grads(ps, gv);
        axpy_params(ps, theta0, -virtual_lr, gv);
        /* 2. the real-data objective after it */
        mk_nn_params_zero_grad(ps);
        mk_nn_graph_begin(g, 1);
        mk_var *l = mk_nn_cross_entropy(g, mk_classifier_forward(S, g, mk_nn_input(g, xv, 0), NULL),
                                        yv, NULL, -100);
        if (!l || mk_nn_graph_oom(g))
            st = mk_err(ctx, MK_ERR_NOMEM, "histo_meta: out of memory in the meta objective");
        if (st == MK_OK) {
            if (val_loss)
                *val_loss = mk_nn_value(l);
            mk_nn_backward(g, l);
        }
    }
    double norm = 0;
    if (st == MK_OK)
        norm = sqrt(grads(ps, gv));
    /* 3. central difference of grad_phi L_syn along g' */
    const float eps = norm > 0 ? (float)(fd_eps / norm) : 0.0f;
    for (int side = 0; st == MK_OK && side < 2 && eps > 0; side++) {
        axpy_params(ps, theta0, side == 0 ? eps : -eps, gv);
        snapshot(pg, phi_buf, 0);
        mk_nn_params_zero_grad(ps);
        mk_nn_params_zero_grad(pg);
        if ((st = syn_pass(ctx, g, S, G, zin, ys, NULL)) != MK_OK)
            break;
        if (side == 0) {
            grads(pg, gplus);
            continue;
        }
        /* grad_phi = -virtual_lr (g+ - g-) / (2 eps), into the teacher's gradient store */
        const float *gp = gplus;
        for (int i = 0; i < mk_nn_params_count(pg); i++) {
            mk_param *q = mk_nn_params_at(pg, i);
            int64_t n = mk_tensor_numel(&q->value);
            for (int64_t k = 0; q->grad && !q->is_buffer && k < n; k++)
                q->grad[k] = -virtual_lr * (gp[k] - q->grad[k]) / (2 * eps);
            gp += n;
        }
    }
    if (st == MK_OK && eps == 0)
        mk_nn_params_zero_grad(pg); /* a zero meta objective gradient: no teacher update */
    /* theta and the teacher's buffers as they were */
    snapshot(ps, theta0, 0);
    snapshot(pg, phi_buf, 0);
    mk_nn_params_zero_grad(ps);
    return st;
}

/* ------------------------------------------------------------------ the method */

static mk_status init(mk_loop *L, void *sp, const void *cfgp)
{
    state *s = sp;
    const cfg_t *cfg = cfgp;
    const meta_params *p = &cfg->mp;
    const mk_histo_params *hp = &cfg->hp;
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    s->cfg = cfg;
    mk_status st = mk__histo_train_set(L, hp, &s->real);
    if (st != MK_OK)
        return st;
    if (!(s->rr = mk_loop_add_rng(L, "patches", mk__seed(c->seed, 601))) ||
        !(s->rv = mk_loop_add_rng(L, "meta_patches", mk__seed(c->seed, 640))) ||
        !(s->rz = mk_loop_add_rng(L, "teacher", mk__seed(c->seed, 641))))
        return ctx->status;
    mk_classifier_cfg cc = mk_histo_classifier_cfg(hp, 0, 0);
    if ((s->student = mk_histo_loop_classifier(L, "student", &cc, mk__seed(c->seed, 602))) < 0)
        return ctx->status;
    mk_cgen_cfg gc = mk_cgen_defaults();
    gc.zdim = p->zdim;
    gc.classes = C;
    gc.base = p->gen_width;
    gc.size = hp->patch;
    mk_cgen *gen = NULL;
    if ((st = mk_cgen_new(ctx, &gc, mk__seed(c->seed, 642), &gen)) != MK_OK)
        return st;
    if ((s->teacher = mk_loop_add_model(L, "teacher", gen, mk_cgen_params(gen), free_cgen)) < 0)
        return ctx->status;
    if ((st = mk__histo_add_optim(L, s->student, hp, 0, iterations(cfg))) != MK_OK)
        return st;
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    oc.lr = p->gen_lr;
    oc.beta1 = 0.5f;
    if ((st = mk_loop_add_optim(L, s->teacher, &oc, NULL)) != MK_OK)
        return st;
    const int B = hp->batch;
    s->bs = (int)lroundf(p->synth_share * B);
    size_t plane = 3 * (size_t)hp->patch * hp->patch;
    int64_t nw = mk__histo_meta_work_size(mk_loop_model(L, s->student), gen);
    if (!(s->x = malloc((size_t)B * plane * sizeof(float))) ||
        !(s->xv = malloc((size_t)B * plane * sizeof(float))) ||
        !(s->y = malloc((size_t)B * sizeof(int32_t))) ||
        !(s->yv = malloc((size_t)B * sizeof(int32_t))) ||
        !(s->ys = malloc((size_t)s->bs * sizeof(int32_t))) ||
        !(s->work = malloc((size_t)nw * sizeof(float))) ||
        mk_tensor_new(&s->zin, 4, (int64_t[4]){s->bs, gc.zdim + C, 1, 1}))
        return mk_err(ctx, MK_ERR_NOMEM, "histo_meta: out of memory (batches)");
    MK_LOG_I(ctx,
             "histo_meta: student %lld parameters (histo_cls's shape and start), teacher "
             "generator %lld; %d of every %d patches from the teacher",
             (long long)mk_nn_params_numel(mk_loop_params(L, s->student)),
             (long long)mk_nn_params_numel(mk_loop_params(L, s->teacher)), s->bs, B);
    return MK_OK;
}

static mk_status step(mk_loop *L, void *sp, mk_terms *terms)
{
    state *s = sp;
    const meta_params *p = &s->cfg->mp;
    const mk_histo_params *hp = &s->cfg->hp;
    mk_ctx *ctx = mk_loop_ctx(L);
    mk_nn_graph *g = mk_loop_graph(L);
    mk_classifier *S = mk_loop_model(L, s->student);
    mk_cgen *G = mk_loop_model(L, s->teacher);
    const int B = hp->batch, side = hp->patch;
    const size_t plane = 3 * (size_t)side * side;
    /* the teacher: its labels and noise, a real batch for the meta objective */
    for (int b = 0; b < s->bs; b++)
        s->ys[b] = (int32_t)mk_rng_below(s->rz, C);
    mk_cgen_input(mk_cgen_config(G), s->rz, s->ys, &s->zin);
    mk_histo_batch(&s->real, s->rv, B, hp->augment, s->xv, s->yv);
    mk_tensor tv;
    mk__histo_wrap(&tv, s->xv, B, 3, side);
    /* data parallelism: the real batch of the meta objective and the student's batch are split;
     * the teacher's synthetic batch is computed whole on every rank (the same bits) */
    int32_t *yv = s->yv;
    mk_loop_take_share(L, &tv, &yv);
    double lv = 0, ls = 0;
    mk_status st = mk__histo_meta_hypergrad(ctx, g, S, G, &s->zin, s->ys, &tv, yv, p->virtual_lr,
                                            p->fd_eps, s->work, &lv, &ls);
    if (st != MK_OK)
        return st;
    mk_loop_optim_step(L, s->teacher);
    /* the student: real patches and the teacher's new samples (detached) */
    mk_histo_batch(&s->real, s->rr, B - s->bs, hp->augment, s->x, s->y);
    mk_nn_graph_begin(g, 1);
    int prev = mk_nn_graph_set_no_grad(g, 1);
    mk_var *fake = mk_cgen_forward(G, g, mk_nn_input(g, &s->zin, 0));
    mk_nn_graph_set_no_grad(g, prev);
    if (!fake || mk_nn_graph_oom(g))
        return mk_err(ctx, MK_ERR_NOMEM, "histo_meta: out of memory in the teacher's samples");
    memcpy(s->x + (size_t)(B - s->bs) * plane, fake->t.data, (size_t)s->bs * plane * sizeof(float));
    memcpy(s->y + (B - s->bs), s->ys, (size_t)s->bs * sizeof(int32_t));
    mk_nn_params_zero_grad(mk_loop_params(L, s->student));
    mk_nn_params_zero_grad(mk_loop_params(L, s->teacher));
    mk_tensor t;
    mk__histo_wrap(&t, s->x, B, 3, side);
    int32_t *y = s->y;
    mk_loop_take_share(L, &t, &y);
    mk_nn_graph_begin(g, 1);
    mk_var *l = mk_nn_cross_entropy(g, mk_classifier_forward(S, g, mk_nn_input(g, &t, 0), NULL), y,
                                    NULL, -100);
    if (!l || mk_nn_graph_oom(g))
        return mk_err(ctx, MK_ERR_NOMEM, "histo_meta: out of memory in the student's pass");
    mk_terms_add(terms, "loss_student", mk_nn_value(l), 1);
    mk_terms_add(terms, "loss_meta", lv, 1);
    mk_terms_add(terms, "loss_teacher_samples", ls, 1);
    mk_nn_backward(g, l);
    mk_loop_optim_step(L, s->student);
    return MK_OK;
}

static mk_status save(mk_loop *L, void *sp)
{
    state *s = sp;
    mk_status st = mk_histo_save_classifier(L, &s->cfg->hp, "histo_meta.h5", s->student, "student");
    if (st == MK_OK)
        st = mk_loop_save_nets(L, "histo_meta_teacher.h5", "histo_meta_teacher", &s->teacher, 1);
    return st;
}

static void free_state(void *sp)
{
    state *s = sp;
    mk_histo_set_free(&s->real);
    free(s->x);
    free(s->xv);
    free(s->y);
    free(s->yv);
    free(s->ys);
    free(s->work);
    mk_tensor_free(&s->zin);
}

static const mk_method_use USES[] = {
    {&mk_histo_meta_section, offsetof(cfg_t, mp)},
    {&mk_histo_section, offsetof(cfg_t, hp)},
};
static const mk_method_output OUTPUTS[] = {
    {"histo_meta", "models/histo_meta.h5", NULL, NULL, NULL, "histo.modality"},
};

const mk_method mk_method_histo_meta = {
    .name = "histo_meta",
    .summary = "generative meta curriculum: teacher generator and student classifier cooperating",
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
