/* Training checkpoints: out/checkpoints/step-NNNNNNN/ holds the model (config.json +
 * model.safetensors), the AdamW moments and trainer_state.json. A checkpoint directory is
 * complete before it gets its final name (written as .tmp, then renamed), and out/checkpoints/
 * latest names the newest complete one (rewritten atomically), so a kill at any moment leaves
 * the previous checkpoint intact. trainer_state.json also records what defines the run
 * (mmm_run_facts), so a resume with other inputs or settings is refused with what changed. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/path.h"
#include "mmm/safetensors.h"
#include "train_internal.h"

/* A malloc'd path from a format (NULL with the error set when out of memory): no path here has a
 * length limit but the operating system's, whose error names the path. */
static char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *pathf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = NULL;
    if (vasprintf(&p, fmt, ap) < 0) {
        p = NULL;
        mmm_fail(MMM_ERR_NOMEM, "out of memory");
    }
    va_end(ap);
    return p;
}

static int mkdir_p(const char *dir) {
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) return MMM_OK;
    /* a path too long for the OS is shown by its ends, so the one-line message keeps the reason */
    size_t len = strlen(dir);
    if (len > 1000)
        return mmm_fail(MMM_ERR_IO, "%.400s...%s (%zu characters): cannot create directory: %s", dir, dir + len - 400, len,
                        strerror(errno));
    return mmm_fail(MMM_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
}

static int remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? MMM_OK : mmm_fail(MMM_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = mmm_path_join(dir, e->d_name);
        if (p) unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
    return MMM_OK;
}

/* Whether a checkpoints/ entry is what a killed run left half-written: a directory being written
 * (step-N.tmp) or deleted (step-N.del.tmp), or a file being replaced atomically (NAME.tmp.PID). */
static int is_leftover(const char *name) {
    size_t len = strlen(name);
    if (len > 4 && !strcmp(name + len - 4, ".tmp")) return 1;
    const char *t = strstr(name, ".tmp.");
    if (!t || !t[5]) return 0;
    for (t += 5; *t; t++)
        if (*t < '0' || *t > '9') return 0;
    return 1;
}

static void remove_leftovers(const char *root) {
    DIR *d = opendir(root);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_leftover(e->d_name)) continue;
        char *p = mmm_path_join(root, e->d_name);
        struct stat st;
        if (p && lstat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode)) remove_tree(p);
            else unlink(p);
        }
        free(p);
    }
    closedir(d);
}

int ckpt_lock(const char *out_dir, int *fd) {
    *fd = -1;
    char *root = pathf("%s/checkpoints", out_dir), *path = pathf("%s/checkpoints/lock", out_dir);
    int rc = !root || !path ? MMM_ERR_NOMEM : mkdir_p(out_dir);
    if (!rc) rc = mkdir_p(root);
    if (!rc && (*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        rc = mmm_fail(MMM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!rc && flock(*fd, LOCK_EX | LOCK_NB) != 0) { /* the holder wrote its pid */
        char pid[32] = "";
        ssize_t got = pread(*fd, pid, sizeof pid - 1, 0);
        pid[got > 0 ? got : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(*fd);
        *fd = -1;
        rc = mmm_fail(MMM_ERR_ARG, "%s: another run (pid %s) is training into this directory; two at once "
                      "would overwrite each other's checkpoints", out_dir, pid[0] ? pid : "?");
    }
    if (!rc) {
        char pid[32];
        int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
        if (ftruncate(*fd, 0) != 0 || pwrite(*fd, pid, (size_t)len, 0) != len) { /* only informative */ }
        remove_leftovers(root); /* no other process writes here while we hold the lock */
    }
    free(root);
    free(path);
    return rc;
}

static cJSON *run_json(const mmm_run_facts *run) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; o && run && i < run->n; i++) cJSON_AddStringToObject(o, run->facts[i].key, run->facts[i].value);
    return o;
}

/* Writes the checkpoint into tmp (a fresh directory). */
static int write_checkpoint(const char *tmp, const mmm_model *m, const float *adam_m, const float *adam_v,
                            const trainer_state *st, const mmm_run_facts *run) {
    int rc = mkdir_p(tmp);
    if (rc || (rc = mmm_model_save(m, tmp, MMM_DTYPE_F32, 0))) return rc;
    mmm_st_writer *w = NULL;
    int64_t shape[1] = {(int64_t)m->n_floats};
    char *path = pathf("%s/optimizer.safetensors", tmp);
    rc = path ? mmm_st_writer_new(&w) : MMM_ERR_NOMEM;
    if (!rc) rc = mmm_st_writer_add(w, "adam.m", MMM_DTYPE_F32, 1, shape, adam_m);
    if (!rc) rc = mmm_st_writer_add(w, "adam.v", MMM_DTYPE_F32, 1, shape, adam_v);
    if (!rc) rc = mmm_st_writer_save(w, path);
    mmm_st_writer_free(w);
    free(path);
    if (rc) return rc;

    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", (double)st->step);
    cJSON_AddNumberToObject(j, "epoch", st->epoch);
    cJSON_AddNumberToObject(j, "position", st->position);
    cJSON_AddNumberToObject(j, "seconds", st->seconds);
    cJSON_AddNumberToObject(j, "tokens", (double)st->tokens);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)st->seed); /* exact, beyond 2^53 */
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddStringToObject(j, "name", st->name);
    cJSON_AddItemToObject(j, "run", run_json(run));
    path = pathf("%s/trainer_state.json", tmp);
    rc = path ? mmm_json_save(path, j) : MMM_ERR_NOMEM;
    free(path);
    cJSON_Delete(j);
    return rc;
}

