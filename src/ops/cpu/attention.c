/* Causal grouped-query attention on CPU, flash-attention style. Scores exist only one
 * (row tile × key tile) block at a time, folded into a running max and sum per row (online
 * softmax), so a thread's scratch is a few ROWS×D, KEYS×D and ROWS×KEYS blocks on its stack
 * (under 400 KiB at D = 128), whatever Tq and Tk are. A row tile stacks query positions × the
 * query heads that share K/V reads:
 *  - tall tiles (prefill, and every backward): ROWS/G positions × the G heads of one kv head;
 *    the tile products go to OpenBLAS, single-threaded inside our OpenMP loops;
 *  - wide tiles (a forward with Tq·G ≤ WIDE_ROWS, i.e. decode): all Tq positions × all H heads,
 *    products by plain vectorised loops that walk keys in memory order, reading each cached
 *    key row (all kv heads) once as a contiguous stream. With so few rows a GEMM is overhead,
 *    and per-kv-head tiles would read the cache in 4 KiB-strided pieces (measured 3x slower). */
#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "mmm/ops/attention.h"

enum {
    ROWS = 128,          /* rows of a tall row tile (128×128 measured 10% faster than 64×64) */
    KEYS = 128,          /* keys of a key tile */
    WIDE_ROWS = 8,       /* wide tiles when Tq·G is at most this ... */
    WIDE_MAX = 128,      /* ... and Tq·H at most this (stack scratch) */
    MIN_SPLIT_TILES = 4, /* a flash-decoding split covers at least this many key tiles */
};

typedef struct {
    int B, Tq, Tk, H, Hkv, D;
    int G;        /* query heads per kv head */
    bool wide;    /* row tiles span every kv head (see the top of the file) */
    int ng;       /* kv heads per row tile: 1, or Hkv when wide */
    int hw;       /* query heads per row tile, ng·G; row r is position r / hw, head r % hw */
    int np;       /* query positions per row tile */
    int nqt;      /* row tiles per (batch, kv head) */
    int R;        /* rows of a full row tile, np·hw */
    size_t ldk;   /* row stride of k and v, Hkv·D */
    float scale;  /* 1/sqrt(D) */
} geom;

static geom make_geom(int B, int Tq, int Tk, int H, int Hkv, int D, bool allow_wide) {
    int G = H / Hkv;
    geom gm = {.B = B, .Tq = Tq, .Tk = Tk, .H = H, .Hkv = Hkv, .D = D, .G = G};
    gm.wide = allow_wide && (long)Tq * G <= WIDE_ROWS && (long)Tq * H <= WIDE_MAX;
    gm.ng = gm.wide ? Hkv : 1;
    gm.hw = gm.ng * G;
    gm.np = gm.wide ? Tq : gm.hw >= ROWS ? 1 : ROWS / gm.hw;
    gm.nqt = (Tq + gm.np - 1) / gm.np;
    gm.R = gm.np * gm.hw;
    gm.ldk = (size_t)Hkv * D;
    gm.scale = 1.0f / sqrtf((float)D);
    return gm;
}

/* Keys visible to row r of the row tile starting at position t0, within the key tile [j0, j0+nk):
 * row r is query t0 + r/hw at absolute position Tk − Tq + t0 + r/hw. May be ≤ 0. */
static int visible(const geom *gm, int t0, int r, int j0, int nk) {
    int n = gm->Tk - gm->Tq + t0 + r / gm->hw - j0 + 1;
    return n < nk ? n : nk;
}

/* First element of (b, t, kv head g's first query head) in a (B, Tq, H, D) tensor: the heads
 * of one position are contiguous, so a position's rows of the tile are one hw·D block. */
static size_t qoff(const geom *gm, int b, int t, int g) {
    return (((size_t)b * gm->Tq + t) * gm->H + (size_t)g * gm->G) * gm->D;
}

/* First element of (b, key j, kv head g) in a (B, Tk, Hkv, D) tensor. */
static size_t koff(const geom *gm, int b, int j, int g) {
    return (((size_t)b * gm->Tk + j) * gm->Hkv + g) * gm->D;
}

/* Index of (b, t, kv head g's first query head) in a (B, H, Tq) tensor; heads are Tq apart. */
static size_t loff(const geom *gm, int b, int t, int g) {
    return ((size_t)b * gm->H + (size_t)g * gm->G) * gm->Tq + t;
}

