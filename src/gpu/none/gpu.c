/* The GPU runtime in a build without CUDA: every entry point fails with one clear message.
 * (The Makefile compiles this file instead of the files of src/gpu when CUDA is off.) */
#include "../../model/internal.h"
#include "mmm/error.h"
#include "mmm/gpu.h"

static int no_cuda(void) {
    return mmm_fail(MMM_ERR_UNSUPPORTED, "mmm was built without CUDA (rebuild where nvcc "
                    "and the CUDA toolkit are installed)");
}

int mmm_gpu_init(void) { return no_cuda(); }
model_exec exec_for(const mmm_model *m) { return exec_cpu(m); } /* no model is ever attached */
int mmm_gpu_mem_used(size_t *bytes) { return no_cuda(); }
int mmm_gpu_wait(void) { return no_cuda(); }
int mmm_gpu_attach(mmm_model *m) { return no_cuda(); }
int mmm_gpu_use_bf16_decode(mmm_model *m) { return no_cuda(); }
int mmm_gpu_use_bf16_train(mmm_model *m) { return no_cuda(); }
int mmm_gpu_sync(mmm_model *m, const mmm_train_range *t) { return no_cuda(); }
int mmm_gpu_randomize(mmm_model *m, uint64_t seed, float std) { return no_cuda(); }
void mmm_gpu_detach(mmm_model *m) {}

int mmm_gpu_forward(const mmm_model *m, const mmm_input *in, mmm_gpu_acts **a) { return no_cuda(); }
int mmm_gpu_forward_logits(const mmm_model *m, const mmm_input *in, mmm_gpu_acts **a) { return no_cuda(); }
int mmm_gpu_backward(const mmm_model *m, mmm_gpu_acts *a, const float *d, float *g) { return no_cuda(); }
void mmm_gpu_acts_free(mmm_gpu_acts *a) {}
int mmm_gpu_acts_logits(const mmm_gpu_acts *a, float *o) { return no_cuda(); }
int mmm_gpu_acts_input_embeds(const mmm_gpu_acts *a, float *o) { return no_cuda(); }
int mmm_gpu_acts_encoder_output(const mmm_gpu_acts *a, float *o) { return no_cuda(); }
int mmm_gpu_acts_layer_output(const mmm_gpu_acts *a, int l, float *o) { return no_cuda(); }
int mmm_gpu_acts_image_count(const mmm_gpu_acts *a) { return 0; }
int mmm_gpu_acts_image_embeds(const mmm_gpu_acts *a, float *o) { return no_cuda(); }

int mmm_gpu_optim_new(mmm_model *m, const mmm_train_range *t, mmm_gpu_optim **o) { return no_cuda(); }
void mmm_gpu_optim_free(mmm_gpu_optim *o) {}
int mmm_gpu_optim_zero(mmm_gpu_optim *o) { return no_cuda(); }
int mmm_gpu_optim_step(mmm_gpu_optim *o, const mmm_adamw_config *a, long s, float sc,
                       float c, float *n) { return no_cuda(); }
int mmm_gpu_optim_download(mmm_gpu_optim *o, float *m, float *v) { return no_cuda(); }
int mmm_gpu_optim_upload(mmm_gpu_optim *o, const float *m, const float *v) { return no_cuda(); }
