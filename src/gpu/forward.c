/* Training forward and backward over a batch on the GPU: the layers and the vision front end are
 * src/model's, through the CUDA executor; the activations live in one device arena carved with
 * the same layouts. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"

struct mmm_gpu_acts {
    const mmm_model *m;
    int B, T, n_tiles, n_img;
    int keep;               /* every layer's activations kept (0: two layers' buffers, reused) */
    gpu_buf arena;          /* the floats below */
    gpu_buf ws;             /* SSD workspace (forward, then backward) */
    gpu_buf index;          /* int64 offsets and int32 positions and ids */
    layer_buf *layers;      /* E + L */
    int n_layers;
    vision_buf vis;
    float *pixels;          /* (n_tiles, 3, S, S) */
    float *embeds;          /* (N, C) */
    const float *llm_input; /* (N, C) what the first LLM layer read */
    float *enc_out, *enc_norms; /* (N, C), (N) */
    float *hf, *rstdf;      /* (N, C), (N) */
    float *logits;          /* (N, V) */
    float *rope[2][2];      /* [stack][cos|sin] (T, D/2) */
    float *scratch;         /* forward scratch; in the backward dx (N, C), dtmp (N, C), then scratch */
    int32_t *ids;           /* (B, T) host copy */
};

/* Sizes (and with arena != NULL carves) every device buffer for this batch shape; with keep == 0
 * layer l's buffers are region l % 2 of two, each as large as the largest layer's. */
static size_t acts_layout(mmm_gpu_acts *a, const mmm_model *m, int B, int T, int n_tiles, int keep, float *arena) {
    const mmm_config *c = &m->cfg;
    long N = (long)B * T;
    int C = c->hidden, L = mmm_config_n_layers(c), Dmax = max_head_dim(c);
    size_t total = 0, scratch = 0;
    float *p = arena;
#define TAKE(field, n) do { size_t n_ = MMM_ALIGN_FLOATS(n); if (arena) { a->field = p; p += n_; } total += n_; } while (0)
    if (c->patch_size && n_tiles > 0) {
        size_t nv = vision_buf_floats(c, n_tiles);
        if (arena) vision_buf_carve(&a->vis, p, c, n_tiles), p += nv;
        total += nv;
        scratch = nv; /* the vision backward */
        TAKE(pixels, (size_t)n_tiles * 3 * c->tile_size * c->tile_size);
    }
    TAKE(embeds, (size_t)N * C);
    size_t most = 0;
    for (int l = 0; l < L && !keep; l++) {
        size_t n = layer_floats(&c->layers[l], N, C, B, T);
        if (n > most) most = n;
    }
    for (int l = 0; l < L; l++) {
        size_t n = layer_floats(&c->layers[l], N, C, B, T);
        if (keep) {
            if (arena) layer_carve(&a->layers[l], &p, &c->layers[l], N, C, B, T);
            total += n;
        } else if (arena) {
            float *region = p + (l % 2) * most;
            layer_carve(&a->layers[l], &region, &c->layers[l], N, C, B, T);
        }
        size_t s = layer_scratch_floats(&c->layers[l], N);
        size_t b = backward_scratch(&c->layers[l], N, C);
        if (s > scratch) scratch = s;
        if (b > scratch) scratch = b;
    }
    if (!keep) {
        if (arena) p += 2 * most;
        total += 2 * most;
    }
    TAKE(enc_out, (size_t)N * C);
    TAKE(enc_norms, (size_t)N);
    TAKE(hf, (size_t)N * C);
    TAKE(rstdf, (size_t)N);
    TAKE(logits, (size_t)N * c->vocab);
    for (int s = 0; s < 2; s++) { TAKE(rope[s][0], (size_t)T * Dmax / 2); TAKE(rope[s][1], (size_t)T * Dmax / 2); }
    TAKE(scratch, scratch + 2 * MMM_ALIGN_FLOATS((size_t)N * C));
#undef TAKE
    return total;
}

