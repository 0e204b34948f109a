/* medkd core: status codes and the per-context error buffer.
 *
 * Every library function that can fail returns an mk_status and, on failure, writes a
 * human-readable message into the caller's mk_ctx (never a global, never stderr). Only
 * cli/main.c maps a status to a process exit code (mk_status_exit_code).
 *
 *     mk_ctx ctx;
 *     mk_ctx_init(&ctx);
 *     if (mk_io_nifti_read(&ctx, path, &img) != MK_OK)
 *         fprintf(stderr, "error: %s\n", mk_ctx_errmsg(&ctx));
 */
#ifndef MK_STATUS_H
#define MK_STATUS_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mk_status {
    MK_OK = 0,
    MK_ERR_USAGE,       /* bad command line */
    MK_ERR_CONFIG,      /* config file invalid (syntax, schema, semantic) */
    MK_ERR_IO,          /* open/read/write/rename failed */
    MK_ERR_FORMAT,      /* file content malformed or truncated */
    MK_ERR_UNSUPPORTED, /* well-formed but a feature we do not handle */
    MK_ERR_INVALID,     /* invalid argument or data value */
    MK_ERR_GEOMETRY,    /* grids/affines disagree */
    MK_ERR_NOMEM,       /* allocation failed or size over a limit */
    MK_ERR_NOT_FOUND,   /* a named thing does not exist */
    MK_ERR_ABORTED,     /* interrupted by the user or a callback */
    MK_ERR_INTERNAL,    /* a bug: an invariant did not hold */
    MK_STATUS_COUNT
} mk_status;

/* Short constant name of a status ("ok", "io error", ...). Never NULL. */
const char *mk_status_str(mk_status s);

/* Exit code convention of the `pipeline` binary: 0 ok, 2 usage/config, 1 anything else. */
int mk_status_exit_code(mk_status s);

typedef enum mk_log_level {
    MK_LOG_DEBUG = 0,
    MK_LOG_INFO,
    MK_LOG_WARN,
    MK_LOG_ERROR,
    MK_LOG_QUIET /* threshold only: nothing is printed */
} mk_log_level;

/* Log sink: receives one complete message line without a trailing newline. */
typedef void (*mk_log_fn)(void *user, mk_log_level level, const char *msg);

/* Progress sink: `what` names the work ("train cmedl"), done/total in units of `unit`
 * ("iter", "case"), `detail` an optional short text (losses), may be NULL. */
typedef void (*mk_progress_fn)(void *user, const char *what, long long done, long long total,
                               const char *unit, const char *detail);

#define MK_ERRMSG_MAX 2048

/* The context every fallible call receives. A plain struct so it can live on the stack; it owns
 * nothing and needs no free. Not shared between threads: give each thread its own. */
typedef struct mk_ctx {
    mk_status status;        /* status of the last recorded error */
    char msg[MK_ERRMSG_MAX]; /* message of the last recorded error, "" if none */
    mk_log_fn log;           /* NULL: messages are dropped */
    void *log_user;
    mk_log_level log_level;  /* messages below are dropped before formatting */
    mk_progress_fn progress; /* NULL: progress is dropped */
    void *progress_user;
    volatile int cancel; /* set to non-zero (e.g. from a signal handler) to request abort */
} mk_ctx;

/* Reset to no error, no sinks, level INFO. */
void mk_ctx_init(mk_ctx *ctx);

/* Record an error and return `s` so callers can write `return mk_err(ctx, MK_ERR_IO, ...)`.
 * A NULL ctx is allowed (the message is dropped). */
mk_status mk_err(mk_ctx *ctx, mk_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
mk_status mk_verr(mk_ctx *ctx, mk_status s, const char *fmt, va_list ap);

/* Prepend "prefix: " to the current message (adds context as an error travels up). Returns the
 * recorded status. */
mk_status mk_err_prefix(mk_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clear the recorded error. */
void mk_err_clear(mk_ctx *ctx);

/* The last message ("" if none). Borrowed: valid until the next error on this ctx. */
const char *mk_ctx_errmsg(const mk_ctx *ctx);

/* Logging through the context's sink. */
void mk_log(mk_ctx *ctx, mk_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define MK_LOG_D(ctx, ...) mk_log((ctx), MK_LOG_DEBUG, __VA_ARGS__)
#define MK_LOG_I(ctx, ...) mk_log((ctx), MK_LOG_INFO, __VA_ARGS__)
#define MK_LOG_W(ctx, ...) mk_log((ctx), MK_LOG_WARN, __VA_ARGS__)
#define MK_LOG_E(ctx, ...) mk_log((ctx), MK_LOG_ERROR, __VA_ARGS__)

/* Report progress through the context's sink (no-op without one). */
void mk_progress(mk_ctx *ctx, const char *what, long long done, long long total, const char *unit,
                 const char *detail);

/* Programmer-error assertion: aborts with file:line. Never use for conditions caused by input. */
void mk__assert_fail(const char *expr, const char *file, int line);
#define MK_ASSERT(x) ((x) ? (void)0 : mk__assert_fail(#x, __FILE__, __LINE__))

#ifdef __cplusplus
}
#endif
#endif
