/* Training machinery shared by `mmm train` (teachers) and `mmm distill` (students): learning-rate
 * schedules, AdamW over a model's trainable tensors, crash-safe checkpoints with exact resume,
 * progress lines, a JSONL log and loss plots. What a step computes is a callback. */
#ifndef MMM_TRAIN_H
#define MMM_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "mmm/data.h"
#include "mmm/forward.h"
#include "mmm/model.h"
#include "mmm/optim.h"

typedef enum { MMM_SCHED_WSD, MMM_SCHED_COSINE, MMM_SCHED_CONSTANT } mmm_schedule;

typedef struct {
    mmm_schedule kind;
    float lr;            /* peak */
    float warmup;        /* fraction of the steps warming up linearly from 0 */
    float decay;         /* WSD: fraction of the steps decaying linearly to min_ratio·lr at the end */
    float min_ratio;
    long total_steps;
} mmm_lr_schedule;

/* Learning rate at step (0-based). */
float mmm_lr_at(const mmm_lr_schedule *s, long step);
int mmm_parse_schedule(const char *name, mmm_schedule *out);

/* The step callback: runs forward + loss + backward on the batch, ACCUMULATING parameter
 * gradients into grads; returns the batch's summed loss and the number of tokens it averages over
 * (the trainer divides), or an error. */
typedef int (*mmm_step_fn)(void *ctx, const mmm_model *m, const mmm_batch *b, float *grads,
                           double *loss_sum, long *loss_tokens);
/* The evaluation callback: fills a one-line JSON object of metrics (e.g. {"eval_loss": 0.3}). */
typedef int (*mmm_eval_fn)(void *ctx, const mmm_model *m, long step, char *json, size_t cap);

#define MMM_TRAIN_MAX_WORKERS 16

/* What defines a run: recorded in every checkpoint's trainer_state.json ("run") and compared when
 * the run resumes, so a rerun with other data, tokenizer, config, teacher or settings is refused
 * with what changed rather than continued as if nothing had. */
typedef struct {
    char key[32];   /* the JSON key */
    char *what;     /* for messages: "the data file runs/fmnist/train.jsonl" (malloc'd) */
    char value[80]; /* a content hash ("fnv1a64:...") or a setting's value */
} mmm_run_fact;

typedef struct {
    mmm_run_fact *facts;
    int n, cap;
} mmm_run_facts;

/* A file's contents (mmm_hash_file). */
int mmm_run_facts_file(mmm_run_facts *r, const char *key, const char *what, const char *path);
/* The files of dir whose names end in one of the suffixes, with their names, in name order (a
 * model directory's config.json and weights, whatever the sharding). At least one must exist. */
int mmm_run_facts_dir(mmm_run_facts *r, const char *key, const char *what, const char *dir,
                      const char *const *suffixes, int n_suffixes);
