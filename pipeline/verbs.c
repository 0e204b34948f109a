/* The verb table of `pipeline`: one row per verb. Add a verb by adding a row here and a handler in
 * pipeline/verb_<name>.c declared in mk_verbs.h. */
#include <stdio.h>
#include <string.h>

#include "mk_verbs.h"

#define MK_EXIT_CODES_HELP                                                                          \
    "Exit codes: 0 success, 1 runtime failure (I/O, data, training), 2 usage or configuration error."

const mk_verb MK_VERBS[] = {
    {"run", "run the stages of a config (training, inference, evaluation)",
     "run CONFIG [--resume] [--out DIR] [--seed N] [--threads N] [--dry-run]",
     "Validates CONFIG, then runs its stages in order inside the run directory.\n"
     "  --out DIR      run directory (overrides [run].out_dir)\n"
     "  --seed N       master seed (overrides [run].seed)\n"
     "  --threads N    worker threads (overrides [run].threads)\n"
     "  --resume       continue an interrupted run from its last checkpoint\n"
     "  --dry-run      validate and print the resolved plan, write nothing",
     mk_verb_run},
    {"validate", "check a config against the schema without running it",
     "validate CONFIG [--explain] [--print]",
     "Parses CONFIG as TOML 1.0 and checks every key against the schema: unknown keys (with a\n"
     "'did you mean' suggestion), types, ranges, choices, required keys and input paths.\n"
     "  --explain      print every section and key of the schema with type, default and meaning\n"
     "  --print        print the resolved config (defaults filled in) as TOML",
     mk_verb_validate},
    {"version", "print the version and the libraries medkd was built with", "version", "", mk_verb_version},
    {"help", "list the verbs, or explain one", "help [VERB]", "", mk_verb_help},
};
const int MK_VERB_COUNT = (int)(sizeof MK_VERBS / sizeof MK_VERBS[0]);

const mk_verb *mk_cli_find_verb(const char *name)
{
    for (int i = 0; i < MK_VERB_COUNT; i++)
        if (strcmp(MK_VERBS[i].name, name) == 0)
            return &MK_VERBS[i];
    return NULL;
}

void mk_cli_print_verb_help(FILE *out, const mk_verb *v)
{
    fprintf(out, "usage: pipeline %s\n\n%s.\n", v->usage, v->summary);
    if (v->help && *v->help)
        fprintf(out, "\n%s\n", v->help);
    fprintf(out,
            "\nGlobal options: --quiet, --verbose, --log-json (log lines as JSON), -h/--help.\n%s\n",
            MK_EXIT_CODES_HELP);
}

void mk_cli_print_overview(FILE *out)
{
    fprintf(out, "usage: pipeline [--quiet|--verbose] [--log-json] VERB [ARGS...]\n\n"
                 "medkd: medical-image segmentation and knowledge distillation.\n\nVerbs:\n");
    for (int i = 0; i < MK_VERB_COUNT; i++)
        fprintf(out, "  %-10s %s\n", MK_VERBS[i].name, MK_VERBS[i].summary);
    fprintf(out, "\n'pipeline help VERB' or 'pipeline VERB --help' explains one verb.\n%s\n",
            MK_EXIT_CODES_HELP);
}

mk_status mk_verb_help(mk_cli *cli, int argc, char **argv)
{
    if (argc < 2) {
        mk_cli_print_overview(stdout);
        return MK_OK;
    }
    if (argc > 2)
        return mk_err(cli->ctx, MK_ERR_USAGE, "help: expected at most one verb name");
    const mk_verb *v = mk_cli_find_verb(argv[1]);
    if (!v)
        return mk_err(cli->ctx, MK_ERR_USAGE, "help: unknown verb '%s' (see 'pipeline help')", argv[1]);
    mk_cli_print_verb_help(stdout, v);
    return MK_OK;
}
