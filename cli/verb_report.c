/* `pipeline report`: the HTML page for radiologists over evaluation reports (see the verb table
 * and docs/report.md). INPUTs are run directories (their reports/<model>.json, in the order of
 * reports/summary.json) or evaluation reports of `pipeline eval --json`. Everything is read and
 * checked before anything is written. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "../config/mk_toml.h"
#include "../core/mk_log.h"
#include "../report/mk_report.h"
#include "mk_verbs.h"

#ifndef MK_VERSION
#define MK_VERSION "unknown"
#endif

#define MAX_MODELS 16

typedef struct loaded {
    char name[32];
    char path[4200];
    mk_eval_report rep;
} loaded;

/* The model names of a run directory: reports/summary.json "models"[].name. */
static mk_status run_models(mk_ctx *ctx, const char *dir, char names[][32], int *n)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/reports/summary.json", dir);
    char *text = NULL;
    size_t len = 0;
    mk_status st = mk_fs_read_all(ctx, path, &text, &len);
    char cls[4200];
    snprintf(cls, sizeof cls, "%s/reports/classification.json", dir);
    if (st != MK_OK && mk_fs_is_file(cls))
        return mk_err(ctx, MK_ERR_NOT_FOUND,
                      "report: %s evaluated patch classifiers only (reports/classification.json): "
                      "their page is reports/classification.html, written by its evaluate stage "
                      "(evaluate.report = true); this verb draws segmentation reports",
                      dir);
    if (st != MK_OK)
        return mk_err(ctx, MK_ERR_NOT_FOUND,
                      "report: %s is a folder but has no reports/summary.json (expected a run "
                      "directory whose evaluate stage ran, or evaluation report files)",
                      dir);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *models = root ? cJSON_GetObjectItemCaseSensitive(root, "models") : NULL;
    if (!cJSON_IsArray(models)) {
        cJSON_Delete(root);
        return mk_err(ctx, MK_ERR_FORMAT, "%s: field 'models': expected an array of models", path);
    }
    *n = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, models)
    {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(m, "name");
        if (!cJSON_IsString(nm) || !nm->valuestring[0] || strlen(nm->valuestring) >= 32) {
            cJSON_Delete(root);
            return mk_err(ctx, MK_ERR_FORMAT,
                          "%s: field 'models[%d].name': expected a model name (1-31 characters)",
                          path, *n);
        }
        if (*n == MAX_MODELS) {
            cJSON_Delete(root);
            return mk_err(ctx, MK_ERR_FORMAT, "%s: more than %d models", path, MAX_MODELS);
        }
        snprintf(names[(*n)++], 32, "%s", nm->valuestring);
    }
    cJSON_Delete(root);
    return MK_OK;
}

/* A number of a TOML value (integer or float). */
static int toml_num(const mk_toml_value *v, double *out)
{
    if (v && mk_toml_type_of(v) == MK_TOML_INTEGER)
        *out = (double)mk_toml_int(v);
    else if (v && mk_toml_type_of(v) == MK_TOML_FLOAT)
        *out = mk_toml_float(v);
    else
        return 0;
    return 1;
}

/* The page's settings of a run (its config.resolved.toml: evaluate.report_window, report_worst,
 * bootstrap), so `pipeline report RUN` draws the page the evaluate stage drew. Each missing or
 * unreadable one keeps its default. */
static void run_settings(const char *dir, mk_report_html_opts *o, int *window_set)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.resolved.toml", dir);
    if (!mk_fs_is_file(path))
        return;
    mk_ctx quiet;
    mk_ctx_init(&quiet);
    mk_toml_doc *doc = NULL;
    if (mk_toml_parse_file(&quiet, path, &doc) != MK_OK)
        return;
    const mk_toml_value *ev = mk_toml_table_get(mk_toml_root(doc), "evaluate");
    const mk_toml_value *w = ev ? mk_toml_table_get(ev, "report_window") : NULL;
    double lo, hi, v;
    if (w && mk_toml_type_of(w) == MK_TOML_ARRAY && mk_toml_array_len(w) == 2 &&
        toml_num(mk_toml_array_at(w, 0), &lo) && toml_num(mk_toml_array_at(w, 1), &hi) && lo < hi) {
        o->window[0] = lo;
        o->window[1] = hi;
        *window_set = 2; /* the run's: for CT reports (others stay auto) */
    }
    if (ev && toml_num(mk_toml_table_get(ev, "report_worst"), &v) && v >= 0 && v <= 1000) {
        o->worst = (int)v;
        o->best = o->worst > 0 ? 1 : 0;
    }
    if (ev && toml_num(mk_toml_table_get(ev, "bootstrap"), &v) && v >= 100 && v <= 1e6)
        o->bootstrap = (int)v;
    mk_toml_free(doc);
}

