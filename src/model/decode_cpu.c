/* The CPU's fused single-token step (exec.h, decode_token): one parallel region per token in which
 * every thread runs the same program of stages (mmm/workshare.h) — the products split into row
 * blocks, attention by head and key range, the short convolution and the SSM update by kv group.
 * RMSNorm is folded into the product that follows it and the residual add into the product that
 * ends each half of a layer: each thread normalises (and for int8 weights quantizes) the input
 * once per stage into its own scratch, when it claims its first block of that stage. The weight
 * matrices are read in the precision of the model's CPU copies (mmm/quant.h), fp32 without them.
 * Same mathematics as layer_forward over one token (docs/design.md §9). */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "decode_cpu.h"
#include "internal.h"
#include "mmm/error.h"
#include "mmm/ops/attention.h"
#include "mmm/ops/gemv.h"
#include "mmm/ops/norm.h"
#include "mmm/ops/ssd.h"
#include "mmm/quant.h"
#include "mmm/workshare.h"

#pragma omp declare simd notinbranch
float expf(float x);

#define SPLIT_KEYS 512   /* keys per split of a decode step's attention ... */
#define MAX_SPLITS 64    /* ... up to this many splits */
#define ATTN_TILE 128    /* split boundaries fall on the key tiles of mmm_attention_forward */
#define MAX_ITEM_ROWS 256 /* rows of a product one claim takes, at most */
#define ITEM_BYTES (64 * 1024) /* weight bytes a claim should cover, for the claims to cost little */

/* A thread's own scratch. */
typedef struct {
    float *h;         /* (widest input) the stage's input, normalised */
    int8_t *hq;       /* (widest input) its int8 blocks */
    float *hs;        /* (its blocks) their scales */
    float *a, *b;     /* (MAX_ITEM_ROWS) the two FFN products of a block */
    int prepared;     /* the stage whose input h holds */
} thread_ws;

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static int widest_input(const mmm_config *c) {
    int w = c->hidden;
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (d->n_heads * d->head_dim > w) w = d->n_heads * d->head_dim;
        if (d->ffn > w) w = d->ffn;
    }
    return w;
}

static int widest_conv(const mmm_config *c) {
    int w = 1;
    for (int l = 0; l < mmm_config_n_layers(c); l++)
        if (c->layers[l].kind == MMM_MIXER_MAMBA2 && mamba_conv_channels(&c->layers[l]) > w)
            w = mamba_conv_channels(&c->layers[l]);
    return w;
}

/* the attention splits' parts: MAX_SPLITS × the widest H·(D + 2) */
static size_t parts_bytes(const mmm_config *c) {
    size_t w = 0;
    for (int l = 0; l < mmm_config_n_layers(c); l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (d->kind == MMM_MIXER_ATTENTION && (size_t)d->n_heads * (d->head_dim + 2) > w)
            w = (size_t)d->n_heads * (d->head_dim + 2);
    }
    return align64(MAX_SPLITS * w * sizeof(float));
}

static size_t thread_ws_bytes(const mmm_config *c) {
    size_t W = (size_t)widest_input(c);
    return align64(W * sizeof(float)) + align64(W) + align64((size_t)mmm_q8_blocks((int)W) * sizeof(float)) +
           2 * align64(MAX_ITEM_ROWS * sizeof(float));
}

/* stages: per layer at most 7 (input product, three attention stages or one mamba2 stage, output
 * product, two FFN products), one for the encoder output's normalisation, one for lm_head */
static int n_stages(const mmm_config *c) { return 7 * mmm_config_n_layers(c) + 2; }

size_t cpu_decode_ws_bytes(const mmm_config *c, int threads) {
    return 64 /* team_size */ + align64(mmm_ws_lines_bytes(n_stages(c), threads)) +
           align64((size_t)widest_conv(c) * sizeof(float)) + parts_bytes(c) + (size_t)threads * thread_ws_bytes(c) + 64;
}

/* ---- the pieces of a step ---- */

typedef struct {
    const mmm_model *m;
    const decode_bufs *b;
    int pos, nt;
    float *act;      /* (Dc) SiLU(conv) of the current mamba2 layer */
    float *parts;    /* (splits, H·(D + 2)) the current attention layer's splits */
    mmm_ws_team team;
    thread_ws *tws;  /* (nt) */
} step;

