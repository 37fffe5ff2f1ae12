/* Sampling the next token: greedy, or temperature with top-k and top-p filtering. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "mmm/forward.h"
#include "mmm/rng.h"

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

/* orders token indices by descending probability */
static int by_value_desc(const void *a, const void *b, void *vals) {
    const float *p = vals;
    float va = p[*(const int32_t *)a], vb = p[*(const int32_t *)b];
    return (va < vb) - (va > vb);
}

int32_t mmm_sample_token(const float *logits, int V, const mmm_sampler *cfg, uint64_t *rng_state,
                   float *scratch) {
    if (cfg->temperature <= 0) return argmax(logits, V);
    float *p = scratch;
    int32_t *idx = (int32_t *)(scratch + V);
    float mx = logits[argmax(logits, V)];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += p[i] = expf((logits[i] - mx) / cfg->temperature);
    for (int i = 0; i < V; i++) { p[i] = (float)(p[i] / sum); idx[i] = i; }
    int n = V;
    if ((cfg->top_k > 0 && cfg->top_k < V) || cfg->top_p < 1.0f) {
        qsort_r(idx, (size_t)V, sizeof *idx, by_value_desc, p);
        if (cfg->top_k > 0 && cfg->top_k < n) n = cfg->top_k;
        if (cfg->top_p < 1.0f) { /* smallest prefix whose mass reaches top_p */
            double cum = 0;
            for (int i = 0; i < n; i++) {
                cum += p[idx[i]];
                if (cum >= cfg->top_p) { n = i + 1; break; }
            }
        }
    }
    double mass = 0;
    for (int i = 0; i < n; i++) mass += p[idx[i]];
    mmm_rng rng = {*rng_state};
    double u = mmm_rng_uniform(&rng) * mass, cum = 0;
    *rng_state = rng.s;
    for (int i = 0; i < n; i++) {
        cum += p[idx[i]];
        if (u < cum) return idx[i];
    }
    return idx[n - 1];
}

int mmm_generate(const mmm_model *m, mmm_state *s, const float *first_logits, int max_new,
                 int32_t stop_id, const mmm_sampler *cfg, int32_t *out, int *n_out,
                 mmm_token_cb on_token, void *user) {
    int V = m->cfg.vocab;
    float *logits = malloc((size_t)V * 3 * sizeof *logits);
    if (!logits) return mmm_fail(MMM_ERR_NOMEM, "generate: out of memory");
    float *scratch = logits + V;
    memcpy(logits, first_logits, (size_t)V * sizeof *logits);
    uint64_t rng = mmm_rng_seed(cfg->seed).s;
    int rc = MMM_OK, n = 0;
    while (n < max_new) {
        int32_t id = mmm_sample_token(logits, V, cfg, &rng, scratch);
        out[n++] = id;
        if (on_token && on_token(id, user)) break;
        if (id == stop_id || n == max_new) break;
        if (mmm_state_length(s) >= mmm_state_capacity(s)) break; /* context full */
        if ((rc = mmm_decode(m, s, id, logits))) break;
    }
    *n_out = n;
    free(logits);
    return rc;
}
