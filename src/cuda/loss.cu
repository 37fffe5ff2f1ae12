/* Cross-entropy, distillation KL and MSE (src/ops/cpu/loss.c): one block per row of logits. The
 * count of rows that enter the mean is recounted by every block (N ints against V floats per
 * row), so forward and backward need no scratch; row losses meet in one atomicAdd. */
#include "common.cuh"

#define LOSS_THREADS 512

/* Rows counted in the mean: targets >= 0, or mask != 0 (all rows without a mask). */
static __device__ float counted_rows(const int32_t *targets, const uint8_t *mask, int N, float *red) {
    float n = 0.f;
    for (int i = threadIdx.x; i < N; i += blockDim.x)
        n += targets ? (float)(targets[i] >= 0) : mask ? (float)(mask[i] != 0) : 1.f;
    return block_sum(n, red);
}

/* max(z)·inv_tau and log Σ exp(z·inv_tau − max) of one row */
static __device__ void row_stats(const float *z, int V, float inv_tau, float *mx, float *lse, float *red) {
    float m = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, z[v]);
    m = block_max(m, red) * inv_tau;
    float s = 0.f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(z[v] * inv_tau - m);
    *mx = m;
    *lse = logf(block_sum(s, red));
}

__global__ void __launch_bounds__(LOSS_THREADS)
k_ce(float *loss, const float *logits, const int32_t *targets, int N, int V) {
    __shared__ float red[32];
    int i = blockIdx.x, t = targets[i];
    if (t < 0) return;
    float n = counted_rows(targets, NULL, N, red), mx, lse;
    const float *z = logits + (size_t)i * V;
    row_stats(z, V, 1.f, &mx, &lse, red);
    if (threadIdx.x == 0) atomicAdd(loss, (mx + lse - z[t]) / n);
}

__global__ void __launch_bounds__(LOSS_THREADS)
k_ce_backward(float *dlogits, float dloss, const float *logits, const int32_t *targets, int N, int V) {
    __shared__ float red[32];
    int i = blockIdx.x, t = targets[i];
    if (t < 0) return;
    float n = counted_rows(targets, NULL, N, red), mx, lse;
    const float *z = logits + (size_t)i * V;
    float *g = dlogits + (size_t)i * V, scale = dloss / n;
    row_stats(z, V, 1.f, &mx, &lse, red);
    for (int v = threadIdx.x; v < V; v += blockDim.x)
        g[v] += scale * (expf(z[v] - mx - lse) - (v == t ? 1.f : 0.f));
}

int mmm_cuda_cross_entropy_forward(float *loss, const float *logits, const int32_t *targets, int N,
                                   int V) {
    int rc = mmm_cuda_memset(loss, 0, sizeof(float));
    if (rc || N == 0) return rc;
    k_ce<<<N, LOSS_THREADS, 0, cu_stream()>>>(loss, logits, targets, N, V);
    return cu_launched("cross_entropy");
}

int mmm_cuda_cross_entropy_backward(float *dlogits, float dloss, const float *logits,
                                    const int32_t *targets, int N, int V) {
    if (N == 0) return MMM_OK;
    k_ce_backward<<<N, LOSS_THREADS, 0, cu_stream()>>>(dlogits, dloss, logits, targets, N, V);
    return cu_launched("cross_entropy backward");
}

/* τ²·KL(p_teacher ‖ q_student) of one row as the CPU computes it: Σ p·(t − s)/τ − shift·Σ p with
 * shift = (mt + lt) − (ms + ls), so a small KL between large log-probabilities stays precise. */
__global__ void __launch_bounds__(LOSS_THREADS)
k_kl(float *loss, const float *student, const float *teacher, const uint8_t *mask, float tau, int N,
     int V) {
    __shared__ float red[32];
    int i = blockIdx.x;
    if (mask && !mask[i]) return;
    float n = counted_rows(NULL, mask, N, red), inv = 1.0f / tau, ms, ls, mt, lt;
    const float *s = student + (size_t)i * V, *t = teacher + (size_t)i * V;
    row_stats(s, V, inv, &ms, &ls, red);
    row_stats(t, V, inv, &mt, &lt, red);
    float kl = 0.f, psum = 0.f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float p = expf(t[v] * inv - mt - lt);
        kl += p * ((t[v] - s[v]) * inv);
        psum += p;
    }
    kl = block_sum(kl, red);
    psum = block_sum(psum, red);
    if (threadIdx.x == 0) atomicAdd(loss, (kl - ((mt - ms) + (lt - ls)) * psum) * tau * tau / n);
}

__global__ void __launch_bounds__(LOSS_THREADS)
k_kl_backward(float *dstudent, float dloss, const float *student, const float *teacher,
              const uint8_t *mask, float tau, int N, int V) {
    __shared__ float red[32];
    int i = blockIdx.x;
    if (mask && !mask[i]) return;
    float n = counted_rows(NULL, mask, N, red), inv = 1.0f / tau, ms, ls, mt, lt;
    const float *s = student + (size_t)i * V, *t = teacher + (size_t)i * V;
    float *g = dstudent + (size_t)i * V, scale = dloss * tau / n;
    row_stats(s, V, inv, &ms, &ls, red);
    row_stats(t, V, inv, &mt, &lt, red);
    for (int v = threadIdx.x; v < V; v += blockDim.x)
        g[v] += scale * (expf(s[v] * inv - ms - ls) - expf(t[v] * inv - mt - lt));
}

int mmm_cuda_kl_div_forward(float *loss, const float *student, const float *teacher,
                            const uint8_t *mask, float tau, int N, int V) {
    int rc = mmm_cuda_memset(loss, 0, sizeof(float));
    if (rc || N == 0) return rc;
    k_kl<<<N, LOSS_THREADS, 0, cu_stream()>>>(loss, student, teacher, mask, tau, N, V);
    return cu_launched("kl_div");
}

int mmm_cuda_kl_div_backward(float *dstudent, float dloss, const float *student,
                             const float *teacher, const uint8_t *mask, float tau, int N, int V) {
    if (N == 0) return MMM_OK;
    k_kl_backward<<<N, LOSS_THREADS, 0, cu_stream()>>>(dstudent, dloss, student, teacher, mask, tau, N, V);
    return cu_launched("kl_div backward");
}

__global__ void k_mse(float *loss, const float *a, const float *b, size_t n) {
    __shared__ float red[32];
    float s = 0.f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float d = a[i] - b[i];
        s += d * d;
    }
    s = block_sum(s, red);
    if (threadIdx.x == 0) atomicAdd(loss, s / (float)n);
}

__global__ void k_mse_backward(float *da, float *db, float scale, const float *a, const float *b, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = scale * (a[i] - b[i]);
        if (da) da[i] += g;
        if (db) db[i] -= g;
    }
}

int mmm_cuda_mse_forward(float *loss, const float *a, const float *b, size_t n) {
    int rc = mmm_cuda_memset(loss, 0, sizeof(float));
    if (rc || n == 0) return rc;
    k_mse<<<grid_for(n, 256), 256, 0, cu_stream()>>>(loss, a, b, n);
    return cu_launched("mse");
}

int mmm_cuda_mse_backward(float *da, float *db, float dloss, const float *a, const float *b, size_t n) {
    if (n == 0 || (!da && !db)) return MMM_OK;
    k_mse_backward<<<grid_for(n, 256), 256, 0, cu_stream()>>>(da, db, 2.0f * dloss / (float)n, a, b, n);
    return cu_launched("mse backward");
}
