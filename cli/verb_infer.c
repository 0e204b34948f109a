/* `pipeline infer`: segment a batch of volumes with a trained model (issue 17; docs/stages.md,
 * "Inference").
 *
 * -m MODEL is a model file (stages/mk_infer.h) or a run directory, whose default model is the one
 * its evaluate stage scores first: the first method of run.stages (config.resolved.toml) with an
 * output, its models/<model>_best.h5 copy when evaluate.model = "best" (the default) and the copy
 * exists, else models/<model>.h5. A run directory without a readable config.resolved.toml falls
 * back on the one file of models/ ending in _student_best.h5, then the one ending in
 * _student.h5 (several: an error listing them).
 *
 * -i INPUT is a folder, a CSV manifest or one image file. A folder's cases are its image files
 * (.nii .nii.gz .hdr .mha .mhd .nrrd .nhdr; the nnU-Net channel suffix _0000 is dropped from the
 * id, files of channels _0001.. are skipped with a note), the DICOM series of its own DICOM files
 * and those of its sub-folders holding DICOM files (mk_io_dicom_list_series; id: the folder's
 * name, with _<SeriesInstanceUID> when it holds several series). A manifest's cases are its rows
 * (id, image; a row whose modality is not the model's fails). The cases are sorted by id; two
 * cases with one id are an error before anything runs.
 *
 * Every case gets OUTDIR/<id>.nii.gz (mk_io_write_image: temporary name, then rename) once
 * mk_infer_check_geometry has passed, then its completion record OUTDIR/.medkd-infer/<id>.json
 * (atomic, written after the mask's rename): the input's identity (real path, size, mtime in ns;
 * for a DICOM series the FNV-1a 64 of its folder's sorted file list with sizes and mtimes), the
 * model hash, the options that change the mask (step, tta, postprocess) and the FNV-1a 64 of the
 * mask file's bytes, one field per line. --continue skips a case only when the record it would
 * write now, the mask re-hashed, equals the stored one byte for byte; otherwise the record is
 * removed first, so a crash between the mask and its record leaves the case to redo. Temporary
 * files of earlier crashes (NAME.tmp.<pid>) of this run's cases are removed at start (all of
 * them when not sharded). A failed case is reported with its file and reason, its earlier mask
 * and record are removed, and the batch goes on (--fail-fast: stops); the summary
 * OUTDIR/infer.json (infer.<i>of<N>.json for a shard) is rewritten atomically after every case.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../config/mk_toml.h"
#include "../core/mk_fs.h"
#include "../io/mk_image.h"
#include "../io/mk_itk.h"
#include "../io/mk_manifest.h"
#include "../pipeline/mk_mpi.h"
#include "../stages/mk_histo_stage.h"
#include "../stages/mk_infer.h"
#include "../stages/mk_method.h"
#include "mk_verbs.h"

#ifndef MK_VERSION
#define MK_VERSION "unknown"
#endif

#define PATH_CAP 4096
#define RECORD_DIR ".medkd-infer"

/* ---------------------------------------------------------------- small helpers */

/* FNV-1a 64 of a file's bytes; 0 on success, -1 when it cannot be read. */
static int file_fnv(const char *path, uint64_t *out)
{
    enum { CHUNK = 1 << 20 };
    FILE *f = fopen(path, "rb");
    unsigned char *buf = malloc(CHUNK);
    if (!f || !buf) {
        if (f)
            fclose(f);
        free(buf);
        return -1;
    }
    uint64_t h = MK_FNV1A_OFFSET;
    size_t n;
    while ((n = fread(buf, 1, CHUNK, f)) > 0)
        h = mk_fnv1a(h, buf, n);
    int bad = ferror(f);
    fclose(f);
    free(buf);
    if (bad)
        return -1;
    *out = h;
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t l = strlen(s), e = strlen(suffix);
    return l >= e && strcmp(s + l - e, suffix) == 0;
}

static int ends_with_ci(const char *s, const char *suffix)
{
    size_t l = strlen(s), e = strlen(suffix);
    if (l < e)
        return 0;
    for (size_t i = 0; i < e; i++)
        if (tolower((unsigned char)s[l - e + i]) != tolower((unsigned char)suffix[i]))
            return 0;
    return 1;
}

/* Length of the image extension `name` ends in, 0 for none. */
static size_t image_ext(const char *name)
{
    static const char *const ext[] = {".nii.gz", ".nii", ".hdr.gz", ".hdr",
                                      ".mha",    ".mhd", ".nrrd",   ".nhdr"};
    size_t l = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t e = strlen(ext[i]);
        if (l > e && strcmp(name + l - e, ext[i]) == 0)
            return e;
    }
    return 0;
}

/* The nnU-Net channel of a stem "CASE_DDDD" (base "CASE" into buf), -1 when it has none. */
static int channel_of(const char *stem, char *buf, size_t n)
{
    size_t l = strlen(stem);
    if (l < 6 || stem[l - 5] != '_' || l - 5 >= n)
        return -1;
    for (size_t i = l - 4; i < l; i++)
        if (!isdigit((unsigned char)stem[i]))
            return -1;
    memcpy(buf, stem, l - 5);
    buf[l - 5] = '\0';
    return atoi(stem + l - 4);
}

