/* Exact-match evaluation: greedy generation of each sample's last answer, and the answer tokens'
 * cross-entropy under teacher forcing. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mmm/error.h"
#include "mmm/forward.h"
#include "mmm/memory.h"
#include "mmm/ops/loss.h"
#include "mmm/tokenizer.h"
#include "mmm/train.h"

static mmm_task_score *task_slot(mmm_eval_result *r, const char *task) {
    for (int i = 0; i < r->n_tasks; i++)
        if (!strcmp(r->tasks[i].task, task)) return &r->tasks[i];
    if (r->n_tasks == (int)(sizeof r->tasks / sizeof r->tasks[0])) return &r->tasks[r->n_tasks - 1];
    mmm_task_score *t = &r->tasks[r->n_tasks++];
    snprintf(t->task, sizeof t->task, "%s", task);
    return t;
}

/* Compares after trimming surrounding whitespace. */
static int same_answer(const char *a, const char *b) {
    while (isspace((unsigned char)*a)) a++;
    while (isspace((unsigned char)*b)) b++;
    size_t la = strlen(a), lb = strlen(b);
    while (la && isspace((unsigned char)a[la - 1])) la--;
    while (lb && isspace((unsigned char)b[lb - 1])) lb--;
    return la == lb && !memcmp(a, b, la);
}

/* generation_config.json's eos_token_id (the tokenizer's stop ids) ends an answer as the chat
 * template's <|im_end|> does (docs/model-format.md, "Tokenizer files") */
static int is_stop_id(int32_t id, void *tok) {
    const int32_t *ids = NULL;
    for (int i = 0, n = mmm_tokenizer_stop_ids(tok, &ids); i < n; i++)
        if (id == ids[i]) return 1;
    return 0;
}

/* Greedy answer of `m` to the sample's prompt: n_gen tokens in out, the stop token dropped. */
static int generate_answer(const mmm_model *m, const mmm_tokenizer *tok, mmm_state *st, const mmm_sample *s,
                           const float *pixels, float *logits, int max_new, int32_t stop, int32_t *out, int *n_gen) {
    mmm_sampler greedy = {0, 0, 1, 0};
    mmm_state_reset(st);
    int rc = mmm_prefill(m, st, s->ids, s->prompt_len, pixels, s->n_tiles, NULL, logits);
    if (!rc) rc = mmm_generate(m, st, logits, max_new, stop, &greedy, out, n_gen, is_stop_id, (void *)tok);
    if (!rc && *n_gen && (out[*n_gen - 1] == stop || is_stop_id(out[*n_gen - 1], (void *)tok))) (*n_gen)--;
    return rc;
}

