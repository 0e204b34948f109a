/* Reading an evaluation report back from its JSON (mk_report_eval_read, mk_report.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "report_internal.h"

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* A number, or one of the strings "inf", "-inf", "nan" the writer uses for non-finite values. */
static int get_num(const cJSON *v, double *out)
{
    if (cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        return 1;
    }
    if (cJSON_IsString(v)) {
        if (!strcmp(v->valuestring, "inf"))
            *out = INFINITY;
        else if (!strcmp(v->valuestring, "-inf"))
            *out = -INFINITY;
        else if (!strcmp(v->valuestring, "nan"))
            *out = NAN;
        else
            return 0;
        return 1;
    }
    return 0;
}

typedef struct reader {
    mk_ctx *ctx;
    const char *path;
} reader;

static mk_status bad(const reader *r, const char *field, const char *expected)
{
    return mk_err(r->ctx, MK_ERR_FORMAT, "%s: field '%s': expected %s", r->path, field, expected);
}

static mk_status str_field(const reader *r, const cJSON *obj, const char *key, const char *where,
                           int required, char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v) {
        if (!required)
            return MK_OK;
        char f[160];
        snprintf(f, sizeof f, "%s%s", where, key);
        return bad(r, f, "a string (missing)");
    }
    if (!cJSON_IsString(v)) {
        char f[160];
        snprintf(f, sizeof f, "%s%s", where, key);
        return bad(r, f, "a string");
    }
    if (!(*out = dup_str(v->valuestring)))
        return mk_err(r->ctx, MK_ERR_NOMEM, "out of memory");
    return MK_OK;
}

static mk_status read_directed(const reader *r, const cJSON *d, const char *where,
                               mk_metric_result *res, int dir)
{
    const char *keys[5] = {"hd", "hd95", "mean", "surface", "surface_within_tolerance"};
    double *dst[5] = {&res->dir_hd[dir], &res->dir_hd95[dir], &res->dir_mean[dir],
                      &res->surface[dir], &res->surface_within[dir]};
    for (int k = 0; k < 5; k++) {
        *dst[k] = NAN;
        const cJSON *v = d ? cJSON_GetObjectItemCaseSensitive(d, keys[k]) : NULL;
        if (v && !get_num(v, dst[k])) {
            char f[200];
            snprintf(f, sizeof f, "%s.%s", where, keys[k]);
            return bad(r, f, "a number or \"inf\"/\"nan\"");
        }
    }
    return MK_OK;
}

static mk_status read_result(const reader *r, const cJSON *o, const char *where,
                             mk_metric_result *res)
{
    char f[200];
    if (!cJSON_IsObject(o))
        return bad(r, where, "an object of metrics");
    double *dst[MK_EVAL_NMETRICS] = {
        &res->dice, &res->jaccard,        &res->hd,           &res->hd95,
        &res->assd, &res->masd,           &res->surface_dice, NULL,
        NULL,       &res->volume_pred_ml, &res->volume_ref_ml};
    for (int m = 0; m < MK_EVAL_NMETRICS; m++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, mk_eval_metric_name(m));
        snprintf(f, sizeof f, "%s.%s", where, mk_eval_metric_name(m));
        double x;
        if (!v || !get_num(v, &x))
            return bad(r, f, "a number or \"inf\"/\"nan\"");
        if (dst[m])
            *dst[m] = x;
        else if (x < 0 || x != floor(x) || x > 9e15)
            return bad(r, f, "a voxel count (integer >= 0)");
        else if (m == 7)
            res->voxels_pred = (int64_t)x;
        else
            res->voxels_ref = (int64_t)x;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "empty");
    int ok = 0;
    for (int k = MK_METRIC_EMPTY_NONE; cJSON_IsString(e) && k <= MK_METRIC_EMPTY_BOTH; k++)
        if (!strcmp(e->valuestring, mk_metric_empty_name((mk_metric_empty)k))) {
            res->empty = (mk_metric_empty)k;
            ok = 1;
        }
    if (!ok) {
        snprintf(f, sizeof f, "%s.empty", where);
        return bad(r, f, "one of \"none\", \"pred\", \"ref\", \"both\"");
    }
    const cJSON *nd = cJSON_GetObjectItemCaseSensitive(o, "ndim");
    res->ndim = cJSON_IsNumber(nd) ? nd->valueint : 3;
    const cJSON *dir = cJSON_GetObjectItemCaseSensitive(o, "directed");
    mk_status st;
    snprintf(f, sizeof f, "%s.directed.ref_to_pred", where);
    if ((st = read_directed(r, dir ? cJSON_GetObjectItemCaseSensitive(dir, "ref_to_pred") : NULL, f,
                            res, MK_METRIC_REF2PRED)) != MK_OK)
        return st;
    snprintf(f, sizeof f, "%s.directed.pred_to_ref", where);
    return read_directed(r, dir ? cJSON_GetObjectItemCaseSensitive(dir, "pred_to_ref") : NULL, f,
                         res, MK_METRIC_PRED2REF);
}

