/* `pipeline eval`: score predicted label images against reference label images.
 *
 * P and R are both files or both folders. Folders pair image files by case id: the file name
 * without .nii/.nii.gz/.hdr/.mha/.mhd/.nrrd/.nhdr (read with mk_io_read_image); a name left
 * unpaired is retried without an nnU-Net channel suffix "_0000" (4 digits). Unpaired files are
 * listed (stdout, reports) and do not stop the run; no pair at all is an error. Each image is read,
 * cut down to the box of its non-zero voxels and the full buffer released before the next read, so
 * memory stays near one image plus the objects. Grids must agree (shape, spacing to 1e-4 relative,
 * origin/direction to 1e-4 x max spacing) unless --resample-to-ref maps the prediction onto the
 * reference grid (nearest neighbour).
 *
 * Outputs (--out, --json, --csv) go through the atomic writers of core/mk_fs.h: "-" (or
 * /dev/stdout) is standard output, and then the table normally printed there is left out so that
 * the stream holds the report alone; at most one output may go there. */
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "../io/mk_image.h"
#include "../io/mk_resample.h"
#include "../metrics/mk_metrics.h"
#include "../pipeline/mk_mpi.h"
#include "../report/mk_report.h"
#include "mk_verbs.h"

#ifndef MK_VERSION
#define MK_VERSION "unknown"
#endif

/* Default --max-labels: the label values a mask may hold (1..255, docs/config.md data.labels),
 * far above any atlas in use (AAL3: 170, TotalSegmentator: 117) and far below the thousands of
 * values of an intensity image. */
#define MK_EVAL_MAX_LABELS 255

/* An image reduced to its non-zero box: header kept (geometry), voxels only inside the box. */
typedef struct boxed {
    mk_image *hdr; /* data == NULL after boxing */
    mk_metric_vol vol;
    void *box;
} boxed;

static void boxed_free(boxed *b)
{
    mk_image_free(b->hdr);
    free(b->box);
    memset(b, 0, sizeof *b);
}

static int row_nonzero(const unsigned char *p, size_t n)
{
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, 32);
        if (w[0] | w[1] | w[2] | w[3])
            return 1;
    }
    for (; i < n; i++)
        if (p[i])
            return 1;
    return 0;
}

/* Take ownership of img and reduce it to the box of its non-zero voxels. */
static mk_status make_boxed(mk_ctx *ctx, const char *path, mk_image *img, boxed *out)
{
    memset(out, 0, sizeof *out);
    out->hdr = img;
    mk_metric_vtype vt;
    if (!mk_report_vtype_of(img->dtype, &vt))
        return mk_err(ctx, MK_ERR_UNSUPPORTED,
                      "%s: datatype %s: expected an integer or float label image", path,
                      mk_dtype_name(img->dtype));
    for (int k = 3; k < MK_IMAGE_MAX_DIMS; k++)
        if (img->dim[k] != 1)
            return mk_err(ctx, MK_ERR_UNSUPPORTED,
                          "%s: dim[%d] = %lld: expected a 2D/3D label image (4th+ dims of 1)", path,
                          k + 1, (long long)img->dim[k]);
    const int64_t nx = img->dim[0], ny = img->dim[1], nz = img->dim[2];
    const size_t es = mk_dtype_size(img->dtype), rowb = (size_t)nx * es;
    int64_t lo[3] = {nx, ny, nz}, hi[3] = {-1, -1, -1};
    const unsigned char *d = img->data;
#pragma omp parallel
    {
        int64_t tlo[3] = {nx, ny, nz}, thi[3] = {-1, -1, -1};
#pragma omp for schedule(static)
        for (int64_t z = 0; z < nz; z++)
            for (int64_t y = 0; y < ny; y++) {
                const unsigned char *row = d + (size_t)(z * ny + y) * rowb;
                if (!row_nonzero(row, rowb))
                    continue;
                int64_t x0 = 0, x1 = nx - 1;
                while (!row_nonzero(row + (size_t)x0 * es, es))
                    x0++;
                while (!row_nonzero(row + (size_t)x1 * es, es))
                    x1--;
                if (x0 < tlo[0])
                    tlo[0] = x0;
                if (x1 > thi[0])
                    thi[0] = x1;
                if (y < tlo[1])
                    tlo[1] = y;
                if (y > thi[1])
                    thi[1] = y;
                if (z < tlo[2])
                    tlo[2] = z;
                if (z > thi[2])
                    thi[2] = z;
            }
#pragma omp critical(mk_eval_box)
        for (int k = 0; k < 3; k++) {
            if (tlo[k] < lo[k])
                lo[k] = tlo[k];
            if (thi[k] > hi[k])
                hi[k] = thi[k];
        }
    }
    mk_metric_vol *v = &out->vol;
    v->type = vt;
    v->name = path;
    for (int k = 0; k < 3; k++) {
        v->dim[k] = img->dim[k];
        v->spacing[k] = img->geom.spacing[k];
    }
    /* spacing = |pixdim[1..3]| as stored (docs/metrics.md), also pixdim[3] of a 2D NIfTI (used for
     * volumes only); the affine's column norms only when the file has no pixdim */
    if (img->nifti.present)
        for (int k = 0; k < 3; k++) {
            double pd = fabs(img->nifti.pixdim[k + 1]);
            if (!(pd > 0) || !isfinite(pd))
                continue;
            if (k < img->ndim &&
                fabs(pd - img->geom.spacing[k]) > 1e-4 * fmax(pd, img->geom.spacing[k]))
                MK_LOG_W(ctx,
                         "%s: |pixdim[%d]| = %g disagrees with the affine's column norm %g; using "
                         "pixdim",
                         path, k + 1, pd, img->geom.spacing[k]);
            v->spacing[k] = pd;
        }
    if (hi[0] < 0) {
        /* all zero: an empty box (box_dim 0 on axis 1, 2 marks "stored box" of no voxels) */
        v->box_dim[0] = 1;
        v->box_dim[1] = v->box_dim[2] = 0;
        free(img->data);
        img->data = NULL;
        v->data = NULL;
        return MK_OK;
    }
    int64_t bn[3];
    for (int k = 0; k < 3; k++) {
        bn[k] = hi[k] - lo[k] + 1;
        v->box_lo[k] = lo[k];
        v->box_dim[k] = bn[k];
    }
    out->box = malloc((size_t)(bn[0] * bn[1] * bn[2]) * es);
    if (!out->box)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    unsigned char *b = out->box;
    for (int64_t z = 0; z < bn[2]; z++)
        for (int64_t y = 0; y < bn[1]; y++)
            memcpy(b + (size_t)(z * bn[1] + y) * (size_t)bn[0] * es,
                   d + ((size_t)((z + lo[2]) * ny + (y + lo[1])) * (size_t)nx + (size_t)lo[0]) * es,
                   (size_t)bn[0] * es);
    free(img->data);
    img->data = NULL;
    v->data = out->box;
    return MK_OK;
}

