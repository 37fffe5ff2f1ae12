/* safetensors reader/writer and the fp32 <-> bf16/fp16 conversions: round trips for every
 * dtype, fixtures written by tools/reference/make_safetensors_fixtures.py (read back, and
 * matched byte for byte by our writer), sharded checkpoints, and malformed files and indexes,
 * each rejected with its own message. */
#include "../harness.h"

#include "mmm/dtype.h"
#include "mmm/error.h"
#include "mmm/safetensors.h"

#include <ftw.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIXTURES "tests/data/safetensors"

/* ---- temporary files ---- */
static char tmp_root[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_tmp_root(void) { nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Created on first use and removed at exit, whichever tests ran. */
static const char *tmp_dir(void) {
    if (!tmp_root[0]) {
        snprintf(tmp_root, sizeof tmp_root, "/tmp/mmm_st_XXXXXX");
        if (!mkdtemp(tmp_root)) {
            perror("mkdtemp");
            abort();
        }
        atexit(rm_tmp_root);
    }
    return tmp_root;
}

/* A path under the temporary directory (a few rotating static buffers). */
static const char *tpath(const char *name) {
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_dir(), name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(p, 1, n, fp) != n) {
        perror(path);
        abort();
    }
    fclose(fp);
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *p = malloc(*len + 1);
    if (fread(p, 1, *len, fp) != *len) *len = 0;
    fclose(fp);
    return p;
}

/* A safetensors file with header `json` (its length as given, unpadded) and data_len bytes
 * counting up from 0. */
static void write_st(const char *path, const char *json, size_t data_len) {
    size_t hlen = strlen(json);
    unsigned char *buf = calloc(8 + hlen + data_len + 1, 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, json, hlen);
    for (size_t i = 0; i < data_len; i++) buf[8 + hlen + i] = (unsigned char)i;
    write_bytes(path, buf, 8 + hlen + data_len);
    free(buf);
}

static bool files_equal(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    unsigned char *pa = read_all(a, &na), *pb = read_all(b, &nb);
    bool eq = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return eq;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* No "*.tmp.*" file left in dir. */
static bool no_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return false;
    bool clean = true;
    for (struct dirent *e; (e = readdir(d));) clean &= strstr(e->d_name, ".tmp.") == NULL;
    closedir(d);
    return clean;
}

/* For check labels: the error message when rc is a failure. */
static const char *why(int rc) {
    static char buf[1100];
    if (rc == MMM_OK) return "";
    snprintf(buf, sizeof buf, " [%s]", mmm_last_error());
    return buf;
}

/* Opening `path` fails with `code` and a message holding `needle` and the file's path. */
static void expect_reject(const char *what, const char *path, int code, const char *needle) {
    mmm_clear_error();
    mmm_st_file *f = NULL;
    int rc = mmm_st_open(&f, path);
    const char *msg = mmm_last_error();
    check(rc == code && !f && strstr(msg, needle) && strstr(msg, path),
          "safetensors reject %s [%s]", what, msg);
    mmm_st_close(f);
}

static void expect_model_reject(const char *what, const char *path, int code, const char *needle) {
    mmm_clear_error();
    mmm_st_model *m = NULL;
    int rc = mmm_st_open_model(&m, path);
    const char *msg = mmm_last_error();
    check(rc == code && !m && strstr(msg, needle), "safetensors reject %s [%s]", what, msg);
    mmm_st_close_model(m);
}

/* ---- conversions ---- */
static uint32_t f2u(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float u2f(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* Nearest-even rounding of finite |x| between the magnitudes `lo` < `hi` (as doubles), whose
 * encodings are lo_bits and lo_bits + 1: the float64 reference the integer tricks are held to. */
static uint32_t round_between(double ax, double lo, double hi, uint32_t lo_bits) {
    double dl = ax - lo, dh = hi - ax;
    if (dl < dh) return lo_bits;
    if (dh < dl) return lo_bits + 1;
    return lo_bits & 1 ? lo_bits + 1 : lo_bits;
}

static double bf16_mag(uint32_t bits) { /* bits without sign; the inf encoding stands for 2^128 */
    return bits == 0x7f80 ? ldexp(1, 128) : (double)u2f(bits << 16);
}

static uint16_t ref_bf16(float x) {
    uint32_t u = f2u(x), sign = (u >> 16) & 0x8000, a = u & 0x7fffffff;
    uint32_t lo = a >> 16; /* truncation toward zero */
    if (a == lo << 16) return (uint16_t)(sign | lo);
    return (uint16_t)(sign | round_between(fabs((double)x), bf16_mag(lo), bf16_mag(lo + 1), lo));
}

static double f16_mag(uint32_t bits) { /* 0x7c00 (inf) stands for 2^16 */
    uint32_t e = bits >> 10, m = bits & 0x3ff;
    if (e == 31) return 65536.0;
    return e ? ldexp(1024 + m, (int)e - 25) : ldexp(m, -24);
}

static uint16_t ref_f16(float x) {
    uint32_t sign = (f2u(x) >> 16) & 0x8000;
    double ax = fabs((double)x);
    if (ax >= 65536.0) return (uint16_t)(sign | 0x7c00);
    uint32_t lo = 0, hi = 0x7c00; /* largest encoding with magnitude ≤ ax */
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (f16_mag(mid) <= ax) lo = mid;
        else hi = mid;
    }
    if (f16_mag(lo) == ax) return (uint16_t)(sign | lo);
    return (uint16_t)(sign | round_between(ax, f16_mag(lo), f16_mag(lo + 1), lo));
}

/* Random floats: half of them arbitrary bit patterns, half with exponents around the range
 * of fp16, so both formats' normal/subnormal/overflow edges are hit often. */
static float random_float(rng_t *r, int i) {
    uint32_t bits = (uint32_t)(rng_uniform(r) * 4294967296.0);
    if (i % 2) return u2f(bits);
    double m = 1 + rng_uniform(r);
    return (float)((bits & 1 ? -1 : 1) * ldexp(m, (int)(rng_uniform(r) * 46) - 28));
}

TEST(safetensors_dtype_names) {
    bool ok = true;
    for (int t = 0; t < MMM_DTYPE_COUNT; t++) {
        mmm_dtype back;
        ok &=
            mmm_dtype_parse(&back, mmm_dtype_name((mmm_dtype)t)) == MMM_OK && back == (mmm_dtype)t;
    }
    ok &= mmm_dtype_size(MMM_DTYPE_F32) == 4 && mmm_dtype_size(MMM_DTYPE_F16) == 2 &&
          mmm_dtype_size(MMM_DTYPE_BF16) == 2 && mmm_dtype_size(MMM_DTYPE_I32) == 4 &&
          mmm_dtype_size(MMM_DTYPE_I64) == 8;
    check(ok, "safetensors dtype names and sizes round trip");
    mmm_dtype t;
    int rc = mmm_dtype_parse(&t, "F64");
    check(rc == MMM_ERR_UNSUPPORTED && strstr(mmm_last_error(), "unsupported dtype 'F64'"),
          "safetensors dtype F64 is unsupported [%s]", mmm_last_error());
    rc = mmm_dtype_parse(&t, "float32");
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "unknown dtype 'float32'"),
          "safetensors dtype float32 is unknown [%s]", mmm_last_error());
}