static void stem_of(const char *path, char *buf, size_t n)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, n, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf)
        *dot = 0;
}

static mk_status parse_window(mk_ctx *ctx, const char *v, double w[2], int *autow)
{
    if (!strcmp(v, "auto")) {
        *autow = 1;
        return MK_OK;
    }
    char *end;
    w[0] = strtod(v, &end);
    if (end == v || *end != ',')
        goto bad;
    const char *s = end + 1;
    w[1] = strtod(s, &end);
    if (end == s || *end || !(w[0] < w[1]))
        goto bad;
    *autow = 0;
    return MK_OK;
bad:
    return mk_err(ctx, MK_ERR_USAGE,
                  "report: --window %s: expected LOW,HIGH with LOW < HIGH (e.g. -160,240 for "
                  "W400/L40) or auto",
                  v);
}

mk_status mk_verb_report(mk_cli *cli, int argc, char **argv)
{
    mk_ctx *ctx = cli->ctx;
    const char *out = NULL, *json = NULL, *inputs[MAX_MODELS], *names[MAX_MODELS];
    int ninputs = 0, nnames = 0, window_set = 0;
    mk_report_html_opts o;
    mk_report_html_opts_default(&o);
    o.version = MK_VERSION;
    mk_status st = MK_OK;
    /* a run directory's own page settings first (the options below override them) */
    for (int k = 1; k < argc; k++)
        if (argv[k][0] != '-' && mk_fs_is_dir(argv[k]) && (k == 1 || argv[k - 1][0] != '-')) {
            run_settings(argv[k], &o, &window_set);
            break;
        }
    mk_args a;
    mk_args_init(&a, argc, argv);
    while (st == MK_OK && mk_args_next(&a)) {
        const char *v = NULL;
        long long iv;
        if (mk_args_is(&a, "-o") || mk_args_is(&a, "--out")) {
            if (!(out = mk_args_value(&a)))
                st = mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--json")) {
            if (!(json = mk_args_value(&a)))
                st = mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--images")) {
            if (!(o.images_dir = mk_args_value(&a)))
                st = mk_args_missing(&a, ctx);
            else if (!mk_fs_is_dir(o.images_dir))
                st = mk_err(ctx, MK_ERR_USAGE, "report: --images %s: expected a folder",
                            o.images_dir);
        } else if (mk_args_is(&a, "--title")) {
            if (!(o.title = mk_args_value(&a)))
                st = mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--name")) {
            if (!(v = mk_args_value(&a)))
                st = mk_args_missing(&a, ctx);
            else if (!*v || strlen(v) >= 32)
                st = mk_err(ctx, MK_ERR_USAGE, "report: --name '%s': expected 1-31 characters", v);
            else if (nnames == MAX_MODELS)
                st = mk_err(ctx, MK_ERR_USAGE, "report: at most %d --name", MAX_MODELS);
            else
                names[nnames++] = v;
        } else if (mk_args_is(&a, "--window")) {
            if (!(v = mk_args_value(&a)))
                st = mk_args_missing(&a, ctx);
            else {
                st = parse_window(ctx, v, o.window, &o.window_auto);
                window_set = 1;
            }
        } else if (mk_args_is(&a, "--worst") || mk_args_is(&a, "--best")) {
            int worst = mk_args_is(&a, "--worst");
            if (!(v = mk_args_value(&a)))
                st = mk_args_missing(&a, ctx);
            else if ((st = mk_args_int(ctx, worst ? "--worst" : "--best", v, 0, 1000, &iv)) ==
                     MK_OK)
                *(worst ? &o.worst : &o.best) = (int)iv;
        } else if (mk_args_is(&a, "--bootstrap")) {
            if (!(v = mk_args_value(&a)))
                st = mk_args_missing(&a, ctx);
            else if ((st = mk_args_int(ctx, "--bootstrap", v, 100, 1000000, &iv)) == MK_OK)
                o.bootstrap = (int)iv;
        } else if (mk_args_is(&a, "--seed")) {
            if (!(v = mk_args_value(&a)))
                st = mk_args_missing(&a, ctx);
            else if ((st = mk_args_int(ctx, "--seed", v, 0, 9007199254740991LL, &iv)) == MK_OK)
                o.seed = (uint64_t)iv;
        } else if (mk_args_positional(&a)) {
            if (ninputs == MAX_MODELS)
                st = mk_err(ctx, MK_ERR_USAGE, "report: at most %d inputs", MAX_MODELS);
            else
                inputs[ninputs++] = a.arg;
        } else {
            st = mk_args_unknown(&a, ctx);
        }
    }
    if (st != MK_OK)
        return st;
    if (ninputs == 0)
        return mk_err(ctx, MK_ERR_USAGE,
                      "report: expected a run directory or evaluation reports (pipeline eval "
                      "--json); see 'pipeline help report'");
    /* what to read: a run directory's models, or the files as given */
    loaded *L = calloc(MAX_MODELS, sizeof *L);
    if (!L)
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    int n = 0, run_dir = -1;
    for (int k = 0; k < ninputs && st == MK_OK; k++) {
        if (mk_fs_is_dir(inputs[k])) {
            char rn[MAX_MODELS][32];
            int nr = 0;
            if ((st = run_models(ctx, inputs[k], rn, &nr)) != MK_OK)
                break;
            if (run_dir < 0)
                run_dir = k;
            for (int q = 0; q < nr && st == MK_OK; q++) {
                if (n == MAX_MODELS) {
                    st = mk_err(ctx, MK_ERR_USAGE, "report: more than %d models", MAX_MODELS);
                    break;
                }
                snprintf(L[n].name, sizeof L[n].name, "%s", rn[q]);
                snprintf(L[n].path, sizeof L[n].path, "%s/reports/%s.json", inputs[k], rn[q]);
                n++;
            }
        } else if (mk_fs_is_file(inputs[k])) {
            if (n == MAX_MODELS) {
                st = mk_err(ctx, MK_ERR_USAGE, "report: more than %d models", MAX_MODELS);
                break;
            }
            stem_of(inputs[k], L[n].name, sizeof L[n].name);
            snprintf(L[n].path, sizeof L[n].path, "%s", inputs[k]);
            n++;
        } else {
            st = mk_err(ctx, MK_ERR_NOT_FOUND, "report: %s: no such file or folder", inputs[k]);
        }
    }
    if (st == MK_OK && nnames) {
        if (nnames != n)
            st = mk_err(ctx, MK_ERR_USAGE,
                        "report: %d --name for %d models: give one name per model, in order",
                        nnames, n);
        for (int i = 0; st == MK_OK && i < n; i++)
            snprintf(L[i].name, sizeof L[i].name, "%s", names[i]);
    }
    for (int i = 0; st == MK_OK && i < n; i++)
        for (int k = 0; k < i; k++)
            if (!strcmp(L[i].name, L[k].name))
                st = mk_err(ctx, MK_ERR_USAGE,
                            "report: two models are named '%s' (%s and %s): name them with "
                            "--name",
                            L[i].name, L[k].path, L[i].path);
    char outbuf[4200];
    if (st == MK_OK && !out) {
        if (run_dir < 0)
            st = mk_err(ctx, MK_ERR_USAGE,
                        "report: expected -o REPORT.html (the default, RUN/reports/report.html, "
                        "needs a run directory)");
        else {
            snprintf(outbuf, sizeof outbuf, "%s/reports/report.html", inputs[run_dir]);
            out = outbuf;
        }
    }
    if (st == MK_OK && mk_fs_is_dir(out))
        st = mk_err(ctx, MK_ERR_USAGE, "report: -o %s: expected a file name, got a folder", out);
    char odir[4200];
    if (st == MK_OK) {
        mk_fs_dirname(out, odir, sizeof odir);
        if (!mk_fs_is_dir(odir))
            st =
                mk_err(ctx, MK_ERR_NOT_FOUND, "report: -o %s: folder %s does not exist", out, odir);
    }
    double t0 = mk_now_s();
    for (int i = 0; st == MK_OK && i < n; i++) {
        st = mk_report_eval_read(ctx, L[i].path, &L[i].rep);
        if (st == MK_OK && L[i].rep.ncases == 0)
            st = mk_err(ctx, MK_ERR_FORMAT, "%s: field 'cases': no case to report", L[i].path);
        if (st != MK_OK)
            mk_err_prefix(ctx, "report");
    }
    mk_report_model rm[MAX_MODELS];
    for (int i = 0; i < n; i++)
        rm[i] = (mk_report_model){L[i].name, &L[i].rep};
    /* the panels' window: CT reports at W400/L40 (or --window), anything else auto */
    if (st == MK_OK && window_set != 1) {
        const char *mod = L[0].rep.modality;
        o.window_auto = !(mod && (!strcmp(mod, "CT") || !strcmp(mod, "ct")));
    }
    char src[4200] = "";
    for (int k = 0; k < ninputs; k++) {
        size_t len = strlen(src);
        snprintf(src + len, sizeof src - len, "%s%s", k ? ", " : "", inputs[k]);
    }
    o.source = src;
    mk_report_comparison *cmp = NULL;
    int ncmp = 0;
    if (st == MK_OK)
        st = mk_report_compare(ctx, rm, n, o.bootstrap, o.seed, &cmp, &ncmp);
    if (st == MK_OK)
        st = mk_report_html(ctx, &o, rm, n, cmp, ncmp, out);
    if (st == MK_OK && json) {
        mk_report_summary_info info = {L[0].rep.split ? L[0].rep.split : "",
                                       L[0].rep.convention,
                                       L[0].rep.tolerance_mm,
                                       L[0].rep.window_blend &&
                                           !strcmp(L[0].rep.window_blend, "uniform"),
                                       L[0].rep.postprocess && strcmp(L[0].rep.postprocess, "none"),
                                       cmp,
                                       ncmp};
        mk_report_model_summary *sum = calloc((size_t)n, sizeof *sum);
        if (!sum)
            st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
        for (int i = 0; st == MK_OK && i < n; i++)
            st = mk_report_model_summarise(ctx, &L[i].rep, L[i].name, -1, &sum[i]);
        if (st == MK_OK)
            st = mk_report_summary_json(ctx, &info, sum, n, json);
        free(sum);
    }
    if (st == MK_OK) {
        int cases = 0;
        for (int i = 0; i < n; i++)
            cases += L[i].rep.ncases;
        printf("%s: %d model(s), %d case evaluations, %d paired comparison(s), %.2f s\n", out, n,
               cases, ncmp, mk_now_s() - t0);
        for (int k = 0; k < ncmp; k++)
            printf("  %s vs %s, %s: n %d, mean Dice difference %+.4f (95%% CI %+.4f to %+.4f), "
                   "Wilcoxon p %.4g (%s), Holm %.4g, %d/%d/%d wins/ties/losses\n",
                   cmp[k].a, cmp[k].b, cmp[k].structure, cmp[k].n, cmp[k].mean_diff, cmp[k].ci95[0],
                   cmp[k].ci95[1], cmp[k].wilcoxon_p, cmp[k].exact ? "exact" : "normal",
                   cmp[k].p_holm, cmp[k].wins, cmp[k].ties, cmp[k].losses);
        if (json)
            printf("%s: the same figures as JSON\n", json);
    }
    free(cmp);
    for (int i = 0; i < n; i++)
        mk_eval_report_clear(&L[i].rep);
    free(L);
    return st;
}