static int acts_prepare(mmm_gpu_acts **pa, const mmm_model *m, const mmm_input *in, int keep) {
    mmm_gpu_acts *a = *pa;
    int L = mmm_config_n_layers(&m->cfg);
    if (!a) {
        if (!(a = calloc(1, sizeof *a))) return mmm_fail(MMM_ERR_NOMEM, "gpu forward: out of memory");
        *pa = a;
    }
    if (!a->layers || a->n_layers != L) {
        free(a->layers);
        if (!(a->layers = calloc((size_t)L + 1, sizeof *a->layers))) return mmm_fail(MMM_ERR_NOMEM, "gpu forward: out of memory");
        a->n_layers = L;
    }
    size_t N = (size_t)in->B * in->T;
    int32_t *ids = realloc(a->ids, N * sizeof *ids);
    if (!ids) return mmm_fail(MMM_ERR_NOMEM, "gpu forward: out of memory");
    a->ids = ids;
    memcpy(a->ids, in->ids, N * sizeof *ids);
    TRY(gpu_buf_reserve(&a->arena, acts_layout(a, m, in->B, in->T, in->n_tiles, keep, NULL) * sizeof(float)));
    size_t ws = gpu_ssd_ws_bytes(&m->cfg, in->B, in->T), bws = gpu_ssd_backward_ws_bytes(&m->cfg, in->B, in->T);
    TRY(gpu_buf_reserve(&a->ws, ws > bws ? ws : bws));
    /* embedding offsets (2N int64), then positions (T) and the backward's ids (2N) as int32 */
    TRY(gpu_buf_reserve(&a->index, 2 * N * sizeof(int64_t) + (in->T + 2 * N) * sizeof(int32_t)));
    acts_layout(a, m, in->B, in->T, in->n_tiles, keep, a->arena.p);
    a->m = m;
    a->keep = keep;
    a->B = in->B;
    a->T = in->T;
    a->n_tiles = in->n_tiles;
    a->n_img = m->cfg.patch_size ? in->n_tiles * mmm_config_tokens_per_tile(&m->cfg) : 0;
    return MMM_OK;
}

void mmm_gpu_acts_free(mmm_gpu_acts *a) {
    if (!a) return;
    gpu_buf_free(&a->arena);
    gpu_buf_free(&a->ws);
    gpu_buf_free(&a->index);
    free(a->layers);
    free(a->ids);
    free(a);
}

static int32_t *index_i32(const mmm_gpu_acts *a) {
    return (int32_t *)((int64_t *)a->index.p + 2 * (size_t)a->B * a->T);
}

static int rope_tables(mmm_gpu_acts *a, const mmm_model *m, int T) {
    int32_t *pos = malloc((size_t)T * sizeof *pos);
    if (!pos) return mmm_fail(MMM_ERR_NOMEM, "gpu forward: out of memory");
    for (int t = 0; t < T; t++) pos[t] = t;
    int32_t *dpos = index_i32(a);
    int rc = mmm_cuda_upload(dpos, pos, (size_t)T * sizeof *pos);
    free(pos);
    for (int s = 0; s < 2 && !rc; s++) {
        int first = s ? m->cfg.n_emb_layers : 0, n = s ? m->cfg.n_llm_layers : m->cfg.n_emb_layers;
        if (n == 0) continue;
        mmm_rope_scaling r = mmm_layer_rope(&m->cfg.layers[first]);
        /* the whole sequence in one call: its length decides the dynamic base */
        rc = mmm_cuda_rope_table_scaled(a->rope[s][0], a->rope[s][1], dpos, &r, T, T, m->cfg.layers[first].head_dim);
    }
    return rc;
}

static int forward(const mmm_model *m, const mmm_input *in, mmm_gpu_acts **pa, int keep) {
    const mmm_config *c = &m->cfg;
    const mmm_gpu_model *g = m->gpu;
    if (!g) return mmm_fail(MMM_ERR_ARG, "gpu forward: the model is not on the GPU (mmm_gpu_attach)");
    if (in->B < 1 || in->T < 1) return mmm_fail(MMM_ERR_ARG, "gpu forward: empty batch (%d x %d)", in->B, in->T);
    for (int l = 1; l < mmm_config_n_layers(c); l++)
        if (c->layers[l].stack == c->layers[l - 1].stack &&
            (c->layers[l].head_dim != c->layers[l - 1].head_dim || c->layers[l].rope_theta != c->layers[l - 1].rope_theta))
            return mmm_fail(MMM_ERR_UNSUPPORTED, "gpu forward: layers of one stack must share head_dim and rope_theta");
    TRY(check_input_ids(c, in->ids, (long)in->B * in->T, in->n_tiles, "gpu forward"));
    TRY(acts_prepare(pa, m, in, keep));
    mmm_gpu_acts *a = *pa;
    int B = in->B, T = in->T, C = c->hidden, L = mmm_config_n_layers(c), N = B * T;
    model_exec x = exec_cuda(m, a->ws.p, NULL);

    if (in->n_tiles > 0) {
        TRY(mmm_cuda_upload(a->pixels, in->pixels, (size_t)in->n_tiles * 3 * c->tile_size * c->tile_size * sizeof(float)));
        TRY(vision_forward(&x, a->pixels, in->n_tiles, &a->vis));
    }
    long cursor = 0;
    TRY(gpu_embed(m, a->embeds, in->ids, N, in->n_tiles ? a->vis.img : NULL, &cursor, a->index.p));
    TRY(rope_tables(a, m, T));

    const float *h = a->embeds;
    for (int l = 0; l <= L; l++) {
        if (l == c->n_emb_layers) { /* between the stacks */
            if (c->normalize_encoder_output) {
                TRY(mmm_cuda_l2norm_rows_forward(a->enc_out, a->enc_norms, h, N, C));
                h = a->enc_out;
            }
            a->llm_input = h;
        }
        if (l == L) break;
        const mmm_layer_desc *d = &c->layers[l];
        layer_cache cache = {a->layers[l].k, a->layers[l].v, 0, T, T, NULL, NULL, F32};
        TRY(layer_forward(&x, l, &a->layers[l], h, B, T, &cache, a->rope[d->stack][0], a->rope[d->stack][1],
                          a->scratch));
        h = a->layers[l].x_out;
    }
    TRY(mmm_cuda_rmsnorm_forward(a->hf, a->rstdf, h, g->w.final_norm, c->final_norm_eps, N, C, F32));
    return gpu_linear_forward(g, a->logits, a->hf, g->w.lm_head, NULL, N, C, c->vocab);
}

