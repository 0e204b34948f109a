#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mk_cli.h"

void mk_args_init(mk_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->argc = argc;
    a->argv = argv;
    a->i = 0; /* argv[0] is the verb name */
}

int mk_args_next(mk_args *a)
{
    a->i++;
    if (a->i >= a->argc)
        return 0;
    a->arg = a->argv[a->i];
    a->inline_value = NULL;
    a->name[0] = '\0';
    if (!a->only_positional && strcmp(a->arg, "--") == 0) {
        a->only_positional = 1;
        return mk_args_next(a);
    }
    if (!a->only_positional && a->arg[0] == '-' && a->arg[1] != '\0') {
        const char *eq = strchr(a->arg, '=');
        size_t n = eq ? (size_t)(eq - a->arg) : strlen(a->arg);
        if (n >= sizeof a->name)
            n = sizeof a->name - 1;
        memcpy(a->name, a->arg, n);
        a->name[n] = '\0';
        if (eq)
            a->inline_value = eq + 1;
    }
    return 1;
}

int mk_args_is(mk_args *a, const char *name)
{
    return a->name[0] && strcmp(a->name, name) == 0;
}

int mk_args_positional(const mk_args *a)
{
    return a->name[0] == '\0';
}

const char *mk_args_value(mk_args *a)
{
    if (a->inline_value)
        return a->inline_value;
    if (a->i + 1 >= a->argc)
        return NULL;
    a->i++;
    return a->argv[a->i];
}

mk_status mk_args_missing(mk_args *a, mk_ctx *ctx)
{
    return mk_err(ctx, MK_ERR_USAGE, "%s: option %s needs a value", a->argv[0], a->name);
}

mk_status mk_args_unknown(mk_args *a, mk_ctx *ctx)
{
    if (mk_args_positional(a))
        return mk_err(ctx, MK_ERR_USAGE, "%s: unexpected argument '%s' (see 'pipeline help %s')",
                      a->argv[0], a->arg, a->argv[0]);
    return mk_err(ctx, MK_ERR_USAGE, "%s: unknown option '%s' (see 'pipeline help %s')", a->argv[0],
                  a->name, a->argv[0]);
}

mk_status mk_args_int(mk_ctx *ctx, const char *opt, const char *s, long long lo, long long hi,
                      long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return mk_err(ctx, MK_ERR_USAGE, "%s: expected an integer, got '%s'", opt, s);
    if (v < lo || v > hi)
        return mk_err(ctx, MK_ERR_USAGE, "%s: %lld is out of range [%lld, %lld]", opt, v, lo, hi);
    *out = v;
    return MK_OK;
}

mk_status mk_args_double(mk_ctx *ctx, const char *opt, const char *s, double lo, double hi,
                         double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return mk_err(ctx, MK_ERR_USAGE, "%s: expected a number, got '%s'", opt, s);
    if (v < lo || v > hi)
        return mk_err(ctx, MK_ERR_USAGE, "%s: %g is out of range [%g, %g]", opt, v, lo, hi);
    *out = v;
    return MK_OK;
}
