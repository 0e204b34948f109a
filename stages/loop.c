/* The training loop every method runs on (see mk_method.h): networks, optimisers, schedules, EMA
 * copies, data streams, checkpoints, resume, logging, progress, the finite-loss check. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mk_log.h"
#include "core/mk_fs.h"
#include "mk_infer.h"
#include "mk_method.h"
#include "nn/mk_nn_blocks.h"
#include "stage_internal.h"

#define MAX_NETS 12
#define MAX_STREAMS 10

typedef struct loop_net {
    const char *name;
    mk_net_kind kind;
    mk_unet *unet;
    mk_translator *tr;
    mk_nn_params *params;
    void *model; /* MK_NET_MODEL */
    void (*model_free)(void *);
    mk_optim *opt;
    int has_sched;
    mk_sched sched;
    int ema_of; /* >= 0: an EMA copy of that net */
    float ema_decay;
} loop_net;

typedef struct loop_stream {
    const char *name;
    mk_slices s;
    mk_rng rng;
} loop_stream;

struct mk_loop {
    mk_ctx *ctx;
    const mk_method *m;
    const mk_stage_common *c;
    long long total, it;
    loop_net net[MAX_NETS];
    int nnet;
    loop_stream stream[MAX_STREAMS];
    int nstream;
    mk_nn_graph *g;
    mk__val *val;   /* validation (NULL: none) */
    int val_net;    /* the network it scores */
    char best[256]; /* its best copy under models/ */
    const char *val_modality;
    long long val_every;
    const mk_stage_dist *dist; /* data-parallel over processes (NULL: one) */
    int primary;               /* 1: this process writes (rank 0, or the only one) */
    float *skip_x, *skip_x2;   /* a plane for the samples of other ranks (dist) */
    int32_t *skip_y;
    int64_t skip_plane;
};

void mk_terms_add(mk_terms *t, const char *name, double value, float weight)
{
    if (t->n >= MK_TERMS_MAX)
        return;
    t->name[t->n] = name;
    t->value[t->n] = value;
    t->weight[t->n] = weight;
    t->n++;
}

static int add_net(mk_loop *L, const char *name, mk_net_kind kind)
{
    if (L->nnet >= MAX_NETS) {
        mk_err(L->ctx, MK_ERR_INVALID, "%s: more than %d networks", L->m->name, MAX_NETS);
        return -1;
    }
    loop_net *n = &L->net[L->nnet];
    memset(n, 0, sizeof *n);
    n->name = name;
    n->kind = kind;
    n->ema_of = -1;
    return L->nnet++;
}

int mk_loop_add_unet(mk_loop *L, const char *name, const mk_unet_cfg *cfg, uint64_t seed)
{
    int k = add_net(L, name, MK_NET_UNET);
    if (k < 0 || mk_unet_new(L->ctx, cfg, seed, &L->net[k].unet) != MK_OK)
        return -1;
    L->net[k].params = mk_unet_params(L->net[k].unet);
    return k;
}

int mk_loop_add_translator(mk_loop *L, const char *name, mk_translator_kind kind, int width,
                           uint64_t seed)
{
    int k = add_net(L, name, kind == MK_TRANSLATOR_GEN ? MK_NET_GEN : MK_NET_DISC);
    if (k < 0 || mk_translator_new(L->ctx, kind, width, seed, &L->net[k].tr) != MK_OK)
        return -1;
    L->net[k].params = mk_translator_params(L->net[k].tr);
    return k;
}

int mk_loop_add_disc(mk_loop *L, const char *name, int in_ch, int width, uint64_t seed)
{
    int k = add_net(L, name, MK_NET_DISC);
    if (k < 0 || mk_translator_new_in(L->ctx, MK_TRANSLATOR_DISC, in_ch, width, seed,
                                      &L->net[k].tr) != MK_OK)
        return -1;
    L->net[k].params = mk_translator_params(L->net[k].tr);
    return k;
}

int mk_loop_add_params(mk_loop *L, const char *name, mk_nn_params *p)
{
    int k = add_net(L, name, MK_NET_PARAMS);
    if (k < 0) {
        mk_nn_params_free(p);
        return -1;
    }
    L->net[k].params = p;
    return k;
}

int mk_loop_add_model(mk_loop *L, const char *name, void *model, mk_nn_params *params,
                      void (*free_fn)(void *))
{
    int k = add_net(L, name, MK_NET_MODEL);
    if (k < 0) {
        if (free_fn)
            free_fn(model);
        return -1;
    }
    L->net[k].model = model;
    L->net[k].model_free = free_fn;
    L->net[k].params = params;
    return k;
}

void *mk_loop_model(mk_loop *L, int net)
{
    return L->net[net].model;
}

