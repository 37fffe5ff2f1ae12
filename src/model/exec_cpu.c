/* The CPU executor (exec.h): the model's operations on host memory through src/ops/cpu (fp32,
 * OpenMP, OpenBLAS). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "decode_cpu.h"
#include "internal.h"
#include "mmm/error.h"
#include "mmm/memory.h"
#include "mmm/rng.h"
#include "mmm/threads.h"
#include "mmm/ops/activation.h"
#include "mmm/ops/attention.h"
#include "mmm/ops/conv1d.h"
#include "mmm/ops/dense.h"
#include "mmm/ops/interpolate.h"
#include "mmm/ops/loss.h"
#include "mmm/ops/norm.h"
#include "mmm/ops/rope.h"
#include "mmm/ops/ssd.h"
#include "mmm/ops/vision.h"

#define PARALLEL_MIN 65536 /* elements below which a loop is not worth a parallel region */

static int reserve(const model_exec *x, exec_buf *b, size_t bytes, const char *what) {
    if (bytes <= b->cap) return MMM_OK;
    free(b->p);
    b->p = NULL;
    b->cap = 0;
    /* refused with the numbers rather than overcommitted and killed halfway */
    TRY(mmm_memory_check(bytes, "%s", what));
    if (!(b->p = malloc(bytes))) return mmm_fail(MMM_ERR_NOMEM, "%s: cannot allocate %.1f MB", what, bytes * 1e-6);
    b->cap = bytes;
    return MMM_OK;
}

static void release(const model_exec *x, exec_buf *b) {
    free(b->p);
    *b = (exec_buf){0};
}

static int upload(const model_exec *x, void *dst, const void *src, size_t bytes) {
    memcpy(dst, src, bytes);
    return MMM_OK;
}

static int download(const model_exec *x, void *dst, const void *src, size_t bytes) {
    memcpy(dst, src, bytes);
    return MMM_OK;
}

static int wait(const model_exec *x) { return MMM_OK; } /* every op has run when it returns */

static int zero(const model_exec *x, float *p, size_t n) {
    memset(p, 0, n * sizeof *p);
    return MMM_OK;
}

static int copy(const model_exec *x, void *dst, const void *src, size_t bytes) {
    memcpy(dst, src, bytes);
    return MMM_OK;
}

static int copy_cols(const model_exec *x, float *dst, int dst_ld, const float *src, int src_ld, long rows, int w) {
#pragma omp parallel for if (rows * w > PARALLEL_MIN)
    for (long i = 0; i < rows; i++) memcpy(dst + i * dst_ld, src + i * src_ld, (size_t)w * sizeof *dst);
    return MMM_OK;
}

static int add(const model_exec *x, float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for if (n > PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    return MMM_OK;
}

static int add_rows(const model_exec *x, float *out, const float *inp, const float *row, long N, int C) {
#pragma omp parallel for if (N * C > PARALLEL_MIN)
    for (long i = 0; i < N; i++)
        for (int j = 0; j < C; j++) out[i * C + j] = inp[i * C + j] + row[j];
    return MMM_OK;
}

static int mul_acc(const model_exec *x, float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] += a[i] * b[i];
    return MMM_OK;
}

#define UNARY(name, fn)                                                                                   \
    static int name##_forward(const model_exec *x, float *out, const float *inp, size_t n) {              \
        fn##_forward(out, inp, n);                                                                         \
        return MMM_OK;                                                                                     \
    }                                                                                                      \
    static int name##_backward(const model_exec *x, float *dinp, const float *dout, const float *inp,     \
                               size_t n) {                                                                 \
        fn##_backward(dinp, dout, inp, n);                                                                 \
        return MMM_OK;                                                                                     \
    }
UNARY(silu, mmm_silu)
UNARY(gelu, mmm_gelu)
UNARY(softplus, mmm_softplus)
#undef UNARY

static int swiglu_forward(const model_exec *x, float *out, const float *a, const float *b, size_t n) {
    mmm_swiglu_forward(out, a, b, n);
    return MMM_OK;
}

