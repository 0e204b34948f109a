/* Internals shared by the report/ sources (not part of the module's API). */
#ifndef MK_REPORT_INTERNAL_H
#define MK_REPORT_INTERNAL_H

#include "mk_report.h"

/* The run fields of an evaluation report: name of field k (NULL past the end) and its slot. */
const char *mk__eval_run_field_name(int k);
char **mk__eval_run_field(mk_eval_report *rep, int k);

/* The name of structure j of a report: its label name, or "label_<value>" when it has none (the
 * one rule of summary.json, summary.md, the comparisons and the HTML page). */
void mk__eval_structure_name(const mk_eval_report *rep, int j, char *buf, size_t n);

/* HTML pieces shared by the pages (report/html.c): text escaped for HTML; a number with fixed
 * decimals ("&ndash;" for NaN, infinity signs); a table cell's sort key (data-v="..."); bytes as
 * base64 (data URIs); the pages' style sheet and the table-sorting script. */
#include <stdio.h>
void mk__html_esc(FILE *f, const char *s);
void mk__html_num(FILE *f, double v, int dec);
void mk__html_key(FILE *f, double v);
void mk__html_base64(FILE *f, const unsigned char *p, size_t n);
extern const char mk__html_css[];
extern const char mk__html_js[];

/* The checks of mk_cls_report_write (report/cls_report.c), where names the output. */
struct mk_cls_eval;
mk_status mk__cls_validate(mk_ctx *ctx, const char *where, const struct mk_cls_eval *e);

/* PNG bytes collected in memory: a cairo_write_func_t over an mk__png_buf (include cairo.h
 * first). On a failed allocation nomem is set and the write fails. */
typedef struct mk__png_buf {
    unsigned char *p;
    size_t n, cap;
    int nomem;
} mk__png_buf;
#ifdef CAIRO_H
cairo_status_t mk__png_buf_write(void *closure, const unsigned char *data, unsigned int length);
#endif

#endif