/* Removes checkpoints beyond the newest `keep` complete ones, and deletions a kill interrupted. */
static void prune(const char *root, int keep) {
    DIR *d = opendir(root);
    if (!d) return;
    long *steps = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long s;
        char rest[8];
        if (sscanf(e->d_name, "step-%ld%7s", &s, rest) == 1) {
            if (n == cap) {
                long *g = realloc(steps, (cap = cap ? 2 * cap : 64) * sizeof *g);
                if (!g) break; /* pruning is housekeeping: what is not removed now is removed next time */
                steps = g;
            }
            steps[n++] = s;
        }
        size_t len = strlen(e->d_name);
        if (len > 8 && !strcmp(e->d_name + len - 8, ".del.tmp")) { /* left by a kill mid-delete */
            char *left = mmm_path_join(root, e->d_name);
            if (left) remove_tree(left);
            free(left);
        }
    }
    closedir(d);
    for (size_t i = 0; i < n; i++) {
        int newer = 0;
        for (size_t j = 0; j < n; j++) newer += steps[j] > steps[i];
        if (newer >= keep) { /* renamed first, so a kill mid-delete never leaves a torn step-N */
            char *old = pathf("%s/step-%07ld", root, steps[i]), *doomed = pathf("%s/step-%07ld.del.tmp", root, steps[i]);
            if (old && doomed) {
                remove_tree(doomed);
                if (rename(old, doomed) == 0) remove_tree(doomed);
            }
            free(old);
            free(doomed);
        }
    }
    free(steps);
}

int ckpt_save(const char *out_dir, const mmm_model *m, const float *adam_m, const float *adam_v,
              const trainer_state *st, const mmm_run_facts *run, int keep) {
    char name[64];
    snprintf(name, sizeof name, "step-%07ld", st->step);
    char *root = pathf("%s/checkpoints", out_dir), *dir = pathf("%s/checkpoints/%s", out_dir, name);
    char *tmp = pathf("%s/checkpoints/%s.tmp", out_dir, name), *aside = pathf("%s/checkpoints/%s.del.tmp", out_dir, name);
    char *latest = pathf("%s/checkpoints/latest", out_dir);
    int rc = !root || !dir || !tmp || !aside || !latest ? MMM_ERR_NOMEM : mkdir_p(out_dir);
    if (!rc) rc = mkdir_p(root);
    if (!rc) {
        remove_tree(tmp);
        rc = write_checkpoint(tmp, m, adam_m, adam_v, st, run);
        if (rc) remove_tree(tmp); /* a full disk leaves no half checkpoint behind */
    }
    /* a checkpoint of this step from an earlier, interrupted run (never the one `latest` names:
     * a resumed run saves only steps after it) moves aside in one rename, never torn in place */
    if (!rc) {
        remove_tree(aside);
        if (rename(dir, aside) == 0) remove_tree(aside);
        if (rename(tmp, dir) != 0) {
            rc = mmm_fail(MMM_ERR_IO, "%s: cannot rename to %s: %s", tmp, dir, strerror(errno));
            remove_tree(tmp);
        }
    }
    if (!rc) {
        size_t len = strlen(name);
        name[len] = '\n';
        rc = mmm_write_file_atomic(latest, name, len + 1);
    }
    if (!rc) prune(root, keep);
    free(root); free(dir); free(tmp); free(aside); free(latest);
    return rc;
}

