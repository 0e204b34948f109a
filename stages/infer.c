/* Inference with a self-describing model file (stages/mk_infer.h): the description written beside
 * the weights by the training stages, loading it back, and one volume segmented as evaluation
 * segments it. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mk_log.h"
#include "core/mk_fs.h"
#include "mk_infer.h"
#include "stage_internal.h"

static const char *const AXIS_NAMES[6] = {"i", "j", "k", "axial", "coronal", "sagittal"};

static cJSON *num_array(const double *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

char *mk_model_info_json(const mk_unet_cfg *cfg, const mk_data_params *p, const mk_model_info *info)
{
    cJSON *js = cJSON_CreateObject();
    if (!js)
        return NULL;
    int is_ct = info->modality && p->ct_modality && !strcmp(info->modality, p->ct_modality);
    cJSON_AddStringToObject(js, "format", "medkd-model");
    cJSON_AddNumberToObject(js, "version", 1);
    cJSON_AddStringToObject(js, "medkd_version", info->version ? info->version : "");
    cJSON_AddStringToObject(js, "method", info->method ? info->method : "");
    cJSON_AddStringToObject(js, "role", info->role ? info->role : "");
    cJSON_AddStringToObject(js, "config_hash", info->config_hash ? info->config_hash : "");
    cJSON *net = cJSON_AddObjectToObject(js, "network");
    if (net) {
        cJSON_AddStringToObject(net, "kind", "unet2d");
        cJSON_AddNumberToObject(net, "width", cfg->base);
        cJSON_AddNumberToObject(net, "depth", cfg->levels);
        cJSON_AddNumberToObject(net, "classes", cfg->classes);
        cJSON_AddNumberToObject(net, "in_channels", cfg->in_ch);
        cJSON_AddStringToObject(net, "norm", "batch");
    }
    cJSON *in = cJSON_AddObjectToObject(js, "input");
    if (in) {
        cJSON_AddStringToObject(in, "modality", info->modality ? info->modality : "");
        cJSON_AddStringToObject(in, "normalisation",
                                is_ct                          ? "ct_window"
                                : p->mri_norm == MK_MRI_MINMAX ? "minmax"
                                                               : "zscore");
        if (is_ct)
            cJSON_AddItemToObject(in, "ct_window", num_array(p->ct_window, 2));
    }
    cJSON *g = cJSON_AddObjectToObject(js, "geometry");
    if (g) {
        cJSON_AddStringToObject(
            g, "slice_axis",
            AXIS_NAMES[p->slice_axis >= 0 && p->slice_axis < 6 ? p->slice_axis : 2]);
        cJSON_AddStringToObject(g, "orientation", p->orientation ? p->orientation : "RAS");
        cJSON_AddItemToObject(g, "spacing", num_array(p->spacing, 3));
    }
    double patch[2] = {p->patch[0], p->patch[1]};
    cJSON_AddItemToObject(js, "patch", num_array(patch, 2));
    cJSON *labels = cJSON_AddArrayToObject(js, "labels");
    for (int c = 1; labels && c < p->classes; c++) {
        char nb[48];
        cJSON *l = cJSON_CreateObject();
        cJSON_AddNumberToObject(l, "value", mk_data_value_of_class(p, c));
        cJSON_AddStringToObject(l, "name", mk_data_class_name(p, c, nb, sizeof nb));
        cJSON_AddItemToArray(labels, l);
    }
    cJSON *inf = cJSON_AddObjectToObject(js, "inference");
    if (inf) {
        cJSON_AddStringToObject(inf, "blend", p->blend_uniform ? "uniform" : "gaussian");
        cJSON_AddBoolToObject(inf, "largest_component", info->largest_component != 0);
        cJSON_AddNumberToObject(inf, "step", p->window_step > 0 ? p->window_step : 0.5);
    }
    char *text = cJSON_Print(js);
    cJSON_Delete(js);
    return text;
}

void mk_infer_model_free(mk_infer_model *m)
{
    if (!m)
        return;
    mk_unet_free(m->net);
    free(m->json);
    free(m);
}

/* field accessors: MK_ERR_FORMAT naming the field when missing or of another type */
static const cJSON *field(const cJSON *o, const char *name)
{
    return o ? cJSON_GetObjectItemCaseSensitive(o, name) : NULL;
}

