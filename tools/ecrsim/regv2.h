/* The registry v2 API of every simulated registry, on the same server.
 *
 * One server serves all registries, so a registry's proxyEndpoint (what
 * GetAuthorizationToken returns) is a URL prefix:
 *     <base>/_registry/<account>/<region>
 * under which GET /v2/, HEAD|GET /v2/<repo>/manifests/<tag|digest> and
 * HEAD|GET /v2/<repo>/blobs/<digest> are served with Basic auth
 * ("AWS:<password>" from GetAuthorizationToken). A blob GET answers 307 to
 * <base>/_sim/blob/<token>, a presigned-S3-like URL that needs no auth.
 *
 * Passwords and blob URLs are HMAC-sealed payloads (no server-side state):
 * a password carries the principal, its region and its expiry, and is
 * checked against the current IAM scenario on every request.
 *
 * Errors use the registry format {"errors":[{"code":..,"message":..}]}:
 * 401 UNAUTHORIZED (missing, bad or expired token, with WWW-Authenticate),
 * 403 DENIED (no ecr:BatchGetImage / ecr:GetDownloadUrlForLayer, or no
 * repository policy for a cross-account pull), 404 NAME_UNKNOWN,
 * MANIFEST_UNKNOWN, BLOB_UNKNOWN, 429 TOOMANYREQUESTS (quota).
 *
 * Ownership: borrows fleet, iam and faults (they must outlive it); copies
 * base_url. Output goes to caller-owned buffers and responses. */
#ifndef ECRSIM_REGV2_H
#define ECRSIM_REGV2_H

#include <time.h>

#include "faults.h"
#include "fleet.h"
#include "hgfleet/buf.h"
#include "hgfleet/err.h"
#include "iam.h"
#include "simhttp.h"

#define HGF_SIM_REGISTRY_PREFIX "/_registry/"
#define HGF_SIM_BLOB_PREFIX "/_sim/blob/"

typedef struct hgf_sim_regv2 hgf_sim_regv2;

/* base_url is "http://host:port" as clients reach the server, or NULL to
 * take the host from each request's Host header. */
int hgf_sim_regv2_create(hgf_sim_fleet *fleet, hgf_sim_iam *iam, hgf_sim_faults *faults,
                         const char *base_url, hgf_sim_regv2 **out, hgf_err *err);
void hgf_sim_regv2_free(hgf_sim_regv2 *r);

/* base64("AWS:<password>") for caller (its region is the token's), valid
 * until `expires`, appended to out. */
int hgf_sim_regv2_authorization_token(hgf_sim_regv2 *r, const hgf_sim_caller *caller,
                                      time_t expires, hgf_buf *out);
/* The proxyEndpoint of (account, region), appended to out. */
int hgf_sim_regv2_endpoint(hgf_sim_regv2 *r, const hgf_sim_req *req, const char *account,
                           const char *region, hgf_buf *out);

/* The stats name of a /_registry/ request: "registry:GetManifest", ... */
const char *hgf_sim_regv2_op(const hgf_sim_req *req);

/* Serves a request under HGF_SIM_REGISTRY_PREFIX at time now; *caller
 * receives the token's principal (zeroed when there is none). */
void hgf_sim_regv2_handle(hgf_sim_regv2 *r, const hgf_sim_req *req, time_t now,
                          hgf_sim_resp *resp, hgf_sim_caller *caller, hgf_err *why);
/* Serves GET HGF_SIM_BLOB_PREFIX<token>. */
void hgf_sim_regv2_blob(hgf_sim_regv2 *r, const hgf_sim_req *req, time_t now,
                        hgf_sim_resp *resp);

/* A registry-format error body with the given status. */
void hgf_sim_regv2_error(hgf_sim_resp *resp, int status, const char *code, const char *message);

#endif
