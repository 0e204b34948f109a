/* NIfTI I/O: round trips of every datatype and file flavour, interop with nibabel and nifti_tool,
 * the geometry rule, header preservation for masks, bad-input handling, and the real samples of
 * shared/data/real. References are independent: analytic voxel formulas, nibabel's own reading
 * and writing, byte comparisons of stored headers, and the facts stated in the data README. */
#include "test_io_util.h"

#include <math.h>

#include "io/mk_image.h"
#include "io/mk_nifti.h"

static double formula(mk_dtype t, int64_t i, int64_t j, int64_t k)
{
    double v = (double)((i + 2 * j + 3 * k) % 100);
    if (t == MK_DT_FLOAT32 || t == MK_DT_FLOAT64)
        v = v * 0.25 - 3.0;
    else if (t == MK_DT_INT8 || t == MK_DT_INT16 || t == MK_DT_INT32 || t == MK_DT_INT64)
        v -= 40;
    return v;
}

/* An oblique geometry: rotation 30 deg about z, then 10 deg about x; anisotropic spacing. */
static void oblique_geom(mk_geom *g)
{
    mk_geom_identity(g);
    double a = 30 * M_PI / 180, b = 10 * M_PI / 180;
    double rz[9] = {cos(a), -sin(a), 0, sin(a), cos(a), 0, 0, 0, 1};
    double rx[9] = {1, 0, 0, 0, cos(b), -sin(b), 0, sin(b), cos(b)};
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) {
            double s = 0;
            for (int k = 0; k < 3; k++)
                s += rx[r * 3 + k] * rz[k * 3 + c];
            g->direction[r * 3 + c] = s;
        }
    g->spacing[0] = 0.75;
    g->spacing[1] = 0.8;
    g->spacing[2] = 2.5;
    g->origin[0] = -10.5;
    g->origin[1] = 20.25;
    g->origin[2] = 33.0;
}

static mk_image *make_image(mk_dtype t, int64_t nx, int64_t ny, int64_t nz)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[3] = {nx, ny, nz};
    mk_image *img = NULL;
    assert_int_equal(mk_image_new(&ctx, t, 3, dim, &img), MK_OK);
    oblique_geom(&img->geom);
    for (int64_t k = 0; k < nz; k++)
        for (int64_t j = 0; j < ny; j++)
            for (int64_t i = 0; i < nx; i++) {
                int64_t idx = i + nx * (j + ny * k);
                if (t == MK_DT_RGB24) {
                    uint8_t *c = (uint8_t *)img->data + 3 * idx;
                    c[0] = (uint8_t)(i * 10);
                    c[1] = (uint8_t)(j * 10);
                    c[2] = (uint8_t)(k * 10);
                } else {
                    mk_image_set(img, idx, formula(t, i, j, k));
                }
            }
    return img;
}

static void assert_geom_near(const mk_geom *a, const mk_geom *b, double tol)
{
    for (int i = 0; i < 3; i++) {
        assert_true(fabs(a->spacing[i] - b->spacing[i]) < tol);
        assert_true(fabs(a->origin[i] - b->origin[i]) < tol);
    }
    for (int i = 0; i < 9; i++)
        assert_true(fabs(a->direction[i] - b->direction[i]) < tol);
}

static void test_roundtrip_all_types_and_flavours(void **state)
{
    (void)state;
    static const char *exts[] = {".nii", ".nii.gz", ".hdr", ".img.gz"};
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    for (int t = 0; t < MK_DT_COUNT; t++) {
        for (int e = 0; e < 4; e++) {
            mk_image *img = make_image((mk_dtype)t, 7, 5, 4);
            char name[64], p[1200];
            snprintf(name, sizeof name, "rt_%s%s", mk_dtype_name((mk_dtype)t), exts[e]);
            tio_path(p, sizeof p, name);
            assert_int_equal(mk_io_nifti_write(&ctx, p, img), MK_OK);
            mk_image *back = NULL;
            mk_status st = mk_io_nifti_read(&ctx, p, &back);
            if (st != MK_OK)
                fail_msg("%s: %s", p, mk_ctx_errmsg(&ctx));
            assert_int_equal(back->dtype, t);
            assert_int_equal(back->ndim, 3);
            for (int d = 0; d < 5; d++)
                assert_int_equal(back->dim[d], img->dim[d]);
            assert_memory_equal(back->data, img->data,
                                (size_t)mk_image_nvox(img) * mk_dtype_size(img->dtype));
            /* header stores float32: geometry back within float precision */
            assert_geom_near(&back->geom, &img->geom, 1e-5);
            assert_int_equal(back->nifti.qform_code, 1);
            assert_int_equal(back->nifti.sform_code, 1);
            mk_image_free(img);
            mk_image_free(back);
        }
    }
    /* a pair leaves exactly .hdr and .img, no temporaries */
    char p[1200];
    assert_true(tio_exists(tio_path(p, sizeof p, "rt_int16.hdr")));
    assert_true(tio_exists(tio_path(p, sizeof p, "rt_int16.img")));
    assert_true(tio_exists(tio_path(p, sizeof p, "rt_int16.hdr.gz")));
    assert_true(tio_exists(tio_path(p, sizeof p, "rt_int16.img.gz")));
    assert_int_equal(tio_count_files(g_tmp), MK_DT_COUNT * 6);
}

