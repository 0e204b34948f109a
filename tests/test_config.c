/* Config schema: defaults, overrides, and every bad-config message (file:line, key path, expected
 * vs found). Each case is a small TOML document and the exact fragments its message must hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/mk_config.h"
#include "pipeline/mk_runner.h"

static char g_dir[256];
static char g_manifest[300];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/mk_test_config_XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    snprintf(g_manifest, sizeof g_manifest, "%s/m.csv", g_dir);
    FILE *f = fopen(g_manifest, "w");
    if (!f)
        return -1;
    fputs("id,modality,image,label,split,domain\n", f);
    fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static mk_status load(const char *text, mk_cfg **cfg, mk_ctx *ctx)
{
    char path[300];
    snprintf(path, sizeof path, "%s/c.toml", g_dir);
    mk_ctx_init(ctx);
    return mk_cfg_load_buffer(ctx, path, text, strlen(text), cfg);
}

#define GOOD_HEAD "[run]\nstages = [\"evaluate\"]\n[data]\nmanifest = \"m.csv\"\n"

static void test_defaults_and_paths(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_cfg *cfg = NULL;
    assert_int_equal(load(GOOD_HEAD, &cfg, &ctx), MK_OK);
    assert_int_equal(mk_cfg_int(cfg, "run.seed"), 1);
    assert_false(mk_cfg_is_set(cfg, "run.seed"));
    assert_true(mk_cfg_is_set(cfg, "data.manifest"));
    assert_int_equal(mk_cfg_line(cfg, "data.manifest"), 4);
    /* relative paths resolve against the config's folder */
    assert_string_equal(mk_cfg_str(cfg, "data.manifest"), g_manifest);
    assert_string_equal(mk_cfg_str(cfg, "evaluate.convention"), "deepmind");
    assert_true(mk_cfg_bool(cfg, "evaluate.write_masks"));
    assert_int_equal(mk_cfg_list_len(cfg, "data.patch"), 2);
    assert_true(mk_cfg_list_num(cfg, "data.patch", 0) == 48.0);
    assert_true(mk_cfg_float(cfg, "evaluate.tolerance_mm") == 1.0);
    /* overrides are range-checked */
    assert_int_equal(mk_cfg_override(&ctx, cfg, "run.seed", "42"), MK_OK);
    assert_int_equal(mk_cfg_int(cfg, "run.seed"), 42);
    assert_int_equal(mk_cfg_override(&ctx, cfg, "run.threads", "-3"), MK_ERR_USAGE);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "run.threads"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "[0, 256]"));
    assert_int_equal(mk_cfg_override(&ctx, cfg, "run.seed", "\"x\""), MK_ERR_USAGE);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "expected integer, got string"));
    mk_cfg_free(cfg);
}

static void test_int_accepted_for_float(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_cfg *cfg = NULL;
    assert_int_equal(load(GOOD_HEAD "[evaluate]\ntolerance_mm = 2\n", &cfg, &ctx), MK_OK);
    assert_true(mk_cfg_float(cfg, "evaluate.tolerance_mm") == 2.0);
    mk_cfg_free(cfg);
}

static void test_all_schema_defaults_valid(void **state)
{
    (void)state;
    /* a config listing every stage resolves every default through the same checks as user input */
    mk_ctx ctx;
    mk_cfg *cfg = NULL;
    const char *doc =
        "[run]\nstages = [\"synth\", \"translate\", \"cmedl\", \"baseline\", \"evaluate\"]\n"
        "[data]\nmanifest = \"not-yet.csv\"\n";
    assert_int_equal(load(doc, &cfg, &ctx),
                     MK_OK); /* synth produces the data: no existence check */
    mk_cfg_free(cfg);
}

static void test_suggest(void **state)
{
    (void)state;
    const char *c[] = {"seed", "threads", "stages", "out_dir"};
    assert_string_equal(mk_cfg_suggest("sede", c, 4), "seed");
    assert_string_equal(mk_cfg_suggest("thraeds", c, 4), "threads");
    assert_string_equal(mk_cfg_suggest("outdir", c, 4), "out_dir");
    assert_null(mk_cfg_suggest("banana", c, 4));
}

