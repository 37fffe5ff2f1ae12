/* Sequences that decode together (mmm/pool.h, docs/design.md §10), written once over the
 * executor like the single-sequence state. A batch step is the prefill's layer loop (step_layers)
 * over n rows, one per sequence, with T = 1: the products see n rows, the short convolution and
 * the SSM step see B = n sequences whose states are rows 0..n−1 of the layer's arrays, and
 * attention layers take each row to its own sequence's cache (exec op attend_seqs). Sequences
 * are moved between rows (their recurrent states copied) so that the n decoding ones sit in rows
 * 0..n−1; a set that decodes step after step stays put. */
#include <stdlib.h>
#include <string.h>

#include "mmm/pool.h"
#include "mmm/error.h"
#include "state.h"

typedef struct {
    mmm_state *st; /* NULL: the handle is free */
    int row;
} batch_seq;

struct mmm_pool {
    const mmm_model *m;
    model_exec dev;
    int max_seqs, n_layers, n_attn;
    exec_buf rows;          /* per mamba2 layer: conv rows (S + 1, K−1, Dc), then SSM rows (S + 1, H, D, D);
                               row S is the spare of a swap */
    size_t *conv_at, *ssm_at; /* (L) float offsets of layer l's first conv and SSM rows */
    float **conv_row, **ssm_row; /* (L) one row's addresses, to bind a state to */
    batch_seq *seq;         /* (S) */
    int *at_row;            /* (S + 1) the sequence in each row, or −1 */
    exec_buf arena;         /* the step's buffers for arena_rows rows, grown by the steps that need more */
    int arena_rows;
    step_bufs sb;
    exec_buf logits, ws, table;
    exec_buf sync;          /* (S) zeroed ints for the devices' fused recurrent step */
    layer_cache *caches;    /* (L) */
    seq_kv *kv;             /* (L) */
    void **kp, **vp;        /* (n_attn · S) host: each attention layer's caches of the decoding rows */
    int *lens;              /* (S) host: the tokens each decoding sequence holds */
    char *table_host;       /* the device's copy of kp, vp and lens + 1 (exec.h, seq_kv.dev) */
    size_t table_stride;    /* bytes per attention layer in it */
    int32_t *pos;           /* (S) */
    unsigned *seen, steps;  /* (S) the step that last named each sequence: one name per step */
    /* the step recorded for replay (exec record ops) and what it was recorded for; a step is
     * recorded the second time its key comes, after a first run has sized every buffer */
    void *rec;
    size_t rec_key[5], warm_key[5];
};

static size_t conv_floats(const mmm_layer_desc *d) { return state_conv_bytes(d) / sizeof(float); }
static size_t ssm_floats(const mmm_layer_desc *d) { return state_ssm_bytes(d) / sizeof(float); }

void mmm_pool_free(mmm_pool *b) {
    if (!b) return;
    for (int i = 0; b->seq && i < b->max_seqs; i++) mmm_state_free(b->seq[i].st);
    const model_exec *x = &b->dev;
    if (b->rec) x->op->record_free(x, b->rec);
    exec_buf *bufs[] = {&b->rows, &b->arena, &b->logits, &b->ws, &b->table, &b->sync};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) x->op->release(x, bufs[i]);
    free(b->conv_at);
    free(b->ssm_at);
    free(b->conv_row);
    free(b->ssm_row);
    free(b->seq);
    free(b->at_row);
    free(b->caches);
    free(b->kv);
    free(b->kp);
    free(b->vp);
    free(b->lens);
    free(b->table_host);
    free(b->pos);
    free(b->seen);
    free(b);
}