mk_rng *mk_loop_add_rng(mk_loop *L, const char *name, uint64_t seed)
{
    mk_slices none;
    memset(&none, 0, sizeof none);
    int k = mk_loop_add_stream(L, name, &none, seed);
    return k < 0 ? NULL : &L->stream[k].rng;
}

mk_status mk_loop_add_optim(mk_loop *L, int net, const mk_optim_cfg *oc, const mk_sched *sched)
{
    loop_net *n = &L->net[net];
    if (!(n->opt = mk_optim_new(n->params, oc)))
        return mk_err(L->ctx, MK_ERR_NOMEM, "%s: out of memory (optimiser)", L->m->name);
    if (sched) {
        n->has_sched = 1;
        n->sched = *sched;
    }
    return MK_OK;
}

int mk_loop_add_ema(mk_loop *L, const char *name, int net, float decay, uint64_t seed)
{
    if (L->net[net].kind != MK_NET_UNET) {
        mk_err(L->ctx, MK_ERR_INVALID, "%s: EMA copies are made of U-Nets", L->m->name);
        return -1;
    }
    mk_unet_cfg cfg = *mk_unet_config(L->net[net].unet);
    int k = mk_loop_add_unet(L, name, &cfg, seed);
    if (k < 0 || mk_nn_params_copy(L->ctx, L->net[k].params, L->net[net].params) != MK_OK)
        return -1;
    L->net[k].ema_of = net;
    L->net[k].ema_decay = decay;
    return k;
}

int mk_loop_add_stream(mk_loop *L, const char *name, mk_slices *s, uint64_t rng_seed)
{
    if (L->nstream >= MAX_STREAMS) {
        mk_err(L->ctx, MK_ERR_INVALID, "%s: more than %d data streams", L->m->name, MAX_STREAMS);
        return -1;
    }
    loop_stream *d = &L->stream[L->nstream];
    d->name = name;
    d->s = *s;
    memset(s, 0, sizeof *s);
    mk_rng_seed(&d->rng, rng_seed);
    return L->nstream++;
}

/* This process's samples [*off, *off + *n) of a batch of `batch` (all of them in one process).
 * Under data parallelism the graph learns the global batch, and planes for the other ranks'
 * samples (drawn by every rank, so every stream's RNG stays the same on all) are ready. */
static void batch_share(mk_loop *L, int stream, int batch, int64_t *off, int64_t *n)
{
    *off = 0;
    *n = batch;
    if (!L->dist)
        return;
    const mk_nn_share *sh = &L->dist->share;
    mk_nn_share_range(batch, sh->ranks, sh->rank, off, n);
    if (*n < 1) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "%s: a batch of %d is smaller than the %d ranks: every rank needs at least one "
                 "sample (raise the batch or run fewer ranks)",
                 L->m->name, batch, sh->ranks);
        L->dist->abort(sh->user, 2, msg);
    }
    const mk_slices *s = &L->stream[stream].s;
    int64_t plane = (int64_t)s->h * s->w;
    if (plane > L->skip_plane) {
        free(L->skip_x);
        free(L->skip_x2);
        free(L->skip_y);
        L->skip_x = malloc((size_t)plane * sizeof(float));
        L->skip_x2 = malloc((size_t)plane * sizeof(float));
        L->skip_y = malloc((size_t)plane * sizeof(int32_t));
        if (!L->skip_x || !L->skip_x2 || !L->skip_y)
            L->dist->abort(sh->user, 1, "out of memory (batch planes)");
        L->skip_plane = plane;
    }
}

/* Where sample b of the batch goes: its place among this process's samples, or a skip plane. */
static float *dst_f(const mk_loop *L, float *base, int64_t b, int64_t off, int64_t n, int64_t plane,
                    float *skip)
{
    return b >= off && b < off + n ? base + (b - off) * plane : skip;
}

void mk_loop_batch(mk_loop *L, int stream, int batch, mk_tensor *x, int32_t *y, mk_tensor *x2)
{
    const mk_slices *s = &L->stream[stream].s;
    int64_t plane = (int64_t)s->h * s->w, off, n;
    batch_share(L, stream, batch, &off, &n);
    for (int b = 0; b < batch; b++) {
        int mine = b >= off && b < off + n;
        mk_slices_sample(s, &L->stream[stream].rng, b, batch,
                         dst_f(L, x->data, b, off, n, plane, L->skip_x),
                         s->lab && y ? (mine ? y + (b - off) * plane : L->skip_y) : NULL,
                         x2 && x2->data ? dst_f(L, x2->data, b, off, n, plane, L->skip_x2) : NULL);
    }
    if (L->dist) { /* this process's share of the batch */
        x->ne[0] = n;
        x->batch_of = batch;
        if (x2 && x2->data) {
            x2->ne[0] = n;
            x2->batch_of = batch;
        }
    }
}

