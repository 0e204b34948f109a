/* ACT-Net + CTKD (stages/method_coteach*.c) on small cardiac phantoms with 30 % of the training
 * volumes labelled:
 *   - coteach with both paths off trains the same student as coteach_tiny, bit for bit (same
 *     initial weights, same labelled batches);
 *   - the co-teacher follows MT-UDA's update_ema_variables: a copy of the student during
 *     ema_pretrain, then alpha = min(1 - 1/(step - pretrain + 1), decay), buffers kept;
 *   - the temperature: fixed T recorded as given; CTKD global starts at 1 + 20 sigmoid(1) and
 *     does not move while the reversal factor is 0, moves once it is not; the instance-wise MLP
 *     gives one T per slice; a run interrupted and resumed with a learnable temperature ends with
 *     the same temperature parameters and models as one run straight (the temperature is a
 *     network of the loop, checkpointed);
 *   - bad configs stop in the method's check with the key named: t_start <= 0, a learnable
 *     temperature with softmax-MSE, a patch the depth cannot divide; a student larger than the
 *     teacher is only warned about. */
#define _GNU_SOURCE
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/mk_fs.h"
#include "nn/mk_nn.h"
#include "phantoms/mk_phantoms.h"
#include "stages/mk_method.h"
#include "stages/stage_internal.h"
#include "test_nets.h"
#include "test_tmp.h"

static char g_tmp[512], g_man[700];

static int setup(void **s)
{
    (void)s;
    if (mk_test_tmp_make(g_tmp, sizeof g_tmp, "coteach") != 0)
        return -1;
    if (mk_test_cardiac(g_tmp, 3, 10, 0.3, g_man, sizeof g_man) != 0)
        return -1;
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    mk_test_nets_free();
    mk_test_tmp_remove(g_tmp);
    return 0;
}

static void common(mk_stage_common *c, const char *name, char *dir, size_t n)
{
    snprintf(dir, n, "%s/%s", g_tmp, name);
    mk_stage_common_defaults(c);
    c->run_dir = dir;
    c->seed = 9;
    c->threads = 1;
    c->data.manifest = g_man;
    c->data.patch[0] = c->data.patch[1] = 32;
    c->unet.classes = 4;
    c->log_every = 1000;
    c->checkpoint_every = 2;
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_stage_common_finish(&ctx, c), MK_OK);
}

typedef struct {
    mk_coteach_params cp;
    mk_coteach_teacher_params tp;
} cot_cfg; /* the layout of coteach's config (its own section first) */

static void *cfg_of(const char *method, int iterations)
{
    const mk_method *m = mk_method_find(method);
    assert_non_null(m);
    void *cfg = calloc(1, m->cfg_size);
    mk_method_defaults(m, cfg);
    for (int u = 0; u < m->nuses; u++) {
        char *base = (char *)cfg + m->uses[u].offset;
        if (m->uses[u].section == &mk_coteach_section) {
            mk_coteach_params *p = (mk_coteach_params *)base;
            p->iterations = iterations;
            p->batch = p->unlabelled_batch = 2;
        } else if (m->uses[u].section == &mk_coteach_teacher_section) {
            mk_coteach_teacher_params *p = (mk_coteach_teacher_params *)base;
            p->iterations = iterations;
            p->batch = 2;
            p->width = 8;
            p->depth = 3;
        }
    }
    return cfg;
}

static void train(const char *method, const mk_stage_common *c, void *cfg)
{
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    if (mk_method_train(&ctx, mk_method_find(method), c, cfg, NULL) != MK_OK)
        fail_msg("%s: %s", method, mk_ctx_errmsg(&ctx));
}

/* A U-Net of this shape with the weights of a model file (freed at teardown). */
static mk_nn_params *load_unet(const char *path, int width, int depth)
{
    mk_nn_params *p = mk_test_load_unet(path, width, depth);
    assert_non_null(p);
    return p;
}

