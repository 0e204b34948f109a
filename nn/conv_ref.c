/* Convolution: output-shape rule and the plain scalar reference kernels (the test oracle).
 *
 * The references are written straight from the definition
 *   y[n][co][o] = b[co] + sum_{ci,t} w[co][ci][t] * x[n][ci][o*stride - pad + t*dil]
 * with double accumulation, one output (or one gradient element) at a time, gathering its terms.
 * They are slow on purpose: no blocking, no threads, no BLAS. */
#include "nn/mk_conv.h"

#include <stdint.h>

int mk_conv_shape_finish(mk_conv_shape *s)
{
    if (!s || s->n <= 0 || s->cin <= 0 || s->cout <= 0)
        return -1;
    for (int a = 0; a < 3; a++) {
        if (s->in[a] <= 0 || s->k[a] <= 0 || s->stride[a] <= 0 || s->pad[a] < 0 || s->dil[a] <= 0)
            return -1;
        int64_t span =
            (int64_t)s->in[a] + 2 * (int64_t)s->pad[a] - (int64_t)s->dil[a] * (s->k[a] - 1) - 1;
        if (span < 0)
            return -1;
        int64_t o = span / s->stride[a] + 1;
        if (o > INT32_MAX)
            return -1;
        s->out[a] = (int)o;
    }
    return 0;
}

/* Number of elements of one spatial volume (in or out). */
static size_t vol3(const int d[3])
{
    return (size_t)d[0] * (size_t)d[1] * (size_t)d[2];
}

void mk_conv_fwd_ref(const mk_conv_shape *s, const float *x, const float *w, const float *bias,
                     float *y)
{
    const size_t vin = vol3(s->in), vout = vol3(s->out);
    const size_t kvol = vol3(s->k);
    for (int n = 0; n < s->n; n++)
        for (int co = 0; co < s->cout; co++)
            for (int od = 0; od < s->out[0]; od++)
                for (int oh = 0; oh < s->out[1]; oh++)
                    for (int ow = 0; ow < s->out[2]; ow++) {
                        double acc = bias ? (double)bias[co] : 0.0;
                        for (int ci = 0; ci < s->cin; ci++) {
                            const float *xc = x + ((size_t)n * s->cin + ci) * vin;
                            const float *wc = w + ((size_t)co * s->cin + ci) * kvol;
                            for (int td = 0; td < s->k[0]; td++) {
                                int id = od * s->stride[0] - s->pad[0] + td * s->dil[0];
                                if (id < 0 || id >= s->in[0])
                                    continue;
                                for (int th = 0; th < s->k[1]; th++) {
                                    int ih = oh * s->stride[1] - s->pad[1] + th * s->dil[1];
                                    if (ih < 0 || ih >= s->in[1])
                                        continue;
                                    for (int tw = 0; tw < s->k[2]; tw++) {
                                        int iw = ow * s->stride[2] - s->pad[2] + tw * s->dil[2];
                                        if (iw < 0 || iw >= s->in[2])
                                            continue;
                                        size_t xi = ((size_t)id * s->in[1] + ih) * s->in[2] + iw;
                                        size_t wi = ((size_t)td * s->k[1] + th) * s->k[2] + tw;
                                        acc += (double)wc[wi] * (double)xc[xi];
                                    }
                                }
                            }
                        }
                        y[((size_t)n * s->cout + co) * vout +
                          ((size_t)od * s->out[1] + oh) * s->out[2] + ow] = (float)acc;
                    }
}

/* Output index along one axis reached from input index i through tap t, or -1 when none:
 * o*stride - pad + t*dil = i. */
static int out_of(int i, int t, int stride, int pad, int dil, int nout)
{
    int num = i + pad - t * dil;
    if (num < 0 || num % stride != 0)
        return -1;
    int o = num / stride;
    return o < nout ? o : -1;
}

