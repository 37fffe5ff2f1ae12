/* pixel shuffle: forward vs the header's formula and vs InternVL's view/permute sequence (both in
 * float64), gradient by finite differences, accumulation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/ops/vision.h"

/* dst (d0, d2, d1, d3) = src (d0, d1, d2, d3).permute(0, 2, 1, 3).contiguous() */
static void permute_0213(double *dst, const double *src, int d0, int d1, int d2, int d3) {
    for (int a = 0; a < d0; a++)
        for (int b = 0; b < d1; b++)
            for (int c = 0; c < d2; c++)
                for (int e = 0; e < d3; e++)
                    dst[(((size_t)a * d2 + c) * d1 + b) * d3 + e] =
                        src[(((size_t)a * d1 + b) * d2 + c) * d3 + e];
}

/* InternVL's pixel_shuffle (ps_version v2) with scale s = 1/r, on x of shape (n, Gh, Gw, C),
 * which it unpacks as `n, w, h, c = x.size()`:
 *   x = x.view(n, w, h*s, c/s)               -- a view only renames the row-major buffer
 *   x = x.permute(0, 2, 1, 3).contiguous()   -- (n, h*s, w, c/s)
 *   x = x.view(n, h*s, w*s, c/(s*s))
 *   x = x.permute(0, 2, 1, 3).contiguous()   -- (n, w*s, h*s, c/(s*s)) */
static void internvl_ref(double *out, const float *inp, int n, int Gh, int Gw, int C, int r) {
    int w = Gh, h = Gw;
    size_t total = (size_t)n * Gh * Gw * C;
    double *x = to_f64(inp, total), *y = malloc(total * sizeof *y);
    permute_0213(y, x, n, w, h / r, C * r);
    permute_0213(out, y, n, h / r, w / r, C * r * r);
    free(x);
    free(y);
}

/* The header's formula: out[n, i, j, (a·r + b)·C + c] = inp[n, r·i + a, r·j + b, c]. */
static void formula_ref(double *out, const float *inp, int n, int Gh, int Gw, int C, int r) {
    int Oh = Gh / r, Ow = Gw / r;
    for (int m = 0; m < n; m++)
        for (int i = 0; i < Oh; i++)
            for (int j = 0; j < Ow; j++)
                for (int a = 0; a < r; a++)
                    for (int b = 0; b < r; b++)
                        for (int c = 0; c < C; c++)
                            out[(((size_t)m * Oh + i) * Ow + j) * r * r * C + (a * r + b) * C + c] =
                                inp[(((size_t)m * Gh + r * i + a) * Gw + r * j + b) * C + c];
}

typedef struct {
    float *out, *inp, *r;
    int n, Gh, Gw, C, ratio;
} ps_ctx;

static double ps_loss(void *p) {
    ps_ctx *c = p;
    mmm_pixel_shuffle_forward(c->out, c->inp, c->n, c->Gh, c->Gw, c->C, c->ratio);
    return dot_f64(c->out, c->r, (size_t)c->n * c->Gh * c->Gw * c->C);
}

static void ps_case(int n, int Gh, int Gw, int C, int r, int grads, uint64_t seed) {
    rng_t rng = rng_new(seed);
    size_t total = (size_t)n * Gh * Gw * C;
    ps_ctx c = {alloc_zeros(total), alloc_uniform(&rng, total, -1, 1),
                alloc_uniform(&rng, total, -1, 1), n, Gh, Gw, C, r};
    char what[128], name[200];
    snprintf(what, sizeof what, "pixel_shuffle r=%d n=%d Gh=%d Gw=%d C=%d", r, n, Gh, Gw, C);

    double *formula = malloc(total * sizeof *formula), *internvl = malloc(total * sizeof *internvl);
    formula_ref(formula, c.inp, n, Gh, Gw, C, r);
    internvl_ref(internvl, c.inp, n, Gh, Gw, C, r);
    int same = memcmp(formula, internvl, total * sizeof *formula) == 0;
    check(same, "forward %s: header formula equals InternVL view/permute", what);

    mmm_pixel_shuffle_forward(c.out, c.inp, n, Gh, Gw, C, r);
    snprintf(name, sizeof name, "forward %s vs InternVL", what);
    check_close(name, c.out, internvl, total, 0);

    if (grads) {
        float *dinp = alloc_zeros(total);
        mmm_pixel_shuffle_backward(dinp, c.r, n, Gh, Gw, C, r);
        snprintf(name, sizeof name, "%s dinp", what);
        gradcheck(name, ps_loss, &c, c.inp, dinp, total, 1e-2, 1e-3);
        float *before = malloc(total * sizeof *before);
        memcpy(before, dinp, total * sizeof *before);
        mmm_pixel_shuffle_backward(dinp, c.r, n, Gh, Gw, C, r);
        check_accumulates(name, before, before, dinp, total);
        free(dinp);
        free(before);
    }
    free(formula); free(internvl); free(c.out); free(c.inp); free(c.r);
}

TEST(test_pixel_shuffle) {
    ps_case(1, 2, 2, 1, 2, 1, 1);
    ps_case(2, 4, 6, 3, 2, 1, 2);  /* non-square grid */
    ps_case(3, 6, 4, 5, 2, 1, 3);
    ps_case(1, 6, 9, 2, 3, 1, 4);  /* r = 3 */
    ps_case(2, 3, 5, 4, 1, 1, 5);  /* r = 1 is the identity */
    ps_case(2, 32, 32, 37, 2, 0, 6); /* InternViT-300M's 32×32 grid, odd C */
    ps_case(1, 8, 12, 4, 4, 1, 7);
}
