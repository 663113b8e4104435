#include "hgfleet/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 12
static const double BUCKETS[NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,   0.25,   0.5,   1,    5,     60};

typedef struct series {
    struct series *next;
    char *labels;
    double value;              /* counter/gauge value, histogram sum */
    unsigned long count;       /* histogram observations */
    unsigned long buckets[NBUCKETS];
} series;

typedef struct family {
    struct family *next;
    char *name, *help;
    enum hgf_metric_type type;
    series *series, **tail;  /* in creation order, for a stable output */
    /* Open-addressing index over the series: a gauge per connection means
     * ten thousand series, refreshed every few seconds. */
    series **slots;
    size_t n_slots, n_series;
} family;

struct hgf_metrics {
    family *families;  /* few dozen: a list is plenty */
};

hgf_metrics *hgf_metrics_new(void)
{
    return calloc(1, sizeof(hgf_metrics));
}

static void free_series(series *s)
{
    while (s) {
        series *n = s->next;
        free(s->labels);
        free(s);
        s = n;
    }
}

void hgf_metrics_free(hgf_metrics *m)
{
    if (!m)
        return;
    for (family *f = m->families; f;) {
        family *n = f->next;
        free_series(f->series);
        free(f->slots);
        free(f->name);
        free(f->help);
        free(f);
        f = n;
    }
    free(m);
}

static family *find_family(const hgf_metrics *m, const char *name)
{
    for (family *f = m->families; f; f = f->next)
        if (!strcmp(f->name, name))
            return f;
    return NULL;
}

static family *get_family(hgf_metrics *m, const char *name, enum hgf_metric_type type)
{
    family *f = find_family(m, name);
    if (f)
        return f;
    f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->name = strdup(name);
    f->type = type;
    f->tail = &f->series;
    /* Keep declaration order so the output is stable. */
    family **tail = &m->families;
    while (*tail)
        tail = &(*tail)->next;
    *tail = f;
    return f;
}

void hgf_metrics_describe(hgf_metrics *m, const char *name, enum hgf_metric_type type,
                          const char *help)
{
    family *f = get_family(m, name, type);
    if (!f)
        return;
    f->type = type;
    free(f->help);
    f->help = strdup(help);
}

static size_t hash(const char *text)
{
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (; *text; text++)
        h = (h ^ (unsigned char)*text) * 1099511628211u;
    return h;
}

static series **slot_of(const family *f, const char *labels)
{
    size_t mask = f->n_slots - 1, i = hash(labels) & mask;
    while (f->slots[i] && strcmp(f->slots[i]->labels, labels))
        i = (i + 1) & mask;
    return &f->slots[i];
}

/* Keeps the index at most half full. */
static int grow(family *f)
{
    if (2 * (f->n_series + 1) <= f->n_slots)
        return 0;
    size_t n = f->n_slots ? 2 * f->n_slots : 16;
    series **slots = calloc(n, sizeof *slots);
    if (!slots)
        return -1;
    free(f->slots);
    f->slots = slots;
    f->n_slots = n;
    for (series *s = f->series; s; s = s->next)
        *slot_of(f, s->labels) = s;
    return 0;
}

static series *find_series(const family *f, const char *labels)
{
    return f->n_slots ? *slot_of(f, labels ? labels : "") : NULL;
}

static series *get_series(family *f, const char *labels)
{
    labels = labels ? labels : "";
    series *s = find_series(f, labels);
    if (s || grow(f))
        return s;
    s = calloc(1, sizeof *s);
    if (!s || !(s->labels = strdup(labels))) {
        free(s);
        return NULL;
    }
    *f->tail = s;
    f->tail = &s->next;
    *slot_of(f, labels) = s;
    f->n_series++;
    return s;
}

void hgf_metrics_inc(hgf_metrics *m, const char *name, const char *labels, double v)
{
    family *f = m ? get_family(m, name, HGF_METRIC_COUNTER) : NULL;
    series *s = f ? get_series(f, labels) : NULL;
    if (s)
        s->value += v;
}

void hgf_metrics_set(hgf_metrics *m, const char *name, const char *labels, double v)
{
    family *f = m ? get_family(m, name, HGF_METRIC_GAUGE) : NULL;
    series *s = f ? get_series(f, labels) : NULL;
    if (s)
        s->value = v;
}

void hgf_metrics_observe(hgf_metrics *m, const char *name, const char *labels, double v)
{
    family *f = m ? get_family(m, name, HGF_METRIC_HISTOGRAM) : NULL;
    series *s = f ? get_series(f, labels) : NULL;
    if (!s)
        return;
    s->value += v;
    s->count++;
    for (int i = 0; i < NBUCKETS; i++)
        if (v <= BUCKETS[i])
            s->buckets[i]++;
}

double hgf_metrics_get(const hgf_metrics *m, const char *name, const char *labels)
{
    family *f = find_family(m, name);
    series *s = f ? find_series(f, labels) : NULL;
    return s ? s->value : 0;
}

void hgf_metrics_clear(hgf_metrics *m, const char *name)
{
    family *f = find_family(m, name);
    if (f) {
        free_series(f->series);
        free(f->slots);
        f->series = NULL;
        f->tail = &f->series;
        f->slots = NULL;
        f->n_slots = f->n_series = 0;
    }
}

static void put_labels(hgf_buf *out, const char *labels, const char *extra)
{
    int have = labels && *labels;
    if (!have && !extra)
        return;
    hgf_buf_printf(out, "{%s%s%s}", have ? labels : "", have && extra ? "," : "",
                   extra ? extra : "");
}

static void render_histogram(hgf_buf *out, const family *f, const series *s)
{
    char le[48];
    for (int i = 0; i < NBUCKETS; i++) {
        snprintf(le, sizeof le, "le=\"%g\"", BUCKETS[i]);
        hgf_buf_printf(out, "%s_bucket", f->name);
        put_labels(out, s->labels, le);
        hgf_buf_printf(out, " %lu\n", s->buckets[i]);
    }
    hgf_buf_printf(out, "%s_bucket", f->name);
    put_labels(out, s->labels, "le=\"+Inf\"");
    hgf_buf_printf(out, " %lu\n%s_sum", s->count, f->name);
    put_labels(out, s->labels, NULL);
    hgf_buf_printf(out, " %.6f\n%s_count", s->value, f->name);
    put_labels(out, s->labels, NULL);
    hgf_buf_printf(out, " %lu\n", s->count);
}

int hgf_metrics_render(const hgf_metrics *m, hgf_buf *out)
{
    static const char *types[] = {"counter", "gauge", "histogram"};
    for (const family *f = m->families; f; f = f->next) {
        if (f->help)
            hgf_buf_printf(out, "# HELP %s %s\n", f->name, f->help);
        hgf_buf_printf(out, "# TYPE %s %s\n", f->name, types[f->type]);
        for (const series *s = f->series; s; s = s->next) {
            if (f->type == HGF_METRIC_HISTOGRAM) {
                render_histogram(out, f, s);
                continue;
            }
            hgf_buf_puts(out, f->name);
            put_labels(out, s->labels, NULL);
            hgf_buf_printf(out, " %.17g\n", s->value);
        }
    }
    return 0;
}

void hgf_metrics_escape(const char *value, char *out, size_t n)
{
    size_t j = 0;
    for (const char *p = value; *p && j + 3 < n; p++) {
        if (*p == '"' || *p == '\\') {
            out[j++] = '\\';
            out[j++] = *p;
        } else if (*p == '\n') {
            out[j++] = '\\';
            out[j++] = 'n';
        } else {
            out[j++] = *p;
        }
    }
    out[j] = '\0';
}
