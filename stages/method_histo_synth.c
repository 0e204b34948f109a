/* Method `histo_synth`: HistoGAN-style selective synthetic augmentation (Xue et al. 2021).
 *   1. gan_iterations: a class-conditional GAN on the labelled real patches of [histo]
 *      (generator models/mk_classifier.h mk_cgen: noise + one-hot class -> RGB; discriminator a
 *      PatchGAN of the image and the one-hot class planes; LSGAN losses; Adam 2e-4, beta1 0.5).
 *   2. candidates_per_class candidates of each class from the trained generator (eval mode),
 *      scored by the real-data classifier of histo_cls (histo_synth.scorer_model): confidence =
 *      its softmax probability of the conditioning class, distance = Euclidean distance of its
 *      pooled features to the class centroid of the real labelled patches. A candidate is kept
 *      when confidence >= min_confidence AND distance <= the distance_quantile of the real
 *      patches' own distances to that centroid. Every candidate's scores and kept flag go to
 *      models/histo_synth_candidates.csv.
 *   3. the classifier of histo_cls (same shape, same initial weights) retrained on real + kept
 *      patches (synth_share of every batch synthetic); with ablation = true a second one on real
 *      + all candidates. histo_cls itself is the no-synthetic arm.
 * Writes models/histo_synth_selected.h5 (and histo_synth_all.h5), histo_synth_gan.h5. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_fs.h"
#include "core/mk_log.h"
#include "io/mk_tiff.h"
#include "mk_histo_stage.h"
#include "mk_method.h"
#include "nn/mk_nn_blocks.h"
#include "stage_internal.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define C MK_HISTO_CLASSES

typedef struct synth_params {
    int gan_iterations, iterations, gen_width, disc_width, zdim, candidates_per_class;
    float gan_lr, min_confidence, distance_quantile, synth_share;
    int ablation;
    const char *scorer_model;
} synth_params;

typedef struct cfg_t {
    synth_params sp;
    mk_histo_params hp;
} cfg_t;

#define S synth_params
static const mk_param_row ROWS[] = {
    MK_P_INT(S, gan_iterations, "gan_iterations", "1500", 0, 1e9,
             "iterations of the conditional GAN"),
    MK_P_INT(S, iterations, "iterations", "0", 0, 1e9,
             "iterations of each retrained classifier (0: histo.iterations)"),
    MK_P_INT(S, gen_width, "gen_width", "16", 1, 1024, "generator width"),
    MK_P_INT(S, disc_width, "disc_width", "16", 1, 1024, "discriminator width"),
    MK_P_INT(S, zdim, "zdim", "32", 1, 1024, "noise channels of the generator"),
    MK_P_FLOAT(S, gan_lr, "gan_lr", "0.0002", 1e-8, 10, "Adam learning rate of the GAN"),
    MK_P_INT(S, candidates_per_class, "candidates_per_class", "64", 1, 1e6,
             "synthetic candidates generated for each class"),
    MK_P_FLOAT(S, min_confidence, "min_confidence", "0.9", 0, 1,
               "label-confidence filter: the real-data classifier's probability of the "
               "conditioning class must be at least this"),
    MK_P_FLOAT(S, distance_quantile, "distance_quantile", "0.75", 0, 1,
               "feature filter: the distance to the class centroid must be at most this quantile "
               "of the real patches' distances to it"),
    MK_P_FLOAT(S, synth_share, "synth_share", "0.5", 0, 1,
               "share of every retraining batch drawn from the synthetic patches"),
    MK_P_BOOL(S, ablation, "ablation", "true",
              "also retrain on real + all candidates (the unfiltered arm)"),
    MK_P_PATH(S, scorer_model, "scorer_model", MK_PARAM_MUST_EXIST,
              "the real-data classifier that scores candidates; unset: models/histo_cls.h5 of "
              "this run (histo_cls before histo_synth)"),
};
#undef S
const mk_param_section mk_histo_synth_section = {
    "histo_synth",
    "selective synthetic augmentation: conditional GAN, confidence + feature filters, retraining",
    ROWS, N(ROWS)};

typedef struct state {
    const cfg_t *cfg;
    mk_histo_set real;
    mk_rng *rg, *rr, *rs, *ra, *rsa;
    int gen, disc, scorer, sel, all; /* nets; all -1 without ablation */
    int generated;
    int64_t ncand, nkept;
    float *cand_x; /* [ncand][3][s][s] */
    int32_t *cand_y;
    float *kept_x; /* [nkept][3][s][s] */
    int32_t *kept_y;
    mk_histo_set kept_set, all_set;
    float *x, *fake;
    int32_t *y, *yf;
    mk_tensor zin, onehot;
} state;

