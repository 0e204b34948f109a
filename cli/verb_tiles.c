/* `pipeline tiles SLIDE --level L --size N [--stride S] [--min-tissue F] [--mask-level M] --out
 * DIR`
 *
 * Cuts a whole-slide TIFF into PNG patches. Patches are staged in DIR/.tiles.tmp.<pid>/ and moved
 * into DIR only when the whole grid succeeded; DIR/tiles.csv is written last through a temporary
 * name, so an interrupted or failed run leaves neither patches nor a CSV behind. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/mk_fs.h"
#include "../histo/mk_histo.h"
#include "../io/mk_tiff.h"
#include "mk_verbs.h"

typedef struct tiles_job {
    mk_ctx *ctx;
    const char *stage; /* staging folder */
    FILE *csv;
    long long written;
} tiles_job;

static mk_status on_patch(void *user, const mk_histo_patch *p)
{
    tiles_job *j = (tiles_job *)user;
    char name[128], path[4096];
    snprintf(name, sizeof name, "L%d_x%" PRId64 "_y%" PRId64 ".png", p->level, p->x0, p->y0);
    if (snprintf(path, sizeof path, "%s/%s", j->stage, name) >= (int)sizeof path)
        return mk_err(j->ctx, MK_ERR_INVALID, "%s: output path too long", j->stage);
    mk_status st = mk_io_png_write(j->ctx, path, p->rgb, p->width, p->height, 3);
    if (st != MK_OK)
        return st;
    if (fprintf(j->csv, "%s,%d,%" PRId64 ",%" PRId64 ",%d,%d,%.4f\n", name, p->level, p->x0, p->y0,
                p->width, p->height, p->tissue) < 0)
        return mk_err(j->ctx, MK_ERR_IO, "tiles.csv: write failed: %s", strerror(errno));
    j->written++;
    return MK_OK;
}

