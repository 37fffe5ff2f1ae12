/* Images: loading each format and each kind of bad file, Pillow-compatible bicubic resizing and
 * InternVL dynamic tiling, against what Pillow 9.4 and InternVL's Python code produce
 * (tests/data/images/, made by tools/reference/make_image_goldens.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness.h"
#include "mmm/error.h"
#include "mmm/image.h"
#include "mmm/safetensors.h"

#define DIR "tests/data/images"
#define GOLDENS DIR "/pillow.safetensors"

/* Largest |a − b| over n bytes, and how many differ. */
static int max_diff(const uint8_t *a, const uint8_t *b, size_t n, size_t *ndiff) {
    int m = 0;
    *ndiff = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m) m = d;
        *ndiff += d != 0;
    }
    return m;
}

/* The uint8 pixels PIL loaded, stored as F16 (h, w, 3); NULL if absent or of another shape. */
static uint8_t *golden_rgb(const mmm_st_file *f, const char *key, int w, int h) {
    const mmm_st_tensor *t = mmm_st_find(f, key);
    size_t n = (size_t)w * h * 3;
    if (!t || t->ndim != 3 || t->shape[0] != h || t->shape[1] != w || t->shape[2] != 3)
        return NULL;
    float *v = malloc(n * sizeof *v);
    uint8_t *px = malloc(n);
    mmm_st_read_f32(t, v, n);
    for (size_t i = 0; i < n; i++) px[i] = (uint8_t)v[i];
    free(v);
    return px;
}

/* Loads `file` and compares it with golden `key`; tol is the largest allowed difference. */
static void load_vs_pil(const mmm_st_file *f, const char *file, const char *key, int tol,
                        const char *what) {
    char path[256];
    snprintf(path, sizeof path, DIR "/%s", file);
    mmm_image img;
    int rc = mmm_image_load(&img, path);
    if (!check(rc == MMM_OK, "load %s %s: %s", what, file, rc ? mmm_last_error() : "decoded"))
        return;
    uint8_t *ref = golden_rgb(f, key, img.w, img.h);
    if (check(ref != NULL, "load %s %s: %d×%d as PIL", what, file, img.w, img.h)) {
        size_t nd;
        int m = max_diff(img.rgb, ref, (size_t)img.w * img.h * 3, &nd);
        check(m <= tol, "load %s %s vs PIL convert('RGB'): max |diff| %d (%zu bytes differ), "
              "tol %d", what, file, m, nd, tol);
    }
    free(ref);
    mmm_image_free(&img);
}

/* Two files that hold the same pixels decode to the same image. */
static void same_pixels(const char *a, const char *b, const char *what) {
    char pa[256], pb[256];
    snprintf(pa, sizeof pa, DIR "/%s", a);
    snprintf(pb, sizeof pb, DIR "/%s", b);
    mmm_image x, y;
    int ra = mmm_image_load(&x, pa), rb = mmm_image_load(&y, pb);
    check(ra == MMM_OK && rb == MMM_OK && x.w == y.w && x.h == y.h &&
              memcmp(x.rgb, y.rgb, (size_t)x.w * x.h * 3) == 0,
          "load %s %s equals %s (%d×%d), exact", what, b, a, y.w, y.h);
    mmm_image_free(&x);
    mmm_image_free(&y);
}

