/* medkd methods: one training loop shared by every method, one file per method.
 *
 * A method (stages/method_<name>.c) exports one descriptor (mk_method): its name, its config
 * section's parameter rows (core/mk_param.h; the rows are the schema, the binder's map and the C
 * defaults at once), the sections of other methods it also reads, a `check` of its cross-key rules
 * (the same function runs in the pre-run check and in the stage: one rule, one message), what data
 * it needs (pre-run checks), `init` (networks, optimisers, data streams), an optional `start`
 * (after a fresh start or a resume), `step` (one iteration, returning named and weighted loss
 * terms), `save` (its models) and what it produces for evaluation. It is registered with one row
 * of MK_METHODS (stages/methods.c, checked at compile time).
 *
 * The loop (stages/loop.c) owns everything the methods share: the named networks and their Adam
 * optimisers and learning-rate schedules, EMA copies, the data streams with their seeded RNGs,
 * the computation graph, the finite-loss check, log lines of the named loss terms, progress with
 * rate and ETA, atomic checkpoints every run.checkpoint_every iterations holding every network,
 * optimiser state and RNG state (the schedules are functions of the iteration), `--resume`
 * bit-identical to an uninterrupted run, and a clean stop on SIGINT/SIGTERM (mk_ctx.cancel) that
 * leaves a resumable checkpoint.
 *
 *     mk_stage_common c;   mk_stage_common_defaults(&c);  ... c.run_dir, c.data.manifest ...
 *     const mk_method *m = mk_method_find("cmedl");
 *     void *cfg = calloc(1, m->cfg_size);  mk_method_defaults(m, cfg);
 *     st = mk_method_train(ctx, m, &c, cfg, &stats);
 */
#ifndef MK_METHOD_H
#define MK_METHOD_H

#include "core/mk_param.h"
#include "mk_stages.h"
#include "models/mk_translator.h"
#include "nn/mk_optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- config sections */

/* One config section: its name, doc and parameter rows (in the file that declares them). */
typedef struct mk_param_section {
    const char *name;
    const char *doc;
    const mk_param_row *rows;
    int nrows;
} mk_param_section;

/* A section a method reads, and where its struct lies in the method's config struct. */
typedef struct mk_method_use {
    const mk_param_section *section;
    size_t offset;
} mk_method_use;

/* The shared sections [data] (into mk_stage_common.data) and [model] (mk_stage_common.model). */
extern const mk_param_section mk_data_section, mk_model_section;
/* The training rows of [run] (checkpoint_every, log_every, into mk_stage_common). */
extern const mk_param_section mk_run_section;
/* The methods' own sections (read by other methods too: cmedl reads [translate], baseline
 * reads [cmedl]). */
extern const mk_param_section mk_translate_section, mk_cmedl_section, mk_baseline_section,
    mk_supervised_section, mk_coteach_section, mk_coteach_teacher_section, mk_coteach_tiny_section,
    mk_leuda_section, mk_leuda_source_section, mk_histo_cls_section, mk_histo_kd_section,
    mk_histo_synth_section, mk_histo_meta_section;

/* ---------------------------------------------------------------- the loop */

typedef struct mk_loop mk_loop;

/* The loss terms of one step: name, value (unweighted) and the weight it entered the total with.
 * terms[0] is the method's main loss (first/last loss of mk_train_stats). */
typedef struct mk_terms {
    int n;
    const char *name[MK_TERMS_MAX];
    double value[MK_TERMS_MAX];
    float weight[MK_TERMS_MAX];
} mk_terms;

/* Append a term (ignored past MK_TERMS_MAX). */
void mk_terms_add(mk_terms *t, const char *name, double value, float weight);

typedef enum mk_net_kind {
    MK_NET_UNET = 0,
    MK_NET_GEN,
    MK_NET_DISC,
    MK_NET_PARAMS,
    MK_NET_MODEL
} mk_net_kind;

/* Networks, by index in the loop (returned by the add functions; -1 on error, message in ctx).
 * name: the checkpoint group (unique). seed: its initialisation stream (mk__seed of the run
 * seed, so every stage draws the same initial weights for the same role). */
int mk_loop_add_unet(mk_loop *L, const char *name, const mk_unet_cfg *cfg, uint64_t seed);
int mk_loop_add_translator(mk_loop *L, const char *name, mk_translator_kind kind, int width,
                           uint64_t seed);
