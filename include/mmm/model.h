/* The model: HoVLE-layout teacher, and (with mamba2 layers) the mmMamba student.
 * All parameters live in one flat fp32 buffer carved by a table of named tensors whose names
 * are the Hugging Face names, so loading and saving a checkpoint is a walk over the table.
 * Layers are described one by one (mmm_layer_desc) because a hybrid mixes kinds. */
#ifndef MMM_MODEL_H
#define MMM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "mmm/config.h"
#include "mmm/dtype.h"

/* What a tensor is, so training stages can pick trainable sets without parsing names. */
typedef enum {
    MMM_ROLE_PATCH_W, MMM_ROLE_PATCH_B, MMM_ROLE_POS_EMB, MMM_ROLE_TEXT_EMB, MMM_ROLE_SPECIAL_EMB,
    MMM_ROLE_PROJ0_W, MMM_ROLE_PROJ0_B, MMM_ROLE_PROJ2_W, MMM_ROLE_PROJ2_B,
    MMM_ROLE_FINAL_NORM, MMM_ROLE_LM_HEAD, MMM_ROLE_TOK_EMB, MMM_ROLE_CLASS_EMB,
    /* per layer */
    MMM_ROLE_ATTN_NORM, MMM_ROLE_FFN_NORM, MMM_ROLE_W1, MMM_ROLE_W2, MMM_ROLE_W3,
    MMM_ROLE_WQKV, MMM_ROLE_WO,                                  /* attention mixer */
    MMM_ROLE_WVKQGDT, MMM_ROLE_CONV_W, MMM_ROLE_CONV_B, MMM_ROLE_DT_BIAS, MMM_ROLE_A_LOG,
    MMM_ROLE_GNORM, MMM_ROLE_O_PROJ,                             /* mamba2 mixer */
} mmm_param_role;

#define MMM_MAMBA_CONV_K 2 /* the mmMamba short convolution's kernel size */

enum {
    MMM_PARAM_DECAY = 1u << 0,  /* AdamW weight decay applies (matrices, not norms/biases) */
    MMM_PARAM_UNUSED = 1u << 1, /* carried through load/save, never read by the forward */
    MMM_PARAM_OPTIONAL = 1u << 2, /* may be absent from a checkpoint (then zero); always saved */
};

typedef struct {
    char name[160];
    int ndim;
    int64_t shape[4];
    size_t offset, numel; /* in floats, into the flat buffer */
    unsigned flags;
    int layer;            /* global layer index, or -1 */
    mmm_param_role role;
} mmm_param;

typedef struct {
    float *attn_norm, *ffn_norm; /* (C) */
    float *w1, *w3;              /* (F, C) */
    float *w2;                   /* (C, F) */
    /* attention */
    float *wqkv;                 /* ((H + 2·Hkv)·D, C), rows grouped per kv head (docs/design.md §2) */
    float *wo;                   /* (C, H·D) */
    /* mamba2 (docs/design.md §3), with Dc = 2·Hkv·D + H·D conv channels [v, k, q] */
    float *wvkqgdt;              /* (Dc + H·D + H, C): rows [v | k | q | g | dt] */
    float *conv_w;               /* (Dc, 1, K) */
    float *conv_b;               /* (Dc) */
    float *dt_bias, *A_log;      /* (H), (H) */
    float *gnorm;                /* (D) */
    float *o_proj;               /* (C, H·D) */
} mmm_layer_weights;

/* Pointers into one flat buffer (the parameters, or a gradient buffer of the same layout). */
typedef struct {
    float *patch_w;   /* (C, 3, p, p) */
    float *patch_b;   /* (C) */
    float *pos_emb;   /* (1, 1 + g², C) */
    float *text_emb;  /* (llm_vocab, C) */
    float *special_emb; /* (n_special, C) or NULL */
    float *proj0_w, *proj0_b; /* (C, r²C), (C) */
    float *proj2_w, *proj2_b; /* (C, C), (C) */
    float *final_norm; /* (C) */
    float *lm_head;    /* (V, C) */
    float *tok_emb;    /* (V, C), unused */
    float *class_emb;  /* (1, 1, C), InternViT's class token, unused by HoVLE */
    mmm_layer_weights *layers; /* E + L */
} mmm_weights;

typedef struct mmm_model {
    mmm_config cfg;
    mmm_param *params;
    int n_params;
    size_t n_floats; /* of data: the tensors at their offsets, MMM_PARAM_ALIGN apart, zeros between */
    float *data;     /* the flat parameter buffer */
    mmm_weights w; /* bound to data */
    struct mmm_gpu_model *gpu; /* the device copy, or NULL (include/mmm/gpu.h) */
    struct mmm_cpu_weights *cpu; /* CPU decode's bf16 or int8 copies of the matrices, or NULL (mmm/quant.h) */
} mmm_model;

/* Tensors start at offsets that are multiples of this many floats. */
#define MMM_PARAM_ALIGN 8
/* The number of parameters (the tensors' elements, without the padding between them). */
size_t mmm_model_n_parameters(const mmm_model *m);

/* A model with every parameter zero (norm weights one) for `cfg` (copied). */
int mmm_model_create(mmm_model **out, const mmm_config *cfg);
/* Random initialisation for training from scratch: matrices and embeddings N(0, std²),
 * norms 1, biases 0. Deterministic in seed. */
void mmm_model_init_random(mmm_model *m, uint64_t seed, float std);
void mmm_model_free(mmm_model *m);

/* Loads config.json + safetensors (single file or shards) from `dir`. Missing (except
 * MMM_PARAM_OPTIONAL ones), unexpected and mis-shaped tensors are all listed in one error. */
int mmm_model_load(mmm_model **out, const char *dir);
/* Saves config.json + weights (F32, BF16 or F16) to `dir` (created if needed); shards of at most
 * max_shard_bytes when > 0. Every file is written atomically. config.json names the dtype
 * (torch_dtype) and, for a model with mamba2 layers, upstream mmMamba's model classes. */
int mmm_model_save(const mmm_model *m, const char *dir, mmm_dtype dtype, size_t max_shard_bytes);
/* The dtype (F32, BF16 or F16) holding most elements of the safetensors weights in `dir`. */
int mmm_model_weights_dtype(const char *dir, mmm_dtype *out);

/* Points w's fields into `base`, a buffer of n_floats with the parameter layout (gradients,
 * optimiser moments). w->layers is malloc'd: free it with mmm_weights_free. */
int mmm_weights_bind(const mmm_model *m, float *base, mmm_weights *w);
void mmm_weights_free(mmm_weights *w);

const mmm_param *mmm_model_param(const mmm_model *m, const char *name); /* or NULL */

#endif
