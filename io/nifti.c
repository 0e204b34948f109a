/* medkd NIfTI I/O (see mk_nifti.h for the rules). niftilib parses and builds headers; the raw
 * header is validated here first, and voxels go through zlib directly so that truncation and
 * gzip corruption become our own messages and so that gzip output can be compressed in parallel. */
#include "mk_nifti.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include <nifti2_io.h>
#ifdef MK_HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif

#include "../core/mk_fs.h"
#include "gzmembers.h"

/* ---- small helpers ------------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

int mk_io_nifti_is_path(const char *p)
{
    return ends_with(p, ".nii") || ends_with(p, ".nii.gz") || ends_with(p, ".hdr") ||
           ends_with(p, ".img") || ends_with(p, ".hdr.gz") || ends_with(p, ".img.gz");
}

static void quiet_niftilib(void)
{
    /* niftilib prints to stderr when debug > 0; level 0 keeps only a few hard errors, and we
     * validate before it would hit those. */
    nifti_set_debug_level(0);
}

static const struct {
    int nifti;
    mk_dtype mk;
} DT_MAP[] = {
    {DT_UINT8, MK_DT_UINT8},     {DT_INT8, MK_DT_INT8},     {DT_UINT16, MK_DT_UINT16},
    {DT_INT16, MK_DT_INT16},     {DT_UINT32, MK_DT_UINT32}, {DT_INT32, MK_DT_INT32},
    {DT_UINT64, MK_DT_UINT64},   {DT_INT64, MK_DT_INT64},   {DT_FLOAT32, MK_DT_FLOAT32},
    {DT_FLOAT64, MK_DT_FLOAT64}, {DT_RGB24, MK_DT_RGB24},
};
#define DT_MAP_N ((int)(sizeof DT_MAP / sizeof DT_MAP[0]))

static int dt_from_nifti(int code)
{
    for (int i = 0; i < DT_MAP_N; i++)
        if (DT_MAP[i].nifti == code)
            return (int)DT_MAP[i].mk;
    return -1;
}

static int dt_to_nifti(mk_dtype t)
{
    for (int i = 0; i < DT_MAP_N; i++)
        if (DT_MAP[i].mk == t)
            return DT_MAP[i].nifti;
    return DT_UNKNOWN;
}

/* ---- raw header validation ------------------------------------------------------------------ */

/* The fields we validate, widened from either header version and byte order. */
typedef struct raw_hdr {
    int version; /* 0 ANALYZE, 1, 2 */
    int swapped;
    int onefile; /* magic n+1 / n+2 */
    int64_t dim[8];
    int datatype;
    double pixdim[8];
    double vox_offset;
    double scl_slope, scl_inter;
    int qform_code, sform_code;
    double quat[6];
    double srow[12];
    size_t hsize;
} raw_hdr;

static void swap_bytes(void *p, size_t n)
{
    unsigned char *c = p;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned char t = c[i];
        c[i] = c[n - 1 - i];
        c[n - 1 - i] = t;
    }
}

/* Read `n` bytes at `off` of the (possibly little/big endian) header buffer as a number. */
#define RD(T, buf, off, sw) rd_##T(buf, off, sw)
#define DEF_RD(T)                                                                                  \
    static T rd_##T(const unsigned char *b, size_t off, int sw)                                    \
    {                                                                                              \
        T v;                                                                                       \
        memcpy(&v, b + off, sizeof v);                                                             \
        if (sw)                                                                                    \
            swap_bytes(&v, sizeof v);                                                              \
        return v;                                                                                  \
    }
DEF_RD(int16_t)
DEF_RD(int32_t)
DEF_RD(int64_t)
DEF_RD(float)
DEF_RD(double)

static mk_status read_gz_prefix(mk_ctx *ctx, const char *path, unsigned char *buf, size_t want,
                                size_t *got)
{
    gzFile g = gzopen(path, "rb");
    if (!g)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot open: %s", path,
                      strerror(errno ? errno : ENOENT));
    int n = gzread(g, buf, (unsigned)want);
    if (n < 0) {
        int zerr = 0;
        const char *m = gzerror(g, &zerr);
        mk_status st = mk_err(ctx, MK_ERR_FORMAT,
                              "%s: field header: expected a readable (gzip) stream, got %s", path,
                              m && *m ? m : "a read error");
        gzclose(g);
        return st;
    }
    gzclose(g);
    *got = (size_t)n;
    return MK_OK;
}