static void test_4d_and_nifti2(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    int64_t dim[4] = {4, 3, 2, 5};
    mk_image *img = NULL;
    assert_int_equal(mk_image_new(&ctx, MK_DT_FLOAT32, 4, dim, &img), MK_OK);
    for (int64_t i = 0; i < mk_image_nvox(img); i++)
        ((float *)img->data)[i] = (float)i * 0.5f;
    img->geom.tr = 2.0;
    mk_nifti_write_opts o = {.version = 2};
    char p[1200];
    assert_int_equal(mk_io_nifti_write_ex(&ctx, tio_path(p, sizeof p, "four.nii.gz"), img, &o),
                     MK_OK);
    unsigned char h[8];
    assert_int_equal(tio_read_gz(p, h, 8), 8);
    int32_t sz;
    memcpy(&sz, h, 4);
    assert_int_equal(sz, 540);
    assert_memory_equal(h + 4, "n+2", 4);
    mk_image *back = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, p, &back), MK_OK);
    assert_int_equal(back->ndim, 4);
    assert_int_equal(back->dim[3], 5);
    assert_true(fabs(back->geom.tr - 2.0) < 1e-9);
    assert_memory_equal(back->data, img->data, (size_t)mk_image_nvox(img) * 4);
    mk_image_free(back);
    mk_image_free(img);
}

/* nibabel reads what we write: same voxels (from the formula, recomputed in numpy) and affine. */
static const char *PY_CHECK_OURS =
    "import sys, numpy as np, nibabel as nib\n"
    "p, kind = sys.argv[1], sys.argv[2]\n"
    "aff = np.array([float(x) for x in sys.argv[3:19]]).reshape(4, 4)\n"
    "img = nib.load(p)\n"
    "d = np.asanyarray(img.dataobj)\n"
    "i, j, k = np.meshgrid(np.arange(d.shape[0]), np.arange(d.shape[1]), np.arange(d.shape[2]), "
    "indexing='ij')\n"
    "v = ((i + 2*j + 3*k) % 100).astype(np.float64)\n"
    "if kind == 'float': v = v*0.25 - 3\n"
    "if kind == 'signed': v = v - 40\n"
    "assert d.shape == v.shape, (d.shape, v.shape)\n"
    "assert np.array_equal(d.astype(np.float64), v), 'voxels differ'\n"
    "assert np.allclose(img.affine, aff, atol=1e-4), (img.affine, aff)\n"
    "assert int(img.header['sform_code']) == 1 and int(img.header['qform_code']) == 1\n"
    "assert np.allclose(img.header.get_qform(), aff, atol=1e-4)\n"
    "assert ''.join(nib.aff2axcodes(img.affine)) == sys.argv[19], nib.aff2axcodes(img.affine)\n";

static void test_nibabel_reads_ours(void **state)
{
    (void)state;
    tio_require_py("nibabel");
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_dtype types[] = {MK_DT_UINT8,   MK_DT_INT16,   MK_DT_UINT16, MK_DT_INT32,
                        MK_DT_FLOAT32, MK_DT_FLOAT64, MK_DT_INT8,   MK_DT_INT64};
    for (size_t t = 0; t <= sizeof types / sizeof types[0]; t++) {
        /* the extra last case is > 4 MiB: several gzip chunks (members) in one file */
        int big = t == sizeof types / sizeof types[0];
        if (big)
            t = 1;
        mk_image *img = big ? make_image(MK_DT_INT16, 160, 160, 90) : make_image(types[t], 9, 6, 5);
        char p[1200], name[64], args[2048];
        snprintf(name, sizeof name, "ours_%s.nii.gz", mk_dtype_name(types[t]));
        tio_path(p, sizeof p, name);
        assert_int_equal(mk_io_nifti_write(&ctx, p, img), MK_OK);
        double a[4][4];
        mk_geom_affine_ras(&img->geom, a);
        char code[4];
        mk_geom_orient_code(&img->geom, code);
        const char *kind = (types[t] == MK_DT_FLOAT32 || types[t] == MK_DT_FLOAT64) ? "float"
                           : mk_dtype_name(types[t])[0] == 'i'                      ? "signed"
                                                                                    : "unsigned";
        int n = snprintf(args, sizeof args, "'%s' %s", p, kind);
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 4; c++)
                n += snprintf(args + n, sizeof args - (size_t)n, " %.17g", a[r][c]);
        snprintf(args + n, sizeof args - (size_t)n, " %s", code);
        assert_int_equal(tio_py(PY_CHECK_OURS, args), 0);
        mk_image_free(img);
        if (big)
            break;
    }
}

/* nibabel writes; we read. The script stores nibabel's own view (get_fdata, affine, codes) as
 * reference: REF.bin = 16 doubles affine, then the voxels as float64. */
