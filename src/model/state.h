/* The generation state's layout, shared by state.c (one sequence) and pool.c (sequences that
 * decode together, each keeping its own state for its prefill and its KV caches). */
#ifndef MMM_MODEL_STATE_H
#define MMM_MODEL_STATE_H

#include "internal.h"

/* The buffers of one step over a number of rows (a prefill chunk's tokens, or one token of each
 * sequence of a batch): per mixer kind one layer_buf shared by its layers and sized for its
 * widest layer, the residual stream x, the final norm's output hf with its statistics, the L2
 * norms, the layers' scratch, and the rotary table rows of both stacks [stack][cos|sin]. */
typedef struct {
    layer_buf buf[2];
    float *x, *hf, *rstdf, *norms, *scratch, *rope[2][2];
} step_bufs;

/* Sizes (base NULL) or carves sb from base for `rows` rows; returns floats. */
size_t step_layout(step_bufs *sb, const mmm_config *c, int rows, float *base);
/* The B·T rows in sb->x (T tokens of B sequences) through every layer, layer l's memory in
 * caches[l]; sb->rope holds the rows' rotary tables. */
int step_layers(const model_exec *x, step_bufs *sb, int B, int T, const layer_cache *caches);
/* The final norm and lm_head of rows [first, first + rows) of sb->x: logits (rows, V) into out
 * (the device's). */
int step_head(const model_exec *x, step_bufs *sb, int first, int rows, float *out);
/* Logits of rows [first, first + rows) of sb->x into dst (host), staged through staging on a
 * device that is not the host. */
int step_logits(const model_exec *x, step_bufs *sb, exec_buf *staging, int first, int rows, float *dst);

struct mmm_state {
    const mmm_model *model;
    model_exec dev;          /* the device, with the state's SSD and attention workspaces */
    state_plan plan;
    int max_tokens, len, n_layers;
    exec_buf *mem;           /* per layer: attention k then v, mamba2 conv then ssm */
    void **k, **v;           /* attention layers: (max_tokens, Hkv, D) of plan.kv_dt */
    float **conv, **ssm;     /* mamba2 layers: (K−1, Dc) and (H, D, D), its own or a pool's rows */
    int rows_given;          /* conv and ssm are rows of a pool (state_new_at), not in mem */
    size_t cache_bytes;
    exec_buf arena;          /* one chunk's buffers below, reserved by the first prefill that needs
                                them: a state that only decodes holds its caches and a token's
                                vectors, not a 4096-token chunk's buffers */
    step_bufs sb;            /* carved from arena */
    layer_cache *caches;     /* (L) of the current chunk */
    int32_t *pos;            /* (chunk) host positions */
    exec_buf ssd_ws, attn_ws;
    exec_buf logits;         /* (rows, V) of the current chunk, where the device is not the host */
    exec_buf vis;            /* vision buffers and pixels of plan.vision_group tiles */
    exec_buf img;            /* (n_tiles·tpt, C) image embeddings of the current prefill */
    exec_buf dec;            /* the fused decode's single-token vectors and counters */
    decode_bufs db;
};

/* A state whose mamba2 layers keep their conv and SSM states at conv[l] (K−1, Dc) and ssm[l]
 * (H, D, D): memory the caller owns (a pool's rows), zeroed here. */
int state_new_at(mmm_state **out, const mmm_model *m, int max_tokens, float *const *conv, float *const *ssm);
/* Points s's mamba2 layers at other rows, whose contents the caller has moved there. */
void state_move_rows(mmm_state *s, float *const *conv, float *const *ssm);
/* Frees what only a prefill uses (the chunk's buffers, the SSD workspace, the image buffers):
 * a state that only decodes from here holds its caches and a token's buffers. The next prefill
 * reserves them again. */
void state_trim(mmm_state *s);
/* Bytes of a mamba2 layer's conv state and SSM state. */
size_t state_conv_bytes(const mmm_layer_desc *d);
size_t state_ssm_bytes(const mmm_layer_desc *d);

#endif
