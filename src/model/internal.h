/* Pieces shared by the training forward/backward and the inference path. */
#ifndef MMM_MODEL_INTERNAL_H
#define MMM_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "exec.h"
#include "mmm/dtype.h"
#include "mmm/forward.h"
#include "mmm/model.h"

#define MMM_SSD_CHUNK 128  /* docs/design.md §3: chunk length of the SSD scan */
#define MMM_GNORM_EPS 1e-5f /* docs/design.md §3: the gated per-head RMSNorm */
/* returns the status of a failing call */
#define TRY(call) do { int rc_ = (call); if (rc_) return rc_; } while (0)
/* Buffers carved from one allocation start on 16-byte boundaries: the GPU runtime carves its
 * device buffers with these layouts, and its kernels load rows as float2/float4. */
#define MMM_ALIGN_FLOATS(n) (((size_t)(n) + 3) & ~(size_t)3)

/* Per-layer buffers (on the executor's device). In training each layer owns a set (kept for
 * the backward); in inference one set is reused by every layer for the current chunk. Fields a
 * layer's kind does not use stay NULL. */
struct layer_buf {
    float *x_in;       /* (N, C) layer input */
    float *h1, *rstd1; /* (N, C), (N): attention_norm(x_in) */
    /* attention */
    float *q;          /* (N, H, D) after RoPE */
    float *k, *v;      /* (N, Hkv, D) the new keys (after RoPE) and values */
    float *lse;        /* (B, H, T) */
    /* mamba2, Dc = 2·Hkv·D + H·D */
    float *vkq_pre;    /* (N, Dc) conv input */
    float *vkq_conv;   /* (N, Dc) conv output, before SiLU */
    float *xs, *Bs;    /* (N, Hkv, D) x = v and B = k after conv + SiLU */
    float *Cs;         /* (N, H, D) C = q after conv + SiLU */
    float *g;          /* (N, H·D) gate */
    float *dt_raw, *dt;/* (N, H) before / after softplus(· + dt_bias) */
    float *y;          /* (N, H·D) SSD output */
    float *rstd_g;     /* (N·H) gated norm statistics */
    float *A;          /* (H) −exp(A_log) */
    /* both */
    float *att;        /* (N, H·D) mixer output before Wo / o_proj */
    float *x_mid;      /* (N, C) x_in + Wo·att */
    float *h2, *rstd2; /* (N, C), (N): ffn_norm(x_mid) */
    float *a, *b, *s;  /* (N, F): W1·h2, W3·h2, silu(a)⊙b */
    float *x_out;      /* (N, C) */
};

/* A layer's memory across calls. Attention: new keys/values are written at row pos0 of k/v
 * (B, Tmax, Hkv, D) and queries attend to rows [0, Tk); in training k/v are the layer_buf's own
 * (pos0 = 0, Tk = Tmax = T). Mamba2: the conv state (the last K−1 conv inputs) and the SSM
 * state are read and updated in place; NULL means start from zero and keep nothing (training). */
struct layer_cache {
    void *k, *v;       /* of kv_dt */
    int pos0, Tk, Tmax;
    float *conv_state; /* (B, K−1, Dc) */
    float *ssm_state;  /* (B, H, D, D) */
    mmm_dtype kv_dt;   /* F32, or BF16 on CUDA (docs/design.md §7) */
    const seq_kv *seqs;/* a batch (B sequences, T = 1): each its own KV cache and position, the
                          rotary tables one row per sequence; NULL otherwise */
    int *sync;         /* a batch: (B) zeroed ints for a fused recurrent step (exec op mamba_step) */
};

/* Vision front end for n tiles; buffers (see vision.c) may be NULL-free scratch. */
typedef struct {
    float *patches; /* (n·gt², 3·p·p) */
    float *pe;      /* (n·gt², C) patch embeddings + position embeddings */
    float *pos;     /* (gt², C) the position grid used (resized when gt != g) */
    float *shuf;    /* (n·tpt, r²·C) */
    float *z0;      /* (n·tpt, C) proj0 output */
    float *z0g;     /* (n·tpt, C) GELU(z0) */
    float *img;     /* (n·tpt, C) image embeddings */
} vision_buf;

