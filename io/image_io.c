/* Generic image read/write dispatching on the file name (see mk_image.h): NIfTI through
 * io/nifti.c, MetaImage/NRRD/DICOM through the ITK bridge (io/mk_itk.h), TIFF through io/mk_tiff.h.
 * Kept apart from image.c so that programs which only need the image type do not link ITK. */
#include <string.h>

#include "mk_image.h"
#include "mk_itk.h"
#include "mk_nifti.h"
#include "mk_tiff.h"

static int ends_with_ci(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    if (n < m)
        return 0;
    for (size_t i = 0; i < m; i++) {
        char a = s[n - m + i], b = suf[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (a != b)
            return 0;
    }
    return 1;
}

static int is_tiff_name(const char *p)
{
    return ends_with_ci(p, ".tif") || ends_with_ci(p, ".tiff") || ends_with_ci(p, ".svs");
}

mk_status mk_io_read_image(mk_ctx *ctx, const char *path, mk_image **out)
{
    *out = NULL;
    mk_status st;
    if (mk_io_nifti_is_path(path))
        st = mk_io_nifti_read(ctx, path, out);
    else if (is_tiff_name(path) || mk_tiff_is_tiff(path))
        st = mk_io_tiff_read_image(ctx, path, 0, out);
    else if (mk_io_itk_can_read(path))
        st = mk_io_itk_read(ctx, path, out);
    else
        return mk_err(ctx, MK_ERR_UNSUPPORTED,
                      "%s: field extension: expected .nii, .nii.gz, .hdr/.img, .mha, .mhd, .nrrd, "
                      ".nhdr, .dcm, a DICOM folder or .tif, got another name",
                      path);
    if (st == MK_OK)
        mk_image_assert_valid(*out);
    return st;
}

mk_status mk_io_read_header(mk_ctx *ctx, const char *path, mk_image **out)
{
    if (mk_io_nifti_is_path(path))
        return mk_io_nifti_read_header(ctx, path, out);
    return mk_io_read_image(ctx, path, out);
}

mk_status mk_io_write_image(mk_ctx *ctx, const char *path, const mk_image *img)
{
    mk_image_assert_valid(img);
    if (mk_io_nifti_is_path(path))
        return mk_io_nifti_write(ctx, path, img);
    if (mk_io_itk_can_write(path))
        return mk_io_itk_write(ctx, path, img);
    if (is_tiff_name(path))
        return mk_io_tiff_write_image(ctx, path, img, NULL);
    return mk_err(
        ctx, MK_ERR_UNSUPPORTED,
        "%s: field extension: expected .nii, .nii.gz, .hdr/.img, .mha, .mhd, .nrrd, .nhdr "
        "or .tif to write, got another name",
        path);
}
