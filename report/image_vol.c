/* Glue between io's images and metrics' label volumes, shared by `pipeline eval` and the evaluate
 * stage. */
#include <string.h>

#include "mk_report.h"

int mk_report_vtype_of(mk_dtype t, mk_metric_vtype *out)
{
    static const struct {
        mk_dtype d;
        mk_metric_vtype v;
    } map[] = {{MK_DT_UINT8, MK_METRIC_U8},    {MK_DT_INT8, MK_METRIC_I8},
               {MK_DT_UINT16, MK_METRIC_U16},  {MK_DT_INT16, MK_METRIC_I16},
               {MK_DT_UINT32, MK_METRIC_U32},  {MK_DT_INT32, MK_METRIC_I32},
               {MK_DT_UINT64, MK_METRIC_U64},  {MK_DT_INT64, MK_METRIC_I64},
               {MK_DT_FLOAT32, MK_METRIC_F32}, {MK_DT_FLOAT64, MK_METRIC_F64}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].d == t) {
            *out = map[i].v;
            return 1;
        }
    return 0;
}

mk_status mk_report_metric_vol(mk_ctx *ctx, const mk_image *img, const char *name, mk_metric_vol *v)
{
    memset(v, 0, sizeof *v);
    if (!mk_report_vtype_of(img->dtype, &v->type))
        return mk_err(ctx, MK_ERR_UNSUPPORTED,
                      "%s: datatype %s: expected an integer or float label image", name,
                      mk_dtype_name(img->dtype));
    for (int d = 3; d < MK_IMAGE_MAX_DIMS; d++)
        if (img->dim[d] != 1)
            return mk_err(ctx, MK_ERR_UNSUPPORTED,
                          "%s: dim[%d] = %lld: expected a 2D/3D label image (4th+ dims of 1)", name,
                          d + 1, (long long)img->dim[d]);
    v->data = img->data;
    for (int d = 0; d < 3; d++) {
        v->dim[d] = img->dim[d];
        v->box_dim[d] = img->dim[d];
        v->spacing[d] = img->geom.spacing[d];
    }
    v->name = name;
    return MK_OK;
}
