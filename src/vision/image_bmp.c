/* BMP: the header is read here before stb_image sees the file: a top-down BMP (negative height)
 * gets its real height, and the pixel rows an uncompressed BMP promises must be in the file (stb
 * would allocate them and decode what is missing as black). 16-bit BMPs in the two layouts Pillow
 * reads (5-5-5, 5-6-5) are decoded here with Pillow's channel expansion, v·255/31 (or /63)
 * rounded down, where stb replicates the high bits (one level apart); the rest goes to stb. */
#include "image_internal.h"

#include <limits.h>
#include <stdlib.h>

#include "mmm/error.h"

typedef struct {
    int64_t w, h;          /* h > 0 */
    int top_down;          /* rows stored top first (a negative height in the file) */
    uint32_t offset, hsz, bpp, compression;
    int layout;            /* 16-bit layouts Pillow reads: 555 or 565; 0 otherwise */
} bmp_info;

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}
static uint32_t le16(const uint8_t *p) { return (uint32_t)p[1] << 8 | p[0]; }

static int parse(bmp_info *b, const uint8_t *d, size_t size, const char *name) {
    if (size < 30) return mmm_fail(MMM_ERR_FORMAT, "%s: truncated BMP header", name);
    b->offset = le32(d + 10), b->hsz = le32(d + 14), b->compression = 0, b->layout = 0;
    if (b->hsz == 12) {
        b->w = le16(d + 18);
        b->h = le16(d + 20);
        b->bpp = le16(d + 24);
    } else {
        if (size < 34) return mmm_fail(MMM_ERR_FORMAT, "%s: truncated BMP header", name);
        b->w = (int32_t)le32(d + 18);
        b->h = (int32_t)le32(d + 22);
        b->bpp = le16(d + 28);
        b->compression = le32(d + 30);
    }
    b->top_down = b->h < 0;
    if (b->h < 0) b->h = -b->h;
    if (b->bpp == 16 && b->compression == 0) b->layout = 555;
    if (b->bpp == 16 && b->compression == 3 && b->hsz >= 40 && size >= 66) {
        /* the masks follow a 40-byte header, or sit at the same place inside a longer one */
        uint32_t r = le32(d + 54), g = le32(d + 58), bl = le32(d + 62);
        if (r == 0x7C00 && g == 0x3E0 && bl == 0x1F) b->layout = 555;
        if (r == 0xF800 && g == 0x7E0 && bl == 0x1F) b->layout = 565;
    }
    return MMM_OK;
}

static unsigned long long row_bytes(const bmp_info *b) {
    return ((unsigned long long)b->w * b->bpp + 31) / 32 * 4;
}

int mmm_bmp_header(mmm_image_header *hd, const uint8_t *d, size_t size, const char *name) {
    int rc = mmm_stb_header(hd, d, size, name); /* what stb cannot read is refused here */
    bmp_info b = {0};
    if (!rc) rc = parse(&b, d, size, name);
    if (rc) return rc;
    hd->w = b.w > INT_MAX ? INT_MAX : (int)b.w;
    hd->h = b.h > INT_MAX ? INT_MAX : (int)b.h;
    if (b.w <= 0 || b.h <= 0 || b.w > MMM_IMAGE_MAX_SIDE || b.h > MMM_IMAGE_MAX_SIDE) return MMM_OK;
    if (b.compression == 0 || b.compression == 3) { /* BI_RGB, BI_BITFIELDS */
        unsigned long long start = b.offset > 14 + b.hsz ? b.offset : 14 + b.hsz;
        unsigned long long need = start + row_bytes(&b) * b.h;
        if (need > hd->file_size)
            return mmm_fail(MMM_ERR_FORMAT,
                            "%s: truncated BMP: its %d×%d header needs %llu bytes, the file has %zu",
                            name, hd->w, hd->h, need, hd->file_size);
    }
    return MMM_OK;
}

int mmm_bmp_decode(mmm_image *img, const uint8_t *d, size_t size, const char *name) {
    bmp_info b;
    int rc = parse(&b, d, size, name);
    if (rc) return rc;
    if (!b.layout) return mmm_stb_decode(img, d, size, name);
    if (b.offset < 14 + b.hsz)
        return mmm_fail(MMM_ERR_FORMAT, "%s: BMP pixel data at byte %u, inside its header", name,
                        b.offset);
    int w = (int)b.w, h = (int)b.h, green = b.layout == 565 ? 63 : 31;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    if (!rgb) return mmm_fail(MMM_ERR_NOMEM, "%s: cannot allocate %d×%d pixels", name, w, h);
    for (int y = 0; y < h; y++) {
        const uint8_t *row = d + b.offset + row_bytes(&b) * (b.top_down ? y : h - 1 - y);
        uint8_t *out = rgb + (size_t)3 * w * y;
        for (int x = 0; x < w; x++) {
            unsigned v = le16(row + 2 * x);
            unsigned r = b.layout == 565 ? v >> 11 & 31 : v >> 10 & 31;
            unsigned g = b.layout == 565 ? v >> 5 & 63 : v >> 5 & 31;
            out[3 * x] = (uint8_t)(r * 255 / 31);
            out[3 * x + 1] = (uint8_t)(g * 255 / green);
            out[3 * x + 2] = (uint8_t)((v & 31) * 255 / 31);
        }
    }
    img->w = w;
    img->h = h;
    img->rgb = rgb;
    return MMM_OK;
}
