/* Surfel areas (3D) and contour lengths (2D) of every corner neighbourhood code, derived from
 * geometry rather than typed in.
 *
 * A corner of the dual grid sees the 2x2x2 voxels around it; bit b = dx + 2*dy + 4*dz is voxel
 * (dx,dy,dz). The marching-cubes surface in that cell separates the minority class (the foreground
 * when it has <= 4 voxels, else the background: the "complement for >= 5" rule) into its
 * components, corners joined along cube edges. Around each component the cut edges' midpoints form
 * a closed polygon (3..6 vertices). Lorensen's triangulation of the non-planar pentagon (3 voxels
 * in an L) and hexagon (4 voxels in a zig-zag) is the one whose triangles follow the planar pieces
 * of the polygon, which is the triangulation with the largest total area; planar polygons have
 * the same area whichever triangulation is used. The triangles' area vectors are computed once in
 * index space; a spacing s maps area vector (n0,n1,n2) to (n0*s1*s2, n1*s0*s2, n2*s0*s1).
 * This reproduces the surface-distance table (checked to 4e-16 in tests/test_metrics.c through
 * analytic cases). */
#include <math.h>
#include <string.h>

#include "mk_metrics.h"

#define MAXTRI 12

typedef struct tri_set {
    int n;
    double a[MAXTRI][3]; /* area vectors in index space */
} tri_set;

static tri_set g_tris[256];
static int g_ready;

static void corner_xyz(int b, double p[3])
{
    p[0] = (double)(b & 1);
    p[1] = (double)((b >> 1) & 1);
    p[2] = (double)((b >> 2) & 1);
}

static void cross3(const double u[3], const double v[3], double o[3])
{
    o[0] = u[1] * v[2] - u[2] * v[1];
    o[1] = u[2] * v[0] - u[0] * v[2];
    o[2] = u[0] * v[1] - u[1] * v[0];
}

static void tri_area_vec(const double P[][3], int i, int j, int k, double o[3])
{
    double u[3], v[3];
    for (int d = 0; d < 3; d++) {
        u[d] = P[j][d] - P[i][d];
        v[d] = P[k][d] - P[i][d];
    }
    cross3(u, v, o);
    for (int d = 0; d < 3; d++)
        o[d] *= 0.5;
}

static double norm3(const double v[3])
{
    return sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
}

/* Largest-area triangulation of polygon P[0..n-1] (n <= 8) by the classic interval DP. */
static void triangulate_max(const double P[][3], int n, tri_set *out)
{
    double best[8][8];
    int split[8][8];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            best[i][j] = 0.0;
            split[i][j] = -1;
        }
    for (int len = 2; len < n; len++)
        for (int i = 0; i + len < n; i++) {
            int j = i + len;
            best[i][j] = -1.0;
            for (int m = i + 1; m < j; m++) {
                double a[3];
                tri_area_vec(P, i, m, j, a);
                double v = best[i][m] + best[m][j] + norm3(a);
                /* ties (planar pieces) have equal areas for every spacing; keep the first */
                if (v > best[i][j] + 1e-12) {
                    best[i][j] = v;
                    split[i][j] = m;
                }
            }
        }
    /* emit triangles with an explicit stack of intervals */
    int st[16][2], sp = 0;
    st[sp][0] = 0;
    st[sp][1] = n - 1;
    sp++;
    while (sp > 0) {
        sp--;
        int i = st[sp][0], j = st[sp][1];
        if (j - i < 2)
            continue;
        int m = split[i][j];
        MK_ASSERT(out->n < MAXTRI);
        tri_area_vec(P, i, m, j, out->a[out->n]);
        out->n++;
        st[sp][0] = i;
        st[sp][1] = m;
        sp++;
        st[sp][0] = m;
        st[sp][1] = j;
        sp++;
    }
}

