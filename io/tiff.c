/* Whole-slide TIFF through libtiff: level table, region reads that decode only the blocks they
 * touch, pyramidal tiled writer. (Tissue mask and patch grid: histo/mk_histo.h.)
 *
 * "Block" below means a tile of a tiled level or a strip of a striped one: a striped level is
 * handled as a grid of full-width blocks rows_per_strip high, so the region reader has one path.
 * Decoded blocks are RGB8 and kept in a small LRU cache, because neighbouring patches of a grid
 * share blocks.
 *
 * Decoding: 8-bit contiguous gray/RGB(A) and JPEG-in-YCbCr (libtiff converts it to RGB when
 * TIFFTAG_JPEGCOLORMODE is JPEGCOLORMODE_RGB, which must be set again after every directory
 * change) go through TIFFReadEncodedTile/Strip; anything else 8-bit (palette, min-is-white,
 * separate planes, raw YCbCr) through libtiff's RGBA interface, which returns the block bottom-up.
 *
 * libtiff errors are captured per handle (TIFFOpenExt with an error handler) so a message ends up
 * in the caller's mk_ctx and nothing is printed. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

#include "../core/mk_fs.h"
#include "mk_tiff.h"

#define MK_TIFF_MAX_LEVELS 32
#define MK_TIFF_CACHE 24
/* Largest decoded block we accept (bytes of RGB): guards against absurd tile/strip sizes. */
#define MK_TIFF_MAX_BLOCK ((int64_t)256 << 20)

typedef struct level_rec {
    tdir_t dir;          /* main-chain directory index */
    uint64_t subifd_off; /* != 0: a SubIFD at this offset */
    int64_t width, height;
    int tiled;
    int64_t bw, bh; /* block size (tile, or width x rows_per_strip) */
    int64_t nbx, nby;
    int spp, bps, comp, photometric, planar;
    int fast; /* decodable with TIFFReadEncoded* */
    double downsample;
} level_rec;

typedef struct cache_entry {
    int level;
    int64_t block; /* block index, -1 = empty */
    uint64_t stamp;
    uint8_t *rgb; /* bw*bh*3 */
} cache_entry;

struct mk_tiff_slide {
    TIFF *tif;
    char *path;
    int nlevels;
    level_rec lv[MK_TIFF_MAX_LEVELS];
    int cur; /* level whose directory is current, -1 none */
    cache_entry cache[MK_TIFF_CACHE];
    uint64_t clock;
    uint8_t *scratch; /* raw decode buffer */
    size_t scratch_n;
    char err[512];  /* last libtiff error on this handle */
    char warn[512]; /* first libtiff / codec warning since decode_block cleared it */
};

/* ---- libtiff message capture ------------------------------------------------------------------
 */

static int on_tiff_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)tif;
    char *dst = (char *)user;
    if (!dst)
        return 1;
    char msg[400];
    vsnprintf(msg, sizeof msg, fmt, ap);
    snprintf(dst, 512, "%s%s%s", module ? module : "", module ? ": " : "", msg);
    return 1; /* handled: do not call the global (stderr) handler */
}

/* Warnings while a directory is read (unknown tags and the like) are ignored; user (a slide's warn
 * buffer, or NULL) keeps the first one, and decode_block treats one raised while it decodes a block
 * (libjpeg's "Corrupt JPEG data", "Premature end of JPEG file") as a failed decode: libtiff returns
 * the garbage pixels with only that warning. */
static int on_tiff_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)tif;
    char *dst = (char *)user;
    if (dst && !dst[0]) {
        char msg[400];
        vsnprintf(msg, sizeof msg, fmt, ap);
        snprintf(dst, 512, "%s%s%s", module ? module : "", module ? ": " : "", msg);
    }
    return 1; /* handled: nothing on stderr */
}

static TIFF *open_tiff(const char *path, const char *mode, char *errbuf, char *warnbuf)
{
    TIFFOpenOptions *o = TIFFOpenOptionsAlloc();
    if (!o)
        return NULL;
    TIFFOpenOptionsSetErrorHandlerExtR(o, on_tiff_error, errbuf);
    TIFFOpenOptionsSetWarningHandlerExtR(o, on_tiff_warning, warnbuf);
    TIFF *t = TIFFOpenExt(path, mode, o);
    TIFFOpenOptionsFree(o);
    return t;
}

int mk_tiff_is_tiff(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    unsigned char m[132];
    size_t got = fread(m, 1, sizeof m, f);
    int ok = got >= 4 && ((m[0] == 'I' && m[1] == 'I' && (m[2] == 42 || m[2] == 43) && m[3] == 0) ||
                          (m[0] == 'M' && m[1] == 'M' && m[2] == 0 && (m[3] == 42 || m[3] == 43)));
    /* a DICOM file may carry a TIFF header in its 128-byte preamble (dual-personality files,
     * PS3.10 7.5): "DICM" at byte 128 makes it DICOM */
    if (ok && got == sizeof m && !memcmp(m + 128, "DICM", 4))
        ok = 0;
    fclose(f);
    return ok;
}

/* ---- level table ------------------------------------------------------------------------------
 */

