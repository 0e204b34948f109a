/* Inference with a trained student: slice-wise sliding-window segmentation of a CT volume. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mk_log.h"
#include "io/mk_resample.h"
#include "mk_infer.h"
#include "stage_internal.h"

/* Window starts covering [0, d) with windows of size p placed as nnU-Net places them: n =
 * ceil((d - p) / (step x p)) + 1 windows spread evenly from 0 to d - p (the last flush with the
 * end, positions rounded half to even as numpy does; step 0.5 gives at least half a window of
 * overlap); d <= p gives one window starting at (d - p) / 2 (padded). Returns the count (at most
 * max). */
int mk__window_starts(int64_t d, int p, double step, int64_t *out, int max)
{
    if (d <= p) {
        out[0] = (d - p) / 2;
        return 1;
    }
    double stride = step * p >= 1 ? step * p : 1;
    int64_t n = (int64_t)ceil((double)(d - p) / stride) + 1;
    if (n > max)
        n = max;
    for (int64_t i = 0; i < n; i++)
        out[i] = n > 1 ? (int64_t)nearbyint((double)i * (double)(d - p) / (double)(n - 1)) : 0;
    return (int)n;
}

void mk__window_weights(int pw, int ph, int uniform, float *w)
{
    /* nnU-Net's importance map: a Gaussian centred on the window, sigma = size / 8 per axis,
     * scaled to a maximum of 1 (its corners keep about 2e-7, never 0) */
    double sx = pw / 8.0, sy = ph / 8.0, cx = (pw - 1) / 2.0, cy = (ph - 1) / 2.0;
    double top = uniform ? 1.0
                         : exp(-0.5 * (pw % 2 ? 0.0 : 0.25 / (sx * sx)) -
                               0.5 * (ph % 2 ? 0.0 : 0.25 / (sy * sy)));
    for (int y = 0; y < ph; y++)
        for (int x = 0; x < pw; x++) {
            double dx = (x - cx) / sx, dy = (y - cy) / sy;
            w[y * pw + x] = uniform ? 1.0f : (float)(exp(-0.5 * (dx * dx + dy * dy)) / top);
        }
}

/* Mirror a w x h window in place along x (fu) and/or y (fv). */
static void mirror(float *win, int w, int h, int fu, int fv)
{
    for (int y = 0; fu && y < h; y++)
        for (int x = 0; x < w / 2; x++) {
            float t = win[y * w + x];
            win[y * w + x] = win[y * w + w - 1 - x];
            win[y * w + w - 1 - x] = t;
        }
    for (int y = 0; fv && y < h / 2; y++)
        for (int x = 0; x < w; x++) {
            float t = win[y * w + x];
            win[y * w + x] = win[(h - 1 - y) * w + x];
            win[(h - 1 - y) * w + x] = t;
        }
}

static mk_status predict(mk_ctx *ctx, const char *model_h5, const mk_unet_cfg *cfg,
                         const char *translator_h5, int gen_width, const mk_image *ct, int is_ct,
                         const mk_data_params *p, int threads, mk_image **mask_out,
                         mk_image **via_out);

mk_status mk_stage_predict_volume(mk_ctx *ctx, const char *model_h5, const mk_unet_cfg *cfg,
                                  const mk_image *ct, const mk_data_params *p, int threads,
                                  mk_image **mask_out)
{
    return predict(ctx, model_h5, cfg, NULL, 0, ct, 1, p, threads, mask_out, NULL);
}

mk_status mk_stage_predict_volume_mr(mk_ctx *ctx, const char *model_h5, const mk_unet_cfg *cfg,
                                     const mk_image *mr, const mk_data_params *p, int threads,
                                     mk_image **mask_out)
{
    return predict(ctx, model_h5, cfg, NULL, 0, mr, 0, p, threads, mask_out, NULL);
}