static int swiglu_backward(const model_exec *x, float *da, float *db, const float *dout, const float *a,
                           const float *b, size_t n) {
    mmm_swiglu_backward(da, db, dout, a, b, n);
    return MMM_OK;
}

static int linear_forward(const model_exec *x, float *out, const float *inp, const float *w, const float *bias,
                          int N, int C, int OC) {
    mmm_linear_forward(out, inp, w, bias, N, C, OC);
    return MMM_OK;
}

static int linear_backward(const model_exec *x, float *dinp, float *dw, float *dbias, const float *dout,
                           const float *inp, const float *w, int N, int C, int OC) {
    mmm_linear_backward(dinp, dw, dbias, dout, inp, w, N, C, OC);
    return MMM_OK;
}

static int rmsnorm_forward(const model_exec *x, float *out, float *rstd, const float *inp, const float *w, float eps,
                           int N, int C) {
    mmm_rmsnorm_forward(out, rstd, inp, w, eps, N, C);
    return MMM_OK;
}

static int rmsnorm_backward(const model_exec *x, float *dinp, float *dw, const float *dout, const float *inp,
                            const float *w, const float *rstd, int N, int C) {
    mmm_rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
    return MMM_OK;
}

static int gated_rmsnorm_forward(const model_exec *x, float *out, float *rstd, const float *y, const float *g,
                                 const float *w, float eps, int N, int H, int P) {
    mmm_gated_rmsnorm_forward(out, rstd, y, g, w, eps, N, H, P);
    return MMM_OK;
}

static int gated_rmsnorm_backward(const model_exec *x, float *dy, float *dg, float *dw, const float *dout,
                                  const float *y, const float *g, const float *w, const float *rstd, int N, int H,
                                  int P) {
    mmm_gated_rmsnorm_backward(dy, dg, dw, dout, y, g, w, rstd, N, H, P);
    return MMM_OK;
}

/* F.normalize: x / max(‖x‖, 1e-12) */
static int l2norm_rows_forward(const model_exec *x, float *out, float *norms, const float *inp, int N, int C) {
#pragma omp parallel for if ((long)N * C > PARALLEL_MIN)
    for (long i = 0; i < N; i++) {
        double ss = 0;
        for (int j = 0; j < C; j++) ss += (double)inp[i * C + j] * inp[i * C + j];
        float nrm = (float)fmax(sqrt(ss), 1e-12);
        norms[i] = nrm;
        for (int j = 0; j < C; j++) out[i * C + j] = inp[i * C + j] / nrm;
    }
    return MMM_OK;
}

static int l2norm_rows_backward(const model_exec *x, float *dinp, const float *dout, const float *out,
                                const float *norms, int N, int C) {
#pragma omp parallel for if ((long)N * C > PARALLEL_MIN)
    for (long i = 0; i < N; i++) {
        double dot = 0;
        for (int j = 0; j < C; j++) dot += (double)dout[i * C + j] * out[i * C + j];
        /* below the clamp the map is x / 1e-12, whose Jacobian has no projection term */
        float k = norms[i] > 1e-12f ? (float)dot : 0.0f;
        for (int j = 0; j < C; j++) dinp[i * C + j] += (dout[i * C + j] - k * out[i * C + j]) / norms[i];
    }
    return MMM_OK;
}

static int rope_forward(const model_exec *x, float *out, const float *inp, const float *cos_t, const float *sin_t,
                        int B, int T, int H, int D) {
    for (int b = 0; b < B; b++) {
        size_t at = (size_t)b * T * H * D;
        mmm_rope_forward(out + at, inp + at, cos_t, sin_t, T, H, D);
    }
    return MMM_OK;
}

static int rope_backward(const model_exec *x, float *dinp, const float *dout, const float *cos_t, const float *sin_t,
                         int B, int T, int H, int D) {
    for (int b = 0; b < B; b++) {
        size_t at = (size_t)b * T * H * D;
        mmm_rope_backward(dinp + at, dout + at, cos_t, sin_t, T, H, D);
    }
    return MMM_OK;
}

