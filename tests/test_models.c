/* models: reference U-Net sizes against the peer README, state_dict names against the golden
 * files written by PyTorch, conv FLOP counts, checkpoint round trip (weights + Adam state),
 * checkpoint errors, and dataset reads (scalar, float, int32) from the golden file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/mk_fs.h"
#include "models/mk_unet.h"

static const char *golden(int dim, char *buf, size_t n)
{
    const char *sh = getenv("MK_SHARED_DIR");
    snprintf(buf, n, "%s/peers/golden/unet%dd_golden.h5", sh ? sh : "../shared", dim);
    return buf;
}

static void test_param_counts_and_names(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    const int64_t want[2] = {482500, 85204}; /* peers/README.md */
    for (int dim = 2; dim <= 3; dim++) {
        mk_unet_cfg cfg = mk_unet_defaults(dim);
        mk_unet *net;
        assert_int_equal(mk_unet_new(&ctx, &cfg, 1, &net), MK_OK);
        mk_nn_params *ps = mk_unet_params(net);
        assert_int_equal(mk_nn_params_numel(ps), want[dim - 2]);
        assert_non_null(mk_nn_params_find(ps, "enc.0.1.running_var"));
        assert_non_null(mk_nn_params_find(ps, "up.0.bias"));
        assert_true(mk_nn_params_find(ps, "enc.0.1.running_var")->value.data[0] == 1.0f);
        /* every name/shape exists in PyTorch's state_dict dump (h5py wrote it) */
        char path[1024];
        golden(dim, path, sizeof path);
        if (mk_fs_is_file(path)) {
            mk_status st = mk_model_load(&ctx, path, "params", ps, NULL);
            if (st != MK_OK)
                fail_msg("%s", mk_ctx_errmsg(&ctx));
        }
        mk_unet_free(net);
    }
    mk_unet_cfg bad = mk_unet_defaults(4);
    mk_unet *net;
    assert_int_equal(mk_unet_new(&ctx, &bad, 1, &net), MK_ERR_INVALID);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "dim"));
}

static void test_flops(void **state)
{
    (void)state;
    /* peers/README.md: forward 4.607 GFLOP per 256^2 image, 6.233 per 64^3 volume; training
     * 13.80 / 18.59 = 3 fwd - first layer */
    mk_unet_cfg c2 = mk_unet_defaults(2), c3 = mk_unet_defaults(3);
    int s2[2] = {256, 256}, s3[3] = {64, 64, 64};
    double f1, f2 = mk_unet_conv_flops(&c2, s2, &f1);
    assert_float_equal(f2 / 1e9, 4.607, 0.0006);
    assert_float_equal((3 * f2 - f1) / 1e9, 13.80, 0.006);
    double f3 = mk_unet_conv_flops(&c3, s3, &f1);
    assert_float_equal(f3 / 1e9, 6.233, 0.0006);
    assert_float_equal((3 * f3 - f1) / 1e9, 18.59, 0.006);
}

static void test_init_statistics(void **state)
{
    (void)state;
    /* kaiming-uniform a = sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), variance bound^2 / 3 */
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_unet_cfg cfg = mk_unet_defaults(2);
    mk_unet *net;
    assert_int_equal(mk_unet_new(&ctx, &cfg, 3, &net), MK_OK);
    mk_param *w = mk_nn_params_find(mk_unet_params(net), "enc.3.3.weight"); /* fan_in 1152 */
    double b = 1 / sqrt(1152.0), s2 = 0, mx = 0;
    int64_t n = mk_tensor_numel(&w->value);
    for (int64_t i = 0; i < n; i++) {
        s2 += (double)w->value.data[i] * w->value.data[i];
        mx = fabs(w->value.data[i]) > mx ? fabs(w->value.data[i]) : mx;
    }
    assert_true(mx <= b);
    assert_float_equal(s2 / (double)n, b * b / 3, 0.02 * b * b / 3);
    /* transposed conv fan_in = out * k^2 = 64 * 4 */
    mk_param *u = mk_nn_params_find(mk_unet_params(net), "up.0.bias");
    for (int i = 0; i < 64; i++)
        assert_true(fabs(u->value.data[i]) <= 1 / 16.0);
    mk_unet_free(net);
}

