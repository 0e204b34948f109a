/* Training data on real-world geometry (issue 16): reorientation to a common orientation before
 * anatomical slicing and its exact inverse, resampling to a target spacing and back, the same
 * slices and the same model from RAS/LPS/LSA copies of one volume, the random patch sampler with
 * foreground oversampling, the seeded validation hold-out, dataset folders and dataset.json as
 * data.manifest, the case table, validation during training with a best copy, and the warnings
 * (mixed orientations with a voxel axis, mixed spacings, a structure absent from the slices). */
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
#include <unistd.h>

#include <cmocka.h>

#include "test_tmp.h"

#include "core/mk_fs.h"
#include "io/mk_nifti.h"
#include "io/mk_resample.h"
#include "models/mk_unet.h"
#include "stages/mk_method.h"
#include "stages/mk_stages.h"

static char g_tmp[512];

/* log capture: the warnings of the last call */
static char g_log[8192];
static void log_cb(void *user, mk_log_level level, const char *msg)
{
    (void)user;
    if (level >= MK_LOG_WARN && strlen(g_log) + strlen(msg) + 2 < sizeof g_log) {
        strcat(g_log, msg);
        strcat(g_log, "\n");
    }
}

static void ctx_capture(mk_ctx *ctx)
{
    mk_ctx_init(ctx);
    ctx->log = log_cb;
    ctx->log_level = MK_LOG_WARN;
    g_log[0] = 0;
}

/* CT 20 x 16 x 6 (i, j, k), spacing 1 x 1 x 2 mm, identity LPS direction (orientation code LPS),
 * origin (3, -4, 10): a body box of HU 40 + a smooth ramp in i and j (so flips are visible), a
 * structure 1 (HU 300) in slices 2..3 off-centre, a structure 2 (HU 800) voxel pair in slice 4,
 * air -1000 elsewhere and on slice 0. */
static void make_volume(mk_image **img, mk_image **lab)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {20, 16, 6};
    assert_int_equal(mk_image_new(&ctx, MK_DT_INT16, 3, dim, img), MK_OK);
    assert_int_equal(mk_image_new(&ctx, MK_DT_UINT8, 3, dim, lab), MK_OK);
    for (int a = 0; a < 3; a++) {
        (*img)->geom.spacing[a] = a == 2 ? 2.0 : 1.0;
        (*lab)->geom.spacing[a] = (*img)->geom.spacing[a];
    }
    double org[3] = {3, -4, 10};
    memcpy((*img)->geom.origin, org, sizeof org);
    memcpy((*lab)->geom.origin, org, sizeof org);
    for (int k = 0; k < 6; k++)
        for (int j = 0; j < 16; j++)
            for (int i = 0; i < 20; i++) {
                int64_t q = i + 20 * (j + 16 * k);
                double v = -1000;
                int l = 0;
                if (k > 0 && i >= 2 && i <= 17 && j >= 1 && j <= 13)
                    v = 40 + 3 * i + 2 * j;
                if (k >= 2 && k <= 3 && i >= 12 && i <= 15 && j >= 3 && j <= 5) {
                    v = 300;
                    l = 1;
                }
                if (k == 4 && i >= 5 && i <= 6 && j == 10) {
                    v = 800;
                    l = 2;
                }
                mk_image_set(*img, q, v);
                mk_image_set(*lab, q, l);
            }
}

static void write_pair(const char *dir, const char *name, const mk_image *img, const mk_image *lab)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char p[900];
    snprintf(p, sizeof p, "%s/%s.nii.gz", dir, name);
    assert_int_equal(mk_io_nifti_write(&ctx, p, img), MK_OK);
    snprintf(p, sizeof p, "%s/%s_label.nii.gz", dir, name);
    assert_int_equal(mk_io_nifti_write(&ctx, p, lab), MK_OK);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void subdir(char *buf, size_t n, const char *name)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    snprintf(buf, n, "%s/%s", g_tmp, name);
    assert_int_equal(mk_fs_mkdirs(&ctx, buf), MK_OK);
}

