/* Images: small hostile files that once took gigabytes (a header promising pixels the file does
 * not hold, a GIF's logical screen, a PNG whose data inflates past its header, a header over the
 * pixel limit), the limit itself, FIFOs, and --max-image-pixels on the CLI. The files are built
 * here, byte by byte. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../harness.h"
#include "mmm/error.h"
#include "mmm/image.h"

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A PNG: 8-bit RGB w × h, its IDAT the zlib stream of `raw` (raw_len bytes). Returns its size. */
static size_t make_png(uint8_t *out, uint32_t w, uint32_t h, const uint8_t *raw, size_t raw_len,
                       size_t cap) {
    memcpy(out, "\x89PNG\r\n\x1a\n", 8);
    size_t at = 8;
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = 8;
    ihdr[9] = 2;
    uLongf zlen = (uLongf)(cap - 8 - 25 - 24);
    uint8_t *z = malloc(zlen);
    compress2(z, &zlen, raw, (uLong)raw_len, 9);
    const struct {
        const char *type;
        const uint8_t *data;
        size_t len;
    } chunks[] = {{"IHDR", ihdr, 13}, {"IDAT", z, zlen}, {"IEND", NULL, 0}};
    for (int c = 0; c < 3; c++) {
        put_be32(out + at, (uint32_t)chunks[c].len);
        memcpy(out + at + 4, chunks[c].type, 4);
        if (chunks[c].len) memcpy(out + at + 8, chunks[c].data, chunks[c].len);
        uLong crc = crc32(0, out + at + 4, (uInt)(4 + chunks[c].len));
        put_be32(out + at + 8 + chunks[c].len, (uint32_t)crc);
        at += 12 + chunks[c].len;
    }
    free(z);
    return at;
}

/* Decodes data with `limit`; checks the status and that the message names the file and says
 * `says`, and that nothing was left allocated. */
static void expect_refused(const char *what, const void *data, size_t size, long long limit,
                           int code, const char *says) {
    mmm_image img;
    mmm_clear_error();
    int rc = mmm_image_decode(&img, data, size, what, limit);
    const char *msg = mmm_last_error();
    check(rc == code && strstr(msg, what) && strstr(msg, says) && !img.rgb && !img.w,
          "image refused: %s: %s [%s]", what, mmm_status_name(rc), msg);
    mmm_image_free(&img);
}