static const char *PY_WRITE =
    "import sys, numpy as np, nibabel as nib\n"
    "out, case = sys.argv[1], sys.argv[2]\n"
    "aff = np.array([[0.8, 0.1, 0.0, -20.0], [-0.1, 0.79, 0.2, 15.5], [0.0, -0.15, 2.9, 40.0], [0, "
    "0, 0, 1]])\n"
    "shape = (11, 8, 6)\n"
    "rng = np.random.default_rng(3)\n"
    "if case == 'int16_scaled':\n"
    "    raw = rng.integers(-300, 300, size=shape).astype(np.int16)\n"
    "    nib.save(nib.Nifti1Image(raw, aff), out)\n"
    "    import struct\n"
    "    with open(out, 'r+b') as f:\n"
    "        f.seek(112); f.write(struct.pack('<ff', 2.0, -5.0))\n"
    "    img = nib.load(out)\n"
    "    assert img.dataobj.slope == 2.0 and img.dataobj.inter == -5.0, (img.dataobj.slope, "
    "img.dataobj.inter)\n"
    "elif case == 'uint8_qform_only':\n"
    "    raw = rng.integers(0, 255, size=shape).astype(np.uint8)\n"
    "    img = nib.Nifti1Image(raw, aff)\n"
    "    img.set_sform(None, code=0)\n"
    "    img.set_qform(aff, code=2)\n"
    "    nib.save(img, out)\n"
    "elif case == 'float32_nifti2':\n"
    "    raw = rng.normal(size=shape).astype(np.float32)\n"
    "    img = nib.Nifti2Image(raw, aff)\n"
    "    nib.save(img, out)\n"
    "elif case == 'uint16_nocodes':\n"
    "    raw = rng.integers(0, 60000, size=shape).astype(np.uint16)\n"
    "    img = nib.Nifti1Image(raw, aff)\n"
    "    img.header.set_zooms((0.5, 0.75, 2.0))\n"
    "    img.set_sform(None, code=0)\n"
    "    img.set_qform(None, code=0)\n"
    "    nib.save(img, out)\n"
    "elif case == 'sform_wins':\n"
    "    raw = rng.integers(-5, 5, size=shape).astype(np.int32)\n"
    "    img = nib.Nifti1Image(raw, aff)\n"
    "    img.set_qform(np.diag([3.0, 3.0, 3.0, 1.0]), code=1)\n"
    "    img.set_sform(aff, code=4)\n"
    "    nib.save(img, out)\n"
    "elif case == 'bigendian':\n"
    "    raw = rng.normal(size=shape).astype('>f8')\n"
    "    hdr = nib.Nifti1Header(endianness='>'); hdr.set_data_dtype('>f8')\n"
    "    img = nib.Nifti1Image(raw, aff, hdr)\n"
    "    nib.save(img, out)\n"
    "img = nib.load(out)\n"
    "a = img.affine if case != 'uint16_nocodes' else np.diag([0.5, 0.75, 2.0, 1.0])\n"
    "ref = np.concatenate([a.ravel(), img.get_fdata().ravel(order='F')]).astype('<f8')\n"
    "ref.tofile(out + '.ref')\n";

static void check_nibabel_case(const char *file, const char *cas, mk_dtype want_dt, int qc, int sc)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char p[1200], args[1400], rp[1300];
    tio_path(p, sizeof p, file);
    snprintf(args, sizeof args, "'%s' %s", p, cas);
    assert_int_equal(tio_py(PY_WRITE, args), 0);
    mk_image *img = NULL;
    if (mk_io_nifti_read(&ctx, p, &img) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    assert_int_equal(img->dtype, want_dt);
    assert_int_equal(img->dim[0], 11);
    assert_int_equal(img->dim[1], 8);
    assert_int_equal(img->dim[2], 6);
    assert_int_equal(img->nifti.qform_code, qc);
    assert_int_equal(img->nifti.sform_code, sc);
    snprintf(rp, sizeof rp, "%s.ref", p);
    FILE *f = fopen(rp, "rb");
    assert_non_null(f);
    int64_t n = mk_image_nvox(img);
    double *ref = malloc((size_t)(16 + n) * sizeof *ref);
    assert_int_equal(fread(ref, sizeof *ref, (size_t)(16 + n), f), (size_t)(16 + n));
    fclose(f);
    double a[4][4];
    mk_geom_affine_ras(&img->geom, a);
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            if (fabs(a[r][c] - ref[r * 4 + c]) > 1e-5)
                fail_msg("%s affine[%d][%d] %g vs nibabel %g", cas, r, c, a[r][c], ref[r * 4 + c]);
    for (int64_t i = 0; i < n; i++) {
        double v = mk_image_get(img, i), w = ref[16 + i];
        if (fabs(v - w) > 1e-6 * fmax(1, fabs(w)))
            fail_msg("%s voxel %lld: %g vs nibabel %g", cas, (long long)i, v, w);
    }
    free(ref);
    mk_image_free(img);
}

static void test_we_read_nibabel(void **state)
{
    (void)state;
    tio_require_py("nibabel");
    /* scl_slope 2 / inter -5 on int16 -> float32 by our rule */
    check_nibabel_case("nb_scaled.nii", "int16_scaled", MK_DT_FLOAT32, 0, 2);
    /* sform_code 0, qform_code 2: geometry from the qform */
    check_nibabel_case("nb_qform.nii", "uint8_qform_only", MK_DT_UINT8, 2, 0);
    check_nibabel_case("nb_n2.nii.gz", "float32_nifti2", MK_DT_FLOAT32, 0, 2);
    /* no codes at all: diag(pixdim), origin 0 (the niftilib/ITK rule; nibabel would centre) */
    check_nibabel_case("nb_nocodes.nii", "uint16_nocodes", MK_DT_UINT16, 0, 0);
    /* both codes set with different matrices: the sform wins */
    check_nibabel_case("nb_sform.nii.gz", "sform_wins", MK_DT_INT32, 1, 4);
    /* big-endian float64 is byte-swapped */
    check_nibabel_case("nb_be.nii", "bigendian", MK_DT_FLOAT64, 0, 2);
}

