/* The classification HTML page (mk_cls_report_html, mk_cls_report.h; contents: docs/report.md).
 *
 * As the segmentation page (report/html.c): first everything that can fail or reads files (the
 * metrics of every model and scope, the ROC curves, the heat maps scaled by cairo into PNG
 * bytes), then one printer that writes the page into a memory stream, committed atomically. It
 * shares that page's style sheet, sorting script and small writers. */
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/mk_fs.h"
#include "mk_cls_report.h"
#include "report_internal.h"

#define PATHMAX 4400

void mk_cls_html_opts_default(mk_cls_html_opts *o)
{
    memset(o, 0, sizeof *o);
    o->heatmaps = 2;
    o->heatmap_width = 480;
}

/* One ROC curve: npts points (fpr, tpr) from (0, 0) to (1, 1), one per distinct score. */
typedef struct roc {
    int scope; /* 0 overall, 1 + g: group g */
    int cls;   /* the positive class */
    int npts;
    double *pt; /* [npts][2] */
    double auc; /* the metrics' AUC of that class and scope */
} roc;

typedef struct heat {
    int model, slide, worst;
    unsigned char *png;
    size_t len;
    int w, h;
    char note[200];
} heat;

typedef struct cpage {
    const mk_cls_eval *e;
    const mk_cls_html_opts *o;
    char created[32];
    int ngroups;
    const char **gname;  /* [nslides] (first ngroups used), borrowed */
    int *group;          /* [nslides] */
    int nscope;          /* 1 + ngroups + nslides */
    mk_cls_metrics *met; /* [nmodels][nscope]: overall, groups, slides */
    int nroc;
    roc *rocs; /* per model: its curves, rocs[j * per_model + k] */
    int per_model;
    heat *heats;
    int nheat;
} cpage;

static const mk_cls_metrics *M(const cpage *pg, int j, int scope)
{
    return &pg->met[(size_t)j * (size_t)pg->nscope + (size_t)scope];
}

static const char *class_name(const mk_cls_eval *e, int c, char *buf, size_t n)
{
    if (e->class_names && e->class_names[c])
        return e->class_names[c];
    snprintf(buf, n, "%d", c);
    return buf;
}

/* 1 when sample i of model m belongs to scope s (0 overall, 1..ngroups, then the slides). */
static int in_scope(const cpage *pg, const mk_cls_eval_model *m, int64_t i, int s)
{
    if (s == 0)
        return 1;
    if (s <= pg->ngroups)
        return pg->group[m->slide[i]] == s - 1;
    return m->slide[i] == s - 1 - pg->ngroups;
}

typedef struct scored {
    float score;
    int pos;
} scored;

static int cmp_desc(const void *a, const void *b)
{
    const float x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return x > y ? -1 : x < y ? 1 : 0;
}

/* The ROC curve of class c against the rest over the samples of scope s: thresholds at every
 * distinct score, highest first; a tie moves both rates at once (its trapezoid is the half credit
 * of the AUC's ties). No curve (npts 0) when either side is empty. */
static mk_status make_roc(mk_ctx *ctx, const cpage *pg, const mk_cls_eval_model *m, int s, int c,
                          scored *buf, roc *r)
{
    const int C = pg->e->nclass;
    int64_t n = 0, P = 0;
    for (int64_t i = 0; i < m->n; i++)
        if (in_scope(pg, m, i, s)) {
            buf[n].score = m->prob[i * C + c];
            buf[n].pos = m->truth[i] == c;
            P += buf[n].pos;
            n++;
        }
    r->npts = 0;
    r->pt = NULL;
    if (P == 0 || P == n)
        return MK_OK;
    qsort(buf, (size_t)n, sizeof *buf, cmp_desc);
    r->pt = malloc((size_t)(n + 2) * 2 * sizeof *r->pt);
    if (!r->pt)
        return mk_err(ctx, MK_ERR_NOMEM, "classification page: out of memory (ROC)");
    const double N0 = (double)(n - P), N1 = (double)P;
    int64_t tp = 0, fp = 0, k = 0;
    r->pt[k++] = 0;
    r->pt[k++] = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && buf[j].score == buf[i].score) {
            tp += buf[j].pos;
            fp += !buf[j].pos;
            j++;
        }
        r->pt[k++] = (double)fp / N0;
        r->pt[k++] = (double)tp / N1;
        i = j;
    }
    r->npts = (int)(k / 2);
    return MK_OK;
}

