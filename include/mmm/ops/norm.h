/* Normalisations. Backward conventions: see dense.h (gradients accumulate). */
#ifndef MMM_OPS_NORM_H
#define MMM_OPS_NORM_H

/* out = inp / sqrt(mean(inp²) + eps) ⊙ weight, per row. rstd saves 1/sqrt(mean+eps) for backward. */
void mmm_rmsnorm_forward(float *out,          /* (N, C) */
                         float *rstd,         /* (N) or NULL */
                         const float *inp,    /* (N, C) */
                         const float *weight, /* (C) */
                         float eps, int N, int C);
void mmm_rmsnorm_backward(float *dinp,         /* (N, C) or NULL, += */
                          float *dweight,      /* (C) or NULL, += */
                          const float *dout,   /* (N, C) */
                          const float *inp,    /* (N, C) */
                          const float *weight, /* (C) */
                          const float *rstd,   /* (N) from the forward */
                          int N, int C);

/* Mamba-2 output gate, per head: out = RMSNorm(y over P; weight) ⊙ SiLU(gate). */
void mmm_gated_rmsnorm_forward(float *out,          /* (N, H*P) */
                               float *rstd,         /* (N*H) or NULL */
                               const float *y,      /* (N, H*P) */
                               const float *gate,   /* (N, H*P) */
                               const float *weight, /* (P) shared by all heads */
                               float eps, int N, int H, int P);
void mmm_gated_rmsnorm_backward(float *dy,           /* (N, H*P) or NULL, += */
                                float *dgate,        /* (N, H*P) or NULL, += */
                                float *dweight,      /* (P) or NULL, += */
                                const float *dout,   /* (N, H*P) */
                                const float *y,      /* (N, H*P) */
                                const float *gate,   /* (N, H*P) */
                                const float *weight, /* (P) */
                                const float *rstd,   /* (N*H) from the forward */
                                int N, int H, int P);

#endif
