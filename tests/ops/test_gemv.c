/* One-row products (fp32, bf16 and int8 weights) vs float64, the int8 quantizer's error bounds,
 * bf16 rounding, and results that do not depend on the thread count. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/dtype.h"
#include "mmm/ops/dense.h"
#include "mmm/ops/gemv.h"

/* C not a multiple of 8 or 32 (the vector and block widths), a single output row, and products
 * large enough to be split over threads (the last two exceed the single-thread threshold). */
static const int shapes[][2] = {{1, 1}, {7, 1}, {33, 5}, {100, 1}, {1000, 3}, {2061, 67}, {67, 20000}, {2048, 1024}};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])

/* ref(OC) = w(OC, C) · x(C) + bias in float64 */
static void ref_product(double *ref, const double *w, const double *x, const float *bias, int C, int OC) {
    for (int o = 0; o < OC; o++) {
        double s = bias ? bias[o] : 0;
        for (int k = 0; k < C; k++) s += w[(size_t)o * C + k] * x[k];
        ref[o] = s;
    }
}

TEST(test_gemv_f32) {
    for (int i = 0; i < N_SHAPES; i++) {
        int C = shapes[i][0], OC = shapes[i][1];
        rng_t rng = rng_new(100 + i);
        float *w = alloc_uniform(&rng, (size_t)OC * C, -1, 1), *x = alloc_uniform(&rng, C, -1, 1);
        float *bias = i % 2 ? alloc_uniform(&rng, OC, -1, 1) : NULL, *out = alloc_zeros(OC);
        double *wd = to_f64(w, (size_t)OC * C), *xd = to_f64(x, C), *ref = malloc(sizeof(double) * OC);
        ref_product(ref, wd, xd, bias, C, OC);
        char name[128];
        snprintf(name, sizeof name, "gemv f32 C=%d OC=%d bias=%d", C, OC, bias != NULL);
        mmm_gemv_f32_forward(out, x, w, bias, C, OC);
        check_close(name, out, ref, OC, 1e-5);
        /* a linear layer of one row is this product */
        float *lin = alloc_zeros(OC);
        mmm_linear_forward(lin, x, w, bias, 1, C, OC);
        check(!memcmp(lin, out, sizeof(float) * OC), "linear N=1 C=%d OC=%d is the f32 gemv", C, OC);
        free(w); free(x); free(bias); free(out); free(wd); free(xd); free(ref); free(lin);
    }
}

/* A few rows (a batch of decoding sequences): each row is the one-row product of its input row,
 * bit for bit, and float64's to rounding; a linear layer of that many rows is this product. */
TEST(test_gemv_f32_few_rows) {
    static const int rows[] = {2, 3, 5, 12};
    for (int i = 0; i < N_SHAPES; i++)
        for (int r = 0; r < 4; r++) {
            int C = shapes[i][0], OC = shapes[i][1], N = rows[r];
            rng_t rng = rng_new(300 + 4 * i + r);
            float *w = alloc_uniform(&rng, (size_t)OC * C, -1, 1), *x = alloc_uniform(&rng, (size_t)N * C, -1, 1);
            float *bias = (i + r) % 2 ? alloc_uniform(&rng, OC, -1, 1) : NULL;
            float *out = alloc_zeros((size_t)N * OC), *one = alloc_zeros(OC), *lin = alloc_zeros((size_t)N * OC);
            double *wd = to_f64(w, (size_t)OC * C), *xd = to_f64(x, (size_t)N * C), *ref = malloc(sizeof(double) * OC);
            mmm_gemv_f32_few_forward(out, x, w, bias, N, C, OC);
            mmm_linear_forward(lin, x, w, bias, N, C, OC);
            int same = 1;
            for (int n = 0; n < N; n++) {
                char name[128];
                snprintf(name, sizeof name, "gemv f32 few rows C=%d OC=%d row %d of %d", C, OC, n, N);
                ref_product(ref, wd, xd + (size_t)n * C, bias, C, OC);
                check_close(name, out + (size_t)n * OC, ref, OC, 1e-5);
                mmm_gemv_f32_forward(one, x + (size_t)n * C, w, bias, C, OC);
                same &= !memcmp(one, out + (size_t)n * OC, (size_t)OC * sizeof *one);
            }
            check(same, "gemv f32 few rows C=%d OC=%d N=%d: each row is its one-row product, bit for bit", C, OC, N);
            check(!memcmp(lin, out, (size_t)N * OC * sizeof *lin), "linear of %d rows C=%d OC=%d is the few-row product",
                  N, C, OC);
            free(w); free(x); free(bias); free(out); free(one); free(lin); free(wd); free(xd); free(ref);
        }
}

