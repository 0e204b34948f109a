#include <dirent.h>
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/mk_fs.h"
#include "../core/mk_log.h"
#include "mk_run_stages.h"
#include "mk_runner.h"

#ifndef MK_VERSION
#define MK_VERSION "unknown"
#endif

mk_status mk_runner_check(mk_ctx *ctx, const mk_cfg *cfg)
{
    int n = mk_cfg_list_len(cfg, "run.stages");
    if (n == 0)
        return mk_err(ctx, MK_ERR_CONFIG, "%s:%d: key 'run.stages': expected at least one stage",
                      mk_cfg_path(cfg), mk_cfg_line(cfg, "run.stages"));
    for (int i = 0; i < n; i++) {
        const char *s = mk_cfg_list_str(cfg, "run.stages", i);
        if (!mk_runner_find_stage(s)) {
            char avail[512] = "";
            int ns;
            const mk_stage_entry *all = mk_runner_stages(&ns);
            for (int k = 0; k < ns; k++) {
                if (k)
                    strncat(avail, ", ", sizeof avail - strlen(avail) - 1);
                strncat(avail, all[k].name, sizeof avail - strlen(avail) - 1);
            }
            return mk_err(ctx, MK_ERR_CONFIG,
                          "%s:%d: key 'run.stages'[%d]: stage \"%s\" is not available in this "
                          "build (available: %s)",
                          mk_cfg_path(cfg), mk_cfg_line(cfg, "run.stages"), i, s,
                          *avail ? avail : "none");
        }
        /* a stage's models, checkpoint and done-marker are named after it: twice would train
         * the second over the first (or skip it on --resume) */
        for (int k = 0; k < i; k++)
            if (!strcmp(mk_cfg_list_str(cfg, "run.stages", k), s))
                return mk_err(ctx, MK_ERR_CONFIG,
                              "%s:%d: key 'run.stages'[%d]: stage \"%s\" is already listed at "
                              "[%d] (a stage runs once per run)",
                              mk_cfg_path(cfg), mk_cfg_line(cfg, "run.stages"), i, s, k);
    }
    return MK_OK;
}

mk_status mk_runner_check_stages(mk_run_env *env, int from)
{
    int n = mk_cfg_list_len(env->cfg, "run.stages");
    env->from = from;
    for (int i = from; i < n; i++) {
        const mk_stage_entry *s = mk_runner_find_stage(mk_cfg_list_str(env->cfg, "run.stages", i));
        if (s && s->check) {
            env->stage = s;
            env->stage_index = i;
            mk_status st = s->check(env);
            if (st != MK_OK)
                return st;
        }
    }
    env->stage = NULL;
    return MK_OK;
}

int mk_runner_data_pending(const mk_run_env *env)
{
    int n = mk_cfg_list_len(env->cfg, "run.stages");
    int end = env->stage ? env->stage_index : n;
    for (int i = env->from; i < end && i < n; i++) {
        const char *name = mk_cfg_list_str(env->cfg, "run.stages", i);
        const mk_stage_entry *s = mk_runner_find_stage(name);
        if (!s || !s->produces_data)
            continue;
        char done[4200];
        snprintf(done, sizeof done, "%s/stages/%s.done", env->run_dir, name);
        if (!env->resume || !mk_fs_is_file(done))
            return 1;
    }
    return 0;
}

static int dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 1;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            empty = 0;
            break;
        }
    }
    closedir(d);
    return empty;
}

/* Copy a file atomically. */
static mk_status copy_file(mk_ctx *ctx, const char *src, const char *dst)
{
    char *buf = NULL;
    size_t len = 0;
    mk_status st = mk_fs_read_all(ctx, src, &buf, &len);
    if (st == MK_OK)
        st = mk_fs_write_atomic(ctx, dst, buf, len);
    free(buf);
    return st;
}

static mk_status write_text(mk_ctx *ctx, const char *path, const char *text)
{
    return mk_fs_write_atomic(ctx, path, text, strlen(text));
}

/* After a stage: run.json gets "stages": {NAME: {"seconds": S, "validation": {...}}}, the
 * validation record being checkpoints/NAME.validation.json of a validated training stage. */