static mk_status parse_raw_header(mk_ctx *ctx, const char *path, const unsigned char *b, size_t n,
                                  raw_hdr *h)
{
    memset(h, 0, sizeof *h);
    if (n < 4)
        return mk_err(
            ctx, MK_ERR_FORMAT,
            "%s: field sizeof_hdr: expected a 348- or 540-byte header, got a %zu-byte file", path,
            n);
    int32_t sz = RD(int32_t, b, 0, 0), szs = RD(int32_t, b, 0, 1);
    if (sz == 348 || szs == 348) {
        h->version = 1;
        h->swapped = sz != 348;
        h->hsize = 348;
    } else if (sz == 540 || szs == 540) {
        h->version = 2;
        h->swapped = sz != 540;
        h->hsize = 540;
    } else {
        return mk_err(ctx, MK_ERR_FORMAT, "%s: field sizeof_hdr: expected 348 or 540, got %d", path,
                      (int)sz);
    }
    if (n < h->hsize)
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: field header: expected %zu bytes, got %zu (file truncated)", path,
                      h->hsize, n);
    int sw = h->swapped;
    if (h->version == 1) {
        const char *mg = (const char *)b + 344;
        if (memcmp(mg, "n+1\0", 4) == 0)
            h->onefile = 1;
        else if (memcmp(mg, "ni1\0", 4) == 0)
            h->onefile = 0;
        else
            h->version = 0; /* ANALYZE 7.5: only valid as a .hdr/.img pair (checked by caller) */
        for (int i = 0; i < 8; i++) {
            h->dim[i] = RD(int16_t, b, 40 + 2 * i, sw);
            h->pixdim[i] = RD(float, b, 76 + 4 * i, sw);
        }
        h->datatype = RD(int16_t, b, 70, sw);
        h->vox_offset = RD(float, b, 108, sw);
        h->scl_slope = RD(float, b, 112, sw);
        h->scl_inter = RD(float, b, 116, sw);
        if (h->version == 1) {
            h->qform_code = RD(int16_t, b, 252, sw);
            h->sform_code = RD(int16_t, b, 254, sw);
            for (int i = 0; i < 6; i++)
                h->quat[i] = RD(float, b, 256 + 4 * i, sw);
            for (int i = 0; i < 12; i++)
                h->srow[i] = RD(float, b, 280 + 4 * i, sw);
        }
    } else {
        const char *mg = (const char *)b + 4;
        if (memcmp(mg, "n+2\0", 4) == 0)
            h->onefile = 1;
        else if (memcmp(mg, "ni2\0", 4) == 0)
            h->onefile = 0;
        else
            return mk_err(ctx, MK_ERR_FORMAT,
                          "%s: field magic: expected \"n+2\" or \"ni2\" for a 540-byte header, got "
                          "\"%.3s\"",
                          path, mg);
        for (int i = 0; i < 8; i++) {
            h->dim[i] = RD(int64_t, b, 16 + 8 * i, sw);
            h->pixdim[i] = RD(double, b, 104 + 8 * i, sw);
        }
        h->datatype = RD(int16_t, b, 12, sw);
        h->vox_offset = (double)RD(int64_t, b, 168, sw);
        h->scl_slope = RD(double, b, 176, sw);
        h->scl_inter = RD(double, b, 184, sw);
        h->qform_code = RD(int32_t, b, 344, sw);
        h->sform_code = RD(int32_t, b, 348, sw);
        for (int i = 0; i < 6; i++)
            h->quat[i] = RD(double, b, 352 + 8 * i, sw);
        for (int i = 0; i < 12; i++)
            h->srow[i] = RD(double, b, 400 + 8 * i, sw);
    }
    return MK_OK;
}