TEST(test_image_hostile_headers) {
    /* a GIF whose logical screen is 16384² (what stb allocates) around one 1×1 frame: 35 bytes
     * that took 2 GB */
    static const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a', 0x00, 0x40, 0x00, 0x40, 0x80,
                                  0, 0, 0, 0, 0, 255, 255, 255, 0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0,
                                  2, 2, 0x44, 1, 0, 0x3b};
    expect_refused("screen_16384.gif", gif, sizeof gif, MMM_IMAGE_MAX_PIXELS,
                   MMM_ERR_UNSUPPORTED, "16384×16384 pixels, over the limit of 16777216 pixels");
    /* the same screen at 64×64 is a valid image: the check is the screen, not the frame */
    uint8_t small[sizeof gif];
    memcpy(small, gif, sizeof gif);
    small[7] = small[9] = 0, small[6] = small[8] = 64;
    mmm_image img;
    int rc = mmm_image_decode(&img, small, sizeof small, "screen_64.gif", MMM_IMAGE_MAX_PIXELS);
    check(rc == MMM_OK && img.w == 64 && img.h == 64 && img.rgb[0] == 0 && img.rgb[1] == 0,
          "image gif: a 64×64 screen around a 1×1 frame decodes (%s)",
          rc ? mmm_last_error() : "ok");
    mmm_image_free(&img);
    expect_refused("screen_64.gif", small, sizeof small, 4095, MMM_ERR_UNSUPPORTED,
                   "64×64 pixels, over the limit of 4095 pixels");
    /* a 1×1 screen whose first frame is 4096×4097: the image grows to hold it (as in Pillow), so
     * the frame counts too */
    memcpy(small, gif, sizeof gif);
    small[6] = small[8] = 1, small[7] = small[9] = 0;
    small[24] = 0, small[25] = 0x10, small[26] = 1, small[27] = 0x10;
    expect_refused("frame_4096x4097.gif", small, sizeof small, MMM_IMAGE_MAX_PIXELS,
                   MMM_ERR_UNSUPPORTED, "4096×4097 pixels, over the limit of 16777216 pixels");

    /* BMP and PPM headers promising 16384² pixels with none in the file (54 and 19 bytes that
     * took 1.5 GB and decoded black), and a small BMP short of a few bytes */
    uint8_t bmp[54 + 64 * 63 * 3] = {'B', 'M', [10] = 54, [14] = 40, [18] = 0x00, [19] = 0x40,
                                     [22] = 0x00, [23] = 0x40, [26] = 1, [28] = 24};
    expect_refused("nodata.bmp", bmp, 54, MMM_IMAGE_MAX_PIXELS, MMM_ERR_FORMAT,
                   "truncated BMP: its 16384×16384 header needs 805306422 bytes, the file has 54");
    bmp[18] = 64, bmp[19] = 0, bmp[22] = 64, bmp[23] = 0;
    expect_refused("short.bmp", bmp, sizeof bmp, MMM_IMAGE_MAX_PIXELS, MMM_ERR_FORMAT,
                   "truncated BMP: its 64×64 header needs 12342 bytes, the file has 12150");
    static const char ppm[] = "P6\n16384 16384\n255\n";
    expect_refused("nodata.ppm", ppm, sizeof ppm - 1, MMM_IMAGE_MAX_PIXELS, MMM_ERR_FORMAT,
                   "truncated PNM: its 16384×16384 header needs 805306387 bytes, the file has 19");
    static const char pgm16[] = "P5\n# sixteen bits\n4 3\n65535\n0123456789abcdefghijklm";
    expect_refused("short16.pgm", pgm16, sizeof pgm16 - 1, MMM_IMAGE_MAX_PIXELS, MMM_ERR_FORMAT,
                   "truncated PNM: its 4×3 header needs 52 bytes, the file has 51");

    /* a top-down BMP (height −2): refused as "no pixels (3×-2)" before */
    uint8_t td[54 + 2 * 12] = {'B', 'M', [10] = 54, [14] = 40, [18] = 3, [22] = 0xfe, [23] = 0xff,
                               [24] = 0xff, [25] = 0xff, [26] = 1, [28] = 24};
    for (int i = 0; i < 2 * 12; i++) td[54 + i] = (uint8_t)(10 * i);
    rc = mmm_image_decode(&img, td, sizeof td, "topdown.bmp", MMM_IMAGE_MAX_PIXELS);
    /* row 0 is stored first; a BMP pixel is B, G, R */
    check(rc == MMM_OK && img.w == 3 && img.h == 2 && img.rgb[0] == 20 && img.rgb[2] == 0 &&
              img.rgb[9] == 140 && img.rgb[11] == 120,
          "image bmp: top-down 3×-2 decodes with its first stored row on top (%s)",
          rc ? mmm_last_error() : "ok");
    mmm_image_free(&img);
}

