/* Inference: a per-sequence generation state (KV caches of attention layers, conv and SSM states
 * of mamba2 layers) fed by chunked prefill and a single-token decode step, written once over
 * the executor (exec.h) of the device the model lives on. The device chooses the layout
 * (state_plan): chunk length, cache dtype, how many image tiles at once, and whether one token
 * takes its fused decode step instead of a one-token chunk. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"
#include "state.h"



/* Bytes of layer l's per-sequence memory: the KV cache grows with max_tokens, the recurrent
 * state of a mamba2 layer does not. */
static size_t kv_bytes(const mmm_layer_desc *d, int tokens, mmm_dtype dt) {
    return (size_t)tokens * d->n_kv_heads * d->head_dim * mmm_dtype_size(dt);
}
static size_t conv_floats(const mmm_layer_desc *d) {
    return (size_t)(MMM_MAMBA_CONV_K - 1) * mamba_conv_channels(d);
}
static size_t ssm_floats(const mmm_layer_desc *d) { return (size_t)d->n_heads * d->head_dim * d->head_dim; }
static size_t layer_state_bytes(const mmm_layer_desc *d, int tokens, mmm_dtype kv_dt) {
    return d->kind == MMM_MIXER_ATTENTION ? 2 * kv_bytes(d, tokens, kv_dt)
                                          : (conv_floats(d) + ssm_floats(d)) * sizeof(float);
}

static size_t cache_bytes(const mmm_config *c, int max_tokens, mmm_dtype kv_dt) {
    size_t cache = 0;
    for (int l = 0; l < mmm_config_n_layers(c); l++) cache += layer_state_bytes(&c->layers[l], max_tokens, kv_dt);
    return cache;
}

/* Sizes (and with base != NULL carves) the buffers of a step over `rows` tokens: for each mixer
 * kind one set shared by its layers, each buffer as large as the largest layer of that kind
 * needs, then the rest. */
size_t step_layout(step_bufs *sb, const mmm_config *c, int rows, float *base) {
    int C = c->hidden, Dmax = max_head_dim(c), has[2];
    mmm_layer_desc widest[2];
    size_t used = 0, scratch = 0;
    mmm_config_widest(c, widest, has);
    float *p = base;
    for (int kind = 0; kind < 2; kind++) {
        if (!has[kind]) continue;
        used += layer_floats(&widest[kind], rows, C, 1, rows);
        if (base) layer_carve(&sb->buf[kind], &p, &widest[kind], rows, C, 1, rows);
        if (layer_scratch_floats(&widest[kind], rows) > scratch) scratch = layer_scratch_floats(&widest[kind], rows);
    }
#define TAKE(field, n) do { size_t n_ = MMM_ALIGN_FLOATS(n); if (base) { sb->field = p; p += n_; } used += n_; } while (0)
    TAKE(scratch, scratch);
    TAKE(x, (size_t)rows * C);
    TAKE(hf, (size_t)rows * C);
    TAKE(rstdf, rows);
    TAKE(norms, rows);
    for (int st = 0; st < 2; st++) { TAKE(rope[st][0], (size_t)rows * Dmax / 2); TAKE(rope[st][1], (size_t)rows * Dmax / 2); }
#undef TAKE
    return used;
}

int step_layers(const model_exec *x, step_bufs *sb, int B, int T, const layer_cache *caches) {
    const mmm_config *c = &x->m->cfg;
    int C = c->hidden, L = mmm_config_n_layers(c), N = B * T;
    for (int l = 0; l < L; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (l == c->n_emb_layers && c->normalize_encoder_output)
            TRY(x->op->l2norm_rows_forward(x, sb->x, sb->norms, sb->x, N, C));
        layer_buf *a = &sb->buf[d->kind];
        a->x_in = sb->x; /* layer_forward reads x_in in place */
        TRY(layer_forward(x, l, a, sb->x, B, T, &caches[l], sb->rope[d->stack][0], sb->rope[d->stack][1], sb->scratch));
        TRY(x->op->copy(x, sb->x, a->x_out, (size_t)N * C * sizeof(float)));
    }
    if (c->n_llm_layers == 0 && c->normalize_encoder_output) TRY(x->op->l2norm_rows_forward(x, sb->x, sb->norms, sb->x, N, C));
    return MMM_OK;
}

