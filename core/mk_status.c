#include "mk_status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const MK_STATUS_NAMES[MK_STATUS_COUNT] = {
    [MK_OK] = "ok",
    [MK_ERR_USAGE] = "usage error",
    [MK_ERR_CONFIG] = "configuration error",
    [MK_ERR_IO] = "i/o error",
    [MK_ERR_FORMAT] = "format error",
    [MK_ERR_UNSUPPORTED] = "unsupported",
    [MK_ERR_INVALID] = "invalid argument",
    [MK_ERR_GEOMETRY] = "geometry mismatch",
    [MK_ERR_NOMEM] = "out of memory",
    [MK_ERR_NOT_FOUND] = "not found",
    [MK_ERR_ABORTED] = "aborted",
    [MK_ERR_INTERNAL] = "internal error",
};
_Static_assert(sizeof MK_STATUS_NAMES / sizeof MK_STATUS_NAMES[0] == MK_STATUS_COUNT,
               "status name table out of date");

const char *mk_status_str(mk_status s)
{
    if ((int)s < 0 || s >= MK_STATUS_COUNT || !MK_STATUS_NAMES[s])
        return "unknown status";
    return MK_STATUS_NAMES[s];
}

int mk_status_exit_code(mk_status s)
{
    switch (s) {
    case MK_OK: return 0;
    case MK_ERR_USAGE:
    case MK_ERR_CONFIG: return 2;
    default: return 1;
    }
}

void mk_ctx_init(mk_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->log_level = MK_LOG_INFO;
}

mk_status mk_verr(mk_ctx *ctx, mk_status s, const char *fmt, va_list ap)
{
    if (!ctx)
        return s;
    ctx->status = s;
    vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
    return s;
}

mk_status mk_err(mk_ctx *ctx, mk_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mk_verr(ctx, s, fmt, ap);
    va_end(ap);
    return s;
}

mk_status mk_err_prefix(mk_ctx *ctx, const char *fmt, ...)
{
    if (!ctx)
        return MK_ERR_INTERNAL;
    char pre[MK_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    char old[MK_ERRMSG_MAX];
    memcpy(old, ctx->msg, sizeof old);
    size_t np = strlen(pre), no = strlen(old), cap = sizeof ctx->msg - 1, k = 0;
    for (size_t i = 0; i < np && k < cap; i++)
        ctx->msg[k++] = pre[i];
    for (size_t i = 0; i < 2 && k < cap; i++)
        ctx->msg[k++] = ": "[i];
    for (size_t i = 0; i < no && k < cap; i++)
        ctx->msg[k++] = old[i];
    ctx->msg[k] = '\0';
    return ctx->status;
}

void mk_err_clear(mk_ctx *ctx)
{
    if (!ctx)
        return;
    ctx->status = MK_OK;
    ctx->msg[0] = '\0';
}

const char *mk_ctx_errmsg(const mk_ctx *ctx)
{
    return ctx ? ctx->msg : "";
}

void mk_log(mk_ctx *ctx, mk_log_level level, const char *fmt, ...)
{
    if (!ctx || !ctx->log || level < ctx->log_level)
        return;
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ctx->log(ctx->log_user, level, buf);
}

void mk_progress(mk_ctx *ctx, const char *what, long long done, long long total, const char *unit,
                 const char *detail)
{
    if (ctx && ctx->progress)
        ctx->progress(ctx->progress_user, what, done, total, unit, detail);
}

void mk__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "medkd: internal assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