TEST(test_image_load_formats) {
    mmm_st_file *f;
    if (!check(mmm_st_open(&f, GOLDENS) == MMM_OK, "open %s", GOLDENS)) return;
    load_vs_pil(f, "fmnist_28.png", "fmnist_28.rgb", 0, "png gray (Fashion-MNIST)");
    load_vs_pil(f, "rgba_37x23.png", "rgba_37x23.rgb", 0, "png rgba, alpha dropped");
    load_vs_pil(f, "thin_5x90.png", "thin_5x90.rgb", 0, "png rgb 5x90");
    load_vs_pil(f, "la_9x7.png", "la_9x7.rgb", 0, "png gray+alpha");
    load_vs_pil(f, "palette_12x10.png", "palette_12x10.rgb", 0, "png palette");
    /* JPEG through libjpeg-turbo and WebP through libwebp, as Pillow decodes them: exact */
    load_vs_pil(f, "photo_40x30.jpg", "photo_40x30.rgb", 0, "jpeg 4:2:0 40x30");
    load_vs_pil(f, "jpeg420_37x23.jpg", "jpeg420_37x23_jpg.rgb", 0, "jpeg 4:2:0 odd size");
    load_vs_pil(f, "jpeg422_45x31.jpg", "jpeg422_45x31_jpg.rgb", 0, "jpeg 4:2:2 odd size");
    load_vs_pil(f, "jpeg444_29x17.jpg", "jpeg444_29x17_jpg.rgb", 0, "jpeg 4:4:4 odd size");
    load_vs_pil(f, "gray_33x21.jpg", "gray_33x21_jpg.rgb", 0, "jpeg gray");
    load_vs_pil(f, "progressive_41x27.jpg", "progressive_41x27_jpg.rgb", 0, "jpeg progressive");
    load_vs_pil(f, "cmyk_26x19.jpg", "cmyk_26x19_jpg.rgb", 0, "jpeg cmyk (adobe)");
    load_vs_pil(f, "lossy_37x23.webp", "lossy_37x23_webp.rgb", 0, "webp lossy");
    load_vs_pil(f, "lossless_37x23.webp", "lossless_37x23_webp.rgb", 0, "webp lossless");
    load_vs_pil(f, "alpha_31x19.webp", "alpha_31x19_webp.rgb", 0, "webp lossy+alpha");
    load_vs_pil(f, "anim_23x19.webp", "anim_23x19_webp.rgb", 0, "webp animated, first frame");
    load_vs_pil(f, "anim_alpha_23x19.webp", "anim_alpha_23x19_webp.rgb", 0,
                "webp animated lossy+alpha, first frame");
    /* rows stored top first (negative height), once refused as having no pixels */
    load_vs_pil(f, "topdown_7x5.bmp", "topdown_7x5_bmp.rgb", 0, "bmp top-down");
    /* 16-bit BMPs: Pillow's v·255/31 (or /63), not stb's bit replication */
    load_vs_pil(f, "bgr555_9x5.bmp", "bgr555_9x5_bmp.rgb", 0, "bmp 16-bit 5-5-5");
    load_vs_pil(f, "rgb565_9x5.bmp", "rgb565_9x5_bmp.rgb", 0, "bmp 16-bit 5-6-5 top-down");
    /* 16-bit gray (values up to 539): clipped to 255 as PIL's mode "I" → RGB */
    load_vs_pil(f, "gray16_13x11.png", "gray16_13x11_png.rgb", 0, "png 16-bit gray");
    load_vs_pil(f, "gray16_13x11.pgm", "gray16_13x11_pgm.rgb", 0, "pgm 16-bit gray");
    /* GIF first frames by Pillow's rules: partial frames, a frame past the screen, indices past
     * the palette */
    load_vs_pil(f, "interlaced_97x61.gif", "interlaced_97x61_gif.rgb", 0, "gif interlaced");
    load_vs_pil(f, "partial_9x7.gif", "partial_9x7_gif.rgb", 0, "gif partial frame");
    load_vs_pil(f, "partial_transp_9x7.gif", "partial_transp_9x7_gif.rgb", 0,
                "gif partial frame, transparency");
    load_vs_pil(f, "beyond_screen_6x5.gif", "beyond_screen_6x5_gif.rgb", 0,
                "gif frame past the screen");
    /* other maxvals: Pillow rescales to 255 (16-bit gray: to 65535, then clips) */
    static const char *const pnms[] = {"maxval10_7x3.pgm", "maxval1023_7x3.pgm",
                                       "maxval300_7x3.pgm", "maxval100_5x3.ppm",
                                       "maxval1000_5x3.ppm", "maxval65535_5x3.ppm"};
    for (int i = 0; i < 6; i++) {
        char key[64];
        snprintf(key, sizeof key, "%.*s_%s.rgb", (int)(strchr(pnms[i], '.') - pnms[i]), pnms[i],
                 strchr(pnms[i], '.') + 1);
        load_vs_pil(f, pnms[i], key, 0, "pnm maxval");
    }
    same_pixels("thin_5x90.png", "thin_5x90.bmp", "bmp");
    same_pixels("rgba_37x23.png", "rgb_37x23.ppm", "ppm");
    mmm_st_close(f);

    /* from memory, the same bytes give the same image */
    FILE *fp = fopen(DIR "/noise_48x40.png", "rb");
    static uint8_t buf[1 << 16];
    size_t n = fp ? fread(buf, 1, sizeof buf, fp) : 0;
    if (fp) fclose(fp);
    mmm_image a, b;
    int ra = mmm_image_from_memory(&a, buf, n, "noise_48x40.png (memory)");
    int rb = mmm_image_load(&b, DIR "/noise_48x40.png");
    check(ra == MMM_OK && rb == MMM_OK && a.w == 48 && a.h == 40 &&
              memcmp(a.rgb, b.rgb, 48 * 40 * 3) == 0,
          "load png from memory equals load from file (48×40)");
    mmm_image_free(&a);
    mmm_image_free(&b);
}

