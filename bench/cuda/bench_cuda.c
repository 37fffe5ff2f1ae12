/* GPU benchmarks of the CUDA backend at HoVLE-2.6B size (hidden 2048, 8 + 24 layers, 16 heads,
 * 8 kv heads, head_dim 128, FFN 8192, vocab 92544), bf16 weights, batch 1, random values:
 *   ceilings   device-to-device copy bandwidth and a cuBLAS bf16 GEMM, measured here
 *   gemv       the fused decode projection against cuBLAS at batch 1 (GB/s of weights)
 *   prefill    causal attention forward TFLOP/s and chunked SSD TFLOP/s
 * usage: bench_cuda [--json FILE] [--quick]   (prints a table; --json also writes the numbers)
 *        bench_cuda --ssd-chunks               (the training SSD's time against its chunk length)
 *        bench_cuda --prefill                  (the prefill kernels alone)
 * The whole model's decode is the product's: mmm bench --device cuda (its CUDA-graph step). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/cuda.h"
#include "mmm/error.h"

#define HID 2048
#define LAYERS 32
#define HEADS 16
#define KVH 8
#define HD 128
#define FFN 8192
#define VOCAB 92544
#define QKV ((HEADS + 2 * KVH) * HD)       /* 4096 */
#define DC ((2 * KVH + HEADS) * HD)        /* conv channels [v k q], 4096 */
#define DZ (DC + HEADS * HD + HEADS)       /* wvkqgdt rows, 6160 */
#define EPS 1e-5f
#define BF16 MMM_DTYPE_BF16
#define F32 MMM_DTYPE_F32

