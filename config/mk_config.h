/* medkd run configuration: TOML 1.0 checked against a declarative schema.
 *
 * The schema is one table per section (parameter rows, core/mk_param.h, collected by
 * pipeline/registry_schema.c): key, type, default, range or
 * choices, one-line doc. From it come validation (unknown keys with a "did you mean" suggestion,
 * expected-vs-found types, ranges, choices, required keys, input paths that must exist), the
 * defaults, `pipeline validate --explain` and docs/config.md.
 *
 * Every message names FILE:LINE, the key path (section.key), what was expected and what was found.
 * Paths in the config resolve relative to the directory of the config file.
 *
 *     mk_cfg *cfg = NULL;
 *     if (mk_cfg_load(&ctx, "examples/cmedl.toml", &cfg) != MK_OK) -> MK_ERR_CONFIG + message
 *     long long seed = mk_cfg_int(cfg, "run.seed");
 *     mk_cfg_free(cfg);
 *
 * Ownership: mk_cfg_load returns a config the caller frees with mk_cfg_free. Strings returned by
 * accessors are borrowed and live as long as the config.
 */
#ifndef MK_CONFIG_H
#define MK_CONFIG_H

#include <stdio.h>

#include "../core/mk_param.h"
#include "../core/mk_status.h"

/* Keys are parameter rows (core/mk_param.h): declared once beside the struct they fill. */
typedef mk_param_type mk_cfg_type;
#define MK_CFG_STRING MK_PARAM_STRING
#define MK_CFG_INT MK_PARAM_INT
#define MK_CFG_FLOAT MK_PARAM_FLOAT
#define MK_CFG_BOOL MK_PARAM_BOOL
#define MK_CFG_PATH MK_PARAM_PATH
#define MK_CFG_STRING_LIST MK_PARAM_STRING_LIST
#define MK_CFG_INT_LIST MK_PARAM_INT_LIST
#define MK_CFG_FLOAT_LIST MK_PARAM_FLOAT_LIST
#define MK_CFG_LABEL_TABLE MK_PARAM_LABEL_TABLE
#define MK_CFG_TYPE_COUNT MK_PARAM_TYPE_COUNT
#define MK_CFG_REQUIRED MK_PARAM_REQUIRED
#define MK_CFG_MUST_EXIST MK_PARAM_MUST_EXIST
typedef mk_param_row mk_cfg_key;

typedef struct mk_cfg_section {
    const char *name;
    const char *doc;
    const mk_cfg_key *keys;
    int nkeys;
    int is_stage;        /* 1: the section configures a stage of the same name */
    const char *used_by; /* another stage that also reads this section, or NULL */
    int produces_inputs; /* 1: the stage writes the files the MUST_EXIST paths of other sections
                            name (synth writes the data): not checked while it is listed */
} mk_cfg_section;

/* The schema: installed once by the layer that collects the parameter rows (the registry,
 * pipeline/registry_schema.c: mk_pipeline_schema_install) before any config is loaded. The config
 * layer itself knows no section. The array must outlive every config. */
void mk_cfg_set_schema(const mk_cfg_section *sections, int n);
const mk_cfg_section *mk_cfg_schema(int *n);

typedef struct mk_cfg mk_cfg;

/* Parse, validate and resolve a config file. On failure returns MK_ERR_CONFIG (or MK_ERR_IO when
 * the file cannot be read) with all problems in the message, one per line. */
mk_status mk_cfg_load(mk_ctx *ctx, const char *path, mk_cfg **out);
/* Same on an in-memory document (`path` names it in messages and anchors relative paths). */
mk_status mk_cfg_load_buffer(mk_ctx *ctx, const char *path, const char *buf, size_t len,
                             mk_cfg **out);
/* mk_cfg_load with flags: MK_CFG_LOAD_DEFER_PATHS leaves out the check that input paths exist,
 * for callers that override keys first (`pipeline run --set`); they call mk_cfg_check_paths
 * after the overrides. */
#define MK_CFG_LOAD_DEFER_PATHS 1
mk_status mk_cfg_load_ex(mk_ctx *ctx, const char *path, int flags, mk_cfg **out);
/* The existence check of input paths (keys flagged must-exist; data a listed stage produces is
 * exempt): MK_ERR_CONFIG with every missing path, FILE:LINE and key. */
mk_status mk_cfg_check_paths(mk_ctx *ctx, const mk_cfg *cfg);
void mk_cfg_free(mk_cfg *cfg);

/* Accessors by "section.key". Asking for a key not in the schema, or with the wrong type, is a
 * programmer error (asserts). Values are the file's or the default. */
const char *mk_cfg_str(const mk_cfg *cfg, const char *key); /* STRING and PATH (resolved) */
long long mk_cfg_int(const mk_cfg *cfg, const char *key);
double mk_cfg_float(const mk_cfg *cfg, const char *key);
int mk_cfg_bool(const mk_cfg *cfg, const char *key);
int mk_cfg_list_len(const mk_cfg *cfg, const char *key);
const char *mk_cfg_list_str(const mk_cfg *cfg, const char *key, int i);
double mk_cfg_list_num(const mk_cfg *cfg, const char *key, int i);
/* 1 if "section.key" is a key of the schema. */
int mk_cfg_has_key(const mk_cfg *cfg, const char *key);
/* 1 if the key was written in the file (not defaulted). */
int mk_cfg_is_set(const mk_cfg *cfg, const char *key);
/* 1 if the section appears in the file. */
int mk_cfg_has_section(const mk_cfg *cfg, const char *section);
/* Line of a key in the file (0 when defaulted). */
int mk_cfg_line(const mk_cfg *cfg, const char *key);
const char *mk_cfg_path(const mk_cfg *cfg); /* the config file path */

/* Fill the bound fields (mk_param_row.bind) of the rows of `section` into obj, from the config (its
 * values or defaults; every row of the section must be described by `rows`, which are the
 * schema's rows of that section). Strings are borrowed from the config. MK_ERR_CONFIG naming
 * FILE:LINE and the key when a value does not fit its field (list length, too many or too long
 * names, too many labels). */
mk_status mk_cfg_bind(mk_ctx *ctx, const mk_cfg *cfg, const char *section, void *obj);

/* Overrides from the command line (e.g. --seed); checked against the schema's range. */
mk_status mk_cfg_override(mk_ctx *ctx, mk_cfg *cfg, const char *key, const char *toml_value);

/* Print the resolved config as TOML (defaults filled in). */
void mk_cfg_print(const mk_cfg *cfg, FILE *out);
/* Print the schema: text (markdown = 0) for --explain, or the markdown of docs/config.md. */
void mk_cfg_explain(FILE *out, int markdown);

/* "Did you mean" helper: the candidate closest to `word` by edit distance, or NULL if none is
 * close enough. */
const char *mk_cfg_suggest(const char *word, const char *const *cands, int n);

#endif
