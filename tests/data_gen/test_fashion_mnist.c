/* mmm data fashion-mnist: IDX loading (the real files and broken ones), and a small generated
 * dataset checked record by record: JSON shape, wording, images on disk, answers re-derived
 * from the labels, split separation, grids, determinism, coverage. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../harness.h"
#include "mmm/error.h"
#include "mmm/fashion_mnist.h"
#include "mmm/fileio.h"
#include "mmm/image.h"

#define SRC MMM_FMNIST_SOURCE_DIR
#define PX (28 * 28)

static const char *const names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
static const char *const groups[10] = {"tops", "bottoms", "tops", "tops", "tops",
                                       "footwear", "tops", "footwear", "bags", "footwear"};
static const char *const tasks[6] = {"name", "yesno", "group", "grid", "which", "count"};
static const char *const corners[4] = {"top left", "top right", "bottom left", "bottom right"};

/* ---- temp dirs and files ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}
static void rm_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = '\0';
    if (len) *len = (size_t)n;
    return b;
}

static void write_all(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A gzip'd IDX file: header words then body bytes. */
static void write_idx(const char *path, const uint32_t *header, int n_header, const uint8_t *body, size_t n) {
    gzFile f = gzopen(path, "wb");
    for (int i = 0; i < n_header; i++) {
        uint8_t w[4];
        put_be32(w, header[i]);
        gzwrite(f, w, 4);
    }
    if (n) gzwrite(f, body, (unsigned)n);
    gzclose(f);
}

/* A small synthetic source: n images per split (3 per class and more), pixel value = a hash of
 * (split, index) so every image differs. */
static void write_small_source(const char *dir, int n_train, int n_test) {
    mkdir(dir, 0777);
    for (int s = 0; s < 2; s++) {
        int n = s ? n_test : n_train;
        uint8_t *px = malloc((size_t)n * PX), *lab = malloc((size_t)n);
        for (int i = 0; i < n; i++) {
            lab[i] = (uint8_t)((i * 7 + s) % 10);
            for (int k = 0; k < PX; k++) px[(size_t)i * PX + k] = (uint8_t)((i * 131 + k * 17 + s * 59 + (k * i) % 251) & 255);
        }
        char p[512];
        uint32_t hi[4] = {2051, (uint32_t)n, 28, 28}, hl[2] = {2049, (uint32_t)n};
        snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte.gz", dir, s ? "t10k" : "train");
        write_idx(p, hi, 4, px, (size_t)n * PX);
        snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte.gz", dir, s ? "t10k" : "train");
        write_idx(p, hl, 2, lab, (size_t)n);
        free(px);
        free(lab);
    }
}

/* ---- IDX loading ---- */

TEST(test_fmnist_idx) {
    mmm_fmnist_split s;
    int rc = mmm_fmnist_load(&s, SRC, MMM_FMNIST_TRAIN);
    if (!check(rc == MMM_OK, "fmnist load train split: %s", rc ? mmm_last_error() : "read")) return;
    long sum = 0;
    for (int k = 0; k < PX; k++) sum += s.pixels[k];
    check(s.n == 60000, "fmnist train split has 60000 images (%d)", s.n);
    check(s.labels[0] == 9 && s.labels[1] == 0 && s.labels[3] == 3, "fmnist first train labels 9 0 0 3 (Ankle boot ...)");
    check(s.pixels[96] == 1 && s.pixels[99] == 13 && s.pixels[100] == 73 && sum == 76247 && s.pixels[0] == 0,
          "fmnist first train image: pixel (3,15) = 13, (3,16) = 73, sum 76247");
    int per_class[10] = {0};
    for (int i = 0; i < s.n; i++) per_class[s.labels[i]]++;
    int balanced = 1;
    for (int c = 0; c < 10; c++) balanced &= per_class[c] == 6000;
    check(balanced, "fmnist train split: 6000 images per class");
    mmm_fmnist_free(&s);
    rc = mmm_fmnist_load(&s, SRC, MMM_FMNIST_TEST);
    check(rc == MMM_OK && s.n == 10000 && s.labels[0] == 9 && s.labels[1] == 2, "fmnist test split: 10000 images, labels 9 2 ...");
    mmm_fmnist_free(&s);
    int ok = 1;
    for (int c = 0; c < 10; c++) ok &= !strcmp(mmm_fmnist_class_name(c), names[c]) && !strcmp(mmm_fmnist_group_name(c), groups[c]);
    check(ok, "fmnist class names and groups");
}