TEST(test_image_load_errors) {
    static const struct {
        const char *path;
        int code;
        const char *msg;
    } cases[] = {
        {DIR "/no_such_image.png", MMM_ERR_NOT_FOUND, "cannot open"},
        {DIR, MMM_ERR_IO, "is a directory, expected a regular file"},
        {DIR "/empty.png", MMM_ERR_FORMAT, "empty file"},
        {DIR "/truncated.png", MMM_ERR_FORMAT, "corrupt or truncated"},
        {DIR "/truncated.jpg", MMM_ERR_FORMAT, "corrupt or truncated"},
        {DIR "/garbage.png", MMM_ERR_FORMAT, "not a readable image"},
        {DIR "/huge.png", MMM_ERR_UNSUPPORTED, "20000×10000 pixels, more than 16384 per side"},
        {DIR "/huge_too_large.png", MMM_ERR_UNSUPPORTED, "30000×30000 pixels, more than 16384"},
        {DIR "/zero.ppm", MMM_ERR_FORMAT, "no pixels"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mmm_image img = {7, 7, (uint8_t *)&img};
        mmm_clear_error();
        int rc = mmm_image_load(&img, cases[i].path);
        const char *msg = mmm_last_error();
        check(rc == cases[i].code && strstr(msg, cases[i].path) && strstr(msg, cases[i].msg) &&
                  !img.rgb && !img.w && !img.h,
              "load error %s: %s [%s]", cases[i].path, mmm_status_name(rc), msg);
    }
}

/* The resizes of make_image_goldens.py, saved by Pillow as pillow/<image>.<w>x<h>.png. */
TEST(test_image_resize_pillow) {
    static const struct {
        const char *image;
        int sizes[5][2];
    } cases[] = {
        {"fmnist_28", {{45, 45}, {13, 9}, {28, 5}}},
        {"grid_56", {{28, 28}, {17, 17}, {5, 3}, {112, 56}}},
        {"rgba_37x23", {{48, 30}, {20, 50}, {37, 11}, {10, 23}}},
        {"thin_5x90", {{45, 8}, {5, 31}}},
        {"noise_48x40", {{31, 37}, {19, 13}, {48, 17}, {23, 40}, {97, 9}}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, DIR "/%s.png", cases[i].image);
        mmm_image src;
        if (!check(mmm_image_load(&src, path) == MMM_OK, "load %s", path)) continue;
        for (int k = 0; k < 5 && cases[i].sizes[k][0]; k++) {
            int w = cases[i].sizes[k][0], h = cases[i].sizes[k][1];
            mmm_image got, ref;
            snprintf(path, sizeof path, DIR "/pillow/%s.%dx%d.png", cases[i].image, w, h);
            int rg = mmm_image_resize_bicubic(&got, &src, w, h);
            int rr = mmm_image_load(&ref, path);
            size_t nd = 0;
            int m = rg || rr || ref.w != w || ref.h != h
                        ? 256 : max_diff(got.rgb, ref.rgb, (size_t)w * h * 3, &nd);
            check(m == 0, "resize bicubic %s %dx%d->%dx%d vs Pillow: byte-exact (max |diff| %d, "
                  "%zu bytes differ)", cases[i].image, src.w, src.h, w, h, m, nd);
            mmm_image_free(&got);
            mmm_image_free(&ref);
        }
        mmm_image_free(&src);
    }
}

TEST(test_image_resize_properties) {
    rng_t rng = rng_new(5);
    mmm_image src = {37, 29, malloc(37 * 29 * 3)}, out;
    for (int i = 0; i < 37 * 29 * 3; i++) src.rgb[i] = (uint8_t)(rng_uniform(&rng) * 256);
    int rc = mmm_image_resize_bicubic(&out, &src, 37, 29);
    check(rc == MMM_OK && memcmp(out.rgb, src.rgb, sizeof(uint8_t) * 37 * 29 * 3) == 0,
          "resize bicubic 37x29->37x29 is a copy");
    mmm_image_free(&out);

    /* the weights of every output sum to one in fixed point: a flat colour stays flat, at any
     * ratio, including antialiased downscaling by 100 */
    for (int i = 0; i < 37 * 29; i++) memcpy(src.rgb + 3 * i, (uint8_t[3]){3, 128, 254}, 3);
    static const int sizes[][2] = {{1, 1}, {200, 3}, {5, 300}, {36, 30}, {1000, 1}};
    int flat = 1;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        if (mmm_image_resize_bicubic(&out, &src, sizes[s][0], sizes[s][1])) flat = 0;
        for (int i = 0; flat && i < out.w * out.h; i++)
            flat = out.rgb[3 * i] == 3 && out.rgb[3 * i + 1] == 128 && out.rgb[3 * i + 2] == 254;
        mmm_image_free(&out);
    }
    check(flat, "resize bicubic of a flat 37x29 image stays flat at 1x1 200x3 5x300 36x30 1000x1");

    mmm_clear_error();
    rc = mmm_image_resize_bicubic(&out, &src, 0, 5);
    check(rc == MMM_ERR_ARG && strstr(mmm_last_error(), "0×5") && !out.rgb,
          "resize bicubic to 0x5 refused: %s", mmm_last_error());
    free(src.rgb);
}