int ckpt_latest(const char *out_dir, char **dir) {
    *dir = NULL;
    char *path = pathf("%s/checkpoints/latest", out_dir), *text = NULL;
    if (!path) return MMM_ERR_NOMEM;
    int rc = mmm_read_text_file(path, 256, &text, NULL);
    if (rc == MMM_ERR_NOT_FOUND) {
        free(path);
        return MMM_ERR_NOT_FOUND;
    }
    if (!rc) {
        text[strcspn(text, "\r\n")] = '\0';
        long s;
        char rest[2];
        if (sscanf(text, "step-%ld%1s", &s, rest) != 1 || s < 0)
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: does not name a checkpoint", path);
        else if (!(*dir = pathf("%s/checkpoints/%s", out_dir, text)))
            rc = MMM_ERR_NOMEM;
    }
    free(text);
    free(path);
    return rc;
}

/* A whole number in [lo, hi], exactly (JSON numbers are doubles). */
static int whole(const cJSON *v, double lo, double hi) {
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble) &&
           v->valuedouble >= lo && v->valuedouble <= hi;
}

/* The "run" object a checkpoint recorded against this run's facts (path: its trainer_state.json). */
static int compare_run(const char *path, const cJSON *recorded, const mmm_run_facts *run, int *differs) {
    int rc = MMM_OK;
    for (int i = 0; !rc && run && i < run->n; i++) {
        const mmm_run_fact *f = &run->facts[i];
        const char *was = cJSON_IsObject(recorded) ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(recorded, f->key)) : NULL;
        if (!cJSON_IsObject(recorded))
            rc = mmm_fail(MMM_ERR_ARG, "%s: records nothing of what defines its run (written by an older mmm), so "
                          "%s and the rest cannot be checked", path, f->what);
        else if (!was)
            rc = mmm_fail(MMM_ERR_ARG, "%s: records no %s (\"%s\") for its run", path, f->what, f->key);
        else if (strcmp(was, f->value))
            rc = mmm_fail(MMM_ERR_ARG, "%s: %s differs from the run's (now %s, was %s)", path, f->what, f->value, was);
        *differs = rc != MMM_OK;
    }
    return rc;
}

