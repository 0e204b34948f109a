/* Convolution: fast kernels (forward, backward-data, backward-weight), OpenMP + OpenBLAS.
 *
 * Two engines:
 *
 * 1. "flat" engine, for every stride-1 problem. The input of one sample is copied into a
 *    zero-padded buffer [C][Dp][Hp][Wp]. For a fixed output plane od, output (oh, ow) is computed
 * at flat index q = oh*Wp + ow (columns ow >= Wout are junk and never stored), and every kernel tap
 * t reads the input at the constant offset koff[c, t] + q: the convolution becomes an implicit GEMM
 *    whose B columns are contiguous runs of the padded input. Backward-data of a stride-1 conv is
 * the stride-1 conv of dy (padded by dil*(k-1)-pad) with flipped, transposed weights, so it runs
 *    through the same engine. Per unit of work (plane, q block) the engine uses either
 *      - a register-blocked direct kernel (8 output channels x 48 pixels in zmm registers), for
 * small output-channel counts where sgemm spends its time packing, or
 *      - a copy of the K x q-block columns (memcpy per row) + single-threaded cblas_sgemm.
 *    Backward-weight: dW[m][k] = sum_q dy[m][q] * xpad[koff[k] + q] over units, into per-thread
 *    partial buffers summed in thread order at the end (bit-identical for equal thread counts).
 *
 * 2. "generic" engine (strides > 1, e.g. k=2 stride-2 transposed convs): im2col/col2im per
 *    (sample, column block) + sgemm.
 *
 * Threads: the caller's `threads` OpenMP workers split the units; OpenBLAS is set to one thread so
 * that it does not oversubscribe the cores. All scratch comes from the caller's workspace. */
#include "nn/mk_conv.h"

#include <cblas.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_status.h"

void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

/* ---- vector helpers ------------------------------------------------------------------------ */

#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vf;
#define VL 16
#define NV 3 /* direct forward tile: 8 channels x 3 vectors = 24 accumulators */
#define WM 4 /* direct wgrad tile: 4 channels x 6 taps = 24 accumulators */
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps((p), (v))
#define VSET1(x) _mm512_set1_ps(x)
#define VZERO() _mm512_setzero_ps()
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VHSUM(v) _mm512_reduce_add_ps(v)
/* Keeps a loaded vector in a register: without it GCC folds the load into every FMA that reads
 * it (a memory operand each), and the wgrad tile turns load-bound (28 loads for 24 FMAs). */
