/* infer-bench: `pipeline infer` on a 512 x 512 x S CT (issue 17, item 6), as the library call
 * sequence of the verb: read (mk_io_read_image), mk_infer_model_load, mk_infer_volume, write
 * (mk_io_write_image), each timed; the share of the wall time spent outside the network's forward
 * passes; peak RSS against the budget "3 x the input volume as float32 + the model file".
 *
 *   build-x/infer-bench [--threads N] [--slices S] [--json] [--dir DIR] [--keep]
 *                       [--largest-component] [--no-breakdown] [--compare] [--peer FILE]
 *
 * Set-up (not timed): a synthetic CT, int16 HU, 512 x 512 x S (default 200), spacing 0.8 x 0.8 x
 * 1.5 mm, identity LPS direction: an elliptic body of soft tissue (~40 HU) with a bone ring
 * (~700 HU) in air (-1000), Gaussian noise from core/mk_rng.h (xoshiro256**, seeded per slice);
 * written as DIR/ct.nii.gz (DIR: a new temporary folder under $TMPDIR or /tmp, removed at the end
 * unless --keep). The model: the reference 2D U-Net of ../shared/peers/torch_unet.py
 * (mk_unet_defaults(2): widths 16/32/64/128, no-bias convs + BatchNorm + ReLU, 4 classes; random
 * weights) saved as DIR/model.h5 with its description (mk_model_info_json + mk_model_save_info):
 * CT window [-200, 300], slice axis axial, orientation RAS (the training default: the LPS input is
 * reoriented, exactly), no resampling, patch 512 x 512 (one window per slice, as the peer's
 * volume2d), Gaussian blending, step 0.5, no TTA, largest-component post-processing only with
 * --largest-component.
 *
 * Peak RSS is the process's ru_maxrss (getrusage) after the set-up's high-water mark is reset
 * (/proc/self/clear_refs, "5"; when that is refused the set-up's peak is printed beside it).
 *
 * --breakdown (default; --no-breakdown skips it): after the timed run, the pieces of the
 * preprocess / network / postprocess phases are timed on their own with the public data
 * functions: reorientation (mk_data_prepare), normalisation to float (mk_data_normalise), cutting
 * the windows (mk_data_cut), restoring the mask (mk_data_restore), post-processing; what remains
 * of network - forward is blending, argmax and clearing the slice buffers.
 *
 * --compare runs, in the same run and after it, the reference U-Net slice-wise on S slices of
 * 512 x 512 (unet-bench --mode volume2d from this program's folder) and the PyTorch peer
 * (/usr/bin/python3 FILE --mode volume2d, FILE default MK_SHARED_DIR/peers/torch_unet.py),
 * both with --threads N --slices S --json, and prints their s/volume and the ratio. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/mk_log.h"
#include "core/mk_rng.h"
#include "io/mk_image.h"
#include "models/mk_unet.h"
#include "stages/mk_infer.h"
#include "stages/mk_stages.h"

#ifndef MK_TORCH_PEER
#define MK_TORCH_PEER "../shared/peers/torch_unet.py"
#endif

typedef struct opts {
    int threads, slices, json, keep, largest, breakdown, compare;
    const char *dir, *peer;
} opts;

static double peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* Reset the kernel's RSS high-water mark (what ru_maxrss reads) to the current RSS. */
static int reset_peak_rss(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0)
        return 0;
    int ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok;
}

