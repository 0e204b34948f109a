/* Method `coteach`: ACT-Net (Zhao et al., ICIP 2022; methods notes §2) with CTKD's learnable
 * temperature (Li et al., AAAI 2023; §4) on the teacher path.
 *
 * A tiny student U-Net learns from few labels and a large frozen teacher (the `coteach_teacher`
 * stage before it, models/coteach_teacher.h5), with an EMA copy of itself as co-teacher. Per
 * iteration: a batch of labelled and a batch of unlabelled slices of coteach.modality;
 *   L = L_seg(labelled) + w_kd(t) L_con^kd(teacher -> student, both batches)
 *                       + w_co(t) L_con^co(co-teacher on noisy input -> student, both batches)
 * with w(t) = w_max sigmoid_rampup(t, rampup x iterations) (MT-UDA ramps). L_con^co is the
 * softmax-MSE of mean teachers; L_con^kd is T^2 KL(softmax(z_t/T) || softmax(z_s/T)) per pixel
 * (or softmax-MSE), T fixed, CTKD global (T = t_start + t_end sigmoid(theta), theta0 = 1, behind
 * a gradient reversal whose factor follows CTKD's cosine curriculum 0 -> -1 over ctkd_ramp of the
 * iterations) or CTKD instance-wise (one T per slice from a small MLP, below). After each step the
 * co-teacher is updated as MT-UDA's update_ema_variables: alpha = 0 (copy) for the first
 * ema_pretrain iterations, then min(1 - 1/(step - pretrain + 1), ema); BN running statistics are
 * not averaged, the co-teacher's own forward passes (training mode, as MT-UDA's ema_model.train())
 * keep them.
 *
 * Choices the papers leave open, ours stated here and in docs/stages.md:
 *   - the teacher is frozen (eval mode, no gradient) while the student trains (the figure's
 *     reading, §2.4);
 *   - the student sees the labelled and the unlabelled batch in two forward passes (batch
 *     statistics per batch); the consistency terms average both batches by their sizes;
 *   - instance-wise temperature: the MLP's input is concat(mean over pixels of the teacher's and
 *     of the student's logits) of each slice, detached (the MLP learns only through T), 2C ->
 *     mlp_hidden (ReLU) -> 1, then GRL and t_start + t_end sigmoid(.); its last bias starts at 1,
 * so a slice whose hidden units are silent starts at the global T0 = 1 + 20 sigmoid(1);
 *   - the temperature parameters are a network of the loop ("temperature"), with their own Adam
 *     at the student's learning rate and schedule (CTKD puts theta in the student's optimiser).
 * Every path can be switched off (w_kd = 0, w_co = 0) so the ablations of the study are configs;
 * with both off the student is coteach_tiny bit for bit. Writes models/coteach_student.h5,
 * models/coteach_coteacher.h5 and models/coteach_temperature.csv (iteration, T). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_fs.h"
#include "mk_infer.h"
#include "mk_method.h"
#include "nn/mk_nn_blocks.h"
#include "stage_internal.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
typedef mk_coteach_params P;

static const mk_param_row ROWS[] = {
    MK_P_INT(P, iterations, "iterations", "2000", 1, 1e9, "training iterations of the student"),
    MK_P_INT(P, batch, "batch", "4", 1, 1024, "labelled slices per batch"),
    MK_P_INT(P, unlabelled_batch, "unlabelled_batch", "4", 1, 1024,
             "unlabelled slices per batch (used by the consistency paths)"),
    MK_P_FLOAT(P, lr, "lr", "1e-3", 0, 1, "Adam learning rate of the student"),
    MK_P_CHOICE(P, schedule, "schedule", "poly", "constant|poly|cosine", "learning-rate schedule"),
    MK_P_INT(P, width, "width", "4", 1, 512, "channels of the tiny student's first level"),
    MK_P_INT(P, depth, "depth", "3", 2, 6, "resolution levels of the tiny student"),
    MK_P_FLOAT(P, dice_weight, "dice_weight", "0.5", 0, 1,
               "L_seg = w*Dice + (1-w)*CE on the labelled batch"),
    MK_P_FLOAT(P, w_kd, "w_kd", "1.0", 0, 1e4,
               "weight of the teacher -> student path L_con^kd (0: off; Hete-KD)"),
    MK_P_FLOAT(P, w_co, "w_co", "0.1", 0, 1e4,
               "weight of the co-teacher -> student path L_con^co (0: off; Homo-KD)"),
    MK_P_FLOAT(P, rampup, "rampup", "0.25", 0, 1,
               "share of the iterations over which w_kd and w_co ramp up (sigmoid_rampup)"),
    MK_P_CHOICE(P, kd_loss, "kd_loss", "kl", "kl|softmax_mse",
                "form of L_con^kd: T^2-scaled KL per pixel, or softmax-MSE"),
    MK_P_CHOICE(P, temperature, "temperature", "fixed", "fixed|global|instance",
                "kd_loss kl: fixed T (t_fixed), CTKD global learnable T, or CTKD instance-wise T"),
    MK_P_FLOAT(P, t_fixed, "t_fixed", "4.0", 1e-3, 1e3, "temperature = \"fixed\": T"),
    MK_P_FLOAT(P, t_start, "t_start", "1.0", -1e3, 1e3,
               "CTKD: T = t_start + t_end * sigmoid(theta), t_start > 0"),
    MK_P_FLOAT(P, t_end, "t_end", "20.0", 0, 1e3, "CTKD: the range of T above t_start"),
    MK_P_FLOAT(P, ctkd_ramp, "ctkd_ramp", "0.1", 0, 1,
               "CTKD: share of the iterations over which the reversal factor goes 0 -> -1 "
               "(cosine, as CTKD's 10 of 240 epochs scaled)"),
    MK_P_INT(P, mlp_hidden, "mlp_hidden", "16", 1, 4096,
             "temperature = \"instance\": hidden units of the temperature MLP"),
    MK_P_FLOAT(P, ema, "ema", "0.99", 0, 0.99999, "co-teacher EMA decay (MT-UDA 0.99)"),
    MK_P_INT(P, ema_pretrain, "ema_pretrain", "30", 0, 1e9,
             "iterations during which the co-teacher copies the student (MT-UDA iter_pretrain)"),
    MK_P_FLOAT(P, noise_sigma, "noise_sigma", "0.1", 0, 10, "co-teacher input noise sigma"),
    MK_P_FLOAT(P, noise_clip, "noise_clip", "0.2", 0, 10, "co-teacher input noise clip"),
    MK_P_STR(P, modality, "modality", "MR",
             "manifest modality trained on (labelled and unlabelled train rows)"),
    MK_P_PATH(P, teacher_model, "teacher_model", MK_PARAM_MUST_EXIST,
              "the large teacher's model file (its shape read from the file); unset: "
              "models/coteach_teacher.h5 of this run (the coteach_teacher stage before coteach)"),
};
const mk_param_section mk_coteach_section = {
    "coteach",
    "ACT-Net: a tiny student distilled from a large teacher and its EMA co-teacher (with CTKD)",
    ROWS, N(ROWS)};

typedef struct cfg_t {
    P cp;
    mk_coteach_teacher_params tp;
} cfg_t;

typedef struct state {
    const P *p;
    int lab, unl;                   /* streams (unl -1: not used) */
    int teacher, student, co, temp; /* nets (-1: not used) */
    mk_tensor xl, xu, nl, nu, tl, tu, pool;
    int32_t *yl;
    double *thist; /* T per iteration run in this process (from it0) */
    long long it0, nhist;
} state;

