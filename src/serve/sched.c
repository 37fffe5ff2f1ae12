/* The scheduler (sched.h): admission, and one engine thread that serves the running sessions
 * together: each turn feeds a piece of one prompt (--prefill-chunk tokens) and samples a token of
 * every session whose logits wait, then feeds the tokens of those that go on to one step of the
 * pool (mmm/pool.h), continuous batching. One mutex guards the lists, the counters and every
 * job's output; the model runs outside it. */
#include "sched.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mmm/error.h"
#include "mmm/threads.h"
#include "session.h"

/* A session whose client has not taken this much text yet is skipped (a slow reader must not
 * make the server hold its whole answer). */
#define BACKLOG_BYTES (1u << 20)

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE } job_phase;

struct srv_job {
    srv_sched *s;
    srv_job_spec spec;
    size_t need;           /* state bytes reserved while running */
    job_phase phase;
    int cancelled, released;
    pthread_cond_t cv;     /* output arrived or the job ended */
    /* output, guarded by the scheduler's mutex */
    char *out;
    size_t out_len, out_cap;
    srv_finish finish;
    int completion_tokens;
    char error[256];
    srv_session sess;      /* the engine's own: touched outside the mutex by the engine thread only */
};

struct srv_sched {
    const mmm_model *m;
    const mmm_tokenizer *tok;
    srv_sched_options o;
    pthread_mutex_t mu;
    pthread_cond_t work;   /* a job arrived, was cancelled, or a client took its text */
    pthread_t thread;
    int started, stopping;
    srv_job **run, **queue; /* (max_sessions), (max_queue) */
    int n_run, n_queue;
    mmm_pool *pool;        /* the sessions' sequences, used by the engine thread only */
    /* the engine's turn: the sessions that sample, their results, the tokens fed and from whom */
    srv_job **dec;         /* (max_sessions) */
    srv_step *steps;       /* (max_sessions) */
    int *seqs, *fed_from;  /* (max_sessions) */
    int32_t *feed;         /* (max_sessions) */
    int n_fed;
    float *logits;         /* (n_fed, V) */
    size_t logits_cap;
    size_t used;
    srv_stats st;
    struct timespec busy_since;
};

/* Condition variables time their waits on the monotonic clock, which a change of the date does
 * not move. */
static void cond_init(pthread_cond_t *cv) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

/* The monotonic time ms milliseconds from now. */
static struct timespec after_ms(int ms) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static double seconds_between(struct timespec a, struct timespec b) {
    return (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
}

static void spec_free(srv_job_spec *spec) {
    free(spec->ids);
    free(spec->pixels);
    for (int i = 0; i < spec->n_stop; i++) free(spec->stop[i]);
    spec->ids = NULL;
    spec->pixels = NULL;
    spec->n_stop = 0;
}

static void job_free(srv_job *j) {
    spec_free(&j->spec);
    pthread_cond_destroy(&j->cv);
    free(j->out);
    free(j);
}

/* Under the mutex: moves queued jobs into free sessions while the budget allows, in order. */
static void admit_locked(srv_sched *s) {
    while (s->n_queue && s->n_run < s->o.max_sessions && s->used + s->queue[0]->need <= s->o.max_memory) {
        srv_job *j = s->queue[0];
        memmove(s->queue, s->queue + 1, (size_t)--s->n_queue * sizeof *s->queue);
        if (s->n_run == 0) clock_gettime(CLOCK_MONOTONIC, &s->busy_since);
        j->phase = JOB_RUNNING;
        s->run[s->n_run++] = j;
        s->used += j->need;
    }
}

/* Under the mutex: appends text to the job's output. */
static void emit_locked(srv_job *j, const char *text, size_t len) {
    if (!len) return;
    if (j->out_len + len + 1 > j->out_cap) {
        size_t cap = (j->out_len + len + 1) * 2;
        char *grown = realloc(j->out, cap);
        if (!grown) { /* the answer cannot be delivered whole: end it */
            j->finish = SRV_FINISH_ERROR;
            snprintf(j->error, sizeof j->error, "out of memory holding the answer");
            return;
        }
        j->out = grown;
        j->out_cap = cap;
    }
    memcpy(j->out + j->out_len, text, len);
    j->out_len += len;
    j->out[j->out_len] = '\0';
}

/* Under the mutex: takes a finished (or cancelled) running job out of its session. The caller
 * frees the engine's part outside the mutex. */
static void retire_locked(srv_sched *s, int i) {
    srv_job *j = s->run[i];
    memmove(s->run + i, s->run + i + 1, (size_t)(s->n_run - i - 1) * sizeof *s->run);
    if (--s->n_run == 0) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        s->st.busy_seconds += seconds_between(s->busy_since, now);
    }
    s->used -= j->need;
    j->phase = JOB_DONE;
    admit_locked(s);
}

