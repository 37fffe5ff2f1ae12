/* Seeding a student from a teacher (docs/design.md §4) and hybrid layer placement. */
#include "mmm/seed.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mmm/error.h"
#include "mmm/rng.h"

/* w (n) ~ U(−bound, bound) */
static void uniform(float *w, size_t n, double bound, mmm_rng *rng) {
    for (size_t i = 0; i < n; i++) w[i] = (float)((2 * mmm_rng_uniform(rng) - 1) * bound);
}

/* The three inits are upstream mmMamba's (docs/design.md §4): mimic = inherit_qkv + mimic_init,
 * inherit = inherit_qkv alone, scratch = neither. o_proj is never touched (the teacher's Wo
 * under all three). Where upstream draws from torch's RNG, the distribution is matched, not the
 * bits (docs/design.md §4). */
void mmm_seed_mamba_layer(mmm_model *m, int l, mmm_seed_init init, uint64_t seed) {
    const mmm_layer_desc *d = &m->cfg.layers[l];
    mmm_layer_weights *w = &m->w.layers[l];
    int C = m->cfg.hidden, H = d->n_heads, D = d->head_dim, HD = H * D;
    int Dc = mamba_conv_channels(d), K = MMM_MAMBA_CONV_K;
    mmm_rng rng = mmm_rng_seed(seed * 1000003u + (uint64_t)l);
    /* nn.Linear's default init is U(±1/sqrt(fan_in)); every new matrix here reads h (fan_in = hidden) */
    const double linear_bound = 1.0 / sqrt((double)C);

    /* Wg: Xavier-uniform with gain 2^-2.5 under every init; the gain rounded to float, as mimic
     * has always drawn it (its hash in tests/model/test_seed.c) */
    uniform(w->wvkqgdt + (size_t)Dc * C, (size_t)HD * C, 0.17677669529663687f * sqrt(6.0 / (HD + C)), &rng);
    /* Wdt: zero (mimic), else nn.Linear's default */
    float *wdt = w->wvkqgdt + (size_t)(Dc + HD) * C;
    if (init == MMM_INIT_MIMIC) memset(wdt, 0, (size_t)H * C * sizeof *wdt);
    else uniform(wdt, (size_t)H * C, linear_bound, &rng);
    /* scratch: Wv, Wk, Wq at nn.Linear's default instead of the teacher's */
    if (init == MMM_INIT_SCRATCH) uniform(w->wvkqgdt, (size_t)Dc * C, linear_bound, &rng);
    /* conv: mimic passes the current token through (SiLU aside); otherwise PyTorch's Conv1d
     * default, U(±1/sqrt(fan_in)) with fan_in = K for a depthwise kernel */
    double cb = 1.0 / sqrt((double)K);
    for (int c = 0; c < Dc; c++) {
        for (int j = 0; j < K; j++)
            w->conv_w[(size_t)c * K + j] = init == MMM_INIT_MIMIC ? (j == K - 1 ? 1.0f : 0.0f)
                                                                 : (float)((2 * mmm_rng_uniform(&rng) - 1) * cb);
        w->conv_b[c] = init == MMM_INIT_MIMIC ? 0.0f : (float)((2 * mmm_rng_uniform(&rng) - 1) * cb);
    }
    for (int h = 0; h < H; h++) {
        if (init == MMM_INIT_MIMIC) {
            /* dt0 log-uniform in [1e-3, 1e-1], clamped >= 1e-3; dt_bias = softplus⁻¹(dt0); A_log = 1 (A = −e) */
            double dt0 = exp(log(1e-3) + mmm_rng_uniform(&rng) * (log(1e-1) - log(1e-3)));
            if (dt0 < 1e-3) dt0 = 1e-3;
            w->dt_bias[h] = (float)(dt0 + log(-expm1(-dt0)));
            w->A_log[h] = 1.0f;
        } else {
            /* dt_bias = 0 (dt = softplus(0) ≈ 0.69 before Wdt's term); Mamba-2's A ~ U[1, 16] */
            w->dt_bias[h] = 0.0f;
            w->A_log[h] = (float)log(1.0 + 15.0 * mmm_rng_uniform(&rng));
        }
    }
    for (int p = 0; p < D; p++) w->gnorm[p] = 1.0f;
}

/* Copies the teacher's Wq, Wk, Wv (from the per-group fused wqkv) into wvkqgdt's v | k | q rows
 * and Wo into o_proj. */
static void inherit_qkv(float *wvkqgdt, float *o_proj, const mmm_layer_weights *t, const mmm_layer_desc *d, int C) {
    int H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, rep = H / Hkv;
    size_t row = (size_t)C;
    float *v_rows = wvkqgdt, *k_rows = v_rows + (size_t)Hkv * D * row, *q_rows = k_rows + (size_t)Hkv * D * row;
    for (int g = 0; g < Hkv; g++) {
        const float *grp = t->wqkv + (size_t)g * (rep + 2) * D * row;
        memcpy(q_rows + (size_t)g * rep * D * row, grp, (size_t)rep * D * row * sizeof *grp);
        memcpy(k_rows + (size_t)g * D * row, grp + (size_t)rep * D * row, (size_t)D * row * sizeof *grp);
        memcpy(v_rows + (size_t)g * D * row, grp + (size_t)(rep + 1) * D * row, (size_t)D * row * sizeof *grp);
    }
    memcpy(o_proj, t->wo, (size_t)C * H * D * sizeof *o_proj);
}