static long long fsize(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int die(mk_ctx *ctx, const char *what)
{
    fprintf(stderr, "infer-bench: %s: %s\n", what, mk_ctx_errmsg(ctx));
    return 1;
}

/* ---------------------------------------------------------------- set-up */

/* The synthetic CT: body ellipse (semi-axes 215 x 165 voxels, a little smaller towards the ends
 * of the volume) of soft tissue 40 HU (noise sd 20), a bone ring between 0.86 and 0.94 of the
 * body radius at 700 HU (sd 60), air -1000 (sd 10). */
static mk_status make_ct(mk_ctx *ctx, int nz, mk_image **out)
{
    int64_t dim[3] = {512, 512, nz};
    mk_status st = mk_image_new(ctx, MK_DT_INT16, 3, dim, out);
    if (st != MK_OK)
        return st;
    mk_image *img = *out;
    img->geom.spacing[0] = img->geom.spacing[1] = 0.8;
    img->geom.spacing[2] = 1.5;
    img->geom.origin[0] = -204.4; /* LPS: identity direction, the volume centred in x and y */
    img->geom.origin[1] = -204.4;
    img->geom.origin[2] = -0.75 * (nz - 1);
    int16_t *v = img->data;
    for (int64_t k = 0; k < nz; k++) {
        uint64_t seed = 0x6d656b64ull + (uint64_t)k, s[4];
        for (int q = 0; q < 4; q++)
            s[q] = mk_splitmix64(&seed);
        double zc = nz > 1 ? (2.0 * k - (nz - 1)) / (nz - 1) : 0.0; /* -1..1 */
        double scale = 1.0 - 0.12 * zc * zc;
        double ax = 215.0 * scale, by = 165.0 * scale;
        for (int64_t j = 0; j < 512; j++)
            for (int64_t i = 0; i < 512; i++) {
                double x = (i - 255.5) / ax, y = (j - 255.5) / by, r = sqrt(x * x + y * y);
                double u1 = mk_u64_to_unit(mk_xoshiro256ss(s));
                double u2 = mk_u64_to_unit(mk_xoshiro256ss(s));
                double n = mk_box_muller(u1, u2), hu;
                if (r >= 1.0)
                    hu = -1000.0 + 10.0 * n;
                else if (r > 0.86 && r < 0.94)
                    hu = 700.0 + 60.0 * n;
                else
                    hu = 40.0 + 20.0 * n;
                hu = hu < -1024 ? -1024 : hu > 3071 ? 3071 : hu;
                v[i + 512 * (j + 512 * k)] = (int16_t)lrint(hu);
            }
    }
    return MK_OK;
}

/* The data parameters of the model's description (see the header comment). */
static void model_params(mk_data_params *p)
{
    mk_data_defaults(p);
    p->manifest = NULL;
    p->classes = 4;
    p->nlabels = 3;
    const char *names[3] = {"soft_tissue", "bone", "other"};
    for (int j = 0; j < 3; j++) {
        p->label_values[j] = j + 1;
        snprintf(p->label_names[j], sizeof p->label_names[j], "%s", names[j]);
    }
    p->ct_window[0] = -200;
    p->ct_window[1] = 300;
    p->slice_axis = 3; /* axial */
    p->orientation = "RAS";
    p->spacing[0] = p->spacing[1] = p->spacing[2] = 0; /* no resampling */
    p->patch[0] = p->patch[1] = 512;
    p->window_step = 0.5;
    p->blend_uniform = 0;
}

static mk_status make_model(mk_ctx *ctx, const char *path, int largest)
{
    mk_unet_cfg cfg = mk_unet_defaults(2); /* the peer's reference 2D U-Net, as unet-bench */
    mk_unet *net = NULL;
    mk_status st = mk_unet_new(ctx, &cfg, 1, &net);
    if (st != MK_OK)
        return st;
    mk_data_params p;
    model_params(&p);
    mk_model_info info = {"supervised", "student", "CT", "infer-bench", "", largest};
    char *text = mk_model_info_json(&cfg, &p, &info);
    if (!text)
        st = mk_err(ctx, MK_ERR_NOMEM, "model description: out of memory");
    else
        st = mk_model_save_info(ctx, path, mk_unet_params(net), NULL, MK_INFER_ATTR, text);
    free(text);
    mk_unet_free(net);
    return st;
}

/* ---------------------------------------------------------------- breakdown */

typedef struct breakdown {
    double prepare, normalise, cut, restore, postprocess;
    double fwd_mib[2], arena_mib[2]; /* one window's forward: RSS added, arena peak (recycle 0/1) */
} breakdown;

/* VmRSS or VmHWM of /proc/self/status in MiB (-1 when unreadable). */
static double status_mib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':')
            v = strtod(line + n + 1, NULL) / 1024.0;
    if (f)
        fclose(f);
    return v;
}

