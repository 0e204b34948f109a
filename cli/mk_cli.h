/* The `pipeline` command line: verbs registered in one table (pipeline/verbs.c).
 *
 * A verb handler receives the arguments after the verb name (argv[0] is the verb name) with the
 * global options (--quiet, --verbose, --log-json, --help) already removed. It returns a status;
 * main maps it to the exit code (0 ok, 1 runtime failure, 2 usage or configuration error) and
 * prints the context's message. Handlers print results on stdout and nothing else; diagnostics go
 * through mk_log on the context.
 */
#ifndef MK_CLI_H
#define MK_CLI_H

#include "../core/mk_log.h"
#include "../core/mk_status.h"

typedef struct mk_cli {
    mk_ctx *ctx;
    mk_console *console;
    const char *argv0;
} mk_cli;

typedef mk_status (*mk_verb_fn)(mk_cli *cli, int argc, char **argv);

typedef struct mk_verb {
    const char *name;
    const char *summary; /* one line for `pipeline help` */
    const char *usage;   /* "run CONFIG [--resume] ..." */
    const char *help;    /* options and details, printed by `pipeline help VERB` / `VERB --help` */
    mk_verb_fn run;
    int multi_rank; /* 1: runs on several MPI ranks (infer shards its cases); others refuse */
} mk_verb;

extern const mk_verb MK_VERBS[];
extern const int MK_VERB_COUNT;
const mk_verb *mk_cli_find_verb(const char *name);
void mk_cli_print_verb_help(FILE *out, const mk_verb *v);
void mk_cli_print_overview(FILE *out);

/* Small option scanner for verbs. Recognises "--name VALUE", "--name=VALUE" and flags.
 *   mk_args a; mk_args_init(&a, argc, argv);
 *   while (mk_args_next(&a)) {
 *       if (mk_args_is(&a, "--out")) { if (!(out = mk_args_value(&a))) return mk_args_error(&a,
 * ctx); } else if (mk_args_positional(&a)) ...a.arg... else return mk_args_unknown(&a, ctx);
 *   }
 */
typedef struct mk_args {
    int argc, i;
    char **argv;
    const char *arg;          /* current argument */
    const char *inline_value; /* value after '=' or NULL */
    char name[64];            /* option name without the value */
    int want_value_failed;
    int only_positional; /* after "--" */
} mk_args;

void mk_args_init(mk_args *a, int argc, char **argv);
int mk_args_next(mk_args *a);
int mk_args_is(mk_args *a, const char *name);
int mk_args_positional(const mk_args *a);
/* Value of the current option (inline or next argument); NULL if missing. */
const char *mk_args_value(mk_args *a);
mk_status mk_args_missing(mk_args *a, mk_ctx *ctx);
mk_status mk_args_unknown(mk_args *a, mk_ctx *ctx);
/* Parse helpers recording a usage error naming the option. */
mk_status mk_args_int(mk_ctx *ctx, const char *opt, const char *s, long long lo, long long hi,
                      long long *out);
mk_status mk_args_double(mk_ctx *ctx, const char *opt, const char *s, double lo, double hi,
                         double *out);

#endif