/* ---------------------------------------------------------------- case listing */

static int nifti_stem(const char *name, char *stem, size_t n)
{
    static const char *const ext[] = {".nii.gz", ".nii", ".hdr.gz", ".hdr",
                                      ".mha",    ".mhd", ".nrrd",   ".nhdr"};
    size_t l = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t e = strlen(ext[i]);
        if (l > e && strcmp(name + l - e, ext[i]) == 0) {
            if (l - e >= n)
                return 0;
            memcpy(stem, name, l - e);
            stem[l - e] = '\0';
            return 1;
        }
    }
    return 0;
}

typedef struct entry {
    char *name, *stem;
    int used;
} entry;

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

static void entries_free(entry *e, int n)
{
    for (int i = 0; i < n; i++) {
        free(e[i].name);
        free(e[i].stem);
    }
    free(e);
}

static mk_status list_dir(mk_ctx *ctx, const char *dir, entry **out, int *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot open folder", dir);
    entry *e = NULL;
    int ne = 0, cap = 0;
    struct dirent *de;
    mk_status st = MK_OK;
    while ((de = readdir(d))) {
        char stem[1024];
        if (de->d_name[0] == '.' || !nifti_stem(de->d_name, stem, sizeof stem))
            continue;
        if (ne == cap) {
            cap = cap ? cap * 2 : 32;
            entry *ne2 = realloc(e, (size_t)cap * sizeof *e);
            if (!ne2) {
                st = mk_err(ctx, MK_ERR_NOMEM, "out of memory listing %s", dir);
                break;
            }
            e = ne2;
        }
        e[ne].name = strdup(de->d_name);
        e[ne].stem = strdup(stem);
        e[ne].used = 0;
        if (!e[ne].name || !e[ne].stem) {
            free(e[ne].name);
            free(e[ne].stem);
            st = mk_err(ctx, MK_ERR_NOMEM, "out of memory listing %s", dir);
            break;
        }
        ne++;
    }
    closedir(d);
    if (st != MK_OK) {
        entries_free(e, ne);
        return st;
    }
    if (ne > 1)
        qsort(e, (size_t)ne, sizeof *e, cmp_entry);
    *out = e;
    *n = ne;
    return MK_OK;
}

/* stem without an nnU-Net channel suffix "_DDDD" into buf; 0 if there is none */
static int strip_channel(const char *stem, char *buf, size_t n)
{
    size_t l = strlen(stem);
    if (l < 6 || stem[l - 5] != '_')
        return 0;
    for (size_t i = l - 4; i < l; i++)
        if (!isdigit((unsigned char)stem[i]))
            return 0;
    if (l - 5 >= n)
        return 0;
    memcpy(buf, stem, l - 5);
    buf[l - 5] = '\0';
    return 1;
}

typedef struct pair {
    char *id, *pred, *ref;
} pair;

static char *join_path(const char *dir, const char *name)
{
    size_t l = strlen(dir) + strlen(name) + 2;
    char *p = malloc(l);
    if (p)
        snprintf(p, l, "%s/%s", dir, name);
    return p;
}

