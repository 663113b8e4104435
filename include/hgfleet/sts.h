/* AWS STS over the Query protocol (form-encoded POST, XML replies) on the
 * async HTTP client: AssumeRole, AssumeRoleWithWebIdentity (unsigned) and
 * GetCallerIdentity.
 *
 * Requests go to `POST <endpoint>` (hgf_endpoint_service_url("STS", ...):
 * the regional https://sts.<region>.amazonaws.com unless overridden) with
 * Content-Type application/x-www-form-urlencoded; charset=utf-8, signed with
 * SigV4 under service "sts" in t->region at local time + t->clock_offset.
 *
 * Errors: err->aws_code is STS's XML Code (AccessDenied, ExpiredToken,
 * ValidationError, InvalidIdentityToken, RegionDisabledException, ...) and
 * the message reads "<Action>: <Code>: <Message>". A transport error reads
 * "<Action>: <curl's error> (<endpoint>)", followed for a TLS trust failure
 * by hgf_http_tls_hint's advice on AWS_CA_BUNDLE. Secrets (secret keys,
 * session tokens, web identity tokens) never appear in messages or logs.
 *
 * Ownership: the target and everything passed in are borrowed for the
 * duration of the call only (the request is signed and copied before the
 * call returns). The result given to the callback, its creds and every
 * pointer in it are valid only during the callback: hgf_creds_copy to keep
 * them. */
#ifndef HGF_STS_H
#define HGF_STS_H

#include <stddef.h>

#include "hgfleet/buf.h"
#include "hgfleet/creds.h"
#include "hgfleet/err.h"
#include "hgfleet/http.h"
#include "hgfleet/metrics.h"

#define HGF_STS_VERSION "2011-06-15"

typedef struct hgf_sts_target {
    hgf_http *http;
    const char *endpoint; /* https://sts.us-east-1.amazonaws.com */
    const char *region;   /* signing region */
    long clock_offset;    /* seconds added to local time when signing */
    hgf_metrics *metrics; /* hgfleet_sts_calls_total{action,outcome}, or NULL */
} hgf_sts_target;

typedef struct hgf_sts_result {
    int rc; /* 0, HGF_EAWS (err.aws_code set) or HGF_EHTTP */
    hgf_err err;
    const char *action; /* "AssumeRole", ... ("STS" when unknown) */
    hgf_creds creds;    /* AssumeRole*: owned by the result */
    char arn[256];      /* GetCallerIdentity Arn, or the AssumedRoleUser Arn */
    char account[13];   /* GetCallerIdentity */
    char user_id[160];  /* GetCallerIdentity UserId, or AssumedRoleId */
    char request_id[80];
    long status;         /* HTTP status; 0 after a transport error */
    int transport_error; /* the CURLcode of a transport error, else 0: with status, what
                            hgf_awsctl_classify needs to decide on a retry */
    const char *date; /* the response Date header or NULL (clock skew) */
} hgf_sts_result;

typedef void (*hgf_sts_cb)(const hgf_sts_result *r, void *arg);

/* external_id may be NULL; duration_seconds 0 leaves DurationSeconds out
 * (STS's default, 1 h). The callback runs once from the loop, never inside
 * the call; a non-zero return means it never runs. */
int hgf_sts_assume_role(const hgf_sts_target *t, const hgf_creds *source, const char *role_arn,
                        const char *session_name, const char *external_id, int duration_seconds,
                        hgf_sts_cb cb, void *arg, hgf_err *err);

/* Sent unsigned: the web identity token is the credential. */
int hgf_sts_assume_role_with_web_identity(const hgf_sts_target *t, const char *role_arn,
                                          const char *session_name, const char *token,
                                          int duration_seconds, hgf_sts_cb cb, void *arg,
                                          hgf_err *err);

int hgf_sts_get_caller_identity(const hgf_sts_target *t, const hgf_creds *creds, hgf_sts_cb cb,
                                void *arg, hgf_err *err);

/* A Query request body: "Action=<action>&Version=2011-06-15" then each
 * "&name=value" of params, a NULL-terminated list of name, value pairs
 * (a NULL value leaves its pair out), values percent-encoded (everything
 * but ALPHA / DIGIT / "-._~"). Appended to out. */
int hgf_sts_form_body(const char *action, const char *const *params, hgf_buf *out, hgf_err *err);

/* Parses an STS XML reply (success or ErrorResponse) into out, which it
 * clears first. The action is taken from the root element ("AssumeRole"
 * from AssumeRoleResponse; "STS" for an ErrorResponse). Returns out->rc,
 * with the same error in *err. The caller clears out->creds with
 * hgf_creds_clear. Exposed for unit tests and fuzzing. */
int hgf_sts_parse_response(const char *xml, size_t len, hgf_sts_result *out, hgf_err *err);

#endif