void mk_loop_batch_aligned(mk_loop *L, int stream, int batch, mk_tensor *x, int32_t *y,
                           const float *const *planes, int nplanes, mk_tensor *out)
{
    const mk_slices *s = &L->stream[stream].s;
    int64_t plane = (int64_t)s->h * s->w, off, n;
    batch_share(L, stream, batch, &off, &n);
    for (int b = 0; b < batch; b++) {
        int64_t i;
        int ox, oy;
        mk_slices_pick(s, &L->stream[stream].rng, b, batch, &i, &ox, &oy);
        if (!(b >= off && b < off + n))
            continue; /* another rank's sample: its draws are made, its crops are not needed */
        mk_slices_crop(s, i, ox, oy, x->data + (b - off) * plane,
                       s->lab && y ? y + (b - off) * plane : NULL, NULL);
        for (int k = 0; k < nplanes; k++)
            mk_slices_crop_plane(s, planes[k], i, ox, oy, out[k].data + (b - off) * plane);
    }
    if (L->dist) {
        x->ne[0] = n;
        x->batch_of = batch;
        for (int k = 0; k < nplanes; k++) {
            out[k].ne[0] = n;
            out[k].batch_of = batch;
        }
    }
}

int mk_loop_primary(const mk_loop *L)
{
    return L->primary;
}

/* This process's rows [*off, *off + *n) of batch x (all of them without a split). */
static void rows_of(const mk_loop *L, const mk_tensor *x, int64_t *off, int64_t *n, int64_t *B)
{
    *off = 0;
    *n = *B = x->ne[0];
    if (L->dist && x->batch_of) {
        *B = x->batch_of;
        mk_nn_share_range(x->batch_of, L->dist->share.ranks, L->dist->share.rank, off, n);
        MK_ASSERT(*n == x->ne[0]);
    }
}

int mk_loop_mine(const mk_loop *L, const mk_tensor *x, int64_t b, int64_t *row)
{
    int64_t off, n, B;
    rows_of(L, x, &off, &n, &B);
    *row = b - off;
    return b >= off && b < off + n;
}

int64_t mk_loop_take_share(mk_loop *L, mk_tensor *t, int32_t **labels)
{
    int64_t B = t->ne[0];
    if (!L->dist)
        return B;
    int64_t off, n, per = B > 0 ? mk_tensor_numel(t) / B : 0;
    const mk_nn_share *sh = &L->dist->share;
    mk_nn_share_range(B, sh->ranks, sh->rank, &off, &n);
    if (n < 1) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "%s: a batch of %lld is smaller than the %d ranks: every rank needs at least one "
                 "sample (raise the batch or run fewer ranks)",
                 L->m->name, (long long)B, sh->ranks);
        L->dist->abort(sh->user, 2, msg);
    }
    t->data += off * per;
    t->ne[0] = n;
    t->batch_of = B;
    if (labels && *labels)
        *labels += off;
    return n;
}

void mk_loop_copy(mk_tensor *dst, const mk_tensor *src)
{
    MK_ASSERT(src->ne[0] <= dst->ne[0] || dst->batch_of);
    dst->ne[0] = src->ne[0];
    dst->batch_of = src->batch_of;
    mk_tensor_copy(dst, src);
}

void mk_loop_noise(mk_loop *L, mk_rng *r, mk_tensor *x, float sigma, float clip)
{
    int64_t off, n, B;
    rows_of(L, x, &off, &n, &B);
    int64_t per = n > 0 ? mk_tensor_numel(x) / n : 0;
    mk_nn_noise_clamped_rows(r, x, sigma, clip, off * per, (B - off - n) * per);
}

double mk_loop_sum_rows(mk_loop *L, const mk_tensor *x, const double *rows)
{
    int64_t off, n, B;
    rows_of(L, x, &off, &n, &B);
    const double *all = rows;
    double *own = NULL;
    if (L->dist && x->batch_of) { /* every rank's values, in rank (= sample) order */
        const mk_nn_share *sh = &L->dist->share;
        size_t counts[1024];
        MK_ASSERT(sh->ranks <= 1024);
        for (int rr = 0; rr < sh->ranks; rr++) {
            int64_t o, m;
            mk_nn_share_range(B, sh->ranks, rr, &o, &m);
            counts[rr] = (size_t)m * sizeof *rows;
        }
        own = malloc((size_t)(B > 0 ? B : 1) * sizeof *own);
        MK_ASSERT(own != NULL);
        MK_ASSERT(sh->allgather(sh->user, rows, own, counts, sh->ranks) == 0);
        all = own;
    }
    double tot = 0;
    for (int64_t i = 0; i < B; i++)
        tot += all[i];
    free(own);
    return tot;
}

