/* Parameter store, graph (tape) and the reverse pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_nn_impl.h"

/* ---------------------------------------------------------------- parameter store */

struct mk_nn_params {
    mk_param **p;
    int n, cap;
};

mk_nn_params *mk_nn_params_new(void)
{
    return calloc(1, sizeof(mk_nn_params));
}

void mk_nn_params_free(mk_nn_params *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        mk_tensor_free(&s->p[i]->value);
        free(s->p[i]->grad);
        free(s->p[i]);
    }
    free(s->p);
    free(s);
}

mk_param *mk_nn_params_add(mk_nn_params *s, const char *name, int ndim, const int64_t *ne,
                           int is_buffer)
{
    if (strlen(name) >= MK_NN_NAME_MAX || mk_nn_params_find(s, name))
        return NULL;
    if (s->n == s->cap) {
        int nc = s->cap ? 2 * s->cap : 32;
        mk_param **np = realloc(s->p, (size_t)nc * sizeof *np);
        if (!np)
            return NULL;
        s->p = np;
        s->cap = nc;
    }
    mk_param *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->is_buffer = is_buffer;
    if (mk_tensor_new(&p->value, ndim, ne) != 0) {
        free(p);
        return NULL;
    }
    if (!is_buffer) {
        p->grad = calloc((size_t)mk_tensor_numel(&p->value), sizeof(float));
        if (!p->grad) {
            mk_tensor_free(&p->value);
            free(p);
            return NULL;
        }
    }
    s->p[s->n++] = p;
    return p;
}

int mk_nn_params_count(const mk_nn_params *s)
{
    return s->n;
}

mk_param *mk_nn_params_at(mk_nn_params *s, int i)
{
    MK_ASSERT(i >= 0 && i < s->n);
    return s->p[i];
}

mk_param *mk_nn_params_find(mk_nn_params *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->p[i]->name, name) == 0)
            return s->p[i];
    return NULL;
}

int64_t mk_nn_params_numel(const mk_nn_params *s)
{
    int64_t n = 0;
    for (int i = 0; i < s->n; i++)
        if (!s->p[i]->is_buffer)
            n += mk_tensor_numel(&s->p[i]->value);
    return n;
}

void mk_nn_params_zero_grad(mk_nn_params *s)
{
    for (int i = 0; i < s->n; i++)
        if (s->p[i]->grad)
            memset(s->p[i]->grad, 0, (size_t)mk_tensor_numel(&s->p[i]->value) * sizeof(float));
}

int mk_nn_params_set_frozen(mk_nn_params *s, const char *prefix, int frozen)
{
    int k = 0;
    size_t lp = strlen(prefix);
    for (int i = 0; i < s->n; i++)
        if (!s->p[i]->is_buffer && strncmp(s->p[i]->name, prefix, lp) == 0) {
            s->p[i]->frozen = frozen;
            k++;
        }
    return k;
}

int mk_nn_params_set_group(mk_nn_params *s, const char *prefix, int group)
{
    MK_ASSERT(group >= 0 && group < MK_NN_MAX_GROUPS);
    int k = 0;
    size_t lp = strlen(prefix);
    for (int i = 0; i < s->n; i++)
        if (strncmp(s->p[i]->name, prefix, lp) == 0) {
            s->p[i]->group = group;
            k++;
        }
    return k;
}

static mk_status params_match(mk_ctx *ctx, mk_nn_params *dst, const mk_nn_params *src, int i,
                              mk_param **out)
{
    const mk_param *sp = src->p[i];
    mk_param *dp = mk_nn_params_find(dst, sp->name);
    if (!dp)
        return mk_err(ctx, MK_ERR_NOT_FOUND, "parameter %s: missing in destination", sp->name);
    if (!mk_tensor_same_shape(&dp->value, &sp->value))
        return mk_err(ctx, MK_ERR_INVALID, "parameter %s: shapes differ", sp->name);
    *out = dp;
    return MK_OK;
}

mk_status mk_nn_params_copy(mk_ctx *ctx, mk_nn_params *dst, const mk_nn_params *src)
{
    for (int i = 0; i < src->n; i++) {
        mk_param *dp = NULL;
        mk_status st = params_match(ctx, dst, src, i, &dp);
        if (st != MK_OK)
            return st;
        mk_tensor_copy(&dp->value, &src->p[i]->value);
    }
    return MK_OK;
}

