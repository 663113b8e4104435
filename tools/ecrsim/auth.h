/* The simulator's access keys and the SigV4 check every signed request
 * passes. Keys come from three places, looked up in this order:
 *   --key flags        full-access principals (in one account, or any)
 *   issued sessions    "ASIA..." keys this module mints for STS, IMDS and the
 *                      container endpoint; they carry a session token and expire
 *   the IAM scenario   principals with their own access keys and policies
 *
 * Each service answers failures with its own codes (ECR's JSON 1.1 names,
 * STS's Query names), so the check takes the service name.
 *
 * Ownership: the auth object owns its keys and sessions and wipes their
 * secrets when freed; it borrows the iam object, which must outlive it.
 * hgf_sim_caller and hgf_sim_session are plain values the caller owns.
 * Secrets never appear in any message this module produces. */
#ifndef ECRSIM_AUTH_H
#define ECRSIM_AUTH_H

#include <stddef.h>
#include <time.h>

#include "hgfleet/err.h"
#include "iam.h"
#include "simhttp.h"

#define HGF_SIM_DEFAULT_AKID "AKIDECRSIMDEFAULT"
#define HGF_SIM_DEFAULT_SECRET "ecrsim-default-secret"
/* ECR rejects signatures whose x-amz-date is further than this from its
 * clock; STS allows 15 minutes. */
#define HGF_SIM_MAX_SKEW 300
#define HGF_SIM_STS_MAX_SKEW 900

/* Temporary credentials as STS hands them out. */
typedef struct hgf_sim_session {
    char access_key_id[24];      /* "ASIA" + 16 */
    char secret_access_key[48];
    char session_token[200];
    time_t expires;
} hgf_sim_session;

typedef struct hgf_sim_auth hgf_sim_auth;

/* home_account is the account a --key valid in any account reports as its
 * own (GetCallerIdentity, trust policies). */
int hgf_sim_auth_create(hgf_sim_iam *iam, const char *home_account, hgf_sim_auth **out);
void hgf_sim_auth_free(hgf_sim_auth *auth);

/* Adds a key from "AKID:SECRET:ACCOUNT" (ACCOUNT: 12 digits or '*').
 * HGF_EINPUT with a message that names the part at fault (never the secret);
 * a duplicate AKID is an error too. */
int hgf_sim_auth_add_key(hgf_sim_auth *auth, const char *spec, hgf_err *err);
size_t hgf_sim_auth_count(hgf_sim_auth *auth);

/* Mints session credentials for `who` (kind HGF_SIM_CALLER_SESSION, with
 * arn, user_id, role_arn, account and expires set). 0 or HGF_ENOMEM /
 * HGF_EFAIL (no randomness). Expired sessions are forgotten a day after
 * they expire. */
int hgf_sim_auth_issue(hgf_sim_auth *auth, const hgf_sim_caller *who, time_t now,
                       hgf_sim_session *out);

/* Checks the request's SigV4 Authorization header for `service` ("ecr" or
 * "sts") against the keys and the clock `now`. 0 fills *caller; otherwise
 * HGF_EAWS with err->aws_code set to the code that service answers with
 * (ECR: MissingAuthenticationTokenException, IncompleteSignatureException,
 * UnrecognizedClientException, InvalidSignatureException,
 * ExpiredTokenException; STS: MissingAuthenticationToken, IncompleteSignature,
 * InvalidClientTokenId, SignatureDoesNotMatch, ExpiredToken) and err->msg to
 * AWS's message. `why`, when not NULL, receives a diagnostic for the server
 * log (no secrets in it). */
int hgf_sim_auth_check(hgf_sim_auth *auth, const hgf_sim_req *req, const char *service,
                       time_t now, hgf_sim_caller *caller, hgf_err *err, hgf_err *why);

#endif