/* Loads images_path with labels_path; expects failure whose message holds both `file` and `what`. */
static void expect_load_error(const char *images, const char *labels, const char *file, const char *what, const char *label) {
    mmm_fmnist_split s;
    int rc = mmm_fmnist_load_idx(&s, images, labels);
    const char *msg = mmm_last_error();
    check(rc != MMM_OK && strstr(msg, file) && strstr(msg, what) && !s.pixels && !s.labels,
          "fmnist idx %s: error names the file (%s)", label, rc ? msg : "loaded");
}

TEST(test_fmnist_idx_errors) {
    char dir[64], im[128], lb[128], gz[128], bad[128];
    snprintf(dir, sizeof dir, "/tmp/mmm_test_fmnist_idx_%d", (int)getpid());
    mkdir(dir, 0777);
    snprintf(im, sizeof im, "%s/im.gz", dir);
    snprintf(lb, sizeof lb, "%s/lb.gz", dir);
    snprintf(bad, sizeof bad, "%s/bad.gz", dir);
    uint8_t px[6 * PX], lab[6] = {0, 1, 2, 3, 4, 5};
    for (int i = 0; i < 6 * PX; i++) px[i] = (uint8_t)(i * 7);
    uint32_t hi[4] = {2051, 6, 28, 28}, hl[2] = {2049, 6};
    write_idx(im, hi, 4, px, sizeof px);
    write_idx(lb, hl, 2, lab, sizeof lab);
    mmm_fmnist_split s;
    int rc = mmm_fmnist_load_idx(&s, im, lb);
    check(rc == MMM_OK && s.n == 6 && s.labels[5] == 5 && s.pixels[5 * PX + 3] == (uint8_t)((5 * PX + 3) * 7),
          "fmnist idx small gzip'd files load");
    mmm_fmnist_free(&s);
    snprintf(gz, sizeof gz, "%s/raw.idx", dir); /* not compressed: zlib reads it as it is */
    uint8_t raw[8 + 6];
    put_be32(raw, 2049), put_be32(raw + 4, 6), memcpy(raw + 8, lab, 6);
    write_all(gz, raw, sizeof raw);
    rc = mmm_fmnist_load_idx(&s, im, gz);
    check(rc == MMM_OK && s.labels[4] == 4, "fmnist idx uncompressed label file loads");
    mmm_fmnist_free(&s);

    uint32_t h[4] = {2049, 6, 28, 28};
    write_idx(bad, h, 4, px, sizeof px);
    expect_load_error(bad, lb, bad, "magic 2049", "image file with the label magic");
    write_idx(bad, hi, 4, px, sizeof px);
    expect_load_error(im, bad, bad, "not an IDX label file (magic 2051", "image file given as the label file");
    h[0] = 2051, h[2] = 32, h[3] = 32;
    write_idx(bad, h, 4, px, sizeof px);
    expect_load_error(bad, lb, bad, "32×32", "32×32 images");
    h[0] = 2051, h[1] = 7, h[2] = h[3] = 28;
    write_idx(bad, h, 4, px, sizeof px);
    expect_load_error(bad, lb, bad, "truncated", "fewer pixels than the header announces");
    uint32_t hl5[2] = {2049, 5};
    write_idx(bad, hl5, 2, lab, 5);
    expect_load_error(im, bad, bad, "5 labels, but", "label count differs from image count");
    uint8_t lab_bad[6] = {0, 1, 2, 10, 4, 5};
    write_idx(bad, hl, 2, lab_bad, 6);
    expect_load_error(im, bad, bad, "label 10 of image 3", "label out of range");
    uint8_t lab_long[7] = {0, 1, 2, 3, 4, 5, 6};
    write_idx(bad, hl, 2, lab_long, 7);
    expect_load_error(im, bad, bad, "unexpected data after the labels", "trailing data");
    expect_load_error(dir, lb, dir, "", "a directory as the image file");
    snprintf(gz, sizeof gz, "%s/missing.gz", dir);
    rc = mmm_fmnist_load_idx(&s, gz, lb);
    check(rc == MMM_ERR_NOT_FOUND && strstr(mmm_last_error(), gz), "fmnist idx missing file is not-found, named");

    /* the real train images cut short, and with flipped bytes in the middle */
    size_t n;
    char *real = read_all(SRC "/train-images-idx3-ubyte.gz", &n);
    if (check(real != NULL, "fmnist idx read the real train images .gz")) {
        write_all(bad, real, n / 3);
        expect_load_error(bad, lb, bad, "truncated", "real .gz cut at a third");
        write_all(bad, real, n - 4);
        expect_load_error(bad, lb, bad, "truncated", "real .gz without its size trailer");
        for (size_t k = n / 2; k < n / 2 + 64; k++) real[k] ^= 0x5a;
        write_all(bad, real, n);
        expect_load_error(bad, lb, bad, "corrupt gzip data", "real .gz with 64 flipped bytes");
    }
    free(real);

    /* and through the generator, as `mmm data fashion-mnist --source DIR` reaches it */
    char src[128], out[128], p[256];
    snprintf(src, sizeof src, "%s/src", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    write_small_source(src, 40, 20);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte.gz", src);
    char *lbz = read_all(p, &n);
    write_all(p, lbz, n / 2);
    free(lbz);
    mmm_fmnist_options o;
    mmm_fmnist_default_options(&o);
    o.source_dir = src, o.out_dir = out, o.n_train = 20, o.n_test = 10;
    mmm_fmnist_stats st;
    rc = mmm_fmnist_generate(&o, &st);
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), p) && strstr(mmm_last_error(), "truncated"),
          "fmnist generate with a truncated source file: %s", mmm_last_error());
    struct stat sb;
    check(stat(out, &sb) != 0, "fmnist generate failing on the source writes nothing");
    rm_tree(dir);
}

