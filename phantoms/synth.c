/* mk_phantom_synth: generate every case of a kind and write images, labels, tissue maps, the
 * manifest and the per-case facts. Every file goes through temp + rename, the CSVs last, so a
 * manifest never lists a file that is not complete. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "../core/mk_log.h"
#include "../io/mk_nifti.h"
#include "../io/mk_tiff.h"
#include "phantom_internal.h"

/* A growing text buffer for the CSVs. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sb_printf(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->n;
        int w = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? room : 0, fmt, ap);
        va_end(ap);
        if (w < 0)
            return -1;
        if (b->p && (size_t)w < room) {
            b->n += (size_t)w;
            return 0;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + (size_t)w + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return -1;
        b->p = q;
        b->cap = cap;
    }
}

static mk_status write_text(mk_ctx *ctx, const char *path, const sbuf *b)
{
    return mk_fs_write_atomic(ctx, path, b->p, b->n);
}

static mk_status join(mk_ctx *ctx, const char *dir, const char *rel, char *out, size_t n)
{
    return mk_fs_join(ctx, dir, rel, out, n);
}

typedef struct synth_state {
    mk_ctx *ctx;
    const mk_phantom_params *p;
    const char *out;
    sbuf man, cases, patches;
    int files;
} synth_state;

static mk_status write_nifti(synth_state *S, const char *rel, const mk_image *img)
{
    char path[4096];
    mk_status st = join(S->ctx, S->out, rel, path, sizeof path);
    if (st == MK_OK)
        st = mk_io_nifti_write(S->ctx, path, img);
    if (st == MK_OK)
        S->files++;
    return st;
}

static const char *modality_of(mk_phantom_kind k, mk_phantom_domain d)
{
    if (k == MK_PHANTOM_HISTO)
        return "SM"; /* DICOM modality of slide microscopy */
    return d == MK_PHANTOM_DOMAIN_CT ? "CT" : "MR";
}

static mk_status add_rows(synth_state *S, const char *id, mk_phantom_domain dom, int index,
                          const char *image, const char *label, const char *tissue,
                          const char *paired, const mk_phantom_info *info)
{
    const mk_phantom_params *p = S->p;
    const char *split = mk_phantom_split(index);
    int labelled = mk_phantom_is_labelled(index, p->labelled);
    int bad = sb_printf(&S->man, "%s,%s,%s,%s,%s,%s%s%s\n", id, modality_of(p->kind, dom), image,
                        labelled ? label : "", split, mk_phantom_domain_name(dom),
                        p->paired ? "," : "", p->paired ? paired : "");
    bad |= sb_printf(&S->cases, "%s,%s,%s,%d,%s,%d,%d,%lld,%.4f,%.2f,%s,%s\n", id,
                     mk_phantom_kind_name(p->kind), mk_phantom_domain_name(dom), index, split,
                     labelled, info->hard, (long long)info->fg_voxels, info->fg_ml,
                     info->lesion_radius_mm, label, tissue ? tissue : "");
    if (bad)
        return mk_err(S->ctx, MK_ERR_NOMEM, "synth: out of memory building the CSVs");
    return MK_OK;
}

static mk_status synth_volume_case(synth_state *S, mk_phantom_domain dom, int index)
{
    const mk_phantom_params *p = S->p;
    char id[96], img_rel[160], lab_rel[160], tis_rel[160], pair_rel[160] = "";
    const char *dn = mk_phantom_domain_name(dom);
    snprintf(id, sizeof id, "%s_%s_%03d", mk_phantom_kind_name(p->kind), dn, index);
    snprintf(img_rel, sizeof img_rel, "%s/%s.nii.gz", dn, id);
    snprintf(lab_rel, sizeof lab_rel, "%s/%s_label.nii.gz", dn, id);
    snprintf(tis_rel, sizeof tis_rel, "%s/%s_tissue.nii.gz", dn, id);
    mk_image *img = NULL, *lab = NULL, *tis = NULL;
    mk_phantom_info info;
    mk_status st = mk_phantom_volume(S->ctx, p, dom, index, &img, &lab, &tis, &info);
    if (st == MK_OK)
        st = write_nifti(S, img_rel, img);
    if (st == MK_OK)
        st = write_nifti(S, lab_rel, lab);
    if (st == MK_OK)
        st = write_nifti(S, tis_rel, tis);
    if (st == MK_OK && p->paired && dom == MK_PHANTOM_DOMAIN_CT) {
        /* the oracle pseudo-MRI: this CT case's anatomy imaged as MR, on the CT grid */
        mk_image *pair = NULL;
        snprintf(pair_rel, sizeof pair_rel, "%s/%s_as_mr.nii.gz", dn, id);
        st = mk_phantom_volume_paired(S->ctx, p, dom, MK_PHANTOM_DOMAIN_MR, index, &pair);
        if (st == MK_OK)
            st = write_nifti(S, pair_rel, pair);
        mk_image_free(pair);
    }
    if (st == MK_OK)
        st = add_rows(S, id, dom, index, img_rel, lab_rel, tis_rel, pair_rel, &info);
    mk_image_free(img);
    mk_image_free(lab);
    mk_image_free(tis);
    return st;
}

