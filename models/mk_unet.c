/* Reference U-Net (see mk_unet.h). */
#include "mk_unet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNET_MAX_LEVELS 8

typedef struct conv_bn {
    mk_param *w, *gamma, *beta, *rm, *rv;
} conv_bn;

struct mk_unet {
    mk_unet_cfg cfg;
    mk_nn_params *params;
    conv_bn enc[UNET_MAX_LEVELS][2];
    conv_bn dec[UNET_MAX_LEVELS][2];
    mk_param *up_w[UNET_MAX_LEVELS], *up_b[UNET_MAX_LEVELS];
    mk_param *head_w, *head_b;
    char names[2 * UNET_MAX_LEVELS + 2][16]; /* feature map names */
};

mk_unet_cfg mk_unet_defaults(int dim)
{
    mk_unet_cfg c;
    c.dim = dim;
    c.in_ch = 1;
    c.classes = 4;
    c.base = dim == 3 ? 8 : 16;
    c.levels = dim == 3 ? 3 : 4;
    c.bn_momentum = 0.1f;
    c.bn_eps = 1e-5f;
    return c;
}

static mk_param *add_param(mk_nn_params *s, const char *prefix, const char *leaf, int ndim,
                           const int64_t *ne, int is_buffer)
{
    char name[MK_NN_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", prefix, leaf);
    return mk_nn_params_add(s, name, ndim, ne, is_buffer);
}

/* conv (no bias) at prefix.<ci> + BN at prefix.<ci+1> */
static int add_conv_bn(mk_unet *u, conv_bn *cb, const char *block, int ci, int cin, int cout)
{
    int nd = u->cfg.dim + 2;
    int64_t wne[5] = {cout, cin, 3, 3, 3};
    int64_t cne[1] = {cout};
    char p[64];
    snprintf(p, sizeof p, "%s.%d", block, ci);
    cb->w = add_param(u->params, p, "weight", nd, wne, 0);
    snprintf(p, sizeof p, "%s.%d", block, ci + 1);
    cb->gamma = add_param(u->params, p, "weight", 1, cne, 0);
    cb->beta = add_param(u->params, p, "bias", 1, cne, 0);
    cb->rm = add_param(u->params, p, "running_mean", 1, cne, 1);
    cb->rv = add_param(u->params, p, "running_var", 1, cne, 1);
    if (!cb->w || !cb->gamma || !cb->beta || !cb->rm || !cb->rv)
        return -1;
    mk_nn_fill(cb->gamma, 1.0f);
    mk_nn_fill(cb->rv, 1.0f);
    return 0;
}

mk_status mk_unet_new(mk_ctx *ctx, const mk_unet_cfg *cfg, uint64_t seed, mk_unet **out)
{
    *out = NULL;
    if (cfg->dim != 2 && cfg->dim != 3)
        return mk_err(ctx, MK_ERR_INVALID, "unet: dim must be 2 or 3, got %d", cfg->dim);
    if (cfg->levels < 1 || cfg->levels > UNET_MAX_LEVELS || cfg->base < 1 || cfg->in_ch < 1 ||
        cfg->classes < 1 || (int64_t)cfg->base << (cfg->levels - 1) > 65536)
        return mk_err(ctx, MK_ERR_INVALID,
                      "unet: need 1 <= levels <= %d, base, in_ch, classes >= 1 (got levels %d, "
                      "base %d, in_ch %d, classes %d)",
                      UNET_MAX_LEVELS, cfg->levels, cfg->base, cfg->in_ch, cfg->classes);
    mk_unet *u = calloc(1, sizeof *u);
    if (!u || !(u->params = mk_nn_params_new())) {
        free(u);
        return mk_err(ctx, MK_ERR_NOMEM, "unet: out of memory");
    }
    u->cfg = *cfg;
    int nd = cfg->dim + 2;
    int c = cfg->in_ch, ok = 1;
    char blk[32];
    for (int i = 0; i < cfg->levels && ok; i++) {
        int w = cfg->base << i;
        snprintf(blk, sizeof blk, "enc.%d", i);
        ok = add_conv_bn(u, &u->enc[i][0], blk, 0, c, w) == 0 &&
             add_conv_bn(u, &u->enc[i][1], blk, 3, w, w) == 0;
        c = w;
    }
    for (int j = 0; j + 1 < cfg->levels && ok; j++) {
        int w = cfg->base << (cfg->levels - 2 - j);
        int64_t une[5] = {c, w, 2, 2, 2}, bne[1] = {w};
        snprintf(blk, sizeof blk, "up.%d", j);
        u->up_w[j] = add_param(u->params, blk, "weight", nd, une, 0);
        u->up_b[j] = add_param(u->params, blk, "bias", 1, bne, 0);
        ok = u->up_w[j] && u->up_b[j];
        c = w;
    }
    for (int j = 0; j + 1 < cfg->levels && ok; j++) {
        int w = cfg->base << (cfg->levels - 2 - j);
        snprintf(blk, sizeof blk, "dec.%d", j);
        ok = add_conv_bn(u, &u->dec[j][0], blk, 0, 2 * w, w) == 0 &&
             add_conv_bn(u, &u->dec[j][1], blk, 3, w, w) == 0;
    }
    if (ok) {
        int64_t hne[5] = {cfg->classes, cfg->base, 1, 1, 1}, hb[1] = {cfg->classes};
        u->head_w = mk_nn_params_add(u->params, "head.weight", nd, hne, 0);
        u->head_b = mk_nn_params_add(u->params, "head.bias", 1, hb, 0);
        ok = u->head_w && u->head_b;
    }
    if (!ok) {
        mk_unet_free(u);
        return mk_err(ctx, MK_ERR_NOMEM, "unet: out of memory");
    }
    /* PyTorch default init, in module order */
    mk_rng r;
    mk_rng_seed(&r, seed);
    for (int i = 0; i < cfg->levels; i++)
        for (int k = 0; k < 2; k++)
            mk_nn_init_conv(&r, u->enc[i][k].w, NULL);
    for (int j = 0; j + 1 < cfg->levels; j++) {
        mk_nn_init_conv(&r, u->up_w[j], u->up_b[j]);
        for (int k = 0; k < 2; k++)
            mk_nn_init_conv(&r, u->dec[j][k].w, NULL);
    }
    mk_nn_init_conv(&r, u->head_w, u->head_b);
    for (int i = 0; i + 1 < cfg->levels; i++) {
        snprintf(u->names[i], sizeof u->names[i], "enc%d", i);
        snprintf(u->names[UNET_MAX_LEVELS + i], sizeof u->names[0], "dec%d", i);
    }
    *out = u;
    return MK_OK;
}

void mk_unet_free(mk_unet *u)
{
    if (!u)
        return;
    mk_nn_params_free(u->params);
    free(u);
}

mk_nn_params *mk_unet_params(mk_unet *u)
{
    return u->params;
}

const mk_unet_cfg *mk_unet_config(const mk_unet *u)
{
    return &u->cfg;
}

/* conv -> BN -> ReLU. In recycle mode (inference) values are handed back as soon as no later op
 * reads them; elsewhere mk_nn_release is a no-op. */
static mk_var *conv_bn_relu(mk_unet *u, mk_nn_graph *g, mk_var *x, conv_bn *cb, int release_x)
{
    static const int one[3] = {1, 1, 1};
    mk_var *y = mk_nn_conv(g, x, mk_nn_param(g, cb->w), NULL, one, one, one);
    if (release_x)
        mk_nn_release(g, x);
    mk_var *z = mk_nn_batchnorm(g, y, mk_nn_param(g, cb->gamma), mk_nn_param(g, cb->beta), cb->rm,
                                cb->rv, u->cfg.bn_momentum, u->cfg.bn_eps);
    mk_nn_release(g, y);
    return mk_nn_relu_inplace(g, z); /* BN backward reads its input, not its output */
}

mk_var *mk_unet_forward(mk_unet *u, mk_nn_graph *g, mk_var *x)
{
    static const int two[3] = {2, 2, 2}, zero[3] = {0, 0, 0}, one[3] = {1, 1, 1};
    int L = u->cfg.levels;
    mk_var *skip[UNET_MAX_LEVELS];
    if (!x)
        return NULL;
    MK_ASSERT(x->t.ndim == u->cfg.dim + 2 && x->t.ne[1] == u->cfg.in_ch);
    for (int i = 0; i < L; i++) {
        x = conv_bn_relu(u, g, x, &u->enc[i][0], i > 0);
        x = conv_bn_relu(u, g, x, &u->enc[i][1], 1);
        if (i + 1 < L) {
            skip[i] = mk_nn_set_name(x, u->names[i]);
            x = mk_nn_maxpool(g, x, 2, 2);
        } else {
            mk_nn_set_name(x, "bottleneck");
        }
    }
    for (int j = 0; j + 1 < L; j++) {
        mk_var *up = mk_nn_conv_transpose(g, x, mk_nn_param(g, u->up_w[j]),
                                          mk_nn_param(g, u->up_b[j]), two, zero, one);
        mk_nn_release(g, x);
        x = mk_nn_concat(g, up, skip[L - 2 - j]);
        mk_nn_release(g, up);
        mk_nn_release(g, skip[L - 2 - j]);
        x = conv_bn_relu(u, g, x, &u->dec[j][0], 1);
        x = conv_bn_relu(u, g, x, &u->dec[j][1], 1);
        mk_nn_set_name(x, u->names[UNET_MAX_LEVELS + j]);
    }
    mk_var *lg =
        mk_nn_conv(g, x, mk_nn_param(g, u->head_w), mk_nn_param(g, u->head_b), one, zero, one);
    mk_nn_release(g, x);
    return mk_nn_set_name(lg, "logits");
}

double mk_unet_conv_flops(const mk_unet_cfg *cfg, const int *size, double *first)
{
    double vox = 1, kv = cfg->dim == 3 ? 27 : 9, tot = 0;
    for (int a = 0; a < cfg->dim; a++)
        vox *= size[a];
    int c = cfg->in_ch;
    double fl = 0;
    for (int i = 0; i < cfg->levels; i++) {
        int w = cfg->base << i;
        double v = vox;
        for (int k = 0; k < i; k++)
            v /= (double)(1 << cfg->dim);
        fl = 2 * v * w * c * kv;
        if (i == 0 && first)
            *first = fl;
        tot += fl + 2 * v * w * w * kv;
        c = w;
    }
    for (int j = 0; j + 1 < cfg->levels; j++) {
        int lvl = cfg->levels - 2 - j, w = cfg->base << lvl;
        double v = vox;
        for (int k = 0; k < lvl; k++)
            v /= (double)(1 << cfg->dim);
        /* convT: 2 * in_elems * cout * k^d, in_elems = c * v / 2^d */
        tot += 2 * (c * v / (1 << cfg->dim)) * w * (1 << cfg->dim);
        tot += 2 * v * w * 2 * w * kv + 2 * v * w * w * kv;
        c = w;
    }
    tot += 2 * vox * cfg->classes * c;
    return tot;
}
