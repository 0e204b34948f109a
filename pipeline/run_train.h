/* Shared config -> parameter-struct translation of the training stage adapters
 * (run_translate.c, run_cmedl.c, run_baseline.c). */
#ifndef MK_RUN_TRAIN_H
#define MK_RUN_TRAIN_H

#include "../stages/mk_stages.h"
#include "mk_runner.h"

/* Fill c from [run], [data] and [model] (plus env's seed, threads, run dir, resume), tp from
 * [translate] and cp from [cmedl] (either may be NULL). MK_ERR_CONFIG naming the key on values the
 * stages cannot use. */
mk_status mk_run_train_params(mk_run_env *env, mk_stage_common *c, mk_translate_params *tp,
                              mk_cmedl_params *cp);

#endif