#define VKEEP(v) __asm__("" : "+v"(v))
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 vf;
#define VL 8
#define NV 1
#define WM 2
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps((p), (v))
#define VSET1(x) _mm256_set1_ps(x)
#define VZERO() _mm256_setzero_ps()
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VKEEP(v) __asm__("" : "+v"(v))
static inline float vhsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
#define VHSUM(v) vhsum8(v)
#else
/* portable path (no -march=native, e.g. the sanitizer build): 128-bit generic vectors */
typedef float vf __attribute__((vector_size(16)));
#define VL 4
#define NV 2
#define WM 2
static inline vf vload_g(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline vf vset1_g(float x)
{
    vf v = {x, x, x, x};
    return v;
}
static inline float vhsum_g(vf v)
{
    float s = 0;
    for (int i = 0; i < VL; i++)
        s += v[i];
    return s;
}
#define VLOAD(p) vload_g(p)
#define VSTORE(p, v) memcpy((p), &(v), sizeof(vf))
#define VSET1(x) vset1_g(x)
#define VZERO() vset1_g(0.0f)
#define VKEEP(v) ((void)0)
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VHSUM(v) vhsum_g(v)
#endif

#define TILE (NV * VL) /* pixels per direct forward tile */
#define COB 8          /* output channels per direct forward tile */
#define WK 6           /* taps per direct wgrad tile */
#ifndef WQ
#define WQ 1024 /* pixels per wgrad unit */
#endif
/* Backward-weight partial sums: the units are split into NSLOT fixed ranges, each with its own
 * partial dW, taken by the threads dynamically and summed in slot order at the end, so dW is
 * bit-identical whatever the thread count and scheduling. */
#define NSLOT 8

/* Output-channel count up to which the direct kernels are used (larger: sgemm). */
/* Stride-1 problems with at least this many output channels use the sgemm engine (see
 * mk_conv_set_sgemm_min_channels). Measured on the Zen 4 target, the direct kernels were faster
 * at every width of the reference U-Nets (up to 128), so the default never picks sgemm. */
static int sgemm_min_channels = 1 << 30;

void mk_conv_set_sgemm_min_channels(int c)
{
    sgemm_min_channels = c > 0 ? c : 1 << 30;
}

/* ---- workspace bump allocator (measures when base == NULL) -------------------------------- */

typedef struct bump {
    char *base;
    size_t off;
} bump;

static void *take(bump *b, size_t bytes)
{
    size_t o = (b->off + 63) & ~(size_t)63;
    b->off = o + bytes;
    return b->base ? b->base + o : NULL;
}

static int clamp_threads(int threads)
{
    return threads < 1 ? 1 : threads > 256 ? 256 : threads;
}

static void blas_single_thread(void)
{
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
}

/* Static split of [0, total) into nt parts: part t is [lo, hi). */
static void split(long total, int t, int nt, long *lo, long *hi)
{
    *lo = total * t / nt;
    *hi = total * (t + 1) / nt;
}

/* ---- flat engine: problem description ----------------------------------------------------- */

typedef struct flat {
    int C, M; /* input / output channels of the stride-1 problem */
    int in[3], pad[3], k[3], dil[3], out[3];
    int P[3];  /* padded input dims */
    size_t cs; /* channel stride of the padded buffer */
    size_t pl; /* plane (D) stride of the padded buffer = P1 * P2 */
    int qmax;  /* q count per output plane: (out1 - 1) * P2 + out2 */
    int kvol, K;
    int direct;
    int qb;                       /* sgemm column block */
    size_t xp_floats;             /* padded buffer incl. slack */
    size_t in_sample, out_sample; /* floats per sample of the caller's input / output tensors */
    /* Patch convs (stride == kernel, pad 0, dil 1, e.g. 2x2 stride 2) run as 1x1 convs over the
     * space-to-depth view: channel c = ci * kvol + t at pixel o is x[ci][o * k + t]. patch_in: the
     * input is filled from that view of `patch`'s x; patch_out: the output is scattered back
     * (depth-to-space) into `patch`'s x layout. */
    const mk_conv_shape *patch;
    int patch_in, patch_out, pkvol;
} flat;

static void flat_init(flat *f, int C, int M, const int in[3], const int pad[3], const int k[3],
                      const int dil[3], const int out[3], int direct)
{
    f->C = C, f->M = M;
    for (int a = 0; a < 3; a++) {
        f->in[a] = in[a], f->pad[a] = pad[a], f->k[a] = k[a], f->dil[a] = dil[a],
        f->out[a] = out[a];
        f->P[a] = in[a] + 2 * pad[a];
    }
    f->pl = (size_t)f->P[1] * f->P[2];
    f->cs = (size_t)f->P[0] * f->pl;
    f->qmax = (f->out[1] - 1) * f->P[2] + f->out[2];
    f->kvol = k[0] * k[1] * k[2];
    f->K = C * f->kvol;
    f->direct = direct;
    int qb = (int)(65536 / f->K); /* K x qb floats = 256 KiB */
    qb = (qb + 15) & ~15;
    if (qb < 64)
        qb = 64;
    if (qb > 4096)
        qb = 4096;
    if (qb > f->qmax)
        qb = f->qmax;
    f->qb = qb;
    /* reads run past the last plane by at most a tile (forward) or, in backward-weight, the
     * junk rows of the last plane plus the vertical kernel span */
    f->xp_floats =
        (size_t)C * f->cs + (size_t)(dil[1] * (k[1] - 1) + 2) * f->P[2] + 2 * TILE + 2 * VL + 64;
    /* tap offsets and sgemm leading dimensions are int */
    MK_ASSERT(f->xp_floats < (size_t)INT32_MAX);
    MK_ASSERT((size_t)out[0] * f->pl + VL < (size_t)INT32_MAX);
    f->in_sample = (size_t)C * in[0] * in[1] * in[2];
    f->out_sample = (size_t)M * out[0] * out[1] * out[2];
    f->patch = NULL;
    f->patch_in = f->patch_out = 0;
}

static size_t shape_vin(const mk_conv_shape *s)
{
    return (size_t)s->in[0] * s->in[1] * s->in[2];
}

/* Space-to-depth fill of planes [lo, hi) (index c * out0 + od) of the patch view of x. */
static void patch_fill(const flat *f, const float *x, float *xp, long lo, long hi)
{
    const mk_conv_shape *s = f->patch;
    const int kvol = f->pkvol;
    const size_t vin = shape_vin(s);
    for (long i = lo; i < hi; i++) {
        int c = (int)(i / f->P[0]), od = (int)(i % f->P[0]);
        int ci = c / kvol, t = c % kvol;
        int td = t / (s->k[1] * s->k[2]), th = t / s->k[2] % s->k[1], tw = t % s->k[2];
        float *dst = xp + (size_t)c * f->cs + (size_t)od * f->pl;
        const float *src = x + (size_t)ci * vin + (size_t)(od * s->k[0] + td) * s->in[1] * s->in[2];
        for (int oh = 0; oh < f->P[1]; oh++) {
            const float *r = src + (size_t)(oh * s->k[1] + th) * s->in[2] + tw;
            float *d = dst + (size_t)oh * f->P[2];
            for (int ow = 0; ow < f->P[2]; ow++)
                d[ow] = r[(size_t)ow * s->k[2]];
        }
    }
}

/* koff[c * kvol + t] = offset of tap t of channel c in the padded buffer. */
static void flat_koff(const flat *f, int *koff)
{
    int t = 0;
    for (int td = 0; td < f->k[0]; td++)
        for (int th = 0; th < f->k[1]; th++)
            for (int tw = 0; tw < f->k[2]; tw++, t++)
                koff[t] = (int)((size_t)td * f->dil[0] * f->pl + (size_t)th * f->dil[1] * f->P[2] +
                                (size_t)tw * f->dil[2]);
    for (int c = 1; c < f->C; c++)
        for (int u = 0; u < f->kvol; u++)
            koff[c * f->kvol + u] = (int)((size_t)c * f->cs) + koff[u];
}

/* Copy planes [lo, hi) (index c * P0 + dp) of one sample x [C][in] into the padded buffer. */
static void flat_pad_planes(const flat *f, const float *x, float *xp, long lo, long hi)
{
    if (f->patch_in) {
        patch_fill(f, x, xp, lo, hi);
        return;
    }
    const size_t vin_pl = (size_t)f->in[1] * f->in[2];
    const size_t vin = (size_t)f->in[0] * vin_pl;
    for (long i = lo; i < hi; i++) {
        int c = (int)(i / f->P[0]), dp = (int)(i % f->P[0]);
        float *dst = xp + (size_t)c * f->cs + (size_t)dp * f->pl;
        int d = dp - f->pad[0];
        if (d < 0 || d >= f->in[0]) {
            memset(dst, 0, f->pl * sizeof *dst);
            continue;
        }
        const float *src = x + (size_t)c * vin + (size_t)d * vin_pl;
        for (int hp = 0; hp < f->P[1]; hp++) {
            float *row = dst + (size_t)hp * f->P[2];
            int h = hp - f->pad[1];
            if (h < 0 || h >= f->in[1]) {
                memset(row, 0, (size_t)f->P[2] * sizeof *row);
                continue;
            }
            memset(row, 0, (size_t)f->pad[2] * sizeof *row);
            memcpy(row + f->pad[2], src + (size_t)h * f->in[2], (size_t)f->in[2] * sizeof *row);
            memset(row + f->pad[2] + f->in[2], 0, (size_t)f->pad[2] * sizeof *row);
        }
    }
}

/* d[2j] += a[j], d[2j + 1] += b[j] for j < n. */
static void interleave_add(float *d, const float *a, const float *b, int n)
{
    int j = 0;
#if defined(__AVX512F__)
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (; j + 16 <= n; j += 16) {
        __m512 va = _mm512_loadu_ps(a + j), vb = _mm512_loadu_ps(b + j);
        float *p = d + 2 * j;
        _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), _mm512_permutex2var_ps(va, lo, vb)));
        _mm512_storeu_ps(
            p + 16, _mm512_add_ps(_mm512_loadu_ps(p + 16), _mm512_permutex2var_ps(va, hi, vb)));
    }
#endif
    for (; j < n; j++) {
        d[2 * j] += a[j];
        d[2 * j + 1] += b[j];
    }
}

/* Store an output block ob[m][j] (row stride ldo), j = q - q0 for q in [q0, q0 + nq), into the
 * output tensor of one sample out[M][out0][out1][out2], channels [m0, m0 + mc), plane od.
 * bias != NULL: set to ob + bias; accumulate: out += ob; else out = ob. */
