/* Running a model: the training forward/backward over a batch, and the inference state
 * (prefill, then one token at a time) with its per-layer caches. */
#ifndef MMM_FORWARD_H
#define MMM_FORWARD_H

#include <stdint.h>

#include "mmm/model.h"

/* One batch: B sequences of T tokens (pad on the right; causal attention keeps padding from
 * touching earlier positions), and the image tiles whose tokens replace the <IMG_CONTEXT>
 * positions in reading order across the batch. */
typedef struct {
    int B, T;
    const int32_t *ids;   /* (B, T) */
    const float *pixels;  /* (n_tiles, 3, S, S), normalised; NULL when n_tiles == 0 */
    int n_tiles;
} mmm_input;

/* Everything the forward saves for the backward, plus what parity checks and distillation read. */
typedef struct mmm_acts mmm_acts;

/* Forward over a batch, saving activations in *acts (allocated or grown as needed; reuse it
 * across calls and free it with mmm_acts_free). */
int mmm_forward(const mmm_model *m, const mmm_input *in, mmm_acts **acts);
/* Backward from dlogits (B, T, V); parameter gradients accumulate into grads, a buffer with
 * the parameter layout (n_floats). */
int mmm_backward(const mmm_model *m, mmm_acts *acts, const float *dlogits, float *grads);
void mmm_acts_free(mmm_acts *a);

/* Views into the saved activations (valid until the next forward with these acts). */
float *mmm_acts_logits(const mmm_acts *a);                     /* (B, T, V) */
const float *mmm_acts_input_embeds(const mmm_acts *a);         /* (B, T, C) */
const float *mmm_acts_image_embeds(const mmm_acts *a, int *n); /* (n, C) */
const float *mmm_acts_layer_output(const mmm_acts *a, int l);  /* (B, T, C) */
const float *mmm_acts_encoder_output(const mmm_acts *a);       /* (B, T, C) the LLM's input */
const float *mmm_acts_mixer_output(const mmm_acts *a, int l);  /* (B, T, H·D) before Wo */

/* ---- inference ---- */
typedef struct mmm_state mmm_state;

/* A generation state for sequences of up to max_tokens tokens. Attention layers get a KV
 * cache of max_tokens positions; the size is checked before anything is allocated. */
int mmm_state_new(mmm_state **out, const mmm_model *m, int max_tokens);
/* Host memory a CPU state of max_tokens would take: the caches and one prefill chunk's scratch. */
size_t mmm_state_estimate_bytes(const mmm_model *m, int max_tokens);
/* The longest sequence the CLI runs unless told otherwise (eval, forward: --max-tokens): the
 * model's max_position_embeddings times its rope_scaling factor, but at least
 * MMM_DEFAULT_MAX_TOKENS (HoVLE's own max_position_embeddings; mmm's small models say 2048 yet
 * run their long-context tests past it). It bounds the time of a CPU prefill as much as its
 * memory: one stray 1 MB turn is ~350K tokens. */
#define MMM_DEFAULT_MAX_TOKENS 32768
int mmm_default_max_tokens(const mmm_config *c);
void mmm_state_reset(mmm_state *s);
int mmm_state_copy(mmm_state *dst, const mmm_state *src);
void mmm_state_free(mmm_state *s);
int mmm_state_length(const mmm_state *s);      /* tokens processed so far */
/* For benchmarks: makes the state look as if `len` tokens had been processed, with random
 * cache contents (a decode step's cost depends on the length, not on the values). */
int mmm_state_fill_synthetic(mmm_state *s, int len, uint64_t seed);
int mmm_state_capacity(const mmm_state *s);    /* max_tokens */
size_t mmm_state_bytes(const mmm_state *s);    /* memory held by the caches */

/* Feeds T tokens (and the image tiles of their <IMG_CONTEXT> positions) after what the state
 * has seen. logits: (T, V) for every new position, or NULL; last: (V) for the last one, or NULL.
 * Long inputs are processed in chunks, so memory beyond the caches stays bounded. */
int mmm_prefill(const mmm_model *m, mmm_state *s, const int32_t *ids, int T, const float *pixels,
                int n_tiles, float *logits, float *last);
/* One token: logits (V) for the next position. */
int mmm_decode(const mmm_model *m, mmm_state *s, int32_t id, float *logits);

/* ---- sampling ---- */
typedef struct {
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off */
    uint64_t seed;
} mmm_sampler;

/* Picks a token from logits (V); scratch must hold 2·V floats. */
int32_t mmm_sample_token(const float *logits, int V, const mmm_sampler *cfg, uint64_t *rng_state,
                   float *scratch);

/* Generates up to max_new tokens after a prefilled state, stopping after stop_id (if >= 0).
 * on_token (may be NULL) sees each token as it comes; returns how many were generated in *n_out. */
typedef int (*mmm_token_cb)(int32_t id, void *user);
int mmm_generate(const mmm_model *m, mmm_state *s, const float *first_logits, int max_new,
                 int32_t stop_id, const mmm_sampler *cfg, int32_t *out, int *n_out,
                 mmm_token_cb on_token, void *user);

#endif