mk_status mk__coteach_labelled(mk_loop *L, const mk_data_params *d, const char *modality,
                               int *stream)
{
    mk_data_params dl = *d;
    dl.skip_unlabelled = 1;
    mk_status st = mk__load_data(L, &dl, modality, 1, 100, "labelled", 30, stream);
    if (st != MK_OK)
        return st;
    const mk_slices *s = mk_loop_slices(L, *stream);
    MK_LOG_I(mk_loop_ctx(L), "%s: %lld labelled %s slices (%lld with a structure) from %d volumes",
             mk_loop_stage(L), (long long)s->n, modality, (long long)s->n_fg, s->volumes);
    return MK_OK;
}

static int needs(const mk_stage_common *c, const void *cfgp, mk_data_need *out)
{
    (void)c;
    const cfg_t *cfg = cfgp;
    out[0] = (mk_data_need){cfg->cp.modality, 1, NULL, NULL, 0, 0};
    if (cfg->cp.w_co > 0)
        out[1] = (mk_data_need){cfg->cp.modality, 0, NULL, "coteach.w_co", 1, 0};
    return cfg->cp.w_co > 0 ? 2 : 1;
}

static long long iterations(const void *cfgp)
{
    return ((const cfg_t *)cfgp)->cp.iterations;
}

