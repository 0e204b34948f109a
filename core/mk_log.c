#include "mk_fs.h"
#include "mk_log.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

double mk_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *level_word(mk_log_level l)
{
    switch (l) {
    case MK_LOG_DEBUG: return "debug";
    case MK_LOG_INFO: return "info";
    case MK_LOG_WARN: return "warning";
    case MK_LOG_ERROR: return "error";
    default: return "";
    }
}

void mk_console_init(mk_console *c, FILE *out, int json)
{
    memset(c, 0, sizeof *c);
    c->out = out ? out : stderr;
    c->json = json;
    c->tty = !json && isatty(fileno(c->out));
    c->plain_interval_s = 5.0;
}

void mk_console_attach(mk_console *c, mk_ctx *ctx)
{
    ctx->log = mk_console_log;
    ctx->log_user = c;
    ctx->progress = mk_console_progress;
    ctx->progress_user = c;
}

static void end_bar(mk_console *c)
{
    if (c->bar_open) {
        fputc('\n', c->out);
        c->bar_open = 0;
    }
}

void mk_console_log(void *user, mk_log_level level, const char *msg)
{
    mk_console *c = user;
    if (c->json) {
        fprintf(c->out, "{\"t\":%.3f,\"level\":\"%s\",\"msg\":", mk_now_s(), level_word(level));
        mk_json_put(c->out, msg);
        fputs("}\n", c->out);
    } else {
        end_bar(c);
        if (level >= MK_LOG_WARN || level == MK_LOG_DEBUG)
            fprintf(c->out, "%s: %s\n", level_word(level), msg);
        else
            fprintf(c->out, "%s\n", msg);
    }
    fflush(c->out);
}

static void fmt_eta(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

void mk_console_progress(void *user, const char *what, long long done, long long total,
                         const char *unit, const char *detail)
{
    mk_console *c = user;
    double now = mk_now_s();
    if (strncmp(c->what, what, sizeof c->what - 1) != 0 || done < c->last_done) {
        end_bar(c);
        snprintf(c->what, sizeof c->what, "%s", what);
        c->t_start = now;
        c->t_last = 0;
    }
    c->last_done = done;
    double el = now - c->t_start;
    double rate = el > 0 ? (double)done / el : 0;
    double eta = (rate > 0 && total > 0) ? (double)(total - done) / rate : -1;
    int finished = total > 0 && done >= total;
    if (!unit)
        unit = "it";
    if (c->json) {
        if (!finished && now - c->t_last < c->plain_interval_s && c->t_last > 0)
            return;
        c->t_last = now;
        fprintf(c->out, "{\"t\":%.3f,\"progress\":", now);
        mk_json_put(c->out, what);
        fprintf(c->out, ",\"done\":%lld,\"total\":%lld,\"unit\":", done, total);
        mk_json_put(c->out, unit);
        fprintf(c->out, ",\"rate\":%.4g,\"eta_s\":%.1f", rate, eta);
        if (detail) {
            fputs(",\"detail\":", c->out);
            mk_json_put(c->out, detail);
        }
        fputs("}\n", c->out);
        fflush(c->out);
        return;
    }
    char eta_s[32];
    fmt_eta(eta_s, sizeof eta_s, eta);
    if (c->tty) {
        if (!finished && now - c->t_last < 0.1)
            return;
        c->t_last = now;
        int width = 24, fill = total > 0 ? (int)((double)width * (double)done / (double)total) : 0;
        if (fill > width)
            fill = width;
        char bar[64];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(c->out, "\r\033[K%s [%s] %lld/%lld %s  %.3g %s/s  ETA %s%s%s", what, bar, done,
                total, unit, rate, unit, eta_s, detail ? "  " : "", detail ? detail : "");
        c->bar_open = 1;
        if (finished)
            end_bar(c);
    } else {
        if (!finished && c->t_last > 0 && now - c->t_last < c->plain_interval_s)
            return;
        c->t_last = now;
        fprintf(c->out, "%s: %lld/%lld %s, %.3g %s/s, ETA %s%s%s\n", what, done, total, unit, rate,
                unit, eta_s, detail ? ", " : "", detail ? detail : "");
    }
    fflush(c->out);
}
