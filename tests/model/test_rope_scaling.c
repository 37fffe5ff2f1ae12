/* RoPE scaling through the whole model against the PyTorch reference
 * (tools/reference/make_rope_goldens.py, goldens in tests/data/rope/): InternLM2's "dynamic" and
 * "linear" rotary embeddings in a training forward (logits, loss, every gradient), in one prefill
 * call, and in a prefill followed by decode steps that cross max_position_embeddings, where the
 * reference's cached keys keep the base they were rotated with. Then a prefill of several chunks
 * against the training forward: every chunk of one call uses the call's base. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../harness.h"
#include "golden_io.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/forward.h"
#include "mmm/model.h"
#include "mmm/ops/loss.h"
#include "mmm/safetensors.h"

#define WEIGHTS "tests/data/teacher/text_only/model.safetensors"

static const char *cases[] = {"dynamic_decode", "dynamic_prefill", "linear"};

/* A model directory in /tmp: the case's config.json beside a link to the text_only weights. */
static int load_case(mmm_model **m, const char *name) {
    char dir[] = "/tmp/mmm_rope_XXXXXX", src[256], dst[256];
    if (!mkdtemp(dir)) return -1;
    snprintf(src, sizeof src, "tests/data/rope/%s/config.json", name);
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    int rc = mmm_copy_file(src, dst);
    char *abs = realpath(WEIGHTS, NULL);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    if (!rc) rc = abs && symlink(abs, dst) == 0 ? MMM_OK : -1;
    free(abs);
    if (!rc) rc = mmm_model_load(m, dir);
    return rc;
}

/* Every parameter's gradient against grad.<name>: the worst error relative to the largest
 * gradient of its tensor. */
static double worst_gradient(const mmm_model *m, const float *grads, const mmm_st_file *expected, int *missing,
                             const char **worst_name) {
    double worst = 0;
    *missing = 0;
    for (int i = 0; i < m->n_params; i++) {
        const mmm_param *p = &m->params[i];
        char key[200];
        snprintf(key, sizeof key, "grad.%s", p->name);
        size_t n = 0;
        float *ref = golden_read_f32(expected, key, &n);
        if (!ref || n != p->numel) {
            if (!(p->flags & MMM_PARAM_OPTIONAL)) (*missing)++;
            free(ref);
            continue;
        }
        double mx = 0, e = 0;
        for (size_t k = 0; k < n; k++) mx = fmax(mx, fabs(ref[k]));
        for (size_t k = 0; k < n; k++) e = fmax(e, fabs(grads[p->offset + k] - ref[k]));
        e = mx > 0 ? e / mx : e;
        if (e > worst) { worst = e; *worst_name = p->name; }
        free(ref);
    }
    return worst;
}