/* A reoriented copy (exact) of img and lab. */
static void reoriented(const mk_image *img, const mk_image *lab, const char *code, mk_image **ri,
                       mk_image **rl)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_reorient(&ctx, img, code, ri), MK_OK);
    assert_int_equal(mk_reorient(&ctx, lab, code, rl), MK_OK);
    char c[4];
    mk_geom_orient_code(&(*ri)->geom, c);
    assert_string_equal(c, code);
}

static void data_params(mk_data_params *p, const char *manifest)
{
    mk_data_defaults(p);
    p->manifest = manifest;
    p->patch[0] = 8;
    p->patch[1] = 8;
    p->classes = 3; /* labels 1 and 2 */
}

/* ---------------------------------------------------------------- prepare / restore */

static void test_prepare_restore(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img, *lab;
    make_volume(&img, &lab);
    char code[4];
    mk_geom_orient_code(&img->geom, code);
    assert_string_equal(code, "LPS");
    mk_data_params p;
    data_params(&p, "unused");
    assert_int_equal(mk_data_axis(&p), 2); /* axial in RAS: across S-I, the third axis */
    p.slice_axis = 4;                      /* coronal */
    assert_int_equal(mk_data_axis(&p), 1);
    p.slice_axis = 5; /* sagittal */
    assert_int_equal(mk_data_axis(&p), 0);
    p.orientation = "SAR";
    assert_int_equal(mk_data_axis(&p), 2);
    p.slice_axis = 3; /* axial: the S of SAR */
    assert_int_equal(mk_data_axis(&p), 0);
    p.slice_axis = 1; /* a voxel axis: as it is */
    assert_int_equal(mk_data_axis(&p), 1);
    p.orientation = "RAS";
    p.slice_axis = 3;

    /* reorientation: RAS voxel (i, j, k) is LPS voxel (19 - i, 15 - j, k), at the same place */
    mk_image *w = NULL;
    assert_int_equal(mk_data_prepare(&ctx, &p, img, 0, &w), MK_OK);
    mk_geom_orient_code(&w->geom, code);
    assert_string_equal(code, "RAS");
    for (int k = 0; k < 6; k++)
        for (int j = 0; j < 16; j++)
            for (int i = 0; i < 20; i++)
                assert_true(mk_image_get(w, i + 20 * (j + 16 * k)) ==
                            mk_image_get(img, (19 - i) + 20 * ((15 - j) + 16 * k)));
    double a[4][4], b[4][4];
    mk_geom_affine_lps(&img->geom, a);
    mk_geom_affine_lps(&w->geom, b);
    /* voxel (0,0,0) of w is voxel (19,15,0) of img */
    for (int r = 0; r < 3; r++)
        assert_float_equal(b[r][3], a[r][0] * 19 + a[r][1] * 15 + a[r][3], 1e-9);
    /* a mask predicted on w goes back exactly, with the input's header */
    mk_image *wl = NULL, *back = NULL;
    assert_int_equal(mk_data_prepare(&ctx, &p, lab, 1, &wl), MK_OK);
    assert_int_equal(mk_data_restore(&ctx, &p, wl, lab, &back), MK_OK);
    assert_memory_equal(back->data, lab->data, (size_t)mk_image_nvox(lab));
    assert_memory_equal(&back->geom, &lab->geom, sizeof lab->geom);
    mk_image_free(back);
    mk_image_free(wl);
    mk_image_free(w);

    /* resampling to 0.5 mm along x: images linear, labels per label; back onto the input grid
     * with the nearest label the mask is the input's again (a 2x refinement is exact) */
    p.spacing[0] = 0.5;
    assert_int_equal(mk_data_prepare(&ctx, &p, img, 0, &w), MK_OK);
    assert_int_equal(w->dim[0], 40);
    assert_int_equal(w->dim[1], 16);
    assert_float_equal(w->geom.spacing[0], 0.5, 1e-12);
    assert_int_equal(mk_data_prepare(&ctx, &p, lab, 1, &wl), MK_OK);
    assert_int_equal(mk_data_restore(&ctx, &p, wl, lab, &back), MK_OK);
    for (int a3 = 0; a3 < 3; a3++)
        assert_int_equal(back->dim[a3], lab->dim[a3]);
    assert_memory_equal(&back->geom, &lab->geom, sizeof lab->geom);
    int64_t diff = 0;
    for (int64_t q = 0; q < mk_image_nvox(lab); q++)
        diff += mk_image_get(back, q) != mk_image_get(lab, q);
    assert_int_equal(diff, 0);
    mk_image_free(back);
    mk_image_free(wl);
    mk_image_free(w);
    mk_image_free(img);
    mk_image_free(lab);
}

