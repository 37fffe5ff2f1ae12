/* Distillation: each stage trains exactly its set (docs/design.md §4), each stage's loss falls, the per-layer
 * table, the hybrid for stage 3, and an interrupted stage resuming exactly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "fixture.h"
#include <cjson/cJSON.h>

#include "mmm/distill.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/seed.h"

typedef struct {
    mmm_model *teacher, *student;
    mmm_dataset data;
    int ok;
} distill_fixture;

static distill_fixture *get_distill(void) {
    static distill_fixture d;
    if (d.ok) return &d;
    fixture *f = get_fixture();
    if (!f) return NULL;
    char path[128];
    snprintf(path, sizeof path, "%s/train.jsonl", f->dir);
    mmm_data_options opt = {.max_tokens = 4096};
    if (mmm_dataset_load(&d.data, path, f->tok, &f->cfg, &opt) || mmm_model_create(&d.teacher, &f->cfg)) return NULL;
    mmm_model_init_random(d.teacher, 17, 0.1f);
    d.ok = 1;
    return &d;
}

static int run_stage(distill_fixture *d, mmm_model *student, int stage, const char *out, long steps, int fail_at,
                     mmm_train_result *res) {
    mmm_train_range *tr = calloc((size_t)student->n_params, sizeof *tr);
    mmm_stage_trainable(student, stage, 0, tr);
    float lr = stage == 1 ? 1e-2f : stage == 2 ? 5e-3f : 2e-3f;
    mmm_train_options o = {.out_dir = out, .name = stage == 3 ? "stage3" : stage == 2 ? "stage2" : "stage1",
                           .steps = steps, .accum = 1, .batch_tokens = 1500, .clip = 1.0f,
                           .sched = {MMM_SCHED_CONSTANT, lr, 0, 0, 0, steps}, .adam = {lr, 0.9f, 0.999f, 1e-8f, 0.05f},
                           .save_every = 5, .log_every = 1000, .seed = (uint64_t)stage, .keep_checkpoints = 2, .quiet = 1};
    int rc;
    if (stage < 3) {
        mmm_mixer_distill md = {.teacher = d->teacher, .scale = 1000.0f};
        mmm_step_fn step = mmm_mixer_distill_step;
        (void)fail_at;
        void *ctx[1] = {&md};
        rc = mmm_train_run(student, tr, &d->data, &o, step, ctx, NULL, NULL, res);
        mmm_mixer_distill_free(&md);
    } else {
        mmm_kl_distill kd = {.teacher = d->teacher, .tau = 1.0f, .ce_weight = 0};
        void *ctx[1] = {&kd};
        rc = mmm_train_run(student, tr, &d->data, &o, mmm_kl_distill_step, ctx, NULL, NULL, res);
        mmm_kl_distill_free(&kd);
    }
    free(tr);
    return rc;
}

static int stage_losses(const char *out, const char *name, double *loss, int n) {
    char path[200], *text = NULL;
    snprintf(path, sizeof path, "%s/%s_log.jsonl", out, name);
    if (mmm_read_text_file(path, 1 << 24, &text, NULL)) return 0;
    int got = 0;
    for (char *line = strtok(text, "\n"); line && got < n; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "loss");
        if (cJSON_IsNumber(l)) loss[got++] = l->valuedouble;
        cJSON_Delete(j);
    }
    free(text);
    return got;
}

/* Which parameters moved between two copies of a model: flags per role kind. */
static int moved(const mmm_model *a, const mmm_model *b, mmm_param_role role, size_t row_begin, size_t row_end) {
    for (int i = 0; i < a->n_params; i++) {
        const mmm_param *p = &a->params[i];
        if (p->role != role) continue;
        size_t cols = p->ndim > 1 ? (size_t)p->shape[1] : 1, e = row_end ? row_end * cols : p->numel;
        for (size_t k = row_begin * cols; k < e && k < p->numel; k++)
            if (a->data[p->offset + k] != b->data[p->offset + k]) return 1;
    }
    return 0;
}

