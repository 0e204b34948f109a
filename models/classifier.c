/* Patch classifier and class-conditional patch generator (see mk_classifier.h). */
#include "mk_classifier.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLS_MAX_DEPTH 6

typedef struct conv_bn {
    mk_param *w, *b, *gamma, *beta, *rm, *rv;
} conv_bn;

struct mk_classifier {
    mk_classifier_cfg cfg;
    mk_nn_params *params;
    conv_bn enc[CLS_MAX_DEPTH][2];
    mk_param *head_w, *head_b;
};

struct mk_cgen {
    mk_cgen_cfg cfg;
    mk_nn_params *params;
    conv_bn stem; /* transposed conv 1 -> s0 */
    conv_bn up[3], c[3];
    mk_param *out_w, *out_b;
};

static mk_param *addp(mk_nn_params *s, const char *prefix, const char *leaf, int ndim,
                      const int64_t *ne, int buffer)
{
    char name[MK_NN_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", prefix, leaf);
    return mk_nn_params_add(s, name, ndim, ne, buffer);
}

/* conv weight at prefix.<ci> (shape wne) + BN of `ch` channels at prefix.<ci+1> */
static int add_conv_bn(mk_nn_params *s, conv_bn *cb, const char *block, int ci, const int64_t *wne,
                       int ch)
{
    int64_t cne[1] = {ch};
    char p[64];
    snprintf(p, sizeof p, "%s.%d", block, ci);
    cb->w = addp(s, p, "weight", 4, wne, 0);
    snprintf(p, sizeof p, "%s.%d", block, ci + 1);
    cb->gamma = addp(s, p, "weight", 1, cne, 0);
    cb->beta = addp(s, p, "bias", 1, cne, 0);
    cb->rm = addp(s, p, "running_mean", 1, cne, 1);
    cb->rv = addp(s, p, "running_var", 1, cne, 1);
    if (!cb->w || !cb->gamma || !cb->beta || !cb->rm || !cb->rv)
        return -1;
    mk_nn_fill(cb->gamma, 1.0f);
    mk_nn_fill(cb->rv, 1.0f);
    return 0;
}

static mk_var *bn_relu(mk_nn_graph *g, mk_var *y, conv_bn *cb, float mom, float eps)
{
    mk_var *z = mk_nn_batchnorm(g, y, mk_nn_param(g, cb->gamma), mk_nn_param(g, cb->beta), cb->rm,
                                cb->rv, mom, eps);
    return mk_nn_relu_inplace(g, z);
}

/* ---------------------------------------------------------------- classifier */

mk_classifier_cfg mk_classifier_defaults(void)
{
    mk_classifier_cfg c = {3, 2, 16, 3, 0.0f, 0.1f, 1e-5f};
    return c;
}

int mk_classifier_features(const mk_classifier_cfg *cfg)
{
    return cfg->base << (cfg->depth - 1);
}

mk_status mk_classifier_new(mk_ctx *ctx, const mk_classifier_cfg *cfg, uint64_t seed,
                            mk_classifier **out)
{
    *out = NULL;
    if (cfg->in_ch < 1 || cfg->in_ch > 64)
        return mk_err(ctx, MK_ERR_INVALID, "classifier: in_ch must be 1..64, got %d", cfg->in_ch);
    if (cfg->classes < 2 || cfg->classes > 1024)
        return mk_err(ctx, MK_ERR_INVALID, "classifier: classes must be 2..1024, got %d",
                      cfg->classes);
    if (cfg->depth < 1 || cfg->depth > CLS_MAX_DEPTH)
        return mk_err(ctx, MK_ERR_INVALID, "classifier: depth must be 1..%d, got %d", CLS_MAX_DEPTH,
                      cfg->depth);
    if (cfg->base < 1 || (int64_t)cfg->base << (cfg->depth - 1) > 4096)
        return mk_err(ctx, MK_ERR_INVALID,
                      "classifier: width must be >= 1 and width x 2^(depth-1) <= 4096, got "
                      "width %d, depth %d",
                      cfg->base, cfg->depth);
    if (!(cfg->dropout >= 0 && cfg->dropout < 1))
        return mk_err(ctx, MK_ERR_INVALID, "classifier: dropout must be in [0, 1), got %g",
                      cfg->dropout);
    mk_classifier *c = calloc(1, sizeof *c);
    if (!c || !(c->params = mk_nn_params_new())) {
        free(c);
        return mk_err(ctx, MK_ERR_NOMEM, "classifier: out of memory");
    }
    c->cfg = *cfg;
    int ch = cfg->in_ch, ok = 1;
    char blk[32];
    for (int i = 0; i < cfg->depth && ok; i++) {
        int w = cfg->base << i;
        int64_t w0[4] = {w, ch, 3, 3}, w1[4] = {w, w, 3, 3};
        snprintf(blk, sizeof blk, "enc.%d", i);
        ok = add_conv_bn(c->params, &c->enc[i][0], blk, 0, w0, w) == 0 &&
             add_conv_bn(c->params, &c->enc[i][1], blk, 3, w1, w) == 0;
        ch = w;
    }
    if (ok) {
        int64_t hw[4] = {cfg->classes, ch, 1, 1}, hb[1] = {cfg->classes};
        c->head_w = mk_nn_params_add(c->params, "head.weight", 4, hw, 0);
        c->head_b = mk_nn_params_add(c->params, "head.bias", 1, hb, 0);
        ok = c->head_w && c->head_b;
    }
    if (!ok) {
        mk_classifier_free(c);
        return mk_err(ctx, MK_ERR_NOMEM, "classifier: out of memory");
    }
    mk_rng r;
    mk_rng_seed(&r, seed);
    for (int i = 0; i < cfg->depth; i++)
        for (int k = 0; k < 2; k++)
            mk_nn_init_conv(&r, c->enc[i][k].w, NULL);
    mk_nn_init_conv(&r, c->head_w, c->head_b);
    *out = c;
    return MK_OK;
}

void mk_classifier_free(mk_classifier *c)
{
    if (!c)
        return;
    mk_nn_params_free(c->params);
    free(c);
}

mk_nn_params *mk_classifier_params(mk_classifier *c)
{
    return c->params;
}

const mk_classifier_cfg *mk_classifier_config(const mk_classifier *c)
{
    return &c->cfg;
}

mk_var *mk_classifier_forward(mk_classifier *c, mk_nn_graph *g, mk_var *x, mk_var **features)
{
    static const int one[2] = {1, 1}, zero[2] = {0, 0};
    if (features)
        *features = NULL;
    if (!x)
        return NULL;
    MK_ASSERT(x->t.ndim == 4 && x->t.ne[1] == c->cfg.in_ch && x->t.ne[2] == x->t.ne[3]);
    for (int i = 0; i < c->cfg.depth; i++) {
        for (int k = 0; k < 2; k++) {
            mk_var *y = mk_nn_conv(g, x, mk_nn_param(g, c->enc[i][k].w), NULL, one, one, one);
            x = bn_relu(g, y, &c->enc[i][k], c->cfg.bn_momentum, c->cfg.bn_eps);
        }
        if (i + 1 < c->cfg.depth)
            x = mk_nn_maxpool(g, x, 2, 2);
    }
    if (!x)
        return NULL;
    int side = (int)x->t.ne[2];
    mk_var *f = mk_nn_avgpool(g, x, side, side);
    if (features)
        *features = f;
    mk_var *h = c->cfg.dropout > 0 ? mk_nn_dropout(g, f, c->cfg.dropout) : f;
    return mk_nn_conv(g, h, mk_nn_param(g, c->head_w), mk_nn_param(g, c->head_b), one, zero, one);
}

/* ---------------------------------------------------------------- generator */

mk_cgen_cfg mk_cgen_defaults(void)
{
    mk_cgen_cfg c = {32, 2, 16, 32, 0.1f, 1e-5f};
    return c;
}

mk_status mk_cgen_new(mk_ctx *ctx, const mk_cgen_cfg *cfg, uint64_t seed, mk_cgen **out)
{
    *out = NULL;
    if (cfg->zdim < 1 || cfg->zdim > 1024 || cfg->classes < 2 || cfg->classes > 1024)
        return mk_err(ctx, MK_ERR_INVALID,
                      "generator: zdim must be 1..1024 and classes 2..1024, got %d and %d",
                      cfg->zdim, cfg->classes);
    if (cfg->base < 1 || cfg->base > 1024)
        return mk_err(ctx, MK_ERR_INVALID, "generator: width must be 1..1024, got %d", cfg->base);
    if (cfg->size < 8 || cfg->size % 8 != 0 || cfg->size > 1024)
        return mk_err(ctx, MK_ERR_INVALID,
                      "generator: patch side must be a multiple of 8 in 8..1024, got %d",
                      cfg->size);
    mk_cgen *g = calloc(1, sizeof *g);
    if (!g || !(g->params = mk_nn_params_new())) {
        free(g);
        return mk_err(ctx, MK_ERR_NOMEM, "generator: out of memory");
    }
    g->cfg = *cfg;
    int w = cfg->base, s0 = cfg->size / 8, in = cfg->zdim + cfg->classes;
    int64_t stem[4] = {in, 4 * w, s0, s0};
    int ok = add_conv_bn(g->params, &g->stem, "stem", 0, stem, 4 * w) == 0;
    int chans[4] = {4 * w, 2 * w, w, w};
    char blk[32];
    for (int k = 0; k < 3 && ok; k++) {
        int64_t up[4] = {chans[k], chans[k + 1], 2, 2}, cv[4] = {chans[k + 1], chans[k + 1], 3, 3};
        snprintf(blk, sizeof blk, "up.%d", k);
        ok = add_conv_bn(g->params, &g->up[k], blk, 0, up, chans[k + 1]) == 0 &&
             add_conv_bn(g->params, &g->c[k], blk, 3, cv, chans[k + 1]) == 0;
    }
    if (ok) {
        int64_t ow[4] = {3, w, 3, 3}, ob[1] = {3};
        g->out_w = mk_nn_params_add(g->params, "out.weight", 4, ow, 0);
        g->out_b = mk_nn_params_add(g->params, "out.bias", 1, ob, 0);
        ok = g->out_w && g->out_b;
    }
    if (!ok) {
        mk_cgen_free(g);
        return mk_err(ctx, MK_ERR_NOMEM, "generator: out of memory");
    }
    mk_rng r;
    mk_rng_seed(&r, seed);
    mk_nn_init_conv(&r, g->stem.w, NULL);
    for (int k = 0; k < 3; k++) {
        mk_nn_init_conv(&r, g->up[k].w, NULL);
        mk_nn_init_conv(&r, g->c[k].w, NULL);
    }
    mk_nn_init_conv(&r, g->out_w, g->out_b);
    *out = g;
    return MK_OK;
}

void mk_cgen_free(mk_cgen *g)
{
    if (!g)
        return;
    mk_nn_params_free(g->params);
    free(g);
}

mk_nn_params *mk_cgen_params(mk_cgen *g)
{
    return g->params;
}

const mk_cgen_cfg *mk_cgen_config(const mk_cgen *g)
{
    return &g->cfg;
}

void mk_cgen_input(const mk_cgen_cfg *cfg, mk_rng *r, const int32_t *labels, mk_tensor *in)
{
    int64_t n = in->ne[0], ch = cfg->zdim + cfg->classes;
    MK_ASSERT(in->ndim == 4 && in->ne[1] == ch && in->ne[2] == 1 && in->ne[3] == 1);
    for (int64_t i = 0; i < n; i++) {
        float *v = in->data + i * ch;
        for (int k = 0; k < cfg->zdim; k++)
            v[k] = (float)mk_rng_normal(r);
        for (int k = 0; k < cfg->classes; k++)
            v[cfg->zdim + k] = labels[i] == k ? 1.0f : 0.0f;
    }
}

mk_var *mk_cgen_forward(mk_cgen *gen, mk_nn_graph *g, mk_var *in)
{
    static const int one[2] = {1, 1}, zero[2] = {0, 0}, two[2] = {2, 2};
    const mk_cgen_cfg *c = &gen->cfg;
    int s0 = c->size / 8, st[2] = {s0, s0};
    if (!in)
        return NULL;
    mk_var *x = mk_nn_conv_transpose(g, in, mk_nn_param(g, gen->stem.w), NULL, st, zero, one);
    x = bn_relu(g, x, &gen->stem, c->bn_momentum, c->bn_eps);
    for (int k = 0; k < 3; k++) {
        x = mk_nn_conv_transpose(g, x, mk_nn_param(g, gen->up[k].w), NULL, two, zero, one);
        x = bn_relu(g, x, &gen->up[k], c->bn_momentum, c->bn_eps);
        x = mk_nn_conv(g, x, mk_nn_param(g, gen->c[k].w), NULL, one, one, one);
        x = bn_relu(g, x, &gen->c[k], c->bn_momentum, c->bn_eps);
    }
    x = mk_nn_conv(g, x, mk_nn_param(g, gen->out_w), mk_nn_param(g, gen->out_b), one, one, one);
    /* (tanh + 1) / 2 = sigmoid(2x): RGB in [0, 1] */
    return mk_nn_sigmoid(g, mk_nn_scale(g, x, 2.0f));
}
