/* The vision front end: patch embedding, position embedding, pixel shuffle, pixel_shuffle_proj. */
#include <cblas.h>
#include <string.h>

#include "internal.h"
#include "mmm/ops/activation.h"
#include "mmm/ops/dense.h"
#include "mmm/ops/interpolate.h"
#include "mmm/ops/vision.h"

/* Carves (base != NULL) or only sizes the buffers; returns the floats they take. */
static size_t vision_layout(vision_buf *v, float *base, const mmm_config *c, int n) {
    size_t C = (size_t)c->hidden, gt = (size_t)mmm_config_tile_grid(c), p = (size_t)c->patch_size;
    size_t r = (size_t)mmm_config_shuffle_factor(c), tpt = (size_t)mmm_config_tokens_per_tile(c), used = 0;
#define TAKE(field, k) do { if (base) v->field = base + used; used += MMM_ALIGN_FLOATS(k); } while (0)
    TAKE(patches, n * gt * gt * 3 * p * p);
    TAKE(pe, n * gt * gt * C);
    TAKE(pos, gt * gt * C);
    TAKE(shuf, n * tpt * r * r * C);
    TAKE(z0, n * tpt * C);
    TAKE(z0g, n * tpt * C);
    TAKE(img, n * tpt * C);
#undef TAKE
    return used;
}

size_t vision_buf_floats(const mmm_config *c, int n) { return vision_layout(NULL, NULL, c, n); }

void vision_buf_carve(vision_buf *v, float *base, const mmm_config *c, int n) { vision_layout(v, base, c, n); }

/* Each patch flattened in (channel, y, x) order, matching the conv weight (C, 3, p, p). */
static void im2col(float *patches, const float *pixels, int n, int S, int p) {
    int gt = S / p, K = 3 * p * p;
#pragma omp parallel for collapse(2) if ((long)n * S * S > 65536)
    for (int t = 0; t < n; t++)
        for (int gy = 0; gy < gt; gy++)
            for (int gx = 0; gx < gt; gx++) {
                float *dst = patches + (((size_t)t * gt + gy) * gt + gx) * K;
                for (int ch = 0; ch < 3; ch++)
                    for (int y = 0; y < p; y++)
                        memcpy(dst + (ch * p + y) * p,
                               pixels + (((size_t)t * 3 + ch) * S + gy * p + y) * S + gx * p,
                               (size_t)p * sizeof *dst);
            }
}

void vision_forward(const mmm_model *m, const float *pixels, int n, vision_buf *v) {
    const mmm_config *c = &m->cfg;
    const mmm_weights *w = &m->w;
    int C = c->hidden, p = c->patch_size, g = mmm_config_patch_grid(c), gt = mmm_config_tile_grid(c);
    int r = mmm_config_shuffle_factor(c), tpt = mmm_config_tokens_per_tile(c);
    const float *grid = w->pos_emb + C; /* slot 0 is the unused class position */
    if (gt == g) memcpy(v->pos, grid, (size_t)g * g * C * sizeof *v->pos);
    else mmm_bicubic_resize_forward(v->pos, grid, g, g, gt, gt, C);
    im2col(v->patches, pixels, n, c->tile_size, p);
    mmm_linear_forward(v->pe, v->patches, w->patch_w, w->patch_b, n * gt * gt, 3 * p * p, C);
    for (int t = 0; t < n; t++)
        cblas_saxpy(gt * gt * C, 1.0f, v->pos, 1, v->pe + (size_t)t * gt * gt * C, 1);
    mmm_pixel_shuffle_forward(v->shuf, v->pe, n, gt, gt, C, r);
    mmm_linear_forward(v->z0, v->shuf, w->proj0_w, w->proj0_b, n * tpt, r * r * C, C);
    mmm_gelu_forward(v->z0g, v->z0, (size_t)n * tpt * C);
    mmm_linear_forward(v->img, v->z0g, w->proj2_w, w->proj2_b, n * tpt, C, C);
}

void vision_backward(const mmm_model *m, const mmm_weights *g, const float *dimg, int n,
                     vision_buf *v, float *scratch) {
    const mmm_config *c = &m->cfg;
    const mmm_weights *w = &m->w;
    int C = c->hidden, p = c->patch_size, gp = mmm_config_patch_grid(c), gt = mmm_config_tile_grid(c);
    int r = mmm_config_shuffle_factor(c), tpt = mmm_config_tokens_per_tile(c);
    size_t ntok = (size_t)n * tpt, npatch = (size_t)n * gt * gt;
    float *dz0g = scratch, *dz0 = dz0g + ntok * C, *dshuf = dz0 + ntok * C;
    float *dpe = dshuf + ntok * r * r * C, *dpos = dpe + npatch * C;
    memset(scratch, 0, (ntok * (2 + (size_t)r * r) * C + npatch * C + (size_t)gt * gt * C) * sizeof *scratch);
    mmm_linear_backward(dz0g, g->proj2_w, g->proj2_b, dimg, v->z0g, w->proj2_w, (int)ntok, C, C);
    mmm_gelu_backward(dz0, dz0g, v->z0, ntok * C);
    mmm_linear_backward(dshuf, g->proj0_w, g->proj0_b, dz0, v->shuf, w->proj0_w, (int)ntok, r * r * C, C);
    mmm_pixel_shuffle_backward(dpe, dshuf, n, gt, gt, C, r);
    for (int t = 0; t < n; t++) cblas_saxpy(gt * gt * C, 1.0f, dpe + (size_t)t * gt * gt * C, 1, dpos, 1);
    if (gt == gp) cblas_saxpy(gp * gp * C, 1.0f, dpos, 1, g->pos_emb + C, 1);
    else mmm_bicubic_resize_backward(g->pos_emb + C, dpos, gp, gp, gt, gt, C);
    mmm_linear_backward(NULL, g->patch_w, g->patch_b, dpe, v->patches, w->patch_w, (int)npatch, 3 * p * p, C);
}
