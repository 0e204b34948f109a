/* metrics-bench: `pipeline eval` end to end on a 512x512x300 uint8 .nii.gz pair (spacing
 * 0.8x0.8x1.5 mm, a ~200 ml sphere vs the same sphere shifted and slightly smaller), reading
 * included, and the metric part alone on in-memory arrays.
 *
 *   metrics-bench [--runs N] [--dir DIR]     (DIR default: ./metrics-bench-data, files are cached)
 *
 * End-to-end figures come from running the `pipeline` binary next to this one as a child process:
 * wall time per run and the child's peak RSS (getrusage RUSAGE_CHILDREN after each run). The
 * reference figures (docs/metrics.md): DeepMind surface-distance 0.9-1.8 s and 323-332 MiB on 2
 * cores for the same pair. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../core/mk_log.h"
#include "../core/mk_status.h"
#include "../io/mk_image.h"
#include "../io/mk_nifti.h"
#include "../metrics/mk_metrics.h"

#define NX 512
#define NY 512
#define NZ 300

static void make_sphere(uint8_t *v, double cx, double cy, double cz, double r)
{
    const double sx = 0.8, sy = 0.8, sz = 1.5;
    for (int z = 0; z < NZ; z++)
        for (int y = 0; y < NY; y++)
            for (int x = 0; x < NX; x++) {
                double dx = (x - cx) * sx, dy = (y - cy) * sy, dz = (z - cz) * sz;
                v[(size_t)x + NX * ((size_t)y + NY * (size_t)z)] =
                    dx * dx + dy * dy + dz * dz <= r * r;
            }
}

static int write_pair(mk_ctx *ctx, const char *pp, const char *rp)
{
    const int64_t dim[3] = {NX, NY, NZ};
    mk_image *img = NULL;
    if (mk_image_new(ctx, MK_DT_UINT8, 3, dim, &img) != MK_OK)
        return 1;
    img->geom.spacing[0] = 0.8;
    img->geom.spacing[1] = 0.8;
    img->geom.spacing[2] = 1.5;
    /* r = 36.28 mm: 4/3 pi r^3 = 200 ml */
    make_sphere(img->data, 256, 256, 150, 36.28);
    int rc = mk_io_nifti_write(ctx, pp, img) != MK_OK;
    make_sphere(img->data, 258.5, 255, 151, 35.5);
    rc |= mk_io_nifti_write(ctx, rp, img) != MK_OK;
    mk_image_free(img);
    return rc;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int runs = 5;
    const char *dir = "metrics-bench-data";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: metrics-bench [--runs N] [--dir DIR]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > 100)
        runs = 5;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char pp[1200], rp[1200], bin[1200], cmd[4096];
    mkdir(dir, 0755);
    snprintf(pp, sizeof pp, "%s/pred.nii.gz", dir);
    snprintf(rp, sizeof rp, "%s/ref.nii.gz", dir);
    struct stat st;
    if (stat(pp, &st) != 0 || stat(rp, &st) != 0) {
        printf("writing the 512x512x300 pair into %s ...\n", dir);
        if (write_pair(&ctx, pp, rp)) {
            fprintf(stderr, "error: %s\n", mk_ctx_errmsg(&ctx));
            return 1;
        }
    }
    /* the pipeline binary sits next to this one (both in the build dir) */
    snprintf(bin, sizeof bin, "%s", argv[0]);
    char *slash = strrchr(bin, '/');
    if (slash)
        slash[1] = '\0';
    else
        bin[0] = '\0';
    strncat(bin, "pipeline", sizeof bin - strlen(bin) - 1);
    if (slash == NULL)
        snprintf(bin, sizeof bin, "./pipeline");

    printf("metrics-bench: 512x512x300 uint8 .nii.gz pair, spacing 0.8x0.8x1.5 mm, %d run(s)\n",
           runs);
    double *t = malloc((size_t)runs * sizeof *t);
    long rss_kb = 0;
    double cpu_prev = 0, cpu_min = 1e9;
    for (int i = 0; i < runs; i++) {
        snprintf(cmd, sizeof cmd, "'%s' --quiet eval --pred '%s' --ref '%s' > /dev/null", bin, pp,
                 rp);
        double t0 = now_s();
        int rc = system(cmd);
        t[i] = now_s() - t0;
        if (rc != 0) {
            fprintf(stderr, "error: '%s' failed (%d)\n", cmd, rc);
            free(t);
            return 1;
        }
        struct rusage ru;
        getrusage(RUSAGE_CHILDREN, &ru);
        rss_kb = ru.ru_maxrss; /* max over children so far (the shell is tiny) */
        double cpu = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
                     (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
        if (cpu - cpu_prev < cpu_min)
            cpu_min = cpu - cpu_prev;
        cpu_prev = cpu;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_d);
    printf("end to end (pipeline eval, reading included): wall min %.3f s, median %.3f s; CPU "
           "(user+sys) min "
           "%.3f s; peak RSS %.1f MiB\n",
           t[0], t[runs / 2], cpu_min, (double)rss_kb / 1024.0);
    snprintf(cmd, sizeof cmd, "'%s' eval --pred '%s' --ref '%s'", bin, pp, rp);
    printf("result: ");
    fflush(stdout);
    if (system(cmd) != 0)
        return 1;

    /* metric part alone: both volumes in memory (whole-volume storage, no boxing) */
    mk_image *a = NULL, *b = NULL;
    double t0 = now_s();
    if (mk_io_nifti_read(&ctx, pp, &a) != MK_OK || mk_io_nifti_read(&ctx, rp, &b) != MK_OK) {
        fprintf(stderr, "error: %s\n", mk_ctx_errmsg(&ctx));
        return 1;
    }
    double t_read = now_s() - t0;
    mk_metric_vol va, vb;
    memset(&va, 0, sizeof va);
    va.type = MK_METRIC_U8;
    va.data = a->data;
    va.dim[0] = NX;
    va.dim[1] = NY;
    va.dim[2] = NZ;
    va.spacing[0] = va.spacing[1] = 0.8;
    va.spacing[2] = 1.5;
    vb = va;
    vb.data = b->data;
    mk_metric_opts o;
    mk_metric_opts_default(&o);
    int64_t lab = 1;
    mk_metric_result r;
    double best = 1e9;
    for (int i = 0; i < runs; i++) {
        t0 = now_s();
        if (mk_metric_eval(&ctx, &va, &vb, &lab, 1, &o, &r) != MK_OK) {
            fprintf(stderr, "error: %s\n", mk_ctx_errmsg(&ctx));
            return 1;
        }
        double dt = now_s() - t0;
        if (dt < best)
            best = dt;
    }
    printf("in-process: read both %.3f s; metrics only (whole volumes in memory) min %.3f s "
           "(dice %.6f hd95 %.4f mm)\n",
           t_read, best, r.dice, r.hd95);
    mk_image_free(a);
    mk_image_free(b);
    free(t);
    return 0;
}
