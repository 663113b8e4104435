/* Credential providers, the default chain, and the shared cache of
 * credentials per connection auth spec.
 *
 * Modes (DESIGN.md, the guide's auth table):
 *   static       the connection's IAM keys
 *   host         the default chain: environment, web identity (IRSA),
 *                container (ECS / EKS Pod Identity), IMDSv2
 *   assume_role  sts:AssumeRole of role_arn (with ExternalId) from the host's
 *                credentials or from the static keys; via_role_arn adds a
 *                first hop (a role chain, capped at 1 h by STS)
 *
 * Assumed credentials are cached per (role, external id, source) and shared
 * by every connection that uses the same spec. They are refreshed before
 * Expiration (with jitter) by a single in-flight refresh: callers that ask
 * during a refresh wait for it. A failed refresh keeps serving the cached
 * credentials until they really expire. ECR authorization tokens are cached
 * per registry and refreshed at half their lifetime.
 *
 * Ownership: hgf_credmgr_new returns a manager the caller frees with
 * hgf_credmgr_free (pending callbacks are not called). Specs are copied.
 * The hgf_creds given to a callback is valid only during the callback:
 * hgf_creds_copy it to keep it. */
#ifndef HGF_CREDPROV_H
#define HGF_CREDPROV_H

#include <time.h>

#include "hgfleet/awsctl.h"
#include "hgfleet/creds.h"
#include "hgfleet/err.h"
#include "hgfleet/http.h"
#include "hgfleet/metrics.h"

struct ev_loop;

typedef struct hgf_credmgr hgf_credmgr;

typedef struct hgf_auth_spec {
    const char *mode;                  /* "static", "host", "assume_role" */
    const char *access_key_id;         /* static keys (plaintext, borrowed), or NULL */
    const char *secret_access_key;
    const char *role_arn;              /* assume_role */
    const char *external_id;           /* or NULL */
    const char *session_name;          /* or NULL: "hgfleet-<account>" */
    int duration_seconds;              /* 0 = 3600 */
    const char *via_role_arn;          /* first hop, or NULL */
    const char *region;                /* the registry's region: STS is regional */
    const char *partition;             /* for default endpoints */
} hgf_auth_spec;

/* rc 0: creds is set. Else err says which step failed, with AWS's code in
 * err->aws_code (e.g. AccessDenied from AssumeRole). */
typedef void (*hgf_creds_cb)(int rc, const hgf_err *err, const hgf_creds *creds, void *arg);

hgf_credmgr *hgf_credmgr_new(struct ev_loop *loop, hgf_http *http, hgf_metrics *metrics,
                             hgf_err *err);
void hgf_credmgr_free(hgf_credmgr *m);
/* Borrows the process's AWS controller (it must outlive m): ECR tokens are
 * then fetched with its retries and rates, AssumeRole is tried at most its
 * max_attempts (AWS_MAX_ATTEMPTS) times, and every signature (STS, ECR, the
 * host chain) uses the clock skew it learned. Without one, calls are signed
 * with the local clock, ECR tokens are tried once and AssumeRole 5 times. */
void hgf_credmgr_set_awsctl(hgf_credmgr *m, hgf_awsctl *ctl);

/* Validates a spec's fields (ARNs, ExternalId [\w+=,.@:/-]{2,1224}, session
 * name [\w+=,.@-]{2,64}, duration 900..43200, at most 3600 with a chain);
 * HGF_EINPUT names the field (as a CLI flag: "--role-arn", ...). */
int hgf_credprov_validate(const hgf_auth_spec *spec, hgf_err *err);

/* Credentials for spec: from the cache when fresh, else fetched. The callback
 * runs from the loop (never inside this call). */
int hgf_credmgr_get(hgf_credmgr *m, const hgf_auth_spec *spec, hgf_creds_cb cb, void *arg,
                    hgf_err *err);

/* After an ExpiredTokenException: drop the cached credentials of spec so the
 * next get refreshes once (concurrent callers share that refresh). */
void hgf_credmgr_invalidate(hgf_credmgr *m, const hgf_auth_spec *spec);

