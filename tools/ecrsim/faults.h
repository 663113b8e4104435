/* Fault injection and the simulator's clock: random throttles, 5xx answers,
 * dropped connections and latency for AWS calls (ECR, STS, registry v2),
 * per-(account, region, API) quotas, and a clock offset. Configured by flags
 * at start and by POST /_sim/config at runtime, through one JSON shape:
 *
 *   {"throttle_rate": 0.3, "error_rate": 0.05, "drop_rate": 0.02,
 *    "latency_ms": 20, "quotas": {"DescribeImages": 50}, "clock_offset": 600}
 *
 * Members left out keep their value; "quotas" replaces every quota ({}
 * removes them all). Rates are probabilities in 0..1, quotas requests per
 * second (a token bucket whose burst equals the rate), clock_offset seconds
 * added to real time for everything the simulator calls "now". Quota
 * buckets are keyed by (account, region, op): the services pass the
 * registry's account for ECR and registry calls, the caller's for STS.
 *
 * Random draws come from a counter-based generator seeded with --seed, so a
 * run with the same seed and the same request order injects the same faults.
 *
 * Ownership: the faults object owns its configuration and buckets; JSON it
 * returns is a new reference the caller decrefs. Thread-safe. */
#ifndef ECRSIM_FAULTS_H
#define ECRSIM_FAULTS_H

#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "hgfleet/err.h"

enum hgf_sim_fault {
    HGF_SIM_FAULT_NONE = 0,
    HGF_SIM_FAULT_DROP,      /* close the connection without an answer */
    HGF_SIM_FAULT_500,       /* the service's internal error */
    HGF_SIM_FAULT_503,       /* 503 with an empty body */
    HGF_SIM_FAULT_THROTTLE,  /* the service's throttling error */
};

typedef struct hgf_sim_fault_draw {
    unsigned latency_ms;
    enum hgf_sim_fault fault;
} hgf_sim_fault_draw;

typedef struct hgf_sim_faults hgf_sim_faults;

int hgf_sim_faults_create(unsigned long long seed, hgf_sim_faults **out);
void hgf_sim_faults_free(hgf_sim_faults *f);

/* Applies a configuration document (shape above). On error nothing changes
 * and err (HGF_EINPUT) names the member. */
int hgf_sim_faults_configure(hgf_sim_faults *f, json_t *doc, hgf_err *err);
/* The whole current configuration, same shape. */
json_t *hgf_sim_faults_config_json(hgf_sim_faults *f);

/* Real time plus the clock offset. */
time_t hgf_sim_faults_now(hgf_sim_faults *f);
/* The same clock in epoch milliseconds (push times, event times). */
int64_t hgf_sim_faults_now_ms(hgf_sim_faults *f);

/* What to do to one AWS call before it is served. */
void hgf_sim_faults_draw(hgf_sim_faults *f, hgf_sim_fault_draw *out);

/* Takes a token from the (account, region, op) bucket when op has a quota:
 * 1 when the call may proceed, 0 when it is throttled. */
int hgf_sim_faults_admit(hgf_sim_faults *f, const char *account, const char *region,
                         const char *op);

#endif