/* Trainable parameters of a U-Net of this width and depth (built and freed). */
static int64_t unet_params(mk_ctx *ctx, const mk_stage_common *c, int width, int depth)
{
    mk_unet_cfg uc = c->unet;
    uc.base = width;
    uc.levels = depth;
    mk_unet *u = NULL;
    int64_t n = -1;
    if (mk_unet_new(ctx, &uc, 0, &u) == MK_OK)
        n = mk_nn_params_numel(mk_unet_params(u));
    mk_unet_free(u);
    return n;
}

static mk_status check(mk_ctx *ctx, const mk_stage_common *c, const void *cfgp)
{
    const cfg_t *cfg = cfgp;
    const P *p = &cfg->cp;
    int div = 1 << (p->depth - 1);
    if (c->data.patch[0] % div || c->data.patch[1] % div)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "key 'coteach.depth': data.patch %dx%d must be a multiple of %d for a "
                      "student of depth %d",
                      c->data.patch[0], c->data.patch[1], div, p->depth);
    if (p->w_kd > 0 && p->kd_loss == MK_COTEACH_KD_KL && p->temperature != MK_COTEACH_T_FIXED &&
        !(p->t_start > 0))
        return mk_err(ctx, MK_ERR_CONFIG,
                      "key 'coteach.t_start': expected > 0 (T = t_start + t_end * sigmoid(theta) "
                      "must stay positive), got %g",
                      p->t_start);
    if (p->w_kd > 0 && p->kd_loss == MK_COTEACH_KD_SOFTMAX_MSE &&
        p->temperature != MK_COTEACH_T_FIXED)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "key 'coteach.temperature': a learnable temperature needs kd_loss = \"kl\" "
                      "(softmax-MSE has no temperature)");
    int64_t ns = unet_params(ctx, c, p->width, p->depth);
    int64_t nt = unet_params(ctx, c, cfg->tp.width, cfg->tp.depth);
    if (ns > 0 && nt > 0 && ns >= nt)
        MK_LOG_W(ctx,
                 "coteach: the student (%lld parameters, width %d depth %d) is not smaller than "
                 "the teacher (%lld, width %d depth %d): distillation to a tiny network expects "
                 "a much smaller student",
                 (long long)ns, p->width, p->depth, (long long)nt, cfg->tp.width, cfg->tp.depth);
    return MK_OK;
}

static mk_nn_params *temperature_params(mk_ctx *ctx, const P *p, int classes, uint64_t seed)
{
    mk_nn_params *tp = mk_nn_params_new();
    if (!tp)
        return NULL;
    if (p->temperature == MK_COTEACH_T_GLOBAL) {
        int64_t one = 1;
        mk_param *th = mk_nn_params_add(tp, "theta", 1, &one, 0);
        if (!th) {
            mk_nn_params_free(tp);
            return NULL;
        }
        th->value.data[0] = 1.0f; /* CTKD: theta0 = 1, T0 = 1 + 20 sigmoid(1) */
        return tp;
    }
    int H = p->mlp_hidden, C2 = 2 * classes;
    int64_t w1[4] = {H, C2, 1, 1}, b1 = H, w2[4] = {1, H, 1, 1}, b2 = 1;
    mk_param *a = mk_nn_params_add(tp, "fc1.weight", 4, w1, 0);
    mk_param *b = mk_nn_params_add(tp, "fc1.bias", 1, &b1, 0);
    mk_param *c = mk_nn_params_add(tp, "fc2.weight", 4, w2, 0);
    mk_param *d = mk_nn_params_add(tp, "fc2.bias", 1, &b2, 0);
    if (!a || !b || !c || !d) {
        mk_nn_params_free(tp);
        (void)ctx;
        return NULL;
    }
    /* PyTorch Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the last bias 1 (T0) */
    mk_rng r;
    mk_rng_seed(&r, seed);
    float k1 = 1.0f / sqrtf((float)C2), k2 = 1.0f / sqrtf((float)H);
    for (int64_t i = 0; i < (int64_t)H * C2; i++)
        a->value.data[i] = (float)((mk_rng_uniform(&r) * 2 - 1) * k1);
    for (int i = 0; i < H; i++)
        b->value.data[i] = (float)((mk_rng_uniform(&r) * 2 - 1) * k1);
    for (int i = 0; i < H; i++)
        c->value.data[i] = (float)((mk_rng_uniform(&r) * 2 - 1) * k2);
    d->value.data[0] = 1.0f;
    return tp;
}

