/* Training data for the stages: manifest rows -> normalised, cropped 2D slices (see mk_stages.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_fs.h"
#include "io/mk_manifest.h"
#include "io/mk_resample.h"
#include "mk_stages.h"
#include "stage_internal.h"
#include "nn/mk_tensor.h"

/* mk_data_defaults: stages/params.c (from the [data] parameter rows) */

/* ---------------------------------------------------------------- class / label mapping */

mk_status mk_data_check_labels(mk_ctx *ctx, const mk_data_params *p)
{
    if (p->classes < 2 || p->classes > MK_MAX_CLASSES)
        return mk_err(ctx, MK_ERR_INVALID,
                      "data.classes: expected 2..%d classes (background "
                      "included), got %d",
                      MK_MAX_CLASSES, p->classes);
    if (p->nlabels == 0) {
        if (p->classes == 2 && (p->label < 1 || p->label > 255))
            return mk_err(ctx, MK_ERR_INVALID,
                          "data.label: expected a label value in 1..255, "
                          "got %d",
                          p->label);
        return MK_OK;
    }
    if (p->nlabels != p->classes - 1)
        return mk_err(ctx, MK_ERR_INVALID,
                      "data.labels: expected %d label values (one per "
                      "class after the background, classes = %d), got %d",
                      p->classes - 1, p->classes, p->nlabels);
    for (int j = 0; j < p->nlabels; j++) {
        int v = p->label_values[j];
        if (v < 1 || v > 255)
            return mk_err(ctx, MK_ERR_INVALID,
                          "data.labels: expected label values in 1..255 "
                          "(0 is the background), got %d for class %d",
                          v, j + 1);
        if (j > 0 && v <= p->label_values[j - 1])
            return mk_err(ctx, MK_ERR_INVALID,
                          "data.labels: expected strictly ascending label "
                          "values, got %d after %d",
                          v, p->label_values[j - 1]);
    }
    return MK_OK;
}

int mk_data_nstructures(const mk_data_params *p)
{
    return p->classes > 1 ? p->classes - 1 : 0;
}

int mk_data_value_of_class(const mk_data_params *p, int c)
{
    if (c < 1 || c >= p->classes)
        return 0;
    if (p->nlabels > 0)
        return c <= p->nlabels ? p->label_values[c - 1] : 0;
    return p->classes == 2 ? p->label : c;
}

int mk_data_class_of_value(const mk_data_params *p, long long v)
{
    if (v < 1)
        return 0;
    for (int c = 1; c < p->classes; c++)
        if (mk_data_value_of_class(p, c) == v)
            return c;
    return 0;
}

const char *mk_data_class_name(const mk_data_params *p, int c, char *buf, size_t n)
{
    if (c >= 1 && c <= p->nlabels && c <= MK_MAX_CLASSES && p->label_names[c - 1][0])
        return p->label_names[c - 1];
    snprintf(buf, n, "label_%d", mk_data_value_of_class(p, c));
    return buf;
}

/* ---------------------------------------------------------------- geometry */

int mk_data_axis(const mk_data_params *p)
{
    if (p->slice_axis >= 0 && p->slice_axis < 3)
        return p->slice_axis;
    /* axial: across S-I, coronal: across A-P, sagittal: across R-L */
    static const char *const letters[3] = {"SI", "AP", "RL"};
    const char *want = letters[p->slice_axis >= 3 && p->slice_axis <= 5 ? p->slice_axis - 3 : 0];
    const char *o = p->orientation ? p->orientation : "RAS";
    for (int a = 0; a < 3 && o[a]; a++)
        if (o[a] == want[0] || o[a] == want[1])
            return a;
    return 2;
}

static int anatomical(const mk_data_params *p)
{
    return p->slice_axis >= 3;
}

static int resamples(const mk_data_params *p)
{
    return p->spacing[0] > 0 || p->spacing[1] > 0 || p->spacing[2] > 0;
}

int mk_data_transforms(const mk_data_params *p)
{
    return anatomical(p) || resamples(p);
}

mk_status mk_data_prepare(mk_ctx *ctx, const mk_data_params *p, const mk_image *img, int is_label,
                          mk_image **out)
{
    *out = NULL;
    mk_image *cur = NULL;
    mk_status st = anatomical(p)
                       ? mk_reorient(ctx, img, p->orientation ? p->orientation : "RAS", &cur)
                       : mk_image_clone(ctx, img, &cur);
    if (st != MK_OK)
        return st;
    if (resamples(p)) {
        double sp[3];
        int same = 1;
        for (int a = 0; a < 3; a++) {
            sp[a] = p->spacing[a] > 0 ? p->spacing[a] : cur->geom.spacing[a];
            same &= fabs(sp[a] - cur->geom.spacing[a]) <= 1e-6 * cur->geom.spacing[a];
        }
        if (!same) {
            mk_image *rs = NULL;
            st = mk_resample_spacing(ctx, cur, sp, is_label ? MK_INTERP_LABEL : MK_INTERP_LINEAR,
                                     &rs);
            mk_image_free(cur);
            if (st != MK_OK)
                return st;
            cur = rs;
        }
    }
    *out = cur;
    return MK_OK;
}

