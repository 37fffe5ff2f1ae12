/* Byte-level BPE training, the algorithm of `tokenizers`' BpeTrainer so that both learn the same
 * merges: words are the GPT-2 pre-tokenizer's pieces of each corpus line, counted; the vocabulary
 * starts with the special tokens and the 256 byte characters in code point order; each step merges
 * the most frequent adjacent pair (ties: smallest (left id, right id)) in every word holding it.
 * Pair counts are kept up to date incrementally, and a max-heap whose stale entries are re-queued
 * with their current count when they surface finds the next pair. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "mmm/fileio.h"
#include "text.h"

#define MAX_CORPUS_BYTES ((size_t)1 << 34)

typedef struct { int32_t *v; size_t n, cap; } ivec;

static int ivec_add(ivec *a, int32_t x) {
    mmm_ibuf b = {a->v, a->n, a->cap};
    int rc = mmm_ibuf_add(&b, x);
    a->v = b.v, a->n = b.n, a->cap = b.cap;
    return rc;
}

typedef struct {
    int64_t count;
    int32_t a, b;
    int32_t where; /* index of the list of words that hold the pair */
} entry;

typedef struct {
    /* vocabulary */
    char **tok;
    size_t *tok_len;
    int32_t n_tok, vocab_size;
    mmm_strmap tok_ids;
    int32_t byte_tok[256];
    /* words: distinct pre-tokenized pieces as symbol sequences, with their counts */
    mmm_strmap word_ids;
    char **word_key;
    ivec *word;
    int64_t *word_count;
    size_t n_words, cap_words;
    /* pairs: index in the pair map → current count */
    mmm_pairmap pair_idx;
    int64_t *pair_count;
    size_t n_pairs, cap_pairs;
    /* word lists of the heap entries */
    ivec *lists;
    size_t n_lists, cap_lists;
    entry *heap;
    size_t heap_n, heap_cap;
    /* merges made: (left id, right id); more than the new tokens when a merge re-forms an
     * existing string */
    int32_t (*merges)[2];
    size_t n_merges, cap_merges;
} trainer;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return mmm_fail(MMM_ERR_NOMEM, "bpe train: out of memory");
    *p = q, *cap = c;
    return 0;
}

static int add_token(trainer *tr, const char *s, size_t len, int32_t *id) {
    int32_t have = mmm_strmap_get(&tr->tok_ids, s, len);
    if (have >= 0) { /* the string exists already (a special, or another merge path): reuse it */
        *id = have;
        return 0;
    }
    char *copy = malloc(len + 1);
    if (!copy) return mmm_fail(MMM_ERR_NOMEM, "bpe train: out of memory");
    memcpy(copy, s, len);
    copy[len] = 0;
    tr->tok[tr->n_tok] = copy;
    tr->tok_len[tr->n_tok] = len;
    *id = tr->n_tok++;
    return mmm_strmap_put(&tr->tok_ids, copy, len, *id, NULL);
}

/* ---- counting words ---- */

typedef struct { trainer *tr; const char *line; } count_ctx;

/* One segment of the GPT-2 pre-tokenizer, match or gap: a word (empty ones are none). */
static int count_word(void *ctx, size_t start, size_t end, bool match) {
    count_ctx *c = ctx;
    trainer *tr = c->tr;
    const char *w = c->line + start;
    size_t len = end - start;
    if (!len) return 0;
    int32_t id = mmm_strmap_get(&tr->word_ids, w, len);
    if (id >= 0) {
        tr->word_count[id]++;
        return 0;
    }
    size_t i = tr->n_words;
    if (i == tr->cap_words) { /* the three per-word arrays share cap_words */
        size_t cap = i ? 2 * i : 1024;
        char **wk = realloc(tr->word_key, cap * sizeof *wk);
        if (wk) tr->word_key = wk;
        ivec *wv = realloc(tr->word, cap * sizeof *wv);
        if (wv) tr->word = wv;
        int64_t *wc = realloc(tr->word_count, cap * sizeof *wc);
        if (wc) tr->word_count = wc;
        if (!wk || !wv || !wc) return mmm_fail(MMM_ERR_NOMEM, "bpe train: out of memory");
        tr->cap_words = cap;
    }
    char *key = malloc(len + 1);
    if (!key) return mmm_fail(MMM_ERR_NOMEM, "bpe train: out of memory");
    memcpy(key, w, len);
    tr->word_key[i] = key;
    tr->word_count[i] = 1;
    tr->word[i] = (ivec){0};
    int rc = 0;
    for (size_t k = 0; k < len && !rc; k++) rc = ivec_add(&tr->word[i], tr->byte_tok[(uint8_t)w[k]]);
    tr->n_words++;
    return rc ? rc : mmm_strmap_put(&tr->word_ids, key, len, (int32_t)i, NULL);
}