int mmm_pool_new(mmm_pool **out, const mmm_model *m, int max_seqs) {
    *out = NULL;
    const mmm_config *c = &m->cfg;
    if (max_seqs < 1 || max_seqs > 1 << 16)
        return mmm_fail(MMM_ERR_ARG, "pool: max_seqs must be 1..65536 (got %d)", max_seqs);
    mmm_pool *b = calloc(1, sizeof *b);
    if (!b) return mmm_fail(MMM_ERR_NOMEM, "pool: out of memory");
    int L = mmm_config_n_layers(c), S = max_seqs;
    *b = (mmm_pool){.m = m, .dev = exec_for(m), .max_seqs = S, .n_layers = L};
    for (int l = 0; l < L; l++) b->n_attn += c->layers[l].kind == MMM_MIXER_ATTENTION;
    size_t A = (size_t)(b->n_attn ? b->n_attn : 1);
    b->table_stride = ((size_t)S * (2 * sizeof(void *) + sizeof(int)) + 15) & ~(size_t)15;
    b->conv_at = calloc((size_t)L + 1, sizeof *b->conv_at);
    b->ssm_at = calloc((size_t)L + 1, sizeof *b->ssm_at);
    b->conv_row = calloc((size_t)L + 1, sizeof *b->conv_row);
    b->ssm_row = calloc((size_t)L + 1, sizeof *b->ssm_row);
    b->seq = calloc((size_t)S, sizeof *b->seq);
    b->at_row = malloc(((size_t)S + 1) * sizeof *b->at_row);
    b->caches = calloc((size_t)L + 1, sizeof *b->caches);
    b->kv = calloc((size_t)L + 1, sizeof *b->kv);
    b->kp = calloc(A * S, sizeof *b->kp);
    b->vp = calloc(A * S, sizeof *b->vp);
    b->lens = calloc((size_t)S, sizeof *b->lens);
    b->table_host = calloc(A, b->table_stride);
    b->pos = calloc((size_t)S, sizeof *b->pos);
    b->seen = calloc((size_t)S, sizeof *b->seen);
    if (!b->conv_at || !b->ssm_at || !b->conv_row || !b->ssm_row || !b->seq || !b->at_row || !b->caches || !b->kv ||
        !b->kp || !b->vp || !b->lens || !b->table_host || !b->pos || !b->seen) {
        mmm_pool_free(b);
        return mmm_fail(MMM_ERR_NOMEM, "pool: out of memory");
    }
    for (int r = 0; r <= S; r++) b->at_row[r] = -1;
    size_t floats = 0;
    for (int l = 0; l < L; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (d->kind == MMM_MIXER_ATTENTION) continue;
        b->conv_at[l] = floats;
        floats += MMM_ALIGN_FLOATS(conv_floats(d) * (S + 1));
        b->ssm_at[l] = floats;
        floats += MMM_ALIGN_FLOATS(ssm_floats(d) * (S + 1));
    }
    int rc = floats ? b->dev.op->reserve(&b->dev, &b->rows, floats * sizeof(float), "a batch's recurrent states")
                    : MMM_OK;
    if (!rc && !b->dev.host && b->n_attn)
        rc = b->dev.op->reserve(&b->dev, &b->table, A * b->table_stride, "a batch's cache table");
    if (!rc && floats && b->dev.op->mamba_step &&
        !(rc = b->dev.op->reserve(&b->dev, &b->sync, (size_t)S * sizeof(int), "a batch's step counters")))
        rc = b->dev.op->zero(&b->dev, b->sync.p, (size_t)S); /* an int is a float's size */
    if (rc) {
        mmm_pool_free(b);
        return rc;
    }
    *out = b;
    return MMM_OK;
}

/* Points conv_row/ssm_row at row r of every mamba2 layer. */
static void bind_row(mmm_pool *b, int r) {
    const mmm_config *c = &b->m->cfg;
    for (int l = 0; l < b->n_layers; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (d->kind == MMM_MIXER_ATTENTION) continue;
        b->conv_row[l] = (float *)b->rows.p + b->conv_at[l] + (size_t)r * conv_floats(d);
        b->ssm_row[l] = (float *)b->rows.p + b->ssm_at[l] + (size_t)r * ssm_floats(d);
    }
}

/* Copies row `from`'s recurrent states over row `to`, in every mamba2 layer. */
static int copy_row(mmm_pool *b, int to, int from) {
    const mmm_config *c = &b->m->cfg;
    const model_exec *x = &b->dev;
    for (int l = 0; l < b->n_layers; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        if (d->kind == MMM_MIXER_ATTENTION) continue;
        float *conv = (float *)b->rows.p + b->conv_at[l], *ssm = (float *)b->rows.p + b->ssm_at[l];
        size_t nc = conv_floats(d), ns = ssm_floats(d);
        TRY(x->op->copy(x, conv + to * nc, conv + from * nc, nc * sizeof(float)));
        TRY(x->op->copy(x, ssm + to * ns, ssm + from * ns, ns * sizeof(float)));
    }
    return MMM_OK;
}