mk_status mk_stage_predict_volume_via(mk_ctx *ctx, const char *model_h5, const mk_unet_cfg *cfg,
                                      const char *translator_h5, int gen_width, const mk_image *ct,
                                      const mk_data_params *p, int threads, mk_image **mask_out,
                                      mk_image **via_out)
{
    return predict(ctx, model_h5, cfg, translator_h5, gen_width, ct, 1, p, threads, mask_out,
                   via_out);
}

static mk_status predict(mk_ctx *ctx, const char *model_h5, const mk_unet_cfg *cfg,
                         const char *translator_h5, int gen_width, const mk_image *ct, int is_ct,
                         const mk_data_params *p, int threads, mk_image **mask_out,
                         mk_image **via_out)
{
    *mask_out = NULL;
    if (via_out)
        *via_out = NULL;
    /* the shape the file describes (a large teacher and a tiny student in one run) */
    mk_unet_cfg own = *cfg;
    int described = 0;
    mk_status sst = mk_infer_model_shape(ctx, model_h5, &own, &described);
    if (sst != MK_OK)
        return mk_err_prefix(ctx, "predict");
    cfg = &own;
    if (cfg->dim != 2 || cfg->in_ch != 1 || cfg->classes < 2)
        return mk_err(ctx, MK_ERR_INVALID,
                      "predict: expected a 2D U-Net with 1 input channel and "
                      ">= 2 classes");
    if (p->slice_axis < 0 || p->slice_axis > 5)
        return mk_err(ctx, MK_ERR_INVALID, "predict: slice_axis %d out of range", p->slice_axis);
    mk_status lst = mk_data_check_labels(ctx, p);
    if (lst != MK_OK)
        return mk_err_prefix(ctx, "predict");
    if (cfg->classes != p->classes)
        return mk_err(ctx, MK_ERR_INVALID,
                      "predict: the network has %d classes, the label "
                      "mapping %d (data.classes / data.labels and model.classes must agree)",
                      cfg->classes, p->classes);
    int div = 1 << (cfg->levels - 1), pw = p->patch[0], ph = p->patch[1];
    if (pw < 1 || ph < 1 || pw % div || ph % div)
        return mk_err(ctx, MK_ERR_INVALID, "predict: patch %dx%d must be a multiple of %d", pw, ph,
                      div);
    if (ct->ndim > 3 && (ct->dim[3] > 1 || ct->dim[4] > 1))
        return mk_err(ctx, MK_ERR_UNSUPPORTED,
                      "predict: expected a 2D or 3D CT image, got %d "
                      "dimensions",
                      ct->ndim);
    mk_unet *net = NULL;
    mk_status st = mk_unet_new(ctx, cfg, 0, &net);
    if (st != MK_OK)
        return st;
    if ((st = mk_model_load(ctx, model_h5, "params", mk_unet_params(net), NULL)) != MK_OK) {
        mk_unet_free(net);
        return mk_err_prefix(ctx, "predict");
    }
    mk_translator *gen = NULL;
    if (translator_h5) {
        if ((st = mk_translator_new(ctx, MK_TRANSLATOR_GEN, gen_width, 0, &gen)) == MK_OK) {
            mk__ck_model gm = {"G", mk_translator_params(gen), NULL};
            st = mk__ckpt_load(ctx, translator_h5, "translator", NULL, &gm, 1, NULL, 0);
        }
        if (st != MK_OK) {
            mk_translator_free(gen);
            mk_unet_free(net);
            return mk_err_prefix(ctx, "predict: generator");
        }
    }
    mk_image *work = NULL, *mw = NULL, *vw = NULL;
    st = mk_data_prepare(ctx, p, ct, 0, &work);
    if (st == MK_OK)
        st = mk__predict_net(ctx, net, gen, work, is_ct, p, threads, &mw, via_out ? &vw : NULL,
                             NULL);
    mk_unet_free(net);
    mk_translator_free(gen);
    if (st == MK_OK)
        st = mk_data_restore(ctx, p, mw, ct, mask_out);
    if (st == MK_OK && vw) {
        /* the pseudo-MRI back on the CT's grid (linear when resampled) */
        int rs = p->spacing[0] > 0 || p->spacing[1] > 0 || p->spacing[2] > 0;
        st = rs ? mk_resample_like(ctx, vw, ct, MK_INTERP_LINEAR, via_out)
                : mk_reorient_to(ctx, vw, ct, via_out);
        if (st == MK_OK)
            snprintf((*via_out)->descrip, sizeof(*via_out)->descrip, "%s", vw->descrip);
    }
    mk_image_free(work);
    mk_image_free(mw);
    mk_image_free(vw);
    if (st != MK_OK) {
        mk_image_free(*mask_out);
        *mask_out = NULL;
        if (via_out) {
            mk_image_free(*via_out);
            *via_out = NULL;
        }
    }
    return st;
}

