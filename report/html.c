/* The self-contained HTML report (mk_report_html, mk_report.h; contents: docs/report.md).
 *
 * Two steps: first everything that can fail or reads files (statistics, image panels: PNG bytes
 * from report/panel.c), then one printer that writes the page into a memory stream, committed
 * atomically. The page has no external resource: plots are inline SVG, panels PNG data URIs,
 * one inline script sorts the case tables (the page reads fully without it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/mk_fs.h"
#include "mk_panel.h"
#include "report_internal.h"
#include "mk_stats.h"

#define MAX_STRUCT 64

void mk_report_html_opts_default(mk_report_html_opts *o)
{
    memset(o, 0, sizeof *o);
    o->window[0] = -160; /* W400 / L40: soft tissue */
    o->window[1] = 240;
    o->worst = 3;
    o->best = 1;
    o->bootstrap = 2000;
    o->seed = 20261202;
}

/* ------------------------------------------------------------------ small writers */

void mk__html_esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* A number for people: fixed decimals, "inf"/"–" for non-finite. */
void mk__html_num(FILE *f, double v, int dec)
{
    if (isnan(v))
        fputs("&ndash;", f);
    else if (isinf(v))
        fputs(v > 0 ? "&infin;" : "&minus;&infin;", f);
    else
        fprintf(f, "%.*f", dec, v);
}

/* The sort key of a table cell (data-v): numbers as %.9g, inf as a large number. */
void mk__html_key(FILE *f, double v)
{
    if (isnan(v))
        fputs(" data-v=\"-1e300\"", f);
    else if (isinf(v))
        fprintf(f, " data-v=\"%s\"", v > 0 ? "1e300" : "-1e300");
    else
        fprintf(f, " data-v=\"%.9g\"", v);
}

static void p_value(FILE *f, double p)
{
    if (isnan(p))
        fputs("&ndash;", f);
    else if (p < 1e-4)
        fprintf(f, "%.1e", p);
    else
        fprintf(f, "%.4f", p);
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void mk__html_base64(FILE *f, const unsigned char *p, size_t n)
{
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        fputc(B64[v >> 18], f);
        fputc(B64[(v >> 12) & 63], f);
        fputc(B64[(v >> 6) & 63], f);
        fputc(B64[v & 63], f);
    }
    if (n - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        fputc(B64[v >> 18], f);
        fputc(B64[(v >> 12) & 63], f);
        fputs("==", f);
    } else if (n - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        fputc(B64[v >> 18], f);
        fputc(B64[(v >> 12) & 63], f);
        fputc(B64[(v >> 6) & 63], f);
        fputc('=', f);
    }
}

/* mean Dice of case i over its structures with a Dice (NaN: both-empty under "nan", left out) */
static double case_mean_dice(const mk_eval_report *r, int i)
{
    double s = 0;
    int n = 0;
    for (int j = 0; j < r->nlabels; j++)
        if (!isnan(r->cases[i].res[j].dice)) {
            s += r->cases[i].res[j].dice;
            n++;
        }
    return n ? s / n : NAN;
}

/* ------------------------------------------------------------------ prepared data */

typedef struct panel {
    int model, cas;
    int worst; /* 1 worst, 0 best */
    unsigned char *png;
    size_t len;
    mk_panel_info info;
    char note[512]; /* why it has no image underneath, or why it failed */
    int ok;
} panel;

typedef struct metric_sum {
    mk_stats_desc d;
    double ci[2];
} metric_sum;

/* Summary metrics per structure: Dice, HD95, ASSD, surface Dice, volume difference (pred - ref). */
#define NSUM 5
static const char *const SUM_NAMES[NSUM] = {"Dice", "HD95 (mm)", "ASSD (mm)", "Surface Dice",
                                            "Volume pred &minus; ref (mL)"};
static const int SUM_DEC[NSUM] = {3, 2, 2, 3, 3};

static double sum_value(const mk_metric_result *r, int k)
{
    switch (k) {
    case 0: return r->dice;
    case 1: return r->hd95;
    case 2: return r->assd;
    case 3: return r->surface_dice;
    default: return r->volume_pred_ml - r->volume_ref_ml;
    }
}

typedef struct model_data {
    int *order;             /* case indices, worst (lowest mean Dice) first */
    metric_sum *sum;        /* [nlabels * NSUM] */
    mk_stats_agreement *ba; /* [nlabels] */
    int (*empties)[4];      /* [nlabels][4]: none, pred (missed), ref (false positive), both */
} model_data;

typedef struct page {
    mk_ctx *ctx;
    const mk_report_html_opts *o;
    const mk_report_model *m;
    int n;
    const mk_report_comparison *cmp;
    int ncmp;
    model_data *md;
    panel *panels;
    int npanels;
    char created[32];
} page;

static const mk_eval_report *R(const page *pg, int i)
{
    return pg->m[i].rep;
}

static int cmp_worst(const void *a, const void *b, void *arg)
{
    const mk_eval_report *r = arg;
    int x = *(const int *)a, y = *(const int *)b;
    double dx = case_mean_dice(r, x), dy = case_mean_dice(r, y);
    /* no structure to score (every one both-empty, "nan"): nothing missed, so after the best
     * (where the "one" policy's Dice 1 puts it) */
    if (isnan(dx))
        dx = 2;
    if (isnan(dy))
        dy = 2;
    if (dx != dy)
        return dx < dy ? -1 : 1;
    return strcmp(r->cases[x].id, r->cases[y].id);
}

/* qsort with a context (insertion sort: case counts are small, and it is stable) */
static void sort_ctx(int *a, int n, int (*cmp)(const void *, const void *, void *), void *arg)
{
    for (int i = 1; i < n; i++) {
        int v = a[i], k = i - 1;
        while (k >= 0 && cmp(&a[k], &v, arg) > 0) {
            a[k + 1] = a[k];
            k--;
        }
        a[k + 1] = v;
    }
}

static mk_status prepare_model(mk_ctx *ctx, const mk_report_html_opts *o, const mk_eval_report *r,
                               model_data *md)
{
    int N = r->ncases, L = r->nlabels;
    md->order = malloc(sizeof *md->order * (size_t)(N > 0 ? N : 1));
    md->sum = calloc((size_t)(L > 0 ? L : 1) * NSUM, sizeof *md->sum);
    md->ba = calloc((size_t)(L > 0 ? L : 1), sizeof *md->ba);
    md->empties = calloc((size_t)(L > 0 ? L : 1), sizeof *md->empties);
    double *v = malloc(sizeof *v * (size_t)(N > 0 ? N : 1) * 2);
    if (!md->order || !md->sum || !md->ba || !md->empties || !v) {
        free(v);
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < N; i++)
        md->order[i] = i;
    sort_ctx(md->order, N, cmp_worst, (void *)r);
    mk_status st = MK_OK;
    for (int j = 0; j < L && st == MK_OK; j++) {
        for (int k = 0; k < NSUM && st == MK_OK; k++) {
            for (int i = 0; i < N; i++)
                v[i] = sum_value(&r->cases[i].res[j], k);
            metric_sum *s = &md->sum[j * NSUM + k];
            mk_stats_describe(v, N, &s->d);
            st = mk_stats_bootstrap_mean_ci(ctx, v, N, o->bootstrap, o->seed, 0.95, s->ci);
        }
        for (int i = 0; i < N; i++) {
            v[i] = r->cases[i].res[j].volume_pred_ml;
            v[N + i] = r->cases[i].res[j].volume_ref_ml;
            md->empties[j][r->cases[i].res[j].empty]++;
        }
        mk_stats_bland_altman(v, v + N, N, &md->ba[j]);
    }
    free(v);
    return st;
}

