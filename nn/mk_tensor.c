/* Tensors, arena and PRNG (see mk_tensor.h). */
#include "mk_tensor.h"
#include "core/mk_rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/mk_status.h"

#define MK_ALIGN 64

void mk_tensor_set_shape(mk_tensor *t, int ndim, const int64_t *ne)
{
    MK_ASSERT(ndim >= 0 && ndim <= MK_TENSOR_MAX_DIMS);
    t->ndim = ndim;
    int64_t s = 1;
    for (int i = MK_TENSOR_MAX_DIMS - 1; i >= 0; i--) {
        if (i >= ndim) {
            t->ne[i] = 1;
            t->st[i] = 1;
            continue;
        }
        t->ne[i] = ne[i];
        t->st[i] = s;
        s *= ne[i];
    }
}

int64_t mk_tensor_numel(const mk_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->ne[i];
    return n;
}

int mk_tensor_is_contiguous(const mk_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->ne[i] != 1 && t->st[i] != s)
            return 0;
        s *= t->ne[i];
    }
    return 1;
}

int mk_tensor_same_shape(const mk_tensor *a, const mk_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->ne[i] != b->ne[i])
            return 0;
    return 1;
}

int mk_tensor_new(mk_tensor *t, int ndim, const int64_t *ne)
{
    memset(t, 0, sizeof *t);
    mk_tensor_set_shape(t, ndim, ne);
    size_t bytes = (size_t)mk_tensor_numel(t) * sizeof(float);
    size_t padded = (bytes + MK_ALIGN - 1) / MK_ALIGN * MK_ALIGN;
    if (padded == 0)
        padded = MK_ALIGN;
    t->data = aligned_alloc(MK_ALIGN, padded);
    if (!t->data)
        return -1;
    memset(t->data, 0, padded);
    return 0;
}

void mk_tensor_free(mk_tensor *t)
{
    if (!t)
        return;
    if (!t->view_of)
        free(t->data);
    t->data = NULL;
}

mk_tensor mk_tensor_view(const mk_tensor *src, int dim, int64_t start, int64_t len)
{
    MK_ASSERT(dim >= 0 && dim < src->ndim && start >= 0 && len >= 0 && start + len <= src->ne[dim]);
    mk_tensor v = *src;
    v.ne[dim] = len;
    v.data = src->data + start * src->st[dim];
    v.view_of = src->view_of ? src->view_of : src;
    return v;
}

mk_tensor mk_tensor_reshape(const mk_tensor *src, int ndim, const int64_t *ne)
{
    MK_ASSERT(mk_tensor_is_contiguous(src));
    mk_tensor v;
    memset(&v, 0, sizeof v);
    mk_tensor_set_shape(&v, ndim, ne);
    MK_ASSERT(mk_tensor_numel(&v) == mk_tensor_numel(src));
    v.data = src->data;
    v.view_of = src->view_of ? src->view_of : src;
    v.batch_of = ndim >= 1 && ne[0] == src->ne[0] ? src->batch_of : 0;
    return v;
}

void mk_tensor_copy(mk_tensor *dst, const mk_tensor *src)
{
    MK_ASSERT(mk_tensor_same_shape(dst, src));
    if (mk_tensor_is_contiguous(dst) && mk_tensor_is_contiguous(src)) {
        memcpy(dst->data, src->data, (size_t)mk_tensor_numel(src) * sizeof(float));
        return;
    }
    int64_t n = mk_tensor_numel(src);
    int64_t idx[MK_TENSOR_MAX_DIMS] = {0};
    for (int64_t i = 0; i < n; i++) {
        int64_t os = 0, od = 0;
        for (int d = 0; d < src->ndim; d++) {
            os += idx[d] * src->st[d];
            od += idx[d] * dst->st[d];
        }
        dst->data[od] = src->data[os];
        for (int d = src->ndim - 1; d >= 0; d--) {
            if (++idx[d] < src->ne[d])
                break;
            idx[d] = 0;
        }
    }
}

