/* Call counters per (service, operation, outcome) for GET /_sim/stats.
 * Outcome is "ok", the error code the client saw, "ServiceUnavailable" for
 * an injected empty 503, or "dropped" for a connection closed without an
 * answer. Thread-safe.
 *
 * Ownership: the stats object owns its counters; hgf_sim_stats_json returns
 * a new reference the caller must decref. */
#ifndef ECRSIM_STATS_H
#define ECRSIM_STATS_H

#include <jansson.h>

#define HGF_SIM_OUTCOME_OK "ok"
#define HGF_SIM_OUTCOME_DROPPED "dropped"

typedef struct hgf_sim_stats hgf_sim_stats;

int hgf_sim_stats_create(hgf_sim_stats **out);
void hgf_sim_stats_free(hgf_sim_stats *s);

/* Counts one call; 0 or HGF_ENOMEM. Names longer than 63 bytes are cut.
 * service is "ecr", "sts", "registry", "imds", "container" or "s3". */
int hgf_sim_stats_count(hgf_sim_stats *s, const char *service, const char *op,
                        const char *outcome);
void hgf_sim_stats_reset(hgf_sim_stats *s);

/* {"total": N,
 *  "calls": {"<op>": {"calls": N, "ok": N, "throttled": N, "dropped": N,
 *                     "<error code>": N, ...}, ...},
 *  "services": {"<service>": N, ...},
 *  "sts": {"<Action>": N, ...}}
 * "throttled" sums the throttling codes (ThrottlingException, Throttling,
 * TOOMANYREQUESTS); every op object has calls, ok, throttled and dropped. */
json_t *hgf_sim_stats_json(hgf_sim_stats *s);

#endif
