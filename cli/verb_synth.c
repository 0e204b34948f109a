/* `pipeline synth`: generate phantom data with exact labels (see docs/phantoms.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "../phantoms/mk_phantoms.h"
#include "../config/mk_toml.h"
#include "mk_verbs.h"

/* --size "64,64,24" (histo: "1024,1024"). */
static mk_status parse_size(mk_ctx *ctx, const char *s, int want3, int size[3])
{
    int v[3] = {0, 0, 1}, n = 0;
    const char *q = s;
    while (n < 3) {
        char *end;
        long x = strtol(q, &end, 10);
        if (end == q || x < 1 || x > 65536)
            break;
        v[n++] = (int)x;
        q = end;
        if (*q != ',' && *q != 'x')
            break;
        q++;
    }
    if (*q || n < 2 || (want3 && n != 3) || (!want3 && n != 2))
        return mk_err(ctx, MK_ERR_USAGE, "--size: expected %s, got '%s'",
                      want3 ? "NX,NY,NZ (three positive integers)"
                            : "WIDTH,HEIGHT (two positive integers)",
                      s);
    memcpy(size, v, sizeof v);
    return MK_OK;
}

typedef struct knob {
    const char *name; /* TOML key; the option is --name with '_' as '-' */
    double *dst;
    double lo, hi;
} knob;

static mk_status toml_number(mk_ctx *ctx, const char *file, const mk_toml_value *t, long idx,
                             double lo, double hi, double *out)
{
    const mk_toml_value *v = mk_toml_table_at(t, (size_t)idx);
    mk_toml_type ty = mk_toml_type_of(v);
    double x;
    if (ty == MK_TOML_INTEGER)
        x = (double)mk_toml_int(v);
    else if (ty == MK_TOML_FLOAT)
        x = mk_toml_float(v);
    else
        return mk_err(ctx, MK_ERR_CONFIG, "%s:%d: synth.%s: expected a number, got %s", file,
                      mk_toml_table_key_line(t, (size_t)idx), mk_toml_table_key(t, (size_t)idx),
                      mk_toml_type_name(ty));
    if (!(x >= lo && x <= hi))
        return mk_err(ctx, MK_ERR_CONFIG, "%s:%d: synth.%s: expected %g..%g, got %g", file,
                      mk_toml_table_key_line(t, (size_t)idx), mk_toml_table_key(t, (size_t)idx), lo,
                      hi, x);
    *out = x;
    return MK_OK;
}

