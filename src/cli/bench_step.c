/* mmm bench --train-step: a training step's tokens/s and model-FLOPs utilisation on the GPU —
 * the teacher's cross-entropy step and the students' stage-3 distillation step (teacher forward,
 * student forward and backward, KL, device AdamW), on synthetic tokens. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "mmm/distill.h"
#include "mmm/error.h"
#include "mmm/gpu.h"
#include "mmm/train.h"

static const char *step_names[] = {"teacher CE", "hybrid stage 3", "linear stage 3"};

static int is_matrix(mmm_param_role r) {
    return r == MMM_ROLE_W1 || r == MMM_ROLE_W2 || r == MMM_ROLE_W3 || r == MMM_ROLE_WQKV || r == MMM_ROLE_WO ||
           r == MMM_ROLE_WVKQGDT || r == MMM_ROLE_O_PROJ || r == MMM_ROLE_LM_HEAD;
}

/* Model FLOPs of a text-only forward over one sequence of T tokens: 2 per weight of every matrix
 * a token meets, and causal attention's two T×T products (half the square). The chunked SSD's
 * own products are not counted, so the utilisation is a lower bound for students. */
static double forward_flops(const mmm_model *m, int T) {
    double f = 0;
    for (int i = 0; i < m->n_params; i++)
        if (is_matrix(m->params[i].role)) f += 2.0 * m->params[i].numel * T;
    for (int l = 0; l < mmm_config_n_layers(&m->cfg); l++) {
        const mmm_layer_desc *d = &m->cfg.layers[l];
        if (d->kind == MMM_MIXER_ATTENTION) f += 2.0 * (double)T * T * d->n_heads * d->head_dim;
    }
    return f;
}

/* The weight-gradient products of the trainable matrix rows (frozen ones need none). */
static double weight_grad_flops(const mmm_model *m, const mmm_train_range *tr, int T) {
    double f = 0;
    for (int i = 0; i < m->n_params; i++) {
        size_t b, e;
        mmm_train_range_clamp(tr[i], m->params[i].numel, &b, &e);
        if (is_matrix(m->params[i].role)) f += 2.0 * (double)(e - b) * T;
    }
    return f;
}

/* One sequence of T synthetic tokens, every position a label (the next token). */
static int make_batch(mmm_batch *b, const mmm_model *m, int T) {
    memset(b, 0, sizeof *b);
    b->B = 1;
    b->T = T;
    b->ids = malloc((size_t)T * sizeof *b->ids);
    b->labels = malloc((size_t)T * sizeof *b->labels);
    b->lengths = malloc(sizeof *b->lengths);
    b->members = calloc(1, sizeof *b->members);
    if (!b->ids || !b->labels || !b->lengths || !b->members) return mmm_fail(MMM_ERR_NOMEM, "bench: out of memory");
    for (int t = 0; t < T; t++) b->ids[t] = (int32_t)((t * 2654435761u + 12345u) % (unsigned)m->cfg.llm_vocab);
    for (int t = 0; t < T; t++) b->labels[t] = t + 1 < T ? b->ids[t + 1] : -1;
    b->lengths[0] = T;
    b->n_label_tokens = T - 1;
    return MMM_OK;
}

int bench_train_step(const char *model_dir, const bench_dims *d, int kind, int T, int steps, int bf16,
                     double peak_tflops, FILE *json, int first) {
    mmm_model *teacher = NULL, *m = NULL;
    mmm_train_range *tr = NULL;
    mmm_gpu_optim *opt = NULL;
    mmm_ce_train ce = {0};
    mmm_kl_distill kd = {0};
    mmm_batch b = {0};
    size_t used0 = 0, used1 = 0;
    double *t = malloc((size_t)steps * sizeof *t);
    int rc = t ? mmm_gpu_mem_used(&used0) : mmm_fail(MMM_ERR_NOMEM, "bench: out of memory");
    /* random weights are drawn on the device: 2.6 B normal draws on the host take a minute */
    if (!rc) rc = bench_teacher(&teacher, model_dir, d, 0);
    if (!rc && kind) rc = bench_seed(&m, teacher, kind);
    if (!rc && !kind) { m = teacher; teacher = NULL; }
    if (!rc && !(tr = calloc((size_t)m->n_params, sizeof *tr))) rc = mmm_fail(MMM_ERR_NOMEM, "bench: out of memory");
    if (!rc) {
        if (kind) mmm_stage_trainable(m, 3, 0, tr);
        else for (int i = 0; i < m->n_params; i++) tr[i] = (mmm_train_range){0, m->params[i].numel};
    }
    if (!rc && teacher && !(rc = mmm_gpu_attach(teacher)) && !model_dir) rc = mmm_gpu_randomize(teacher, 1, 0.02f);
    if (!rc && !(rc = mmm_gpu_attach(m)) && !model_dir) rc = mmm_gpu_randomize(m, 2, 0.02f);
    if (!rc && teacher && bf16) rc = mmm_gpu_use_bf16_train(teacher);
    if (!rc && bf16) rc = mmm_gpu_use_bf16_train(m);
    if (!rc) rc = mmm_gpu_optim_new(m, tr, &opt);
    if (!rc) rc = make_batch(&b, m, T);
    kd.teacher = teacher;
    kd.tau = 1.0f;
    mmm_adamw_config adam = {1e-5f, 0.9f, 0.95f, 1e-8f, 0.1f};
    for (int s = -2; s < steps && !rc; s++) { /* two untimed: kernels load, buffers grow */
        double t0 = bench_now(), loss = 0;
        long tokens = 0;
        float gnorm;
        if (!(rc = mmm_gpu_optim_zero(opt)))
            rc = kind ? mmm_kl_distill_step(&kd, m, &b, NULL, &loss, &tokens) : mmm_ce_step(&ce, m, &b, NULL, &loss, &tokens);
        if (!rc) rc = mmm_gpu_optim_step(opt, &adam, s + 3, tokens ? 1.0f / tokens : 0, 1.0f, &gnorm);
        if (!rc) rc = mmm_gpu_wait();
        if (s >= 0) t[s] = bench_now() - t0;
    }
    if (!rc) rc = mmm_gpu_mem_used(&used1);
    if (!rc) {
        double mean = 0;
        for (int s = 0; s < steps; s++) mean += t[s] / steps;
        double fwd = forward_flops(m, T), flops = 2 * fwd + weight_grad_flops(m, tr, T);
        if (teacher) flops += forward_flops(teacher, T);
        double tflops = flops / mean / 1e12, mfu = tflops / peak_tflops;
        printf("%-16s %7d %10.1f %12.0f %10.1f %8.1f%% %10.2f\n", step_names[kind], T, mean * 1e3, T / mean, tflops,
               100 * mfu, (used1 - used0) / 1073741824.0);
        if (json)
            fprintf(json, "%s\n  {\"step\": \"%s\", \"tokens\": %d, \"ms\": %.2f, \"tokens_per_s\": %.1f, "
                    "\"model_tflop_per_step\": %.3f, \"tflops\": %.1f, \"mfu\": %.4f, \"gpu_gib\": %.2f}",
                    first ? "" : ",", step_names[kind], T, mean * 1e3, T / mean, flops / 1e12, tflops, mfu,
                    (used1 - used0) / 1073741824.0);
    }
    if (b.ids) mmm_batch_free(&b);
    mmm_gpu_optim_free(opt);
    mmm_ce_train_free(&ce);
    mmm_kl_distill_free(&kd);
    free(tr);
    free(t);
    mmm_model_free(m);
    mmm_model_free(teacher);
    return rc;
}
