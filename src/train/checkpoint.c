/* Training checkpoints: out/checkpoints/step-NNNNNNN/ holds the model (config.json +
 * model.safetensors), the AdamW moments and trainer_state.json. A checkpoint directory is
 * complete before it gets its final name (written as .tmp, then renamed), and out/checkpoints/
 * latest names the newest complete one (rewritten atomically), so a kill at any moment leaves
 * the previous checkpoint intact. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
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

static int mkdir_p(const char *dir) {
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) return MMM_OK;
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

int ckpt_lock(const char *out_dir, int *fd) {
    char path[1100];
    snprintf(path, sizeof path, "%s/checkpoints", out_dir);
    int rc = mkdir_p(out_dir);
    if (rc || (rc = mkdir_p(path))) return rc;
    snprintf(path, sizeof path, "%s/checkpoints/lock", out_dir);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0) return mmm_fail(MMM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (flock(*fd, LOCK_EX | LOCK_NB) != 0) { /* the holder wrote its pid */
        char pid[32] = "";
        ssize_t got = pread(*fd, pid, sizeof pid - 1, 0);
        pid[got > 0 ? got : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(*fd);
        *fd = -1;
        return mmm_fail(MMM_ERR_ARG, "%s: another run (pid %s) is training into this directory; two at once "
                        "would overwrite each other's checkpoints", out_dir, pid[0] ? pid : "?");
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(*fd, 0) != 0 || pwrite(*fd, pid, (size_t)len, 0) != len) { /* only informative */ }
    return MMM_OK;
}

int ckpt_save(const char *out_dir, const mmm_model *m, const float *adam_m, const float *adam_v,
              const trainer_state *st, int keep) {
    char root[1024], name[64], dir[1100], tmp[1110], path[1200];
    snprintf(root, sizeof root, "%s/checkpoints", out_dir);
    int rc = mkdir_p(out_dir);
    if (!rc) rc = mkdir_p(root);
    if (rc) return rc;
    snprintf(name, sizeof name, "step-%07ld", st->step);
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    remove_tree(tmp);
    if ((rc = mkdir_p(tmp)) || (rc = mmm_model_save(m, tmp, MMM_DTYPE_F32, 0))) return rc;

    mmm_st_writer *w = NULL;
    int64_t shape[1] = {(int64_t)m->n_floats};
    rc = mmm_st_writer_new(&w);
    if (!rc) rc = mmm_st_writer_add(w, "adam.m", MMM_DTYPE_F32, 1, shape, adam_m);
    if (!rc) rc = mmm_st_writer_add(w, "adam.v", MMM_DTYPE_F32, 1, shape, adam_v);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", tmp);
    if (!rc) rc = mmm_st_writer_save(w, path);
    mmm_st_writer_free(w);
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
    snprintf(path, sizeof path, "%s/trainer_state.json", tmp);
    rc = mmm_json_save(path, j);
    cJSON_Delete(j);
    if (rc) return rc;

    /* a checkpoint of this step from an earlier, interrupted run (never the one `latest` names:
     * a resumed run saves only steps after it) moves aside in one rename, never torn in place */
    char aside[1220];
    snprintf(aside, sizeof aside, "%s.del.tmp", dir);
    remove_tree(aside);
    if (rename(dir, aside) == 0) remove_tree(aside);
    if (rename(tmp, dir) != 0) return mmm_fail(MMM_ERR_IO, "%s: cannot rename to %s: %s", tmp, dir, strerror(errno));
    snprintf(path, sizeof path, "%s/latest", root);
    size_t len = strlen(name);
    name[len] = '\n';
    if ((rc = mmm_write_file_atomic(path, name, len + 1))) return rc;
    name[len] = '\0';

    /* prune: keep the newest `keep` complete checkpoints */
    DIR *d = opendir(root);
    if (!d) return MMM_OK;
    long steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        long s;
        char rest[8];
        if (sscanf(e->d_name, "step-%ld%7s", &s, rest) == 1) steps[n++] = s;
        size_t len = strlen(e->d_name);
        if (len > 8 && !strcmp(e->d_name + len - 8, ".del.tmp")) { /* left by a kill mid-delete */
            char left[1400];
            snprintf(left, sizeof left, "%s/%s", root, e->d_name);
            remove_tree(left);
        }
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        int newer = 0;
        for (int j2 = 0; j2 < n; j2++) newer += steps[j2] > steps[i];
        if (newer >= keep) { /* renamed first, so a kill mid-delete never leaves a torn step-N */
            char old[1200], doomed[1220];
            snprintf(old, sizeof old, "%s/step-%07ld", root, steps[i]);
            snprintf(doomed, sizeof doomed, "%s.del.tmp", old);
            remove_tree(doomed);
            if (rename(old, doomed) == 0) remove_tree(doomed);
        }
    }
    return MMM_OK;
}