/* 1 if name is a temporary file of an atomic write: PREFIX.tmp.<digits> (*prefix_len set). */
static int is_tmp_name(const char *name, size_t *prefix_len)
{
    const char *t = NULL;
    for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp."))
        t = p;
    if (!t || t == name || !t[5])
        return 0;
    for (const char *p = t + 5; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    if (prefix_len)
        *prefix_len = (size_t)(t - name);
    return 1;
}

static const char *base_name(const char *path, char *buf, size_t n)
{
    size_t l = strlen(path);
    while (l > 1 && path[l - 1] == '/')
        l--;
    size_t b = l;
    while (b > 0 && path[b - 1] != '/')
        b--;
    size_t k = l - b < n - 1 ? l - b : n - 1;
    memcpy(buf, path + b, k);
    buf[k] = '\0';
    if (strcmp(buf, ".") == 0 || strcmp(buf, "..") == 0 || !buf[0]) {
        char real[PATH_CAP];
        if (realpath(path, real) && strcmp(real, "/") != 0)
            return base_name(real, buf, n);
        snprintf(buf, n, "input");
    }
    return buf;
}

static char *join2(const char *dir, const char *name)
{
    size_t l = strlen(dir) + strlen(name) + 2;
    char *p = malloc(l);
    if (p)
        snprintf(p, l, "%s/%s", dir, name);
    return p;
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_maxrss / 1024.0; /* kB on Linux */
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of a folder's entries (hidden ones left out). Caller frees each and the array. */
static mk_status list_names(mk_ctx *ctx, const char *dir, char ***out, int *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    char **v = NULL;
    int nv = 0, cap = 0;
    struct dirent *de;
    mk_status st = MK_OK;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (nv == cap) {
            cap = cap ? 2 * cap : 64;
            char **nv2 = realloc(v, (size_t)cap * sizeof *v);
            if (!nv2) {
                st = mk_err(ctx, MK_ERR_NOMEM, "out of memory listing %s", dir);
                break;
            }
            v = nv2;
        }
        if (!(v[nv] = strdup(de->d_name))) {
            st = mk_err(ctx, MK_ERR_NOMEM, "out of memory listing %s", dir);
            break;
        }
        nv++;
    }
    closedir(d);
    if (st != MK_OK) {
        for (int i = 0; i < nv; i++)
            free(v[i]);
        free(v);
        return st;
    }
    if (nv > 1)
        qsort(v, (size_t)nv, sizeof *v, cmp_str);
    *out = v;
    *n = nv;
    return MK_OK;
}

static void names_free(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ---------------------------------------------------------------- the case list */

typedef struct icase {
    char *id;
    char *input;    /* the image file, or the DICOM folder */
    char *series;   /* DICOM: the SeriesInstanceUID, NULL: the folder's only series (ITK) */
    char *modality; /* manifest rows: the row's modality ("" none); NULL for files */
    int line;       /* manifest line, 0 otherwise */
    int dicom;
} icase;

typedef struct clist {
    icase *v;
    int n, cap;
    int other_channels; /* files of nnU-Net channels _0001.. skipped */
    char other_example[256];
    int ignored; /* files that are not images */
} clist;

static void clist_free(clist *L)
{
    for (int i = 0; i < L->n; i++) {
        free(L->v[i].id);
        free(L->v[i].input);
        free(L->v[i].series);
        free(L->v[i].modality);
    }
    free(L->v);
    memset(L, 0, sizeof *L);
}

static mk_status clist_add(mk_ctx *ctx, clist *L, const char *id, const char *input,
                           const char *series, const char *modality, int line, int dicom)
{
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 64;
        icase *v = realloc(L->v, (size_t)cap * sizeof *v);
        if (!v)
            return mk_err(ctx, MK_ERR_NOMEM, "out of memory listing the cases");
        L->v = v;
        L->cap = cap;
    }
    icase *c = &L->v[L->n];
    memset(c, 0, sizeof *c);
    c->id = strdup(id);
    c->input = strdup(input);
    c->series = series ? strdup(series) : NULL;
    c->modality = modality ? strdup(modality) : NULL;
    c->line = line;
    c->dicom = dicom;
    L->n++;
    if (!c->id || !c->input || (series && !c->series) || (modality && !c->modality))
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory listing the cases");
    return MK_OK;
}

/* A case id names a file in OUTDIR: not empty, no '/', not hidden, no control characters. */
static int valid_id(const char *id)
{
    if (!id[0] || id[0] == '.' || strlen(id) > 200)
        return 0;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if (*p == '/' || *p < 0x20)
            return 0;
    return 1;
}

static int is_dicom_file(const char *path, const char *name)
{
    return !image_ext(name) && (ends_with_ci(name, ".dcm") || mk_io_itk_can_read(path));
}

static int dir_has_dicom(const char *dir)
{
    char **names = NULL;
    int n = 0, found = 0;
    if (list_names(NULL, dir, &names, &n) != MK_OK)
        return 0;
    for (int i = 0; i < n && !found; i++) {
        char *p = join2(dir, names[i]);
        found = p && mk_fs_is_file(p) && is_dicom_file(p, names[i]);
        free(p);
    }
    names_free(names, n);
    return found;
}

static int cmp_series(const void *a, const void *b)
{
    return strcmp(((const mk_dicom_series *)a)->uid, ((const mk_dicom_series *)b)->uid);
}

/* The series of a DICOM folder as cases: id `idbase` for a single series, else
 * idbase_<SeriesInstanceUID>. A folder whose series cannot be listed becomes one case read by
 * ITK, so its reason is reported as that case's failure. */
static mk_status add_dicom_dir(mk_ctx *ctx, clist *L, const char *dir, const char *idbase)
{
    mk_dicom_series *s = NULL;
    int ns = 0;
    mk_status st = mk_io_dicom_list_series(ctx, dir, &s, &ns);
    if (st != MK_OK || ns == 0) {
        MK_LOG_W(ctx, "%s: cannot list its DICOM series (%s); read as one series", dir,
                 mk_ctx_errmsg(ctx));
        mk_err_clear(ctx);
        free(s);
        return clist_add(ctx, L, idbase, dir, NULL, NULL, 0, 1);
    }
    qsort(s, (size_t)ns, sizeof *s, cmp_series);
    if (ns > 1)
        MK_LOG_I(ctx, "%s: %d DICOM series, one case each (%s_<SeriesInstanceUID>)", dir, ns,
                 idbase);
    st = MK_OK;
    for (int i = 0; i < ns && st == MK_OK; i++) {
        char id[512];
        if (ns == 1) {
            snprintf(id, sizeof id, "%s", idbase);
        } else {
            char uid[sizeof s[i].uid];
            size_t k = 0;
            for (const char *p = s[i].uid; *p && k + 1 < sizeof uid; p++)
                uid[k++] = isalnum((unsigned char)*p) || *p == '.' || *p == '-' ? *p : '_';
            uid[k] = '\0';
            snprintf(id, sizeof id, "%s_%s", idbase, uid);
        }
        st = clist_add(ctx, L, id, dir, s[i].uid, NULL, 0, 1);
    }
    free(s);
    return st;
}

static mk_status scan_folder(mk_ctx *ctx, const char *dir, clist *L)
{
    char **names = NULL;
    int n = 0, ndicom = 0;
    mk_status st = list_names(ctx, dir, &names, &n);
    for (int i = 0; i < n && st == MK_OK; i++) {
        const char *name = names[i];
        if (is_tmp_name(name, NULL))
            continue;
        char *path = join2(dir, name);
        if (!path) {
            st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
            break;
        }
        struct stat sb;
        if (stat(path, &sb) != 0) {
            L->ignored++;
        } else if (S_ISDIR(sb.st_mode)) {
            if (dir_has_dicom(path))
                st = add_dicom_dir(ctx, L, path, name);
        } else if (S_ISREG(sb.st_mode)) {
            size_t el = image_ext(name);
            if (el) {
                char stem[1024], base[1024];
                size_t sl = strlen(name) - el;
                if (sl >= sizeof stem) {
                    st = mk_err(ctx, MK_ERR_INVALID, "%s: file name too long", path);
                } else {
                    memcpy(stem, name, sl);
                    stem[sl] = '\0';
                    int ch = channel_of(stem, base, sizeof base);
                    if (ch > 0) {
                        if (!L->other_channels++)
                            snprintf(L->other_example, sizeof L->other_example, "%s", path);
                    } else {
                        st = clist_add(ctx, L, ch == 0 ? base : stem, path, NULL, NULL, 0, 0);
                    }
                }
            } else if (is_dicom_file(path, name)) {
                ndicom++;
            } else {
                L->ignored++;
                MK_LOG_D(ctx, "%s: not an image file, ignored", path);
            }
        }
        free(path);
    }
    names_free(names, n);
    if (st == MK_OK && ndicom > 0) {
        char b[256];
        st = add_dicom_dir(ctx, L, dir, base_name(dir, b, sizeof b));
    }
    return st;
}

static mk_status scan_manifest(mk_ctx *ctx, const char *path, clist *L)
{
    mk_manifest *m = NULL;
    mk_status st = mk_manifest_read(ctx, path, &m);
    for (int i = 0; st == MK_OK && i < m->nrows; i++) {
        const mk_manifest_row *r = &m->rows[i];
        st = clist_add(ctx, L, r->id, r->image_path, NULL, r->modality, r->line,
                       mk_fs_is_dir(r->image_path));
    }
    mk_manifest_free(m);
    return st;
}

static int cmp_case(const void *a, const void *b)
{
    return strcmp(((const icase *)a)->id, ((const icase *)b)->id);
}

static void where(const icase *c, const char *input, char *buf, size_t n)
{
    if (c->line > 0)
        snprintf(buf, n, "%s:%d (%s)", input, c->line, c->input);
    else if (c->series)
        snprintf(buf, n, "%s (series %s)", c->input, c->series);
    else
        snprintf(buf, n, "%s", c->input);
}

/* The cases of INPUT, sorted by id, ids checked. */
static mk_status list_cases(mk_ctx *ctx, const char *input, clist *L)
{
    memset(L, 0, sizeof *L);
    struct stat sb;
    if (stat(input, &sb) != 0)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot read the input: %s", input, strerror(errno));
    mk_status st = MK_OK;
    char p[PATH_CAP];
    if (S_ISDIR(sb.st_mode)) {
        snprintf(p, sizeof p, "%s/dataset.json", input);
        char ptr[PATH_CAP], pts[PATH_CAP];
        snprintf(ptr, sizeof ptr, "%s/imagesTr", input);
        snprintf(pts, sizeof pts, "%s/imagesTs", input);
        if (mk_fs_is_file(p) && (mk_fs_is_dir(ptr) || mk_fs_is_dir(pts)))
            return mk_err(ctx, MK_ERR_USAGE,
                          "%s is an nnU-Net dataset folder: give its imagesTs/ (or imagesTr/) "
                          "folder, or a manifest ('pipeline import'), as -i",
                          input);
        st = scan_folder(ctx, input, L);
    } else if (ends_with_ci(input, ".csv")) {
        st = scan_manifest(ctx, input, L);
    } else if (ends_with_ci(input, ".json")) {
        return mk_err(ctx, MK_ERR_USAGE,
                      "%s: a JSON file is not an input; give a folder, a manifest (.csv) or an "
                      "image",
                      input);
    } else {
        char b[1024], stem[1024], base[1024];
        base_name(input, b, sizeof b);
        size_t el = image_ext(b);
        if (!el && ends_with_ci(b, ".dcm"))
            el = 4;
        snprintf(stem, sizeof stem, "%.*s", (int)(strlen(b) - el), b);
        int ch = channel_of(stem, base, sizeof base);
        st = clist_add(ctx, L, ch == 0 ? base : stem, input, NULL, NULL, 0, 0);
    }
    if (st != MK_OK) {
        clist_free(L);
        return st;
    }
    if (L->other_channels)
        MK_LOG_I(ctx,
                 "%d file(s) of nnU-Net channels other than _0000 skipped (the model takes one "
                 "channel), e.g. %s",
                 L->other_channels, L->other_example);
    if (L->n == 0) {
        st = mk_err(ctx, MK_ERR_NOT_FOUND,
                    "%s: no case found (looked for .nii, .nii.gz, .hdr, .mha, .mhd, .nrrd, .nhdr "
                    "files and DICOM series; %d other file(s))",
                    input, L->ignored);
        clist_free(L);
        return st;
    }
    qsort(L->v, (size_t)L->n, sizeof *L->v, cmp_case);
    for (int i = 0; i < L->n; i++) {
        char w[PATH_CAP + 64];
        where(&L->v[i], input, w, sizeof w);
        if (!valid_id(L->v[i].id)) {
            st = mk_err(ctx, MK_ERR_INVALID,
                        "%s: case id '%s' cannot name a mask file (empty, hidden, longer than "
                        "200 bytes, or holding '/')",
                        w, L->v[i].id);
            break;
        }
        if (i > 0 && strcmp(L->v[i].id, L->v[i - 1].id) == 0) {
            char w0[PATH_CAP + 64];
            where(&L->v[i - 1], input, w0, sizeof w0);
            st = mk_err(ctx, MK_ERR_INVALID,
                        "two cases with the id '%s': %s and %s (each case writes <id>.nii.gz); "
                        "nothing was run",
                        L->v[i].id, w0, w);
            break;
        }
    }
    if (st != MK_OK)
        clist_free(L);
    return st;
}

/* ---------------------------------------------------------------- the model */

/* The default model of a run directory (see the top of this file) into out. */
static mk_status run_default_model(mk_ctx *ctx, const char *dir, char *out, size_t n)
{
    char cfgp[PATH_CAP], mdir[PATH_CAP];
    snprintf(cfgp, sizeof cfgp, "%s/config.resolved.toml", dir);
    snprintf(mdir, sizeof mdir, "%s/models", dir);
    if (!mk_fs_is_dir(mdir))
        return mk_err(ctx, MK_ERR_NOT_FOUND,
                      "-m %s: a folder without models/ (expected a model file or a run directory)",
                      dir);
    if (mk_fs_is_file(cfgp)) {
        mk_ctx tmp;
        mk_ctx_init(&tmp);
        mk_toml_doc *doc = NULL;
        if (mk_toml_parse_file(&tmp, cfgp, &doc) == MK_OK) {
            const mk_toml_value *run = mk_toml_table_get(mk_toml_root(doc), "run");
            const mk_toml_value *stages = mk_toml_table_get(run, "stages");
            const mk_toml_value *ev = mk_toml_table_get(mk_toml_root(doc), "evaluate");
            const mk_toml_value *em = mk_toml_table_get(ev, "model");
            int best = !(em && mk_toml_type_of(em) == MK_TOML_STRING &&
                         strcmp(mk_toml_string(em, NULL), "last") == 0);
            char looked[1024] = "";
            size_t ns =
                stages && mk_toml_type_of(stages) == MK_TOML_ARRAY ? mk_toml_array_len(stages) : 0;
            for (size_t i = 0; i < ns; i++) {
                const mk_toml_value *s = mk_toml_array_at(stages, i);
                const mk_method *m = mk_toml_type_of(s) == MK_TOML_STRING
                                         ? mk_method_find(mk_toml_string(s, NULL))
                                         : NULL;
                if (!m || m->noutputs < 1)
                    continue;
                const char *f = m->outputs[0].file;
                char last[PATH_CAP], bp[PATH_CAP];
                snprintf(last, sizeof last, "%s/%s", dir, f);
                snprintf(bp, sizeof bp, "%s/%.*s_best.h5", dir, (int)(strlen(f) - 3), f);
                const char *pick = best && mk_fs_is_file(bp) ? bp
                                   : mk_fs_is_file(last)     ? last
                                                             : NULL;
                if (pick) {
                    mk_toml_free(doc);
                    snprintf(out, n, "%s", pick);
                    MK_LOG_I(ctx, "model of the run %s: %s (the first model of run.stages, %s)",
                             dir, pick, best ? "its best copy when present" : "evaluate.model");
                    return MK_OK;
                }
                size_t l = strlen(looked);
                snprintf(looked + l, sizeof looked - l, "%s%s", l ? ", " : "", f);
            }
            mk_toml_free(doc);
            if (looked[0])
                return mk_err(ctx, MK_ERR_NOT_FOUND,
                              "-m %s: the run's models are missing (%s): has it finished?", dir,
                              looked);
        } else {
            MK_LOG_W(ctx, "%s: %s; choosing the model from models/", cfgp, mk_ctx_errmsg(&tmp));
        }
    }
    char **names = NULL;
    int nn = 0;
    mk_status st = list_names(ctx, mdir, &names, &nn);
    if (st != MK_OK)
        return st;
    static const char *const suffix[] = {"_student_best.h5", "_student.h5"};
    for (int pass = 0; pass < 2; pass++) {
        int k = 0, first = -1;
        char cands[1024] = "";
        for (int i = 0; i < nn; i++) {
            if (!ends_with(names[i], suffix[pass]) || (pass == 1 && ends_with(names[i], suffix[0])))
                continue;
            if (first < 0)
                first = i;
            k++;
            size_t l = strlen(cands);
            snprintf(cands + l, sizeof cands - l, "%s%s", l ? ", " : "", names[i]);
        }
        if (k > 1) {
            names_free(names, nn);
            return mk_err(ctx, MK_ERR_USAGE,
                          "-m %s: several models in %s (%s): name one with -m %s/FILE", dir, mdir,
                          cands, mdir);
        }
        if (k == 1) {
            int w = snprintf(out, n, "%s/%s", mdir, names[first]);
            names_free(names, nn);
            if (w < 0 || (size_t)w >= n)
                return mk_err(ctx, MK_ERR_INVALID, "%s: path too long", mdir);
            MK_LOG_I(ctx, "model of the run %s: %s", dir, out);
            return MK_OK;
        }
    }
    names_free(names, nn);
    return mk_err(ctx, MK_ERR_NOT_FOUND,
                  "-m %s: no model in %s (looked for *_student_best.h5, then *_student.h5)", dir,
                  mdir);
}

/* ---------------------------------------------------------------- completion records */

/* What identifies a case's input. */
typedef struct ident {
    char path[PATH_CAP]; /* real path */
    long long size, mtime_ns;
    int has_img; /* .hdr: the .img beside it */
    long long img_size, img_mtime_ns;
    int nfiles; /* DICOM: files of the folder */
    uint64_t listing;
} ident;

static long long mtime_ns(const struct stat *sb)
{
    return (long long)sb->st_mtim.tv_sec * 1000000000LL + (long long)sb->st_mtim.tv_nsec;
}

static mk_status input_ident(mk_ctx *ctx, const icase *c, ident *id)
{
    memset(id, 0, sizeof *id);
    if (!realpath(c->input, id->path))
        return mk_err(ctx, MK_ERR_IO, "%s: %s", c->input, strerror(errno));
    struct stat sb;
    if (stat(id->path, &sb) != 0)
        return mk_err(ctx, MK_ERR_IO, "%s: %s", c->input, strerror(errno));
    id->size = (long long)sb.st_size;
    id->mtime_ns = mtime_ns(&sb);
    if (c->dicom && S_ISDIR(sb.st_mode)) {
        char **names = NULL;
        int n = 0;
        mk_status st = list_names(ctx, id->path, &names, &n);
        if (st != MK_OK)
            return st;
        uint64_t h = MK_FNV1A_OFFSET;
        for (int i = 0; i < n; i++) {
            char *p = join2(id->path, names[i]);
            struct stat fb;
            if (p && stat(p, &fb) == 0 && S_ISREG(fb.st_mode)) {
                char line[64];
                int k = snprintf(line, sizeof line, "\n%lld\n%lld\n", (long long)fb.st_size,
                                 mtime_ns(&fb));
                h = mk_fnv1a(mk_fnv1a(h, names[i], strlen(names[i])), line, (size_t)k);
                id->nfiles++;
            }
            free(p);
        }
        names_free(names, n);
        id->listing = h;
        id->size = id->mtime_ns = 0;
    } else if (ends_with(id->path, ".hdr") || ends_with(id->path, ".hdr.gz")) {
        char img[PATH_CAP + 8];
        size_t l = strlen(id->path) - (ends_with(id->path, ".gz") ? 7 : 4);
        snprintf(img, sizeof img, "%.*s%s", (int)l, id->path,
                 ends_with(id->path, ".gz") ? ".img.gz" : ".img");
        struct stat ib;
        if (stat(img, &ib) == 0) {
            id->has_img = 1;
            id->img_size = (long long)ib.st_size;
            id->img_mtime_ns = mtime_ns(&ib);
        }
    }
    return MK_OK;
}

typedef struct record_in {
    const icase *c;
    const ident *id;
    const char *model_hash;
    const mk_infer_opts *o;
    uint64_t mask_hash;
} record_in;

/* One field a line, so the first differing line names what changed. */
static void print_record(FILE *f, const void *arg)
{
    const record_in *r = arg;
    fprintf(f, "{\n\"format\": \"medkd-infer-record\",\n\"version\": 1,\n\"case\": ");
    mk_json_put(f, r->c->id);
    fprintf(f, ",\n\"input_path\": ");
    mk_json_put(f, r->id->path);
    if (r->c->dicom) {
        fprintf(f, ",\n\"input_series_uid\": ");
        mk_json_put(f, r->c->series ? r->c->series : "");
        fprintf(f, ",\n\"input_files\": %d,\n\"input_listing\": \"fnv1a64:%016" PRIx64 "\"",
                r->id->nfiles, r->id->listing);
    } else {
        fprintf(f, ",\n\"input_size\": %lld,\n\"input_mtime_ns\": %lld", r->id->size,
                r->id->mtime_ns);
        if (r->id->has_img)
            fprintf(f, ",\n\"input_img_size\": %lld,\n\"input_img_mtime_ns\": %lld",
                    r->id->img_size, r->id->img_mtime_ns);
    }
    fprintf(f, ",\n\"model_hash\": ");
    mk_json_put(f, r->model_hash);
    fprintf(f, ",\n\"step\": %.17g,\n\"tta\": %s,\n\"postprocess\": %s,\n\"output\": ", r->o->step,
            r->o->tta ? "true" : "false", r->o->postprocess ? "true" : "false");
    char name[256 + 8];
    snprintf(name, sizeof name, "%s.nii.gz", r->c->id);
    mk_json_put(f, name);
    fprintf(f, ",\n\"output_fnv1a64\": \"fnv1a64:%016" PRIx64 "\"\n}\n", r->mask_hash);
}

static char *record_text(const record_in *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    print_record(f, r);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* 1 when the stored record equals the one this run would write; else why (n bytes) says what
 * differs. */
static int record_matches(const char *recp, const char *maskp, record_in *r, char *why, size_t n)
{
    mk_ctx q;
    mk_ctx_init(&q);
    char *old = NULL;
    size_t olen = 0;
    if (!mk_fs_is_file(recp) || mk_fs_read_all(&q, recp, &old, &olen) != MK_OK) {
        snprintf(why, n, "no completion record");
        return 0;
    }
    if (file_fnv(maskp, &r->mask_hash) != 0) {
        free(old);
        snprintf(why, n, "its mask is missing");
        return 0;
    }
    char *now = record_text(r);
    int same = now && strcmp(now, old) == 0;
    if (!same && now) {
        /* the first differing line names the field */
        const char *a = old, *b = now;
        while (*a && *b) {
            const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
            size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
            if (la != lb || memcmp(a, b, la) != 0)
                break;
            a += la + (ea ? 1 : 0);
            b += lb + (eb ? 1 : 0);
        }
        char key[64] = "";
        if (b[0] == '"') {
            const char *e = strchr(b + 1, '"');
            if (e && (size_t)(e - b - 1) < sizeof key)
                snprintf(key, sizeof key, "%.*s", (int)(e - b - 1), b + 1);
        }
        if (strcmp(key, "output_fnv1a64") == 0)
            snprintf(why, n, "the mask's checksum differs from its record (truncated or changed)");
        else if (key[0])
            snprintf(why, n, "its record differs in %s", key);
        else
            snprintf(why, n, "its record differs");
    }
    free(old);
    free(now);
    return same;
}

/* ---------------------------------------------------------------- the batch */

enum { CASE_NONE = 0, CASE_OK, CASE_SKIPPED, CASE_FAILED };

typedef struct result {
    int status;
    char *error;
    mk_infer_times t;
    double total, rss_mb;
} result;

typedef struct job {
    const char *model_path, *input, *outdir;
    const mk_infer_model *m;
    mk_infer_opts o;
    int cont, fail_fast;
    int shard_i, shard_n;
    const char *shard_src;
    const icase *cases; /* this shard's */
    int ncases, nall;
    result *res;
    int stopped; /* --fail-fast or cancel: cases after the last result were not run */
    int complete;
    double t0;
    char recdir[PATH_CAP], summary[PATH_CAP];
} job;

static void mask_path(const job *J, const icase *c, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s.nii.gz", J->outdir, c->id);
}

static void record_path(const job *J, const icase *c, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s.json", J->recdir, c->id);
}

static const char *status_name(int s)
{
    return s == CASE_OK        ? "ok"
           : s == CASE_SKIPPED ? "skipped"
           : s == CASE_FAILED  ? "failed"
                               : "not run";
}

static void print_summary(FILE *f, const void *arg)
{
    const job *J = arg;
    int nok = 0, nskip = 0, nfail = 0, nrun = 0;
    fprintf(f, "{\n  \"model\": ");
    mk_json_put(f, J->model_path);
    fprintf(f, ",\n  \"model_hash\": ");
    mk_json_put(f, J->m->model_hash);
    fprintf(f, ",\n  \"medkd_version\": ");
    mk_json_put(f, MK_VERSION);
    fprintf(f, ",\n  \"input\": ");
    mk_json_put(f, J->input);
    fprintf(f, ",\n  \"output_dir\": ");
    mk_json_put(f, J->outdir);
    fprintf(f,
            ",\n  \"options\": {\"step\": %.17g, \"tta\": %s, \"postprocess\": %s, \"threads\": "
            "%d, \"continue\": %s, \"fail_fast\": %s},\n",
            J->o.step, J->o.tta ? "true" : "false", J->o.postprocess ? "true" : "false",
            J->o.threads, J->cont ? "true" : "false", J->fail_fast ? "true" : "false");
    fprintf(f, "  \"shard\": {\"index\": %d, \"count\": %d, \"from\": ", J->shard_i, J->shard_n);
    if (J->shard_src)
        mk_json_put(f, J->shard_src);
    else
        fprintf(f, "null");
    fprintf(f, ", \"cases_in_input\": %d},\n  \"cases\": [", J->nall);
    for (int i = 0; i < J->ncases; i++) {
        const icase *c = &J->cases[i];
        const result *r = &J->res[i];
        if (r->status == CASE_NONE)
            continue;
        char mp[PATH_CAP + 300];
        mask_path(J, c, mp, sizeof mp);
        fprintf(f, "%s\n    {\"id\": ", nrun++ ? "," : "");
        mk_json_put(f, c->id);
        fprintf(f, ", \"input\": ");
        mk_json_put(f, c->input);
        if (c->series) {
            fprintf(f, ", \"series_uid\": ");
            mk_json_put(f, c->series);
        }
        fprintf(f, ", \"output\": ");
        if (r->status == CASE_FAILED)
            fprintf(f, "null");
        else
            mk_json_put(f, mp);
        fprintf(f, ", \"status\": \"%s\"", status_name(r->status));
        if (r->error) {
            fprintf(f, ", \"error\": ");
            mk_json_put(f, r->error);
        }
        fprintf(f,
                ", \"seconds\": {\"read\": %.3f, \"preprocess\": %.3f, \"network\": %.3f, "
                "\"postprocess\": %.3f, \"write\": %.3f, \"total\": %.3f, \"forward\": %.3f}, "
                "\"peak_rss_mb\": %.1f}",
                r->t.read, r->t.preprocess, r->t.network, r->t.postprocess, r->t.write, r->total,
                r->t.forward, r->rss_mb);
        nok += r->status == CASE_OK;
        nskip += r->status == CASE_SKIPPED;
        nfail += r->status == CASE_FAILED;
    }
    fprintf(f, "%s],\n", nrun ? "\n  " : "");
    fprintf(f,
            "  \"counts\": {\"ok\": %d, \"skipped\": %d, \"failed\": %d, \"not_run\": %d},\n"
            "  \"failures\": %d,\n  \"complete\": %s,\n  \"peak_rss_mb\": %.1f,\n"
            "  \"wall_s\": %.3f\n}\n",
            nok, nskip, nfail, J->ncases - nrun, nfail, J->complete ? "true" : "false",
            peak_rss_mb(), mk_now_s() - J->t0);
}

static mk_status read_case(mk_ctx *ctx, const icase *c, mk_image **img)
{
    if (c->dicom && c->series)
        return mk_io_dicom_read(ctx, c->input, c->series, img);
    return mk_io_read_image(ctx, c->input, img);
}

/* One case: MK_OK with r->status ok or skipped, or the case's error in ctx. */
static mk_status run_case(mk_ctx *ctx, const job *J, const icase *c, result *r)
{
    char mp[PATH_CAP + 300], rp[PATH_CAP + 300];
    mask_path(J, c, mp, sizeof mp);
    record_path(J, c, rp, sizeof rp);
    ident id;
    mk_status st = input_ident(ctx, c, &id);
    if (st != MK_OK)
        return st;
    record_in rin = {c, &id, J->m->model_hash, &J->o, 0};
    if (J->cont) {
        char why[512];
        if (record_matches(rp, mp, &rin, why, sizeof why)) {
            r->status = CASE_SKIPPED;
            return MK_OK;
        }
        MK_LOG_I(ctx, "%s: redone: %s", c->id, why);
    }
    /* no record while the mask may be rewritten: a crash from here on leaves the case to redo */
    if (unlink(rp) != 0 && errno != ENOENT)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot remove the old completion record: %s", rp,
                      strerror(errno));
    double t = mk_now_s();
    mk_image *img = NULL, *mask = NULL;
    st = read_case(ctx, c, &img);
    r->t.read = mk_now_s() - t;
    if (st == MK_OK && c->modality && c->modality[0] && J->m->modality[0] &&
        strcasecmp(c->modality, J->m->modality) != 0)
        st = mk_err(ctx, MK_ERR_INVALID, "modality %s: the model was trained on %s", c->modality,
                    J->m->modality);
    mk_infer_times it;
    memset(&it, 0, sizeof it);
    if (st == MK_OK)
        st = mk_infer_volume(ctx, J->m, &J->o, img, &mask, &it);
    r->t.preprocess = it.preprocess;
    r->t.network = it.network;
    r->t.postprocess = it.postprocess;
    r->t.forward = it.forward;
    if (st == MK_OK)
        st = mk_infer_check_geometry(ctx, img, mask);
    mk_image_free(img);
    t = mk_now_s();
    if (st == MK_OK)
        st = mk_io_write_image(ctx, mp, mask);
    mk_image_free(mask);
    if (st == MK_OK && file_fnv(mp, &rin.mask_hash) != 0)
        st = mk_err(ctx, MK_ERR_IO, "%s: cannot read the mask back: %s", mp, strerror(errno));
    if (st == MK_OK) {
        char *txt = record_text(&rin);
        st = txt ? mk_fs_write_atomic(ctx, rp, txt, strlen(txt))
                 : mk_err(ctx, MK_ERR_NOMEM, "out of memory");
        free(txt);
    }
    r->t.write = mk_now_s() - t;
    if (st == MK_OK)
        r->status = CASE_OK;
    return st;
}

/* Leftover temporary files (NAME.tmp.<pid>) of earlier crashed runs in dir: those of this
 * shard's outputs, <id><ext> and with `summary` its summary file (all of them when not sharded:
 * other shards may be writing theirs now). */
static void remove_leftovers(mk_ctx *ctx, const job *J, const char *dir, const char *ext,
                             int summary)
{
    char **names = NULL;
    int n = 0;
    mk_ctx q;
    mk_ctx_init(&q);
    if (list_names(&q, dir, &names, &n) != MK_OK)
        return;
    const char *sb = strrchr(J->summary, '/');
    sb = sb ? sb + 1 : J->summary;
    const size_t el = strlen(ext);
    for (int i = 0; i < n; i++) {
        size_t pl;
        if (!is_tmp_name(names[i], &pl))
            continue;
        int mine = J->shard_n == 1 || (summary && pl == strlen(sb) && !strncmp(names[i], sb, pl));
        for (int k = 0; k < J->ncases && !mine; k++) {
            size_t il = strlen(J->cases[k].id);
            mine = pl == il + el && strncmp(names[i], J->cases[k].id, il) == 0 &&
                   strncmp(names[i] + il, ext, el) == 0;
        }
        if (!mine)
            continue;
        char *p = join2(dir, names[i]);
        if (p && unlink(p) == 0)
            MK_LOG_I(ctx, "removed %s (left by an interrupted run)", p);
        free(p);
    }
    names_free(names, n);
}

/* ---------------------------------------------------------------- options */

/* The batch's table on stdout: a line per case, then the counts. */
static void print_table(const job *J)
{
    int n[4] = {0, 0, 0, 0};
    printf("%-32s %-8s %8s  %s\n", "case", "status", "seconds", "output / error");
    for (int i = 0; i < J->ncases; i++) {
        const result *r = &J->res[i];
        char mp[PATH_CAP + 300];
        mask_path(J, &J->cases[i], mp, sizeof mp);
        n[r->status]++;
        printf("%-32s %-8s %8.2f  %s\n", J->cases[i].id, status_name(r->status), r->total,
               r->status == CASE_FAILED ? (r->error ? r->error : "")
               : r->status              ? mp
                                        : "");
    }
    printf("%d case(s): %d written, %d skipped, %d failed%s; summary %s\n", J->ncases, n[CASE_OK],
           n[CASE_SKIPPED], n[CASE_FAILED], n[CASE_NONE] ? ", the rest not run" : "", J->summary);
}

/* Under MPI (more than one rank): every rank sends rank 0 its cases' results; rank 0 writes
 * OUTDIR/infer.json for the whole input, as one process would (shard: index 0 of 1, from
 * "MPI", with the rank count), and removes the ranks' infer.<r>of<P>.json once it has. A rank
 * whose batch failed (st) sends a flag instead, and the ranks' files stay. A collective: every
 * rank calls it. One record per case: status, eight times, the error's length and bytes. */
enum { REC_DOUBLES = 8 };

static mk_status merge_ranks(mk_ctx *ctx, job *J, const clist *L, mk_status st)
{
    size_t cap = 2 * sizeof(int), n = 0;
    for (int k = 0; k < J->ncases; k++)
        cap += 2 * sizeof(int) + REC_DOUBLES * sizeof(double) +
               (J->res[k].error ? strlen(J->res[k].error) : 0);
    char *buf = malloc(cap);
    if (!buf)
        return mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    int head[2] = {st == MK_OK ? J->complete : -1, J->ncases};
    memcpy(buf, head, sizeof head);
    n = sizeof head;
    for (int k = 0; k < J->ncases; k++) {
        const result *r = &J->res[k];
        int e = r->error ? (int)strlen(r->error) : 0;
        double d[REC_DOUBLES] = {r->t.read,  r->t.preprocess, r->t.network, r->t.postprocess,
                                 r->t.write, r->t.forward,    r->total,     r->rss_mb};
        memcpy(buf + n, &r->status, sizeof(int));
        memcpy(buf + n + sizeof(int), &e, sizeof(int));
        memcpy(buf + n + 2 * sizeof(int), d, sizeof d);
        n += 2 * sizeof(int) + sizeof d;
        if (e)
            memcpy(buf + n, r->error, (size_t)e);
        n += (size_t)e;
    }
    char *all = NULL;
    size_t *counts = NULL;
    mk_status ms = mk_mpi_gather_bytes(ctx, buf, n, &all, &counts);
    free(buf);
    if (ms != MK_OK || mk_mpi_rank() != 0)
        return ms;
    int P = mk_mpi_size(), ok = 1, complete = 1;
    result *res = calloc((size_t)L->n, sizeof *res);
    if (!res)
        ms = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    size_t off = 0;
    for (int r = 0; ms == MK_OK && r < P; r++) {
        const char *p = all + off, *end = all + off + counts[r];
        off += counts[r];
        int h[2];
        memcpy(h, p, sizeof h);
        p += sizeof h;
        if (h[0] < 0) {
            ok = 0;
            continue;
        }
        complete = complete && h[0];
        for (int k = 0; k < h[1]; k++) {
            int i = r + k * P, e;
            if (i >= L->n || p + 2 * sizeof(int) + REC_DOUBLES * sizeof(double) > end) {
                ms = mk_err(ctx, MK_ERR_INVALID, "MPI merge: rank %d sent a malformed record", r);
                break;
            }
            double d[REC_DOUBLES];
            memcpy(&res[i].status, p, sizeof(int));
            memcpy(&e, p + sizeof(int), sizeof(int));
            memcpy(d, p + 2 * sizeof(int), sizeof d);
            p += 2 * sizeof(int) + sizeof d;
            res[i].t.read = d[0];
            res[i].t.preprocess = d[1];
            res[i].t.network = d[2];
            res[i].t.postprocess = d[3];
            res[i].t.write = d[4];
            res[i].t.forward = d[5];
            res[i].total = d[6];
            res[i].rss_mb = d[7];
            if (e > 0 && p + e <= end && (res[i].error = malloc((size_t)e + 1))) {
                memcpy(res[i].error, p, (size_t)e);
                res[i].error[e] = 0;
            }
            p += e;
        }
    }
    if (ms == MK_OK && ok) {
        job M = *J;
        M.cases = L->v;
        M.ncases = L->n;
        M.res = res;
        M.shard_i = 0;
        M.shard_n = 1;
        M.complete = complete;
        char from[48];
        snprintf(from, sizeof from, "MPI, %d ranks", P);
        M.shard_src = from;
        snprintf(M.summary, sizeof M.summary, "%s/infer.json", J->outdir);
        ms = mk_fs_write_atomic_printed(ctx, M.summary, print_summary, &M);
        for (int r = 0; ms == MK_OK && r < P; r++) {
            char f[PATH_CAP + 64];
            snprintf(f, sizeof f, "%s/infer.%dof%d.json", J->outdir, r, P);
            unlink(f);
        }
        if (ms == MK_OK)
            print_table(&M);
    }
    for (int i = 0; res && i < L->n; i++)
        free(res[i].error);
    free(res);
    free(all);
    free(counts);
    return ms;
}

static mk_status parse_shard(mk_ctx *ctx, const char *s, int *i, int *n)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (end == s || *end != '/' || errno)
        return mk_err(ctx, MK_ERR_USAGE, "--shard: expected i/N (e.g. 0/4), got '%s'", s);
    const char *q = end + 1;
    long b = strtol(q, &end, 10);
    if (end == q || *end || errno || b < 1 || b > 1000000 || a < 0 || a >= b)
        return mk_err(ctx, MK_ERR_USAGE,
                      "--shard: expected i/N with N >= 1 and 0 <= i < N, got '%s'", s);
    *i = (int)a;
    *n = (int)b;
    return MK_OK;
}

