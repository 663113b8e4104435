/* Routes one request to the service that answers it, applies the injected
 * faults to AWS calls and counts the outcome:
 *   POST /  with X-Amz-Target AmazonEC2ContainerRegistry_V20150921.*  ECR
 *           with a form-encoded body, or a SigV4 scope of service sts  STS
 *           anything else                                ECR's error shapes
 *   /_registry/<account>/<region>/v2/...                 registry v2
 *   /latest/...                                          IMDSv2
 *   /_sim/container-credentials                          container credentials
 *   /_sim/blob/<token>                                   presigned blob download
 *   /_sim/...                                            the control API
 * Faults (latency, drops, 5xx, throttles) apply to ECR, STS and registry
 * calls only; the control API is neither faulted nor counted.
 *
 * Ownership: hgf_sim_services borrows every service; the caller keeps them
 * alive while requests are served. */
#ifndef ECRSIM_DISPATCH_H
#define ECRSIM_DISPATCH_H

#include "auth.h"
#include "ecr_api.h"
#include "faults.h"
#include "fleet.h"
#include "hostcreds.h"
#include "iam.h"
#include "mutate.h"
#include "regv2.h"
#include "simhttp.h"
#include "stats.h"
#include "sts.h"
#include "webhook.h"

typedef struct hgf_sim_services {
    hgf_sim_fleet *fleet;
    hgf_sim_iam *iam;
    hgf_sim_auth *auth;
    hgf_sim_faults *faults;
    hgf_sim_stats *stats;
    hgf_sim_regv2 *registry;
    hgf_sim_ecr *ecr;
    hgf_sim_sts *sts;
    hgf_sim_hostcreds *host;
    hgf_sim_webhook *webhook;
    hgf_sim_mutate *mutate;
    unsigned org_suspended;  /* Organizations: the last N accounts are SUSPENDED */
} hgf_sim_services;

/* What one request did, for the server's log line (no secrets). */
typedef struct hgf_sim_outcome {
    char service[16];  /* "" for the control API */
    char op[96];
    char akid[129];
    char region[64];
    char why[256];
} hgf_sim_outcome;

/* Fills resp (resp->drop set: close without answering). too_large: the body
 * was cut at the server's limit. */
void hgf_sim_dispatch(const hgf_sim_services *svc, const hgf_sim_req *req, int too_large,
                      hgf_sim_resp *resp, hgf_sim_outcome *o);

#endif
