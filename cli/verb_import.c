/* `pipeline import DATASET -o manifest.csv`: an nnU-Net v2 / MSD dataset as a CSV manifest (see
 * the verb table). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "../io/mk_manifest.h"
#include "mk_verbs.h"

mk_status mk_verb_import(mk_cli *cli, int argc, char **argv)
{
    mk_ctx *ctx = cli->ctx;
    const char *dataset = NULL, *out = NULL, *modality = NULL;
    mk_args a;
    mk_args_init(&a, argc, argv);
    while (mk_args_next(&a)) {
        if (mk_args_is(&a, "-o") || mk_args_is(&a, "--out")) {
            if (!(out = mk_args_value(&a)))
                return mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--modality")) {
            if (!(modality = mk_args_value(&a)))
                return mk_args_missing(&a, ctx);
            if (!*modality || strpbrk(modality, ",\"\n\r"))
                return mk_err(ctx, MK_ERR_USAGE,
                              "import: --modality: expected a name without commas, quotes or "
                              "line breaks, got '%s'",
                              modality);
        } else if (mk_args_positional(&a) && !dataset) {
            dataset = a.arg;
        } else {
            return mk_args_unknown(&a, ctx);
        }
    }
    if (!dataset)
        return mk_err(ctx, MK_ERR_USAGE,
                      "import: expected a DATASET (nnU-Net v2 or MSD folder, or its dataset.json; "
                      "see 'pipeline help import')");
    if (!out)
        return mk_err(ctx, MK_ERR_USAGE, "import: expected -o MANIFEST.csv (the file to write)");
    if (mk_fs_is_dir(out))
        return mk_err(ctx, MK_ERR_USAGE, "import: -o %s: expected a file name, got a folder", out);
    mk_manifest *m = NULL;
    mk_status st = mk_manifest_import_nnunet(ctx, dataset, &m);
    if (st != MK_OK)
        return st;
    if (modality)
        for (int r = 0; r < m->nrows; r++) {
            char *v = strdup(modality);
            if (!v) {
                mk_manifest_free(m);
                return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
            }
            free(m->rows[r].modality);
            m->rows[r].modality = v;
        }
    char dir[4096];
    mk_fs_dirname(out, dir, sizeof dir);
    if ((st = mk_manifest_check_files(ctx, m)) == MK_OK && (st = mk_fs_mkdirs(ctx, dir)) == MK_OK)
        st = mk_manifest_write(ctx, out, m);
    if (st == MK_OK) {
        int n[3] = {0, 0, 0}, lab = 0;
        for (int r = 0; r < m->nrows; r++) {
            const char *s = m->rows[r].split;
            n[strcmp(s, "train") == 0 ? 0 : strcmp(s, "val") == 0 ? 1 : 2]++;
            lab += m->rows[r].label_path != NULL;
        }
        printf("%s: %d cases from %s (%s: %d train, %d val, %d test; %d labelled), modality %s\n",
               out, m->nrows, dataset, m->layout ? m->layout : "dataset", n[0], n[1], n[2], lab,
               m->nrows ? m->rows[0].modality : "-");
        if (m->nlabels) {
            printf("labels (dataset.json; not part of the CSV):");
            for (int l = 0; l < m->nlabels; l++)
                printf(" %d=%s", m->label_values[l], m->label_names[l]);
            printf("\n");
        }
    }
    mk_manifest_free(m);
    return st;
}
