/* Reads a SentencePiece tokenizer.model: the ModelProto protobuf, parsed by hand from its wire
 * format (pieces with scores and types, trainer_spec's model type and byte fallback,
 * normalizer_spec's whitespace options and precompiled charsmap). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmm/error.h"
#include "sp.h"

#define MAX_MODEL_BYTES ((size_t)1 << 30)

typedef struct {
    const uint8_t *p, *end, *base;
    const char *path;
} pb_reader;

typedef struct {
    uint32_t num;
    int wire;           /* 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 */
    uint64_t v;         /* varint / fixed value */
    const uint8_t *data; /* length-delimited bytes */
    size_t len;
} pb_field;

static int truncated(const pb_reader *r, const char *what) {
    return mmm_fail(MMM_ERR_FORMAT, "%s: truncated or malformed protobuf at byte %zu (%s)", r->path,
                    (size_t)(r->p - r->base), what);
}

static int varint(pb_reader *r, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return truncated(r, "varint");
        uint8_t b = *r->p++;
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return 0;
    }
    return truncated(r, "varint longer than 10 bytes");
}

/* The next field of the message r covers: 1, or 0 at its end, or an error. */
static int next_field(pb_reader *r, pb_field *f) {
    if (r->p == r->end) return 0;
    uint64_t key;
    int rc = varint(r, &key);
    if (rc) return rc;
    f->num = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    switch (f->wire) {
    case 0: return (rc = varint(r, &f->v)) ? rc : 1;
    case 1:
    case 5: {
        size_t n = f->wire == 1 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n) return truncated(r, "fixed-size field");
        f->v = 0;
        for (size_t i = 0; i < n; i++) f->v |= (uint64_t)r->p[i] << (8 * i);
        r->p += n;
        return 1;
    }
    case 2:
        if ((rc = varint(r, &f->v))) return rc;
        if (f->v > (uint64_t)(r->end - r->p)) return truncated(r, "length-delimited field runs past the end");
        f->data = r->p, f->len = (size_t)f->v;
        r->p += f->len;
        return 1;
    default:
        return truncated(r, "unknown wire type");
    }
}

static pb_reader sub(const pb_reader *r, const pb_field *f) { return (pb_reader){f->data, f->data + f->len, r->base, r->path}; }

typedef struct {
    int model_type;
    bool treat_ws_as_suffix;
    const uint8_t *charsmap;
    size_t charsmap_len;
} spec;

/* "<0xNN>" with upper-case hex digits: the only byte pieces sentencepiece accepts, and what
 * decoding reads the byte from. */
static bool is_byte_piece(const uint8_t *s, size_t len) {
    static const char hex[] = "0123456789ABCDEF";
    return len == 6 && !memcmp(s, "<0x", 3) && s[3] && strchr(hex, s[3]) && s[4] && strchr(hex, s[4]) &&
           s[5] == '>';
}

static int parse_piece(mmm_tokenizer *t, mmm_sp_model *m, pb_reader *r, int32_t id) {
    pb_field f;
    int got;
    const uint8_t *piece = NULL;
    size_t len = 0;
    float score = 0;
    uint64_t type = SP_NORMAL;
    while ((got = next_field(r, &f)) > 0) {
        if (f.num == 1 && f.wire == 2) piece = f.data, len = f.len;
        else if (f.num == 2 && f.wire == 5) { uint32_t u = (uint32_t)f.v; memcpy(&score, &u, 4); }
        else if (f.num == 3 && f.wire == 0) type = f.v;
    }
    if (got < 0) return got;
    if (!piece || !len) return mmm_fail(MMM_ERR_FORMAT, "%s: piece %d is empty", r->path, id);
    if (type < SP_NORMAL || type > SP_BYTE)
        return mmm_fail(MMM_ERR_FORMAT, "%s: piece %d '%.*s' has unknown type %llu", r->path, id, (int)len,
                        (const char *)piece, (unsigned long long)type);
    if (type == SP_BYTE && !is_byte_piece(piece, len))
        return mmm_fail(MMM_ERR_FORMAT, "%s: byte piece %d '%.*s' is not of the form <0xNN>", r->path, id,
                        (int)len, (const char *)piece);
    if (mmm_strmap_get(&t->lookup, (const char *)piece, len) >= 0)
        return mmm_fail(MMM_ERR_FORMAT, "%s: piece %d '%.*s' is defined twice", r->path, id, (int)len, (const char *)piece);
    int rc = mmm_tok_set(t, id, (const char *)piece, len);
    if (rc) return mmm_fail_context(rc, "%s", r->path);
    m->score[id] = score;
    m->type[id] = (uint8_t)type;
    t->special[id] = type == SP_CONTROL;
    return 0;
}

