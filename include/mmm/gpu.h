/* The model on an NVIDIA GPU (`--device cuda`): a device copy of a model's weights and the
 * entry points of the training forward and backward there. The model itself (layers, passes,
 * generation states, training steps) is written once in src/model and runs on the GPU through
 * the CUDA executor (docs/architecture.md).
 *
 * A model runs on the GPU once attached (mmm_gpu_attach): from then on mmm_state_new makes its
 * generation states on the GPU (so mmm_prefill, mmm_decode, mmm_generate and mmm_evaluate run
 * there), and the distillation steps of include/mmm/distill.h run there when the teacher and the
 * student are both attached. mmm_forward and mmm_backward always run on the CPU;
 * mmm_gpu_forward and mmm_gpu_backward run the same passes on the GPU. Everything is computed in fp32 and gives
 * the CPU's results up to rounding (unless inference is asked to use bf16 weights,
 * mmm_gpu_use_bf16_decode).
 *
 * In training (mmm_train_run) the optimiser runs on the device too (mmm_gpu_optim): gradients,
 * AdamW moments and weights stay there, and are copied to the host for evaluations, checkpoints
 * and at the end, so checkpoints, resumption, logs and progress lines are the CPU trainer's own.
 *
 * In a build without CUDA every function here fails with MMM_ERR_UNSUPPORTED ("built without
 * CUDA"); on a machine without a usable GPU, mmm_gpu_attach fails with the driver's reason. */
#ifndef MMM_GPU_H
#define MMM_GPU_H

#include <stddef.h>

#include "mmm/data.h"
#include "mmm/distill.h"
#include "mmm/forward.h"
#include "mmm/model.h"
#include "mmm/train.h"

/* Initialises the GPU (device 0) once per process: MMM_OK, or the reason there is none. */
int mmm_gpu_init(void);
/* Waits until the GPU has done all the work queued so far (for timing). */
int mmm_gpu_wait(void);
/* Bytes of device memory in use on the GPU (by every process, as the driver sees it). */
int mmm_gpu_mem_used(size_t *bytes);
/* Copies m's weights to the GPU (initialising it on first use) as m->gpu. Fails when a
 * layer has a shape the CUDA kernels do not handle (attention head_dim 32, 64 or 128, and 1, 2,
 * 4 or 8 query heads per kv head). Attaching an attached model does nothing. */
int mmm_gpu_attach(mmm_model *m);
/* bf16 weights for inference. An unattached model goes to the GPU as a bf16 store (its matrices
 * rounded on the host, no fp32 copy on the device); an attached one's fp32 weights become that
 * store (a model with a bf16 training mirror keeps both and decodes from the mirror). A bf16
 * store cannot train. Generation states then decode single tokens with the fused bf16 kernels
 * (half the weight traffic, a few launches per layer) and prefill in steps of up to 4096 tokens
 * on the tensor cores (bf16 GEMMs). States made
 * after this keep their KV caches in bf16 where every attention layer has head_dim 64 or 128
 * (half the memory; prefill attends on the flash kernel over them). The SSD, its state, norms and
 * everything else stay fp32. Logits move by about 1e-2. */
int mmm_gpu_use_bf16_decode(mmm_model *m);
/* Makes an attached model's training forward and backward (and prefill) multiply on the bf16
 * tensor cores: a bf16 mirror of the weights (refreshed by mmm_gpu_sync and the device
 * optimiser) and bf16 copies of each GEMM's activations, fp32 accumulation and fp32 everywhere
 * else (master weights, gradients, norms, SSD, softmax). Results move by about 1e-2. */
int mmm_gpu_use_bf16_train(mmm_model *m);
/* Copies the host weights over again after they changed: the elements trainable[i] names of
 * each parameter i (as mmm_train_run takes them), or every weight when trainable is NULL. */
int mmm_gpu_sync(mmm_model *m, const mmm_train_range *trainable);
/* Benchmarks: random device weights (uniform, standard deviation std, deterministic in seed)
 * for the matrices and embeddings of an attached model; the host copy is left as it is. */
int mmm_gpu_randomize(mmm_model *m, uint64_t seed, float std);
/* Frees the device copy (mmm_model_free does this too). */
void mmm_gpu_detach(mmm_model *m);

/* ---- training forward and backward over a batch (m attached) ---- */
/* The activations of include/mmm/forward.h's forward, held on the GPU. */
typedef struct mmm_acts mmm_gpu_acts;

int mmm_gpu_forward(const mmm_model *m, const mmm_input *in, mmm_gpu_acts **acts);
/* A forward whose only product is the logits (a teacher's in stage 3): the layers reuse two
 * layers' buffers instead of keeping every layer's activations, so no backward, layer or
 * encoder views follow it. */
int mmm_gpu_forward_logits(const mmm_model *m, const mmm_input *in, mmm_gpu_acts **acts);
/* dlogits (B, T, V) on the host; parameter gradients are ADDED to grads (host, n_floats). */
int mmm_gpu_backward(const mmm_model *m, mmm_gpu_acts *acts, const float *dlogits, float *grads);
void mmm_gpu_acts_free(mmm_gpu_acts *a);

/* Host copies of what the mmm_acts_* views hold after mmm_forward (include/mmm/forward.h). */
int mmm_gpu_acts_logits(const mmm_gpu_acts *a, float *out);          /* (B, T, V) */
int mmm_gpu_acts_input_embeds(const mmm_gpu_acts *a, float *out);    /* (B, T, C) */
int mmm_gpu_acts_encoder_output(const mmm_gpu_acts *a, float *out);  /* (B, T, C) */
int mmm_gpu_acts_layer_output(const mmm_gpu_acts *a, int l, float *out); /* (B, T, C) */
int mmm_gpu_acts_image_count(const mmm_gpu_acts *a);                 /* image rows n */
int mmm_gpu_acts_image_embeds(const mmm_gpu_acts *a, float *out);    /* (n, C) */

/* ---- the optimiser on the device ---- */
typedef struct mmm_gpu_optim mmm_gpu_optim;
/* Zero AdamW moments on the device for m (attached), which trains the parts trainable[param]
 * names. While it is in use the training steps below are called with grads == NULL: their
 * gradients then accumulate in the model's device buffer, and the backward skips the weight
 * gradients of frozen matrices. */
int mmm_gpu_optim_new(mmm_model *m, const mmm_train_range *trainable, mmm_gpu_optim **o);
void mmm_gpu_optim_free(mmm_gpu_optim *o);
/* Zeroes the device gradients of the trainable parts before a step's micro-batches. */
int mmm_gpu_optim_zero(mmm_gpu_optim *o);
/* Gradients *= scale, then clipped to a global norm of clip (<= 0: never), *gnorm = the scaled
 * norm before clipping (as mmm_clip_grad_norm, over the trainable parts); when it is finite, one
 * AdamW step (count from 1) on the trainable parts, as mmm_train_run does on the host. The device
 * gradients themselves are left unscaled. */
int mmm_gpu_optim_step(mmm_gpu_optim *o, const mmm_adamw_config *adam, long step, float scale, float clip,
                       float *gnorm);
/* The device weights into the host model's buffer; the moments into adam_m, adam_v (NULL: not). */
int mmm_gpu_optim_download(mmm_gpu_optim *o, float *adam_m, float *adam_v);
int mmm_gpu_optim_upload(mmm_gpu_optim *o, const float *adam_m, const float *adam_v);

#endif