/* The image of case i: its recorded path, else images_dir/<id>{.nii.gz,.nii,_0000.nii.gz,...}. */
static int find_image(const mk_report_html_opts *o, const mk_eval_case *c, char *buf, size_t n)
{
    if (c->image && mk_fs_is_file(c->image)) {
        snprintf(buf, n, "%s", c->image);
        return 1;
    }
    if (!o->images_dir)
        return 0;
    const char *suffix[] = {".nii.gz", ".nii", "_0000.nii.gz", "_0000.nii", ".mha", ".nrrd"};
    for (size_t k = 0; k < sizeof suffix / sizeof suffix[0]; k++) {
        snprintf(buf, n, "%s/%s%s", o->images_dir, c->id, suffix[k]);
        if (mk_fs_is_file(buf))
            return 1;
    }
    return 0;
}

static void render_panel(mk_ctx *ctx, const mk_report_html_opts *o, const mk_eval_report *r,
                         panel *p)
{
    const mk_eval_case *c = &r->cases[p->cas];
    mk_image *img = NULL, *ref = NULL, *pred = NULL;
    char ipath[4200];
    int have = find_image(o, c, ipath, sizeof ipath);
    mk_status st = mk_io_read_image(ctx, c->ref, &ref);
    if (st == MK_OK)
        st = mk_io_read_image(ctx, c->pred, &pred);
    if (st == MK_OK && have && mk_io_read_image(ctx, ipath, &img) != MK_OK) {
        snprintf(p->note, sizeof p->note, "image not drawn: %.480s", ctx->msg);
        img = NULL;
    } else if (st == MK_OK && !have) {
        snprintf(p->note, sizeof p->note, "image not found (%s): contours on black",
                 c->image ? c->image : "no image path recorded; see --images");
    }
    if (st == MK_OK) {
        mk_panel_opts po;
        mk_panel_opts_default(&po);
        po.window[0] = o->window[0];
        po.window[1] = o->window[1];
        po.window_auto = o->window_auto;
        st = mk_panel_render(ctx, img, ref, pred, r->labels, r->nlabels, &po, &p->png, &p->len,
                             &p->info);
        if (st != MK_OK && img) {
            /* the image may be on another grid than the masks: draw the masks alone */
            char why[400];
            snprintf(why, sizeof why, "%.390s", ctx->msg);
            st = mk_panel_render(ctx, NULL, ref, pred, r->labels, r->nlabels, &po, &p->png, &p->len,
                                 &p->info);
            snprintf(p->note, sizeof p->note, "image not drawn: %s", why);
        }
    }
    if (st != MK_OK)
        snprintf(p->note, sizeof p->note, "no panel: %.490s", ctx->msg);
    p->ok = st == MK_OK;
    mk_image_free(img);
    mk_image_free(ref);
    mk_image_free(pred);
}

/* ------------------------------------------------------------------ SVG plots */

static double nice_step(double range, int target)
{
    if (!(range > 0) || !isfinite(range))
        return 1;
    double raw = range / target, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3 ? 2 : m < 7 ? 5 : 10) * p;
}

typedef struct axis {
    double lo, hi;
    double y0, y1; /* pixel positions of lo and hi */
} axis;

static double ax_pos(const axis *a, double v)
{
    return a->y0 + (v - a->lo) / (a->hi - a->lo) * (a->y1 - a->y0);
}

static void y_ticks(FILE *f, const axis *a, double x0, double x1, int dec)
{
    double st = nice_step(a->hi - a->lo, 5);
    for (double t = ceil(a->lo / st) * st; t <= a->hi + 1e-9 * st; t += st) {
        double y = ax_pos(a, t);
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">%.*f</text>\n",
                x0, y, x1, y, x0 - 4, y + 4, dec, fabs(t) < 1e-12 ? 0.0 : t);
    }
}

/* A deterministic jitter in [-1, 1] for point k. */
static double jitter(int k)
{
    uint32_t h = (uint32_t)k * 2654435761u;
    h ^= h >> 15;
    return ((h % 1000) / 999.0) * 2 - 1;
}

