/* Binary PGM (P5) and PPM (P6), read as Pillow 9.4's PPM plugin reads them (stb_image neither
 * rescales other maxvals nor reads 16-bit samples big-endian): maxval 255 is taken as is; 16-bit
 * gray at maxval 65535 as is, clipped to 255 by convert("RGB"); any other maxval is rescaled,
 * value = min(out_max, round(value / maxval · out_max)) in double precision with ties to even,
 * out_max being 65535 for 16-bit gray (then clipped to 255) and 255 otherwise. */
#include "image_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"

typedef struct {
    int w, h, channels;
    long maxval;
    size_t data; /* offset of the first sample */
} pnm_info;

static int is_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Pillow's header tokens: whitespace skipped, '#' comments skipped up to CR or LF (also inside
 * a token), at most 10 characters, ended by one whitespace byte, which is consumed. */
static int token(const uint8_t *d, size_t size, size_t *at, long *v) {
    char tok[11];
    int n = 0;
    while (*at < size) {
        uint8_t c = d[(*at)++];
        if (is_space(c)) {
            if (n) break;
        } else if (c == '#') {
            while (*at < size && d[*at] != '\r' && d[*at] != '\n') ++*at;
            if (*at < size) ++*at;
        } else if (n == 10 || c < '0' || c > '9') {
            return 0;
        } else tok[n++] = (char)c;
    }
    if (!n) return 0;
    tok[n] = '\0';
    *v = strtol(tok, NULL, 10);
    return 1;
}

static int parse(pnm_info *p, const uint8_t *d, size_t size, const char *name) {
    long w, h;
    size_t at = 2;
    p->channels = d[1] == '6' ? 3 : 1;
    if (size < 3 || !is_space(d[2]) || !token(d, size, &at, &w) || !token(d, size, &at, &h) ||
        !token(d, size, &at, &p->maxval))
        return mmm_fail(MMM_ERR_FORMAT, "%s: not a readable PNM header", name);
    if (p->maxval < 1 || p->maxval > 65535)
        return mmm_fail(MMM_ERR_FORMAT, "%s: PNM maxval %ld is not in [1, 65535]", name,
                        p->maxval);
    p->w = w > MMM_IMAGE_MAX_SIDE ? MMM_IMAGE_MAX_SIDE + 1 : (int)w; /* refused by the caller */
    p->h = h > MMM_IMAGE_MAX_SIDE ? MMM_IMAGE_MAX_SIDE + 1 : (int)h;
    p->data = at;
    return MMM_OK;
}

int mmm_pnm_header(mmm_image_header *hd, const uint8_t *d, size_t size, const char *name) {
    pnm_info p;
    int rc = parse(&p, d, size, name);
    if (rc) return rc;
    hd->w = p.w;
    hd->h = p.h;
    hd->cost = p.maxval > 255 ? 2 : 1;
    if (p.w < 1 || p.h < 1 || p.w > MMM_IMAGE_MAX_SIDE || p.h > MMM_IMAGE_MAX_SIDE) return MMM_OK;
    unsigned long long need = p.data + (unsigned long long)p.w * p.h * p.channels *
                                           (p.maxval > 255 ? 2 : 1);
    if (need > hd->file_size)
        return mmm_fail(MMM_ERR_FORMAT,
                        "%s: truncated PNM: its %d×%d header needs %llu bytes, the file has %zu",
                        name, p.w, p.h, need, hd->file_size);
    return MMM_OK;
}

int mmm_pnm_decode(mmm_image *img, const uint8_t *d, size_t size, const char *name) {
    pnm_info p;
    int rc = parse(&p, d, size, name);
    if (rc) return rc;
    size_t n = (size_t)p.w * p.h * 3;
    uint8_t *rgb = malloc(n);
    if (!rgb) return mmm_fail(MMM_ERR_NOMEM, "%s: cannot allocate %d×%d pixels", name, p.w, p.h);
    int wide = p.maxval > 255, gray = p.channels == 1;
    long out_max = wide && gray ? 65535 : 255;
    const uint8_t *s = d + p.data;
    for (size_t i = 0; i < (size_t)p.w * p.h * p.channels; i++) {
        long v = wide ? (long)s[2 * i] << 8 | s[2 * i + 1] : s[i];
        if (p.maxval != 255 && !(wide && gray && p.maxval == 65535)) {
            double scaled = (double)v / (double)p.maxval * (double)out_max;
            v = v > p.maxval ? out_max : (long)nearbyint(scaled); /* ties to even, as round() */
        }
        uint8_t u = (uint8_t)(v > 255 ? 255 : v);
        if (gray) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = u;
        else rgb[i] = u;
    }
    img->w = p.w;
    img->h = p.h;
    img->rgb = rgb;
    return MMM_OK;
}