/* Triangles of one code in index space. */
static void derive_code(int code, tri_set *out)
{
    out->n = 0;
    int pop = __builtin_popcount((unsigned)code);
    if (pop == 0 || pop == 8)
        return;
    unsigned minority = pop <= 4 ? (unsigned)code : (~(unsigned)code & 0xffu);
    unsigned left = minority;
    while (left) {
        /* component containing the lowest remaining corner */
        unsigned comp = left & (~left + 1u), grow = comp;
        while (grow) {
            unsigned next = 0;
            for (int b = 0; b < 8; b++)
                if (grow & (1u << b))
                    for (int k = 0; k < 3; k++) {
                        unsigned w = 1u << (b ^ (1 << k));
                        if ((minority & w) && !(comp & w))
                            next |= w;
                    }
            comp |= next;
            grow = next;
        }
        left &= ~comp;
        /* cut edges: (inside corner, outside corner) */
        int cut[12][2], nc = 0;
        for (int b = 0; b < 8; b++)
            if (comp & (1u << b))
                for (int k = 0; k < 3; k++) {
                    int w = b ^ (1 << k);
                    if (!(comp & (1u << w))) {
                        cut[nc][0] = b;
                        cut[nc][1] = w;
                        nc++;
                    }
                }
        /* link cut edges lying on a common cube face: on each face the component's corners form
         * one run, whose two boundary edges are consecutive polygon vertices */
        int nb[12][2], nn[12] = {0};
        for (int k = 0; k < 3; k++)
            for (int side = 0; side < 2; side++) {
                int on[2], non = 0;
                for (int e = 0; e < nc; e++) {
                    int a = cut[e][0], b = cut[e][1];
                    if (((a >> k) & 1) == side && ((b >> k) & 1) == side) {
                        MK_ASSERT(non < 2);
                        on[non++] = e;
                    }
                }
                if (non == 2) {
                    nb[on[0]][nn[on[0]]++] = on[1];
                    nb[on[1]][nn[on[1]]++] = on[0];
                }
            }
        double P[12][3];
        int prev = -1, cur = 0, np = 0;
        do {
            MK_ASSERT(nn[cur] == 2 && np < nc);
            double pa[3], pb[3];
            corner_xyz(cut[cur][0], pa);
            corner_xyz(cut[cur][1], pb);
            for (int d = 0; d < 3; d++)
                P[np][d] = 0.5 * (pa[d] + pb[d]);
            np++;
            int nxt = nb[cur][0] == prev ? nb[cur][1] : nb[cur][0];
            prev = cur;
            cur = nxt;
        } while (cur != 0);
        MK_ASSERT(np == nc && np >= 3 && np <= 8);
        triangulate_max((const double(*)[3])P, np, out);
    }
}

static void ensure_tris(void)
{
    /* idempotent and deterministic: concurrent first calls write identical values */
#pragma omp critical(mk_metric_tris)
    {
        if (!g_ready) {
            for (int c = 0; c < 256; c++)
                derive_code(c, &g_tris[c]);
            g_ready = 1;
        }
    }
}

void mk_metric_surfel_areas_3d(const double spacing[3], double table[256])
{
    ensure_tris();
    const double f0 = spacing[1] * spacing[2], f1 = spacing[0] * spacing[2],
                 f2 = spacing[0] * spacing[1];
    for (int c = 0; c < 256; c++) {
        double sum = 0.0;
        for (int t = 0; t < g_tris[c].n; t++) {
            double v[3] = {g_tris[c].a[t][0] * f0, g_tris[c].a[t][1] * f1, g_tris[c].a[t][2] * f2};
            sum += norm3(v);
        }
        table[c] = sum;
    }
}

void mk_metric_contour_lengths_2d(const double spacing[2], double table[16])
{
    /* The 2D analogue: minority components of the 2x2 cell (foreground when <= 2 voxels, so the
     * two diagonal configurations give two separate segments); each component's two cut edges'
     * midpoints are joined by one segment. */
    for (int code = 0; code < 16; code++) {
        int pop = __builtin_popcount((unsigned)code);
        table[code] = 0.0;
        if (pop == 0 || pop == 4)
            continue;
        unsigned minority = pop <= 2 ? (unsigned)code : (~(unsigned)code & 0xfu);
        for (int b = 0; b < 4; b++) {
            if (!(minority & (1u << b)))
                continue;
            /* a component is one corner or two edge-adjacent corners; visit it from its lowest */
            int partner = -1;
            for (int k = 0; k < 2; k++)
                if (minority & (1u << (b ^ (1 << k))))
                    partner = b ^ (1 << k);
            if (partner >= 0 && partner < b)
                continue;
            double m[2][2];
            int nm = 0;
            for (int c = 0; c < 4 && nm <= 2; c++) {
                if (!(c == b || c == partner))
                    continue;
                for (int k = 0; k < 2; k++) {
                    int w = c ^ (1 << k);
                    if (w == b || w == partner)
                        continue;
                    MK_ASSERT(nm < 2);
                    m[nm][0] = 0.5 * ((double)(c & 1) + (double)(w & 1));
                    m[nm][1] = 0.5 * ((double)((c >> 1) & 1) + (double)((w >> 1) & 1));
                    nm++;
                }
            }
            MK_ASSERT(nm == 2);
            double dx = (m[1][0] - m[0][0]) * spacing[0], dy = (m[1][1] - m[0][1]) * spacing[1];
            table[code] += sqrt(dx * dx + dy * dy);
        }
    }
}