/* The heat map file of (model, slide) scaled to at most width px wide, as PNG bytes. */
static void load_heat(const cpage *pg, heat *h)
{
    const mk_cls_html_opts *o = pg->o;
    char path[PATHMAX];
    snprintf(path, sizeof path, "%.3000s/%.600s/%.600s.png", o->heatmap_dir,
             pg->e->models[h->model].name, pg->e->slide_ids[h->slide]);
    cairo_surface_t *src = cairo_image_surface_create_from_png(path);
    if (cairo_surface_status(src) != CAIRO_STATUS_SUCCESS) {
        snprintf(h->note, sizeof h->note, "no heat map (%s)",
                 cairo_status_to_string(cairo_surface_status(src)));
        cairo_surface_destroy(src);
        return;
    }
    const int sw = cairo_image_surface_get_width(src), sh = cairo_image_surface_get_height(src);
    const double f = sw > o->heatmap_width ? (double)o->heatmap_width / sw : 1.0;
    int w = (int)lround(sw * f), hh = (int)lround(sh * f);
    w = w < 1 ? 1 : w;
    hh = hh < 1 ? 1 : hh;
    cairo_surface_t *dst = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, hh);
    cairo_t *cr = cairo_create(dst);
    cairo_scale(cr, f, f);
    cairo_set_source_surface(cr, src, 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_GOOD);
    cairo_paint(cr);
    mk__png_buf b = {NULL, 0, 0, 0};
    cairo_status_t cs = cairo_status(cr);
    cairo_destroy(cr);
    cairo_surface_flush(dst);
    if (cs == CAIRO_STATUS_SUCCESS)
        cs = cairo_surface_write_to_png_stream(dst, mk__png_buf_write, &b);
    cairo_surface_destroy(dst);
    cairo_surface_destroy(src);
    if (cs != CAIRO_STATUS_SUCCESS || b.nomem) {
        free(b.p);
        snprintf(h->note, sizeof h->note, "heat map not drawn (%s)",
                 b.nomem ? "out of memory" : cairo_status_to_string(cs));
        return;
    }
    h->png = b.p;
    h->len = b.n;
    h->w = w;
    h->h = hh;
}