/* Sequence i (if any) now lives in row r. */
static void settle(mmm_pool *b, int i, int r) {
    b->at_row[r] = i;
    if (i < 0) return;
    b->seq[i].row = r;
    bind_row(b, r);
    state_move_rows(b->seq[i].st, b->conv_row, b->ssm_row);
}

/* Exchanges the occupants of rows r1 and r2 (either may be empty), through the spare row. */
static int swap_rows(mmm_pool *b, int r1, int r2) {
    int i1 = b->at_row[r1], i2 = b->at_row[r2], spare = b->max_seqs;
    if (b->rows.p) {
        if (i1 >= 0 && i2 >= 0) {
            TRY(copy_row(b, spare, r1));
            TRY(copy_row(b, r1, r2));
            TRY(copy_row(b, r2, spare));
        } else if (i1 >= 0) {
            TRY(copy_row(b, r2, r1));
        } else if (i2 >= 0) {
            TRY(copy_row(b, r1, r2));
        }
    }
    settle(b, i2, r1);
    settle(b, i1, r2);
    return MMM_OK;
}

int mmm_pool_open(mmm_pool *b, int max_tokens, int *seq) {
    *seq = -1;
    int h = 0, r = 0;
    while (h < b->max_seqs && b->seq[h].st) h++;
    while (r < b->max_seqs && b->at_row[r] >= 0) r++;
    if (h == b->max_seqs) return mmm_fail(MMM_ERR_ARG, "pool: all %d sequences are open", b->max_seqs);
    bind_row(b, r);
    TRY(state_new_at(&b->seq[h].st, b->m, max_tokens, b->conv_row, b->ssm_row));
    b->seq[h].row = r;
    b->at_row[r] = h;
    *seq = h;
    return MMM_OK;
}

static int check_seq(const mmm_pool *b, int seq, const char *what) {
    if (seq < 0 || seq >= b->max_seqs || !b->seq[seq].st)
        return mmm_fail(MMM_ERR_ARG, "pool %s: sequence %d is not open", what, seq);
    return MMM_OK;
}

void mmm_pool_close(mmm_pool *b, int seq) {
    if (check_seq(b, seq, "close")) return;
    mmm_state_free(b->seq[seq].st);
    b->at_row[b->seq[seq].row] = -1;
    b->seq[seq] = (batch_seq){0};
}

int mmm_pool_prefill(mmm_pool *b, int seq, const int32_t *ids, int T, const float *pixels, int n_tiles,
                      float *last) {
    TRY(check_seq(b, seq, "prefill"));
    return mmm_prefill(b->m, b->seq[seq].st, ids, T, pixels, n_tiles, NULL, last);
}

int mmm_pool_length(const mmm_pool *b, int seq) {
    return check_seq(b, seq, "length") ? -1 : mmm_state_length(b->seq[seq].st);
}

int mmm_pool_fill_synthetic(mmm_pool *b, int seq, int len, uint64_t seed) {
    TRY(check_seq(b, seq, "fill"));
    return mmm_state_fill_synthetic(b->seq[seq].st, len, seed);
}

/* The rotary rows of both stacks, one per sequence at its own position. InternLM2's dynamic
 * NTK base depends on how many keys a call ends with, so there each row is its own call. */
static int rope_rows(mmm_pool *b, int n) {
    const mmm_config *c = &b->m->cfg;
    const model_exec *x = &b->dev;
    for (int st = 0; st < 2; st++) {
        int first = st ? c->n_emb_layers : 0, count = st ? c->n_llm_layers : c->n_emb_layers;
        if (count == 0) continue;
        mmm_rope_scaling r = mmm_layer_rope(&c->layers[first]);
        int D = c->layers[first].head_dim, half = D / 2, longest = 0;
        for (int i = 0; i < n; i++) if (b->pos[i] + 1 > longest) longest = b->pos[i] + 1;
        if (r.kind != MMM_ROPE_DYNAMIC || longest <= r.max_pos) {
            TRY(x->op->rope_tables(x, b->sb.rope[st][0], b->sb.rope[st][1], b->pos, n, longest, &r, D));
            continue;
        }
        for (int i = 0; i < n; i++)
            TRY(x->op->rope_tables(x, b->sb.rope[st][0] + (size_t)i * half, b->sb.rope[st][1] + (size_t)i * half,
                                   b->pos + i, 1, b->pos[i] + 1, &r, D));
    }
    return MMM_OK;
}

