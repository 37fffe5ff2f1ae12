/* The CPU's fused decode step (src/model/decode_cpu.c): the same logits on any thread count, and
 * with bf16 and int8 weight copies (mmm/quant.h) close to fp32 — and really read. Its agreement
 * with the full forward is test_parity's prefill + decode check. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/config.h"
#include "mmm/error.h"
#include "mmm/forward.h"
#include "mmm/model.h"
#include "mmm/quant.h"
#include "mmm/seed.h"

#define PROMPT 40
#define STEPS 12

/* the shipped default config (hidden 128, 2 + 4 layers, 4 heads over 2 kv heads): teacher,
 * hybrid (attention kept in the LLM's first layer) or linear student */
static mmm_model *make_model(int kind) {
    mmm_config c;
    mmm_model *t = NULL, *s = NULL;
    if (mmm_config_load(&c, "configs/teacher-fmnist.json")) return NULL;
    int rc = mmm_model_create(&t, &c), L = mmm_config_n_layers(&c);
    mmm_config_free(&c);
    if (rc) return NULL;
    mmm_model_init_random(t, 11, 0.08f);
    if (kind == 0) return t;
    uint8_t keep[64] = {0};
    keep[L - 4] = 1;
    rc = mmm_seed_student(&s, t, kind == 1 ? keep : NULL, MMM_INIT_SCRATCH, 5);
    mmm_model_free(t);
    return rc ? NULL : s;
}

/* logits (STEPS, V) of STEPS tokens decoded on `threads` threads after a PROMPT-token prefill */
static int decode_logits(mmm_model *m, int threads, float *logits) {
    mmm_state *s = NULL;
    int32_t ids[PROMPT];
    for (int i = 0; i < PROMPT; i++) ids[i] = (int32_t)((i * 37 + 5) % m->cfg.llm_vocab);
    int saved = omp_get_max_threads(), rc = mmm_state_new(&s, m, PROMPT + STEPS);
    if (!rc) rc = mmm_prefill(m, s, ids, PROMPT, NULL, 0, NULL, NULL); /* on a fixed count: its GEMMs' sums
                                                                          follow OpenBLAS's split */
    omp_set_num_threads(threads);
    for (int i = 0; i < STEPS && !rc; i++)
        rc = mmm_decode(m, s, (int32_t)((i * 13 + 2) % m->cfg.llm_vocab), logits + (size_t)i * m->cfg.vocab);
    omp_set_num_threads(saved);
    mmm_state_free(s);
    return rc;
}

static double rel_err_ff(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

TEST(test_cpu_decode_threads_and_weights) {
    static const char *kinds[] = {"teacher", "hybrid", "linear"};
    omp_set_num_threads(4); /* the states made below serve up to 4 */
    for (int kind = 0; kind < 3; kind++) {
        mmm_model *m = make_model(kind);
        if (!check(m != NULL, "cpu decode: %s model built", kinds[kind])) continue;
        size_t n = (size_t)STEPS * m->cfg.vocab;
        float *ref = alloc_zeros(n), *got = alloc_zeros(n);
        int rc = decode_logits(m, 1, ref);
        check(rc == MMM_OK, "cpu decode %s on 1 thread runs", kinds[kind]);
        for (int threads = 2; threads <= 4; threads++) {
            rc = decode_logits(m, threads, got);
            check(rc == MMM_OK && !memcmp(got, ref, n * sizeof *got), "cpu decode %s: %d threads give 1 thread's logits, bit for bit",
                  kinds[kind], threads);
        }
        /* bound by measurement with margin: bf16 rounds each weight to 8 bits of mantissa, int8
         * to 1/127 of its row's largest plus the input's 32-value blocks; over six layers of random
         * weights seen: bf16 1.0e-2, int8 4-6.5e-2 */
        static const mmm_weight_type types[] = {MMM_WEIGHTS_BF16, MMM_WEIGHTS_INT8};
        static const double tol[] = {2e-2, 1e-1};
        for (int i = 0; i < 2; i++) {
            rc = mmm_model_use_cpu_weights(m, types[i]);
            check(rc == MMM_OK && m->cpu && m->cpu->type == types[i] && m->cpu->bytes == mmm_cpu_weights_bytes(m, types[i]),
                  "cpu decode %s: %s copies made", kinds[kind], mmm_weight_type_name(types[i]));
            rc = rc ? rc : decode_logits(m, 2, got);
            double err = rel_err_ff(got, ref, n);
            check(rc == MMM_OK && err > 0 && err < tol[i], "cpu decode %s with %s weights: rel err %.2e to fp32 (in (0, %.0e))",
                  kinds[kind], mmm_weight_type_name(types[i]), err, tol[i]);
            float *one = alloc_zeros(n);
            rc = decode_logits(m, 1, one);
            check(rc == MMM_OK && !memcmp(got, one, n * sizeof *got), "cpu decode %s with %s weights: thread count changes nothing",
                  kinds[kind], mmm_weight_type_name(types[i]));
            free(one);
        }
        check(mmm_model_use_cpu_weights(m, MMM_WEIGHTS_F32) == MMM_OK && m->cpu == NULL &&
                  decode_logits(m, 2, got) == MMM_OK && !memcmp(got, ref, n * sizeof *got),
              "cpu decode %s: f32 drops the copies and decodes as before", kinds[kind]);
        check(mmm_model_use_cpu_weights(m, (mmm_weight_type)7) == MMM_ERR_ARG && strstr(mmm_last_error(), "weight type"),
              "cpu decode: an unknown weight type is refused");
        free(ref);
        free(got);
        mmm_model_free(m);
    }
}