/* A PatchGAN discriminator (models/mk_translator.h) of in_ch-channel maps. */
int mk_loop_add_disc(mk_loop *L, const char *name, int in_ch, int width, uint64_t seed);
/* A bare parameter store as a network of the loop (e.g. CTKD's learnable temperature, or its
 * instance-wise MLP): checkpointed, resumed and optimised like the others. The loop takes
 * ownership of p (also on failure). Returns its index. */
int mk_loop_add_params(mk_loop *L, const char *name, mk_nn_params *p);
/* Any other model (a patch classifier, a generator: models/mk_classifier.h) as a network of the
 * loop: `params` is its parameter store (borrowed from the model), `model` the object the method
 * runs (mk_loop_model), freed by the loop with free_fn (also on failure). Returns its index. */
int mk_loop_add_model(mk_loop *L, const char *name, void *model, mk_nn_params *params,
                      void (*free_fn)(void *));
void *mk_loop_model(mk_loop *L, int net);
/* A named RNG checkpointed with the loop (draws that belong to no slice stream: a patch set's
 * batches and augmentation, a generator's noise). The pointer stays valid during the stage. */
mk_rng *mk_loop_add_rng(mk_loop *L, const char *name, uint64_t seed);
/* An Adam (or other) optimiser for net; sched (may be NULL: oc->lr throughout) sets its learning
 * rate before every step. */
mk_status mk_loop_add_optim(mk_loop *L, int net, const mk_optim_cfg *oc, const mk_sched *sched);
/* A moving-average copy of net (no optimiser): after every step the loop updates
 * ema = decay * ema + (1 - decay) * net (mk_nn_params_ema: weights and BN statistics). The copy
 * starts equal to net; `seed` only shapes its allocation. Returns the copy's index. */
int mk_loop_add_ema(mk_loop *L, const char *name, int net, float decay, uint64_t seed);
/* A data stream: the loop owns the slices (moved from *s, which is zeroed) and the stream's RNG
 * (seeded with rng_seed; saved in checkpoints under `name`). Returns its index. */
int mk_loop_add_stream(mk_loop *L, const char *name, mk_slices *s, uint64_t rng_seed);

/* A batch of `batch` random slices (random crop with crop_jitter) of a stream into x [B,1,h,w],
 * labels y (when the stream has labels) and the paired images x2 (may be NULL). */
void mk_loop_batch(mk_loop *L, int stream, int batch, mk_tensor *x, int32_t *y, mk_tensor *x2);
/* The same draws as mk_loop_batch, and the same crops of nplanes image sets aligned with the
 * stream's slices (planes[k]: n x ch x cw canvases, e.g. translations of its images, owned by
 * the caller) into out[k] [B,1,h,w]: the slices of every set keep their origin's index. */
void mk_loop_batch_aligned(mk_loop *L, int stream, int batch, mk_tensor *x, int32_t *y,
                           const float *const *planes, int nplanes, mk_tensor *out);
/* The stream's RNG (checkpointed with it): draws a method ties to the stream's batches, such as
 * their augmentation. */
mk_rng *mk_loop_stream_rng(mk_loop *L, int stream);

/* Data parallelism (mk_stage_dist; all of these are the plain operation in one process).
 * Batches from mk_loop_batch* hold this rank's share of the global batch (x->ne[0] local rows,
 * x->batch_of the global size). */
/* 1 when this process writes the job's files (rank 0, or the only process). */
int mk_loop_primary(const mk_loop *L);
/* 1 when global sample b of batch x is this process's, with its row in x. A per-sample draw
 * (augmentation) is made for every b by every rank and applied where this returns 1. */
int mk_loop_mine(const mk_loop *L, const mk_tensor *x, int64_t b, int64_t *row);
/* A whole batch that every rank drew (t: its B rows; a histology patch batch) narrowed to this
 * rank's share: t's data, rows and batch mark; *labels (one per row, may be NULL) advanced to
 * match. Returns the rows kept (B in one process). t must not own its data (a wrap or a copy of
 * the struct). */
int64_t mk_loop_take_share(mk_loop *L, mk_tensor *t, int32_t **labels);
/* Copy batch src (or its share) into dst, allocated for the whole batch (dst takes src's rows). */
void mk_loop_copy(mk_tensor *dst, const mk_tensor *src);
/* x += clamp(sigma * N(0, 1), +-clip) (mk_nn_noise_clamped) with the draws of the whole batch:
 * every rank draws every sample's noise from r and adds its own rows'. */