/* Box plot of metric k (0 Dice, 1 HD95) of structure label over the models. */
static void box_plot(FILE *f, const page *pg, int64_t label, int k)
{
    const int W = 120 + 110 * pg->n, H = 260, top = 24, bottom = 214, left = 56;
    double lo = 0, hi = 1;
    if (k == 1) {
        hi = 0;
        for (int i = 0; i < pg->n; i++)
            for (int c = 0; c < R(pg, i)->ncases; c++)
                for (int j = 0; j < R(pg, i)->nlabels; j++)
                    if (R(pg, i)->labels[j] == label && isfinite(R(pg, i)->cases[c].res[j].hd95) &&
                        R(pg, i)->cases[c].res[j].hd95 > hi)
                        hi = R(pg, i)->cases[c].res[j].hd95;
        if (!(hi > 0))
            hi = 1;
        hi = ceil(hi / nice_step(hi, 5)) * nice_step(hi, 5);
    }
    axis a = {lo, hi, bottom, top};
    fprintf(f,
            "<svg class=\"plot\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
            "aria-label=\"%s box plot\">\n",
            W, H, W, H, k == 0 ? "Dice" : "HD95");
    y_ticks(f, &a, left, W - 10, k == 0 ? 1 : 0);
    fprintf(f,
            "<text x=\"14\" y=\"%d\" class=\"axlabel\" transform=\"rotate(-90 14 %d)\" "
            "text-anchor=\"middle\">%s</text>\n",
            (top + bottom) / 2, (top + bottom) / 2, k == 0 ? "Dice" : "HD95 (mm)");
    for (int i = 0; i < pg->n; i++) {
        const mk_eval_report *r = R(pg, i);
        int j = -1;
        for (int q = 0; q < r->nlabels; q++)
            if (r->labels[q] == label)
                j = q;
        double cx = left + 60 + 110 * i;
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">", cx,
                bottom + 18);
        mk__html_esc(f, pg->m[i].name);
        fputs("</text>\n", f);
        if (j < 0)
            continue;
        double *v = malloc(sizeof *v * (size_t)(r->ncases > 0 ? r->ncases : 1));
        if (!v)
            continue;
        int nv = 0, ninf = 0;
        for (int c = 0; c < r->ncases; c++) {
            double x = k == 0 ? r->cases[c].res[j].dice : r->cases[c].res[j].hd95;
            if (isfinite(x))
                v[nv++] = x;
            else if (isinf(x))
                ninf++;
        }
        mk_stats_desc d;
        mk_stats_describe(v, nv, &d);
        free(v);
        if (nv > 0) {
            double iqr = d.q3 - d.q1, wlo = d.q1 - 1.5 * iqr, whi = d.q3 + 1.5 * iqr;
            double mn = INFINITY, mx = -INFINITY; /* whiskers: the extreme values within 1.5 IQR */
            for (int c = 0; c < r->ncases; c++) {
                double x = k == 0 ? r->cases[c].res[j].dice : r->cases[c].res[j].hd95;
                if (isfinite(x) && x >= wlo && x <= whi) {
                    mn = fmin(mn, x);
                    mx = fmax(mx, x);
                }
            }
            fprintf(f,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"whisker\"/>"
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"whisker\"/>"
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"whisker\"/>"
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"whisker\"/>\n",
                    cx, ax_pos(&a, mn), cx, ax_pos(&a, d.q1), cx, ax_pos(&a, d.q3), cx,
                    ax_pos(&a, mx), cx - 12, ax_pos(&a, mn), cx + 12, ax_pos(&a, mn), cx - 12,
                    ax_pos(&a, mx), cx + 12, ax_pos(&a, mx));
            fprintf(f,
                    "<rect x=\"%.1f\" y=\"%.1f\" width=\"56\" height=\"%.1f\" class=\"box m%d\"/>"
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"median\"/>\n",
                    cx - 28, ax_pos(&a, d.q3), fmax(ax_pos(&a, d.q1) - ax_pos(&a, d.q3), 0.5),
                    i % 6, cx - 28, ax_pos(&a, d.median), cx + 28, ax_pos(&a, d.median));
        }
        for (int c = 0; c < r->ncases; c++) {
            double x = k == 0 ? r->cases[c].res[j].dice : r->cases[c].res[j].hd95;
            if (!isfinite(x))
                continue;
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.6\" class=\"pt\"><title>",
                    cx + 22 * jitter(c), ax_pos(&a, x));
            mk__html_esc(f, r->cases[c].id);
            fprintf(f, ": %.4g</title></circle>\n", x);
        }
        if (ninf)
            fprintf(f,
                    "<text x=\"%.1f\" y=\"%d\" class=\"note\" text-anchor=\"middle\">%d case%s "
                    "&infin; (an empty mask)</text>\n",
                    cx, bottom + 32, ninf, ninf == 1 ? "" : "s");
    }
    fputs("</svg>\n", f);
}

/* Bland-Altman plot of predicted against reference volume of structure j of model i. */
static void ba_plot(FILE *f, const page *pg, int i, int j)
{
    const mk_eval_report *r = R(pg, i);
    const mk_stats_agreement *ba = &pg->md[i].ba[j];
    const int W = 360, H = 250, left = 58, right = W - 12, top = 14, bottom = 206;
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int c = 0; c < r->ncases; c++) {
        double a = r->cases[c].res[j].volume_pred_ml, b = r->cases[c].res[j].volume_ref_ml;
        double m = (a + b) / 2, d = a - b;
        xmin = fmin(xmin, m);
        xmax = fmax(xmax, m);
        ymin = fmin(ymin, d);
        ymax = fmax(ymax, d);
    }
    if (isfinite(ba->loa_lo)) {
        ymin = fmin(ymin, ba->loa_lo);
        ymax = fmax(ymax, ba->loa_hi);
    }
    if (!(xmax > xmin)) {
        xmin -= 1;
        xmax += 1;
    }
    if (!(ymax > ymin)) {
        ymin -= 1;
        ymax += 1;
    }
    double px = (xmax - xmin) * 0.06, py = (ymax - ymin) * 0.1;
    xmin -= px;
    xmax += px;
    ymin -= py;
    ymax += py;
    axis ay = {ymin, ymax, bottom, top}, ax = {xmin, xmax, left, right};
    char sn[64];
    mk__eval_structure_name(r, j, sn, sizeof sn);
    fprintf(f,
            "<svg class=\"plot\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
            "aria-label=\"Bland-Altman\">\n",
            W, H, W, H);
    y_ticks(f, &ay, left, right, ymax - ymin < 0.5 ? 3 : ymax - ymin < 5 ? 2 : 1);
    double st = nice_step(xmax - xmin, 4);
    for (double t = ceil(xmin / st) * st; t <= xmax; t += st)
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">%.*f</text>\n",
                ax_pos(&ax, t), bottom + 14,
                xmax - xmin < 0.5 ? 3
                : xmax - xmin < 5 ? 2
                                  : 1,
                fabs(t) < 1e-12 ? 0.0 : t);
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" class=\"axlabel\" text-anchor=\"middle\">mean of pred and "
            "ref (mL)</text>"
            "<text x=\"12\" y=\"%d\" class=\"axlabel\" transform=\"rotate(-90 12 %d)\" "
            "text-anchor=\"middle\">pred &minus; ref (mL)</text>\n",
            (left + right) / 2, bottom + 34, (top + bottom) / 2, (top + bottom) / 2);
    if (isfinite(ba->bias))
        fprintf(f,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"bias\"/>"
                "<text x=\"%d\" y=\"%.1f\" class=\"note\" text-anchor=\"end\">bias %.3f</text>\n",
                left, ax_pos(&ay, ba->bias), right, ax_pos(&ay, ba->bias), right - 2,
                ax_pos(&ay, ba->bias) - 3, ba->bias);
    if (isfinite(ba->loa_lo) && ba->sd > 0)
        for (int s = 0; s < 2; s++) {
            double y = s ? ba->loa_hi : ba->loa_lo;
            fprintf(f,
                    "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"loa\"/>"
                    "<text x=\"%d\" y=\"%.1f\" class=\"note\" text-anchor=\"end\">%s %.3f</text>\n",
                    left, ax_pos(&ay, y), right, ax_pos(&ay, y), right - 2, ax_pos(&ay, y) - 3,
                    s ? "+1.96 sd" : "&minus;1.96 sd", y);
        }
    for (int c = 0; c < r->ncases; c++) {
        double a = r->cases[c].res[j].volume_pred_ml, b = r->cases[c].res[j].volume_ref_ml;
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.8\" class=\"pt\"><title>",
                ax_pos(&ax, (a + b) / 2), ax_pos(&ay, a - b));
        mk__html_esc(f, r->cases[c].id);
        fprintf(f, ": ref %.3f mL, pred %.3f mL</title></circle>\n", b, a);
    }
    fputs("</svg>\n", f);
}

/* ------------------------------------------------------------------ the page */

