/* mmm's Fashion-MNIST question answering dataset (docs/design.md §5): plans the samples of each split,
 * writes the images they use, then the JSONL files and the tokenizer corpus (images first, so
 * that a JSONL file never names a missing image). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fmnist_internal.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/path.h"

#define MAX_SAMPLES 10000000L
#define MAX_LONG_IMAGES 100000
#define MAX_LONG_POOL 100000000L /* n_long × long_images, image indices held in memory */

static const char *const task_names[MMM_FMNIST_N_TASKS] = {"name", "yesno", "group", "grid", "which", "count"};
static const char *const split_names[3] = {"train", "test", "test_long"};

const char *mmm_fmnist_task_name(int task) {
    return task >= 0 && task < MMM_FMNIST_N_TASKS ? task_names[task] : "?";
}

void mmm_fmnist_default_options(mmm_fmnist_options *o) {
    memset(o, 0, sizeof *o);
    o->source_dir = MMM_FMNIST_SOURCE_DIR;
    o->n_train = 60000;
    o->n_test = 2000;
    o->long_images = 256;
    const double mix[MMM_FMNIST_N_TASKS] = {50, 15, 10, 10, 10, 5};
    memcpy(o->mix, mix, sizeof mix);
}

static int check_options(const mmm_fmnist_options *o) {
    if (!o->out_dir || !*o->out_dir) return mmm_fail(MMM_ERR_ARG, "fashion-mnist: no output directory given");
    if (!o->source_dir) return mmm_fail(MMM_ERR_ARG, "fashion-mnist: no source directory given");
    if (o->n_train < 0 || o->n_train > MAX_SAMPLES || o->n_test < 0 || o->n_test > MAX_SAMPLES || o->n_long < 0 ||
        o->n_long > MAX_SAMPLES)
        return mmm_fail(MMM_ERR_ARG, "fashion-mnist: sample counts must be 0 to %ld (train %ld, test %ld, long %ld)",
                        MAX_SAMPLES, o->n_train, o->n_test, o->n_long);
    if (o->n_long && (o->long_images < 1 || o->long_images > MAX_LONG_IMAGES || o->n_long * o->long_images > MAX_LONG_POOL))
        return mmm_fail(MMM_ERR_ARG, "fashion-mnist: %d images per long question (1 to %d, and at most %ld images "
                        "over all %ld long questions)", o->long_images, MAX_LONG_IMAGES, MAX_LONG_POOL, o->n_long);
    double total = 0;
    for (int t = 0; t < MMM_FMNIST_N_TASKS; t++) {
        if (!(o->mix[t] >= 0) || !isfinite(o->mix[t]))
            return mmm_fail(MMM_ERR_ARG, "fashion-mnist: the mix weight of task '%s' is %g (weights are >= 0)",
                            task_names[t], o->mix[t]);
        total += o->mix[t];
    }
    if (!(total > 0)) return mmm_fail(MMM_ERR_ARG, "fashion-mnist: the task mix is all zero");
    return MMM_OK;
}

/* Each task's share of n samples, rounded down; the name task takes what rounding leaves. */
static void task_counts(long counts[MMM_FMNIST_N_TASKS], long n, const double mix[MMM_FMNIST_N_TASKS]) {
    double total = 0;
    for (int t = 0; t < MMM_FMNIST_N_TASKS; t++) total += mix[t];
    long rest = n;
    for (int t = 1; t < MMM_FMNIST_N_TASKS; t++) rest -= counts[t] = (long)floor((double)n * mix[t] / total);
    counts[MMM_FMNIST_NAME] = rest;
}

