/* `pipeline convert IN OUT`: between every readable and writable image format, optionally changing
 * the datatype, the orientation or the spacing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "../io/mk_image.h"
#include "../io/mk_itk.h"
#include "../io/mk_resample.h"
#include "mk_verbs.h"

static mk_status parse_spacing(mk_ctx *ctx, const char *s, double sp[3])
{
    char *end;
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        sp[i] = strtod(p, &end);
        if (end == p || !(sp[i] > 0) || !isfinite(sp[i]))
            return mk_err(ctx, MK_ERR_USAGE,
                          "convert: option --spacing: expected X,Y,Z in mm (> 0), got '%s'", s);
        p = end;
        if (i < 2) {
            if (*p != ',') {
                if (*p == '\0' && i == 0) { /* one value: isotropic */
                    sp[1] = sp[2] = sp[0];
                    return MK_OK;
                }
                return mk_err(ctx, MK_ERR_USAGE,
                              "convert: option --spacing: expected X,Y,Z in mm, got '%s'", s);
            }
            p++;
        }
    }
    if (*p)
        return mk_err(ctx, MK_ERR_USAGE,
                      "convert: option --spacing: expected X,Y,Z in mm, got '%s'", s);
    return MK_OK;
}

mk_status mk_verb_convert(mk_cli *cli, int argc, char **argv)
{
    mk_ctx *ctx = cli->ctx;
    const char *in = NULL, *out = NULL, *dtype = NULL, *orient = NULL, *spacing = NULL,
               *interp = "linear", *series = NULL;
    mk_dicom_opts dop = {0};
    mk_args a;
    mk_args_init(&a, argc, argv);
    while (mk_args_next(&a)) {
        if (mk_args_is(&a, "--allow-gaps")) {
            dop.allow_gaps = 1;
            continue;
        }
        if (mk_args_is(&a, "--recursive")) {
            dop.recursive = 1;
            continue;
        }
        const char **opt = mk_args_is(&a, "--dtype")      ? &dtype
                           : mk_args_is(&a, "--reorient") ? &orient
                           : mk_args_is(&a, "--spacing")  ? &spacing
                           : mk_args_is(&a, "--interp")   ? &interp
                           : mk_args_is(&a, "--series")   ? &series
                                                          : NULL;
        if (opt) {
            if (!(*opt = mk_args_value(&a)))
                return mk_args_missing(&a, ctx);
        } else if (mk_args_positional(&a) && !in) {
            in = a.arg;
        } else if (mk_args_positional(&a) && !out) {
            out = a.arg;
        } else {
            return mk_args_unknown(&a, ctx);
        }
    }
    if (!in || !out)
        return mk_err(ctx, MK_ERR_USAGE,
                      "convert: expected IN and OUT (see 'pipeline help convert')");
    int dt = -1, ip = mk_interp_parse(interp);
    if (dtype && (dt = mk_dtype_parse(dtype)) < 0)
        return mk_err(ctx, MK_ERR_USAGE,
                      "convert: option --dtype: expected uint8, int8, uint16, int16, "
                      "uint32, int32, uint64, int64, float32, float64 or rgb24, got '%s'",
                      dtype);
    if (ip < 0)
        return mk_err(ctx, MK_ERR_USAGE,
                      "convert: option --interp: expected linear, nearest or label, got '%s'",
                      interp);
    double sp[3];
    if (spacing && parse_spacing(ctx, spacing, sp) != MK_OK)
        return ctx->status;
    if (strcmp(in, out) == 0)
        return mk_err(ctx, MK_ERR_USAGE, "convert: IN and OUT are the same file");

    const char *dicom_opt = series           ? "--series"
                            : dop.allow_gaps ? "--allow-gaps"
                            : dop.recursive  ? "--recursive"
                                             : NULL;
    if (dicom_opt && !mk_fs_is_dir(in))
        return mk_err(ctx, MK_ERR_USAGE,
                      "convert: option %s: IN must be a DICOM folder, got the file '%s'", dicom_opt,
                      in);
    mk_image *img = NULL, *tmp = NULL;
    /* a DICOM folder with several series: --series picks one ('pipeline info DIR' lists them) */
    dop.series_uid = series;
    mk_status st = mk_fs_is_dir(in) ? mk_io_dicom_read_ex(ctx, in, &dop, &img)
                                    : mk_io_read_image(ctx, in, &img);
    if (st != MK_OK)
        return st;
    if (orient) {
        if ((st = mk_reorient(ctx, img, orient, &tmp)) != MK_OK)
            goto done;
        mk_image_free(img);
        img = tmp;
        tmp = NULL;
    }
    if (spacing) {
        if ((st = mk_resample_spacing(ctx, img, sp, (mk_interp)ip, &tmp)) != MK_OK)
            goto done;
        mk_image_free(img);
        img = tmp;
        tmp = NULL;
    }
    if (dt >= 0 && dt != (int)img->dtype) {
        if ((dt == MK_DT_RGB24) != (img->dtype == MK_DT_RGB24)) {
            st = mk_err(ctx, MK_ERR_UNSUPPORTED, "convert: rgb24 converts only to/from rgb24");
            goto done;
        }
        int ndim = img->ndim;
        if ((st = mk_image_new(ctx, (mk_dtype)dt, ndim, img->dim, &tmp)) != MK_OK)
            goto done;
        void *data = tmp->data;
        *tmp = *img;
        tmp->data = data;
        tmp->dtype = (mk_dtype)dt;
        for (int64_t i = 0; i < mk_image_nvox(img); i++)
            mk_image_set(tmp, i, mk_image_get(img, i));
        mk_image_free(img);
        img = tmp;
        tmp = NULL;
    }
    st = mk_io_write_image(ctx, out, img);
    if (st == MK_OK)
        MK_LOG_I(ctx, "wrote %s", out);
done:
    mk_image_free(img);
    mk_image_free(tmp);
    return st;
}