/* ANALYZE 7.5 pair written by nibabel: no magic, no codes; pixdim gives the spacing. */
static void test_analyze_pair(void **state)
{
    (void)state;
    tio_require_py("nibabel");
    char p[1200], args[1300];
    tio_path(p, sizeof p, "ana.hdr");
    snprintf(args, sizeof args, "'%s'", p);
    const char *py =
        "import sys, numpy as np, nibabel as nib\n"
        "d = (np.arange(11*8*6) % 1000).reshape(11, 8, 6, order='F').astype(np.int16)\n"
        "img = nib.AnalyzeImage(d, np.diag([0.5, 0.75, 2.0, 1.0]))\n"
        "nib.save(img, sys.argv[1])\n";
    assert_int_equal(tio_py(py, args), 0);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    if (mk_io_nifti_read(&ctx, p, &img) != MK_OK)
        fail_msg("%s", mk_ctx_errmsg(&ctx));
    assert_int_equal(img->dtype, MK_DT_INT16);
    assert_int_equal(img->nifti.qform_code, 0);
    assert_int_equal(img->nifti.sform_code, 0);
    assert_true(fabs(img->geom.spacing[0] - 0.5) < 1e-7 && fabs(img->geom.spacing[2] - 2.0) < 1e-7);
    for (int64_t i = 0; i < mk_image_nvox(img); i++)
        assert_true(mk_image_get(img, i) == (double)(i % 1000));
    mk_image_free(img);
    /* reading through the .img name finds the .hdr */
    tio_path(p, sizeof p, "ana.img");
    assert_int_equal(mk_io_nifti_read(&ctx, p, &img), MK_OK);
    mk_image_free(img);
}

static void test_nifti_tool_accepts_ours(void **state)
{
    (void)state;
    if (access("/usr/bin/nifti_tool", X_OK) != 0)
        fail_msg("/usr/bin/nifti_tool is missing: Debian package nifti-bin, declared in "
                 "scripts/deps.list; install it with 'make deps' (as root)");
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    /* > 4 MiB, so several gzip members: niftilib's znz must read them all */
    mk_image *img = make_image(MK_DT_INT16, 160, 160, 90);
    char p[1200], cmd[1500];
    assert_int_equal(mk_io_nifti_write(&ctx, tio_path(p, sizeof p, "tool.nii.gz"), img), MK_OK);
    snprintf(cmd, sizeof cmd,
             "nifti_tool -check_hdr -check_nim -infiles '%s' 2>&1 | grep -c 'IS GOOD' | grep -qx 2",
             p);
    assert_int_equal(system(cmd), 0);
    /* nifti_tool's view of the dims and codes */
    snprintf(cmd, sizeof cmd,
             "nifti_tool -disp_hdr -field dim -field qform_code -field sform_code -infiles '%s' | "
             "tr -s ' ' | grep -q 'dim 40 8 3 160 160 90 1 1 1 1'",
             p);
    assert_int_equal(system(cmd), 0);
    /* nifti_tool's voxel statistics equal the formula's: sum over the volume */
    snprintf(cmd, sizeof cmd,
             "nifti_tool -disp_ci -1 -1 -1 0 0 0 0 -infiles '%s' -quiet | tr -s ' \\t' '\\n' | "
             "awk 'NF {s+=$1} END {printf \"%%.0f\", s}'",
             p);
    FILE *pp = popen(cmd, "r");
    double tool_sum = -1;
    assert_non_null(pp);
    assert_int_equal(fscanf(pp, "%lf", &tool_sum), 1);
    pclose(pp);
    double sum = 0;
    for (int64_t i = 0; i < mk_image_nvox(img); i++)
        sum += mk_image_get(img, i);
    assert_true(fabs(sum - tool_sum) < 0.5);
    mk_image_free(img);
}

/* A mask made from a reference keeps the reference's qform and sform bytes exactly. */
static void test_mask_keeps_reference_header(void **state)
{
    (void)state;
    char ref[1200], p[1200];
    tio_shared(ref, sizeof ref, "data/real/mri/itk_kmeans/KmeansTest_T1UCharRaw.nii.gz");
    if (!tio_exists(ref))
        fail_msg("%s is missing: the shared/ data beside the checkout (MK_SHARED_DIR)", ref);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL, *mask = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, ref, &img), MK_OK);
    mk_dtype types[2] = {MK_DT_UINT8, MK_DT_INT16};
    for (int t = 0; t < 2; t++) {
        assert_int_equal(mk_image_new_like(&ctx, img, types[t], &mask), MK_OK);
        for (int64_t i = 0; i < mk_image_nvox(mask); i++)
            mk_image_set(mask, i, mk_image_get(img, i) > 100 ? 1 : 0);
        assert_int_equal(mk_io_nifti_write(&ctx, tio_path(p, sizeof p, "mask.nii.gz"), mask),
                         MK_OK);
        unsigned char a[348], b[348];
        assert_int_equal(tio_read_gz(ref, a, 348), 348);
        assert_int_equal(tio_read_gz(p, b, 348), 348);
        /* pixdim[1..3] (80..92), qform_code..srow_z (252..328) */
        assert_memory_equal(a + 80, b + 80, 12);
        assert_memory_equal(a + 252, b + 252, 328 - 252);
        int16_t dt;
        memcpy(&dt, b + 70, 2);
        assert_int_equal(dt, t == 0 ? 2 : 4);
        mk_image_free(mask);
    }
    mk_image_free(img);
}

/* ---- bad input ------------------------------------------------------------------------------ */

static void write_valid(const char *p)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = make_image(MK_DT_INT16, 8, 6, 4);
    assert_int_equal(mk_io_nifti_write(&ctx, p, img), MK_OK);
    mk_image_free(img);
}

static void expect_fail(const char *p, mk_status want, const char *field)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = (mk_image *)0x1;
    mk_status st = mk_io_nifti_read(&ctx, p, &img);
    if (st != want)
        fail_msg("%s: status %d (%s), want %d", p, st, mk_ctx_errmsg(&ctx), want);
    assert_null(img);
    const char *m = mk_ctx_errmsg(&ctx);
    if (!strstr(m, p) || !strstr(m, field))
        fail_msg("message '%s' should name '%s' and '%s'", m, p, field);
}

