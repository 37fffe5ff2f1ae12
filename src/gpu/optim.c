/* The optimiser on the device: for a model on the GPU the trainer keeps gradients, AdamW moments
 * and the updated weights there, and copies them to the host only for evaluations, checkpoints
 * and the end of training (a step would otherwise move every gradient and weight across PCIe). */
#include <math.h>
#include <stdlib.h>

#include "internal.h"
#include "mmm/error.h"

struct mmm_gpu_optim {
    mmm_model *m;
    float *mom; /* (2, n_floats): AdamW's first and second moments */
};

int mmm_gpu_optim_new(mmm_model *m, const mmm_train_range *trainable, mmm_gpu_optim **out) {
    *out = NULL;
    if (!m->gpu) return mmm_fail(MMM_ERR_ARG, "gpu optimiser: the model is not on the GPU");
    mmm_gpu_optim *o = calloc(1, sizeof *o);
    if (!o) return mmm_fail(MMM_ERR_NOMEM, "gpu optimiser: out of memory");
    o->m = m;
    size_t bytes = 2 * m->n_floats * sizeof(float);
    int rc = mmm_cuda_malloc((void **)&o->mom, bytes);
    if (!rc) rc = mmm_cuda_memset(o->mom, 0, bytes);
    if (!rc) rc = gpu_grads_reserve(m);
    if (!rc && !m->gpu->frozen && !(m->gpu->frozen = malloc((size_t)m->n_params))) rc = mmm_fail(MMM_ERR_NOMEM, "gpu optimiser: out of memory");
    for (int i = 0; i < m->n_params && !rc; i++) {
        size_t b, e;
        mmm_train_range_clamp(trainable[i], m->params[i].numel, &b, &e);
        m->gpu->frozen[i] = b == e;
    }
    if (rc) {
        mmm_gpu_optim_free(o);
        return rc;
    }
    *out = o;
    return MMM_OK;
}

void mmm_gpu_optim_free(mmm_gpu_optim *o) {
    if (!o) return;
    free(o->m->gpu->frozen); /* backward passes compute every gradient again */
    o->m->gpu->frozen = NULL;
    mmm_cuda_free(o->mom);
    free(o);
}

int mmm_gpu_optim_zero(mmm_gpu_optim *o) {
    return mmm_cuda_memset(o->m->gpu->grads, 0, o->m->n_floats * sizeof(float));
}

int mmm_gpu_optim_step(mmm_gpu_optim *o, const mmm_train_range *trainable, const mmm_adamw_config *adam,
                       long step, float scale, float clip, float *gnorm) {
    mmm_model *m = o->m;
    mmm_gpu_model *g = m->gpu;
    size_t n = m->n_floats;
    float raw;
    /* frozen parts take no part in the norm (as on the CPU) */
    for (int i = 0; i < m->n_params; i++) {
        const mmm_param *p = &m->params[i];
        size_t b, e;
        mmm_train_range_clamp(trainable[i], p->numel, &b, &e);
        if (b > 0) TRY(mmm_cuda_memset(g->grads + p->offset, 0, b * sizeof(float)));
        if (e < p->numel) TRY(mmm_cuda_memset(g->grads + p->offset + e, 0, (p->numel - e) * sizeof(float)));
    }
    TRY(mmm_cuda_grad_norm(g->grads, n, &raw));
    /* the norm of the scaled gradients, and clipping folded into the same pass (as src/optim/clip.c) */
    *gnorm = raw * scale;
    if (!isfinite(*gnorm)) return MMM_OK; /* the caller refuses the step */
    float factor = clip > 0 && *gnorm > clip ? (float)((double)scale * clip / *gnorm) : scale;
    TRY(mmm_cuda_scale(g->grads, n, factor));
    for (int i = 0; i < m->n_params; i++) {
        const mmm_param *p = &m->params[i];
        size_t b, e;
        mmm_train_range_clamp(trainable[i], p->numel, &b, &e);
        if (b == e) continue;
        size_t at = p->offset + b;
        TRY(mmm_cuda_adamw_step(g->data + at, g->data_bf16 ? g->data_bf16 + at : NULL, g->grads + at, o->mom + at,
                                o->mom + n + at, e - b, adam, (p->flags & MMM_PARAM_DECAY) != 0, step));
    }
    return gpu_refresh_derived(m);
}

int mmm_gpu_optim_download(mmm_gpu_optim *o, float *adam_m, float *adam_v) {
    size_t n = o->m->n_floats, bytes = n * sizeof(float);
    TRY(mmm_cuda_download(o->m->data, o->m->gpu->data, bytes));
    if (adam_m) TRY(mmm_cuda_download(adam_m, o->mom, bytes));
    if (adam_v) TRY(mmm_cuda_download(adam_v, o->mom + n, bytes));
    return MMM_OK;
}

int mmm_gpu_optim_upload(mmm_gpu_optim *o, const float *adam_m, const float *adam_v) {
    size_t n = o->m->n_floats, bytes = n * sizeof(float);
    TRY(mmm_cuda_upload(o->mom, adam_m, bytes));
    return mmm_cuda_upload(o->mom + n, adam_v, bytes);
}