static int env_long(const char *name, long *v)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    *v = strtol(s, &end, 10);
    return *end || errno ? -1 : 1;
}

/* SLURM_ARRAY_TASK_ID / _COUNT (and _MIN, _STEP: i = (ID - MIN) / STEP): 0 when not in an
 * array job. */
static mk_status slurm_shard(mk_ctx *ctx, int *i, int *n, int *found)
{
    long id, count, lo = 0, step = 1;
    *found = 0;
    int r = env_long("SLURM_ARRAY_TASK_ID", &id);
    if (r == 0)
        return MK_OK;
    int rc = env_long("SLURM_ARRAY_TASK_COUNT", &count);
    int rm = env_long("SLURM_ARRAY_TASK_MIN", &lo);
    int rs = env_long("SLURM_ARRAY_TASK_STEP", &step);
    if (r < 0 || rc <= 0 || rm < 0 || rs < 0 || count < 1 || step < 1)
        return mk_err(ctx, MK_ERR_USAGE,
                      "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_ID/_COUNT/_MIN/_STEP do "
                      "not describe an array (ID '%s', COUNT '%s'); give --shard i/N",
                      getenv("SLURM_ARRAY_TASK_ID"),
                      getenv("SLURM_ARRAY_TASK_COUNT") ? getenv("SLURM_ARRAY_TASK_COUNT") : "");
    long k = id - lo;
    if (k < 0 || k % step != 0 || k / step >= count)
        return mk_err(ctx, MK_ERR_USAGE,
                      "SLURM_ARRAY_TASK_ID %ld is not task %ld + %ld x j (j < %ld, from "
                      "SLURM_ARRAY_TASK_MIN/_STEP/_COUNT); for other arrays give --shard i/N",
                      id, lo, step, count);
    *i = (int)(k / step);
    *n = (int)count;
    *found = 1;
    return MK_OK;
}