static void flat_store(const flat *f, const float *ob, int ldo, int q0, int nq, int m0, int mc,
                       int od, float *out, const float *bias, int accumulate)
{
    const int P2 = f->P[2], W = f->out[2];
    const size_t opl = (size_t)f->out[1] * W, ovol = (size_t)f->out[0] * opl;
    int qend = q0 + nq;
    if (qend > f->qmax)
        qend = f->qmax;
    const mk_conv_shape *ps = f->patch_out ? f->patch : NULL;
    for (int m = 0; m < mc; m++) {
        const float *src = ob + (size_t)m * ldo;
        if (ps) { /* depth-to-space: channel ci * kvol + t, pixel o -> x[ci][o * k + t] (+=) */
            int c = m0 + m, ci = c / f->pkvol, t = c % f->pkvol;
            int td = t / (ps->k[1] * ps->k[2]), th = t / ps->k[2] % ps->k[1], tw = t % ps->k[2];
            float *base = out + (size_t)ci * shape_vin(ps) +
                          (size_t)(od * ps->k[0] + td) * ps->in[1] * ps->in[2];
            const int k2 = ps->k[2];
            /* k2 == 2: channels t (tw = 0) and t + 1 (tw = 1) interleave into one contiguous row */
            const int pair = k2 == 2 && tw == 0 && m + 1 < mc;
            const float *src2 = src + ldo;
            int q = q0;
            while (q < qend) { /* P2 == W here: no junk columns */
                int oh = q / P2, ow = q - oh * P2;
                int run = P2 - ow < qend - q ? P2 - ow : qend - q;
                float *d = base + (size_t)(oh * ps->k[1] + th) * ps->in[2] + (size_t)ow * k2 + tw;
                const float *sp = src + (q - q0);
                if (pair)
                    interleave_add(d, sp, src2 + (q - q0), run);
                else if (k2 == 2)
                    for (int j = 0; j < run; j++)
                        d[2 * j] += sp[j];
                else
                    for (int j = 0; j < run; j++)
                        d[(size_t)j * k2] += sp[j];
                q += run;
            }
            m += pair;
            continue;
        }
        float *dst = out + (size_t)(m0 + m) * ovol + (size_t)od * opl;
        float b = bias ? bias[m0 + m] : 0.0f;
        int q = q0;
        while (q < qend) {
            int oh = q / P2, ow = q - oh * P2;
            int run = W - ow; /* valid columns left in this row */
            if (run <= 0) {   /* junk columns: skip to the next row */
                q += P2 - ow;
                continue;
            }
            if (run > qend - q)
                run = qend - q;
            float *d = dst + (size_t)oh * W + ow;
            const float *sp = src + (q - q0);
            if (accumulate)
                for (int j = 0; j < run; j++)
                    d[j] += sp[j];
            else
                for (int j = 0; j < run; j++)
                    d[j] = sp[j] + b;
            q += run;
        }
    }
}

/* Direct forward tile: out[j][v] = sum_k wg[k][j] * xb[koff[k] + v], j < COB, v < TILE. */
/* dst != NULL: the tile lies inside one output row, store straight from the registers to
 * dst[j] (channel j of the group; NULL past M): mode 0 dst = acc + bias[j], mode 1 dst += acc.
 * dst == NULL: write the tile to out[j][TILE] for flat_store. */
static void direct_tile(const float *xb, const int *koff, int K, const float *wg, float *out,
                        float *const *dst, const float *bias, int accumulate)
{
    vf acc[COB][NV];
    for (int j = 0; j < COB; j++)
        for (int v = 0; v < NV; v++)
            acc[j][v] = VZERO();
    for (int k = 0; k < K; k++) {
        const float *p = xb + koff[k];
        const float *wk = wg + (size_t)k * COB;
        for (int v = 0; v < NV; v++) /* next tile's columns */
            __builtin_prefetch(p + TILE + v * VL);
        vf a[NV];
        for (int v = 0; v < NV; v++)
            a[v] = VLOAD(p + v * VL);
        for (int j = 0; j < COB; j++) {
            vf b = VSET1(wk[j]);
            for (int v = 0; v < NV; v++)
                acc[j][v] = VFMA(a[v], b, acc[j][v]);
        }
    }
    if (!dst) {
        for (int j = 0; j < COB; j++)
            for (int v = 0; v < NV; v++)
                VSTORE(out + j * TILE + v * VL, acc[j][v]);
        return;
    }
    for (int j = 0; j < COB; j++) {
        if (!dst[j])
            continue;
        if (accumulate) {
            for (int v = 0; v < NV; v++) {
                vf o = VLOAD(dst[j] + v * VL);
                o = o + acc[j][v];
                VSTORE(dst[j] + v * VL, o);
            }
        } else {
            vf b = VSET1(bias ? bias[j] : 0.0f);
            for (int v = 0; v < NV; v++) {
                vf o = acc[j][v] + b;
                VSTORE(dst[j] + v * VL, o);
            }
        }
    }
}

/* Pack A[M][K] into groups of COB channels: wpk[g][k][j] = A[g*COB + j][k] (0 past M). */
static void pack_direct(const float *A, int M, int K, float *wpk)
{
    int G = (M + COB - 1) / COB;
    for (int g = 0; g < G; g++)
        for (int k = 0; k < K; k++)
            for (int j = 0; j < COB; j++) {
                int m = g * COB + j;
                wpk[((size_t)g * K + k) * COB + j] = m < M ? A[(size_t)m * K + k] : 0.0f;
            }
}

/* Shared scratch of a flat forward-type run (fwd or dgrad). */
typedef struct flat_fwd_ws {
    float *xp, *A, *wpk;
    int *koff;
    float *col, *ob; /* per thread (sgemm path) */
} flat_fwd_ws;

static void flat_fwd_layout(const flat *f, int T, int need_A, bump *b, flat_fwd_ws *w)
{
    w->xp = take(b, (size_t)T * f->xp_floats * sizeof(float)); /* one padded sample per worker */
    w->koff = take(b, (size_t)f->K * sizeof(int));
    w->A = need_A ? take(b, (size_t)f->M * f->K * sizeof(float)) : NULL;
    if (f->direct) {
        int G = (f->M + COB - 1) / COB;
        w->wpk = take(b, (size_t)G * f->K * COB * sizeof(float));
        w->col = w->ob = NULL;
    } else {
        w->wpk = NULL;
        w->col = f->kvol == 1 ? NULL : take(b, (size_t)T * f->K * f->qb * sizeof(float));
        w->ob = take(b, (size_t)T * f->M * f->qb * sizeof(float));
    }
}

