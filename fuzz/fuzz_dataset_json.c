/* Fuzz target: nnU-Net v2 / MSD dataset.json. The input is the dataset.json of a small dataset
 * folder (made once: nnU-Net-style imagesTr/labelsTr/imagesTs files and MSD-style ones, empty
 * files, since the import only checks that they exist) and is imported
 * (mk_manifest_import_nnunet: channel_names, labels, file_ending, training/test lists), then read
 * as a structure-name table (`pipeline eval --label-names dataset.json`). */
#include "fuzz_common.h"
#include "io/mk_manifest.h"
#include "report/mk_report.h"

static char ds[700];

static void touch(const char *rel)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", ds, rel);
    FILE *f = fopen(p, "wb");
    if (!f)
        abort();
    fclose(f);
}

static void setup(void)
{
    snprintf(ds, sizeof ds, "%s/Dataset001_Fuzz", mk_fuzz_dir());
    const char *dirs[] = {"", "/imagesTr", "/labelsTr", "/imagesTs", "/labelsTs"};
    for (int i = 0; i < 5; i++) {
        char p[800];
        snprintf(p, sizeof p, "%s%s", ds, dirs[i]);
        if (mkdir(p, 0700) != 0)
            abort();
    }
    const char *files[] = {"imagesTr/case_000_0000.nii.gz", "imagesTr/case_000_0001.nii.gz",
                           "labelsTr/case_000.nii.gz",      "imagesTr/case_001_0000.nii.gz",
                           "labelsTr/case_001.nii.gz",      "imagesTs/case_002_0000.nii.gz",
                           "labelsTs/case_002.nii.gz",      "imagesTr/la_003.nii.gz",
                           "labelsTr/la_003.nii.gz",        "imagesTs/la_004.nii.gz",
                           "imagesTr/case_005_0000.mha",    "labelsTr/case_005.mha"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        touch(files[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!*ds)
        setup();
    char path[800];
    snprintf(path, sizeof path, "%s/dataset.json", ds);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
    mk_ctx ctx;
    mk_fuzz_ctx(&ctx);
    mk_manifest *m = NULL;
    if (mk_manifest_import_nnunet(&ctx, ds, &m) == MK_OK)
        mk_manifest_free(m);
    mk_report_label_names ln = {0};
    if (mk_report_label_names_read(&ctx, path, &ln) == MK_OK)
        mk_report_label_names_clear(&ln);
    return 0;
}
