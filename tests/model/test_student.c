/* Student (mmMamba) model: seeding, the mimic conv, layer choice, released-layout round trip,
 * prefill + decode = full forward for linear and hybrid students, every Mamba-2 layer of a full
 * forward against its explicit T×T form, gradient checks of every mixer parameter, and a state
 * that does not grow with the sequence. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "model_loss.h"
#include "mmm/error.h"
#include "mmm/forward.h"
#include "mmm/model.h"
#include "mmm/ops/conv1d.h"
#include "mmm/safetensors.h"
#include "mmm/seed.h"

#define TEACHER "tests/data/teacher/one_image"

static mmm_model *teacher(void) {
    mmm_model *t = NULL;
    return mmm_model_load(&t, TEACHER) == MMM_OK ? t : NULL;
}

static int same(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

TEST(student_seeding_places_teacher_weights) {
    mmm_model *t = teacher(), *s = NULL;
    if (!check(t != NULL, "seed: teacher loads")) return;
    int rc = mmm_seed_student(&s, t, NULL, MMM_INIT_MIMIC, 7);
    if (!check(rc == MMM_OK, "seed: linear student from the teacher%s%s", rc ? ": " : "", rc ? mmm_last_error() : "")) {
        mmm_model_free(t);
        return;
    }
    int C = t->cfg.hidden, L = mmm_config_n_layers(&t->cfg);
    check(mmm_config_n_mamba_layers(&s->cfg) == L, "seed: every layer of a linear student is mamba2");
    /* everything outside the mixers is the teacher's */
    int outside = 1;
    for (int i = 0; i < s->n_params; i++) {
        const mmm_param *p = &s->params[i], *tp = mmm_model_param(t, p->name);
        if (tp) outside &= same(s->data + p->offset, t->data + tp->offset, p->numel);
    }
    check(outside, "seed: embeddings, vision, norms, MLPs and LM head copied unchanged");
    for (int l = 0; l < L; l++) {
        const mmm_layer_desc *d = &t->cfg.layers[l];
        const mmm_layer_weights *tw = &t->w.layers[l], *sw = &s->w.layers[l];
        int H = d->n_heads, Hkv = d->n_kv_heads, D = d->head_dim, rep = H / Hkv, HD = H * D;
        int Dc = (2 * Hkv + H) * D;
        int ok = 1;
        for (int g = 0; g < Hkv; g++) {
            const float *grp = tw->wqkv + (size_t)g * (rep + 2) * D * C;
            ok &= same(sw->wvkqgdt + (size_t)g * D * C, grp + (size_t)(rep + 1) * D * C, (size_t)D * C);           /* v */
            ok &= same(sw->wvkqgdt + (size_t)(Hkv + g) * D * C, grp + (size_t)rep * D * C, (size_t)D * C);         /* k */
            ok &= same(sw->wvkqgdt + (size_t)(2 * Hkv + g * rep) * D * C, grp, (size_t)rep * D * C);               /* q */
        }
        check(ok, "seed: layer %d Wv, Wk, Wq rows of wvkqgdt come from the teacher's grouped wqkv", l);
        check(same(sw->o_proj, tw->wo, (size_t)C * HD), "seed: layer %d o_proj = teacher wo", l);
        int conv = 1;
        for (int c = 0; c < Dc; c++)
            conv &= sw->conv_w[2 * c] == 0.0f && sw->conv_w[2 * c + 1] == 1.0f && sw->conv_b[c] == 0.0f;
        check(conv, "seed: layer %d conv weight 0 except the current-token tap 1, bias 0", l);
        int wdt_zero = 1;
        for (long i = 0; i < (long)H * C; i++) wdt_zero &= sw->wvkqgdt[(size_t)(Dc + HD) * C + i] == 0.0f;
        check(wdt_zero, "seed: layer %d Wdt = 0", l);
        int dt_ok = 1, a_ok = 1, n_ok = 1;
        for (int h = 0; h < H; h++) {
            double dt0 = log1p(exp(sw->dt_bias[h]));
            dt_ok &= dt0 >= 1e-3 * (1 - 1e-5) && dt0 <= 1e-1 * (1 + 1e-5);
            a_ok &= sw->A_log[h] == 1.0f;
        }
        for (int p = 0; p < D; p++) n_ok &= sw->gnorm[p] == 1.0f;
        check(dt_ok, "seed: layer %d softplus(dt_bias) in [1e-3, 1e-1]", l);
        check(a_ok && n_ok, "seed: layer %d A_log = 1 (A = -e), gate norm weight 1", l);
        double bound = 0.17677669529663687 * sqrt(6.0 / (HD + C)), mx = 0, mean = 0;
        for (long i = 0; i < (long)HD * C; i++) {
            double v = sw->wvkqgdt[(size_t)Dc * C + i];
            mx = fmax(mx, fabs(v));
            mean += v / ((double)HD * C);
        }
        check(mx <= bound && mx > 0.8 * bound && fabs(mean) < 0.1 * bound,
              "seed: layer %d Wg Xavier-uniform, gain 2^-2.5 (max %.4f, bound %.4f)", l, mx, bound);
    }
    /* the mimic conv passes each token through unchanged (before the SiLU) */
    const mmm_layer_desc *d0 = &s->cfg.layers[0];
    int Dc = (2 * d0->n_kv_heads + d0->n_heads) * d0->head_dim, T = 9;
    rng_t rng = rng_new(5);
    float *x = alloc_uniform(&rng, (size_t)T * Dc, -2, 2), *y = alloc_zeros((size_t)T * Dc);
    mmm_conv1d_forward(y, NULL, x, NULL, s->w.layers[0].conv_w, s->w.layers[0].conv_b, 1, T, Dc, MMM_MAMBA_CONV_K);
    check_close_f("seed: mimic conv output = its input", y, x, (size_t)T * Dc, 0);
    free(x); free(y);

    /* determinism (the inherit and scratch inits: tests/model/test_seed.c) */
    mmm_model *s2 = NULL;
    mmm_seed_student(&s2, t, NULL, MMM_INIT_MIMIC, 7);
    check(same(s2->data, s->data, s->n_floats), "seed: same seed, same student");
    mmm_model_free(s2);

    /* a student is refused as a teacher */
    rc = mmm_seed_student(&s2, s, NULL, MMM_INIT_MIMIC, 7);
    check(rc == MMM_ERR_ARG && strstr(mmm_last_error(), "already has"), "seed: a student is refused as teacher (%s)", mmm_last_error());
    mmm_model_free(s);
    mmm_model_free(t);
}