static int set_level_dir(mk_tiff_slide *s, int level)
{
    if (s->cur == level)
        return 1;
    const level_rec *L = &s->lv[level];
    int ok = L->subifd_off ? TIFFSetSubDirectory(s->tif, L->subifd_off)
                           : TIFFSetDirectory(s->tif, L->dir);
    if (!ok) {
        s->cur = -1;
        return 0;
    }
    if (L->comp == COMPRESSION_JPEG && L->photometric == PHOTOMETRIC_YCBCR)
        TIFFSetField(s->tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    s->cur = level;
    return 1;
}

/* Describe the current directory into L. Returns MK_OK, or an error for unusable layouts. */
static mk_status describe_dir(mk_ctx *ctx, mk_tiff_slide *s, level_rec *L, const char *where)
{
    TIFF *t = s->tif;
    uint32_t w = 0, h = 0, tw = 0, th = 0, rps = 0;
    uint16_t spp = 1, bps = 1, comp = COMPRESSION_NONE, photo = PHOTOMETRIC_MINISBLACK,
             planar = PLANARCONFIG_CONTIG;
    if (!TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h) ||
        w == 0 || h == 0)
        return mk_err(ctx, MK_ERR_FORMAT, "%s: %s: field ImageWidth/ImageLength: missing or zero",
                      s->path, where);
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(t, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetFieldDefaulted(t, TIFFTAG_COMPRESSION, &comp);
    TIFFGetFieldDefaulted(t, TIFFTAG_PLANARCONFIG, &planar);
    if (!TIFFGetField(t, TIFFTAG_PHOTOMETRIC, &photo))
        photo = spp >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK;
    L->width = w;
    L->height = h;
    L->spp = spp;
    L->bps = bps;
    L->comp = comp;
    L->photometric = photo;
    L->planar = planar;
    L->tiled = TIFFIsTiled(t);
    if (L->tiled) {
        if (!TIFFGetField(t, TIFFTAG_TILEWIDTH, &tw) || !TIFFGetField(t, TIFFTAG_TILELENGTH, &th) ||
            tw == 0 || th == 0)
            return mk_err(ctx, MK_ERR_FORMAT, "%s: %s: field TileWidth/TileLength: missing or zero",
                          s->path, where);
        L->bw = tw;
        L->bh = th;
    } else {
        TIFFGetFieldDefaulted(t, TIFFTAG_ROWSPERSTRIP, &rps);
        if (rps == 0 || rps > h)
            rps = h;
        L->bw = w;
        L->bh = rps;
    }
    L->nbx = (L->width + L->bw - 1) / L->bw;
    L->nby = (L->height + L->bh - 1) / L->bh;
    if (bps != 8)
        return mk_err(ctx, MK_ERR_UNSUPPORTED, "%s: %s: field BitsPerSample: expected 8, got %u",
                      s->path, where, bps);
    if (L->bw > MK_TIFF_MAX_BLOCK / 4 / L->bh) /* bw * bh * 4 > the limit, without overflow */
        return mk_err(ctx, MK_ERR_UNSUPPORTED,
                      "%s: %s: %s of %lld x %lld pixels is too large to decode (limit %lld MiB)",
                      s->path, where, L->tiled ? "tile" : "strip", (long long)L->bw,
                      (long long)L->bh, (long long)(MK_TIFF_MAX_BLOCK >> 20));
    int contig = planar == PLANARCONFIG_CONTIG;
    L->fast = contig && ((photo == PHOTOMETRIC_MINISBLACK && (spp == 1 || spp == 2)) ||
                         (photo == PHOTOMETRIC_RGB && (spp == 3 || spp == 4)) ||
                         (photo == PHOTOMETRIC_YCBCR && comp == COMPRESSION_JPEG && spp == 3));
    if (!L->fast) {
        char emsg[1024];
        if (!TIFFRGBAImageOK(t, emsg))
            return mk_err(ctx, MK_ERR_UNSUPPORTED, "%s: %s: cannot decode to RGB: %s", s->path,
                          where, emsg);
    }
    return MK_OK;
}

static int level_cmp(const void *a, const void *b)
{
    const level_rec *x = (const level_rec *)a, *y = (const level_rec *)b;
    return x->width > y->width ? -1 : x->width < y->width ? 1 : 0;
}

mk_status mk_tiff_open(mk_ctx *ctx, const char *path, mk_tiff_slide **out)
{
    MK_ASSERT(path && out);
    *out = NULL;
    FILE *probe = fopen(path, "rb");
    if (!probe)
        return mk_err(ctx, MK_ERR_IO, "%s: %s", path, strerror(errno));
    fclose(probe);
    if (!mk_tiff_is_tiff(path))
        return mk_err(ctx, MK_ERR_FORMAT, "%s: not a TIFF file (expected the II*/MM* magic)", path);
    mk_tiff_slide *s = (mk_tiff_slide *)calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    }
    s->cur = -1;
    for (int i = 0; i < MK_TIFF_CACHE; i++)
        s->cache[i].block = -1;
    mk_status st = MK_OK;
    /* m: no memory mapping, reads go through read(2) */
    s->tif = open_tiff(path, "rm", s->err, s->warn);
    if (!s->tif) {
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: cannot open as TIFF: %s", path,
                    s->err[0] ? s->err : "unknown error");
        goto fail;
    }
    /* Level 0: the first directory that is not a reduced-resolution image. */
    tdir_t ndir = TIFFNumberOfDirectories(s->tif);
    int base = -1;
    for (tdir_t d = 0; d < ndir && base < 0; d++) {
        if (!TIFFSetDirectory(s->tif, d))
            break;
        uint32_t sft = 0;
        TIFFGetField(s->tif, TIFFTAG_SUBFILETYPE, &sft);
        if (!(sft & FILETYPE_REDUCEDIMAGE))
            base = (int)d;
    }
    if (base < 0)
        base = 0;
    if (!TIFFSetDirectory(s->tif, (tdir_t)base)) {
        st = mk_err(ctx, MK_ERR_FORMAT, "%s: cannot read directory %d: %s", path, base, s->err);
        goto fail;
    }
    level_rec *L0 = &s->lv[0];
    L0->dir = (tdir_t)base;
    char where[64];
    snprintf(where, sizeof where, "directory %d", base);
    if ((st = describe_dir(ctx, s, L0, where)) != MK_OK)
        goto fail;
    s->nlevels = 1;
    /* SubIFDs of level 0. */
    uint16_t nsub = 0;
    uint64_t *subs = NULL;
    uint64_t subcopy[MK_TIFF_MAX_LEVELS];
    int nsubc = 0;
    if (TIFFGetField(s->tif, TIFFTAG_SUBIFD, &nsub, &subs) && nsub > 0) {
        for (int i = 0; i < nsub && i < MK_TIFF_MAX_LEVELS; i++)
            subcopy[nsubc++] = subs[i];
    }
    for (int i = 0; i < nsubc && s->nlevels < MK_TIFF_MAX_LEVELS; i++) {
        if (!TIFFSetSubDirectory(s->tif, subcopy[i])) {
            st = mk_err(ctx, MK_ERR_FORMAT, "%s: cannot read SubIFD %d: %s", path, i, s->err);
            goto fail;
        }
        level_rec *L = &s->lv[s->nlevels];
        memset(L, 0, sizeof *L);
        L->subifd_off = subcopy[i];
        snprintf(where, sizeof where, "SubIFD %d", i);
        if ((st = describe_dir(ctx, s, L, where)) != MK_OK)
            goto fail;
        s->nlevels++;
    }
    /* Further main directories that look like reduced copies (smaller, same aspect ratio). Label
     * and macro images of scanner files have other aspect ratios and are skipped. */
    for (tdir_t d = (tdir_t)(base + 1); d < ndir && s->nlevels < MK_TIFF_MAX_LEVELS; d++) {
        if (!TIFFSetDirectory(s->tif, d)) {
            st = mk_err(ctx, MK_ERR_FORMAT, "%s: cannot read directory %u: %s", path, (unsigned)d,
                        s->err);
            goto fail;
        }
        level_rec tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.dir = d;
        snprintf(where, sizeof where, "directory %u", (unsigned)d);
        mk_ctx quiet;
        mk_ctx_init(&quiet);
        if (describe_dir(&quiet, s, &tmp, where) != MK_OK) {
            MK_LOG_W(ctx, "%s: %s is not a readable level, skipped: %s", path, where,
                     mk_ctx_errmsg(&quiet));
            continue;
        }
        double ar0 = (double)L0->width / (double)L0->height,
               ar = (double)tmp.width / (double)tmp.height;
        double tolr = 0.02 + 2.0 / (double)(tmp.width < tmp.height ? tmp.width : tmp.height);
        if (fabs(ar / ar0 - 1.0) > tolr) {
            MK_LOG_D(ctx,
                     "%s: %s (%lld x %lld) has another aspect ratio (a label or macro image), "
                     "not a level",
                     path, where, (long long)tmp.width, (long long)tmp.height);
            continue;
        }
        if (tmp.width >= L0->width) {
            MK_LOG_W(ctx,
                     "%s: %s (%lld x %lld) is not smaller than level 0 (%lld x %lld): not a "
                     "pyramid level, skipped",
                     path, where, (long long)tmp.width, (long long)tmp.height, (long long)L0->width,
                     (long long)L0->height);
            continue;
        }
        s->lv[s->nlevels++] = tmp;
    }
    s->cur = -1;
    qsort(s->lv + 1, (size_t)(s->nlevels - 1), sizeof(level_rec), level_cmp);
    for (int i = 0; i < s->nlevels; i++)
        s->lv[i].downsample = (double)L0->width / (double)s->lv[i].width;
    *out = s;
    return MK_OK;
