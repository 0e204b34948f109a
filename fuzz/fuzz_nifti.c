/* Fuzz target: the NIfTI-1/-2 reader (header, extensions, vox_offset, scaling, voxels), plain and
 * gzip-compressed (an input starting with the gzip magic is read as .nii.gz). Both the header-only
 * read and the full read run on every input. */
#include "fuzz_common.h"
#include "io/mk_image.h"
#include "io/mk_nifti.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    const char *path = mk_fuzz_write(gz ? "in.nii.gz" : "in.nii", data, size);
    mk_ctx ctx;
    mk_fuzz_ctx(&ctx);
    mk_image *img = NULL;
    if (mk_io_nifti_read_header(&ctx, path, &img) == MK_OK)
        mk_image_free(img);
    img = NULL;
    if (mk_io_nifti_read(&ctx, path, &img) == MK_OK)
        mk_image_free(img);
    return 0;
}
