/* The scheduler (sched.h): admission, and one engine thread that serves the running sessions
 * round-robin, one step each (session.c: a whole prefill, or one token), so concurrent requests
 * interleave token by token. One mutex guards the lists, the counters and every job's output;
 * the model runs outside it. */
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
    int n_run, n_queue, next;
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
    if (s->next > i) s->next--;
    s->used -= j->need;
    j->phase = JOB_DONE;
    admit_locked(s);
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
        /* the next session round-robin, skipping those whose clients are behind */
        srv_job *j = NULL;
        int idx = -1;
        for (int k = 0; k < s->n_run && !j; k++) {
            int i = (s->next + k) % s->n_run;
            if (s->run[i]->cancelled || s->run[i]->out_len < BACKLOG_BYTES) { j = s->run[i]; idx = i; }
        }
        if (!j) {
            if (s->n_run == 0) pthread_cond_wait(&s->work, &s->mu);
            else { /* every client is behind: wait for one to take its text */
                struct timespec until = after_ms(20);
                pthread_cond_timedwait(&s->work, &s->mu, &until);
            }
            continue;
        }
        s->next = idx + 1;
        if (j->cancelled) {
            retire_locked(s, idx);
            pthread_mutex_unlock(&s->mu);
            srv_session_free(&j->sess);
            pthread_mutex_lock(&s->mu);
            if (j->released) job_free(j);
            continue;
        }
        int prefill = j->sess.st == NULL;
        pthread_mutex_unlock(&s->mu);
        srv_step r;
        srv_session_step(&j->sess, s->m, s->tok, &j->spec, &r);
        srv_finish finish = r.finish;
        if (finish) srv_session_free(&j->sess);
        pthread_mutex_lock(&s->mu);
        if (prefill) s->st.prompt_tokens += j->spec.n_ids;
        else s->st.generated_tokens++;
        j->completion_tokens = j->sess.n_gen;
        emit_locked(j, r.delta, r.n_delta);
        free(r.delta);
        if (finish && !j->finish) {
            j->finish = finish;
            if (finish == SRV_FINISH_ERROR) {
                memcpy(j->error, r.error, sizeof j->error);
                s->st.failed++;
            }
        }
        if (j->finish) {
            if (!finish) { /* ended by emit_locked: free the engine's part while the job is still running, so
                            * that a client releasing it cannot free it under the engine */
                pthread_mutex_unlock(&s->mu);
                srv_session_free(&j->sess);
                pthread_mutex_lock(&s->mu);
            }
            for (int i = 0; i < s->n_run; i++)
                if (s->run[i] == j) retire_locked(s, i);
        }
        pthread_cond_broadcast(&j->cv);
        if (j->finish && j->released) job_free(j);
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
    s->run = calloc((size_t)o->max_sessions, sizeof *s->run);
    s->queue = calloc((size_t)o->max_queue + 1, sizeof *s->queue);
    pthread_mutex_init(&s->mu, NULL);
    cond_init(&s->work);
    if (!s->run || !s->queue) {
        srv_sched_free(s);
        return mmm_fail(MMM_ERR_NOMEM, "scheduler: out of memory");
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
        srv_session_free(&j->sess);
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
    free(s->run);
    free(s->queue);
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
