/* conv-bench: GFLOP/s of the medkd convolution kernels on every conv layer of the reference 2D and
 * 3D U-Nets (../shared/peers/README.md), forward / backward-data / backward-weight, with 1 and 2
 * threads, next to a plain im2col + cblas_sgemm baseline (whole sample per GEMM, OpenBLAS
 * threaded with the same thread count). Totals per training step are FLOP-weighted (sum of FLOPs /
 * sum of times). Bracketed by the FMA peak program (fma-peak) when it was built.
 *
 * usage: conv-bench [--net 2d|3d|all] [--reps N] [--quick] [--layer SUBSTR]
 *   --quick: spatial sizes divided by 2 per axis (for a smoke run);
 *   --layer: only layers whose name contains SUBSTR (totals then cover those only);
 *   --cpu: divide by process CPU seconds (all threads) instead of wall seconds: GFLOP per
 *          CPU-second, i.e. per-core efficiency, much less sensitive to a contended machine
 *          (for 2 threads it is the per-core rate, so perfect scaling shows as equal columns). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/mk_conv.h"

void openblas_set_num_threads(int num_threads);

static int cpu_clock; /* --cpu: process CPU time instead of wall time */

static double now(void)
{
    struct timespec t;
    clock_gettime(cpu_clock ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct layer {
    const char *name;
    int cin, cout, size, k, stride; /* conv view: input size^dims, kernel k, pad (k==3) */
    int transposed;                 /* 1: PyTorch ConvTranspose (conv view = its adjoint) */
    int need_dgrad;
} layer;

/* Conv views. ConvTranspose cin_t -> cout_t at input s: conv with cin = cout_t, cout = cin_t at
 * input 2s, k2 s2; its forward is our bwd_data, its dgrad our fwd, its wgrad our bwd_weight. */
static const layer L2D[] = {
    {"enc0.conv1 1-16", 1, 16, 256, 3, 1, 0, 0},
    {"enc0.conv2 16-16", 16, 16, 256, 3, 1, 0, 1},
    {"enc1.conv1 16-32", 16, 32, 128, 3, 1, 0, 1},
    {"enc1.conv2 32-32", 32, 32, 128, 3, 1, 0, 1},
    {"enc2.conv1 32-64", 32, 64, 64, 3, 1, 0, 1},
    {"enc2.conv2 64-64", 64, 64, 64, 3, 1, 0, 1},
    {"bott.conv1 64-128", 64, 128, 32, 3, 1, 0, 1},
    {"bott.conv2 128-128", 128, 128, 32, 3, 1, 0, 1},
    {"up0 convT 128-64", 64, 128, 64, 2, 2, 1, 1},
    {"dec0.conv1 128-64", 128, 64, 64, 3, 1, 0, 1},
    {"dec0.conv2 64-64", 64, 64, 64, 3, 1, 0, 1},
    {"up1 convT 64-32", 32, 64, 128, 2, 2, 1, 1},
    {"dec1.conv1 64-32", 64, 32, 128, 3, 1, 0, 1},
    {"dec1.conv2 32-32", 32, 32, 128, 3, 1, 0, 1},
    {"up2 convT 32-16", 16, 32, 256, 2, 2, 1, 1},
    {"dec2.conv1 32-16", 32, 16, 256, 3, 1, 0, 1},
    {"dec2.conv2 16-16", 16, 16, 256, 3, 1, 0, 1},
    {"head 1x1 16-4", 16, 4, 256, 1, 1, 0, 1},
};
static const layer L3D[] = {
    {"enc0.conv1 1-8", 1, 8, 64, 3, 1, 0, 0},     {"enc0.conv2 8-8", 8, 8, 64, 3, 1, 0, 1},
    {"enc1.conv1 8-16", 8, 16, 32, 3, 1, 0, 1},   {"enc1.conv2 16-16", 16, 16, 32, 3, 1, 0, 1},
    {"bott.conv1 16-32", 16, 32, 16, 3, 1, 0, 1}, {"bott.conv2 32-32", 32, 32, 16, 3, 1, 0, 1},
    {"up0 convT 32-16", 16, 32, 32, 2, 2, 1, 1},  {"dec0.conv1 32-16", 32, 16, 32, 3, 1, 0, 1},
    {"dec0.conv2 16-16", 16, 16, 32, 3, 1, 0, 1}, {"up1 convT 16-8", 8, 16, 64, 2, 2, 1, 1},
    {"dec1.conv1 16-8", 16, 8, 64, 3, 1, 0, 1},   {"dec1.conv2 8-8", 8, 8, 64, 3, 1, 0, 1},
    {"head 1x1 8-4", 8, 4, 64, 1, 1, 0, 1},
};

static mk_conv_shape make_shape(const layer *l, int dims, int batch, int div)
{
    mk_conv_shape s = {.n = batch, .cin = l->cin, .cout = l->cout};
    for (int a = 0; a < 3; a++) {
        int on = a >= 3 - dims;
        s.in[a] = on ? l->size / div : 1;
        s.k[a] = on ? l->k : 1;
        s.stride[a] = on ? l->stride : 1;
        s.pad[a] = on && l->k == 3 ? 1 : 0;
        s.dil[a] = 1;
    }
    if (mk_conv_shape_finish(&s) != 0) {
        fprintf(stderr, "conv-bench: bad layer %s\n", l->name);
        exit(1);
    }
    return s;
}

/* ---- plain baseline: whole-sample im2col + one sgemm per sample ------------------------------ */

static void im2col(const mk_conv_shape *s, const float *x, float *col, int scatter)
{
    const int kvol = s->k[0] * s->k[1] * s->k[2];
    const size_t vin = (size_t)s->in[0] * s->in[1] * s->in[2];
    const size_t vout = (size_t)s->out[0] * s->out[1] * s->out[2];
    for (int ci = 0; ci < s->cin; ci++)
        for (int t = 0; t < kvol; t++) {
            int td = t / (s->k[1] * s->k[2]), th = t / s->k[2] % s->k[1], tw = t % s->k[2];
            float *row = col + ((size_t)ci * kvol + t) * vout;
            float *xc = (float *)x + (size_t)ci * vin;
            size_t p = 0;
            for (int od = 0; od < s->out[0]; od++)
                for (int oh = 0; oh < s->out[1]; oh++)
                    for (int ow = 0; ow < s->out[2]; ow++, p++) {
                        int id = od * s->stride[0] - s->pad[0] + td;
                        int ih = oh * s->stride[1] - s->pad[1] + th;
                        int iw = ow * s->stride[2] - s->pad[2] + tw;
                        int ok = id >= 0 && id < s->in[0] && ih >= 0 && ih < s->in[1] && iw >= 0 &&
                                 iw < s->in[2];
                        size_t xi = ((size_t)id * s->in[1] + ih) * s->in[2] + iw;
                        if (scatter) {
                            if (ok)
                                xc[xi] += row[p];
                        } else {
                            row[p] = ok ? xc[xi] : 0.0f;
                        }
                    }
        }
}

static void base_run(int op, const mk_conv_shape *s, const float *x, const float *w, float *y,
                     const float *dy, float *dx, float *dw, float *col)
{
    const int K = s->cin * s->k[0] * s->k[1] * s->k[2];
    const size_t vin = (size_t)s->in[0] * s->in[1] * s->in[2];
    const int vout = s->out[0] * s->out[1] * s->out[2];
    for (int n = 0; n < s->n; n++) {
        const float *xn = x + (size_t)n * s->cin * vin;
        if (op == 0) {
            im2col(s, xn, col, 0);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->cout, vout, K, 1.0f, w, K,
                        col, vout, 0.0f, y + (size_t)n * s->cout * vout, vout);
        } else if (op == 1) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, vout, s->cout, 1.0f, w, K,
                        dy + (size_t)n * s->cout * vout, vout, 0.0f, col, vout);
            im2col(s, dx + (size_t)n * s->cin * vin, col, 1);
        } else {
            im2col(s, xn, col, 0);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->cout, K, vout, 1.0f,
                        dy + (size_t)n * s->cout * vout, vout, col, vout, 1.0f, dw, K);
        }
    }
}