/* dst (n·hw, D) = mul · the rows of positions t0 .. t0+n, heads from kv head g0 on, of
 * src (B, Tq, H, D). */
static void load_rows(float *dst, const float *src, const geom *gm, int b, int g0, int t0, int n,
                      float mul) {
    size_t w = (size_t)gm->hw * gm->D;
    for (int i = 0; i < n; i++) {
        const float *s = src + qoff(gm, b, t0 + i, g0);
        for (size_t c = 0; c < w; c++) dst[i * w + c] = mul * s[c];
    }
}

/* exp(x) for the softmax's x ≤ 0, branch-free so loops over it vectorise (libm's expf does not
 * without -ffast-math): 2^n · e^f with n = round(x·log2 e), f = x − n·ln 2 split Cody-Waite
 * style, |f| ≤ ln2/2, and e^f by its degree-7 Taylor polynomial (truncation < 1e-8).
 * x < −87 gives about 1e-38 instead of a denormal; valid up to x = 88. */
static inline float exp_softmax(float x) {
    x = x < -87.0f ? -87.0f : x;
    const float shifter = 12582912.0f; /* 1.5·2^23: adding it rounds to an integer in low bits */
    float t = x * 1.44269504f + shifter;
    float n = t - shifter;
    float f = x - n * 0.693359375f + n * 2.12194440e-4f; /* ln 2 = 0.693359375 − 2.12194440e-4 */
    float p = 1.0f / 5040;
    p = p * f + 1.0f / 720;
    p = p * f + 1.0f / 120;
    p = p * f + 1.0f / 24;
    p = p * f + 1.0f / 6;
    p = p * f + 0.5f;
    p = p * f + 1.0f;
    p = p * f + 1.0f;
    uint32_t bits; /* unsigned: a NaN or huge x must not make the shift undefined behaviour */
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4B400000u + 127u) << 23; /* t's bits are 0x4B400000 + n; build 2^n */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* A row tile: batch b, kv heads g0 .. g0+ng, query positions t0 .. t0+n, n·hw rows. */
typedef struct { int b, g0, t0, n, rows; } tile;

/* Work item `item` of B · (Hkv/ng) · nqt; the last row tiles, which see the most keys, first. */
static tile tile_of(const geom *gm, long item) {
    int ngt = gm->Hkv / gm->ng;
    long per = (long)gm->B * ngt, bg = item % per;
    tile tl = {(int)(bg / ngt), (int)(bg % ngt) * gm->ng, 0, 0, 0};
    tl.t0 = (gm->nqt - 1 - (int)(item / per)) * gm->np;
    tl.n = gm->Tq - tl.t0 < gm->np ? gm->Tq - tl.t0 : gm->np;
    tl.rows = tl.n * gm->hw;
    return tl;
}

/* Offsets of row r of a tile in a (B, Tq, H, D) tensor and in a (B, H, Tq) one. */
static size_t row_off(const geom *gm, const tile *tl, int r) {
    return qoff(gm, tl->b, tl->t0 + r / gm->hw, tl->g0) + (size_t)(r % gm->hw) * gm->D;
}
static size_t lse_off(const geom *gm, const tile *tl, int r) {
    return loff(gm, tl->b, tl->t0 + r / gm->hw, tl->g0) + (size_t)(r % gm->hw) * gm->Tq;
}

/* S (rows, nk; row stride KEYS) = Qs (rows, D) · kᵀ for a tall tile; kt is its first key row. */
static void scores(float *S, const float *Qs, const float *kt, const geom *gm, int rows, int nk) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, nk, gm->D, 1.0f, Qs, gm->D, kt,
                (int)gm->ldk, 0.0f, S, KEYS);
}

/* The same for a wide tile of n positions, kt at (key j0, kv head g0): one key row of all kv heads
 * at a time, each dotted with the rows of its query heads. */
static void scores_wide(float *S, const float *Qs, const float *kt, const geom *gm, int n, int nk) {
    int D = gm->D;
    for (int c = 0; c < nk; c++) {
        const float *kr = kt + (size_t)c * gm->ldk;
        int r = 0;
        for (int i = 0; i < n; i++)
            for (int g = 0; g < gm->ng; g++)
                for (int h = 0; h < gm->G; h++, r++) {
                    const float *qr = Qs + (size_t)r * D, *kk = kr + (size_t)g * D;
                    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                    for (int d = 0; d < D; d++) acc += qr[d] * kk[d];
                    S[(size_t)r * KEYS + c] = acc;
                }
    }
}