static void test_paths_off_is_tiny(void **s)
{
    (void)s;
    char a[700], b[700], pa[800], pb[800];
    mk_stage_common c;
    common(&c, "off", a, sizeof a);
    cot_cfg *cfg = cfg_of("coteach", 6);
    cfg->cp.w_kd = cfg->cp.w_co = 0;
    train("coteach", &c, cfg);
    common(&c, "tiny", b, sizeof b);
    void *tc = cfg_of("coteach_tiny", 6);
    train("coteach_tiny", &c, tc);
    snprintf(pa, sizeof pa, "%s/models/coteach_student.h5", a);
    snprintf(pb, sizeof pb, "%s/models/coteach_tiny.h5", b);
    mk_nn_params *x = load_unet(pa, cfg->cp.width, cfg->cp.depth);
    mk_nn_params *y = load_unet(pb, cfg->cp.width, cfg->cp.depth);
    assert_true(mk_test_params_diff(x, y, 1) == 0.0);
    /* and the paths change it */
    common(&c, "on", a, sizeof a);
    void *tcfg = cfg_of("coteach_teacher", 6);
    train("coteach_teacher", &c, tcfg);
    cot_cfg *on = cfg_of("coteach", 6);
    on->cp.rampup = 0; /* full weights from the first step */
    train("coteach", &c, on);
    snprintf(pa, sizeof pa, "%s/models/coteach_student.h5", a);
    assert_true(mk_test_params_diff(load_unet(pa, on->cp.width, on->cp.depth), y, 0) > 0);
    free(cfg);
    free(tc);
    free(tcfg);
    free(on);
}

static void test_coteacher_ema(void **s)
{
    (void)s;
    char d[700], ps[800], pc[800];
    mk_stage_common c;
    /* 3 iterations inside ema_pretrain: the co-teacher is a copy of the student */
    common(&c, "ema_copy", d, sizeof d);
    cot_cfg *cfg = cfg_of("coteach", 3);
    cfg->cp.w_kd = 0;
    cfg->cp.ema_pretrain = 5;
    train("coteach", &c, cfg);
    snprintf(ps, sizeof ps, "%s/models/coteach_student.h5", d);
    snprintf(pc, sizeof pc, "%s/models/coteach_coteacher.h5", d);
    int w = cfg->cp.width, dp = cfg->cp.depth;
    assert_true(mk_test_params_diff(load_unet(ps, w, dp), load_unet(pc, w, dp), 0) == 0.0);
    /* pretrain 0, one iteration: alpha = min(1 - 1/2, 0.99) = 0.5 of the initial weights */
    common(&c, "ema_half", d, sizeof d);
    cfg->cp.ema_pretrain = 0;
    cfg->cp.iterations = 1;
    train("coteach", &c, cfg);
    snprintf(ps, sizeof ps, "%s/models/coteach_student.h5", d);
    snprintf(pc, sizeof pc, "%s/models/coteach_coteacher.h5", d);
    mk_ctx ctx;
    mk_ctx_init(&ctx);
    mk_unet_cfg uc = mk_unet_defaults(2);
    uc.in_ch = 1;
    uc.classes = 4;
    uc.base = w;
    uc.levels = dp;
    mk_unet *init = NULL;
    assert_int_equal(mk_unet_new(&ctx, &uc, mk__seed(9, 41), &init), MK_OK);
    mk_nn_params *st = load_unet(ps, w, dp), *co = load_unet(pc, w, dp);
    mk_nn_params *i0 = mk_unet_params(init);
    double worst = 0;
    int moved = 0;
    for (int i = 0; i < mk_nn_params_count(st); i++) {
        mk_param *a = mk_nn_params_at(i0, i), *b = mk_nn_params_at(st, i),
                 *e = mk_nn_params_at(co, i);
        if (a->is_buffer)
            continue;
        for (int64_t k = 0; k < mk_tensor_numel(&a->value); k++) {
            double want = 0.5 * a->value.data[k] + 0.5 * b->value.data[k];
            worst = fmax(worst, fabs(want - e->value.data[k]));
            moved |= a->value.data[k] != b->value.data[k];
        }
    }
    assert_true(moved);
    if (worst > 1e-7)
        fail_msg("co-teacher differs from 0.5 init + 0.5 student by %g (from the student %g, "
                 "from the initial weights %g)",
                 worst, mk_test_params_diff(co, st, 0), mk_test_params_diff(co, i0, 0));
    mk_unet_free(init);
    free(cfg);
}