const char mk__html_css[] =
    "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:0 auto;max-width:1180px;padding:0 "
    "18px 40px;color:#1b1f24;font-size:14px;line-height:1.4}"
    "h1{font-size:24px;margin:18px 0 4px}h2{font-size:19px;border-bottom:2px solid "
    "#d0d7de;padding-bottom:3px;margin-top:30px}h3{font-size:16px;margin:18px 0 6px}"
    ".disclaimer{background:#fff4e5;border:1px solid #f0b45a;padding:8px 12px;margin:10px 0}"
    "table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}"
    "th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:right}"
    "th{background:#f3f5f7}td.l,th.l{text-align:left}"
    "table.sortable th[data-col]{cursor:pointer}table.sortable "
    "th[data-col]:after{content:' \\2195';color:#999}th.group{text-align:center}"
    ".wide{overflow-x:auto;max-width:100%}table.cases{font-size:12px}"
    "table.meta td{text-align:left}"
    "tr.bad td{background:#fdecea}"
    ".plot{background:#fff;border:1px solid #e1e4e8;margin:4px 8px 8px 0}"
    ".plot .grid{stroke:#e8eaed}.plot .tick{font-size:11px;fill:#444}"
    ".plot .axlabel{font-size:12px;fill:#222}.plot .note{font-size:10.5px;fill:#555}"
    ".plot .whisker{stroke:#444;stroke-width:1.2}.plot .median{stroke:#111;stroke-width:2.2}"
    ".plot .box{fill-opacity:.35;stroke:#333}.plot .pt{fill:#222;fill-opacity:.7}"
    ".plot .bias{stroke:#c62828;stroke-width:1.5}.plot "
    ".loa{stroke:#c62828;stroke-dasharray:5 4}"
    ".m0{fill:#1f77b4}.m1{fill:#ff7f0e}.m2{fill:#2ca02c}.m3{fill:#9467bd}.m4{fill:#8c564b}"
    ".m5{fill:#e377c2}"
    ".plots{display:flex;flex-wrap:wrap}.plots figure{margin:0 10px 10px 0}"
    "figure.case{margin:10px 0 18px;break-inside:avoid}figure.case img{max-width:100%;"
    "image-rendering:auto;border:1px solid #ccc}"
    "figcaption{font-size:13px;margin-top:3px}"
    ".legend span{display:inline-block;padding:0 6px;margin-right:6px;border-radius:3px}"
    ".muted{color:#666}code{font-size:12.5px}"
    "@media print{body{max-width:none;font-size:11px}h2{break-before:auto}"
    "table.sortable th:after{content:''}.plot,figure.case{break-inside:avoid}}";

const char mk__html_js[] =
    "(function(){var ths=document.querySelectorAll('table.sortable th');"
    "for(var i=0;i<ths.length;i++){ths[i].addEventListener('click',function(ev){"
    "var th=ev.currentTarget,t=th.closest('table'),b=t.tBodies[0],"
    "col=parseInt(th.getAttribute('data-col'),10);"
    "var asc=th.getAttribute('data-dir')!=='asc';th.setAttribute('data-dir',asc?'asc':'desc');"
    "var rows=Array.prototype.slice.call(b.rows);rows.sort(function(x,y){"
    "var a=x.cells[col].getAttribute('data-v'),c=y.cells[col].getAttribute('data-v');"
    "var fa=parseFloat(a),fc=parseFloat(c),r;"
    "if(isNaN(fa)||isNaN(fc)){r=String(x.cells[col].textContent).localeCompare("
    "String(y.cells[col].textContent));}else{r=fa-fc;}return asc?r:-r;});"
    "for(var k=0;k<rows.length;k++){b.appendChild(rows[k]);}});}})();";

static void print_header(FILE *f, const page *pg)
{
    const mk_report_html_opts *o = pg->o;
    const mk_eval_report *r0 = R(pg, 0);
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src "
          "data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n<title>",
          f);
    mk__html_esc(f, o->title ? o->title : "Segmentation evaluation");
    fprintf(f, "</title>\n<style>%s</style></head>\n<body>\n<h1>", mk__html_css);
    mk__html_esc(f, o->title ? o->title : "Segmentation evaluation");
    fputs("</h1>\n<p class=\"disclaimer\"><b>For research use only.</b> Not for diagnostic use: "
          "these figures compare automatic segmentations with reference masks; they are not a "
          "clinical assessment of any patient.</p>\n",
          f);
    fputs("<table class=\"meta\" id=\"meta\">\n", f);
    fputs("<tr><th class=\"l\">medkd</th><td>", f);
    mk__html_esc(f, o->version);
    fputs("</td></tr>\n<tr><th class=\"l\">report created</th><td>", f);
    mk__html_esc(f, pg->created);
    fputs("</td></tr>\n<tr><th class=\"l\">evaluated</th><td>", f);
    mk__html_esc(f, o->source);
    fputs("</td></tr>\n", f);
    const char *keys[][2] = {{"config hash", r0->config_hash},
                             {"data", r0->data},
                             {"split", r0->split},
                             {"modality", r0->modality}};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        if (!keys[k][1])
            continue;
        fprintf(f, "<tr><th class=\"l\">%s</th><td>", keys[k][0]);
        mk__html_esc(f, keys[k][1]);
        fputs("</td></tr>\n", f);
    }
    fputs("<tr><th class=\"l\">models</th><td>", f);
    for (int i = 0; i < pg->n; i++) {
        fputs(i ? "<br>" : "", f);
        fputs("<b>", f);
        mk__html_esc(f, pg->m[i].name);
        fprintf(f, "</b>: %d cases", R(pg, i)->ncases);
        if (R(pg, i)->model_file) {
            fputs(", <code>", f);
            mk__html_esc(f, R(pg, i)->model_file);
            fputs("</code>", f);
        }
        if (R(pg, i)->translator) {
            fputs(", on the images translated by G of <code>", f);
            mk__html_esc(f, R(pg, i)->translator);
            fputs("</code>", f);
        }
        fputs(", evaluated ", f);
        mk__html_esc(f, R(pg, i)->created);
    }
    fputs("</td></tr>\n<tr><th class=\"l\">structures</th><td>", f);
    for (int j = 0; j < r0->nlabels; j++) {
        char sn[64];
        mk__eval_structure_name(r0, j, sn, sizeof sn);
        fprintf(f, "%s", j ? ", " : "");
        mk__html_esc(f, sn);
        fprintf(f, " (label %lld)", (long long)r0->labels[j]);
    }
    fputs("</td></tr>\n</table>\n", f);
    fputs("<p>Contents: <a href=\"#conventions\">conventions</a> &middot; <a "
          "href=\"#summary\">summary</a> &middot; <a href=\"#plots\">distributions</a> &middot; "
          "<a href=\"#volumes\">volumes</a> &middot; <a href=\"#comparison\">paired "
          "comparison</a> &middot; <a href=\"#cases\">cases</a> &middot; <a "
          "href=\"#panels\">worst and best cases</a> &middot; <a "
          "href=\"#appendix\">appendix</a></p>\n",
          f);
}