/* One product out = W·in (+ bias), in = RMSNorm(src)·norm_w when norm_w is given, else src. */
typedef struct {
    const float *src, *norm_w;
    float eps;
    const mmm_qmatrix *W, *W3; /* W3: the FFN's second matrix; then out = SiLU(W·in) ⊙ (W3·in) */
    float *out;
    const float *bias;         /* may be out: a residual added in place */
    int C, OC, rows, stage;
} product;

static void prepare(const product *p, thread_ws *t) {
    if (t->prepared == p->stage) return;
    t->prepared = p->stage;
    if (p->norm_w) {
        double ss = 0;
        for (int k = 0; k < p->C; k++) ss += (double)p->src[k] * p->src[k];
        float r = (float)(1.0 / sqrt(ss / p->C + p->eps));
        for (int k = 0; k < p->C; k++) t->h[k] = p->src[k] * r * p->norm_w[k];
    } else {
        memcpy(t->h, p->src, (size_t)p->C * sizeof *t->h);
    }
    if (p->W->type == MMM_WEIGHTS_INT8) mmm_quantize_q8(t->hq, t->hs, t->h, 1, p->C, MMM_Q8_BLOCK);
}

static void rows_of(const mmm_qmatrix *W, float *out, const thread_ws *t, const float *bias, int C, int o0, int o1) {
    switch (W->type) {
    case MMM_WEIGHTS_F32: mmm_gemv_f32_rows(out, t->h, W->w, bias, C, o0, o1); break;
    case MMM_WEIGHTS_BF16: mmm_gemv_bf16_rows(out, t->h, W->w, bias, C, o0, o1); break;
    case MMM_WEIGHTS_INT8: mmm_gemv_q8_rows(out, t->hq, t->hs, W->w, W->scale, bias, C, o0, o1); break;
    }
}

static void product_item(void *ctx, int item, void *tls) {
    const product *p = ctx;
    thread_ws *t = tls;
    prepare(p, t);
    int o0 = item * p->rows, o1 = o0 + p->rows < p->OC ? o0 + p->rows : p->OC;
    if (!p->W3) {
        rows_of(p->W, p->out, t, p->bias, p->C, o0, o1);
        return;
    }
    rows_of(p->W, t->a - o0, t, NULL, p->C, o0, o1); /* a, b hold rows [o0, o1) */
    rows_of(p->W3, t->b - o0, t, NULL, p->C, o0, o1);
    for (int o = o0; o < o1; o++) {
        float a = t->a[o - o0];
        p->out[o] = a * (1.0f / (1.0f + expf(-a))) * t->b[o - o0]; /* as mmm_swiglu_forward */
    }
}

static size_t row_bytes(const mmm_qmatrix *W, int C) {
    return W->type == MMM_WEIGHTS_F32 ? (size_t)C * 4 : W->type == MMM_WEIGHTS_BF16 ? (size_t)C * 2 : (size_t)C;
}

/* Rows per claim: enough weight bytes that claiming costs little, few enough that every thread
 * gets several claims (a late thread then finds work left), never more than MAX_ITEM_ROWS. */
static int item_rows(const product *p, int nt) {
    size_t by_bytes = ITEM_BYTES / row_bytes(p->W, p->C) + 1;
    size_t by_share = ((size_t)p->OC + 4 * (size_t)nt - 1) / (4 * (size_t)nt);
    size_t rows = by_bytes < by_share ? by_bytes : by_share;
    rows = (rows + 7) & ~(size_t)7;
    return rows < 8 ? 8 : rows > MAX_ITEM_ROWS ? MAX_ITEM_ROWS : (int)rows;
}

static void run_product(step *s, mmm_ws_cursor *cur, thread_ws *t, product p) {
    p.stage = cur->stage;
    p.rows = item_rows(&p, s->nt);
    mmm_ws_for(cur, (p.OC + p.rows - 1) / p.rows, product_item, &p, t);
}

/* The matrix decode reads: the model's CPU copy, else its fp32 weights. */
static mmm_qmatrix matrix(const float *w, const mmm_qmatrix *copy) {
    return copy && copy->w ? *copy : (mmm_qmatrix){MMM_WEIGHTS_F32, w, NULL};
}

/* ---- attention ---- */

typedef struct {
    step *s;
    const mmm_layer_desc *d;
    int l;
    const float *cos_t, *sin_t;
} mixer;

static void rotate(float *out, const float *in, const float *cos_t, const float *sin_t, int D) {
    int half = D / 2;
    for (int i = 0; i < half; i++) {
        float x1 = in[i], x2 = in[i + half];
        out[i] = x1 * cos_t[i] - x2 * sin_t[i];
        out[i + half] = x2 * cos_t[i] + x1 * sin_t[i];
    }
}

