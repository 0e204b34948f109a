/* medkd histology stages: the shared [histo] section, labelled patch sets read from the slides of
 * a manifest (histo/mk_histo.h), classifier training steps, the classifier model file, and the
 * evaluation / inference of classifiers over whole slides (metrics/mk_classify.h,
 * report/mk_cls_report.h).
 *
 * Manifest rows: modality histo.modality (default "SM"), image = the slide (tiled pyramidal TIFF),
 * label = a mask TIFF (0 background, 1 tissue, histo.label_positive = tumour; patch labels by the
 * centre-region rule) or empty; domain = the site. Training reads the train rows of
 * histo.train_domain, evaluation the rows of evaluate.split of every domain. */
#ifndef MK_HISTO_STAGE_H
#define MK_HISTO_STAGE_H

#include "histo/mk_histo.h"
#include "mk_method.h"
#include "models/mk_classifier.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MK_HISTO_CLASSES 2
#define MK_HISTO_ATTR "medkd_classifier"

typedef struct mk_histo_params {
    const char *modality;
    const char *train_domain; /* "": every domain */
    int level, patch, stride;
    double min_tissue;
    int mask_level, mask_median, mask_threshold;
    int label_positive;
    double label_centre, label_min_frac;
    int labelled_per_class; /* 0: every labelled patch */
    int norm;               /* mk_histo_norm */
    double reinhard_mean[3], reinhard_std[3];
    int augment; /* random dihedral transform of every training patch */
    int batch, iterations, width, depth;
    float lr, dropout;
    mk_names class_names;
    int heatmaps;         /* evaluate: one PNG per slide and model */
    int eval_max_patches; /* evaluate / infer: at most this many patches a slide (0: all) */
} mk_histo_params;
extern const mk_param_section mk_histo_section;
/* Cross-key rules of [histo] (patch divisible by 2^(depth-1), names). */
mk_status mk_histo_params_check(mk_ctx *ctx, const mk_histo_params *p);

/* Pre-run check of a manifest for the histology methods (headers only): every row of
 * p->modality opens as a TIFF with level p->level at least p->patch pixels on each side, and its
 * label mask (when given) opens as a TIFF. Errors name the manifest line, the column and the
 * file (MK_ERR_CONFIG). Needs at least one labelled train row of train_domain. */
struct mk_manifest;
mk_status mk_histo_precheck(mk_ctx *ctx, const struct mk_manifest *m, const mk_histo_params *p);

/* Patches held in memory: x [n][3][size][size] (normalised as read), y [n] (-1: unlabelled),
 * and where each came from. */
typedef struct mk_histo_set {
    int size;
    int64_t n;
    float *x;
    int32_t *y;
    int32_t *slide; /* index into slide_id */
    int64_t *xy;    /* [n][2] level-0 top-left */
    int nslides;
    char **slide_id, **slide_path, **slide_domain;
} mk_histo_set;
void mk_histo_set_free(mk_histo_set *s);

/* The patches of the manifest rows of `split` (and `domain` unless NULL or ""): per_class > 0
 * keeps that many labelled patches of each class (seeded choice), 0 every tissue patch; labelled:
 * 1 only patches with a label (rows without a mask skipped), 0 every tissue patch (labels kept
 * where known). max_per_slide > 0 caps every slide (seeded). tolerate: a slide that cannot be read
 * is logged and skipped (*failed counts them) instead of failing. */
mk_status mk_histo_set_load(mk_ctx *ctx, const mk_data_params *d, const mk_histo_params *p,
                            const char *split, const char *domain, int per_class, int labelled,
                            int64_t max_per_slide, uint64_t seed, int tolerate, mk_histo_set *out,
                            int *failed);
/* Append b's patches to a (same size). */
mk_status mk_histo_set_append(mk_ctx *ctx, mk_histo_set *a, const float *x, const int32_t *y,
                              int64_t n);

/* A batch of `batch` patches drawn uniformly from s with r into x [batch][3][size][size] and
 * y, each under a random dihedral transform when augment. */
void mk_histo_batch(const mk_histo_set *s, mk_rng *r, int batch, int augment, float *x, int32_t *y);

/* The classifier of [histo] with width/depth (the [histo] ones when <= 0). */
mk_classifier_cfg mk_histo_classifier_cfg(const mk_histo_params *p, int width, int depth);
/* Add a classifier to the loop as network `name`. */
int mk_histo_loop_classifier(mk_loop *L, const char *name, const mk_classifier_cfg *cfg,
                             uint64_t seed);
/* Save the loop's classifier `net` as run_dir/models/<file> with its description (JSON in the
 * root attribute MK_HISTO_ATTR: kind, method, role, the classifier shape and the patch / level /
 * normalisation it reads). */
