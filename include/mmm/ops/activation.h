/* Element-wise activations over n values. Backward conventions: see dense.h. */
#ifndef MMM_OPS_ACTIVATION_H
#define MMM_OPS_ACTIVATION_H

#include <stddef.h>

/* silu(x) = x·sigmoid(x) */
void mmm_silu_forward(float *out,       /* (n) */
                      const float *inp, /* (n) */
                      size_t n);
void mmm_silu_backward(float *dinp,       /* (n), += */
                       const float *dout, /* (n) */
                       const float *inp,  /* (n) */
                       size_t n);

/* exact GELU: x·Φ(x) with the erf form (PyTorch's default, approximate='none') */
void mmm_gelu_forward(float *out,       /* (n) */
                      const float *inp, /* (n) */
                      size_t n);
void mmm_gelu_backward(float *dinp,       /* (n), += */
                       const float *dout, /* (n) */
                       const float *inp,  /* (n) */
                       size_t n);

/* softplus(x) = log(1 + eˣ), returning x itself above 20 as PyTorch does */
void mmm_softplus_forward(float *out,       /* (n) */
                          const float *inp, /* (n) */
                          size_t n);
void mmm_softplus_backward(float *dinp,       /* (n), += */
                           const float *dout, /* (n) */
                           const float *inp,  /* (n) */
                           size_t n);

/* SwiGLU gate of the LLaMA FFN: out = silu(a) ⊙ b, where a = W1·h and b = W3·h */
void mmm_swiglu_forward(float *out,     /* (n) */
                        const float *a, /* (n) */
                        const float *b, /* (n) */
                        size_t n);
void mmm_swiglu_backward(float *da,         /* (n) or NULL, += */
                         float *db,         /* (n) or NULL, += */
                         const float *dout, /* (n) */
                         const float *a,    /* (n) */
                         const float *b,    /* (n) */
                         size_t n);

#endif
