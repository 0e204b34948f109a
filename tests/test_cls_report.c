/* Classification reports (report/cls_report.c, mk_cls_report.h): mk_cls_report_write for two
 * models over four slides in two groups, its classification.json read back with cJSON and every
 * scope compared with mk_cls_metrics_compute on that scope's samples (exactly: the numbers are
 * written so they read back as they were), classification.h5 read with h5py and the CSV's header
 * and rows (tests/cls_report_check.py); bad input (a slide index out of range names the model and
 * the sample, nothing written), a missing directory and an output that cannot be replaced
 * (MK_ERR_IO naming the file, no partial file). The heat map: a 64 x 48 thumbnail and 12 patches
 * of known probabilities (and two far outside it), read back with PIL (size, reddish / bluish
 * patches, the thumbnail's own pixels outside them), bad sizes. Fails without python3 + numpy +
 * h5py + PIL (declared in scripts/deps.list). */
#define _GNU_SOURCE /* nftw (test_tmp.h) */
#include <cairo.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#ifdef MK_TEST_HAVE_FONTCONFIG
#include <fontconfig/fontconfig.h>
#endif

#include <cmocka.h>

#include "core/mk_fs.h"
#include "report/mk_cls_report.h"
#include "test_tmp.h"

static char g_tmp[512];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc))
        return -1;
    return WEXITSTATUS(rc);
}

static const char *checker(void)
{
    static char p[1024];
    const char *src = getenv("MK_SOURCE_DIR");
    snprintf(p, sizeof p, "%s/tests/cls_report_check.py", src ? src : ".");
    return p;
}

/* number of entries of a folder, "." and ".." not counted; -1 when it cannot be read */
static int count_entries(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int k = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            (!needle || strstr(de->d_name, needle)))
            k++;
    closedir(d);
    return k;
}

/* ------------------------------------------------------------------------------ the data */

#define NCLASS 3
#define NSLIDES 4

static const char *const CLASSES[NCLASS] = {"normal", "tumour", "stroma"};
static const char *const SLIDES[NSLIDES] = {"s1", "s2", "s3", "s4"};
static const char *const GROUPS[NSLIDES] = {"siteB", "siteA", "siteB", "siteA"};

typedef struct data {
    int64_t n[2];
    int32_t truth[2][80], slide[2][80];
    float prob[2][80 * NCLASS];
    mk_cls_eval_model m[2];
    mk_cls_eval e;
} data;

static uint64_t g_lcg = 12345;

static double unit(void)
{
    g_lcg = g_lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(g_lcg >> 11) / 9007199254740992.0;
}

/* model A: 60 samples on all four slides; model B: 40 on s1..s3 (s4 has none: n 0 there).
 * Scores quantised to tenths, so there are ties in the AUC and in the argmax. */
static void make_data(data *d)
{
    memset(d, 0, sizeof *d);
    d->n[0] = 60;
    d->n[1] = 40;
    for (int j = 0; j < 2; j++)
        for (int64_t i = 0; i < d->n[j]; i++) {
            int t = (int)(unit() * NCLASS);
            d->truth[j][i] = t;
            d->slide[j][i] = (int32_t)(unit() * (j == 0 ? NSLIDES : NSLIDES - 1));
            for (int c = 0; c < NCLASS; c++)
                d->prob[j][i * NCLASS + c] =
                    (float)(floor((unit() + (c == t ? 0.5 : 0)) * 10 + 0.5) / 10);
        }
    const char *names[2] = {"A", "B"};
    for (int j = 0; j < 2; j++)
        d->m[j] = (mk_cls_eval_model){names[j], d->n[j], d->truth[j], d->prob[j], d->slide[j]};
    d->e = (mk_cls_eval){.nclass = NCLASS,
                         .class_names = CLASSES,
                         .nslides = NSLIDES,
                         .slide_ids = SLIDES,
                         .slide_group = GROUPS,
                         .nmodels = 2,
                         .models = d->m};
}