void mk_conv_bwd_data_ref(const mk_conv_shape *s, const float *dy, const float *w, float *dx)
{
    const size_t vin = vol3(s->in), vout = vol3(s->out);
    const size_t kvol = vol3(s->k);
    for (int n = 0; n < s->n; n++)
        for (int ci = 0; ci < s->cin; ci++)
            for (int id = 0; id < s->in[0]; id++)
                for (int ih = 0; ih < s->in[1]; ih++)
                    for (int iw = 0; iw < s->in[2]; iw++) {
                        double acc = 0.0;
                        for (int co = 0; co < s->cout; co++) {
                            const float *dyc = dy + ((size_t)n * s->cout + co) * vout;
                            const float *wc = w + ((size_t)co * s->cin + ci) * kvol;
                            for (int td = 0; td < s->k[0]; td++) {
                                int od =
                                    out_of(id, td, s->stride[0], s->pad[0], s->dil[0], s->out[0]);
                                if (od < 0)
                                    continue;
                                for (int th = 0; th < s->k[1]; th++) {
                                    int oh = out_of(ih, th, s->stride[1], s->pad[1], s->dil[1],
                                                    s->out[1]);
                                    if (oh < 0)
                                        continue;
                                    for (int tw = 0; tw < s->k[2]; tw++) {
                                        int ow = out_of(iw, tw, s->stride[2], s->pad[2], s->dil[2],
                                                        s->out[2]);
                                        if (ow < 0)
                                            continue;
                                        size_t oi = ((size_t)od * s->out[1] + oh) * s->out[2] + ow;
                                        size_t wi = ((size_t)td * s->k[1] + th) * s->k[2] + tw;
                                        acc += (double)wc[wi] * (double)dyc[oi];
                                    }
                                }
                            }
                        }
                        float *p = dx + ((size_t)n * s->cin + ci) * vin +
                                   ((size_t)id * s->in[1] + ih) * s->in[2] + iw;
                        *p = (float)((double)*p + acc);
                    }
}

void mk_conv_bwd_weight_ref(const mk_conv_shape *s, const float *x, const float *dy, float *dw,
                            float *db)
{
    const size_t vin = vol3(s->in), vout = vol3(s->out);
    const size_t kvol = vol3(s->k);
    for (int co = 0; co < s->cout; co++)
        for (int ci = 0; ci < s->cin; ci++)
            for (int td = 0; td < s->k[0]; td++)
                for (int th = 0; th < s->k[1]; th++)
                    for (int tw = 0; tw < s->k[2]; tw++) {
                        double acc = 0.0;
                        for (int n = 0; n < s->n; n++) {
                            const float *xc = x + ((size_t)n * s->cin + ci) * vin;
                            const float *dyc = dy + ((size_t)n * s->cout + co) * vout;
                            for (int od = 0; od < s->out[0]; od++) {
                                int id = od * s->stride[0] - s->pad[0] + td * s->dil[0];
                                if (id < 0 || id >= s->in[0])
                                    continue;
                                for (int oh = 0; oh < s->out[1]; oh++) {
                                    int ih = oh * s->stride[1] - s->pad[1] + th * s->dil[1];
                                    if (ih < 0 || ih >= s->in[1])
                                        continue;
                                    for (int ow = 0; ow < s->out[2]; ow++) {
                                        int iw = ow * s->stride[2] - s->pad[2] + tw * s->dil[2];
                                        if (iw < 0 || iw >= s->in[2])
                                            continue;
                                        acc +=
                                            (double)dyc[((size_t)od * s->out[1] + oh) * s->out[2] +
                                                        ow] *
                                            (double)
                                                xc[((size_t)id * s->in[1] + ih) * s->in[2] + iw];
                                    }
                                }
                            }
                        }
                        float *p = dw + ((size_t)co * s->cin + ci) * kvol +
                                   ((size_t)td * s->k[1] + th) * s->k[2] + tw;
                        *p = (float)((double)*p + acc);
                    }
    if (db) {
        for (int co = 0; co < s->cout; co++) {
            double acc = 0.0;
            for (int n = 0; n < s->n; n++) {
                const float *dyc = dy + ((size_t)n * s->cout + co) * vout;
                for (size_t i = 0; i < vout; i++)
                    acc += (double)dyc[i];
            }
            db[co] = (float)((double)db[co] + acc);
        }
    }
}