/* fp32 caches; a generation state (B = 1) appends its new rows, training attends to its own */
static int attend(const model_exec *x, layer_buf *a, const layer_cache *cache, const mmm_layer_desc *d, int B, int T,
                  float *scratch) {
    int H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim;
    size_t nk = (size_t)B * T * Hkv * D, row0 = (size_t)cache->pos0 * Hkv * D;
    if (cache->k != a->k) {
        memcpy((float *)cache->k + row0, a->k, nk * sizeof *a->k);
        memcpy((float *)cache->v + row0, a->v, nk * sizeof *a->v);
    }
    mmm_attention_forward(a->att, a->lse, a->q, cache->k, cache->v, B, T, cache->Tk, H, Hkv, D);
    return MMM_OK;
}

/* A batch's attention over fp32 caches: every sequence's key ranges (split as its fused step
 * splits them, so a row equals the sequence alone) shared out over the threads, then each
 * sequence's splits combined. x->attn_ws: the splits' parts, then the sequences' first splits. */
static int attend_seqs(const model_exec *x, float *att, const float *q, const float *k, const float *v,
                       const seq_kv *kv, const mmm_layer_desc *d, int n) {
    int H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, total = 0;
    size_t row = (size_t)Hkv * D, part = (size_t)H * (D + 2);
    for (int i = 0; i < n; i++) total += cpu_attention_splits(kv->len[i] + 1);
    float *parts = x->attn_ws;
    int *first = (int *)(parts + (size_t)total * part); /* (n + 1) */
    first[0] = 0;
    for (int i = 0; i < n; i++) {
        memcpy((float *)kv->k[i] + (size_t)kv->len[i] * row, k + i * row, row * sizeof *k);
        memcpy((float *)kv->v[i] + (size_t)kv->len[i] * row, v + i * row, row * sizeof *v);
        first[i + 1] = first[i] + cpu_attention_splits(kv->len[i] + 1);
    }
#pragma omp parallel for schedule(dynamic)
    for (int it = 0; it < total; it++) {
        int i = 0, ka, kb, Tk;
        while (first[i + 1] <= it) i++;
        Tk = kv->len[i] + 1;
        cpu_attention_split_range(Tk, it - first[i], &ka, &kb);
        mmm_attention_decode_split(parts + (size_t)it * part, q + (size_t)i * H * D, kv->k[i], kv->v[i], Tk, H, Hkv, D,
                                   ka, kb);
    }
#pragma omp parallel for if (n > 1)
    for (int i = 0; i < n; i++)
        mmm_attention_decode_combine(att + (size_t)i * H * D, parts + (size_t)first[i] * part, first[i + 1] - first[i],
                                     H, D, 0, H);
    return MMM_OK;
}

static size_t seq_kv_ws_bytes(const model_exec *x, int n, int Tmax, int H, int D) {
    return (size_t)n * cpu_attention_splits(Tmax) * H * (D + 2) * sizeof(float) + ((size_t)n + 1) * sizeof(int);
}

static int attention_backward(const model_exec *x, float *dq, float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *out, const float *lse, int B, int T,
                              int H, int Hkv, int D) {
    mmm_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, B, T, T, H, Hkv, D);
    return MMM_OK;
}

static int conv1d_forward(const model_exec *x, float *out, float *state_out, const float *inp, const float *state_in,
                          const float *w, const float *b, int B, int T, int C, int K) {
    mmm_conv1d_forward(out, state_out, inp, state_in, w, b, B, T, C, K);
    return MMM_OK;
}

static int conv1d_backward(const model_exec *x, float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, int B, int T, int C, int K) {
    mmm_conv1d_backward(dinp, NULL, dw, db, dout, inp, NULL, w, B, T, C, K);
    return MMM_OK;
}

static int mamba_A(const model_exec *x, int l, float *A) {
    const float *A_log = x->w->layers[l].A_log;
    for (int h = 0; h < x->m->cfg.layers[l].n_heads; h++) A[h] = -expf(A_log[h]);
    return MMM_OK;
}

