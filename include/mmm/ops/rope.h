/* Rotary position embedding, "rotate half" convention (LLaMA/InternLM2, not interleaved):
 * with x = [x1, x2] split in halves of D/2, out = x·cos + [−x2, x1]·sin, where for pair i
 * the angle is pos·theta^(−2i/D). Backward conventions: see dense.h.
 * RoPE scaling (config.json rope_scaling, docs/model-format.md) as InternLM2's modeling code
 * does it: "linear" divides every position by the factor; "dynamic" (NTK) raises the base once a
 * forward call covers more than max_position_embeddings positions. */
#ifndef MMM_OPS_ROPE_H
#define MMM_OPS_ROPE_H

#include <stdint.h>

typedef enum {
    MMM_ROPE_PLAIN = 0,
    MMM_ROPE_LINEAR = 1,  /* angle = (pos / factor)·inv_freq */
    MMM_ROPE_DYNAMIC = 2, /* NTK: base' = theta·(factor·n/max_pos − (factor − 1))^(D/(D−2)) when n > max_pos */
} mmm_rope_kind;

typedef struct {
    float theta;        /* rope_theta */
    mmm_rope_kind kind; /* rope_scaling.type */
    double factor;      /* rope_scaling.factor (>= 1) */
    int max_pos;        /* max_position_embeddings */
} mmm_rope_scaling;

/* The base of the rotary frequencies for a forward call whose keys end at seq_len positions
 * (cached + new, as InternLM2's kv_seq_len): theta, or the dynamic NTK base past max_pos.
 * In float64, as Python computes it; the table rounds it to fp32 as PyTorch does. */
double mmm_rope_base(const mmm_rope_scaling *r, long seq_len, int D);

/* Precomputes cos/sin for positions `pos`; computed like Hugging Face (fp32 inv_freq). */
void mmm_rope_table(float *cos_t,        /* (T, D/2) */
                    float *sin_t,        /* (T, D/2) */
                    const int32_t *pos,  /* (T) */
                    float theta, int T, int D);
/* The same with scaling r, for a forward call whose keys end at seq_len positions. */
void mmm_rope_table_scaled(float *cos_t,       /* (T, D/2) */
                           float *sin_t,       /* (T, D/2) */
                           const int32_t *pos, /* (T) */
                           const mmm_rope_scaling *r, long seq_len, int T, int D);
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