static mk_status make_pairs(mk_ctx *ctx, const char *pdir, const char *rdir, pair **pairs,
                            int *npairs, mk_eval_report *rep)
{
    entry *pe = NULL, *re = NULL;
    int np = 0, nr = 0;
    mk_status st = list_dir(ctx, pdir, &pe, &np);
    if (st == MK_OK)
        st = list_dir(ctx, rdir, &re, &nr);
    pair *pr = calloc((size_t)(np > 0 ? np : 1), sizeof *pr);
    int n = 0;
    if (st == MK_OK && !pr)
        st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    /* pass 0: exact stems; pass 1: stems without a channel suffix */
    for (int pass = 0; pass < 2 && st == MK_OK; pass++)
        for (int i = 0; i < np && st == MK_OK; i++) {
            if (pe[i].used)
                continue;
            char a[1024];
            const char *ka = pe[i].stem;
            if (pass == 1 && strip_channel(pe[i].stem, a, sizeof a))
                ka = a;
            for (int j = 0; j < nr; j++) {
                if (re[j].used)
                    continue;
                char b[1024];
                const char *kb = re[j].stem;
                if (pass == 1 && strip_channel(re[j].stem, b, sizeof b))
                    kb = b;
                if (strcmp(ka, kb) != 0)
                    continue;
                pe[i].used = re[j].used = 1;
                pr[n].id = strdup(ka);
                pr[n].pred = join_path(pdir, pe[i].name);
                pr[n].ref = join_path(rdir, re[j].name);
                n++;
                if (!pr[n - 1].id || !pr[n - 1].pred || !pr[n - 1].ref)
                    st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
                break;
            }
        }
    if (st == MK_OK) {
        rep->unpaired_pred = calloc((size_t)(np > 0 ? np : 1), sizeof(char *));
        rep->unpaired_ref = calloc((size_t)(nr > 0 ? nr : 1), sizeof(char *));
        if (!rep->unpaired_pred || !rep->unpaired_ref)
            st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
        for (int i = 0; i < np && st == MK_OK; i++)
            if (!pe[i].used)
                rep->unpaired_pred[rep->nunpaired_pred++] = join_path(pdir, pe[i].name);
        for (int j = 0; j < nr && st == MK_OK; j++)
            if (!re[j].used)
                rep->unpaired_ref[rep->nunpaired_ref++] = join_path(rdir, re[j].name);
    }
    if (st == MK_OK && n == 0)
        st = mk_err(
            ctx, MK_ERR_INVALID,
            "no case pairs: %s has %d image file(s) and %s has %d, with no case id in common "
            "(ids are file names without .nii/.nii.gz/.mha/.nrrd, nnU-Net channel suffix _0000 "
            "optional)",
            pdir, np, rdir, nr);
    entries_free(pe, np);
    entries_free(re, nr);
    if (st != MK_OK) {
        for (int i = 0; i < n; i++) {
            free(pr[i].id);
            free(pr[i].pred);
            free(pr[i].ref);
        }
        free(pr);
        return st;
    }
    *pairs = pr;
    *npairs = n;
    return MK_OK;
}

/* ---------------------------------------------------------------- one case */

/* What makes an image a label map (--max-labels, --force). */
typedef struct label_check {
    long long max_labels; /* distinct non-zero values allowed */
    int force;            /* 1: more are only a warning */
} label_check;

/* Refuse an image that is no label map before anything is scored: non-integral values (an
 * intensity image or a probability map) always, more distinct non-zero values than
 * lc->max_labels unless lc->force. */
static mk_status check_label_map(mk_ctx *ctx, const char *path, const mk_metric_vol *v,
                                 const label_check *lc)
{
    mk_metric_census c;
    mk_status st = mk_metric_label_census(ctx, v, &c);
    if (st != MK_OK)
        return st;
    const int many = c.n_distinct > lc->max_labels;
    char cnt[64];
    if (c.n_distinct > MK_METRIC_MAX_DISTINCT)
        snprintf(cnt, sizeof cnt, "more than %d distinct non-zero values", MK_METRIC_MAX_DISTINCT);
    else
        snprintf(cnt, sizeof cnt, "%lld distinct non-zero value%s", (long long)c.n_distinct,
                 c.n_distinct == 1 ? "" : "s");
    if (!c.n_nonint) {
        if (!many)
            return MK_OK;
        if (lc->force) {
            MK_LOG_W(ctx, "%s: %s, more than --max-labels %lld: scored anyway (--force)", path, cnt,
                     lc->max_labels);
            return MK_OK;
        }
        return mk_err(ctx, MK_ERR_INVALID,
                      "%s: not a label map: %s (expected at most %lld integer labels; "
                      "--max-labels N raises the limit, --force scores anyway)",
                      path, cnt, lc->max_labels);
    }
    return mk_err(ctx, MK_ERR_INVALID,
                  "%s: not a label map: %s, non-integer values present in %lld voxel%s (voxel "
                  "(%lld,%lld,%lld) = %.9g is not an integer) (expected at most %lld integer "
                  "labels: an intensity image or a probability map cannot be scored%s)",
                  path, cnt, (long long)c.n_nonint, c.n_nonint == 1 ? "" : "s",
                  (long long)c.bad_voxel[0], (long long)c.bad_voxel[1], (long long)c.bad_voxel[2],
                  c.bad_value, lc->max_labels,
                  lc->force ? ", also with --force" : "; threshold or argmax it first");
}