/* O (n·hw, D) += P (n·hw, nk) · v for a wide tile, vt at (key j0, kv head g0). The tile's sum
 * goes through Ot first: adding a key tile at a time, as a GEMM would, keeps the rounding of a
 * 100K-key sum near fp32 precision instead of growing with every key. */
static void values_wide(float *O, float *Ot, const float *P, const float *vt, const geom *gm, int n,
                        int nk) {
    int D = gm->D;
    size_t len = (size_t)n * gm->hw * D;
    memset(Ot, 0, sizeof *Ot * len);
    for (int c = 0; c < nk; c++) {
        const float *vr = vt + (size_t)c * gm->ldk;
        int r = 0;
        for (int i = 0; i < n; i++)
            for (int g = 0; g < gm->ng; g++)
                for (int h = 0; h < gm->G; h++, r++) {
                    float p = P[(size_t)r * KEYS + c], *o = Ot + (size_t)r * D;
                    const float *vv = vr + (size_t)g * D;
#pragma omp simd
                    for (int d = 0; d < D; d++) o[d] += p * vv[d];
                }
    }
    for (size_t i = 0; i < len; i++) O[i] += Ot[i];
}

/* Online softmax over keys [ka, kb) for row tile tl: O (rows, D) gets Σ exp(s − m)·v, m the
 * running max and l the running Σ exp(s − m) per row. Rows that see none of these keys keep
 * m = −inf, l = 0, O = 0. Qs holds the queries already times 1/sqrt(D); S (rows, KEYS) and, for
 * wide tiles, Ot (rows, D) are scratch. */
static void attend(float *O, float *m, float *l, float *S, float *Ot, const float *Qs,
                   const float *k, const float *v, const geom *gm, const tile *tl, int ka, int kb) {
    int D = gm->D, rows = tl->rows;
    for (int r = 0; r < rows; r++) m[r] = -INFINITY, l[r] = 0.0f;
    memset(O, 0, sizeof *O * rows * D);
    for (int j0 = ka; j0 < kb; j0 += KEYS) {
        int nk = kb - j0 < KEYS ? kb - j0 : KEYS;
        const float *kt = k + koff(gm, tl->b, j0, tl->g0), *vt = v + koff(gm, tl->b, j0, tl->g0);
        if (gm->wide)
            scores_wide(S, Qs, kt, gm, tl->n, nk);
        else
            scores(S, Qs, kt, gm, rows, nk);
        for (int r = 0; r < rows; r++) {
            float *s = S + (size_t)r * KEYS;
            int vis = visible(gm, tl->t0, r, j0, nk);
            if (vis < 0) vis = 0;
            float mx = m[r];
#pragma omp simd reduction(max : mx)
            for (int c = 0; c < vis; c++) mx = s[c] > mx ? s[c] : mx;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int c = 0; c < vis; c++) {
                s[c] = exp_softmax(s[c] - mx);
                sum += s[c];
            }
            for (int c = vis; c < nk; c++) s[c] = 0.0f;
            if (mx > m[r]) { /* the max moved: rescale what was summed under the old one */
                float corr = expf(m[r] - mx);
                float *o = O + (size_t)r * D;
                for (int d = 0; d < D; d++) o[d] *= corr;
                l[r] *= corr;
                m[r] = mx;
            }
            l[r] += sum;
        }
        if (gm->wide)
            values_wide(O, Ot, S, vt, gm, tl->n, nk);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, nk, 1.0f, S, KEYS, vt,
                        (int)gm->ldk, 1.0f, O, D);
    }
}

/* How many key-range splits per row tile (flash-decoding): more than one only when the row tiles
 * alone cannot occupy every thread, and never below MIN_SPLIT_TILES key tiles per split. */
static int decode_splits(const geom *gm, long items) {
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (items == 0 || items >= threads) return 1;
    long want = (threads + items - 1) / items;
    long cap = ((long)gm->Tk + KEYS - 1) / KEYS / MIN_SPLIT_TILES;
    return (int)(want < cap ? want : cap > 1 ? cap : 1);
}

