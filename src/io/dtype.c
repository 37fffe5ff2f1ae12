#include "mmm/dtype.h"

#include "mmm/error.h"

#include <string.h>

static const char *const names[MMM_DTYPE_COUNT] = {"F32", "F16", "BF16", "I32", "I64"};
static const size_t sizes[MMM_DTYPE_COUNT] = {4, 2, 2, 4, 8};

/* dtypes the safetensors format defines but mmm does not read; they get a clearer message than
 * a string that is no dtype at all */
static const char *const other_format_dtypes[] = {
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2",
    "I16", "U16", "U32", "F64", "U64", "C64",
};

size_t mmm_dtype_size(mmm_dtype t) { return (unsigned)t < MMM_DTYPE_COUNT ? sizes[t] : 0; }

const char *mmm_dtype_name(mmm_dtype t) { return (unsigned)t < MMM_DTYPE_COUNT ? names[t] : "?"; }

int mmm_dtype_parse(mmm_dtype *out, const char *s) {
    for (int t = 0; t < MMM_DTYPE_COUNT; t++)
        if (strcmp(s, names[t]) == 0) {
            *out = (mmm_dtype)t;
            return MMM_OK;
        }
    for (size_t i = 0; i < sizeof other_format_dtypes / sizeof *other_format_dtypes; i++)
        if (strcmp(s, other_format_dtypes[i]) == 0)
            return mmm_fail(MMM_ERR_UNSUPPORTED,
                            "unsupported dtype '%s' (mmm reads F32, F16, BF16, I32, I64)", s);
    return mmm_fail(MMM_ERR_FORMAT, "unknown dtype '%.40s'", s);
}

static uint32_t f32_bits(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

static float bits_f32(uint32_t b) {
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

uint16_t mmm_f32_to_bf16(float x) {
    uint32_t b = f32_bits(x);
    /* a NaN whose payload sits only in the low 16 bits would truncate to inf: force it quiet */
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x0040u);
    /* adding 0x7fff plus the kept lsb carries exactly when the dropped half is above the tie,
     * or at the tie with an odd kept part; a carry into the exponent is the correct rounding
     * (up to inf for values past the largest bf16) */
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

float mmm_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t mmm_f32_to_f16(float x) {
    uint32_t b = f32_bits(x);
    uint16_t sign = (uint16_t)((b >> 16) & 0x8000u);
    uint32_t a = b & 0x7fffffffu;

    if (a > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((a >> 13) & 0x3ffu); /* quiet NaN */
    /* 65520 is halfway between 65504 (odd mantissa) and 2^16: it and above round to inf */
    if (a >= 0x477ff000u) return sign | 0x7c00u;
    if (a >= 0x38800000u) { /* a normal half: rebias the exponent by 127 − 15 */
        uint32_t h = (a - 0x38000000u) >> 13, rest = a & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
        return sign | (uint16_t)h;
    }
    /* a subnormal half m·2^-24: shift the full significand right; below 2^-25 even the
     * round-up cannot reach 2^-24 (2^-25 itself is a tie that goes to the even 0) */
    uint32_t e = a >> 23, shift = 126 - e;
    if (shift > 24) return sign;
    uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    uint32_t m = mant >> shift, rest = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (m & 1u))) m++; /* m may reach 0x400, the least normal */
    return sign | (uint16_t)m;
}

float mmm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) { /* ±0 and subnormals, exact in fp32 */
        float v = (float)m * 0x1p-24f;
        return h & 0x8000u ? -v : v;
    }
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/* below this the threads cost more than they save */
#define PAR_MIN 65536

void mmm_f32_to_bf16_array(uint16_t *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = mmm_f32_to_bf16(src[i]);
}

void mmm_bf16_to_f32_array(float *dst, const uint16_t *src, size_t n) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = mmm_bf16_to_f32(src[i]);
}

void mmm_f32_to_f16_array(uint16_t *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = mmm_f32_to_f16(src[i]);
}

void mmm_f16_to_f32_array(float *dst, const uint16_t *src, size_t n) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = mmm_f16_to_f32(src[i]);
}