static mk_status prepare(mk_ctx *ctx, cpage *pg)
{
    const mk_cls_eval *e = pg->e;
    const int S = e->nslides, C = e->nclass;
    pg->gname = calloc((size_t)(S > 0 ? S : 1), sizeof *pg->gname);
    pg->group = calloc((size_t)(S > 0 ? S : 1), sizeof *pg->group);
    if (!pg->gname || !pg->group)
        return mk_err(ctx, MK_ERR_NOMEM, "classification page: out of memory");
    /* groups in order of first appearance over the slides (as mk_cls_report_write) */
    for (int s = 0; e->slide_group && s < S; s++) {
        const char *g = e->slide_group[s] ? e->slide_group[s] : "";
        int k = 0;
        while (k < pg->ngroups && strcmp(pg->gname[k], g))
            k++;
        if (k == pg->ngroups)
            pg->gname[pg->ngroups++] = g;
        pg->group[s] = k;
    }
    pg->nscope = 1 + pg->ngroups + S;
    int64_t nmax = 1;
    for (int j = 0; j < e->nmodels; j++)
        nmax = e->models[j].n > nmax ? e->models[j].n : nmax;
    pg->met =
        calloc((size_t)(e->nmodels > 0 ? e->nmodels : 1) * (size_t)pg->nscope, sizeof *pg->met);
    pg->per_model = C == 2 ? 1 + pg->ngroups : C;
    pg->rocs =
        calloc((size_t)(e->nmodels > 0 ? e->nmodels : 1) * (size_t)pg->per_model, sizeof *pg->rocs);
    int32_t *t = malloc((size_t)nmax * sizeof *t);
    float *p = malloc((size_t)nmax * (size_t)C * sizeof *p);
    scored *sc = malloc((size_t)nmax * sizeof *sc);
    mk_status st = MK_OK;
    if (!pg->met || !pg->rocs || !t || !p || !sc)
        st = mk_err(ctx, MK_ERR_NOMEM, "classification page: out of memory");
    for (int j = 0; st == MK_OK && j < e->nmodels; j++) {
        const mk_cls_eval_model *m = &e->models[j];
        for (int s = 0; st == MK_OK && s < pg->nscope; s++) {
            int64_t n = 0;
            for (int64_t i = 0; i < m->n; i++)
                if (in_scope(pg, m, i, s)) {
                    t[n] = m->truth[i];
                    memcpy(p + n * C, m->prob + i * C, (size_t)C * sizeof *p);
                    n++;
                }
            st = mk_cls_metrics_compute(ctx, C, n, t, p,
                                        &pg->met[(size_t)j * (size_t)pg->nscope + (size_t)s]);
        }
        for (int k = 0; st == MK_OK && k < pg->per_model; k++) {
            roc *r = &pg->rocs[(size_t)j * (size_t)pg->per_model + (size_t)k];
            r->scope = C == 2 ? k : 0;
            r->cls = C == 2 ? 1 : k;
            st = make_roc(ctx, pg, m, r->scope, r->cls, sc, r);
            r->auc = M(pg, j, r->scope)->auc_class[r->cls];
        }
        pg->nroc += pg->per_model;
    }
    free(t);
    free(p);
    free(sc);
    /* heat maps: per model its worst, then its best labelled slide by accuracy */
    const int want = pg->o->heatmap_dir ? pg->o->heatmaps : 0;
    if (st == MK_OK && want > 0) {
        pg->heats = calloc((size_t)(e->nmodels > 0 ? e->nmodels : 1) * 2, sizeof *pg->heats);
        if (!pg->heats)
            st = mk_err(ctx, MK_ERR_NOMEM, "classification page: out of memory");
    }
    for (int j = 0; st == MK_OK && want > 0 && j < e->nmodels; j++) {
        int lo = -1, hi = -1;
        for (int s = 0; s < S; s++) {
            const double a = M(pg, j, 1 + pg->ngroups + s)->accuracy;
            if (isnan(a))
                continue;
            if (lo < 0 || a < M(pg, j, 1 + pg->ngroups + lo)->accuracy)
                lo = s;
            if (hi < 0 || a > M(pg, j, 1 + pg->ngroups + hi)->accuracy)
                hi = s;
        }
        for (int q = 0; q < want && q < 2; q++) {
            const int s = q == 0 ? lo : hi;
            if (s < 0 || (q == 1 && s == lo))
                continue;
            heat *h = &pg->heats[pg->nheat++];
            h->model = j;
            h->slide = s;
            h->worst = q == 0;
            load_heat(pg, h);
            if (ctx->cancel)
                st = mk_err(ctx, MK_ERR_ABORTED, "interrupted");
        }
    }
    return st;
}

/* ------------------------------------------------------------------ printing */