static mk_status get_num(mk_ctx *ctx, const char *path, const cJSON *o, const char *where,
                         const char *name, double lo, double hi, double *v)
{
    const cJSON *x = field(o, name);
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= lo && x->valuedouble <= hi))
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: attribute %s: field %s.%s: expected a number in [%g, %g]", path,
                      MK_INFER_ATTR, where, name, lo, hi);
    *v = x->valuedouble;
    return MK_OK;
}

static mk_status get_str(mk_ctx *ctx, const char *path, const cJSON *o, const char *where,
                         const char *name, char *buf, size_t n)
{
    const cJSON *x = field(o, name);
    if (!cJSON_IsString(x))
        return mk_err(ctx, MK_ERR_FORMAT, "%s: attribute %s: field %s%s%s: expected a string", path,
                      MK_INFER_ATTR, where, *where ? "." : "", name);
    snprintf(buf, n, "%s", x->valuestring);
    return MK_OK;
}

static mk_status get_nums(mk_ctx *ctx, const char *path, const cJSON *o, const char *where,
                          const char *name, int n, double lo, double hi, double *v)
{
    const cJSON *a = field(o, name);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: attribute %s: field %s.%s: expected an array of %d numbers", path,
                      MK_INFER_ATTR, where, name, n);
    for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(x) || !(x->valuedouble >= lo && x->valuedouble <= hi))
            return mk_err(ctx, MK_ERR_FORMAT,
                          "%s: attribute %s: field %s.%s[%d]: expected a number in [%g, %g]", path,
                          MK_INFER_ATTR, where, name, i, lo, hi);
        v[i] = x->valuedouble;
    }
    return MK_OK;
}