/* Each layer's memory for the n sequences in rows 0..n−1: the recurrent rows as B = n states,
 * the attention caches through the table (uploaded where the device needs its own copy). */
static int bind_caches(mmm_pool *b, int n, const int *seqs) {
    const mmm_config *c = &b->m->cfg;
    const model_exec *x = &b->dev;
    mmm_dtype kv_dt = b->seq[seqs[0]].st->plan.kv_dt;
    int S = b->max_seqs, a = 0, longest = 1, Hmax = 1, Dmax = 1;
    for (int i = 0; i < n; i++) {
        b->lens[i] = b->pos[i];
        if (b->pos[i] + 1 > longest) longest = b->pos[i] + 1;
    }
    for (int l = 0; l < b->n_layers; l++) {
        const mmm_layer_desc *d = &c->layers[l];
        layer_cache *lc = &b->caches[l];
        *lc = (layer_cache){.kv_dt = kv_dt};
        if (d->kind != MMM_MIXER_ATTENTION) {
            lc->conv_state = (float *)b->rows.p + b->conv_at[l];
            lc->ssm_state = (float *)b->rows.p + b->ssm_at[l];
            lc->sync = b->sync.p;
            continue;
        }
        if (d->n_heads > Hmax) Hmax = d->n_heads;
        if (d->head_dim > Dmax) Dmax = d->head_dim;
        void **kp = b->kp + (size_t)a * S, **vp = b->vp + (size_t)a * S;
        for (int i = 0; i < n; i++) {
            kp[i] = b->seq[seqs[i]].st->k[l];
            vp[i] = b->seq[seqs[i]].st->v[l];
        }
        b->kv[l] = (seq_kv){.k = kp, .v = vp, .len = b->lens, .kv_dt = kv_dt};
        if (!x->host) { /* [n k pointers][n v pointers][n key counts] */
            char *h = b->table_host + (size_t)a * b->table_stride;
            memcpy(h, kp, (size_t)n * sizeof *kp);
            memcpy(h + (size_t)n * sizeof *kp, vp, (size_t)n * sizeof *vp);
            int *tk = (int *)(h + 2 * (size_t)n * sizeof *kp);
            for (int i = 0; i < n; i++) tk[i] = b->lens[i] + 1;
            b->kv[l].dev = (char *)b->table.p + (size_t)a * b->table_stride;
        }
        lc->seqs = &b->kv[l];
        a++;
    }
    if (!b->n_attn) return MMM_OK;
    if (!x->host) TRY(x->op->upload(x, b->table.p, b->table_host, (size_t)b->n_attn * b->table_stride));
    TRY(x->op->reserve(x, &b->ws, x->op->seq_kv_ws_bytes(x, n, longest, Hmax, Dmax), "a batch's attention workspace"));
    b->dev.attn_ws = b->ws.p;
    return MMM_OK;
}

static int check_step(mmm_pool *b, int n, const int *seqs, const int32_t *ids) {
    if (n < 1 || n > b->max_seqs)
        return mmm_fail(MMM_ERR_ARG, "pool decode: %d sequences (1..%d)", n, b->max_seqs);
    if (++b->steps == 0) { /* the stamps wrapped: start them again */
        memset(b->seen, 0, (size_t)b->max_seqs * sizeof *b->seen);
        b->steps = 1;
    }
    for (int i = 0; i < n; i++) {
        TRY(check_seq(b, seqs[i], "decode"));
        if (b->seen[seqs[i]] == b->steps)
            return mmm_fail(MMM_ERR_ARG, "pool decode: sequence %d given twice", seqs[i]);
        b->seen[seqs[i]] = b->steps;
        const mmm_state *st = b->seq[seqs[i]].st;
        if (st->len + 1 > st->max_tokens)
            return mmm_fail(MMM_ERR_ARG, "pool decode: sequence %d is full (%d tokens)", seqs[i], st->max_tokens);
    }
    return check_input_ids(&b->m->cfg, ids, n, 0, "pool decode");
}