fail:
    mk_tiff_close(s);
    return st;
}

void mk_tiff_close(mk_tiff_slide *s)
{
    if (!s)
        return;
    if (s->tif)
        TIFFClose(s->tif);
    for (int i = 0; i < MK_TIFF_CACHE; i++)
        free(s->cache[i].rgb);
    free(s->scratch);
    free(s->path);
    free(s);
}

int mk_tiff_level_count(const mk_tiff_slide *s)
{
    return s ? s->nlevels : 0;
}

const char *mk_tiff_path(const mk_tiff_slide *s)
{
    return s->path;
}

static mk_status check_level(mk_ctx *ctx, const mk_tiff_slide *s, int level)
{
    if (level < 0 || level >= s->nlevels)
        return mk_err(ctx, MK_ERR_INVALID, "%s: level %d out of range (the slide has levels 0..%d)",
                      s->path, level, s->nlevels - 1);
    return MK_OK;
}

mk_status mk_tiff_level_info(mk_ctx *ctx, const mk_tiff_slide *s, int level, mk_tiff_level *out)
{
    mk_status st = check_level(ctx, s, level);
    if (st != MK_OK)
        return st;
    const level_rec *L = &s->lv[level];
    memset(out, 0, sizeof *out);
    out->width = L->width;
    out->height = L->height;
    out->tile_w = L->tiled ? (int)L->bw : 0;
    out->tile_h = L->tiled ? (int)L->bh : 0;
    out->rows_per_strip = L->tiled ? 0 : (int)L->bh;
    out->samples = L->spp;
    out->bits = L->bps;
    out->compression = L->comp;
    out->photometric = L->photometric;
    out->subifd = L->subifd_off != 0;
    out->downsample = L->downsample;
    return MK_OK;
}

/* ---- block decoding ---------------------------------------------------------------------------
 */

static mk_status tiff_fail(mk_ctx *ctx, mk_tiff_slide *s, int level, int64_t block,
                           const char *what)
{
    const level_rec *L = &s->lv[level];
    return mk_err(ctx, MK_ERR_FORMAT, "%s: level %d %s %lld (column %lld, row %lld): %s%s%s",
                  s->path, level, L->tiled ? "tile" : "strip", (long long)block,
                  (long long)(block % L->nbx), (long long)(block / L->nbx), what,
                  s->err[0] ? ": " : "", s->err);
}

