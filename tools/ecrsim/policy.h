/* The policy documents ecrsim serves: a repository's lifecycle policy
 * (GetLifecyclePolicy) and its repository policy (GetRepositoryPolicy),
 * rendered from the seed's choices (hgf_sim_fleet_repo_posture) plus, for
 * repository policies, the IAM scenario's repository_policies grants on
 * that repository. /_sim/truth reports the same facts from the same
 * functions, decided by construction rather than by parsing the texts.
 *
 * Ownership: texts are appended to caller-owned buffers; the fleet must be
 * locked around every call (the repository is read). */
#ifndef ECRSIM_POLICY_H
#define ECRSIM_POLICY_H

#include "fleet.h"
#include "hgfleet/buf.h"
#include "iam.h"

/* The lifecycle policy's text into out, with its untagged window (-1 for
 * none) in *untagged_days; HGF_ENOTFOUND when the repository has none. */
int hgf_sim_policy_lifecycle(const hgf_sim_registry *reg, const hgf_sim_repo *repo, hgf_buf *out,
                             int *untagged_days);

/* The repository policy's text into out; *everyone = 1 when an Allow
 * statement admits "*" without a narrowing condition. HGF_ENOTFOUND when
 * neither the seed nor the scenario gives the repository a policy. */
int hgf_sim_policy_repository(hgf_sim_iam *iam, const hgf_sim_registry *reg,
                              const hgf_sim_repo *repo, hgf_buf *out, int *everyone);

#endif