TEST(test_gemv_bf16) {
    for (int i = 0; i < N_SHAPES; i++) {
        int C = shapes[i][0], OC = shapes[i][1];
        size_t n = (size_t)OC * C;
        rng_t rng = rng_new(200 + i);
        float *w = alloc_uniform(&rng, n, -1, 1), *x = alloc_uniform(&rng, C, -1, 1);
        float *bias = i % 2 ? NULL : alloc_uniform(&rng, OC, -1, 1), *out = alloc_zeros(OC);
        uint16_t *wb = malloc(n * sizeof *wb);
        mmm_f32_to_bf16_array(wb, w, n);
        /* the reference takes the bf16 values exactly: the product itself adds only fp32 rounding */
        mmm_bf16_to_f32_array(w, wb, n);
        double *wd = to_f64(w, n), *xd = to_f64(x, C), *ref = malloc(sizeof(double) * OC);
        ref_product(ref, wd, xd, bias, C, OC);
        char name[128];
        snprintf(name, sizeof name, "gemv bf16 C=%d OC=%d bias=%d", C, OC, bias != NULL);
        mmm_gemv_bf16_forward(out, x, wb, bias, C, OC);
        check_close(name, out, ref, OC, 1e-5);
        free(w); free(x); free(bias); free(out); free(wb); free(wd); free(xd); free(ref);
    }
}

/* values[i] ≈ scale[block of i] · q[i] for rows of C in blocks of `block`: every error within half
 * a step, q in [-127, 127] and ±127 reached in every block that is not all zero. */
static void check_q8_roundtrip(const char *what, const int8_t *q, const float *scale, const float *v, int rows,
                               int C, int block) {
    int nb = (C + block - 1) / block, bad = 0, no_127 = 0;
    double worst = 0;
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++) {
            double s = scale[(size_t)r * nb + b];
            int top = 0;
            for (int k = b * block; k < C && k < (b + 1) * block; k++) {
                size_t i = (size_t)r * C + k;
                double err = fabs(v[i] - s * q[i]);
                /* half a step, plus the float rounding of v / s (at most 127 · 2^-24 of a step) */
                if (err > s * (0.5 + 1e-4) || q[i] < -127) bad++;
                if (s > 0 && err / s > worst) worst = err / s;
                if (abs(q[i]) == 127) top = 1;
            }
            if (s > 0 && !top) no_127++;
        }
    check(!bad && !no_127, "q8 round trip %s: %d values off by more than half a step (worst %.4f steps), "
          "%d blocks without ±127", what, bad, worst, no_127);
}