int mmm_gpu_forward(const mmm_model *m, const mmm_input *in, mmm_gpu_acts **pa) { return forward(m, in, pa, 1); }
int mmm_gpu_forward_logits(const mmm_model *m, const mmm_input *in, mmm_gpu_acts **pa) {
    return forward(m, in, pa, 0);
}

/* The input embeddings' gradients: the text and special tables by id, the image rows into the
 * vision backward (dimg, (n_img, C)). */
static int embed_backward(const mmm_model *m, mmm_gpu_acts *a, const mmm_weights *gw, const float *dx, float *dimg) {
    const mmm_config *c = &m->cfg;
    int N = a->B * a->T, C = c->hidden, k = 0;
    /* ids for the two tables, −1 where a row belongs to the other one (or to an image) */
    int32_t *ids = malloc(2 * (size_t)N * sizeof *ids);
    int64_t *rows = malloc(((size_t)a->n_img + 1) * sizeof *rows);
    if (!ids || !rows) {
        free(ids); free(rows);
        return mmm_fail(MMM_ERR_NOMEM, "gpu backward: out of memory");
    }
    for (int i = 0; i < N; i++) {
        int32_t id = a->ids[i];
        int image = dimg && id == c->img_context_id;
        if (image) rows[k++] = (int64_t)i * C;
        ids[i] = !image && id < c->llm_vocab ? id : -1;
        ids[N + i] = !image && id >= c->llm_vocab ? id - c->llm_vocab : -1;
    }
    int32_t *dids = index_i32(a) + a->T;
    int64_t *drows = a->index.p;
    int rc = mmm_cuda_upload(dids, ids, 2 * (size_t)N * sizeof *ids);
    if (!rc && k) rc = mmm_cuda_upload(drows, rows, (size_t)k * sizeof *rows);
    free(ids);
    free(rows);
    if (!rc) rc = mmm_cuda_embedding_backward(gw->text_emb, dx, dids, N, c->llm_vocab, C);
    if (!rc && gw->special_emb) rc = mmm_cuda_embedding_backward(gw->special_emb, dx, dids + N, N, c->n_special, C);
    if (!rc && k) rc = mmm_cuda_gather_rows(dimg, drows, dx, k, C);
    return rc;
}

static int backward_layers(const mmm_model *m, mmm_gpu_acts *a, const mmm_weights *gw, const float *dlogits,
                           float **dx_out) {
    const mmm_config *c = &m->cfg;
    const mmm_gpu_model *g = m->gpu;
    int B = a->B, T = a->T, C = c->hidden, L = mmm_config_n_layers(c), N = B * T;
    size_t NC = (size_t)N * C;
    float *dx = a->scratch, *dtmp = dx + MMM_ALIGN_FLOATS(NC), *scratch = dtmp + MMM_ALIGN_FLOATS(NC);

    /* logits = RMSNorm(x) · lm_headᵀ */
    const float *x_last = L ? a->layers[L - 1].x_out : a->embeds;
    int normed_last = c->n_llm_layers == 0 && c->normalize_encoder_output;
    TRY(mmm_cuda_memset(dtmp, 0, NC * sizeof *dtmp));
    TRY(gpu_linear_backward(g, dtmp, gw->lm_head, NULL, dlogits, a->hf, g->w.lm_head, N, C, c->vocab));
    TRY(mmm_cuda_memset(dx, 0, NC * sizeof *dx));
    TRY(mmm_cuda_rmsnorm_backward(dx, gw->final_norm, dtmp, normed_last ? a->enc_out : x_last, g->w.final_norm,
                                  a->rstdf, N, C, F32));
    if (normed_last) {
        TRY(mmm_cuda_copy(dtmp, dx, NC * sizeof *dx));
        TRY(mmm_cuda_memset(dx, 0, NC * sizeof *dx));
        TRY(mmm_cuda_l2norm_rows_backward(dx, dtmp, a->enc_out, a->enc_norms, N, C));
    }
    model_exec x = exec_cuda(m, a->ws.p, NULL);
    for (int l = L - 1; l >= 0; l--) {
        const mmm_layer_desc *d = &c->layers[l];
        TRY(layer_backward(&x, l, &a->layers[l], &gw->layers[l], dx, B, T, a->rope[d->stack][0], a->rope[d->stack][1],
                           scratch));
        if (l == c->n_emb_layers && c->normalize_encoder_output) {
            TRY(mmm_cuda_copy(dtmp, dx, NC * sizeof *dx));
            TRY(mmm_cuda_memset(dx, 0, NC * sizeof *dx));
            TRY(mmm_cuda_l2norm_rows_backward(dx, dtmp, a->enc_out, a->enc_norms, N, C));
        }
    }
    *dx_out = dx;
    return MMM_OK;
}