/* A block whose decoder warned: its pixels are not the image's. */
static mk_status corrupt(mk_ctx *ctx, mk_tiff_slide *s, int level, int64_t b)
{
    snprintf(s->err, sizeof s->err, "%s", s->warn);
    return tiff_fail(ctx, s, level, b, "corrupt compressed data");
}

/* Decode block b of level into dst (bw*bh*3 RGB). */
static mk_status decode_block(mk_ctx *ctx, mk_tiff_slide *s, int level, int64_t b, uint8_t *dst)
{
    const level_rec *L = &s->lv[level];
    s->err[0] = 0;
    if (!set_level_dir(s, level))
        return tiff_fail(ctx, s, level, b, "cannot select the directory");
    s->warn[0] = 0; /* from here on a warning is the decoder's */
    TIFF *t = s->tif;
    int64_t bx = b % L->nbx, by = b / L->nbx;
    uint32_t strile = L->tiled
                          ? TIFFComputeTile(t, (uint32_t)(bx * L->bw), (uint32_t)(by * L->bh), 0, 0)
                          : TIFFComputeStrip(t, (uint32_t)(by * L->bh), 0);
    int err = 0;
    uint64_t off = TIFFGetStrileOffsetWithErr(t, strile, &err);
    uint64_t cnt = err ? 0 : TIFFGetStrileByteCountWithErr(t, strile, &err);
    if (err || off == 0 || cnt == 0)
        return tiff_fail(ctx, s, level, b, "missing (offset or byte count is 0)");
    int64_t rows = L->tiled ? L->bh : (by == L->nby - 1 ? L->height - by * L->bh : L->bh);
    int64_t npx = L->bw * L->bh;
    if (L->fast) {
        int spp = L->spp; /* after JPEGCOLORMODE_RGB, YCbCr JPEG decodes to 3 samples */
        size_t need = (size_t)(npx * spp);
        if (s->scratch_n < need) {
            uint8_t *nb = (uint8_t *)realloc(s->scratch, need);
            if (!nb)
                return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory for a block", s->path);
            s->scratch = nb;
            s->scratch_n = need;
        }
        tmsize_t want = (tmsize_t)(rows * L->bw * spp);
        tmsize_t got = L->tiled ? TIFFReadEncodedTile(t, strile, s->scratch, (tmsize_t)need)
                                : TIFFReadEncodedStrip(t, strile, s->scratch, want);
        if (got < want)
            return tiff_fail(ctx, s, level, b,
                             got < 0 ? "decoding failed" : "short data (truncated file?)");
        if (s->warn[0])
            return corrupt(ctx, s, level, b);
        const uint8_t *p = s->scratch;
        int inv = L->photometric == PHOTOMETRIC_MINISWHITE;
        for (int64_t i = 0; i < rows * L->bw; i++, p += spp) {
            if (spp <= 2) {
                uint8_t g = inv ? (uint8_t)(255 - p[0]) : p[0];
                dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = g;
            } else {
                dst[3 * i] = p[0];
                dst[3 * i + 1] = p[1];
                dst[3 * i + 2] = p[2];
            }
        }
        return MK_OK;
    }
    /* RGBA path: libtiff returns ABGR-packed pixels with the block's bottom row first. */
    size_t need = (size_t)npx * 4;
    if (s->scratch_n < need) {
        uint8_t *nb = (uint8_t *)realloc(s->scratch, need);
        if (!nb)
            return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory for a block", s->path);
        s->scratch = nb;
        s->scratch_n = need;
    }
    uint32_t *r = (uint32_t *)(void *)s->scratch;
    int ok = L->tiled ? TIFFReadRGBATileExt(t, (uint32_t)(bx * L->bw), (uint32_t)(by * L->bh), r, 1)
                      : TIFFReadRGBAStripExt(t, (uint32_t)(by * L->bh), r, 1);
    if (!ok)
        return tiff_fail(ctx, s, level, b, "decoding failed");
    if (s->warn[0])
        return corrupt(ctx, s, level, b);
    for (int64_t y = 0; y < rows; y++) {
        const uint32_t *src = r + (rows - 1 - y) * L->bw;
        uint8_t *d = dst + y * L->bw * 3;
        for (int64_t x = 0; x < L->bw; x++) {
            d[3 * x] = (uint8_t)TIFFGetR(src[x]);
            d[3 * x + 1] = (uint8_t)TIFFGetG(src[x]);
            d[3 * x + 2] = (uint8_t)TIFFGetB(src[x]);
        }
    }
    return MK_OK;
}

/* Cached block: borrowed pointer valid until the next cache call. */
static mk_status get_block(mk_ctx *ctx, mk_tiff_slide *s, int level, int64_t b, const uint8_t **out)
{
    cache_entry *victim = NULL;
    for (int i = 0; i < MK_TIFF_CACHE; i++) {
        cache_entry *e = &s->cache[i];
        if (e->block == b && e->level == level) {
            e->stamp = ++s->clock;
            *out = e->rgb;
            return MK_OK;
        }
        /* Victim: an empty slot if any, else the least recently used. */
        if (!victim || (victim->block >= 0 && (e->block < 0 || e->stamp < victim->stamp)))
            victim = e;
    }
    const level_rec *L = &s->lv[level];
    size_t need = (size_t)(L->bw * L->bh * 3);
    free(victim->rgb);
    victim->block = -1;
    victim->rgb = (uint8_t *)malloc(need);
    if (!victim->rgb)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory for a block", s->path);
    mk_status st = decode_block(ctx, s, level, b, victim->rgb);
    if (st != MK_OK)
        return st;
    victim->level = level;
    victim->block = b;
    victim->stamp = ++s->clock;
    *out = victim->rgb;
    return MK_OK;
}