static void write_inputs(const data *d, const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "classes %s %s %s\n", CLASSES[0], CLASSES[1], CLASSES[2]);
    fprintf(f, "slides %s %s %s %s\n", SLIDES[0], SLIDES[1], SLIDES[2], SLIDES[3]);
    fprintf(f, "groups %s %s %s %s\n", GROUPS[0], GROUPS[1], GROUPS[2], GROUPS[3]);
    for (int j = 0; j < 2; j++) {
        fprintf(f, "model %s %lld\n", d->m[j].name, (long long)d->n[j]);
        for (int64_t i = 0; i < d->n[j]; i++) {
            fprintf(f, "%d %d", (int)d->truth[j][i], (int)d->slide[j][i]);
            for (int c = 0; c < NCLASS; c++)
                fprintf(f, " %.17g", (double)d->prob[j][i * NCLASS + c]);
            fputc('\n', f);
        }
    }
    assert_int_equal(fclose(f), 0);
}

/* ------------------------------------------------------------------ JSON against metrics */

static void jnum_eq(const cJSON *v, double want, const char *what)
{
    if (isnan(want)) {
        if (!cJSON_IsNull(v))
            fail_msg("%s: expected null (NaN)", what);
        return;
    }
    if (!cJSON_IsNumber(v))
        fail_msg("%s: expected a number", what);
    if (v->valuedouble != want)
        fail_msg("%s: JSON %.17g, computed %.17g", what, v->valuedouble, want);
}

static void jarr_eq(const cJSON *a, const double *want, int n, const char *what)
{
    char w[200];
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        fail_msg("%s: expected an array of %d", what, n);
    for (int k = 0; k < n; k++) {
        snprintf(w, sizeof w, "%s[%d]", what, k);
        jnum_eq(cJSON_GetArrayItem(a, k), want[k], w);
    }
}

static void jints_eq(const cJSON *a, const int64_t *want, int n, const char *what)
{
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        fail_msg("%s: expected an array of %d", what, n);
    for (int k = 0; k < n; k++) {
        const cJSON *v = cJSON_GetArrayItem(a, k);
        if (!cJSON_IsNumber(v) || v->valuedouble != (double)want[k])
            fail_msg("%s[%d]: expected %lld", what, k, (long long)want[k]);
    }
}

/* The scope object o against the metrics of the samples of model j that keep(slide) selects. */
static void scope_eq(const data *d, int j, const cJSON *o, int (*keep)(int slide, int arg), int arg,
                     const char *what)
{
    int32_t t[80];
    float p[80 * NCLASS];
    int64_t k = 0;
    for (int64_t i = 0; i < d->n[j]; i++)
        if (keep(d->slide[j][i], arg)) {
            t[k] = d->truth[j][i];
            memcpy(p + k * NCLASS, d->prob[j] + i * NCLASS, sizeof(float) * NCLASS);
            k++;
        }
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_cls_metrics m;
    assert_int_equal(mk_cls_metrics_compute(&ctx, NCLASS, k, t, p, &m), MK_OK);
    if (!cJSON_IsObject(o))
        fail_msg("%s: missing", what);
    char w[200];
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, "n");
    if (!cJSON_IsNumber(n) || n->valuedouble != (double)k)
        fail_msg("%s.n: expected %lld", what, (long long)k);
    snprintf(w, sizeof w, "%s.accuracy", what);
    jnum_eq(cJSON_GetObjectItemCaseSensitive(o, "accuracy"), m.accuracy, w);
    snprintf(w, sizeof w, "%s.balanced_accuracy", what);
    jnum_eq(cJSON_GetObjectItemCaseSensitive(o, "balanced_accuracy"), m.balanced_accuracy, w);
    snprintf(w, sizeof w, "%s.auc", what);
    jnum_eq(cJSON_GetObjectItemCaseSensitive(o, "auc"), m.auc, w);
    const char *keys[4] = {"auc_class", "precision", "recall", "f1"};
    const double *vals[4] = {m.auc_class, m.precision, m.recall, m.f1};
    for (int q = 0; q < 4; q++) {
        snprintf(w, sizeof w, "%s.%s", what, keys[q]);
        jarr_eq(cJSON_GetObjectItemCaseSensitive(o, keys[q]), vals[q], NCLASS, w);
    }
    snprintf(w, sizeof w, "%s.support", what);
    jints_eq(cJSON_GetObjectItemCaseSensitive(o, "support"), m.support, NCLASS, w);
    const cJSON *conf = cJSON_GetObjectItemCaseSensitive(o, "confusion");
    if (!cJSON_IsArray(conf) || cJSON_GetArraySize(conf) != NCLASS)
        fail_msg("%s.confusion: expected %d rows", what, NCLASS);
    for (int r = 0; r < NCLASS; r++) {
        snprintf(w, sizeof w, "%s.confusion[%d]", what, r);
        jints_eq(cJSON_GetArrayItem(conf, r), m.confusion + r * NCLASS, NCLASS, w);
    }
    mk_cls_metrics_free(&m);
}

