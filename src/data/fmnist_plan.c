/* Which images and which question each Fashion-MNIST sample gets, and its texts. Images are
 * drawn from shuffled cycles (the whole split for name samples, each class for the rest) so
 * that every image is used once before any is used twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmnist_internal.h"
#include "mmm/error.h"

static const char *const corners[4] = {"top left", "top right", "bottom left", "bottom right"};

static int rand_below(mmm_rng *r, int n) { return (int)(mmm_rng_uniform(r) * n); }

static void shuffle(int32_t *a, long n, mmm_rng *r) {
    for (long i = n - 1; i > 0; i--) {
        long j = (long)(mmm_rng_uniform(r) * (double)(i + 1));
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* A shuffled cycle over a list of image indices, reshuffled each time it wraps. */
typedef struct {
    int32_t *items;
    int n, next;
} cycle;

static int32_t cycle_draw(cycle *c, mmm_rng *r) {
    if (c->next == c->n) {
        shuffle(c->items, c->n, r);
        c->next = 0;
    }
    return c->items[c->next++];
}

typedef struct {
    mmm_rng *rng;
    cycle all, cls[MMM_FMNIST_CLASSES];
} drawer;

static void drawer_free(drawer *d) {
    free(d->all.items);
    for (int c = 0; c < MMM_FMNIST_CLASSES; c++) free(d->cls[c].items);
}

static int drawer_init(drawer *d, const mmm_fmnist_split *s, mmm_rng *rng) {
    memset(d, 0, sizeof *d);
    d->rng = rng;
    int per_class[MMM_FMNIST_CLASSES] = {0};
    for (int i = 0; i < s->n; i++) per_class[s->labels[i]]++;
    int ok = (d->all.items = malloc((size_t)s->n * sizeof(int32_t))) != NULL;
    for (int c = 0; c < MMM_FMNIST_CLASSES && ok; c++)
        ok = (d->cls[c].items = malloc((size_t)(per_class[c] ? per_class[c] : 1) * sizeof(int32_t))) != NULL;
    if (!ok) {
        drawer_free(d);
        return mmm_fail(MMM_ERR_NOMEM, "fashion-mnist: out of memory");
    }
    for (int i = 0; i < s->n; i++) {
        d->all.items[d->all.n++] = i;
        cycle *c = &d->cls[s->labels[i]];
        c->items[c->n++] = i;
    }
    d->all.next = d->all.n; /* each cycle is shuffled when first drawn from */
    for (int c = 0; c < MMM_FMNIST_CLASSES; c++) d->cls[c].next = d->cls[c].n;
    return MMM_OK;
}

static int32_t draw_class(drawer *d, int c) { return cycle_draw(&d->cls[c], d->rng); }
static int other_class(drawer *d, int c) { return (c + 1 + rand_below(d->rng, MMM_FMNIST_CLASSES - 1)) % MMM_FMNIST_CLASSES; }

/* A count question over n images: 0 to min(n, 6) of them of the asked class, at random places. */
static void draw_count(drawer *d, fm_sample *q, int32_t *img) {
    int target = rand_below(d->rng, MMM_FMNIST_CLASSES);
    int most = q->n < FM_COUNT_MAX_IMAGES ? q->n : FM_COUNT_MAX_IMAGES;
    int k = rand_below(d->rng, most + 1);
    for (int i = 0; i < q->n; i++) img[i] = i < k ? target : other_class(d, target); /* classes first */
    shuffle(img, q->n, d->rng);
    for (int i = 0; i < q->n; i++) img[i] = draw_class(d, img[i]);
    q->asked = (uint8_t)target;
}

