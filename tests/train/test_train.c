/* Data and training: the chat template and its labels, JSONL loading with bad lines, batching,
 * a short training run whose loss falls, and a resume after an interruption that continues
 * exactly like an uninterrupted run. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../harness.h"
#include "mmm/data.h"
#include "mmm/error.h"
#include "mmm/fashion_mnist.h"
#include "mmm/fileio.h"
#include "mmm/forward.h"
#include "mmm/tokenizer.h"
#include "mmm/train.h"

#include "fixture.h"

TEST(train_chat_template_and_labels) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "chat: fixture (dataset, tokenizer, config)%s%s", f ? "" : ": ", f ? "" : mmm_last_error())) return;
    const char *turns[] = {"<image>\nWhat item is this?", "Sneaker", "And the group?", "footwear"};
    int tiles[1] = {1};
    mmm_sample s = {0};
    int rc = mmm_chat_tokenize(&s, f->tok, &f->cfg, turns, 4, tiles, 1, "Be brief.", 0);
    if (!check(rc == MMM_OK, "chat: two-turn conversation with an image tokenises")) return;
    char *text = NULL;
    mmm_tokenizer_decode(f->tok, s.ids, s.n, 0, &text, NULL);
    const char *want = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<img>";
    check(text && !strncmp(text, want, strlen(want)), "chat: the internlm2-chat template with a system turn");
    int ctx = 0;
    for (int i = 0; i < s.n; i++) ctx += s.ids[i] == f->cfg.img_context_id;
    check(ctx == mmm_config_tokens_per_tile(&f->cfg), "chat: one tile becomes %d <IMG_CONTEXT> tokens (the config's %d per tile)",
          ctx, mmm_config_tokens_per_tile(&f->cfg));
    check(text && strstr(text, "</img>\nWhat item is this?<|im_end|>\n<|im_start|>assistant\nSneaker<|im_end|>\n"
                         "<|im_start|>user\nAnd the group?<|im_end|>\n<|im_start|>assistant\nfootwear<|im_end|>\n"),
          "chat: turns in order with their closing tokens");
    /* labels: exactly the answer tokens and each answer's <|im_end|> */
    int32_t *ans1 = NULL, *ans2 = NULL;
    int n1 = 0, n2 = 0;
    mmm_tokenizer_encode(f->tok, "Sneaker", 7, 0, &ans1, &n1);
    mmm_tokenizer_encode(f->tok, "footwear", 8, 0, &ans2, &n2);
    int labelled = 0, end_labelled = 0;
    for (int t = 0; t < s.n; t++)
        if (s.labels[t] >= 0) {
            labelled++;
            end_labelled += s.labels[t] == f->cfg.im_end_id;
            if (s.labels[t] != s.ids[t + 1]) labelled = -1000;
        }
    check(labelled == n1 + n2 + 2 && end_labelled == 2, "chat: %d label tokens = both answers (%d + %d) and their <|im_end|>",
          labelled, n1, n2);
    char *prompt = NULL;
    mmm_tokenizer_decode(f->tok, s.ids, s.prompt_len, 0, &prompt, NULL);
    size_t pl = prompt ? strlen(prompt) : 0;
    check(pl > 10 && !strcmp(prompt + pl - 10, "assistant\n") && s.labels[s.prompt_len - 1] == s.ids[s.prompt_len],
          "chat: the prompt ends with the last 'assistant\\n'; its last position predicts the answer");
    free(prompt);
    free(ans1); free(ans2); free(text);
    mmm_sample_free(&s);
    const char *bad[] = {"<image><image>\nTwo?", "No"};
    rc = mmm_chat_tokenize(&s, f->tok, &f->cfg, bad, 2, tiles, 1, NULL, 0);
    check(rc == MMM_ERR_ARG && strstr(mmm_last_error(), "more <image> markers than images"), "chat: more markers than images refused");
}

