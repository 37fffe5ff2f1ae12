/* Reading golden tensors from the reference scripts' safetensors files (tools/reference/). */
#ifndef MMM_TEST_GOLDEN_IO_H
#define MMM_TEST_GOLDEN_IO_H

#include <stddef.h>
#include <stdint.h>

#include "mmm/safetensors.h"

/* Tensor `name` of `f` as a malloc'd array; NULL when absent or unreadable. *n (may be NULL for
 * floats) receives the element count. */
float *golden_read_f32(const mmm_st_file *f, const char *name, size_t *n);
int32_t *golden_read_i32(const mmm_st_file *f, const char *name, size_t *n);

#endif