static mk_status parse_info(mk_ctx *ctx, const char *path, mk_infer_model *m)
{
    cJSON *js = cJSON_Parse(m->json);
    if (!cJSON_IsObject(js)) {
        cJSON_Delete(js);
        return mk_err(ctx, MK_ERR_FORMAT, "%s: attribute %s: expected a JSON object", path,
                      MK_INFER_ATTR);
    }
    mk_data_params *p = &m->data;
    mk_data_defaults(p);
    p->manifest = NULL;
    char fmt[32] = "", buf[64];
    double v = 0, w = 0, d = 0, c = 0, win[2], sp[3], patch[2], step = 0.5;
    const cJSON *net = field(js, "network"), *in = field(js, "input"), *g = field(js, "geometry"),
                *inf = field(js, "inference");
    mk_status st = get_str(ctx, path, js, "", "format", fmt, sizeof fmt);
    if (st == MK_OK && strcmp(fmt, "medkd-model"))
        st = mk_err(ctx, MK_ERR_FORMAT,
                    "%s: attribute %s: field format: expected 'medkd-model', got '%s'", path,
                    MK_INFER_ATTR, fmt);
    if (st == MK_OK)
        st = get_num(ctx, path, js, "", "version", 1, 1, &v);
    if (st == MK_OK)
        st = get_str(ctx, path, js, "", "medkd_version", m->version, sizeof m->version);
    if (st == MK_OK)
        st = get_str(ctx, path, js, "", "method", m->method, sizeof m->method);
    if (st == MK_OK)
        st = get_str(ctx, path, js, "", "role", m->role, sizeof m->role);
    if (st == MK_OK)
        st = get_str(ctx, path, js, "", "config_hash", m->config_hash, sizeof m->config_hash);
    if (st == MK_OK)
        st = get_str(ctx, path, net, "network", "kind", buf, sizeof buf);
    if (st == MK_OK && strcmp(buf, "unet2d"))
        st = mk_err(ctx, MK_ERR_UNSUPPORTED, "%s: network kind '%s': expected unet2d", path, buf);
    if (st == MK_OK)
        st = get_num(ctx, path, net, "network", "width", 1, 512, &w);
    if (st == MK_OK)
        st = get_num(ctx, path, net, "network", "depth", 2, 6, &d);
    if (st == MK_OK)
        st = get_num(ctx, path, net, "network", "classes", 2, MK_MAX_CLASSES, &c);
    if (st == MK_OK)
        st = get_str(ctx, path, in, "input", "modality", m->modality, sizeof m->modality);
    if (st == MK_OK)
        st = get_str(ctx, path, in, "input", "normalisation", buf, sizeof buf);
    if (st == MK_OK) {
        m->is_ct = !strcmp(buf, "ct_window");
        if (m->is_ct)
            st = get_nums(ctx, path, in, "input", "ct_window", 2, -1e5, 1e5, win);
        else if (!strcmp(buf, "zscore") || !strcmp(buf, "minmax"))
            p->mri_norm = !strcmp(buf, "minmax") ? MK_MRI_MINMAX : MK_MRI_ZSCORE;
        else
            st = mk_err(ctx, MK_ERR_FORMAT,
                        "%s: attribute %s: field input.normalisation: expected ct_window, zscore "
                        "or minmax, got '%s'",
                        path, MK_INFER_ATTR, buf);
    }
    if (st == MK_OK && m->is_ct) {
        p->ct_window[0] = win[0];
        p->ct_window[1] = win[1];
    }
    if (st == MK_OK)
        st = get_str(ctx, path, g, "geometry", "slice_axis", buf, sizeof buf);
    if (st == MK_OK) {
        p->slice_axis = -1;
        for (int a = 0; a < 6; a++)
            if (!strcmp(buf, AXIS_NAMES[a]))
                p->slice_axis = a;
        if (p->slice_axis < 0)
            st = mk_err(ctx, MK_ERR_FORMAT,
                        "%s: attribute %s: field geometry.slice_axis: expected i, j, k, axial, "
                        "coronal or sagittal, got '%s'",
                        path, MK_INFER_ATTR, buf);
    }
    if (st == MK_OK)
        st =
            get_str(ctx, path, g, "geometry", "orientation", m->orientation, sizeof m->orientation);
    if (st == MK_OK)
        st = get_nums(ctx, path, g, "geometry", "spacing", 3, 0, 100, sp);
    if (st == MK_OK)
        st = get_nums(ctx, path, js, "", "patch", 2, 8, 4096, patch);
    const cJSON *labels = field(js, "labels");
    if (st == MK_OK && (!cJSON_IsArray(labels) || cJSON_GetArraySize(labels) != (int)c - 1))
        st = mk_err(ctx, MK_ERR_FORMAT,
                    "%s: attribute %s: field labels: expected %d entries (one per structure)", path,
                    MK_INFER_ATTR, (int)c - 1);
    for (int j = 0; st == MK_OK && j < (int)c - 1; j++) {
        const cJSON *l = cJSON_GetArrayItem(labels, j);
        double val = 0;
        st = get_num(ctx, path, l, "labels[]", "value", 1, 255, &val);
        if (st == MK_OK)
            st = get_str(ctx, path, l, "labels[]", "name", p->label_names[j],
                         sizeof p->label_names[j]);
        p->label_values[j] = (int)val;
    }
    if (st == MK_OK && inf) {
        const cJSON *b = field(inf, "blend"), *lc = field(inf, "largest_component");
        p->blend_uniform = cJSON_IsString(b) && !strcmp(b->valuestring, "uniform");
        m->largest_component = cJSON_IsTrue(lc);
        if (cJSON_IsNumber(field(inf, "step")))
            step = field(inf, "step")->valuedouble;
    }
    cJSON_Delete(js);
    if (st != MK_OK)
        return st;
    for (int a = 0; a < 3; a++)
        p->spacing[a] = sp[a];
    p->patch[0] = (int)patch[0];
    p->patch[1] = (int)patch[1];
    p->orientation = m->orientation;
    p->classes = (int)c;
    p->nlabels = (int)c - 1;
    p->window_step = step > 0 && step <= 1 ? step : 0.5;
    m->cfg = mk_unet_defaults(2);
    m->cfg.base = (int)w;
    m->cfg.levels = (int)d;
    m->cfg.classes = (int)c;
    if (p->patch[0] % (1 << (m->cfg.levels - 1)) || p->patch[1] % (1 << (m->cfg.levels - 1)))
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: attribute %s: field patch: [%d, %d] is not a multiple of 2^(depth-1)",
                      path, MK_INFER_ATTR, p->patch[0], p->patch[1]);
    return mk_data_check_labels(ctx, p) == MK_OK ? MK_OK : mk_err_prefix(ctx, "%s", path);
}