static mk_status read_boxed(mk_ctx *ctx, const char *path, const label_check *lc, boxed *out)
{
    mk_image *img = NULL;
    mk_status st = mk_io_read_image(ctx, path, &img);
    if (st != MK_OK)
        return st;
    st = make_boxed(ctx, path, img, out);
    if (st == MK_OK)
        st = check_label_map(ctx, path, &out->vol, lc);
    if (st != MK_OK)
        boxed_free(out);
    return st;
}

static mk_status eval_case(mk_ctx *ctx, const pair *pr, const int64_t *labels, int nlabels,
                           int resample, const label_check *lc, const mk_metric_opts *o,
                           mk_eval_case *out, int64_t **case_labels, int *ncase_labels)
{
    boxed bp, br;
    memset(&bp, 0, sizeof bp);
    memset(&br, 0, sizeof br);
    mk_status st = read_boxed(ctx, pr->pred, lc, &bp);
    if (st == MK_OK)
        st = read_boxed(ctx, pr->ref, lc, &br);
    char why[256];
    if (st == MK_OK && !mk_geom_grid_diff(bp.hdr, br.hdr, 1e-4, why, sizeof why)) {
        if (!resample) {
            st = mk_err(ctx, MK_ERR_GEOMETRY,
                        "grids differ: pred %s vs ref %s: %s (use --resample-to-ref)", pr->pred,
                        pr->ref, why);
        } else {
            MK_LOG_W(ctx, "%s: resampled onto the grid of %s (nearest neighbour): %s", pr->pred,
                     pr->ref, why);
            boxed_free(&bp);
            mk_image *src = NULL, *rs = NULL, *refh = NULL;
            st = mk_io_read_image(ctx, pr->pred, &src);
            if (st == MK_OK)
                st = mk_io_read_header(ctx, pr->ref, &refh);
            if (st == MK_OK)
                st = mk_resample_like_ex(ctx, src, refh, MK_INTERP_NEAREST, MK_OUTSIDE_ZERO, &rs);
            mk_image_free(src);
            mk_image_free(refh);
            if (st == MK_OK) {
                st = make_boxed(ctx, pr->pred, rs, &bp);
                if (st != MK_OK)
                    boxed_free(&bp);
            }
        }
    }
    int64_t *labs = NULL;
    int nl = nlabels;
    if (st == MK_OK) {
        if (labels) {
            labs = malloc((size_t)(nl > 0 ? nl : 1) * sizeof *labs);
            if (!labs)
                st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
            else
                memcpy(labs, labels, (size_t)nl * sizeof *labs);
        } else {
            st = mk_metric_find_labels(ctx, &bp.vol, &br.vol, &labs, &nl);
        }
    }
    if (st == MK_OK) {
        out->res = calloc((size_t)(nl > 0 ? nl : 1), sizeof *out->res);
        if (!out->res)
            st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    }
    if (st == MK_OK) {
        st = mk_metric_eval(ctx, &bp.vol, &br.vol, labs, nl, o, out->res);
        if (st != MK_OK)
            mk_err_prefix(ctx, "case %s", pr->id);
    }
    boxed_free(&bp);
    boxed_free(&br);
    if (st != MK_OK) {
        free(labs);
        free(out->res);
        out->res = NULL;
        return st;
    }
    *case_labels = labs;
    *ncase_labels = nl;
    return MK_OK;
}

/* ---------------------------------------------------------------- MPI */

typedef struct pack {
    char *p;
    size_t n, cap;
    int oom;
} pack;

static void pack_put(pack *b, const void *v, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 4096) + n;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, v, n);
    b->n += n;
}

/* Reads n bytes at *off of a rank's buffer; 0 when it is shorter (a damaged gather). */
static int pack_get(const char *buf, size_t len, size_t *off, void *v, size_t n)
{
    if (len - *off < n)
        return 0;
    memcpy(v, buf + *off, n);
    *off += n;
    return 1;
}

/* Under MPI every rank scored the cases i with i % P == its rank (st: its own outcome). Rank 0
 * gathers the others' results (the metric results are plain numbers: the same binary on every
 * rank) into rep.cases, clabs and nclabs, so what follows is one process's report; a rank's
 * failure becomes rank 0's error, naming the rank. A collective: every rank calls it. */