struct bad {
    const char *name;
    const char *doc;
    const char *frag[3]; /* every fragment must be in the message */
};

static const struct bad BAD[] = {
    {"toml syntax", "[run\nstages = []\n", {"c.toml:1:", NULL}},
    {"unterminated string", GOOD_HEAD "[model]\nnorm = \"batch\n", {"c.toml:6:", NULL}},
    {"duplicate key", GOOD_HEAD "[model]\nwidth = 8\nwidth = 9\n", {"c.toml:7:", NULL}},
    {"unknown key with suggestion",
     "[run]\nstages = [\"evaluate\"]\nsede = 3\n[data]\nmanifest = \"m.csv\"\n",
     {"c.toml:3: unknown key 'sede' in [run]", "did you mean 'seed'?", NULL}},
    {"unknown key, no suggestion",
     GOOD_HEAD "[model]\nbanana = 1\n",
     {"c.toml:6: unknown key 'banana' in [model]", NULL}},
    {"unknown section",
     GOOD_HEAD "[modle]\nwidth = 8\n",
     {"c.toml:5: unknown section [modle]", "did you mean [model]?", NULL}},
    {"top-level key", "seed = 3\n" GOOD_HEAD, {"c.toml:1: top-level key 'seed'", NULL}},
    {"section as value",
     "run = 3\n[data]\nmanifest = \"m.csv\"\n",
     {"c.toml:1: 'run' must be a section [run], got integer", NULL}},
    {"wrong type int",
     GOOD_HEAD "[model]\nwidth = \"8\"\n",
     {"c.toml:6: key 'model.width': expected integer, got string", NULL}},
    {"float for int",
     GOOD_HEAD "[model]\ndepth = 3.0\n",
     {"c.toml:6: key 'model.depth': expected integer, got float", NULL}},
    {"wrong type bool",
     GOOD_HEAD "[evaluate]\nwrite_masks = 1\n",
     {"c.toml:6: key 'evaluate.write_masks': expected boolean", "got integer", NULL}},
    {"table defined twice", GOOD_HEAD "[run]\n", {"c.toml:5:", NULL}},
    {"string for float",
     GOOD_HEAD "[evaluate]\ntolerance_mm = \"1\"\n",
     {"c.toml:6: key 'evaluate.tolerance_mm': expected number, got string", NULL}},
    {"out of range int",
     "[run]\nstages = [\"evaluate\"]\nthreads = 1000\n[data]\nmanifest = \"m.csv\"\n",
     {"c.toml:3: key 'run.threads': expected an integer in [0, 256], got 1000", NULL}},
    {"out of range float",
     GOOD_HEAD "[cmedl]\ndice_weight = 1.5\n",
     {"c.toml:6: key 'cmedl.dice_weight': expected a number in [0, 1], got 1.5", NULL}},
    {"negative range",
     GOOD_HEAD "[model]\ndepth = 1\n",
     {"key 'model.depth': expected an integer in [2, 6], got 1", NULL}},
    {"bad choice",
     GOOD_HEAD "[evaluate]\nconvention = \"deepmnd\"\n",
     {"c.toml:6: key 'evaluate.convention': expected one of deepmind, medpy, got \"deepmnd\"",
      "did you mean \"deepmind\"?", NULL}},
    {"bad choice far",
     GOOD_HEAD "[model]\nnorm = \"layer\"\n",
     {"key 'model.norm': expected one of batch, instance, got \"layer\"", NULL}},
    {"section defined twice", GOOD_HEAD "[data]\n", {"c.toml:5:", NULL}},
    {"list elem wrong",
     "[run]\nstages = [\"evaluate\", 3]\n[data]\nmanifest = \"m.csv\"\n",
     {"c.toml:2: key 'run.stages'[1]: expected string, got integer", NULL}},
    {"list not array",
     "[run]\nstages = \"evaluate\"\n[data]\nmanifest = \"m.csv\"\n",
     {"c.toml:2: key 'run.stages': expected array of strings, got string", NULL}},
    {"int list range",
     GOOD_HEAD "[synth]\nsize = [64, 4, 24]\n",
     {"key 'synth.size'[1]: expected a value in [8, 65536], got 4", NULL}},
    {"unknown stage",
     "[run]\nstages = [\"evalute\"]\n[data]\nmanifest = \"m.csv\"\n",
     {"c.toml:2: key 'run.stages'[0]: unknown stage \"evalute\"", "did you mean \"evaluate\"?",
      NULL}},
    {"not a stage",
     "[run]\nstages = [\"model\"]\n[data]\nmanifest = \"m.csv\"\n",
     {"unknown stage \"model\"", NULL}},
    {"missing required stages",
     "[data]\nmanifest = \"m.csv\"\n",
     {"missing required key 'run.stages'", "[run]", NULL}},
    {"missing required in present section",
     "[run]\nstages = [\"evaluate\"]\n[data]\nct_modality = \"CT\"\n",
     {"c.toml:3: missing required key 'manifest' in [data]", NULL}},
    {"missing file",
     "[run]\nstages = [\"evaluate\"]\n[data]\nmanifest = \"nope.csv\"\n",
     {"c.toml:4: key 'data.manifest': file or folder", "nope.csv' does not exist", NULL}},
    {"empty path",
     "[run]\nstages = [\"evaluate\"]\n[data]\nmanifest = \"\"\n",
     {"c.toml:4: key 'data.manifest': expected a non-empty path", NULL}},
    {"nan float",
     GOOD_HEAD "[evaluate]\ntolerance_mm = nan\n",
     {"key 'evaluate.tolerance_mm': expected a finite number", NULL}},
    {"inline table for key",
     GOOD_HEAD "[model]\nwidth = {a = 1}\n",
     {"key 'model.width': expected integer, got table", NULL}},
    {"invalid utf8", GOOD_HEAD "[run2]\nx = \"\xff\"\n", {"c.toml:6:", NULL}},
    {"several problems",
     "[run]\nstages = [\"evaluate\"]\nsede = 1\nthreads = -1\n[data]\nmanifest = \"m.csv\"\n",
     {"c.toml:3: unknown key 'sede'", "c.toml:4: key 'run.threads'", NULL}},
};