int step_head(const model_exec *x, step_bufs *sb, int first, int rows, float *out) {
    const mmm_config *c = &x->m->cfg;
    int C = c->hidden;
    TRY(x->op->rmsnorm_forward(x, sb->hf, sb->rstdf, sb->x + (size_t)first * C, x->w->final_norm, c->final_norm_eps,
                               rows, C));
    return x->op->linear_forward(x, out, sb->hf, x->w->lm_head, NULL, rows, C, c->vocab);
}

int step_logits(const model_exec *x, step_bufs *sb, exec_buf *staging, int first, int rows, float *dst) {
    size_t bytes = (size_t)rows * x->m->cfg.vocab * sizeof(float);
    float *out = dst;
    if (!x->host) {
        TRY(x->op->reserve(x, staging, bytes, "the logits of a step"));
        out = staging->p;
    }
    TRY(step_head(x, sb, first, rows, out));
    return out == dst ? MMM_OK : x->op->download(x, dst, out, bytes);
}

static size_t vision_bytes(const mmm_config *c, int tiles) {
    return c->patch_size ? (vision_buf_floats(c, tiles) + (size_t)tiles * 3 * c->tile_size * c->tile_size) * sizeof(float)
                         : 0;
}

size_t mmm_state_estimate_bytes(const mmm_model *m, int max_tokens) {
    model_exec x = exec_cpu(m);
    state_plan plan;
    x.op->state_plan(&x, max_tokens, &plan);
    return cache_bytes(&m->cfg, max_tokens, plan.kv_dt) + step_layout(NULL, &m->cfg, plan.chunk, NULL) * sizeof(float) +
           vision_bytes(&m->cfg, plan.vision_group) + plan.chunk * sizeof(int32_t);
}

int mmm_default_max_tokens(const mmm_config *c) {
    double longest = MMM_DEFAULT_MAX_TOKENS;
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        double n = (double)d->max_pos * (d->rope_kind != MMM_ROPE_PLAIN && d->rope_factor > 1 ? d->rope_factor : 1);
        if (n > longest) longest = n;
    }
    return longest < 1 << 30 ? (int)longest : 1 << 30;
}

void mmm_state_free(mmm_state *s) {
    if (!s) return;
    const model_exec *x = &s->dev;
    if (x->op->decode_release) x->op->decode_release(x, &s->db);
    for (int l = 0; s->mem && l < s->n_layers; l++) x->op->release(x, &s->mem[l]);
    exec_buf *bufs[] = {&s->arena, &s->ssd_ws, &s->attn_ws, &s->logits, &s->vis, &s->img, &s->dec};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) x->op->release(x, bufs[i]);
    free(s->mem);
    free(s->k);
    free(s->v);
    free(s->conv);
    free(s->ssm);
    free(s->caches);
    free(s->pos);
    free(s);
}

void mmm_state_reset(mmm_state *s) {
    const mmm_config *c = &s->model->cfg;
    for (int l = 0; l < s->n_layers; l++)
        if (s->conv[l]) { /* recurrent states start from zero; KV caches are simply overwritten; a
                             failure surfaces at the next prefill */
            s->dev.op->zero(&s->dev, s->conv[l], conv_floats(&c->layers[l]));
            s->dev.op->zero(&s->dev, s->ssm[l], ssm_floats(&c->layers[l]));
        }
    s->len = 0;
}

/* The fused decode's single-token vectors: the residual stream, the widest input projection, H·D
 * twice, the FFN width, the L2 norm, the rotary rows of both stacks, then the per-layer counters. */
