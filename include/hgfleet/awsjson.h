/* Signed AWS JSON 1.1 calls (ECR, Organizations) over the async HTTP client.
 *
 * With a controller (hgf_aws_target.ctl) a call retries throttling and
 * transient errors with backoff on ev_timers, waits for the adaptive rate
 * limiter, and re-signs every attempt with the skew-corrected clock
 * (hgf_awsctl_now); a skew error is retried once after the offset is
 * learned. ExpiredTokenException is never retried here: the caller
 * refreshes its credentials. The callback runs once, with the final result.
 *
 * Ownership: the call copies the target's strings, the body and the
 * endpoint; `creds`, `http` and `ctl` are borrowed and must outlive the call
 * (the sync job owns the first, the runtime the others). Credentials are
 * read again at every attempt, so a refresh in place is picked up. The
 * result given to the callback, including its json, is valid only during
 * the callback; take a json_incref to keep it. */
#ifndef HGF_AWSJSON_H
#define HGF_AWSJSON_H

#include <jansson.h>
#include <time.h>

#include "hgfleet/awsctl.h"
#include "hgfleet/creds.h"
#include "hgfleet/err.h"
#include "hgfleet/http.h"

typedef struct hgf_aws_target {
    hgf_http *http;
    const hgf_creds *creds;
    const char *endpoint;   /* https://api.ecr.us-east-1.amazonaws.com */
    const char *region;     /* signing region */
    const char *service;    /* signing name: "ecr", "organizations" */
    const char *limit_key;  /* concurrency group (the registry), or NULL */
    long clock_offset;      /* seconds added to local time when signing; only when ctl
                             * is NULL (the controller keeps the process's offset) */
    hgf_awsctl *ctl;        /* retries, rate limiting, clock skew; NULL = one attempt */
    const char *rate_key;   /* adaptive limiter key, "<account>/<region>/ecr/<op>"; one
                             * ending in '/' is a prefix the op is appended to (a target
                             * shared by several operations); NULL = "<region>/<service>/<op>" */
} hgf_aws_target;

typedef struct hgf_aws_result {
    int rc;                 /* 0, HGF_EAWS (err.aws_code set), HGF_EHTTP, or the code of
                             * a local failure to send a retry (HGF_ENOMEM...) */
    hgf_err err;            /* message names the operation and AWS's code and message */
    long status;
    json_t *json;           /* parsed body on success, else NULL */
    const char *request_id; /* x-amzn-RequestId or "" */
    const char *date;       /* the response Date header or NULL (for clock skew) */
    double seconds;         /* the whole call, retries and waits included */
    int attempts;           /* requests sent (a skew retry included) */
    int throttled;          /* throttling responses among them */
} hgf_aws_result;

typedef void (*hgf_aws_cb)(const hgf_aws_result *res, void *arg);

/* op: "DescribeImages"; target_prefix: "AmazonEC2ContainerRegistry_V20150921".
 * Errors found before the first attempt is sent are returned (the callback
 * then never runs); later ones reach the callback. */
int hgf_awsjson_call(const hgf_aws_target *t, const char *target_prefix, const char *op,
                     const char *body, hgf_aws_cb cb, void *arg, hgf_err *err);

/* Parses an AWS JSON error body: code from __type (text after the last '#',
 * before any ':'), message from "message" or "Message". Fills err->aws_code
 * and a message "<op>: <Code>: <message>". Returns HGF_EAWS. */
int hgf_awsjson_parse_error(const char *op, long status, const char *body, size_t len,
                            const char *type_header, hgf_err *err);

#endif
