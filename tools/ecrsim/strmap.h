/* A string-keyed hash map for the simulator's tables that grow with use
 * (issued sessions, quota buckets, moved
 * tags), so lookups stay O(1) however many
 * accounts or sessions a benchmark creates. Not thread-safe: the owning
 * module locks around it.
 *
 * Ownership: the map copies keys and owns the copies; values are opaque
 * pointers the map stores but never frees except through the free_value
 * callbacks given to hgf_sim_map_free and hgf_sim_map_sweep. */
#ifndef ECRSIM_STRMAP_H
#define ECRSIM_STRMAP_H

#include <stddef.h>

typedef struct hgf_sim_map hgf_sim_map;

/* NULL when out of memory. */
hgf_sim_map *hgf_sim_map_create(void);
/* free_value may be NULL. */
void hgf_sim_map_free(hgf_sim_map *m, void (*free_value)(void *value));

void *hgf_sim_map_get(const hgf_sim_map *m, const char *key);
/* Adds key -> value: 0, HGF_EEXIST when the key is present (nothing
 * changes), HGF_ENOMEM. */
int hgf_sim_map_put(hgf_sim_map *m, const char *key, void *value);
/* Adds or replaces key -> value; *old receives the replaced value (NULL
 * when the key was new). 0 or HGF_ENOMEM. */
int hgf_sim_map_set(hgf_sim_map *m, const char *key, void *value, void **old);
/* Removes key and returns its value (NULL when absent); the caller frees
 * the value. */
void *hgf_sim_map_remove(hgf_sim_map *m, const char *key);
size_t hgf_sim_map_count(const hgf_sim_map *m);

/* Calls drop(ctx, value) for every entry and removes (and frees with
 * free_value) those for which it returns nonzero. */
void hgf_sim_map_sweep(hgf_sim_map *m, int (*drop)(void *ctx, void *value), void *ctx,
                       void (*free_value)(void *value));

#endif