static void draw_sample(drawer *d, fm_sample *q, int32_t *img, int yes) {
    mmm_rng *r = d->rng;
    int c;
    switch (q->task) {
    case MMM_FMNIST_NAME:
        img[0] = cycle_draw(&d->all, r);
        break;
    case MMM_FMNIST_YESNO:
        c = rand_below(r, MMM_FMNIST_CLASSES);
        img[0] = draw_class(d, c);
        q->asked = (uint8_t)(yes ? c : other_class(d, c));
        break;
    case MMM_FMNIST_GROUP:
        img[0] = draw_class(d, rand_below(r, MMM_FMNIST_CLASSES));
        break;
    case MMM_FMNIST_GRID: { /* four different classes: a partial Fisher-Yates over the ten */
        int32_t cls[MMM_FMNIST_CLASSES];
        for (int i = 0; i < MMM_FMNIST_CLASSES; i++) cls[i] = i;
        for (int i = 0; i < 4; i++) {
            int j = i + rand_below(r, MMM_FMNIST_CLASSES - i);
            int32_t t = cls[i];
            cls[i] = cls[j];
            cls[j] = t;
            img[i] = draw_class(d, cls[i]);
        }
        q->asked = (uint8_t)rand_below(r, 4);
        break;
    }
    case MMM_FMNIST_WHICH: {
        c = rand_below(r, MMM_FMNIST_CLASSES);
        int at = rand_below(r, q->n);
        for (int i = 0; i < q->n; i++) img[i] = draw_class(d, i == at ? c : other_class(d, c));
        q->asked = (uint8_t)c;
        break;
    }
    case MMM_FMNIST_COUNT:
        draw_count(d, q, img);
        break;
    }
}

void fm_plan_free(fm_plan *p) {
    free(p->samples);
    free(p->pool);
    memset(p, 0, sizeof *p);
}

static int plan_alloc(fm_plan *p, long n, size_t pool) {
    memset(p, 0, sizeof *p);
    p->samples = calloc(n ? (size_t)n : 1, sizeof *p->samples);
    p->pool = malloc((pool ? pool : 1) * sizeof *p->pool);
    if (!p->samples || !p->pool) {
        fm_plan_free(p);
        return mmm_fail(MMM_ERR_NOMEM, "fashion-mnist: out of memory planning %ld samples", n);
    }
    p->n = n;
    return MMM_OK;
}

/* Fills the samples' images (their tasks, n and asked already set where fixed). */
static void draw_all(fm_plan *p, drawer *d, const int32_t *yes) {
    size_t at = 0;
    long k_yes = 0;
    for (long i = 0; i < p->n; i++) {
        fm_sample *q = &p->samples[i];
        q->first = at;
        draw_sample(d, q, p->pool + at, q->task == MMM_FMNIST_YESNO && yes[k_yes++]);
        at += (size_t)q->n;
    }
}

int fm_plan_split(fm_plan *p, const mmm_fmnist_split *s, const long counts[MMM_FMNIST_N_TASKS],
                  mmm_rng *rng) {
    static const int most_images[MMM_FMNIST_N_TASKS] = {1, 1, 1, 4, 4, FM_COUNT_MAX_IMAGES};
    long n = 0;
    size_t pool = 0;
    for (int t = 0; t < MMM_FMNIST_N_TASKS; t++) {
        n += counts[t];
        pool += (size_t)counts[t] * most_images[t];
    }
    long n_yesno = counts[MMM_FMNIST_YESNO];
    drawer d;
    int rc = drawer_init(&d, s, rng);
    if (rc) return rc;
    int32_t *tasks = malloc((n ? (size_t)n : 1) * sizeof *tasks);
    int32_t *yes = malloc((n_yesno ? (size_t)n_yesno : 1) * sizeof *yes);
    rc = tasks && yes ? plan_alloc(p, n, pool) : mmm_fail(MMM_ERR_NOMEM, "fashion-mnist: out of memory");
    if (!rc) {
        long i = 0;
        for (int t = 0; t < MMM_FMNIST_N_TASKS; t++)
            for (long k = 0; k < counts[t]; k++) tasks[i++] = t;
        shuffle(tasks, n, rng);
        for (long k = 0; k < n_yesno; k++) yes[k] = k % 2 == 0; /* balanced, then in random order */
        shuffle(yes, n_yesno, rng);
        for (i = 0; i < n; i++) {
            fm_sample *q = &p->samples[i];
            q->task = (uint8_t)tasks[i];
            q->n = q->task == MMM_FMNIST_GRID    ? 4
                   : q->task == MMM_FMNIST_WHICH ? 2 + rand_below(rng, 3)
                   : q->task == MMM_FMNIST_COUNT ? 3 + rand_below(rng, FM_COUNT_MAX_IMAGES - 2)
                                                 : 1;
        }
        draw_all(p, &d, yes);
    }
    free(tasks);
    free(yes);
    drawer_free(&d);
    return rc;
}

