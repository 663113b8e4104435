/* STS over the Query protocol (POST / with a form-encoded body, XML
 * replies): AssumeRole, AssumeRoleWithWebIdentity (unsigned) and
 * GetCallerIdentity, with STS's validation rules, trust and ExternalId
 * checks, the role-chaining 1 h cap and its error shapes. Also mints the
 * role sessions that IMDS and the container endpoint hand out.
 *
 * Issued credentials expire after min(DurationSeconds, the scenario's
 * credential_duration_seconds).
 *
 * Ownership: borrows auth, iam and faults (they must outlive it); responses
 * are written into the caller's hgf_sim_resp; hgf_sim_session values are
 * the caller's (they hold secrets: wipe them after use). */
#ifndef ECRSIM_STS_H
#define ECRSIM_STS_H

#include <stddef.h>
#include <time.h>

#include "auth.h"
#include "faults.h"
#include "iam.h"
#include "simhttp.h"

#define HGF_SIM_STS_XMLNS "https://sts.amazonaws.com/doc/2011-06-15/"

typedef struct hgf_sim_sts hgf_sim_sts;

int hgf_sim_sts_create(hgf_sim_auth *auth, hgf_sim_iam *iam, hgf_sim_faults *faults,
                       hgf_sim_sts **out);
void hgf_sim_sts_free(hgf_sim_sts *sts);

/* The Action of a form-encoded request into out ("" when there is none):
 * for routing, faults and stats before the request is served. */
void hgf_sim_sts_action(const hgf_sim_req *req, char *out, size_t n);

/* Serves one STS request at time `now`. *caller receives who signed it
 * (zeroed when unsigned or rejected); why a log diagnostic. */
void hgf_sim_sts_handle(hgf_sim_sts *sts, const hgf_sim_req *req, time_t now,
                        hgf_sim_resp *resp, hgf_sim_caller *caller, hgf_err *why);

/* STS's XML error for e (aws_code, msg) with the status STS uses. */
void hgf_sim_sts_error(hgf_sim_resp *resp, const hgf_err *e);

/* Mints credentials for a session of role_arn named session_name, valid
 * for `duration` seconds (capped by the scenario). 0, HGF_EINPUT when
 * role_arn is no role ARN, HGF_ENOMEM/HGF_EFAIL. */
int hgf_sim_sts_issue(hgf_sim_sts *sts, const char *role_arn, const char *session_name,
                      long duration, time_t now, hgf_sim_session *out);

#endif