mk_status mk_data_restore(mk_ctx *ctx, const mk_data_params *p, const mk_image *work,
                          const mk_image *orig, mk_image **out)
{
    *out = NULL;
    if (!resamples(p)) /* the same voxels in another axis order: exact, orig's header */
        return mk_reorient_to(ctx, work, orig, out);
    /* resampled: the label of the working voxel nearest to each original voxel centre */
    return mk_resample_like(ctx, work, orig, MK_INTERP_NEAREST, out);
}

/* ---------------------------------------------------------------- manifest */

static int is_json_path(const char *path)
{
    size_t n = strlen(path);
    return n >= 5 && strcmp(path + n - 5, ".json") == 0;
}

typedef struct holdout_key {
    uint64_t key;
    int row;
} holdout_key;

static int cmp_key(const void *a, const void *b)
{
    const holdout_key *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key ? 1 : x->row - y->row;
}

static mk_status hold_out(mk_ctx *ctx, const mk_data_params *p, mk_manifest *m)
{
    for (int r = 0; r < m->nrows; r++)
        if (!strcmp(m->rows[r].split, "val"))
            return MK_OK; /* the manifest has its own validation split */
    if (!(p->val_fraction > 0))
        return MK_OK;
    holdout_key *k = malloc((size_t)(m->nrows + 1) * sizeof *k);
    if (!k)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", m->source);
    for (int r = 0; r < m->nrows; r++) {
        const char *mod = m->rows[r].modality;
        int seen = 0; /* each modality once, at its first row */
        for (int q = 0; q < r && !seen; q++)
            seen = !strcmp(m->rows[q].modality, mod);
        if (seen)
            continue;
        int n = 0;
        for (int q = 0; q < m->nrows; q++) {
            const mk_manifest_row *w = &m->rows[q];
            if (!strcmp(w->modality, mod) && !strcmp(w->split, "train") && w->label_path) {
                /* by the id's hash: the choice does not depend on the row order */
                uint64_t h =
                    mk_fnv1a(MK_FNV1A_OFFSET ^ (uint64_t)p->split_seed, w->id, strlen(w->id));
                k[n++] = (holdout_key){mk__seed(h, (uint64_t)p->split_seed), q};
            }
        }
        int nval = (int)llround(p->val_fraction * n);
        if (nval < 1 && n >= 2)
            nval = 1;
        if (nval > n - 1)
            nval = n - 1;
        qsort(k, (size_t)n, sizeof *k, cmp_key);
        for (int i = 0; i < nval; i++) {
            mk_manifest_row *w = &m->rows[k[i].row];
            char *v = strdup("val");
            if (!v) {
                free(k);
                return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", m->source);
            }
            free(w->split);
            w->split = v;
        }
    }
    free(k);
    return MK_OK;
}

mk_status mk_data_manifest(mk_ctx *ctx, const mk_data_params *p, mk_manifest **out)
{
    *out = NULL;
    const char *path = p->manifest;
    mk_status st;
    if (!path || !path[0])
        return mk_err(ctx, MK_ERR_INVALID, "data.manifest: expected a manifest, got none");
    if (mk_fs_is_dir(path))
        st = mk_manifest_import_nnunet(ctx, path, out);
    else if (is_json_path(path)) {
        char dir[4096];
        mk_fs_dirname(path, dir, sizeof dir);
        st = mk_manifest_import_nnunet(ctx, dir, out);
    } else
        st = mk_manifest_read(ctx, path, out);
    if (st != MK_OK)
        return st;
    if (p->case_table && p->case_table[0])
        st = mk_manifest_apply_table(ctx, *out, p->case_table);
    if (st == MK_OK)
        st = hold_out(ctx, p, *out);
    if (st != MK_OK) {
        mk_manifest_free(*out);
        *out = NULL;
    }
    return st;
}

void mk_slices_free(mk_slices *s)
{
    if (!s)
        return;
    free(s->img);
    free(s->lab);
    free(s->img2);
    free(s->ew);
    free(s->eh);
    free(s->present);
    memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------- volumes */

mk_status mk__norm_init(mk_ctx *ctx, const mk_data_params *p, const mk_image *img, int is_ct,
                        mk__norm *n)
{
    memset(n, 0, sizeof *n);
    n->is_ct = is_ct;
    if (is_ct) {
        n->lo = p->ct_window[0];
        n->hi = p->ct_window[1];
        if (!(n->hi > n->lo))
            return mk_err(ctx, MK_ERR_INVALID, "data.ct_window: expected low < high, got [%g, %g]",
                          n->lo, n->hi);
        return MK_OK;
    }
    int64_t nv = mk_image_nvox(img);
    if (p->mri_norm == MK_MRI_MINMAX) {
        double lo, hi;
        mk_image_value_range(img, &lo, &hi);
        n->a = hi > lo ? 2.0 / (hi - lo) : 0;
        n->b = -1.0 - lo * n->a;
    } else {
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < nv; i++) {
            double v = mk_image_get(img, i);
            s += v;
            s2 += v * v;
        }
        double mean = s / (double)nv, var = s2 / (double)nv - mean * mean;
        double sd = var > 0 ? sqrt(var) : 0;
        n->a = sd > 0 ? 1.0 / (3.0 * sd) : 0;
        n->b = -mean * n->a;
    }
    return MK_OK;
}

