/* Validation during training (run.validate): the method's network segments the validation
 * split's labelled cases of its modality (sliding window, as inference does, on the prepared
 * volumes) every run.val_every iterations; the Dice of every structure and their mean are logged,
 * kept in checkpoints/<stage>.validation.json (read back on --resume) and the best mean keeps a
 * copy of the network (the loop saves it). */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_fs.h"
#include "stage_internal.h"

struct mk__val {
    mk_ctx *ctx;
    const mk_stage_common *c;
    char stage[64], path[4200];
    int is_ct, n;
    char **ids;
    mk_image **img, **lab; /* prepared (mk_data_prepare) */
    int nh, cap;
    mk__val_entry *hist;
    int best; /* index into hist, -1: none */
};

void mk__val_free(mk__val *v)
{
    if (!v)
        return;
    for (int i = 0; i < v->n; i++) {
        free(v->ids[i]);
        mk_image_free(v->img[i]);
        mk_image_free(v->lab[i]);
    }
    free(v->ids);
    free(v->img);
    free(v->lab);
    free(v->hist);
    free(v);
}

static mk_status load_cases(mk__val *v, const char *modality)
{
    mk_ctx *ctx = v->ctx;
    const mk_data_params *p = &v->c->data;
    mk_manifest *m = NULL;
    mk_status st = mk_data_manifest(ctx, p, &m);
    if (st != MK_OK)
        return st;
    int cap = m->nrows + 1;
    v->ids = calloc((size_t)cap, sizeof *v->ids);
    v->img = calloc((size_t)cap, sizeof *v->img);
    v->lab = calloc((size_t)cap, sizeof *v->lab);
    if (!v->ids || !v->img || !v->lab)
        st = mk_err(ctx, MK_ERR_NOMEM, "validation: out of memory");
    for (int r = 0; r < m->nrows && st == MK_OK; r++) {
        const mk_manifest_row *w = &m->rows[r];
        if (strcmp(w->modality, modality) || strcmp(w->split, "val") || !w->label_path)
            continue;
        mk_image *img = NULL, *lab = NULL;
        st = mk_io_read_image(ctx, w->image_path, &img);
        if (st == MK_OK)
            st = mk_io_read_image(ctx, w->label_path, &lab);
        char why[256];
        if (st == MK_OK && !mk_geom_grid_diff(img, lab, 1e-4, why, sizeof why))
            st = mk_err(ctx, MK_ERR_GEOMETRY, "label %s: not on the image's grid: %s",
                        w->label_path, why);
        if (st == MK_OK)
            st = mk_data_prepare(ctx, p, img, 0, &v->img[v->n]);
        if (st == MK_OK)
            st = mk_data_prepare(ctx, p, lab, 1, &v->lab[v->n]);
        if (st == MK_OK && !(v->ids[v->n] = strdup(w->id)))
            st = mk_err(ctx, MK_ERR_NOMEM, "validation: out of memory");
        mk_image_free(img);
        mk_image_free(lab);
        if (st != MK_OK) {
            mk_err_prefix(ctx, "%s:%d: validation case %s", m->source, w->line, w->id);
            mk_image_free(v->img[v->n]);
            mk_image_free(v->lab[v->n]);
            v->img[v->n] = v->lab[v->n] = NULL;
            break;
        }
        v->n++;
    }
    mk_manifest_free(m);
    return st;
}

mk_status mk__val_open(mk_ctx *ctx, const mk_stage_common *c, const char *stage,
                       const char *modality, mk__val **out)
{
    *out = NULL;
    mk__val *v = calloc(1, sizeof *v);
    if (!v)
        return mk_err(ctx, MK_ERR_NOMEM, "validation: out of memory");
    v->ctx = ctx;
    v->c = c;
    v->best = -1;
    v->is_ct = !strcmp(modality, c->data.ct_modality);
    snprintf(v->stage, sizeof v->stage, "%s", stage);
    snprintf(v->path, sizeof v->path, "%s/checkpoints/%s.validation.json", c->run_dir, stage);
    mk_status st = load_cases(v, modality);
    if (st != MK_OK) {
        mk__val_free(v);
        return mk_err_prefix(ctx, "%s: validation", stage);
    }
    if (v->n == 0) {
        MK_LOG_W(ctx,
                 "%s: no labelled '%s' case in split 'val': no validation during training (the "
                 "last network is used; data.val_fraction holds cases out when the manifest has "
                 "no val split)",
                 stage, modality);
        mk__val_free(v);
        return MK_OK;
    }
    MK_LOG_I(ctx, "%s: validation on %d '%s' case%s of split 'val'", stage, v->n, modality,
             v->n == 1 ? "" : "s");
    *out = v;
    return MK_OK;
}