/* ---------------------------------------------------------------- same slices, same model */

static void load(const mk_data_params *p, mk_slices *s)
{
    mk_ctx ctx;
    ctx_capture(&ctx);
    if (mk_data_load(&ctx, p, "CT", "train", 1, 9, s) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
}

static void assert_same_slices(const mk_slices *a, const mk_slices *b)
{
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->cw, b->cw);
    assert_int_equal(a->ch, b->ch);
    size_t plane = (size_t)a->cw * (size_t)a->ch * (size_t)a->n;
    assert_memory_equal(a->img, b->img, plane * sizeof(float));
    assert_memory_equal(a->lab, b->lab, plane * sizeof(int32_t));
    assert_memory_equal(a->ew, b->ew, (size_t)a->n * sizeof(int32_t));
    assert_memory_equal(a->present, b->present, (size_t)a->n * sizeof(uint16_t));
}

static const char *MAN_TEXT = "id,modality,image,label,split,domain\n"
                              "c1,CT,%s.nii.gz,%s_label.nii.gz,train,a\n"
                              "c2,CT,%s.nii.gz,%s_label.nii.gz,train,a\n"
                              "v1,CT,%s.nii.gz,%s_label.nii.gz,val,a\n";

static void orientation_fixture(char *dir, size_t n, char *man_same, char *man_mixed)
{
    subdir(dir, n, "orient");
    mk_image *img, *lab, *ri, *rl, *si, *sl;
    make_volume(&img, &lab);
    reoriented(img, lab, "LSA", &ri, &rl);
    reoriented(img, lab, "RAS", &si, &sl);
    write_pair(dir, "lps", img, lab);
    write_pair(dir, "lsa", ri, rl);
    write_pair(dir, "ras", si, sl);
    char text[1200];
    snprintf(man_same, 900, "%s/same.csv", dir);
    snprintf(text, sizeof text, MAN_TEXT, "lps", "lps", "lps", "lps", "lps", "lps");
    write_text(man_same, text);
    snprintf(man_mixed, 900, "%s/mixed.csv", dir);
    snprintf(text, sizeof text, MAN_TEXT, "ras", "ras", "lsa", "lsa", "lps", "lps");
    write_text(man_mixed, text);
    mk_image_free(img);
    mk_image_free(lab);
    mk_image_free(ri);
    mk_image_free(rl);
    mk_image_free(si);
    mk_image_free(sl);
}

static void test_mixed_orientation_slices(void **state)
{
    (void)state;
    char dir[700], same[900], mixed[900];
    orientation_fixture(dir, sizeof dir, same, mixed);
    mk_data_params p;
    mk_slices a, b;
    data_params(&p, same);
    load(&p, &a);
    assert_null(strstr(g_log, "different orientations"));
    p.manifest = mixed;
    load(&p, &b);
    assert_null(strstr(g_log, "different orientations"));
    assert_true(a.random);
    assert_true(a.n > 0 && a.n_fg > 0);
    assert_same_slices(&a, &b);
    mk_slices_free(&a);
    mk_slices_free(&b);
    /* a voxel axis cuts the LSA copy along another plane, and says so */
    p.slice_axis = 2;
    load(&p, &b);
    assert_non_null(strstr(g_log, "different orientations"));
    mk_slices_free(&b);
}