/* The layers and the head over the n rows: logits (n, V) into out (the device's). */
static int run_step(mmm_pool *b, int n, float *out) {
    TRY(step_layers(&b->dev, &b->sb, n, 1, b->caches));
    return step_head(&b->dev, &b->sb, 0, n, out);
}

/* run_step through a record where the device keeps one: replayed while nothing it depends on
 * changed — the rows, the buffers' addresses, the longest sequence's power of two (the
 * attention's split count follows it) — else recorded again, or run as it is. */
static int recorded_step(mmm_pool *b, int n, float *out) {
    const model_exec *x = &b->dev;
    int longest = 1, bucket = 0, stale = 1;
    for (int i = 0; i < n; i++) if (b->pos[i] + 1 > longest) longest = b->pos[i] + 1;
    while (longest >>= 1) bucket++;
    size_t key[5] = {(size_t)n, (size_t)b->arena.p, (size_t)b->ws.p, (size_t)out, (size_t)bucket};
    if (!x->op->record_begin) return run_step(b, n, out);
    if (b->rec && !memcmp(key, b->rec_key, sizeof key)) TRY(x->op->replay(x, b->rec, &stale));
    if (!stale) return MMM_OK;
    if (b->rec) x->op->record_free(x, b->rec);
    b->rec = NULL;
    if (!memcmp(key, b->warm_key, sizeof key) && x->op->record_begin(x) == MMM_OK) {
        void *rec = NULL;
        int rc = run_step(b, n, out), end = x->op->record_end(x, &rec);
        if (!rc && !end && rec && x->op->replay(x, rec, &stale) == MMM_OK && !stale) {
            b->rec = rec;
            memcpy(b->rec_key, key, sizeof key);
            return MMM_OK;
        }
        if (rec) x->op->record_free(x, rec);
        mmm_clear_error(); /* a step that cannot be recorded still runs */
    }
    memcpy(b->warm_key, key, sizeof key);
    return run_step(b, n, out);
}

int mmm_pool_decode(mmm_pool *b, int n, const int *seqs, const int32_t *ids, float *logits) {
    TRY(check_step(b, n, seqs, ids));
    for (int i = 0; i < n; i++) state_trim(b->seq[seqs[i]].st);
    mmm_state *lone = b->seq[seqs[0]].st;
    if (n == 1 && lone->plan.fused_decode) return mmm_decode(b->m, lone, ids[0], logits);
    const model_exec *x = &b->dev;
    if (n > b->arena_rows) { /* a power of two of rows, so that a growing batch re-carves a few times */
        int rows = 1;
        while (rows < n) rows *= 2;
        if (rows > b->max_seqs) rows = b->max_seqs;
        b->arena_rows = 0; /* until the buffers are carved again */
        TRY(x->op->reserve(x, &b->arena, step_layout(NULL, &b->m->cfg, rows, NULL) * sizeof(float),
                           "a batch step's buffers"));
        step_layout(&b->sb, &b->m->cfg, rows, b->arena.p);
        b->arena_rows = rows;
    }
    for (int i = 0; i < n; i++)
        if (b->seq[seqs[i]].row != i) TRY(swap_rows(b, b->seq[seqs[i]].row, i));
    for (int i = 0; i < n; i++) b->pos[i] = b->seq[seqs[i]].st->len;
    long cursor = 0;
    TRY(x->op->embed(x, b->sb.x, ids, n, NULL, &cursor));
    TRY(rope_rows(b, n));
    TRY(bind_caches(b, n, seqs));
    size_t bytes = (size_t)n * b->m->cfg.vocab * sizeof(float);
    float *out = logits;
    if (!x->host) {
        TRY(x->op->reserve(x, &b->logits, bytes, "the logits of a batch step"));
        out = b->logits.p;
    }
    TRY(recorded_step(b, n, out));
    if (out != logits) TRY(x->op->download(x, logits, out, bytes));
    for (int i = 0; i < n; i++) b->seq[seqs[i]].st->len++;
    return x->op->wait(x);
}