typedef struct hgf_credmgr_stats {
    unsigned long sts_calls;       /* AssumeRole + AssumeRoleWithWebIdentity */
    unsigned long refreshes;       /* fetches of an entry that was cached before */
    unsigned long cache_hits;
    unsigned long failed_refreshes;
} hgf_credmgr_stats;
void hgf_credmgr_get_stats(const hgf_credmgr *m, hgf_credmgr_stats *out);

/* Like hgf_credmgr_invalidate, but only when the cached credentials still
 * carry access_key_id: a late ExpiredToken reply to a request signed with
 * credentials that were already replaced does not cause another refresh. */
void hgf_credmgr_invalidate_key(hgf_credmgr *m, const hgf_auth_spec *spec,
                                const char *access_key_id);

/* ECR authorization tokens (GetAuthorizationToken with spec's credentials),
 * cached per (spec, registry, endpoint) and refreshed at half their lifetime
 * by a single in-flight call. rc 0: basic_token is the base64
 * authorizationToken (send "Authorization: Basic <token>") and
 * proxy_endpoint the registry's https URL; both are valid only during the
 * callback and the token is a secret. ecr_endpoint NULL: the region's
 * endpoint (AWS_ENDPOINT_URL_ECR / AWS_ENDPOINT_URL honoured). spec->region
 * is required. */
/* After the registry refused basic_token (401/403): drop that cached token,
 * if it is still the one cached, so the next hgf_credmgr_ecr_token fetches
 * a fresh one. A registry answers an expired token this way. */
void hgf_credmgr_invalidate_ecr_token(hgf_credmgr *m, const hgf_auth_spec *spec,
                                     const char *registry_id, const char *ecr_endpoint_url,
                                     const char *basic_token);

typedef void (*hgf_ecr_token_cb)(int rc, const hgf_err *err, const char *basic_token,
                                 const char *proxy_endpoint, void *arg);
int hgf_credmgr_ecr_token(hgf_credmgr *m, const hgf_auth_spec *spec, const char *registry_id,
                          const char *ecr_endpoint, hgf_ecr_token_cb cb, void *arg, hgf_err *err);

/* ---- the default chain, uncached (the manager caches it as mode "host") */

typedef struct hgf_credprov_opts {
    struct ev_loop *loop;
    hgf_http *http;
    hgf_metrics *metrics;          /* or NULL */
    const char *region;            /* STS region for web identity; NULL: AWS_REGION,
                                    * AWS_DEFAULT_REGION, else us-east-1 */
    long clock_offset;             /* seconds added to local time when signing */
    unsigned long *sts_calls;      /* or NULL: incremented during the call when it sends
                                    * an STS request */
} hgf_credprov_opts;

/* Runs the default chain once, reading the environment now: the first
 * provider that is configured decides (AWS_ACCESS_KEY_ID; AWS_ROLE_ARN with
 * AWS_WEB_IDENTITY_TOKEN_FILE; a container credentials URI; else IMDSv2
 * unless AWS_EC2_METADATA_DISABLED=true), and its errors are reported. When
 * nothing answers, the error lists what was tried. Returns an error when the
 * configured provider cannot start (a refused container URL, an unreadable
 * token file, nothing configured and IMDS disabled); otherwise the callback
 * runs once, from the loop. creds->source is "env", "web_identity",
 * "container" or "imds". */
int hgf_credprov_host_fetch(const hgf_credprov_opts *o, hgf_creds_cb cb, void *arg,
                            hgf_err *err);

/* The container credentials URL from AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
 * (http://169.254.170.2 + it; takes precedence) or
 * AWS_CONTAINER_CREDENTIALS_FULL_URI, into out; *var names the variable
 * used. Plain http is allowed only to loopback, 169.254.170.2,
 * 169.254.170.23 and fd00:ec2::23; anything else is HGF_EINPUT naming the
 * variable. HGF_ENOTFOUND when neither is set. */
int hgf_credprov_container_url(char *out, size_t n, const char **var, hgf_err *err);

/* The STS endpoint for a region (NULL: AWS_REGION, AWS_DEFAULT_REGION, else
 * us-east-1), honouring AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL, and the
 * signing region into region_out. */
int hgf_credprov_sts_endpoint(const char *region, char *url, size_t n, char region_out[32],
                              hgf_err *err);

#endif