static void set_row(const mk_method *m, void *cfg, const char *name, int iv, const char *sv)
{
    const mk_param_row *R = m->uses[0].section->rows;
    for (int r = 0; r < m->uses[0].section->nrows; r++)
        if (!strcmp(R[r].name, name)) {
            char *f = (char *)cfg + m->uses[0].offset + R[r].offset;
            if (sv)
                *(const char **)f = sv;
            else
                *(int *)f = iv;
            return;
        }
    fail_msg("no key %s", name);
}

static void train_supervised(const char *manifest, const char *run, mk_unet **out,
                             mk_train_stats *stats)
{
    mk_ctx ctx;
    ctx_capture(&ctx);
    mk_stage_common c;
    mk_stage_common_defaults(&c);
    c.run_dir = run;
    c.seed = 4;
    c.threads = 1;
    c.data.manifest = manifest;
    c.data.patch[0] = c.data.patch[1] = 8;
    c.unet.base = 4;
    c.unet.levels = 2;
    c.unet.classes = 3;
    c.log_every = 1000;
    c.checkpoint_every = 1000;
    c.val_every = 4;
    assert_int_equal(mk_stage_common_finish(&ctx, &c), MK_OK);
    const mk_method *m = mk_method_find("supervised");
    assert_non_null(m);
    void *cfg = calloc(1, m->cfg_size);
    assert_non_null(cfg);
    mk_method_defaults(m, cfg);
    set_row(m, cfg, "iterations", 12, NULL);
    set_row(m, cfg, "batch", 3, NULL);
    set_row(m, cfg, "modality", 0, "CT");
    if (mk_method_train(&ctx, m, &c, cfg, stats) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    free(cfg);
    char path[900];
    snprintf(path, sizeof path, "%s/models/supervised_student.h5", run);
    assert_int_equal(mk_unet_new(&ctx, &c.unet, 0, out), MK_OK);
    assert_int_equal(mk_model_load(&ctx, path, "params", mk_unet_params(*out), NULL), MK_OK);
}

static void test_mixed_orientation_model(void **state)
{
    (void)state;
    char dir[700], same[900], mixed[900], r1[900], r2[900];
    orientation_fixture(dir, sizeof dir, same, mixed);
    snprintf(r1, sizeof r1, "%s/run_same", dir);
    snprintf(r2, sizeof r2, "%s/run_mixed", dir);
    mk_unet *a, *b;
    mk_train_stats sa, sb;
    train_supervised(same, r1, &a, &sa);
    train_supervised(mixed, r2, &b, &sb);
    mk_nn_params *pa = mk_unet_params(a), *pb = mk_unet_params(b);
    assert_int_equal(mk_nn_params_count(pa), mk_nn_params_count(pb));
    for (int i = 0; i < mk_nn_params_count(pa); i++) {
        mk_param *x = mk_nn_params_at(pa, i), *y = mk_nn_params_at(pb, i);
        assert_memory_equal(x->value.data, y->value.data,
                            (size_t)mk_tensor_numel(&x->value) * sizeof(float));
    }
    /* validation ran every 4 iterations (4, 8, 12) on the val case, with a best copy */
    assert_int_equal(sa.validations, 3);
    assert_true(sa.val_best >= sa.val_last);
    assert_true(sa.val_best >= 0 && sa.val_best <= 1);
    assert_float_equal(sa.val_best, sb.val_best, 0);
    char path[1000];
    snprintf(path, sizeof path, "%s/models/supervised_student_best.h5", r1);
    assert_true(mk_fs_is_file(path));
    snprintf(path, sizeof path, "%s/checkpoints/supervised.validation.json", r1);
    char *text = NULL;
    size_t len;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_fs_read_all(&ctx, path, &text, &len), MK_OK);
    assert_non_null(strstr(text, "\"best_iteration\""));
    assert_non_null(strstr(text, "\"iteration\":\t12"));
    free(text);
    mk_unet_free(a);
    mk_unet_free(b);
}

