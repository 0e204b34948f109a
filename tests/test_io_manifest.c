/* Manifests: CSV parsing (quoting, BOM, CRLF, extra columns), validation errors naming file:line
 * and column, write/read round trip, nnU-Net v2 and MSD import, file and grid checks (the grid
 * mismatch is built from two NIfTI files written here with different geometry). */
#include "test_io_util.h"

#include "io/mk_image.h"
#include "io/mk_manifest.h"
#include "io/mk_nifti.h"

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_parse_quoting_and_roundtrip(void **state)
{
    (void)state;
    char p[1200], q[1200];
    tio_path(p, sizeof p, "m.csv");
    write_text(p, "\xEF\xBB\xBFid,modality,image,label,split,domain,note\r\n"
                  "c1,CT,imgs/c1.nii.gz,labs/c1.nii.gz,train,siteA,\"a, \"\"quoted\"\" note\"\r\n"
                  "\r\n"
                  "c2,MR,\"/abs/with,comma.nii\",,test,siteB,\"two\nlines\"\n"
                  "c3,CT,imgs/c3.nii,labs/c3.nii,val,,plain\n");
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_manifest *m = NULL;
    if (mk_manifest_read(&ctx, p, &m) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    assert_int_equal(m->nrows, 3);
    assert_int_equal(m->nextra, 1);
    assert_string_equal(m->extra_names[0], "note");
    assert_int_equal(mk_manifest_extra_index(m, "note"), 0);
    assert_int_equal(mk_manifest_extra_index(m, "label"), -1); /* a fixed column, not an extra */
    assert_int_equal(mk_manifest_extra_index(m, "nte"), -1);
    assert_string_equal(m->rows[0].extra[0], "a, \"quoted\" note");
    assert_string_equal(m->rows[1].image, "/abs/with,comma.nii");
    assert_string_equal(m->rows[1].image_path, "/abs/with,comma.nii");
    assert_null(m->rows[1].label_path);
    assert_string_equal(m->rows[1].extra[0], "two\nlines");
    assert_int_equal(m->rows[0].line, 2);
    assert_int_equal(m->rows[1].line, 4);
    assert_int_equal(m->rows[2].line, 6);
    snprintf(q, sizeof q, "%s/imgs/c1.nii.gz", g_tmp);
    assert_string_equal(m->rows[0].image_path, q);
    assert_string_equal(m->rows[2].split, "val");
    assert_int_equal(mk_manifest_find(m, "c3"), 2);
    assert_int_equal(mk_manifest_find(m, "zz"), -1);
    /* write and read back: same content */
    tio_path(q, sizeof q, "m2.csv");
    assert_int_equal(mk_manifest_write(&ctx, q, m), MK_OK);
    mk_manifest *m2 = NULL;
    if (mk_manifest_read(&ctx, q, &m2) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    assert_int_equal(m2->nrows, 3);
    for (int r = 0; r < 3; r++) {
        assert_string_equal(m2->rows[r].id, m->rows[r].id);
        assert_string_equal(m2->rows[r].image_path, m->rows[r].image_path);
        assert_string_equal(m2->rows[r].extra[0], m->rows[r].extra[0]);
        assert_string_equal(m2->rows[r].domain, m->rows[r].domain);
    }
    assert_string_equal(m2->rows[0].image, "imgs/c1.nii.gz"); /* written relative again */
    mk_manifest_free(m2);
    mk_manifest_free(m);
}

static void expect_err(const char *text, const char *want1, const char *want2)
{
    char p[1200];
    tio_path(p, sizeof p, "bad.csv");
    write_text(p, text);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_manifest *m = (mk_manifest *)0x1;
    assert_int_equal(mk_manifest_read(&ctx, p, &m), MK_ERR_FORMAT);
    assert_null(m);
    const char *msg = mk_ctx_errmsg(&ctx);
    if (!strstr(msg, want1) || !strstr(msg, want2) || !strstr(msg, p))
        fail_msg("'%s' should contain '%s' and '%s'", msg, want1, want2);
}

static void test_validation_errors(void **state)
{
    (void)state;
    expect_err("id,modality,label\nc1,CT,x.nii\n", "bad.csv:1", "column image");
    expect_err("id,image,split\nc1,a.nii,train\nc2,b.nii\n", "bad.csv:3", "expected 3 fields");
    expect_err("id,image,split\nc1,a.nii,training\n", "bad.csv:2", "column split");
    expect_err("id,image\nc1,a.nii\nc2,b.nii\nc1,c.nii\n", "bad.csv:4", "column id");
    expect_err("id,image\nc1,\"a.nii\n", "bad.csv:2", "closing '\"'");
    expect_err("id,image\n,a.nii\n", "bad.csv:2", "column id");
    expect_err("id,image\nc1,\n", "bad.csv:2", "column image");
    expect_err("id,image,id\nc1,a,b\n", "bad.csv:1", "column id");
    expect_err("", "bad.csv:1", "header");
    expect_err("id,image\nc1,\"a\"x\n", "bad.csv:2", "closing quote");
}

static void write_nii(const char *path, double sx, int64_t nx)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {nx, 5, 4};
    mk_image *img = NULL;
    assert_int_equal(mk_image_new(&ctx, MK_DT_UINT8, 3, dim, &img), MK_OK);
    img->geom.spacing[0] = sx;
    assert_int_equal(mk_io_nifti_write(&ctx, path, img), MK_OK);
    mk_image_free(img);
}

static void test_grid_check(void **state)
{
    (void)state;
    char p[1200], d[1200];
    snprintf(d, sizeof d, "mkdir -p '%s/g'", g_tmp);
    assert_int_equal(system(d), 0);
    write_nii(tio_path(p, sizeof p, "g/img.nii.gz"), 1.0, 6);
    write_nii(tio_path(p, sizeof p, "g/lab_ok.nii.gz"), 1.0, 6);
    write_nii(tio_path(p, sizeof p, "g/lab_sp.nii.gz"), 1.5, 6);
    write_nii(tio_path(p, sizeof p, "g/lab_dim.nii.gz"), 1.0, 7);
    tio_path(p, sizeof p, "g/m.csv");
    write_text(p, "id,image,label\n"
                  "ok,img.nii.gz,lab_ok.nii.gz\n"
                  "sp,img.nii.gz,lab_sp.nii.gz\n"
                  "dim,img.nii.gz,lab_dim.nii.gz\n"
                  "nolabel,img.nii.gz,\n"
                  "missing,img.nii.gz,nothere.nii.gz\n");
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_manifest *m = NULL;
    assert_int_equal(mk_manifest_read(&ctx, p, &m), MK_OK);
    assert_int_equal(mk_manifest_check_grid(&ctx, m, 0), MK_OK);
    assert_int_equal(mk_manifest_check_grid(&ctx, m, 1), MK_ERR_GEOMETRY);
    const char *msg = mk_ctx_errmsg(&ctx);
    if (!strstr(msg, "m.csv:3") || !strstr(msg, "field spacing") || !strstr(msg, "lab_sp.nii.gz"))
        fail_msg("%s", msg);
    assert_int_equal(mk_manifest_check_grid(&ctx, m, 2), MK_ERR_GEOMETRY);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "m.csv:4"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "field dim"));
    assert_int_equal(mk_manifest_check_grid(&ctx, m, 3), MK_OK);
    assert_int_equal(mk_manifest_check_grid(&ctx, m, 4), MK_ERR_IO);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "m.csv:6"));
    assert_int_equal(mk_manifest_check_files(&ctx, m), MK_ERR_IO);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "m.csv:6: column label"));
    mk_manifest_free(m);
}

