/* HDF5 helpers: tensors, images with geometry attributes, tables, attributes, groups; the plain
 * (contiguous) layout, string datasets and scalar attributes of checkpoints and reports; read back
 * by us and by h5py (independent reader), files written by h5py read by us; atomic writes; bad
 * files. */
#include "test_io_util.h"

#include <math.h>

#include "io/mk_hdf5.h"
#include "io/mk_image.h"

static void test_tensor_image_table_roundtrip_and_h5py(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char p[1200];
    tio_path(p, sizeof p, "a.h5");
    mk_h5_file *f = NULL;
    assert_int_equal(mk_h5_create(&ctx, p, &f), MK_OK);
    /* not visible under the final name before close */
    assert_false(tio_exists(p));

    int64_t shape[3] = {3, 4, 5};
    float t[60];
    for (int i = 0; i < 60; i++)
        t[i] = (float)i * 0.5f - 7;
    assert_int_equal(mk_h5_write_f32(&ctx, f, "/weights/conv1/w", 3, shape, t), MK_OK);
    mk_h5_write_opts o = {.gzip = 0, .chunk = {1, 4, 5}};
    int64_t s2[1] = {7};
    int32_t iv[7] = {-3, -2, -1, 0, 1, 2, 2147483647};
    assert_int_equal(mk_h5_write_tensor(&ctx, f, "/ints", MK_DT_INT32, 1, s2, iv, &o), MK_OK);
    /* writing the same dataset twice is an error naming it */
    assert_int_equal(mk_h5_write_tensor(&ctx, f, "/ints", MK_DT_INT32, 1, s2, iv, &o), MK_ERR_IO);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "/ints"));

    int64_t dim[3] = {6, 5, 4};
    mk_image *img = NULL;
    assert_int_equal(mk_image_new(&ctx, MK_DT_INT16, 3, dim, &img), MK_OK);
    for (int64_t k = 0; k < 4; k++)
        for (int64_t j = 0; j < 5; j++)
            for (int64_t i = 0; i < 6; i++)
                ((int16_t *)img->data)[i + 6 * (j + 5 * k)] = (int16_t)(100 * k + 10 * j + i);
    img->geom.spacing[0] = 0.5;
    img->geom.spacing[1] = 0.75;
    img->geom.spacing[2] = 3;
    img->geom.origin[0] = 1;
    img->geom.origin[1] = -2;
    img->geom.origin[2] = 3.5;
    double dir[9] = {0, 1, 0, -1, 0, 0, 0, 0, 1};
    memcpy(img->geom.direction, dir, sizeof dir);
    assert_int_equal(mk_h5_write_image(&ctx, f, "/cases/c001/image", img, NULL), MK_OK);

    char *ids[3] = {"c001", "c002", "caf\xc3\xa9"};
    double dice[3] = {0.91, NAN, 0.5};
    int64_t lab[3] = {1, 2, 3};
    mk_h5_column cols[3] = {{.name = "case_id", .type = MK_H5_COL_STR, .str = ids},
                            {.name = "dice", .type = MK_H5_COL_F64, .f64 = dice},
                            {.name = "label", .type = MK_H5_COL_I64, .i64 = lab}};
    mk_h5_table tab = {.ncols = 3, .nrows = 3, .cols = cols};
    assert_int_equal(mk_h5_write_table(&ctx, f, "/metrics/per_case", &tab), MK_OK);
    assert_int_equal(mk_h5_attr_set_str(&ctx, f, "/meta", "tool_version", "0.1.0"), MK_OK);
    double sd[2] = {1.5, -2};
    assert_int_equal(mk_h5_attr_set_f64(&ctx, f, "/meta", "pair", 2, sd), MK_OK);
    int64_t seed = 42;
    assert_int_equal(mk_h5_attr_set_i64(&ctx, f, "/meta", "seed", 1, &seed), MK_OK);
    assert_int_equal(mk_h5_close(&ctx, f), MK_OK);
    assert_true(tio_exists(p));

    /* read back */
    assert_int_equal(mk_h5_open(&ctx, p, &f), MK_OK);
    int rank;
    int64_t sh[MK_H5_MAX_RANK];
    void *data = NULL;
    assert_int_equal(
        mk_h5_read_tensor(&ctx, f, "/weights/conv1/w", MK_DT_FLOAT64, &rank, sh, &data), MK_OK);
    assert_int_equal(rank, 3);
    assert_int_equal(sh[0], 3);
    assert_int_equal(sh[2], 5);
    for (int i = 0; i < 60; i++)
        assert_true(((double *)data)[i] == (double)t[i]);
    free(data);
    mk_image *back = NULL;
    assert_int_equal(mk_h5_read_image(&ctx, f, "/cases/c001/image", &back), MK_OK);
    assert_int_equal(back->dtype, MK_DT_INT16);
    for (int d = 0; d < 3; d++)
        assert_int_equal(back->dim[d], img->dim[d]);
    assert_memory_equal(back->data, img->data, 6 * 5 * 4 * 2);
    assert_memory_equal(&back->geom, &img->geom, sizeof img->geom);
    mk_image_free(back);
    mk_h5_table *rt = NULL;
    assert_int_equal(mk_h5_read_table(&ctx, f, "/metrics/per_case", &rt), MK_OK);
    assert_int_equal(rt->ncols, 3);
    assert_int_equal(rt->nrows, 3);
    assert_string_equal(rt->cols[0].name, "case_id");
    assert_string_equal(rt->cols[0].str[2], "caf\xc3\xa9");
    assert_true(isnan(rt->cols[1].f64[1]));
    assert_int_equal(rt->cols[2].i64[2], 3);
    mk_h5_table_free(rt);
    char sv[64];
    assert_int_equal(mk_h5_attr_get_str(&ctx, f, "/meta", "tool_version", sv, sizeof sv), MK_OK);
    assert_string_equal(sv, "0.1.0");
    double rd[4];
    int got = 0;
    assert_int_equal(mk_h5_attr_get_f64(&ctx, f, "/meta", "pair", 4, rd, &got), MK_OK);
    assert_int_equal(got, 2);
    assert_true(rd[1] == -2);
    assert_int_equal(mk_h5_attr_get_str(&ctx, f, "/meta", "nope", sv, sizeof sv), MK_ERR_NOT_FOUND);
    assert_int_equal(mk_h5_read_tensor(&ctx, f, "/no/such", MK_DT_FLOAT32, &rank, sh, &data),
                     MK_ERR_NOT_FOUND);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "/no/such"));
    assert_int_equal(mk_h5_close(&ctx, f), MK_OK);

    /* h5py's independent view */
    tio_require_py("h5py");
    {
        const char *py =
            "import sys, h5py, numpy as np\n"
            "f = h5py.File(sys.argv[1], 'r')\n"
            "w = f['/weights/conv1/w'][...]\n"
            "assert w.shape == (3, 4, 5) and w.dtype == np.float32\n"
            "assert np.array_equal(w.ravel(), np.arange(60, dtype=np.float32) * 0.5 - 7)\n"
            "assert f['/weights/conv1/w'].compression == 'gzip'\n"
            "assert list(f['/ints'][...]) == [-3, -2, -1, 0, 1, 2, 2147483647]\n"
            "d = f['/cases/c001/image']\n"
            "assert d.shape == (4, 5, 6) and d.dtype == np.int16\n"
            "k, j, i = np.meshgrid(np.arange(4), np.arange(5), np.arange(6), indexing='ij')\n"
            "assert np.array_equal(d[...], 100 * k + 10 * j + i)\n"
            "a = d.attrs\n"
            "ao = a['axis_order']; ao = ao.decode() if isinstance(ao, bytes) else ao\n"
            "assert ao == 'k,j,i', ao\n"
            "assert list(a['spacing']) == [0.5, 0.75, 3.0] and list(a['origin']) == [1, -2, 3.5]\n"
            "assert list(a['direction']) == [0, 1, 0, -1, 0, 0, 0, 0, 1]\n"
            "t = f['/metrics/per_case'][...]\n"
            "assert t.dtype.names == ('case_id', 'dice', 'label'), t.dtype.names\n"
            "ids = [x.decode() if isinstance(x, bytes) else x for x in t['case_id']]\n"
            "assert ids == ['c001', 'c002', 'caf\\u00e9'], ids\n"
            "assert t['dice'][0] == 0.91 and np.isnan(t['dice'][1]) and list(t['label']) == [1, 2, "
            "3]\n"
            "m = f['/meta'].attrs\n"
            "assert int(m['seed']) == 42 and list(m['pair']) == [1.5, -2]\n"
            "v = m['tool_version']; v = v.decode() if isinstance(v, bytes) else v\n"
            "assert v == '0.1.0'\n";
        char args[1300];
        snprintf(args, sizeof args, "'%s'", p);
        assert_int_equal(tio_py(py, args), 0);
    }
    mk_image_free(img);
}