/* Each line with its line ending is one text, as `tokenizers` reads training files. */
static int count_file(trainer *tr, const char *path) {
    uint8_t *data = NULL;
    size_t n = 0;
    mmm_regex *re = NULL;
    int rc = mmm_tok_read_file(path, MAX_CORPUS_BYTES, &data, &n);
    if (!rc) rc = mmm_regex_new(MMM_GPT2_PATTERN, strlen(MMM_GPT2_PATTERN), false, "GPT-2 pre-tokenizer", &re);
    for (size_t start = 0; !rc && start < n;) {
        const char *line = (const char *)data + start;
        const char *nl = memchr(line, '\n', n - start);
        size_t len = nl ? (size_t)(nl - line) + 1 : n - start;
        count_ctx c = {tr, line};
        rc = mmm_regex_segments(re, line, len, count_word, &c);
        start += len;
    }
    mmm_regex_free(re);
    free(data);
    return rc;
}

/* ---- pairs and the heap ---- */

static bool entry_before(const entry *x, const entry *y) { /* more frequent, then smaller pair */
    if (x->count != y->count) return x->count > y->count;
    return x->a != y->a ? x->a < y->a : x->b < y->b;
}

static int heap_push(trainer *tr, entry e) {
    int rc = grow((void **)&tr->heap, &tr->heap_cap, tr->heap_n + 1, sizeof *tr->heap);
    if (rc) return rc;
    size_t i = tr->heap_n++;
    while (i && entry_before(&e, &tr->heap[(i - 1) / 2])) {
        tr->heap[i] = tr->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    tr->heap[i] = e;
    return 0;
}

static entry heap_pop(trainer *tr) {
    entry top = tr->heap[0], last = tr->heap[--tr->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= tr->heap_n) break;
        if (c + 1 < tr->heap_n && entry_before(&tr->heap[c + 1], &tr->heap[c])) c++;
        if (!entry_before(&tr->heap[c], &last)) break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    tr->heap[i] = last;
    return top;
}

/* The pair's index, created with count 0 when new. */
static int pair_index(trainer *tr, int32_t a, int32_t b, int32_t *idx) {
    const mmm_pairmap_slot *s = mmm_pairmap_get(&tr->pair_idx, a, b);
    if (s) {
        *idx = s->id;
        return 0;
    }
    int rc = grow((void **)&tr->pair_count, &tr->cap_pairs, tr->n_pairs + 1, sizeof *tr->pair_count);
    if (rc) return rc;
    *idx = (int32_t)tr->n_pairs;
    tr->pair_count[tr->n_pairs++] = 0;
    return mmm_pairmap_put(&tr->pair_idx, a, b, 0, *idx);
}

static int new_list(trainer *tr, int32_t *li) {
    int rc = grow((void **)&tr->lists, &tr->cap_lists, tr->n_lists + 1, sizeof *tr->lists);
    if (rc) return rc;
    tr->lists[tr->n_lists] = (ivec){0};
    *li = (int32_t)tr->n_lists++;
    return 0;
}

/* Pairs gaining occurrences in this step, each with the words that gained them. */
typedef struct { int32_t a, b, list; } fresh;
typedef struct { fresh *v; size_t n, cap; mmm_pairmap where; } fresh_set;

static int change(trainer *tr, fresh_set *f, int32_t a, int32_t b, int delta, int32_t w) {
    int32_t idx;
    int rc = pair_index(tr, a, b, &idx);
    if (rc) return rc;
    tr->pair_count[idx] += delta * tr->word_count[w];
    if (delta < 0) return 0;
    const mmm_pairmap_slot *s = mmm_pairmap_get(&f->where, a, b);
    int32_t li;
    if (s) li = s->id;
    else if ((rc = new_list(tr, &li)) || (rc = grow((void **)&f->v, &f->cap, f->n + 1, sizeof *f->v)) ||
             (rc = mmm_pairmap_put(&f->where, a, b, 0, li)))
        return rc;
    else f->v[f->n++] = (fresh){a, b, li};
    ivec *l = &tr->lists[li];
    return l->n && l->v[l->n - 1] == w ? 0 : ivec_add(l, w);
}

/* Replaces each (a, b) in word w, left to right, by id, recording the pair count changes. */
static int merge_word(trainer *tr, fresh_set *f, int32_t w, int32_t a, int32_t b, int32_t id) {
    ivec *s = &tr->word[w];
    size_t out = 0;
    int rc = 0;
    for (size_t i = 0; i < s->n && !rc;) {
        if (i + 1 < s->n && s->v[i] == a && s->v[i + 1] == b) {
            if (out) {
                rc = change(tr, f, s->v[out - 1], a, -1, w);
                if (!rc) rc = change(tr, f, s->v[out - 1], id, 1, w);
            }
            if (!rc && i + 2 < s->n) {
                rc = change(tr, f, b, s->v[i + 2], -1, w);
                if (!rc) rc = change(tr, f, id, s->v[i + 2], 1, w);
            }
            s->v[out++] = id;
            i += 2;
        } else {
            s->v[out++] = s->v[i++];
        }
    }
    s->n = out;
    return rc;
}

/* Queues the pairs that gained occurrences, then forgets them. */
static int push_fresh(trainer *tr, fresh_set *f) {
    int rc = 0;
    for (size_t k = 0; k < f->n && !rc; k++) {
        int32_t idx;
        rc = pair_index(tr, f->v[k].a, f->v[k].b, &idx);
        if (!rc && tr->pair_count[idx] > 0)
            rc = heap_push(tr, (entry){tr->pair_count[idx], f->v[k].a, f->v[k].b, f->v[k].list});
    }
    f->n = 0;
    mmm_pairmap_free(&f->where);
    return rc ? rc : mmm_pairmap_init(&f->where, 64);
}

static int train(trainer *tr) {
    fresh_set f = {0};
    int rc = mmm_pairmap_init(&f.where, 1024);
    /* Every pair of every word, with the words holding it. */
    for (size_t w = 0; w < tr->n_words && !rc; w++)
        for (size_t i = 0; i + 1 < tr->word[w].n && !rc; i++)
            rc = change(tr, &f, tr->word[w].v[i], tr->word[w].v[i + 1], 1, (int32_t)w);
    if (!rc) rc = push_fresh(tr, &f);
    while (!rc && tr->n_tok < tr->vocab_size && tr->heap_n) {
        entry top = heap_pop(tr);
        int32_t idx;
        if ((rc = pair_index(tr, top.a, top.b, &idx))) break;
        if (top.count != tr->pair_count[idx]) { /* stale: requeue with the current count */
            top.count = tr->pair_count[idx];
            rc = heap_push(tr, top);
            continue;
        }
        if (top.count < 1) break;
        /* The merged token's string; an existing string keeps its id. */
        size_t la = tr->tok_len[top.a], lb = tr->tok_len[top.b];
        char *joined = malloc(la + lb + 1);
        if (!joined) { rc = mmm_fail(MMM_ERR_NOMEM, "bpe train: out of memory"); break; }
        memcpy(joined, tr->tok[top.a], la);
        memcpy(joined + la, tr->tok[top.b], lb);
        int32_t id;
        rc = add_token(tr, joined, la + lb, &id);
        free(joined);
        if (rc || (rc = grow((void **)&tr->merges, &tr->cap_merges, tr->n_merges + 1, sizeof *tr->merges))) break;
        tr->merges[tr->n_merges][0] = top.a, tr->merges[tr->n_merges][1] = top.b;
        tr->n_merges++;
        ivec l = tr->lists[top.where]; /* taken out: merging adds lists, which may move */
        tr->lists[top.where] = (ivec){0};
        for (size_t k = 0; k < l.n && !rc; k++) rc = merge_word(tr, &f, l.v[k], top.a, top.b, id);
        free(l.v);
        if (!rc) rc = push_fresh(tr, &f);
    }
    free(f.v);
    mmm_pairmap_free(&f.where);
    return rc;
}

/* ---- writing tokenizer.json ---- */

static void json_string(FILE *fp, const char *s, size_t len) {
    fputc('"', fp);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(fp, "\\%c", c);
        else if (c < 0x20) fprintf(fp, "\\u%04x", c);
        else fputc(c, fp);
    }
    fputc('"', fp);
}