int fm_plan_long(fm_plan *p, const mmm_fmnist_split *s, long n, int k, mmm_rng *rng) {
    drawer d;
    int rc = drawer_init(&d, s, rng);
    if (!rc) rc = plan_alloc(p, n, (size_t)n * (size_t)k);
    if (!rc) {
        for (long i = 0; i < n; i++) {
            p->samples[i].task = MMM_FMNIST_COUNT;
            p->samples[i].n = k;
        }
        draw_all(p, &d, NULL);
    }
    drawer_free(&d);
    return rc;
}

char *fm_question(const fm_sample *q) {
    size_t cap = (size_t)q->n * 24 + 128;
    char *s = malloc(cap), *e = s;
    if (!s) return NULL;
    const char *cls = mmm_fmnist_class_name(q->asked);
    switch (q->task) {
    case MMM_FMNIST_NAME: strcpy(s, "<image>\nWhat item is this?"); break;
    case MMM_FMNIST_YESNO: snprintf(s, cap, "<image>\nIs this a %s?", cls); break;
    case MMM_FMNIST_GROUP: strcpy(s, "<image>\nWhich group is this item in: tops, bottoms, footwear or bags?"); break;
    case MMM_FMNIST_GRID: snprintf(s, cap, "<image>\nWhat item is in the %s corner?", corners[q->asked & 3]); break;
    case MMM_FMNIST_WHICH:
        for (int i = 0; i < q->n; i++) e += sprintf(e, "Image %d: <image>\n", i + 1);
        sprintf(e, "Which image shows a %s?", cls);
        break;
    case MMM_FMNIST_COUNT:
        for (int i = 0; i < q->n; i++) e += sprintf(e, "<image>");
        sprintf(e, "\nHow many of these images show a %s?", cls);
        break;
    }
    return s;
}

void fm_answer(char out[FM_ANSWER_MAX], const fm_sample *q, const int32_t *images, const uint8_t *labels) {
    int c = labels[images[0]], k = 0;
    switch (q->task) {
    case MMM_FMNIST_NAME: snprintf(out, FM_ANSWER_MAX, "%s", mmm_fmnist_class_name(c)); break;
    case MMM_FMNIST_YESNO: snprintf(out, FM_ANSWER_MAX, "%s", c == q->asked ? "Yes" : "No"); break;
    case MMM_FMNIST_GROUP: snprintf(out, FM_ANSWER_MAX, "%s", mmm_fmnist_group_name(c)); break;
    case MMM_FMNIST_GRID: snprintf(out, FM_ANSWER_MAX, "%s", mmm_fmnist_class_name(labels[images[q->asked & 3]])); break;
    case MMM_FMNIST_WHICH:
        while (k < q->n - 1 && labels[images[k]] != q->asked) k++;
        snprintf(out, FM_ANSWER_MAX, "Image %d", k + 1);
        break;
    case MMM_FMNIST_COUNT:
        for (int i = 0; i < q->n; i++) k += labels[images[i]] == q->asked;
        snprintf(out, FM_ANSWER_MAX, "%d", k);
        break;
    }
}
