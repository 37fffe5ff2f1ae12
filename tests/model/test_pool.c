/* Sequences that decode together (mmm/pool.h): every row of a batch step equals the sequence
 * decoded alone (to rounding: the batch's GEMMs sum in another order than one token's GEMV), for
 * the teacher, the hybrid and the linear student, with prompts of different lengths, subsets that
 * change from step to step (rows moved), a lone sequence, a closed handle opened again, and
 * InternLM2's dynamic RoPE crossed by some rows and not others; bad calls are refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/pool.h"
#include "mmm/config.h"
#include "mmm/error.h"
#include "mmm/forward.h"
#include "mmm/model.h"
#include "mmm/seed.h"

#define SEQS 6
#define CAP 96

/* the shipped default config: teacher (0), hybrid (1), linear (2), teacher with dynamic RoPE past
 * 48 positions (3) */
static mmm_model *make_model(int kind) {
    mmm_config c;
    mmm_model *t = NULL, *s = NULL;
    if (mmm_config_load(&c, "configs/teacher-fmnist.json")) return NULL;
    int L = mmm_config_n_layers(&c);
    if (kind == 3)
        for (int l = 0; l < L; l++) {
            c.layers[l].rope_kind = MMM_ROPE_DYNAMIC;
            c.layers[l].rope_factor = 2.0;
            c.layers[l].max_pos = 48;
        }
    int rc = mmm_model_create(&t, &c);
    mmm_config_free(&c);
    if (rc) return NULL;
    mmm_model_init_random(t, 11, 0.08f);
    if (kind == 0 || kind == 3) return t;
    uint8_t keep[64] = {0};
    keep[L - 4] = 1;
    rc = mmm_seed_student(&s, t, kind == 1 ? keep : NULL, MMM_INIT_MIMIC, 5);
    mmm_model_free(t);
    return rc ? NULL : s;
}

static const int prompt_len[SEQS] = {7, 40, 1, 23, 60, 12};

static void prompt(const mmm_model *m, int seq, int32_t *ids) {
    for (int i = 0; i < prompt_len[seq]; i++) ids[i] = (int32_t)((i * 37 + 5 + 11 * seq) % m->cfg.llm_vocab);
}

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

/* the steps: which sequences decode together (−1 ends a step's list) */
static const int steps[][SEQS + 1] = {
    {0, 1, 2, 3, 4, -1}, {3, 1, -1}, {0, 2, 4, 1, -1}, {2, -1}, {4, 3, 2, 1, 0, -1}, {1, 4, -1},
    {5, 0, 3, -1},       {0, 1, 2, 3, 4, 5, -1}, {5, -1}, {2, 5, 1, -1},
};

