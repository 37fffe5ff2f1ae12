/* Shared by the Fashion-MNIST dataset generator's files: the plan of samples (which images,
 * which question) and the texts made from it. */
#ifndef MMM_FMNIST_INTERNAL_H
#define MMM_FMNIST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "mmm/fashion_mnist.h"
#include "mmm/rng.h"

#define FM_COUNT_MAX_IMAGES 6 /* short count questions show 3 to 6 images */
#define FM_ANSWER_MAX 24      /* "Ankle boot", "Image 4", "17" and NUL */

typedef struct {
    uint8_t task;  /* mmm_fmnist_task */
    uint8_t asked; /* yesno, which, count: the class asked about; grid: the corner, 0..3 row-major */
    int n;         /* images (a grid's four are composed into one picture) */
    size_t first;  /* where their indices into the split start in the plan's pool */
} fm_sample;

typedef struct {
    fm_sample *samples;
    long n;
    int32_t *pool;
} fm_plan;

/* Draws counts[t] samples of each task kind from split s (which has all ten classes), in
 * random order. */
int fm_plan_split(fm_plan *p, const mmm_fmnist_split *s, const long counts[MMM_FMNIST_N_TASKS],
                  mmm_rng *rng);
/* Draws n count questions over k images each. */
int fm_plan_long(fm_plan *p, const mmm_fmnist_split *s, long n, int k, mmm_rng *rng);
void fm_plan_free(fm_plan *p);

/* The human turn, with one <image> per image; malloc'd, NULL when out of memory. */
char *fm_question(const fm_sample *q);
/* The gpt turn, re-derived from the labels of the sample's images. */
void fm_answer(char out[FM_ANSWER_MAX], const fm_sample *q, const int32_t *images, const uint8_t *labels);

/* One PNG to write: a source image of a split, or the grid of one of its samples. */
typedef struct {
    uint8_t split; /* mmm_fmnist_split_id */
    uint8_t grid;
    long index;    /* the image's index in the split, or the grid's sample */
} fm_image_job;

/* "images/train/00123.png" or "images/train/grid-000042.png", relative to the output dir. */
void fm_image_path(char *buf, size_t size, const fm_image_job *job);

/* Writes the jobs' PNGs under out_dir (whose images/{train,test} exist), in parallel, calling
 * progress between batches; adds the bytes written to *bytes. */
int fm_write_images(const char *out_dir, const fm_image_job *jobs, long n, const mmm_fmnist_split splits[2],
                    const fm_plan plans[2], const mmm_fmnist_options *o, uint64_t *bytes);

#endif