/* kv head g: its keys (rotated) and values into the caches at pos, its query heads rotated into q */
static void qkv_item(void *ctx, int g, void *tls) {
    const mixer *mx = ctx;
    const decode_bufs *b = mx->s->b;
    int D = mx->d->head_dim, Hkv = mx->d->n_kv_heads, rep = mx->d->n_heads / Hkv, pos = mx->s->pos;
    const float *grp = b->z + (size_t)g * (rep + 2) * D; /* [q × rep, k, v] (docs/design.md §2) */
    float *k = (float *)b->k[mx->l] + ((size_t)pos * Hkv + g) * D, *v = (float *)b->v[mx->l] + ((size_t)pos * Hkv + g) * D;
    for (int r = 0; r < rep; r++) rotate(b->q + ((size_t)g * rep + r) * D, grp + (size_t)r * D, mx->cos_t, mx->sin_t, D);
    rotate(k, grp + (size_t)rep * D, mx->cos_t, mx->sin_t, D);
    memcpy(v, grp + (size_t)(rep + 1) * D, (size_t)D * sizeof *v);
}

/* Attention of the token's query over keys [0, pos], shared out by key range (flash-decoding): the
 * split count depends on the length alone, so the result does not depend on the thread count. */
int cpu_attention_splits(int Tk) {
    int tiles = (Tk + SPLIT_KEYS - 1) / SPLIT_KEYS;
    return tiles < MAX_SPLITS ? tiles : MAX_SPLITS;
}

void cpu_attention_split_range(int Tk, int sp, int *ka, int *kb) {
    int n = cpu_attention_splits(Tk), tiles = (Tk + ATTN_TILE - 1) / ATTN_TILE;
    *ka = (int)((long)tiles * sp / n) * ATTN_TILE;
    *kb = (int)((long)tiles * (sp + 1) / n) * ATTN_TILE;
    if (*kb > Tk) *kb = Tk;
}

static void split_item(void *ctx, int sp, void *tls) {
    const mixer *mx = ctx;
    const decode_bufs *b = mx->s->b;
    int H = mx->d->n_heads, D = mx->d->head_dim, Tk = mx->s->pos + 1, ka, kb;
    cpu_attention_split_range(Tk, sp, &ka, &kb);
    mmm_attention_decode_split(mx->s->parts + (size_t)sp * H * (D + 2), b->q, b->k[mx->l], b->v[mx->l], Tk, H,
                               mx->d->n_kv_heads, D, ka, kb);
}

static void combine_item(void *ctx, int h, void *tls) {
    const mixer *mx = ctx;
    mmm_attention_decode_combine(mx->s->b->y, mx->s->parts, cpu_attention_splits(mx->s->pos + 1), mx->d->n_heads,
                                 mx->d->head_dim, h, h + 1);
}

/* ---- the mamba2 mixer (docs/design.md §3) ---- */

/* channels [c0, c1): SiLU(bias + Σ_j w_j·input_j) over the state rows and the new input, then the
 * state moves on by one row */
static void conv_channels(const mixer *mx, int c0, int c1) {
    const decode_bufs *b = mx->s->b;
    const mmm_layer_weights *w = &mx->s->m->w.layers[mx->l];
    int Dc = mamba_conv_channels(mx->d), K = MMM_MAMBA_CONV_K;
    float *state = b->conv[mx->l];
    for (int c = c0; c < c1; c++) {
        float acc = w->conv_b[c];
        for (int j = 0; j < K - 1; j++) acc += w->conv_w[(size_t)c * K + j] * state[(size_t)j * Dc + c];
        acc += w->conv_w[(size_t)c * K + K - 1] * b->z[c];
        mx->s->act[c] = acc * (1.0f / (1.0f + expf(-acc)));
        for (int j = 0; j + 1 < K - 1; j++) state[(size_t)j * Dc + c] = state[(size_t)(j + 1) * Dc + c];
        state[(size_t)(K - 2) * Dc + c] = b->z[c];
    }
}

/* kv group g, whose channels no other group reads: the convolution of its x and B channels and of
 * its heads' C channels ([x | B | C], docs/design.md §3), then for each of its heads h
 * dt = softplus(dt_raw + dt_bias), the recurrent SSD step (mmm_ssd_step) on h's state and the gated
 * per-head RMSNorm, RMSNorm(y)·w ⊙ SiLU(gate), in place in b->y. One stage per layer, not two. */
