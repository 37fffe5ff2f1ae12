/* The Fashion-MNIST dataset's PNG files: 28×28 source images and 56×56 2×2 grids, gray,
 * encoded in memory by stb_image_write (libstb) and written atomically, many at a time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image_write.h>

#include "fmnist_internal.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/path.h"

#define SIDE MMM_FMNIST_SIDE
#define BATCH 512 /* images between progress calls */

void fm_image_path(char *buf, size_t size, const fm_image_job *job) {
    const char *split = job->split == MMM_FMNIST_TRAIN ? "train" : "test";
    if (job->grid) snprintf(buf, size, "images/%s/grid-%06ld.png", split, job->index);
    else snprintf(buf, size, "images/%s/%05ld.png", split, job->index);
}

typedef struct {
    unsigned char *data;
    size_t len, cap;
    int failed;
} membuf;

static void append(void *ctx, void *data, int size) {
    membuf *m = ctx;
    if (m->failed) return;
    if (m->len + (size_t)size > m->cap) {
        size_t cap = 2 * (m->len + (size_t)size) + 256;
        unsigned char *p = realloc(m->data, cap);
        if (!p) {
            m->failed = 1;
            return;
        }
        m->data = p;
        m->cap = cap;
    }
    memcpy(m->data + m->len, data, (size_t)size);
    m->len += (size_t)size;
}

static int write_one(const char *out_dir, const fm_image_job *job, const mmm_fmnist_split splits[2],
                     const fm_plan plans[2], uint64_t *bytes) {
    const mmm_fmnist_split *s = &splits[job->split];
    uint8_t grid[4 * SIDE * SIDE];
    const uint8_t *px = s->pixels + (size_t)job->index * SIDE * SIDE;
    int side = SIDE;
    if (job->grid) { /* quadrants row-major: top left, top right, bottom left, bottom right */
        const fm_plan *p = &plans[job->split];
        const int32_t *img = p->pool + p->samples[job->index].first;
        side = 2 * SIDE;
        for (int q = 0; q < 4; q++)
            for (int y = 0; y < SIDE; y++)
                memcpy(grid + (size_t)(SIDE * (q / 2) + y) * side + SIDE * (q % 2),
                       s->pixels + ((size_t)img[q] * SIDE + y) * SIDE, SIDE);
        px = grid;
    }
    char rel[64];
    fm_image_path(rel, sizeof rel, job);
    char *path = mmm_path_join(out_dir, rel);
    membuf m = {0};
    int rc;
    if (!path) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", out_dir);
    else if (!stbi_write_png_to_func(append, &m, side, side, 1, px, side) || m.failed)
        rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory encoding the PNG", path);
    else rc = mmm_write_file_atomic(path, m.data, m.len);
    if (!rc) *bytes += m.len;
    free(m.data);
    free(path);
    return rc;
}

int fm_write_images(const char *out_dir, const fm_image_job *jobs, long n, const mmm_fmnist_split splits[2],
                    const fm_plan plans[2], const mmm_fmnist_options *o, uint64_t *bytes) {
    int failed = MMM_OK;
    char message[1024] = "";
    for (long lo = 0; lo < n && !failed; lo += BATCH) {
        long hi = lo + BATCH < n ? lo + BATCH : n;
        uint64_t batch_bytes = 0;
        /* mmm_fail's message is per thread: the first failing thread copies its own out */
#pragma omp parallel for schedule(dynamic, 8) reduction(+ : batch_bytes)
        for (long j = lo; j < hi; j++) {
            int stop;
#pragma omp atomic read
            stop = failed;
            if (stop) continue;
            uint64_t b = 0;
            int rc = write_one(out_dir, &jobs[j], splits, plans, &b);
            batch_bytes += b;
            if (rc) {
#pragma omp critical(fmnist_image_error)
                if (!failed) {
                    snprintf(message, sizeof message, "%s", mmm_last_error());
#pragma omp atomic write
                    failed = rc;
                }
            }
        }
        *bytes += batch_bytes;
        if (!failed && o->progress) o->progress(o->progress_ctx, hi, n);
    }
    return failed ? mmm_fail(failed, "%s", message) : MMM_OK;
}
