/* Dataset files beyond JSON Lines: LLaVA's JSON arrays with an image root, InternVL meta files
 * with repeat_time, the one-line hint for a file that is no dataset, the caps on a record (size,
 * depth, values, UTF-8) and the memory they bound, FIFOs, and the same through mmm eval. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness.h"
#include "mmm/data.h"
#include "mmm/error.h"
#include "mmm/fileio.h"
#include "mmm/model.h"

#include "fixture.h"

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* dir/name, in a static buffer per slot (slot 0..3) */
static const char *at(int slot, const char *dir, const char *name) {
    static char buf[4][1024];
    snprintf(buf[slot], sizeof buf[slot], "%.500s/%.500s", dir, name);
    return buf[slot];
}

/* A fresh folder under the fixture's: <fixture>/<name>, with images/coco/a.png in it. */
static const char *make_dir(const fixture *f, const char *name) {
    static char dir[256];
    snprintf(dir, sizeof dir, "%s/%s", f->dir, name);
    mkdir(dir, 0755);
    mkdir(at(0, dir, "images"), 0755);
    mkdir(at(0, dir, "images/coco"), 0755);
    mkdir(at(0, dir, "ann"), 0755);
    mmm_copy_file("tests/data/images/fmnist_28.png", at(0, dir, "images/coco/a.png"));
    return dir;
}

/* LLaVA's layout: one JSON array over many lines, strings holding brackets, commas and escaped
 * quotes, a multi-turn record without an image, images relative to a separate folder. */
static const char llava_array[] =
    "[\n"
    "  {\"id\": \"a\", \"image\": \"coco/a.png\",\n"
    "   \"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nWhat is this? [x], {y}\"},\n"
    "                     {\"from\": \"gpt\", \"value\": \"A \\\"shirt\\\" ]},\"}]},\n"
    "  {\"id\": \"b\", \"conversations\": [{\"from\": \"human\", \"value\": \"Hello\"}, {\"from\": \"gpt\", \"value\": \"Hi\"},\n"
    "                                {\"from\": \"human\", \"value\": \"Again?\"}, {\"from\": \"gpt\", \"value\": \"Yes\"}]},\n"
    "  {\"id\": \"c\", \"image\": \"coco/a.png\", \"conversations\": [{\"from\": \"human\", \"value\": \"Which?\\n<image>\"},\n"
    "                                                        {\"from\": \"gpt\", \"value\": \"Bag\"}]}\n"
    "]\n";

TEST(data_llava_array_and_image_root) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "llava array: fixture (%s)", f ? "ready" : mmm_last_error())) return;
    const char *dir = make_dir(f, "llava");
    char path[512], root[512];
    snprintf(path, sizeof path, "%s/ann/llava_v1_5_mix.json", dir);
    snprintf(root, sizeof root, "%s/images", dir);
    write_text(path, llava_array);
    mmm_data_options opt = {.max_tokens = 4096, .image_root = root};
    mmm_dataset d;
    int rc = mmm_dataset_load(&d, path, f->tok, &f->cfg, &opt);
    if (!check(rc == MMM_OK && d.n == 3 && d.n_records == 3 && d.n_skipped == 0,
               "llava array: 3 samples of 3 records with the image root (%s)", rc ? mmm_last_error() : d.skipped_report))
        return;
    check(d.samples[0].n_images == 1 && !strcmp(d.samples[0].images[0], at(1, root, "coco/a.png")) &&
          d.samples[1].n_images == 0 && d.samples[2].n_images == 1,
          "llava array: images resolve against the image root; the record without one has none");
    check(!strcmp(d.samples[0].answer, "A \"shirt\" ]},") && !strcmp(d.samples[1].answer, "Yes") &&
          !strcmp(d.samples[1].id, "b"),
          "llava array: brackets and escaped quotes inside strings do not end a record; multi-turn keeps the last answer");
    mmm_dataset_free(&d);

    opt.image_root = NULL; /* default: the data file's folder, where the images are not */
    rc = mmm_dataset_load(&d, path, f->tok, &f->cfg, &opt);
    check(rc == MMM_OK && d.n == 1 && d.n_skipped == 2 && strstr(d.skipped_report, "line 2: ") &&
          strstr(d.skipped_report, "line 7: ") && strstr(d.skipped_report, "/ann/coco/a.png"),
          "llava array: without the image root the image records are skipped, named by line (%s)",
          rc ? mmm_last_error() : d.skipped_report);
    if (!rc) mmm_dataset_free(&d);
}