/* ---- the generated dataset ---- */

static uint64_t fnv(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

typedef struct {
    mmm_fmnist_split s[2];
    uint64_t *hash[2]; /* per image, to find which source image a grid quadrant holds */
    char **paths;      /* every image path the JSONL files name (relative), sorted at the end */
    int n_paths, cap_paths;
} ctx_t;

static void add_path(ctx_t *c, const char *p) {
    for (int i = 0; i < c->n_paths; i++)
        if (!strcmp(c->paths[i], p)) return;
    if (c->n_paths == c->cap_paths) {
        c->cap_paths = c->cap_paths ? 2 * c->cap_paths : 256;
        c->paths = realloc(c->paths, (size_t)c->cap_paths * sizeof *c->paths);
    }
    c->paths[c->n_paths++] = strdup(p);
}

/* Index of the split's image at path "images/<split>/NNNNN.png", or -1. */
static int image_index(const char *path, const char *split) {
    char prefix[32];
    int idx, len = 0;
    snprintf(prefix, sizeof prefix, "images/%s/", split);
    if (strncmp(path, prefix, strlen(prefix))) return -1;
    if (sscanf(path + strlen(prefix), "%5d.png%n", &idx, &len) != 1 || path[strlen(prefix) + (size_t)len] || len != 9) return -1;
    return idx;
}

/* The gray image at dir/rel, checked to be side×side with R = G = B; NULL otherwise. */
static uint8_t *load_gray(const char *dir, const char *rel, int side) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    mmm_image img;
    if (mmm_image_load(&img, p)) return NULL;
    uint8_t *g = NULL;
    if (img.w == side && img.h == side) {
        g = malloc((size_t)side * side);
        for (int i = 0; i < side * side; i++) {
            g[i] = img.rgb[3 * i];
            if (img.rgb[3 * i + 1] != g[i] || img.rgb[3 * i + 2] != g[i]) {
                free(g);
                g = NULL;
                break;
            }
        }
    }
    mmm_image_free(&img);
    return g;
}

typedef struct {
    long lines, bad_shape, bad_path, bad_image, bad_text, bad_answer, markers_off;
    long per_task[6], yes, no, grids_ok, name_dupes;
    long max_images;
} tally;

