/* Which kind of data file a path holds, from its content rather than its name: a JSON array
 * (LLaVA), an InternVL meta file (one JSON object naming datasets), or JSON Lines. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "dataset_internal.h"
#include "mmm/error.h"
#include "mmm/fileio.h"

static int first_byte(FILE *f) {
    int c;
    while ((c = getc(f)) == ' ' || c == '\t' || c == '\n' || c == '\r') {}
    return c;
}

/* An object any of whose members is an object with an "annotation": the InternVL meta form
 * {"name": {"root": ..., "annotation": ..., "repeat_time": ...}, ...}. */
static int is_meta(const cJSON *root) {
    if (!cJSON_IsObject(root)) return 0;
    for (const cJSON *m = root->child; m; m = m->next)
        if (cJSON_IsObject(m) && cJSON_GetObjectItemCaseSensitive(m, "annotation")) return 1;
    return 0;
}

/* The first JSON value of f (its "{" already read) while it fits in limit bytes and the record
 * caps on depth and values: *buf (malloc'd, NUL-terminated), *multi_line when it spans lines.
 * 0 bytes when it does not fit or does not close (the record reader then says why). */
static int first_value(FILE *f, size_t limit, char **buf, size_t *n, int *multi_line) {
    char *b = malloc(limit + 1);
    if (!b) return MMM_ERR_NOMEM;
    size_t k = 0;
    int depth = 1, max_depth = 1, in_str = 0, esc = 0, c;
    long values = 1;
    b[k++] = '{';
    *multi_line = 0;
    while (depth > 0 && k < limit && (c = getc(f)) != EOF) {
        b[k++] = (char)c;
        if (c == '\n') *multi_line = 1;
        if (in_str) {
            if (esc) esc = 0;
            else if (c == '\\') esc = 1;
            else if (c == '"') in_str = 0;
        } else if (c == '"') in_str = 1;
        else if (c == '{' || c == '[') {
            if (++depth > max_depth) max_depth = depth;
            values++;
        } else if (c == '}' || c == ']') depth--;
        else if (c == ',' || c == ':') values++;
    }
    b[k] = '\0';
    *buf = b;
    *n = depth == 0 && max_depth <= DATA_MAX_DEPTH && values <= DATA_MAX_VALUES ? k : 0;
    return MMM_OK;
}

int data_detect(const char *path, size_t limit, data_kind *kind, void **meta) {
    static const char hint[] = "expected JSON Lines (one {\"conversations\": [...]} record per line), a JSON array of "
                               "such records (LLaVA) or an InternVL meta file ({\"name\": {\"root\": ..., "
                               "\"annotation\": ...}, ...})";
    *meta = NULL;
    *kind = DATA_JSONL;
    FILE *f = NULL;
    int rc = mmm_open_regular(path, &f, NULL);
    if (rc) return rc;
    int c = first_byte(f);
    if (c == 0xEF && getc(f) == 0xBB && getc(f) == 0xBF) c = first_byte(f); /* UTF-8 byte order mark */
    if (c == '[') *kind = DATA_ARRAY;
    else if (c != '{' && c != EOF) rc = mmm_fail(MMM_ERR_FORMAT, "%s: not a dataset: %s", path, hint);
    else if (c == '{') {
        char *buf = NULL;
        size_t n = 0;
        int multi = 0;
        rc = first_value(f, limit, &buf, &n, &multi);
        if (rc) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
        cJSON *root = n ? cJSON_ParseWithLength(buf, n) : NULL;
        free(buf);
        if (is_meta(root)) {
            *kind = DATA_META;
            *meta = root;
            root = NULL;
        } else if (multi && cJSON_IsObject(root)) {
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: not a dataset: one JSON object over several lines; %s", path, hint);
        }
        cJSON_Delete(root); /* a first line that does not parse: JSON Lines with a bad record */
    }
    if (!rc && ferror(f)) rc = mmm_fail(MMM_ERR_IO, "%s: read error", path);
    fclose(f);
    if (rc && *meta) {
        cJSON_Delete(*meta);
        *meta = NULL;
    }
    return rc;
}