/* A setting's value (printf-style; a long text is kept as its hash). */
int mmm_run_facts_value(mmm_run_facts *r, const char *key, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void mmm_run_facts_free(mmm_run_facts *r);

typedef struct {
    const char *out_dir;       /* checkpoints, log and plot go here */
    const char *name;          /* shown in progress lines and the log ("train", "stage1", ...) */
    long steps;
    int accum;                 /* micro-batches per optimizer step */
    int workers;               /* micro-batches computed at once, each on one thread with its own
                                  step context (step_ctx[w]); 0 or 1: one at a time, with all threads.
                                  The result depends on it only by float rounding. */
    int batch_tokens;          /* token budget of one micro-batch */
    float clip;                /* global gradient-norm clip (0 = off) */
    mmm_lr_schedule sched;
    mmm_adamw_config adam;     /* lr is taken from sched */
    int eval_every, save_every, log_every;
    uint64_t seed;             /* data order */
    float hflip;               /* probability of mirroring a single-tile image (mmm_batch_hflip) */
    int keep_checkpoints;      /* how many to keep (>= 1) */
    int quiet;                 /* no progress lines */
    const mmm_run_facts *run;  /* what defines the run (NULL: only the seed and the model are checked) */
    int force_resume;          /* resume even when the checkpoint's run differs (said on stdout) */
    struct mmm_comm *comm;     /* the ranks that share this run (mmm/comm.h; NULL: this process alone).
                                  Each computes its block of every step's accum micro-batches (rank
                                  order), gradients and losses are summed over the ranks, every rank
                                  takes the same optimizer step, and rank 0 alone writes the log,
                                  the checkpoints and the progress lines. CPU only. */
} mmm_train_options;

typedef struct {
    long step;                 /* steps done */
    double last_loss;
    double seconds;
    int resumed;               /* 1 when the run continued from a checkpoint */
    int run_differs;           /* 1 when it was refused because the checkpoint's run differs */
} mmm_train_result;

/* The trainable part of one tensor: elements [begin, end) (whole rows of a fused matrix, such as
 * the g and dt rows of wvkqgdt); begin == end freezes it. */
typedef struct {
    size_t begin, end;
} mmm_train_range;
/* The elements [*b, *e) of a tensor of numel elements that r trains; *b == *e when none. */
static inline void mmm_train_range_clamp(mmm_train_range r, size_t numel, size_t *b, size_t *e) {
    *e = r.end < numel ? r.end : numel;
    *b = r.begin < *e ? r.begin : *e;
}

/* The teacher's step (an mmm_step_fn): cross-entropy on the answer tokens, on the GPU when the
 * model is attached there. One context per worker, zeroed to start, freed with mmm_ce_train_free. */
typedef struct {
    struct mmm_step_bufs *bufs; /* what the step keeps between calls, on the model's device */
} mmm_ce_train;
int mmm_ce_step(void *ctx, const mmm_model *m, const mmm_batch *b, float *grads, double *loss_sum,
                long *loss_tokens);
void mmm_ce_train_free(mmm_ce_train *c);

/* Trains the parts trainable[param index] names. Resumes from out_dir's latest checkpoint
 * when there is one (the model's weights, AdamW moments, the data position and the step all
 * continue exactly) and it belongs to this run: its name, seed and o->run agree, and its state
 * is in range for the data and the steps (otherwise an error saying what differs, with
 * result->run_differs set when o->run did; o->force_resume continues anyway). step_ctx: one
 * context per worker (o->workers, at least one). */
int mmm_train_run(mmm_model *m, const mmm_train_range *trainable, const mmm_dataset *data,
                  const mmm_train_options *o, mmm_step_fn step, void *const *step_ctx, mmm_eval_fn eval,
                  void *eval_ctx, mmm_train_result *result);

/* Whether out_dir's latest checkpoint was written by a run with these facts, for a finished
 * stage whose result is reused instead of resumed: MMM_OK when they agree or there is no
 * checkpoint; otherwise MMM_ERR_ARG saying what differs, with *differs = 1. */
int mmm_train_check_run(const char *out_dir, const mmm_run_facts *run, int *differs);

/* Plots columns of a JSONL log (x = "step", y = each key) into a PNG with gnuplot. */
int mmm_plot_log(const char *log_path, const char *png_path, const char *title, const char *const *keys, int n_keys);

/* Exact-match evaluation by greedy generation. */
typedef struct {
    char task[32];
    int n, correct;
    double loss_sum;
    long loss_tokens;
} mmm_task_score;

typedef struct {
    mmm_task_score tasks[16];
    int n_tasks;
    int n, correct;
    double loss_sum;
    long loss_tokens;
    long generated_tokens;
    double seconds;
    /* against a teacher, when one is given */
    int agree;             /* samples whose generated answers are identical */
    double kl_sum;         /* KL(teacher || student) summed over answer positions */
    long kl_tokens;
} mmm_eval_result;

/* Scores up to max_samples samples (0 = all), spread evenly over the file: answer-token
 * cross-entropy with teacher forcing, and exact match of the greedily generated answer (up to
 * max_new tokens, until <|im_end|>). With a teacher, also how often the two generate the same
 * answer and the mean KL(teacher || student) of their next-token distributions on the answers. */
int mmm_evaluate(const mmm_model *m, const mmm_tokenizer *tok, const mmm_dataset *d, int max_samples,
                 int max_new, const mmm_model *teacher, mmm_eval_result *r);

#endif