static int parse_trainer(mmm_sp_model *m, spec *s, pb_reader *r) {
    pb_field f;
    int got;
    while ((got = next_field(r, &f)) > 0) {
        if (f.num == 3 && f.wire == 0) s->model_type = (int)f.v;
        else if (f.num == 24 && f.wire == 0) s->treat_ws_as_suffix = f.v != 0;
        else if (f.num == 35 && f.wire == 0) m->byte_fallback = f.v != 0;
        else if (f.num == 44 && f.wire == 2) {
            char *u = malloc(f.len + 1);
            if (!u) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", r->path);
            memcpy(u, f.data, f.len);
            u[f.len] = 0;
            free(m->unk_surface);
            m->unk_surface = u;
        }
    }
    return got < 0 ? got : 0;
}

static int parse_normalizer(mmm_sp_model *m, spec *s, pb_reader *r) {
    pb_field f;
    int got;
    while ((got = next_field(r, &f)) > 0) {
        if (f.num == 2 && f.wire == 2) s->charsmap = f.data, s->charsmap_len = f.len;
        else if (f.num == 3 && f.wire == 0) m->add_dummy_prefix = f.v != 0;
        else if (f.num == 4 && f.wire == 0) m->remove_extra_whitespaces = f.v != 0;
        else if (f.num == 5 && f.wire == 0) m->escape_whitespaces = f.v != 0;
    }
    return got < 0 ? got : 0;
}

