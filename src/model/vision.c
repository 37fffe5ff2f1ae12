/* The vision front end: patch embedding, position embedding, pixel shuffle, pixel_shuffle_proj;
 * written once over the executor (exec.h). */
#include "internal.h"

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

int vision_forward(const model_exec *x, const float *pixels, int n, vision_buf *v) {
    const mmm_config *c = &x->m->cfg;
    const mmm_weights *w = x->w;
    const exec_ops *op = x->op;
    int C = c->hidden, p = c->patch_size, gt = mmm_config_tile_grid(c);
    int r = mmm_config_shuffle_factor(c), tpt = mmm_config_tokens_per_tile(c);
    TRY(op->pos_grid(x, v->pos));
    TRY(op->patches(x, v->patches, pixels, n, c->tile_size, p));
    TRY(op->linear_forward(x, v->pe, v->patches, w->patch_w, w->patch_b, n * gt * gt, 3 * p * p, C));
    TRY(op->add_rows(x, v->pe, v->pe, v->pos, n, gt * gt * C)); /* the same grid on every tile */
    TRY(op->pixel_shuffle_forward(x, v->shuf, v->pe, n, gt, C, r));
    TRY(op->linear_forward(x, v->z0, v->shuf, w->proj0_w, w->proj0_b, n * tpt, r * r * C, C));
    TRY(op->gelu_forward(x, v->z0g, v->z0, (size_t)n * tpt * C));
    return op->linear_forward(x, v->img, v->z0g, w->proj2_w, w->proj2_b, n * tpt, C, C);
}

int vision_backward(const model_exec *x, const mmm_weights *g, const float *dimg, int n, vision_buf *v,
                    float *scratch) {
    const mmm_config *c = &x->m->cfg;
    const mmm_weights *w = x->w;
    const exec_ops *op = x->op;
    int C = c->hidden, p = c->patch_size, gt = mmm_config_tile_grid(c);
    int r = mmm_config_shuffle_factor(c), tpt = mmm_config_tokens_per_tile(c);
    size_t ntok = (size_t)n * tpt, npatch = (size_t)n * gt * gt, grid = (size_t)gt * gt * C;
    float *dz0g = scratch, *dz0 = dz0g + ntok * C, *dshuf = dz0 + ntok * C;
    float *dpe = dshuf + ntok * r * r * C, *dpos = dpe + npatch * C;
    TRY(op->zero(x, scratch, ntok * (2 + (size_t)r * r) * C + npatch * C + grid));
    TRY(op->linear_backward(x, dz0g, g->proj2_w, g->proj2_b, dimg, v->z0g, w->proj2_w, (int)ntok, C, C));
    TRY(op->gelu_backward(x, dz0, dz0g, v->z0, ntok * C));
    TRY(op->linear_backward(x, dshuf, g->proj0_w, g->proj0_b, dz0, v->shuf, w->proj0_w, (int)ntok, r * r * C, C));
    TRY(op->pixel_shuffle_backward(x, dpe, dshuf, n, gt, C, r));
    for (int t = 0; t < n; t++) TRY(op->add(x, dpos, dpos, dpe + t * grid, grid));
    TRY(op->pos_grid_backward(x, g, dpos));
    return op->linear_backward(x, NULL, g->patch_w, g->patch_b, dpe, v->patches, w->patch_w, (int)npatch, 3 * p * p,
                               C);
}