/* Runs out[n] (=|+=) conv(in[n]) for all samples. A: [M][K] weights of the stride-1 problem. */
/* One unit of a forward-type run: output plane od, pixel tile / block qi, all output channels. */
static void flat_fwd_unit(const flat *f, const flat_fwd_ws *w, const float *xp, const float *A,
                          const float *bias, float *outn, int accumulate, int tid, int od, int qi,
                          float *tile)
{
    const float *xb = xp + (size_t)od * f->pl;
    if (f->direct) {
        const int G = (f->M + COB - 1) / COB;
        int q0 = qi * TILE, oh = q0 / f->P[2], ow = q0 - oh * f->P[2];
        /* fast store: the whole tile inside one row's valid columns of a plain output */
        int inrow = !f->patch_out && ow + TILE <= f->out[2];
        const size_t opl = (size_t)f->out[1] * f->out[2], ovol = (size_t)f->out[0] * opl;
        for (int g = 0; g < G; g++) {
            int mc = f->M - g * COB < COB ? f->M - g * COB : COB;
            const float *wg = w->wpk + (size_t)g * f->K * COB;
            if (inrow) {
                float *dst[COB];
                for (int j = 0; j < COB; j++)
                    dst[j] = j < mc ? outn + (size_t)(g * COB + j) * ovol + (size_t)od * opl +
                                          (size_t)oh * f->out[2] + ow
                                    : NULL;
                direct_tile(xb + q0, w->koff, f->K, wg, NULL, dst, bias ? bias + g * COB : NULL,
                            accumulate);
            } else {
                direct_tile(xb + q0, w->koff, f->K, wg, tile, NULL, NULL, 0);
                flat_store(f, tile, TILE, q0, TILE, g * COB, mc, od, outn, bias, accumulate);
            }
        }
        return;
    }
    int q0 = qi * f->qb, nq = f->qmax - q0 < f->qb ? f->qmax - q0 : f->qb;
    float *ob = w->ob + (size_t)tid * f->M * f->qb;
    const float *B;
    int ldb;
    if (f->kvol == 1) {
        B = xb + q0, ldb = (int)f->cs;
    } else {
        float *col = w->col + (size_t)tid * f->K * f->qb;
        for (int k = 0; k < f->K; k++)
            memcpy(col + (size_t)k * nq, xb + w->koff[k] + q0, (size_t)nq * sizeof(float));
        B = col, ldb = nq;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, f->M, nq, f->K, 1.0f, A, f->K, B, ldb,
                0.0f, ob, nq);
    flat_store(f, ob, nq, q0, nq, 0, f->M, od, outn, bias, accumulate);
}

/* Runs out[n] (=|+=) conv(in[n]) for all samples. A: [M][K] weights of the stride-1 problem.
 * N >= 2T (or one worker): the workers take whole samples dynamically, each with its own padded
 * copy (no barriers); fewer: sample after sample, all workers pad it together, then share its
 * units. Each output element is
 * computed by one worker in a fixed order either way: the bits do not depend on the threads. */
static void flat_fwd_run(const flat *f, int N, const float *in, const float *A, const float *bias,
                         float *out, int accumulate, flat_fwd_ws *w, int T)
{
    flat_koff(f, w->koff);
    if (f->direct)
        pack_direct(A, f->M, f->K, w->wpk);
    for (int t = 0; t < T; t++)
        memset(w->xp + (size_t)t * f->xp_floats + (size_t)f->C * f->cs, 0,
               (f->xp_floats - (size_t)f->C * f->cs) * sizeof(float));
    const int nunit_q = f->direct ? (f->qmax + TILE - 1) / TILE : (f->qmax + f->qb - 1) / f->qb;
    const long units = (long)f->out[0] * nunit_q;
    const long chunk = units / (8L * T) + 1;
    const long planes = (long)f->C * f->P[0];
#pragma omp parallel num_threads(T)
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        float tile[COB * TILE];
        if (N >= 2 * nt || nt == 1) {
            float *xp = w->xp + (size_t)tid * f->xp_floats;
#pragma omp for schedule(dynamic, 1)
            for (int n = 0; n < N; n++) {
                flat_pad_planes(f, in + (size_t)n * f->in_sample, xp, 0, planes);
                float *outn = out + (size_t)n * f->out_sample;
                for (long u = 0; u < units; u++)
                    flat_fwd_unit(f, w, xp, A, bias, outn, accumulate, tid, (int)(u / nunit_q),
                                  (int)(u % nunit_q), tile);
            }
        } else {
            /* fewer than two samples a worker: whole samples would leave a worker idle (or stall
             * the others behind a busy core), so the workers share each sample's units */
            for (int n = 0; n < N; n++) {
                long lo, hi;
                split(planes, tid, nt, &lo, &hi);
                flat_pad_planes(f, in + (size_t)n * f->in_sample, w->xp, lo, hi);
#pragma omp barrier
                float *outn = out + (size_t)n * f->out_sample;
#pragma omp for schedule(dynamic, chunk)
                for (long u = 0; u < units; u++)
                    flat_fwd_unit(f, w, w->xp, A, bias, outn, accumulate, tid, (int)(u / nunit_q),
                                  (int)(u % nunit_q), tile);
            }
        }
    }
}

/* ---- flat engine: backward weight ---------------------------------------------------------- */

/* Direct wgrad tile: acc[i][j] = sum_{q < nq} dyr[i][q] * xb[koff[j] + q], nq multiple of VL. */
static void direct_wtile(const float *const dyr[WM], const float *xb, const int koff[WK], int nq,
                         float out[WM][WK])
{
    vf acc[WM][WK];
    for (int i = 0; i < WM; i++)
        for (int j = 0; j < WK; j++)
            acc[i][j] = VZERO();
    const float *xr[WK];
    for (int j = 0; j < WK; j++)
        xr[j] = xb + koff[j];
    for (int q = 0; q < nq; q += VL) {
        vf d[WM];
        for (int i = 0; i < WM; i++)
            d[i] = VLOAD(dyr[i] + q);
        for (int j = 0; j < WK; j++) {
            vf a = VLOAD(xr[j] + q);
            VKEEP(a);
            for (int i = 0; i < WM; i++)
                acc[i][j] = VFMA(d[i], a, acc[i][j]);
        }
    }
    for (int i = 0; i < WM; i++)
        for (int j = 0; j < WK; j++)
            out[i][j] = VHSUM(acc[i][j]);
}