TEST(safetensors_dtype_bf16) {
    const struct { float x; uint16_t want; const char *what; } cases[] = {
        {0.0f, 0x0000, "+0"}, {-0.0f, 0x8000, "-0"}, {1.0f, 0x3f80, "1"},
        {INFINITY, 0x7f80, "+inf"}, {-INFINITY, 0xff80, "-inf"},
        {1.0f + 0x1p-8f, 0x3f80, "tie to even (down)"},
        {1.0f + 3 * 0x1p-8f, 0x3f82, "tie to even (up)"},
        {1.0f + 0x1p-8f + 0x1p-20f, 0x3f81, "above the tie"},
        {u2f(0x7f7fffff), 0x7f80, "largest float rounds to inf"},
        {u2f(0x00012345), 0x0001, "fp32 subnormal"},
        {-u2f(0x00008000), 0x8000, "subnormal tie to even zero"},
    };
    bool ok = true;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint16_t got = mmm_f32_to_bf16(cases[i].x);
        if (got != cases[i].want) {
            ok = false;
            printf("  bf16(%s) = 0x%04x, want 0x%04x\n", cases[i].what, got, cases[i].want);
        }
    }
    check(ok, "safetensors bf16 special values (±0, inf, ties, overflow, subnormals)");

    uint32_t nans[] = {0x7fc00000, 0xffc00001, 0x7f800001, 0x7fa00000, 0xff800100};
    ok = true;
    for (size_t i = 0; i < sizeof nans / sizeof *nans; i++) {
        uint16_t h = mmm_f32_to_bf16(u2f(nans[i]));
        ok &= isnan(mmm_bf16_to_f32(h)) && (h & 0x8000) == ((nans[i] >> 16) & 0x8000);
    }
    check(ok, "safetensors bf16 keeps NaN (signalling, low-payload) a NaN with its sign");

    ok = true;
    for (uint32_t h = 0; h < 65536; h++) {
        float x = mmm_bf16_to_f32((uint16_t)h);
        ok &= f2u(x) == h << 16;
        if (!isnan(x)) ok &= mmm_f32_to_bf16(x) == h;
    }
    check(ok, "safetensors bf16 all 65536 values decode exactly and re-encode to themselves");

    rng_t r = rng_new(11);
    enum { N = 200000 };
    float *x = malloc(N * sizeof *x);
    uint16_t *h = malloc(N * sizeof *h);
    for (int i = 0; i < N; i++) {
        x[i] = random_float(&r, i);
        if (isnan(x[i])) x[i] = 1.0f;
    }
    mmm_f32_to_bf16_array(h, x, N);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += h[i] != ref_bf16(x[i]);
    check(bad == 0, "safetensors bf16 rounding of %d random floats matches the float64 "
          "nearest-even reference (%d differ)", N, bad);
    free(x);
    free(h);
}

TEST(safetensors_dtype_f16) {
    const struct {
        float x;
        uint16_t want;
        const char *what;
    } cases[] = {
        {0.0f, 0x0000, "+0"},
        {-0.0f, 0x8000, "-0"},
        {1.0f, 0x3c00, "1"},
        {-2.0f, 0xc000, "-2"},
        {65504.0f, 0x7bff, "max"},
        {65519.996f, 0x7bff, "just below the overflow tie"},
        {65520.0f, 0x7c00, "overflow tie to inf"},
        {1e10f, 0x7c00, "large"},
        {INFINITY, 0x7c00, "+inf"},
        {-INFINITY, 0xfc00, "-inf"},
        {0x1p-14f, 0x0400, "least normal"},
        {0x1p-24f, 0x0001, "least subnormal"},
        {0x3ffp-24f, 0x03ff, "largest subnormal"},
        {0x1p-25f, 0x0000, "tie to even zero"},
        {0x1.000002p-25f, 0x0001, "just above the zero tie"},
        {3 * 0x1p-25f, 0x0002, "subnormal tie up"},
        {5 * 0x1p-25f, 0x0002, "subnormal tie down"},
        {0x7ffp-25f, 0x0400, "rounds up into the normals"},
        {1.0f + 0x1p-11f, 0x3c00, "tie to even (down)"},
        {1.0f + 3 * 0x1p-11f, 0x3c02, "tie to even (up)"},
        {1e-30f, 0x0000, "tiny"},
        {-1e-30f, 0x8000, "tiny negative"},
        {u2f(1), 0x0000, "fp32 subnormal"},
    };
    bool ok = true;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint16_t got = mmm_f32_to_f16(cases[i].x);
        if (got != cases[i].want) {
            ok = false;
            printf("  f16(%s) = 0x%04x, want 0x%04x\n", cases[i].what, got, cases[i].want);
        }
    }
    check(ok, "safetensors f16 special values (±0, inf, overflow, subnormals, ties)");

    uint32_t nans[] = {0x7fc00000, 0xffc00000, 0x7f800001, 0x7f801000, 0xff800002};
    ok = true;
    for (size_t i = 0; i < sizeof nans / sizeof *nans; i++) {
        uint16_t h = mmm_f32_to_f16(u2f(nans[i]));
        ok &= isnan(mmm_f16_to_f32(h)) && (h & 0x8000) == ((nans[i] >> 16) & 0x8000);
    }
    check(ok, "safetensors f16 keeps NaN a NaN with its sign");

    ok = true;
    for (uint32_t h = 0; h < 65536; h++) {
        float x = mmm_f16_to_f32((uint16_t)h);
        uint32_t e = (h >> 10) & 0x1f;
        if (e == 31) {
            ok &= (h & 0x3ff) ? isnan(x) : isinf(x);
            if (h & 0x3ff) continue;
        }
        double want = (h & 0x8000 ? -1 : 1) * f16_mag(h & 0x7fff);
        if (e == 31) want = h & 0x8000 ? -INFINITY : INFINITY;
        ok &= (double)x == want && !!signbit(x) == !!(h & 0x8000);
        ok &= mmm_f32_to_f16(x) == h;
    }
    check(ok, "safetensors f16 all 65536 values decode exactly and re-encode to themselves");

    rng_t r = rng_new(12);
    enum { N = 200000 };
    float *x = malloc(N * sizeof *x), *back = malloc(N * sizeof *back);
    uint16_t *h = malloc(N * sizeof *h);
    for (int i = 0; i < N; i++) {
        x[i] = random_float(&r, i);
        if (isnan(x[i])) x[i] = 1.0f;
    }
    mmm_f32_to_f16_array(h, x, N);
    mmm_f16_to_f32_array(back, h, N);
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += h[i] != ref_f16(x[i]) || f2u(back[i]) != f2u(mmm_f16_to_f32(h[i]));
    check(bad == 0, "safetensors f16 rounding of %d random floats matches the float64 "
          "nearest-even reference (%d differ)", N, bad);
    free(x);
    free(back);
    free(h);
}

