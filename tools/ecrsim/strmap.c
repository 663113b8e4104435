#include "strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hgfleet/err.h"

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    void *value;
    char key[];
} entry;

struct hgf_sim_map {
    entry **slots;
    size_t n_slots;  /* a power of two */
    size_t count;
};

#define INITIAL_SLOTS 64

static uint64_t hash_key(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h ^ (h >> 29);
}

hgf_sim_map *hgf_sim_map_create(void)
{
    hgf_sim_map *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->slots = calloc(INITIAL_SLOTS, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    m->n_slots = INITIAL_SLOTS;
    return m;
}

void hgf_sim_map_free(hgf_sim_map *m, void (*free_value)(void *value))
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_slots; i++)
        for (entry *e = m->slots[i], *next; e; e = next) {
            next = e->next;
            if (free_value)
                free_value(e->value);
            free(e);
        }
    free(m->slots);
    free(m);
}

static entry *find(const hgf_sim_map *m, const char *key, uint64_t h)
{
    for (entry *e = m->slots[h & (m->n_slots - 1)]; e; e = e->next)
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

void *hgf_sim_map_get(const hgf_sim_map *m, const char *key)
{
    entry *e = find(m, key, hash_key(key));
    return e ? e->value : NULL;
}

/* Doubling at a load factor of 1 keeps chains short; a failed grow only
 * costs speed, so it is not an error. */
static void grow(hgf_sim_map *m)
{
    size_t n = m->n_slots * 2;
    entry **slots = calloc(n, sizeof *slots);
    if (!slots)
        return;
    for (size_t i = 0; i < m->n_slots; i++)
        for (entry *e = m->slots[i], *next; e; e = next) {
            next = e->next;
            e->next = slots[e->hash & (n - 1)];
            slots[e->hash & (n - 1)] = e;
        }
    free(m->slots);
    m->slots = slots;
    m->n_slots = n;
}

int hgf_sim_map_put(hgf_sim_map *m, const char *key, void *value)
{
    uint64_t h = hash_key(key);
    if (find(m, key, h))
        return HGF_EEXIST;
    size_t len = strlen(key);
    entry *e = malloc(sizeof *e + len + 1);
    if (!e)
        return HGF_ENOMEM;
    memcpy(e->key, key, len + 1);
    e->hash = h;
    e->value = value;
    e->next = m->slots[h & (m->n_slots - 1)];
    m->slots[h & (m->n_slots - 1)] = e;
    if (++m->count > m->n_slots)
        grow(m);
    return 0;
}

int hgf_sim_map_set(hgf_sim_map *m, const char *key, void *value, void **old)
{
    entry *e = find(m, key, hash_key(key));
    *old = e ? e->value : NULL;
    if (!e)
        return hgf_sim_map_put(m, key, value);
    e->value = value;
    return 0;
}

void *hgf_sim_map_remove(hgf_sim_map *m, const char *key)
{
    uint64_t h = hash_key(key);
    for (entry **p = &m->slots[h & (m->n_slots - 1)]; *p; p = &(*p)->next) {
        entry *e = *p;
        if (e->hash != h || strcmp(e->key, key) != 0)
            continue;
        void *value = e->value;
        *p = e->next;
        free(e);
        m->count--;
        return value;
    }
    return NULL;
}

size_t hgf_sim_map_count(const hgf_sim_map *m)
{
    return m->count;
}

void hgf_sim_map_sweep(hgf_sim_map *m, int (*drop)(void *ctx, void *value), void *ctx,
                       void (*free_value)(void *value))
{
    for (size_t i = 0; i < m->n_slots; i++)
        for (entry **p = &m->slots[i]; *p;) {
            entry *e = *p;
            if (!drop(ctx, e->value)) {
                p = &e->next;
                continue;
            }
            *p = e->next;
            if (free_value)
                free_value(e->value);
            free(e);
            m->count--;
        }
}
