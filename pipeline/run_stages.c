/* The stage table of `pipeline run`: one row per stage available in this build. */
#include <string.h>

#include "mk_run_stages.h"

const mk_stage_entry MK_STAGES[] = {
    {"synth", "generate phantom data with exact labels", mk_run_synth, NULL},
    {"translate", "unpaired CT->MRI translation (CycleGAN-style)", mk_run_translate,
     mk_check_translate},
    {"cmedl", "translator + MRI teacher + CT student with hint losses", mk_run_cmedl,
     mk_check_cmedl},
    {"baseline", "the CMEDL student trained on CT alone", mk_run_baseline, mk_check_baseline},
    {"evaluate", "masks and metrics of the trained students on the evaluation split",
     mk_run_evaluate, mk_check_evaluate},
    {NULL, NULL, NULL, NULL}, /* sentinel; stage rows are added above it as stages land */
};
const int MK_STAGE_COUNT = (int)(sizeof MK_STAGES / sizeof MK_STAGES[0]) - 1;

const mk_stage_entry *mk_runner_find_stage(const char *name)
{
    for (int i = 0; i < MK_STAGE_COUNT; i++)
        if (strcmp(MK_STAGES[i].name, name) == 0)
            return &MK_STAGES[i];
    return NULL;
}
