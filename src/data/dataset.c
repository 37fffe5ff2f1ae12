/* Conversation datasets: JSON Lines, LLaVA's JSON arrays and InternVL meta files over either,
 * read one record at a time (data_records.c) into tokenised samples (data_record.c). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset_internal.h"
#include "mmm/error.h"
#include "mmm/path.h"

#define PROGRESS_EVERY 1024   /* records between progress calls */
#define MAX_REPEAT_TIME 1000  /* a meta file's repeat_time beyond this is a typo, not a plan */
#define MAX_SAMPLES (1 << 30)

void mmm_sample_free(mmm_sample *s) {
    free(s->ids);
    free(s->labels);
    for (int i = 0; i < s->n_images; i++) free(s->images[i]);
    free(s->images);
    free(s->tiles);
    free(s->id);
    free(s->task);
    free(s->answer);
    memset(s, 0, sizeof *s);
}

void mmm_dataset_free(mmm_dataset *d) {
    for (int i = 0; i < d->n; i++) mmm_sample_free(&d->samples[i]);
    free(d->samples);
    memset(d, 0, sizeof *d);
}

typedef struct {
    mmm_dataset *d;
    int cap;
    long *record_of;      /* (cap) the record, within its file, each sample came from */
    const mmm_tokenizer *tok;
    const mmm_config *cfg;
    const mmm_data_options *opt;
    size_t limit;
    int meta;             /* records are reported as FILE:LINE (several files) rather than line N */
    long long done, total; /* bytes, for progress */
} loader;

static int grow(loader *L, int want) {
    if (want <= L->cap) return MMM_OK;
    if (want > MAX_SAMPLES) return mmm_fail(MMM_ERR_NOMEM, "more than %d samples", MAX_SAMPLES);
    int cap = L->cap ? L->cap : 1024;
    while (cap < want) cap = cap > MAX_SAMPLES / 2 ? MAX_SAMPLES : 2 * cap;
    mmm_sample *s = realloc(L->d->samples, (size_t)cap * sizeof *s);
    if (s) L->d->samples = s;
    long *r = s ? realloc(L->record_of, (size_t)cap * sizeof *r) : NULL;
    if (!r) return mmm_fail(MMM_ERR_NOMEM, "out of memory");
    L->record_of = r;
    L->cap = cap;
    return MMM_OK;
}

/* A bad record: an error under strict, otherwise counted and its reason noted. */
static int bad_record(loader *L, const char *path, long line) {
    char why[512];
    snprintf(why, sizeof why, "%s", mmm_last_error());
    if (L->opt->strict) return mmm_fail(MMM_ERR_FORMAT, "%s:%ld: %s", path, line, why);
    mmm_dataset *d = L->d;
    d->n_skipped++;
    size_t used = strlen(d->skipped_report);
    if (d->n_skipped <= 5 && used + 64 < sizeof d->skipped_report) {
        if (L->meta) snprintf(d->skipped_report + used, sizeof d->skipped_report - used, "%s%s:%ld: %s", used ? "; " : "", path, line, why);
        else snprintf(d->skipped_report + used, sizeof d->skipped_report - used, "%sline %ld: %s", used ? "; " : "", line, why);
    }
    return MMM_OK;
}

static void progress(loader *L, long long at) {
    if (L->opt->progress) L->opt->progress(L->opt->progress_ctx, L->done + at, L->total, L->d->n_records);
}

/* Reads the records of one JSONL or JSON-array file (at most max_records of them when >= 0)
 * into samples; *records: how many were read. */
static int load_file(loader *L, const char *path, data_kind kind, const char *image_dir, long max_records, long *records) {
    rec_reader r;
    int rc = rec_open(&r, path, kind, L->limit), k = 0;
    if (rc) return rc;
    mmm_dataset *d = L->d;
    char *text;
    size_t len;
    long line = 0;
    *records = 0;
    while (!rc && (max_records < 0 || *records < max_records) && (k = rec_next(&r, &text, &len, &line)) > 0) {
        long rec = (*records)++;
        d->n_records++;
        if (d->n_records % PROGRESS_EVERY == 0) progress(L, r.offset);
        if (k == REC_OK && !(rc = grow(L, d->n + 1))) {
            int p = data_parse_record(&d->samples[d->n], text, len, image_dir, L->tok, L->cfg, L->opt);
            if (p == MMM_ERR_NOMEM) rc = mmm_fail_context(p, "%s:%ld", path, line);
            if (rc) break;
            if (!p) {
                L->record_of[d->n++] = rec;
                if (!L->meta && d->n == L->opt->max_samples) break;
                continue;
            }
        }
        if (!rc) rc = bad_record(L, path, line);
    }
    if (!rc && k < 0) rc = k;
    L->done += r.offset;
    rec_close(&r);
    return rc;
}

/* Records of a file, counted without parsing them. */
static int count_records(loader *L, const char *path, data_kind kind, long *records) {
    rec_reader r;
    int rc = rec_open(&r, path, kind, L->limit), k;
    if (rc) return rc;
    char *text;
    size_t len;
    long line;
    *records = 0;
    while ((k = rec_next(&r, &text, &len, &line)) > 0) ++*records;
    rec_close(&r);
    return k < 0 ? k : MMM_OK;
}

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

/* dir/p, or p when it is absolute; malloc'd. */
static char *resolve(const char *dir, const char *p) {
    return p[0] == '/' ? strdup(p) : mmm_path_join(dir, p);
}

static char *dir_of(const char *path) {
    char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else if (dir) strcpy(dir, ".");
    return dir;
}