static mk_status merge_ranks(mk_ctx *ctx, mk_eval_report *rep, int npairs, int64_t **clabs,
                             int *nclabs, mk_status st)
{
    int P = mk_mpi_size(), R = mk_mpi_rank();
    pack b = {0};
    int32_t head[3] = {(int32_t)st, 0, 0};
    const char *msg = st == MK_OK ? "" : mk_ctx_errmsg(ctx);
    head[1] = (int32_t)strlen(msg);
    int own = 0;
    for (int i = R; i < npairs && st == MK_OK; i += P)
        own++;
    head[2] = own;
    pack_put(&b, head, sizeof head);
    pack_put(&b, msg, (size_t)head[1]);
    for (int i = R; i < npairs && st == MK_OK; i += P) {
        int32_t ci[2] = {i, nclabs[i]};
        pack_put(&b, ci, sizeof ci);
        pack_put(&b, clabs[i], (size_t)nclabs[i] * sizeof(int64_t));
        pack_put(&b, rep->cases[i].res, (size_t)nclabs[i] * sizeof(mk_metric_result));
    }
    if (b.oom) /* still takes part in the gather, with an empty share */
        b.n = 0;
    char *all = NULL;
    size_t *counts = NULL;
    mk_status gs = mk_mpi_gather_bytes(ctx, b.p, b.n, &all, &counts);
    free(b.p);
    if (b.oom && st == MK_OK)
        st = mk_err(ctx, MK_ERR_NOMEM, "out of memory (rank %d's results)", R);
    if (gs != MK_OK && st == MK_OK)
        st = gs;
    if (R != 0)
        return st;
    size_t base = 0;
    for (int r = 0; r < P && st == MK_OK; base += counts[r], r++) {
        const char *buf = all + base;
        size_t len = counts[r], off = 0;
        int32_t h[3];
        if (!pack_get(buf, len, &off, h, sizeof h) || h[1] < 0 || (size_t)h[1] > len - off) {
            st = mk_err(ctx, MK_ERR_IO, "rank %d sent no results (it ran out of memory)", r);
            break;
        }
        if (h[0] != MK_OK) {
            st = mk_err(ctx, (mk_status)h[0], "%.*s (rank %d of %d)", h[1], buf + off, r, P);
            break;
        }
        off += (size_t)h[1];
        for (int k = 0; k < h[2] && st == MK_OK && r > 0; k++) {
            int32_t ci[2];
            if (!pack_get(buf, len, &off, ci, sizeof ci) || ci[0] < 0 || ci[0] >= npairs ||
                ci[1] < 0 || (size_t)ci[1] > len) {
                st = mk_err(ctx, MK_ERR_IO, "rank %d's results are damaged", r);
                break;
            }
            int i = ci[0], nl = ci[1];
            clabs[i] = malloc((size_t)(nl > 0 ? nl : 1) * sizeof(int64_t));
            rep->cases[i].res = calloc((size_t)(nl > 0 ? nl : 1), sizeof(mk_metric_result));
            if (!clabs[i] || !rep->cases[i].res) {
                st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
                break;
            }
            nclabs[i] = nl;
            if (!pack_get(buf, len, &off, clabs[i], (size_t)nl * sizeof(int64_t)) ||
                !pack_get(buf, len, &off, rep->cases[i].res, (size_t)nl * sizeof(mk_metric_result)))
                st = mk_err(ctx, MK_ERR_IO, "rank %d's results are damaged", r);
        }
    }
    free(all);
    free(counts);
    if (st == MK_OK)
        rep->ncases = npairs;
    return st;
}

/* ---------------------------------------------------------------- verb */

static mk_status parse_labels(mk_ctx *ctx, const char *s, int64_t **out, int *n)
{
    int cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    int64_t *l = malloc((size_t)cap * sizeof *l);
    if (!l)
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    int k = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || (*end && *end != ',') || v == 0) {
            free(l);
            return mk_err(
                ctx, MK_ERR_USAGE,
                "--labels: expected a comma-separated list of non-zero integers, got '%s'", s);
        }
        for (int i = 0; i < k; i++)
            if (l[i] == v) {
                free(l);
                return mk_err(ctx, MK_ERR_USAGE, "--labels: label %lld listed twice", v);
            }
        l[k++] = v;
        p = *end ? end + 1 : end;
    }
    if (k == 0) {
        free(l);
        return mk_err(ctx, MK_ERR_USAGE, "--labels: empty list");
    }
    *out = l;
    *n = k;
    return MK_OK;
}

static char *command_line(int argc, char **argv)
{
    size_t n = strlen("pipeline") + 1;
    for (int i = 0; i < argc; i++)
        n += strlen(argv[i]) * 4 + 3;
    char *s = malloc(n);
    if (!s)
        return NULL;
    strcpy(s, "pipeline");
    char *w = s + strlen(s);
    for (int i = 0; i < argc; i++) {
        *w++ = ' ';
        int q = argv[i][0] == '\0' || strpbrk(argv[i], " \t\"'\\$") != NULL;
        if (q)
            *w++ = '\'';
        for (const char *c = argv[i]; *c; c++) {
            if (q && *c == '\'') {
                memcpy(w, "'\\''", 4);
                w += 4;
            } else {
                *w++ = *c;
            }
        }
        if (q)
            *w++ = '\'';
    }
    *w = '\0';
    return s;
}

