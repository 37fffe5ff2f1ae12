/* InternVL's dynamic tiling (dynamic_preprocess + build_transform): choose a grid of tiles
 * matching the image's aspect ratio, resize, cut, optionally add a thumbnail, normalise. */
#include "mmm/error.h"
#include "mmm/image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int mmm_image_tile_grid(int *cols, int *rows, int w, int h, int tile, int min_tiles,
                        int max_tiles) {
    if (w <= 0 || h <= 0 || tile <= 0 || min_tiles < 1 || max_tiles < min_tiles)
        return mmm_fail(MMM_ERR_ARG,
                        "tile grid: invalid image %d×%d, tile %d or tile range [%d, %d]", w, h,
                        tile, min_tiles, max_tiles);
    /* Python: aspect = w / h; diff = abs(aspect - i / j) — the same doubles here */
    double aspect = (double)w / h, area = (double)w * h, best_diff = INFINITY;
    int bc = 1, br = 1;
    for (int n = min_tiles; n <= max_tiles; n++) /* candidates by increasing cols·rows */
        for (int i = 1; i <= n; i++) {
            if (n % i) continue;
            int j = n / i;
            double diff = fabs(aspect - (double)i / j);
            if (diff < best_diff) {
                best_diff = diff;
                bc = i;
                br = j;
            } else if (diff == best_diff && area > 0.5 * tile * tile * i * j) {
                bc = i;
                br = j;
            }
        }
    *cols = bc;
    *rows = br;
    return MMM_OK;
}

/* ToTensor then Normalize, per channel and byte value: (u / 255 − mean) / std in fp32. */
static void make_lut(float lut[3][256]) {
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; c++)
        for (int u = 0; u < 256; u++) lut[c][u] = ((float)u / 255.0f - mean[c]) / std[c];
}

/* dst (3, tile, tile) = the normalised tile whose top-left pixel is (x0, y0) of img. */
static void put_tile(float *dst, const mmm_image *img, int x0, int y0, int tile,
                     float lut[3][256]) {
    for (int y = 0; y < tile; y++) {
        const uint8_t *src = img->rgb + ((size_t)(y0 + y) * img->w + x0) * 3;
        for (int c = 0; c < 3; c++) {
            float *d = dst + ((size_t)c * tile + y) * tile;
            for (int x = 0; x < tile; x++) d[x] = lut[c][src[3 * x + c]];
        }
    }
}

int mmm_image_preprocess(float **tiles, int *n_tiles, const mmm_image *img, int tile,
                         int min_tiles, int max_tiles, int use_thumbnail) {
    *tiles = NULL;
    *n_tiles = 0;
    int cols, rows;
    int rc = mmm_image_tile_grid(&cols, &rows, img->w, img->h, tile, min_tiles, max_tiles);
    if (rc) return rc;
    if (!img->rgb) return mmm_fail(MMM_ERR_ARG, "image preprocess: the image has no pixels");
    if ((long)tile * cols > MMM_IMAGE_MAX_SIDE || (long)tile * rows > MMM_IMAGE_MAX_SIDE)
        return mmm_fail(MMM_ERR_ARG, "image preprocess: a %d×%d grid of %d-pixel tiles is too "
                        "large", cols, rows, tile);
    int grid = cols * rows, n = grid + (use_thumbnail && grid > 1);
    size_t per_tile = (size_t)3 * tile * tile;
    float *out = malloc(n * per_tile * sizeof *out);
    if (!out)
        return mmm_fail(MMM_ERR_NOMEM, "image preprocess: cannot allocate %d tiles of %d²", n,
                        tile);
    float lut[3][256];
    make_lut(lut);

    mmm_image big;
    if ((rc = mmm_image_resize_bicubic(&big, img, tile * cols, tile * rows))) goto fail;
    for (int t = 0; t < grid; t++)
        put_tile(out + t * per_tile, &big, t % cols * tile, t / cols * tile, tile, lut);
    mmm_image_free(&big);
    if (n > grid) { /* the thumbnail is the original image, not the grid image, resized */
        mmm_image thumb;
        if ((rc = mmm_image_resize_bicubic(&thumb, img, tile, tile))) goto fail;
        put_tile(out + grid * per_tile, &thumb, 0, 0, tile, lut);
        mmm_image_free(&thumb);
    }
    *tiles = out;
    *n_tiles = n;
    return MMM_OK;
fail:
    free(out);
    return mmm_fail_context(rc, "image preprocess (%d×%d image, grid %d×%d of %d)", img->w,
                            img->h, cols, rows, tile);
}