/* ---------------------------------------------------------------- sampler */

static void test_sampler_foreground(void **state)
{
    (void)state;
    char dir[700], man[900];
    subdir(dir, sizeof dir, "sampler");
    mk_image *img, *lab;
    make_volume(&img, &lab);
    write_pair(dir, "v", img, lab);
    mk_image_free(img);
    mk_image_free(lab);
    snprintf(man, sizeof man, "%s/m.csv", dir);
    write_text(man, "id,modality,image,label,split\nc1,CT,v.nii.gz,v_label.nii.gz,train\n");
    mk_data_params p;
    data_params(&p, man);
    p.patch[0] = p.patch[1] = 4;
    p.empty_ratio = 10; /* every body slice */
    mk_slices s;
    load(&p, &s);
    /* body slices k = 1..5, each the body box 16 x 13 (>= the patch) */
    assert_int_equal(s.n, 5);
    assert_int_equal(s.n_fg, 3);
    for (int i = 0; i < s.n; i++) {
        assert_int_equal(s.ew[i], 16);
        assert_int_equal(s.eh[i], 13);
    }
    mk_rng r;
    mk_rng_seed(&r, 3);
    float x[16];
    int32_t y[16];
    int forced_fg = 0, free_fg = 0, nfree = 0, cls2 = 0;
    const int batches = 400, batch = 3; /* round(3 x 0.33) = 1 forced sample: the last */
    for (int t = 0; t < batches; t++)
        for (int b = 0; b < batch; b++) {
            mk_slices_sample(&s, &r, b, batch, x, y, NULL);
            int any = 0;
            for (int q = 0; q < 16; q++) {
                any |= y[q] > 0;
                cls2 |= y[q] == 2;
            }
            if (b == batch - 1)
                forced_fg += any;
            else {
                free_fg += any;
                nfree++;
            }
        }
    print_message("forced samples with a structure: %d / %d; free ones: %d / %d\n", forced_fg,
                  batches, free_fg, nfree);
    assert_int_equal(forced_fg, batches);
    assert_true(free_fg < nfree / 2);
    assert_true(cls2); /* the small structure 2 is drawn too (a random class of the slice) */
    /* foreground_share 0: no forced sample */
    s.fg_share = 0;
    forced_fg = 0;
    for (int t = 0; t < batches; t++) {
        mk_slices_sample(&s, &r, 2, 3, x, y, NULL);
        int any = 0;
        for (int q = 0; q < 16; q++)
            any |= y[q] > 0;
        forced_fg += any;
    }
    assert_true(forced_fg < batches / 2);
    mk_slices_free(&s);
}

/* ---------------------------------------------------------------- manifests */