/* ---- round trips ---- */
TEST(safetensors_round_trip) {
    rng_t r = rng_new(5);
    float f32[30], conv[12], scalar = -3.75f;
    fill_normal(&r, f32, 30, 2.0f);
    fill_normal(&r, conv, 12, 100.0f);
    conv[0] = 0x1p-20f, conv[1] = 70000.0f, conv[2] = -0.0f, conv[3] = 1.0f + 0x1p-11f;
    uint16_t f16[6] = {0x0000, 0x8000, 0x7c00, 0x0001, 0x7bff, 0x3c00};
    uint16_t bf16[4] = {0x3f80, 0xff80, 0x0001, 0x4049};
    int32_t i32[5] = {INT32_MIN, -1, 0, 1, INT32_MAX};
    int64_t i64[3] = {INT64_MIN, 5000000000LL, INT64_MAX};
    int64_t i64_small[2] = {-5, 7};
    const struct {
        const char *name;
        mmm_dtype dtype;
        int ndim;
        int64_t shape[3];
        const void *data;
    } raw[] = {
        {"a.f32", MMM_DTYPE_F32, 3, {2, 3, 5}, f32},
        {"b.f16", MMM_DTYPE_F16, 2, {2, 3}, f16},
        {"c.bf16", MMM_DTYPE_BF16, 1, {4}, bf16},
        {"d.i32", MMM_DTYPE_I32, 1, {5}, i32},
        {"e.i64", MMM_DTYPE_I64, 1, {3}, i64},
        {"f.i64_small", MMM_DTYPE_I64, 2, {1, 2}, i64_small},
        {"g.scalar", MMM_DTYPE_F32, 0, {0}, &scalar},
        {"h.empty", MMM_DTYPE_BF16, 2, {0, 3}, NULL},
    };
    enum { NRAW = sizeof raw / sizeof *raw };
    mmm_st_writer *w;
    bool ok = mmm_st_writer_new(&w) == MMM_OK;
    for (int i = 0; i < NRAW; i++)
        ok &= mmm_st_writer_add(w, raw[i].name, raw[i].dtype, raw[i].ndim, raw[i].shape,
                                raw[i].data) == MMM_OK;
    int64_t cshape[2] = {3, 4};
    ok &= mmm_st_writer_add_f32(w, "x.as_bf16", MMM_DTYPE_BF16, 2, cshape, conv) == MMM_OK;
    ok &= mmm_st_writer_add_f32(w, "y.as_f16", MMM_DTYPE_F16, 2, cshape, conv) == MMM_OK;
    ok &= mmm_st_writer_add_f32(w, "z.as_f32", MMM_DTYPE_F32, 2, cshape, conv) == MMM_OK;
    ok &= mmm_st_writer_metadata(w, "format", "old") == MMM_OK;
    ok &= mmm_st_writer_metadata(w, "format", "pt") == MMM_OK; /* replaces */
    ok &= mmm_st_writer_metadata(w, "note", "quote\" backslash\\ newline\n tab\t \x01 é") == MMM_OK;
    check(ok, "safetensors writer accepts every dtype, converted fp32 and metadata");

    check(mmm_st_writer_add(w, "a.f32", MMM_DTYPE_F32, 1, cshape, f32) == MMM_ERR_ARG &&
          strstr(mmm_last_error(), "added twice"), "safetensors writer rejects a duplicate name");
    check(mmm_st_writer_add(w, "__metadata__", MMM_DTYPE_F32, 1, cshape, f32) == MMM_ERR_ARG,
          "safetensors writer rejects the name __metadata__");
    check(mmm_st_writer_add_f32(w, "q", MMM_DTYPE_I32, 1, cshape, f32) == MMM_ERR_ARG,
          "safetensors writer rejects fp32 stored as I32");
    int64_t neg[1] = {-2};
    check(mmm_st_writer_add(w, "q", MMM_DTYPE_F32, 1, neg, f32) == MMM_ERR_ARG,
          "safetensors writer rejects a negative dimension");

    const char *path = tpath("round_trip.safetensors");
    write_bytes(path, "old contents", 12);
    struct stat before, after;
    stat(path, &before);
    int rc = mmm_st_writer_save(w, path);
    check(rc == MMM_OK, "safetensors save%s", why(rc));
    stat(path, &after);
    check(before.st_ino != after.st_ino && no_temp_files(tmp_dir()),
          "safetensors save replaces the file by rename and leaves no temporary file");
    size_t flen = 0;
    unsigned char *bytes = read_all(path, &flen);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | bytes[i];
    check(hlen % 8 == 0 && 8 + hlen <= flen,
          "safetensors header padded to a multiple of 8 (%llu bytes)", (unsigned long long)hlen);
    free(bytes);

    mmm_st_file *f = NULL;
    rc = mmm_st_open(&f, path);
    check(rc == MMM_OK, "safetensors open round trip%s", why(rc));
    if (rc) {
        mmm_st_writer_free(w);
        return;
    }
    check(mmm_st_count(f) == NRAW + 3, "safetensors round trip tensor count");
    const char *dnames[MMM_DTYPE_COUNT] = {"F32", "F16", "BF16", "I32", "I64"};
    for (int i = 0; i < NRAW; i++) {
        const mmm_st_tensor *t = mmm_st_find(f, raw[i].name);
        bool same = t && t->dtype == raw[i].dtype && t->ndim == raw[i].ndim;
        size_t numel = 1;
        for (int d = 0; same && d < raw[i].ndim; d++) {
            same &= t->shape[d] == raw[i].shape[d];
            numel *= (size_t)raw[i].shape[d];
        }
        size_t nbytes = numel * mmm_dtype_size(raw[i].dtype);
        same &= same && t->numel == numel && t->nbytes == nbytes &&
                (nbytes == 0 || memcmp(t->data, raw[i].data, nbytes) == 0) &&
                (uintptr_t)t->data % mmm_dtype_size(t->dtype) == 0;
        check(same, "safetensors round trip %s %s (shape, bytes, aligned data)",
              dnames[raw[i].dtype], raw[i].name);
    }
    check(mmm_st_find(f, "nope") == NULL, "safetensors find of a missing name is NULL");
    check(mmm_st_metadata(f, "format") && strcmp(mmm_st_metadata(f, "format"), "pt") == 0 &&
          mmm_st_metadata(f, "note") &&
          strcmp(mmm_st_metadata(f, "note"), "quote\" backslash\\ newline\n tab\t \x01 é") == 0 &&
          mmm_st_metadata(f, "missing") == NULL,
          "safetensors round trip metadata (escapes, UTF-8, replaced key)");

    /* data order is the official layout: I64, F32, I32, BF16, F16, each by name */
    const char *order[] = {"e.i64", "f.i64_small", "a.f32", "g.scalar", "z.as_f32", "d.i32",
                           "c.bf16", "h.empty", "x.as_bf16", "b.f16", "y.as_f16"};
    ok = true;
    for (size_t i = 0; i < mmm_st_count(f); i++)
        ok &= strcmp(mmm_st_tensor_at(f, i)->name, order[i]) == 0;
    check(ok, "safetensors writer orders tensors by dtype alignment then name");

    /* converted on write, and reads that convert */
    float got[12], want[12];
    uint16_t got16[12];
    const mmm_st_tensor *xb = mmm_st_find(f, "x.as_bf16"), *yh = mmm_st_find(f, "y.as_f16"),
                        *zf = mmm_st_find(f, "z.as_f32");
    ok = xb && xb->dtype == MMM_DTYPE_BF16 && mmm_st_read_f32(xb, got, 12) == MMM_OK;
    for (int i = 0; ok && i < 12; i++) want[i] = mmm_bf16_to_f32(mmm_f32_to_bf16(conv[i]));
    check(ok && memcmp(got, want, sizeof got) == 0,
          "safetensors round trip fp32 -> BF16 -> read_f32");
    ok = yh && yh->dtype == MMM_DTYPE_F16 && mmm_st_read_f32(yh, got, 12) == MMM_OK;
    for (int i = 0; ok && i < 12; i++) want[i] = mmm_f16_to_f32(mmm_f32_to_f16(conv[i]));
    check(ok && memcmp(got, want, sizeof got) == 0 && isinf(got[1]),
          "safetensors round trip fp32 -> F16 -> read_f32 (70000 became inf)");
    ok = zf && mmm_st_read_f32(zf, got, 12) == MMM_OK;
    check(ok && memcmp(got, conv, sizeof got) == 0,
          "safetensors round trip fp32 -> F32 -> read_f32");
    ok = zf && mmm_st_read_bf16(zf, got16, 12) == MMM_OK;
    for (int i = 0; ok && i < 12; i++) ok &= got16[i] == mmm_f32_to_bf16(conv[i]);
    check(ok, "safetensors read_bf16 of F32 rounds to bf16");
    ok = yh && mmm_st_read_bf16(yh, got16, 12) == MMM_OK;
    for (int i = 0; ok && i < 12; i++)
        ok &= got16[i] == mmm_f32_to_bf16(mmm_f16_to_f32(mmm_f32_to_f16(conv[i])));
    check(ok, "safetensors read_bf16 of F16 rounds once to bf16");
    ok = xb && mmm_st_read_bf16(xb, got16, 12) == MMM_OK;
    for (int i = 0; ok && i < 12; i++) ok &= got16[i] == mmm_f32_to_bf16(conv[i]);
    check(ok, "safetensors read_bf16 of BF16 keeps the bits");

    int64_t l[5];
    int32_t s[5];
    ok = mmm_st_read_i64(mmm_st_find(f, "d.i32"), l, 5) == MMM_OK;
    for (int i = 0; ok && i < 5; i++) ok &= l[i] == i32[i];
    check(ok, "safetensors read_i64 of I32 sign-extends");
    ok = mmm_st_read_i32(mmm_st_find(f, "f.i64_small"), s, 2) == MMM_OK && s[0] == -5 && s[1] == 7;
    check(ok, "safetensors read_i32 of I64 in range");
    rc = mmm_st_read_i32(mmm_st_find(f, "e.i64"), s, 3);
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "does not fit in int32") &&
          strstr(mmm_last_error(), "e.i64"), "safetensors read_i32 of I64 out of range fails [%s]",
          mmm_last_error());
    ok = mmm_st_read_i32(mmm_st_find(f, "d.i32"), s, 5) == MMM_OK && memcmp(s, i32, sizeof s) == 0;
    ok &= mmm_st_read_i64(mmm_st_find(f, "e.i64"), l, 3) == MMM_OK && memcmp(l, i64, 3 * 8) == 0;
    check(ok, "safetensors read_i32 / read_i64 of their own dtype");
    ok = mmm_st_read_f32(mmm_st_find(f, "g.scalar"), got, 1) == MMM_OK && got[0] == scalar;
    ok &= mmm_st_read_bf16(mmm_st_find(f, "h.empty"), NULL, 0) == MMM_OK;
    check(ok, "safetensors read of a scalar and of an empty tensor");

    /* read errors */
    rc = mmm_st_read_f32(zf, got, 11);
    check(rc == MMM_ERR_ARG && strstr(mmm_last_error(), "has 12 elements but the destination "
          "holds 11"), "safetensors read_f32 checks the count [%s]", mmm_last_error());
    rc = mmm_st_read_f32(mmm_st_find(f, "d.i32"), got, 5);
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "is I32, expected a float dtype"),
          "safetensors read_f32 of I32 fails [%s]", mmm_last_error());
    rc = mmm_st_read_i64(zf, l, 12);
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "is F32, expected an integer dtype"),
          "safetensors read_i64 of F32 fails [%s]", mmm_last_error());
    int64_t good[2] = {3, 4}, bad[2] = {4, 3};
    check(mmm_st_check_shape(zf, 2, good) == MMM_OK, "safetensors check_shape accepts [3, 4]");
    rc = mmm_st_check_shape(zf, 2, bad);
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "'z.as_f32' has shape [3, 4], "
          "expected [4, 3]"), "safetensors check_shape rejects [4, 3] [%s]", mmm_last_error());
    mmm_st_close(f);
    mmm_st_writer_free(w);

    mmm_st_writer *empty;
    mmm_st_writer_new(&empty);
    const char *epath = tpath("empty.safetensors");
    ok = mmm_st_writer_save(empty, epath) == MMM_OK;
    bytes = read_all(epath, &flen);
    ok &= flen == 16 && memcmp(bytes, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0;
    free(bytes);
    ok &= mmm_st_open(&f, epath) == MMM_OK && mmm_st_count(f) == 0;
    mmm_st_close(f);
    check(ok, "safetensors empty file is the official 16 bytes and reads back");
    rc = mmm_st_writer_save(empty, "/nonexistent_dir_mmm/x.safetensors");
    check(rc == MMM_ERR_IO && strstr(mmm_last_error(), "/nonexistent_dir_mmm/x.safetensors"),
          "safetensors save into a missing directory fails [%s]", mmm_last_error());
    mmm_st_writer_free(empty);
}