static void test_checkpoint_roundtrip(void **state)
{
    (void)state;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_unet_cfg cfg = {3, 1, 2, 2, 2, 0.1f, 1e-5f};
    mk_unet *a, *b;
    assert_int_equal(mk_unet_new(&ctx, &cfg, 1, &a), MK_OK);
    assert_int_equal(mk_unet_new(&ctx, &cfg, 2, &b), MK_OK);
    mk_nn_params *pa = mk_unet_params(a), *pb = mk_unet_params(b);
    mk_optim_cfg oc = mk_optim_defaults(MK_OPTIM_ADAM);
    mk_optim *oa = mk_optim_new(pa, &oc), *ob = mk_optim_new(pb, &oc);
    /* give a some optimiser state and running statistics */
    for (int i = 0; i < mk_nn_params_count(pa); i++) {
        mk_param *p = mk_nn_params_at(pa, i);
        int64_t n = mk_tensor_numel(&p->value);
        for (int64_t k = 0; k < n; k++) {
            if (p->grad)
                p->grad[k] = 0.01f * (float)(k % 7) - 0.02f;
            else
                p->value.data[k] = 0.5f + (float)k;
        }
    }
    mk_optim_step(oa);
    mk_optim_step(oa);
    char path[256];
    snprintf(path, sizeof path, "test_models_ckpt_%d.h5", (int)getpid());
    assert_int_equal(mk_model_save(&ctx, path, pa, oa), MK_OK);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    assert_false(mk_fs_is_file(tmp)); /* renamed into place */
    assert_int_equal(mk_model_load(&ctx, path, "params", pb, ob), MK_OK);
    assert_int_equal(mk_optim_steps(ob), 2);
    for (int i = 0; i < mk_nn_params_count(pa); i++) {
        mk_param *p = mk_nn_params_at(pa, i), *q = mk_nn_params_at(pb, i);
        size_t bytes = (size_t)mk_tensor_numel(&p->value) * sizeof(float);
        assert_memory_equal(p->value.data, q->value.data, bytes);
        for (int s = 0; s < 2 && !p->is_buffer; s++)
            assert_memory_equal(mk_optim_state(oa, i, s), mk_optim_state(ob, i, s), bytes);
    }
    /* the same next step from both */
    mk_optim_step(oa);
    for (int i = 0; i < mk_nn_params_count(pb); i++) {
        mk_param *q = mk_nn_params_at(pb, i), *p = mk_nn_params_at(pa, i);
        if (q->grad)
            memcpy(q->grad, p->grad, (size_t)mk_tensor_numel(&q->value) * sizeof(float));
    }
    mk_optim_step(ob);
    mk_param *p0 = mk_nn_params_at(pa, 0), *q0 = mk_nn_params_at(pb, 0);
    assert_memory_equal(p0->value.data, q0->value.data,
                        (size_t)mk_tensor_numel(&p0->value) * sizeof(float));

    /* errors: a different architecture names the dataset and both shapes */
    mk_unet_cfg wide = cfg;
    wide.base = 3;
    mk_unet *c;
    assert_int_equal(mk_unet_new(&ctx, &wide, 1, &c), MK_OK);
    assert_int_equal(mk_model_load(&ctx, path, "params", mk_unet_params(c), NULL), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "params/enc/0/0/weight"));
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "expected shape 3x1x3x3x3, got 2x1x3x3x3"));
    /* a missing group / missing file / a non-HDF5 file */
    assert_int_equal(mk_model_load(&ctx, path, "nope", pb, NULL), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "missing"));
    assert_int_equal(mk_model_load(&ctx, "no/such.h5", "params", pb, NULL), MK_ERR_IO);
    FILE *f = fopen(path, "w");
    fputs("not hdf5", f);
    fclose(f);
    assert_int_equal(mk_model_load(&ctx, path, "params", pb, NULL), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "not an HDF5 file"));
    /* an unwritable destination fails cleanly */
    assert_int_equal(mk_model_save(&ctx, "no/such/dir/x.h5", pa, NULL), MK_ERR_IO);
    unlink(path);
    mk_unet_free(c);
    mk_optim_free(oa);
    mk_optim_free(ob);
    mk_unet_free(a);
    mk_unet_free(b);
}

/* mk_model_h5_read / _i32 on the PyTorch golden file (h5py wrote it): a scalar dataset reads as one
 * element, float and int32 tensors keep their shape; errors name the file and the dataset. */
static void test_h5_read_golden(void **state)
{
    (void)state;
    char path[1024];
    golden(2, path, sizeof path);
    if (!mk_fs_is_file(path))
        skip();
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_tensor t;
    assert_int_equal(mk_model_h5_read(&ctx, path, "forward/loss", &t), MK_OK);
    assert_int_equal(t.ndim, 1);
    assert_int_equal(t.ne[0], 1);
    assert_true(isfinite(t.data[0]) && t.data[0] > 0);
    mk_tensor_free(&t);
    assert_int_equal(mk_model_h5_read(&ctx, path, "/input", &t), MK_OK);
    assert_int_equal(t.ndim, 4);
    assert_true(t.ne[0] == 2 && t.ne[1] == 1 && t.ne[2] == 64 && t.ne[3] == 64);
    mk_tensor_free(&t);
    int32_t *lab = NULL;
    int64_t n = 0;
    assert_int_equal(mk_model_h5_read_i32(&ctx, path, "target", &lab, &n), MK_OK);
    assert_int_equal(n, 2 * 64 * 64);
    for (int64_t i = 0; i < n; i++)
        assert_true(lab[i] >= 0 && lab[i] < 4);
    free(lab);
    assert_int_equal(mk_model_h5_read(&ctx, path, "forward/nope", &t), MK_ERR_FORMAT);
    assert_non_null(strstr(mk_ctx_errmsg(&ctx), "dataset forward/nope: missing"));
    assert_null(t.data);
    assert_int_equal(mk_model_h5_read_i32(&ctx, "no/such.h5", "target", &lab, &n), MK_ERR_IO);
    assert_null(lab);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_counts_and_names), cmocka_unit_test(test_flops),
        cmocka_unit_test(test_init_statistics),        cmocka_unit_test(test_checkpoint_roundtrip),
        cmocka_unit_test(test_h5_read_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
