/* The training forward and backward over a batch on the GPU: src/model/passes.c through the CUDA
 * executor, with host copies of what the activations hold. */
#include "internal.h"
#include "mmm/error.h"

static int forward(const mmm_model *m, const mmm_input *in, mmm_gpu_acts **pa, int keep) {
    if (!m->gpu) return mmm_fail(MMM_ERR_ARG, "gpu forward: the model is not on the GPU (mmm_gpu_attach)");
    model_exec x = exec_cuda(m, NULL, NULL);
    return passes_forward(&x, in, pa, keep);
}

int mmm_gpu_forward(const mmm_model *m, const mmm_input *in, mmm_gpu_acts **pa) { return forward(m, in, pa, 1); }
int mmm_gpu_forward_logits(const mmm_model *m, const mmm_input *in, mmm_gpu_acts **pa) {
    return forward(m, in, pa, 0);
}

void mmm_gpu_acts_free(mmm_gpu_acts *a) { mmm_acts_free(a); }

int mmm_gpu_backward(const mmm_model *m, mmm_gpu_acts *a, const float *dlogits, float *grads) {
    if (acts_exec(a)->m != m) return mmm_fail(MMM_ERR_ARG, "gpu backward: the activations are another model's");
    int B, T;
    acts_shape(a, &B, &T);
    gpu_buf d = {0};
    size_t bytes = (size_t)B * T * m->cfg.vocab * sizeof(float);
    int rc = gpu_buf_reserve(&d, bytes);
    if (!rc) rc = mmm_cuda_upload(d.p, dlogits, bytes);
    if (!rc) rc = passes_backward(a, d.p, grads);
    gpu_buf_free(&d);
    return rc;
}

static int download(const mmm_gpu_acts *a, float *out, const float *src, size_t n) {
    if (!src) return mmm_fail(MMM_ERR_ARG, "gpu activations: the forward kept no activations");
    return mmm_cuda_download(out, src, n * sizeof(float));
}

static size_t rows(const mmm_gpu_acts *a) {
    int B, T;
    acts_shape(a, &B, &T);
    return (size_t)B * T;
}

int mmm_gpu_acts_logits(const mmm_gpu_acts *a, float *out) {
    return download(a, out, acts_logits(a), rows(a) * acts_exec(a)->m->cfg.vocab);
}
int mmm_gpu_acts_input_embeds(const mmm_gpu_acts *a, float *out) {
    return download(a, out, acts_embeds(a), rows(a) * acts_exec(a)->m->cfg.hidden);
}
int mmm_gpu_acts_encoder_output(const mmm_gpu_acts *a, float *out) {
    return download(a, out, acts_llm_input(a), rows(a) * acts_exec(a)->m->cfg.hidden);
}
int mmm_gpu_acts_layer_output(const mmm_gpu_acts *a, int l, float *out) {
    int B, T;
    if (l < 0 || l >= acts_shape(a, &B, &T)) return mmm_fail(MMM_ERR_ARG, "gpu activations: no layer %d", l);
    const layer_buf *b = acts_layer((mmm_acts *)a, l);
    return download(a, out, b ? b->x_out : NULL, rows(a) * acts_exec(a)->m->cfg.hidden);
}
int mmm_gpu_acts_image_count(const mmm_gpu_acts *a) {
    int n;
    acts_images(a, &n);
    return n;
}
int mmm_gpu_acts_image_embeds(const mmm_gpu_acts *a, float *out) {
    int n;
    const float *img = acts_images(a, &n);
    return n ? download(a, out, img, (size_t)n * acts_exec(a)->m->cfg.hidden) : MMM_OK;
}
