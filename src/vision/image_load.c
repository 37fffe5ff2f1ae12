/* Image decoding through stb_image (Debian's libstb), into 8-bit RGB. The file is read whole,
 * so every error can name it, and its dimensions are checked from the header before any pixel
 * is decoded. */
#include "mmm/error.h"
#include "mmm/image.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stb/stb_image.h>

void mmm_image_free(mmm_image *img) {
    if (!img) return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}

int mmm_image_from_memory(mmm_image *img, const void *data, size_t size, const char *name) {
    memset(img, 0, sizeof *img);
    if (size == 0) return mmm_fail(MMM_ERR_FORMAT, "%s: empty file, not an image", name);
    if (size > INT_MAX)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: %zu bytes is too large an image file", name,
                        size);
    const stbi_uc *bytes = data;
    int w, h, comp;
    if (!stbi_info_from_memory(bytes, (int)size, &w, &h, &comp)) {
        /* stbi_info's reason is always "unknown image type"; a load attempt stops at the same
         * bad header and names what is wrong with it (e.g. "too large") */
        stbi_image_free(stbi_load_from_memory(bytes, (int)size, &w, &h, &comp, 3));
        return mmm_fail(MMM_ERR_FORMAT, "%s: not a readable image (%s)", name,
                        stbi_failure_reason());
    }
    if (stbi_is_hdr_from_memory(bytes, (int)size))
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: HDR images are not supported", name);
    if (w <= 0 || h <= 0)
        return mmm_fail(MMM_ERR_FORMAT, "%s: image has no pixels (%d×%d)", name, w, h);
    if (w > MMM_IMAGE_MAX_SIDE || h > MMM_IMAGE_MAX_SIDE)
        return mmm_fail(MMM_ERR_UNSUPPORTED, "%s: image is %d×%d pixels, more than %d per side",
                        name, w, h, MMM_IMAGE_MAX_SIDE);
    /* req_comp = 3 replicates gray and drops alpha, as PIL's convert("RGB") does. But stb's PNM
     * loader runs 16-bit samples through its 8-bit channel converter when asked for another
     * channel count (a heap over-read), so 16-bit gray decodes as gray, replicated below. */
    int gray16 = comp == 1 && stbi_is_16_bit_from_memory(bytes, (int)size);
    stbi_uc *px = stbi_load_from_memory(bytes, (int)size, &w, &h, &comp, gray16 ? 1 : 3);
    if (!px)
        return mmm_fail(MMM_ERR_FORMAT, "%s: corrupt or truncated image data (%s)", name,
                        stbi_failure_reason());
    size_t n = (size_t)w * h * 3;
    img->rgb = malloc(n);
    if (!img->rgb) {
        stbi_image_free(px);
        return mmm_fail(MMM_ERR_NOMEM, "%s: cannot allocate %zu bytes of pixels", name, n);
    }
    if (gray16) /* stb's buffer must go back through stbi_image_free */
        for (size_t i = 0; i < n; i++) img->rgb[i] = px[i / 3];
    else memcpy(img->rgb, px, n);
    stbi_image_free(px);
    img->w = w;
    img->h = h;
    return MMM_OK;
}

int mmm_image_load(mmm_image *img, const char *path) {
    memset(img, 0, sizeof *img);
    FILE *f = fopen(path, "rb");
    if (!f)
        return mmm_fail(errno == ENOENT ? MMM_ERR_NOT_FOUND : MMM_ERR_IO, "%s: cannot open: %s",
                        path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int err = errno;
        fclose(f);
        return mmm_fail(MMM_ERR_IO, "%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(f);
        return mmm_fail(MMM_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) {
        fclose(f);
        return mmm_fail(MMM_ERR_NOMEM, "%s: cannot allocate %zu bytes to read it", path, size);
    }
    size_t got = fread(buf, 1, size, f);
    int read_err = ferror(f);
    fclose(f);
    if (got != size) {
        free(buf);
        return mmm_fail(MMM_ERR_IO, "%s: read %zu of %zu bytes%s", path, got, size,
                        read_err ? " (read error)" : "");
    }
    int rc = mmm_image_from_memory(img, buf, size, path);
    free(buf);
    return rc;
}