/* Checks one record of split `sp` (0 train, 1 test) against the labels. */
static void check_record(ctx_t *c, const char *dir, const cJSON *r, int sp, const char *id_prefix, long line, tally *t,
                         uint8_t *name_seen) {
    const char *split = sp ? "test" : "train";
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id"), *task = cJSON_GetObjectItemCaseSensitive(r, "task"),
                *image = cJSON_GetObjectItemCaseSensitive(r, "image"),
                *conv = cJSON_GetObjectItemCaseSensitive(r, "conversations");
    char want_id[64];
    snprintf(want_id, sizeof want_id, "%s-%06ld", id_prefix, line);
    int k = -1;
    for (int i = 0; i < 6 && cJSON_IsString(task); i++)
        if (!strcmp(task->valuestring, tasks[i])) k = i;
    const cJSON *h = cJSON_GetArrayItem(conv, 0), *g = cJSON_GetArrayItem(conv, 1);
    const cJSON *hf = cJSON_GetObjectItemCaseSensitive(h, "from"), *hv = cJSON_GetObjectItemCaseSensitive(h, "value"),
                *gf = cJSON_GetObjectItemCaseSensitive(g, "from"), *gv = cJSON_GetObjectItemCaseSensitive(g, "value");
    if (!cJSON_IsString(id) || strcmp(id->valuestring, want_id) || k < 0 || cJSON_GetArraySize(r) != 4 ||
        !(cJSON_IsString(image) || cJSON_IsArray(image)) || cJSON_GetArraySize(conv) != 2 || !cJSON_IsString(hf) ||
        strcmp(hf->valuestring, "human") || !cJSON_IsString(gf) || strcmp(gf->valuestring, "gpt") ||
        !cJSON_IsString(hv) || !cJSON_IsString(gv)) {
        t->bad_shape++;
        return;
    }
    t->per_task[k]++;
    int n = cJSON_IsString(image) ? 1 : cJSON_GetArraySize(image);
    if (n > t->max_images) t->max_images = n;
    const char *q = hv->valuestring, *a = gv->valuestring;
    int markers = 0;
    for (const char *m = q; (m = strstr(m, "<image>")); m += 7) markers++;
    if (markers != n) t->markers_off++;
    if (k == MMM_FMNIST_COUNT && strcmp(id_prefix, "test_long") && (n < 3 || n > 6)) t->bad_shape++;

    /* the images: paths in this split, files that load, their labels */
    int idx[512], lab[512];
    if (n > 512 || n < 1 || (k == MMM_FMNIST_GRID) != (cJSON_IsString(image) && strstr(image->valuestring, "/grid-") != NULL)) {
        t->bad_path++;
        return;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *p = cJSON_IsString(image) ? image : cJSON_GetArrayItem(image, i);
        if (!cJSON_IsString(p)) {
            t->bad_path++;
            return;
        }
        add_path(c, p->valuestring);
        if (k == MMM_FMNIST_GRID) {
            char want[64];
            snprintf(want, sizeof want, "images/%s/grid-%06ld.png", split, line);
            if (strcmp(p->valuestring, want)) {
                t->bad_path++;
                return;
            }
            continue;
        }
        idx[i] = image_index(p->valuestring, split);
        if (idx[i] < 0 || idx[i] >= c->s[sp].n) {
            t->bad_path++;
            return;
        }
        lab[i] = c->s[sp].labels[idx[i]];
        uint8_t *px = load_gray(dir, p->valuestring, 28);
        if (!px || memcmp(px, c->s[sp].pixels + (size_t)idx[i] * PX, PX)) t->bad_image++;
        free(px);
    }
    if (k == MMM_FMNIST_GRID) { /* find each quadrant among the split's images */
        uint8_t *px = load_gray(dir, image->valuestring, 56);
        int found = 0;
        for (int qd = 0; px && qd < 4; qd++) {
            uint8_t tile[PX];
            for (int y = 0; y < 28; y++) memcpy(tile + 28 * y, px + (size_t)(28 * (qd / 2) + y) * 56 + 28 * (qd % 2), 28);
            uint64_t hh = fnv(tile, PX);
            for (int i = 0; i < c->s[sp].n; i++)
                if (c->hash[sp][i] == hh && !memcmp(tile, c->s[sp].pixels + (size_t)i * PX, PX)) {
                    lab[qd] = c->s[sp].labels[i];
                    found++;
                    break;
                }
        }
        int distinct = found == 4;
        for (int i = 0; distinct && i < 4; i++)
            for (int j = 0; j < i; j++) distinct &= lab[i] != lab[j];
        t->grids_ok += distinct;
        if (!px || found != 4) t->bad_image++;
        free(px);
        if (found != 4) return;
    }

    /* the question's exact wording and the answer from the labels */
    char want_q[8192] = "", want_a[32] = "";
    int asked = -1;
    for (int cl = 0; cl < 10; cl++) {
        const char *at = strstr(q, names[cl]);
        if (at && at[strlen(names[cl])] == '?' && at > q && at[-1] == ' ') asked = cl;
    }
    switch (k) {
    case MMM_FMNIST_NAME:
        strcpy(want_q, "<image>\nWhat item is this?");
        strcpy(want_a, names[lab[0]]);
        if (name_seen[idx[0]]++) t->name_dupes++;
        break;
    case MMM_FMNIST_YESNO:
        if (asked >= 0) snprintf(want_q, sizeof want_q, "<image>\nIs this a %s?", names[asked]);
        strcpy(want_a, lab[0] == asked ? "Yes" : "No");
        if (lab[0] == asked) t->yes++;
        else t->no++;
        break;
    case MMM_FMNIST_GROUP:
        strcpy(want_q, "<image>\nWhich group is this item in: tops, bottoms, footwear or bags?");
        strcpy(want_a, groups[lab[0]]);
        break;
    case MMM_FMNIST_GRID:
        for (int qd = 0; qd < 4; qd++)
            if (strstr(q, corners[qd]) && strstr(q, corners[qd])[strlen(corners[qd])] == ' ') {
                snprintf(want_q, sizeof want_q, "<image>\nWhat item is in the %s corner?", corners[qd]);
                strcpy(want_a, names[lab[qd]]);
            }
        break;
    case MMM_FMNIST_WHICH: {
        int hits = 0, at = 0;
        for (int i = 0; i < n; i++) {
            snprintf(want_q + strlen(want_q), sizeof want_q - strlen(want_q), "Image %d: <image>\n", i + 1);
            if (lab[i] == asked) hits++, at = i;
        }
        if (asked >= 0) snprintf(want_q + strlen(want_q), sizeof want_q - strlen(want_q), "Which image shows a %s?", names[asked]);
        if (hits == 1 && n >= 2 && n <= 4) snprintf(want_a, sizeof want_a, "Image %d", at + 1);
        break;
    }
    case MMM_FMNIST_COUNT: {
        int hits = 0;
        for (int i = 0; i < n; i++) {
            strcat(want_q, "<image>");
            hits += lab[i] == asked;
        }
        if (asked >= 0) snprintf(want_q + strlen(want_q), sizeof want_q - strlen(want_q), "\nHow many of these images show a %s?", names[asked]);
        if (hits <= 6) snprintf(want_a, sizeof want_a, "%d", hits);
        break;
    }
    }
    if (strcmp(q, want_q)) t->bad_text++;
    if (strcmp(a, want_a)) t->bad_answer++;
}

