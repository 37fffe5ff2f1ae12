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

/* Takes out_dir/checkpoints/lock for this process (released when it exits, killed or not), so two runs
 * never write into one directory; *fd is closed by the caller when training ends. */
int ckpt_lock(const char *out_dir, int *fd);
int ckpt_save(const char *out_dir, const mmm_model *m, const float *adam_m, const float *adam_v,
              const trainer_state *st, int keep);
/* Path of the newest complete checkpoint; MMM_ERR_NOT_FOUND when there is none. */
int ckpt_latest(const char *out_dir, char *dir, size_t cap);
int ckpt_load(const char *dir, mmm_model *m, float *adam_m, float *adam_v, trainer_state *st);

#endif
