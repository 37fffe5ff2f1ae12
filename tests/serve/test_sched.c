/* `mmm serve`'s scheduler without HTTP: jobs served together, token by token, give the answers
 * mmm_generate gives one at a time (greedy and sampled); admission refuses past the sessions,
 * the queue and the memory budget; a released job is cancelled and its session freed. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../harness.h"
#include "../train/fixture.h"
#include "../../src/serve/sched.h" /* internals of src/serve */
#include "mmm/error.h"

#define PROMPT "What item is this?"

static mmm_model *tiny_model(const fixture *f) {
    mmm_model *m = NULL;
    if (mmm_model_create(&m, &f->cfg)) return NULL;
    mmm_model_init_random(m, 5, 0.5f); /* large weights: answers of varied tokens */
    return m;
}

static int32_t *prompt_ids(const mmm_tokenizer *tok, int *n) {
    int32_t *ids = NULL;
    return mmm_tokenizer_encode(tok, PROMPT, strlen(PROMPT), 0, &ids, n) ? NULL : ids;
}

/* The answer one state and mmm_generate give, as text (a trailing half character dropped). */
static char *reference(const mmm_model *m, const mmm_tokenizer *tok, const mmm_sampler *smp, int max_new, int *n_gen) {
    int n = 0;
    int32_t *ids = prompt_ids(tok, &n), *out = malloc((size_t)max_new * sizeof *out);
    float *logits = malloc((size_t)m->cfg.vocab * sizeof *logits);
    mmm_state *st = NULL;
    char *text = NULL;
    size_t len = 0;
    *n_gen = 0;
    if (ids && out && logits && !mmm_state_new(&st, m, n + max_new) && !mmm_prefill(m, st, ids, n, NULL, 0, NULL, logits) &&
        !mmm_generate(m, st, logits, max_new, -1, smp, out, n_gen, NULL, NULL) &&
        !mmm_tokenizer_decode(tok, out, *n_gen, 1, &text, &len) && len >= 3 && !memcmp(text + len - 3, "\xEF\xBF\xBD", 3))
        text[len - 3] = '\0';
    mmm_state_free(st);
    free(ids);
    free(out);
    free(logits);
    return text;
}

static srv_job_spec spec_of(const mmm_tokenizer *tok, const mmm_sampler *smp, int max_tokens) {
    srv_job_spec s = {0};
    s.ids = prompt_ids(tok, &s.n_ids);
    s.max_tokens = max_tokens;
    s.sampler = *smp;
    s.stop_id = -1;
    return s;
}

/* Waits (up to 60 s) for a job's end, gathering its text. */
static char *finish(srv_job *j, srv_output *end) {
    char *text = calloc(1, 1);
    size_t len = 0;
    for (int i = 0; i < 1200 && text; i++) {
        srv_output o;
        if (!srv_job_wait(j, 50, &o)) continue;
        char *grown = realloc(text, len + o.len + 1);
        if (grown) {
            memcpy(grown + len, o.text ? o.text : "", o.len);
            len += o.len;
            grown[len] = '\0';
        }
        free(o.text);
        text = grown;
        if (o.finish) {
            *end = o;
            return text;
        }
    }
    free(text);
    return NULL;
}

