/* CycleGAN-style generator and PatchGAN discriminator (see mk_translator.h). */
#include <stdio.h>
#include <stdlib.h>

#include "mk_translator.h"

typedef struct tr_layer {
    mk_param *w, *b;        /* conv / transposed conv */
    mk_param *gamma, *beta; /* instance norm (NULL when the layer has none) */
} tr_layer;

#define TR_MAX_LAYERS 6

struct mk_translator {
    mk_translator_kind kind;
    int width, in_ch;
    mk_nn_params *params;
    tr_layer l[TR_MAX_LAYERS];
};

/* Adds "<name>.weight/bias" of shape w_ne (4 dims) and, if norm_ch > 0, "<name>_in.weight/bias". */
static int add_layer(mk_translator *t, mk_rng *r, tr_layer *L, const char *name, int64_t a,
                     int64_t b, int k, int norm_ch, int64_t bias_ch)
{
    char nm[MK_NN_NAME_MAX];
    int64_t wne[4] = {a, b, k, k}, bne[1] = {bias_ch};
    snprintf(nm, sizeof nm, "%s.weight", name);
    L->w = mk_nn_params_add(t->params, nm, 4, wne, 0);
    snprintf(nm, sizeof nm, "%s.bias", name);
    L->b = mk_nn_params_add(t->params, nm, 1, bne, 0);
    if (!L->w || !L->b)
        return -1;
    mk_nn_init_conv(r, L->w, L->b);
    if (norm_ch > 0) {
        int64_t cne[1] = {norm_ch};
        snprintf(nm, sizeof nm, "%s_in.weight", name);
        L->gamma = mk_nn_params_add(t->params, nm, 1, cne, 0);
        snprintf(nm, sizeof nm, "%s_in.bias", name);
        L->beta = mk_nn_params_add(t->params, nm, 1, cne, 0);
        if (!L->gamma || !L->beta)
            return -1;
        mk_nn_fill(L->gamma, 1.0f);
        mk_nn_fill(L->beta, 0.0f);
    }
    return 0;
}

mk_status mk_translator_new(mk_ctx *ctx, mk_translator_kind kind, int width, uint64_t seed,
                            mk_translator **out)
{
    return mk_translator_new_in(ctx, kind, 1, width, seed, out);
}

mk_status mk_translator_new_in(mk_ctx *ctx, mk_translator_kind kind, int in_ch, int width,
                               uint64_t seed, mk_translator **out)
{
    *out = NULL;
    if (kind != MK_TRANSLATOR_GEN && kind != MK_TRANSLATOR_DISC)
        return mk_err(ctx, MK_ERR_INVALID,
                      "translator: kind %d: expected generator or "
                      "discriminator",
                      (int)kind);
    if (width < 1 || width > 4096)
        return mk_err(ctx, MK_ERR_INVALID, "translator: width: expected 1..4096, got %d", width);
    if (in_ch < 1 || in_ch > 4096 || (kind == MK_TRANSLATOR_GEN && in_ch != 1))
        return mk_err(ctx, MK_ERR_INVALID,
                      "translator: input channels: expected 1 (generator) or 1..4096 "
                      "(discriminator), got %d",
                      in_ch);
    mk_translator *t = calloc(1, sizeof *t);
    if (!t || !(t->params = mk_nn_params_new())) {
        free(t);
        return mk_err(ctx, MK_ERR_NOMEM, "translator: out of memory");
    }
    t->kind = kind;
    t->width = width;
    t->in_ch = in_ch;
    mk_rng r;
    mk_rng_seed(&r, seed);
    int w = width, e = 0;
    if (kind == MK_TRANSLATOR_GEN) {
        e |= add_layer(t, &r, &t->l[0], "c0", w, 1, 3, w, w);
        e |= add_layer(t, &r, &t->l[1], "down", 2 * w, w, 3, 2 * w, 2 * w);
        e |= add_layer(t, &r, &t->l[2], "res0", 2 * w, 2 * w, 3, 2 * w, 2 * w);
        e |= add_layer(t, &r, &t->l[3], "res1", 2 * w, 2 * w, 3, 2 * w, 2 * w);
        /* transposed conv weight [in][out][k][k] */
        e |= add_layer(t, &r, &t->l[4], "up", 2 * w, w, 2, w, w);
        e |= add_layer(t, &r, &t->l[5], "out", 1, w, 3, 0, 1);
    } else {
        e |= add_layer(t, &r, &t->l[0], "d0", w, in_ch, 4, 0, w);
        e |= add_layer(t, &r, &t->l[1], "d1", 2 * w, w, 4, 2 * w, 2 * w);
        e |= add_layer(t, &r, &t->l[2], "d2", 1, 2 * w, 3, 0, 1);
    }
    if (e) {
        mk_translator_free(t);
        return mk_err(ctx, MK_ERR_NOMEM, "translator: out of memory");
    }
    *out = t;
    return MK_OK;
}

void mk_translator_free(mk_translator *t)
{
    if (!t)
        return;
    mk_nn_params_free(t->params);
    free(t);
}

mk_nn_params *mk_translator_params(mk_translator *t)
{
    return t->params;
}

mk_translator_kind mk_translator_kind_of(const mk_translator *t)
{
    return t->kind;
}

static mk_var *conv(mk_nn_graph *g, mk_var *x, const tr_layer *L, int stride, int pad)
{
    const int s[2] = {stride, stride}, p[2] = {pad, pad}, d[2] = {1, 1};
    return mk_nn_conv(g, x, mk_nn_param(g, L->w), mk_nn_param(g, L->b), s, p, d);
}

static mk_var *inorm(mk_nn_graph *g, mk_var *x, const tr_layer *L)
{
    return mk_nn_instnorm(g, x, mk_nn_param(g, L->gamma), mk_nn_param(g, L->beta), 1e-5f);
}

mk_var *mk_translator_forward(mk_translator *t, mk_nn_graph *g, mk_var *x)
{
    if (!x)
        return NULL;
    MK_ASSERT(x->t.ndim == 4 && x->t.ne[1] == t->in_ch);
    const tr_layer *L = t->l;
    if (t->kind == MK_TRANSLATOR_DISC) {
        mk_var *y = mk_nn_leaky_relu(g, conv(g, x, &L[0], 2, 1), 0.2f);
        y = mk_nn_leaky_relu(g, inorm(g, conv(g, y, &L[1], 2, 1), &L[1]), 0.2f);
        return conv(g, y, &L[2], 1, 1);
    }
    MK_ASSERT(x->t.ne[2] % 2 == 0 && x->t.ne[3] % 2 == 0);
    mk_var *y = mk_nn_relu(g, inorm(g, conv(g, x, &L[0], 1, 1), &L[0]));
    y = mk_nn_relu(g, inorm(g, conv(g, y, &L[1], 2, 1), &L[1]));
    mk_var *r = mk_nn_relu(g, inorm(g, conv(g, y, &L[2], 1, 1), &L[2]));
    r = inorm(g, conv(g, r, &L[3], 1, 1), &L[3]);
    y = mk_nn_add(g, y, r);
    const int s2[2] = {2, 2}, p0[2] = {0, 0}, d1[2] = {1, 1};
    y = mk_nn_conv_transpose(g, y, mk_nn_param(g, L[4].w), mk_nn_param(g, L[4].b), s2, p0, d1);
    y = mk_nn_relu(g, inorm(g, y, &L[4]));
    return mk_nn_tanh(g, conv(g, y, &L[5], 1, 1));
}