mk_status mk_tiff_read_region(mk_ctx *ctx, mk_tiff_slide *s, int level, int64_t x, int64_t y, int w,
                              int h, uint8_t *rgb)
{
    mk_status st = check_level(ctx, s, level);
    if (st != MK_OK)
        return st;
    if (w <= 0 || h <= 0)
        return mk_err(ctx, MK_ERR_INVALID, "%s: region %d x %d: width and height must be > 0",
                      s->path, w, h);
    memset(rgb, 255, (size_t)w * (size_t)h * 3);
    const level_rec *L = &s->lv[level];
    int64_t x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
    int64_t x1 = x + w > L->width ? L->width : x + w, y1 = y + h > L->height ? L->height : y + h;
    if (x0 >= x1 || y0 >= y1)
        return MK_OK;
    for (int64_t by = y0 / L->bh; by <= (y1 - 1) / L->bh; by++)
        for (int64_t bx = x0 / L->bw; bx <= (x1 - 1) / L->bw; bx++) {
            const uint8_t *blk = NULL;
            if ((st = get_block(ctx, s, level, by * L->nbx + bx, &blk)) != MK_OK)
                return st;
            int64_t ox = bx * L->bw, oy = by * L->bh;
            int64_t cx0 = x0 > ox ? x0 : ox, cx1 = x1 < ox + L->bw ? x1 : ox + L->bw;
            int64_t cy0 = y0 > oy ? y0 : oy, cy1 = y1 < oy + L->bh ? y1 : oy + L->bh;
            for (int64_t yy = cy0; yy < cy1; yy++)
                memcpy(rgb + ((yy - y) * w + (cx0 - x)) * 3,
                       blk + ((yy - oy) * L->bw + (cx0 - ox)) * 3, (size_t)(cx1 - cx0) * 3);
        }
    return MK_OK;
}

mk_status mk_tiff_read_level(mk_ctx *ctx, mk_tiff_slide *s, int level, int64_t max_pixels,
                             mk_image **out)
{
    *out = NULL;
    mk_status st = check_level(ctx, s, level);
    if (st != MK_OK)
        return st;
    const level_rec *L = &s->lv[level];
    if (max_pixels <= 0)
        max_pixels = (int64_t)1 << 28;
    if (L->width * L->height > max_pixels || L->width > INT_MAX || L->height > INT_MAX)
        return mk_err(ctx, MK_ERR_NOMEM,
                      "%s: level %d is %lld x %lld pixels, over the limit of %lld pixels", s->path,
                      level, (long long)L->width, (long long)L->height, (long long)max_pixels);
    int64_t dim[2] = {L->width, L->height};
    mk_image *img = NULL;
    if ((st = mk_image_new(ctx, MK_DT_RGB24, 2, dim, &img)) != MK_OK)
        return st;
    if ((st = mk_tiff_read_region(ctx, s, level, 0, 0, (int)L->width, (int)L->height,
                                  (uint8_t *)img->data)) != MK_OK) {
        mk_image_free(img);
        return st;
    }
    *out = img;
    return MK_OK;
}

/* ---- writer -----------------------------------------------------------------------------------
 */

int mk_tiff_compression_parse(const char *name)
{
    static const char *const names[MK_TIFF_COMP_COUNT] = {[MK_TIFF_COMP_NONE] = "none",
                                                          [MK_TIFF_COMP_LZW] = "lzw",
                                                          [MK_TIFF_COMP_DEFLATE] = "deflate",
                                                          [MK_TIFF_COMP_JPEG] = "jpeg"};
    if (!name)
        return -1;
    if (strcmp(name, "zip") == 0)
        return MK_TIFF_COMP_DEFLATE;
    for (int i = 0; i < MK_TIFF_COMP_COUNT; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

static const uint16_t TIFF_COMP_CODE[MK_TIFF_COMP_COUNT] = {[MK_TIFF_COMP_NONE] = COMPRESSION_NONE,
                                                            [MK_TIFF_COMP_LZW] = COMPRESSION_LZW,
                                                            [MK_TIFF_COMP_DEFLATE] =
                                                                COMPRESSION_ADOBE_DEFLATE,
                                                            [MK_TIFF_COMP_JPEG] = COMPRESSION_JPEG};

typedef struct wr {
    mk_ctx *ctx;
    const char *path;
    TIFF *t;
    char err[512];
    int samples;
    mk_tiff_write_opts o;
} wr;

static mk_status wr_fail(wr *w, const char *what)
{
    return mk_err(w->ctx, MK_ERR_IO, "%s: %s%s%s", w->path, what, w->err[0] ? ": " : "", w->err);
}

/* Tags common to every level of the output. */
static int wr_tags(wr *w, int64_t width, int64_t height, int reduced, int nsub)
{
    TIFF *t = w->t;
    int ok = TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)width) &&
             TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)height) &&
             TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)w->samples) &&
             TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8) &&
             TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG) &&
             TIFFSetField(t, TIFFTAG_COMPRESSION, TIFF_COMP_CODE[w->o.comp]) &&
             TIFFSetField(t, TIFFTAG_SUBFILETYPE, reduced ? FILETYPE_REDUCEDIMAGE : 0);
    if (!ok)
        return 0;
    if (w->o.comp == MK_TIFF_COMP_JPEG) {
        ok = TIFFSetField(t, TIFFTAG_JPEGQUALITY, w->o.jpeg_quality);
        if (w->samples == 3) /* YCbCr 2x2 like scanners; we feed RGB and libjpeg converts */
            ok = ok && TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_YCBCR) &&
                 TIFFSetField(t, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
        else
            ok = ok && TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    } else {
        ok = TIFFSetField(t, TIFFTAG_PHOTOMETRIC,
                          w->samples == 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
        if (w->o.comp != MK_TIFF_COMP_NONE)
            ok = ok && TIFFSetField(t, TIFFTAG_PREDICTOR, PREDICTOR_HORIZONTAL);
    }
    if (w->o.striped)
        ok = ok && TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, (uint32_t)w->o.rows_per_strip);
    else
        ok = ok && TIFFSetField(t, TIFFTAG_TILEWIDTH, (uint32_t)w->o.tile) &&
             TIFFSetField(t, TIFFTAG_TILELENGTH, (uint32_t)w->o.tile);
    if (nsub > 0) {
        uint64_t zeros[MK_TIFF_MAX_LEVELS] = {0};
        ok = ok && TIFFSetField(t, TIFFTAG_SUBIFD, (uint16_t)nsub, zeros);
    }
    return ok;
}