/* Remove the staging folder and what is in it (ignoring errors). */
static void remove_stage(const char *stage)
{
    DIR *d = opendir(stage);
    if (d) {
        struct dirent *e;
        char p[4400];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", stage, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(stage);
}

/* Move every staged patch into out. */
static mk_status publish_stage(mk_ctx *ctx, const char *stage, const char *out)
{
    DIR *d = opendir(stage);
    if (!d)
        return mk_err(ctx, MK_ERR_IO, "%s: %s", stage, strerror(errno));
    struct dirent *e;
    mk_status st = MK_OK;
    char a[4400], b[4400];
    while (st == MK_OK && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(a, sizeof a, "%s/%s", stage, e->d_name);
        snprintf(b, sizeof b, "%s/%s", out, e->d_name);
        if (rename(a, b) != 0)
            st = mk_err(ctx, MK_ERR_IO, "%s: cannot move a patch into place: %s", b,
                        strerror(errno));
    }
    closedir(d);
    return st;
}

mk_status mk_verb_tiles(mk_cli *cli, int argc, char **argv)
{
    mk_ctx *ctx = cli->ctx;
    const char *slide = NULL, *out = NULL, *v;
    long long level = 0, size = -1, stride = 0, mask_level = -1;
    double min_tissue = 0.0;
    mk_args a;
    mk_args_init(&a, argc, argv);
    mk_status st;
    while (mk_args_next(&a)) {
        if (mk_args_positional(&a)) {
            if (slide)
                return mk_args_unknown(&a, ctx);
            slide = a.arg;
            continue;
        }
        int is_level = mk_args_is(&a, "--level"), is_size = mk_args_is(&a, "--size");
        int is_stride = mk_args_is(&a, "--stride"), is_min = mk_args_is(&a, "--min-tissue");
        int is_mask = mk_args_is(&a, "--mask-level"), is_out = mk_args_is(&a, "--out");
        if (!(is_level || is_size || is_stride || is_min || is_mask || is_out))
            return mk_args_unknown(&a, ctx);
        if (!(v = mk_args_value(&a)))
            return mk_args_missing(&a, ctx);
        if (is_level)
            st = mk_args_int(ctx, "--level", v, 0, 31, &level);
        else if (is_size)
            st = mk_args_int(ctx, "--size", v, 1, 8192, &size);
        else if (is_stride)
            st = mk_args_int(ctx, "--stride", v, 1, 1 << 20, &stride);
        else if (is_mask)
            st = mk_args_int(ctx, "--mask-level", v, 0, 31, &mask_level);
        else if (is_min)
            st = mk_args_double(ctx, "--min-tissue", v, 0.0, 1.0, &min_tissue);
        else {
            out = v;
            st = MK_OK;
        }
        if (st != MK_OK)
            return st;
    }
    if (!slide)
        return mk_err(ctx, MK_ERR_USAGE, "tiles: missing SLIDE (see 'pipeline help tiles')");
    if (size < 0)
        return mk_err(ctx, MK_ERR_USAGE, "tiles: --size N is required");
    if (!out)
        return mk_err(ctx, MK_ERR_USAGE, "tiles: --out DIR is required");

    mk_tiff_slide *s = NULL;
    if ((st = mk_tiff_open(ctx, slide, &s)) != MK_OK)
        return st;
    mk_tiff_level info;
    if ((st = mk_tiff_level_info(ctx, s, (int)level, &info)) != MK_OK) {
        mk_tiff_close(s);
        return st;
    }
    if (size > info.width || size > info.height) {
        mk_tiff_close(s);
        return mk_err(ctx, MK_ERR_USAGE,
                      "tiles: --size %lld: larger than level %lld of %s (%lld x %lld px): no patch "
                      "fits; expected at most %lld",
                      (long long)size, (long long)level, slide, (long long)info.width,
                      (long long)info.height,
                      (long long)(info.width < info.height ? info.width : info.height));
    }
    if ((st = mk_fs_mkdirs(ctx, out)) != MK_OK) {
        mk_tiff_close(s);
        return st;
    }
    char stage[4096], csv[4096], csvtmp[4096];
    snprintf(stage, sizeof stage, "%s/.tiles.tmp.%ld", out, (long)getpid());
    snprintf(csv, sizeof csv, "%s/tiles.csv", out);
    remove_stage(stage);
    if (mkdir(stage, 0777) != 0) {
        mk_tiff_close(s);
        return mk_err(ctx, MK_ERR_IO, "%s: cannot create the staging folder: %s", stage,
                      strerror(errno));
    }
    if ((st = mk_fs_tmp_path(ctx, csv, csvtmp, sizeof csvtmp)) != MK_OK) {
        remove_stage(stage);
        mk_tiff_close(s);
        return st;
    }
    tiles_job job = {ctx, stage, fopen(csvtmp, "w"), 0};
    if (!job.csv) {
        st = mk_err(ctx, MK_ERR_IO, "%s: cannot create: %s", csvtmp, strerror(errno));
        remove_stage(stage);
        mk_tiff_close(s);
        return st;
    }
    fprintf(job.csv, "file,level,x,y,width,height,tissue\n");
    /* the tissue mask as before the grid moved to histo/: Otsu, no median blur */
    mk_histo_grid_opts g;
    mk_histo_grid_defaults(&g);
    g.level = (int)level;
    g.size = (int)size;
    g.stride = (int)stride;
    g.min_tissue = min_tissue;
    g.mask.level = (int)mask_level;
    g.mask.median = 0;
    st = mk_histo_patch_walk(ctx, s, &g, 1, on_patch, &job);
    if (fclose(job.csv) != 0 && st == MK_OK)
        st = mk_err(ctx, MK_ERR_IO, "%s: write failed: %s", csvtmp, strerror(errno));
    if (st == MK_OK)
        st = publish_stage(ctx, stage, out);
    remove_stage(stage);
    if (st != MK_OK) {
        mk_fs_discard(csvtmp);
        mk_tiff_close(s);
        return st;
    }
    if ((st = mk_fs_commit(ctx, csvtmp, csv)) != MK_OK) {
        mk_tiff_close(s);
        return st;
    }
    printf(
        "%lld patches of %lldx%lld at level %lld (%lld x %lld px, downsample %.4g) written to %s\n",
        job.written, size, size, level, (long long)info.width, (long long)info.height,
        info.downsample, out);
    printf("index: %s\n", csv);
    mk_tiff_close(s);
    return MK_OK;
}