TEST(train_dataset_loading_and_bad_lines) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "dataset: fixture")) return;
    char path[128], bad[160];
    snprintf(path, sizeof path, "%s/train.jsonl", f->dir);
    mmm_data_options opt = {.max_tokens = 4096};
    mmm_dataset d;
    int rc = mmm_dataset_load(&d, path, f->tok, &f->cfg, &opt);
    check(rc == MMM_OK && d.n == 240 && d.n_skipped == 0, "dataset: %d samples from train.jsonl", rc ? 0 : d.n);
    int grid_tiles = 0, count_images = 0, longest = 0;
    for (int i = 0; i < d.n && !rc; i++) {
        if (d.samples[i].n > longest) longest = d.samples[i].n;
        if (!strcmp(d.samples[i].task, "grid")) grid_tiles = d.samples[i].n_tiles;
        if (!strcmp(d.samples[i].task, "count")) count_images = d.samples[i].n_images;
    }
    check(grid_tiles == 5, "dataset: a 56x56 grid image is 2x2 tiles + thumbnail (%d tiles)", grid_tiles);
    check(count_images >= 3, "dataset: count samples carry several images (%d)", count_images);

    /* batches: the budget holds, every sample once per epoch, the order depends on the seed only */
    int *order = malloc((size_t)d.n * sizeof *order), *seen = calloc((size_t)d.n, sizeof *seen), *order2 = malloc((size_t)d.n * sizeof *order2);
    mmm_epoch_order(order, d.n, 5, 0);
    mmm_epoch_order(order2, d.n, 5, 0);
    check(!memcmp(order, order2, (size_t)d.n * sizeof *order), "batch: epoch order is deterministic");
    mmm_epoch_order(order2, d.n, 5, 1);
    check(memcmp(order, order2, (size_t)d.n * sizeof *order), "batch: the next epoch is another order");
    int pos = 0, budget_ok = 1, batches = 0, tiles_ok = 1;
    while (pos < d.n) {
        mmm_batch b;
        if (mmm_batch_make(&b, &d, order, d.n, &pos, 600, &f->cfg)) { budget_ok = 0; break; }
        budget_ok &= (long)b.B * b.T <= 600 || b.B == 1;
        int want_tiles = 0;
        for (int i = 0; i < b.B; i++) { seen[b.members[i]]++; want_tiles += d.samples[b.members[i]].n_tiles; }
        tiles_ok &= want_tiles == b.n_tiles;
        batches++;
        mmm_batch_free(&b);
    }
    int once = 1;
    for (int i = 0; i < d.n; i++) once &= seen[i] == 1;
    check(budget_ok && once && tiles_ok, "batch: %d batches within 600 tokens cover every sample once with its tiles", batches);

    /* mirroring: single-tile images only, each either untouched or exactly mirrored, the draw a
     * function of the key alone, both outcomes for p = 0.5 */
    {
        pos = 0;
        mmm_batch b, a1, a2;
        int rc_b = mmm_batch_make(&b, &d, order, d.n, &pos, 4000, &f->cfg);
        pos = 0;
        rc_b |= mmm_batch_make(&a1, &d, order, d.n, &pos, 4000, &f->cfg);
        pos = 0;
        rc_b |= mmm_batch_make(&a2, &d, order, d.n, &pos, 4000, &f->cfg);
        if (check(rc_b == MMM_OK && b.n_tiles > 0, "hflip: batch of %d tiles", rc_b ? 0 : b.n_tiles)) {
            mmm_batch_hflip(&a1, &d, &f->cfg, 0.5f, 7);
            mmm_batch_hflip(&a2, &d, &f->cfg, 0.5f, 7);
            int S = f->cfg.tile_size, mirrored = 0, kept = 0, wrong = 0, t = 0;
            size_t tile = (size_t)3 * S * S;
            for (int i = 0; i < b.B; i++) {
                const mmm_sample *s = &d.samples[b.members[i]];
                for (int k = 0; k < s->n_images; t += s->tiles[k], k++) {
                    const float *o = b.pixels + t * tile, *m = a1.pixels + t * tile;
                    int same = !memcmp(o, m, s->tiles[k] * tile * sizeof *o), flipped = s->tiles[k] == 1;
                    for (size_t r = 0; r < 3 * (size_t)S && flipped; r++)
                        for (int x = 0; x < S; x++) flipped &= m[r * S + x] == o[r * S + S - 1 - x];
                    mirrored += flipped && !same;
                    kept += same;
                    wrong += !same && !flipped;
                }
            }
            check(mirrored > 0 && kept > 0 && wrong == 0, "hflip: %d images mirrored, %d kept, %d otherwise changed", mirrored, kept, wrong);
            check(!memcmp(a1.pixels, a2.pixels, b.n_tiles * tile * sizeof *b.pixels), "hflip: the same key mirrors the same images");
        }
        mmm_batch_free(&b);
        mmm_batch_free(&a1);
        mmm_batch_free(&a2);
    }

    /* the epoch plan: a permutation cut into budget batches inside windows, whole batches shuffled */
    int window = 32, *end = malloc((size_t)d.n * sizeof *end), *end2 = malloc((size_t)d.n * sizeof *end2);
    mmm_epoch_order(order, d.n, 5, 0);
    memcpy(order2, order, (size_t)d.n * sizeof *order);
    check(mmm_batch_plan(order, end, d.n, &d, window, 600, 5, 0) == MMM_OK &&
          mmm_batch_plan(order2, end2, d.n, &d, window, 600, 5, 0) == MMM_OK &&
          !memcmp(order, order2, (size_t)d.n * sizeof *order) && !memcmp(end, end2, (size_t)d.n * sizeof *end),
          "batch plan: deterministic");
    memset(seen, 0, (size_t)d.n * sizeof *seen);
    int plan_ok = 1, descents = 0, n_batches = 0, prev_len = -1;
    for (pos = 0; pos < d.n && plan_ok;) {
        int at = pos, lo = 1 << 30, hi = 0;
        plan_ok &= end[pos] > pos && end[pos] <= d.n && (pos / window) == ((end[pos] - 1) / window);
        for (int i = pos; i < end[pos]; i++) {
            plan_ok &= end[i] == end[pos];
            int len = d.samples[order[i]].n;
            lo = len < lo ? len : lo;
            hi = len > hi ? len : hi;
        }
        mmm_batch b;
        int skipped = at; /* skipping a batch (another rank's) moves the position as making it does */
        plan_ok &= mmm_batch_skip(&d, order, end[at], &skipped, 600) == MMM_OK;
        if (mmm_batch_make(&b, &d, order, end[at], &pos, 600, &f->cfg)) { plan_ok = 0; break; }
        plan_ok &= pos == end[at] && skipped == pos && ((long)b.B * b.T <= 600 || b.B == 1); /* the planned batch */
        for (int i = 0; i < b.B; i++) seen[b.members[i]]++;
        if (at % window && lo < prev_len) descents++; /* a shorter batch after a longer one in a window */
        prev_len = hi;
        n_batches++;
        mmm_batch_free(&b);
    }
    once = 1;
    for (int i = 0; i < d.n; i++) once &= seen[i] == 1;
    check(plan_ok && once, "batch plan: %d planned batches within windows of %d cover every sample once (skipping "
          "one moves as far as making it)", n_batches, window);
    check(mmm_batch_skip(&d, order, d.n, &pos, 600) == MMM_ERR_ARG, "batch skip: nothing left is an error");
    check(descents > 0, "batch plan: batches of a window come shuffled, not shortest first (%d descents)", descents);
    free(end); free(end2);
    free(order); free(order2); free(seen);
    mmm_dataset_free(&d);

    /* bad lines are skipped and reported, or fatal under strict */
    snprintf(bad, sizeof bad, "%s/bad.jsonl", f->dir);
    FILE *fp = fopen(bad, "w");
    fprintf(fp, "{\"id\": 1, \"conversations\": [{\"from\": \"human\", \"value\": \"Hi\"}, {\"from\": \"gpt\", \"value\": \"Yes\"}]}\n");
    fprintf(fp, "{not json\n");
    fprintf(fp, "{\"image\": \"nope.png\", \"conversations\": [{\"from\": \"human\", \"value\": \"<image>x\"}, {\"from\": \"gpt\", \"value\": \"No\"}]}\n");
    fprintf(fp, "{\"conversations\": [{\"from\": \"gpt\", \"value\": \"x\"}, {\"from\": \"human\", \"value\": \"y\"}]}\n");
    char *img = realpath("tests/data/images/fmnist_28.png", NULL);
    fprintf(fp, "{\"image\": \"%s\", \"conversations\": [{\"from\": \"human\", \"value\": \"no marker\"}, {\"from\": \"gpt\", \"value\": \"No\"}]}\n", img);
    free(img);
    fprintf(fp, "\n[1, 2]\n");
    fclose(fp);
    rc = mmm_dataset_load(&d, bad, f->tok, &f->cfg, &opt);
    check(rc == MMM_OK && d.n == 1 && d.n_skipped == 5 && strstr(d.skipped_report, "line 2: not valid JSON") &&
          strstr(d.skipped_report, "line 3: ") && strstr(d.skipped_report, "nope.png") && strstr(d.skipped_report, "line 4: turn 0") &&
          strstr(d.skipped_report, "line 5: the conversation has 0 <image> markers but 1 images"),
          "dataset: 5 bad lines skipped and reported (%s)", rc ? mmm_last_error() : d.skipped_report);
    if (!rc) mmm_dataset_free(&d);
    opt.strict = 1;
    rc = mmm_dataset_load(&d, bad, f->tok, &f->cfg, &opt);
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "bad.jsonl:2: not valid JSON"),
          "dataset: --strict stops at the first bad line (%s)", mmm_last_error());
    opt.strict = 0;
    opt.max_tokens = longest - 1; /* the longest sample goes */
    char limit[64];
    snprintf(limit, sizeof limit, "more than the limit of %d", longest - 1);
    rc = mmm_dataset_load(&d, path, f->tok, &f->cfg, &opt);
    check(rc == MMM_OK && d.n_skipped > 0 && strstr(d.skipped_report, limit),
          "dataset: samples over --max-tokens are dropped and counted (%d)", rc ? 0 : d.n_skipped);
    if (!rc) mmm_dataset_free(&d);
}

