/* Seeding a student under each --init as upstream mmMamba defines it (docs/design.md §4):
 * mimic (inherit_qkv + mimic_init) bit-exact as it was, inherit (inherit_qkv alone) and scratch
 * (neither) with dt_bias 0, Wdt (and Wv, Wk, Wq under scratch) at nn.Linear's default
 * U(±1/√hidden), the conv at Conv1d's default, A ~ U[1, 16], and o_proj the teacher's Wo under
 * every init. Upstream draws from torch's RNG, so the random parts are checked by distribution. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/error.h"
#include "mmm/hash.h"
#include "mmm/model.h"
#include "mmm/seed.h"

#define TEACHER "tests/data/teacher/one_image"

static const char *init_name[] = {"mimic", "inherit", "scratch"};
static const mmm_seed_init inits[] = {MMM_INIT_MIMIC, MMM_INIT_INHERIT, MMM_INIT_SCRATCH};

static mmm_model *teacher(void) {
    mmm_model *t = NULL;
    return mmm_model_load(&t, TEACHER) == MMM_OK ? t : NULL;
}

static int same(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

/* Whether the n values look like draws from U(−b, b): none beyond b, the largest within 5 % of
 * it (missed with probability 0.95^n, n ≥ 256), the mean and the variance within 5 standard
 * deviations of 0 and b²/3 (b/√(3n) and b²/3·√(0.8/n)). */
static void check_uniform(const char *what, const float *x, size_t n, double b) {
    double mx = 0, mean = 0, m2 = 0;
    for (size_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(x[i]));
        mean += x[i];
        m2 += (double)x[i] * x[i];
    }
    mean /= n;
    double var = m2 / n - mean * mean;
    check(n >= 256 && mx <= b && mx >= 0.95 * b && fabs(mean) < 5 * b / sqrt(3.0 * n) &&
          fabs(var / (b * b / 3) - 1) < 5 * sqrt(0.8 / n),
          "%s ~ U(±%.4f) (%zu values: max |w| %.4f, mean %.2g, variance %.3g of %.3g)", what, b, n, mx, mean, var,
          b * b / 3);
}

enum { ROWS_VKQ, ROWS_G, ROWS_DT };

/* One block of wvkqgdt's rows (v k q, g or dt) over every mamba2 layer, gathered into one
 * malloc'd array (*n values). */
static float *gather_rows(const mmm_model *s, int which, size_t *n) {
    int C = s->cfg.hidden, L = mmm_config_n_layers(&s->cfg);
    float *out = malloc(s->n_floats * sizeof *out); /* more than any block of rows */
    *n = 0;
    for (int l = 0; l < L; l++) {
        const mmm_layer_desc *d = &s->cfg.layers[l];
        if (d->kind != MMM_MIXER_MAMBA2) continue;
        int HD = d->n_heads * d->head_dim, Dc = (2 * d->n_kv_heads + d->n_heads) * d->head_dim;
        int first[] = {0, Dc, Dc + HD}, rows[] = {Dc, HD, d->n_heads}; /* v k q | g | dt */
        memcpy(out + *n, s->w.layers[l].wvkqgdt + (size_t)first[which] * C, (size_t)rows[which] * C * sizeof *out);
        *n += (size_t)rows[which] * C;
    }
    return out;
}

/* Seeds a linear (keep NULL) or hybrid student; NULL after a failed check. */
static mmm_model *seeded(const mmm_model *t, const uint8_t *keep, mmm_seed_init init, uint64_t seed) {
    mmm_model *s = NULL;
    int rc = mmm_seed_student(&s, t, keep, init, seed);
    return check(rc == MMM_OK, "seed %s student, init %s%s%s", keep ? "hybrid" : "linear", init_name[init],
                 rc ? ": " : "", rc ? mmm_last_error() : "") ? s : NULL;
}

static const uint8_t hybrid_keep[4] = {0, 1, 0, 0};

/* upstream: dt_bias = softplus⁻¹(dt0) under mimic_init, torch.zeros otherwise */
TEST(seed_dt_bias_zero_unless_mimic) {
    mmm_model *t = teacher();
    if (!check(t != NULL, "seed dt_bias: teacher loads")) return;
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 2; k++) {
            mmm_model *s = seeded(t, k ? hybrid_keep : NULL, inits[i], 7);
            if (!s) continue;
            int zero = 1, in_range = 1, layers = 0;
            for (int l = 0; l < mmm_config_n_layers(&s->cfg); l++) {
                if (s->cfg.layers[l].kind != MMM_MIXER_MAMBA2) continue;
                layers++;
                for (int h = 0; h < s->cfg.layers[l].n_heads; h++) {
                    float b = s->w.layers[l].dt_bias[h];
                    double dt0 = log1p(exp(b));
                    zero &= b == 0.0f;
                    in_range &= dt0 >= 1e-3 * (1 - 1e-5) && dt0 <= 1e-1 * (1 + 1e-5);
                }
            }
            if (inits[i] == MMM_INIT_MIMIC)
                check(layers > 0 && in_range, "seed %s, mimic: softplus(dt_bias) log-uniform in [1e-3, 1e-1]", k ? "hybrid" : "linear");
            else
                check(layers > 0 && zero, "seed %s, %s: dt_bias = 0 in all %d mamba2 layers (dt = softplus(0) ≈ 0.69)",
                      k ? "hybrid" : "linear", init_name[i], layers);
            mmm_model_free(s);
        }
    mmm_model_free(t);
}