/* A hand-made file whose odd header length leaves every tensor misaligned in the mapping. */
TEST(safetensors_misaligned_read) {
    const char *json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                       "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[12,18]},"
                       "\"c\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[18,24]}} ";
    size_t hlen = strlen(json);
    if (hlen % 2 == 0) hlen--; /* drop the trailing space to make it odd */
    unsigned char buf[512] = {0};
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, json, hlen);
    float a[3] = {1.5f, -2.25f, 1e-3f}, b[3] = {3.0f, -0.5f, 1e5f}, c[3] = {0.5f, -65504.0f, 6e-8f};
    uint16_t b16[3], c16[3];
    mmm_f32_to_bf16_array(b16, b, 3);
    mmm_f32_to_f16_array(c16, c, 3);
    memcpy(buf + 8 + hlen, a, 12);
    memcpy(buf + 8 + hlen + 12, b16, 6);
    memcpy(buf + 8 + hlen + 18, c16, 6);
    const char *path = tpath("misaligned.safetensors");
    write_bytes(path, buf, 8 + hlen + 24);
    mmm_st_file *f = NULL;
    bool ok = mmm_st_open(&f, path) == MMM_OK;
    float got[3];
    uint16_t g16[3];
    ok = ok && mmm_st_read_f32(mmm_st_find(f, "a"), got, 3) == MMM_OK && memcmp(got, a, 12) == 0;
    ok = ok && mmm_st_read_f32(mmm_st_find(f, "b"), got, 3) == MMM_OK;
    for (int i = 0; ok && i < 3; i++) ok &= got[i] == mmm_bf16_to_f32(b16[i]);
    ok = ok && mmm_st_read_f32(mmm_st_find(f, "c"), got, 3) == MMM_OK;
    for (int i = 0; ok && i < 3; i++) ok &= got[i] == mmm_f16_to_f32(c16[i]);
    ok = ok && mmm_st_read_bf16(mmm_st_find(f, "a"), g16, 3) == MMM_OK;
    for (int i = 0; ok && i < 3; i++) ok &= g16[i] == mmm_f32_to_bf16(a[i]);
    ok = ok && mmm_st_read_bf16(mmm_st_find(f, "c"), g16, 3) == MMM_OK;
    for (int i = 0; ok && i < 3; i++) ok &= g16[i] == mmm_f32_to_bf16(mmm_f16_to_f32(c16[i]));
    check(ok, "safetensors reads misaligned F32/BF16/F16 data (odd header length %zu)", hlen);
    mmm_st_close(f);
}

/* ---- fixtures from the independent Python writer ---- */
static const float fx_f32[6] = {0.0f, 1.0f, -2.5f, 3.25f, 1024.0f, -0.125f};
static const float fx_f16[4] = {1.0f, -2.0f, 0.5f, 65504.0f};
static const float fx_bf16[4] = {1.0f, -1.5f, 3.0f, 0.0078125f};
static const int32_t fx_i32[3] = {-7, 0, 2147483647};
static const int64_t fx_i64[2] = {-9000000000LL, 42};
static const float fx_scalar = 7.5f;