int gpu_backward(const mmm_model *m, mmm_gpu_acts *a, const float *dlogits, float *grads) {
    if (a->m != m) return mmm_fail(MMM_ERR_ARG, "gpu backward: the activations are another model's");
    if (!a->keep) return mmm_fail(MMM_ERR_ARG, "gpu backward: the forward kept no activations (mmm_gpu_forward_logits)");
    mmm_weights gw;
    TRY(gpu_grads_begin(m, &gw, grads));
    size_t NC = MMM_ALIGN_FLOATS((size_t)a->B * a->T * m->cfg.hidden);
    /* after the layers, dtmp takes the image rows' gradients and what follows it is scratch */
    float *dx = NULL, *dimg = a->n_tiles ? a->scratch + NC : NULL;
    model_exec x = exec_cuda(m, a->ws.p, NULL);
    int rc = backward_layers(m, a, &gw, dlogits, &dx);
    if (!rc) rc = embed_backward(m, a, &gw, dx, dimg);
    if (!rc && a->n_tiles) rc = vision_backward(&x, &gw, dimg, a->n_tiles, &a->vis, dimg + NC);
    if (rc) {
        mmm_weights_free(&gw);
        return rc;
    }
    return gpu_grads_end(m, &gw, grads);
}

int mmm_gpu_backward(const mmm_model *m, mmm_gpu_acts *a, const float *dlogits, float *grads) {
    gpu_buf d = {0};
    size_t bytes = (size_t)a->B * a->T * m->cfg.vocab * sizeof(float);
    int rc = gpu_buf_reserve(&d, bytes);
    if (!rc) rc = mmm_cuda_upload(d.p, dlogits, bytes);
    if (!rc) rc = gpu_backward(m, a, d.p, grads);
    gpu_buf_free(&d);
    return rc;
}

const float *gpu_acts_logits(const mmm_gpu_acts *a) { return a->logits; }
const layer_buf *gpu_acts_layer(const mmm_gpu_acts *a, int l) { return &a->layers[l]; }

static int download(float *out, const float *src, size_t n) {
    return mmm_cuda_download(out, src, n * sizeof(float));
}

int mmm_gpu_acts_logits(const mmm_gpu_acts *a, float *out) {
    return download(out, a->logits, (size_t)a->B * a->T * a->m->cfg.vocab);
}
int mmm_gpu_acts_input_embeds(const mmm_gpu_acts *a, float *out) {
    return download(out, a->embeds, (size_t)a->B * a->T * a->m->cfg.hidden);
}
int mmm_gpu_acts_encoder_output(const mmm_gpu_acts *a, float *out) {
    if (!a->keep) return mmm_fail(MMM_ERR_ARG, "gpu activations: the forward kept no activations");
    return download(out, a->llm_input, (size_t)a->B * a->T * a->m->cfg.hidden);
}
int mmm_gpu_acts_layer_output(const mmm_gpu_acts *a, int l, float *out) {
    if (l < 0 || l >= a->n_layers) return mmm_fail(MMM_ERR_ARG, "gpu activations: no layer %d", l);
    if (!a->keep) return mmm_fail(MMM_ERR_ARG, "gpu activations: the forward kept no activations");
    return download(out, a->layers[l].x_out, (size_t)a->B * a->T * a->m->cfg.hidden);
}
int mmm_gpu_acts_image_count(const mmm_gpu_acts *a) { return a->n_img; }
int mmm_gpu_acts_image_embeds(const mmm_gpu_acts *a, float *out) {
    return a->n_img ? download(out, a->vis.img, (size_t)a->n_img * a->m->cfg.hidden) : MMM_OK;
}
