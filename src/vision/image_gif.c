/* GIF: the first frame, as Pillow 9.4's GIF plugin and decoder produce it, then convert("RGB").
 * The image is the logical screen, grown to hold the first frame if it reaches past it; what the
 * frame does not cover is the frame's transparency index if its graphic control extension sets
 * one, else index 0 (not the background colour); every pixel of the frame is written, the
 * transparent ones too. Index i is colour i of the frame's palette (the local one, else the
 * global one) and (i, i, i) past its end or without one. A frame whose LZW data ends before its
 * last pixel is truncated, as Pillow reports it. (stb_image composites differently and allocates
 * 9 bytes a pixel for animation state.) */
#include "image_internal.h"

#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"

typedef struct {
    int w, h;                  /* the image: the screen grown to hold the frame */
    int fx, fy, fw, fh;        /* the first frame's rectangle */
    int interlace, transparency, min_code;
    int n_pal;                 /* palette entries (0: none) */
    uint8_t pal[256 * 3];
    size_t data;               /* offset of the frame's first LZW sub-block */
} gif_info;

static int le16(const uint8_t *p) { return p[0] | p[1] << 8; }

/* Skips a chain of sub-blocks from *at; returns 0 if the file ends inside it. */
static int skip_blocks(const uint8_t *d, size_t size, size_t *at) {
    while (*at < size) {
        uint8_t n = d[(*at)++];
        if (!n) return 1;
        if (size - *at < n) return 0;
        *at += n;
    }
    return 0;
}

/* A palette of n entries at d + at, kept unless it is the identity gray ramp, which Pillow drops
 * (the same colours: i → (i, i, i)). */
static void palette(gif_info *g, const uint8_t *p, int n) {
    int gray = 1;
    for (int i = 0; i < n && gray; i++) gray = p[3 * i] == i && p[3 * i + 1] == i && p[3 * i + 2] == i;
    g->n_pal = gray ? 0 : n;
    if (!gray) memcpy(g->pal, p, (size_t)3 * n);
}

static int parse(gif_info *g, const uint8_t *d, size_t size, const char *name) {
    memset(g, 0, sizeof *g);
    g->transparency = -1;
    if (size < 13 || (memcmp(d, "GIF87a", 6) && memcmp(d, "GIF89a", 6)))
        return mmm_fail(MMM_ERR_FORMAT, "%s: not a GIF header", name);
    int sw = le16(d + 6), sh = le16(d + 8), flags = d[10];
    size_t at = 13;
    if (flags & 0x80) {
        int n = 2 << (flags & 7);
        if (size - at < (size_t)3 * n) return mmm_fail(MMM_ERR_FORMAT, "%s: truncated GIF", name);
        palette(g, d + at, n);
        at += (size_t)3 * n;
    }
    for (;;) {
        if (at >= size || d[at] == ';')
            return mmm_fail(MMM_ERR_FORMAT, "%s: GIF without an image", name);
        uint8_t c = d[at++];
        if (c == '!') { /* an extension: a label, then sub-blocks */
            if (at >= size) continue;
            uint8_t label = d[at++];
            if (label == 0xF9 && at < size && d[at] >= 4 && size - at > 4 && (d[at + 1] & 1))
                g->transparency = d[at + 4];
            if (!skip_blocks(d, size, &at))
                return mmm_fail(MMM_ERR_FORMAT, "%s: GIF without an image", name);
        } else if (c == ',') {
            if (size - at < 10) return mmm_fail(MMM_ERR_FORMAT, "%s: truncated GIF", name);
            g->fx = le16(d + at), g->fy = le16(d + at + 2);
            g->fw = le16(d + at + 4), g->fh = le16(d + at + 6);
            int f = d[at + 8];
            at += 9;
            g->interlace = (f & 0x40) != 0;
            if (f & 0x80) {
                int n = 2 << (f & 7);
                if (size - at < (size_t)3 * n + 1)
                    return mmm_fail(MMM_ERR_FORMAT, "%s: truncated GIF", name);
                palette(g, d + at, n);
                at += (size_t)3 * n;
            }
            if (at >= size) return mmm_fail(MMM_ERR_FORMAT, "%s: truncated GIF", name);
            g->min_code = d[at++];
            g->data = at;
            g->w = g->fx + g->fw > sw ? g->fx + g->fw : sw;
            g->h = g->fy + g->fh > sh ? g->fy + g->fh : sh;
            return MMM_OK;
        } /* any other byte between blocks is skipped, as Pillow skips it */
    }
}

