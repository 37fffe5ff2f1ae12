/* The training loop: micro-batches, gradient accumulation, clipping, AdamW on the trainable
 * tensors, periodic evaluation and checkpoints, progress lines and a JSONL log. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mmm/comm.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/gpu.h"
#include "mmm/memory.h"
#include "mmm/plot.h"
#include "train_internal.h"

/* samples sorted by length together (mmm_batch_plan): large enough for batches of similar
 * lengths, small enough that every stretch of training still sees a mix of tasks */
#define BUCKET_WINDOW 1024

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fmt_duration(char *buf, size_t cap, double s) {
    if (s < 0 || !isfinite(s)) snprintf(buf, cap, "?");
    else if (s < 60) snprintf(buf, cap, "%.0fs", s);
    else if (s < 3600) snprintf(buf, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, cap, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

/* Keeps only the log lines of steps <= step (a resumed run rewrites what followed). */
static int trim_log(const char *path, long step) {
    char *text = NULL;
    size_t len;
    int rc = mmm_read_text_file(path, 1u << 30, &text, &len);
    if (rc == MMM_ERR_NOT_FOUND) return MMM_OK;
    if (rc) return rc;
    size_t keep = 0;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line + 1) : strlen(line);
        long s = -1;
        const char *p = strstr(line, "\"step\":");
        if (p) s = atol(p + 7);
        if (s >= 0 && s <= step) {
            memmove(text + keep, line, n);
            keep += n;
        }
        line += n;
    }
    rc = mmm_write_file_atomic(path, text, keep);
    free(text);
    return rc;
}

