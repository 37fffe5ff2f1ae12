/* One LLaVA/InternVL conversation record into a tokenised sample: "conversations" of alternating
 * human/gpt turns (an optional system turn first), "<image>" markers matching "image" (a path, a
 * list of paths, or none), optional "id" and "task". */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset_internal.h"
#include "mmm/error.h"
#include "mmm/image.h"
#include "mmm/path.h"

#define MAX_IMAGES_PER_SAMPLE 4096
#define MAX_TURNS 256

/* Tiles InternVL's dynamic tiling makes of an image, from its header alone. */
static int image_tiles(const char *path, const mmm_config *cfg, int *tiles) {
    int w, h;
    int rc = mmm_image_info(path, &w, &h); /* a FIFO is refused; the pixel limit applies */
    if (rc) return rc;
    int cols, rows;
    rc = mmm_image_tile_grid(&cols, &rows, w, h, cfg->tile_size, cfg->min_tiles, cfg->max_tiles);
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

int data_parse_record(mmm_sample *s, const char *text, size_t len, const char *dir, const mmm_tokenizer *tok,
                      const mmm_config *cfg, const mmm_data_options *opt) {
    memset(s, 0, sizeof *s);
    cJSON *root = cJSON_ParseWithLength(text, len);
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

static int copy_array(void **dst, const void *src, size_t bytes) {
    if (!src) return MMM_OK;
    if (!(*dst = malloc(bytes ? bytes : 1))) return mmm_fail(MMM_ERR_NOMEM, "out of memory");
    memcpy(*dst, src, bytes);
    return MMM_OK;
}

static int copy_text(char **dst, const char *src) {
    if (src && !(*dst = strdup(src))) return mmm_fail(MMM_ERR_NOMEM, "out of memory");
    return MMM_OK;
}

int data_sample_copy(mmm_sample *dst, const mmm_sample *src) {
    *dst = *src;
    dst->ids = dst->labels = NULL;
    dst->images = NULL;
    dst->tiles = NULL;
    dst->id = dst->task = dst->answer = NULL;
    dst->n_images = 0;
    int rc = copy_array((void **)&dst->ids, src->ids, (size_t)src->n * sizeof *src->ids);
    if (!rc) rc = copy_array((void **)&dst->labels, src->labels, (size_t)src->n * sizeof *src->labels);
    if (!rc) rc = copy_array((void **)&dst->tiles, src->tiles, (size_t)src->n_images * sizeof *src->tiles);
    if (!rc && src->n_images && !(dst->images = calloc((size_t)src->n_images, sizeof *dst->images)))
        rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
    for (int i = 0; !rc && i < src->n_images; i++) {
        rc = copy_text(&dst->images[i], src->images[i]);
        dst->n_images = i + 1;
    }
    if (!rc) rc = copy_text(&dst->id, src->id);
    if (!rc) rc = copy_text(&dst->task, src->task);
    if (!rc) rc = copy_text(&dst->answer, src->answer);
    if (rc) mmm_sample_free(dst);
    return rc;
}
