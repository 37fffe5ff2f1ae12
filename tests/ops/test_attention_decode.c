/* A decode step's attention shared out by key range (mmm_attention_decode_split / _combine) vs
 * float64, against the whole-range forward, for any split of the keys. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/ops/attention.h"

/* out(H, D) = softmax(q·kᵀ/√D)·v of one query over Tk keys, in float64 */
static void ref_attention(double *out, const float *q, const float *k, const float *v, int Tk, int H, int Hkv, int D) {
    double *s = malloc(sizeof(double) * Tk);
    for (int h = 0; h < H; h++) {
        int g = h / (H / Hkv);
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < Tk; j++) {
            double dot = 0;
            for (int d = 0; d < D; d++) dot += (double)q[h * D + d] * k[((size_t)j * Hkv + g) * D + d];
            s[j] = dot / sqrt((double)D);
            mx = s[j] > mx ? s[j] : mx;
        }
        for (int j = 0; j < Tk; j++) sum += s[j] = exp(s[j] - mx);
        for (int d = 0; d < D; d++) {
            double acc = 0;
            for (int j = 0; j < Tk; j++) acc += s[j] * v[((size_t)j * Hkv + g) * D + d];
            out[h * D + d] = acc / sum;
        }
    }
    free(s);
}

TEST(test_attention_decode_splits) {
    /* (Tk, H, Hkv, D): one key, keys not a multiple of the 128-key tile, grouped heads past the
     * wide-tile limit (16 per kv head), and many keys */
    static const int shapes[][4] = {{1, 4, 2, 64}, {300, 4, 2, 64}, {129, 16, 1, 32}, {1000, 8, 8, 16}, {5000, 16, 8, 128}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        int Tk = shapes[i][0], H = shapes[i][1], Hkv = shapes[i][2], D = shapes[i][3];
        rng_t rng = rng_new(40 + i);
        float *q = alloc_uniform(&rng, (size_t)H * D, -2, 2);
        float *k = alloc_uniform(&rng, (size_t)Tk * Hkv * D, -2, 2), *v = alloc_uniform(&rng, (size_t)Tk * Hkv * D, -1, 1);
        double *ref = malloc(sizeof(double) * H * D);
        ref_attention(ref, q, k, v, Tk, H, Hkv, D);
        float *whole = alloc_zeros((size_t)H * D), *out = alloc_zeros((size_t)H * D);
        mmm_attention_forward(whole, NULL, q, k, v, 1, 1, Tk, H, Hkv, D);
        size_t len = (size_t)H * (D + 2);
        for (int nsplit = 1; nsplit <= 5; nsplit += 2) {
            float *parts = alloc_zeros(len * nsplit);
            for (int s = 0; s < nsplit; s++) /* uneven ranges; with more splits than keys some are empty */
                mmm_attention_decode_split(parts + len * s, q, k, v, Tk, H, Hkv, D, (int)((long)Tk * s * s / (nsplit * nsplit)),
                                           (int)((long)Tk * (s + 1) * (s + 1) / (nsplit * nsplit)));
            memset(out, 0, sizeof(float) * H * D);
            mmm_attention_decode_combine(out, parts, nsplit, H, D, 0, H / 2);
            mmm_attention_decode_combine(out, parts, nsplit, H, D, H / 2, H);
            char name[128];
            snprintf(name, sizeof name, "attention decode Tk=%d H=%d Hkv=%d D=%d in %d splits", Tk, H, Hkv, D, nsplit);
            check_close(name, out, ref, (size_t)H * D, 1e-5);
            if (nsplit == 1) {
                snprintf(name, sizeof name, "attention decode Tk=%d H=%d in one split = mmm_attention_forward", Tk, H);
                check_close_f(name, out, whole, (size_t)H * D, 1e-6);
            }
            free(parts);
        }
        free(q); free(k); free(v); free(ref); free(whole); free(out);
    }
}