static mk_status init(mk_loop *L, void *sp, const void *cfgp)
{
    state *s = sp;
    const cfg_t *cfg = cfgp;
    const P *p = &cfg->cp;
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    s->p = p;
    s->unl = s->teacher = s->co = s->temp = -1;
    mk_status st = mk__coteach_labelled(L, &c->data, p->modality, &s->lab);
    if (st != MK_OK)
        return st;
    if (p->w_kd > 0 || p->w_co > 0) {
        mk_data_params du = c->data;
        du.unlabelled_rest = 1;
        mk_ctx quiet;
        mk_ctx_init(&quiet);
        mk_slices us;
        memset(&us, 0, sizeof us);
        /* the unlabelled train rows; none (checked before the run when w_co > 0): the teacher
         * path learns on the labelled batch alone */
        if (mk_data_load(&quiet, &du, p->modality, "train", 0, mk__seed(c->seed, 101), &us) ==
            MK_OK) {
            if ((s->unl = mk_loop_add_stream(L, "unlabelled", &us, mk__seed(c->seed, 31))) < 0) {
                mk_slices_free(&us);
                return ctx->status;
            }
            const mk_slices *u = mk_loop_slices(L, s->unl);
            MK_LOG_I(ctx, "coteach: %lld unlabelled %s slices from %d volumes", (long long)u->n,
                     p->modality, u->volumes);
        } else if (p->w_co > 0) {
            return mk_err(ctx, MK_ERR_CONFIG,
                          "coteach: no unlabelled %s training rows for the co-teacher (%s)",
                          p->modality, quiet.msg);
        } else {
            MK_LOG_W(ctx,
                     "coteach: no unlabelled %s training rows: the teacher path uses the "
                     "labelled slices only",
                     p->modality);
        }
    }
    mk_unet_cfg su = c->unet;
    su.base = p->width;
    su.levels = p->depth;
    if ((s->student = mk_loop_add_unet(L, "student", &su, mk__seed(c->seed, 41))) < 0)
        return ctx->status;
    mk_sched sched = mk_method_sched(p->schedule, p->lr, p->iterations);
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    oc.lr = p->lr;
    if ((st = mk_loop_add_optim(L, s->student, &oc, &sched)) != MK_OK)
        return st;
    int64_t np_s = mk_nn_params_numel(mk_loop_params(L, s->student));
    /* the co-teacher starts as the student (same initialisation stream); it follows the student
     * even with w_co = 0 (then it only shows what the EMA of that student would segment) */
    if ((s->co = mk_loop_add_unet(L, "coteacher", &su, mk__seed(c->seed, 41))) < 0)
        return ctx->status;
    if (p->w_kd > 0) {
        mk_unet_cfg tu = c->unet;
        tu.base = cfg->tp.width;
        tu.levels = cfg->tp.depth;
        char path[4200];
        if (p->teacher_model && p->teacher_model[0])
            snprintf(path, sizeof path, "%s", p->teacher_model);
        else
            snprintf(path, sizeof path, "%s/models/coteach_teacher.h5", c->run_dir);
        /* the shape the teacher's file describes, else coteach_teacher.width/depth */
        int described = 0;
        if (mk_fs_is_file(path) && (st = mk_infer_model_shape(ctx, path, &tu, &described)) != MK_OK)
            return mk_err_prefix(ctx, "coteach: teacher");
        if (!mk_fs_is_file(path))
            return mk_err(ctx, MK_ERR_NOT_FOUND,
                          "coteach: no trained teacher at %s (run the coteach_teacher stage "
                          "before coteach, or set coteach.w_kd = 0)",
                          path);
        if ((s->teacher = mk_loop_add_unet(L, "teacher", &tu, mk__seed(c->seed, 40))) < 0)
            return ctx->status;
        if ((st = mk_model_load(ctx, path, "params", mk_loop_params(L, s->teacher), NULL)) != MK_OK)
            return mk_err_prefix(ctx, "coteach: teacher (coteach_teacher.width/depth must be "
                                      "those it was trained with)");
        mk_nn_params_set_frozen(mk_loop_params(L, s->teacher), "", 1);
        int64_t np_t = mk_nn_params_numel(mk_loop_params(L, s->teacher));
        MK_LOG_I(ctx,
                 "coteach: teacher %lld parameters (width %d, depth %d), student %lld (width %d, "
                 "depth %d): %.1fx fewer",
                 (long long)np_t, tu.base, tu.levels, (long long)np_s, p->width, p->depth,
                 (double)np_t / (double)np_s);
        if (p->kd_loss == MK_COTEACH_KD_KL && p->temperature != MK_COTEACH_T_FIXED) {
            mk_nn_params *tp = temperature_params(ctx, p, c->unet.classes, mk__seed(c->seed, 42));
            if (!tp)
                return mk_err(ctx, MK_ERR_NOMEM, "coteach: out of memory (temperature)");
            if ((s->temp = mk_loop_add_params(L, "temperature", tp)) < 0)
                return ctx->status;
            if ((st = mk_loop_add_optim(L, s->temp, &oc, &sched)) != MK_OK)
                return st;
        }
    } else {
        MK_LOG_I(ctx, "coteach: student %lld parameters (width %d, depth %d)", (long long)np_s,
                 p->width, p->depth);
    }
    int64_t h = c->data.patch[1], w = c->data.patch[0];
    int64_t el[4] = {p->batch, 1, h, w}, eu[4] = {p->unlabelled_batch, 1, h, w};
    if (mk_tensor_new(&s->xl, 4, el) || mk_tensor_new(&s->nl, 4, el) ||
        mk_tensor_new(&s->xu, 4, eu) || mk_tensor_new(&s->nu, 4, eu) ||
        !(s->yl = calloc((size_t)(p->batch * h * w), sizeof *s->yl)) ||
        !(s->thist = calloc((size_t)p->iterations, sizeof *s->thist)))
        return mk_err(ctx, MK_ERR_NOMEM, "coteach: out of memory (batches)");
    return MK_OK;
}