typedef struct {
    mmm_ce_train ce;
    int fail_at_call, calls;
} ce_ctx;

/* mmm_ce_step, with a simulated crash at call fail_at_call */
static int ce_step(void *ctx, const mmm_model *m, const mmm_batch *b, float *grads, double *ls, long *lt) {
    ce_ctx *c = ctx;
    if (c->fail_at_call && ++c->calls == c->fail_at_call) return mmm_fail(MMM_ERR_IO, "simulated crash");
    return mmm_ce_step(&c->ce, m, b, grads, ls, lt);
}

static int run(fixture *f, const char *out, long steps, int fail_at, int workers, mmm_model **model,
               mmm_train_result *res) {
    char path[128];
    snprintf(path, sizeof path, "%s/train.jsonl", f->dir);
    mmm_data_options opt = {.max_tokens = 4096};
    mmm_dataset d;
    int rc = mmm_dataset_load(&d, path, f->tok, &f->cfg, &opt);
    if (rc) return rc;
    mmm_model *m = NULL;
    rc = mmm_model_create(&m, &f->cfg);
    if (rc) { mmm_dataset_free(&d); return rc; }
    mmm_model_init_random(m, 3, 0.05f);
    mmm_train_range *tr = calloc((size_t)m->n_params, sizeof *tr);
    for (int i = 0; i < m->n_params; i++) tr[i] = (mmm_train_range){0, m->params[i].numel};
    mmm_train_options o = {.out_dir = out, .name = "train", .steps = steps, .accum = 2, .workers = workers, .batch_tokens = 1200,
                           .clip = 1.0f, .sched = {MMM_SCHED_WSD, 3e-3f, 0.1f, 0.1f, 0, steps},
                           .adam = {3e-3f, 0.9f, 0.999f, 1e-8f, 0.05f}, .save_every = 5, .log_every = 1000,
                           .seed = 9, .keep_checkpoints = 2, .quiet = 1};
    ce_ctx c[2] = {{{0}, fail_at, 0}, {{0}, fail_at, 0}};
    void *ctx[2] = {&c[0], &c[1]};
    rc = mmm_train_run(m, tr, &d, &o, ce_step, ctx, NULL, NULL, res);
    for (int w = 0; w < 2; w++) mmm_ce_train_free(&c[w].ce);
    free(tr);
    mmm_dataset_free(&d);
    if (model) *model = m;
    else mmm_model_free(m);
    return rc;
}