static void group_item(void *ctx, int g, void *tls) {
    const mixer *mx = ctx;
    const decode_bufs *b = mx->s->b;
    const mmm_layer_weights *w = &mx->s->m->w.layers[mx->l];
    int H = mx->d->n_heads, Hkv = mx->d->n_kv_heads, D = mx->d->head_dim, rep = H / Hkv;
    int Dc = mamba_conv_channels(mx->d), KD = Hkv * D, HD = H * D;
    conv_channels(mx, g * D, (g + 1) * D);
    conv_channels(mx, KD + g * D, KD + (g + 1) * D);
    conv_channels(mx, 2 * KD + g * rep * D, 2 * KD + (g + 1) * rep * D);
    for (int h = g * rep; h < (g + 1) * rep; h++) {
        float raw = b->z[Dc + HD + h] + w->dt_bias[h], A = -expf(w->A_log[h]), *y = b->y + (size_t)h * D;
        float dt = raw > 20.0f ? raw : log1pf(expf(raw)); /* as mmm_softplus_forward */
        mmm_ssd_step(y, b->ssm[mx->l] + (size_t)h * D * D, mx->s->act + (size_t)g * D,
                     mx->s->act + KD + (size_t)g * D, mx->s->act + 2 * KD + (size_t)h * D, &dt, &A, 1, 1, 1, D, D);
        mmm_gated_rmsnorm_forward(y, NULL, y, b->z + Dc + (size_t)h * D, w->gnorm, MMM_GNORM_EPS, 1, 1, D);
    }
}

static void l2norm_item(void *ctx, int item, void *tls) {
    const step *s = ctx;
    int C = s->m->cfg.hidden;
    double ss = 0;
    for (int k = 0; k < C; k++) ss += (double)s->b->x[k] * s->b->x[k];
    float n = (float)sqrt(ss), inv = 1.0f / (n > 1e-12f ? n : 1e-12f);
    for (int k = 0; k < C; k++) s->b->x[k] *= inv;
    *s->b->norm = n;
}

/* ---- the program every thread runs ---- */

static void layer_program(step *s, mmm_ws_cursor *cur, thread_ws *t, int l) {
    const mmm_config *c = &s->m->cfg;
    const mmm_layer_desc *d = &c->layers[l];
    const mmm_layer_weights *w = &s->m->w.layers[l];
    const mmm_qlayer *q = s->m->cpu ? &s->m->cpu->layers[l] : NULL;
    const decode_bufs *b = s->b;
    int C = c->hidden, H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, HD = H * D, F = d->ffn;
    mixer mx = {s, d, l, b->rope[d->stack][0], b->rope[d->stack][1]};
    if (d->kind == MMM_MIXER_ATTENTION) {
        mmm_qmatrix in = matrix(w->wqkv, q ? &q->wqkv : NULL), out = matrix(w->wo, q ? &q->wo : NULL);
        run_product(s, cur, t, (product){.src = b->x, .norm_w = w->attn_norm, .eps = d->rms_eps, .W = &in, .out = b->z,
                                         .C = C, .OC = (H + 2 * Hkv) * D});
        mmm_ws_for(cur, Hkv, qkv_item, &mx, t);
        mmm_ws_for(cur, cpu_attention_splits(s->pos + 1), split_item, &mx, t);
        mmm_ws_for(cur, H, combine_item, &mx, t);
        run_product(s, cur, t, (product){.src = b->y, .W = &out, .out = b->x, .bias = b->x, .C = HD, .OC = C});
    } else {
        int Dc = mamba_conv_channels(d);
        mmm_qmatrix in = matrix(w->wvkqgdt, q ? &q->wvkqgdt : NULL), out = matrix(w->o_proj, q ? &q->o_proj : NULL);
        run_product(s, cur, t, (product){.src = b->x, .norm_w = w->attn_norm, .eps = d->rms_eps, .W = &in, .out = b->z,
                                         .C = C, .OC = Dc + HD + H});
        mmm_ws_for(cur, Hkv, group_item, &mx, t);
        run_product(s, cur, t, (product){.src = b->y, .W = &out, .out = b->x, .bias = b->x, .C = HD, .OC = C});
    }
    mmm_qmatrix w1 = matrix(w->w1, q ? &q->w1 : NULL), w3 = matrix(w->w3, q ? &q->w3 : NULL),
                w2 = matrix(w->w2, q ? &q->w2 : NULL);
    run_product(s, cur, t, (product){.src = b->x, .norm_w = w->ffn_norm, .eps = d->rms_eps, .W = &w1, .W3 = &w3,
                                     .out = b->s, .C = C, .OC = F});
    run_product(s, cur, t, (product){.src = b->s, .W = &w2, .out = b->x, .bias = b->x, .C = F, .OC = C});
}

