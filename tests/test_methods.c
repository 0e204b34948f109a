/* The contract every registered method keeps (stages/methods.c): a new method gets these tests by
 * being registered. For each row of MK_METHODS, on tiny lung phantoms (CT and MR, labelled):
 *   - its section is named after it and its defaults come from its rows;
 *   - a 2-iteration run finishes and every loss term of the step is finite and named;
 *   - a run interrupted (cancel, as SIGINT/SIGTERM do) after 2 of 4 iterations and resumed ends
 *     with model files identical to an uninterrupted 4-iteration run (h5diff);
 *   - every model it produces for evaluation loads and segments a test volume into a mask with the
 *     volume's grid and only the label values of the mapping. */
#define _GNU_SOURCE
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/mk_fs.h"
#include "io/mk_manifest.h"
#include "io/mk_nifti.h"
#include "phantoms/mk_phantoms.h"
#include "stages/mk_histo_stage.h"
#include "stages/mk_method.h"
#include "test_tmp.h"

static char g_tmp[512], g_man[700], g_man_u[700], g_man_h[700];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void common(mk_stage_common *c, const char *run_dir)
{
    mk_stage_common_defaults(c);
    c->run_dir = run_dir;
    c->seed = 5;
    c->threads = 1;
    c->data.manifest = g_man;
    c->data.patch[0] = c->data.patch[1] = 16;
    c->unet.base = 4;
    c->log_every = 1000;
    c->checkpoint_every = 1;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_stage_common_finish(&ctx, c), MK_OK);
}

/* The method's defaults with small networks and batches (keys it may not have are left alone). */
static void *small_cfg(const mk_method *m, int iterations)
{
    void *cfg = calloc(1, m->cfg_size);
    assert_non_null(cfg);
    mk_method_defaults(m, cfg);
    for (int u = 0; u < m->nuses; u++) {
        const mk_param_section *s = m->uses[u].section;
        char *base = (char *)cfg + m->uses[u].offset;
        for (int r = 0; r < s->nrows; r++) {
            const mk_param_row *P = &s->rows[r];
            int *iv = (int *)(base + P->offset);
            if (P->bind != MK_BIND_INT)
                continue;
            if (!strcmp(s->name, "histo_synth") && !strcmp(P->name, "iterations"))
                *iv = iterations - iterations / 2; /* + the GAN's: the total asked for */
            else if (!strcmp(P->name, "gan_iterations"))
                *iv = iterations / 2;
            else if (!strcmp(P->name, "iterations"))
                *iv = iterations;
            else if (!strcmp(P->name, "labelled_per_class") ||
                     !strcmp(P->name, "candidates_per_class"))
                *iv = 4;
            else if (!strcmp(P->name, "transfer_per_slide"))
                *iv = 16;
            else if (!strcmp(P->name, "batch"))
                *iv = 2;
            else if (strstr(P->name, "width"))
                *iv = 4;
        }
    }
    return cfg;
}

/* The files a method writes under models/: its outputs, or for translate its translator. */
static int model_files(const mk_method *m, const char **files)
{
    int n = 0;
    for (int o = 0; o < m->noutputs; o++) {
        int dup = 0;
        for (int k = 0; k < n; k++)
            dup |= !strcmp(files[k], m->outputs[o].file);
        if (!dup)
            files[n++] = m->outputs[o].file;
        if (m->outputs[o].translator)
            files[n++] = m->outputs[o].translator;
    }
    if (n == 0)
        files[n++] = "models/translator.h5";
    return n;
}

static void test_registry(void **state)
{
    (void)state;
    for (int i = 0; i < MK_METHOD_COUNT; i++) {
        const mk_method *m = MK_METHODS[i];
        assert_non_null(m);
        assert_ptr_equal(mk_method_find(m->name), m);
        assert_true(m->nuses >= 1);
        assert_string_equal(m->uses[0].section->name, m->name);
        assert_non_null(m->init);
        assert_non_null(m->step);
        assert_non_null(m->save);
        assert_non_null(m->iterations);
        /* every row is bound to a field inside the method's config struct */
        for (int u = 0; u < m->nuses; u++)
            for (int r = 0; r < m->uses[u].section->nrows; r++) {
                const mk_param_row *P = &m->uses[u].section->rows[r];
                assert_int_not_equal(P->bind, MK_BIND_NONE);
                assert_true(m->uses[u].offset + P->offset + P->size <= m->cfg_size);
            }
        /* a data-parallel method names the batches it splits: INT rows of its sections */
        if (m->data_parallel)
            assert_non_null(m->split_batches[0]);
        for (int k = 0; k < 3 && m->split_batches[k]; k++) {
            const char *key = m->split_batches[k], *dot = strchr(key, '.');
            assert_non_null(dot);
            int found = 0;
            for (int u = 0; u < m->nuses; u++) {
                const mk_param_section *sec = m->uses[u].section;
                if (strlen(sec->name) != (size_t)(dot - key) || strncmp(sec->name, key, dot - key))
                    continue;
                for (int r = 0; r < sec->nrows; r++)
                    found |=
                        !strcmp(sec->rows[r].name, dot + 1) && sec->rows[r].type == MK_PARAM_INT;
            }
            if (!found)
                fail_msg("%s: split batch '%s' is no INT row of its sections", m->name, key);
        }
    }
    assert_null(mk_method_find("no-such-method"));
}

