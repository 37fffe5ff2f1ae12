/* One thread count for OpenMP and OpenBLAS (OpenBLAS's OpenMP build keeps its own count, which
 * it only follows OpenMP's at some calls: both are set). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "mmm/error.h"
#include "mmm/threads.h"

/* OpenMP keeps the count per thread; this is the one threads started later adopt. Written
 * before they start (pthread_create orders it), so a plain int. */
static int set_count;

int mmm_set_threads(int n) {
    if (n < 1 || n > MMM_MAX_THREADS)
        return mmm_fail(MMM_ERR_ARG, "thread count %d is outside [1, %d]", n, MMM_MAX_THREADS);
    set_count = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    char s[16];
    snprintf(s, sizeof s, "%d", n);
    /* processes started from here on (bench's measurements, demo's steps) start with the same count */
    if (setenv("OMP_NUM_THREADS", s, 1) || setenv("OPENBLAS_NUM_THREADS", s, 1))
        return mmm_fail(MMM_ERR_NOMEM, "cannot set OMP_NUM_THREADS to %s", s);
    return MMM_OK;
}

int mmm_threads(void) { return omp_get_max_threads(); }

void mmm_threads_adopt(void) {
    if (set_count) omp_set_num_threads(set_count);
}