double mk_loop_mean(mk_loop *L, const mk_tensor *x)
{
    int64_t off, n, B;
    rows_of(L, x, &off, &n, &B);
    int64_t per = n > 0 ? mk_tensor_numel(x) / n : 0;
    double *ps = malloc((size_t)(n > 0 ? n : 1) * sizeof *ps);
    MK_ASSERT(ps != NULL);
    for (int64_t i = 0; i < n; i++) {
        double a = 0;
        for (int64_t k = 0; k < per; k++)
            a += x->data[i * per + k];
        ps[i] = a;
    }
    double tot = mk_loop_sum_rows(L, x, ps);
    free(ps);
    return B * per > 0 ? tot / (double)(B * per) : NAN;
}

mk_rng *mk_loop_stream_rng(mk_loop *L, int stream)
{
    return &L->stream[stream].rng;
}

mk_ctx *mk_loop_ctx(mk_loop *L)
{
    return L->ctx;
}
const mk_stage_common *mk_loop_common(const mk_loop *L)
{
    return L->c;
}
const char *mk_loop_stage(const mk_loop *L)
{
    return L->m->name;
}
mk_nn_graph *mk_loop_graph(mk_loop *L)
{
    return L->g;
}
long long mk_loop_iter(const mk_loop *L)
{
    return L->it;
}
long long mk_loop_total(const mk_loop *L)
{
    return L->total;
}
mk_nn_params *mk_loop_params(mk_loop *L, int net)
{
    return L->net[net].params;
}
mk_unet *mk_loop_unet(mk_loop *L, int net)
{
    return L->net[net].unet;
}
mk_translator *mk_loop_translator(mk_loop *L, int net)
{
    return L->net[net].tr;
}
mk_slices *mk_loop_slices(mk_loop *L, int stream)
{
    return &L->stream[stream].s;
}

void mk_loop_optim_step(mk_loop *L, int net)
{
    /* never a step on the gradients of a graph that stopped part way (out of memory, cancel) */
    if (L->net[net].opt && !mk_nn_graph_oom(L->g))
        mk_optim_step(L->net[net].opt);
}

mk_status mk__load_data(mk_loop *L, const mk_data_params *d, const char *modality, int need_labels,
                        uint64_t data_stream, const char *stream_name, uint64_t rng_stream,
                        int *stream)
{
    const mk_stage_common *c = mk_loop_common(L);
    mk_slices s;
    memset(&s, 0, sizeof s);
    mk_status st = mk_data_load(mk_loop_ctx(L), d, modality, "train", need_labels,
                                mk__seed(c->seed, data_stream), &s);
    if (st != MK_OK)
        return mk_err_prefix(mk_loop_ctx(L), "%s: training data", mk_loop_stage(L));
    if ((*stream = mk_loop_add_stream(L, stream_name, &s, mk__seed(c->seed, rng_stream))) < 0) {
        mk_slices_free(&s);
        return mk_loop_ctx(L)->status;
    }
    return MK_OK;
}

/* ---------------------------------------------------------------- files */

static int group_list(mk_loop *L, const int *nets, int n, mk__ck_model *m, int with_opt)
{
    for (int i = 0; i < n; i++)
        m[i] = (mk__ck_model){L->net[nets[i]].name, L->net[nets[i]].params,
                              with_opt ? L->net[nets[i]].opt : NULL};
    return n;
}

mk_status mk_loop_save_nets(mk_loop *L, const char *file, const char *kind, const int *nets, int n)
{
    if (!L->primary)
        return MK_OK; /* rank 0 writes the models of the job */
    char path[4200];
    mk__ck_model m[MAX_NETS];
    mk_status st = mk__run_path(L->ctx, L->c->run_dir, "models", file, path, sizeof path);
    if (st == MK_OK)
        st = mk__ckpt_save(L->ctx, path, kind, L->total, m, group_list(L, nets, n, m, 0), NULL, 0);
    return st;
}

mk_status mk_loop_save_unet(mk_loop *L, const char *file, int net, const char *modality,
                            const char *role)
{
    if (!L->primary)
        return MK_OK; /* rank 0 writes the models of the job */
    char path[4200];
    const mk_stage_common *c = L->c;
    mk_model_info info = {L->m->name,
                          role,
                          modality,
                          c->version ? c->version : "unknown",
                          c->config_hash ? c->config_hash : "",
                          c->largest_component};
    char *text = mk_model_info_json(mk_unet_config(L->net[net].unet), &c->data, &info);
    if (!text)
        return mk_err(L->ctx, MK_ERR_NOMEM, "%s: out of memory", L->m->name);
    mk_status st = mk__run_path(L->ctx, c->run_dir, "models", file, path, sizeof path);
    if (st == MK_OK)
        st = mk_model_save_info(L->ctx, path, L->net[net].params, NULL, MK_INFER_ATTR, text);
    free(text);
    return st;
}

mk_status mk_loop_load_nets(mk_loop *L, const char *path, const char *kind, const int *nets, int n)
{
    mk__ck_model m[MAX_NETS];
    return mk__ckpt_load(L->ctx, path, kind, NULL, m, group_list(L, nets, n, m, 0), NULL, 0);
}

