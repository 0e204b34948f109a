/* Internals shared by the report/ sources (not part of the module's API). */
#ifndef MK_REPORT_INTERNAL_H
#define MK_REPORT_INTERNAL_H

#include "mk_report.h"

/* The run fields of an evaluation report: name of field k (NULL past the end) and its slot. */
const char *mk__eval_run_field_name(int k);
char **mk__eval_run_field(mk_eval_report *rep, int k);

#endif
