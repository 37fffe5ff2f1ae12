/* Fuzz target: a dataset file (JSON Lines, a LLaVA JSON array or an InternVL meta file) through
 * mmm_dataset_load (a real tokenizer and a small vision config from tests/data), then its samples
 * batched, which loads and tiles their images. The scratch directory holds two images, img.png
 * and photo.jpg, for records to name, and two annotation files, ann.jsonl and ann.json (an
 * array), for meta files to name. Records are capped at 16 KB so the fuzzer reaches the cap. */
#include <stdlib.h>

#include "fuzz.h"
#include "mmm/data.h"
#include "mmm/error.h"

#define DATA_DIR "tests/data"

static const char ann_jsonl[] =
    "{\"id\": \"j0\", \"conversations\": [{\"from\": \"human\", \"value\": \"Hi\"}, {\"from\": \"gpt\", \"value\": \"Yes\"}]}\n"
    "{\"id\": \"j1\", \"image\": \"img.png\", \"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nWhat?\"}, "
    "{\"from\": \"gpt\", \"value\": \"A shirt.\"}]}\n";
static const char ann_array[] =
    "[{\"id\": \"a0\", \"image\": \"photo.jpg\", \"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nWhat?\"},\n"
    "  {\"from\": \"gpt\", \"value\": \"A photo.\"}]},\n"
    " {\"id\": \"a1\", \"conversations\": [{\"from\": \"human\", \"value\": \"Hi\"}, {\"from\": \"gpt\", \"value\": \"No\"}]}]\n";

static mmm_tokenizer *tok;
static mmm_config cfg;

static void cleanup(void) {
    mmm_tokenizer_free(tok);
    mmm_config_free(&cfg);
}

/* Loads the fixed tokenizer and config once; aborts when they are missing, since every input
 * would then test nothing. */
static void setup(void) {
    if (tok) return;
    if (mmm_tokenizer_load(DATA_DIR "/tokenizers/mmm_trained.json", &tok) ||
        mmm_config_load(&cfg, DATA_DIR "/teacher/one_image/config.json") ||
        fuzz_copy_file(DATA_DIR "/images/la_9x7.png", "img.png") ||
        fuzz_copy_file(DATA_DIR "/images/photo_40x30.jpg", "photo.jpg") ||
        !fuzz_write_file("ann.jsonl", (const uint8_t *)ann_jsonl, sizeof ann_jsonl - 1) ||
        !fuzz_write_file("ann.json", (const uint8_t *)ann_array, sizeof ann_array - 1))
        fuzz_bug("fuzz_jsonl: cannot set up from " DATA_DIR " (run from the repository root): %s",
                 mmm_last_error());
    atexit(cleanup);
}

int mmm_fuzz_jsonl(const uint8_t *data, size_t size) {
    setup();
    const char *path = fuzz_write_file("data.jsonl", data, size);
    if (!path) return MMM_ERR_IO;
    mmm_data_options opt = {.system = "You are a helpful assistant.", .max_tokens = 512, .max_record_bytes = 1 << 14};
    mmm_dataset d;
    int rc = mmm_dataset_load(&d, path, tok, &cfg, &opt);
    if (rc) return rc;
    /* a meta file's repeats may make more samples than records, but one record at least was good */
    if (d.n < 1 || d.n_skipped >= d.n_records)
        fuzz_bug("dataset counts: %d samples, %d skipped, %ld records", d.n, d.n_skipped, d.n_records);
    for (int i = 0; i < d.n; i++) {
        const mmm_sample *s = &d.samples[i];
        if (s->n < 1 || s->n > opt.max_tokens || s->prompt_len < 0 || s->prompt_len > s->n)
            fuzz_bug("sample %d: %d tokens, prompt %d", i, s->n, s->prompt_len);
    }
    int *order = malloc((size_t)d.n * sizeof *order);
    if (order) {
        mmm_epoch_order(order, d.n, 1, 0);
        for (int pos = 0; pos < d.n;) {
            mmm_batch b;
            int before = pos;
            if (mmm_batch_make(&b, &d, order, d.n, &pos, 1024, &cfg) != MMM_OK) break;
            if (pos <= before) fuzz_bug("mmm_batch_make did not advance");
            mmm_batch_free(&b);
        }
        free(order);
    }
    mmm_dataset_free(&d);
    return MMM_OK;
}

MMM_FUZZ_TARGET(jsonl)