TEST(distill_stages_train_their_sets_and_losses_fall) {
    distill_fixture *d = get_distill();
    if (!check(d != NULL, "distill: fixture%s%s", d ? "" : ": ", d ? "" : mmm_last_error())) return;
    fixture *f = get_fixture();
    mmm_model *s = NULL, *before = NULL;
    mmm_seed_student(&s, d->teacher, NULL, MMM_INIT_MIMIC, 1);
    mmm_seed_student(&before, d->teacher, NULL, MMM_INIT_MIMIC, 1);
    const mmm_layer_desc *ld = &s->cfg.layers[0];
    size_t vkq = (size_t)(2 * ld->n_kv_heads + ld->n_heads) * ld->head_dim;
    const char *names[] = {"", "stage1", "stage2", "stage3"};
    long steps[] = {0, 25, 20, 20};
    double start_loss[4] = {0};
    for (int k = 1; k <= 3; k++) {
        char out[128];
        snprintf(out, sizeof out, "%s/distill_%d", f->dir, k);
        mmm_train_result res;
        int rc = run_stage(d, s, k, out, steps[k], 0, &res);
        if (!check(rc == MMM_OK, "distill %s runs%s%s", names[k], rc ? ": " : "", rc ? mmm_last_error() : "")) break;
        double loss[64];
        int n = stage_losses(out, names[k], loss, 64);
        double first = (loss[0] + loss[1] + loss[2]) / 3, last = (loss[n - 1] + loss[n - 2] + loss[n - 3]) / 3;
        start_loss[k] = first;
        check(n == steps[k] && last < 0.8 * first, "distill %s loss falls from %.4f to %.4f", names[k], first, last);
        /* what moved */
        int vkq_moved = moved(before, s, MMM_ROLE_WVKQGDT, 0, vkq), gdt_moved = moved(before, s, MMM_ROLE_WVKQGDT, vkq, 0);
        int conv = moved(before, s, MMM_ROLE_CONV_W, 0, 0), dt = moved(before, s, MMM_ROLE_DT_BIAS, 0, 0) || moved(before, s, MMM_ROLE_A_LOG, 0, 0);
        int frozen = moved(before, s, MMM_ROLE_O_PROJ, 0, 0) || moved(before, s, MMM_ROLE_W1, 0, 0) ||
                     moved(before, s, MMM_ROLE_ATTN_NORM, 0, 0) || moved(before, s, MMM_ROLE_TEXT_EMB, 0, 0) ||
                     moved(before, s, MMM_ROLE_LM_HEAD, 0, 0);
        if (k == 1) check(!vkq_moved && gdt_moved && conv && dt && !frozen,
                          "distill stage1 trains only the new parameters (g, dt rows, conv, dt_bias, A_log, gate norm)");
        if (k == 2) check(vkq_moved && gdt_moved && conv && dt && !frozen, "distill stage2 adds Wq, Wk, Wv; o_proj, norms, MLP frozen");
        if (k == 3) check(vkq_moved && conv && !dt && !frozen, "distill stage3 trains the mixers end to end, dt_bias and A_log frozen");
        memcpy(before->data, s->data, s->n_floats * sizeof *s->data);
    }
    check(start_loss[2] < start_loss[1], "distill stage2 starts below stage1's start (%.4f < %.4f): each stage continues the last",
          start_loss[2], start_loss[1]);

    /* the per-layer table and a hybrid assembled for stage 3 */
    int L = mmm_config_n_layers(&s->cfg);
    double losses[16];
    int rc = mmm_layer_losses(d->teacher, s, &d->data, 16, 1500, losses);
    int finite = rc == MMM_OK;
    for (int l = 0; l < L; l++) finite &= isfinite(losses[l]) && losses[l] >= 0;
    check(finite, "distill: per-layer losses for all %d layers (%.5f ...)", L, losses[0]);
    uint8_t keep[16] = {1, 0};
    mmm_model *h = NULL;
    rc = mmm_student_with_attention(&h, s, d->teacher, keep);
    check(rc == MMM_OK && h->cfg.layers[0].kind == MMM_MIXER_ATTENTION && mmm_config_n_mamba_layers(&h->cfg) == L - 1 &&
          !memcmp(h->w.layers[0].wqkv, d->teacher->w.layers[0].wqkv, sizeof(float) * 16) &&
          !memcmp(h->w.layers[1].wvkqgdt, s->w.layers[1].wvkqgdt, sizeof(float) * 16),
          "distill: the hybrid takes the teacher's attention in kept layers and the student's mixers elsewhere");
    mmm_train_range tr[64];
    if (h && h->n_params <= 64) {
        mmm_stage_trainable(h, 3, 0, tr);
        int attn_frozen = 1;
        for (int i = 0; i < h->n_params; i++)
            if (h->params[i].layer == 0) attn_frozen &= tr[i].begin == tr[i].end;
        check(attn_frozen, "distill stage3: the kept attention layer is frozen");
    }
    mmm_model_free(h);
    mmm_model_free(before);
    mmm_model_free(s);
}

TEST(distill_stage_resume_is_exact) {
    distill_fixture *d = get_distill();
    if (!check(d != NULL, "distill resume: fixture")) return;
    fixture *f = get_fixture();
    char a[128], b[128];
    snprintf(a, sizeof a, "%s/resume_a", f->dir);
    snprintf(b, sizeof b, "%s/resume_b", f->dir);
    mmm_model *sa = NULL, *sb = NULL;
    mmm_seed_student(&sa, d->teacher, NULL, MMM_INIT_MIMIC, 2);
    mmm_seed_student(&sb, d->teacher, NULL, MMM_INIT_MIMIC, 2);
    mmm_train_result r;
    int rc = run_stage(d, sa, 2, a, 16, 0, &r);
    /* the interrupted run: 10 steps (checkpoint at 10), then the same 16-step command again */
    if (!rc) rc = run_stage(d, sb, 2, b, 10, 0, &r);
    /* a rerun of the full command in the same directory continues from step 10 */
    mmm_model *sc = NULL;
    mmm_seed_student(&sc, d->teacher, NULL, MMM_INIT_MIMIC, 2);
    char latest[200];
    snprintf(latest, sizeof latest, "%s/checkpoints/latest", b);
    if (!rc) rc = run_stage(d, sc, 2, b, 16, 0, &r);
    check(rc == MMM_OK && r.resumed, "distill stage2 rerun resumes from the checkpoint");
    double la[16], lb[16];
    int na = stage_losses(a, "stage2", la, 16), nb = stage_losses(b, "stage2", lb, 16), same = na == 16 && nb == 16;
    for (int i = 10; i < 16 && same; i++) same = la[i] == lb[i];
    check(same, "distill stage2: steps 11-16 after resume have the uninterrupted run's losses");
    check(!memcmp(sa->data, sc->data, sa->n_floats * sizeof *sa->data), "distill stage2: final weights equal the uninterrupted run's");
    mmm_model_free(sa);
    mmm_model_free(sb);
    mmm_model_free(sc);
}