/* The memory one forward pass of one window (as mk_infer_volume runs it: a new no-grad graph,
 * the network, softmax) adds to the process: the rise of the RSS high-water mark, and the graph
 * arena's peak; recycle 1 with the engine's recycle mode (mk_nn_graph_set_recycle). */
static mk_status forward_memory(mk_ctx *ctx, const mk_infer_model *m, int threads, int recycle,
                                double *rss_mib, double *arena_mib)
{
    *rss_mib = *arena_mib = -1;
    const mk_data_params *p = &m->data;
    mk_tensor x = {0};
    int64_t ne[4] = {1, 1, p->patch[1], p->patch[0]};
    if (mk_tensor_new(&x, 4, ne) != 0)
        return mk_err(ctx, MK_ERR_NOMEM, "breakdown: out of memory");
    for (int64_t q = 0; q < mk_tensor_numel(&x); q++)
        x.data[q] = (float)((q * 7919) % 2001) / 1000.0f - 1.0f;
    int reset = reset_peak_rss();
    double before = status_mib("VmRSS");
    mk_nn_graph *g = mk_nn_graph_new(threads, 0);
    mk_status st = g ? MK_OK : mk_err(ctx, MK_ERR_NOMEM, "breakdown: out of memory");
    if (st == MK_OK) {
        mk_nn_graph_begin(g, 0);
        mk_nn_graph_set_no_grad(g, 1);
        mk_nn_graph_set_recycle(g, recycle);
        mk_var *pr = mk_nn_softmax(g, mk_unet_forward(m->net, g, mk_nn_input(g, &x, 0)));
        if (!pr || mk_nn_graph_oom(g))
            st = mk_err(ctx, MK_ERR_NOMEM, "breakdown: out of memory in the forward pass");
        if (reset)
            *rss_mib = status_mib("VmHWM") - before;
        *arena_mib = (double)mk_nn_graph_arena(g)->used_peak / 1048576.0;
    }
    mk_nn_graph_free(g);
    mk_tensor_free(&x);
    return st;
}

