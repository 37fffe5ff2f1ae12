/* RoPE scaling on the GPU against the CPU (itself checked against PyTorch in
 * tests/model/test_rope_scaling.c): the scaled cos/sin tables, and a model whose stacks scale
 * "dynamic" (and then "linear") with small max_position_embeddings — training forward logits and
 * every gradient, one prefill call, and a prefill followed by decode steps across the thresholds,
 * in fp32 and with the bf16 decode. Without a GPU every test prints one "... skipped" line. */
#include <stdio.h>
#include <stdlib.h>

#include "../harness.h"

#ifndef MMM_WITH_CUDA

TEST(gpu_rope_scaling) { printf("gpu rope scaling skipped (built without CUDA)\n"); }

#else

#include <math.h>
#include <string.h>

#include "cuda_util.h"
#include "mmm/cuda.h"
#include "mmm/error.h"
#include "mmm/forward.h"
#include "mmm/gpu.h"
#include "mmm/model.h"
#include "mmm/ops/loss.h"
#include "mmm/ops/rope.h"

/* the GPU table against the CPU's, below and above max_pos, far positions included */
TEST(cuda_rope_table_scaled) {
    if (!cu_gpu("rope table scaled")) return;
    int T = 37, D = 64;
    int32_t pos[37];
    for (int t = 0; t < T; t++) pos[t] = t * 997 + 3;
    const mmm_rope_scaling rs[4] = {{1e6f, MMM_ROPE_DYNAMIC, 2.0, 32768}, {1e6f, MMM_ROPE_DYNAMIC, 2.0, 32768},
                                    {1e4f, MMM_ROPE_LINEAR, 3.0, 16}, {1e4f, MMM_ROPE_DYNAMIC, 1.5, 16}};
    const long n[4] = {32768, 36000, 40000, 40000};
    float *ct = alloc_zeros((size_t)T * D / 2), *sn = alloc_zeros((size_t)T * D / 2);
    void *dpos = cu_up_bytes(pos, sizeof pos);
    for (int k = 0; k < 4; k++) {
        mmm_rope_table_scaled(ct, sn, pos, &rs[k], n[k], T, D);
        void *dct = cu_poisoned((size_t)T * D / 2, F32), *dsn = cu_poisoned((size_t)T * D / 2, F32);
        char what[128];
        snprintf(what, sizeof what, "cuda rope table scaled (kind %d, factor %g, %ld of %d)", rs[k].kind, rs[k].factor,
                 n[k], rs[k].max_pos);
        if (!cu_ran(mmm_cuda_rope_table_scaled(dct, dsn, dpos, &rs[k], n[k], T, D), what)) continue;
        float *gc = cu_down(dct, (size_t)T * D / 2, F32), *gs = cu_down(dsn, (size_t)T * D / 2, F32);
        double *rc = to_f64(ct, (size_t)T * D / 2), *rsn = to_f64(sn, (size_t)T * D / 2);
        char w2[160];
        snprintf(w2, sizeof w2, "%s cos", what);
        check_close(w2, gc, rc, (size_t)T * D / 2, 1e-6);
        snprintf(w2, sizeof w2, "%s sin", what);
        check_close(w2, gs, rsn, (size_t)T * D / 2, 1e-6);
        free(gc); free(gs); free(rc); free(rsn);
    }
    free(ct);
    free(sn);
    cu_release();
}

/* hidden 64, 2 query heads of 32 over 1 kv head, text only; each stack scaled its own way */
static mmm_model *make_model(const char *kind) {
    char json[1400];
    snprintf(json, sizeof json,
             "{\"embedding_config\": {\"hidden_size\": 64, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
             " \"num_key_value_heads\": 1, \"intermediate_size\": 96, \"rms_norm_eps\": 1e-5, \"rope_theta\": 1e4,"
             " \"max_position_embeddings\": 6, \"rope_scaling\": {\"type\": \"%s\", \"factor\": 3.0},"
             " \"llm_vocab_size\": 40},"
             " \"llm_config\": {\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 2,"
             " \"num_key_value_heads\": 1, \"intermediate_size\": 96, \"rms_norm_eps\": 1e-5, \"rope_theta\": 1e4,"
             " \"max_position_embeddings\": 8, \"rope_scaling\": {\"type\": \"%s\", \"factor\": 2.0},"
             " \"vocab_size\": 40}}", kind, kind);
    mmm_config c;
    mmm_model *m = NULL;
    if (mmm_config_parse(&c, json, "gpu rope test config")) return NULL;
    int rc = mmm_model_create(&m, &c);
    mmm_config_free(&c);
    if (rc) return NULL;
    mmm_model_init_random(m, 7, 0.2f);
    return m;
}