/* ids of d's samples, joined with spaces */
static const char *ids_of(const mmm_dataset *d) {
    static char buf[512];
    buf[0] = '\0';
    for (int i = 0; i < d->n; i++)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? " " : "", d->samples[i].id ? d->samples[i].id : "?");
    return buf;
}

static void write_text_records(const char *path, const char *prefix, int n, int bad_at) {
    FILE *fp = fopen(path, "w");
    if (!fp) return;
    for (int i = 0; i < n; i++) {
        if (i == bad_at) fprintf(fp, "{broken\n");
        else fprintf(fp, "{\"id\": \"%s%d\", \"conversations\": [{\"from\": \"human\", \"value\": \"Q%d\"}, {\"from\": \"gpt\", \"value\": \"A%d\"}]}\n",
                     prefix, i, i, i);
    }
    fclose(fp);
}

TEST(data_internvl_meta_repeat_time) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "meta: fixture (%s)", f ? "ready" : mmm_last_error())) return;
    const char *dir = make_dir(f, "meta");
    char meta[512];
    write_text(at(0, dir, "ann/llava.json"), llava_array);
    write_text_records(at(0, dir, "ann/half.jsonl"), "h", 5, 3); /* its bad record lies past the half taken */
    write_text_records(at(0, dir, "ann/four.jsonl"), "f", 4, -1);
    snprintf(meta, sizeof meta, "%s/meta.json", dir);
    write_text(meta, "{\n"
                     "  \"half\": {\"root\": \"images\", \"annotation\": \"ann/half.jsonl\", \"repeat_time\": 0.5, \"length\": 5,\n"
                     "           \"data_augment\": false},\n"
                     "  \"twice\": {\"root\": \"images\", \"annotation\": \"ann/llava.json\", \"repeat_time\": 2},\n"
                     "  \"one_and_a_half\": {\"root\": \"images\", \"annotation\": \"ann/four.jsonl\", \"repeat_time\": 1.5}\n"
                     "}\n");
    mmm_data_options opt = {.max_tokens = 4096};
    mmm_dataset d;
    int rc = mmm_dataset_load(&d, meta, f->tok, &f->cfg, &opt);
    if (!check(rc == MMM_OK, "meta: three datasets load (%s)", rc ? mmm_last_error() : "")) return;
    /* int(5 * 0.5) = 2 of half, 3 * 2 of twice, int(4 * 1.5) = 6 of one_and_a_half */
    check(d.n == 14 && d.n_skipped == 0 && d.n_records == 9 && !strcmp(ids_of(&d), "h0 h1 a b c a b c f0 f1 f2 f3 f0 f1"),
          "meta: repeat_time 0.5 takes the first 2 of 5, 2 doubles 3, 1.5 takes 4 and the first 2 again: %d samples (%s)",
          d.n, ids_of(&d));
    check(d.samples[2].n_images == 1 && !strcmp(d.samples[2].images[0], at(1, dir, "images/coco/a.png")) &&
          d.samples[5].images != d.samples[2].images,
          "meta: images resolve against each dataset's root (relative to the meta file); repeats are copies");
    mmm_dataset_free(&d);

    opt.max_samples = 5;
    rc = mmm_dataset_load(&d, meta, f->tok, &f->cfg, &opt);
    check(rc == MMM_OK && d.n == 5 && !strcmp(ids_of(&d), "h0 h1 a b c"), "meta: max_samples keeps the first samples");
    if (!rc) mmm_dataset_free(&d);
    opt.max_samples = 0;

    opt.image_root = dir;
    rc = mmm_dataset_load(&d, meta, f->tok, &f->cfg, &opt);
    check(rc == MMM_ERR_ARG && strstr(mmm_last_error(), "meta file"), "meta: an image root as well is refused (%s)", mmm_last_error());
    opt.image_root = NULL;

    write_text(meta, "{\"a\": {\"root\": \"images\", \"annotation\": \"ann/four.jsonl\"}, \"b\": {\"root\": \"images\"}}");
    rc = mmm_dataset_load(&d, meta, f->tok, &f->cfg, &opt);
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "meta.json: dataset \"b\" needs an \"annotation\""),
          "meta: a dataset without an annotation is named (%s)", mmm_last_error());
    write_text(meta, "{\"a\": {\"annotation\": \"ann/four.jsonl\", \"repeat_time\": -1}}");
    rc = mmm_dataset_load(&d, meta, f->tok, &f->cfg, &opt);
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "\"repeat_time\" must be"), "meta: a negative repeat_time is refused");
    write_text(meta, "{\"a\": {\"annotation\": \"ann/missing.jsonl\"}}");
    rc = mmm_dataset_load(&d, meta, f->tok, &f->cfg, &opt);
    check(rc == MMM_ERR_NOT_FOUND && strstr(mmm_last_error(), "ann/missing.jsonl"), "meta: a missing annotation file is named");
}

