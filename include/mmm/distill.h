/* The three distillation stages (docs/design.md §4): what each trains, and the step callbacks the trainer
 * runs. Stages 1 and 2 match every student mixer's output to the teacher attention's (both
 * before Wo), each layer fed the teacher's hidden states; stage 3 matches next-token
 * distributions end to end. */
#ifndef MMM_DISTILL_H
#define MMM_DISTILL_H

#include <stdint.h>

#include "mmm/data.h"
#include "mmm/forward.h"
#include "mmm/model.h"
#include "mmm/train.h"

/* Fills trainable[param] for a stage: 1 = the new mixer parameters (conv, Wdt and Wg rows,
 * dt_bias, A_log, gate norm); 2 = those plus the Wq, Wk, Wv rows; 3 = every mixer parameter but
 * o_proj, with dt_bias and A_log only when train_dt_a is set (the paper freezes them).
 * Everything else (embeddings, norms, MLPs, kept attention layers, Wo) stays frozen. */
void mmm_stage_trainable(const mmm_model *student, int stage, int train_dt_a, mmm_train_range *trainable);

#define MMM_MAX_LAYERS_TABLE 256

/* Stages 1–2: the per-layer MSE step. scale multiplies the mean over layers (paper: 1000).
 * Both steps run on the GPU when the student and the teacher are attached (include/mmm/gpu.h);
 * the teacher must be on the student's device. */
typedef struct {
    const mmm_model *teacher;
    float scale;
    struct mmm_step_bufs *bufs; /* what the step keeps between calls, on the student's device */
    double layer_sq[MMM_MAX_LAYERS_TABLE]; /* running per-layer sums of squared error ... */
    double layer_n[MMM_MAX_LAYERS_TABLE];  /* ... and element counts, for the table */
} mmm_mixer_distill;

int mmm_mixer_distill_step(void *ctx, const mmm_model *student, const mmm_batch *b, float *grads,
                           double *loss_sum, long *loss_tokens);
void mmm_mixer_distill_free(mmm_mixer_distill *d);

/* Stage 3: KL(teacher ‖ student) at temperature tau over every real (non-padding) position, plus
 * ce_weight × cross-entropy on the answer tokens. */
typedef struct {
    const mmm_model *teacher;
    float tau, ce_weight;
    struct mmm_step_bufs *bufs; /* what the step keeps between calls, on the student's device */
} mmm_kl_distill;

int mmm_kl_distill_step(void *ctx, const mmm_model *student, const mmm_batch *b, float *grads,
                        double *loss_sum, long *loss_tokens);
void mmm_kl_distill_free(mmm_kl_distill *d);

/* Per-layer MSE (before the ×scale) of every mamba2 layer of `student` against the teacher on
 * up to max_samples samples of d: the table that shows which layers resist linearisation. */
int mmm_layer_losses(const mmm_model *teacher, const mmm_model *student, const mmm_dataset *d,
                     int max_samples, int batch_tokens, double *losses);

/* A hybrid for stage 3: the linear student's mixers everywhere except the layers in keep, which
 * take the teacher's attention. */
int mmm_student_with_attention(mmm_model **out, const mmm_model *linear, const mmm_model *teacher,
                               const uint8_t *keep);

#endif
