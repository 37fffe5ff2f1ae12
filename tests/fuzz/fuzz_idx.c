/* Fuzz target: a Fashion-MNIST IDX pair through mmm_fmnist_load_idx. The input is the image file
 * and the label file back to back, split where its first two bytes say; each part is written
 * as is, so both plain and gzip-compressed IDX are reached. */
#include <stdio.h>

#include "fuzz.h"
#include "mmm/error.h"
#include "mmm/fashion_mnist.h"

int mmm_fuzz_idx(const uint8_t *data, size_t size) {
    if (size < 2) return MMM_ERR_FORMAT;
    size_t split = ((size_t)data[0] << 8 | data[1]) % (size - 1) + 2;
    char images[4096];
    const char *p = fuzz_write_file("images-idx3-ubyte", data + 2, split - 2);
    if (!p) return MMM_ERR_IO;
    snprintf(images, sizeof images, "%s", p);
    const char *labels = fuzz_write_file("labels-idx1-ubyte", data + split, size - split);
    if (!labels) return MMM_ERR_IO;
    mmm_fmnist_split s = {0};
    int rc = mmm_fmnist_load_idx(&s, images, labels);
    if (rc) return rc;
    if (s.n < 1 || !s.pixels || !s.labels) fuzz_bug("loaded %d images without data", s.n);
    for (int i = 0; i < s.n; i++)
        if (s.labels[i] >= MMM_FMNIST_CLASSES) fuzz_bug("label %d of image %d passed", s.labels[i], i);
    unsigned sum = 0; /* every pixel byte is readable */
    for (size_t i = 0; i < (size_t)s.n * MMM_FMNIST_SIDE * MMM_FMNIST_SIDE; i++) sum += s.pixels[i];
    (void)sum;
    mmm_fmnist_free(&s);
    return MMM_OK;
}

MMM_FUZZ_TARGET(idx)
