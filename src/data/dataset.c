/* LLaVA/InternVL-style JSONL datasets (SPEC 6). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stb/stb_image.h>

#include "mmm/data.h"
#include "mmm/error.h"
#include "mmm/image.h"
#include "mmm/path.h"

#define MAX_IMAGES_PER_SAMPLE 4096
#define MAX_TURNS 256

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

/* Tiles InternVL's dynamic tiling makes of an image, from its header alone. */
static int image_tiles(const char *path, const mmm_config *cfg, int *tiles) {
    int w, h, comp;
    if (!stbi_info(path, &w, &h, &comp)) {
        FILE *f = fopen(path, "rb");
        if (!f) return mmm_fail(MMM_ERR_NOT_FOUND, "image '%s': %s", path, strerror(errno));
        fclose(f);
        return mmm_fail(MMM_ERR_FORMAT, "image '%s': not a readable image (%s)", path, stbi_failure_reason());
    }
    int cols, rows;
    int rc = mmm_image_tile_grid(&cols, &rows, w, h, cfg->tile_size, cfg->min_tiles, cfg->max_tiles);
    if (rc) return rc;
    *tiles = cols * rows + (cfg->use_thumbnail && cols * rows > 1);
    return MMM_OK;
}

static char *json_text(const cJSON *v) {
    if (cJSON_IsString(v)) return strdup(v->valuestring);
    if (cJSON_IsNumber(v)) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.17g", v->valuedouble);
        return strdup(buf);
    }
    return NULL;
}

/* Parses one JSONL record into a sample; the error message says what is wrong (no file/line:
 * the caller adds them). */
static int parse_record(mmm_sample *s, const char *line, const char *dir, const mmm_tokenizer *tok,
                        const mmm_config *cfg, const mmm_data_options *opt) {
    memset(s, 0, sizeof *s);
    cJSON *root = cJSON_Parse(line);
    if (!root) return mmm_fail(MMM_ERR_FORMAT, "not valid JSON");
    int rc = MMM_OK;
    const char *turns[MAX_TURNS];
    int n_turns = 0;
    const char *system = opt->system;
    const cJSON *conv = cJSON_GetObjectItemCaseSensitive(root, "conversations");
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(root, "image");
    if (!cJSON_IsObject(root)) rc = mmm_fail(MMM_ERR_FORMAT, "not a JSON object");
    else if (!cJSON_IsArray(conv) || cJSON_GetArraySize(conv) == 0)
        rc = mmm_fail(MMM_ERR_FORMAT, "\"conversations\" must be a non-empty list");
    for (const cJSON *t = rc ? NULL : conv->child; t && !rc; t = t->next) {
        const cJSON *from = cJSON_GetObjectItemCaseSensitive(t, "from");
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(t, "value");
        if (!cJSON_IsString(from) || !cJSON_IsString(value)) {
            rc = mmm_fail(MMM_ERR_FORMAT, "turn %d needs string \"from\" and \"value\"", n_turns);
            break;
        }
        const char *f = from->valuestring;
        int human = !strcmp(f, "human") || !strcmp(f, "user");
        int gpt = !strcmp(f, "gpt") || !strcmp(f, "assistant");
        if (!strcmp(f, "system") && n_turns == 0) { system = value->valuestring; continue; }
        if (!human && !gpt) { rc = mmm_fail(MMM_ERR_FORMAT, "turn %d: unknown speaker \"%s\"", n_turns, f); break; }
        if (human != (n_turns % 2 == 0)) {
            rc = mmm_fail(MMM_ERR_FORMAT, "turn %d: turns must alternate human, gpt, human, ...", n_turns);
            break;
        }
        if (n_turns == MAX_TURNS) { rc = mmm_fail(MMM_ERR_FORMAT, "more than %d turns", MAX_TURNS); break; }
        turns[n_turns++] = value->valuestring;
    }
    if (!rc && (n_turns < 2 || n_turns % 2)) rc = mmm_fail(MMM_ERR_FORMAT, "needs human/gpt pairs ending with a gpt answer");

    int n_img = 0;
    if (!rc && img && !cJSON_IsNull(img)) {
        n_img = cJSON_IsArray(img) ? cJSON_GetArraySize(img) : 1;
        if (!cJSON_IsArray(img) && !cJSON_IsString(img)) rc = mmm_fail(MMM_ERR_FORMAT, "\"image\" must be a path or a list of paths");
        else if (n_img > MAX_IMAGES_PER_SAMPLE) rc = mmm_fail(MMM_ERR_FORMAT, "more than %d images", MAX_IMAGES_PER_SAMPLE);
    }
    if (!rc && n_img) {
        s->images = calloc((size_t)n_img, sizeof *s->images);
        s->tiles = calloc((size_t)n_img, sizeof *s->tiles);
        if (!s->images || !s->tiles) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n_img && !rc; i++) {
        const cJSON *p = cJSON_IsArray(img) ? cJSON_GetArrayItem(img, i) : img;
        if (!cJSON_IsString(p)) { rc = mmm_fail(MMM_ERR_FORMAT, "image %d is not a path", i); break; }
        s->images[i] = p->valuestring[0] == '/' ? strdup(p->valuestring) : mmm_path_join(dir, p->valuestring);
        s->n_images = i + 1;
        if (!s->images[i]) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
        else rc = image_tiles(s->images[i], cfg, &s->tiles[i]);
        s->n_tiles += s->tiles[i];
    }
    if (!rc) rc = mmm_chat_tokenize(s, tok, cfg, turns, n_turns, s->tiles, n_img, system, 0);
    if (!rc && opt->max_tokens > 0 && s->n > opt->max_tokens)
        rc = mmm_fail(MMM_ERR_ARG, "%d tokens, more than the limit of %d", s->n, opt->max_tokens);
    if (!rc) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
        const cJSON *task = cJSON_GetObjectItemCaseSensitive(root, "task");
        s->id = id ? json_text(id) : NULL;
        s->task = strdup(cJSON_IsString(task) ? task->valuestring : "default");
        s->answer = strdup(turns[n_turns - 1]);
        if (!s->task || !s->answer) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
    }
    cJSON_Delete(root);
    if (rc) mmm_sample_free(s);
    return rc;
}