/* Every net (with its optimiser state), every stream's RNG and the graph's RNG. */
static void collect(mk_loop *L, mk__ck_model *m, int *nm, mk__ck_rng *r, int *nr)
{
    *nm = 0;
    for (int k = 0; k < L->nnet; k++)
        m[(*nm)++] = (mk__ck_model){L->net[k].name, L->net[k].params, L->net[k].opt};
    *nr = 0;
    for (int k = 0; k < L->nstream; k++)
        r[(*nr)++] = (mk__ck_rng){L->stream[k].name, &L->stream[k].rng};
    r[(*nr)++] = (mk__ck_rng){"graph", mk_nn_graph_rng(L->g)};
}

static mk_status save_ckpt(mk_loop *L, const char *path, long long it)
{
    if (!L->primary)
        return MK_OK; /* rank 0 writes the checkpoints of the job */
    mk__ck_model m[MAX_NETS];
    mk__ck_rng r[MAX_STREAMS + 1];
    int nm, nr;
    collect(L, m, &nm, r, &nr);
    return mk__ckpt_save(L->ctx, path, L->m->name, it, m, nm, r, nr);
}

/* ---------------------------------------------------------------- running */

static double window_mean(const double *v, long long from, long long to)
{
    double s = 0;
    for (long long i = from; i < to; i++)
        s += v[i];
    return to > from ? s / (double)(to - from) : 0;
}

static void loop_free(mk_loop *L)
{
    for (int k = 0; k < L->nnet; k++) {
        mk_optim_free(L->net[k].opt);
        mk_unet_free(L->net[k].unet);
        mk_translator_free(L->net[k].tr);
        if (L->net[k].model_free)
            L->net[k].model_free(L->net[k].model);
        if (L->net[k].kind == MK_NET_PARAMS)
            mk_nn_params_free(L->net[k].params);
    }
    for (int k = 0; k < L->nstream; k++)
        mk_slices_free(&L->stream[k].s);
    mk_nn_graph_free(L->g);
    mk__val_free(L->val);
    free(L->skip_x);
    free(L->skip_x2);
    free(L->skip_y);
}

/* Validation: the method's val_net on the val split, every val_every iterations and at the end;
 * the best copy is models/<stem of outputs[0].file>_best.h5. */
static mk_status val_setup(mk_loop *L, void *state, long long it0)
{
    const mk_stage_common *c = L->c;
    const char *modality = NULL;
    if (!c->validate || !L->m->val_net || L->m->noutputs < 1 || !L->primary)
        return MK_OK; /* validation only decides rank 0's best copy */
    int net = L->m->val_net(L, state, &modality);
    if (net < 0 || !modality || L->net[net].kind != MK_NET_UNET)
        return MK_OK;
    const char *file = L->m->outputs[0].file, *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    size_t n = strlen(base);
    if (n > 3 && !strcmp(base + n - 3, ".h5"))
        n -= 3;
    snprintf(L->best, sizeof L->best, "%.*s_best.h5", (int)n, base);
    L->val_net = net;
    L->val_modality = modality;
    L->val_every = c->val_every > 0 ? c->val_every : (L->total >= 10 ? L->total / 10 : 1);
    mk_status st = mk__val_open(L->ctx, c, L->m->name, modality, &L->val);
    if (st == MK_OK && L->val && it0 > 0)
        st = mk__val_resume(L->val, it0);
    return st;
}

/* Under data parallelism: every rank's status, so that all go on or all stop together (a rank
 * whose own status is fine reports the failure of another). A collective: every rank calls it at
 * the same points. */
static mk_status agree(mk_loop *L, mk_status st)
{
    if (!L->dist)
        return st;
    int bad = L->dist->max_int(L->dist->share.user, st != MK_OK);
    if (bad && st == MK_OK)
        return mk_err(L->ctx, MK_ERR_ABORTED, "%s: stopped because another rank failed",
                      L->m->name);
    return st;
}

