/* PNG, TGA, PSD and most BMPs (image_bmp.c reads their headers first) through stb_image
 * (Debian's libstb). stb trusts headers: it allocates what they declare and fills what the file
 * lacks with zeros, and it inflates a PNG's data into a buffer that grows with whatever the
 * stream holds. So before stb sees a PNG, its compressed data is inflated once, without keeping
 * it, to make sure it holds no more than its IHDR's image. */
#include "image_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image.h>
#include <zlib.h>

#include "mmm/error.h"

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int is_png(const uint8_t *d, size_t size) {
    return size >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8);
}

/* Walks a PNG's chunks: on each call *off moves past one chunk, whose type and data it returns;
 * 0 at the end of the file or at a chunk that overruns it (stb reports those). */
static int png_chunk(const uint8_t *d, size_t size, size_t *off, const uint8_t **type,
                     const uint8_t **data, uint32_t *len) {
    if (*off > size || size - *off < 12) return 0;
    *len = be32(d + *off);
    if (*len > size - *off - 12) return 0;
    *type = d + *off + 4;
    *data = d + *off + 8;
    *off += 12 + (size_t)*len;
    return 1;
}

typedef struct {
    uint32_t w, h;
    int depth, color, interlace, cgbi; /* cgbi: Apple's variant, raw deflate without zlib header */
} png_ihdr;

static int png_read_ihdr(png_ihdr *p, const uint8_t *d, size_t size) {
    memset(p, 0, sizeof *p);
    size_t off = 8;
    const uint8_t *type, *data;
    uint32_t len;
    while (png_chunk(d, size, &off, &type, &data, &len)) {
        if (!memcmp(type, "CgBI", 4)) p->cgbi = 1;
        else if (!memcmp(type, "IHDR", 4) && len >= 13) {
            p->w = be32(data);
            p->h = be32(data + 4);
            p->depth = data[8];
            p->color = data[9];
            p->interlace = data[12];
            return 1;
        } else return 0;
    }
    return 0;
}

/* The bytes a PNG's inflated data holds for its image: a filter byte and the packed samples
 * per row, for each of the seven Adam7 passes when interlaced. */
static unsigned long long png_raw_bytes(const png_ihdr *p) {
    static const int channels[7] = {1, 0, 3, 1, 2, 0, 4};
    unsigned long long bits = (unsigned long long)p->depth *
                              (p->color >= 0 && p->color < 7 ? channels[p->color] : 4);
    static const int x0[7] = {0, 4, 0, 2, 0, 1, 0}, y0[7] = {0, 0, 4, 0, 2, 0, 1},
                     dx[7] = {8, 8, 4, 4, 2, 2, 1}, dy[7] = {8, 8, 8, 4, 4, 2, 2};
    unsigned long long total = 0;
    for (int k = 0; k < (p->interlace ? 7 : 1); k++) {
        unsigned long long w = p->interlace ? (p->w + dx[k] - 1 - x0[k]) / dx[k] : p->w;
        unsigned long long h = p->interlace ? (p->h + dy[k] - 1 - y0[k]) / dy[k] : p->h;
        if (p->interlace && (p->w <= (uint32_t)x0[k] || p->h <= (uint32_t)y0[k])) continue;
        total += h * (1 + (w * bits + 7) / 8);
    }
    return total;
}

/* Inflates the IDAT data into a scratch buffer, counting: more than the image needs is refused
 * (stb would grow its buffer to hold it all: a 1 MB file can inflate to 1 GB). A stream that is
 * corrupt or short is left to stb to report. */