/* Read the [synth] table of a TOML file into p / out_dir (paths relative to the file). */
static mk_status load_config(mk_ctx *ctx, const char *file, mk_phantom_params *p, int *kind_set,
                             char *out_dir, size_t out_n)
{
    mk_toml_doc *doc = NULL;
    mk_status st = mk_toml_parse_file(ctx, file, &doc);
    if (st != MK_OK)
        return st == MK_ERR_IO ? st : MK_ERR_CONFIG;
    const mk_toml_value *t = mk_toml_table_get(mk_toml_root(doc), "synth");
    if (!t || mk_toml_type_of(t) != MK_TOML_TABLE) {
        mk_toml_free(doc);
        return mk_err(ctx, MK_ERR_CONFIG, "%s: expected a [synth] table", file);
    }
    double cases = p->cases, seed = (double)p->seed, tile = p->tile, patch = p->patch;
    knob k[] = {{"contrast", &p->contrast, 0, 10},
                {"noise", &p->noise, 0, 10},
                {"shift", &p->shift, 0, 1},
                {"labelled", &p->labelled, 0, 1},
                {"hard_frac", &p->hard_frac, 0, 1},
                {"cases", &cases, 1, 100000},
                {"seed", &seed, 0, 9007199254740992.0},
                {"tile", &tile, 16, 4096},
                {"patch", &patch, 8, 65536}};
    const int nk = (int)(sizeof k / sizeof k[0]);
    /* kind first: the size default depends on it */
    long ki = mk_toml_table_find(t, "kind");
    if (ki >= 0) {
        const mk_toml_value *v = mk_toml_table_at(t, (size_t)ki);
        mk_phantom_kind kind;
        if (mk_toml_type_of(v) != MK_TOML_STRING ||
            mk_phantom_kind_parse(ctx, mk_toml_string(v, NULL), &kind) != MK_OK) {
            st = mk_err(ctx, MK_ERR_CONFIG,
                        "%s:%d: synth.kind: expected \"lung\", \"cardiac\" or \"histo\"", file,
                        mk_toml_table_key_line(t, (size_t)ki));
            goto done;
        }
        mk_phantom_params keep = *p;
        mk_phantom_params_default(p, kind);
        p->seed = keep.seed;
        *kind_set = 1;
    }
    for (size_t i = 0; i < mk_toml_table_len(t); i++) {
        const char *key = mk_toml_table_key(t, i);
        const mk_toml_value *v = mk_toml_table_at(t, i);
        int line = mk_toml_table_key_line(t, i);
        if (strcmp(key, "kind") == 0)
            continue;
        if (strcmp(key, "out_dir") == 0) {
            if (mk_toml_type_of(v) != MK_TOML_STRING) {
                st = mk_err(ctx, MK_ERR_CONFIG, "%s:%d: synth.out_dir: expected a string", file,
                            line);
                goto done;
            }
            char dir[4096];
            mk_fs_dirname(file, dir, sizeof dir);
            if ((st = mk_fs_join(ctx, dir, mk_toml_string(v, NULL), out_dir, out_n)) != MK_OK)
                goto done;
            continue;
        }
        if (strcmp(key, "paired") == 0) {
            if (mk_toml_type_of(v) != MK_TOML_BOOL) {
                st = mk_err(ctx, MK_ERR_CONFIG, "%s:%d: synth.paired: expected true or false", file,
                            line);
                goto done;
            }
            p->paired = mk_toml_bool(v);
            continue;
        }
        if (strcmp(key, "size") == 0) {
            size_t n = mk_toml_type_of(v) == MK_TOML_ARRAY ? mk_toml_array_len(v) : 0;
            size_t want = p->kind == MK_PHANTOM_HISTO ? 2 : 3;
            int ok = n == want;
            for (size_t a = 0; ok && a < n; a++) {
                const mk_toml_value *e = mk_toml_array_at(v, a);
                ok = mk_toml_type_of(e) == MK_TOML_INTEGER && mk_toml_int(e) >= 1 &&
                     mk_toml_int(e) <= 65536;
                if (ok)
                    p->size[a] = (int)mk_toml_int(e);
            }
            if (!ok) {
                st = mk_err(ctx, MK_ERR_CONFIG,
                            "%s:%d: synth.size: expected an array of %zu positive integers", file,
                            line, want);
                goto done;
            }
            continue;
        }
        int found = 0;
        for (int q = 0; q < nk; q++)
            if (strcmp(key, k[q].name) == 0) {
                if ((st = toml_number(ctx, file, t, (long)i, k[q].lo, k[q].hi, k[q].dst)) != MK_OK)
                    goto done;
                found = 1;
            }
        if (!found) {
            st = mk_err(ctx, MK_ERR_CONFIG,
                        "%s:%d: synth.%s: unknown key (expected kind, out_dir, cases, seed, size, "
                        "contrast, noise, shift, labelled, hard_frac, paired, tile, patch)",
                        file, line, key);
            goto done;
        }
    }
    if (cases != (int)cases || seed != (double)(uint64_t)seed || tile != (int)tile ||
        patch != (int)patch) {
        st = mk_err(ctx, MK_ERR_CONFIG, "%s: synth: cases, seed, tile and patch must be integers",
                    file);
        goto done;
    }
    p->cases = (int)cases;
    p->seed = (uint64_t)seed;
    p->tile = (int)tile;
    p->patch = (int)patch;
done:
    mk_toml_free(doc);
    return st;
}

