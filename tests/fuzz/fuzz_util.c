/* Helpers shared by the fuzz targets (not a target itself): scratch files for parsers that only
 * take paths, a tokenizer round trip, the abort on a bug. */
#include "fuzz.h"

#include "mmm/error.h"
#include "mmm/tokenizer.h"

#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char scratch[4096];

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    remove(path); /* best effort: go on with the rest */
    return 0;
}

/* Removes the scratch directory and everything fuzz targets wrote into it. */
static void remove_scratch(void) { nftw(scratch, remove_entry, 8, FTW_DEPTH | FTW_PHYS); }

const char *fuzz_scratch_dir(void) {
    if (scratch[0]) return scratch;
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/mmm-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(scratch)) {
        scratch[0] = '\0';
        return NULL;
    }
    atexit(remove_scratch);
    return scratch;
}

const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size) {
    static char path[8192];
    if (!fuzz_scratch_dir()) return NULL;
    snprintf(path, sizeof path, "%s/%s", scratch, name);
    char *slash = strrchr(path, '/');
    if (strchr(name, '/')) { /* one level of subdirectory */
        *slash = '\0';
        mkdir(path, 0700);
        *slash = '/';
    }
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    int ok = fwrite(data, 1, size, f) == size;
    ok &= fclose(f) == 0;
    return ok ? path : NULL;
}

int fuzz_copy_file(const char *from, const char *name) {
    FILE *f = fopen(from, "rb");
    if (!f) return -1;
    size_t cap = 1 << 20;
    uint8_t *buf = malloc(cap);
    size_t n = buf ? fread(buf, 1, cap, f) : 0;
    int ok = buf && n < cap && !ferror(f);
    fclose(f);
    ok = ok && fuzz_write_file(name, buf, n);
    free(buf);
    return ok ? 0 : -1;
}

void fuzz_bug(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: BUG: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* A text touching the pre-tokenizers' character classes, added and special tokens, NFC and
 * a malformed byte. */
void fuzz_tokenizer_roundtrip(const mmm_tokenizer *t) {
    static const char text[] = "<|im_start|>user\nHello,  world! It's 2024:\t caf\xc3\xa9 cafe\xcc\x81 "
                               "\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 <s> </s> <unk> \xff\xfe <|im_end|>\n";
    int n_vocab = mmm_tokenizer_vocab_size(t);
    for (int flags = 0; flags < 4; flags++) { /* MMM_ENCODE_PARSE_SPECIAL, MMM_ENCODE_ADD_SPECIAL */
        int32_t *ids = NULL;
        int n = 0;
        if (mmm_tokenizer_encode(t, text, sizeof text - 1, flags, &ids, &n) != MMM_OK) continue;
        for (int i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= n_vocab || !mmm_tokenizer_id_to_token(t, ids[i]))
                fuzz_bug("encode gave id %d, outside the vocabulary of %d", ids[i], n_vocab);
            mmm_tokenizer_is_special(t, ids[i]);
        }
        for (int skip = 0; skip < 2; skip++) {
            char *out = NULL;
            size_t len = 0;
            if (mmm_tokenizer_decode(t, ids, n, skip, &out, &len) == MMM_OK && strlen(out) > len)
                fuzz_bug("decode: text longer than its length");
            free(out);
        }
        free(ids);
    }
    mmm_tokenizer_token_to_id(t, "<|im_start|>");
    mmm_tokenizer_id_to_token(t, n_vocab);
    mmm_tokenizer_id_to_token(t, -1);
}