TEST(rope_scaling_parity) {
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const char *name = cases[c];
        char path[256];
        mmm_model *m = NULL;
        mmm_st_file *in = NULL, *ex = NULL;
        int rc = load_case(&m, name);
        if (!check(rc == MMM_OK, "rope %s model loads%s%s", name, rc ? ": " : "", rc ? mmm_last_error() : "")) continue;
        snprintf(path, sizeof path, "tests/data/rope/%s/inputs.safetensors", name);
        int ok = mmm_st_open(&in, path) == MMM_OK;
        snprintf(path, sizeof path, "tests/data/rope/%s/expected.safetensors", name);
        ok = ok && mmm_st_open(&ex, path) == MMM_OK;
        size_t T = 0, nl = 0, np = 0, nlog = 0, nstep = 0;
        int32_t *ids = ok ? golden_read_i32(in, "input_ids", &T) : NULL, *labels = ok ? golden_read_i32(in, "labels", &nl) : NULL;
        int32_t *prefill = ok ? golden_read_i32(in, "prefill", &np) : NULL;
        float *logits = ok ? golden_read_f32(ex, "logits", &nlog) : NULL, *steps = ok ? golden_read_f32(ex, "step_logits", &nstep) : NULL;
        float *ref_loss = ok ? golden_read_f32(ex, "loss", NULL) : NULL;
        int V = m->cfg.vocab;
        if (!check(ids && labels && prefill && logits && steps && ref_loss && nl == T && np == 1 &&
                   nlog == T * V && nstep == T * V && prefill[0] >= 1 && (size_t)prefill[0] < T,
                   "rope %s goldens read (tests/data/rope/%s)", name, name))
            goto done;
        char what[160];

        /* training: one forward over the sequence, its loss and every gradient */
        mmm_input batch = {1, (int)T, ids, NULL, 0};
        mmm_acts *acts = NULL;
        if (check(mmm_forward(m, &batch, &acts) == MMM_OK, "rope %s forward", name)) {
            snprintf(what, sizeof what, "rope %s training forward logits", name);
            check_close_f(what, mmm_acts_logits(acts), logits, T * V, 1e-4);
            float loss;
            mmm_cross_entropy_forward(&loss, NULL, mmm_acts_logits(acts), labels, (int)T, V);
            check(fabs(loss - ref_loss[0]) <= 1e-5 * fabs(ref_loss[0]), "rope %s loss %.7f vs %.7f", name, loss,
                  ref_loss[0]);
            float *dlogits = alloc_zeros(T * V), *grads = alloc_zeros(m->n_floats);
            mmm_cross_entropy_backward(dlogits, 1.0f, mmm_acts_logits(acts), labels, (int)T, V);
            if (check(mmm_backward(m, acts, dlogits, grads) == MMM_OK, "rope %s backward", name)) {
                int missing;
                const char *worst_name = "";
                double worst = worst_gradient(m, grads, ex, &missing, &worst_name);
                check(missing == 0 && worst < 1e-4, "rope %s gradients of every parameter (worst rel err %.2e in %s)",
                      name, worst, worst_name);
            }
            free(dlogits);
            free(grads);
        }
        mmm_acts_free(acts);

        /* inference: one prefill call, then a fresh state fed prefill[0] tokens and decoded on */
        mmm_state *s = NULL;
        float *got = alloc_zeros(T * V), *last = alloc_zeros(V);
        if (check(mmm_state_new(&s, m, (int)T) == MMM_OK, "rope %s state", name)) {
            rc = mmm_prefill(m, s, ids, (int)T, NULL, 0, got, last);
            snprintf(what, sizeof what, "rope %s one prefill call = the reference's one call", name);
            if (check(rc == MMM_OK, "rope %s prefill", name)) check_close_f(what, got, logits, T * V, 1e-4);
            mmm_state_reset(s);
            int P = prefill[0];
            rc = mmm_prefill(m, s, ids, P, NULL, 0, got, last);
            for (size_t t = P; t < T && rc == MMM_OK; t++) rc = mmm_decode(m, s, ids[t], got + t * V);
            snprintf(what, sizeof what, "rope %s prefill %d + %zu decode steps = the reference's cached calls", name, P,
                     T - P);
            if (check(rc == MMM_OK, "rope %s prefill + decode", name)) check_close_f(what, got, steps, T * V, 1e-4);
        }
        mmm_state_free(s);
        free(got);
        free(last);
    done:
        free(ids); free(labels); free(prefill); free(logits); free(steps); free(ref_loss);
        mmm_st_close(in);
        mmm_st_close(ex);
        mmm_model_free(m);
    }
}

/* A dynamic prefill longer than the state's 256-token chunks: all its chunks take the base of the
 * whole call, so its logits are the training forward's over the same tokens. */
TEST(rope_scaling_prefill_chunks_share_the_base) {
    mmm_model *m = NULL;
    if (!check(load_case(&m, "dynamic_decode") == MMM_OK, "rope chunks: model loads")) return;
    int T = 600, V = m->cfg.vocab;
    int32_t *ids = malloc(T * sizeof *ids);
    for (int t = 0; t < T; t++) ids[t] = (t * 7 + 3) % 50;
    mmm_input batch = {1, T, ids, NULL, 0};
    mmm_acts *acts = NULL;
    mmm_state *s = NULL;
    float *got = alloc_zeros((size_t)T * V), *last = alloc_zeros(V);
    if (check(mmm_forward(m, &batch, &acts) == MMM_OK && mmm_state_new(&s, m, T) == MMM_OK &&
              mmm_prefill(m, s, ids, T, NULL, 0, got, last) == MMM_OK, "rope chunks: forward and prefill of %d", T))
        check_close_f("rope dynamic: a 600-token prefill (3 chunks) = the training forward", got, mmm_acts_logits(acts),
                      (size_t)T * V, 1e-5);
    mmm_acts_free(acts);
    mmm_state_free(s);
    free(ids); free(got); free(last);
    mmm_model_free(m);
}
