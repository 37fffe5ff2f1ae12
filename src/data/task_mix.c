/* Re-weighting a loaded dataset by its records' "task" (docs/datasets.md): InternVL's repeat_time
 * (dataset.c, load_meta_dataset), applied per task instead of per file. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dataset_internal.h"
#include "mmm/error.h"

#define MAX_MIX_TASKS 64
#define MAX_MIX_WEIGHT 1000 /* as a meta file's repeat_time */
#define MAX_MIX_SAMPLES (1 << 30)

typedef struct {
    char name[64];
    double weight;
    long n, keep; /* the task's samples before, and after */
} task_weight;

/* spec "name=0.3,grid=3" into w (at most MAX_MIX_TASKS), each name once */
static int parse(const char *spec, task_weight *w, int *n_out) {
    int n = 0;
    size_t len = strlen(spec);
    if (len && spec[len - 1] == ',') return mmm_fail(MMM_ERR_ARG, "task mix '%s': expected TASK=WEIGHT[,TASK=WEIGHT...]", spec);
    for (const char *p = spec; *p;) {
        const char *eq = strchr(p, '='), *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        if (!eq || eq > end || eq == p || (size_t)(eq - p) >= sizeof w->name)
            return mmm_fail(MMM_ERR_ARG, "task mix '%s': expected TASK=WEIGHT[,TASK=WEIGHT...]", spec);
        if (n == MAX_MIX_TASKS) return mmm_fail(MMM_ERR_ARG, "task mix '%s': more than %d tasks", spec, MAX_MIX_TASKS);
        memcpy(w[n].name, p, (size_t)(eq - p));
        w[n].name[eq - p] = '\0';
        char *num_end;
        w[n].weight = strtod(eq + 1, &num_end);
        if (num_end != end || eq + 1 == end || !isfinite(w[n].weight) || w[n].weight < 0 || w[n].weight > MAX_MIX_WEIGHT)
            return mmm_fail(MMM_ERR_ARG, "task mix: the weight of '%s' must be a number from 0 to %d", w[n].name,
                            MAX_MIX_WEIGHT);
        for (int i = 0; i < n; i++)
            if (!strcmp(w[i].name, w[n].name)) return mmm_fail(MMM_ERR_ARG, "task mix: '%s' is named twice", w[n].name);
        w[n].n = w[n].keep = 0;
        n++;
        p = *end ? end + 1 : end;
    }
    if (!n) return mmm_fail(MMM_ERR_ARG, "task mix: no task named");
    *n_out = n;
    return MMM_OK;
}

static int find(const task_weight *w, int n, const char *task) {
    for (int i = 0; i < n; i++)
        if (!strcmp(w[i].name, task)) return i;
    return -1;
}

/* The tasks present, for an error about a name that is not: "a, b, c" (the first 16). */
static void present_tasks(const mmm_dataset *d, char *out, size_t cap) {
    const char *names[16];
    int n = 0;
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < d->n && n < 16; i++) {
        int seen = 0;
        for (int j = 0; j < n && !seen; j++) seen = !strcmp(names[j], d->samples[i].task);
        if (seen) continue;
        names[n++] = d->samples[i].task;
        if (len < cap) len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? ", " : "", d->samples[i].task);
    }
}

/* Parses spec against d: w[], *n_w, which[i] (the weight of sample i, −1: none), *total samples
 * after. which is malloc'd. */
static int plan(const mmm_dataset *d, const char *spec, task_weight *w, int *n_w, int **which, long *total) {
    int rc = parse(spec, w, n_w);
    if (rc) return rc;
    int *wh = malloc((size_t)(d->n ? d->n : 1) * sizeof *wh);
    if (!wh) return mmm_fail(MMM_ERR_NOMEM, "task mix: out of memory");
    for (int i = 0; i < d->n; i++)
        if ((wh[i] = find(w, *n_w, d->samples[i].task)) >= 0) w[wh[i]].n++;
    long t_all = 0;
    for (int t = 0; t < *n_w; t++) {
        if (!w[t].n) {
            char tasks[256];
            present_tasks(d, tasks, sizeof tasks);
            free(wh);
            return mmm_fail(MMM_ERR_ARG, "task mix: no sample has the task '%s' (the data has: %s)", w[t].name,
                            tasks[0] ? tasks : "none");
        }
        w[t].keep = (long)((double)w[t].n * w[t].weight);
        t_all += w[t].keep;
    }
    for (int i = 0; i < d->n; i++) t_all += wh[i] < 0;
    if (t_all > MAX_MIX_SAMPLES) {
        free(wh);
        return mmm_fail(MMM_ERR_ARG, "task mix '%s' makes %ld samples, more than %d", spec, t_all, MAX_MIX_SAMPLES);
    }
    *which = wh;
    *total = t_all;
    return MMM_OK;
}

int mmm_dataset_check_task_mix(const mmm_dataset *d, const char *spec) {
    task_weight w[MAX_MIX_TASKS];
    int n_w = 0, *which = NULL;
    long total = 0;
    int rc = plan(d, spec, w, &n_w, &which, &total);
    free(which);
    return rc;
}

int mmm_dataset_mix_tasks(mmm_dataset *d, const char *spec) {
    task_weight w[MAX_MIX_TASKS];
    int n_w = 0, *which = NULL;
    long total = 0;
    int rc = plan(d, spec, w, &n_w, &which, &total);
    if (rc) return rc;
    mmm_sample *out = malloc((size_t)(total ? total : 1) * sizeof *out);
    if (!out) {
        free(which);
        return mmm_fail(MMM_ERR_NOMEM, "task mix: out of memory for %ld samples", total);
    }
    /* A task's k-th sample (in file order) appears keep / n times, once more while k < keep % n:
     * below weight 1 the task's first samples, above it whole copies and then a prefix. */
    long seen[MAX_MIX_TASKS] = {0}, m = 0;
    for (int i = 0; i < d->n; i++) {
        int t = which[i];
        long times = t < 0 ? 1 : w[t].keep / w[t].n + (seen[t]++ < w[t].keep % w[t].n);
        if (!times) {
            mmm_sample_free(&d->samples[i]);
            continue;
        }
        out[m++] = d->samples[i]; /* moved; the copies after it */
        for (long c = 1; c < times && !rc; c++)
            if (!(rc = data_sample_copy(&out[m], &d->samples[i]))) m++;
        if (rc) { /* the rest of the originals are freed with what was built */
            for (int j = i + 1; j < d->n; j++) mmm_sample_free(&d->samples[j]);
            break;
        }
    }
    free(which);
    free(d->samples);
    d->samples = out;
    d->n = (int)m;
    return rc;
}