/* Checks every line of dir/file; sp: the split whose images it may use. */
static void check_jsonl(ctx_t *c, const char *dir, const char *file, int sp, const char *id_prefix, tally *t) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    memset(t, 0, sizeof *t);
    char *text = read_all(p, NULL);
    if (!check(text != NULL, "fmnist %s exists", file)) return;
    uint8_t *name_seen = calloc((size_t)c->s[sp].n, 1);
    long bad_json = 0;
    for (char *line = text, *end; *line; line = end + 1) {
        end = strchr(line, '\n');
        if (!end) {
            bad_json++; /* the last line lacks its newline */
            break;
        }
        *end = '\0';
        cJSON *r = cJSON_Parse(line);
        if (!r) bad_json++;
        else check_record(c, dir, r, sp, id_prefix, t->lines, t, name_seen);
        cJSON_Delete(r);
        t->lines++;
    }
    check(bad_json == 0 && t->bad_shape == 0, "fmnist %s: %ld lines parse (cJSON) with id, task, image, conversations "
          "(human then gpt) (%ld bad)", file, t->lines, bad_json + t->bad_shape);
    check(t->markers_off == 0, "fmnist %s: one <image> per image in every question", file);
    check(t->bad_path == 0, "fmnist %s: image paths are %s images (or this sample's grid)", file, sp ? "test" : "train");
    check(t->bad_image == 0, "fmnist %s: every image loads, gray, with the source pixels", file);
    check(t->bad_text == 0, "fmnist %s: questions are worded exactly as specified", file);
    check(t->bad_answer == 0, "fmnist %s: every answer matches the labels", file);
    free(name_seen);
    free(text);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The PNGs under dir/images/<split>, as sorted relative paths. */