TEST(test_image_tile_grid) {
    mmm_st_file *f;
    if (!check(mmm_st_open(&f, GOLDENS) == MMM_OK, "open %s", GOLDENS)) return;
    const mmm_st_tensor *t = mmm_st_find(f, "grid_choice");
    if (check(t && t->ndim == 2 && t->shape[1] == 6, "grid_choice golden present")) {
        int32_t *g = malloc(t->numel * sizeof *g);
        mmm_st_read_i32(t, g, t->numel);
        int bad = 0, first_bad = -1;
        for (int64_t r = 0; r < t->shape[0]; r++) {
            const int32_t *v = g + 6 * r;
            int cols = 0, rows = 0;
            mmm_image_tile_grid(&cols, &rows, v[0], v[1], v[2], 1, v[3]);
            if (cols != v[4] || rows != v[5]) {
                if (first_bad < 0) first_bad = (int)r;
                bad++;
            }
        }
        check(bad == 0, "tile grid vs InternVL find_closest_aspect_ratio: %d of %d image sizes "
              "differ (first row %d)", bad, (int)t->shape[0], first_bad);
        free(g);
    }
    mmm_st_close(f);

    int c, r;
    mmm_clear_error();
    int rc = mmm_image_tile_grid(&c, &r, 10, 10, 28, 3, 2);
    check(rc == MMM_ERR_ARG && strstr(mmm_last_error(), "[3, 2]"),
          "tile grid with min_tiles > max_tiles refused: %s", mmm_last_error());
}

/* The dynamic_preprocess cases of make_image_goldens.py (min_tiles 1, thumbnails on): the
 * golden key of each image, and its file. */