TEST(safetensors_fixture_basic) {
    const char *path = FIXTURES "/basic.safetensors";
    mmm_st_file *f = NULL;
    int rc = mmm_st_open(&f, path);
    check(rc == MMM_OK, "safetensors fixture basic opens%s", why(rc));
    if (rc) return;
    float g[6];
    int32_t i32[3];
    int64_t i64[2];
    const mmm_st_tensor *t;
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s22[2] = {2, 2}, s3[1] = {3}, s2[1] = {2},
            s04[2] = {0, 4};
    bool ok = (t = mmm_st_find(f, "f32")) && t->dtype == MMM_DTYPE_F32 &&
              mmm_st_check_shape(t, 2, s23) == MMM_OK && mmm_st_read_f32(t, g, 6) == MMM_OK &&
              memcmp(g, fx_f32, sizeof fx_f32) == 0;
    check(ok, "safetensors fixture F32 values");
    ok = (t = mmm_st_find(f, "f16")) && t->dtype == MMM_DTYPE_F16 &&
         mmm_st_check_shape(t, 1, s4) == MMM_OK && mmm_st_read_f32(t, g, 4) == MMM_OK &&
         memcmp(g, fx_f16, sizeof fx_f16) == 0;
    check(ok, "safetensors fixture F16 values");
    ok = (t = mmm_st_find(f, "bf16")) && t->dtype == MMM_DTYPE_BF16 &&
         mmm_st_check_shape(t, 2, s22) == MMM_OK && mmm_st_read_f32(t, g, 4) == MMM_OK &&
         memcmp(g, fx_bf16, sizeof fx_bf16) == 0;
    check(ok, "safetensors fixture BF16 values");
    ok = (t = mmm_st_find(f, "i32")) && t->dtype == MMM_DTYPE_I32 &&
         mmm_st_check_shape(t, 1, s3) == MMM_OK && mmm_st_read_i32(t, i32, 3) == MMM_OK &&
         memcmp(i32, fx_i32, sizeof fx_i32) == 0;
    check(ok, "safetensors fixture I32 values");
    ok = (t = mmm_st_find(f, "i64")) && t->dtype == MMM_DTYPE_I64 &&
         mmm_st_check_shape(t, 1, s2) == MMM_OK && mmm_st_read_i64(t, i64, 2) == MMM_OK &&
         memcmp(i64, fx_i64, sizeof fx_i64) == 0;
    check(ok, "safetensors fixture I64 values");
    ok = (t = mmm_st_find(f, "scalar")) && t->ndim == 0 && t->numel == 1 &&
         mmm_st_read_f32(t, g, 1) == MMM_OK && g[0] == fx_scalar;
    ok &= (t = mmm_st_find(f, "empty")) && mmm_st_check_shape(t, 2, s04) == MMM_OK && t->numel == 0;
    check(ok, "safetensors fixture scalar and empty tensors");
    ok = mmm_st_metadata(f, "format") && strcmp(mmm_st_metadata(f, "format"), "pt") == 0 &&
         mmm_st_count(f) == 7;
    check(ok, "safetensors fixture metadata");
    mmm_st_close(f);

    /* the same tensors through our writer, added in another order, give the same bytes */
    uint16_t f16[4];
    mmm_f32_to_f16_array(f16, fx_f16, 4);
    mmm_st_writer *w;
    mmm_st_writer_new(&w);
    ok = mmm_st_writer_add(w, "empty", MMM_DTYPE_F32, 2, s04, NULL) == MMM_OK;
    ok &= mmm_st_writer_add(w, "scalar", MMM_DTYPE_F32, 0, NULL, &fx_scalar) == MMM_OK;
    ok &= mmm_st_writer_add(w, "i64", MMM_DTYPE_I64, 1, s2, fx_i64) == MMM_OK;
    ok &= mmm_st_writer_add(w, "i32", MMM_DTYPE_I32, 1, s3, fx_i32) == MMM_OK;
    ok &= mmm_st_writer_add_f32(w, "bf16", MMM_DTYPE_BF16, 2, s22, fx_bf16) == MMM_OK;
    ok &= mmm_st_writer_add(w, "f16", MMM_DTYPE_F16, 1, s4, f16) == MMM_OK;
    ok &= mmm_st_writer_add_f32(w, "f32", MMM_DTYPE_F32, 2, s23, fx_f32) == MMM_OK;
    ok &= mmm_st_writer_metadata(w, "format", "pt") == MMM_OK;
    const char *mine = tpath("basic_mine.safetensors");
    ok &= mmm_st_writer_save(w, mine) == MMM_OK;
    check(ok && files_equal(mine, path),
          "safetensors writer matches the reference layout byte for byte");
    mmm_st_writer_free(w);
}

/* The tensors of tests/data/safetensors/sharded, in the script's insertion order. */
static void add_sharded_fixture(mmm_st_writer *w) {
    static const float w0[6] = {0, 1, 2, 3, 4, 5}, b0[3] = {0.5f, -0.5f, 1.5f};
    static const float w1[6] = {0, -1, -2, -3, -4, -5}, b1[3] = {0.25f, 0.75f, -8.0f};
    static const float norm[5] = {1, 1, 1, 1, 1};
    static const int64_t step[1] = {123};
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s5[1] = {5}, s1[1] = {1};
    mmm_st_writer_add_f32(w, "layers.0.w", MMM_DTYPE_F32, 2, s23, w0);
    mmm_st_writer_add_f32(w, "layers.0.b", MMM_DTYPE_F32, 1, s3, b0);
    mmm_st_writer_add_f32(w, "layers.1.w", MMM_DTYPE_BF16, 2, s23, w1);
    mmm_st_writer_add_f32(w, "layers.1.b", MMM_DTYPE_F16, 1, s3, b1);
    mmm_st_writer_add_f32(w, "norm", MMM_DTYPE_F32, 1, s5, norm);
    mmm_st_writer_add(w, "step", MMM_DTYPE_I64, 1, s1, step);
    mmm_st_writer_metadata(w, "format", "pt");
}

TEST(safetensors_fixture_sharded) {
    mmm_st_model *m = NULL;
    int rc = mmm_st_open_model(&m, FIXTURES "/sharded");
    check(rc == MMM_OK, "safetensors fixture sharded opens%s", why(rc));
    if (rc) return;
    const char *names[] = {"layers.0.b", "layers.0.w", "layers.1.b", "layers.1.w", "norm", "step"};
    bool ok = mmm_st_model_count(m) == 6;
    for (size_t i = 0; ok && i < 6; i++)
        ok &= strcmp(mmm_st_model_tensor_at(m, i)->name, names[i]) == 0;
    check(ok, "safetensors fixture sharded lists its 6 tensors by name");
    const mmm_st_tensor *t;
    float g[6];
    int64_t step;
    ok = mmm_st_model_get(m, "layers.1.w", &t) == MMM_OK && mmm_st_read_f32(t, g, 6) == MMM_OK &&
         g[0] == 0 && g[5] == -5 && strstr(t->file, "model-00002-of-00003.safetensors");
    ok &= mmm_st_model_get(m, "layers.1.b", &t) == MMM_OK && mmm_st_read_f32(t, g, 3) == MMM_OK &&
          g[2] == -8.0f;
    ok &=
        (t = mmm_st_model_find(m, "step")) && mmm_st_read_i64(t, &step, 1) == MMM_OK && step == 123;
    ok &= strcmp(mmm_st_model_metadata(m, "format"), "pt") == 0;
    check(ok, "safetensors fixture sharded values across shards");
    rc = mmm_st_model_get(m, "layers.2.w", &t);
    check(rc == MMM_ERR_NOT_FOUND && strstr(mmm_last_error(), "no tensor 'layers.2.w'") &&
          strstr(mmm_last_error(), "sharded"), "safetensors model_get of a missing tensor [%s]",
          mmm_last_error());
    mmm_st_close_model(m);
    ok = mmm_st_open_model(&m, FIXTURES "/sharded/model.safetensors.index.json") == MMM_OK &&
         mmm_st_model_count(m) == 6;
    mmm_st_close_model(m);
    check(ok, "safetensors open_model from the index path");

    mmm_st_writer *w;
    mmm_st_writer_new(&w);
    add_sharded_fixture(w);
    const char *dir = tpath("sharded_mine");
    ok = mmm_st_writer_save_sharded(w, dir, 32) == MMM_OK;
    const char *files[] = {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                           "model-00003-of-00003.safetensors", "model.safetensors.index.json"};
    for (int i = 0; i < 4; i++) {
        char a[512], b[512];
        snprintf(a, sizeof a, "%s/%s", dir, files[i]);
        snprintf(b, sizeof b, FIXTURES "/sharded/%s", files[i]);
        ok &= files_equal(a, b);
    }
    check(ok, "safetensors sharded writer matches the reference shards and index byte for byte");
    mmm_st_writer_free(w);
}

