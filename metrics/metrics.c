/* Per-label overlap and surface-distance metrics (definitions in mk_metrics.h and docs/metrics.md).
 *
 * Flow: one pass over each stored box counts voxels per value and records each value's bounding
 * box; then, per label, both masks are cut to the union of their boxes plus a 1-voxel zero pad, the
 * surfaces are extracted on the crop (corner codes or eroded voxels), one exact EDT per direction
 * gives the distances, and the directed distance/area lists are reduced. Only the crop is ever
 * held as binary/double arrays, so memory follows the object size, not the image size. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "mk_metrics.h"

#define MAX_DISTINCT MK_METRIC_MAX_DISTINCT

static const size_t VT_SIZE[MK_METRIC_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 8, 8, 4, 8};
static const char *const CONV_NAMES[MK_METRIC_CONV_COUNT] = {"deepmind", "medpy"};
static const char *const EMPTY_NAMES[4] = {"none", "pred", "ref", "both"};
static const char *const BOTH_NAMES[MK_METRIC_BOTH_COUNT] = {"one", "nan"};

const char *mk_metric_conv_name(mk_metric_conv c)
{
    return (c >= 0 && c < MK_METRIC_CONV_COUNT) ? CONV_NAMES[c] : "?";
}

mk_status mk_metric_conv_parse(mk_ctx *ctx, const char *s, mk_metric_conv *out)
{
    for (int i = 0; i < MK_METRIC_CONV_COUNT; i++)
        if (strcmp(s, CONV_NAMES[i]) == 0) {
            *out = (mk_metric_conv)i;
            return MK_OK;
        }
    return mk_err(ctx, MK_ERR_USAGE, "--convention: expected deepmind or medpy, got '%s'", s);
}

const char *mk_metric_empty_name(mk_metric_empty e)
{
    return (e >= 0 && e <= MK_METRIC_EMPTY_BOTH) ? EMPTY_NAMES[e] : "?";
}

const char *mk_metric_both_empty_name(mk_metric_both_empty p)
{
    return (p >= 0 && p < MK_METRIC_BOTH_COUNT) ? BOTH_NAMES[p] : "?";
}

mk_status mk_metric_both_empty_parse(mk_ctx *ctx, const char *s, mk_metric_both_empty *out)
{
    for (int i = 0; i < MK_METRIC_BOTH_COUNT; i++)
        if (strcmp(s, BOTH_NAMES[i]) == 0) {
            *out = (mk_metric_both_empty)i;
            return MK_OK;
        }
    return mk_err(ctx, MK_ERR_USAGE,
                  "--both-empty: expected nan (nnU-Net: undefined, left out of the summaries) or "
                  "one (dice 1, distances 0), got '%s'",
                  s);
}

void mk_metric_opts_default(mk_metric_opts *o)
{
    o->convention = MK_METRIC_DEEPMIND;
    o->tolerance_mm = 1.0;
    o->percentile = 95.0;
    o->both_empty = MK_METRIC_BOTH_ONE;
}

/* ---------------------------------------------------------------- volume access */

typedef struct vbox {
    int64_t lo[3], n[3];
} vbox;

static void vol_box(const mk_metric_vol *v, vbox *b)
{
    for (int k = 0; k < 3; k++) {
        b->lo[k] = v->box_dim[0] > 0 ? v->box_lo[k] : 0;
        b->n[k] = v->box_dim[0] > 0 ? v->box_dim[k] : v->dim[k];
    }
}

static const char *vname(const mk_metric_vol *v)
{
    return v->name ? v->name : "volume";
}

/* Convert n values of type t into int64. Returns the index of the first value that is not an
 * integral label (float with a fraction, NaN, inf, beyond +-2^53), or -1. */
static int64_t row_to_i64(const void *src, mk_metric_vtype t, int64_t n, int64_t *dst, double *bad)
{
    switch (t) {
#define CONV_INT(T, CT)                                                                            \
    case T: {                                                                                      \
        const CT *s = src;                                                                         \
        for (int64_t i = 0; i < n; i++)                                                            \
            dst[i] = (int64_t)s[i];                                                                \
        return -1;                                                                                 \
    }
        CONV_INT(MK_METRIC_U8, uint8_t)
        CONV_INT(MK_METRIC_I8, int8_t)
        CONV_INT(MK_METRIC_U16, uint16_t)
        CONV_INT(MK_METRIC_I16, int16_t)
        CONV_INT(MK_METRIC_U32, uint32_t)
        CONV_INT(MK_METRIC_I32, int32_t)
        CONV_INT(MK_METRIC_I64, int64_t)
#undef CONV_INT
    case MK_METRIC_U64: {
        const uint64_t *s = src;
        for (int64_t i = 0; i < n; i++) {
            if (s[i] > (uint64_t)INT64_MAX) {
                *bad = (double)s[i];
                return i;
            }
            dst[i] = (int64_t)s[i];
        }
        return -1;
    }
#define CONV_FLT(T, CT)                                                                            \
    case T: {                                                                                      \
        const CT *s = src;                                                                         \
        for (int64_t i = 0; i < n; i++) {                                                          \
            double v = (double)s[i];                                                               \
            if (!(v == floor(v)) || fabs(v) > 9007199254740992.0) {                                \
                *bad = v;                                                                          \
                return i;                                                                          \
            }                                                                                      \
            dst[i] = (int64_t)v;                                                                   \
        }                                                                                          \
        return -1;                                                                                 \
    }
        CONV_FLT(MK_METRIC_F32, float)
        CONV_FLT(MK_METRIC_F64, double)
#undef CONV_FLT
    default: MK_ASSERT(0);
    }
    return -1;
}

