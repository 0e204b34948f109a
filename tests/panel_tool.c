/* panel-tool: render one case's report panel from image files (test helper of panel_ref.py).
 *
 *     panel-tool IMG REF PRED OUT.png [lo hi]
 *
 * IMG may be "none" (black background). The scored labels are the distinct non-zero integer
 * values of REF and PRED (at most 255). Without lo hi the window is automatic. Prints one JSON
 * object: width, height, window, render milliseconds and per tile the plane, the voxel axis it
 * cuts, slice, errors and its pixel rectangle (absent tiles: w == 0). Exit 0, or 1 with the
 * error on stderr. */
#include <cairo.h>
#ifdef MK_TEST_HAVE_FONTCONFIG
#include <fontconfig/fontconfig.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/mk_image.h"
#include "report/mk_panel.h"

#define MAX_LABELS 255

static int add_labels(const mk_image *im, int64_t *lab, int *n)
{
    int64_t nv = mk_image_nvox(im);
    double last = 0;
    for (int64_t x = 0; x < nv; x++) {
        double v = mk_image_get(im, x);
        if (v == 0 || v == last || v != floor(v))
            continue;
        last = v;
        int seen = 0;
        for (int c = 0; c < *n && !seen; c++)
            seen = lab[c] == (int64_t)v;
        if (seen)
            continue;
        if (*n == MAX_LABELS)
            return -1;
        lab[(*n)++] = (int64_t)v;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 7) {
        fprintf(stderr, "usage: panel-tool IMG|none REF PRED OUT.png [lo hi]\n");
        return 1;
    }
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_image *img = NULL, *ref = NULL, *pred = NULL;
    unsigned char *png = NULL;
    size_t len = 0;
    int rc = 1;
    if ((strcmp(argv[1], "none") != 0 && mk_io_read_image(&ctx, argv[1], &img) != MK_OK) ||
        mk_io_read_image(&ctx, argv[2], &ref) != MK_OK ||
        mk_io_read_image(&ctx, argv[3], &pred) != MK_OK) {
        fprintf(stderr, "panel-tool: %s\n", mk_ctx_errmsg(&ctx));
        goto out;
    }
    int64_t lab[MAX_LABELS];
    int nl = 0;
    if (add_labels(ref, lab, &nl) != 0 || add_labels(pred, lab, &nl) != 0) {
        fprintf(stderr, "panel-tool: more than %d labels\n", MAX_LABELS);
        goto out;
    }
    mk_panel_opts o;
    mk_panel_opts_default(&o);
    if (argc == 7) {
        o.window_auto = 0;
        o.window[0] = atof(argv[5]);
        o.window[1] = atof(argv[6]);
    }
    mk_panel_info info;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (mk_panel_render(&ctx, img, ref, pred, lab, nl, &o, &png, &len, &info) != MK_OK) {
        fprintf(stderr, "panel-tool: %s\n", mk_ctx_errmsg(&ctx));
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    FILE *f = fopen(argv[4], "wb");
    if (!f || fwrite(png, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "panel-tool: cannot write %s\n", argv[4]);
        goto out;
    }
    static const char *const plane[3] = {"axial", "coronal", "sagittal"};
    printf("{\"width\": %d, \"height\": %d, \"window\": [%.17g, %.17g], \"ms\": %.3f, "
           "\"labels\": %d, \"tiles\": [",
           info.width, info.height, info.window[0], info.window[1],
           1e3 * (double)(t1.tv_sec - t0.tv_sec) + 1e-6 * (double)(t1.tv_nsec - t0.tv_nsec), nl);
    for (int p = 0; p < 3; p++)
        printf("%s{\"plane\": \"%s\", \"axis\": %d, \"slice\": %lld, \"errors\": %lld, \"x\": %d, "
               "\"y\": %d, \"w\": %d, \"h\": %d}",
               p ? ", " : "", plane[p], info.axis[p], (long long)info.slice[p],
               (long long)info.errors[p], info.tile_x[p], info.tile_y[p], info.tile_w[p],
               info.tile_h[p]);
    printf("]}\n");
    rc = 0;
out:
    free(png);
    mk_image_free(img);
    mk_image_free(ref);
    mk_image_free(pred);
    /* cairo's font caches and fontconfig's configuration, so LeakSanitizer sees only ours */
    cairo_debug_reset_static_data();
#ifdef MK_TEST_HAVE_FONTCONFIG
    FcFini();
#endif
    return rc;
}
