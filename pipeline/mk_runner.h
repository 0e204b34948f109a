/* The stage runner of `pipeline run`.
 *
 * A run directory holds: config.toml (a copy of the config as given), config.resolved.toml,
 * run.json (version, seed, threads, command line, start time), provenance.json (the hashes
 * --resume compares), log.txt, stages/<name>.done markers, checkpoints/, models/, masks/,
 * reports/. Stages run in the order of run.stages. With --resume, stages whose marker exists are
 * skipped and a stage in progress resumes from its last checkpoint; without --resume an existing,
 * non-empty run directory is refused (nothing is overwritten by accident).
 *
 * Before the run directory is created, mk_runner_precheck runs every check there is (the one
 * entry of `pipeline run`, `run --dry-run` and `pipeline validate`): the stages exist, each
 * stage's check (config rules, the manifest's rows), the run directory (a run already there;
 * with --resume a config or manifest that differs from the run's, by hash, unless --force), and
 * the data (files, grids, label values; mk_check_data). When a stage still to run produces the
 * data (synth), the data is checked as soon as it has run, still before training.
 *
 * Stages are registered in one table (pipeline/run_stages.c): name, summary, and an adapter that
 * turns the validated config into the stage's own parameter struct and calls into stages/. Stages
 * never see the config object (layers only call downward).
 */
#ifndef MK_RUNNER_H
#define MK_RUNNER_H

#include "../core/mk_status.h"
#include "../config/mk_config.h"
#include "../stages/mk_stages.h"

struct mk_method;
struct mk_stage_entry;

typedef struct mk_run_env {
    mk_ctx *ctx;
    const mk_cfg *cfg;
    const char *run_dir;
    long long seed;
    int threads;
    int resume;
    int force; /* --force: resume although the config or the manifest differs from the run's */
    const struct mk_stage_entry *stage; /* the stage being run or checked (set by the runner) */
    int stage_index;                    /* checks: index of `stage` in run.stages */
    int from;                           /* checks: the first stage of run.stages still to run */
    char config_hash[40]; /* the resolved config's hash (provenance.json), set at the run's start */
    /* data-parallel training under an MPI launcher (pipeline/mk_mpi.h; NULL: one process): every
     * rank runs the training stages on its share of each batch; rank 0 alone runs the other
     * stages and writes the run directory */
    const mk_stage_dist *dist;
} mk_run_env;

typedef struct mk_stage_entry {
    const char *name;
    const char *summary;
    mk_status (*run)(mk_run_env *env);
    /* Optional: checks that can fail before any stage runs (config semantics, and the data when
     * the manifest already exists). The runner calls every listed stage's check before the first
     * stage, and again for the stages still to come after each stage (a stage may produce data). */
    mk_status (*check)(mk_run_env *env);
    const struct mk_method *method; /* training stages: the method (stages/mk_method.h) */
    int produces_data;              /* 1: writes the manifest (synth) */
} mk_stage_entry;

/* The stages of `pipeline run` (pipeline/run_stages.c): synth, one per registered method (in the
 * registry's order), evaluate. Built from the registry. */
const mk_stage_entry *mk_runner_stages(int *n);
const mk_stage_entry *mk_runner_find_stage(const char *name);
/* Install the config schema collected from the parameter rows (pipeline/registry_schema.c); call
 * before loading a config. */
void mk_pipeline_schema_install(void);

/* Every check `pipeline run` makes before it creates the run directory, in its order: the
 * stages exist (mk_runner_check), each stage's check (mk_runner_check_stages), with with_run_dir
 * the run directory (a run already there without --resume; with --resume a config, without the
 * keys that may change on resume, or a manifest whose hash differs from the run's
 * provenance.json: MK_ERR_USAGE naming the first differing key, unless env->force, then a
 * warning), and the data when it exists and no stage still to run produces it (mk_check_data).
 * `pipeline run` (through mk_runner_run) and `run --dry-run` call it with with_run_dir = 1,
 * `pipeline validate` with 0 (it has no --out, --resume or --force). Writes nothing. */
mk_status mk_runner_precheck(mk_run_env *env, int with_run_dir);
/* Check that every stage of run.stages is available in this build. */
mk_status mk_runner_check(mk_ctx *ctx, const mk_cfg *cfg);
/* Run the `check` of every stage of run.stages from index `from` on. */
mk_status mk_runner_check_stages(mk_run_env *env, int from);
/* 1 while the data the checks would read is not final: a stage from env->from up to env->stage
 * (to the end when NULL) produces it (synth) and will run (no --resume, or no done marker). The
 * data checks then wait until it has run. */
int mk_runner_data_pending(const mk_run_env *env);
/* mk_runner_precheck, then every stage of the config in order. */
mk_status mk_runner_run(mk_run_env *env, const char *cmdline);

#endif
