/* The C teacher and students against the independent PyTorch reference
 * (tools/reference/hovle_reference.py; golden files in tests/data/teacher/ and tests/data/student/,
 * the students' mixer computed there by its explicit step-by-step recurrence): logits, every
 * layer's hidden states, the image and input embeddings, the loss and the gradient of every
 * parameter. Then prefill + decode against the full forward at every position. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "golden_io.h"
#include "mmm/error.h"
#include "mmm/forward.h"
#include "mmm/model.h"
#include "mmm/ops/loss.h"
#include "mmm/safetensors.h"

static const char *cases[] = {"teacher/text_only", "teacher/one_image", "teacher/two_images_resized_grid",
                              "student/linear_image", "student/hybrid_text", "student/linear_long"};

typedef struct {
    mmm_model *m;
    int32_t *ids, *labels;
    float *pixels;
    int T, n_tiles;
    mmm_st_file *inputs, *expected;
} parity_case;

static int open_case(parity_case *pc, const char *name) {
    char dir[256], path[300];
    snprintf(dir, sizeof dir, "tests/data/%s", name);
    memset(pc, 0, sizeof *pc);
    int rc = mmm_model_load(&pc->m, dir);
    if (!check(rc == MMM_OK, "%s loads%s%s", name, rc ? ": " : "", rc ? mmm_last_error() : ""))
        return 0;
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir);
    if (mmm_st_open(&pc->inputs, path)) return check(0, "%s inputs [%s]", name, mmm_last_error());
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    if (mmm_st_open(&pc->expected, path)) return check(0, "%s expected [%s]", name, mmm_last_error());
    size_t n = 0, nl = 0;
    pc->ids = golden_read_i32(pc->inputs, "input_ids", &n);
    pc->labels = golden_read_i32(pc->inputs, "labels", &nl);
    pc->T = (int)n;
    size_t np = 0;
    pc->pixels = golden_read_f32(pc->inputs, "pixel_values", &np);
    int S = pc->m->cfg.tile_size;
    pc->n_tiles = pc->pixels ? (int)(np / (3 * (size_t)S * S)) : 0;
    return pc->ids && pc->labels && nl == n;
}

static void close_case(parity_case *pc) {
    mmm_model_free(pc->m);
    mmm_st_close(pc->inputs);
    mmm_st_close(pc->expected);
    free(pc->ids); free(pc->labels); free(pc->pixels);
}

static void compare(const char *what, const char *name, const float *got, const mmm_st_file *exp,
                    const char *key, size_t offset, size_t n, double tol) {
    size_t total;
    if (strcmp(key, "logits") && strcmp(key, "hidden_states") && !mmm_st_find(exp, key)) return; /* optional */
    float *ref = golden_read_f32(exp, key, &total);
    char label[200];
    snprintf(label, sizeof label, "parity %s %s", name, what);
    if (!ref || offset + n > total) {
        check(0, "%s: expected tensor '%s' missing or short", label, key);
        free(ref);
        return;
    }
    check_close_f(label, got, ref + offset, n, tol);
    free(ref);
}