static void print_header(FILE *f, const cpage *pg)
{
    const mk_cls_eval *e = pg->e;
    const mk_cls_html_opts *o = pg->o;
    const char *title = o->title ? o->title : "Patch classification evaluation";
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src "
          "data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n<title>",
          f);
    mk__html_esc(f, title);
    fprintf(f, "</title>\n<style>%s</style></head>\n<body>\n<h1>", mk__html_css);
    mk__html_esc(f, title);
    fputs("</h1>\n<p class=\"disclaimer\"><b>For research use only.</b> Not for diagnostic use: "
          "these figures compare automatic patch classifications with reference labels; they are "
          "not a clinical assessment of any patient.</p>\n<table class=\"meta\" id=\"meta\">\n"
          "<tr><th class=\"l\">medkd</th><td>",
          f);
    mk__html_esc(f, o->version);
    fputs("</td></tr>\n<tr><th class=\"l\">report created</th><td>", f);
    mk__html_esc(f, pg->created);
    fputs("</td></tr>\n<tr><th class=\"l\">evaluated</th><td>", f);
    mk__html_esc(f, o->source);
    fputs("</td></tr>\n", f);
    if (o->split) {
        fputs("<tr><th class=\"l\">split</th><td>", f);
        mk__html_esc(f, o->split);
        fputs("</td></tr>\n", f);
    }
    fputs("<tr><th class=\"l\">classes</th><td>", f);
    char cb[16];
    for (int c = 0; c < e->nclass; c++) {
        fprintf(f, "%s%d: ", c ? ", " : "", c);
        mk__html_esc(f, class_name(e, c, cb, sizeof cb));
    }
    fprintf(f, "</td></tr>\n<tr><th class=\"l\">slides</th><td>%d labelled", e->nslides);
    if (pg->ngroups > 0) {
        fputs(" in ", f);
        for (int g = 0; g < pg->ngroups; g++) {
            int k = 0;
            for (int s = 0; s < e->nslides; s++)
                k += pg->group[s] == g;
            fputs(g ? ", " : "", f);
            mk__html_esc(f, pg->gname[g][0] ? pg->gname[g] : "(no group)");
            fprintf(f, " (%d)", k);
        }
    }
    fputs("</td></tr>\n<tr><th class=\"l\">models</th><td>", f);
    for (int j = 0; j < e->nmodels; j++) {
        fputs(j ? "<br>" : "", f);
        fputs("<b>", f);
        mk__html_esc(f, e->models[j].name);
        fprintf(f, "</b>: %lld labelled patches", (long long)e->models[j].n);
        if (o->model_files && o->model_files[j]) {
            fputs(", <code>", f);
            mk__html_esc(f, o->model_files[j]);
            fputs("</code>", f);
        }
    }
    fputs("</td></tr>\n</table>\n<p>Contents: <a href=\"#conventions\">conventions</a> &middot; "
          "<a href=\"#summary\">summary</a> &middot; <a href=\"#roc\">ROC curves</a> &middot; "
          "<a href=\"#confusion\">confusion matrices</a> &middot; <a href=\"#slides\">slides</a> "
          "&middot; <a href=\"#heatmaps\">heat maps</a></p>\n",
          f);
}

static void print_conventions(FILE *f, const cpage *pg)
{
    fputs("<h2 id=\"conventions\">Conventions</h2>\n<table class=\"meta\">\n"
          "<tr><th class=\"l\">unit</th><td>a patch of the slide grid; its reference label is "
          "the one of its centre region (see the run's configuration); patches without a label "
          "are not scored</td></tr>\n"
          "<tr><th class=\"l\">decision</th><td>the class of highest probability</td></tr>\n"
          "<tr><th class=\"l\">accuracy</th><td>correct decisions / patches</td></tr>\n"
          "<tr><th class=\"l\">balanced accuracy</th><td>mean over the classes present of the "
          "recall (sensitivity) of each</td></tr>\n"
          "<tr><th class=\"l\">precision, recall, F1</th><td>per class, one against the rest; "
          "&ndash; where undefined (no patch predicted, or none present)</td></tr>\n",
          f);
    if (pg->e->nclass == 2)
        fputs("<tr><th class=\"l\">AUC</th><td>area under the ROC curve of the probability of "
              "class 1, by ranks (Mann&ndash;Whitney U / n<sub>0</sub>n<sub>1</sub>, ties counted "
              "half); &ndash; when a scope holds one class only</td></tr>\n",
              f);
    else
        fputs("<tr><th class=\"l\">AUC</th><td>mean over the classes of each class's area under "
              "its one-against-the-rest ROC curve, by ranks (Mann&ndash;Whitney U, ties counted "
              "half)</td></tr>\n",
              f);
    fputs("<tr><th class=\"l\">scopes</th><td>overall: every labelled patch; per group (e.g. "
          "staining site) and per slide: that subset, scored on its own</td></tr>\n</table>\n",
          f);
}

