/* Open-addressing hash maps (string → id, id pair → merge), the literal-pattern matcher and
 * growable buffers. */
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "text.h"

static uint32_t hash_bytes(const char *s, size_t n) { /* FNV-1a */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static size_t table_size(size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2) cap <<= 1;
    return cap;
}

int mmm_strmap_init(mmm_strmap *m, size_t expected) {
    m->cap = table_size(expected);
    m->count = 0;
    m->slots = calloc(m->cap, sizeof *m->slots);
    return m->slots ? 0 : mmm_fail(MMM_ERR_NOMEM, "out of memory for a %zu-entry table", expected);
}

static int strmap_grow(mmm_strmap *m) {
    mmm_strmap bigger;
    int rc = mmm_strmap_init(&bigger, m->cap);
    if (rc) return rc;
    for (size_t i = 0; i < m->cap; i++) {
        const mmm_strmap_slot *s = &m->slots[i];
        if (!s->key) continue;
        size_t j = s->hash & (bigger.cap - 1);
        while (bigger.slots[j].key) j = (j + 1) & (bigger.cap - 1);
        bigger.slots[j] = *s;
    }
    bigger.count = m->count;
    free(m->slots);
    *m = bigger;
    return 0;
}

int mmm_strmap_put(mmm_strmap *m, const char *key, size_t len, int32_t id, bool *had) {
    if (had) *had = false;
    if ((m->count + 1) * 2 > m->cap) {
        int rc = strmap_grow(m);
        if (rc) return rc;
    }
    uint32_t h = hash_bytes(key, len);
    size_t j = h & (m->cap - 1);
    for (; m->slots[j].key; j = (j + 1) & (m->cap - 1)) {
        const mmm_strmap_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && !memcmp(s->key, key, len)) {
            if (had) *had = true;
            return 0;
        }
    }
    m->slots[j] = (mmm_strmap_slot){key, (uint32_t)len, h, id};
    m->count++;
    return 0;
}

int32_t mmm_strmap_get(const mmm_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    uint32_t h = hash_bytes(key, len);
    for (size_t j = h & (m->cap - 1); m->slots[j].key; j = (j + 1) & (m->cap - 1)) {
        const mmm_strmap_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && !memcmp(s->key, key, len)) return s->id;
    }
    return -1;
}

void mmm_strmap_free(mmm_strmap *m) {
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

/* ---- pairs ---- */

#define EMPTY_PAIR UINT64_MAX /* ids are non-negative int32, so this key never occurs */

static size_t pair_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k;
}

int mmm_pairmap_init(mmm_pairmap *m, size_t expected) {
    m->cap = table_size(expected);
    m->count = 0;
    m->slots = malloc(m->cap * sizeof *m->slots);
    if (!m->slots) return mmm_fail(MMM_ERR_NOMEM, "out of memory for a %zu-entry table", expected);
    for (size_t i = 0; i < m->cap; i++) m->slots[i].key = EMPTY_PAIR;
    return 0;
}

static mmm_pairmap_slot *pair_slot(const mmm_pairmap *m, uint64_t key) {
    size_t j = pair_hash(key) & (m->cap - 1);
    while (m->slots[j].key != EMPTY_PAIR && m->slots[j].key != key) j = (j + 1) & (m->cap - 1);
    return &m->slots[j];
}

int mmm_pairmap_put(mmm_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    if ((m->count + 1) * 2 > m->cap) {
        mmm_pairmap bigger;
        int rc = mmm_pairmap_init(&bigger, m->cap);
        if (rc) return rc;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].key != EMPTY_PAIR) *pair_slot(&bigger, m->slots[i].key) = m->slots[i];
        bigger.count = m->count;
        free(m->slots);
        *m = bigger;
    }
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    mmm_pairmap_slot *s = pair_slot(m, key);
    m->count += s->key == EMPTY_PAIR;
    *s = (mmm_pairmap_slot){key, rank, id};
    return 0;
}

const mmm_pairmap_slot *mmm_pairmap_get(const mmm_pairmap *m, int32_t a, int32_t b) {
    if (!m->cap) return NULL;
    const mmm_pairmap_slot *s = pair_slot(m, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
    return s->key == EMPTY_PAIR ? NULL : s;
}

void mmm_pairmap_free(mmm_pairmap *m) {
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

/* ---- buffers ---- */

int mmm_sbuf_add(mmm_sbuf *b, const void *data, size_t len) {
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + len + 1) cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) return mmm_fail(MMM_ERR_NOMEM, "out of memory for %zu bytes of text", cap);
        b->s = s;
        b->cap = cap;
    }
    if (len) memcpy(b->s + b->n, data, len);
    b->n += len;
    b->s[b->n] = 0;
    return 0;
}

int mmm_ibuf_add(mmm_ibuf *b, int32_t id) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        int32_t *v = realloc(b->v, cap * sizeof *v);
        if (!v) return mmm_fail(MMM_ERR_NOMEM, "out of memory for %zu token ids", cap);
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = id;
    return 0;
}

/* ---- literal patterns ---- */

static int by_first_byte_then_longest(const void *a, const void *b) {
    const mmm_pattern *x = a, *y = b;
    if ((uint8_t)x->s[0] != (uint8_t)y->s[0]) return (uint8_t)x->s[0] - (uint8_t)y->s[0];
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->tag - y->tag;
}

int mmm_matcher_init(mmm_matcher *m, const mmm_pattern *pats, int n) {
    memset(m, 0, sizeof *m);
    if (n && !(m->p = malloc((size_t)n * sizeof *m->p)))
        return mmm_fail(MMM_ERR_NOMEM, "out of memory for %d patterns", n);
    for (int i = 0; i < n; i++)
        if (pats[i].len) m->p[m->n++] = pats[i];
    if (m->n) qsort(m->p, (size_t)m->n, sizeof *m->p, by_first_byte_then_longest);
    for (int b = 0, i = 0; b <= 256; b++) {
        while (i < m->n && (uint8_t)m->p[i].s[0] < b) i++;
        m->first[b] = i;
    }
    return 0;
}

void mmm_matcher_free(mmm_matcher *m) {
    free(m->p);
    m->p = NULL;
    m->n = 0;
}

const mmm_pattern *mmm_matcher_at(const mmm_matcher *m, const char *s, size_t n, size_t at) {
    if (!m->n || at >= n) return NULL;
    uint8_t b = (uint8_t)s[at];
    for (int i = m->first[b]; i < m->first[b + 1]; i++) /* longest first */
        if (m->p[i].len <= n - at && !memcmp(s + at, m->p[i].s, m->p[i].len)) return &m->p[i];
    return NULL;
}

const mmm_pattern *mmm_matcher_find(const mmm_matcher *m, const char *s, size_t n, size_t from,
                                    size_t *pos) {
    for (size_t i = from; m->n && i < n; i++) {
        const mmm_pattern *p = mmm_matcher_at(m, s, n, i);
        if (p) { *pos = i; return p; }
    }
    return NULL;
}
