/* Losses. Each forward returns the scalar loss; each backward accumulates dloss·∂loss/∂input.
 * Rows whose target is negative (or whose mask is 0) are ignored; means are over counted rows
 * (a loss with no counted row is 0 and has zero gradient). */
#ifndef MMM_OPS_LOSS_H
#define MMM_OPS_LOSS_H

#include <stddef.h>
#include <stdint.h>

/* Mean softmax cross-entropy over rows with targets[i] >= 0. *count (if not NULL) receives the
 * number of counted rows. Returns MMM_ERR_ARG for a target >= V. */
int mmm_cross_entropy_forward(float *loss,           /* scalar out */
                              int *count,            /* scalar out, or NULL */
                              const float *logits,   /* (N, V) */
                              const int32_t *targets,/* (N), < 0 = ignored */
                              int N, int V);
void mmm_cross_entropy_backward(float *dlogits,        /* (N, V), += */
                                float dloss,
                                const float *logits,   /* (N, V) */
                                const int32_t *targets,/* (N) */
                                int N, int V);

/* Distillation loss KL(teacher ‖ student) of softmax(logits / tau), times tau² (Hinton's scaling,
 * which keeps gradient magnitudes comparable across temperatures), mean over rows with mask != 0.
 * Distillation holds the teacher fixed and passes dteacher = NULL; the teacher's gradient is there
 * for a loss that trains both sides. */
float mmm_kl_div_forward(const float *student,  /* (N, V) logits */
                         const float *teacher,  /* (N, V) logits */
                         const uint8_t *mask,   /* (N) or NULL = all rows */
                         float tau, int N, int V);
void mmm_kl_div_backward(float *dstudent,       /* (N, V), += */
                         float *dteacher,       /* (N, V) or NULL, += */
                         float dloss,
                         const float *student,  /* (N, V) logits */
                         const float *teacher,  /* (N, V) logits */
                         const uint8_t *mask,   /* (N) or NULL = all rows */
                         float tau, int N, int V);

/* mean((a − b)²) over n values. */
float mmm_mse_forward(const float *a, /* (n) */
                      const float *b, /* (n) */
                      size_t n);
void mmm_mse_backward(float *da,      /* (n) or NULL, += */
                      float *db,      /* (n) or NULL, += */
                      float dloss,
                      const float *a, /* (n) */
                      const float *b, /* (n) */
                      size_t n);

#endif
