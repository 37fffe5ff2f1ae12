/* Pieces of `mmm bench` shared by its decode (cmd_bench.c) and training-step (bench_step.c) parts. */
#ifndef MMM_CLI_BENCH_H
#define MMM_CLI_BENCH_H

#include <stdio.h>

#include "mmm/model.h"
#include "mmm/quant.h"

typedef struct {
    int hidden, emb_layers, llm_layers, heads, kv, ffn, vocab;
} bench_dims;

extern const char *const bench_kind_names[3]; /* "teacher", "hybrid", "linear" */
double bench_now(void);                      /* monotonic seconds */
double bench_median(double *t, int n);       /* sorts t (n > 0) */

/* The teacher: loaded from model_dir, or at dims d with random weights (random_init) or zeros. */
int bench_teacher(mmm_model **out, const char *model_dir, const bench_dims *d, int random_init);
/* A student of teacher: kind 1 hybrid (every 4th layer attention, head-interleaved), 2 linear. */
int bench_seed(mmm_model **out, const mmm_model *teacher, int kind);
/* The model of `kind` (0 teacher, 1 hybrid every 4th layer attention, 2 linear): the teacher
 * loaded from model_dir, or at dims d with random weights (random_init 1 or 2) or zeros (0);
 * students seeded from it (mimic init), or with random_init 2 and no model_dir drawn at random
 * themselves. */
int bench_build(mmm_model **out, const char *model_dir, const bench_dims *d, int kind, int random_init);

/* Times `steps` training steps (after two untimed) of T tokens on the GPU: the teacher's
 * cross-entropy step (kind 0) or a student's stage-3 distillation step against its teacher
 * (kinds 1, 2), optimiser included; prints a row and, with json, appends a JSON object.
 * bf16: GEMMs on the bf16 tensor cores (mmm_gpu_use_bf16_train). */
int bench_train_step(const char *model_dir, const bench_dims *d, int kind, int T, int steps, int bf16,
                     double peak_tflops, FILE *json, int first);

/* Aggregate decode throughput of sessions[s] sequences decoding together (mmm/pool.h) at each
 * context, as many as memory admits, with one prompt's prefill time (contexts up to
 * prefill_max); prints a table, and writes JSON and a plot when given paths. Returns the exit
 * status. */
int bench_sessions(const char *model_dir, const bench_dims *d, const char *kinds, const int *ctx, int n_ctx,
                   const int *sessions, int n_s, int steps, int prefill_max, int cuda, mmm_weight_type dt,
                   const char *title, const char *json_path, const char *plot_path);

#endif