TEST(test_image_pixel_limit) {
    /* an all-zero 1024² PNG (a few KB): fits 2^20 pixels, not one less */
    size_t raw_len = 1024 * (1 + 1024 * 3);
    uint8_t *raw = calloc(raw_len, 1), *png = malloc(1 << 16);
    size_t n = make_png(png, 1024, 1024, raw, raw_len, 1 << 16);
    mmm_image img;
    int rc = mmm_image_decode(&img, png, n, "zero_1024.png", 1 << 20);
    check(rc == MMM_OK && img.w == 1024 && img.h == 1024, "image limit: 1024² at 2^20 pixels decodes");
    mmm_image_free(&img);
    expect_refused("zero_1024.png", png, n, (1 << 20) - 1, MMM_ERR_UNSUPPORTED,
                   "1024×1024 pixels, over the limit of 1048575 pixels");

    /* the process-wide limit, and mmm_image_info under it */
    check(mmm_image_max_pixels() == MMM_IMAGE_MAX_PIXELS, "image limit: default %lld",
          (long long)MMM_IMAGE_MAX_PIXELS);
    check(mmm_image_set_max_pixels(0) == MMM_ERR_ARG &&
              mmm_image_max_pixels() == MMM_IMAGE_MAX_PIXELS,
          "image limit: 0 is refused, the limit stays");
    mmm_image_set_max_pixels(1000000);
    rc = mmm_image_from_memory(&img, png, n, "zero_1024.png");
    check(rc == MMM_ERR_UNSUPPORTED && strstr(mmm_last_error(), "limit of 1000000 pixels"),
          "image limit: the process-wide limit applies: %s", mmm_last_error());
    char path[] = "/tmp/mmm_image_limit_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (f) fwrite(png, 1, n, f), fclose(f);
    int w = 0, h = 0;
    rc = mmm_image_info(path, &w, &h);
    check(rc == MMM_ERR_UNSUPPORTED && strstr(mmm_last_error(), path) && !w,
          "image info: refused over the limit: %s", mmm_last_error());
    mmm_image_set_max_pixels(MMM_IMAGE_MAX_PIXELS);
    rc = mmm_image_info(path, &w, &h);
    check(rc == MMM_OK && w == 1024 && h == 1024, "image info: 1024×1024 from the header");
    unlink(path);

    /* a 1×1 PNG whose data inflates to 3 MB: stb grew its buffer to hold it all (a 1 MB file
     * took 1 GB) */
    n = make_png(png, 1, 1, raw, raw_len, 1 << 16);
    expect_refused("bomb_1x1.png", png, n, MMM_IMAGE_MAX_PIXELS, MMM_ERR_FORMAT,
                   "inflates to more than the 4 bytes its 1×1 header needs");
    /* exactly the 4 bytes it needs is fine */
    n = make_png(png, 1, 1, (const uint8_t *)"\0\x10\x20\x30", 4, 1 << 16);
    rc = mmm_image_decode(&img, png, n, "one_1x1.png", MMM_IMAGE_MAX_PIXELS);
    check(rc == MMM_OK && img.w == 1 && img.rgb[0] == 16 && img.rgb[2] == 48,
          "image png: a 1×1 image decodes (%s)", rc ? mmm_last_error() : "ok");
    mmm_image_free(&img);
    free(raw);
    free(png);
}

static const char *write_tmp(char *path, const uint8_t *data, size_t n) {
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (f) fwrite(data, 1, n, f), fclose(f);
    return path;
}

/* mmm_image_info reads headers from a file's first 16 KB, then 256 KB: a JPEG whose frame header
 * comes after 300 KB of APP segments is read again whole, and a BMP's pixel rows are checked
 * against the file's real size. */
TEST(test_image_info_large_files) {
    uint8_t *big = calloc(400 << 10, 1);
    FILE *f = fopen("tests/data/images/photo_40x30.jpg", "rb");
    size_t jn = f ? fread(big + 300 * 1024 + 2, 1, (100 << 10) - 2, f) : 0;
    if (f) fclose(f);
    /* SOI, then five 60 KB APP1 segments, then the photo after its own SOI */
    big[0] = 0xFF, big[1] = 0xD8;
    size_t at = 2;
    for (int k = 0; k < 5; k++, at += 2 + 61440) {
        big[at] = 0xFF, big[at + 1] = 0xE1, big[at + 2] = 61440 >> 8, big[at + 3] = 61440 & 255;
        memset(big + at + 4, 'x', 61440 - 2);
    }
    memmove(big + at, big + 300 * 1024 + 4, jn - 2);
    size_t n = at + jn - 2;
    char path[] = "/tmp/mmm_image_info_XXXXXX";
    write_tmp(path, big, n);
    int w = 0, h = 0;
    int rc = mmm_image_info(path, &w, &h);
    check(rc == MMM_OK && w == 40 && h == 30, "image info: a JPEG with its frame header at byte "
          "%zu: %d×%d (%s)", at, w, h, rc ? mmm_last_error() : "ok");
    mmm_image img;
    rc = mmm_image_load(&img, path);
    check(rc == MMM_OK && img.w == 40, "image load: the same JPEG decodes (%s)",
          rc ? mmm_last_error() : "ok");
    mmm_image_free(&img);
    unlink(path);

    /* a 300×300 24-bit BMP one byte short */
    memset(big, 0, 400 << 10);
    memcpy(big, (uint8_t[]){'B', 'M', [10] = 54, [14] = 40, [18] = 0x2c, [19] = 1, [22] = 0x2c,
                            [23] = 1, [26] = 1, [28] = 24, [29] = 0}, 30);
    char bpath[] = "/tmp/mmm_image_info_XXXXXX";
    write_tmp(bpath, big, 54 + 900 * 300 - 1);
    rc = mmm_image_info(bpath, &w, &h);
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "needs 270054 bytes, the file has 270053"),
          "image info: a BMP one byte short of its rows: %s", mmm_last_error());
    unlink(bpath);
    write_tmp(strcpy(bpath, "/tmp/mmm_image_info_XXXXXX"), big, 54 + 900 * 300);
    rc = mmm_image_info(bpath, &w, &h);
    check(rc == MMM_OK && w == 300 && h == 300, "image info: the whole BMP is 300×300");
    unlink(bpath);
    free(big);
}