mk_status mk_verb_synth(mk_cli *cli, int argc, char **argv)
{
    mk_ctx *ctx = cli->ctx;
    mk_phantom_params p;
    mk_phantom_params_default(&p, MK_PHANTOM_LUNG);
    char out_dir[4096] = "";
    const char *size_arg = NULL;
    int kind_set = 0;
    mk_status st;
    /* first pass: --config and --kind (they set the defaults the other options override) */
    mk_args a;
    mk_args_init(&a, argc, argv);
    while (mk_args_next(&a)) {
        if (mk_args_is(&a, "--config")) {
            const char *v = mk_args_value(&a);
            if (!v)
                return mk_args_missing(&a, ctx);
            if ((st = load_config(ctx, v, &p, &kind_set, out_dir, sizeof out_dir)) != MK_OK)
                return st;
        }
    }
    mk_args_init(&a, argc, argv);
    while (mk_args_next(&a)) {
        if (mk_args_is(&a, "--kind")) {
            const char *v = mk_args_value(&a);
            mk_phantom_kind kind;
            if (!v)
                return mk_args_missing(&a, ctx);
            if ((st = mk_phantom_kind_parse(ctx, v, &kind)) != MK_OK)
                return st;
            if (!kind_set || kind != p.kind) {
                uint64_t seed = p.seed;
                mk_phantom_params_default(&p, kind);
                p.seed = seed;
            }
            kind_set = 1;
        }
    }
    if (!kind_set)
        return mk_err(ctx, MK_ERR_USAGE,
                      "synth: --kind lung|cardiac|histo is required (or synth.kind in --config)");
    knob k[] = {{"--contrast", &p.contrast, 0, 10},
                {"--noise", &p.noise, 0, 10},
                {"--shift", &p.shift, 0, 1},
                {"--labelled", &p.labelled, 0, 1},
                {"--hard-frac", &p.hard_frac, 0, 1}};
    mk_args_init(&a, argc, argv);
    while (mk_args_next(&a)) {
        const char *v = NULL;
        long long n;
        if (mk_args_is(&a, "--kind") || mk_args_is(&a, "--config")) {
            if (!mk_args_value(&a))
                return mk_args_missing(&a, ctx);
            continue;
        }
        if (mk_args_is(&a, "--paired")) { /* a flag: no value */
            p.paired = 1;
            continue;
        }
        int is_knob = -1;
        for (int q = 0; q < (int)(sizeof k / sizeof k[0]); q++)
            if (mk_args_is(&a, k[q].name))
                is_knob = q;
        if (mk_args_positional(&a))
            return mk_args_unknown(&a, ctx);
        if (!mk_args_is(&a, "--out") && !mk_args_is(&a, "--cases") && !mk_args_is(&a, "--seed") &&
            !mk_args_is(&a, "--size") && !mk_args_is(&a, "--tile") && !mk_args_is(&a, "--patch") &&
            is_knob < 0)
            return mk_args_unknown(&a, ctx);
        if (!(v = mk_args_value(&a)))
            return mk_args_missing(&a, ctx);
        if (is_knob >= 0) {
            if ((st = mk_args_double(ctx, k[is_knob].name, v, k[is_knob].lo, k[is_knob].hi,
                                     k[is_knob].dst)) != MK_OK)
                return st;
        } else if (mk_args_is(&a, "--out")) {
            if (strlen(v) >= sizeof out_dir)
                return mk_err(ctx, MK_ERR_USAGE, "--out: path too long");
            strcpy(out_dir, v);
        } else if (mk_args_is(&a, "--cases")) {
            if ((st = mk_args_int(ctx, "--cases", v, 1, 100000, &n)) != MK_OK)
                return st;
            p.cases = (int)n;
        } else if (mk_args_is(&a, "--seed")) {
            if ((st = mk_args_int(ctx, "--seed", v, 0, 9007199254740992LL, &n)) != MK_OK)
                return st;
            p.seed = (uint64_t)n;
        } else if (mk_args_is(&a, "--size")) {
            size_arg = v;
        } else if (mk_args_is(&a, "--tile")) {
            if ((st = mk_args_int(ctx, "--tile", v, 16, 4096, &n)) != MK_OK)
                return st;
            p.tile = (int)n;
        } else if (mk_args_is(&a, "--patch")) {
            if ((st = mk_args_int(ctx, "--patch", v, 8, 65536, &n)) != MK_OK)
                return st;
            p.patch = (int)n;
        }
    }
    if (size_arg && (st = parse_size(ctx, size_arg, p.kind != MK_PHANTOM_HISTO, p.size)) != MK_OK)
        return st;
    if (!out_dir[0])
        return mk_err(ctx, MK_ERR_USAGE,
                      "synth: --out DIR is required (or synth.out_dir in --config)");
    if ((st = mk_phantom_params_check(ctx, &p)) != MK_OK) {
        char msg[MK_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", mk_ctx_errmsg(ctx));
        return mk_err(ctx, MK_ERR_USAGE, "synth: %s", msg);
    }
    mk_phantom_summary sum;
    if ((st = mk_phantom_synth(ctx, &p, out_dir, &sum)) != MK_OK)
        return st;
    printf("synth %s: %d cases (%d per domain), %d files in %s, seed %llu, %.2f s\n",
           mk_phantom_kind_name(p.kind), sum.cases, p.cases, sum.files, out_dir,
           (unsigned long long)p.seed, sum.seconds);
    return MK_OK;
}
