/* Helpers of the method tests (test_coteach.c, test_leuda.c): small cardiac phantoms, U-Nets
 * loaded from model files (freed by mk_test_nets_free), and the largest difference between two
 * parameter stores. */
#ifndef MK_TEST_NETS_H
#define MK_TEST_NETS_H

#include <math.h>
#include <stdio.h>

#include "models/mk_unet.h"
#include "phantoms/mk_phantoms.h"

/* Cardiac phantoms (32 x 32 x 4 voxels, `cases` per domain, the labelled share of the training
 * volumes listed) into dir/phantoms; man (n bytes) = its manifest. 0 on success. */
static inline int mk_test_cardiac(const char *dir, uint64_t seed, int cases, double labelled,
                                  char *man, size_t n)
{
    char ph[600];
    snprintf(ph, sizeof ph, "%s/phantoms", dir);
    snprintf(man, n, "%s/manifest.csv", ph);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_phantom_params p;
    mk_phantom_params_default(&p, MK_PHANTOM_CARDIAC);
    p.seed = seed;
    p.cases = cases;
    p.size[0] = p.size[1] = 32;
    p.size[2] = 4;
    p.labelled = labelled;
    mk_phantom_summary sum;
    if (mk_phantom_synth(&ctx, &p, ph, &sum) != MK_OK) {
        fprintf(stderr, "phantoms: %s\n", mk_ctx_errmsg(&ctx));
        return -1;
    }
    return 0;
}

static mk_unet *mk_test_nets_[64];
static int mk_test_nnets_;

/* The parameters of a 4-class 2D U-Net of this width and depth read from a model file (NULL with
 * the reason on stderr when it cannot be read); freed by mk_test_nets_free. */
static inline mk_nn_params *mk_test_load_unet(const char *path, int width, int depth)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_unet_cfg uc = mk_unet_defaults(2);
    uc.in_ch = 1;
    uc.classes = 4;
    uc.base = width;
    uc.levels = depth;
    mk_unet *u = NULL;
    if (mk_test_nnets_ >= 64 || mk_unet_new(&ctx, &uc, 0, &u) != MK_OK)
        return NULL;
    mk_test_nets_[mk_test_nnets_++] = u;
    if (mk_model_load(&ctx, path, "params", mk_unet_params(u), NULL) != MK_OK) {
        fprintf(stderr, "%s\n", mk_ctx_errmsg(&ctx));
        return NULL;
    }
    return mk_unet_params(u);
}

static inline void mk_test_nets_free(void)
{
    for (int i = 0; i < mk_test_nnets_; i++)
        mk_unet_free(mk_test_nets_[i]);
    mk_test_nnets_ = 0;
}

/* The largest |a - b| over the parameters (and buffers when `buffers`); -1 when the stores
 * differ in their number of entries or a shape. */
static inline double mk_test_params_diff(mk_nn_params *a, mk_nn_params *b, int buffers)
{
    if (!a || !b || mk_nn_params_count(a) != mk_nn_params_count(b))
        return -1;
    double m = 0;
    for (int i = 0; i < mk_nn_params_count(a); i++) {
        mk_param *x = mk_nn_params_at(a, i), *y = mk_nn_params_at(b, i);
        if (mk_tensor_numel(&x->value) != mk_tensor_numel(&y->value))
            return -1;
        if (x->is_buffer && !buffers)
            continue;
        for (int64_t k = 0; k < mk_tensor_numel(&x->value); k++)
            m = fmax(m, fabs((double)x->value.data[k] - y->value.data[k]));
    }
    return m;
}

#endif
