#include "stats.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hgfleet/err.h"

typedef struct counter {
    char service[16];
    char op[64];
    char outcome[64];
    uint64_t n;
} counter;

/* A handful of (operation, outcome) pairs exist, so a flat array is enough.
 * Clients choose the operation names (X-Amz-Target, Action), so the table
 * is capped and anything past the cap is counted under one overflow pair. */
#define MAX_COUNTERS 256
#define OVERFLOW "(other)"
struct hgf_sim_stats {
    pthread_mutex_t lock;
    counter *c;
    size_t n, cap;
    uint64_t total;
};

static const char *const THROTTLE_CODES[] = {"ThrottlingException", "Throttling",
                                             "TOOMANYREQUESTS", NULL};

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

static counter *find(hgf_sim_stats *s, const char *service, const char *op, const char *outcome)
{
    for (size_t i = 0; i < s->n; i++)
        if (strncmp(s->c[i].op, op, 63) == 0 && strncmp(s->c[i].outcome, outcome, 63) == 0 &&
            strncmp(s->c[i].service, service, 15) == 0)
            return &s->c[i];
    return NULL;
}

static counter *slot(hgf_sim_stats *s, const char *service, const char *op, const char *outcome)
{
    counter *found = find(s, service, op, outcome);
    if (found)
        return found;
    if (s->n >= MAX_COUNTERS - 1) {
        service = op = outcome = OVERFLOW;
        if ((found = find(s, service, op, outcome)) != NULL)
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
    snprintf(c->service, sizeof c->service, "%s", service);
    snprintf(c->op, sizeof c->op, "%s", op);
    snprintf(c->outcome, sizeof c->outcome, "%s", outcome);
    c->n = 0;
    return c;
}

int hgf_sim_stats_count(hgf_sim_stats *s, const char *service, const char *op,
                        const char *outcome)
{
    pthread_mutex_lock(&s->lock);
    counter *c = slot(s, service, op, outcome);
    if (c) {
        c->n++;
        s->total++;
    }
    pthread_mutex_unlock(&s->lock);
    return c ? 0 : HGF_ENOMEM;
}

void hgf_sim_stats_reset(hgf_sim_stats *s)
{
    pthread_mutex_lock(&s->lock);
    s->n = 0;
    s->total = 0;
    pthread_mutex_unlock(&s->lock);
}

static int is_throttle(const char *outcome)
{
    for (size_t i = 0; THROTTLE_CODES[i]; i++)
        if (strcmp(outcome, THROTTLE_CODES[i]) == 0)
            return 1;
    return 0;
}

static int add_to(json_t *obj, const char *key, uint64_t n)
{
    json_t *v = json_object_get(obj, key);
    json_int_t base = v ? json_integer_value(v) : 0;
    return json_object_set_new(obj, key, json_integer(base + (json_int_t)n));
}

static json_t *op_object(json_t *calls, const char *op)
{
    json_t *per_op = json_object_get(calls, op);
    if (per_op)
        return per_op;
    per_op = json_pack("{s:i, s:i, s:i, s:i}", "calls", 0, "ok", 0, "throttled", 0, "dropped",
                       0);
    return json_object_set_new(calls, op, per_op) == 0 ? per_op : NULL;
}

static int add_counter(json_t *calls, json_t *services, json_t *sts, const counter *c)
{
    json_t *per_op = op_object(calls, c->op);
    int bad = !per_op || add_to(per_op, "calls", c->n) || add_to(per_op, c->outcome, c->n) ||
              add_to(services, c->service, c->n);
    if (!bad && is_throttle(c->outcome))
        bad = add_to(per_op, "throttled", c->n);
    if (!bad && strcmp(c->service, "sts") == 0)
        bad = add_to(sts, c->op, c->n);
    return bad ? -1 : 0;
}

json_t *hgf_sim_stats_json(hgf_sim_stats *s)
{
    json_t *calls = json_object(), *services = json_object(), *sts = json_object();
    int bad = !calls || !services || !sts;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; !bad && i < s->n; i++)
        bad = add_counter(calls, services, sts, &s->c[i]) != 0;
    json_int_t total = (json_int_t)s->total;
    pthread_mutex_unlock(&s->lock);
    if (bad) {
        json_decref(calls);
        json_decref(services);
        json_decref(sts);
        return NULL;
    }
    return json_pack("{s:I, s:o, s:o, s:o}", "total", total, "calls", calls, "services",
                     services, "sts", sts);
}