static int keep_all(int slide, int arg)
{
    (void)slide;
    (void)arg;
    return 1;
}

static int keep_slide(int slide, int arg)
{
    return slide == arg;
}

static int keep_group(int slide, int arg) /* arg 0: siteB (slides 0, 2), 1: siteA (1, 3) */
{
    return (slide % 2) == arg;
}

static void test_report_files(void **state)
{
    (void)state;
    static data d;
    make_data(&d);
    char dir[600], path[700], in[700];
    snprintf(dir, sizeof dir, "%s/rep", g_tmp);
    assert_int_equal(mkdir(dir, 0755), 0);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_status st = mk_cls_report_write(&ctx, dir, &d.e);
    if (st != MK_OK)
        fail_msg("mk_cls_report_write: %s", mk_ctx_errmsg(&ctx));
    assert_int_equal(count_entries(dir, NULL), 3); /* json, csv, h5: no temporaries */

    /* JSON */
    snprintf(path, sizeof path, "%s/classification.json", dir);
    char *text;
    size_t len;
    assert_int_equal(mk_fs_read_all(&ctx, path, &text, &len), MK_OK);
    cJSON *root = cJSON_Parse(text);
    free(text);
    assert_non_null(root);
    const cJSON *classes = cJSON_GetObjectItemCaseSensitive(root, "classes");
    assert_int_equal(cJSON_GetArraySize(classes), NCLASS);
    for (int c = 0; c < NCLASS; c++)
        assert_string_equal(cJSON_GetArrayItem(classes, c)->valuestring, CLASSES[c]);
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(root, "models");
    assert_int_equal(cJSON_GetArraySize(models), 2);
    for (int j = 0; j < 2; j++) {
        const cJSON *m = cJSON_GetArrayItem(models, j);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(m, "name")->valuestring, d.m[j].name);
        char w[64];
        snprintf(w, sizeof w, "%s.overall", d.m[j].name);
        scope_eq(&d, j, cJSON_GetObjectItemCaseSensitive(m, "overall"), keep_all, 0, w);
        /* groups in order of first appearance: siteB (s1) before siteA (s2) */
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(m, "groups");
        assert_int_equal(cJSON_GetArraySize(g), 2);
        assert_string_equal(cJSON_GetArrayItem(g, 0)->string, "siteB");
        assert_string_equal(cJSON_GetArrayItem(g, 1)->string, "siteA");
        for (int k = 0; k < 2; k++) {
            snprintf(w, sizeof w, "%s.groups.%s", d.m[j].name, k ? "siteA" : "siteB");
            scope_eq(&d, j, cJSON_GetArrayItem(g, k), keep_group, k, w);
        }
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(m, "slides");
        assert_int_equal(cJSON_GetArraySize(s), NSLIDES);
        for (int k = 0; k < NSLIDES; k++) {
            assert_string_equal(cJSON_GetArrayItem(s, k)->string, SLIDES[k]);
            snprintf(w, sizeof w, "%s.slides.%s", d.m[j].name, SLIDES[k]);
            scope_eq(&d, j, cJSON_GetArrayItem(s, k), keep_slide, k, w);
        }
    }
    /* model B has no sample on s4: n 0, every figure null */
    const cJSON *b4 = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(models, 1), "slides"), "s4");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(b4, "n")->valueint, 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(b4, "accuracy")));
    /* the data are not degenerate: model A's overall figures are proper fractions */
    const cJSON *ao = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(models, 0), "overall");
    const double acc = cJSON_GetObjectItemCaseSensitive(ao, "accuracy")->valuedouble;
    const double auc = cJSON_GetObjectItemCaseSensitive(ao, "auc")->valuedouble;
    assert_true(acc > 0.3 && acc < 1 && auc > 0.5 && auc < 1);
    cJSON_Delete(root);

    /* CSV: header, 2 models x (overall + 2 groups + 4 slides) rows of 16 fields */
    snprintf(path, sizeof path, "%s/classification.csv", dir);
    assert_int_equal(mk_fs_read_all(&ctx, path, &text, &len), MK_OK);
    const char *header =
        "model,scope,scope_id,n,accuracy,balanced_accuracy,auc,precision_normal,recall_normal,"
        "f1_normal,precision_tumour,recall_tumour,f1_tumour,precision_stroma,recall_stroma,"
        "f1_stroma\n";
    assert_memory_equal(text, header, strlen(header));
    int rows = 0, fields = 1;
    for (const char *c = text + strlen(header); *c; c++) {
        if (*c == ',')
            fields++;
        if (*c == '\n') {
            assert_int_equal(fields, 16);
            rows++;
            fields = 1;
        }
    }
    assert_int_equal(rows, 2 * (1 + 2 + NSLIDES));
    assert_non_null(strstr(text, "\nA,overall,,60,"));
    assert_non_null(strstr(text, "\nA,group,siteB,"));
    assert_non_null(strstr(text, "\nB,slide,s4,0,,,,,,,,,,,,\n")); /* NaN as empty */
    free(text);

    /* HDF5 with h5py against the inputs and the JSON */
    snprintf(in, sizeof in, "%s/inputs.txt", g_tmp);
    write_inputs(&d, in);
    assert_int_equal(sh("/usr/bin/python3 '%s' h5 '%s/classification.h5' "
                        "'%s/classification.json' '%s'",
                        checker(), dir, dir, in),
                     0);

    /* no groups: "groups" is {}, no /slide_group, rows without group scopes */
    d.e.slide_group = NULL;
    snprintf(dir, sizeof dir, "%s/nogroups", g_tmp);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(mk_cls_report_write(&ctx, dir, &d.e), MK_OK);
    snprintf(path, sizeof path, "%s/classification.json", dir);
    assert_int_equal(mk_fs_read_all(&ctx, path, &text, &len), MK_OK);
    root = cJSON_Parse(text);
    free(text);
    assert_non_null(root);
    const cJSON *g0 = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "models"), 0), "groups");
    assert_true(cJSON_IsObject(g0) && cJSON_GetArraySize(g0) == 0);
    cJSON_Delete(root);
    assert_int_equal(sh("/usr/bin/python3 -c \"import h5py, sys; "
                        "sys.exit('slide_group' in h5py.File(sys.argv[1], 'r'))\" "
                        "'%s/classification.h5'",
                        dir),
                     0);
}