/* Accumulate the 2x2 box sums of a block of level k (rows [y, y+h), full width) into level k+1. */
static void reduce_rows(const uint8_t *src, int64_t w, int64_t y, int64_t h, int spp, uint8_t *dst,
                        int64_t w2, int64_t hfull)
{
    int64_t h2full = (hfull + 1) / 2;
    for (int64_t j2 = y / 2; j2 < (y + h + 1) / 2 && j2 < h2full; j2++) {
        int64_t ja = 2 * j2, jb = 2 * j2 + 1 < hfull ? 2 * j2 + 1 : 2 * j2;
        for (int64_t i2 = 0; i2 < w2; i2++) {
            int64_t ia = 2 * i2, ib = 2 * i2 + 1 < w ? 2 * i2 + 1 : 2 * i2;
            int n = (ja == jb ? 1 : 2) * (ia == ib ? 1 : 2);
            for (int c = 0; c < spp; c++) {
                unsigned sum = 0;
                sum += src[((ja - y) * w + ia) * spp + c];
                if (ib != ia)
                    sum += src[((ja - y) * w + ib) * spp + c];
                if (jb != ja) {
                    sum += src[((jb - y) * w + ia) * spp + c];
                    if (ib != ia)
                        sum += src[((jb - y) * w + ib) * spp + c];
                }
                dst[(j2 * w2 + i2) * spp + c] = (uint8_t)((sum + (unsigned)n / 2) / (unsigned)n);
            }
        }
    }
}

/* Write one tiled level from a full in-memory buffer. */
static mk_status write_level_buffer(wr *w, const uint8_t *buf, int64_t width, int64_t height)
{
    int T = w->o.tile;
    size_t tsz = (size_t)T * (size_t)T * (size_t)w->samples;
    uint8_t *tile = (uint8_t *)calloc(1, tsz);
    if (!tile)
        return mk_err(w->ctx, MK_ERR_NOMEM, "%s: out of memory", w->path);
    for (int64_t ty = 0; ty < height; ty += T)
        for (int64_t tx = 0; tx < width; tx += T) {
            memset(tile, 0, tsz);
            int64_t cw = tx + T > width ? width - tx : T, ch = ty + T > height ? height - ty : T;
            for (int64_t r = 0; r < ch; r++)
                memcpy(tile + (size_t)r * T * w->samples,
                       buf + ((ty + r) * width + tx) * w->samples, (size_t)cw * w->samples);
            if (TIFFWriteEncodedTile(w->t, TIFFComputeTile(w->t, (uint32_t)tx, (uint32_t)ty, 0, 0),
                                     tile, (tmsize_t)tsz) < 0) {
                free(tile);
                return wr_fail(w, "writing a tile failed");
            }
        }
    free(tile);
    return MK_OK;
}

