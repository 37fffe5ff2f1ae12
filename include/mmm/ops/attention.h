/* Causal grouped-query attention, computed in tiles with an online softmax: memory is
 * O(tile²) per thread, never O(Tq·Tk), so a 100K-token prefill fits.
 * Query i (0-based within the Tq new queries) sits at absolute position Tk − Tq + i and sees
 * keys 0 .. Tk − Tq + i: Tq = Tk is an ordinary causal forward, Tq = 1 a decode step over a
 * KV cache, anything between a prefill continuing a cache (so Tq ≤ Tk). Query head h uses
 * kv head h / (H / Hkv), with Hkv dividing H. Scores are scaled by 1/sqrt(D).
 * Backward conventions: see dense.h. */
#ifndef MMM_OPS_ATTENTION_H
#define MMM_OPS_ATTENTION_H

void mmm_attention_forward(float *out,     /* (B, Tq, H, D) */
                           float *lse,     /* (B, H, Tq) log-sum-exp of the scaled scores, or NULL */
                           const float *q, /* (B, Tq, H, D) */
                           const float *k, /* (B, Tk, Hkv, D) */
                           const float *v, /* (B, Tk, Hkv, D) */
                           int B, int Tq, int Tk, int H, int Hkv, int D);
/* Recomputes the probabilities tile by tile from q, k and lse (flash-attention style). */
void mmm_attention_backward(float *dq,         /* (B, Tq, H, D) or NULL, += */
                            float *dk,         /* (B, Tk, Hkv, D) or NULL, += */
                            float *dv,         /* (B, Tk, Hkv, D) or NULL, += */
                            const float *dout, /* (B, Tq, H, D) */
                            const float *q,    /* (B, Tq, H, D) */
                            const float *k,    /* (B, Tk, Hkv, D) */
                            const float *v,    /* (B, Tk, Hkv, D) */
                            const float *out,  /* (B, Tq, H, D) from the forward */
                            const float *lse,  /* (B, H, Tq) from the forward */
                            int B, int Tq, int Tk, int H, int Hkv, int D);

/* A decode step's attention shared out by its caller: one query (H heads, the last of Tk
 * positions, so it sees every key) over keys [ka, kb) of the cache gives a split's unnormalised
 * output with its running max and sum per head; the splits are then combined per head, in split
 * order. The sum over a split is computed as mmm_attention_forward computes it. */
void mmm_attention_decode_split(float *part,    /* (H·D + 2·H): O (H, D), then m (H), l (H) */
                                const float *q, /* (H, D) */
                                const float *k, /* (Tk, Hkv, D) */
                                const float *v, /* (Tk, Hkv, D) */
                                int Tk, int H, int Hkv, int D, int ka, int kb);
/* out's heads [h0, h1) from nsplit splits over consecutive key ranges. */
void mmm_attention_decode_combine(float *out,         /* (H, D) */
                                  const float *parts, /* (nsplit, H·D + 2·H) */
                                  int nsplit, int H, int D, int h0, int h1);

#endif