/* ---------------------------------------------------------------- slides */

/* A patch classifier (stages/mk_histo_stage.h) on one slide or every .tif/.tiff of a folder:
 * per slide a CSV of patch probabilities and a heat map; a bad slide is reported, the others
 * go on (exit 1 at the end). */
static mk_status infer_slides(mk_ctx *ctx, const char *model, const char *input, const char *outdir,
                              int threads)
{
    char **names = NULL, **paths = NULL;
    int n = 0, np = 0;
    mk_status st = MK_OK;
    if (mk_fs_is_dir(input)) {
        if ((st = list_names(ctx, input, &names, &n)) != MK_OK)
            return st;
        paths = calloc((size_t)(n > 0 ? n : 1), sizeof *paths);
        if (!paths)
            st = mk_err(ctx, MK_ERR_NOMEM, "infer: out of memory");
        for (int i = 0; st == MK_OK && i < n; i++)
            if (ends_with_ci(names[i], ".tif") || ends_with_ci(names[i], ".tiff")) {
                if (!(paths[np] = join2(input, names[i])))
                    st = mk_err(ctx, MK_ERR_NOMEM, "infer: out of memory");
                else
                    np++;
            }
        if (st == MK_OK && np == 0)
            st = mk_err(ctx, MK_ERR_USAGE, "infer: %s holds no slide (.tif, .tiff)", input);
    } else if (mk_fs_is_file(input)) {
        paths = calloc(1, sizeof *paths);
        size_t len = strlen(input) + 1;
        if (!paths || !(paths[0] = malloc(len)))
            st = mk_err(ctx, MK_ERR_NOMEM, "infer: out of memory");
        else {
            memcpy(paths[0], input, len);
            np = 1;
        }
    } else {
        st = mk_err(ctx, MK_ERR_IO, "infer: %s: no such file or folder", input);
    }
    int failed = 0;
    if (st == MK_OK)
        st = mk_histo_infer(ctx, model, (const char *const *)paths, np, outdir, threads, &failed);
    for (int i = 0; paths && i < np; i++)
        free(paths[i]);
    free(paths);
    names_free(names, n);
    return st;
}