static mk_status start(mk_loop *L, void *sp, int resumed)
{
    (void)resumed;
    state *s = sp;
    s->it0 = mk_loop_iter(L);
    return MK_OK;
}

/* The teacher's logits on x (eval mode: running statistics; no gradient) into *out. */
static mk_status teacher_logits(mk_loop *L, state *s, const mk_tensor *x, mk_tensor *out)
{
    mk_nn_graph *g = mk_loop_graph(L);
    mk_nn_graph_begin(g, 0);
    int ng = mk_nn_graph_set_no_grad(g, 1);
    mk_var *z = mk_unet_forward(mk_loop_unet(L, s->teacher), g, mk_nn_input(g, x, 0));
    mk_nn_graph_set_no_grad(g, ng);
    if (!z || mk_nn_graph_oom(g))
        return mk_err(mk_loop_ctx(L), MK_ERR_NOMEM, "coteach: out of memory (teacher)");
    if (!out->data && mk_tensor_new(out, 4, z->t.ne) != 0)
        return mk_err(mk_loop_ctx(L), MK_ERR_NOMEM, "coteach: out of memory (teacher)");
    mk_loop_copy(out, &z->t);
    return MK_OK;
}

/* Per slice: mean over pixels of the teacher's and the student's logits, [N, 2C, 1, 1]. */
static mk_var *pooled(mk_nn_graph *g, state *s, const mk_tensor *zt, const mk_var *zs)
{
    int64_t n = zt->ne[0], C = zt->ne[1], S = zt->ne[2] * zt->ne[3];
    int64_t ne[4] = {n, 2 * C, 1, 1};
    /* one buffer for both batches (mk_nn_input copies it into the graph) */
    if (s->pool.data && s->pool.ne[0] != n)
        mk_tensor_free(&s->pool);
    if (!s->pool.data && mk_tensor_new(&s->pool, 4, ne) != 0)
        return NULL;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < C; k++) {
            double a = 0, b = 0;
            for (int64_t q = 0; q < S; q++) {
                a += zt->data[(i * C + k) * S + q];
                b += zs->t.data[(i * C + k) * S + q];
            }
            s->pool.data[i * 2 * C + k] = (float)(a / (double)S);
            s->pool.data[i * 2 * C + C + k] = (float)(b / (double)S);
        }
    s->pool.batch_of = zs->t.batch_of; /* the rows of the student's batch */
    return mk_nn_input(g, &s->pool, 0);
}