int mmm_train_run(mmm_model *m, const mmm_train_range *trainable, const mmm_dataset *data,
                  const mmm_train_options *o, mmm_step_fn step_fn, void *const *step_ctx, mmm_eval_fn eval,
                  void *eval_ctx, mmm_train_result *result) {
    if (o->steps < 1 || o->accum < 1 || o->batch_tokens < 1)
        return mmm_fail(MMM_ERR_ARG, "train: steps, accumulation and batch tokens must be positive");
    if (o->workers > MMM_TRAIN_MAX_WORKERS)
        return mmm_fail(MMM_ERR_ARG, "train: at most %d workers", MMM_TRAIN_MAX_WORKERS);
    if (result) memset(result, 0, sizeof *result);
    mmm_comm *comm = o->comm;
    int rank = mmm_comm_rank(comm), ranks = mmm_comm_size(comm), lead = rank == 0;
    if (ranks > 1 && m->gpu)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "train: %d ranks with the model on the GPU: GPUs training together "
                        "need NCCL, which mmm does not use yet; ranks train on CPUs", ranks);
    if (ranks > o->accum)
        return mmm_fail(MMM_ERR_ARG, "train: %d ranks share each step's %d micro-batches; give every rank at least "
                        "one (accumulation >= ranks)", ranks, o->accum);
    /* this rank's micro-batches of every step: a block, in rank order */
    int mine0 = (int)((long)o->accum * rank / ranks), mine1 = (int)((long)o->accum * (rank + 1) / ranks);
    int own = mine1 - mine0;
    /* a model on the GPU computes one micro-batch at a time */
    int workers = o->workers < 1 || m->gpu ? 1 : o->workers < own ? o->workers : own, made = 0;
    size_t n = m->n_floats;
    /* gradients, two AdamW moments and the workers' gradient copies, checked before allocating */
    int mrc = mmm_memory_check(n * (12 + 4 * (size_t)(own > 1 ? workers : 0)), "training %s in %s: gradients "
                               "and optimizer state of %zu parameters", o->name, o->out_dir, n);
    if (mrc) return mrc;
    float *grads = calloc(n, sizeof *grads), *adam_m = calloc(n, sizeof *adam_m), *adam_v = calloc(n, sizeof *adam_v);
    float *wgrads = own > 1 ? malloc((size_t)workers * n * sizeof *wgrads) : NULL;
    int *order = malloc(2 * (size_t)data->n * sizeof *order), *batch_end = order + data->n;
    mmm_batch batch[MMM_TRAIN_MAX_WORKERS];
    double wls[MMM_TRAIN_MAX_WORKERS];
    long wlt[MMM_TRAIN_MAX_WORKERS];
    int wrc[MMM_TRAIN_MAX_WORKERS];
    char werr[MMM_TRAIN_MAX_WORKERS * 512], *ckpt = NULL, *log_path = NULL;
    if (asprintf(&log_path, "%s/%s_log.jsonl", o->out_dir, o->name) < 0) log_path = NULL;
    if (!grads || !adam_m || !adam_v || !order || (own > 1 && !wgrads) || !log_path) {
        free(grads); free(adam_m); free(adam_v); free(wgrads); free(order); free(log_path);
        return mmm_fail(MMM_ERR_NOMEM, "train: cannot allocate gradients and optimizer state (%.1f MB)",
                        n * (12 + 4.0 * (own > 1 ? workers : 0)) * 1e-6);
    }
    int lock_fd = -1; /* ckpt_lock creates out_dir, or says why it cannot; rank 0 writes there */
    int rc = lead ? ckpt_lock(o->out_dir, &lock_fd) : MMM_OK;
    if (rc) {
        free(grads); free(adam_m); free(adam_v); free(wgrads); free(order); free(log_path);
        return rc;
    }
    /* a model on the GPU keeps its gradients, moments and weights there between checkpoints */
    mmm_gpu_optim *gopt = NULL;
    if (m->gpu && (rc = mmm_gpu_optim_new(m, trainable, &gopt))) goto done;
    trainer_state st = {0, 0, 0, o->seed, 0, 0, ""};
    snprintf(st.name, sizeof st.name, "%s", o->name);
    int resumed = 0;
    rc = ckpt_latest(o->out_dir, &ckpt);
    if (rc == MMM_OK) {
        /* the state first: nothing is loaded from a checkpoint of another run */
        ckpt_expect want = {o->name, o->steps, data->n, o->seed, o->run};
        int differs = 0;
        rc = ckpt_load_state(ckpt, &want, &st, &differs);
        if (rc && differs && o->force_resume) {
            if (!o->quiet && lead) printf("[%s] resuming anyway, as asked: %s\n", o->name, mmm_last_error());
            rc = MMM_OK;
        }
        if (rc && differs && result) result->run_differs = 1;
        if (rc || (rc = ckpt_load_weights(ckpt, m, adam_m, adam_v)) ||
            (gopt && ((rc = mmm_gpu_sync(m, NULL)) || (rc = mmm_gpu_optim_upload(gopt, adam_m, adam_v)))))
            goto done;
        resumed = 1;
        if (!o->quiet && lead) printf("[%s] resuming from %s (step %ld)\n", o->name, ckpt, st.step);
        if (lead && (rc = trim_log(log_path, st.step))) goto done;
    } else if (rc == MMM_ERR_NOT_FOUND) {
        rc = MMM_OK;
        if (lead) unlink(log_path);
    } else {
        goto done;
    }
    if (ranks > 1) { /* every rank continues from the same checkpoint, or none does */
        long at = st.step;
        if ((rc = mmm_comm_bcast(comm, &at, sizeof at))) goto done;
        if (at != st.step) {
            rc = mmm_fail(MMM_ERR_ARG, "train: rank %d would start at step %ld and rank 0 at %ld; the ranks need one "
                          "output directory that they all see (%s)", rank, st.step, at, o->out_dir);
            goto done;
        }
    }
    mmm_epoch_order(order, data->n, st.seed, st.epoch);
    if ((rc = mmm_batch_plan(order, batch_end, data->n, data, BUCKET_WINDOW, o->batch_tokens, st.seed, st.epoch))) goto done;

    FILE *log = lead ? fopen(log_path, "a") : NULL;
    if (lead && !log) { rc = mmm_fail(MMM_ERR_IO, "%s: cannot open the training log", log_path); goto done; }
    int quiet = o->quiet || !lead;
    int tty = isatty(fileno(stdout));
    double t_start = now(), t_window = t_start, loss_window = 0, last_loss = NAN;
    long tokens_window = 0, steps_window = 0;
    long start_step = st.step;
    while (st.step < o->steps && !rc) {
        if (gopt) rc = mmm_gpu_optim_zero(gopt);
        else memset(grads, 0, n * sizeof *grads);
        double loss_sum = 0;
        long loss_tokens = 0, batch_tokens = 0;
        /* micro-batches run `workers` at a time, each worker on one thread into its own gradient
         * buffer (the first into grads), summed in micro-batch order: deterministic for a given
         * number of workers. Single-threaded ops run without OpenMP barriers, which keeps small
         * models fast (and robust when other processes share the cores). The other ranks'
         * micro-batches are skipped, which moves the data position as theirs do. */
        for (int mb = 0; mb < o->accum && !rc;) {
            int theirs = mb < mine0 || mb >= mine1, nw = theirs ? 1 : mine1 - mb < workers ? mine1 - mb : workers;
            for (int w = 0; w < nw && !rc; w++) {
                if (st.position >= data->n) { /* next epoch */
                    st.epoch++;
                    st.position = 0;
                    mmm_epoch_order(order, data->n, st.seed, st.epoch);
                    rc = mmm_batch_plan(order, batch_end, data->n, data, BUCKET_WINDOW, o->batch_tokens, st.seed, st.epoch);
                }
                if (rc) break;
                if (theirs) { /* the flips depend on the sample, not on a draw: nothing else moves */
                    rc = mmm_batch_skip(data, order, batch_end[st.position], &st.position, o->batch_tokens);
                    break;
                }
                rc = mmm_batch_make(&batch[w], data, order, batch_end[st.position], &st.position, o->batch_tokens, &m->cfg);
                if (!rc) mmm_batch_hflip(&batch[w], data, &m->cfg, o->hflip, st.seed * 0xD1B54A32D192ED03ull + (uint64_t)st.epoch);
                made = w + 1;
            }
            if (!rc && !theirs) {
#pragma omp parallel for num_threads(nw) schedule(static, 1) if (nw > 1)
                for (int w = 0; w < nw; w++) {
                    float *g = gopt ? NULL : mb + w == mine0 ? grads : wgrads + (size_t)w * n;
                    if (g && g != grads) memset(g, 0, n * sizeof *g);
                    wls[w] = 0;
                    wlt[w] = 0;
                    wrc[w] = step_fn(step_ctx[w], m, &batch[w], g, &wls[w], &wlt[w]);
                    if (wrc[w]) snprintf(werr + (size_t)w * 512, 512, "%s", mmm_last_error()); /* errors are per thread */
                }
                for (int w = 0; w < nw && !rc; w++) {
                    if (wrc[w]) {
                        rc = mmm_fail(wrc[w], "%s", werr + (size_t)w * 512);
                        break;
                    }
                    if (mb + w > mine0 && !gopt) {
                        const float *g = wgrads + (size_t)w * n;
                        for (size_t i = 0; i < n; i++) grads[i] += g[i];
                    }
                    loss_sum += wls[w];
                    loss_tokens += wlt[w];
                    batch_tokens += (long)batch[w].B * batch[w].T;
                }
            }
            for (int w = 0; w < made; w++) mmm_batch_free(&batch[w]);
            made = 0;
            mb += nw;
        }
        if (!rc && ranks > 1) { /* the step's sums over every rank, the same bits on each */
            double sums[3] = {loss_sum, (double)loss_tokens, (double)batch_tokens};
            if (!(rc = mmm_comm_sum_f32(comm, grads, n)) && !(rc = mmm_comm_sum_f64(comm, sums, 3))) {
                loss_sum = sums[0];
                loss_tokens = (long)sums[1];
                batch_tokens = (long)sums[2];
            }
        }
        if (rc) break;
        /* the loss is a mean over the optimizer step's loss tokens */
        float scale = loss_tokens > 0 ? 1.0f / (float)loss_tokens : 0.0f, gnorm;
        float lr = mmm_lr_at(&o->sched, st.step);
        mmm_adamw_config adam = o->adam;
        adam.lr = lr;
        if (gopt) {
            if ((rc = mmm_gpu_optim_step(gopt, &adam, st.step + 1, scale, o->clip, &gnorm))) break;
        } else {
            /* frozen parts take no part in the norm */
            for (int i = 0; i < m->n_params; i++) {
                const mmm_param *p = &m->params[i];
                size_t b, e;
                mmm_train_range_clamp(trainable[i], p->numel, &b, &e);
                memset(grads + p->offset, 0, b * sizeof *grads);
                memset(grads + p->offset + e, 0, (p->numel - e) * sizeof *grads);
            }
            for (size_t i = 0; i < n; i++) grads[i] *= scale;
            gnorm = mmm_clip_grad_norm(grads, n, o->clip);
        }
        if (!isfinite(gnorm)) {
            rc = mmm_fail(MMM_ERR_ARG, "[%s] step %ld: the gradient is not finite (loss %g); lower the "
                          "learning rate", o->name, st.step + 1, loss_sum * scale);
            break;
        }
        for (int i = 0; i < m->n_params && !gopt; i++) {
            const mmm_param *p = &m->params[i];
            size_t b, e;
            mmm_train_range_clamp(trainable[i], p->numel, &b, &e);
            if (b == e) continue;
            size_t at = p->offset + b;
            mmm_adamw_step(m->data + at, grads + at, adam_m + at, adam_v + at, e - b, &adam,
                           (p->flags & MMM_PARAM_DECAY) != 0, st.step + 1);
        }
        st.step++;
        st.tokens += batch_tokens;
        last_loss = loss_tokens ? loss_sum / loss_tokens : NAN;
        loss_window += last_loss;
        tokens_window += batch_tokens;
        steps_window++;
        double t = now();
        if (log) {
            fprintf(log, "{\"step\": %ld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.4f, \"tokens\": %ld, \"seconds\": %.2f}\n",
                    st.step, last_loss, lr, gnorm, st.tokens, st.seconds + (t - t_start));
            fflush(log);
        }
        int last = st.step == o->steps;
        if (!quiet && (steps_window >= o->log_every || last || tty)) {
            double elapsed = t - t_start, rate = tokens_window / fmax(t - t_window, 1e-9);
            double eta = elapsed / (double)(st.step - start_step) * (o->steps - st.step);
            char el[32], et[32];
            fmt_duration(el, sizeof el, st.seconds + elapsed);
            fmt_duration(et, sizeof et, eta);
            printf("%s[%s] step %ld/%ld | loss %.4f | lr %.2e | gnorm %.2f | %.0f tok/s | %s elapsed, eta %s%s",
                   tty ? "\r" : "", o->name, st.step, o->steps, loss_window / steps_window, lr, gnorm, rate, el, et,
                   tty && !last ? "   " : "\n");
            fflush(stdout);
            if (!tty || last) { loss_window = 0; tokens_window = 0; steps_window = 0; t_window = t; }
        }
        if (lead && eval && o->eval_every > 0 && (st.step % o->eval_every == 0 || last)) {
            char metrics[1024] = "{}";
            if (tty && !quiet) printf("\n");
            if (gopt && (rc = mmm_gpu_optim_download(gopt, NULL, NULL))) break;
            if ((rc = eval(eval_ctx, m, st.step, metrics, sizeof metrics))) break;
            fprintf(log, "{\"step\": %ld, \"eval\": %s}\n", st.step, metrics);
            fflush(log);
        }
        if (lead && ((o->save_every > 0 && st.step % o->save_every == 0) || last)) {
            double t_save = now();
            trainer_state snap = st;
            snap.seconds += t_save - t_start;
            if (gopt && (rc = mmm_gpu_optim_download(gopt, adam_m, adam_v))) break;
            if ((rc = ckpt_save(o->out_dir, m, adam_m, adam_v, &snap, o->run, o->keep_checkpoints > 0 ? o->keep_checkpoints : 2)))
                break;
        }
    }
    if (log) fclose(log);
    if (result) {
        result->step = st.step;
        result->last_loss = last_loss;
        result->seconds = st.seconds + (now() - t_start);
        result->resumed = resumed;
    }