static void test_import_nnunet_v2_and_msd(void **state)
{
    (void)state;
    char cmd[4096], p[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/ds/imagesTr' '%s/ds/labelsTr' '%s/ds/imagesTs'", g_tmp,
             g_tmp, g_tmp);
    assert_int_equal(system(cmd), 0);
    tio_path(p, sizeof p, "ds/dataset.json");
    write_text(p, "{\"channel_names\": {\"0\": \"T2\", \"1\": \"ADC\"},\n"
                  " \"labels\": {\"background\": 0, \"prostate\": 1},\n"
                  " \"numTraining\": 2, \"file_ending\": \".nii.gz\"}\n");
    const char *files[] = {"imagesTr/pro_002_0000.nii.gz", "imagesTr/pro_002_0001.nii.gz",
                           "imagesTr/pro_001_0000.nii.gz", "imagesTr/pro_001_0001.nii.gz",
                           "labelsTr/pro_001.nii.gz",      "labelsTr/pro_002.nii.gz",
                           "imagesTs/pro_009_0000.nii.gz", "imagesTs/pro_009_0001.nii.gz"};
    for (int i = 0; i < 8; i++) {
        char f[1300];
        snprintf(f, sizeof f, "ds/%s", files[i]);
        write_nii(tio_path(p, sizeof p, f), 1.0, 4);
    }
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_manifest *m = NULL;
    char ds[1200];
    tio_path(ds, sizeof ds, "ds");
    if (mk_manifest_import_nnunet(&ctx, ds, &m) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    assert_int_equal(m->nrows, 3);
    assert_string_equal(m->rows[0].id, "pro_001");
    assert_string_equal(m->rows[0].split, "train");
    assert_string_equal(m->rows[0].modality, "T2");
    assert_string_equal(m->rows[0].label, "labelsTr/pro_001.nii.gz");
    assert_int_equal(m->nextra, 1);
    assert_string_equal(m->extra_names[0], "image_0001");
    assert_non_null(strstr(m->rows[0].extra[0], "imagesTr/pro_001_0001.nii.gz"));
    assert_string_equal(m->rows[2].id, "pro_009");
    assert_string_equal(m->rows[2].split, "test");
    assert_null(m->rows[2].label_path);
    assert_int_equal(mk_manifest_check_files(&ctx, m), MK_OK);
    for (int r = 0; r < 3; r++)
        assert_int_equal(mk_manifest_check_grid(&ctx, m, r), MK_OK);
    /* dataset.json's label names, the folder's name, the layout */
    assert_string_equal(m->layout, "nnunet-v2");
    assert_string_equal(m->name, "ds");
    assert_int_equal(m->nlabels, 2);
    assert_int_equal(m->label_values[0], 0);
    assert_string_equal(m->label_names[0], "background");
    assert_int_equal(m->label_values[1], 1);
    assert_string_equal(m->label_names[1], "prostate");
    {
        /* the dataset.json path names the same dataset */
        mk_manifest *mj = NULL;
        char jp[1300];
        snprintf(jp, sizeof jp, "%s/dataset.json", ds);
        if (mk_manifest_import_nnunet(&ctx, jp, &mj) != MK_OK)
            fail_msg("%s", mk_ctx_errmsg(&ctx));
        assert_int_equal(mj->nrows, 3);
        assert_string_equal(mj->rows[1].image_path, m->rows[1].image_path);
        assert_string_equal(mj->name, "ds");
        mk_manifest_free(mj);
        /* a folder that does not exist: the path and what was expected */
        snprintf(jp, sizeof jp, "%s/no-such-dataset", g_tmp);
        assert_int_equal(mk_manifest_import_nnunet(&ctx, jp, &mj), MK_ERR_IO);
        assert_non_null(strstr(mk_ctx_errmsg(&ctx), "no-such-dataset"));
        assert_non_null(strstr(mk_ctx_errmsg(&ctx), "expected an nnU-Net v2 or MSD dataset"));
    }
    /* export as CSV and read it back */
    char out[1200];
    assert_int_equal(mk_manifest_write(&ctx, tio_path(out, sizeof out, "ds/manifest.csv"), m),
                     MK_OK);
    mk_manifest *m2 = NULL;
    assert_int_equal(mk_manifest_read(&ctx, out, &m2), MK_OK);
    assert_int_equal(m2->nrows, 3);
    assert_string_equal(m2->rows[1].image_path, m->rows[1].image_path);
    mk_manifest_free(m2);
    mk_manifest_free(m);

    /* a missing label of a training case */
    snprintf(cmd, sizeof cmd, "rm '%s/ds/labelsTr/pro_002.nii.gz'", g_tmp);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(mk_manifest_import_nnunet(&ctx, ds, &m), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "labelsTr/pro_002.nii.gz"));

    /* MSD layout */
    tio_path(p, sizeof p, "ds/dataset.json");
    write_text(
        p, "{\"name\": \"Prostate\", \"modality\": {\"0\": \"T2\", \"1\": \"ADC\"},\n"
           " \"labels\": {\"0\": \"background\", \"2\": \"transition\", \"1\": \"peripheral\"},\n"
           " \"training\": [{\"image\": \"./imagesTr/pro_001_0000.nii.gz\", \"label\": "
           "\"./labelsTr/pro_001.nii.gz\"}],\n"
           " \"test\": [\"./imagesTs/pro_009_0000.nii.gz\"]}\n");
    assert_int_equal(mk_manifest_import_nnunet(&ctx, ds, &m), MK_OK);
    assert_int_equal(m->nrows, 2);
    assert_string_equal(m->rows[0].id, "pro_001_0000");
    assert_string_equal(m->rows[0].label, "labelsTr/pro_001.nii.gz");
    assert_string_equal(m->rows[1].split, "test");
    assert_string_equal(m->layout, "msd");
    assert_int_equal(m->nlabels, 3); /* MSD {"value": "name"}, sorted by value */
    assert_int_equal(m->label_values[1], 1);
    assert_string_equal(m->label_names[1], "peripheral");
    assert_int_equal(m->label_values[2], 2);
    assert_string_equal(m->label_names[2], "transition");
    mk_manifest_free(m);
    /* a label value outside 0..255 names the field */
    write_text(p, "{\"training\": [], \"labels\": {\"background\": 0, \"tumour\": 300}}\n");
    assert_int_equal(mk_manifest_import_nnunet(&ctx, ds, &m), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "field labels.tumour"));
    /* broken JSON names the file and line */
    write_text(p, "{\"name\": \"x\",\n \"training\": [ ,]}\n");
    assert_int_equal(mk_manifest_import_nnunet(&ctx, ds, &m), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "dataset.json:2"));
}

static void test_example_manifests(void **state)
{
    (void)state;
    const char *src = getenv("MK_SOURCE_DIR");
    char p[1200], shared[1200];
    snprintf(p, sizeof p, "%s/data-manifests/real-samples.csv", src ? src : ".");
    tio_shared(shared, sizeof shared, "data/real/README.md");
    if (!tio_exists(p) || !tio_exists(shared))
        fail_msg("%s or %s is missing (the shared/ data beside the checkout: MK_SHARED_DIR)", p,
                 shared);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_manifest *m = NULL;
    if (mk_manifest_read(&ctx, p, &m) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    assert_true(m->nrows >= 3);
    if (mk_manifest_check_files(&ctx, m) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    for (int r = 0; r < m->nrows; r++)
        if (mk_manifest_check_grid(&ctx, m, r) != MK_OK)
            fail_msg("%s", mk_ctx_errmsg(&ctx));
    mk_manifest_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_quoting_and_roundtrip),
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_grid_check),
        cmocka_unit_test(test_import_nnunet_v2_and_msd),
        cmocka_unit_test(test_example_manifests),
    };
    return cmocka_run_group_tests(tests, tio_setup, tio_cleanup);
}