typedef struct flat_w_ws {
    float *xp, *dyp, *part, *col;
    int *koff;
} flat_w_ws;

/* Backward-weight runs over the flat index r = od * pl + oh * P2 + ow of all output planes at
 * once: dy is copied into dyp[M][R] at the padded input's pitch (zeros at every junk position), so
 * x sits at xp + koff[k] + r for every r. R = out0 * pl rounded up to VL. */
static size_t flat_R(const flat *f)
{
    size_t r = (size_t)f->out[0] * f->pl;
    return (r + VL - 1) / VL * VL;
}

static void flat_w_layout(const flat *f, int T, bump *b, flat_w_ws *w)
{
    w->xp = take(b, (size_t)T * f->xp_floats * sizeof(float)); /* per worker */
    w->koff = take(b, (size_t)f->K * sizeof(int));
    w->dyp = take(b, (size_t)T * f->M * flat_R(f) * sizeof(float));
    w->part = take(b, (size_t)(T > NSLOT ? T : NSLOT) * f->M * f->K * sizeof(float));
    w->col = (f->direct || f->kvol == 1) ? NULL : take(b, (size_t)T * f->K * f->qb * sizeof(float));
}

/* Copy planes [lo, hi) (index m * out0 + od) of dy [M][out] into dyp [M][R]; the tail of each
 * channel past out0 * pl is zeroed by the plane od = out0 - 1. */
static void flat_pad_dy(const flat *f, const float *dy, float *dyp, size_t R, long lo, long hi)
{
    const size_t opl = (size_t)f->out[1] * f->out[2];
    for (long i = lo; i < hi; i++) {
        int m = (int)(i / f->out[0]), od = (int)(i % f->out[0]);
        float *dst = dyp + (size_t)m * R + (size_t)od * f->pl;
        size_t len = od == f->out[0] - 1 ? R - (size_t)od * f->pl : f->pl;
        const float *src = dy + (size_t)i * opl;
        memset(dst, 0, len * sizeof *dst);
        for (int oh = 0; oh < f->out[1]; oh++)
            memcpy(dst + (size_t)oh * f->P[2], src + (size_t)oh * f->out[2],
                   (size_t)f->out[2] * sizeof *dst);
    }
}

/* dw[M][K] += sum_n dy[n] (x) xpad[n]; db[M] += sums of dy. */
static void flat_w_unit(const flat *f, const flat_w_ws *w, const float *xp, const float *dyp,
                        float *part, int tid, long u)
{
    const size_t R = flat_R(f), dstride = R; /* channel stride of dyp */
    const int qstep = f->direct ? WQ : f->qb;
    const int M = f->M, K = f->K;
    size_t r0 = (size_t)u * qstep;
    int nq = R - r0 < (size_t)qstep ? (int)(R - r0) : qstep;
    const float *xb = xp + r0;
    const float *dyb = dyp + r0;
    if (f->direct) {
        for (int m0 = 0; m0 < M; m0 += WM) {
            const float *dyr[WM];
            for (int i = 0; i < WM; i++)
                dyr[i] = dyb + (size_t)(m0 + i < M ? m0 + i : M - 1) * dstride;
            for (int k0 = 0; k0 < K; k0 += WK) {
                int ko[WK];
                for (int j = 0; j < WK; j++)
                    ko[j] = w->koff[k0 + j < K ? k0 + j : K - 1];
                float r[WM][WK];
                direct_wtile(dyr, xb, ko, nq, r);
                for (int i = 0; i < WM && m0 + i < M; i++)
                    for (int j = 0; j < WK && k0 + j < K; j++)
                        part[(size_t)(m0 + i) * K + k0 + j] += r[i][j];
            }
        }
        return;
    }
    const float *B;
    int ldb;
    if (f->kvol == 1) {
        B = xb, ldb = (int)f->cs;
    } else {
        float *col = w->col + (size_t)tid * K * f->qb;
        for (int k = 0; k < K; k++)
            memcpy(col + (size_t)k * nq, xb + w->koff[k], (size_t)nq * sizeof(float));
        B = col, ldb = nq;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, K, nq, 1.0f, dyb, (int)dstride, B, ldb,
                1.0f, part, K);
}

/* dw[M][K] += sum_n dy[n] (x) xpad[n]; db[M] += sums of dy.
 * N >= 2: slot s (of min(N, NSLOT)) owns samples s, s + NS, ...; the workers take slots
 * dynamically, each padding its samples into its own buffers (no barriers). N == 1: all workers pad
 * the sample together and slots own fixed unit ranges. Slots are summed in order, so the bits
 * depend on N but not on the thread count. */
static void flat_w_run(const flat *f, int N, const float *x, const float *dy, float *dw, float *db,
                       flat_w_ws *w, int T)
{
    flat_koff(f, w->koff);
    for (int t = 0; t < T; t++)
        memset(w->xp + (size_t)t * f->xp_floats + (size_t)f->C * f->cs, 0,
               (f->xp_floats - (size_t)f->C * f->cs) * sizeof(float));
    memset(w->part, 0, (size_t)NSLOT * f->M * f->K * sizeof(float));
    const size_t vout = (size_t)f->out[0] * f->out[1] * f->out[2];
    const size_t R = flat_R(f);
    const int qstep = f->direct ? WQ : f->qb;
    const long units = (long)((R + (size_t)qstep - 1) / (size_t)qstep);
    const int M = f->M, K = f->K;
    const long planes = (long)f->C * f->P[0], dplanes = (long)M * f->out[0];
    const int NS = N < NSLOT ? N : NSLOT;
#pragma omp parallel num_threads(T)
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        if (N >= 2) {
            float *xp = w->xp + (size_t)tid * f->xp_floats, *dyp = w->dyp + (size_t)tid * M * R;
#pragma omp for schedule(dynamic, 1)
            for (int slot = 0; slot < NS; slot++) {
                float *part = w->part + (size_t)slot * M * K;
                for (int n = slot; n < N; n += NS) {
                    flat_pad_planes(f, x + (size_t)n * f->in_sample, xp, 0, planes);
                    flat_pad_dy(f, dy + (size_t)n * M * vout, dyp, R, 0, dplanes);
                    for (long u = 0; u < units; u++)
                        flat_w_unit(f, w, xp, dyp, part, tid, u);
                }
            }
        } else {
            long lo, hi;
            split(planes, tid, nt, &lo, &hi);
            flat_pad_planes(f, x, w->xp, lo, hi);
            split(dplanes, tid, nt, &lo, &hi);
            flat_pad_dy(f, dy, w->dyp, R, lo, hi);
#pragma omp barrier
#pragma omp for schedule(dynamic, 1)
            for (int slot = 0; slot < NSLOT; slot++) {
                float *part = w->part + (size_t)slot * M * K;
                split(units, slot, NSLOT, &lo, &hi);
                for (long u = lo; u < hi; u++)
                    flat_w_unit(f, w, w->xp, w->dyp, part, tid, u);
            }
        }
    }
    for (int t = 0; t < NSLOT; t++) {
        const float *part = w->part + (size_t)t * M * K;
        for (size_t i = 0; i < (size_t)M * K; i++)
            dw[i] += part[i];
    }
    if (db) {
        for (int m = 0; m < M; m++) {
            double acc = 0;
            for (int n = 0; n < N; n++) {
                const float *p = dy + ((size_t)n * M + m) * vout;
                for (size_t i = 0; i < vout; i++)
                    acc += p[i];
            }
            db[m] += (float)acc;
        }
    }
}