mk_status mk_nn_params_ema(mk_ctx *ctx, mk_nn_params *teacher, const mk_nn_params *student,
                           float decay)
{
    for (int i = 0; i < student->n; i++) {
        mk_param *tp = NULL;
        mk_status st = params_match(ctx, teacher, student, i, &tp);
        if (st != MK_OK)
            return st;
        const float *s = student->p[i]->value.data;
        float *t = tp->value.data;
        int64_t n = mk_tensor_numel(&tp->value);
        for (int64_t k = 0; k < n; k++)
            t[k] = decay * t[k] + (1.0f - decay) * s[k];
    }
    return MK_OK;
}

void mk_nn_init_conv(mk_rng *r, mk_param *weight, mk_param *bias)
{
    int64_t fan_in = weight->value.ne[1];
    for (int d = 2; d < weight->value.ndim; d++)
        fan_in *= weight->value.ne[d];
    float bound = fan_in > 0 ? 1.0f / sqrtf((float)fan_in) : 0.0f;
    int64_t n = mk_tensor_numel(&weight->value);
    for (int64_t i = 0; i < n; i++)
        weight->value.data[i] = (2.0f * mk_rng_uniform(r) - 1.0f) * bound;
    if (bias) {
        n = mk_tensor_numel(&bias->value);
        for (int64_t i = 0; i < n; i++)
            bias->value.data[i] = (2.0f * mk_rng_uniform(r) - 1.0f) * bound;
    }
}

void mk_nn_fill(mk_param *p, float v)
{
    int64_t n = mk_tensor_numel(&p->value);
    for (int64_t i = 0; i < n; i++)
        p->value.data[i] = v;
}

/* ---------------------------------------------------------------- graph */

mk_nn_graph *mk_nn_graph_new(int threads, uint64_t seed)
{
    mk_nn_graph *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    mk_arena_init(&g->arena, (size_t)16 << 20);
    g->threads = threads < 1 ? 1 : threads;
    g->update_stats = 1;
    mk_rng_seed(&g->rng, seed);
    return g;
}

static void drop_pending(mk_nn_graph *g);

void mk_nn_graph_free(mk_nn_graph *g)
{
    if (!g)
        return;
    mk_arena_free(&g->arena);
    drop_pending(g);
    free(g->pending);
    free(g->nodes);
    free(g->slots);
    free(g);
}

void mk_nn_graph_begin(mk_nn_graph *g, int training)
{
    mk_arena_reset(&g->arena);
    drop_pending(g); /* a backward pass that stopped part way */
    g->n_nodes = 0;
    mk__prof_drop();
    g->n_slots = 0;
    g->n_tmp = 0;
    g->training = training;
    g->oom = 0;
    g->cancelled = 0;
    g->bad_labels = 0;
    g->kinks = 0;
}

void mk_nn_graph_set_relu_kink(mk_nn_graph *g, float tol, uint64_t side_mask)
{
    g->kink_tol = tol;
    g->kink_side = side_mask;
}

long long mk_nn_graph_relu_kinks(const mk_nn_graph *g)
{
    return g->kinks;
}

int mk_nn_graph_training(const mk_nn_graph *g)
{
    return g->training;
}

int mk_nn_graph_threads(const mk_nn_graph *g)
{
    return g->threads;
}

void mk_nn_graph_set_threads(mk_nn_graph *g, int threads)
{
    g->threads = threads < 1 ? 1 : threads;
}

int mk_nn_graph_set_no_grad(mk_nn_graph *g, int no_grad)
{
    int old = g->no_grad;
    g->no_grad = no_grad;
    return old;
}

int mk_nn_graph_oom(const mk_nn_graph *g)
{
    return g->oom;
}

long long mk_nn_graph_bad_labels(const mk_nn_graph *g)
{
    return g->bad_labels;
}

mk_arena *mk_nn_graph_arena(mk_nn_graph *g)
{
    return &g->arena;
}

mk_rng *mk_nn_graph_rng(mk_nn_graph *g)
{
    return &g->rng;
}

void mk_nn_graph_set_update_stats(mk_nn_graph *g, int on)
{
    g->update_stats = on;
}

void mk_nn_graph_set_share(mk_nn_graph *g, const mk_nn_share *s)
{
    g->have_share = s != NULL && s->ranks > 1;
    if (g->have_share) {
        MK_ASSERT(s->allgather && s->rank >= 0 && s->rank < s->ranks);
        g->share = *s;
    }
}

void mk_nn_share_range(int64_t B, int ranks, int r, int64_t *offset, int64_t *n)
{
    int64_t q = B / ranks, rem = B % ranks;
    *n = q + (r < rem);
    *offset = r * q + (r < rem ? r : rem);
}