/* Outside the mutex, on the engine thread: the session's sequence closed. */
static void end_session(srv_sched *s, srv_job *j) { srv_session_free(&j->sess, s->pool); }

/* Room for the logits of n sessions fed in one step. */
static int reserve_logits(srv_sched *s, int n) {
    size_t want = (size_t)n * s->m->cfg.vocab;
    if (want <= s->logits_cap) return MMM_OK;
    float *grown = realloc(s->logits, want * sizeof *grown);
    if (!grown) return mmm_fail(MMM_ERR_NOMEM, "the logits of %d sessions: out of memory", n);
    s->logits = grown;
    s->logits_cap = want;
    return MMM_OK;
}

/* One turn's model work, outside the mutex: a piece of pre's prompt (when there is one), then a
 * token sampled for each of the n sessions in s->dec (pre joins them once its prompt is in), and
 * the tokens of those that go on fed to one pool step. Returns the prompt tokens fed. */
static int run_turn(srv_sched *s, srv_job *pre, srv_step *pre_step, int *n) {
    int fed = 0, V = s->m->cfg.vocab, nf = 0;
    if (pre) {
        fed = srv_session_prefill(&pre->sess, s->pool, s->m, s->tok, &pre->spec, s->o.prefill_chunk, pre_step);
        if (pre->sess.ready) s->dec[(*n)++] = pre;
    }
    for (int k = 0; k < *n; k++) {
        srv_job *j = s->dec[k];
        if (srv_session_sample(&j->sess, s->m, s->tok, &j->spec, &s->steps[k], &s->feed[nf])) {
            s->seqs[nf] = j->sess.seq;
            s->fed_from[nf++] = k;
        }
    }
    int rc = nf ? reserve_logits(s, nf) : MMM_OK;
    if (!rc && nf) rc = mmm_pool_decode(s->pool, nf, s->seqs, s->feed, s->logits);
    for (int f = 0; f < nf; f++) {
        int k = s->fed_from[f];
        srv_job *j = s->dec[k];
        if (rc) {
            s->steps[k].finish = SRV_FINISH_ERROR;
            snprintf(s->steps[k].error, sizeof s->steps[k].error, "%s", mmm_last_error());
        } else {
            memcpy(j->sess.logits, s->logits + (size_t)f * V, (size_t)V * sizeof *s->logits);
            j->sess.ready = 1;
        }
    }
    s->n_fed = nf;
    for (int k = 0; k < *n; k++)
        if (s->steps[k].finish) end_session(s, s->dec[k]);
    if (pre && pre_step->finish) end_session(s, pre);
    return fed;
}

/* Under the mutex: a job's step result delivered (text, the end), the job retired once over. */
static void deliver_locked(srv_sched *s, srv_job *j, srv_step *r) {
    srv_finish finish = r->finish;
    j->completion_tokens = j->sess.n_gen;
    emit_locked(j, r->delta, r->n_delta);
    free(r->delta);
    r->delta = NULL;
    if (finish && !j->finish) {
        j->finish = finish;
        if (finish == SRV_FINISH_ERROR) {
            memcpy(j->error, r->error, sizeof j->error);
            s->st.failed++;
        }
    }
    if (j->finish) {
        if (!finish) { /* ended by emit_locked: free the engine's part while the job is still running, so
                        * that a client releasing it cannot free it under the engine */
            pthread_mutex_unlock(&s->mu);
            end_session(s, j);
            pthread_mutex_lock(&s->mu);
        }
        for (int i = 0; i < s->n_run; i++)
            if (s->run[i] == j) retire_locked(s, i);
    }
    pthread_cond_broadcast(&j->cv);
    if (j->finish && j->released) job_free(j);
}