static mk_status run_breakdown(mk_ctx *ctx, const mk_infer_model *m, const mk_image *img,
                               const mk_image *mask, int largest, int threads, breakdown *b)
{
    memset(b, 0, sizeof *b);
    mk_status fst = MK_OK;
    for (int r = 0; r < 2 && fst == MK_OK; r++)
        fst = forward_memory(ctx, m, threads, r, &b->fwd_mib[r], &b->arena_mib[r]);
    if (fst != MK_OK)
        return fst;
    mk_data_params p = m->data;
    mk_image *work = NULL, *wmask = NULL, *back = NULL;
    float *vol = NULL, *win = NULL;
    double t0 = mk_now_s();
    mk_status st = mk_data_prepare(ctx, &p, img, 0, &work);
    b->prepare = mk_now_s() - t0;
    int64_t nv = mk_image_nvox(img);
    if (st == MK_OK && (!(vol = malloc((size_t)nv * sizeof *vol)) ||
                        !(win = malloc((size_t)p.patch[0] * (size_t)p.patch[1] * sizeof *win))))
        st = mk_err(ctx, MK_ERR_NOMEM, "breakdown: out of memory");
    if (st == MK_OK) {
        t0 = mk_now_s();
        st = mk_data_normalise(ctx, &p, work, m->is_ct, vol);
        b->normalise = mk_now_s() - t0;
    }
    if (st == MK_OK) {
        /* the windows as mk_infer_volume cuts them: one per slice here (patch = slice), placed
         * centred when the slice is smaller, padded with -1 (the CT window's floor) */
        int axis = mk_data_axis(&p), u = axis == 0 ? 1 : 0, v = axis == 2 ? 1 : 2;
        int64_t du = work->dim[u], dv = work->dim[v];
        int64_t u0 = du <= p.patch[0] ? (du - p.patch[0]) / 2 : 0;
        int64_t v0 = dv <= p.patch[1] ? (dv - p.patch[1]) / 2 : 0;
        t0 = mk_now_s();
        for (int64_t s = 0; s < work->dim[axis]; s++)
            mk_data_cut(vol, work->dim, axis, s, u0, v0, p.patch[0], p.patch[1], -1.0f, win);
        b->cut = mk_now_s() - t0;
    }
    free(vol);
    free(win);
    /* the mask on the working grid, then back onto the input's */
    if (st == MK_OK)
        st = mk_data_prepare(ctx, &p, mask, 1, &wmask);
    if (st == MK_OK) {
        t0 = mk_now_s();
        st = mk_data_restore(ctx, &p, wmask, img, &back);
        b->restore = mk_now_s() - t0;
    }
    if (st == MK_OK && largest) {
        int values[MK_MAX_CLASSES];
        for (int c = 1; c < p.classes; c++)
            values[c - 1] = mk_data_value_of_class(&p, c);
        t0 = mk_now_s();
        st = mk_stage_keep_largest_components(ctx, back, values, p.classes - 1, NULL);
        b->postprocess = mk_now_s() - t0;
    }
    mk_image_free(work);
    mk_image_free(wmask);
    mk_image_free(back);
    return st;
}

/* ---------------------------------------------------------------- peers */

typedef struct peer {
    int ok;
    double value, peak_rss_mb, gflops;
    char engine[64];
} peer;

static double json_num(const char *line, const char *key, int *found)
{
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *at = strstr(line, pat);
    if (!at) {
        *found = 0;
        return 0;
    }
    return strtod(at + strlen(pat), NULL);
}

/* Run cmd, keep the last line of its stdout that looks like a JSON object. */
static void run_peer(const char *cmd, peer *r)
{
    memset(r, 0, sizeof *r);
    fflush(stdout);
    FILE *f = popen(cmd, "r");
    if (!f)
        return;
    char line[16384], last[16384] = "";
    while (fgets(line, sizeof line, f))
        if (line[0] == '{')
            snprintf(last, sizeof last, "%s", line);
    int rc = pclose(f);
    int found = 1;
    r->value = json_num(last, "value", &found);
    r->peak_rss_mb = json_num(last, "peak_rss_mb", &found);
    r->gflops = json_num(last, "achieved_gflops", &found);
    const char *tv = strstr(last, "\"torch\": \"");
    if (tv)
        snprintf(r->engine, sizeof r->engine, "torch %.*s", (int)strcspn(tv + 10, "\""), tv + 10);
    else
        snprintf(r->engine, sizeof r->engine, "medkd-nn");
    r->ok = rc == 0 && found && r->value > 0;
}

/* ---------------------------------------------------------------- main */