static int alloc_decode(mmm_state *s) {
    const mmm_config *c = &s->model->cfg;
    size_t widest = 0, hd = 0, ffn = 0, L = (size_t)s->n_layers, C = (size_t)c->hidden;
    size_t half = MMM_ALIGN_FLOATS((size_t)max_head_dim(c) / 2);
    for (size_t l = 0; l < L; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        size_t in = d->kind == MMM_MIXER_ATTENTION ? (size_t)(d->n_heads + 2 * d->n_kv_heads) * d->head_dim
                                                   : layer_scratch_floats(d, 1);
        if (in > widest) widest = in;
        if ((size_t)d->n_heads * d->head_dim > hd) hd = (size_t)d->n_heads * d->head_dim;
        if ((size_t)d->ffn > ffn) ffn = (size_t)d->ffn;
    }
    size_t floats = MMM_ALIGN_FLOATS(C) + MMM_ALIGN_FLOATS(widest) + 2 * MMM_ALIGN_FLOATS(hd) + MMM_ALIGN_FLOATS(ffn) +
                    4 + 4 * half;
    size_t ints = MMM_ALIGN_FLOATS(L); /* the counters, then the device's workspace */
    TRY(s->dev.op->reserve(&s->dev, &s->dec, (floats + ints) * sizeof(float) + s->plan.decode_ws_bytes,
                           "the decode step's buffers"));
    float *p = s->dec.p;
    s->db = (decode_bufs){.x = p, .kv_dt = s->plan.kv_dt, .k = s->k, .v = s->v, .conv = s->conv,
                          .ssm = s->ssm, .Tmax = s->max_tokens, .ws_threads = s->plan.decode_threads};
    if (s->plan.decode_ws_bytes) s->db.ws = p + floats + ints;
    s->db.z = s->db.x + MMM_ALIGN_FLOATS(C);
    s->db.q = s->db.z + MMM_ALIGN_FLOATS(widest);
    s->db.y = s->db.q + MMM_ALIGN_FLOATS(hd);
    s->db.s = s->db.y + MMM_ALIGN_FLOATS(hd);
    s->db.norm = s->db.s + MMM_ALIGN_FLOATS(ffn);
    float *rope = s->db.norm + 4;
    for (int st = 0; st < 2; st++) s->db.rope[st][0] = rope + 2 * st * half, s->db.rope[st][1] = rope + (2 * st + 1) * half;
    s->db.sync = (int *)(p + floats);
    /* counters and the device's workspace start from zero */
    return s->dev.op->zero(&s->dev, (float *)s->db.sync, ints + s->plan.decode_ws_bytes / sizeof(float));
}

size_t state_conv_bytes(const mmm_layer_desc *d) { return conv_floats(d) * sizeof(float); }
size_t state_ssm_bytes(const mmm_layer_desc *d) { return ssm_floats(d) * sizeof(float); }

int mmm_state_new(mmm_state **out, const mmm_model *m, int max_tokens) {
    return state_new_at(out, m, max_tokens, NULL, NULL);
}