mk_status mk_data_normalise(mk_ctx *ctx, const mk_data_params *p, const mk_image *img, int is_ct,
                            float *out)
{
    mk__norm n;
    mk_status st = mk__norm_init(ctx, p, img, is_ct, &n);
    int64_t nv = mk_image_nvox(img);
    for (int64_t i = 0; st == MK_OK && i < nv; i++)
        out[i] = mk__norm_apply(&n, mk_image_get(img, i));
    return st;
}

float mk__norm_pad(const mk__norm *n, const mk_image *img)
{
    if (n->is_ct)
        return -1.0f; /* the window maps everything to [-1, 1]: -1 is the minimum's place */
    double lo, hi;    /* MRI: the volume's minimum, normalised (the map is non-decreasing) */
    mk_image_value_range(img, &lo, &hi);
    return mk__norm_apply(n, lo);
}

/* in-plane axes (u lower, v higher) of slicing axis a */
static void plane_axes(int a, int *u, int *v)
{
    *u = a == 0 ? 1 : 0;
    *v = a == 2 ? 1 : 2;
}

static int64_t vox_index(const int64_t *dim, int axis, int64_t s, int64_t uu, int64_t vv)
{
    int64_t c[3];
    int u, v;
    plane_axes(axis, &u, &v);
    c[axis] = s;
    c[u] = uu;
    c[v] = vv;
    return c[0] + dim[0] * (c[1] + dim[1] * c[2]);
}

void mk_data_cut(const float *vol, const int64_t *dim, int axis, int64_t s, int64_t u0, int64_t v0,
                 int pw, int ph, float pad, float *out)
{
    int u, v;
    plane_axes(axis, &u, &v);
    for (int y = 0; y < ph; y++) {
        int64_t vv = v0 + y;
        for (int x = 0; x < pw; x++) {
            int64_t uu = u0 + x;
            int in = uu >= 0 && uu < dim[u] && vv >= 0 && vv < dim[v];
            out[(int64_t)y * pw + x] = in ? vol[vox_index(dim, axis, s, uu, vv)] : pad;
        }
    }
}

void mk__cut_image(const mk_image *img, const mk__norm *n, int axis, int64_t s, int64_t u0,
                   int64_t v0, int pw, int ph, float pad, float *out)
{
    int u, v;
    plane_axes(axis, &u, &v);
    const int64_t *dim = img->dim;
    for (int y = 0; y < ph; y++) {
        int64_t vv = v0 + y;
        for (int x = 0; x < pw; x++) {
            int64_t uu = u0 + x;
            int in = uu >= 0 && uu < dim[u] && vv >= 0 && vv < dim[v];
            out[(int64_t)y * pw + x] =
                in ? mk__norm_apply(n, mk_image_get(img, vox_index(dim, axis, s, uu, vv))) : pad;
        }
    }
}

