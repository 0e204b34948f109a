/* The per-op profile (mk_nn.h): rows of (op, phase) with calls, wall seconds and FLOPs. */
#include <string.h>
#include <time.h>

#include "mk_nn_impl.h"

#define PROF_MAX 96

static struct {
    int on, n;
    mk_nn_prof_row rows[PROF_MAX];
    const char *fwd_op; /* the forward op running since fwd_t0, or NULL */
    double fwd_t0;
} P;

double mk_nn_profile_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void mk_nn_profile_enable(int on)
{
    memset(&P, 0, sizeof P);
    P.on = on;
}

int mk__prof_on(void)
{
    return P.on;
}

static mk_nn_prof_row *row(const char *op, const char *phase)
{
    for (int i = 0; i < P.n; i++)
        if (!strcmp(P.rows[i].op, op) && !strcmp(P.rows[i].phase, phase))
            return &P.rows[i];
    if (P.n == PROF_MAX)
        return NULL;
    mk_nn_prof_row *r = &P.rows[P.n++];
    r->op = op;
    r->phase = phase;
    return r;
}

void mk_nn_profile_add(const char *op, const char *phase, double seconds, double flops)
{
    if (!P.on)
        return;
    mk_nn_prof_row *r = row(op, phase);
    if (!r)
        return;
    r->calls++;
    r->seconds += seconds;
    r->flops += flops;
}

void mk__prof_flops(const char *op, const char *phase, double flops)
{
    if (!P.on)
        return;
    mk_nn_prof_row *r = row(op, phase);
    if (r)
        r->flops += flops;
}

void mk_nn_profile_cut(void)
{
    if (P.on && P.fwd_op)
        mk_nn_profile_add(P.fwd_op, "forward", mk_nn_profile_now() - P.fwd_t0, 0);
    P.fwd_op = NULL;
}

void mk__prof_node(const char *op)
{
    if (!P.on)
        return;
    double t = mk_nn_profile_now();
    if (P.fwd_op)
        mk_nn_profile_add(P.fwd_op, "forward", t - P.fwd_t0, 0);
    P.fwd_op = op;
    P.fwd_t0 = t;
}

void mk__prof_drop(void)
{
    P.fwd_op = NULL;
}

int mk_nn_profile_rows(mk_nn_prof_row *out, int max)
{
    for (int i = 0; i < P.n && i < max; i++)
        out[i] = P.rows[i];
    return P.n;
}