static void print_conventions(FILE *f, const page *pg)
{
    const mk_report_html_opts *o = pg->o;
    const mk_eval_report *r0 = R(pg, 0);
    fputs("<h2 id=\"conventions\">Conventions</h2>\n<table class=\"meta\">\n", f);
    fprintf(f, "<tr><th class=\"l\">surface distances</th><td><b>%s</b> convention: ",
            mk_metric_conv_name(r0->convention));
    mk__html_esc(f, mk_eval_definition_text(r0->convention));
    fprintf(f,
            "</td></tr>\n<tr><th class=\"l\">HD95</th><td>%g-th percentile Hausdorff distance in "
            "mm, as defined above</td></tr>\n"
            "<tr><th class=\"l\">surface Dice tolerance</th><td>%g mm</td></tr>\n",
            r0->percentile, r0->tolerance_mm);
    for (int i = 1; i < pg->n; i++)
        if (R(pg, i)->convention != r0->convention || R(pg, i)->tolerance_mm != r0->tolerance_mm)
            fprintf(f,
                    "<tr><th class=\"l\">warning</th><td>model %s was scored with another "
                    "convention or tolerance (%s, %g mm): its distances are not comparable"
                    "</td></tr>\n",
                    pg->m[i].name, mk_metric_conv_name(R(pg, i)->convention),
                    R(pg, i)->tolerance_mm);
    fputs("<tr><th class=\"l\">empty masks</th><td>", f);
    mk__html_esc(f, mk_eval_empty_policy_text(r0->both_empty));
    fputs(". In this page: means of distances are over the cases where both masks are "
          "non-empty (the others are counted as missed / false positive); every case is in the "
          "tables and the appendix.</td></tr>\n",
          f);
    fputs("<tr><th class=\"l\">volumes</th><td>voxel count &times; voxel volume, in mL "
          "(cm&sup3;)</td></tr>\n",
          f);
    fputs("<tr><th class=\"l\">inference</th><td>", f);
    if (r0->window_blend)
        fprintf(f, "sliding windows blended with %s weights", r0->window_blend);
    else
        fputs("not recorded (masks evaluated as given)", f);
    fputs("; post-processing: ", f);
    mk__html_esc(f, r0->postprocess ? r0->postprocess : "not recorded");
    fputs("</td></tr>\n", f);
    fprintf(f,
            "<tr><th class=\"l\">statistics</th><td>sd: sample standard deviation (n&minus;1); "
            "median and IQR: linear interpolation (numpy default); 95%% CI of a mean: "
            "percentile bootstrap, B = %d resamples, seed %llu; paired comparison on Dice: "
            "two-sided Wilcoxon signed-rank test, zero differences dropped, exact null "
            "distribution for n &le; 50 without ties or zeros, else normal approximation with "
            "tie correction and no continuity correction (as scipy 1.10); Holm correction over the "
            "structures of "
            "each pair of models</td></tr>\n",
            o->bootstrap, (unsigned long long)o->seed);
    fputs("<tr><th class=\"l\">image panels</th><td>", f);
    if (o->window_text)
        mk__html_esc(f, o->window_text);
    else if (o->window_auto)
        fputs("grey window: each image's 0.5 to 99.5 percentiles", f);
    else
        fprintf(f, "grey window [%g, %g] (W %g / L %g)", o->window[0], o->window[1],
                o->window[1] - o->window[0], (o->window[0] + o->window[1]) / 2);
    fputs("; in each plane the slice where prediction and reference disagree most; "
          "radiological convention (patient right on the left).</td></tr>\n</table>\n",
          f);
}

static void print_summary(FILE *f, const page *pg)
{
    fputs("<h2 id=\"summary\">Summary per model and structure</h2>\n", f);
    for (int i = 0; i < pg->n; i++) {
        const mk_eval_report *r = R(pg, i);
        const model_data *md = &pg->md[i];
        fputs("<h3>", f);
        mk__html_esc(f, pg->m[i].name);
        fprintf(f, " &mdash; %d cases</h3>\n", r->ncases);
        fputs("<table class=\"summary\"><thead><tr><th class=\"l\">structure</th><th "
              "class=\"l\">metric</th><th>n</th><th>mean</th><th>sd</th><th>median</th>"
              "<th>IQR</th><th>min</th><th>max</th><th>95% CI of mean</th><th>both "
              "empty</th><th>missed</th><th>false positive</th></tr></thead><tbody>\n",
              f);
        for (int j = 0; j < r->nlabels; j++) {
            char sn[64];
            mk__eval_structure_name(r, j, sn, sizeof sn);
            for (int k = 0; k < NSUM; k++) {
                const metric_sum *s = &md->sum[j * NSUM + k];
                fputs("<tr>", f);
                if (k == 0) {
                    fprintf(f, "<td class=\"l\" rowspan=\"%d\"><b>", NSUM);
                    mk__html_esc(f, sn);
                    fputs("</b></td>", f);
                }
                fprintf(f, "<td class=\"l\">%s</td><td>%d", SUM_NAMES[k], s->d.n_finite);
                if (s->d.n_inf)
                    fprintf(f, " <span class=\"muted\">(+%d &infin;)</span>", s->d.n_inf);
                fputs("</td><td>", f);
                mk__html_num(f, s->d.mean, SUM_DEC[k]);
                fputs("</td><td>", f);
                mk__html_num(f, s->d.sd, SUM_DEC[k]);
                fputs("</td><td>", f);
                mk__html_num(f, s->d.median, SUM_DEC[k]);
                fputs("</td><td>", f);
                mk__html_num(f, s->d.q1, SUM_DEC[k]);
                fputs(" to ", f);
                mk__html_num(f, s->d.q3, SUM_DEC[k]);
                fputs("</td><td>", f);
                mk__html_num(f, s->d.min, SUM_DEC[k]);
                fputs("</td><td>", f);
                mk__html_num(f, s->d.max, SUM_DEC[k]);
                fputs("</td><td>", f);
                mk__html_num(f, s->ci[0], SUM_DEC[k]);
                fputs(" to ", f);
                mk__html_num(f, s->ci[1], SUM_DEC[k]);
                fputs("</td>", f);
                if (k == 0)
                    fprintf(f,
                            "<td rowspan=\"%d\">%d</td><td rowspan=\"%d\">%d</td><td "
                            "rowspan=\"%d\">%d</td>",
                            NSUM, md->empties[j][MK_METRIC_EMPTY_BOTH], NSUM,
                            md->empties[j][MK_METRIC_EMPTY_PRED], NSUM,
                            md->empties[j][MK_METRIC_EMPTY_REF]);
                fputs("</tr>\n", f);
            }
        }
        fputs("</tbody></table>\n", f);
    }
    fputs("<p class=\"muted\">n counts the cases with a finite value; &infin; cases (one mask "
          "empty) are left out of the distance means and counted. Missed: the reference has "
          "the structure, the prediction not; false positive: the opposite.</p>\n",
          f);
}

/* The labels of every model, in first-seen order. */
static int all_labels(const page *pg, int64_t *out, int cap)
{
    int n = 0;
    for (int i = 0; i < pg->n; i++)
        for (int j = 0; j < R(pg, i)->nlabels; j++) {
            int seen = 0;
            for (int q = 0; q < n; q++)
                seen |= out[q] == R(pg, i)->labels[j];
            if (!seen && n < cap)
                out[n++] = R(pg, i)->labels[j];
        }
    return n;
}

