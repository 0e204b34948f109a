/* Stage adapter: `baseline` trains the CMEDL student on CT alone ([baseline], with the batch,
 * learning rate and loss of [cmedl]). */
#include "mk_run_stages.h"
#include "run_train.h"

mk_status mk_run_baseline(mk_run_env *env)
{
    mk_stage_common c;
    mk_cmedl_params cp;
    mk_status st = mk_run_train_params(env, &c, NULL, &cp);
    if (st != MK_OK)
        return st;
    return mk_stage_baseline(env->ctx, &c, &cp, (int)mk_cfg_int(env->cfg, "baseline.iterations"),
                             NULL);
}