static void print_summary(FILE *f, const cpage *pg)
{
    const mk_cls_eval *e = pg->e;
    const int C = e->nclass;
    char cb[16];
    fputs("<h2 id=\"summary\">Summary per model and scope</h2>\n<div class=\"wide\"><table "
          "class=\"sortable\" id=\"summary-table\">\n<thead><tr><th class=\"l\" "
          "data-col=\"0\">model</th><th class=\"l\" data-col=\"1\">scope</th><th "
          "data-col=\"2\">patches</th><th data-col=\"3\">accuracy</th><th "
          "data-col=\"4\">balanced accuracy</th><th data-col=\"5\">AUC</th>",
          f);
    int col = 6;
    for (int c = 0; c < C; c++) {
        const char *what[3] = {"precision", "recall", "F1"};
        for (int k = 0; k < 3; k++) {
            fprintf(f, "<th data-col=\"%d\">%s<br>", col++, what[k]);
            mk__html_esc(f, class_name(e, c, cb, sizeof cb));
            fputs("</th>", f);
        }
    }
    fputs("</tr></thead>\n<tbody>\n", f);
    for (int j = 0; j < e->nmodels; j++)
        for (int s = 0; s <= pg->ngroups; s++) {
            const mk_cls_metrics *m = M(pg, j, s);
            fputs("<tr data-model=\"", f);
            mk__html_esc(f, e->models[j].name);
            fputs("\" data-scope=\"", f);
            mk__html_esc(f, s ? pg->gname[s - 1] : "overall");
            fputs("\"><td class=\"l\">", f);
            mk__html_esc(f, e->models[j].name);
            fputs("</td><td class=\"l\">", f);
            if (s)
                mk__html_esc(f, pg->gname[s - 1][0] ? pg->gname[s - 1] : "(no group)");
            else
                fputs("<b>overall</b>", f);
            fprintf(f, "</td><td data-v=\"%lld\">%lld</td>", (long long)m->n, (long long)m->n);
            const double v[3] = {m->accuracy, m->balanced_accuracy, m->auc};
            for (int k = 0; k < 3; k++) {
                fputs("<td", f);
                mk__html_key(f, v[k]);
                fputs(">", f);
                mk__html_num(f, v[k], 4);
                fputs("</td>", f);
            }
            for (int c = 0; c < C; c++) {
                const double w[3] = {m->precision[c], m->recall[c], m->f1[c]};
                for (int k = 0; k < 3; k++) {
                    fputs("<td", f);
                    mk__html_key(f, w[k]);
                    fputs(">", f);
                    mk__html_num(f, w[k], 3);
                    fputs("</td>", f);
                }
            }
            fputs("</tr>\n", f);
        }
    fputs("</tbody></table></div>\n", f);
}

static const char *const STROKE[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd",
                                     "#8c564b", "#e377c2", "#17becf", "#7f7f7f"};