mk_status mk_infer_model_load(mk_ctx *ctx, const char *path, mk_infer_model **out)
{
    *out = NULL;
    mk_infer_model *m = calloc(1, sizeof *m);
    if (!m)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    mk_status st = mk_model_read_info(ctx, path, MK_INFER_ATTR, &m->json);
    if (st == MK_OK)
        st = parse_info(ctx, path, m);
    if (st == MK_OK)
        st = mk_unet_new(ctx, &m->cfg, 0, &m->net);
    if (st == MK_OK &&
        (st = mk_model_load(ctx, path, "params", mk_unet_params(m->net), NULL)) != MK_OK)
        mk_err_prefix(ctx, "%s: weights do not match the description", path);
    char *bytes = NULL;
    size_t len = 0;
    if (st == MK_OK && (st = mk_fs_read_all(ctx, path, &bytes, &len)) == MK_OK) {
        uint64_t h = mk_fnv1a(MK_FNV1A_OFFSET, bytes, len);
        snprintf(m->model_hash, sizeof m->model_hash, "fnv1a64:%016llx", (unsigned long long)h);
        free(bytes);
    }
    if (st != MK_OK) {
        mk_infer_model_free(m);
        return st;
    }
    *out = m;
    return MK_OK;
}

mk_status mk_infer_model_shape(mk_ctx *ctx, const char *path, mk_unet_cfg *cfg, int *described)
{
    *described = 0;
    char *text = NULL;
    mk_ctx quiet;
    mk_ctx_init(&quiet);
    if (!mk_fs_is_file(path))
        return mk_err(ctx, MK_ERR_NOT_FOUND, "%s: no such model file", path);
    if (mk_model_read_info(&quiet, path, MK_INFER_ATTR, &text) != MK_OK)
        return MK_OK; /* no description: the caller's shape */
    cJSON *js = cJSON_Parse(text);
    free(text);
    const cJSON *net = cJSON_IsObject(js) ? cJSON_GetObjectItemCaseSensitive(js, "network") : NULL;
    const char *keys[4] = {"width", "depth", "classes", "in_channels"};
    int *dst[4] = {&cfg->base, &cfg->levels, &cfg->classes, &cfg->in_ch}, val[4];
    const int lo[4] = {1, 1, 2, 1}, hi[4] = {4096, 12, MK_MAX_CLASSES, 64};
    for (int k = 0; k < 4; k++) {
        const cJSON *v = net ? cJSON_GetObjectItemCaseSensitive(net, keys[k]) : NULL;
        if (!cJSON_IsNumber(v) || v->valuedouble != (int)v->valuedouble || v->valuedouble < lo[k] ||
            v->valuedouble > hi[k]) {
            cJSON_Delete(js);
            return mk_err(ctx, MK_ERR_FORMAT,
                          "%s: attribute %s: field network.%s: expected an integer in [%d, %d]",
                          path, MK_INFER_ATTR, keys[k], lo[k], hi[k]);
        }
        val[k] = v->valueint;
    }
    cJSON_Delete(js);
    for (int k = 0; k < 4; k++)
        *dst[k] = val[k];
    *described = 1;
    return MK_OK;
}

