#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mmm/comm.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/image.h"
#include "mmm/path.h"
#include "mmm/threads.h"

int cli_fail(const char *cmd) {
    fprintf(stderr, "mmm %s: %s\n", cmd, mmm_last_error());
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mmm %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see mmm %s --help)\n", cmd);
    va_end(ap);
    return 2;
}

int cli_bad_option(const char *cmd, int o, char **argv) {
    const char *arg = argv[optind - 1]; /* getopt has just stepped past it */
    if (strncmp(arg, "--", 2)) /* a short option: optopt is its letter */
        return cli_usage_error(cmd, o == ':' ? "-%c needs a value" : "unknown option '-%c'", optopt);
    /* a long one: optopt is its value when it is known, 0 when not */
    int len = (int)strcspn(arg, "=");
    if (!optopt) return cli_usage_error(cmd, "unknown option '%.*s'", len, arg);
    return cli_usage_error(cmd, arg[len] ? "%.*s takes no value" : "%.*s needs a value", len, arg);
}

int cli_parse_long(const char *cmd, const char *opt, const char *value, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    /* strtol skips leading blanks: a value must start with its sign or first digit */
    if (end == value || *end || errno || isspace((unsigned char)*value) || v < lo || v > hi) {
        if (hi >= INT_MAX) fprintf(stderr, "mmm %s: %s must be a whole number >= %ld, not '%s'\n", cmd, opt, lo, value);
        else fprintf(stderr, "mmm %s: %s must be a whole number from %ld to %ld, not '%s'\n", cmd, opt, lo, hi, value);
        return 2;
    }
    *out = v;
    return 0;
}

int cli_parse_image_limit(const char *cmd, const char *value) {
    long v;
    if (cli_parse_long(cmd, "--max-image-pixels", value, 1, LONG_MAX, &v)) return 2;
    return mmm_image_set_max_pixels(v) ? 2 : 0;
}

int cli_parse_threads(const char *cmd, const char *value) {
    int n;
    if (cli_parse_int(cmd, "--threads", value, 1, MMM_MAX_THREADS, &n)) return 2;
    return mmm_set_threads(n) ? cli_fail(cmd) : 0;
}

int cli_parse_int(const char *cmd, const char *opt, const char *value, int lo, int hi, int *out) {
    long v;
    int rc = cli_parse_long(cmd, opt, value, lo, hi, &v);
    if (!rc) *out = (int)v;
    return rc;
}

int cli_parse_double(const char *cmd, const char *opt, const char *value, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    /* !(v >= lo) also refuses nan */
    if (end == value || *end || errno || isspace((unsigned char)*value) || !(v >= lo) || v > hi || isinf(v)) {
        if (isinf(hi)) fprintf(stderr, "mmm %s: %s must be a number >= %g, not '%s'\n", cmd, opt, lo, value);
        else fprintf(stderr, "mmm %s: %s must be a number from %g to %g, not '%s'\n", cmd, opt, lo, hi, value);
        return 2;
    }
    *out = v;
    return 0;
}

int cli_parse_float(const char *cmd, const char *opt, const char *value, double lo, double hi, float *out) {
    double v;
    int rc = cli_parse_double(cmd, opt, value, lo, hi, &v);
    if (!rc) *out = (float)v;
    return rc;
}

int cli_parse_seed(const char *cmd, const char *value, uint64_t *seed) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    /* strtoull skips blanks and accepts a sign, wrapping "-1" to 2^64 − 1 */
    if (end == value || *end || errno || !isdigit((unsigned char)*value)) {
        fprintf(stderr, "mmm %s: --seed must be a whole number from 0 to %llu, not '%s'\n", cmd,
                (unsigned long long)UINT64_MAX, value);
        return 2;
    }
    *seed = v;
    return 0;
}

int cli_copy_tokenizer(const char *from_dir, const char *to_dir) {
    int rc = MMM_OK;
    for (int i = 0; i < MMM_TOKENIZER_N_FILES && !rc; i++) {
        char *src = mmm_path_join(from_dir, mmm_tokenizer_files[i]), *dst = mmm_path_join(to_dir, mmm_tokenizer_files[i]);
        if (!src || !dst) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
        else if (access(src, F_OK) == 0) rc = mmm_copy_file(src, dst);
        free(src);
        free(dst);
    }
    return rc;
}

