/* Signed AWS JSON 1.1 calls (ECR, Organizations) over the async HTTP client.
 *
 * Ownership: the call copies the target, body and endpoint; `creds` and
 * `http` are borrowed and must outlive the call (the sync job owns both).
 * The result given to the callback, including its json, is valid only
 * during the callback; take a json_incref to keep it. */
#ifndef HGF_AWSJSON_H
#define HGF_AWSJSON_H

#include <jansson.h>
#include <time.h>

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
    long clock_offset;      /* seconds added to local time when signing */
} hgf_aws_target;

typedef struct hgf_aws_result {
    int rc;                 /* 0, HGF_EAWS (err.aws_code set) or HGF_EHTTP */
    hgf_err err;            /* message names the operation and AWS's code and message */
    long status;
    json_t *json;           /* parsed body on success, else NULL */
    const char *request_id; /* x-amzn-RequestId or "" */
    const char *date;       /* the response Date header or NULL (for clock skew) */
    double seconds;
} hgf_aws_result;

typedef void (*hgf_aws_cb)(const hgf_aws_result *res, void *arg);

/* op: "DescribeImages"; target_prefix: "AmazonEC2ContainerRegistry_V20150921". */
int hgf_awsjson_call(const hgf_aws_target *t, const char *target_prefix, const char *op,
                     const char *body, hgf_aws_cb cb, void *arg, hgf_err *err);

/* Parses an AWS JSON error body: code from __type (text after the last '#',
 * before any ':'), message from "message" or "Message". Fills err->aws_code
 * and a message "<op>: <Code>: <message>". Returns HGF_EAWS. */
int hgf_awsjson_parse_error(const char *op, long status, const char *body, size_t len,
                            const char *type_header, hgf_err *err);

#endif