static int write_json(const trainer *tr, const char *const *specials, int n_special, const char *path) {
    char *tmp = NULL;
    FILE *fp = NULL;
    int rc = mmm_atomic_open(path, &tmp, &fp);
    if (rc) return rc;
    fputs("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [", fp);
    for (int i = 0; i < n_special; i++) {
        fprintf(fp, "%s\n    {\"id\": %d, \"content\": ", i ? "," : "", mmm_strmap_get(&tr->tok_ids, specials[i], strlen(specials[i])));
        json_string(fp, specials[i], strlen(specials[i]));
        fputs(", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}", fp);
    }
    fputs(n_special ? "\n  ],\n" : "],\n", fp);
    fputs("  \"normalizer\": null,\n"
          "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},\n"
          "  \"post_processor\": null,\n"
          "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n"
          "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
          "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
          "    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n    \"vocab\": {", fp);
    for (int32_t id = 0; id < tr->n_tok; id++) {
        fputs(id ? ",\n      " : "\n      ", fp);
        json_string(fp, tr->tok[id], tr->tok_len[id]);
        fprintf(fp, ": %d", id);
    }
    fputs("\n    },\n    \"merges\": [", fp);
    for (size_t m = 0; m < tr->n_merges; m++) {
        /* "left right": byte-level tokens never contain a space (it is Ġ) */
        const char *a = tr->tok[tr->merges[m][0]], *b = tr->tok[tr->merges[m][1]];
        size_t la = tr->tok_len[tr->merges[m][0]], lb = tr->tok_len[tr->merges[m][1]];
        char *both = malloc(la + lb + 2);
        if (!both) { rc = mmm_fail(MMM_ERR_NOMEM, "bpe train: out of memory"); break; }
        memcpy(both, a, la);
        both[la] = ' ';
        memcpy(both + la + 1, b, lb);
        fputs(m ? ",\n      " : "\n      ", fp);
        json_string(fp, both, la + lb + 1);
        free(both);
    }
    fputs("\n    ]\n  }\n}\n", fp);
    return mmm_atomic_finish(path, tmp, fp, rc);
}