static void patch16(const char *p, long off, int16_t v)
{
    tio_patch(p, off, &v, 2);
}
static void patchf(const char *p, long off, float v)
{
    tio_patch(p, off, &v, 4);
}

static void test_bad_headers(void **state)
{
    (void)state;
    char p[1200];
    tio_path(p, sizeof p, "bad.nii");

    write_valid(p);
    tio_truncate(p, 200);
    expect_fail(p, MK_ERR_FORMAT, "field header");

    write_valid(p);
    tio_truncate(p, 352 + 100);
    expect_fail(p, MK_ERR_FORMAT, "field vox_offset");

    write_valid(p);
    patchf(p, 108, 1e7f);
    expect_fail(p, MK_ERR_FORMAT, "field vox_offset");

    write_valid(p);
    patchf(p, 108, 100.0f);
    expect_fail(p, MK_ERR_FORMAT, "field vox_offset");

    write_valid(p);
    patch16(p, 42, 0);
    expect_fail(p, MK_ERR_FORMAT, "field dim[1]");

    write_valid(p);
    patch16(p, 44, -3);
    expect_fail(p, MK_ERR_FORMAT, "field dim[2]");

    write_valid(p);
    patch16(p, 40, 9);
    expect_fail(p, MK_ERR_FORMAT, "field dim[0]");

    /* 32767^3 * 32767 overflows nothing in int64 but exceeds the voxel limit */
    write_valid(p);
    patch16(p, 40, 4);
    for (int i = 1; i <= 4; i++)
        patch16(p, 40 + 2 * i, 32767);
    expect_fail(p, MK_ERR_NOMEM, "field dim");

    write_valid(p);
    patchf(p, 84, NAN);
    expect_fail(p, MK_ERR_FORMAT, "field pixdim[2]");

    write_valid(p);
    patchf(p, 80, 0.0f);
    expect_fail(p, MK_ERR_FORMAT, "field pixdim[1]");

    write_valid(p);
    patch16(p, 70, 32); /* complex64 */
    expect_fail(p, MK_ERR_UNSUPPORTED, "field datatype");

    write_valid(p);
    patch16(p, 70, 77);
    expect_fail(p, MK_ERR_UNSUPPORTED, "field datatype");

    write_valid(p);
    int32_t bad = 123;
    tio_patch(p, 0, &bad, 4);
    expect_fail(p, MK_ERR_FORMAT, "field sizeof_hdr");

    write_valid(p);
    tio_patch(p, 344, "xyz", 4);
    expect_fail(p, MK_ERR_FORMAT, "field magic");

    write_valid(p);
    patchf(p, 280, NAN); /* srow_x[0] with sform_code 1 */
    expect_fail(p, MK_ERR_FORMAT, "field srow_x[0]");

    /* NIfTI-2: dims product that overflows int64 */
    char p2[1200];
    tio_path(p2, sizeof p2, "bad2.nii");
    {
        mk_ctx ctx;
        mk_ctx_init(&ctx);
        mk_image *img = make_image(MK_DT_UINT8, 4, 4, 4);
        mk_nifti_write_opts o = {.version = 2};
        assert_int_equal(mk_io_nifti_write_ex(&ctx, p2, img, &o), MK_OK);
        mk_image_free(img);
        int64_t d[5] = {4, (int64_t)1 << 40, (int64_t)1 << 40, 1 << 20, 1};
        tio_patch(p2, 16, d, sizeof d);
        expect_fail(p2, MK_ERR_NOMEM, "field dim");
    }

    char none[1200];
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, tio_path(none, sizeof none, "missing.nii.gz"), &img),
                     MK_ERR_IO);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "missing.nii.gz"));
}

static void test_bad_gzip(void **state)
{
    (void)state;
    char p[1200];
    tio_path(p, sizeof p, "badgz.nii.gz");
    struct stat st;
    /* corrupt deflate bytes in the middle of the voxels; then a truncated stream */
    for (int trunc = 0; trunc < 2; trunc++) {
        mk_ctx ctx;
        mk_ctx_init(&ctx);
        mk_image *img = make_image(MK_DT_FLOAT32, 40, 30, 20);
        for (int64_t i = 0; i < mk_image_nvox(img); i++)
            ((float *)img->data)[i] = (float)sin((double)i * 0.37) * 1000.0f;
        mk_nifti_write_opts o = {.threads = 1};
        assert_int_equal(mk_io_nifti_write_ex(&ctx, p, img, &o), MK_OK);
        mk_image_free(img);
        assert_int_equal(stat(p, &st), 0);
        unsigned char junk[64];
        memset(junk, 0xA5, sizeof junk);
        if (trunc)
            tio_truncate(p, (long)st.st_size * 3 / 4);
        else
            tio_patch(p, (long)st.st_size / 2, junk, sizeof junk);
        expect_fail(p, MK_ERR_FORMAT, "field data");
    }
    /* garbage after a gzip magic: the header itself cannot be inflated */
    {
        FILE *f = fopen(p, "wb");
        unsigned char g[64] = {0x1f, 0x8b, 8, 0};
        memset(g + 10, 0xff, 54);
        fwrite(g, 1, sizeof g, f);
        fclose(f);
        mk_ctx ctx;
        mk_ctx_init(&ctx);
        mk_image *img = NULL;
        assert_int_not_equal(mk_io_nifti_read(&ctx, p, &img), MK_OK);
        assert_null(img);
        assert_non_null(strstr(mk_ctx_errmsg(&ctx), p));
        assert_non_null(strstr(mk_ctx_errmsg(&ctx), "field"));
    }
}