TEST(parity_forward_and_gradients) {
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        parity_case pc;
        if (!open_case(&pc, cases[c])) { close_case(&pc); continue; }
        mmm_model *m = pc.m;
        int T = pc.T, C = m->cfg.hidden, V = m->cfg.vocab, L = mmm_config_n_layers(&m->cfg);
        mmm_input in = {1, T, pc.ids, pc.pixels, pc.n_tiles};
        mmm_acts *acts = NULL;
        int rc = mmm_forward(m, &in, &acts);
        if (!check(rc == MMM_OK, "forward %s%s%s", cases[c], rc ? ": " : "", rc ? mmm_last_error() : "")) {
            close_case(&pc);
            continue;
        }
        compare("logits", cases[c], mmm_acts_logits(acts), pc.expected, "logits", 0, (size_t)T * V, 1e-4);
        compare("input_embeds", cases[c], mmm_acts_input_embeds(acts), pc.expected, "input_embeds", 0, (size_t)T * C, 1e-4);
        compare("encoder_output", cases[c], mmm_acts_encoder_output(acts), pc.expected, "encoder_output", 0, (size_t)T * C, 1e-4);
        for (int l = 0; l < L; l++) {
            char what[64];
            snprintf(what, sizeof what, "hidden_states[%d]", l);
            compare(what, cases[c], mmm_acts_layer_output(acts, l), pc.expected, "hidden_states",
                    (size_t)l * T * C, (size_t)T * C, 1e-4);
        }
        int n_img;
        const float *img = mmm_acts_image_embeds(acts, &n_img);
        if (pc.n_tiles) compare("image_embeds", cases[c], img, pc.expected, "image_embeds", 0, (size_t)n_img * C, 1e-4);

        /* loss and gradients */
        float loss;
        mmm_cross_entropy_forward(&loss, NULL, mmm_acts_logits(acts), pc.labels, T, V);
        float *ref_loss = golden_read_f32(pc.expected, "loss", NULL);
        double ref_l = ref_loss ? ref_loss[0] : NAN;
        check(ref_loss && fabs(loss - ref_l) <= 1e-5 * fabs(ref_l) + 1e-6, "parity %s loss %.7f vs %.7f",
              cases[c], loss, ref_l);
        free(ref_loss);
        float *dlogits = alloc_zeros((size_t)T * V), *grads = alloc_zeros(m->n_floats);
        mmm_cross_entropy_backward(dlogits, 1.0f, mmm_acts_logits(acts), pc.labels, T, V);
        check(mmm_backward(m, acts, dlogits, grads) == MMM_OK, "backward %s", cases[c]);
        double worst = 0;
        const char *worst_name = "";
        int missing = 0;
        for (int i = 0; i < m->n_params; i++) {
            const mmm_param *p = &m->params[i];
            char key[200];
            snprintf(key, sizeof key, "grad.%s", p->name);
            size_t n;
            float *ref = golden_read_f32(pc.expected, key, &n);
            /* goldens from before an optional tensor was modelled lack it: unused, it gets zero */
            if (!ref && (p->flags & MMM_PARAM_OPTIONAL) && (p->flags & MMM_PARAM_UNUSED))
                ref = alloc_zeros(n = p->numel);
            if (!ref || n != p->numel) { missing++; free(ref); continue; }
            /* compare each gradient relative to the largest gradient of its tensor, floored by the
             * tensor's share of the whole (all-zero tensors like tok_embeddings compare exactly) */
            double *r64 = to_f64(ref, n);
            double e = rel_error(grads + p->offset, r64, n);
            double mx = 0;
            for (size_t k = 0; k < n; k++) mx = fmax(mx, fabs(ref[k]));
            if (mx == 0) {
                e = 0;
                for (size_t k = 0; k < n; k++) e = fmax(e, fabs(grads[p->offset + k]));
            }
            if (e > worst) { worst = e; worst_name = p->name; }
            free(r64);
            free(ref);
        }
        check(missing == 0 && worst < 1e-4, "parity %s gradients of all %d parameters (worst rel err "
              "%.2e in %s)", cases[c], m->n_params, worst, worst_name);
        free(dlogits);
        free(grads);
        mmm_acts_free(acts);
        close_case(&pc);
    }
}

TEST(parity_prefill_decode_matches_forward) {
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        parity_case pc;
        if (!open_case(&pc, cases[c])) { close_case(&pc); continue; }
        mmm_model *m = pc.m;
        int T = pc.T, V = m->cfg.vocab;
        mmm_input in = {1, T, pc.ids, pc.pixels, pc.n_tiles};
        mmm_acts *acts = NULL;
        mmm_forward(m, &in, &acts);
        const float *full = mmm_acts_logits(acts);

        /* split after the last image token: prefill the head, decode the tail token by token */
        int split = 1;
        for (int t = 0; t < T; t++) if (pc.ids[t] == m->cfg.img_context_id) split = t + 1;
        mmm_state *s = NULL;
        float *got = alloc_zeros((size_t)T * V);
        int rc = mmm_state_new(&s, m, T);
        if (!rc) rc = mmm_prefill(m, s, pc.ids, split, pc.pixels, pc.n_tiles, got, NULL);
        for (int t = split; t < T && !rc; t++) rc = mmm_decode(m, s, pc.ids[t], got + (size_t)t * V);
        check(rc == MMM_OK, "prefill+decode %s runs%s%s", cases[c], rc ? ": " : "", rc ? mmm_last_error() : "");
        char label[160];
        snprintf(label, sizeof label, "prefill(%d)+decode(%d) %s = full forward at every position", split, T - split, cases[c]);
        check_close_f(label, got, full, (size_t)T * V, 1e-5);

        /* state copy continues identically */
        mmm_state *s2 = NULL;
        float *a = alloc_zeros(V), *b = alloc_zeros(V);
        mmm_state_reset(s);
        mmm_prefill(m, s, pc.ids, T - 1, pc.pixels, pc.n_tiles, NULL, NULL);
        mmm_state_new(&s2, m, T);
        check(mmm_state_copy(s2, s) == MMM_OK, "state copy %s", cases[c]);
        mmm_decode(m, s, pc.ids[T - 1], a);
        mmm_decode(m, s2, pc.ids[T - 1], b);
        check_close_f("decode after state copy = decode on the original", b, a, V, 0);
        check_close_f("decode after reset+prefill = full forward last row", a, full + (size_t)(T - 1) * V, V, 1e-5);
        /* the context limit is enforced, not overrun */
        rc = mmm_decode(m, s, 0, a);
        check(rc == MMM_ERR_ARG && strstr(mmm_last_error(), "exceed"),
              "decode past the context is refused (%s)", mmm_last_error());
        free(a); free(b); free(got);
        mmm_state_free(s);
        mmm_state_free(s2);
        mmm_acts_free(acts);
        close_case(&pc);
    }
}