static void test_bad_configs(void **state)
{
    (void)state;
    int n = (int)(sizeof BAD / sizeof BAD[0]);
    assert_true(n >= 25);
    for (int i = 0; i < n; i++) {
        mk_ctx ctx;
        mk_cfg *cfg = NULL;
        mk_status st = load(BAD[i].doc, &cfg, &ctx);
        if (st != MK_ERR_CONFIG || cfg != NULL) {
            print_error("case '%s': expected MK_ERR_CONFIG, got %s\n", BAD[i].name,
                        mk_status_str(st));
            fail();
        }
        for (int f = 0; f < 3 && BAD[i].frag[f]; f++) {
            if (!strstr(mk_ctx_errmsg(&ctx), BAD[i].frag[f])) {
                print_error("case '%s': message\n  %s\nlacks\n  %s\n", BAD[i].name,
                            mk_ctx_errmsg(&ctx), BAD[i].frag[f]);
                fail();
            }
        }
    }
}

static void test_missing_file_and_folder(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_cfg *cfg = NULL;
    assert_int_equal(mk_cfg_load(&ctx, "/nonexistent/dir/cfg.toml", &cfg), MK_ERR_CONFIG);
    assert_string_equal(mk_ctx_errmsg(&ctx),
                        "/nonexistent/dir/cfg.toml: config file does not exist");
    assert_int_equal(mk_cfg_load(&ctx, g_dir, &cfg), MK_ERR_CONFIG);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "is a folder"));
}

int main(void)
{
    mk_pipeline_schema_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_paths),
        cmocka_unit_test(test_int_accepted_for_float),
        cmocka_unit_test(test_all_schema_defaults_valid),
        cmocka_unit_test(test_suggest),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_missing_file_and_folder),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