/* The temperature node of one batch (zs: the student's logits on it, zt: the teacher's). */
static mk_var *temperature(mk_loop *L, state *s, const mk_tensor *zt, mk_var *zs, float factor)
{
    const P *p = s->p;
    mk_nn_graph *g = mk_loop_graph(L);
    if (p->temperature == MK_COTEACH_T_FIXED || s->temp < 0)
        return mk_nn_scalar(g, p->t_fixed, 0);
    mk_nn_params *tp = mk_loop_params(L, s->temp);
    if (p->temperature == MK_COTEACH_T_GLOBAL)
        return mk_nn_ctkd_temperature(g, mk_nn_param(g, mk_nn_params_find(tp, "theta")), factor,
                                      p->t_start, p->t_end);
    static const int one[2] = {1, 1}, zero[2] = {0, 0};
    mk_var *x = pooled(g, s, zt, zs);
    if (!x)
        return NULL;
    mk_var *h = mk_nn_relu(g, mk_nn_conv(g, x, mk_nn_param(g, mk_nn_params_find(tp, "fc1.weight")),
                                         mk_nn_param(g, mk_nn_params_find(tp, "fc1.bias")), one,
                                         zero, one));
    mk_var *o = mk_nn_conv(g, h, mk_nn_param(g, mk_nn_params_find(tp, "fc2.weight")),
                           mk_nn_param(g, mk_nn_params_find(tp, "fc2.bias")), one, zero, one);
    /* GRL: identity forward, gradient x factor (mk_nn_grad_reverse multiplies by -lambda) */
    mk_var *t = mk_nn_sigmoid(g, mk_nn_grad_reverse(g, o, -factor));
    return mk_nn_add(g, mk_nn_scale(g, t, p->t_end), mk_nn_scalar(g, p->t_start, 0));
}