TEST(test_image_preprocess) {
    static const struct {
        const char *image, *file;
        int tile, max_tiles;
    } cases[] = {{"fmnist_28", "fmnist_28.png", 32, 6},
                 {"grid_56", "grid_56.png", 28, 6},
                 {"rgba_37x23", "rgba_37x23.png", 12, 6},
                 {"thin_5x90", "thin_5x90.png", 10, 6},
                 {"noise_48x40", "noise_48x40.png", 12, 6},
                 {"photo_40x30", "photo_40x30.jpg", 12, 6},
                 {"jpeg444_29x17_jpg", "jpeg444_29x17.jpg", 8, 6},
                 {"lossy_37x23_webp", "lossy_37x23.webp", 10, 6}};
    mmm_st_file *f;
    if (!check(mmm_st_open(&f, GOLDENS) == MMM_OK, "open %s", GOLDENS)) return;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int S = cases[i].tile;
        char path[256], key[128], what[128];
        snprintf(path, sizeof path, DIR "/%s", cases[i].file);
        snprintf(key, sizeof key, "%s.tiles.t%d.max%d", cases[i].image, S, cases[i].max_tiles);
        snprintf(what, sizeof what, "preprocess %s tile %d max %d", cases[i].image, S,
                 cases[i].max_tiles);
        mmm_image img;
        if (!check(mmm_image_load(&img, path) == MMM_OK, "load %s", path)) continue;
        const mmm_st_tensor *tt = mmm_st_find(f, key);
        char gkey[160];
        snprintf(gkey, sizeof gkey, "%s.grid", key);
        const mmm_st_tensor *tg = mmm_st_find(f, gkey);
        int32_t grid[3] = {0};
        if (!check(tt && tg && mmm_st_read_i32(tg, grid, 3) == MMM_OK, "%s: goldens present",
                   what)) {
            mmm_image_free(&img);
            continue;
        }
        size_t per = (size_t)3 * S * S;

        int cols, rows, n;
        float *tiles;
        mmm_image_tile_grid(&cols, &rows, img.w, img.h, S, 1, cases[i].max_tiles);
        int rc = mmm_image_preprocess(&tiles, &n, &img, S, 1, cases[i].max_tiles, 1);
        check(rc == MMM_OK && cols == grid[0] && rows == grid[1] && n == grid[2],
              "%s +thumbnail: grid %dx%d and %d tiles as InternVL (%dx%d, %d)", what, cols,
              rows, n, grid[0], grid[1], grid[2]);
        if (rc == MMM_OK && n == grid[2] && tt->numel == n * per) {
            float *ref = malloc(tt->numel * sizeof *ref);
            mmm_st_read_f32(tt, ref, tt->numel);
            char name[200];
            snprintf(name, sizeof name, "%s +thumbnail vs InternVL/Pillow/torchvision tiles, "
                     "bit-exact", what);
            check_close_f(name, tiles, ref, tt->numel, 0);

            /* thumbnails off: the same grid tiles, no thumbnail */
            float *t2;
            int n2;
            rc = mmm_image_preprocess(&t2, &n2, &img, S, 1, cases[i].max_tiles, 0);
            int grid_n = cols * rows;
            check(rc == MMM_OK && n2 == grid_n &&
                      memcmp(t2, ref, grid_n * per * sizeof *t2) == 0,
                  "%s no thumbnail: %d tiles, the grid tiles of the golden", what, n2);
            free(t2);
            /* max_tiles 1: one tile, the whole image resized, which is the thumbnail */
            rc = mmm_image_preprocess(&t2, &n2, &img, S, 1, 1, 1);
            check(rc == MMM_OK && n2 == 1 && memcmp(t2, ref + (n - 1) * per, per * sizeof *t2) == 0,
                  "%s max_tiles 1: a single tile equal to the last golden tile", what);
            free(t2);
            free(ref);
        }
        free(tiles);
        mmm_image_free(&img);
    }
    mmm_st_close(f);

    mmm_image img = {4, 4, calloc(48, 1)};
    float *tiles = (float *)&img;
    int n = 9;
    mmm_clear_error();
    int rc = mmm_image_preprocess(&tiles, &n, &img, 0, 1, 6, 1);
    check(rc == MMM_ERR_ARG && !tiles && n == 0 && strstr(mmm_last_error(), "tile 0"),
          "preprocess with tile 0 refused: %s", mmm_last_error());
    free(img.rgb);
}
