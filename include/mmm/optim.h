/* Optimiser steps over flat fp32 buffers. */
#ifndef MMM_OPTIM_H
#define MMM_OPTIM_H

#include <stddef.h>

typedef struct {
    float lr;
    float beta1, beta2;
    float eps;
    float weight_decay; /* decoupled (AdamW), applied as param −= lr·wd·param */
} mmm_adamw_config;

/* One AdamW step on one tensor. `step` counts from 1 (bias correction). `decay` is the
 * per-tensor switch: 0 for biases, norms, dt_bias, A_log, … */
void mmm_adamw_step(float *param,       /* (n) */
                    const float *grad,  /* (n) */
                    float *m,           /* (n) first moment, in/out */
                    float *v,           /* (n) second moment, in/out */
                    size_t n,
                    const mmm_adamw_config *cfg, /* one struct */
                    int decay, long step);

/* Global L2 norm of a flat gradient buffer. */
float mmm_grad_norm(const float *grad, /* (n) */
                    size_t n);
/* Scales grad so its global norm is at most max_norm (max_norm <= 0: no clipping), by exactly
 * max_norm/norm (PyTorch adds 1e-6 to the norm). Returns the norm before clipping; a non-finite
 * norm leaves grad unchanged, so the caller can check it and skip the step. */
float mmm_clip_grad_norm(float *grad, /* (n), in/out */
                         size_t n, float max_norm);

#endif
