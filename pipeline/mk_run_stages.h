/* Stage adapters of `pipeline run` (rows of pipeline/run_stages.c). Each binds the validated
 * config into its stage's structs (the parameter rows) and calls into stages/. */
#ifndef MK_RUN_STAGES_H
#define MK_RUN_STAGES_H

#include "../stages/mk_method.h"
#include "mk_runner.h"

mk_status mk_run_synth(mk_run_env *env);
/* Every method's stage (env->stage->method): bind, check, train with the shared loop. */
mk_status mk_run_method(mk_run_env *env);
mk_status mk_run_evaluate(mk_run_env *env);

/* Pre-run checks (pipeline/run_checks.c): the method's own rules (mk_method_check) and its data
 * needs against the manifest; evaluate's split and models. */
mk_status mk_check_method(mk_run_env *env);
mk_status mk_check_evaluate(mk_run_env *env);
/* The data itself, when the manifest exists and is final (mk_runner_data_pending): every row's
 * files exist, every label lies on its image's grid (headers only for NIfTI), and every value of
 * the label mapping (data.label, data.labels, or class c = value c) occurs in some label file of
 * the labelled train rows of each modality that a training stage from env->from on learns with
 * labels (each such label file is read once). MK_ERR_CONFIG naming the config FILE:LINE, the
 * manifest FILE:LINE and the column or key. */
mk_status mk_check_data(mk_run_env *env);

/* The shared part of every stage from the config: [data], [model], run.checkpoint_every and
 * run.log_every, env's seed, threads, run dir and resume. Errors name FILE:LINE and the key. */
mk_status mk_run_common(mk_run_env *env, mk_stage_common *c);
/* The shared part (mk_run_common) and env->stage's method config struct (cfg_size bytes, from
 * the sections it reads; caller frees *cfg, NULL on error). */
mk_status mk_run_method_bind(mk_run_env *env, mk_stage_common *c, void **cfg);
/* 1 when a method output is evaluated with this config: no `when`, or its boolean key true ("!key":
 * false). */
int mk_run_output_on(const mk_cfg *cfg, const mk_method_output *out);
/* Turn a stage error "section.key: what" into "FILE:LINE: key 'section.key': what". */
mk_status mk_run_keyed_err(mk_run_env *env, mk_status st);

#endif
