#include "golden_io.h"

#include <stdlib.h>

float *golden_read_f32(const mmm_st_file *f, const char *name, size_t *n) {
    const mmm_st_tensor *t = mmm_st_find(f, name);
    if (!t) return NULL;
    float *x = malloc((t->numel ? t->numel : 1) * sizeof *x);
    if (!x || mmm_st_read_f32(t, x, t->numel)) { free(x); return NULL; }
    if (n) *n = t->numel;
    return x;
}

int32_t *golden_read_i32(const mmm_st_file *f, const char *name, size_t *n) {
    const mmm_st_tensor *t = mmm_st_find(f, name);
    if (!t) return NULL;
    int32_t *x = malloc((t->numel ? t->numel : 1) * sizeof *x);
    if (!x || mmm_st_read_i32(t, x, t->numel)) { free(x); return NULL; }
    if (n) *n = t->numel;
    return x;
}