mk_status mk__predict_net(mk_ctx *ctx, mk_unet *net, mk_translator *gen, const mk_image *ct,
                          int is_ct, const mk_data_params *p, int threads, mk_image **mask_out,
                          mk_image **via_out, double *forward_s)
{
    double fwd = 0;
    *mask_out = NULL;
    if (via_out)
        *via_out = NULL;
    const mk_unet_cfg *cfg = mk_unet_config(net);
    uint8_t value[MK_MAX_CLASSES]; /* mask value of each class */
    for (int c = 0; c < cfg->classes; c++)
        value[c] = (uint8_t)mk_data_value_of_class(p, c);
    int pw = p->patch[0], ph = p->patch[1], C = cfg->classes;
    mk_status st = MK_OK;
    const int64_t *dim = ct->dim;
    int axis = mk_data_axis(p), u = axis == 0 ? 1 : 0, v = axis == 2 ? 1 : 2;
    int64_t du = dim[u], dv = dim[v], us[1024], vs[1024];
    double step = p->window_step > 0 && p->window_step <= 1 ? p->window_step : 0.5;
    int nu = mk__window_starts(du, pw, step, us, 1024),
        nvw = mk__window_starts(dv, ph, step, vs, 1024);
    int passes = p->tta && !gen ? 4 : 1; /* mirroring: none, u, v, both */
    int nwin = nu * nvw;
    float *wmap = malloc((size_t)pw * (size_t)ph * sizeof *wmap);
    float *prob = malloc((size_t)(du * dv * C) * sizeof *prob);
    float *cnt = malloc((size_t)(du * dv) * sizeof *cnt);
    mk_tensor x = {0};
    int64_t xne[4] = {nwin, 1, ph, pw};
    mk_nn_graph *g = mk_nn_graph_new(threads > 0 ? threads : 1, 0);
    mk_image *mask = NULL, *via = NULL;
    float *vsum = NULL;
    if (gen && via_out &&
        (!(vsum = malloc((size_t)(du * dv) * sizeof *vsum)) ||
         mk_image_new_like(ctx, ct, MK_DT_FLOAT32, &via) != MK_OK))
        st = mk_err(ctx, MK_ERR_NOMEM, "predict: out of memory (pseudo-MRI volume)");
    if (st != MK_OK)
        ;
    else if (!wmap || !prob || !cnt || !g || mk_tensor_new(&x, 4, xne) != 0)
        st = mk_err(ctx, MK_ERR_NOMEM, "predict: out of memory");
    else
        mk__window_weights(pw, ph, p->blend_uniform, wmap);
    /* normalised voxel by voxel as windows are cut: no float copy of the volume */
    mk__norm norm;
    if (st == MK_OK)
        st = mk__norm_init(ctx, p, ct, is_ct, &norm);
    if (st == MK_OK)
        st = mk_image_new_like(ctx, ct, MK_DT_UINT8, &mask);
    float pad = st == MK_OK ? mk__norm_pad(&norm, ct) : -1.0f;
    /* recycling node buffers keeps only the live set of a forward (not when the generator's output
     * is read back after it) */
    if (g && !vsum)
        mk_nn_graph_set_recycle(g, 1);
    uint8_t *mdat = mask ? mask->data : NULL;
    for (int64_t s = 0; st == MK_OK && s < dim[axis]; s++) {
        memset(prob, 0, (size_t)(du * dv * C) * sizeof *prob);
        memset(cnt, 0, (size_t)(du * dv) * sizeof *cnt);
        for (int f = 0; f < passes && st == MK_OK; f++) {
            int fu = f & 1, fv = (f >> 1) & 1;
            for (int a = 0; a < nu; a++)
                for (int b = 0; b < nvw; b++) {
                    float *w = x.data + (int64_t)(a * nvw + b) * pw * ph;
                    mk__cut_image(ct, &norm, axis, s, us[a], vs[b], pw, ph, pad, w);
                    mirror(w, pw, ph, fu, fv);
                }
            double tf = mk_now_s();
            mk_nn_graph_begin(g, 0);
            mk_nn_graph_set_no_grad(g, 1);
            mk_var *in = mk_nn_input(g, &x, 0);
            if (gen)
                in = mk_translator_forward(gen, g, in);
            if (vsum && in && !mk_nn_graph_oom(g))
                memset(vsum, 0, (size_t)(du * dv) * sizeof *vsum);
            mk_var *pr = mk_nn_softmax(g, mk_unet_forward(net, g, in));
            fwd += mk_now_s() - tf;
            if (!pr || mk_nn_graph_oom(g)) {
                st = mk_err(ctx, MK_ERR_NOMEM, "predict: out of memory in the forward pass");
                break;
            }
            for (int a = 0; a < nu; a++)
                for (int b = 0; b < nvw; b++) {
                    const float *o = pr->t.data + (int64_t)(a * nvw + b) * C * pw * ph;
                    for (int y = 0; y < ph; y++)
                        for (int xx = 0; xx < pw; xx++) {
                            int64_t uu = us[a] + xx, vv = vs[b] + y;
                            if (uu < 0 || uu >= du || vv < 0 || vv >= dv)
                                continue;
                            int64_t q = vv * du + uu;
                            float wt = wmap[y * pw + xx];
                            /* the network saw the window mirrored: read it back mirrored */
                            int64_t r =
                                (int64_t)(fv ? ph - 1 - y : y) * pw + (fu ? pw - 1 - xx : xx);
                            cnt[q] += wt;
                            if (vsum)
                                vsum[q] += wt * in->t.data[(int64_t)(a * nvw + b) * pw * ph + r];
                            for (int c = 0; c < C; c++)
                                prob[q * C + c] += wt * o[(int64_t)c * pw * ph + r];
                        }
                }
        }
        if (st != MK_OK)
            break;
        for (int64_t vv = 0; vv < dv; vv++)
            for (int64_t uu = 0; uu < du; uu++) {
                int64_t q = vv * du + uu, best = 0;
                for (int c = 1; c < C; c++)
                    if (prob[q * C + c] > prob[q * C + best])
                        best = c;
                int64_t cidx[3];
                cidx[axis] = s;
                cidx[u] = uu;
                cidx[v] = vv;
                int64_t idx = cidx[0] + dim[0] * (cidx[1] + dim[1] * cidx[2]);
                mdat[idx] = value[best];
                if (vsum)
                    ((float *)via->data)[idx] = cnt[q] > 0 ? vsum[q] / cnt[q] : 0.0f;
            }
    }
    free(wmap);
    free(vsum);
    free(prob);
    free(cnt);
    mk_tensor_free(&x);
    mk_nn_graph_free(g);
    if (forward_s)
        *forward_s = fwd;
    if (st != MK_OK) {
        mk_image_free(mask);
        mk_image_free(via);
        return st;
    }
    *mask_out = mask;
    if (via_out) {
        if (via)
            snprintf(via->descrip, sizeof via->descrip, "medkd pseudo-MRI (generator G output)");
        *via_out = via;
    }
    return MK_OK;
}