/* precompiled_charsmap: u32 trie size, the trie's u32 units, then the replacement strings. */
static int load_charsmap(mmm_sp_model *m, const char *path, const uint8_t *b, size_t n) {
    if (!n) return 0;
    uint32_t size = n >= 4 ? (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24 : 0;
    if (n < 4 || size % 4 || !size || size > n - 4)
        return mmm_fail(MMM_ERR_FORMAT, "%s: normalizer_spec.precompiled_charsmap is malformed (trie of %u bytes in %zu)", path, size, n);
    m->trie_units = size / 4;
    m->repl_len = n - 4 - size;
    m->trie = malloc(size);
    m->repl = malloc(m->repl_len + 1);
    if (!m->trie || !m->repl) return mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < m->trie_units; i++) {
        const uint8_t *u = b + 4 + 4 * i;
        m->trie[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    }
    memcpy(m->repl, b + 4 + size, m->repl_len);
    m->repl[m->repl_len] = 0; /* every replacement ends within the copy */
    return 0;
}

static int build_matchers(mmm_tokenizer *t, mmm_sp_model *m, const char *path) {
    mmm_pattern *user = malloc((size_t)t->n_vocab * sizeof *user), *control = malloc((size_t)t->n_vocab * sizeof *control);
    int n_user = 0, n_control = 0, rc = 0;
    if (!user || !control) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    for (int32_t id = 0; id < t->n_vocab && !rc; id++) {
        mmm_pattern p = {t->tokens[id], t->lens[id], id};
        if (m->type[id] == SP_USER_DEFINED) user[n_user++] = p;
        if (m->type[id] == SP_CONTROL) control[n_control++] = p;
    }
    if (!rc) rc = mmm_matcher_init(&m->user, user, n_user);
    if (!rc) rc = mmm_matcher_init(&m->control, control, n_control);
    free(user), free(control);
    return rc;
}

int mmm_sp_load(mmm_tokenizer *t, const char *path) {
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = mmm_tok_read_file(path, MAX_MODEL_BYTES, &data, &len);
    mmm_sp_model *m = rc ? NULL : (t->sp = calloc(1, sizeof *m));
    if (!rc && !m) rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    if (rc) {
        free(data);
        return rc;
    }
    *m = (mmm_sp_model){.unk_id = -1, .add_dummy_prefix = true, .remove_extra_whitespaces = true, .escape_whitespaces = true};
    spec s = {.model_type = 1}; /* proto2 defaults: UNIGRAM, the three whitespace options on */
    /* Pass 1 counts the pieces; pass 2 reads them and the specs. */
    pb_reader r = {data, data + len, data, path};
    pb_field f;
    int got, n = 0;
    while ((got = next_field(&r, &f)) > 0) n += f.num == 1 && f.wire == 2;
    if (got < 0) rc = got;
    if (!rc && !n) rc = mmm_fail(MMM_ERR_FORMAT, "%s: not a SentencePiece model (no pieces)", path);
    if (!rc && (!(m->score = calloc((size_t)n, sizeof *m->score)) || !(m->type = calloc((size_t)n, 1))))
        rc = mmm_fail(MMM_ERR_NOMEM, "%s: out of memory", path);
    r.p = data;
    for (int32_t id = 0; !rc && (got = next_field(&r, &f)) > 0;) {
        pb_reader in = sub(&r, &f);
        if (f.num == 1 && f.wire == 2) rc = parse_piece(t, m, &in, id++);
        else if (f.num == 2 && f.wire == 2) rc = parse_trainer(m, &s, &in);
        else if (f.num == 3 && f.wire == 2) rc = parse_normalizer(m, &s, &in);
    }
    if (!rc && got < 0) rc = got;
    if (!rc && s.model_type != 2)
        rc = mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported SentencePiece model type '%s' (only BPE)", path,
                      s.model_type == 1 ? "unigram" : s.model_type == 3 ? "word" : s.model_type == 4 ? "char" : "unknown");
    if (!rc && s.treat_ws_as_suffix)
        rc = mmm_fail(MMM_ERR_UNSUPPORTED, "%s: unsupported trainer_spec.treat_whitespace_as_suffix", path);
    for (int32_t id = 0; id < t->n_vocab && !rc; id++) {
        if (m->type[id] == SP_UNKNOWN && m->unk_id >= 0)
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: two unknown pieces ('%s', '%s')", path, t->tokens[m->unk_id], t->tokens[id]);
        if (m->type[id] == SP_UNKNOWN) m->unk_id = id;
        m->has_unused |= m->type[id] == SP_UNUSED;
    }
    if (!rc && m->unk_id < 0) rc = mmm_fail(MMM_ERR_FORMAT, "%s: no unknown piece (<unk>)", path);
    for (int b = 0; b < 256 && !rc; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int32_t id = mmm_strmap_get(&t->lookup, name, 6);
        m->byte_id[b] = id >= 0 && m->type[id] == SP_BYTE ? id : -1;
        if (m->byte_fallback && m->byte_id[b] < 0)
            rc = mmm_fail(MMM_ERR_FORMAT, "%s: byte_fallback is on but byte piece %s is missing", path, name);
    }
    if (!rc && !m->unk_surface && !(m->unk_surface = strdup(" \xE2\x81\x87 "))) rc = mmm_fail(MMM_ERR_NOMEM, "out of memory");
    if (!rc) rc = load_charsmap(m, path, s.charsmap, s.charsmap_len);
    if (!rc) rc = build_matchers(t, m, path);
    free(data);
    return rc;
}

void mmm_sp_free(mmm_sp_model *m) {
    if (!m) return;
    free(m->score);
    free(m->type);
    free(m->unk_surface);
    mmm_matcher_free(&m->user);
    mmm_matcher_free(&m->control);
    free(m->trie);
    free(m->repl);
    free(m);
}
