#ifndef MMM_TRAIN_INTERNAL_H
#define MMM_TRAIN_INTERNAL_H

#include <stdint.h>

#include "mmm/train.h"

/* Where a run stands: enough to continue it exactly. */
typedef struct {
    long step;        /* optimizer steps done */
    int epoch;        /* current pass over the data */
    int position;     /* next index into the epoch's order */
    uint64_t seed;    /* data order seed */
    double seconds;   /* training time so far */
    long tokens;      /* tokens seen so far */
    char name[32];
} trainer_state;

/* What a checkpoint must agree with to be resumed. */
typedef struct {
    const char *name;          /* the run's name ("train", "stage2") */
    long steps;                /* the step is at most this */
    int n_samples;             /* the data position is at most this */
    uint64_t seed;
    const mmm_run_facts *run;  /* NULL: not compared */
} ckpt_expect;

/* Takes out_dir/checkpoints/lock for this process (released when it exits, killed or not), so two runs
 * never write into one directory; *fd is closed by the caller when training ends. Holding the lock,
 * it removes what a killed run left half-written (step-N.tmp, step-N.del.tmp, NAME.tmp.PID). */
int ckpt_lock(const char *out_dir, int *fd);
/* Writes out_dir/checkpoints/step-N; on failure nothing of it is left behind. */
int ckpt_save(const char *out_dir, const mmm_model *m, const float *adam_m, const float *adam_v,
              const trainer_state *st, const mmm_run_facts *run, int keep);
/* Path of the newest complete checkpoint (malloc'd); MMM_ERR_NOT_FOUND when there is none. */
int ckpt_latest(const char *out_dir, char **dir);
/* Reads and checks dir's trainer_state.json: every field typed and in range for this run. A run
 * fact that differs (or a checkpoint that records none) is MMM_ERR_ARG with *run_differs = 1 and
 * the message saying what changed. */
int ckpt_load_state(const char *dir, const ckpt_expect *e, trainer_state *st, int *run_differs);
/* Loads the checkpoint's weights into m and its AdamW moments. */
int ckpt_load_weights(const char *dir, mmm_model *m, float *adam_m, float *adam_v);

#endif
