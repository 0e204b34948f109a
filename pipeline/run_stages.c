/* The stage table of `pipeline run`: synth, one stage per registered method (stages/methods.c, in
 * the registry's order) and evaluate. No stage name is compared anywhere else: the runner, the
 * pre-run checks and evaluate look stages up here and ask the method what it needs and produces. */
#include <string.h>

#include "../stages/mk_method.h"
#include "mk_run_stages.h"

static mk_stage_entry g_stages[MK_METHOD_COUNT + 2];
static int g_n;

const mk_stage_entry *mk_runner_stages(int *n)
{
    if (g_n == 0) {
        g_stages[g_n++] = (mk_stage_entry){
            "synth", "generate phantom data with exact labels", mk_run_synth, NULL, NULL, 1};
        for (int i = 0; i < MK_METHOD_COUNT; i++)
            g_stages[g_n++] =
                (mk_stage_entry){MK_METHODS[i]->name, MK_METHODS[i]->summary, mk_run_method,
                                 mk_check_method,     MK_METHODS[i],          0};
        g_stages[g_n++] =
            (mk_stage_entry){"evaluate",
                             "masks and metrics of the trained models on the evaluation split",
                             mk_run_evaluate,
                             mk_check_evaluate,
                             NULL,
                             0};
    }
    if (n)
        *n = g_n;
    return g_stages;
}

const mk_stage_entry *mk_runner_find_stage(const char *name)
{
    int n;
    const mk_stage_entry *s = mk_runner_stages(&n);
    for (int i = 0; i < n; i++)
        if (strcmp(s[i].name, name) == 0)
            return &s[i];
    return NULL;
}
