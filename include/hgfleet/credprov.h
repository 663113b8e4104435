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

#endif
