/* The optimiser on the device: for a model on the GPU the trainer keeps gradients, AdamW moments
 * and the updated weights there, and copies them to the host only for evaluations, checkpoints
 * and the end of training (a step would otherwise move every gradient and weight across PCIe). */
#include <math.h>
#include <stdlib.h>

#include "internal.h"
#include "mmm/error.h"

struct mmm_gpu_optim {
    mmm_model *m;
    float *mom;   /* (2, n_floats): AdamW's first and second moments */
    size_t *seg;  /* (n_seg, 2) offset and length of the trained parts, adjacent ones merged */
    int n_seg;
    mmm_train_range *trainable; /* (n_params) as given to mmm_gpu_optim_new */
};

/* The trained parts as few segments as possible: the gradient zeroing and norm touch only these
 * (frozen gradients are computed but never read). */
static int build_segments(mmm_gpu_optim *o, const mmm_train_range *trainable) {
    const mmm_model *m = o->m;
    if (!(o->seg = malloc(2 * (size_t)(m->n_params + 1) * sizeof *o->seg)) ||
        !(o->trainable = malloc((size_t)(m->n_params + 1) * sizeof *o->trainable)))
        return mmm_fail(MMM_ERR_NOMEM, "gpu optimiser: out of memory");
    for (int i = 0; i < m->n_params; i++) {
        size_t b, e;
        o->trainable[i] = trainable[i];
        mmm_train_range_clamp(trainable[i], m->params[i].numel, &b, &e);
        m->gpu->frozen[i] = b == e;
        if (b == e) continue;
        size_t at = m->params[i].offset + b;
        if (o->n_seg && o->seg[2 * (o->n_seg - 1)] + o->seg[2 * (o->n_seg - 1) + 1] == at)
            o->seg[2 * (o->n_seg - 1) + 1] += e - b;
        else {
            o->seg[2 * o->n_seg] = at;
            o->seg[2 * o->n_seg + 1] = e - b;
            o->n_seg++;
        }
    }
    return MMM_OK;
}

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
    if (!rc && !m->gpu->frozen && !(m->gpu->frozen = malloc((size_t)m->n_params + 1))) rc = mmm_fail(MMM_ERR_NOMEM, "gpu optimiser: out of memory");
    if (!rc) rc = build_segments(o, trainable);
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
    free(o->seg);
    free(o->trainable);
    free(o);
}

int mmm_gpu_optim_zero(mmm_gpu_optim *o) {
    for (int k = 0; k < o->n_seg; k++)
        TRY(mmm_cuda_memset(o->m->gpu->grads + o->seg[2 * k], 0, o->seg[2 * k + 1] * sizeof(float)));
    return MMM_OK;
}

int mmm_gpu_optim_step(mmm_gpu_optim *o, const mmm_adamw_config *adam, long step, float scale, float clip,
                       float *gnorm) {
    mmm_model *m = o->m;
    mmm_gpu_model *g = m->gpu;
    float raw;
    TRY(mmm_cuda_grad_norm(g->grads, o->seg, o->n_seg, &raw));
    /* the norm of the scaled gradients; clipping and the scale go into AdamW's reading of them
     * (as src/optim/clip.c, which scales in place) */
    *gnorm = raw * scale;
    if (!isfinite(*gnorm)) return MMM_OK; /* the caller refuses the step */
    float factor = clip > 0 && *gnorm > clip ? (float)((double)scale * clip / *gnorm) : scale;
    for (int i = 0; i < m->n_params; i++) {
        const mmm_param *p = &m->params[i];
        size_t b, e;
        mmm_train_range_clamp(o->trainable[i], p->numel, &b, &e);
        if (b == e) continue;
        size_t at = p->offset + b, n = m->n_floats;
        TRY(mmm_cuda_adamw_step(g->data + at, g->data_bf16 ? g->data_bf16 + at : NULL, g->grads + at, o->mom + at,
                                o->mom + n + at, e - b, adam, (p->flags & MMM_PARAM_DECAY) != 0, step, factor));
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
