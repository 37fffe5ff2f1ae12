/* Rotary position embedding, "rotate half" convention (LLaMA/InternLM2, not interleaved):
 * with x = [x1, x2] split in halves of D/2, out = x·cos + [−x2, x1]·sin, where for pair i
 * the angle is pos·theta^(−2i/D). Backward conventions: see dense.h. */
#ifndef MMM_OPS_ROPE_H
#define MMM_OPS_ROPE_H

#include <stdint.h>

/* Precomputes cos/sin for positions `pos`; computed like Hugging Face (fp32 inv_freq). */
void mmm_rope_table(float *cos_t,        /* (T, D/2) */
                    float *sin_t,        /* (T, D/2) */
                    const int32_t *pos,  /* (T) */
                    float theta, int T, int D);
/* out may alias inp (in place). */
void mmm_rope_forward(float *out,         /* (T, H, D) */
                      const float *inp,   /* (T, H, D) */
                      const float *cos_t, /* (T, D/2) */
                      const float *sin_t, /* (T, D/2) */
                      int T, int H, int D);
void mmm_rope_backward(float *dinp,        /* (T, H, D), += */
                       const float *dout,  /* (T, H, D) */
                       const float *cos_t, /* (T, D/2) */
                       const float *sin_t, /* (T, D/2) */
                       int T, int H, int D);

#endif