static mk_status record_stage(mk_ctx *ctx, const char *dir, const char *name, double seconds)
{
    char path[4200], vpath[4200];
    snprintf(path, sizeof path, "%s/run.json", dir);
    snprintf(vpath, sizeof vpath, "%s/checkpoints/%s.validation.json", dir, name);
    char *text = NULL;
    size_t len = 0;
    mk_status st = mk_fs_read_all(ctx, path, &text, &len);
    if (st != MK_OK)
        return st;
    cJSON *js = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(js)) {
        cJSON_Delete(js);
        return mk_err(ctx, MK_ERR_FORMAT, "%s: expected a JSON object", path);
    }
    cJSON *stages = cJSON_GetObjectItemCaseSensitive(js, "stages");
    if (!cJSON_IsObject(stages)) {
        cJSON_DeleteItemFromObjectCaseSensitive(js, "stages");
        stages = cJSON_AddObjectToObject(js, "stages");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(stages, name);
    cJSON *e = cJSON_AddObjectToObject(stages, name);
    if (e)
        cJSON_AddNumberToObject(e, "seconds", round(seconds * 1e3) / 1e3);
    if (e && mk_fs_is_file(vpath) && mk_fs_read_all(ctx, vpath, &text, &len) == MK_OK) {
        cJSON *v = cJSON_ParseWithLength(text, len);
        free(text);
        if (v)
            cJSON_AddItemToObject(e, "validation", v);
    }
    char *out = e ? cJSON_Print(js) : NULL;
    cJSON_Delete(js);
    if (!out)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    size_t n = strlen(out);
    out[n] = '\n'; /* the terminator becomes the final newline */
    st = mk_fs_write_atomic(ctx, path, out, n + 1);
    free(out);
    return st;
}

/* Log tee: every message also goes to run_dir/log.txt with a timestamp. */
typedef struct log_tee {
    FILE *f;
    mk_log_fn next;
    void *next_user;
    mk_log_level console_level; /* the console keeps its own threshold (--quiet) */
} log_tee;

static void tee_log(void *user, mk_log_level level, const char *msg)
{
    log_tee *t = user;
    if (t->f) {
        time_t now = time(NULL);
        struct tm tmv;
        gmtime_r(&now, &tmv);
        char ts[32];
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tmv);
        static const char *const words[] = {"debug", "info", "warning", "error", ""};
        fprintf(t->f, "%s %s %s\n", ts, words[level <= MK_LOG_QUIET ? level : MK_LOG_QUIET], msg);
        fflush(t->f);
    }
    if (t->next && level >= t->console_level)
        t->next(t->next_user, level, msg);
}

static void print_cfg(FILE *out, const void *cfg)
{
    mk_cfg_print(cfg, out);
}

/* ---------------------------------------------------------------- provenance (--resume) */

/* Keys of the resolved config that may differ on --resume: none of them changes what is
 * computed. run.out_dir names the run directory itself (and may be spelt differently);
 * run.threads changes the order of float sums only (a resume with other threads is valid but no
 * longer bit-identical to an uninterrupted run); run.log_every and run.checkpoint_every change
 * what is logged and how often a checkpoint is written. */
static const char *const RESUME_FREE_KEYS[] = {"run.out_dir", "run.threads", "run.log_every",
                                               "run.checkpoint_every"};
#define MK_NRESUME_FREE ((int)(sizeof RESUME_FREE_KEYS / sizeof RESUME_FREE_KEYS[0]))

/* One key of a resolved config: "section.key" and its value as printed (paths absolute). */
typedef struct cfg_entry {
    char key[160];
    char *val;
} cfg_entry;

typedef struct cfg_entries {
    int n, cap;
    cfg_entry *e;
} cfg_entries;

static void entries_free(cfg_entries *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->e[i].val);
    free(c->e);
    memset(c, 0, sizeof *c);
}

static int key_is_path(const char *section, const char *key)
{
    int ns;
    const mk_cfg_section *S = mk_cfg_schema(&ns);
    for (int s = 0; s < ns; s++)
        if (!strcmp(S[s].name, section))
            for (int k = 0; k < S[s].nkeys; k++)
                if (!strcmp(S[s].keys[k].name, key))
                    return S[s].keys[k].type == MK_CFG_PATH;
    return 0;
}

/* A path value ("...", relative to `base`, the working directory of the run) as an absolute,
 * canonical path when it exists, so the same file spelt another way compares equal. */
static char *canonical_path_value(const char *v, const char *base)
{
    size_t n = strlen(v);
    if (n < 2 || v[0] != '"' || v[n - 1] != '"' || memchr(v, '\\', n) || !base)
        return strdup(v);
    char inner[PATH_MAX], joined[2 * PATH_MAX + 2], real[PATH_MAX];
    if (n - 2 >= sizeof inner)
        return strdup(v);
    memcpy(inner, v + 1, n - 2);
    inner[n - 2] = '\0';
    if (inner[0] == '/' || !*inner)
        snprintf(joined, sizeof joined, "%s", inner);
    else
        snprintf(joined, sizeof joined, "%s/%s", base, inner);
    const char *use = realpath(joined, real) ? real : joined;
    size_t m = strlen(use) + 3;
    char *out = malloc(m);
    if (out)
        snprintf(out, m, "\"%s\"", use);
    return out;
}

/* The keys of a config as mk_cfg_print writes it (config.resolved.toml), without the header
 * comment and the keys of RESUME_FREE_KEYS; "# key: not set" lines give the value "(not set)". */