/* Checks everything that decides allocation sizes and file offsets. */
static mk_status validate_raw_header(mk_ctx *ctx, const char *path, const raw_hdr *h,
                                     int64_t *nvox_out)
{
    int64_t nd = h->dim[0];
    if (nd < 1 || nd > 7)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: field dim[0]: expected 1..7, got %lld", path,
                      (long long)nd);
    for (int i = 1; i <= nd; i++)
        if (h->dim[i] <= 0)
            return mk_err(ctx, MK_ERR_FORMAT, "%s: field dim[%d]: expected > 0, got %lld", path, i,
                          (long long)h->dim[i]);
    /* dims 6..7 would be dropped (even of size 1, the image would come back with fewer dims) */
    if (nd > MK_IMAGE_MAX_DIMS)
        return mk_err(ctx, MK_ERR_UNSUPPORTED,
                      "%s: field dim[0]: expected 1..%d (medkd images have at most %d dims), got "
                      "%lld",
                      path, MK_IMAGE_MAX_DIMS, MK_IMAGE_MAX_DIMS, (long long)nd);
    int ndim = (int)nd;
    int64_t d[MK_IMAGE_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        d[i] = h->dim[i + 1];
    mk_status st = mk_dims_check(ctx, path, ndim, d, nvox_out);
    if (st != MK_OK)
        return st;
    int dt = dt_from_nifti(h->datatype);
    if (dt < 0)
        return mk_err(
            ctx, MK_ERR_UNSUPPORTED,
            "%s: field datatype: expected one of uint8 int8 uint16 int16 uint32 int32 uint64 "
            "int64 float32 float64 rgb24, got %d (%s)",
            path, h->datatype, nifti_datatype_string(h->datatype));
    for (int i = 1; i <= (ndim < 3 ? ndim : 3); i++)
        if (!isfinite(h->pixdim[i]) || h->pixdim[i] == 0)
            return mk_err(ctx, MK_ERR_FORMAT,
                          "%s: field pixdim[%d]: expected a finite non-zero voxel size, got %g",
                          path, i, h->pixdim[i]);
    if (!isfinite(h->vox_offset) || h->vox_offset < 0 || h->vox_offset > 9007199254740992.0)
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: field vox_offset: expected a finite offset in 0..2^53, got %g", path,
                      h->vox_offset);
    if (h->onefile && h->vox_offset < (double)h->hsize)
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: field vox_offset: expected >= %zu (the header size), got %.17g", path,
                      h->hsize, h->vox_offset);
    /* NIfTI-1/ANALYZE store a float that niftilib converts with (int): a fraction would be cut and
     * 2^31 or more becomes garbage that it clamps to the header size (issue 23) */
    if (h->vox_offset != floor(h->vox_offset) || (h->version < 2 && h->vox_offset > INT_MAX))
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: field vox_offset: expected an integer byte offset in %zu..%d, got %.17g",
                      path, h->onefile ? h->hsize : (size_t)0, INT_MAX, h->vox_offset);
    /* scl_slope 0 or NaN means no scaling (NaN is what nibabel writes when unset) */
    if (isinf(h->scl_slope))
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: field scl_slope: expected a finite value (0 or NaN for no scaling), "
                      "got %g",
                      path, h->scl_slope);
    if (isfinite(h->scl_slope) && h->scl_slope != 0 && !isfinite(h->scl_inter))
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: field scl_inter: expected a finite value with scl_slope %g, got %g",
                      path, h->scl_slope, h->scl_inter);
    if (h->qform_code > 0)
        for (int i = 0; i < 6; i++)
            if (!isfinite(h->quat[i]))
                return mk_err(ctx, MK_ERR_FORMAT,
                              "%s: field %s: expected a finite value (qform_code %d), got %g", path,
                              (const char *[]){"quatern_b", "quatern_c", "quatern_d", "qoffset_x",
                                               "qoffset_y", "qoffset_z"}[i],
                              h->qform_code, h->quat[i]);
    if (h->sform_code > 0) {
        for (int i = 0; i < 12; i++)
            if (!isfinite(h->srow[i]))
                return mk_err(
                    ctx, MK_ERR_FORMAT,
                    "%s: field srow_%c[%d]: expected a finite value (sform_code %d), got %g", path,
                    "xyz"[i / 4], i % 4, h->sform_code, h->srow[i]);
        for (int c = 0; c < 3; c++) {
            double s = 0;
            for (int r = 0; r < 3; r++)
                s += h->srow[r * 4 + c] * h->srow[r * 4 + c];
            if (s == 0)
                return mk_err(
                    ctx, MK_ERR_FORMAT,
                    "%s: field srow column %d: expected a non-zero voxel axis (sform_code "
                    "%d), got 0",
                    path, c, h->sform_code);
        }
    }
    return MK_OK;
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