int ckpt_latest(const char *out_dir, char *dir, size_t cap) {
    char path[1100];
    snprintf(path, sizeof path, "%s/checkpoints/latest", out_dir);
    char *text = NULL;
    int rc = mmm_read_text_file(path, 256, &text, NULL);
    if (rc == MMM_ERR_NOT_FOUND) return MMM_ERR_NOT_FOUND;
    if (rc) return rc;
    text[strcspn(text, "\r\n")] = '\0';
    if (!text[0] || strchr(text, '/')) {
        free(text);
        return mmm_fail(MMM_ERR_FORMAT, "%s: does not name a checkpoint", path);
    }
    snprintf(dir, cap, "%s/checkpoints/%s", out_dir, text);
    free(text);
    return MMM_OK;
}

int ckpt_load(const char *dir, mmm_model *m, float *adam_m, float *adam_v, trainer_state *st) {
    mmm_model *saved = NULL;
    int rc = mmm_model_load(&saved, dir);
    if (rc) return mmm_fail_context(rc, "resuming from %s", dir);
    if (saved->n_floats != m->n_floats || saved->n_params != m->n_params) {
        mmm_model_free(saved);
        return mmm_fail(MMM_ERR_FORMAT, "%s: the checkpoint's model differs from the one being trained", dir);
    }
    memcpy(m->data, saved->data, m->n_floats * sizeof *m->data);
    mmm_model_free(saved);

    char path[1200];
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    mmm_st_file *f = NULL;
    if ((rc = mmm_st_open(&f, path))) return rc;
    const mmm_st_tensor *tm = mmm_st_find(f, "adam.m"), *tv = mmm_st_find(f, "adam.v");
    if (!tm || !tv) rc = mmm_fail(MMM_ERR_FORMAT, "%s: needs tensors adam.m and adam.v", path);
    if (!rc) rc = mmm_st_read_f32(tm, adam_m, m->n_floats);
    if (!rc) rc = mmm_st_read_f32(tv, adam_v, m->n_floats);
    mmm_st_close(f);
    if (rc) return rc;

    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    cJSON *j = NULL;
    if ((rc = mmm_json_load(path, 1 << 20, (void **)&j))) return rc;
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(j, "step"), *epoch = cJSON_GetObjectItemCaseSensitive(j, "epoch");
    const cJSON *pos = cJSON_GetObjectItemCaseSensitive(j, "position"), *seed = cJSON_GetObjectItemCaseSensitive(j, "seed");
    const cJSON *secs = cJSON_GetObjectItemCaseSensitive(j, "seconds"), *tokens = cJSON_GetObjectItemCaseSensitive(j, "tokens");
    if (!cJSON_IsNumber(step) || !cJSON_IsNumber(epoch) || !cJSON_IsNumber(pos) || !cJSON_IsString(seed))
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: needs step, epoch, position and seed", path);
    else {
        st->step = (long)step->valuedouble;
        st->epoch = (int)epoch->valuedouble;
        st->position = (int)pos->valuedouble;
        st->seed = strtoull(seed->valuestring, NULL, 10);
        st->seconds = cJSON_IsNumber(secs) ? secs->valuedouble : 0;
        st->tokens = cJSON_IsNumber(tokens) ? (long)tokens->valuedouble : 0;
    }
    cJSON_Delete(j);
    return rc;
}