static void test_we_read_h5py(void **state)
{
    (void)state;
    tio_require_py("h5py");
    char p[1200], args[1300];
    tio_path(p, sizeof p, "py.h5");
    snprintf(args, sizeof args, "'%s'", p);
    const char *py =
        "import sys, h5py, numpy as np\n"
        "with h5py.File(sys.argv[1], 'w') as f:\n"
        "    x = (np.arange(2*3*4, dtype=np.float64).reshape(2, 3, 4) ** 1.5)\n"
        "    d = f.create_dataset('g/img', data=x.astype(np.float32), chunks=(1, 3, 4), "
        "compression='gzip')\n"
        "    d.attrs['axis_order'] = 'k,j,i'\n"
        "    d.attrs['spacing'] = [1.0, 2.0, 4.0]\n"
        "    d.attrs['origin'] = [-1.0, 0.0, 1.0]\n"
        "    d.attrs['direction'] = np.eye(3).ravel()\n"
        "    bad = f.create_dataset('g/fortran', data=x)\n"
        "    bad.attrs['axis_order'] = 'i,j,k'\n"
        "    dt = np.dtype([('name', h5py.string_dtype()), ('v', '<f8'), ('n', '<i4')])\n"
        "    f.create_dataset('tab', data=np.array([('a', 1.5, 7), ('bb', -2.0, 8)], dtype=dt))\n"
        "    f['g'].attrs['fixed'] = np.bytes_('fixed-len')\n";
    assert_int_equal(tio_py(py, args), 0);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_h5_file *f = NULL;
    assert_int_equal(mk_h5_open(&ctx, p, &f), MK_OK);
    mk_image *img = NULL;
    assert_int_equal(mk_h5_read_image(&ctx, f, "/g/img", &img), MK_OK);
    assert_int_equal(img->dim[0], 4);
    assert_int_equal(img->dim[2], 2);
    assert_int_equal(img->dtype, MK_DT_FLOAT32);
    /* voxel (i=3, j=2, k=1) = (1*12 + 2*4 + 3)^1.5 */
    assert_true(fabs(mk_image_get(img, 3 + 4 * (2 + 3 * 1)) - pow(23, 1.5)) < 1e-3);
    assert_true(img->geom.spacing[2] == 4.0 && img->geom.origin[0] == -1.0);
    mk_image_free(img);
    assert_int_equal(mk_h5_read_image(&ctx, f, "/g/fortran", &img), MK_ERR_UNSUPPORTED);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "field axis_order"));
    mk_h5_table *t = NULL;
    assert_int_equal(mk_h5_read_table(&ctx, f, "/tab", &t), MK_OK);
    assert_string_equal(t->cols[0].str[1], "bb");
    assert_true(t->cols[1].f64[1] == -2.0);
    assert_int_equal(t->cols[2].i64[0], 7);
    mk_h5_table_free(t);
    char s[64];
    assert_int_equal(mk_h5_attr_get_str(&ctx, f, "/g", "fixed", s, sizeof s), MK_OK);
    assert_string_equal(s, "fixed-len");
    assert_int_equal(mk_h5_close(&ctx, f), MK_OK);
}