int cli_load_images(const mmm_model *m, char **paths, int n_images, float **pixels, int *n_tiles,
                    int *tiles_per_image) {
    const mmm_config *c = &m->cfg;
    *pixels = NULL;
    *n_tiles = 0;
    if (n_images == 0) return MMM_OK;
    if (c->patch_size == 0) return mmm_fail(MMM_ERR_ARG, "the model has no vision front end, but images were given");
    size_t tile_floats = 3 * (size_t)c->tile_size * c->tile_size;
    for (int i = 0; i < n_images; i++) {
        mmm_image img = {0};
        float *tiles = NULL;
        int n = 0;
        int rc = mmm_image_load(&img, paths[i]);
        if (!rc) rc = mmm_image_preprocess(&tiles, &n, &img, c->tile_size, c->min_tiles, c->max_tiles, c->use_thumbnail);
        mmm_image_free(&img);
        if (rc) {
            free(*pixels);
            return rc;
        }
        float *grown = realloc(*pixels, (*n_tiles + n) * tile_floats * sizeof *grown);
        if (!grown) {
            free(tiles);
            free(*pixels);
            return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", paths[i]);
        }
        *pixels = grown;
        memcpy(grown + *n_tiles * tile_floats, tiles, n * tile_floats * sizeof *grown);
        free(tiles);
        tiles_per_image[i] = n;
        *n_tiles += n;
    }
    return MMM_OK;
}

int cli_parse_ids(const char *text, int32_t **ids, int *n) {
    size_t cap = strlen(text) / 2 + 2;
    int32_t *out = malloc(cap * sizeof *out);
    if (!out) return mmm_fail(MMM_ERR_NOMEM, "out of memory");
    int count = 0;
    const char *p = text;
    while (*p) {
        while (*p && (isspace((unsigned char)*p) || *p == ',')) p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < -1 || v > INT32_MAX || (*end && !isspace((unsigned char)*end) && *end != ',')) {
            free(out);
            return mmm_fail(MMM_ERR_ARG, "token ids: cannot read '%.20s' as a token id (ids are "
                            "integers separated by commas or spaces; -1 marks an image)", p);
        }
        out[count++] = (int32_t)v;
        p = end;
    }
    if (count == 0) {
        free(out);
        return mmm_fail(MMM_ERR_ARG, "token ids: no ids given");
    }
    *ids = out;
    *n = count;
    return MMM_OK;
}

int cli_expand_image_markers(const mmm_model *m, const int32_t *ids, int n,
                             const int *tiles_per_image, int n_images, int32_t **out, int *n_out) {
    const mmm_config *c = &m->cfg;
    int markers = 0;
    for (int i = 0; i < n; i++) markers += ids[i] == -1;
    if (markers != n_images)
        return mmm_fail(MMM_ERR_ARG, "the ids have %d image marker(s) (-1) but %d image(s) were given",
                        markers, n_images);
    if (n_images && (c->img_start_id < 0 || c->img_end_id < 0 || c->img_context_id < 0))
        return mmm_fail(MMM_ERR_ARG, "the model's config has no <img>, </img> or <IMG_CONTEXT> token");
    long total = n;
    int tpt = c->patch_size ? mmm_config_tokens_per_tile(c) : 0;
    for (int i = 0; i < n_images; i++) total += 1 + (long)tiles_per_image[i] * tpt;
    int32_t *o = malloc((size_t)total * sizeof *o);
    if (!o) return mmm_fail(MMM_ERR_NOMEM, "out of memory");
    int k = 0, img = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] != -1) {
            o[k++] = ids[i];
            continue;
        }
        o[k++] = c->img_start_id;
        for (long j = 0; j < (long)tiles_per_image[img] * tpt; j++) o[k++] = c->img_context_id;
        o[k++] = c->img_end_id;
        img++;
    }
    *out = o;
    *n_out = k;
    return MMM_OK;
}

int cli_workers(int requested, int accum) {
    int w = requested > 0 ? requested : omp_get_max_threads();
    if (w > accum) w = accum;
    return w < MMM_TRAIN_MAX_WORKERS ? w : MMM_TRAIN_MAX_WORKERS;
}

int cli_ranks(const mmm_run_facts *facts, struct mmm_comm **comm) {
    size_t cap = 1;
    for (int i = 0; i < facts->n; i++) cap += strlen(facts->facts[i].key) + strlen(facts->facts[i].value) + 2;
    char *fp = malloc(cap), *p = fp;
    if (!fp) return mmm_fail(MMM_ERR_NOMEM, "out of memory");
    *p = '\0';
    for (int i = 0; i < facts->n; i++) p += sprintf(p, "%s=%s;", facts->facts[i].key, facts->facts[i].value);
    int rc = mmm_comm_from_env(fp, comm);
    free(fp);
    return rc;
}