int state_new_at(mmm_state **out, const mmm_model *m, int max_tokens, float *const *conv, float *const *ssm) {
    const mmm_config *c = &m->cfg;
    int L = mmm_config_n_layers(c);
    if (max_tokens < 1) return mmm_fail(MMM_ERR_ARG, "state: max_tokens must be positive");
    model_exec x = exec_for(m);
    state_plan plan;
    TRY(x.op->state_plan(&x, max_tokens, &plan));
    size_t cache = cache_bytes(c, max_tokens, plan.kv_dt);
    size_t fixed = step_layout(NULL, c, plan.chunk, NULL) * sizeof(float) + vision_bytes(c, plan.vision_group) +
                   plan.attn_ws_bytes;
    if (cache + fixed > plan.room) { /* the tokens that would fit: the cache is linear in them, the rest not */
        double fit = plan.room > fixed && cache ? (double)max_tokens * (double)(plan.room - fixed) / (double)cache : 0;
        return mmm_fail(MMM_ERR_NOMEM, "a %d-token context needs %.2f GB of memory (%.2f GB of KV cache), more than "
                        "the %.2f GB available (%s); at most about %.0f tokens fit", max_tokens, (cache + fixed) * 1e-9,
                        cache * 1e-9, plan.room * 1e-9, plan.where, fit);
    }
    mmm_state *s = calloc(1, sizeof *s);
    if (!s) return mmm_fail(MMM_ERR_NOMEM, "state: out of memory");
    *s = (mmm_state){.model = m, .dev = x, .plan = plan, .max_tokens = max_tokens, .n_layers = L, .cache_bytes = cache,
                     .rows_given = conv != NULL};
    s->mem = calloc((size_t)L + 1, sizeof *s->mem);
    s->k = calloc((size_t)L + 1, sizeof *s->k);
    s->v = calloc((size_t)L + 1, sizeof *s->v);
    s->conv = calloc((size_t)L + 1, sizeof *s->conv);
    s->ssm = calloc((size_t)L + 1, sizeof *s->ssm);
    s->caches = calloc((size_t)L + 1, sizeof *s->caches);
    s->pos = malloc((size_t)plan.chunk * sizeof *s->pos);
    int rc = s->mem && s->k && s->v && s->conv && s->ssm && s->caches && s->pos ? MMM_OK
                                                                  : mmm_fail(MMM_ERR_NOMEM, "state: out of memory");
    char what[96];
    snprintf(what, sizeof what, "the caches of a %d-token context", max_tokens);
    for (int l = 0; l < L && !rc; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (d->kind != MMM_MIXER_ATTENTION && conv) {
            s->conv[l] = conv[l];
            s->ssm[l] = ssm[l];
            continue;
        }
        if ((rc = x.op->reserve(&x, &s->mem[l], layer_state_bytes(d, max_tokens, plan.kv_dt), what))) break;
        if (d->kind == MMM_MIXER_ATTENTION) {
            s->k[l] = s->mem[l].p;
            s->v[l] = (char *)s->mem[l].p + kv_bytes(d, max_tokens, plan.kv_dt);
        } else {
            s->conv[l] = s->mem[l].p;
            s->ssm[l] = s->conv[l] + conv_floats(d);
        }
    }
    if (!rc) rc = x.op->reserve(&x, &s->attn_ws, plan.attn_ws_bytes, "the attention workspace");
    if (!rc) s->dev.attn_ws = s->attn_ws.p;
    if (!rc && plan.fused_decode) rc = alloc_decode(s);
    if (rc) {
        mmm_state_free(s);
        return rc;
    }
    mmm_state_reset(s);
    *out = s;
    return MMM_OK;
}

void state_move_rows(mmm_state *s, float *const *conv, float *const *ssm) {
    const mmm_config *c = &s->model->cfg;
    for (int l = 0; l < s->n_layers; l++)
        if (c->layers[l].kind != MMM_MIXER_ATTENTION) {
            s->conv[l] = conv[l];
            s->ssm[l] = ssm[l];
        }
    /* a recorded decode step (CUDA: a captured graph) holds the old addresses */
    if (s->dev.op->decode_release) s->dev.op->decode_release(&s->dev, &s->db);
}

void state_trim(mmm_state *s) {
    const model_exec *x = &s->dev;
    exec_buf *bufs[] = {&s->arena, &s->ssd_ws, &s->vis, &s->img};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]->p) x->op->release(x, bufs[i]);
    s->dev.ssd_ws = NULL;
}

int mmm_state_length(const mmm_state *s) { return s->len; }
int mmm_state_capacity(const mmm_state *s) { return s->max_tokens; }
size_t mmm_state_bytes(const mmm_state *s) { return s->cache_bytes; }

int mmm_state_fill_synthetic(mmm_state *s, int len, uint64_t seed) {
    if (len < 0 || len > s->max_tokens)
        return mmm_fail(MMM_ERR_ARG, "state: %d tokens do not fit a %d-token state", len, s->max_tokens);
    const mmm_config *c = &s->model->cfg;
    for (int l = 0; l < s->n_layers; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        int attn = d->kind == MMM_MIXER_ATTENTION;
        void *a = attn ? s->k[l] : (void *)s->conv[l], *b = attn ? s->v[l] : (void *)s->ssm[l];
        mmm_dtype dt = attn ? s->plan.kv_dt : MMM_DTYPE_F32;
        size_t na = attn ? kv_bytes(d, len, dt) / mmm_dtype_size(dt) : conv_floats(d);
        size_t nb = attn ? na : ssm_floats(d);
        TRY(s->dev.op->fill_uniform(&s->dev, a, dt, na, -0.5f, 0.5f, seed + 2 * (uint64_t)l));
        TRY(s->dev.op->fill_uniform(&s->dev, b, dt, nb, -0.5f, 0.5f, seed + 2 * (uint64_t)l + 1));
    }
    s->len = len;
    return MMM_OK;
}

