/* Dense ops: linear layers and embedding lookups (fp32, CPU, GEMMs through OpenBLAS).
 * Convention for every op in include/mmm/ops/: `_forward` overwrites its outputs; `_backward`
 * ACCUMULATES (+=) into every gradient buffer it is given; a NULL gradient pointer skips it. */
#ifndef MMM_OPS_DENSE_H
#define MMM_OPS_DENSE_H

#include <stdint.h>

/* out = inp · weightᵀ + bias (PyTorch nn.Linear layout). */
void mmm_linear_forward(float *out,          /* (N, OC) */
                        const float *inp,    /* (N, C) */
                        const float *weight, /* (OC, C) */
                        const float *bias,   /* (OC) or NULL */
                        int N, int C, int OC);
void mmm_linear_backward(float *dinp,         /* (N, C) or NULL, += */
                         float *dweight,      /* (OC, C) or NULL, += */
                         float *dbias,        /* (OC) or NULL, += */
                         const float *dout,   /* (N, OC) */
                         const float *inp,    /* (N, C) */
                         const float *weight, /* (OC, C) */
                         int N, int C, int OC);

/* out[i] = table[ids[i]]. Returns MMM_ERR_ARG (naming the position) for an id outside [0, V). */
int mmm_embedding_forward(float *out,         /* (N, C) */
                          const int32_t *ids, /* (N) */
                          const float *table, /* (V, C) */
                          int N, int V, int C);
void mmm_embedding_backward(float *dtable,      /* (V, C), += */
                            const float *dout,  /* (N, C) */
                            const int32_t *ids, /* (N), already validated by the forward */
                            int N, int V, int C);

#endif