TEST(student_layer_choice) {
    uint8_t keep[32];
    int ok = mmm_parse_layer_choice(keep, 32, "every:4") == MMM_OK;
    for (int l = 0; l < 32; l++) ok &= keep[l] == (l % 4 == 0);
    check(ok, "hybrid every:4 keeps layers 0, 4, ..., 28 of 32 (head-interleaved)");
    ok = mmm_parse_layer_choice(keep, 32, "tail-interleaved:8") == MMM_OK;
    for (int l = 0; l < 32; l++) ok &= keep[l] == (l % 4 == 3);
    check(ok, "hybrid tail-interleaved:8 keeps 3, 7, ..., 31");
    ok = mmm_parse_layer_choice(keep, 32, "head-stacked:8") == MMM_OK;
    for (int l = 0; l < 32; l++) ok &= keep[l] == (l < 8);
    check(ok, "hybrid head-stacked:8 keeps 0..7");
    ok = mmm_parse_layer_choice(keep, 32, "tail-stacked:8") == MMM_OK;
    for (int l = 0; l < 32; l++) ok &= keep[l] == (l >= 24);
    check(ok, "hybrid tail-stacked:8 keeps 24..31");
    ok = mmm_parse_layer_choice(keep, 8, "1, 5,7") == MMM_OK;
    check(ok && keep[1] && keep[5] && keep[7] && !keep[0] && !keep[6], "attention-layers list 1,5,7");
    check(mmm_parse_layer_choice(keep, 8, "9") == MMM_ERR_ARG, "attention-layers out of range refused");
    ok = mmm_parse_layer_choice(keep, 6, "every:4") == MMM_OK;
    for (int l = 0; l < 6; l++) ok &= keep[l] == (l == 0 || l == 4);
    check(ok, "hybrid every:4 of 6 layers keeps 0 and 4");
    check(mmm_parse_layer_choice(keep, 8, "every:0") == MMM_ERR_ARG, "every:0 refused");
    check(mmm_parse_layer_choice(keep, 8, "middle:2") == MMM_ERR_ARG && strstr(mmm_last_error(), "unknown placement"),
          "unknown placement refused");
}