int mmm_state_copy(mmm_state *dst, const mmm_state *src) {
    if (dst->model != src->model || dst->max_tokens < src->len || dst->dev.op != src->dev.op)
        return mmm_fail(MMM_ERR_ARG, "state copy: states of different models, devices or too short");
    if (dst->plan.kv_dt != src->plan.kv_dt)
        return mmm_fail(MMM_ERR_ARG, "state copy: the caches differ in type (one state was made before bf16 "
                        "weights, the other after)");
    const mmm_config *c = &src->model->cfg;
    for (int l = 0; l < src->n_layers; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (d->kind == MMM_MIXER_ATTENTION) {
            TRY(src->dev.op->copy(&src->dev, dst->k[l], src->k[l], kv_bytes(d, src->len, src->plan.kv_dt)));
            TRY(src->dev.op->copy(&src->dev, dst->v[l], src->v[l], kv_bytes(d, src->len, src->plan.kv_dt)));
        } else {
            TRY(src->dev.op->copy(&src->dev, dst->conv[l], src->conv[l], state_conv_bytes(d)));
            TRY(src->dev.op->copy(&src->dev, dst->ssm[l], src->ssm[l], state_ssm_bytes(d)));
        }
    }
    dst->len = src->len;
    return MMM_OK;
}

/* The chunk's buffers and the SSD's workspace, on first use. */
static int reserve_chunk(mmm_state *s) {
    if (s->arena.p) return MMM_OK;
    const model_exec *x = &s->dev;
    const mmm_config *c = &s->model->cfg;
    TRY(x->op->reserve(x, &s->ssd_ws, x->op->ssd_ws_bytes(x, 1, s->plan.chunk), "the SSD workspace"));
    s->dev.ssd_ws = s->ssd_ws.p;
    TRY(x->op->reserve(x, &s->arena, step_layout(NULL, c, s->plan.chunk, NULL) * sizeof(float), "a prefill chunk"));
    step_layout(&s->sb, c, s->plan.chunk, s->arena.p);
    return MMM_OK;
}

/* The rotary tables of both stacks (into tab[stack][cos|sin]) for the T tokens from position pos0
 * of a prefill call that ends at seq_end tokens: InternLM2 sizes the dynamic base by the keys the
 * whole call ends with (kv_seq_len), so every chunk of one prefill shares it
 * (docs/model-format.md, RoPE scaling). */
static int rope_tables(mmm_state *s, float *tab[2][2], int T, int pos0, int seq_end) {
    const mmm_config *c = &s->model->cfg;
    for (int t = 0; t < T; t++) s->pos[t] = pos0 + t;
    for (int st = 0; st < 2; st++) {
        int first = st ? c->n_emb_layers : 0, n = st ? c->n_llm_layers : c->n_emb_layers;
        if (n == 0) continue;
        mmm_rope_scaling r = mmm_layer_rope(&c->layers[first]);
        TRY(s->dev.op->rope_tables(&s->dev, tab[st][0], tab[st][1], s->pos, T, seq_end, &r,
                                 c->layers[first].head_dim));
    }
    return MMM_OK;
}

/* Runs T (≤ chunk) tokens whose embeddings are in s->sb.x through every layer. */
static int run_chunk(mmm_state *s, int T, int seq_end) {
    TRY(rope_tables(s, s->sb.rope, T, s->len, seq_end));
    for (int l = 0; l < s->n_layers; l++)
        s->caches[l] = (layer_cache){s->k[l], s->v[l], s->len, s->len + T, s->max_tokens, s->conv[l], s->ssm[l],
                                     s->plan.kv_dt, NULL, NULL};
    TRY(step_layers(&s->dev, &s->sb, 1, T, s->caches));
    s->len += T;
    return MMM_OK;
}

