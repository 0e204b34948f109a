/* Fuzz target: the DICOM folder scan and series read (GDCM through the ITK bridge). One input is
 * a folder of up to 6 files, separated in the input by the line "MKFUZZ-FILE\n" (the seeds are
 * series built that way). The folder is listed (series, their UIDs and files), then every series
 * (at most 3) is read leniently and strictly (missing slices and uneven spacing refused). */
#include "fuzz_common.h"
#include "io/mk_image.h"
#include "io/mk_itk.h"

#define SEP "MKFUZZ-FILE\n"
#define MAXF 6

static const uint8_t *find(const uint8_t *p, const uint8_t *end, const char *s, size_t n)
{
    for (; p + n <= end; p++)
        if (*p == (uint8_t)s[0] && !memcmp(p, s, n))
            return p;
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/series", mk_fuzz_dir());
    mk_fuzz_rm_tree(dir);
    if (mkdir(dir, 0700) != 0)
        abort();
    const uint8_t *p = data, *end = data + size;
    size_t n = strlen(SEP);
    for (int k = 0; k < MAXF; k++) {
        const uint8_t *q = find(p, end, SEP, n);
        const uint8_t *stop = q ? q : end;
        char name[800];
        snprintf(name, sizeof name, "%s/IM%04d.dcm", dir, k);
        FILE *f = fopen(name, "wb");
        if (!f || (stop > p && fwrite(p, 1, (size_t)(stop - p), f) != (size_t)(stop - p)) ||
            fclose(f) != 0)
            abort();
        if (!q)
            break;
        p = q + n;
    }
    mk_ctx ctx;
    mk_fuzz_ctx(&ctx);
    mk_dicom_series *ser = NULL;
    int ns = 0;
    if (mk_io_dicom_list_series(&ctx, dir, &ser, &ns) == MK_OK) {
        for (int i = 0; i < ns && i < 3; i++)
            for (int strict = 0; strict < 2; strict++) {
                mk_dicom_opts o = {.series_uid = ser[i].uid, .strict = strict};
                mk_image *img = NULL;
                if (mk_io_dicom_read_ex(&ctx, dir, &o, &img) == MK_OK)
                    mk_image_free(img);
            }
    }
    free(ser);
    return 0;
}