/* ---- issue 23: vox_offset, dim[0] and scaling checks ------------------------------------------
 */

/* Patch n bytes at off of the uncompressed content of a .gz file and compress it again, so the
 * gzip stream stays valid and only the header field changes. */
static void patch_gz(const char *p, long off, const void *bytes, size_t n)
{
    gzFile g = gzopen(p, "rb");
    assert_non_null(g);
    size_t cap = 1 << 20, len = 0;
    unsigned char *buf = malloc(cap);
    assert_non_null(buf);
    int k;
    while ((k = gzread(g, buf + len, (unsigned)(cap - len))) > 0) {
        len += (size_t)k;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    assert_true(k == 0);
    gzclose(g);
    assert_true((size_t)off + n <= len);
    memcpy(buf + off, bytes, n);
    g = gzopen(p, "wb6");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, buf, (unsigned)len), (int)len);
    assert_int_equal(gzclose(g), Z_OK);
    free(buf);
}

/* expect_fail, and the message also holds each of the NULL-terminated words */
static void expect_fail_says(const char *p, mk_status want, const char *field, ...)
{
    expect_fail(p, want, field);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    assert_int_not_equal(mk_io_nifti_read(&ctx, p, &img), MK_OK);
    const char *m = mk_ctx_errmsg(&ctx);
    va_list ap;
    va_start(ap, field);
    for (const char *w = va_arg(ap, const char *); w; w = va_arg(ap, const char *))
        if (!strstr(m, w))
            fail_msg("message '%s' should say '%s'", m, w);
    va_end(ap);
}

static void expect_reads(const char *p)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    if (mk_io_nifti_read(&ctx, p, &img) != MK_OK)
        fail_msg("%s: %s", p, mk_ctx_errmsg(&ctx));
    mk_image_free(img);
}

/* vox_offset >= 2^31 in a .nii.gz used to be cast to int by niftilib, clamped to 348 and read from
 * there with exit 0; now the header's own value is checked (integer, >= header size, fits). */
static void test_vox_offset_checked(void **state)
{
    (void)state;
    char p[1200], q[1200], p2[1200];
    tio_path(p, sizeof p, "off.nii.gz");
    tio_path(q, sizeof q, "off.nii");
    tio_path(p2, sizeof p2, "off2.nii.gz");
    float off = 352.0f;
    /* the re-compression alone keeps the file readable */
    write_valid(p);
    patch_gz(p, 108, &off, 4);
    expect_reads(p);

    off = 3e9f;
    write_valid(p);
    patch_gz(p, 108, &off, 4);
    expect_fail_says(p, MK_ERR_FORMAT, "field vox_offset", "3000000000", "expected", NULL);
    write_valid(q);
    patchf(q, 108, 3e9f);
    expect_fail_says(q, MK_ERR_FORMAT, "field vox_offset", "3000000000", "expected", NULL);
    /* not an integer: niftilib would truncate it to 352 */
    off = 352.5f;
    write_valid(p);
    patch_gz(p, 108, &off, 4);
    expect_fail_says(p, MK_ERR_FORMAT, "field vox_offset", "352.5", "integer", NULL);
    /* a fitting offset past the end of the compressed data: the short read is caught */
    off = 4096.0f;
    write_valid(p);
    patch_gz(p, 108, &off, 4);
    expect_fail_says(p, MK_ERR_FORMAT, "vox_offset", "4096", NULL);
    /* NIfTI-2 (int64 vox_offset at byte 168), compressed: refused past 2^31 - 1 as well */
    {
        mk_ctx ctx;
        mk_ctx_init(&ctx);
        mk_image *img = make_image(MK_DT_UINT8, 4, 4, 4);
        mk_nifti_write_opts o = {.version = 2};
        assert_int_equal(mk_io_nifti_write_ex(&ctx, p2, img, &o), MK_OK);
        mk_image_free(img);
        int64_t big = 3000000000LL;
        patch_gz(p2, 168, &big, 8);
        expect_fail_says(p2, MK_ERR_FORMAT, "field vox_offset", "3000000000", "expected", NULL);
    }
    /* the header-only read refuses it too */
    off = 3e9f;
    write_valid(p);
    patch_gz(p, 108, &off, 4);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    assert_int_equal(mk_io_nifti_read_header(&ctx, p, &img), MK_ERR_FORMAT);
    assert_null(img);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "field vox_offset"));
}

/* dim[0] = 6 or 7 (trailing dims of size 1) used to be read as 5 dims; medkd images hold at most
 * 5, so such a header is refused by name rather than losing a dimension. */
static void test_dim0_above_5_refused(void **state)
{
    (void)state;
    char p[1200];
    tio_path(p, sizeof p, "dim6.nii");
    for (int16_t nd = 6; nd <= 7; nd++) {
        write_valid(p);
        patch16(p, 40, nd);
        char got[16];
        snprintf(got, sizeof got, "got %d", nd);
        expect_fail_says(p, MK_ERR_UNSUPPORTED, "field dim[0]", got, "5", NULL);
        mk_ctx ctx;
        mk_ctx_init(&ctx);
        mk_image *img = NULL;
        assert_int_equal(mk_io_nifti_read_header(&ctx, p, &img), MK_ERR_UNSUPPORTED);
        assert_null(img);
    }
    /* 5 dims still read */
    write_valid(p);
    patch16(p, 40, 5);
    expect_reads(p);
}

