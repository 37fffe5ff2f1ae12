/* One-row products for CPU decode: out = W·x (+ bias) with W in fp32, bf16 or int8.
 * A GEMM with one row wastes most of its time packing W; these stream each weight once, rows
 * split over the OpenMP threads (one static partition, so the result does not depend on the
 * thread count), or on the calling thread alone when W is too small to be worth a fork.
 * Accumulation is always fp32. Inference only: the fp32 one's gradient is mmm_linear_backward's
 * with N = 1; the bf16 and int8 weights are copies of fp32 ones and are not trained.
 * f32 → bf16 (round to nearest, ties to even) is mmm_f32_to_bf16_array (mmm/dtype.h). */
#ifndef MMM_OPS_GEMV_H
#define MMM_OPS_GEMV_H

#include <stdint.h>

/* int8 products: each weight row has one fp32 scale (w ≈ scale · q, q in [-127, 127]); the input
 * row is quantized in blocks of MMM_Q8_BLOCK values, each with its own scale, so that an outlier
 * in the activations costs only its own block precision (and the blocks' dot products are
 * integer ones: faster than widening the weights to fp32). Per-row weight scales rather than
 * per-block ones: about a quarter less time from memory at C = 2048, OC = 8192 (no second stream
 * of scales), for a step set by the row's largest weight, which costs accuracy where a few input
 * columns are much larger than the rest (bench/RESULTS.md, "One-row products"). */
#define MMM_Q8_BLOCK 32
static inline int mmm_q8_blocks(int C) { return (C + MMM_Q8_BLOCK - 1) / MMM_Q8_BLOCK; }

/* out(OC) = weight(OC, C) · x(C) + bias (PyTorch nn.Linear layout, one input row). */
void mmm_gemv_f32_forward(float *out,          /* (OC) */
                          const float *x,      /* (C) */
                          const float *weight, /* (OC, C) */
                          const float *bias,   /* (OC) or NULL */
                          int C, int OC);

/* out(N, OC) = x(N, C) · weightᵀ + bias for a few rows (a batch of decoding sequences), each
 * weight row read once for all of them; row n equals mmm_gemv_f32_forward of x's row n. */
void mmm_gemv_f32_few_forward(float *out,          /* (N, OC) */
                              const float *x,      /* (N, C) */
                              const float *weight, /* (OC, C) */
                              const float *bias,   /* (OC) or NULL */
                              int N, int C, int OC);

/* The same with bf16 weights (the top 16 bits of fp32 values). */
void mmm_gemv_bf16_forward(float *out,             /* (OC) */
                           const float *x,         /* (C) */
                           const uint16_t *weight, /* (OC, C) bf16 */
                           const float *bias,      /* (OC) or NULL */
                           int C, int OC);

/* Quantizes each of `rows` rows of C values in blocks of `block` consecutive values (the last
 * one shorter when block does not divide C): scale = max|values of the block| / 127,
 * q = round(value / scale), ties to even; an all-zero block gets scale 0 and q 0.
 * Weights: block = C (one scale per row). The input of a product: rows = 1, block = MMM_Q8_BLOCK.
 * block >= 1. */
void mmm_quantize_q8(int8_t *q,        /* (rows, C) */
                     float *scale,     /* (rows, ceil(C / block)) */
                     const float *src, /* (rows, C) */
                     int rows, int C, int block);

/* out(OC) = dequant(weight)(OC, C) · dequant(xq)(C) + bias, the input already quantized by
 * mmm_quantize_q8 (rows = 1, block = MMM_Q8_BLOCK), so that products sharing an input quantize
 * it once. Each block's dot product is exact in integers, then scaled and summed in fp32. */
void mmm_gemv_q8_forward(float *out,           /* (OC) */
                         const int8_t *xq,     /* (C) */
                         const float *xscale,  /* (mmm_q8_blocks(C)) */
                         const int8_t *weight, /* (OC, C) */
                         const float *wscale,  /* (OC) */
                         const float *bias,    /* (OC) or NULL */
                         int C, int OC);

/* Σ a[k]·b[k] over n values, as every fp32 product above computes each row's. */
float mmm_dot_f32(const float *a, const float *b, int n);

/* Rows [o0, o1) of the products above on the calling thread alone, for callers that share the
 * rows out themselves (the CPU decode step, src/model/decode_cpu.c). bias may be out itself: a
 * residual added in place. */
void mmm_gemv_f32_rows(float *out,          /* (OC) */
                       const float *x,      /* (C) */
                       const float *weight, /* (OC, C) */
                       const float *bias,   /* (OC) or NULL */
                       int C, int o0, int o1);
void mmm_gemv_bf16_rows(float *out,             /* (OC) */
                        const float *x,         /* (C) */
                        const uint16_t *weight, /* (OC, C) bf16 */
                        const float *bias,      /* (OC) or NULL */
                        int C, int o0, int o1);
void mmm_gemv_q8_rows(float *out,           /* (OC) */
                      const int8_t *xq,     /* (C) */
                      const float *xscale,  /* (mmm_q8_blocks(C)) */
                      const int8_t *weight, /* (OC, C) */
                      const float *wscale,  /* (OC) */
                      const float *bias,    /* (OC) or NULL */
                      int C, int o0, int o1);

#endif