/* Perturbs every mixer parameter away from the seed so nothing sits at a special value. */
static void perturb_mixers(mmm_model *s, uint64_t seed) {
    rng_t rng = rng_new(seed);
    for (int i = 0; i < s->n_params; i++) {
        const mmm_param *p = &s->params[i];
        if (p->role < MMM_ROLE_WVKQGDT) continue;
        float scale = p->role == MMM_ROLE_WVKQGDT || p->role == MMM_ROLE_O_PROJ ? 0.05f : 0.2f;
        for (size_t k = 0; k < p->numel; k++) s->data[p->offset + k] += scale * (float)(2 * rng_uniform(&rng) - 1);
    }
}

static int32_t *one_image_inputs(int *T, float **pixels, int *n_tiles) {
    mmm_st_file *f = NULL;
    if (mmm_st_open(&f, TEACHER "/inputs.safetensors")) return NULL;
    const mmm_st_tensor *ti = mmm_st_find(f, "input_ids"), *tp = mmm_st_find(f, "pixel_values");
    int32_t *ids = malloc(ti->numel * sizeof *ids);
    mmm_st_read_i32(ti, ids, ti->numel);
    *pixels = malloc(tp->numel * sizeof **pixels);
    mmm_st_read_f32(tp, *pixels, tp->numel);
    *T = (int)ti->numel;
    *n_tiles = (int)(tp->numel / (3 * 8 * 8));
    mmm_st_close(f);
    return ids;
}

/* The full forward (chunked SSD) against chunked prefill + token-by-token decode (the fused
 * recurrent step), at every position, for a linear and a hybrid student. */
TEST(student_prefill_decode_matches_forward) {
    mmm_model *t = teacher();
    if (!check(t != NULL, "student prefill: teacher loads")) return;
    int T, n_tiles;
    float *pixels;
    int32_t *ids = one_image_inputs(&T, &pixels, &n_tiles);
    const char *kinds[] = {"linear", "hybrid every:2"};
    for (int k = 0; k < 2; k++) {
        uint8_t keep[8] = {0};
        if (k) mmm_parse_layer_choice(keep, mmm_config_n_layers(&t->cfg), "every:2");
        mmm_model *s = NULL;
        mmm_seed_student(&s, t, keep, MMM_INIT_MIMIC, 3);
        perturb_mixers(s, 11 + k);
        mmm_input in = {1, T, ids, pixels, n_tiles};
        mmm_acts *acts = NULL;
        int rc = mmm_forward(s, &in, &acts);
        check(rc == MMM_OK, "forward %s student%s%s", kinds[k], rc ? ": " : "", rc ? mmm_last_error() : "");
        int V = s->cfg.vocab, split = 1;
        for (int i = 0; i < T; i++) if (ids[i] == s->cfg.img_context_id) split = i + 1;
        float *got = alloc_zeros((size_t)T * V);
        mmm_state *st = NULL;
        rc = mmm_state_new(&st, s, T);
        if (!rc) rc = mmm_prefill(s, st, ids, split, pixels, n_tiles, got, NULL);
        for (int i = split; i < T && !rc; i++) rc = mmm_decode(s, st, ids[i], got + (size_t)i * V);
        char what[160];
        snprintf(what, sizeof what, "%s student: prefill(%d) + decode(%d) = full forward at every position", kinds[k], split, T - split);
        check(rc == MMM_OK, "%s runs", what);
        check_close_f(what, got, mmm_acts_logits(acts), (size_t)T * V, 1e-5);
        /* prefill of everything in one call */
        mmm_state_reset(st);
        mmm_prefill(s, st, ids, T, pixels, n_tiles, got, NULL);
        snprintf(what, sizeof what, "%s student: one prefill = full forward", kinds[k]);
        check_close_f(what, got, mmm_acts_logits(acts), (size_t)T * V, 1e-5);
        /* two prefills, the second continuing a non-empty state (conv and SSM state carried into
         * a multi-token scan), then decode */
        memset(got, 0, (size_t)T * V * sizeof *got);
        mmm_state_reset(st);
        rc = mmm_prefill(s, st, ids, split, pixels, n_tiles, got, NULL);
        if (!rc) rc = mmm_prefill(s, st, ids + split, T - 2 - split, NULL, 0, got + (size_t)split * V, NULL);
        for (int i = T - 2; i < T && !rc; i++) rc = mmm_decode(s, st, ids[i], got + (size_t)i * V);
        snprintf(what, sizeof what, "%s student: prefill(%d) + prefill(%d) + decode(2) = full forward",
                 kinds[k], split, T - 2 - split);
        check(rc == MMM_OK && T - 2 - split > 1, "%s runs", what);
        check_close_f(what, got, mmm_acts_logits(acts), (size_t)T * V, 1e-5);
        mmm_state_free(st);
        mmm_acts_free(acts);
        free(got);
        mmm_model_free(s);
    }
    free(ids); free(pixels);
    mmm_model_free(t);
}

