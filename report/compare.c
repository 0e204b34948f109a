/* Paired comparison of models scored on the same cases (mk_report_compare, mk_report.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "report_internal.h"
#include "mk_stats.h"

static int find_label(const mk_eval_report *r, int64_t label)
{
    for (int j = 0; j < r->nlabels; j++)
        if (r->labels[j] == label)
            return j;
    return -1;
}

static int find_case(const mk_eval_report *r, const char *id)
{
    for (int i = 0; i < r->ncases; i++)
        if (!strcmp(r->cases[i].id, id))
            return i;
    return -1;
}

mk_status mk_report_compare(mk_ctx *ctx, const mk_report_model *models, int n, int B, uint64_t seed,
                            mk_report_comparison **out, int *nout)
{
    *out = NULL;
    *nout = 0;
    int cap = 0;
    for (int i = 0; i < n; i++)
        for (int k = i + 1; k < n; k++)
            cap += models[i].rep->nlabels;
    if (cap == 0)
        return MK_OK;
    mk_report_comparison *cmp = calloc((size_t)cap, sizeof *cmp);
    int maxn = 0;
    for (int i = 0; i < n; i++)
        if (models[i].rep->ncases > maxn)
            maxn = models[i].rep->ncases;
    double *d = malloc(sizeof *d * (size_t)(maxn > 0 ? maxn : 1));
    int *pair = malloc(sizeof *pair * (size_t)(maxn > 0 ? maxn : 1));
    int *ca = malloc(sizeof *ca * (size_t)(maxn > 0 ? maxn : 1));
    double *p = malloc(sizeof *p * (size_t)cap);
    if (!cmp || !d || !pair || !ca || !p) {
        free(cmp);
        free(d);
        free(pair);
        free(ca);
        free(p);
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    }
    mk_status st = MK_OK;
    int m = 0;
    for (int i = 0; i < n && st == MK_OK; i++)
        for (int k = i + 1; k < n && st == MK_OK; k++) {
            const mk_eval_report *A = models[i].rep, *Bv = models[k].rep;
            /* the cases both have, in a's order: a's case ca[q] is b's case pair[q] */
            int np = 0;
            for (int c = 0; c < A->ncases; c++) {
                int o = find_case(Bv, A->cases[c].id);
                if (o >= 0) {
                    ca[np] = c;
                    pair[np++] = o;
                }
            }
            if (np == 0)
                continue;
            int first = m;
            for (int j = 0; j < A->nlabels && st == MK_OK; j++) {
                int jb = find_label(Bv, A->labels[j]);
                if (jb < 0)
                    continue;
                mk_report_comparison *r = &cmp[m];
                snprintf(r->a, sizeof r->a, "%s", models[i].name);
                snprintf(r->b, sizeof r->b, "%s", models[k].name);
                r->label = A->labels[j];
                mk__eval_structure_name(A, j, r->structure, sizeof r->structure);
                r->n_excluded = (A->ncases - np) + (Bv->ncases - np);
                /* a NaN Dice (both-empty under the "nan" policy) leaves the pair out */
                double sum = 0;
                int nd = 0;
                for (int q = 0; q < np; q++) {
                    double x = A->cases[ca[q]].res[j].dice - Bv->cases[pair[q]].res[jb].dice;
                    if (isnan(x)) {
                        r->n_nan++;
                        continue;
                    }
                    d[nd++] = x;
                    sum += x;
                    if (x > 0)
                        r->wins++;
                    else if (x < 0)
                        r->losses++;
                    else
                        r->ties++;
                }
                r->n = nd;
                r->mean_diff = nd ? sum / nd : NAN;
                st = mk_stats_bootstrap_mean_ci(ctx, d, nd, B, seed, 0.95, r->ci95);
                mk_stats_wilcoxon w;
                if (st == MK_OK)
                    st = mk_stats_wilcoxon_test(ctx, d, nd, &w);
                if (st != MK_OK)
                    break;
                r->wilcoxon_p = w.p;
                r->exact = w.exact;
                r->n_zero = w.n_zero;
                m++;
            }
            /* Holm over the structures of this pair */
            for (int q = first; q < m; q++)
                p[q - first] = cmp[q].wilcoxon_p;
            mk_stats_holm(p, m - first, p);
            for (int q = first; q < m; q++)
                cmp[q].p_holm = p[q - first];
        }
    free(d);
    free(pair);
    free(ca);
    free(p);
    if (st != MK_OK) {
        free(cmp);
        return st;
    }
    *out = cmp;
    *nout = m;
    return MK_OK;
}

static void jnum(FILE *f, double v)
{
    if (isnan(v))
        fputs("\"nan\"", f);
    else if (isinf(v))
        fputs(v > 0 ? "\"inf\"" : "\"-inf\"", f);
    else
        fprintf(f, "%.17g", v);
}

void mk_report_comparisons_json(FILE *f, const mk_report_comparison *cmp, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        const mk_report_comparison *c = &cmp[i];
        fputs(i ? ",\n  {\"a\": " : "\n  {\"a\": ", f);
        mk_json_put(f, c->a);
        fputs(", \"b\": ", f);
        mk_json_put(f, c->b);
        fprintf(f, ", \"metric\": \"dice\", \"structure\": %lld, \"name\": ", (long long)c->label);
        mk_json_put(f, c->structure);
        fprintf(f, ", \"n\": %d, \"n_excluded\": %d, \"n_nan\": %d, \"mean_diff\": ", c->n,
                c->n_excluded, c->n_nan);
        jnum(f, c->mean_diff);
        fputs(", \"ci95\": [", f);
        jnum(f, c->ci95[0]);
        fputs(", ", f);
        jnum(f, c->ci95[1]);
        fputs("], \"wilcoxon_p\": ", f);
        jnum(f, c->wilcoxon_p);
        fprintf(f, ", \"wilcoxon_method\": \"%s\", \"n_zero\": %d, \"p_holm\": ",
                c->exact ? "exact" : "normal", c->n_zero);
        jnum(f, c->p_holm);
        fprintf(f, ", \"wins\": %d, \"ties\": %d, \"losses\": %d}", c->wins, c->ties, c->losses);
    }
    fputs(n ? "\n]" : "]", f);
}
