/* AWS Organizations (JSON 1.1, X-Amz-Target AWSOrganizationsV20161128.*,
 * SigV4 service "organizations"): ListAccounts over the fleet's accounts.
 * Account i is "account-<i>" with email account-<i>@example.com, ACTIVE,
 * except the last svc->org_suspended accounts, which are SUSPENDED. The
 * caller needs organizations:ListAccounts (a --key has it). Pages hold at
 * most MaxResults (1-20, default 20) accounts; NextToken is opaque.
 *
 * Ownership: borrows the services; fills the caller's resp and outcome. */
#ifndef ECRSIM_ORGS_H
#define ECRSIM_ORGS_H

#include <time.h>

#include "dispatch.h"

#define HGF_SIM_ORGS_TARGET_PREFIX "AWSOrganizationsV20161128."

/* 1 when the request's X-Amz-Target is an Organizations operation. */
int hgf_sim_orgs_is_target(const hgf_sim_req *req);

void hgf_sim_orgs_serve(const hgf_sim_services *svc, const hgf_sim_req *req, time_t now,
                        hgf_sim_resp *resp, hgf_sim_outcome *o);

#endif