/* Column 2 of models/coteach_temperature.csv, up to max rows. */
static int read_t(const char *dir, double *t, int max)
{
    char path[800];
    snprintf(path, sizeof path, "%s/models/coteach_temperature.csv", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[128];
    int n = 0;
    if (!fgets(line, sizeof line, f)) {
        fclose(f);
        return -1;
    }
    long long it;
    while (n < max && fscanf(f, "%lld,%lf", &it, &t[n]) == 2)
        n++;
    fclose(f);
    return n;
}

static void test_temperature(void **s)
{
    (void)s;
    char d[700];
    mk_stage_common c;
    common(&c, "t_teacher", d, sizeof d);
    void *tcfg = cfg_of("coteach_teacher", 4);
    train("coteach_teacher", &c, tcfg);
    char teacher[800];
    snprintf(teacher, sizeof teacher, "%s/models/coteach_teacher.h5", d);
    cot_cfg *cfg = cfg_of("coteach", 6);
    cfg->cp.teacher_model = teacher;
    double t[16];
    /* fixed */
    common(&c, "t_fixed", d, sizeof d);
    cfg->cp.temperature = MK_COTEACH_T_FIXED;
    cfg->cp.t_fixed = 3.5f;
    train("coteach", &c, cfg);
    assert_int_equal(read_t(d, t, 16), 6);
    for (int i = 0; i < 6; i++)
        assert_true(fabs(t[i] - 3.5) < 1e-6);
    /* global: T starts at 1 + 20 sigmoid(1); the curriculum's factor is 0 at the first step, so
     * theta gets no gradient there and T is unchanged at the second */
    common(&c, "t_still", d, sizeof d);
    cfg->cp.temperature = MK_COTEACH_T_GLOBAL;
    cfg->cp.ctkd_ramp = 1.0f;
    cfg->cp.lr = 0.05f;
    train("coteach", &c, cfg);
    assert_int_equal(read_t(d, t, 16), 6);
    assert_true(fabs(t[0] - 15.6211716) < 1e-4);
    assert_true(fabs(t[1] - t[0]) < 1e-6);
    assert_true(fabs(t[5] - t[1]) > 1e-4);
    /* the full reversal from the start (ctkd_ramp 0): theta ascends the KD loss, T moves */
    common(&c, "t_moves", d, sizeof d);
    cfg->cp.ctkd_ramp = 0;
    cfg->cp.lr = 0.05f;
    train("coteach", &c, cfg);
    assert_int_equal(read_t(d, t, 16), 6);
    assert_true(fabs(t[0] - 15.6211716) < 1e-4);
    assert_true(fabs(t[5] - t[0]) > 0.05);
    /* instance-wise: one T per slice, starting at the global T0 (last bias 1, inputs ~ 0) */
    common(&c, "t_inst", d, sizeof d);
    cfg->cp.temperature = MK_COTEACH_T_INSTANCE;
    cfg->cp.lr = 1e-3f;
    train("coteach", &c, cfg);
    assert_int_equal(read_t(d, t, 16), 6);
    for (int i = 0; i < 6; i++)
        assert_true(t[i] > 1 && t[i] < 21);
    free(tcfg);
    free(cfg);
}

static void test_resume_temperature(void **s)
{
    (void)s;
    for (int kind = MK_COTEACH_T_GLOBAL; kind <= MK_COTEACH_T_INSTANCE; kind++) {
        char a[700], b[700], teacher[800];
        mk_stage_common c;
        common(&c, kind == MK_COTEACH_T_GLOBAL ? "r_teacher_g" : "r_teacher_i", a, sizeof a);
        void *tcfg = cfg_of("coteach_teacher", 3);
        train("coteach_teacher", &c, tcfg);
        snprintf(teacher, sizeof teacher, "%s/models/coteach_teacher.h5", a);
        cot_cfg *cfg = cfg_of("coteach", 4);
        cfg->cp.teacher_model = teacher;
        cfg->cp.temperature = kind;
        cfg->cp.ctkd_ramp = 0;
        cfg->cp.lr = 0.05f;
        common(&c, kind == MK_COTEACH_T_GLOBAL ? "r_straight_g" : "r_straight_i", a, sizeof a);
        train("coteach", &c, cfg);
        common(&c, kind == MK_COTEACH_T_GLOBAL ? "r_killed_g" : "r_killed_i", b, sizeof b);
        mk_ctx cc;
        mk_test_cancelling(&cc, 2);
        assert_int_equal(mk_method_train(&cc, mk_method_find("coteach"), &c, cfg, NULL),
                         MK_ERR_ABORTED);
        c.resume = 1;
        train("coteach", &c, cfg);
        const char *files[] = {"models/coteach_student.h5", "models/coteach_coteacher.h5"};
        char cmd[2400];
        for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
            snprintf(cmd, sizeof cmd, "h5diff -q '%s/%s' '%s/%s'", a, files[k], b, files[k]);
            if (system(cmd) != 0)
                fail_msg("temperature %d: %s differs after cancel + resume", kind, files[k]);
        }
        /* the checkpoints hold the temperature network, equal in both runs */
        snprintf(cmd, sizeof cmd,
                 "h5diff -q '%s/checkpoints/coteach.h5' '%s/checkpoints/coteach.h5' /temperature "
                 "/temperature",
                 a, b);
        if (system(cmd) != 0)
            fail_msg("temperature %d: the temperature network differs after resume", kind);
        free(tcfg);
        free(cfg);
    }
}

