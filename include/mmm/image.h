/* Images: loading into 8-bit RGB, Pillow-compatible bicubic resizing, and InternVL's dynamic
 * tiling into normalised model inputs. */
#ifndef MMM_IMAGE_H
#define MMM_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define MMM_IMAGE_MAX_SIDE 16384 /* larger images are refused before decoding */
/* The default pixel budget: 2^24 pixels (4096 × 4096; a 4000 × 3000 photo fits). Decoding holds up
 * to about 12 bytes per pixel at once, so it keeps `mmm forward` with an image under ~256 MB,
 * whatever the file's size; see mmm_image_set_max_pixels. */
#define MMM_IMAGE_MAX_PIXELS (1LL << 24)

typedef struct {
    int w, h;
    uint8_t *rgb; /* (h, w, 3), row-major, malloc'd */
} mmm_image;

/* Decodes a PNG, JPEG, WebP, BMP, PPM/PGM (binary), GIF, TGA or PSD file (the first frame of an
 * animation) into RGB exactly as PIL's Image.open(path).convert("RGB") does: gray is replicated
 * into the three channels, alpha is dropped (not composited), palettes are expanded, CMYK JPEGs
 * are converted with Pillow's formula, EXIF orientation is ignored, 16-bit gray is clipped to 255
 * (16-bit colour keeps its high byte), PGM/PPM samples are rescaled from their maxval as Pillow's
 * PPM plugin rescales them, a GIF's first frame is composited on its screen by Pillow's rules.
 * JPEG goes through libjpeg-turbo and WebP through libwebp, set up as Pillow sets them up (the
 * same pixels); PNG, BMP, TGA and PSD through stb_image.
 * Before anything is decoded, the header's dimensions must be within MMM_IMAGE_MAX_SIDE per side
 * and the pixel limit (mmm_image_max_pixels(); 16-bit images count twice), and an uncompressed
 * format's pixel data (BMP, PNM) must be in the file; a PNG whose data inflates to more than its
 * header's image is refused. Only regular files are opened (a FIFO is refused, not waited on).
 * Errors: MMM_ERR_NOT_FOUND (no such file), MMM_ERR_IO (unreadable, not a regular file),
 * MMM_ERR_FORMAT (empty, not an image, corrupt or truncated, 0 pixels), MMM_ERR_UNSUPPORTED (over
 * the side or pixel limit, HDR, JPEG of 2 or 5+ components). */
int mmm_image_load(mmm_image *img, const char *path);
/* The same with its own pixel limit instead of the process-wide one. */
int mmm_image_load_limit(mmm_image *img, const char *path, long long max_pixels);
/* The same from an encoded file in memory; `name` is used in messages. */
int mmm_image_from_memory(mmm_image *img, const void *data, size_t size, const char *name);
int mmm_image_decode(mmm_image *img, const void *data, size_t size, const char *name,
                     long long max_pixels);
/* The dimensions from the header alone, after the same checks as mmm_image_load (decoding
 * aside). */
int mmm_image_info(const char *path, int *w, int *h);

/* The process-wide pixel limit of mmm_image_load, mmm_image_from_memory and mmm_image_info
 * (default MMM_IMAGE_MAX_PIXELS); MMM_ERR_ARG below 1. Raising it raises the memory a single
 * small file can make decoding take, by up to about 12 bytes per pixel. */
int mmm_image_set_max_pixels(long long max_pixels);
long long mmm_image_max_pixels(void);
/* Frees img->rgb and zeroes img; a zeroed image is fine. */
void mmm_image_free(mmm_image *img);

/* Resizes to w × h exactly as Pillow's Image.resize((w, h), Image.BICUBIC) does on an RGB
 * image (byte for byte against Pillow 9.4): separable, horizontal pass then
 * vertical, each skipped when that side keeps its size; cubic a = −0.5 stretched by the
 * scale when downscaling (antialiasing); 22-bit fixed-point weights; the intermediate rounded
 * to uint8. `out` receives a new image (free it with mmm_image_free). */
int mmm_image_resize_bicubic(mmm_image *out, const mmm_image *in, int w, int h);

/* InternVL's find_closest_aspect_ratio: among the grids (cols, rows) with
 * min_tiles ≤ cols·rows ≤ max_tiles, taken by increasing cols·rows, the one whose cols/rows is
 * closest to w/h; on an exact tie the later grid wins if w·h > 0.5·tile²·cols·rows.
 * (Inside one cols·rows, Python's order is that of a set; it cannot change the result when
 * min_tiles is 1, and here it is by increasing cols.) */
int mmm_image_tile_grid(int *cols, int *rows, int w, int h, int tile, int min_tiles,
                        int max_tiles);

/* InternVL's dynamic_preprocess followed by its transform: resize to (tile·cols × tile·rows),
 * cut cols·rows tiles row-major, append the whole image resized to tile × tile when
 * use_thumbnail is set and there is more than one tile; then per pixel x/255, minus the
 * ImageNet mean (0.485, 0.456, 0.406), divided by the std (0.229, 0.224, 0.225), in fp32 as
 * torchvision's ToTensor + Normalize compute it. *tiles is malloc'd, (n_tiles, 3, tile, tile);
 * the grid is mmm_image_tile_grid's. */
int mmm_image_preprocess(float **tiles, int *n_tiles, const mmm_image *img, int tile,
                         int min_tiles, int max_tiles, int use_thumbnail);

#endif
