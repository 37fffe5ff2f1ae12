/* AdamW against a float64 transcription of PyTorch's algorithm over several steps, with decay
 * on and off; gradient norm and clipping. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/optim.h"

/* torch.optim.AdamW (single tensor, amsgrad off), step by step in float64:
 *   param *= 1 − lr·wd
 *   m = β1·m + (1 − β1)·g;  v = β2·v + (1 − β2)·g²
 *   param −= lr/(1 − β1^t) · m / (sqrt(v)/sqrt(1 − β2^t) + eps) */
static void adamw_ref(double *p, double *m, double *v, const float *g, size_t n,
                      const mmm_adamw_config *c, int decay, long t) {
    double bc1 = 1 - pow(c->beta1, (double)t), bc2 = 1 - pow(c->beta2, (double)t);
    for (size_t i = 0; i < n; i++) {
        if (decay) p[i] *= 1 - (double)c->lr * c->weight_decay;
        m[i] = c->beta1 * m[i] + (1 - (double)c->beta1) * g[i];
        v[i] = c->beta2 * v[i] + (1 - (double)c->beta2) * g[i] * g[i];
        p[i] -= c->lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + c->eps);
    }
}

static void adamw_case(size_t n, float lr, float wd, int decay, int steps, uint64_t seed) {
    rng_t rng = rng_new(seed);
    mmm_adamw_config cfg = {lr, 0.9f, 0.999f, 1e-8f, wd};
    float *p = alloc_uniform(&rng, n, -1, 1), *m = alloc_zeros(n), *v = alloc_zeros(n);
    float *g = alloc_zeros(n);
    double *pr = to_f64(p, n), *mr = calloc(n, sizeof *mr), *vr = calloc(n, sizeof *vr);
    for (long t = 1; t <= steps; t++) {
        /* gradients of varying scale, some exactly zero */
        fill_normal(&rng, g, n, t % 2 ? 1.0f : 1e-3f);
        for (size_t i = 0; i < n; i += 7) g[i] = 0;
        mmm_adamw_step(p, g, m, v, n, &cfg, decay, t);
        adamw_ref(pr, mr, vr, g, n, &cfg, decay, t);
    }
    char name[160];
    snprintf(name, sizeof name, "adamw n=%zu lr=%g wd=%g decay=%d steps=%d param", n, lr, wd,
             decay, steps);
    check_close(name, p, pr, n, 1e-5);
    snprintf(name, sizeof name, "adamw n=%zu lr=%g wd=%g decay=%d steps=%d m", n, lr, wd, decay,
             steps);
    check_close(name, m, mr, n, 1e-5);
    snprintf(name, sizeof name, "adamw n=%zu lr=%g wd=%g decay=%d steps=%d v", n, lr, wd, decay,
             steps);
    check_close(name, v, vr, n, 1e-5);
    free(p); free(m); free(v); free(g); free(pr); free(mr); free(vr);
}

TEST(test_optim_adamw) {
    /* lr·wd large enough that decaying before or after the Adam update differs visibly */
    adamw_case(1, 0.1f, 0.5f, 1, 1, 1);
    adamw_case(37, 0.1f, 0.5f, 1, 6, 2);
    adamw_case(37, 0.1f, 0.5f, 0, 6, 3);
    adamw_case(37, 1e-3f, 0.05f, 1, 6, 4);
    adamw_case(100003, 1e-2f, 0.05f, 1, 5, 5); /* threaded */
    adamw_case(100003, 1e-2f, 0.05f, 0, 5, 6);
}

static double norm_ref(const float *g, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return sqrt(s);
}

TEST(test_optim_clip) {
    size_t sizes[] = {1, 37, 1000003};
    for (int k = 0; k < 3; k++) {
        size_t n = sizes[k];
        rng_t rng = rng_new(100 + k);
        float *g = alloc_uniform(&rng, n, -1, 1), *orig = malloc(n * sizeof *orig);
        memcpy(orig, g, n * sizeof *g);
        double ref = norm_ref(g, n);
        float norm = mmm_grad_norm(g, n);
        char name[128];
        snprintf(name, sizeof name, "grad_norm n=%zu", n);
        check_close(name, &norm, &ref, 1, 1e-6);

        /* above the limit: returns the old norm, scales to exactly max_norm, keeps the direction */
        float max_norm = (float)(0.25 * ref);
        float before = mmm_clip_grad_norm(g, n, max_norm);
        double after = norm_ref(g, n), max_d = max_norm;
        check(fabs(before - ref) <= 1e-6 * ref && fabs(after - max_d) <= 1e-6 * max_d,
              "clip_grad_norm n=%zu above: returned %.6g (norm %.6g), clipped norm %.6g "
              "(max_norm %.6g)", n, before, ref, after, max_d);
        double *dir = malloc(n * sizeof *dir);
        for (size_t i = 0; i < n; i++) dir[i] = orig[i] * (max_d / ref);
        snprintf(name, sizeof name, "clip_grad_norm n=%zu above: scaled copy of the input", n);
        check_close(name, g, dir, n, 1e-6);

        /* at or below the limit, or with clipping off: untouched */
        memcpy(g, orig, n * sizeof *g);
        before = mmm_clip_grad_norm(g, n, (float)(2 * ref));
        check(before == norm && memcmp(g, orig, n * sizeof *g) == 0,
              "clip_grad_norm n=%zu below: unchanged", n);
        before = mmm_clip_grad_norm(g, n, 0);
        check(before == norm && memcmp(g, orig, n * sizeof *g) == 0,
              "clip_grad_norm n=%zu max_norm=0: unchanged", n);
        free(g); free(orig); free(dir);
    }

    /* a non-finite norm is reported and the gradients are left alone */
    float g[5] = {1, 2, INFINITY, 3, 4}, orig[5];
    memcpy(orig, g, sizeof g);
    float norm = mmm_clip_grad_norm(g, 5, 1.0f);
    check(isinf(norm) && memcmp(g, orig, sizeof g) == 0, "clip_grad_norm non-finite: unchanged");
}