static mk_status parse_resolved(mk_ctx *ctx, const char *text, const char *base, cfg_entries *out)
{
    memset(out, 0, sizeof *out);
    char section[128] = "";
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        size_t full = eol ? (size_t)(eol - p) : strlen(p), len = full;
        char line[8192];
        if (len >= sizeof line)
            len = sizeof line - 1;
        memcpy(line, p, len);
        line[len] = '\0';
        p += eol ? full + 1 : full;
        char key[128], *val = NULL;
        const char *nv = NULL;
        if (line[0] == '[') {
            char *end = strchr(line, ']');
            size_t sl = end ? (size_t)(end - line - 1) : 0;
            if (end && sl < sizeof section) {
                memcpy(section, line + 1, sl);
                section[sl] = '\0';
            }
            continue;
        } else if (!strncmp(line, "# ", 2) && strlen(line) > 10 &&
                   !strcmp(line + strlen(line) - 9, ": not set")) {
            size_t kl = strlen(line) - 11;
            if (kl >= sizeof key)
                continue;
            memcpy(key, line + 2, kl);
            key[kl] = '\0';
            nv = "(not set)";
        } else {
            char *eq = strstr(line, " = ");
            if (line[0] == '#' || !eq || (size_t)(eq - line) >= sizeof key)
                continue;
            memcpy(key, line, (size_t)(eq - line));
            key[eq - line] = '\0';
            nv = eq + 3;
        }
        cfg_entry e;
        if ((size_t)snprintf(e.key, sizeof e.key, "%s.%s", section, key) >= sizeof e.key)
            continue; /* no key of the schema is that long */
        int free_key = 0;
        for (int i = 0; i < MK_NRESUME_FREE; i++)
            free_key |= !strcmp(e.key, RESUME_FREE_KEYS[i]);
        if (free_key)
            continue;
        val = key_is_path(section, key) ? canonical_path_value(nv, base) : strdup(nv);
        if (!val)
            return mk_err(ctx, MK_ERR_NOMEM, "resolved config: out of memory");
        if (out->n == out->cap) {
            int cap = out->cap ? 2 * out->cap : 64;
            cfg_entry *ne = realloc(out->e, (size_t)cap * sizeof *ne);
            if (!ne) {
                free(val);
                return mk_err(ctx, MK_ERR_NOMEM, "resolved config: out of memory");
            }
            out->e = ne;
            out->cap = cap;
        }
        e.val = val;
        out->e[out->n++] = e;
    }
    return MK_OK;
}

static uint64_t entries_hash(const cfg_entries *c)
{
    uint64_t h = MK_FNV1A_OFFSET;
    for (int i = 0; i < c->n; i++) {
        h = mk_fnv1a(h, c->e[i].key, strlen(c->e[i].key));
        h = mk_fnv1a(h, " = ", 3);
        h = mk_fnv1a(h, c->e[i].val, strlen(c->e[i].val));
        h = mk_fnv1a(h, "\n", 1);
    }
    return h;
}

static const char *entries_find(const cfg_entries *c, const char *key)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->e[i].key, key))
            return c->e[i].val;
    return NULL;
}

/* "key K: A -> B" for the first key (in the old config's order, then the new keys) whose value
 * differs, and how many more differ. */
static void entries_diff(const cfg_entries *old, const cfg_entries *now, char *buf, size_t n)
{
    int ndiff = 0;
    buf[0] = '\0';
    for (int pass = 0; pass < 2; pass++) {
        const cfg_entries *a = pass ? now : old, *b = pass ? old : now;
        for (int i = 0; i < a->n; i++) {
            const char *other = entries_find(b, a->e[i].key);
            if (pass == 1 && other)
                continue; /* compared in the first pass */
            if (other && !strcmp(other, a->e[i].val))
                continue;
            if (ndiff++ == 0) {
                const char *from = pass ? "(absent)" : a->e[i].val;
                const char *to = pass ? a->e[i].val : other ? other : "(absent)";
                snprintf(buf, n, "key %s: %s -> %s", a->e[i].key, from, to);
            }
        }
    }
    if (ndiff > 1) {
        size_t k = strlen(buf);
        snprintf(buf + k, n - k, ", and %d more key%s", ndiff - 1, ndiff > 2 ? "s" : "");
    }
}

/* The config's hash (entries of its printed form, base = the current directory). */
static mk_status config_entries(mk_ctx *ctx, const mk_cfg *cfg, const char *base, cfg_entries *out)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return mk_err(ctx, MK_ERR_NOMEM, "resolved config: out of memory");
    mk_cfg_print(cfg, f);
    fclose(f);
    mk_status st = parse_resolved(ctx, text, base, out);
    free(text);
    return st;
}

typedef struct file_stamp {
    char *line; /* "relative/name<TAB>size<TAB>mtime seconds.nanoseconds" */
} file_stamp;

static int stamp_cmp(const void *a, const void *b)
{
    return strcmp(((const file_stamp *)a)->line, ((const file_stamp *)b)->line);
}

/* Append "rel size mtime" of the regular files of dir/rel (one level), and of its folders' files
 * when depth > 0. */