static void test_holdout(void **state)
{
    (void)state;
    char dir[700], man[900], rev[900];
    subdir(dir, sizeof dir, "holdout");
    char text[4000] = "id,modality,image,label,split\n", rtext[4000] = "";
    char lines[14][100];
    for (int i = 0; i < 14; i++) {
        snprintf(lines[i], sizeof lines[i], "%s%d,%s,x.nii.gz,%s,train\n", i < 10 ? "ct" : "mr", i,
                 i < 10 ? "CT" : "MR", i == 3 ? "" : "y.nii.gz");
        strcat(text, lines[i]);
    }
    strcpy(rtext, "id,modality,image,label,split\n");
    for (int i = 13; i >= 0; i--)
        strcat(rtext, lines[i]);
    snprintf(man, sizeof man, "%s/m.csv", dir);
    snprintf(rev, sizeof rev, "%s/r.csv", dir);
    write_text(man, text);
    write_text(rev, rtext);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_data_params p;
    data_params(&p, man);
    mk_manifest *a, *b;
    assert_int_equal(mk_data_manifest(&ctx, &p, &a), MK_OK);
    p.manifest = rev;
    assert_int_equal(mk_data_manifest(&ctx, &p, &b), MK_OK);
    int nct = 0, nmr = 0;
    for (int r = 0; r < a->nrows; r++) {
        const mk_manifest_row *w = &a->rows[r];
        int j = mk_manifest_find(b, w->id);
        assert_string_equal(w->split, b->rows[j].split); /* the row order does not matter */
        if (!strcmp(w->split, "val")) {
            assert_non_null(w->label_path); /* only labelled rows are held out */
            nct += !strcmp(w->modality, "CT");
            nmr += !strcmp(w->modality, "MR");
        }
    }
    assert_int_equal(nct, 2); /* round(0.2 x 9 labelled CT) */
    assert_int_equal(nmr, 1); /* round(0.8) */
    /* another seed, another choice (for these ids and seeds) */
    p.manifest = man;
    p.split_seed = 777;
    mk_manifest *c;
    assert_int_equal(mk_data_manifest(&ctx, &p, &c), MK_OK);
    int same = 1;
    for (int r = 0; r < a->nrows; r++)
        same &= !strcmp(a->rows[r].split, c->rows[r].split);
    assert_false(same);
    mk_manifest_free(c);
    /* no hold-out with val_fraction 0, or when the manifest has a val split */
    p.val_fraction = 0;
    assert_int_equal(mk_data_manifest(&ctx, &p, &c), MK_OK);
    for (int r = 0; r < c->nrows; r++)
        assert_string_equal(c->rows[r].split, "train");
    mk_manifest_free(c);
    strcat(text, "v1,CT,x.nii.gz,y.nii.gz,val\n");
    write_text(man, text);
    p.val_fraction = 0.5;
    assert_int_equal(mk_data_manifest(&ctx, &p, &c), MK_OK);
    for (int r = 0; r < c->nrows - 1; r++)
        assert_string_equal(c->rows[r].split, "train");
    mk_manifest_free(c);
    mk_manifest_free(a);
    mk_manifest_free(b);
}

static void test_dataset_folder(void **state)
{
    (void)state;
    char dir[700], sub[900], path[1000];
    subdir(dir, sizeof dir, "Dataset502_Geom");
    snprintf(sub, sizeof sub, "%s/imagesTr", dir);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_fs_mkdirs(&ctx, sub), MK_OK);
    snprintf(sub, sizeof sub, "%s/labelsTr", dir);
    assert_int_equal(mk_fs_mkdirs(&ctx, sub), MK_OK);
    mk_image *img, *lab;
    make_volume(&img, &lab);
    const char *ids[3] = {"g1", "g2", "g3"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/imagesTr/%s_0000.nii.gz", dir, ids[i]);
        assert_int_equal(mk_io_nifti_write(&ctx, path, img), MK_OK);
        snprintf(path, sizeof path, "%s/labelsTr/%s.nii.gz", dir, ids[i]);
        assert_int_equal(mk_io_nifti_write(&ctx, path, lab), MK_OK);
    }
    mk_image_free(img);
    mk_image_free(lab);
    snprintf(path, sizeof path, "%s/dataset.json", dir);
    write_text(path, "{\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 0, "
                     "\"a\": 1, \"b\": 2}, \"numTraining\": 3, \"file_ending\": \".nii.gz\"}\n");
    mk_data_params p;
    data_params(&p, dir);
    mk_manifest *m = NULL, *m2 = NULL;
    if (mk_data_manifest(&ctx, &p, &m) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    assert_int_equal(m->nrows, 3);
    int nval = 0;
    for (int r = 0; r < 3; r++) {
        assert_string_equal(m->rows[r].modality, "CT");
        assert_non_null(m->rows[r].label_path);
        nval += !strcmp(m->rows[r].split, "val");
    }
    assert_int_equal(nval, 1); /* round(0.6) */
    p.manifest = path;         /* dataset.json itself */
    assert_int_equal(mk_data_manifest(&ctx, &p, &m2), MK_OK);
    for (int r = 0; r < 3; r++)
        assert_string_equal(m->rows[r].split, m2->rows[r].split);
    mk_manifest_free(m2);
    /* the case table says modality and domain of a case */
    char table[900];
    snprintf(table, sizeof table, "%s/cases.csv", dir);
    write_text(table, "id,modality,domain\ng2,MR,site-b\n");
    p.case_table = table;
    assert_int_equal(mk_data_manifest(&ctx, &p, &m2), MK_OK);
    int r2 = mk_manifest_find(m2, "g2");
    assert_string_equal(m2->rows[r2].modality, "MR");
    assert_string_equal(m2->rows[r2].domain, "site-b");
    assert_string_equal(m2->rows[mk_manifest_find(m2, "g1")].modality, "CT");
    mk_manifest_free(m2);
    write_text(table, "id,modality\ng9,MR\n");
    assert_int_equal(mk_data_manifest(&ctx, &p, &m2), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "cases.csv:2: column id"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "g9"));
    write_text(table, "case,modality\ng1,MR\n");
    assert_int_equal(mk_data_manifest(&ctx, &p, &m2), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "the column id"));
    p.case_table = NULL;
    /* the folder trains: slices from the train rows */
    mk_slices s;
    p.manifest = dir;
    load(&p, &s);
    assert_int_equal(s.volumes, 2);
    mk_slices_free(&s);
    mk_manifest_free(m);
}

