/* Fuzz target: CSV readers. The input is read as a dataset manifest (RFC 4180 quoting, BOM, CRLF,
 * columns, splits, duplicate ids); when that succeeds, as a case table applied to it
 * (mk_manifest_apply_table) and the manifest is written back and read again; the same bytes are
 * read as a structure-name table in both forms `pipeline eval --label-names` accepts (value,name
 * CSV and the whitespace "VALUE NAME" lines of AAL / FreeSurfer). */
#include "fuzz_common.h"
#include "io/mk_manifest.h"
#include "report/mk_report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mk_ctx ctx;
    mk_fuzz_ctx(&ctx);
    const char *p = mk_fuzz_write("m.csv", data, size);
    char path[1024];
    snprintf(path, sizeof path, "%s", p);
    mk_manifest *m = NULL;
    if (mk_manifest_read(&ctx, path, &m) == MK_OK) {
        mk_manifest_apply_table(&ctx, m, path);
        char back[1100];
        snprintf(back, sizeof back, "%s/back.csv", mk_fuzz_dir());
        if (mk_manifest_write(&ctx, back, m) == MK_OK) {
            mk_manifest *m2 = NULL;
            /* what we write we must read back, row for row */
            if (mk_manifest_read(&ctx, back, &m2) != MK_OK || m2->nrows != m->nrows)
                abort();
            mk_manifest_free(m2);
        }
        mk_manifest_free(m);
    }
    mk_report_label_names ln = {0};
    if (mk_report_label_names_read(&ctx, path, &ln) == MK_OK)
        mk_report_label_names_clear(&ln);
    const char *txt = mk_fuzz_write("names.txt", data, size);
    mk_report_label_names ln2 = {0};
    if (mk_report_label_names_read(&ctx, txt, &ln2) == MK_OK)
        mk_report_label_names_clear(&ln2);
    return 0;
}