/* Loads path; the error message, "" when it loaded. */
static const char *load_error(fixture *f, const char *path, mmm_data_options *opt, int *rc) {
    mmm_dataset d;
    *rc = mmm_dataset_load(&d, path, f->tok, &f->cfg, opt);
    if (*rc == MMM_OK) mmm_dataset_free(&d);
    return *rc ? mmm_last_error() : "";
}

TEST(data_file_kinds_and_hint) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "data kinds: fixture (%s)", f ? "ready" : mmm_last_error())) return;
    const char *dir = make_dir(f, "kinds");
    mmm_data_options opt = {.max_tokens = 4096};
    int rc;
    const char *msg = load_error(f, at(0, dir, "images/coco/a.png"), &opt, &rc);
    check(rc == MMM_ERR_FORMAT && strstr(msg, "a.png: not a dataset: expected JSON Lines") && strstr(msg, "JSON array") &&
          strstr(msg, "meta file") && !strchr(msg, '\n'), "data kinds: a PNG gets one line saying what a dataset is (%s)", msg);
    write_text(at(0, dir, "notes.txt"), "some notes\nmore notes\n");
    msg = load_error(f, at(0, dir, "notes.txt"), &opt, &rc);
    check(rc == MMM_ERR_FORMAT && strstr(msg, "notes.txt: not a dataset"), "data kinds: a text file gets the hint, not per-line errors");
    write_text(at(0, dir, "pretty.json"), "{\n  \"id\": 1,\n  \"conversations\": [{\"from\": \"human\", \"value\": \"Hi\"},\n"
                                           "    {\"from\": \"gpt\", \"value\": \"Yes\"}]\n}\n");
    msg = load_error(f, at(0, dir, "pretty.json"), &opt, &rc);
    check(rc == MMM_ERR_FORMAT && strstr(msg, "one JSON object over several lines"), "data kinds: a pretty-printed record is named as such (%s)", msg);
    write_text(at(0, dir, "empty.jsonl"), "\n\n");
    msg = load_error(f, at(0, dir, "empty.jsonl"), &opt, &rc);
    check(rc == MMM_ERR_FORMAT && strstr(msg, "no usable samples in 0 records"), "data kinds: an empty file has no samples (%s)", msg);

    /* JSON Lines whose first line is broken stays JSON Lines: the line is skipped */
    write_text(at(0, dir, "first_bad.jsonl"), "{broken\n{\"conversations\": [{\"from\": \"human\", \"value\": \"Q\"}, {\"from\": \"gpt\", \"value\": \"A\"}]}\n");
    mmm_dataset d;
    rc = mmm_dataset_load(&d, at(0, dir, "first_bad.jsonl"), f->tok, &f->cfg, &opt);
    check(rc == MMM_OK && d.n == 1 && d.n_skipped == 1 && strstr(d.skipped_report, "line 1: not valid JSON"),
          "data kinds: JSON Lines with a broken first line loads the rest");
    if (!rc) mmm_dataset_free(&d);

    /* arrays: cut short, a trailing comma, data after the closing bracket, a UTF-8 byte order mark */
    const char *rec = "{\"conversations\": [{\"from\": \"human\", \"value\": \"Q\"}, {\"from\": \"gpt\", \"value\": \"A\"}]}";
    char text[1024];
    snprintf(text, sizeof text, "[%s,\n %s,\n {\"conversations\": [", rec, rec);
    write_text(at(0, dir, "cut.json"), text);
    rc = mmm_dataset_load(&d, at(0, dir, "cut.json"), f->tok, &f->cfg, &opt);
    check(rc == MMM_OK && d.n == 2 && d.n_skipped == 1 && strstr(d.skipped_report, "line 3: the file ends inside this record"),
          "data kinds: an array cut short keeps its whole records (%s)", rc ? mmm_last_error() : d.skipped_report);
    if (!rc) mmm_dataset_free(&d);
    snprintf(text, sizeof text, "[%s,]", rec);
    write_text(at(0, dir, "comma.json"), text);
    rc = mmm_dataset_load(&d, at(0, dir, "comma.json"), f->tok, &f->cfg, &opt);
    check(rc == MMM_OK && d.n == 1 && d.n_skipped == 1 && strstr(d.skipped_report, "a comma before"), "data kinds: a trailing comma is a bad record");
    if (!rc) mmm_dataset_free(&d);
    snprintf(text, sizeof text, "[%s]\nx", rec);
    write_text(at(0, dir, "after.json"), text);
    msg = load_error(f, at(0, dir, "after.json"), &opt, &rc);
    check(rc == MMM_ERR_FORMAT && strstr(msg, "after.json:2: data after the JSON array's closing ]"), "data kinds: data after the array is an error (%s)", msg);
    snprintf(text, sizeof text, "\xEF\xBB\xBF[%s]", rec);
    write_text(at(0, dir, "bom.json"), text);
    rc = mmm_dataset_load(&d, at(0, dir, "bom.json"), f->tok, &f->cfg, &opt);
    check(rc == MMM_OK && d.n == 1, "data kinds: an array after a UTF-8 byte order mark loads");
    if (!rc) mmm_dataset_free(&d);
    snprintf(text, sizeof text, "\xEF\xBB\xBF%s\n%s\n", rec, rec);
    write_text(at(0, dir, "bom.jsonl"), text);
    rc = mmm_dataset_load(&d, at(0, dir, "bom.jsonl"), f->tok, &f->cfg, &opt);
    check(rc == MMM_OK && d.n == 2 && d.n_skipped == 0, "data kinds: JSON Lines after a UTF-8 byte order mark load whole (%s)",
          rc ? mmm_last_error() : d.skipped_report);
    if (!rc) mmm_dataset_free(&d);
}