/* 1 when the method needs unlabelled training rows (a semi-supervised method): it gets the
 * manifest with an unlabelled copy of every MR training row. */
static int wants_unlabelled(const mk_method *m, const void *cfg)
{
    mk_stage_common c;
    mk_stage_common_defaults(&c);
    mk_data_need nd[MK_NEEDS_MAX];
    int n = m->needs ? m->needs(&c, cfg, nd) : 0, u = 0;
    for (int i = 0; i < n; i++)
        u |= nd[i].unlabelled;
    return u;
}

/* Train the stage a method needs before it (mk_method.after) into the same run directory. */
static void train_after(const mk_method *m, const void *cfg, mk_stage_common *c)
{
    const char *after = m->after ? m->after(cfg) : NULL;
    if (!after)
        return;
    const mk_method *a = mk_method_find(after);
    assert_non_null(a);
    void *acfg = small_cfg(a, 2);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int resume = c->resume;
    c->resume = 0;
    if (mk_method_train(&ctx, a, c, acfg, NULL) != MK_OK)
        fail_msg("%s (before %s): %s", a->name, m->name, mk_ctx_errmsg(&ctx));
    c->resume = resume;
    free(acfg);
}

static void run_contract(const mk_method *m)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char rd[3][800];
    const char *tag[3] = {"two", "straight", "killed"};
    for (int k = 0; k < 3; k++)
        snprintf(rd[k], sizeof rd[k], "%s/%s-%s", g_tmp, m->name, tag[k]);
    mk_stage_common c;

    /* 2 iterations: finite, named terms */
    void *cfg = small_cfg(m, 2);
    int unl = wants_unlabelled(m, cfg);
#define COMMON(k)                                                                                  \
    do {                                                                                           \
        common(&c, rd[k]);                                                                         \
        if (unl)                                                                                   \
            c.data.manifest = g_man_u;                                                             \
        if (m->classifier)                                                                         \
            c.data.manifest = g_man_h;                                                             \
        train_after(m, cfg, &c);                                                                   \
    } while (0)
    COMMON(0);
    mk_train_stats st;
    memset(&st, 0, sizeof st);
    if (mk_method_train(&ctx, m, &c, cfg, &st) != MK_OK)
        fail_msg("%s: %s", m->name, mk_ctx_errmsg(&ctx));
    assert_int_equal(st.iterations, 2);
    assert_true(st.nterms >= 1);
    for (int k = 0; k < st.nterms; k++) {
        assert_true(st.term_name[k][0] != 0);
        if (!isfinite(st.term_last[k]))
            fail_msg("%s: term %s = %g", m->name, st.term_name[k], st.term_last[k]);
    }
    print_message("%s: %d terms, first %s = %.4f\n", m->name, st.nterms, st.term_name[0],
                  st.term_last[0]);
    free(cfg);

    /* 4 iterations straight, and 2 + cancel + resume: identical models */
    cfg = small_cfg(m, 4);
    COMMON(1);
    assert_int_equal(mk_method_train(&ctx, m, &c, cfg, NULL), MK_OK);
    mk_ctx cc;
    mk_test_cancelling(&cc, 2);
    COMMON(2);
    assert_int_equal(mk_method_train(&cc, m, &c, cfg, NULL), MK_ERR_ABORTED);
    char ck[900];
    snprintf(ck, sizeof ck, "%s/checkpoints/%s.h5", rd[2], m->name);
    assert_true(mk_fs_is_file(ck));
    c.resume = 1;
    assert_int_equal(mk_method_train(&ctx, m, &c, cfg, NULL), MK_OK);
    const char *files[8];
    int nf = model_files(m, files);
    for (int f = 0; f < nf; f++) {
        char cmd[2200];
        snprintf(cmd, sizeof cmd, "h5diff -q '%s/%s' '%s/%s'", rd[1], files[f], rd[2], files[f]);
        if (system(cmd) != 0)
            fail_msg("%s: %s differs after cancel + resume", m->name, files[f]);
    }
    /* a differing file is seen: the 2-iteration run's model is not the 4-iteration one */
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "h5diff -q '%s/%s' '%s/%s' > /dev/null", rd[0], files[0], rd[1],
             files[0]);
    assert_int_not_equal(system(cmd), 0);

    /* the models it produces load (classifiers: their description and weights) and predict */
    if (m->classifier) {
        for (int o = 0; o < m->noutputs; o++) {
            char model[1200];
            snprintf(model, sizeof model, "%s/%s", rd[1], m->outputs[o].file);
            mk_histo_model hm;
            if (mk_histo_model_load(&ctx, model, &hm) != MK_OK)
                fail_msg("%s: %s", m->outputs[o].name, mk_ctx_errmsg(&ctx));
            assert_int_equal(hm.p.patch, 32);
            mk_histo_model_free(&hm);
        }
        free(cfg);
        return;
    }
    mk_manifest *man = NULL;
    assert_int_equal(mk_manifest_read(&ctx, g_man, &man), MK_OK);
    for (int o = 0; o < m->noutputs; o++) {
        const mk_method_output *out = &m->outputs[o];
        if (out->column || out->translator)
            continue; /* other inputs: covered by tests/test_stages.c */
        const char *mod = out->modality_key ? "MR" : c.data.ct_modality;
        int row = -1;
        for (int r = 0; r < man->nrows && row < 0; r++)
            if (!strcmp(man->rows[r].modality, mod) && !strcmp(man->rows[r].split, "test"))
                row = r;
        assert_true(row >= 0);
        char model[1200];
        const char *img_path = man->rows[row].image_path;
        snprintf(model, sizeof model, "%s/%s", rd[1], out->file);
        mk_image *img = NULL, *mask = NULL;
        assert_int_equal(mk_io_nifti_read(&ctx, img_path, &img), MK_OK);
        mk_status ps =
            strcmp(mod, c.data.ct_modality)
                ? mk_stage_predict_volume_mr(&ctx, model, &c.unet, img, &c.data, 1, &mask)
                : mk_stage_predict_volume(&ctx, model, &c.unet, img, &c.data, 1, &mask);
        if (ps != MK_OK)
            fail_msg("%s: predict: %s", out->name, mk_ctx_errmsg(&ctx));
        assert_true(mk_geom_same_grid(mask, img, 1e-6));
        for (int64_t q = 0; q < mk_image_nvox(mask); q++) {
            int v = (int)mk_image_get(mask, q);
            assert_true(v == 0 || mk_data_class_of_value(&c.data, v) > 0);
        }
        mk_image_free(img);
        mk_image_free(mask);
    }
    mk_manifest_free(man);
    free(cfg);
}