void mmm_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                           int B, int Tq, int Tk, int H, int Hkv, int D) {
    geom gm = make_geom(B, Tq, Tk, H, Hkv, D, true);
    int R = gm.R;
    long items = (long)B * (Hkv / gm.ng) * gm.nqt;
    int nsplit = decode_splits(&gm, items);
    /* per (item, split): O (R, D), m (R), l (R); without it, fall back to unsplit (slower) */
    size_t part_len = (size_t)R * (D + 2);
    float *part = nsplit > 1 ? malloc(sizeof *part * part_len * items * nsplit) : NULL;
    if (!part) nsplit = 1;

#pragma omp parallel for schedule(dynamic)
    for (long it = 0; it < items * nsplit; it++) {
        int s = (int)(it % nsplit);
        tile tl = tile_of(&gm, it / nsplit);
        int kend = Tk - Tq + tl.t0 + tl.n; /* keys the tile's last query sees */
        int nkt = (kend + KEYS - 1) / KEYS;
        int ka = (int)((long)nkt * s / nsplit) * KEYS;
        int kb = (int)((long)nkt * (s + 1) / nsplit) * KEYS;
        if (kb > kend) kb = kend;

        float Qs[R * D], S[R * KEYS], Ot[gm.wide ? R * D : 1];
        float own[nsplit > 1 ? 1 : part_len];
        float *O = nsplit > 1 ? part + part_len * it : own, *m = O + (size_t)R * D, *l = m + R;
        load_rows(Qs, q, &gm, tl.b, tl.g0, tl.t0, tl.n, gm.scale);
        attend(O, m, l, S, Ot, Qs, k, v, &gm, &tl, ka, kb);
        if (nsplit > 1) continue;
        for (int r = 0; r < tl.rows; r++) {
            float *o = out + row_off(&gm, &tl, r), inv = 1.0f / l[r];
            for (int d = 0; d < D; d++) o[d] = O[(size_t)r * D + d] * inv;
            if (lse) lse[lse_off(&gm, &tl, r)] = m[r] + logf(l[r]);
        }
    }
    if (nsplit == 1) return;

    /* combine the splits: weights exp(m_s − M), M the max over splits; the first split holds
     * key 0, which every query sees, so M is finite */
#pragma omp parallel for
    for (long item = 0; item < items; item++) {
        tile tl = tile_of(&gm, item);
        const float *p0 = part + part_len * item * nsplit;
        for (int r = 0; r < tl.rows; r++) {
            float M = -INFINITY, L = 0.0f, w[nsplit];
            for (int s = 0; s < nsplit; s++) {
                float ms = p0[part_len * s + (size_t)R * D + r];
                M = ms > M ? ms : M;
            }
            for (int s = 0; s < nsplit; s++) {
                const float *ps = p0 + part_len * s;
                w[s] = expf(ps[(size_t)R * D + r] - M);
                L += w[s] * ps[(size_t)R * D + R + r];
            }
            float *o = out + row_off(&gm, &tl, r);
            for (int d = 0; d < D; d++) {
                float acc = 0.0f;
                for (int s = 0; s < nsplit; s++) acc += w[s] * p0[part_len * s + (size_t)r * D + d];
                o[d] = acc / L;
            }
            if (lse) lse[lse_off(&gm, &tl, r)] = M + logf(L);
        }
    }
    free(part);
}

/* One query over keys [ka, kb): attend() on the query's row tiles (one wide tile of every head, or
 * one per kv head), each row's unnormalised output and statistics stored at its head. */
void mmm_attention_decode_split(float *part, const float *q, const float *k, const float *v, int Tk, int H,
                                int Hkv, int D, int ka, int kb) {
    geom gm = make_geom(1, 1, Tk, H, Hkv, D, true);
    int R = gm.R;
    float *O = part, *m = part + (size_t)H * D, *l = m + H;
    for (long it = 0; it < (long)(Hkv / gm.ng); it++) {
        tile tl = tile_of(&gm, it);
        float Qs[R * D], S[R * KEYS], Ot[gm.wide ? R * D : 1], Or[R * D], mr[R], lr[R];
        load_rows(Qs, q, &gm, tl.b, tl.g0, tl.t0, tl.n, gm.scale);
        attend(Or, mr, lr, S, Ot, Qs, k, v, &gm, &tl, ka, kb);
        for (int r = 0; r < tl.rows; r++) {
            size_t h = row_off(&gm, &tl, r) / (size_t)D;
            memcpy(O + h * D, Or + (size_t)r * D, (size_t)D * sizeof *O);
            m[h] = mr[r];
            l[h] = lr[r];
        }
    }
}