mk_status mk_histo_save_classifier(mk_loop *L, const mk_histo_params *p, const char *file, int net,
                                   const char *role);

/* A classifier model file: the network and how it reads slides. */
typedef struct mk_histo_model {
    mk_classifier *net;
    mk_histo_params p; /* level, patch, stride, min_tissue, mask, norm, class names from the file;
                          strings point into json */
    char *json;
    char method[64];
} mk_histo_model;
/* 1 when path is a classifier model file (has MK_HISTO_ATTR). */
int mk_histo_is_model(const char *path);
mk_status mk_histo_model_load(mk_ctx *ctx, const char *path, mk_histo_model *out);
void mk_histo_model_free(mk_histo_model *m);

/* Class probabilities [n][classes] of the set's patches (eval mode, batches of 64). */
mk_status mk_histo_predict(mk_ctx *ctx, mk_classifier *net, const mk_histo_set *s, int threads,
                           float *prob);

/* One classifier model to evaluate. */
typedef struct mk_histo_eval_model {
    const char *name;
    const char *path;
} mk_histo_eval_model;
/* Evaluate: every model on the slides of `split` (every domain), metrics overall, per domain and
 * per slide into run_dir/reports/classification.{json,csv,h5}, heat maps
 * run_dir/reports/heatmaps/<model>/<slide>.png and, when html, the page
 * run_dir/reports/classification.html (mk_cls_report_html; version shown in it); a bad slide is
 * reported and skipped. */
mk_status mk_histo_evaluate(mk_ctx *ctx, const mk_stage_common *c, const mk_histo_params *p,
                            const char *split, const mk_histo_eval_model *models, int n, int html,
                            const char *version);
/* Inference of a classifier on slides (no labels needed): per slide out_dir/<stem>_patches.csv
 * (x, y, level, size, tissue, p_<class>...), out_dir/<stem>_coords.h5 (the grid, CLAM's layout)
 * and out_dir/<stem>_heatmap.png; a bad slide is
 * reported and the others go on (*failed counts them). */
mk_status mk_histo_infer(mk_ctx *ctx, const char *model_path, const char *const *slides, int n,
                         const char *out_dir, int threads, int *failed);

/* Shared by the histology methods (stages/method_histo_cls.c). */
/* The labelled training set of [histo] (train split, histo.train_domain, labelled_per_class). */
mk_status mk__histo_train_set(mk_loop *L, const mk_histo_params *hp, mk_histo_set *set);
/* One cross-entropy step of classifier `net` on a batch of hp->batch patches of set (x, y:
 * buffers of that batch). */
mk_status mk__histo_cls_step(mk_loop *L, int net, const mk_histo_set *set, mk_rng *rng,
                             const mk_histo_params *hp, float *x, int32_t *y, const char *term,
                             mk_terms *terms);
/* Adam with hp->lr and a cosine schedule over total iterations from loop iteration start. */
mk_status mk__histo_add_optim(mk_loop *L, int net, const mk_histo_params *hp, long long start,
                              long long total);
/* histo_meta's teacher gradient (stages/method_histo_meta.c): the look-ahead theta' = theta -
 * virtual_lr grad_theta CE(S(G(zin)), ys), g' = grad CE(S_theta'(xv), yv), and the teacher's
 * gradient -virtual_lr (d^2 L_syn / d phi d theta) g' by a central difference (eps = fd_eps /
 * |g'|), left in G's gradient store (zero when g' is 0). S's parameters, buffers and gradients
 * and G's buffers are as they were on return. work: mk__histo_meta_work_size floats. val_loss
 * and syn_loss (may be NULL): CE(S_theta'(xv)) and CE(S_theta(G(zin))). */
int64_t mk__histo_meta_work_size(mk_classifier *student, mk_cgen *teacher);
mk_status mk__histo_meta_hypergrad(mk_ctx *ctx, mk_nn_graph *g, mk_classifier *S, mk_cgen *G,
                                   const mk_tensor *zin, const int32_t *ys, const mk_tensor *xv,
                                   const int32_t *yv, float virtual_lr, float fd_eps, float *work,
                                   double *val_loss, double *syn_loss);
/* t: a borrowed view of data as [n][c][side][side] (t->data is not owned). */
void mk__histo_wrap(mk_tensor *t, float *data, int64_t n, int64_t c, int64_t side);
/* [histo]'s checks plus what a patch generator (mk_cgen) needs: histo.norm "none" (it makes RGB)
 * and a patch divisible by 8; who names the generator in the message. */
mk_status mk__histo_check_generator(mk_ctx *ctx, const mk_histo_params *hp, const char *who);
/* Load a classifier model file's parameters into the loop's classifier net (same shape). */
mk_status mk__histo_load_into(mk_loop *L, const char *path, int net);

#ifdef __cplusplus
}
#endif
#endif