static mk_status write_all(wr *w, int64_t width, int64_t height, mk_tiff_tile_fn fn, void *user)
{
    int spp = w->samples;
    int nlev = 1;
    if (!w->o.striped) {
        int64_t a = width, b = height;
        if (w->o.levels > 0)
            nlev = w->o.levels;
        else
            while ((a > w->o.tile || b > w->o.tile) && nlev < MK_TIFF_MAX_LEVELS) {
                a = (a + 1) / 2;
                b = (b + 1) / 2;
                nlev++;
            }
        /* Never reduce below 1 pixel. */
        a = width;
        b = height;
        for (int k = 1; k < nlev; k++) {
            if (a == 1 && b == 1) {
                nlev = k;
                break;
            }
            a = (a + 1) / 2;
            b = (b + 1) / 2;
        }
    }
    int nsub = w->o.subifd ? nlev - 1 : 0;
    if (!wr_tags(w, width, height, 0, nsub))
        return wr_fail(w, "setting the level-0 tags failed");
    mk_status st = MK_OK;
    if (w->o.striped) {
        int R = w->o.rows_per_strip;
        uint8_t *strip = (uint8_t *)malloc((size_t)width * (size_t)R * (size_t)spp);
        if (!strip)
            return mk_err(w->ctx, MK_ERR_NOMEM, "%s: out of memory", w->path);
        for (int64_t y = 0; y < height && st == MK_OK; y += R) {
            int rows = (int)(y + R > height ? height - y : R);
            if ((st = fn(user, 0, y, (int)width, rows, strip)) != MK_OK)
                break;
            if (TIFFWriteEncodedStrip(w->t, TIFFComputeStrip(w->t, (uint32_t)y, 0), strip,
                                      (tmsize_t)((size_t)width * (size_t)rows * (size_t)spp)) < 0)
                st = wr_fail(w, "writing a strip failed");
        }
        free(strip);
        if (st == MK_OK && !TIFFWriteDirectory(w->t))
            st = wr_fail(w, "writing the directory failed");
        return st;
    }
    int T = w->o.tile;
    int64_t w1 = (width + 1) / 2, h1 = (height + 1) / 2;
    uint8_t *lv1 = nlev > 1 ? (uint8_t *)malloc((size_t)(w1 * h1 * spp)) : NULL;
    uint8_t *band = (uint8_t *)malloc((size_t)width * (size_t)T * (size_t)spp);
    uint8_t *tile = (uint8_t *)malloc((size_t)T * (size_t)T * (size_t)spp);
    uint8_t *blk = (uint8_t *)malloc((size_t)T * (size_t)T * (size_t)spp);
    if ((nlev > 1 && !lv1) || !band || !tile || !blk) {
        free(lv1);
        free(band);
        free(tile);
        free(blk);
        return mk_err(w->ctx, MK_ERR_NOMEM, "%s: out of memory for the pyramid", w->path);
    }
    /* Level 0: one band of tile rows at a time, pulled tile by tile from fn. */
    for (int64_t ty = 0; ty < height && st == MK_OK; ty += T) {
        int ch = (int)(ty + T > height ? height - ty : T);
        for (int64_t tx = 0; tx < width && st == MK_OK; tx += T) {
            int cw = (int)(tx + T > width ? width - tx : T);
            if ((st = fn(user, tx, ty, cw, ch, blk)) != MK_OK)
                break;
            memset(tile, 0, (size_t)T * T * spp);
            for (int r = 0; r < ch; r++) {
                memcpy(tile + (size_t)r * T * spp, blk + (size_t)r * cw * spp, (size_t)cw * spp);
                memcpy(band + ((size_t)r * width + tx) * spp, blk + (size_t)r * cw * spp,
                       (size_t)cw * spp);
            }
            if (TIFFWriteEncodedTile(w->t, TIFFComputeTile(w->t, (uint32_t)tx, (uint32_t)ty, 0, 0),
                                     tile, (tmsize_t)((size_t)T * T * spp)) < 0)
                st = wr_fail(w, "writing a tile failed");
        }
        if (st == MK_OK && lv1)
            reduce_rows(band, width, ty, ch, spp, lv1, w1, height);
    }
    free(band);
    free(tile);
    free(blk);
    if (st == MK_OK && !TIFFWriteDirectory(w->t))
        st = wr_fail(w, "writing the level-0 directory failed");
    /* Reduced levels from memory, each a 2x2 box mean of the one above. */
    uint8_t *cur = lv1;
    int64_t cw = w1, ch = h1;
    for (int k = 1; k < nlev && st == MK_OK; k++) {
        if (!wr_tags(w, cw, ch, 1, 0)) {
            st = wr_fail(w, "setting the tags of a reduced level failed");
            break;
        }
        if ((st = write_level_buffer(w, cur, cw, ch)) != MK_OK)
            break;
        if (!TIFFWriteDirectory(w->t)) {
            st = wr_fail(w, "writing a reduced-level directory failed");
            break;
        }
        if (k + 1 < nlev) {
            int64_t nw = (cw + 1) / 2, nh = (ch + 1) / 2;
            uint8_t *next = (uint8_t *)malloc((size_t)(nw * nh * spp));
            if (!next) {
                st = mk_err(w->ctx, MK_ERR_NOMEM, "%s: out of memory for the pyramid", w->path);
                break;
            }
            reduce_rows(cur, cw, 0, ch, spp, next, nw, ch);
            free(cur);
            cur = next;
            cw = nw;
            ch = nh;
        }
    }
    free(cur);
    return st;
}

static mk_status check_write_opts(mk_ctx *ctx, const char *path, int64_t width, int64_t height,
                                  int samples, const mk_tiff_write_opts *in, mk_tiff_write_opts *o)
{
    memset(o, 0, sizeof *o);
    if (in)
        *o = *in;
    if (o->tile == 0)
        o->tile = 256;
    if (o->jpeg_quality == 0)
        o->jpeg_quality = 90;
    if (o->rows_per_strip == 0)
        o->rows_per_strip = 64;
    if (width <= 0 || height <= 0 || width > UINT32_MAX || height > UINT32_MAX)
        return mk_err(ctx, MK_ERR_INVALID, "%s: image size %lld x %lld: expected 1..2^32-1", path,
                      (long long)width, (long long)height);
    if (samples != 1 && samples != 3)
        return mk_err(ctx, MK_ERR_INVALID, "%s: %d samples per pixel: expected 1 (gray) or 3 (RGB)",
                      path, samples);
    if (o->tile < 16 || o->tile % 16 || o->tile > 4096)
        return mk_err(ctx, MK_ERR_INVALID,
                      "%s: tile size %d: expected a multiple of 16 in 16..4096", path, o->tile);
    if ((int)o->comp < 0 || o->comp >= MK_TIFF_COMP_COUNT)
        return mk_err(ctx, MK_ERR_INVALID, "%s: unknown compression %d", path, (int)o->comp);
    if (o->jpeg_quality < 1 || o->jpeg_quality > 100)
        return mk_err(ctx, MK_ERR_INVALID, "%s: JPEG quality %d: expected 1..100", path,
                      o->jpeg_quality);
    if (o->levels < 0 || o->levels > MK_TIFF_MAX_LEVELS)
        return mk_err(ctx, MK_ERR_INVALID, "%s: %d levels: expected 0..%d", path, o->levels,
                      MK_TIFF_MAX_LEVELS);
    if (o->rows_per_strip < 1)
        return mk_err(ctx, MK_ERR_INVALID, "%s: rows per strip %d: expected >= 1", path,
                      o->rows_per_strip);
    if (o->comp == MK_TIFF_COMP_JPEG && o->striped && o->rows_per_strip % 16)
        return mk_err(ctx, MK_ERR_INVALID, "%s: JPEG strips need rows per strip a multiple of 16",
                      path);
    return MK_OK;
}