static int64_t clamp64(int64_t x, int64_t lo, int64_t hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* crop start along one axis of extent d for a window of size p around centre c, shifted so that
 * [fmin, fmax] (fmin > fmax: none) is inside when it fits */
static int64_t crop_start(int64_t d, int p, int64_t c, int64_t fmin, int64_t fmax)
{
    int64_t s = d >= p ? clamp64(c - p / 2, 0, d - p) : (d - p) / 2;
    if (fmin <= fmax) {
        if (s < fmax - p + 1)
            s = fmax - p + 1;
        if (s > fmin)
            s = fmin;
    }
    return s;
}

/* Slices as they are cut, each of its own size (w x h): the centred sampler's are all the
 * patch plus the jitter; the random sampler's are a volume's body extent (at least the patch). */
typedef struct growbuf {
    float *img, *img2;
    int32_t *lab;
    int64_t *off;      /* start of slice i in img/lab/img2 */
    int32_t *sw, *sh;  /* its size */
    float *pad, *pad2; /* the value outside the volume */
    uint16_t *present; /* bit c: class c appears in the slice */
    uint8_t *fg;
    int64_t n, cap, len, lcap; /* slices, and pixels held (len of lcap) */
} growbuf;

static void growbuf_free(growbuf *b)
{
    free(b->img);
    free(b->img2);
    free(b->lab);
    free(b->off);
    free(b->sw);
    free(b->sh);
    free(b->pad);
    free(b->pad2);
    free(b->present);
    free(b->fg);
    memset(b, 0, sizeof *b);
}

#define GROW(ptr, n)                                                                               \
    do {                                                                                           \
        void *q_ = realloc((ptr), (size_t)(n) * sizeof *(ptr));                                    \
        if (!q_)                                                                                   \
            return -1;                                                                             \
        (ptr) = q_;                                                                                \
    } while (0)

/* room for one more slice of `plane` pixels */
static int grow(growbuf *b, int64_t plane, int with_lab, int with_img2)
{
    if (b->n == b->cap) {
        int64_t cap = b->cap ? 2 * b->cap : 64;
        GROW(b->off, cap);
        GROW(b->sw, cap);
        GROW(b->sh, cap);
        GROW(b->pad, cap);
        GROW(b->pad2, cap);
        GROW(b->present, cap);
        GROW(b->fg, cap);
        b->cap = cap;
    }
    if (b->len + plane > b->lcap) {
        int64_t lcap = b->lcap ? 2 * b->lcap : 64 * plane;
        while (lcap < b->len + plane)
            lcap *= 2;
        GROW(b->img, lcap);
        if (with_img2)
            GROW(b->img2, lcap);
        if (with_lab)
            GROW(b->lab, lcap);
        b->lcap = lcap;
    }
    return 0;
}

/* Cut slice s (window at u0, v0 of pw x ph) of the normalised volume(s) into b. */
static mk_status push_slice(mk_ctx *ctx, growbuf *b, const int64_t *dim, int axis, int64_t s,
                            int64_t u0, int64_t v0, int pw, int ph, const float *vol,
                            const float *vol2, const int32_t *lv, float pad, float pad2)
{
    int u, v;
    plane_axes(axis, &u, &v);
    int64_t plane = (int64_t)pw * ph;
    if (grow(b, plane, lv != NULL, vol2 != NULL) != 0)
        return mk_err(ctx, MK_ERR_NOMEM, "data: out of memory for slices");
    int64_t o = b->len;
    mk_data_cut(vol, dim, axis, s, u0, v0, pw, ph, pad, b->img + o);
    if (vol2) /* outside the volume: the paired image's own minimum, as for MRI */
        mk_data_cut(vol2, dim, axis, s, u0, v0, pw, ph, pad2, b->img2 + o);
    uint16_t present = 0;
    if (lv) {
        int32_t *q = b->lab + o;
        for (int y = 0; y < ph; y++)
            for (int x = 0; x < pw; x++) {
                int64_t uu = u0 + x, vv = v0 + y;
                int in = uu >= 0 && uu < dim[u] && vv >= 0 && vv < dim[v];
                int32_t c = in ? lv[vox_index(dim, axis, s, uu, vv)] : 0;
                q[y * pw + x] = c;
                present |= (uint16_t)(c > 0 ? 1u << c : 0);
            }
    }
    b->off[b->n] = o;
    b->sw[b->n] = pw;
    b->sh[b->n] = ph;
    b->pad[b->n] = pad;
    b->pad2[b->n] = pad2;
    b->present[b->n] = present;
    b->fg[b->n] = present != 0;
    b->n++;
    b->len += plane;
    return MK_OK;
}

/* Cut every body slice of one volume into b; img2 (the paired image, on img's grid; may be
 * NULL) is normalised as MRI and cut with img's crops. */
static mk_status add_volume(mk_ctx *ctx, const mk_data_params *p, const mk_image *img,
                            const mk_image *lab, const mk_image *img2, int is_ct, growbuf *b)
{
    int32_t cls[256]; /* class of each label-file value 0..255; every other value: 0 */
    for (int val = 0; val < 256; val++)
        cls[val] = mk_data_class_of_value(p, val);
    int64_t nv = mk_image_nvox(img);
    const int64_t *dim = img->dim;
    int centred = p->sampler == MK_SAMPLER_CENTRED;
    int axis = mk_data_axis(p), u, v, jit = centred ? p->crop_jitter : 0;
    int pw = p->patch[0] + 2 * jit, ph = p->patch[1] + 2 * jit;
    plane_axes(axis, &u, &v);
    float *vol = malloc((size_t)nv * sizeof *vol);
    float *vol2 = img2 ? malloc((size_t)nv * sizeof *vol2) : NULL;
    int32_t *lv = lab ? malloc((size_t)nv * sizeof *lv) : NULL;
    if (!vol || (lab && !lv) || (img2 && !vol2)) {
        free(vol);
        free(vol2);
        free(lv);
        return mk_err(ctx, MK_ERR_NOMEM, "data: out of memory for a volume of %lld voxels",
                      (long long)nv);
    }
    mk_status st = mk_data_normalise(ctx, p, img, is_ct, vol);
    if (st == MK_OK && img2)
        st = mk_data_normalise(ctx, p, img2, 0, vol2);
    /* body: raw value above -500 HU (CT) or above 10% of the range (MRI) */
    double lo = 0, hi = 0, thr;
    mk_image_value_range(img, &lo, &hi);
    thr = is_ct ? -500.0 : lo + 0.1 * (hi - lo);
    float pad = mk__pad_value(vol, nv, is_ct), pad2 = vol2 ? mk__pad_value(vol2, nv, 0) : 0;
    int64_t bmin[3] = {INT64_MAX, INT64_MAX, INT64_MAX}, bmax[3] = {-1, -1, -1};
    for (int64_t k = 0, i = 0; k < dim[2]; k++)
        for (int64_t j = 0; j < dim[1]; j++)
            for (int64_t x = 0; x < dim[0]; x++, i++) {
                if (lv) {
                    long long lval = llround(mk_image_get(lab, i));
                    lv[i] = lval >= 0 && lval < 256 ? cls[lval] : 0;
                }
                if (mk_image_get(img, i) > thr) {
                    int64_t c[3] = {x, j, k};
                    for (int a = 0; a < 3; a++) {
                        if (c[a] < bmin[a])
                            bmin[a] = c[a];
                        if (c[a] > bmax[a])
                            bmax[a] = c[a];
                    }
                }
            }
    /* random sampler: the whole body extent of the volume (the same window on every slice),
     * centred on it when smaller than the patch */
    int64_t eu = bmax[u] - bmin[u] + 1, ev = bmax[v] - bmin[v] + 1;
    int ew = (int)(eu > pw ? eu : pw), eh = (int)(ev > ph ? ev : ph);
    int64_t ru0 = bmin[u] - (ew - eu) / 2, rv0 = bmin[v] - (eh - ev) / 2;
    for (int64_t s = 0; st == MK_OK && bmax[0] >= 0 && s < dim[axis]; s++) {
        if (s < bmin[axis] || s > bmax[axis])
            continue; /* no body in this slice */
        if (!centred) {
            st = push_slice(ctx, b, dim, axis, s, ru0, rv0, ew, eh, vol, vol2, lv, pad, pad2);
            continue;
        }
        int64_t fu0 = INT64_MAX, fu1 = -1, fv0 = INT64_MAX, fv1 = -1;
        for (int64_t vv = 0; lv && vv < dim[v]; vv++)
            for (int64_t uu = 0; uu < dim[u]; uu++)
                if (lv[vox_index(dim, axis, s, uu, vv)]) {
                    fu0 = uu < fu0 ? uu : fu0;
                    fu1 = uu > fu1 ? uu : fu1;
                    fv0 = vv < fv0 ? vv : fv0;
                    fv1 = vv > fv1 ? vv : fv1;
                }
        int64_t u0 = crop_start(dim[u], pw, (bmin[u] + bmax[u] + 1) / 2, fu0, fu1);
        int64_t v0 = crop_start(dim[v], ph, (bmin[v] + bmax[v] + 1) / 2, fv0, fv1);
        st = push_slice(ctx, b, dim, axis, s, u0, v0, pw, ph, vol, vol2, lv, pad, pad2);
    }
    free(vol);
    free(vol2);
    free(lv);
    return st;
}

/* A random voxel of class c in slice i's body extent: its position (x, y) (slices.present[i]
 * says c is there). */
static void pick_voxel(const mk_slices *s, int64_t i, int c, mk_rng *r, int *px, int *py)
{
    const int32_t *lab = s->lab + i * (int64_t)s->cw * s->ch;
    int64_t cnt = 0;
    for (int y = 0; y < s->eh[i]; y++)
        for (int x = 0; x < s->ew[i]; x++)
            cnt += lab[(int64_t)y * s->cw + x] == c;
    int64_t k = cnt > 0 ? (int64_t)mk_rng_below(r, (uint64_t)cnt) : 0;
    *px = 0;
    *py = 0;
    for (int y = 0; y < s->eh[i]; y++)
        for (int x = 0; x < s->ew[i]; x++)
            if (lab[(int64_t)y * s->cw + x] == c && k-- == 0) {
                *px = x;
                *py = y;
                return;
            }
}

static int clampi(int x, int lo, int hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

void mk_slices_pick(const mk_slices *s, mk_rng *r, int b, int batch, int64_t *slice, int *oxp,
                    int *oyp)
{
    int64_t i;
    int ox = 0, oy = 0;
    /* sampler random: the last round(batch x fg_share) samples of a batch are centred on a
     * structure voxel (nnU-Net's rule), drawn from the slices that hold one */
    int nforced = s->random && s->lab && s->n_fg > 0 ? (int)lround(batch * s->fg_share) : 0;
    if (!s->random) {
        i = (int64_t)mk_rng_below(r, (uint64_t)s->n);
        if (s->cw > s->w || s->ch > s->h) { /* random crop (no extra draws without jitter) */
            ox = (int)mk_rng_below(r, (uint64_t)(s->cw - s->w + 1));
            oy = (int)mk_rng_below(r, (uint64_t)(s->ch - s->h + 1));
        }
    } else if (b >= batch - nforced) {
        /* the k-th slice holding a structure, then one of its classes, then one voxel */
        int64_t k = (int64_t)mk_rng_below(r, (uint64_t)s->n_fg);
        for (i = 0; i < s->n - 1; i++)
            if (s->present[i] && k-- == 0)
                break;
        int cls[MK_MAX_CLASSES], nc = 0;
        for (int c = 1; c < MK_MAX_CLASSES; c++)
            if (s->present[i] & (1u << c))
                cls[nc++] = c;
        int c = nc > 0 ? cls[mk_rng_below(r, (uint64_t)nc)] : 1, px, py;
        pick_voxel(s, i, c, r, &px, &py);
        ox = clampi(px - s->w / 2, 0, s->ew[i] - s->w);
        oy = clampi(py - s->h / 2, 0, s->eh[i] - s->h);
    } else {
        i = (int64_t)mk_rng_below(r, (uint64_t)s->n);
        ox = (int)mk_rng_below(r, (uint64_t)(s->ew[i] - s->w + 1));
        oy = (int)mk_rng_below(r, (uint64_t)(s->eh[i] - s->h + 1));
    }
    *slice = i;
    *oxp = ox;
    *oyp = oy;
}

void mk_slices_sample(const mk_slices *s, mk_rng *r, int b, int batch, float *x, int32_t *y,
                      float *x2)
{
    int64_t i;
    int ox, oy;
    mk_slices_pick(s, r, b, batch, &i, &ox, &oy);
    mk_slices_crop(s, i, ox, oy, x, y, x2);
}

void mk_slices_crop_plane(const mk_slices *s, const float *canvas, int64_t i, int ox, int oy,
                          float *out)
{
    MK_ASSERT(ox >= 0 && oy >= 0 && ox + s->w <= s->cw && oy + s->h <= s->ch && i >= 0 && i < s->n);
    int64_t plane = (int64_t)s->cw * s->ch;
    for (int r = 0; r < s->h; r++)
        memcpy(out + (int64_t)r * s->w, canvas + i * plane + (int64_t)(oy + r) * s->cw + ox,
               (size_t)s->w * sizeof *out);
}

void mk_slices_crop(const mk_slices *s, int64_t i, int ox, int oy, float *x, int32_t *y, float *x2)
{
    MK_ASSERT(ox >= 0 && oy >= 0 && ox + s->w <= s->cw && oy + s->h <= s->ch && i >= 0 && i < s->n);
    int64_t plane = (int64_t)s->cw * s->ch;
    for (int r = 0; r < s->h; r++) {
        int64_t src = i * plane + (int64_t)(oy + r) * s->cw + ox;
        memcpy(x + (int64_t)r * s->w, s->img + src, (size_t)s->w * sizeof *x);
        if (y && s->lab)
            memcpy(y + (int64_t)r * s->w, s->lab + src, (size_t)s->w * sizeof *y);
        if (x2 && s->img2)
            memcpy(x2 + (int64_t)r * s->w, s->img2 + src, (size_t)s->w * sizeof *x2);
    }
}

/* Read one image of a manifest row; errors name the manifest line and column. */
float mk__pad_value(const float *vol, int64_t n, int is_ct)
{
    float pad = is_ct ? -1.0f : vol[0];
    for (int64_t i = 0; i < n; i++)
        if (vol[i] < pad)
            pad = vol[i];
    return pad;
}

static mk_status read_image(mk_ctx *ctx, const char *path, const char *manifest, int line,
                            const char *field, mk_image **out)
{
    mk_status st = mk_io_read_image(ctx, path, out);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "%s:%d: column %s", manifest, line, field);
    if ((*out)->ndim > 3 && ((*out)->dim[3] > 1 || (*out)->dim[4] > 1)) {
        int nd = (*out)->ndim;
        mk_image_free(*out);
        *out = NULL;
        return mk_err(ctx, MK_ERR_UNSUPPORTED,
                      "%s:%d: column %s: %s: expected a 2D or 3D image, "
                      "got %d dimensions",
                      manifest, line, field, path, nd);
    }
    return MK_OK;
}

mk_status mk_data_read_paired(mk_ctx *ctx, const mk_manifest *m, const mk_manifest_row *row,
                              int col, const mk_image *ref, mk_image **out)
{
    *out = NULL;
    const char *name = m->extra_names[col], *v = row->extra[col];
    char path[4096];
    if (!v[0])
        return mk_err(ctx, MK_ERR_FORMAT,
                      "%s:%d: column %s: expected the paired image of case "
                      "'%s', got an empty field",
                      m->source, row->line, name, row->id);
    mk_status st = mk_fs_join(ctx, m->dir, v, path, sizeof path);
    if (st == MK_OK)
        st = read_image(ctx, path, m->source, row->line, name, out);
    if (st == MK_OK && !mk_geom_same_grid(ref, *out, 1e-4)) {
        st = mk_err(ctx, MK_ERR_GEOMETRY,
                    "%s:%d: column %s: %s: expected the image's grid "
                    "%lldx%lldx%lld, got %lldx%lldx%lld (size, spacing, origin and direction must "
                    "match %s)",
                    m->source, row->line, name, v, (long long)ref->dim[0], (long long)ref->dim[1],
                    (long long)ref->dim[2], (long long)(*out)->dim[0], (long long)(*out)->dim[1],
                    (long long)(*out)->dim[2], row->image_path);
        mk_image_free(*out);
        *out = NULL;
    }
    return st;
}

mk_status mk_data_load(mk_ctx *ctx, const mk_data_params *p, const char *modality,
                       const char *split, int need_labels, uint64_t seed, mk_slices *out)
{
    memset(out, 0, sizeof *out);
    mk_status lst = mk_data_check_labels(ctx, p);
    if (lst != MK_OK)
        return lst;
    if (p->slice_axis < 0 || p->slice_axis > 5 || p->patch[0] < 1 || p->patch[1] < 1 ||
        p->crop_jitter < 0 || p->crop_jitter > 4096)
        return mk_err(ctx, MK_ERR_INVALID,
                      "data: slice_axis %d / patch %dx%d / crop_jitter %d "
                      "out of range",
                      p->slice_axis, p->patch[0], p->patch[1], p->crop_jitter);
    mk_manifest *m = NULL;
    mk_status st = mk_data_manifest(ctx, p, &m);
    if (st != MK_OK)
        return st;
    int *rows = malloc((size_t)(m->nrows + 1) * sizeof *rows), nrows = 0;
    if (!rows)
        st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", p->manifest);
    int cap = strcmp(split, "train") == 0 && p->train_cap > 0 ? p->train_cap
              : strcmp(modality, p->ct_modality) == 0 && strcmp(split, "train") == 0 &&
                      p->ct_train_cases > 0
                  ? p->ct_train_cases
                  : m->nrows;
    /* the labelled set: the first `cap` rows (without skip_unlabelled, rows without a label count
     * and are an error with need_labels); unlabelled_rest: every row that set leaves out */
    int skip = p->skip_unlabelled || p->unlabelled_rest, counted = 0;
    for (int i = 0; st == MK_OK && i < m->nrows; i++) {
        const mk_manifest_row *r = &m->rows[i];
        if (strcmp(r->modality, modality) != 0 || strcmp(r->split, split) != 0)
            continue;
        int in_set = counted < cap && (!skip || r->label_path);
        if (in_set)
            counted++;
        if (p->unlabelled_rest ? !in_set : in_set)
            rows[nrows++] = i;
    }
    if (st == MK_OK && nrows == 0)
        st = mk_err(ctx, MK_ERR_NOT_FOUND, "%s: no rows with modality '%s' in split '%s'",
                    p->manifest, modality, split);
    int with_lab = !p->unlabelled_rest && !p->no_labels;
    for (int i = 0; st == MK_OK && with_lab && i < nrows; i++) {
        const mk_manifest_row *r = &m->rows[rows[i]];
        if (!r->label_path) {
            if (need_labels)
                st = mk_err(ctx, MK_ERR_FORMAT,
                            "%s:%d: column label: expected a label path for "
                            "%s case '%s', got an empty field",
                            p->manifest, r->line, modality, r->id);
            with_lab = 0;
        }
    }
    int is_ct = strcmp(modality, p->ct_modality) == 0;
    int pcol = -1;
    if (st == MK_OK && p->paired_column) {
        pcol = mk_manifest_extra_index(m, p->paired_column);
        if (pcol < 0)
            st = mk_err(ctx, MK_ERR_FORMAT,
                        "%s: expected a column '%s' naming each %s row's "
                        "paired image (`pipeline synth --paired` writes it), found none",
                        p->manifest, p->paired_column, modality);
    }
    growbuf b = {0};
    double spmin[3] = {INFINITY, INFINITY, INFINITY}, spmax[3] = {0, 0, 0};
    char code0[4] = "", code[4];
    int mixed = 0;
    for (int i = 0; st == MK_OK && i < nrows; i++) {
        const mk_manifest_row *r = &m->rows[rows[i]];
        mk_image *img = NULL, *lab = NULL, *img2 = NULL, *w = NULL, *wl = NULL, *w2 = NULL;
        st = read_image(ctx, r->image_path, p->manifest, r->line, "image", &img);
        if (st == MK_OK && with_lab)
            st = read_image(ctx, r->label_path, p->manifest, r->line, "label", &lab);
        if (st == MK_OK && pcol >= 0)
            st = mk_data_read_paired(ctx, m, r, pcol, img, &img2);
        char why[256];
        if (st == MK_OK && lab && !mk_geom_grid_diff(img, lab, 1e-4, why, sizeof why))
            st = mk_err(ctx, MK_ERR_GEOMETRY,
                        "%s:%d: column label: %s: expected the image's grid (%s), got another: "
                        "%s",
                        p->manifest, r->line, r->label, r->image, why);
        if (st == MK_OK) {
            mk_geom_orient_code(&img->geom, code);
            if (!code0[0])
                memcpy(code0, code, 4);
            mixed |= strcmp(code, code0) != 0;
            st = mk_data_prepare(ctx, p, img, 0, &w);
        }
        if (st == MK_OK && lab)
            st = mk_data_prepare(ctx, p, lab, 1, &wl);
        if (st == MK_OK && img2)
            st = mk_data_prepare(ctx, p, img2, 0, &w2);
        if (st != MK_OK)
            mk_err_prefix(ctx, "%s:%d: case %s", p->manifest, r->line, r->id);
        for (int a = 0; st == MK_OK && a < 3; a++) {
            spmin[a] = fmin(spmin[a], w->geom.spacing[a]);
            spmax[a] = fmax(spmax[a], w->geom.spacing[a]);
        }
        if (st == MK_OK)
            st = add_volume(ctx, p, w, wl, w2, is_ct, &b);
        mk_image_free(img);
        mk_image_free(lab);
        mk_image_free(img2);
        mk_image_free(w);
        mk_image_free(wl);
        mk_image_free(w2);
        out->volumes++;
    }
    mk_manifest_free(m);
    free(rows);
    if (st == MK_OK && mixed && !anatomical(p))
        MK_LOG_W(ctx,
                 "data: the %s volumes of split '%s' have different orientations (%s and others) "
                 "and data.slice_axis is a voxel axis: their slices are cut along different "
                 "anatomical planes (use slice_axis = \"axial\", \"coronal\" or \"sagittal\")",
                 modality, split, code0);
    for (int a = 0; st == MK_OK && a < 3; a++)
        if (!resamples(p) && spmax[a] > MK_DATA_SPACING_WARN * spmin[a]) {
            MK_LOG_W(ctx,
                     "data: the %s volumes of split '%s' differ in spacing along axis %d "
                     "(%.3g to %.3g mm, more than x%.2g) and data.spacing is not set: they are "
                     "sliced at their own scales (`pipeline plan` proposes a target spacing)",
                     modality, split, a, spmin[a], spmax[a], MK_DATA_SPACING_WARN);
            break;
        }
    /* selection: every structure slice, plus empty_ratio empty slices per structure slice */
    int64_t nfg = 0, nempty = 0;
    int cw = 0, ch = 0;
    for (int64_t i = 0; i < b.n; i++) {
        nfg += b.fg[i];
        cw = b.sw[i] > cw ? b.sw[i] : cw;
        ch = b.sh[i] > ch ? b.sh[i] : ch;
    }
    int64_t plane = (int64_t)cw * ch;
    nempty = b.n - nfg;
    int64_t keep_empty = with_lab ? (int64_t)llround(p->empty_ratio * (double)nfg) : nempty;
    if (keep_empty > nempty || (with_lab && nfg == 0))
        keep_empty = nempty; /* no structure anywhere: keep every body slice */
    if (st == MK_OK && b.n == 0)
        st = mk_err(ctx, MK_ERR_NOT_FOUND, "%s: the %s volumes of split '%s' hold no body slices",
                    p->manifest, modality, split);
    uint8_t *keep = st == MK_OK ? calloc((size_t)b.n, 1) : NULL;
    int64_t *emp = st == MK_OK ? malloc((size_t)(nempty + 1) * sizeof *emp) : NULL;
    if (st == MK_OK && (!keep || !emp))
        st = mk_err(ctx, MK_ERR_NOMEM, "data: out of memory");
    int random = p->sampler != MK_SAMPLER_CENTRED;
    if (st == MK_OK) {
        int64_t ne = 0;
        for (int64_t i = 0; i < b.n; i++) {
            if (b.fg[i])
                keep[i] = 1;
            else
                emp[ne++] = i;
        }
        mk_rng r;
        mk_rng_seed(&r, seed);
        mk_rng_shuffle(&r, emp, ne);
        for (int64_t i = 0; i < keep_empty; i++)
            keep[emp[i]] = 1;
        int64_t n = nfg + keep_empty, o = 0;
        if (plane > 0 && (double)n * (double)plane * 12.0 > 64.0 * 1024 * 1024 * 1024)
            st = mk_err(ctx, MK_ERR_NOMEM,
                        "data: %lld training slices of %dx%d would need more than 64 GiB (set "
                        "data.spacing to a coarser target spacing)",
                        (long long)n, cw, ch);
        if (st == MK_OK) {
            out->img = malloc((size_t)(n * plane) * sizeof *out->img);
            out->lab = with_lab ? malloc((size_t)(n * plane) * sizeof *out->lab) : NULL;
            out->img2 = pcol >= 0 ? malloc((size_t)(n * plane) * sizeof *out->img2) : NULL;
            if (random) {
                out->ew = malloc((size_t)(n + 1) * sizeof *out->ew);
                out->eh = malloc((size_t)(n + 1) * sizeof *out->eh);
                out->present = malloc((size_t)(n + 1) * sizeof *out->present);
            }
            if (!out->img || (with_lab && !out->lab) || (pcol >= 0 && !out->img2) ||
                (random && (!out->ew || !out->eh || !out->present)))
                st = mk_err(ctx, MK_ERR_NOMEM, "data: out of memory");
        }
        uint16_t all = 0;
        for (int64_t i = 0; st == MK_OK && i < b.n; i++) {
            if (!keep[i])
                continue;
            /* slice i at the canvas' top-left corner, padding to its right and below */
            int sw = b.sw[i], sh = b.sh[i];
            for (int y = 0; y < ch; y++) {
                float *di = out->img + o * plane + (int64_t)y * cw;
                const float *si = b.img + b.off[i] + (int64_t)y * sw;
                for (int x = 0; x < cw; x++)
                    di[x] = y < sh && x < sw ? si[x] : b.pad[i];
                if (with_lab) {
                    int32_t *dl = out->lab + o * plane + (int64_t)y * cw;
                    const int32_t *sl = b.lab + b.off[i] + (int64_t)y * sw;
                    for (int x = 0; x < cw; x++)
                        dl[x] = y < sh && x < sw ? sl[x] : 0;
                }
                if (out->img2) {
                    float *d2 = out->img2 + o * plane + (int64_t)y * cw;
                    const float *s2 = b.img2 + b.off[i] + (int64_t)y * sw;
                    for (int x = 0; x < cw; x++)
                        d2[x] = y < sh && x < sw ? s2[x] : b.pad2[i];
                }
            }
            if (random) {
                out->ew[o] = sw;
                out->eh[o] = sh;
                out->present[o] = b.present[i];
            }
            all |= b.present[i];
            o++;
        }
        out->n = n;
        out->h = p->patch[1];
        out->w = p->patch[0];
        out->ch = ch;
        out->cw = cw;
        out->n_fg = with_lab ? nfg : 0;
        out->random = random;
        out->fg_share = p->foreground_share;
        char nb[48];
        for (int c = 1; st == MK_OK && with_lab && c < p->classes; c++)
            if (!(all & (1u << c)))
                MK_LOG_W(ctx,
                         "data: no %s training slice of split '%s' holds structure %s (label "
                         "%d): the network cannot learn it",
                         modality, split, mk_data_class_name(p, c, nb, sizeof nb),
                         mk_data_value_of_class(p, c));
    }
    free(keep);
    free(emp);
    growbuf_free(&b);
    if (st != MK_OK) {
        int vols = out->volumes;
        mk_slices_free(out);
        out->volumes = vols;
    }
    return st;
}