static mk_status run(mk_loop *L, void *state, mk_train_stats *stats)
{
    mk_ctx *ctx = L->ctx;
    const mk_stage_common *c = L->c;
    const char *stage = L->m->name;
    char ck[4200];
    mk_status st =
        L->primary ? mk__run_path(ctx, c->run_dir, "checkpoints", "", ck, sizeof ck) : MK_OK;
    if (st != MK_OK)
        return st;
    snprintf(ck, sizeof ck, "%s/checkpoints/%s.h5", c->run_dir, stage);
    long long it0 = 0;
    int resumed = 0;
    if (c->resume && mk_fs_is_file(ck)) {
        mk__ck_model m[MAX_NETS];
        mk__ck_rng r[MAX_STREAMS + 1];
        int nm, nr;
        collect(L, m, &nm, r, &nr);
        if ((st = mk__ckpt_load(ctx, ck, stage, &it0, m, nm, r, nr)) != MK_OK)
            mk_err_prefix(ctx, "%s: resume", stage);
        else if (it0 > L->total)
            st = mk_err(ctx, MK_ERR_FORMAT,
                        "%s: checkpoint at iteration %lld is past the "
                        "configured %lld iterations",
                        ck, it0, L->total);
        else {
            MK_LOG_I(ctx, "%s: resuming from %s at iteration %lld/%lld", stage, ck, it0, L->total);
            resumed = 1;
        }
    }
    if (st == MK_OK && L->m->start)
        st = L->m->start(L, state, resumed);
    if (st == MK_OK)
        st = val_setup(L, state, it0);
    long long calls0 = 0;
    double bytes0 = 0;
    if (L->dist)
        L->dist->traffic(L->dist->share.user, &calls0, &bytes0);
    double *trace = calloc((size_t)L->total + 1, sizeof *trace);
    double *trace_hint = calloc((size_t)L->total + 1, sizeof *trace_hint);
    if (st == MK_OK && (!trace || !trace_hint))
        st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory (loss trace)", stage);
    if ((st = agree(L, st)) != MK_OK) { /* every rank resumed and started, or all stop */
        free(trace);
        free(trace_hint);
        return st;
    }
    double t0 = mk_now_s(), c0 = (double)clock() / CLOCKS_PER_SEC;
    double sum[MK_TERMS_MAX] = {0};
    long long nsum = 0, it = it0, w = L->total / 4 < 50 ? L->total / 4 : 50;
    long long last_ck = it0; /* iteration of the checkpoint on disk (0: none) */
    if (w < 1)
        w = 1;
    mk_terms T;
    memset(&T, 0, sizeof T);
    for (; it < L->total; it++) {
        /* under data parallelism a stop request seen by any rank stops every rank at the same
         * iteration (graph ops do not watch the flag there: a rank cannot leave a collective) */
        int cancel =
            L->dist ? L->dist->max_int(L->dist->share.user, ctx->cancel != 0) : ctx->cancel != 0;
        if (cancel) {
            ctx->cancel = 1;
            MK_LOG_W(ctx, "%s: interrupted at iteration %lld, writing %s", stage, it, ck);
            if ((st = save_ckpt(L, ck, it)) == MK_OK)
                st = mk_err(ctx, MK_ERR_ABORTED,
                            "%s: interrupted at iteration %lld/%lld "
                            "(checkpoint %s; continue with --resume)",
                            stage, it, L->total, ck);
            goto out;
        }
        L->it = it;
        for (int k = 0; k < L->nnet; k++)
            if (L->net[k].ema_of < 0)
                mk_nn_params_zero_grad(L->net[k].params);
        for (int k = 0; k < L->nnet; k++)
            if (L->net[k].opt && L->net[k].has_sched)
                mk_optim_set_lr(L->net[k].opt, mk_sched_lr(&L->net[k].sched, it));
        memset(&T, 0, sizeof T);
        st = L->m->step(L, state, &T);
        if (mk_nn_graph_cancelled(L->g)) {
            /* stopped part way: this iteration's state (batch-norm statistics, random draws)
             * is not one a resume could reproduce, so nothing of it is written */
            if (last_ck > 0)
                st = mk_err(ctx, MK_ERR_ABORTED,
                            "%s: interrupted inside iteration %lld/%lld; the checkpoint of "
                            "iteration %lld (%s) is kept: continue with --resume",
                            stage, it + 1, L->total, last_ck, ck);
            else
                st = mk_err(ctx, MK_ERR_ABORTED,
                            "%s: interrupted inside iteration %lld/%lld, before its first "
                            "checkpoint: --resume starts it again",
                            stage, it + 1, L->total);
            goto out;
        }
        if (st != MK_OK && L->dist) /* one rank's failure inside a step: the others may wait
                                       in a collective, so the job stops */
            L->dist->abort(L->dist->share.user, 1, mk_ctx_errmsg(ctx));
        if (st != MK_OK)
            goto out;
        for (int k = 0; k < L->nnet; k++)
            if (L->net[k].ema_of >= 0 &&
                (st = mk_nn_params_ema(ctx, L->net[k].params, L->net[L->net[k].ema_of].params,
                                       L->net[k].ema_decay)) != MK_OK)
                goto out;
        int finite = 1;
        for (int k = 0; k < T.n; k++)
            finite &= isfinite(T.value[k]) != 0;
        char detail[400] = "";
        for (int k = 0; k < T.n; k++)
            snprintf(detail + strlen(detail), sizeof detail - strlen(detail), "%s%s %.4g",
                     k ? " " : "", T.name[k], T.value[k]);
        if (!finite) {
            st = mk_err(ctx, MK_ERR_INVALID,
                        "%s: loss is not finite at iteration %lld (%s): "
                        "lower the learning rate",
                        stage, it + 1, detail);
            goto out;
        }
        trace[it] = T.n > 0 ? T.value[0] : 0;
        for (int k = 0; k < T.n; k++) {
            sum[k] += T.value[k];
            if (!strcmp(T.name[k], "hint"))
                trace_hint[it] = T.value[k];
        }
        nsum++;
        mk_progress(ctx, stage, it + 1, L->total, "iter", detail);
        if ((it + 1) % c->log_every == 0 || it + 1 == L->total) {
            double el = mk_now_s() - t0;
            char line[400] = "";
            for (int k = 0; k < T.n; k++)
                snprintf(line + strlen(line), sizeof line - strlen(line), " %s %.4f", T.name[k],
                         sum[k] / (double)nsum);
            MK_LOG_I(ctx, "%s: iter %lld/%lld%s (%.2f it/s)", stage, it + 1, L->total, line,
                     (double)(it + 1 - it0) / el);
            memset(sum, 0, sizeof sum);
            nsum = 0;
        }
        if (L->val && ((it + 1) % L->val_every == 0 || it + 1 == L->total)) {
            int improved = 0;
            if ((st = mk__val_run(L->val, L->net[L->val_net].unet, it + 1, &improved)) != MK_OK)
                goto out;
            if (improved && (st = mk_loop_save_unet(L, L->best, L->val_net, L->val_modality,
                                                    "student")) != MK_OK)
                goto out;
        }
        if ((it + 1) % c->checkpoint_every == 0 && it + 1 < L->total) {
            if ((st = save_ckpt(L, ck, it + 1)) != MK_OK)
                goto out;
            last_ck = it + 1;
        }
    }
    double el = mk_now_s() - t0;
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->iterations = L->total;
        stats->resumed_from = it0;
        stats->seconds = el;
        stats->iters_per_s = el > 0 ? (double)(L->total - it0) / el : 0;
        long long lo = L->total - w > it0 ? L->total - w : it0;
        stats->first_loss = window_mean(trace, it0, it0 + w < L->total ? it0 + w : L->total);
        stats->last_loss = window_mean(trace, lo, L->total);
        stats->last_hint = window_mean(trace_hint, lo, L->total);
        stats->validations = mk__val_count(L->val);
        if (stats->validations > 0) {
            stats->val_best = mk__val_best(L->val)->dice;
            stats->val_best_iter = mk__val_best(L->val)->iteration;
            stats->val_last = mk__val_last(L->val)->dice;
        }
        stats->nterms = T.n;
        for (int k = 0; k < stats->nterms; k++) {
            snprintf(stats->term_name[k], sizeof stats->term_name[k], "%s", T.name[k]);
            stats->term_last[k] = T.value[k];
        }
    }
    double cpu = (double)clock() / CLOCKS_PER_SEC - c0;
    if (L->total > it0)
        MK_LOG_I(ctx,
                 "%s: %lld iterations in %.1f s (%.2f it/s; %.1f s of CPU, %.1f ms CPU per "
                 "iteration)",
                 stage, L->total - it0, el, el > 0 ? (double)(L->total - it0) / el : 0.0, cpu,
                 1e3 * cpu / (double)(L->total - it0));
    if (L->dist && L->total > it0) {
        long long calls;
        double bytes;
        L->dist->traffic(L->dist->share.user, &calls, &bytes);
        double per = (double)(L->total - it0);
        MK_LOG_I(ctx,
                 "%s: data-parallel over %d ranks: %.0f collectives and %.3f MB received by this "
                 "rank per iteration",
                 stage, L->dist->share.ranks, (double)(calls - calls0) / per,
                 (bytes - bytes0) / per / 1e6);
    }
    if ((st = L->m->save(L, state)) != MK_OK)
        goto out;
    /* the finished state, so a resume after a crash between here and the runner's marker only
     * re-saves the models */
    st = save_ckpt(L, ck, L->total);