int mmm_gif_header(mmm_image_header *hd, const uint8_t *d, size_t size, const char *name) {
    gif_info g;
    int rc = parse(&g, d, size, name);
    hd->w = g.w;
    hd->h = g.h;
    return rc;
}

/* The LZW codes of the frame's sub-blocks, least significant bit first. */
typedef struct {
    const uint8_t *d;
    size_t size, at;
    int left;       /* bytes left in the current sub-block */
    uint32_t bits;  /* buffered bits */
    int n_bits;
} code_reader;

/* The next code of `width` bits, or −1 when the data ends first. */
static int next_code(code_reader *r, int width) {
    while (r->n_bits < width) {
        if (!r->left) {
            if (r->at >= r->size || !(r->left = r->d[r->at++])) return -1;
        }
        if (r->at >= r->size) return -1;
        r->bits |= (uint32_t)r->d[r->at++] << r->n_bits;
        r->n_bits += 8;
        r->left--;
    }
    int code = (int)(r->bits & ((1u << width) - 1));
    r->bits >>= width;
    r->n_bits -= width;
    return code;
}

typedef struct {
    uint16_t prefix[4096];
    uint8_t suffix[4096], first[4096], stack[4096];
} lzw_table;

int mmm_gif_decode(mmm_image *img, const uint8_t *d, size_t size, const char *name) {
    gif_info g;
    int rc = parse(&g, d, size, name);
    if (rc) return rc;
    if (g.min_code < 1 || g.min_code > 11)
        return mmm_fail(MMM_ERR_FORMAT, "%s: GIF LZW code size %d is not in [1, 11]", name,
                        g.min_code);
    size_t n = (size_t)g.w * g.h * 3;
    uint8_t *rgb = malloc(n), colour[256][3];
    int *rows = malloc(((size_t)g.fh + 1) * sizeof *rows);
    lzw_table *t = malloc(sizeof *t);
    if (!rgb || !rows || !t) {
        free(rgb), free(rows), free(t);
        return mmm_fail(MMM_ERR_NOMEM, "%s: cannot allocate %d×%d pixels", name, g.w, g.h);
    }
    for (int i = 0; i < 256; i++)
        for (int c = 0; c < 3; c++) colour[i][c] = i < g.n_pal ? g.pal[3 * i + c] : (uint8_t)i;
    const uint8_t *fill = colour[g.transparency >= 0 ? g.transparency : 0];
    for (size_t i = 0; i < n; i += 3) memcpy(rgb + i, fill, 3);
    /* the image row of each frame row, in the order the data holds them */
    int k = 0;
    if (g.interlace) {
        static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
        for (int p = 0; p < 4; p++)
            for (int y = start[p]; y < g.fh; y += step[p]) rows[k++] = y;
    } else
        for (int y = 0; y < g.fh; y++) rows[k++] = y;

    code_reader r = {d, size, g.data, 0, 0, 0};
    int clear = 1 << g.min_code, end = clear + 1, next = clear + 2, width = g.min_code + 1;
    int prev = -1;
    for (int c = 0; c < clear; c++) t->first[c] = t->suffix[c] = (uint8_t)c;
    size_t total = (size_t)g.fw * g.fh, done = 0;
    const char *bad = NULL;
    while (done < total) {
        int code = next_code(&r, width);
        if (code < 0 || code == end) {
            bad = "truncated GIF: its data ends before the frame's last pixel";
            break;
        }
        if (code == clear) {
            next = clear + 2, width = g.min_code + 1, prev = -1;
            continue;
        }
        if (prev < 0 ? code >= clear : code > next) {
            bad = "corrupt GIF: an LZW code that is not in the table yet";
            break;
        }
        if (prev >= 0 && next < 4096) { /* the new entry: prev's string + the first byte of code's */
            t->prefix[next] = (uint16_t)prev;
            t->first[next] = t->first[prev];
            t->suffix[next] = code == next ? t->first[prev] : t->first[code];
            if (++next == 1 << width && width < 12) width++;
        }
        int depth = 0;
        for (int c = code; c >= clear; c = t->prefix[c]) t->stack[depth++] = t->suffix[c];
        t->stack[depth++] = t->first[code];
        while (depth-- && done < total) {
            size_t y = (size_t)g.fy + rows[done / g.fw], x = (size_t)g.fx + done % g.fw;
            memcpy(rgb + 3 * (y * g.w + x), colour[t->stack[depth]], 3);
            done++;
        }
        prev = code;
    }
    free(rows);
    free(t);
    if (bad) {
        free(rgb);
        return mmm_fail(MMM_ERR_FORMAT, "%s: %s", name, bad);
    }
    img->w = g.w;
    img->h = g.h;
    img->rgb = rgb;
    return MMM_OK;
}