static int bytes_zero(const unsigned char *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w)
            return 0;
    }
    for (; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* ---------------------------------------------------------------- per-value statistics */

typedef struct vstat {
    int64_t key;
    int64_t cnt[3]; /* pred, ref, both */
    int64_t lo[3], hi[3];
    int used;
} vstat;

typedef struct vtable {
    vstat *e;
    int64_t cap, n;
    int overflow;
} vtable;

static uint64_t hash64(int64_t k)
{
    uint64_t x = (uint64_t)k;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static vstat *vt_get(vtable *t, int64_t key)
{
    if (t->n * 2 >= t->cap) {
        if (t->n >= MAX_DISTINCT) {
            t->overflow = 1;
            return NULL;
        }
        int64_t nc = t->cap ? t->cap * 2 : 64;
        vstat *ne = calloc((size_t)nc, sizeof *ne);
        if (!ne) {
            t->overflow = 2;
            return NULL;
        }
        for (int64_t i = 0; i < t->cap; i++)
            if (t->e[i].used) {
                uint64_t h = hash64(t->e[i].key) & (uint64_t)(nc - 1);
                while (ne[h].used)
                    h = (h + 1) & (uint64_t)(nc - 1);
                ne[h] = t->e[i];
            }
        free(t->e);
        t->e = ne;
        t->cap = nc;
    }
    uint64_t h = hash64(key) & (uint64_t)(t->cap - 1);
    while (t->e[h].used && t->e[h].key != key)
        h = (h + 1) & (uint64_t)(t->cap - 1);
    vstat *s = &t->e[h];
    if (!s->used) {
        memset(s, 0, sizeof *s);
        s->used = 1;
        s->key = key;
        for (int k = 0; k < 3; k++) {
            s->lo[k] = INT64_MAX;
            s->hi[k] = -1;
        }
        t->n++;
    }
    return s;
}

static void vs_touch(vstat *s, int64_t x, int64_t y, int64_t z)
{
    if (x < s->lo[0])
        s->lo[0] = x;
    if (x > s->hi[0])
        s->hi[0] = x;
    if (y < s->lo[1])
        s->lo[1] = y;
    if (y > s->hi[1])
        s->hi[1] = y;
    if (z < s->lo[2])
        s->lo[2] = z;
    if (z > s->hi[2])
        s->hi[2] = z;
}

static int vt_merge(vtable *dst, const vtable *src)
{
    for (int64_t i = 0; i < src->cap; i++) {
        const vstat *s = &src->e[i];
        if (!s->used)
            continue;
        vstat *d = vt_get(dst, s->key);
        if (!d)
            return -1;
        for (int k = 0; k < 3; k++) {
            d->cnt[k] += s->cnt[k];
            if (s->lo[k] < d->lo[k])
                d->lo[k] = s->lo[k];
            if (s->hi[k] > d->hi[k])
                d->hi[k] = s->hi[k];
        }
    }
    return 0;
}

typedef struct scan_err {
    int64_t x, y, z;
    double value;
    int kind; /* 0 none, 1 non-integral, 2 too many values, 3 no memory */
} scan_err;

/* which = 0: pred box, 1: ref box (counts + bboxes); 2: intersection (cnt both). */
static void scan(const mk_metric_vol *p, const mk_metric_vol *r, int which, vtable *out,
                 scan_err *err)
{
    const mk_metric_vol *v = which == 1 ? r : p;
    vbox b, bp, br;
    vol_box(p, &bp);
    vol_box(r, &br);
    if (which == 2) {
        for (int k = 0; k < 3; k++) {
            b.lo[k] = bp.lo[k] > br.lo[k] ? bp.lo[k] : br.lo[k];
            int64_t hi =
                bp.lo[k] + bp.n[k] < br.lo[k] + br.n[k] ? bp.lo[k] + bp.n[k] : br.lo[k] + br.n[k];
            b.n[k] = hi - b.lo[k];
            if (b.n[k] <= 0)
                return;
        }
    } else {
        b = which == 1 ? br : bp;
    }
    const int64_t nx = b.n[0];
    memset(err, 0, sizeof *err);
#pragma omp parallel
    {
        vtable loc = {0};
        scan_err e = {0};
        int64_t *ra = malloc((size_t)nx * sizeof *ra);
        int64_t *rb = which == 2 ? malloc((size_t)nx * sizeof *rb) : NULL;
        if (!ra || (which == 2 && !rb))
            e.kind = 3;
#pragma omp for schedule(dynamic, 4)
        for (int64_t z = 0; z < b.n[2]; z++) {
            if (e.kind)
                continue;
            for (int64_t y = 0; y < b.n[1] && !e.kind; y++) {
                int64_t gz = b.lo[2] + z, gy = b.lo[1] + y, gx0 = b.lo[0];
                if (which < 2) {
                    const unsigned char *row = (const unsigned char *)v->data +
                                               ((size_t)((z * b.n[1] + y) * nx)) * VT_SIZE[v->type];
                    if (bytes_zero(row, (size_t)nx * VT_SIZE[v->type]))
                        continue;
                    double bad;
                    int64_t bi = row_to_i64(row, v->type, nx, ra, &bad);
                    if (bi >= 0) {
                        e = (scan_err){gx0 + bi, gy, gz, bad, 1};
                        break;
                    }
                    int64_t last = 0;
                    vstat *s = NULL;
                    for (int64_t x = 0; x < nx; x++) {
                        int64_t val = ra[x];
                        if (!val)
                            continue;
                        if (!s || last != val) {
                            s = vt_get(&loc, val);
                            if (!s) {
                                e.kind = loc.overflow == 1 ? 2 : 3;
                                break;
                            }
                            last = val;
                        }
                        s->cnt[which]++;
                        vs_touch(s, gx0 + x, gy, gz);
                    }
                } else {
                    const unsigned char *rowp =
                        (const unsigned char *)p->data +
                        ((size_t)(((gz - bp.lo[2]) * bp.n[1] + (gy - bp.lo[1])) * bp.n[0] +
                                  (gx0 - bp.lo[0]))) *
                            VT_SIZE[p->type];
                    const unsigned char *rowr =
                        (const unsigned char *)r->data +
                        ((size_t)(((gz - br.lo[2]) * br.n[1] + (gy - br.lo[1])) * br.n[0] +
                                  (gx0 - br.lo[0]))) *
                            VT_SIZE[r->type];
                    if (bytes_zero(rowp, (size_t)nx * VT_SIZE[p->type]) ||
                        bytes_zero(rowr, (size_t)nx * VT_SIZE[r->type]))
                        continue;
                    double bad;
                    /* validated by the single-volume passes */
                    (void)row_to_i64(rowp, p->type, nx, ra, &bad);
                    (void)row_to_i64(rowr, r->type, nx, rb, &bad);
                    int64_t last = 0;
                    vstat *s = NULL;
                    for (int64_t x = 0; x < nx; x++) {
                        if (!ra[x] || ra[x] != rb[x])
                            continue;
                        if (!s || last != ra[x]) {
                            s = vt_get(&loc, ra[x]);
                            if (!s) {
                                e.kind = loc.overflow == 1 ? 2 : 3;
                                break;
                            }
                            last = ra[x];
                        }
                        s->cnt[2]++;
                    }
                }
            }
        }
#pragma omp critical(mk_metric_scan_merge)
        {
            if (e.kind && !err->kind)
                *err = e;
            if (!err->kind && vt_merge(out, &loc) != 0)
                err->kind = out->overflow == 1 ? 2 : 3;
        }
        free(loc.e);
        free(ra);
        free(rb);
    }
}

static mk_status check_pair(mk_ctx *ctx, const mk_metric_vol *p, const mk_metric_vol *r)
{
    for (int k = 0; k < 3; k++) {
        if (p->dim[k] != r->dim[k])
            return mk_err(ctx, MK_ERR_GEOMETRY,
                          "%s and %s: grids differ: shape %lldx%lldx%lld vs %lldx%lldx%lld",
                          vname(p), vname(r), (long long)p->dim[0], (long long)p->dim[1],
                          (long long)p->dim[2], (long long)r->dim[0], (long long)r->dim[1],
                          (long long)r->dim[2]);
    }
    for (int k = 0; k < 3; k++) {
        double a = p->spacing[k], b = r->spacing[k];
        if (!(a > 0) || !(b > 0) || !isfinite(a) || !isfinite(b))
            return mk_err(ctx, MK_ERR_GEOMETRY,
                          "%s and %s: spacing must be positive and finite, got %g and %g", vname(p),
                          vname(r), a, b);
        if (fabs(a - b) > 1e-4 * fmax(a, b))
            return mk_err(ctx, MK_ERR_GEOMETRY,
                          "%s and %s: grids differ: spacing %.9g,%.9g,%.9g vs %.9g,%.9g,%.9g "
                          "(tolerance 1e-4 relative)",
                          vname(p), vname(r), p->spacing[0], p->spacing[1], p->spacing[2],
                          r->spacing[0], r->spacing[1], r->spacing[2]);
    }
    const mk_metric_vol *vv[2] = {p, r};
    for (int i = 0; i < 2; i++) {
        vbox b;
        vol_box(vv[i], &b);
        if (!vv[i]->data && b.n[0] * b.n[1] * b.n[2] > 0)
            return mk_err(ctx, MK_ERR_INVALID, "%s: no voxel data", vname(vv[i]));
        if ((int)vv[i]->type < 0 || vv[i]->type >= MK_METRIC_VTYPE_COUNT)
            return mk_err(ctx, MK_ERR_INVALID, "%s: unknown voxel type %d", vname(vv[i]),
                          (int)vv[i]->type);
        for (int k = 0; k < 3; k++)
            if (vv[i]->dim[k] < 1 || b.lo[k] < 0 || b.n[k] < 0 || b.lo[k] + b.n[k] > vv[i]->dim[k])
                return mk_err(ctx, MK_ERR_INVALID, "%s: stored box outside the image on axis %d",
                              vname(vv[i]), k);
    }
    return MK_OK;
}

static mk_status scan_all(mk_ctx *ctx, const mk_metric_vol *p, const mk_metric_vol *r, vtable *t)
{
    mk_status st = check_pair(ctx, p, r);
    if (st != MK_OK)
        return st;
    for (int which = 0; which < 3; which++) {
        scan_err e;
        scan(p, r, which, t, &e);
        const mk_metric_vol *v = which == 1 ? r : p;
        if (e.kind == 1)
            return mk_err(
                ctx, MK_ERR_INVALID,
                "%s: voxel (%lld,%lld,%lld): label value %.17g is not an integer (float label "
                "images must hold integral values)",
                vname(v), (long long)e.x, (long long)e.y, (long long)e.z, e.value);
        if (e.kind == 2)
            return mk_err(ctx, MK_ERR_INVALID,
                          "%s: more than %d distinct non-zero values: not a label image", vname(v),
                          MAX_DISTINCT);
        if (e.kind == 3)
            return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory while counting labels", vname(v));
    }
    return MK_OK;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

mk_status mk_metric_find_labels(mk_ctx *ctx, const mk_metric_vol *pred, const mk_metric_vol *ref,
                                int64_t **labels, int *nlabels)
{
    *labels = NULL;
    *nlabels = 0;
    vtable t = {0};
    mk_status st = scan_all(ctx, pred, ref, &t);
    if (st != MK_OK) {
        free(t.e);
        return st;
    }
    int64_t *l = malloc((size_t)(t.n > 0 ? t.n : 1) * sizeof *l);
    if (!l) {
        free(t.e);
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    }
    int n = 0;
    for (int64_t i = 0; i < t.cap; i++)
        if (t.e[i].used)
            l[n++] = t.e[i].key;
    free(t.e);
    qsort(l, (size_t)n, sizeof *l, cmp_i64);
    *labels = l;
    *nlabels = n;
    return MK_OK;
}

/* ---------------------------------------------------------------- label census */

/* A set of int64 keys (open addressing) that stops growing past MAX_DISTINCT keys. */
typedef struct kset {
    int64_t *key;
    unsigned char *used;
    int64_t cap, n;
    int full; /* more than MAX_DISTINCT keys were offered */
} kset;

static int kset_add(kset *t, int64_t key)
{
    if (t->full)
        return 0;
    if (t->n * 2 >= t->cap) {
        int64_t nc = t->cap ? t->cap * 2 : 1024;
        int64_t *nk = malloc((size_t)nc * sizeof *nk);
        unsigned char *nu = calloc((size_t)nc, 1);
        if (!nk || !nu) {
            free(nk);
            free(nu);
            return -1;
        }
        for (int64_t i = 0; i < t->cap; i++)
            if (t->used[i]) {
                uint64_t h = hash64(t->key[i]) & (uint64_t)(nc - 1);
                while (nu[h])
                    h = (h + 1) & (uint64_t)(nc - 1);
                nu[h] = 1;
                nk[h] = t->key[i];
            }
        free(t->key);
        free(t->used);
        t->key = nk;
        t->used = nu;
        t->cap = nc;
    }
    uint64_t h = hash64(key) & (uint64_t)(t->cap - 1);
    while (t->used[h] && t->key[h] != key)
        h = (h + 1) & (uint64_t)(t->cap - 1);
    if (!t->used[h]) {
        if (t->n == MAX_DISTINCT) {
            t->full = 1;
            return 0;
        }
        t->used[h] = 1;
        t->key[h] = key;
        t->n++;
    }
    return 0;
}

mk_status mk_metric_label_census(mk_ctx *ctx, const mk_metric_vol *v, mk_metric_census *out)
{
    memset(out, 0, sizeof *out);
    out->bad_voxel[0] = out->bad_voxel[1] = out->bad_voxel[2] = -1;
    if ((int)v->type < 0 || v->type >= MK_METRIC_VTYPE_COUNT)
        return mk_err(ctx, MK_ERR_INVALID, "%s: unknown voxel type %d", vname(v), (int)v->type);
    vbox b;
    vol_box(v, &b);
    const int64_t nx = b.n[0], nrows = b.n[1] * b.n[2];
    if (!v->data || nx <= 0 || nrows <= 0)
        return MK_OK;
    const size_t es = VT_SIZE[v->type];
    /* 8/16-bit values: a table indexed by the stored bits; wider ones: a key set */
    const int small = es <= 2;
    unsigned char *seen = small ? calloc(es == 1 ? 256 : 65536, 1) : NULL;
    kset set = {0};
    if (small && !seen)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory while counting values", vname(v));
    int nomem = 0;
    for (int64_t row = 0; row < nrows && !nomem; row++) {
        const unsigned char *p = (const unsigned char *)v->data + (size_t)row * (size_t)nx * es;
        if (bytes_zero(p, (size_t)nx * es))
            continue;
        for (int64_t x = 0; x < nx && !nomem; x++, p += es) {
            int64_t key = 0;
            int bad = 0;
            double dv = 0;
            switch (v->type) {
            case MK_METRIC_U8:
            case MK_METRIC_I8:
                if (*p)
                    seen[*p] = 1;
                continue;
            case MK_METRIC_U16:
            case MK_METRIC_I16: {
                uint16_t w;
                memcpy(&w, p, 2);
                if (w)
                    seen[w] = 1;
                continue;
            }
            case MK_METRIC_U32: {
                uint32_t w;
                memcpy(&w, p, 4);
                key = w;
                break;
            }
            case MK_METRIC_I32: {
                int32_t w;
                memcpy(&w, p, 4);
                key = w;
                break;
            }
            case MK_METRIC_U64:
            case MK_METRIC_I64: {
                uint64_t w;
                memcpy(&w, p, 8);
                key = (int64_t)w;
                bad = v->type == MK_METRIC_U64 && w > (uint64_t)INT64_MAX;
                dv = v->type == MK_METRIC_U64 ? (double)w : (double)(int64_t)w;
                break;
            }
            default: {
                if (v->type == MK_METRIC_F32) {
                    float w;
                    memcpy(&w, p, 4);
                    dv = w;
                } else {
                    memcpy(&dv, p, 8);
                }
                if (dv == 0.0)
                    continue; /* also -0.0 */
                bad = !(dv == floor(dv)) || fabs(dv) > 9007199254740992.0;
                if (isnan(dv))
                    key = INT64_MIN; /* every NaN is one value */
                else
                    memcpy(&key, &dv, 8);
                break;
            }
            }
            if (key == 0 && v->type != MK_METRIC_F32 && v->type != MK_METRIC_F64)
                continue;
            if (bad) {
                if (out->n_nonint++ == 0) {
                    int64_t r = row;
                    out->bad_voxel[0] = b.lo[0] + x;
                    out->bad_voxel[1] = b.lo[1] + r % b.n[1];
                    out->bad_voxel[2] = b.lo[2] + r / b.n[1];
                    out->bad_value = dv;
                }
            }
            if (kset_add(&set, key) != 0)
                nomem = 1;
        }
    }
    if (small) {
        int64_t n = 0;
        for (int i = 0; i < (es == 1 ? 256 : 65536); i++)
            n += seen[i];
        out->n_distinct = n;
    } else {
        out->n_distinct = set.full ? MAX_DISTINCT + 1 : set.n;
    }
    free(seen);
    free(set.key);
    free(set.used);
    if (nomem)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory while counting values", vname(v));
    return MK_OK;
}

/* ---------------------------------------------------------------- one label */

void mk_metric_result_empty(mk_metric_result *r, int64_t label, mk_metric_empty e)
{
    memset(r, 0, sizeof *r);
    r->label = label;
    r->empty = e;
    r->ndim = 3;
    if (e == MK_METRIC_EMPTY_BOTH) {
        r->dice = r->jaccard = r->surface_dice = 1.0;
        r->hd = r->hd95 = r->assd = r->masd = 0.0;
        return;
    }
    r->dice = r->jaccard = r->surface_dice = 0.0;
    r->hd = r->hd95 = r->assd = r->masd = INFINITY;
    /* the empty side has no surface (NaN from it); distances towards it are +inf */
    int src_empty = e == MK_METRIC_EMPTY_PRED ? MK_METRIC_PRED2REF : MK_METRIC_REF2PRED;
    for (int d = 0; d < 2; d++) {
        double v = d == src_empty ? NAN : INFINITY;
        r->dir_hd[d] = r->dir_hd95[d] = r->dir_mean[d] = v;
        r->surface_within[d] = 0.0;
    }
}

void mk_metric_result_both_empty(mk_metric_result *r, mk_metric_both_empty p)
{
    if (r->empty != MK_METRIC_EMPTY_BOTH || p != MK_METRIC_BOTH_NAN)
        return;
    r->dice = r->jaccard = r->surface_dice = NAN;
    r->hd = r->hd95 = r->assd = r->masd = NAN;
    for (int d = 0; d < 2; d++)
        r->dir_hd[d] = r->dir_hd95[d] = r->dir_mean[d] = NAN;
}

typedef struct da {
    double d, a;
} da;

static int cmp_da(const void *pa, const void *pb)
{
    const da *x = pa, *y = pb;
    if (x->d != y->d)
        return (x->d > y->d) - (x->d < y->d);
    return (x->a > y->a) - (x->a < y->a);
}

typedef struct geo {
    int nd;        /* 2 or 3 */
    int ax[3];     /* effective axis k is original axis ax[k] */
    int64_t n[3];  /* crop size per effective axis */
    int64_t pd[3]; /* padded size: n+2 on the nd scored axes, 1 on a dropped axis */
    double sp[3];  /* spacing per effective axis */
} geo;

/* Reduce one direction: sorted (d, a) list -> directed statistics. */
static void reduce_dir(da *v, int64_t n, const mk_metric_opts *o, double *hd, double *hd95,
                       double *sum_da, double *sum_a, double *within, double *scratch)
{
    qsort(v, (size_t)n, sizeof *v, cmp_da);
    *hd = v[n - 1].d;
    for (int64_t i = 0; i < n; i++)
        scratch[i] = v[i].a;
    double tot = mk_metric_pairwise_sum(scratch, n);
    *sum_a = tot;
    if (o->convention == MK_METRIC_DEEPMIND) {
        /* surface-distance: cumsum(areas)/sum(areas), searchsorted(left) for percent/100 */
        double thr = o->percentile / 100.0, cum = 0.0;
        int64_t idx = n;
        for (int64_t i = 0; i < n; i++) {
            cum += v[i].a;
            if (cum / tot >= thr) {
                idx = i;
                break;
            }
        }
        *hd95 = v[idx < n ? idx : n - 1].d;
    } else {
        for (int64_t i = 0; i < n; i++)
            scratch[i] = v[i].d;
        *hd95 = mk_metric_percentile_sorted(scratch, n, o->percentile);
    }
    /* areas within tolerance: a prefix of the sorted list */
    int64_t m = 0;
    while (m < n && v[m].d <= o->tolerance_mm)
        m++;
    for (int64_t i = 0; i < m; i++)
        scratch[i] = v[i].a;
    *within = mk_metric_pairwise_sum(scratch, m);
    for (int64_t i = 0; i < n; i++)
        scratch[i] = v[i].d * v[i].a;
    *sum_da = mk_metric_pairwise_sum(scratch, n);
}

/* Fill a padded binary crop of `v` == label over crop box [clo, clo+g->n) in original axes. */
static void extract(const mk_metric_vol *v, int64_t label, const int64_t clo[3], const geo *g,
                    uint8_t *dst, int64_t *rowbuf)
{
    vbox b;
    vol_box(v, &b);
    int64_t pst[3]; /* padded-array stride of each ORIGINAL axis */
    int64_t est[3] = {1, g->pd[0], g->pd[0] * g->pd[1]};
    int64_t off = 0;
    for (int k = 0; k < 3; k++) {
        pst[g->ax[k]] = est[k];
        if (k < g->nd)
            off += est[k]; /* one voxel of padding before the crop */
    }
    int64_t cn[3];
    for (int k = 0; k < 3; k++)
        cn[g->ax[k]] = g->n[k];
    /* overlap of the crop with the stored box, in original coordinates */
    int64_t lo[3], hi[3];
    for (int k = 0; k < 3; k++) {
        lo[k] = clo[k] > b.lo[k] ? clo[k] : b.lo[k];
        hi[k] = clo[k] + cn[k] < b.lo[k] + b.n[k] ? clo[k] + cn[k] : b.lo[k] + b.n[k];
        if (hi[k] <= lo[k])
            return;
    }
    double bad;
    for (int64_t z = lo[2]; z < hi[2]; z++)
        for (int64_t y = lo[1]; y < hi[1]; y++) {
            const unsigned char *row =
                (const unsigned char *)v->data +
                ((size_t)(((z - b.lo[2]) * b.n[1] + (y - b.lo[1])) * b.n[0] + (lo[0] - b.lo[0]))) *
                    VT_SIZE[v->type];
            (void)row_to_i64(row, v->type, hi[0] - lo[0], rowbuf, &bad);
            int64_t base = off + (y - clo[1]) * pst[1] + (z - clo[2]) * pst[2];
            for (int64_t x = lo[0]; x < hi[0]; x++)
                if (rowbuf[x - lo[0]] == label)
                    dst[base + (x - clo[0]) * pst[0]] = 1;
        }
}

/* Border-corner codes of a padded crop: corner (i,j,k) covers padded voxels (i..i+1, j..j+1,
 * k..k+1 in 3D). Corner grid size n+1 on scored axes. */
static void corner_codes(const uint8_t *m, const geo *g, uint8_t *code)
{
    const int64_t c0 = g->n[0] + 1, c1 = g->n[1] + 1, c2 = g->nd == 3 ? g->n[2] + 1 : 1;
    const int64_t p0 = g->pd[0], p01 = g->pd[0] * g->pd[1];
#pragma omp parallel for schedule(static) if (c1 * c2 > 64)
    for (int64_t k = 0; k < c2; k++)
        for (int64_t j = 0; j < c1; j++) {
            const uint8_t *r00 = m + k * p01 + j * p0;
            uint8_t *out = code + (k * c1 + j) * c0;
            if (g->nd == 3) {
                const uint8_t *r10 = r00 + p0, *r01 = r00 + p01, *r11 = r00 + p01 + p0;
                for (int64_t i = 0; i < c0; i++)
                    out[i] =
                        (uint8_t)(r00[i] | r00[i + 1] << 1 | r10[i] << 2 | r10[i + 1] << 3 |
                                  r01[i] << 4 | r01[i + 1] << 5 | r11[i] << 6 | r11[i + 1] << 7);
            } else {
                const uint8_t *r10 = r00 + p0;
                for (int64_t i = 0; i < c0; i++)
                    out[i] = (uint8_t)(r00[i] | r00[i + 1] << 1 | r10[i] << 2 | r10[i + 1] << 3);
            }
        }
}

/* MedPy surface voxels (unpadded crop grid): in mask and some 4/6-neighbour outside it. */
static void medpy_surface(const uint8_t *m, const geo *g, uint8_t *s)
{
    const int64_t p0 = g->pd[0], p01 = g->pd[0] * g->pd[1];
    const int64_t n0 = g->n[0], n1 = g->n[1], n2 = g->n[2];
    const int64_t zoff = g->nd == 3 ? 1 : 0;
#pragma omp parallel for schedule(static) if (n1 * n2 > 64)
    for (int64_t k = 0; k < n2; k++)
        for (int64_t j = 0; j < n1; j++) {
            const uint8_t *c = m + (k + zoff) * p01 + (j + 1) * p0 + 1;
            uint8_t *o = s + (k * n1 + j) * n0;
            for (int64_t i = 0; i < n0; i++) {
                int in = c[i];
                int all = c[i - 1] & c[i + 1] & c[i - p0] & c[i + p0];
                if (g->nd == 3)
                    all &= c[i - p01] & c[i + p01];
                o[i] = (uint8_t)(in && !all);
            }
        }
}

/* Directed lists for one label. src/dst masks -> (d, a) for each surface element of src. */
typedef struct label_work {
    uint8_t *mp, *mr; /* padded crops */
    uint8_t *sp, *sr; /* codes (deepmind) or surface flags (medpy) */
    double *f;        /* EDT buffer */
    da *lists[2];
    double *scratch;
    int64_t *rowbuf;
} label_work;

static void work_free(label_work *w)
{
    free(w->mp);
    free(w->mr);
    free(w->sp);
    free(w->sr);
    free(w->f);
    free(w->lists[0]);
    free(w->lists[1]);
    free(w->scratch);
    free(w->rowbuf);
}

static mk_status eval_label(mk_ctx *ctx, const mk_metric_vol *p, const mk_metric_vol *r,
                            const vstat *sp, const vstat *sr, const vstat *sb, int64_t label,
                            const mk_metric_opts *o, mk_metric_result *res)
{
    int64_t np = sp ? sp->cnt[0] : 0, nr = sr ? sr->cnt[1] : 0, nb = sb ? sb->cnt[2] : 0;
    double vox_ml = fabs(r->spacing[0] * r->spacing[1] * r->spacing[2]) / 1000.0;
    mk_metric_empty e = np == 0 && nr == 0 ? MK_METRIC_EMPTY_BOTH
                        : np == 0          ? MK_METRIC_EMPTY_PRED
                        : nr == 0          ? MK_METRIC_EMPTY_REF
                                           : MK_METRIC_EMPTY_NONE;
    /* dimensionality: axes of length 1 dropped (2D when at most two axes are longer than 1) */
    geo g;
    memset(&g, 0, sizeof g);
    int nlong = 0, used[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++)
        if (r->dim[k] > 1)
            g.ax[nlong++] = k, used[k] = 1;
    g.nd = nlong == 3 ? 3 : 2;
    for (int k = 0, m = nlong; k < 3 && m < 3; k++)
        if (!used[k])
            g.ax[m++] = k;
    mk_metric_result_empty(res, label, e);
    res->ndim = g.nd;
    res->voxels_pred = np;
    res->voxels_ref = nr;
    res->voxels_both = nb;
    res->volume_pred_ml = (double)np * vox_ml;
    res->volume_ref_ml = (double)nr * vox_ml;
    mk_metric_result_both_empty(res, o->both_empty);
    if (e != MK_METRIC_EMPTY_NONE)
        return MK_OK;
    res->dice = 2.0 * (double)nb / (double)(np + nr);
    res->jaccard = (double)nb / (double)(np + nr - nb);

    /* crop = union of both boxes */
    int64_t clo[3], chi[3];
    for (int k = 0; k < 3; k++) {
        clo[k] = sp->lo[k] < sr->lo[k] ? sp->lo[k] : sr->lo[k];
        chi[k] = sp->hi[k] > sr->hi[k] ? sp->hi[k] : sr->hi[k];
    }
    for (int k = 0; k < 3; k++) {
        g.n[k] = chi[g.ax[k]] - clo[g.ax[k]] + 1;
        g.sp[k] = r->spacing[g.ax[k]];
        g.pd[k] = k < g.nd ? g.n[k] + 2 : 1;
    }
    const int dm = o->convention == MK_METRIC_DEEPMIND;
    int64_t npad = g.pd[0] * g.pd[1] * g.pd[2];
    int64_t ngrid[3]; /* grid of the surface elements: corners (deepmind) or voxels (medpy) */
    for (int k = 0; k < 3; k++)
        ngrid[k] = dm ? (k < g.nd ? g.n[k] + 1 : 1) : g.n[k];
    int64_t ng = ngrid[0] * ngrid[1] * ngrid[2];
    label_work w;
    memset(&w, 0, sizeof w);
    int64_t rowlen = r->dim[0];
    w.mp = calloc((size_t)npad, 1);
    w.mr = calloc((size_t)npad, 1);
    w.sp = malloc((size_t)ng);
    w.sr = malloc((size_t)ng);
    w.f = malloc((size_t)ng * sizeof *w.f);
    w.rowbuf = malloc((size_t)rowlen * sizeof *w.rowbuf);
    if (!w.mp || !w.mr || !w.sp || !w.sr || !w.f || !w.rowbuf) {
        work_free(&w);
        return mk_err(ctx, MK_ERR_NOMEM, "label %lld: out of memory for a %lldx%lldx%lld crop",
                      (long long)label, (long long)g.n[0], (long long)g.n[1], (long long)g.n[2]);
    }
    extract(p, label, clo, &g, w.mp, w.rowbuf);
    extract(r, label, clo, &g, w.mr, w.rowbuf);
    double table[256];
    if (dm) {
        corner_codes(w.mp, &g, w.sp);
        corner_codes(w.mr, &g, w.sr);
        if (g.nd == 3)
            mk_metric_surfel_areas_3d(g.sp, table);
        else
            mk_metric_contour_lengths_2d(g.sp, table);
    } else {
        medpy_surface(w.mp, &g, w.sp);
        medpy_surface(w.mr, &g, w.sr);
    }
    const int full = g.nd == 3 ? 255 : 15;
    /* counts of surface elements */
    int64_t cnt[2] = {0, 0};
    const uint8_t *surf[2] = {w.sr, w.sp}; /* REF2PRED source = ref */
    for (int d = 0; d < 2; d++)
        for (int64_t i = 0; i < ng; i++)
            cnt[d] += dm ? (surf[d][i] != 0 && surf[d][i] != full) : surf[d][i] != 0;
    mk_status st = MK_OK;
    for (int d = 0; d < 2 && st == MK_OK; d++) {
        w.lists[d] = malloc((size_t)(cnt[d] > 0 ? cnt[d] : 1) * sizeof(da));
        if (!w.lists[d])
            st = mk_err(ctx, MK_ERR_NOMEM, "label %lld: out of memory for %lld surface elements",
                        (long long)label, (long long)cnt[d]);
    }
    int64_t cmax = cnt[0] > cnt[1] ? cnt[0] : cnt[1];
    if (st == MK_OK && !(w.scratch = malloc((size_t)(cmax > 0 ? cmax : 1) * sizeof(double))))
        st = mk_err(ctx, MK_ERR_NOMEM, "label %lld: out of memory", (long long)label);
    for (int d = 0; d < 2 && st == MK_OK; d++) {
        const uint8_t *src = surf[d], *tgt = surf[1 - d];
        for (int64_t i = 0; i < ng; i++) {
            int b = dm ? (tgt[i] != 0 && tgt[i] != full) : tgt[i] != 0;
            w.f[i] = b ? 0.0 : INFINITY;
        }
        st = mk_metric_edt_sq(ctx, w.f, ngrid, g.sp);
        if (st != MK_OK)
            break;
        int64_t m = 0;
        for (int64_t i = 0; i < ng; i++) {
            int b = dm ? (src[i] != 0 && src[i] != full) : src[i] != 0;
            if (!b)
                continue;
            w.lists[d][m].d = sqrt(w.f[i]);
            w.lists[d][m].a = dm ? table[src[i]] : 1.0;
            m++;
        }
        MK_ASSERT(m == cnt[d] && m > 0);
    }
    if (st != MK_OK) {
        work_free(&w);
        return st;
    }
    double sum_da[2], sum_a[2];
    for (int d = 0; d < 2; d++) {
        reduce_dir(w.lists[d], cnt[d], o, &res->dir_hd[d], &res->dir_hd95[d], &sum_da[d], &sum_a[d],
                   &res->surface_within[d], w.scratch);
        res->surface[d] = sum_a[d];
        res->dir_mean[d] = sum_da[d] / sum_a[d];
    }
    res->hd = fmax(res->dir_hd[0], res->dir_hd[1]);
    res->masd = 0.5 * (res->dir_mean[0] + res->dir_mean[1]);
    res->assd = (sum_da[0] + sum_da[1]) / (sum_a[0] + sum_a[1]);
    res->surface_dice = (res->surface_within[0] + res->surface_within[1]) / (sum_a[0] + sum_a[1]);
    if (dm) {
        res->hd95 = fmax(res->dir_hd95[0], res->dir_hd95[1]);
    } else {
        /* medpy: percentile of the union of both directed sets; its mean for assd */
        int64_t n = cnt[0] + cnt[1];
        double *u = malloc((size_t)n * sizeof *u);
        if (!u) {
            work_free(&w);
            return mk_err(ctx, MK_ERR_NOMEM, "label %lld: out of memory", (long long)label);
        }
        /* merge two sorted lists (pred->ref first, as medpy concatenates) */
        int64_t i = 0, j = 0, k = 0;
        const da *A = w.lists[1], *B = w.lists[0];
        while (i < cnt[1] || j < cnt[0])
            u[k++] = (j >= cnt[0] || (i < cnt[1] && A[i].d <= B[j].d)) ? A[i++].d : B[j++].d;
        res->hd95 = mk_metric_percentile_sorted(u, n, o->percentile);
        for (i = 0; i < cnt[1]; i++)
            u[i] = A[i].d;
        for (j = 0; j < cnt[0]; j++)
            u[cnt[1] + j] = B[j].d;
        res->assd = mk_metric_pairwise_sum(u, n) / (double)n;
        free(u);
    }
    work_free(&w);
    return MK_OK;
}

mk_status mk_metric_eval(mk_ctx *ctx, const mk_metric_vol *pred, const mk_metric_vol *ref,
                         const int64_t *labels, int nlabels, const mk_metric_opts *opts,
                         mk_metric_result *out)
{
    mk_metric_opts def;
    if (!opts) {
        mk_metric_opts_default(&def);
        opts = &def;
    }
    if (!(opts->tolerance_mm >= 0) || !(opts->percentile >= 0 && opts->percentile <= 100) ||
        (int)opts->both_empty < 0 || opts->both_empty >= MK_METRIC_BOTH_COUNT)
        return mk_err(ctx, MK_ERR_INVALID,
                      "metrics: tolerance must be >= 0, percentile in [0,100] and the both-empty "
                      "policy one or nan");
    vtable t = {0};
    mk_status st = scan_all(ctx, pred, ref, &t);
    if (st != MK_OK) {
        free(t.e);
        return st;
    }
    /* lookups are read-only from here; vt_get on a missing key would insert, so find first */
    const vstat **ls = calloc((size_t)(nlabels > 0 ? nlabels : 1), sizeof *ls);
    if (!ls) {
        free(t.e);
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < nlabels; i++) {
        ls[i] = NULL;
        if (t.cap == 0)
            continue;
        uint64_t h = hash64(labels[i]) & (uint64_t)(t.cap - 1);
        while (t.e[h].used && t.e[h].key != labels[i])
            h = (h + 1) & (uint64_t)(t.cap - 1);
        if (t.e[h].used)
            ls[i] = &t.e[h];
    }
    mk_status *sts = calloc((size_t)(nlabels > 0 ? nlabels : 1), sizeof *sts);
    mk_ctx *ctxs = calloc((size_t)(nlabels > 0 ? nlabels : 1), sizeof *ctxs);
    if (!sts || !ctxs) {
        free(sts);
        free(ctxs);
        free(ls);
        free(t.e);
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    }
#pragma omp parallel for schedule(dynamic, 1) if (nlabels > 1)
    for (int i = 0; i < nlabels; i++) {
        mk_ctx_init(&ctxs[i]);
        const vstat *s = ls[i];
        const vstat *spred = s && s->cnt[0] ? s : NULL, *sref = s && s->cnt[1] ? s : NULL;
        /* the vstat box is the union over both volumes, which is the crop we want */
        sts[i] = eval_label(&ctxs[i], pred, ref, spred, sref, s, labels[i], opts, &out[i]);
    }
    st = MK_OK;
    for (int i = 0; i < nlabels; i++)
        if (sts[i] != MK_OK) {
            st = mk_err(ctx, sts[i], "%s", mk_ctx_errmsg(&ctxs[i]));
            break;
        }
    free(sts);
    free(ctxs);
    free(ls);
    free(t.e);
    return st;
}