/* mkdir -p */
static int make_dirs(const char *path) {
    char *p = strdup(path);
    if (!p) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    int rc = MMM_OK;
    for (char *s = p + 1;; s++) {
        if (*s && *s != '/') continue;
        char end = *s;
        *s = '\0';
        struct stat st;
        if (mkdir(p, 0777) != 0 && !(errno == EEXIST && stat(p, &st) == 0 && S_ISDIR(st.st_mode))) {
            rc = mmm_fail(MMM_ERR_IO, "%s: cannot create the directory: %s", p,
                          errno == EEXIST ? "a file of that name exists" : strerror(errno));
            break;
        }
        *s = end;
        if (!end) break;
    }
    free(p);
    return rc;
}

static char *sub_path(const char *dir, const char *name, int *rc) {
    char *p = mmm_path_join(dir, name);
    if (!p) *rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", dir);
    return p;
}

/* The images the plans use: each used source image once (in index order), then the grids. */
static int list_images(fm_image_job **out, long *n_out, const fm_plan plans[2], const mmm_fmnist_split splits[2],
                       const fm_plan *long_plan, mmm_fmnist_stats *st) {
    long cap = 0;
    for (int s = 0; s < 2; s++) cap += splits[s].n + plans[s].n;
    fm_image_job *jobs = malloc((size_t)cap * sizeof *jobs);
    uint8_t *used = calloc((size_t)splits[0].n + splits[1].n, 1); /* bit 0: any sample, bit 1: a name sample */
    if (!jobs || !used) {
        free(jobs);
        free(used);
        return mmm_fail(MMM_ERR_NOMEM, "fashion-mnist: out of memory");
    }
    long n = 0;
    for (int s = 0; s < 2; s++) {
        uint8_t *u = used + (s ? splits[0].n : 0);
        for (int pass = 0; pass < 1 + (s == MMM_FMNIST_TEST); pass++) {
            const fm_plan *p = pass ? long_plan : &plans[s];
            for (long i = 0; i < p->n; i++) {
                const fm_sample *q = &p->samples[i];
                if (q->task == MMM_FMNIST_GRID) continue;
                for (int k = 0; k < q->n; k++) u[p->pool[q->first + k]] |= 1 | (q->task == MMM_FMNIST_NAME) << 1;
            }
        }
        st->name_covered[s] = 0;
        for (int i = 0; i < splits[s].n; i++) {
            st->name_covered[s] += u[i] >> 1;
            if (u[i]) jobs[n++] = (fm_image_job){(uint8_t)s, 0, i};
        }
        for (long i = 0; i < plans[s].n; i++)
            if (plans[s].samples[i].task == MMM_FMNIST_GRID) jobs[n++] = (fm_image_job){(uint8_t)s, 1, i};
    }
    free(used);
    *out = jobs;
    *n_out = n;
    return MMM_OK;
}

/* Adds item to array, or frees it; NULL when either is missing or the add fails. */
static cJSON *push(cJSON *array, cJSON *item) {
    if (array && item && cJSON_AddItemToArray(array, item)) return item;
    cJSON_Delete(item);
    return NULL;
}

static cJSON *turn(cJSON *conv, const char *from, const char *value) {
    cJSON *t = push(conv, cJSON_CreateObject());
    return t && cJSON_AddStringToObject(t, "from", from) && cJSON_AddStringToObject(t, "value", value) ? t : NULL;
}

