/* IDX headers that lie: a count a gzip file of that size cannot honestly hold (a decompression
 * bomb) is refused before its body is read, a plain file's body must be what its header says,
 * and a FIFO is refused by name instead of blocking the read. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "../harness.h"
#include "mmm/error.h"
#include "mmm/fashion_mnist.h"

#define PX (MMM_FMNIST_SIDE * MMM_FMNIST_SIDE)

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* An IDX file (gzip'd when gz) whose header announces `count` items, with `body` zero bytes. */
static void write_idx(const char *path, int images, uint32_t count, size_t body, int gz) {
    uint8_t h[16];
    put_be32(h, images ? 2051 : 2049);
    put_be32(h + 4, count);
    put_be32(h + 8, MMM_FMNIST_SIDE);
    put_be32(h + 12, MMM_FMNIST_SIDE);
    size_t hn = images ? 16 : 8;
    uint8_t *zeros = calloc(1, 1 << 20);
    if (gz) {
        gzFile f = gzopen(path, "wb9");
        gzwrite(f, h, (unsigned)hn);
        for (size_t done = 0; done < body; done += 1 << 20)
            gzwrite(f, zeros, (unsigned)(body - done < (1u << 20) ? body - done : 1u << 20));
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(h, 1, hn, f);
        for (size_t done = 0; done < body; done += 1 << 20)
            fwrite(zeros, 1, body - done < (1u << 20) ? body - done : 1u << 20, f);
        fclose(f);
    }
    free(zeros);
}

typedef struct { const char *images, *labels, *expect; } idx_load;

/* Loads the pair: 1 when it failed with `expect` in the message. */
static int load_refused(void *arg) {
    const idx_load *l = arg;
    mmm_fmnist_split s;
    int rc = mmm_fmnist_load_idx(&s, l->images, l->labels);
    if (rc == MMM_OK) mmm_fmnist_free(&s);
    int refused = rc != MMM_OK && strstr(mmm_last_error(), l->expect) != NULL;
    if (!refused) fprintf(stderr, "load_refused: %s\n", rc ? mmm_last_error() : "loaded");
    return refused;
}

/* Loads the pair in a child process: its peak memory above the start in MB (-1 when it could not
 * be measured), and whether the load failed with `expect` in the message. */
static long load_in_child(const char *images, const char *labels, const char *expect, int *refused) {
    idx_load l = {images, labels, expect};
    return peak_mb_in_child(load_refused, &l, refused);
}

TEST(test_idx_lying_headers) {
    char dir[64], im[128], lb[128], fifo[128];
    snprintf(dir, sizeof dir, "/tmp/mmm_test_idx_limits_%d", (int)getpid());
    mkdir(dir, 0777);
    snprintf(im, sizeof im, "%s/images.gz", dir);
    snprintf(lb, sizeof lb, "%s/labels.gz", dir);
    write_idx(lb, 0, 2000000, 0, 1);

    /* 2M images announced, 200 MB of zeros behind the header in a ~200 KB gzip file: before
     * the check, reading went on until the data ran out (256 MB of buffer for a truncation) */
    write_idx(im, 1, 2000000, 200u << 20, 1);
    struct stat st;
    stat(im, &st);
    int refused = 0;
    long mb = load_in_child(im, lb, "more than 64 times", &refused);
    check(refused, "idx limits: 2M images announced in a %lld KB gzip file are refused as a decompression bomb",
          (long long)st.st_size >> 10);
    check(mb >= 0 && mb < 32, "idx limits: refusing them costs %ld MB (< 32: nothing is read)", mb);

    /* the whole body there (16 MB of zeros, 20,000 images, ~16 KB gzip'd): still over 64 times */
    write_idx(im, 1, 20000, (size_t)20000 * PX, 1);
    write_idx(lb, 0, 20000, 20000, 1);
    mmm_fmnist_split s;
    int rc = mmm_fmnist_load_idx(&s, im, lb);
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), im) && strstr(mmm_last_error(), "decompression bomb"),
          "idx limits: a body over 64 times its gzip file is refused, naming the file (%s)", rc ? mmm_last_error() : "loaded");
    if (!rc) mmm_fmnist_free(&s);
    /* the same count at an honest size loads: a real image set compresses a few times */
    write_idx(im, 1, 1000, (size_t)1000 * PX, 1);
    write_idx(lb, 0, 1000, 1000, 1);
    rc = mmm_fmnist_load_idx(&s, im, lb);
    check(rc == MMM_OK && s.n == 1000, "idx limits: 1000 images under the bound load (%s)", rc ? mmm_last_error() : "");
    if (!rc) mmm_fmnist_free(&s);

    /* uncompressed: the body must be exactly what the header announces */
    snprintf(im, sizeof im, "%s/images.idx", dir);
    write_idx(im, 1, 1000000, 10 * PX, 0);
    rc = mmm_fmnist_load_idx(&s, im, lb);
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "images.idx: the header announces 784000000 bytes of pixels, but the file has 7840"),
          "idx limits: an uncompressed file shorter than its header says is refused at once (%s)", rc ? mmm_last_error() : "loaded");
    if (!rc) mmm_fmnist_free(&s);

    snprintf(fifo, sizeof fifo, "%s/fifo.gz", dir);
    unlink(fifo);
    if (check(mkfifo(fifo, 0644) == 0, "idx limits: mkfifo")) {
        load_in_child(fifo, lb, "fifo.gz: is a FIFO", &refused);
        check(refused, "idx limits: a FIFO as the image file is refused by name, not waited on");
        unlink(fifo);
    }
    unlink(im);
    snprintf(im, sizeof im, "%s/images.gz", dir);
    unlink(im);
    unlink(lb);
    rmdir(dir);
}