int64_t mk__global_n(const mk_nn_graph *g, const mk_var *v, int64_t n)
{
    return g->have_share && v && v->t.batch_of ? v->t.batch_of : n;
}

void mk__whole_batch_only(const mk_nn_graph *g, const mk_var *v, const char *op)
{
    if (g->have_share && v && v->t.batch_of) {
        fprintf(stderr, "medkd: op %s has no split-invariant batch reduction (data-parallel)\n",
                op);
        MK_ASSERT(!"op not data-parallel");
    }
}

/* The per-sample partials of the whole batch: this process's (no share) or every rank's gathered
 * in rank order (= global sample order). Returns the buffer (part itself, or malloc'd: *own) and
 * the sample count. */
static const void *fold_gather(mk_nn_graph *g, const mk_var *v, const void *part, int64_t n,
                               size_t bytes, int64_t *total, void **own)
{
    *own = NULL;
    *total = n;
    if (!(g->have_share && v && v->t.batch_of))
        return part;
    const int64_t B = v->t.batch_of;
    const mk_nn_share *s = &g->share;
    int64_t off, nr;
    mk_nn_share_range(B, s->ranks, s->rank, &off, &nr);
    MK_ASSERT(nr == n); /* a batch share has this rank's count of the global batch */
    size_t counts[1024];
    MK_ASSERT(s->ranks <= 1024);
    for (int r = 0; r < s->ranks; r++) {
        mk_nn_share_range(B, s->ranks, r, &off, &nr);
        counts[r] = (size_t)nr * bytes;
    }
    void *all = malloc(B > 0 ? (size_t)B * bytes : 1);
    MK_ASSERT(all != NULL);
    MK_ASSERT(s->allgather(s->user, part, all, counts, s->ranks) == 0);
    *own = all;
    *total = B;
    return all;
}

typedef struct mk_pending {
    void *part;
    int64_t n, B; /* this rank's rows, of a batch of B */
    size_t len;
    int kind;
    float *out;
} mk_pending;

/* out += the fold of rows [0, N) of p (kind 0: floats; kind 1: doubles summed, then rounded) */
static void apply_fold(const void *p, int64_t N, size_t len, int kind, float *out)
{
    if (kind == 0) {
        const float *f = p;
        for (int64_t s = 0; s < N; s++)
            for (size_t i = 0; i < len; i++)
                out[i] += f[(size_t)s * len + i];
        return;
    }
    const double *d = p;
    for (size_t i = 0; i < len; i++) {
        double acc = 0;
        for (int64_t s = 0; s < N; s++)
            acc += d[(size_t)s * len + i];
        out[i] += (float)acc;
    }
}

void mk__fold_defer(mk_nn_graph *g, const mk_var *v, void *part, int64_t n, size_t len, int kind,
                    float *out)
{
    if (!(g->have_share && v && v->t.batch_of)) {
        apply_fold(part, n, len, kind, out);
        free(part);
        return;
    }
    if (g->n_pending == g->cap_pending) {
        int cap = g->cap_pending ? 2 * g->cap_pending : 64;
        mk_pending *q = realloc(g->pending, (size_t)cap * sizeof *q);
        MK_ASSERT(q != NULL);
        g->pending = q;
        g->cap_pending = cap;
    }
    g->pending[g->n_pending++] = (mk_pending){part, n, v->t.batch_of, len, kind, out};
}

/* One allgather of every deferred fold's rows (rank-major: each rank's folds in order), then the
 * folds applied in the order they were made, each over its samples in global order. */