/* upstream: in_proj = nn.Linear(n_heads·head_dim, n_heads), zeroed only under mimic_init */
TEST(seed_dt_rows_linear_default_unless_mimic) {
    mmm_model *t = teacher();
    if (!check(t != NULL, "seed Wdt: teacher loads")) return;
    double b = 1 / sqrt((double)t->cfg.hidden);
    for (int i = 0; i < 3; i++) {
        mmm_model *s = seeded(t, NULL, inits[i], 11);
        if (!s) continue;
        size_t n;
        float *dt = gather_rows(s, ROWS_DT, &n);
        if (inits[i] == MMM_INIT_MIMIC) {
            int zero = n > 0;
            for (size_t j = 0; j < n; j++) zero &= dt[j] == 0.0f;
            check(zero, "seed mimic: Wdt = 0 (%zu values)", n);
        } else {
            char what[80];
            snprintf(what, sizeof what, "seed %s: Wdt", init_name[i]);
            check_uniform(what, dt, n, b);
        }
        free(dt);
        mmm_model_free(s);
    }
    mmm_model_free(t);
}

/* upstream: self.o_proj = base_attn.wo, under every init */
TEST(seed_o_proj_is_teacher_wo_under_every_init) {
    mmm_model *t = teacher();
    if (!check(t != NULL, "seed o_proj: teacher loads")) return;
    int C = t->cfg.hidden;
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 2; k++) {
            mmm_model *s = seeded(t, k ? hybrid_keep : NULL, inits[i], 5);
            if (!s) continue;
            int ok = 1, layers = 0;
            for (int l = 0; l < mmm_config_n_layers(&s->cfg); l++) {
                const mmm_layer_desc *d = &s->cfg.layers[l];
                size_t n = (size_t)C * d->n_heads * d->head_dim;
                const float *wo = d->kind == MMM_MIXER_MAMBA2 ? s->w.layers[l].o_proj : s->w.layers[l].wo;
                ok &= same(wo, t->w.layers[l].wo, n);
                layers++;
            }
            check(layers > 0 && ok, "seed %s, %s: every layer's output projection is the teacher's Wo",
                  k ? "hybrid" : "linear", init_name[i]);
            mmm_model_free(s);
        }
    mmm_model_free(t);
}

/* upstream: q/k/v_proj = nn.Linear(hidden, ·), overwritten by the teacher's only with inherit_qkv */
TEST(seed_vkq_from_teacher_or_linear_default) {
    mmm_model *t = teacher();
    if (!check(t != NULL, "seed Wv/Wk/Wq: teacher loads")) return;
    int C = t->cfg.hidden;
    for (int i = 0; i < 3; i++) {
        mmm_model *s = seeded(t, NULL, inits[i], 3);
        if (!s) continue;
        int teachers = 1;
        for (int l = 0; l < mmm_config_n_layers(&s->cfg); l++) {
            const mmm_layer_desc *d = &t->cfg.layers[l];
            int Hkv = d->n_kv_heads, D = d->head_dim, rep = d->n_heads / Hkv;
            const float *sw = s->w.layers[l].wvkqgdt;
            for (int g = 0; g < Hkv; g++) { /* the teacher's wqkv groups its rows [q × rep | k | v] per kv head */
                const float *grp = t->w.layers[l].wqkv + (size_t)g * (rep + 2) * D * C;
                teachers &= same(sw + (size_t)g * D * C, grp + (size_t)(rep + 1) * D * C, (size_t)D * C);
                teachers &= same(sw + (size_t)(Hkv + g) * D * C, grp + (size_t)rep * D * C, (size_t)D * C);
                teachers &= same(sw + (size_t)(2 * Hkv + g * rep) * D * C, grp, (size_t)rep * D * C);
            }
        }
        if (inits[i] == MMM_INIT_SCRATCH) {
            size_t n;
            float *vkq = gather_rows(s, ROWS_VKQ, &n);
            check(!teachers, "seed scratch: Wv, Wk, Wq are not the teacher's");
            check_uniform("seed scratch: Wv, Wk, Wq", vkq, n, 1 / sqrt((double)C));
            free(vkq);
        } else {
            check(teachers, "seed %s: Wv, Wk, Wq are the teacher's", init_name[i]);
        }
        mmm_model_free(s);
    }
    mmm_model_free(t);
}

/* upstream: g_proj Xavier-uniform (gain 2^-2.5) and g_norm weight 1 under every init; conv1d
 * identity and A_log = 1 under mimic_init, else Conv1d's default and log U[1, 16] */