static int is_gzip_file(const char *path)
{
    unsigned char m[2] = {0, 0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(m, 1, 2, f);
    fclose(f);
    return n == 2 && m[0] == 0x1f && m[1] == 0x8b;
}

/* ---- geometry ------------------------------------------------------------------------------ */

static void dmat_to_arr(const nifti_dmat44 *m, double a[4][4])
{
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            a[r][c] = m->m[r][c];
}

static nifti_dmat44 arr_to_dmat(const double a[4][4])
{
    nifti_dmat44 m;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            m.m[r][c] = a[r][c];
    return m;
}

mk_status mk_nifti_geom_from_meta(mk_ctx *ctx, const mk_nifti_meta *meta, mk_geom *g)
{
    const double(*ras)[4] = meta->sform_code > 0 ? meta->sform : meta->qform;
    double lps[4][4];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            lps[r][c] = (r < 2 ? -1.0 : 1.0) * ras[r][c];
    double tr = g->tr;
    mk_status st = mk_geom_from_affine_lps(ctx, lps, g);
    g->tr = tr;
    return st;
}

void mk_nifti_meta_from_geom(const mk_geom *g, int qform_code, int sform_code, mk_nifti_meta *meta)
{
    memset(meta, 0, sizeof *meta);
    meta->present = 1;
    meta->qform_code = qform_code;
    meta->sform_code = sform_code;
    double a[4][4];
    mk_geom_affine_ras(g, a);
    memcpy(meta->sform, a, sizeof a);
    /* qform: the quaternion of the affine (niftilib orthogonalises a non-orthogonal direction),
     * rebuilt into the matrix a reader would compute. */
    double qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac;
    nifti_dmat44_to_quatern(arr_to_dmat(a), &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qfac);
    nifti_dmat44 q = nifti_quatern_to_dmat44(qb, qc, qd, qx, qy, qz, g->spacing[0], g->spacing[1],
                                             g->spacing[2], qfac);
    dmat_to_arr(&q, meta->qform);
    meta->qfac = qfac;
    meta->pixdim[0] = qfac;
    for (int i = 0; i < 3; i++)
        meta->pixdim[i + 1] = g->spacing[i];
    meta->pixdim[4] = g->tr;
    meta->xyz_units = NIFTI_UNITS_MM;
    meta->time_units = g->tr > 0 ? NIFTI_UNITS_SEC : 0;
}

/* Affine (RAS) a header written from `meta` would give a reader under our rule. */
static void meta_affine(const mk_nifti_meta *m, double a[4][4])
{
    if (m->sform_code > 0)
        memcpy(a, m->sform, sizeof m->sform);
    else
        memcpy(a, m->qform, sizeof m->qform);
}

static int meta_matches_geom(const mk_nifti_meta *m, const mk_geom *g)
{
    if (!m->present)
        return 0;
    double a[4][4], b[4][4];
    meta_affine(m, a);
    mk_geom_affine_ras(g, b);
    double smax = fmax(g->spacing[0], fmax(g->spacing[1], g->spacing[2]));
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            if (!(fabs(a[r][c] - b[r][c]) <= 1e-4 * smax))
                return 0;
    return 1;
}

/* ---- reading -------------------------------------------------------------------------------- */

/* Header file name for a path (.img -> .hdr, .img.gz -> .hdr.gz) into buf. */
static mk_status header_path(mk_ctx *ctx, const char *path, char *buf, size_t n)
{
    if (strlen(path) + 1 > n)
        return mk_err(ctx, MK_ERR_INVALID, "%s: path too long", path);
    strcpy(buf, path);
    char *p = NULL;
    if (ends_with(buf, ".img"))
        p = buf + strlen(buf) - 4;
    else if (ends_with(buf, ".img.gz"))
        p = buf + strlen(buf) - 7;
    if (p)
        memcpy(p, ".hdr", 4);
    return MK_OK;
}

static mk_status read_voxels(mk_ctx *ctx, const char *iname, int64_t offset, void *dst,
                             size_t nbytes)
{
    gzFile g = gzopen(iname, "rb");
    if (!g)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot open: %s", iname,
                      strerror(errno ? errno : ENOENT));
    gzbuffer(g, 1 << 20);
    mk_status st = MK_OK;
    if (offset > 0 && gzseek(g, (z_off_t)offset, SEEK_SET) != (z_off_t)offset) {
        st = mk_err(ctx, MK_ERR_FORMAT,
                    "%s: field vox_offset: expected the data to start at byte %lld, got a shorter "
                    "or corrupt stream",
                    iname, (long long)offset);
        goto done;
    }
    size_t done = 0;
    while (done < nbytes) {
        size_t chunk = nbytes - done > (1u << 30) ? (1u << 30) : nbytes - done;
        int n = gzread(g, (char *)dst + done, (unsigned)chunk);
        if (n < 0) {
            int zerr = 0;
            const char *m = gzerror(g, &zerr);
            st = mk_err(ctx, MK_ERR_FORMAT,
                        "%s: field data: expected %zu bytes of voxels, got a corrupt gzip stream "
                        "after %zu bytes (%s)",
                        iname, nbytes, done, m ? m : "?");
            goto done;
        }
        if (n == 0 && done == 0 && offset > 0) {
            int zerr = 0;
            const char *m = gzerror(g, &zerr);
            st = mk_err(ctx, MK_ERR_FORMAT,
                        "%s: field vox_offset: expected %zu bytes of voxels from vox_offset %lld, "
                        "got none (the data ends before the offset: file truncated or offset past "
                        "the end%s%s)",
                        iname, nbytes, (long long)offset, zerr ? "; " : "", zerr ? m : "");
            goto done;
        }
        if (n == 0) {
            int zerr = 0;
            const char *m = gzerror(g, &zerr);
            st =
                mk_err(ctx, MK_ERR_FORMAT,
                       "%s: field data: expected %zu bytes of voxels at offset %lld, got %zu (file "
                       "truncated%s%s)",
                       iname, nbytes, (long long)offset, done, zerr ? ": " : "", zerr ? m : "");
            goto done;
        }
        done += (size_t)n;
    }
done:
    gzclose(g);
    return st;
}