static void label_title(FILE *f, const page *pg, int64_t label)
{
    for (int i = 0; i < pg->n; i++)
        for (int j = 0; j < R(pg, i)->nlabels; j++)
            if (R(pg, i)->labels[j] == label) {
                char sn[64];
                mk__eval_structure_name(R(pg, i), j, sn, sizeof sn);
                mk__html_esc(f, sn);
                fprintf(f, " (label %lld)", (long long)label);
                return;
            }
}

static void print_plots(FILE *f, const page *pg)
{
    int64_t labels[MAX_STRUCT];
    int L = all_labels(pg, labels, MAX_STRUCT);
    fputs("<h2 id=\"plots\">Distributions</h2>\n<p class=\"muted\">Boxes: quartiles and "
          "median; whiskers: the extreme cases within 1.5 IQR of the box; every case is a "
          "point (hover for its id).</p>\n",
          f);
    for (int q = 0; q < L; q++) {
        fputs("<h3>", f);
        label_title(f, pg, labels[q]);
        fputs("</h3>\n<div class=\"plots\">", f);
        box_plot(f, pg, labels[q], 0);
        box_plot(f, pg, labels[q], 1);
        fputs("</div>\n", f);
    }
}

static void print_volumes(FILE *f, const page *pg)
{
    fputs("<h2 id=\"volumes\">Volumes</h2>\n", f);
    fputs("<table><thead><tr><th class=\"l\">model</th><th class=\"l\">structure</th>"
          "<th>reference mL (mean)</th><th>prediction mL (mean)</th><th>pred &minus; ref mL "
          "(mean)</th><th>|pred &minus; ref| mL (mean)</th><th>bias</th><th>95% limits of "
          "agreement</th></tr></thead><tbody>\n",
          f);
    for (int i = 0; i < pg->n; i++) {
        const mk_eval_report *r = R(pg, i);
        for (int j = 0; j < r->nlabels; j++) {
            double sr = 0, sp = 0, sa = 0;
            for (int c = 0; c < r->ncases; c++) {
                sr += r->cases[c].res[j].volume_ref_ml;
                sp += r->cases[c].res[j].volume_pred_ml;
                sa += fabs(r->cases[c].res[j].volume_pred_ml - r->cases[c].res[j].volume_ref_ml);
            }
            double nn = r->ncases > 0 ? r->ncases : NAN;
            const mk_stats_agreement *ba = &pg->md[i].ba[j];
            char sn[64];
            mk__eval_structure_name(r, j, sn, sizeof sn);
            fputs("<tr><td class=\"l\">", f);
            mk__html_esc(f, pg->m[i].name);
            fputs("</td><td class=\"l\">", f);
            mk__html_esc(f, sn);
            fputs("</td><td>", f);
            mk__html_num(f, sr / nn, 3);
            fputs("</td><td>", f);
            mk__html_num(f, sp / nn, 3);
            fputs("</td><td>", f);
            mk__html_num(f, (sp - sr) / nn, 3);
            fputs("</td><td>", f);
            mk__html_num(f, sa / nn, 3);
            fputs("</td><td>", f);
            mk__html_num(f, ba->bias, 3);
            fputs("</td><td>", f);
            mk__html_num(f, ba->loa_lo, 3);
            fputs(" to ", f);
            mk__html_num(f, ba->loa_hi, 3);
            fputs("</td></tr>\n", f);
        }
    }
    fputs("</tbody></table>\n<p class=\"muted\">Bland-Altman: difference against mean of the "
          "predicted and reference volume per case; solid line the bias (mean difference), "
          "dashed the 95% limits of agreement (bias &plusmn; 1.96 sd).</p>\n",
          f);
    fputs("<div class=\"plots\">", f);
    for (int i = 0; i < pg->n; i++) {
        const mk_eval_report *r = R(pg, i);
        for (int j = 0; j < r->nlabels; j++) {
            char sn[64];
            mk__eval_structure_name(r, j, sn, sizeof sn);
            fputs("<figure>", f);
            ba_plot(f, pg, i, j);
            fputs("<figcaption>", f);
            mk__html_esc(f, pg->m[i].name);
            fputs(": ", f);
            mk__html_esc(f, sn);
            fputs("</figcaption></figure>", f);
        }
    }
    fputs("</div>\n", f);
}

static void print_comparison(FILE *f, const page *pg)
{
    fputs("<h2 id=\"comparison\">Paired comparison of models (Dice)</h2>\n", f);
    if (pg->ncmp == 0) {
        fputs("<p>One model only, or no cases in common: nothing to compare.</p>\n", f);
        return;
    }
    fputs("<p>Per structure, the per-case difference d = Dice(a) &minus; Dice(b) over the cases "
          "both models were scored on: positive values favour <i>a</i>. Wins / ties / losses "
          "count cases with d &gt; 0, d = 0, d &lt; 0.</p>\n",
          f);
    fputs("<table id=\"comparisons\"><thead><tr><th class=\"l\">a</th><th class=\"l\">b</th><th "
          "class=\"l\">structure</th><th>n</th><th>mean d</th><th>95% CI (bootstrap)</th>"
          "<th>Wilcoxon p</th><th>method</th><th>p (Holm)</th><th>wins / ties / "
          "losses</th></tr></thead><tbody>\n",
          f);
    for (int k = 0; k < pg->ncmp; k++) {
        const mk_report_comparison *c = &pg->cmp[k];
        fputs("<tr><td class=\"l\">", f);
        mk__html_esc(f, c->a);
        fputs("</td><td class=\"l\">", f);
        mk__html_esc(f, c->b);
        fputs("</td><td class=\"l\">", f);
        mk__html_esc(f, c->structure);
        fprintf(f, "</td><td>%d</td><td>", c->n);
        mk__html_num(f, c->mean_diff, 4);
        fputs("</td><td>", f);
        mk__html_num(f, c->ci95[0], 4);
        fputs(" to ", f);
        mk__html_num(f, c->ci95[1], 4);
        fputs("</td><td>", f);
        p_value(f, c->wilcoxon_p);
        fprintf(f, "</td><td>%s%s</td><td>",
                isnan(c->wilcoxon_p) ? "&ndash;"
                : c->exact           ? "exact"
                                     : "normal approx.",
                c->n_zero ? " (zeros dropped)" : "");
        p_value(f, c->p_holm);
        fprintf(f, "</td><td>%d / %d / %d</td></tr>\n", c->wins, c->ties, c->losses);
    }
    fputs("</tbody></table>\n", f);
}