void mmm_attention_decode_combine(float *out, const float *parts, int nsplit, int H, int D, int h0, int h1) {
    size_t len = (size_t)H * (D + 2);
    for (int h = h0; h < h1; h++) {
        float M = -INFINITY, L = 0.0f, w[nsplit];
        for (int s = 0; s < nsplit; s++) {
            float ms = parts[len * s + (size_t)H * D + h];
            M = ms > M ? ms : M;
        }
        for (int s = 0; s < nsplit; s++) { /* a split that saw no key has m = −inf: weight 0 */
            const float *ps = parts + len * s;
            w[s] = ps[(size_t)H * D + h] == -INFINITY ? 0.0f : expf(ps[(size_t)H * D + h] - M);
            L += w[s] * ps[(size_t)H * D + H + h];
        }
        for (int d = 0; d < D; d++) {
            float acc = 0.0f;
            for (int s = 0; s < nsplit; s++) acc += w[s] * parts[len * s + (size_t)h * D + d];
            out[(size_t)h * D + d] = acc / L;
        }
    }
}

/* ---- backward: always tall tiles (ng = 1, hw = G) ---- */

/* Loads what the backward needs of row tile tl: Qs = q/sqrt(D), dO, the rows' lse and
 * Di = rowsum(dO ⊙ out). */
static void load_grad_rows(float *Qs, float *dO, float *lr, float *Di, const float *q,
                           const float *dout, const float *out, const float *lse, const geom *gm,
                           const tile *tl) {
    int D = gm->D;
    load_rows(Qs, q, gm, tl->b, tl->g0, tl->t0, tl->n, gm->scale);
    load_rows(dO, dout, gm, tl->b, tl->g0, tl->t0, tl->n, 1.0f);
    for (int r = 0; r < tl->rows; r++) {
        const float *o = out + row_off(gm, tl, r), *e = dO + (size_t)r * D;
        float s = 0.0f;
        for (int d = 0; d < D; d++) s += e[d] * o[d];
        Di[r] = s;
        lr[r] = lse[lse_off(gm, tl, r)];
    }
}

/* For row tile tl against the key tile [j0, j0+nk) starting at rows kt/vt of k/v: the
 * probabilities P = exp(s − lse) and dS = P ⊙ (dO·vᵀ − Di), both zero where masked. */
static void prob_grads(float *P, float *dS, const float *Qs, const float *dO, const float *lr,
                       const float *Di, const float *kt, const float *vt, const geom *gm,
                       const tile *tl, int j0, int nk) {
    scores(P, Qs, kt, gm, tl->rows, nk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tl->rows, nk, gm->D, 1.0f, dO, gm->D, vt,
                (int)gm->ldk, 0.0f, dS, KEYS);
    for (int r = 0; r < tl->rows; r++) {
        float *p = P + (size_t)r * KEYS, *ds = dS + (size_t)r * KEYS;
        float lrr = lr[r], di = Di[r];
        int vis = visible(gm, tl->t0, r, j0, nk);
        if (vis < 0) vis = 0;
#pragma omp simd
        for (int c = 0; c < vis; c++) {
            p[c] = exp_softmax(p[c] - lrr);
            ds[c] = p[c] * (ds[c] - di);
        }
        for (int c = vis; c < nk; c++) p[c] = ds[c] = 0.0f;
    }
}