static void trainer_free(trainer *tr) {
    for (int32_t i = 0; i < tr->n_tok; i++) free(tr->tok[i]);
    free(tr->tok), free(tr->tok_len);
    mmm_strmap_free(&tr->tok_ids);
    for (size_t w = 0; w < tr->n_words; w++) free(tr->word_key[w]), free(tr->word[w].v);
    free(tr->word_key), free(tr->word), free(tr->word_count);
    mmm_strmap_free(&tr->word_ids);
    mmm_pairmap_free(&tr->pair_idx);
    free(tr->pair_count);
    for (size_t l = 0; l < tr->n_lists; l++) free(tr->lists[l].v);
    free(tr->lists), free(tr->heap), free(tr->merges);
}

static int by_code_point(const void *x, const void *y) {
    uint32_t a = mmm_byte_char(*(const uint8_t *)x), b = mmm_byte_char(*(const uint8_t *)y);
    return (a > b) - (a < b);
}

int mmm_bpe_train(const char *const *corpus_paths, int n_paths, int vocab_size,
                  const char *const *specials, int n_special, const char *out_path, int *n_merges) {
    if (n_merges) *n_merges = 0;
    if (n_paths < 1) return mmm_fail(MMM_ERR_ARG, "bpe train: no corpus file");
    if (n_special < 0 || vocab_size < n_special + 256)
        return mmm_fail(MMM_ERR_ARG, "bpe train: vocab size %d is smaller than the %d special tokens + 256 bytes",
                        vocab_size, n_special);
    for (int i = 0; i < n_special; i++)
        if (!specials[i][0]) return mmm_fail(MMM_ERR_ARG, "bpe train: special token %d is empty", i);
    trainer tr = {.vocab_size = vocab_size};
    int rc = mmm_strmap_init(&tr.tok_ids, (size_t)vocab_size);
    if (!rc) rc = mmm_strmap_init(&tr.word_ids, 1 << 12);
    if (!rc) rc = mmm_pairmap_init(&tr.pair_idx, 1 << 12);
    size_t cap = (size_t)vocab_size + 1;
    if (!rc && (!(tr.tok = calloc(cap, sizeof *tr.tok)) || !(tr.tok_len = calloc(cap, sizeof *tr.tok_len))))
        rc = mmm_fail(MMM_ERR_NOMEM, "bpe train: out of memory");
    int32_t id;
    for (int i = 0; i < n_special && !rc; i++) rc = add_token(&tr, specials[i], strlen(specials[i]), &id);
    uint8_t order[256];
    for (int b = 0; b < 256; b++) order[b] = (uint8_t)b;
    qsort(order, 256, 1, by_code_point);
    for (int k = 0; k < 256 && !rc; k++) {
        char utf8[4];
        rc = add_token(&tr, utf8, (size_t)mmm_utf8_put(mmm_byte_char(order[k]), utf8), &tr.byte_tok[order[k]]);
    }
    for (int i = 0; i < n_paths && !rc; i++) rc = count_file(&tr, corpus_paths[i]);
    if (!rc) rc = train(&tr);
    if (!rc) rc = write_json(&tr, specials, n_special, out_path);
    if (!rc && n_merges) *n_merges = (int)tr.n_merges;
    trainer_free(&tr);
    return rc;
}
