/* The host's credential endpoints, served on the simulator's port:
 *   IMDSv2     PUT /latest/api/token (X-aws-ec2-metadata-token-ttl-seconds:
 *              1..21600), then with X-aws-ec2-metadata-token:
 *              GET /latest/meta-data/iam/security-credentials/        role name
 *              GET /latest/meta-data/iam/security-credentials/<name>  JSON creds
 *              for the scenario's instance_role (401 without a valid token)
 *   container  GET /_sim/container-credentials with "Authorization:
 *              <container_token>": JSON creds for container_role (401 without
 *              the header, 403 with a wrong token)
 *
 * Both hand out the same session until half its lifetime is gone, as the
 * real endpoints rotate credentials ahead of expiry; sessions last 6 h or
 * the scenario's credential_duration_seconds. A role absent from the
 * scenario's "roles" still gets credentials, which are then allowed nothing.
 *
 * Ownership: borrows sts and iam (they must outlive it); keeps copies of the
 * current sessions and wipes them when replaced or freed. */
#ifndef ECRSIM_HOSTCREDS_H
#define ECRSIM_HOSTCREDS_H

#include <time.h>

#include "hgfleet/err.h"
#include "iam.h"
#include "simhttp.h"
#include "sts.h"

#define HGF_SIM_IMDS_PREFIX "/latest/"
#define HGF_SIM_CONTAINER_PATH "/_sim/container-credentials"

typedef struct hgf_sim_hostcreds hgf_sim_hostcreds;

int hgf_sim_hostcreds_create(hgf_sim_sts *sts, hgf_sim_iam *iam, hgf_sim_hostcreds **out,
                             hgf_err *err);
void hgf_sim_hostcreds_free(hgf_sim_hostcreds *h);

/* The stats name of an IMDS request: "imds:GetToken", ... */
const char *hgf_sim_hostcreds_imds_op(const hgf_sim_req *req);

void hgf_sim_hostcreds_imds(hgf_sim_hostcreds *h, const hgf_sim_req *req, time_t now,
                            hgf_sim_resp *resp);
void hgf_sim_hostcreds_container(hgf_sim_hostcreds *h, const hgf_sim_req *req, time_t now,
                                 hgf_sim_resp *resp);

#endif