/* part[n] = the weight gradient of sample n alone, each sample by one worker (dynamic). A sample
 * is summed as flat_w_run sums one: the units of slot c (c < NSLOT, fixed ranges) into a zeroed
 * buffer, the slots added in order, so the bits equal flat_w_run's with N = 1. */
static void flat_w_samples(const flat *f, int N, const float *x, const float *dy, float *part,
                           flat_w_ws *w, int T)
{
    flat_koff(f, w->koff);
    for (int t = 0; t < T; t++)
        memset(w->xp + (size_t)t * f->xp_floats + (size_t)f->C * f->cs, 0,
               (f->xp_floats - (size_t)f->C * f->cs) * sizeof(float));
    const size_t vout = (size_t)f->out[0] * f->out[1] * f->out[2];
    const size_t R = flat_R(f);
    const int qstep = f->direct ? WQ : f->qb;
    const long units = (long)((R + (size_t)qstep - 1) / (size_t)qstep);
    const int M = f->M;
    const size_t MK = (size_t)M * f->K;
    const long planes = (long)f->C * f->P[0], dplanes = (long)M * f->out[0];
#pragma omp parallel for num_threads(T) schedule(dynamic, 1)
    for (int n = 0; n < N; n++) {
        int tid = omp_get_thread_num();
        float *xp = w->xp + (size_t)tid * f->xp_floats, *dyp = w->dyp + (size_t)tid * M * R;
        float *tmp = w->part + (size_t)tid * MK, *pn = part + (size_t)n * MK;
        memset(pn, 0, MK * sizeof *pn);
        flat_pad_planes(f, x + (size_t)n * f->in_sample, xp, 0, planes);
        flat_pad_dy(f, dy + (size_t)n * M * vout, dyp, R, 0, dplanes);
        for (int c = 0; c < NSLOT; c++) {
            long lo, hi;
            split(units, c, NSLOT, &lo, &hi);
            memset(tmp, 0, MK * sizeof *tmp);
            for (long u = lo; u < hi; u++)
                flat_w_unit(f, w, xp, dyp, tmp, tid, u);
            for (size_t i = 0; i < MK; i++)
                pn[i] += tmp[i];
        }
    }
}

/* ---- generic engine: im2col / col2im + sgemm ----------------------------------------------- */

typedef struct gen {
    const mk_conv_shape *s;
    int kvol, K;
    size_t vin, vout;
    int pb; /* column block */
    int nblk;
} gen;

static void gen_init(gen *g, const mk_conv_shape *s)
{
    g->s = s;
    g->kvol = s->k[0] * s->k[1] * s->k[2];
    g->K = s->cin * g->kvol;
    g->vin = (size_t)s->in[0] * s->in[1] * s->in[2];
    g->vout = (size_t)s->out[0] * s->out[1] * s->out[2];
    long pb = 65536 / g->K;
    pb = (pb + 15) & ~15L;
    if (pb < 64)
        pb = 64;
    if (pb > 4096)
        pb = 4096;
    if ((size_t)pb > g->vout)
        pb = (long)g->vout;
    g->pb = (int)pb;
    g->nblk = (int)((g->vout + (size_t)pb - 1) / (size_t)pb);
}

/* Input index of tap (td,th,tw) for output pixel p, or -1 when it falls in the padding. */
static void gen_pix(const mk_conv_shape *s, size_t p, int o[3])
{
    o[2] = (int)(p % (size_t)s->out[2]);
    p /= (size_t)s->out[2];
    o[1] = (int)(p % (size_t)s->out[1]);
    o[0] = (int)(p / (size_t)s->out[1]);
}

/* col[(ci, t)][j] = x[ci][pixel of tap t for output p0 + j] (0 in padding); mode 1: scatter-add
 * col back into x instead (col2im). */
static void gen_cols(const gen *g, float *xn, float *col, size_t p0, int np, int scatter)
{
    const mk_conv_shape *s = g->s;
    int o0[3];
    gen_pix(s, p0, o0);
    for (int ci = 0; ci < s->cin; ci++) {
        float *xc = xn + (size_t)ci * g->vin;
        int t = 0;
        for (int td = 0; td < s->k[0]; td++)
            for (int th = 0; th < s->k[1]; th++)
                for (int tw = 0; tw < s->k[2]; tw++, t++) {
                    float *row = col + ((size_t)ci * g->kvol + t) * np;
                    int od = o0[0], oh = o0[1], ow = o0[2];
                    for (int j = 0; j < np; j++) {
                        int id = od * s->stride[0] - s->pad[0] + td * s->dil[0];
                        int ih = oh * s->stride[1] - s->pad[1] + th * s->dil[1];
                        int iw = ow * s->stride[2] - s->pad[2] + tw * s->dil[2];
                        int ok = id >= 0 && id < s->in[0] && ih >= 0 && ih < s->in[1] && iw >= 0 &&
                                 iw < s->in[2];
                        size_t xi = ok ? ((size_t)id * s->in[1] + ih) * s->in[2] + iw : 0;
                        if (scatter) {
                            if (ok)
                                xc[xi] += row[j];
                        } else {
                            row[j] = ok ? xc[xi] : 0.0f;
                        }
                        if (++ow == s->out[2]) {
                            ow = 0;
                            if (++oh == s->out[1])
                                oh = 0, od++;
                        }
                    }
                }
    }
}

/* True when no two outputs share an input pixel (stride >= receptive span on every axis). */
static int gen_disjoint(const mk_conv_shape *s)
{
    for (int a = 0; a < 3; a++)
        if (s->stride[a] < s->dil[a] * (s->k[a] - 1) + 1)
            return 0;
    return 1;
}