static mk_status push(mk__val *v, const mk__val_entry *e)
{
    if (v->nh == v->cap) {
        int cap = v->cap ? 2 * v->cap : 16;
        mk__val_entry *h = realloc(v->hist, (size_t)cap * sizeof *h);
        if (!h)
            return mk_err(v->ctx, MK_ERR_NOMEM, "validation: out of memory");
        v->hist = h;
        v->cap = cap;
    }
    v->hist[v->nh] = *e;
    if (v->best < 0 || e->dice > v->hist[v->best].dice)
        v->best = v->nh;
    v->nh++;
    return MK_OK;
}

mk_status mk__val_resume(mk__val *v, long long it0)
{
    if (!mk_fs_is_file(v->path))
        return MK_OK;
    char *text = NULL;
    size_t len = 0;
    mk_status st = mk_fs_read_all(v->ctx, v->path, &text, &len);
    if (st != MK_OK)
        return st;
    cJSON *js = cJSON_ParseWithLength(text, len);
    free(text);
    cJSON *h = js ? cJSON_GetObjectItemCaseSensitive(js, "history") : NULL;
    if (!cJSON_IsArray(h)) {
        cJSON_Delete(js);
        return mk_err(v->ctx, MK_ERR_FORMAT, "%s: expected a JSON object with a 'history' array",
                      v->path);
    }
    cJSON *e;
    cJSON_ArrayForEach(e, h)
    {
        mk__val_entry en;
        memset(&en, 0, sizeof en);
        cJSON *it = cJSON_GetObjectItemCaseSensitive(e, "iteration");
        cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "dice");
        cJSON *ss = cJSON_GetObjectItemCaseSensitive(e, "structures");
        if (!cJSON_IsNumber(it) || !cJSON_IsNumber(d) || !cJSON_IsArray(ss)) {
            st = mk_err(v->ctx, MK_ERR_FORMAT,
                        "%s: history: expected entries with iteration, dice and structures",
                        v->path);
            break;
        }
        en.iteration = (long long)it->valuedouble;
        en.dice = d->valuedouble;
        cJSON *x;
        cJSON_ArrayForEach(x, ss)
        {
            cJSON *dd = cJSON_GetObjectItemCaseSensitive(x, "dice");
            if (en.nstruct < MK_MAX_CLASSES && cJSON_IsNumber(dd))
                en.structure[en.nstruct++] = dd->valuedouble;
        }
        if (en.iteration <= it0 && (st = push(v, &en)) != MK_OK) /* later ones are redone */
            break;
    }
    cJSON_Delete(js);
    return st;
}

