/* Loading a dataset for train, eval and distill: a progress line while a large one loads, and
 * one line saying how many records were skipped and why. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "mmm/error.h"

typedef struct {
    const char *cmd, *path;
    double start, last;
    int tty, printed;
} load_progress;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Nothing for a load under a second; then a live line on a terminal (4 updates a second), or a
 * line every 10 s in a log; the ETA from the bytes read so far. */
static void on_progress(void *ctx, long long done, long long total, long records) {
    load_progress *p = ctx;
    double t = now_s(), el = t - p->start;
    int end = done >= total;
    if (end ? !p->printed : el < 1 || t - p->last < (p->tty ? 0.25 : 10)) return;
    p->last = t;
    p->printed = 1;
    char eta[32] = "";
    if (!end && done > 0 && total > done) snprintf(eta, sizeof eta, ", ETA %.0f s", el * (double)(total - done) / (double)done);
    fprintf(stderr, "%smmm %s: loading %s: %ld records, %.0f%%%s%s", p->tty ? "\r" : "", p->cmd, p->path, records,
            total > 0 ? 100.0 * (double)done / (double)total : 100.0, end ? ", done" : eta, p->tty && !end ? "\033[K" : "\n");
    fflush(stderr);
}

int cli_load_dataset(const char *cmd, mmm_dataset *d, const char *path, const mmm_tokenizer *tok,
                     const mmm_config *cfg, const mmm_data_options *opt) {
    load_progress p = {cmd, path, now_s(), 0, isatty(STDERR_FILENO), 0};
    mmm_data_options o = *opt;
    o.progress = on_progress;
    o.progress_ctx = &p;
    int rc = mmm_dataset_load(d, path, tok, cfg, &o);
    if (rc && p.printed && p.tty) fputc('\n', stderr);
    if (!rc && d->n_skipped)
        fprintf(stderr, "mmm %s: %s: skipped %d of %ld records (%s); --strict makes a bad record an error\n", cmd, path,
                d->n_skipped, d->n_records, d->skipped_report);
    return rc;
}
