#include "stats.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hgfleet/err.h"

typedef struct counter {
    char op[64];
    char outcome[64];
    uint64_t n;
} counter;

/* A handful of (operation, outcome) pairs exist, so a flat array is enough.
 * Clients choose the operation names (X-Amz-Target), so the table is capped
 * and anything past the cap is counted under one overflow pair. */
#define MAX_COUNTERS 256
#define OVERFLOW "(other)"
struct hgf_sim_stats {
    pthread_mutex_t lock;
    counter *c;
    size_t n, cap;
    uint64_t total;
};

int hgf_sim_stats_create(hgf_sim_stats **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return HGF_ENOMEM;
    pthread_mutex_init(&(*out)->lock, NULL);
    return 0;
}

void hgf_sim_stats_free(hgf_sim_stats *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s->c);
    free(s);
}

static counter *find(hgf_sim_stats *s, const char *op, const char *outcome)
{
    for (size_t i = 0; i < s->n; i++)
        if (strncmp(s->c[i].op, op, 63) == 0 && strncmp(s->c[i].outcome, outcome, 63) == 0)
            return &s->c[i];
    return NULL;
}

static counter *slot(hgf_sim_stats *s, const char *op, const char *outcome)
{
    counter *found = find(s, op, outcome);
    if (found)
        return found;
    if (s->n >= MAX_COUNTERS - 1) {
        op = outcome = OVERFLOW;
        if ((found = find(s, op, outcome)) != NULL)
            return found;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        counter *c = realloc(s->c, cap * sizeof *c);
        if (!c)
            return NULL;
        s->c = c;
        s->cap = cap;
    }
    counter *c = &s->c[s->n++];
    snprintf(c->op, sizeof c->op, "%s", op);
    snprintf(c->outcome, sizeof c->outcome, "%s", outcome);
    c->n = 0;
    return c;
}

int hgf_sim_stats_count(hgf_sim_stats *s, const char *op, const char *outcome)
{
    pthread_mutex_lock(&s->lock);
    counter *c = slot(s, op, outcome);
    if (c) {
        c->n++;
        s->total++;
    }
    pthread_mutex_unlock(&s->lock);
    return c ? 0 : HGF_ENOMEM;
}

static int add_counter(json_t *calls, const counter *c)
{
    json_t *per_op = json_object_get(calls, c->op);
    if (!per_op) {
        per_op = json_object();
        if (json_object_set_new(calls, c->op, per_op) != 0)
            return -1;
    }
    return json_object_set_new(per_op, c->outcome, json_integer((json_int_t)c->n));
}

json_t *hgf_sim_stats_json(hgf_sim_stats *s)
{
    json_t *calls = json_object();
    int bad = !calls;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; !bad && i < s->n; i++)
        bad = add_counter(calls, &s->c[i]) != 0;
    json_int_t total = (json_int_t)s->total;
    pthread_mutex_unlock(&s->lock);
    if (bad) {
        json_decref(calls);
        return NULL;
    }
    return json_pack("{s:I, s:o}", "total", total, "calls", calls);
}