/* One dataset of a meta file, with InternVL's repeat_time as LazySupervisedDataset applies it
 * (internvl_chat/internvl/train/internvl_chat_finetune.py, see docs/datasets.md): of a file of
 * n records it takes the first int(n·repeat_time); below 1 that is a prefix, above 1 whole
 * copies. InternVL refuses a fractional repeat_time above 1; here it takes whole copies and
 * then the prefix for the fraction (1.5: every record once, the first half twice). */
static int load_meta_dataset(loader *L, const char *meta_path, const char *name, const char *ann, const char *root,
                             double repeat) {
    data_kind kind;
    void *nested = NULL;
    int rc = data_detect(ann, L->limit, &kind, &nested);
    if (!rc && kind == DATA_META) {
        cJSON_Delete(nested);
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: dataset \"%s\": its annotation %s is itself a meta file", meta_path, name, ann);
    }
    if (rc) return rc;
    mmm_dataset *d = L->d;
    int first = d->n;
    long records = 0;
    if (repeat < 1) {
        if (!(rc = count_records(L, ann, kind, &records)))
            rc = load_file(L, ann, kind, root, (long)((double)records * repeat), &records);
        return rc;
    }
    if ((rc = load_file(L, ann, kind, root, -1, &records)) || records == 0) return rc;
    long keep = (long)((double)records * repeat), copies = keep / records, rest = keep % records;
    int n = d->n - first, prefix = 0;
    while (prefix < n && L->record_of[first + prefix] < rest) prefix++;
    long extra = (copies - 1) * n + prefix;
    if ((long)d->n + extra > MAX_SAMPLES)
        return mmm_fail(MMM_ERR_ARG, "%s: dataset \"%s\": repeat_time %g makes more than %d samples", meta_path, name, repeat, MAX_SAMPLES);
    if ((rc = grow(L, d->n + (int)extra))) return rc;
    for (long i = 0; i < extra && !rc; i++) {
        int from = first + (int)(i % n);
        rc = data_sample_copy(&d->samples[d->n], &d->samples[from]);
        if (!rc) L->record_of[d->n++] = L->record_of[from];
    }
    return rc;
}

static int load_meta(loader *L, const char *path, cJSON *meta) {
    if (L->opt->image_root)
        return mmm_fail(MMM_ERR_ARG, "%s is an InternVL meta file, whose datasets name their own image folders "
                        "(\"root\"): an image root cannot be given as well", path);
    char *dir = dir_of(path);
    if (!dir) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    int rc = MMM_OK;
    for (const cJSON *m = meta->child; m && !rc; m = m->next) { /* sizes first, for progress */
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(m, "annotation");
        char *ann = cJSON_IsString(a) ? resolve(dir, a->valuestring) : NULL;
        if (ann) L->total += file_size(ann);
        free(ann);
    }
    for (const cJSON *m = meta->child; m && !rc; m = m->next) {
        const char *name = m->string;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(m, "annotation");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, "root");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "repeat_time");
        double repeat = cJSON_IsNumber(t) ? t->valuedouble : 1;
        if (!cJSON_IsObject(m) || !cJSON_IsString(a) || !a->valuestring[0])
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: dataset \"%s\" needs an \"annotation\" (the path of its JSONL file)", path, name);
        else if (r && !cJSON_IsString(r))
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: dataset \"%s\": \"root\" must be the path of its image folder", path, name);
        else if ((t && !cJSON_IsNumber(t)) || !isfinite(repeat) || repeat < 0 || repeat > MAX_REPEAT_TIME)
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: dataset \"%s\": \"repeat_time\" must be a number from 0 to %d", path, name, MAX_REPEAT_TIME);
        if (rc) break;
        /* relative paths are relative to the meta file, as a JSONL file's images are to it */
        char *ann = resolve(dir, a->valuestring);
        char *root = r && r->valuestring[0] ? resolve(dir, r->valuestring) : ann ? dir_of(ann) : NULL;
        rc = ann && root ? load_meta_dataset(L, path, name, ann, root, repeat) : mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
        free(ann);
        free(root);
    }
    free(dir);
    if (!rc && L->opt->max_samples > 0)
        while (L->d->n > L->opt->max_samples) mmm_sample_free(&L->d->samples[--L->d->n]);
    return rc;
}

int mmm_dataset_load(mmm_dataset *d, const char *path, const mmm_tokenizer *tok,
                     const mmm_config *cfg, const mmm_data_options *opt) {
    memset(d, 0, sizeof *d);
    loader L = {d, 0, NULL, tok, cfg, opt, opt->max_record_bytes ? opt->max_record_bytes : MMM_DATA_MAX_RECORD_BYTES, 0, 0, 0};
    data_kind kind;
    void *meta = NULL;
    int rc = data_detect(path, L.limit, &kind, &meta);
    if (!rc && kind == DATA_META) {
        L.meta = 1;
        rc = load_meta(&L, path, meta);
        cJSON_Delete(meta);
    } else if (!rc) {
        char *dir = opt->image_root ? strdup(opt->image_root) : dir_of(path);
        long records;
        L.total = file_size(path);
        rc = dir ? load_file(&L, path, kind, dir, -1, &records) : mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
        free(dir);
    }
    L.done = L.total;
    if (!rc) progress(&L, 0);
    free(L.record_of);
    if (!rc && d->n == 0)
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: no usable samples in %ld records%s%s%s", path, d->n_records,
                      d->n_skipped ? " (" : "", d->n_skipped ? d->skipped_report : "", d->n_skipped ? ")" : "");
    if (rc) mmm_dataset_free(d);
    return rc;
}