static int list_stamps(const char *dir, const char *rel, int depth, file_stamp **v, int *n,
                       int *cap)
{
    char path[4200];
    snprintf(path, sizeof path, "%s%s%s", dir, *rel ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char r[4200], full[8500];
        snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", dir, r);
        struct stat sb;
        if (stat(full, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            if (depth > 0)
                rc = list_stamps(dir, r, depth - 1, v, n, cap);
            continue;
        }
        if (*n == *cap) {
            int nc = *cap ? 2 * *cap : 256;
            file_stamp *nv = realloc(*v, (size_t)nc * sizeof *nv);
            if (!nv) {
                rc = -1;
                break;
            }
            *v = nv;
            *cap = nc;
        }
        char line[4400];
        snprintf(line, sizeof line, "%s\t%lld\t%lld.%09ld", r, (long long)sb.st_size,
                 (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec);
        if (!((*v)[*n].line = strdup(line))) {
            rc = -1;
            break;
        }
        (*n)++;
    }
    closedir(d);
    return rc;
}

/* Hash of the manifest's content: the CSV's bytes; for an nnU-Net / MSD dataset folder (or its
 * dataset.json) dataset.json's bytes and the sorted list of its files (and its folders' files)
 * with sizes and modification times. *have = 0 when the manifest does not exist (yet). */
static mk_status manifest_hash(mk_ctx *ctx, const char *path, uint64_t *h, int *have)
{
    *have = 0;
    *h = MK_FNV1A_OFFSET;
    if (!path)
        return MK_OK;
    size_t n = strlen(path);
    char dir[4096] = "";
    if (mk_fs_is_dir(path))
        snprintf(dir, sizeof dir, "%s", path);
    else if (mk_fs_is_file(path) && n >= 12 && !strcmp(path + n - 12, "dataset.json"))
        mk_fs_dirname(path, dir, sizeof dir);
    else if (!mk_fs_is_file(path))
        return MK_OK;
    char *buf = NULL;
    size_t len = 0;
    mk_status st;
    if (!*dir) {
        if ((st = mk_fs_read_all(ctx, path, &buf, &len)) != MK_OK)
            return st;
        *h = mk_fnv1a(*h, buf, len);
        free(buf);
        *have = 1;
        return MK_OK;
    }
    char json[4200];
    snprintf(json, sizeof json, "%s/dataset.json", dir);
    if (mk_fs_is_file(json)) {
        if ((st = mk_fs_read_all(ctx, json, &buf, &len)) != MK_OK)
            return st;
        *h = mk_fnv1a(*h, buf, len);
        free(buf);
    }
    file_stamp *v = NULL;
    int nv = 0, cap = 0;
    int rc = list_stamps(dir, "", 1, &v, &nv, &cap);
    if (rc == 0) {
        qsort(v, (size_t)nv, sizeof *v, stamp_cmp);
        for (int i = 0; i < nv; i++) {
            *h = mk_fnv1a(*h, v[i].line, strlen(v[i].line));
            *h = mk_fnv1a(*h, "\n", 1);
        }
    }
    for (int i = 0; i < nv; i++)
        free(v[i].line);
    free(v);
    if (rc != 0)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory listing the dataset", dir);
    *have = 1;
    return MK_OK;
}

/* The hash --resume compares for the data: the manifest's (manifest_hash), then the bytes of
 * data.case_table when it is set (it overrides the manifest's modality, domain and split). */
static mk_status data_hash(mk_run_env *env, uint64_t *h, int *have)
{
    const mk_cfg *cfg = env->cfg;
    mk_status st = manifest_hash(env->ctx, mk_cfg_str(cfg, "data.manifest"), h, have);
    if (st != MK_OK || !*have || !mk_cfg_has_key(cfg, "data.case_table"))
        return st;
    const char *table = mk_cfg_str(cfg, "data.case_table");
    if (!table || !*table || !mk_fs_is_file(table))
        return MK_OK;
    char *buf = NULL;
    size_t len = 0;
    if ((st = mk_fs_read_all(env->ctx, table, &buf, &len)) != MK_OK)
        return st;
    *h = mk_fnv1a(mk_fnv1a(*h, "\ncase_table\n", 12), buf, len);
    free(buf);
    return MK_OK;
}

/* The string value of "name": "..." in our own provenance.json (unescaped); 0 when absent or
 * null. */
static int json_field(const char *text, const char *name, char *buf, size_t n)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", name);
    const char *p = text ? strstr(text, pat) : NULL;
    if (!p)
        return 0;
    p += strlen(pat);
    size_t k = 0;
    for (; *p && *p != '"' && k + 1 < n; p++) {
        if (*p == '\\' && p[1] == 'u' && p[2] && p[3] && p[4] && p[5]) {
            char hex[5] = {p[2], p[3], p[4], p[5], 0};
            buf[k++] = (char)strtol(hex, NULL, 16);
            p += 5;
        } else if (*p == '\\' && p[1]) {
            buf[k++] = *++p;
        } else {
            buf[k++] = *p;
        }
    }
    buf[k] = '\0';
    return 1;
}

static void hash_text(uint64_t h, char *buf, size_t n)
{
    snprintf(buf, n, "fnv1a64:%016llx", (unsigned long long)h);
}

/* run_dir/provenance.json: what --resume compares (the config's hash without RESUME_FREE_KEYS,
 * the manifest's hash, the working directory relative paths resolve against) and every resume
 * forced past a difference (`forced`: this start's, "" for none). Written atomically. */
static mk_status write_provenance(mk_run_env *env, const char *forced)
{
    mk_ctx *ctx = env->ctx;
    char path[4200], cwd[PATH_MAX];
    snprintf(path, sizeof path, "%s/provenance.json", env->run_dir);
    if (!getcwd(cwd, sizeof cwd))
        snprintf(cwd, sizeof cwd, ".");
    cfg_entries now;
    mk_status st = config_entries(ctx, env->cfg, cwd, &now);
    if (st != MK_OK)
        return st;
    uint64_t ch = entries_hash(&now), mh = 0;
    entries_free(&now);
    int have_m = 0;
    const char *manifest = mk_cfg_str(env->cfg, "data.manifest");
    /* a manifest that a stage still to run will write is recorded once it has (null until then) */
    const mk_stage_entry *saved = env->stage;
    env->stage = NULL;
    int pending = mk_runner_data_pending(env);
    env->stage = saved;
    if (!pending && (st = data_hash(env, &mh, &have_m)) != MK_OK)
        return st;
    /* the forced resumes recorded so far (one line each) */
    char *old = NULL;
    size_t olen = 0;
    mk_ctx quiet;
    mk_ctx_init(&quiet);
    if (mk_fs_is_file(path) && mk_fs_read_all(&quiet, path, &old, &olen) != MK_OK)
        old = NULL;
    size_t cap = 16384 + olen + 2 * strlen(forced) + 2 * strlen(manifest ? manifest : "");
    char *out = malloc(cap);
    if (!out) {
        free(old);
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", path);
    }
    char chs[32], mhs[40] = "null", ecwd[2 * PATH_MAX + 8], eman[8400];
    hash_text(ch, chs, sizeof chs);
    snprintf(env->config_hash, sizeof env->config_hash, "%s", chs); /* saved models record it */
    if (have_m) {
        mhs[0] = '"';
        hash_text(mh, mhs + 1, sizeof mhs - 2);
        strcat(mhs, "\"");
    }
    mk_json_escape(cwd, ecwd, sizeof ecwd);
    mk_json_escape(manifest ? manifest : "", eman, sizeof eman);
    size_t k = (size_t)snprintf(
        out, cap, "{\n  \"config_hash\": \"%s\",\n  \"config_hash_excludes\": [", chs);
    for (int i = 0; i < MK_NRESUME_FREE; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s\"%s\"", i ? ", " : "", RESUME_FREE_KEYS[i]);
    k += (size_t)snprintf(out + k, cap - k,
                          "],\n  \"cwd\": \"%s\",\n  \"manifest\": \"%s\",\n  \"manifest_hash\": "
                          "%s,\n  \"forced_resumes\": [",
                          ecwd, eman, mhs);
    int nforced = 0;
    for (const char *p = old; p && (p = strstr(p, "\n    {\"time\": ")); p++) {
        const char *eol = strchr(p + 1, '\n');
        size_t len = eol ? (size_t)(eol - p - 1) : strlen(p + 1);
        if (len && p[len] == ',')
            len--; /* the separator is written again below */
        if (k + len + 8 >= cap)
            break;
        k += (size_t)snprintf(out + k, cap - k, "%s\n%.*s", nforced++ ? "," : "", (int)len, p + 1);
    }
    if (*forced) {
        time_t t = time(NULL);
        struct tm tmv;
        gmtime_r(&t, &tmv);
        char ts[64], ewhat[2 * MK_ERRMSG_MAX + 8];
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tmv);
        mk_json_escape(forced, ewhat, sizeof ewhat);
        k += (size_t)snprintf(out + k, cap - k, "%s\n    {\"time\": \"%s\", \"what\": \"%s\"}",
                              nforced++ ? "," : "", ts, ewhat);
    }
    k += (size_t)snprintf(out + k, cap - k, "%s]\n}\n", nforced ? "\n  " : "");
    st = mk_fs_write_atomic(ctx, path, out, k);
    free(out);
    free(old);
    return st;
}

