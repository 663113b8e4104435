/* The registry v2 / OCI distribution client: manifests by tag or digest
 * through the proxyEndpoint that ECR's GetAuthorizationToken returns (used as
 * a URL prefix: <proxyEndpoint>/v2/<repo>/manifests/<ref>).
 *
 * Ownership: the result passed to a callback, and every pointer in it, is
 * valid only during the callback. Request strings are copied. */
#ifndef HGF_REGISTRY_H
#define HGF_REGISTRY_H

#include <stddef.h>

#include "hgfleet/err.h"
#include "hgfleet/http.h"

/* Every manifest format we understand, for the Accept header. */
#define HGF_REGISTRY_ACCEPT                                                         \
    "application/vnd.docker.distribution.manifest.v2+json, "                        \
    "application/vnd.docker.distribution.manifest.list.v2+json, "                   \
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"

typedef struct hgf_registry_result {
    int rc;                  /* 0; HGF_ENOTFOUND (404, MANIFEST_UNKNOWN); HGF_EAWS for 401/403
                                (err.aws_code = the registry error code, e.g. DENIED); HGF_EHTTP */
    hgf_err err;
    long status;
    char digest[80];         /* Docker-Content-Digest (verified against the body on GET) */
    char media_type[160];
    long long content_length;
    const char *body;        /* GET only */
    size_t body_len;
    const char *www_authenticate;
} hgf_registry_result;

typedef void (*hgf_registry_cb)(const hgf_registry_result *res, void *arg);

typedef struct hgf_registry_req {
    hgf_http *http;
    const char *proxy_endpoint;  /* https://<acct>.dkr.ecr.<region>.amazonaws.com, or a prefix */
    const char *authorization;   /* full header value, e.g. "Basic <token>", or NULL */
    const char *repository;
    const char *reference;       /* tag or sha256:<hex> digest */
    const char *limit_key;
    int head;                    /* 1 = HEAD, 0 = GET (body and digest verified) */
} hgf_registry_req;

/* HGF_EINPUT for a repository or reference that is not valid per the
 * distribution spec (names the field). */
int hgf_registry_manifest(const hgf_registry_req *req, hgf_registry_cb cb, void *arg, hgf_err *err);

/* 1 if ref looks like "sha256:<64 hex>". */
int hgf_registry_is_digest(const char *ref);

#endif