void mk_infer_opts_default(mk_infer_opts *o)
{
    memset(o, 0, sizeof *o);
    o->step = 0; /* the model's (inference.step, 0.5 unless the evaluation used another) */
    o->threads = 1;
    o->postprocess = 1;
}

mk_status mk_infer_check_geometry(mk_ctx *ctx, const mk_image *input, const mk_image *mask)
{
    char why[256];
    for (int a = 0; a < 3; a++)
        if (input->dim[a] != mask->dim[a])
            return mk_err(ctx, MK_ERR_GEOMETRY,
                          "output geometry: field dim[%d]: expected %lld (the input's), got %lld",
                          a, (long long)input->dim[a], (long long)mask->dim[a]);
    if (!mk_geom_grid_diff(input, mask, 1e-4, why, sizeof why))
        return mk_err(ctx, MK_ERR_GEOMETRY, "output geometry: %s", why);
    if (input->nifti.present && (mask->nifti.qform_code != input->nifti.qform_code ||
                                 mask->nifti.sform_code != input->nifti.sform_code))
        return mk_err(ctx, MK_ERR_GEOMETRY,
                      "output geometry: field qform_code/sform_code: expected %d/%d (the input's), "
                      "got %d/%d",
                      input->nifti.qform_code, input->nifti.sform_code, mask->nifti.qform_code,
                      mask->nifti.sform_code);
    return MK_OK;
}

mk_status mk_infer_volume(mk_ctx *ctx, const mk_infer_model *m, const mk_infer_opts *o,
                          const mk_image *img, mk_image **mask, mk_infer_times *t)
{
    *mask = NULL;
    mk_infer_times tt;
    memset(&tt, 0, sizeof tt);
    if (img->ndim > 3 && (img->dim[3] > 1 || img->dim[4] > 1))
        return mk_err(ctx, MK_ERR_UNSUPPORTED, "expected a 2D or 3D image, got %d dimensions",
                      img->ndim);
    if (!(o->step >= 0 && o->step <= 1))
        return mk_err(ctx, MK_ERR_INVALID,
                      "step: expected a fraction of the patch in (0, 1] (0: the model's), got %g",
                      o->step);
    mk_data_params p = m->data;
    p.window_step = o->step > 0 ? o->step : m->data.window_step;
    p.tta = o->tta;
    double t0 = mk_now_s();
    mk_image *work = NULL, *mw = NULL;
    mk_status st = mk_data_prepare(ctx, &p, img, 0, &work);
    double t1 = mk_now_s();
    if (st == MK_OK)
        st = mk__predict_net(ctx, m->net, NULL, work, m->is_ct, &p, o->threads, &mw, NULL,
                             &tt.forward);
    double t2 = mk_now_s();
    mk_image_free(work);
    if (st == MK_OK)
        st = mk_data_restore(ctx, &p, mw, img, mask);
    mk_image_free(mw);
    if (st == MK_OK && o->postprocess && m->largest_component) {
        int values[MK_MAX_CLASSES];
        for (int c = 1; c < p.classes; c++)
            values[c - 1] = mk_data_value_of_class(&p, c);
        st = mk_stage_keep_largest_components(ctx, *mask, values, p.classes - 1, NULL);
    }
    if (st == MK_OK)
        st = mk_infer_check_geometry(ctx, img, *mask);
    double t3 = mk_now_s();
    tt.preprocess = t1 - t0;
    tt.network = t2 - t1;
    tt.postprocess = t3 - t2;
    if (t)
        *t = tt;
    if (st != MK_OK) {
        mk_image_free(*mask);
        *mask = NULL;
    }
    return st;
}