/* --resume: refuse a config or manifest that differs from the run's (by hash), naming what
 * changed, unless env->force; then `forced` gets what differs. Without --resume: refuse a
 * directory that already holds a run. Reads only. */
static mk_status check_run_dir(mk_run_env *env, char *forced, size_t nforced)
{
    mk_ctx *ctx = env->ctx;
    const char *dir = env->run_dir;
    int holds = mk_fs_is_dir(dir) && !dir_is_empty(dir);
    if (!env->resume) {
        if (holds)
            return mk_err(ctx, MK_ERR_USAGE,
                          "run directory '%s' already holds a run: use --resume to continue it, "
                          "or --out for a new directory",
                          dir);
        return MK_OK;
    }
    char resolved[4200], prov_path[4200], cwd[PATH_MAX];
    snprintf(resolved, sizeof resolved, "%s/config.resolved.toml", dir);
    snprintf(prov_path, sizeof prov_path, "%s/provenance.json", dir);
    if (!holds)
        return MK_OK; /* nothing there yet: a new run */
    char stages[4200], copied[4200];
    snprintf(stages, sizeof stages, "%s/stages", dir);
    snprintf(copied, sizeof copied, "%s/config.toml", dir);
    if (!mk_fs_is_file(resolved) && mk_fs_is_dir(stages) && mk_fs_is_file(copied))
        return MK_OK; /* a run stopped before its resolved config was written: start it anew */
    if (!mk_fs_is_file(resolved))
        return mk_err(ctx, MK_ERR_USAGE,
                      "--resume: '%s' is not a run directory (no config.resolved.toml) and is not "
                      "empty: give the run's directory, or an empty or new one for a new run",
                      dir);
    if (!getcwd(cwd, sizeof cwd))
        snprintf(cwd, sizeof cwd, ".");
    char *prov = NULL, *old_text = NULL;
    size_t len = 0;
    mk_status st = MK_OK;
    if (mk_fs_is_file(prov_path))
        st = mk_fs_read_all(ctx, prov_path, &prov, &len);
    if (st == MK_OK)
        st = mk_fs_read_all(ctx, resolved, &old_text, &len);
    char old_cwd[PATH_MAX], old_hash[64] = "", old_mhash[64] = "", new_hash[32];
    if (!json_field(prov, "cwd", old_cwd, sizeof old_cwd))
        snprintf(old_cwd, sizeof old_cwd, "%s", cwd);
    json_field(prov, "config_hash", old_hash, sizeof old_hash);
    json_field(prov, "manifest_hash", old_mhash, sizeof old_mhash);
    cfg_entries now = {0}, before = {0};
    if (st == MK_OK)
        st = config_entries(ctx, env->cfg, cwd, &now);
    if (st == MK_OK)
        st = parse_resolved(ctx, old_text, old_cwd, &before);
    char what[MK_ERRMSG_MAX / 2] = "";
    if (st == MK_OK) {
        hash_text(entries_hash(&now), new_hash, sizeof new_hash);
        if (!*old_hash) /* a run directory of an older medkd: its resolved config */
            hash_text(entries_hash(&before), old_hash, sizeof old_hash);
        if (strcmp(old_hash, new_hash)) {
            char diff[MK_ERRMSG_MAX / 4];
            entries_diff(&before, &now, diff, sizeof diff);
            snprintf(what, sizeof what, "the config differs from the run's (%s)",
                     *diff ? diff : "config hash differs");
        }
    }
    uint64_t mh;
    int have_m = 0;
    const char *manifest = mk_cfg_str(env->cfg, "data.manifest");
    if (st == MK_OK)
        st = data_hash(env, &mh, &have_m);
    if (st == MK_OK && have_m && *old_mhash) {
        char mhs[32];
        hash_text(mh, mhs, sizeof mhs);
        if (strcmp(mhs, old_mhash)) {
            size_t k = strlen(what);
            snprintf(what + k, sizeof what - k,
                     "%sthe manifest differs from the run's (data.manifest %s: content %s -> %s)",
                     k ? " and " : "", manifest, old_mhash, mhs);
        }
    }
    entries_free(&now);
    entries_free(&before);
    free(prov);
    free(old_text);
    if (st != MK_OK)
        return mk_err_prefix(ctx, "--resume: %s", dir);
    if (!*what)
        return MK_OK;
    if (!env->force)
        return mk_err(ctx, MK_ERR_USAGE, "--resume: %s; use --force to resume anyway", what);
    if (forced)
        snprintf(forced, nforced, "%s", what);
    return MK_OK;
}

