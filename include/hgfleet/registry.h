/* The registry v2 / OCI distribution client: manifests, blobs and image
 * configs, with the Basic and Bearer auth challenge flows.
 *
 * Requests go to a base URL used as a prefix: the proxyEndpoint that ECR's
 * GetAuthorizationToken returns (<proxyEndpoint>/v2/<repo>/manifests/<ref>),
 * or any registry's scheme://host[:port] (plain http is allowed because the
 * caller wrote the scheme).
 *
 * Auth: a preset Authorization (ECR's "Basic <token>") goes on the first
 * try. On a 401 the WWW-Authenticate challenge decides the retry: Basic
 * retries once with the username/password; Bearer gets a token from the
 * challenge's realm (with the username/password as Basic credentials, else
 * anonymously) and retries with it. Bearer tokens are kept in a caller-owned
 * cache, so the next request to the same repository sends the token at once.
 *
 * Ownership: request strings are copied; the result passed to a callback,
 * and every pointer in it, is valid only during the callback. The token
 * cache belongs to the caller and must outlive the requests using it. */
#ifndef HGF_REGISTRY_H
#define HGF_REGISTRY_H

#include <jansson.h>
#include <stddef.h>

#include "hgfleet/err.h"
#include "hgfleet/http.h"

/* Every manifest format we understand, for the Accept header. */
#define HGF_REGISTRY_ACCEPT                                                         \
    "application/vnd.docker.distribution.manifest.v2+json, "                        \
    "application/vnd.docker.distribution.manifest.list.v2+json, "                   \
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"

#define HGF_REGISTRY_BLOB_MAX_DEFAULT ((size_t)64 << 20)

/* ---- auth ------------------------------------------------------------ */

typedef struct hgf_registry_auth {
    const char *authorization;  /* preset header value sent on the first try, e.g. ECR's
                                   "Basic <token>"; NULL for none */
    const char *username;       /* for challenges; NULL = anonymous */
    const char *password;
} hgf_registry_auth;

typedef enum hgf_registry_scheme {
    HGF_REGISTRY_NONE = 0,
    HGF_REGISTRY_BASIC = 1,
    HGF_REGISTRY_BEARER = 2,
} hgf_registry_scheme;

typedef struct hgf_registry_challenge {
    hgf_registry_scheme scheme;
    char realm[1024];   /* Bearer: the token endpoint URL (required); Basic: a label */
    char service[256];  /* "" when absent */
    char scope[1024];   /* "" when absent; several scopes are space-separated */
    char error[64];     /* Bearer error="invalid_token" etc., "" when absent */
} hgf_registry_challenge;

/* Parses a WWW-Authenticate value (RFC 7235: comma-separated challenges whose
 * parameters are token or quoted-string values, with backslash escapes; the
 * scheme is case-insensitive) and returns the first Basic or Bearer
 * challenge in out. HGF_EINPUT for malformed syntax, no supported scheme, a
 * Bearer challenge without realm, a duplicated or over-long parameter. Pure:
 * no I/O, no allocation; any input is safe. */
int hgf_registry_parse_challenge(const char *header, hgf_registry_challenge *out, hgf_err *err);

/* Bearer tokens per (realm, service, scope, username), honouring expires_in
 * (60 s when absent), at most 64 of them. hgf_registry_tokens_new returns a
 * cache the caller frees with hgf_registry_tokens_free (which wipes tokens);
 * NULL when out of memory. Not thread-safe: one per loop. */
typedef struct hgf_registry_tokens hgf_registry_tokens;

hgf_registry_tokens *hgf_registry_tokens_new(void);
void hgf_registry_tokens_free(hgf_registry_tokens *t);

typedef struct hgf_registry_token_key {
    const char *realm, *service, *scope;
    const char *username;    /* whose credentials fetched it; NULL = anonymous */
    const char *origin;      /* scheme://host[:port] of the registry that asked ... */
    const char *repository;  /* ... for this repository: lets the next request to it
                                send the token before any challenge */
} hgf_registry_token_key;

/* The bearer token for k's (realm, service, scope, username), or NULL when
 * none is cached or it is about to expire. Borrowed: valid until the next
 * call on t. */
const char *hgf_registry_tokens_get(hgf_registry_tokens *t, const hgf_registry_token_key *k);
/* A token last learned for k->origin, k->repository and k->username (the
 * other fields are ignored), or NULL; borrowed like _get. */
const char *hgf_registry_tokens_for_repo(hgf_registry_tokens *t, const hgf_registry_token_key *k);
/* Stores (or replaces) a token valid for expires_in seconds (<= 0 means 60). */
int hgf_registry_tokens_put(hgf_registry_tokens *t, const hgf_registry_token_key *k,
                            const char *token, long expires_in, hgf_err *err);
/* Forgets every entry holding this token (the registry refused it). */
void hgf_registry_tokens_drop(hgf_registry_tokens *t, const char *token);

/* ---- requests -------------------------------------------------------- */

