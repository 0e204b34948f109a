/* Convolution: fast entry points (temporary: they call the scalar references). */
#include "nn/mk_conv.h"

size_t mk_conv_workspace_size(const mk_conv_shape *s, int threads)
{
    (void)s;
    (void)threads;
    return 0;
}

void mk_conv_fwd(const mk_conv_shape *s, const float *x, const float *w, const float *bias, float *y,
                 void *ws, int threads)
{
    (void)ws;
    (void)threads;
    mk_conv_fwd_ref(s, x, w, bias, y);
}

void mk_conv_bwd_data(const mk_conv_shape *s, const float *dy, const float *w, float *dx, void *ws,
                      int threads)
{
    (void)ws;
    (void)threads;
    mk_conv_bwd_data_ref(s, dy, w, dx);
}

void mk_conv_bwd_weight(const mk_conv_shape *s, const float *x, const float *dy, float *dw,
                        float *db, void *ws, int threads)
{
    (void)ws;
    (void)threads;
    mk_conv_bwd_weight_ref(s, x, dy, dw, db);
}
