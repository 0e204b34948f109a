/* toml-bench: generates a ~2 MB TOML config in memory and reports the median parse time and
 * throughput. Three shapes: a realistic mix (many [tables], [[arrays of tables]], strings, arrays,
 * inline tables, dates, comments), one flat table with many keys (hash index), and one long array.
 * Prints wall time and process CPU time: on a shared machine the CPU time is the steadier figure.
 *
 *     build/toml-bench [RUNS [SHAPE]]      (default 15 runs; SHAPE mixed|flat|array, default all)
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/mk_toml.h"

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (w >= 0 && (size_t)w < b->cap - b->n) {
            b->n += (size_t)w;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 1 << 20;
        char *np = realloc(b->p, cap);
        if (!np) {
            fprintf(stderr, "toml-bench: out of memory\n");
            exit(1);
        }
        b->p = np;
        b->cap = cap;
    }
}

static void gen_mixed(sbuf *b, size_t target)
{
    put(b, "# generated benchmark config\ntitle = \"medkd benchmark\"\nseed = 42\n\n");
    for (int i = 0; b->n < target; i++) {
        put(b, "[stage.s%05d]\n", i);
        put(b, "name = \"stage number %d with a \\\"quoted\\\" word and \\u00e9\"\n", i);
        put(b, "kind = 'literal-%d'  # trailing comment\n", i % 7);
        put(b, "enabled = %s\nlr = %.6e\nepochs = %d\nmask = 0x%04X\n", i % 2 ? "true" : "false",
            1e-3 / (i + 1), i * 3, i & 0xFFFF);
        put(b, "sizes = [%d, %d, %d, 1_000_000]\n", i, i + 1, i + 2);
        put(b, "weights = [0.25, 0.5, %.3f, -1.5e-3, inf]\n", i / 100.0);
        put(b, "paths = ['data/real/case_%04d.nii.gz', \"out/%d/pred.nii.gz\"]\n", i, i);
        put(b, "aug = { flip = true, rot = %d, scale = [0.9, 1.1], name.first = \"x\" }\n",
            i % 360);
        put(b, "created = 2024-%02d-%02dT10:%02d:00.%03dZ\nday = 2024-01-%02d\nat = 07:%02d:30\n",
            i % 12 + 1, i % 28 + 1, i % 60, i % 1000, i % 28 + 1, i % 60);
        put(b, "notes = \"\"\"\nline one of stage %d\n  line two \\\n  continued\"\"\"\n", i);
        put(b, "opts.loss.dice = %d\nopts.loss.ce = %d\n", i % 3, i % 5);
        put(b, "[[stage.s%05d.cases]]\nid = %d\nlabel = \"c%d\"\n", i, 2 * i, 2 * i);
        put(b, "[[stage.s%05d.cases]]\nid = %d\nlabel = \"c%d\"\n\n", i, 2 * i + 1, 2 * i + 1);
    }
}

static void gen_flat(sbuf *b, size_t target)
{
    for (int i = 0; b->n < target; i++)
        put(b, "key_%07d = \"value %d\"\n", i, i);
}

static void gen_array(sbuf *b, size_t target)
{
    put(b, "values = [\n");
    for (int i = 0; b->n < target; i++)
        put(b, "  %d, %.17g, \"s%d\",\n", i, i * 0.1, i);
    put(b, "]\n");
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bench(const char *what, const sbuf *b, int runs)
{
    double *t = malloc(2 * (size_t)runs * sizeof *t), *cpu = t + runs;
    if (!t)
        return 1;
    for (int r = 0; r < runs; r++) {
        mk_ctx ctx;
        mk_ctx_init(&ctx);
        mk_toml_doc *doc = NULL;
        double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), t0 = clock_s(CLOCK_MONOTONIC);
        mk_status st = mk_toml_parse(&ctx, what, b->p, b->n, &doc);
        double t1 = clock_s(CLOCK_MONOTONIC), c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        if (st != MK_OK) {
            fprintf(stderr, "toml-bench: %s\n", mk_ctx_errmsg(&ctx));
            free(t);
            return 1;
        }
        mk_toml_free(doc);
        t[r] = t1 - t0;
        cpu[r] = c1 - c0;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    qsort(cpu, (size_t)runs, sizeof *cpu, cmp_double);
    double med = t[runs / 2];
    printf("%-6s %5.2f MB  wall: median %6.2f ms, min %6.2f ms, %6.1f MB/s   cpu: median %6.2f "
           "ms  (%d runs)\n",
           what, (double)b->n / 1e6, med * 1e3, t[0] * 1e3, (double)b->n / 1e6 / med,
           cpu[runs / 2] * 1e3, runs);
    free(t);
    return 0;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 15;
    if (runs < 1 || runs > 10000) {
        fprintf(stderr,
                "usage: toml-bench [RUNS [mixed|flat|array]]  (RUNS 1..10000, default 15)\n");
        return 2;
    }
    const size_t target = 2u << 20; /* 2 MiB */
    sbuf mixed = {0}, flat = {0}, arr = {0};
    gen_mixed(&mixed, target);
    gen_flat(&flat, target);
    gen_array(&arr, target);
    const char *only = argc > 2 ? argv[2] : NULL;
    int rc = 0;
    if (!only || strcmp(only, "mixed") == 0)
        rc |= bench("mixed", &mixed, runs);
    if (!only || strcmp(only, "flat") == 0)
        rc |= bench("flat", &flat, runs);
    if (!only || strcmp(only, "array") == 0)
        rc |= bench("array", &arr, runs);
    free(mixed.p);
    free(flat.p);
    free(arr.p);
    return rc;
}
