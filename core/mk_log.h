/* medkd console sinks for logging and progress.
 *
 * Library code never prints: it calls mk_log / mk_progress on its mk_ctx. Programs install these
 * sinks to show messages on stderr:
 *   - text mode: "[medkd] warn: message" lines (debug/info without the level word);
 *   - JSON mode (--log-json): one object per line {"t":..., "level":..., "msg":...} and progress as
 *     {"t":..., "progress":what, "done":n, "total":n, "unit":..., "rate":..., "eta_s":...};
 *   - progress: a redrawn bar with rate and ETA when stderr is a terminal, otherwise a plain line
 * at most every `plain_interval_s` seconds (and always at the end).
 */
#ifndef MK_LOG_H
#define MK_LOG_H

#include <stdio.h>

#include "mk_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mk_console {
    FILE *out; /* stderr by default */
    int json;  /* 1: JSON lines */
    int tty;   /* 1: redraw progress bars in place */
    double plain_interval_s;
    /* progress state (one bar at a time) */
    char what[128];
    double t_start, t_last;
    long long last_done;
    int bar_open;
} mk_console;

/* Set up a console on `out` (tty detected with isatty). */
void mk_console_init(mk_console *c, FILE *out, int json);
/* Install the console as ctx's log and progress sinks. The console must outlive the ctx use. */
void mk_console_attach(mk_console *c, mk_ctx *ctx);
/* Sinks, usable directly as mk_log_fn / mk_progress_fn with user = mk_console*. */
void mk_console_log(void *user, mk_log_level level, const char *msg);
void mk_console_progress(void *user, const char *what, long long done, long long total,
                         const char *unit, const char *detail);
/* Monotonic seconds. */
double mk_now_s(void);

#ifdef __cplusplus
}
#endif
#endif