typedef struct { fixture *f; const char *path, *expect; } data_load;

/* 1 when the load was refused with `expect` in the message (or loaded, when expect is NULL). */
static int load_verdict(void *arg) {
    const data_load *l = arg;
    mmm_data_options opt = {0};
    mmm_dataset d;
    int rc = mmm_dataset_load(&d, l->path, l->f->tok, &l->f->cfg, &opt);
    int ok = !l->expect ? rc == MMM_OK
             : rc ? strstr(mmm_last_error(), l->expect) != NULL : d.n_skipped == 1 && strstr(d.skipped_report, l->expect);
    if (!rc) mmm_dataset_free(&d);
    return ok;
}

/* Peak memory of loading path in a child process, in MB above what it had at the start, and
 * the child's verdict (load_verdict). -1 when it could not be measured. */
static long load_peak_mb(fixture *f, const char *path, const char *expect, int *verdict) {
    data_load l = {f, path, expect};
    return peak_mb_in_child(load_verdict, &l, verdict);
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1 /* its allocator keeps freed memory in quarantine: peaks say nothing */
#else
#define UNDER_ASAN 0
#endif

TEST(data_record_caps) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "record caps: fixture (%s)", f ? "ready" : mmm_last_error())) return;
    const char *dir = make_dir(f, "caps");
    const char *head = "{\"conversations\": [{\"from\": \"human\", \"value\": \"Q\"}, {\"from\": \"gpt\", \"value\": \"";
    const char *good = "{\"conversations\": [{\"from\": \"human\", \"value\": \"Q\"}, {\"from\": \"gpt\", \"value\": \"A\"}]}\n";
    /* a line longer than the cap: skipped, or FILE:LINE under strict */
    const char *path = at(2, dir, "long.jsonl");
    FILE *fp = fopen(path, "w");
    fputs(good, fp);
    fputs(head, fp);
    size_t used = strlen(head) + 4;
    for (size_t i = used; i < 10000; i++) fputc('a', fp);
    fputs("\"}]}\n", fp);
    fclose(fp);
    mmm_data_options opt = {.max_record_bytes = 4096};
    mmm_dataset d;
    int rc = mmm_dataset_load(&d, path, f->tok, &f->cfg, &opt);
    check(rc == MMM_OK && d.n == 1 && d.n_skipped == 1 &&
          strstr(d.skipped_report, "line 2: record of 10000 bytes is more than the 4096-byte limit"),
          "record caps: a record over the cap is skipped (%s)", rc ? mmm_last_error() : d.skipped_report);
    if (!rc) mmm_dataset_free(&d);
    opt.strict = 1;
    rc = mmm_dataset_load(&d, path, f->tok, &f->cfg, &opt);
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "long.jsonl:2: record of 10000 bytes is more than the 4096-byte limit"),
          "record caps: under strict it is FILE:LINE: record of N bytes is more than the limit (%s)", mmm_last_error());
    opt.strict = 0;
    opt.max_record_bytes = 0;

    /* nesting, values, invalid UTF-8, NUL */
    char *big = malloc(700000);
    size_t k = (size_t)snprintf(big, 700000, "{\"extra\": ");
    for (int i = 0; i < 40; i++) big[k++] = '[';
    for (int i = 0; i < 40; i++) big[k++] = ']';
    snprintf(big + k, 700000 - k, ", %s", good + 1);
    path = at(2, dir, "deep.jsonl");
    write_text(path, big);
    rc = mmm_dataset_load(&d, path, f->tok, &f->cfg, &opt);
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "JSON nested 41 deep, more than 32"), "record caps: nesting is bounded (%s)", mmm_last_error());
    k = (size_t)snprintf(big, 700000, "{\"extra\": [0");
    for (int i = 0; i < 300000; i++) big[k++] = ',', big[k++] = '0';
    snprintf(big + k, 700000 - k, "], %s", good + 1);
    path = at(2, dir, "values.jsonl");
    write_text(path, big);
    rc = mmm_dataset_load(&d, path, f->tok, &f->cfg, &opt);
    check(rc == MMM_ERR_FORMAT && strstr(mmm_last_error(), "more than 262144 JSON values"), "record caps: values per record are bounded (%s)", mmm_last_error());
    free(big);
    const char *utf8[][2] = {{"caf\xE9", "latin-1"}, {"\xC0\xAF", "overlong"}, {"\xED\xA0\x80", "surrogate"}, {"\xF4\x90\x80\x80", "beyond U+10FFFF"}};
    for (int i = 0; i < 4; i++) {
        char text[512];
        snprintf(text, sizeof text, "%s%s%s\"}]}\n", good, head, utf8[i][0]);
        path = at(2, dir, "utf8.jsonl");
        write_text(path, text);
        rc = mmm_dataset_load(&d, path, f->tok, &f->cfg, &opt);
        check(rc == MMM_OK && d.n == 1 && d.n_skipped == 1 && strstr(d.skipped_report, "line 2: invalid UTF-8 at byte"),
              "record caps: invalid UTF-8 (%s) is refused by line (%s)", utf8[i][1], rc ? mmm_last_error() : d.skipped_report);
        if (!rc) mmm_dataset_free(&d);
    }
    char text[512];
    snprintf(text, sizeof text, "%scaf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80\"}]}\n", head);
    write_text(path, text);
    rc = mmm_dataset_load(&d, path, f->tok, &f->cfg, &opt);
    check(rc == MMM_OK && d.n == 1 && !strcmp(d.samples[0].answer, "caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80"), "record caps: valid UTF-8 of 2, 3 and 4 bytes loads");
    if (!rc) mmm_dataset_free(&d);
    path = at(2, dir, "nul.jsonl");
    fp = fopen(path, "wb");
    fputs(good, fp);
    fputs(head, fp);
    fputc(0, fp);
    fputs("\"}]}\n", fp);
    fclose(fp);
    rc = mmm_dataset_load(&d, path, f->tok, &f->cfg, &opt);
    check(rc == MMM_OK && d.n_skipped == 1 && strstr(d.skipped_report, "line 2: NUL byte"), "record caps: a NUL byte is refused by line");
    if (!rc) mmm_dataset_free(&d);

    /* memory: a 20 MB word (over the default cap) and a 1 MB one (under it, tokenised) */
    path = at(2, dir, "word20.jsonl");
    fp = fopen(path, "w");
    fputs(head, fp);
    for (long i = 0; i < 20L << 20; i++) putc_unlocked('w', fp);
    fputs("\"}]}\n", fp);
    fclose(fp);
    int verdict = 0;
    long mb = load_peak_mb(f, path, "is more than the 4 MB limit", &verdict);
    check(verdict, "record caps: a 20 MB record is refused by the default 4 MB cap");
    if (UNDER_ASAN) printf("record caps: peak memory not checked under AddressSanitizer (%ld MB)\n", mb);
    else check(mb >= 0 && mb < 32, "record caps: refusing a 20 MB record costs %ld MB (< 32: the cap, not the record)", mb);
    unlink(path);
    path = at(2, dir, "word1.jsonl");
    fp = fopen(path, "w");
    fputs(head, fp);
    for (long i = 0; i < (1L << 20) - 200; i++) putc_unlocked('w', fp);
    fputs("\"}]}\n", fp);
    fclose(fp);
    mb = load_peak_mb(f, path, NULL, &verdict);
    check(verdict, "record caps: a 1 MB record of one word loads");
    if (UNDER_ASAN) printf("record caps: peak memory not checked under AddressSanitizer (%ld MB)\n", mb);
    else check(mb >= 0 && mb < 256, "record caps: a 1 MB input costs %ld MB (< 256)", mb);
    unlink(path);
    if (UNDER_ASAN) return;
    /* the worst a record under the cap can cost: one word just short of 4 MB, tokenised */
    fp = fopen(path, "w");
    fputs(head, fp);
    for (long i = 0; i < (4L << 20) - 200; i++) putc_unlocked('w', fp);
    fputs("\"}]}\n", fp);
    fclose(fp);
    mb = load_peak_mb(f, path, NULL, &verdict);
    check(verdict && mb >= 0 && mb < 256, "record caps: a record just under the 4 MB cap loads in %ld MB (< 256)", mb);
    unlink(path);
}

