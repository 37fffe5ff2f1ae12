/* The optimiser on the device: for a model on the GPU the trainer keeps gradients, AdamW moments
 * and the updated weights there, and copies them to the host only for evaluations, checkpoints
 * and the end of training (a step would otherwise move every gradient and weight across PCIe). */
#include <math.h>
#include <stdlib.h>

#include "internal.h"
#include "mmm/error.h"

struct mmm_gpu_optim {
    mmm_model *m;
    float *mom;       /* (2, n_mom): AdamW's first and second moments of the trained parts, packed */
    size_t n_mom;
    size_t *mom_at;   /* (n_params) where a parameter's trained part starts in a moment array */
    size_t *seg;      /* (n_seg, 2) offset and length of the trained parts, adjacent ones merged */
    int n_seg;
    mmm_train_range *trainable; /* (n_params) as given to mmm_gpu_optim_new */
};

/* The trained parts as few segments as possible (the gradient zeroing and norm touch only these;
 * frozen gradients are computed but never read), and each part's place among the moments: a
 * stage-3 student trains 0.4 of its 2.6 B parameters, so moments for all would waste 17 GB. */
static int build_segments(mmm_gpu_optim *o, const mmm_train_range *trainable) {
    const mmm_model *m = o->m;
    size_t n = (size_t)m->n_params + 1;
    if (!(o->seg = malloc(2 * n * sizeof *o->seg)) || !(o->trainable = malloc(n * sizeof *o->trainable)) ||
        !(o->mom_at = malloc(n * sizeof *o->mom_at)))
        return mmm_fail(MMM_ERR_NOMEM, "gpu optimiser: out of memory");
    for (int i = 0; i < m->n_params; i++) {
        size_t b, e;
        o->trainable[i] = trainable[i];
        mmm_train_range_clamp(trainable[i], m->params[i].numel, &b, &e);
        m->gpu->frozen[i] = b == e;
        o->mom_at[i] = o->n_mom;
        o->n_mom += e - b;
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
    int rc = gpu_grads_reserve(m);
    if (!rc && !m->gpu->frozen && !(m->gpu->frozen = malloc((size_t)m->n_params + 1))) rc = mmm_fail(MMM_ERR_NOMEM, "gpu optimiser: out of memory");
    if (!rc) rc = build_segments(o, trainable);
    size_t bytes = 2 * (o->n_mom ? o->n_mom : 1) * sizeof(float);
    if (!rc) rc = mmm_cuda_malloc((void **)&o->mom, bytes);
    if (!rc) rc = mmm_cuda_memset(o->mom, 0, bytes);
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
    free(o->mom_at);
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
        size_t at = p->offset + b, k = o->mom_at[i];
        TRY(mmm_cuda_adamw_step(g->data + at, g->data_bf16 ? g->data_bf16 + at : NULL, g->grads + at, o->mom + k,
                                o->mom + o->n_mom + k, e - b, adam, (p->flags & MMM_PARAM_DECAY) != 0, step, factor));
    }
    return gpu_refresh_derived(m);
}

/* Copies the trained parts' moments from the packed device arrays into full-size host arrays
 * (down_*), or from host arrays to the device (up_*); NULL: not that one. The host's frozen parts
 * are left as they are (zeros, as the CPU's). */
static int copy_moments(mmm_gpu_optim *o, float *down_m, float *down_v, const float *up_m, const float *up_v) {
    const mmm_model *m = o->m;
    float *down[2] = {down_m, down_v};
    const float *up[2] = {up_m, up_v};
    for (int i = 0; i < m->n_params; i++) {
        size_t b, e;
        mmm_train_range_clamp(o->trainable[i], m->params[i].numel, &b, &e);
        if (b == e) continue;
        size_t at = m->params[i].offset + b, bytes = (e - b) * sizeof(float);
        for (int k = 0; k < 2; k++) {
            float *dev = o->mom + (size_t)k * o->n_mom + o->mom_at[i];
            if (down[k]) TRY(mmm_cuda_download(down[k] + at, dev, bytes));
            if (up[k]) TRY(mmm_cuda_upload(dev, up[k] + at, bytes));
        }
    }
    return MMM_OK;
}

int mmm_gpu_optim_download(mmm_gpu_optim *o, float *adam_m, float *adam_v) {
    TRY(mmm_cuda_download(o->m->data, o->m->gpu->data, o->m->n_floats * sizeof(float)));
    return copy_moments(o, adam_m, adam_v, NULL, NULL);
}

int mmm_gpu_optim_upload(mmm_gpu_optim *o, const float *adam_m, const float *adam_v) {
    return copy_moments(o, NULL, NULL, adam_m, adam_v);
}