static mk_status check(mk_ctx *ctx, const mk_stage_common *c, const void *cfgp)
{
    (void)c;
    const cfg_t *cfg = cfgp;
    return mk__histo_check_generator(ctx, &cfg->hp, "histo_synth's generator");
}

static int needs(const mk_stage_common *c, const void *cfgp, mk_data_need *out)
{
    (void)c;
    out[0] = (mk_data_need){((const cfg_t *)cfgp)->hp.modality, 1, NULL, NULL, 0, 0};
    return 1;
}

static long long retrain_iters(const cfg_t *cfg)
{
    return cfg->sp.iterations > 0 ? cfg->sp.iterations : cfg->hp.iterations;
}

static long long iterations(const void *cfgp)
{
    const cfg_t *cfg = cfgp;
    return cfg->sp.gan_iterations + retrain_iters(cfg);
}

static const char *after(const void *cfgp)
{
    return ((const cfg_t *)cfgp)->sp.scorer_model ? NULL : "histo_cls";
}

static void free_cgen(void *g)
{
    mk_cgen_free(g);
}

static mk_status init(mk_loop *L, void *sp, const void *cfgp)
{
    state *s = sp;
    const cfg_t *cfg = cfgp;
    const synth_params *p = &cfg->sp;
    const mk_histo_params *hp = &cfg->hp;
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    s->cfg = cfg;
    s->all = -1;
    mk_status st = mk__histo_train_set(L, hp, &s->real);
    if (st != MK_OK)
        return st;
    if (!(s->rg = mk_loop_add_rng(L, "gan", mk__seed(c->seed, 620))) ||
        !(s->rr = mk_loop_add_rng(L, "patches", mk__seed(c->seed, 601))) ||
        !(s->rs = mk_loop_add_rng(L, "synthetic", mk__seed(c->seed, 621))) ||
        !(s->ra = mk_loop_add_rng(L, "patches_all", mk__seed(c->seed, 601))) ||
        !(s->rsa = mk_loop_add_rng(L, "synthetic_all", mk__seed(c->seed, 621))))
        return ctx->status;
    mk_cgen_cfg gc = mk_cgen_defaults();
    gc.zdim = p->zdim;
    gc.classes = C;
    gc.base = p->gen_width;
    gc.size = hp->patch;
    mk_cgen *gen = NULL;
    if ((st = mk_cgen_new(ctx, &gc, mk__seed(c->seed, 622), &gen)) != MK_OK)
        return st;
    if ((s->gen = mk_loop_add_model(L, "generator", gen, mk_cgen_params(gen), free_cgen)) < 0 ||
        (s->disc = mk_loop_add_disc(L, "discriminator", 3 + C, p->disc_width,
                                    mk__seed(c->seed, 623))) < 0)
        return ctx->status;
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    oc.lr = p->gan_lr;
    oc.beta1 = 0.5f;
    if ((st = mk_loop_add_optim(L, s->gen, &oc, NULL)) != MK_OK ||
        (st = mk_loop_add_optim(L, s->disc, &oc, NULL)) != MK_OK)
        return st;
    /* the scorer: histo_cls's classifier, frozen */
    char path[4200];
    if (p->scorer_model)
        snprintf(path, sizeof path, "%s", p->scorer_model);
    else
        snprintf(path, sizeof path, "%s/models/histo_cls.h5", c->run_dir);
    mk_histo_model m;
    if ((st = mk_histo_model_load(ctx, path, &m)) != MK_OK)
        return mk_err_prefix(ctx, "histo_synth: scorer");
    mk_classifier *sc = m.net;
    m.net = NULL;
    mk_histo_model_free(&m);
    if ((s->scorer = mk_loop_add_model(L, "scorer", sc, mk_classifier_params(sc),
                                       (void (*)(void *))mk_classifier_free)) < 0)
        return ctx->status;
    /* the retrained classifiers: histo_cls's shape and initial weights */
    mk_classifier_cfg cc = mk_histo_classifier_cfg(hp, 0, 0);
    if ((s->sel = mk_histo_loop_classifier(L, "selected", &cc, mk__seed(c->seed, 602))) < 0)
        return ctx->status;
    if ((st = mk__histo_add_optim(L, s->sel, hp, p->gan_iterations, retrain_iters(cfg))) != MK_OK)
        return st;
    if (p->ablation) {
        if ((s->all = mk_histo_loop_classifier(L, "all", &cc, mk__seed(c->seed, 602))) < 0)
            return ctx->status;
        if ((st = mk__histo_add_optim(L, s->all, hp, p->gan_iterations, retrain_iters(cfg))) !=
            MK_OK)
            return st;
    }
    size_t plane = 3 * (size_t)hp->patch * hp->patch, B = (size_t)hp->batch;
    if (!(s->x = malloc(B * plane * sizeof(float))) ||
        !(s->fake = malloc(B * plane * sizeof(float))) || !(s->y = malloc(B * sizeof(int32_t))) ||
        !(s->yf = malloc(B * sizeof(int32_t))) ||
        mk_tensor_new(&s->zin, 4, (int64_t[4]){(int64_t)B, gc.zdim + C, 1, 1}) ||
        mk_tensor_new(&s->onehot, 4, (int64_t[4]){(int64_t)B, C, hp->patch, hp->patch}))
        return mk_err(ctx, MK_ERR_NOMEM, "histo_synth: out of memory (batches)");
    MK_LOG_I(ctx,
             "histo_synth: generator %lld parameters, discriminator %lld; %lld GAN iterations, "
             "then %lld of %s",
             (long long)mk_nn_params_numel(mk_loop_params(L, s->gen)),
             (long long)mk_nn_params_numel(mk_loop_params(L, s->disc)),
             (long long)p->gan_iterations, retrain_iters(cfg),
             p->ablation ? "two classifiers (selected, all)" : "the selected classifier");
    return MK_OK;
}