static void print_cases(FILE *f, const page *pg)
{
    fputs("<h2 id=\"cases\">Cases</h2>\n<p class=\"muted\">Worst first (lowest mean Dice over "
          "the structures); click a column heading to sort.</p>\n",
          f);
    for (int i = 0; i < pg->n; i++) {
        const mk_eval_report *r = R(pg, i);
        fputs("<h3>", f);
        mk__html_esc(f, pg->m[i].name);
        fprintf(f, "</h3>\n<div class=\"wide\"><table class=\"sortable cases\" data-model=\"");
        mk__html_esc(f, pg->m[i].name);
        /* one header row with one structure, else the structures over their metrics */
        const char *cols[] = {"Dice",   "HD95 mm", "ASSD mm",   "surf. Dice",
                              "ref mL", "pred mL", "&Delta; mL"};
        const int ncol = (int)(sizeof cols / sizeof cols[0]);
        int two = r->nlabels > 1, col = 2;
        fprintf(f,
                "\"><thead><tr><th class=\"l\" data-col=\"0\"%s>case</th><th "
                "data-col=\"1\"%s>mean Dice</th>",
                two ? " rowspan=\"2\"" : "", two ? " rowspan=\"2\"" : "");
        if (two) {
            for (int j = 0; j < r->nlabels; j++) {
                char sn[64];
                mk__eval_structure_name(r, j, sn, sizeof sn);
                fprintf(f, "<th class=\"group\" colspan=\"%d\">", ncol);
                mk__html_esc(f, sn);
                fputs("</th>", f);
            }
            fprintf(f, "<th class=\"l\" rowspan=\"2\" data-col=\"%d\">state</th></tr><tr>",
                    2 + ncol * r->nlabels);
        }
        for (int j = 0; j < r->nlabels; j++)
            for (int k = 0; k < ncol; k++)
                fprintf(f, "<th data-col=\"%d\">%s</th>", col++, cols[k]);
        if (!two)
            fprintf(f, "<th class=\"l\" data-col=\"%d\">state</th>", col);
        fputs("</tr></thead><tbody>\n", f);
        for (int q = 0; q < r->ncases; q++) {
            int c = pg->md[i].order[q];
            const mk_eval_case *ec = &r->cases[c];
            int anyempty = 0;
            for (int j = 0; j < r->nlabels; j++)
                anyempty |= ec->res[j].empty == MK_METRIC_EMPTY_PRED ||
                            ec->res[j].empty == MK_METRIC_EMPTY_REF;
            fprintf(f, "<tr%s><td class=\"l\" data-v=\"", anyempty ? " class=\"bad\"" : "");
            mk__html_esc(f, ec->id);
            fputs("\">", f);
            mk__html_esc(f, ec->id);
            fputs("</td>", f);
            double md = case_mean_dice(r, c);
            fputs("<td", f);
            mk__html_key(f, md);
            fputs(">", f);
            mk__html_num(f, md, 3);
            fputs("</td>", f);
            for (int j = 0; j < r->nlabels; j++) {
                const mk_metric_result *m = &ec->res[j];
                double v[7] = {m->dice,
                               m->hd95,
                               m->assd,
                               m->surface_dice,
                               m->volume_ref_ml,
                               m->volume_pred_ml,
                               m->volume_pred_ml - m->volume_ref_ml};
                int dec[7] = {3, 2, 2, 3, 3, 3, 3};
                for (int k = 0; k < 7; k++) {
                    fputs("<td", f);
                    mk__html_key(f, v[k]);
                    fputs(">", f);
                    mk__html_num(f, v[k], dec[k]);
                    fputs("</td>", f);
                }
            }
            fputs("<td class=\"l\">", f);
            int first = 1;
            for (int j = 0; j < r->nlabels; j++) {
                const char *w = ec->res[j].empty == MK_METRIC_EMPTY_PRED   ? "missed"
                                : ec->res[j].empty == MK_METRIC_EMPTY_REF  ? "false positive"
                                : ec->res[j].empty == MK_METRIC_EMPTY_BOTH ? "both empty"
                                                                           : NULL;
                if (!w)
                    continue;
                char sn[64];
                mk__eval_structure_name(r, j, sn, sizeof sn);
                fputs(first ? "" : "; ", f);
                mk__html_esc(f, sn);
                fprintf(f, ": %s", w);
                first = 0;
            }
            fputs(first ? "ok</td></tr>\n" : "</td></tr>\n", f);
        }
        fputs("</tbody></table></div>\n", f);
    }
}

static void print_panels(FILE *f, const page *pg)
{
    fputs("<h2 id=\"panels\">Worst and best cases</h2>\n", f);
    fputs("<p class=\"legend\">Contours: <span style=\"color:#00a000\">&#9632; reference</span>"
          "<span style=\"color:#d000d0\">&#9632; prediction</span>; filled: <span "
          "style=\"color:#e00000\">&#9632; false positive</span><span "
          "style=\"color:#0050ff\">&#9632; false negative</span>. Three planes: axial, coronal, "
          "sagittal.</p>\n",
          f);
    for (int i = 0; i < pg->n; i++) {
        const mk_eval_report *r = R(pg, i);
        fputs("<h3>", f);
        mk__html_esc(f, pg->m[i].name);
        fputs("</h3>\n", f);
        for (int k = 0; k < pg->npanels; k++) {
            const panel *p = &pg->panels[k];
            if (p->model != i || !p->ok)
                continue;
            const mk_eval_case *ec = &r->cases[p->cas];
            fputs("<figure class=\"case\"><img alt=\"", f);
            mk__html_esc(f, ec->id);
            fprintf(f, "\" width=\"%d\" height=\"%d\" src=\"data:image/png;base64,", p->info.width,
                    p->info.height);
            mk__html_base64(f, p->png, p->len);
            fprintf(f, "\"><figcaption><b>%s</b> ", p->worst ? "worst" : "best");
            mk__html_esc(f, ec->id);
            fputs(": ", f);
            for (int j = 0; j < r->nlabels; j++) {
                char sn[64];
                mk__eval_structure_name(r, j, sn, sizeof sn);
                fputs(j ? ", " : "", f);
                mk__html_esc(f, sn);
                fputs(" Dice ", f);
                mk__html_num(f, ec->res[j].dice, 3);
                fputs(", HD95 ", f);
                mk__html_num(f, ec->res[j].hd95, 2);
                fputs(" mm", f);
            }
            fprintf(f, "; window [%g, %g]", p->info.window[0], p->info.window[1]);
            if (p->note[0]) {
                fputs(" &mdash; <span class=\"muted\">", f);
                mk__html_esc(f, p->note);
                fputs("</span>", f);
            }
            fputs("</figcaption></figure>\n", f);
        }
    }
}

