/* The vision front end on the GPU: src/model/vision.c, op for op. */
#include "internal.h"

int gpu_vision_forward(const mmm_gpu_model *g, const mmm_model *m, const float *pixels, int n,
                       vision_buf *v) {
    const mmm_config *c = &m->cfg;
    const mmm_weights *w = &g->w;
    int C = c->hidden, p = c->patch_size, gt = mmm_config_tile_grid(c);
    int r = mmm_config_shuffle_factor(c), tpt = mmm_config_tokens_per_tile(c);
    TRY(mmm_cuda_patches(v->patches, pixels, n, c->tile_size, p));
    TRY(gpu_linear_forward(g, v->pe, v->patches, w->patch_w, w->patch_b, n * gt * gt, 3 * p * p, C));
    TRY(mmm_cuda_add_rows(v->pe, v->pe, g->pos, n, gt * gt * C)); /* the same grid on every tile */
    TRY(mmm_cuda_pixel_shuffle_forward(v->shuf, v->pe, n, gt, gt, C, r));
    TRY(gpu_linear_forward(g, v->z0, v->shuf, w->proj0_w, w->proj0_b, n * tpt, r * r * C, C));
    TRY(mmm_cuda_gelu_forward(v->z0g, v->z0, (size_t)n * tpt * C, F32));
    return gpu_linear_forward(g, v->img, v->z0g, w->proj2_w, w->proj2_b, n * tpt, C, C);
}

int gpu_vision_backward(const mmm_gpu_model *g, const mmm_model *m, const mmm_weights *gw,
                        const float *dimg, int n, vision_buf *v, float *scratch, float **dpos_out) {
    const mmm_config *c = &m->cfg;
    const mmm_weights *w = &g->w;
    int C = c->hidden, p = c->patch_size, gp = mmm_config_patch_grid(c), gt = mmm_config_tile_grid(c);
    int r = mmm_config_shuffle_factor(c), tpt = mmm_config_tokens_per_tile(c);
    size_t ntok = (size_t)n * tpt, npatch = (size_t)n * gt * gt, grid = (size_t)gt * gt * C;
    float *dz0g = scratch, *dz0 = dz0g + ntok * C, *dshuf = dz0 + ntok * C;
    float *dpe = dshuf + ntok * r * r * C, *dpos = dpe + npatch * C;
    TRY(mmm_cuda_memset(scratch, 0, (ntok * (2 + (size_t)r * r) * C + npatch * C + grid) * sizeof *scratch));
    TRY(gpu_linear_backward(g, dz0g, gw->proj2_w, gw->proj2_b, dimg, v->z0g, w->proj2_w, (int)ntok, C, C));
    TRY(mmm_cuda_gelu_backward(dz0, dz0g, v->z0, ntok * C, F32));
    TRY(gpu_linear_backward(g, dshuf, gw->proj0_w, gw->proj0_b, dz0, v->shuf, w->proj0_w, (int)ntok, r * r * C, C));
    TRY(mmm_cuda_pixel_shuffle_backward(dpe, dshuf, n, gt, gt, C, r));
    for (int t = 0; t < n; t++) TRY(mmm_cuda_add(dpos, dpos, dpe + t * grid, grid, F32));
    *dpos_out = NULL;
    if (gt == gp) TRY(mmm_cuda_add(gw->pos_emb + C, gw->pos_emb + C, dpos, grid, F32));
    else *dpos_out = dpos; /* the resize is mapped back on the host */
    return gpu_linear_backward(g, NULL, gw->patch_w, gw->patch_b, dpe, v->patches, w->patch_w, (int)npatch,
                               3 * p * p, C);
}
