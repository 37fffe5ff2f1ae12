#include "mmm/fileio.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmm/error.h"

static const char *file_kind(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

int mmm_open_regular_fd(const char *path, int *fd_out, long long *size) {
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever; it is
     * cleared again once fstat shows a regular file */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return mmm_fail(errno == ENOENT ? MMM_ERR_NOT_FOUND : MMM_ERR_IO, "%s: cannot open: %s", path,
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mmm_fail(MMM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mmm_fail(MMM_ERR_IO, "%s: is %s, expected a regular file", path, file_kind(st.st_mode));
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return mmm_fail(MMM_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    *fd_out = fd;
    if (size) *size = (long long)st.st_size;
    return MMM_OK;
}

int mmm_open_regular(const char *path, FILE **fp, long long *size) {
    int fd = -1;
    int rc = mmm_open_regular_fd(path, &fd, size);
    if (rc) return rc;
    if (!(*fp = fdopen(fd, "rb"))) {
        int e = errno;
        close(fd);
        return mmm_fail(MMM_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    return MMM_OK;
}

int mmm_read_text_file(const char *path, size_t max_bytes, char **out, size_t *len) {
    FILE *fp = NULL;
    long long size = 0;
    int rc = mmm_open_regular(path, &fp, &size);
    if (rc) return rc;
    size_t n = (size_t)size;
    char *text = NULL;
    if (n > max_bytes)
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: %zu bytes is more than the %zu this file may have", path, n,
                      max_bytes);
    else if (!(text = malloc(n + 1)))
        rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    else if (fread(text, 1, n, fp) != n)
        rc = mmm_fail(MMM_ERR_IO, "%s: read failed", path);
    fclose(fp);
    if (rc) {
        free(text);
        return rc;
    }
    text[n] = '\0';
    size_t used = strlen(text);
    if (used != n) {
        free(text);
        return mmm_fail(MMM_ERR_FORMAT, "%s: unexpected NUL byte at byte %zu of a text file", path, used);
    }
    *out = text;
    if (len) *len = n;
    return MMM_OK;
}

int mmm_atomic_open(const char *path, char **tmp, FILE **fp) {
    size_t len = strlen(path) + 32;
    if (!(*tmp = malloc(len))) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    snprintf(*tmp, len, "%s.tmp.%ld", path, (long)getpid());
    if (!(*fp = fopen(*tmp, "wb"))) {
        int rc = mmm_fail(MMM_ERR_IO, "%s: cannot create: %s", *tmp, strerror(errno));
        free(*tmp);
        *tmp = NULL;
        return rc;
    }
    return MMM_OK;
}

/* Makes a rename durable; failures are ignored, some file systems cannot sync directories. */
static void sync_dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int mmm_atomic_finish(const char *path, char *tmp, FILE *fp, int rc) {
    if (!rc && (fflush(fp) != 0 || fsync(fileno(fp)) != 0))
        rc = mmm_fail(MMM_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (fclose(fp) != 0 && !rc)
        rc = mmm_fail(MMM_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path) != 0)
        rc = mmm_fail(MMM_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
    if (rc) unlink(tmp);
    else sync_dir_of(path);
    free(tmp);
    return rc;
}

int mmm_write_file_atomic(const char *path, const void *data, size_t len) {
    char *tmp;
    FILE *fp;
    int rc = mmm_atomic_open(path, &tmp, &fp);
    if (rc) return rc;
    if (len && fwrite(data, 1, len, fp) != len)
        rc = mmm_fail(MMM_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    return mmm_atomic_finish(path, tmp, fp, rc);
}

/* cJSON's CJSON_NESTING_LIMIT: deeper documents are refused by cJSON itself */
#define JSON_NESTING_CAP 1000

/* cJSON skips every byte up to 32 between tokens, control characters included: the scan counts
 * the nodes cJSON will make, so it skips the same bytes (a fuzzed "[\x11]" is an empty array) */
static bool json_space(char c) { return (unsigned char)c <= ' ' && c != '\0'; }

int mmm_json_check(const char *text, size_t len, const mmm_json_limits *lim, const char *name) {
    if (lim->max_bytes && len > lim->max_bytes)
        return mmm_fail(MMM_ERR_FORMAT, "%s: %zu bytes of JSON is more than the %zu allowed", name, len,
                        lim->max_bytes);
    int depth_cap = lim->max_depth > 0 && lim->max_depth < JSON_NESTING_CAP ? lim->max_depth : JSON_NESTING_CAP;
    /* per open container: members counted so far, where it opened, '[' or '{' */
    size_t members[JSON_NESTING_CAP], opened_at[JSON_NESTING_CAP];
    char kind[JSON_NESTING_CAP];
    int depth = 0;
    size_t values = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '\0') return mmm_fail(MMM_ERR_FORMAT, "%s: unexpected NUL byte at byte %zu of JSON", name, i);
        if (json_space(c)) continue;
        /* cJSON makes one node per array element or object member (the key lives in the member's
         * node), plus the root: counting a member at its first token and at every comma of its
         * container counts the nodes without parsing anything */
        bool counted = false;
        if (c == ',' && depth > 0) {
            members[depth - 1]++;
            counted = true;
        } else if (c != ']' && c != '}' && (depth == 0 ? values == 0 : members[depth - 1] == 0)) {
            if (depth > 0) members[depth - 1] = 1;
            counted = true;
        }
        if (counted) {
            if (++values > lim->max_values && lim->max_values)
                return mmm_fail(MMM_ERR_FORMAT, "%s: more than %zu JSON values (the limit for this file) at byte %zu",
                                name, lim->max_values, i);
            if (depth > 0 && lim->max_members && members[depth - 1] > lim->max_members)
                return mmm_fail(MMM_ERR_FORMAT, "%s: the JSON %s at byte %zu has more than %zu %s (the limit for this file)",
                                name, kind[depth - 1] == '[' ? "array" : "object", opened_at[depth - 1],
                                lim->max_members, kind[depth - 1] == '[' ? "elements" : "members");
        }
        if (c == '"') { /* skip the string, escapes included; an unterminated one is cJSON's error */
            for (i++; i < len && text[i] != '"'; i++)
                if (text[i] == '\\' && i + 1 < len) i++;
                else if (text[i] == '\0')
                    return mmm_fail(MMM_ERR_FORMAT, "%s: unexpected NUL byte at byte %zu of JSON", name, i);
        } else if (c == '[' || c == '{') {
            if (depth >= depth_cap)
                return mmm_fail(MMM_ERR_FORMAT, "%s: JSON nested deeper than %d levels (the limit for this file) at byte %zu",
                                name, depth_cap, i);
            members[depth] = 0;
            opened_at[depth] = i;
            kind[depth++] = c;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--; /* a mismatched bracket is left for cJSON to report */
        }
    }
    return MMM_OK;
}

int mmm_json_parse(const char *text, size_t len, const mmm_json_limits *lim, const char *name, void **root) {
    int rc = mmm_json_check(text, len, lim, name);
    if (rc) return rc;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t at = end && end >= text ? (size_t)(end - text) : 0;
    if (j) /* the whole text must be the one value: only whitespace may follow it */
        while (at < len && json_space(text[at])) at++;
    if (!j || at < len) {
        cJSON_Delete(j);
        return mmm_fail(MMM_ERR_FORMAT, "%s: not valid JSON (error near byte %zu)", name, at);
    }
    *root = j;
    return MMM_OK;
}

int mmm_json_load_limits(const char *path, const mmm_json_limits *lim, void **root) {
    char *text = NULL;
    size_t len = 0;
    int rc = mmm_read_text_file(path, lim->max_bytes ? lim->max_bytes : SIZE_MAX - 1, &text, &len);
    if (rc) return rc;
    rc = mmm_json_parse(text, len, lim, path, root);
    free(text);
    return rc;
}

int mmm_json_load(const char *path, size_t max_bytes, void **root) {
    mmm_json_limits lim = {.max_bytes = max_bytes};
    return mmm_json_load_limits(path, &lim, root);
}

int mmm_json_save(const char *path, const void *root) {
    char *text = cJSON_Print((const cJSON *)root);
    if (!text) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory printing JSON", path);
    size_t len = strlen(text);
    text[len] = '\n'; /* cJSON_Print's NUL becomes the final newline */
    int rc = mmm_write_file_atomic(path, text, len + 1);
    free(text);
    return rc;
}

int mmm_copy_file(const char *from, const char *to) {
    FILE *in;
    int rc = mmm_open_regular(from, &in, NULL);
    if (rc) return rc;
    char *tmp;
    FILE *out;
    rc = mmm_atomic_open(to, &tmp, &out);
    if (rc) {
        fclose(in);
        return rc;
    }
    char buf[1 << 16];
    size_t n;
    while (!rc && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = mmm_fail(MMM_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (!rc && ferror(in)) rc = mmm_fail(MMM_ERR_IO, "%s: read failed", from);
    fclose(in);
    return mmm_atomic_finish(to, tmp, out, rc);
}

void mmm_json_put(void *obj, const char *key, void *value) {
    if (cJSON_GetObjectItemCaseSensitive(obj, key)) cJSON_ReplaceItemInObjectCaseSensitive(obj, key, value);
    else cJSON_AddItemToObject(obj, key, value);
}

void *mmm_json_object_at(void *obj, const char *key) {
    cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsObject(o)) mmm_json_put(obj, key, o = cJSON_CreateObject());
    return o;
}
