/* Fashion-MNIST's IDX files, read through zlib (which also reads them uncompressed). IDX: a
 * big-endian header (magic, count, then rows and columns for images) followed by the bytes. */
#include "mmm/fashion_mnist.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/path.h"

#define IDX_IMAGES_MAGIC 2051
#define IDX_LABELS_MAGIC 2049
#define MAX_IMAGES 10000000 /* refuses absurd headers before allocating */
/* A header's count is also checked against the file's size before anything is allocated: an
 * uncompressed body is exactly what the header announces; a gzip'd one may hold up to 1032
 * times its size (deflate's limit), but real IDX images compress 2-5 times (Fashion-MNIST:
 * 1.8), so a body over MAX_RATIO times the file plus a megabyte is refused as a decompression
 * bomb: a 1.5 MB file announcing 2M images would otherwise take 1.5 GB. */
#define MAX_RATIO 64

static const char *const class_names[MMM_FMNIST_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
static const char *const group_names[MMM_FMNIST_CLASSES] = {
    "tops", "bottoms", "tops", "tops", "tops", "footwear", "tops", "footwear", "bags", "footwear"};

const char *mmm_fmnist_class_name(int c) { return c >= 0 && c < MMM_FMNIST_CLASSES ? class_names[c] : "?"; }
const char *mmm_fmnist_group_name(int c) { return c >= 0 && c < MMM_FMNIST_CLASSES ? group_names[c] : "?"; }

void mmm_fmnist_free(mmm_fmnist_split *s) {
    if (!s) return;
    free(s->pixels);
    free(s->labels);
    memset(s, 0, sizeof *s);
}

/* zlib's view of a failed read: a gzip stream cut short, or data it cannot decode. */
static int read_error(gzFile f, const char *path, const char *what) {
    int err;
    const char *msg = gzerror(f, &err);
    if (err == Z_BUF_ERROR)
        return mmm_fail(MMM_ERR_FORMAT, "%s: truncated gzip stream while reading %s", path, what);
    if (err == Z_ERRNO)
        return mmm_fail(MMM_ERR_IO, "%s: read failed while reading %s: %s", path, what, strerror(errno));
    return mmm_fail(MMM_ERR_FORMAT, "%s: corrupt gzip data while reading %s (%s)", path, what, msg);
}

/* Reads the n bytes of a header into buf. */
static int read_exact(gzFile f, const char *path, void *buf, size_t n, const char *what) {
    int r = gzread(f, buf, (unsigned)n);
    if (r < 0) return read_error(f, path, what);
    int err;
    gzerror(f, &err);
    if (err != Z_OK) return read_error(f, path, what);
    if ((size_t)r < n) return mmm_fail(MMM_ERR_FORMAT, "%s: truncated: %s take %zu bytes, only %d remain", path, what, n, r);
    return MMM_OK;
}

/* The rest of the file, which must be exactly the n bytes a header announced, into *out
 * (malloc'd). The buffer grows with the data that actually arrives, so a lying header cannot
 * make it allocate more than the file holds (a gzip file's size says little). */
static int read_rest(gzFile f, const char *path, uint8_t **out, size_t n, const char *what) {
    size_t cap = n + 1 < (1u << 20) ? n + 1 : 1u << 20, got = 0;
    uint8_t *buf = malloc(cap);
    int rc = buf ? MMM_OK : mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    while (!rc) {
        size_t part = cap - got < (1u << 30) ? cap - got : 1u << 30;
        int r = gzread(f, buf + got, (unsigned)part);
        if (r < 0) rc = read_error(f, path, what);
        if (r <= 0) break;
        got += (size_t)r;
        if (got == cap && cap < n + 1) { /* more arrived than fits: grow, up to n + 1 */
            size_t grown = cap * 2 < n + 1 ? cap * 2 : n + 1;
            uint8_t *more = realloc(buf, grown);
            if (!more) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory reading %s", path, what);
            else buf = more, cap = grown;
        } else if (got == cap) {
            break; /* n + 1 bytes: one too many */
        }
    }
    int err;
    gzerror(f, &err);
    if (!rc && err != Z_OK) rc = read_error(f, path, what);
    if (!rc && got < n) rc = mmm_fail(MMM_ERR_FORMAT, "%s: truncated: %s take %zu bytes, only %zu remain", path, what, n, got);
    if (!rc && got > n) rc = mmm_fail(MMM_ERR_FORMAT, "%s: unexpected data after %s", path, what);
    if (rc) free(buf);
    else *out = buf;
    return rc;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Opens a regular file only (a FIFO is refused, not waited on) and reads it through zlib;
 * *size: the file's size. */
static gzFile open_gz(const char *path, long long *size, int *rc) {
    int fd = -1;
    *rc = mmm_open_regular_fd(path, &fd, size);
    if (*rc == MMM_ERR_NOT_FOUND)
        *rc = mmm_fail(MMM_ERR_NOT_FOUND, "%s: cannot open: %s (install it with: make deps, or apt-get install "
                       "dataset-fashion-mnist; or pass --source DIR)", path, strerror(ENOENT));
    if (*rc) return NULL;
    gzFile f = gzdopen(fd, "rb");
    if (!f) {
        close(fd);
        *rc = mmm_fail(MMM_ERR_NOMEM, "%s: cannot open: out of memory", path);
    }
    return f;
}

/* The n body bytes a header announces must fit what a file of `size` bytes can hold. */
static int check_body(gzFile f, const char *path, long long size, size_t header, size_t n, const char *what) {
    if (gzdirect(f)) {
        if ((long long)(n + header) != size)
            return mmm_fail(MMM_ERR_FORMAT, "%s: the header announces %zu bytes of %s, but the file has %lld after it",
                            path, n, what, size - (long long)header);
    } else if ((double)n > (double)MAX_RATIO * (double)size + (1 << 20)) {
        return mmm_fail(MMM_ERR_FORMAT, "%s: the header announces %zu bytes of %s, more than %d times the %lld bytes "
                        "of the gzip file (a decompression bomb, or a damaged header)", path, n, what, MAX_RATIO, size);
    }
    return MMM_OK;
}

static int close_gz(gzFile f, const char *path, int rc) {
    if (gzclose_r(f) != Z_OK && !rc) rc = mmm_fail(MMM_ERR_IO, "%s: read failed on closing", path);
    return rc;
}

/* Each header is checked against its file's size before its body is read, so a lying header
 * costs nothing. */
int mmm_fmnist_load_idx(mmm_fmnist_split *s, const char *images_path, const char *labels_path) {
    memset(s, 0, sizeof *s);
    long long im_size = 0, lb_size = 0;
    int rc = MMM_OK, rc2;
    gzFile im = open_gz(images_path, &im_size, &rc), lb = NULL;
    uint8_t h[16], hl[8];
    if (!rc) rc = read_exact(im, images_path, h, sizeof h, "the IDX image header");
    if (!rc && be32(h) != IDX_IMAGES_MAGIC)
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: not an IDX image file (magic %u, expected %d)", images_path, be32(h), IDX_IMAGES_MAGIC);
    if (!rc && (be32(h + 8) != MMM_FMNIST_SIDE || be32(h + 12) != MMM_FMNIST_SIDE))
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: images are %u×%u, expected %d×%d", images_path, be32(h + 8), be32(h + 12),
                      MMM_FMNIST_SIDE, MMM_FMNIST_SIDE);
    if (!rc && (be32(h + 4) == 0 || be32(h + 4) > MAX_IMAGES))
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: the header announces %u images (1 to %d expected)", images_path, be32(h + 4), MAX_IMAGES);
    size_t n = rc ? 0 : be32(h + 4), bytes = n * MMM_FMNIST_SIDE * MMM_FMNIST_SIDE;
    if (!rc) rc = check_body(im, images_path, im_size, sizeof h, bytes, "pixels");
    if (!rc) rc = read_rest(im, images_path, &s->pixels, bytes, "the pixels");
    if (!rc) lb = open_gz(labels_path, &lb_size, &rc);
    if (!rc) rc = read_exact(lb, labels_path, hl, sizeof hl, "the IDX label header");
    if (!rc && be32(hl) != IDX_LABELS_MAGIC)
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: not an IDX label file (magic %u, expected %d)", labels_path, be32(hl), IDX_LABELS_MAGIC);
    if (!rc && be32(hl + 4) != n)
        rc = mmm_fail(MMM_ERR_FORMAT, "%s: %u labels, but %s has %zu images", labels_path, be32(hl + 4), images_path, n);
    if (!rc) rc = check_body(lb, labels_path, lb_size, sizeof hl, n, "labels");
    if (!rc) rc = read_rest(lb, labels_path, &s->labels, n, "the labels");
    for (size_t i = 0; !rc && i < n; i++)
        if (s->labels[i] >= MMM_FMNIST_CLASSES)
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: label %d of image %zu is not a class (0 to %d)", labels_path, s->labels[i], i,
                          MMM_FMNIST_CLASSES - 1);
    rc2 = rc;
    if (im) rc2 = close_gz(im, images_path, rc2);
    if (lb) rc2 = close_gz(lb, labels_path, rc2);
    if (!rc2) s->n = (int)n;
    else mmm_fmnist_free(s);
    return rc2;
}

int mmm_fmnist_load(mmm_fmnist_split *s, const char *dir, mmm_fmnist_split_id split) {
    memset(s, 0, sizeof *s);
    const char *prefix = split == MMM_FMNIST_TRAIN ? "train" : "t10k";
    char name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", prefix);
    char *images = mmm_path_join(dir, name);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", prefix);
    char *labels = mmm_path_join(dir, name);
    int rc = images && labels ? mmm_fmnist_load_idx(s, images, labels)
                              : mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", dir);
    free(images);
    free(labels);
    return rc;
}