typedef struct {
    long calls, last_records;
    long long last_done, last_total;
} progress_seen;

static void progress(void *ctx, long long done, long long total, long records) {
    progress_seen *s = ctx;
    s->calls++;
    s->last_records = records;
    s->last_done = done;
    s->last_total = total;
}

TEST(data_progress_and_fifo) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "data fifo: fixture (%s)", f ? "ready" : mmm_last_error())) return;
    const char *dir = make_dir(f, "fifo");
    write_text_records(at(0, dir, "ann/four.jsonl"), "f", 4, -1);

    progress_seen s = {0};
    mmm_data_options opt = {.progress = progress, .progress_ctx = &s};
    mmm_dataset d;
    int rc = mmm_dataset_load(&d, at(0, dir, "ann/four.jsonl"), f->tok, &f->cfg, &opt);
    check(rc == MMM_OK && s.calls >= 1 && s.last_done == s.last_total && s.last_total > 0 && s.last_records == 4,
          "data progress: the last call has every byte and record (%lld of %lld, %ld records)", s.last_done, s.last_total, s.last_records);
    if (!rc) mmm_dataset_free(&d);

    const char *fifo = at(1, dir, "fifo.jsonl");
    unlink(fifo);
    if (!check(mkfifo(fifo, 0644) == 0, "data fifo: mkfifo")) return;
    pid_t pid = fork();
    if (pid == 0) { /* a hang would be the bug: the alarm ends it */
        alarm(10);
        mmm_data_options o = {0};
        int r = mmm_dataset_load(&d, fifo, f->tok, &f->cfg, &o);
        _exit(r == MMM_ERR_IO && strstr(mmm_last_error(), "fifo.jsonl: is a FIFO") ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "data fifo: a FIFO as the data file is refused by name, not waited on");
    unlink(fifo);
}