/* The plain layout (contiguous, unfiltered; scalars and empty axes), string datasets, scalar and
 * fixed-length string attributes, shape queries and reads into the caller's buffer: what model
 * checkpoints and reports store. Checked by us, by h5py and by h5dump's layout. */
static void test_plain_layout_strings_scalars(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char p[1200];
    tio_path(p, sizeof p, "plain.h5");
    mk_h5_file *f = NULL;
    const mk_h5_write_opts plain = {.gzip = MK_H5_CONTIGUOUS};
    assert_int_equal(mk_h5_create(&ctx, p, &f), MK_OK);
    float w[6] = {1, 2, 3, 4, 5, 6.5f}, one = 7.25f;
    int64_t s23[2] = {2, 3}, s0[2] = {0, 4};
    assert_int_equal(mk_h5_write_tensor(&ctx, f, "/params/w", MK_DT_FLOAT32, 2, s23, w, &plain),
                     MK_OK);
    assert_int_equal(mk_h5_write_tensor(&ctx, f, "/params/s", MK_DT_FLOAT32, 0, NULL, &one, &plain),
                     MK_OK);
    assert_int_equal(mk_h5_write_tensor(&ctx, f, "/empty", MK_DT_INT64, 2, s0, NULL, &plain),
                     MK_OK);
    /* chunked datasets still refuse rank 0 and empty axes */
    assert_int_equal(mk_h5_write_tensor(&ctx, f, "/bad0", MK_DT_FLOAT32, 0, NULL, &one, NULL),
                     MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "field rank: expected 1..8, got 0"));
    assert_int_equal(mk_h5_write_tensor(&ctx, f, "/bad1", MK_DT_INT64, 2, s0, NULL, NULL),
                     MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "field shape[0]: expected > 0, got 0"));
    const char *names[3] = {"c001", NULL, "caf\xc3\xa9"};
    assert_int_equal(mk_h5_write_strings(&ctx, f, "/cases/id", 3, names), MK_OK);
    assert_int_equal(mk_h5_write_strings(&ctx, f, "/cases/none", 0, NULL), MK_OK);
    assert_int_equal(mk_h5_write_strings(&ctx, f, "/cases/id", 1, names), MK_ERR_IO);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "/cases/id"));
    assert_int_equal(mk_h5_attr_set_fixed_str(&ctx, f, "/", "format", "medkd-checkpoint"), MK_OK);
    double v = 1;
    int64_t k = -3;
    assert_int_equal(mk_h5_attr_set_f64(&ctx, f, "/", "version", MK_H5_SCALAR, &v), MK_OK);
    assert_int_equal(mk_h5_attr_set_i64(&ctx, f, "/optim", "n", MK_H5_SCALAR, &k), MK_OK);
    assert_int_equal(mk_h5_close(&ctx, f), MK_OK);

    assert_int_equal(mk_h5_open(&ctx, p, &f), MK_OK);
    int rank = -1;
    int64_t sh[MK_H5_MAX_RANK];
    assert_int_equal(mk_h5_dataset_shape(&ctx, f, "/params/w", &rank, sh), MK_OK);
    assert_int_equal(rank, 2);
    assert_true(sh[0] == 2 && sh[1] == 3);
    assert_int_equal(mk_h5_dataset_shape(&ctx, f, "/params/s", &rank, sh), MK_OK);
    assert_int_equal(rank, 0);
    assert_int_equal(mk_h5_dataset_shape(&ctx, f, "/empty", &rank, sh), MK_OK);
    assert_true(rank == 2 && sh[0] == 0 && sh[1] == 4);
    assert_int_equal(mk_h5_dataset_shape(&ctx, f, "/params", &rank, sh), MK_ERR_FORMAT);
    assert_int_equal(mk_h5_dataset_shape(&ctx, f, "/nope", &rank, sh), MK_ERR_NOT_FOUND);
    double back[6];
    assert_int_equal(mk_h5_read_into(&ctx, f, "/params/w", MK_DT_FLOAT64, 6, back), MK_OK);
    assert_true(back[0] == 1 && back[5] == 6.5);
    float s1 = 0;
    assert_int_equal(mk_h5_read_into(&ctx, f, "/params/s", MK_DT_FLOAT32, 1, &s1), MK_OK);
    assert_true(s1 == 7.25f);
    assert_int_equal(mk_h5_read_into(&ctx, f, "/empty", MK_DT_INT64, 0, NULL), MK_OK);
    assert_int_equal(mk_h5_read_into(&ctx, f, "/params/w", MK_DT_FLOAT32, 5, back), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "expected 5 elements, got 6"));
    assert_int_equal(mk_h5_read_into(&ctx, f, "/nope", MK_DT_FLOAT32, 1, back), MK_ERR_NOT_FOUND);
    char sv[64];
    assert_int_equal(mk_h5_attr_get_str(&ctx, f, "/", "format", sv, sizeof sv), MK_OK);
    assert_string_equal(sv, "medkd-checkpoint");
    int got = 0;
    assert_int_equal(mk_h5_attr_get_f64(&ctx, f, "/", "version", 1, &v, &got), MK_OK);
    assert_true(got == 1 && v == 1);
    assert_int_equal(mk_h5_close(&ctx, f), MK_OK);

    tio_require_py("h5py");
    const char *py =
        "import sys, h5py, numpy as np\n"
        "f = h5py.File(sys.argv[1], 'r')\n"
        "w = f['/params/w']\n"
        "assert w.shape == (2, 3) and w.dtype == np.float32 and w.chunks is None\n"
        "assert w.compression is None and not w.shuffle\n"
        "assert w[()].tolist() == [[1, 2, 3], [4, 5, 6.5]]\n"
        "s = f['/params/s']\n"
        "assert s.shape == () and s[()] == np.float32(7.25)\n"
        "assert f['/empty'].shape == (0, 4) and f['/empty'].dtype == np.int64\n"
        "ids = [x.decode() if isinstance(x, bytes) else x for x in f['/cases/id'][()]]\n"
        "assert ids == ['c001', '', 'caf\\u00e9'], ids\n"
        "assert h5py.check_string_dtype(f['/cases/id'].dtype).length is None\n"
        "assert f['/cases/none'].shape == (0,)\n"
        "fmt = f.attrs['format']\n"
        "assert isinstance(fmt, bytes) and fmt == b'medkd-checkpoint', repr(fmt)\n"
        "t = f.attrs.get_id('format').get_type()\n"
        "assert not t.is_variable_str() and t.get_size() == 17\n"
        "assert f.attrs.get_id('version').shape == () and f.attrs['version'] == 1.0\n"
        "assert f['/optim'].attrs['n'] == -3 and f['/optim'].attrs.get_id('n').shape == ()\n";
    char args[1300];
    snprintf(args, sizeof args, "'%s'", p);
    assert_int_equal(tio_py(py, args), 0);
}