static mk_status nifti_open(mk_ctx *ctx, const char *path, int read_data, mk_image **out)
{
    *out = NULL;
    quiet_niftilib();
    char hname[4096];
    mk_status st = header_path(ctx, path, hname, sizeof hname);
    if (st != MK_OK)
        return st;
    if (!mk_fs_is_file(hname))
        return mk_err(ctx, MK_ERR_IO, "%s: cannot open: no such file%s", hname,
                      strcmp(hname, path) ? " (header of the .img pair)" : "");

    unsigned char buf[540];
    size_t got = 0;
    st = read_gz_prefix(ctx, hname, buf, sizeof buf, &got);
    if (st != MK_OK)
        return st;
    raw_hdr h;
    st = parse_raw_header(ctx, hname, buf, got, &h);
    if (st != MK_OK)
        return st;
    int pair_name = ends_with(hname, ".hdr") || ends_with(hname, ".hdr.gz");
    if (h.version == 0 && !pair_name)
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: field magic: expected \"n+1\" (single-file NIfTI-1), got \"%.3s\"",
                      hname, (const char *)buf + 344);
    int64_t nvox = 0;
    st = validate_raw_header(ctx, hname, &h, &nvox);
    if (st != MK_OK)
        return st;
    mk_dtype dt = (mk_dtype)dt_from_nifti(h.datatype);
    size_t nbytes = (size_t)nvox * mk_dtype_size(dt);

    /* offsets past the end are caught here already, before niftilib converts the offset */
    if (h.onefile && !is_gzip_file(hname)) {
        int64_t fs = file_size(hname);
        if ((double)fs < h.vox_offset + (double)nbytes)
            return mk_err(
                ctx, MK_ERR_FORMAT,
                "%s: field vox_offset: expected vox_offset + %zu data bytes <= file size %lld, "
                "got vox_offset %.0f (file truncated or offset past the end)",
                hname, nbytes, (long long)fs, h.vox_offset);
    }
    nifti_image *nim = nifti_image_read(hname, 0);
    if (!nim)
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s: field header: expected a NIfTI/ANALYZE header niftilib "
                      "accepts, got one it rejects",
                      hname);
    const char *iname = nim->iname ? nim->iname : hname;
    /* the offset is the header's own (validated above), never a value niftilib made up */
    int64_t off = (int64_t)h.vox_offset;
    if (nim->iname_offset != off) {
        st = mk_err(ctx, MK_ERR_FORMAT,
                    "%s: field vox_offset: expected niftilib to read the header's %lld, got %lld",
                    hname, (long long)off, (long long)nim->iname_offset);
        goto fail;
    }
    if (!mk_fs_is_file(iname)) {
        st = mk_err(ctx, MK_ERR_IO, "%s: cannot open the image file of the pair: no such file",
                    iname);
        goto fail;
    }
    /* the uncompressed size of a .gz is not known without inflating it all: no offset past what
     * an int holds (the voxels read after it must then be complete, checked by the readers) */
    if (is_gzip_file(iname) && off > INT_MAX) {
        st = mk_err(ctx, MK_ERR_FORMAT,
                    "%s: field vox_offset: expected an integer byte offset in %zu..%d for a gzip "
                    "file, got %lld",
                    hname, h.onefile ? h.hsize : (size_t)0, INT_MAX, (long long)off);
        goto fail;
    }
    if (!is_gzip_file(iname)) {
        int64_t fs = file_size(iname);
        if (fs < off + (int64_t)nbytes) {
            st = mk_err(
                ctx, MK_ERR_FORMAT,
                "%s: field vox_offset: expected vox_offset + %zu data bytes <= file size %lld, "
                "got vox_offset %lld (file truncated or offset past the end)",
                iname, nbytes, (long long)fs, (long long)off);
            goto fail;
        }
    }

    mk_image *img = calloc(1, sizeof *img);
    if (!img) {
        st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    img->dtype = dt;
    img->ndim = (int)h.dim[0]; /* 1..MK_IMAGE_MAX_DIMS, checked by validate_raw_header */
    for (int d = 0; d < MK_IMAGE_MAX_DIMS; d++)
        img->dim[d] = d < img->ndim ? h.dim[d + 1] : 1;

    /* meta: verbatim */
    mk_nifti_meta *m = &img->nifti;
    m->present = 1;
    m->qform_code = nim->qform_code;
    m->sform_code = nim->sform_code;
    dmat_to_arr(&nim->qto_xyz, m->qform);
    dmat_to_arr(&nim->sto_xyz, m->sform);
    m->qfac = nim->qfac;
    for (int i = 0; i < 8; i++)
        m->pixdim[i] = nim->pixdim[i];
    m->xyz_units = nim->xyz_units;
    m->time_units = nim->time_units;
    m->toffset = nim->toffset;
    img->intent_code = nim->intent_code;
    memcpy(img->descrip, nim->descrip, 80);
    img->descrip[80] = '\0';

    /* geometry: dims beyond ndim may carry pixdim 0, which niftilib leaves as a zero column of the
     * "no code" qform; give them unit spacing rather than refusing the 2D image. */
    double ras[4][4];
    meta_affine(m, ras);
    for (int c = 0; c < 3; c++) {
        double s = ras[0][c] * ras[0][c] + ras[1][c] * ras[1][c] + ras[2][c] * ras[2][c];
        if (!(s > 0) && c >= img->ndim) {
            for (int r = 0; r < 3; r++)
                ras[r][c] = r == c ? 1.0 : 0.0;
        }
    }
    double lps[4][4];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            lps[r][c] = (r < 2 ? -1.0 : 1.0) * ras[r][c];
    st = mk_geom_from_affine_lps(ctx, lps, &img->geom);
    if (st != MK_OK) {
        mk_err_prefix(ctx, "%s: field %s", hname, m->sform_code > 0 ? "srow" : "quatern/pixdim");
        mk_image_free(img);
        goto fail;
    }
    if (img->ndim >= 4 && isfinite(nim->dt) && nim->dt > 0) {
        double f = nim->time_units == NIFTI_UNITS_MSEC   ? 1e-3
                   : nim->time_units == NIFTI_UNITS_USEC ? 1e-6
                                                         : 1.0;
        img->geom.tr = nim->dt * f;
    }

    if (read_data) {
        int fast = 0;
#ifdef MK_HAVE_LIBDEFLATE
        fast = is_gzip_file(iname) && off <= (1 << 20);
#endif
        /* the fast path decodes header + voxels into one buffer, then slides the voxels down */
        img->data = malloc(nbytes + (fast ? (size_t)off : 0) + 1);
        if (!img->data) {
            st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory for %zu bytes of voxels", path,
                        nbytes);
            mk_image_free(img);
            goto fail;
        }
        st = MK_ERR_UNSUPPORTED;
#ifdef MK_HAVE_LIBDEFLATE
        if (fast && mk__gz_read_fast(iname, img->data, (size_t)off + nbytes) == 0) {
            memmove(img->data, (unsigned char *)img->data + off, nbytes);
            st = MK_OK;
        }
#endif
        if (st != MK_OK)
            st = read_voxels(ctx, iname, off, img->data, nbytes);
        if (st != MK_OK) {
            mk_image_free(img);
            goto fail;
        }
        if (nim->byteorder != nifti_short_order() && nim->swapsize > 1)
            nifti_swap_Nbytes(nvox, nim->swapsize, img->data);
        /* the header's values: a non-finite slope is "no scaling", an infinite one or a
         * non-finite intercept with a slope were refused by validate_raw_header */
        double sl = h.scl_slope, in = h.scl_inter;
        if (isfinite(sl) && sl != 0 && !(sl == 1 && in == 0) && dt != MK_DT_RGB24) {
            int wide = dt == MK_DT_FLOAT64 || dt == MK_DT_INT32 || dt == MK_DT_UINT32 ||
                       dt == MK_DT_INT64 || dt == MK_DT_UINT64;
            mk_dtype to = wide ? MK_DT_FLOAT64 : MK_DT_FLOAT32;
            void *nd = malloc((size_t)nvox * mk_dtype_size(to));
            if (!nd) {
                st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory applying scl_slope", path);
                mk_image_free(img);
                goto fail;
            }
            for (int64_t i = 0; i < nvox; i++) {
                double raw = mk_image_get(img, i), v = raw * sl + in;
                if (wide)
                    ((double *)nd)[i] = v;
                else
                    ((float *)nd)[i] = (float)v;
                /* NaN/inf stored in a float file stay as they are; made by the scaling: refused */
                if (isfinite(raw) && !isfinite(wide ? v : (double)(float)v)) {
                    st = mk_err(ctx, MK_ERR_FORMAT,
                                "%s: field scl_slope: expected raw * scl_slope + scl_inter to be "
                                "finite in %s, got %g at voxel %lld (raw %g, scl_slope %g, "
                                "scl_inter %g)",
                                hname, wide ? "float64" : "float32", wide ? v : (double)(float)v,
                                (long long)i, raw, sl, in);
                    free(nd);
                    mk_image_free(img);
                    goto fail;
                }
            }
            free(img->data);
            img->data = nd;
            img->dtype = to;
        }
    }
    nifti_image_free(nim);
    mk_image_assert_valid(img);
    *out = img;
    return MK_OK;
