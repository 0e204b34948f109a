/* The one adapter of every method's stage: bind the config through the parameter rows, then train
 * with the shared loop (stages/mk_method.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/mk_fs.h"
#include "../io/mk_manifest.h"
#include "mk_run_stages.h"

#ifndef MK_VERSION
#define MK_VERSION "unknown"
#endif

int mk_run_output_on(const mk_cfg *cfg, const mk_method_output *out)
{
    if (!out->when)
        return 1;
    return out->when[0] == '!' ? !mk_cfg_bool(cfg, out->when + 1) : mk_cfg_bool(cfg, out->when);
}

mk_status mk_run_keyed_err(mk_run_env *env, mk_status st)
{
    if (st == MK_OK)
        return st;
    const char *msg = mk_ctx_errmsg(env->ctx);
    char key[128];
    size_t n = 0;
    while (n + 1 < sizeof key && (islower((unsigned char)msg[n]) || msg[n] == '_' ||
                                  msg[n] == '.' || isdigit((unsigned char)msg[n])))
        n++;
    memcpy(key, msg, n);
    key[n] = 0;
    /* "cmedl.hint_layers[1]: ..." or "cmedl.oracle_pmri: ..." */
    if (n == 0 || !strchr(key, '.') || !mk_cfg_has_key(env->cfg, key) ||
        (msg[n] != ':' && msg[n] != '[' && msg[n] != ' '))
        return st;
    char rest[MK_ERRMSG_MAX];
    const char *r = msg + n;
    if (*r == ':')
        r++;
    while (*r == ' ')
        r++;
    snprintf(rest, sizeof rest, "%s", msg[n] == '[' ? msg + n : r);
    mk_status code = env->ctx->status;
    if (msg[n] == '[')
        mk_err(env->ctx, code, "%s:%d: key '%s'%s", mk_cfg_path(env->cfg),
               mk_cfg_line(env->cfg, key), key, rest);
    else
        mk_err(env->ctx, code, "%s:%d: key '%s': %s", mk_cfg_path(env->cfg),
               mk_cfg_line(env->cfg, key), key, rest);
    return code;
}

/* Without data.labels, a dataset folder's dataset.json names the structures: when it lists
 * exactly model.classes - 1 foreground labels (value > 0), they become the label table. */
static void dataset_label_names(mk_stage_common *c)
{
    const char *path = c->data.manifest;
    size_t n = path ? strlen(path) : 0;
    if (c->labels.n > 0 || !path ||
        !(mk_fs_is_dir(path) || (n > 5 && !strcmp(path + n - 5, ".json"))))
        return;
    mk_ctx quiet;
    mk_ctx_init(&quiet);
    mk_manifest *m = NULL;
    if (mk_manifest_import_nnunet(&quiet, path, &m) != MK_OK)
        return; /* the data checks report it */
    mk_label_table t;
    memset(&t, 0, sizeof t);
    for (int i = 0; i < m->nlabels && t.n < MK_LABELS_MAX; i++)
        if (m->label_values[i] > 0) {
            t.value[t.n] = m->label_values[i];
            snprintf(t.name[t.n], sizeof t.name[t.n], "%s", m->label_names[i]);
            t.n++;
        }
    if (t.n == c->unet.classes - 1)
        c->labels = t;
    mk_manifest_free(m);
}

mk_status mk_run_common(mk_run_env *env, mk_stage_common *c)
{
    const mk_cfg *cfg = env->cfg;
    mk_stage_common_defaults(c);
    c->run_dir = env->run_dir;
    c->seed = (uint64_t)env->seed;
    c->threads = env->threads > 0 ? env->threads : 1;
    c->resume = env->resume;
    c->dist = env->dist;
    mk_status st = mk_cfg_bind(env->ctx, cfg, mk_run_section.name, c);
    if (st == MK_OK)
        st = mk_cfg_bind(env->ctx, cfg, mk_data_section.name, c);
    if (st == MK_OK)
        st = mk_cfg_bind(env->ctx, cfg, mk_model_section.name, c);
    if (st == MK_OK)
        dataset_label_names(c);
    if (st == MK_OK)
        st = mk_run_keyed_err(env, mk_stage_common_finish(env->ctx, c));
    /* what evaluation applies, recorded in every saved model (stages/mk_infer.h) */
    c->data.blend_uniform = !strcmp(mk_cfg_str(cfg, "evaluate.window_blend"), "uniform");
    c->largest_component = mk_cfg_bool(cfg, "evaluate.largest_component");
    c->version = MK_VERSION;
    c->config_hash = env->config_hash;
    return st;
}

mk_status mk_run_method_bind(mk_run_env *env, mk_stage_common *c, void **cfg_out)
{
    const mk_method *m = env->stage->method;
    *cfg_out = NULL;
    mk_status st = mk_run_common(env, c);
    if (st != MK_OK)
        return st;
    char *cfg = calloc(1, m->cfg_size);
    if (!cfg)
        return mk_err(env->ctx, MK_ERR_NOMEM, "%s: out of memory", m->name);
    mk_method_defaults(m, cfg);
    for (int i = 0; i < m->nuses && st == MK_OK; i++)
        st = mk_cfg_bind(env->ctx, env->cfg, m->uses[i].section->name, cfg + m->uses[i].offset);
    if (st != MK_OK) {
        free(cfg);
        return st;
    }
    *cfg_out = cfg;
    return MK_OK;
}

mk_status mk_run_method(mk_run_env *env)
{
    mk_stage_common c;
    void *cfg;
    mk_status st = mk_run_method_bind(env, &c, &cfg);
    if (st == MK_OK)
        st = mk_method_train(env->ctx, env->stage->method, &c, cfg, NULL);
    free(cfg);
    return st;
}