TEST(seed_gate_conv_and_A_by_init) {
    mmm_model *t = teacher();
    if (!check(t != NULL, "seed gate/conv/A: teacher loads")) return;
    int L = mmm_config_n_layers(&t->cfg), K = MMM_MAMBA_CONV_K;
    double conv_b = 1 / sqrt((double)K);
    for (int i = 0; i < 3; i++) {
        mmm_model *s = seeded(t, NULL, inits[i], 9);
        if (!s) continue;
        const mmm_layer_desc *d0 = &s->cfg.layers[0];
        int HD = d0->n_heads * d0->head_dim, C = s->cfg.hidden;
        size_t n;
        float *g = gather_rows(s, ROWS_G, &n);
        char what[96];
        snprintf(what, sizeof what, "seed %s: Wg Xavier-uniform, gain 2^-2.5", init_name[i]);
        check_uniform(what, g, n, 0.17677669529663687 * sqrt(6.0 / (HD + C)));
        free(g);

        int norm_one = 1, mimic_conv = 1, mimic_A = 1, A_range = 1;
        size_t nw = 0, nb = 0, nA = 0;
        float *cw = malloc(s->n_floats * sizeof *cw), *cb = malloc(s->n_floats * sizeof *cb); /* more than the conv has */
        double A_min = INFINITY, A_max = 0, A_mean = 0;
        for (int l = 0; l < L; l++) {
            const mmm_layer_desc *d = &s->cfg.layers[l];
            const mmm_layer_weights *w = &s->w.layers[l];
            int Dc = (2 * d->n_kv_heads + d->n_heads) * d->head_dim;
            for (int p = 0; p < d->head_dim; p++) norm_one &= w->gnorm[p] == 1.0f;
            for (int c = 0; c < Dc; c++) {
                for (int j = 0; j < K; j++) {
                    mimic_conv &= w->conv_w[(size_t)c * K + j] == (j == K - 1 ? 1.0f : 0.0f);
                    cw[nw++] = w->conv_w[(size_t)c * K + j];
                }
                mimic_conv &= w->conv_b[c] == 0.0f;
                cb[nb++] = w->conv_b[c];
            }
            for (int h = 0; h < d->n_heads; h++) {
                double A = exp(w->A_log[h]);
                mimic_A &= w->A_log[h] == 1.0f;
                A_range &= A >= 1 - 1e-6 && A <= 16 * (1 + 1e-6);
                A_min = fmin(A_min, A);
                A_max = fmax(A_max, A);
                A_mean += A;
                nA++;
            }
        }
        A_mean /= nA;
        check(norm_one, "seed %s: gate-norm weight 1", init_name[i]);
        if (inits[i] == MMM_INIT_MIMIC) {
            check(mimic_conv, "seed mimic: conv weight 0 except the current-token tap 1, bias 0");
            check(mimic_A, "seed mimic: A_log = 1");
        } else {
            snprintf(what, sizeof what, "seed %s: conv weight (Conv1d's default, fan_in %d)", init_name[i], K);
            check_uniform(what, cw, nw, conv_b);
            snprintf(what, sizeof what, "seed %s: conv bias (Conv1d's default, fan_in %d)", init_name[i], K);
            check_uniform(what, cb, nb, conv_b);
            /* 16 heads of U[1, 16]: mean 8.5 with a standard deviation of 1.1 */
            check(A_range && A_max - A_min > 5 && A_mean > 4 && A_mean < 13,
                  "seed %s: A = exp(A_log) ~ U[1, 16] (%zu heads: min %.2f, max %.2f, mean %.2f)", init_name[i], nA,
                  A_min, A_max, A_mean);
        }
        free(cw);
        free(cb);
        mmm_model_free(s);
    }
    mmm_model_free(t);
}

/* The mimic seeding (the paper's, checked against upstream) is kept bit for bit: the FNV-1a
 * hashes of the whole student, recorded from mmm at commit 652b8d9, before inherit and scratch
 * were brought to upstream's definitions. */
TEST(seed_mimic_unchanged) {
    mmm_model *t = teacher();
    if (!check(t != NULL, "seed mimic golden: teacher loads")) return;
    const uint64_t want[2] = {0x69850e6571f56e9bull, 0x259e4e66505efe92ull};
    for (int k = 0; k < 2; k++) {
        mmm_model *s = seeded(t, k ? hybrid_keep : NULL, MMM_INIT_MIMIC, 7);
        if (!s) continue;
        uint64_t h = MMM_FNV1A64_INIT; /* the tensors in order, without the padding between them */
        for (int i = 0; i < s->n_params; i++)
            h = mmm_fnv1a64(h, s->data + s->params[i].offset, s->params[i].numel * sizeof *s->data);
        check(h == want[k], "seed %s, mimic, seed 7: the student's bits are unchanged (fnv1a64 %016llx, want %016llx)",
              k ? "hybrid" : "linear", (unsigned long long)h, (unsigned long long)want[k]);
        mmm_model_free(s);
    }
    mmm_model_free(t);
}
