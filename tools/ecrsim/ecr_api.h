/* ECR's JSON 1.1 API (service "ecr") over the simulated fleet:
 * DescribeRepositories and DescribeImages, with AWS's shapes, paging and
 * error codes.
 *
 * Ownership: the handler borrows the fleet (which must outlive it) and owns
 * its token key; responses are written into the caller's hgf_sim_resp. */
#ifndef ECRSIM_ECR_API_H
#define ECRSIM_ECR_API_H

#include "auth.h"
#include "fleet.h"
#include "hgfleet/err.h"
#include "simhttp.h"

#define HGF_SIM_ECR_TARGET_PREFIX "AmazonEC2ContainerRegistry_V20150921."
#define HGF_SIM_ECR_DEFAULT_PAGE 100
#define HGF_SIM_ECR_MAX_PAGE 1000

typedef struct hgf_sim_ecr hgf_sim_ecr;

int hgf_sim_ecr_create(hgf_sim_fleet *fleet, hgf_sim_ecr **out, hgf_err *err);
void hgf_sim_ecr_free(hgf_sim_ecr *ecr);

/* Runs operation `op` (the X-Amz-Target suffix) for an authenticated caller
 * and fills resp with the result or with AWS's error (UnknownOperation-
 * Exception for an operation it does not serve). */
void hgf_sim_ecr_handle(hgf_sim_ecr *ecr, const char *op, const hgf_sim_caller *caller,
                        const hgf_sim_req *req, hgf_sim_resp *resp);

#endif
