/* The simulator's access keys and the SigV4 check every AWS request passes.
 *
 * Keys are static (AKID, secret, account or any account). Later versions
 * add STS-issued session credentials, so the table has its own lock.
 *
 * Ownership: the auth table owns its keys and wipes the secrets when freed;
 * hgf_sim_caller is a plain value the caller owns. Secrets never appear in
 * any message this module produces. */
#ifndef ECRSIM_AUTH_H
#define ECRSIM_AUTH_H

#include <stddef.h>
#include <time.h>

#include "hgfleet/err.h"
#include "simhttp.h"

#define HGF_SIM_DEFAULT_AKID "AKIDECRSIMDEFAULT"
#define HGF_SIM_DEFAULT_SECRET "ecrsim-default-secret"
/* AWS rejects signatures whose x-amz-date is further than this from its clock. */
#define HGF_SIM_MAX_SKEW 300

typedef struct hgf_sim_caller {
    char access_key_id[129];
    char account[13];   /* "" when the key may act in any account */
    char region[64];    /* the credential scope's region: the request's region */
} hgf_sim_caller;

typedef struct hgf_sim_auth hgf_sim_auth;

int hgf_sim_auth_create(hgf_sim_auth **out);
void hgf_sim_auth_free(hgf_sim_auth *auth);

/* Adds a key from "AKID:SECRET:ACCOUNT" (ACCOUNT: 12 digits or '*').
 * HGF_EINPUT with a message that names the part at fault (never the secret);
 * a duplicate AKID is an error too. */
int hgf_sim_auth_add_key(hgf_sim_auth *auth, const char *spec, hgf_err *err);
size_t hgf_sim_auth_count(hgf_sim_auth *auth);

/* Checks the request's SigV4 Authorization header for `service` against
 * the key table and the clock `now`. 0 fills *caller; otherwise HGF_EAWS with
 * err->aws_code set to the code AWS answers with (MissingAuthenticationToken-
 * Exception, IncompleteSignatureException, UnrecognizedClientException,
 * InvalidSignatureException) and err->msg to AWS's message. `why`, when not
 * NULL, receives a diagnostic for the server log (no secrets in it). */
int hgf_sim_auth_check(hgf_sim_auth *auth, const hgf_sim_req *req, const char *service,
                       time_t now, hgf_sim_caller *caller, hgf_err *err, hgf_err *why);

#endif
