/* Helpers of the CUDA op tests: the GPU check, device buffers freed together, uploads in fp32 or
 * bf16 (the host values rounded to what the device stores), NaN-poisoned outputs, downloads. */
#ifndef MMM_TESTS_CUDA_UTIL_H
#define MMM_TESTS_CUDA_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "../harness.h"
#include "mmm/dtype.h"

#define F32 MMM_DTYPE_F32
#define BF16 MMM_DTYPE_BF16

/* Whether a GPU is usable; without one prints "cuda WHAT skipped (no GPU)". */
bool cu_gpu(const char *what);
/* Device memory freed by the next cu_release(); aborts when out of memory. */
void *cu_dalloc(size_t bytes);
void cu_release(void);
const char *cu_dtn(mmm_dtype dt); /* "f32" or "bf16" */
size_t cu_esz(mmm_dtype dt);      /* bytes per element */
/* Rounds host values to what dtype dt stores, so the CPU sees the GPU's inputs. */
void cu_rnd(float *x, size_t n, mmm_dtype dt);
void *cu_up(const float *x, size_t n, mmm_dtype dt);    /* a device copy of x in dt */
void *cu_up_bytes(const void *x, size_t bytes);
void *cu_poisoned(size_t n, mmm_dtype dt);              /* n elements of NaN */
float *cu_down(const void *d, size_t n, mmm_dtype dt);  /* malloc'd host floats */
float *cu_rand_host(rng_t *r, size_t n, float lo, float hi, mmm_dtype dt); /* uniform, rounded */
float *cu_copy_of(const float *x, size_t n);
/* The launch's status, then the kernels' (errors surface at the sync); a failed check if not OK. */
bool cu_ran(int rc, const char *what);

#endif