out:
    free(trace);
    free(trace_hint);
    return st;
}

void mk_method_defaults(const mk_method *m, void *cfg)
{
    memset(cfg, 0, m->cfg_size);
    for (int i = 0; i < m->nuses; i++)
        mk_param_defaults(m->uses[i].section->rows, m->uses[i].section->nrows,
                          (char *)cfg + m->uses[i].offset);
}

mk_status mk_method_check(mk_ctx *ctx, const mk_method *m, const mk_stage_common *c,
                          const void *cfg)
{
    const mk_data_params *d = &c->data;
    if (c->unet.dim != 2 || c->unet.in_ch != 1)
        return mk_err(ctx, MK_ERR_INVALID, "%s: the U-Net must be 2D with one input channel",
                      m->name);
    if (c->model_norm != 0)
        return mk_err(ctx, MK_ERR_CONFIG,
                      "model.norm: only \"batch\" is implemented by the "
                      "U-Net");
    if (!(d->ct_window[1] > d->ct_window[0]))
        return mk_err(ctx, MK_ERR_CONFIG, "data.ct_window: expected low < high, got [%g, %g]",
                      d->ct_window[0], d->ct_window[1]);
    int div = 1 << (c->unet.levels - 1);
    for (int a = 0; a < 2; a++)
        if (d->patch[a] % div != 0 || d->patch[a] % 4 != 0)
            return mk_err(ctx, MK_ERR_CONFIG,
                          "data.patch: expected multiples of %d (U-Net depth "
                          "%d and the translator), got [%d, %d]",
                          div > 4 ? div : 4, c->unet.levels, d->patch[0], d->patch[1]);
    mk_status st = mk_data_check_labels(ctx, d);
    if (st != MK_OK)
        return st;
    return m->check ? m->check(ctx, c, cfg) : MK_OK;
}

