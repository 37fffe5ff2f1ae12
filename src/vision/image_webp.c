/* WebP (lossy and lossless) through libwebp, which Pillow's WebP plugin uses too: default
 * decoder options (fancy upsampling for lossy), alpha dropped as convert("RGB") drops it. A still
 * image is decoded straight into RGB (the same pixels as Pillow's animation decoder gives it); an
 * animation goes through libwebp's animation decoder in non-premultiplied RGBA, as Pillow's does,
 * and its first frame is kept. */
#include "image_internal.h"

#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>
#include <webp/demux.h>

#include "mmm/error.h"

int mmm_webp_header(mmm_image_header *hd, const uint8_t *data, size_t size, const char *name) {
    WebPBitstreamFeatures f;
    VP8StatusCode st = WebPGetFeatures(data, size, &f);
    if (st != VP8_STATUS_OK)
        return mmm_fail(MMM_ERR_FORMAT, "%s: not a readable WebP (libwebp status %d)", name,
                        (int)st);
    hd->w = f.width;
    hd->h = f.height;
    return MMM_OK;
}

/* The first frame of an animation, composited on its canvas (transparent black where it does
 * not reach). */
static int first_frame(uint8_t *rgb, int w, int h, const uint8_t *data, size_t size,
                       const char *name) {
    WebPAnimDecoderOptions opt;
    if (!WebPAnimDecoderOptionsInit(&opt))
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: cannot start libwebp's animation decoder", name);
    opt.color_mode = MODE_RGBA;
    WebPData wd = {data, size};
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&wd, &opt);
    WebPAnimInfo info;
    uint8_t *rgba;
    int ts;
    int ok = dec && WebPAnimDecoderGetInfo(dec, &info) && (int)info.canvas_width == w &&
             (int)info.canvas_height == h && WebPAnimDecoderGetNext(dec, &rgba, &ts);
    if (ok)
        for (size_t i = 0; i < (size_t)w * h; i++) memcpy(rgb + 3 * i, rgba + 4 * i, 3);
    WebPAnimDecoderDelete(dec);
    return ok ? MMM_OK : mmm_fail(MMM_ERR_FORMAT, "%s: corrupt or truncated animated WebP", name);
}

int mmm_webp_decode(mmm_image *img, const uint8_t *data, size_t size, const char *name) {
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg) || WebPGetFeatures(data, size, &cfg.input) != VP8_STATUS_OK)
        return mmm_fail(MMM_ERR_FORMAT, "%s: not a readable WebP", name);
    int w = cfg.input.width, h = cfg.input.height;
    size_t n = (size_t)w * h * 3;
    uint8_t *rgb = malloc(n);
    if (!rgb) return mmm_fail(MMM_ERR_NOMEM, "%s: cannot allocate %d×%d pixels", name, w, h);
    if (cfg.input.has_animation) {
        int rc = first_frame(rgb, w, h, data, size, name);
        if (rc) {
            free(rgb);
            return rc;
        }
        img->w = w;
        img->h = h;
        img->rgb = rgb;
        return MMM_OK;
    }
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