/* The image embeddings of every tile of this prefill into s->img, plan.vision_group at a time. */
static int image_embeddings(mmm_state *s, const float *pixels, int n_tiles) {
    const model_exec *x = &s->dev;
    const mmm_config *c = &s->model->cfg;
    int C = c->hidden, tpt = mmm_config_tokens_per_tile(c);
    int group = n_tiles < s->plan.vision_group ? n_tiles : s->plan.vision_group;
    size_t tile = (size_t)3 * c->tile_size * c->tile_size, nv = vision_buf_floats(c, group);
    TRY(x->op->reserve(x, &s->img, (size_t)n_tiles * tpt * C * sizeof(float), "the image embeddings of a prompt"));
    TRY(x->op->reserve(x, &s->vis, vision_bytes(c, group), "the vision front end"));
    float *px = (float *)s->vis.p + nv, *img = s->img.p;
    for (int t0 = 0; t0 < n_tiles; t0 += group) {
        int n = n_tiles - t0 < group ? n_tiles - t0 : group;
        vision_buf v;
        vision_buf_carve(&v, s->vis.p, c, n);
        TRY(x->op->upload(x, px, pixels + t0 * tile, n * tile * sizeof(float)));
        TRY(vision_forward(x, px, n, &v));
        TRY(x->op->copy(x, img + (size_t)t0 * tpt * C, v.img, (size_t)n * tpt * C * sizeof(float)));
    }
    return MMM_OK;
}

/* One token through the device's fused decode step; its logits into out (V, host). */
static int decode_fused(mmm_state *s, int32_t id, float *out) {
    const model_exec *x = &s->dev;
    int V = s->model->cfg.vocab;
    long cursor = 0;
    TRY(x->op->embed(x, s->db.x, &id, 1, NULL, &cursor));
    TRY(rope_tables(s, s->db.rope, 1, s->len, s->len + 1));
    TRY(x->op->reserve(x, &s->logits, (size_t)V * sizeof(float), "the logits of a token"));
    TRY(x->op->decode_token(x, &s->db, s->len, s->logits.p));
    TRY(x->op->download(x, out, s->logits.p, (size_t)V * sizeof *out));
    s->len++;
    return MMM_OK;
}

int mmm_prefill(const mmm_model *m, mmm_state *s, const int32_t *ids, int T, const float *pixels,
                int n_tiles, float *logits, float *last) {
    const mmm_config *c = &m->cfg;
    if (s->model != m) return mmm_fail(MMM_ERR_ARG, "prefill: the state belongs to another model");
    if (T < 1) return mmm_fail(MMM_ERR_ARG, "prefill: no tokens");
    if (s->len + T > s->max_tokens)
        return mmm_fail(MMM_ERR_ARG, "prefill: %d + %d tokens exceed the state's %d-token context",
                        s->len, T, s->max_tokens);
    TRY(check_input_ids(c, ids, T, n_tiles, "prefill"));
    const model_exec *x = &s->dev;
    int V = c->vocab;
    if (T == 1 && n_tiles == 0 && s->plan.fused_decode && (logits || last)) {
        TRY(decode_fused(s, ids[0], logits ? logits : last));
        if (logits && last) memcpy(last, logits, (size_t)V * sizeof *last);
        return x->op->wait(x); /* done when it returns (timings) */
    }
    TRY(reserve_chunk(s));
    const float *img = NULL;
    if (n_tiles > 0 && c->patch_size) {
        TRY(image_embeddings(s, pixels, n_tiles));
        img = s->img.p;
    }
    long cursor = 0;
    int seq_end = s->len + T;
    for (int t0 = 0; t0 < T; t0 += s->plan.chunk) {
        int n = T - t0 < s->plan.chunk ? T - t0 : s->plan.chunk;
        TRY(x->op->embed(x, s->sb.x, ids + t0, n, img, &cursor));
        TRY(run_chunk(s, n, seq_end));
        int want_all = logits != NULL, want_last = last && t0 + n == T;
        if (!want_all && !want_last) continue;
        int first = want_all ? 0 : n - 1;
        TRY(step_logits(x, &s->sb, &s->logits, first, n - first, want_all ? logits + (size_t)(t0 + first) * V : last));
        if (want_all && want_last) memcpy(last, logits + (size_t)(T - 1) * V, (size_t)V * sizeof *last);
    }
    return x->op->wait(x); /* done when it returns (timings), and any kernel's error reported */
}

int mmm_decode(const mmm_model *m, mmm_state *s, int32_t id, float *logits) {
    return mmm_prefill(m, s, &id, 1, NULL, 0, NULL, logits);
}