/* ---------------------------------------------------------------- warnings */

static void test_warnings(void **state)
{
    (void)state;
    char dir[700], man[900];
    subdir(dir, sizeof dir, "warn");
    mk_image *img, *lab;
    make_volume(&img, &lab);
    write_pair(dir, "a", img, lab);
    for (int a = 0; a < 3; a++) {
        img->geom.spacing[a] *= 2;
        lab->geom.spacing[a] *= 2;
    }
    write_pair(dir, "b", img, lab);
    mk_image_free(img);
    mk_image_free(lab);
    snprintf(man, sizeof man, "%s/m.csv", dir);
    write_text(man, "id,modality,image,label,split\nc1,CT,a.nii.gz,a_label.nii.gz,train\n"
                    "c2,CT,b.nii.gz,b_label.nii.gz,train\nv,CT,a.nii.gz,a_label.nii.gz,val\n");
    mk_data_params p;
    data_params(&p, man);
    mk_slices s;
    load(&p, &s);
    assert_non_null(strstr(g_log, "differ in spacing"));
    mk_slices_free(&s);
    p.spacing[0] = p.spacing[1] = 1.0;
    p.spacing[2] = 2.0;
    load(&p, &s);
    assert_null(strstr(g_log, "differ in spacing"));
    mk_slices_free(&s);
    /* a structure no training slice holds */
    p.nlabels = 2;
    p.label_values[0] = 1;
    p.label_values[1] = 5;
    load(&p, &s);
    assert_non_null(strstr(g_log, "holds structure label_5 (label 5)"));
    mk_slices_free(&s);
    /* a label on another grid is an error naming the row */
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    write_text(man, "id,modality,image,label,split\nc1,CT,a.nii.gz,b_label.nii.gz,train\n");
    assert_int_equal(mk_data_load(&ctx, &p, "CT", "train", 1, 9, &s), MK_ERR_GEOMETRY);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "m.csv:2: column label"));
}

static int setup(void **state)
{
    (void)state;
    return mk_test_tmp_make(g_tmp, sizeof g_tmp, "geometry");
}

static int teardown(void **state)
{
    (void)state;
    mk_test_tmp_remove(g_tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prepare_restore),
        cmocka_unit_test(test_mixed_orientation_slices),
        cmocka_unit_test(test_mixed_orientation_model),
        cmocka_unit_test(test_sampler_foreground),
        cmocka_unit_test(test_holdout),
        cmocka_unit_test(test_dataset_folder),
        cmocka_unit_test(test_warnings),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
