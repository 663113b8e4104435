/* Call counters per (operation, outcome) for GET /_sim/stats. Outcome is
 * "ok" or the AWS error code. Thread-safe.
 *
 * Ownership: the stats object owns its counters; hgf_sim_stats_json returns
 * a new reference the caller must decref. */
#ifndef ECRSIM_STATS_H
#define ECRSIM_STATS_H

#include <jansson.h>

typedef struct hgf_sim_stats hgf_sim_stats;

int hgf_sim_stats_create(hgf_sim_stats **out);
void hgf_sim_stats_free(hgf_sim_stats *s);

/* Counts one call; 0 or HGF_ENOMEM. Names longer than 63 bytes are cut. */
int hgf_sim_stats_count(hgf_sim_stats *s, const char *op, const char *outcome);

/* {"total":N,"calls":{"<op>":{"<outcome>":N,...},...}} */
json_t *hgf_sim_stats_json(hgf_sim_stats *s);

#endif