static void test_report_errors(void **state)
{
    (void)state;
    static data d;
    make_data(&d);
    char dir[600], path[700];
    mk_ctx ctx;
    mk_ctx_init(&ctx);

    /* a slide index out of range: the model and the sample named, nothing written */
    snprintf(dir, sizeof dir, "%s/bad", g_tmp);
    assert_int_equal(mkdir(dir, 0755), 0);
    d.slide[1][7] = NSLIDES;
    assert_int_equal(mk_cls_report_write(&ctx, dir, &d.e), MK_ERR_INVALID);
    if (!strstr(mk_ctx_errmsg(&ctx), "model 'B'") || !strstr(mk_ctx_errmsg(&ctx), "sample 7") ||
        !strstr(mk_ctx_errmsg(&ctx), "slide index 4"))
        fail_msg("message: %s", mk_ctx_errmsg(&ctx));
    assert_int_equal(count_entries(dir, NULL), 0);
    d.slide[1][7] = -1;
    assert_int_equal(mk_cls_report_write(&ctx, dir, &d.e), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "sample 7"));
    d.slide[1][7] = 0;
    /* a truth out of range */
    d.truth[0][3] = NCLASS;
    assert_int_equal(mk_cls_report_write(&ctx, dir, &d.e), MK_ERR_INVALID);
    if (!strstr(mk_ctx_errmsg(&ctx), "model 'A'") || !strstr(mk_ctx_errmsg(&ctx), "sample 3"))
        fail_msg("message: %s", mk_ctx_errmsg(&ctx));
    d.truth[0][3] = 0;
    /* model names: twice, or one HDF5 cannot hold as a group */
    d.m[1].name = "A";
    assert_int_equal(mk_cls_report_write(&ctx, dir, &d.e), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "used twice"));
    d.m[1].name = "x/y";
    assert_int_equal(mk_cls_report_write(&ctx, dir, &d.e), MK_ERR_INVALID);
    d.m[1].name = "slides";
    assert_int_equal(mk_cls_report_write(&ctx, dir, &d.e), MK_ERR_INVALID);
    d.m[1].name = "B";
    /* a slide id twice, nclass out of range */
    const char *dup[NSLIDES] = {"s1", "s2", "s1", "s4"};
    d.e.slide_ids = dup;
    assert_int_equal(mk_cls_report_write(&ctx, dir, &d.e), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "'s1'"));
    d.e.slide_ids = SLIDES;
    d.e.nclass = 1;
    assert_int_equal(mk_cls_report_write(&ctx, dir, &d.e), MK_ERR_INVALID);
    d.e.nclass = NCLASS;
    assert_int_equal(count_entries(dir, NULL), 0);

    /* a missing directory: MK_ERR_IO naming the file, nothing created */
    snprintf(dir, sizeof dir, "%s/missing/reports", g_tmp);
    assert_int_equal(mk_cls_report_write(&ctx, dir, &d.e), MK_ERR_IO);
    snprintf(path, sizeof path, "%s/classification.json", dir);
    if (!strstr(mk_ctx_errmsg(&ctx), path))
        fail_msg("message '%s' does not name %s", mk_ctx_errmsg(&ctx), path);
    snprintf(path, sizeof path, "%s/missing", g_tmp);
    assert_int_equal(count_entries(path, NULL), -1);

    /* classification.h5 cannot be replaced (a directory is in the way): MK_ERR_IO naming it;
     * JSON and CSV are whole, no temporary is left, the folder is untouched */
    snprintf(dir, sizeof dir, "%s/blocked", g_tmp);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/classification.h5", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(mk_cls_report_write(&ctx, dir, &d.e), MK_ERR_IO);
    if (!strstr(mk_ctx_errmsg(&ctx), path))
        fail_msg("message '%s' does not name %s", mk_ctx_errmsg(&ctx), path);
    assert_int_equal(count_entries(dir, ".tmp"), 0);
    assert_int_equal(count_entries(path, NULL), 0);
    assert_int_equal(sh("/usr/bin/python3 -c \"import json, sys; json.load(open(sys.argv[1]))\" "
                        "'%s/classification.json'",
                        dir),
                     0);
}