typedef struct hgf_registry_result {
    int rc;                  /* 0; HGF_ENOTFOUND (404, MANIFEST_UNKNOWN); HGF_EAWS for 401/403
                                (err.aws_code = the registry error code, e.g. DENIED); HGF_EHTTP
                                for transport errors, other statuses and digest mismatches */
    hgf_err err;
    long status;
    char digest[80];         /* manifests: Docker-Content-Digest (verified against the body
                                on GET); blobs: the verified digest */
    char media_type[160];
    long long content_length;
    const char *body;        /* GET only */
    size_t body_len;
    const char *www_authenticate;
    hgf_registry_scheme auth_used; /* the challenge scheme the final request answered;
                                      NONE when only the preset (or nothing) was sent */
} hgf_registry_result;

typedef void (*hgf_registry_cb)(const hgf_registry_result *res, void *arg);

typedef struct hgf_registry_req {
    hgf_http *http;
    const char *proxy_endpoint;  /* https://<acct>.dkr.ecr.<region>.amazonaws.com, or any
                                    scheme://host[:port][/prefix] */
    const char *authorization;   /* preset header value, e.g. "Basic <token>", or NULL; used
                                    when auth is NULL or auth->authorization is NULL */
    const hgf_registry_auth *auth;  /* credentials for challenges, or NULL */
    hgf_registry_tokens *tokens; /* bearer token cache, or NULL */
    const char *repository;
    const char *reference;       /* tag or sha256:<hex> digest; blobs: a digest */
    const char *limit_key;
    int head;                    /* manifests: 1 = HEAD, 0 = GET (body and digest verified) */
    size_t max_body;             /* blobs: size cap, 0 = HGF_REGISTRY_BLOB_MAX_DEFAULT */
} hgf_registry_req;

/* HGF_EINPUT for a repository or reference that is not valid per the
 * distribution spec (names the field). */
int hgf_registry_manifest(const hgf_registry_req *req, hgf_registry_cb cb, void *arg, hgf_err *err);

/* GET /v2/<repo>/blobs/<digest>, following redirects (a 307 to storage);
 * Authorization never goes to another host or port, and an https request is
 * never redirected to http. The body must hash to the digest and fit in
 * max_body (else rc = HGF_EHTTP). HGF_EINPUT when the reference is not a
 * sha256 digest or head is set. */
int hgf_registry_blob(const hgf_registry_req *req, hgf_registry_cb cb, void *arg, hgf_err *err);

typedef struct hgf_registry_image {
    int rc;                   /* as in hgf_registry_result, from the step that failed */
    hgf_err err;
    long status;
    int reference_fetched;    /* 1 once the GET of the manifest the reference names succeeded:
                                 with rc set, a later step failed (the platform manifest, the
                                 config, or what the bodies say), not the reference itself */
    char reference_media_type[160]; /* that GET's Content-Type, as a HEAD would give it */
    char index_digest[80];    /* the index or manifest list the reference named, else "" */
    char platform[64];        /* "os/architecture[/variant]" of the entry picked, else "" */
    char manifest_digest[80]; /* the image manifest */
    char media_type[160];     /* the image manifest's */
    char config_digest[80];
    const char *manifest;     /* the image manifest's bytes */
    size_t manifest_len;
    const json_t *config;     /* the parsed config blob (an object); borrowed */
    const char *config_body;
    size_t config_len;
} hgf_registry_image;

typedef void (*hgf_registry_image_cb)(const hgf_registry_image *img, void *arg);

/* GETs the manifest req->reference names; when that is an index or manifest
 * list, picks the linux/amd64 entry (else the first) and GETs it; then GETs
 * the config blob and parses it. Every digest is verified, and so is every
 * descriptor's size. req->head is ignored; req->max_body caps the config
 * (0 = 4 MiB). Without req->tokens a cache lives for this call. */
int hgf_registry_image_config(const hgf_registry_req *req, hgf_registry_image_cb cb, void *arg,
                              hgf_err *err);

/* ---- names ----------------------------------------------------------- */

/* 1 if ref looks like "sha256:<64 lowercase hex>". */
int hgf_registry_is_digest(const char *ref);
/* 1 if r is a valid repository name / tag per the distribution spec. */
int hgf_registry_valid_repository(const char *r);
int hgf_registry_valid_tag(const char *t);

/* sha256 of len bytes as "sha256:<hex>" into out. */
void hgf_registry_sha256(const void *data, size_t len, char out[80]);

typedef struct hgf_registry_ref {
    char base[300];        /* scheme://host[:port] */
    char repository[257];
    char reference[130];   /* tag ("latest" when none was given) or digest */
} hgf_registry_ref;

/* Parses http(s)://host[:port]/repo[:tag|@sha256:<hex>]. HGF_EINPUT names
 * the bad part; credentials in the URL are refused. */
int hgf_registry_parse_ref(const char *s, hgf_registry_ref *out, hgf_err *err);

#endif