/* ---- timing ------------------------------------------------------------------------------- */

typedef struct buffers {
    float *x, *w, *y, *dy, *dx, *dw, *db, *col;
    void *ws;
} buffers;

static float *fill(size_t n)
{
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "conv-bench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    return p;
}

/* Seconds for one call (best of reps after a warm-up). impl 0: ours, 1: baseline. */
static double time_op(int impl, int op, const mk_conv_shape *s, buffers *b, int threads, int reps)
{
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        if (impl == 0) {
            if (op == 0)
                mk_conv_fwd(s, b->x, b->w, NULL, b->y, b->ws, threads);
            else if (op == 1)
                mk_conv_bwd_data(s, b->dy, b->w, b->dx, b->ws, threads);
            else
                mk_conv_bwd_weight(s, b->x, b->dy, b->dw, NULL, b->ws, threads);
        } else {
            openblas_set_num_threads(threads);
            base_run(op, s, b->x, b->w, b->y, b->dy, b->dx, b->dw, b->col);
        }
        double t = now() - t0;
        if (r > 0 && t < best)
            best = t;
    }
    return best;
}

static const char *only_layer = NULL;

static const char *OPN[3] = {"fwd", "dgrad", "wgrad"};

/* Our op for what the network layer does: convT forward = our dgrad etc. */
static int our_op(const layer *l, int net_op)
{
    if (!l->transposed)
        return net_op;
    return net_op == 0 ? 1 : net_op == 1 ? 0 : 2;
}