/* ------------------------------------------------------------------------------ heat map */

#define TW 64
#define TH 48

static void test_heatmap(void **state)
{
    (void)state;
    static uint8_t thumb[TW * TH * 3];
    for (int y = 0; y < TH; y++)
        for (int x = 0; x < TW; x++) {
            uint8_t *p = thumb + (y * TW + x) * 3;
            p[0] = (uint8_t)(3 * x);
            p[1] = (uint8_t)(5 * y);
            p[2] = (uint8_t)(100 + x);
        }
    /* 4 x 3 patches of 32 level-0 px (8 thumbnail px at scale 4) on [0,32) x [0,24) of the
     * thumbnail; patch k has probability k / 11: patch 0 (thumbnail 0..7 x 0..7) is 0, patch 11
     * (24..31 x 16..23) is 1 */
    int64_t xy[28];
    float prob[14];
    for (int k = 0; k < 12; k++) {
        xy[2 * k] = (k % 4) * 32;
        xy[2 * k + 1] = (k / 4) * 32;
        prob[k] = (float)k / 11;
    }
    /* two more far outside the slide (nothing drawn: the thumbnail stays as it is) */
    xy[24] = (int64_t)1 << 50;
    xy[25] = 0;
    xy[26] = -((int64_t)1 << 52);
    xy[27] = 40;
    prob[12] = prob[13] = 1;
    char path[700], raw[700];
    snprintf(path, sizeof path, "%s/heat.png", g_tmp);
    snprintf(raw, sizeof raw, "%s/thumb.rgb", g_tmp);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_status st = mk_cls_heatmap_png(&ctx, path, thumb, TW, TH, 4.0, 14, xy, 32, prob,
                                      "model A: P(tumour) on s1 \xff\xfe (bad UTF-8 kept out)");
    if (st != MK_OK)
        fail_msg("mk_cls_heatmap_png: %s", mk_ctx_errmsg(&ctx));
    assert_int_equal(mk_fs_write_atomic(&ctx, raw, thumb, sizeof thumb), MK_OK);
    const int W = MK_CLS_HEATMAP_MIN_W, H = MK_CLS_HEATMAP_TITLE_H + TH + MK_CLS_HEATMAP_BAR_H;
    assert_int_equal(sh("/usr/bin/python3 '%s' png '%s' '%s' %d %d %d %d %d 28 20 4 4 32 24",
                        checker(), path, raw, TW, TH, W, H, MK_CLS_HEATMAP_TITLE_H),
                     0);

    /* a wide thumbnail sets the width; no patches and no title is fine */
    static uint8_t wide[300 * 10 * 3];
    snprintf(path, sizeof path, "%s/wide.png", g_tmp);
    assert_int_equal(mk_cls_heatmap_png(&ctx, path, wide, 300, 10, 1, 0, NULL, 1, NULL, NULL),
                     MK_OK);
    cairo_surface_t *s = cairo_image_surface_create_from_png(path);
    assert_int_equal(cairo_surface_status(s), CAIRO_STATUS_SUCCESS);
    assert_int_equal(cairo_image_surface_get_width(s), 300);
    assert_int_equal(cairo_image_surface_get_height(s),
                     MK_CLS_HEATMAP_TITLE_H + 10 + MK_CLS_HEATMAP_BAR_H);
    cairo_surface_destroy(s);

    /* bad sizes: MK_ERR_INVALID, nothing written */
    char bad[700];
    snprintf(bad, sizeof bad, "%s/bad.png", g_tmp);
    struct {
        int tw, th;
        double scale;
        int64_t n, patch0;
        const int64_t *xy;
    } cases[] = {
        {0, TH, 4, 12, 32, xy},     {TW, -1, 4, 12, 32, xy}, {40000, TH, 4, 12, 32, xy},
        {TW, 32767, 4, 12, 32, xy}, {TW, TH, 0, 12, 32, xy}, {TW, TH, NAN, 12, 32, xy},
        {TW, TH, 4, -1, 32, xy},    {TW, TH, 4, 12, 0, xy},  {TW, TH, 4, 12, 32, NULL},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        st = mk_cls_heatmap_png(&ctx, bad, thumb, cases[k].tw, cases[k].th, cases[k].scale,
                                cases[k].n, cases[k].xy, cases[k].patch0, prob, "t");
        if (st != MK_ERR_INVALID)
            fail_msg("case %zu: status %d, expected MK_ERR_INVALID", k, (int)st);
        assert_non_null(strstr(mk_ctx_errmsg(&ctx), bad));
    }
    assert_int_equal(mk_cls_heatmap_png(&ctx, bad, NULL, TW, TH, 4, 12, xy, 32, prob, "t"),
                     MK_ERR_INVALID);
    assert_int_equal(count_entries(g_tmp, "bad.png"), 0);

    /* a missing folder: MK_ERR_IO naming the file */
    snprintf(bad, sizeof bad, "%s/nowhere/heat.png", g_tmp);
    assert_int_equal(mk_cls_heatmap_png(&ctx, bad, thumb, TW, TH, 4, 12, xy, 32, prob, "t"),
                     MK_ERR_IO);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), bad));
}