/* dk, dv of key tile kt for (b, kv head g), summed over every row tile that sees it. */
static void kv_tile_grad(float *dk, float *dv, const float *dout, const float *q, const float *k,
                         const float *v, const float *out, const float *lse, const geom *gm, int b,
                         int g, int kt) {
    int D = gm->D, R = gm->R, j0 = kt * KEYS;
    int nk = gm->Tk - j0 < KEYS ? gm->Tk - j0 : KEYS;
    int tmin = j0 - (gm->Tk - gm->Tq); /* first query that sees key j0 */
    if (tmin < 0) tmin = 0;
    if (tmin >= gm->Tq) return;
    const float *kp = k + koff(gm, b, j0, g), *vp = v + koff(gm, b, j0, g);
    float Qs[R * D], dO[R * D], P[R * KEYS], dS[R * KEYS], lr[R], Di[R];
    float dK[KEYS * D], dV[KEYS * D];
    memset(dK, 0, sizeof dK);
    memset(dV, 0, sizeof dV);
    for (int qt = tmin / gm->np; qt < gm->nqt; qt++) {
        tile tl = {b, g, qt * gm->np, 0, 0};
        tl.n = gm->Tq - tl.t0 < gm->np ? gm->Tq - tl.t0 : gm->np;
        tl.rows = tl.n * gm->hw;
        load_grad_rows(Qs, dO, lr, Di, q, dout, out, lse, gm, &tl);
        prob_grads(P, dS, Qs, dO, lr, Di, kp, vp, gm, &tl, j0, nk);
        /* dV (nk, D) += Pᵀ · dO;  dK (nk, D) += dSᵀ · Qs (Qs carries the 1/sqrt(D)) */
        if (dv)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, D, tl.rows, 1.0f, P, KEYS,
                        dO, D, 1.0f, dV, D);
        if (dk)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, D, tl.rows, 1.0f, dS, KEYS,
                        Qs, D, 1.0f, dK, D);
    }
    for (int j = 0; j < nk; j++) {
        size_t o = koff(gm, b, j0 + j, g);
        for (int d = 0; d < D; d++) {
            if (dk) dk[o + d] += dK[(size_t)j * D + d];
            if (dv) dv[o + d] += dV[(size_t)j * D + d];
        }
    }
}

/* dq of row tile tl, summed over every key tile it sees. */
static void q_tile_grad(float *dq, const float *dout, const float *q, const float *k,
                        const float *v, const float *out, const float *lse, const geom *gm,
                        const tile *tl) {
    int D = gm->D, R = gm->R;
    int kend = gm->Tk - gm->Tq + tl->t0 + tl->n;
    float Qs[R * D], dO[R * D], dQ[R * D], P[R * KEYS], dS[R * KEYS], lr[R], Di[R];
    memset(dQ, 0, sizeof dQ);
    load_grad_rows(Qs, dO, lr, Di, q, dout, out, lse, gm, tl);
    for (int j0 = 0; j0 < kend; j0 += KEYS) {
        int nk = kend - j0 < KEYS ? kend - j0 : KEYS;
        const float *kp = k + koff(gm, tl->b, j0, tl->g0), *vp = v + koff(gm, tl->b, j0, tl->g0);
        prob_grads(P, dS, Qs, dO, lr, Di, kp, vp, gm, tl, j0, nk);
        /* dQ (rows, D) += dS · k */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tl->rows, D, nk, 1.0f, dS, KEYS, kp,
                    (int)gm->ldk, 1.0f, dQ, D);
    }
    for (int r = 0; r < tl->rows; r++) {
        float *o = dq + row_off(gm, tl, r);
        for (int d = 0; d < D; d++) o[d] += gm->scale * dQ[(size_t)r * D + d];
    }
}

/* Two passes so that no two threads write the same gradient rows: dk/dv parallel over
 * (b, kv head, key tile), each summing over the query heads of its group and every row tile;
 * dq parallel over (b, kv head, row tile). Both recompute P, which costs 7 tile GEMMs per
 * (row tile, key tile) pair instead of 5, but needs no atomics and no per-thread dq copies. */
void mmm_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                            const float *k, const float *v, const float *out, const float *lse,
                            int B, int Tq, int Tk, int H, int Hkv, int D) {
    geom gm = make_geom(B, Tq, Tk, H, Hkv, D, false);
    long groups = (long)B * Hkv;
    if (dk || dv) {
        long nkt = (Tk + KEYS - 1) / KEYS;
        /* key tile 0 is seen by every query: heaviest first */
#pragma omp parallel for schedule(dynamic)
        for (long it = 0; it < groups * nkt; it++)
            kv_tile_grad(dk, dv, dout, q, k, v, out, lse, &gm, (int)(it % groups / Hkv),
                         (int)(it % Hkv), (int)(it / groups));
    }
    if (dq) {
#pragma omp parallel for schedule(dynamic)
        for (long it = 0; it < groups * gm.nqt; it++) {
            tile tl = tile_of(&gm, it);
            q_tile_grad(dq, dout, q, k, v, out, lse, &gm, &tl);
        }
    }
}