static void test_bad_configs(void **s)
{
    (void)s;
    char d[700];
    mk_stage_common c;
    common(&c, "bad", d, sizeof d);
    const mk_method *m = mk_method_find("coteach");
    mk_ctx ctx;
    cot_cfg *cfg = cfg_of("coteach", 2);
    cfg->cp.temperature = MK_COTEACH_T_GLOBAL;
    cfg->cp.t_start = 0;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_method_check(&ctx, m, &c, cfg), MK_ERR_CONFIG);
    assert_non_null(strstr(ctx.msg, "coteach.t_start"));
    cfg->cp.t_start = 1;
    cfg->cp.kd_loss = MK_COTEACH_KD_SOFTMAX_MSE;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_method_check(&ctx, m, &c, cfg), MK_ERR_CONFIG);
    assert_non_null(strstr(ctx.msg, "coteach.temperature"));
    cfg->cp.kd_loss = MK_COTEACH_KD_KL;
    cfg->cp.depth = 5; /* a 24 x 24 patch is not a multiple of 2^4 */
    c.data.patch[0] = c.data.patch[1] = 24;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_method_check(&ctx, m, &c, cfg), MK_ERR_CONFIG);
    assert_non_null(strstr(ctx.msg, "coteach.depth"));
    cfg->cp.depth = 3;
    c.data.patch[0] = c.data.patch[1] = 32;
    /* a student as large as the teacher: allowed (the check passes) */
    cfg->cp.width = 8;
    cfg->tp.width = 8;
    cfg->tp.depth = 3;
    mk_ctx_init(&ctx);
    assert_int_equal(mk_method_check(&ctx, m, &c, cfg), MK_OK);
    /* the co-teacher asks for unlabelled rows; the teacher stage for labelled ones */
    mk_data_need nd[MK_NEEDS_MAX];
    int n = m->needs(&c, cfg, nd);
    assert_int_equal(n, 2);
    assert_int_equal(nd[1].unlabelled, 1);
    assert_string_equal(nd[1].key, "coteach.w_co");
    cfg->cp.w_co = 0;
    assert_int_equal(m->needs(&c, cfg, nd), 1);
    /* the teacher comes from the stage before unless teacher_model names a file */
    assert_string_equal(m->after(cfg), "coteach_teacher");
    cfg->cp.teacher_model = g_man;
    assert_null(m->after(cfg));
    free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_off_is_tiny), cmocka_unit_test(test_coteacher_ema),
        cmocka_unit_test(test_temperature),       cmocka_unit_test(test_resume_temperature),
        cmocka_unit_test(test_bad_configs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