static void flush_pending(mk_nn_graph *g)
{
    if (g->n_pending == 0)
        return;
    const mk_nn_share *s = &g->share;
    const int P = s->ranks, K = g->n_pending;
    MK_ASSERT(P <= 1024);
    size_t counts[1024], total = 0, mine = 0;
    for (int r = 0; r < P; r++) {
        counts[r] = 0;
        for (int k = 0; k < K; k++) {
            const mk_pending *e = &g->pending[k];
            int64_t off, m;
            mk_nn_share_range(e->B, P, r, &off, &m);
            counts[r] += (size_t)m * e->len * (e->kind ? sizeof(double) : sizeof(float));
        }
        total += counts[r];
    }
    mine = counts[s->rank];
    char *buf = malloc(mine ? mine : 1), *all = malloc(total ? total : 1);
    MK_ASSERT(buf && all);
    size_t at = 0;
    for (int k = 0; k < K; k++) {
        const mk_pending *e = &g->pending[k];
        size_t b = (size_t)e->n * e->len * (e->kind ? sizeof(double) : sizeof(float));
        memcpy(buf + at, e->part, b);
        at += b;
    }
    MK_ASSERT(s->allgather(s->user, buf, all, counts, P) == 0);
    size_t cur[1024]; /* each rank's read position in `all` */
    for (int r = 0; r < P; r++)
        cur[r] = r == 0 ? 0 : cur[r - 1] + counts[r - 1];
    for (int k = 0; k < K; k++) {
        mk_pending *e = &g->pending[k];
        size_t el = e->kind ? sizeof(double) : sizeof(float);
        char *rows = malloc((size_t)(e->B > 0 ? e->B : 1) * e->len * el);
        MK_ASSERT(rows != NULL);
        size_t w = 0;
        for (int r = 0; r < P; r++) { /* rank order = global sample order */
            int64_t off, m;
            mk_nn_share_range(e->B, P, r, &off, &m);
            size_t b = (size_t)m * e->len * el;
            memcpy(rows + w, all + cur[r], b);
            cur[r] += b;
            w += b;
        }
        apply_fold(rows, e->B, e->len, e->kind, e->out);
        free(rows);
        free(e->part);
    }
    free(buf);
    free(all);
    g->n_pending = 0;
}

static void drop_pending(mk_nn_graph *g)
{
    for (int k = 0; k < g->n_pending; k++)
        free(g->pending[k].part);
    g->n_pending = 0;
}

void mk__fold_d(mk_nn_graph *g, const mk_var *v, const double *part, int64_t n, size_t len,
                double *out)
{
    void *own;
    int64_t N;
    const double *p = fold_gather(g, v, part, n, len * sizeof(double), &N, &own);
    for (int64_t s = 0; s < N; s++)
        for (size_t i = 0; i < len; i++)
            out[i] += p[(size_t)s * len + i];
    free(own);
}

void mk__fold_f(mk_nn_graph *g, const mk_var *v, const float *part, int64_t n, size_t len,
                float *out)
{
    void *own;
    int64_t N;
    const void *p = fold_gather(g, v, part, n, len * sizeof(float), &N, &own);
    apply_fold(p, N, len, 0, out);
    free(own);
}

void *mk__scratch(mk_nn_graph *g, size_t bytes)
{
    void *p = mk_arena_alloc(&g->arena, bytes);
    if (!p)
        g->oom = 1;
    return p;
}

/* best fit among free slots of [bytes, 2 bytes], else a new arena buffer; -1 on OOM */
static int slot_get(mk_nn_graph *g, size_t bytes)
{
    int best = -1;
    for (int i = 0; i < g->n_slots; i++) {
        mk_slot *s = &g->slots[i];
        if (!s->busy && s->bytes >= bytes && s->bytes <= 2 * bytes &&
            (best < 0 || s->bytes < g->slots[best].bytes))
            best = i;
    }
    if (best >= 0) {
        g->slots[best].busy = 1;
        return best;
    }
    if (g->n_slots == g->cap_slots) {
        int nc = g->cap_slots ? 2 * g->cap_slots : 64;
        mk_slot *ns = realloc(g->slots, (size_t)nc * sizeof *ns);
        if (!ns)
            return -1;
        g->slots = ns;
        g->cap_slots = nc;
    }
    void *p = mk_arena_alloc(&g->arena, bytes);
    if (!p)
        return -1;
    g->slots[g->n_slots] = (mk_slot){p, bytes, 1};
    return g->n_slots++;
}

void *mk__tmp(mk_nn_graph *g, size_t bytes)
{
    MK_ASSERT(g->n_tmp < MK_TMP_MAX);
    int i = slot_get(g, bytes ? bytes : 1);
    if (i < 0) {
        g->oom = 1;
        return NULL;
    }
    g->tmp[g->n_tmp++] = i;
    return g->slots[i].p;
}

void mk__tmp_release(mk_nn_graph *g)
{
    for (int i = 0; i < g->n_tmp; i++)
        g->slots[g->tmp[i]].busy = 0;
    g->n_tmp = 0;
}

static int graph_push(mk_nn_graph *g, mk_var *v)
{
    if (g->n_nodes == g->cap) {
        int nc = g->cap ? 2 * g->cap : 256;
        mk_var **nn = realloc(g->nodes, (size_t)nc * sizeof *nn);
        if (!nn)
            return -1;
        g->nodes = nn;
        g->cap = nc;
    }
    g->nodes[g->n_nodes++] = v;
    return 0;
}

