/* Mamba-2 state-space duality (SSD) scan, the core of the mmMamba mixer (docs/design.md §3).
 * H heads in G groups (H % G == 0); head h reads x and Bm from group g = h / (H/G) (repeat-kv)
 * and C from its own head. Per head, with state S (P × N):
 *     S_t = exp(dt_t·A_h) · S_{t−1} + dt_t · x_t ⊗ B_t        y_t = S_t · C_t
 * dt is already positive (softplus applied by the caller), A is negative (A = −exp(A_log)).
 * The chunked algorithm (chunk length L, any T, T need not be a multiple of L) costs O(T·L)
 * per head and O(P·N + L²) memory per thread; it is the form for training and prefill. The
 * recurrent step is the form for decoding. Backward conventions: see dense.h.
 * Forward and backward allocate their scratch, so they return a status: MMM_OK,
 * MMM_ERR_ARG for a bad shape, MMM_ERR_NOMEM. */
#ifndef MMM_OPS_SSD_H
#define MMM_OPS_SSD_H

/* final_state may be the same buffer as init_state (continuing a prefill in place). */
int mmm_ssd_forward(float *y,                 /* (B, T, H, P) */
                    float *final_state,       /* (B, H, P, N) or NULL */
                    const float *x,           /* (B, T, G, P) */
                    const float *Bm,          /* (B, T, G, N) */
                    const float *C,           /* (B, T, H, N) */
                    const float *dt,          /* (B, T, H) */
                    const float *A,           /* (H) */
                    const float *init_state,  /* (B, H, P, N) or NULL (= zeros) */
                    int B, int T, int H, int G, int P, int N, int chunk);
/* dfinal_state is the gradient flowing into final_state (NULL = zero). Recomputes the
 * chunk-boundary states of one head at a time, so it also holds ceil(T/chunk)·P·N floats
 * per thread. */
int mmm_ssd_backward(float *dx,                 /* (B, T, G, P) or NULL, += */
                     float *dBm,                /* (B, T, G, N) or NULL, += */
                     float *dC,                 /* (B, T, H, N) or NULL, += */
                     float *ddt,                /* (B, T, H) or NULL, += */
                     float *dA,                 /* (H) or NULL, += */
                     float *dinit_state,        /* (B, H, P, N) or NULL, += */
                     const float *dy,           /* (B, T, H, P) */
                     const float *dfinal_state, /* (B, H, P, N) or NULL */
                     const float *x,            /* (B, T, G, P) */
                     const float *Bm,           /* (B, T, G, N) */
                     const float *C,            /* (B, T, H, N) */
                     const float *dt,           /* (B, T, H) */
                     const float *A,            /* (H) */
                     const float *init_state,   /* (B, H, P, N) or NULL (= zeros) */
                     int B, int T, int H, int G, int P, int N, int chunk);

/* One decoding step: updates state in place and writes y. */
void mmm_ssd_step(float *y,           /* (B, H, P) */
                  float *state,       /* (B, H, P, N), in/out */
                  const float *x,     /* (B, G, P) */
                  const float *Bm,    /* (B, G, N) */
                  const float *C,     /* (B, H, N) */
                  const float *dt,    /* (B, H) */
                  const float *A,     /* (H) */
                  int B, int H, int G, int P, int N);

#endif
