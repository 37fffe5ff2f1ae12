/* Helpers of the CUDA op tests (cuda_util.h). */
#include "cuda_util.h"

#ifdef MMM_WITH_CUDA
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/cuda.h"
#include "mmm/error.h"

static int g_gpu; /* 0 unknown, 1 usable, −1 none */

bool cu_gpu(const char *what) {
    if (!g_gpu) g_gpu = mmm_cuda_init(0, NULL) == MMM_OK ? 1 : -1;
    if (g_gpu < 0) printf("cuda %s skipped (no GPU)\n", what);
    return g_gpu > 0;
}

#define MAX_BUFS 64
static void *g_bufs[MAX_BUFS];
static int g_nbufs;

void *cu_dalloc(size_t bytes) {
    void *p = NULL;
    if (mmm_cuda_malloc(&p, bytes + 16) || g_nbufs == MAX_BUFS) {
        fprintf(stderr, "cuda tests: %s\n", g_nbufs == MAX_BUFS ? "too many buffers" : mmm_last_error());
        abort();
    }
    return g_bufs[g_nbufs++] = p;
}

void cu_release(void) {
    while (g_nbufs) mmm_cuda_free(g_bufs[--g_nbufs]);
}

const char *cu_dtn(mmm_dtype dt) { return dt == BF16 ? "bf16" : "f32"; }
size_t cu_esz(mmm_dtype dt) { return dt == BF16 ? 2 : 4; }

void cu_rnd(float *x, size_t n, mmm_dtype dt) {
    if (dt == BF16)
        for (size_t i = 0; i < n; i++) x[i] = mmm_bf16_to_f32(mmm_f32_to_bf16(x[i]));
}

void *cu_up(const float *x, size_t n, mmm_dtype dt) {
    void *d = cu_dalloc(n * cu_esz(dt));
    if (dt == BF16) {
        uint16_t *h = malloc(n * 2 + 2);
        mmm_f32_to_bf16_array(h, x, n);
        mmm_cuda_upload(d, h, n * 2);
        free(h);
    } else {
        mmm_cuda_upload(d, x, n * 4);
    }
    return d;
}

void *cu_up_bytes(const void *x, size_t bytes) {
    void *d = cu_dalloc(bytes);
    mmm_cuda_upload(d, x, bytes);
    return d;
}

/* 0xFF bytes are NaN in fp32 and bf16 */
void *cu_poisoned(size_t n, mmm_dtype dt) {
    void *d = cu_dalloc(n * cu_esz(dt));
    mmm_cuda_memset(d, 0xFF, n * cu_esz(dt));
    return d;
}

float *cu_down(const void *d, size_t n, mmm_dtype dt) {
    float *h = malloc(n * sizeof *h + 4);
    if (dt == BF16) {
        uint16_t *b = malloc(n * 2 + 2);
        mmm_cuda_download(b, d, n * 2);
        mmm_bf16_to_f32_array(h, b, n);
        free(b);
    } else {
        mmm_cuda_download(h, d, n * 4);
    }
    return h;
}

float *cu_rand_host(rng_t *r, size_t n, float lo, float hi, mmm_dtype dt) {
    float *x = alloc_uniform(r, n, lo, hi);
    cu_rnd(x, n, dt);
    return x;
}

float *cu_copy_of(const float *x, size_t n) {
    float *c = malloc(n * sizeof *c + 4);
    memcpy(c, x, n * sizeof *c);
    return c;
}

bool cu_ran(int rc, const char *what) {
    if (!rc) rc = mmm_cuda_sync();
    if (rc) check(false, "cuda %s: %s", what, mmm_last_error());
    return rc == 0;
}
#endif