mk_status mk_tiff_write_cb(mk_ctx *ctx, const char *path, int64_t width, int64_t height,
                           int samples, mk_tiff_tile_fn fn, void *user,
                           const mk_tiff_write_opts *opts)
{
    wr w;
    memset(&w, 0, sizeof w);
    w.ctx = ctx;
    w.path = path;
    w.samples = samples;
    mk_status st = check_write_opts(ctx, path, width, height, samples, opts, &w.o);
    if (st != MK_OK)
        return st;
    char tmp[4096];
    if ((st = mk_fs_tmp_path(ctx, path, tmp, sizeof tmp)) != MK_OK)
        return st;
    /* BigTIFF when the raw data could pass 4 GiB (offsets of classic TIFF are 32-bit). */
    double raw = (double)width * (double)height * samples * 1.34;
    w.t = open_tiff(tmp, raw > 3.5e9 ? "w8" : "w", w.err, NULL);
    if (!w.t) {
        int e = errno;
        mk_fs_discard(tmp); /* mk_fs_tmp_path may have made it (stream targets) */
        return mk_err(ctx, MK_ERR_IO, "%s: cannot create it: %s", path,
                      w.err[0] ? w.err : strerror(e));
    }
    st = write_all(&w, width, height, fn, user);
    TIFFClose(w.t);
    if (st != MK_OK) {
        mk_fs_discard(tmp);
        return st;
    }
    return mk_fs_commit(ctx, tmp, path);
}

typedef struct buf_src {
    const uint8_t *pix;
    int64_t width;
    int samples;
} buf_src;

static mk_status buf_tile(void *user, int64_t x, int64_t y, int w, int h, uint8_t *dst)
{
    const buf_src *b = (const buf_src *)user;
    for (int r = 0; r < h; r++)
        memcpy(dst + (size_t)r * w * b->samples, b->pix + ((y + r) * b->width + x) * b->samples,
               (size_t)w * b->samples);
    return MK_OK;
}

mk_status mk_tiff_write(mk_ctx *ctx, const char *path, const uint8_t *pix, int64_t width,
                        int64_t height, int samples, const mk_tiff_write_opts *opts)
{
    MK_ASSERT(pix);
    buf_src b = {pix, width, samples};
    return mk_tiff_write_cb(ctx, path, width, height, samples, buf_tile, &b, opts);
}

/* ---- mk_image adapters and info ---------------------------------------------------------------
 */

mk_status mk_io_tiff_write_image(mk_ctx *ctx, const char *path, const mk_image *img,
                                 const mk_tiff_write_opts *opts)
{
    int samples = img->dtype == MK_DT_RGB24 ? 3 : img->dtype == MK_DT_UINT8 ? 1 : 0;
    if (!samples)
        return mk_err(ctx, MK_ERR_UNSUPPORTED,
                      "%s: TIFF output takes uint8 or rgb24 images, not %s", path,
                      mk_dtype_name(img->dtype));
    for (int i = 2; i < img->ndim; i++)
        if (img->dim[i] != 1)
            return mk_err(ctx, MK_ERR_UNSUPPORTED,
                          "%s: TIFF output takes 2D images; dim[%d] is %lld", path, i,
                          (long long)img->dim[i]);
    return mk_tiff_write(ctx, path, (const uint8_t *)img->data, img->dim[0],
                         img->ndim > 1 ? img->dim[1] : 1, samples, opts);
}

mk_status mk_io_tiff_read_image(mk_ctx *ctx, const char *path, int level, mk_image **out)
{
    *out = NULL;
    mk_tiff_slide *s = NULL;
    mk_status st = mk_tiff_open(ctx, path, &s);
    if (st != MK_OK)
        return st;
    st = mk_tiff_read_level(ctx, s, level, 0, out);
    mk_tiff_close(s);
    return st;
}

static const char *comp_name(int c)
{
    switch (c) {
    case COMPRESSION_NONE: return "none";
    case COMPRESSION_LZW: return "lzw";
    case COMPRESSION_ADOBE_DEFLATE:
    case COMPRESSION_DEFLATE: return "deflate";
    case COMPRESSION_JPEG: return "jpeg";
    case COMPRESSION_PACKBITS: return "packbits";
    case COMPRESSION_OJPEG: return "old-jpeg";
    case COMPRESSION_JP2000: return "jpeg2000";
    default: return "other";
    }
}

mk_status mk_io_tiff_info(mk_ctx *ctx, const char *path, FILE *out)
{
    mk_tiff_slide *s = NULL;
    mk_status st = mk_tiff_open(ctx, path, &s);
    if (st != MK_OK)
        return st;
    fprintf(out, "file:        %s\nformat:      TIFF slide, %d level%s\n", path, s->nlevels,
            s->nlevels == 1 ? "" : "s");
    for (int i = 0; i < s->nlevels; i++) {
        const level_rec *L = &s->lv[i];
        char lay[64];
        if (L->tiled)
            snprintf(lay, sizeof lay, "tiles %lldx%lld", (long long)L->bw, (long long)L->bh);
        else
            snprintf(lay, sizeof lay, "strips of %lld rows", (long long)L->bh);
        fprintf(out, "level %-2d     %lld x %lld  downsample %.4g  %s  %d sample%s  %s%s\n", i,
                (long long)L->width, (long long)L->height, L->downsample, lay, L->spp,
                L->spp == 1 ? "" : "s", comp_name(L->comp), L->subifd_off ? "  (SubIFD)" : "");
    }
    mk_tiff_close(s);
    return MK_OK;
}
