/* Cross-entropy, distillation KL and MSE on CPU. Log-softmaxes are taken as
 * z − max − log Σ exp(z − max), so logits of any magnitude stay finite. Sums go into a fixed
 * number of parts, each summed in double by one task and then added in order: the result does
 * not depend on the thread count. */
#include <math.h>

#include "mmm/error.h"
#include "mmm/ops/loss.h"

#define LOSS_PARTS 64

/* first row of part p when N rows are split into LOSS_PARTS parts */
static int part_begin(int N, int p) { return (int)((long)N * p / LOSS_PARTS); }

static double sum_parts(const double *part) {
    double s = 0;
    for (int p = 0; p < LOSS_PARTS; p++) s += part[p];
    return s;
}

/* For one row z of V logits at temperature tau (inv_tau = 1/tau): *mx = max(z)·inv_tau and
 * *lse = log Σ exp(z·inv_tau − mx), so log softmax(z/tau)_v = z_v·inv_tau − mx − lse. */
static void row_stats(const float *z, int V, float inv_tau, float *mx, double *lse) {
    float m = -INFINITY;
    for (int v = 0; v < V; v++) m = fmaxf(m, z[v]);
    m *= inv_tau;
    double s = 0;
    for (int v = 0; v < V; v++) s += expf(z[v] * inv_tau - m);
    *mx = m;
    *lse = log(s);
}

int mmm_cross_entropy_forward(float *loss, int *count, const float *logits, const int32_t *targets,
                              int N, int V) {
    int n = 0;
    for (int i = 0; i < N; i++) {
        if (targets[i] >= V)
            return mmm_fail(MMM_ERR_ARG, "cross_entropy: target %d at row %d is outside the "
                            "vocabulary [0, %d)", targets[i], i, V);
        n += targets[i] >= 0;
    }
    double part[LOSS_PARTS] = {0};
#pragma omp parallel for schedule(dynamic)
    for (int p = 0; p < LOSS_PARTS; p++)
        for (int i = part_begin(N, p); i < part_begin(N, p + 1); i++) {
            if (targets[i] < 0) continue;
            const float *z = logits + (size_t)i * V;
            float mx;
            double lse;
            row_stats(z, V, 1.0f, &mx, &lse);
            part[p] += mx + lse - z[targets[i]];
        }
    *loss = n ? (float)(sum_parts(part) / n) : 0.0f;
    if (count) *count = n;
    return MMM_OK;
}

void mmm_cross_entropy_backward(float *dlogits, float dloss, const float *logits,
                                const int32_t *targets, int N, int V) {
    int n = 0;
    for (int i = 0; i < N; i++) n += targets[i] >= 0;
    if (!n) return;
    float scale = dloss / n;
    /* ∂/∂z_v = scale · (softmax(z)_v − [v = target]) */
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < N; i++) {
        if (targets[i] < 0) continue;
        const float *z = logits + (size_t)i * V;
        float *g = dlogits + (size_t)i * V;
        float mx;
        double lse;
        row_stats(z, V, 1.0f, &mx, &lse);
        float l = (float)lse; /* z − mx is exact; folding mx into lse in float would not be */
        for (int v = 0; v < V; v++) g[v] += scale * expf(z[v] - mx - l);
        g[targets[i]] -= scale;
    }
}

static int kl_rows(const uint8_t *mask, int N) {
    if (!mask) return N;
    int n = 0;
    for (int i = 0; i < N; i++) n += mask[i] != 0;
    return n;
}

float mmm_kl_div_forward(const float *student, const float *teacher, const uint8_t *mask,
                         float tau, int N, int V) {
    int n = kl_rows(mask, N);
    if (!n) return 0.0f;
    float inv_tau = 1.0f / tau;
    double part[LOSS_PARTS] = {0};
#pragma omp parallel for schedule(dynamic)
    for (int p = 0; p < LOSS_PARTS; p++)
        for (int i = part_begin(N, p); i < part_begin(N, p + 1); i++) {
            if (mask && !mask[i]) continue;
            const float *s = student + (size_t)i * V, *t = teacher + (size_t)i * V;
            float ms, mt;
            double ls, lt;
            row_stats(s, V, inv_tau, &ms, &ls);
            row_stats(t, V, inv_tau, &mt, &lt);
            /* log p_v − log q_v = (t_v − s_v)/τ − shift with shift = (mt + lt) − (ms + ls) in
             * double: subtracting the logits first keeps a small KL between large
             * log-probabilities precise. log p is never taken of an underflowed p. */
            float l = (float)lt;
            double shift = ((double)mt - ms) + (lt - ls), kl = 0, psum = 0;
            for (int v = 0; v < V; v++) {
                double pv = expf(t[v] * inv_tau - mt - l);
                kl += pv * ((t[v] - s[v]) * inv_tau);
                psum += pv;
            }
            part[p] += kl - shift * psum;
        }
    return (float)(sum_parts(part) * tau * tau / n);
}

void mmm_kl_div_backward(float *dstudent, float *dteacher, float dloss, const float *student,
                         const float *teacher, const uint8_t *mask, float tau, int N, int V) {
    int n = kl_rows(mask, N);
    if (!n) return;
    float inv_tau = 1.0f / tau;
    /* ∂(τ²·KL)/∂s_v = τ²·(q_v − p_v)/τ = τ·(q_v − p_v), and with d_v = log p_v − log q_v,
     * ∂(τ²·KL)/∂t_v = τ²·p_v·(d_v − KL)/τ = τ·p_v·(d_v − KL) */
    float scale = dloss * tau / n;
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < N; i++) {
        if (mask && !mask[i]) continue;
        const float *s = student + (size_t)i * V, *t = teacher + (size_t)i * V;
        float *g = dstudent + (size_t)i * V;
        float ms, mt;
        double ls, lt;
        row_stats(s, V, inv_tau, &ms, &ls);
        row_stats(t, V, inv_tau, &mt, &lt);
        float lsf = (float)ls, ltf = (float)lt;
        for (int v = 0; v < V; v++)
            g[v] += scale * (expf(s[v] * inv_tau - ms - lsf) - expf(t[v] * inv_tau - mt - ltf));
        if (!dteacher) continue;
        /* d_v and KL as in the forward: from t − s, so they keep their precision when small */
        double shift = ((double)mt - ms) + (lt - ls), kl = 0;
        for (int v = 0; v < V; v++) {
            double pv = expf(t[v] * inv_tau - mt - ltf);
            kl += pv * ((t[v] - s[v]) * inv_tau - shift);
        }
        float *gt = dteacher + (size_t)i * V;
        for (int v = 0; v < V; v++) {
            double pv = expf(t[v] * inv_tau - mt - ltf);
            gt[v] += (float)(scale * pv * ((t[v] - s[v]) * inv_tau - shift - kl));
        }
    }
}

float mmm_mse_forward(const float *a, const float *b, size_t n) {
    if (!n) return 0.0f;
    double part[LOSS_PARTS] = {0};
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int p = 0; p < LOSS_PARTS; p++) {
        double s = 0;
        for (size_t i = n * p / LOSS_PARTS; i < n * (p + 1) / LOSS_PARTS; i++) {
            double d = (double)a[i] - b[i];
            s += d * d;
        }
        part[p] = s;
    }
    return (float)(sum_parts(part) / n);
}

void mmm_mse_backward(float *da, float *db, float dloss, const float *a, const float *b, size_t n) {
    if (!n) return;
    float scale = 2.0f * dloss / (float)n;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float g = scale * (a[i] - b[i]);
        if (da) da[i] += g;
        if (db) db[i] -= g;
    }
}
