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

#endif
