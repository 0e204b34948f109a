/* Stage adapter: `translate` trains the unpaired CT->MRI translator ([translate]). */
#include "mk_run_stages.h"
#include "run_train.h"

mk_status mk_run_translate(mk_run_env *env)
{
    mk_stage_common c;
    mk_translate_params tp;
    mk_status st = mk_run_train_params(env, &c, &tp, NULL);
    if (st != MK_OK)
        return st;
    return mk_stage_translate(env->ctx, &c, &tp, NULL);
}
