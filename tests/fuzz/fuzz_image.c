/* Fuzz target: an encoded image through mmm_image_decode; when it decodes, InternVL tiling
 * (32-pixel tiles, at most 4 and a thumbnail) of images up to MAX_PIXELS. */
#include <stdlib.h>

#include "fuzz.h"
#include "mmm/error.h"
#include "mmm/image.h"

#define MAX_PIXELS (1 << 20) /* larger images only decode, so each run stays fast */
#define MAX_DECODE (1L << 22) /* the pixel limit: a few header bytes can ask for the default
                               * 2^24 pixels, about 200 MB a run */

int mmm_fuzz_image(const uint8_t *data, size_t size) {
    mmm_image img;
    int rc = mmm_image_decode(&img, data, size, "fuzz-image", MAX_DECODE);
    if (rc) return rc;
    if (img.w < 1 || img.h < 1 || (long)img.w * img.h > MAX_DECODE || !img.rgb)
        fuzz_bug("decoded a %d×%d image", img.w, img.h);
    if ((long)img.w * img.h <= MAX_PIXELS) {
        float *tiles = NULL;
        int n = 0;
        if (mmm_image_preprocess(&tiles, &n, &img, 32, 1, 4, 1) == MMM_OK && (n < 1 || n > 5))
            fuzz_bug("preprocess made %d tiles", n);
        free(tiles);
    }
    mmm_image_free(&img);
    return MMM_OK;
}

MMM_FUZZ_TARGET(image)