static int ssd_forward(const model_exec *x, float *y, float *state, const float *xs, const float *Bs, const float *Cs,
                       const float *dt, const float *A, int B, int T, int H, int G, int P, int N) {
    if (T == 1 && state) { /* decoding: one fused recurrent step */
        mmm_ssd_step(y, state, xs, Bs, Cs, dt, A, B, H, G, P, N);
        return MMM_OK;
    }
    return mmm_ssd_forward(y, state, xs, Bs, Cs, dt, A, state, B, T, H, G, P, N, MMM_SSD_CHUNK);
}

static int ssd_backward(const model_exec *x, float *dxs, float *dBs, float *dCs, float *ddt, float *dA,
                        const float *dy, const float *xs, const float *Bs, const float *Cs, const float *dt,
                        const float *A, int B, int T, int H, int G, int P, int N) {
    return mmm_ssd_backward(dxs, dBs, dCs, ddt, dA, NULL, dy, NULL, xs, Bs, Cs, dt, A, NULL, B, T, H, G, P, N,
                            MMM_SSD_CHUNK);
}

static int embed(const model_exec *x, float *out, const int32_t *ids, int n, const float *img, long *img_cursor) {
    embed_tokens(x->m, out, ids, n, img, img_cursor);
    return MMM_OK;
}

static int embed_backward(const model_exec *x, const mmm_weights *gw, const float *dx, const int32_t *ids, int N,
                          float *dimg) {
    const mmm_config *c = &x->m->cfg;
    int C = c->hidden;
    long k = 0;
    for (long i = 0; i < N; i++) {
        const float *src = dx + (size_t)i * C;
        if (dimg && ids[i] == c->img_context_id) {
            memcpy(dimg + (size_t)k++ * C, src, (size_t)C * sizeof *src);
            continue;
        }
        float *dst = ids[i] < c->llm_vocab ? gw->text_emb + (size_t)ids[i] * C
                                           : gw->special_emb + (size_t)(ids[i] - c->llm_vocab) * C;
        for (int j = 0; j < C; j++) dst[j] += src[j];
    }
    return MMM_OK;
}

static int rope_tables(const model_exec *x, float *cos_t, float *sin_t, const int32_t *pos, int T, int seq_end,
                       const mmm_rope_scaling *r, int D) {
    mmm_rope_table_scaled(cos_t, sin_t, pos, r, seq_end, T, D);
    return MMM_OK;
}

static int grads_begin(const model_exec *x, mmm_weights *gw, float *grads) {
    if (!grads) return mmm_fail(MMM_ERR_ARG, "backward: no gradient buffer");
    return mmm_weights_bind(x->m, grads, gw);
}

static int grads_end(const model_exec *x, mmm_weights *gw, float *grads) {
    mmm_weights_free(gw);
    return MMM_OK;
}

static size_t ssd_ws_bytes(const model_exec *x, int B, int T) { return 0; } /* the CPU scan allocates its own */

static int cross_entropy(const model_exec *x, float *loss, float *dlogits, const float *logits, const int32_t *labels,
                         int N, int V, float scale) {
    TRY(mmm_cross_entropy_forward(loss, NULL, logits, labels, N, V));
    if (dlogits) mmm_cross_entropy_backward(dlogits, scale, logits, labels, N, V);
    return MMM_OK;
}

static int kl_div(const model_exec *x, float *loss, float *dstudent, const float *student, const float *teacher,
                  const uint8_t *mask, float tau, int N, int V, float scale) {
    *loss = mmm_kl_div_forward(student, teacher, mask, tau, N, V);
    if (dstudent) mmm_kl_div_backward(dstudent, NULL, scale, student, teacher, mask, tau, N, V);
    return MMM_OK;
}

static int masked_diff(const model_exec *x, float *d, double *sq, const float *a, const float *b, const uint8_t *mask,
                       float k, int N, int W) {
    double total = 0;
#pragma omp parallel for reduction(+ : total) if ((long)N * W > PARALLEL_MIN)
    for (int i = 0; i < N; i++)
        for (int j = 0; j < W; j++) {
            size_t at = (size_t)i * W + j;
            float diff = mask[i] ? a[at] - b[at] : 0.0f;
            total += (double)diff * diff;
            d[at] = k * diff;
        }
    *sq = total;
    return MMM_OK;
}

