/* The method registry: one row per method (stages/method_<name>.c), indexed by mk_method_id.
 * The config schema, the stage table of `pipeline run`, the pre-run checks, evaluate and the
 * contract tests all loop over it; adding a method is one file and one row here. */
#include <string.h>

#include "mk_method.h"

extern const mk_method mk_method_translate, mk_method_cmedl, mk_method_baseline,
    mk_method_supervised, mk_method_coteach_teacher, mk_method_coteach, mk_method_coteach_tiny,
    mk_method_leuda, mk_method_leuda_source, mk_method_histo_cls, mk_method_histo_kd,
    mk_method_histo_synth, mk_method_histo_meta;

const mk_method *const MK_METHODS[] = {
    [MK_METHOD_TRANSLATE] = &mk_method_translate,
    [MK_METHOD_CMEDL] = &mk_method_cmedl,
    [MK_METHOD_BASELINE] = &mk_method_baseline,
    [MK_METHOD_SUPERVISED] = &mk_method_supervised,
    [MK_METHOD_COTEACH_TEACHER] = &mk_method_coteach_teacher,
    [MK_METHOD_COTEACH] = &mk_method_coteach,
    [MK_METHOD_COTEACH_TINY] = &mk_method_coteach_tiny,
    [MK_METHOD_LEUDA] = &mk_method_leuda,
    [MK_METHOD_LEUDA_SOURCE] = &mk_method_leuda_source,
    [MK_METHOD_HISTO_CLS] = &mk_method_histo_cls,
    [MK_METHOD_HISTO_KD] = &mk_method_histo_kd,
    [MK_METHOD_HISTO_SYNTH] = &mk_method_histo_synth,
    [MK_METHOD_HISTO_META] = &mk_method_histo_meta,
};
/* the header declares MK_METHODS[MK_METHOD_COUNT]: a missing row is a conflicting type */
_Static_assert(sizeof MK_METHODS / sizeof MK_METHODS[0] == MK_METHOD_COUNT,
               "one registry row per mk_method_id");

const mk_method *mk_method_find(const char *name)
{
    for (int i = 0; i < MK_METHOD_COUNT; i++)
        if (MK_METHODS[i] && strcmp(MK_METHODS[i]->name, name) == 0)
            return MK_METHODS[i];
    return NULL;
}