TEST(safetensors_sharded_round_trip) {
    rng_t r = rng_new(9);
    enum { NT = 12 };
    float *data[NT];
    int64_t shapes[NT][2];
    mmm_st_writer *w;
    mmm_st_writer_new(&w);
    mmm_st_writer_metadata(w, "format", "pt");
    const mmm_dtype kinds[3] = {MMM_DTYPE_F32, MMM_DTYPE_BF16, MMM_DTYPE_F16};
    for (int i = 0; i < NT; i++) {
        shapes[i][0] = 1 + i % 5, shapes[i][1] = 7 + 3 * i;
        size_t n = (size_t)(shapes[i][0] * shapes[i][1]);
        data[i] = malloc(n * sizeof(float));
        fill_normal(&r, data[i], n, 1.0f);
        char name[32];
        snprintf(name, sizeof name, "blk.%02d.weight", NT - i); /* names not in insertion order */
        mmm_st_writer_add_f32(w, name, kinds[i % 3], 2, shapes[i], data[i]);
    }
    const char *dir = tpath("sharded_rt");
    bool ok = mmm_st_writer_save_sharded(w, dir, 400) == MMM_OK;
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    ok &= exists(p);
    int shards = 0;
    for (int i = 1; i <= NT; i++) {
        snprintf(p, sizeof p, "%s/model-%05d-of-%05d.safetensors", dir, 1, i);
        if (exists(p)) shards = i;
    }
    check(ok && shards > 2 && no_temp_files(dir),
          "safetensors sharded save wrote %d shards + index", shards);

    for (int pass = 0; pass < 2; pass++) {
        mmm_st_model *m = NULL;
        int rc = mmm_st_open_model(&m, dir);
        ok = rc == MMM_OK && mmm_st_model_count(m) == NT;
        for (int i = 0; ok && i < NT; i++) {
            char name[32];
            snprintf(name, sizeof name, "blk.%02d.weight", NT - i);
            const mmm_st_tensor *t = mmm_st_model_find(m, name);
            size_t n = (size_t)(shapes[i][0] * shapes[i][1]);
            float *got = malloc(n * sizeof *got);
            ok &= t && t->dtype == kinds[i % 3] && mmm_st_check_shape(t, 2, shapes[i]) == MMM_OK &&
                  mmm_st_read_f32(t, got, n) == MMM_OK;
            for (size_t k = 0; ok && k < n; k++) {
                float want = kinds[i % 3] == MMM_DTYPE_F32 ? data[i][k]
                             : kinds[i % 3] == MMM_DTYPE_BF16
                                 ? mmm_bf16_to_f32(mmm_f32_to_bf16(data[i][k]))
                                 : mmm_f16_to_f32(mmm_f32_to_f16(data[i][k]));
                ok &= got[k] == want;
            }
            free(got);
        }
        ok &= rc == MMM_OK && strcmp(mmm_st_model_metadata(m, "format"), "pt") == 0;
        check(ok, "safetensors sharded round trip (%s) reads every tensor back%s",
              pass ? "single file" : "sharded", why(rc));
        mmm_st_close_model(m);
        if (pass == 0) { /* the same directory again, unsharded: the index must go */
            ok = mmm_st_writer_save_sharded(w, dir, 0) == MMM_OK;
            snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
            ok &= !exists(p);
            snprintf(p, sizeof p, "%s/model.safetensors", dir);
            ok &= exists(p);
            check(ok, "safetensors unsharded save writes model.safetensors and drops the index");
        }
    }
    ok = mmm_st_writer_save_sharded(w, dir, 400) == MMM_OK;
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    ok &= !exists(p);
    mmm_st_model *m = NULL;
    ok &= mmm_st_open_model(&m, dir) == MMM_OK && mmm_st_model_count(m) == NT;
    mmm_st_close_model(m);
    check(ok, "safetensors sharded save over a single file drops model.safetensors");
    for (int i = 0; i < NT; i++) free(data[i]);
    mmm_st_writer_free(w);
}

/* ---- malformed files ---- */
#define TENSOR(name, dtype, shape, offsets) \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offsets "}"