#define CK(call)                                                                              \
    do {                                                                                      \
        if ((call) != MMM_OK) {                                                               \
            fprintf(stderr, "bench_cuda:%d: %s\n", __LINE__, mmm_last_error());               \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

/* ---- allocations of one experiment, freed together; bytes counted ---- */

#define MAX_ALLOCS 1024
static void *g_ptr[MAX_ALLOCS];
static int g_n;
static size_t g_bytes;
static uint64_t g_seed = 1;

static void *dev(size_t bytes) {
    if (g_n == MAX_ALLOCS) { fprintf(stderr, "bench_cuda: too many allocations\n"); exit(1); }
    void *p;
    CK(mmm_cuda_malloc(&p, bytes));
    g_bytes += bytes;
    return g_ptr[g_n++] = p;
}

static void free_all(void) {
    while (g_n) mmm_cuda_free(g_ptr[--g_n]);
    g_bytes = 0;
}

static void *rnd_dev(size_t n, mmm_dtype dt, float lo, float hi) {
    void *p = dev(n * (dt == BF16 ? 2 : 4));
    CK(mmm_cuda_fill_uniform(p, dt, n, lo, hi, g_seed++));
    return p;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* ---- timing: median of reps, each run bracketed by events ---- */

typedef void (*work_fn)(void *ctx);

static float median_ms(work_fn fn, void *ctx, int warm, int reps) {
    mmm_cuda_event ev[65];
    if (reps > 64) reps = 64;
    for (int i = 0; i <= reps; i++) CK(mmm_cuda_event_create(&ev[i]));
    for (int i = 0; i < warm; i++) fn(ctx);
    CK(mmm_cuda_sync());
    float t[64];
    CK(mmm_cuda_event_record(ev[0]));
    for (int i = 0; i < reps; i++) {
        fn(ctx);
        CK(mmm_cuda_event_record(ev[i + 1]));
    }
    for (int i = 0; i < reps; i++) CK(mmm_cuda_event_ms(&t[i], ev[i], ev[i + 1]));
    CK(mmm_cuda_sync());
    for (int i = 0; i <= reps; i++) mmm_cuda_event_destroy(ev[i]);
    qsort(t, reps, sizeof *t, cmp_float);
    return t[reps / 2];
}

static FILE *g_json;
static int g_json_first = 1;

static void json_row(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void json_row(const char *fmt, ...) {
    if (!g_json) return;
    va_list ap;
    va_start(ap, fmt);
    fputs(g_json_first ? "\n  " : ",\n  ", g_json);
    vfprintf(g_json, fmt, ap);
    va_end(ap);
    g_json_first = 0;
}

/* ---- ceilings ---- */

typedef struct { void *a, *b, *c; size_t bytes; int n; } buf3;

static void run_copy(void *p) {
    buf3 *b = p;
    CK(mmm_cuda_copy(b->b, b->a, b->bytes));
}

static void run_gemm(void *p) {
    buf3 *b = p;
    CK(mmm_cuda_gemm(0, 1, b->n, b->n, b->n, 1.f, b->a, b->n, b->b, b->n, 0.f, b->c, b->n, BF16, BF16));
}

static void run_gemm_f32(void *p) {
    buf3 *b = p;
    CK(mmm_cuda_gemm(0, 1, b->n, b->n, b->n, 1.f, b->a, b->n, b->b, b->n, 0.f, b->c, b->n, F32, F32));
}

/* fp32 operands under each GEMM math mode (what training with fp32 storage gets). */
static void gemm_f32_modes(void) {
    int n = 8192;
    buf3 g = {rnd_dev((size_t)n * n, F32, -1, 1), rnd_dev((size_t)n * n, F32, -1, 1), dev((size_t)n * n * 4), 0, n};
    const char *names[] = {"fp32", "tf32", "bf16"};
    for (int mode = MMM_GEMM_FP32; mode <= MMM_GEMM_BF16; mode++) {
        mmm_cuda_set_gemm_math((mmm_gemm_math)mode);
        float ms = median_ms(run_gemm_f32, &g, 2, 5);
        double tfs = 2.0 * n * n * (double)n / (ms * 1e-3) / 1e12;
        printf("cuBLAS GEMM 8192^3, fp32 operands, %s math: %.0f TFLOP/s\n", names[mode], tfs);
        json_row("{\"kind\": \"gemm_f32_math\", \"math\": \"%s\", \"tflops\": %.1f}", names[mode], tfs);
    }
    mmm_cuda_set_gemm_math(MMM_GEMM_FP32);
    free_all();
}

static void ceilings(double *copy_gbs, double *gemm_tfs) {
    buf3 c = {dev(1u << 30), dev(1u << 30), NULL, 1u << 30, 0};
    CK(mmm_cuda_fill_uniform(c.a, F32, c.bytes / 4, -1, 1, 7));
    float ms = median_ms(run_copy, &c, 3, 10);
    *copy_gbs = 2.0 * c.bytes / (ms * 1e-3) / 1e9;
    free_all();
    int n = 8192;
    buf3 g = {rnd_dev((size_t)n * n, BF16, -1, 1), rnd_dev((size_t)n * n, BF16, -1, 1),
              dev((size_t)n * n * 2), 0, n};
    ms = median_ms(run_gemm, &g, 3, 10);
    *gemm_tfs = 2.0 * n * n * (double)n / (ms * 1e-3) / 1e12;
    free_all();
    printf("ceilings: device-to-device copy %.0f GB/s (read + write), cuBLAS bf16 GEMM 8192^3 %.0f TFLOP/s\n",
           *copy_gbs, *gemm_tfs);
    json_row("{\"kind\": \"ceiling\", \"copy_gbs\": %.1f, \"gemm_bf16_tflops\": %.1f}", *copy_gbs, *gemm_tfs);
}

/* ---- batch-1 projections: fused GEMV vs cuBLAS ---- */

typedef struct { float *out, *x; uint16_t *w; void *xb, *outb; int C, OC; } gemv_ctx;

static void run_gemv(void *p) {
    gemv_ctx *g = p;
    CK(mmm_cuda_decode_linear(g->out, g->x, g->w, NULL, EPS, g->C, g->OC, 0));
}

static void run_gemv_cublas(void *p) {
    gemv_ctx *g = p;
    CK(mmm_cuda_gemm(0, 1, 1, g->OC, g->C, 1.f, g->xb, g->C, g->w, g->C, 0.f, g->outb, g->OC, BF16, F32));
}

static void gemv_table(void) {
    static const int shapes[][2] = {{2048, 6160}, {2048, 8192}, {8192, 2048}, {2048, VOCAB}};
    printf("\nbatch-1 projection (bf16 weights), GB/s of weights read:\n");
    printf("|    C |    OC | mmm fused GEMV | cuBLAS gemm N=1 | ratio |\n|---:|---:|---:|---:|---:|\n");
    for (int s = 0; s < 4; s++) {
        gemv_ctx g = {dev((size_t)shapes[s][1] * 4), rnd_dev(shapes[s][0], F32, -1, 1),
                      rnd_dev((size_t)shapes[s][0] * shapes[s][1], BF16, -0.02f, 0.02f),
                      rnd_dev(shapes[s][0], BF16, -1, 1), dev((size_t)shapes[s][1] * 4), shapes[s][0], shapes[s][1]};
        double bytes = 2.0 * g.C * g.OC;
        float a = median_ms(run_gemv, &g, 5, 50), b = median_ms(run_gemv_cublas, &g, 5, 50);
        printf("| %4d | %5d | %8.0f | %8.0f | %.2f |\n", g.C, g.OC, bytes / (a * 1e-3) / 1e9,
               bytes / (b * 1e-3) / 1e9, b / a);
        json_row("{\"kind\": \"gemv\", \"C\": %d, \"OC\": %d, \"mmm_us\": %.2f, \"cublas_us\": %.2f}",
                 g.C, g.OC, a * 1e3, b * 1e3);
        free_all();
    }
}

/* ---- prefill kernels ---- */

typedef struct { void *q, *k, *v, *o; float *lse, *dt, *A; void *ws; int T; } pre_ctx;

static void run_attn(void *p) {
    pre_ctx *c = p;
    CK(mmm_cuda_attention_forward(c->o, c->lse, c->q, c->k, c->v, 1, c->T, c->T, HEADS, KVH, HD, BF16));
}

static void run_ssd(void *p) {
    pre_ctx *c = p; /* q = x (T, G, P), k = B (T, G, N), v = C (T, H, N) */
    CK(mmm_cuda_ssd_forward(c->o, NULL, c->q, c->k, c->v, c->dt, c->A, NULL, c->ws, 1, c->T, HEADS,
                            KVH, HD, HD, 128, BF16));
}

static void prefill_table(int quick) {
    static const int Ts[] = {4096, 16384, 32768, 65536};
    int nT = quick ? 2 : 4;
    printf("\nprefill kernels, B=1, H=16, Hkv/G=8, D=P=N=128, bf16 (median of 5):\n");
    printf("| T | attention ms | attention TFLOP/s | SSD ms | SSD TFLOP/s |\n|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < nT; i++) {
        int T = Ts[i];
        size_t nq = (size_t)T * HEADS * HD, nk = (size_t)T * KVH * HD;
        pre_ctx c = {rnd_dev(nq, BF16, -2, 2), rnd_dev(nk, BF16, -2, 2), rnd_dev(nk, BF16, -1, 1),
                     dev(nq * 2), dev((size_t)HEADS * T * 4), NULL, NULL, NULL, T};
        float ta = median_ms(run_attn, &c, 2, 5);
        /* causal: query t sees t + 1 keys; 2 products of 2·D flops per (query, key, head) */
        double fa = 4.0 * HD * HEADS * ((double)T * (T + 1) / 2);
        free_all();
        c = (pre_ctx){rnd_dev(nk, BF16, -1, 1), rnd_dev(nk, BF16, -1, 1), rnd_dev(nq, BF16, -1, 1),
                      dev(nq * 2), NULL, rnd_dev((size_t)T * HEADS, F32, 0.001f, 0.1f),
                      rnd_dev(HEADS, F32, -3, -0.5f), dev(mmm_cuda_ssd_ws_bytes(1, T, HEADS, HD, HD, 128)), T};
        float ts = median_ms(run_ssd, &c, 2, 5);
        /* per chunk of L and head: C·Bᵀ and M·X on the causal half, L²·(N + P); chunk state and
         * inter-chunk output, 2·L·P·N each */
        double L = 128, fs = (double)T / L * HEADS * (L * L * (HD + HD) + 4 * L * HD * HD);
        free_all();
        printf("| %d | %.3f | %.1f | %.3f | %.1f |\n", T, ta, fa / (ta * 1e-3) / 1e12, ts, fs / (ts * 1e-3) / 1e12);
        json_row("{\"kind\": \"prefill\", \"T\": %d, \"attn_ms\": %.4f, \"attn_tflops\": %.2f, "
                 "\"ssd_ms\": %.4f, \"ssd_tflops\": %.3f}", T, ta, fa / (ta * 1e-3) / 1e12, ts,
                 fs / (ts * 1e-3) / 1e12);
    }
}

/* The training SSD (fp32, forward then backward, no states in or out) against the chunk length:
 * the chunk sets how many blocks the chunk-parallel kernels have (chunks × heads) and how much
 * quadratic work each does. */
typedef struct { float *x, *Bm, *C, *y, *dt, *A, *dy, *dx, *dB, *dC, *ddt, *dA; void *ws, *bws; int T, L; } ssd_ctx;

static void run_ssd_train(void *p) {
    ssd_ctx *c = p;
    CK(mmm_cuda_ssd_forward(c->y, NULL, c->x, c->Bm, c->C, c->dt, c->A, NULL, c->ws, 1, c->T, HEADS, KVH, HD, HD,
                            c->L, F32));
    CK(mmm_cuda_ssd_backward(c->dx, c->dB, c->dC, c->ddt, c->dA, NULL, c->dy, NULL, c->x, c->Bm, c->C, c->dt, c->A,
                             NULL, c->bws, 1, c->T, HEADS, KVH, HD, HD, c->L, F32));
}

static void ssd_chunk_table(void) {
    static const int Ts[] = {1024, 4096}, Ls[] = {32, 64, 128};
    printf("\ntraining SSD (fp32 forward + backward), B=1, H=16, G=8, P=N=128 (median of 5):\n");
    printf("| T | chunk | ms |\n|---:|---:|---:|\n");
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            int T = Ts[i], L = Ls[j];
            size_t nk = (size_t)T * KVH * HD, nq = (size_t)T * HEADS * HD;
            ssd_ctx c = {rnd_dev(nk, F32, -1, 1), rnd_dev(nk, F32, -1, 1), rnd_dev(nq, F32, -1, 1), dev(nq * 4),
                         rnd_dev((size_t)T * HEADS, F32, 0.001f, 0.1f), rnd_dev(HEADS, F32, -3, -0.5f),
                         rnd_dev(nq, F32, -1, 1), dev(nk * 4), dev(nk * 4), dev(nq * 4), dev((size_t)T * HEADS * 4),
                         dev(HEADS * 4), dev(mmm_cuda_ssd_ws_bytes(1, T, HEADS, HD, HD, L)),
                         dev(mmm_cuda_ssd_backward_ws_bytes(1, T, HEADS, KVH, HD, HD, L)), T, L};
            float ms = median_ms(run_ssd_train, &c, 2, 5);
            free_all();
            printf("| %d | %d | %.3f |\n", T, L, ms);
            json_row("{\"kind\": \"ssd_train\", \"T\": %d, \"chunk\": %d, \"ms\": %.4f}", T, L, ms);
        }
}

int main(int argc, char **argv) {
    const char *json = NULL;
    int quick = 0, ceilings_only = 0, ssd_chunks = 0, prefill_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--ceilings")) ceilings_only = 1;
        else if (!strcmp(argv[i], "--ssd-chunks")) ssd_chunks = 1;
        else if (!strcmp(argv[i], "--prefill")) prefill_only = 1;
        else {
            fprintf(stderr, "usage: bench_cuda [--json FILE] [--quick | --ceilings | --ssd-chunks | --prefill]\n");
            return 2;
        }
    }
    mmm_cuda_info info;
    CK(mmm_cuda_init(0, &info));
    mmm_cuda_stream s;
    CK(mmm_cuda_stream_create(&s));
    mmm_cuda_set_stream(s);
    printf("device: %s, sm_%d%d, %d SMs, %.1f GiB\n", info.name, info.cc_major, info.cc_minor,
           info.sm_count, info.total_mem / 1073741824.0);
    if (json && !(g_json = fopen(json, "w"))) {
        fprintf(stderr, "bench_cuda: cannot write %s\n", json);
        return 1;
    }
    if (g_json) fprintf(g_json, "{\"device\": \"%s\", \"rows\": [", info.name);
    double copy, gemm;
    if (ssd_chunks) {
        ssd_chunk_table();
    } else if (prefill_only) {
        prefill_table(quick);
    } else {
        ceilings(&copy, &gemm); /* also loads cuBLAS, whose handle and workspace stay */
        gemm_f32_modes();
    }
    if (!ceilings_only && !ssd_chunks && !prefill_only) {
        gemv_table();
        prefill_table(quick);
    }
    if (g_json) {
        fprintf(g_json, "\n]}\n");
        fclose(g_json);
    }
    mmm_cuda_set_stream(NULL);
    mmm_cuda_stream_destroy(s);
    return 0;
}