static mk_status synth_slide_case(synth_state *S, mk_phantom_domain dom, int index)
{
    const mk_phantom_params *p = S->p;
    char id[96], img_rel[160], lab_rel[160], path[4096];
    const char *dn = mk_phantom_domain_name(dom);
    snprintf(id, sizeof id, "histo_%s_%03d", dn, index);
    snprintf(img_rel, sizeof img_rel, "%s/%s.tif", dn, id);
    snprintf(lab_rel, sizeof lab_rel, "%s/%s_mask.tif", dn, id);
    mk_image *rgb = NULL, *mask = NULL;
    mk_phantom_info info;
    mk_status st = mk_phantom_slide(S->ctx, p, dom, index, &rgb, &mask, &info);
    if (st != MK_OK)
        return st;
    const int W = p->size[0], H = p->size[1];
#if MK_PHANTOMS_HAVE_TIFF_WRITER
    /* slide: tiled pyramid, lossless deflate; mask: one tiled level (labels must not be averaged)
     */
    mk_tiff_write_opts so = {0}, mo = {0};
    so.tile = p->tile;
    so.comp = MK_TIFF_COMP_DEFLATE;
    mo.tile = p->tile;
    mo.comp = MK_TIFF_COMP_DEFLATE;
    mo.levels = 1;
    if ((st = join(S->ctx, S->out, img_rel, path, sizeof path)) == MK_OK &&
        (st = mk_tiff_write(S->ctx, path, rgb->data, W, H, 3, &so)) == MK_OK)
        S->files++;
    if (st == MK_OK && (st = join(S->ctx, S->out, lab_rel, path, sizeof path)) == MK_OK &&
        (st = mk_tiff_write(S->ctx, path, mask->data, W, H, 1, &mo)) == MK_OK)
        S->files++;
#else
    (void)path;
    st = mk_err(S->ctx, MK_ERR_UNSUPPORTED,
                "histo: the tiled TIFF writer (mk_tiff_write, io/mk_tiff.h) is not built yet");
#endif
    if (st == MK_OK)
        st = add_rows(S, id, dom, index, img_rel, lab_rel, NULL, "", &info);
    /* patch labels from the mask: 0 background (< 50 % tissue), 2 tumour (>= 50 % tumour),
     * else 1 normal tissue */
    const uint8_t *M = mask->data;
    int P = p->patch;
    for (int y = 0; st == MK_OK && y + P <= H; y += P)
        for (int x = 0; x + P <= W; x += P) {
            long nt = 0, nu = 0;
            for (int yy = y; yy < y + P; yy++)
                for (int xx = x; xx < x + P; xx++) {
                    uint8_t m = M[(size_t)yy * W + xx];
                    nt += m > 0;
                    nu += m == 2;
                }
            double ft = (double)nt / ((double)P * P), fu = (double)nu / ((double)P * P);
            int lab = ft < 0.5 ? 0 : fu >= 0.5 ? 2 : 1;
            if (sb_printf(&S->patches, "%s,%s,0,%d,%d,%d,%d,%.4f,%.4f,%s\n", id, img_rel, x, y, P,
                          lab, fu, ft, mk_phantom_split(index))) {
                st = mk_err(S->ctx, MK_ERR_NOMEM, "synth: out of memory building patches.csv");
                break;
            }
        }
    mk_image_free(rgb);
    mk_image_free(mask);
    return st;
}