/* The HTML page: written from the same data as the report files, checked by
 * cls_report_check.py html against classification.json / .h5 (summary, slides, confusion, ROC
 * against numpy, embedded heat maps); then two classes (ROC per group); then bad input. */
static void test_report_html(void **state)
{
    (void)state;
    static data d;
    make_data(&d);
    char dir[600], hm[700], path[800], page[800];
    snprintf(dir, sizeof dir, "%s/html", g_tmp);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(hm, sizeof hm, "%s/heatmaps", dir);
    assert_int_equal(mkdir(hm, 0755), 0);
    snprintf(path, sizeof path, "%s/A", hm);
    assert_int_equal(mkdir(path, 0755), 0);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    /* model A's heat maps: 600 px wide (scaled down in the page); model B has none */
    static uint8_t thumb[600 * 90 * 3];
    for (size_t k = 0; k < sizeof thumb; k++)
        thumb[k] = (uint8_t)(k * 7);
    int64_t xy[2] = {0, 0};
    float pr[1] = {0.8f};
    for (int s = 0; s < NSLIDES; s++) {
        snprintf(path, sizeof path, "%s/A/%s.png", hm, SLIDES[s]);
        assert_int_equal(mk_cls_heatmap_png(&ctx, path, thumb, 600, 90, 1, 1, xy, 30, pr, "A"),
                         MK_OK);
    }
    assert_int_equal(mk_cls_report_write(&ctx, dir, &d.e), MK_OK);
    const char *files[2] = {"run/a.h5", "run/b.h5"};
    mk_cls_html_opts o;
    mk_cls_html_opts_default(&o);
    o.version = "test <&>";
    o.source = "run";
    o.split = "test";
    o.model_files = files;
    o.heatmap_dir = hm;
    o.heatmap_href = "heatmaps";
    snprintf(page, sizeof page, "%s/classification.html", dir);
    mk_status st = mk_cls_report_html(&ctx, &d.e, &o, page);
    if (st != MK_OK)
        fail_msg("mk_cls_report_html: %s", mk_ctx_errmsg(&ctx));
    assert_int_equal(sh("/usr/bin/python3 '%s' html '%s' '%s/classification.json' "
                        "'%s/classification.h5' A:2,B:0",
                        checker(), page, dir, dir),
                     0);
    char *text;
    size_t len;
    assert_int_equal(mk_fs_read_all(&ctx, page, &text, &len), MK_OK);
    assert_non_null(strstr(text, "test &lt;&amp;&gt;")); /* escaped */
    assert_non_null(strstr(text, "no heat map"));        /* model B's missing maps noted */
    assert_non_null(strstr(text, "href=\"heatmaps/B/s4.png\""));
    assert_null(strstr(text, "test <&>"));
    free(text);

    /* two classes: normal against the rest; ROC curves overall and per site */
    static data d2;
    make_data(&d2);
    static float p2[2][80 * 2];
    for (int j = 0; j < 2; j++) {
        for (int64_t i = 0; i < d2.n[j]; i++) {
            d2.truth[j][i] = d2.truth[j][i] > 0;
            p2[j][2 * i] = d2.prob[j][i * NCLASS];
            p2[j][2 * i + 1] = d2.prob[j][i * NCLASS + 1] + d2.prob[j][i * NCLASS + 2];
        }
        d2.m[j].prob = p2[j];
    }
    d2.e.nclass = 2;
    snprintf(dir, sizeof dir, "%s/html2", g_tmp);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(mk_cls_report_write(&ctx, dir, &d2.e), MK_OK);
    snprintf(page, sizeof page, "%s/classification.html", dir);
    o.heatmap_dir = NULL;
    o.heatmap_href = NULL;
    assert_int_equal(mk_cls_report_html(&ctx, &d2.e, &o, page), MK_OK);
    assert_int_equal(sh("/usr/bin/python3 '%s' html '%s' '%s/classification.json' "
                        "'%s/classification.h5' A:0,B:0",
                        checker(), page, dir, dir),
                     0);
    assert_int_equal(mk_fs_read_all(&ctx, page, &text, &len), MK_OK);
    assert_non_null(strstr(text, "data-scope=\"siteA\" data-class=\"1\""));
    free(text);

    /* bad input: nothing written */
    snprintf(page, sizeof page, "%s/bad.html", dir);
    o.heatmaps = 3;
    assert_int_equal(mk_cls_report_html(&ctx, &d2.e, &o, page), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "heat maps per model 3"));
    o.heatmaps = 2;
    d2.slide[1][3] = 9;
    assert_int_equal(mk_cls_report_html(&ctx, &d2.e, &o, page), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "B"));
    assert_int_equal(count_entries(dir, "bad"), 0);
}

static int setup(void **state)
{
    (void)state;
    return mk_test_tmp_make(g_tmp, sizeof g_tmp, "cls_report");
}

static int teardown(void **state)
{
    (void)state;
    mk_test_tmp_remove(g_tmp);
    cairo_debug_reset_static_data();
#ifdef MK_TEST_HAVE_FONTCONFIG
    FcFini();
#endif
    return 0;
}

int main(void)
{
    if (system("/usr/bin/python3 -c 'import numpy, h5py, PIL' > /dev/null 2>&1") != 0) {
        printf("FAIL: python3 with numpy, h5py and PIL is missing (declared in "
               "scripts/deps.list; 'make deps' as root)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_files),
        cmocka_unit_test(test_report_errors),
        cmocka_unit_test(test_heatmap),
        cmocka_unit_test(test_report_html),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