fail:
    nifti_image_free(nim);
    return st;
}

mk_status mk_io_nifti_read(mk_ctx *ctx, const char *path, mk_image **out)
{
    return nifti_open(ctx, path, 1, out);
}

mk_status mk_io_nifti_read_header(mk_ctx *ctx, const char *path, mk_image **out)
{
    return nifti_open(ctx, path, 0, out);
}

/* ---- writing -------------------------------------------------------------------------------- */

/* Write the concatenation of parts as gzip (or plain) to f. */
static mk_status write_stream(mk_ctx *ctx, const char *path, FILE *f, int gz, int level,
                              int threads, const void *head, size_t head_n, const void *data,
                              size_t data_n)
{
    if (!gz) {
        if ((head_n && fwrite(head, 1, head_n, f) != head_n) ||
            (data_n && fwrite(data, 1, data_n, f) != data_n))
            return mk_err(ctx, MK_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        return MK_OK;
    }
    return mk__gz_write(ctx, path, f, level, threads, head, head_n, data, data_n);
}

static mk_status write_file(mk_ctx *ctx, const char *final_path, const char *tmp, int gz,
                            const mk_nifti_write_opts *o, const void *head, size_t head_n,
                            const void *data, size_t data_n)
{
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    mk_status st =
        write_stream(ctx, final_path, f, gz, o->gzip_level, o->threads, head, head_n, data, data_n);
    if (fclose(f) != 0 && st == MK_OK)
        st = mk_err(ctx, MK_ERR_IO, "%s: write failed: %s", final_path, strerror(errno));
    if (st != MK_OK)
        mk_fs_discard(tmp);
    return st;
}

mk_status mk_io_nifti_write(mk_ctx *ctx, const char *path, const mk_image *img)
{
    return mk_io_nifti_write_ex(ctx, path, img, NULL);
}

mk_status mk_io_nifti_write_ex(mk_ctx *ctx, const char *path, const mk_image *img,
                               const mk_nifti_write_opts *opts)
{
    mk_image_assert_valid(img);
    MK_ASSERT(img->data != NULL);
    quiet_niftilib();
    mk_nifti_write_opts o = {0};
    if (opts)
        o = *opts;
    if (o.gzip_level <= 0 || o.gzip_level > 9)
        o.gzip_level = 1;
    if (o.threads <= 0)
        o.threads = 2;

    int pair = ends_with(path, ".hdr") || ends_with(path, ".img") || ends_with(path, ".hdr.gz") ||
               ends_with(path, ".img.gz");
    int gz = ends_with(path, ".gz");
    if (!pair && !ends_with(path, ".nii") && !ends_with(path, ".nii.gz"))
        return mk_err(
            ctx, MK_ERR_INVALID,
            "%s: field extension: expected .nii, .nii.gz, .hdr/.img (optionally .gz), got "
            "another name",
            path);
    int needs2 = 0;
    for (int d = 0; d < img->ndim; d++)
        if (img->dim[d] > 32767)
            needs2 = 1;
    int ver = o.version ? o.version : needs2 ? 2 : 1;
    if (ver == 1 && needs2)
        return mk_err(ctx, MK_ERR_INVALID,
                      "%s: field dim: expected <= 32767 per axis for NIfTI-1, got a larger axis "
                      "(write NIfTI-2)",
                      path);

    /* meta to write */
    mk_nifti_meta meta;
    if (meta_matches_geom(&img->nifti, &img->geom)) {
        meta = img->nifti;
    } else {
        int qc = img->nifti.present && img->nifti.qform_code > 0 ? img->nifti.qform_code : 1;
        int sc = img->nifti.present && img->nifti.sform_code > 0 ? img->nifti.sform_code : 1;
        mk_nifti_meta_from_geom(&img->geom, qc, sc, &meta);
        if (img->nifti.present) {
            meta.toffset = img->nifti.toffset;
            if (img->nifti.time_units)
                meta.time_units = img->nifti.time_units;
        }
    }

    int64_t dims[8] = {img->ndim, 1, 1, 1, 1, 1, 1, 1};
    for (int d = 0; d < img->ndim; d++)
        dims[d + 1] = img->dim[d];
    nifti_image *nim = nifti_make_new_nim(dims, dt_to_nifti(img->dtype), 0);
    if (!nim)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: niftilib could not create a header", path);
    for (int i = img->ndim + 1; i < 8; i++)
        nim->dim[i] = 1; /* unused dims are 1 on disk, as nibabel and ITK write them */
    int64_t *nn[7] = {&nim->nx, &nim->ny, &nim->nz, &nim->nt, &nim->nu, &nim->nv, &nim->nw};
    for (int i = 0; i < 7; i++)
        *nn[i] = nim->dim[i + 1];
    for (int i = 1; i < 8; i++)
        nim->pixdim[i] = i <= 3 ? meta.pixdim[i] : (i == 4 && img->ndim >= 4 ? img->geom.tr : 1.0);
    if (meta.pixdim[4] > 0 && img->ndim >= 4)
        nim->pixdim[4] = meta.pixdim[4];
    for (int i = 1; i <= 3; i++)
        if (!(nim->pixdim[i] > 0))
            nim->pixdim[i] = img->geom.spacing[i - 1];
    nim->dx = nim->pixdim[1];
    nim->dy = nim->pixdim[2];
    nim->dz = nim->pixdim[3];
    nim->dt = nim->pixdim[4];
    nim->du = nim->pixdim[5];
    nim->dv = nim->pixdim[6];
    nim->dw = nim->pixdim[7];
    nim->qform_code = meta.qform_code;
    nim->sform_code = meta.sform_code;
    {
        double qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac;
        nifti_dmat44_to_quatern(arr_to_dmat(meta.qform), &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy,
                                &dz, &qfac);
        nim->quatern_b = qb;
        nim->quatern_c = qc;
        nim->quatern_d = qd;
        /* offsets copied, not recomputed, so they survive bit for bit */
        nim->qoffset_x = meta.qform[0][3];
        nim->qoffset_y = meta.qform[1][3];
        nim->qoffset_z = meta.qform[2][3];
        nim->qfac = qfac;
        nim->pixdim[0] = qfac;
        nim->qto_xyz = arr_to_dmat(meta.qform);
    }
    nim->sto_xyz = arr_to_dmat(meta.sform);
    nim->xyz_units = meta.xyz_units ? meta.xyz_units : NIFTI_UNITS_MM;
    nim->time_units = meta.time_units;
    nim->toffset = meta.toffset;
    nim->scl_slope = 1.0;
    nim->scl_inter = 0.0;
    nim->intent_code = img->intent_code;
    memcpy(nim->descrip, img->descrip, 79);
    nim->descrip[79] = '\0';
    nim->nifti_type = ver == 2 ? (pair ? NIFTI_FTYPE_NIFTI2_2 : NIFTI_FTYPE_NIFTI2_1)
                               : (pair ? NIFTI_FTYPE_NIFTI1_2 : NIFTI_FTYPE_NIFTI1_1);
    size_t hsize = ver == 2 ? 540 : 348;
    nim->iname_offset = pair ? 0 : (int64_t)hsize + 4;

    unsigned char head[544 + 4];
    memset(head, 0, sizeof head);
    int rc;
    if (ver == 2) {
        nifti_2_header h2;
        rc = nifti_convert_nim2n2hdr(nim, &h2);
        h2.vox_offset = pair ? 0 : 544;
        memcpy(h2.magic, pair ? "ni2\0\r\n\032\n" : "n+2\0\r\n\032\n", 8);
        memcpy(head, &h2, 540);
    } else {
        nifti_1_header h1;
        rc = nifti_convert_nim2n1hdr(nim, &h1);
        h1.vox_offset = pair ? 0.0f : 352.0f;
        memcpy(h1.magic, pair ? "ni1" : "n+1", 4);
        memcpy(head, &h1, 348);
    }
    nifti_image_free(nim);
    if (rc != 0)
        return mk_err(ctx, MK_ERR_INTERNAL, "%s: niftilib could not convert the header", path);
    size_t nbytes = (size_t)mk_image_nvox(img) * mk_dtype_size(img->dtype);

    if (!pair) {
        char tmp[4200];
        mk_status st = mk_fs_tmp_path(ctx, path, tmp, sizeof tmp);
        if (st != MK_OK)
            return st;
        st = write_file(ctx, path, tmp, gz, &o, head, hsize + 4, img->data, nbytes);
        if (st != MK_OK)
            return st;
        return mk_fs_commit(ctx, tmp, path);
    }
    /* pair: derive both names from the given one */
    char hdr[4096], imgp[4096], th[4200], ti[4200];
    size_t L = strlen(path);
    size_t stem = L - (gz ? 7 : 4);
    if (L + 1 > sizeof hdr)
        return mk_err(ctx, MK_ERR_INVALID, "%s: path too long", path);
    memcpy(hdr, path, stem);
    memcpy(imgp, path, stem);
    strcpy(hdr + stem, gz ? ".hdr.gz" : ".hdr");
    strcpy(imgp + stem, gz ? ".img.gz" : ".img");
    mk_status st = mk_fs_tmp_path(ctx, hdr, th, sizeof th);
    if (st == MK_OK)
        st = mk_fs_tmp_path(ctx, imgp, ti, sizeof ti);
    if (st != MK_OK)
        return st;
    st = write_file(ctx, hdr, th, gz, &o, head, hsize, NULL, 0);
    if (st != MK_OK)
        return st;
    st = write_file(ctx, imgp, ti, gz, &o, NULL, 0, img->data, nbytes);
    if (st != MK_OK) {
        mk_fs_discard(th);
        return st;
    }
    st = mk_fs_commit(ctx, ti, imgp);
    if (st != MK_OK) {
        mk_fs_discard(th);
        return st;
    }
    return mk_fs_commit(ctx, th, hdr);
}