int mmm_dataset_load(mmm_dataset *d, const char *path, const mmm_tokenizer *tok,
                     const mmm_config *cfg, const mmm_data_options *opt) {
    memset(d, 0, sizeof *d);
    FILE *f = fopen(path, "r");
    if (!f) return mmm_fail(errno == ENOENT ? MMM_ERR_NOT_FOUND : MMM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
    if (!dir) { fclose(f); return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path); }
    if (slash) *slash = '\0';
    else strcpy(dir, ".");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = MMM_OK, cap_samples = 0;
    while (!rc && (len = getline(&line, &cap, f)) >= 0) {
        d->n_lines++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue; /* blank lines are allowed */
        if ((size_t)len != strlen(line)) { /* NUL inside the line */
            mmm_fail(MMM_ERR_FORMAT, "NUL byte inside the line");
        } else {
            if (d->n == cap_samples) {
                cap_samples = cap_samples ? 2 * cap_samples : 1024;
                mmm_sample *grown = realloc(d->samples, (size_t)cap_samples * sizeof *grown);
                if (!grown) { rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path); break; }
                d->samples = grown;
            }
            int r = parse_record(&d->samples[d->n], line, dir, tok, cfg, opt);
            if (r == MMM_ERR_NOMEM) { rc = r; break; }
            if (!r) {
                if (++d->n == opt->max_samples) break;
                continue;
            }
        }
        /* a bad line: fatal under strict, otherwise counted and reported */
        if (opt->strict) {
            rc = mmm_fail_context(MMM_ERR_FORMAT, "%s: line %d", path, d->n_lines);
            break;
        }
        d->n_skipped++;
        size_t used = strlen(d->skipped_report);
        if (d->n_skipped <= 5 && used + 64 < sizeof d->skipped_report)
            snprintf(d->skipped_report + used, sizeof d->skipped_report - used, "%sline %d: %s",
                     used ? "; " : "", d->n_lines, mmm_last_error());
    }
    if (!rc && ferror(f)) rc = mmm_fail(MMM_ERR_IO, "%s: read error", path);
    free(line);
    free(dir);
    fclose(f);
    if (!rc && d->n == 0)
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: no usable samples in %d lines%s%s", path, d->n_lines,
                      d->n_skipped ? " (" : "", d->n_skipped ? d->skipped_report : "");
    if (rc) mmm_dataset_free(d);
    return rc;
}