int ckpt_load_state(const char *dir, const ckpt_expect *e, trainer_state *st, int *run_differs) {
    *run_differs = 0;
    char *path = pathf("%s/trainer_state.json", dir);
    if (!path) return MMM_ERR_NOMEM;
    cJSON *j = NULL;
    int rc = mmm_json_load(path, 1 << 20, (void **)&j);
    if (rc) {
        free(path);
        return rc;
    }
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(j, "step"), *epoch = cJSON_GetObjectItemCaseSensitive(j, "epoch");
    const cJSON *pos = cJSON_GetObjectItemCaseSensitive(j, "position"), *seed = cJSON_GetObjectItemCaseSensitive(j, "seed");
    const cJSON *secs = cJSON_GetObjectItemCaseSensitive(j, "seconds"), *tokens = cJSON_GetObjectItemCaseSensitive(j, "tokens");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name"), *run = cJSON_GetObjectItemCaseSensitive(j, "run");
    /* the directory's own name says which step it holds */
    const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    long dir_step = -1;
    char rest[2];
    if (sscanf(base, "step-%ld%1s", &dir_step, rest) != 1) dir_step = -1;
    const char *s = cJSON_GetStringValue(seed);
    size_t seed_len = s ? strspn(s, "0123456789") : 0;
    errno = 0;
    unsigned long long seed_v = s && seed_len && seed_len == strlen(s) && seed_len <= 20 ? strtoull(s, NULL, 10) : 0;
    if (!cJSON_IsObject(j))
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: is not a JSON object", path);
    else if (!whole(step, 0, 9007199254740992.0))
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: \"step\" must be a whole number >= 0", path);
    else if ((long)step->valuedouble != dir_step)
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: \"step\" is %.0f but the checkpoint is %s", path, step->valuedouble, base);
    else if ((long)step->valuedouble > e->steps)
        rc = mmm_fail(MMM_ERR_ARG, "%s: the checkpoint is at step %.0f, past the run's %ld steps", path, step->valuedouble, e->steps);
    else if (!whole(epoch, 0, INT_MAX))
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: \"epoch\" must be a whole number from 0 to %d", path, INT_MAX);
    else if (!whole(pos, 0, e->n_samples))
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: \"position\" must be a whole number from 0 to the %d samples of the data", path,
                      e->n_samples);
    else if (!s || !seed_len || seed_len != strlen(s) || seed_len > 20 || errno == ERANGE)
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: \"seed\" must be a string of decimal digits below 2^64", path);
    else if (!cJSON_IsNumber(secs) || !isfinite(secs->valuedouble) || secs->valuedouble < 0)
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: \"seconds\" must be a number >= 0", path);
    else if (!whole(tokens, 0, 4611686018427387904.0))
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: \"tokens\" must be a whole number >= 0", path);
    else if (!cJSON_IsString(name) || strcmp(name->valuestring, e->name))
        rc = mmm_fail(MMM_ERR_ARG, "%s: holds a run named \"%s\", not \"%s\"", path,
                      cJSON_IsString(name) ? name->valuestring : "?", e->name);
    else if (seed_v != e->seed)
        rc = mmm_fail(MMM_ERR_ARG, "%s: was trained with data seed %llu, not %llu", dir, seed_v, (unsigned long long)e->seed);
    if (!rc) {
        st->step = (long)step->valuedouble;
        st->epoch = (int)epoch->valuedouble;
        st->position = (int)pos->valuedouble;
        st->seed = seed_v;
        st->seconds = secs->valuedouble;
        st->tokens = (long)tokens->valuedouble;
        snprintf(st->name, sizeof st->name, "%s", e->name);
    }
    /* last, so that a forced resume has a complete state: what defines the run */
    if (!rc) rc = compare_run(path, run, e->run, run_differs);
    cJSON_Delete(j);
    free(path);
    return rc;
}

int mmm_train_check_run(const char *out_dir, const mmm_run_facts *run, int *differs) {
    *differs = 0;
    char *dir = NULL, *path = NULL;
    int rc = ckpt_latest(out_dir, &dir);
    if (rc == MMM_ERR_NOT_FOUND) return MMM_OK; /* nothing recorded to compare with */
    cJSON *j = NULL;
    if (!rc && !(path = pathf("%s/trainer_state.json", dir))) rc = MMM_ERR_NOMEM;
    if (!rc) rc = mmm_json_load(path, 1 << 20, (void **)&j);
    if (!rc) rc = compare_run(path, cJSON_GetObjectItemCaseSensitive(j, "run"), run, differs);
    cJSON_Delete(j);
    free(path);
    free(dir);
    return rc;
}

int ckpt_load_weights(const char *dir, mmm_model *m, float *adam_m, float *adam_v) {
    mmm_model *saved = NULL;
    int rc = mmm_model_load(&saved, dir);
    if (rc) return mmm_fail_context(rc, "resuming from %s", dir);
    if (saved->n_floats != m->n_floats || saved->n_params != m->n_params) {
        mmm_model_free(saved);
        return mmm_fail(MMM_ERR_FORMAT, "%s: the checkpoint's model differs from the one being trained", dir);
    }
    memcpy(m->data, saved->data, m->n_floats * sizeof *m->data);
    mmm_model_free(saved);

    char *path = pathf("%s/optimizer.safetensors", dir);
    if (!path) return MMM_ERR_NOMEM;
    mmm_st_file *f = NULL;
    if ((rc = mmm_st_open(&f, path))) {
        free(path);
        return rc;
    }
    const mmm_st_tensor *tm = mmm_st_find(f, "adam.m"), *tv = mmm_st_find(f, "adam.v");
    if (!tm || !tv) rc = mmm_fail(MMM_ERR_FORMAT, "%s: needs tensors adam.m and adam.v", path);
    if (!rc) rc = mmm_st_read_f32(tm, adam_m, m->n_floats);
    if (!rc) rc = mmm_st_read_f32(tv, adam_v, m->n_floats);
    mmm_st_close(f);
    free(path);
    return rc;
}