static int list_pngs(const char *dir, char ***out) {
    int n = 0, cap = 0;
    char **v = NULL;
    for (int s = 0; s < 2; s++) {
        char p[512];
        snprintf(p, sizeof p, "%s/images/%s", dir, s ? "test" : "train");
        DIR *d = opendir(p);
        for (struct dirent *e; d && (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            if (n == cap) v = realloc(v, (size_t)(cap = cap ? 2 * cap : 256) * sizeof *v);
            snprintf(p, sizeof p, "images/%s/%s", s ? "test" : "train", e->d_name);
            v[n++] = strdup(p);
        }
        if (d) closedir(d);
    }
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    *out = v;
    return n;
}

static int generate(const char *src, const char *out, uint64_t seed, long n_train, long n_test, long n_long, int k,
                    mmm_fmnist_stats *st) {
    mmm_fmnist_options o;
    mmm_fmnist_default_options(&o);
    o.source_dir = src, o.out_dir = out, o.seed = seed;
    o.n_train = n_train, o.n_test = n_test, o.n_long = n_long, o.long_images = k;
    int rc = mmm_fmnist_generate(&o, st);
    if (rc) printf("  (%s)\n", mmm_last_error());
    return rc;
}

/* Compares every file of dir a with the same path under b; returns how many differ or lack a twin. */
static const char *cmp_root_a, *cmp_root_b;
static long cmp_files, cmp_differ;
static int cmp_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)ftw;
    if (flag != FTW_F) return 0;
    char other[1024];
    snprintf(other, sizeof other, "%s%s", cmp_root_b, path + strlen(cmp_root_a));
    size_t na, nb;
    char *x = read_all(path, &na), *y = read_all(other, &nb);
    cmp_files++;
    cmp_differ += !x || !y || na != nb || memcmp(x, y, na);
    free(x);
    free(y);
    return 0;
}
static long compare_trees(const char *a, const char *b) {
    cmp_root_a = a, cmp_root_b = b, cmp_files = cmp_differ = 0;
    nftw(a, cmp_entry, 16, FTW_PHYS);
    return cmp_differ;
}