static int64_t *union_labels(const int64_t *a, int na, const int64_t *b, int nb, int *n)
{
    int64_t *u = malloc((size_t)(na + nb > 0 ? na + nb : 1) * sizeof *u);
    if (!u)
        return NULL;
    int k = 0;
    for (int i = 0; i < na; i++)
        u[k++] = a[i];
    for (int j = 0; j < nb; j++) {
        int dup = 0;
        for (int i = 0; i < na; i++)
            dup |= a[i] == b[j];
        if (!dup)
            u[k++] = b[j];
    }
    /* ascending */
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && u[j - 1] > u[j]; j--) {
            int64_t t = u[j];
            u[j] = u[j - 1];
            u[j - 1] = t;
        }
    *n = k;
    return u;
}

static void print_num(double v)
{
    if (isnan(v))
        printf(" %9s", "nan");
    else if (isinf(v))
        printf(" %9s", "inf");
    else
        printf(" %9.4f", v);
}

mk_status mk_verb_eval(mk_cli *cli, int argc, char **argv)
{
    mk_ctx *ctx = cli->ctx;
    const char *pred = NULL, *ref = NULL, *out_h5 = NULL, *out_json = NULL, *out_csv = NULL;
    const char *names_file = NULL;
    int64_t *labels = NULL;
    int nlabels = 0, resample = 0;
    mk_metric_opts o;
    mk_metric_opts_default(&o);
    o.both_empty = MK_METRIC_BOTH_NAN; /* nnU-Net's rule (docs/metrics.md) */
    label_check lc = {MK_EVAL_MAX_LABELS, 0};
    mk_status st = MK_OK;
    mk_args a;
    mk_args_init(&a, argc, argv);
    while (st == MK_OK && mk_args_next(&a)) {
        const char **dst = mk_args_is(&a, "--pred")   ? &pred
                           : mk_args_is(&a, "--ref")  ? &ref
                           : mk_args_is(&a, "--out")  ? &out_h5
                           : mk_args_is(&a, "--json") ? &out_json
                           : mk_args_is(&a, "--csv")  ? &out_csv
                                                      : NULL;
        if (dst) {
            if (!(*dst = mk_args_value(&a)))
                st = mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--labels")) {
            const char *v = mk_args_value(&a);
            if (!v)
                st = mk_args_missing(&a, ctx);
            else {
                free(labels);
                labels = NULL;
                st = parse_labels(ctx, v, &labels, &nlabels);
            }
        } else if (mk_args_is(&a, "--tolerance-mm")) {
            const char *v = mk_args_value(&a);
            st = v ? mk_args_double(ctx, "--tolerance-mm", v, 0.0, 1e6, &o.tolerance_mm)
                   : mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--convention")) {
            const char *v = mk_args_value(&a);
            st = v ? mk_metric_conv_parse(ctx, v, &o.convention) : mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--label-names")) {
            if (!(names_file = mk_args_value(&a)))
                st = mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--both-empty")) {
            const char *v = mk_args_value(&a);
            st = v ? mk_metric_both_empty_parse(ctx, v, &o.both_empty) : mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--max-labels")) {
            const char *v = mk_args_value(&a);
            st = v ? mk_args_int(ctx, "--max-labels", v, 1, MK_METRIC_MAX_DISTINCT, &lc.max_labels)
                   : mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--force")) {
            lc.force = 1;
        } else if (mk_args_is(&a, "--resample-to-ref")) {
            resample = 1;
        } else {
            st = mk_args_unknown(&a, ctx);
        }
    }
    if (st == MK_OK && (!pred || !ref))
        st = mk_err(ctx, MK_ERR_USAGE,
                    "eval: --pred and --ref are required (see 'pipeline help eval')");
    int to_stdout = mk_fs_is_stdout(out_h5) + mk_fs_is_stdout(out_json) + mk_fs_is_stdout(out_csv);
    if (st == MK_OK && to_stdout > 1)
        st = mk_err(ctx, MK_ERR_USAGE,
                    "eval: only one of --out, --json and --csv may be '-' (standard output)");
    mk_eval_report rep;
    memset(&rep, 0, sizeof rep);
    /* the names file first: a malformed one fails before any image is read */
    mk_report_label_names ln;
    memset(&ln, 0, sizeof ln);
    char **lnames = NULL;
    if (st == MK_OK && names_file)
        st = mk_report_label_names_read(ctx, names_file, &ln);
    pair *pairs = NULL;
    int npairs = 0;
    if (st == MK_OK) {
        int pd = mk_fs_is_dir(pred), rd = mk_fs_is_dir(ref);
        if (pd != rd) {
            st = mk_err(ctx, MK_ERR_USAGE,
                        "eval: --pred %s and --ref %s must both be files or both be folders", pred,
                        ref);
        } else if (pd) {
            st = make_pairs(ctx, pred, ref, &pairs, &npairs, &rep);
        } else {
            pairs = calloc(1, sizeof *pairs);
            char stem[1024];
            const char *base = strrchr(pred, '/');
            base = base ? base + 1 : pred;
            if (!pairs)
                st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
            else {
                npairs = 1;
                pairs[0].id = strdup(nifti_stem(base, stem, sizeof stem) ? stem : base);
                pairs[0].pred = strdup(pred);
                pairs[0].ref = strdup(ref);
                if (!pairs[0].id || !pairs[0].pred || !pairs[0].ref)
                    st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
            }
        }
    }
    int64_t **clabs = NULL;
    int *nclabs = NULL;
    if (st == MK_OK) {
        rep.cases = calloc((size_t)npairs, sizeof *rep.cases);
        clabs = calloc((size_t)npairs, sizeof *clabs);
        nclabs = calloc((size_t)npairs, sizeof *nclabs);
        if (!rep.cases || !clabs || !nclabs)
            st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < rep.nunpaired_pred; i++)
        MK_LOG_W(ctx, "unpaired prediction (no reference with its case id): %s",
                 rep.unpaired_pred[i]);
    for (int i = 0; i < rep.nunpaired_ref; i++)
        MK_LOG_W(ctx, "unpaired reference (no prediction with its case id): %s",
                 rep.unpaired_ref[i]);
    /* under MPI rank r scores the cases r, r + P, ... and rank 0 writes the one report */
    const int ranks = mk_mpi_size(), rank = mk_mpi_rank();
    char *cmd = NULL;
    if (ranks > 1 && rank != 0) {
        ctx->progress = NULL;
        ctx->log_level = MK_LOG_ERROR; /* rank 0 says the warnings once */
    }
    for (int i = 0; i < npairs && st == MK_OK; i++) {
        mk_eval_case *c = &rep.cases[i];
        c->id = pairs[i].id;
        c->pred = pairs[i].pred;
        c->ref = pairs[i].ref;
        pairs[i].id = pairs[i].pred = pairs[i].ref = NULL;
        rep.ncases = i + 1;
        if (i % ranks != rank)
            continue;
        pair cur = {c->id, c->pred, c->ref};
        st = eval_case(ctx, &cur, labels, nlabels, resample, &lc, &o, c, &clabs[i], &nclabs[i]);
        mk_progress(ctx, "eval", i + 1, npairs, "case", c->id);
    }
    if (ranks > 1 && rep.cases) {
        st = merge_ranks(ctx, &rep, npairs, clabs, nclabs, st);
        if (rank != 0)
            goto done; /* rank 0 writes the report */
    }
    /* the report's label set: --labels, or the union over cases; absent labels are both-empty */
    if (st == MK_OK) {
        int64_t *u = NULL;
        int nu = 0;
        if (labels) {
            u = malloc((size_t)nlabels * sizeof *u);
            if (u) {
                memcpy(u, labels, (size_t)nlabels * sizeof *u);
                nu = nlabels;
            }
        } else {
            u = malloc(sizeof *u);
            for (int i = 0; i < rep.ncases && u; i++) {
                int nn;
                int64_t *t = union_labels(u, nu, clabs[i], nclabs[i], &nn);
                free(u);
                u = t;
                nu = nn;
            }
        }
        if (!u)
            st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
        for (int i = 0; i < rep.ncases && st == MK_OK; i++) {
            mk_metric_result *full = calloc((size_t)(nu > 0 ? nu : 1), sizeof *full);
            if (!full) {
                st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
                break;
            }
            for (int j = 0; j < nu; j++) {
                mk_metric_result_empty(&full[j], u[j], MK_METRIC_EMPTY_BOTH);
                mk_metric_result_both_empty(&full[j], o.both_empty);
                for (int k = 0; k < nclabs[i]; k++)
                    if (clabs[i][k] == u[j])
                        full[j] = rep.cases[i].res[k];
            }
            free(rep.cases[i].res);
            rep.cases[i].res = full;
        }
        rep.labels = u;
        rep.nlabels = nu;
    }
    if (st == MK_OK) {
        for (int j = 0; j < rep.nlabels; j++) {
            int seen = 0;
            for (int i = 0; i < rep.ncases; i++)
                seen |= rep.cases[i].res[j].empty != MK_METRIC_EMPTY_BOTH;
            if (!seen)
                MK_LOG_W(ctx,
                         "label %lld is present in no prediction and no reference: scored as "
                         "both-empty (%s) in every case",
                         (long long)rep.labels[j],
                         o.both_empty == MK_METRIC_BOTH_NAN
                             ? "NaN, left out of the summaries: --both-empty nan"
                             : "dice 1, distances 0: --both-empty one");
        }
        if (rep.nlabels == 0)
            MK_LOG_W(ctx, "every image is all zero: no label to score");
    }
    /* structure names: the file's, "label_<value>" (the evaluate stage's rule) for the others */
    if (st == MK_OK && names_file) {
        lnames = calloc((size_t)(rep.nlabels > 0 ? rep.nlabels : 1), sizeof *lnames);
        char missing[256] = "";
        size_t mw = 0;
        int nmissing = 0;
        for (int j = 0; j < rep.nlabels && lnames; j++) {
            const char *nm = mk_report_label_names_find(&ln, rep.labels[j]);
            char def[32];
            if (!nm) {
                snprintf(def, sizeof def, "label_%lld", (long long)rep.labels[j]);
                if (nmissing < 8)
                    mw += (size_t)snprintf(missing + mw, sizeof missing - mw, "%s%lld",
                                           nmissing ? ", " : "", (long long)rep.labels[j]);
                else if (nmissing == 8)
                    mw += (size_t)snprintf(missing + mw, sizeof missing - mw, ", ...");
                nmissing++;
            }
            if (!(lnames[j] = strdup(nm ? nm : def)))
                st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
        }
        if (!lnames)
            st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
        if (st == MK_OK && nmissing)
            MK_LOG_W(ctx, "%s names no structure for %d scored label(s) (%s): named label_<value>",
                     names_file, nmissing, missing);
        if (st == MK_OK)
            rep.label_names = (const char *const *)lnames;
    }
    if (st == MK_OK) {
        rep.version = MK_VERSION;
        cmd = command_line(argc, argv);
        rep.command_line = cmd ? cmd : "";
        rep.convention = o.convention;
        rep.tolerance_mm = o.tolerance_mm;
        rep.percentile = o.percentile;
        rep.both_empty = o.both_empty;
        mk_eval_report_stamp(&rep);
        if (out_json)
            st = mk_report_eval_json(ctx, &rep, out_json);
        if (st == MK_OK && out_csv)
            st = mk_report_eval_csv(ctx, &rep, out_csv);
        if (st == MK_OK && out_h5)
            st = mk_report_eval_h5(ctx, &rep, out_h5);
    }
    if (st == MK_OK && !to_stdout) {
        printf("convention %s, tolerance %g mm, %d case(s), %d label(s)\n",
               mk_metric_conv_name(o.convention), o.tolerance_mm, rep.ncases, rep.nlabels);
        printf("%-24s %6s %5s %9s %9s %9s %9s %9s%s\n", "case", "label", "empty", "dice", "hd",
               "hd95", "assd", "surf_dice", rep.label_names ? "  name" : "");
        for (int i = 0; i < rep.ncases; i++)
            for (int j = 0; j < rep.nlabels; j++) {
                const mk_metric_result *r = &rep.cases[i].res[j];
                printf("%-24s %6lld %5s", rep.cases[i].id, (long long)rep.labels[j],
                       mk_metric_empty_name(r->empty));
                print_num(r->dice);
                print_num(r->hd);
                print_num(r->hd95);
                print_num(r->assd);
                print_num(r->surface_dice);
                if (rep.label_names)
                    printf("  %s", rep.label_names[j]);
                printf("\n");
            }
        /* per label over the cases: means skip the both-empty pairs of --both-empty nan */
        printf("means per label (both-empty cases: %s)\n",
               o.both_empty == MK_METRIC_BOTH_NAN ? "NaN, left out (--both-empty nan)"
                                                  : "dice 1, distances 0 (--both-empty one)");
        for (int j = 0; j < rep.nlabels; j++) {
            char over[64];
            snprintf(over, sizeof over, "mean of %d/%d cases",
                     rep.ncases - mk_eval_excluded(&rep, j), rep.ncases);
            printf("%-24s %6lld %5s", over, (long long)rep.labels[j], "");
            const int ms[5] = {0, 2, 3, 4, 6}; /* dice, hd, hd95, assd, surface_dice */
            double *v = malloc(sizeof *v * (size_t)(rep.ncases > 0 ? rep.ncases : 1));
            for (int k = 0; k < 5; k++) {
                mk_metric_stats sm;
                for (int i = 0; i < rep.ncases && v; i++)
                    v[i] = mk_eval_metric_value(&rep.cases[i].res[j], ms[k]);
                mk_metric_stats_compute(v, v ? rep.ncases : 0, &sm);
                print_num(sm.mean);
            }
            free(v);
            if (rep.label_names)
                printf("  %s", rep.label_names[j]);
            printf("\n");
        }
        for (int i = 0; i < rep.nunpaired_pred; i++)
            printf("unpaired pred: %s\n", rep.unpaired_pred[i]);
        for (int i = 0; i < rep.nunpaired_ref; i++)
            printf("unpaired ref: %s\n", rep.unpaired_ref[i]);
    }
done:
    for (int i = 0; i < npairs; i++) {
        free(pairs[i].id);
        free(pairs[i].pred);
        free(pairs[i].ref);
        if (clabs)
            free(clabs[i]);
    }
    free(pairs);
    free(clabs);
    free(nclabs);
    for (int j = 0; lnames && j < rep.nlabels; j++)
        free(lnames[j]);
    free(lnames);
    mk_report_label_names_clear(&ln);
    free(cmd);
    free(labels);
    mk_eval_report_clear(&rep);
    return st;
}
