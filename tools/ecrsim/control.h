/* The simulator's control API under /_sim/ (no SigV4):
 *   GET /_sim/truth  the whole fleet as ground truth, streamed
 *   GET /_sim/stats  call counts per operation and outcome
 *
 * Ownership: borrows the fleet and stats; the truth stream takes no
 * ownership of them either, so both must outlive the server. */
#ifndef ECRSIM_CONTROL_H
#define ECRSIM_CONTROL_H

#include "fleet.h"
#include "simhttp.h"
#include "stats.h"

#define HGF_SIM_CONTROL_PREFIX "/_sim/"

/* Fills resp for a request whose path starts with HGF_SIM_CONTROL_PREFIX
 * (404 for unknown paths, 405 for other methods). */
void hgf_sim_control_handle(hgf_sim_fleet *fleet, hgf_sim_stats *stats, const hgf_sim_req *req,
                            hgf_sim_resp *resp);

#endif