static size_t gen_ws(const gen *g, int T, int wgrad)
{
    size_t cols = (size_t)T * g->K * g->pb;
    return (cols + (wgrad ? (size_t)NSLOT * g->s->cout * g->K : 0)) * sizeof(float);
}

static void gen_fwd(const gen *g, const float *x, const float *w, const float *bias, float *y,
                    float *ws, int T)
{
    const mk_conv_shape *s = g->s;
    const long units = (long)s->n * g->nblk;
#pragma omp parallel num_threads(T)
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        float *col = ws + (size_t)tid * g->K * g->pb;
        long lo, hi;
        split(units, tid, nt, &lo, &hi);
        for (long u = lo; u < hi; u++) {
            int n = (int)(u / g->nblk);
            size_t p0 = (size_t)(u % g->nblk) * g->pb;
            int np = g->vout - p0 < (size_t)g->pb ? (int)(g->vout - p0) : g->pb;
            gen_cols(g, (float *)(x + (size_t)n * s->cin * g->vin), col, p0, np, 0);
            float *yb = y + (size_t)n * s->cout * g->vout + p0;
            float beta = 0.0f;
            if (bias) {
                for (int co = 0; co < s->cout; co++)
                    for (int j = 0; j < np; j++)
                        yb[(size_t)co * g->vout + j] = bias[co];
                beta = 1.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->cout, np, g->K, 1.0f, w, g->K,
                        col, np, beta, yb, (int)g->vout);
        }
    }
}

static void gen_bwd_data(const gen *g, const float *dy, const float *w, float *dx, float *ws, int T)
{
    const mk_conv_shape *s = g->s;
    const int disjoint = gen_disjoint(s);
    const long units = disjoint ? (long)s->n * g->nblk : s->n;
#pragma omp parallel num_threads(T)
    {
        int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        float *col = ws + (size_t)tid * g->K * g->pb;
        long lo, hi;
        split(units, tid, nt, &lo, &hi);
        for (long u = lo; u < hi; u++) {
            int n = disjoint ? (int)(u / g->nblk) : (int)u;
            int b0 = disjoint ? (int)(u % g->nblk) : 0, b1 = disjoint ? b0 + 1 : g->nblk;
            for (int b = b0; b < b1; b++) {
                size_t p0 = (size_t)b * g->pb;
                int np = g->vout - p0 < (size_t)g->pb ? (int)(g->vout - p0) : g->pb;
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->K, np, s->cout, 1.0f, w,
                            g->K, dy + (size_t)n * s->cout * g->vout + p0, (int)g->vout, 0.0f, col,
                            np);
                gen_cols(g, dx + (size_t)n * s->cin * g->vin, col, p0, np, 1);
            }
        }
    }
}

static void gen_bwd_weight(const gen *g, const float *x, const float *dy, float *dw, float *db,
                           float *ws, int T)
{
    const mk_conv_shape *s = g->s;
    const long units = (long)s->n * g->nblk;
    const size_t psz = (size_t)s->cout * g->K;
    float *parts = ws + (size_t)T * g->K * g->pb;
    memset(parts, 0, NSLOT * psz * sizeof *parts);
#pragma omp parallel num_threads(T)
    {
        int tid = omp_get_thread_num();
        float *col = ws + (size_t)tid * g->K * g->pb;
#pragma omp for schedule(dynamic, 1)
        for (int slot = 0; slot < NSLOT; slot++) {
            float *part = parts + (size_t)slot * psz;
            long lo, hi;
            split(units, slot, NSLOT, &lo, &hi);
            for (long u = lo; u < hi; u++) {
                int n = (int)(u / g->nblk);
                size_t p0 = (size_t)(u % g->nblk) * g->pb;
                int np = g->vout - p0 < (size_t)g->pb ? (int)(g->vout - p0) : g->pb;
                gen_cols(g, (float *)(x + (size_t)n * s->cin * g->vin), col, p0, np, 0);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->cout, g->K, np, 1.0f,
                            dy + (size_t)n * s->cout * g->vout + p0, (int)g->vout, col, np, 1.0f,
                            part, g->K);
            }
        }
    }
    for (int t = 0; t < NSLOT; t++) {
        const float *part = parts + (size_t)t * psz;
        for (size_t i = 0; i < psz; i++)
            dw[i] += part[i];
    }
    if (db) {
        for (int m = 0; m < s->cout; m++) {
            double acc = 0;
            for (int n = 0; n < s->n; n++) {
                const float *p = dy + ((size_t)n * s->cout + m) * g->vout;
                for (size_t i = 0; i < g->vout; i++)
                    acc += p[i];
            }
            db[m] += (float)acc;
        }
    }
}

/* ---- dispatch ------------------------------------------------------------------------------ */

enum { OP_FWD, OP_DGRAD, OP_WGRAD };

/* Patch conv: stride == kernel, pad 0, dil 1 on every axis, some kernel extent > 1. */
static int is_patch(const mk_conv_shape *s)
{
    int any = 0;
    for (int a = 0; a < 3; a++) {
        if (s->stride[a] != s->k[a] || s->pad[a] != 0 || s->dil[a] != 1)
            return 0;
        any |= s->k[a] > 1;
    }
    return any;
}

/* Chooses the engine of one op: returns 1 and fills *f for the flat engine, 0 for the generic
 * one. direct: 1 / 0 force the flat engine's kernel choice, -1 picks by output-channel count. */
static int plan(const mk_conv_shape *s, int op, int direct, flat *f)
{
    static const int one[3] = {1, 1, 1}, zero[3] = {0, 0, 0};
    const int kvol = s->k[0] * s->k[1] * s->k[2];
    if (is_patch(s)) {
        const int K = s->cin * kvol;
        if (op == OP_DGRAD) {
            flat_init(f, s->cout, K, s->out, zero, one, one, s->out,
                      direct < 0 ? K < sgemm_min_channels : direct);
            f->patch_out = 1;
            f->out_sample = (size_t)s->cin * shape_vin(s);
        } else {
            flat_init(f, K, s->cout, s->out, zero, one, one, s->out,
                      direct < 0 ? s->cout < sgemm_min_channels : direct);
            f->patch_in = 1;
            f->in_sample = (size_t)s->cin * shape_vin(s);
        }
        f->patch = s;
        f->pkvol = kvol;
        return 1;
    }
    if (s->stride[0] != 1 || s->stride[1] != 1 || s->stride[2] != 1)
        return 0;
    if (op == OP_DGRAD) {
        /* backward-data = stride-1 conv of dy padded by dil*(k-1) - pad, which must be >= 0 */
        int padt[3];
        for (int a = 0; a < 3; a++) {
            padt[a] = s->dil[a] * (s->k[a] - 1) - s->pad[a];
            if (padt[a] < 0)
                return 0;
        }
        flat_init(f, s->cout, s->cin, s->out, padt, s->k, s->dil, s->in,
                  direct < 0 ? s->cin < sgemm_min_channels : direct);
        return 1;
    }
    flat_init(f, s->cin, s->cout, s->in, s->pad, s->k, s->dil, s->out,
              direct < 0 ? s->cout < sgemm_min_channels : direct);
    return 1;
}