static int json_record(FILE *fp, const char *id, const fm_sample *q, const int32_t *images, const uint8_t *labels,
                       int split, long sample, uint64_t *bytes) {
    char path[64], answer[FM_ANSWER_MAX];
    char *question = fm_question(q);
    fm_answer(answer, q, images, labels);
    cJSON *r = cJSON_CreateObject();
    int ok = question && cJSON_AddStringToObject(r, "id", id) && cJSON_AddStringToObject(r, "task", task_names[q->task]);
    if (q->task == MMM_FMNIST_GRID || q->n == 1) {
        fm_image_job job = {(uint8_t)split, q->task == MMM_FMNIST_GRID, q->task == MMM_FMNIST_GRID ? sample : images[0]};
        fm_image_path(path, sizeof path, &job);
        ok = ok && cJSON_AddStringToObject(r, "image", path);
    } else {
        cJSON *list = cJSON_AddArrayToObject(r, "image");
        for (int k = 0; k < q->n && ok; k++) {
            fm_image_job job = {(uint8_t)split, 0, images[k]};
            fm_image_path(path, sizeof path, &job);
            ok = push(list, cJSON_CreateString(path)) != NULL;
        }
    }
    cJSON *conv = cJSON_AddArrayToObject(r, "conversations");
    ok = ok && turn(conv, "human", question) && turn(conv, "gpt", answer);
    char *line = ok ? cJSON_PrintUnformatted(r) : NULL;
    int rc = MMM_OK;
    if (!line) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", id);
    else if (fputs(line, fp) == EOF || fputc('\n', fp) == EOF) rc = mmm_fail(MMM_ERR_IO, "%s: write failed", id);
    else *bytes += strlen(line) + 1;
    free(line);
    free(question);
    cJSON_Delete(r);
    return rc;
}

/* kind: 0 train, 1 test, 2 test_long (over test images). */
static int write_jsonl(const char *out_dir, int kind, const fm_plan *p, const mmm_fmnist_split *s, uint64_t *bytes) {
    char name[32];
    snprintf(name, sizeof name, "%s.jsonl", split_names[kind]);
    int rc = MMM_OK;
    char *path = sub_path(out_dir, name, &rc), *tmp;
    FILE *fp;
    if (!path || (rc = mmm_atomic_open(path, &tmp, &fp))) {
        free(path);
        return rc;
    }
    uint64_t written = 0;
    for (long i = 0; i < p->n && !rc; i++) {
        char id[48];
        snprintf(id, sizeof id, "%s-%06ld", split_names[kind], i);
        rc = json_record(fp, id, &p->samples[i], p->pool + p->samples[i].first, s->labels,
                         kind ? MMM_FMNIST_TEST : MMM_FMNIST_TRAIN, i, &written);
        if (rc) mmm_fail_context(rc, "%s: ", path);
    }
    rc = mmm_atomic_finish(path, tmp, fp, rc);
    if (!rc) *bytes += written;
    free(path);
    return rc;
}

/* A text's lines with <image> removed and surrounding spaces trimmed, the empty ones dropped. */
static void corpus_lines(FILE *fp, const char *text, uint64_t *bytes) {
    while (*text) {
        const char *end = strchr(text, '\n');
        if (!end) end = text + strlen(text);
        char line[256];
        size_t n = 0;
        for (const char *c = text; c < end; c++) {
            if (!strncmp(c, "<image>", 7)) c += 6;
            else if (n < sizeof line - 1) line[n++] = *c;
        }
        size_t a = 0;
        while (a < n && line[a] == ' ') a++;
        while (n > a && line[n - 1] == ' ') n--;
        if (n > a) {
            fwrite(line + a, 1, n - a, fp);
            fputc('\n', fp);
            *bytes += n - a + 1;
        }
        text = *end ? end + 1 : end;
    }
}