/* Under data parallelism every training stage must have a split-invariant step. */
static mk_status check_dist(mk_run_env *env)
{
    if (!env->dist)
        return MK_OK;
    const mk_cfg *cfg = env->cfg;
    char which[512] = "";
    int ns;
    const mk_stage_entry *all = mk_runner_stages(&ns);
    for (int k = 0; k < ns; k++)
        if (all[k].method && all[k].method->data_parallel)
            snprintf(which + strlen(which), sizeof which - strlen(which), "%s%s",
                     *which ? ", " : "", all[k].name);
    for (int i = 0; i < mk_cfg_list_len(cfg, "run.stages"); i++) {
        const mk_stage_entry *s = mk_runner_find_stage(mk_cfg_list_str(cfg, "run.stages", i));
        if (s && s->method && !s->method->data_parallel)
            return mk_err(env->ctx, MK_ERR_CONFIG,
                          "%s:%d: key 'run.stages'[%d]: stage \"%s\" does not train on %d MPI "
                          "ranks yet (data-parallel today: %s; docs/scaling.md): run it as one "
                          "process",
                          mk_cfg_path(cfg), mk_cfg_line(cfg, "run.stages"), i, s->name,
                          env->dist->share.ranks, which);
    }
    return MK_OK;
}

/* Under data parallelism: all ranks go on, or all stop (a collective; see mk_stage_dist). */
static mk_status agree(mk_run_env *env, mk_status st, const char *what)
{
    if (!env->dist)
        return st;
    int bad = env->dist->max_int(env->dist->share.user, st != MK_OK);
    if (bad && st == MK_OK)
        return mk_err(env->ctx, MK_ERR_ABORTED, "%s failed on another rank", what);
    return st;
}

