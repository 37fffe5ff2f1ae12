/* A dataset re-weighted by its records' "task" (mmm_dataset_mix_tasks): InternVL's repeat_time
 * per task — below 1 the task's first samples, above 1 whole copies and then a prefix, tasks not
 * named untouched, every copy a deep copy — and every bad spec refused with the dataset intact. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/data.h"
#include "mmm/error.h"

/* tasks[i]'s sample carries ids {i, 100 + i} and id "s<i>" */
static void make(mmm_dataset *d, const char *const *tasks, int n) {
    memset(d, 0, sizeof *d);
    d->samples = calloc((size_t)n, sizeof *d->samples);
    d->n = n;
    for (int i = 0; i < n; i++) {
        mmm_sample *s = &d->samples[i];
        char id[16];
        snprintf(id, sizeof id, "s%d", i);
        s->n = 2;
        s->ids = malloc(2 * sizeof *s->ids);
        s->labels = malloc(2 * sizeof *s->labels);
        s->ids[0] = i, s->ids[1] = 100 + i, s->labels[0] = -1, s->labels[1] = 100 + i;
        s->id = strdup(id), s->task = strdup(tasks[i]), s->answer = strdup("a");
    }
}

/* The samples' ids[0] in order, as "0 0 1 ...". */
static void order(const mmm_dataset *d, char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < d->n && len < cap; i++) len += (size_t)snprintf(out + len, cap - len, "%s%d", i ? " " : "", d->samples[i].ids[0]);
}

static const char *const TASKS[] = {"name", "grid", "name", "yesno", "name", "grid", "name"};
enum { N = 7 };

/* TASKS mixed by spec: the order of samples must read want; returns the dataset (to free) */
static mmm_dataset mixed(const char *spec, const char *want) {
    mmm_dataset d;
    make(&d, TASKS, N);
    int rc = mmm_dataset_mix_tasks(&d, spec);
    char got[128];
    order(&d, got, sizeof got);
    check(rc == MMM_OK && !strcmp(got, want), "task mix %s: %s (want %s)", spec, got, want);
    return d;
}

TEST(task_mix_repeats_and_prefixes_per_task) {
    /* name: 4 samples × 0.5 = its first 2; grid: 2 × 2.5 = 5, the first 3 times and the second
     * twice; yesno untouched */
    mmm_dataset d = mixed("name=0.5,grid=2.5", "0 1 1 1 2 3 5 5");
    int deep = 1;
    for (int i = 1; i < d.n; i++)
        if (d.samples[i].ids == d.samples[i - 1].ids || d.samples[i].task == d.samples[i - 1].task) deep = 0;
    check(d.n == 8 && deep && !strcmp(d.samples[2].task, "grid") && d.samples[2].ids[1] == 101 &&
              !strcmp(d.samples[3].id, "s1"), "task mix: copies are whole, separate samples");
    mmm_dataset_free(&d);
}

TEST(task_mix_weight_zero_drops_a_task) {
    mmm_dataset d = mixed("name=0,yesno=1", "1 3 5");
    mmm_dataset_free(&d);
}

TEST(task_mix_bad_specs_refused_dataset_intact) {
    static const struct { const char *spec, *says; } bad[] = {
        {"name", "TASK=WEIGHT"}, {"=2", "TASK=WEIGHT"}, {"", "no task"}, {"name=x", "from 0 to 1000"},
        {"name=-1", "from 0 to 1000"}, {"name=1001", "from 0 to 1000"}, {"name=1,name=2", "named twice"},
        {"name=2,", "TASK=WEIGHT"}, {"count=2", "the data has: name, grid, yesno"}, {"name=nan", "from 0 to 1000"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mmm_dataset d;
        make(&d, TASKS, N);
        int checked = mmm_dataset_check_task_mix(&d, bad[i].spec);
        const char *msg = checked ? mmm_last_error() : "";
        int says = strstr(msg, bad[i].says) != NULL;
        int mixed = mmm_dataset_mix_tasks(&d, bad[i].spec);
        char got[128];
        order(&d, got, sizeof got);
        check(checked == MMM_ERR_ARG && mixed == MMM_ERR_ARG && says && !strcmp(got, "0 1 2 3 4 5 6"),
              "task mix '%s' refused (%s), the dataset unchanged", bad[i].spec, msg);
        mmm_dataset_free(&d);
    }
}
