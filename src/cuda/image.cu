/* The vision front end's reshapes (src/model/vision.c, src/ops/cpu/pixel_shuffle.c): patches of
 * the tiles for the patch embedding, and InternVL's pixel shuffle. One thread per output element. */
#include "common.cuh"
#include "mmm/cuda_model.h"

#define GRID_LOOP(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* patches[t, gy, gx, (ch·p + y)·p + x] = pixels[t, ch, gy·p + y, gx·p + x] */
__global__ void k_patches(float *patches, const float *pixels, size_t n, int S, int p) {
    int g = S / p, K = 3 * p * p;
    GRID_LOOP(i, n * g * g * K) {
        int k = (int)(i % K), x = k % p, y = k / p % p, ch = k / (p * p);
        size_t patch = i / K;
        int gx = (int)(patch % g), gy = (int)(patch / g % g);
        size_t t = patch / ((size_t)g * g);
        patches[i] = pixels[((t * 3 + ch) * S + (size_t)gy * p + y) * S + (size_t)gx * p + x];
    }
}

int mmm_cuda_patches(float *patches, const float *pixels, int n, int S, int p) {
    if (n < 0 || p < 1 || S % p)
        return mmm_fail(MMM_ERR_ARG, "cuda patches: %d tiles of %d pixels in patches of %d", n, S, p);
    if (n == 0) return MMM_OK;
    size_t total = (size_t)n * S * S * 3;
    k_patches<<<grid_for(total, 256), 256, 0, cu_stream()>>>(patches, pixels, (size_t)n, S, p);
    return cu_launched("patches");
}

/* element e of the shuffled output (n, i, j, (a·r + b)·C + c) and the input element it reads,
 * (n, r·i + a, r·j + b, c) */
static __device__ __forceinline__ size_t shuffle_src(size_t e, int Gh, int Gw, int C, int r) {
    int oh = Gh / r, ow = Gw / r, rc = r * r * C;
    int k = (int)(e % rc), c = k % C, ab = k / C, a = ab / r, b = ab % r;
    size_t pix = e / rc;
    int j = (int)(pix % ow), i = (int)(pix / ow % oh);
    size_t img = pix / ((size_t)ow * oh);
    return ((img * Gh + (size_t)r * i + a) * Gw + (size_t)r * j + b) * C + c;
}

__global__ void k_shuffle(float *out, const float *inp, size_t n, int Gh, int Gw, int C, int r) {
    GRID_LOOP(e, n) out[e] = inp[shuffle_src(e, Gh, Gw, C, r)];
}

/* the shuffle is a permutation, so each input element receives exactly one output's gradient */
__global__ void k_shuffle_backward(float *dinp, const float *dout, size_t n, int Gh, int Gw, int C, int r) {
    GRID_LOOP(e, n) dinp[shuffle_src(e, Gh, Gw, C, r)] += dout[e];
}

static int shuffle_shape(const char *op, int Nimg, int Gh, int Gw, int C, int r) {
    if (Nimg < 0 || C < 0 || r < 1 || Gh % r || Gw % r)
        return mmm_fail(MMM_ERR_ARG, "cuda %s: grid %dx%d not divisible by ratio %d", op, Gh, Gw, r);
    return MMM_OK;
}

int mmm_cuda_pixel_shuffle_forward(float *out, const float *inp, int Nimg, int Gh, int Gw, int C, int r) {
    int rc = shuffle_shape("pixel_shuffle", Nimg, Gh, Gw, C, r);
    size_t n = (size_t)Nimg * Gh * Gw * C;
    if (rc || n == 0) return rc;
    k_shuffle<<<grid_for(n, 256), 256, 0, cu_stream()>>>(out, inp, n, Gh, Gw, C, r);
    return cu_launched("pixel_shuffle");
}

int mmm_cuda_pixel_shuffle_backward(float *dinp, const float *dout, int Nimg, int Gh, int Gw, int C, int r) {
    int rc = shuffle_shape("pixel_shuffle backward", Nimg, Gh, Gw, C, r);
    size_t n = (size_t)Nimg * Gh * Gw * C;
    if (rc || n == 0) return rc;
    k_shuffle_backward<<<grid_for(n, 256), 256, 0, cu_stream()>>>(dinp, dout, n, Gh, Gw, C, r);
    return cu_launched("pixel_shuffle backward");
}