static void test_contract(void **state)
{
    (void)state;
    for (int i = 0; i < MK_METHOD_COUNT; i++)
        run_contract(MK_METHODS[i]);
}

static int setup(void **state)
{
    (void)state;
    const char *bd = getenv("MK_BUILD_DIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/methods-test-XXXXXX", bd ? bd : "/tmp");
    if (!mkdtemp(g_tmp))
        return -1;
    char ph[600];
    snprintf(ph, sizeof ph, "%s/phantoms", g_tmp);
    snprintf(g_man, sizeof g_man, "%s/manifest.csv", ph);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_phantom_params p;
    mk_phantom_params_default(&p, MK_PHANTOM_LUNG);
    p.seed = 4;
    p.cases = 5;
    p.size[0] = p.size[1] = 24;
    p.size[2] = 6;
    mk_phantom_summary sum;
    if (mk_phantom_synth(&ctx, &p, ph, &sum) != MK_OK) {
        fprintf(stderr, "phantoms: %s\n", mk_ctx_errmsg(&ctx));
        return -1;
    }
    /* slides for the histology methods (classifiers) */
    char hp[600];
    snprintf(hp, sizeof hp, "%s/histo", g_tmp);
    snprintf(g_man_h, sizeof g_man_h, "%s/manifest.csv", hp);
    mk_phantom_params h;
    mk_phantom_params_default(&h, MK_PHANTOM_HISTO);
    h.seed = 4;
    h.cases = 4;
    h.size[0] = h.size[1] = 256;
    if (mk_phantom_synth(&ctx, &h, hp, &sum) != MK_OK) {
        fprintf(stderr, "histo phantoms: %s\n", mk_ctx_errmsg(&ctx));
        return -1;
    }
    /* the same manifest plus an unlabelled copy of every MR training row (semi-supervised
     * methods): id,modality,image,label,split,domain with the label left empty */
    snprintf(g_man_u, sizeof g_man_u, "%s/manifest_unlabelled.csv", ph);
    FILE *in = fopen(g_man, "r"), *out = fopen(g_man_u, "w");
    if (!in || !out)
        return -1;
    char line[2048], extra[64][2048];
    int ne = 0;
    while (fgets(line, sizeof line, in)) {
        fputs(line, out);
        char f[6][512];
        if (ne < 64 &&
            sscanf(line, "%511[^,],%511[^,],%511[^,],%511[^,],%511[^,],%511[^,\n]", f[0], f[1],
                   f[2], f[3], f[4], f[5]) == 6 &&
            !strcmp(f[1], "MR") && !strcmp(f[4], "train"))
            snprintf(extra[ne++], sizeof extra[0], "%s_u,MR,%s,,train,%s\n", f[0], f[2], f[5]);
    }
    for (int i = 0; i < ne; i++)
        fputs(extra[i], out);
    fclose(in);
    if (fclose(out) != 0 || ne == 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (!getenv("MK_KEEP_TMP"))
        nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_contract),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
