/* Stage adapters of `pipeline run` (rows of pipeline/run_stages.c). Each reads the validated config
 * and calls its stage with a plain parameter struct. */
#ifndef MK_RUN_STAGES_H
#define MK_RUN_STAGES_H

#include "mk_runner.h"

mk_status mk_run_synth(mk_run_env *env);
mk_status mk_run_translate(mk_run_env *env);
mk_status mk_run_cmedl(mk_run_env *env);
mk_status mk_run_baseline(mk_run_env *env);
mk_status mk_run_evaluate(mk_run_env *env);

/* Pre-run checks (pipeline/run_checks.c). */
mk_status mk_check_translate(mk_run_env *env);
mk_status mk_check_cmedl(mk_run_env *env);
mk_status mk_check_baseline(mk_run_env *env);
mk_status mk_check_evaluate(mk_run_env *env);

#endif