static mk_status save_json(mk__val *v)
{
    const mk_data_params *p = &v->c->data;
    cJSON *js = cJSON_CreateObject(), *h = cJSON_CreateArray();
    if (!js || !h) {
        cJSON_Delete(js);
        cJSON_Delete(h);
        return mk_err(v->ctx, MK_ERR_NOMEM, "validation: out of memory");
    }
    cJSON_AddStringToObject(js, "stage", v->stage);
    cJSON_AddNumberToObject(js, "cases", v->n);
    if (v->best >= 0) {
        cJSON_AddNumberToObject(js, "best_iteration", (double)v->hist[v->best].iteration);
        cJSON_AddNumberToObject(js, "best_dice", v->hist[v->best].dice);
    }
    cJSON_AddItemToObject(js, "history", h);
    for (int i = 0; i < v->nh; i++) {
        cJSON *e = cJSON_CreateObject(), *ss = cJSON_CreateArray();
        cJSON_AddNumberToObject(e, "iteration", (double)v->hist[i].iteration);
        cJSON_AddNumberToObject(e, "dice", v->hist[i].dice);
        for (int k = 0; k < v->hist[i].nstruct; k++) {
            cJSON *x = cJSON_CreateObject();
            char nb[48];
            cJSON_AddNumberToObject(x, "label", mk_data_value_of_class(p, k + 1));
            cJSON_AddStringToObject(x, "name", mk_data_class_name(p, k + 1, nb, sizeof nb));
            cJSON_AddNumberToObject(x, "dice", v->hist[i].structure[k]);
            cJSON_AddItemToArray(ss, x);
        }
        cJSON_AddItemToObject(e, "structures", ss);
        cJSON_AddItemToArray(h, e);
    }
    char *text = cJSON_Print(js);
    cJSON_Delete(js);
    if (!text)
        return mk_err(v->ctx, MK_ERR_NOMEM, "validation: out of memory");
    size_t n = strlen(text);
    text[n] = '\n'; /* cJSON_Print's terminator becomes the final newline */
    mk_status st = mk_fs_write_atomic(v->ctx, v->path, text, n + 1);
    free(text);
    return st;
}

mk_status mk__val_run(mk__val *v, mk_unet *net, long long it, int *improved)
{
    mk_ctx *ctx = v->ctx;
    const mk_data_params *p = &v->c->data;
    int S = mk_data_nstructures(p);
    double sum[MK_MAX_CLASSES] = {0};
    *improved = 0;
    mk_status st = MK_OK;
    for (int i = 0; i < v->n && st == MK_OK; i++) {
        mk_image *mask = NULL;
        st = mk__predict_net(ctx, net, NULL, v->img[i], v->is_ct, p, v->c->threads, &mask, NULL,
                             NULL);
        if (st != MK_OK) {
            mk_err_prefix(ctx, "%s: validation case %s", v->stage, v->ids[i]);
            break;
        }
        int64_t nv = mk_image_nvox(mask), inter[MK_MAX_CLASSES] = {0}, np[MK_MAX_CLASSES] = {0},
                nr[MK_MAX_CLASSES] = {0};
        const uint8_t *m = mask->data;
        for (int64_t q = 0; q < nv; q++) {
            int cp = mk_data_class_of_value(p, m[q]);
            int cr = mk_data_class_of_value(p, llround(mk_image_get(v->lab[i], q)));
            np[cp]++;
            nr[cr]++;
            inter[cp] += cp == cr;
        }
        for (int k = 1; k <= S; k++) /* both empty: 1 (docs/metrics.md) */
            sum[k - 1] +=
                np[k] + nr[k] == 0 ? 1.0 : 2.0 * (double)inter[k] / (double)(np[k] + nr[k]);
        mk_image_free(mask);
    }
    if (st != MK_OK)
        return st;
    mk__val_entry e;
    memset(&e, 0, sizeof e);
    e.iteration = it;
    e.nstruct = S;
    char line[600] = "";
    for (int k = 0; k < S; k++) {
        char nb[48];
        e.structure[k] = sum[k] / v->n;
        e.dice += e.structure[k] / S;
        if (S > 1)
            snprintf(line + strlen(line), sizeof line - strlen(line), "%s%s %.3f", k ? ", " : " (",
                     mk_data_class_name(p, k + 1, nb, sizeof nb), e.structure[k]);
    }
    if (S > 1)
        snprintf(line + strlen(line), sizeof line - strlen(line), ")");
    int prev = v->best;
    if ((st = push(v, &e)) != MK_OK)
        return st;
    *improved = v->best != prev;
    MK_LOG_I(ctx, "%s: validation at iteration %lld: Dice %.4f%s on %d case%s%s", v->stage, it,
             e.dice, line, v->n, v->n == 1 ? "" : "s", *improved ? " (best so far)" : "");
    return save_json(v);
}

const mk__val_entry *mk__val_best(const mk__val *v)
{
    return v && v->best >= 0 ? &v->hist[v->best] : NULL;
}

const mk__val_entry *mk__val_last(const mk__val *v)
{
    return v && v->nh > 0 ? &v->hist[v->nh - 1] : NULL;
}

int mk__val_count(const mk__val *v)
{
    return v ? v->nh : 0;
}
