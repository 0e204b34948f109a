/* Fuzz target: the TOML 1.0 parser and the config schema (every section and key of this build:
 * types, ranges, choices, unknown-key suggestions, path resolution), then the runner's stage
 * checks and the resolved-config printer on documents that pass. */
#include "fuzz_common.h"
#include "config/mk_config.h"
#include "config/mk_toml.h"
#include "pipeline/mk_runner.h"

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!devnull) {
        mk_pipeline_schema_install();
        devnull = fopen("/dev/null", "w");
        if (!devnull)
            abort();
    }
    char path[600];
    snprintf(path, sizeof path, "%s/fuzz.toml", mk_fuzz_dir());
    mk_ctx ctx;
    mk_fuzz_ctx(&ctx);
    /* the bare parser, then the schema on top */
    mk_toml_doc *doc = NULL;
    if (mk_toml_parse(&ctx, path, (const char *)data, size, &doc) == MK_OK)
        mk_toml_free(doc);
    mk_cfg *cfg = NULL;
    if (mk_cfg_load_buffer(&ctx, path, (const char *)data, size, &cfg) == MK_OK) {
        mk_runner_check(&ctx, cfg);
        mk_cfg_print(cfg, devnull);
        mk_cfg_free(cfg);
    }
    return 0;
}
