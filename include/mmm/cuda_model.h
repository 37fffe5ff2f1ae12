/* Device ops that the model runtime (src/gpu, include/mmm/gpu.h) needs beyond the per-op
 * launchers of mmm/cuda.h: moving blocks of rows and columns, the vision front end's reshapes,
 * the L2 row norm between the stacks and the masked per-layer error of distillation.
 * fp32 only (the runtime computes in fp32); the conventions of mmm/cuda.h hold: device
 * pointers, launches on the current stream, `_backward` accumulates. */
#ifndef MMM_CUDA_MODEL_H
#define MMM_CUDA_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "mmm/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dst[r, 0:w) = src[r, 0:w) for r < rows: a block of columns between row-major matrices whose
 * rows are ld_dst and ld_src floats apart (splitting and merging fused projections). */
int mmm_cuda_copy_cols(float *dst,       /* (rows, ld_dst) */
                       int ld_dst,
                       const float *src, /* (rows, ld_src) */
                       int ld_src, int rows, int w);
/* out[i, :] = base[off[i], off[i] + C) (fp32 or bf16, widened) for every i with off[i] >= 0;
 * the other rows keep their values (embedding lookups across several tables, image rows into a
 * sequence). */
int mmm_cuda_gather_rows(float *out,          /* (N, C) */
                         const int64_t *off,  /* (N) element offsets into base, or −1 */
                         const void *base,    /* of dt: F32 or BF16 */
                         mmm_dtype dt, int N, int C);
/* out = x + row, the row added to each of the N rows; out may alias x. */
int mmm_cuda_add_rows(float *out,       /* (N, C) */
                      const float *x,   /* (N, C) */
                      const float *row, /* (C) */
                      int N, int C);
/* out += a ⊙ b */
int mmm_cuda_mul_acc(float *out, const float *a, const float *b, size_t n); /* (n) each */

/* Each p×p patch of each tile flattened in (channel, y, x) order, the patch embedding's layout. */
int mmm_cuda_patches(float *patches,      /* (n, S/p, S/p, 3·p·p) */
                     const float *pixels, /* (n, 3, S, S) */
                     int n, int S, int p);
/* As mmm_pixel_shuffle_forward / _backward (include/mmm/ops/vision.h). */
int mmm_cuda_pixel_shuffle_forward(float *out,       /* (Nimg, Gh/r, Gw/r, r·r·C) */
                                   const float *inp, /* (Nimg, Gh, Gw, C) */
                                   int Nimg, int Gh, int Gw, int C, int r);
int mmm_cuda_pixel_shuffle_backward(float *dinp,       /* (Nimg, Gh, Gw, C), += */
                                    const float *dout, /* (Nimg, Gh/r, Gw/r, r·r·C) */
                                    int Nimg, int Gh, int Gw, int C, int r);

/* F.normalize of each row, x / max(‖x‖, 1e-12); out may alias inp. */
int mmm_cuda_l2norm_rows_forward(float *out,       /* (N, C) */
                                 float *norms,     /* (N) max(‖x‖, 1e-12), for the backward */
                                 const float *inp, /* (N, C) */
                                 int N, int C);
int mmm_cuda_l2norm_rows_backward(float *dinp,        /* (N, C), += */
                                  const float *dout,  /* (N, C) */
                                  const float *out,   /* (N, C) the forward's output */
                                  const float *norms, /* (N) */
                                  int N, int C);

/* Distillation's masked squared error: for each row i with mask[i], d[i, :] = k·(a − b) and
 * sq[i] = Σ (a − b)²; rows without mask get d = 0 and sq = 0. */
int mmm_cuda_masked_diff(float *d,            /* (N, W) */
                         float *sq,           /* (N) */
                         const float *a,      /* (N, W) */
                         const float *b,      /* (N, W) */
                         const uint8_t *mask, /* (N) */
                         float k, int N, int W);

#ifdef __cplusplus
}
#endif

#endif
