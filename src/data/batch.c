/* Deterministic epoch order and token-budget batches. */
#include <stdlib.h>
#include <string.h>

#include "mmm/data.h"
#include "mmm/error.h"
#include "mmm/image.h"
#include "mmm/rng.h"

void mmm_epoch_order(int *order, int n, uint64_t seed, int epoch) {
    mmm_rng rng = mmm_rng_seed(seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch + 1);
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int j = (int)(mmm_rng_next(&rng) % (uint64_t)(i + 1));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

static int by_length(const void *a, const void *b, void *data) {
    const mmm_dataset *d = data;
    int ia = *(const int *)a, ib = *(const int *)b;
    int la = d->samples[ia].n, lb = d->samples[ib].n;
    return la != lb ? (la > lb) - (la < lb) : (ia > ib) - (ia < ib);
}

/* Whether a batch of `count` samples padded to T tokens takes one more of length len. */
static int batch_takes(int count, int T, int len, int budget_tokens) {
    int t = len > T ? len : T;
    return count == 0 || (long)(count + 1) * t <= budget_tokens;
}

int mmm_batch_plan(int *order, int *end, int n, const mmm_dataset *d, int window, int budget_tokens,
                   uint64_t seed, int epoch) {
    if (window < 1) window = 1;
    int span = n < window ? n : window;
    int *tmp = malloc((size_t)(3 * span + 1) * sizeof *tmp);
    if (!tmp) return mmm_fail(MMM_ERR_NOMEM, "batch plan: out of memory for %d samples", n);
    int *starts = tmp + span, *perm = starts + span + 1; /* at most one batch per sample */
    mmm_rng rng = mmm_rng_seed(seed * 0xD1B54A32D192ED03ull + (uint64_t)epoch + 7);
    for (int w0 = 0; w0 < n; w0 += window) {
        int w1 = n - w0 < window ? n : w0 + window, nb = 0;
        if (window > 1) qsort_r(order + w0, (size_t)(w1 - w0), sizeof *order, by_length, (void *)d);
        for (int i = w0; i < w1;) { /* cut as mmm_batch_make would, never across the window's end */
            int count = 0, T = 0;
            starts[nb++] = i;
            while (i < w1 && batch_takes(count, T, d->samples[order[i]].n, budget_tokens)) {
                if (d->samples[order[i]].n > T) T = d->samples[order[i]].n;
                count++;
                i++;
            }
        }
        starts[nb] = w1;
        for (int b = 0; b < nb; b++) perm[b] = b;
        for (int b = nb - 1; b > 0; b--) {
            int j = (int)(mmm_rng_next(&rng) % (uint64_t)(b + 1)), t = perm[b];
            perm[b] = perm[j];
            perm[j] = t;
        }
        int at = 0;
        for (int b = 0; b < nb; b++) {
            int s0 = starts[perm[b]], s1 = starts[perm[b] + 1];
            memcpy(tmp + at, order + s0, (size_t)(s1 - s0) * sizeof *tmp);
            for (int i = 0; i < s1 - s0; i++) end[w0 + at + i] = w0 + at + (s1 - s0);
            at += s1 - s0;
        }
        memcpy(order + w0, tmp, (size_t)(w1 - w0) * sizeof *tmp);
    }
    free(tmp);
    return MMM_OK;
}

int mmm_sample_pixels(const mmm_sample *s, const mmm_config *cfg, float **pixels) {
    *pixels = NULL;
    if (!s->n_tiles) return MMM_OK;
    size_t tile = 3 * (size_t)cfg->tile_size * cfg->tile_size;
    float *out = malloc((size_t)s->n_tiles * tile * sizeof *out);
    if (!out) return mmm_fail(MMM_ERR_NOMEM, "out of memory loading %d image tiles", s->n_tiles);
    int at = 0;
    for (int i = 0; i < s->n_images; i++) {
        mmm_image img = {0};
        float *tiles = NULL;
        int n = 0;
        int rc = mmm_image_load(&img, s->images[i]);
        if (!rc) rc = mmm_image_preprocess(&tiles, &n, &img, cfg->tile_size, cfg->min_tiles, cfg->max_tiles, cfg->use_thumbnail);
        mmm_image_free(&img);
        if (!rc && n != s->tiles[i])
            rc = mmm_fail(MMM_ERR_FORMAT, "image '%s' changed since the dataset was read (%d tiles, expected %d)",
                          s->images[i], n, s->tiles[i]);
        if (rc) {
            free(tiles);
            free(out);
            return rc;
        }
        memcpy(out + (size_t)at * tile, tiles, (size_t)n * tile * sizeof *out);
        at += n;
        free(tiles);
    }
    *pixels = out;
    return MMM_OK;
}

void mmm_batch_hflip(mmm_batch *b, const mmm_dataset *d, const mmm_config *cfg, float hflip, uint64_t key) {
    if (hflip <= 0) return;
    int S = cfg->tile_size;
    float *tile = b->pixels; /* (n_tiles, 3, S, S), the members' images in order */
    for (int i = 0; i < b->B; i++) {
        const mmm_sample *s = &d->samples[b->members[i]];
        for (int k = 0; k < s->n_images; tile += (size_t)3 * S * S * s->tiles[k], k++) {
            mmm_rng r = mmm_rng_seed(key ^ ((uint64_t)b->members[i] << 20 | (uint64_t)k) * 0x9E3779B97F4A7C15ull);
            if (s->tiles[k] != 1 || mmm_rng_uniform(&r) >= hflip) continue;
            for (float *row = tile; row < tile + (size_t)3 * S * S; row += S)
                for (int x = 0; x < S / 2; x++) {
                    float t = row[x];
                    row[x] = row[S - 1 - x];
                    row[S - 1 - x] = t;
                }
        }
    }
}

void mmm_batch_free(mmm_batch *b) {
    free(b->ids);
    free(b->labels);
    free(b->pixels);
    free(b->members);
    free(b->lengths);
    memset(b, 0, sizeof *b);
}

/* The samples the batch at pos takes, its longest sequence and its tiles. */
static int batch_members(const mmm_dataset *d, const int *order, int n_order, int pos, int budget_tokens, int *T,
                         int *tiles) {
    int count = 0;
    *T = 0, *tiles = 0;
    while (pos + count < n_order) {
        const mmm_sample *s = &d->samples[order[pos + count]];
        if (!batch_takes(count, *T, s->n, budget_tokens)) break;
        if (s->n > *T) *T = s->n;
        *tiles += s->n_tiles;
        count++;
    }
    return count;
}

int mmm_batch_skip(const mmm_dataset *d, const int *order, int n_order, int *pos, int budget_tokens) {
    if (*pos >= n_order) return mmm_fail(MMM_ERR_ARG, "batch: the epoch has no samples left");
    int T, tiles;
    *pos += batch_members(d, order, n_order, *pos, budget_tokens, &T, &tiles);
    return MMM_OK;
}

int mmm_batch_make(mmm_batch *b, const mmm_dataset *d, const int *order, int n_order, int *pos,
                   int budget_tokens, const mmm_config *cfg) {
    memset(b, 0, sizeof *b);
    if (*pos >= n_order) return mmm_fail(MMM_ERR_ARG, "batch: the epoch has no samples left");
    int T, tiles, count = batch_members(d, order, n_order, *pos, budget_tokens, &T, &tiles);
    b->B = count;
    b->T = T;
    b->ids = calloc((size_t)count * T, sizeof *b->ids);
    b->labels = malloc((size_t)count * T * sizeof *b->labels);
    b->members = malloc((size_t)count * sizeof *b->members);
    b->lengths = malloc((size_t)count * sizeof *b->lengths);
    size_t tile = 3 * (size_t)cfg->tile_size * cfg->tile_size;
    b->pixels = tiles ? malloc((size_t)tiles * tile * sizeof *b->pixels) : NULL;
    if (!b->ids || !b->labels || !b->members || !b->lengths || (tiles && !b->pixels)) {
        mmm_batch_free(b);
        return mmm_fail(MMM_ERR_NOMEM, "batch: out of memory (%d x %d tokens, %d tiles)", count, T, tiles);
    }
    for (int i = 0; i < count; i++) {
        const mmm_sample *s = &d->samples[order[*pos + i]];
        b->members[i] = order[*pos + i];
        b->lengths[i] = s->n;
        memcpy(b->ids + (size_t)i * T, s->ids, (size_t)s->n * sizeof *b->ids);
        memcpy(b->labels + (size_t)i * T, s->labels, (size_t)s->n * sizeof *b->labels);
        for (int t = s->n; t < T; t++) b->labels[(size_t)i * T + t] = MMM_IGNORE_LABEL;
        for (int t = 0; t < s->n; t++) b->n_label_tokens += s->labels[t] >= 0;
        if (!s->n_tiles) continue;
        float *px = NULL;
        int rc = mmm_sample_pixels(s, cfg, &px);
        if (rc) {
            mmm_batch_free(b);
            return rc;
        }
        memcpy(b->pixels + (size_t)b->n_tiles * tile, px, (size_t)s->n_tiles * tile * sizeof *px);
        b->n_tiles += s->n_tiles;
        free(px);
    }
    *pos += count;
    return MMM_OK;
}