static double silu(double v) { return v / (1 + exp(-v)); }

/* out = RMSNorm(x; w, eps), float64, n values */
static void rmsnorm64(double *out, const double *x, const float *w, double eps, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double r = 1 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * r * w[i];
}

/* out (n) = W (n, k) · x (k) */
static void matvec64(double *out, const float *W, const double *x, int n, int k) {
    for (int i = 0; i < n; i++) {
        double acc = 0;
        for (int j = 0; j < k; j++) acc += (double)W[(size_t)i * k + j] * x[j];
        out[i] = acc;
    }
}

/* Mamba-2 layer l (docs/design.md §3, then the MLP) in float64 on x (T, C) → out (T, C), with the scan as
 * its explicit T×T sum y_t = Σ_{s≤t} exp(A·Σ_{s<r≤t} dt_r)·dt_s·(B_s·C_t)·x_s: a form that
 * shares nothing with the chunked SSD. */
static void mamba_layer_explicit(double *out, const mmm_model *m, int l, const float *x, int T) {
    const mmm_layer_desc *d = &m->cfg.layers[l];
    const mmm_layer_weights *w = &m->w.layers[l];
    int C = m->cfg.hidden, H = d->n_heads, G = d->n_kv_heads, D = d->head_dim, F = d->ffn;
    int HD = H * D, KD = G * D, Dc = 2 * KD + HD, Dz = Dc + HD + H, K = MMM_MAMBA_CONV_K;
    double *xt = malloc(C * sizeof *xt), *h = malloc(C * sizeof *h), *hid = malloc(2 * (size_t)F * sizeof *hid);
    double *z = malloc((size_t)T * Dz * sizeof *z), *u = malloc((size_t)T * Dc * sizeof *u);
    double *cum = calloc((size_t)(T + 1) * H, sizeof *cum), *dt = malloc((size_t)T * H * sizeof *dt);
    double *y = calloc((size_t)HD, sizeof *y), *att = malloc(HD * sizeof *att), *mid = malloc(C * sizeof *mid);
    for (int t = 0; t < T; t++) { /* z = [v k q | g | dt] = RMSNorm(x)·Wᵀ */
        for (int i = 0; i < C; i++) xt[i] = x[(size_t)t * C + i];
        rmsnorm64(h, xt, w->attn_norm, d->rms_eps, C);
        matvec64(z + (size_t)t * Dz, w->wvkqgdt, h, Dz, C);
    }
    for (int t = 0; t < T; t++) {
        for (int c = 0; c < Dc; c++) { /* causal conv, tap K−1 on the current token, then SiLU */
            double acc = w->conv_b[c];
            for (int j = 0; j < K; j++)
                if (t - (K - 1) + j >= 0) acc += (double)w->conv_w[(size_t)c * K + j] * z[(size_t)(t - (K - 1) + j) * Dz + c];
            u[(size_t)t * Dc + c] = silu(acc);
        }
        for (int hh = 0; hh < H; hh++) {
            double v = z[(size_t)t * Dz + Dc + HD + hh] + w->dt_bias[hh];
            dt[(size_t)t * H + hh] = v > 30 ? v : log1p(exp(v));
            cum[(size_t)(t + 1) * H + hh] = cum[(size_t)t * H + hh] + dt[(size_t)t * H + hh];
        }
    }
    for (int t = 0; t < T; t++) {
        for (int hh = 0; hh < H; hh++) {
            int g = hh / (H / G);
            double A = -exp((double)w->A_log[hh]), *yh = y + (size_t)hh * D;
            const double *Ct = u + (size_t)t * Dc + 2 * KD + (size_t)hh * D;
            for (int p = 0; p < D; p++) yh[p] = 0;
            for (int s = 0; s <= t; s++) {
                const double *xs = u + (size_t)s * Dc + (size_t)g * D, *Bs = xs + KD;
                double bc = 0;
                for (int n = 0; n < D; n++) bc += Bs[n] * Ct[n];
                double coef = exp(A * (cum[(size_t)(t + 1) * H + hh] - cum[(size_t)(s + 1) * H + hh])) * dt[(size_t)s * H + hh] * bc;
                for (int p = 0; p < D; p++) yh[p] += coef * xs[p];
            }
            double ss = 0; /* gate: per-head RMSNorm of y (eps 1e-5) ⊙ SiLU(g) */
            for (int p = 0; p < D; p++) ss += yh[p] * yh[p];
            double r = 1 / sqrt(ss / D + 1e-5);
            for (int p = 0; p < D; p++)
                att[hh * D + p] = yh[p] * r * w->gnorm[p] * silu(z[(size_t)t * Dz + Dc + hh * D + p]);
        }
        matvec64(mid, w->o_proj, att, C, HD);
        for (int i = 0; i < C; i++) mid[i] += x[(size_t)t * C + i];
        rmsnorm64(h, mid, w->ffn_norm, d->rms_eps, C);
        matvec64(hid, w->w1, h, F, C);
        matvec64(hid + F, w->w3, h, F, C);
        for (int f = 0; f < F; f++) hid[f] = silu(hid[f]) * hid[F + f];
        matvec64(out + (size_t)t * C, w->w2, hid, C, F);
        for (int i = 0; i < C; i++) out[(size_t)t * C + i] += mid[i];
    }
    free(xt); free(h); free(hid); free(z); free(u); free(cum); free(dt); free(y); free(att); free(mid);
}