/* one-hot planes [B][C][s][s] of labels y */
static void fill_onehot(mk_tensor *oh, const int32_t *y, int B, int side)
{
    int64_t plane = (int64_t)side * side;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < C; k++) {
            float v = y[b] == k ? 1.0f : 0.0f, *d = oh->data + ((int64_t)b * C + k) * plane;
            for (int64_t i = 0; i < plane; i++)
                d[i] = v;
        }
}

static mk_status gan_step(mk_loop *L, state *s, mk_terms *terms)
{
    const mk_histo_params *hp = &s->cfg->hp;
    mk_nn_graph *g = mk_loop_graph(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    int B = hp->batch, side = hp->patch;
    mk_cgen *gen = mk_loop_model(L, s->gen);
    mk_translator *D = mk_loop_translator(L, s->disc);
    /* generator: D(G(z, y), y) -> 1 */
    for (int b = 0; b < B; b++)
        s->yf[b] = (int32_t)mk_rng_below(s->rg, C);
    mk_cgen_input(mk_cgen_config(gen), s->rg, s->yf, &s->zin);
    fill_onehot(&s->onehot, s->yf, B, side);
    /* data parallelism: every rank draws the whole batch and runs its share */
    mk_tensor zin = s->zin, oh = s->onehot;
    int64_t n = mk_loop_take_share(L, &zin, NULL);
    mk_loop_take_share(L, &oh, NULL);
    mk_nn_graph_begin(g, 1);
    mk_var *fake = mk_cgen_forward(gen, g, mk_nn_input(g, &zin, 0));
    mk_var *dfake = mk_translator_forward(D, g, mk_nn_concat(g, fake, mk_nn_input(g, &oh, 0)));
    mk_var *lg = mk_nn_lsgan_g(g, dfake);
    if (!lg || mk_nn_graph_oom(g))
        return mk_err(ctx, MK_ERR_NOMEM, "histo_synth: out of memory in the generator's pass");
    memcpy(s->fake, fake->t.data, (size_t)n * 3 * side * side * sizeof(float));
    double vg = mk_nn_value(lg);
    mk_nn_backward(g, lg);
    mk_loop_optim_step(L, s->gen);
    /* discriminator: real (augmented) -> 1, the generator's (detached) -> 0 */
    mk_nn_params_zero_grad(mk_loop_params(L, s->disc));
    mk_histo_batch(&s->real, s->rr, B, hp->augment, s->x, s->y);
    mk_tensor tr, tf;
    mk__histo_wrap(&tr, s->x, B, 3, side);
    mk_loop_take_share(L, &tr, NULL);
    mk__histo_wrap(&tf, s->fake, n, 3, side); /* this rank's fakes (the generator's share) */
    tf.batch_of = tr.batch_of;
    mk_nn_graph_begin(g, 1);
    /* mk_nn_input copies: the planes are filled for the real labels, then for the fake ones */
    fill_onehot(&s->onehot, s->y, B, side);
    oh = s->onehot;
    mk_loop_take_share(L, &oh, NULL);
    mk_var *oh_r = mk_nn_input(g, &oh, 0);
    fill_onehot(&s->onehot, s->yf, B, side);
    oh = s->onehot;
    mk_loop_take_share(L, &oh, NULL);
    mk_var *oh_f = mk_nn_input(g, &oh, 0);
    mk_var *dr = mk_translator_forward(D, g, mk_nn_concat(g, mk_nn_input(g, &tr, 0), oh_r));
    mk_var *df = mk_translator_forward(D, g, mk_nn_concat(g, mk_nn_input(g, &tf, 0), oh_f));
    mk_var *ld = mk_nn_lsgan_d(g, dr, df);
    if (!ld || mk_nn_graph_oom(g))
        return mk_err(ctx, MK_ERR_NOMEM, "histo_synth: out of memory in the discriminator's pass");
    double vd = mk_nn_value(ld);
    mk_nn_backward(g, ld);
    mk_loop_optim_step(L, s->disc);
    mk_terms_add(terms, "loss_g", vg, 1);
    mk_terms_add(terms, "loss_d", vd, 1);
    return MK_OK;
}

/* Scorer features [n][F] and probabilities [n][C] of n patches x (eval mode, no gradients). */
static mk_status score(mk_loop *L, state *s, const float *x, int64_t n, float *feat, float *prob)
{
    const mk_histo_params *hp = &s->cfg->hp;
    mk_nn_graph *g = mk_loop_graph(L);
    mk_classifier *sc = mk_loop_model(L, s->scorer);
    int F = mk_classifier_features(mk_classifier_config(sc)), B = 64, side = hp->patch;
    int64_t plane = 3 * (int64_t)side * side;
    int prev = mk_nn_graph_set_no_grad(g, 1);
    mk_status st = MK_OK;
    for (int64_t i0 = 0; i0 < n && st == MK_OK; i0 += B) {
        int64_t nb = n - i0 < B ? n - i0 : B;
        mk_tensor t;
        mk__histo_wrap(&t, (float *)x + i0 * plane, nb, 3, side);
        mk_nn_graph_begin(g, 0);
        mk_var *f = NULL, *lg = mk_classifier_forward(sc, g, mk_nn_input(g, &t, 0), &f);
        mk_var *pr = mk_nn_softmax(g, lg);
        if (!pr || !f || mk_nn_graph_oom(g)) {
            st = mk_err(mk_loop_ctx(L), MK_ERR_NOMEM, "histo_synth: out of memory (scoring)");
            break;
        }
        memcpy(feat + i0 * F, f->t.data, (size_t)(nb * F) * sizeof(float));
        memcpy(prob + i0 * C, pr->t.data, (size_t)(nb * C) * sizeof(float));
    }
    mk_nn_graph_set_no_grad(g, prev);
    return st;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy's default (linear, type 7) quantile of v[0..n) (sorted in place) */
static double quantile(double *v, int64_t n, double q)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    double h = (double)(n - 1) * q;
    int64_t lo = (int64_t)floor(h), hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (h - (double)lo) * (v[hi] - v[lo]);
}

static double dist(const float *a, const double *c, int F)
{
    double s = 0;
    for (int k = 0; k < F; k++)
        s += ((double)a[k] - c[k]) * ((double)a[k] - c[k]);
    return sqrt(s);
}

typedef struct cand_log {
    int64_t n;
    const int32_t *y;
    const float *conf;
    const double *d, *thr;
    const uint8_t *kept;
} cand_log;

static void print_log(FILE *f, const void *ap)
{
    const cand_log *a = ap;
    fprintf(f, "index,class,confidence,distance,distance_threshold,kept\n");
    for (int64_t i = 0; i < a->n; i++)
        fprintf(f, "%lld,%d,%.6f,%.6f,%.6f,%d\n", (long long)i, a->y[i], a->conf[i], a->d[i],
                a->thr[a->y[i]], a->kept[i]);
}

/* Every candidate in a grid of 16 columns, framed green when kept, red when not (PNG). */
static mk_status montage(mk_ctx *ctx, const char *path, const float *x, const uint8_t *kept,
                         int64_t n, int side)
{
    const int cols = 16, cell = side + 4;
    int64_t rows = (n + cols - 1) / cols, W = (int64_t)cols * cell, H = rows * cell;
    if (H > 30000)
        return MK_OK; /* too many to show: the CSV has them all */
    uint8_t *pix = malloc((size_t)(W * H * 3));
    if (!pix)
        return mk_err(ctx, MK_ERR_NOMEM, "histo_synth: out of memory (montage)");
    memset(pix, 255, (size_t)(W * H * 3));
    int64_t plane = (int64_t)side * side;
    for (int64_t i = 0; i < n; i++) {
        int64_t ox = (i % cols) * cell, oy = (i / cols) * cell;
        const uint8_t frame[3] = {kept[i] ? 0 : 220, kept[i] ? 170 : 0, 0};
        for (int yy = 1; yy < cell - 1; yy++)
            for (int xx = 1; xx < cell - 1; xx++) {
                uint8_t *d = pix + ((oy + yy) * W + ox + xx) * 3;
                int px = xx - 2, py = yy - 2;
                for (int ch = 0; ch < 3; ch++) {
                    if (px < 0 || py < 0 || px >= side || py >= side) {
                        d[ch] = frame[ch];
                        continue;
                    }
                    float v = x[(i * 3 + ch) * plane + (int64_t)py * side + px];
                    d[ch] = (uint8_t)lroundf(255.0f * (v < 0 ? 0 : v > 1 ? 1 : v));
                }
            }
    }
    mk_status st = mk_io_png_write(ctx, path, pix, (int)W, (int)H, 3);
    free(pix);
    return st;
}

/* Generate, score and filter the candidates (deterministic: a fixed noise stream and the
 * trained generator, so a resume past the GAN phase regenerates the same set). */
static mk_status generate(mk_loop *L, state *s)
{
    const synth_params *p = &s->cfg->sp;
    const mk_histo_params *hp = &s->cfg->hp;
    const mk_stage_common *c = mk_loop_common(L);
    mk_ctx *ctx = mk_loop_ctx(L);
    mk_nn_graph *g = mk_loop_graph(L);
    mk_cgen *gen = mk_loop_model(L, s->gen);
    int side = hp->patch, B = hp->batch;
    int64_t plane = 3 * (int64_t)side * side, n = (int64_t)p->candidates_per_class * C;
    int F = mk_classifier_features(mk_classifier_config(mk_loop_model(L, s->scorer)));
    s->ncand = n;
    s->cand_x = malloc((size_t)n * (size_t)plane * sizeof(float));
    s->cand_y = malloc((size_t)n * sizeof(int32_t));
    float *cf = malloc((size_t)n * F * sizeof(float)), *cp = malloc((size_t)n * C * sizeof(float));
    float *rf = malloc((size_t)s->real.n * F * sizeof(float));
    float *rp = malloc((size_t)s->real.n * C * sizeof(float));
    float *conf = malloc((size_t)n * sizeof(float));
    double *d = malloc((size_t)n * sizeof(double));
    double *rd = malloc((size_t)s->real.n * sizeof(double));
    uint8_t *kept = calloc((size_t)n, 1);
    double cen[C][4096], thr[C] = {0};
    mk_status st = MK_OK;
    if (F > 4096 || !s->cand_x || !s->cand_y || !cf || !cp || !rf || !rp || !conf || !d || !rd ||
        !kept) {
        st =
            mk_err(ctx, MK_ERR_NOMEM, "histo_synth: out of memory (%lld candidates)", (long long)n);
        goto out;
    }
    mk_rng r;
    mk_rng_seed(&r, mk__seed(c->seed, 624));
    int prev = mk_nn_graph_set_no_grad(g, 1);
    for (int64_t i0 = 0; i0 < n && st == MK_OK; i0 += B) {
        for (int b = 0; b < B; b++)
            s->yf[b] = (int32_t)(((i0 + b) / p->candidates_per_class) % C);
        mk_cgen_input(mk_cgen_config(gen), &r, s->yf, &s->zin);
        mk_nn_graph_begin(g, 0);
        mk_var *fake = mk_cgen_forward(gen, g, mk_nn_input(g, &s->zin, 0));
        if (!fake || mk_nn_graph_oom(g)) {
            st = mk_err(ctx, MK_ERR_NOMEM, "histo_synth: out of memory (generating)");
            break;
        }
        int64_t nb = n - i0 < B ? n - i0 : B;
        memcpy(s->cand_x + i0 * plane, fake->t.data, (size_t)(nb * plane) * sizeof(float));
        memcpy(s->cand_y + i0, s->yf, (size_t)nb * sizeof(int32_t));
    }
    mk_nn_graph_set_no_grad(g, prev);
    if (st != MK_OK || (st = score(L, s, s->cand_x, n, cf, cp)) != MK_OK ||
        (st = score(L, s, s->real.x, s->real.n, rf, rp)) != MK_OK)
        goto out;
    /* class centroids of the real patches and the distance thresholds */
    for (int k = 0; k < C; k++) {
        int64_t m = 0;
        memset(cen[k], 0, sizeof cen[k]);
        for (int64_t i = 0; i < s->real.n; i++)
            if (s->real.y[i] == k) {
                for (int f = 0; f < F; f++)
                    cen[k][f] += rf[i * F + f];
                m++;
            }
        for (int f = 0; f < F; f++)
            cen[k][f] /= (double)(m > 0 ? m : 1);
        int64_t q = 0;
        for (int64_t i = 0; i < s->real.n; i++)
            if (s->real.y[i] == k)
                rd[q++] = dist(rf + i * F, cen[k], F);
        thr[k] = q > 0 ? quantile(rd, q, p->distance_quantile) : 0;
    }
    int64_t nk = 0, pass_conf = 0, pass_dist = 0;
    for (int64_t i = 0; i < n; i++) {
        int k = s->cand_y[i];
        conf[i] = cp[i * C + k];
        d[i] = dist(cf + i * F, cen[k], F);
        int a = conf[i] >= p->min_confidence, b = d[i] <= thr[k];
        pass_conf += a;
        pass_dist += b;
        kept[i] = (uint8_t)(a && b);
        nk += kept[i];
    }
    MK_LOG_I(ctx,
             "histo_synth: %lld candidates: %lld pass the confidence filter (>= %.2f), %lld the "
             "feature filter (distance <= q%.2f: %.3f / %.3f), %lld both: kept",
             (long long)n, (long long)pass_conf, p->min_confidence, (long long)pass_dist,
             p->distance_quantile, thr[0], thr[1], (long long)nk);
    s->nkept = nk;
    s->kept_x = malloc((size_t)(nk > 0 ? nk : 1) * (size_t)plane * sizeof(float));
    s->kept_y = malloc((size_t)(nk > 0 ? nk : 1) * sizeof(int32_t));
    if (!s->kept_x || !s->kept_y) {
        st = mk_err(ctx, MK_ERR_NOMEM, "histo_synth: out of memory");
        goto out;
    }
    for (int64_t i = 0, j = 0; i < n; i++)
        if (kept[i]) {
            memcpy(s->kept_x + j * plane, s->cand_x + i * plane, (size_t)plane * sizeof(float));
            s->kept_y[j++] = s->cand_y[i];
        }
    s->kept_set = (mk_histo_set){side, nk, s->kept_x, s->kept_y, NULL, NULL, 0, NULL, NULL, NULL};
    s->all_set = (mk_histo_set){side, n, s->cand_x, s->cand_y, NULL, NULL, 0, NULL, NULL, NULL};
    char path[4200];
    cand_log lg = {n, s->cand_y, conf, d, thr, kept};
    if (!mk_loop_primary(L)) /* rank 0 writes the job's files */
        goto written;
    if ((st = mk__run_path(ctx, c->run_dir, "models", "histo_synth_candidates.csv", path,
                           sizeof path)) == MK_OK)
        st = mk_fs_write_atomic_printed(ctx, path, print_log, &lg);
    if (st == MK_OK && (st = mk__run_path(ctx, c->run_dir, "models", "histo_synth_candidates.png",
                                          path, sizeof path)) == MK_OK)
        st = montage(ctx, path, s->cand_x, kept, n, side);
written:
    s->generated = 1;
out:
    free(cf);
    free(cp);
    free(rf);
    free(rp);
    free(conf);
    free(d);
    free(rd);
    free(kept);
    return st;
}

/* A batch: round(share x B) synthetic patches from syn (when it has any), the rest real. */
static void mixed_batch(state *s, const mk_histo_set *syn, mk_rng *rr, mk_rng *rs, float *x,
                        int32_t *y)
{
    const mk_histo_params *hp = &s->cfg->hp;
    int B = hp->batch, ns = syn->n > 0 ? (int)lround(s->cfg->sp.synth_share * B) : 0;
    int64_t plane = 3 * (int64_t)hp->patch * hp->patch;
    if (ns > 0)
        mk_histo_batch(syn, rs, ns, hp->augment, x, y);
    if (B - ns > 0)
        mk_histo_batch(&s->real, rr, B - ns, hp->augment, x + ns * plane, y + ns);
}

static mk_status cls_step(mk_loop *L, state *s, int net, const mk_histo_set *syn, mk_rng *rr,
                          mk_rng *rs, const char *term, mk_terms *terms)
{
    const mk_histo_params *hp = &s->cfg->hp;
    mk_nn_graph *g = mk_loop_graph(L);
    mixed_batch(s, syn, rr, rs, s->x, s->y);
    mk_tensor t;
    mk__histo_wrap(&t, s->x, hp->batch, 3, hp->patch);
    int32_t *y = s->y;
    mk_loop_take_share(L, &t, &y); /* data parallelism: this rank's patches */
    mk_nn_graph_begin(g, 1);
    mk_var *lg = mk_classifier_forward(mk_loop_model(L, net), g, mk_nn_input(g, &t, 0), NULL);
    mk_var *l = mk_nn_cross_entropy(g, lg, y, NULL, -100);
    if (!l || mk_nn_graph_oom(g))
        return mk_err(mk_loop_ctx(L), MK_ERR_NOMEM,
                      "histo_synth: out of memory in the forward "
                      "pass");
    mk_terms_add(terms, term, mk_nn_value(l), 1);
    mk_nn_backward(g, l);
    mk_loop_optim_step(L, net);
    return MK_OK;
}

static mk_status step(mk_loop *L, void *sp, mk_terms *terms)
{
    state *s = sp;
    long long it = mk_loop_iter(L), gi = s->cfg->sp.gan_iterations;
    if (it < gi)
        return gan_step(L, s, terms);
    mk_status st;
    if (!s->generated && (st = generate(L, s)) != MK_OK)
        return st;
    if ((st = cls_step(L, s, s->sel, &s->kept_set, s->rr, s->rs, "loss_selected", terms)) != MK_OK)
        return st;
    if (s->all >= 0)
        st = cls_step(L, s, s->all, &s->all_set, s->ra, s->rsa, "loss_all", terms);
    return st;
}

static mk_status save(mk_loop *L, void *sp)
{
    state *s = sp;
    mk_status st = MK_OK;
    if (!s->generated && (st = generate(L, s)) != MK_OK) /* gan only, 0 retraining iterations */
        return st;
    int nets[2] = {s->gen, s->disc};
    if ((st = mk_loop_save_nets(L, "histo_synth_gan.h5", "histo_synth_gan", nets, 2)) != MK_OK)
        return st;
    if ((st = mk_histo_save_classifier(L, &s->cfg->hp, "histo_synth_selected.h5", s->sel,
                                       "selected")) != MK_OK)
        return st;
    if (s->all >= 0)
        st = mk_histo_save_classifier(L, &s->cfg->hp, "histo_synth_all.h5", s->all, "all");
    return st;
}

static void free_state(void *sp)
{
    state *s = sp;
    mk_histo_set_free(&s->real);
    free(s->cand_x);
    free(s->cand_y);
    free(s->kept_x);
    free(s->kept_y);
    free(s->x);
    free(s->fake);
    free(s->y);
    free(s->yf);
    mk_tensor_free(&s->zin);
    mk_tensor_free(&s->onehot);
}

static const mk_method_use USES[] = {
    {&mk_histo_synth_section, offsetof(cfg_t, sp)},
    {&mk_histo_section, offsetof(cfg_t, hp)},
};
static const mk_method_output OUTPUTS[] = {
    {"histo_synth_selected", "models/histo_synth_selected.h5", NULL, NULL, NULL, "histo.modality"},
    {"histo_synth_all", "models/histo_synth_all.h5", NULL, NULL, "histo_synth.ablation",
     "histo.modality"},
};

const mk_method mk_method_histo_synth = {
    .name = "histo_synth",
    .summary = "selective synthetic augmentation of the histology classifier (conditional GAN)",
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