static int slot_get(mk_nn_graph *g, size_t bytes);

int mk_nn_graph_set_recycle(mk_nn_graph *g, int on)
{
    int old = g->recycle;
    g->recycle = on;
    return old;
}

void mk_nn_release(mk_nn_graph *g, mk_var *v)
{
    if (!v || !v->vslot_)
        return;
    g->slots[v->vslot_ - 1].busy = 0;
    v->vslot_ = 0;
    v->t.data = NULL;
}

void mk_nn_graph_set_cancel(mk_nn_graph *g, volatile int *flag)
{
    g->cancel = flag;
}

int mk_nn_graph_cancelled(const mk_nn_graph *g)
{
    return g->cancelled;
}

/* A cancel request stops the graph as running out of memory does: every later op is a no-op. */
static int cancel_seen(mk_nn_graph *g)
{
    if (g->cancel && *g->cancel) {
        g->cancelled = 1;
        g->oom = 1;
    }
    return g->cancelled;
}

static mk_var *node_alloc(mk_nn_graph *g, mk_op op, int ndim, const int64_t *ne, float *data)
{
    if (cancel_seen(g))
        return NULL;
    mk_var *v = mk_arena_calloc(&g->arena, sizeof *v);
    if (!v) {
        g->oom = 1;
        return NULL;
    }
    mk_tensor_set_shape(&v->t, ndim, ne);
    v->op = op;
    if (mk__prof_on())
        mk__prof_node(mk__op_info(op)->name);
    if (data) {
        v->t.data = data;
    } else if (g->recycle && g->no_grad) {
        int i = slot_get(g, (size_t)mk_tensor_numel(&v->t) * sizeof(float));
        if (i < 0) {
            g->oom = 1;
            return NULL;
        }
        v->t.data = g->slots[i].p;
        v->vslot_ = i + 1;
    } else {
        v->t.data = mk_arena_alloc(&g->arena, (size_t)mk_tensor_numel(&v->t) * sizeof(float));
        if (!v->t.data) {
            g->oom = 1;
            return NULL;
        }
    }
    if (graph_push(g, v) != 0) {
        g->oom = 1;
        return NULL;
    }
    return v;
}

mk_var *mk__node(mk_nn_graph *g, mk_op op, int ndim, const int64_t *ne, int nin, mk_var *const *in)
{
    MK_ASSERT(nin <= MK_VAR_MAX_IN);
    for (int i = 0; i < nin; i++)
        if (!in[i])
            return NULL;
    mk_var *v = node_alloc(g, op, ndim, ne, NULL);
    if (!v)
        return NULL;
    v->nin = nin;
    for (int i = 0; i < nin; i++) {
        v->in[i] = in[i];
        if (in[i]->requires_grad && !g->no_grad)
            v->requires_grad = 1;
        if (in[i]->t.batch_of && ndim >= 2 && ne[0] == in[i]->t.ne[0])
            v->t.batch_of = in[i]->t.batch_of; /* a per-sample result of a batch share */
    }
    return v;
}

float *mk__grad(mk_nn_graph *g, mk_var *v)
{
    if (!v->grad) {
        size_t bytes = (size_t)mk__numel(v) * sizeof(float);
        int i = slot_get(g, bytes);
        if (i < 0) {
            g->oom = 1;
            return NULL;
        }
        v->grad = g->slots[i].p;
        v->slot_ = i + 1;
        memset(v->grad, 0, bytes);
    }
    return v->grad;
}

mk_var *mk__node_alias(mk_nn_graph *g, mk_op op, mk_var *x, float *data)
{
    if (!x)
        return NULL;
    mk_var *v = node_alloc(g, op, x->t.ndim, x->t.ne, data);
    if (!v)
        return NULL;
    v->nin = 1;
    v->in[0] = x;
    v->requires_grad = x->requires_grad && !g->no_grad;
    v->t.batch_of = x->t.batch_of;
    if (data == x->t.data) { /* the alias now owns a recyclable buffer */
        v->vslot_ = x->vslot_;
        x->vslot_ = 0;
    }
    return v;
}

void mk__dims(const mk_var *v, int64_t *n, int64_t *c, int64_t sp[3])
{
    const mk_tensor *t = &v->t;
    MK_ASSERT(t->ndim >= 2);
    *n = t->ne[0];
    *c = t->ne[1];
    sp[0] = sp[1] = sp[2] = 1;
    int ns = t->ndim - 2;
    MK_ASSERT(ns <= 3);
    for (int i = 0; i < ns; i++)
        sp[3 - ns + i] = t->ne[2 + i];
}

