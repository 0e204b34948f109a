/* The stage table of `pipeline run`: one row per stage available in this build. */
#include <string.h>

#include "mk_run_stages.h"

const mk_stage_entry MK_STAGES[] = {
    {"synth", "generate phantom data with exact labels", mk_run_synth},
    {NULL, NULL, NULL}, /* sentinel; stage rows are added above it as stages land */
};
const int MK_STAGE_COUNT = (int)(sizeof MK_STAGES / sizeof MK_STAGES[0]) - 1;

const mk_stage_entry *mk_runner_find_stage(const char *name)
{
    for (int i = 0; i < MK_STAGE_COUNT; i++)
        if (strcmp(MK_STAGES[i].name, name) == 0)
            return &MK_STAGES[i];
    return NULL;
}
