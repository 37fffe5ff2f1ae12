/* WebP (lossy and lossless, still images) through libwebp, which Pillow's WebP plugin uses too:
 * default decoder options (fancy upsampling for lossy), decoded straight into RGB, alpha dropped
 * as convert("RGB") drops it. Animations are refused (libwebp's still-image decoder cannot read
 * them). */
#include "image_internal.h"

#include <stdlib.h>

#include <webp/decode.h>

#include "mmm/error.h"

int mmm_webp_header(mmm_image_header *hd, const uint8_t *data, size_t size, const char *name) {
    WebPBitstreamFeatures f;
    VP8StatusCode st = WebPGetFeatures(data, size, &f);
    if (st != VP8_STATUS_OK)
        return mmm_fail(MMM_ERR_FORMAT, "%s: not a readable WebP (libwebp status %d)", name,
                        (int)st);
    if (f.has_animation)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: animated WebP is not supported", name);
    hd->w = f.width;
    hd->h = f.height;
    return MMM_OK;
}

int mmm_webp_decode(mmm_image *img, const uint8_t *data, size_t size, const char *name) {
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg) || WebPGetFeatures(data, size, &cfg.input) != VP8_STATUS_OK)
        return mmm_fail(MMM_ERR_FORMAT, "%s: not a readable WebP", name);
    int w = cfg.input.width, h = cfg.input.height;
    size_t n = (size_t)w * h * 3;
    uint8_t *rgb = malloc(n);
    if (!rgb) return mmm_fail(MMM_ERR_NOMEM, "%s: cannot allocate %d×%d pixels", name, w, h);
    cfg.output.colorspace = MODE_RGB;
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA.rgba = rgb;
    cfg.output.u.RGBA.stride = w * 3;
    cfg.output.u.RGBA.size = n;
    VP8StatusCode st = WebPDecode(data, size, &cfg);
    WebPFreeDecBuffer(&cfg.output);
    if (st != VP8_STATUS_OK) {
        free(rgb);
        return mmm_fail(MMM_ERR_FORMAT, "%s: corrupt or truncated WebP (libwebp status %d)", name,
                        (int)st);
    }
    img->w = w;
    img->h = h;
    img->rgb = rgb;
    return MMM_OK;
}