mk_status mk_method_train(mk_ctx *ctx, const mk_method *m, const mk_stage_common *c,
                          const void *cfg, mk_train_stats *stats)
{
    mk_status st = mk_method_check(ctx, m, c, cfg);
    if (st != MK_OK)
        return st;
    long long total = m->iterations(cfg);
    if (total <= 0 && m->zero_skips) {
        MK_LOG_I(ctx, "%s: 0 iterations, nothing to do", m->name);
        if (stats)
            memset(stats, 0, sizeof *stats);
        return MK_OK;
    }
    mk_loop L;
    memset(&L, 0, sizeof L);
    L.ctx = ctx;
    L.m = m;
    L.c = c;
    L.total = total;
    void *state = calloc(1, m->state_size ? m->state_size : 1);
    if (!state)
        return mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory", m->name);
    L.dist = c->dist;
    L.primary = !c->dist || c->dist->share.rank == 0;
    if (!(L.g = mk_nn_graph_new(c->threads > 0 ? c->threads : 1, mk__seed(c->seed, 32))))
        st = mk_err(ctx, MK_ERR_NOMEM, "%s: out of memory (graph)", m->name);
    else if (c->dist) /* a stop is agreed at iteration boundaries instead (run) */
        mk_nn_graph_set_share(L.g, &c->dist->share);
    else
        mk_nn_graph_set_cancel(L.g, &ctx->cancel); /* SIGTERM is seen within one op */
    if (st == MK_OK)
        st = m->init(&L, state, cfg);
    st = agree(&L, st); /* every rank is past init, or all stop */
    if (st == MK_OK)
        st = run(&L, state, stats);
    if (m->free)
        m->free(state);
    free(state);
    loop_free(&L);
    return st;
}

mk_var *mk_method_seg_loss(mk_nn_graph *g, mk_var *logits, const int32_t *y, float dw)
{
    mk_var *d = mk_nn_dice_loss(g, logits, y, 1e-5f);
    mk_var *ce = mk_nn_cross_entropy(g, logits, y, NULL, -100);
    return mk_nn_add(g, mk_nn_scale(g, d, dw), mk_nn_scale(g, ce, 1.0f - dw));
}

mk_status mk_method_supervised_step(mk_loop *L, int stream, int net, int batch, mk_tensor *x,
                                    int32_t *y, float dice_weight, int dice_background,
                                    const char *term, mk_terms *terms)
{
    mk_nn_graph *g = mk_loop_graph(L);
    mk_loop_batch(L, stream, batch, x, y, NULL);
    mk_nn_graph_begin(g, 1);
    mk_var *logits = mk_unet_forward(mk_loop_unet(L, net), g, mk_nn_input(g, x, 0));
    float dw = dice_weight;
    mk_var *l =
        dice_background
            ? mk_method_seg_loss(g, logits, y, dw)
            : mk_nn_add(
                  g,
                  mk_nn_scale(g, mk_nn_dice_loss_ex(g, logits, y, 1e-5f, MK_NN_DICE_NO_BACKGROUND),
                              dw),
                  mk_nn_scale(g, mk_nn_cross_entropy(g, logits, y, NULL, -100), 1.0f - dw));
    if (mk_nn_graph_oom(g) || !l)
        return mk_err(L->ctx, MK_ERR_NOMEM, "%s: out of memory in the forward pass", L->m->name);
    mk_terms_add(terms, term, mk_nn_value(l), 1);
    mk_nn_backward(g, l);
    mk_loop_optim_step(L, net);
    return MK_OK;
}

mk_sched mk_method_sched(int kind, float lr, long long total)
{
    mk_sched s;
    memset(&s, 0, sizeof s);
    s.kind = kind == MK_TRAIN_POLY     ? MK_SCHED_POLY
             : kind == MK_TRAIN_COSINE ? MK_SCHED_COSINE
                                       : MK_SCHED_CONSTANT;
    s.base_lr = lr;
    s.total_iters = total;
    s.power = 0.9f;
    return s;
}
