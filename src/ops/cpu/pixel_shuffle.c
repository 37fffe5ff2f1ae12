/* InternVL pixel shuffle on CPU: a pure gather of C-channel runs, so each output vector is
 * r² memcpys (forward) or r² row additions (backward). */
#include <string.h>

#include "mmm/ops/vision.h"

void mmm_pixel_shuffle_forward(float *out, const float *inp, int Nimg, int Gh, int Gw, int C,
                               int r) {
    int Oh = Gh / r, Ow = Gw / r;
    long npos = (long)Nimg * Oh * Ow;
#pragma omp parallel for schedule(static) if (npos * r * r * C > 65536)
    for (long p = 0; p < npos; p++) {
        int n = (int)(p / ((long)Oh * Ow)), i = (int)(p / Ow % Oh), j = (int)(p % Ow);
        float *o = out + (size_t)p * r * r * C;
        for (int a = 0; a < r; a++)
            for (int b = 0; b < r; b++) {
                const float *src = inp + (((size_t)n * Gh + r * i + a) * Gw + r * j + b) * C;
                memcpy(o + (size_t)(a * r + b) * C, src, (size_t)C * sizeof *o);
            }
    }
}

void mmm_pixel_shuffle_backward(float *dinp, const float *dout, int Nimg, int Gh, int Gw, int C,
                                int r) {
    /* each input patch feeds exactly one output slot, so threads over outputs never collide */
    int Oh = Gh / r, Ow = Gw / r;
    long npos = (long)Nimg * Oh * Ow;
#pragma omp parallel for schedule(static) if (npos * r * r * C > 65536)
    for (long p = 0; p < npos; p++) {
        int n = (int)(p / ((long)Oh * Ow)), i = (int)(p / Ow % Oh), j = (int)(p % Ow);
        const float *g = dout + (size_t)p * r * r * C;
        for (int a = 0; a < r; a++)
            for (int b = 0; b < r; b++) {
                float *d = dinp + (((size_t)n * Gh + r * i + a) * Gw + r * j + b) * C;
                const float *s = g + (size_t)(a * r + b) * C;
                for (int c = 0; c < C; c++) d[c] += s[c];
            }
    }
}