static mk_status step(mk_loop *L, void *sp, mk_terms *terms)
{
    state *s = sp;
    const P *p = s->p;
    mk_ctx *ctx = mk_loop_ctx(L);
    mk_nn_graph *g = mk_loop_graph(L);
    long long it = mk_loop_iter(L);
    int use_u = s->unl >= 0;
    mk_loop_batch(L, s->lab, p->batch, &s->xl, s->yl, NULL);
    if (use_u)
        mk_loop_batch(L, s->unl, p->unlabelled_batch, &s->xu, NULL, NULL);
    mk_status st;
    if (s->teacher >= 0) {
        if ((st = teacher_logits(L, s, &s->xl, &s->tl)) != MK_OK ||
            (use_u && (st = teacher_logits(L, s, &s->xu, &s->tu)) != MK_OK))
            return st;
    }
    double ramp = mk_nn_sigmoid_rampup((double)it, p->rampup * (double)p->iterations);
    float wkd = (float)(p->w_kd * ramp), wco = (float)(p->w_co * ramp);
    /* CTKD's curriculum: the reversal factor from 0 to -1 over ctkd_ramp of the iterations, as
     * CosineDecay(0, -1, 10) over its first 10 epochs */
    double span = p->ctkd_ramp * (double)p->iterations;
    float factor =
        (float)mk_nn_ctkd_cosine_decay(span > 0 ? 10.0 * (double)it / span : 10.0, 0, -1, 10);

    mk_nn_graph_begin(g, 1);
    mk_unet *stu = mk_loop_unet(L, s->student);
    mk_var *sl = mk_unet_forward(stu, g, mk_nn_input(g, &s->xl, 0));
    mk_var *su = use_u ? mk_unet_forward(stu, g, mk_nn_input(g, &s->xu, 0)) : NULL;
    mk_var *seg = mk_method_seg_loss(g, sl, s->yl, p->dice_weight);
    if (!seg)
        return mk_err(ctx, MK_ERR_NOMEM, "coteach: out of memory in the forward pass");
    mk_terms_add(terms, "seg", mk_nn_value(seg), 1); /* terms[0]: the stage's main loss */
    mk_var *total = seg;
    double fl = (double)p->batch, fu = use_u ? (double)p->unlabelled_batch : 0;
    float al = (float)(fl / (fl + fu)), au = (float)(fu / (fl + fu));
    double tval = p->temperature == MK_COTEACH_T_FIXED ? p->t_fixed : NAN;
    if (s->teacher >= 0) {
        mk_var *kd;
        if (p->kd_loss == MK_COTEACH_KD_SOFTMAX_MSE) {
            kd = mk_nn_scale(g, mk_nn_softmax_mse(g, sl, mk_nn_input(g, &s->tl, 0)), al);
            if (use_u)
                kd = mk_nn_add(
                    g, kd, mk_nn_scale(g, mk_nn_softmax_mse(g, su, mk_nn_input(g, &s->tu, 0)), au));
            tval = NAN;
        } else {
            mk_var *Tl = temperature(L, s, &s->tl, sl, factor);
            kd = mk_nn_scale(
                g, mk_nn_kd_kl(g, sl, mk_nn_input(g, &s->tl, 0), Tl, MK_NN_KD_PER_PIXEL), al);
            double tsum = Tl ? mk_loop_mean(L, &Tl->t) * fl : NAN;
            if (use_u) {
                mk_var *Tu = temperature(L, s, &s->tu, su, factor);
                kd = mk_nn_add(g, kd,
                               mk_nn_scale(g,
                                           mk_nn_kd_kl(g, su, mk_nn_input(g, &s->tu, 0), Tu,
                                                       MK_NN_KD_PER_PIXEL),
                                           au));
                tsum += Tu ? mk_loop_mean(L, &Tu->t) * fu : NAN;
            }
            tval = tsum / (fl + fu);
        }
        if (!kd)
            return mk_err(ctx, MK_ERR_NOMEM, "coteach: out of memory (teacher path)");
        mk_terms_add(terms, "kd", mk_nn_value(kd), wkd);
        total = mk_nn_add(g, total, mk_nn_scale(g, kd, wkd));
    }
    if (p->w_co > 0) {
        /* the co-teacher on noisy copies (no gradient; training mode, as MT-UDA's ema_model) */
        mk_rng *r = mk_nn_graph_rng(g);
        mk_loop_copy(&s->nl, &s->xl);
        mk_loop_noise(L, r, &s->nl, p->noise_sigma, p->noise_clip);
        if (use_u) {
            mk_loop_copy(&s->nu, &s->xu);
            mk_loop_noise(L, r, &s->nu, p->noise_sigma, p->noise_clip);
        }
        mk_unet *co = mk_loop_unet(L, s->co);
        int ng = mk_nn_graph_set_no_grad(g, 1);
        mk_var *cl = mk_unet_forward(co, g, mk_nn_input(g, &s->nl, 0));
        mk_var *cu = use_u ? mk_unet_forward(co, g, mk_nn_input(g, &s->nu, 0)) : NULL;
        mk_nn_graph_set_no_grad(g, ng);
        mk_var *con = mk_nn_scale(g, mk_nn_softmax_mse(g, sl, cl), al);
        if (use_u)
            con = mk_nn_add(g, con, mk_nn_scale(g, mk_nn_softmax_mse(g, su, cu), au));
        if (!con)
            return mk_err(ctx, MK_ERR_NOMEM, "coteach: out of memory (co-teacher path)");
        mk_terms_add(terms, "co", mk_nn_value(con), wco);
        total = mk_nn_add(g, total, mk_nn_scale(g, con, wco));
    }
    if (mk_nn_graph_oom(g) || !total)
        return mk_err(ctx, MK_ERR_NOMEM, "coteach: out of memory in the forward pass");
    if (s->teacher >= 0 && p->kd_loss == MK_COTEACH_KD_KL)
        mk_terms_add(terms, "T", tval, 0);
    mk_nn_backward(g, total);
    mk_loop_optim_step(L, s->student);
    if (s->temp >= 0)
        mk_loop_optim_step(L, s->temp);
    if (s->co >= 0 && (st = mk_nn_params_ema_step(
                           ctx, mk_loop_params(L, s->co), mk_loop_params(L, s->student), p->ema,
                           (it + 1) - p->ema_pretrain, MK_NN_EMA_KEEP_BUFFERS)) != MK_OK)
        return st;
    if (it - s->it0 >= 0 && it - s->it0 < p->iterations) {
        s->thist[it - s->it0] = tval;
        s->nhist = it - s->it0 + 1;
    }
    return MK_OK;
}