static int primary(const mk_run_env *env)
{
    return !env->dist || env->dist->share.rank == 0;
}

static mk_status precheck(mk_run_env *env, int with_run_dir, char *forced, size_t nforced)
{
    mk_status st = mk_runner_check(env->ctx, env->cfg);
    if (st == MK_OK)
        st = check_dist(env);
    if (st == MK_OK)
        st = mk_runner_check_stages(env, 0);
    if (st == MK_OK && with_run_dir)
        st = check_run_dir(env, forced, nforced);
    env->from = 0;
    env->stage = NULL;
    if (st == MK_OK)
        st = mk_check_data(env);
    env->stage = NULL;
    return st;
}

mk_status mk_runner_precheck(mk_run_env *env, int with_run_dir)
{
    char forced[MK_ERRMSG_MAX] = "";
    mk_status st = precheck(env, with_run_dir, forced, sizeof forced);
    if (st == MK_OK && *forced)
        MK_LOG_W(env->ctx, "--resume --force: %s; the run would resume anyway", forced);
    return st;
}

static mk_status run_stages(mk_run_env *env, const char *cmdline);
static mk_status setup_run_dir(mk_run_env *env, const char *cmdline, const char *forced);
static mk_status run_primary(mk_run_env *env, const char *cmdline, const char *forced);

mk_status mk_runner_run(mk_run_env *env, const char *cmdline)
{
    return run_stages(env, cmdline);
}

/* A rank other than 0 of a data-parallel run: it trains its share of each batch and writes
 * nothing (its log lines below warnings are dropped; rank 0 keeps the run's log). */
static mk_status run_replica(mk_run_env *env)
{
    mk_ctx *ctx = env->ctx;
    const mk_cfg *cfg = env->cfg;
    mk_status st = MK_OK;
    int n = mk_cfg_list_len(cfg, "run.stages");
    for (int i = 0; i < n && st == MK_OK; i++) {
        const char *name = mk_cfg_list_str(cfg, "run.stages", i);
        const mk_stage_entry *s = mk_runner_find_stage(name);
        char done[4200];
        snprintf(done, sizeof done, "%s/stages/%s.done", env->run_dir, name);
        if (env->resume && mk_fs_is_file(done))
            continue;
        env->stage = s;
        if (s->method) /* training: every rank; the others: rank 0 alone */
            st = s->run(env);
        if (st != MK_OK)
            mk_err_prefix(ctx, "stage %s", name);
        st = agree(env, st, name);
        if (st == MK_OK)
            st = mk_runner_check_stages(env, i + 1);
        if (st == MK_OK && s->produces_data) {
            env->from = i + 1;
            env->stage = NULL;
            st = mk_check_data(env);
        }
        st = agree(env, st, "the checks after it");
    }
    return st;
}

static mk_status run_stages(mk_run_env *env, const char *cmdline)
{
    mk_ctx *ctx = env->ctx;
    mk_status st;
    /* everything that can be checked before training is checked before anything is written */
    char forced[MK_ERRMSG_MAX] = "";
    mk_progress_fn prog = ctx->progress;
    mk_log_level lvl = ctx->log_level;
    if (!primary(env)) { /* rank 0 says it all once; the others only their errors */
        ctx->progress = NULL;
        if (ctx->log_level < MK_LOG_ERROR)
            ctx->log_level = MK_LOG_ERROR;
    }
    st = precheck(env, 1, forced, sizeof forced);
    if ((st = agree(env, st, "the pre-run check")) != MK_OK) {
        ctx->progress = prog;
        ctx->log_level = lvl;
        return st;
    }
    if (!primary(env)) {
        st = agree(env, MK_OK, "creating the run directory");
        if (st == MK_OK)
            st = run_replica(env);
        ctx->progress = prog;
        ctx->log_level = lvl;
        return st;
    }
    st = setup_run_dir(env, cmdline, forced);
    if ((st = agree(env, st, "creating the run directory")) != MK_OK)
        return st;
    return run_primary(env, cmdline, forced);
}