done:
    mmm_gpu_optim_free(gopt);
    if (lock_fd >= 0) close(lock_fd);
    free(grads); free(adam_m); free(adam_v); free(wgrads); free(order); free(log_path); free(ckpt);
    return rc;
}

int mmm_plot_log(const char *log_path, const char *png_path, const char *title, const char *const *keys, int n_keys) {
    char *text = NULL;
    int rc = mmm_read_text_file(log_path, 1u << 30, &text, NULL);
    if (rc) return rc;
    mmm_plot p;
    if ((rc = mmm_plot_begin(&p, png_path, 900, 500))) {
        free(text);
        return rc;
    }
    int rows = 0;
    /* a log line holds a few dozen values; one that would build a bigger tree is skipped unread */
    const mmm_json_limits line_caps = {.max_values = 4096};
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        void *parsed = NULL;
        cJSON *j = mmm_json_parse(line, strlen(line), &line_caps, log_path, &parsed) ? NULL : parsed;
        const cJSON *step = cJSON_GetObjectItemCaseSensitive(j, "step");
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "eval");
        const cJSON *src = cJSON_IsObject(ev) ? ev : j;
        if (cJSON_IsNumber(step)) {
            fprintf(p.dat, "%g", step->valuedouble);
            for (int k = 0; k < n_keys; k++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, keys[k]);
                fprintf(p.dat, " %s", cJSON_IsNumber(v) ? "" : "?");
                if (cJSON_IsNumber(v)) fprintf(p.dat, "%g", v->valuedouble);
            }
            fprintf(p.dat, "\n");
            rows++;
        }
        cJSON_Delete(j);
    }
    free(text);
    if (rows == 0) {
        mmm_plot_free(&p);
        return mmm_fail(MMM_ERR_FORMAT, "%s: no steps to plot", log_path);
    }
    fputs("set title ", p.gp);
    mmm_plot_string(p.gp, title);
    fputs("\nset datafile missing '?'\nset xlabel 'step'\nset grid\nset key top right\nplot ", p.gp);
    for (int k = 0; k < n_keys; k++) {
        fputs(k ? ", " : "", p.gp);
        mmm_plot_path(p.gp, p.dat_path);
        fprintf(p.gp, " using 1:%d with %s title ", k + 2, strstr(keys[k], "eval") || strstr(keys[k], "acc") ? "linespoints" : "lines");
        mmm_plot_string(p.gp, keys[k]);
    }
    fputs("\n", p.gp);
    return mmm_plot_finish(&p);
}