TEST(safetensors_reject_malformed) {
    const char *p;

    p = tpath("short.safetensors");
    write_bytes(p, "\x10\0\0\0\0", 5);
    expect_reject("file shorter than 8 bytes", p, MMM_ERR_FORMAT,
                  "5 bytes, shorter than the 8-byte");

    unsigned char big[16] = {0x00, 0xc2, 0xeb, 0x0b, 0, 0, 0, 0, '{', '}'}; /* 200000000 */
    p = tpath("absurd.safetensors");
    write_bytes(p, big, 16);
    expect_reject("absurd header length", p, MMM_ERR_FORMAT, "header length 200000000 is absurd");

    unsigned char past[12] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    p = tpath("past.safetensors");
    write_bytes(p, past, 12);
    expect_reject("header length past the end", p, MMM_ERR_FORMAT,
                  "header length 100 runs past the end of the 12-byte file");

    p = tpath("utf8.safetensors");
    write_st(p, "{\"w\xff\":{}}", 0);
    expect_reject("header not UTF-8", p, MMM_ERR_FORMAT,
                  "header is not valid UTF-8 (at header byte 3)");

    p = tpath("overlong.safetensors");
    write_st(p, "{\"\xc0\xaf\":{}}", 0);
    expect_reject("overlong UTF-8", p, MMM_ERR_FORMAT, "not valid UTF-8");

    unsigned char nul[24] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, ' ', ' ', ' ', ' ', ' '};
    p = tpath("nul.safetensors");
    write_bytes(p, nul, 16);
    expect_reject("NUL byte in the header", p, MMM_ERR_FORMAT, "NUL byte at header byte 2");

    p = tpath("json.safetensors");
    write_st(p, "{\"w\": {\"dtype\": ", 0);
    expect_reject("header not JSON", p, MMM_ERR_FORMAT, "header: not valid JSON");

    p = tpath("trailing_json.safetensors");
    write_st(p, "{} {}", 0);
    expect_reject("JSON with trailing garbage", p, MMM_ERR_FORMAT, "header: not valid JSON");

    p = tpath("array.safetensors");
    write_st(p, "[1, 2]  ", 0);
    expect_reject("header not an object", p, MMM_ERR_FORMAT, "header is not a JSON object");

    p = tpath("entry.safetensors");
    write_st(p, "{\"w\": 3}", 0);
    expect_reject("tensor entry not an object", p, MMM_ERR_FORMAT,
                  "tensor 'w': entry is not an object");

    p = tpath("nodtype.safetensors");
    write_st(p, "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    expect_reject("missing dtype", p, MMM_ERR_FORMAT, "tensor 'w': missing \"dtype\"");

    p = tpath("noshape.safetensors");
    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4);
    expect_reject("missing shape", p, MMM_ERR_FORMAT, "tensor 'w': missing \"shape\"");

    p = tpath("nooffsets.safetensors");
    write_st(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4);
    expect_reject("missing data_offsets", p, MMM_ERR_FORMAT,
                  "tensor 'w': missing \"data_offsets\"");

    p = tpath("twice_field.safetensors");
    write_st(
        p, "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    expect_reject("a field given twice", p, MMM_ERR_FORMAT, "tensor 'w': \"dtype\" appears twice");

    p = tpath("dtype_type.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[1]", "[0,4]") ",\"v\":{\"dtype\":32,\"shape\":[1],"
             "\"data_offsets\":[4,8]}}", 8);
    expect_reject("dtype not a string", p, MMM_ERR_FORMAT, "tensor 'v': \"dtype\" is not a string");

    p = tpath("unknown_dtype.safetensors");
    write_st(p, "{" TENSOR("w", "F33", "[1]", "[0,4]") "}", 4);
    expect_reject("unknown dtype", p, MMM_ERR_FORMAT, "tensor 'w': unknown dtype 'F33'");

    p = tpath("f64.safetensors");
    write_st(p, "{" TENSOR("w", "F64", "[1]", "[0,8]") "}", 8);
    expect_reject("unsupported dtype F64", p, MMM_ERR_UNSUPPORTED,
                  "tensor 'w': unsupported dtype 'F64'");

    p = tpath("shape_type.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "\"2x2\"", "[0,16]") "}", 16);
    expect_reject("shape not an array", p, MMM_ERR_FORMAT, "tensor 'w': \"shape\" is not an array");

    p = tpath("shape_str.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[2,\"2\"]", "[0,16]") "}", 16);
    expect_reject("shape entry not a number", p, MMM_ERR_FORMAT,
                  "tensor 'w': shape[1] is not a number");

    p = tpath("negative.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[2,-1]", "[0,8]") "}", 8);
    expect_reject("negative dimension", p, MMM_ERR_FORMAT, "tensor 'w': shape[1] is negative");

    p = tpath("fraction.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[1.5]", "[0,4]") "}", 4);
    expect_reject("non-integer dimension", p, MMM_ERR_FORMAT,
                  "tensor 'w': shape[0] is not an integer");

    p = tpath("rank.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4);
    expect_reject("rank above 8", p, MMM_ERR_FORMAT, "tensor 'w': shape has rank 9, more than 8");

    p = tpath("overflow.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[4294967296,4294967296]", "[0,4]") "}", 4);
    expect_reject("numel x size overflow", p, MMM_ERR_FORMAT,
                  "tensor 'w': F32 shape [4294967296, 4294967296] overflows");

    p = tpath("overflow_bytes.safetensors");
    write_st(p, "{" TENSOR("w", "I64", "[4294967296,536870912]", "[0,4]") "}", 4);
    expect_reject("byte size overflow", p, MMM_ERR_FORMAT, "tensor 'w': I64 shape");

    p = tpath("length.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[2,2]", "[0,12]") "}", 12);
    expect_reject("byte length != numel x size", p, MMM_ERR_FORMAT,
                  "tensor 'w': data_offsets [0, 12] hold 12 bytes but F32 shape [2, 2] needs 16");

    p = tpath("begin_end.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[0]", "[8,4]") "}", 8);
    expect_reject("begin > end", p, MMM_ERR_FORMAT,
                  "tensor 'w': data_offsets [8, 4] begin after they end");

    p = tpath("offsets_count.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[1]", "[0,4,8]") "}", 4);
    expect_reject("data_offsets of 3 entries", p, MMM_ERR_FORMAT,
                  "\"data_offsets\" has 3 entries, not 2");

    p = tpath("offsets_type.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[1]", "{\"a\":0}") "}", 4);
    expect_reject("data_offsets not an array", p, MMM_ERR_FORMAT,
                  "\"data_offsets\" is not an array");

    p = tpath("offsets_frac.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[1]", "[0.5,4.5]") "}", 4);
    expect_reject("non-integer offset", p, MMM_ERR_FORMAT,
                  "tensor 'w': data_offsets[0] is not an integer");

    p = tpath("offsets_neg.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[1]", "[-4,0]") "}", 4);
    expect_reject("negative offset", p, MMM_ERR_FORMAT, "tensor 'w': data_offsets[0] is negative");

    p = tpath("offsets_huge.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[0]", "[1e300,1e300]") "}", 4);
    expect_reject("offset beyond 2^53", p, MMM_ERR_FORMAT, "data_offsets[0] is too large");

    p = tpath("beyond.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[4]", "[0,16]") "}", 8);
    expect_reject("offsets beyond the data area", p, MMM_ERR_FORMAT,
                  "tensor 'w': data_offsets [0, 16] reach past the end of the 8-byte data area");

    p = tpath("overlap.safetensors");
    write_st(p, "{" TENSOR("a", "F32", "[2]", "[0,8]") "," TENSOR("b", "F32", "[2]", "[4,12]") "}",
             12);
    expect_reject("overlapping tensors", p, MMM_ERR_FORMAT,
                  "tensors 'a' [0, 8] and 'b' [4, 12] overlap");

    p = tpath("overlap_empty.safetensors");
    write_st(p, "{" TENSOR("a", "F32", "[2]", "[0,8]") "," TENSOR("z", "F32", "[0]", "[4,4]") "}",
             8);
    expect_reject("empty tensor inside another", p, MMM_ERR_FORMAT,
                  "'a' [0, 8] and 'z' [4, 4] overlap");

    p = tpath("gap.safetensors");
    write_st(p, "{" TENSOR("a", "F32", "[1]", "[0,4]") "," TENSOR("b", "F32", "[1]", "[8,12]") "}",
             12);
    expect_reject("gap between tensors", p, MMM_ERR_FORMAT,
                  "data bytes [4, 8) before tensor 'b' belong to no tensor");

    p = tpath("lead_gap.safetensors");
    write_st(p, "{" TENSOR("a", "F32", "[1]", "[4,8]") "}", 8);
    expect_reject("gap before the first tensor", p, MMM_ERR_FORMAT,
                  "data bytes [0, 4) before tensor 'a' belong to no tensor");

    p = tpath("tail.safetensors");
    write_st(p, "{" TENSOR("a", "F32", "[1]", "[0,4]") "}", 12);
    expect_reject("bytes after the last tensor", p, MMM_ERR_FORMAT,
                  "data bytes [4, 12) after the last tensor belong to no tensor");

    p = tpath("dup.safetensors");
    write_st(p, "{" TENSOR("w", "F32", "[1]", "[0,4]") "," TENSOR("w", "F32", "[1]", "[4,8]") "}",
             8);
    expect_reject("duplicate tensor name", p, MMM_ERR_FORMAT,
                  "tensor 'w' appears twice in the header");

    p = tpath("meta_type.safetensors");
    write_st(p, "{\"__metadata__\":[\"pt\"]," TENSOR("w", "F32", "[1]", "[0,4]") "}", 4);
    expect_reject("__metadata__ not an object", p, MMM_ERR_FORMAT, "__metadata__ is not an object");

    p = tpath("meta_value.safetensors");
    write_st(
        p,
        "{\"__metadata__\":{\"format\":\"pt\",\"step\":3}," TENSOR("w", "F32", "[1]", "[0,4]") "}",
        4);
    expect_reject("__metadata__ value not a string", p, MMM_ERR_FORMAT,
                  "__metadata__ value of 'step' is not a string");

    p = tpath("meta_twice.safetensors");
    write_st(p, "{\"__metadata__\":{},\"__metadata__\":{}}", 0);
    expect_reject("__metadata__ twice", p, MMM_ERR_FORMAT, "__metadata__ appears twice");

    p = tpath("meta_key_twice.safetensors");
    write_st(p, "{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0);
    expect_reject("__metadata__ key twice", p, MMM_ERR_FORMAT,
                  "__metadata__ key 'a' appears twice");

    expect_reject("a directory", tmp_dir(), MMM_ERR_IO, "is a directory, expected a regular file");
    p = tpath("does_not_exist.safetensors");
    expect_reject("a missing file", p, MMM_ERR_NOT_FOUND, "cannot open");

    /* the format's own corner cases that must pass: unpadded header, empty tensors at the end,
     * zero-size tensors sharing an offset, extra keys in an entry */
    p = tpath("corner.safetensors");
    write_st(p, "{" TENSOR("a", "F32", "[1]", "[0,4]") "," TENSOR("e", "F32", "[0,3]", "[4,4]") ","
             TENSOR("f", "I64", "[0]", "[4,4]") ",\"g\":{\"dtype\":\"F16\",\"shape\":[2],"
             "\"data_offsets\":[4,8],\"extra\":[1]}}", 8);
    mmm_st_file *f = NULL;
    int rc = mmm_st_open(&f, p);
    check(rc == MMM_OK && mmm_st_count(f) == 4 && mmm_st_metadata(f, "x") == NULL,
          "safetensors accepts unpadded header, zero-size tensors, extra entry keys%s",
          why(rc));
    mmm_st_close(f);
}

/* ---- malformed model directories and indexes ---- */
static void make_shard(const char *dir, const char *name, const char *const *tensors, int n) {
    static const float v[2] = {1, 2};
    int64_t shape[1] = {2};
    mmm_st_writer *w;
    mmm_st_writer_new(&w);
    for (int i = 0; i < n; i++) mmm_st_writer_add_f32(w, tensors[i], MMM_DTYPE_F32, 1, shape, v);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mmm_st_writer_save(w, path);
    mmm_st_writer_free(w);
}