/* losses of steps in [from, to] from a training log */
static int log_losses(const char *out, double *loss, int from, int to) {
    char path[160], *text = NULL;
    snprintf(path, sizeof path, "%s/train_log.jsonl", out);
    if (mmm_read_text_file(path, 1 << 24, &text, NULL)) return 0;
    int got = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step"), *l = cJSON_GetObjectItemCaseSensitive(j, "loss");
        if (cJSON_IsNumber(s) && cJSON_IsNumber(l) && s->valuedouble >= from && s->valuedouble <= to) {
            loss[(int)s->valuedouble - from] = l->valuedouble;
            got++;
        }
        cJSON_Delete(j);
    }
    free(text);
    return got;
}

TEST(train_loss_falls_and_resume_is_exact) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "train: fixture")) return;
    char a[96], b[96];
    snprintf(a, sizeof a, "%s/run_a", f->dir);
    snprintf(b, sizeof b, "%s/run_b", f->dir);
    mmm_model *ma = NULL, *mb = NULL;
    mmm_train_result ra, rb;
    int rc = run(f, a, 40, 0, 1, &ma, &ra);
    check(rc == MMM_OK, "train: 40 steps run%s%s", rc ? ": " : "", rc ? mmm_last_error() : "");
    double la[40] = {0};
    int n = log_losses(a, la, 1, 40);
    double first = (la[0] + la[1] + la[2]) / 3, last = (la[37] + la[38] + la[39]) / 3;
    check(n == 40 && last < 0.5 * first, "train: loss falls from %.3f (steps 1-3) to %.3f (steps 38-40)", first, last);

    /* interrupted run: a simulated crash during step 13 (after the step-10 checkpoint), then a rerun */
    rc = run(f, b, 40, 2 * 12 + 1, 1, NULL, &rb);
    check(rc == MMM_ERR_IO, "train: the simulated crash stops the run");
    char latest[160], *name = NULL;
    snprintf(latest, sizeof latest, "%s/checkpoints/latest", b);
    mmm_read_text_file(latest, 100, &name, NULL);
    check(name && !strncmp(name, "step-0000010", 12), "train: the latest complete checkpoint is step 10");
    free(name);
    rc = run(f, b, 40, 0, 1, &mb, &rb);
    check(rc == MMM_OK && rb.resumed, "train: the rerun resumes from the checkpoint");
    double lb[30] = {0};
    int nb = log_losses(b, lb, 11, 40), same = nb == 30;
    for (int i = 0; i < 30 && same; i++) same = lb[i] == la[10 + i];
    check(same, "train: steps 11-40 after resume have exactly the uninterrupted run's losses");
    check(ma && mb && !memcmp(ma->data, mb->data, ma->n_floats * sizeof *ma->data),
          "train: final weights equal the uninterrupted run's");
    mmm_model_free(mb);

    /* two workers compute the step's two micro-batches at once, each op on one thread: the same
     * training up to float rounding (OpenBLAS sums in another order on one thread than on two) */
    char c2[96];
    snprintf(c2, sizeof c2, "%s/run_c", f->dir);
    mmm_model *mc = NULL;
    rc = run(f, c2, 40, 0, 2, &mc, &rb);
    double lc[40] = {0}, loss_diff = 0, weight_diff = 0;
    int nc = log_losses(c2, lc, 1, 40);
    for (int i = 0; i < 40; i++) loss_diff = fmax(loss_diff, fabs(lc[i] - la[i]) / fmax(fabs(la[i]), 1e-6));
    for (size_t i = 0; mc && i < ma->n_floats; i++) weight_diff = fmax(weight_diff, fabs((double)mc->data[i] - ma->data[i]));
    check(rc == MMM_OK && nc == 40 && loss_diff < 1e-3 && weight_diff < 1e-3,
          "train: 2 workers track the 1-worker run (losses within %.1e relative, weights within %.1e)%s%s", loss_diff,
          weight_diff, rc ? ": " : "", rc ? mmm_last_error() : "");
    mmm_model_free(ma);
    mmm_model_free(mc);
}

TEST(train_refuses_a_directory_another_run_is_training_into) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "train lock: fixture")) return;
    char out[96], lock[128];
    snprintf(out, sizeof out, "%s/run_locked", f->dir);
    mkdir(out, 0755);
    snprintf(lock, sizeof lock, "%s/checkpoints", out);
    mkdir(lock, 0755);
    snprintf(lock, sizeof lock, "%s/checkpoints/lock", out);
    int fd = open(lock, O_RDWR | O_CREAT, 0644); /* a second open file description: as another process */
    check(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0 && pwrite(fd, "4242\n", 5, 0) == 5, "train lock: held by the test");
    mmm_train_result res;
    int rc = run(f, out, 3, 0, 1, NULL, &res);
    check(rc == MMM_ERR_ARG && strstr(mmm_last_error(), "another run (pid 4242) is training into this directory"),
          "train lock: a second run is refused: %s", mmm_last_error());
    close(fd); /* released: the run goes ahead */
    rc = run(f, out, 3, 0, 1, NULL, &res);
    check(rc == MMM_OK, "train lock: runs once the lock is free%s%s", rc ? ": " : "", rc ? mmm_last_error() : "");
}
