/* The generation engine behind `mmm serve`'s HTTP side: a scheduler that owns the sessions,
 * admits requests within a session count and a memory budget (a bounded queue for the rest),
 * runs the sessions on one engine thread — their decode steps together as one batch of a pool
 * (mmm/pool.h), prompts fed in pieces between them (continuous batching) — and hands each
 * request its text as it is generated. The HTTP side only submits jobs, waits on their output
 * and cancels them. */
#ifndef MMM_SERVE_SCHED_H
#define MMM_SERVE_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "mmm/forward.h"
#include "mmm/model.h"
#include "mmm/tokenizer.h"

typedef struct srv_sched srv_sched;
typedef struct srv_job srv_job;

typedef struct {
    int max_sessions;  /* sessions decoding at once */
    int max_queue;     /* admitted requests that wait for a session (0: refuse at once) */
    size_t max_memory; /* bytes all sessions' states may hold together */
    int prefill_chunk; /* prompt tokens fed per turn, between the decode steps (0: a whole prompt) */
} srv_sched_options;

#define SRV_MAX_STOP 4 /* stop strings per request, as OpenAI allows */

/* What to generate. submit takes ownership of ids, pixels and stop (on failure too). */
typedef struct {
    int32_t *ids;          /* (n_ids) the prompt */
    int n_ids;
    float *pixels;         /* (n_tiles, 3, S, S) or NULL */
    int n_tiles;
    int max_tokens;        /* tokens to generate at most */
    mmm_sampler sampler;
    int32_t stop_id;       /* the chat template's end of turn, or -1 */
    char *stop[SRV_MAX_STOP]; /* stop strings (the text ends before the first one) */
    int n_stop;
} srv_job_spec;

typedef enum { SRV_FINISH_NONE, SRV_FINISH_STOP, SRV_FINISH_LENGTH, SRV_FINISH_ERROR } srv_finish;

/* What a wait hands back: text generated since the last wait, and once the job is over, why. */
typedef struct {
    char *text;            /* malloc'd (NULL when there is none); the caller frees it */
    size_t len;
    srv_finish finish;     /* SRV_FINISH_NONE while the job goes on */
    int prompt_tokens, completion_tokens;
    char error[256];       /* with SRV_FINISH_ERROR */
} srv_output;

/* Admission outcomes of srv_sched_submit besides MMM_OK. */
enum { SRV_BUSY = 1, SRV_TOO_BIG = 2 };

typedef struct {
    long long requests, rejected, cancelled, failed, prompt_tokens, generated_tokens;
    long long decode_steps, decode_rows; /* pool steps, and the tokens they fed together */
    int last_batch;        /* tokens the last turn fed together */
    double busy_seconds;   /* time with at least one session running */
    int active, queued;
    size_t state_bytes, max_memory;
    int max_sessions;
} srv_stats;

/* Starts the engine thread over m and tok (both must outlive the scheduler). */
int srv_sched_start(srv_sched **out, const mmm_model *m, const mmm_tokenizer *tok, const srv_sched_options *o);
/* Ends every job (clients see an error), joins the engine thread and frees the jobs already
 * released; a job released later is freed by its release. srv_sched_free (stopping first if
 * need be) frees the scheduler, once no client holds a job. */
void srv_sched_stop(srv_sched *s);
void srv_sched_free(srv_sched *s);
/* Admits a job: MMM_OK (*job set, running or queued), SRV_BUSY (every session and queue slot is
 * taken, or the memory budget is), SRV_TOO_BIG (the job alone needs more than the memory
 * budget), or an mmm error code. *need receives the bytes the job reserves while it runs: its
 * state (mmm_state_estimate_bytes), logits, and image tiles. */
int srv_sched_submit(srv_sched *s, srv_job_spec *spec, srv_job **job, size_t *need);
/* Waits up to timeout_ms for new text or the end; returns 1 when out holds something (text or
 * a finish), 0 on timeout. */
int srv_job_wait(srv_job *j, int timeout_ms, srv_output *out);
/* The client is done with the job: an unfinished job is cancelled, its state freed by the
 * engine. The job must not be used after this. */
void srv_job_release(srv_job *j);
void srv_sched_stats(srv_sched *s, srv_stats *out);

#endif
