#include "mk_verbs.h"

/* Replaced by the config schema implementation. */
mk_status mk_verb_run(mk_cli *cli, int argc, char **argv)
{
    return mk_err(cli->ctx, MK_ERR_UNSUPPORTED, "run: not implemented yet");
}

mk_status mk_verb_validate(mk_cli *cli, int argc, char **argv)
{
    return mk_err(cli->ctx, MK_ERR_UNSUPPORTED, "validate: not implemented yet");
}
