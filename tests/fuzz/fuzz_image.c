/* Fuzz target: an encoded image through mmm_image_from_memory; when it decodes, InternVL tiling
 * (32-pixel tiles, at most 4 and a thumbnail) of images up to MAX_PIXELS. */
#include <stdlib.h>

#include <stb/stb_image.h>

#include "fuzz.h"
#include "mmm/error.h"
#include "mmm/image.h"

#define MAX_PIXELS (1 << 20)  /* larger images only decode, so each run stays fast */
#define MAX_DECODE (1L << 22) /* larger ones are not decoded: a few header bytes can ask for
                               * 16384² pixels (1.6 GB with stb's buffer and ours) */

int mmm_fuzz_image(const uint8_t *data, size_t size) {
    int w, h, comp;
    if (size > 0 && size <= (1u << 30) && stbi_info_from_memory(data, (int)size, &w, &h, &comp) &&
        w > 0 && h > 0 && w <= MMM_IMAGE_MAX_SIDE && h <= MMM_IMAGE_MAX_SIDE && (long)w * h > MAX_DECODE)
        return MMM_ERR_UNSUPPORTED;
    mmm_image img;
    int rc = mmm_image_from_memory(&img, data, size, "fuzz-image");
    if (rc) return rc;
    if (img.w < 1 || img.h < 1 || img.w > MMM_IMAGE_MAX_SIDE || img.h > MMM_IMAGE_MAX_SIDE || !img.rgb)
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
