/* The simulator's control API under /_sim/ (no SigV4, never faulted):
 *   GET    /_sim/truth     the whole fleet as ground truth, streamed (with
 *                          every mutation and due lifecycle expiration), and
 *                          its posture: per repository its policies' facts,
 *                          per image its config user, and per registry and
 *                          for the fleet "posture" counts (no_lifecycle_policy,
 *                          repository_policy_allows_everyone,
 *                          image_runs_as_root, untagged_expiry_days: window
 *                          in days -> repositories)
 *   GET    /_sim/stats     call counts per operation and outcome (stats.h)
 *   DELETE /_sim/stats     resets the counts
 *   GET    /_sim/config    the fault configuration (faults.h)
 *   POST   /_sim/config    changes it; answers the new configuration
 *   GET    /_sim/scenario  the IAM scenario without its secrets
 *   POST   /_sim/scenario  replaces the scenario (iam.c); answers its summary
 *   GET    /_sim/webhook   the EventBridge webhook without secrets (webhook.h)
 *   POST   /_sim/webhook   configures it; DELETE removes it
 *   POST   /_sim/push, /_sim/retag, /_sim/delete, /_sim/lifecycle
 *   GET    /_sim/events    delivered events; DELETE clears them (mutate.h)
 * Errors are {"error": "<message naming the field>"} with 400, 404 or 405.
 *
 * Ownership: borrows the services; the truth stream takes no ownership of
 * the fleet either, so the services must outlive the server. */
#ifndef ECRSIM_CONTROL_H
#define ECRSIM_CONTROL_H

#include "dispatch.h"
#include "simhttp.h"

#define HGF_SIM_CONTROL_PREFIX "/_sim/"

/* Fills resp for a request whose path starts with HGF_SIM_CONTROL_PREFIX. */
void hgf_sim_control_handle(const hgf_sim_services *svc, const hgf_sim_req *req,
                            hgf_sim_resp *resp);

#endif