static int program(step *s, int me, thread_ws *t, float *logits) {
    const mmm_config *c = &s->m->cfg;
    int L = mmm_config_n_layers(c), normalize_at = c->normalize_encoder_output ? c->n_emb_layers : -1;
    mmm_ws_cursor cur = {.team = &s->team, .me = me};
    t->prepared = -1;
    for (int l = 0; l < L; l++) {
        if (l == normalize_at) mmm_ws_for(&cur, 1, l2norm_item, s, t);
        layer_program(s, &cur, t, l);
    }
    if (L == normalize_at) mmm_ws_for(&cur, 1, l2norm_item, s, t);
    mmm_qmatrix head = matrix(s->m->w.lm_head, s->m->cpu ? &s->m->cpu->lm_head : NULL);
    run_product(s, &cur, t, (product){.src = s->b->x, .norm_w = s->m->w.final_norm, .eps = c->final_norm_eps,
                                      .W = &head, .out = logits, .C = c->hidden, .OC = c->vocab});
    return cur.overflow;
}

/* The team size, kept across a state's steps. A step in which the threads spent more than a
 * quarter of its time yielding — waiting for blocks claimed by a thread the system had
 * descheduled, which happens when other processes want the cores — makes the next steps use one
 * thread fewer; every PROBE_STEPS steps the team tries one more again. The logits do not depend
 * on the team size. */
#define PROBE_STEPS 64
typedef struct {
    int threads; /* 0 before the first step */
    int until_probe;
} team_size;

static int pick_threads(team_size *ts, int most) {
    if (ts->threads < 1 || ts->threads > most) ts->threads = most;
    if (ts->threads < most && --ts->until_probe <= 0) {
        ts->threads++;
        ts->until_probe = PROBE_STEPS;
    }
    return ts->threads;
}

static void review_threads(team_size *ts, long long step_ns, long long yielded_ns) {
    if (ts->threads > 1 && yielded_ns * 4 > step_ns * (long long)ts->threads) {
        ts->threads--;
        ts->until_probe = PROBE_STEPS;
    }
}

static long long clock_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int cpu_decode_token(const model_exec *x, const decode_bufs *b, int pos, float *logits) {
    const mmm_config *c = &x->m->cfg;
    int most = 1;
#ifdef _OPENMP
    most = omp_get_max_threads();
#endif
    if (most > b->ws_threads) most = b->ws_threads;
    if (most < 1) most = 1;
    char *p = (char *)(((uintptr_t)b->ws + 63) & ~(uintptr_t)63);
    team_size *ts = (team_size *)p;
    p += 64;
    int threads = pick_threads(ts, most);
    step s = {.m = x->m, .b = b, .pos = pos, .nt = threads};
    s.team = (mmm_ws_team){.lines = (mmm_ws_line *)p, .n_stages = n_stages(c), .threads = threads};
    p += align64(mmm_ws_lines_bytes(n_stages(c), b->ws_threads));
    s.act = (float *)p;
    p += align64((size_t)widest_conv(c) * sizeof(float));
    s.parts = (float *)p;
    p += parts_bytes(c);
    thread_ws tws[threads];
    size_t W = (size_t)widest_input(c);
    for (int i = 0; i < threads; i++) {
        char *q = p + (size_t)i * thread_ws_bytes(c);
        tws[i].h = (float *)q, q += align64(W * sizeof(float));
        tws[i].hq = (int8_t *)q, q += align64(W);
        tws[i].hs = (float *)q, q += align64((size_t)mmm_q8_blocks((int)W) * sizeof(float));
        tws[i].a = (float *)q, q += align64(MAX_ITEM_ROWS * sizeof(float));
        tws[i].b = (float *)q;
    }
    mmm_ws_reset(&s.team);
    int overflow = 0;
    long long t0 = clock_ns();
#pragma omp parallel num_threads(threads) if (threads > 1) reduction(| : overflow)
    {
        int me = 0;
#ifdef _OPENMP
        me = omp_get_thread_num();
#endif
        overflow |= program(&s, me, &tws[me], logits);
    }
    review_threads(ts, clock_ns() - t0, atomic_load(&s.team.yielded_ns));
    return overflow ? mmm_fail(MMM_ERR_ARG, "CPU decode: the step has more stages than counted") : MMM_OK;
}
