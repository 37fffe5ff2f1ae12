/* image_url parts to the model's input tiles (prepare.h). A local path is taken only inside the
 * folder the server was given (resolved, links followed), so a request cannot read any file. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "mmm/error.h"
#include "mmm/image.h"
#include "mmm/path.h"
#include "prepare.h"

/* The file a local reference names, if it lies inside ctx->image_dir: *path malloc'd. */
static int local_path(const srv_prepare_ctx *ctx, const char *url, const char *param, char **path, srv_error *e) {
    *path = NULL;
    if (!ctx->image_dir)
        return srv_error_set(e, 400, "invalid_request_error", param,
                             "%s: this server takes images as data: URLs (base64) only", param);
    const char *p = strncmp(url, "file://", 7) ? url : url + 7;
    char dir[PATH_MAX], full[PATH_MAX];
    char *joined = p[0] == '/' ? strdup(p) : mmm_path_join(ctx->image_dir, p);
    if (!joined) return srv_error_set(e, 503, "server_error", param, "out of memory");
    int ok = realpath(ctx->image_dir, dir) && realpath(joined, full);
    free(joined);
    size_t n = strlen(dir);
    if (!ok || strncmp(full, dir, n) || full[n] != '/')
        return srv_error_set(e, 400, "invalid_request_error", param,
                             "%s: no such image in the server's image folder", param);
    if (!(*path = strdup(full))) return srv_error_set(e, 503, "server_error", param, "out of memory");
    return 0;
}

static int decode_one(const srv_prepare_ctx *ctx, const char *url, const char *param, mmm_image *img, srv_error *e) {
    int rc;
    if (!strncmp(url, "data:", 5)) {
        const char *comma = strchr(url, ',');
        if (!comma || comma - url < 12 || strncmp(comma - 7, ";base64", 7))
            return srv_error_set(e, 400, "invalid_request_error", param, "%s: a data: URL must be base64 (data:image/...;base64,...)", param);
        uint8_t *bytes = NULL;
        size_t n = 0;
        rc = srv_base64_decode(comma + 1, strlen(comma + 1), &bytes, &n, param);
        if (!rc) rc = mmm_image_from_memory(img, bytes, n, param);
        free(bytes);
    } else if (strstr(url, "://") && strncmp(url, "file://", 7)) {
        return srv_error_set(e, 400, "invalid_request_error", param,
                             "%s: images are taken as data: URLs or local files, not fetched", param);
    } else {
        char *path = NULL;
        if (local_path(ctx, url, param, &path, e)) return -1;
        rc = mmm_image_load(img, path);
        free(path);
    }
    if (rc)
        return srv_error_set(e, rc == MMM_ERR_NOMEM ? 503 : 400, rc == MMM_ERR_NOMEM ? "server_error" : "invalid_request_error",
                             param, "%s", mmm_last_error());
    return 0;
}

int srv_images_load(const srv_prepare_ctx *ctx, char *const *urls, int n, float **pixels, int *n_tiles, int *tiles,
                    srv_error *e) {
    const mmm_config *c = &ctx->m->cfg;
    *pixels = NULL;
    *n_tiles = 0;
    if (n && c->patch_size == 0)
        return srv_error_set(e, 400, "invalid_request_error", "messages", "the model has no vision front end, but images were given");
    size_t tile_floats = 3 * (size_t)c->tile_size * c->tile_size;
    for (int i = 0; i < n; i++) {
        char param[32];
        snprintf(param, sizeof param, "image %d", i + 1);
        mmm_image img = {0};
        float *t = NULL;
        int k = 0;
        if (decode_one(ctx, urls[i], param, &img, e)) break;
        int rc = mmm_image_preprocess(&t, &k, &img, c->tile_size, c->min_tiles, c->max_tiles, c->use_thumbnail);
        mmm_image_free(&img);
        float *grown = rc ? NULL : realloc(*pixels, (*n_tiles + k) * tile_floats * sizeof *grown);
        if (!grown) {
            free(t);
            srv_error_set(e, 503, "server_error", param, "%s", rc ? mmm_last_error() : "out of memory");
            break;
        }
        *pixels = grown;
        memcpy(grown + *n_tiles * tile_floats, t, k * tile_floats * sizeof *grown);
        free(t);
        tiles[i] = k;
        *n_tiles += k;
        if (i == n - 1) return 0;
    }
    if (!n) return 0;
    free(*pixels);
    *pixels = NULL;
    *n_tiles = 0;
    return -1;
}