TEST(test_fmnist_generate) {
    char root[64], a[128], b[128], d[128];
    snprintf(root, sizeof root, "/tmp/mmm_test_fmnist_gen_%d", (int)getpid());
    snprintf(a, sizeof a, "%s/a", root);
    snprintf(b, sizeof b, "%s/b", root);
    snprintf(d, sizeof d, "%s/c", root);
    mkdir(root, 0777);
    ctx_t c = {0};
    mmm_fmnist_stats st;
    int rc = generate(SRC, a, 7, 300, 60, 2, 40, &st);
    if (!check(rc == MMM_OK, "fmnist generate --train 300 --test 60 --long 2 --long-images 40") ||
        !check(!mmm_fmnist_load(&c.s[0], SRC, MMM_FMNIST_TRAIN) && !mmm_fmnist_load(&c.s[1], SRC, MMM_FMNIST_TEST),
               "fmnist reload the splits")) {
        rm_tree(root);
        return;
    }
    for (int s = 0; s < 2; s++) {
        c.hash[s] = malloc((size_t)c.s[s].n * sizeof(uint64_t));
        for (int i = 0; i < c.s[s].n; i++) c.hash[s][i] = fnv(c.s[s].pixels + (size_t)i * PX, PX);
    }
    tally tr, te, tl;
    check_jsonl(&c, a, "train.jsonl", 0, "train", &tr);
    check_jsonl(&c, a, "test.jsonl", 1, "test", &te);
    check_jsonl(&c, a, "test_long.jsonl", 1, "test_long", &tl);
    const long want_tr[6] = {150, 45, 30, 30, 30, 15}, want_te[6] = {30, 9, 6, 6, 6, 3};
    int mix_ok = tr.lines == 300 && te.lines == 60;
    for (int k = 0; k < 6; k++) mix_ok &= tr.per_task[k] == want_tr[k] && te.per_task[k] == want_te[k] &&
                                          st.samples[0][k] == want_tr[k] && st.samples[1][k] == want_te[k];
    check(mix_ok, "fmnist task mix: train name 150 yesno 45 group 30 grid 30 which 30 count 15, test a fifth of it");
    check(labs(tr.yes - tr.no) <= 1 && labs(te.yes - te.no) <= 1, "fmnist yes/no balanced: train %ld/%ld, test %ld/%ld",
          tr.yes, tr.no, te.yes, te.no);
    check(tr.grids_ok == 30 && te.grids_ok == 6, "fmnist grids are 56×56, four source images of four classes, the "
          "asked corner's class answered (%ld + %ld)", tr.grids_ok, te.grids_ok);
    check(tr.name_dupes == 0 && te.name_dupes == 0 && st.name_covered[0] == 150 && st.name_covered[1] == 30,
          "fmnist name samples use distinct images while the split lasts");
    check(tl.lines == 2 && tl.per_task[MMM_FMNIST_COUNT] == 2 && tl.max_images == 40,
          "fmnist test_long.jsonl: 2 count questions over 40 test images");

    /* exactly the images named, no others; the corpus */
    char **files;
    int n_files = list_pngs(a, &files);
    qsort(c.paths, (size_t)c.n_paths, sizeof *c.paths, cmp_str);
    int same = n_files == c.n_paths && n_files == st.images_written;
    for (int i = 0; same && i < n_files; i++) same = !strcmp(files[i], c.paths[i]);
    check(same, "fmnist images/ holds exactly the %d images the JSONL files name (%ld written)", n_files, st.images_written);
    for (int i = 0; i < n_files; i++) free(files[i]);
    free(files);
    char p[256];
    snprintf(p, sizeof p, "%s/corpus.txt", a);
    char *corpus = read_all(p, NULL);
    long lines = 0, bad = 0, which_lines = 0, roles = 0;
    for (char *l = corpus, *e; l && *l; l = e + 1) {
        e = strchr(l, '\n');
        if (!e) break;
        *e = '\0';
        lines++;
        bad += !*l || strstr(l, "<image>") || l[0] == ' ' || e[-1] == ' ';
        which_lines += !strncmp(l, "Image ", 6) && l[strlen(l) - 1] == ':';
        roles += !strcmp(l, "user") || !strcmp(l, "assistant");
    }
    /* every sample gives the template's two role names, a question line and an answer line,
     * which-samples one more per image */
    long want_lines = 4 * 360 + which_lines;
    check(corpus && bad == 0 && lines == want_lines && roles == 2 * 360 && which_lines >= 2 * 36 && which_lines <= 4 * 36,
          "fmnist corpus.txt: %ld lines of text without <image> (%ld expected), %ld role names", lines, want_lines, roles);
    free(corpus);

    /* determinism */
    rc = generate(SRC, b, 7, 300, 60, 2, 40, &st);
    long differ = compare_trees(a, b);
    check(rc == MMM_OK && differ == 0 && cmp_files == n_files + 4, "fmnist same seed: all %ld files identical", cmp_files);
    rc = generate(SRC, d, 8, 300, 60, 2, 40, &st);
    char pa[256], pb[256];
    int all_differ = 1;
    const char *jl[] = {"train.jsonl", "test.jsonl", "test_long.jsonl", "corpus.txt"};
    for (int i = 0; i < 4; i++) {
        snprintf(pa, sizeof pa, "%s/%s", a, jl[i]);
        snprintf(pb, sizeof pb, "%s/%s", d, jl[i]);
        size_t na, nb;
        char *x = read_all(pa, &na), *y = read_all(pb, &nb);
        all_differ &= x && y && (na != nb || memcmp(x, y, na));
        free(x);
        free(y);
    }
    check(rc == MMM_OK && all_differ, "fmnist another seed: every JSONL file and the corpus differ");

    for (int s = 0; s < 2; s++) {
        mmm_fmnist_free(&c.s[s]);
        free(c.hash[s]);
    }
    for (int i = 0; i < c.n_paths; i++) free(c.paths[i]);
    free(c.paths);
    rm_tree(root);
}

/* On a small source: name samples cover every image once there are enough; the test split does
 * not change with --train; bad options are refused. */
