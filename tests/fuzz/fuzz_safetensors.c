/* Fuzz target: a safetensors file (header and data) through mmm_st_open, then every tensor read
 * with each reader that accepts its dtype, and looked up by name; the header's text also checks
 * the JSON caps' scan against the tree cJSON builds. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/safetensors.h"

/* Reads t with the readers for its kind of dtype; the others must refuse it. */
static void read_tensor(const mmm_st_tensor *t) {
    int is_float = t->dtype == MMM_DTYPE_F32 || t->dtype == MMM_DTYPE_F16 || t->dtype == MMM_DTYPE_BF16;
    int is_int = t->dtype == MMM_DTYPE_I32 || t->dtype == MMM_DTYPE_I64;
    /* numel ≤ the file's size unless a dimension is 0, so this cannot be huge */
    void *buf = malloc(t->numel * sizeof(int64_t) + 1);
    if (!buf) return;
    int rf = mmm_st_read_f32(t, buf, t->numel), rb = mmm_st_read_bf16(t, buf, t->numel);
    int ri = mmm_st_read_i64(t, buf, t->numel), r32 = mmm_st_read_i32(t, buf, t->numel);
    if ((rf == MMM_OK) != is_float || (rb == MMM_OK) != is_float || (ri == MMM_OK) != is_int ||
        (is_int && r32 != MMM_OK && r32 != MMM_ERR_FORMAT) || (!is_int && r32 == MMM_OK))
        fuzz_bug("tensor '%s' (dtype %d): readers returned f32 %d, bf16 %d, i64 %d, i32 %d",
                 t->name, (int)t->dtype, rf, rb, ri, r32);
    if (t->numel > 0 && mmm_st_read_f32(t, buf, t->numel - 1) == MMM_OK)
        fuzz_bug("tensor '%s': a read into a destination one element short succeeded", t->name);
    free(buf);
    if (mmm_st_check_shape(t, t->ndim, t->shape) != MMM_OK)
        fuzz_bug("tensor '%s': its own shape does not check", t->name);
}

static void tree_stats(const cJSON *j, int depth, size_t *values, size_t *members, int *max_depth) {
    (*values)++;
    if (!cJSON_IsArray(j) && !cJSON_IsObject(j)) return;
    if (depth + 1 > *max_depth) *max_depth = depth + 1;
    size_t n = 0;
    for (const cJSON *c = j->child; c; c = c->next, n++) tree_stats(c, depth + 1, values, members, max_depth);
    if (n > *members) *members = n;
}

/* The JSON caps' scan of the header must count exactly what cJSON then builds: the values, the
 * members of the largest array or object, and the nesting; each cap one lower must refuse. */
static void check_json_scan(const char *text, size_t len) {
    const mmm_json_limits none = {0};
    void *root = NULL;
    if (mmm_json_parse(text, len, &none, "header", &root) != MMM_OK) return;
    size_t values = 0, members = 0;
    int depth = 0;
    tree_stats(root, 0, &values, &members, &depth);
    cJSON_Delete(root);
    const mmm_json_limits exact = {len, values, members, depth};
    if (mmm_json_check(text, len, &exact, "header") != MMM_OK)
        fuzz_bug("JSON of %zu values, %zu members at most, depth %d refused at exactly those caps: %s", values,
                 members, depth, mmm_last_error());
    const mmm_json_limits lower[3] = {{0, values - 1, 0, 0}, {0, 0, members - 1, 0}, {0, 0, 0, depth - 1}};
    const size_t cap[3] = {values - 1, members ? members - 1 : 0, depth ? (size_t)depth - 1 : 0};
    for (int k = 0; k < 3; k++) /* a cap of 0 means none */
        if (cap[k] > 0 && mmm_json_check(text, len, &lower[k], "header") == MMM_OK)
            fuzz_bug("JSON of %zu values, %zu members at most, depth %d passes a cap of %zu on %s", values, members,
                     depth, cap[k], k == 0 ? "values" : k == 1 ? "members" : "depth");
}

int mmm_fuzz_safetensors(const uint8_t *data, size_t size) {
    if (size >= 8) {
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--) hlen = hlen << 8 | data[i];
        check_json_scan((const char *)data + 8, hlen < size - 8 ? (size_t)hlen : size - 8);
    }
    const char *path = fuzz_write_file("fuzz.safetensors", data, size);
    if (!path) return MMM_ERR_IO;
    mmm_st_file *f = NULL;
    int rc = mmm_st_open(&f, path);
    if (rc == MMM_ERR_IO) fuzz_bug("an I/O error on a file just written: %s", mmm_last_error());
    if (rc) return rc;
    size_t n = mmm_st_count(f);
    for (size_t i = 0; i < n; i++) {
        const mmm_st_tensor *t = mmm_st_tensor_at(f, i);
        if (!t || mmm_st_find(f, t->name) != t) fuzz_bug("tensor %zu is not found by its name", i);
        read_tensor(t);
    }
    if (mmm_st_tensor_at(f, n)) fuzz_bug("mmm_st_tensor_at(%zu) past the end is not NULL", n);
    mmm_st_find(f, "");
    mmm_st_metadata(f, "format");
    mmm_st_close(f);
    return MMM_OK;
}

MMM_FUZZ_TARGET(safetensors)
