/* Depthwise causal conv1d over time (Mamba's short convolution), kernel size K, with bias:
 *   out[t, c] = bias[c] + Σ_{j<K} weight[c, j] · x[t − (K−1) + j, c]
 * so weight[c, K−1] is the current-token tap. x at negative times comes from `state`
 * (the K−1 inputs before the sequence, oldest first), or is zero when state is NULL.
 * This equals PyTorch's Conv1d(C, C, K, groups=C, padding=K−1)(x)[..., :T] with weight (C,1,K).
 * final_state may be the same buffer as state (decoding updates its conv state in place).
 * No gradient flows back through final_state: it only carries state between calls.
 * Backward conventions: see dense.h. */
#ifndef MMM_OPS_CONV1D_H
#define MMM_OPS_CONV1D_H

void mmm_conv1d_forward(float *out,          /* (B, T, C) */
                        float *final_state,  /* (B, K−1, C): the last K−1 inputs, or NULL */
                        const float *x,      /* (B, T, C) */
                        const float *state,  /* (B, K−1, C) or NULL */
                        const float *weight, /* (C, K) */
                        const float *bias,   /* (C) or NULL */
                        int B, int T, int C, int K);
void mmm_conv1d_backward(float *dx,           /* (B, T, C) or NULL, += */
                         float *dstate,       /* (B, K−1, C) or NULL, += */
                         float *dweight,      /* (C, K) or NULL, += */
                         float *dbias,        /* (C) or NULL, += */
                         const float *dout,   /* (B, T, C) */
                         const float *x,      /* (B, T, C) */
                         const float *state,  /* (B, K−1, C) or NULL */
                         const float *weight, /* (C, K) */
                         int B, int T, int C, int K);

#endif
