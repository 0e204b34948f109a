/* Stage adapter: `synth` generates the phantom dataset named by [synth] (skipped when the same
 * parameters were already written to the same folder). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "../phantoms/mk_phantoms.h"
#include "mk_run_stages.h"

mk_status mk_run_synth(mk_run_env *env)
{
    mk_ctx *ctx = env->ctx;
    const mk_cfg *cfg = env->cfg;
    mk_phantom_kind kind;
    mk_status st = mk_phantom_kind_parse(ctx, mk_cfg_str(cfg, "synth.kind"), &kind);
    if (st != MK_OK)
        return st;
    mk_phantom_params p;
    mk_phantom_params_default(&p, kind);
    p.seed = (uint64_t)mk_cfg_int(cfg, "synth.seed");
    p.cases = (int)mk_cfg_int(cfg, "synth.cases");
    int n = mk_cfg_list_len(cfg, "synth.size");
    int want_n = kind == MK_PHANTOM_HISTO ? 2 : 3;
    if (mk_cfg_is_set(cfg, "synth.size") && n != want_n)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "%s:%d: key 'synth.size': expected %d values (%s), got %d", mk_cfg_path(cfg),
                      mk_cfg_line(cfg, "synth.size"), want_n,
                      want_n == 2 ? "width, height" : "i, j, k", n);
    if (mk_cfg_is_set(cfg, "synth.size"))
        for (int i = 0; i < n; i++)
            p.size[i] = (int)mk_cfg_list_num(cfg, "synth.size", i);
    p.contrast = mk_cfg_float(cfg, "synth.contrast");
    p.noise = mk_cfg_float(cfg, "synth.noise");
    p.shift = mk_cfg_float(cfg, "synth.shift");
    p.labelled = mk_cfg_float(cfg, "synth.labelled");
    p.hard_frac = mk_cfg_float(cfg, "synth.hard_frac");
    p.paired = mk_cfg_bool(cfg, "synth.paired");
    if ((st = mk_phantom_params_check(ctx, &p)) != MK_OK)
        return mk_err_prefix(ctx, "%s: [synth]", mk_cfg_path(cfg));

    const char *out = mk_cfg_str(cfg, "synth.out_dir");
    char stamp[4200], manifest[4200], want[512];
    snprintf(stamp, sizeof stamp, "%s/.synth-params", out);
    snprintf(manifest, sizeof manifest, "%s/manifest.csv", out);
    snprintf(want, sizeof want,
             "kind=%s seed=%llu cases=%d size=%dx%dx%d contrast=%.17g noise=%.17g shift=%.17g "
             "labelled=%.17g hard_frac=%.17g%s\n",
             mk_phantom_kind_name(kind), (unsigned long long)p.seed, p.cases, p.size[0], p.size[1],
             p.size[2], p.contrast, p.noise, p.shift, p.labelled, p.hard_frac,
             p.paired ? " paired=1" : "");
    if (mk_fs_is_file(stamp) && mk_fs_is_file(manifest)) {
        char *have = NULL;
        size_t len = 0;
        mk_ctx tmp;
        mk_ctx_init(&tmp);
        if (mk_fs_read_all(&tmp, stamp, &have, &len) == MK_OK && strcmp(have, want) == 0) {
            free(have);
            MK_LOG_I(ctx, "synth: %s already holds these phantoms (%s), not regenerated", out,
                     manifest);
            return MK_OK;
        }
        free(have);
    }
    mk_phantom_summary sum;
    if ((st = mk_phantom_synth(ctx, &p, out, &sum)) != MK_OK)
        return st;
    MK_LOG_I(ctx, "synth: %d %s cases, %d files in %.1f s -> %s", sum.cases,
             mk_phantom_kind_name(kind), sum.files, sum.seconds, out);
    return mk_fs_write_atomic(ctx, stamp, want, strlen(want));
}
