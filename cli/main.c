/* `pipeline`: the medkd command line. The only place that maps a status to an exit code. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mk_cli.h"
#include "../pipeline/mk_mpi.h"
#include "../pipeline/mk_runner.h"

static mk_ctx *g_ctx_for_signal;

static void on_signal(int sig)
{
    (void)sig;
    if (g_ctx_for_signal)
        g_ctx_for_signal->cancel = 1;
}

/* OpenMP threads that spin while waiting (libgomp's default) burn the CPU a busy neighbour or the
 * other worker needs: on the shared 2-core machines a training step ran 3-10x slower that way.
 * libgomp reads OMP_WAIT_POLICY when the library loads, before main, so when the user has not
 * chosen a policy (or a GOMP_SPINCOUNT) we set "passive" and re-execute ourselves once. */
static void prefer_passive_openmp(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"))
        return; /* the user's choice (a bounded spin: docs/benchmarks.md, busy machines) */
    if (setenv("OMP_WAIT_POLICY", "passive", 0) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the default policy */
}

static int run_main(int argc, char **argv);

int main(int argc, char **argv)
{
    prefer_passive_openmp(argv);
    if (mk_mpi_init(&argc, &argv) != 0)
        return 1;
    /* every rank exits with the largest code of the job */
    return mk_mpi_finish(run_main(argc, argv));
}

static int run_main(int argc, char **argv)
{
    mk_pipeline_schema_install();
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int json = 0, want_help = 0;
    mk_log_level level = MK_LOG_INFO;

    /* Strip global options wherever they appear (before "--"). */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return 1;
    int n = 0;
    int dashdash = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!dashdash && strcmp(a, "--") == 0) {
            dashdash = 1;
            rest[n++] = argv[i];
        } else if (!dashdash && (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0)) {
            level = MK_LOG_WARN;
        } else if (!dashdash && (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0)) {
            level = MK_LOG_DEBUG;
        } else if (!dashdash && strcmp(a, "--log-json") == 0) {
            json = 1;
        } else if (!dashdash && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            want_help = 1;
        } else {
            rest[n++] = argv[i];
        }
    }
    rest[n] = NULL;

    mk_console con;
    mk_console_init(&con, stderr, json);
    mk_console_attach(&con, &ctx);
    ctx.log_level = level;
    if (level > MK_LOG_INFO)
        ctx.progress = NULL; /* --quiet: no progress either */
    mk_cli cli = {.ctx = &ctx, .console = &con, .argv0 = argv[0]};

    if (n == 0) {
        mk_cli_print_overview(want_help ? stdout : stderr);
        free(rest);
        return want_help ? 0 : 2;
    }
    const mk_verb *v = mk_cli_find_verb(rest[0]);
    if (!v) {
        fprintf(stderr, "pipeline: unknown verb '%s'\n\n", rest[0]);
        mk_cli_print_overview(stderr);
        free(rest);
        return 2;
    }
    if (want_help) {
        mk_cli_print_verb_help(stdout, v);
        free(rest);
        return 0;
    }
    if (mk_mpi_unjoined() && strcmp(v->name, "version") != 0) {
        fprintf(stderr,
                "pipeline %s: error: started as one of %d processes by an MPI launcher, but this "
                "build has no MPI: each process would run the whole job alone (rebuild with "
                "-DMK_MPI=ON, or run it without the launcher)\n",
                v->name, mk_mpi_unjoined());
        free(rest);
        return 2;
    }
    if (mk_mpi_size() > 1 && !v->multi_rank) {
        if (mk_mpi_rank() == 0)
            fprintf(stderr,
                    "pipeline %s: error: does not run on %d MPI ranks yet (docs/scaling.md); "
                    "run it as one process (`mpirun -n P` runs `pipeline run` data-parallel "
                    "and `pipeline infer` sharded)\n",
                    v->name, mk_mpi_size());
        free(rest);
        return 2;
    }
    g_ctx_for_signal = &ctx;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    mk_status st = v->run(&cli, n, rest);
    if (st != MK_OK) {
        const char *msg = mk_ctx_errmsg(&ctx);
        if (json) {
            ctx.log_level = MK_LOG_DEBUG;
            mk_log(&ctx, MK_LOG_ERROR, "%s", *msg ? msg : mk_status_str(st));
        } else {
            fprintf(stderr, "pipeline %s: error: %s\n", v->name, *msg ? msg : mk_status_str(st));
        }
    }
    free(rest);
    return mk_status_exit_code(st);
}