size_t vision_buf_floats(const mmm_config *c, int n_tiles);
void vision_buf_carve(vision_buf *v, float *base, const mmm_config *c, int n_tiles);
/* The image embeddings v->img of n tiles of pixels (n, 3, S, S). */
int vision_forward(const model_exec *x, const float *pixels, int n_tiles, vision_buf *v);
/* From dimg (n·tpt, C): gradients into g (+=). scratch: vision_buf_floats(c, n_tiles). */
int vision_backward(const model_exec *x, const mmm_weights *g, const float *dimg, int n_tiles, vision_buf *v,
                    float *scratch);

/* Checks ids against the embedding tables and, when tiles are given, that the <IMG_CONTEXT>
 * tokens are exactly as many as the tiles' image tokens. */
int check_input_ids(const mmm_config *c, const int32_t *ids, long n, int n_tiles, const char *what);
/* out[i] = embedding of ids[i] (host); with img != NULL, <IMG_CONTEXT> rows take img rows in
 * order from *img_cursor. */
void embed_tokens(const mmm_model *m, float *out, const int32_t *ids, long n, const float *img,
                  long *img_cursor);

/* One decoder layer: x_out = layer(x_in), keeping in a what the backward needs. scratch:
 * layer_scratch_floats(d, B·T). */
int layer_forward(const model_exec *x, int l, layer_buf *a, const float *x_in, int B, int T,
                  const layer_cache *cache, const float *cos_t, const float *sin_t, float *scratch);
int mamba_conv_channels(const mmm_layer_desc *d); /* Dc */
/* The mamba2 mixer alone: reads a->h1, writes a->att (and the intermediates the backward needs). */
int mamba_mixer(const model_exec *x, int l, layer_buf *a, int B, int T, const layer_cache *cache, float *scratch);
/* Backward of layer l: dx (N, C) holds d(x_out) on entry and d(x_in) on return; parameter
 * gradients accumulate into g. scratch: backward_scratch(d, N, C). */
int layer_backward(const model_exec *x, int l, layer_buf *a, mmm_layer_weights *g, float *dx, int B, int T,
                   const float *cos_t, const float *sin_t, float *scratch);
/* The mamba2 mixer's backward from datt: parameter gradients into g (+=), d(h1) into dh (+=). */
int mamba_backward(const model_exec *x, int l, layer_buf *a, mmm_layer_weights *g, float *dh,
                   const float *datt, int B, int T, float *scratch);
size_t backward_scratch(const mmm_layer_desc *d, long N, int C);
/* The training forward over a batch on dev's device into *pa (made, or reused for the same
 * device and model); keep = 0 keeps only what the logits need (no backward follows). */
int passes_forward(const model_exec *dev, const mmm_input *in, mmm_acts **pa, int keep);
/* Its backward from dlogits (B, T, V, on the device): parameter gradients added to grads (host,
 * n_floats), or left on a device that keeps them (grads == NULL). */
int passes_backward(mmm_acts *a, const float *dlogits, float *grads);
/* Views into the activations, on their device. */
const float *acts_logits(const mmm_acts *a);    /* (B, T, V) */
const float *acts_embeds(const mmm_acts *a);    /* (B, T, C) */
const float *acts_llm_input(const mmm_acts *a); /* (B, T, C), NULL after a logits-only forward */
const float *acts_images(const mmm_acts *a, int *n); /* (n, C) image rows, or NULL */
const model_exec *acts_exec(const mmm_acts *a);
int acts_shape(const mmm_acts *a, int *B, int *T); /* returns the number of layers */
/* The saved buffers of layer l, NULL after a logits-only forward. */
layer_buf *acts_layer(mmm_acts *a, int l);
size_t layer_scratch_floats(const mmm_layer_desc *d, long N);
/* Buffers of one layer for N = B·T tokens: size, and carving from *p (advanced). */
size_t layer_floats(const mmm_layer_desc *d, long N, int C, int B, int T);
void layer_carve(layer_buf *a, float **p, const mmm_layer_desc *d, long N, int C, int B, int T);

int max_head_dim(const mmm_config *c);
/* Binds w's fields to where[i] for each parameter i (mmm_weights_bind with a base is the case
 * where[i] = base + offset). */
int weights_bind_each(const mmm_model *m, float *const *where, mmm_weights *w);

#endif