/* Every layer of a full student forward (chunked SSD, T = 300: two chunks of 128 and a
 * remainder) against the explicit form on that layer's input from the same forward. */
TEST(student_mamba_layers_match_explicit_form) {
    mmm_model *t = teacher(), *s = NULL;
    if (!check(t != NULL, "explicit layers: teacher loads")) return;
    mmm_seed_student(&s, t, NULL, MMM_INIT_MIMIC, 13);
    perturb_mixers(s, 31);
    const int T = 300;
    int32_t ids[300];
    rng_t rng = rng_new(17);
    for (int i = 0; i < T; i++) ids[i] = (int32_t)(rng_uniform(&rng) * s->cfg.llm_vocab);
    mmm_input in = {1, T, ids, NULL, 0};
    mmm_acts *acts = NULL;
    int rc = mmm_forward(s, &in, &acts);
    if (check(rc == MMM_OK, "explicit layers: student forward T=%d%s%s", T, rc ? ": " : "", rc ? mmm_last_error() : "")) {
        int C = s->cfg.hidden, E = s->cfg.n_emb_layers;
        double *want = malloc((size_t)T * C * sizeof *want);
        for (int l = 0; l < mmm_config_n_layers(&s->cfg); l++) {
            const float *x = l == 0 ? mmm_acts_input_embeds(acts) : l == E ? mmm_acts_encoder_output(acts)
                                                                           : mmm_acts_layer_output(acts, l - 1);
            mamba_layer_explicit(want, s, l, x, T);
            char what[120];
            snprintf(what, sizeof what, "student layer %d (mamba2, T=%d): chunked SSD forward = explicit T×T form", l, T);
            check_close(what, mmm_acts_layer_output(acts, l), want, (size_t)T * C, 1e-5);
        }
        free(want);
    }
    mmm_acts_free(acts);
    mmm_model_free(s);
    mmm_model_free(t);
}

