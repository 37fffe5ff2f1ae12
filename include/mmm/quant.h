/* CPU inference with the weight matrices in a lower precision: bf16, or int8 with one fp32 scale
 * per row (mmm/ops/gemv.h). The copies are made once from the fp32 weights, which stay for
 * prefill, training and the GPU; single-token decoding reads the copies (docs/design.md §9).
 * Vectors, norms, the SSM state and the KV cache stay fp32. */
#ifndef MMM_QUANT_H
#define MMM_QUANT_H

#include <stddef.h>

#include "mmm/model.h"

typedef enum { MMM_WEIGHTS_F32, MMM_WEIGHTS_BF16, MMM_WEIGHTS_INT8 } mmm_weight_type;

/* One weight matrix as decode reads it. */
typedef struct {
    mmm_weight_type type;
    const void *w;      /* (rows, cols): float, uint16_t (bf16) or int8_t */
    const float *scale; /* (rows) for int8, else NULL */
} mmm_qmatrix;

typedef struct {
    mmm_qmatrix w1, w2, w3, wqkv, wo, wvkqgdt, o_proj; /* as mmm_layer_weights; absent ones zeroed */
} mmm_qlayer;

typedef struct mmm_cpu_weights {
    mmm_weight_type type;
    void *mem;          /* every copy, in one allocation */
    size_t bytes;
    mmm_qlayer *layers; /* E + L */
    mmm_qmatrix lm_head;
} mmm_cpu_weights;

/* Makes (or with MMM_WEIGHTS_F32 drops) m's CPU decode copies in type t; replaces earlier ones.
 * The size is checked against the memory limit before anything is allocated. */
int mmm_model_use_cpu_weights(mmm_model *m, mmm_weight_type t);
void mmm_cpu_weights_free(mmm_model *m);
/* "f32", "bf16", "int8" */
const char *mmm_weight_type_name(mmm_weight_type t);
/* Bytes the copies of type t would take for m's configuration. */
size_t mmm_cpu_weights_bytes(const mmm_model *m, mmm_weight_type t);

#endif