static mk_status write_params(synth_state *S)
{
    const mk_phantom_params *p = S->p;
    sbuf b = {0};
    char z[32] = ""; /* histo sizes have two entries */
    if (p->kind != MK_PHANTOM_HISTO)
        snprintf(z, sizeof z, ", %d", p->size[2]);
    int bad = sb_printf(&b,
                        "# parameters of `pipeline synth` that produced this folder\n"
                        "[synth]\nkind = \"%s\"\nseed = %llu\ncases = %d\nsize = [%d, %d%s]\n"
                        "contrast = %.17g\nnoise = %.17g\nshift = %.17g\nlabelled = %.17g\n"
                        "hard_frac = %.17g\ntile = %d\npatch = %d\n%s",
                        mk_phantom_kind_name(p->kind), (unsigned long long)p->seed, p->cases,
                        p->size[0], p->size[1], z, p->contrast, p->noise, p->shift, p->labelled,
                        p->hard_frac, p->tile, p->patch, p->paired ? "paired = true\n" : "");
    char path[4096];
    mk_status st = bad ? mk_err(S->ctx, MK_ERR_NOMEM, "synth: out of memory")
                       : join(S->ctx, S->out, "synth.toml", path, sizeof path);
    if (st == MK_OK)
        st = write_text(S->ctx, path, &b);
    free(b.p);
    return st;
}

mk_status mk_phantom_synth(mk_ctx *ctx, const mk_phantom_params *p, const char *out_dir,
                           mk_phantom_summary *summary)
{
    double t0 = mk_now_s();
    mk_status st = mk_phantom_params_check(ctx, p);
    if (st != MK_OK)
        return st;
    mk_phantom_domain doms[2];
    if (p->kind == MK_PHANTOM_LUNG)
        doms[0] = MK_PHANTOM_DOMAIN_CT, doms[1] = MK_PHANTOM_DOMAIN_MR;
    else if (p->kind == MK_PHANTOM_CARDIAC)
        doms[0] = MK_PHANTOM_DOMAIN_MR, doms[1] = MK_PHANTOM_DOMAIN_CT;
    else
        doms[0] = MK_PHANTOM_DOMAIN_SITE_A, doms[1] = MK_PHANTOM_DOMAIN_SITE_B;
    synth_state S = {.ctx = ctx, .p = p, .out = out_dir};
    for (int d = 0; d < 2 && st == MK_OK; d++) {
        char dir[4096];
        st = join(ctx, out_dir, mk_phantom_domain_name(doms[d]), dir, sizeof dir);
        if (st == MK_OK)
            st = mk_fs_mkdirs(ctx, dir);
    }
    int bad = sb_printf(&S.man, "id,modality,image,label,split,domain%s\n",
                        p->paired ? ",paired_mr" : "");
    bad |= sb_printf(&S.cases, "id,kind,domain,index,split,labelled,hard,fg_voxels,fg_amount,"
                               "radius_mm,label,tissue\n");
    if (p->kind == MK_PHANTOM_HISTO)
        bad |=
            sb_printf(&S.patches, "id,image,level,x,y,size,label,tumour_frac,tissue_frac,split\n");
    if (bad && st == MK_OK)
        st = mk_err(ctx, MK_ERR_NOMEM, "synth: out of memory");
    char what[64];
    snprintf(what, sizeof what, "synth %s", mk_phantom_kind_name(p->kind));
    long long total = 2LL * p->cases, done = 0;
    for (int d = 0; d < 2 && st == MK_OK; d++)
        for (int i = 0; i < p->cases && st == MK_OK; i++) {
            if (ctx->cancel) {
                st = mk_err(ctx, MK_ERR_ABORTED, "synth: interrupted");
                break;
            }
            st = p->kind == MK_PHANTOM_HISTO ? synth_slide_case(&S, doms[d], i)
                                             : synth_volume_case(&S, doms[d], i);
            mk_progress(ctx, what, ++done, total, "case", NULL);
        }
    char path[4096];
    if (st == MK_OK && (st = write_params(&S)) == MK_OK)
        S.files++;
    if (st == MK_OK && p->kind == MK_PHANTOM_HISTO &&
        (st = join(ctx, out_dir, "patches.csv", path, sizeof path)) == MK_OK &&
        (st = write_text(ctx, path, &S.patches)) == MK_OK)
        S.files++;
    if (st == MK_OK && (st = join(ctx, out_dir, "cases.csv", path, sizeof path)) == MK_OK &&
        (st = write_text(ctx, path, &S.cases)) == MK_OK)
        S.files++;
    /* the manifest last: its presence means the folder is complete */
    if (st == MK_OK && (st = join(ctx, out_dir, "manifest.csv", path, sizeof path)) == MK_OK &&
        (st = write_text(ctx, path, &S.man)) == MK_OK)
        S.files++;
    free(S.man.p);
    free(S.cases.p);
    free(S.patches.p);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "synth %s into %s", mk_phantom_kind_name(p->kind), out_dir);
    if (summary) {
        summary->files = S.files;
        summary->cases = (int)total;
        summary->seconds = mk_now_s() - t0;
    }
    return MK_OK;
}