int mmm_evaluate(const mmm_model *m, const mmm_tokenizer *tok, const mmm_dataset *d, int max_samples,
                 int max_new, const mmm_model *teacher, mmm_eval_result *r) {
    memset(r, 0, sizeof *r);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int n = max_samples > 0 && max_samples < d->n ? max_samples : d->n, V = m->cfg.vocab, longest = 0;
    for (int k = 0; k < n; k++) { /* the samples evaluated: spread evenly over the file */
        const mmm_sample *s = &d->samples[(long)k * d->n / n];
        if (s->n > longest) longest = s->n;
    }
    if (teacher && teacher->cfg.vocab != V)
        return mmm_fail(MMM_ERR_ARG, "the teacher's vocabulary (%d) differs from the model's (%d)", teacher->cfg.vocab, V);
    /* everything below is sized by the longest sample: checked as a whole before any of it is
     * allocated (a GPU model's state is on the device, which checks its own) */
    int ctx = longest + max_new + 1;
    size_t logit_bytes = (size_t)V * (size_t)(longest + 1) * sizeof(float);
    size_t need = logit_bytes * (teacher ? 2 : 1) + (m->gpu ? 0 : mmm_state_estimate_bytes(m, ctx)) +
                  (teacher && !teacher->gpu ? mmm_state_estimate_bytes(teacher, ctx) : 0);
    int rc = mmm_memory_check(need, "evaluating a %d-token sample (%.2f GB of logits%s, and a %d-token context)",
                              longest, logit_bytes * 1e-9, teacher ? " per model" : "", ctx);
    if (rc) return rc;
    mmm_state *st = NULL, *tst = NULL;
    float *logits = malloc(logit_bytes);
    float *tlogits = teacher ? malloc(logit_bytes) : NULL;
    int32_t *out = malloc((size_t)(max_new + 1) * sizeof *out), *tout = malloc((size_t)(max_new + 1) * sizeof *tout);
    rc = logits && out && tout && (!teacher || tlogits)
             ? mmm_state_new(&st, m, ctx)
             : mmm_fail(MMM_ERR_NOMEM, "evaluating a %d-token sample: cannot allocate %.2f GB of logits", longest,
                        logit_bytes * (teacher ? 2 : 1) * 1e-9);
    if (!rc && teacher) rc = mmm_state_new(&tst, teacher, ctx);
    int32_t stop = m->cfg.im_end_id >= 0 ? m->cfg.im_end_id : mmm_tokenizer_token_to_id(tok, "<|im_end|>");
    for (int k = 0; k < n && !rc; k++) {
        const mmm_sample *s = &d->samples[(long)k * d->n / n];
        float *pixels = NULL;
        if ((rc = mmm_sample_pixels(s, &m->cfg, &pixels))) break;
        mmm_state_reset(st);
        /* teacher-forced pass over the whole sample: the answer tokens' loss */
        rc = mmm_prefill(m, st, s->ids, s->n, pixels, s->n_tiles, logits, NULL);
        double loss = 0;
        long count = 0;
        for (int t = 0; t < s->n && !rc; t++) {
            if (s->labels[t] < 0) continue;
            const float *row = logits + (size_t)t * V;
            float mx = row[0];
            for (int v = 1; v < V; v++) if (row[v] > mx) mx = row[v];
            double sum = 0;
            for (int v = 0; v < V; v++) sum += exp(row[v] - mx);
            loss += log(sum) + mx - row[s->labels[t]];
            count++;
        }
        /* against the teacher: its distributions on the same positions, and its own answer */
        int n_gen = 0, n_tgen = 0;
        if (!rc && teacher) {
            mmm_state_reset(tst);
            rc = mmm_prefill(teacher, tst, s->ids, s->n, pixels, s->n_tiles, tlogits, NULL);
            for (int t = 0; t < s->n && !rc; t++) {
                if (s->labels[t] < 0) continue;
                const float *ps = logits + (size_t)t * V, *pt = tlogits + (size_t)t * V;
                double ms = ps[0], mt = pt[0], zs = 0, zt = 0, kl = 0;
                for (int v = 1; v < V; v++) { if (ps[v] > ms) ms = ps[v]; if (pt[v] > mt) mt = pt[v]; }
                for (int v = 0; v < V; v++) { zs += exp(ps[v] - ms); zt += exp(pt[v] - mt); }
                for (int v = 0; v < V; v++) {
                    double lpt = pt[v] - mt - log(zt), lps = ps[v] - ms - log(zs);
                    kl += exp(lpt) * (lpt - lps);
                }
                r->kl_sum += kl;
                r->kl_tokens++;
            }
            if (!rc) rc = generate_answer(teacher, tok, tst, s, pixels, tlogits, max_new, stop, tout, &n_tgen);
        }
        if (!rc) rc = generate_answer(m, tok, st, s, pixels, logits, max_new, stop, out, &n_gen);
        free(pixels);
        if (rc) break;
        if (teacher) r->agree += n_gen == n_tgen && !memcmp(out, tout, (size_t)n_gen * sizeof *out);
        char *text = NULL;
        if ((rc = mmm_tokenizer_decode(tok, out, n_gen, 1, &text, NULL))) break;
        int ok = same_answer(text, s->answer);
        free(text);
        mmm_task_score *ts = task_slot(r, s->task);
        ts->n++;
        ts->correct += ok;
        ts->loss_sum += loss;
        ts->loss_tokens += count;
        r->n++;
        r->correct += ok;
        r->loss_sum += loss;
        r->loss_tokens += count;
        r->generated_tokens += n_gen;
    }
    mmm_state_free(st);
    mmm_state_free(tst);
    free(logits);
    free(tlogits);
    free(out);
    free(tout);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    r->seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return rc;
}