TEST(data_cli_eval_strict_and_image_root) {
    fixture *f = get_fixture();
    if (!check(f != NULL, "cli eval data: fixture (%s)", f ? "ready" : mmm_last_error())) return;
    const char *dir = make_dir(f, "cli_eval");
    char model[512], cmd[2048], out[8192];
    snprintf(model, sizeof model, "%s/model", dir);
    mmm_model *m = NULL;
    int rc = mmm_model_create(&m, &f->cfg);
    if (!rc) {
        mmm_model_init_random(m, 5, 0.05f);
        rc = mmm_model_save(m, model, MMM_DTYPE_F32, 0);
    }
    mmm_model_free(m);
    if (!rc) rc = mmm_copy_file(at(0, f->dir, "tokenizer.json"), at(1, model, "tokenizer.json"));
    if (!check(rc == MMM_OK, "cli eval data: a small model to evaluate (%s)", rc ? mmm_last_error() : "")) return;

    write_text(at(0, dir, "bad.jsonl"),
               "{\"id\": 1, \"conversations\": [{\"from\": \"human\", \"value\": \"Hi\"}, {\"from\": \"gpt\", \"value\": \"Yes\"}]}\n"
               "{not json\n"
               "{\"conversations\": [{\"from\": \"gpt\", \"value\": \"x\"}, {\"from\": \"human\", \"value\": \"y\"}]}\n");
    snprintf(cmd, sizeof cmd, "eval --model %s --data %s/bad.jsonl --max-new 2", model, dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 0 && strstr(out, "bad.jsonl: skipped 2 of 3 records (line 2: not valid JSON; line 3: turn 0"),
          "cli eval: skipped records are counted and the first reasons given (%s)", out);
    snprintf(cmd, sizeof cmd, "eval --model %s --data %s/bad.jsonl --max-new 2 --strict", model, dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 1 && strstr(out, "bad.jsonl:2: not valid JSON") && !strstr(out, "accuracy"),
          "cli eval --strict: the first bad record fails the run (%s)", out);

    write_text(at(0, dir, "ann/llava.json"), llava_array);
    snprintf(cmd, sizeof cmd, "eval --model %s --data %s/ann/llava.json --image-root %s/images --max-new 2", model, dir, dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 0 && strstr(out, "all ") && strstr(out, "       3 ") && !strstr(out, "skipped"),
          "cli eval: a LLaVA array with --image-root scores its 3 samples (%s)", out);
    snprintf(cmd, sizeof cmd, "eval --model %s --data %s/images/coco/a.png", model, dir);
    rc = run_mmm(cmd, out, sizeof out);
    check(rc == 1 && strstr(out, "a.png: not a dataset") && count_lines(out) == 1,
          "cli eval: a file that is no dataset gets one line (%s)", out);
    rc = run_mmm("train --help", out, sizeof out);
    int train_help = rc == 0 && strstr(out, "--image-root DIR");
    rc = run_mmm("distill --help", out, sizeof out);
    check(train_help && rc == 0 && strstr(out, "--image-root DIR") && strstr(out, "--strict"),
          "cli train and distill take --image-root (and distill --strict)");
}
