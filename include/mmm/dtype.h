/* Element types of stored tensors (the safetensors dtypes mmm handles) and conversions between
 * fp32 and the 16-bit float formats. Computation is always fp32; bf16/fp16 exist only at the
 * edges (checkpoints, dumps). Conversions round to nearest, ties to even, and keep NaN a NaN. */
#ifndef MMM_DTYPE_H
#define MMM_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    MMM_DTYPE_F32,
    MMM_DTYPE_F16,  /* IEEE 754 binary16 */
    MMM_DTYPE_BF16, /* the top 16 bits of an fp32 */
    MMM_DTYPE_I32,
    MMM_DTYPE_I64,
    MMM_DTYPE_COUNT
} mmm_dtype;

/* Bytes per element; 0 for a value outside the enum. */
size_t mmm_dtype_size(mmm_dtype t);
/* The safetensors spelling ("F32", "BF16", ...); "?" for a value outside the enum. */
const char *mmm_dtype_name(mmm_dtype t);
/* Parses a safetensors dtype string. A dtype of the format that mmm does not handle (F64, U8,
 * BOOL, F8_E4M3, ...) is MMM_ERR_UNSUPPORTED, any other string MMM_ERR_FORMAT; both leave a
 * message naming the string, for the caller to prefix with the file and tensor. */
int mmm_dtype_parse(mmm_dtype *out, const char *s);

uint16_t mmm_f32_to_bf16(float x);
float mmm_bf16_to_f32(uint16_t h);
/* Values beyond ±65504 round to ±inf; below 2^-14 they become subnormals or ±0. */
uint16_t mmm_f32_to_f16(float x);
float mmm_f16_to_f32(uint16_t h);

/* The same over arrays (n elements each; threaded for large n). */
void mmm_f32_to_bf16_array(uint16_t *dst, const float *src, size_t n);
void mmm_bf16_to_f32_array(float *dst, const uint16_t *src, size_t n);
void mmm_f32_to_f16_array(uint16_t *dst, const float *src, size_t n);
void mmm_f16_to_f32_array(float *dst, const uint16_t *src, size_t n);

#endif