#define CPU_CHUNK 256 /* tokens per prefill step: bounds the scratch of a long prefill */

static int plan_state(const model_exec *x, int max_tokens, state_plan *p) {
    const char *source;
    int threads = mmm_threads();
    *p = (state_plan){.chunk = CPU_CHUNK, .vision_group = 1, .kv_dt = MMM_DTYPE_F32, .fused_decode = 1,
                      .decode_ws_bytes = cpu_decode_ws_bytes(&x->m->cfg, threads), .decode_threads = threads};
    p->room = mmm_memory_limit(&source) / 10 * 9; /* as mmm_memory_check */
    p->where = source;
    return MMM_OK;
}

static int fill_uniform(const model_exec *x, void *p, mmm_dtype dt, size_t n, float lo, float hi, uint64_t seed) {
    if (dt != MMM_DTYPE_F32) return mmm_fail(MMM_ERR_UNSUPPORTED, "cpu fill: only fp32 buffers");
    mmm_rng rng = mmm_rng_seed(seed);
    float *f = p;
    for (size_t i = 0; i < n; i++) f[i] = lo + (hi - lo) * (float)mmm_rng_uniform(&rng);
    return MMM_OK;
}

/* Each patch flattened in (channel, y, x) order, matching the conv weight (C, 3, p, p). */
static int patches(const model_exec *x, float *out, const float *pixels, int n, int S, int p) {
    int gt = S / p, K = 3 * p * p;
#pragma omp parallel for collapse(2) if ((long)n * S * S > PARALLEL_MIN)
    for (int t = 0; t < n; t++)
        for (int gy = 0; gy < gt; gy++)
            for (int gx = 0; gx < gt; gx++) {
                float *dst = out + (((size_t)t * gt + gy) * gt + gx) * K;
                for (int ch = 0; ch < 3; ch++)
                    for (int y = 0; y < p; y++)
                        memcpy(dst + (ch * p + y) * p, pixels + (((size_t)t * 3 + ch) * S + gy * p + y) * S + gx * p,
                               (size_t)p * sizeof *dst);
            }
    return MMM_OK;
}

static int pixel_shuffle_forward(const model_exec *x, float *out, const float *inp, int n, int G, int C, int r) {
    mmm_pixel_shuffle_forward(out, inp, n, G, G, C, r);
    return MMM_OK;
}

static int pixel_shuffle_backward(const model_exec *x, float *dinp, const float *dout, int n, int G, int C, int r) {
    mmm_pixel_shuffle_backward(dinp, dout, n, G, G, C, r);
    return MMM_OK;
}

static int pos_grid(const model_exec *x, float *pos) {
    const mmm_config *c = &x->m->cfg;
    int C = c->hidden, gp = mmm_config_patch_grid(c), gt = mmm_config_tile_grid(c);
    const float *grid = x->w->pos_emb + C; /* slot 0 is the unused class position */
    if (gt == gp) memcpy(pos, grid, (size_t)gp * gp * C * sizeof *pos);
    else mmm_bicubic_resize_forward(pos, grid, gp, gp, gt, gt, C);
    return MMM_OK;
}

static int pos_grid_backward(const model_exec *x, const mmm_weights *gw, const float *dpos) {
    const mmm_config *c = &x->m->cfg;
    int C = c->hidden, gp = mmm_config_patch_grid(c), gt = mmm_config_tile_grid(c);
    float *grid = gw->pos_emb + C;
    if (gt == gp)
        for (size_t i = 0; i < (size_t)gp * gp * C; i++) grid[i] += dpos[i];
    else
        mmm_bicubic_resize_backward(grid, dpos, gp, gp, gt, gt, C);
    return MMM_OK;
}

static int decode_token(const model_exec *x, decode_bufs *b, int pos, float *logits) {
    return cpu_decode_token(x, b, pos, logits);
}

static const exec_ops cpu_ops = EXEC_OPS(.decode_token = decode_token);

model_exec exec_cpu(const mmm_model *m) {
    return (model_exec){.op = &cpu_ops, .host = 1, .m = m, .w = &m->w};
}