static void *engine(void *arg) {
    srv_sched *s = arg;
    mmm_threads_adopt(); /* the steps run here, on the thread count of -t */
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        /* queued jobs whose clients left are dropped before they take a session */
        for (int i = 0; i < s->n_queue; i++)
            if (s->queue[i]->cancelled) {
                srv_job *j = s->queue[i];
                memmove(s->queue + i, s->queue + i + 1, (size_t)(s->n_queue - i - 1) * sizeof *s->queue);
                s->n_queue--;
                i--;
                j->phase = JOB_DONE;
                if (j->released) job_free(j);
            }
        admit_locked(s);
        /* running jobs whose clients left give back their sessions */
        for (int i = 0; i < s->n_run; i++)
            if (s->run[i]->cancelled) {
                srv_job *j = s->run[i];
                retire_locked(s, i--);
                pthread_mutex_unlock(&s->mu);
                end_session(s, j);
                pthread_mutex_lock(&s->mu);
                if (j->released) job_free(j);
            }
        /* this turn: a piece of the oldest prompt not yet in, and a token of every session whose
         * logits wait, unless its client is behind */
        srv_job *pre = NULL;
        int n = 0;
        for (int i = 0; i < s->n_run; i++) {
            srv_job *j = s->run[i];
            if (!j->sess.ready) { if (!pre) pre = j; }
            else if (j->out_len < BACKLOG_BYTES) s->dec[n++] = j;
        }
        if (!pre && !n) {
            if (s->n_run == 0) pthread_cond_wait(&s->work, &s->mu);
            else { /* every client is behind: wait for one to take its text */
                struct timespec until = after_ms(20);
                pthread_cond_timedwait(&s->work, &s->mu, &until);
            }
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        srv_step pre_step = {0};
        int fed = run_turn(s, pre, &pre_step, &n);
        pthread_mutex_lock(&s->mu);
        s->st.prompt_tokens += fed;
        s->st.generated_tokens += n;
        if (s->n_fed) {
            s->st.decode_steps++;
            s->st.decode_rows += s->n_fed;
        }
        s->st.last_batch = s->n_fed;
        if (pre && pre_step.finish) deliver_locked(s, pre, &pre_step);
        for (int k = 0; k < n; k++) deliver_locked(s, s->dec[k], &s->steps[k]);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int srv_sched_start(srv_sched **out, const mmm_model *m, const mmm_tokenizer *tok, const srv_sched_options *o) {
    *out = NULL;
    if (o->max_sessions < 1 || o->max_queue < 0 || o->max_memory == 0)
        return mmm_fail(MMM_ERR_ARG, "scheduler: needs at least one session and some memory");
    srv_sched *s = calloc(1, sizeof *s);
    if (!s) return mmm_fail(MMM_ERR_NOMEM, "scheduler: out of memory");
    s->m = m;
    s->tok = tok;
    s->o = *o;
    size_t S = (size_t)o->max_sessions;
    s->run = calloc(S, sizeof *s->run);
    s->queue = calloc((size_t)o->max_queue + 1, sizeof *s->queue);
    s->dec = calloc(S, sizeof *s->dec);
    s->steps = calloc(S, sizeof *s->steps);
    s->seqs = calloc(S, sizeof *s->seqs);
    s->fed_from = calloc(S, sizeof *s->fed_from);
    s->feed = calloc(S, sizeof *s->feed);
    pthread_mutex_init(&s->mu, NULL);
    cond_init(&s->work);
    if (!s->run || !s->queue || !s->dec || !s->steps || !s->seqs || !s->fed_from || !s->feed) {
        srv_sched_free(s);
        return mmm_fail(MMM_ERR_NOMEM, "scheduler: out of memory");
    }
    int rc = mmm_pool_new(&s->pool, m, o->max_sessions);
    if (rc) {
        srv_sched_free(s);
        return rc;
    }
    if (pthread_create(&s->thread, NULL, engine, s)) {
        srv_sched_free(s);
        return mmm_fail(MMM_ERR_NOMEM, "scheduler: cannot start the engine thread");
    }
    s->started = 1;
    *out = s;
    return MMM_OK;
}

void srv_sched_stop(srv_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    if (s->started) pthread_join(s->thread, NULL);
    /* the engine is gone: end what it held; clients see the error and release their jobs */
    for (int i = 0; i < s->n_queue + s->n_run; i++) {
        srv_job *j = i < s->n_queue ? s->queue[i] : s->run[i - s->n_queue];
        end_session(s, j);
        pthread_mutex_lock(&s->mu);
        j->phase = JOB_DONE;
        if (!j->finish) {
            j->finish = SRV_FINISH_ERROR;
            snprintf(j->error, sizeof j->error, "the server is shutting down");
        }
        pthread_cond_broadcast(&j->cv);
        int gone = j->released;
        pthread_mutex_unlock(&s->mu);
        if (gone) job_free(j);
    }
    s->n_queue = s->n_run = 0;
    s->started = 0;
}

void srv_sched_free(srv_sched *s) {
    if (!s) return;
    srv_sched_stop(s);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    mmm_pool_free(s->pool);
    free(s->run);
    free(s->queue);
    free(s->dec);
    free(s->steps);
    free(s->seqs);
    free(s->fed_from);
    free(s->feed);
    free(s->logits);
    free(s);
}

int srv_sched_submit(srv_sched *s, srv_job_spec *spec, srv_job **job, size_t *need) {
    *job = NULL;
    /* the state, the logits and sampler scratch, and the image tiles held until the prefill */
    const mmm_config *c = &s->m->cfg;
    *need = mmm_state_estimate_bytes(s->m, spec->n_ids + spec->max_tokens) + (size_t)c->vocab * 3 * sizeof(float) +
            (size_t)spec->n_tiles * 3 * c->tile_size * c->tile_size * sizeof(float);
    pthread_mutex_lock(&s->mu);
    s->st.requests++;
    int rc = s->stopping ? SRV_BUSY
             : *need > s->o.max_memory ? SRV_TOO_BIG
             : s->n_queue >= s->o.max_queue &&
                       (s->n_queue || s->n_run >= s->o.max_sessions || s->used + *need > s->o.max_memory)
                 ? SRV_BUSY
                 : MMM_OK;
    srv_job *j = rc ? NULL : calloc(1, sizeof *j);
    if (!rc && !j) rc = mmm_fail(MMM_ERR_NOMEM, "scheduler: out of memory");
    if (rc) {
        s->st.rejected++;
        pthread_mutex_unlock(&s->mu);
        spec_free(spec);
        return rc;
    }
    j->s = s;
    j->spec = *spec;
    j->need = *need;
    j->phase = JOB_QUEUED;
    srv_session_init(&j->sess);
    cond_init(&j->cv);
    memset(spec, 0, sizeof *spec);
    s->queue[s->n_queue++] = j; /* admit_locked takes it at once when a session is free */
    admit_locked(s);
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    *job = j;
    return MMM_OK;
}

int srv_job_wait(srv_job *j, int timeout_ms, srv_output *out) {
    srv_sched *s = j->s;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->mu);
    if (!j->out_len && !j->finish) {
        struct timespec until = after_ms(timeout_ms);
        while (!j->out_len && !j->finish && !pthread_cond_timedwait(&j->cv, &s->mu, &until)) {}
    }
    int got = j->out_len > 0;
    if (got) {
        out->text = j->out;
        out->len = j->out_len;
        j->out = NULL;
        j->out_len = j->out_cap = 0;
        if (j->phase == JOB_RUNNING) pthread_cond_signal(&s->work); /* it may have been held back */
    }
    if (j->finish && j->phase == JOB_DONE) {
        got = 1;
        out->finish = j->finish;
        out->prompt_tokens = j->spec.n_ids;
        out->completion_tokens = j->completion_tokens;
        memcpy(out->error, j->error, sizeof out->error);
    }
    pthread_mutex_unlock(&s->mu);
    return got;
}

void srv_job_release(srv_job *j) {
    if (!j) return;
    srv_sched *s = j->s;
    pthread_mutex_lock(&s->mu);
    j->released = 1;
    if (!j->finish && !j->cancelled) {
        j->cancelled = 1;
        s->st.cancelled++;
        pthread_cond_signal(&s->work);
    }
    int gone = j->phase == JOB_DONE;
    pthread_mutex_unlock(&s->mu);
    if (gone) job_free(j);
}

void srv_sched_stats(srv_sched *s, srv_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    if (s->n_run) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        out->busy_seconds += seconds_between(s->busy_since, now);
    }
    out->active = s->n_run;
    out->queued = s->n_queue;
    out->state_bytes = s->used;
    out->max_memory = s->o.max_memory;
    out->max_sessions = s->o.max_sessions;
    pthread_mutex_unlock(&s->mu);
}
