/* nifti-bench: read + write time of a 512x512x300 int16 .nii.gz, medkd against nibabel on the same
 * file in the same run, with an identity check of the outputs.
 *
 *   build-x/nifti-bench [DIR] [--threads N] [--level L] [--nz NZ]
 *
 * A CT-like phantom (air -1000 outside an elliptic body of soft tissue with +-40 HU noise and a
 * bone ring) is generated and written as DIR/bench_in.nii.gz (not timed). Then: medkd:
 * mk_io_nifti_read(bench_in) + mk_io_nifti_write(bench_mk.nii.gz) nibabel: nib.load(bench_in);
 * np.asanyarray(dataobj); nib.save(bench_nb.nii.gz)  (timed inside python, interpreter start-up
 * excluded), if /usr/bin/python3 has nibabel. Finally both outputs are read back by medkd and
 * compared voxel for voxel and affine for affine (the read of nibabel's output, a single gzip
 * member that cannot be inflated in parallel, is timed too). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/mk_status.h"
#include "io/mk_image.h"
#include "io/mk_nifti.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long long fsize(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

static int die(mk_ctx *ctx)
{
    fprintf(stderr, "nifti-bench: %s\n", mk_ctx_errmsg(ctx));
    return 1;
}

int main(int argc, char **argv)
{
    const char *dir = ".";
    int threads = 2, level = 1, nz = 300;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--level") && i + 1 < argc)
            level = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--nz") && i + 1 < argc)
            nz = atoi(argv[++i]);
        else
            dir = argv[i];
    }
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char in[4096], out_mk[4096], out_nb[4096];
    snprintf(in, sizeof in, "%s/bench_in.nii.gz", dir);
    snprintf(out_mk, sizeof out_mk, "%s/bench_mk.nii.gz", dir);
    snprintf(out_nb, sizeof out_nb, "%s/bench_nb.nii.gz", dir);

    int64_t dim[3] = {512, 512, nz};
    mk_image *img = NULL;
    if (mk_image_new(&ctx, MK_DT_INT16, 3, dim, &img) != MK_OK)
        return die(&ctx);
    img->geom.spacing[0] = img->geom.spacing[1] = 0.7421875;
    img->geom.spacing[2] = 1.25;
    img->geom.origin[0] = -190;
    img->geom.origin[1] = -190;
    img->geom.origin[2] = -400;
    int16_t *v = img->data;
    uint32_t s = 12345;
    for (int64_t k = 0; k < nz; k++)
        for (int64_t j = 0; j < 512; j++)
            for (int64_t i = 0; i < 512; i++) {
                double x = (i - 256) / 200.0, y = (j - 256) / 150.0;
                double r = x * x + y * y;
                s = s * 1664525u + 1013904223u;
                int noise = (int)(s >> 25) - 64; /* -64..63 */
                int16_t hu = -1000;
                if (r < 1.0)
                    hu = (int16_t)(40 + noise / 2);
                if (r > 0.85 && r < 1.0)
                    hu = (int16_t)(700 + noise);
                v[i + 512 * (j + 512 * k)] = hu;
            }
    if (mk_io_nifti_write(&ctx, in, img) != MK_OK)
        return die(&ctx);
    mk_image_free(img);
    printf("input: %s, 512x512x%d int16, %.1f MB raw, %.1f MB gzip\n", in, nz,
           512.0 * 512 * nz * 2 / 1e6, (double)fsize(in) / 1e6);

    mk_nifti_write_opts o = {.gzip_level = level, .threads = threads};
    double best_r = 1e9, best_w = 1e9;
    for (int rep = 0; rep < 2; rep++) {
        double t0 = now();
        mk_image *a = NULL;
        if (mk_io_nifti_read(&ctx, in, &a) != MK_OK)
            return die(&ctx);
        double t1 = now();
        if (mk_io_nifti_write_ex(&ctx, out_mk, a, &o) != MK_OK)
            return die(&ctx);
        double t2 = now();
        mk_image_free(a);
        if (t1 - t0 < best_r)
            best_r = t1 - t0;
        if (t2 - t1 < best_w)
            best_w = t2 - t1;
    }
    printf("medkd   read %.3f s  write %.3f s  total %.3f s  (gzip level %d, %d threads; best of 2)"
           "  out %.1f MB\n",
           best_r, best_w, best_r + best_w, level, threads, (double)fsize(out_mk) / 1e6);

    char cmd[16384];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 - '%s' '%s' <<'EOF'\n"
             "import sys, time\n"
             "import numpy as np, nibabel as nib\n"
             "best = None\n"
             "for rep in range(2):\n"
             "    t0 = time.perf_counter()\n"
             "    img = nib.load(sys.argv[1])\n"
             "    d = np.asanyarray(img.dataobj)\n"
             "    t1 = time.perf_counter()\n"
             "    nib.save(nib.Nifti1Image(d, img.affine, img.header), sys.argv[2])\n"
             "    t2 = time.perf_counter()\n"
             "    if best is None or t2 - t0 < best[2]: best = (t1 - t0, t2 - t1, t2 - t0)\n"
             "print('nibabel read %%.3f s  write %%.3f s  total %%.3f s  (nibabel %%s; best of 2)' "
             "%% (best + (nib.__version__,)))\n"
             "EOF",
             in, out_nb);
    int have_nb = system("/usr/bin/python3 -c 'import nibabel' >/dev/null 2>&1") == 0;
    if (have_nb) {
        fflush(stdout);
        if (system(cmd) != 0)
            have_nb = 0;
    } else {
        printf("nibabel: not available (/usr/bin/python3 -c 'import nibabel' failed)\n");
    }
    /* identity check: decoded voxels and affine of both outputs equal the input's */
    mk_image *x = NULL, *y = NULL;
    if (mk_io_nifti_read(&ctx, in, &x) != MK_OK || mk_io_nifti_read(&ctx, out_mk, &y) != MK_OK)
        return die(&ctx);
    size_t nb = (size_t)mk_image_nvox(x) * 2;
    int same_mk = memcmp(x->data, y->data, nb) == 0 && mk_geom_same_grid(x, y, 1e-7);
    int same_nb = -1;
    if (have_nb) {
        mk_image *z = NULL;
        /* nibabel's file is one gzip member: no parallel inflate, a fair single-stream read */
        double t0 = now();
        if (mk_io_nifti_read(&ctx, out_nb, &z) != MK_OK)
            return die(&ctx);
        printf("medkd   read of nibabel's single-member output %.3f s\n", now() - t0);
        same_nb = memcmp(z->data, y->data, nb) == 0 && mk_geom_same_grid(z, y, 1e-7);
        mk_image_free(z);
    }
    printf("identical voxels+grid: medkd output vs input %s; medkd output vs nibabel output %s\n",
           same_mk ? "yes" : "NO",
           same_nb < 0 ? "n/a"
           : same_nb   ? "yes"
                       : "NO");
    mk_image_free(x);
    mk_image_free(y);
    return same_mk && same_nb != 0 ? 0 : 1;
}
