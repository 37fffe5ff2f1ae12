/* Seeding a Mamba-2 student from a teacher's attention weights (docs/design.md §4), and choosing which
 * layers a hybrid keeps as attention. */
#ifndef MMM_SEED_H
#define MMM_SEED_H

#include <stdint.h>

#include "mmm/model.h"

typedef enum {
    MMM_INIT_MIMIC,   /* Wq, Wk, Wv, Wo inherited; conv passes the current token; the paper's init, docs/design.md §4 */
    MMM_INIT_INHERIT, /* Wq, Wk, Wv, Wo inherited; Wdt, conv, A at PyTorch's default init, dt_bias 0 (upstream's) */
    MMM_INIT_SCRATCH, /* as inherit, with Wq, Wk, Wv at PyTorch's default init too; Wo still the teacher's */
} mmm_seed_init;

/* Builds the student: layers with keep_attention[l] set stay attention (copied), every other
 * layer gets the mmMamba mixer initialised by `init`. keep_attention may be NULL (all mamba2).
 * Deterministic in seed. */
int mmm_seed_student(mmm_model **out, const mmm_model *teacher, const uint8_t *keep_attention,
                     mmm_seed_init init, uint64_t seed);

/* Initialises the new (non-inherited) parameters of mamba2 layer l as `init` says. */
void mmm_seed_mamba_layer(mmm_model *m, int l, mmm_seed_init init, uint64_t seed);

/* Hybrid placements of K attention layers among n (the paper's ablation): */
typedef enum {
    MMM_PLACE_HEAD_INTERLEAVED, /* the first layer of every n/K: 0, n/K, 2n/K, ... (paper's best) */
    MMM_PLACE_TAIL_INTERLEAVED, /* the last layer of every n/K */
    MMM_PLACE_HEAD_STACKED,     /* 0 .. K−1 */
    MMM_PLACE_TAIL_STACKED,     /* n−K .. n−1 */
} mmm_placement;

/* Sets keep[l] for the chosen layers (clears the others). */
int mmm_hybrid_layers(uint8_t *keep, int n, int K, mmm_placement where);
/* Parses "every:4" (layers 0, 4, 8, ...: the first of every 4), "head-interleaved:8",
 * "tail-stacked:8", ... (8 = attention layers) or a list "0,4,8" into keep[0..n). */
int mmm_parse_layer_choice(uint8_t *keep, int n, const char *spec);

#endif