int64_t mk__numel(const mk_var *v)
{
    return mk_tensor_numel(&v->t);
}

mk_var *mk_nn_set_name(mk_var *v, const char *name)
{
    if (v)
        v->name = name;
    return v;
}

mk_var *mk_nn_find(mk_nn_graph *g, const char *name)
{
    for (int i = g->n_nodes - 1; i >= 0; i--)
        if (g->nodes[i]->name && strcmp(g->nodes[i]->name, name) == 0)
            return g->nodes[i];
    return NULL;
}

mk_var *mk_nn_input(mk_nn_graph *g, const mk_tensor *t, int requires_grad)
{
    mk_var *v = node_alloc(g, MK_OP_LEAF, t->ndim, t->ne, NULL);
    if (!v)
        return NULL;
    mk_tensor_copy(&v->t, t);
    v->requires_grad = requires_grad && !g->no_grad;
    v->t.batch_of = g->have_share && t->ndim >= 2 ? t->batch_of : 0;
    return v;
}

mk_var *mk_nn_param(mk_nn_graph *g, mk_param *p)
{
    mk_var *v = node_alloc(g, MK_OP_LEAF, p->value.ndim, p->value.ne, p->value.data);
    if (!v)
        return NULL;
    v->param = p;
    if (!g->no_grad && !p->frozen && p->grad) {
        v->requires_grad = 1;
        v->grad = p->grad; /* accumulate straight into the parameter's gradient */
    }
    return v;
}

mk_var *mk_nn_zeros(mk_nn_graph *g, int ndim, const int64_t *ne)
{
    mk_var *v = node_alloc(g, MK_OP_LEAF, ndim, ne, NULL);
    if (v)
        memset(v->t.data, 0, (size_t)mk__numel(v) * sizeof(float));
    return v;
}

mk_var *mk_nn_scalar(mk_nn_graph *g, float val, int requires_grad)
{
    int64_t one = 1;
    mk_var *v = node_alloc(g, MK_OP_LEAF, 1, &one, NULL);
    if (!v)
        return NULL;
    v->t.data[0] = val;
    v->requires_grad = requires_grad && !g->no_grad;
    return v;
}

float mk_nn_value(const mk_var *v)
{
    MK_ASSERT(v && mk__numel(v) >= 1);
    return v->t.data[0];
}

void mk_nn_backward_with(mk_nn_graph *g, mk_var *out, const float *dy)
{
    if (!out || !out->requires_grad)
        return;
    mk_nn_profile_cut();
    float *gr = mk__grad(g, out);
    if (!gr)
        return;
    int64_t n = mk__numel(out);
    for (int64_t i = 0; i < n; i++)
        gr[i] += dy[i];
    int start = -1;
    for (int i = g->n_nodes - 1; i >= 0; i--)
        if (g->nodes[i] == out) {
            start = i;
            break;
        }
    MK_ASSERT(start >= 0);
    for (int i = start; i >= 0 && !g->oom && !cancel_seen(g); i--) {
        mk_var *v = g->nodes[i];
        if (v->op == MK_OP_LEAF || !v->requires_grad || !v->grad)
            continue;
        const struct mk_op_info *info = mk__op_info(v->op);
        MK_ASSERT(info->backward);
        if (mk__prof_on()) {
            double t0 = mk_nn_profile_now();
            info->backward(g, v);
            mk_nn_profile_add(info->name, "backward", mk_nn_profile_now() - t0, 0);
        } else
            info->backward(g, v);
        mk__tmp_release(g);
        if (v->slot_) { /* consumed: hand the gradient buffer back */
            g->slots[v->slot_ - 1].busy = 0;
            v->slot_ = 0;
            v->grad = NULL;
        }
    }
    if (!g->oom && !g->cancelled) {
        double t0 = mk__prof_on() ? mk_nn_profile_now() : 0;
        flush_pending(g); /* the parameters' gradients of the pass, in one collective */
        if (t0 > 0)
            mk_nn_profile_add("gradient folds", "backward", mk_nn_profile_now() - t0, 0);
    }
}

void mk_nn_backward(mk_nn_graph *g, mk_var *loss)
{
    if (!loss)
        return;
    MK_ASSERT(mk__numel(loss) == 1);
    float one = 1.0f;
    mk_nn_backward_with(g, loss, &one);
}