/* ---------------------------------------------------------------- arena */

void mk_arena_init(mk_arena *a, size_t block_min)
{
    memset(a, 0, sizeof *a);
    a->block_min = block_min < 4096 ? 4096 : block_min;
}

static mk_arena_block *arena_block_new(size_t size)
{
    mk_arena_block *b = malloc(sizeof *b);
    if (!b)
        return NULL;
    size = (size + MK_ALIGN - 1) / MK_ALIGN * MK_ALIGN;
    b->mem = aligned_alloc(MK_ALIGN, size);
    if (!b->mem) {
        free(b);
        return NULL;
    }
    b->size = size;
    b->used = 0;
    b->next = NULL;
    return b;
}

void *mk_arena_alloc(mk_arena *a, size_t bytes)
{
    size_t need = (bytes + MK_ALIGN - 1) / MK_ALIGN * MK_ALIGN;
    if (need == 0)
        need = MK_ALIGN;
    mk_arena_block *b = a->head;
    if (!b || b->size - b->used < need) {
        size_t sz = need > a->block_min ? need : a->block_min;
        /* grow geometrically so a new step size is learnt in few blocks */
        if (a->used_now > sz)
            sz = a->used_now > need ? a->used_now : need;
        mk_arena_block *nb = arena_block_new(sz);
        if (!nb)
            return NULL;
        a->n_mallocs++;
        nb->next = a->head;
        a->head = nb;
        b = nb;
    }
    void *p = b->mem + b->used;
    b->used += need;
    a->used_now += need;
    if (a->used_now > a->used_peak)
        a->used_peak = a->used_now;
    return p;
}

void *mk_arena_calloc(mk_arena *a, size_t bytes)
{
    void *p = mk_arena_alloc(a, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

int mk_arena_tensor(mk_arena *a, mk_tensor *t, int ndim, const int64_t *ne)
{
    memset(t, 0, sizeof *t);
    mk_tensor_set_shape(t, ndim, ne);
    t->data = mk_arena_calloc(a, (size_t)mk_tensor_numel(t) * sizeof(float));
    return t->data ? 0 : -1;
}

static void arena_free_blocks(mk_arena_block *b)
{
    while (b) {
        mk_arena_block *n = b->next;
        free(b->mem);
        free(b);
        b = n;
    }
}

void mk_arena_reset(mk_arena *a)
{
    if (a->head && a->head->next) {
        /* several blocks: replace them by one block of the peak size */
        size_t peak = a->used_peak;
        arena_free_blocks(a->head);
        a->head = arena_block_new(peak);
        if (a->head)
            a->n_mallocs++;
    } else if (a->head) {
        a->head->used = 0;
    }
    a->used_now = 0;
}

void mk_arena_free(mk_arena *a)
{
    if (!a)
        return;
    arena_free_blocks(a->head);
    a->head = NULL;
    a->used_now = 0;
}

/* ---------------------------------------------------------------- PRNG */

void mk_rng_seed(mk_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = mk_splitmix64(&x);
}

uint64_t mk_rng_u64(mk_rng *r)
{
    return mk_xoshiro256ss(r->s);
}

float mk_rng_uniform(mk_rng *r)
{
    return (float)(mk_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

double mk_rng_uniform_d(mk_rng *r)
{
    return mk_u64_to_unit(mk_rng_u64(r));
}

double mk_rng_normal(mk_rng *r)
{
    double u1 = mk_rng_uniform_d(r);
    double u2 = mk_rng_uniform_d(r);
    return mk_box_muller(u1, u2);
}

uint64_t mk_rng_below(mk_rng *r, uint64_t n)
{
    MK_ASSERT(n > 0);
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = mk_rng_u64(r);
    while (x >= lim);
    return x % n;
}

void mk_rng_shuffle(mk_rng *r, int64_t *idx, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)mk_rng_below(r, (uint64_t)i + 1);
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