/* ---------------------------------------------------------------- verb */

mk_status mk_verb_infer(mk_cli *cli, int argc, char **argv)
{
    mk_ctx *ctx = cli->ctx;
    const char *model = NULL, *input = NULL, *outdir = NULL, *shard = NULL;
    mk_infer_opts o;
    mk_infer_opts_default(&o);
    long long threads = 0;
    int cont = 0, fail_fast = 0;
    mk_status st = MK_OK;
    mk_args a;
    mk_args_init(&a, argc, argv);
    while (st == MK_OK && mk_args_next(&a)) {
        const char **dst = mk_args_is(&a, "-m") || mk_args_is(&a, "--model")   ? &model
                           : mk_args_is(&a, "-i") || mk_args_is(&a, "--input") ? &input
                           : mk_args_is(&a, "-o") || mk_args_is(&a, "--out")   ? &outdir
                           : mk_args_is(&a, "--shard")                         ? &shard
                                                                               : NULL;
        if (dst) {
            if (!(*dst = mk_args_value(&a)))
                st = mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--step")) {
            const char *v = mk_args_value(&a);
            st =
                v ? mk_args_double(ctx, "--step", v, 1e-3, 1.0, &o.step) : mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--threads")) {
            const char *v = mk_args_value(&a);
            st = v ? mk_args_int(ctx, "--threads", v, 0, 4096, &threads) : mk_args_missing(&a, ctx);
        } else if (mk_args_is(&a, "--tta")) {
            o.tta = 1;
        } else if (mk_args_is(&a, "--no-postprocess")) {
            o.postprocess = 0;
        } else if (mk_args_is(&a, "--continue")) {
            cont = 1;
        } else if (mk_args_is(&a, "--fail-fast")) {
            fail_fast = 1;
        } else {
            st = mk_args_unknown(&a, ctx);
        }
    }
    if (st == MK_OK && (!model || !input || !outdir)) {
        char miss[64] = "";
        const char *names[3] = {!model ? "-m MODEL" : NULL, !input ? "-i INPUT" : NULL,
                                !outdir ? "-o OUTDIR" : NULL};
        int k = 0;
        for (int i = 0; i < 3; i++)
            if (names[i]) {
                size_t l = strlen(miss);
                snprintf(miss + l, sizeof miss - l, "%s%s", k++ ? ", " : "", names[i]);
            }
        st = mk_err(ctx, MK_ERR_USAGE, "infer: %s %s required (see 'pipeline help infer')", miss,
                    k > 1 ? "are" : "is");
    }
    if (st != MK_OK)
        return st;
    if (threads == 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc > 0 ? nc : 1;
    }
    o.threads = (int)threads;
    if (mk_fs_is_file(model) && mk_histo_is_model(model))
        return infer_slides(ctx, model, input, outdir, o.threads);

    job J;
    memset(&J, 0, sizeof J);
    J.t0 = mk_now_s();
    J.input = input;
    J.outdir = outdir;
    J.cont = cont;
    J.fail_fast = fail_fast;
    J.shard_n = 1;
    J.shard_src = NULL;
    if (mk_mpi_size() > 1) { /* under MPI: the ranks are the shards */
        if (shard)
            return mk_err(ctx, MK_ERR_USAGE,
                          "infer: --shard with %d MPI ranks: the ranks already split the cases "
                          "(give one or the other)",
                          mk_mpi_size());
        J.shard_i = mk_mpi_rank();
        J.shard_n = mk_mpi_size();
        J.shard_src = "MPI";
    } else if (shard) {
        st = parse_shard(ctx, shard, &J.shard_i, &J.shard_n);
        J.shard_src = "--shard";
    } else {
        int found = 0;
        st = slurm_shard(ctx, &J.shard_i, &J.shard_n, &found);
        if (found)
            J.shard_src = "SLURM_ARRAY_TASK_ID";
    }
    if (st != MK_OK)
        return st;
    {
        char ri[PATH_CAP], ro[PATH_CAP];
        if (realpath(input, ri) && realpath(outdir, ro) && strcmp(ri, ro) == 0)
            return mk_err(ctx, MK_ERR_USAGE,
                          "infer: -o %s is the input folder: masks would mix with (or overwrite) "
                          "the images; give another folder",
                          outdir);
    }

    clist L;
    st = list_cases(ctx, input, &L);
    if (st != MK_OK)
        return st;
    J.nall = L.n;
    /* this shard's share: every N-th case of the sorted list */
    icase *mine = calloc((size_t)L.n, sizeof *mine);
    result *res = calloc((size_t)L.n, sizeof *res);
    mk_infer_model *m = NULL;
    char model_path[PATH_CAP];
    if (!mine || !res)
        st = mk_err(ctx, MK_ERR_NOMEM, "out of memory");
    for (int i = 0; st == MK_OK && i < L.n; i++)
        if (i % J.shard_n == J.shard_i)
            mine[J.ncases++] = L.v[i];
    J.cases = mine;
    J.res = res;
    if (st == MK_OK) {
        if (mk_fs_is_dir(model))
            st = run_default_model(ctx, model, model_path, sizeof model_path);
        else
            snprintf(model_path, sizeof model_path, "%s", model);
    }
    if (st == MK_OK)
        st = mk_infer_model_load(ctx, model_path, &m);
    if (st == MK_OK && o.step == 0) /* no --step: the model's (its evaluation's) */
        o.step = m->data.window_step;
    J.m = m;
    J.model_path = model_path;
    J.o = o;
    if (st == MK_OK) {
        snprintf(J.recdir, sizeof J.recdir, "%s/%s", outdir, RECORD_DIR);
        if (J.shard_n > 1)
            snprintf(J.summary, sizeof J.summary, "%s/infer.%dof%d.json", outdir, J.shard_i,
                     J.shard_n);
        else
            snprintf(J.summary, sizeof J.summary, "%s/infer.json", outdir);
        st = mk_fs_mkdirs(ctx, J.recdir);
    }
    if (st == MK_OK) {
        remove_leftovers(ctx, &J, outdir, ".nii.gz", 1);
        remove_leftovers(ctx, &J, J.recdir, ".json", 0);
        char shard_note[128] = "";
        if (J.shard_n > 1)
            snprintf(shard_note, sizeof shard_note, " (shard %d/%d of %d, from %s)", J.shard_i,
                     J.shard_n, J.nall, J.shard_src);
        MK_LOG_I(ctx,
                 "infer: %d case(s)%s from %s into %s; model %s (%s, %s %s, %s, %d classes); "
                 "step %g, %s, post-processing %s, %d thread(s)%s",
                 J.ncases, shard_note, input, outdir, model_path, m->model_hash, m->method, m->role,
                 m->modality, m->cfg.classes, o.step,
                 o.tta ? "mirroring TTA (x4 the network time)" : "no TTA",
                 !o.postprocess         ? "off"
                 : m->largest_component ? "largest component"
                                        : "none",
                 o.threads, cont ? ", --continue" : "");
        st = mk_fs_write_atomic_printed(ctx, J.summary, print_summary, &J);
    }
    int nfail = 0, nok = 0, nskip = 0, nwork = 0;
    double work_s = 0;
    mk_status first_fail = MK_OK;
    if (st == MK_OK)
        mk_progress(ctx, "infer", 0, J.ncases, "case", NULL);
    for (int i = 0; st == MK_OK && i < J.ncases; i++) {
        if (ctx->cancel) {
            J.stopped = 1;
            break;
        }
        const icase *c = &J.cases[i];
        result *r = &J.res[i];
        double t0 = mk_now_s();
        /* the engine's own progress (per slice) would restart the batch's bar and its ETA */
        mk_progress_fn pf = ctx->progress;
        ctx->progress = NULL;
        mk_status cs = run_case(ctx, &J, c, r);
        ctx->progress = pf;
        r->total = mk_now_s() - t0;
        if (r->status != CASE_SKIPPED) {
            work_s += r->total;
            nwork++;
        }
        /* ETA from the cases that ran (skipped ones cost nothing) */
        char eta[48] = "";
        if (nwork > 0 && i + 1 < J.ncases) {
            double e = work_s / nwork * (J.ncases - i - 1);
            snprintf(eta, sizeof eta, ", ETA %02d:%02d", (int)(e / 60), (int)e % 60);
        }
        r->rss_mb = peak_rss_mb();
        char detail[512];
        if (cs == MK_ERR_ABORTED || ctx->cancel) {
            r->status = CASE_NONE;
            J.stopped = 1;
            mk_err_clear(ctx);
            break;
        }
        if (cs != MK_OK) {
            char w[PATH_CAP + 64];
            where(c, input, w, sizeof w);
            /* "file: reason", the file named once */
            const char *msg = mk_ctx_errmsg(ctx);
            int named = c->line == 0 && strncmp(msg, c->input, strlen(c->input)) == 0;
            size_t l = strlen(w) + strlen(msg) + 3;
            r->error = malloc(l);
            if (r->error)
                snprintf(r->error, l, "%s%s%s", named ? "" : w, named ? "" : ": ", msg);
            r->status = CASE_FAILED;
            if (first_fail == MK_OK)
                first_fail = cs;
            mk_err_clear(ctx);
            nfail++;
            /* an earlier mask of this case no longer matches anything */
            char mp[PATH_CAP + 300];
            mask_path(&J, c, mp, sizeof mp);
            if (unlink(mp) == 0)
                MK_LOG_W(ctx, "%s: removed the earlier mask %s", c->id, mp);
            MK_LOG_E(ctx, "infer [%d/%d] %s failed: %s", i + 1, J.ncases, c->id,
                     r->error ? r->error : "out of memory");
            snprintf(detail, sizeof detail, "%s failed", c->id);
        } else if (r->status == CASE_SKIPPED) {
            nskip++;
            MK_LOG_I(ctx, "infer [%d/%d] %s: skipped (its completion record matches)", i + 1,
                     J.ncases, c->id);
            snprintf(detail, sizeof detail, "%s skipped", c->id);
        } else {
            nok++;
            MK_LOG_I(ctx,
                     "infer [%d/%d] %s: %.2f s (read %.2f, preprocess %.2f, network %.2f, "
                     "postprocess %.2f, write %.2f), peak RSS %.0f MB%s",
                     i + 1, J.ncases, c->id, r->total, r->t.read, r->t.preprocess, r->t.network,
                     r->t.postprocess, r->t.write, r->rss_mb, eta);
            snprintf(detail, sizeof detail, "%s %.1f s", c->id, r->total);
        }
        mk_progress(ctx, "infer", i + 1, J.ncases, "case", detail);
        mk_status ss = mk_fs_write_atomic_printed(ctx, J.summary, print_summary, &J);
        if (ss != MK_OK)
            st = ss;
        if (cs != MK_OK && fail_fast) {
            J.stopped = i + 1 < J.ncases;
            break;
        }
    }
    if (st == MK_OK) {
        J.complete = !J.stopped;
        st = mk_fs_write_atomic_printed(ctx, J.summary, print_summary, &J);
    }
    int mpi = mk_mpi_size() > 1;
    if (mpi) { /* every rank, whatever st; rank 0 prints the job's table */
        mk_status ms = merge_ranks(ctx, &J, &L, st);
        if (st == MK_OK)
            st = ms;
        if (st == MK_OK) /* the job's summary, for the messages below */
            snprintf(J.summary, sizeof J.summary, "%s/infer.json", outdir);
    }
    if (st == MK_OK && !mpi)
        print_table(&J);
    if (st == MK_OK && nfail > 0) {
        char list[1400] = "";
        for (int i = 0; i < J.ncases; i++) {
            if (J.res[i].status != CASE_FAILED)
                continue;
            size_t l = strlen(list);
            if (l + 80 > sizeof list) {
                snprintf(list + l, sizeof list - l, "; ...");
                break;
            }
            snprintf(list + l, sizeof list - l, "%s%s", l ? "; " : "",
                     J.res[i].error ? J.res[i].error : J.cases[i].id);
        }
        st = mk_err(ctx,
                    first_fail == MK_ERR_USAGE || first_fail == MK_ERR_CONFIG ? MK_ERR_INVALID
                                                                              : first_fail,
                    "%d of %d case(s) failed%s (all in %s): %s", nfail, J.ncases,
                    J.stopped ? " (--fail-fast: stopped at the first)" : "", J.summary, list);
    } else if (st == MK_OK && J.stopped) {
        st = mk_err(ctx, MK_ERR_ABORTED,
                    "interrupted after %d of %d case(s); run again with --continue to finish",
                    nok + nskip, J.ncases);
    }
    for (int i = 0; i < L.n && res; i++)
        free(res[i].error);
    free(res);
    free(mine);
    clist_free(&L);
    mk_infer_model_free(m);
    return st;
}