static mk_status setup_run_dir(mk_run_env *env, const char *cmdline, const char *forced)
{
    mk_ctx *ctx = env->ctx;
    const mk_cfg *cfg = env->cfg;
    const char *dir = env->run_dir;
    mk_status st;
    if (env->resume && !mk_fs_is_dir(dir))
        MK_LOG_W(ctx, "--resume: run directory '%s' does not exist yet; starting a new run", dir);
    if ((st = mk_fs_mkdirs(ctx, dir)) != MK_OK)
        return st;
    char path[4200];
    snprintf(path, sizeof path, "%s/stages", dir);
    if ((st = mk_fs_mkdirs(ctx, path)) != MK_OK)
        return st;
    snprintf(path, sizeof path, "%s/config.toml", dir);
    if ((st = copy_file(ctx, mk_cfg_path(cfg), path)) != MK_OK)
        return st;
    /* what actually ran: defaults filled in, --seed/--threads/--out/--set applied */
    snprintf(path, sizeof path, "%s/config.resolved.toml", dir);
    if ((st = mk_fs_write_atomic_printed(ctx, path, print_cfg, cfg)) != MK_OK)
        return st;
    /* the hashes --resume compares, and any resume forced past a difference */
    if ((st = write_provenance(env, forced)) != MK_OK)
        return st;
    char info[8192];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    char ts[64];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    char esc[4096];
    size_t k = 0;
    for (const char *p = cmdline; *p && k + 3 < sizeof esc; p++) {
        if (*p == '"' || *p == '\\')
            esc[k++] = '\\';
        esc[k++] = *p;
    }
    esc[k] = '\0';
    snprintf(info, sizeof info,
             "{\"medkd_version\": \"%s\", \"seed\": %lld, \"threads\": %d, \"resume\": %s, "
             "\"forced\": %s, \"command\": \"%s\", \"started\": \"%s\"}\n",
             MK_VERSION, env->seed, env->threads, env->resume ? "true" : "false",
             *forced ? "true" : "false", esc, ts);
    snprintf(path, sizeof path, "%s/run.json", dir);
    return write_text(ctx, path, info);
}

static mk_status run_primary(mk_run_env *env, const char *cmdline, const char *forced)
{
    mk_ctx *ctx = env->ctx;
    const mk_cfg *cfg = env->cfg;
    const char *dir = env->run_dir;
    mk_status st;
    char path[4200];

    /* from here on, log lines are also kept in run_dir/log.txt (appended on --resume) */
    snprintf(path, sizeof path, "%s/log.txt", dir);
    log_tee tee = {fopen(path, "a"), ctx->log, ctx->log_user, ctx->log_level};
    if (!tee.f)
        return mk_err(ctx, MK_ERR_IO, "%s: cannot open the run log: %s", path, strerror(errno));
    mk_log_level saved_level = ctx->log_level;
    ctx->log = tee_log;
    ctx->log_user = &tee;
    if (ctx->log_level > MK_LOG_INFO)
        ctx->log_level = MK_LOG_INFO; /* the log file keeps info lines even with --quiet */
    MK_LOG_I(ctx, "run %s: %s (medkd %s, seed %lld, threads %d)", dir, cmdline, MK_VERSION,
             env->seed, env->threads);
    if (*forced)
        MK_LOG_W(ctx, "--resume --force: %s; resumed anyway (recorded in provenance.json)", forced);
    st = MK_OK;
    int n = mk_cfg_list_len(cfg, "run.stages");
    for (int i = 0; i < n && st == MK_OK; i++) {
        const char *name = mk_cfg_list_str(cfg, "run.stages", i);
        const mk_stage_entry *s = mk_runner_find_stage(name);
        MK_ASSERT(s); /* checked by mk_runner_check (precheck) */
        char done[4200];
        snprintf(done, sizeof done, "%s/stages/%s.done", dir, name);
        if (env->resume && mk_fs_is_file(done)) {
            MK_LOG_I(ctx, "stage %d/%d %s: already complete, skipped (--resume)", i + 1, n, name);
            continue;
        }
        MK_LOG_I(ctx, "stage %d/%d %s: %s", i + 1, n, name, s->summary);
        double t0 = mk_now_s();
        env->stage = s;
        st = s->run(env);
        if (st != MK_OK)
            mk_err_prefix(ctx, "stage %s", name);
        if ((st = agree(env, st, name)) != MK_OK)
            break;
        if (ctx->cancel) {
            st = mk_err(ctx, MK_ERR_ABORTED, "interrupted after stage %s", name);
            break;
        }
        char txt[128];
        snprintf(txt, sizeof txt, "%.3f s\n", mk_now_s() - t0);
        if ((st = write_text(ctx, done, txt)) != MK_OK ||
            (st = record_stage(ctx, dir, name, mk_now_s() - t0)) != MK_OK)
            break;
        MK_LOG_I(ctx, "stage %d/%d %s: done in %.1f s", i + 1, n, name, mk_now_s() - t0);
        /* the data a stage produced is checked as soon as it exists, still before training */
        st = mk_runner_check_stages(env, i + 1);
        if (st == MK_OK && s->produces_data) {
            env->from = i + 1;
            env->stage = NULL;
            if ((st = write_provenance(env, "")) == MK_OK)
                st = mk_check_data(env);
        }
        st = agree(env, st, "the checks after it");
    }
    if (st != MK_OK)
        fprintf(tee.f, "error: %s\n", mk_ctx_errmsg(ctx));
    fclose(tee.f);
    ctx->log = tee.next;
    ctx->log_user = tee.next_user;
    ctx->log_level = saved_level;
    return st;
}