static int usage(void)
{
    fprintf(stderr, "usage: infer-bench [--threads N] [--slices S] [--json] [--dir DIR] [--keep]\n"
                    "                   [--largest-component] [--no-breakdown] [--compare] "
                    "[--peer FILE]\n");
    return 2;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json"))
            o->json = 1;
        else if (!strcmp(a, "--keep"))
            o->keep = 1;
        else if (!strcmp(a, "--largest-component"))
            o->largest = 1;
        else if (!strcmp(a, "--no-breakdown"))
            o->breakdown = 0;
        else if (!strcmp(a, "--compare"))
            o->compare = 1;
        else if (!strcmp(a, "--threads") && v && parse_int(v, 1, 256, &o->threads) == 0)
            i++;
        else if (!strcmp(a, "--slices") && v && parse_int(v, 1, 4096, &o->slices) == 0)
            i++;
        else if (!strcmp(a, "--dir") && v)
            o->dir = argv[++i];
        else if (!strcmp(a, "--peer") && v)
            o->peer = argv[++i];
        else {
            fprintf(stderr, "infer-bench: bad option %s%s%s\n", a, v ? " " : "", v ? v : "");
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts o = {2, 200, 0, 0, 0, 1, 0, NULL, MK_TORCH_PEER};
    if (parse_args(argc, argv, &o) != 0)
        return usage();
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    char dir[4096], in[4200], model[4200], out[4200];
    int made_dir = 0;
    if (o.dir) {
        snprintf(dir, sizeof dir, "%s", o.dir);
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "infer-bench: %s: %s\n", dir, strerror(errno));
            return 1;
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/infer-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            fprintf(stderr, "infer-bench: %s: %s\n", dir, strerror(errno));
            return 1;
        }
        made_dir = 1;
    }
    snprintf(in, sizeof in, "%s/ct.nii.gz", dir);
    snprintf(model, sizeof model, "%s/model.h5", dir);
    snprintf(out, sizeof out, "%s/ct_mask.nii.gz", dir);

    /* set-up, not timed */
    double ts = mk_now_s();
    mk_image *ct = NULL;
    if (make_ct(&ctx, o.slices, &ct) != MK_OK || mk_io_write_image(&ctx, in, ct) != MK_OK)
        return die(&ctx, "set-up (CT volume)");
    mk_image_free(ct);
    if (make_model(&ctx, model, o.largest) != MK_OK)
        return die(&ctx, "set-up (model)");
    double setup_s = mk_now_s() - ts, setup_peak = peak_rss_mib();
    int reset = reset_peak_rss();
    double base_rss = peak_rss_mib(); /* after the reset: the current RSS */

    /* the timed pipeline */
    mk_infer_times t;
    memset(&t, 0, sizeof t);
    mk_image *img = NULL, *mask = NULL;
    mk_infer_model *m = NULL;
    double t0 = mk_now_s();
    if (mk_io_read_image(&ctx, in, &img) != MK_OK)
        return die(&ctx, "read");
    double t1 = mk_now_s();
    if (mk_infer_model_load(&ctx, model, &m) != MK_OK)
        return die(&ctx, "model load");
    double t2 = mk_now_s();
    mk_infer_opts io;
    mk_infer_opts_default(&io);
    io.threads = o.threads;
    if (mk_infer_volume(&ctx, m, &io, img, &mask, &t) != MK_OK)
        return die(&ctx, "infer");
    double t3 = mk_now_s();
    if (mk_io_write_image(&ctx, out, mask) != MK_OK)
        return die(&ctx, "write");
    double t4 = mk_now_s();
    double peak = peak_rss_mib();
    t.read = t1 - t0;
    t.write = t4 - t3;
    double load = t2 - t1, infer = t3 - t2, wall = t4 - t0;
    double io_s = t.read + t.write;
    double outside = (wall - t.forward) / wall;
    double outside_core = (wall - io_s - t.forward) / (wall - io_s);
    int64_t nv = mk_image_nvox(img);
    long long model_bytes = fsize(model);
    double budget = (3.0 * (double)nv * 4.0 + (double)model_bytes) / 1048576.0;
    int rss_ok = peak <= budget, share_ok = outside <= 0.25;
    long long counts[4] = {0, 0, 0, 0};
    for (int64_t q = 0; q < mk_image_nvox(mask); q++) {
        unsigned v = ((const uint8_t *)mask->data)[q];
        counts[v < 4 ? v : 0]++;
    }

    breakdown b;
    memset(&b, 0, sizeof b);
    if (o.breakdown && run_breakdown(&ctx, m, img, mask, o.largest, o.threads, &b) != MK_OK)
        return die(&ctx, "breakdown");
    double blend = t.network - t.forward - b.normalise - b.cut;
    /* what is alive during the network phase of mk_infer_volume (stages/infer.c, predict.c): the
     * input, its prepared (reoriented) copy, the working mask, one slice of class sums and
     * weights, the window, and one forward pass in recycle mode (windows are normalised as they
     * are cut: no float copy of the volume) */
    double mib = 1.0 / 1048576.0, sl = 512.0 * 512.0;
    double led_in = (double)nv * (double)mk_dtype_size(img->dtype) * mib;
    double led_work = led_in, led_mask = (double)nv * mib;
    double led_slice = ((m->cfg.classes + 1) * sl * 4 + sl * 4) * mib;
    double led_sum =
        base_rss + led_in + led_work + led_mask + led_slice + (b.fwd_mib[1] > 0 ? b.fwd_mib[1] : 0);

    /* the peers, each in its own process */
    peer ours = {0}, torch = {0};
    if (o.compare) {
        char exe[4096], cmd[8800];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        snprintf(cmd, sizeof cmd, "'%s/unet-bench' --mode volume2d --threads %d --slices %d --json",
                 exe, o.threads, o.slices);
        run_peer(cmd, &ours);
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 '%s' --mode volume2d --threads %d --slices %d --json", o.peer,
                 o.threads, o.slices);
        run_peer(cmd, &torch);
    }

    if (o.json) {
        printf("{\"bench\": \"infer\", \"volume\": [512, 512, %d], \"threads\": %d, "
               "\"largest_component\": %s, \"wall_s\": %.4f, \"read_s\": %.4f, \"load_s\": %.4f, "
               "\"infer_s\": %.4f, \"preprocess_s\": %.4f, \"network_s\": %.4f, "
               "\"forward_s\": %.4f, \"postprocess_s\": %.4f, \"write_s\": %.4f, "
               "\"outside_forward\": %.4f, \"outside_forward_excl_io\": %.4f, "
               "\"share_ok\": %s, \"peak_rss_mb\": %.1f, \"base_rss_mb\": %.1f, "
               "\"setup_peak_rss_mb\": %.1f, \"peak_reset\": %s, \"budget_mb\": %.1f, "
               "\"model_bytes\": %lld, \"rss_ok\": %s, \"mask_counts\": [%lld, %lld, %lld, %lld]",
               o.slices, o.threads, o.largest ? "true" : "false", wall, t.read, load, infer,
               t.preprocess, t.network, t.forward, t.postprocess, t.write, outside, outside_core,
               share_ok ? "true" : "false", peak, base_rss, setup_peak, reset ? "true" : "false",
               budget, model_bytes, rss_ok ? "true" : "false", counts[0], counts[1], counts[2],
               counts[3]);
        if (o.breakdown)
            printf(
                ", \"breakdown\": {\"reorient_s\": %.4f, \"normalise_s\": %.4f, \"cut_s\": %.4f, "
                "\"blend_argmax_s\": %.4f, \"restore_s\": %.4f, \"largest_component_s\": %.4f}",
                b.prepare, b.normalise, b.cut, blend, b.restore, b.postprocess);
        if (o.breakdown)
            printf(", \"memory_mb\": {\"base\": %.1f, \"input\": %.1f, \"prepared_copy\": %.1f, "
                   "\"working_mask\": %.1f, \"slice_buffers\": %.1f, "
                   "\"forward\": %.1f, \"forward_recycle\": %.1f, \"arena_peak\": %.1f, "
                   "\"arena_peak_recycle\": %.1f, \"sum\": %.1f}",
                   base_rss, led_in, led_work, led_mask, led_slice, b.fwd_mib[0], b.fwd_mib[1],
                   b.arena_mib[0], b.arena_mib[1], led_sum);
        if (o.compare) {
            printf(", \"unet_volume2d\": {\"ok\": %s, \"s_per_volume\": %.4f, \"peak_rss_mb\": "
                   "%.1f}, \"torch_volume2d\": {\"ok\": %s, \"s_per_volume\": %.4f, "
                   "\"peak_rss_mb\": %.1f}",
                   ours.ok ? "true" : "false", ours.value, ours.peak_rss_mb,
                   torch.ok ? "true" : "false", torch.value, torch.peak_rss_mb);
            if (ours.ok && torch.ok)
                printf(", \"torch_over_unet\": %.4f, \"torch_over_pipeline\": %.4f",
                       torch.value / ours.value, torch.value / (wall * 200.0 / o.slices));
        }
        printf(", \"setup_s\": %.2f}\n", setup_s);
    } else {
        printf("infer-bench: 512 x 512 x %d int16 CT (%.1f MB .nii.gz), reference 2D U-Net "
               "(%lld B model), patch 512 x 512, %d threads%s\n",
               o.slices, (double)fsize(in) / 1e6, model_bytes, o.threads,
               o.largest ? ", largest component" : "");
        printf("  read %.3f s  load %.3f s  infer %.3f s (preprocess %.3f, network %.3f of which "
               "forward %.3f, postprocess %.3f)  write %.3f s\n",
               t.read, load, infer, t.preprocess, t.network, t.forward, t.postprocess, t.write);
        printf("  wall %.3f s; outside the forward passes %.1f %% of the wall (%.1f %% without "
               "read/write): %s (limit 25 %%)\n",
               wall, 100 * outside, 100 * outside_core, share_ok ? "PASS" : "FAIL");
        printf("  peak RSS %.1f MiB (base %.1f MiB%s), budget 3 x %lld voxels x 4 B + model = "
               "%.1f MiB: %s (%+.1f MiB)\n",
               peak, base_rss, reset ? "" : ", set-up peak not reset", (long long)nv, budget,
               rss_ok ? "PASS" : "FAIL", peak - budget);
        printf("  mask voxels per label 0/1/2/3: %lld/%lld/%lld/%lld\n", counts[0], counts[1],
               counts[2], counts[3]);
        if (o.breakdown)
            printf("  breakdown: reorient %.3f s, normalise %.3f s, cut windows %.3f s, blend + "
                   "argmax %.3f s (network - forward - normalise - cut), restore %.3f s%s",
                   b.prepare, b.normalise, b.cut, blend, b.restore,
                   o.largest ? ", largest component " : "\n");
        if (o.breakdown && o.largest)
            printf("%.3f s\n", b.postprocess);
        if (o.breakdown)
            printf("  memory in the network phase (MiB): base %.1f + input %.1f + prepared copy "
                   "%.1f + working mask %.1f + slice buffers %.1f + one forward in recycle mode "
                   "%.1f (arena %.1f; without recycling %.1f, arena %.1f) = %.1f\n",
                   base_rss, led_in, led_work, led_mask, led_slice, b.fwd_mib[1], b.arena_mib[1],
                   b.fwd_mib[0], b.arena_mib[0], led_sum);
        if (o.compare) {
            printf("  unet-bench volume2d: %s %.3f s/volume(512x512x200), peak RSS %.0f MB\n",
                   ours.ok ? "" : "FAILED", ours.value, ours.peak_rss_mb);
            printf("  torch_unet volume2d: %s%s %.3f s/volume(512x512x200), peak RSS %.0f MB\n",
                   torch.ok ? "" : "FAILED or unavailable ", torch.engine, torch.value,
                   torch.peak_rss_mb);
            if (ours.ok && torch.ok)
                printf("  torch / unet-bench %.2fx (target >= 1.5x); torch volume2d / our "
                       "pipeline wall %.2fx\n",
                       torch.value / ours.value, torch.value / (wall * 200.0 / o.slices));
        }
    }
    mk_image_free(mask);
    mk_image_free(img);
    mk_infer_model_free(m);
    if (made_dir && !o.keep)
        nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    else if (!o.json)
        printf("  files kept in %s\n", dir);
    return 0;
}
