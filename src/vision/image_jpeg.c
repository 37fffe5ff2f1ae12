/* JPEG through libjpeg-turbo's libjpeg API, set up as Pillow's JPEG decoder sets it up, so the
 * pixels equal Image.open(path).convert("RGB") byte for byte: the accurate integer IDCT
 * (JDCT_ISLOW) and fancy (triangular) chroma upsampling, libjpeg's own colour-space guess
 * (JFIF/Adobe markers), gray replicated, CMYK/YCCK taken as Adobe-inverted CMYK and converted
 * with Pillow's formula; the EXIF orientation is ignored, as convert("RGB") ignores it.
 * libjpeg's warnings about corrupt data are ignored as Pillow ignores them, but running out of
 * data is an error, as Pillow's "image file is truncated". */
#include "image_internal.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "mmm/error.h"

/* Each progressive scan is a pass over the coefficients of the whole image: a few bytes per scan
 * could make a small file decode for minutes. Real encoders write about ten. */
#define MAX_SCANS 1000

typedef struct {
    struct jpeg_error_mgr pub;
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_ctx;

static void on_error(j_common_ptr c) {
    jpeg_ctx *x = (jpeg_ctx *)c->err;
    c->err->format_message(c, x->msg);
    longjmp(x->jump, 1);
}

static void on_message(j_common_ptr c, int level) {
    jpeg_ctx *x = (jpeg_ctx *)c->err;
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) {
        snprintf(x->msg, sizeof x->msg, "the data ends before the image does");
        longjmp(x->jump, 1);
    }
}

static void on_progress(j_common_ptr c) {
    j_decompress_ptr d = (j_decompress_ptr)c;
    jpeg_ctx *x = (jpeg_ctx *)c->err;
    if (d->input_scan_number > MAX_SCANS) {
        snprintf(x->msg, sizeof x->msg, "more than %d progressive scans", MAX_SCANS);
        longjmp(x->jump, 1);
    }
}

/* Error handling that returns here instead of exiting; the caller calls setjmp(x->jump). */
static void setup(struct jpeg_decompress_struct *d, jpeg_ctx *x, const uint8_t *data,
                  size_t size) {
    memset(x, 0, sizeof *x);
    d->err = jpeg_std_error(&x->pub);
    x->pub.error_exit = on_error;
    x->pub.emit_message = on_message;
    jpeg_create_decompress(d);
    x->progress.progress_monitor = on_progress;
    d->progress = &x->progress;
    jpeg_mem_src(d, data, (unsigned long)size);
}

/* Pillow takes 1, 3 and 4 components as L, RGB and CMYK; so does this. */
static int check_components(const struct jpeg_decompress_struct *d, const char *name) {
    int n = d->num_components;
    if (n == 1 || n == 3 || n == 4) return MMM_OK;
    return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: JPEG with %d colour components is not supported",
                    name, n);
}

int mmm_jpeg_header(mmm_image_header *hd, const uint8_t *data, size_t size, const char *name) {
    struct jpeg_decompress_struct d;
    jpeg_ctx x;
    setup(&d, &x, data, size);
    if (setjmp(x.jump)) {
        jpeg_destroy_decompress(&d);
        return mmm_fail(MMM_ERR_FORMAT, "%s: not a readable JPEG (%s)", name, x.msg);
    }
    int rc = jpeg_read_header(&d, TRUE) == JPEG_HEADER_OK
                 ? check_components(&d, name)
                 : mmm_fail(MMM_ERR_FORMAT, "%s: JPEG tables without an image", name);
    hd->w = (int)d.image_width;
    hd->h = (int)d.image_height;
    jpeg_destroy_decompress(&d);
    return rc;
}

/* Pillow's unpacker for its "CMYK;I" raw mode inverts the four samples; its CMYK → RGB
 * conversion is then r = (255 − k) − (255 − k)·c/255, the product rounded as Pillow's MULDIV255.
 * With c and k the inverted samples that is the row below. */
static void cmyk_row(uint8_t *rgb, const uint8_t *cmyk, int w) {
    for (int i = 0; i < w; i++) {
        int nk = cmyk[4 * i + 3]; /* 255 − (255 − K) */
        for (int ch = 0; ch < 3; ch++) {
            int t = (255 - cmyk[4 * i + ch]) * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            rgb[3 * i + ch] = (uint8_t)(v < 0 ? 0 : v);
        }
    }
}

int mmm_jpeg_decode(mmm_image *img, const uint8_t *data, size_t size, const char *name) {
    struct jpeg_decompress_struct d;
    jpeg_ctx x;
    /* volatile: assigned after setjmp and used after a longjmp back to it */
    uint8_t *volatile rgb = NULL, *volatile row = NULL;
    setup(&d, &x, data, size);
    if (setjmp(x.jump)) {
        jpeg_destroy_decompress(&d);
        free(rgb);
        free(row);
        return mmm_fail(MMM_ERR_FORMAT, "%s: corrupt or truncated JPEG (%s)", name, x.msg);
    }
    jpeg_read_header(&d, TRUE); /* mmm_jpeg_header has accepted it */
    int n = d.num_components;
    d.out_color_space = n == 1 ? JCS_GRAYSCALE : n == 3 ? JCS_RGB : JCS_CMYK;
    d.dct_method = JDCT_ISLOW;
    d.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&d);
    int w = (int)d.output_width, h = (int)d.output_height;
    size_t stride = (size_t)w * 3;
    rgb = malloc(stride * h);
    if (n == 4) row = malloc((size_t)w * 4);
    if (!rgb || (n == 4 && !row)) {
        jpeg_destroy_decompress(&d);
        free(rgb);
        free(row);
        return mmm_fail(MMM_ERR_NOMEM, "%s: cannot allocate %d×%d pixels", name, w, h);
    }
    while (d.output_scanline < d.output_height) {
        int y = (int)d.output_scanline;
        uint8_t *out = rgb + stride * y;
        JSAMPROW dst = n == 4 ? row : out; /* gray lands in the row's first third */
        jpeg_read_scanlines(&d, &dst, 1);
        if (n == 4) cmyk_row(out, row, w);
        else if (n == 1)
            for (int i = w - 1; i >= 0; i--) out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = out[i];
    }
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    free(row);
    img->w = w;
    img->h = h;
    img->rgb = rgb;
    return MMM_OK;
}