void mk_loop_noise(mk_loop *L, mk_rng *r, mk_tensor *x, float sigma, float clip);
/* Mean of a batch tensor over the whole batch (per-sample sums added in sample order). A
 * collective under data parallelism: every rank calls it. */
double mk_loop_mean(mk_loop *L, const mk_tensor *x);
/* The sum over the whole batch of one value per sample: rows[] holds this process's rows of batch
 * x (x->ne[0] values), added with the other ranks' in sample order. A collective, as above. */
double mk_loop_sum_rows(mk_loop *L, const mk_tensor *x, const double *rows);

mk_ctx *mk_loop_ctx(mk_loop *L);
const mk_stage_common *mk_loop_common(const mk_loop *L);
const char *mk_loop_stage(const mk_loop *L); /* the method's name */
mk_nn_graph *mk_loop_graph(mk_loop *L);
long long mk_loop_iter(const mk_loop *L);  /* the iteration being run (0-based) */
long long mk_loop_total(const mk_loop *L); /* iterations in all */
mk_nn_params *mk_loop_params(mk_loop *L, int net);
mk_unet *mk_loop_unet(mk_loop *L, int net);
mk_translator *mk_loop_translator(mk_loop *L, int net);
mk_slices *mk_loop_slices(mk_loop *L, int stream);
/* Step of net's optimiser (nets without one: no-op). */
void mk_loop_optim_step(mk_loop *L, int net);
/* Save nets (parameters only) as one multi-network file run_dir/models/<file> (the translator
 * format: groups by net name), or a single U-Net in the mk_model_save format. */
mk_status mk_loop_save_nets(mk_loop *L, const char *file, const char *kind, const int *nets, int n);
/* A U-Net for inference: its weights and its description (stages/mk_infer.h: the data
 * parameters of the run, the method's name, `role` ("student", "teacher") and the `modality`
 * of its inputs). */
mk_status mk_loop_save_unet(mk_loop *L, const char *file, int net, const char *modality,
                            const char *role);
/* Load nets' parameters from such a multi-network file (every group must be present). */
mk_status mk_loop_load_nets(mk_loop *L, const char *path, const char *kind, const int *nets, int n);

/* ---------------------------------------------------------------- methods */

/* What a method needs in the manifest (pre-run checks): rows of `modality` in split train, all
 * labelled or not; `column`: an extra column every such row must have (or NULL). */
typedef struct mk_data_need {
    const char *modality;
    int labelled;
    const char *column;
    const char *key;  /* the config key that asked for the column, or for unlabelled rows */
    int unlabelled;   /* 1: at least one train row of the modality must have no label (the
                         unlabelled share a semi-supervised method learns from) */
    int min_labelled; /* > 1: at least this many labelled train rows (`key` asks for them) */
} mk_data_need;
#define MK_NEEDS_MAX 4

/* A model a method produces for evaluation: its report name, its file under the run directory,
 * and what it segments: the evaluation split's rows of the modality named by the config key
 * `modality_key` (NULL: data.ct_modality), as they are, through a translator's G first
 * (translator file), or the image of a manifest column instead (normalised as MRI); `when`: a
 * boolean config key that must be true for it to be evaluated ("!key": false; NULL: always). Every
 * output is scored with the segmentation metrics of every structure. */
typedef struct mk_method_output {
    const char *name;
    const char *file;
    const char *translator;
    const char *column;
    const char *when;
    const char *modality_key;
} mk_method_output;