/* Prefill P tokens, then decode the rest: every position's logits into out (T, V). */
static int stepped(const mmm_model *m, const int32_t *ids, int T, int P, float *out) {
    mmm_state *s = NULL;
    int V = m->cfg.vocab, rc = mmm_state_new(&s, m, T);
    float *last = malloc((size_t)V * sizeof *last);
    if (!rc) rc = mmm_prefill(m, s, ids, P, NULL, 0, out, last);
    for (int t = P; t < T && !rc; t++) rc = mmm_decode(m, s, ids[t], out + (size_t)t * V);
    mmm_state_free(s);
    free(last);
    return rc;
}

TEST(gpu_rope_scaling) {
    if (!cu_gpu("rope scaling model")) return;
    enum { T = 20, P = 5 };
    int32_t ids[T];
    for (int t = 0; t < T; t++) ids[t] = (t * 11 + 4) % 40;
    const char *kinds[2] = {"dynamic", "linear"};
    for (int k = 0; k < 2; k++) {
        mmm_model *m = make_model(kinds[k]);
        if (!check(m != NULL, "gpu rope %s model: %s", kinds[k], m ? "made" : mmm_last_error())) continue;
        int V = m->cfg.vocab;
        size_t nl = (size_t)T * V;
        mmm_input in = {1, T, ids, NULL, 0};
        mmm_acts *ca = NULL;
        float *cpu_one = malloc(nl * sizeof(float)), *cpu_steps = malloc(nl * sizeof(float));
        float *dl = alloc_zeros(nl), *cg = alloc_zeros(m->n_floats), *gg = alloc_zeros(m->n_floats);
        int32_t labels[T];
        for (int t = 0; t < T; t++) labels[t] = t + 1 < T ? ids[t + 1] : -100;
        /* CPU first, then the same model on the GPU */
        int rc = mmm_forward(m, &in, &ca);
        if (!rc) {
            memcpy(cpu_one, mmm_acts_logits(ca), nl * sizeof(float));
            mmm_cross_entropy_backward(dl, 1.0f, mmm_acts_logits(ca), labels, T, V);
            rc = mmm_backward(m, ca, dl, cg);
        }
        if (!rc) rc = stepped(m, ids, T, P, cpu_steps);
        if (!rc) rc = mmm_gpu_attach(m);
        mmm_gpu_acts *ga = NULL;
        if (!rc) rc = mmm_gpu_forward(m, &in, &ga);
        if (!check(rc == MMM_OK, "gpu rope %s: CPU and GPU runs%s%s", kinds[k], rc ? ": " : "", rc ? mmm_last_error() : ""))
            goto next;
        char what[160];
        float *got = malloc(nl * sizeof(float)), *last = malloc((size_t)V * sizeof(float));
        if (!mmm_gpu_acts_logits(ga, got)) {
            snprintf(what, sizeof what, "gpu rope %s: training forward logits = cpu", kinds[k]);
            check_close_f(what, got, cpu_one, nl, 1e-4);
        }
        if (check(mmm_gpu_backward(m, ga, dl, gg) == MMM_OK, "gpu rope %s backward", kinds[k])) {
            double worst = 0;
            for (int i = 0; i < m->n_params; i++) {
                const mmm_param *p = &m->params[i];
                if (p->flags & MMM_PARAM_UNUSED) continue;
                double *r = to_f64(cg + p->offset, p->numel);
                double e = rel_error(gg + p->offset, r, p->numel);
                if (e > worst) worst = e;
                free(r);
            }
            check(worst < 1e-3, "gpu rope %s: every gradient = cpu (worst rel err %.2e)", kinds[k], worst);
        }
        mmm_state *s = NULL;
        if (check(mmm_state_new(&s, m, T) == MMM_OK && mmm_prefill(m, s, ids, T, NULL, 0, got, last) == MMM_OK,
                  "gpu rope %s: one prefill call", kinds[k])) {
            snprintf(what, sizeof what, "gpu rope %s: one prefill call = cpu training forward", kinds[k]);
            check_close_f(what, got, cpu_one, nl, 1e-4);
        }
        mmm_state_free(s);
        if (check(stepped(m, ids, T, P, got) == MMM_OK, "gpu rope %s: prefill + decode", kinds[k])) {
            snprintf(what, sizeof what, "gpu rope %s: prefill %d + %d decode steps = cpu", kinds[k], P, T - P);
            check_close_f(what, got, cpu_steps, nl, 1e-4);
        }
        if (check(mmm_gpu_use_bf16_decode(m) == MMM_OK && stepped(m, ids, T, P, got) == MMM_OK,
                  "gpu rope %s: bf16 prefill + decode", kinds[k])) {
            snprintf(what, sizeof what, "gpu rope %s: bf16 prefill %d + %d decode steps = cpu", kinds[k], P, T - P);
            check_close_f(what, got, cpu_steps, nl, 5e-2);
        }
        free(got);
        free(last);
    next:
        mmm_gpu_acts_free(ga);
        mmm_acts_free(ca);
        free(cpu_one); free(cpu_steps); free(dl); free(cg); free(gg);
        mmm_model_free(m);
    }
}

#endif