static void test_bad_files_and_abort(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char p[1200];
    mk_h5_file *f = NULL;
    /* not HDF5 */
    tio_path(p, sizeof p, "text.h5");
    FILE *fp = fopen(p, "w");
    fputs("hello, not hdf5\n", fp);
    fclose(fp);
    assert_int_equal(mk_h5_open(&ctx, p, &f), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), p));
    assert_null(f);
    /* truncated HDF5 */
    tio_path(p, sizeof p, "trunc.h5");
    assert_int_equal(mk_h5_create(&ctx, p, &f), MK_OK);
    float big[4096];
    for (int i = 0; i < 4096; i++)
        big[i] = (float)sin(i);
    int64_t sh[1] = {4096};
    mk_h5_write_opts o = {0};
    assert_int_equal(mk_h5_write_tensor(&ctx, f, "/x", MK_DT_FLOAT32, 1, sh, big, &o), MK_OK);
    assert_int_equal(mk_h5_close(&ctx, f), MK_OK);
    tio_truncate(p, 3000);
    mk_status st = mk_h5_open(&ctx, p, &f);
    if (st == MK_OK) {
        int rank;
        int64_t s2[MK_H5_MAX_RANK];
        void *d = NULL;
        st = mk_h5_read_tensor(&ctx, f, "/x", MK_DT_FLOAT32, &rank, s2, &d);
        free(d);
        mk_h5_close(&ctx, f);
    }
    assert_int_not_equal(st, MK_OK);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), p));
    /* abort leaves nothing */
    tio_path(p, sizeof p, "aborted.h5");
    assert_int_equal(mk_h5_create(&ctx, p, &f), MK_OK);
    assert_int_equal(mk_h5_write_tensor(&ctx, f, "/x", MK_DT_FLOAT32, 1, sh, big, NULL), MK_OK);
    mk_h5_abort(f);
    assert_false(tio_exists(p));
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q 'aborted.h5.tmp'", g_tmp);
    assert_int_not_equal(system(cmd), 0);
    /* missing file */
    assert_int_equal(mk_h5_open(&ctx, tio_path(p, sizeof p, "none.h5"), &f), MK_ERR_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_image_table_roundtrip_and_h5py),
        cmocka_unit_test(test_we_read_h5py),
        cmocka_unit_test(test_plain_layout_strings_scalars),
        cmocka_unit_test(test_bad_files_and_abort),
    };
    return cmocka_run_group_tests(tests, tio_setup, tio_cleanup);
}