TEST(test_gemv_q8) {
    for (int i = 0; i < N_SHAPES; i++) {
        int C = shapes[i][0], OC = shapes[i][1], nb = mmm_q8_blocks(C);
        size_t n = (size_t)OC * C;
        rng_t rng = rng_new(300 + i);
        float *w = malloc(n * sizeof *w), *x = malloc(C * sizeof *x);
        fill_normal(&rng, w, n, 0.05f);
        fill_normal(&rng, x, C, 1);
        if (C > 40) x[40] = 30; /* an activation outlier: only its own block's precision suffers */
        float *bias = i % 2 ? alloc_uniform(&rng, OC, -1, 1) : NULL, *out = alloc_zeros(OC);
        int8_t *wq = malloc(n), *xq = malloc(C);
        float *ws = malloc(OC * sizeof *ws), *xs = malloc(nb * sizeof *xs);
        mmm_quantize_q8(wq, ws, w, OC, C, C);
        mmm_quantize_q8(xq, xs, x, 1, C, MMM_Q8_BLOCK);
        char what[96], name[160];
        snprintf(what, sizeof what, "C=%d OC=%d", C, OC);
        snprintf(name, sizeof name, "weights (per row) %s", what);
        check_q8_roundtrip(name, wq, ws, w, OC, C, C);
        snprintf(name, sizeof name, "input (per block) %s", what);
        check_q8_roundtrip(name, xq, xs, x, 1, C, MMM_Q8_BLOCK);

        mmm_gemv_q8_forward(out, xq, xs, wq, ws, bias, C, OC);
        /* against the dequantized values in float64: the kernel adds only fp32 rounding */
        double *wd = malloc(n * sizeof *wd), *xd = malloc(C * sizeof *xd), *ref = malloc(OC * sizeof *ref);
        for (size_t k = 0; k < n; k++) wd[k] = (double)ws[k / C] * wq[k];
        for (int k = 0; k < C; k++) xd[k] = (double)xs[k / MMM_Q8_BLOCK] * xq[k];
        ref_product(ref, wd, xd, bias, C, OC);
        snprintf(name, sizeof name, "gemv int8 %s bias=%d vs dequantized", what, bias != NULL);
        check_close(name, out, ref, OC, 1e-5);
        /* against the unquantized product: within the bound that half a step per value gives,
         * Σ |w − ŵ||x| + Σ |ŵ||x − x̂| ≤ Σ (sw/2)|x| + Σ |ŵ| sx/2 (plus fp32 rounding) */
        int over = 0;
        double worst = 0, rel = 0, mag = 0;
        for (int o = 0; o < OC; o++) {
            double exact = bias ? bias[o] : 0, bound = 0, absum = 0;
            for (int k = 0; k < C; k++) {
                double wv = w[(size_t)o * C + k], wh = wd[(size_t)o * C + k];
                exact += wv * x[k];
                bound += 0.5 * ws[o] * fabs(x[k]) + 0.5 * fabs(wh) * xs[k / MMM_Q8_BLOCK];
                absum += fabs(wh * xd[k]);
            }
            double err = fabs(out[o] - exact);
            if (err > bound + 1e-5 * absum) over++;
            if (bound > 0 && err / bound > worst) worst = err / bound;
            rel = fmax(rel, err);
            mag = fmax(mag, fabs(exact));
        }
        check(!over, "gemv int8 %s vs unquantized: %d outputs past the quantization bound (worst %.3f of it; "
              "max error %.2e of max |out| %.2e)", what, over, worst, rel, mag);
        free(w); free(x); free(bias); free(out); free(wq); free(xq); free(ws); free(xs);
        free(wd); free(xd); free(ref);
    }
}

TEST(test_gemv_q8_quantize_values) {
    /* scale max/127 = 1 exactly, so q = round(v): halves go to the even neighbour */
    float v[] = {127, 0.5f, 1.5f, 2.5f, -2.5f, -0.49f, 3.51f, -127};
    int8_t want[] = {127, 0, 2, 2, -2, 0, 4, -127}, q[8];
    float s;
    mmm_quantize_q8(q, &s, v, 1, 8, MMM_Q8_BLOCK);
    check(s == 1.0f && !memcmp(q, want, sizeof want), "q8 quantize rounds halves to even (scale %g)", s);
    /* an all-zero block: scale 0 and zeros, not NaN; the other blocks unaffected */
    float z[40] = {0};
    z[35] = -2.54f;
    int8_t qz[40];
    float sz[2];
    mmm_quantize_q8(qz, sz, z, 1, 40, MMM_Q8_BLOCK);
    int zeros = 1;
    for (int k = 0; k < 32; k++) zeros &= qz[k] == 0;
    check(sz[0] == 0 && zeros && qz[35] == -127 && sz[1] == 2.54f / 127,
          "q8 quantize: an all-zero block has scale 0 (%g) and the short last block its own (%g)", sz[0], sz[1]);
}

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

