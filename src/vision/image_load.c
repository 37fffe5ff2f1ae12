/* Image files into 8-bit RGB: the file is opened only if it is a regular file and read whole,
 * so every error can name it; its format is recognised from its first bytes, and the header's
 * dimensions are checked against the pixel budget before any decoder allocates pixels. */
#include "image_internal.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "mmm/fileio.h"

static long long max_pixels = MMM_IMAGE_MAX_PIXELS;

int mmm_image_set_max_pixels(long long n) {
    if (n < 1) return mmm_fail(MMM_ERR_ARG, "image pixel limit %lld: must be at least 1", n);
    max_pixels = n;
    return MMM_OK;
}

long long mmm_image_max_pixels(void) { return max_pixels; }

void mmm_image_free(mmm_image *img) {
    if (!img) return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}

typedef int (*header_fn)(mmm_image_header *, const uint8_t *, size_t, const char *);
typedef int (*decode_fn)(mmm_image *, const uint8_t *, size_t, const char *);

/* The decoder for the file's first bytes: JPEG and WebP go to the libraries Pillow decodes
 * them with, binary PGM/PPM, GIF and BMP to Pillow's rules (BMP mostly through stb), everything
 * else to stb_image, which recognises (or refuses) it itself. */
static void pick(const uint8_t *d, size_t size, header_fn *header, decode_fn *decode) {
    /* stb_image would take FF FF … FF D8 for a JPEG too (and its JPEG decoder reads out of
     * bounds on some); libjpeg refuses it as Pillow does */
    if (size >= 2 && d[0] == 0xFF && (d[1] == 0xD8 || d[1] == 0xFF)) {
        *header = mmm_jpeg_header;
        *decode = mmm_jpeg_decode;
    } else if (size >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) {
        *header = mmm_webp_header;
        *decode = mmm_webp_decode;
    } else if (size >= 2 && d[0] == 'P' && (d[1] == '5' || d[1] == '6')) {
        *header = mmm_pnm_header;
        *decode = mmm_pnm_decode;
    } else if (size >= 6 && (!memcmp(d, "GIF87a", 6) || !memcmp(d, "GIF89a", 6))) {
        *header = mmm_gif_header;
        *decode = mmm_gif_decode;
    } else if (size >= 2 && d[0] == 'B' && d[1] == 'M') {
        *header = mmm_bmp_header;
        *decode = mmm_bmp_decode;
    } else {
        *header = mmm_stb_header;
        *decode = mmm_stb_decode;
    }
}

/* Reads and checks the header from the file's first `size` bytes (of file_size): the dimensions
 * are positive, within MMM_IMAGE_MAX_SIDE per side and within `limit` pixels (16-bit images
 * counting twice). */
static int checked_header(mmm_image_header *hd, decode_fn *decode, const uint8_t *d, size_t size,
                          size_t file_size, const char *name, long long limit) {
    memset(hd, 0, sizeof *hd);
    header_fn header;
    pick(d, size, &header, decode);
    if (file_size == 0) return mmm_fail(MMM_ERR_FORMAT, "%s: empty file, not an image", name);
    if (file_size > INT_MAX) /* stb_image takes an int size */
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: %zu bytes is too large an image file", name,
                        file_size);
    hd->cost = 1;
    hd->file_size = file_size;
    int rc = header(hd, d, size, name);
    if (rc) return rc;
    if (hd->w <= 0 || hd->h <= 0)
        return mmm_fail(MMM_ERR_FORMAT, "%s: image has no pixels (%d×%d)", name, hd->w, hd->h);
    if (hd->w > MMM_IMAGE_MAX_SIDE || hd->h > MMM_IMAGE_MAX_SIDE)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: image is %d×%d pixels, more than %d per side",
                        name, hd->w, hd->h, MMM_IMAGE_MAX_SIDE);
    if ((long long)hd->w * hd->h * hd->cost > limit)
        return mmm_fail(MMM_ERR_UNSUPPORTED,
                        "%s: image is %d×%d pixels%s, over the limit of %lld pixels", name, hd->w,
                        hd->h, hd->cost > 1 ? " of 16-bit samples (counted twice)" : "", limit);
    return MMM_OK;
}

int mmm_image_decode(mmm_image *img, const void *data, size_t size, const char *name,
                     long long limit) {
    memset(img, 0, sizeof *img);
    mmm_image_header hd;
    decode_fn decode;
    int rc = checked_header(&hd, &decode, data, size, size, name, limit);
    if (!rc) rc = decode(img, data, size, name);
    if (!rc && (img->w != hd.w || img->h != hd.h)) /* a decoder must honour what was checked */
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: decoded %d×%d pixels where the header says %d×%d",
                      name, img->w, img->h, hd.w, hd.h);
    if (rc) mmm_image_free(img);
    return rc;
}

int mmm_image_from_memory(mmm_image *img, const void *data, size_t size, const char *name) {
    return mmm_image_decode(img, data, size, name, max_pixels);
}

/* The file's first min(max, its size) bytes into *buf (*size of them) and its size, through
 * mmm_open_regular (a FIFO or device is refused, not waited on). */
static int read_file(const char *path, size_t max, uint8_t **buf, size_t *size,
                     size_t *file_size) {
    FILE *f;
    long long n;
    *buf = NULL;
    *size = *file_size = 0;
    int rc = mmm_open_regular(path, &f, &n);
    if (rc) return rc;
    if (n > INT_MAX) {
        fclose(f);
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: %lld bytes is too large an image file", path,
                        n);
    }
    *file_size = (size_t)n;
    size_t want = *file_size < max ? *file_size : max;
    *buf = malloc(want ? want : 1);
    if (!*buf) {
        fclose(f);
        return mmm_fail(MMM_ERR_NOMEM, "%s: cannot allocate %zu bytes to read it", path, want);
    }
    *size = fread(*buf, 1, want, f);
    int read_err = ferror(f);
    fclose(f);
    if (*size != want) {
        free(*buf);
        *buf = NULL;
        return mmm_fail(MMM_ERR_IO, "%s: read %zu of %zu bytes%s", path, *size, want,
                        read_err ? " (read error)" : "");
    }
    return MMM_OK;
}

int mmm_image_load_limit(mmm_image *img, const char *path, long long limit) {
    memset(img, 0, sizeof *img);
    uint8_t *buf;
    size_t size, file_size;
    int rc = read_file(path, SIZE_MAX, &buf, &size, &file_size);
    if (!rc) rc = mmm_image_decode(img, buf, size, path, limit);
    free(buf);
    return rc;
}

int mmm_image_load(mmm_image *img, const char *path) {
    return mmm_image_load_limit(img, path, max_pixels);
}

/* Headers sit in a file's first bytes, but a JPEG's frame header comes after its APP segments
 * (EXIF with a thumbnail, ICC profiles: tens of KB in a photo): a header that cannot be read from
 * the first 16 KB is read again from the first 256 KB, then from the whole file. */
int mmm_image_info(const char *path, int *w, int *h) {
    *w = *h = 0;
    static const size_t prefix[3] = {16 << 10, 256 << 10, SIZE_MAX};
    uint8_t *buf = NULL;
    size_t size, file_size;
    mmm_image_header hd;
    decode_fn decode;
    int rc;
    for (int i = 0;; i++) {
        free(buf);
        rc = read_file(path, prefix[i], &buf, &size, &file_size);
        if (!rc) rc = checked_header(&hd, &decode, buf, size, file_size, path, max_pixels);
        if (!rc || size == file_size || i == 2) break;
    }
    free(buf);
    if (rc) return rc;
    *w = hd.w;
    *h = hd.h;
    return MMM_OK;
}