typedef struct mk_method {
    const char *name;
    const char *summary;
    const mk_method_use *uses; /* uses[0]: the method's own section (same name) */
    int nuses;
    size_t cfg_size;   /* the method's config struct (sections at their offsets) */
    size_t state_size; /* its training state (zeroed before init) */
    /* cross-key rules on the bound config; MK_ERR_CONFIG naming the key. c: the shared part. */
    mk_status (*check)(mk_ctx *ctx, const mk_stage_common *c, const void *cfg);
    /* data needs (pre-run checks); returns how many (<= MK_NEEDS_MAX) */
    int (*needs)(const mk_stage_common *c, const void *cfg, mk_data_need *out);
    long long (*iterations)(const void *cfg);
    int zero_skips; /* 1: 0 iterations means the stage does nothing (translate); 0: the
                       initial networks are still saved */
    mk_status (*init)(mk_loop *L, void *state, const void *cfg);
    mk_status (*start)(mk_loop *L, void *state, int resumed); /* optional */
    mk_status (*step)(mk_loop *L, void *state, mk_terms *terms);
    mk_status (*save)(mk_loop *L, void *state);
    void (*free)(void *state); /* optional: what init allocated besides the loop's */
    const mk_method_output *outputs;
    int noutputs;
    int classifier; /* 1: its outputs are patch classifiers (stages/mk_histo_stage.h), scored by
                       evaluate with the classification metrics on the slides of its split */
    /* optional: the network validated during training (run.validate) and the modality of its
     * validation cases (normalised as CT when it is data.ct_modality); -1: none. The best
     * validation score keeps a copy of it beside outputs[0].file (<stem>_best.h5). */
    int (*val_net)(mk_loop *L, void *state, const char **modality);
    /* optional: the stage that must come earlier in run.stages with this config (its models are
     * this method's inputs, e.g. coteach's large teacher), or NULL; the pre-run check says so
     * before anything runs */
    const char *(*after)(const void *cfg);
    /* 1: the method trains data-parallel under an MPI launcher (mk_stage_dist): its batches come
     * from mk_loop_batch*, every reduction over them runs in the graph (nn/mk_nn.h, mk_nn_share),
     * so P ranks give the bits of one process. 0: a run listing it refuses more than one rank. */
    int data_parallel;
    /* The config keys ("section.key", INT rows of its uses) of the batches it splits over the
     * ranks, NULL-terminated: under MPI the pre-run check refuses a run where one holds fewer
     * samples than there are ranks, before the run directory is created. */
    const char *split_batches[3];
} mk_method;

/* The registry (stages/methods.c): one row per method, in a fixed order (the enum). */
typedef enum mk_method_id {
    MK_METHOD_TRANSLATE = 0,
    MK_METHOD_CMEDL,
    MK_METHOD_BASELINE,
    MK_METHOD_SUPERVISED,
    MK_METHOD_COTEACH_TEACHER,
    MK_METHOD_COTEACH,
    MK_METHOD_COTEACH_TINY,
    MK_METHOD_LEUDA,
    MK_METHOD_LEUDA_SOURCE,
    MK_METHOD_HISTO_CLS,
    MK_METHOD_HISTO_KD,
    MK_METHOD_HISTO_SYNTH,
    MK_METHOD_HISTO_META,
    MK_METHOD_COUNT
} mk_method_id;
extern const mk_method *const MK_METHODS[MK_METHOD_COUNT];
const mk_method *mk_method_find(const char *name); /* NULL when unknown */

/* Defaults of every section the method reads into cfg (from the rows). */
void mk_method_defaults(const mk_method *m, void *cfg);
/* The method's check plus the shared rules (patch multiple of 2^(depth-1), CT window, classes). */
mk_status mk_method_check(mk_ctx *ctx, const mk_method *m, const mk_stage_common *c,
                          const void *cfg);
/* Train with the shared loop: check, init, resume or start, iterations, save, final checkpoint. */
mk_status mk_method_train(mk_ctx *ctx, const mk_method *m, const mk_stage_common *c,
                          const void *cfg, mk_train_stats *stats);

/* Shared pieces of the segmentation methods. */
/* The learning-rate schedule of mk_train_schedule `kind` (poly: power 0.9) from lr over total
 * iterations. */
mk_sched mk_method_sched(int kind, float lr, long long total);
/* One supervised step (the supervised methods share it): a batch of `batch` slices of `stream`
 * into x [batch, 1, h, w] and y, net's forward in training mode, mk_method_seg_loss (with
 * dice_background 0 the soft Dice averages the structures only), backward, net's optimiser step;
 * the loss is the term `term`. */
mk_status mk_method_supervised_step(mk_loop *L, int stream, int net, int batch, mk_tensor *x,
                                    int32_t *y, float dice_weight, int dice_background,
                                    const char *term, mk_terms *terms);
/* dice_weight x soft Dice + (1 - dice_weight) x cross-entropy (labels: class indices). */
mk_var *mk_method_seg_loss(mk_nn_graph *g, mk_var *logits, const int32_t *y, float dice_weight);

#ifdef __cplusplus
}
#endif
#endif
