/* The image decoders behind mmm_image_load: image_load.c reads the file, recognises the format
 * and enforces the pixel budget on what each format's header says; image_jpeg.c (libjpeg-turbo),
 * image_webp.c (libwebp), image_pnm.c (binary PGM/PPM), image_gif.c (GIF, first frame),
 * image_bmp.c (BMP headers, 16-bit BMPs) and image_stb.c (stb_image: PNG, TGA, PSD, other BMPs)
 * read the headers and decode. */
#ifndef MMM_VISION_IMAGE_INTERNAL_H
#define MMM_VISION_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "mmm/image.h"

/* What a header promises. `cost` is how many budget pixels one pixel counts as: 2 for 16-bit
 * samples, whose decoders hold twice the bytes per pixel, else 1. */
typedef struct {
    int w, h;
    int cost;
    size_t file_size; /* set by the caller: the header may be read from the first bytes only */
} mmm_image_header;

/* Each reads the header from the first `size` bytes of an encoded file of hd->file_size bytes
 * (messages name `name`) and checks what it can without decoding: dimensions, and for
 * uncompressed formats that the pixel data the header promises is in the file. The decoders are called only once the header has passed the
 * pixel budget; they fill img->w, img->h and img->rgb. */
int mmm_jpeg_header(mmm_image_header *hd, const uint8_t *data, size_t size, const char *name);
int mmm_jpeg_decode(mmm_image *img, const uint8_t *data, size_t size, const char *name);
int mmm_webp_header(mmm_image_header *hd, const uint8_t *data, size_t size, const char *name);
int mmm_webp_decode(mmm_image *img, const uint8_t *data, size_t size, const char *name);
int mmm_pnm_header(mmm_image_header *hd, const uint8_t *data, size_t size, const char *name);
int mmm_pnm_decode(mmm_image *img, const uint8_t *data, size_t size, const char *name);
int mmm_gif_header(mmm_image_header *hd, const uint8_t *data, size_t size, const char *name);
int mmm_gif_decode(mmm_image *img, const uint8_t *data, size_t size, const char *name);
int mmm_bmp_header(mmm_image_header *hd, const uint8_t *data, size_t size, const char *name);
int mmm_bmp_decode(mmm_image *img, const uint8_t *data, size_t size, const char *name);
int mmm_stb_header(mmm_image_header *hd, const uint8_t *data, size_t size, const char *name);
int mmm_stb_decode(mmm_image *img, const uint8_t *data, size_t size, const char *name);

#endif