TEST(test_pool_decode_equals_each_alone) {
    static const char *kinds[] = {"teacher", "hybrid", "linear", "teacher with dynamic RoPE"};
    for (int kind = 0; kind < 4; kind++) {
        mmm_model *m = make_model(kind);
        if (!check(m != NULL, "pool: %s model built", kinds[kind])) continue;
        int V = m->cfg.vocab;
        mmm_pool *b = NULL;
        mmm_state *alone[SEQS] = {0};
        int handle[SEQS], rc = mmm_pool_new(&b, m, SEQS);
        float *got = alloc_zeros((size_t)SEQS * V), *want = alloc_zeros((size_t)V), *last = alloc_zeros((size_t)V);
        int32_t ids[CAP];
        /* sequence 5 opens after sequence 1 closed (its handle and row are reused) */
        for (int q = 0; q < SEQS - 1 && !rc; q++) {
            prompt(m, q, ids);
            rc = mmm_pool_open(b, CAP, &handle[q]);
            if (!rc) rc = mmm_pool_prefill(b, handle[q], ids, prompt_len[q], NULL, 0, last);
            if (!rc) rc = mmm_state_new(&alone[q], m, CAP);
            if (!rc) rc = mmm_prefill(m, alone[q], ids, prompt_len[q], NULL, 0, NULL, want);
            if (!rc) check(rel_err(last, want, V) < 1e-6, "pool %s: sequence %d's prefill", kinds[kind], q);
        }
        check(rc == MMM_OK, "pool %s: sequences opened and prefilled", kinds[kind]);
        double worst = 0;
        for (size_t s = 0; s < sizeof steps / sizeof *steps && !rc; s++) {
            if (s == 6) { /* close 1 (still decoded alone for reference), open 5 in its place */
                mmm_pool_close(b, handle[1]);
                prompt(m, 5, ids);
                rc = mmm_pool_open(b, CAP, &handle[5]);
                if (!rc) rc = mmm_pool_prefill(b, handle[5], ids, prompt_len[5], NULL, 0, last);
                if (!rc) rc = mmm_state_new(&alone[5], m, CAP);
                if (!rc) rc = mmm_prefill(m, alone[5], ids, prompt_len[5], NULL, 0, NULL, want);
                check(!rc && handle[5] == handle[1], "pool %s: a closed handle is opened again", kinds[kind]);
                handle[1] = -1;
            }
            int n = 0, seqs[SEQS], who[SEQS];
            int32_t tok[SEQS];
            for (int i = 0; steps[s][i] >= 0; i++) {
                int q = steps[s][i];
                if (handle[q] < 0) continue;
                who[n] = q;
                seqs[n] = handle[q];
                tok[n++] = (int32_t)((s * 13 + q * 7 + 2) % m->cfg.llm_vocab);
            }
            rc = mmm_pool_decode(b, n, seqs, tok, got);
            for (int i = 0; i < n && !rc; i++) {
                rc = mmm_decode(m, alone[who[i]], tok[i], want);
                double e = rel_err(got + (size_t)i * V, want, V);
                if (e > worst) worst = e;
                if (!check(e < 1e-5, "pool %s step %zu: sequence %d's logits (rel err %.2e)", kinds[kind], s, who[i], e))
                    break;
                check(mmm_pool_length(b, seqs[i]) == mmm_state_length(alone[who[i]]), "pool %s: lengths agree",
                      kinds[kind]);
            }
        }
        check(rc == MMM_OK, "pool %s: every step ran (%s)", kinds[kind], rc ? mmm_last_error() : "");
        for (int q = 0; q < SEQS; q++) mmm_state_free(alone[q]);
        mmm_pool_free(b);
        free(got);
        free(want);
        free(last);
        mmm_model_free(m);
    }
}

TEST(test_pool_refuses_bad_calls) {
    mmm_model *m = make_model(1);
    if (!check(m != NULL, "pool: model built")) return;
    mmm_pool *b = NULL;
    float *logits = alloc_zeros((size_t)2 * m->cfg.vocab);
    int h[2] = {-1, -1}, extra = -1;
    int32_t ids[2] = {3, 4}, bad[2] = {3, -1};
    check(mmm_pool_new(&b, m, 0) != MMM_OK, "pool: no sequences is refused");
    int rc = mmm_pool_new(&b, m, 2);
    if (!rc) rc = mmm_pool_open(b, 2, &h[0]);
    if (!rc) rc = mmm_pool_open(b, 8, &h[1]);
    check(rc == MMM_OK, "pool: two sequences opened");
    check(mmm_pool_open(b, 8, &extra) != MMM_OK && extra == -1, "pool: a third sequence is refused");
    if (!rc) rc = mmm_pool_prefill(b, h[0], ids, 1, NULL, 0, NULL);
    if (!rc) rc = mmm_pool_prefill(b, h[1], ids, 2, NULL, 0, NULL);
    int twice[2] = {h[1], h[1]}, closed[1] = {7};
    check(mmm_pool_decode(b, 2, twice, ids, logits) != MMM_OK, "pool: a sequence twice in a step is refused");
    check(mmm_pool_decode(b, 1, closed, ids, logits) != MMM_OK, "pool: a handle never opened is refused");
    check(mmm_pool_decode(b, 0, h, ids, logits) != MMM_OK, "pool: an empty step is refused");
    check(mmm_pool_decode(b, 3, h, ids, logits) != MMM_OK, "pool: more sequences than the batch holds are refused");
    check(mmm_pool_decode(b, 2, h, bad, logits) != MMM_OK, "pool: a token id outside the tables is refused");
    check(!rc && mmm_pool_decode(b, 2, h, ids, logits) == MMM_OK, "pool: a good step runs");
    check(mmm_pool_decode(b, 2, h, ids, logits) != MMM_OK && strstr(mmm_last_error(), "full"),
          "pool: a full sequence is refused, saying so (%s)", mmm_last_error());
    mmm_pool_close(b, h[0]);
    mmm_pool_close(b, h[0]); /* twice: ignored */
    check(mmm_pool_length(b, h[0]) == -1, "pool: a closed sequence has no length");
    mmm_pool_free(b);
    free(logits);
    mmm_model_free(m);
}