TEST(serve_sched_matches_generate) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "fixture%s%s", f ? "" : ": ", f ? "" : mmm_last_error())) return;
    mmm_model *m = tiny_model(f);
    if (!check(m != NULL, "model%s%s", m ? "" : ": ", m ? "" : mmm_last_error())) return;
    const mmm_sampler smp[3] = {{0, 0, 1, 0}, {0.8f, 0, 0.9f, 7}, {1.0f, 0, 1, 123}};
    const int max_new[3] = {24, 31, 17};
    srv_sched *s = NULL;
    srv_sched_options o = {2, 1, (size_t)1 << 30, 5}; /* prompts fed 5 tokens at a time */
    if (!check(!srv_sched_start(&s, m, f->tok, &o), "scheduler starts")) { mmm_model_free(m); return; }
    srv_job *jobs[3] = {0};
    size_t need;
    int admitted = 1;
    for (int i = 0; i < 3; i++) {
        srv_job_spec spec = spec_of(f->tok, &smp[i], max_new[i]);
        admitted &= srv_sched_submit(s, &spec, &jobs[i], &need) == MMM_OK;
    }
    check(admitted, "scheduler: two sessions and one queue place take three jobs");
    srv_job_spec late = spec_of(f->tok, &smp[0], 4);
    for (int i = 0; i < 3; i++) {
        int n_ref = 0;
        char *want = reference(m, f->tok, &smp[i], max_new[i], &n_ref);
        srv_output end = {0};
        char *got = jobs[i] ? finish(jobs[i], &end) : NULL;
        check(want && got && !strcmp(got, want) && end.finish == SRV_FINISH_LENGTH && end.completion_tokens == n_ref &&
                  end.prompt_tokens > 0,
              "scheduler: job %d (temperature %g, top_p %g, seed %llu) answers as mmm_generate ('%.40s' vs '%.40s', %d tokens)",
              i, smp[i].temperature, smp[i].top_p, (unsigned long long)smp[i].seed, got ? got : "(none)", want ? want : "(none)",
              end.completion_tokens);
        free(want);
        free(got);
        srv_job_release(jobs[i]);
    }
    srv_job *after = NULL;
    check(srv_sched_submit(s, &late, &after, &need) == MMM_OK, "scheduler: sessions freed by finished jobs admit new ones");
    srv_output end = {0};
    char *got = after ? finish(after, &end) : NULL;
    check(got && end.completion_tokens == 4, "scheduler: ... and answer them");
    free(got);
    srv_job_release(after);
    srv_stats st;
    srv_sched_stats(s, &st);
    check(st.active == 0 && st.queued == 0 && st.state_bytes == 0 && st.generated_tokens == 24 + 31 + 17 + 4,
          "scheduler: counters after the jobs (%lld tokens, %d active, %zu bytes)", st.generated_tokens, st.active, st.state_bytes);
    srv_sched_free(s);
    mmm_model_free(m);
}

TEST(serve_sched_admission_and_cancel) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "fixture%s%s", f ? "" : ": ", f ? "" : mmm_last_error())) return;
    mmm_model *m = tiny_model(f);
    if (!check(m != NULL, "model%s%s", m ? "" : ": ", m ? "" : mmm_last_error())) return;
    const mmm_sampler greedy = {0, 0, 1, 0};
    srv_sched *s = NULL;
    srv_sched_options small = {4, 0, 1000, 0};
    srv_job *j = NULL;
    size_t need = 0;
    if (!srv_sched_start(&s, m, f->tok, &small)) {
        srv_job_spec spec = spec_of(f->tok, &greedy, 8);
        int rc = srv_sched_submit(s, &spec, &j, &need);
        check(rc == SRV_TOO_BIG && !j && need > 1000,
              "scheduler: a job whose state alone is over the budget is refused (%zu bytes)", need);
        srv_sched_free(s);
    }
    srv_sched_options one = {1, 0, (size_t)1 << 30, 0};
    if (!check(!srv_sched_start(&s, m, f->tok, &one), "scheduler starts")) { mmm_model_free(m); return; }
    srv_job_spec spec = spec_of(f->tok, &greedy, 3000), second = spec_of(f->tok, &greedy, 4);
    int rc = srv_sched_submit(s, &spec, &j, &need);
    srv_output o = {0};
    int got_text = 0;
    for (int i = 0; i < 1200 && !rc && !got_text; i++) {
        got_text = srv_job_wait(j, 50, &o) && o.text;
        free(o.text);
    }
    srv_job *k = NULL;
    check(!rc && got_text && srv_sched_submit(s, &second, &k, &need) == SRV_BUSY && !k,
          "scheduler: with its one session generating and no queue, another job is refused");
    srv_job_release(j);
    srv_stats st = {0};
    for (int i = 0; i < 1000; i++) {
        srv_sched_stats(s, &st);
        if (st.active == 0) break;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    check(st.active == 0 && st.state_bytes == 0 && st.cancelled == 1 && st.generated_tokens < 3000,
          "scheduler: a released job is cancelled and its session freed (%d active, %zu bytes, %lld cancelled)", st.active,
          st.state_bytes, st.cancelled);
    srv_job_spec third = spec_of(f->tok, &greedy, 3000);
    check(srv_sched_submit(s, &third, &k, &need) == MMM_OK, "scheduler: the freed session takes a new job");
    srv_sched_stop(s); /* a job still running when the server stops ends with an error its client sees */
    o = (srv_output){0};
    char *text = finish(k, &o);
    check(text && o.finish == SRV_FINISH_ERROR && strstr(o.error, "shutting down"), "scheduler: stopping ends running jobs (%s)",
          o.error);
    free(text);
    srv_job_release(k);
    srv_sched_free(s);
    mmm_model_free(m);
}