/* A FIFO given as an image or a dataset image: refused at once, where opening it waited for a
 * writer forever (the alarm turns a hang into a failure). */
TEST(test_image_fifo) {
    char dir[] = "/tmp/mmm_image_fifo_XXXXXX";
    if (!check(mkdtemp(dir) != NULL, "image fifo: a scratch directory")) return;
    char fifo[64];
    snprintf(fifo, sizeof fifo, "%s/photo.jpg", dir);
    check(mkfifo(fifo, 0600) == 0, "image fifo: mkfifo");
    alarm(20);
    mmm_image img;
    int rc = mmm_image_load(&img, fifo);
    check(rc == MMM_ERR_IO && strstr(mmm_last_error(), fifo) &&
              strstr(mmm_last_error(), "is a FIFO, expected a regular file"),
          "image fifo: load refused: %s", mmm_last_error());
    int w, h;
    rc = mmm_image_info(fifo, &w, &h);
    check(rc == MMM_ERR_IO && strstr(mmm_last_error(), "is a FIFO"),
          "image fifo: info refused: %s", mmm_last_error());
    char args[256], out[4096];
    snprintf(args, sizeof args,
             "forward --model tests/data/teacher/one_image --ids 53,7,-1,8 --image %s", fifo);
    rc = run_mmm(args, out, sizeof out);
    check(rc == 1 && strstr(out, "is a FIFO, expected a regular file"),
          "image fifo: mmm forward --image FIFO fails at once: %s", out);
    alarm(0);
    unlink(fifo);
    rmdir(dir);
}

/* --max-image-pixels on the commands that read images. */
TEST(test_image_cli_limit) {
    char out[4096];
    const char *base = "forward --model tests/data/teacher/one_image --ids 53,7,-1,8 "
                       "--image tests/data/images/grid_56.png";
    char args[512];
    snprintf(args, sizeof args, "%s --max-image-pixels 3135", base);
    int rc = run_mmm(args, out, sizeof out);
    check(rc == 1 && strstr(out, "tests/data/images/grid_56.png: image is 56×56 pixels, over the "
                                 "limit of 3135 pixels"),
          "cli forward --max-image-pixels 3135 refuses a 56×56 image: %s", out);
    snprintf(args, sizeof args, "%s --max-image-pixels 3136", base);
    rc = run_mmm(args, out, sizeof out);
    check(rc == 0, "cli forward --max-image-pixels 3136 loads a 56×56 image: %s", out);
    snprintf(args, sizeof args, "%s --max-image-pixels 0", base);
    rc = run_mmm(args, out, sizeof out);
    check(rc == 2 && strstr(out, "--max-image-pixels"),
          "cli forward --max-image-pixels 0 is a usage error: %s", out);
    static const char *const cmds[] = {"chat", "eval", "train", "distill"};
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        rc = run_mmm(args, out, sizeof out);
        check(rc == 0 && strstr(out, "--max-image-pixels"), "cli %s --help lists --max-image-pixels",
              cmds[i]);
    }
}