/* scl_slope 3e38 on int16 used to give inf voxels silently; an infinite slope or a NaN intercept
 * with a valid slope was ignored. NaN or 0 slope stays "no scaling" (nibabel's unset value). */
static void test_scaling_non_finite_refused(void **state)
{
    (void)state;
    char p[1200];
    tio_path(p, sizeof p, "scl.nii");
    write_valid(p);
    patchf(p, 112, 3e38f);
    expect_fail_says(p, MK_ERR_FORMAT, "field scl_slope", "finite", NULL);
    write_valid(p);
    patchf(p, 112, INFINITY);
    expect_fail_says(p, MK_ERR_FORMAT, "field scl_slope", "inf", NULL);
    write_valid(p);
    patchf(p, 112, 2.0f);
    patchf(p, 116, NAN);
    expect_fail_says(p, MK_ERR_FORMAT, "field scl_inter", "nan", NULL);
    write_valid(p);
    patchf(p, 112, 1.0f);
    patchf(p, 116, -INFINITY);
    expect_fail_says(p, MK_ERR_FORMAT, "field scl_inter", "inf", NULL);
    /* finite scaling that overflows float32 through the intercept */
    write_valid(p);
    patchf(p, 112, 1e38f);
    patchf(p, 116, 3e38f);
    expect_fail_says(p, MK_ERR_FORMAT, "field scl_slope", "finite", NULL);
    /* no scaling: NaN slope (with a NaN intercept), slope 0 */
    write_valid(p);
    patchf(p, 112, NAN);
    patchf(p, 116, NAN);
    expect_reads(p);
    write_valid(p);
    patchf(p, 112, 0.0f);
    patchf(p, 116, INFINITY);
    expect_reads(p);
    /* ordinary scaling still works */
    write_valid(p);
    patchf(p, 112, 2.0f);
    patchf(p, 116, -5.0f);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, p, &img), MK_OK);
    assert_int_equal(img->dtype, MK_DT_FLOAT32);
    assert_true(fabs(mk_image_get(img, 0) - (formula(MK_DT_INT16, 0, 0, 0) * 2 - 5)) < 1e-6);
    mk_image_free(img);
}

/* The writers go through core/mk_fs.h: a symlink to a file is written through, not replaced. */
static void test_write_through_symlink(void **state)
{
    (void)state;
    char p[1200], l[1200];
    tio_path(p, sizeof p, "linked_target.nii.gz");
    tio_path(l, sizeof l, "linked.nii.gz");
    write_valid(p);
    assert_int_equal(symlink("linked_target.nii.gz", l), 0);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = make_image(MK_DT_UINT8, 3, 2, 2);
    assert_int_equal(mk_io_nifti_write(&ctx, l, img), MK_OK);
    mk_image_free(img);
    struct stat ls;
    assert_int_equal(lstat(l, &ls), 0);
    assert_true(S_ISLNK(ls.st_mode));
    img = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, p, &img), MK_OK);
    assert_int_equal(img->dtype, MK_DT_UINT8);
    assert_int_equal(img->dim[0], 3);
    mk_image_free(img);
    /* a directory under an image name is refused, not replaced */
    char d[1200];
    tio_path(d, sizeof d, "adir.nii");
    assert_int_equal(mkdir(d, 0777), 0);
    img = make_image(MK_DT_UINT8, 3, 2, 2);
    assert_int_not_equal(mk_io_nifti_write(&ctx, d, img), MK_OK);
    mk_image_free(img);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "not a regular file"));
    assert_int_equal(lstat(d, &ls), 0);
    assert_true(S_ISDIR(ls.st_mode));
    unlink(l);
    unlink(p);
    rmdir(d);
}

static void test_write_errors_leave_nothing(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = make_image(MK_DT_UINT8, 4, 4, 4);
    char p[1200];
    assert_int_equal(mk_io_nifti_write(&ctx, tio_path(p, sizeof p, "x.png"), img), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "field extension"));
    /* unwritable folder */
    assert_int_equal(mk_io_nifti_write(&ctx, "/nonexistent-dir/x.nii", img), MK_ERR_IO);
    assert_false(tio_exists(p));
    mk_image_free(img);
}

/* ---- real samples (facts from shared/data/real/README.md) ------------------------------------ */

static void test_real_cranium(void **state)
{
    (void)state;
    char ct[1200], lb[1200];
    tio_shared(ct, sizeof ct, "data/real/ct/cranium_ct.nii.gz");
    tio_shared(lb, sizeof lb, "data/real/ct/cranium_labels.nii.gz");
    if (!tio_exists(ct))
        fail_msg("%s is missing: the shared/ data beside the checkout (MK_SHARED_DIR)", ct);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *c = NULL, *l = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, ct, &c), MK_OK);
    assert_int_equal(mk_io_nifti_read(&ctx, lb, &l), MK_OK);
    assert_int_equal(c->dtype, MK_DT_INT16);
    assert_int_equal(l->dtype, MK_DT_UINT8);
    assert_int_equal(c->dim[0], 256);
    assert_int_equal(c->dim[1], 256);
    assert_int_equal(c->dim[2], 108);
    assert_true(fabs(c->geom.spacing[0] - 0.9570312) < 1e-6);
    assert_true(fabs(c->geom.spacing[1] - 0.9570312) < 1e-6);
    assert_true(fabs(c->geom.spacing[2] - 1.5) < 1e-6);
    assert_int_equal(c->nifti.qform_code, 1);
    assert_int_equal(c->nifti.sform_code, 1);
    assert_true(mk_geom_same_grid(c, l, 1e-6));
    double lo, hi;
    mk_image_value_range(c, &lo, &hi);
    assert_true(lo == -1024 && hi == 2986);
    int64_t n = mk_image_nvox(c), bad2 = 0, bad1 = 0;
    const int16_t *cv = c->data;
    const uint8_t *lv = l->data;
    for (int64_t i = 0; i < n; i++) {
        bad2 += (lv[i] == 2) != (cv[i] >= 226);
        bad1 += (lv[i] >= 1) != (cv[i] >= -142);
    }
    assert_int_equal(bad2, 0);
    assert_int_equal(bad1, 0);
    mk_image_free(c);
    mk_image_free(l);
}