static void print_appendix(FILE *f, const page *pg)
{
    fputs("<h2 id=\"appendix\">Appendix: excluded and failed cases</h2>\n", f);
    int any = 0;
    fputs("<table id=\"excluded\"><thead><tr><th class=\"l\">model</th><th "
          "class=\"l\">case or file</th><th class=\"l\">what</th></tr></thead><tbody>\n",
          f);
    for (int i = 0; i < pg->n; i++) {
        const mk_eval_report *r = R(pg, i);
        for (int k = 0; k < r->nunpaired_pred + r->nunpaired_ref; k++) {
            int isp = k < r->nunpaired_pred;
            fputs("<tr><td class=\"l\">", f);
            mk__html_esc(f, pg->m[i].name);
            fputs("</td><td class=\"l\">", f);
            mk__html_esc(f, isp ? r->unpaired_pred[k] : r->unpaired_ref[k - r->nunpaired_pred]);
            fprintf(f, "</td><td class=\"l\">not scored: %s</td></tr>\n",
                    isp ? "a prediction without a reference" : "a reference without a prediction");
            any = 1;
        }
        for (int c = 0; c < r->ncases; c++)
            for (int j = 0; j < r->nlabels; j++) {
                mk_metric_empty e = r->cases[c].res[j].empty;
                if (e == MK_METRIC_EMPTY_NONE)
                    continue;
                char sn[64];
                mk__eval_structure_name(r, j, sn, sizeof sn);
                fputs("<tr><td class=\"l\">", f);
                mk__html_esc(f, pg->m[i].name);
                fputs("</td><td class=\"l\">", f);
                mk__html_esc(f, r->cases[c].id);
                fputs("</td><td class=\"l\">", f);
                mk__html_esc(f, sn);
                fprintf(f, ": %s</td></tr>\n",
                        e == MK_METRIC_EMPTY_PRED
                            ? "missed (empty prediction): Dice 0, distances &infin;, kept in "
                              "every table"
                        : e == MK_METRIC_EMPTY_REF
                            ? "false positive (empty reference): Dice 0, distances &infin;, kept "
                              "in every table"
                            : "both masks empty: Dice 1, distances 0, kept in every table");
                any = 1;
            }
        /* cases another model has and this one lacks: left out of that pair's comparison */
        for (int k = 0; k < pg->n; k++) {
            if (k == i)
                continue;
            for (int c = 0; c < R(pg, k)->ncases; c++) {
                int found = 0;
                for (int q = 0; q < r->ncases && !found; q++)
                    found = !strcmp(r->cases[q].id, R(pg, k)->cases[c].id);
                if (found)
                    continue;
                fputs("<tr><td class=\"l\">", f);
                mk__html_esc(f, pg->m[i].name);
                fputs("</td><td class=\"l\">", f);
                mk__html_esc(f, R(pg, k)->cases[c].id);
                fputs("</td><td class=\"l\">not scored for this model (", f);
                mk__html_esc(f, pg->m[k].name);
                fputs(" has it): left out of their paired comparison</td></tr>\n", f);
                any = 1;
            }
        }
    }
    for (int k = 0; k < pg->npanels; k++) {
        const panel *p = &pg->panels[k];
        if (!p->note[0])
            continue;
        fputs("<tr><td class=\"l\">", f);
        mk__html_esc(f, pg->m[p->model].name);
        fputs("</td><td class=\"l\">", f);
        mk__html_esc(f, R(pg, p->model)->cases[p->cas].id);
        fputs("</td><td class=\"l\">image panel: ", f);
        mk__html_esc(f, p->note);
        fputs("</td></tr>\n", f);
        any = 1;
    }
    if (!any)
        fputs("<tr><td class=\"l\" colspan=\"3\">none: every case was scored by every model "
              "with non-empty masks</td></tr>\n",
              f);
    fputs("</tbody></table>\n", f);
}

static void print_page(FILE *f, const void *arg)
{
    const page *pg = arg;
    print_header(f, pg);
    print_conventions(f, pg);
    print_summary(f, pg);
    print_plots(f, pg);
    print_volumes(f, pg);
    print_comparison(f, pg);
    print_cases(f, pg);
    print_panels(f, pg);
    print_appendix(f, pg);
    fputs("<p class=\"disclaimer\"><b>For research use only.</b> Not for diagnostic use.</p>\n", f);
    fputs("<p class=\"muted\">Generated by medkd ", f);
    mk__html_esc(f, pg->o->version);
    fputs(" (<code>pipeline report</code>); the same figures are in the evaluation reports "
          "(JSON, CSV, HDF5) and <code>summary.json</code>.</p>\n",
          f);
    fprintf(f, "<script>%s</script>\n</body></html>\n", mk__html_js);
}

mk_status mk_report_html(mk_ctx *ctx, const mk_report_html_opts *o, const mk_report_model *models,
                         int n, const mk_report_comparison *cmp, int ncmp, const char *path)
{
    if (n <= 0)
        return mk_err(ctx, MK_ERR_INVALID, "%s: the report needs at least one model", path);
    if (o->bootstrap <= 0 || o->worst < 0 || o->best < 0)
        return mk_err(ctx, MK_ERR_INVALID,
                      "%s: bootstrap resamples must be > 0 and panel counts >= 0", path);
    if (!o->window_auto && !(o->window[0] < o->window[1]))
        return mk_err(ctx, MK_ERR_INVALID, "%s: window [%g, %g]: expected low < high", path,
                      o->window[0], o->window[1]);
    for (int i = 0; i < n; i++)
        if (models[i].rep->nlabels > MAX_STRUCT)
            return mk_err(ctx, MK_ERR_INVALID, "%s: model %s has %d structures (at most %d)", path,
                          models[i].name, models[i].rep->nlabels, MAX_STRUCT);
    page pg = {ctx, o, models, n, cmp, ncmp, NULL, NULL, 0, {0}};
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(pg.created, sizeof pg.created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    mk_status st = MK_OK;
    pg.md = calloc((size_t)n, sizeof *pg.md);
    int cap = 0;
    for (int i = 0; i < n; i++)
        cap += o->worst + o->best;
    pg.panels = calloc((size_t)(cap > 0 ? cap : 1), sizeof *pg.panels);
    if (!pg.md || !pg.panels)
        st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && st == MK_OK; i++)
        st = prepare_model(ctx, o, models[i].rep, &pg.md[i]);
    /* panels: the worst cases, then the best (never the same case twice) */
    for (int i = 0; i < n && st == MK_OK; i++) {
        const mk_eval_report *r = models[i].rep;
        int nw = o->worst < r->ncases ? o->worst : r->ncases;
        int nb = o->best < r->ncases - nw ? o->best : r->ncases - nw;
        for (int q = 0; q < nw + nb; q++) {
            panel *p = &pg.panels[pg.npanels++];
            p->model = i;
            p->worst = q < nw;
            p->cas = q < nw ? pg.md[i].order[q] : pg.md[i].order[r->ncases - 1 - (q - nw)];
            render_panel(ctx, o, r, p);
            if (ctx->cancel)
                st = mk_err(ctx, MK_ERR_ABORTED, "interrupted");
        }
    }
    if (st == MK_OK)
        st = mk_fs_write_atomic_printed(ctx, path, print_page, &pg);
    for (int i = 0; pg.md && i < n; i++) {
        free(pg.md[i].order);
        free(pg.md[i].sum);
        free(pg.md[i].ba);
        free(pg.md[i].empties);
    }
    for (int k = 0; k < pg.npanels; k++)
        free(pg.panels[k].png);
    free(pg.panels);
    free(pg.md);
    return st;
}