TEST(test_gemv_bf16_rounding) {
    /* fp32 bit patterns and their bf16: exact, below/at/above halfway, ties to even both ways,
     * negative, subnormal tie, the largest finite rounding to inf, inf, NaN kept NaN */
    static const uint32_t in[] = {0x3F800000, 0x3F807FFF, 0x3F808000, 0x3F808001, 0x3F818000, 0xBF808000,
                                  0xBF818000, 0x00018000, 0x7F7FFFFF, 0xFF800000, 0x3F7F8000};
    static const uint16_t want[] = {0x3F80, 0x3F80, 0x3F80, 0x3F81, 0x3F82, 0xBF80,
                                    0xBF82, 0x0002, 0x7F80, 0xFF80, 0x3F80};
    enum { N = sizeof in / sizeof in[0] };
    float src[N + 1];
    uint16_t got[N + 1];
    for (int i = 0; i < N; i++) src[i] = bits_f32(in[i]);
    src[N] = NAN;
    mmm_f32_to_bf16_array(got, src, N + 1);
    int bad = 0;
    for (int i = 0; i < N; i++)
        if (got[i] != want[i]) {
            bad++;
            printf("  bf16 of 0x%08X: got 0x%04X, want 0x%04X\n", (unsigned)f32_bits(src[i]), got[i], want[i]);
        }
    check(!bad, "f32 -> bf16 rounds to nearest, ties to even, on %d chosen values", N);
    check((got[N] & 0x7F80) == 0x7F80 && (got[N] & 0x7F), "f32 -> bf16 keeps NaN a NaN (0x%04X)", got[N]);
}

/* The rows of a product are split over threads; each row is computed the same way wherever it
 * lands, so 1, 2 and 3 threads (an uneven split) give identical bits. */
TEST(test_gemv_threads) {
    int C = 1031, OC = 2003; /* past the single-thread threshold for every dtype */
    size_t n = (size_t)OC * C;
    rng_t rng = rng_new(400);
    float *w = alloc_uniform(&rng, n, -1, 1), *x = alloc_uniform(&rng, C, -1, 1), *bias = alloc_uniform(&rng, OC, -1, 1);
    uint16_t *wb = malloc(n * sizeof *wb);
    int8_t *wq = malloc(n), *xq = malloc(C);
    float *ws = malloc(OC * sizeof *ws), *xs = malloc(mmm_q8_blocks(C) * sizeof *xs);
    mmm_f32_to_bf16_array(wb, w, n);
    mmm_quantize_q8(wq, ws, w, OC, C, C);
    mmm_quantize_q8(xq, xs, x, 1, C, MMM_Q8_BLOCK);
    float *out[3][3];
    int saved = omp_get_max_threads();
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(t + 1);
        for (int d = 0; d < 3; d++) out[t][d] = alloc_zeros(OC);
        mmm_gemv_f32_forward(out[t][0], x, w, bias, C, OC);
        mmm_gemv_bf16_forward(out[t][1], x, wb, bias, C, OC);
        mmm_gemv_q8_forward(out[t][2], xq, xs, wq, ws, bias, C, OC);
    }
    omp_set_num_threads(saved);
    static const char *names[3] = {"f32", "bf16", "int8"};
    for (int d = 0; d < 3; d++)
        check(!memcmp(out[0][d], out[1][d], OC * sizeof(float)) && !memcmp(out[0][d], out[2][d], OC * sizeof(float)),
              "gemv %s C=%d OC=%d: 1, 2 and 3 threads give identical results", names[d], C, OC);
    for (int t = 0; t < 3; t++)
        for (int d = 0; d < 3; d++) free(out[t][d]);
    free(w); free(x); free(bias); free(wb); free(wq); free(xq); free(ws); free(xs);
}