static void test_real_kmeans_and_colin(void **state)
{
    (void)state;
    char p[1200];
    tio_shared(p, sizeof p, "data/real/mri/itk_kmeans/KmeansTest_T1UCharRaw.nii.gz");
    if (!tio_exists(p))
        fail_msg("%s is missing: the shared/ data beside the checkout (MK_SHARED_DIR)", p);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, p, &img), MK_OK);
    assert_int_equal(img->dim[0], 128);
    assert_int_equal(img->dim[1], 128);
    assert_int_equal(img->dim[2], 62);
    assert_true(fabs(img->geom.spacing[0] - 2) < 1e-6 && fabs(img->geom.spacing[1] - 2) < 1e-6 &&
                fabs(img->geom.spacing[2] - 3) < 1e-6);
    assert_int_equal(img->nifti.qform_code, 2);
    assert_int_equal(img->nifti.sform_code, 1);
    assert_int_equal(img->dtype, MK_DT_INT16);
    char code[4];
    mk_geom_orient_code(&img->geom, code);
    assert_string_equal(code, "LSA");
    double lo, hi;
    mk_image_value_range(img, &lo, &hi);
    assert_true(lo >= 0 && hi <= 255);
    mk_image_free(img);

    char ch2[1200], aal[1200];
    tio_shared(ch2, sizeof ch2, "data/real/mri/colin27_aal/ch2.nii.gz");
    tio_shared(aal, sizeof aal, "data/real/mri/colin27_aal/aal.nii.gz");
    mk_image *a = NULL, *b = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, ch2, &a), MK_OK);
    assert_int_equal(mk_io_nifti_read_header(&ctx, aal, &b), MK_OK);
    assert_null(b->data);
    assert_int_equal(a->dim[0], 181);
    assert_int_equal(a->dim[1], 217);
    assert_int_equal(a->dim[2], 181);
    assert_int_equal(a->dtype, MK_DT_UINT8);
    assert_int_equal(a->nifti.sform_code, 4);
    assert_int_equal(a->nifti.qform_code, 0);
    mk_geom_orient_code(&a->geom, code);
    assert_string_equal(code, "RAS");
    for (int d = 0; d < 3; d++)
        assert_true(fabs(a->geom.spacing[d] - 1) < 1e-6);
    assert_true(mk_geom_same_grid(a, b, 1e-6));
    mk_image_free(a);
    mk_image_free(b);
}

/* nibabel's view of a real file equals ours (affine and a voxel checksum). */
static void test_real_vs_nibabel(void **state)
{
    (void)state;
    char p[1200];
    tio_shared(p, sizeof p, "data/real/mri/gepd_brain_dicom/gepd_brain.nii.gz");
    tio_require_py("nibabel");
    if (!tio_exists(p))
        fail_msg("%s is missing: the shared/ data beside the checkout (MK_SHARED_DIR)", p);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL;
    assert_int_equal(mk_io_nifti_read(&ctx, p, &img), MK_OK);
    double a[4][4];
    mk_geom_affine_ras(&img->geom, a);
    double sum = 0;
    for (int64_t i = 0; i < mk_image_nvox(img); i++)
        sum += mk_image_get(img, i) * (double)(i % 7);
    char args[2400];
    int n = snprintf(args, sizeof args, "'%s' %.17g", p, sum);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            n += snprintf(args + n, sizeof args - (size_t)n, " %.17g", a[r][c]);
    const char *py = "import sys, numpy as np, nibabel as nib\n"
                     "img = nib.load(sys.argv[1])\n"
                     "d = img.get_fdata().ravel(order='F')\n"
                     "s = float((d * (np.arange(d.size) % 7)).sum())\n"
                     "assert abs(s - float(sys.argv[2])) <= 1e-9 * abs(s), (s, sys.argv[2])\n"
                     "a = np.array([float(x) for x in sys.argv[3:15]]).reshape(3, 4)\n"
                     "assert np.allclose(img.affine[:3], a, atol=1e-6), (img.affine, a)\n";
    assert_int_equal(tio_py(py, args), 0);
    mk_image_free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_types_and_flavours),
        cmocka_unit_test(test_4d_and_nifti2),
        cmocka_unit_test(test_nibabel_reads_ours),
        cmocka_unit_test(test_we_read_nibabel),
        cmocka_unit_test(test_analyze_pair),
        cmocka_unit_test(test_nifti_tool_accepts_ours),
        cmocka_unit_test(test_mask_keeps_reference_header),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_bad_gzip),
        cmocka_unit_test(test_write_errors_leave_nothing),
        cmocka_unit_test(test_vox_offset_checked),
        cmocka_unit_test(test_dim0_above_5_refused),
        cmocka_unit_test(test_scaling_non_finite_refused),
        cmocka_unit_test(test_write_through_symlink),
        cmocka_unit_test(test_real_cranium),
        cmocka_unit_test(test_real_kmeans_and_colin),
        cmocka_unit_test(test_real_vs_nibabel),
    };
    return cmocka_run_group_tests(tests, tio_setup, tio_cleanup);
}