TEST(test_fmnist_generate_small) {
    char root[64], src[128], a[128], b[128];
    snprintf(root, sizeof root, "/tmp/mmm_test_fmnist_small_%d", (int)getpid());
    snprintf(src, sizeof src, "%s/src", root);
    snprintf(a, sizeof a, "%s/a", root);
    snprintf(b, sizeof b, "%s/b", root);
    mkdir(root, 0777);
    write_small_source(src, 30, 20);
    mmm_fmnist_stats st;
    int rc = generate(src, a, 1, 100, 60, 0, 0, &st);
    check(rc == MMM_OK && st.samples[0][MMM_FMNIST_NAME] == 50 && st.name_covered[0] == 30 &&
          st.samples[1][MMM_FMNIST_NAME] == 30 && st.name_covered[1] == 20,
          "fmnist small source: 50 name samples cover all 30 train images, 30 cover all 20 test images");
    struct stat sb;
    char pa[256], pb[256];
    snprintf(pa, sizeof pa, "%s/test_long.jsonl", a);
    check(stat(pa, &sb) != 0, "fmnist no --long: no test_long.jsonl");
    rc = generate(src, b, 1, 37, 60, 0, 0, &st);
    snprintf(pa, sizeof pa, "%s/test.jsonl", a);
    snprintf(pb, sizeof pb, "%s/test.jsonl", b);
    size_t na, nb;
    char *x = read_all(pa, &na), *y = read_all(pb, &nb);
    check(rc == MMM_OK && x && y && na == nb && !memcmp(x, y, na), "fmnist test.jsonl does not depend on --train");
    free(x);
    free(y);

    mmm_fmnist_options o;
    mmm_fmnist_default_options(&o);
    o.source_dir = src, o.out_dir = b;
    o.n_long = 1, o.long_images = 0;
    check(mmm_fmnist_generate(&o, &st) == MMM_ERR_ARG && strstr(mmm_last_error(), "images per long question"),
          "fmnist --long-images 0 refused");
    o.n_long = 0, o.n_train = -1;
    check(mmm_fmnist_generate(&o, &st) == MMM_ERR_ARG, "fmnist negative sample count refused");
    mmm_fmnist_default_options(&o);
    o.source_dir = src, o.out_dir = b;
    for (int k = 0; k < MMM_FMNIST_N_TASKS; k++) o.mix[k] = 0;
    check(mmm_fmnist_generate(&o, &st) == MMM_ERR_ARG && strstr(mmm_last_error(), "all zero"), "fmnist all-zero mix refused");
    snprintf(pa, sizeof pa, "%s/file", root);
    write_all(pa, "x", 1);
    o.mix[0] = 1, o.out_dir = pa, o.n_train = 5, o.n_test = 5;
    check(mmm_fmnist_generate(&o, &st) == MMM_ERR_IO && strstr(mmm_last_error(), pa),
          "fmnist --out naming a file is an error naming it");

    /* a split without one class cannot feed every task */
    uint8_t px[PX * 12] = {0}, lab[12];
    for (int i = 0; i < 12; i++) lab[i] = (uint8_t)(i % 9), px[i * PX] = (uint8_t)i;
    uint32_t hi[4] = {2051, 12, 28, 28}, hl[2] = {2049, 12};
    snprintf(pa, sizeof pa, "%s/t10k-images-idx3-ubyte.gz", src);
    write_idx(pa, hi, 4, px, sizeof px);
    snprintf(pa, sizeof pa, "%s/t10k-labels-idx1-ubyte.gz", src);
    write_idx(pa, hl, 2, lab, sizeof lab);
    o.out_dir = b;
    check(mmm_fmnist_generate(&o, &st) == MMM_ERR_FORMAT && strstr(mmm_last_error(), "class 9 (Ankle boot)") &&
          strstr(mmm_last_error(), src), "fmnist a test split without Ankle boots is a clear error");
    rm_tree(root);
}

TEST(test_fmnist_cli_mix) {
    char root[64], args[512], out[4096];
    snprintf(root, sizeof root, "/tmp/mmm_test_fmnist_mix_%d", (int)getpid());
    mkdir(root, 0777);
    write_small_source(root, 30, 20);
    snprintf(args, sizeof args, "data fashion-mnist --source %s --out %s/o --train 100 --test 10 --mix name=0,count=10,yesno=10",
             root, root);
    int rc = run_mmm(args, out, sizeof out);
    check(rc == 0 && strstr(out, "train 100 (yesno 20, group 20, grid 20, which 20, count 20)"),
          "fmnist --mix sets the named weights, others keep theirs: %s", out);
    snprintf(args, sizeof args, "data fashion-mnist --source %s --out %s/o --mix nam=3", root, root);
    rc = run_mmm(args, out, sizeof out);
    check(rc == 2 && strstr(out, "--mix takes TASK=WEIGHT pairs") && strstr(out, "not 'nam=3'"),
          "fmnist --mix with an unknown task is refused: %s", out);
    snprintf(args, sizeof args, "data fashion-mnist --source %s --out %s/o --mix name=0,yesno=0,group=0,grid=0,which=0,count=0",
             root, root);
    rc = run_mmm(args, out, sizeof out);
    check(rc == 1 && strstr(out, "the task mix is all zero"), "fmnist --mix all zero is refused: %s", out);
    snprintf(args, sizeof args, "rm -rf %s", root);
    if (system(args)) fprintf(stderr, "could not remove %s\n", root);
}