static int png_check_inflate(const uint8_t *d, size_t size, const char *name) {
    png_ihdr p;
    if (!png_read_ihdr(&p, d, size)) return MMM_OK;
    unsigned long long need = png_raw_bytes(&p);
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, p.cgbi ? -15 : 15) != Z_OK)
        return mmm_fail(MMM_ERR_NOMEM, "%s: cannot start zlib", name);
    static _Thread_local uint8_t scratch[1 << 15];
    size_t off = 8;
    const uint8_t *type, *data;
    uint32_t len;
    int zrc = Z_OK;
    while (zrc == Z_OK && png_chunk(d, size, &off, &type, &data, &len)) {
        if (memcmp(type, "IDAT", 4)) continue;
        z.next_in = (Bytef *)data;
        z.avail_in = len;
        while (z.avail_in && z.total_out <= need) {
            z.next_out = scratch;
            z.avail_out = sizeof scratch;
            if ((zrc = inflate(&z, Z_NO_FLUSH)) != Z_OK) break;
        }
        if (zrc == Z_BUF_ERROR) zrc = Z_OK; /* no progress possible: on to the next chunk */
        if (z.total_out > need) break;
    }
    unsigned long long got = z.total_out;
    inflateEnd(&z);
    if (got > need)
        return mmm_fail(MMM_ERR_FORMAT,
                        "%s: corrupt PNG: its data inflates to more than the %llu bytes its "
                        "%u×%u header needs",
                        name, need, p.w, p.h);
    return MMM_OK;
}

int mmm_stb_header(mmm_image_header *hd, const uint8_t *d, size_t size, const char *name) {
    png_ihdr p;
    if (is_png(d, size) && png_read_ihdr(&p, d, size) &&
        (p.w - 1 >= MMM_IMAGE_MAX_SIDE || p.h - 1 >= MMM_IMAGE_MAX_SIDE)) {
        /* for the caller to refuse by its size, before stb refuses it as an "unknown image" */
        hd->w = p.w > INT_MAX ? INT_MAX : (int)p.w;
        hd->h = p.h > INT_MAX ? INT_MAX : (int)p.h;
        return MMM_OK;
    }
    int w, h, comp;
    if (!stbi_info_from_memory(d, (int)size, &w, &h, &comp))
        return mmm_fail(MMM_ERR_FORMAT, "%s: not a readable image (%s)", name,
                        stbi_failure_reason());
    if (stbi_is_hdr_from_memory(d, (int)size))
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: HDR images are not supported", name);
    hd->w = w;
    hd->h = h;
    hd->cost = stbi_is_16_bit_from_memory(d, (int)size) ? 2 : 1;
    return MMM_OK;
}

int mmm_stb_decode(mmm_image *img, const uint8_t *d, size_t size, const char *name) {
    if (is_png(d, size)) {
        int rc = png_check_inflate(d, size, name);
        if (rc) return rc;
    }
    int w, h, comp;
    stbi_info_from_memory(d, (int)size, &w, &h, &comp);
    /* req_comp = 3 replicates gray and drops alpha, as PIL's convert("RGB") does. 16-bit gray is
     * the exception: PIL opens it as 32-bit integers (mode "I"), which convert("RGB") clips to
     * 255; here it is loaded as 16-bit gray and clipped the same way. */
    int gray16 = comp == 1 && stbi_is_16_bit_from_memory(d, (int)size);
    void *px = gray16 ? (void *)stbi_load_16_from_memory(d, (int)size, &w, &h, &comp, 1)
                      : (void *)stbi_load_from_memory(d, (int)size, &w, &h, &comp, 3);
    if (!px)
        return mmm_fail(MMM_ERR_FORMAT, "%s: corrupt or truncated image data (%s)", name,
                        stbi_failure_reason());
    size_t n = (size_t)w * h * 3;
    img->rgb = malloc(n);
    if (!img->rgb) {
        stbi_image_free(px);
        return mmm_fail(MMM_ERR_NOMEM, "%s: cannot allocate %zu bytes of pixels", name, n);
    }
    if (gray16) { /* stb's buffer must go back through stbi_image_free */
        const uint16_t *v = px;
        for (size_t i = 0; i < n; i++) img->rgb[i] = (uint8_t)(v[i / 3] > 255 ? 255 : v[i / 3]);
    } else memcpy(img->rgb, px, n);
    stbi_image_free(px);
    img->w = w;
    img->h = h;
    return MMM_OK;
}
