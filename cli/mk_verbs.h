/* Handlers of the `pipeline` verbs; each lives in pipeline/verb_<name>.c and is registered in
 * the table of pipeline/verbs.c. */
#ifndef MK_VERBS_H
#define MK_VERBS_H
#include "mk_cli.h"

mk_status mk_verb_run(mk_cli *cli, int argc, char **argv);
mk_status mk_verb_validate(mk_cli *cli, int argc, char **argv);
mk_status mk_verb_version(mk_cli *cli, int argc, char **argv);
mk_status mk_verb_tiles(mk_cli *cli, int argc, char **argv);
mk_status mk_verb_help(mk_cli *cli, int argc, char **argv);
mk_status mk_verb_info(mk_cli *cli, int argc, char **argv);
mk_status mk_verb_convert(mk_cli *cli, int argc, char **argv);
mk_status mk_verb_eval(mk_cli *cli, int argc, char **argv);
mk_status mk_verb_infer(mk_cli *cli, int argc, char **argv);
mk_status mk_verb_synth(mk_cli *cli, int argc, char **argv);
mk_status mk_verb_import(mk_cli *cli, int argc, char **argv);
mk_status mk_verb_plan(mk_cli *cli, int argc, char **argv);
mk_status mk_verb_report(mk_cli *cli, int argc, char **argv);

#endif
