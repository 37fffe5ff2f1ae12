/* Fashion-MNIST (docs/design.md §5): reading the IDX files Debian's dataset-fashion-mnist ships, and
 * generating from them the visual question answering dataset the embedded default trains on,
 * as JSON Lines in the LLaVA/InternVL style (docs/design.md §6) with PNG images. */
#ifndef MMM_FASHION_MNIST_H
#define MMM_FASHION_MNIST_H

#include <stdint.h>

#define MMM_FMNIST_SOURCE_DIR "/usr/share/datasets/fashion-mnist"
#define MMM_FMNIST_SIDE 28
#define MMM_FMNIST_CLASSES 10

/* ---- the IDX files ---- */

typedef enum { MMM_FMNIST_TRAIN = 0, MMM_FMNIST_TEST = 1 } mmm_fmnist_split_id;

typedef struct {
    int n;           /* images */
    uint8_t *pixels; /* (n, 28, 28) gray, row-major, 0 = black background */
    uint8_t *labels; /* (n) class ids 0..9 */
} mmm_fmnist_split;

/* Reads an IDX image file (magic 2051, n × 28 × 28 bytes) and its IDX label file (magic 2049,
 * n labels < 10), gzip-compressed or not. Every problem is an error naming the file: missing,
 * truncated, corrupt gzip data, wrong magic, wrong image size, counts that disagree, a label
 * out of range, trailing bytes. */
int mmm_fmnist_load_idx(mmm_fmnist_split *s, const char *images_path, const char *labels_path);
/* The split's two files in dir: {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz. */
int mmm_fmnist_load(mmm_fmnist_split *s, const char *dir, mmm_fmnist_split_id split);
void mmm_fmnist_free(mmm_fmnist_split *s); /* a zeroed split is fine */

/* "T-shirt/top", "Trouser", ... "Ankle boot", the answers of the name task. */
const char *mmm_fmnist_class_name(int c);
/* "tops" (T-shirt/top, Pullover, Dress, Coat, Shirt), "bottoms" (Trouser), "footwear" (Sandal,
 * Sneaker, Ankle boot) or "bags" (Bag). */
const char *mmm_fmnist_group_name(int c);

/* ---- the question answering dataset ---- */

/* Task kinds (a record's "task" field) and the exact wording of each (the model learns it):
 *   name   "<image>\nWhat item is this?"                                    → "Sneaker"
 *   yesno  "<image>\nIs this a Sneaker?"                                   → "Yes" | "No"
 *   group  "<image>\nWhich group is this item in: tops, bottoms, footwear or bags?" → "footwear"
 *   grid   "<image>\nWhat item is in the top left corner?" (a 56×56 2×2 grid of four classes;
 *          corners top left, top right, bottom left, bottom right)      → "Sneaker"
 *   which  "Image 1: <image>\nImage 2: <image>\nWhich image shows a Sneaker?" (2-4 images,
 *          exactly one of that class)                                     → "Image 2"
 *   count  "<image><image><image>\nHow many of these images show a Sneaker?" (3-6 images, or
 *          --long-images; 0 to min(images, 6) of them of that class)       → "2"
 * The class in a question is spelled exactly as the name task answers it. */
typedef enum {
    MMM_FMNIST_NAME,
    MMM_FMNIST_YESNO,
    MMM_FMNIST_GROUP,
    MMM_FMNIST_GRID,
    MMM_FMNIST_WHICH,
    MMM_FMNIST_COUNT,
    MMM_FMNIST_N_TASKS
} mmm_fmnist_task;

const char *mmm_fmnist_task_name(int task); /* "name", "yesno", ... */

typedef struct {
    const char *source_dir; /* the four IDX files */
    const char *out_dir;    /* created if missing */
    uint64_t seed;          /* the same seed and options give the same files, byte for byte */
    long n_train, n_test;   /* samples in train.jsonl and test.jsonl */
    long n_long;            /* count questions in test_long.jsonl; 0 writes no such file */
    int long_images;        /* images per test_long question */
    double mix[MMM_FMNIST_N_TASKS]; /* relative weight of each task kind, in both splits */
    /* Called from the calling thread while images are written; may be NULL. */
    void (*progress)(void *ctx, long done, long total);
    void *progress_ctx;
} mmm_fmnist_options;

typedef struct {
    long samples[3][MMM_FMNIST_N_TASKS]; /* train, test, test_long */
    long name_covered[2];                /* distinct train/test images with a name sample */
    long split_images[2];                /* images in the train/test source files */
    long images_written;
    uint64_t bytes_written;              /* images, JSONL and corpus */
} mmm_fmnist_stats;

/* Defaults: the Debian source, seed 0, 60000 train and 2000 test samples, no long questions
 * (256 images each when asked for), mix name 50, yesno 15, group 10, grid 10, which 10,
 * count 5 (recognising the item is what every other task builds on). */
void mmm_fmnist_default_options(mmm_fmnist_options *o);

/* Writes into out_dir:
 *   train.jsonl, test.jsonl   one record per line, {"id": "train-000123", "task": "name",
 *                             "image": "images/train/00123.png" | [...], "conversations":
 *                             [{"from": "human", ...}, {"from": "gpt", ...}]}, paths relative
 *                             to the JSONL file, one <image> per image in order;
 *   test_long.jsonl           when n_long > 0: count questions over long_images test images;
 *   images/{train,test}/NNNNN.png   the 28×28 gray source images the samples use (NNNNN = the
 *                             index in the split's IDX file), grid-SSSSSS.png the 56×56 grid of
 *                             sample SSSSSS;
 *   corpus.txt                every human and gpt text of train and test with <image> removed,
 *                             one line per line of text (empty ones dropped), for tokenizer
 *                             training.
 * Samples are in random order; per split every task kind gets its share of the mix (name takes
 * the rounding). Name samples walk a shuffled order of the whole split, so every image gets
 * one before any gets two (all of them once there are as many name samples as images); the
 * other tasks draw each class's images in a shuffled cycle too. Yes and No are balanced (±1).
 * Test questions use only test images. Every file is written atomically; files of an earlier
 * run that this one does not write are left alone. */
int mmm_fmnist_generate(const mmm_fmnist_options *o, mmm_fmnist_stats *stats);

#endif