static void print_roc(FILE *f, const cpage *pg)
{
    const mk_cls_eval *e = pg->e;
    char cb[16];
    fputs("<h2 id=\"roc\">ROC curves</h2>\n", f);
    if (e->nclass == 2)
        fputs("<p>Per model: the probability of class 1 ranked against the reference, overall "
              "and per group. The diagonal is chance.</p>\n",
              f);
    else
        fputs("<p>Per model: each class against the rest, over every labelled patch. The "
              "diagonal is chance.</p>\n",
              f);
    fputs("<div class=\"plots\">\n", f);
    const double X0 = 46, Y0 = 14, S = 240;
    for (int j = 0; j < e->nmodels; j++) {
        fputs("<figure><svg class=\"plot\" width=\"300\" height=\"300\" viewBox=\"0 0 300 300\" "
              "role=\"img\"><title>ROC ",
              f);
        mk__html_esc(f, e->models[j].name);
        fputs("</title>\n", f);
        for (int t = 0; t <= 4; t++) {
            const double a = X0 + S * t / 4.0, b = Y0 + S - S * t / 4.0;
            fprintf(f,
                    "<line class=\"grid\" x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\"/>"
                    "<line class=\"grid\" x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\"/>"
                    "<text class=\"tick\" x=\"%g\" y=\"%g\" text-anchor=\"middle\">%.2g</text>"
                    "<text class=\"tick\" x=\"%g\" y=\"%g\" text-anchor=\"end\">%.2g</text>\n",
                    a, Y0, a, Y0 + S, X0, b, X0 + S, b, a, Y0 + S + 14, t / 4.0, X0 - 4, b + 4,
                    t / 4.0);
        }
        fprintf(f,
                "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"#999\" "
                "stroke-dasharray=\"4 3\"/>\n"
                "<text class=\"axlabel\" x=\"%g\" y=\"%g\" text-anchor=\"middle\">1 &minus; "
                "specificity</text><text class=\"axlabel\" transform=\"translate(12 %g) "
                "rotate(-90)\" text-anchor=\"middle\">sensitivity</text>\n",
                X0, Y0 + S, X0 + S, Y0, X0 + S / 2, Y0 + S + 30, Y0 + S / 2);
        for (int k = 0; k < pg->per_model; k++) {
            const roc *r = &pg->rocs[(size_t)j * (size_t)pg->per_model + (size_t)k];
            if (r->npts == 0)
                continue;
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" data-model=\"",
                    STROKE[k % 8]);
            mk__html_esc(f, e->models[j].name);
            fputs("\" data-scope=\"", f);
            mk__html_esc(f, r->scope ? pg->gname[r->scope - 1] : "overall");
            fprintf(f, "\" data-class=\"%d\" data-auc=\"%.17g\" data-roc=\"", r->cls, r->auc);
            for (int q = 0; q < r->npts; q++)
                fprintf(f, "%s%.17g,%.17g", q ? " " : "", r->pt[2 * q], r->pt[2 * q + 1]);
            fputs("\" points=\"", f);
            for (int q = 0; q < r->npts; q++)
                fprintf(f, "%s%.2f,%.2f", q ? " " : "", X0 + S * r->pt[2 * q],
                        Y0 + S - S * r->pt[2 * q + 1]);
            fputs("\"/>\n", f);
        }
        fputs("</svg><figcaption><b>", f);
        mk__html_esc(f, e->models[j].name);
        fputs("</b><br><span class=\"legend\">", f);
        for (int k = 0; k < pg->per_model; k++) {
            const roc *r = &pg->rocs[(size_t)j * (size_t)pg->per_model + (size_t)k];
            fprintf(f, "<span style=\"border-left:14px solid %s\">", STROKE[k % 8]);
            if (e->nclass == 2)
                mk__html_esc(f, r->scope ? pg->gname[r->scope - 1] : "overall");
            else
                mk__html_esc(f, class_name(e, r->cls, cb, sizeof cb));
            fputs(" AUC ", f);
            mk__html_num(f, r->auc, 3);
            fputs(r->npts ? "" : " (one class only: no curve)", f);
            fputs("</span> ", f);
        }
        fputs("</span></figcaption></figure>\n", f);
    }
    fputs("</div>\n", f);
}

static void print_confusion(FILE *f, const cpage *pg)
{
    const mk_cls_eval *e = pg->e;
    const int C = e->nclass;
    char cb[16];
    fputs("<h2 id=\"confusion\">Confusion matrices</h2>\n<p>Overall; rows: reference, columns: "
          "decision; each cell the patch count and its share of the row.</p>\n<div "
          "class=\"plots\">\n",
          f);
    for (int j = 0; j < e->nmodels; j++) {
        const mk_cls_metrics *m = M(pg, j, 0);
        fputs("<figure><table class=\"confusion\" data-model=\"", f);
        mk__html_esc(f, e->models[j].name);
        fputs("\"><tr><th class=\"l\">", f);
        mk__html_esc(f, e->models[j].name);
        fputs("</th>", f);
        for (int c = 0; c < C; c++) {
            fputs("<th>", f);
            mk__html_esc(f, class_name(e, c, cb, sizeof cb));
            fputs("</th>", f);
        }
        fputs("</tr>\n", f);
        for (int a = 0; a < C; a++) {
            int64_t row = 0;
            for (int b = 0; b < C; b++)
                row += m->confusion[a * C + b];
            fputs("<tr><th class=\"l\">", f);
            mk__html_esc(f, class_name(e, a, cb, sizeof cb));
            fputs("</th>", f);
            for (int b = 0; b < C; b++) {
                const int64_t v = m->confusion[a * C + b];
                const double share = row > 0 ? (double)v / (double)row : 0;
                /* shade: green on the diagonal, red off it, by the share of the row */
                const int lvl = (int)lround(255 - 110 * share);
                fprintf(f, "<td data-count=\"%lld\" style=\"background:rgb(%d,%d,%d)\">%lld",
                        (long long)v, a == b ? lvl : 255, a == b ? 255 : lvl, lvl, (long long)v);
                if (row > 0)
                    fprintf(f, " <span class=\"muted\">(%.1f%%)</span>", 100 * share);
                fputs("</td>", f);
            }
            fputs("</tr>\n", f);
        }
        fputs("</table></figure>\n", f);
    }
    fputs("</div>\n", f);
}

