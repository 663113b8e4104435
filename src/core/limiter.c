#include "hgfleet/limiter.h"
#include "hgfleet/err.h"

#include <ev.h>
#include <stdlib.h>
#include <string.h>

typedef struct waiter {
    struct waiter *next;
    hgf_limiter_cb cb;
    void *arg;
} waiter;

typedef struct slot_key {
    struct slot_key *next;
    char *key;
    int held;
    waiter *head, *tail;
} slot_key;

typedef struct grant {
    struct grant *next;
    waiter *w;
} grant;

struct hgf_limiter {
    struct ev_loop *loop;
    int per_key;
    slot_key *keys;
    grant *ready, *ready_tail;  /* granted waiters, called from the idle watcher */
    ev_idle kick;
};

static void on_kick(struct ev_loop *loop, ev_idle *w, int revents)
{
    hgf_limiter *l = w->data;
    ev_idle_stop(loop, w);
    grant *g = l->ready;
    l->ready = l->ready_tail = NULL;
    while (g) {
        grant *n = g->next;
        g->w->cb(g->w->arg);
        free(g->w);
        free(g);
        g = n;
    }
}

hgf_limiter *hgf_limiter_new(struct ev_loop *loop, int per_key)
{
    hgf_limiter *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->loop = loop;
    l->per_key = per_key > 0 ? per_key : 1;
    ev_idle_init(&l->kick, on_kick);
    l->kick.data = l;
    return l;
}

void hgf_limiter_free(hgf_limiter *l)
{
    if (!l)
        return;
    ev_idle_stop(l->loop, &l->kick);
    for (grant *g = l->ready; g;) {
        grant *n = g->next;
        free(g->w);
        free(g);
        g = n;
    }
    for (slot_key *k = l->keys; k;) {
        slot_key *n = k->next;
        for (waiter *w = k->head; w;) {
            waiter *wn = w->next;
            free(w);
            w = wn;
        }
        free(k->key);
        free(k);
        k = n;
    }
    free(l);
}

static slot_key *find(const hgf_limiter *l, const char *key)
{
    for (slot_key *k = l->keys; k; k = k->next)
        if (!strcmp(k->key, key))
            return k;
    return NULL;
}

static int grant_now(hgf_limiter *l, waiter *w)
{
    grant *g = calloc(1, sizeof *g);
    if (!g)
        return HGF_ENOMEM;
    g->w = w;
    if (l->ready_tail)
        l->ready_tail->next = g;
    else
        l->ready = g;
    l->ready_tail = g;
    ev_idle_start(l->loop, &l->kick);
    return 0;
}

int hgf_limiter_acquire(hgf_limiter *l, const char *key, hgf_limiter_cb cb, void *arg)
{
    slot_key *k = find(l, key);
    if (!k) {
        k = calloc(1, sizeof *k);
        if (!k || !(k->key = strdup(key))) {
            free(k);
            return HGF_ENOMEM;
        }
        k->next = l->keys;
        l->keys = k;
    }
    waiter *w = calloc(1, sizeof *w);
    if (!w)
        return HGF_ENOMEM;
    w->cb = cb;
    w->arg = arg;
    if (k->held < l->per_key) {
        k->held++;
        if (grant_now(l, w)) {
            k->held--;
            free(w);
            return HGF_ENOMEM;
        }
        return 0;
    }
    if (k->tail)
        k->tail->next = w;
    else
        k->head = w;
    k->tail = w;
    return 0;
}

void hgf_limiter_release(hgf_limiter *l, const char *key)
{
    slot_key *k = find(l, key);
    if (!k || k->held == 0)
        return;
    waiter *w = k->head;
    if (w) {
        /* The slot passes straight to the oldest waiter. */
        k->head = w->next;
        if (!k->head)
            k->tail = NULL;
        w->next = NULL;
        if (grant_now(l, w) == 0)
            return;
        free(w);
    }
    if (--k->held == 0 && !k->head) {
        /* Forget idle keys: the list only holds registries scanning now. */
        slot_key **pp = &l->keys;
        while (*pp != k)
            pp = &(*pp)->next;
        *pp = k->next;
        free(k->key);
        free(k);
    }
}

int hgf_limiter_held(const hgf_limiter *l, const char *key)
{
    slot_key *k = find(l, key);
    return k ? k->held : 0;
}