static void run_net(const char *title, const layer *ls, int nl, int dims, int batch, int div,
                    int reps)
{
    /* totals[impl][threads-1]: flops, seconds (train = all ops, infer = forward only) */
    double tr_f = 0, tr_t[2][2] = {{0}}, in_f = 0, in_t[2][2] = {{0}};
    printf("\n## %s (batch %d)\n\n", title, batch);
    printf("%-20s %-5s %8s | %7s %7s | %7s %7s | %5s\n", "layer", "op", "GFLOP", "ours-1", "ours-2",
           "sgemm-1", "sgemm-2", "x2thr");
    for (int i = 0; i < nl; i++) {
        const layer *l = &ls[i];
        if (only_layer && !strstr(l->name, only_layer))
            continue;
        mk_conv_shape s = make_shape(l, dims, batch, div);
        const int K = s.cin * s.k[0] * s.k[1] * s.k[2];
        const size_t nx = (size_t)s.n * s.cin * s.in[0] * s.in[1] * s.in[2];
        const size_t vout = (size_t)s.out[0] * s.out[1] * s.out[2];
        const size_t ny = (size_t)s.n * s.cout * vout;
        buffers b = {fill(nx),
                     fill((size_t)s.cout * K),
                     fill(ny),
                     fill(ny),
                     fill(nx),
                     fill((size_t)s.cout * K),
                     fill((size_t)s.cout),
                     fill((size_t)K * vout),
                     NULL};
        size_t wsb = mk_conv_workspace_size(&s, 2);
        b.ws = malloc(wsb);
        double flops = 2.0 * (double)ny * K;
        for (int net_op = 0; net_op < 3; net_op++) {
            if (net_op == 1 && !l->need_dgrad)
                continue;
            int op = our_op(l, net_op);
            double t[2][2];
            for (int impl = 0; impl < 2; impl++)
                for (int th = 1; th <= 2; th++)
                    t[impl][th - 1] = time_op(impl, op, &s, &b, th, reps);
            printf("%-20s %-5s %8.3f | %7.1f %7.1f | %7.1f %7.1f | %5.2f\n", l->name, OPN[net_op],
                   flops * 1e-9, flops / t[0][0] * 1e-9, flops / t[0][1] * 1e-9,
                   flops / t[1][0] * 1e-9, flops / t[1][1] * 1e-9, t[0][0] / t[0][1]);
            tr_f += flops;
            for (int impl = 0; impl < 2; impl++)
                for (int th = 0; th < 2; th++) {
                    tr_t[impl][th] += t[impl][th];
                    if (net_op == 0)
                        in_t[impl][th] += t[impl][th];
                }
            if (net_op == 0)
                in_f += flops;
        }
        fflush(stdout);
        free(b.x), free(b.w), free(b.y), free(b.dy), free(b.dx), free(b.dw), free(b.db),
            free(b.col);
        free(b.ws);
    }
    printf("%-20s %-5s %8.2f | %7.1f %7.1f | %7.1f %7.1f | %5.2f   (conv seconds/step: ours %.3f "
           "/ %.3f, sgemm %.3f / %.3f)\n",
           "TOTAL train step", "all", tr_f * 1e-9, tr_f / tr_t[0][0] * 1e-9,
           tr_f / tr_t[0][1] * 1e-9, tr_f / tr_t[1][0] * 1e-9, tr_f / tr_t[1][1] * 1e-9,
           tr_t[0][0] / tr_t[0][1], tr_t[0][0], tr_t[0][1], tr_t[1][0], tr_t[1][1]);
    printf("%-20s %-5s %8.2f | %7.1f %7.1f | %7.1f %7.1f | %5.2f\n", "TOTAL inference", "fwd",
           in_f * 1e-9, in_f / in_t[0][0] * 1e-9, in_f / in_t[0][1] * 1e-9,
           in_f / in_t[1][0] * 1e-9, in_f / in_t[1][1] * 1e-9, in_t[0][0] / in_t[0][1]);
}

