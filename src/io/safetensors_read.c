/* Reading a validated tensor into a caller's buffer, converting the element type. Tensor data
 * in the mapping is aligned when the writer aligned it; other files go through a small aligned
 * staging buffer (or memcpy loads), so no misaligned access happens either way. */
#include "mmm/error.h"
#include "mmm/safetensors.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#define STAGE 4096 /* elements per staging chunk */

/* The checks every read starts with: the kind of dtype, then the element count. */
static int check_read(const mmm_st_tensor *t, bool is_float, size_t dst_numel) {
    bool float_dtype = t->dtype == MMM_DTYPE_F32 || t->dtype == MMM_DTYPE_F16 ||
                       t->dtype == MMM_DTYPE_BF16;
    if (float_dtype != is_float)
        return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s' is %s, expected %s", t->file, t->name,
                        mmm_dtype_name(t->dtype),
                        is_float ? "a float dtype (F32, F16, BF16)"
                                 : "an integer dtype (I32, I64)");
    if (dst_numel == t->numel) return MMM_OK;
    return mmm_fail(MMM_ERR_ARG, "%s: tensor '%s' has %zu elements but the destination holds %zu",
                    t->file, t->name, t->numel, dst_numel);
}

static bool aligned(const void *p, size_t a) { return (uintptr_t)p % a == 0; }

typedef void (*from16_fn)(float *dst, const uint16_t *src, size_t n);

static void read16_as_f32(float *dst, const void *src, size_t n, from16_fn conv) {
    if (aligned(src, 2)) {
        conv(dst, src, n);
        return;
    }
    uint16_t stage[STAGE];
    for (size_t i = 0; i < n; i += STAGE) {
        size_t k = n - i < STAGE ? n - i : STAGE;
        memcpy(stage, (const char *)src + 2 * i, 2 * k);
        conv(dst + i, stage, k);
    }
}

int mmm_st_read_f32(const mmm_st_tensor *t, float *dst, size_t dst_numel) {
    int rc = check_read(t, true, dst_numel);
    if (rc || t->numel == 0) return rc; /* dst may be NULL then */
    if (t->dtype == MMM_DTYPE_F32) memcpy(dst, t->data, t->nbytes);
    else if (t->dtype == MMM_DTYPE_BF16)
        read16_as_f32(dst, t->data, t->numel, mmm_bf16_to_f32_array);
    else read16_as_f32(dst, t->data, t->numel, mmm_f16_to_f32_array);
    return MMM_OK;
}

int mmm_st_read_bf16(const mmm_st_tensor *t, uint16_t *dst, size_t dst_numel) {
    int rc = check_read(t, true, dst_numel);
    if (rc || t->numel == 0) return rc; /* dst may be NULL then */
    if (t->dtype == MMM_DTYPE_BF16) {
        memcpy(dst, t->data, t->nbytes);
        return MMM_OK;
    }
    if (t->dtype == MMM_DTYPE_F32 && aligned(t->data, 4)) {
        mmm_f32_to_bf16_array(dst, t->data, t->numel);
        return MMM_OK;
    }
    /* F16 (exact in fp32, so one rounding) or misaligned F32, by chunks through fp32 */
    float stage[STAGE];
    for (size_t i = 0; i < t->numel; i += STAGE) {
        size_t k = t->numel - i < STAGE ? t->numel - i : STAGE;
        if (t->dtype == MMM_DTYPE_F32) memcpy(stage, (const char *)t->data + 4 * i, 4 * k);
        else read16_as_f32(stage, (const char *)t->data + 2 * i, k, mmm_f16_to_f32_array);
        mmm_f32_to_bf16_array(dst + i, stage, k);
    }
    return MMM_OK;
}

int mmm_st_read_i64(const mmm_st_tensor *t, int64_t *dst, size_t dst_numel) {
    int rc = check_read(t, false, dst_numel);
    if (rc || t->numel == 0) return rc; /* dst may be NULL then */
    const char *p = t->data;
    if (t->dtype == MMM_DTYPE_I64) {
        memcpy(dst, p, t->nbytes);
        return MMM_OK;
    }
    for (size_t i = 0; i < t->numel; i++) {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        dst[i] = v;
    }
    return MMM_OK;
}

int mmm_st_read_i32(const mmm_st_tensor *t, int32_t *dst, size_t dst_numel) {
    int rc = check_read(t, false, dst_numel);
    if (rc || t->numel == 0) return rc; /* dst may be NULL then */
    const char *p = t->data;
    if (t->dtype == MMM_DTYPE_I32) {
        memcpy(dst, p, t->nbytes);
        return MMM_OK;
    }
    for (size_t i = 0; i < t->numel; i++) {
        int64_t v;
        memcpy(&v, p + 8 * i, 8);
        if (v < INT32_MIN || v > INT32_MAX)
            return mmm_fail(MMM_ERR_FORMAT, "%s: tensor '%s': element %zu = %" PRId64
                            " does not fit in int32", t->file, t->name, i, v);
        dst[i] = (int32_t)v;
    }
    return MMM_OK;
}