/* Bytes one op needs (layout measured with the same code that carves it). */
static size_t ws_op(const mk_conv_shape *s, int op, int T, int direct)
{
    flat f;
    if (!plan(s, op, direct, &f)) {
        gen g;
        gen_init(&g, s);
        return gen_ws(&g, T, op == OP_WGRAD) + 64;
    }
    bump b = {NULL, 0};
    if (op == OP_WGRAD) {
        flat_w_ws w;
        flat_w_layout(&f, T, &b, &w);
    } else {
        flat_fwd_ws w;
        flat_fwd_layout(&f, T, op == OP_DGRAD, &b, &w);
    }
    return b.off + 64;
}

size_t mk_conv_workspace_size(const mk_conv_shape *s, int threads)
{
    int T = clamp_threads(threads);
    size_t m = 0;
    for (int direct = 0; direct <= 1; direct++) /* either engine, whatever the tuning */
        for (int op = OP_FWD; op <= OP_WGRAD; op++) {
            size_t b = ws_op(s, op, T, direct);
            m = b > m ? b : m;
        }
    return m;
}

/* Aligned base of the caller's workspace, or a fresh allocation (*own set) of `bytes`. */
static char *ws_base(void *ws, size_t bytes, void **own)
{
    *own = NULL;
    if (!ws) {
        ws = malloc(bytes);
        MK_ASSERT(ws != NULL);
        *own = ws;
    }
    uintptr_t p = ((uintptr_t)ws + 63) & ~(uintptr_t)63;
    return (char *)p;
}

void mk_conv_fwd(const mk_conv_shape *s, const float *x, const float *w, const float *bias,
                 float *y, void *ws, int threads)
{
    int T = clamp_threads(threads);
    blas_single_thread();
    void *own;
    char *base = ws_base(ws, ws_op(s, OP_FWD, T, -1), &own);
    flat f;
    if (!plan(s, OP_FWD, -1, &f)) {
        gen g;
        gen_init(&g, s);
        gen_fwd(&g, x, w, bias, y, (float *)base, T);
    } else {
        bump b = {base, 0};
        flat_fwd_ws fw;
        flat_fwd_layout(&f, T, 0, &b, &fw);
        flat_fwd_run(&f, s->n, x, w, bias, y, 0, &fw, T);
    }
    free(own);
}

void mk_conv_bwd_data(const mk_conv_shape *s, const float *dy, const float *w, float *dx, void *ws,
                      int threads)
{
    int T = clamp_threads(threads);
    blas_single_thread();
    void *own;
    char *base = ws_base(ws, ws_op(s, OP_DGRAD, T, -1), &own);
    flat f;
    if (!plan(s, OP_DGRAD, -1, &f)) {
        gen g;
        gen_init(&g, s);
        gen_bwd_data(&g, dy, w, dx, (float *)base, T);
    } else {
        bump b = {base, 0};
        flat_fwd_ws fw;
        flat_fwd_layout(&f, T, 1, &b, &fw);
        /* A[m][c * kv + t] = w[c][m][kv - 1 - t]: transposed, taps flipped (m < M = the conv's
         * input channels, or cin * kvol space-to-depth channels of a patch conv with kv = 1) */
        const int kv = f.kvol, M = f.M, C = f.C;
        for (int m = 0; m < M; m++)
            for (int c = 0; c < C; c++)
                for (int t = 0; t < kv; t++)
                    fw.A[((size_t)m * C + c) * kv + t] = w[((size_t)c * M + m) * kv + kv - 1 - t];
        flat_fwd_run(&f, s->n, dy, fw.A, NULL, dx, 1, &fw, T);
    }
    free(own);
}

void mk_conv_bwd_weight(const mk_conv_shape *s, const float *x, const float *dy, float *dw,
                        float *db, void *ws, int threads)
{
    int T = clamp_threads(threads);
    blas_single_thread();
    void *own;
    char *base = ws_base(ws, ws_op(s, OP_WGRAD, T, -1), &own);
    flat f;
    if (!plan(s, OP_WGRAD, -1, &f)) {
        gen g;
        gen_init(&g, s);
        gen_bwd_weight(&g, x, dy, dw, db, (float *)base, T);
    } else {
        bump b = {base, 0};
        flat_w_ws fw;
        flat_w_layout(&f, T, &b, &fw);
        flat_w_run(&f, s->n, x, dy, dw, db, &fw, T);
    }
    free(own);
}

void mk_conv_bwd_weight_samples(const mk_conv_shape *s, const float *x, const float *dy,
                                float *part, void *ws, int threads)
{
    const int T = clamp_threads(threads), N = s->n;
    const size_t vin = shape_vin(s), vout = (size_t)s->out[0] * s->out[1] * s->out[2];
    const size_t nw = (size_t)s->cout * s->cin * s->k[0] * s->k[1] * s->k[2];
    flat f;
    /* whole samples per worker when there are two or more a worker (the same bits either way) */
    if (N >= 2 * T && plan(s, OP_WGRAD, -1, &f)) {
        blas_single_thread();
        void *own;
        char *base = ws_base(ws, ws_op(s, OP_WGRAD, T, -1), &own);
        bump b = {base, 0};
        flat_w_ws fw;
        flat_w_layout(&f, T, &b, &fw);
        flat_w_samples(&f, N, x, dy, part, &fw, T);
        free(own);
        return;
    }
    mk_conv_shape one = *s;
    one.n = 1;
    for (int i = 0; i < N; i++) {
        float *pi = part + (size_t)i * nw;
        memset(pi, 0, nw * sizeof *pi);
        mk_conv_bwd_weight(&one, x + (size_t)i * s->cin * vin, dy + (size_t)i * s->cout * vout, pi,
                           NULL, ws, threads);
    }
}