TEST(student_gradcheck_mixer_parameters) {
    mmm_model *t = teacher(), *s = NULL;
    if (!check(t != NULL, "student gradcheck: teacher loads")) return;
    uint8_t keep[8] = {0};
    keep[2] = 1; /* a hybrid: gradients must also cross a kept attention layer */
    mmm_seed_student(&s, t, keep, MMM_INIT_MIMIC, 5);
    perturb_mixers(s, 21);
    int T, n_tiles;
    float *pixels;
    int32_t *ids = one_image_inputs(&T, &pixels, &n_tiles);
    rng_t rng = rng_new(9);
    size_t nl = (size_t)T * s->cfg.vocab;
    model_ctx c = {s, {1, T, ids, pixels, n_tiles}, NULL, alloc_uniform(&rng, nl, -1, 1)};
    model_loss(&c);
    float *grads = alloc_zeros(s->n_floats);
    check(mmm_backward(s, c.acts, c.r, grads) == MMM_OK, "backward hybrid student");
    for (int i = 0; i < s->n_params; i++) {
        const mmm_param *p = &s->params[i];
        if (p->layer < 0 || (p->role < MMM_ROLE_WVKQGDT && p->role != MMM_ROLE_ATTN_NORM)) continue;
        char what[200];
        snprintf(what, sizeof what, "student %s", p->name);
        /* a per-head dt_bias or A_log moves every token's decay, so its finite difference is the
         * sum of many fp32-rounded changes: the noisiest check here (the PyTorch parity test
         * checks these gradients to 1e-4) */
        double tol = p->role == MMM_ROLE_DT_BIAS || p->role == MMM_ROLE_A_LOG ? 1e-1 : 5e-2;
        gradcheck(what, model_loss, &c, s->data + p->offset, grads + p->offset, p->numel, 1e-2, tol);
    }
    mmm_acts_free(c.acts);
    free(c.r); free(grads); free(ids); free(pixels);
    mmm_model_free(s);
    mmm_model_free(t);
}

TEST(student_released_layout_round_trip) {
    mmm_model *t = teacher(), *s = NULL, *back = NULL;
    if (!check(t != NULL, "student round trip: teacher loads")) return;
    uint8_t keep[4] = {1, 0, 0, 0};
    mmm_seed_student(&s, t, keep, MMM_INIT_MIMIC, 1);
    char dir[] = "/tmp/mmm_student_XXXXXX";
    mkdtemp(dir);
    int rc = mmm_model_save(s, dir, MMM_DTYPE_F32, 0);
    if (!rc) rc = mmm_model_load(&back, dir);
    if (check(rc == MMM_OK, "student saves and loads%s%s", rc ? ": " : "", rc ? mmm_last_error() : "")) {
        check(same(back->data, s->data, s->n_floats), "student round trip weights identical");
        int kinds = 1;
        for (int l = 0; l < 4; l++) kinds &= back->cfg.layers[l].kind == s->cfg.layers[l].kind;
        check(kinds && back->cfg.layers[0].kind == MMM_MIXER_ATTENTION, "student round trip layers_block_type");
        check(mmm_model_param(back, "language_model.model.layers.1.attention.wvkqgdt.weight") &&
              mmm_model_param(back, "embedding_model.encoder.1.attention.A_log_bias") &&
              mmm_model_param(back, "embedding_model.encoder.0.attention.wqkv.weight") &&
              !mmm_model_param(back, "embedding_model.encoder.1.attention.wqkv.weight"),
              "student uses the released tensor names (wvkqgdt, A_log_bias; wqkv only in mha layers)");
        mmm_model_free(back);
    }
    mmm_model_free(s);
    mmm_model_free(t);
}

TEST(student_state_does_not_grow) {
    mmm_model *t = teacher(), *s = NULL;
    if (!check(t != NULL, "state size: teacher loads")) return;
    mmm_seed_student(&s, t, NULL, MMM_INIT_MIMIC, 1);
    mmm_state *a = NULL, *b = NULL, *ta = NULL, *tb = NULL;
    mmm_state_new(&a, s, 1000);
    mmm_state_new(&b, s, 100000);
    mmm_state_new(&ta, t, 1000);
    mmm_state_new(&tb, t, 100000);
    check(mmm_state_bytes(a) == mmm_state_bytes(b) && mmm_state_bytes(a) > 0,
          "linear student state: %zu bytes at 1K and at 100K tokens", mmm_state_bytes(a));
    check(mmm_state_bytes(tb) == 100 * mmm_state_bytes(ta),
          "teacher KV cache: %zu bytes at 1K, %zu at 100K (linear)", mmm_state_bytes(ta), mmm_state_bytes(tb));
    mmm_state_free(a); mmm_state_free(b); mmm_state_free(ta); mmm_state_free(tb);
    mmm_model_free(s);
    mmm_model_free(t);
}
