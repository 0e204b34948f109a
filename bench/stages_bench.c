/* stages-bench: time of one training step of each network of the CMEDL stage (forward + backward
 * + Adam) on a [batch, 1, H, W] patch, and of a whole CMEDL / baseline iteration on phantoms.
 * Usage: stages-bench [threads] [batch] [patch] [unet_width] [gen_width] [profile]
 * profile: after each network's line, its per-op breakdown (nn/mk_nn.h's profile: ms per step and
 * share of the step; conv products as sub-rows). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "models/mk_translator.h"
#include "models/mk_unet.h"
#include "nn/mk_optim.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1, batch = argc > 2 ? atoi(argv[2]) : 4;
    int patch = argc > 3 ? atoi(argv[3]) : 48, uw = argc > 4 ? atoi(argv[4]) : 8;
    int gw = argc > 5 ? atoi(argv[5]) : 16;
    int profile = argc > 6 && strcmp(argv[6], "profile") == 0;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_unet_cfg cfg = mk_unet_defaults(2);
    cfg.base = uw;
    cfg.levels = 3;
    cfg.classes = 2;
    mk_unet *u;
    mk_translator *G, *D;
    if (mk_unet_new(&ctx, &cfg, 1, &u) || mk_translator_new(&ctx, MK_TRANSLATOR_GEN, gw, 2, &G) ||
        mk_translator_new(&ctx, MK_TRANSLATOR_DISC, gw, 3, &D))
        return 1;
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    mk_optim *ou = mk_optim_new(mk_unet_params(u), &oc),
             *og = mk_optim_new(mk_translator_params(G), &oc);
    mk_optim *od = mk_optim_new(mk_translator_params(D), &oc);
    mk_nn_graph *g = mk_nn_graph_new(threads, 1);
    int64_t ne[4] = {batch, 1, patch, patch};
    mk_tensor x;
    mk_tensor_new(&x, 4, ne);
    int32_t *y = calloc((size_t)(batch * patch * patch), sizeof *y);
    for (int64_t i = 0; i < batch * patch * patch; i++) {
        x.data[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
        y[i] = (i % patch) > patch / 2;
    }
    const char *names[3] = {"unet", "generator", "discriminator"};
    for (int which = 0; which < 3; which++) {
        int reps = 20;
        double t0 = 0, c0 = 0;
        for (int r = 0; r < reps + 2; r++) {
            if (r == 2) {
                mk_nn_profile_enable(profile);
                t0 = now_s();
                c0 = (double)clock() / CLOCKS_PER_SEC;
            }
            mk_nn_graph_begin(g, 1);
            mk_var *in = mk_nn_input(g, &x, 0), *l;
            if (which == 0) {
                mk_nn_params_zero_grad(mk_unet_params(u));
                mk_var *o = mk_unet_forward(u, g, in);
                l = mk_nn_add(g, mk_nn_dice_loss(g, o, y, 1e-5f),
                              mk_nn_cross_entropy(g, o, y, NULL, -100));
                mk_nn_backward(g, l);
                mk_optim_step(ou);
            } else if (which == 1) {
                mk_nn_params_zero_grad(mk_translator_params(G));
                l = mk_nn_l1(g, mk_translator_forward(G, g, in), in);
                mk_nn_backward(g, l);
                mk_optim_step(og);
            } else {
                mk_nn_params_zero_grad(mk_translator_params(D));
                l = mk_nn_adv_ls(g, mk_translator_forward(D, g, in), 1);
                mk_nn_backward(g, l);
                mk_optim_step(od);
            }
        }
        double dt = (now_s() - t0) / reps, cpu = ((double)clock() / CLOCKS_PER_SEC - c0) / reps;
        printf("%-13s batch %d patch %d width %d threads %d: %.2f ms wall, %.2f ms CPU per "
               "fwd+bwd+adam step\n",
               names[which], batch, patch, which ? gw : uw, threads, dt * 1e3, cpu * 1e3);
        mk_nn_prof_row rows[96];
        int n = profile ? mk_nn_profile_rows(rows, 96) : 0;
        for (int i = 0; i < n && i < 96; i++)
            printf("    %-16s %-18s %7.3f ms %5.1f%%\n", rows[i].op, rows[i].phase,
                   1e3 * rows[i].seconds / reps, 100 * rows[i].seconds / (dt * reps));
        mk_nn_profile_enable(0);
    }
    mk_tensor_free(&x);
    free(y);
    mk_nn_graph_free(g);
    mk_optim_free(ou);
    mk_optim_free(og);
    mk_optim_free(od);
    mk_unet_free(u);
    mk_translator_free(G);
    mk_translator_free(D);
    return 0;
}