static void print_slides(FILE *f, const cpage *pg)
{
    const mk_cls_eval *e = pg->e;
    fputs("<h2 id=\"slides\">Slides</h2>\n<p>Each slide scored on its own patches; click a column "
          "to sort.</p>\n<div class=\"wide\"><table class=\"sortable cases\" "
          "id=\"slide-table\">\n<thead><tr><th class=\"l\" data-col=\"0\">slide</th><th "
          "class=\"l\" data-col=\"1\">group</th>",
          f);
    int col = 2;
    for (int j = 0; j < e->nmodels; j++) {
        const char *what[3] = {"patches", "accuracy", "AUC"};
        for (int k = 0; k < 3; k++) {
            fprintf(f, "<th data-col=\"%d\">", col++);
            mk__html_esc(f, e->models[j].name);
            fprintf(f, "<br>%s</th>", what[k]);
        }
    }
    fputs("</tr></thead>\n<tbody>\n", f);
    for (int s = 0; s < e->nslides; s++) {
        fputs("<tr data-slide=\"", f);
        mk__html_esc(f, e->slide_ids[s]);
        fputs("\"><td class=\"l\">", f);
        mk__html_esc(f, e->slide_ids[s]);
        fputs("</td><td class=\"l\">", f);
        if (e->slide_group)
            mk__html_esc(f, e->slide_group[s] ? e->slide_group[s] : "");
        fputs("</td>", f);
        for (int j = 0; j < e->nmodels; j++) {
            const mk_cls_metrics *m = M(pg, j, 1 + pg->ngroups + s);
            fprintf(f, "<td data-v=\"%lld\">%lld</td><td", (long long)m->n, (long long)m->n);
            mk__html_key(f, m->accuracy);
            fputs(">", f);
            mk__html_num(f, m->accuracy, 4);
            fputs("</td><td", f);
            mk__html_key(f, m->auc);
            fputs(">", f);
            mk__html_num(f, m->auc, 4);
            fputs("</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</tbody></table></div>\n", f);
}

static void print_heatmaps(FILE *f, const cpage *pg)
{
    const mk_cls_eval *e = pg->e;
    const mk_cls_html_opts *o = pg->o;
    char cb[16];
    fputs("<h2 id=\"heatmaps\">Heat maps</h2>\n", f);
    if (!o->heatmap_dir || o->heatmaps <= 0) {
        fputs("<p class=\"muted\">No heat maps in this page (evaluate's heatmaps option is "
              "off).</p>\n",
              f);
        return;
    }
    fputs("<p>Each patch coloured by its probability of <b>", f);
    mk__html_esc(f, class_name(e, e->nclass - 1, cb, sizeof cb));
    fputs("</b> (0 blue, 0.5 yellow, 1 red) over the slide's thumbnail; per model its worst and "
          "its best slide by accuracy.",
          f);
    if (o->heatmap_href)
        fputs(" Every slide's map is beside this page, linked below.", f);
    fputs("</p>\n", f);
    for (int k = 0; k < pg->nheat; k++) {
        const heat *h = &pg->heats[k];
        const mk_cls_metrics *m = M(pg, h->model, 1 + pg->ngroups + h->slide);
        fputs("<figure class=\"case\" data-model=\"", f);
        mk__html_esc(f, e->models[h->model].name);
        fputs("\" data-slide=\"", f);
        mk__html_esc(f, e->slide_ids[h->slide]);
        fputs("\">", f);
        if (h->png) {
            fprintf(f,
                    "<img alt=\"heat map\" width=\"%d\" height=\"%d\" "
                    "src=\"data:image/png;base64,",
                    h->w, h->h);
            mk__html_base64(f, h->png, h->len);
            fputs("\">", f);
        }
        fprintf(f, "<figcaption><b>%s</b> of <b>", h->worst ? "worst slide" : "best slide");
        mk__html_esc(f, e->models[h->model].name);
        fputs("</b>: ", f);
        mk__html_esc(f, e->slide_ids[h->slide]);
        fprintf(f, ", %lld patches, accuracy ", (long long)m->n);
        mk__html_num(f, m->accuracy, 4);
        fputs(", AUC ", f);
        mk__html_num(f, m->auc, 4);
        if (!h->png) {
            fputs(" &mdash; <span class=\"muted\">", f);
            mk__html_esc(f, h->note);
            fputs("</span>", f);
        }
        fputs("</figcaption></figure>\n", f);
    }
    if (o->heatmap_href && e->nslides > 0) {
        fputs("<details><summary>every slide's heat map</summary><ul>\n", f);
        for (int j = 0; j < e->nmodels; j++)
            for (int s = 0; s < e->nslides; s++) {
                fputs("<li><a href=\"", f);
                mk__html_esc(f, o->heatmap_href);
                fputs("/", f);
                mk__html_esc(f, e->models[j].name);
                fputs("/", f);
                mk__html_esc(f, e->slide_ids[s]);
                fputs(".png\">", f);
                mk__html_esc(f, e->models[j].name);
                fputs(": ", f);
                mk__html_esc(f, e->slide_ids[s]);
                fputs("</a></li>\n", f);
            }
        fputs("</ul></details>\n", f);
    }
}

static void print_page(FILE *f, const void *arg)
{
    const cpage *pg = arg;
    print_header(f, pg);
    print_conventions(f, pg);
    print_summary(f, pg);
    print_roc(f, pg);
    print_confusion(f, pg);
    print_slides(f, pg);
    print_heatmaps(f, pg);
    fputs("<p class=\"disclaimer\"><b>For research use only.</b> Not for diagnostic use.</p>\n", f);
    fputs("<p class=\"muted\">Generated by medkd ", f);
    mk__html_esc(f, pg->o->version);
    fputs("; the same figures are in <code>classification.json</code>, <code>.csv</code> and "
          "<code>.h5</code>.</p>\n",
          f);
    fprintf(f, "<script>%s</script>\n</body></html>\n", mk__html_js);
}

mk_status mk_cls_report_html(mk_ctx *ctx, const mk_cls_eval *e, const mk_cls_html_opts *o,
                             const char *path)
{
    mk_cls_html_opts def;
    if (!o) {
        mk_cls_html_opts_default(&def);
        o = &def;
    }
    mk_status st = mk__cls_validate(ctx, path, e);
    if (st != MK_OK)
        return st;
    if (!path)
        return mk_err(ctx, MK_ERR_INVALID, "classification page: NULL path");
    if (o->heatmaps < 0 || o->heatmaps > 2 || o->heatmap_width < 1)
        return mk_err(ctx, MK_ERR_INVALID,
                      "%s: heat maps per model %d (expected 0..2), width %d (expected > 0)", path,
                      o->heatmaps, o->heatmap_width);
    cpage pg;
    memset(&pg, 0, sizeof pg);
    pg.e = e;
    pg.o = o;
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(pg.created, sizeof pg.created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    st = prepare(ctx, &pg);
    if (st == MK_OK)
        st = mk_fs_write_atomic_printed(ctx, path, print_page, &pg);
    for (size_t k = 0; pg.met && k < (size_t)e->nmodels * (size_t)pg.nscope; k++)
        mk_cls_metrics_free(&pg.met[k]);
    for (size_t k = 0; pg.rocs && k < (size_t)e->nmodels * (size_t)pg.per_model; k++)
        free(pg.rocs[k].pt);
    for (int k = 0; k < pg.nheat; k++)
        free(pg.heats[k].png);
    free(pg.heats);
    free(pg.rocs);
    free(pg.met);
    free(pg.gname);
    free(pg.group);
    return st;
}
