/* Sequences that decode together (docs/design.md §10): each sequence keeps its own generation
 * state for its prefill and its KV caches, and one decode step takes a token of each of n of them
 * through every layer at once — one GEMM per projection for the whole batch instead of n
 * matrix-vector products, each sequence's attention over its own cache at its own position. The
 * mamba2 layers' conv and SSM states of all sequences are rows of one array per layer, so the
 * recurrent step runs over them together. This is what `mmm serve` decodes with. */
#ifndef MMM_POOL_H
#define MMM_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "mmm/forward.h"
#include "mmm/model.h"

typedef struct mmm_pool mmm_pool;

/* Room for max_seqs sequences on the device m lives on (their recurrent rows are reserved here;
 * each sequence's KV caches when it is opened). */
int mmm_pool_new(mmm_pool **out, const mmm_model *m, int max_seqs);
void mmm_pool_free(mmm_pool *b);
/* A new empty sequence of up to max_tokens tokens; *seq is its handle (0 ≤ *seq < max_seqs). */
int mmm_pool_open(mmm_pool *b, int max_tokens, int *seq);
/* Ends a sequence: its state is freed and its handle can be opened again. */
void mmm_pool_close(mmm_pool *b, int seq);
/* mmm_prefill on the sequence's state (a prompt may come in several calls). */
int mmm_pool_prefill(mmm_pool *b, int seq, const int32_t *ids, int T, const float *pixels, int n_tiles,
                      float *last);
int mmm_pool_length(const mmm_pool *b, int seq); /* tokens the sequence holds */
/* For benchmarks: mmm_state_fill_synthetic on the sequence's state (len tokens of random caches
 * and recurrent states). */
int mmm_pool_fill_synthetic(mmm_pool *b, int seq, int len, uint64_t seed);
/* One token of each of n distinct sequences: ids (n) are fed, logits (n, V, host) are the next
 * positions'. Row i of the logits equals mmm_decode of sequence seqs[i] alone to rounding (the
 * batch's products sum in another order); a lone sequence takes its state's own step. A sequence
 * that decodes gives back its prefill's buffers. */
int mmm_pool_decode(mmm_pool *b, int n, const int *seqs /* (n) */, const int32_t *ids /* (n) */,
                     float *logits /* (n, V) */);

#endif