static mk_status save(mk_loop *L, void *sp)
{
    state *s = sp;
    const P *p = s->p;
    mk_status st = mk_loop_save_unet(L, "coteach_student.h5", s->student, p->modality, "student");
    if (st == MK_OK)
        st = mk_loop_save_unet(L, "coteach_coteacher.h5", s->co, p->modality, "coteacher");
    if (st == MK_OK && s->teacher >= 0 && p->kd_loss == MK_COTEACH_KD_KL && mk_loop_primary(L)) {
        /* the temperature curve (mean over the batch's slices for instance-wise T) */
        char path[4200];
        const mk_stage_common *c = mk_loop_common(L);
        snprintf(path, sizeof path, "%s/models/coteach_temperature.csv", c->run_dir);
        size_t cap = 64 + (size_t)s->nhist * 40;
        char *buf = malloc(cap);
        if (!buf)
            return mk_err(mk_loop_ctx(L), MK_ERR_NOMEM, "coteach: out of memory");
        size_t len = (size_t)snprintf(buf, cap, "iteration,temperature\n");
        for (long long i = 0; i < s->nhist; i++)
            len +=
                (size_t)snprintf(buf + len, cap - len, "%lld,%.6g\n", s->it0 + i + 1, s->thist[i]);
        st = mk_fs_write_atomic(mk_loop_ctx(L), path, buf, len);
        free(buf);
    }
    return st;
}

static void free_state(void *sp)
{
    state *s = sp;
    mk_tensor_free(&s->xl);
    mk_tensor_free(&s->xu);
    mk_tensor_free(&s->nl);
    mk_tensor_free(&s->nu);
    mk_tensor_free(&s->tl);
    mk_tensor_free(&s->tu);
    mk_tensor_free(&s->pool);
    free(s->yl);
    free(s->thist);
}

static int val_net(mk_loop *L, void *sp, const char **modality)
{
    (void)L;
    state *s = sp;
    *modality = s->p->modality;
    return s->student;
}

/* The teacher comes from the coteach_teacher stage of this run unless teacher_model names one. */
static const char *after(const void *cfgp)
{
    const cfg_t *cfg = cfgp;
    return cfg->cp.w_kd > 0 && !(cfg->cp.teacher_model && cfg->cp.teacher_model[0])
               ? "coteach_teacher"
               : NULL;
}

static const mk_method_use USES[] = {
    {&mk_coteach_section, offsetof(cfg_t, cp)},
    {&mk_coteach_teacher_section, offsetof(cfg_t, tp)},
};
static const mk_method_output OUTPUTS[] = {
    {"coteach", "models/coteach_student.h5", NULL, NULL, NULL, "coteach.modality"},
    {"coteach_coteacher", "models/coteach_coteacher.h5", NULL, NULL, NULL, "coteach.modality"},
};

const mk_method mk_method_coteach = {
    .name = "coteach",
    .summary = "ACT-Net: tiny student, large frozen teacher, EMA co-teacher (+ CTKD)",
    .uses = USES,
    .nuses = N(USES),
    .cfg_size = sizeof(cfg_t),
    .state_size = sizeof(state),
    .check = check,
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
    .after = after,
    .data_parallel = 1,
    .split_batches = {"coteach.batch", "coteach.unlabelled_batch"},
};