static int write_corpus(const char *out_dir, const fm_plan plans[2], const mmm_fmnist_split splits[2], uint64_t *bytes) {
    int rc = MMM_OK;
    char *path = sub_path(out_dir, "corpus.txt", &rc), *tmp;
    FILE *fp;
    if (!path || (rc = mmm_atomic_open(path, &tmp, &fp))) {
        free(path);
        return rc;
    }
    uint64_t written = 0;
    for (int s = 0; s < 2 && !rc; s++)
        for (long i = 0; i < plans[s].n && !rc; i++) {
            const fm_sample *q = &plans[s].samples[i];
            char *question = fm_question(q), answer[FM_ANSWER_MAX];
            if (!question) {
                rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            fm_answer(answer, q, plans[s].pool + q->first, splits[s].labels);
            /* The chat template wraps every turn in these role names; in the corpus once per
             * sample, they become single tokens instead of byte pieces (8 tokens less a sample). */
            corpus_lines(fp, "user", &written);
            corpus_lines(fp, question, &written);
            corpus_lines(fp, "assistant", &written);
            corpus_lines(fp, answer, &written);
            free(question);
        }
    if (!rc && ferror(fp)) rc = mmm_fail(MMM_ERR_IO, "%s: write failed", tmp);
    rc = mmm_atomic_finish(path, tmp, fp, rc);
    if (!rc) *bytes += written;
    free(path);
    return rc;
}

/* Every task kind draws from every class. */
static int check_classes(const mmm_fmnist_split *s, const char *source_dir, const char *split) {
    int seen[MMM_FMNIST_CLASSES] = {0};
    for (int i = 0; i < s->n; i++) seen[s->labels[i]] = 1;
    for (int c = 0; c < MMM_FMNIST_CLASSES; c++)
        if (!seen[c])
            return mmm_fail(MMM_ERR_FORMAT, "%s: the %s split has no image of class %d (%s); every task kind needs "
                            "all ten classes", source_dir, split, c, mmm_fmnist_class_name(c));
    return MMM_OK;
}

static int make_out_dirs(const char *out_dir) {
    int rc = make_dirs(out_dir);
    const char *subs[] = {"images/train", "images/test"};
    for (int i = 0; i < 2 && !rc; i++) {
        char *p = sub_path(out_dir, subs[i], &rc);
        if (p) rc = make_dirs(p);
        free(p);
    }
    return rc;
}

int mmm_fmnist_generate(const mmm_fmnist_options *o, mmm_fmnist_stats *st) {
    memset(st, 0, sizeof *st);
    int rc = check_options(o);
    if (rc) return rc;
    mmm_fmnist_split splits[2] = {{0}};
    fm_plan plans[2] = {{0}}, long_plan = {0};
    fm_image_job *jobs = NULL;
    long n_jobs = 0;
    /* one stream per split, so the test questions do not change with --train */
    mmm_rng master = mmm_rng_seed(o->seed);
    mmm_rng rngs[3];
    for (int k = 0; k < 3; k++) rngs[k] = mmm_rng_seed(mmm_rng_next(&master));
    const long n[2] = {o->n_train, o->n_test};
    for (int s = 0; s < 2 && !rc; s++) {
        rc = mmm_fmnist_load(&splits[s], o->source_dir, (mmm_fmnist_split_id)s);
        st->split_images[s] = splits[s].n;
        task_counts(st->samples[s], n[s], o->mix);
        if (!rc) rc = check_classes(&splits[s], o->source_dir, split_names[s]);
        if (!rc) rc = fm_plan_split(&plans[s], &splits[s], st->samples[s], &rngs[s]);
    }
    if (!rc && o->n_long) {
        st->samples[2][MMM_FMNIST_COUNT] = o->n_long;
        rc = fm_plan_long(&long_plan, &splits[MMM_FMNIST_TEST], o->n_long, o->long_images, &rngs[2]);
    }
    if (!rc) rc = list_images(&jobs, &n_jobs, plans, splits, &long_plan, st);
    if (!rc) rc = make_out_dirs(o->out_dir);
    if (!rc) rc = fm_write_images(o->out_dir, jobs, n_jobs, splits, plans, o, &st->bytes_written);
    if (!rc) st->images_written = n_jobs;
    for (int s = 0; s < 2 && !rc; s++) rc = write_jsonl(o->out_dir, s, &plans[s], &splits[s], &st->bytes_written);
    if (!rc && o->n_long)
        rc = write_jsonl(o->out_dir, 2, &long_plan, &splits[MMM_FMNIST_TEST], &st->bytes_written);
    if (!rc) rc = write_corpus(o->out_dir, plans, splits, &st->bytes_written);
    free(jobs);
    fm_plan_free(&long_plan);
    for (int s = 0; s < 2; s++) {
        fm_plan_free(&plans[s]);
        mmm_fmnist_free(&splits[s]);
    }
    return rc;
}