int mmm_seed_student(mmm_model **out, const mmm_model *teacher, const uint8_t *keep_attention,
                     mmm_seed_init init, uint64_t seed) {
    const mmm_config *tc = &teacher->cfg;
    int L = mmm_config_n_layers(tc);
    if (mmm_config_n_mamba_layers(tc))
        return mmm_fail(MMM_ERR_ARG, "the teacher already has %d mamba2 layers: seeding starts from a "
                        "pure attention model", mmm_config_n_mamba_layers(tc));
    for (int l = 0; l < L; l++)
        if (tc->layers[l].n_heads * tc->layers[l].head_dim != tc->hidden)
            return mmm_fail(MMM_ERR_UNSUPPORTED, "seeding needs heads · head_dim = hidden (layer %d)", l);
    mmm_config sc;
    int rc = mmm_config_copy(&sc, tc);
    if (rc) return rc;
    for (int l = 0; l < L; l++)
        sc.layers[l].kind = keep_attention && keep_attention[l] ? MMM_MIXER_ATTENTION : MMM_MIXER_MAMBA2;
    mmm_model *s = NULL;
    rc = mmm_model_create(&s, &sc);
    mmm_config_free(&sc);
    if (rc) return rc;
    /* everything with the same name (embeddings, vision, norms, MLPs, kept attention, head) */
    for (int i = 0; i < s->n_params; i++) {
        const mmm_param *p = &s->params[i];
        const mmm_param *tp = mmm_model_param(teacher, p->name);
        if (tp && tp->numel == p->numel)
            memcpy(s->data + p->offset, teacher->data + tp->offset, p->numel * sizeof(float));
    }
    for (int l = 0; l < L; l++) {
        if (s->cfg.layers[l].kind != MMM_MIXER_MAMBA2) continue;
        inherit_qkv(s->w.layers[l].wvkqgdt, s->w.layers[l].o_proj, &teacher->w.layers[l], &tc->layers[l], tc->hidden);
        mmm_seed_mamba_layer(s, l, init, seed);
    }
    *out = s;
    return MMM_OK;
}

int mmm_hybrid_layers(uint8_t *keep, int n, int K, mmm_placement where) {
    if (K < 0 || K > n) return mmm_fail(MMM_ERR_ARG, "cannot keep %d attention layers out of %d", K, n);
    memset(keep, 0, (size_t)n);
    for (int i = 0; i < K; i++) {
        int l;
        switch (where) {
        case MMM_PLACE_HEAD_INTERLEAVED: l = (int)((long)i * n / K); break;
        case MMM_PLACE_TAIL_INTERLEAVED: l = (int)((long)(i + 1) * n / K) - 1; break;
        case MMM_PLACE_HEAD_STACKED: l = i; break;
        default: l = n - K + i; break;
        }
        keep[l] = 1;
    }
    return MMM_OK;
}

int mmm_parse_layer_choice(uint8_t *keep, int n, const char *spec) {
    static const struct { const char *name; mmm_placement where; } names[] = {
        {"head-interleaved", MMM_PLACE_HEAD_INTERLEAVED}, {"tail-interleaved", MMM_PLACE_TAIL_INTERLEAVED},
        {"head-stacked", MMM_PLACE_HEAD_STACKED}, {"tail-stacked", MMM_PLACE_TAIL_STACKED}};
    const char *colon = strchr(spec, ':');
    if (colon) {
        char *end;
        long k = strtol(colon + 1, &end, 10);
        if (*end || k < 1) return mmm_fail(MMM_ERR_ARG, "layer choice '%s': expected a positive number after ':'", spec);
        size_t len = (size_t)(colon - spec);
        if (len == 5 && !strncmp(spec, "every", 5)) { /* the first layer of every k: 0, k, 2k, ... */
            memset(keep, 0, (size_t)n);
            for (long l = 0; l < n; l += k) keep[l] = 1;
            return MMM_OK;
        }
        for (size_t i = 0; i < sizeof names / sizeof *names; i++)
            if (strlen(names[i].name) == len && !strncmp(spec, names[i].name, len))
                return mmm_hybrid_layers(keep, n, (int)k, names[i].where);
        return mmm_fail(MMM_ERR_ARG, "layer choice '%s': unknown placement (every, head-interleaved, "
                        "tail-interleaved, head-stacked, tail-stacked)", spec);
    }
    memset(keep, 0, (size_t)n);
    const char *p = spec;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p)) p++;
        if (!*p) break;
        char *end;
        long l = strtol(p, &end, 10);
        if (end == p || l < 0 || l >= n)
            return mmm_fail(MMM_ERR_ARG, "layer choice '%s': layers are numbered 0..%d over both stacks", spec, n - 1);
        keep[l] = 1;
        p = end;
    }
    return MMM_OK;
}