static void fma_bracket(const char *when)
{
#ifdef MK_FMA_PEAK_EXE
    printf("\n# FMA peak (%s): ", when);
    fflush(stdout);
    if (system(MK_FMA_PEAK_EXE " --json") != 0)
        printf("(fma-peak failed)\n");
#else
    printf("\n# FMA peak (%s): fma-peak not built\n", when);
#endif
}

int main(int argc, char **argv)
{
    const char *net = "all";
    int reps = 3, div = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--net") && i + 1 < argc)
            net = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            div = 2;
        else if (!strcmp(argv[i], "--layer") && i + 1 < argc)
            only_layer = argv[++i];
        else if (!strcmp(argv[i], "--cpu"))
            cpu_clock = 1;
        else {
            fprintf(stderr, "usage: conv-bench [--net 2d|3d|all] [--reps N] [--quick] [--layer "
                            "SUBSTR] [--cpu]\n");
            return 2;
        }
    }
    if (reps < 1)
        reps = 1;
    printf("# conv-bench: GFLOP per %s second, best of %d after warm-up; ours-T = mk_conv_* with T "
           "threads; sgemm-T = whole-sample im2col + cblas_sgemm with OpenBLAS on T threads\n",
           cpu_clock ? "CPU (all threads)" : "wall", reps);
    fma_bracket("before");
    if (!strcmp(net, "2d") || !strcmp(net, "all"))
        run_net("2D U-Net, 1x256x256, widths 16/32/64/128", L2D, (int)(sizeof L2D / sizeof L2D[0]),
                2, 8, div, reps);
    if (!strcmp(net, "3d") || !strcmp(net, "all"))
        run_net("3D U-Net, 1x64^3, widths 8/16/32", L3D, (int)(sizeof L3D / sizeof L3D[0]), 3, 2,
                div, reps);
    fma_bracket("after");
    return 0;
}
