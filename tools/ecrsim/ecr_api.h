/* ECR's JSON 1.1 API (service "ecr") over the simulated fleet:
 * DescribeRepositories, DescribeImages, GetAuthorizationToken,
 * GetLifecyclePolicy and GetRepositoryPolicy (the documents of policy.h),
 * with AWS's shapes, paging and error codes. Every call passes the (account, region,
 * operation) quota and the IAM check: the caller's identity policy must
 * allow ecr:<Operation> on the repository ARN (on "*" alone for
 * GetAuthorizationToken), else AccessDeniedException.
 *
 * GetAuthorizationToken's proxyEndpoint is a URL prefix on this server (see
 * regv2.h); its token expires after 12 h, or sooner with a session's
 * expiry or the scenario's credential_duration_seconds.
 *
 * Ownership: the handler borrows fleet, iam, faults and the registry (they
 * must outlive it) and owns its page token key; responses are written into
 * the caller's hgf_sim_resp. */
#ifndef ECRSIM_ECR_API_H
#define ECRSIM_ECR_API_H

#include <time.h>

#include "faults.h"
#include "fleet.h"
#include "hgfleet/err.h"
#include "iam.h"
#include "regv2.h"
#include "simhttp.h"

#define HGF_SIM_ECR_TARGET_PREFIX "AmazonEC2ContainerRegistry_V20150921."
#define HGF_SIM_ECR_DEFAULT_PAGE 100
#define HGF_SIM_ECR_MAX_PAGE 1000

typedef struct hgf_sim_ecr hgf_sim_ecr;

#define HGF_SIM_ECR_TOKEN_TTL_S (12 * 3600)

int hgf_sim_ecr_create(hgf_sim_fleet *fleet, hgf_sim_iam *iam, hgf_sim_faults *faults,
                       hgf_sim_regv2 *registry, hgf_sim_ecr **out, hgf_err *err);
void hgf_sim_ecr_free(hgf_sim_ecr *ecr);

/* Runs operation `op` (the X-Amz-Target suffix) for an authenticated caller
 * at time now and fills resp with the result or with AWS's error
 * (UnknownOperationException for an operation it does not serve). */
void hgf_sim_ecr_handle(hgf_sim_ecr *ecr, const char *op, const hgf_sim_caller *caller,
                        time_t now, const hgf_sim_req *req, hgf_sim_resp *resp);

#endif