static mk_status read_strlist(const reader *r, const cJSON *a, const char *field, char ***out,
                              int *n)
{
    *out = NULL;
    *n = 0;
    if (!a)
        return MK_OK;
    if (!cJSON_IsArray(a))
        return bad(r, field, "an array of file names");
    int k = cJSON_GetArraySize(a);
    if (k == 0)
        return MK_OK;
    if (!(*out = calloc((size_t)k, sizeof **out)))
        return mk_err(r->ctx, MK_ERR_NOMEM, "out of memory");
    const cJSON *v;
    cJSON_ArrayForEach(v, a)
    {
        if (!cJSON_IsString(v))
            return bad(r, field, "an array of strings");
        if (!((*out)[*n] = dup_str(v->valuestring)))
            return mk_err(r->ctx, MK_ERR_NOMEM, "out of memory");
        (*n)++;
    }
    return MK_OK;
}

static mk_status parse(const reader *r, const cJSON *root, mk_eval_report *rep)
{
    mk_status st;
    if (!cJSON_IsObject(root))
        return bad(r, "(top level)", "an evaluation report object (pipeline eval --json)");
    const cJSON *conv = cJSON_GetObjectItemCaseSensitive(root, "convention");
    if (!cJSON_IsString(conv))
        return bad(r, "convention",
                   "\"deepmind\" or \"medpy\" (is this a medkd evaluation "
                   "report?)");
    if ((st = mk_metric_conv_parse(r->ctx, conv->valuestring, &rep->convention)) != MK_OK)
        return mk_err_prefix(r->ctx, "%s: field 'convention'", r->path);
    const cJSON *tol = cJSON_GetObjectItemCaseSensitive(root, "tolerance_mm");
    if (!get_num(tol, &rep->tolerance_mm))
        return bad(r, "tolerance_mm", "a number");
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(root, "percentile");
    if (!pc || !get_num(pc, &rep->percentile))
        rep->percentile = 95.0;
    /* absent from reports older than the option: they scored both-empty pairs as one */
    const cJSON *be = cJSON_GetObjectItemCaseSensitive(root, "both_empty");
    rep->both_empty = MK_METRIC_BOTH_ONE;
    if (be && (!cJSON_IsString(be) ||
               mk_metric_both_empty_parse(NULL, be->valuestring, &rep->both_empty) != MK_OK))
        return bad(r, "both_empty", "\"nan\" or \"one\"");
    if ((st = str_field(r, root, "version", "", 0, &rep->version_owned)) != MK_OK ||
        (st = str_field(r, root, "command_line", "", 0, &rep->command_line_owned)) != MK_OK)
        return st;
    rep->version = rep->version_owned;
    rep->command_line = rep->command_line_owned;
    const cJSON *cr = cJSON_GetObjectItemCaseSensitive(root, "created");
    if (cJSON_IsString(cr))
        snprintf(rep->created, sizeof rep->created, "%s", cr->valuestring);
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(root, "run");
    if (run && !cJSON_IsObject(run))
        return bad(r, "run", "an object");
    for (int k = 0; run && mk__eval_run_field_name(k); k++)
        if ((st = str_field(r, run, mk__eval_run_field_name(k), "run.", 0,
                            mk__eval_run_field(rep, k))) != MK_OK)
            return st;
    /* labels */
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(root, "labels");
    if (!cJSON_IsArray(labels))
        return bad(r, "labels", "an array of label values");
    int L = cJSON_GetArraySize(labels);
    if (L > 65535)
        return bad(r, "labels", "at most 65535 labels");
    rep->labels = malloc(sizeof *rep->labels * (size_t)(L > 0 ? L : 1));
    if (!rep->labels)
        return mk_err(r->ctx, MK_ERR_NOMEM, "out of memory");
    const cJSON *v;
    cJSON_ArrayForEach(v, labels)
    {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
            return bad(r, "labels", "integer label values");
        rep->labels[rep->nlabels++] = (int64_t)v->valuedouble;
    }
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(root, "label_names");
    if (names) {
        if (!cJSON_IsArray(names) || cJSON_GetArraySize(names) != L)
            return bad(r, "label_names", "an array of one name per label");
        if (!(rep->names_owned = calloc((size_t)(L > 0 ? L : 1), sizeof *rep->names_owned)))
            return mk_err(r->ctx, MK_ERR_NOMEM, "out of memory");
        int j = 0;
        cJSON_ArrayForEach(v, names)
        {
            if (!cJSON_IsString(v))
                return bad(r, "label_names", "strings");
            if (!(rep->names_owned[j++] = dup_str(v->valuestring)))
                return mk_err(r->ctx, MK_ERR_NOMEM, "out of memory");
        }
        rep->label_names = (const char *const *)rep->names_owned;
    }
    /* cases */
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    if (!cJSON_IsArray(cases))
        return bad(r, "cases", "an array of cases");
    int N = cJSON_GetArraySize(cases);
    if (!(rep->cases = calloc((size_t)(N > 0 ? N : 1), sizeof *rep->cases)))
        return mk_err(r->ctx, MK_ERR_NOMEM, "out of memory");
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        char where[64];
        snprintf(where, sizeof where, "cases[%d].", rep->ncases);
        mk_eval_case *ec = &rep->cases[rep->ncases++];
        if (!cJSON_IsObject(c))
            return bad(r, where, "a case object");
        if ((st = str_field(r, c, "id", where, 1, &ec->id)) != MK_OK ||
            (st = str_field(r, c, "pred", where, 1, &ec->pred)) != MK_OK ||
            (st = str_field(r, c, "ref", where, 1, &ec->ref)) != MK_OK ||
            (st = str_field(r, c, "image", where, 0, &ec->image)) != MK_OK)
            return st;
        if (!(ec->res = calloc((size_t)(L > 0 ? L : 1), sizeof *ec->res)))
            return mk_err(r->ctx, MK_ERR_NOMEM, "out of memory");
        const cJSON *lab = cJSON_GetObjectItemCaseSensitive(c, "labels");
        for (int j = 0; j < L; j++) {
            char key[32], f[160];
            snprintf(key, sizeof key, "%lld", (long long)rep->labels[j]);
            snprintf(f, sizeof f, "%slabels.%s", where, key);
            const cJSON *o = lab ? cJSON_GetObjectItemCaseSensitive(lab, key) : NULL;
            if (!o)
                return bad(r, f, "the metrics of this label (missing)");
            if ((st = read_result(r, o, f, &ec->res[j])) != MK_OK)
                return st;
            ec->res[j].label = rep->labels[j];
        }
    }
    const cJSON *unp = cJSON_GetObjectItemCaseSensitive(root, "unpaired");
    if (unp) {
        if ((st = read_strlist(r, cJSON_GetObjectItemCaseSensitive(unp, "pred"), "unpaired.pred",
                               &rep->unpaired_pred, &rep->nunpaired_pred)) != MK_OK ||
            (st = read_strlist(r, cJSON_GetObjectItemCaseSensitive(unp, "ref"), "unpaired.ref",
                               &rep->unpaired_ref, &rep->nunpaired_ref)) != MK_OK)
            return st;
    }
    return MK_OK;
}

mk_status mk_report_eval_read(mk_ctx *ctx, const char *path, mk_eval_report *rep)
{
    memset(rep, 0, sizeof *rep);
    char *text = NULL;
    size_t len = 0;
    mk_status st = mk_fs_read_all(ctx, path, &text, &len);
    if (st != MK_OK)
        return st;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= text && at <= text + len ? (long)(at - text) : -1;
        free(text);
        return mk_err(ctx, MK_ERR_FORMAT, "%s: not valid JSON (near byte %ld)", path, off);
    }
    reader r = {ctx, path};
    st = parse(&r, root, rep);
    cJSON_Delete(root);
    free(text);
    if (st != MK_OK)
        mk_eval_report_clear(rep);
    return st;
}