static const char *write_index(const char *dir, const char *json) {
    static char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    write_bytes(path, json, strlen(json));
    return path;
}

TEST(safetensors_reject_bad_index) {
    const char *dir = tpath("badidx");
    mkdir(dir, 0777);
    const char *ab[] = {"a", "b"}, *c[] = {"c"}, *ac[] = {"a", "c"};
    make_shard(dir, "s1.safetensors", ab, 2);
    make_shard(dir, "s2.safetensors", c, 1);
    make_shard(dir, "s3.safetensors", ac, 2);
    write_bytes(tpath("badidx/broken.safetensors"), "{}", 2);

    write_index(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                "\"c\":\"s2.safetensors\"}}");
    mmm_st_model *m = NULL;
    int rc = mmm_st_open_model(&m, dir);
    check(rc == MMM_OK && mmm_st_model_count(m) == 3, "safetensors index with two shards opens%s",
          why(rc));
    mmm_st_close_model(m);

    write_index(dir, "{\"weight_map\": {\"a\": \"s1.safetensors\",");
    expect_model_reject("index not JSON", dir, MMM_ERR_FORMAT,
                        "model.safetensors.index.json: not valid JSON");
    write_index(dir, "[\"s1.safetensors\"]");
    expect_model_reject("index not an object", dir, MMM_ERR_FORMAT,
                        "index.json: not a JSON object");
    write_index(dir, "{\"metadata\":{}}");
    expect_model_reject("index without weight_map", dir, MMM_ERR_FORMAT,
                        "\"weight_map\" is missing");
    write_index(dir, "{\"metadata\":3,\"weight_map\":{}}");
    expect_model_reject("index metadata not an object", dir, MMM_ERR_FORMAT,
                        "\"metadata\" is not an object");
    write_index(dir, "{\"weight_map\":{}}");
    expect_model_reject("empty weight_map", dir, MMM_ERR_FORMAT, "weight_map is empty");
    write_index(dir, "{\"weight_map\":{\"a\":1}}");
    expect_model_reject("weight_map value not a string", dir, MMM_ERR_FORMAT,
                        "weight_map value of 'a' is not a string");
    write_index(dir, "{\"weight_map\":{\"a\":\"../s1.safetensors\"}}");
    expect_model_reject("shard outside the directory", dir, MMM_ERR_FORMAT,
                        "which is not a file name in the index's directory");
    write_index(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                "\"c\":\"s9.safetensors\"}}");
    expect_model_reject("missing shard", dir, MMM_ERR_NOT_FOUND,
                        "shard 's9.safetensors' in weight_map does not exist");
    write_index(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                "\"c\":\"broken.safetensors\"}}");
    expect_model_reject("malformed shard", dir, MMM_ERR_FORMAT,
                        "shard 'broken.safetensors': ");
    write_index(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                "\"c\":\"s2.safetensors\",\"d\":\"s2.safetensors\"}}");
    expect_model_reject(
        "tensor missing from its shard", dir, MMM_ERR_FORMAT,
        "weight_map puts tensor 'd' in shard 's2.safetensors', which does not hold it");
    write_index(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}");
    expect_model_reject("shard tensor not in weight_map", dir, MMM_ERR_FORMAT,
                        "tensor 'b' of shard 's1.safetensors' is not in weight_map");
    write_index(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                "\"c\":\"s2.safetensors\",\"a\":\"s1.safetensors\"}}");
    expect_model_reject("tensor listed twice", dir, MMM_ERR_FORMAT,
                        "tensor 'a' is listed twice in weight_map");
    write_index(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                "\"c\":\"s3.safetensors\"}}");
    expect_model_reject("tensor in two shards", dir, MMM_ERR_FORMAT,
                        "tensor 'a' is in two shards, 's1.safetensors' and 's3.safetensors'");
    write_index(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                "\"c\":\"s1.safetensors\",\"x\":\"s2.safetensors\"}}");
    expect_model_reject("tensor under the wrong shard", dir, MMM_ERR_FORMAT,
                        "weight_map puts tensor 'c' in shard 's1.safetensors' but it is in shard "
                        "'s2.safetensors'");

    const char *empty = tpath("empty_model");
    mkdir(empty, 0777);
    expect_model_reject("directory without a checkpoint", empty, MMM_ERR_NOT_FOUND,
                        "holds neither model.safetensors nor model.safetensors.index.json");
    expect_model_reject("missing model path", tpath("no_such_model"), MMM_ERR_NOT_FOUND,
                        "cannot open");
}

/* A JSON array of n zeros between prefix and suffix (malloc'd). */
static char *zeros_json(const char *prefix, size_t n, const char *suffix) {
    size_t a = strlen(prefix), b = strlen(suffix);
    char *s = malloc(a + 2 * n + b + 1);
    memcpy(s, prefix, a);
    size_t k = a;
    for (size_t i = 0; i < n; i++) {
        if (i) s[k++] = ',';
        s[k++] = '0';
    }
    memcpy(s + k, suffix, b + 1);
    return s;
}

/* Headers and indexes whose JSON would build a tree many times their size are refused before
 * cJSON builds it, naming the file and the limit; FIFOs in place of a shard, a model file or an
 * index are refused without blocking. */
TEST(safetensors_caps_and_fifos) {
    char *h = zeros_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[", 65537, "],\"data_offsets\":[0,0]}}");
    const char *p = tpath("huge_shape.safetensors");
    write_st(p, h, 0);
    free(h);
    expect_reject("a header array of 65537 elements", p, MMM_ERR_FORMAT,
                  "header: the JSON array at byte 28 has more than 65536 elements");
    p = tpath("deep_header.safetensors");
    write_st(p, "{\"__metadata__\":{\"a\":[[1]]}}", 0);
    expect_reject("a header nested 4 deep", p, MMM_ERR_FORMAT, "nested deeper than 3 levels");

    const char *dir = tpath("capidx");
    mkdir(dir, 0777);
    const char *a[] = {"a"};
    make_shard(dir, "s1.safetensors", a, 1);
    char *j = zeros_json("{\"metadata\":{\"x\":[", 524289, "]},\"weight_map\":{\"a\":\"s1.safetensors\"}}");
    write_index(dir, j);
    free(j);
    expect_model_reject("an index array of 524289 elements", dir, MMM_ERR_FORMAT,
                        "index.json: the JSON array at byte 17 has more than 524288 elements");

    const char *fifo = tpath("fifo.safetensors");
    check(mkfifo(fifo, 0600) == 0, "safetensors: mkfifo");
    expect_reject("a FIFO", fifo, MMM_ERR_IO, "is a FIFO, expected a regular file");
    expect_model_reject("a FIFO given as the model", fifo, MMM_ERR_IO, "is a FIFO");
    write_index(dir, "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"fifo2.safetensors\"}}");
    char shard[512];
    snprintf(shard, sizeof shard, "%s/fifo2.safetensors", dir);
    check(mkfifo(shard, 0600) == 0, "safetensors: mkfifo shard");
    expect_model_reject("a FIFO shard", dir, MMM_ERR_IO, "shard 'fifo2.safetensors': ");
    unlink(write_index(dir, "{}"));
    const char *fdir = tpath("fifomodel");
    mkdir(fdir, 0777);
    char single[512];
    snprintf(single, sizeof single, "%s/model.safetensors", fdir);
    check(mkfifo(single, 0600) == 0, "safetensors: mkfifo model.safetensors");
    expect_model_reject("a FIFO model.safetensors", fdir, MMM_ERR_IO, "model.safetensors: is a FIFO");
    snprintf(single, sizeof single, "%s/model.safetensors.index.json", dir);
    check(mkfifo(single, 0600) == 0, "safetensors: mkfifo index");
    expect_model_reject("a FIFO index", dir, MMM_ERR_IO, "model.safetensors.index.json: is a FIFO");
}
