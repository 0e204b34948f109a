/* Fuzz target: the tiled/striped TIFF slide reader. Opens the slide (level table), then on every
 * level reads a region across its top-left corner and one across its far corner (tiles, strips,
 * edges, codecs), a whole small level, and the tissue mask at the smallest level (histo/). Work per
 * input is bounded: regions are at most 64 x 64 and whole levels at most 1<<16 pixels. */
#include "fuzz_common.h"
#include "histo/mk_histo.h"
#include "io/mk_image.h"
#include "io/mk_tiff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = mk_fuzz_write("in.tif", data, size);
    mk_ctx ctx;
    mk_fuzz_ctx(&ctx);
    mk_tiff_slide *s = NULL;
    if (mk_tiff_open(&ctx, path, &s) != MK_OK)
        return 0;
    static uint8_t rgb[64 * 64 * 3];
    int n = mk_tiff_level_count(s);
    for (int l = 0; l < n && l < 8; l++) {
        mk_tiff_level lv;
        if (mk_tiff_level_info(&ctx, s, l, &lv) != MK_OK)
            continue;
        mk_tiff_read_region(&ctx, s, l, -3, -3, 64, 64, rgb);
        mk_tiff_read_region(&ctx, s, l, lv.width - 20, lv.height - 20, 40, 40, rgb);
        mk_image *img = NULL;
        if (mk_tiff_read_level(&ctx, s, l, 1 << 16, &img) == MK_OK)
            mk_image_free(img);
    }
    mk_tiff_level last;
    if (n > 0 && mk_tiff_level_info(&ctx, s, n - 1, &last) == MK_OK &&
        last.width * last.height <= (1 << 16)) {
        mk_histo_mask_opts mo;
        mk_histo_mask_defaults(&mo);
        mo.level = n - 1;
        mk_histo_mask *m = NULL;
        if (mk_histo_tissue_mask(&ctx, s, &mo, &m) == MK_OK)
            mk_histo_mask_free(m);
    }
    mk_tiff_close(s);
    return 0;
}
